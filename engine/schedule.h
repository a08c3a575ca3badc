/* schedule.h: what schedule.c (policies, the runner) and prune.c (retention, protection) share, and the hooks
 * tests use to drive a year of runs in seconds. */
#ifndef QS_ENGINE_SCHEDULE_H
#define QS_ENGINE_SCHEDULE_H

#include <stdbool.h>
#include <stddef.h>

#include "engine_priv.h"

/* qsnap's keys in a snapshot's <cookie>: the schedule that made it, the slot it was taken for (seconds since
 * the epoch), and "yes" when it is protected. */
#define SCHED_COOKIE_SCHEDULE "schedule"
#define SCHED_COOKIE_SLOT "slot"
#define SCHED_COOKIE_PROTECTED "protected"

/* What statvfs says of DIR's filesystem: the percentage free to unprivileged users, -1 unknown. */
int sched_free_pct(const char *dir);

/* The default name pattern and free-space threshold of a schedule. */
#define SCHED_PATTERN_DEFAULT "auto-%Y%m%d-%H%M"
#define SCHED_MIN_FREE_DEFAULT 10

/*
 * How the runner and prune take and remove snapshots: the engine's own engine_snapshot_create and
 * engine_snapshot_delete unless a test sets e->sched_ops (metadata-only snapshots, so that a year of
 * hourly runs takes seconds; everything else - policies, slots, retention, protection, events - stays real).
 */
struct schedule_ops {
    int (*create)(struct engine *e, const char *domain, const char *xml, unsigned flags, char **name,
                  struct qs_error **err);
    int (*remove)(struct engine *e, const char *domain, const char *name, unsigned flags, struct qs_error **err);
    /* percentage of the filesystem holding DIR that is free, -1 unknown (NULL: statvfs) */
    int (*free_pct)(const char *dir);
};

/* DOMAIN's schedules as stored (ROOT/schedule/DOMAIN.json), by name; none when there is no file. Caller frees
 * with engine_schedule_list_free(). */
int sched_load(struct engine *e, const char *domain, struct engine_schedule **v, size_t *n, struct qs_error **err);

/* A prune of DOMAIN as engine_snapshot_prune, also counting the removals in *removed (may be NULL). */
int prune_run(struct engine *e, const char *domain, const char *schedule, const struct engine_retention *keep,
              unsigned flags, struct engine_prune_item **out, size_t *n, int *removed, struct qs_error **err);

#endif
