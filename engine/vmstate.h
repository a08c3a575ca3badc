/* vmstate.h: the RAM and device state an internal snapshot keeps in a qcow2 image, read from the file - so a
 * clone can start from it while the source VM runs on (no QEMU tool exports it). */
#ifndef QS_ENGINE_VMSTATE_H
#define QS_ENGINE_VMSTATE_H

#include <stdbool.h>
#include <stdint.h>

#include "qs_error.h"

struct vmstate;

/*
 * Finds internal snapshot TAG in qcow2 image FILE: *out is its vmstate (caller frees with vmstate_free), or
 * NULL when the tag holds none (a snapshot's other disks, a disk-only snapshot). QS_ERR_NOTFOUND when FILE
 * has no tag TAG, QS_ERR_INVALID when it has two or is not qcow2, QS_ERR_UNSUPPORTED for what qsnap does not
 * read (encryption, an external data file, extended L2 entries, a corrupt image). Safe while QEMU runs on
 * FILE: a snapshot's L1 table, its L2 tables and its clusters are never written while it exists (copy on write).
 */
int vmstate_open(const char *file, const char *tag, struct vmstate **out, struct qs_error **err);
/* Its size in bytes (QEMU's migration stream, starting with "QEVM"). */
uint64_t vmstate_size(const struct vmstate *v);
/* Reads LEN bytes at POS of the vmstate into BUF (unallocated and zero clusters read as zeros). */
int vmstate_read(struct vmstate *v, void *buf, uint64_t pos, uint64_t len, struct qs_error **err);
/* Writes the whole vmstate to FD (a socket: without SIGPIPE; or a file). A reader that goes away is
 * QS_ERR_DISCONNECTED. *stop, read between chunks (may be NULL), ends it early with QS_ERR_CANCELLED. */
int vmstate_copy(struct vmstate *v, int fd, const volatile bool *stop, struct qs_error **err);
void vmstate_free(struct vmstate *v);

#endif
