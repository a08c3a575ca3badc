/* test_memspec_live.c: external snapshots with memory (--memspec) and --quiesce through the qsnap command on
 * real QEMU - create, revert (RAM counter and disk bytes), delete, failures (integration). */
#include "qsnap_test.h"

#include "qs_file.h"
#include "qs_util.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MiB (1024u * 1024u)
#define OFF_A (2u * MiB)
#define OFF_B (3u * MiB)

/* Running VM: one pause saves RAM and switches both disks; the guest runs on; metadata as libvirt's. A revert
 * brings back the RAM (counter between the values read around the create) and the disks' bytes of that
 * instant, running as recorded; a revert --paused stays paused with the same counter. */
static void test_memspec_running_revert(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    struct qs_error *err = NULL;
    char *vdb = qt_path_in(f, "vdb.qcow2"), *ova = qt_path_in(f, "vda.m1"), *ovb = qt_path_in(f, "vdb.m1");
    char *mem = qt_path_in(f, "m1.mem"), *spec = qs_asprintf("file=%s,snapshot=external", mem);
    char *out, *x, *s, *want, *file;
    uint64_t before, after, got, again;
    struct qmp_client *c;
    struct stat st;

    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    qt_attach(f);
    qt_disk_write(f, "vdb", 0xaa, OFF_A);
    OK(qh_vm_read_counter(f->vm, &before, &err));
    out = QSNAP_OK(f, "snapshot-create-as", "vm", "m1", "--memspec", spec);
    assert_string_equal(out, "Domain snapshot m1 created\n");
    free(out);
    OK(qh_vm_read_counter(f->vm, &after, &err));
    s = qt_status_of(qh_vm_qmp(f->vm));
    assert_string_equal(s, "running");
    free(s);
    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    assert_int_equal(stat(mem, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_true(st.st_size > 4096);
    file = qt_live_file(qh_vm_qmp(f->vm), "vdb");
    assert_string_equal(file, ovb);
    free(file);
    assert_true(qt_exists(ova));

    x = qt_snapshot_xml(f, "m1");
    qt_assert_contains(x, "<state>running</state>");
    want = qs_asprintf("<memory snapshot='external' file='%s'/>", mem);
    qt_assert_contains(x, want);
    free(want);
    qt_assert_contains(x, "<disk name='vda' snapshot='external' type='file'>");
    qt_assert_contains(x, "<disk name='vdb' snapshot='external' type='file'>");
    free(x);
    out = QSNAP_OK(f, "snapshot-info", "vm", "m1");
    qt_assert_contains(out, "State:          running\n");
    qt_assert_contains(out, "Location:       external\n");
    free(out);
    qt_validate_all(f, 1);

    /* the guest moves on: new bytes, more counting */
    qt_disk_write(f, "vdb", 0xbb, OFF_A);
    assert_int_equal(qt_guest_reads(f, "vdb", 0xbb, OFF_A), 1);

    free(QSNAP_OK(f, "snapshot-revert", "vm", "m1", "--paused"));
    OK(qh_vm_wait_exit(f->vm, 10000, NULL, &err));
    c = qt_daemon_client(f);
    s = qt_status_of(c);
    assert_string_equal(s, "paused");
    free(s);
    got = qt_client_counter(c, false);
    print_message("counter: %llu before create, %llu after, %llu after revert\n", (unsigned long long)before,
                  (unsigned long long)after, (unsigned long long)got);
    assert_true(got >= before && got <= after);
    usleep(200 * 1000);
    assert_int_equal(qt_client_counter(c, false), got);
    file = qt_live_file(c, "vdb");
    want = qt_path_in(f, "vdb.m1-1");
    assert_string_equal(file, want);
    assert_int_equal(qt_image_is(want, "qcow2", 0xaa, OFF_A), 1);
    assert_int_equal(qt_image_is(vdb, "qcow2", 0xaa, OFF_A), 1);
    free(want);
    free(file);
    qmp_client_free(c);
    out = QSNAP_OK(f, "domstate", "vm");
    assert_string_equal(out, "paused\n\n");
    free(out);

    /* the same snapshot again, with its recorded state: running; the counter starts from the same value */
    free(QSNAP_OK(f, "snapshot-revert", "vm", "m1"));
    c = qt_daemon_client(f);
    again = qt_client_counter(c, false);
    assert_true(again >= got);
    s = qt_status_of(c);
    assert_string_equal(s, "running");
    free(s);
    qt_client_counter_advances(c);
    want = qt_path_in(f, "vdb.m1-2");
    assert_int_equal(qt_image_is(want, "qcow2", 0xaa, OFF_A), 1);
    free(want);
    qmp_client_free(c);
    qt_validate_all(f, 1);
    free(vdb), free(ova), free(ovb), free(mem), free(spec);
}

/* Paused VM: the snapshot keeps it paused and the counter still; a revert gives back exactly that counter. */
static void test_memspec_paused_exact(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    struct qs_error *err = NULL;
    char *mem = qt_path_in(f, "p1.mem"), *spec = qs_asprintf("file=%s", mem), *s, *x;
    uint64_t c0, c1;
    struct qmp_client *c;

    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    qt_attach(f);
    qt_disk_write(f, "vdb", 0xc1, OFF_B);
    OK(qmp_client_execute(qh_vm_qmp(f->vm), "stop", NULL, NULL, &err));
    OK(qh_vm_read_counter(f->vm, &c0, &err));
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "p1", "--memspec", spec));
    s = QSNAP_OK(f, "domstate", "vm");
    assert_string_equal(s, "paused\n\n");
    free(s);
    usleep(200 * 1000);
    OK(qh_vm_read_counter(f->vm, &c1, &err));
    assert_int_equal(c1, c0);
    x = qt_snapshot_xml(f, "p1");
    qt_assert_contains(x, "<state>paused</state>");
    free(x);
    qt_validate_all(f, 1);

    /* resume (the images come back active), change things, go back */
    OK(qmp_client_execute(qh_vm_qmp(f->vm), "cont", NULL, NULL, &err));
    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    qt_disk_write(f, "vdb", 0xc2, OFF_B);
    free(QSNAP_OK(f, "snapshot-revert", "vm", "p1"));
    OK(qh_vm_wait_exit(f->vm, 10000, NULL, &err));
    c = qt_daemon_client(f);
    s = qt_status_of(c);
    assert_string_equal(s, "paused");
    free(s);
    assert_int_equal(qt_client_counter(c, false), c0);
    s = qt_live_file(c, "vdb");
    assert_int_equal(qt_image_is(s, "qcow2", 0xc1, OFF_B), 1);
    free(s);
    OK(qmp_client_execute(c, "cont", NULL, NULL, &err));
    qt_client_counter_advances(c);
    qmp_client_free(c);
    free(mem), free(spec);
}

/* A failing memspec create leaves nothing: no memory file, no overlay, no metadata, the VM running. */
static void test_memspec_failures(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    struct qs_error *err = NULL;
    char *ova = qt_path_in(f, "vda.bad"), *ovb = qt_path_in(f, "vdb.bad");
    char *missing = qt_path_in(f, "no-such-dir/m.mem"), *there = qt_path_in(f, "there.mem");
    char *spec1 = qs_asprintf("file=%s", missing), *spec2 = qs_asprintf("file=%s", there), *s, *dir, *blk0, *blk1;
    int fd;

    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    qt_attach(f);
    blk0 = qt_query_block(qh_vm_qmp(f->vm));
    qt_qsnap_fail(f, "does not exist", "snapshot-create-as", "vm", "bad", "--memspec", spec1, (char *)NULL);
    fd = open(there, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(qs_write_all(fd, "keep", 4), 0);
    close(fd);
    qt_qsnap_fail(f, "already exists", "snapshot-create-as", "vm", "bad", "--memspec", spec2, (char *)NULL);
    qt_qsnap_fail(f, "does not exist", "snapshot-create-as", "vm", "bad", "--memspec", spec1, "--live", (char *)NULL);
    qt_qsnap_fail(f, "disk-only", "snapshot-create-as", "vm", "bad", "--memspec", spec1, "--disk-only",
                (char *)NULL);
    qt_qsnap_fail(f, "guest agent channel", "snapshot-create-as", "vm", "bad", "--disk-only", "--quiesce",
                (char *)NULL);
    s = qt_slurp(there);
    assert_string_equal(s, "keep");
    free(s);
    assert_false(qt_exists(ova));
    assert_false(qt_exists(ovb));
    assert_false(qt_exists(missing));
    blk1 = qt_query_block(qh_vm_qmp(f->vm));
    assert_string_equal(blk0, blk1);
    s = qt_status_of(qh_vm_qmp(f->vm));
    assert_string_equal(s, "running");
    free(s);
    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    dir = qs_asprintf("%s/snapshot/vm/bad.xml", f->root);
    assert_false(qt_exists(dir));
    free(dir);
    s = QSNAP_OK(f, "snapshot-list", "vm", "--name");
    assert_string_equal(s, "\n");
    free(s);
    free(blk0), free(blk1), free(ova), free(ovb), free(missing), free(there), free(spec1), free(spec2);
}

/* Delete of a memspec snapshot: the overlays merge back (the guest keeps every byte), the memory file goes;
 * --metadata leaves the files. */
static void test_memspec_delete(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    struct qs_error *err = NULL;
    char *vdb = qt_path_in(f, "vdb.qcow2"), *ovb = qt_path_in(f, "vdb.d1"), *ova = qt_path_in(f, "vda.d1");
    char *mem = qt_path_in(f, "d1.mem"), *spec = qs_asprintf("file=%s", mem);
    char *mem2 = qt_path_in(f, "d2.mem"), *spec2 = qs_asprintf("file=%s", mem2), *file;

    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    qt_attach(f);
    qt_disk_write(f, "vdb", 0xd1, OFF_A);
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "d1", "--memspec", spec));
    qt_disk_write(f, "vdb", 0xd2, OFF_B);
    assert_true(qt_exists(mem) && qt_exists(ovb) && qt_exists(ova));
    free(QSNAP_OK(f, "snapshot-delete", "vm", "d1"));
    assert_false(qt_exists(mem));
    assert_false(qt_exists(ovb));
    assert_false(qt_exists(ova));
    file = qt_live_file(qh_vm_qmp(f->vm), "vdb");
    assert_string_equal(file, vdb);
    free(file);
    assert_int_equal(qt_guest_reads(f, "vdb", 0xd1, OFF_A), 1);
    assert_int_equal(qt_guest_reads(f, "vdb", 0xd2, OFF_B), 1);
    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    qt_validate_all(f, 0);

    free(QSNAP_OK(f, "snapshot-create-as", "vm", "d2", "--memspec", spec2));
    qt_validate_all(f, 1);
    free(QSNAP_OK(f, "snapshot-delete", "vm", "d2", "--metadata"));
    assert_true(qt_exists(mem2));
    qt_validate_all(f, 0);
    free(vdb), free(ovb), free(ova), free(mem), free(spec), free(mem2), free(spec2);
}

/* --quiesce with a channel but no agent in the guest: a timeout, nothing created, the VM running on. */
static void test_quiesce_no_agent(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    struct qs_error *err = NULL;
    char *ova = qt_path_in(f, "vda.q1"), *ovb = qt_path_in(f, "vdb.q1"), *mem = qt_path_in(f, "q2.mem");
    char *spec = qs_asprintf("file=%s", mem), *s, *blk0, *blk1;
    int64_t t0, took;

    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    qt_attach(f);
    blk0 = qt_query_block(qh_vm_qmp(f->vm));
    t0 = qs_now_ms();
    /* found out by the 3 s sync (QUIESCE_SYNC_TIMEOUT_MS), before any freeze - not by the 10 s freeze
     * timeout: the message names the wait, and the lower bound proves it was waited */
    qt_qsnap_fail(f, "did not answer within 3000 ms", "snapshot-create-as", "vm", "q1", "--disk-only", "--quiesce",
                  (char *)NULL);
    took = qs_now_ms() - t0;
    print_message("--quiesce without an agent failed after %lld ms\n", (long long)took);
    assert_true(took >= 3000 && took < 60000);
    qt_qsnap_fail(f, "did not answer", "snapshot-create-as", "vm", "q2", "--memspec", spec, "--quiesce",
                (char *)NULL);
    assert_false(qt_exists(ova));
    assert_false(qt_exists(ovb));
    assert_false(qt_exists(mem));
    blk1 = qt_query_block(qh_vm_qmp(f->vm));
    assert_string_equal(blk0, blk1);
    s = qt_status_of(qh_vm_qmp(f->vm));
    assert_string_equal(s, "running");
    free(s);
    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    s = QSNAP_OK(f, "snapshot-list", "vm", "--name");
    assert_string_equal(s, "\n");
    free(s);
    free(ova), free(ovb), free(mem), free(spec), free(blk0), free(blk1);
}

static struct qt_fixture f1 = {.cfg = &qt_cfg_two_disks};
static struct qt_fixture f2 = {.cfg = &qt_cfg_two_disks};
static struct qt_fixture f3 = {.cfg = &qt_cfg_two_disks};
static struct qt_fixture f4 = {.cfg = &qt_cfg_two_disks};
static struct qt_fixture f5 = {.cfg = &qt_cfg_two_disks, .agent = true};

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_prestate_setup_teardown(test_memspec_running_revert, qt_setup, qt_teardown, &f1),
        cmocka_unit_test_prestate_setup_teardown(test_memspec_paused_exact, qt_setup, qt_teardown, &f2),
        cmocka_unit_test_prestate_setup_teardown(test_memspec_failures, qt_setup, qt_teardown, &f3),
        cmocka_unit_test_prestate_setup_teardown(test_memspec_delete, qt_setup, qt_teardown, &f4),
        cmocka_unit_test_prestate_setup_teardown(test_quiesce_no_agent, qt_setup, qt_teardown, &f5),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
