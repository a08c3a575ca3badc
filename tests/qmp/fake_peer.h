/* fake_peer.h: a scripted fake QMP server for the unit tests; anything off-script fails the test. */
#ifndef FAKE_PEER_H
#define FAKE_PEER_H

#include <pthread.h>
#include <stddef.h>

enum peer_op {
    PEER_END,    /* script over: wait for the client to close; anything it still sends is a failure */
    PEER_EXPECT, /* read one command; it must be named ARG. Later SENDs say @ID@ for its id (@PREV@: the one
                    before) */
    PEER_SEND,   /* write ARG in one write, @ID@ replaced; or its first N bytes as they are when N > 0 */
    PEER_SPLIT,  /* write ARG N bytes at a time with a pause between writes */
    PEER_SLEEP,  /* do nothing for N ms (read nothing, send nothing) */
    PEER_CLOSE,  /* close the connection */
    PEER_RESET,  /* wait until the client sends, then close without reading: the client sees ECONNRESET */
    PEER_DRAIN,  /* read and drop everything until the client closes: a peer that never answers */
    PEER_FD,     /* write ARG into the last fd received with SCM_RIGHTS, then close that fd */
};

struct peer_step {
    enum peer_op op;
    const char *arg;
    int n;
};

#define P_END {PEER_END, NULL, 0}
#define P_EXPECT(name) {PEER_EXPECT, (name), 0}
#define P_SEND(bytes) {PEER_SEND, (bytes), 0}
#define P_SEND_RAW(bytes) {PEER_SEND, (bytes), (int)sizeof(bytes) - 1}
#define P_SPLIT(bytes, n) {PEER_SPLIT, (bytes), (n)}
#define P_SLEEP(ms) {PEER_SLEEP, NULL, (ms)}
#define P_CLOSE {PEER_CLOSE, NULL, 0}
#define P_RESET {PEER_RESET, NULL, 0}
#define P_DRAIN {PEER_DRAIN, NULL, 0}
#define P_FD(bytes) {PEER_FD, (bytes), 0}

#define PEER_MAX_COMMANDS 32

struct peer {
    const struct peer_step *script;
    int fd;                          /* the peer's end of the connection */
    const char *listen_path;         /* listen mode: bind here after listen_delay_ms, accept one client */
    int listen_delay_ms;
    pthread_t thread;
    char failure[512];               /* the first failure; "" when none */
    /* what the client sent, in order */
    int ncommands;
    char *names[PEER_MAX_COMMANDS];
    char *args[PEER_MAX_COMMANDS];   /* compact JSON of "arguments", "" when absent */
    int fds_before[PEER_MAX_COMMANDS]; /* fds received up to the end of that command */
    char last_id[64];
    char prev_id[64];                /* the id of the command before the last (@PREV@) */
    int fds[8];
    int nfds;
    char namebuf[2048];
    char buf[65536];                 /* received, not yet consumed */
    size_t len;
};

/* Runs SCRIPT on one end of a new socketpair; *client_fd gets the other. Caller ends with peer_join(). */
struct peer *peer_start_pair(const struct peer_step *script, int *client_fd);
/* Runs SCRIPT for the first client of a UNIX socket the peer creates at PATH after DELAY_MS. */
struct peer *peer_start_listen(const struct peer_step *script, const char *path, int delay_ms);
/* Waits for the script to end. Returns the failure ("" when none), valid until peer_free(). */
const char *peer_join(struct peer *p);
/* "qmp_capabilities query-status ...": the commands the peer saw. Valid until peer_free(). */
const char *peer_names(struct peer *p);
void peer_free(struct peer *p);

#endif
