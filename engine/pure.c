/* pure.c: the engine's helpers that need no engine state - name tables, list frees, duration and time parsing -
 * compiled into libqsnap and into qsnap-remote alike, so that both answer them the same way. */
#include "pure.h"

#include "qs_util.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- domains ---- */

void engine_strv_free(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

static const char *const state_names[] = {
    [ENGINE_DOMAIN_NOSTATE] = "no state",       [ENGINE_DOMAIN_RUNNING] = "running",
    [ENGINE_DOMAIN_BLOCKED] = "idle",           [ENGINE_DOMAIN_PAUSED] = "paused",
    [ENGINE_DOMAIN_SHUTDOWN] = "in shutdown",   [ENGINE_DOMAIN_SHUTOFF] = "shut off",
    [ENGINE_DOMAIN_CRASHED] = "crashed",        [ENGINE_DOMAIN_PMSUSPENDED] = "pmsuspended",
};
_Static_assert(sizeof(state_names) / sizeof(state_names[0]) == ENGINE_DOMAIN_STATE__LAST, "state_names");

const char *engine_domain_state_name(enum engine_domain_state s)
{
    return (unsigned)s < ENGINE_DOMAIN_STATE__LAST ? state_names[s] : "no state";
}

/* ---- snapshot-check reports ---- */

size_t engine_check_report_count(const struct engine_check_report *r)
{
    return r ? r->n : 0;
}

const struct engine_check_item *engine_check_report_at(const struct engine_check_report *r, size_t i)
{
    return r && i < r->n ? &r->items[i] : NULL;
}

void engine_check_report_free(struct engine_check_report *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++) {
        free(r->items[i].kind);
        free(r->items[i].snapshot);
        free(r->items[i].disk);
        free(r->items[i].message);
        free(r->items[i].fix);
    }
    free(r->items);
    free(r);
}

const char *engine_check_item_kind(const struct engine_check_item *it) { return it->kind; }
const char *engine_check_item_snapshot(const struct engine_check_item *it) { return it->snapshot; }
const char *engine_check_item_disk(const struct engine_check_item *it) { return it->disk; }
const char *engine_check_item_message(const struct engine_check_item *it) { return it->message ? it->message : ""; }
const char *engine_check_item_fix(const struct engine_check_item *it) { return it->fix; }
bool engine_check_item_repaired(const struct engine_check_item *it) { return it->repaired; }
bool engine_check_item_is_note(const struct engine_check_item *it) { return it->note; }

/* ---- schedules ---- */

static const char *const kind_names[] = {
    [ENGINE_SCHEDULE_INTERNAL] = "internal", [ENGINE_SCHEDULE_DISK_ONLY] = "disk-only",
    [ENGINE_SCHEDULE_LIVE] = "live",         [ENGINE_SCHEDULE_MEMSPEC] = "memspec",
};
_Static_assert(sizeof(kind_names) / sizeof(kind_names[0]) == ENGINE_SCHEDULE_KIND__LAST, "kind_names");

const char *engine_schedule_kind_name(enum engine_schedule_kind k)
{
    return (unsigned)k < ENGINE_SCHEDULE_KIND__LAST ? kind_names[k] : NULL;
}

int engine_schedule_kind_from_name(const char *s)
{
    for (int k = 0; s && k < ENGINE_SCHEDULE_KIND__LAST; k++)
        if (strcmp(s, kind_names[k]) == 0)
            return k;
    return -1;
}

void sched_release(struct engine_schedule *s)
{
    free(s->domain);
    free(s->name);
    free(s->cron);
    free(s->pattern);
    free(s->expanded);
    free(s->last_result);
    free(s->last_error);
    free(s->last_snapshot);
    memset(s, 0, sizeof(*s));
}

void engine_schedule_list_free(struct engine_schedule *v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        sched_release(&v[i]);
    free(v);
}

void engine_run_list_free(struct engine_run *v, size_t n)
{
    for (size_t i = 0; v && i < n; i++) {
        free(v[i].domain);
        free(v[i].schedule);
        free(v[i].outcome);
        free(v[i].snapshot);
        free(v[i].reason);
        free(v[i].error);
    }
    free(v);
}

int engine_run_list_check(const struct engine_run *v, size_t n, struct qs_error **err)
{
    size_t failed = 0;
    int code = QS_ERR_BUSY;

    for (size_t i = 0; i < n; i++) {
        if (strcmp(v[i].outcome, "ok") == 0 || strcmp(v[i].outcome, "skipped") == 0)
            continue;
        failed++;
        if (strcmp(v[i].outcome, "busy") != 0)
            code = QS_ERR_STATE; /* BUSY only when every failure was a refusal for a run under way */
    }
    if (!failed)
        return 0;
    qs_error_set(err, code, "%zu of %zu schedule run%s failed", failed, n, n == 1 ? "" : "s");
    return -1;
}

/* ---- prune ---- */

static const char *const action_names[] = {
    [ENGINE_PRUNE_KEEP] = "keep",
    [ENGINE_PRUNE_REMOVE] = "remove",
    [ENGINE_PRUNE_PROTECTED] = "protected",
    [ENGINE_PRUNE_KEPT] = "kept",
};
_Static_assert(sizeof(action_names) / sizeof(action_names[0]) == ENGINE_PRUNE_ACTION__LAST, "action_names");

const char *engine_prune_action_name(enum engine_prune_action a)
{
    return (unsigned)a < ENGINE_PRUNE_ACTION__LAST ? action_names[a] : NULL;
}

void engine_prune_list_free(struct engine_prune_item *v, size_t n)
{
    for (size_t i = 0; v && i < n; i++) {
        free(v[i].snapshot);
        free(v[i].schedule);
        free(v[i].location);
        free(v[i].rule);
        free(v[i].reason);
        free(v[i].error);
    }
    free(v);
}

/* ---- the event log ---- */

void engine_event_list_free(struct engine_event *v, size_t n)
{
    for (size_t i = 0; v && i < n; i++) {
        free(v[i].op);
        free(v[i].snapshot);
        free(v[i].outcome);
        free(v[i].error);
        free(v[i].requester);
        free(v[i].schedule);
        free(v[i].detail);
    }
    free(v);
}

/* ---- durations and times ---- */

int engine_duration_parse(const char *text, int64_t *seconds, struct qs_error **err)
{
    static const struct {
        char unit;
        int64_t secs;
    } units[] = {{'s', 1}, {'m', 60}, {'h', 3600}, {'d', 86400}, {'w', 86400 * 7}, {'y', 86400 * 365}};
    const char *p = text;
    int64_t total = 0;

    if (!text || !*text)
        goto bad;
    while (*p) {
        int64_t v = 0, mul = 0;
        if (!isdigit((unsigned char)*p))
            goto bad;
        for (; isdigit((unsigned char)*p); p++) {
            if (v > INT64_MAX / 10 / 86400 / 366)
                goto bad;
            v = v * 10 + (*p - '0');
        }
        for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
            if (*p == units[i].unit)
                mul = units[i].secs;
        if (!mul)
            goto bad;
        total += v * mul;
        p++;
    }
    *seconds = total;
    return 0;
bad:
    qs_error_set(err, QS_ERR_INVALID, "invalid duration '%s' (use a number with s, m, h, d, w or y, e.g. 30d or 1d12h)",
                 text ? text : "");
    return -1;
}

int engine_time_parse_at(const char *text, int64_t now_ms, int64_t *ms, struct qs_error **err)
{
    struct tm tm = {0};
    const char *end;
    int64_t secs;
    time_t t;

    if (!text || !*text)
        goto bad;
    if (text[0] == '@') {
        char *e2;
        long long v;
        errno = 0;
        v = strtoll(text + 1, &e2, 10);
        if (errno || e2 == text + 1 || *e2)
            goto bad;
        *ms = (int64_t)v * 1000;
        return 0;
    }
    if (isdigit((unsigned char)text[0]) && strlen(text) >= 10 && text[4] == '-') {
        end = strptime(text, "%Y-%m-%d", &tm);
        if (end && (*end == ' ' || *end == 'T')) {
            const char *e2 = strptime(end + 1, "%H:%M:%S", &tm);
            end = e2 ? e2 : strptime(end + 1, "%H:%M", &tm);
        }
        if (!end || *end)
            goto bad;
        tm.tm_isdst = -1;
        if ((t = mktime(&tm)) == (time_t)-1)
            goto bad;
        *ms = (int64_t)t * 1000;
        return 0;
    }
    if (engine_duration_parse(text, &secs, NULL) == 0) {
        *ms = now_ms - secs * 1000;
        return 0;
    }
bad:
    qs_error_set(err, QS_ERR_INVALID, "invalid time '%s' (use @EPOCH, YYYY-MM-DD[ HH:MM[:SS]], or a duration ago "
                 "such as 2h or 7d)", text ? text : "");
    return -1;
}

/* ---- QEMU ---- */

void engine_qemu_info_release(struct engine_qemu_info *info)
{
    if (!info)
        return;
    free(info->version);
    free(info->package);
    qs_strv_free(info->features);
    memset(info, 0, sizeof(*info));
}
