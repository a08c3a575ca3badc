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

#endif
