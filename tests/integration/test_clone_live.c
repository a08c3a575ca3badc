/* test_clone_live.c: domain-clone on real QEMU - linked and full clones of internal and external snapshots,
 * clones forked from a snapshot's RAM while the original runs on, several side by side, a clone's own
 * identity and MAC addresses, and deletes refused while a linked clone needs the images (integration). */
#include "qsnap_test.h"

#include "qs_proc.h"
#include "qs_util.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MiB (1024u * 1024u)
#define OFF_A (2u * MiB)

/* ---- helpers ---- */

static int teardown(void **state)
{
    qt_kill_started(*state);
    return qt_teardown(state);
}

/* Writes PATTERN at OFF through the guest device of disk DEV of the QEMU on C (as the guest would). */
static void client_disk_write(struct qmp_client *c, const char *dev, uint8_t pattern, uint64_t off)
{
    struct qs_error *err = NULL;
    char *line = qs_asprintf("qemu-io -d %s/virtio-backend \"write -P 0x%02x %llu %u\"", dev, pattern,
                             (unsigned long long)off, QT_LEN), *out = NULL;

    OK(qmp_client_hmp(c, line, &out, &err));
    free(out);
    free(line);
}

static char *qmp_string(struct qmp_client *c, const char *cmd, const char *member)
{
    struct qs_error *err = NULL;
    struct qmp_reply *r = NULL;
    char *s;

    OK(qmp_client_execute(c, cmd, NULL, &r, &err));
    s = qs_xstrdup(qmp_value_get_string(qmp_reply_value(r), member));
    qmp_reply_free(r);
    return s;
}

/* Everything in the VM's directory and the state directory's domains, as "name size" lines. */
static char *listing(struct qt_fixture *f)
{
    /* the event log records refused clones too, as it records every operation: not state */
    char *argv[] = {"find", (char *)qh_vm_dir(f->vm), "-path", "*/run", "-prune", "-o", "-path", "*/root/events",
                    "-prune", "-o", "-name", ".qsnap-*", "-prune", "-o", "-printf", "%P %s\n", NULL};
    struct qs_proc_result res = {0};
    struct qs_error *err = NULL;

    OK(qs_proc_run(argv, 10000, 0, &res, &err));
    free(res.errout);
    return res.out;
}

/* The clone's definition passes libvirt's domain schema. */
static void assert_domain_valid(struct qt_fixture *f, const char *name)
{
    char *path = qs_asprintf("%s/qemu/%s.xml", f->root, name);

    qt_validate_xml(path, "domain");
    free(path);
}

static void prepare(struct qt_fixture *f)
{
    struct qs_error *err = NULL;

    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    qt_attach(f);
    qt_disk_write(f, "vdb", 0x11, OFF_A);
}

/* ---- linked and full ---- */

static void test_linked_internal(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    char *out, *c1b = qt_path_in(f, "c1-vdb.qcow2"), *c2b = qt_path_in(f, "c2-vdb.qcow2");
    char *base = qt_path_in(f, "vm-s1-vdb.base.qcow2"), *baseA = qt_path_in(f, "vm-s1-vda.base.qcow2"), *b, *x;
    char *src_uuid, *clone_uuid;
    struct qmp_client *c;
    struct stat st;

    prepare(f);
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "s1"));
    qt_disk_write(f, "vdb", 0x22, OFF_A);
    out = QSNAP_OK(f, "domain-clone", "vm", "s1", "c1", "--start");
    assert_string_equal(out, "Domain 'c1' cloned from snapshot s1 of domain 'vm', started\n\n");
    free(out);
    /* an overlay on one export of the snapshot's disk, 0600 */
    assert_int_equal(stat(c1b, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    b = qt_backing_of(c1b);
    assert_string_equal(b, base);
    free(b);
    assert_null(qt_backing_of(base));
    assert_int_equal(qt_image_is(c1b, "qcow2", 0x11, OFF_A), 1);
    /* the clone boots and counts; the source runs on, its disk as it was */
    c = qt_clone_client(f, "c1");
    qt_client_counter_advances(c);
    out = qmp_string(c, "query-name", "name");
    assert_string_equal(out, "c1");
    free(out);
    clone_uuid = qmp_string(c, "query-uuid", "UUID");
    src_uuid = qmp_string(qh_vm_qmp(f->vm), "query-uuid", "UUID");
    assert_string_not_equal(clone_uuid, src_uuid);
    b = qs_asprintf("%s/qemu/c1.xml", f->root);
    x = qt_slurp(b);
    free(b);
    qt_assert_contains(x, clone_uuid);
    qt_assert_contains(x, "<name>c1</name>");
    free(x);
    assert_domain_valid(f, "c1");
    assert_int_equal(qt_guest_reads(f, "vdb", 0x22, OFF_A), 1);
    /* the clone's writes stay its own */
    client_disk_write(c, "vdb", 0x44, OFF_A);
    assert_int_equal(qt_image_is(c1b, "qcow2", 0x44, OFF_A), 1);
    assert_int_equal(qt_image_is(base, "qcow2", 0x11, OFF_A), 1);
    assert_int_equal(qt_guest_reads(f, "vdb", 0x22, OFF_A), 1);
    qmp_client_free(c);
    /* a second linked clone shares the export */
    free(QSNAP_OK(f, "domain-clone", "vm", "s1", "c2"));
    b = qt_backing_of(c2b);
    assert_string_equal(b, base);
    free(b);
    out = QSNAP_OK(f, "domstate", "c2");
    assert_string_equal(out, "shut off\n\n");
    free(out);
    out = QSNAP_OK(f, "domstate", "c1");
    assert_string_equal(out, "running\n\n");
    free(out);
    /* the source snapshot is not in the clones' way (they sit on the export): it can go */
    free(QSNAP_OK(f, "snapshot-delete", "vm", "s1"));
    assert_true(qt_exists(base) && qt_exists(baseA));
    out = QSNAP_OK(f, "snapshot-check", "vm");
    free(out);
    qt_assert_status(qh_vm_qmp(f->vm), "running");
    free(QSNAP_OK(f, "destroy", "c1"));
    free(c1b), free(c2b), free(base), free(baseA), free(src_uuid), free(clone_uuid);
}

static void test_full_and_linked_external(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    char *c3b = qt_path_in(f, "c3-vdb.qcow2"), *c4b = qt_path_in(f, "c4-vdb.qcow2"), *vdb = qt_path_in(f, "vdb.qcow2");
    char *out = NULL, *errout = NULL, *b;
    struct qmp_client *c;
    int st;

    prepare(f);
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "e1", "--disk-only"));
    qt_disk_write(f, "vdb", 0x33, OFF_A);
    /* full: no backing file, the snapshot's bytes */
    free(QSNAP_OK(f, "domain-clone", "vm", "e1", "c3", "--full", "--start"));
    assert_null(qt_backing_of(c3b));
    assert_int_equal(qt_image_is(c3b, "qcow2", 0x11, OFF_A), 1);
    c = qt_clone_client(f, "c3");
    qt_client_counter_advances(c);
    qmp_client_free(c);
    /* linked: an overlay on the frozen image */
    free(QSNAP_OK(f, "domain-clone", "vm", "e1", "c4", "--linked"));
    b = qt_backing_of(c4b);
    assert_string_equal(b, vdb);
    free(b);
    assert_int_equal(qt_image_is(c4b, "qcow2", 0x11, OFF_A), 1);
    /* deleting the snapshot would merge into what c4 is built on: refused, naming the clone */
    st = qt_qsnap_run(f, &out, &errout, "snapshot-delete", "vm", "e1", (char *)NULL);
    assert_int_equal(st, 1);
    qt_assert_contains(errout, "snapshot 'e1' cannot be deleted: domain 'c4' is a linked clone built on its image");
    free(out), free(errout);
    /* a revert of the source leaves what the clone needs */
    free(QSNAP_OK(f, "snapshot-revert", "vm", "e1", "--running"));
    {
        struct qmp_client *d = qt_daemon_client(f);
        qmp_client_free(d);
    }
    assert_true(qt_exists(vdb));
    assert_int_equal(qt_image_is(c4b, "qcow2", 0x11, OFF_A), 1);
    out = QSNAP_OK(f, "snapshot-check", "vm");
    free(out);
    /* once the clone is gone, the delete goes through */
    free(QSNAP_OK(f, "undefine", "c4"));
    {
        char *a = qt_path_in(f, "c4-vda.qcow2");
        unlink(a);
        unlink(c4b);
        free(a);
    }
    free(QSNAP_OK(f, "snapshot-delete", "vm", "e1"));
    free(QSNAP_OK(f, "destroy", "c3"));
    free(c3b), free(c4b), free(vdb);
}

/* ---- forked from the snapshot's RAM ---- */

static uint64_t paused_snapshot(struct qt_fixture *f, const char *name, const char *memspec)
{
    uint64_t v;

    qt_exec(qh_vm_qmp(f->vm), "stop");
    v = qt_counter(f);
    if (memspec)
        free(QSNAP_OK(f, "snapshot-create-as", "vm", name, "--memspec", memspec));
    else
        free(QSNAP_OK(f, "snapshot-create-as", "vm", name));
    assert_int_equal(qt_counter(f), v);
    qt_exec(qh_vm_qmp(f->vm), "cont");
    return v;
}

static void test_with_memory_internal(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    struct qmp_client *c5, *c6;
    uint64_t at, src;
    char *out;

    prepare(f);
    at = paused_snapshot(f, "m1", NULL);
    qt_disk_write(f, "vdb", 0x22, OFF_A);
    out = QSNAP_OK(f, "domain-clone", "vm", "m1", "c5", "--with-memory");
    assert_string_equal(out, "Domain 'c5' cloned from snapshot m1 of domain 'vm', started from its memory\n\n");
    free(out);
    free(QSNAP_OK(f, "domain-clone", "vm", "m1", "c6", "--with-memory", "--full"));
    c5 = qt_clone_client(f, "c5");
    c6 = qt_clone_client(f, "c6");
    /* the snapshot was paused: both clones wait, holding its RAM to the count */
    qt_assert_status(c5, "paused");
    qt_assert_status(c6, "paused");
    assert_int_equal(qt_client_counter(c5, true), at);
    assert_int_equal(qt_client_counter(c6, true), at);
    qt_exec(c5, "cont");
    qt_exec(c6, "cont");
    qt_client_counter_advances(c5);
    qt_client_counter_advances(c6);
    /* the original ran on, untouched */
    src = qt_counter(f);
    print_message("snapshot counter %llu, source now %llu, clones %llu / %llu\n", (unsigned long long)at,
                  (unsigned long long)src, (unsigned long long)qt_client_counter(c5, true),
                  (unsigned long long)qt_client_counter(c6, true));
    assert_true(src > at);
    qt_assert_status(qh_vm_qmp(f->vm), "running");
    assert_int_equal(qt_guest_reads(f, "vdb", 0x22, OFF_A), 1);
    {
        char *img = qt_path_in(f, "c5-vdb.qcow2");
        assert_int_equal(qt_image_is(img, "qcow2", 0x11, OFF_A), 1);
        free(img);
    }
    qmp_client_free(c5);
    qmp_client_free(c6);
}

static void test_with_memory_external(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    char *mem = qt_path_in(f, "x1.mem");
    struct qmp_client *c;
    uint64_t at;

    prepare(f);
    at = paused_snapshot(f, "x1", mem);
    free(QSNAP_OK(f, "domain-clone", "vm", "x1", "c7", "--with-memory"));
    {
        /* the source runs "-machine pc,...": the clone's command line names the type the state was written
           from (pc-i440fx-X.Y), so an upgraded QEMU still loads it */
        char *path = qs_asprintf("%s/qemu/c7.xml", f->root), *xml = qt_slurp(path);
        assert_non_null(xml);
        if (!strstr(xml, "value='pc-i440fx-") && !strstr(xml, "value=\"pc-i440fx-"))
            print_error("c7's definition does not pin the machine type:\n%s\n", xml);
        assert_true(strstr(xml, "value='pc-i440fx-") || strstr(xml, "value=\"pc-i440fx-"));
        free(xml);
        free(path);
    }
    c = qt_clone_client(f, "c7");
    qt_assert_status(c, "paused");
    assert_int_equal(qt_client_counter(c, true), at);
    qt_exec(c, "cont");
    qt_client_counter_advances(c);
    assert_true(qt_counter(f) > at);
    qmp_client_free(c);
    /* a running snapshot: the clone runs at once, from the snapshot's count on */
    {
        uint64_t before = qt_counter(f), now;
        free(QSNAP_OK(f, "snapshot-create-as", "vm", "r1"));
        free(QSNAP_OK(f, "domain-clone", "vm", "r1", "c8", "--with-memory"));
        c = qt_clone_client(f, "c8");
        qt_assert_status(c, "running");
        now = qt_client_counter(c, true);
        assert_true(now >= before);
        assert_true(now < qt_counter(f)); /* the source counted on all the while */
        qmp_client_free(c);
    }
    free(mem);
}

/* ---- refusals change nothing ---- */

static void test_refused(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    char *before, *after, *x;

    prepare(f);
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "s1"));
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "d1", "--disk-only"));
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "nob", "--diskspec", "vdb,snapshot=no"));
    free(QSNAP_OK(f, "domain-clone", "vm", "s1", "taken"));
    before = listing(f);
    qt_qsnap_fail(f, "domain 'vm' is already defined", "domain-clone", "vm", "s1", "vm", (char *)NULL);
    qt_qsnap_fail(f, "domain 'taken' is already defined", "domain-clone", "vm", "s1", "taken", (char *)NULL);
    qt_qsnap_fail(f, "domain name 'a/b' must not contain '/'", "domain-clone", "vm", "s1", "a/b", (char *)NULL);
    qt_qsnap_fail(f, "no domain snapshot with matching name 'nope'", "domain-clone", "vm", "nope", "c", (char *)NULL);
    qt_qsnap_fail(f, "snapshot 'd1' holds no memory", "domain-clone", "vm", "d1", "c", "--with-memory",
                  (char *)NULL);
    qt_qsnap_fail(f, "a clone cannot share disk 'vdb' with domain 'vm'", "domain-clone", "vm", "nob", "c",
                  (char *)NULL);
    qt_qsnap_fail(f, "failed to get domain 'nodom'", "domain-clone", "nodom", "s1", "c", (char *)NULL);
    {
        char *o = NULL, *e = NULL;
        assert_int_equal(qt_qsnap_run(f, &o, &e, "domain-clone", "vm", "s1", "c", "--linked", "--full",
                                      (char *)NULL), 2);
        free(o), free(e);
    }
    after = listing(f);
    assert_string_equal(before, after);
    x = qs_asprintf("%s/qemu/c.xml", f->root);
    assert_false(qt_exists(x));
    free(x);
    qt_assert_status(qh_vm_qmp(f->vm), "running");
    free(before), free(after);
}

/* ---- a clone's own network identity ---- */

static const char *const nic_args[] = {"-netdev", "user,id=n0", "-device",
                                       "virtio-net-pci,netdev=n0,id=net0,mac=52:54:00:aa:bb:cc", NULL};
static const char *const fwd_args[] = {"-netdev", "user,id=n0,hostfwd=tcp:127.0.0.1:0-:22", "-device",
                                       "virtio-net-pci,netdev=n0,id=net0", NULL};

static char *qom_mac(struct qmp_client *c)
{
    struct qs_error *err = NULL;
    struct qmp_args *a = qmp_args_new();
    struct qmp_reply *r = NULL;
    char *s;

    qmp_args_set_str(a, "path", "/machine/peripheral/net0");
    qmp_args_set_str(a, "property", "mac");
    OK(qmp_client_execute(c, "qom-get", a, &r, &err));
    s = qs_xstrdup(qmp_value_string(qmp_reply_value(r)));
    qmp_reply_free(r);
    qmp_args_free(a);
    return s;
}

static void test_nic_gets_new_mac(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    struct qmp_client *c;
    char *mac;

    prepare(f);
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "s1"));
    free(QSNAP_OK(f, "domain-clone", "vm", "s1", "n1", "--start"));
    c = qt_clone_client(f, "n1");
    mac = qom_mac(c);
    assert_string_not_equal(mac, "52:54:00:aa:bb:cc");
    assert_int_equal(strncmp(mac, "52:54:00:", 9), 0);
    free(mac);
    mac = qom_mac(qh_vm_qmp(f->vm));
    assert_string_equal(mac, "52:54:00:aa:bb:cc");
    free(mac);
    qmp_client_free(c);
}

static void test_hostfwd_refused(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    char *before, *after;

    prepare(f);
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "s1"));
    before = listing(f);
    qt_qsnap_fail(f, "its hostfwd listens on a host port", "domain-clone", "vm", "s1", "h1", (char *)NULL);
    after = listing(f);
    assert_string_equal(before, after);
    free(before), free(after);
}

int main(void)
{
    static const struct qh_disk disks[] = {{.id = "vda", .boot = true}, {.id = "vdb", .size = 16u * MiB}};
    static const struct qh_vm_config nic_cfg = {.disks = disks, .n_disks = 2, .extra_args = nic_args};
    static const struct qh_vm_config fwd_cfg = {.disks = disks, .n_disks = 2, .extra_args = fwd_args};
    static struct qt_fixture f = {.cfg = &qt_cfg_two_disks};
    static struct qt_fixture fn = {.cfg = &nic_cfg}, ff = {.cfg = &fwd_cfg};
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_prestate_setup_teardown(test_linked_internal, qt_setup, teardown, &f),
        cmocka_unit_test_prestate_setup_teardown(test_full_and_linked_external, qt_setup, teardown, &f),
        cmocka_unit_test_prestate_setup_teardown(test_with_memory_internal, qt_setup, teardown, &f),
        cmocka_unit_test_prestate_setup_teardown(test_with_memory_external, qt_setup, teardown, &f),
        cmocka_unit_test_prestate_setup_teardown(test_refused, qt_setup, teardown, &f),
        cmocka_unit_test_prestate_setup_teardown(test_nic_gets_new_mac, qt_setup, teardown, &fn),
        cmocka_unit_test_prestate_setup_teardown(test_hostfwd_refused, qt_setup, teardown, &ff),
    };
    if (getenv("QSNAP_TEST_FILTER"))
        cmocka_set_test_filter(getenv("QSNAP_TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
