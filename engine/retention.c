/* retention.c: Proxmox Backup's prune marking (pbs-datastore prune.rs, compute_prune_info), in C. */
#include "retention.h"
#include "qs_buf.h"
#include "qs_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const rule_names[] = {
    [RET_LAST] = "keep-last",       [RET_HOURLY] = "keep-hourly", [RET_DAILY] = "keep-daily",
    [RET_WEEKLY] = "keep-weekly",   [RET_MONTHLY] = "keep-monthly", [RET_YEARLY] = "keep-yearly",
    [RET_MAX_AGE] = "max-age",      [RET_NONE] = "none",
};
_Static_assert(sizeof(rule_names) / sizeof(rule_names[0]) == RET__LAST, "rule_names");

const char *ret_rule_name(enum ret_rule r)
{
    return (unsigned)r < RET__LAST ? rule_names[r] : "none";
}

static const char *const period_words[] = {
    [RET_HOURLY] = "hour", [RET_DAILY] = "day", [RET_WEEKLY] = "week", [RET_MONTHLY] = "month", [RET_YEARLY] = "year",
};

static int rule_count(const struct engine_retention *k, enum ret_rule r)
{
    switch (r) {
    case RET_LAST: return k->keep_last;
    case RET_HOURLY: return k->keep_hourly;
    case RET_DAILY: return k->keep_daily;
    case RET_WEEKLY: return k->keep_weekly;
    case RET_MONTHLY: return k->keep_monthly;
    case RET_YEARLY: return k->keep_yearly;
    default: return 0;
    }
}

bool retention_any(const struct engine_retention *k)
{
    for (int r = RET_LAST; r <= RET_YEARLY; r++)
        if (rule_count(k, (enum ret_rule)r) > 0)
            return true;
    return k->max_age_s > 0;
}

static int item_cmp(const void *a, const void *b)
{
    const struct ret_item *x = a, *y = b;
    if (x->time != y->time)
        return x->time > y->time ? -1 : 1;
    return -strcmp(x->name, y->name);
}

/* The period of IT under rule R (Proxmox's strftime_local formats, with readable separators); its name for
 * keep-last, where every snapshot is a period of its own. */
static void period_of(const struct ret_item *it, enum ret_rule r, char *out, size_t len)
{
    time_t t = (time_t)it->time;
    struct tm tm;
    size_t k = 0;

    if (r != RET_LAST && localtime_r(&t, &tm)) {
        switch (r) {
        case RET_HOURLY: k = strftime(out, len, "%Y-%m-%d %H", &tm); break;
        case RET_DAILY: k = strftime(out, len, "%Y-%m-%d", &tm); break;
        case RET_WEEKLY: k = strftime(out, len, "%G-W%V", &tm); break;
        case RET_MONTHLY: k = strftime(out, len, "%Y-%m", &tm); break;
        case RET_YEARLY: k = strftime(out, len, "%Y", &tm); break;
        default: break;
        }
    }
    if (k == 0)
        snprintf(out, len, "%s", r == RET_LAST ? it->name : "?");
}

/* A sorted set of periods, for "already included" and "this rule kept it" lookups. */
struct period {
    char name[32];
    const char *by; /* the snapshot that holds the period (this rule's set only) */
};
struct period_set {
    struct period *v;
    size_t n, cap;
};

static ssize_t set_find(const struct period_set *s, const char *p)
{
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(s->v[mid].name, p);
        if (c == 0)
            return (ssize_t)mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -(ssize_t)lo - 1;
}

static void set_add(struct period_set *s, const char *p, const char *by)
{
    ssize_t at = set_find(s, p);
    size_t i;

    if (at >= 0)
        return;
    i = (size_t)(-at - 1);
    qs_xgrow((void **)&s->v, &s->cap, s->n + 1, sizeof(*s->v));
    memmove(&s->v[i + 1], &s->v[i], (s->n - i) * sizeof(*s->v));
    snprintf(s->v[i].name, sizeof(s->v[i].name), "%s", p);
    s->v[i].by = by;
    s->n++;
}

static void set_release(struct period_set *s)
{
    free(s->v);
    memset(s, 0, sizeof(*s));
}

/* Proxmox's mark_selections for one rule. Marks decided by earlier rules are final. */
static void mark_rule(struct ret_item *items, size_t n, enum ret_rule r, int keep)
{
    struct period_set included = {0}, kept = {0};
    char p[32];

    /* periods an earlier rule already kept a snapshot in do not count for this one */
    for (size_t i = 0; i < n; i++)
        if (items[i].mark == RET_KEEP) {
            period_of(&items[i], r, p, sizeof(p));
            set_add(&included, p, items[i].name);
        }
    for (size_t i = 0; i < n; i++) {
        struct ret_item *it = &items[i];
        ssize_t at;
        if (it->mark != RET_UNMARKED)
            continue;
        if (it->protect) {
            it->mark = RET_PROTECTED;
            continue;
        }
        period_of(it, r, p, sizeof(p));
        if (set_find(&included, p) >= 0)
            continue;
        if ((at = set_find(&kept, p)) < 0) {
            if (kept.n >= (size_t)keep)
                break;
            set_add(&kept, p, it->name);
            it->mark = RET_KEEP;
            it->rank = (int)kept.n;
        } else {
            it->mark = RET_REMOVE;
            it->by = kept.v[at].by;
        }
        it->rule = r;
        snprintf(it->bucket, sizeof(it->bucket), "%s", p);
    }
    set_release(&included);
    set_release(&kept);
}

void retention_apply(struct ret_item *items, size_t n, const struct engine_retention *keep, int64_t now)
{
    bool any = false;

    qsort(items, n, sizeof(*items), item_cmp);
    for (size_t i = 0; i < n; i++) {
        items[i].mark = RET_UNMARKED;
        items[i].rule = RET_NONE;
        items[i].bucket[0] = '\0';
        items[i].rank = 0;
        items[i].by = NULL;
        items[i].expired = false;
    }
    for (int r = RET_LAST; r <= RET_YEARLY; r++) {
        int k = rule_count(keep, (enum ret_rule)r);
        if (k > 0) {
            mark_rule(items, n, (enum ret_rule)r, k);
            any = true;
        }
    }
    for (size_t i = 0; i < n; i++) {
        struct ret_item *it = &items[i];
        if (it->protect) {
            it->mark = RET_PROTECTED;
            continue;
        }
        if (it->mark == RET_UNMARKED)
            it->mark = any ? RET_REMOVE : RET_KEEP;
        if (keep->max_age_s > 0 && it->mark == RET_KEEP && it->time < now - keep->max_age_s) {
            it->mark = RET_REMOVE;
            it->expired = true;
            if (!any)
                it->rule = RET_MAX_AGE;
        }
    }
}

static void age_format(struct qs_buf *b, int64_t s)
{
    static const struct {
        int64_t secs;
        const char *unit;
    } units[] = {{86400 * 7, "w"}, {86400, "d"}, {3600, "h"}, {60, "m"}, {1, "s"}};
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
        if (s % units[i].secs == 0) {
            qs_buf_addf(b, "%lld%s", (long long)(s / units[i].secs), units[i].unit);
            return;
        }
}

char *retention_reason(const struct ret_item *it, const struct engine_retention *keep)
{
    struct qs_buf b;
    bool first = true;

    qs_buf_init(&b, 0);
    if (it->mark == RET_PROTECTED) {
        qs_buf_adds(&b, "protected");
    } else if (it->mark == RET_KEEP && it->rule == RET_NONE) {
        qs_buf_adds(&b, keep->max_age_s > 0 ? "younger than max-age " : "no retention rule set");
        if (keep->max_age_s > 0)
            age_format(&b, keep->max_age_s);
    } else if (it->mark == RET_KEEP || (it->mark == RET_REMOVE && it->expired && it->rule != RET_MAX_AGE)) {
        if (it->expired) {
            qs_buf_adds(&b, "older than max-age ");
            age_format(&b, keep->max_age_s);
            qs_buf_adds(&b, ", which overrides ");
        }
        if (it->rule == RET_LAST)
            qs_buf_addf(&b, "keep-last (%d of %d)", it->rank, keep->keep_last);
        else
            qs_buf_addf(&b, "%s: newest of %s %s (%d of %d)", ret_rule_name(it->rule), period_words[it->rule],
                        it->bucket, it->rank, rule_count(keep, it->rule));
    } else if (it->rule == RET_MAX_AGE) {
        qs_buf_adds(&b, "older than max-age ");
        age_format(&b, keep->max_age_s);
    } else if (it->by) {
        qs_buf_addf(&b, "%s: %s %s is kept by newer '%s'", ret_rule_name(it->rule), period_words[it->rule],
                    it->bucket, it->by);
    } else {
        qs_buf_adds(&b, "outside every rule (");
        for (int r = RET_LAST; r <= RET_YEARLY; r++) {
            int k = rule_count(keep, (enum ret_rule)r);
            if (k <= 0)
                continue;
            qs_buf_addf(&b, "%s%s %d", first ? "" : ", ", ret_rule_name((enum ret_rule)r), k);
            first = false;
        }
        qs_buf_adds(&b, " used by newer snapshots)");
    }
    return qs_buf_detach(&b, NULL);
}
