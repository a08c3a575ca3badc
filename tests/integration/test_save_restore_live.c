/* test_save_restore_live.c: qsnap save / restore on real QEMU, checked from the guest's side (integration). */
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
#define OFF_A (1u * MiB)

static void expect_out(struct qt_fixture *f, const char *want, const char *cmd, const char *a1, const char *a2)
{
    char *out = QSNAP_OK(f, cmd, a1, a2);
    assert_string_equal(out, want);
    free(out);
}

/* Connects to the QEMU qsnap restored (the domain's socket) and remembers its pid for teardown. */
static struct qmp_client *connect_restored(struct qt_fixture *f)
{
    struct qmp_client *c = qt_daemon_client(f);
    assert_true(f->daemon > 0);
    return c;
}

static void destroy_restored(struct qt_fixture *f)
{
    free(QSNAP_OK(f, "destroy", "vm"));
    f->daemon = -1;
}

/* The save file, in the VM's directory. Caller frees. */
static char *save_file(struct qt_fixture *f)
{
    return qt_path_in(f, "vm.save");
}

/* Save a paused VM: QEMU exits, the file is private, the disk has what was written; restore: the counter
 * is exactly where it was, the guest stays paused as saved, then runs on. */
static void test_save_restore_paused(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    char *file = save_file(f);
    struct qs_error *err = NULL;
    struct qmp_client *c = NULL;
    struct stat st;
    uint64_t c0, c1;
    int64_t t0, t_save, t_restore;
    char *want;

    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    qt_attach(f);
    qt_disk_write(f, "vdb", 0xa5, OFF_A);
    OK(qmp_client_execute(qh_vm_qmp(f->vm), "stop", NULL, NULL, &err));
    OK(qh_vm_read_counter(f->vm, &c0, &err));
    assert_true(c0 > 0);

    t0 = qs_now_ms();
    want = qs_asprintf("\nDomain 'vm' saved to %s\n\n", file);
    expect_out(f, want, "save", "vm", file);
    free(want);
    t_save = qs_now_ms() - t0;
    OK(qh_vm_wait_exit(f->vm, 10000, NULL, &err));
    assert_int_equal(stat(file, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_true(st.st_size > 4096);
    expect_out(f, "shut off\n\n", "domstate", "vm", NULL);
    assert_int_equal(qt_image_is(qh_vm_disk_path(f->vm, "vdb"), "qcow2", 0xa5, OFF_A), 1);

    t0 = qs_now_ms();
    want = qs_asprintf("Domain restored from %s\n\n", file);
    expect_out(f, want, "restore", file, NULL);
    free(want);
    t_restore = qs_now_ms() - t0;
    print_message("128 MiB guest: qsnap save %lld ms, qsnap restore %lld ms, file %lld bytes\n",
                  (long long)t_save, (long long)t_restore, (long long)st.st_size);
    expect_out(f, "paused\n\n", "domstate", "vm", NULL); /* before our client takes the monitor */
    c = connect_restored(f);
    qt_assert_status(c, "paused");
    assert_int_equal(qt_client_counter(c, true), c0);
    assert_int_equal(qt_image_is(qh_vm_disk_path(f->vm, "vdb"), "qcow2", 0xa5, OFF_A), 1);
    OK(qmp_client_execute(c, "cont", NULL, NULL, &err));
    usleep(200 * 1000);
    c1 = qt_client_counter(c, true);
    assert_true(c1 > c0);
    qmp_client_free(c);
    destroy_restored(f);
    free(file);
}

/* Save a running VM: it is recorded as running, restore --paused overrides that, then save again from the
 * restored QEMU and restore with the recorded state (running). */
static void test_save_running_and_flags(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    char *file = save_file(f);
    struct qs_error *err = NULL;
    struct qmp_client *c = NULL;
    uint64_t before, got, again;
    char *s;

    OK(qh_vm_wait_counter_advancing(f->vm, 0, &before, &err));
    qt_attach(f);
    free(QSNAP_OK(f, "save", "vm", file));
    OK(qh_vm_wait_exit(f->vm, 10000, NULL, &err));
    free(QSNAP_OK(f, "restore", file, "--paused"));
    c = connect_restored(f);
    qt_assert_status(c, "paused");
    got = qt_client_counter(c, true);
    assert_true(got >= before);
    usleep(100 * 1000);
    assert_int_equal(qt_client_counter(c, true), got); /* paused really */
    qmp_client_free(c);

    /* the restored QEMU saves like any other, and the file is replaced: run it on, save it paused at a
     * counter the first state never had, and that exact counter comes back (the old file would give 'got') */
    {
        uint64_t mid, back;
        c = connect_restored(f);
        qt_exec(c, "cont");
        for (int i = 0; i < 600 && (mid = qt_client_counter(c, true)) <= got; i++)
            usleep(50 * 1000);
        assert_true(mid > got);
        qmp_client_free(c);
        free(QSNAP_OK(f, "save", "vm", file, "--paused"));
        expect_out(f, "shut off\n\n", "domstate", "vm", NULL);
        f->daemon = -1;
        free(QSNAP_OK(f, "restore", file)); /* paused: the file says so */
        c = connect_restored(f);
        qt_assert_status(c, "paused");
        back = qt_client_counter(c, true);
        print_message("counter %llu at the first save, %llu before the second, %llu restored\n",
                      (unsigned long long)got, (unsigned long long)mid, (unsigned long long)back);
        assert_true(back >= mid);
        qmp_client_free(c);
        got = back;
    }
    free(QSNAP_OK(f, "save", "vm", file, "--running"));
    expect_out(f, "shut off\n\n", "domstate", "vm", NULL);
    f->daemon = -1;
    free(QSNAP_OK(f, "restore", file));
    c = connect_restored(f);
    s = qt_status_of(c);
    assert_string_equal(s, "running");
    free(s);
    usleep(100 * 1000);
    again = qt_client_counter(c, true);
    assert_true(again > got);
    qmp_client_free(c);

    /* restoring over a running domain is refused */
    {
        char *out = NULL, *errout = NULL;
        assert_int_equal(qt_qsnap_run(f, &out, &errout, "restore", file, (char *)NULL), 1);
        assert_non_null(strstr(errout, "already active"));
        free(out);
        free(errout);
    }
    destroy_restored(f);
    free(file);
}

/* A save that cannot write its file leaves the VM running, untouched; a garbage or truncated file is refused,
 * the garbage one before any QEMU starts. */
static void test_failures_change_nothing(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    char *file = save_file(f);
    struct qs_error *err = NULL;
    char *out = NULL, *errout = NULL, *bad = NULL, *cut = NULL;
    uint64_t c0, c1;
    int fd;

    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    qt_attach(f);

    bad = qs_asprintf("%s/no-such-dir/vm.save", qh_vm_dir(f->vm));
    assert_int_equal(qt_qsnap_run(f, &out, &errout, "save", "vm", bad, (char *)NULL), 1);
    assert_non_null(strstr(errout, "cannot create"));
    assert_non_null(strstr(errout, "No such file or directory"));
    free(out);
    free(errout);
    assert_true(qh_vm_running(f->vm));
    qt_assert_status(qh_vm_qmp(f->vm), "running");
    OK(qh_vm_read_counter(f->vm, &c0, &err));
    usleep(100 * 1000);
    OK(qh_vm_read_counter(f->vm, &c1, &err));
    assert_true(c1 > c0);
    expect_out(f, "running\n\n", "domstate", "vm", NULL);

    /* --running and --paused together: a usage error */
    assert_int_equal(qt_qsnap_run(f, &out, &errout, "save", "vm", file, "--running", "--paused", (char *)NULL), 2);
    free(out);
    free(errout);
    qt_assert_status(qh_vm_qmp(f->vm), "running");

    /* a good save, then a garbage file and a truncated copy */
    free(QSNAP_OK(f, "save", "vm", file));
    OK(qh_vm_wait_exit(f->vm, 10000, NULL, &err));
    free(bad);
    bad = qs_asprintf("%s/garbage.save", qh_vm_dir(f->vm));
    fd = open(bad, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(qs_write_all(fd, "QEVM this is not a save file at all\n", 36), 0);
    close(fd);
    assert_int_equal(qt_qsnap_run(f, &out, &errout, "restore", bad, (char *)NULL), 1);
    assert_non_null(strstr(errout, "is not a qsnap saved state file"));
    free(out);
    free(errout);
    expect_out(f, "shut off\n\n", "domstate", "vm", NULL);

    cut = qs_asprintf("%s/cut.save", qh_vm_dir(f->vm));
    {
        /* header and the stream's first 64 KiB */
        char buf[65536];
        int in = open(file, O_RDONLY | O_CLOEXEC), outfd;
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
    assert_int_equal(qt_qsnap_run(f, &out, &errout, "restore", cut, (char *)NULL), 1);
    assert_non_null(strstr(errout, "cannot restore domain 'vm'"));
    free(out);
    free(errout);
    expect_out(f, "shut off\n\n", "domstate", "vm", NULL);

    /* the good file still works after all that */
    free(QSNAP_OK(f, "restore", file, "--paused"));
    {
        struct qmp_client *c = connect_restored(f);
        qt_assert_status(c, "paused");
        qmp_client_free(c);
    }
    destroy_restored(f);
    free(bad);
    free(cut);
    free(file);
}

static struct qt_fixture f1 = {.cfg = &qt_cfg_two_disks};
static struct qt_fixture f2 = {.cfg = &qt_cfg_two_disks};
static struct qt_fixture f3 = {.cfg = &qt_cfg_two_disks};

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_prestate_setup_teardown(test_save_restore_paused, qt_setup, qt_teardown, &f1),
        cmocka_unit_test_prestate_setup_teardown(test_save_running_and_flags, qt_setup, qt_teardown, &f2),
        cmocka_unit_test_prestate_setup_teardown(test_failures_change_nothing, qt_setup, qt_teardown, &f3),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
