/* qga.c: the guest agent client - connect, guest-sync-delimited, commands bounded in time, fsfreeze. */
#include "qga.h"
#include "qmp_priv.h"
#include "qs_util.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define QGA_DELIM 0xff
#define QGA_MAX_MESSAGE ((size_t)16 << 20)
#define READ_CHUNK 16384

struct qga_client {
    int fd;
    char *name;          /* the socket path: the subject of messages */
    int timeout_ms;
    bool synced;         /* the next reply on the stream answers our next command */
    int64_t sync_id;
    bool seek_delim;     /* drop bytes until the next 0xFF */
    json_tokener *tok;
    size_t msg_bytes;    /* bytes of the message being parsed that tok has seen */
    size_t rpos, rlen;   /* unparsed bytes are rbuf[rpos..rlen) */
    unsigned char rbuf[READ_CHUNK];
};

static int ms_left(int64_t deadline)
{
    int64_t left = deadline - qs_now_ms();

    return left <= 0 ? 0 : left > INT_MAX ? INT_MAX : (int)left;
}

static void set_timeout_error(const struct qga_client *g, int timeout_ms, struct qs_error **err)
{
    qs_error_set(err, QS_ERR_TIMEOUT,
                 "guest agent on '%s' did not answer within %d ms: is qemu-guest-agent running in the guest?",
                 g->name, timeout_ms);
}

static struct qga_client *client_new(int fd, const char *name, int timeout_ms)
{
    struct qga_client *g = qs_xcalloc(1, sizeof(*g));

    g->fd = fd;
    g->name = qs_xstrdup(name);
    g->timeout_ms = timeout_ms > 0 ? timeout_ms : QGA_DEFAULT_TIMEOUT_MS;
    g->tok = qmp_tokener_new();
    /* ids unlikely to repeat across processes: a reply left over from an earlier client never matches */
    g->sync_id = (int64_t)(((uint64_t)qs_now_ns() ^ ((uint64_t)getpid() << 16)) % 2000000000u) + 1;
    return g;
}

struct qga_client *qga_client_new_fd(int fd, const char *name, int timeout_ms, struct qs_error **err)
{
    if (fd < 0) {
        qs_error_set(err, QS_ERR_INVALID, "no guest agent socket to use");
        return NULL;
    }
    if (qs_fd_set_cloexec(fd) < 0 || qs_fd_set_nonblock(fd, true) < 0) {
        qs_error_set_errno(err, QS_ERR_IO, errno, "cannot set up guest agent socket '%s'", name);
        qs_close(fd);
        return NULL;
    }
    return client_new(fd, name, timeout_ms);
}

struct qga_client *qga_client_connect(const char *path, int timeout_ms, struct qs_error **err)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd, r;

    if (strlen(path) >= sizeof(sa.sun_path)) {
        qs_error_set(err, QS_ERR_INVALID, "guest agent socket path '%s' is too long", path);
        return NULL;
    }
    memcpy(sa.sun_path, path, strlen(path));
    if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) < 0) {
        qs_error_set_errno(err, QS_ERR_IO, errno, "cannot create a socket for '%s'", path);
        return NULL;
    }
    do {
        r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
        int e = errno;
        qs_close(fd);
        qs_error_set_errno(err, e == ENOENT || e == ECONNREFUSED ? QS_ERR_NOTFOUND : QS_ERR_IO, e,
                           "cannot connect to guest agent socket '%s'", path);
        return NULL;
    }
    return client_new(fd, path, timeout_ms);
}

void qga_client_free(struct qga_client *g)
{
    if (!g)
        return;
    qs_close(g->fd);
    json_tokener_free(g->tok);
    free(g->name);
    free(g);
}

/* Sends all of BUF before DEADLINE. */
static int agent_send(struct qga_client *g, const char *buf, size_t len, int64_t deadline, int timeout_ms,
                      struct qs_error **err)
{
    struct pollfd pfd = {.fd = g->fd, .events = POLLOUT};
    size_t off = 0;
    ssize_t n;
    int left;

    while (off < len) {
        n = send(g->fd, buf + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n >= 0) {
            off += (size_t)n;
            continue;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            qs_error_set_errno(err, errno == EPIPE || errno == ECONNRESET ? QS_ERR_DISCONNECTED : QS_ERR_IO, errno,
                               "cannot write to guest agent socket '%s'", g->name);
            return -1;
        }
        /* nobody drains the channel: as silent as an agent that does not answer */
        if ((left = ms_left(deadline)) == 0) {
            set_timeout_error(g, timeout_ms, err);
            return -1;
        }
        if (poll(&pfd, 1, left) < 0 && errno != EINTR) {
            qs_error_set_errno(err, QS_ERR_IO, errno, "cannot poll guest agent socket '%s'", g->name);
            return -1;
        }
    }
    return 0;
}

/* Waits until DEADLINE for bytes: 1 read, 0 deadline passed, -1 error. */
static int agent_fill(struct qga_client *g, int64_t deadline, struct qs_error **err)
{
    struct pollfd pfd = {.fd = g->fd, .events = POLLIN};
    ssize_t n;
    int left, r;

    while ((left = ms_left(deadline)) > 0) {
        r = poll(&pfd, 1, left);
        if (r < 0 && errno != EINTR) {
            qs_error_set_errno(err, QS_ERR_IO, errno, "cannot poll guest agent socket '%s'", g->name);
            return -1;
        }
        if (r <= 0)
            continue;
        n = recv(g->fd, g->rbuf, sizeof(g->rbuf), MSG_DONTWAIT);
        if (n > 0) {
            g->rpos = 0;
            g->rlen = (size_t)n;
            return 1;
        }
        if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
            continue;
        if (n == 0)
            qs_error_set(err, QS_ERR_DISCONNECTED, "guest agent socket '%s' was closed (has QEMU exited?)",
                         g->name);
        else
            qs_error_set_errno(err, errno == ECONNRESET ? QS_ERR_DISCONNECTED : QS_ERR_IO, errno,
                               "cannot read from guest agent socket '%s'", g->name);
        return -1;
    }
    return 0;
}

static void parse_reset(struct qga_client *g)
{
    json_tokener_reset(g->tok);
    g->msg_bytes = 0;
}

/*
 * The next JSON message from the bytes already read: 1 with *msg, 0 when more are needed, -1 with *err, -2
 * for bytes that are not JSON (err not set; they are skipped). A 0xFF is never part of a message (the
 * agent's JSON is UTF-8): it ends whatever was being parsed, and ends a search for the delimiter.
 */
static int agent_parse(struct qga_client *g, json_object **msg, struct qs_error **err)
{
    while (g->rpos < g->rlen) {
        unsigned char *p = g->rbuf + g->rpos, *delim;
        size_t n = g->rlen - g->rpos, room;
        enum json_tokener_error jerr;
        json_object *o;

        if (g->seek_delim) {
            if (!(delim = memchr(p, QGA_DELIM, n))) {
                g->rpos = g->rlen;
                return 0;
            }
            g->rpos += (size_t)(delim - p) + 1;
            g->seek_delim = false;
            parse_reset(g);
            continue;
        }
        if (*p == QGA_DELIM) {
            g->rpos++;
            parse_reset(g); /* a partial message before it was garbage */
            continue;
        }
        if (g->msg_bytes == 0 && memchr(" \t\r\n", *p, 4)) {
            g->rpos++;
            continue;
        }
        if ((delim = memchr(p, QGA_DELIM, n)))
            n = (size_t)(delim - p);
        room = QGA_MAX_MESSAGE - g->msg_bytes;
        if (room == 0) {
            parse_reset(g);
            qs_error_set(err, QS_ERR_TOOBIG, "guest agent on '%s' sent a message larger than %zu bytes", g->name,
                         QGA_MAX_MESSAGE);
            return -1;
        }
        if (n > room)
            n = room;
        o = json_tokener_parse_ex(g->tok, (const char *)p, (int)n);
        jerr = json_tokener_get_error(g->tok);
        if (jerr == json_tokener_continue) {
            g->rpos += n;
            g->msg_bytes += n;
            continue;
        }
        if (jerr != json_tokener_success) {
            size_t end = json_tokener_get_parse_end(g->tok);
            g->rpos += end > 0 ? end : 1;
            parse_reset(g);
            return -2;
        }
        g->rpos += json_tokener_get_parse_end(g->tok);
        g->msg_bytes = 0;
        *msg = o;
        return 1;
    }
    return 0;
}

/* The next message before DEADLINE: 1 with *msg, 0 deadline passed, -1 error, -2 not JSON. */
static int agent_read(struct qga_client *g, int64_t deadline, json_object **msg, struct qs_error **err)
{
    int r;

    while ((r = agent_parse(g, msg, err)) == 0) {
        if ((r = agent_fill(g, deadline, err)) <= 0)
            return r;
    }
    return r;
}

/* Resynchronises the stream before DEADLINE (TIMEOUT_MS is for the message). */
static int agent_sync(struct qga_client *g, int64_t deadline, int timeout_ms, struct qs_error **err)
{
    json_object *msg = NULL, *v = NULL;
    char line[128];
    int64_t id = g->sync_id;
    int r;

    g->sync_id = g->sync_id >= 2000000000 ? 1 : g->sync_id + 1;
    g->synced = false;
    /* the 0xFF makes the agent drop any half-read input of ours; its reply starts with one of its own */
    snprintf(line, sizeof(line), "%c{\"execute\":\"guest-sync-delimited\",\"arguments\":{\"id\":%lld}}\n",
             QGA_DELIM, (long long)id);
    if (agent_send(g, line, strlen(line), deadline, timeout_ms, err) < 0)
        return -1;
    g->seek_delim = true;
    for (;;) {
        int64_t got;

        if ((r = agent_read(g, deadline, &msg, err)) == 0) {
            set_timeout_error(g, timeout_ms, err);
            return -1;
        }
        if (r == -1)
            return -1;
        if (r == 1) {
            /* an older sync's reply (its client gave up) is skipped like garbage */
            if (json_object_object_get_ex(msg, "return", &v) && json_object_is_type(v, json_type_int) &&
                (got = json_object_get_int64(v)) == id) {
                json_object_put(msg);
                g->synced = true;
                return 0;
            }
            json_object_put(msg);
            msg = NULL;
        }
        g->seek_delim = true;
    }
}

int qga_client_sync(struct qga_client *g, int timeout_ms, struct qs_error **err)
{
    if (timeout_ms <= 0)
        timeout_ms = g->timeout_ms;
    return agent_sync(g, qs_now_ms() + timeout_ms, timeout_ms, err);
}

int qga_client_execute(struct qga_client *g, const char *command, const struct qmp_args *args, int timeout_ms,
                       struct qmp_reply **ret, struct qs_error **err)
{
    json_object *cmd = NULL, *reply = NULL, *v = NULL;
    const struct qmp_value *e;
    char *line = NULL;
    int64_t deadline;
    int r, rc = -1;

    if (timeout_ms <= 0)
        timeout_ms = g->timeout_ms;
    deadline = qs_now_ms() + timeout_ms;
    if (!g->synced && agent_sync(g, deadline, timeout_ms, err) < 0)
        goto out;
    g->synced = false; /* until this command's reply is read */
    cmd = qmp_json_check(json_object_new_object());
    qmp_json_set(cmd, "execute", qmp_json_check(json_object_new_string(command)));
    if (args)
        qmp_json_set(cmd, "arguments", json_object_get(qmp_json(args)));
    line = qs_asprintf("%s\n", json_object_to_json_string_ext(cmd, JSON_C_TO_STRING_PLAIN |
                                                                       JSON_C_TO_STRING_NOSLASHESCAPE));
    if (agent_send(g, line, strlen(line), deadline, timeout_ms, err) < 0)
        goto out;
    if ((r = agent_read(g, deadline, &reply, err)) == 0)
        set_timeout_error(g, timeout_ms, err);
    else if (r == -2)
        qs_error_set(err, QS_ERR_PROTOCOL, "guest agent on '%s' sent invalid JSON in reply to '%s'", g->name,
                     command);
    if (r <= 0)
        goto out;
    if (json_object_object_get_ex(reply, "error", &v)) {
        e = (const struct qmp_value *)v;
        g->synced = true;
        qs_error_set_qmp(err, qmp_value_get_string(e, "class") ? qmp_value_get_string(e, "class") : "GenericError",
                         "guest agent on '%s': %s", g->name,
                         qmp_value_get_string(e, "desc") ? qmp_value_get_string(e, "desc") : "unknown error");
        goto out;
    }
    if (!json_object_object_get_ex(reply, "return", &v)) {
        qs_error_set(err, QS_ERR_PROTOCOL, "guest agent on '%s' sent a message that is not a reply to '%s'",
                     g->name, command);
        goto out;
    }
    g->synced = true;
    if (ret)
        *ret = qmp_reply_wrap(json_object_get(v));
    rc = 0;
out:
    free(line);
    json_object_put(cmd);
    json_object_put(reply);
    return rc;
}

/* Runs a fsfreeze command that returns a count. */
static int fsfreeze_count(struct qga_client *g, const char *command, int timeout_ms, int *count,
                          struct qs_error **err)
{
    struct qmp_reply *r = NULL;
    int64_t n;
    int ret = -1;

    if (qga_client_execute(g, command, NULL, timeout_ms, &r, err) < 0)
        goto out;
    if (!qmp_value_int(qmp_reply_value(r), &n) || n < 0 || n > INT_MAX) {
        qs_error_set(err, QS_ERR_PROTOCOL, "guest agent on '%s' did not return a count for '%s'", g->name, command);
        goto out;
    }
    if (count)
        *count = (int)n;
    ret = 0;
out:
    qmp_reply_free(r);
    return ret;
}

int qga_fsfreeze_freeze(struct qga_client *g, int timeout_ms, int *count, struct qs_error **err)
{
    return fsfreeze_count(g, "guest-fsfreeze-freeze", timeout_ms, count, err);
}

int qga_fsfreeze_thaw(struct qga_client *g, int timeout_ms, int *count, struct qs_error **err)
{
    return fsfreeze_count(g, "guest-fsfreeze-thaw", timeout_ms, count, err);
}

int qga_fsfreeze_status(struct qga_client *g, int timeout_ms, bool *frozen, struct qs_error **err)
{
    struct qmp_reply *r = NULL;
    const char *s;
    int ret = -1;

    if (qga_client_execute(g, "guest-fsfreeze-status", NULL, timeout_ms, &r, err) < 0)
        goto out;
    s = qmp_value_string(qmp_reply_value(r));
    if (!s || (strcmp(s, "frozen") != 0 && strcmp(s, "thawed") != 0)) {
        qs_error_set(err, QS_ERR_PROTOCOL, "guest agent on '%s' returned an unknown freeze status '%s'", g->name,
                     s ? s : "(none)");
        goto out;
    }
    *frozen = strcmp(s, "frozen") == 0;
    ret = 0;
out:
    qmp_reply_free(r);
    return ret;
}
