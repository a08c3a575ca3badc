/* fuzz_qga.c: libFuzzer harness: arbitrary bytes as everything a guest agent sends back. */
#include "fuzz_common.h"
#include "qga.h"

#include <stdbool.h>
#include <stdlib.h>

/*
 * Input: byte 0 seeds the split into reads; the rest is the agent's stream, with "@ID@" standing for the id
 * of the client's first guest-sync-delimited and "@I2@" for the next one (see fuzz_common.h).
 */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct qs_error *err = NULL;
    struct qga_client *g;
    struct qmp_reply *r = NULL;
    struct fuzz_peer *peer;
    bool frozen;
    int fd, count;

    if (size < 1)
        return 0;
    peer = fuzz_peer_start(data + 1, size - 1, data[0], 1, &fd);
    if (!(g = qga_client_new_fd(fd, "fuzz", 2000, &err)))
        goto out;
    if (qga_client_execute(g, "guest-info", NULL, 0, &r, &err) == 0)
        qmp_reply_free(r);
    qs_error_free(err);
    err = NULL;
    qga_fsfreeze_freeze(g, 0, &count, &err);
    qs_error_free(err);
    err = NULL;
    qga_fsfreeze_status(g, 0, &frozen, &err);
    qs_error_free(err);
    err = NULL;
    qga_fsfreeze_thaw(g, 0, &count, &err);
out:
    qs_error_free(err);
    qga_client_free(g);
    fuzz_peer_join(peer);
    return 0;
}
