/* external.h: external disk-only snapshots - overlays created and switched to, reverted to, merged away. */
#ifndef QS_ENGINE_EXTERNAL_H
#define QS_ENGINE_EXTERNAL_H

#include <stdbool.h>

#include "engine_priv.h"

/* Whether a create with SPEC and FLAGS asks for external disk snapshots (--disk-only, or a disk external). */
bool ext_wanted(const struct md_snapshot *spec, unsigned flags);

/*
 * Takes an external snapshot of DOM's disks as SNAP (a parsed spec with its name set, not in T yet). *c is
 * the live QEMU or NULL (shut off); it may be quit (HALT). Overlays: the spec's files, else the base's name
 * with its extension replaced by ".NAME" (libvirt's rule), created 0600 with qemu-img unless REUSE_EXT.
 * Live: blockdev-add of every overlay and one transaction of blockdev-snapshot actions. On failure nothing
 * is left: nodes deleted, files qsnap created removed, no metadata changed. On success DOM (stored) points
 * at the overlays and SNAP is stored (unless NO_METADATA) as libvirt writes disk-only snapshots.
 */
int ext_create(struct engine *e, struct md_domain *dom, const struct md_lock *lock, const struct md_tree *t,
               struct md_snapshot *snap, unsigned flags, struct qmp_client **c, struct qs_error **err);

/*
 * Reverts DOM to external snapshot SNAP: a new overlay on each frozen image SNAP holds (named like the
 * snapshot's own overlay plus "-N"), QEMU quit when it runs, DOM pointed at the new overlays and stored,
 * then QEMU started (fresh boot) only for ENGINE_REVERT_RUNNING / _PAUSED. The old branch's files stay.
 * *c may be quit and replaced.
 */
int ext_revert(struct engine *e, struct md_domain *dom, const struct md_lock *lock, const struct md_snapshot *snap,
               unsigned flags, struct qmp_client **c, struct qs_error **err);

/*
 * Merges external snapshot SNAP's frozen images with its overlays (block-commit live, qemu-img offline),
 * rebases what sat on the overlays, removes the overlays, and points DOM and the other snapshots' <domain>
 * at the merged images. Refuses (before changing anything) what it cannot merge safely: a frozen image
 * another branch or snapshot still needs, internal snapshots inside an overlay, internal and external
 * disks in one snapshot. The caller deletes SNAP's metadata afterwards.
 */
int ext_delete(struct engine *e, struct md_domain *dom, const struct md_lock *lock, const struct md_snapshot *snap,
               struct qmp_client *c, struct qs_error **err);

#endif
