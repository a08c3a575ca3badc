/* clone.h: domain-clone's parts the rest of the engine calls - recovery, the delete guard, the memory load. */
#ifndef QS_ENGINE_CLONE_H
#define QS_ENGINE_CLONE_H

#include "engine_priv.h"

struct intent;

/*
 * Recovery of an interrupted clone (its record is the source domain's): before the clone's definition was
 * stored, every file the record names goes (except an export published for linked clones to share); after,
 * the clone stands - a QEMU whose memory load was cut short is quit, one that loaded is run as asked.
 */
int clone_recover(struct engine *e, const char *domain, const struct md_lock *lock, struct intent *it,
                  struct qs_error **err);

/* Refuses (QS_ERR_STATE, naming the clone) deleting any of NAMES (snapshots of DOMAIN) whose images another
 * domain's disks are built on: a linked clone. */
int clone_check_delete(struct engine *e, const char *domain, char *const *names, struct qs_error **err);

/* Whether SNAP (of DOMAIN) holds memory a clone can start from: internal RAM, or an external memory file
 * qsnap wrote for DOMAIN. QS_ERR_UNSUPPORTED otherwise. */
int clone_memory_check(const struct md_snapshot *snap, const char *domain, struct qs_error **err);

/*
 * Loads SNAP's RAM and devices into the clone's QEMU on C (started with -incoming defer, paused): an external
 * snapshot's memory file from its stream, an internal snapshot's vmstate read from the qcow2 image holding it
 * (the clusters of a snapshot never change while it exists) and streamed to QEMU. DOM is the clone's
 * definition. The VM stays paused.
 */
int clone_load(struct engine *e, struct qmp_client *c, const struct md_domain *dom, const struct md_snapshot *snap,
               struct qs_error **err);

/* engine_domain_clone's work; the public call (events.c) logs it in the source domain's event log. */
int domain_clone_op(struct engine *e, const char *domain, const char *snapshot, const char *name, unsigned flags,
                    struct qs_error **err);

#endif
