/* test_service_schedules.c: qsnapd's schedule runner and the schedule, prune, protect and event-log routes, on
 * real QEMU over real HTTP, driven through time with the engines' injectable clock ($QSNAP_TEST_NOW) instead of
 * waiting: the runner's minute tick and its catch-up at start take real snapshots the guest's RAM and disk come
 * back to; a runner lock held by another runner is met once, not every minute; hostile inputs change nothing
 * (label integration). */
#include "svc_test.h"

#include "qs_util.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define HOUR 3600
/* 2024-03-04 20:59:22 UTC: the runner's tick at 20:59:30 comes 8 s after qsnapd starts */
#define T0 INT64_C(1709585962)
#define T1 INT64_C(1709596765) /* 2024-03-04 23:59:25 */
#define T2 INT64_C(1709603965) /* 2024-03-05 01:59:25 */
/* 2024-03-05 01:00:05: an hour before a name the routes' test takes would change */
#define T3 INT64_C(1709600405)

static struct st_daemon daemon_;

static void set_now(int64_t t)
{
    char buf[32];
    snprintf(buf, sizeof(buf), "%lld", (long long)t);
    setenv("QSNAP_TEST_NOW", buf, 1);
}

static void start_at(struct qt_fixture *f, int64_t t, const char *const *extra)
{
    set_now(t);
    st_start(&daemon_, "qsnapd", f->root, qh_vm_dir(f->vm), extra);
}

static void http(const char *method, const char *path, const char *body, struct st_reply *r)
{
    st_http(&daemon_, method, path, body, NULL, r);
}

/* An error reply with STATUS and CODE; its message contains WANT (may be NULL). */
static void expect_error(const char *method, const char *path, const char *body, long status, const char *code,
                         const char *want)
{
    struct st_reply r;
    json_object *o;

    http(method, path, body, &r);
    o = st_expect(&r, status);
    assert_non_null(o);
    assert_string_equal(st_str(o, "code"), code);
    if (want)
        qt_assert_contains(st_str(o, "message"), want);
    st_reply_release(&r);
}

/* Schedule NAME of the VM as the API shows it (caller puts it). */
static json_object *schedule(const char *name)
{
    struct st_reply r;
    json_object *o;
    char *path = qs_asprintf("/api/vms/vm/schedules/%s", name);

    http("GET", path, NULL, &r);
    o = json_object_get(st_expect(&r, 200));
    st_reply_release(&r);
    free(path);
    return o;
}

/* Waits (up to 90 s: a tick missed under load comes a minute later) until schedule NAME's last slot is SLOT. */
static json_object *wait_slot(const char *name, int64_t slot)
{
    for (int i = 0; i < 900; i++) {
        json_object *o = schedule(name);
        if (json_object_get_int64(json_object_object_get(o, "last_slot")) == slot)
            return o;
        json_object_put(o);
        usleep(100 * 1000);
    }
    fail_msg("schedule '%s' did not run for slot %lld", name, (long long)slot);
    return NULL;
}

/* The VM's event log through the API from SINCE_MS (caller puts it). */
static json_object *events(int64_t since_ms)
{
    struct st_reply r;
    json_object *a;
    char *path = qs_asprintf("/api/events?vm=vm&since=%lld", (long long)since_ms);

    http("GET", path, NULL, &r);
    a = json_object_get(json_object_object_get(st_expect(&r, 200), "event"));
    st_reply_release(&r);
    free(path);
    return a;
}

static size_t count_ops(json_object *a, const char *op, const char *outcome)
{
    size_t n = 0;
    for (size_t i = 0; i < json_object_array_length(a); i++) {
        json_object *o = json_object_array_get_idx(a, i);
        if (strcmp(st_str(o, "op"), op) == 0 && (!outcome || qs_str_equal(st_str(o, "outcome"), outcome)))
            n++;
    }
    return n;
}

/* The runner lock of the VM, held as another runner (the systemd timer's qsnap) would hold it. */
static int hold_runner_lock(struct qt_fixture *f)
{
    char *path = qs_asprintf("%s/schedule/vm.lock", f->root);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);

    assert_true(fd >= 0);
    assert_int_equal(flock(fd, LOCK_EX | LOCK_NB), 0);
    assert_int_equal(write(fd, "4242\n", 5), 5);
    free(path);
    return fd;
}

/* Sleeps until qsnapd's clock (started at START, the real pace since STARTED_MS) is past T. */
static void sleep_until(int64_t start, int64_t started_ms, int64_t t)
{
    int64_t now = start * 1000 + (qs_now_ms() - started_ms);
    if (t * 1000 > now)
        usleep((useconds_t)(t * 1000 - now) * 1000u);
}

static size_t log_count(const char *needle)
{
    char *log = qt_slurp(daemon_.log);
    size_t n = 0;
    for (const char *p = log; p && (p = strstr(p, needle)); p += strlen(needle))
        n++;
    free(log);
    return n;
}

/* The domain's state: its definition, snapshots and schedules (the event log records refusals the engine made). */
static char *state_hash(struct qt_fixture *f)
{
    static const char *const dirs[] = {"qemu", "snapshot", "schedule"};
    char *h[3], *all;

    for (size_t i = 0; i < 3; i++) {
        char *d = qs_asprintf("%s/%s", f->root, dirs[i]);
        h[i] = st_tree_hash(d);
        free(d);
    }
    all = qs_asprintf("%s %s %s", h[0], h[1], h[2]);
    for (size_t i = 0; i < 3; i++)
        free(h[i]);
    return all;
}

/* The running guest attached, and the service's replies to be recorded. */
static void prepare(struct qt_fixture *f)
{
    struct qs_error *err = NULL;

    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    qt_attach(f);
    memset(&daemon_, 0, sizeof(daemon_));
    daemon_.record = qs_asprintf("%s/replies", qh_vm_dir(f->vm));
    assert_int_equal(mkdir(daemon_.record, 0700), 0);
}

/* ---- the runner ---- */

static void test_runner(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    const char *vda = qh_vm_disk_path(f->vm, "vda");
    struct st_reply r;
    json_object *o, *a, *t;
    uint64_t c_snap;
    int64_t started;
    size_t before;
    char *out;
    int fd;

    prepare(f);
    /* the guest as the scheduled snapshot must keep it: paused at a known count, 0xaa on vdb */
    qt_disk_write(f, "vdb", 0xaa, 0);
    qt_exec(qh_vm_qmp(f->vm), "stop");
    c_snap = qt_counter(f);
    start_at(f, T0, NULL);
    started = qs_now_ms();
    for (int i = 0; i < 100 && log_count("the schedule runner made its pass at start") == 0; i++)
        usleep(50 * 1000);
    assert_int_equal(log_count("the schedule runner made its pass at start"), 1);
    /* a schedule set three hours back by the CLI (its own clock), after qsnapd's pass at start: its next minute
     * tick finds three slots passed and takes one snapshot for them */
    set_now(T0 - 3 * HOUR);
    out = QSNAP_OK(f, "schedule-set", "vm", "h", "--cron", "0 * * * *", "--keep-last", "2");
    qt_assert_contains(out, "next at 2024-03-04 18:00:00 +0000");
    free(out);
    o = wait_slot("h", T0 - 22 - 59 * 60);
    assert_true(qs_now_ms() - started < 90000);
    assert_string_equal(st_str(o, "last_result"), "ok");
    assert_string_equal(st_str(o, "last_snapshot"), "auto-20240304-2000");
    assert_string_equal(st_str(o, "expanded"), "0 * * * *");
    assert_int_equal(json_object_get_int64(json_object_object_get(o, "next_slot")), T0 + 38);
    json_object_put(o);
    assert_true(qt_image_has_tag(vda, "auto-20240304-2000"));
    a = events(0);
    o = json_object_array_get_idx(a, json_object_array_length(a) - 1);
    assert_string_equal(st_str(o, "op"), "schedule-run");
    assert_string_equal(st_str(o, "schedule"), "h");
    qt_assert_contains(st_str(o, "detail"), "caught up: 3 slots from 2024-03-04 18:00 +0000 to 2024-03-04 20:00 "
                                            "+0000 passed while qsnap did not run; one snapshot taken for them");
    json_object_put(a);
    assert_int_equal(log_count("qsnapd: schedule vm/h: took auto-20240304-2000 (caught up: 3 slots"), 1);
    /* a task like any other, and counted */
    http("GET", "/api/tasks", NULL, &r);
    a = json_object_object_get(st_expect(&r, 200), "task");
    t = json_object_array_get_idx(a, 0);
    assert_string_equal(st_str(t, "kind"), "schedule-run");
    assert_string_equal(st_str(t, "vm"), "vm");
    assert_string_equal(st_str(t, "state"), "succeeded");
    o = json_object_array_get_idx(json_object_object_get(json_object_object_get(t, "result"), "run"), 0);
    assert_string_equal(st_str(o, "outcome"), "ok");
    assert_int_equal(json_object_get_int(json_object_object_get(o, "missed")), 2);
    st_reply_release(&r);
    http("GET", "/metrics", NULL, &r);
    qt_assert_contains(r.body, "qsnap_schedule_runs_total{outcome=\"ok\"} 1\n");
    qt_assert_contains(r.body, "qsnap_schedule_runs_total{outcome=\"busy\"} 0\n");
    st_reply_release(&r);
    /* the guest comes back to it: the count it was paused at, 0xaa */
    qt_exec(qh_vm_qmp(f->vm), "cont");
    qt_disk_write(f, "vdb", 0xbb, 0);
    json_object_put(st_task(&daemon_, "POST", "/api/vms/vm/snapshots/auto-20240304-2000/restore", NULL, "succeeded"));
    qt_assert_status(qh_vm_qmp(f->vm), "paused");
    assert_int_equal(qt_counter(f), c_snap);
    assert_int_equal(qt_guest_reads(f, "vdb", 0xaa, 0), 1);
    qt_exec(qh_vm_qmp(f->vm), "cont");
    a = events(0);
    before = json_object_array_length(a);
    json_object_put(a);
    st_stop(&daemon_);

    /* another runner holds the domain's runner lock while three slots are due: refused as busy once at start, and
     * the next tick leaves the domain alone instead of failing again */
    fd = hold_runner_lock(f);
    start_at(f, T1, NULL);
    started = qs_now_ms();
    for (int i = 0; i < 300 && log_count("qsnapd: schedule vm/*: busy") == 0; i++)
        usleep(100 * 1000);
    sleep_until(T1, started, T1 + 7); /* past the tick at 23:59:30 */
    assert_int_equal(log_count("qsnapd: schedule vm/*: busy: a schedule run of domain 'vm' is already under way "
                               "(qsnap process 4242)"),
                     1);
    a = events(0);
    assert_int_equal(json_object_array_length(a), before + 1);
    assert_int_equal(count_ops(a, "schedule-run", "busy"), 1);
    json_object_put(a);
    o = schedule("h");
    assert_int_equal(json_object_get_int64(json_object_object_get(o, "last_slot")), T0 - 22 - 59 * 60);
    json_object_put(o);
    st_stop(&daemon_);
    close(fd);

    /* qsnapd was down for five slots: its start takes one snapshot for all of them, and prunes (keep-last 2) */
    start_at(f, T2, NULL);
    started = qs_now_ms();
    o = wait_slot("h", T2 - 25 - 59 * 60);
    assert_string_equal(st_str(o, "last_snapshot"), "auto-20240305-0100");
    json_object_put(o);
    a = events(T2 * 1000);
    o = json_object_array_get_idx(a, json_object_array_length(a) - 1);
    qt_assert_contains(st_str(o, "detail"), "caught up: 5 slots from 2024-03-04 21:00 +0000 to 2024-03-05 01:00 "
                                            "+0000");
    json_object_put(a);
    assert_true(qt_image_has_tag(vda, "auto-20240304-2000"));
    assert_true(qt_image_has_tag(vda, "auto-20240305-0100"));
    /* nothing due and the lock held by another runner: the minute tick takes no lock, logs nothing */
    fd = hold_runner_lock(f);
    a = events(0);
    before = json_object_array_length(a);
    json_object_put(a);
    sleep_until(T2, started, T2 + 7); /* past the tick at 01:59:30 */
    a = events(0);
    assert_int_equal(json_object_array_length(a), before);
    json_object_put(a);
    assert_int_equal(log_count("busy"), 1); /* the one of the run before */
    close(fd);
    st_validate_replies(&daemon_);
    st_stop(&daemon_);
    st_release(&daemon_);
}

/* ---- the routes, and what they refuse ---- */

static void test_schedule_routes(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    const char *vda = qh_vm_disk_path(f->vm, "vda");
    const char *no_runner[] = {"--no-scheduler", NULL};
    struct st_reply r;
    json_object *o, *a, *t, *run;
    char *before, *after, *out;
    int64_t since;

    prepare(f);
    start_at(f, T3, no_runner);
    out = qt_slurp(daemon_.log);
    qt_assert_contains(out, "qsnapd: the schedule runner is off (--no-scheduler)");
    free(out);

    /* PUT, GET, the list of every domain's, DELETE */
    http("PUT", "/api/vms/vm/schedules/h", "{\"cron\":\"@hourly\",\"keep\":{\"last\":2},\"pattern\":\"h-%H\"}", &r);
    o = st_expect(&r, 200);
    assert_string_equal(st_str(o, "name"), "h");
    assert_string_equal(st_str(o, "kind"), "internal");
    assert_string_equal(st_str(o, "pattern"), "h-%H");
    assert_int_equal(json_object_get_int(json_object_object_get(json_object_object_get(o, "keep"), "last")), 2);
    assert_non_null(st_str(o, "expanded"));
    assert_null(st_str(o, "last_result"));
    st_reply_release(&r);
    http("PUT", "/api/vms/vm/schedules/d",
         "{\"cron\":\"30 2 * * *\",\"kind\":\"disk-only\",\"offline\":true,\"min_free_pct\":20,\"keep\":{\"daily\":7,"
         "\"max_age_s\":864000}}",
         &r);
    o = st_expect(&r, 200);
    assert_string_equal(st_str(o, "kind"), "disk-only");
    assert_int_equal(json_object_get_int(json_object_object_get(o, "min_free_pct")), 20);
    assert_int_equal(json_object_get_int64(json_object_object_get(o, "next_slot")), T3 + 5395); /* 02:30 */
    st_reply_release(&r);
    http("GET", "/api/schedules", NULL, &r);
    assert_int_equal(json_object_array_length(json_object_object_get(st_expect(&r, 200), "schedule")), 2);
    st_reply_release(&r);
    http("GET", "/api/vms/vm/schedules", NULL, &r);
    a = json_object_object_get(st_expect(&r, 200), "schedule");
    assert_string_equal(st_str(json_object_array_get_idx(a, 0), "name"), "d");
    st_reply_release(&r);
    /* the CLI sees what the API set */
    out = QSNAP_OK(f, "schedule-list", "vm");
    qt_assert_contains(out, "30 2 * * *");
    free(out);
    http("DELETE", "/api/vms/vm/schedules/d", NULL, &r);
    st_expect(&r, 200);
    st_reply_release(&r);
    expect_error("GET", "/api/vms/vm/schedules/d", NULL, 404, "not-found", "domain 'vm' has no schedule 'd'");
    expect_error("DELETE", "/api/vms/vm/schedules/d", NULL, 404, "not-found", "domain 'vm' has no schedule 'd'");

    /* runs asked for: now (a task with the runs as its result), due (nothing), every domain's due */
    qt_disk_write(f, "vdb", 0x11, 0);
    t = st_task(&daemon_, "POST", "/api/vms/vm/schedules/run?schedule=h", NULL, "succeeded");
    run = json_object_array_get_idx(json_object_object_get(json_object_object_get(t, "result"), "run"), 0);
    assert_string_equal(st_str(run, "outcome"), "ok");
    assert_string_equal(st_str(run, "reason"), "asked");
    assert_string_equal(st_str(run, "snapshot"), "h-01");
    json_object_put(t);
    assert_true(qt_image_has_tag(vda, "h-01"));
    t = st_task(&daemon_, "POST", "/api/vms/vm/schedules/run?due=true", "{}", "succeeded");
    assert_int_equal(json_object_array_length(json_object_object_get(json_object_object_get(t, "result"), "run")), 0);
    json_object_put(t);
    t = st_task(&daemon_, "POST", "/api/schedules/run?due=true", NULL, "succeeded");
    assert_null(st_str(t, "vm"));
    json_object_put(t);
    http("POST", "/api/vms/vm/schedules/run?schedule=h&wait=true", NULL, &r);
    assert_string_equal(st_str(st_expect(&r, 200), "state"), "succeeded");
    st_reply_release(&r);
    assert_true(qt_image_has_tag(vda, "h-01-2"));
    /* a run of a schedule that is not there fails as a task, with the engine's words */
    t = st_task(&daemon_, "POST", "/api/vms/vm/schedules/run?schedule=nope", NULL, "failed");
    assert_string_equal(st_str(json_object_object_get(t, "error"), "message"), "domain 'vm' has no schedule 'nope'");
    json_object_put(t);

    /* prune: a dry run answers at once and changes nothing; the prune is a task with the same list */
    http("POST", "/api/vms/vm/prune?dry_run=true", "{\"schedule\":\"h\",\"keep\":{\"last\":1}}", &r);
    a = json_object_object_get(st_expect(&r, 200), "item");
    assert_int_equal(json_object_array_length(a), 2);
    assert_string_equal(st_str(json_object_array_get_idx(a, 0), "action"), "keep");
    assert_string_equal(st_str(json_object_array_get_idx(a, 1), "action"), "remove");
    assert_string_equal(st_str(json_object_array_get_idx(a, 1), "snapshot"), "h-01");
    st_reply_release(&r);
    assert_true(qt_image_has_tag(vda, "h-01"));
    /* protected first: kept whatever the rules say, and a delete refused */
    http("POST", "/api/vms/vm/snapshots/h-01/protect", NULL, &r);
    assert_true(json_object_get_boolean(json_object_object_get(st_expect(&r, 200), "protected")));
    st_reply_release(&r);
    http("GET", "/api/vms/vm/snapshots/h-01", NULL, &r);
    o = st_expect(&r, 200);
    assert_true(json_object_get_boolean(json_object_object_get(o, "protected")));
    assert_string_equal(st_str(o, "schedule"), "h");
    st_reply_release(&r);
    t = st_task(&daemon_, "POST", "/api/vms/vm/prune", "{\"schedule\":\"h\",\"keep\":{\"last\":1}}", "succeeded");
    a = json_object_object_get(json_object_object_get(t, "result"), "item");
    assert_string_equal(st_str(json_object_array_get_idx(a, 1), "action"), "protected");
    json_object_put(t);
    assert_true(qt_image_has_tag(vda, "h-01"));
    t = st_task(&daemon_, "DELETE", "/api/vms/vm/snapshots/h-01", NULL, "failed");
    qt_assert_contains(st_str(json_object_object_get(t, "error"), "message"), "is protected");
    json_object_put(t);
    http("POST", "/api/vms/vm/snapshots/h-01/unprotect", NULL, &r);
    assert_false(json_object_get_boolean(json_object_object_get(st_expect(&r, 200), "protected")));
    st_reply_release(&r);
    t = st_task(&daemon_, "POST", "/api/vms/vm/prune", "{\"schedule\":\"h\",\"keep\":{\"last\":1}}", "succeeded");
    a = json_object_object_get(json_object_object_get(t, "result"), "item");
    assert_string_equal(st_str(json_object_array_get_idx(a, 1), "action"), "remove");
    json_object_put(t);
    assert_false(qt_image_has_tag(vda, "h-01"));
    assert_true(qt_image_has_tag(vda, "h-01-2"));
    /* the manual snapshots only with rules; dry */
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "manual1"));
    http("POST", "/api/vms/vm/prune?dry_run=1", "{\"manual\":true,\"keep\":{\"max_age_s\":1}}", &r);
    a = json_object_object_get(st_expect(&r, 200), "item");
    assert_int_equal(json_object_array_length(a), 1);
    assert_null(st_str(json_object_array_get_idx(a, 0), "schedule"));
    st_reply_release(&r);

    /* the event log, whole and from a time on */
    a = events(0);
    assert_int_equal(count_ops(a, "schedule-set", "ok"), 2);
    assert_int_equal(count_ops(a, "schedule-remove", "ok"), 1);
    assert_int_equal(count_ops(a, "schedule-run", "ok"), 2);
    assert_int_equal(count_ops(a, "protect", "ok"), 1);
    assert_int_equal(count_ops(a, "unprotect", "ok"), 1);
    assert_true(count_ops(a, "prune", "ok") >= 3);
    since = json_object_get_int64(json_object_object_get(json_object_array_get_idx(a, json_object_array_length(a) - 1),
                                                         "time_ms"));
    json_object_put(a);
    a = events(since);
    assert_true(json_object_array_length(a) >= 1);
    assert_string_equal(st_str(json_object_array_get_idx(a, 0), "op"), "prune");
    json_object_put(a);

    /* hostile and wrong input: a 4xx with the reason, and the state as it was */
    before = state_hash(f);
    expect_error("PUT", "/api/vms/vm/schedules/x", "{\"cron\":\"61 * * * *\"}", 400, "invalid",
                 "cron minute '61' is out of range 0-59");
    expect_error("PUT", "/api/vms/vm/schedules/x", "{\"cron\":\"@daily\",\"kind\":\"bogus\"}", 400, "invalid",
                 "must be internal, disk-only, live or memspec");
    expect_error("PUT", "/api/vms/vm/schedules/x", "{\"cron\":\"@daily\",\"keep\":{\"last\":-1}}", 400, "invalid",
                 "member 'last' must be an integer from 0 to 1000000");
    expect_error("PUT", "/api/vms/vm/schedules/x", "{\"cron\":\"@daily\",\"keep\":{\"lats\":1}}", 400, "invalid",
                 "unknown member 'lats'");
    expect_error("PUT", "/api/vms/vm/schedules/x", "{\"cron\":\"@daily\",\"kepe\":{}}", 400, "invalid",
                 "unknown member 'kepe'");
    expect_error("PUT", "/api/vms/vm/schedules/x", "{\"kind\":\"internal\"}", 400, "invalid", "'cron' is required");
    expect_error("PUT", "/api/vms/vm/schedules/x", "{\"cron\":5}", 400, "invalid", "must be a string");
    expect_error("PUT", "/api/vms/vm/schedules/x", "{\"cron\":\"@daily\",\"pattern\":\"../../etc/%H\"}", 400,
                 "invalid", "name pattern '../../etc/%H'");
    expect_error("PUT", "/api/vms/vm/schedules/x", "{\"cron\":\"@daily\",\"min_free_pct\":100}", 400, "invalid",
                 "from 0 to 99");
    expect_error("PUT", "/api/vms/vm/schedules/.hidden", "{\"cron\":\"@daily\"}", 400, "invalid",
                 "must not start with '.'");
    expect_error("PUT", "/api/vms/vm/schedules/%2e%2e", "{\"cron\":\"@daily\"}", 400, "invalid", NULL);
    expect_error("PUT", "/api/vms/nope/schedules/x", "{\"cron\":\"@daily\"}", 404, "not-found", "'nope'");
    expect_error("GET", "/api/vms/nope/schedules", NULL, 404, "not-found", NULL);
    expect_error("POST", "/api/schedules/run", NULL, 400, "invalid", "only when due");
    expect_error("POST", "/api/schedules/run?due=true&schedule=h", NULL, 400, "invalid", "needs its domain");
    expect_error("POST", "/api/vms/vm/schedules/run?due=maybe", NULL, 400, "invalid", "'due' must be true or false");
    expect_error("POST", "/api/vms/vm/schedules/run?schedule=a/b", NULL, 400, "invalid", "must not contain '/'");
    expect_error("POST", "/api/vms/vm/prune?dry_run=true", "{\"schedule\":\"h\",\"manual\":true}", 400, "invalid",
                 "mutually exclusive");
    expect_error("POST", "/api/vms/vm/prune?dry_run=true", "{\"manual\":true}", 400, "invalid", "needs retention");
    expect_error("POST", "/api/vms/vm/prune", "{\"keep\":{\"max_age_s\":\"1d\"}}", 400, "invalid", "max_age_s");
    expect_error("POST", "/api/vms/vm/prune?dry_run=true", "{\"schedule\":\"gone\"}", 404, "not-found",
                 "give retention rules");
    expect_error("POST", "/api/vms/vm/snapshots/nope/protect", NULL, 404, "not-found", "'nope'");
    expect_error("POST", "/api/vms/vm/snapshots/h-01-2/protect", "{\"protect\":false}", 400, "invalid",
                 "unknown member");
    expect_error("GET", "/api/events?vm=../etc", NULL, 400, "invalid", "must not start with '.'");
    expect_error("GET", "/api/events?vm=a/b", NULL, 400, "invalid", "must not contain '/'");
    expect_error("GET", "/api/events?vm=nope", NULL, 404, "not-found", NULL);
    expect_error("GET", "/api/events?vm=vm&since=-5", NULL, 400, "invalid", "'since' must be an integer");
    expect_error("GET", "/api/events?vm=vm&since=soon", NULL, 400, "invalid", "'since' must be an integer");
    expect_error("GET", "/api/events?since=5", NULL, 400, "invalid", "give 'vm' too");
    after = state_hash(f);
    assert_string_equal(before, after);
    free(before);
    free(after);
    out = QSNAP_OK(f, "snapshot-list", "vm", "--name");
    assert_string_equal(out, "h-01-2\nmanual1\n\n");
    free(out);
    st_validate_replies(&daemon_);
    st_stop(&daemon_);
    st_release(&daemon_);
}

/* qsnapd goes before the VM, also when a test failed half way */
static int teardown(void **state)
{
    st_release(&daemon_);
    unsetenv("QSNAP_TEST_NOW");
    return qt_teardown(state);
}

int main(void)
{
    static struct qt_fixture f1 = {.cfg = &qt_cfg_two_disks}, f2 = {.cfg = &qt_cfg_two_disks};
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_prestate_setup_teardown(test_runner, qt_setup, teardown, &f1),
        cmocka_unit_test_prestate_setup_teardown(test_schedule_routes, qt_setup, teardown, &f2),
    };
    setenv("TZ", "UTC", 1);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
