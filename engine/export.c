/* export.c: snapshot-export - a disk as it was at a snapshot, as a standalone image, read while the VM may run. */
#include "export.h"
#include "files.h"
#include "img.h"
#include "intent.h"
#include "qargv.h"
#include "qs_util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

/* Room left beyond what qemu-img measure says, for the file system's own metadata. */
#define SPACE_SLACK (4u << 20)

void export_src_release(struct export_src *s)
{
    if (!s)
        return;
    free(s->target);
    free(s->image);
    free(s->format);
    free(s->tag);
    memset(s, 0, sizeof(*s));
}

struct md_snapshot *export_snapshot_get(struct engine *e, const char *domain, const char *name,
                                        struct qs_error **err)
{
    struct qs_error *local = NULL;
    struct md_snapshot *s;

    if (qs_name_check(name, "snapshot", err) < 0)
        return NULL;
    if (!(s = md_store_snapshot_get(e->store, domain, name, &local)) && local->code == QS_ERR_NOTFOUND) {
        qs_error_free(local);
        qs_error_set(err, QS_ERR_NOTFOUND, "Domain snapshot not found: no domain snapshot with matching name '%s'",
                     name);
        return NULL;
    }
    qs_error_propagate(err, &local);
    return s;
}

/* How SNAP holds disk TARGET: MD_LOCATION_INTERNAL, _EXTERNAL, or _NO (not at all). */
static int held_as(const struct md_snapshot *snap, const char *target)
{
    for (size_t i = 0; i < snap->ndisks; i++) {
        const struct md_snapshot_disk *sd = &snap->disks[i];
        if (!qs_str_equal(sd->name, target))
            continue;
        if (sd->snapshot == MD_LOCATION_DEFAULT)
            /* libvirt's metadata may leave it out: the snapshot's kind decides */
            return md_snapshot_is_external(snap) ? MD_LOCATION_EXTERNAL : MD_LOCATION_INTERNAL;
        return sd->snapshot;
    }
    return MD_LOCATION_NO;
}

int export_source(const struct md_domain *dom, const struct md_snapshot *snap, const char *target,
                  struct export_src *src, struct qs_error **err)
{
    struct img_info info = {0};
    int loc = held_as(snap, target), ret = -1;

    memset(src, 0, sizeof(*src));
    if (loc != MD_LOCATION_INTERNAL && loc != MD_LOCATION_EXTERNAL) {
        qs_error_set(err, QS_ERR_NOTFOUND, "snapshot '%s' does not hold disk '%s'%s", snap->name, target,
                     loc == MD_LOCATION_NO && snap->ndisks ? " (it is excluded, or no such disk)" : "");
        return -1;
    }
    src->target = qs_xstrdup(target);
    src->image = files_snapshot_image(snap, target);
    if (!src->image && loc == MD_LOCATION_INTERNAL) {
        /* a snapshot without its <domain> (redefined metadata): the tag is in the disk's image */
        for (size_t k = 0; k < md_domain_disk_count(dom) && !src->image; k++) {
            struct md_domain_disk d;
            if (md_domain_disk_get(dom, k, &d, NULL) == 0 && qs_str_equal(d.target, target) && d.source)
                src->image = qargv_path_abs(d.source, md_domain_cwd(dom));
        }
    }
    if (!src->image) {
        qs_error_set(err, QS_ERR_NOTFOUND, "snapshot '%s' records no image for disk '%s'", snap->name, target);
        goto out;
    }
    if (img_info_get(src->image, true, &info, err) < 0) {
        qs_error_prefix(err, "snapshot '%s', disk '%s'", snap->name, target);
        goto out;
    }
    if (loc == MD_LOCATION_INTERNAL) {
        if (!img_info_has_tag(&info, snap->name)) {
            qs_error_set(err, QS_ERR_NOTFOUND, "internal snapshot '%s' not found on disk '%s' (image '%s')",
                         snap->name, target, src->image);
            goto out;
        }
        src->tag = qs_xstrdup(snap->name);
    }
    src->format = info.format;
    info.format = NULL;
    src->virtual_size = info.virtual_size > 0 ? (uint64_t)info.virtual_size : 0;
    ret = 0;
out:
    img_info_release(&info);
    if (ret < 0)
        export_src_release(src);
    return ret;
}

int export_measure(const struct export_src *src, const char *format, uint64_t *bytes, struct qs_error **err)
{
    /* measured as qcow2 even for raw: qemu-img writes a raw image sparse, so what it takes is the data */
    (void)format;
    return img_measure(src->image, src->format, src->tag, "qcow2", bytes, err);
}

int export_check_space(const char *dir, uint64_t need, const char *what, struct qs_error **err)
{
    struct statvfs sv;
    uint64_t avail;

    if (statvfs(dir, &sv) < 0) {
        qs_error_set_errno(err, errno == ENOENT ? QS_ERR_NOTFOUND : QS_ERR_IO, errno, "directory '%s'", dir);
        return -1;
    }
    avail = (uint64_t)sv.f_bavail * sv.f_frsize;
    if (avail < need + SPACE_SLACK) {
        qs_error_set(err, QS_ERR_IO, "not enough space in '%s' for %s: %llu bytes needed, %llu available: %s", dir,
                     what, (unsigned long long)(need + SPACE_SLACK), (unsigned long long)avail, strerror(ENOSPC));
        return -1;
    }
    return 0;
}

static int convert_progress(void *opaque, double percent)
{
    struct engine *e = opaque;
    return e->progress ? e->progress(e->opaque, "export", (uint64_t)(percent * 100.0), 10000) : 0;
}

static int fsync_path(const char *path, struct qs_error **err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC), r;

    if (fd < 0) {
        qs_error_set_errno(err, QS_ERR_IO, errno, "cannot open '%s'", path);
        return -1;
    }
    r = fsync(fd);
    if (r < 0)
        qs_error_set_errno(err, QS_ERR_IO, errno, "cannot sync '%s'", path);
    close(fd);
    return r;
}

int export_convert(struct engine *e, const struct export_src *src, const char *dest, const char *format,
                   bool compress, struct qs_error **err)
{
    if (img_convert(src->image, src->format, src->tag, dest, format, compress, convert_progress, e, err) < 0) {
        if (*err && (*err)->code != QS_ERR_CANCELLED)
            qs_error_prefix(err, "cannot copy disk '%s' of image '%s'", src->target, src->image);
        return -1;
    }
    return fsync_path(dest, err);
}

int export_file_new(const char *path, struct qs_error **err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);

    if (fd < 0) {
        qs_error_set_errno(err, errno == EEXIST ? QS_ERR_EXISTS : QS_ERR_IO, errno, "cannot create '%s'", path);
        return -1;
    }
    close(fd);
    return 0;
}

/* TMP becomes PATH, which must not exist (an export never replaces a file), then the directory is synced. */
static int publish(const char *tmp, const char *path, struct qs_error **err)
{
    char *dir = files_dir_of(path);
    int dfd = -1, ret = -1;

    /* no-replace: a file someone made at PATH meanwhile is never replaced; where the file system cannot
     * rename that way, link() refuses an existing name as well */
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) < 0) {
        if (errno != EINVAL && errno != ENOSYS) {
            qs_error_set_errno(err, errno == EEXIST ? QS_ERR_EXISTS : QS_ERR_IO, errno, "cannot create '%s'", path);
            goto out;
        }
        if (link(tmp, path) < 0) {
            qs_error_set_errno(err, errno == EEXIST ? QS_ERR_EXISTS : QS_ERR_IO, errno, "cannot create '%s'",
                               path);
            goto out;
        }
        if (unlink(tmp) < 0) {
            qs_error_set_errno(err, QS_ERR_IO, errno, "cannot remove '%s'", tmp);
            unlink(path);
            goto out;
        }
    }
    if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0)
        fsync(dfd);
    ret = 0;
out:
    qs_close(dfd);
    free(dir);
    return ret;
}

int snapshot_export_op(struct engine *e, const char *domain, const char *name, const char *disk, const char *path,
                       const char *format, unsigned flags, struct engine_export_result *res, struct qs_error **err)
{
    struct md_domain *dom = NULL;
    struct md_lock *lock = NULL;
    struct md_snapshot *snap = NULL;
    struct export_src src = {0};
    struct intent it = {0};
    struct stat st;
    char *dir = NULL, *tmp = NULL, *what = NULL;
    bool compress = flags & ENGINE_EXPORT_COMPRESS, made = false;
    uint64_t need = 0;
    int ret = -1;

    if (!format)
        format = "qcow2";
    if (flags & ~(unsigned)ENGINE_EXPORT_COMPRESS) {
        qs_error_set(err, QS_ERR_UNSUPPORTED, "unsupported export flags 0x%x", flags & ~(unsigned)ENGINE_EXPORT_COMPRESS);
        return -1;
    }
    if (strcmp(format, "qcow2") != 0 && strcmp(format, "raw") != 0) {
        qs_error_set(err, QS_ERR_INVALID, "unsupported export format '%s' (qcow2 or raw)", format);
        return -1;
    }
    if (compress && strcmp(format, "qcow2") != 0) {
        qs_error_set(err, QS_ERR_INVALID, "compression needs the qcow2 format");
        return -1;
    }
    if (!disk || !*disk) {
        qs_error_set(err, QS_ERR_INVALID, "no disk to export given");
        return -1;
    }
    if (!path || path[0] != '/' || qs_str_has_suffix(path, "/")) {
        qs_error_set(err, QS_ERR_INVALID, "export file '%s' must be an absolute file path", path ? path : "");
        return -1;
    }
    /* the lock first: the snapshot and its images stay as they are until the copy is done */
    if (!(dom = engine_domain_load(e, domain, err)) || !(lock = engine_domain_lock(e, domain, err)) ||
        !(snap = export_snapshot_get(e, domain, name, err)) || export_source(dom, snap, disk, &src, err) < 0)
        goto out;
    if (lstat(path, &st) == 0) {
        qs_error_set(err, QS_ERR_EXISTS, "file '%s' already exists", path);
        goto out;
    }
    dir = files_dir_of(path);
    what = qs_asprintf("disk '%s' of snapshot '%s'", disk, name);
    if (export_measure(&src, format, &need, err) < 0 || export_check_space(dir, need, what, err) < 0)
        goto out;
    it.op = qs_xstrdup("export");
    it.kind = qs_xstrdup("data");
    it.snapshot = qs_xstrdup(name);
    it.target = qs_xstrdup(path);
    intent_add_disk(&it, disk, NULL, src.image);
    if (intent_begin(e, lock, domain, &it, err) < 0)
        goto out;
    /* the copy is made under a name of its own, next to PATH, and renamed when complete */
    {
        const char *base = strrchr(path, '/') + 1;
        tmp = qs_asprintf("%s/.%s.qsnap-export-%ld", dir, base, (long)getpid());
    }
    if (export_file_new(tmp, err) < 0)
        goto out;
    made = true;
    intent_add_file(&it, tmp);
    if (intent_update(e, lock, domain, &it, err) < 0)
        goto out;
    engine_step(e, "export", "prepare");
    if (export_convert(e, &src, tmp, format, compress, err) < 0)
        goto out;
    engine_step(e, "export", "copy");
    if (publish(tmp, path, err) < 0)
        goto out;
    made = false;
    engine_step(e, "export", "rename");
    if (res) {
        res->size = stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
        res->virtual_size = src.virtual_size;
    }
    ret = 0;
out:
    if (made)
        unlink(tmp); /* nothing half-written stays (ENOSPC, a cancel, qemu-img's failure) */
    if (it.pid)
        intent_finish(e, lock, domain, ret == 0);
    intent_release(&it);
    export_src_release(&src);
    free(what);
    free(tmp);
    free(dir);
    md_snapshot_free(snap);
    md_lock_free(lock);
    md_domain_free(dom);
    return ret;
}

int export_recover(struct engine *e, const char *domain, const struct md_lock *lock, struct intent *it,
                   struct qs_error **err)
{
    (void)e;
    (void)domain;
    (void)lock;
    (void)err;
    /* the temporary is qsnap's (O_EXCL): gone once renamed; the finished file is never touched */
    for (size_t i = 0; it->files && it->files[i]; i++)
        if (unlink(it->files[i]) < 0 && errno != ENOENT) {
            qs_error_set_errno(err, QS_ERR_IO, errno, "cannot remove '%s'", it->files[i]);
            return -1;
        }
    return 0;
}
