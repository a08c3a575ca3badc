/* external.h: external disk-only snapshots - overlays created and switched to, reverted to, merged away. */
#ifndef QS_ENGINE_EXTERNAL_H
#define QS_ENGINE_EXTERNAL_H

#include <stdbool.h>

#include "engine_priv.h"

/* The key (md_snapshot_cookie_get) of the guest's pause for a --live snapshot: microseconds from QEMU's STOP
 * event to its RESUME event, as a decimal string. */
#define EXT_COOKIE_PAUSE "pause-us"

/* Whether a create with SPEC and FLAGS asks for an external snapshot (--disk-only, a disk external, or
 * external memory). */
bool ext_wanted(const struct md_snapshot *spec, unsigned flags);

/*
 * Takes an external snapshot of DOM's disks as SNAP (a parsed spec with its name set, not in T yet). *c is
 * the live QEMU or NULL (shut off); it may be quit (HALT). Overlays: the spec's files, else the base's name
 * with its extension replaced by ".NAME" (libvirt's rule), created 0600 with qemu-img unless REUSE_EXT.
 * Live: blockdev-add of every overlay and one transaction of blockdev-snapshot actions. On failure nothing
 * is left: nodes deleted, files qsnap created removed, no metadata changed. On success DOM (stored) points
 * at the overlays and SNAP is stored (unless NO_METADATA) as libvirt writes disk-only snapshots.
 *
 * External memory (SNAP->memory EXTERNAL, memory_file absolute and new; running or paused VM; disks not
 * named default to external): in one pause of the guest, RAM and device state go to the file (0600, a
 * memstate save file: qsnap's header, then QEMU's stream, written through getfd + migrate) and the
 * transaction switches the disks; then cont when the VM ran (not with HALT, which quits QEMU). A VM that
 * was paused stays paused in QEMU's "postmigrate" state, its images inactive until it is resumed. State
 * recorded: running or paused. On failure the file is removed too and the VM runs again if it ran.
 * QUIESCE: the guest agent (its socket from the recorded command line; none is QS_ERR_UNSUPPORTED before
 * anything changes) freezes the filesystems around the switch (and the memory save) and always thaws; an
 * agent that does not answer is QS_ERR_TIMEOUT, nothing created.
 *
 * LIVE (external memory only; the file defaults to the first disk's image with its extension replaced by
 * ".NAME.mem"): for a running VM, the pause is stop, the disk transaction, then a migration with QEMU's
 * background-snapshot capability, which saves the devices and write-protects the RAM; the guest is resumed
 * only once that capture is seen (QEMU before 9.0 resumes it itself; from 9.0 qsnap does), so it never runs
 * between the disk switch and the capture; the RAM of the pause's instant is then written while it runs. Checked before anything is created
 * (memstate_live_check): where QEMU cannot (no capability, no userfaultfd write-protect, file-backed or
 * shared guest RAM) it is QS_ERR_UNSUPPORTED with QEMU's reason, unless LIVE_FALLBACK, which takes the
 * ordinary save (guest paused throughout). A paused VM gets the ordinary save and stays paused. The pause
 * (QEMU's STOP to RESUME event timestamps) is recorded in SNAP's <cookie> under EXT_COOKIE_PAUSE, for LIVE
 * snapshots of a running VM (also a fallback) that resumed.
 */
struct intent;
/* IT: the operation's intent record (op, kind and snapshot set by the caller), filled and written here
 * before anything is created; the caller ends it (intent_finish) after freeing *c. */
int ext_create(struct engine *e, struct md_domain *dom, const struct md_lock *lock, struct md_tree *t,
               struct md_snapshot *snap, unsigned flags, struct intent *it, struct qmp_client **c,
               struct qs_error **err);

/*
 * Reverts DOM to external snapshot SNAP: a new overlay on each frozen image SNAP holds (named like the
 * snapshot's own overlay plus "-N"), QEMU quit when it runs, DOM pointed at the new overlays and stored,
 * then QEMU started (fresh boot) only for ENGINE_REVERT_RUNNING / _PAUSED. The old branch's files stay.
 * With external memory: the memory file is checked first (a qsnap save file of this domain), then QEMU
 * starts with -incoming defer on the new overlays and loads it; it then runs or stays paused as SNAP's state
 * says, or as RUNNING / PAUSED. A failed load leaves the domain off on the new overlays.
 * *c may be quit and replaced.
 */
/* IT as for ext_create. */
int ext_revert(struct engine *e, struct md_domain *dom, const struct md_lock *lock, const struct md_snapshot *snap,
               unsigned flags, struct intent *it, struct qmp_client **c, struct qs_error **err);
/*
 * The QEMU of DOM once it is on a revert's new overlays (ext_revert's last step, and recovery's after a crash
 * that came between the quit and it): with SNAP's memory file a fresh QEMU loads it, then runs when
 * WANT_RUNNING; a disk-only SNAP boots afresh, paused unless WANT_RUNNING, only when START. On failure the
 * domain is left off and *c NULL.
 */
int ext_revert_start(struct engine *e, struct md_domain *dom, const struct md_lock *lock,
                     const struct md_snapshot *snap, bool start, bool want_running, struct qmp_client **c,
                     struct qs_error **err);

/*
 * Merges external snapshot SNAP's frozen images with its overlays (block-commit live, qemu-img offline),
 * rebases what sat on the overlays, removes the overlays, and points DOM and the other snapshots' <domain>
 * at the merged images. Refuses (before changing anything) what it cannot merge safely: a frozen image
 * another branch or snapshot still needs, internal snapshots inside an overlay, internal and external
 * disks in one snapshot. The memory file of an external memory snapshot is removed afterwards unless
 * another snapshot names it too. The caller deletes SNAP's metadata afterwards.
 */
/* IT (may be NULL): the operation's intent record; every disk merged is noted in it at once, and disks
 * it notes as merged (by an interrupted run) are not merged again. */
int ext_delete(struct engine *e, struct md_domain *dom, const struct md_lock *lock, const struct md_snapshot *snap,
               struct qmp_client *c, struct intent *it, struct qs_error **err);

/*
 * Merges what no snapshot needs to keep apart: in each disk's chain, a file C over an image F that no
 * external snapshot froze (any more), with C the only file built on F that the domain or a snapshot needs,
 * nothing else reading F, and no internal snapshot in C, goes into F (block-commit live, qemu-img off) -
 * a delete that had to leave F shared by branches ends, once the other branches are gone, with the domain
 * back on F (the user's own image when F is that). One merge per disk per call; IT (may be NULL) notes each
 * merge and the files that go.
 */
int ext_collapse(struct engine *e, struct md_domain *dom, const struct md_lock *lock, struct qmp_client *c,
                 struct intent *it, struct qs_error **err);
/* BASE with its extension replaced by ".SUFFIX" (libvirt's overlay naming). Caller frees. */
char *ext_default_file(const char *base, const char *suffix);

#endif
