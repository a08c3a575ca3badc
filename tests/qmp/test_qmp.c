/* test_qmp.c: unit tests for qmp/ against a scripted fake QMP peer: framing, ids, events, jobs, HMP, fds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "fake_peer.h"
#include "qmp.h"
#include "qs_file.h"
#include "qs_util.h"

#define GREETING                                                                                                 \
    "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, \"minor\": 2, \"major\": 7}, \"package\": \"Debian "     \
    "1:7.2+dfsg-7+deb12u7\"}, \"capabilities\": [\"oob\"]}}\r\n"
#define OK "{\"return\": {}, \"id\": \"@ID@\"}\r\n"
#define HELLO P_SEND(GREETING), P_EXPECT("qmp_capabilities"), P_SEND(OK)
#define EVENT(name, data)                                                                                        \
    "{\"timestamp\": {\"seconds\": 1700000000, \"microseconds\": 250}, \"event\": \"" name "\", \"data\": " data \
    "}\r\n"
#define JOB(id, status) EVENT("JOB_STATUS_CHANGE", "{\"status\": \"" status "\", \"id\": \"" id "\"}")
#define JOBS(entries) "{\"return\": [" entries "], \"id\": \"@ID@\"}\r\n"

/* ------------------------------------------------------------------------------------------------
 * Helpers
 */

struct fixture {
    struct peer *peer;
    struct qmp_client *c;
};

static struct qmp_client *start_opts(struct fixture *f, const struct peer_step *script, const struct qmp_options *opts)
{
    struct qs_error *err = NULL;
    int fd = -1;

    f->peer = peer_start_pair(script, &fd);
    f->c = qmp_client_new_fd(fd, opts, &err);
    if (!f->c)
        fail_msg("connect: %s (peer: %s)", err->message, peer_join(f->peer));
    return f->c;
}

static struct qmp_client *start(struct fixture *f, const struct peer_step *script)
{
    return start_opts(f, script, NULL);
}

/* Frees the client, then checks the peer got to the end of its script with nothing unexpected. Returns the
 * peer for a look at what it saw; free it with peer_free(). */
static struct peer *end(struct fixture *f)
{
    const char *failure;

    qmp_client_free(f->c);
    failure = peer_join(f->peer);
    if (failure[0])
        fail_msg("%s", failure);
    return f->peer;
}

static void finish(struct fixture *f)
{
    peer_free(end(f));
}

static void assert_error(struct qs_error **err, int code, const char *substring)
{
    assert_non_null(*err);
    if ((*err)->code != code || !strstr((*err)->message, substring))
        fail_msg("expected %s error with '%s', got %s: %s", qs_error_code_name(code), substring,
                 qs_error_code_name((*err)->code), (*err)->message);
    qs_error_clear(err);
}

static void execute_ok(struct qmp_client *c, const char *command)
{
    struct qs_error *err = NULL;

    if (qmp_client_execute(c, command, NULL, NULL, &err) < 0)
        fail_msg("%s: %s", command, err->message);
}

/* ------------------------------------------------------------------------------------------------
 * Values and arguments
 */

static void test_args_json(void **state)
{
    struct qmp_args *a = qmp_args_new(), *o, *l, *lo;
    struct qmp_reply *r;
    struct qs_error *err = NULL;
    char *json;
    (void)state;

    qmp_args_set_str(a, "s", "q\"b\\s/\n\t\x01\x1f \xc3\xa9\xe5\xbf\xab");
    qmp_args_set_int(a, "i", -5);
    qmp_args_set_int(a, "max", INT64_MAX);
    qmp_args_set_bool(a, "t", true);
    qmp_args_set_null(a, "n");
    o = qmp_args_set_obj(a, "o");
    qmp_args_set_str(o, "k\"ey", "v");
    l = qmp_args_set_list(o, "l");
    qmp_args_push_str(l, "x");
    lo = qmp_args_push_obj(l);
    qmp_args_set_bool(lo, "f", false);
    qmp_args_set_list(lo, "empty");
    qmp_args_set_str(a, "i", "replaced");
    json = qmp_args_to_json(a);
    assert_string_equal(json, "{\"s\":\"q\\\"b\\\\s/\\n\\t\\u0001\\u001f \xc3\xa9\xe5\xbf\xab\",\"i\":\"replaced\","
                              "\"max\":9223372036854775807,\"t\":true,\"n\":null,"
                              "\"o\":{\"k\\\"ey\":\"v\",\"l\":[\"x\",{\"f\":false,\"empty\":[]}]}}");
    /* and back */
    r = qmp_reply_parse(json, &err);
    assert_non_null(r);
    assert_string_equal(qmp_value_get_string(qmp_reply_value(r), "s"), "q\"b\\s/\n\t\x01\x1f \xc3\xa9\xe5\xbf\xab");
    assert_string_equal(qmp_value_get_string(qmp_value_path(qmp_reply_value(r), "o"), "k\"ey"), "v");
    qmp_reply_free(r);
    free(json);
    qmp_args_free(a);
    qmp_args_free(NULL);

    json = qmp_args_to_json(a = qmp_args_new());
    assert_string_equal(json, "{}");
    free(json);
    qmp_args_free(a);
}

static void test_values(void **state)
{
    struct qs_error *err = NULL;
    struct qmp_reply *r;
    const struct qmp_value *root, *arr, *val;
    const char *key;
    int64_t i = 0;
    bool b = false;
    char *json;
    (void)state;

    r = qmp_reply_parse("{\"a\": {\"b\": [1, \"x\", true, null, 2.5, {\"c\": \"d\"}]}, \"big\": 18446744073709551615,"
                        " \"neg\": -3, \"t\": false, \"e\": {}, \"z\": null}\r\n",
                        &err);
    assert_non_null(r);
    root = qmp_reply_value(r);
    assert_int_equal(qmp_value_type(root), QMP_OBJECT);
    arr = qmp_value_path(root, "a.b");
    assert_int_equal(qmp_value_type(arr), QMP_ARRAY);
    assert_int_equal(qmp_value_array_len(arr), 6);
    assert_true(qmp_value_int(qmp_value_array_at(arr, 0), &i));
    assert_int_equal(i, 1);
    assert_string_equal(qmp_value_string(qmp_value_array_at(arr, 1)), "x");
    assert_true(qmp_value_bool(qmp_value_array_at(arr, 2), &b));
    assert_true(b);
    assert_int_equal(qmp_value_type(qmp_value_array_at(arr, 3)), QMP_NULL);
    assert_int_equal(qmp_value_type(qmp_value_array_at(arr, 4)), QMP_DOUBLE);
    assert_false(qmp_value_int(qmp_value_array_at(arr, 4), &i)); /* a double is not an int */
    assert_null(qmp_value_array_at(arr, 6));
    json = qmp_value_to_json(qmp_value_array_at(arr, 5));
    assert_string_equal(json, "{\"c\":\"d\"}");
    free(json);
    assert_string_equal(qmp_value_get_string(qmp_value_array_at(arr, 5), "c"), "d");

    i = 42;
    assert_false(qmp_value_int(qmp_value_get(root, "big"), &i)); /* above INT64_MAX */
    assert_int_equal(i, 42);
    assert_true(qmp_value_int(qmp_value_get(root, "neg"), &i));
    assert_int_equal(i, -3);
    assert_false(qmp_value_bool(qmp_value_get(root, "neg"), &b));
    assert_true(qmp_value_bool(qmp_value_get(root, "t"), &b));
    assert_false(b);
    assert_null(qmp_value_get_string(root, "neg"));
    assert_null(qmp_value_path(root, "a.x"));
    assert_null(qmp_value_path(root, "a.b.c")); /* through an array */
    assert_null(qmp_value_get(arr, "a"));
    assert_int_equal(qmp_value_type(qmp_value_get(root, "z")), QMP_NULL);
    assert_int_equal(qmp_value_object_len(qmp_value_get(root, "e")), 0);

    /* members in document order */
    {
        static const char *const keys[] = {"a", "big", "neg", "t", "e", "z"};
        assert_int_equal(qmp_value_object_len(root), 6);
        for (size_t k = 0; k < 6; k++) {
            assert_true(qmp_value_object_at(root, k, &key, &val));
            assert_string_equal(key, keys[k]);
        }
        assert_false(qmp_value_object_at(root, 6, &key, &val));
        assert_false(qmp_value_object_at(arr, 0, &key, &val));
    }

    /* NULL is tolerated everywhere */
    assert_int_equal(qmp_value_type(NULL), QMP_NULL);
    assert_null(qmp_value_get(NULL, "a"));
    assert_null(qmp_value_string(NULL));
    assert_int_equal(qmp_value_array_len(NULL), 0);
    assert_int_equal(qmp_value_object_len(NULL), 0);
    json = qmp_value_to_json(NULL);
    assert_string_equal(json, "null");
    free(json);
    qmp_reply_free(r);
    qmp_reply_free(NULL);

    r = qmp_reply_parse("123", &err);
    assert_true(qmp_value_int(qmp_reply_value(r), &i));
    assert_int_equal(i, 123);
    qmp_reply_free(r);
    r = qmp_reply_parse("null", &err);
    assert_non_null(r);
    assert_int_equal(qmp_value_type(qmp_reply_value(r)), QMP_NULL);
    qmp_reply_free(r);
    assert_null(err);

    assert_null(qmp_reply_parse("{\"a\": 1", &err));
    assert_error(&err, QS_ERR_INVALID, "invalid JSON");
    assert_null(qmp_reply_parse("{} x", &err));
    assert_error(&err, QS_ERR_INVALID, "text after the value");
    assert_null(qmp_reply_parse("nope", &err));
    assert_error(&err, QS_ERR_INVALID, "invalid JSON");
    assert_null(qmp_reply_parse("", &err));
    assert_error(&err, QS_ERR_INVALID, "invalid JSON");
}

/* ------------------------------------------------------------------------------------------------
 * Connection and framing
 */

static void test_greeting(void **state)
{
    static const struct peer_step script[] = {HELLO, P_END};
    struct fixture f;
    struct peer *p;
    int major = 0, minor = 0, micro = 0;
    (void)state;

    start(&f, script);
    assert_string_equal(qmp_client_version(f.c), "7.2.22");
    qmp_client_version_num(f.c, &major, &minor, &micro);
    assert_int_equal(major, 7);
    assert_int_equal(minor, 2);
    assert_int_equal(micro, 22);
    assert_string_equal(qmp_client_package(f.c), "Debian 1:7.2+dfsg-7+deb12u7");
    assert_int_equal(qmp_client_peer_pid(f.c), getpid());
    p = end(&f);
    assert_string_equal(peer_names(p), "qmp_capabilities");
    assert_string_equal(p->args[0], "");
    assert_string_equal(p->last_id, ""); /* no id: QEMU answers in order, and reads every byte */
    peer_free(p);
}

static void test_bad_greeting(void **state)
{
    /* the client asks for capabilities at once: read, never answered */
    static const struct peer_step not_qmp[] = {P_SEND("{\"event\": \"STOP\", \"data\": {}}\r\n"),
                                               P_EXPECT("qmp_capabilities"), P_END};
    static const struct peer_step refused[] = {
        P_SEND(GREETING), P_EXPECT("qmp_capabilities"),
        P_SEND("{\"id\": \"@ID@\", \"error\": {\"class\": \"CommandNotFound\", \"desc\": \"nope\"}}\r\n"), P_END};
    struct qs_error *err = NULL;
    struct peer *p;
    int fd;
    (void)state;

    p = peer_start_pair(not_qmp, &fd);
    assert_null(qmp_client_new_fd(fd, NULL, &err));
    assert_error(&err, QS_ERR_PROTOCOL, "no QMP greeting");
    assert_string_equal(peer_join(p), "");
    peer_free(p);

    p = peer_start_pair(refused, &fd);
    assert_null(qmp_client_new_fd(fd, NULL, &err));
    assert_non_null(err);
    assert_string_equal(err->qmp_class, "CommandNotFound");
    assert_error(&err, QS_ERR_QEMU, "cannot negotiate QMP capabilities on 'fd ");
    assert_string_equal(peer_join(p), "");
    peer_free(p);
}

/* The client sends qmp_capabilities without waiting for the greeting: a peer that reads it before greeting still
 * gets a client (one that waited for the greeting first would wait here until its timeout). */
static void test_capabilities_with_greeting(void **state)
{
    static const struct peer_step script[] = {P_EXPECT("qmp_capabilities"), P_SEND(GREETING OK),
                                              P_EXPECT("query-status"), P_SEND(OK), P_END};
    struct fixture f;
    (void)state;

    start(&f, script);
    assert_string_equal(qmp_client_version(f.c), "7.2.22");
    execute_ok(f.c, "query-status");
    end(&f);
    assert_string_equal(peer_names(f.peer), "qmp_capabilities query-status");
    peer_free(f.peer);
}

static void test_split_frames(void **state)
{
    /* braces, quotes and an escaped CR LF inside a string must not end the message */
    static const struct peer_step script[] = {
        P_SPLIT(GREETING, 1), P_EXPECT("qmp_capabilities"), P_SPLIT(OK, 1),
        P_EXPECT("query-status"),
        P_SPLIT("{\"return\": {\"status\": \"running\", \"s\": \"}\\r\\n{\\\"\"}, \"id\": \"@ID@\"}\r\n", 1),
        P_EXPECT("query-status"),
        P_SPLIT(EVENT("STOP", "{}") "{\"return\": {\"status\": \"paused\"}, \"id\": \"@ID@\"}\r\n", 7),
        /* the client has its reply before the last piece (CR LF) is sent: one more round trip to wait for it */
        P_EXPECT("query-status"), P_SEND(OK), P_END};
    struct fixture f;
    struct qs_error *err = NULL;
    struct qmp_reply *r = NULL;
    struct qmp_event *e;
    (void)state;

    start(&f, script);
    assert_int_equal(qmp_client_execute(f.c, "query-status", NULL, &r, &err), 0);
    assert_string_equal(qmp_value_get_string(qmp_reply_value(r), "status"), "running");
    assert_string_equal(qmp_value_get_string(qmp_reply_value(r), "s"), "}\r\n{\"");
    qmp_reply_free(r);
    assert_int_equal(qmp_client_execute(f.c, "query-status", NULL, &r, &err), 0);
    assert_string_equal(qmp_value_get_string(qmp_reply_value(r), "status"), "paused");
    qmp_reply_free(r);
    e = qmp_client_event_pop(f.c);
    assert_non_null(e);
    assert_string_equal(qmp_event_name(e), "STOP");
    qmp_event_free(e);
    execute_ok(f.c, "query-status");
    finish(&f);
}

static void test_many_in_one_write(void **state)
{
    static const struct peer_step script[] = {
        HELLO, P_EXPECT("query-status"),
        /* no separator at all between the first two, and one event after the reply */
        P_SEND("{\"event\": \"A\", \"data\": {\"n\": 1}}{\"event\": \"B\"}\r\n"
               "{\"return\": {\"status\": \"running\"}, \"id\": \"@ID@\"}\r\n" EVENT("C", "{\"n\": 3}")),
        P_END};
    static const char *const names[] = {"A", "B", "C"};
    struct fixture f;
    struct qs_error *err = NULL;
    struct qmp_reply *r = NULL;
    struct qmp_event *e;
    (void)state;

    start(&f, script);
    assert_int_equal(qmp_client_execute(f.c, "query-status", NULL, &r, &err), 0);
    assert_string_equal(qmp_value_get_string(qmp_reply_value(r), "status"), "running");
    qmp_reply_free(r);
    assert_int_equal(qmp_client_poll(f.c, &err), 0); /* C is read but not parsed yet */
    for (size_t i = 0; i < 3; i++) {
        assert_non_null(e = qmp_client_event_pop(f.c));
        assert_string_equal(qmp_event_name(e), names[i]);
        assert_int_equal(qmp_value_object_len(qmp_event_data(e)), i == 1 ? 0 : 1); /* B: empty data */
        assert_int_equal(qmp_event_timestamp_us(e), i == 2 ? INT64_C(1700000000000250) : 0);
        qmp_event_free(e);
    }
    assert_null(qmp_client_event_pop(f.c));
    finish(&f);
}

static void test_events_before_reply(void **state)
{
    static const struct peer_step script[] = {
        HELLO, P_EXPECT("stop"), P_SEND(EVENT("STOP", "{}")), P_SLEEP(30), P_SEND(OK),
        P_EXPECT("query-jobs"),
        P_SEND(JOB("j0", "created") JOB("j1", "created") EVENT("RESUME", "{}") JOBS("")),
        P_EXPECT("cont"), P_SEND(OK), P_SLEEP(30), P_SEND(JOB("j1", "running")),
        P_EXPECT("query-status"), P_SEND("{\"return\": {}, \"id\": \"@ID@\"}\r\n"), P_END};
    struct fixture f;
    struct qs_error *err = NULL;
    struct qmp_event *e = NULL;
    (void)state;

    start(&f, script);
    execute_ok(f.c, "stop");
    /* already queued: a zero timeout finds it */
    assert_int_equal(qmp_client_event_wait(f.c, "STOP", NULL, NULL, 0, &e, &err), 0);
    assert_string_equal(qmp_event_name(e), "STOP");
    assert_int_equal(qmp_event_timestamp_us(e), INT64_C(1700000000000250));
    qmp_event_free(e);
    execute_ok(f.c, "query-jobs");
    /* by data member: j1 is taken, j0 and RESUME stay queued in order */
    assert_int_equal(qmp_client_event_wait(f.c, "JOB_STATUS_CHANGE", "id", "j1", 0, &e, &err), 0);
    assert_string_equal(qmp_value_get_string(qmp_event_data(e), "id"), "j1");
    qmp_event_free(e);
    execute_ok(f.c, "cont");
    /* not there yet: waits for it */
    assert_int_equal(qmp_client_event_wait(f.c, "JOB_STATUS_CHANGE", "id", "j1", 2000, &e, &err), 0);
    assert_string_equal(qmp_value_get_string(qmp_event_data(e), "status"), "running");
    qmp_event_free(e);
    /* an event wait that runs out is not fatal */
    assert_int_equal(qmp_client_event_wait(f.c, "SHUTDOWN", NULL, NULL, 50, &e, &err), -1);
    assert_error(&err, QS_ERR_TIMEOUT, "no QMP event 'SHUTDOWN' within 50 ms");
    assert_int_equal(qmp_client_event_wait(f.c, "JOB_STATUS_CHANGE", "id", "j9", 0, &e, &err), -1);
    assert_error(&err, QS_ERR_TIMEOUT, "with id 'j9'");
    execute_ok(f.c, "query-status");
    assert_non_null(e = qmp_client_event_pop(f.c));
    assert_string_equal(qmp_value_get_string(qmp_event_data(e), "id"), "j0");
    qmp_event_free(e);
    assert_non_null(e = qmp_client_event_pop(f.c));
    assert_string_equal(qmp_event_name(e), "RESUME");
    qmp_event_free(e);
    assert_null(qmp_client_event_pop(f.c));
    finish(&f);
}

static void test_event_queue_cap(void **state)
{
    static const struct peer_step script[] = {
        HELLO, P_EXPECT("query-status"),
        P_SEND(EVENT("E1", "{}") EVENT("E2", "{}") EVENT("E3", "{}") EVENT("E4", "{}") EVENT("E5", "{}") OK),
        P_EXPECT("query-status"), P_SEND(EVENT("E6", "{}") OK), P_END};
    struct qmp_options opts = {.max_events = 3};
    struct fixture f;
    struct qmp_event *e;
    (void)state;

    start_opts(&f, script, &opts);
    execute_ok(f.c, "query-status");
    for (int i = 3; i <= 5; i++) {
        char name[8];
        snprintf(name, sizeof(name), "E%d", i);
        assert_non_null(e = qmp_client_event_pop(f.c));
        assert_string_equal(qmp_event_name(e), name);
        qmp_event_free(e);
    }
    assert_null(qmp_client_event_pop(f.c));
    execute_ok(f.c, "query-status");
    qmp_client_event_clear(f.c);
    assert_null(qmp_client_event_pop(f.c));
    finish(&f);
}

static void test_error_reply(void **state)
{
    static const struct peer_step script[] = {
        HELLO, P_EXPECT("blockdev-del"),
        P_SEND("{\"id\": \"@ID@\", \"error\": {\"class\": \"DeviceNotFound\", "
               "\"desc\": \"Failed to find node with node-name='x'\"}}\r\n"),
        P_EXPECT("query-status"), P_SEND(OK), P_END};
    struct fixture f;
    struct qs_error *err = NULL;
    struct qmp_args *a = qmp_args_new();
    (void)state;

    start(&f, script);
    qmp_args_set_str(a, "node-name", "x");
    assert_int_equal(qmp_client_execute(f.c, "blockdev-del", a, NULL, &err), -1);
    assert_non_null(err);
    assert_string_equal(err->qmp_class, "DeviceNotFound");
    assert_string_equal(err->message, "Failed to find node with node-name='x'");
    assert_error(&err, QS_ERR_QEMU, "node-name='x'");
    execute_ok(f.c, "query-status"); /* still usable */
    finish(&f);
    qmp_args_free(a);
}

static void test_reply_other_id(void **state)
{
    static const struct peer_step script[] = {
        HELLO, P_EXPECT("query-status"),
        P_SEND("{\"return\": {\"n\": 1}, \"id\": \"qsnap-999\"}\r\n{\"return\": {\"n\": 2}, \"id\": 7}\r\n"
               "{\"return\": {\"n\": 3}, \"id\": \"@ID@\"}\r\n"),
        P_END};
    struct fixture f;
    struct qs_error *err = NULL;
    struct qmp_reply *r = NULL;
    int64_t n = 0;
    (void)state;

    start(&f, script);
    assert_int_equal(qmp_client_execute(f.c, "query-status", NULL, &r, &err), 0);
    assert_true(qmp_value_int(qmp_value_get(qmp_reply_value(r), "n"), &n));
    assert_int_equal(n, 3);
    qmp_reply_free(r);
    finish(&f);
}

static void test_parse_error_without_id(void **state)
{
    static const struct peer_step script[] = {
        HELLO, P_EXPECT("query-status"),
        P_SEND("{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, invalid keyword 'x'\"}}\r\n"),
        P_EXPECT("query-status"), P_SEND(OK), P_END};
    struct fixture f;
    struct qs_error *err = NULL;
    (void)state;

    start(&f, script);
    assert_int_equal(qmp_client_execute(f.c, "query-status", NULL, NULL, &err), -1);
    assert_string_equal(err->qmp_class, "GenericError");
    assert_error(&err, QS_ERR_QEMU, "JSON parse error");
    execute_ok(f.c, "query-status");
    finish(&f);
}

/* The peer sends BYTES in reply to query-status; the client must fail with CODE and stay broken. */
static void broken_reply(const char *bytes, int code, const char *substring)
{
    const struct peer_step script[] = {HELLO, P_EXPECT("query-status"), P_SEND(bytes), P_END};
    struct fixture f;
    struct qs_error *err = NULL;
    struct qmp_event *e = NULL;

    start(&f, script);
    assert_int_equal(qmp_client_execute(f.c, "query-status", NULL, NULL, &err), -1);
    assert_error(&err, code, substring);
    assert_int_equal(qmp_client_execute(f.c, "query-status", NULL, NULL, &err), -1);
    assert_error(&err, QS_ERR_DISCONNECTED, "unusable after an earlier error");
    assert_int_equal(qmp_client_event_wait(f.c, NULL, NULL, NULL, 1000, &e, &err), -1);
    assert_error(&err, QS_ERR_DISCONNECTED, "unusable");
    finish(&f);
}

static void test_garbage(void **state)
{
    (void)state;
    broken_reply("hello world\r\n", QS_ERR_PROTOCOL, "invalid JSON");
    broken_reply("[1, 2]\r\n", QS_ERR_PROTOCOL, "not a JSON object");
    broken_reply("\"@ID@\"\r\n", QS_ERR_PROTOCOL, "not a JSON object");
    broken_reply("{\"hello\": 1}\r\n", QS_ERR_PROTOCOL, "neither a reply nor an event");
    broken_reply("{\"id\": \"@ID@\", \"error\": \"oops\"}\r\n", QS_ERR_PROTOCOL, "lacks 'class' or 'desc'");
    broken_reply("{\"event\": 5}\r\n", QS_ERR_PROTOCOL, "has no name");
}

static void test_nul_byte(void **state)
{
    static const struct peer_step script[] = {
        HELLO, P_EXPECT("query-status"), P_SEND_RAW("{\"return\": {}, \"id\": \"q2\"\x00}\r\n"), P_END};
    struct fixture f;
    struct qs_error *err = NULL;
    (void)state;

    start(&f, script);
    assert_int_equal(qmp_client_execute(f.c, "query-status", NULL, NULL, &err), -1);
    assert_error(&err, QS_ERR_PROTOCOL, "invalid JSON");
    finish(&f);
}

/* {"return": {"s": "xxx..."}} of exactly TOTAL bytes, then CR LF. */
static void padded_reply(char *buf, size_t total)
{
    int n = sprintf(buf, "{\"return\": {\"s\": \"");

    memset(buf + n, 'x', total - (size_t)n - 3);
    strcpy(buf + total - 3, "\"}}\r\n");
}

static void test_oversize(void **state)
{
    /* max_message counts the bytes of one message, not the CR LF between messages */
    char fits[256], big[256];
    const struct peer_step script[] = {HELLO, P_EXPECT("query-status"), P_SEND(fits),
                                       P_EXPECT("query-status"), P_SEND(big), P_END};
    struct qmp_options opts = {.max_message = 200};
    struct fixture f;
    struct qs_error *err = NULL;
    (void)state;

    assert_true(strlen(GREETING) < 200);
    padded_reply(fits, 200);
    padded_reply(big, 201);
    assert_int_equal(strlen(big), 203);
    start_opts(&f, script, &opts);
    execute_ok(f.c, "query-status");
    assert_int_equal(qmp_client_execute(f.c, "query-status", NULL, NULL, &err), -1);
    assert_error(&err, QS_ERR_TOOBIG, "larger than 200 bytes");
    assert_int_equal(qmp_client_execute(f.c, "query-status", NULL, NULL, &err), -1);
    assert_error(&err, QS_ERR_DISCONNECTED, "unusable");
    finish(&f);
}

static void test_eof(void **state)
{
    static const struct peer_step mid[] = {
        HELLO, P_EXPECT("query-status"), P_SEND("{\"return\": {\"status\": \"runn"), P_CLOSE, P_END};
    static const struct peer_step clean[] = {HELLO, P_EXPECT("quit"), P_SEND(EVENT("SHUTDOWN", "{}")), P_CLOSE,
                                             P_END};
    struct fixture f;
    struct qs_error *err = NULL;
    struct qmp_event *e = NULL;
    (void)state;

    start(&f, mid);
    assert_int_equal(qmp_client_execute(f.c, "query-status", NULL, NULL, &err), -1);
    assert_non_null(err);
    assert_non_null(strstr(err->message, "QEMU closed the QMP connection 'fd "));
    assert_error(&err, QS_ERR_DISCONNECTED, "in the middle of a message");
    finish(&f);

    /* QEMU quitting: the event before EOF is kept */
    start(&f, clean);
    assert_int_equal(qmp_client_execute(f.c, "quit", NULL, NULL, &err), -1);
    assert_non_null(err);
    assert_null(strstr(err->message, "middle"));
    assert_error(&err, QS_ERR_DISCONNECTED, "QEMU closed the QMP connection");
    assert_non_null(e = qmp_client_event_pop(f.c));
    assert_string_equal(qmp_event_name(e), "SHUTDOWN");
    qmp_event_free(e);
    finish(&f);
}

static void test_connection_reset(void **state)
{
    static const struct peer_step script[] = {HELLO, P_RESET, P_END};
    struct fixture f;
    struct qs_error *err = NULL;
    (void)state;

    start(&f, script);
    assert_int_equal(qmp_client_execute(f.c, "query-status", NULL, NULL, &err), -1);
    assert_error(&err, QS_ERR_DISCONNECTED, strerror(ECONNRESET));
    assert_int_equal(qmp_client_execute(f.c, "query-status", NULL, NULL, &err), -1);
    assert_error(&err, QS_ERR_DISCONNECTED, "unusable");
    finish(&f);
}

static void test_write_to_closed(void **state)
{
    static const struct peer_step script[] = {HELLO, P_CLOSE, P_END};
    struct fixture f;
    struct qs_error *err = NULL;
    (void)state;

    start(&f, script);
    usleep(50 * 1000); /* let the peer close first */
    assert_int_equal(qmp_client_execute(f.c, "query-status", NULL, NULL, &err), -1);
    assert_non_null(err);
    assert_int_equal(err->code, QS_ERR_DISCONNECTED); /* EPIPE on write, or EOF on read */
    qs_error_clear(&err);
    finish(&f);
}

static void test_silent_peer(void **state)
{
    static const struct peer_step script[] = {HELLO, P_DRAIN, P_END};
    struct fixture f;
    struct qs_error *err = NULL;
    int64_t t0;
    (void)state;

    start(&f, script);
    t0 = qs_now_ms();
    assert_int_equal(qmp_client_execute_timeout(f.c, "query-status", NULL, 200, NULL, &err), -1);
    assert_true(qs_now_ms() - t0 >= 200);
    assert_error(&err, QS_ERR_TIMEOUT, "QEMU did not reply to 'query-status' within 200 ms");
    t0 = qs_now_ms();
    assert_int_equal(qmp_client_execute(f.c, "query-status", NULL, NULL, &err), -1);
    assert_error(&err, QS_ERR_DISCONNECTED, "unusable after an earlier error");
    assert_int_equal(qmp_client_hmp(f.c, "info status", NULL, &err), -1);
    assert_error(&err, QS_ERR_DISCONNECTED, "unusable");
    assert_int_equal(qmp_client_poll(f.c, &err), -1);
    assert_error(&err, QS_ERR_DISCONNECTED, "unusable");
    /* fails fast: a call that waited for the silent peer would end in QS_ERR_TIMEOUT, not "unusable"; the
     * bound only catches a hang */
    assert_true(qs_now_ms() - t0 < 60000);
    finish(&f);
}

/* ------------------------------------------------------------------------------------------------
 * Jobs
 */

struct progress {
    int calls;
    uint64_t current, total;
    int stop;
};

static int progress_cb(void *opaque, const char *job_id, uint64_t current, uint64_t total)
{
    struct progress *p = opaque;

    p->calls++;
    p->current = current;
    p->total = total;
    return p->stop;
}

static struct qmp_args *save_args(const char *job_id)
{
    struct qmp_args *a = qmp_args_new(), *l;

    qmp_args_set_str(a, "job-id", job_id);
    qmp_args_set_str(a, "tag", "s1");
    qmp_args_set_str(a, "vmstate", "disk0");
    l = qmp_args_set_list(a, "devices");
    qmp_args_push_str(l, "disk0");
    return a;
}

static void test_job_success(void **state)
{
    static const struct peer_step script[] = {
        HELLO, P_EXPECT("snapshot-save"),
        P_SEND(EVENT("STOP", "{}") JOB("save0", "created") JOB("other", "concluded") JOB("save0", "running") OK),
        P_EXPECT("query-jobs"),
        P_SEND(JOBS("{\"id\": \"other\", \"type\": \"backup\", \"status\": \"concluded\", \"current-progress\": 1, "
                    "\"total-progress\": 1}, {\"id\": \"save0\", \"type\": \"snapshot-save\", \"status\": \"running\", "
                    "\"current-progress\": 50, \"total-progress\": 100}")
                   JOB("save0", "waiting") JOB("save0", "pending") JOB("save0", "concluded")),
        P_EXPECT("job-dismiss"), P_SEND(JOB("save0", "null") OK), P_END};
    struct progress prog = {0};
    struct qmp_job_options opts = {.poll_ms = 50, .progress = progress_cb, .opaque = &prog};
    struct qmp_args *a = save_args("save0");
    struct fixture f;
    struct qs_error *err = NULL;
    struct qmp_event *e;
    (void)state;

    start(&f, script);
    if (qmp_job_run(f.c, "snapshot-save", a, "save0", &opts, &err) < 0)
        fail_msg("job: %s", err->message);
    assert_int_equal(prog.calls, 1);
    assert_int_equal(prog.current, 50);
    assert_int_equal(prog.total, 100);
    /* the job's own events are consumed; others stay */
    assert_non_null(e = qmp_client_event_pop(f.c));
    assert_string_equal(qmp_event_name(e), "STOP");
    qmp_event_free(e);
    assert_non_null(e = qmp_client_event_pop(f.c));
    assert_string_equal(qmp_value_get_string(qmp_event_data(e), "id"), "other");
    qmp_event_free(e);
    assert_null(qmp_client_event_pop(f.c));
    end(&f);
    /* concluded right from pending: it ended well, nothing to read before job-dismiss */
    assert_string_equal(peer_names(f.peer), "qmp_capabilities snapshot-save query-jobs job-dismiss");
    /* snapshot-save takes no auto-dismiss */
    assert_string_equal(f.peer->args[1],
                        "{\"job-id\":\"save0\",\"tag\":\"s1\",\"vmstate\":\"disk0\",\"devices\":[\"disk0\"]}");
    assert_string_equal(f.peer->args[3], "{\"id\":\"save0\"}");
    peer_free(f.peer);
    qmp_args_free(a);
}

static void test_job_events_before_reply(void **state)
{
    /* QEMU 7.2's snapshot-save runs in the main loop: every event comes before the reply */
    static const struct peer_step script[] = {
        HELLO, P_EXPECT("snapshot-load"),
        P_SEND(JOB("load0", "created") JOB("load0", "running") JOB("load0", "waiting") JOB("load0", "pending")
                   JOB("load0", "concluded") OK),
        P_EXPECT("job-dismiss"), P_SEND(OK), P_END};
    struct progress prog = {0};
    struct qmp_job_options opts = {.progress = progress_cb, .opaque = &prog};
    struct qmp_args *a = qmp_args_new();
    struct fixture f;
    struct qs_error *err = NULL;
    (void)state;

    /* job-id is added when the arguments lack it */
    qmp_args_set_str(a, "tag", "s1");
    start(&f, script);
    if (qmp_job_run(f.c, "snapshot-load", a, "load0", &opts, &err) < 0)
        fail_msg("job: %s", err->message);
    assert_int_equal(prog.calls, 0);
    assert_null(qmp_client_event_pop(f.c));
    end(&f);
    assert_string_equal(f.peer->args[1], "{\"tag\":\"s1\",\"job-id\":\"load0\"}");
    peer_free(f.peer);
    qmp_args_free(a);
}

/* A failed job's error is read from query-jobs, which QEMU answers before it runs the job-dismiss sent with
 * it: the peer gets both commands before it answers either (a client that waited for query-jobs' reply
 * first would wait here until its timeout). */
static void test_job_failed(void **state)
{
    static const struct peer_step script[] = {
        HELLO, P_EXPECT("snapshot-save"),
        P_SEND(OK JOB("save0", "created") JOB("save0", "running") JOB("save0", "aborting")),
        P_SEND(JOB("save0", "concluded")), P_EXPECT("query-jobs"), P_EXPECT("job-dismiss"),
        P_SEND("{\"return\": [{\"id\": \"save0\", \"type\": \"snapshot-save\", \"status\": \"concluded\", "
               "\"current-progress\": 1, \"total-progress\": 1, "
               "\"error\": \"Device 'vda' is writable but does not support snapshots\"}], \"id\": \"@PREV@\"}\r\n" OK),
        P_END};
    struct qmp_args *a = save_args("save0");
    struct fixture f;
    struct qs_error *err = NULL;
    (void)state;

    start(&f, script);
    assert_int_equal(qmp_job_run(f.c, "snapshot-save", a, "save0", NULL, &err), -1);
    assert_non_null(err);
    assert_string_equal(err->message, "Device 'vda' is writable but does not support snapshots");
    assert_string_equal(err->qmp_class, "GenericError");
    assert_error(&err, QS_ERR_QEMU, "");
    end(&f);
    assert_string_equal(peer_names(f.peer), "qmp_capabilities snapshot-save query-jobs job-dismiss");
    peer_free(f.peer);
    qmp_args_free(a);
}

/* A job that ends well but whose events may have been dropped (the queue's cap, here while snapshot-save had
 * not replied yet) is read from query-jobs like a failed one: its "pending" may hide an "aborting". The
 * caller's concluded callback hears the outcome the query tells. */
static void concluded_cb(void *opaque, const char *job_id, bool ok)
{
    (void)job_id;
    *(int *)opaque = ok ? 1 : 2;
}

/* The order a caller hears a load end in: concluded (it notes the outcome), then dismissing once job-dismiss
 * is written (it syncs the note while QEMU reads the command), then the reply. */
struct heard {
    char order[8];
    size_t n;
};

static void heard_concluded(void *opaque, const char *job_id, bool ok)
{
    struct heard *h = opaque;
    assert_string_equal(job_id, "load0");
    if (h->n + 1 < sizeof(h->order))
        h->order[h->n++] = ok ? 'c' : 'f';
}

static void heard_dismissing(void *opaque, const char *job_id)
{
    struct heard *h = opaque;
    assert_string_equal(job_id, "load0");
    if (h->n + 1 < sizeof(h->order))
        h->order[h->n++] = 'd';
}

static void test_job_dismissing(void **state)
{
    static const struct peer_step ok_script[] = {
        HELLO, P_EXPECT("snapshot-load"),
        P_SEND(OK JOB("load0", "created") JOB("load0", "running") JOB("load0", "waiting") JOB("load0", "pending")
                   JOB("load0", "concluded")),
        P_EXPECT("job-dismiss"), P_SEND(OK), P_END};
    static const struct peer_step failed_script[] = {
        HELLO, P_EXPECT("snapshot-load"),
        P_SEND(OK JOB("load0", "created") JOB("load0", "running") JOB("load0", "aborting") JOB("load0", "concluded")),
        P_EXPECT("query-jobs"), P_SEND(JOBS("{\"id\": \"load0\", \"status\": \"concluded\", \"error\": \"bad tag\"}")),
        P_EXPECT("job-dismiss"), P_SEND(OK), P_END};
    struct heard h = {{0}, 0};
    struct qmp_job_options opts = {.concluded = heard_concluded, .dismissing = heard_dismissing, .opaque = &h};
    struct qmp_args *a = qmp_args_new();
    struct fixture f;
    struct qs_error *err = NULL;
    (void)state;

    qmp_args_set_str(a, "tag", "s1");
    start(&f, ok_script);
    if (qmp_job_run(f.c, "snapshot-load", a, "load0", &opts, &err) < 0)
        fail_msg("job: %s", err->message);
    end(&f);
    assert_string_equal(h.order, "cd");
    assert_string_equal(peer_names(f.peer), "qmp_capabilities snapshot-load job-dismiss");
    peer_free(f.peer);

    /* a failed load: the same order, the outcome read first */
    memset(&h, 0, sizeof(h));
    start(&f, failed_script);
    assert_int_equal(qmp_job_run(f.c, "snapshot-load", a, "load0", &opts, &err), -1);
    assert_error(&err, QS_ERR_QEMU, "bad tag");
    end(&f);
    assert_string_equal(h.order, "fd");
    peer_free(f.peer);

    /* dismissing goes with concluded only */
    memset(&h, 0, sizeof(h));
    opts.concluded = NULL;
    start(&f, ok_script);
    if (qmp_job_run(f.c, "snapshot-load", a, "load0", &opts, &err) < 0)
        fail_msg("job: %s", err->message);
    end(&f);
    assert_string_equal(h.order, "");
    peer_free(f.peer);
    qmp_args_free(a);
}

static void test_job_events_dropped(void **state)
{
    static const struct peer_step script[] = {
        HELLO, P_EXPECT("snapshot-save"),
        P_SEND(JOB("save0", "created") JOB("save0", "running") JOB("save0", "waiting") JOB("save0", "pending")
                   JOB("save0", "concluded") OK),
        P_EXPECT("query-jobs"),
        P_SEND(JOBS("{\"id\": \"save0\", \"status\": \"concluded\", \"error\": \"No space left on device\"}")),
        P_EXPECT("job-dismiss"), P_SEND(OK), P_END};
    struct qmp_options opts = {.max_events = 2};
    int outcome = 0;
    struct qmp_job_options jopts = {.concluded = concluded_cb, .opaque = &outcome};
    struct qmp_args *a = save_args("save0");
    struct fixture f;
    struct qs_error *err = NULL;
    (void)state;

    start_opts(&f, script, &opts);
    assert_int_equal(qmp_job_run(f.c, "snapshot-save", a, "save0", &jopts, &err), -1);
    assert_error(&err, QS_ERR_QEMU, "No space left on device");
    assert_int_equal(outcome, 2);
    end(&f);
    assert_string_equal(peer_names(f.peer), "qmp_capabilities snapshot-save query-jobs job-dismiss");
    peer_free(f.peer);
    qmp_args_free(a);
}

static void test_job_command_refused(void **state)
{
    static const struct peer_step script[] = {
        HELLO, P_EXPECT("snapshot-delete"),
        P_SEND("{\"id\": \"@ID@\", \"error\": {\"class\": \"GenericError\", \"desc\": \"Job ID 'del0' in use\"}}\r\n"),
        /* a job of that name that is not concluded stays, and so does the refusal */
        P_EXPECT("query-jobs"), P_SEND(JOBS("{\"id\": \"del0\", \"status\": \"running\"}")), P_END};
    struct qmp_args *a = qmp_args_new();
    struct fixture f;
    struct qs_error *err = NULL;
    (void)state;

    start(&f, script);
    qmp_args_set_str(a, "job-id", "other");
    assert_int_equal(qmp_job_run(f.c, "snapshot-delete", a, "del0", NULL, &err), -1);
    assert_error(&err, QS_ERR_INVALID, "do not name job 'del0'");
    qmp_args_set_str(a, "job-id", "del0");
    assert_int_equal(qmp_job_run(f.c, "snapshot-delete", a, "del0", NULL, &err), -1);
    assert_error(&err, QS_ERR_QEMU, "Job ID 'del0' in use");
    finish(&f);
    qmp_args_free(a);
}

/* A concluded job of the same name (its dismiss lost with the process that sent it) is dismissed, and the
 * job started again. */
static void test_job_stale(void **state)
{
    static const struct peer_step script[] = {
        HELLO, P_EXPECT("snapshot-save"),
        P_SEND("{\"error\": {\"class\": \"GenericError\", \"desc\": \"Job ID 'save0' in use\"}}\r\n"),
        P_EXPECT("query-jobs"), P_SEND(JOBS("{\"id\": \"save0\", \"status\": \"concluded\"}")),
        P_EXPECT("job-dismiss"), P_SEND(JOB("save0", "null") OK), P_EXPECT("snapshot-save"),
        P_SEND(OK JOB("save0", "created") JOB("save0", "running") JOB("save0", "waiting") JOB("save0", "pending")
                   JOB("save0", "concluded")),
        P_EXPECT("job-dismiss"), P_SEND(OK), P_END};
    struct qmp_args *a = save_args("save0");
    struct fixture f;
    struct qs_error *err = NULL;
    (void)state;

    start(&f, script);
    if (qmp_job_run(f.c, "snapshot-save", a, "save0", NULL, &err) < 0)
        fail_msg("job: %s", err->message);
    end(&f);
    assert_string_equal(peer_names(f.peer),
                        "qmp_capabilities snapshot-save query-jobs job-dismiss snapshot-save job-dismiss");
    peer_free(f.peer);
    qmp_args_free(a);
}

static bool keep_client(void *opaque, struct qmp_client *c)
{
    (void)opaque;
    (void)c;
    return true;
}

/*
 * On a kept connection the dismiss's reply is not waited for: here the peer answers it only after the next
 * command came (a client that waited would time out). That reply and its "null" event are read before the
 * next command's reply, and before the next job of the same name starts (its "null" taken for the new job's
 * would end that one early).
 */
static void test_job_kept_dismiss(void **state)
{
    static const struct peer_step script[] = {
        HELLO, P_EXPECT("snapshot-load"),
        P_SEND(OK JOB("load0", "created") JOB("load0", "running") JOB("load0", "waiting") JOB("load0", "pending")
                   JOB("load0", "concluded")),
        P_EXPECT("job-dismiss"), P_EXPECT("query-status"),
        P_SEND(JOB("load0", "null") OK "{\"return\": {\"status\": \"running\", \"running\": true}}\r\n"),
        P_EXPECT("snapshot-load"),
        P_SEND(OK JOB("load0", "created") JOB("load0", "running") JOB("load0", "waiting") JOB("load0", "pending")
                   JOB("load0", "concluded")),
        P_EXPECT("job-dismiss"), P_SEND(JOB("load0", "null") OK), P_EXPECT("snapshot-save"),
        P_SEND(OK JOB("load0", "created") JOB("load0", "running") JOB("load0", "waiting") JOB("load0", "pending")
                   JOB("load0", "concluded")),
        P_EXPECT("job-dismiss"), P_SEND(OK), P_END};
    struct qmp_options o = {.timeout_ms = 3000};
    struct heard h = {{0}, 0};
    struct qmp_job_options opts = {.concluded = heard_concluded, .dismissing = heard_dismissing, .opaque = &h};
    struct qmp_args *a = qmp_args_new();
    struct qmp_reply *r = NULL;
    struct fixture f;
    struct qs_error *err = NULL;
    (void)state;

    qmp_args_set_str(a, "tag", "s1");
    start_opts(&f, script, &o);
    qmp_client_set_release(f.c, keep_client, NULL);
    assert_true(qmp_client_kept(f.c));
    if (qmp_job_run(f.c, "snapshot-load", a, "load0", &opts, &err) < 0)
        fail_msg("job: %s", err->message);
    assert_string_equal(h.order, "cd");
    if (qmp_client_execute(f.c, "query-status", NULL, &r, &err) < 0)
        fail_msg("query-status: %s", err->message);
    assert_string_equal(qmp_value_get_string(qmp_reply_value(r), "status"), "running");
    qmp_reply_free(r);
    /* the next job of the same name, right after a dismiss not waited for */
    if (qmp_job_run(f.c, "snapshot-load", a, "load0", &opts, &err) < 0)
        fail_msg("job: %s", err->message);
    if (qmp_job_run(f.c, "snapshot-save", a, "load0", NULL, &err) < 0)
        fail_msg("job: %s", err->message);
    /* freed for good: the owed reply is read before the socket closes */
    qmp_client_set_release(f.c, NULL, NULL);
    end(&f);
    peer_free(f.peer);
    qmp_args_free(a);
}

static void test_job_cancelled(void **state)
{
    static const struct peer_step script[] = {
        HELLO, P_EXPECT("block-stream"), P_SEND(OK JOB("stream0", "created") JOB("stream0", "running")),
        P_EXPECT("query-jobs"),
        P_SEND(JOBS("{\"id\": \"stream0\", \"type\": \"stream\", \"status\": \"running\", "
                    "\"current-progress\": 10, \"total-progress\": 100}")),
        P_EXPECT("job-cancel"), P_SEND(OK JOB("stream0", "aborting") JOB("stream0", "concluded")),
        P_EXPECT("query-jobs"),
        P_SEND(JOBS("{\"id\": \"stream0\", \"status\": \"concluded\", \"error\": \"Operation cancelled\"}")),
        P_EXPECT("job-dismiss"), P_SEND(OK), P_END};
    struct progress prog = {.stop = 1};
    struct qmp_job_options opts = {.poll_ms = 30, .progress = progress_cb, .opaque = &prog};
    struct qmp_args *a = qmp_args_new();
    struct fixture f;
    struct qs_error *err = NULL;
    (void)state;

    qmp_args_set_str(a, "device", "disk0");
    start(&f, script);
    assert_int_equal(qmp_job_run(f.c, "block-stream", a, "stream0", &opts, &err), -1);
    assert_error(&err, QS_ERR_CANCELLED, "job 'stream0' was cancelled");
    assert_int_equal(prog.calls, 1);
    end(&f);
    assert_string_equal(peer_names(f.peer),
                        "qmp_capabilities block-stream query-jobs job-cancel query-jobs job-dismiss");
    assert_string_equal(f.peer->args[1], "{\"device\":\"disk0\",\"job-id\":\"stream0\",\"auto-dismiss\":false}");
    assert_string_equal(f.peer->args[3], "{\"id\":\"stream0\"}");
    peer_free(f.peer);
    qmp_args_free(a);
}

static void test_job_commit_ready(void **state)
{
    static const struct peer_step script[] = {
        HELLO, P_EXPECT("block-commit"),
        P_SEND(JOB("commit0", "created") OK JOB("commit0", "running") JOB("commit0", "ready")
                   EVENT("BLOCK_JOB_READY", "{\"device\": \"commit0\", \"type\": \"commit\"}")),
        P_EXPECT("job-complete"),
        P_SEND(OK JOB("commit0", "waiting") JOB("commit0", "pending") JOB("commit0", "concluded")),
        P_EXPECT("job-dismiss"), P_SEND(OK), P_END};
    int outcome = 0;
    struct qmp_job_options opts = {.complete_on_ready = true, .concluded = concluded_cb, .opaque = &outcome};
    struct qmp_args *a = qmp_args_new();
    struct fixture f;
    struct qs_error *err = NULL;
    struct qmp_event *e;
    (void)state;

    qmp_args_set_str(a, "job-id", "commit0");
    qmp_args_set_str(a, "device", "top");
    qmp_args_set_str(a, "base-node", "base");
    start(&f, script);
    if (qmp_job_run(f.c, "block-commit", a, "commit0", &opts, &err) < 0)
        fail_msg("job: %s", err->message);
    assert_int_equal(outcome, 1); /* told before job-dismiss, from the events alone */
    assert_non_null(e = qmp_client_event_pop(f.c));
    assert_string_equal(qmp_event_name(e), "BLOCK_JOB_READY");
    qmp_event_free(e);
    end(&f);
    assert_string_equal(peer_names(f.peer), "qmp_capabilities block-commit job-complete job-dismiss");
    assert_string_equal(f.peer->args[1],
                        "{\"job-id\":\"commit0\",\"device\":\"top\",\"base-node\":\"base\",\"auto-dismiss\":false}");
    assert_string_equal(f.peer->args[2], "{\"id\":\"commit0\"}");
    peer_free(f.peer);
    /* the caller's arguments are not touched */
    {
        char *json = qmp_args_to_json(a);
        assert_string_equal(json, "{\"job-id\":\"commit0\",\"device\":\"top\",\"base-node\":\"base\"}");
        free(json);
    }
    qmp_args_free(a);
}

static void test_job_pending_finalize(void **state)
{
    static const struct peer_step script[] = {
        HELLO, P_EXPECT("block-commit"),
        P_SEND(OK JOB("c1", "created") JOB("c1", "running") JOB("c1", "waiting") JOB("c1", "pending")),
        P_EXPECT("query-jobs"), P_SEND(JOBS("{\"id\": \"c1\", \"type\": \"commit\", \"status\": \"pending\"}")),
        P_EXPECT("job-finalize"), P_SEND(OK JOB("c1", "concluded")),
        P_EXPECT("job-dismiss"), P_SEND(OK), P_END};
    struct qmp_job_options opts = {.poll_ms = 30};
    struct qmp_args *a = qmp_args_new();
    struct fixture f;
    struct qs_error *err = NULL;
    (void)state;

    qmp_args_set_str(a, "device", "top");
    qmp_args_set_str(a, "top-node", "mid");
    qmp_args_set_bool(a, "auto-finalize", false);
    start(&f, script);
    if (qmp_job_run(f.c, "block-commit", a, "c1", &opts, &err) < 0)
        fail_msg("job: %s", err->message);
    finish(&f);
    qmp_args_free(a);
}

static void test_job_complete_refused(void **state)
{
    static const struct peer_step script[] = {
        HELLO, P_EXPECT("drive-mirror"), P_SEND(OK JOB("m0", "created") JOB("m0", "running") JOB("m0", "ready")),
        P_EXPECT("job-complete"),
        P_SEND("{\"id\": \"@ID@\", \"error\": {\"class\": \"GenericError\", \"desc\": \"not ready\"}}\r\n"),
        P_EXPECT("job-cancel"), P_SEND(OK JOB("m0", "concluded")),
        P_EXPECT("query-jobs"), P_SEND(JOBS("{\"id\": \"m0\", \"status\": \"concluded\"}")),
        P_EXPECT("job-dismiss"), P_SEND(OK), P_END};
    struct qmp_job_options opts = {.complete_on_ready = true};
    struct fixture f;
    struct qs_error *err = NULL;
    (void)state;

    start(&f, script);
    assert_int_equal(qmp_job_run(f.c, "drive-mirror", NULL, "m0", &opts, &err), -1);
    assert_error(&err, QS_ERR_QEMU, "'job-complete' of job 'm0' refused: not ready");
    finish(&f);
}

static void test_job_timeout(void **state)
{
    /* no progress polls (poll_ms is long): at the deadline the job is cancelled, then dismissed */
    static const struct peer_step script[] = {
        HELLO, P_EXPECT("snapshot-delete"), P_SEND(OK JOB("d0", "created") JOB("d0", "running")),
        P_EXPECT("job-cancel"), P_SEND(OK JOB("d0", "aborting") JOB("d0", "concluded")),
        P_EXPECT("query-jobs"), P_SEND(JOBS("{\"id\": \"d0\", \"status\": \"concluded\"}")),
        P_EXPECT("job-dismiss"), P_SEND(OK), P_END};
    struct qmp_job_options opts = {.timeout_ms = 150, .poll_ms = 60000};
    struct fixture f;
    struct qs_error *err = NULL;
    int64_t t0 = qs_now_ms();
    (void)state;

    start(&f, script);
    assert_int_equal(qmp_job_run(f.c, "snapshot-delete", NULL, "d0", &opts, &err), -1);
    assert_true(qs_now_ms() - t0 >= 150);
    assert_error(&err, QS_ERR_TIMEOUT, "job 'd0' did not finish within 150 ms");
    finish(&f);
}

/* ------------------------------------------------------------------------------------------------
 * HMP and fd passing
 */

static void test_hmp(void **state)
{
    static const struct peer_step script[] = {
        HELLO, P_EXPECT("human-monitor-command"),
        P_SEND("{\"return\": \"ID        TAG\\r\\n1         s1\\r\\n\", \"id\": \"@ID@\"}\r\n"),
        P_EXPECT("human-monitor-command"),
        P_SEND("{\"return\": \"Error: Device 'vda' is writable but does not support snapshots\\r\\n\", "
               "\"id\": \"@ID@\"}\r\n"),
        P_EXPECT("human-monitor-command"), P_SEND("{\"return\": \" \\r\\nError:  bad\\r\\n\", \"id\": \"@ID@\"}\r\n"),
        P_EXPECT("human-monitor-command"), P_SEND("{\"return\": \"\", \"id\": \"@ID@\"}\r\n"),
        P_EXPECT("human-monitor-command"), P_SEND("{\"return\": {}, \"id\": \"@ID@\"}\r\n"), P_END};
    struct fixture f;
    struct qs_error *err = NULL;
    char *out = NULL;
    (void)state;

    start(&f, script);
    assert_int_equal(qmp_client_hmp(f.c, "info snapshots", &out, &err), 0);
    assert_string_equal(out, "ID        TAG\r\n1         s1\r\n");
    free(out);
    out = NULL;
    assert_int_equal(qmp_client_hmp(f.c, "savevm s1", &out, &err), -1);
    assert_null(out);
    assert_non_null(err);
    assert_string_equal(err->message, "Device 'vda' is writable but does not support snapshots");
    assert_string_equal(err->qmp_class, "GenericError");
    assert_error(&err, QS_ERR_QEMU, "");
    assert_int_equal(qmp_client_hmp(f.c, "delvm s1", NULL, &err), -1);
    assert_non_null(err);
    assert_string_equal(err->message, "bad");
    assert_error(&err, QS_ERR_QEMU, "");
    assert_int_equal(qmp_client_hmp(f.c, "loadvm s1", &out, &err), 0);
    assert_string_equal(out, "");
    free(out);
    assert_int_equal(qmp_client_hmp(f.c, "info status", NULL, &err), -1);
    assert_error(&err, QS_ERR_PROTOCOL, "returned no text");
    end(&f);
    assert_string_equal(f.peer->args[1], "{\"command-line\":\"info snapshots\"}");
    assert_string_equal(f.peer->args[2], "{\"command-line\":\"savevm s1\"}");
    peer_free(f.peer);
}

static void test_fd_passing(void **state)
{
    static const struct peer_step script[] = {HELLO, P_EXPECT("getfd"), P_FD("through the fd"), P_SEND(OK), P_END};
    struct fixture f;
    struct qs_error *err = NULL;
    char buf[64] = "";
    int p[2];
    (void)state;

    assert_int_equal(pipe(p), 0);
    start(&f, script);
    assert_int_equal(qmp_client_send_fd(f.c, p[1], "mig", &err), 0);
    close(p[1]);
    assert_int_equal(read(p[0], buf, sizeof(buf) - 1), 14);
    assert_string_equal(buf, "through the fd");
    assert_int_equal(qmp_client_send_fd(f.c, -1, "mig", &err), -1);
    assert_error(&err, QS_ERR_INVALID, "getfd");
    end(&f);
    assert_string_equal(f.peer->args[1], "{\"fdname\":\"mig\"}");
    assert_int_equal(f.peer->fds_before[0], 0); /* the fd came with getfd, not before */
    assert_int_equal(f.peer->fds_before[1], 1);
    peer_free(f.peer);
    close(p[0]);
}

/* ------------------------------------------------------------------------------------------------
 * Connecting to a UNIX socket path
 */

struct tmpdir {
    char dir[64];
    char path[96];
};

static void tmpdir_make(struct tmpdir *t)
{
    snprintf(t->dir, sizeof(t->dir), "/tmp/qsnap-qmp-XXXXXX");
    assert_non_null(mkdtemp(t->dir));
    snprintf(t->path, sizeof(t->path), "%s/qmp.sock", t->dir);
}

static void tmpdir_remove(struct tmpdir *t)
{
    unlink(t->path);
    assert_int_equal(rmdir(t->dir), 0);
}

static void test_connect_retry(void **state)
{
    static const struct peer_step script[] = {HELLO, P_END};
    struct qmp_options opts = {.connect_timeout_ms = 5000};
    struct qs_error *err = NULL;
    struct qmp_client *c;
    struct tmpdir t;
    struct peer *p;
    int64_t t0;
    (void)state;

    tmpdir_make(&t);
    t0 = qs_now_ms();
    p = peer_start_listen(script, t.path, 300);
    c = qmp_client_connect(t.path, &opts, &err);
    if (!c)
        fail_msg("connect: %s (peer: %s)", err->message, peer_join(p));
    assert_true(qs_now_ms() - t0 >= 250);
    assert_string_equal(qmp_client_version(c), "7.2.22");
    assert_int_equal(qmp_client_peer_pid(c), getpid());
    qmp_client_free(c);
    assert_string_equal(peer_join(p), "");
    peer_free(p);
    tmpdir_remove(&t);
}

static void test_connect_timeout(void **state)
{
    struct qmp_options opts = {.connect_timeout_ms = 300};
    struct qs_error *err = NULL;
    struct tmpdir t;
    char longpath[200];
    int64_t t0, dt;
    (void)state;

    tmpdir_make(&t);
    t0 = qs_now_ms();
    assert_null(qmp_client_connect(t.path, &opts, &err));
    dt = qs_now_ms() - t0;
    assert_true(dt >= 300 && dt < 60000); /* the 300 ms were waited; the upper bound only catches a hang */
    assert_non_null(err);
    assert_non_null(strstr(err->message, t.path));
    assert_error(&err, QS_ERR_TIMEOUT, strerror(ENOENT));

    memset(longpath, 'a', sizeof(longpath) - 1);
    longpath[sizeof(longpath) - 1] = '\0';
    assert_null(qmp_client_connect(longpath, &opts, &err));
    assert_error(&err, QS_ERR_INVALID, "too long");
    tmpdir_remove(&t);
}


/* file: migration: with the mapped-ram capability (which works over file: only) it is known without the
 * schema; without it, from query-qmp-schema (migrate's channels, whose addr has a "file" variant). A script
 * that does not list query-qmp-schema fails if the client asks for it. */
/* FEAT asked of a fake peer per script: WANT[i] each time, the second time without asking QEMU again (the
 * script would fail on a question it does not expect). */
static void feature_cases(enum qmp_feature feat, const struct peer_step *const *scripts, const bool *want, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct fixture f;
        struct qs_error *err = NULL;
        bool has = !want[i];
        struct qmp_client *c = start(&f, scripts[i]);
        if (qmp_client_feature(c, feat, &has, &err) < 0)
            fail_msg("case %zu: %s (peer: %s)", i, err->message, peer_join(f.peer));
        assert_int_equal(has, want[i]);
        has = !want[i];
        assert_int_equal(qmp_client_feature(c, feat, &has, &err), 0);
        assert_int_equal(has, want[i]);
        finish(&f);
    }
}

static void test_feature_file_migration(void **state)
{
#define FRET(v) "{\"return\": " v ", \"id\": \"@ID@\"}\r\n"
    static const struct peer_step with_mapped[] = {
        HELLO,
        P_EXPECT("query-commands"), P_SEND(FRET("[{\"name\": \"add-fd\"}, {\"name\": \"migrate\"}]")),
        P_EXPECT("query-migrate-capabilities"),
        P_SEND(FRET("[{\"capability\": \"multifd\", \"state\": false}, {\"capability\": \"mapped-ram\", "
                    "\"state\": false}]")),
        P_END};
    static const struct peer_step from_schema[] = {
        HELLO,
        P_EXPECT("query-commands"),
        P_SEND(FRET("[{\"name\": \"add-fd\"}, {\"name\": \"migrate\"}, {\"name\": \"query-qmp-schema\"}]")),
        P_EXPECT("query-migrate-capabilities"), P_SEND(FRET("[{\"capability\": \"multifd\", \"state\": false}]")),
        P_EXPECT("query-qmp-schema"),
        P_SEND(FRET("[{\"name\": \"migrate\", \"meta-type\": \"command\", \"arg-type\": \"1\"}, "
                    "{\"name\": \"1\", \"meta-type\": \"object\", \"members\": [{\"name\": \"channels\", "
                    "\"type\": \"[2]\"}]}, {\"name\": \"[2]\", \"meta-type\": \"array\", \"element-type\": \"2\"}, "
                    "{\"name\": \"2\", \"meta-type\": \"object\", \"members\": [{\"name\": \"addr\", \"type\": "
                    "\"3\"}]}, {\"name\": \"3\", \"meta-type\": \"object\", \"members\": [], \"variants\": "
                    "[{\"case\": \"socket\", \"type\": \"4\"}, {\"case\": \"file\", \"type\": \"5\"}]}]")),
        P_END};
    static const struct peer_step no_add_fd[] = {
        HELLO, P_EXPECT("query-commands"), P_SEND(FRET("[{\"name\": \"migrate\"}]")), P_END};
#undef FRET
    const struct peer_step *scripts[] = {with_mapped, from_schema, no_add_fd};
    const bool want[] = {true, true, false};
    (void)state;

    feature_cases(QMP_FEATURE_FILE_MIGRATION, scripts, want, sizeof(scripts) / sizeof(scripts[0]));
}

/* QMP_FEATURE_PRECOPY_COHERENT: QEMU 9.0+ without a question; before, only under KVM (query-kvm). */
static void test_feature_precopy(void **state)
{
#define FRET(v) "{\"return\": " v ", \"id\": \"@ID@\"}\r\n"
    static const struct peer_step tcg[] = {
        HELLO, P_EXPECT("query-kvm"), P_SEND(FRET("{\"enabled\": false, \"present\": true}")), P_END};
    static const struct peer_step kvm[] = {
        HELLO, P_EXPECT("query-kvm"), P_SEND(FRET("{\"enabled\": true, \"present\": true}")), P_END};
    static const struct peer_step nine[] = {
        P_SEND("{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 0, \"major\": 9}, \"package\": "
               "\"\"}, \"capabilities\": []}}\r\n"),
        P_EXPECT("qmp_capabilities"), P_SEND(OK), P_END};
#undef FRET
    const struct peer_step *scripts[] = {tcg, kvm, nine};
    const bool want[] = {false, true, true};
    (void)state;

    feature_cases(QMP_FEATURE_PRECOPY_COHERENT, scripts, want, sizeof(scripts) / sizeof(scripts[0]));
}

/* What the schema told is kept per QEMU binary: a second connection to the same binary (here this process, the
 * peer's /proc/PID/exe) and version is answered from the file without query-qmp-schema; another version asks. */
static void test_feature_cache(void **state)
{
#define FRET(v) "{\"return\": " v ", \"id\": \"@ID@\"}\r\n"
#define CMDS                                                                                                    \
    P_EXPECT("query-commands"),                                                                                 \
        P_SEND(FRET("[{\"name\": \"add-fd\"}, {\"name\": \"migrate\"}, {\"name\": \"query-qmp-schema\"}]"))
#define CAPS P_EXPECT("query-migrate-capabilities"), P_SEND(FRET("[{\"capability\": \"multifd\", \"state\": false}]"))
#define SCHEMA                                                                                                  \
    P_EXPECT("query-qmp-schema"),                                                                               \
        P_SEND(FRET("[{\"name\": \"migrate\", \"meta-type\": \"command\", \"arg-type\": \"1\"}, {\"name\": \"1\", " \
                    "\"meta-type\": \"object\", \"members\": [{\"name\": \"channels\", \"type\": \"[2]\"}]}, "     \
                    "{\"name\": \"[2]\", \"meta-type\": \"array\", \"element-type\": \"2\"}, {\"name\": \"2\", "      \
                    "\"meta-type\": \"object\", \"members\": [{\"name\": \"addr\", \"type\": \"3\"}]}, {\"name\": "   \
                    "\"3\", \"meta-type\": \"object\", \"members\": [], \"variants\": [{\"case\": \"file\", "           \
                    "\"type\": \"5\"}]}]"))
    static const struct peer_step first[] = {HELLO, CMDS, CAPS, SCHEMA, P_END};
    static const struct peer_step again[] = {HELLO, CMDS, CAPS, P_END};
    static const struct peer_step other[] = {
        P_SEND("{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 1, \"minor\": 2, \"major\": 8}, \"package\": "
               "\"\"}, \"capabilities\": []}}\r\n"),
        P_EXPECT("qmp_capabilities"), P_SEND(OK), CMDS, CAPS, SCHEMA, P_END};
#undef SCHEMA
#undef CAPS
#undef CMDS
#undef FRET
    const struct peer_step *scripts[] = {first, again, other, again};
    struct tmpdir t;
    char *text = NULL;
    size_t len = 0;
    struct dirent *de;
    DIR *d;
    int files = 0;
    (void)state;

    tmpdir_make(&t);
    for (size_t i = 0; i < sizeof(scripts) / sizeof(scripts[0]); i++) {
        struct fixture f;
        struct qs_error *err = NULL;
        bool has = false;
        struct qmp_client *c = start(&f, scripts[i]);
        qmp_client_set_feature_cache(c, t.dir);
        if (qmp_client_feature(c, QMP_FEATURE_FILE_MIGRATION, &has, &err) < 0)
            fail_msg("case %zu: %s (peer: %s)", i, err->message, peer_join(f.peer));
        if (!has)
            fail_msg("case %zu: no file: migration", i);
        finish(&f);
    }
    /* one file per binary and version, its key written out */
    assert_non_null(d = opendir(t.dir));
    while ((de = readdir(d))) {
        char *path;
        struct qs_error *err = NULL;
        if (de->d_name[0] == '.')
            continue;
        files++;
        path = qs_asprintf("%s/%s", t.dir, de->d_name);
        assert_int_equal(qs_file_read(AT_FDCWD, path, 4096, &text, &len, &err), 0);
        assert_non_null(strstr(text, "qsnap-qemu-features 1\nkey "));
        assert_non_null(strstr(text, "\nfile-migration 1\n"));
        free(text);
        unlink(path);
        free(path);
    }
    closedir(d);
    assert_int_equal(files, 2);
    tmpdir_remove(&t);
}

static void test_connect_no_greeting(void **state)
{
    /* QEMU with a client already: connect() succeeds (the backlog takes it) and nothing is ever said */
    struct qmp_options opts = {.connect_timeout_ms = 300};
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct qs_error *err = NULL;
    struct tmpdir t;
    int lfd;
    (void)state;

    tmpdir_make(&t);
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", t.path);
    lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(lfd, 4), 0);
    assert_null(qmp_client_connect(t.path, &opts, &err));
    assert_non_null(err);
    assert_non_null(strstr(err->message, "gave no greeting within"));
    assert_error(&err, QS_ERR_BUSY, "is another client connected?");
    close(lfd);
    tmpdir_remove(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_args_json),
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_greeting),
        cmocka_unit_test(test_bad_greeting),
        cmocka_unit_test(test_capabilities_with_greeting),
        cmocka_unit_test(test_split_frames),
        cmocka_unit_test(test_many_in_one_write),
        cmocka_unit_test(test_events_before_reply),
        cmocka_unit_test(test_event_queue_cap),
        cmocka_unit_test(test_error_reply),
        cmocka_unit_test(test_reply_other_id),
        cmocka_unit_test(test_parse_error_without_id),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_nul_byte),
        cmocka_unit_test(test_oversize),
        cmocka_unit_test(test_eof),
        cmocka_unit_test(test_connection_reset),
        cmocka_unit_test(test_write_to_closed),
        cmocka_unit_test(test_silent_peer),
        cmocka_unit_test(test_job_success),
        cmocka_unit_test(test_job_events_before_reply),
        cmocka_unit_test(test_job_failed),
        cmocka_unit_test(test_job_events_dropped),
        cmocka_unit_test(test_job_dismissing),
        cmocka_unit_test(test_job_command_refused),
        cmocka_unit_test(test_job_stale),
        cmocka_unit_test(test_job_kept_dismiss),
        cmocka_unit_test(test_job_cancelled),
        cmocka_unit_test(test_job_commit_ready),
        cmocka_unit_test(test_job_pending_finalize),
        cmocka_unit_test(test_job_complete_refused),
        cmocka_unit_test(test_job_timeout),
        cmocka_unit_test(test_hmp),
        cmocka_unit_test(test_fd_passing),
        cmocka_unit_test(test_connect_retry),
        cmocka_unit_test(test_connect_timeout),
        cmocka_unit_test(test_connect_no_greeting),
        cmocka_unit_test(test_feature_file_migration),
        cmocka_unit_test(test_feature_precopy),
        cmocka_unit_test(test_feature_cache),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
