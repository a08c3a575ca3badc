/* qga.h: a QEMU guest agent client - the agent's UNIX socket, guest-sync-delimited, commands, fsfreeze. */
#ifndef QGA_H
#define QGA_H

#include <stdbool.h>

#include "qmp.h"
#include "qs_error.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * The agent speaks QMP's JSON without a greeting, ids or events, through a chardev QEMU exposes:
 *   -chardev socket,path=SOCK,server=on,wait=off,id=qga0 -device virtio-serial-pci
 *   -device virtserialport,chardev=qga0,name=org.qemu.guest_agent.0
 * QEMU accepts the connection and the bytes whether or not an agent runs in the guest, so silence is the
 * only sign of a missing agent: every call here is bounded by a timeout and then fails with QS_ERR_TIMEOUT
 * "guest agent on 'SOCK' did not answer within N ms: is qemu-guest-agent running in the guest?".
 *
 * Before its first command, and again after any call that failed, the client synchronises: it sends 0xFF
 * (which resets the agent's JSON parser) and guest-sync-delimited with a fresh id, then skips everything up
 * to the 0xFF the agent puts before its reply and reads replies until one carries that id. Replies that
 * arrive late, after a timeout, are thus never taken for the answer to a later command.
 */
struct qga_client;

#define QGA_DEFAULT_TIMEOUT_MS 10000

/*
 * Connects to the agent's socket at PATH (one attempt: QEMU creates it at start-up). TIMEOUT_MS (<= 0:
 * QGA_DEFAULT_TIMEOUT_MS) is the default wait for each answer. Nothing is sent yet. A missing socket or one
 * nobody listens on is QS_ERR_NOTFOUND. Caller frees with qga_client_free().
 */
struct qga_client *qga_client_connect(const char *path, int timeout_ms, struct qs_error **err);
/* Same on an already connected stream socket, taken over (closed by qga_client_free, also on failure);
 * NAME (copied) is the subject of messages. */
struct qga_client *qga_client_new_fd(int fd, const char *name, int timeout_ms, struct qs_error **err);
/* Closes the socket. Accepts NULL. */
void qga_client_free(struct qga_client *g);

/* Synchronises now (see above); usually implicit. timeout_ms <= 0: the client default. */
int qga_client_sync(struct qga_client *g, int timeout_ms, struct qs_error **err);

/*
 * Runs COMMAND with ARGS (NULL for none) and waits up to TIMEOUT_MS (<= 0: the client default) for the
 * sync and the reply together. *ret (when ret is non-NULL) holds the "return" value; caller frees with
 * qmp_reply_free(). An error reply is QS_ERR_QEMU with the agent's class in err->qmp_class; silence is
 * QS_ERR_TIMEOUT; EOF is QS_ERR_DISCONNECTED; bytes that are not JSON are QS_ERR_PROTOCOL. After a failure
 * the client stays usable: the next call synchronises again.
 */
int qga_client_execute(struct qga_client *g, const char *command, const struct qmp_args *args, int timeout_ms,
                       struct qmp_reply **ret, struct qs_error **err);

/* guest-fsfreeze-freeze: freezes the guest's filesystems; *count (may be NULL) gets how many. */
int qga_fsfreeze_freeze(struct qga_client *g, int timeout_ms, int *count, struct qs_error **err);
/* guest-fsfreeze-thaw: *count (may be NULL) gets how many were thawed (0 when none was frozen). */
int qga_fsfreeze_thaw(struct qga_client *g, int timeout_ms, int *count, struct qs_error **err);
/* guest-fsfreeze-status: *frozen is true for "frozen", false for "thawed". */
int qga_fsfreeze_status(struct qga_client *g, int timeout_ms, bool *frozen, struct qs_error **err);

#ifdef __cplusplus
}
#endif
#endif
