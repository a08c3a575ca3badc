/* fuzz_common.c: the peer thread for the socket fuzzers (see fuzz_common.h). */
#include "fuzz_common.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct fuzz_peer {
    pthread_t thread;
    int fd;
    uint8_t *data;
    size_t len;
    uint32_t rng;
    int sync;
};

static uint32_t next_len(struct fuzz_peer *p)
{
    if (p->rng == 0)
        return 16384; /* the guest agent reads 16 KiB at a time; a longer record would be cut */
    p->rng = p->rng * 1103515245u + 12345u;
    /* mostly short chunks, sometimes long ones */
    return (p->rng >> 16) % 8 == 0 ? 1 + (p->rng >> 8) % 4096 : 1 + (p->rng >> 20) % 16;
}

/* Replaces every TOKEN (4 bytes) in p->data by the decimal VAL. */
static void substitute(struct fuzz_peer *p, const char *token, long long val)
{
    char num[24];
    size_t nlen = (size_t)snprintf(num, sizeof(num), "%lld", val), i = 0;

    while (p->len >= 4 && i <= p->len - 4) {
        if (memcmp(p->data + i, token, 4) != 0) {
            i++;
            continue;
        }
        uint8_t *d = malloc(p->len - 4 + nlen + 1);
        if (!d)
            abort();
        memcpy(d, p->data, i);
        memcpy(d + i, num, nlen);
        memcpy(d + i + nlen, p->data + i + 4, p->len - i - 4);
        p->len = p->len - 4 + nlen;
        free(p->data);
        p->data = d;
        i += nlen;
    }
}

static void *peer_main(void *opaque)
{
    struct fuzz_peer *p = opaque;
    char req[4096];
    size_t off = 0;
    ssize_t n;

    if (p->sync) {
        n = recv(p->fd, req, sizeof(req) - 1, 0);
        if (n > 0) {
            const char *id;
            req[n] = '\0';
            if ((id = strstr(req, "\"id\":"))) {
                long long v = strtoll(id + 5, NULL, 10);
                substitute(p, "@ID@", v);
                substitute(p, "@I2@", v + 1);
            }
        }
    }
    while (off < p->len) {
        size_t want = next_len(p);
        if (want > p->len - off)
            want = p->len - off;
        do {
            n = send(p->fd, p->data + off, want, MSG_NOSIGNAL);
        } while (n < 0 && errno == EINTR);
        if (n <= 0)
            break; /* the client is gone */
        off += (size_t)n;
    }
    shutdown(p->fd, SHUT_WR);
    /* take what the client sends until it closes, so it never blocks writing */
    while ((n = recv(p->fd, req, sizeof(req), 0)) > 0 || (n < 0 && errno == EINTR))
        ;
    return NULL;
}

struct fuzz_peer *fuzz_peer_start(const uint8_t *data, size_t len, uint8_t seed, int sync, int *client_fd)
{
    struct fuzz_peer *p = calloc(1, sizeof(*p));
    int sv[2];

    if (!p || socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        abort();
    p->fd = sv[0];
    p->data = malloc(len ? len : 1);
    if (!p->data)
        abort();
    memcpy(p->data, data, len);
    p->len = len;
    p->rng = seed;
    p->sync = sync;
    if (pthread_create(&p->thread, NULL, peer_main, p) != 0)
        abort();
    *client_fd = sv[1];
    return p;
}

void fuzz_peer_join(struct fuzz_peer *p)
{
    pthread_join(p->thread, NULL);
    close(p->fd);
    free(p->data);
    free(p);
}
