/* test_qga.c: unit tests for the guest agent client against a scripted fake agent in a thread. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <json-c/json.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "qga.h"
#include "qs_util.h"

/* ------------------------------------------------------------------------------------------------
 * The fake agent: reads "\xff"-prefixed or plain JSON lines, follows a script, records a failure string.
 */

enum agent_op {
    A_END,    /* wait for the client to close; anything it still sends is a failure */
    A_EXPECT, /* read one command; it must be named ARG. Later SENDs say @ID@ for a sync's id */
    A_SEND,   /* write ARG (N bytes when N > 0, else strlen), @ID@ replaced */
    A_SLEEP,  /* N ms */
    A_DRAIN,  /* read and drop everything until the client closes: no agent in the guest */
    A_CLOSE,  /* close the connection */
};

struct agent_step {
    enum agent_op op;
    const char *arg;
    int n;
};

#define S_END {A_END, NULL, 0}
#define S_EXPECT(name) {A_EXPECT, (name), 0}
#define S_SEND(bytes) {A_SEND, (bytes), (int)sizeof(bytes) - 1}
#define S_SLEEP(ms) {A_SLEEP, NULL, (ms)}
#define S_DRAIN {A_DRAIN, NULL, 0}
#define S_CLOSE {A_CLOSE, NULL, 0}
#define SYNC_OK S_EXPECT("guest-sync-delimited"), S_SEND("\xff{\"return\": @ID@}\n")

struct agent {
    const struct agent_step *script;
    int fd;
    const char *listen_path; /* listen mode: bind and accept one client */
    int listen_fd;
    pthread_t thread;
    char failure[512];
    char names[1024];        /* commands seen, space separated */
    long long last_id;
    char buf[8192];
    size_t len;
};

static void agent_fail(struct agent *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void agent_fail(struct agent *a, const char *fmt, ...)
{
    va_list ap;

    if (a->failure[0])
        return;
    va_start(ap, fmt);
    vsnprintf(a->failure, sizeof(a->failure), fmt, ap);
    va_end(ap);
}

/* Reads until a whole line is buffered: 1, 0 on EOF, -1 error. */
static int agent_line(struct agent *a, char **line)
{
    char *nl;
    ssize_t n;

    while (!(nl = memchr(a->buf, '\n', a->len))) {
        if (a->len == sizeof(a->buf))
            return -1;
        n = read(a->fd, a->buf + a->len, sizeof(a->buf) - a->len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n == 0 ? 0 : -1;
        a->len += (size_t)n;
    }
    *line = qs_xstrndup(a->buf, (size_t)(nl - a->buf));
    a->len -= (size_t)(nl + 1 - a->buf);
    memmove(a->buf, nl + 1, a->len);
    return 1;
}

static void agent_expect(struct agent *a, const char *want)
{
    json_object *o = NULL, *v = NULL, *id = NULL;
    char *line = NULL, *p;
    int r = agent_line(a, &line);

    if (r <= 0) {
        agent_fail(a, "expected '%s', got %s", want, r == 0 ? "EOF" : "a read error");
        return;
    }
    for (p = line; *p == '\xff'; p++)
        ;
    o = json_tokener_parse(p);
    if (!o || !json_object_object_get_ex(o, "execute", &v)) {
        agent_fail(a, "expected '%s', got '%s'", want, line);
        goto out;
    }
    snprintf(a->names + strlen(a->names), sizeof(a->names) - strlen(a->names), "%s%s", a->names[0] ? " " : "",
             json_object_get_string(v));
    if (strcmp(json_object_get_string(v), want) != 0) {
        agent_fail(a, "expected '%s', got '%s'", want, json_object_get_string(v));
        goto out;
    }
    if (strcmp(want, "guest-sync-delimited") == 0) {
        if (p == line)
            agent_fail(a, "guest-sync-delimited came without a 0xFF before it");
        if (!json_object_object_get_ex(o, "arguments", &v) || !json_object_object_get_ex(v, "id", &id))
            agent_fail(a, "guest-sync-delimited without an id");
        a->last_id = json_object_get_int64(id);
    }
out:
    json_object_put(o);
    free(line);
}

static void agent_send(struct agent *a, const char *bytes, int n)
{
    char idtext[32], out[4096];
    size_t k = 0;

    snprintf(idtext, sizeof(idtext), "%lld", a->last_id);
    for (int i = 0; i < n && k + 32 < sizeof(out); i++) {
        if (i + 4 <= n && memcmp(bytes + i, "@ID@", 4) == 0) {
            k += (size_t)snprintf(out + k, sizeof(out) - k, "%s", idtext);
            i += 3;
        } else {
            out[k++] = bytes[i];
        }
    }
    if (qs_write_all(a->fd, out, k) < 0)
        agent_fail(a, "write: %s", strerror(errno));
}

static void *agent_main(void *opaque)
{
    struct agent *a = opaque;
    char tmp[4096];
    ssize_t n;

    if (a->listen_path) {
        a->fd = accept(a->listen_fd, NULL, NULL);
        if (a->fd < 0) {
            agent_fail(a, "accept: %s", strerror(errno));
            return NULL;
        }
    }
    for (const struct agent_step *s = a->script; !a->failure[0]; s++) {
        switch (s->op) {
        case A_EXPECT:
            agent_expect(a, s->arg);
            break;
        case A_SEND:
            agent_send(a, s->arg, s->n > 0 ? s->n : (int)strlen(s->arg));
            break;
        case A_SLEEP:
            usleep((useconds_t)s->n * 1000);
            break;
        case A_DRAIN:
            while ((n = read(a->fd, tmp, sizeof(tmp))) > 0 || (n < 0 && errno == EINTR))
                ;
            return NULL;
        case A_CLOSE:
            close(a->fd);
            a->fd = -1;
            return NULL;
        case A_END:
            if (a->len > 0)
                agent_fail(a, "unexpected input after the script: '%.*s'", (int)a->len, a->buf);
            while ((n = read(a->fd, tmp, sizeof(tmp))) != 0) {
                if (n > 0) {
                    agent_fail(a, "unexpected input after the script: '%.*s'", (int)n, tmp);
                    break;
                }
                if (errno != EINTR)
                    break;
            }
            return NULL;
        }
    }
    return NULL;
}

static struct agent *agent_start_pair(const struct agent_step *script, int *client_fd)
{
    struct agent *a = qs_xcalloc(1, sizeof(*a));
    int sv[2];

    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    a->script = script;
    a->fd = sv[0];
    a->listen_fd = -1;
    *client_fd = sv[1];
    assert_int_equal(pthread_create(&a->thread, NULL, agent_main, a), 0);
    return a;
}

static struct agent *agent_start_listen(const struct agent_step *script, const char *path)
{
    struct agent *a = qs_xcalloc(1, sizeof(*a));
    struct sockaddr_un sa = {.sun_family = AF_UNIX};

    a->script = script;
    a->listen_path = path;
    a->fd = -1;
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    unlink(path);
    a->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(a->listen_fd >= 0);
    assert_int_equal(bind(a->listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(a->listen_fd, 1), 0);
    assert_int_equal(pthread_create(&a->thread, NULL, agent_main, a), 0);
    return a;
}

/* Joins the agent and fails the test on a script failure. */
static void agent_finish(struct agent *a, const char *want_names)
{
    pthread_join(a->thread, NULL);
    if (a->fd >= 0)
        close(a->fd);
    if (a->listen_fd >= 0)
        close(a->listen_fd);
    if (a->listen_path)
        unlink(a->listen_path);
    if (a->failure[0])
        fail_msg("fake agent: %s", a->failure);
    if (want_names)
        assert_string_equal(a->names, want_names);
    free(a);
}

static struct qga_client *client_for(const struct agent_step *script, int timeout_ms, struct agent **a)
{
    struct qs_error *err = NULL;
    struct qga_client *g;
    int fd = -1;

    *a = agent_start_pair(script, &fd);
    g = qga_client_new_fd(fd, "/run/vm.qga", timeout_ms, &err);
    if (!g)
        fail_msg("new_fd: %s", err->message);
    return g;
}

static void assert_error(struct qs_error **err, int code, const char *substring)
{
    assert_non_null(*err);
    if ((*err)->code != code || !strstr((*err)->message, substring))
        fail_msg("expected %s error with '%s', got %s: %s", qs_error_code_name(code), substring,
                 qs_error_code_name((*err)->code), (*err)->message);
    qs_error_clear(err);
}

/* ------------------------------------------------------------------------------------------------
 * Tests
 */

static void test_freeze_thaw(void **state)
{
    static const struct agent_step script[] = {
        SYNC_OK,
        S_EXPECT("guest-fsfreeze-freeze"), S_SEND("{\"return\": 2}\n"),
        S_EXPECT("guest-fsfreeze-status"), S_SEND("{\"return\": \"frozen\"}\n"),
        S_EXPECT("guest-fsfreeze-thaw"), S_SEND("{\"return\": 2}\n"),
        S_EXPECT("guest-fsfreeze-status"), S_SEND("{\"return\": \"thawed\"}\n"),
        S_END,
    };
    struct qs_error *err = NULL;
    struct agent *a;
    struct qga_client *g = client_for(script, 2000, &a);
    bool frozen = false;
    int n = -1;

    (void)state;
    assert_int_equal(qga_fsfreeze_freeze(g, 0, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_int_equal(qga_fsfreeze_status(g, 0, &frozen, &err), 0);
    assert_true(frozen);
    n = -1;
    assert_int_equal(qga_fsfreeze_thaw(g, 0, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_int_equal(qga_fsfreeze_status(g, 0, &frozen, &err), 0);
    assert_false(frozen);
    qga_client_free(g);
    /* one sync: the stream stays in step after each full reply */
    agent_finish(a, "guest-sync-delimited guest-fsfreeze-freeze guest-fsfreeze-status guest-fsfreeze-thaw "
                    "guest-fsfreeze-status");
}

/* Garbage, a parse error reply, a stale sync reply and a reply split by a 0xFF all come before the delimiter
 * that carries our id: the client skips them. */
static void test_sync_skips_garbage(void **state)
{
    static const struct agent_step script[] = {
        S_EXPECT("guest-sync-delimited"),
        S_SEND("junk \x01\x02{\"return\": \"x\"}\n"
               "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error\"}}\n"
               "\xff{\"return\": 7}\n"
               "\xff{\"retu\xff not json at all\n"
               "\xff{\"return\": @ID@}\n"),
        S_EXPECT("guest-fsfreeze-status"), S_SEND("{\"return\": \"thawed\"}\n"),
        S_END,
    };
    struct qs_error *err = NULL;
    struct agent *a;
    struct qga_client *g = client_for(script, 2000, &a);
    bool frozen = true;

    (void)state;
    assert_int_equal(qga_fsfreeze_status(g, 0, &frozen, &err), 0);
    assert_false(frozen);
    qga_client_free(g);
    agent_finish(a, NULL);
}

/* A reply that comes in pieces, with the delimiter alone in its first write. */
static void test_split_reply(void **state)
{
    static const struct agent_step script[] = {
        S_EXPECT("guest-sync-delimited"), S_SEND("\xff"), S_SLEEP(20), S_SEND("{\"ret"), S_SLEEP(20),
        S_SEND("urn\": @ID@}"), S_SLEEP(20), S_SEND("\n"),
        S_EXPECT("guest-fsfreeze-freeze"), S_SEND("{\"return\""), S_SLEEP(20), S_SEND(": 1}\n"),
        S_END,
    };
    struct qs_error *err = NULL;
    struct agent *a;
    struct qga_client *g = client_for(script, 2000, &a);
    int n = 0;

    (void)state;
    assert_int_equal(qga_fsfreeze_freeze(g, 0, &n, &err), 0);
    assert_int_equal(n, 1);
    qga_client_free(g);
    agent_finish(a, NULL);
}

/* No agent in the guest: QEMU takes the bytes and nothing ever comes back. */
static void test_silent_agent(void **state)
{
    static const struct agent_step script[] = {S_DRAIN};
    struct qs_error *err = NULL;
    struct agent *a;
    struct qga_client *g = client_for(script, 5000, &a);
    int64_t t0 = qs_now_ms();
    int n = -1;
    bool frozen;

    (void)state;
    assert_int_equal(qga_fsfreeze_freeze(g, 300, &n, &err), -1);
    /* the 300 ms given were waited; the upper bound only catches a call that never gives up */
    assert_true(qs_now_ms() - t0 >= 290 && qs_now_ms() - t0 < 60000);
    assert_non_null(err);
    assert_string_equal(err->message, "guest agent on '/run/vm.qga' did not answer within 300 ms: is "
                                      "qemu-guest-agent running in the guest?");
    assert_error(&err, QS_ERR_TIMEOUT, "did not answer");
    assert_int_equal(n, -1);
    /* every call times out the same way, the thaw too, and the default timeout applies */
    assert_int_equal(qga_fsfreeze_thaw(g, 200, NULL, &err), -1);
    assert_error(&err, QS_ERR_TIMEOUT, "within 200 ms");
    assert_int_equal(qga_fsfreeze_status(g, 100, &frozen, &err), -1);
    assert_error(&err, QS_ERR_TIMEOUT, "is qemu-guest-agent running in the guest?");
    qga_client_free(g);
    agent_finish(a, NULL);
}

/* An agent that syncs but answers the command too late: a timeout, then the late reply is skipped by the next
 * sync and never taken for the next command's answer. */
static void test_late_reply_resync(void **state)
{
    static const struct agent_step script[] = {
        SYNC_OK,
        S_EXPECT("guest-fsfreeze-status"), S_SLEEP(400), S_SEND("{\"return\": \"thawed\"}\n"),
        SYNC_OK,
        S_EXPECT("guest-fsfreeze-status"), S_SEND("{\"return\": \"frozen\"}\n"),
        S_END,
    };
    struct qs_error *err = NULL;
    struct agent *a;
    struct qga_client *g = client_for(script, 2000, &a);
    bool frozen = false;

    (void)state;
    assert_int_equal(qga_fsfreeze_status(g, 150, &frozen, &err), -1);
    assert_error(&err, QS_ERR_TIMEOUT, "did not answer within 150 ms");
    usleep(400 * 1000); /* the late reply is in the socket now */
    assert_int_equal(qga_fsfreeze_status(g, 0, &frozen, &err), 0);
    assert_true(frozen);
    qga_client_free(g);
    agent_finish(a, "guest-sync-delimited guest-fsfreeze-status guest-sync-delimited guest-fsfreeze-status");
}

static void test_error_reply(void **state)
{
    static const struct agent_step script[] = {
        SYNC_OK,
        S_EXPECT("guest-fsfreeze-freeze"),
        S_SEND("{\"error\": {\"class\": \"GenericError\", \"desc\": \"failed to freeze /mnt: Device or resource "
               "busy\"}}\n"),
        /* still in step: no second sync */
        S_EXPECT("guest-fsfreeze-thaw"), S_SEND("{\"return\": 0}\n"),
        S_END,
    };
    struct qs_error *err = NULL;
    struct agent *a;
    struct qga_client *g = client_for(script, 2000, &a);
    int n = -1;

    (void)state;
    assert_int_equal(qga_fsfreeze_freeze(g, 0, &n, &err), -1);
    assert_non_null(err);
    assert_string_equal(err->qmp_class, "GenericError");
    assert_string_equal(err->message, "guest agent on '/run/vm.qga': failed to freeze /mnt: Device or resource busy");
    assert_error(&err, QS_ERR_QEMU, "Device or resource busy");
    assert_int_equal(qga_fsfreeze_thaw(g, 0, &n, &err), 0);
    assert_int_equal(n, 0);
    qga_client_free(g);
    agent_finish(a, NULL);
}

static void test_bad_replies(void **state)
{
    static const struct agent_step script[] = {
        SYNC_OK,
        S_EXPECT("guest-fsfreeze-freeze"), S_SEND("{\"return\": \"lots\"}\n"),
        S_EXPECT("guest-fsfreeze-status"), S_SEND("{\"return\": \"melting\"}\n"),
        S_EXPECT("guest-fsfreeze-status"), S_SEND("{not json}\n"),
        SYNC_OK,
        S_EXPECT("guest-fsfreeze-status"), S_SEND("{\"return\": \"thawed\"}\n"),
        S_END,
    };
    struct qs_error *err = NULL;
    struct agent *a;
    struct qga_client *g = client_for(script, 2000, &a);
    bool frozen = true;

    (void)state;
    assert_int_equal(qga_fsfreeze_freeze(g, 0, NULL, &err), -1);
    assert_error(&err, QS_ERR_PROTOCOL, "did not return a count for 'guest-fsfreeze-freeze'");
    assert_int_equal(qga_fsfreeze_status(g, 0, &frozen, &err), -1);
    assert_error(&err, QS_ERR_PROTOCOL, "unknown freeze status 'melting'");
    assert_int_equal(qga_fsfreeze_status(g, 0, &frozen, &err), -1);
    assert_error(&err, QS_ERR_PROTOCOL, "invalid JSON");
    /* the invalid reply unsettled the stream: the next call syncs again */
    assert_int_equal(qga_fsfreeze_status(g, 0, &frozen, &err), 0);
    assert_false(frozen);
    qga_client_free(g);
    agent_finish(a, NULL);
}

static void test_eof(void **state)
{
    static const struct agent_step script[] = {S_EXPECT("guest-sync-delimited"), S_CLOSE};
    struct qs_error *err = NULL;
    struct agent *a;
    struct qga_client *g = client_for(script, 2000, &a);

    (void)state;
    assert_int_equal(qga_fsfreeze_freeze(g, 0, NULL, &err), -1);
    assert_error(&err, QS_ERR_DISCONNECTED, "'/run/vm.qga' was closed");
    qga_client_free(g);
    agent_finish(a, NULL);
}

static void test_connect_path(void **state)
{
    static const struct agent_step script[] = {
        SYNC_OK, S_EXPECT("guest-fsfreeze-thaw"), S_SEND("{\"return\": 1}\n"), S_END,
    };
    struct qs_error *err = NULL;
    char dir[] = "/tmp/qsnap-qga-XXXXXX", *path, *missing;
    struct qga_client *g;
    struct agent *a;
    int n = -1;

    (void)state;
    assert_non_null(mkdtemp(dir));
    path = qs_asprintf("%s/qga.sock", dir);
    missing = qs_asprintf("%s/none.sock", dir);
    assert_null(qga_client_connect(missing, 1000, &err));
    assert_error(&err, QS_ERR_NOTFOUND, "none.sock");
    a = agent_start_listen(script, path);
    g = qga_client_connect(path, 1000, &err);
    assert_non_null(g);
    assert_int_equal(qga_client_sync(g, 0, &err), 0);
    assert_int_equal(qga_fsfreeze_thaw(g, 0, &n, &err), 0);
    assert_int_equal(n, 1);
    qga_client_free(g);
    agent_finish(a, "guest-sync-delimited guest-fsfreeze-thaw");
    rmdir(dir);
    free(path);
    free(missing);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_freeze_thaw),       cmocka_unit_test(test_sync_skips_garbage),
        cmocka_unit_test(test_split_reply),       cmocka_unit_test(test_silent_agent),
        cmocka_unit_test(test_late_reply_resync), cmocka_unit_test(test_error_reply),
        cmocka_unit_test(test_bad_replies),       cmocka_unit_test(test_eof),
        cmocka_unit_test(test_connect_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
