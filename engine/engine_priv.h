/* engine_priv.h: what the engine's files share - the engine object and domain helpers. */
#ifndef QS_ENGINE_PRIV_H
#define QS_ENGINE_PRIV_H

#include "engine.h"
#include "md.h"
#include "qmp.h"

struct engine {
    struct md_store *store;
    int lock_timeout_ms;
    int qmp_timeout_ms;
    engine_progress_fn progress;
    engine_step_fn step;
    void *opaque;
    bool recovering; /* engine_domain_lock must not recover again from inside a recovery */
    bool after_undo; /* the recovery follows the operation's own undo, in the same process */
    struct nvram_pending *nvram; /* a revert's UEFI variables, put in place at the next QEMU start (nvram.c) */
};

/* Reports a step boundary to the step callback, if any. */
static inline void engine_step(struct engine *e, const char *op, const char *step)
{
    if (e->step)
        e->step(e->opaque, op, step);
}

/* A domain's definition loaded for an operation. QS_ERR_NOTFOUND "domain 'X' is not defined". */
struct md_domain *engine_domain_load(struct engine *e, const char *name, struct qs_error **err);
/* Takes the domain's lock with the engine's timeout. */
struct md_lock *engine_domain_lock(struct engine *e, const char *name, struct qs_error **err);
/*
 * Connects to the domain's QEMU when it runs: *c is NULL (and 0 returned) when it is shut off (no socket
 * recorded, none there, or nobody listening). Caller frees *c with qmp_client_free().
 */
int engine_domain_connect(struct engine *e, const struct md_domain *dom, struct qmp_client **c,
                          struct qs_error **err);
/* Maps a QEMU run state word ("running", "paused", "restore-vm", ...) to a domain state. */
enum engine_domain_state engine_state_from_qemu(const char *status);
/* Quits QEMU (QMP quit, then SIGKILL after a grace period) and waits until the process is gone. The client
 * is freed and *c set to NULL. err may be NULL for a best-effort quit on a cleanup path. */
int engine_qemu_quit(struct engine *e, struct qmp_client **c, struct qs_error **err);
struct intent;
/*
 * Deletes snapshot NAME of DOMAIN: its data (internal tags; an external snapshot merged where its image has
 * one successor), its metadata, then the image files nothing needs any more (noted in IT's garbage first).
 * C is the running QEMU or NULL. RECOVERING: finishing a delete a crash cut short (tags removed where still
 * there; merges IT notes as done are not done again).
 */
int engine_snapshot_delete_one(struct engine *e, struct qmp_client *c, struct md_domain *dom,
                               const struct md_lock *lock, const char *domain, const char *name, struct intent *it,
                               bool recovering, struct qs_error **err);
/* Whether engine_qemu_start can build DOM's command line (every disk's option found and pointable): asked
 * before QEMU is quit, so that an operation that could not start it again changes nothing. */
int engine_qemu_check_start(const struct md_domain *dom, struct qs_error **err);
/* Starts the domain's QEMU (paused if asked) and connects: *c is the new client. */
int engine_qemu_start(struct engine *e, struct md_domain *dom, const struct md_lock *lock, bool paused,
                      struct qmp_client **c, struct qs_error **err);

#endif
