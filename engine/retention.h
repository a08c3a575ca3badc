/* retention.h: which snapshots a prune keeps - Proxmox Backup's keep-last/-hourly/.../-yearly bucket rules, in
 * local time, plus a maximum age. Pure: no files, no QEMU. */
#ifndef QS_ENGINE_RETENTION_H
#define QS_ENGINE_RETENTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine.h"

/* The rules in the order they are applied; RET_MAX_AGE after them, RET_NONE when no rule decided. */
enum ret_rule { RET_LAST, RET_HOURLY, RET_DAILY, RET_WEEKLY, RET_MONTHLY, RET_YEARLY, RET_MAX_AGE, RET_NONE,
                RET__LAST };
/* "keep-last", ..., "keep-yearly", "max-age", "none". */
const char *ret_rule_name(enum ret_rule r);

enum ret_mark { RET_UNMARKED, RET_KEEP, RET_REMOVE, RET_PROTECTED };

/* One snapshot of a group: input fields, then what the rules decided. */
struct ret_item {
    const char *name;   /* borrowed */
    int64_t time;       /* creation time, seconds since the epoch */
    bool protect;       /* never removed, and fills no bucket (as Proxmox's protected backups) */
    void *opaque;       /* the caller's */
    enum ret_mark mark;
    enum ret_rule rule; /* the rule that kept or removed it */
    char bucket[32];    /* its period under that rule ("2024-03-05 10", "2024-W09", ...); "" when none */
    int rank;           /* KEEP: this bucket's place among the rule's (1 = newest) */
    const char *by;     /* REMOVE inside a rule's bucket: the newer snapshot that holds the bucket */
    bool expired;       /* a rule kept it, but it is older than the maximum age */
};

/*
 * Marks ITEMS (sorted here, newest first; equal times by name, greater first): Proxmox Backup's
 * compute_prune_info. Each rule in turn (keep-last, -hourly, -daily, -weekly (ISO weeks), -monthly,
 * -yearly; a count of 0 is no rule) walks the unmarked snapshots newest first and keeps the newest of each
 * period until it has kept COUNT periods; a snapshot in a period the same rule already kept is removed; a
 * period an earlier rule already kept a snapshot in does not count and its snapshots are left to later
 * rules; periods without snapshots do not count. Whatever is left unmarked is removed. Protected snapshots
 * are always kept. Periods are local time (so an hour a DST change repeats is one period). Then MAX_AGE_S
 * (0: none): a kept snapshot older than NOW - MAX_AGE_S is removed (expired). With no rule and no maximum
 * age everything is kept.
 */
void retention_apply(struct ret_item *items, size_t n, const struct engine_retention *keep, int64_t now);

/* Whether KEEP has any rule (a count above 0, or a maximum age). */
bool retention_any(const struct engine_retention *keep);

/* A one-line reason for IT's mark ("keep-daily: newest of 2024-03-05 (2 of 7)"). Caller frees. */
char *retention_reason(const struct ret_item *it, const struct engine_retention *keep);

#endif
