/* cron.h: when a schedule fires - cron expressions (5 fields) and @aliases, evaluated in local time. */
#ifndef QS_ENGINE_CRON_H
#define QS_ENGINE_CRON_H

#include <stdbool.h>
#include <stdint.h>

#include "qs_error.h"

/* A parsed expression: one bit per allowed value of each field. */
struct cron {
    uint64_t minutes; /* bit m, 0-59 */
    uint32_t hours;   /* bit h, 0-23 */
    uint32_t mdays;   /* bit d, 1-31 */
    uint16_t months;  /* bit m, 1-12 */
    uint8_t wdays;    /* bit w, 0-6 (Sunday 0; 7 is read as 0) */
    bool mday_star;   /* day-of-month was "*": with both day fields restricted either may match (cron's rule) */
    bool wday_star;
    bool hour_star;
};

/*
 * Parses SPEC: five fields "MIN HOUR DOM MON DOW" (each "*", N, N-M, a list of those with ",", any with
 * "/STEP"; months and weekdays also as jan..dec, sun..sat), or @hourly, @daily (@midnight), @weekly,
 * @monthly, @yearly (@annually). An alias gets a minute and hour spread by SEED (a stable hash of it, so
 * that VMs do not all fire at once): @hourly "M * * * *", @daily "M H * * *", @weekly "M H * * 0",
 * @monthly "M H 1 * *", @yearly "M H 1 1 *". *expanded (may be NULL) gets the five fields in effect; caller
 * frees. QS_ERR_INVALID naming the field for anything else.
 */
int cron_parse(struct cron *c, const char *spec, const char *seed, char **expanded, struct qs_error **err);

/*
 * The first slot strictly after T (seconds since the epoch), or -1 when none comes within 8 years. Slots
 * are local wall-clock times, each fired once: a time a DST change skips fires at the same wall time an
 * hour later (as mktime() normalises it), a time it repeats fires once.
 */
int64_t cron_next(const struct cron *c, int64_t t);

/*
 * The last slot at or before NOW that comes after FROM (the first such slot is cron_next(FROM)), or -1 when
 * there is none. *missed (may be NULL) gets how many slots after FROM and at or before NOW there are, at
 * most CRON_COUNT_MAX (more are reported as that).
 */
#define CRON_COUNT_MAX 10000
int64_t cron_latest(const struct cron *c, int64_t from, int64_t now, long *count);

#endif
