/* cron.c: cron expressions and @aliases, and the local-time slots they name. */
#include "cron.h"
#include "qs_buf.h"
#include "qs_util.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

enum cron_field { CRON_MIN, CRON_HOUR, CRON_MDAY, CRON_MON, CRON_WDAY, CRON__LAST };

static const struct {
    const char *name;
    int lo, hi;
    const char *const *names; /* names[i] is value lo + i */
} fields[] = {
    [CRON_MIN] = {"minute", 0, 59, NULL},
    [CRON_HOUR] = {"hour", 0, 23, NULL},
    [CRON_MDAY] = {"day of month", 1, 31, NULL},
    [CRON_MON] = {"month", 1, 12,
                  (const char *const[]){"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct",
                                        "nov", "dec", NULL}},
    [CRON_WDAY] = {"day of week", 0, 7, (const char *const[]){"sun", "mon", "tue", "wed", "thu", "fri", "sat", NULL}},
};
_Static_assert(sizeof(fields) / sizeof(fields[0]) == CRON__LAST, "fields");

/* A number or (months, weekdays) a three-letter name; -1 when S is neither. */
static int value_parse(const char *s, size_t len, enum cron_field f)
{
    int v = 0;

    if (len == 0 || len > 4)
        return -1;
    if (isdigit((unsigned char)s[0])) {
        for (size_t i = 0; i < len; i++) {
            if (!isdigit((unsigned char)s[i]))
                return -1;
            v = v * 10 + (s[i] - '0');
        }
        return v;
    }
    for (size_t i = 0; fields[f].names && fields[f].names[i]; i++)
        if (len == 3 && strncasecmp(s, fields[f].names[i], 3) == 0)
            return fields[f].lo + (int)i;
    return -1;
}

/* One field: a list of "*", "N" or "N-M", each with an optional "/STEP" ("N/STEP" runs N to the maximum). */
static int field_parse(const char *text, enum cron_field f, uint64_t *bits, bool *star, struct qs_error **err)
{
    int lo = fields[f].lo, hi = fields[f].hi;
    const char *p = text;

    *bits = 0;
    *star = text[0] == '*';
    for (;;) {
        const char *end = p + strcspn(p, ","), *slash = memchr(p, '/', (size_t)(end - p));
        const char *rend = slash ? slash : end, *dash = memchr(p, '-', (size_t)(rend - p));
        int a, b, step = 1;

        if (rend - p == 1 && *p == '*') {
            a = lo;
            b = f == CRON_WDAY ? 6 : hi;
        } else {
            a = value_parse(p, (size_t)((dash ? dash : rend) - p), f);
            b = dash ? value_parse(dash + 1, (size_t)(rend - dash - 1), f) : (slash ? hi : a);
            if (a < 0 || b < 0)
                goto bad;
            if (a < lo || a > hi || b < lo || b > hi) {
                qs_error_set(err, QS_ERR_INVALID, "cron %s '%.*s' is out of range %d-%d", fields[f].name,
                             (int)(rend - p), p, lo, hi);
                return -1;
            }
            if (a > b) {
                qs_error_set(err, QS_ERR_INVALID, "cron %s range '%.*s' runs backwards", fields[f].name,
                             (int)(rend - p), p);
                return -1;
            }
        }
        if (slash) {
            step = value_parse(slash + 1, (size_t)(end - slash - 1), CRON_MIN);
            if (step < 1 || step > hi) {
                qs_error_set(err, QS_ERR_INVALID, "cron %s step '%.*s' is not a number from 1 to %d",
                             fields[f].name, (int)(end - slash - 1), slash + 1, hi);
                return -1;
            }
        }
        for (int v = a; v <= b; v += step)
            *bits |= 1ull << (f == CRON_WDAY && v == 7 ? 0 : v);
        if (*end == '\0')
            return 0;
        p = end + 1;
    }
bad:
    qs_error_set(err, QS_ERR_INVALID, "cron %s '%s' is not valid (use *, N, N-M, lists with ',' and /STEP)",
                 fields[f].name, text);
    return -1;
}

/* FNV-1a: a stable spread of an alias's minute and hour per VM. */
static uint64_t seed_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; s && *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static char *alias_expand(const char *spec, const char *seed)
{
    static const struct {
        const char *alias, *rest;
    } aliases[] = {
        {"@hourly", NULL},        {"@daily", "* * *"},   {"@midnight", "* * *"}, {"@weekly", "* * 0"},
        {"@monthly", "1 * *"},    {"@yearly", "1 1 *"},  {"@annually", "1 1 *"},
    };
    uint64_t h = seed_hash(seed);
    unsigned minute = (unsigned)(h % 60), hour = (unsigned)((h / 60) % 24);

    for (size_t i = 0; i < sizeof(aliases) / sizeof(aliases[0]); i++) {
        if (strcasecmp(spec, aliases[i].alias) != 0)
            continue;
        if (!aliases[i].rest)
            return qs_asprintf("%u * * * *", minute);
        return qs_asprintf("%u %u %s", minute, hour, aliases[i].rest);
    }
    return NULL;
}

int cron_parse(struct cron *c, const char *spec, const char *seed, char **expanded, struct qs_error **err)
{
    char *text = NULL, *f[CRON__LAST + 1] = {0}, *save = NULL, *tok;
    uint64_t bits[CRON__LAST];
    bool star[CRON__LAST];
    size_t n = 0;
    int ret = -1;

    memset(c, 0, sizeof(*c));
    if (!spec || !*spec) {
        qs_error_set(err, QS_ERR_INVALID, "empty cron expression");
        return -1;
    }
    if (spec[0] == '@') {
        if (!(text = alias_expand(spec, seed))) {
            qs_error_set(err, QS_ERR_INVALID, "unknown cron alias '%s' (use @hourly, @daily, @weekly, @monthly or "
                         "@yearly)", spec);
            return -1;
        }
    } else {
        text = qs_xstrdup(spec);
    }
    for (tok = strtok_r(text, " \t", &save); tok; tok = strtok_r(NULL, " \t", &save)) {
        if (n == CRON__LAST) {
            n++;
            break;
        }
        f[n++] = tok;
    }
    if (n != CRON__LAST) {
        qs_error_set(err, QS_ERR_INVALID, "cron expression '%s' needs 5 fields (minute hour day-of-month month "
                     "day-of-week), or an @alias", spec);
        goto out;
    }
    for (int i = 0; i < CRON__LAST; i++)
        if (field_parse(f[i], (enum cron_field)i, &bits[i], &star[i], err) < 0)
            goto out;
    c->minutes = bits[CRON_MIN];
    c->hours = (uint32_t)bits[CRON_HOUR];
    c->mdays = (uint32_t)bits[CRON_MDAY];
    c->months = (uint16_t)bits[CRON_MON];
    c->wdays = (uint8_t)bits[CRON_WDAY];
    c->mday_star = star[CRON_MDAY];
    c->wday_star = star[CRON_WDAY];
    c->hour_star = star[CRON_HOUR];
    if (expanded)
        *expanded = qs_asprintf("%s %s %s %s %s", f[0], f[1], f[2], f[3], f[4]);
    ret = 0;
out:
    free(text);
    return ret;
}

/* ---- slots ---- */

static bool leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int month_days(int y, int m)
{
    static const int d[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && leap(y) ? 29 : d[m - 1];
}

/* Day of the week (Sunday 0) of a proleptic Gregorian date, without a time zone (Sakamoto's method). */
static int weekday(int y, int m, int d)
{
    static const int t[] = {0, 3, 2, 5, 0, 3, 5, 1, 4, 6, 2, 4};
    if (m < 3)
        y--;
    return (y + y / 4 - y / 100 + y / 400 + t[m - 1] + d) % 7;
}

static bool day_matches(const struct cron *c, int y, int m, int d)
{
    bool md = c->mdays & (1u << d), wd = c->wdays & (1u << weekday(y, m, d));

    if (!(c->months & (1u << m)))
        return false;
    /* cron: when both day fields are restricted, a day matching either fires */
    return c->mday_star || c->wday_star ? md && wd : md || wd;
}

int64_t cron_next(const struct cron *c, int64_t t)
{
    time_t tt = (time_t)t;
    struct tm now;
    int y, m, d, first_hour;

    if (!localtime_r(&tt, &now))
        return -1;
    y = now.tm_year + 1900;
    m = now.tm_mon + 1;
    d = now.tm_mday;
    /* a wall time more than 3 hours before T's cannot come after T, whatever a DST change did */
    first_hour = now.tm_hour > 3 ? now.tm_hour - 3 : 0;
    for (int i = 0; i < 366 * 8 + 2; i++) {
        if (day_matches(c, y, m, d)) {
            for (int h = first_hour; h < 24; h++) {
                if (!(c->hours & (1u << h)))
                    continue;
                for (int mi = 0; mi < 60; mi++) {
                    struct tm x = {0};
                    time_t r;
                    if (!(c->minutes & (1ull << mi)))
                        continue;
                    x.tm_year = y - 1900;
                    x.tm_mon = m - 1;
                    x.tm_mday = d;
                    x.tm_hour = h;
                    x.tm_min = mi;
                    x.tm_isdst = -1;
                    r = mktime(&x);
                    if (r != (time_t)-1 && (int64_t)r > t)
                        return (int64_t)r;
                }
            }
        }
        first_hour = 0;
        if (++d > month_days(y, m)) {
            d = 1;
            if (++m > 12) {
                m = 1;
                y++;
            }
        }
    }
    return -1;
}

int64_t cron_latest(const struct cron *c, int64_t from, int64_t now, long *count)
{
    static const int64_t windows[] = {3600, 86400, 86400 * 32, 86400 * 367, 86400LL * 366 * 8};
    int64_t s = cron_next(c, from), nx;
    long n = 0;

    if (count)
        *count = 0;
    if (s < 0 || s > now)
        return -1;
    for (n = 1; n < CRON_COUNT_MAX && (nx = cron_next(c, s)) >= 0 && nx <= now; n++)
        s = nx;
    if (count)
        *count = n;
    if (n < CRON_COUNT_MAX)
        return s;
    /* too many to walk: find the last one from a window just before NOW */
    for (size_t i = 0; i < sizeof(windows) / sizeof(windows[0]); i++) {
        int64_t w = cron_next(c, now - windows[i] > s ? now - windows[i] : s);
        if (w < 0 || w > now)
            continue;
        while ((nx = cron_next(c, w)) >= 0 && nx <= now)
            w = nx;
        return w;
    }
    return s;
}
