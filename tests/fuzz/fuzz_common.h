/* fuzz_common.h: the peer side of a fuzzed socket: a thread that sends the input in chunks, then drains. */
#ifndef FUZZ_COMMON_H
#define FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>

/*
 * A SOCK_SEQPACKET socketpair: every chunk the peer writes is one recv() on the client side, so the input
 * reaches the reader split exactly where the chunking says. Chunk lengths come from a small generator
 * seeded with SEED (0: chunks of 16 KiB). Before writing, when SYNC is set, the peer reads one request
 * from the client and replaces "@ID@" in the input by the number after "\"id\":" in it (the guest agent's
 * guest-sync-delimited id), and "@I2@" by that number plus one.
 */
struct fuzz_peer;

/* Starts the peer on a copy of DATA; *client_fd gets the client's end (the caller hands it to the client). */
struct fuzz_peer *fuzz_peer_start(const uint8_t *data, size_t len, uint8_t seed, int sync, int *client_fd);
/* Waits for the peer (it ends when the client closed its end) and frees it. */
void fuzz_peer_join(struct fuzz_peer *p);

#endif
