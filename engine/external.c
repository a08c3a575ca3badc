/* external.c: external disk-only snapshots - create (qemu-img + blockdev-snapshot), revert, delete by merging. */
#include "external.h"
#include "disks.h"
#include "files.h"
#include "qargv.h"
#include "intent.h"
#include "img.h"
#include "memstate.h"
#include "quiesce.h"
#include "qs_util.h"
#include "vm.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* how long to wait for the STOP / RESUME event of a pause qsnap caused (they come with or before the reply) */
#define PAUSE_EVENT_WAIT_MS 5000
/* --precopy: passes over the RAM before a guest that dirties it faster than the file takes it is stopped */
#define PRECOPY_PASSES 20
/* --precopy: QEMU's downtime-limit - it stops the guest only when the rest of the RAM takes no longer (by its
 * own estimate of the file's speed) to write; QEMU's default, 300 ms, would end the first pass early */
#define PRECOPY_DOWNTIME_MS 10

/* One disk of an external operation. */
struct xdisk {
    char *target;   /* "vda" */
    char *base;     /* create: the image frozen (current top); revert: the snapshot's frozen image */
    char *base_fmt;
    char *top_node; /* live: QEMU's current top node of the disk */
    char *overlay;  /* the new top */
    char *node;     /* live: the overlay's node name */
    int64_t size;   /* live: the top's virtual size (0: unknown) */
    bool created;   /* qsnap created the overlay file */
    bool added;     /* blockdev-add done */
};

struct xplan {
    struct xdisk *d;
    size_t n;
};

static void xplan_release(struct xplan *p)
{
    for (size_t i = 0; i < p->n; i++) {
        free(p->d[i].target);
        free(p->d[i].base);
        free(p->d[i].base_fmt);
        free(p->d[i].top_node);
        free(p->d[i].overlay);
        free(p->d[i].node);
    }
    free(p->d);
    memset(p, 0, sizeof(*p));
}

static struct xdisk *xplan_add(struct xplan *p)
{
    p->d = qs_xrealloc(p->d, (p->n + 1) * sizeof(*p->d));
    memset(&p->d[p->n], 0, sizeof(*p->d));
    return &p->d[p->n++];
}

/* realpath when the file exists, else a copy: paths compare by what they name */
static char *canon(const char *path)
{
    char *r = realpath(path, NULL);
    return r ? r : qs_xstrdup(path);
}

static bool same_file(const char *a, const char *b)
{
    char *ca, *cb;
    bool eq;
    if (!a || !b)
        return false;
    ca = canon(a);
    cb = canon(b);
    eq = strcmp(ca, cb) == 0;
    free(ca);
    free(cb);
    return eq;
}

/* libvirt's default overlay name: BASE with the extension after the last '.' of its file name replaced by
 * ".SUFFIX" (appended when it has none). */
static char *default_overlay(const char *base, const char *suffix)
{
    const char *dot = strrchr(base, '.');
    if (dot && !strchr(dot, '/'))
        return qs_asprintf("%.*s.%s", (int)(dot - base), base, suffix);
    return qs_asprintf("%s.%s", base, suffix);
}

static const struct md_snapshot_disk *spec_disk(const struct md_snapshot *spec, const char *target)
{
    for (size_t i = 0; spec && i < spec->ndisks; i++)
        if (qs_str_equal(spec->disks[i].name, target))
            return &spec->disks[i];
    return NULL;
}

/* The disk TARGET of DOM, or -1 (QS_ERR_NOTFOUND when ERR_WHAT names the owner for the message). */
static int domain_disk(const struct md_domain *dom, const char *target, struct md_domain_disk *out)
{
    size_t n = md_domain_disk_count(dom);
    for (size_t k = 0; k < n; k++)
        if (md_domain_disk_get(dom, k, out, NULL) == 0 && qs_str_equal(out->target, target))
            return 0;
    return -1;
}

static bool is_snapshot_disk(const struct md_domain_disk *d)
{
    return d->target && (!d->device || strcmp(d->device, "disk") == 0);
}

static void snap_disks_clear(struct md_snapshot *snap)
{
    for (size_t i = 0; i < snap->ndisks; i++) {
        free(snap->disks[i].name);
        free(snap->disks[i].type);
        free(snap->disks[i].driver_type);
        free(snap->disks[i].source);
        free(snap->disks[i].raw);
    }
    free(snap->disks);
    snap->disks = NULL;
    snap->ndisks = 0;
}

/* Creates X's overlay file: O_EXCL 0600 (never over an existing file), then the QEMU behind C (a blockdev-create
 * job; C NULL, or a size unknown: qemu-img) writes the qcow2 into it. */
static int overlay_create(struct engine *e, struct qmp_client *c, struct xdisk *x, struct qs_error **err)
{
    int fd = open(x->overlay, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);

    if (fd < 0) {
        if (errno == EEXIST)
            qs_error_set(err, QS_ERR_EXISTS, "external snapshot file '%s' for disk '%s' already exists",
                         x->overlay, x->target);
        else
            qs_error_set_errno(err, QS_ERR_IO, errno, "cannot create '%s' for disk '%s'", x->overlay, x->target);
        return -1;
    }
    close(fd);
    x->created = true;
    if (c && x->size > 0 ? vm_blockdev_create_qcow2(c, x->overlay, x->base, x->base_fmt, x->size, e->qmp_timeout_ms,
                                                    err) < 0
                         : img_create_overlay(x->overlay, x->base, x->base_fmt, err) < 0) {
        qs_error_prefix(err, "disk '%s'", x->target);
        return -1;
    }
    return 0;
}

/* Removes what the plan added: nodes, then the files qsnap created (never reused ones). Best effort. */
static void xplan_unwind(struct xplan *p, struct qmp_client *c)
{
    for (size_t i = 0; i < p->n; i++) {
        struct qs_error *ignore = NULL;
        if (p->d[i].added && c)
            vm_blockdev_del(c, p->d[i].node, &ignore);
        qs_error_free(ignore);
        p->d[i].added = false;
        if (p->d[i].created)
            unlink(p->d[i].overlay);
        p->d[i].created = false;
    }
}

static int job_progress(void *opaque, const char *job_id, uint64_t done, uint64_t total)
{
    struct engine *e = opaque;
    (void)job_id;
    return e->progress ? e->progress(e->opaque, "commit", done, total) : 0;
}

/* block-commit on the disk whose active node is ACTIVE: TOP (NULL: the active layer itself, which needs
 * READY + job-complete) into BASE. */
struct merge_note {
    struct engine *e;
    const struct md_lock *lock;
    const char *domain;
    struct intent *it; /* NULL: no record */
    const char *entry; /* "SNAPSHOT/TARGET" */
};

/* Records in the intent that a disk's merge is done, before anything else happens. Best effort. */
static void merge_noted(struct merge_note *n)
{
    if (!n || !n->it)
        return;
    intent_add_merged(n->it, n->entry);
    intent_update(n->e, n->lock, n->domain, n->it, NULL);
    engine_step(n->e, "delete", "merge");
}

static void commit_concluded(void *opaque, const char *job_id, bool ok)
{
    struct merge_note *n = opaque;
    (void)job_id;
    if (ok)
        merge_noted(n);
}

static int commit_progress(void *opaque, const char *job_id, uint64_t done, uint64_t total)
{
    struct merge_note *n = opaque;
    return job_progress(n->e, job_id, done, total);
}

static int commit_live(struct engine *e, struct qmp_client *c, const char *active, const char *top,
                       const char *base, struct merge_note *note, struct qs_error **err)
{
    struct merge_note none = {e, NULL, NULL, NULL, NULL};
    struct qmp_args *a = qmp_args_new();
    struct qmp_job_options o = {.timeout_ms = e->qmp_timeout_ms, .complete_on_ready = top == NULL,
                                .progress = commit_progress, .opaque = note ? note : &none,
                                .concluded = commit_concluded};
    char job[64];
    int ret;

    snprintf(job, sizeof(job), "qsnap-commit-%d", (int)getpid());
    qmp_args_set_str(a, "device", active);
    if (top)
        qmp_args_set_str(a, "top-node", top);
    qmp_args_set_str(a, "base-node", base);
    ret = qmp_job_run(c, "block-commit", a, job, &o, err);
    qmp_args_free(a);
    return ret;
}

/* ------------------------------------------------------------------------------------------------ */
/* Create. */

bool ext_wanted(const struct md_snapshot *spec, unsigned flags)
{
    if ((flags & ENGINE_CREATE_DISK_ONLY) || (spec && spec->memory == MD_LOCATION_EXTERNAL))
        return true;
    for (size_t i = 0; spec && i < spec->ndisks; i++)
        if (spec->disks[i].snapshot == MD_LOCATION_EXTERNAL)
            return true;
    return false;
}

/* A node name QEMU does not have yet: "qsnap-TARGET-N" (QEMU allows 31 characters). */
static char *node_name_new(char **taken, const struct xplan *p, const char *target)
{
    for (unsigned n = 1;; n++) {
        char *name = qs_asprintf("qsnap-%.12s-%u", target, n);
        bool used = false;
        for (size_t i = 0; taken && taken[i] && !used; i++)
            used = strcmp(taken[i], name) == 0;
        for (size_t i = 0; i < p->n && !used; i++)
            used = qs_str_equal(p->d[i].node, name);
        for (char *q = name; *q; q++)
            if (!(*q == '-' || *q == '_' || *q == '.' || (*q >= '0' && *q <= '9') || (*q >= 'a' && *q <= 'z') ||
                  (*q >= 'A' && *q <= 'Z')))
                *q = '_';
        if (!used)
            return name;
        free(name);
    }
}

/* The plan: which disks, which overlays, every check that can fail before anything is touched. */
static int create_plan(struct engine *e, const struct md_domain *dom, const struct md_snapshot *snap,
                       unsigned flags, struct qmp_client *c, struct xplan *p, struct qs_error **err)
{
    struct vm_block *blocks = NULL;
    size_t nb = 0, nd = md_domain_disk_count(dom);
    char **taken = NULL;
    bool reuse = flags & ENGINE_CREATE_REUSE_EXT;
    /* disks the spec does not name are external for --disk-only and (as libvirt) with external memory */
    bool all_ext = (flags & ENGINE_CREATE_DISK_ONLY) || snap->memory == MD_LOCATION_EXTERNAL;
    int ret = -1;

    (void)e;
    for (size_t i = 0; i < snap->ndisks; i++) {
        const struct md_snapshot_disk *sd = &snap->disks[i];
        struct md_domain_disk d;
        if (domain_disk(dom, sd->name, &d) < 0) {
            qs_error_set(err, QS_ERR_INVALID, "no disk named '%s'", sd->name);
            goto out;
        }
        for (size_t k = 0; k < i; k++)
            if (qs_str_equal(snap->disks[k].name, sd->name)) {
                qs_error_set(err, QS_ERR_INVALID, "disk '%s' specified twice", sd->name);
                goto out;
            }
        if (sd->snapshot == MD_LOCATION_INTERNAL ||
            (sd->snapshot == MD_LOCATION_DEFAULT && !all_ext)) {
            qs_error_set(err, QS_ERR_UNSUPPORTED,
                         "disk '%s': mixing internal and external disk snapshots is not supported", sd->name);
            goto out;
        }
        if (sd->snapshot == MD_LOCATION_MANUAL) {
            qs_error_set(err, QS_ERR_UNSUPPORTED, "disk '%s': manual disk snapshots are not supported", sd->name);
            goto out;
        }
        if (sd->type && strcmp(sd->type, "file") != 0) {
            qs_error_set(err, QS_ERR_UNSUPPORTED, "disk '%s': external snapshots to a '%s' are not supported",
                         sd->name, sd->type);
            goto out;
        }
        if (sd->driver_type && strcmp(sd->driver_type, "qcow2") != 0) {
            qs_error_set(err, QS_ERR_UNSUPPORTED, "disk '%s': external snapshot format '%s' is not supported "
                         "(only qcow2)", sd->name, sd->driver_type);
            goto out;
        }
    }
    if (c && (vm_blocks(c, &blocks, &nb, err) < 0 || vm_node_names(c, &taken, err) < 0))
        goto out;
    for (size_t k = 0; k < nd; k++) {
        const struct md_snapshot_disk *sd;
        struct md_domain_disk d;
        struct xdisk *x;
        struct stat st;
        char *dir;
        if (md_domain_disk_get(dom, k, &d, err) < 0)
            goto out;
        if (!is_snapshot_disk(&d))
            continue;
        sd = spec_disk(snap, d.target);
        if (sd && sd->snapshot == MD_LOCATION_NO)
            continue;
        if (!sd && !all_ext) {
            /* external disks named, others would default to internal */
            qs_error_set(err, QS_ERR_UNSUPPORTED,
                         "disk '%s': mixing internal and external disk snapshots is not supported (exclude it "
                         "with snapshot=no or use --disk-only)",
                         d.target);
            goto out;
        }
        x = xplan_add(p);
        x->target = qs_xstrdup(d.target);
        if (c) {
            const struct vm_block *b = disk_block(blocks, nb, dom, &d, err);
            if (!b)
                goto out;
            if (b->readonly) {
                qs_error_set(err, QS_ERR_UNSUPPORTED, "disk '%s' is read-only", d.target);
                goto out;
            }
            x->top_node = qs_xstrdup(b->node);
            x->base_fmt = qs_xstrdup(b->format);
            x->size = b->virtual_size;
            /* the image QEMU runs on (disk_block found it as the definition's, or by the disk's device) */
            if (!(x->base = disk_block_image(b, dom)) && d.source)
                x->base = canon(d.source);
            if (!x->base) {
                qs_error_set(err, QS_ERR_UNSUPPORTED, "disk '%s': QEMU does not name its image file", d.target);
                goto out;
            }
        } else {
            struct img_info info = {0};
            if (!d.source) {
                qs_error_set(err, QS_ERR_UNSUPPORTED, "disk '%s' has no source file", d.target);
                goto out;
            }
            if (img_info_get(d.source, false, &info, err) < 0) {
                qs_error_prefix(err, "disk '%s'", d.target);
                goto out;
            }
            x->base_fmt = info.format;
            info.format = NULL;
            img_info_release(&info);
            x->base = canon(d.source);
        }
        if (x->base[0] != '/') {
            qs_error_set(err, QS_ERR_UNSUPPORTED, "disk '%s': image path '%s' is not absolute", d.target, x->base);
            goto out;
        }
        x->overlay = sd && sd->source ? qs_xstrdup(sd->source) : default_overlay(x->base, snap->name);
        if (x->overlay[0] != '/') {
            qs_error_set(err, QS_ERR_INVALID, "disk '%s': external snapshot file '%s' is not an absolute path",
                         d.target, x->overlay);
            goto out;
        }
        dir = files_dir_of(x->overlay);
        if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
            qs_error_set(err, QS_ERR_NOTFOUND, "disk '%s': directory '%s' of external snapshot file '%s' does "
                         "not exist", d.target, dir, x->overlay);
            free(dir);
            goto out;
        }
        free(dir);
        if (same_file(x->overlay, x->base)) {
            qs_error_set(err, QS_ERR_INVALID, "disk '%s': external snapshot file '%s' is the disk's own image",
                         d.target, x->overlay);
            goto out;
        }
        for (size_t i = 0; i + 1 < p->n; i++)
            if (same_file(p->d[i].overlay, x->overlay) || same_file(p->d[i].base, x->overlay)) {
                qs_error_set(err, QS_ERR_INVALID, "disks '%s' and '%s' would share file '%s'", p->d[i].target,
                             d.target, x->overlay);
                goto out;
            }
        if (!reuse) {
            if (lstat(x->overlay, &st) == 0) {
                qs_error_set(err, QS_ERR_EXISTS, "external snapshot file '%s' for disk '%s' already exists",
                             x->overlay, d.target);
                goto out;
            }
        } else {
            struct img_info info = {0};
            char *backing = NULL;
            int r;
            /* said in qsnap's words: qemu-img's would be "Could not open 'F': Could not open 'F': ..." */
            if (lstat(x->overlay, &st) < 0) {
                qs_error_set_errno(err, errno == ENOENT ? QS_ERR_NOTFOUND : QS_ERR_IO, errno,
                                   "disk '%s': external snapshot file '%s' to reuse", d.target, x->overlay);
                goto out;
            }
            if ((r = img_info_get(x->overlay, true, &info, err)) < 0)
                qs_error_prefix(err, "disk '%s'", d.target);
            if (r == 0 && strcmp(info.format, "qcow2") != 0) {
                qs_error_set(err, QS_ERR_INVALID, "disk '%s': reused file '%s' is %s, not qcow2", d.target,
                             x->overlay, info.format);
                r = -1;
            }
            if (r == 0 && (r = img_qcow2_backing(x->overlay, &backing, err)) == 0 && !same_file(backing, x->base)) {
                qs_error_set(err, QS_ERR_INVALID, "disk '%s': reused file '%s' is not backed by '%s'", d.target,
                             x->overlay, x->base);
                r = -1;
            }
            free(backing);
            img_info_release(&info);
            if (r < 0)
                goto out;
        }
        if (c)
            x->node = node_name_new(taken, p, d.target);
    }
    if (p->n == 0) {
        qs_error_set(err, QS_ERR_INVALID, "the snapshot would hold no disk");
        goto out;
    }
    ret = 0;
out:
    qs_strv_free(taken);
    vm_blocks_free(blocks, nb);
    return ret;
}

static int transaction_switch(struct qmp_client *c, const struct xplan *p, struct qs_error **err)
{
    struct qmp_args *a = qmp_args_new(), *acts = qmp_args_set_list(a, "actions");
    int ret;

    for (size_t i = 0; i < p->n; i++) {
        struct qmp_args *act = qmp_args_push_obj(acts), *data;
        qmp_args_set_str(act, "type", "blockdev-snapshot");
        data = qmp_args_set_obj(act, "data");
        qmp_args_set_str(data, "node", p->d[i].top_node);
        qmp_args_set_str(data, "overlay", p->d[i].node);
    }
    ret = qmp_client_execute(c, "transaction", a, NULL, err);
    qmp_args_free(a);
    return ret;
}

/* After a switch whose metadata could not be written: the overlays go back into their bases. */
static void switch_undo(struct engine *e, struct qmp_client *c, struct xplan *p)
{
    for (size_t i = 0; c && i < p->n; i++) {
        struct qs_error *ignore = NULL;
        if (commit_live(e, c, p->d[i].node, NULL, p->d[i].top_node, NULL, &ignore) < 0) {
            /* the guest still writes into the overlay: it must stay */
            p->d[i].added = p->d[i].created = false;
        }
        qs_error_free(ignore);
    }
    xplan_unwind(p, c);
}

/* Checks on the memory file of an external memory snapshot: absolute, new, in an existing directory, and
 * none of the overlays. */
static int memfile_check(const char *path, const struct xplan *p, struct qs_error **err)
{
    struct stat st;
    char *dir;
    int ret = -1;

    if (path[0] != '/') {
        qs_error_set(err, QS_ERR_INVALID, "memory state file '%s' is not an absolute path", path);
        return -1;
    }
    dir = files_dir_of(path);
    if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
        qs_error_set(err, QS_ERR_NOTFOUND, "directory '%s' of memory state file '%s' does not exist", dir, path);
        goto out;
    }
    if (lstat(path, &st) == 0) {
        qs_error_set(err, QS_ERR_EXISTS, "memory state file '%s' already exists", path);
        goto out;
    }
    for (size_t i = 0; i < p->n; i++)
        if (same_file(p->d[i].overlay, path) || same_file(p->d[i].base, path)) {
            qs_error_set(err, QS_ERR_INVALID, "memory state file '%s' is also a file of disk '%s'", path,
                         p->d[i].target);
            goto out;
        }
    ret = 0;
out:
    free(dir);
    return ret;
}

/* Writes the guest's memory and device state (a qsnap save file: header, then QEMU's stream) into the open
 * file FD; the guest must be stopped. Not LIVE: QEMU ends in "postmigrate". LIVE: background-snapshot, QEMU
 * resumes the guest once its RAM is write-protected and writes it while the guest runs. */
/* The memory file's header and every migration setting, before the pause (none of it needs one). */
static int memfile_prepare(struct engine *e, struct qmp_client *c, int fd, const char *path, const char *domain,
                           const char *xml, bool running, bool live, bool precopy, struct memstate_save_ctx *s,
                           struct qs_error **err)
{
    struct memstate_options o = {.phase = "save", .progress = e->progress, .opaque = e->opaque, .background = live,
                                 .downtime_ms = precopy ? PRECOPY_DOWNTIME_MS : 0};

    memset(s, 0, sizeof(*s));
    if (memstate_header_write(fd, path, domain, xml, running, c, err) < 0 || memstate_save_begin(c, fd, &o, s, err) < 0)
        return -1;
    return s->mapped_ram ? memstate_header_mark(fd, path, running, true, err) : 0;
}

/* The save itself (in the pause, or with LIVE while the guest runs on); RUN false only undoes the prepare. The
 * file is synced by the caller once the guest runs again. */
static int memfile_save(struct engine *e, struct qmp_client *c, bool live, struct memstate_save_ctx *s, bool run,
                        struct qs_error **err)
{
    struct memstate_options o = {.phase = "save", .progress = e->progress, .opaque = e->opaque, .background = live};

    return memstate_save_finish(c, s, run, &o, err);
}

/* QEMU's timestamp of the next event NAME (waiting up to TIMEOUT_MS), or -1 when none came. */
static int64_t event_time_us(struct qmp_client *c, const char *name, int timeout_ms)
{
    struct qmp_event *ev = NULL;
    struct qs_error *ignore = NULL;
    int64_t t = -1;

    if (qmp_client_event_wait(c, name, NULL, NULL, timeout_ms, &ev, &ignore) == 0)
        t = qmp_event_timestamp_us(ev);
    qmp_event_free(ev);
    qs_error_free(ignore);
    return t;
}

/* The guest's pause for the switch, STOP to RESUME by QEMU's clock (our own when an event is missing). */
struct pause_clock {
    int64_t stop_us, resume_us;   /* QEMU's event timestamps, -1 unknown */
    int64_t stop_ms, resume_ms;   /* qs_now_ms() around the stop and at the RESUME event */
};

static int64_t pause_us_of(const struct pause_clock *pc)
{
    if (pc->stop_us > 0 && pc->resume_us >= pc->stop_us)
        return pc->resume_us - pc->stop_us;
    if (pc->stop_ms > 0 && pc->resume_ms >= pc->stop_ms)
        return (pc->resume_ms - pc->stop_ms) * 1000;
    return -1;
}

int ext_create(struct engine *e, struct md_domain *dom, const struct md_lock *lock, struct md_tree *t,
               struct md_snapshot *snap, unsigned flags, struct intent *it, struct qmp_client **c,
               struct qs_error **err)
{
    const char *domain = md_domain_name(dom);
    bool mem = snap->memory == MD_LOCATION_EXTERNAL, quiesce = flags & ENGINE_CREATE_QUIESCE;
    bool halt = flags & ENGINE_CREATE_HALT;
    struct xplan p = {0};
    char *before = NULL, *status = NULL, *agent = NULL, **argv = NULL;
    struct md_domain *after = NULL;
    struct memstate_save_ctx msave = {0};
    bool switched = false, snap_stored = false, was_running = false, stopped = false, frozen = false;
    bool mem_created = false, live = flags & ENGINE_CREATE_LIVE, background = false, forced = false;
    bool precopy = live && (flags & ENGINE_CREATE_PRECOPY);
    struct pause_clock pc = {-1, -1, -1, -1};
    size_t nd = md_domain_disk_count(dom);
    const struct md_entry *cur;
    int memfd = -1, ret = -1;

    if (live && (flags & ENGINE_CREATE_DISK_ONLY)) {
        qs_error_set(err, QS_ERR_INVALID, "a live snapshot saves the memory: --live cannot be combined with "
                     "--disk-only");
        return -1;
    }
    if (live && !mem) {
        qs_error_set(err, QS_ERR_UNSUPPORTED, "a live snapshot needs external memory (--memspec file=PATH, or "
                     "no --memspec for the default file)");
        return -1;
    }
    if ((flags & ENGINE_CREATE_LIVE_FALLBACK) && !live) {
        qs_error_set(err, QS_ERR_INVALID, "--live-fallback needs --live");
        return -1;
    }
    if (snap->memory == MD_LOCATION_INTERNAL || snap->memory == MD_LOCATION_MANUAL) {
        qs_error_set(err, QS_ERR_UNSUPPORTED, "memory snapshot '%s' with external disk snapshots is not supported",
                     md_location_to_string(snap->memory));
        return -1;
    }
    if (mem && (flags & ENGINE_CREATE_DISK_ONLY)) {
        qs_error_set(err, QS_ERR_INVALID, "memory state cannot be saved with a disk-only snapshot");
        return -1;
    }
    if (mem && !snap->memory_file && !live) {
        qs_error_set(err, QS_ERR_INVALID, "an external memory snapshot needs a file (--memspec file=PATH)");
        return -1;
    }
    if (mem && !*c) {
        qs_error_set(err, QS_ERR_STATE, "domain '%s' is not running: an external memory snapshot needs a running "
                     "or paused domain", domain);
        return -1;
    }
    if (*c && !mem && !(flags & ENGINE_CREATE_DISK_ONLY) && snap->memory != MD_LOCATION_NO) {
        qs_error_set(err, QS_ERR_UNSUPPORTED, "an external snapshot of a running domain needs --disk-only or "
                     "--memspec file=PATH");
        return -1;
    }
    if (quiesce) {
        if (!*c) {
            qs_error_set(err, QS_ERR_STATE, "domain '%s' is not running: --quiesce needs its guest agent", domain);
            return -1;
        }
        argv = md_domain_argv(dom);
        agent = argv ? quiesce_agent_socket(argv) : NULL;
        qs_strv_free(argv);
        if (agent && agent[0] != '/') {
            /* relative to the directory QEMU was started in */
            char *abs = qargv_path_abs(agent, md_domain_cwd(dom));
            free(agent);
            agent = abs;
        }
        if (!agent) {
            qs_error_set(err, QS_ERR_UNSUPPORTED, "domain '%s' has no guest agent channel (a virtserialport named "
                         "org.qemu.guest_agent.0 on a socket chardev): --quiesce needs one", domain);
            return -1;
        }
    }
    if (create_plan(e, dom, snap, flags, *c, &p, err) < 0)
        goto out;
    if (mem && !snap->memory_file) {
        /* --live without --memspec: beside the first disk's image, its extension replaced by ".NAME.mem" */
        char *suffix = qs_asprintf("%s.mem", snap->name);
        snap->memory_file = default_overlay(p.d[0].base, suffix);
        free(suffix);
    }
    if (mem && memfile_check(snap->memory_file, &p, err) < 0)
        goto out;
    if ((*c && vm_status(*c, &status, &was_running, err) < 0) || (mem && disk_check_reopen(*c, dom, err) < 0))
        goto out;
    if (mem && !was_running && strcmp(status, "paused") != 0 && strcmp(status, "postmigrate") != 0) {
        qs_error_set(err, QS_ERR_STATE, "domain '%s' cannot save its memory in QEMU state '%s'", domain, status);
        goto out;
    }
    /* a paused guest does not run during the save anyway: the ordinary save keeps it paused (background-snapshot
     * would resume it) */
    if (live && was_running) {
        struct qs_error *local = NULL;
        if ((precopy ? memstate_precopy_check(*c, &local) : memstate_live_check(*c, &local)) == 0) {
            background = !precopy;
        } else if (local->code == QS_ERR_UNSUPPORTED && (flags & ENGINE_CREATE_LIVE_FALLBACK)) {
            qs_error_free(local); /* the guest is paused for the whole save, as asked */
            precopy = false;
        } else {
            if (local->code == QS_ERR_UNSUPPORTED)
                qs_error_set(err, QS_ERR_UNSUPPORTED, "a live snapshot of domain '%s' is not possible: %s (with "
                             "--live-fallback the guest is paused for the whole save instead)", domain,
                             local->message);
            else
                qs_error_propagate(err, &local);
            qs_error_free(local);
            goto out;
        }
    }
    if (!(before = md_domain_format(dom, err)))
        goto out;

    if (!(flags & ENGINE_CREATE_NO_METADATA)) {
        snap_disks_clear(snap);
        for (size_t k = 0; k < nd; k++) {
            struct md_domain_disk d;
            struct md_snapshot_disk *sd;
            const struct xdisk *x = NULL;
            if (md_domain_disk_get(dom, k, &d, err) < 0)
                goto out;
            if (!is_snapshot_disk(&d))
                continue;
            for (size_t i = 0; i < p.n && !x; i++)
                if (strcmp(p.d[i].target, d.target) == 0)
                    x = &p.d[i];
            sd = md_snapshot_disk_add(snap);
            sd->name = qs_xstrdup(d.target);
            sd->snapshot = x ? MD_LOCATION_EXTERNAL : MD_LOCATION_NO;
            if (x) {
                sd->type = qs_xstrdup("file");
                sd->driver_type = qs_xstrdup("qcow2");
                sd->source = qs_xstrdup(x->overlay);
            }
        }
        cur = md_tree_current(t);
        free(snap->parent);
        snap->parent = cur ? qs_xstrdup(cur->name) : NULL;
        snap->creation_time = (long long)(engine_now_ms(e) / 1000);
        if (mem) {
            snap->state = was_running ? MD_STATE_RUNNING : MD_STATE_PAUSED;
        } else {
            snap->state = (*c || (flags & ENGINE_CREATE_DISK_ONLY)) ? MD_STATE_DISK_SNAPSHOT : MD_STATE_SHUTOFF;
            snap->memory = MD_LOCATION_NO;
            free(snap->memory_file);
            snap->memory_file = NULL;
        }
        free(snap->domain_xml);
        if (!(snap->domain_xml = md_domain_format_copy(dom, err)))
            goto out;
        snap->current = true;
        if (md_snapshot_validate(snap, err) < 0 ||
            !(it->snapshot_xml = md_snapshot_format(snap, MD_FORMAT_ON_DISK, err)))
            goto out;
    }
    /* the domain as it will be: on the overlays */
    if (!(after = md_domain_parse(before ? before : "", before ? strlen(before) : 0, err)))
        goto out;
    for (size_t i = 0; i < p.n; i++) {
        if (md_domain_set_disk_source(after, p.d[i].target, p.d[i].overlay, err) < 0 ||
            md_domain_set_disk_driver_type(after, p.d[i].target, "qcow2", err) < 0 ||
            (p.d[i].node && md_domain_set_disk_node_name(after, p.d[i].target, p.d[i].node, err) < 0) ||
            (!(flags & ENGINE_CREATE_REUSE_EXT) && md_domain_set_made(after, p.d[i].overlay, true, err) < 0))
            goto out;
    }
    if (!(it->domain_xml = md_domain_format(after, err)))
        goto out;
    it->vm = qs_xstrdup(*c ? (was_running ? "running" : status) : "shutoff");
    it->halt = halt && *c;
    for (size_t i = 0; i < p.n; i++) {
        intent_add_disk(it, p.d[i].target, p.d[i].node, p.d[i].overlay);
        if (p.d[i].node)
            intent_add_node(it, p.d[i].node);
    }
    if (agent)
        it->agent = qs_xstrdup(agent);
    if (intent_begin(e, lock, domain, it, err) < 0)
        goto out;

    /* everything that takes time and can be done while the guest runs comes first */
    for (size_t i = 0; i < p.n; i++)
        if (!(flags & ENGINE_CREATE_REUSE_EXT) && overlay_create(e, *c, &p.d[i], err) < 0)
            goto fail;
    if (*c) {
        for (size_t i = 0; i < p.n; i++) {
            if (vm_blockdev_add_qcow2(*c, p.d[i].node, p.d[i].overlay, err) < 0) {
                qs_error_prefix(err, "disk '%s'", p.d[i].target);
                goto fail;
            }
            p.d[i].added = true;
        }
    }
    if (mem) {
        memfd = open(snap->memory_file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (memfd < 0) {
            qs_error_set_errno(err, errno == EEXIST ? QS_ERR_EXISTS : QS_ERR_IO, errno,
                               "cannot create memory state file '%s'", snap->memory_file);
            goto fail;
        }
        mem_created = true;
    }
    /* the files exist now, made by qsnap (O_EXCL): only from here on may recovery remove them. A crash
     * before this update leaves them behind unreferenced, never removes a file qsnap did not make. */
    for (size_t i = 0; i < p.n; i++)
        if (p.d[i].created)
            intent_add_file(it, p.d[i].overlay);
    if (mem_created)
        intent_add_file(it, snap->memory_file);
    if ((it->files && intent_update(e, lock, domain, it, err) < 0))
        goto fail;
    engine_step(e, "create", "overlays");
    /* before the pause, while the guest runs: huge pages make QEMU's write protection of the RAM, inside the
     * pause, one step per 2 MiB instead of per 4 KiB (an earlier background snapshot split them) */
    if (mem && background && was_running) {
        vm_ram_collapse(*c);
        engine_step(e, "create", "ram-collapse");
    }
    if (quiesce) {
        /* quiesce_freeze thaws by itself when it fails */
        if (quiesce_freeze(agent, QUIESCE_TIMEOUT_MS, err) < 0) {
            qs_error_prefix(err, "cannot quiesce domain '%s'", domain);
            goto fail;
        }
        frozen = true;
    }
    if (mem && memfile_prepare(e, *c, memfd, snap->memory_file, domain, before, was_running, background,
                               precopy && was_running, &msave, err) < 0)
        goto fail;
    /* the pause: memory saved and disks switched at one instant of the guest */
    if (mem) {
        if (was_running && precopy) {
            /* pre-copy: the RAM goes to the file in passes while the guest runs; QEMU stops the guest for the
             * last dirty pages and the devices, and the pause goes on until the disks are switched */
            struct memstate_options o = {.phase = "save", .progress = e->progress, .opaque = e->opaque,
                                         .converge_passes = PRECOPY_PASSES, .forced = &forced};
            qmp_client_event_clear(*c);
            stopped = true; /* from here a failure conts: harmless on a guest that still runs */
            if (memstate_save_wait(*c, &msave, &o, err) < 0)
                goto fail;
            pc.stop_ms = qs_now_ms();
            pc.stop_us = event_time_us(*c, "STOP", PAUSE_EVENT_WAIT_MS);
        } else if (was_running) {
            qmp_client_event_clear(*c);
            pc.stop_ms = qs_now_ms();
            if (vm_stop(*c, err) < 0)
                goto fail;
            stopped = true;
            pc.stop_us = event_time_us(*c, "STOP", PAUSE_EVENT_WAIT_MS);
        }
        if (background) {
            /*
             * Disks first, in the pause; QEMU then saves the devices and write-protects the RAM, and the
             * guest runs on while the RAM of the pause's instant is written. The guest must not run before
             * that capture (its disk writes would be in the overlays but not in the saved RAM):
             * memstate_capture_wait returns only after it. QEMU before 9.0 resumes the guest itself there;
             * from 9.0 a VM stopped before the migration stays stopped, and qsnap resumes it.
             */
            if (transaction_switch(*c, &p, err) < 0)
                goto fail;
            switched = true;
            if (memstate_save_start(*c, &msave, err) < 0 || memstate_capture_wait(*c, 0, &pc.resume_us, err) < 0)
                goto fail;
            if (pc.resume_us < 0) {
                if (vm_cont(*c, err) < 0)
                    goto fail;
                pc.resume_us = event_time_us(*c, "RESUME", PAUSE_EVENT_WAIT_MS);
            }
            pc.resume_ms = qs_now_ms();
            stopped = false;
        }
        /* a pre-copy is over already: its settings are set back after the pause */
        if (!(precopy && was_running) &&
            memfile_save(e, *c, background, &msave, true, err) < 0)
            goto fail;
    }
    if (*c && !switched && transaction_switch(*c, &p, err) < 0)
        goto fail;
    switched = true;
    engine_step(e, "create", "switch");
    if (stopped && !halt) {
        if (vm_cont(*c, err) < 0)
            goto fail;
        stopped = false;
        pc.resume_us = event_time_us(*c, "RESUME", PAUSE_EVENT_WAIT_MS);
        pc.resume_ms = qs_now_ms();
    }
    if (mem && precopy && was_running && memfile_save(e, *c, false, &msave, true, err) < 0)
        goto fail;
    if (frozen && !(stopped && halt)) {
        frozen = false;
        if (quiesce_thaw(agent, QUIESCE_TIMEOUT_MS, err) < 0) {
            qs_error_prefix(err, "cannot thaw the filesystems of domain '%s'", domain);
            goto fail;
        }
    }
    frozen = false;
    /* durable before metadata names it (after the pause: the guest does not wait for the disk) */
    if (memfd >= 0) {
        int r = fsync(memfd), saved = errno;
        if (close(memfd) < 0 && r == 0)
            r = -1, saved = errno;
        memfd = -1;
        if (r < 0) {
            qs_error_set_errno(err, QS_ERR_IO, saved, "cannot write memory state file '%s'", snap->memory_file);
            goto fail;
        }
    }
    engine_note_pause(e, pause_us_of(&pc));
    if (!(flags & ENGINE_CREATE_NO_METADATA)) {
        if (live && pause_us_of(&pc) >= 0) {
            char num[32];
            snprintf(num, sizeof(num), "%lld", (long long)pause_us_of(&pc));
            if (md_snapshot_cookie_set(snap, EXT_COOKIE_PAUSE, num, err) < 0)
                goto fail;
        }
        if (md_store_snapshot_put_tree(e->store, lock, domain, t, dom, snap, MD_PUT_NO_REPLACE, err) < 0)
            goto fail;
        snap_stored = true;
        engine_step(e, "create", "metadata");
    }

    for (size_t i = 0; i < p.n; i++) {
        if (md_domain_set_disk_source(dom, p.d[i].target, p.d[i].overlay, err) < 0 ||
            md_domain_set_disk_driver_type(dom, p.d[i].target, "qcow2", err) < 0 ||
            (p.d[i].node && md_domain_set_disk_node_name(dom, p.d[i].target, p.d[i].node, err) < 0) ||
            (p.d[i].created && md_domain_set_made(dom, p.d[i].overlay, true, err) < 0))
            goto fail;
    }
    if (md_store_domain_put(e->store, lock, dom, err) < 0)
        goto fail;
    engine_step(e, "create", "domain");
    ret = 0;
    if (halt && *c) {
        if (engine_qemu_quit(e, c, err) < 0)
            ret = -1; /* the snapshot stands; only the halt failed */
        else
            engine_step(e, "create", "halt");
    }
    goto out;

fail:
    if (mem && *c) {
        struct qs_error *ignore = NULL;
        memfile_save(e, *c, background, &msave, false, &ignore); /* no-op after a save ran */
        qs_error_free(ignore);
    }
    if (snap_stored) {
        struct qs_error *ignore = NULL;
        md_store_snapshot_delete(e->store, lock, domain, snap->name, 0, &ignore);
        qs_error_free(ignore);
    }
    if (stopped) {
        /* the guest gets its run state back first: cont also reactivates the images a save left inactive,
         * which the commit of switch_undo needs */
        struct qs_error *ignore = NULL;
        vm_cont(*c, &ignore);
        qs_error_free(ignore);
    }
    if (switched && *c)
        switch_undo(e, *c, &p);
    else
        xplan_unwind(&p, *c);
    if (frozen) {
        /* the agent answers only a running guest: after cont */
        struct qs_error *ignore = NULL;
        quiesce_thaw(agent, QUIESCE_TIMEOUT_MS, &ignore);
        qs_error_free(ignore);
    }
    if (mem_created)
        unlink(snap->memory_file);
out:
    md_domain_free(after);
    qs_close(memfd);
    free(agent);
    free(status);
    free(before);
    xplan_release(&p);
    return ret;
}

/* ------------------------------------------------------------------------------------------------ */
/* Revert. */

/* DOM as a revert leaves it: every disk of P on its new overlay (qsnap's), and GARBAGE no longer qsnap's to
 * merge. For the switch itself and, before it, for the intent record (recovery may have to make it). */
static int revert_switch_def(struct md_domain *dom, const struct xplan *p, char *const *garbage,
                             struct qs_error **err)
{
    for (size_t i = 0; i < p->n; i++)
        if (md_domain_set_disk_source(dom, p->d[i].target, p->d[i].overlay, err) < 0 ||
            md_domain_set_disk_driver_type(dom, p->d[i].target, "qcow2", err) < 0 ||
            md_domain_set_disk_node_name(dom, p->d[i].target, NULL, err) < 0 ||
            md_domain_set_made(dom, p->d[i].overlay, true, err) < 0)
            return -1;
    for (size_t i = 0; garbage && garbage[i]; i++)
        if (md_domain_set_made(dom, garbage[i], false, err) < 0)
            return -1;
    return 0;
}

int ext_revert_start(struct engine *e, struct md_domain *dom, const struct md_lock *lock,
                     const struct md_snapshot *snap, bool start, bool want_running, struct qmp_client **c,
                     struct qs_error **err)
{
    struct memstate_header h = {0};
    int memfd = -1, ret = -1;

    if (snap->memory != MD_LOCATION_EXTERNAL) {
        if (!start)
            return 0;
        return engine_qemu_start(e, dom, lock, !want_running, c, err);
    }
    /* the saved RAM and devices on the frozen disks' content (the new overlays are empty) */
    if (!snap->memory_file) {
        qs_error_set(err, QS_ERR_INVALID, "snapshot '%s' records no memory state file", snap->name);
        return -1;
    }
    if ((memfd = open(snap->memory_file, O_RDONLY | O_CLOEXEC)) < 0) {
        qs_error_set_errno(err, errno == ENOENT ? QS_ERR_NOTFOUND : QS_ERR_IO, errno,
                           "cannot open memory state file '%s' of snapshot '%s'", snap->memory_file, snap->name);
        return -1;
    }
    {
        struct memstate_options o = {.phase = "restore", .progress = e->progress, .opaque = e->opaque, .header = &h,
                                     .path = snap->memory_file};
        if (memstate_header_read(memfd, snap->memory_file, &h, err) < 0 || memstate_pin_machine(dom, &h, err) < 0 ||
            engine_qemu_start_incoming(e, dom, lock, c, err) < 0 || memstate_load(*c, memfd, &o, err) < 0 ||
            (want_running && vm_cont(*c, err) < 0)) {
            qs_error_prefix(err, "cannot load memory state file '%s' of snapshot '%s' (the domain is left off on "
                            "the snapshot's disks)", snap->memory_file, snap->name);
            if (*c)
                engine_qemu_quit(e, c, NULL);
            goto out;
        }
    }
    ret = 0;
out:
    qs_close(memfd);
    memstate_header_release(&h);
    return ret;
}

int ext_revert(struct engine *e, struct md_domain *dom, const struct md_lock *lock, const struct md_snapshot *snap,
               unsigned flags, struct intent *it, struct qmp_client **c, struct qs_error **err)
{
    struct md_domain *sdom = NULL, *after = NULL;
    char *old = NULL, **before = NULL, **needed_after = NULL, **garbage = NULL;
    struct xplan p = {0};
    struct memstate_header h = {0};
    bool was_up = *c != NULL, was_running = false, quit = false, stored = false;
    bool mem = snap->memory == MD_LOCATION_EXTERNAL;
    bool want_running = (flags & ENGINE_REVERT_RUNNING) ||
                        (!(flags & ENGINE_REVERT_PAUSED) && snap->state == MD_STATE_RUNNING);
    int memfd = -1, ret = -1;

    if (snap->memory == MD_LOCATION_INTERNAL || snap->memory == MD_LOCATION_MANUAL) {
        qs_error_set(err, QS_ERR_UNSUPPORTED, "snapshot '%s': reverting to memory snapshot '%s' with external "
                     "disks is not supported", snap->name, md_location_to_string(snap->memory));
        return -1;
    }
    if (mem) {
        /* the state file is checked before anything changes */
        if (!snap->memory_file) {
            qs_error_set(err, QS_ERR_INVALID, "snapshot '%s' records no memory state file", snap->name);
            return -1;
        }
        if ((memfd = open(snap->memory_file, O_RDONLY | O_CLOEXEC)) < 0) {
            qs_error_set_errno(err, errno == ENOENT ? QS_ERR_NOTFOUND : QS_ERR_IO, errno,
                               "cannot open memory state file '%s' of snapshot '%s'", snap->memory_file,
                               snap->name);
            return -1;
        }
        if (memstate_header_read(memfd, snap->memory_file, &h, err) < 0)
            goto out;
        if (strcmp(h.domain, md_domain_name(dom)) != 0) {
            qs_error_set(err, QS_ERR_INVALID, "memory state file '%s' holds domain '%s', not '%s'",
                         snap->memory_file, h.domain, md_domain_name(dom));
            goto out;
        }
    }
    if (!snap->domain_xml) {
        qs_error_set(err, QS_ERR_UNSUPPORTED, "snapshot '%s' has no <domain>: its disk images are unknown",
                     snap->name);
        goto out;
    }
    if (!(sdom = md_domain_parse(snap->domain_xml, strlen(snap->domain_xml), err)))
        goto out;
    for (size_t i = 0; i < snap->ndisks; i++) {
        const struct md_snapshot_disk *sd = &snap->disks[i];
        struct md_domain_disk frozen, now;
        struct img_info info = {0};
        struct xdisk *x;
        if (sd->snapshot == MD_LOCATION_INTERNAL) {
            qs_error_set(err, QS_ERR_UNSUPPORTED,
                         "snapshot '%s' mixes internal and external disk snapshots: reverting it is not supported",
                         snap->name);
            goto out;
        }
        if (sd->snapshot != MD_LOCATION_EXTERNAL)
            continue;
        if (domain_disk(sdom, sd->name, &frozen) < 0 || !frozen.source) {
            qs_error_set(err, QS_ERR_INVALID, "snapshot '%s' records no image for disk '%s'", snap->name, sd->name);
            goto out;
        }
        if (domain_disk(dom, sd->name, &now) < 0) {
            qs_error_set(err, QS_ERR_STATE, "snapshot '%s' holds disk '%s', which the domain no longer has",
                         snap->name, sd->name);
            goto out;
        }
        x = xplan_add(&p);
        x->target = qs_xstrdup(sd->name);
        x->base = qs_xstrdup(frozen.source);
        if (img_info_get(x->base, true, &info, err) < 0) {
            qs_error_prefix(err, "snapshot '%s', disk '%s'", snap->name, sd->name);
            goto out;
        }
        x->base_fmt = info.format;
        info.format = NULL;
        img_info_release(&info);
        for (unsigned n = 1; !x->overlay; n++) {
            char *stem = default_overlay(x->base, snap->name);
            struct stat st;
            x->overlay = qs_asprintf("%s-%u", stem, n);
            free(stem);
            if (lstat(x->overlay, &st) == 0) {
                free(x->overlay);
                x->overlay = NULL;
            }
        }
    }
    if (p.n == 0) {
        qs_error_set(err, QS_ERR_UNSUPPORTED, "snapshot '%s' holds no external disk snapshot", snap->name);
        goto out;
    }
    if (!(old = md_domain_format(dom, err)))
        goto out;
    /* the domain as it will be, on the new overlays: QEMU must be able to start on it before it is quit */
    if (!(after = md_domain_parse(old, strlen(old), err)))
        goto out;
    for (size_t i = 0; i < p.n; i++)
        if (md_domain_set_disk_source(after, p.d[i].target, p.d[i].overlay, err) < 0 ||
            md_domain_set_disk_driver_type(after, p.d[i].target, "qcow2", err) < 0 ||
            md_domain_set_disk_node_name(after, p.d[i].target, NULL, err) < 0)
            goto out;
    if ((*c || mem || (flags & (ENGINE_REVERT_RUNNING | ENGINE_REVERT_PAUSED))) &&
        engine_qemu_check_start(after, err) < 0) {
        qs_error_prefix(err, "cannot revert domain '%s' to snapshot '%s'", md_domain_name(dom), snap->name);
        goto out;
    }
    if (files_needed(e, md_domain_name(dom), lock, dom, NULL, &before, err) < 0)
        goto out;
    if (*c && vm_status(*c, NULL, &was_running, err) < 0)
        goto out;
    it->vm = qs_xstrdup(*c ? (was_running ? "running" : "paused") : "shutoff");
    it->want_running = want_running;
    for (size_t i = 0; i < p.n; i++)
        intent_add_disk(it, p.d[i].target, NULL, p.d[i].overlay);
    if (intent_begin(e, lock, md_domain_name(dom), it, err) < 0)
        goto out;
    /* the frozen images are not written to by anyone: the overlays can be made while QEMU still runs */
    for (size_t i = 0; i < p.n; i++)
        if (overlay_create(e, NULL, &p.d[i], err) < 0)
            goto fail;
    /* made by qsnap (O_EXCL): from here on recovery may remove them. And what the state being left needed
     * that nothing needs afterwards (its overlays, unless a snapshot still needs them) goes once the revert
     * is done: computed now that the new overlays lead to the snapshot's images. */
    for (size_t i = 0; i < p.n; i++)
        intent_add_file(it, p.d[i].overlay);
    if (files_needed(e, md_domain_name(dom), lock, after, NULL, &needed_after, err) < 0)
        goto fail;
    garbage = files_garbage(before, NULL, needed_after, it->files);
    for (size_t i = 0; garbage[i]; i++)
        intent_add_garbage(it, garbage[i]);
    /* once QEMU is quit the old RAM is gone: recovery then goes forward, with this definition, and starts
     * QEMU as the revert would (START) */
    if (revert_switch_def(after, &p, garbage, err) < 0 || !(it->domain_xml = md_domain_format(after, err)))
        goto fail;
    it->start = mem || (flags & (ENGINE_REVERT_RUNNING | ENGINE_REVERT_PAUSED));
    if (intent_update(e, lock, md_domain_name(dom), it, err) < 0)
        goto fail;
    engine_step(e, "revert", "overlays");
    if (*c) {
        if (engine_qemu_quit(e, c, err) < 0)
            goto fail;
        quit = true;
        engine_step(e, "revert", "quit");
    }
    if (revert_switch_def(dom, &p, it->garbage, err) < 0 || md_store_domain_put(e->store, lock, dom, err) < 0)
        goto fail;
    stored = true;
    engine_step(e, "revert", "switch");
    /* a failed start or load: the revert stands, the domain is off on the snapshot's disks */
    if (ext_revert_start(e, dom, lock, snap, it->start, want_running, c, err) < 0)
        goto out;
    if (mem)
        engine_step(e, "revert", "load");
    else if (it->start)
        engine_step(e, "revert", "start");
    ret = 0;
    goto out;

fail:
    if (!stored) {
        xplan_unwind(&p, NULL);
        if (quit && was_up) {
            /* give the run state back (a fresh boot on the old images: the old RAM is gone) */
            struct md_domain *back = md_domain_parse(old, strlen(old), NULL);
            struct qs_error *ignore = NULL;
            if (back)
                engine_qemu_start(e, back, lock, !was_running, c, &ignore);
            qs_error_free(ignore);
            md_domain_free(back);
        }
    }
out:
    qs_close(memfd);
    memstate_header_release(&h);
    free(old);
    qs_strv_free(before);
    qs_strv_free(needed_after);
    qs_strv_free(garbage);
    md_domain_free(after);
    xplan_release(&p);
    md_domain_free(sdom);
    return ret;
}

/* ------------------------------------------------------------------------------------------------ */
/* Delete. Snapshot S froze image F (its state); the files built on F hold what came after. When exactly one
 * needed file C is built on F - no other snapshot froze F, C holds no internal snapshot, nothing else reads
 * F - C is merged into F (block-commit live, qemu-img commit off) and whatever named C names F. Otherwise F
 * stays, shared by the branches built on it. The files nobody needs afterwards (C, S's own overlay when a
 * revert left it, ...) are removed by engine_snapshot_delete. */

enum merge_mode { MERGE_NONE, MERGE_LIVE, MERGE_OFFLINE, MERGE_DONE /* by an interrupted run */ };

struct mdisk {
    char *target;
    char *frozen;     /* F, canonical */
    char *frozen_fmt;
    char *child;      /* C, canonical; NULL: nothing to merge */
    enum merge_mode mode;
};

static void mdisks_free(struct mdisk *m, size_t n)
{
    for (size_t i = 0; m && i < n; i++) {
        free(m[i].target);
        free(m[i].frozen);
        free(m[i].frozen_fmt);
        free(m[i].child);
    }
    free(m);
}

/* The other snapshots of the domain, fully read. */
static int others_load(struct engine *e, const char *domain, const struct md_lock *lock, const char *except,
                       struct md_snapshot ***out, size_t *n, struct qs_error **err)
{
    struct md_tree *t = md_tree_load(e->store, domain, lock, err);
    const struct md_entry **all = NULL;
    size_t cnt = 0;
    int ret = -1;

    *out = NULL;
    *n = 0;
    if (!t || md_tree_list(t, NULL, MD_LIST_TOPOLOGICAL, &all, &cnt, err) < 0)
        goto out;
    *out = qs_xcalloc(cnt + 1, sizeof(**out));
    for (size_t i = 0; i < cnt; i++) {
        if (strcmp(all[i]->name, except) == 0)
            continue;
        if (!((*out)[*n] = md_store_snapshot_get(e->store, domain, all[i]->name, err)))
            goto out;
        (*n)++;
    }
    ret = 0;
out:
    free(all);
    md_tree_free(t);
    return ret;
}

static void others_free(struct md_snapshot **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        md_snapshot_free(v[i]);
    free(v);
}

/* The image snapshot X froze for disk TARGET (canonical), or NULL. Caller frees. */
static char *frozen_of(const struct md_snapshot *x, const char *target)
{
    const struct md_snapshot_disk *sd = spec_disk(x, target);

    return sd && sd->snapshot == MD_LOCATION_EXTERNAL ? files_snapshot_image(x, target) : NULL;
}

/* Whether disk TARGET of the running QEMU (blocks B) has FILE in its chain: QEMU has it open. */
static bool running_chain_has(const struct md_domain *dom, const char *target, const char *file)
{
    struct md_domain_disk d;
    char **chain;
    bool r;

    if (domain_disk(dom, target, &d) < 0 || !d.source)
        return false;
    chain = files_chain(d.source);
    r = qs_strv_has(chain, file);
    qs_strv_free(chain);
    return r;
}

/* Decides what deleting SNAP does on disk TARGET: every check before anything changes. */
static int merge_plan(const struct md_snapshot *snap, const struct md_snapshot_disk *sd, struct md_snapshot **others,
                      size_t nothers, char *const *needed, char *const *dirs, const struct md_domain *dom,
                      struct qmp_client *c, const struct intent *it, struct mdisk *md, struct qs_error **err)
{
    struct img_info info = {0};
    char **kids = NULL, **deps = NULL, *entry;
    bool done, shared = false, outside = false;
    int ret = -1;

    md->target = qs_xstrdup(sd->name);
    md->frozen = frozen_of(snap, sd->name);
    if (!md->frozen) {
        qs_error_set(err, QS_ERR_INVALID, "snapshot '%s' records no image for disk '%s'", snap->name, sd->name);
        return -1;
    }
    if (access(md->frozen, F_OK) < 0) {
        /* nothing left to merge into: the snapshot's state is gone already, its metadata can go */
        md->mode = MERGE_NONE;
        return 0;
    }
    if (img_info_get(md->frozen, true, &info, err) < 0) {
        qs_error_prefix(err, "snapshot '%s', disk '%s'", snap->name, sd->name);
        return -1;
    }
    md->frozen_fmt = info.format;
    info.format = NULL;
    img_info_release(&info);
    kids = files_children(needed, md->frozen);
    entry = qs_asprintf("%s/%s", snap->name, sd->name);
    done = it && intent_has_merged(it, entry);
    free(entry);
    if (done) {
        /* an interrupted run merged C into F already: what follows the merge is left */
        md->mode = kids[0] && !kids[1] ? MERGE_DONE : MERGE_NONE;
        md->child = md->mode == MERGE_DONE ? qs_xstrdup(kids[0]) : NULL;
        ret = 0;
        goto out;
    }
    for (size_t k = 0; k < nothers && !shared; k++) {
        char *f = frozen_of(others[k], sd->name);
        shared = f && strcmp(f, md->frozen) == 0;
        free(f);
    }
    /* a file built on F that neither the domain nor a snapshot needs, and that is not this snapshot's own
     * overlay (which goes), is someone else's: F must keep its content */
    deps = files_dependents(dirs, md->frozen);
    for (size_t k = 0; deps[k] && !outside; k++)
        outside = !qs_strv_has(kids, deps[k]) && !(sd->source && same_file(sd->source, deps[k]));
    md->mode = MERGE_NONE;
    if (!shared && !outside && kids[0] && !kids[1]) {
        if (img_info_get(kids[0], true, &info, err) < 0) {
            qs_error_prefix(err, "snapshot '%s', disk '%s'", snap->name, sd->name);
            goto out;
        }
        if (!(info.tags && info.tags[0]) && strcmp(info.format, "qcow2") == 0) {
            md->child = qs_xstrdup(kids[0]);
            md->mode = c && running_chain_has(dom, sd->name, md->child) ? MERGE_LIVE : MERGE_OFFLINE;
        }
        img_info_release(&info);
    }
    ret = 0;
out:
    qs_strv_free(kids);
    qs_strv_free(deps);
    return ret;
}

/* Merges C into F in the running QEMU; *above gets the file over C in its chain (QEMU rewrote its header),
 * *active whether C was the active layer. */
static int merge_live(struct engine *e, struct qmp_client *c, const struct md_domain *dom, const struct mdisk *md,
                      struct merge_note *note, char **above, bool *active, struct qs_error **err)
{
    struct vm_block *blocks = NULL;
    struct vm_chain_node *ch = NULL;
    const struct vm_block *b;
    struct md_domain_disk now;
    size_t nb = 0, nch = 0, oi = SIZE_MAX, fi = SIZE_MAX;
    int ret = -1;

    if (domain_disk(dom, md->target, &now) < 0) {
        qs_error_set(err, QS_ERR_STATE, "the domain has no disk '%s'", md->target);
        return -1;
    }
    if (vm_blocks(c, &blocks, &nb, err) < 0 || !(b = disk_block(blocks, nb, dom, &now, err)) ||
        vm_chain(c, b->node, &ch, &nch, err) < 0)
        goto out;
    for (size_t k = 0; k < nch; k++) {
        /* QEMU names an image as its command line did: relative to QEMU's working directory */
        char *f = disk_image_name(ch[k].file, md_domain_cwd(dom));
        if (oi == SIZE_MAX && qs_str_equal(f, md->child))
            oi = k;
        else if (oi != SIZE_MAX && fi == SIZE_MAX && qs_str_equal(f, md->frozen))
            fi = k;
        free(f);
    }
    if (oi == SIZE_MAX || fi != oi + 1) {
        qs_error_set(err, QS_ERR_STATE, "disk '%s': QEMU's backing chain does not hold '%s' over '%s'", md->target,
                     md->child, md->frozen);
        goto out;
    }
    *above = oi > 0 ? disk_image_name(ch[oi - 1].file, md_domain_cwd(dom)) : NULL;
    *active = oi == 0;
    if (commit_live(e, c, ch[0].node, oi == 0 ? NULL : ch[oi].node, ch[fi].node, note, err) < 0) {
        qs_error_prefix(err, "disk '%s'", md->target);
        goto out;
    }
    /* a node added with blockdev-add (or -blockdev) outlives the commit and keeps F busy */
    vm_blockdev_del(c, ch[oi].node, NULL);
    ret = 0;
out:
    vm_chain_free(ch, nch);
    vm_blocks_free(blocks, nb);
    return ret;
}

/* Every <domain> of OTHERS and DOM that names FROM for disk TARGET names TO (format FMT) instead; changed
 * snapshots are stored. */
static int rename_image(struct engine *e, const struct md_lock *lock, const char *domain, struct md_domain *dom,
                        struct md_snapshot **others, size_t nothers, const char *target, const char *from,
                        const char *to, const char *fmt, struct qs_error **err)
{
    struct md_domain_disk now;

    if (domain_disk(dom, target, &now) == 0 && now.source && same_file(now.source, from) &&
        (md_domain_set_disk_source(dom, target, to, err) < 0 ||
         md_domain_set_disk_driver_type(dom, target, fmt, err) < 0 ||
         md_domain_set_disk_node_name(dom, target, NULL, err) < 0))
        return -1;
    for (size_t k = 0; k < nothers; k++) {
        struct md_snapshot *x = others[k];
        struct md_domain *xd;
        struct md_domain_disk dd;
        char *text;
        int r = 0;
        if (!x->domain_xml || !(xd = md_domain_parse(x->domain_xml, strlen(x->domain_xml), NULL)))
            continue;
        if (domain_disk(xd, target, &dd) == 0 && dd.source && same_file(dd.source, from)) {
            if (md_domain_set_disk_source(xd, target, to, err) < 0 ||
                md_domain_set_disk_driver_type(xd, target, fmt, err) < 0 || !(text = md_domain_format(xd, err))) {
                r = -1;
            } else {
                free(x->domain_xml);
                x->domain_xml = text;
                r = md_store_snapshot_put(e->store, lock, domain, x, 0, err);
            }
        }
        md_domain_free(xd);
        if (r < 0)
            return -1;
    }
    return 0;
}

/* Merges MD's child C into its image F (live or with qemu-img, unless an interrupted run did: MERGE_DONE),
 * rebases what else sat on C onto F, and makes every <domain> that named C (DOM's, OTHERS') name F. The merge
 * is noted in IT (may be NULL) as ENTRY the moment it is done. C itself is left for the garbage. */
static int merge_one(struct engine *e, struct qmp_client *c, struct md_domain *dom, const struct md_lock *lock,
                     struct md_snapshot **others, size_t nothers, char *const *dirs, const struct mdisk *md,
                     struct intent *it, const char *entry, struct qs_error **err)
{
    const char *domain = md_domain_name(dom);
    struct merge_note note = {e, lock, domain, it, entry};
    char *above = NULL, **deps;
    bool active = false;
    int r = 0;

    if (md->mode == MERGE_LIVE) {
        r = merge_live(e, c, dom, md, &note, &above, &active, err);
    } else if (md->mode == MERGE_OFFLINE) {
        if ((r = img_commit(md->child, md->frozen, err)) < 0)
            qs_error_prefix(err, "disk '%s'", md->target);
        else
            merge_noted(&note);
    }
    if (r < 0) {
        free(above);
        return -1;
    }
    /* F holds C's data now: what else sat on C sits on F (QEMU rewrote the header of the file above C in its
     * chain) */
    deps = files_dependents(dirs, md->child);
    for (size_t k = 0; deps[k] && r == 0; k++)
        if (!(above && strcmp(above, deps[k]) == 0) &&
            (r = img_rebase_unsafe(deps[k], md->frozen, md->frozen_fmt, err)) < 0)
            qs_error_prefix(err, "disk '%s'", md->target);
    qs_strv_free(deps);
    free(above);
    if (r < 0)
        return -1;
    return rename_image(e, lock, domain, dom, others, nothers, md->target, md->child, md->frozen, md->frozen_fmt,
                        err);
}

int ext_delete(struct engine *e, struct md_domain *dom, const struct md_lock *lock, const struct md_snapshot *snap,
               struct qmp_client *c, struct intent *it, struct qs_error **err)
{
    const char *domain = md_domain_name(dom);
    struct md_snapshot **others = NULL;
    struct mdisk *m = NULL;
    size_t nothers = 0, nm = 0;
    char **needed = NULL, **dirs = NULL, *entry = NULL;
    int ret = -1;

    if (snap->memory == MD_LOCATION_INTERNAL || snap->memory == MD_LOCATION_MANUAL) {
        qs_error_set(err, QS_ERR_UNSUPPORTED, "deleting external snapshot '%s' with memory snapshot '%s' is not "
                     "supported", snap->name, md_location_to_string(snap->memory));
        return -1;
    }
    if (!snap->domain_xml) {
        qs_error_set(err, QS_ERR_UNSUPPORTED, "snapshot '%s' has no <domain>: its frozen images are unknown",
                     snap->name);
        return -1;
    }
    for (size_t i = 0; i < snap->ndisks; i++)
        if (snap->disks[i].snapshot == MD_LOCATION_INTERNAL) {
            qs_error_set(err, QS_ERR_UNSUPPORTED, "snapshot '%s' mixes internal and external disk snapshots: "
                         "deleting it is not supported (use --metadata)", snap->name);
            return -1;
        }
    if (others_load(e, domain, lock, snap->name, &others, &nothers, err) < 0 ||
        files_needed(e, domain, lock, dom, snap->name, &needed, err) < 0)
        goto out;
    {
        char **mine = qs_xcalloc(snap->ndisks + 1, sizeof(char *));
        for (size_t i = 0, k = 0; i < snap->ndisks; i++) {
            char *f = frozen_of(snap, snap->disks[i].name);
            if (f)
                mine[k++] = f;
        }
        dirs = files_dirs(needed, mine, NULL);
        qs_strv_free(mine);
    }
    /* every check first, for every disk: a refusal changes nothing */
    m = qs_xcalloc(snap->ndisks + 1, sizeof(*m));
    for (size_t i = 0; i < snap->ndisks; i++) {
        if (snap->disks[i].snapshot != MD_LOCATION_EXTERNAL)
            continue;
        if (merge_plan(snap, &snap->disks[i], others, nothers, needed, dirs, dom, c, it, &m[nm++], err) < 0)
            goto out;
    }
    if (nm == 0) {
        qs_error_set(err, QS_ERR_UNSUPPORTED, "snapshot '%s' holds no external disk snapshot", snap->name);
        goto out;
    }

    /* the merges */
    for (size_t i = 0; i < nm; i++) {
        if (m[i].mode == MERGE_NONE)
            continue;
        free(entry);
        entry = qs_asprintf("%s/%s", snap->name, m[i].target);
        if (merge_one(e, c, dom, lock, others, nothers, dirs, &m[i], it, entry, err) < 0)
            goto out;
    }
    if (md_store_domain_put(e->store, lock, dom, err) < 0)
        goto out;
    if (snap->memory == MD_LOCATION_EXTERNAL && snap->memory_file) {
        /* the memory state belongs to this snapshot alone, unless metadata says otherwise */
        bool shared = false;
        for (size_t k = 0; k < nothers && !shared; k++)
            shared = others[k]->memory == MD_LOCATION_EXTERNAL && same_file(others[k]->memory_file,
                                                                            snap->memory_file);
        if (!shared && unlink(snap->memory_file) < 0 && errno != ENOENT) {
            qs_error_set_errno(err, QS_ERR_IO, errno, "snapshot '%s' merged, but its memory state file '%s' "
                               "could not be removed", snap->name, snap->memory_file);
            goto out;
        }
    }
    ret = 0;
out:
    free(entry);
    qs_strv_free(dirs);
    qs_strv_free(needed);
    mdisks_free(m, nm);
    others_free(others, nothers);
    return ret;
}

int ext_collapse(struct engine *e, struct md_domain *dom, const struct md_lock *lock, struct qmp_client *c,
                 struct intent *it, struct qs_error **err)
{
    const char *domain = md_domain_name(dom);
    struct md_snapshot **others = NULL;
    char **needed = NULL, **dirs = NULL, **frozen = NULL, **mine = NULL;
    size_t nothers = 0, nmine = 0;
    bool changed = false;
    int ret = -1;

    /* from the snapshots' entries (kept in the index): the snapshots themselves are read only for a merge */
    if (files_needed(e, domain, lock, dom, NULL, &needed, err) < 0 || files_frozen(e, domain, lock, &frozen, err) < 0)
        goto out;
    dirs = files_dirs(needed, NULL, NULL);
    for (size_t k = 0; k < md_domain_disk_count(dom); k++) {
        struct md_domain_disk d;
        char **chain, *target;
        if (md_domain_disk_get(dom, k, &d, NULL) < 0 || !d.source || !qs_str_equal(d.device, "disk"))
            continue;
        target = qs_xstrdup(d.target);
        chain = files_chain(d.source);
        for (size_t j = 0; chain[j] && chain[j + 1]; j++) {
            struct mdisk md = {0};
            struct img_info info = {0};
            char **kids = NULL, **deps = NULL;
            char *entry = qs_asprintf("/collapse:%s:%s", target, chain[j]);
            /* only a file qsnap made goes: a user's own overlay (an image on a template) stays as it is. The
             * cheap tests first: the last reads the header of every file in the images' directories */
            bool ok = md_domain_made(dom, chain[j]) && !qs_strv_has(frozen, chain[j + 1]);
            int r = 0;
            if (ok) {
                kids = files_children(needed, chain[j + 1]);
                ok = kids[0] && !kids[1] && strcmp(kids[0], chain[j]) == 0;
            }
            if (ok) {
                deps = files_dependents(dirs, chain[j + 1]);
                ok = deps[0] && !deps[1] && strcmp(deps[0], chain[j]) == 0;
            }
            /* F's own tags stay with it; C's would go with C */
            if (ok && img_info_get(chain[j], true, &info, NULL) == 0)
                ok = !(info.tags && info.tags[0]) && qs_str_equal(info.format, "qcow2");
            else
                ok = false;
            img_info_release(&info);
            if (ok && !others && others_load(e, domain, lock, "", &others, &nothers, err) < 0)
                r = -1;
            else if (ok && img_info_get(chain[j + 1], true, &info, NULL) == 0) {
                md = (struct mdisk){target, chain[j + 1], info.format, chain[j], MERGE_OFFLINE};
                info.format = NULL;
                if (it && intent_has_merged(it, entry))
                    md.mode = MERGE_DONE;
                else if (c)
                    md.mode = MERGE_LIVE; /* C is in the disk's chain: QEMU has it open */
                r = merge_one(e, c, dom, lock, others, nothers, dirs, &md, it, entry, err);
                free(md.frozen_fmt);
                if (r == 0) {
                    /* C is no longer needed: it goes once the definition says so */
                    mine = qs_xrealloc(mine, (nmine + 2) * sizeof(char *));
                    mine[nmine++] = qs_xstrdup(chain[j]);
                    mine[nmine] = NULL;
                    changed = true;
                }
            }
            img_info_release(&info);
            qs_strv_free(kids);
            qs_strv_free(deps);
            free(entry);
            if (r < 0) {
                qs_strv_free(chain);
                free(target);
                goto out;
            }
            if (ok)
                break; /* the chain changed: the next command looks at it again */
        }
        qs_strv_free(chain);
        free(target);
    }
    if (changed) {
        for (size_t i = 0; i < nmine; i++) {
            if (it)
                intent_add_garbage(it, mine[i]);
            if (md_domain_set_made(dom, mine[i], false, err) < 0)
                goto out;
        }
        if ((it && intent_update(e, lock, domain, it, err) < 0) || md_store_domain_put(e->store, lock, dom, err) < 0)
            goto out;
        files_remove(mine);
    }
    ret = 0;
out:
    qs_strv_free(mine);
    qs_strv_free(frozen);
    qs_strv_free(dirs);
    qs_strv_free(needed);
    others_free(others, nothers);
    return ret;
}

/* For schedules of the memspec kind (schedule.c): the memory file beside an image, named as --live names it. */
char *ext_default_file(const char *base, const char *suffix)
{
    return default_overlay(base, suffix);
}
