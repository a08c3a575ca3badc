/* img.h: qemu-img for images QEMU does not hold open: info, internal snapshots, overlays. */
#ifndef QS_ENGINE_IMG_H
#define QS_ENGINE_IMG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qs_error.h"

/* An image as `qemu-img info --output=json` shows it. */
struct img_info {
    char *format;       /* "qcow2", "raw", ... */
    char *backing_file; /* NULL when none */
    int64_t virtual_size;
    char **tags;        /* internal snapshot names, NULL-terminated */
    char **tag_ids;     /* their ids, same order */
};

void img_info_release(struct img_info *info);
/* qemu-img info; FORCE_SHARE (-U) reads an image a running QEMU holds. */
int img_info_get(const char *file, bool force_share, struct img_info *info, struct qs_error **err);
bool img_info_has_tag(const struct img_info *info, const char *tag);
/* The name of another snapshot whose id is TAG (qemu-img -a looks ids up first), or NULL. Borrowed. */
const char *img_info_tag_clash(const struct img_info *info, const char *tag);
/* qemu-img snapshot -c / -a / -d TAG FILE. */
int img_snapshot_create(const char *file, const char *tag, struct qs_error **err);
int img_snapshot_apply(const char *file, const char *tag, struct qs_error **err);
int img_snapshot_delete(const char *file, const char *tag, struct qs_error **err);

/* qemu-img create -f qcow2 -F BASE_FMT -b BASE OVERLAY (BASE absolute; OVERLAY may exist: it is
 * overwritten, keeping its mode). */
int img_create_overlay(const char *overlay, const char *base, const char *base_fmt, struct qs_error **err);
/* qemu-img commit -f qcow2 -b BASE TOP: TOP's data into BASE (a backing file of TOP). */
int img_commit(const char *top, const char *base, struct qs_error **err);
/* qemu-img rebase -u -f qcow2 -b BACKING -F BACKING_FMT FILE: only the header changes. */
int img_rebase_unsafe(const char *file, const char *backing, const char *backing_fmt, struct qs_error **err);
/* qemu-img measure -U: the bytes a copy of FILE (FMT; TAG, may be NULL: that internal snapshot's state) takes
 * as a new OUT_FMT image - its "required" size. */
int img_measure(const char *file, const char *fmt, const char *tag, const char *out_fmt, uint64_t *required,
                struct qs_error **err);
/* Called with qemu-img's progress in percent (0..100); non-zero stops it (QS_ERR_CANCELLED). */
typedef int (*img_progress_fn)(void *opaque, double percent);
/*
 * qemu-img convert -U -p -f FMT [-l snapshot.name=TAG] -O OUT_FMT [-c] FILE DEST: FILE's state (at internal
 * snapshot TAG, may be NULL) as a standalone image - no backing file. DEST may exist: it is overwritten,
 * keeping its mode. PROGRESS may be NULL. No time limit.
 */
int img_convert(const char *file, const char *fmt, const char *tag, const char *dest, const char *out_fmt,
                bool compress, img_progress_fn progress, void *opaque, struct qs_error **err);

/* qemu-img convert -n -f raw -O qcow2 RAW QCOW2: RAW's bytes into the existing image's active state (its
 * internal snapshots stay). */
int img_write_raw(const char *raw, const char *qcow2, struct qs_error **err);

/*
 * The backing file named in a qcow2 header, resolved against FILE's directory when relative (as QEMU
 * does); reads only the header. *backing is NULL when FILE is not qcow2 or has no backing file.
 * -1 only when FILE cannot be read. Caller frees *backing.
 */
int img_qcow2_backing(const char *file, char **backing, struct qs_error **err);

#endif
