/* test_save_restore_live.c: qsnap save / restore on real QEMU, checked from the guest's side (integration). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "qemu_harness.h"
#include "qmp.h"
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
#define OFF_A (1u * MiB)
#define LEN (64u * 1024u)

struct fixture {
    const struct qh_vm_config *cfg;
    struct qh_vm *vm;
    char *root;   /* qsnap --root */
    char *qsnap;  /* the binary */
    char *file;   /* the save file */
    pid_t daemon; /* a QEMU qsnap started (not the harness's child), killed at teardown */
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

/* Runs qsnap --root ROOT ARGS... (NULL-terminated); its exit status, stdout and stderr (caller frees). */
static int qsnap_vrun(struct fixture *f, char **out, char **errout, va_list ap)
{
    char *argv[32] = {f->qsnap, "--root", f->root};
    struct qs_proc_result res = {0};
    struct qs_error *err = NULL;
    size_t n = 3;
    int status;

    while ((argv[n] = va_arg(ap, char *)) != NULL && n < 30)
        n++;
    check_(qs_proc_run(argv, 120000, 0, &res, &err), &err, "qsnap", __FILE__, __LINE__);
    *out = res.out;
    *errout = res.errout;
    status = res.status;
    return status;
}

static int qsnap_run(struct fixture *f, char **out, char **errout, ...)
{
    va_list ap;
    int r;

    va_start(ap, errout);
    r = qsnap_vrun(f, out, errout, ap);
    va_end(ap);
    return r;
}

/* Runs qsnap and requires success; returns stdout (caller frees). */
#define QSNAP_OK(f, ...) qsnap_ok_(f, __FILE__, __LINE__, __VA_ARGS__, (char *)NULL)
static char *qsnap_ok_(struct fixture *f, const char *file, int line, ...)
{
    char *out = NULL, *errout = NULL;
    va_list ap;
    int r;

    va_start(ap, line);
    r = qsnap_vrun(f, &out, &errout, ap);
    va_end(ap);
    if (r != 0) {
        print_error("%s:%d: qsnap failed (%d): %s\n", file, line, r, errout);
        _fail(file, line);
    }
    free(errout);
    return out;
}

static void expect_out(struct fixture *f, const char *want, const char *cmd, const char *a1, const char *a2)
{
    char *out = QSNAP_OK(f, cmd, a1, a2);
    assert_string_equal(out, want);
    free(out);
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
    f->file = qs_asprintf("%s/vm.save", qh_vm_dir(f->vm));
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
    free(f->file);
    f->vm = NULL;
    f->root = f->qsnap = f->file = NULL;
    return 0;
}

static struct fixture *fixture_of(void **state)
{
    struct fixture *f = *state;
    if (!f->vm)
        skip();
    return f;
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

static void assert_status(struct qmp_client *c, const char *want)
{
    char *s = status_of(c);
    assert_string_equal(s, want);
    free(s);
}

/* The guest counter through any QMP client (the harness's reader needs the harness's QEMU). */
static uint64_t counter_of(struct qmp_client *c)
{
    struct qs_error *err = NULL;
    unsigned long long lo = 0, hi = 0, magic = 0;
    char hmp[64], *text = NULL;

    snprintf(hmp, sizeof(hmp), "xp /3wx 0x%x", QH_COUNTER_ADDR);
    OK(qmp_client_hmp(c, hmp, &text, &err));
    assert_int_equal(sscanf(text, "%*x: %llx %llx %llx", &lo, &hi, &magic), 3);
    assert_int_equal(magic, QH_COUNTER_MAGIC);
    free(text);
    return (hi << 32) | lo;
}

/* Connects to the QEMU qsnap restored (the domain's socket) and remembers its pid for teardown. */
static struct qmp_client *connect_restored(struct fixture *f)
{
    struct qs_error *err = NULL;
    struct qmp_client *c = NULL;

    OK((c = qmp_client_connect(qh_vm_socket_path(f->vm), NULL, &err)) ? 0 : -1);
    f->daemon = qmp_client_peer_pid(c);
    assert_true(f->daemon > 0);
    return c;
}

static void destroy_restored(struct fixture *f)
{
    free(QSNAP_OK(f, "destroy", "vm"));
    f->daemon = -1;
}

static int image_is(struct fixture *f, const char *id, uint8_t pattern, uint64_t off)
{
    struct qs_error *err = NULL;
    int r = qh_image_check(qh_vm_disk_path(f->vm, id), "qcow2", pattern, off, LEN, &err);
    check_(r, &err, "image check", __FILE__, __LINE__);
    return r;
}

/* Save a paused VM: QEMU exits, the file is private, the disk has what was written; restore: the counter
 * is exactly where it was, the guest stays paused as saved, then runs on. */
static void test_save_restore_paused(void **state)
{
    struct fixture *f = fixture_of(state);
    struct qs_error *err = NULL;
    struct qmp_client *c = NULL;
    struct stat st;
    uint64_t c0, c1;
    int64_t t0, t_save, t_restore;
    char *want;

    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    free(QSNAP_OK(f, "attach", "vm", "--qmp", qh_vm_socket_path(f->vm)));
    OK(qh_vm_disk_write(f->vm, "vdb", 0xa5, OFF_A, LEN, &err));
    OK(qmp_client_execute(qh_vm_qmp(f->vm), "stop", NULL, NULL, &err));
    OK(qh_vm_read_counter(f->vm, &c0, &err));
    assert_true(c0 > 0);

    t0 = qs_now_ms();
    want = qs_asprintf("\nDomain 'vm' saved to %s\n\n", f->file);
    expect_out(f, want, "save", "vm", f->file);
    free(want);
    t_save = qs_now_ms() - t0;
    OK(qh_vm_wait_exit(f->vm, 10000, NULL, &err));
    assert_int_equal(stat(f->file, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_true(st.st_size > 4096);
    expect_out(f, "shut off\n\n", "domstate", "vm", NULL);
    assert_int_equal(image_is(f, "vdb", 0xa5, OFF_A), 1);

    t0 = qs_now_ms();
    want = qs_asprintf("Domain restored from %s\n\n", f->file);
    expect_out(f, want, "restore", f->file, NULL);
    free(want);
    t_restore = qs_now_ms() - t0;
    print_message("128 MiB guest: qsnap save %lld ms, qsnap restore %lld ms, file %lld bytes\n",
                  (long long)t_save, (long long)t_restore, (long long)st.st_size);
    expect_out(f, "paused\n\n", "domstate", "vm", NULL); /* before our client takes the monitor */
    c = connect_restored(f);
    assert_status(c, "paused");
    assert_int_equal(counter_of(c), c0);
    assert_int_equal(image_is(f, "vdb", 0xa5, OFF_A), 1);
    OK(qmp_client_execute(c, "cont", NULL, NULL, &err));
    usleep(200 * 1000);
    c1 = counter_of(c);
    assert_true(c1 > c0);
    qmp_client_free(c);
    destroy_restored(f);
}

/* Save a running VM: it is recorded as running, restore --paused overrides that, then save again from the
 * restored QEMU and restore with the recorded state (running). */
static void test_save_running_and_flags(void **state)
{
    struct fixture *f = fixture_of(state);
    struct qs_error *err = NULL;
    struct qmp_client *c = NULL;
    uint64_t before, got, again;
    char *s;

    OK(qh_vm_wait_counter_advancing(f->vm, 0, &before, &err));
    free(QSNAP_OK(f, "attach", "vm", "--qmp", qh_vm_socket_path(f->vm)));
    free(QSNAP_OK(f, "save", "vm", f->file));
    OK(qh_vm_wait_exit(f->vm, 10000, NULL, &err));
    free(QSNAP_OK(f, "restore", f->file, "--paused"));
    c = connect_restored(f);
    assert_status(c, "paused");
    got = counter_of(c);
    assert_true(got >= before);
    usleep(100 * 1000);
    assert_int_equal(counter_of(c), got); /* paused really */
    qmp_client_free(c);

    /* the restored QEMU saves like any other; the file is replaced */
    free(QSNAP_OK(f, "save", "vm", f->file, "--running"));
    expect_out(f, "shut off\n\n", "domstate", "vm", NULL);
    f->daemon = -1;
    free(QSNAP_OK(f, "restore", f->file));
    c = connect_restored(f);
    s = status_of(c);
    assert_string_equal(s, "running");
    free(s);
    usleep(100 * 1000);
    again = counter_of(c);
    assert_true(again > got);
    qmp_client_free(c);

    /* restoring over a running domain is refused */
    {
        char *out = NULL, *errout = NULL;
        assert_int_equal(qsnap_run(f, &out, &errout, "restore", f->file, (char *)NULL), 1);
        assert_non_null(strstr(errout, "already active"));
        free(out);
        free(errout);
    }
    destroy_restored(f);
}

/* A save that cannot write its file leaves the VM running, untouched; a garbage or truncated file is refused,
 * the garbage one before any QEMU starts. */
static void test_failures_change_nothing(void **state)
{
    struct fixture *f = fixture_of(state);
    struct qs_error *err = NULL;
    char *out = NULL, *errout = NULL, *bad = NULL, *cut = NULL;
    uint64_t c0, c1;
    int fd;

    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    free(QSNAP_OK(f, "attach", "vm", "--qmp", qh_vm_socket_path(f->vm)));

    bad = qs_asprintf("%s/no-such-dir/vm.save", qh_vm_dir(f->vm));
    assert_int_equal(qsnap_run(f, &out, &errout, "save", "vm", bad, (char *)NULL), 1);
    assert_non_null(strstr(errout, "cannot create"));
    assert_non_null(strstr(errout, "No such file or directory"));
    free(out);
    free(errout);
    assert_true(qh_vm_running(f->vm));
    assert_status(qh_vm_qmp(f->vm), "running");
    OK(qh_vm_read_counter(f->vm, &c0, &err));
    usleep(100 * 1000);
    OK(qh_vm_read_counter(f->vm, &c1, &err));
    assert_true(c1 > c0);
    expect_out(f, "running\n\n", "domstate", "vm", NULL);

    /* --running and --paused together: a usage error */
    assert_int_equal(qsnap_run(f, &out, &errout, "save", "vm", f->file, "--running", "--paused", (char *)NULL), 2);
    free(out);
    free(errout);
    assert_status(qh_vm_qmp(f->vm), "running");

    /* a good save, then a garbage file and a truncated copy */
    free(QSNAP_OK(f, "save", "vm", f->file));
    OK(qh_vm_wait_exit(f->vm, 10000, NULL, &err));
    free(bad);
    bad = qs_asprintf("%s/garbage.save", qh_vm_dir(f->vm));
    fd = open(bad, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(qs_write_all(fd, "QEVM this is not a save file at all\n", 36), 0);
    close(fd);
    assert_int_equal(qsnap_run(f, &out, &errout, "restore", bad, (char *)NULL), 1);
    assert_non_null(strstr(errout, "is not a qsnap saved state file"));
    free(out);
    free(errout);
    expect_out(f, "shut off\n\n", "domstate", "vm", NULL);

    cut = qs_asprintf("%s/cut.save", qh_vm_dir(f->vm));
    {
        /* header and the stream's first 64 KiB */
        char buf[65536];
        int in = open(f->file, O_RDONLY | O_CLOEXEC), outfd;
        ssize_t n;
        size_t total = 0;
        assert_true(in >= 0);
        outfd = open(cut, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        assert_true(outfd >= 0);
        while (total < 5 * 4096 + sizeof(buf) && (n = read(in, buf, sizeof(buf))) > 0) {
            assert_int_equal(qs_write_all(outfd, buf, (size_t)n), 0);
            total += (size_t)n;
        }
        close(in);
        close(outfd);
    }
    assert_int_equal(qsnap_run(f, &out, &errout, "restore", cut, (char *)NULL), 1);
    assert_non_null(strstr(errout, "cannot restore domain 'vm'"));
    free(out);
    free(errout);
    expect_out(f, "shut off\n\n", "domstate", "vm", NULL);

    /* the good file still works after all that */
    free(QSNAP_OK(f, "restore", f->file, "--paused"));
    {
        struct qmp_client *c = connect_restored(f);
        assert_status(c, "paused");
        qmp_client_free(c);
    }
    destroy_restored(f);
    free(bad);
    free(cut);
}

static const struct qh_disk two_disks[] = {
    {.id = "vda", .boot = true},
    {.id = "vdb", .size = 16 * MiB},
};
static struct fixture f1 = {.cfg = &(struct qh_vm_config){.disks = two_disks, .n_disks = 2}};
static struct fixture f2 = {.cfg = &(struct qh_vm_config){.disks = two_disks, .n_disks = 2}};
static struct fixture f3 = {.cfg = &(struct qh_vm_config){.disks = two_disks, .n_disks = 2}};

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_prestate_setup_teardown(test_save_restore_paused, setup, teardown, &f1),
        cmocka_unit_test_prestate_setup_teardown(test_save_running_and_flags, setup, teardown, &f2),
        cmocka_unit_test_prestate_setup_teardown(test_failures_change_nothing, setup, teardown, &f3),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
