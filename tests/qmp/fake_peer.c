/* fake_peer.c: a scripted fake QMP server in a thread (cmocka asserts stay in the main thread). */
#include "fake_peer.h"

#include <errno.h>
#include <json-c/json.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define PEER_WAIT_MS 5000

static void peer_fail(struct peer *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void peer_fail(struct peer *p, const char *fmt, ...)
{
    va_list ap;

    if (p->failure[0])
        return;
    va_start(ap, fmt);
    vsnprintf(p->failure, sizeof(p->failure), fmt, ap);
    va_end(ap);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};

    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static void peer_close(struct peer *p)
{
    if (p->fd >= 0)
        close(p->fd);
    p->fd = -1;
}

/* Waits for input: 1 ready, 0 after PEER_WAIT_MS. */
static int peer_wait(struct peer *p)
{
    struct pollfd pfd = {.fd = p->fd, .events = POLLIN};
    int r;

    while ((r = poll(&pfd, 1, PEER_WAIT_MS)) < 0 && errno == EINTR)
        ;
    return r > 0;
}

/* One recvmsg into buf, keeping fds that come along: >0 bytes, 0 EOF (or reset), -1 error/timeout. */
static ssize_t peer_recv(struct peer *p)
{
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * 4)];
    } ctl;
    struct iovec iov = {.iov_base = p->buf + p->len, .iov_len = sizeof(p->buf) - 1 - p->len};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof(ctl)};
    ssize_t n;

    if (!peer_wait(p)) {
        peer_fail(p, "peer: nothing from the client within %d ms", PEER_WAIT_MS);
        return -1;
    }
    while ((n = recvmsg(p->fd, &mh, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR)
        ;
    if (n < 0 && errno == ECONNRESET)
        return 0;
    if (n < 0) {
        peer_fail(p, "peer: recvmsg: %s", strerror(errno));
        return -1;
    }
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
            continue;
        for (size_t i = 0; i < (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
            if (p->nfds < (int)(sizeof(p->fds) / sizeof(p->fds[0])))
                memcpy(&p->fds[p->nfds++], CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
        }
    }
    p->len += (size_t)n;
    p->buf[p->len] = '\0';
    return n;
}

static void peer_expect(struct peer *p, const char *name)
{
    json_object *cmd = NULL, *v = NULL;
    char *nl;
    size_t linelen;
    ssize_t n;

    while (!(nl = memchr(p->buf, '\n', p->len))) {
        if ((n = peer_recv(p)) <= 0) {
            if (n == 0)
                peer_fail(p, "peer: client closed instead of sending '%s'", name);
            return;
        }
    }
    *nl = '\0';
    linelen = (size_t)(nl - p->buf) + 1;
    cmd = json_tokener_parse(p->buf);
    if (!json_object_object_get_ex(cmd, "execute", &v) || !json_object_is_type(v, json_type_string)) {
        peer_fail(p, "peer: expected command '%s', got '%s'", name, p->buf);
        goto out;
    }
    if (strcmp(json_object_get_string(v), name) != 0) {
        peer_fail(p, "peer: expected command '%s', got '%s'", name, json_object_get_string(v));
        goto out;
    }
    /* qsnap sends no ids (QEMU answers in order): "" then, and the replies' "id" members go (peer_subst) */
    if (!json_object_object_get_ex(cmd, "id", &v))
        v = NULL;
    else if (!json_object_is_type(v, json_type_string) || strlen(json_object_get_string(v)) >= sizeof(p->last_id) ||
             !*json_object_get_string(v)) {
        peer_fail(p, "peer: command '%s' has an id that is not a short string", name);
        goto out;
    }
    memcpy(p->prev_id, p->last_id, sizeof(p->prev_id));
    snprintf(p->last_id, sizeof(p->last_id), "%s", v ? json_object_get_string(v) : "");
    if (p->ncommands < PEER_MAX_COMMANDS) {
        p->names[p->ncommands] = strdup(name);
        p->args[p->ncommands] = strdup(json_object_object_get_ex(cmd, "arguments", &v)
                                           ? json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN)
                                           : "");
        p->fds_before[p->ncommands] = p->nfds;
        p->ncommands++;
    }
out:
    json_object_put(cmd);
    p->len -= linelen;
    memmove(p->buf, p->buf + linelen, p->len);
}

/* Removes every member "id": "MARK" (with the comma or space that joins it) from S, in place. */
static void drop_id_member(char *s, const char *mark)
{
    char pat[32], *at;

    snprintf(pat, sizeof(pat), "\"id\": \"%s\"", mark);
    while ((at = strstr(s, pat))) {
        char *from = at, *to = at + strlen(pat);
        if (*to == ',') { /* the first member: the comma and space after it go */
            to++;
            while (*to == ' ')
                to++;
        } else { /* a later one: the comma and space before it */
            while (from > s && from[-1] == ' ')
                from--;
            if (from > s && from[-1] == ',')
                from--;
        }
        memmove(from, to, strlen(to) + 1);
    }
}

/* ARG with every @ID@ replaced by the id of the last command, every @PREV@ by the one before; where that
 * command had no id, a reply's "id" member with it goes. Caller frees. */
static char *peer_subst(struct peer *p, const char *orig)
{
    size_t cap = strlen(orig) + 1, len = 0;
    const char *at, *id, *prev;
    char *out, *copy = strdup(orig);
    const char *arg = copy;

    if (!p->last_id[0])
        drop_id_member(copy, "@ID@");
    if (!p->prev_id[0])
        drop_id_member(copy, "@PREV@");

    for (at = arg; (at = strchr(at, '@')); at++)
        cap += sizeof(p->last_id);
    out = malloc(cap);

    for (;;) {
        at = strstr(arg, "@ID@");
        prev = strstr(arg, "@PREV@");
        if (!at && !prev)
            break;
        if (prev && (!at || prev < at)) {
            at = prev;
            id = p->prev_id;
        } else {
            id = p->last_id;
        }
        len += (size_t)snprintf(out + len, cap - len, "%.*s%s", (int)(at - arg), arg, id);
        arg = at + (id == p->prev_id ? 6 : 4);
    }
    snprintf(out + len, cap - len, "%s", arg);
    free(copy);
    return out;
}

static void peer_send(struct peer *p, const char *arg, size_t rawlen, size_t piece)
{
    char *s = rawlen ? memcpy(malloc(rawlen), arg, rawlen) : peer_subst(p, arg);
    size_t len = rawlen ? rawlen : strlen(s), off = 0;
    ssize_t n;

    if (!piece)
        piece = len;
    while (off < len) {
        n = send(p->fd, s + off, len - off < piece ? len - off : piece, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            peer_fail(p, "peer: send: %s", strerror(errno));
            break;
        }
        off += (size_t)n;
        if (off < len && piece < len)
            sleep_ms(1);
    }
    free(s);
}

/* Reads until the client closes; with STRICT anything it sends is a failure. */
static void peer_read_to_eof(struct peer *p, int strict)
{
    ssize_t n;

    while (p->fd >= 0 && (n = peer_recv(p)) > 0) {
        if (strict)
            peer_fail(p, "peer: unexpected data after the script: '%.200s'", p->buf);
        p->len = 0;
    }
}

static void peer_listen(struct peer *p)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct pollfd pfd = {.fd = -1, .events = POLLIN};

    sleep_ms(p->listen_delay_ms);
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", p->listen_path);
    pfd.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (pfd.fd < 0 || bind(pfd.fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(pfd.fd, 1) < 0) {
        peer_fail(p, "peer: cannot listen on '%s': %s", p->listen_path, strerror(errno));
    } else if (poll(&pfd, 1, PEER_WAIT_MS) != 1) {
        peer_fail(p, "peer: no client connected to '%s'", p->listen_path);
    } else if ((p->fd = accept4(pfd.fd, NULL, NULL, SOCK_CLOEXEC)) < 0) {
        peer_fail(p, "peer: accept: %s", strerror(errno));
    }
    if (pfd.fd >= 0)
        close(pfd.fd);
}

static void *peer_main(void *opaque)
{
    struct peer *p = opaque;

    if (p->listen_path)
        peer_listen(p);
    for (const struct peer_step *s = p->script; !p->failure[0]; s++) {
        switch (s->op) {
        case PEER_EXPECT:
            peer_expect(p, s->arg);
            break;
        case PEER_SEND:
            peer_send(p, s->arg, (size_t)s->n, 0);
            break;
        case PEER_SPLIT:
            peer_send(p, s->arg, 0, (size_t)s->n);
            break;
        case PEER_SLEEP:
            sleep_ms(s->n);
            break;
        case PEER_CLOSE:
            peer_close(p);
            break;
        case PEER_RESET:
            if (!peer_wait(p))
                peer_fail(p, "peer: client sent nothing to reset on");
            peer_close(p);
            break;
        case PEER_DRAIN:
            peer_read_to_eof(p, 0);
            break;
        case PEER_FD:
            if (p->nfds == 0) {
                peer_fail(p, "peer: no fd was passed");
                break;
            }
            if (write(p->fds[p->nfds - 1], s->arg, strlen(s->arg)) != (ssize_t)strlen(s->arg))
                peer_fail(p, "peer: cannot write to the passed fd: %s", strerror(errno));
            close(p->fds[p->nfds - 1]);
            p->fds[p->nfds - 1] = -1;
            break;
        case PEER_END:
            peer_read_to_eof(p, 1);
            goto out;
        }
    }
out:
    peer_close(p);
    return NULL;
}

static struct peer *peer_new(const struct peer_step *script)
{
    struct peer *p = calloc(1, sizeof(*p));

    p->script = script;
    p->fd = -1;
    return p;
}

struct peer *peer_start_pair(const struct peer_step *script, int *client_fd)
{
    struct peer *p = peer_new(script);
    int sv[2];

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        abort();
    p->fd = sv[0];
    *client_fd = sv[1];
    if (pthread_create(&p->thread, NULL, peer_main, p) != 0)
        abort();
    return p;
}

struct peer *peer_start_listen(const struct peer_step *script, const char *path, int delay_ms)
{
    struct peer *p = peer_new(script);

    p->listen_path = path;
    p->listen_delay_ms = delay_ms;
    if (pthread_create(&p->thread, NULL, peer_main, p) != 0)
        abort();
    return p;
}

const char *peer_join(struct peer *p)
{
    pthread_join(p->thread, NULL);
    return p->failure;
}

const char *peer_names(struct peer *p)
{
    size_t len = 0;

    p->namebuf[0] = '\0';
    for (int i = 0; i < p->ncommands; i++)
        len += (size_t)snprintf(p->namebuf + len, sizeof(p->namebuf) - len, "%s%s", i ? " " : "", p->names[i]);
    return p->namebuf;
}

void peer_free(struct peer *p)
{
    if (!p)
        return;
    for (int i = 0; i < p->ncommands; i++) {
        free(p->names[i]);
        free(p->args[i]);
    }
    for (int i = 0; i < p->nfds; i++) {
        if (p->fds[i] >= 0)
            close(p->fds[i]);
    }
    free(p);
}
