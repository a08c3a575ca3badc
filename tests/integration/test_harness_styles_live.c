/* test_harness_styles_live.c: the harness itself in every disk style (enum qh_style) on real QEMU, without
 * qsnap - the guest boots, writes through each disk's device land and read back (and a wrong pattern is
 * caught), QEMU restarts with the same command line, a QEMU someone else started is adopted, and the watchdog
 * kills a daemonized QEMU whose test process died (integration). What test_vmstyles_live finds is then
 * qsnap's, not the harness's. */
#include "qsnap_test.h"

#include "qs_proc.h"
#include "qs_util.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define MiB (1024u * 1024u)
#define OFF (4u * MiB)
#define LEN (64u * 1024u)

struct style_run {
    int style;
    bool relative, daemonize;
};

/* Every style once; relative paths and -daemonize each with more than one style. */
static const struct style_run runs[] = {
    {QH_STYLE_BLOCKDEV, true, false},    {QH_STYLE_DRIVE_VIRTIO, true, true},
    {QH_STYLE_DRIVE_NONE, false, false}, {QH_STYLE_DRIVE_NONE_NOID, false, true},
    {QH_STYLE_IDE, false, false},        {QH_STYLE_IDE_HD, false, false},
    {QH_STYLE_SCSI_HD, false, false},    {QH_STYLE_AHCI, false, false},
    {QH_STYLE_HDA, true, false},
};
#define N_RUNS (sizeof(runs) / sizeof(runs[0]))

static const struct qh_disk disks[] = {
    {.id = "boot", .boot = true},
    {.id = "data", .size = 16u * MiB, .qdev_id = NULL},
};

static struct qh_vm_config config_of(const struct style_run *r)
{
    return (struct qh_vm_config){.mem_mb = 64, .disks = disks, .n_disks = 2, .style = r->style,
                                 .relative_paths = r->relative, .daemonize = r->daemonize};
}

/* Both disks read what was written, and a wrong pattern is told apart. */
static void expect_written(struct qh_vm *vm)
{
    struct qs_error *err = NULL;
    struct qh_extent boot[2] = {{OFF, LEN, 0xb1}, {OFF + MiB, LEN, 0x00}};
    struct qh_extent data[3] = {{OFF, LEN, 0xd1}, {OFF + LEN, LEN, 0x00}, {0, LEN, 0x5a}};
    bool ok[3];

    assert_int_equal(qh_vm_guest_check(vm, "boot", boot, 2, ok, &err), 1);
    assert_int_equal(qh_vm_guest_check(vm, "data", data, 3, ok, &err), 0);
    assert_true(ok[0] && ok[1]);
    assert_false(ok[2]);
    assert_null(err);
}

/* Whether process PID has exited (a zombie its parent has yet to reap counts: init reaps lazily here). */
static bool proc_gone(pid_t pid)
{
    char path[64], buf[512], *p;
    FILE *fp;
    bool gone = true;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    if ((fp = fopen(path, "r"))) {
        if (fgets(buf, sizeof(buf), fp) && (p = strrchr(buf, ')')))
            gone = p[1] == ' ' && p[2] == 'Z';
        fclose(fp);
    }
    return gone;
}

/* Waits up to 10 s for PID to exit. */
static bool proc_ends(pid_t pid)
{
    for (int i = 0; i < 1000 && !proc_gone(pid); i++)
        usleep(10000);
    return proc_gone(pid);
}

/* Starts ARGV in DIR as a process that is not ours (double fork, own session), as qsnap starts QEMU. */
static void spawn_detached(char *const argv[], const char *dir)
{
    pid_t a = fork();

    assert_true(a >= 0);
    if (a == 0) {
        int nullfd = open("/dev/null", O_RDWR);
        if (fork() != 0)
            _exit(0);
        setsid();
        if (nullfd < 0 || dup2(nullfd, 0) < 0 || dup2(nullfd, 1) < 0 || dup2(nullfd, 2) < 0 || chdir(dir) < 0)
            _exit(127);
        for (int fd = 3; fd < 1024; fd++)
            close(fd);
        execvp(argv[0], argv);
        _exit(127);
    }
    assert_int_equal(waitpid(a, NULL, 0), a);
}

static void test_style(void **state)
{
    const struct style_run *r = *state;
    struct qh_vm_config cfg = config_of(r);
    struct qs_error *err = NULL;
    struct qh_vm *vm;
    char *qdev = NULL, *node = NULL, *file = NULL;
    pid_t pid;

    if (!qh_qemu_available() || !qh_guest_path())
        qt_skip_missing("qemu-system-x86_64, qemu-img or qemu-io is not in PATH, or $QSNAP_GUEST is unset");
    print_message("style %s%s%s\n", qh_style_name(r->style), r->relative ? ", relative paths" : "",
                  r->daemonize ? ", -daemonize" : "");
    vm = qh_vm_start(&cfg, &err);
    if (!vm)
        print_error("%s\n", err->message);
    assert_non_null(vm);
    OK(qh_vm_wait_counter_advancing(vm, 0, NULL, &err));
    OK(qh_vm_disk_device(vm, "data", &qdev, &node, &file, &err));
    assert_true(qs_str_has_suffix(file, "data.qcow2"));
    assert_int_equal(file[0] == '/', !r->relative);
    OK(qh_vm_guest_write(vm, "boot", 0xb1, OFF, LEN, &err));
    OK(qh_vm_guest_write(vm, "data", 0xd1, OFF, LEN, &err));
    expect_written(vm);
    /* the write went through the guest's device, not beside it: a device that is gone fails */
    assert_int_equal(qh_vm_guest_write(vm, "nosuch", 0x01, OFF, LEN, &err), -1);
    qs_error_clear(&err);

    /* the same command line again */
    OK(qh_vm_stop(vm, 0, &err));
    assert_false(qh_vm_running(vm));
    {
        struct qh_extent e = {OFF, LEN, 0xd1};
        assert_int_equal(qh_image_check_extents(qh_vm_disk_path(vm, "data"), "qcow2", &e, 1, NULL, &err), 1);
    }
    OK(qh_vm_restart(vm, false, false, &err));
    OK(qh_vm_wait_counter_advancing(vm, 0, NULL, &err));
    expect_written(vm);

    /* someone else starts it from the recorded argv; the harness takes it over */
    OK(qh_vm_stop(vm, 0, &err));
    spawn_detached(qh_vm_argv(vm), qh_vm_dir(vm));
    OK(qh_vm_adopt(vm, 20000, &err));
    pid = qh_vm_pid(vm);
    assert_true(pid > 0 && qh_vm_running(vm));
    OK(qh_vm_wait_counter_advancing(vm, 0, NULL, &err));
    expect_written(vm);
    assert_int_equal(qh_vm_adopt(vm, 1000, &err), -1); /* it still runs */
    assert_int_equal(err->code, QS_ERR_STATE);
    qs_error_clear(&err);
    OK(qh_vm_stop(vm, 0, &err));
    assert_false(qh_vm_running(vm));
    assert_true(proc_gone(pid));

    /* and once more, killed (one style is enough: it is no style's business) */
    if (r == &runs[0]) {
        spawn_detached(qh_vm_argv(vm), qh_vm_dir(vm));
        OK(qh_vm_adopt(vm, 20000, &err));
        pid = qh_vm_pid(vm);
        qh_vm_kill(vm);
        assert_false(qh_vm_running(vm));
        assert_true(proc_ends(pid));
    }
    qh_vm_free(vm);
    free(qdev), free(node), free(file);
}

/* A test process that dies without tearing down: its daemonized QEMU does not outlive it. */
static void test_watchdog(void **state)
{
    int p[2];
    pid_t child, qemu = -1;
    char dir[256] = "";
    struct qs_error *err = NULL;
    int status = 0;

    (void)state;
    if (!qh_qemu_available() || !qh_guest_path())
        qt_skip_missing("qemu-system-x86_64, qemu-img or qemu-io is not in PATH, or $QSNAP_GUEST is unset");
    assert_int_equal(pipe(p), 0);
    child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        struct qh_vm_config cfg = config_of(&runs[1]); /* drive-virtio, -daemonize */
        struct qh_vm *vm = qh_vm_start(&cfg, NULL);
        char msg[300];
        int n;
        if (!vm)
            _exit(1);
        n = snprintf(msg, sizeof(msg), "%d %s", (int)qh_vm_pid(vm), qh_vm_dir(vm));
        (void)!write(p[1], msg, (size_t)n);
        _exit(0); /* no qh_vm_free: as if the test crashed */
    }
    close(p[1]);
    {
        char msg[300] = "";
        ssize_t n = read(p[0], msg, sizeof(msg) - 1);
        int q = -1;
        assert_true(n > 0);
        msg[n] = '\0';
        assert_int_equal(sscanf(msg, "%d %255s", &q, dir), 2);
        qemu = q;
    }
    close(p[0]);
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_true(qemu > 0);
    if (!proc_ends(qemu)) {
        kill(qemu, SIGKILL);
        fail_msg("the daemonized qemu (pid %d) outlived its test process", (int)qemu);
    }
    {
        char *argv[] = {"rm", "-rf", dir, NULL};
        struct qs_proc_result res = {0};
        OK(qs_proc_run(argv, 30000, 0, &res, &err));
        qs_proc_result_release(&res);
    }
}

/* A QEMU someone else started from the VM's argv and the test never adopted (it failed first) dies with the
 * VM's teardown. */
static void test_stray(void **state)
{
    struct qh_vm_config cfg = config_of(&runs[0]);
    struct qs_error *err = NULL;
    struct qmp_client *c;
    struct qh_vm *vm;
    pid_t pid;

    (void)state;
    if (!qh_qemu_available() || !qh_guest_path())
        qt_skip_missing("qemu-system-x86_64, qemu-img or qemu-io is not in PATH, or $QSNAP_GUEST is unset");
    vm = qh_vm_start(&cfg, &err);
    assert_non_null(vm);
    OK(qh_vm_stop(vm, 0, &err));
    spawn_detached(qh_vm_argv(vm), qh_vm_dir(vm));
    c = qmp_client_connect(qh_vm_harness_socket_path(vm), NULL, &err);
    assert_non_null(c);
    pid = qmp_client_peer_pid(c);
    qmp_client_free(c);
    assert_true(pid > 0 && !proc_gone(pid));
    qh_vm_free(vm);
    assert_true(proc_ends(pid));
}

static void test_names(void **state)
{
    (void)state;
    for (int s = 0; s < QH_STYLE_LAST; s++)
        assert_int_equal(qh_style_from_name(qh_style_name(s)), s);
    assert_null(qh_style_name(QH_STYLE_LAST));
    assert_int_equal(qh_style_from_name("nosuch"), -1);
    assert_string_equal(qh_style_name(QH_STYLE_BLOCKDEV), "blockdev");
}

int main(void)
{
    static struct CMUnitTest tests[N_RUNS + 3];
    static char names[N_RUNS][64];
    size_t n = 0;

    tests[n++] = (struct CMUnitTest){"names", test_names, NULL, NULL, NULL};
    for (size_t i = 0; i < N_RUNS; i++) {
        snprintf(names[i], sizeof(names[i]), "%s%s%s", qh_style_name(runs[i].style),
                 runs[i].relative ? "_relative" : "", runs[i].daemonize ? "_daemonize" : "");
        tests[n++] = (struct CMUnitTest){names[i], test_style, NULL, NULL, (void *)&runs[i]};
    }
    tests[n++] = (struct CMUnitTest){"watchdog", test_watchdog, NULL, NULL, NULL};
    tests[n++] = (struct CMUnitTest){"stray", test_stray, NULL, NULL, NULL};
    return _cmocka_run_group_tests("harness_styles", tests, n, NULL, NULL);
}
