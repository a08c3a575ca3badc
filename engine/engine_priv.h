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
    /* session.c: where engine_domain_connect gets a QMP connection (a pool), or NULL for a new one */
    int (*qmp_get)(void *opaque, const char *sock, int timeout_ms, struct qmp_client **c, struct qs_error **err);
    void *qmp_opaque;
    bool after_undo; /* the recovery follows the operation's own undo, in the same process */
    /* schedules and the event log (events.c, schedule.c) */
    engine_clock_fn clock;            /* NULL: the system's wall clock */
    char *requester;                  /* engine_set_requester */
    size_t events_max;                /* an event log is rotated past this size (0: EVENTS_MAX_DEFAULT) */
    struct event_op *ev;              /* the innermost operation under way, which nested work reports to */
    const char *run_schedule;         /* the schedule the runner works for, recorded in nested events */
    const struct schedule_ops *sched_ops; /* how the runner creates and deletes (NULL: the engine's own) */
    struct marks_cache *marks;        /* snapshots' qsnap marks by file identity (prune.c) */
    struct nvram_pending *nvram; /* a revert's UEFI variables, put in place at the next QEMU start (nvram.c) */
};

/* Frees what schedules and events keep in the engine (engine_free). */
void engine_sched_release(struct engine *e);

/* The engine's wall clock, ms since the epoch (the injected one, else the system's). */
int64_t engine_now_ms(struct engine *e);

/* The operations behind the public entry points engine_snapshot_create / _revert / _delete (snapshot.c),
 * which events.c wraps to log them. Same contracts. */
int snapshot_create_op(struct engine *e, const char *domain, const char *xml, unsigned flags, char **name,
                       struct qs_error **err);
int snapshot_revert_op(struct engine *e, const char *domain, const char *name, unsigned flags,
                       struct qs_error **err);
int snapshot_delete_op(struct engine *e, const char *domain, const char *name, unsigned flags,
                       struct qs_error **err);
/* Refuses (QS_ERR_STATE) when one of the N snapshots about to be deleted is protected (prune.c). */
int protect_check(struct engine *e, const char *domain, const struct md_entry *const *entries, size_t n,
                  struct qs_error **err);
/* The guest's pause of the operation under way, as measured (events.c). */
void engine_note_pause(struct engine *e, int64_t pause_us);
/* The pause STOP to RESUME in C's queued events, by QEMU's clock (consumed); -1 when they are not there. */
int64_t engine_pause_from_events(struct qmp_client *c);
/* Forgets DOMAIN's schedules (undefine). Best effort. */
void schedule_forget(struct engine *e, const char *domain);

/* Reports a step boundary to the step callback, if any. */
static inline void engine_step(struct engine *e, const char *op, const char *step)
{
    if (e->step)
        e->step(e->opaque, op, step);
}

/* A domain's definition loaded for an operation. QS_ERR_NOTFOUND "domain 'X' is not defined". */
struct md_domain *engine_domain_load(struct engine *e, const char *name, struct qs_error **err);
/* 0 when domain NAME exists (a stat: its XML is not read); virsh's "Domain not found" otherwise. */
int engine_domain_exists(struct engine *e, const char *name, struct qs_error **err);
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
 * there; merges IT notes as done are not done again). T: the caller's tree loaded under LOCK, or NULL
 * (md_store_snapshot_delete_tree).
 */
int engine_snapshot_delete_one(struct engine *e, struct qmp_client *c, struct md_domain *dom,
                               const struct md_lock *lock, struct md_tree *t, const char *domain, const char *name,
                               struct intent *it, bool recovering, struct qs_error **err);
/* Whether engine_qemu_start can build DOM's command line (every disk's option found and pointable): asked
 * before QEMU is quit, so that an operation that could not start it again changes nothing. */
int engine_qemu_check_start(const struct md_domain *dom, struct qs_error **err);
/* Starts the domain's QEMU (paused if asked) and connects: *c is the new client. */
int engine_qemu_start(struct engine *e, struct md_domain *dom, const struct md_lock *lock, bool paused,
                      struct qmp_client **c, struct qs_error **err);

/*
 * A list over tree T, which the list does not own: freeing the list calls RELEASE(OWNER) instead of
 * md_tree_free. PAUSE_US (-1: unknown) is given to every item. For session.c's shared, cached trees.
 */
/* enum engine_list_flags as enum md_list_flags (snapshot.c). */
unsigned list_flags_to_md(unsigned f);
struct engine_snapshot_list *engine_snapshot_list_wrap(const struct md_tree *t, const struct md_entry *const *entries,
                                                       size_t n, int64_t pause_us, void (*release)(void *owner),
                                                       void *owner);

#endif
