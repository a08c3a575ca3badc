/* test_external_live.c: external disk-only snapshots through the qsnap command on real QEMU - create, revert,
 * delete by merging, live and offline - checked from the guest's side and on the image files (integration). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "qemu_harness.h"
#include "qmp.h"
#include "qs_file.h"
#include "qs_proc.h"
#include "qs_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MiB (1024u * 1024u)
#define OFF_A (2u * MiB)
#define OFF_B (3u * MiB)
#define LEN (64u * 1024u)

struct fixture {
    const struct qh_vm_config *cfg;
    struct qh_vm *vm;
    char *root;
    char *qsnap;
    pid_t daemon; /* a QEMU qsnap started, killed at teardown */
};

static void check_(int rc, struct qs_error **err, const char *what, const char *file, int line)
{
    if (rc < 0) {
        print_error("%s:%d: %s: %s\n", file, line, what, *err ? (*err)->message : "failed");
        qs_error_clear(err);
        _fail(file, line);
    }
}
#define OK(call) check_((call), &err, #call, __FILE__, __LINE__)

static int qsnap_run(struct fixture *f, char **out, char **errout, ...)
{
    char *argv[32] = {f->qsnap, "--root", f->root};
    struct qs_proc_result res = {0};
    struct qs_error *err = NULL;
    size_t n = 3;
    va_list ap;

    va_start(ap, errout);
    while ((argv[n] = va_arg(ap, char *)) != NULL && n < 30)
        n++;
    va_end(ap);
    check_(qs_proc_run(argv, 120000, 0, &res, &err), &err, "qsnap", __FILE__, __LINE__);
    if (out)
        *out = res.out, res.out = NULL;
    if (errout)
        *errout = res.errout, res.errout = NULL;
    qs_proc_result_release(&res);
    return res.status;
}

#define QSNAP_OK(f, ...) qsnap_ok_(f, __FILE__, __LINE__, __VA_ARGS__, (char *)NULL)
static char *qsnap_ok_(struct fixture *f, const char *file, int line, ...)
{
    char *argv[32] = {f->qsnap, "--root", f->root};
    struct qs_proc_result res = {0};
    struct qs_error *err = NULL;
    size_t n = 3;
    va_list ap;
    char *out;

    va_start(ap, line);
    while ((argv[n] = va_arg(ap, char *)) != NULL && n < 30)
        n++;
    va_end(ap);
    check_(qs_proc_run(argv, 120000, 0, &res, &err), &err, "qsnap", file, line);
    if (res.status != 0) {
        print_error("%s:%d: qsnap %s %s failed (%d): %s\n", file, line, argv[3], argv[4] ? argv[4] : "",
                    res.status, res.errout);
        _fail(file, line);
    }
    out = res.out;
    res.out = NULL;
    qs_proc_result_release(&res);
    return out;
}

static int setup(void **state)
{
    struct fixture *f = *state;
    struct qs_error *err = NULL;
    const char *build = getenv("QSNAP_BUILD_DIR");

    if (!qh_qemu_available() || !build)
        return 0;
    if (!(f->vm = qh_vm_start(f->cfg, &err))) {
        print_error("cannot start qemu: %s\n", err->message);
        qs_error_free(err);
        return -1;
    }
    f->root = qs_asprintf("%s/root", qh_vm_dir(f->vm));
    f->qsnap = qs_asprintf("%s/cli/qsnap", build);
    f->daemon = -1;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    if (f->daemon > 0)
        kill(f->daemon, SIGKILL);
    qh_vm_free(f->vm);
    free(f->root);
    free(f->qsnap);
    f->vm = NULL;
    f->root = f->qsnap = NULL;
    return 0;
}

static struct fixture *fixture_of(void **state)
{
    struct fixture *f = *state;
    if (!f->vm)
        skip();
    return f;
}

static char *path_in(struct fixture *f, const char *name)
{
    return qs_asprintf("%s/%s", qh_vm_dir(f->vm), name);
}

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static char *slurp(const char *path)
{
    struct qs_error *err = NULL;
    char *data = NULL;
    OK(qs_file_read(AT_FDCWD, path, 16u << 20, &data, NULL, &err));
    return data;
}

static char *domain_xml(struct fixture *f)
{
    char *p = qs_asprintf("%s/qemu/vm.xml", f->root), *x = slurp(p);
    free(p);
    return x;
}

static char *snapshot_xml(struct fixture *f, const char *name)
{
    char *p = qs_asprintf("%s/snapshot/vm/%s.xml", f->root, name), *x = slurp(p);
    free(p);
    return x;
}

/* QEMU's block graph as the guest's devices see it: per device its top node, file and chain depth, and
 * every node name QEMU has. */
static char *query_block(struct qmp_client *c)
{
    struct qmp_reply *r = NULL, *nn = NULL;
    struct qmp_args *a = qmp_args_new();
    struct qs_error *err = NULL;
    char *s = qs_xstrdup(""), *t;
    OK(qmp_client_execute(c, "query-block", NULL, &r, &err));
    for (size_t i = 0; i < qmp_value_array_len(qmp_reply_value(r)); i++) {
        const struct qmp_value *ins = qmp_value_get(qmp_value_array_at(qmp_reply_value(r), i), "inserted");
        int64_t depth = -1;
        qmp_value_int(qmp_value_get(ins, "backing_file_depth"), &depth);
        t = qs_asprintf("%s%s %s %lld\n", s, qmp_value_get_string(ins, "node-name"),
                        qmp_value_get_string(ins, "file"), (long long)depth);
        free(s);
        s = t;
    }
    qmp_args_set_bool(a, "flat", true);
    OK(qmp_client_execute(c, "query-named-block-nodes", a, &nn, &err));
    for (size_t i = 0; i < qmp_value_array_len(qmp_reply_value(nn)); i++) {
        const char *name = qmp_value_get_string(qmp_value_array_at(qmp_reply_value(nn), i), "node-name");
        t = qs_asprintf("%s%s\n", s, name[0] == '#' ? "#auto" : name);
        free(s);
        s = t;
    }
    qmp_args_free(a);
    qmp_reply_free(nn);
    qmp_reply_free(r);
    return s;
}

/* The top image file QEMU has open for device DEV. */
static char *live_file(struct qmp_client *c, const char *dev)
{
    struct qmp_reply *r = NULL;
    struct qs_error *err = NULL;
    char *file = NULL;
    OK(qmp_client_execute(c, "query-block", NULL, &r, &err));
    for (size_t i = 0; i < qmp_value_array_len(qmp_reply_value(r)); i++) {
        const struct qmp_value *d = qmp_value_array_at(qmp_reply_value(r), i);
        const char *qdev = qmp_value_get_string(d, "qdev");
        if (qdev && strstr(qdev, dev))
            file = qs_xstrdup(qmp_value_string(qmp_value_path(d, "inserted.file")));
    }
    qmp_reply_free(r);
    assert_non_null(file);
    return file;
}

static char *live_node(struct qmp_client *c, const char *dev)
{
    struct qmp_reply *r = NULL;
    struct qs_error *err = NULL;
    char *node = NULL;
    OK(qmp_client_execute(c, "query-block", NULL, &r, &err));
    for (size_t i = 0; i < qmp_value_array_len(qmp_reply_value(r)); i++) {
        const struct qmp_value *d = qmp_value_array_at(qmp_reply_value(r), i);
        const char *qdev = qmp_value_get_string(d, "qdev");
        if (qdev && strstr(qdev, dev))
            node = qs_xstrdup(qmp_value_string(qmp_value_path(d, "inserted.node-name")));
    }
    qmp_reply_free(r);
    assert_non_null(node);
    return node;
}

static void disk_write(struct fixture *f, const char *dev, uint8_t pattern, uint64_t off)
{
    struct qs_error *err = NULL;
    OK(qh_vm_disk_write(f->vm, dev, pattern, off, LEN, &err));
}

/* 1 when the guest's device DEV (its current top node) reads PATTERN at OFF. */
static int guest_reads(struct fixture *f, const char *dev, uint8_t pattern, uint64_t off)
{
    struct qs_error *err = NULL;
    char *node = live_node(qh_vm_qmp(f->vm), dev);
    int r = qh_vm_disk_check(f->vm, node, pattern, off, LEN, &err);
    free(node);
    check_(r, &err, "disk check", __FILE__, __LINE__);
    return r;
}

static int image_is(const char *path, const char *fmt, uint8_t pattern, uint64_t off)
{
    struct qs_error *err = NULL;
    int r = qh_image_check(path, fmt, pattern, off, LEN, &err);
    check_(r, &err, "image check", __FILE__, __LINE__);
    return r;
}

static void offline_write(const char *path, uint8_t pattern, uint64_t off)
{
    char cmd[128];
    char *argv[] = {"qemu-io", "-f", "qcow2", "-c", cmd, (char *)path, NULL};
    struct qs_proc_result res = {0};
    struct qs_error *err = NULL;
    snprintf(cmd, sizeof(cmd), "write -P 0x%02x %llu %u", pattern, (unsigned long long)off, LEN);
    check_(qs_proc_run(argv, 30000, 0, &res, &err), &err, "qemu-io", __FILE__, __LINE__);
    assert_int_equal(res.status, 0);
    qs_proc_result_release(&res);
}

/* The backing file named in an image's header (qemu-img info -U). Caller frees; NULL when none. */
static char *backing_of(const char *path)
{
    char *argv[] = {"qemu-img", "info", "-U", "--output=json", (char *)path, NULL};
    struct qs_proc_result res = {0};
    struct qs_error *err = NULL;
    struct qmp_reply *r;
    const char *b;
    char *out;
    check_(qs_proc_run(argv, 30000, 0, &res, &err), &err, "qemu-img", __FILE__, __LINE__);
    assert_int_equal(res.status, 0);
    r = qmp_reply_parse(res.out, &err);
    assert_non_null(r);
    b = qmp_value_get_string(qmp_reply_value(r), "backing-filename");
    out = b ? qs_xstrdup(b) : NULL;
    qmp_reply_free(r);
    qs_proc_result_release(&res);
    return out;
}

static void validate_all(struct fixture *f, int want)
{
    char *dir = qs_asprintf("%s/snapshot/vm", f->root);
    DIR *d;
    struct dirent *de;
    int checked = 0;

    if (access("/usr/share/libvirt/schemas/domainsnapshot.rng", R_OK) != 0) {
        free(dir);
        return;
    }
    assert_non_null(d = opendir(dir));
    while ((de = readdir(d))) {
        char *path, *argv[] = {"virt-xml-validate", NULL, "domainsnapshot", NULL};
        struct qs_proc_result res = {0};
        struct qs_error *err = NULL;
        if (!qs_str_has_suffix(de->d_name, ".xml"))
            continue;
        path = qs_asprintf("%s/%s", dir, de->d_name);
        argv[1] = path;
        OK(qs_proc_run(argv, 30000, 0, &res, &err));
        if (res.status != 0)
            print_error("%s: %s\n", path, res.errout);
        assert_int_equal(res.status, 0);
        qs_proc_result_release(&res);
        free(path);
        checked++;
    }
    closedir(d);
    free(dir);
    assert_int_equal(checked, want);
}

/* A client on the QMP socket of a QEMU qsnap started; records its pid for teardown. */
static struct qmp_client *daemon_client(struct fixture *f)
{
    struct qs_error *err = NULL;
    struct qmp_client *c = qmp_client_connect(qh_vm_socket_path(f->vm), NULL, &err);
    check_(c ? 0 : -1, &err, "connect", __FILE__, __LINE__);
    f->daemon = qmp_client_peer_pid(c);
    return c;
}

static uint64_t daemon_counter(struct qmp_client *c)
{
    struct qs_error *err = NULL;
    char *text = NULL, hmp[64];
    unsigned long long lo = 0, hi = 0, magic = 0;
    snprintf(hmp, sizeof(hmp), "xp /3wx 0x%x", QH_COUNTER_ADDR);
    OK(qmp_client_hmp(c, hmp, &text, &err));
    assert_int_equal(sscanf(text, "%*x: %llx %llx %llx", &lo, &hi, &magic), 3);
    free(text);
    if (magic != QH_COUNTER_MAGIC)
        return 0;
    return (hi << 32) | lo;
}

/* The guest boots and counts on a QEMU qsnap started. */
static void daemon_counter_advances(struct qmp_client *c)
{
    uint64_t a = 0, b = 0;
    for (int i = 0; i < 100 && (a = daemon_counter(c)) == 0; i++)
        usleep(100000);
    assert_true(a > 0);
    for (int i = 0; i < 100 && (b = daemon_counter(c)) <= a; i++)
        usleep(50000);
    assert_true(b > a);
}

/* ------------------------------------------------------------------------------------------------ */

/* Two disks switch to overlays in one transaction; new writes land there, the frozen images keep the
 * old bytes; deleting the snapshot commits the active layer back and the guest sees no difference. */
static void test_create_atomic_then_commit_active(void **state)
{
    struct fixture *f = fixture_of(state);
    struct qs_error *err = NULL;
    char *vda = path_in(f, "vda.qcow2"), *vdb = path_in(f, "vdb.qcow2");
    char *ova = path_in(f, "vda.s1"), *ovb = path_in(f, "vdb.s1");
    char *out, *x, *file;
    struct stat st;

    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    free(QSNAP_OK(f, "attach", "vm", "--qmp", qh_vm_socket_path(f->vm)));
    disk_write(f, "vdb", 0xaa, OFF_A);
    disk_write(f, "vda", 0xa1, OFF_A);

    out = QSNAP_OK(f, "snapshot-create-as", "vm", "s1", "--disk-only", "--atomic");
    assert_string_equal(out, "Domain snapshot s1 created\n");
    free(out);
    /* libvirt's names, 0600, QEMU on the overlays, guest still running */
    assert_int_equal(stat(ova, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(stat(ovb, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    file = live_file(qh_vm_qmp(f->vm), "vda");
    assert_string_equal(file, ova);
    free(file);
    file = live_file(qh_vm_qmp(f->vm), "vdb");
    assert_string_equal(file, ovb);
    free(file);
    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));

    disk_write(f, "vdb", 0xbb, OFF_A);
    disk_write(f, "vda", 0xb1, OFF_A);
    assert_int_equal(guest_reads(f, "vdb", 0xbb, OFF_A), 1);
    assert_int_equal(image_is(vdb, "qcow2", 0xaa, OFF_A), 1); /* frozen */
    assert_int_equal(image_is(vda, "qcow2", 0xa1, OFF_A), 1);
    assert_int_equal(image_is(ovb, "qcow2", 0xbb, OFF_A), 1);

    /* metadata as libvirt writes it; the domain now points at the overlays */
    x = snapshot_xml(f, "s1");
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
    x = domain_xml(f);
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
    validate_all(f, 1);

    /* delete = active commit: the guest keeps its bytes, the bases get them, the overlays go */
    out = QSNAP_OK(f, "snapshot-delete", "vm", "s1");
    assert_string_equal(out, "Domain snapshot s1 deleted\n\n");
    free(out);
    assert_int_equal(guest_reads(f, "vdb", 0xbb, OFF_A), 1);
    assert_int_equal(guest_reads(f, "vda", 0xb1, OFF_A), 1);
    file = live_file(qh_vm_qmp(f->vm), "vdb");
    assert_string_equal(file, vdb);
    free(file);
    assert_false(exists(ova));
    assert_false(exists(ovb));
    assert_int_equal(image_is(vdb, "qcow2", 0xbb, OFF_A), 1);
    x = domain_xml(f);
    out = qs_asprintf("<source file='%s'/>", vdb);
    assert_non_null(strstr(x, out));
    free(out);
    free(x);
    /* still writable after the commit (no stale node keeps the base busy) */
    disk_write(f, "vdb", 0xcc, OFF_A);
    assert_int_equal(guest_reads(f, "vdb", 0xcc, OFF_A), 1);
    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    free(vda), free(vdb), free(ova), free(ovb);
}

/* A create that fails on the second disk leaves no file and changes nothing: metadata, definition, QEMU. */
static void test_failed_create_changes_nothing(void **state)
{
    struct fixture *f = fixture_of(state);
    char *ova = path_in(f, "vda.bad"), *ovb = path_in(f, "vdb.bad");
    char *dom0, *dom1, *qb0, *qb1, *errout = NULL;
    int fd;

    free(QSNAP_OK(f, "attach", "vm", "--qmp", qh_vm_socket_path(f->vm)));
    dom0 = domain_xml(f);
    qb0 = query_block(qh_vm_qmp(f->vm));

    /* vdb's overlay cannot be created (procfs): vda's, already made, must go again */
    assert_int_equal(qsnap_run(f, NULL, &errout, "snapshot-create-as", "vm", "bad", "--disk-only", "--diskspec",
                               "vdb,snapshot=external,file=/proc/qsnap-no-such-overlay", NULL),
                     1);
    assert_non_null(strstr(errout, "vdb"));
    free(errout);
    assert_false(exists(ova));
    /* a directory that does not exist */
    assert_int_equal(qsnap_run(f, NULL, &errout, "snapshot-create-as", "vm", "bad", "--disk-only", "--diskspec",
                               "vdb,file=/nonexistent-dir/x.qcow2", NULL),
                     1);
    assert_non_null(strstr(errout, "does not exist"));
    free(errout);
    /* an overlay file that already exists for disk 2 */
    fd = open(ovb, O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(qsnap_run(f, NULL, &errout, "snapshot-create-as", "vm", "bad", "--disk-only", NULL), 1);
    assert_non_null(strstr(errout, "already exists"));
    free(errout);
    unlink(ovb);
    /* internal mixed with external */
    assert_int_equal(qsnap_run(f, NULL, &errout, "snapshot-create-as", "vm", "bad", "--disk-only", "--diskspec",
                               "vda,snapshot=internal", NULL),
                     1);
    assert_non_null(strstr(errout, "mixing internal and external"));
    free(errout);
    /* a running VM without --disk-only would need an external memory state */
    assert_int_equal(qsnap_run(f, NULL, &errout, "snapshot-create-as", "vm", "bad", "--diskspec",
                               "vda,snapshot=external", NULL),
                     1);
    assert_non_null(strstr(errout, "needs --disk-only"));
    free(errout);

    assert_false(exists(ova));
    assert_false(exists(ovb));
    dom1 = domain_xml(f);
    assert_string_equal(dom0, dom1);
    qb1 = query_block(qh_vm_qmp(f->vm));
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
 * a revert to s2 starts a new branch (the old one stays), a snapshot on it works, and a merge that would
 * change the other branch is refused.
 */
static void test_middle_commit_revert_and_branch(void **state)
{
    struct fixture *f = fixture_of(state);
    struct qs_error *err = NULL;
    char *vdb = path_in(f, "vdb.qcow2"), *s1 = path_in(f, "vdb.s1"), *s2 = path_in(f, "vdb.s2");
    char *r1 = path_in(f, "vdb.s2-1"), *s3 = path_in(f, "vdb.s3");
    char *out, *x, *b, *errout = NULL;
    struct qmp_client *c;

    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    free(QSNAP_OK(f, "attach", "vm", "--qmp", qh_vm_socket_path(f->vm)));
    disk_write(f, "vdb", 0x11, OFF_A);
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "s1", "--disk-only", "--diskspec", "vda,snapshot=no"));
    disk_write(f, "vdb", 0x22, OFF_B);
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "s2", "--disk-only", "--diskspec", "vda,snapshot=no"));
    disk_write(f, "vdb", 0x33, OFF_A);
    out = QSNAP_OK(f, "snapshot-parent", "vm", "s2");
    assert_string_equal(out, "s1\n");
    free(out);

    /* s1: its overlay vdb.s1 (holding 0x22) goes into vdb.qcow2 under the active vdb.s2 */
    free(QSNAP_OK(f, "snapshot-delete", "vm", "s1"));
    assert_false(exists(s1));
    assert_int_equal(guest_reads(f, "vdb", 0x33, OFF_A), 1);
    assert_int_equal(guest_reads(f, "vdb", 0x22, OFF_B), 1);
    assert_int_equal(image_is(vdb, "qcow2", 0x11, OFF_A), 1);
    assert_int_equal(image_is(vdb, "qcow2", 0x22, OFF_B), 1);
    b = backing_of(s2);
    assert_string_equal(b, vdb);
    free(b);
    x = snapshot_xml(f, "s2"); /* s2 froze vdb.s1, which is now part of vdb.qcow2 */
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
    assert_true(exists(r1));
    assert_true(exists(s2)); /* the old branch stays */
    assert_int_equal(image_is(s2, "qcow2", 0x33, OFF_A), 1);
    assert_int_equal(image_is(r1, "qcow2", 0x11, OFF_A), 1);
    assert_int_equal(image_is(r1, "qcow2", 0x22, OFF_B), 1);
    out = QSNAP_OK(f, "snapshot-current", "vm", "--name");
    assert_string_equal(out, "s2\n");
    free(out);

    /* boot the new branch from the rewritten command line; write through the guest device */
    free(QSNAP_OK(f, "start", "vm"));
    c = daemon_client(f);
    daemon_counter_advances(c);
    {
        char *file = live_file(c, "vdb");
        assert_string_equal(file, r1);
        free(file);
    }
    OK(qmp_client_hmp(c, "qemu-io -d vdb/virtio-backend \"write -P 0x44 3145728 65536\"", NULL, &err));
    qmp_client_free(c); /* QEMU serves one client per monitor: qsnap's turn */
    /* on from there: a snapshot on the new branch, live */
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "s3", "--disk-only", "--diskspec", "vda,snapshot=no"));
    c = daemon_client(f);
    {
        char *file = live_file(c, "vdb");
        assert_string_equal(file, s3);
        free(file);
    }
    out = QSNAP_OK(f, "snapshot-parent", "vm", "s3");
    assert_string_equal(out, "s2\n");
    free(out);
    daemon_counter_advances(c);
    qmp_client_free(c);
    validate_all(f, 2);

    /* s2's frozen vdb.qcow2 also backs the old branch's vdb.s2: merging would change it */
    assert_int_equal(qsnap_run(f, NULL, &errout, "snapshot-delete", "vm", "s2", NULL), 1);
    assert_non_null(strstr(errout, "another branch"));
    free(errout);
    assert_true(exists(s2) && exists(r1) && exists(s3));

    free(QSNAP_OK(f, "destroy", "vm"));
    f->daemon = -1;
    assert_int_equal(image_is(r1, "qcow2", 0x44, OFF_B), 1);
    assert_int_equal(image_is(s3, "qcow2", 0x44, OFF_B), 1);
    assert_int_equal(image_is(vdb, "qcow2", 0x22, OFF_B), 1);
    free(vdb), free(s1), free(s2), free(r1), free(s3);
}

/* Shut off: create with qemu-img, start from the rewritten command line, delete middle and active layers
 * with qemu-img commit/rebase, and boot again on the merged images. */
static void test_offline_cycle(void **state)
{
    struct fixture *f = fixture_of(state);
    struct qs_error *err = NULL;
    char *vda = path_in(f, "vda.qcow2"), *vdb = path_in(f, "vdb.qcow2");
    char *o1 = path_in(f, "vdb.o1"), *o2 = path_in(f, "vdb.o2"), *a1 = path_in(f, "vda.o1"), *a2 = path_in(f, "vda.o2");
    char *b, *x;
    struct qmp_client *c;
    struct stat st;

    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    free(QSNAP_OK(f, "attach", "vm", "--qmp", qh_vm_socket_path(f->vm)));
    free(QSNAP_OK(f, "destroy", "vm"));
    OK(qh_vm_wait_exit(f->vm, 10000, NULL, &err));

    offline_write(vdb, 0x51, OFF_A);
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "o1", "--disk-only"));
    assert_int_equal(stat(o1, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_true(exists(a1));
    b = backing_of(o1);
    assert_string_equal(b, vdb);
    free(b);
    x = snapshot_xml(f, "o1");
    assert_non_null(strstr(x, "<state>disk-snapshot</state>"));
    free(x);
    offline_write(o1, 0x52, OFF_B);
    assert_int_equal(image_is(vdb, "qcow2", 0x00, OFF_B), 1);

    /* boot from the rewritten command line: the guest's boot disk is now vda.o1 over vda.qcow2 */
    free(QSNAP_OK(f, "start", "vm"));
    c = daemon_client(f);
    daemon_counter_advances(c);
    {
        char *file = live_file(c, "vda");
        assert_string_equal(file, a1);
        free(file);
        file = live_file(c, "vdb");
        assert_string_equal(file, o1);
        free(file);
    }
    qmp_client_free(c);
    free(QSNAP_OK(f, "destroy", "vm"));
    f->daemon = -1;

    free(QSNAP_OK(f, "snapshot-create-as", "vm", "o2", "--disk-only"));
    offline_write(o2, 0x53, OFF_A);
    validate_all(f, 2);

    /* middle: o1's overlay (0x52 at B) into vdb.qcow2, vdb.o2 rebased onto it */
    free(QSNAP_OK(f, "snapshot-delete", "vm", "o1"));
    assert_false(exists(o1));
    assert_false(exists(a1));
    b = backing_of(o2);
    assert_string_equal(b, vdb);
    free(b);
    assert_int_equal(image_is(vdb, "qcow2", 0x52, OFF_B), 1);
    assert_int_equal(image_is(vdb, "qcow2", 0x51, OFF_A), 1);
    assert_int_equal(image_is(o2, "qcow2", 0x53, OFF_A), 1);
    assert_int_equal(image_is(o2, "qcow2", 0x52, OFF_B), 1);

    /* revert offline to o2: a new overlay on its frozen images */
    free(QSNAP_OK(f, "snapshot-revert", "vm", "o2"));
    {
        char *r = path_in(f, "vdb.o2-1");
        assert_true(exists(r));
        assert_int_equal(image_is(r, "qcow2", 0x51, OFF_A), 1);
        b = backing_of(r);
        assert_string_equal(b, vdb);
        free(b);
        free(r);
    }
    free(vda), free(vdb), free(o1), free(o2), free(a1), free(a2);
}

/* Shut off, a single snapshot: deleting it commits the active layers with qemu-img; the VM boots on the
 * bases again from the rewritten command line. */
static void test_offline_delete_active_and_boot(void **state)
{
    struct fixture *f = fixture_of(state);
    struct qs_error *err = NULL;
    char *vda = path_in(f, "vda.qcow2"), *vdb = path_in(f, "vdb.qcow2");
    char *ob = path_in(f, "vdb.k"), *oa = path_in(f, "vda.k");
    struct qmp_client *c;
    char *x, *want;

    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    free(QSNAP_OK(f, "attach", "vm", "--qmp", qh_vm_socket_path(f->vm)));
    free(QSNAP_OK(f, "destroy", "vm"));
    OK(qh_vm_wait_exit(f->vm, 10000, NULL, &err));
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "k", "--disk-only"));
    offline_write(ob, 0x61, OFF_A);
    free(QSNAP_OK(f, "snapshot-delete", "vm", "k"));
    assert_false(exists(ob));
    assert_false(exists(oa));
    assert_int_equal(image_is(vdb, "qcow2", 0x61, OFF_A), 1);
    x = domain_xml(f);
    want = qs_asprintf("<source file='%s'/>", vda);
    assert_non_null(strstr(x, want));
    free(want);
    free(x);
    free(QSNAP_OK(f, "start", "vm"));
    c = daemon_client(f);
    daemon_counter_advances(c);
    {
        char *file = live_file(c, "vda");
        assert_string_equal(file, vda);
        free(file);
    }
    qmp_client_free(c);
    free(vda), free(vdb), free(ob), free(oa);
}

static const struct qh_disk two_disks[] = {
    {.id = "vda", .boot = true},
    {.id = "vdb", .size = 16 * MiB},
};
static struct fixture f1 = {.cfg = &(struct qh_vm_config){.disks = two_disks, .n_disks = 2}};
static struct fixture f2 = {.cfg = &(struct qh_vm_config){.disks = two_disks, .n_disks = 2}};
static struct fixture f3 = {.cfg = &(struct qh_vm_config){.disks = two_disks, .n_disks = 2}};
static struct fixture f4 = {.cfg = &(struct qh_vm_config){.disks = two_disks, .n_disks = 2}};
static struct fixture f5 = {.cfg = &(struct qh_vm_config){.disks = two_disks, .n_disks = 2}};

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_prestate_setup_teardown(test_create_atomic_then_commit_active, setup, teardown, &f1),
        cmocka_unit_test_prestate_setup_teardown(test_failed_create_changes_nothing, setup, teardown, &f2),
        cmocka_unit_test_prestate_setup_teardown(test_middle_commit_revert_and_branch, setup, teardown, &f3),
        cmocka_unit_test_prestate_setup_teardown(test_offline_cycle, setup, teardown, &f4),
        cmocka_unit_test_prestate_setup_teardown(test_offline_delete_active_and_boot, setup, teardown, &f5),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
