/* test_external_live.c: external disk-only snapshots through the qsnap command on real QEMU - create, revert,
 * delete by merging, live and offline - checked from the guest's side and on the image files (integration). */
#include "qsnap_test.h"

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

/* ------------------------------------------------------------------------------------------------ */

/* Two disks switch to overlays in one transaction; new writes land there, the frozen images keep the
 * old bytes; deleting the snapshot commits the active layer back and the guest sees no difference. */
static void test_create_atomic_then_commit_active(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    struct qs_error *err = NULL;
    char *vda = qt_path_in(f, "vda.qcow2"), *vdb = qt_path_in(f, "vdb.qcow2");
    char *ova = qt_path_in(f, "vda.s1"), *ovb = qt_path_in(f, "vdb.s1");
    char *out, *x, *file;
    struct stat st;

    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    qt_attach(f);
    qt_disk_write(f, "vdb", 0xaa, OFF_A);
    qt_disk_write(f, "vda", 0xa1, OFF_A);

    out = QSNAP_OK(f, "snapshot-create-as", "vm", "s1", "--disk-only", "--atomic");
    assert_string_equal(out, "Domain snapshot s1 created\n");
    free(out);
    /* libvirt's names, 0600, QEMU on the overlays, guest still running */
    assert_int_equal(stat(ova, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(stat(ovb, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    file = qt_live_file(qh_vm_qmp(f->vm), "vda");
    assert_string_equal(file, ova);
    free(file);
    file = qt_live_file(qh_vm_qmp(f->vm), "vdb");
    assert_string_equal(file, ovb);
    free(file);
    /* what `qemu-img create -f qcow2 -b BASE -F FMT` makes (QEMU wrote it, in a blockdev-create job) */
    {
        static const char *const keys[] = {"format", "backing-filename", "backing-filename-format", "virtual-size",
                                           "cluster-size"};
        for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
            char *want = qt_image_field(vdb, keys[k]), *got = qt_image_field(ovb, keys[k]);
            if (k == 1) {
                free(want);
                want = qs_xstrdup(vdb);
            } else if (k == 2) {
                free(want);
                want = qs_xstrdup("qcow2");
            }
            assert_non_null(got);
            assert_string_equal(got, want);
            free(want);
            free(got);
        }
    }
    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));

    qt_disk_write(f, "vdb", 0xbb, OFF_A);
    qt_disk_write(f, "vda", 0xb1, OFF_A);
    assert_int_equal(qt_guest_reads(f, "vdb", 0xbb, OFF_A), 1);
    assert_int_equal(qt_image_is(vdb, "qcow2", 0xaa, OFF_A), 1); /* frozen */
    assert_int_equal(qt_image_is(vda, "qcow2", 0xa1, OFF_A), 1);
    assert_int_equal(qt_image_is(ovb, "qcow2", 0xbb, OFF_A), 1);

    /* metadata as libvirt writes it; the domain now points at the overlays */
    x = qt_snapshot_xml(f, "s1");
    assert_non_null(strstr(x, "<state>disk-snapshot</state>"));
    assert_non_null(strstr(x, "<memory snapshot='no'/>"));
    assert_non_null(strstr(x, "<disk name='vdb' snapshot='external' type='file'>"));
    out = qs_asprintf("<source file='%s'/>", ovb);
    assert_non_null(strstr(x, out));
    free(out);
    out = qs_asprintf("file='%s'", vdb); /* <domain> is the definition before the switch */
    assert_non_null(strstr(x, out));
    free(out);
    free(x);
    x = qt_domain_xml(f);
    out = qs_asprintf("<source file='%s'/>", ovb);
    assert_non_null(strstr(x, out));
    free(out);
    free(x);
    out = QSNAP_OK(f, "snapshot-info", "vm", "s1");
    assert_non_null(strstr(out, "State:          disk-snapshot\n"));
    assert_non_null(strstr(out, "Location:       external\n"));
    free(out);
    out = QSNAP_OK(f, "snapshot-list", "vm", "--external", "--name");
    assert_string_equal(out, "s1\n\n");
    free(out);
    out = QSNAP_OK(f, "snapshot-list", "vm", "--disk-only", "--name");
    assert_string_equal(out, "s1\n\n");
    free(out);
    out = QSNAP_OK(f, "snapshot-list", "vm", "--internal", "--name");
    assert_string_equal(out, "\n");
    free(out);
    qt_validate_all(f, 1);

    /* delete = active commit: the guest keeps its bytes, the bases get them, the overlays go */
    out = QSNAP_OK(f, "snapshot-delete", "vm", "s1");
    assert_string_equal(out, "Domain snapshot s1 deleted\n\n");
    free(out);
    assert_int_equal(qt_guest_reads(f, "vdb", 0xbb, OFF_A), 1);
    assert_int_equal(qt_guest_reads(f, "vda", 0xb1, OFF_A), 1);
    file = qt_live_file(qh_vm_qmp(f->vm), "vdb");
    assert_string_equal(file, vdb);
    free(file);
    assert_false(qt_exists(ova));
    assert_false(qt_exists(ovb));
    assert_int_equal(qt_image_is(vdb, "qcow2", 0xbb, OFF_A), 1);
    x = qt_domain_xml(f);
    out = qs_asprintf("<source file='%s'/>", vdb);
    assert_non_null(strstr(x, out));
    free(out);
    free(x);
    /* still writable after the commit (no stale node keeps the base busy) */
    qt_disk_write(f, "vdb", 0xcc, OFF_A);
    assert_int_equal(qt_guest_reads(f, "vdb", 0xcc, OFF_A), 1);
    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    free(vda), free(vdb), free(ova), free(ovb);
}

/* A create that fails on the second disk leaves no file and changes nothing: metadata, definition, QEMU. */
static void test_failed_create_changes_nothing(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    char *ova = qt_path_in(f, "vda.bad"), *ovb = qt_path_in(f, "vdb.bad");
    char *dom0, *dom1, *qb0, *qb1, *errout = NULL;
    int fd;

    qt_attach(f);
    dom0 = qt_domain_xml(f);
    qb0 = qt_query_block(qh_vm_qmp(f->vm));

    /* vdb's overlay cannot be created (procfs): vda's, already made, must go again */
    assert_int_equal(qt_qsnap_run(f, NULL, &errout, "snapshot-create-as", "vm", "bad", "--disk-only", "--diskspec",
                               "vdb,snapshot=external,file=/proc/qsnap-no-such-overlay", NULL),
                     1);
    assert_non_null(strstr(errout, "vdb"));
    free(errout);
    assert_false(qt_exists(ova));
    /* a directory that does not exist */
    assert_int_equal(qt_qsnap_run(f, NULL, &errout, "snapshot-create-as", "vm", "bad", "--disk-only", "--diskspec",
                               "vdb,file=/nonexistent-dir/x.qcow2", NULL),
                     1);
    assert_non_null(strstr(errout, "does not exist"));
    free(errout);
    /* an overlay file that already exists for disk 2 */
    fd = open(ovb, O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(qt_qsnap_run(f, NULL, &errout, "snapshot-create-as", "vm", "bad", "--disk-only", NULL), 1);
    assert_non_null(strstr(errout, "already exists"));
    free(errout);
    unlink(ovb);
    /* internal mixed with external */
    assert_int_equal(qt_qsnap_run(f, NULL, &errout, "snapshot-create-as", "vm", "bad", "--disk-only", "--diskspec",
                               "vda,snapshot=internal", NULL),
                     1);
    assert_non_null(strstr(errout, "mixing internal and external"));
    free(errout);
    /* a running VM without --disk-only would need an external memory state */
    assert_int_equal(qt_qsnap_run(f, NULL, &errout, "snapshot-create-as", "vm", "bad", "--diskspec",
                               "vda,snapshot=external", NULL),
                     1);
    assert_non_null(strstr(errout, "needs --disk-only"));
    free(errout);

    assert_false(qt_exists(ova));
    assert_false(qt_exists(ovb));
    dom1 = qt_domain_xml(f);
    assert_string_equal(dom0, dom1);
    qb1 = qt_query_block(qh_vm_qmp(f->vm));
    assert_string_equal(qb0, qb1);
    {
        char *out = QSNAP_OK(f, "snapshot-list", "vm", "--name");
        assert_string_equal(out, "\n");
        free(out);
    }
    free(dom0), free(dom1), free(qb0), free(qb1), free(ova), free(ovb);
}

/*
 * s1, s2 on one line; deleting s1 commits a middle layer (guest view unchanged, s2's metadata follows);
 * a revert to s2 starts a new branch and discards the state it left (no snapshot needs it), a snapshot on
 * it works, and deleting s2 then merges the new branch's first overlay into s2's image under the running
 * snapshot s3.
 */
static void test_middle_commit_revert_and_branch(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    struct qs_error *err = NULL;
    char *vdb = qt_path_in(f, "vdb.qcow2"), *s1 = qt_path_in(f, "vdb.s1"), *s2 = qt_path_in(f, "vdb.s2");
    char *r1 = qt_path_in(f, "vdb.s2-1"), *s3 = qt_path_in(f, "vdb.s3");
    char *out, *x, *b, *errout = NULL;
    struct qmp_client *c;

    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    qt_attach(f);
    qt_disk_write(f, "vdb", 0x11, OFF_A);
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "s1", "--disk-only", "--diskspec", "vda,snapshot=no"));
    qt_disk_write(f, "vdb", 0x22, OFF_B);
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "s2", "--disk-only", "--diskspec", "vda,snapshot=no"));
    qt_disk_write(f, "vdb", 0x33, OFF_A);
    out = QSNAP_OK(f, "snapshot-parent", "vm", "s2");
    assert_string_equal(out, "s1\n");
    free(out);

    /* s1: its overlay vdb.s1 (holding 0x22) goes into vdb.qcow2 under the active vdb.s2 */
    free(QSNAP_OK(f, "snapshot-delete", "vm", "s1"));
    assert_false(qt_exists(s1));
    assert_int_equal(qt_guest_reads(f, "vdb", 0x33, OFF_A), 1);
    assert_int_equal(qt_guest_reads(f, "vdb", 0x22, OFF_B), 1);
    assert_int_equal(qt_image_is(vdb, "qcow2", 0x11, OFF_A), 1);
    assert_int_equal(qt_image_is(vdb, "qcow2", 0x22, OFF_B), 1);
    b = qt_backing_of(s2);
    assert_string_equal(b, vdb);
    free(b);
    x = qt_snapshot_xml(f, "s2"); /* s2 froze vdb.s1, which is now part of vdb.qcow2 */
    out = qs_asprintf("<source file='%s'/>", vdb);
    assert_non_null(strstr(x, out));
    assert_null(strstr(x, "vdb.s1'"));
    free(out);
    free(x);
    out = QSNAP_OK(f, "snapshot-list", "vm", "--roots", "--name");
    assert_string_equal(out, "s2\n\n"); /* re-parented to s1's parent: none */
    free(out);
    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));

    /* revert to s2: QEMU quits, a new overlay on vdb.qcow2, the VM stays off (no memory state) */
    free(QSNAP_OK(f, "snapshot-revert", "vm", "s2"));
    OK(qh_vm_wait_exit(f->vm, 10000, NULL, &err));
    out = QSNAP_OK(f, "domstate", "vm");
    assert_string_equal(out, "shut off\n\n");
    free(out);
    assert_true(qt_exists(r1));
    assert_false(qt_exists(s2)); /* the state left behind: nothing needs it */
    assert_int_equal(qt_image_is(r1, "qcow2", 0x11, OFF_A), 1);
    assert_int_equal(qt_image_is(r1, "qcow2", 0x22, OFF_B), 1);
    out = QSNAP_OK(f, "snapshot-current", "vm", "--name");
    assert_string_equal(out, "s2\n");
    free(out);

    /* boot the new branch from the rewritten command line; write through the guest device */
    free(QSNAP_OK(f, "start", "vm"));
    c = qt_daemon_client(f);
    qt_client_counter_advances(c);
    {
        char *file = qt_live_file(c, "vdb");
        assert_string_equal(file, r1);
        free(file);
    }
    OK(qmp_client_hmp(c, "qemu-io -d vdb/virtio-backend \"write -P 0x44 3145728 65536\"", NULL, &err));
    qmp_client_free(c); /* QEMU serves one client per monitor: qsnap's turn */
    /* on from there: a snapshot on the new branch, live */
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "s3", "--disk-only", "--diskspec", "vda,snapshot=no"));
    c = qt_daemon_client(f);
    {
        char *file = qt_live_file(c, "vdb");
        assert_string_equal(file, s3);
        free(file);
    }
    out = QSNAP_OK(f, "snapshot-parent", "vm", "s3");
    assert_string_equal(out, "s2\n");
    free(out);
    qt_client_counter_advances(c);
    qmp_client_free(c);
    qt_validate_all(f, 2);

    /* s2 froze vdb.qcow2; only vdb.s2-1 (frozen by s3, under the running vdb.s3) is built on it: merged */
    free(QSNAP_OK(f, "snapshot-delete", "vm", "s2"));
    assert_false(qt_exists(r1));
    assert_true(qt_exists(s3));
    b = qt_backing_of(s3);
    assert_string_equal(b, vdb);
    free(b);
    x = qt_snapshot_xml(f, "s3"); /* s3 froze vdb.s2-1, which is now part of vdb.qcow2 */
    out = qs_asprintf("<source file='%s'/>", vdb);
    assert_non_null(strstr(x, out));
    free(out);
    free(x);
    c = qt_daemon_client(f);
    qt_client_counter_advances(c);
    qmp_client_free(c);
    qt_validate_all(f, 1);
    assert_int_equal(qt_qsnap_run(f, &out, &errout, "snapshot-check", "vm", NULL), 0);
    free(out);
    free(errout);

    free(QSNAP_OK(f, "destroy", "vm"));
    f->daemon = -1;
    assert_int_equal(qt_image_is(vdb, "qcow2", 0x44, OFF_B), 1);
    assert_int_equal(qt_image_is(s3, "qcow2", 0x44, OFF_B), 1);
    assert_int_equal(qt_image_is(vdb, "qcow2", 0x11, OFF_A), 1);
    free(vdb), free(s1), free(s2), free(r1), free(s3);
}

/* Shut off: create with qemu-img, start from the rewritten command line, delete the middle layer (qemu-img
 * commit/rebase), revert, delete the active layer (qemu-img commit), and boot again on the merged images: the
 * guest reads every byte that was merged. */
static void test_offline_cycle(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    struct qs_error *err = NULL;
    char *vda = qt_path_in(f, "vda.qcow2"), *vdb = qt_path_in(f, "vdb.qcow2");
    char *o1 = qt_path_in(f, "vdb.o1"), *o2 = qt_path_in(f, "vdb.o2");
    char *a1 = qt_path_in(f, "vda.o1"), *a2 = qt_path_in(f, "vda.o2");
    char *b, *x;
    struct qmp_client *c;
    struct stat st;

    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    qt_attach(f);
    free(QSNAP_OK(f, "destroy", "vm"));
    OK(qh_vm_wait_exit(f->vm, 10000, NULL, &err));

    qt_offline_write(vdb, 0x51, OFF_A);
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "o1", "--disk-only"));
    assert_int_equal(stat(o1, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_true(qt_exists(a1));
    b = qt_backing_of(o1);
    assert_string_equal(b, vdb);
    free(b);
    x = qt_snapshot_xml(f, "o1");
    assert_non_null(strstr(x, "<state>disk-snapshot</state>"));
    free(x);
    qt_offline_write(o1, 0x52, OFF_B);
    assert_int_equal(qt_image_is(vdb, "qcow2", 0x00, OFF_B), 1);

    /* boot from the rewritten command line: the guest's boot disk is now vda.o1 over vda.qcow2 */
    free(QSNAP_OK(f, "start", "vm"));
    c = qt_daemon_client(f);
    qt_client_counter_advances(c);
    {
        char *file = qt_live_file(c, "vda");
        assert_string_equal(file, a1);
        free(file);
        file = qt_live_file(c, "vdb");
        assert_string_equal(file, o1);
        free(file);
    }
    qmp_client_free(c);
    free(QSNAP_OK(f, "destroy", "vm"));
    f->daemon = -1;

    free(QSNAP_OK(f, "snapshot-create-as", "vm", "o2", "--disk-only"));
    qt_offline_write(o2, 0x53, OFF_A);
    qt_validate_all(f, 2);

    /* middle: o1's overlay (0x52 at B) into vdb.qcow2, vdb.o2 rebased onto it */
    free(QSNAP_OK(f, "snapshot-delete", "vm", "o1"));
    assert_false(qt_exists(o1));
    assert_false(qt_exists(a1));
    b = qt_backing_of(o2);
    assert_string_equal(b, vdb);
    free(b);
    assert_int_equal(qt_image_is(vdb, "qcow2", 0x52, OFF_B), 1);
    assert_int_equal(qt_image_is(vdb, "qcow2", 0x51, OFF_A), 1);
    assert_int_equal(qt_image_is(o2, "qcow2", 0x53, OFF_A), 1);
    assert_int_equal(qt_image_is(o2, "qcow2", 0x52, OFF_B), 1);

    /* revert offline to o2: a new overlay on its frozen images */
    free(QSNAP_OK(f, "snapshot-revert", "vm", "o2"));
    {
        char *r = qt_path_in(f, "vdb.o2-1");
        assert_true(qt_exists(r));
        assert_int_equal(qt_image_is(r, "qcow2", 0x51, OFF_A), 1);
        b = qt_backing_of(r);
        assert_string_equal(b, vdb);
        free(b);
        /* the active layer: what is written on top of o2 now, merged down by the delete of o2 */
        qt_offline_write(r, 0x54, OFF_A);
        free(QSNAP_OK(f, "snapshot-delete", "vm", "o2"));
        assert_false(qt_exists(r));
        free(r);
    }
    x = QSNAP_OK(f, "snapshot-list", "vm", "--name");
    assert_string_equal(x, "\n");
    free(x);
    x = qt_domain_xml(f);
    b = qs_asprintf("<source file='%s'/>", vdb);
    qt_assert_contains(x, b);
    free(b);
    free(x);
    assert_int_equal(qt_image_is(vdb, "qcow2", 0x54, OFF_A), 1);

    /* boot on the merged images: the guest runs, and its own disk device reads the merged bytes */
    free(QSNAP_OK(f, "start", "vm"));
    qt_adopt(f);
    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    {
        char *file = qt_live_file(qh_vm_qmp(f->vm), "vdb");
        assert_string_equal(file, vdb);
        free(file);
    }
    assert_int_equal(qt_guest_is(f, "vdb", 0x54, OFF_A), 1); /* the active layer's */
    assert_int_equal(qt_guest_is(f, "vdb", 0x52, OFF_B), 1); /* the middle layer's */
    free(vda), free(vdb), free(o1), free(o2), free(a1), free(a2);
}

/* Shut off, a single snapshot: deleting it commits the active layers with qemu-img; the VM boots on the
 * bases again from the rewritten command line. */
static void test_offline_delete_active_and_boot(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    struct qs_error *err = NULL;
    char *vda = qt_path_in(f, "vda.qcow2"), *vdb = qt_path_in(f, "vdb.qcow2");
    char *ob = qt_path_in(f, "vdb.k"), *oa = qt_path_in(f, "vda.k");
    struct qmp_client *c;
    char *x, *want;

    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    qt_attach(f);
    free(QSNAP_OK(f, "destroy", "vm"));
    OK(qh_vm_wait_exit(f->vm, 10000, NULL, &err));
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "k", "--disk-only"));
    qt_offline_write(ob, 0x61, OFF_A);
    free(QSNAP_OK(f, "snapshot-delete", "vm", "k"));
    assert_false(qt_exists(ob));
    assert_false(qt_exists(oa));
    assert_int_equal(qt_image_is(vdb, "qcow2", 0x61, OFF_A), 1);
    x = qt_domain_xml(f);
    want = qs_asprintf("<source file='%s'/>", vda);
    assert_non_null(strstr(x, want));
    free(want);
    free(x);
    free(QSNAP_OK(f, "start", "vm"));
    c = qt_daemon_client(f);
    qt_client_counter_advances(c);
    {
        char *file = qt_live_file(c, "vda");
        assert_string_equal(file, vda);
        free(file);
    }
    qmp_client_free(c);
    free(vda), free(vdb), free(ob), free(oa);
}

static struct qt_fixture f1 = {.cfg = &qt_cfg_two_disks};
static struct qt_fixture f2 = {.cfg = &qt_cfg_two_disks};
static struct qt_fixture f3 = {.cfg = &qt_cfg_two_disks};
static struct qt_fixture f4 = {.cfg = &qt_cfg_two_disks};
static struct qt_fixture f5 = {.cfg = &qt_cfg_two_disks};

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_prestate_setup_teardown(test_create_atomic_then_commit_active, qt_setup, qt_teardown, &f1),
        cmocka_unit_test_prestate_setup_teardown(test_failed_create_changes_nothing, qt_setup, qt_teardown, &f2),
        cmocka_unit_test_prestate_setup_teardown(test_middle_commit_revert_and_branch, qt_setup, qt_teardown, &f3),
        cmocka_unit_test_prestate_setup_teardown(test_offline_cycle, qt_setup, qt_teardown, &f4),
        cmocka_unit_test_prestate_setup_teardown(test_offline_delete_active_and_boot, qt_setup, qt_teardown, &f5),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
