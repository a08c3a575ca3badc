/* fuzz_cron.c: libFuzzer harness: arbitrary text as a schedule's cron expression (what schedule-set and a
 * schedule file hand to cron_parse), then the slots it names must be real ones. */
#include "cron.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const int64_t from[] = {1709582400, 1711846800, 1729990800, 1735689540};
    struct qs_error *err = NULL;
    char *spec = malloc(size + 1), *expanded = NULL;
    struct cron c;

    memcpy(spec, data, size);
    spec[size] = '\0';
    if (cron_parse(&c, spec, "vm", &expanded, &err) == 0) {
        for (size_t i = 0; i < sizeof(from) / sizeof(from[0]); i++) {
            int64_t t = cron_next(&c, from[i]);
            time_t tt = (time_t)t;
            struct tm tm;
            long n;
            if (t < 0)
                continue;
            /* strictly later, and a minute and month the expression names (hours may move across a DST gap) */
            if (t <= from[i] || !localtime_r(&tt, &tm) || !(c.minutes & (1ull << tm.tm_min)) ||
                !(c.months & (1u << (tm.tm_mon + 1))))
                abort();
            if (cron_latest(&c, from[i], t + 3 * 86400, &n) < t || n < 1)
                abort();
        }
    }
    qs_error_free(err);
    free(expanded);
    free(spec);
    return 0;
}
