/* test_live_live.c: live snapshots (--live, QEMU's background-snapshot) through the qsnap command on real QEMU -
 * the guest counts while its RAM is written, revert brings back RAM and disks of the pause, the pause is kept,
 * a paused VM stays paused, a refusal changes nothing and --live-fallback saves anyway; --live --precopy is live
 * where background-snapshot is refused (integration). */
#include "qsnap_test.h"

#include "qs_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MiB (1024u * 1024u)
#define OFF_A (2u * MiB)
#define OFF_B (3u * MiB)

/*
 * Whether the guest ran while its RAM was written, from QEMU's own events on the harness's monitor (broadcast
 * to every monitor; MIGRATION ones while qsnap has the "events" capability on): RAN - the guest's RESUME came
 * between its STOP and the migration's "completed"; else (a stop-and-save) the RESUME came after "completed".
 * An order, not a duration: no load on the machine changes it. Clear the monitor's events before the create.
 */
static void assert_ran_while_written(struct qt_fixture *f, bool ran)
{
    struct qmp_client *c = qh_vm_qmp(f->vm);
    struct qs_error *err = NULL;
    struct qmp_event *done = NULL, *e;
    int64_t stop = 0, resume = 0, end;

    /* qsnap waited for it: it is on the socket or in the queue already */
    OK(qmp_client_event_wait(c, "MIGRATION", "status", "completed", 60000, &done, &err));
    end = qmp_event_timestamp_us(done);
    OK(qmp_client_poll(c, &err)); /* a RESUME qsnap asked for after it */
    while ((e = qmp_client_event_pop(c))) {
        if (qs_str_equal(qmp_event_name(e), "STOP") && !stop)
            stop = qmp_event_timestamp_us(e);
        if (qs_str_equal(qmp_event_name(e), "RESUME") && !resume)
            resume = qmp_event_timestamp_us(e);
        qmp_event_free(e);
    }
    qmp_event_free(done);
    print_message("QEMU's stamps: STOP, RESUME %+lld us, migration completed %+lld us\n", (long long)(resume - stop),
                  (long long)(end - stop));
    assert_true(stop > 0 && resume > stop); /* paused once, for the switch, and resumed */
    if (ran)
        assert_true(resume < end); /* before the RAM was all written */
    else
        assert_true(resume > end);
}

/*
 * A pre-copy (--live --precopy), from QEMU's events in the same way: the migration was active while the guest
 * ran (its "active" before the guest's STOP), the guest was stopped once, and resumed only after the RAM was
 * all written ("completed" before RESUME) - the pause is QEMU's last pass and the disk switch.
 */
static void assert_precopy_order(struct qt_fixture *f)
{
    struct qmp_client *c = qh_vm_qmp(f->vm);
    struct qs_error *err = NULL;
    struct qmp_event *done = NULL, *e;
    int64_t active = 0, stop = 0, resume = 0, end;
    int stops = 0;

    OK(qmp_client_event_wait(c, "MIGRATION", "status", "completed", 60000, &done, &err));
    end = qmp_event_timestamp_us(done);
    qmp_event_free(done);
    OK(qmp_client_poll(c, &err));
    /* the events before "completed" were kept in the queue by the wait; RESUME came after it */
    while ((e = qmp_client_event_pop(c))) {
        const char *st = qmp_value_get_string(qmp_event_data(e), "status");
        if (qs_str_equal(qmp_event_name(e), "MIGRATION") && qs_str_equal(st, "active") && !active)
            active = qmp_event_timestamp_us(e);
        if (qs_str_equal(qmp_event_name(e), "STOP")) {
            stops++;
            if (!stop)
                stop = qmp_event_timestamp_us(e);
        }
        if (qs_str_equal(qmp_event_name(e), "RESUME") && !resume)
            resume = qmp_event_timestamp_us(e);
        qmp_event_free(e);
    }
    print_message("QEMU's stamps: migration active, STOP %+lld us, completed %+lld us, RESUME %+lld us\n",
                  (long long)(stop - active), (long long)(end - active), (long long)(resume - active));
    assert_int_equal(stops, 1);
    assert_true(active > 0 && stop > active); /* the RAM was being written while the guest ran */
    assert_true(end > stop && resume > end);  /* and the guest ran again only after all of it */
}

/* The background-snapshot capability's state and the bandwidth cap on the harness's monitor. */
static bool background_cap_on(struct qt_fixture *f)
{
    struct qmp_reply *r = NULL;
    struct qs_error *err = NULL;
    const struct qmp_value *v;
    bool on = false, seen = false;

    OK(qmp_client_execute(qh_vm_qmp(f->vm), "query-migrate-capabilities", NULL, &r, &err));
    v = qmp_reply_value(r);
    for (size_t i = 0; i < qmp_value_array_len(v); i++) {
        const struct qmp_value *cap = qmp_value_array_at(v, i);
        if (qs_str_equal(qmp_value_get_string(cap, "capability"), "background-snapshot")) {
            assert_true(qmp_value_bool(qmp_value_get(cap, "state"), &on));
            seen = true;
        }
    }
    qmp_reply_free(r);
    assert_true(seen);
    return on;
}

static int64_t max_bandwidth(struct qt_fixture *f)
{
    struct qmp_reply *r = NULL;
    struct qs_error *err = NULL;
    int64_t bw = -1;

    OK(qmp_client_execute(qh_vm_qmp(f->vm), "query-migrate-parameters", NULL, &r, &err));
    assert_true(qmp_value_int(qmp_value_get(qmp_reply_value(r), "max-bandwidth"), &bw));
    qmp_reply_free(r);
    return bw;
}

/* The "Guest pause:" value of snapshot-info in ms, or -1 when the line is absent. */
static double info_pause_ms(struct qt_fixture *f, const char *name)
{
    char *out = QSNAP_OK(f, "snapshot-info", "vm", name), *p = strstr(out, "\nGuest pause:    ");
    double ms = -1;

    qt_assert_contains(out, "Metadata:       yes\n");
    if (p) {
        char unit[8] = "";
        assert_int_equal(sscanf(p + strlen("\nGuest pause:    "), "%lf %7s", &ms, unit), 2);
        assert_string_equal(unit, "ms");
        /* the last line, after virsh's lines */
        assert_string_equal(strchr(p + 1, '\n'), "\n\n");
    }
    free(out);
    return ms;
}

/* Running VM: the guest keeps counting while its RAM is written; the snapshot holds RAM and disks of the one
 * pause, which is recorded; a revert brings both back. */
static void test_live_running_revert(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    struct qs_error *err = NULL;
    char *vdb = qt_path_in(f, "vdb.qcow2"), *ova = qt_path_in(f, "vda.l1"), *ovb = qt_path_in(f, "vdb.l1");
    char *mem = qt_path_in(f, "vda.l1.mem"), *out, *x, *s, *want, *file;
    uint64_t before, after, got;
    int64_t bw0 = max_bandwidth(f);
    struct qmp_client *c;
    struct stat st;
    double ms;

    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    qt_attach(f);
    qt_disk_write(f, "vdb", 0xaa, OFF_A);
    assert_false(background_cap_on(f));

    OK(qh_vm_read_counter(f->vm, &before, &err));
    OK(qmp_client_poll(qh_vm_qmp(f->vm), &err));
    qmp_client_event_clear(qh_vm_qmp(f->vm));
    out = QSNAP_OK(f, "snapshot-create-as", "vm", "l1", "--live");
    OK(qh_vm_read_counter(f->vm, &after, &err));
    assert_string_equal(out, "Domain snapshot l1 created\n");
    free(out);
    /* a stop-and-save leaves the guest paused for as long as the migration runs */
    assert_ran_while_written(f, true);

    s = qt_status_of(qh_vm_qmp(f->vm));
    assert_string_equal(s, "running");
    free(s);
    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    assert_false(background_cap_on(f));
    assert_int_equal(max_bandwidth(f), bw0);

    /* the default memory file beside the first disk's image, 0600; the disks on their overlays */
    assert_int_equal(stat(mem, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_true(st.st_size > 4096);
    file = qt_live_file(qh_vm_qmp(f->vm), "vdb");
    assert_string_equal(file, ovb);
    free(file);
    assert_true(qt_exists(ova));

    x = qt_snapshot_xml(f, "l1");
    qt_assert_contains(x, "<state>running</state>");
    want = qs_asprintf("<memory snapshot='external' file='%s'/>", mem);
    qt_assert_contains(x, want);
    free(want);
    qt_assert_contains(x, "<qsnap:pause-us xmlns:qsnap='https://qsnap.dev/xmlns/snapshot/1'>");
    free(x);
    qt_validate_all(f, 1);
    ms = info_pause_ms(f, "l1");
    print_message("guest pause of the live snapshot (128 MiB guest): %.1f ms\n", ms);
    assert_true(ms >= 0);
    out = QSNAP_OK(f, "snapshot-info", "vm", "l1", "--json");
    qt_assert_contains(out, "\"guest_pause_us\": ");
    free(out);

    /* the guest moves on */
    qt_disk_write(f, "vdb", 0xbb, OFF_A);
    assert_int_equal(qt_guest_reads(f, "vdb", 0xbb, OFF_A), 1);

    free(QSNAP_OK(f, "snapshot-revert", "vm", "l1"));
    OK(qh_vm_wait_exit(f->vm, 10000, NULL, &err));
    c = qt_daemon_client(f);
    got = qt_client_counter(c, false);
    print_message("counter: %llu before create, %llu after, %llu after revert\n", (unsigned long long)before,
                  (unsigned long long)after, (unsigned long long)got);
    /* the RAM of the pause: after "before", and well before "after" (the guest counted on after the pause) */
    assert_true(got >= before && got < after);
    s = qt_status_of(c);
    assert_string_equal(s, "running");
    free(s);
    qt_client_counter_advances(c);
    file = qt_live_file(c, "vdb");
    want = qt_path_in(f, "vdb.l1-1");
    assert_string_equal(file, want);
    assert_int_equal(qt_image_is(want, "qcow2", 0xaa, OFF_A), 1);
    assert_int_equal(qt_image_is(vdb, "qcow2", 0xaa, OFF_A), 1);
    free(want);
    free(file);
    qmp_client_free(c);
    qt_validate_all(f, 1);
    free(vdb), free(ova), free(ovb), free(mem);
}

/* Paused VM: an ordinary save (background-snapshot would resume it); it stays paused, no pause recorded, and
 * its images work once it runs again. */
static void test_live_paused_stays_paused(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    struct qs_error *err = NULL;
    char *mem = qt_path_in(f, "p1.mem"), *spec = qs_asprintf("file=%s", mem), *s, *x;
    uint64_t c0, c1;

    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    qt_attach(f);
    qt_disk_write(f, "vdb", 0xc1, OFF_B);
    OK(qmp_client_execute(qh_vm_qmp(f->vm), "stop", NULL, NULL, &err));
    OK(qh_vm_read_counter(f->vm, &c0, &err));
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "p1", "--live", "--memspec", spec));
    s = QSNAP_OK(f, "domstate", "vm");
    assert_string_equal(s, "paused\n\n");
    free(s);
    usleep(200 * 1000);
    OK(qh_vm_read_counter(f->vm, &c1, &err));
    assert_int_equal(c1, c0);
    assert_false(background_cap_on(f));
    assert_true(qt_exists(mem));
    x = qt_snapshot_xml(f, "p1");
    qt_assert_contains(x, "<state>paused</state>");
    assert_null(strstr(x, "pause-us"));
    free(x);
    assert_true(info_pause_ms(f, "p1") < 0);
    qt_validate_all(f, 1);

    /* resumed, the guest runs on its overlays */
    OK(qmp_client_execute(qh_vm_qmp(f->vm), "cont", NULL, NULL, &err));
    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    qt_disk_write(f, "vdb", 0xc2, OFF_B);
    assert_int_equal(qt_guest_reads(f, "vdb", 0xc2, OFF_B), 1);
    s = qt_path_in(f, "vdb.qcow2");
    assert_int_equal(qt_image_is(s, "qcow2", 0xc1, OFF_B), 1);
    free(s);
    free(mem), free(spec);
}

/* Shared file-backed guest RAM: background-snapshot is impossible. --live fails with QEMU's reason and changes
 * nothing; --live-fallback saves with the guest paused, and records that pause. */
static void test_live_refused_and_fallback(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    struct qs_error *err = NULL;
    char *ova = qt_path_in(f, "vda.r1"), *ovb = qt_path_in(f, "vdb.r1"), *mem = qt_path_in(f, "vda.r1.mem");
    char *s, *blk0, *blk1, *x;
    const char *back = "r2"; /* the snapshot the revert at the end goes to */
    uint64_t before, after;
    double ms;

    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    qt_attach(f);
    blk0 = qt_query_block(qh_vm_qmp(f->vm));
    qt_qsnap_fail(f, "not compatible with guest memory configuration", "snapshot-create-as", "vm", "r1", "--live",
                  (char *)NULL);
    qt_qsnap_fail(f, "--live-fallback", "snapshot-create-as", "vm", "r1", "--live", (char *)NULL);
    qt_qsnap_fail(f, "needs --live", "snapshot-create-as", "vm", "r1", "--live-fallback", (char *)NULL);
    qt_qsnap_fail(f, "--disk-only", "snapshot-create-as", "vm", "r1", "--live", "--disk-only", (char *)NULL);
    assert_false(qt_exists(ova));
    assert_false(qt_exists(ovb));
    assert_false(qt_exists(mem));
    blk1 = qt_query_block(qh_vm_qmp(f->vm));
    assert_string_equal(blk0, blk1);
    s = qt_status_of(qh_vm_qmp(f->vm));
    assert_string_equal(s, "running");
    free(s);
    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    assert_false(background_cap_on(f));
    s = QSNAP_OK(f, "snapshot-list", "vm", "--name");
    assert_string_equal(s, "\n");
    free(s);
    s = qs_asprintf("%s/snapshot/vm/r1.xml", f->root);
    assert_false(qt_exists(s));
    free(s);

    OK(qh_vm_read_counter(f->vm, &before, &err));
    OK(qmp_client_poll(qh_vm_qmp(f->vm), &err));
    qmp_client_event_clear(qh_vm_qmp(f->vm));
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "r1", "--live", "--live-fallback"));
    OK(qh_vm_read_counter(f->vm, &after, &err));
    assert_ran_while_written(f, false); /* the fallback pauses for the whole save: the check tells them apart */
    assert_true(qt_exists(mem) && qt_exists(ova) && qt_exists(ovb));
    s = qt_status_of(qh_vm_qmp(f->vm));
    assert_string_equal(s, "running");
    free(s);
    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    x = qt_snapshot_xml(f, "r1");
    qt_assert_contains(x, "<state>running</state>");
    free(x);
    ms = info_pause_ms(f, "r1");
    print_message("guest pause of the fallback (stop, save, cont): %.1f ms\n", ms);
    assert_true(ms >= 0);
    qt_validate_all(f, 1);

    /* --precopy needs no userfaultfd: live on this VM too - where QEMU's pre-copy sees every guest write */
    qt_qsnap_fail(f, "--precopy needs --live", "snapshot-create-as", "vm", "r2", "--precopy", (char *)NULL);
    if (!qt_precopy_coherent(qh_vm_qmp(f->vm))) {
        /* TCG before QEMU 9.0: refused with the reason, nothing made; the revert below goes to r1 */
        qt_qsnap_fail(f, "loses guest writes from a pre-copy", "snapshot-create-as", "vm", "r2", "--live",
                      "--precopy", (char *)NULL);
        s = qs_asprintf("%s/snapshot/vm/r2.xml", f->root);
        assert_false(qt_exists(s));
        free(s);
        qt_validate_all(f, 1);
        s = qt_status_of(qh_vm_qmp(f->vm));
        assert_string_equal(s, "running");
        free(s);
        back = "r1";
        goto revert;
    }
    OK(qmp_client_poll(qh_vm_qmp(f->vm), &err));
    qmp_client_event_clear(qh_vm_qmp(f->vm));
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "r2", "--live", "--precopy"));
    assert_precopy_order(f);
    s = qt_status_of(qh_vm_qmp(f->vm));
    assert_string_equal(s, "running");
    free(s);
    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    x = qt_snapshot_xml(f, "r2");
    qt_assert_contains(x, "<state>running</state>");
    free(x);
    ms = info_pause_ms(f, "r2");
    print_message("guest pause of --precopy: %.1f ms\n", ms);
    assert_true(ms >= 0);
    assert_false(background_cap_on(f));
    qt_validate_all(f, 2);
revert:
    /* its RAM and disks come back: the counter runs on from the snapshot's */
    OK(qh_vm_read_counter(f->vm, &before, &err));
    free(QSNAP_OK(f, "snapshot-revert", "vm", back));
    qt_follow(f);
    OK(qh_vm_read_counter(f->vm, &after, &err));
    print_message("counter %llu before the revert, %llu after it\n", (unsigned long long)before,
                  (unsigned long long)after);
    assert_true(after < before);
    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    free(ova), free(ovb), free(mem), free(blk0), free(blk1);
}

/* Guest RAM in a shared file on a disk file system (QEMU creates and unlinks its file in the directory):
 * userfaultfd cannot write-protect such a mapping (memfd or tmpfs RAM it can, on recent kernels). */
static char ram_dir[] = "/var/tmp/qsnap-ram-XXXXXX";
static char ram_object[128];
static const char *shared_ram_args[] = {"-object", ram_object, "-machine", "memory-backend=qsnap-ram", NULL};
static struct qh_vm_config cfg_shared;
static struct qt_fixture f1 = {.cfg = &qt_cfg_two_disks};
static struct qt_fixture f2 = {.cfg = &qt_cfg_two_disks};
static struct qt_fixture f3 = {.cfg = &cfg_shared};

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_prestate_setup_teardown(test_live_running_revert, qt_setup, qt_teardown, &f1),
        cmocka_unit_test_prestate_setup_teardown(test_live_paused_stays_paused, qt_setup, qt_teardown, &f2),
        cmocka_unit_test_prestate_setup_teardown(test_live_refused_and_fallback, qt_setup, qt_teardown, &f3),
    };
    int r;

    if (!mkdtemp(ram_dir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(ram_object, sizeof(ram_object), "memory-backend-file,id=qsnap-ram,size=128M,mem-path=%s,share=on",
             ram_dir);
    cfg_shared = qt_cfg_two_disks;
    cfg_shared.mem_mb = 128;
    cfg_shared.extra_args = shared_ram_args;
    r = cmocka_run_group_tests(tests, NULL, NULL);
    rmdir(ram_dir);
    return r;
}
