/* test_schedule_live.c: schedules on the real guest, through the qsnap command with a clock the test sets
 * ($QSNAP_TEST_NOW): a day of hourly internal snapshots pruned as the rules say, and a revert to a kept one
 * that gives the guest the RAM counter and disk bytes of its hour; a missed run caught up exactly once; a
 * protected snapshot that outlives every prune and that delete refuses without --force; overlapping runs of
 * two processes refused; a shut-off domain skipped, or snapshotted offline; disk-only snapshots pruned by
 * merging with the guest's data intact (label integration). */
#include "qsnap_test.h"

#include "engine.h"
#include "qs_util.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* 2024-03-04 20:00:00 UTC: the clock of every test starts there (TZ is UTC for the qsnap processes). */
#define T0 1709582400LL
#define HOUR 3600LL

static void set_now(int64_t t)
{
    char buf[32];
    snprintf(buf, sizeof(buf), "%lld", (long long)t);
    setenv("QSNAP_TEST_NOW", buf, 1);
}

/* The counter, read twice (a reading just as the low dword wraps is 2^32 short): the larger. */
static uint64_t counter_max(struct qt_fixture *f)
{
    uint64_t a = qt_counter(f), b = qt_counter(f);
    return a > b ? a : b;
}

/* OUT has a line with HEAD, then any two digits (the seconds of a time, which a slow machine can push on),
 * then TAIL. */
static void assert_row(const char *out, const char *head, const char *tail)
{
    const char *p = strstr(out, head);

    if (!p || strlen(p + strlen(head)) < 2 || strncmp(p + strlen(head) + 2, tail, strlen(tail)) != 0)
        fail_msg("no line '%s??%s' in:\n%s", head, tail, out);
}

static char *snapshot_names(struct qt_fixture *f)
{
    return QSNAP_OK(f, "snapshot-list", "vm", "--name");
}

/* Events of the domain, read through the library from the test's state directory. */
static struct engine_event *events_of(struct qt_fixture *f, size_t *n)
{
    struct engine_options o = {.root = f->root};
    struct qs_error *err = NULL;
    struct engine *e = engine_new(&o, &err);
    struct engine_event *v = NULL;

    assert_non_null(e);
    OK(engine_events_read(e, "vm", 0, &v, n, &err));
    engine_free(e);
    return v;
}

static size_t count_events(const struct engine_event *v, size_t n, const char *op, const char *outcome)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += strcmp(v[i].op, op) == 0 && (!outcome || strcmp(v[i].outcome, outcome) == 0);
    return k;
}

static int setup(void **state)
{
    setenv("TZ", "UTC", 1);
    tzset();
    return qt_setup(state);
}

static int teardown(void **state)
{
    unsetenv("QSNAP_TEST_NOW");
    return qt_teardown(state);
}

/* ------------------------------------------------------------------------------------------------ */

/*
 * A day of an hourly schedule on the running guest: before each run the guest's disk gets that hour's
 * pattern; the runs take real internal snapshots (RAM and disks) and prune them to the newest 4 hours and
 * the newest of the day before. A revert to a kept hour gives the guest that hour's counter and bytes. Then
 * five hours pass with nothing running: one run catches them up, once.
 */
static void test_day_of_snapshots(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    struct qs_error *err = NULL;
    const char *vda = qh_vm_disk_path(f->vm, "vda");
    uint64_t before[25], after[25];
    struct engine_event *ev;
    size_t nev, paused = 0;
    char *out, want[64];

    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    set_now(T0);
    qt_attach(f);
    out = QSNAP_OK(f, "schedule-set", "vm", "hourly", "--cron", "0 * * * *", "--keep-hourly", "4", "--keep-daily",
                   "2");
    qt_assert_contains(out, "Schedule hourly of domain vm set: 0 * * * *, next at 2024-03-04 21:00:00 +0000");
    free(out);
    for (int h = 1; h <= 24; h++) {
        time_t slot = (time_t)(T0 + h * HOUR);
        char name[32];
        strftime(name, sizeof(name), "auto-%Y%m%d-%H%M", gmtime(&slot));
        qt_disk_write(f, "vdb", (uint8_t)(0x40 + h), 0);
        before[h] = qt_counter(f);
        set_now(T0 + h * HOUR + 30);
        out = QSNAP_OK(f, "schedule-run", "--due");
        after[h] = counter_max(f);
        snprintf(want, sizeof(want), "vm/hourly: took %s (due at ", name);
        qt_assert_contains(out, want);
        free(out);
        /* a minute later nothing is due */
        set_now(T0 + h * HOUR + 90);
        out = QSNAP_OK(f, "schedule-run", "--due");
        assert_string_equal(out, "");
        free(out);
    }
    /* 4 hours of the second day, and the newest of the first */
    out = snapshot_names(f);
    assert_string_equal(out, "auto-20240304-2300\nauto-20240305-1700\nauto-20240305-1800\nauto-20240305-1900\n"
                             "auto-20240305-2000\n\n");
    free(out);
    assert_true(qt_image_has_tag(vda, "auto-20240305-1800"));
    assert_false(qt_image_has_tag(vda, "auto-20240304-2100")); /* pruned: data gone from the image too */
    assert_false(qt_image_has_tag(qh_vm_disk_path(f->vm, "vdb"), "auto-20240305-1600"));
    out = QSNAP_OK(f, "snapshot-check", "vm");
    assert_string_equal(out, "");
    free(out);

    /* what the prune would do now: nothing, each kept for its reason */
    out = QSNAP_OK(f, "snapshot-prune", "vm", "--dry-run");
    /* created at 23:00:30 and the time it took: the test clock runs on at the real pace from what it is set to */
    qt_assert_contains(out, " auto-20240304-2300   2024-03-04 23:00:");
    qt_assert_contains(out, " +0000   hourly     keep     keep-daily: newest of day 2024-03-04 (1 of 2)");
    qt_assert_contains(out, "keep-hourly: newest of hour 2024-03-05 20 (1 of 4)");
    qt_assert_contains(out, "Dry run: keep 5, protected 0, would remove 0");
    free(out);

    /* the log: 24 runs, each with its real create and the guest's pause as QEMU stamped it */
    ev = events_of(f, &nev);
    assert_int_equal(count_events(ev, nev, "schedule-run", "ok"), 24);
    assert_int_equal(count_events(ev, nev, "create", "ok"), 24);
    assert_int_equal(count_events(ev, nev, "delete", "ok"), 19);
    for (size_t i = 0; i < nev; i++)
        if (strcmp(ev[i].op, "create") == 0 && ev[i].pause_us > 0 && ev[i].schedule &&
            strcmp(ev[i].schedule, "hourly") == 0)
            paused++;
    assert_int_equal(paused, 24);
    engine_event_list_free(ev, nev);

    /* back to 18:00: the counter of that hour's snapshot, the disk of that hour */
    free(QSNAP_OK(f, "snapshot-revert", "vm", "auto-20240305-1800", "--paused"));
    {
        uint64_t c = qt_counter(f);
        int h = 22; /* 18:00 on the second day is run 22 */
        print_message("reverted: counter %llu in [%llu, %llu]\n", (unsigned long long)c,
                      (unsigned long long)before[h], (unsigned long long)after[h]);
        assert_true(c >= before[h] && c <= after[h]);
        assert_int_equal(qt_guest_reads(f, "vdb", (uint8_t)(0x40 + h), 0), 1);
    }
    qt_exec(qh_vm_qmp(f->vm), "cont");

    /* the host is "down" for five slots: the next run takes one snapshot for them, and says so */
    set_now(T0 + 29 * HOUR + 30);
    out = QSNAP_OK(f, "schedule-run", "--due");
    qt_assert_contains(out, "vm/hourly: took auto-20240306-0100 (caught up: 5 slots from 2024-03-05 21:00 +0000 to "
                            "2024-03-06 01:00 +0000 passed while qsnap did not run; one snapshot taken for them)");
    free(out);
    out = QSNAP_OK(f, "schedule-run", "--due");
    assert_string_equal(out, "");
    free(out);
    ev = events_of(f, &nev);
    {
        size_t caught = 0;
        for (size_t i = 0; i < nev; i++)
            caught += strcmp(ev[i].op, "schedule-run") == 0 && ev[i].detail && strstr(ev[i].detail, "caught up");
        assert_int_equal(caught, 1);
    }
    engine_event_list_free(ev, nev);
    out = QSNAP_OK(f, "events", "vm", "--since", "@1709686800");
    qt_assert_contains(out, "caught up: 5 slots");
    free(out);
}

/*
 * A protected snapshot stays through every prune, and delete refuses it without --force; two runner processes
 * never overlap; a shut-off domain is skipped unless the schedule takes offline snapshots.
 */
static void test_protected_overlap_offline(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    struct qs_error *err = NULL;
    char *out = NULL, *errout = NULL, *build = getenv("QSNAP_BUILD_DIR"), *fault;
    struct engine_event *ev;
    size_t nev;
    pid_t child;
    int st;

    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    set_now(T0);
    qt_attach(f);
    free(QSNAP_OK(f, "schedule-set", "vm", "h", "--cron", "0 * * * *", "--keep-last", "1"));
    set_now(T0 + HOUR + 10);
    free(QSNAP_OK(f, "schedule-run", "--due"));
    out = QSNAP_OK(f, "snapshot-protect", "vm", "auto-20240304-2100");
    assert_string_equal(out, "Domain snapshot auto-20240304-2100 protected\n\n");
    free(out);
    for (int h = 2; h <= 4; h++) {
        set_now(T0 + h * HOUR + 10);
        free(QSNAP_OK(f, "schedule-run", "--due"));
    }
    out = snapshot_names(f);
    assert_string_equal(out, "auto-20240304-2100\nauto-20240305-0000\n\n");
    free(out);
    out = QSNAP_OK(f, "snapshot-prune", "vm", "--keep-last", "1", "--dry-run");
    assert_row(out, "auto-20240304-2100   2024-03-04 21:00:", " +0000   h          protected   protected");
    free(out);
    qt_qsnap_fail(f, "snapshot 'auto-20240304-2100' is protected", "snapshot-delete", "vm", "auto-20240304-2100",
                  (char *)NULL);
    assert_true(qt_image_has_tag(qh_vm_disk_path(f->vm, "vda"), "auto-20240304-2100"));
    free(QSNAP_OK(f, "snapshot-delete", "vm", "auto-20240304-2100", "--force"));
    assert_false(qt_image_has_tag(qh_vm_disk_path(f->vm, "vda"), "auto-20240304-2100"));

    /* two runner processes: the first holds still inside its snapshot (qsnap-fault pauses after its first
     * step) while the second starts, and is refused */
    assert_non_null(build);
    fault = qs_asprintf("%s/cli/qsnap-fault", build);
    set_now(T0 + 5 * HOUR + 10);
    qt_fault_hold(f, "1"); /* until the second runner was refused: no window to miss on a slow machine */
    child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        char *o = NULL, *e = NULL;
        f->qsnap = fault;
        st = qt_qsnap_run(f, &o, &e, "schedule-run", "--due", (char *)NULL);
        if (st != 0)
            fprintf(stderr, "first runner: %d: %s\n", st, e);
        _exit(st);
    }
    qt_fault_wait_held(f, 1);
    st = qt_qsnap_run(f, &out, &errout, "schedule-run", "--due", (char *)NULL);
    assert_int_equal(st, 1);
    /* the pid named is the first runner's qsnap (a child of the forked child) */
    qt_assert_contains(out, "vm/*: busy: a schedule run of domain 'vm' is already under way (qsnap process ");
    qt_assert_contains(errout, "error: 1 of 1 schedule run failed");
    free(out), free(errout);
    qt_fault_release(f);
    assert_int_equal(waitpid(child, &st, 0), child);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    out = snapshot_names(f);
    assert_string_equal(out, "auto-20240305-0100\n\n"); /* the first runner's, and its prune */
    free(out);
    ev = events_of(f, &nev);
    assert_int_equal(count_events(ev, nev, "schedule-run", "busy"), 1);
    assert_int_equal(count_events(ev, nev, "schedule-run", "ok"), 5);
    engine_event_list_free(ev, nev);

    /* a runner killed inside its snapshot: the next command finishes or undoes it, and the log says so */
    child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        char *o = NULL, *e = NULL;
        setenv("QSNAP_FAULT_AT", "1", 1); /* SIGKILL right after the create's intent record */
        f->qsnap = fault;
        _exit(qt_qsnap_run(f, &o, &e, "schedule-run", "vm", "--schedule", "h", (char *)NULL));
    }
    assert_int_equal(waitpid(child, &st, 0), child);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 137);
    out = snapshot_names(f); /* a read: recovers what the dead runner left */
    assert_string_equal(out, "auto-20240305-0100\n\n");
    free(out);
    ev = events_of(f, &nev);
    assert_string_equal(ev[nev - 1].op, "recover");
    assert_string_equal(ev[nev - 1].outcome, "ok");
    qt_assert_contains(ev[nev - 1].detail, "an interrupted create (internal) by qsnap process ");
    engine_event_list_free(ev, nev);
    out = QSNAP_OK(f, "snapshot-check", "vm");
    assert_string_equal(out, "");
    free(out);

    /* shut off: skipped (and said), then with --offline taken from the images */
    free(QSNAP_OK(f, "destroy", "vm"));
    qh_vm_wait_exit(f->vm, 10000, NULL, NULL);
    set_now(T0 + 6 * HOUR + 10);
    out = QSNAP_OK(f, "schedule-run", "--due");
    qt_assert_contains(out, "vm/h: skipped - due at 2024-03-05 02:00 +0000: the domain is shut off and the schedule "
                            "takes no offline snapshots");
    free(out);
    free(QSNAP_OK(f, "schedule-set", "vm", "h", "--cron", "0 * * * *", "--keep-last", "1", "--offline"));
    set_now(T0 + 7 * HOUR + 10);
    out = QSNAP_OK(f, "schedule-run", "--due");
    qt_assert_contains(out, "vm/h: took auto-20240305-0300");
    free(out);
    out = QSNAP_OK(f, "snapshot-list", "vm");
    assert_row(out, " auto-20240305-0300   2024-03-05 03:00:", " +0000   shutoff");
    free(out);
    assert_true(qt_image_has_tag(qh_vm_disk_path(f->vm, "vdb"), "auto-20240305-0300"));
    out = QSNAP_OK(f, "schedule-list", "vm");
    /* the run ended after its start (03:00:10 by the test's clock), however long it took on this machine */
    qt_assert_contains(out, "   ok 2024-03-05 03:");
    qt_assert_contains(out, " +0000 (auto-20240305-0300)");
    free(out);
    free(fault);
}

/*
 * A disk-only schedule: each run adds an overlay, and its prune removes the older snapshots by merging their
 * overlays (the engine's own delete). What remains is whole: snapshot-check finds nothing, the guest reads
 * the newest bytes, and the remaining snapshot's frozen image holds the bytes of its hour. Then one run each
 * of the memory kinds.
 */
static void test_disk_only_prune_merges(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    struct qs_error *err = NULL;
    char *out, *live, *frozen;

    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    set_now(T0);
    qt_attach(f);
    free(QSNAP_OK(f, "schedule-set", "vm", "ext", "--cron", "0 * * * *", "--kind", "disk-only", "--keep-last", "1"));
    for (int h = 1; h <= 3; h++) {
        qt_disk_write(f, "vdb", (uint8_t)(0x60 + h), 0);
        set_now(T0 + h * HOUR + 5);
        out = QSNAP_OK(f, "schedule-run", "--due");
        qt_assert_contains(out, "vm/ext: took ");
        if (h > 1)
            qt_assert_contains(out, "pruned 1");
        free(out);
    }
    qt_disk_write(f, "vdb", 0x6f, 0);
    out = snapshot_names(f);
    assert_string_equal(out, "auto-20240304-2300\n\n");
    free(out);
    out = QSNAP_OK(f, "snapshot-check", "vm");
    assert_string_equal(out, "");
    free(out);
    assert_int_equal(qt_guest_reads(f, "vdb", 0x6f, 0), 1);
    /* the live overlay sits on the snapshot's frozen image, which has the bytes of 23:00 */
    live = qt_live_file(qh_vm_qmp(f->vm), "vdb");
    frozen = qt_backing_of(live);
    assert_non_null(frozen);
    assert_int_equal(qt_image_is(frozen, "qcow2", 0x63, 0), 1);
    free(live);
    free(frozen);
    out = QSNAP_OK(f, "events", "vm");
    qt_assert_contains(out, "delete");
    free(out);

    /* the memory kinds, run now: memspec saves RAM to a file beside the first image with the guest paused,
     * live writes it while the guest runs; both pauses are in the log */
    free(QSNAP_OK(f, "schedule-set", "vm", "mem", "--cron", "@daily", "--kind", "memspec"));
    free(QSNAP_OK(f, "schedule-set", "vm", "lv", "--cron", "@daily", "--kind", "live"));
    set_now(T0 + 4 * HOUR);
    out = QSNAP_OK(f, "schedule-run", "vm", "--schedule", "mem");
    qt_assert_contains(out, "vm/mem: took auto-20240305-0000 (asked)");
    free(out);
    out = QSNAP_OK(f, "snapshot-dumpxml", "vm", "auto-20240305-0000");
    qt_assert_contains(out, "<memory snapshot='external' file='");
    qt_assert_contains(out, ".auto-20240305-0000.mem'/>");
    qt_assert_contains(out, "<qsnap:schedule xmlns:qsnap='https://qsnap.dev/xmlns/snapshot/1'>mem</qsnap:schedule>");
    free(out);
    set_now(T0 + 4 * HOUR + 120);
    out = QSNAP_OK(f, "schedule-run", "vm", "--schedule", "lv");
    qt_assert_contains(out, "vm/lv: took auto-20240305-0002 (asked)");
    free(out);
    out = QSNAP_OK(f, "snapshot-info", "vm", "auto-20240305-0002");
    qt_assert_contains(out, "Guest pause:");
    free(out);
    {
        size_t nev, found = 0;
        struct engine_event *ev = events_of(f, &nev);
        for (size_t i = 0; i < nev; i++)
            if (strcmp(ev[i].op, "create") == 0 && ev[i].schedule &&
                (strcmp(ev[i].schedule, "mem") == 0 || strcmp(ev[i].schedule, "lv") == 0)) {
                assert_string_equal(ev[i].outcome, "ok");
                assert_true(ev[i].pause_us > 0);
                found++;
            }
        assert_int_equal(found, 2);
        engine_event_list_free(ev, nev);
    }
    out = QSNAP_OK(f, "snapshot-check", "vm");
    assert_string_equal(out, "");
    free(out);
}

static struct qt_fixture f1 = {.cfg = &qt_cfg_two_disks};
static struct qt_fixture f2 = {.cfg = &qt_cfg_two_disks};
static struct qt_fixture f3 = {.cfg = &qt_cfg_two_disks};

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_prestate_setup_teardown(test_day_of_snapshots, setup, teardown, &f1),
        cmocka_unit_test_prestate_setup_teardown(test_protected_overlap_offline, setup, teardown, &f2),
        cmocka_unit_test_prestate_setup_teardown(test_disk_only_prune_merges, setup, teardown, &f3),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
