/* cmd_schedule.c: schedules, their runner, prune, protected snapshots and the event log. */
#include "cli.h"
#include "json_out.h"
#include "qs_buf.h"
#include "qs_util.h"
#include "vsh_output.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define OPT_DOMAIN {"domain", CLI_OPT_STRING, CLI_OPT_REQUIRED, "domain name"}
#define OPT_END {NULL, 0, 0, NULL}
#define KEEP_MAX 1000000

/* The engine and the domain, looked up first ("failed to get domain 'X'"). */
static int print_buf(const struct qs_buf *b)
{
    if (vsh_buf_write(stdout, b) < 0) {
        cli_failf("cannot write output: %s", strerror(errno));
        return CLI_EXIT_FAILED;
    }
    return CLI_EXIT_OK;
}

/* Local time as virsh prints creation times, into BUF; "-" for T <= 0. */
static const char *when(char *buf, size_t len, int64_t t)
{
    struct qs_buf b;

    if (t <= 0)
        return "-";
    qs_buf_init(&b, 0);
    vsh_time_format((long long)t, &b);
    snprintf(buf, len, "%s", b.data ? b.data : "-");
    qs_buf_release(&b);
    return buf;
}

/* --keep-* and --max-age into KEEP; *any tells whether one was given. false after a usage error. */
static bool retention_args(const struct cli_args *args, struct engine_retention *keep, bool *any)
{
    static const char *const names[] = {"keep-last", "keep-hourly", "keep-daily", "keep-weekly", "keep-monthly",
                                        "keep-yearly"};
    int *slots[] = {&keep->keep_last, &keep->keep_hourly, &keep->keep_daily, &keep->keep_weekly,
                    &keep->keep_monthly, &keep->keep_yearly};
    const char *age = cli_args_str(args, "max-age");
    struct qs_error *err = NULL;

    memset(keep, 0, sizeof(*keep));
    *any = false;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        const char *v = cli_args_str(args, names[i]);
        char *end;
        long n;
        if (!v)
            continue;
        errno = 0;
        n = strtol(v, &end, 10);
        if (*v < '0' || *v > '9' || errno || *end || n > KEEP_MAX) {
            cli_failf("--%s must be a number from 0 to %d, not '%s'", names[i], KEEP_MAX, v);
            return false;
        }
        *slots[i] = (int)n;
        *any = true;
    }
    if (age) {
        if (engine_duration_parse(age, &keep->max_age_s, &err) < 0) {
            cli_failf("--max-age: %s", err->message);
            qs_error_free(err);
            return false;
        }
        *any = true;
    }
    return true;
}

/* "last=3 hourly=24 ... max-age=30d", or "none". */
static void retention_text(struct qs_buf *b, const struct engine_retention *k)
{
    const struct {
        const char *name;
        int v;
    } r[] = {{"last", k->keep_last},     {"hourly", k->keep_hourly},   {"daily", k->keep_daily},
             {"weekly", k->keep_weekly}, {"monthly", k->keep_monthly}, {"yearly", k->keep_yearly}};
    size_t start = b->len;

    for (size_t i = 0; i < sizeof(r) / sizeof(r[0]); i++)
        if (r[i].v > 0)
            qs_buf_addf(b, "%s%s=%d", b->len > start ? " " : "", r[i].name, r[i].v);
    if (k->max_age_s > 0)
        qs_buf_addf(b, "%smax-age=%llds", b->len > start ? " " : "", (long long)k->max_age_s);
    if (b->len == start)
        qs_buf_adds(b, "none");
}

static void json_retention(struct json_out *j, const struct engine_retention *k)
{
    json_out_key(j, "keep");
    json_out_object_begin(j);
    json_out_kv_int(j, "last", k->keep_last);
    json_out_kv_int(j, "hourly", k->keep_hourly);
    json_out_kv_int(j, "daily", k->keep_daily);
    json_out_kv_int(j, "weekly", k->keep_weekly);
    json_out_kv_int(j, "monthly", k->keep_monthly);
    json_out_kv_int(j, "yearly", k->keep_yearly);
    json_out_kv_int(j, "max_age_s", k->max_age_s);
    json_out_object_end(j);
}

/* ------------------------------------------------------------------------------------------------ */
/* schedule-set, schedule-list, schedule-remove */

static int cmd_schedule_set(struct cli_ctx *ctx, const struct cli_args *args)
{
    const char *domain = cli_args_str(args, "domain"), *kind = cli_args_str(args, "kind");
    const char *free_pct = cli_args_str(args, "min-free");
    struct engine_schedule s = {0}, *list = NULL;
    struct qs_error *err = NULL;
    struct engine *e;
    char buf[64];
    size_t n = 0;
    bool any;
    int k;

    s.name = (char *)cli_args_str(args, "name");
    s.cron = (char *)cli_args_str(args, "cron");
    s.pattern = (char *)cli_args_str(args, "pattern");
    s.quiesce = cli_args_bool(args, "quiesce");
    s.offline = cli_args_bool(args, "offline");
    if (kind && (k = engine_schedule_kind_from_name(kind)) < 0) {
        cli_failf("--kind must be internal, disk-only, live or memspec, not '%s'", kind);
        return CLI_EXIT_USAGE;
    }
    s.kind = kind ? (enum engine_schedule_kind)k : ENGINE_SCHEDULE_INTERNAL;
    if (!retention_args(args, &s.keep, &any))
        return CLI_EXIT_USAGE;
    if (free_pct) {
        char *end;
        long v = strtol(free_pct, &end, 10);
        if (*free_pct < '0' || *free_pct > '9' || *end || v > 99) {
            cli_failf("--min-free must be a percentage from 0 to 99, not '%s'", free_pct);
            return CLI_EXIT_USAGE;
        }
        s.min_free_pct = (int)v;
    }
    if (!(e = cli_domain_engine(ctx, domain)))
        return CLI_EXIT_FAILED;
    if (engine_schedule_set(e, domain, &s, &err) < 0)
        return cli_fail(ctx, &err);
    if (!ctx->quiet && engine_schedule_list(e, domain, &list, &n, &err) == 0) {
        for (size_t i = 0; i < n; i++)
            if (strcmp(list[i].name, s.name) == 0)
                printf("Schedule %s of domain %s set: %s, next at %s\n", s.name, domain, list[i].expanded,
                       when(buf, sizeof(buf), list[i].next_slot));
    }
    qs_error_free(err);
    engine_schedule_list_free(list, n);
    return CLI_EXIT_OK;
}

/* "ok 2024-03-05 10:17:00 +0100 (auto-...)", "failed ...: ERROR", "-". */
static void last_text(struct qs_buf *b, const struct engine_schedule *s)
{
    char buf[64];

    if (!s->last_result) {
        qs_buf_adds(b, "-");
        return;
    }
    qs_buf_addf(b, "%s %s", s->last_result, when(buf, sizeof(buf), s->last_run));
    if (s->last_snapshot && strcmp(s->last_result, "ok") == 0)
        qs_buf_addf(b, " (%s)", s->last_snapshot);
    if (s->last_error)
        qs_buf_addf(b, ": %s", s->last_error);
}

static int cmd_schedule_list(struct cli_ctx *ctx, const struct cli_args *args)
{
    const char *domain = cli_args_str(args, "domain");
    static const char *const header[] = {"Domain", "Schedule", "Cron", "Kind", "Retention", "Next", "Last"};
    struct engine_schedule *v = NULL;
    struct qs_error *err = NULL;
    struct engine *e = cli_domain_engine(ctx, domain);
    struct qs_buf out;
    size_t n = 0;
    int ret = CLI_EXIT_FAILED;

    qs_buf_init(&out, 0);
    if (!e)
        goto out;
    if (engine_schedule_list(e, domain, &v, &n, &err) < 0) {
        ret = cli_fail(ctx, &err);
        goto out;
    }
    if (cli_args_bool(args, "json")) {
        struct json_out j;
        json_out_init(&j, &out);
        json_out_array_begin(&j);
        for (size_t i = 0; i < n; i++) {
            const struct engine_schedule *s = &v[i];
            json_out_object_begin(&j);
            json_out_kv_string(&j, "domain", s->domain);
            json_out_kv_string(&j, "name", s->name);
            json_out_kv_string(&j, "cron", s->cron);
            json_out_kv_string(&j, "expanded", s->expanded);
            json_out_kv_string(&j, "kind", engine_schedule_kind_name(s->kind));
            json_out_kv_bool(&j, "quiesce", s->quiesce);
            json_out_kv_string(&j, "pattern", s->pattern ? s->pattern : "auto-%Y%m%d-%H%M");
            json_out_kv_bool(&j, "offline", s->offline);
            json_retention(&j, &s->keep);
            json_out_kv_int(&j, "min_free_pct", s->min_free_pct ? s->min_free_pct : 10);
            json_out_kv_int(&j, "created", s->created);
            json_out_kv_int(&j, "next_slot", s->next_slot);
            json_out_kv_int(&j, "last_slot", s->last_slot);
            json_out_kv_int(&j, "last_run", s->last_run);
            json_out_kv_string(&j, "last_result", s->last_result);
            json_out_kv_string(&j, "last_error", s->last_error);
            json_out_kv_string(&j, "last_snapshot", s->last_snapshot);
            json_out_object_end(&j);
        }
        json_out_array_end(&j);
    } else {
        struct vsh_table *t = vsh_table_new(7, header);
        for (size_t i = 0; i < n; i++) {
            const struct engine_schedule *s = &v[i];
            struct qs_buf cron, keep, last;
            char next[64];
            qs_buf_init(&cron, 0);
            qs_buf_init(&keep, 0);
            qs_buf_init(&last, 0);
            qs_buf_adds(&cron, s->cron);
            if (s->expanded && strcmp(s->expanded, s->cron) != 0)
                qs_buf_addf(&cron, " (%s)", s->expanded);
            retention_text(&keep, &s->keep);
            last_text(&last, s);
            vsh_table_add_row(t, (const char *const[]){s->domain, s->name, cron.data,
                                                       engine_schedule_kind_name(s->kind), keep.data,
                                                       when(next, sizeof(next), s->next_slot), last.data});
            qs_buf_release(&cron);
            qs_buf_release(&keep);
            qs_buf_release(&last);
        }
        vsh_table_format(t, !ctx->quiet, &out);
        vsh_table_free(t);
    }
    ret = print_buf(&out);
out:
    qs_buf_release(&out);
    engine_schedule_list_free(v, n);
    return ret;
}

static int cmd_schedule_remove(struct cli_ctx *ctx, const struct cli_args *args)
{
    const char *domain = cli_args_str(args, "domain"), *name = cli_args_str(args, "name");
    struct qs_error *err = NULL;
    struct engine *e = cli_domain_engine(ctx, domain);

    if (!e)
        return CLI_EXIT_FAILED;
    if (engine_schedule_remove(e, domain, name, &err) < 0)
        return cli_fail(ctx, &err);
    if (!ctx->quiet)
        printf("Schedule %s of domain %s removed\n", name, domain);
    return CLI_EXIT_OK;
}

/* ------------------------------------------------------------------------------------------------ */
/* schedule-run */

static int cmd_schedule_run(struct cli_ctx *ctx, const struct cli_args *args)
{
    const char *domain = cli_args_str(args, "domain"), *schedule = cli_args_str(args, "schedule");
    bool due = cli_args_bool(args, "due"), json = cli_args_bool(args, "json");
    struct engine_run *runs = NULL;
    struct qs_error *err = NULL;
    struct engine *e;
    struct qs_buf out;
    size_t n = 0;
    int r, ret = CLI_EXIT_FAILED;

    if (!due && !domain) {
        cli_failf("schedule-run needs --due, or a domain (and --schedule) to run now");
        return CLI_EXIT_USAGE;
    }
    if (schedule && !domain) {
        cli_failf("--schedule needs a domain");
        return CLI_EXIT_USAGE;
    }
    if (!(e = cli_domain_engine(ctx, domain)))
        return CLI_EXIT_FAILED;
    qs_buf_init(&out, 0);
    r = engine_schedule_run(e, domain, schedule, due ? ENGINE_RUN_DUE : 0, &runs, &n, &err);
    if (json) {
        struct json_out j;
        json_out_init(&j, &out);
        json_out_array_begin(&j);
        for (size_t i = 0; i < n; i++) {
            json_out_object_begin(&j);
            json_out_kv_string(&j, "domain", runs[i].domain);
            json_out_kv_string(&j, "schedule", runs[i].schedule);
            json_out_kv_string(&j, "outcome", runs[i].outcome);
            json_out_kv_int(&j, "slot", runs[i].slot);
            json_out_kv_int(&j, "missed", runs[i].missed);
            json_out_kv_string(&j, "snapshot", runs[i].snapshot);
            json_out_kv_string(&j, "reason", runs[i].reason);
            json_out_kv_string(&j, "error", runs[i].error);
            json_out_kv_int(&j, "pruned", runs[i].pruned);
            json_out_object_end(&j);
        }
        json_out_array_end(&j);
    } else {
        /* one line per run; nothing when nothing was due (the timer runs every minute) */
        for (size_t i = 0; i < n; i++) {
            const struct engine_run *x = &runs[i];
            qs_buf_addf(&out, "%s/%s: ", x->domain, x->schedule ? x->schedule : "*");
            if (x->snapshot)
                qs_buf_addf(&out, "took %s (%s)", x->snapshot, x->reason);
            else
                qs_buf_addf(&out, "%s%s%s", x->outcome, x->reason ? " - " : "", x->reason ? x->reason : "");
            if (x->pruned)
                qs_buf_addf(&out, ", pruned %d", x->pruned);
            if (x->error)
                qs_buf_addf(&out, "%s %s", x->snapshot ? "; failed:" : ":", x->error);
            qs_buf_adds(&out, "\n");
        }
    }
    ret = print_buf(&out);
    if (r < 0)
        ret = cli_fail(ctx, &err);
    qs_buf_release(&out);
    engine_run_list_free(runs, n);
    return ret;
}

/* ------------------------------------------------------------------------------------------------ */
/* snapshot-prune, snapshot-protect */

static int cmd_prune(struct cli_ctx *ctx, const struct cli_args *args)
{
    const char *domain = cli_args_str(args, "domain"), *schedule = cli_args_str(args, "schedule");
    static const char *const header[] = {"Snapshot", "Creation Time", "Schedule", "Action", "Reason"};
    bool dry = cli_args_bool(args, "dry-run"), manual = cli_args_bool(args, "manual"), any;
    struct engine_prune_item *v = NULL;
    struct engine_retention keep;
    struct qs_error *err = NULL;
    struct engine *e;
    struct qs_buf out;
    size_t n = 0, cnt[ENGINE_PRUNE_ACTION__LAST] = {0};
    unsigned flags = (dry ? ENGINE_PRUNE_DRY_RUN : 0) | (manual ? ENGINE_PRUNE_MANUAL : 0);
    int r, ret = CLI_EXIT_FAILED;

    if (cli_args_exclusive(args, "manual", "schedule"))
        return CLI_EXIT_USAGE;
    if (!retention_args(args, &keep, &any))
        return CLI_EXIT_USAGE;
    if (manual && !any) {
        cli_failf("--manual needs retention rules (--keep-last N, ..., --max-age)");
        return CLI_EXIT_USAGE;
    }
    if (!(e = cli_domain_engine(ctx, domain)))
        return CLI_EXIT_FAILED;
    qs_buf_init(&out, 0);
    r = engine_snapshot_prune(e, domain, schedule, any ? &keep : NULL, flags, &v, &n, &err);
    if (r < 0 && n == 0) {
        ret = cli_fail(ctx, &err);
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        cnt[v[i].action]++;
    if (cli_args_bool(args, "json")) {
        struct json_out j;
        json_out_init(&j, &out);
        json_out_array_begin(&j);
        for (size_t i = 0; i < n; i++) {
            json_out_object_begin(&j);
            json_out_kv_string(&j, "snapshot", v[i].snapshot);
            json_out_kv_int(&j, "creation_time", v[i].creation_time);
            json_out_kv_string(&j, "schedule", v[i].schedule);
            json_out_kv_string(&j, "location", v[i].location);
            json_out_kv_string(&j, "action", engine_prune_action_name(v[i].action));
            json_out_kv_string(&j, "rule", v[i].rule);
            json_out_kv_string(&j, "reason", v[i].reason);
            json_out_kv_string(&j, "error", v[i].error);
            json_out_kv_bool(&j, "dry_run", dry);
            json_out_object_end(&j);
        }
        json_out_array_end(&j);
    } else {
        struct vsh_table *t = vsh_table_new(5, header);
        for (size_t i = 0; i < n; i++) {
            char tm[64];
            struct qs_buf why;
            qs_buf_init(&why, 0);
            qs_buf_adds(&why, v[i].reason);
            if (v[i].action == ENGINE_PRUNE_REMOVE && strcmp(v[i].location, "external") == 0)
                qs_buf_adds(&why, dry ? "; its overlay would be merged" : "; its overlay merged");
            if (v[i].error)
                qs_buf_addf(&why, "; not removed: %s", v[i].error);
            vsh_table_add_row(t, (const char *const[]){v[i].snapshot, when(tm, sizeof(tm), v[i].creation_time),
                                                       v[i].schedule ? v[i].schedule : "(manual)",
                                                       engine_prune_action_name(v[i].action), why.data});
            qs_buf_release(&why);
        }
        vsh_table_format(t, !ctx->quiet, &out);
        vsh_table_free(t);
        if (!ctx->quiet)
            qs_buf_addf(&out, "%s: keep %zu, protected %zu, %s %zu\n", dry ? "Dry run" : "Pruned",
                        cnt[ENGINE_PRUNE_KEEP], cnt[ENGINE_PRUNE_PROTECTED], dry ? "would remove" : "removed",
                        cnt[ENGINE_PRUNE_REMOVE]);
        if (!ctx->quiet && cnt[ENGINE_PRUNE_KEPT])
            qs_buf_addf(&out, "%zu snapshot%s kept because %s delete was refused or failed\n",
                        cnt[ENGINE_PRUNE_KEPT], cnt[ENGINE_PRUNE_KEPT] == 1 ? "" : "s",
                        cnt[ENGINE_PRUNE_KEPT] == 1 ? "its" : "their");
    }
    ret = print_buf(&out);
    if (r < 0)
        ret = cli_fail(ctx, &err);
out:
    qs_buf_release(&out);
    engine_prune_list_free(v, n);
    return ret;
}

static int cmd_protect(struct cli_ctx *ctx, const struct cli_args *args)
{
    const char *domain = cli_args_str(args, "domain"), *name = cli_args_str(args, "snapshotname");
    bool off = cli_args_bool(args, "unprotect");
    struct qs_error *err = NULL;
    struct engine *e = cli_domain_engine(ctx, domain);

    if (!e)
        return CLI_EXIT_FAILED;
    if (engine_snapshot_protect(e, domain, name, !off, &err) < 0)
        return cli_fail(ctx, &err);
    if (!ctx->quiet)
        printf("Domain snapshot %s %s\n", name, off ? "unprotected" : "protected");
    return CLI_EXIT_OK;
}

/* ------------------------------------------------------------------------------------------------ */
/* events */

static int cmd_events(struct cli_ctx *ctx, const struct cli_args *args)
{
    const char *domain = cli_args_str(args, "domain"), *since = cli_args_str(args, "since");
    static const char *const header[] = {"Time", "Operation", "Snapshot", "Outcome", "Duration", "Pause", "By",
                                         "Detail"};
    struct engine_event *v = NULL;
    struct qs_error *err = NULL;
    struct engine *e = cli_domain_engine(ctx, domain);
    struct qs_buf out;
    int64_t since_ms = 0;
    size_t n = 0;
    int ret = CLI_EXIT_FAILED;

    qs_buf_init(&out, 0);
    if (!e)
        goto out;
    if (since && engine_time_parse(e, since, &since_ms, &err) < 0) {
        cli_failf("--since: %s", err->message);
        qs_error_free(err);
        ret = CLI_EXIT_USAGE;
        goto out;
    }
    if (engine_events_read(e, domain, since_ms, &v, &n, &err) < 0) {
        ret = cli_fail(ctx, &err);
        goto out;
    }
    if (cli_args_bool(args, "json")) {
        struct json_out j;
        json_out_init(&j, &out);
        json_out_array_begin(&j);
        for (size_t i = 0; i < n; i++) {
            json_out_object_begin(&j);
            json_out_kv_int(&j, "time_ms", v[i].time_ms);
            json_out_kv_string(&j, "op", v[i].op);
            json_out_kv_string(&j, "snapshot", v[i].snapshot);
            json_out_kv_string(&j, "outcome", v[i].outcome);
            json_out_kv_int(&j, "duration_ms", v[i].duration_ms);
            json_out_kv_string(&j, "error", v[i].error);
            if (v[i].pause_us >= 0)
                json_out_kv_int(&j, "pause_us", v[i].pause_us);
            else {
                json_out_key(&j, "pause_us");
                json_out_null(&j);
            }
            json_out_kv_int(&j, "uid", v[i].uid);
            json_out_kv_int(&j, "pid", v[i].pid);
            json_out_kv_string(&j, "requester", v[i].requester);
            json_out_kv_string(&j, "schedule", v[i].schedule);
            json_out_kv_string(&j, "detail", v[i].detail);
            json_out_object_end(&j);
        }
        json_out_array_end(&j);
    } else {
        struct vsh_table *t = vsh_table_new(8, header);
        for (size_t i = 0; i < n; i++) {
            const struct engine_event *x = &v[i];
            char tm[64], dur[32], pause[32];
            struct qs_buf by, detail;
            qs_buf_init(&by, 0);
            qs_buf_init(&detail, 0);
            snprintf(dur, sizeof(dur), "%lld ms", (long long)x->duration_ms);
            if (x->pause_us >= 0)
                snprintf(pause, sizeof(pause), "%.1f ms", (double)x->pause_us / 1000.0);
            else
                snprintf(pause, sizeof(pause), "-");
            qs_buf_addf(&by, "uid %ld", x->uid);
            if (x->requester)
                qs_buf_addf(&by, ", token %s", x->requester);
            if (x->schedule)
                qs_buf_addf(&by, ", schedule %s", x->schedule);
            if (x->detail)
                qs_buf_adds(&detail, x->detail);
            if (x->error)
                qs_buf_addf(&detail, "%serror: %s", x->detail ? "; " : "", x->error);
            vsh_table_add_row(t, (const char *const[]){when(tm, sizeof(tm), x->time_ms / 1000), x->op,
                                                       x->snapshot ? x->snapshot : "-", x->outcome, dur, pause,
                                                       by.data, detail.data});
            qs_buf_release(&by);
            qs_buf_release(&detail);
        }
        vsh_table_format(t, !ctx->quiet, &out);
        vsh_table_free(t);
    }
    ret = print_buf(&out);
out:
    qs_buf_release(&out);
    engine_event_list_free(v, n);
    return ret;
}

/* ------------------------------------------------------------------------------------------------ */
/* The table. */

#define KEEP_OPTS                                                                                          \
    {"keep-last", CLI_OPT_STRING, CLI_OPT_NAMED, "keep the newest N snapshots"},                           \
    {"keep-hourly", CLI_OPT_STRING, CLI_OPT_NAMED, "keep the newest snapshot of each of the last N hours"},  \
    {"keep-daily", CLI_OPT_STRING, CLI_OPT_NAMED, "keep the newest snapshot of each of the last N days"},    \
    {"keep-weekly", CLI_OPT_STRING, CLI_OPT_NAMED, "keep the newest snapshot of each of the last N ISO weeks"}, \
    {"keep-monthly", CLI_OPT_STRING, CLI_OPT_NAMED, "keep the newest snapshot of each of the last N months"}, \
    {"keep-yearly", CLI_OPT_STRING, CLI_OPT_NAMED, "keep the newest snapshot of each of the last N years"},  \
    {"max-age", CLI_OPT_STRING, CLI_OPT_NAMED, "remove snapshots older than this (30d, 12h, 2w, 1y)"}

static const struct cli_opt set_opts[] = {
    OPT_DOMAIN,
    {"name", CLI_OPT_STRING, CLI_OPT_REQUIRED, "schedule name"},
    {"cron", CLI_OPT_STRING, CLI_OPT_REQUIRED | CLI_OPT_NAMED,
     "when: 5 cron fields, or @hourly, @daily, @weekly, @monthly, @yearly (spread per domain)"},
    {"kind", CLI_OPT_STRING, CLI_OPT_NAMED, "internal (default), disk-only, live or memspec"},
    {"quiesce", CLI_OPT_BOOL, 0, "freeze the guest's filesystems through its agent (external kinds)"},
    {"pattern", CLI_OPT_STRING, CLI_OPT_NAMED, "snapshot name as strftime of the slot (default auto-%Y%m%d-%H%M)"},
    {"offline", CLI_OPT_BOOL, 0, "also snapshot the domain while it is shut off (disks only); default: skip"},
    KEEP_OPTS,
    {"min-free", CLI_OPT_STRING, CLI_OPT_NAMED, "prune before the snapshot below this percentage free (default 10)"},
    OPT_END,
};
static const struct cli_opt list_opts[] = {
    {"domain", CLI_OPT_STRING, 0, "domain name (default: every domain)"},
    {"json", CLI_OPT_BOOL, 0, "print JSON instead of a table"},
    OPT_END,
};
static const struct cli_opt remove_opts[] = {
    OPT_DOMAIN,
    {"name", CLI_OPT_STRING, CLI_OPT_REQUIRED, "schedule name"},
    OPT_END,
};
static const struct cli_opt run_opts[] = {
    {"domain", CLI_OPT_STRING, 0, "domain name (default with --due: every domain)"},
    {"schedule", CLI_OPT_STRING, CLI_OPT_NAMED, "only this schedule of the domain"},
    {"due", CLI_OPT_BOOL, 0, "only what is due, each once (what the systemd timer runs every minute)"},
    {"json", CLI_OPT_BOOL, 0, "print JSON instead of text"},
    OPT_END,
};
static const struct cli_opt prune_opts[] = {
    OPT_DOMAIN,
    {"schedule", CLI_OPT_STRING, CLI_OPT_NAMED, "only the snapshots this schedule made"},
    {"manual", CLI_OPT_BOOL, 0, "the snapshots no schedule made (needs --keep-* or --max-age)"},
    KEEP_OPTS,
    {"dry-run", CLI_OPT_BOOL, 0, "show what would be kept and removed, and why; remove nothing"},
    {"json", CLI_OPT_BOOL, 0, "print JSON instead of a table"},
    OPT_END,
};
static const struct cli_opt protect_opts[] = {
    OPT_DOMAIN,
    {"snapshotname", CLI_OPT_STRING, CLI_OPT_REQUIRED, "snapshot name"},
    {"unprotect", CLI_OPT_BOOL, 0, "remove the protection"},
    OPT_END,
};
static const struct cli_opt events_opts[] = {
    OPT_DOMAIN,
    {"since", CLI_OPT_STRING, CLI_OPT_NAMED, "only events from then on: @EPOCH, YYYY-MM-DD[ HH:MM[:SS]], or 2h, 7d ago"},
    {"json", CLI_OPT_BOOL, 0, "print JSON instead of a table"},
    OPT_END,
};

static const struct cli_cmd_def set_def = {
    "schedule-set", "Add or change a snapshot schedule",
    "Adds schedule NAME to the domain, or changes its settings (its run state stays): when it fires, the kind of "
    "snapshot, the name pattern, whether a shut-off domain is snapshotted, and the retention its runs prune by.",
    set_opts};
static const struct cli_cmd_def list_def = {
    "schedule-list", "List snapshot schedules",
    "Lists the schedules of the domain, or of every domain: the cron fields in effect, retention, the next slot and "
    "the last run's result.",
    list_opts};
static const struct cli_cmd_def remove_def = {"schedule-remove", "Remove a snapshot schedule",
                                              "Removes schedule NAME; the snapshots it made stay.", remove_opts};
static const struct cli_cmd_def run_def = {
    "schedule-run", "Run snapshot schedules",
    "With --due, takes each due snapshot once (one for all slots missed while nothing ran) and prunes by the "
    "schedule's retention; without it, runs the domain's schedules now. Runs of one domain never overlap.",
    run_opts};
static const struct cli_cmd_def prune_def = {
    "snapshot-prune", "Remove snapshots by retention rules",
    "Applies Proxmox Backup's retention rules to the snapshots each schedule made (or one schedule's, or with "
    "--manual the manual ones) and prints what is kept and removed, and why. Protected snapshots are kept.",
    prune_opts};
static const struct cli_cmd_def protect_def = {
    "snapshot-protect", "Protect a snapshot from prune and delete",
    "Marks the snapshot protected: no prune removes it and snapshot-delete refuses it without --force.",
    protect_opts};
static const struct cli_cmd_def events_def = {
    "events", "Show a domain's event log",
    "Shows every operation on the domain (create, revert, delete, prune, schedule runs, recovery) with its time, "
    "duration, outcome, the guest's pause and who asked.",
    events_opts};

const struct cli_command cli_schedule_commands[] = {
    {&set_def, cmd_schedule_set, 0},     {&list_def, cmd_schedule_list, 0},
    {&remove_def, cmd_schedule_remove, 0}, {&run_def, cmd_schedule_run, CLI_CMD_NO_END},
    {&prune_def, cmd_prune, 0},          {&protect_def, cmd_protect, 0},
    {&events_def, cmd_events, 0},
    {NULL, NULL, 0},
};
