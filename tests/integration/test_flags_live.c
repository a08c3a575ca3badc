/* test_flags_live.c: the create and revert flags no other test drives, end to end on real QEMU with what the
 * guest sees checked - --halt, --no-metadata, --reuse-external, revert --current - and the refusal of a tag
 * that QEMU would resolve to another snapshot's numeric id (label integration). */
#include "qsnap_test.h"

#include "qs_proc.h"
#include "qs_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MiB (1024u * 1024u)
#define OFF_A (1u * MiB)
#define OFF_B (2u * MiB)

/* qsnap ARGS... (NULL-terminated, at most 10) exits 1 with exactly WANT on stderr (its last newline aside). */
#define FAILS_WITH(f, want, ...) fails_with(f, __FILE__, __LINE__, want, __VA_ARGS__, (char *)NULL)

static void fails_with(struct qt_fixture *f, const char *file, int line, const char *want, ...)
{
    const char *a[11] = {NULL};
    char *out = NULL, *errout = NULL;
    va_list ap;
    int st;

    va_start(ap, want);
    for (int i = 0; i < 10 && (a[i] = va_arg(ap, const char *)); i++)
        ;
    va_end(ap);
    st = qt_qsnap_run(f, &out, &errout, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], (char *)NULL);
    if (st != 1 || strcmp(errout, want) != 0) {
        print_error("%s:%d: qsnap %s: exit %d, stderr:\n'%s'\nwanted exit 1 and:\n'%s'\n", file, line, a[0], st,
                    errout, want);
        _fail(file, line);
    }
    free(out), free(errout);
}

static void run_tool(char **argv)
{
    struct qs_proc_result res = {0};
    struct qs_error *err = NULL;

    OK(qs_proc_run(argv, 60000, 0, &res, &err));
    if (res.status != 0)
        print_error("%s: exit %d: %s\n", argv[0], res.status, res.errout);
    assert_int_equal(res.status, 0);
    qs_proc_result_release(&res);
}

/* qsnap CMD A1 [A2] prints exactly WANT on stdout. */
static void expect(struct qt_fixture *f, const char *want, const char *cmd, const char *a1, const char *a2)
{
    char *out = QSNAP_OK(f, cmd, a1, a2);
    assert_string_equal(out, want);
    free(out);
}

/* The counter in QEMU's RAM, which must be paused. */
static uint64_t paused_counter(struct qt_fixture *f)
{
    qt_assert_status(qh_vm_qmp(f->vm), "paused");
    return qt_counter(f);
}

/* --halt, internal: the snapshot is taken, then QEMU is gone; reverting to it from shut off brings back the
 * RAM and disk of that moment, not the disk as it was changed while the domain was off. */
static void test_halt_internal(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    struct qs_error *err = NULL;
    uint64_t lo, got;
    char *out;

    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    qt_attach(f);
    qt_guest_write(f, "vdb", 0x31, OFF_A);
    OK(qh_vm_read_counter(f->vm, &lo, &err));
    expect(f, "Domain snapshot h1 created\n", "snapshot-create-as", "vm", "h1");
    out = QSNAP_OK(f, "snapshot-create-as", "vm", "h2", "--halt");
    assert_string_equal(out, "Domain snapshot h2 created\n");
    free(out);
    OK(qh_vm_wait_exit(f->vm, 60000, NULL, &err)); /* QEMU quit */
    expect(f, "shut off\n\n", "domstate", "vm", NULL);
    out = QSNAP_OK(f, "snapshot-info", "vm", "h2");
    qt_assert_contains(out, "State:          running\n");
    free(out);

    qt_offline_write(qh_vm_disk_path(f->vm, "vdb"), 0x32, OFF_A);
    free(QSNAP_OK(f, "snapshot-revert", "vm", "h2", "--paused"));
    qt_adopt(f);
    got = paused_counter(f);
    print_message("counter %llu after the revert to h2, %llu before h1\n", (unsigned long long)got,
                  (unsigned long long)lo);
    assert_true(got >= lo);
    assert_int_equal(qt_guest_is(f, "vdb", 0x31, OFF_A), 1);
    qt_exec(qh_vm_qmp(f->vm), "cont");
    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
}

/* --halt with --disk-only: the overlays are made, then QEMU is gone; the domain starts on them. */
static void test_halt_external(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    struct qs_error *err = NULL;
    char *ovb = qt_path_in(f, "vdb.x1"), *file, *x, *want;

    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    qt_attach(f);
    qt_guest_write(f, "vdb", 0x33, OFF_A);
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "x1", "--disk-only", "--halt"));
    OK(qh_vm_wait_exit(f->vm, 60000, NULL, &err));
    expect(f, "shut off\n\n", "domstate", "vm", NULL);
    x = qt_domain_xml(f);
    want = qs_asprintf("<source file='%s'/>", ovb);
    qt_assert_contains(x, want);
    free(want), free(x);

    free(QSNAP_OK(f, "start", "vm"));
    qt_adopt(f);
    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    file = qt_live_file(qh_vm_qmp(f->vm), "vdb");
    assert_string_equal(file, ovb);
    free(file);
    assert_int_equal(qt_guest_is(f, "vdb", 0x33, OFF_A), 1); /* through the overlay, from below */
    qt_guest_write(f, "vdb", 0x34, OFF_A);
    assert_int_equal(qt_image_is(qh_vm_disk_path(f->vm, "vdb"), "qcow2", 0x33, OFF_A), 1); /* frozen */
    free(ovb);
}

/* --no-metadata: the tags are in the images with the guest's RAM and disk, and qsnap keeps nothing about them
 * (so it knows no such snapshot); QEMU itself loads the tag back. */
static void test_no_metadata(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    struct qs_error *err = NULL;
    char *path = qs_asprintf("%s/snapshot/vm/nm.xml", f->root), *out, *text = NULL;
    uint64_t lo, hi, got;

    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    qt_attach(f);
    qt_guest_write(f, "vdb", 0x41, OFF_A);
    OK(qh_vm_read_counter(f->vm, &lo, &err));
    out = QSNAP_OK(f, "snapshot-create-as", "vm", "nm", "--no-metadata");
    OK(qh_vm_read_counter(f->vm, &hi, &err));
    assert_string_equal(out, "Domain snapshot nm created\n");
    free(out);
    expect(f, "\n", "snapshot-list", "vm", "--name");
    assert_false(qt_exists(path));
    assert_true(qt_image_has_tag(qh_vm_disk_path(f->vm, "vda"), "nm"));
    assert_true(qt_image_has_tag(qh_vm_disk_path(f->vm, "vdb"), "nm"));
    FAILS_WITH(f, "error: Domain snapshot not found: no domain snapshot with matching name 'nm'", "snapshot-revert",
               "vm", "nm");

    /* what the tag holds: the guest's RAM and disk of the create, loaded by QEMU's own loadvm */
    qt_guest_write(f, "vdb", 0x42, OFF_A);
    qt_exec(qh_vm_qmp(f->vm), "stop");
    OK(qmp_client_hmp(qh_vm_qmp(f->vm), "loadvm nm", &text, &err));
    assert_string_equal(text, "");
    got = paused_counter(f);
    print_message("counter %llu after loadvm nm, saved within [%llu, %llu]\n", (unsigned long long)got,
                  (unsigned long long)lo, (unsigned long long)hi);
    assert_true(got >= lo && got <= hi);
    assert_int_equal(qt_guest_is(f, "vdb", 0x41, OFF_A), 1);
    qt_exec(qh_vm_qmp(f->vm), "cont");
    free(text), free(path);
}

/* --reuse-external: the overlays given are used as they are - what was put in them before shows through the
 * guest's devices - and the files are the same files; a missing one is refused and nothing changes. */
static void test_reuse_external(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    struct qs_error *err = NULL;
    const char *vda = qh_vm_disk_path(f->vm, "vda"), *vdb = qh_vm_disk_path(f->vm, "vdb");
    char *ova = qt_path_in(f, "pre-a.qcow2"), *ovb = qt_path_in(f, "pre-b.qcow2"), *missing = qt_path_in(f, "none");
    char *spec_a = qs_asprintf("vda,file=%s", ova), *spec_b = qs_asprintf("vdb,file=%s", ovb);
    char *spec_m = qs_asprintf("vdb,file=%s", missing), *blk0, *blk1, *file, *x, *want;
    struct stat before, after;

    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    qt_attach(f);
    qt_guest_write(f, "vdb", 0x51, OFF_A);
    /* the overlays, made by hand: vdb's carries bytes of its own at OFF_B; backing files set without opening
     * them (QEMU holds the images) */
    {
        char *ca[] = {"qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", (char *)vda, "-u", ova,
                      "64M", NULL};
        char *cb[] = {"qemu-img", "create", "-q", "-f", "qcow2", ovb, "16M", NULL};
        char *rb[] = {"qemu-img", "rebase", "-q", "-u", "-f", "qcow2", "-F", "qcow2", "-b", (char *)vdb, ovb, NULL};
        run_tool(ca);
        run_tool(cb);
        qt_offline_write(ovb, 0x77, OFF_B);
        run_tool(rb);
    }
    assert_int_equal(stat(ovb, &before), 0);

    /* a file to reuse that is not there: refused, the VM on its images as before */
    blk0 = qt_query_block(qh_vm_qmp(f->vm));
    {
        char *msg = qs_asprintf("error: disk 'vdb': external snapshot file '%s' to reuse: No such file or directory",
                                missing);
        FAILS_WITH(f, msg, "snapshot-create-as", "vm", "m1", "--disk-only", "--reuse-external", "--diskspec",
                   "vda,snapshot=no", "--diskspec", spec_m);
        free(msg);
    }
    blk1 = qt_query_block(qh_vm_qmp(f->vm));
    assert_string_equal(blk0, blk1);
    free(blk1);
    assert_false(qt_exists(missing));
    expect(f, "\n", "snapshot-list", "vm", "--name");

    free(QSNAP_OK(f, "snapshot-create-as", "vm", "r1", "--disk-only", "--reuse-external", "--diskspec", spec_a,
                  "--diskspec", spec_b));
    assert_int_equal(stat(ovb, &after), 0);
    assert_true(before.st_ino == after.st_ino && before.st_dev == after.st_dev); /* the same file */
    file = qt_live_file(qh_vm_qmp(f->vm), "vdb");
    assert_string_equal(file, ovb);
    free(file);
    file = qt_live_file(qh_vm_qmp(f->vm), "vda");
    assert_string_equal(file, ova);
    free(file);
    assert_int_equal(qt_guest_is(f, "vdb", 0x77, OFF_B), 1); /* the overlay's own bytes: it was reused */
    assert_int_equal(qt_guest_is(f, "vdb", 0x51, OFF_A), 1); /* the disk's, from below */
    x = qt_snapshot_xml(f, "r1");
    want = qs_asprintf("<source file='%s'/>", ovb);
    qt_assert_contains(x, want);
    free(want), free(x);
    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    free(ova), free(ovb), free(missing), free(spec_a), free(spec_b), free(spec_m), free(blk0);
}

/* revert --current: to the current snapshot, whichever it is (here one made current by hand); refused as virsh
 * refuses it while there is none. */
static void test_revert_current(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    struct qs_error *err = NULL;
    uint64_t lo, hi, got;

    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    qt_attach(f);
    FAILS_WITH(f, "error: Domain snapshot not found: the domain does not have a current snapshot", "snapshot-revert",
               "vm", "--current"); /* virsh's text */
    qt_guest_write(f, "vdb", 0x61, OFF_A);
    OK(qh_vm_read_counter(f->vm, &lo, &err));
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "c1"));
    OK(qh_vm_read_counter(f->vm, &hi, &err));
    qt_guest_write(f, "vdb", 0x62, OFF_A);
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "c2"));
    qt_guest_write(f, "vdb", 0x63, OFF_A);
    free(QSNAP_OK(f, "snapshot-current", "vm", "c1"));
    free(QSNAP_OK(f, "snapshot-revert", "vm", "--current", "--paused"));
    got = paused_counter(f);
    print_message("counter %llu after revert --current, c1 saved within [%llu, %llu]\n", (unsigned long long)got,
                  (unsigned long long)lo, (unsigned long long)hi);
    assert_true(got >= lo && got <= hi);
    assert_int_equal(qt_guest_is(f, "vdb", 0x61, OFF_A), 1);
    expect(f, "c1\n", "snapshot-current", "vm", "--name");
    qt_exec(qh_vm_qmp(f->vm), "cont");
}

/* A snapshot named "1" while another snapshot's id is 1 on the disks: QEMU's loadvm looks ids up first and
 * would load the other one, so the revert is refused; the guest runs on untouched. Deleting it works. */
static void test_numeric_id_refused(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    struct qs_error *err = NULL;

    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    qt_attach(f);
    qt_guest_write(f, "vdb", 0x71, OFF_A);
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "base")); /* id 1 on both disks */
    qt_guest_write(f, "vdb", 0x72, OFF_A);
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "1")); /* id 2, named "1" */
    qt_guest_write(f, "vdb", 0x73, OFF_A);
    FAILS_WITH(f, "error: Failed to revert snapshot 1\nerror: disk 'vda' has another snapshot 'base' whose id is '1': "
                  "QEMU would load that one", "snapshot-revert", "vm", "1");
    qt_assert_status(qh_vm_qmp(f->vm), "running");
    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    assert_int_equal(qt_guest_is(f, "vdb", 0x73, OFF_A), 1); /* nothing was loaded */
    /* the other snapshot is no ambiguity */
    free(QSNAP_OK(f, "snapshot-revert", "vm", "base"));
    assert_int_equal(qt_guest_is(f, "vdb", 0x71, OFF_A), 1);
    free(QSNAP_OK(f, "snapshot-delete", "vm", "1"));
    assert_false(qt_image_has_tag(qh_vm_disk_path(f->vm, "vda"), "1"));
    assert_true(qt_image_has_tag(qh_vm_disk_path(f->vm, "vda"), "base"));
}

int main(void)
{
    static struct qt_fixture f1 = {.cfg = &qt_cfg_two_disks}, f2 = {.cfg = &qt_cfg_two_disks},
                             f3 = {.cfg = &qt_cfg_two_disks}, f4 = {.cfg = &qt_cfg_two_disks},
                             f5 = {.cfg = &qt_cfg_two_disks}, f6 = {.cfg = &qt_cfg_two_disks};
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_prestate_setup_teardown(test_halt_internal, qt_setup, qt_teardown, &f1),
        cmocka_unit_test_prestate_setup_teardown(test_halt_external, qt_setup, qt_teardown, &f2),
        cmocka_unit_test_prestate_setup_teardown(test_no_metadata, qt_setup, qt_teardown, &f3),
        cmocka_unit_test_prestate_setup_teardown(test_reuse_external, qt_setup, qt_teardown, &f4),
        cmocka_unit_test_prestate_setup_teardown(test_revert_current, qt_setup, qt_teardown, &f5),
        cmocka_unit_test_prestate_setup_teardown(test_numeric_id_refused, qt_setup, qt_teardown, &f6),
    };

    if (getenv("QSNAP_TEST_FILTER"))
        cmocka_set_test_filter(getenv("QSNAP_TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
