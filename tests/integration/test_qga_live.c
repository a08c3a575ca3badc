/* test_qga_live.c: the guest agent client against real QEMU whose guest runs no agent (label integration). */
#include "qsnap_test.h"

#include "qga.h"
#include "qs_util.h"
#include "quiesce.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct fixture {
    char dir[64];
    char *sock;
    char *chardev;
    struct qh_vm *vm;
};

static int setup(void **state)
{
    static struct fixture fx;
    struct fixture *f = &fx;
    struct qs_error *err = NULL;
    const char *extra[8];

    *state = f;
    if (!qh_qemu_available())
        return 0;
    snprintf(f->dir, sizeof(f->dir), "/tmp/qsnap-qga-live-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    f->sock = qs_asprintf("%s/qga.sock", f->dir);
    f->chardev = qs_asprintf("socket,path=%s,server=on,wait=off,id=qga0", f->sock);
    qt_agent_args(extra, f->chardev);
    if (!(f->vm = qh_vm_start(&(struct qh_vm_config){.extra_args = extra}, &err))) {
        print_error("cannot start qemu: %s\n", err->message);
        qs_error_free(err);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    qh_vm_free(f->vm);
    if (f->sock)
        unlink(f->sock);
    rmdir(f->dir);
    free(f->sock);
    free(f->chardev);
    return 0;
}

static struct fixture *fixture_of(void **state)
{
    struct fixture *f = *state;
    if (!f->vm)
        qt_skip_missing("qemu-system-x86_64, qemu-img or qemu-io is not in PATH");
    return f;
}

/* The counter guest has no agent: QEMU takes the bytes, nobody answers, every call times out in time. */
static void test_freeze_times_out(void **state)
{
    struct fixture *f = fixture_of(state);
    struct qs_error *err = NULL;
    struct qga_client *g;
    int64_t t0, dt;
    bool frozen;
    char *want;

    assert_int_equal(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err), 0);
    g = qga_client_connect(f->sock, 0, &err);
    if (!g)
        fail_msg("connect: %s", err->message);
    t0 = qs_now_ms();
    assert_int_equal(qga_fsfreeze_freeze(g, 500, NULL, &err), -1);
    dt = qs_now_ms() - t0;
    assert_non_null(err);
    assert_int_equal(err->code, QS_ERR_TIMEOUT);
    want = qs_asprintf("guest agent on '%s' did not answer within 500 ms: is qemu-guest-agent running in the "
                       "guest?", f->sock);
    assert_string_equal(err->message, want);
    free(want);
    qs_error_clear(&err);
    /* it waited the 500 ms it was given; the upper bound only catches a call that never gives up */
    assert_true(dt >= 490 && dt < 60000);
    print_message("freeze without an agent failed after %lld ms\n", (long long)dt);
    assert_int_equal(qga_fsfreeze_status(g, 300, &frozen, &err), -1);
    assert_int_equal(err->code, QS_ERR_TIMEOUT);
    qs_error_clear(&err);
    qga_client_free(g);
    /* the VM did not notice */
    assert_int_equal(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err), 0);
}

/* The engine's helper: the socket found in QEMU's command line, freeze and thaw fail with the timeout. */
static void test_quiesce_helpers(void **state)
{
    struct fixture *f = fixture_of(state);
    struct qs_error *err = NULL;
    char *sock = quiesce_agent_socket(qh_vm_argv(f->vm));
    char *const none[] = {"qemu-system-x86_64", "-device", "virtserialport,chardev=x,name=other", NULL};
    int64_t t0;

    assert_non_null(sock);
    assert_string_equal(sock, f->sock);
    free(sock);
    assert_null(quiesce_agent_socket(none));

    t0 = qs_now_ms();
    assert_int_equal(quiesce_freeze(f->sock, 400, &err), -1);
    assert_int_equal(err->code, QS_ERR_TIMEOUT);
    assert_non_null(strstr(err->message, "is qemu-guest-agent running in the guest?"));
    qs_error_clear(&err);
    /* the freeze, then the thaw it tries after a failure: both gave up (a hang is what the bound catches) */
    assert_true(qs_now_ms() - t0 >= 400 && qs_now_ms() - t0 < 60000);
    assert_int_equal(quiesce_thaw(f->sock, 300, &err), -1);
    assert_int_equal(err->code, QS_ERR_TIMEOUT);
    qs_error_clear(&err);

    /* no channel at all */
    sock = qs_asprintf("%s/none.sock", f->dir);
    assert_int_equal(quiesce_freeze(sock, 300, &err), -1);
    assert_int_equal(err->code, QS_ERR_NOTFOUND);
    qs_error_clear(&err);
    free(sock);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_freeze_times_out),
        cmocka_unit_test(test_quiesce_helpers),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
