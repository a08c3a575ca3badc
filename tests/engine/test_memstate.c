/* test_memstate.c: the order of memstate_save's QMP commands where QEMU's timing matters, against a scripted
 * fake QMP peer (tests/qmp/fake_peer.c): what a real QEMU shows too rarely to test on. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "fake_peer.h"
#include "memstate.h"
#include "qmp.h"

#define GREETING                                                                                                 \
    "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 2, \"minor\": 0, \"major\": 10}, \"package\": \"Debian "     \
    "1:10.0.2+ds-1~bpo12+1\"}, \"capabilities\": [\"oob\"]}}\r\n"
#define OK "{\"return\": {}, \"id\": \"@ID@\"}\r\n"
#define RET(v) "{\"return\": " v ", \"id\": \"@ID@\"}\r\n"

/* memstate_save of a plain save into a pipe, against SCRIPT; the peer's record of what it saw, for checks.
 * Free with peer_free(). */
static struct peer *save_against(const struct peer_step *script)
{
    struct memstate_options o = {.plain = true, .poll_ms = 1};
    struct qs_error *err = NULL;
    struct qmp_client *c;
    struct peer *p;
    int fd = -1, pipefd[2];

    assert_int_equal(pipe(pipefd), 0);
    p = peer_start_pair(script, &fd);
    c = qmp_client_new_fd(fd, NULL, &err);
    assert_non_null(c);
    if (memstate_save(c, pipefd[1], &o, &err) < 0)
        fail_msg("memstate_save: %s (peer: %s)", err->message, peer_join(p));
    qmp_client_free(c);
    assert_string_equal(peer_join(p), "");
    close(pipefd[0]);
    close(pipefd[1]);
    return p;
}

/*
 * QEMU's migration thread says "completed" before the main loop has cleaned up after it (the multifd
 * shutdown in that clean-up does nothing once multifd is off again, and QEMU 10.0 then aborts in the next
 * multifd save): memstate_save sets nothing back until query-yank no longer shows the migration.
 */
static void test_save_waits_for_cleanup(void **state)
{
    static const struct peer_step script[] = {
        P_SEND(GREETING), P_EXPECT("qmp_capabilities"), P_SEND(OK),
        P_EXPECT("query-migrate-capabilities"), P_SEND(RET("[{\"capability\": \"events\", \"state\": false}]")),
        P_EXPECT("migrate-set-capabilities"), P_SEND(OK),
        P_EXPECT("query-migrate-parameters"), P_SEND(RET("{\"max-bandwidth\": 134217728}")),
        P_EXPECT("migrate-set-parameters"), P_SEND(OK),
        /* no add-fd: the fd goes through getfd and fd: */
        P_EXPECT("query-commands"), P_SEND(RET("[{\"name\": \"getfd\"}, {\"name\": \"migrate\"}]")),
        P_EXPECT("getfd"), P_SEND(OK),
        P_EXPECT("migrate"), P_SEND(OK),
        P_EXPECT("query-migrate"),
        P_SEND(RET("{\"status\": \"completed\", \"ram\": {\"transferred\": 4096, \"total\": 4096}}")),
        /* the clean-up has not run yet, then it has */
        P_EXPECT("query-yank"), P_SEND(RET("[{\"type\": \"migration\"}, {\"type\": \"chardev\", \"id\": \"c\"}]")),
        P_EXPECT("query-yank"), P_SEND(RET("[{\"type\": \"migration\"}]")),
        P_EXPECT("query-yank"), P_SEND(RET("[{\"type\": \"chardev\", \"id\": \"c\"}]")),
        P_EXPECT("closefd"), P_SEND(OK),
        P_EXPECT("migrate-set-capabilities"), P_SEND(OK),
        P_EXPECT("migrate-set-parameters"), P_SEND(OK),
        P_END};
    struct peer *p;
    (void)state;

    p = save_against(script);
    /* the capability and bandwidth set back with what they were */
    assert_string_equal(p->args[p->ncommands - 2], "{\"capabilities\":[{\"capability\":\"events\",\"state\":false}]}");
    assert_string_equal(p->args[p->ncommands - 1], "{\"max-bandwidth\":134217728}");
    peer_free(p);
}

/* A QEMU without query-yank (before 6.0): nothing to wait for, the settings are set back at once. */
static void test_save_without_yank(void **state)
{
    static const struct peer_step script[] = {
        P_SEND(GREETING), P_EXPECT("qmp_capabilities"), P_SEND(OK),
        P_EXPECT("query-migrate-capabilities"), P_SEND(RET("[{\"capability\": \"events\", \"state\": true}]")),
        P_EXPECT("query-migrate-parameters"), P_SEND(RET("{}")),
        P_EXPECT("query-commands"), P_SEND(RET("[]")),
        P_EXPECT("getfd"), P_SEND(OK),
        P_EXPECT("migrate"), P_SEND(OK),
        P_EXPECT("query-migrate"), P_SEND(RET("{\"status\": \"completed\"}")),
        P_EXPECT("query-yank"),
        P_SEND("{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command query-yank has not been "
               "found\"}, \"id\": \"@ID@\"}\r\n"),
        P_EXPECT("closefd"), P_SEND(OK),
        P_END};
    (void)state;

    peer_free(save_against(script));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_save_waits_for_cleanup),
        cmocka_unit_test(test_save_without_yank),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
