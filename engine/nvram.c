/* nvram.c: a UEFI guest's variables - described at attach, copied with every snapshot, put back on revert. */
#include "nvram.h"
#include "disks.h"
#include "files.h"
#include "img.h"
#include "qargv.h"
#include "qs_file.h"
#include "qs_util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NVRAM_MAX (64u << 20) /* OVMF's stores are 128 KiB to 4 MiB */
#define COPY_SUFFIX ".nvram"

/* What a revert puts in place at the next QEMU start (or at its end). */
struct nvram_pending {
    char *domain;
    char *snapshot;
    bool reset;
};

static void pending_free(struct engine *e)
{
    if (!e->nvram)
        return;
    free(e->nvram->domain);
    free(e->nvram->snapshot);
    free(e->nvram);
    e->nvram = NULL;
}

bool nvram_is_pflash(struct qmp_client *c, const struct vm_block *b)
{
    struct qmp_args *a;
    struct qmp_reply *r = NULL;
    char *path;
    bool yes = false;

    if (!b->qdev || !*b->qdev)
        return false;
    path = b->qdev[0] == '/' ? qs_xstrdup(b->qdev) : qs_asprintf("/machine/peripheral/%s", b->qdev);
    a = qmp_args_new();
    qmp_args_set_str(a, "path", path);
    qmp_args_set_str(a, "property", "type");
    if (qmp_client_execute(c, "qom-get", a, &r, NULL) == 0)
        yes = qs_str_has_prefix(qmp_value_string(qmp_reply_value(r)), "cfi.pflash");
    qmp_reply_free(r);
    qmp_args_free(a);
    free(path);
    return yes;
}

/* The variables template the firmware descriptors (libvirt's way to pair code and variables) give for the
 * code file LOADER, or NULL. Caller frees. */
static char *template_for(const char *loader)
{
    static const char *const dirs[] = {"/etc/qemu/firmware", "/usr/share/qemu/firmware", NULL};
    char *want = loader ? realpath(loader, NULL) : NULL, *found = NULL;

    for (size_t i = 0; want && dirs[i] && !found; i++) {
        DIR *d = opendir(dirs[i]);
        struct dirent *de;
        while (d && !found && (de = readdir(d))) {
            char *path, *text = NULL, *exe;
            size_t len = 0;
            struct qmp_reply *r;
            const struct qmp_value *map;
            if (!qs_str_has_suffix(de->d_name, ".json"))
                continue;
            path = qs_asprintf("%s/%s", dirs[i], de->d_name);
            if (qs_file_read(AT_FDCWD, path, 1u << 20, &text, &len, NULL) == 0 &&
                (r = qmp_reply_parse(text, NULL))) {
                map = qmp_value_get(qmp_reply_value(r), "mapping");
                exe = qmp_value_get_string(qmp_value_get(map, "executable"), "filename")
                          ? realpath(qmp_value_get_string(qmp_value_get(map, "executable"), "filename"), NULL)
                          : NULL;
                if (exe && strcmp(exe, want) == 0 &&
                    qmp_value_get_string(qmp_value_get(map, "nvram-template"), "filename"))
                    found = qs_xstrdup(qmp_value_get_string(qmp_value_get(map, "nvram-template"), "filename"));
                free(exe);
                qmp_reply_free(r);
            }
            free(text);
            free(path);
        }
        if (d)
            closedir(d);
    }
    free(want);
    return found;
}

int nvram_describe(struct qmp_client *c, char *const *argv, const struct vm_block *b, size_t nb, const char *cwd,
                   struct md_domain *dom, struct qs_error **err)
{
    char *loader = NULL, *vars = NULL, *templ = NULL, *arg = NULL;
    const struct vm_block *vb = NULL;
    int ret = -1;

    for (size_t i = 0; i < nb; i++) {
        if (!nvram_is_pflash(c, &b[i]))
            continue;
        if (b[i].readonly && !loader) {
            loader = disk_image_name(b[i].file, cwd);
        } else if (!b[i].readonly && !vb) {
            vb = &b[i];
            vars = disk_image_name(b[i].file, cwd);
        }
    }
    if (!vb) {
        ret = 0; /* no UEFI variables: nothing to record */
        goto out;
    }
    if (!vars) {
        qs_error_set(err, QS_ERR_UNSUPPORTED, "the UEFI variables '%s' are not a local file", vb->file);
        goto out;
    }
    templ = template_for(loader);
    {
        ssize_t at = qargv_disk_option(argv, cwd, vb->drive, vb->node && vb->node[0] != '#' ? vb->node : NULL,
                                       vars);
        if (at >= 0)
            arg = qs_asprintf("%zd", at);
    }
    {
        struct md_domain_nvram nv = {loader, vars, templ, vb->format, arg, vb->drive,
                                     vb->node && vb->node[0] != '#' ? vb->node : NULL};
        ret = md_domain_set_nvram(dom, &nv, err);
    }
out:
    free(loader);
    free(vars);
    free(templ);
    free(arg);
    return ret;
}

/* ---- files ---- */

static int read_all(const char *path, unsigned char **data, size_t *len, struct qs_error **err)
{
    char *text = NULL;

    if (qs_file_read(AT_FDCWD, path, NVRAM_MAX, &text, len, err) < 0) {
        qs_error_prefix(err, "UEFI variables '%s'", path);
        return -1;
    }
    *data = (unsigned char *)text;
    return 0;
}

static char *copy_dir(struct engine *e, const char *domain)
{
    return qs_asprintf("%s/snapshot/%s", engine_root(e), domain);
}

/* Writes DATA over PATH atomically (a temporary beside it, renamed), keeping PATH's mode and owner. */
static int replace_file(const char *path, const unsigned char *data, size_t len, struct qs_error **err)
{
    char *dir = files_dir_of(path), *tmp = NULL;
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    struct stat st;
    bool have = stat(path, &st) == 0;
    int fd = -1, dfd = -1, ret = -1;

    tmp = qs_asprintf("%s/.%s.qsnap-nvram", dir, base);
    unlink(tmp); /* one a crash left */
    if ((fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, have ? (st.st_mode & 07777) : 0600)) < 0) {
        qs_error_set_errno(err, QS_ERR_IO, errno, "cannot create '%s'", tmp);
        goto out;
    }
    if (have) {
        /* as root: the store stays its owner's (libvirt's qemu user, say) */
        if (fchown(fd, st.st_uid, st.st_gid) < 0 && errno != EPERM) {
            qs_error_set_errno(err, QS_ERR_IO, errno, "cannot set the owner of '%s'", tmp);
            goto out;
        }
        fchmod(fd, st.st_mode & 07777);
    }
    if (qs_write_all(fd, data, len) < 0 || fsync(fd) < 0) {
        qs_error_set_errno(err, QS_ERR_IO, errno, "cannot write '%s'", tmp);
        goto out;
    }
    if (rename(tmp, path) < 0) {
        qs_error_set_errno(err, QS_ERR_IO, errno, "cannot replace '%s'", path);
        goto out;
    }
    if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0)
        fsync(dfd);
    ret = 0;
out:
    if (ret < 0 && fd >= 0)
        unlink(tmp);
    qs_close(fd);
    qs_close(dfd);
    free(tmp);
    free(dir);
    return ret;
}

/* ---- capture ---- */

static bool is_qcow2(const struct md_domain_nvram *nv)
{
    return qs_str_equal(nv->format, "qcow2");
}

/* The node of the pflash that opens FILE in DOM's running QEMU (C), or NULL. Caller frees. */
static char *live_node(struct qmp_client *c, const struct md_domain *dom, const char *file)
{
    struct vm_block *b = NULL;
    size_t n = 0;
    char *want = qargv_path_abs(file, NULL), *node = NULL;

    if (vm_blocks(c, &b, &n, NULL) == 0)
        for (size_t i = 0; i < n && !node; i++) {
            char *img = disk_block_image(&b[i], dom);
            if (img && qs_str_equal(img, want) && b[i].node)
                node = qs_xstrdup(b[i].node);
            free(img);
        }
    vm_blocks_free(b, n);
    free(want);
    return node;
}

/* blockdev-snapshot-internal-sync or blockdev-snapshot-delete-internal-sync of TAG on NODE. */
static int live_tag(struct qmp_client *c, const char *cmd, const char *node, const char *tag, struct qs_error **err)
{
    struct qmp_args *a = qmp_args_new();
    int r;

    qmp_args_set_str(a, "device", node);
    qmp_args_set_str(a, "name", tag);
    r = qmp_client_execute(c, cmd, a, NULL, err);
    qmp_args_free(a);
    return r;
}

/* Removes tag TAG from the variables' image FILE: through QEMU (NODE) when it runs, else with qemu-img. */
static int untag(struct qmp_client *c, const char *node, const char *file, const char *tag, struct qs_error **err)
{
    if (c && node)
        return live_tag(c, "blockdev-snapshot-delete-internal-sync", node, tag, err);
    return img_snapshot_delete(file, tag, err);
}

int nvram_capture_begin(struct engine *e, struct qmp_client *c, const struct md_domain *dom, const char *domain,
                        const char *name, struct nvram_capture *cap, struct qs_error **err)
{
    struct md_domain_nvram nv;
    char *dir = NULL, *file = NULL;
    int dfd = -1, ret = -1;

    memset(cap, 0, sizeof(*cap));
    if (md_domain_nvram_get(dom, &nv) <= 0)
        return 0;
    cap->src = qs_xstrdup(nv.file);
    if (is_qcow2(&nv)) {
        /* in the snapshot, as the disks' state is: an internal snapshot of the variables' own image */
        struct img_info info = {0};
        if (c && !(cap->node = live_node(c, dom, nv.file))) {
            qs_error_set(err, QS_ERR_NOTFOUND, "the running QEMU has no pflash on UEFI variables '%s'", nv.file);
            goto out;
        }
        if (img_info_get(nv.file, true, &info, err) < 0)
            goto out;
        /* a tag of that name without the snapshot's metadata is a leftover of a create undone */
        if (img_info_has_tag(&info, name) && untag(c, cap->node, nv.file, name, err) < 0) {
            img_info_release(&info);
            goto out;
        }
        img_info_release(&info);
        if ((c ? live_tag(c, "blockdev-snapshot-internal-sync", cap->node, name, err)
               : img_snapshot_create(nv.file, name, err)) < 0) {
            qs_error_prefix(err, "UEFI variables '%s'", nv.file);
            goto out;
        }
        cap->tag = qs_xstrdup(name);
        ret = 0;
        goto out;
    }
    dir = copy_dir(e, domain);
    file = qs_asprintf("%s" COPY_SUFFIX, name);
    if (read_all(nv.file, &cap->first, &cap->len, err) < 0 || qs_dir_create(dir, 0700, err) < 0)
        goto out;
    if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        qs_error_set_errno(err, QS_ERR_IO, errno, "cannot open '%s'", dir);
        goto out;
    }
    if (qs_file_write_atomic(dfd, file, cap->first, cap->len, 0600, err) < 0)
        goto out;
    cap->path = qs_asprintf("%s/%s", dir, file);
    ret = 0;
out:
    if (ret < 0) {
        free(cap->first);
        free(cap->src);
        free(cap->node);
        memset(cap, 0, sizeof(*cap));
    }
    qs_close(dfd);
    free(dir);
    free(file);
    return ret;
}

void nvram_capture_end(struct nvram_capture *cap, struct qmp_client *c, bool ok)
{
    unsigned char *now = NULL;
    size_t len = 0;

    if (cap->tag) {
        /* best effort: a tag left behind goes with the next tidy */
        if (!ok)
            untag(c, c ? cap->node : NULL, cap->src, cap->tag, NULL);
        goto out;
    }
    if (!cap->path)
        goto out;
    if (!ok) {
        unlink(cap->path);
        goto out;
    }
    /* a guest writing its variables during the snapshot: the copy takes the state after it (best effort:
     * the copy from before stays when this fails) */
    if (read_all(cap->src, &now, &len, NULL) == 0 && (len != cap->len || memcmp(now, cap->first, len) != 0))
        replace_file(cap->path, now, len, NULL);
out:
    free(now);
    free(cap->path);
    free(cap->src);
    free(cap->first);
    free(cap->tag);
    free(cap->node);
    memset(cap, 0, sizeof(*cap));
}

/* Whether DOMAIN has metadata for snapshot NAME. */
static bool has_metadata(const char *dir, const char *name)
{
    char *meta = qs_asprintf("%s/%s.xml", dir, name);
    bool r = access(meta, F_OK) == 0 || errno != ENOENT;

    free(meta);
    return r;
}

/* qcow2 variables: the tags of the snapshots GONE names whose metadata is gone are removed (through QEMU when
 * it runs). */
static void tidy_tags(struct engine *e, struct qmp_client *c, const struct md_domain *known, const char *domain,
                      const char *dir, char *const *gone)
{
    struct md_domain *mine = known ? NULL : md_store_domain_get(e->store, domain, NULL);
    const struct md_domain *dom = known ? known : mine;
    struct md_domain_nvram nv;
    struct img_info info = {0};
    struct qmp_client *own = NULL;
    char *node = NULL;

    if (!gone || !gone[0] || !dom || md_domain_nvram_get(dom, &nv) <= 0 || !is_qcow2(&nv) || img_info_get(nv.file, true, &info, NULL) < 0)
        goto out;
    for (size_t i = 0; info.tags && info.tags[i]; i++) {
        if (!qs_strv_has(gone, info.tags[i]) || has_metadata(dir, info.tags[i]))
            continue;
        if (!c && !own && engine_domain_connect(e, dom, &own, NULL) < 0)
            goto out;
        if ((c || own) && !node && !(node = live_node(c ? c : own, dom, nv.file)))
            goto out;
        untag(c ? c : own, node, nv.file, info.tags[i], NULL);
    }
out:
    free(node);
    qmp_client_free(own);
    img_info_release(&info);
    md_domain_free(mine);
}

void nvram_tidy(struct engine *e, struct qmp_client *c, const struct md_domain *dom, const char *domain,
                char *const *gone)
{
    char *dir = copy_dir(e, domain);
    DIR *d = NULL;
    struct dirent *de;

    /* the snapshots named: as many look-ups - the directory holds every snapshot's metadata (a scan read all
     * 10,000 entries of a large domain, 14 getdents64 calls and a compare each, on every delete) */
    for (size_t i = 0; gone && gone[i]; i++) {
        char *copy = qs_asprintf("%s/%s%s", dir, gone[i], COPY_SUFFIX);
        if (!has_metadata(dir, gone[i]))
            unlink(copy);
        free(copy);
    }
    if (!gone)
        d = opendir(dir);
    while (d && (de = readdir(d))) {
        size_t l = strlen(de->d_name), sl = strlen(COPY_SUFFIX);
        char *meta, *copy;
        if (l <= sl || strcmp(de->d_name + l - sl, COPY_SUFFIX) != 0 || de->d_name[0] == '.')
            continue;
        meta = qs_asprintf("%.*s", (int)(l - sl), de->d_name);
        copy = qs_asprintf("%s/%s", dir, de->d_name);
        if (!has_metadata(dir, meta))
            unlink(copy);
        free(meta);
        free(copy);
    }
    if (d)
        closedir(d);
    tidy_tags(e, c, dom, domain, dir, gone);
    free(dir);
}

/* ---- revert ---- */

static bool has_memory(const struct md_snapshot *s)
{
    return s->state != MD_STATE_SHUTOFF && s->state != MD_STATE_DISK_SNAPSHOT && s->memory != MD_LOCATION_NO;
}

int nvram_revert_begin(struct engine *e, const struct md_domain *dom, const char *domain,
                       const struct md_snapshot *snap, unsigned flags, struct qs_error **err)
{
    struct md_domain_nvram nv;
    bool reset = flags & ENGINE_REVERT_RESET_NVRAM, have = md_domain_nvram_get(dom, &nv) > 0;
    char *templ = NULL;

    pending_free(e);
    if (reset && !have) {
        qs_error_set(err, QS_ERR_UNSUPPORTED, "domain '%s' has no UEFI variables (NVRAM) to reset", domain);
        return -1;
    }
    if (reset && has_memory(snap)) {
        qs_error_set(err, QS_ERR_UNSUPPORTED,
                     "snapshot '%s' holds memory: the guest's RAM brings its UEFI variables back, which QEMU writes "
                     "to the NVRAM when it runs, so --reset-nvram cannot apply (revert to a disk-only snapshot, or "
                     "without --reset-nvram)",
                     snap->name);
        return -1;
    }
    if (reset && !nv.templ && !(templ = template_for(nv.loader))) {
        qs_error_set(err, QS_ERR_NOTFOUND,
                     "no template is known for the UEFI variables of domain '%s' (firmware '%s'): record one with "
                     "<nvram template='...'>",
                     domain, nv.loader ? nv.loader : "unknown");
        return -1;
    }
    free(templ);
    if (!have)
        return 0;
    e->nvram = qs_xcalloc(1, sizeof(*e->nvram));
    e->nvram->domain = qs_xstrdup(domain);
    e->nvram->snapshot = qs_xstrdup(snap->name);
    e->nvram->reset = reset;
    return 0;
}

/* Puts the pending variables into DOM's store (QEMU not running). A snapshot without a copy (taken before
 * qsnap kept them) leaves the store as it is. */
static int apply(struct engine *e, const struct md_domain *dom, struct qs_error **err)
{
    struct md_domain_nvram nv;
    char *src = NULL, *dir;
    unsigned char *data = NULL;
    size_t len = 0;
    int ret = -1;

    if (md_domain_nvram_get(dom, &nv) <= 0)
        return 0;
    if (is_qcow2(&nv)) {
        struct img_info info = {0};
        if (e->nvram->reset) {
            /* the template written into the image's active state: its snapshots' tags stay */
            src = nv.templ ? qs_xstrdup(nv.templ) : template_for(nv.loader);
            ret = src ? img_write_raw(src, nv.file, err) : -1;
            if (!src)
                qs_error_set(err, QS_ERR_NOTFOUND, "no template is known for UEFI variables '%s'", nv.file);
        } else if ((ret = img_info_get(nv.file, false, &info, err)) == 0 &&
                   img_info_has_tag(&info, e->nvram->snapshot)) {
            ret = img_snapshot_apply(nv.file, e->nvram->snapshot, err);
        }
        img_info_release(&info);
        goto out;
    }
    if (e->nvram->reset) {
        src = nv.templ ? qs_xstrdup(nv.templ) : template_for(nv.loader);
    } else {
        dir = copy_dir(e, e->nvram->domain);
        src = qs_asprintf("%s/%s" COPY_SUFFIX, dir, e->nvram->snapshot);
        free(dir);
        if (access(src, F_OK) < 0) {
            ret = 0;
            goto out;
        }
    }
    if (!src) {
        qs_error_set(err, QS_ERR_NOTFOUND, "no template is known for UEFI variables '%s'", nv.file);
        goto out;
    }
    if (read_all(src, &data, &len, err) < 0 || replace_file(nv.file, data, len, err) < 0)
        goto out;
    ret = 0;
out:
    if (ret < 0)
        qs_error_prefix(err, "cannot put back the UEFI variables of snapshot '%s'", e->nvram->snapshot);
    free(data);
    free(src);
    return ret;
}

int nvram_before_start(struct engine *e, const struct md_domain *dom, struct qs_error **err)
{
    int r;

    if (!e->nvram || !qs_str_equal(e->nvram->domain, md_domain_name(dom)))
        return 0;
    r = apply(e, dom, err);
    pending_free(e);
    return r;
}

int nvram_revert_end(struct engine *e, bool ok, bool qemu_up, struct qs_error **err)
{
    struct md_domain *dom;
    int r = 0;

    if (!e->nvram)
        return 0;
    if (ok && !qemu_up) {
        if (!(dom = engine_domain_load(e, e->nvram->domain, err)))
            r = -1;
        else
            r = apply(e, dom, err);
        md_domain_free(dom);
    }
    pending_free(e);
    return r;
}

/* ---- clones ---- */

int nvram_copy_for_clone(struct engine *e, const struct md_domain *dom, const char *domain, const char *name,
                         const char *dest, struct qs_error **err)
{
    struct md_domain_nvram nv;
    char *dir = copy_dir(e, domain), *copy = qs_asprintf("%s/%s" COPY_SUFFIX, dir, name);
    unsigned char *data = NULL;
    size_t len = 0;
    int fd = -1, ret = -1;

    if (md_domain_nvram_get(dom, &nv) <= 0) {
        ret = 0;
        goto out;
    }
    if (is_qcow2(&nv)) {
        struct img_info info = {0};
        if (img_info_get(nv.file, true, &info, err) == 0)
            ret = img_convert(nv.file, "qcow2", img_info_has_tag(&info, name) ? name : NULL, dest, "qcow2", false,
                              NULL, NULL, err);
        img_info_release(&info);
        goto out;
    }
    /* the snapshot's variables; a snapshot from before qsnap kept them gets the domain's current ones */
    if (read_all(access(copy, F_OK) == 0 ? copy : nv.file, &data, &len, err) < 0)
        goto out;
    if ((fd = open(dest, O_WRONLY | O_TRUNC | O_CLOEXEC)) < 0 || qs_write_all(fd, data, len) < 0 || fsync(fd) < 0) {
        qs_error_set_errno(err, QS_ERR_IO, errno, "cannot write '%s'", dest);
        goto out;
    }
    ret = 0;
out:
    qs_close(fd);
    free(data);
    free(copy);
    free(dir);
    return ret;
}
