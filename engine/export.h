/* export.h: a disk as it was at a snapshot, read only from what the guest can no longer change - for
 * snapshot-export and for the copies a clone makes. */
#ifndef QS_ENGINE_EXPORT_H
#define QS_ENGINE_EXPORT_H

#include <stdbool.h>
#include <stdint.h>

#include "engine_priv.h"

/* Where disk TARGET's state at a snapshot lies. */
struct export_src {
    char *target;          /* "vda" */
    char *image;           /* canonical: internal - the image holding the tag; external - the frozen image */
    char *format;          /* IMAGE's format */
    char *tag;             /* internal: the tag (the snapshot's name); NULL for an external snapshot */
    uint64_t virtual_size; /* of the disk at the snapshot */
};
void export_src_release(struct export_src *s);

/* Snapshot NAME of DOMAIN, fully parsed; QS_ERR_NOTFOUND in virsh's words. Caller frees with
 * md_snapshot_free(). */
struct md_snapshot *export_snapshot_get(struct engine *e, const char *domain, const char *name,
                                        struct qs_error **err);

/*
 * Where disk TARGET of DOM was at SNAP: an internal snapshot's tag in the image its <domain> names (else the
 * disk's current image), an external snapshot's frozen image. QS_ERR_NOTFOUND when SNAP does not hold the disk
 * (excluded, or no such disk), or its image or tag is gone.
 */
int export_source(const struct md_domain *dom, const struct md_snapshot *snap, const char *target,
                  struct export_src *src, struct qs_error **err);

/* The bytes a copy of SRC takes in FORMAT (qemu-img measure's "required": allocated data and metadata). */
int export_measure(const struct export_src *src, const char *format, uint64_t *bytes, struct qs_error **err);
/* Whether the file system of DIR has NEED bytes free: QS_ERR_IO saying both sizes, for WHAT. */
int export_check_space(const char *dir, uint64_t need, const char *what, struct qs_error **err);

/*
 * qemu-img convert of SRC into DEST - a file qsnap created (O_EXCL), which keeps its mode - as a standalone
 * FORMAT image ("qcow2" or "raw"), COMPRESS for qcow2 compressed clusters, with -U: the image may be open in
 * a running QEMU, whose writes never reach the clusters read here. Progress phase "export" through E's
 * callback, which may cancel (QS_ERR_CANCELLED). DEST is fsync'd.
 */
int export_convert(struct engine *e, const struct export_src *src, const char *dest, const char *format,
                   bool compress, struct qs_error **err);

/* Creates a new empty file PATH (O_EXCL, 0600): QS_ERR_EXISTS naming it when it exists. Returns 0. */
int export_file_new(const char *path, struct qs_error **err);

struct intent;
/* Recovery of an interrupted snapshot-export: the temporary file goes, a finished file stays. */
int export_recover(struct engine *e, const char *domain, const struct md_lock *lock, struct intent *it,
                   struct qs_error **err);

/* engine_snapshot_export's work; the public call (events.c) logs it in the domain's event log. */
int snapshot_export_op(struct engine *e, const char *domain, const char *name, const char *disk, const char *path,
                       const char *format, unsigned flags, struct engine_export_result *res, struct qs_error **err);

#endif
