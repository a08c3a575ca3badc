/* fuzz_qmp.c: libFuzzer harness: arbitrary bytes as everything a QMP peer sends (greeting, replies, events). */
#include "fuzz_common.h"
#include "qmp.h"

#include <stdlib.h>
#include <string.h>

/*
 * Input: byte 0 seeds how the rest is split into reads (see fuzz_common.h); the rest is the peer's stream.
 * The client connects (greeting, qmp_capabilities) and then runs a command, HMP, event polling and a job,
 * each consuming what the stream holds next; replies without an "id" answer the outstanding command.
 */

/* Walks every value the way callers read them. */
static void walk(const struct qmp_value *v, int depth)
{
    const struct qmp_value *child;
    const char *key;
    int64_t i;
    bool b;

    if (!v || depth > 64)
        return;
    (void)qmp_value_type(v);
    (void)qmp_value_string(v);
    (void)qmp_value_int(v, &i);
    (void)qmp_value_bool(v, &b);
    (void)qmp_value_path(v, "QMP.version.qemu");
    (void)qmp_value_get_string(v, "status");
    for (size_t n = 0; n < qmp_value_array_len(v); n++)
        walk(qmp_value_array_at(v, n), depth + 1);
    for (size_t n = 0; qmp_value_object_at(v, n, &key, &child); n++)
        walk(child, depth + 1);
}

static void walk_events(struct qmp_client *c)
{
    struct qmp_event *e;

    while ((e = qmp_client_event_pop(c))) {
        (void)qmp_event_name(e);
        (void)qmp_event_timestamp_us(e);
        walk(qmp_event_data(e), 0);
        qmp_event_free(e);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct qmp_options opts = {.connect_timeout_ms = 2000, .timeout_ms = 2000, .max_message = 1 << 20,
                               .max_events = 8};
    struct qmp_job_options jopts = {.timeout_ms = 2000, .poll_ms = 1};
    struct qs_error *err = NULL;
    struct qmp_client *c;
    struct qmp_reply *r = NULL;
    struct qmp_event *ev = NULL;
    struct qmp_args *args;
    struct fuzz_peer *peer;
    char *out = NULL, *json;
    int fd, major, minor, micro;

    if (size < 1)
        return 0;
    peer = fuzz_peer_start(data + 1, size - 1, data[0], 0, &fd);
    c = qmp_client_new_fd(fd, &opts, &err);
    qs_error_free(err);
    err = NULL;
    if (!c)
        goto out;
    (void)qmp_client_version(c);
    (void)qmp_client_package(c);
    qmp_client_version_num(c, &major, &minor, &micro);

    if (qmp_client_execute(c, "query-status", NULL, &r, &err) == 0) {
        walk(qmp_reply_value(r), 0);
        json = qmp_value_to_json(qmp_reply_value(r));
        free(json);
        qmp_reply_free(r);
    }
    qs_error_free(err);
    err = NULL;
    if (qmp_client_hmp(c, "info status", &out, &err) == 0)
        free(out);
    qs_error_free(err);
    err = NULL;
    walk_events(c);
    qmp_client_poll(c, &err);
    qs_error_free(err);
    err = NULL;
    if (qmp_client_event_wait(c, "JOB_STATUS_CHANGE", "id", "job0", 0, &ev, &err) == 0)
        qmp_event_free(ev);
    qs_error_free(err);
    err = NULL;
    walk_events(c);

    args = qmp_args_new();
    qmp_args_set_str(args, "tag", "s1");
    qmp_args_set_str(args, "vmstate", "vda");
    qmp_args_push_str(qmp_args_set_list(args, "devices"), "vda");
    qmp_job_run(c, "snapshot-save", args, "job0", &jopts, &err);
    qmp_args_free(args);
    qs_error_free(err);
    err = NULL;
    walk_events(c);
    qmp_client_free(c);
out:
    fuzz_peer_join(peer);

    /* the same bytes as one JSON text through the value API */
    if ((json = malloc(size))) {
        memcpy(json, data + 1, size - 1);
        json[size - 1] = '\0';
        if ((r = qmp_reply_parse(json, &err))) {
            walk(qmp_reply_value(r), 0);
            free(qmp_value_to_json(qmp_reply_value(r)));
            qmp_reply_free(r);
        }
        qs_error_free(err);
        free(json);
    }
    return 0;
}
