/* test_schedule.c: schedules without QEMU - cron slots (aliases, DST, month ends), the retention rules against a
 * table of cases worked out by hand from Proxmox Backup's documented behaviour, and the runner on a clock the
 * test sets: a year of hourly runs, a missed run caught up once, protected and manual snapshots never pruned,
 * overlapping runs refused, a failed run retried at the next slot, prune first on a nearly full disk, and the
 * event log with its rotation (label unit). Snapshots are metadata only (redefined), so a year takes seconds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "cron.h"
#include "engine_priv.h"
#include "events.h"
#include "qs_buf.h"
#include "qs_util.h"
#include "retention.h"
#include "schedule.h"

#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Europe/Berlin's rules, spelled out so that no tzdata is needed: DST from the last Sunday of March 02:00 to
 * the last Sunday of October 03:00. */
#define TZ_BERLIN "CET-1CEST,M3.5.0,M10.5.0/3"

static void tz_berlin(void)
{
    setenv("TZ", TZ_BERLIN, 1);
    tzset();
}

/* "2024-03-31 03:30 +0200": an instant, unambiguous whatever the time zone. */
static int64_t at(const char *s)
{
    struct tm tm = {0};
    int y, mo, d, h, mi, oh, om;
    char sign;

    if (sscanf(s, "%d-%d-%d %d:%d %c%2d%2d", &y, &mo, &d, &h, &mi, &sign, &oh, &om) != 8)
        fail_msg("bad time '%s'", s);
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    return (int64_t)timegm(&tm) - (sign == '-' ? -1 : 1) * (oh * 3600 + om * 60);
}

/* ------------------------------------------------------------------------------------------------ */
/* cron */

static void test_cron_parse(void **state)
{
    static const char *const bad[] = {"60 * * * *", "* 24 * * *", "* * 0 * *", "* * * 13 *", "* * * * 8",
                                      "* * *",      "* * * * * *", "*/0 * * * *", "5-1 * * * *", "a * * * *",
                                      "1,,2 * * * *", "@fortnightly", "", "1- * * * *"};
    struct qs_error *err = NULL;
    struct cron c;
    char *x = NULL, *y = NULL;
    int distinct = 0;
    bool seen[60] = {false};
    (void)state;

    assert_int_equal(cron_parse(&c, "*/15 9-17 * * mon-fri", "vm", &x, &err), 0);
    assert_string_equal(x, "*/15 9-17 * * mon-fri");
    assert_true(c.minutes == ((1ull << 0) | (1ull << 15) | (1ull << 30) | (1ull << 45)));
    assert_int_equal(c.hours, 0x3fe00);
    assert_int_equal(c.wdays, 0x3e);
    assert_true(c.mday_star && !c.wday_star);
    free(x);
    assert_int_equal(cron_parse(&c, "0 0 * jan,JUL 7", "vm", NULL, &err), 0);
    assert_int_equal(c.months, (1 << 1) | (1 << 7));
    assert_int_equal(c.wdays, 1); /* 7 is Sunday */
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(cron_parse(&c, bad[i], "vm", NULL, &err), -1);
        assert_int_equal(err->code, QS_ERR_INVALID);
        qs_error_clear(&err);
    }
    /* aliases: the minute and hour are the domain's own, stable, and spread over domains */
    assert_int_equal(cron_parse(&c, "@hourly", "vm1", &x, &err), 0);
    assert_int_equal(cron_parse(&c, "@hourly", "vm1", &y, &err), 0);
    assert_string_equal(x, y);
    assert_non_null(strstr(x, " * * * *"));
    free(x);
    free(y);
    for (int i = 0; i < 20; i++) {
        char seed[16];
        int m;
        snprintf(seed, sizeof(seed), "vm%d", i);
        assert_int_equal(cron_parse(&c, "@daily", seed, &x, &err), 0);
        assert_int_equal(sscanf(x, "%d", &m), 1);
        assert_non_null(strstr(x, " * * *"));
        distinct += !seen[m];
        seen[m] = true;
        free(x);
    }
    assert_true(distinct >= 8);
    assert_int_equal(cron_parse(&c, "@weekly", "vm1", &x, &err), 0);
    assert_true(qs_str_has_suffix(x, " * * 0"));
    free(x);
    assert_int_equal(cron_parse(&c, "@monthly", "vm1", &x, &err), 0);
    assert_true(qs_str_has_suffix(x, " 1 * *"));
    free(x);
    assert_int_equal(cron_parse(&c, "@yearly", "vm1", &x, &err), 0);
    assert_true(qs_str_has_suffix(x, " 1 1 *"));
    free(x);
}

static int64_t next_of(const char *spec, const char *from)
{
    struct cron c;
    assert_int_equal(cron_parse(&c, spec, "vm", NULL, NULL), 0);
    return cron_next(&c, at(from));
}

static void test_cron_next(void **state)
{
    struct cron c;
    long count;
    int64_t t;
    (void)state;

    tz_berlin();
    assert_int_equal(next_of("0 * * * *", "2024-03-05 10:00 +0100"), at("2024-03-05 11:00 +0100")); /* after */
    assert_int_equal(next_of("59 23 31 * *", "2024-04-01 00:00 +0200"), at("2024-05-31 23:59 +0200"));
    assert_int_equal(next_of("0 0 29 2 *", "2025-01-01 00:00 +0100"), at("2028-02-29 00:00 +0100"));
    /* both day fields restricted: the 13th or a Friday */
    assert_int_equal(next_of("0 0 13 * 5", "2024-09-01 00:00 +0200"), at("2024-09-06 00:00 +0200"));
    assert_int_equal(next_of("0 0 13 * 5", "2024-09-06 00:00 +0200"), at("2024-09-13 00:00 +0200"));
    assert_int_equal(next_of("0 0 13 * 5", "2024-09-13 00:00 +0200"), at("2024-09-20 00:00 +0200"));
    /* spring forward: 02:30 does not exist on 2024-03-31 and fires at 03:30 CEST, once */
    t = next_of("30 2 * * *", "2024-03-31 00:00 +0100");
    assert_int_equal(t, at("2024-03-31 03:30 +0200"));
    assert_int_equal(cron_parse(&c, "30 2 * * *", "vm", NULL, NULL), 0);
    assert_int_equal(cron_next(&c, t), at("2024-04-01 02:30 +0200"));
    /* fall back: 02:30 happens twice on 2024-10-27 and fires once */
    t = next_of("30 2 * * *", "2024-10-27 00:00 +0200");
    assert_true(t == at("2024-10-27 02:30 +0200") || t == at("2024-10-27 02:30 +0100"));
    assert_int_equal(cron_next(&c, t), at("2024-10-28 02:30 +0100"));
    /* an hourly schedule over the fall-back night: one slot per wall-clock hour (02:00 once) */
    assert_int_equal(cron_parse(&c, "0 * * * *", "vm", NULL, NULL), 0);
    assert_int_equal(cron_latest(&c, at("2024-10-27 00:30 +0200"), at("2024-10-27 05:30 +0100"), &count),
                     at("2024-10-27 05:00 +0100"));
    assert_int_equal(count, 5);
    /* slots missed over a day: 24, the last one returned */
    assert_int_equal(cron_parse(&c, "5 * * * *", "vm", NULL, NULL), 0);
    assert_int_equal(cron_latest(&c, at("2024-03-05 10:00 +0100"), at("2024-03-06 10:00 +0100"), &count),
                     at("2024-03-06 09:05 +0100"));
    assert_int_equal(count, 24);
    assert_int_equal(cron_latest(&c, at("2024-03-05 10:00 +0100"), at("2024-03-05 10:04 +0100"), &count), -1);
    assert_int_equal(count, 0);
    /* too many to count: capped, the last slot still exact */
    assert_int_equal(cron_parse(&c, "* * * * *", "vm", NULL, NULL), 0);
    assert_int_equal(cron_latest(&c, at("2024-03-01 00:00 +0100"), at("2024-03-30 12:34 +0100") + 30, &count),
                     at("2024-03-30 12:34 +0100"));
    assert_int_equal(count, CRON_COUNT_MAX);
}

/* ------------------------------------------------------------------------------------------------ */
/* retention: cases worked out by hand with Proxmox Backup's rules (each rule keeps the newest snapshot of each
 * period until it has COUNT periods; a period an earlier rule kept a snapshot in is skipped; later snapshots of
 * a period this rule kept are removed; protected ones neither count nor go; the rest is removed) */

struct rcase {
    const char *what;
    struct engine_retention keep;
    const char *now;          /* for max-age */
    const char *snaps[12];    /* "NAME YYYY-MM-DD HH:MM +ZZZZ [P]" (P: protected) */
    const char *kept;         /* the names kept, space separated, newest first */
};

static const struct rcase rcases[] = {
    {"keep-last keeps the newest N", {.keep_last = 3}, NULL,
     {"e 2024-03-05 14:00 +0100", "d 2024-03-05 13:00 +0100", "c 2024-03-05 12:00 +0100", "b 2024-03-05 11:00 +0100",
      "a 2024-03-05 10:00 +0100"},
     "e d c"},
    {"keep-hourly: the newest of each hour", {.keep_hourly = 2}, NULL,
     {"h1050 2024-03-05 10:50 +0100", "h1010 2024-03-05 10:10 +0100", "h0930 2024-03-05 09:30 +0100",
      "h0815 2024-03-05 08:15 +0100"},
     "h1050 h0930"},
    {"days without snapshots do not count", {.keep_daily = 3}, NULL,
     {"d10 2024-03-10 12:00 +0100", "d07 2024-03-07 12:00 +0100", "d01 2024-03-01 18:00 +0100",
      "d01b 2024-03-01 08:00 +0100"},
     "d10 d07 d01"},
    {"a day keep-last covered is skipped by keep-daily", {.keep_last = 2, .keep_daily = 2}, NULL,
     {"s1 2024-03-10 12:00 +0100", "s2 2024-03-10 08:00 +0100", "s3 2024-03-09 20:00 +0100",
      "s4 2024-03-09 10:00 +0100", "s5 2024-03-08 10:00 +0100", "s6 2024-03-07 10:00 +0100"},
     "s1 s2 s3 s5"},
    {"ISO week 53 spans the new year", {.keep_weekly = 2}, NULL,
     {"w0104 2021-01-04 10:00 +0100", "w0103 2021-01-03 10:00 +0100", "w0101 2021-01-01 10:00 +0100",
      "w1228 2020-12-28 10:00 +0100", "w1227 2020-12-27 10:00 +0100"},
     "w0104 w0103"},
    {"months in local time (00:30 CEST on April 1st is still March in UTC)", {.keep_monthly = 3}, NULL,
     {"m0401 2024-04-01 00:30 +0200", "m0331 2024-03-31 23:30 +0200", "m0229 2024-02-29 23:00 +0100",
      "m0201 2024-02-01 00:00 +0100", "m0131 2024-01-31 23:59 +0100"},
     "m0401 m0331 m0229"},
    {"fall back: the repeated 02:00 hour is one period", {.keep_hourly = 3}, NULL,
     {"k0330 2024-10-27 03:30 +0100", "k0230b 2024-10-27 02:30 +0100", "k0230a 2024-10-27 02:30 +0200",
      "k0130 2024-10-27 01:30 +0200"},
     "k0330 k0230b k0130"},
    {"spring forward: the hour that does not exist is no period", {.keep_hourly = 2}, NULL,
     {"s0350 2024-03-31 03:50 +0200", "s0310 2024-03-31 03:10 +0200", "s0130 2024-03-31 01:30 +0100",
      "s0030 2024-03-31 00:30 +0100"},
     "s0350 s0130"},
    {"a protected snapshot fills no place", {.keep_last = 1}, NULL,
     {"p3 2024-03-05 12:00 +0100 P", "p2 2024-03-05 11:00 +0100", "p1 2024-03-05 10:00 +0100"}, "p3 p2"},
    {"a protected snapshot stays whatever the rules", {.keep_last = 1}, NULL,
     {"q3 2024-03-05 12:00 +0100", "q2 2024-03-05 11:00 +0100", "q1 2024-03-05 10:00 +0100 P"}, "q3 q1"},
    {"no rule keeps everything", {0}, NULL,
     {"n2 2024-03-05 12:00 +0100", "n1 2020-03-05 12:00 +0100"}, "n2 n1"},
    {"years across new year's eve", {.keep_yearly = 2}, NULL,
     {"y24 2024-01-01 00:30 +0100", "y23 2023-12-31 23:30 +0100", "y23b 2023-06-01 10:00 +0200",
      "y22 2022-05-01 10:00 +0200"},
     "y24 y23"},
    {"max-age removes what the rules kept", {.keep_daily = 7, .max_age_s = 3 * 86400}, "2024-03-10 12:00 +0100",
     {"d1 2024-03-09 12:00 +0100", "d2 2024-03-08 12:00 +0100", "d3 2024-03-07 11:00 +0100",
      "d4 2024-03-06 12:00 +0100", "d5 2024-03-05 12:00 +0100"},
     "d1 d2"},
    {"max-age alone", {.max_age_s = 2 * 86400}, "2024-03-10 12:00 +0100",
     {"e1 2024-03-09 12:00 +0100", "e2 2024-03-08 13:00 +0100", "e3 2024-03-08 11:00 +0100 P",
      "e4 2024-03-08 11:00 +0100"},
     "e1 e2 e3"},
    {"every rule at once", {1, 2, 2, 1, 1, 1, 0}, NULL,
     {"a 2024-01-15 12:40 +0100", "b 2024-01-15 12:10 +0100", "c 2024-01-15 11:20 +0100",
      "d 2024-01-15 09:00 +0100", "e 2024-01-14 18:00 +0100", "f 2024-01-14 08:00 +0100", "g 2024-01-12 10:00 +0100",
      "h 2024-01-08 10:00 +0100", "i 2023-12-20 10:00 +0100", "j 2023-06-01 10:00 +0200", "k 2022-05-01 10:00 +0200"},
     "a c d e g i j k"},
};

/* Runs one case; returns the items (caller frees, names too) so reasons can be checked. */
static struct ret_item *run_case(const struct rcase *rc, size_t *n)
{
    struct ret_item *items = calloc(12, sizeof(*items));
    struct qs_buf got;
    size_t k = 0;

    for (; k < 12 && rc->snaps[k]; k++) {
        char name[32], rest[64];
        assert_int_equal(sscanf(rc->snaps[k], "%31s %63[^\n]", name, rest), 2);
        items[k].name = strdup(name);
        items[k].time = at(rest);
        items[k].protect = qs_str_has_suffix(rest, " P");
    }
    /* shuffled input: the order is the engine's to make */
    for (size_t i = 0; i + 1 < k; i += 2) {
        struct ret_item t = items[i];
        items[i] = items[i + 1];
        items[i + 1] = t;
    }
    retention_apply(items, k, &rc->keep, rc->now ? at(rc->now) : at("2024-12-31 00:00 +0100"));
    qs_buf_init(&got, 0);
    for (size_t i = 0; i < k; i++)
        if (items[i].mark == RET_KEEP || items[i].mark == RET_PROTECTED)
            qs_buf_addf(&got, "%s%s", got.len ? " " : "", items[i].name);
    if (strcmp(got.data ? got.data : "", rc->kept) != 0)
        fail_msg("%s: kept '%s', want '%s'", rc->what, got.data ? got.data : "", rc->kept);
    qs_buf_release(&got);
    *n = k;
    return items;
}

static void items_free(struct ret_item *items, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free((char *)items[i].name);
    free(items);
}

static const struct ret_item *item_named(const struct ret_item *items, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(items[i].name, name) == 0)
            return &items[i];
    fail_msg("no item %s", name);
    return NULL;
}

static void assert_reason(const struct ret_item *items, size_t n, const char *name, const struct engine_retention *k,
                          const char *want)
{
    char *r = retention_reason(item_named(items, n, name), k);
    if (strcmp(r, want) != 0)
        fail_msg("%s: reason '%s', want '%s'", name, r, want);
    free(r);
}

static void test_retention_table(void **state)
{
    size_t n;
    (void)state;

    tz_berlin();
    for (size_t i = 0; i < sizeof(rcases) / sizeof(rcases[0]); i++) {
        struct ret_item *it = run_case(&rcases[i], &n);
        items_free(it, n);
    }
}

/* The reasons a prune prints, as the simulator shows them. */
static void test_retention_reasons(void **state)
{
    const struct rcase *all = &rcases[14], *daily = &rcases[3], *age = &rcases[12], *prot = &rcases[8];
    struct ret_item *it;
    size_t n;
    (void)state;

    tz_berlin();
    it = run_case(daily, &n);
    assert_reason(it, n, "s1", &daily->keep, "keep-last (1 of 2)");
    assert_reason(it, n, "s3", &daily->keep, "keep-daily: newest of day 2024-03-09 (1 of 2)");
    assert_reason(it, n, "s4", &daily->keep, "keep-daily: day 2024-03-09 is kept by newer 's3'");
    assert_reason(it, n, "s6", &daily->keep, "outside every rule (keep-last 2, keep-daily 2 used by newer snapshots)");
    items_free(it, n);
    it = run_case(all, &n);
    assert_reason(it, n, "i", &all->keep, "keep-weekly: newest of week 2023-W51 (1 of 1)");
    assert_reason(it, n, "k", &all->keep, "keep-yearly: newest of year 2022 (1 of 1)");
    items_free(it, n);
    it = run_case(age, &n);
    assert_reason(it, n, "d3", &age->keep,
                  "older than max-age 3d, which overrides keep-daily: newest of day 2024-03-07 (3 of 7)");
    items_free(it, n);
    it = run_case(prot, &n);
    assert_reason(it, n, "p3", &prot->keep, "protected");
    items_free(it, n);
}

/* ------------------------------------------------------------------------------------------------ */
/* the runner, on the test's clock, with metadata-only snapshots */

static int64_t now_ms;
static int fail_creates;   /* the next N creates fail */
static int free_pct = -1;  /* what the disk-free hook reports */
static char *domain_xml;
/* every snapshot the runner made: name and time, in order */
static struct made {
    char name[64];
    int64_t time;
} *made;
static size_t nmade, capmade;

static int64_t test_clock(void *opaque)
{
    (void)opaque;
    return now_ms;
}

/* A create that records metadata only: the runner's XML (name, cookie) redefined as a shut-off snapshot taken
 * now. */
static int meta_create(struct engine *e, const char *domain, const char *xml, unsigned flags, char **name,
                       struct qs_error **err)
{
    struct md_snapshot *s;
    char *doc;
    int r;

    (void)flags;
    if (fail_creates > 0) {
        fail_creates--;
        qs_error_set(err, QS_ERR_QEMU, "injected failure");
        return -1;
    }
    s = md_snapshot_parse(xml, strlen(xml), 0, err);
    assert_non_null(s);
    s->state = MD_STATE_SHUTOFF;
    s->memory = MD_LOCATION_NO;
    free(s->memory_file);
    s->memory_file = NULL;
    s->creation_time = now_ms / 1000;
    s->domain_xml = strdup(domain_xml);
    doc = md_snapshot_format(s, 0, err);
    assert_non_null(doc);
    r = engine_snapshot_create(e, domain, doc, ENGINE_CREATE_REDEFINE, name, err);
    if (r == 0) {
        /* a year in seconds: without this every file would be "racy" (written within the last 2 s) and the
         * snapshot index would vouch for none of them, as it does an hour after a real run */
        char *path = qs_asprintf("%s/snapshot/%s/%s.xml", engine_root(e), domain, s->name);
        struct timespec old[2] = {{time(NULL) - 60, 0}, {time(NULL) - 60, 0}};
        assert_int_equal(utimensat(AT_FDCWD, path, old, 0), 0);
        free(path);
        qs_xgrow((void **)&made, &capmade, nmade + 1, sizeof(*made));
        snprintf(made[nmade].name, sizeof(made[nmade].name), "%s", s->name);
        made[nmade++].time = s->creation_time;
    }
    free(doc);
    md_snapshot_free(s);
    return r;
}

static int meta_remove(struct engine *e, const char *domain, const char *name, unsigned flags, struct qs_error **err)
{
    return engine_snapshot_delete(e, domain, name, flags | ENGINE_DELETE_METADATA_ONLY, err);
}

static int hook_free_pct(const char *dir)
{
    (void)dir;
    return free_pct;
}

static const struct schedule_ops meta_ops = {meta_create, meta_remove, hook_free_pct};

struct fix {
    char *dir;
    struct engine *e;
};

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    struct fix *f = calloc(1, sizeof(*f));
    struct engine_options o = {.clock = test_clock};
    struct qs_error *err = NULL;
    char tmpl[] = "/dev/shm/qsnap-sched-XXXXXX", tmpl2[] = "/tmp/qsnap-sched-XXXXXX", *xml;

    /* tmpfs when there is one: a year of synced metadata writes stays in memory */
    f->dir = mkdtemp(tmpl) ? strdup(tmpl) : strdup(mkdtemp(tmpl2));
    o.root = qs_asprintf("%s/root", f->dir);
    now_ms = at("2024-01-01 00:00 +0100") * 1000;
    fail_creates = 0;
    free_pct = -1;
    nmade = 0;
    tz_berlin();
    f->e = engine_new(&o, &err);
    assert_non_null(f->e);
    free((char *)o.root);
    f->e->sched_ops = &meta_ops;
    xml = qs_asprintf("<domain type='kvm'>\n  <name>vm</name>\n  <uuid>6f1b5c2e-5d0a-4a47-9b1e-2f6c1d0e8a01</uuid>\n"
                      "  <memory unit='KiB'>65536</memory>\n  <devices>\n    <disk type='file' device='disk'>\n"
                      "      <driver name='qemu' type='qcow2'/>\n      <source file='%s/vm.qcow2'/>\n"
                      "      <target dev='vda' bus='virtio'/>\n    </disk>\n  </devices>\n</domain>\n",
                      f->dir);
    assert_int_equal(engine_domain_define(f->e, xml, NULL, NULL, &err), 0);
    free(xml);
    assert_int_equal(engine_domain_get_xml(f->e, "vm", &domain_xml, &err), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fix *f = *state;
    engine_free(f->e);
    if (!getenv("QSNAP_KEEP_TMP"))
        nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f->dir);
    free(f);
    free(domain_xml);
    domain_xml = NULL;
    free(made);
    made = NULL;
    nmade = capmade = 0;
    return 0;
}

static void schedule_set(struct engine *e, const char *name, const char *cron, struct engine_retention keep)
{
    struct engine_schedule s = {0};
    struct qs_error *err = NULL;
    s.name = (char *)name;
    s.cron = (char *)cron;
    s.offline = true;
    s.keep = keep;
    if (engine_schedule_set(e, "vm", &s, &err) < 0)
        fail_msg("schedule-set: %s", err->message);
}

/* Runs what is due now; returns the number of runs (failures are in the list, which *out gets when given). */
static size_t run_due(struct engine *e, struct engine_run **out, size_t *n)
{
    struct engine_run *v = NULL;
    struct qs_error *err = NULL;
    size_t k = 0;

    engine_schedule_run(e, "vm", NULL, ENGINE_RUN_DUE, &v, &k, &err);
    qs_error_free(err);
    if (out) {
        *out = v;
        *n = k;
    } else {
        engine_run_list_free(v, k);
    }
    return k;
}

/* The snapshot names of the domain, sorted, space separated. Caller frees. */
static char *names_of(struct engine *e)
{
    struct engine_snapshot_list *l = NULL;
    struct qs_error *err = NULL;
    struct qs_buf b;

    assert_int_equal(engine_snapshot_list(e, "vm", 0, NULL, &l, &err), 0);
    qs_buf_init(&b, 0);
    for (size_t i = 0; i < engine_snapshot_list_count(l); i++)
        qs_buf_addf(&b, "%s%s", b.len ? " " : "", engine_snapshot_name(engine_snapshot_list_at(l, i)));
    engine_snapshot_list_free(l);
    return qs_buf_detach(&b, NULL);
}

static bool has_snapshot(struct engine *e, const char *name)
{
    struct engine_snapshot_list *l = NULL;
    struct qs_error *err = NULL;
    bool ok = engine_snapshot_lookup(e, "vm", name, &l, &err) == 0;
    qs_error_free(err);
    engine_snapshot_list_free(l);
    return ok;
}

/* A manual snapshot (no schedule mark), metadata only. */
static void manual_snapshot(struct engine *e, const char *name)
{
    char *xml = qs_asprintf("<domainsnapshot><name>%s</name></domainsnapshot>", name);
    struct qs_error *err = NULL;
    size_t before = nmade;
    assert_int_equal(meta_create(e, "vm", xml, 0, NULL, &err), 0);
    nmade = before; /* not the runner's */
    free(xml);
}

/*
 * The model the year is checked against: the snapshots the runner made, pruned after every run by the rules
 * as written out below - a second, separate rendering of Proxmox's procedure (the table above checks the
 * engine's against hand-worked cases; this one checks that the runner prunes the right group by the right
 * rules at the right times).
 */
struct model {
    char (*name)[64];
    int64_t *time;
    bool *gone;
    size_t n;
};

static void model_prune(struct model *m, const struct engine_retention *k, const char *protected_name)
{
    const int counts[] = {k->keep_last, k->keep_hourly, k->keep_daily, k->keep_weekly, k->keep_monthly,
                          k->keep_yearly};
    int *mark = calloc(m->n + 1, sizeof(int)); /* 0 none, 1 keep, 2 remove */
    char(*per)[32] = calloc(m->n + 1, 32), (*seen)[32] = calloc(m->n + 1, 32), (*inc)[32] = calloc(m->n + 1, 32);

    for (int r = 0; r < 6; r++) {
        size_t ns = 0, ni = 0;
        if (counts[r] <= 0)
            continue;
        for (size_t i = 0; i < m->n; i++) {
            time_t t = (time_t)m->time[i];
            struct tm tm;
            if (m->gone[i])
                continue;
            localtime_r(&t, &tm);
            switch (r) {
            case 0: snprintf(per[i], 32, "%s", m->name[i]); break;
            case 1: strftime(per[i], 32, "%Y-%m-%d %H", &tm); break;
            case 2: strftime(per[i], 32, "%Y-%m-%d", &tm); break;
            case 3: strftime(per[i], 32, "%G-W%V", &tm); break;
            case 4: strftime(per[i], 32, "%Y-%m", &tm); break;
            default: strftime(per[i], 32, "%Y", &tm); break;
            }
        }
        for (size_t i = 0; i < m->n; i++)
            if (!m->gone[i] && mark[i] == 1)
                snprintf(inc[ni++], 32, "%s", per[i]);
        /* newest first: the model is in creation order */
        for (size_t j = m->n; j-- > 0;) {
            bool in_inc = false, in_seen = false;
            if (m->gone[j] || mark[j] || (protected_name && strcmp(m->name[j], protected_name) == 0))
                continue;
            for (size_t x = 0; x < ni && !in_inc; x++)
                in_inc = strcmp(inc[x], per[j]) == 0;
            if (in_inc)
                continue;
            for (size_t x = 0; x < ns && !in_seen; x++)
                in_seen = strcmp(seen[x], per[j]) == 0;
            if (in_seen) {
                mark[j] = 2;
            } else {
                if (ns >= (size_t)counts[r])
                    break;
                snprintf(seen[ns++], 32, "%s", per[j]);
                mark[j] = 1;
            }
        }
    }
    for (size_t i = 0; i < m->n; i++)
        if (!m->gone[i] && mark[i] != 1 && !(protected_name && strcmp(m->name[i], protected_name) == 0))
            m->gone[i] = true;
    free(mark);
    free(per);
    free(seen);
    free(inc);
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void model_sync(struct model *m)
{
    m->name = realloc(m->name, (nmade + 1) * sizeof(*m->name));
    m->time = realloc(m->time, (nmade + 1) * sizeof(*m->time));
    m->gone = realloc(m->gone, (nmade + 1) * sizeof(*m->gone));
    for (size_t i = m->n; i < nmade; i++) {
        memcpy(m->name[i], made[i].name, sizeof(m->name[i]));
        m->time[i] = made[i].time;
        m->gone[i] = false;
    }
    m->n = nmade;
}

/* A year of an hourly schedule, the runner called every hour of the test's clock, with three days of
 * downtime in January: every slot taken once, the missed ones caught up by one snapshot, the retention
 * kept exactly as the model says throughout, the protected and the manual snapshot still there at the end. */
static void test_runner_year(void **state)
{
    struct fix *f = *state;
    const struct engine_retention keep = {.keep_hourly = 12, .keep_daily = 7, .keep_weekly = 4, .keep_monthly = 6,
                                          .keep_yearly = 1};
    struct model m = {0};
    struct qs_error *err = NULL;
    struct engine_schedule *sl = NULL;
    struct engine_event *ev = NULL;
    /* $QSNAP_TEST_DAYS shortens the year for the sanitizer build, where every call is several times slower */
    const char *days = getenv("QSNAP_TEST_DAYS");
    int64_t start = at("2024-01-01 00:00 +0100"), end = at("2025-01-01 00:00 +0100");
    int64_t down_from = at("2024-01-20 12:00 +0100"), down_to = at("2024-01-23 09:00 +0100");
    size_t nsl = 0, nev = 0, runs = 0, caught = 0, checks = 0, events_caught = 0;
    long missed_in_gap = 0, total_slots;
    int minute;
    char protected_name[64] = "", *names;
    struct cron c;

    if (days && atoi(days) > 30)
        end = start + (int64_t)atoi(days) * 86400;
    f->e->events_max = 64u << 20; /* keep the whole year's log for the check below */
    manual_snapshot(f->e, "manual-base");
    schedule_set(f->e, "hourly", "@hourly", keep);
    /* once an hour, a minute after the domain's spread minute (a timer tick that finds nothing due is
     * covered by test_runner_failure_retried) */
    assert_int_equal(engine_schedule_list(f->e, "vm", &sl, &nsl, &err), 0);
    assert_int_equal(sscanf(sl[0].expanded, "%d", &minute), 1);
    engine_schedule_list_free(sl, nsl);
    sl = NULL;
    for (int64_t t = start + (minute + 1) * 60; t <= end; t += 3600) {
        struct engine_run *v = NULL;
        size_t k = 0;
        if (t >= down_from && t < down_to)
            continue; /* the host is down: nothing runs */
        now_ms = t * 1000;
        run_due(f->e, &v, &k);
        for (size_t i = 0; i < k; i++) {
            if (strcmp(v[i].outcome, "ok") != 0)
                fail_msg("run at %lld: %s: %s", (long long)t, v[i].outcome, v[i].error ? v[i].error : "");
            runs++;
            if (v[i].missed > 0) {
                caught++;
                missed_in_gap = v[i].missed;
                assert_non_null(strstr(v[i].reason, "caught up"));
            }
        }
        if (k > 0) {
            model_sync(&m);
            model_prune(&m, &keep, protected_name[0] ? protected_name : NULL);
        }
        engine_run_list_free(v, k);
        /* day 10: protect what the 03:xx run took; it must outlive every prune after */
        if (!protected_name[0] && t >= at("2024-01-10 03:40 +0100")) {
            snprintf(protected_name, sizeof(protected_name), "%s", made[nmade - 1].name);
            assert_int_equal(engine_snapshot_protect(f->e, "vm", protected_name, true, &err), 0);
        }
        /* now and then: the engine's snapshots are exactly the model's survivors (plus the manual one) */
        if (k > 0 && runs % 500 == 0) {
            struct qs_buf want;
            char **sorted = calloc(m.n + 2, sizeof(char *));
            size_t ns = 0;
            sorted[ns++] = strdup("manual-base");
            for (size_t i = 0; i < m.n; i++)
                if (!m.gone[i])
                    sorted[ns++] = strdup(m.name[i]);
            qsort(sorted, ns, sizeof(char *), str_cmp);
            qs_buf_init(&want, 0);
            for (size_t i = 0; i < ns; i++)
                qs_buf_addf(&want, "%s%s", want.len ? " " : "", sorted[i]);
            names = names_of(f->e);
            if (strcmp(names, want.data) != 0)
                fail_msg("after %zu runs: engine has\n%s\nmodel says\n%s", runs, names, want.data);
            free(names);
            qs_buf_release(&want);
            qs_strv_free(sorted);
            checks++;
        }
    }
    /* every hourly slot of the year was taken once, the three days of downtime by a single snapshot */
    assert_int_equal(cron_parse(&c, "@hourly", "vm", NULL, NULL), 0);
    cron_latest(&c, start, end, &total_slots);
    assert_int_equal(caught, 1);
    assert_true(missed_in_gap >= 68 && missed_in_gap <= 70);
    assert_int_equal((long)runs, total_slots - missed_in_gap);
    assert_int_equal((long)nmade, (long)runs);
    assert_true(checks >= runs / 500);
    assert_true(has_snapshot(f->e, protected_name));
    assert_true(has_snapshot(f->e, "manual-base"));
    /* bounded: the rules' sum, the protected one and the manual one */
    names = names_of(f->e);
    {
        size_t count = 1;
        for (const char *p = names; *p; p++)
            count += *p == ' ';
        assert_true(count <= 12 + 7 + 4 + 6 + 1 + 2);
        assert_true(count >= 12 + 7);
    }
    free(names);
    /* the schedule shows its last run; the log has the catch-up, once, with its reason */
    assert_int_equal(engine_schedule_list(f->e, "vm", &sl, &nsl, &err), 0);
    assert_int_equal(nsl, 1);
    assert_string_equal(sl[0].last_result, "ok");
    assert_string_equal(sl[0].last_snapshot, made[nmade - 1].name);
    assert_true(sl[0].next_slot > end - 3600);
    engine_schedule_list_free(sl, nsl);
    assert_int_equal(engine_events_read(f->e, "vm", down_from * 1000, &ev, &nev, &err), 0);
    for (size_t i = 0; i < nev; i++)
        if (strcmp(ev[i].op, "schedule-run") == 0 && ev[i].detail && strstr(ev[i].detail, "caught up")) {
            events_caught++;
            assert_string_equal(ev[i].schedule, "hourly");
            assert_true(ev[i].time_ms >= down_to * 1000);
        }
    assert_int_equal(events_caught, 1);
    engine_event_list_free(ev, nev);
    free(m.name);
    free(m.time);
    free(m.gone);
}

/* Only a schedule's own snapshots are pruned by it; a manual snapshot only by a prune that names the manual
 * group; a protected one by nothing, and delete refuses it without force. */
static void test_prune_groups(void **state)
{
    struct fix *f = *state;
    const struct engine_retention keep1 = {.keep_last = 1};
    struct engine_prune_item *items = NULL;
    struct qs_error *err = NULL;
    size_t n = 0;
    char *names;

    manual_snapshot(f->e, "m1");
    manual_snapshot(f->e, "m2");
    schedule_set(f->e, "a", "0 * * * *", (struct engine_retention){0});
    schedule_set(f->e, "b", "30 * * * *", (struct engine_retention){0});
    for (int h = 1; h <= 3; h++) {
        now_ms = (at("2024-01-01 00:00 +0100") + h * 3600) * 1000;
        assert_int_equal(run_due(f->e, NULL, NULL), 2);
    }
    names = names_of(f->e);
    assert_string_equal(names, "auto-20240101-0030 auto-20240101-0100 auto-20240101-0130 auto-20240101-0200 "
                               "auto-20240101-0230 auto-20240101-0300 m1 m2");
    free(names);
    assert_int_equal(engine_snapshot_protect(f->e, "vm", "auto-20240101-0100", true, &err), 0);
    /* a dry run of schedule a: decides, removes nothing */
    assert_int_equal(engine_snapshot_prune(f->e, "vm", "a", &keep1, ENGINE_PRUNE_DRY_RUN, &items, &n, &err), 0);
    assert_int_equal(n, 3);
    assert_string_equal(items[0].snapshot, "auto-20240101-0300");
    assert_int_equal(items[0].action, ENGINE_PRUNE_KEEP);
    assert_int_equal(items[1].action, ENGINE_PRUNE_REMOVE);
    assert_int_equal(items[2].action, ENGINE_PRUNE_PROTECTED);
    assert_string_equal(items[2].reason, "protected");
    engine_prune_list_free(items, n);
    names = names_of(f->e);
    assert_non_null(strstr(names, "auto-20240101-0200"));
    free(names);
    /* for real, schedule a only */
    assert_int_equal(engine_snapshot_prune(f->e, "vm", "a", &keep1, 0, &items, &n, &err), 0);
    engine_prune_list_free(items, n);
    names = names_of(f->e);
    assert_string_equal(names, "auto-20240101-0030 auto-20240101-0100 auto-20240101-0130 auto-20240101-0230 "
                               "auto-20240101-0300 m1 m2");
    free(names);
    /* every schedule by its own rules (none: all kept), the manual ones untouched */
    assert_int_equal(engine_snapshot_prune(f->e, "vm", NULL, NULL, 0, &items, &n, &err), 0);
    assert_int_equal(n, 5);
    engine_prune_list_free(items, n);
    /* every schedule with rules given: b goes down to one, a keeps its newest and the protected one */
    assert_int_equal(engine_snapshot_prune(f->e, "vm", NULL, &keep1, 0, &items, &n, &err), 0);
    engine_prune_list_free(items, n);
    names = names_of(f->e);
    assert_string_equal(names, "auto-20240101-0100 auto-20240101-0230 auto-20240101-0300 m1 m2");
    free(names);
    /* the manual group only when asked, and only with rules */
    assert_int_equal(engine_snapshot_prune(f->e, "vm", NULL, NULL, ENGINE_PRUNE_MANUAL, &items, &n, &err), -1);
    assert_int_equal(err->code, QS_ERR_INVALID);
    qs_error_clear(&err);
    assert_int_equal(engine_snapshot_prune(f->e, "vm", NULL, &keep1, ENGINE_PRUNE_MANUAL, &items, &n, &err), 0);
    assert_int_equal(n, 2);
    engine_prune_list_free(items, n);
    names = names_of(f->e);
    assert_string_equal(names, "auto-20240101-0100 auto-20240101-0230 auto-20240101-0300 m2");
    free(names);
    /* a schedule that does not exist needs rules; with them its leftovers can be pruned */
    assert_int_equal(engine_snapshot_prune(f->e, "vm", "gone", NULL, 0, &items, &n, &err), -1);
    assert_int_equal(err->code, QS_ERR_NOTFOUND);
    qs_error_clear(&err);
    /* delete refuses the protected snapshot and says why; --force deletes it */
    assert_int_equal(engine_snapshot_delete(f->e, "vm", "auto-20240101-0100", ENGINE_DELETE_METADATA_ONLY, &err), -1);
    assert_int_equal(err->code, QS_ERR_STATE);
    assert_non_null(strstr(err->message, "is protected"));
    qs_error_clear(&err);
    assert_true(has_snapshot(f->e, "auto-20240101-0100"));
    assert_int_equal(engine_snapshot_protect(f->e, "vm", "auto-20240101-0100", false, &err), 0);
    assert_int_equal(engine_snapshot_protect(f->e, "vm", "auto-20240101-0100", true, &err), 0);
    assert_int_equal(engine_snapshot_delete(f->e, "vm", "auto-20240101-0100",
                                            ENGINE_DELETE_METADATA_ONLY | ENGINE_DELETE_FORCE, &err), 0);
    assert_false(has_snapshot(f->e, "auto-20240101-0100"));
}

/* A second run of the domain while one holds the runner lock is refused and logged; nothing is taken. */
static void test_runner_overlap(void **state)
{
    struct fix *f = *state;
    struct engine_run *v = NULL;
    struct engine_event *ev = NULL;
    struct qs_error *err = NULL;
    size_t n = 0, nev = 0;
    char *path;
    int fd;

    schedule_set(f->e, "h", "0 * * * *", (struct engine_retention){.keep_last = 2});
    now_ms = (at("2024-01-01 01:00 +0100") + 60) * 1000;
    /* another runner: the lock file held through its own open file description, as another process would */
    path = qs_asprintf("%s/schedule/vm.lock", engine_root(f->e));
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(flock(fd, LOCK_EX | LOCK_NB), 0);
    assert_int_equal(write(fd, "4242\n", 5), 5);
    assert_int_equal(engine_schedule_run(f->e, "vm", NULL, ENGINE_RUN_DUE, &v, &n, &err), -1);
    assert_int_equal(err->code, QS_ERR_BUSY);
    qs_error_clear(&err);
    assert_int_equal(n, 1);
    assert_string_equal(v[0].outcome, "busy");
    assert_non_null(strstr(v[0].error, "already under way (qsnap process 4242)"));
    engine_run_list_free(v, n);
    assert_int_equal(nmade, 0);
    assert_int_equal(engine_events_read(f->e, "vm", 0, &ev, &nev, &err), 0);
    assert_string_equal(ev[nev - 1].op, "schedule-run");
    assert_string_equal(ev[nev - 1].outcome, "busy");
    engine_event_list_free(ev, nev);
    /* once it is gone, the slot is taken (once) */
    close(fd);
    assert_int_equal(run_due(f->e, NULL, NULL), 1);
    assert_int_equal(nmade, 1);
    assert_int_equal(run_due(f->e, NULL, NULL), 0);
    free(path);
}

/* A due pass with nothing due never touches the runner lock: qsnapd's runner and the systemd timer ticking at
 * once meet only over a slot that is due, not every minute (nothing is logged, nothing fails). */
static void test_runner_nothing_due_no_lock(void **state)
{
    struct fix *f = *state;
    struct engine_run *v = NULL;
    struct engine_event *ev = NULL;
    struct qs_error *err = NULL;
    size_t n = 0, nev = 0, before;
    char *path;
    int fd;

    now_ms = at("2024-01-01 00:10 +0100") * 1000;
    schedule_set(f->e, "h", "0 * * * *", (struct engine_retention){.keep_last = 2});
    assert_int_equal(engine_events_read(f->e, "vm", 0, &ev, &before, &err), 0);
    engine_event_list_free(ev, before);
    path = qs_asprintf("%s/schedule/vm.lock", engine_root(f->e));
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(flock(fd, LOCK_EX | LOCK_NB), 0);
    now_ms = at("2024-01-01 00:30 +0100") * 1000;
    assert_int_equal(engine_schedule_run(f->e, "vm", NULL, ENGINE_RUN_DUE, &v, &n, &err), 0);
    assert_int_equal(n, 0);
    engine_run_list_free(v, n);
    assert_int_equal(engine_schedule_run(f->e, NULL, NULL, ENGINE_RUN_DUE, &v, &n, &err), 0);
    assert_int_equal(n, 0);
    engine_run_list_free(v, n);
    assert_int_equal(engine_events_read(f->e, "vm", 0, &ev, &nev, &err), 0);
    assert_int_equal(nev, before);
    engine_event_list_free(ev, nev);
    /* once the slot is due, the held lock is a refusal again */
    now_ms = (at("2024-01-01 01:00 +0100") + 60) * 1000;
    assert_int_equal(engine_schedule_run(f->e, "vm", NULL, ENGINE_RUN_DUE, &v, &n, &err), -1);
    assert_int_equal(err->code, QS_ERR_BUSY);
    qs_error_clear(&err);
    assert_int_equal(n, 1);
    assert_string_equal(v[0].outcome, "busy");
    engine_run_list_free(v, n);
    assert_int_equal(nmade, 0);
    close(fd);
    /* a schedule that does not exist is still reported, due or not */
    assert_int_equal(engine_schedule_run(f->e, "vm", "nope", ENGINE_RUN_DUE, &v, &n, &err), -1);
    assert_int_equal(err->code, QS_ERR_NOTFOUND);
    qs_error_clear(&err);
    engine_run_list_free(v, n);
    assert_int_equal(run_due(f->e, NULL, NULL), 1);
    assert_int_equal(nmade, 1);
    free(path);
}

/* A failed run is shown and retried at the next slot - not at once, and not for every slot it missed. */
static void test_runner_failure_retried(void **state)
{
    struct fix *f = *state;
    struct engine_schedule *sl = NULL;
    struct engine_run *v = NULL;
    struct qs_error *err = NULL;
    size_t nsl = 0, n = 0;

    schedule_set(f->e, "h", "0 * * * *", (struct engine_retention){.keep_last = 2});
    fail_creates = 1;
    now_ms = (at("2024-01-01 01:00 +0100") + 120) * 1000;
    assert_int_equal(engine_schedule_run(f->e, "vm", NULL, ENGINE_RUN_DUE, &v, &n, &err), -1);
    qs_error_clear(&err);
    assert_int_equal(n, 1);
    assert_string_equal(v[0].outcome, "failed");
    assert_non_null(strstr(v[0].error, "injected failure"));
    engine_run_list_free(v, n);
    assert_int_equal(engine_schedule_list(f->e, "vm", &sl, &nsl, &err), 0);
    assert_string_equal(sl[0].last_result, "failed");
    assert_non_null(strstr(sl[0].last_error, "injected failure"));
    assert_int_equal(sl[0].next_slot, at("2024-01-01 02:00 +0100"));
    engine_schedule_list_free(sl, nsl);
    /* a minute later: nothing (the next timer tick must not hammer a failing VM) */
    now_ms += 60000;
    assert_int_equal(run_due(f->e, NULL, NULL), 0);
    /* the next slot: taken */
    now_ms = (at("2024-01-01 02:00 +0100") + 30) * 1000;
    assert_int_equal(run_due(f->e, &v, &n), 1);
    assert_string_equal(v[0].outcome, "ok");
    assert_int_equal(v[0].missed, 0);
    engine_run_list_free(v, n);
    assert_int_equal(engine_schedule_list(f->e, "vm", &sl, &nsl, &err), 0);
    assert_string_equal(sl[0].last_result, "ok");
    assert_null(sl[0].last_error);
    engine_schedule_list_free(sl, nsl);
}

/* A shut-off domain is skipped unless the schedule takes offline snapshots; a nearly full disk is pruned before
 * the snapshot, and after it as always. */
static void test_runner_skip_and_low_disk(void **state)
{
    struct fix *f = *state;
    struct engine_schedule s = {0};
    struct engine_run *v = NULL;
    struct engine_event *ev = NULL;
    struct qs_error *err = NULL;
    size_t n = 0, nev = 0, first_prune = SIZE_MAX, create = SIZE_MAX;

    s.name = "h";
    s.cron = "0 * * * *";
    s.offline = false;
    s.keep.keep_last = 1;
    assert_int_equal(engine_schedule_set(f->e, "vm", &s, &err), 0);
    now_ms = (at("2024-01-01 01:00 +0100") + 5) * 1000;
    assert_int_equal(run_due(f->e, &v, &n), 1);
    assert_string_equal(v[0].outcome, "skipped");
    assert_non_null(strstr(v[0].error, "shut off"));
    engine_run_list_free(v, n);
    assert_int_equal(nmade, 0);

    s.offline = true;
    s.min_free_pct = 20;
    assert_int_equal(engine_schedule_set(f->e, "vm", &s, &err), 0);
    now_ms = (at("2024-01-01 02:00 +0100") + 5) * 1000;
    assert_int_equal(run_due(f->e, NULL, NULL), 1);
    now_ms = (at("2024-01-01 03:00 +0100") + 5) * 1000;
    assert_int_equal(run_due(f->e, NULL, NULL), 1);
    assert_int_equal(nmade, 2);
    /* 5% free: the old snapshot goes before the new one is taken */
    free_pct = 5;
    now_ms = (at("2024-01-01 04:00 +0100") + 5) * 1000;
    assert_int_equal(run_due(f->e, &v, &n), 1);
    assert_string_equal(v[0].outcome, "ok");
    engine_run_list_free(v, n);
    assert_int_equal(engine_events_read(f->e, "vm", (at("2024-01-01 04:00 +0100")) * 1000, &ev, &nev, &err), 0);
    for (size_t i = 0; i < nev; i++) {
        if (strcmp(ev[i].op, "prune") == 0 && first_prune == SIZE_MAX)
            first_prune = i;
        if (strcmp(ev[i].op, "redefine") == 0)
            create = i;
        if (strcmp(ev[i].op, "schedule-run") == 0)
            assert_non_null(strstr(ev[i].detail, "pruned first: 5% free"));
    }
    assert_true(first_prune < create);
    engine_event_list_free(ev, nev);
    {
        char *names = names_of(f->e);
        assert_string_equal(names, "auto-20240101-0400");
        free(names);
    }
}

/* The event log: every operation a line with its fields, who asked, rotation by size, --since. */
static void test_events_log(void **state)
{
    struct fix *f = *state;
    struct engine_event *ev = NULL;
    struct qs_error *err = NULL;
    struct stat st;
    size_t nev = 0;
    char *path;

    f->e->events_max = 4096;
    engine_set_requester(f->e, "ci-token");
    for (int i = 0; i < 100; i++) {
        char name[32];
        now_ms = (at("2024-01-01 00:00 +0100") + i * 60) * 1000;
        snprintf(name, sizeof(name), "s%02d", i);
        manual_snapshot(f->e, name);
    }
    engine_set_requester(f->e, NULL);
    assert_int_equal(engine_snapshot_delete(f->e, "vm", "nosuch", 0, &err), -1);
    qs_error_clear(&err);
    /* rotated: the current file below the limit, three old ones, the oldest lines gone */
    for (int g = 0; g <= 3; g++) {
        path = g ? qs_asprintf("%s/events/vm.jsonl.%d", engine_root(f->e), g)
                 : qs_asprintf("%s/events/vm.jsonl", engine_root(f->e));
        assert_int_equal(stat(path, &st), 0);
        assert_true(st.st_size <= 4096);
        assert_int_equal(st.st_mode & 0777, 0600);
        free(path);
    }
    path = qs_asprintf("%s/events/vm.jsonl.4", engine_root(f->e));
    assert_int_not_equal(stat(path, &st), 0);
    free(path);
    assert_int_equal(engine_events_read(f->e, "vm", 0, &ev, &nev, &err), 0);
    if (!(nev > 10 && nev < 101)) /* the oldest ones rotated away */
        fail_msg("%zu events read", nev);
    for (size_t i = 1; i < nev; i++)
        assert_true(ev[i].time_ms >= ev[i - 1].time_ms);
    assert_string_equal(ev[nev - 1].op, "delete");
    assert_string_equal(ev[nev - 1].outcome, "failed");
    assert_non_null(strstr(ev[nev - 1].error, "nosuch"));
    assert_null(ev[nev - 1].requester);
    assert_string_equal(ev[nev - 2].op, "redefine");
    assert_string_equal(ev[nev - 2].snapshot, "s99");
    assert_string_equal(ev[nev - 2].requester, "ci-token");
    assert_int_equal(ev[nev - 2].uid, (long)getuid());
    assert_int_equal(ev[nev - 2].pid, (long)getpid());
    assert_int_equal(ev[nev - 2].pause_us, -1);
    engine_event_list_free(ev, nev);
    /* --since */
    assert_int_equal(engine_events_read(f->e, "vm", (at("2024-01-01 00:00 +0100") + 95 * 60) * 1000, &ev, &nev, &err),
                     0);
    assert_int_equal(nev, 6); /* s95..s99 and the failed delete */
    engine_event_list_free(ev, nev);
    /* an unknown domain gets no log file, and reading one is an error */
    assert_int_equal(engine_snapshot_delete(f->e, "nodom", "x", 0, &err), -1);
    qs_error_clear(&err);
    path = qs_asprintf("%s/events/nodom.jsonl", engine_root(f->e));
    assert_int_not_equal(stat(path, &st), 0);
    free(path);
    assert_int_equal(engine_events_read(f->e, "nodom", 0, &ev, &nev, &err), -1);
    qs_error_clear(&err);
}

static void test_time_parse(void **state)
{
    struct fix *f = *state;
    struct qs_error *err = NULL;
    int64_t v;

    assert_int_equal(engine_duration_parse("1d12h", &v, &err), 0);
    assert_int_equal(v, 36 * 3600);
    assert_int_equal(engine_duration_parse("2w", &v, &err), 0);
    assert_int_equal(v, 14 * 86400);
    assert_int_equal(engine_duration_parse("5", &v, &err), -1);
    qs_error_clear(&err);
    assert_int_equal(engine_duration_parse("-1d", &v, &err), -1);
    qs_error_clear(&err);
    now_ms = at("2024-03-05 12:00 +0100") * 1000;
    assert_int_equal(engine_time_parse(f->e, "2h", &v, &err), 0);
    assert_int_equal(v, (at("2024-03-05 10:00 +0100")) * 1000);
    assert_int_equal(engine_time_parse(f->e, "@1700000000", &v, &err), 0);
    assert_int_equal(v, 1700000000000LL);
    assert_int_equal(engine_time_parse(f->e, "2024-03-05", &v, &err), 0);
    assert_int_equal(v, at("2024-03-05 00:00 +0100") * 1000);
    assert_int_equal(engine_time_parse(f->e, "2024-07-05 10:30", &v, &err), 0);
    assert_int_equal(v, at("2024-07-05 10:30 +0200") * 1000);
    assert_int_equal(engine_time_parse(f->e, "2024-07-05T10:30:15", &v, &err), 0);
    assert_int_equal(v, (at("2024-07-05 10:30 +0200") + 15) * 1000);
    assert_int_equal(engine_time_parse(f->e, "yesterday", &v, &err), -1);
    qs_error_clear(&err);
}

/* Schedules are checked when set, kept per domain, and forgotten with the domain. */
static void test_schedule_set_checks(void **state)
{
    struct fix *f = *state;
    struct engine_schedule s = {0}, *v = NULL;
    struct qs_error *err = NULL;
    size_t n = 0;
    char *path;
    struct stat st;

    s.name = "h";
    s.cron = "61 * * * *";
    assert_int_equal(engine_schedule_set(f->e, "vm", &s, &err), -1);
    assert_non_null(strstr(err->message, "minute"));
    qs_error_clear(&err);
    s.cron = "@daily";
    s.name = "../x";
    assert_int_equal(engine_schedule_set(f->e, "vm", &s, &err), -1);
    qs_error_clear(&err);
    s.name = "h";
    s.pattern = "a/%H";
    assert_int_equal(engine_schedule_set(f->e, "vm", &s, &err), -1);
    qs_error_clear(&err);
    s.pattern = NULL;
    s.quiesce = true;
    assert_int_equal(engine_schedule_set(f->e, "vm", &s, &err), -1);
    qs_error_clear(&err);
    s.kind = ENGINE_SCHEDULE_DISK_ONLY;
    assert_int_equal(engine_schedule_set(f->e, "nodom", &s, &err), -1);
    assert_int_equal(err->code, QS_ERR_NOTFOUND);
    qs_error_clear(&err);
    path = qs_asprintf("%s/schedule", engine_root(f->e));
    assert_int_not_equal(stat(path, &st), 0); /* nothing written by the refusals */
    free(path);
    assert_int_equal(engine_schedule_set(f->e, "vm", &s, &err), 0);
    assert_int_equal(engine_schedule_list(f->e, NULL, &v, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_string_equal(v[0].domain, "vm");
    assert_int_equal(v[0].kind, ENGINE_SCHEDULE_DISK_ONLY);
    assert_true(v[0].quiesce);
    assert_int_equal(v[0].created, now_ms / 1000);
    engine_schedule_list_free(v, n);
    path = qs_asprintf("%s/schedule/vm.json", engine_root(f->e));
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(engine_schedule_remove(f->e, "vm", "nosuch", &err), -1);
    assert_int_equal(err->code, QS_ERR_NOTFOUND);
    qs_error_clear(&err);
    assert_int_equal(engine_domain_undefine(f->e, "vm", true, &err), 0);
    assert_int_not_equal(stat(path, &st), 0);
    free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cron_parse),
        cmocka_unit_test(test_cron_next),
        cmocka_unit_test(test_retention_table),
        cmocka_unit_test(test_retention_reasons),
        cmocka_unit_test_setup_teardown(test_schedule_set_checks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_time_parse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_events_log, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prune_groups, setup, teardown),
        cmocka_unit_test_setup_teardown(test_runner_overlap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_runner_nothing_due_no_lock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_runner_failure_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_runner_skip_and_low_disk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_runner_year, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
