/* qmp.c: the QMP client - UNIX socket, framing, request ids, the event queue, HMP and fd passing. */
#include "qmp_priv.h"
#include "qs_util.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_CONNECT_TIMEOUT_MS 10000
#define DEFAULT_TIMEOUT_MS 30000
#define DEFAULT_MAX_MESSAGE ((size_t)64 << 20)
#define DEFAULT_MAX_EVENTS 4096
#define CONNECT_RETRY_MS 20
#define READ_CHUNK 65536

struct qmp_client {
    int fd;
    char *name;          /* the socket path, or "fd N": the subject of messages */
    int timeout_ms;
    size_t max_message;
    size_t max_events;
    bool broken;         /* after a timeout, disconnect or protocol error the stream cannot be trusted */
    json_tokener *tok;
    size_t msg_bytes;    /* bytes of the message being parsed that tok has seen */
    size_t rpos, rlen;   /* unparsed bytes are rbuf[rpos..rlen) */
    struct qmp_event *ev_head, *ev_tail;
    size_t ev_count;
    uint64_t ev_dropped; /* events dropped past the cap, ever */
    char version[40];
    int major, minor, micro;
    char *package;
    pid_t peer_pid;
    unsigned owed;       /* replies to qmp_client_send's requests not read yet (they come before any other) */
    qmp_release_fn release; /* qmp_client_set_release */
    void *release_opaque;
    struct qmp_features *features; /* qmp_features.c's per-connection cache; NULL until first asked */
    char rbuf[READ_CHUNK];
};

static int client_fail(struct qmp_client *c)
{
    c->broken = true;
    return -1;
}

static int client_check(const struct qmp_client *c, struct qs_error **err)
{
    if (!c->broken)
        return 0;
    qs_error_set(err, QS_ERR_DISCONNECTED, "QMP connection '%s' is unusable after an earlier error", c->name);
    return -1;
}

static int ms_left(int64_t deadline)
{
    int64_t left = deadline - qs_now_ms();

    return left <= 0 ? 0 : left > INT_MAX ? INT_MAX : (int)left;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};

    nanosleep(&ts, NULL); /* an early wake-up by a signal only means one more retry */
}

/* ------------------------------------------------------------------------------------------------
 * Events
 */

const char *qmp_event_name(const struct qmp_event *e)
{
    return e->name;
}

const struct qmp_value *qmp_event_data(const struct qmp_event *e)
{
    return (const struct qmp_value *)e->data;
}

int64_t qmp_event_timestamp_us(const struct qmp_event *e)
{
    return e->timestamp_us;
}

void qmp_event_free(struct qmp_event *e)
{
    if (!e)
        return;
    json_object_put(e->msg);
    free(e);
}

static bool event_matches(const struct qmp_event *e, const char *name, const char *key, const char *val)
{
    if (name && strcmp(e->name, name) != 0)
        return false;
    return !key || qs_str_equal(qmp_value_get_string(qmp_event_data(e), key), val);
}

static void event_unlink(struct qmp_client *c, struct qmp_event *prev, struct qmp_event *e)
{
    if (prev)
        prev->next = e->next;
    else
        c->ev_head = e->next;
    if (c->ev_tail == e)
        c->ev_tail = prev;
    e->next = NULL;
    c->ev_count--;
}

static struct qmp_event *event_queue_take(struct qmp_client *c, const char *name, const char *key, const char *val)
{
    struct qmp_event *prev = NULL;

    for (struct qmp_event *e = c->ev_head; e; prev = e, e = e->next) {
        if (event_matches(e, name, key, val)) {
            event_unlink(c, prev, e);
            return e;
        }
    }
    return NULL;
}

/* Takes over MSG, an {"event": ...} message, and queues it, dropping the oldest past the cap. */
static int event_queue(struct qmp_client *c, json_object *msg, struct qs_error **err)
{
    struct qmp_event *e = NULL;
    json_object *name = NULL, *data = NULL;
    const struct qmp_value *ts;
    int64_t sec, usec;
    int ret = -1;

    json_object_object_get_ex(msg, "event", &name);
    if (!json_object_is_type(name, json_type_string)) {
        qs_error_set(err, QS_ERR_PROTOCOL, "QMP event on '%s' has no name", c->name);
        goto out;
    }
    if (!json_object_object_get_ex(msg, "data", &data)) {
        data = qmp_json_check(json_object_new_object());
        qmp_json_set(msg, "data", data);
    } else if (!json_object_is_type(data, json_type_object)) {
        qs_error_set(err, QS_ERR_PROTOCOL, "QMP event '%s' on '%s' has data that is not an object",
                     json_object_get_string(name), c->name);
        goto out;
    }
    e = qs_xcalloc(1, sizeof(*e));
    e->name = json_object_get_string(name);
    e->data = data;
    /* left 0 when absent or out of range */
    ts = qmp_value_get((const struct qmp_value *)msg, "timestamp");
    if (qmp_value_int(qmp_value_get(ts, "seconds"), &sec) && qmp_value_int(qmp_value_get(ts, "microseconds"), &usec) &&
        sec >= 0 && sec < INT64_MAX / 1000000 - 1 && usec >= 0 && usec < 1000000)
        e->timestamp_us = sec * 1000000 + usec;
    e->msg = msg;
    msg = NULL;
    while (c->ev_count >= c->max_events) {
        struct qmp_event *oldest = c->ev_head;
        event_unlink(c, NULL, oldest);
        qmp_event_free(oldest);
        c->ev_dropped++;
    }
    if (c->ev_tail)
        c->ev_tail->next = e;
    else
        c->ev_head = e;
    c->ev_tail = e;
    c->ev_count++;
    ret = 0;
out:
    json_object_put(msg);
    return ret < 0 ? client_fail(c) : 0;
}

struct qmp_event *qmp_client_event_pop(struct qmp_client *c)
{
    return event_queue_take(c, NULL, NULL, NULL);
}

void qmp_client_event_drop(struct qmp_client *c, const char *name, const char *key, const char *val)
{
    struct qmp_event *e;

    while ((e = event_queue_take(c, name, key, val)))
        qmp_event_free(e);
}

void qmp_client_event_clear(struct qmp_client *c)
{
    qmp_client_event_drop(c, NULL, NULL, NULL);
}

/* ------------------------------------------------------------------------------------------------
 * Reading and framing: json-c's streaming tokener finds where each message ends, so neither several
 * messages in one read nor one message over many reads needs the "\r\n" QEMU puts after each.
 */

/* One recv() of up to MAX bytes into rbuf: 1 read, 0 nothing there, -1 error (the client is broken). */
static int client_recv(struct qmp_client *c, size_t max, struct qs_error **err)
{
    ssize_t n;

    do {
        n = recv(c->fd, c->rbuf, max, MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    if (n > 0) {
        c->rpos = 0;
        c->rlen = (size_t)n;
        return 1;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return 0;
    if (n == 0)
        qs_error_set(err, QS_ERR_DISCONNECTED, "QEMU closed the QMP connection '%s'%s", c->name,
                     c->msg_bytes ? " in the middle of a message" : "");
    else
        qs_error_set_errno(err, errno == ECONNRESET ? QS_ERR_DISCONNECTED : QS_ERR_IO, errno,
                           "cannot read from QMP socket '%s'", c->name);
    return client_fail(c);
}

/* Waits until DEADLINE for bytes: 1 read, 0 deadline passed, -1 error. */
static int client_fill(struct qmp_client *c, int64_t deadline, struct qs_error **err)
{
    struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
    int left, r;

    while ((left = ms_left(deadline)) > 0) {
        r = poll(&pfd, 1, left);
        if (r < 0 && errno != EINTR) {
            qs_error_set_errno(err, QS_ERR_IO, errno, "cannot poll QMP socket '%s'", c->name);
            return client_fail(c);
        }
        if (r > 0 && (r = client_recv(c, sizeof(c->rbuf), err)) != 0)
            return r;
    }
    return 0;
}

/* The next complete message from the bytes already read: 1 with *msg, 0 when more are needed, -1 error. */
static int client_parse(struct qmp_client *c, json_object **msg, struct qs_error **err)
{
    while (c->rpos < c->rlen) {
        size_t n = c->rlen - c->rpos, room = c->max_message - c->msg_bytes;
        enum json_tokener_error jerr;
        json_object *o;

        if (c->msg_bytes == 0 && memchr(" \t\r\n", c->rbuf[c->rpos], 4)) {
            c->rpos++; /* between messages: not part of any */
            continue;
        }
        if (room == 0) {
            qs_error_set(err, QS_ERR_TOOBIG, "QMP message on '%s' is larger than %zu bytes", c->name,
                         c->max_message);
            return client_fail(c);
        }
        if (n > room)
            n = room;
        o = json_tokener_parse_ex(c->tok, c->rbuf + c->rpos, (int)n);
        jerr = json_tokener_get_error(c->tok);
        if (jerr == json_tokener_continue) {
            c->rpos += n;
            c->msg_bytes += n;
            continue;
        }
        if (jerr != json_tokener_success) {
            qs_error_set(err, QS_ERR_PROTOCOL, "QEMU sent invalid JSON on '%s': %s", c->name,
                         json_tokener_error_desc(jerr));
            return client_fail(c);
        }
        c->rpos += json_tokener_get_parse_end(c->tok);
        c->msg_bytes = 0;
        if (!json_object_is_type(o, json_type_object)) {
            json_object_put(o);
            qs_error_set(err, QS_ERR_PROTOCOL, "QMP message on '%s' is not a JSON object", c->name);
            return client_fail(c);
        }
        *msg = o;
        return 1;
    }
    return 0;
}

/* The next message, reading until DEADLINE: 1 with *msg, 0 deadline passed, -1 error. */
static int client_read(struct qmp_client *c, int64_t deadline, json_object **msg, struct qs_error **err)
{
    int r;

    while ((r = client_parse(c, msg, err)) == 0) {
        if ((r = client_fill(c, deadline, err)) <= 0)
            return r;
    }
    return r;
}

/*
 * Files MSG (taken over): an event is queued (*queued set), a reply is handed back in *reply when a request
 * AWAITS one, any other reply is dropped. 0 or -1 (a message that is neither breaks the client).
 */
static int client_file(struct qmp_client *c, json_object *msg, bool awaits, json_object **reply, bool *queued,
                       struct qs_error **err)
{
    json_object *v = NULL;
    bool ours;
    int ret = 0;

    if (json_object_object_get_ex(msg, "event", NULL)) {
        ret = event_queue(c, msg, err);
        *queued = ret == 0;
        return ret;
    }
    if (json_object_object_get_ex(msg, "return", NULL) || json_object_object_get_ex(msg, "error", NULL)) {
        /* qsnap's requests carry no id (client_request): QEMU answers a client's requests one by one, in
         * order, so a reply is the oldest outstanding request's - and a client that gives one up (a timeout)
         * is broken for good. A reply that carries an id answers no request of ours: dropped. */
        ours = !json_object_object_get_ex(msg, "id", &v);
        if (ours && c->owed) {
            c->owed--; /* a qmp_client_send's: nobody waits for it */
        } else if (ours && awaits) {
            *reply = msg;
            msg = NULL;
        }
    } else {
        qs_error_set(err, QS_ERR_PROTOCOL, "QMP message on '%s' is neither a reply nor an event", c->name);
        ret = client_fail(c);
    }
    json_object_put(msg);
    return ret;
}

/* Reads and files one message (see client_file): 1, 0 when DEADLINE passed, -1 error. */
static int client_step(struct qmp_client *c, int64_t deadline, bool awaits, json_object **reply, bool *queued,
                       struct qs_error **err)
{
    json_object *msg = NULL;
    int r;

    if ((r = client_read(c, deadline, &msg, err)) <= 0)
        return r;
    return client_file(c, msg, awaits, reply, queued, err) < 0 ? -1 : 1;
}

int qmp_client_poll(struct qmp_client *c, struct qs_error **err)
{
    json_object *msg = NULL, *reply = NULL;
    bool queued = false;
    int avail = 0, r;

    if (client_check(c, err) < 0)
        return -1;
    /* only what is there now, so that a peer that never stops talking cannot keep us here */
    if (ioctl(c->fd, FIONREAD, &avail) < 0) {
        qs_error_set_errno(err, QS_ERR_IO, errno, "cannot poll QMP socket '%s'", c->name);
        return client_fail(c);
    }
    if (avail == 0)
        avail = 1; /* FIONREAD says 0 at EOF too: one read tells EOF from nothing */
    for (;;) {
        msg = NULL;
        if ((r = client_parse(c, &msg, err)) < 0)
            return -1;
        if (r > 0) {
            if (client_file(c, msg, false, &reply, &queued, err) < 0)
                return -1;
            continue;
        }
        if (avail <= 0)
            return 0;
        if ((r = client_recv(c, (size_t)avail < sizeof(c->rbuf) ? (size_t)avail : sizeof(c->rbuf), err)) <= 0)
            return r;
        avail -= (int)c->rlen;
    }
}

int qmp_client_event_take(struct qmp_client *c, const char *name, const char *key, const char *val,
                          int timeout_ms, struct qmp_event **ev, struct qs_error **err)
{
    json_object *reply = NULL;
    int64_t deadline;
    bool queued;
    int r;

    if (client_check(c, err) < 0)
        return -1;
    if ((*ev = event_queue_take(c, name, key, val)))
        return 1;
    if (timeout_ms == 0) {
        if (qmp_client_poll(c, err) < 0)
            return -1;
        *ev = event_queue_take(c, name, key, val);
        return *ev ? 1 : 0;
    }
    deadline = qs_now_ms() + (timeout_ms < 0 ? c->timeout_ms : timeout_ms);
    for (;;) {
        queued = false;
        if ((r = client_step(c, deadline, false, &reply, &queued, err)) <= 0)
            return r;
        if (queued && (*ev = event_queue_take(c, name, key, val)))
            return 1;
    }
}

int qmp_client_event_wait(struct qmp_client *c, const char *name, const char *match_key, const char *match_val,
                          int timeout_ms, struct qmp_event **ev, struct qs_error **err)
{
    int r = qmp_client_event_take(c, name, match_key, match_val, timeout_ms, ev, err);

    if (r == 0) {
        if (match_key)
            qs_error_set(err, QS_ERR_TIMEOUT, "no QMP event '%s' with %s '%s' within %d ms", name ? name : "*",
                         match_key, match_val ? match_val : "", timeout_ms < 0 ? c->timeout_ms : timeout_ms);
        else
            qs_error_set(err, QS_ERR_TIMEOUT, "no QMP event '%s' within %d ms", name ? name : "*",
                         timeout_ms < 0 ? c->timeout_ms : timeout_ms);
    }
    return r > 0 ? 0 : -1;
}

/* ------------------------------------------------------------------------------------------------
 * Commands
 */

/* Sends LEN bytes before DEADLINE; FD (when >= 0) travels with the first of them. */
static int client_send(struct qmp_client *c, const char *buf, size_t len, int fd, int64_t deadline,
                       struct qs_error **err)
{
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int))];
    } ctl;
    struct pollfd pfd = {.fd = c->fd, .events = POLLOUT};
    size_t off = 0;

    while (off < len) {
        struct iovec iov = {.iov_base = (char *)buf + off, .iov_len = len - off};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
        struct cmsghdr *cm;
        ssize_t n;
        int left;

        if (fd >= 0) {
            memset(&ctl, 0, sizeof(ctl));
            mh.msg_control = ctl.buf;
            mh.msg_controllen = sizeof(ctl.buf);
            cm = CMSG_FIRSTHDR(&mh);
            cm->cmsg_level = SOL_SOCKET;
            cm->cmsg_type = SCM_RIGHTS;
            cm->cmsg_len = CMSG_LEN(sizeof(int));
            memcpy(CMSG_DATA(cm), &fd, sizeof(int));
        }
        n = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n >= 0) {
            off += (size_t)n;
            fd = -1;
            continue;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            qs_error_set_errno(err, errno == EPIPE || errno == ECONNRESET ? QS_ERR_DISCONNECTED : QS_ERR_IO, errno,
                               "cannot write to QMP socket '%s'", c->name);
            return client_fail(c);
        }
        if ((left = ms_left(deadline)) == 0) {
            qs_error_set(err, QS_ERR_TIMEOUT, "timed out writing to QMP socket '%s': QEMU is not reading", c->name);
            return client_fail(c);
        }
        if (poll(&pfd, 1, left) < 0 && errno != EINTR) {
            qs_error_set_errno(err, QS_ERR_IO, errno, "cannot poll QMP socket '%s'", c->name);
            return client_fail(c);
        }
    }
    return 0;
}

static int client_reply_error(struct qmp_client *c, const char *command, json_object *error, struct qs_error **err)
{
    const struct qmp_value *e = (const struct qmp_value *)error;
    const char *cls = qmp_value_get_string(e, "class"), *desc = qmp_value_get_string(e, "desc");

    if (!cls || !desc) {
        qs_error_set(err, QS_ERR_PROTOCOL, "QMP error reply to '%s' on '%s' lacks 'class' or 'desc'", command,
                     c->name);
        return client_fail(c);
    }
    qs_error_set_qmp(err, cls, "%s", desc);
    return -1;
}

/* Sends COMMAND (ARGS, FD passed with it when >= 0) before DEADLINE. */
static int client_request(struct qmp_client *c, const char *command, json_object *args, int fd, int64_t deadline,
                          struct qs_error **err)
{
    json_object *cmd;
    char *line;
    int r;

    /* No "id": QEMU's monitor reads a request one byte per main-loop iteration (monitor_can_read() allows 1),
     * ~16 us a byte on the machines qsnap is measured on (more under load), and answers in order anyway */
    cmd = qmp_json_check(json_object_new_object());
    qmp_json_set(cmd, "execute", qmp_json_check(json_object_new_string(command)));
    if (args)
        qmp_json_set(cmd, "arguments", json_object_get(args));
    line = qs_asprintf("%s\n", json_object_to_json_string_ext(cmd, JSON_C_TO_STRING_PLAIN |
                                                                        JSON_C_TO_STRING_NOSLASHESCAPE));
    r = client_send(c, line, strlen(line), fd, deadline, err);
    free(line);
    json_object_put(cmd);
    return r;
}

/* Waits until DEADLINE (TIMEOUT_MS from the request) for the reply to the oldest request (COMMAND) and takes
 * it. */
static int client_await(struct qmp_client *c, const char *command, int64_t deadline, int timeout_ms,
                        struct qmp_reply **ret, struct qs_error **err)
{
    json_object *reply = NULL, *v = NULL;
    bool queued;
    int r = -1;

    while (!reply) {
        queued = false;
        if ((r = client_step(c, deadline, true, &reply, &queued, err)) == 0) {
            qs_error_set(err, QS_ERR_TIMEOUT, "QEMU did not reply to '%s' within %d ms", command, timeout_ms);
            client_fail(c);
        }
        if (r <= 0) {
            r = -1;
            goto out;
        }
    }
    if (json_object_object_get_ex(reply, "error", &v)) {
        r = client_reply_error(c, command, v, err);
        goto out;
    }
    json_object_object_get_ex(reply, "return", &v);
    if (ret)
        *ret = qmp_reply_wrap(json_object_get(v));
    r = 0;
out:
    json_object_put(reply);
    return r;
}

static int client_execute_sent(struct qmp_client *c, const char *command, json_object *args, int fd,
                               int timeout_ms, void (*sent)(void *), void *opaque, struct qmp_reply **ret,
                               struct qs_error **err)
{
    int64_t deadline;

    if (client_check(c, err) < 0)
        return -1;
    if (timeout_ms <= 0)
        timeout_ms = c->timeout_ms;
    deadline = qs_now_ms() + timeout_ms;
    if (client_request(c, command, args, fd, deadline, err) < 0)
        return -1;
    if (sent)
        sent(opaque);
    return client_await(c, command, deadline, timeout_ms, ret, err);
}

static int client_execute(struct qmp_client *c, const char *command, json_object *args, int fd, int timeout_ms,
                          struct qmp_reply **ret, struct qs_error **err)
{
    return client_execute_sent(c, command, args, fd, timeout_ms, NULL, NULL, ret, err);
}

int qmp_client_execute_sent(struct qmp_client *c, const char *command, const struct qmp_args *args,
                            void (*sent)(void *opaque), void *opaque, struct qmp_reply **ret,
                            struct qs_error **err)
{
    return client_execute_sent(c, command, qmp_json(args), -1, -1, sent, opaque, ret, err);
}

/*
 * Two commands in one round trip: FIRST and SECOND are sent together and their replies read in order (QEMU's
 * monitor runs a client's commands one after the other and answers each in turn). SECOND is sent whatever
 * FIRST's outcome: only for pairs where that is harmless. ret1, err1 and ret2, err2 (both NULL on entry)
 * are each command's reply or error; -1 when the connection itself failed (the reason in *err1).
 */
int qmp_client_execute_pair(struct qmp_client *c, const char *first, const struct qmp_args *args1,
                            struct qmp_reply **ret1, struct qs_error **err1, const char *second,
                            const struct qmp_args *args2, struct qmp_reply **ret2, struct qs_error **err2)
{
    int timeout_ms = c->timeout_ms, r1;
    int64_t deadline = qs_now_ms() + timeout_ms;

    if (client_check(c, err1) < 0 || client_request(c, first, qmp_json(args1), -1, deadline, err1) < 0)
        return -1;
    if (client_request(c, second, qmp_json(args2), -1, deadline, err1) < 0)
        return -1;
    r1 = client_await(c, first, deadline, timeout_ms, ret1, err1);
    if (r1 < 0 && client_check(c, NULL) < 0)
        return -1;
    if (client_await(c, second, deadline, timeout_ms, ret2, err2) < 0 && client_check(c, NULL) < 0) {
        qs_error_free(*err1);
        *err1 = NULL;
        qs_error_propagate(err1, err2);
        return -1;
    }
    return 0;
}

int qmp_client_send(struct qmp_client *c, const char *command, const struct qmp_args *args, struct qs_error **err)
{
    if (client_check(c, err) < 0 ||
        client_request(c, command, qmp_json(args), -1, qs_now_ms() + c->timeout_ms, err) < 0)
        return -1;
    c->owed++;
    return 0;
}

int qmp_client_settle(struct qmp_client *c, struct qs_error **err)
{
    int64_t deadline = qs_now_ms() + c->timeout_ms;
    json_object *reply = NULL;
    bool queued;
    int r;

    while (c->owed) {
        if (client_check(c, err) < 0)
            return -1;
        if ((r = client_step(c, deadline, false, &reply, &queued, err)) == 0) {
            qs_error_set(err, QS_ERR_TIMEOUT, "QEMU did not reply on '%s' within %d ms", c->name, c->timeout_ms);
            return client_fail(c);
        }
        if (r < 0)
            return -1;
    }
    return 0;
}

bool qmp_client_kept(const struct qmp_client *c)
{
    return c->release != NULL;
}

int qmp_client_execute_timeout(struct qmp_client *c, const char *command, const struct qmp_args *args,
                               int timeout_ms, struct qmp_reply **ret, struct qs_error **err)
{
    return client_execute(c, command, qmp_json(args), -1, timeout_ms, ret, err);
}

int qmp_client_execute(struct qmp_client *c, const char *command, const struct qmp_args *args,
                       struct qmp_reply **ret, struct qs_error **err)
{
    return client_execute(c, command, qmp_json(args), -1, -1, ret, err);
}

int qmp_client_hmp(struct qmp_client *c, const char *command_line, char **output, struct qs_error **err)
{
    json_object *args = qmp_json_check(json_object_new_object());
    struct qmp_reply *reply = NULL;
    const char *text, *p;
    size_t n;
    int ret = -1;

    qmp_json_set(args, "command-line", qmp_json_check(json_object_new_string(command_line)));
    if (client_execute(c, "human-monitor-command", args, -1, -1, &reply, err) < 0)
        goto out;
    if (!(text = qmp_value_string(qmp_reply_value(reply)))) {
        qs_error_set(err, QS_ERR_PROTOCOL, "'human-monitor-command' on '%s' returned no text", c->name);
        goto out;
    }
    /* HMP reports failures as a successful reply that reads "Error: ...\r\n" */
    p = text + strspn(text, " \t\r\n");
    if (qs_str_has_prefix(p, "Error:")) {
        p += strlen("Error:");
        p += strspn(p, " \t");
        for (n = strlen(p); n > 0 && (p[n - 1] == '\r' || p[n - 1] == '\n' || p[n - 1] == ' '); n--)
            ;
        qs_error_set_qmp(err, "GenericError", "%.*s", (int)n, p);
        goto out;
    }
    if (output)
        *output = qs_xstrdup(text);
    ret = 0;
out:
    qmp_reply_free(reply);
    json_object_put(args);
    return ret;
}

int qmp_client_execute_fd(struct qmp_client *c, const char *command, const struct qmp_args *args, int fd,
                          struct qmp_reply **ret, struct qs_error **err)
{
    if (fd < 0) {
        qs_error_set(err, QS_ERR_INVALID, "'%s' needs a file descriptor", command);
        return -1;
    }
    return client_execute(c, command, qmp_json(args), fd, -1, ret, err);
}

int qmp_client_send_fd(struct qmp_client *c, int fd, const char *fdname, struct qs_error **err)
{
    json_object *args = NULL;
    int ret = -1;

    if (fd < 0 || !fdname || !*fdname) {
        qs_error_set(err, QS_ERR_INVALID, "getfd needs a file descriptor and a name");
        goto out;
    }
    args = qmp_json_check(json_object_new_object());
    qmp_json_set(args, "fdname", qmp_json_check(json_object_new_string(fdname)));
    ret = client_execute(c, "getfd", args, fd, -1, NULL, err);
out:
    json_object_put(args);
    return ret;
}

/* ------------------------------------------------------------------------------------------------
 * Connection
 */

static int client_greeting(struct qmp_client *c, json_object *msg, struct qs_error **err)
{
    const struct qmp_value *g = (const struct qmp_value *)msg;
    const struct qmp_value *v = qmp_value_path(g, "QMP.version.qemu");
    const char *package = qmp_value_string(qmp_value_path(g, "QMP.version.package"));
    int64_t major, minor, micro;

    if (!qmp_value_int(qmp_value_get(v, "major"), &major) || !qmp_value_int(qmp_value_get(v, "minor"), &minor) ||
        !qmp_value_int(qmp_value_get(v, "micro"), &micro) || major < 0 || major > INT_MAX || minor < 0 ||
        minor > INT_MAX || micro < 0 || micro > INT_MAX) {
        qs_error_set(err, QS_ERR_PROTOCOL, "QMP socket '%s' sent no QMP greeting with a QEMU version", c->name);
        return client_fail(c);
    }
    c->major = (int)major;
    c->minor = (int)minor;
    c->micro = (int)micro;
    snprintf(c->version, sizeof(c->version), "%d.%d.%d", c->major, c->minor, c->micro);
    c->package = qs_xstrdup(package ? package : "");
    return 0;
}

/* Takes over FD: reads the greeting and negotiates capabilities before DEADLINE. */
static struct qmp_client *client_start(int fd, const char *name, int64_t deadline, const struct qmp_options *opts,
                                       struct qs_error **err)
{
    /* the read buffer (64 KiB) is left unzeroed: its pages are touched only as replies fill them, and a page
     * fault costs ~30 us on the virtual machines qsnap runs on (16 of them for a calloc) */
    struct qmp_client *c = qs_xmalloc(sizeof(*c));
    json_object *greeting = NULL;
    struct ucred cred;
    socklen_t len = sizeof(cred);
    int wait_ms, r, ret = -1;

    memset(c, 0, offsetof(struct qmp_client, rbuf));

    c->fd = fd;
    c->name = qs_xstrdup(name);
    c->tok = qmp_tokener_new();
    c->timeout_ms = opts && opts->timeout_ms > 0 ? opts->timeout_ms : DEFAULT_TIMEOUT_MS;
    c->max_message = opts && opts->max_message > 0 ? opts->max_message : DEFAULT_MAX_MESSAGE;
    c->max_events = opts && opts->max_events > 0 ? opts->max_events : DEFAULT_MAX_EVENTS;
    c->peer_pid = getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 && cred.pid > 0 ? cred.pid : -1;

    /* The capabilities go out at once: QEMU greets a client before it reads what the client sent, so the
     * greeting and the reply come in one round trip instead of two. QEMU greets at once, unless another client
     * holds the monitor: then connect() works but nothing comes. */
    wait_ms = ms_left(deadline);
    if (client_request(c, "qmp_capabilities", NULL, -1, deadline, err) < 0)
        goto out;
    if ((r = client_read(c, deadline, &greeting, err)) == 0)
        qs_error_set(err, QS_ERR_BUSY, "QMP socket '%s' gave no greeting within %d ms: is another client connected?",
                     name, wait_ms);
    if (r <= 0 || client_greeting(c, greeting, err) < 0)
        goto out;
    if (client_await(c, "qmp_capabilities", deadline, wait_ms, NULL, err) < 0) {
        qs_error_prefix(err, "cannot negotiate QMP capabilities on '%s'", name);
        goto out;
    }
    ret = 0;
out:
    json_object_put(greeting);
    if (ret < 0) {
        qmp_client_free(c);
        c = NULL;
    }
    return c;
}

struct qmp_client *qmp_client_connect(const char *path, const struct qmp_options *opts, struct qs_error **err)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int timeout_ms = opts && opts->connect_timeout_ms > 0 ? opts->connect_timeout_ms : DEFAULT_CONNECT_TIMEOUT_MS;
    int64_t deadline = qs_now_ms() + timeout_ms;
    struct qmp_client *c = NULL;
    int fd = -1, e, left;

    if (strlen(path) >= sizeof(sa.sun_path)) {
        qs_error_set(err, QS_ERR_INVALID, "QMP socket path '%s' is too long", path);
        goto out;
    }
    memcpy(sa.sun_path, path, strlen(path));
    for (;;) {
        /* non-blocking: a full listen backlog says EAGAIN instead of blocking past the deadline */
        if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) < 0) {
            qs_error_set_errno(err, QS_ERR_IO, errno, "cannot create a socket for '%s'", path);
            goto out;
        }
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
            break;
        e = errno;
        qs_close(fd);
        fd = -1;
        /* QEMU may not have created the socket yet, or not be listening yet */
        if (e != ENOENT && e != ECONNREFUSED && e != EAGAIN) {
            qs_error_set_errno(err, QS_ERR_IO, e, "cannot connect to QMP socket '%s'", path);
            goto out;
        }
        if ((left = ms_left(deadline)) == 0) {
            qs_error_set_errno(err, QS_ERR_TIMEOUT, e, "cannot connect to QMP socket '%s' within %d ms", path,
                               timeout_ms);
            goto out;
        }
        sleep_ms(left < CONNECT_RETRY_MS ? left : CONNECT_RETRY_MS);
    }
    c = client_start(fd, path, deadline, opts, err);
    fd = -1;
out:
    qs_close(fd);
    return c;
}

struct qmp_client *qmp_client_new_fd(int fd, const struct qmp_options *opts, struct qs_error **err)
{
    int timeout_ms = opts && opts->connect_timeout_ms > 0 ? opts->connect_timeout_ms : DEFAULT_CONNECT_TIMEOUT_MS;
    struct qmp_client *c = NULL;
    char name[32];

    if (fd < 0) {
        qs_error_set(err, QS_ERR_INVALID, "no QMP socket to use");
        goto out;
    }
    if (qs_fd_set_cloexec(fd) < 0) {
        qs_error_set_errno(err, QS_ERR_IO, errno, "cannot set close-on-exec on QMP socket fd %d", fd);
        qs_close(fd);
        goto out;
    }
    snprintf(name, sizeof(name), "fd %d", fd);
    c = client_start(fd, opts && opts->name ? opts->name : name, qs_now_ms() + timeout_ms, opts, err);
out:
    return c;
}

void qmp_client_free(struct qmp_client *c)
{
    if (!c)
        return;
    /* a pool that keeps healthy connections takes this one over instead */
    if (c->release && !c->broken && c->release(c->release_opaque, c))
        return;
    /* what qmp_client_send wrote is read first: a QEMU that sees the socket close may drop a request it
     * has not read yet */
    if (!c->broken && c->owed)
        qmp_client_settle(c, NULL);
    qmp_client_event_clear(c);
    qmp_features_free(c->features);
    qs_close(c->fd);
    json_tokener_free(c->tok);
    free(c->package);
    free(c->name);
    free(c);
}

const char *qmp_client_version(const struct qmp_client *c)
{
    return c->version;
}

void qmp_client_version_num(const struct qmp_client *c, int *major, int *minor, int *micro)
{
    if (major)
        *major = c->major;
    if (minor)
        *minor = c->minor;
    if (micro)
        *micro = c->micro;
}

const char *qmp_client_package(const struct qmp_client *c)
{
    return c->package;
}

pid_t qmp_client_peer_pid(const struct qmp_client *c)
{
    return c->peer_pid;
}

void qmp_client_set_timeout(struct qmp_client *c, int timeout_ms)
{
    c->timeout_ms = timeout_ms > 0 ? timeout_ms : DEFAULT_TIMEOUT_MS;
}

uint64_t qmp_client_events_dropped(const struct qmp_client *c)
{
    return c->ev_dropped;
}

int qmp_client_timeout(const struct qmp_client *c)
{
    return c->timeout_ms;
}

void qmp_client_set_release(struct qmp_client *c, qmp_release_fn fn, void *opaque)
{
    c->release = fn;
    c->release_opaque = opaque;
}

void qmp_client_close(struct qmp_client *c)
{
    if (!c)
        return;
    c->release = NULL;
    qmp_client_free(c);
}

struct qmp_features **qmp_client_features_slot(struct qmp_client *c)
{
    return &c->features;
}
