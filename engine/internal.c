/* internal.c: internal snapshots through QEMU's snapshot-* jobs (live) and qemu-img (offline). */
#include "internal.h"
#include "img.h"
#include "qs_util.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int check_tag(const char *target, bool has, const char *clash, const char *tag, enum isnap_op op,
                     struct qs_error **err)
{
    if (op == ISNAP_CREATE && has) {
        qs_error_set(err, QS_ERR_EXISTS, "disk '%s' already has an internal snapshot named '%s'", target, tag);
        return -1;
    }
    if (op != ISNAP_CREATE && !has) {
        qs_error_set(err, QS_ERR_NOTFOUND, "internal snapshot '%s' not found on disk '%s'", tag, target);
        return -1;
    }
    if (op == ISNAP_LOAD && clash) {
        qs_error_set(err, QS_ERR_UNSUPPORTED,
                     "disk '%s' has another snapshot '%s' whose id is '%s': QEMU would load that one", target,
                     clash, tag);
        return -1;
    }
    return 0;
}

int isnap_check_live(const struct vm_block *blocks, size_t nblocks, const struct isnap_disk *disks, size_t n,
                     const char *tag, enum isnap_op op, struct qs_error **err)
{
    if (n == 0) {
        qs_error_set(err, QS_ERR_UNSUPPORTED, "the domain has no disk that can hold an internal snapshot");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const struct vm_block *b = vm_blocks_find(blocks, nblocks, disks[i].node);
        if (!b) {
            qs_error_set(err, QS_ERR_NOTFOUND, "disk '%s' (node '%s') is not attached to the running QEMU",
                         disks[i].target, disks[i].node);
            return -1;
        }
        if (strcmp(b->format, "qcow2") != 0) {
            qs_error_set(err, QS_ERR_UNSUPPORTED,
                         "disk '%s' is %s: internal snapshots need qcow2 (convert it, or exclude the disk)",
                         disks[i].target, b->format);
            return -1;
        }
        if (b->readonly) {
            qs_error_set(err, QS_ERR_UNSUPPORTED, "disk '%s' is read-only", disks[i].target);
            return -1;
        }
        if (check_tag(disks[i].target, vm_block_has_tag(b, tag), vm_block_tag_clash(b, tag), tag, op, err) < 0)
            return -1;
    }
    return 0;
}

int isnap_check_offline(const struct isnap_disk *disks, size_t n, const char *tag, enum isnap_op op,
                        struct qs_error **err)
{
    if (n == 0) {
        qs_error_set(err, QS_ERR_UNSUPPORTED, "the domain has no disk that can hold an internal snapshot");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        struct img_info info = {0};
        int r;
        if (img_info_get(disks[i].file, false, &info, err) < 0) {
            /* an image qemu-img cannot open is a refusal: nothing was touched (a delete then keeps no intent) */
            if (err && *err && (*err)->code == QS_ERR_QEMU)
                (*err)->code = QS_ERR_INVALID;
            qs_error_prefix(err, "disk '%s'", disks[i].target);
            return -1;
        }
        if (strcmp(info.format, "qcow2") != 0) {
            qs_error_set(err, QS_ERR_UNSUPPORTED, "disk '%s' is %s: internal snapshots need qcow2",
                         disks[i].target, info.format);
            img_info_release(&info);
            return -1;
        }
        r = check_tag(disks[i].target, img_info_has_tag(&info, tag), img_info_tag_clash(&info, tag), tag, op, err);
        img_info_release(&info);
        if (r < 0)
            return -1;
    }
    return 0;
}

static struct qmp_args *job_args(const struct isnap_disk *disks, size_t n, const char *tag, bool vmstate)
{
    struct qmp_args *a = qmp_args_new(), *devs;

    qmp_args_set_str(a, "job-id", ISNAP_JOB);
    qmp_args_set_str(a, "tag", tag);
    if (vmstate)
        qmp_args_set_str(a, "vmstate", disks[0].node);
    devs = qmp_args_set_list(a, "devices");
    for (size_t i = 0; i < n; i++)
        qmp_args_push_str(devs, disks[i].node);
    return a;
}

struct progress_ctx {
    isnap_progress_fn fn;
    void *opaque;
    const char *phase;
    void (*concluded)(void *opaque, bool ok);
    void (*dismissing)(void *opaque);
};

static int job_progress(void *opaque, const char *job_id, uint64_t cur, uint64_t total)
{
    struct progress_ctx *p = opaque;
    (void)job_id;
    return p->fn ? p->fn(p->opaque, p->phase, cur, total) : 0;
}

static void job_concluded(void *opaque, const char *job_id, bool ok)
{
    struct progress_ctx *p = opaque;
    (void)job_id;
    if (p->concluded)
        p->concluded(p->opaque, ok);
}

static void job_dismissing(void *opaque, const char *job_id)
{
    struct progress_ctx *p = opaque;
    (void)job_id;
    p->dismissing(p->opaque);
}

static int run_job_ex(struct qmp_client *c, const char *cmd, const char *phase, struct qmp_args *a,
                      isnap_progress_fn progress, void *opaque, void (*concluded)(void *, bool),
                      void (*dismissing)(void *), struct qs_error **err)
{
    struct progress_ctx p = {progress, opaque, phase, concluded, dismissing};
    /* without an outcome to note, a job that failed is read and dismissed in one round trip (one that ended
     * well is only dismissed: qmp_job_run) */
    struct qmp_job_options o = {.progress = job_progress, .opaque = &p,
                                .concluded = concluded ? job_concluded : NULL,
                                .dismissing = dismissing ? job_dismissing : NULL};
    return qmp_job_run(c, cmd, a, ISNAP_JOB, &o, err);
}

static int run_job(struct qmp_client *c, const char *cmd, const char *phase, struct qmp_args *a,
                   isnap_progress_fn progress, void *opaque, struct qs_error **err)
{
    return run_job_ex(c, cmd, phase, a, progress, opaque, NULL, NULL, err);
}

int isnap_which(struct qmp_client *c, const struct isnap_disk *disks, size_t n, const char *tag, bool *has,
                size_t *count, struct qs_error **err)
{
    struct vm_block *blocks = NULL;
    size_t nb = 0;
    int ret = -1;

    *count = 0;
    if (c && vm_blocks(c, &blocks, &nb, err) < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        has[i] = false;
        if (c) {
            const struct vm_block *b = vm_blocks_find(blocks, nb, disks[i].node);
            has[i] = b && vm_block_has_tag(b, tag);
        } else if (disks[i].file) {
            struct img_info info = {0};
            if (img_info_get(disks[i].file, true, &info, err) < 0)
                goto out;
            has[i] = img_info_has_tag(&info, tag);
            img_info_release(&info);
        }
        *count += has[i];
    }
    ret = 0;
out:
    vm_blocks_free(blocks, nb);
    return ret;
}

int isnap_delete_present(struct qmp_client *c, const struct isnap_disk *disks, size_t n, const char *tag,
                         struct qs_error **err)
{
    bool *has = qs_xcalloc(n + 1, sizeof(bool));
    struct isnap_disk *left = qs_xcalloc(n + 1, sizeof(*left));
    size_t count = 0, k = 0;
    int ret = -1;

    if (isnap_which(c, disks, n, tag, has, &count, err) < 0)
        goto out;
    for (size_t i = 0; i < n; i++)
        if (has[i])
            left[k++] = disks[i];
    ret = k == 0 ? 0 : c ? isnap_delete(c, left, k, tag, err) : isnap_offline_delete(left, k, tag, err);
out:
    free(left);
    free(has);
    return ret;
}

/* After a failed save, removes TAG from the disks where the job did create it (none had it before). */
static void save_cleanup(struct qmp_client *c, const struct isnap_disk *disks, size_t n, const char *tag)
{
    isnap_delete_present(c, disks, n, tag, NULL);
}

int isnap_save(struct qmp_client *c, const struct isnap_disk *disks, size_t n, const char *tag,
               isnap_progress_fn progress, void *opaque, struct qs_error **err)
{
    struct qmp_args *a = job_args(disks, n, tag, true);
    int r = run_job(c, "snapshot-save", "save", a, progress, opaque, err);

    if (r < 0 && (!err || !*err || (*err)->code != QS_ERR_DISCONNECTED))
        save_cleanup(c, disks, n, tag);
    qmp_args_free(a);
    return r;
}

int isnap_load(struct qmp_client *c, const struct isnap_disk *disks, size_t n, const char *tag,
               isnap_progress_fn progress, void *opaque, void (*loaded)(void *opaque, bool ok),
               void (*dismissing)(void *opaque), struct qs_error **err)
{
    struct qmp_args *a = job_args(disks, n, tag, true);
    int r = run_job_ex(c, "snapshot-load", "load", a, progress, opaque, loaded, dismissing, err);
    qmp_args_free(a);
    return r;
}

int isnap_delete(struct qmp_client *c, const struct isnap_disk *disks, size_t n, const char *tag,
                 struct qs_error **err)
{
    struct qmp_args *a = job_args(disks, n, tag, false);
    int r = run_job(c, "snapshot-delete", "delete", a, NULL, NULL, err);
    qmp_args_free(a);
    return r;
}

int isnap_offline_create(const struct isnap_disk *disks, size_t n, const char *tag, struct qs_error **err)
{
    for (size_t i = 0; i < n; i++) {
        if (img_snapshot_create(disks[i].file, tag, err) < 0) {
            qs_error_prefix(err, "disk '%s'", disks[i].target);
            while (i-- > 0)
                img_snapshot_delete(disks[i].file, tag, NULL);
            return -1;
        }
    }
    return 0;
}

int isnap_offline_apply(const struct isnap_disk *disks, size_t n, const char *tag, struct qs_error **err)
{
    if (isnap_check_offline(disks, n, tag, ISNAP_LOAD, err) < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (img_snapshot_apply(disks[i].file, tag, err) < 0) {
            qs_error_prefix(err, "disk '%s'", disks[i].target);
            return -1;
        }
    }
    return 0;
}

int isnap_offline_delete(const struct isnap_disk *disks, size_t n, const char *tag, struct qs_error **err)
{
    for (size_t i = 0; i < n; i++) {
        if (img_snapshot_delete(disks[i].file, tag, err) < 0) {
            qs_error_prefix(err, "disk '%s'", disks[i].target);
            return -1;
        }
    }
    return 0;
}
