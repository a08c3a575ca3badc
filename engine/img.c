/* img.c: qemu-img, always run from an argv, its JSON read through the qmp value API. */
#include "img.h"
#include "qmp.h"
#include "qs_proc.h"
#include "qs_util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define IMG_TIMEOUT_MS 120000

void img_info_release(struct img_info *info)
{
    if (!info)
        return;
    free(info->format);
    free(info->backing_file);
    qs_strv_free(info->tags);
    qs_strv_free(info->tag_ids);
    memset(info, 0, sizeof(*info));
}

/* Runs qemu-img with ARGV (WATCH, may be NULL, sees its stdout as it comes; TIMEOUT_MS 0: none); a non-zero
 * exit becomes an error carrying qemu-img's own message. */
static int img_run_watch(char *const argv[], int timeout_ms, qs_proc_watch_fn watch, void *opaque, char **out,
                         struct qs_error **err)
{
    struct qs_proc_result res = {0};
    int ret = -1;

    if (qs_proc_run_watch(argv, timeout_ms, 0, watch, opaque, &res, err) < 0)
        return -1;
    if (res.status != 0) {
        const char *msg = res.errout;
        if (qs_str_has_prefix(msg, "qemu-img: "))
            msg += strlen("qemu-img: ");
        qs_error_set(err, QS_ERR_QEMU, "%s", *msg ? msg : "qemu-img failed");
        goto out;
    }
    if (out) {
        *out = res.out;
        res.out = NULL;
    }
    ret = 0;
out:
    qs_proc_result_release(&res);
    return ret;
}

static int img_run(char *const argv[], char **out, struct qs_error **err)
{
    return img_run_watch(argv, IMG_TIMEOUT_MS, NULL, NULL, out, err);
}

int img_info_get(const char *file, bool force_share, struct img_info *info, struct qs_error **err)
{
    char *argv[] = {"qemu-img", "info", "--output=json", force_share ? "-U" : "--", (char *)file, NULL};
    struct qmp_reply *r = NULL;
    const struct qmp_value *v, *snaps;
    char *out = NULL;
    const char *fmt, *backing;
    size_t n;
    int ret = -1;

    if (!force_share) { /* "--" then the file: keep argv the same length */
        argv[3] = (char *)file;
        argv[4] = NULL;
    }
    if (img_run(argv, &out, err) < 0)
        goto out;
    if (!(r = qmp_reply_parse(out, err)))
        goto out;
    v = qmp_reply_value(r);
    fmt = qmp_value_get_string(v, "format");
    if (!fmt) {
        qs_error_set(err, QS_ERR_PROTOCOL, "qemu-img info gave no format for '%s'", file);
        goto out;
    }
    memset(info, 0, sizeof(*info));
    info->format = qs_xstrdup(fmt);
    backing = qmp_value_get_string(v, "backing-filename");
    info->backing_file = backing ? qs_xstrdup(backing) : NULL;
    qmp_value_int(qmp_value_get(v, "virtual-size"), &info->virtual_size);
    snaps = qmp_value_get(v, "snapshots");
    n = qmp_value_array_len(snaps);
    info->tags = qs_xcalloc(n + 1, sizeof(char *));
    info->tag_ids = qs_xcalloc(n + 1, sizeof(char *));
    for (size_t i = 0, k = 0; i < n; i++) {
        const char *name = qmp_value_get_string(qmp_value_array_at(snaps, i), "name");
        const char *id = qmp_value_get_string(qmp_value_array_at(snaps, i), "id");
        if (name && id) {
            info->tags[k] = qs_xstrdup(name);
            info->tag_ids[k++] = qs_xstrdup(id);
        }
    }
    ret = 0;
out:
    qmp_reply_free(r);
    free(out);
    return ret;
}

bool img_info_has_tag(const struct img_info *info, const char *tag)
{
    for (char **t = info->tags; t && *t; t++)
        if (strcmp(*t, tag) == 0)
            return true;
    return false;
}

const char *img_info_tag_clash(const struct img_info *info, const char *tag)
{
    for (size_t i = 0; info->tags && info->tags[i]; i++)
        if (strcmp(info->tag_ids[i], tag) == 0 && strcmp(info->tags[i], tag) != 0)
            return info->tags[i];
    return NULL;
}

static int img_snapshot(const char *op, const char *file, const char *tag, struct qs_error **err)
{
    char *argv[] = {"qemu-img", "snapshot", (char *)op, (char *)tag, "--", (char *)file, NULL};
    return img_run(argv, NULL, err);
}

int img_snapshot_create(const char *file, const char *tag, struct qs_error **err)
{
    return img_snapshot("-c", file, tag, err);
}

int img_snapshot_apply(const char *file, const char *tag, struct qs_error **err)
{
    return img_snapshot("-a", file, tag, err);
}

int img_snapshot_delete(const char *file, const char *tag, struct qs_error **err)
{
    return img_snapshot("-d", file, tag, err);
}

int img_create_overlay(const char *overlay, const char *base, const char *base_fmt, struct qs_error **err)
{
    char *argv[] = {"qemu-img", "create", "-q", "-f", "qcow2", "-F", (char *)base_fmt, "-b", (char *)base,
                    "--", (char *)overlay, NULL};
    return img_run(argv, NULL, err);
}

int img_commit(const char *top, const char *base, struct qs_error **err)
{
    char *argv[] = {"qemu-img", "commit", "-q", "-f", "qcow2", "-b", (char *)base, "--", (char *)top, NULL};
    return img_run(argv, NULL, err);
}

int img_rebase_unsafe(const char *file, const char *backing, const char *backing_fmt, struct qs_error **err)
{
    char *argv[] = {"qemu-img", "rebase", "-u", "-f", "qcow2", "-b", (char *)backing, "-F", (char *)backing_fmt,
                    "--", (char *)file, NULL};
    return img_run(argv, NULL, err);
}

int img_measure(const char *file, const char *fmt, const char *tag, const char *out_fmt, uint64_t *required,
                struct qs_error **err)
{
    char *snap = tag ? qs_asprintf("snapshot.name=%s", tag) : NULL;
    char *argv[] = {"qemu-img", "measure", "-U", "--output=json", "-f", (char *)fmt, "-O", (char *)out_fmt,
                    snap ? "-l" : "--", snap ? snap : (char *)file, snap ? "--" : NULL, (char *)file, NULL};
    struct qmp_reply *r = NULL;
    char *out = NULL;
    int64_t v = -1;
    int ret = -1;

    if (img_run(argv, &out, err) < 0 || !(r = qmp_reply_parse(out, err)))
        goto out;
    if (!qmp_value_int(qmp_value_get(qmp_reply_value(r), "required"), &v) || v < 0) {
        qs_error_set(err, QS_ERR_PROTOCOL, "qemu-img measure gave no size for '%s'", file);
        goto out;
    }
    *required = (uint64_t)v;
    ret = 0;
out:
    qmp_reply_free(r);
    free(out);
    free(snap);
    return ret;
}

/* qemu-img -p writes "    (12.34/100%)\r" lines: the last complete one's percentage goes to the callback. */
struct convert_watch {
    img_progress_fn progress;
    void *opaque;
    char line[64];
    size_t len;
};

static int convert_watch(void *opaque, const char *data, size_t len)
{
    struct convert_watch *w = opaque;

    for (size_t i = 0; i < len; i++) {
        char c = data[i];
        if (c != '\r' && c != '\n') {
            if (w->len + 1 < sizeof(w->line))
                w->line[w->len++] = c;
            continue;
        }
        w->line[w->len] = '\0';
        w->len = 0;
        {
            const char *open = strchr(w->line, '(');
            char *end = NULL;
            double pct = open ? strtod(open + 1, &end) : -1;
            if (open && end != open + 1 && *end == '/' && pct >= 0 && pct <= 100 && w->progress &&
                w->progress(w->opaque, pct) != 0)
                return 1;
        }
    }
    return 0;
}

int img_convert(const char *file, const char *fmt, const char *tag, const char *dest, const char *out_fmt,
                bool compress, img_progress_fn progress, void *opaque, struct qs_error **err)
{
    char *snap = tag ? qs_asprintf("snapshot.name=%s", tag) : NULL;
    char *argv[16];
    struct convert_watch w = {progress, opaque, {0}, 0};
    size_t n = 0;
    int r;

    argv[n++] = "qemu-img";
    argv[n++] = "convert";
    argv[n++] = "-U";
    argv[n++] = "-p";
    argv[n++] = "-f";
    argv[n++] = (char *)fmt;
    if (snap) {
        argv[n++] = "-l";
        argv[n++] = snap;
    }
    argv[n++] = "-O";
    argv[n++] = (char *)out_fmt;
    if (compress)
        argv[n++] = "-c";
    argv[n++] = "--";
    argv[n++] = (char *)file;
    argv[n++] = (char *)dest;
    argv[n] = NULL;
    r = img_run_watch(argv, 0, convert_watch, &w, NULL, err);
    free(snap);
    return r;
}

int img_write_raw(const char *raw, const char *qcow2, struct qs_error **err)
{
    char *argv[] = {"qemu-img", "convert", "-n", "-f", "raw", "-O", "qcow2", "--", (char *)raw, (char *)qcow2, NULL};
    return img_run(argv, NULL, err);
}

static uint64_t be64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

int img_qcow2_backing(const char *file, char **backing, struct qs_error **err)
{
    unsigned char hdr[20];
    char name[1024];
    uint64_t off;
    uint32_t len;
    ssize_t r;
    int fd = open(file, O_RDONLY | O_CLOEXEC), ret = -1;

    *backing = NULL;
    if (fd < 0) {
        qs_error_set_errno(err, errno == ENOENT ? QS_ERR_NOTFOUND : QS_ERR_IO, errno, "cannot open '%s'", file);
        return -1;
    }
    r = pread(fd, hdr, sizeof(hdr), 0);
    if (r < (ssize_t)sizeof(hdr) || memcmp(hdr, "QFI\xfb", 4) != 0) {
        ret = 0; /* not qcow2 */
        goto out;
    }
    off = be64(hdr + 8);
    len = (uint32_t)hdr[16] << 24 | (uint32_t)hdr[17] << 16 | (uint32_t)hdr[18] << 8 | hdr[19];
    if (off == 0 || len == 0 || len >= sizeof(name)) {
        ret = 0;
        goto out;
    }
    r = pread(fd, name, len, (off_t)off);
    if (r != (ssize_t)len) {
        qs_error_set(err, QS_ERR_IO, "cannot read the backing file name of '%s'", file);
        goto out;
    }
    name[len] = '\0';
    if (name[0] == '/' || !strchr(file, '/')) {
        *backing = qs_xstrdup(name);
    } else {
        const char *slash = strrchr(file, '/');
        *backing = qs_asprintf("%.*s/%s", (int)(slash - file), file, name);
    }
    ret = 0;
out:
    close(fd);
    return ret;
}
