/* quiesce.h: freeze and thaw a guest's filesystems through its guest agent, around a disk snapshot. */
#ifndef QS_ENGINE_QUIESCE_H
#define QS_ENGINE_QUIESCE_H

#include "qs_error.h"

/* How long a freeze or thaw may wait for the agent by default. Windows' VSS holds a freeze 10 s at most. */
#define QUIESCE_TIMEOUT_MS 10000
/* How long quiesce_freeze waits for the agent's first answer (guest-sync), before it asks for a freeze: a
 * running agent answers in milliseconds, and a guest without one fails fast with nothing to thaw. */
#define QUIESCE_SYNC_TIMEOUT_MS 3000

/*
 * Usage, "always thaw":
 *
 *     if (quiesce_freeze(sock, QUIESCE_TIMEOUT_MS, err) < 0)
 *         goto out;                      // also thaws: a freeze that timed out may still happen later
 *     frozen = true;
 *     ... blockdev transaction ...
 * out:
 *     if (frozen && quiesce_thaw(sock, QUIESCE_TIMEOUT_MS, &thaw_err) < 0) ... report, keep the first error
 *
 * quiesce_freeze thaws by itself when it fails (an agent that answered the freeze with an error, or one
 * that did not answer in time and may yet freeze), so the caller thaws only after a freeze that succeeded;
 * calling quiesce_thaw after a failed freeze is harmless too (it thaws nothing). quiesce_thaw must run on
 * every path once quiesce_freeze succeeded, the failure paths included: a guest left frozen hangs its
 * writers.
 *
 * No agent in the guest (QEMU accepts the connection and the bytes, nobody answers): QS_ERR_TIMEOUT after
 * QUIESCE_SYNC_TIMEOUT_MS (or TIMEOUT_MS when smaller), before any freeze is asked for: "guest agent on
 * 'SOCK' did not answer within N ms: is qemu-guest-agent running in the guest?". No channel (socket missing, nobody listening): QS_ERR_NOTFOUND.
 */
int quiesce_freeze(const char *qga_socket, int timeout_ms, struct qs_error **err);
/* Thaws; succeeds when nothing was frozen. */
int quiesce_thaw(const char *qga_socket, int timeout_ms, struct qs_error **err);

/*
 * Where a domain's agent listens, found in its QEMU command line (md_domain_argv(), recorded by attach):
 * the path of the "-chardev socket,...,path=P,...,id=ID" that a "-device virtserialport,chardev=ID,
 * name=org.qemu.guest_agent.0" uses. Also accepts "-chardev socket,id=ID,path=P" in any order. NULL when
 * the command line has no such channel (a JSON -device is not looked into). Caller frees with free().
 */
char *quiesce_agent_socket(char *const *argv);

#endif
