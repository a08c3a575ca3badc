/* test_qmp_live.c: the QMP client against real QEMU running the counter guest (label integration). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "qemu_harness.h"
#include "qmp.h"
#include "qs_util.h"
#include "qt_skip.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* One VM per test: a test's state is a fixture whose cfg is given as the cmocka prestate. */
struct fixture {
    const struct qh_vm_config *cfg;
    struct qh_vm *vm;
    struct qmp_client *c; /* the test's own client on qh_vm_socket_path() */
    int64_t started_ms;
};

static void fail_on_error_(int rc, struct qs_error **err, const char *what, const char *file, int line)
{
    if (rc < 0 || *err) {
        print_error("%s:%d: %s: %s (%s)\n", file, line, what, *err ? (*err)->message : "no error set",
                    *err ? qs_error_code_name((*err)->code) : "-");
        qs_error_clear(err);
        _fail(file, line);
    }
}
/* Runs CALL (which must use &err) and fails the test with the error's message when it fails. */
#define OK(call) fail_on_error_((call), &err, #call, __FILE__, __LINE__)
#define OKP(call) fail_on_error_((call) ? 0 : -1, &err, #call, __FILE__, __LINE__)
/* Runs CALL and expects it to fail with CODE; the error is left in err for more checks. */
#define FAILS(call, want_code)                                                                              \
    do {                                                                                               \
        qs_error_clear(&err);                                                                          \
        assert_true((call) < 0);                                                                       \
        assert_non_null(err);                                                                          \
        if (err->code != (want_code))                                                                       \
            print_error("unexpected error: %s (%s)\n", err->message, qs_error_code_name(err->code));  \
        assert_int_equal(err->code, (want_code));                                                         \
    } while (0)

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static int vm_setup(void **state)
{
    struct fixture *f = *state;
    struct qs_error *err = NULL;

    if (!qh_qemu_available())
        return 0; /* the test skips */
    f->started_ms = qs_now_ms();
    if (!(f->vm = qh_vm_start(f->cfg, &err))) {
        print_error("cannot start qemu: %s\n", err->message);
        qs_error_free(err);
        return -1;
    }
    if (!(f->c = qmp_client_connect(qh_vm_socket_path(f->vm), NULL, &err))) {
        print_error("cannot connect to '%s': %s\n", qh_vm_socket_path(f->vm), err->message);
        qs_error_free(err);
        return -1;
    }
    return 0;
}

static int vm_teardown(void **state)
{
    struct fixture *f = *state;
    struct qs_error *err = NULL;

    qmp_client_free(f->c);
    f->c = NULL;
    if (f->vm && qh_vm_stop(f->vm, 0, &err) < 0) {
        print_error("teardown: %s\n", err->message);
        qs_error_free(err);
    }
    if (f->vm)
        print_message("    (qemu up %" PRId64 " ms in total)\n", qs_now_ms() - f->started_ms);
    qh_vm_free(f->vm);
    f->vm = NULL;
    return 0;
}

static struct fixture *fixture_of(void **state)
{
    struct fixture *f = *state;
    if (!f->vm)
        qt_skip_missing("qemu-system-x86_64, qemu-img or qemu-io is not in PATH");
    return f;
}

/* "running", "paused", "restore-vm", ... of query-status. Caller frees. */
static char *vm_status(struct qmp_client *c)
{
    struct qs_error *err = NULL;
    struct qmp_reply *r = NULL;
    char *s;

    OK(qmp_client_execute(c, "query-status", NULL, &r, &err));
    assert_non_null(qmp_value_get_string(qmp_reply_value(r), "status"));
    s = qs_xstrdup(qmp_value_get_string(qmp_reply_value(r), "status"));
    qmp_reply_free(r);
    return s;
}

static void assert_status(struct qmp_client *c, const char *want)
{
    char *s = vm_status(c);
    if (strcmp(s, want) != 0)
        print_error("vm status '%s', expected '%s'\n", s, want);
    assert_string_equal(s, want);
    free(s);
}

static void run_simple(struct qmp_client *c, const char *command)
{
    struct qs_error *err = NULL;
    OK(qmp_client_execute(c, command, NULL, NULL, &err));
}

static struct qmp_args *snapshot_args(const char *job_id, const char *tag)
{
    struct qmp_args *a = qmp_args_new();
    qmp_args_set_str(a, "job-id", job_id);
    qmp_args_set_str(a, "tag", tag);
    qmp_args_set_str(a, "vmstate", "vda");
    qmp_args_push_str(qmp_args_set_list(a, "devices"), "vda");
    return a;
}

/* vm-state-size of internal snapshot TAG on node NODE, or -1 when the node has no such snapshot. */
static int64_t snapshot_vmstate_size(struct qmp_client *c, const char *node, const char *tag)
{
    struct qs_error *err = NULL;
    struct qmp_reply *r = NULL;
    int64_t size = -1;

    OK(qmp_client_execute(c, "query-named-block-nodes", NULL, &r, &err));
    for (size_t i = 0; i < qmp_value_array_len(qmp_reply_value(r)); i++) {
        const struct qmp_value *n = qmp_value_array_at(qmp_reply_value(r), i);
        const struct qmp_value *snaps = qmp_value_path(n, "image.snapshots");
        if (!qs_str_equal(qmp_value_get_string(n, "node-name"), node))
            continue;
        for (size_t j = 0; j < qmp_value_array_len(snaps); j++) {
            const struct qmp_value *s = qmp_value_array_at(snaps, j);
            if (qs_str_equal(qmp_value_get_string(s, "name"), tag))
                assert_true(qmp_value_int(qmp_value_get(s, "vm-state-size"), &size));
        }
    }
    qmp_reply_free(r);
    return size;
}

/* ---------------------------------------------------------------------------------------------------
 * Tests.
 */

static void test_handshake_version(void **state)
{
    struct fixture *f = fixture_of(state);
    struct qs_error *err = NULL;
    struct qmp_reply *r = NULL;
    struct qmp_client *second = NULL;
    struct qmp_options quick = {.connect_timeout_ms = 500};
    int major = -1, minor = -1, micro = -1;
    int64_t qmajor = -2, qminor = -2, qmicro = -2;
    char *expect;

    qmp_client_version_num(f->c, &major, &minor, &micro);
    print_message("    qemu %s (%s)\n", qmp_client_version(f->c), qmp_client_package(f->c));
    assert_true(major >= 6); /* snapshot-save/-load/-delete jobs exist since 6.0 */
    assert_true(minor >= 0 && micro >= 0);
    expect = qs_asprintf("%d.%d.%d", major, minor, micro);
    assert_string_equal(qmp_client_version(f->c), expect);
    free(expect);
    assert_non_null(qmp_client_package(f->c));
    assert_int_equal(qmp_client_peer_pid(f->c), qh_vm_pid(f->vm));

    /* the greeting agrees with query-version */
    OK(qmp_client_execute(f->c, "query-version", NULL, &r, &err));
    assert_true(qmp_value_int(qmp_value_path(qmp_reply_value(r), "qemu.major"), &qmajor));
    assert_true(qmp_value_int(qmp_value_path(qmp_reply_value(r), "qemu.minor"), &qminor));
    assert_true(qmp_value_int(qmp_value_path(qmp_reply_value(r), "qemu.micro"), &qmicro));
    assert_int_equal(qmajor, major);
    assert_int_equal(qminor, minor);
    assert_int_equal(qmicro, micro);
    qmp_reply_free(r);

    /* an unknown command is a QEMU error with its class, and the client stays usable */
    FAILS(qmp_client_execute(f->c, "no-such-command", NULL, NULL, &err), QS_ERR_QEMU);
    assert_non_null(err->qmp_class);
    assert_string_equal(err->qmp_class, "CommandNotFound");
    qs_error_clear(&err);
    assert_status(f->c, "running");

    /* QEMU does not refuse a second client on a busy monitor: it just never greets it */
    second = qmp_client_connect(qh_vm_socket_path(f->vm), &quick, &err);
    assert_null(second);
    assert_non_null(err);
    assert_true(err->code == QS_ERR_BUSY || err->code == QS_ERR_TIMEOUT);
    qs_error_clear(&err);
    assert_status(f->c, "running");
}

static void test_query_status(void **state)
{
    struct fixture *f = fixture_of(state);
    struct qs_error *err = NULL;
    struct qmp_reply *r = NULL;
    bool running = false;

    OK(qmp_client_execute(f->c, "query-status", NULL, &r, &err));
    assert_string_equal(qmp_value_get_string(qmp_reply_value(r), "status"), "running");
    assert_true(qmp_value_bool(qmp_value_get(qmp_reply_value(r), "running"), &running));
    assert_true(running);
    qmp_reply_free(r);
}

static void test_stop_cont_events(void **state)
{
    struct fixture *f = fixture_of(state);
    struct qs_error *err = NULL;
    struct qmp_event *ev = NULL;
    uint64_t v1 = 0, v2 = 0;

    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    qmp_client_event_clear(f->c);

    /* STOP comes before the reply: it must be queued, not mistaken for the reply */
    run_simple(f->c, "stop");
    OK(qmp_client_event_wait(f->c, "STOP", NULL, NULL, 5000, &ev, &err));
    assert_string_equal(qmp_event_name(ev), "STOP");
    assert_true(qmp_event_timestamp_us(ev) > 0);
    qmp_event_free(ev);
    ev = NULL;
    assert_status(f->c, "paused");

    /* paused means the guest really does not run */
    OK(qh_vm_read_counter(f->vm, &v1, &err));
    sleep_ms(200);
    OK(qh_vm_read_counter(f->vm, &v2, &err));
    assert_true(v1 == v2);

    run_simple(f->c, "cont");
    OK(qmp_client_event_wait(f->c, "RESUME", NULL, NULL, 5000, &ev, &err));
    qmp_event_free(ev);
    assert_status(f->c, "running");
    OK(qh_vm_wait_counter_advancing(f->vm, 0, &v2, &err));
    assert_true(v2 > v1);
}

/* snapshot-save driven by hand: every JOB_STATUS_CHANGE in order, then the tag on the node. */
static void test_snapshot_save_job_events(void **state)
{
    static const char *const want[] = {"created", "running", "waiting", "pending", "concluded"};
    struct fixture *f = fixture_of(state);
    struct qs_error *err = NULL;
    struct qmp_args *args = snapshot_args("save0", "t1");
    struct qmp_args *dismiss = qmp_args_new();
    struct qmp_reply *r = NULL;
    struct qmp_event *ev = NULL;
    int64_t t0;

    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    qmp_client_event_clear(f->c);
    assert_int_equal(snapshot_vmstate_size(f->c, "vda", "t1"), -1);

    t0 = qs_now_ms();
    OK(qmp_client_execute(f->c, "snapshot-save", args, NULL, &err));
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        OK(qmp_client_event_wait(f->c, "JOB_STATUS_CHANGE", "id", "save0", 10000, &ev, &err));
        assert_string_equal(qmp_value_get_string(qmp_event_data(ev), "status"), want[i]);
        qmp_event_free(ev);
        ev = NULL;
    }
    print_message("    snapshot-save concluded in %" PRId64 " ms\n", qs_now_ms() - t0);
    /* the guest was paused for the save and resumed after it */
    OK(qmp_client_event_wait(f->c, "STOP", NULL, NULL, 1000, &ev, &err));
    qmp_event_free(ev);
    ev = NULL;
    OK(qmp_client_event_wait(f->c, "RESUME", NULL, NULL, 5000, &ev, &err));
    qmp_event_free(ev);
    ev = NULL;

    OK(qmp_client_execute(f->c, "query-jobs", NULL, &r, &err));
    assert_int_equal(qmp_value_array_len(qmp_reply_value(r)), 1);
    assert_string_equal(qmp_value_get_string(qmp_value_array_at(qmp_reply_value(r), 0), "status"), "concluded");
    assert_null(qmp_value_get(qmp_value_array_at(qmp_reply_value(r), 0), "error"));
    qmp_reply_free(r);
    r = NULL;

    qmp_args_set_str(dismiss, "id", "save0");
    OK(qmp_client_execute(f->c, "job-dismiss", dismiss, NULL, &err));
    OK(qmp_client_event_wait(f->c, "JOB_STATUS_CHANGE", "id", "save0", 5000, &ev, &err));
    assert_string_equal(qmp_value_get_string(qmp_event_data(ev), "status"), "null");
    qmp_event_free(ev);

    assert_true(snapshot_vmstate_size(f->c, "vda", "t1") > 0);
    assert_status(f->c, "running");
    qmp_args_free(args);
    qmp_args_free(dismiss);
}

/* qmp_job_run: save while paused, change RAM and disk, load: the guest's counter and bytes come back. */
static void test_job_run_save_load(void **state)
{
    struct fixture *f = fixture_of(state);
    struct qs_error *err = NULL;
    struct qmp_args *save = snapshot_args("save1", "s1");
    struct qmp_args *load = snapshot_args("load1", "s1");
    struct qmp_reply *r = NULL;
    uint64_t saved = 0, later = 0, restored = 0;
    int64_t t0;

    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    OK(qh_vm_disk_write(f->vm, "vda", 0xaa, 1 << 20, 65536, &err));
    run_simple(f->c, "stop");
    OK(qh_vm_read_counter(f->vm, &saved, &err));

    t0 = qs_now_ms();
    OK(qmp_job_run(f->c, "snapshot-save", save, "save1", NULL, &err));
    print_message("    qmp_job_run snapshot-save: %" PRId64 " ms\n", qs_now_ms() - t0);
    assert_status(f->c, "paused"); /* a save of a paused VM keeps it paused */
    assert_true(snapshot_vmstate_size(f->c, "vda", "s1") > 0);
    /* the job was dismissed */
    OK(qmp_client_execute(f->c, "query-jobs", NULL, &r, &err));
    assert_int_equal(qmp_value_array_len(qmp_reply_value(r)), 0);
    qmp_reply_free(r);

    run_simple(f->c, "cont");
    OK(qh_vm_disk_write(f->vm, "vda", 0xbb, 1 << 20, 65536, &err));
    OK(qh_vm_wait_counter_advancing(f->vm, 0, &later, &err));
    assert_true(later > saved);
    run_simple(f->c, "stop");
    assert_int_equal(qh_vm_disk_check(f->vm, "vda", 0xbb, 1 << 20, 65536, &err), 1);

    t0 = qs_now_ms();
    OK(qmp_job_run(f->c, "snapshot-load", load, "load1", NULL, &err));
    print_message("    qmp_job_run snapshot-load: %" PRId64 " ms\n", qs_now_ms() - t0);
    assert_status(f->c, "paused");
    OK(qh_vm_read_counter(f->vm, &restored, &err));
    assert_true(restored == saved);
    assert_int_equal(qh_vm_disk_check(f->vm, "vda", 0xaa, 1 << 20, 65536, &err), 1);
    assert_int_equal(qh_vm_disk_check(f->vm, "vda", 0xbb, 1 << 20, 65536, &err), 0);
    qs_error_clear(&err);

    run_simple(f->c, "cont");
    OK(qh_vm_wait_counter_advancing(f->vm, 0, &later, &err));
    assert_true(later > saved);
    qmp_args_free(save);
    qmp_args_free(load);
}

/* A failed job: the reason comes from query-jobs, and a failed load leaves the VM in "restore-vm". */
static void test_job_failure(void **state)
{
    struct fixture *f = fixture_of(state);
    struct qs_error *err = NULL;
    struct qmp_args *load = snapshot_args("load-missing", "nosuch");
    struct qmp_reply *r = NULL;

    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    FAILS(qmp_job_run(f->c, "snapshot-load", load, "load-missing", NULL, &err), QS_ERR_QEMU);
    print_message("    job error: %s\n", err->message);
    assert_non_null(strstr(err->message, "nosuch"));
    assert_non_null(strstr(err->message, "does not exist"));
    qs_error_clear(&err);

    OK(qmp_client_execute(f->c, "query-jobs", NULL, &r, &err));
    assert_int_equal(qmp_value_array_len(qmp_reply_value(r)), 0);
    qmp_reply_free(r);

    assert_status(f->c, "restore-vm");
    run_simple(f->c, "cont");
    assert_status(f->c, "running");
    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    qmp_args_free(load);
}

static bool keep_client(void *opaque, struct qmp_client *c)
{
    (void)opaque;
    (void)c;
    return true;
}

static size_t job_count(struct qmp_client *c)
{
    struct qs_error *err = NULL;
    struct qmp_reply *r = NULL;
    size_t n;

    OK(qmp_client_execute(c, "query-jobs", NULL, &r, &err));
    n = qmp_value_array_len(qmp_reply_value(r));
    qmp_reply_free(r);
    return n;
}

/*
 * A concluded job left undismissed (its dismiss lost with the process that sent it) does not block the next
 * job of its name; and on a kept connection (qsnapd's) a dismiss not waited for is done before anything
 * after it, the next job of the same name included, and its late events are not taken for that job's.
 */
static void test_job_stale_and_kept(void **state)
{
    struct fixture *f = fixture_of(state);
    struct qs_error *err = NULL;
    struct qmp_args *a0 = snapshot_args("qsnap", "t0"), *a1 = snapshot_args("qsnap", "t1"),
                    *a3 = snapshot_args("qsnap", "t3"), *load = snapshot_args("qsnap", "t1");
    struct qmp_event *ev = NULL;
    uint64_t c1 = 0, restored = 0, later = 0;

    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    OK(qmp_client_execute(f->c, "snapshot-save", a0, NULL, &err));
    do {
        qmp_event_free(ev);
        ev = NULL;
        OK(qmp_client_event_wait(f->c, "JOB_STATUS_CHANGE", "id", "qsnap", 10000, &ev, &err));
    } while (!qs_str_equal(qmp_value_get_string(qmp_event_data(ev), "status"), "concluded"));
    qmp_event_free(ev);
    assert_int_equal(job_count(f->c), 1);
    /* the same name again: the stale job goes, this one runs (paused: its counter is known) */
    run_simple(f->c, "stop");
    OK(qh_vm_read_counter(f->vm, &c1, &err));
    OK(qmp_job_run(f->c, "snapshot-save", a1, "qsnap", NULL, &err));
    assert_int_equal(job_count(f->c), 0);
    assert_true(snapshot_vmstate_size(f->c, "vda", "t0") > 0);
    assert_true(snapshot_vmstate_size(f->c, "vda", "t1") > 0);
    run_simple(f->c, "cont");
    OK(qh_vm_wait_counter_advancing(f->vm, 0, &later, &err));
    assert_true(later > c1);
    run_simple(f->c, "stop");

    /* kept: each job's dismiss goes unwaited, and the next job of the name comes right after it */
    qmp_client_set_release(f->c, keep_client, NULL);
    assert_true(qmp_client_kept(f->c));
    OK(qmp_job_run(f->c, "snapshot-load", load, "qsnap", NULL, &err));
    OK(qmp_job_run(f->c, "snapshot-save", a3, "qsnap", NULL, &err));
    OK(qmp_job_run(f->c, "snapshot-load", load, "qsnap", NULL, &err));
    assert_int_equal(job_count(f->c), 0); /* every dismiss done before it: their replies were read first */
    OK(qh_vm_read_counter(f->vm, &restored, &err));
    assert_true(restored == c1);
    assert_true(snapshot_vmstate_size(f->c, "vda", "t3") > 0);
    qmp_args_free(a3);
    a3 = qmp_args_new();
    qmp_args_set_str(a3, "tag", "t3");
    qmp_args_push_str(qmp_args_set_list(a3, "devices"), "vda");
    OK(qmp_job_run(f->c, "snapshot-delete", a3, "qsnap", NULL, &err));
    qmp_client_set_release(f->c, NULL, NULL);
    run_simple(f->c, "cont");
    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    assert_int_equal(snapshot_vmstate_size(f->c, "vda", "t3"), -1);
    assert_int_equal(job_count(f->c), 0);
    qmp_args_free(a0);
    qmp_args_free(a1);
    qmp_args_free(a3);
    qmp_args_free(load);
}

static void test_hmp(void **state)
{
    struct fixture *f = fixture_of(state);
    struct qs_error *err = NULL;
    char *out = NULL;
    int rc;

    OK(qmp_client_hmp(f->c, "info status", &out, &err));
    assert_non_null(strstr(out, "VM status: running"));
    free(out);
    out = NULL;

    /* "Error: ..." inside a successful human-monitor-command reply */
    FAILS(qmp_client_hmp(f->c, "qemu-io -d nosuchdev \"read 0 512\"", &out, &err), QS_ERR_QEMU);
    assert_non_null(strstr(err->message, "nosuchdev"));
    qs_error_clear(&err);
    free(out);
    out = NULL;

    FAILS(qmp_client_hmp(f->c, "loadvm nosuch", &out, &err), QS_ERR_QEMU);
    assert_non_null(strstr(err->message, "nosuch"));
    qs_error_clear(&err);
    free(out);
    out = NULL;
    assert_status(f->c, "restore-vm");
    run_simple(f->c, "cont");
    assert_status(f->c, "running");

    /* an unknown HMP command is reported as "unknown command: ..." without the "Error:" prefix: the client
     * hands it back as output (what the reply says is the caller's to judge), so the call succeeds */
    rc = qmp_client_hmp(f->c, "info nosuchthing", &out, &err);
    if (rc < 0)
        fail_msg("HMP 'info nosuchthing' failed: %s", err->message);
    print_message("    HMP 'info nosuchthing': [%s]\n", out);
    assert_string_equal(out, "unknown command: 'info nosuchthing'\r\n");
    free(out);
}

static void test_fd_passing(void **state)
{
    struct fixture *f = fixture_of(state);
    struct qs_error *err = NULL;
    struct qmp_args *a = qmp_args_new();
    int p[2] = {-1, -1};
    struct pollfd pfd;
    char c;

    assert_int_equal(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
    OK(qmp_client_send_fd(f->c, p[1], "testfd", &err));
    /* QEMU now holds the write end: closing ours does not end the pipe */
    qs_close(p[1]);
    p[1] = -1;
    assert_int_equal(read(p[0], &c, 1), -1);
    assert_int_equal(errno, EAGAIN);

    qmp_args_set_str(a, "fdname", "testfd");
    OK(qmp_client_execute(f->c, "closefd", a, NULL, &err));
    /* QEMU closed its copy: the pipe has no writer left */
    pfd.fd = p[0];
    pfd.events = POLLIN;
    assert_int_equal(poll(&pfd, 1, 5000), 1);
    assert_int_equal(read(p[0], &c, 1), 0);

    FAILS(qmp_client_execute(f->c, "closefd", a, NULL, &err), QS_ERR_QEMU);
    qs_error_clear(&err);
    /* getfd without an fd attached */
    FAILS(qmp_client_execute(f->c, "getfd", a, NULL, &err), QS_ERR_QEMU);
    assert_non_null(strstr(err->message, "SCM_RIGHTS"));
    qs_error_clear(&err);
    qs_close(p[0]);
    qmp_args_free(a);
}

struct killer {
    pid_t pid;
    int delay_ms;
};

static void *kill_later(void *opaque)
{
    struct killer *k = opaque;
    sleep_ms(k->delay_ms);
    kill(k->pid, SIGKILL);
    return NULL;
}

/* QEMU dies while a command waits for its reply: the wait ends at once with QS_ERR_DISCONNECTED. */
static void test_killed_while_waiting(void **state)
{
    struct fixture *f = fixture_of(state);
    struct qs_error *err = NULL;
    struct killer k = {qh_vm_pid(f->vm), 300};
    struct qmp_options quick = {.connect_timeout_ms = 300};
    struct qmp_client *again = NULL;
    pthread_t t;
    int64_t t0, took;
    int status = 0;

    /* a stopped QEMU cannot answer: the command surely waits until the kill */
    assert_int_equal(kill(k.pid, SIGSTOP), 0);
    assert_int_equal(pthread_create(&t, NULL, kill_later, &k), 0);
    t0 = qs_now_ms();
    FAILS(qmp_client_execute_timeout(f->c, "query-status", NULL, 20000, NULL, &err), QS_ERR_DISCONNECTED);
    took = qs_now_ms() - t0;
    pthread_join(t, NULL);
    print_message("    disconnect noticed after %" PRId64 " ms (kill at %d ms)\n", took, k.delay_ms);
    /* QS_ERR_DISCONNECTED, not the 20 s timeout's QS_ERR_TIMEOUT, says the kill ended the wait; the bound
     * only catches a hang */
    assert_true(took >= k.delay_ms - 50 && took < 60000);
    qs_error_clear(&err);

    OK(qh_vm_wait_exit(f->vm, 5000, &status, &err));
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

    /* later calls fail the same way, without a SIGPIPE */
    FAILS(qmp_client_execute(f->c, "query-status", NULL, NULL, &err), QS_ERR_DISCONNECTED);
    qs_error_clear(&err);
    /* the socket file stays behind, but nobody listens */
    again = qmp_client_connect(qh_vm_socket_path(f->vm), &quick, &err);
    assert_null(again);
    assert_non_null(err);
    qs_error_clear(&err);
}

/* QEMU killed while idle: the next command notices (EPIPE / EOF), and the harness can start it again. */
static void test_killed_idle_and_restart(void **state)
{
    struct fixture *f = fixture_of(state);
    struct qs_error *err = NULL;
    uint64_t v = 0;

    OK(qh_vm_wait_counter_advancing(f->vm, 0, &v, &err));
    qh_vm_kill(f->vm);
    assert_false(qh_vm_running(f->vm));
    assert_int_equal(qh_vm_pid(f->vm), -1);
    FAILS(qmp_client_execute(f->c, "query-status", NULL, NULL, &err), QS_ERR_DISCONNECTED);
    qs_error_clear(&err);
    qmp_client_free(f->c);
    f->c = NULL;

    /* the same disks, started paused: the guest boots again from scratch only after cont */
    OK(qh_vm_restart(f->vm, true, false, &err));
    OKP(f->c = qmp_client_connect(qh_vm_socket_path(f->vm), NULL, &err));
    assert_status(f->c, "prelaunch");
    run_simple(f->c, "cont");
    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
}

static void test_counter(void **state)
{
    struct fixture *f = fixture_of(state);
    struct qs_error *err = NULL;
    uint64_t v1 = 0, v2 = 0;
    int64_t t1, t2;

    OK(qh_vm_wait_counter_advancing(f->vm, 0, &v1, &err));
    t1 = qs_now_ms();
    sleep_ms(300);
    OK(qh_vm_read_counter(f->vm, &v2, &err));
    t2 = qs_now_ms();
    assert_true(v2 > v1);
    print_message("    counter %" PRIu64 " -> %" PRIu64 ": %.1f M/s\n", v1, v2,
                  (double)(v2 - v1) / (double)(t2 - t1) / 1000.0);
}

static void test_counter_paused_at_start(void **state)
{
    struct fixture *f = fixture_of(state);
    struct qs_error *err = NULL;
    uint64_t v = 0;

    /* -S: the boot sector has not run, so there is no magic yet */
    assert_status(f->c, "prelaunch");
    FAILS(qh_vm_read_counter(f->vm, &v, &err), QS_ERR_STATE);
    qs_error_clear(&err);
    FAILS(qh_vm_wait_counter_advancing(f->vm, 300, &v, &err), QS_ERR_TIMEOUT);
    qs_error_clear(&err);
    run_simple(f->c, "cont");
    OK(qh_vm_wait_counter_advancing(f->vm, 0, &v, &err));
}

static void test_disk_write_nbd_check(void **state)
{
    struct fixture *f = fixture_of(state);
    struct qs_error *err = NULL;
    const uint64_t off = 3 << 20, len = 128 << 10;
    const char *vda = NULL, *vdb = NULL;

    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    /* the boot disk: the guest's boot sector is at offset 0, blank space after */
    OK(qh_vm_disk_write(f->vm, "vda", 0x5a, off, len, &err));
    assert_int_equal(qh_vm_disk_check(f->vm, "vda", 0x5a, off, len, &err), 1);
    assert_int_equal(qh_vm_disk_check(f->vm, "vda", 0x5b, off, len, &err), 0);
    assert_int_equal(qh_vm_disk_check(f->vm, "vda", 0x5a, off - 512, len, &err), 0);
    assert_int_equal(qh_vm_disk_check(f->vm, "vda", 0x00, off + len, 4096, &err), 1);
    assert_int_equal(qh_vm_disk_check(f->vm, "vda", 0x55, 510, 1, &err), 1); /* boot signature */
    assert_null(err);

    /* a second, raw, disk */
    OK(qh_vm_disk_write(f->vm, "vdb", 0xc3, 0, 4096, &err));
    assert_int_equal(qh_vm_disk_check(f->vm, "vdb", 0xc3, 0, 4096, &err), 1);
    assert_int_equal(qh_vm_disk_check(f->vm, "vda", 0xc3, 0, 4096, &err), 0);
    assert_null(err);

    /* a bad node is an error, not a mismatch */
    assert_int_equal(qh_vm_disk_check(f->vm, "nosuchnode", 0, 0, 512, &err), -1);
    assert_non_null(err);
    qs_error_clear(&err);
    /* a bad device too */
    FAILS(qh_vm_disk_write(f->vm, "nosuchdev", 0, 0, 512, &err), QS_ERR_QEMU);
    qs_error_clear(&err);

    /* after QEMU quits, the bytes are in the image files */
    OK(qh_vm_stop(f->vm, 0, &err));
    OKP(vda = qh_vm_disk_path(f->vm, "vda"));
    OKP(vdb = qh_vm_disk_path(f->vm, "vdb"));
    assert_int_equal(qh_image_check(vda, "qcow2", 0x5a, off, len, &err), 1);
    assert_int_equal(qh_image_check(vda, "qcow2", 0x00, off + len, 4096, &err), 1);
    assert_int_equal(qh_image_check(vdb, "raw", 0xc3, 0, 4096, &err), 1);
    assert_int_equal(qh_image_check(vdb, "raw", 0xc3, 4096, 4096, &err), 0);
    assert_null(err);
}

static void test_harness_argv(void **state)
{
    struct fixture *f = fixture_of(state);
    char *const *argv = qh_vm_argv(f->vm);
    bool has_s = false, has_tcg = false, has_sock = false;
    size_t n;

    assert_non_null(argv);
    assert_string_equal(argv[0], "qemu-system-x86_64");
    for (n = 0; argv[n]; n++) {
        has_s |= strcmp(argv[n], "-S") == 0;
        has_tcg |= strcmp(argv[n], "pc,accel=tcg") == 0;
        has_sock |= strstr(argv[n], qh_vm_socket_path(f->vm)) != NULL;
    }
    assert_false(has_s);
    assert_true(has_tcg);
    assert_true(has_sock);
    assert_non_null(qh_vm_dir(f->vm));
    assert_true(qs_str_has_prefix(qh_vm_socket_path(f->vm), qh_vm_dir(f->vm)));
    assert_true(access(qh_vm_log_path(f->vm), R_OK) == 0);
    assert_null(qh_vm_disk_path(f->vm, "nosuch"));
}

/* The harness's own failure paths: QEMU rejecting its command line, bad disk ids. */
static void test_harness_start_failures(void **state)
{
    static const char *const bad_args[] = {"-no-such-option", NULL};
    /* a start timeout of 10 minutes: a harness that waited for it instead of noticing the exit would hang */
    static const struct qh_vm_config bad_cfg = {.extra_args = bad_args, .start_timeout_ms = 600000};
    static const struct qh_disk dup[] = {{.id = "vda", .boot = true}, {.id = "vda"}};
    static const struct qh_vm_config dup_cfg = {.disks = dup, .n_disks = 2};
    static const struct qh_disk comma[] = {{.id = "a,b", .boot = true}};
    static const struct qh_vm_config comma_cfg = {.disks = comma, .n_disks = 1};
    struct qs_error *err = NULL;
    struct qh_vm *vm = NULL;
    int64_t t0;

    if (!qh_qemu_available())
        qt_skip_missing("qemu-system-x86_64, qemu-img or qemu-io is not in PATH");
    t0 = qs_now_ms();
    vm = qh_vm_start(&bad_cfg, &err);
    assert_null(vm);
    assert_non_null(err);
    print_message("    %s (%" PRId64 " ms)\n", err->message, qs_now_ms() - t0);
    assert_non_null(strstr(err->message, "no-such-option"));
    assert_true(qs_now_ms() - t0 < 60000); /* QEMU exits at once; the harness did not wait for its timeout */
    qs_error_clear(&err);

    assert_null(qh_vm_start(&dup_cfg, &err));
    assert_int_equal(err->code, QS_ERR_INVALID);
    qs_error_clear(&err);
    assert_null(qh_vm_start(&comma_cfg, &err));
    assert_int_equal(err->code, QS_ERR_INVALID);
    qs_error_clear(&err);
}

static const struct qh_vm_config cfg_default = {0};
static const struct qh_vm_config cfg_paused = {.paused = true};
static const struct qh_disk two_disks[] = {
    {.id = "vda", .format = "qcow2", .boot = true},
    {.id = "vdb", .format = "raw", .size = 16 << 20},
};
static const struct qh_vm_config cfg_two_disks = {.disks = two_disks, .n_disks = 2};

#define VM_TEST(fn, config)                                                                               \
    cmocka_unit_test_prestate_setup_teardown(fn, vm_setup, vm_teardown, &(struct fixture){.cfg = &(config)})

int main(void)
{
    const struct CMUnitTest tests[] = {
        VM_TEST(test_handshake_version, cfg_default),
        VM_TEST(test_query_status, cfg_default),
        VM_TEST(test_stop_cont_events, cfg_default),
        VM_TEST(test_snapshot_save_job_events, cfg_default),
        VM_TEST(test_job_run_save_load, cfg_default),
        VM_TEST(test_job_failure, cfg_default),
        VM_TEST(test_job_stale_and_kept, cfg_default),
        VM_TEST(test_hmp, cfg_default),
        VM_TEST(test_fd_passing, cfg_default),
        VM_TEST(test_killed_while_waiting, cfg_default),
        VM_TEST(test_killed_idle_and_restart, cfg_default),
        VM_TEST(test_counter, cfg_default),
        VM_TEST(test_counter_paused_at_start, cfg_paused),
        VM_TEST(test_disk_write_nbd_check, cfg_two_disks),
        VM_TEST(test_harness_argv, cfg_default),
        cmocka_unit_test(test_harness_start_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
