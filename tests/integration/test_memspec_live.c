/* test_memspec_live.c: external snapshots with memory (--memspec) and --quiesce through the qsnap command on
 * real QEMU - create, revert (RAM counter and disk bytes), delete, failures (integration). */
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
    bool agent;   /* give the VM a guest agent channel (nobody answers on it: the guest has no agent) */
    char *tmp;    /* a directory for the agent's socket */
    char *chardev;
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
    if (f->agent) {
        static const char *extra[8];
        static struct qh_vm_config cfg;
        char tmpl[] = "/tmp/qsnap-memspec-XXXXXX";
        assert_non_null(mkdtemp(tmpl));
        f->tmp = qs_xstrdup(tmpl);
        f->chardev = qs_asprintf("socket,path=%s/qga.sock,server=on,wait=off,id=qga0", f->tmp);
        extra[0] = "-chardev";
        extra[1] = f->chardev;
        extra[2] = "-device";
        extra[3] = "virtio-serial-pci";
        extra[4] = "-device";
        extra[5] = "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0";
        extra[6] = NULL;
        cfg = *f->cfg;
        cfg.extra_args = extra;
        f->cfg = &cfg;
    }
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
    if (f->tmp) {
        char *s = qs_asprintf("%s/qga.sock", f->tmp);
        unlink(s);
        rmdir(f->tmp);
        free(s);
    }
    free(f->tmp);
    free(f->chardev);
    f->tmp = f->chardev = NULL;
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

static char *status_of(struct qmp_client *c)
{
    struct qmp_reply *r = NULL;
    struct qs_error *err = NULL;
    char *s;

    OK(qmp_client_execute(c, "query-status", NULL, &r, &err));
    s = qs_xstrdup(qmp_value_get_string(qmp_reply_value(r), "status"));
    qmp_reply_free(r);
    return s;
}

static void expect_fail(struct fixture *f, const char *want, ...)
{
    char *argv[32] = {f->qsnap, "--root", f->root};
    struct qs_proc_result res = {0};
    struct qs_error *err = NULL;
    size_t n = 3;
    va_list ap;

    va_start(ap, want);
    while ((argv[n] = va_arg(ap, char *)) != NULL && n < 30)
        n++;
    va_end(ap);
    OK(qs_proc_run(argv, 120000, 0, &res, &err));
    if (res.status != 1 || !strstr(res.errout, want))
        print_error("qsnap %s: status %d, stderr: %s (wanted '%s')\n", argv[3], res.status, res.errout, want);
    assert_int_equal(res.status, 1);
    assert_non_null(strstr(res.errout, want));
    qs_proc_result_release(&res);
}

static void assert_contains(const char *hay, const char *needle)
{
    if (!strstr(hay, needle))
        print_error("'%s' not found in:\n%s\n", needle, hay);
    assert_non_null(strstr(hay, needle));
}

/* Running VM: one pause saves RAM and switches both disks; the guest runs on; metadata as libvirt's. A revert
 * brings back the RAM (counter between the values read around the create) and the disks' bytes of that
 * instant, running as recorded; a revert --paused stays paused with the same counter. */
static void test_memspec_running_revert(void **state)
{
    struct fixture *f = fixture_of(state);
    struct qs_error *err = NULL;
    char *vdb = path_in(f, "vdb.qcow2"), *ova = path_in(f, "vda.m1"), *ovb = path_in(f, "vdb.m1");
    char *mem = path_in(f, "m1.mem"), *spec = qs_asprintf("file=%s,snapshot=external", mem);
    char *out, *x, *s, *want, *file;
    uint64_t before, after, got, again;
    struct qmp_client *c;
    struct stat st;

    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    free(QSNAP_OK(f, "attach", "vm", "--qmp", qh_vm_socket_path(f->vm)));
    disk_write(f, "vdb", 0xaa, OFF_A);
    OK(qh_vm_read_counter(f->vm, &before, &err));
    out = QSNAP_OK(f, "snapshot-create-as", "vm", "m1", "--memspec", spec);
    assert_string_equal(out, "Domain snapshot m1 created\n");
    free(out);
    OK(qh_vm_read_counter(f->vm, &after, &err));
    s = status_of(qh_vm_qmp(f->vm));
    assert_string_equal(s, "running");
    free(s);
    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    assert_int_equal(stat(mem, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_true(st.st_size > 4096);
    file = live_file(qh_vm_qmp(f->vm), "vdb");
    assert_string_equal(file, ovb);
    free(file);
    assert_true(exists(ova));

    x = snapshot_xml(f, "m1");
    assert_contains(x, "<state>running</state>");
    want = qs_asprintf("<memory snapshot='external' file='%s'/>", mem);
    assert_contains(x, want);
    free(want);
    assert_contains(x, "<disk name='vda' snapshot='external' type='file'>");
    assert_contains(x, "<disk name='vdb' snapshot='external' type='file'>");
    free(x);
    out = QSNAP_OK(f, "snapshot-info", "vm", "m1");
    assert_contains(out, "State:          running\n");
    assert_contains(out, "Location:       external\n");
    free(out);
    validate_all(f, 1);

    /* the guest moves on: new bytes, more counting */
    disk_write(f, "vdb", 0xbb, OFF_A);
    assert_int_equal(guest_reads(f, "vdb", 0xbb, OFF_A), 1);

    free(QSNAP_OK(f, "snapshot-revert", "vm", "m1", "--paused"));
    OK(qh_vm_wait_exit(f->vm, 10000, NULL, &err));
    c = daemon_client(f);
    s = status_of(c);
    assert_string_equal(s, "paused");
    free(s);
    got = daemon_counter(c);
    print_message("counter: %llu before create, %llu after, %llu after revert\n", (unsigned long long)before,
                  (unsigned long long)after, (unsigned long long)got);
    assert_true(got >= before && got <= after);
    usleep(200 * 1000);
    assert_int_equal(daemon_counter(c), got);
    file = live_file(c, "vdb");
    want = path_in(f, "vdb.m1-1");
    assert_string_equal(file, want);
    assert_int_equal(image_is(want, "qcow2", 0xaa, OFF_A), 1);
    assert_int_equal(image_is(vdb, "qcow2", 0xaa, OFF_A), 1);
    free(want);
    free(file);
    qmp_client_free(c);
    out = QSNAP_OK(f, "domstate", "vm");
    assert_string_equal(out, "paused\n\n");
    free(out);

    /* the same snapshot again, with its recorded state: running; the counter starts from the same value */
    free(QSNAP_OK(f, "snapshot-revert", "vm", "m1"));
    c = daemon_client(f);
    again = daemon_counter(c);
    assert_true(again >= got);
    s = status_of(c);
    assert_string_equal(s, "running");
    free(s);
    daemon_counter_advances(c);
    want = path_in(f, "vdb.m1-2");
    assert_int_equal(image_is(want, "qcow2", 0xaa, OFF_A), 1);
    free(want);
    qmp_client_free(c);
    validate_all(f, 1);
    free(vdb), free(ova), free(ovb), free(mem), free(spec);
}

/* Paused VM: the snapshot keeps it paused and the counter still; a revert gives back exactly that counter. */
static void test_memspec_paused_exact(void **state)
{
    struct fixture *f = fixture_of(state);
    struct qs_error *err = NULL;
    char *mem = path_in(f, "p1.mem"), *spec = qs_asprintf("file=%s", mem), *s, *x;
    uint64_t c0, c1;
    struct qmp_client *c;

    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    free(QSNAP_OK(f, "attach", "vm", "--qmp", qh_vm_socket_path(f->vm)));
    disk_write(f, "vdb", 0xc1, OFF_B);
    OK(qmp_client_execute(qh_vm_qmp(f->vm), "stop", NULL, NULL, &err));
    OK(qh_vm_read_counter(f->vm, &c0, &err));
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "p1", "--memspec", spec));
    s = QSNAP_OK(f, "domstate", "vm");
    assert_string_equal(s, "paused\n\n");
    free(s);
    usleep(200 * 1000);
    OK(qh_vm_read_counter(f->vm, &c1, &err));
    assert_int_equal(c1, c0);
    x = snapshot_xml(f, "p1");
    assert_contains(x, "<state>paused</state>");
    free(x);
    validate_all(f, 1);

    /* resume (the images come back active), change things, go back */
    OK(qmp_client_execute(qh_vm_qmp(f->vm), "cont", NULL, NULL, &err));
    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    disk_write(f, "vdb", 0xc2, OFF_B);
    free(QSNAP_OK(f, "snapshot-revert", "vm", "p1"));
    OK(qh_vm_wait_exit(f->vm, 10000, NULL, &err));
    c = daemon_client(f);
    s = status_of(c);
    assert_string_equal(s, "paused");
    free(s);
    assert_int_equal(daemon_counter(c), c0);
    s = live_file(c, "vdb");
    assert_int_equal(image_is(s, "qcow2", 0xc1, OFF_B), 1);
    free(s);
    OK(qmp_client_execute(c, "cont", NULL, NULL, &err));
    daemon_counter_advances(c);
    qmp_client_free(c);
    free(mem), free(spec);
}

/* A failing memspec create leaves nothing: no memory file, no overlay, no metadata, the VM running. */
static void test_memspec_failures(void **state)
{
    struct fixture *f = fixture_of(state);
    struct qs_error *err = NULL;
    char *ova = path_in(f, "vda.bad"), *ovb = path_in(f, "vdb.bad");
    char *missing = path_in(f, "no-such-dir/m.mem"), *there = path_in(f, "there.mem");
    char *spec1 = qs_asprintf("file=%s", missing), *spec2 = qs_asprintf("file=%s", there), *s, *dir, *blk0, *blk1;
    int fd;

    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    free(QSNAP_OK(f, "attach", "vm", "--qmp", qh_vm_socket_path(f->vm)));
    blk0 = query_block(qh_vm_qmp(f->vm));
    expect_fail(f, "does not exist", "snapshot-create-as", "vm", "bad", "--memspec", spec1, (char *)NULL);
    fd = open(there, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(qs_write_all(fd, "keep", 4), 0);
    close(fd);
    expect_fail(f, "already exists", "snapshot-create-as", "vm", "bad", "--memspec", spec2, (char *)NULL);
    expect_fail(f, "--live", "snapshot-create-as", "vm", "bad", "--memspec", spec1, "--live", (char *)NULL);
    expect_fail(f, "disk-only", "snapshot-create-as", "vm", "bad", "--memspec", spec1, "--disk-only",
                (char *)NULL);
    expect_fail(f, "guest agent channel", "snapshot-create-as", "vm", "bad", "--disk-only", "--quiesce",
                (char *)NULL);
    s = slurp(there);
    assert_string_equal(s, "keep");
    free(s);
    assert_false(exists(ova));
    assert_false(exists(ovb));
    assert_false(exists(missing));
    blk1 = query_block(qh_vm_qmp(f->vm));
    assert_string_equal(blk0, blk1);
    s = status_of(qh_vm_qmp(f->vm));
    assert_string_equal(s, "running");
    free(s);
    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    dir = qs_asprintf("%s/snapshot/vm/bad.xml", f->root);
    assert_false(exists(dir));
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
    struct fixture *f = fixture_of(state);
    struct qs_error *err = NULL;
    char *vdb = path_in(f, "vdb.qcow2"), *ovb = path_in(f, "vdb.d1"), *ova = path_in(f, "vda.d1");
    char *mem = path_in(f, "d1.mem"), *spec = qs_asprintf("file=%s", mem);
    char *mem2 = path_in(f, "d2.mem"), *spec2 = qs_asprintf("file=%s", mem2), *file;

    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    free(QSNAP_OK(f, "attach", "vm", "--qmp", qh_vm_socket_path(f->vm)));
    disk_write(f, "vdb", 0xd1, OFF_A);
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "d1", "--memspec", spec));
    disk_write(f, "vdb", 0xd2, OFF_B);
    assert_true(exists(mem) && exists(ovb) && exists(ova));
    free(QSNAP_OK(f, "snapshot-delete", "vm", "d1"));
    assert_false(exists(mem));
    assert_false(exists(ovb));
    assert_false(exists(ova));
    file = live_file(qh_vm_qmp(f->vm), "vdb");
    assert_string_equal(file, vdb);
    free(file);
    assert_int_equal(guest_reads(f, "vdb", 0xd1, OFF_A), 1);
    assert_int_equal(guest_reads(f, "vdb", 0xd2, OFF_B), 1);
    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    validate_all(f, 0);

    free(QSNAP_OK(f, "snapshot-create-as", "vm", "d2", "--memspec", spec2));
    validate_all(f, 1);
    free(QSNAP_OK(f, "snapshot-delete", "vm", "d2", "--metadata"));
    assert_true(exists(mem2));
    validate_all(f, 0);
    free(vdb), free(ovb), free(ova), free(mem), free(spec), free(mem2), free(spec2);
}

/* --quiesce with a channel but no agent in the guest: a timeout, nothing created, the VM running on. */
static void test_quiesce_no_agent(void **state)
{
    struct fixture *f = fixture_of(state);
    struct qs_error *err = NULL;
    char *ova = path_in(f, "vda.q1"), *ovb = path_in(f, "vdb.q1"), *mem = path_in(f, "q2.mem");
    char *spec = qs_asprintf("file=%s", mem), *s, *blk0, *blk1;
    int64_t t0, took;

    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    free(QSNAP_OK(f, "attach", "vm", "--qmp", qh_vm_socket_path(f->vm)));
    blk0 = query_block(qh_vm_qmp(f->vm));
    t0 = qs_now_ms();
    expect_fail(f, "did not answer", "snapshot-create-as", "vm", "q1", "--disk-only", "--quiesce", (char *)NULL);
    took = qs_now_ms() - t0;
    print_message("--quiesce without an agent failed after %lld ms\n", (long long)took);
    assert_true(took < 8000);
    expect_fail(f, "did not answer", "snapshot-create-as", "vm", "q2", "--memspec", spec, "--quiesce",
                (char *)NULL);
    assert_false(exists(ova));
    assert_false(exists(ovb));
    assert_false(exists(mem));
    blk1 = query_block(qh_vm_qmp(f->vm));
    assert_string_equal(blk0, blk1);
    s = status_of(qh_vm_qmp(f->vm));
    assert_string_equal(s, "running");
    free(s);
    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    s = QSNAP_OK(f, "snapshot-list", "vm", "--name");
    assert_string_equal(s, "\n");
    free(s);
    free(ova), free(ovb), free(mem), free(spec), free(blk0), free(blk1);
}

static const struct qh_disk two_disks[] = {
    {.id = "vda", .boot = true},
    {.id = "vdb", .size = 16 * MiB},
};
static struct fixture f1 = {.cfg = &(struct qh_vm_config){.disks = two_disks, .n_disks = 2}};
static struct fixture f2 = {.cfg = &(struct qh_vm_config){.disks = two_disks, .n_disks = 2}};
static struct fixture f3 = {.cfg = &(struct qh_vm_config){.disks = two_disks, .n_disks = 2}};
static struct fixture f4 = {.cfg = &(struct qh_vm_config){.disks = two_disks, .n_disks = 2}};
static struct fixture f5 = {.cfg = &(struct qh_vm_config){.disks = two_disks, .n_disks = 2}, .agent = true};

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_prestate_setup_teardown(test_memspec_running_revert, setup, teardown, &f1),
        cmocka_unit_test_prestate_setup_teardown(test_memspec_paused_exact, setup, teardown, &f2),
        cmocka_unit_test_prestate_setup_teardown(test_memspec_failures, setup, teardown, &f3),
        cmocka_unit_test_prestate_setup_teardown(test_memspec_delete, setup, teardown, &f4),
        cmocka_unit_test_prestate_setup_teardown(test_quiesce_no_agent, setup, teardown, &f5),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
