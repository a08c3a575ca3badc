/* clone.c: domain-clone - a new VM from a snapshot: linked or full disks, an identity of its own, and a start
 * from the snapshot's RAM that forks a running machine. */
#include "clone.h"
#include "export.h"
#include "files.h"
#include "img.h"
#include "intent.h"
#include "memstate.h"
#include "nvram.h"
#include "qargv.h"
#include "qs_util.h"
#include "vm.h"
#include "vmstate.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The cookie key (md_snapshot_cookie_get) + target: the export of an internal snapshot's disk that every linked
 * clone of the snapshot is built on. */
#define COOKIE_BASE "clone-base-"

#define SUPPORTED_CLONE (ENGINE_CLONE_FULL | ENGINE_CLONE_START | ENGINE_CLONE_WITH_MEMORY)

/* One disk of the clone. */
struct cdisk {
    struct export_src src; /* the snapshot's state of the disk */
    char *file;            /* the clone's image */
    char *base;            /* linked, internal: the shared export the overlay sits on */
    bool base_new;         /* made by this clone (then published in the source snapshot's cookie) */
    uint64_t need;         /* bytes a copy takes */
};

struct plan {
    struct engine *e;
    const char *domain, *snapname, *name;
    unsigned flags;
    struct md_snapshot *snap;
    struct md_domain *cdom; /* the clone's definition */
    struct cdisk *d;
    size_t n;
    const struct md_domain *dom; /* the source's definition */
    char *nvram;                 /* the clone's own UEFI variables, NULL when the source has none */
    char *nvram_was;             /* the source's, as the snapshot's command line opens them */
};

static int memory_file_open(const struct md_snapshot *snap, const char *domain, struct memstate_header *hout,
                            struct qs_error **err);

static void plan_release(struct plan *p)
{
    for (size_t i = 0; i < p->n; i++) {
        export_src_release(&p->d[i].src);
        free(p->d[i].file);
        free(p->d[i].base);
    }
    free(p->d);
    free(p->nvram);
    free(p->nvram_was);
    md_domain_free(p->cdom);
    md_snapshot_free(p->snap);
}

/* A UEFI guest's clone gets variables of its own, next to its first disk: NAME_VARS.fd as libvirt names them. */
static int plan_nvram(struct plan *p, struct qs_error **err)
{
    struct md_domain_nvram nv;
    struct stat st;
    char *dir;

    if (md_domain_nvram_get(p->cdom, &nv) <= 0)
        return 0;
    dir = files_dir_of(p->n ? p->d[0].file : nv.file);
    p->nvram = qs_asprintf("%s/%s_VARS.%s", dir, p->name, qs_str_equal(nv.format, "qcow2") ? "qcow2" : "fd");
    free(dir);
    p->nvram_was = qs_xstrdup(nv.file);
    if (lstat(p->nvram, &st) == 0) {
        qs_error_set(err, QS_ERR_EXISTS, "file '%s' already exists", p->nvram);
        return -1;
    }
    nv.file = p->nvram;
    return md_domain_set_nvram(p->cdom, &nv, err);
}

/* The clone's command line opens its own variables (ARGV: the snapshot's, its disks pointed already). */
static int point_nvram(struct plan *p, char **argv, const char *cwd, struct qs_error **err)
{
    struct md_domain_nvram nv;
    ssize_t at;

    if (!p->nvram || md_domain_nvram_get(p->cdom, &nv) <= 0)
        return 0;
    if ((at = qargv_disk_option(argv, cwd, nv.drive, nv.node_name, p->nvram_was)) < 0) {
        qs_error_set(err, QS_ERR_UNSUPPORTED, "the recorded QEMU command line does not open the UEFI variables '%s'",
                     p->nvram_was);
        return -1;
    }
    return qargv_point_option(argv, at, "nvram", p->nvram, NULL, err);
}

/* The index of the option that opens the clone's variables in its final command line ARGV. */
static int index_nvram(struct plan *p, char *const *argv, const char *cwd, struct qs_error **err)
{
    struct md_domain_nvram nv;
    ssize_t at;
    char buf[24];

    if (!p->nvram || md_domain_nvram_get(p->cdom, &nv) <= 0)
        return 0;
    at = qargv_disk_option(argv, cwd, nv.drive, nv.node_name, p->nvram);
    snprintf(buf, sizeof(buf), "%zd", at);
    nv.arg = at >= 0 ? buf : NULL;
    return md_domain_set_nvram(p->cdom, &nv, err);
}

/* The export of SNAP's disk TARGET a linked clone made before, when it is still there and whole. Caller frees. */
static char *shared_base(const struct md_snapshot *snap, const char *target)
{
    char *key = qs_asprintf(COOKIE_BASE "%s", target), *v = NULL, *backing = NULL;
    struct img_info info = {0};

    if (md_snapshot_cookie_get(snap, key, &v, NULL) < 0 || !v || v[0] != '/' ||
        img_qcow2_backing(v, &backing, NULL) < 0 || backing || img_info_get(v, true, &info, NULL) < 0 ||
        !qs_str_equal(info.format, "qcow2")) {
        free(v);
        v = NULL;
    }
    img_info_release(&info);
    free(backing);
    free(key);
    return v;
}

/* A name in DIR that does not exist yet: STEM + EXT, else STEM-N + EXT. Caller frees. */
static char *free_name(const char *dir, const char *stem, const char *ext)
{
    struct stat st;
    char *p = qs_asprintf("%s/%s%s", dir, stem, ext);

    for (unsigned n = 2; lstat(p, &st) == 0 && n < 1000; n++) {
        free(p);
        p = qs_asprintf("%s/%s-%u%s", dir, stem, n, ext);
    }
    return p;
}

/* The clone's disks: where each one's state at the snapshot is, and the files the clone gets. */
static int plan_disks(struct plan *p, struct qs_error **err)
{
    bool full = p->flags & ENGINE_CLONE_FULL;

    p->d = qs_xcalloc(md_domain_disk_count(p->cdom) + 1, sizeof(*p->d));
    for (size_t k = 0; k < md_domain_disk_count(p->cdom); k++) {
        struct md_domain_disk dd;
        struct cdisk *c;
        struct stat st;
        char *dir, *stem;
        if (md_domain_disk_get(p->cdom, k, &dd, err) < 0)
            return -1;
        if (!dd.target || !dd.source || !qs_str_equal(dd.device, "disk"))
            continue;
        c = &p->d[p->n++];
        if (export_source(p->cdom, p->snap, dd.target, &c->src, err) < 0) {
            if (*err && (*err)->code == QS_ERR_NOTFOUND)
                qs_error_prefix(err, "a clone cannot share disk '%s' with domain '%s'", dd.target, p->domain);
            return -1;
        }
        dir = files_dir_of(c->src.image);
        c->file = qs_asprintf("%s/%s-%s.qcow2", dir, p->name, dd.target);
        if (lstat(c->file, &st) == 0) {
            qs_error_set(err, QS_ERR_EXISTS, "file '%s' already exists", c->file);
            free(dir);
            return -1;
        }
        if (full) {
            if (export_measure(&c->src, "qcow2", &c->need, err) < 0) {
                free(dir);
                return -1;
            }
        } else if (c->src.tag && !(c->base = shared_base(p->snap, dd.target))) {
            /* an overlay cannot sit on a tag: the disk's state is exported once, for every linked clone */
            stem = qs_asprintf("%s-%s-%s.base", p->domain, p->snapname, dd.target);
            c->base = free_name(dir, stem, ".qcow2");
            c->base_new = true;
            free(stem);
            if (export_measure(&c->src, "qcow2", &c->need, err) < 0) {
                free(dir);
                return -1;
            }
        }
        free(dir);
    }
    return 0;
}

/* Room for every copy, directory by directory. */
static int check_space(const struct plan *p, struct qs_error **err)
{
    for (size_t i = 0; i < p->n; i++) {
        char *dir = files_dir_of(p->d[i].file), *what;
        uint64_t need = 0;
        bool first = true;
        int r;
        for (size_t k = 0; k < p->n; k++) {
            char *other = files_dir_of(p->d[k].file);
            if (strcmp(other, dir) == 0) {
                first = first && k >= i;
                need += p->d[k].need;
            }
            free(other);
        }
        what = qs_asprintf("the disks of clone '%s'", p->name);
        r = first && need ? export_check_space(dir, need, what, err) : 0;
        free(what);
        free(dir);
        if (r < 0)
            return -1;
    }
    return 0;
}

/* The clone's definition: the snapshot's, with its own identity, disks and command line. */
static int plan_domain(struct plan *p, struct qs_error **err)
{
    char **argv = NULL, **pointed = NULL, **cargv = NULL, *run = NULL, *cwd = NULL;
    int ret = -1;

    if (!p->snap->domain_xml) {
        qs_error_set(err, QS_ERR_UNSUPPORTED, "snapshot '%s' records no domain definition to clone", p->snapname);
        return -1;
    }
    if (!(p->cdom = md_domain_parse(p->snap->domain_xml, strlen(p->snap->domain_xml), err)))
        return -1;
    {
        /* the files qsnap made for the source are the source's to merge away, never the clone's */
        char *own = md_domain_format_copy(p->cdom, err);
        md_domain_free(p->cdom);
        p->cdom = own ? md_domain_parse(own, strlen(own), err) : NULL;
        free(own);
        if (!p->cdom)
            return -1;
    }
    cwd = md_domain_cwd(p->cdom) ? qs_xstrdup(md_domain_cwd(p->cdom)) : NULL;
    if (md_domain_set_identity(p->cdom, p->name, NULL, err) < 0 || md_domain_set_qmp_socket(p->cdom, NULL, err) < 0 ||
        md_domain_set_process(p->cdom, cwd, 0, 0, err) < 0 || plan_disks(p, err) < 0 || plan_nvram(p, err) < 0)
        goto out;
    if (!(argv = md_domain_argv(p->cdom)) || !argv[0]) {
        qs_error_set(err, QS_ERR_UNSUPPORTED, "snapshot '%s' of domain '%s' records no QEMU command line to clone",
                     p->snapname, p->domain);
        goto out;
    }
    for (size_t i = 0; i < p->n; i++)
        if (md_domain_set_disk_source(p->cdom, p->d[i].src.target, p->d[i].file, err) < 0 ||
            md_domain_set_disk_driver_type(p->cdom, p->d[i].src.target, "qcow2", err) < 0)
            goto out;
    /* the disks are pointed while the recorded indices still hold, then the rest is made the clone's own */
    run = qs_asprintf("%s/run", engine_root(p->e));
    {
        struct qargv_clone_opts o = {p->name, md_domain_uuid(p->cdom), run, cwd};
        if (qargv_point_disks(argv, p->cdom, &pointed, err) < 0 || point_nvram(p, pointed, cwd, err) < 0 ||
            qargv_clone(pointed, &o, &cargv, err) < 0 || md_domain_set_argv(p->cdom, (const char *const *)cargv, err) < 0 ||
            index_nvram(p, cargv, cwd, err) < 0)
            goto out;
    }
    if ((p->flags & ENGINE_CLONE_WITH_MEMORY) && p->snap->memory == MD_LOCATION_EXTERNAL) {
        /* the state loads only into the machine type it was written from: "-machine pc" names another type
           once QEMU was upgraded, so the clone's command line names the file's, as a revert's does */
        struct memstate_header h = {0};
        int fd = memory_file_open(p->snap, NULL, &h, err);
        int r = fd < 0 ? -1 : memstate_pin_machine(p->cdom, &h, err);
        memstate_header_release(&h);
        if (fd >= 0)
            close(fd);
        if (r < 0)
            goto out;
    }
    for (size_t i = 0; i < p->n; i++) {
        struct md_domain_disk dd;
        ssize_t at = -1;
        char buf[24];
        for (size_t k = 0; k < md_domain_disk_count(p->cdom) && at < 0; k++)
            if (md_domain_disk_get(p->cdom, k, &dd, NULL) == 0 && qs_str_equal(dd.target, p->d[i].src.target))
                at = qargv_disk_option(cargv, cwd, dd.drive, dd.node_name, dd.source);
        snprintf(buf, sizeof(buf), "%zd", at);
        if (md_domain_set_disk_ident(p->cdom, p->d[i].src.target, "arg", at >= 0 ? buf : NULL, err) < 0)
            goto out;
    }
    if (engine_qemu_check_start(p->cdom, err) < 0)
        goto out;
    ret = 0;
out:
    if (ret < 0)
        qs_error_prefix(err, "cannot clone snapshot '%s' of domain '%s'", p->snapname, p->domain);
    qs_strv_free(argv);
    qs_strv_free(pointed);
    qs_strv_free(cargv);
    free(run);
    free(cwd);
    return ret;
}

/* Records in the source snapshot's cookie the export linked clones share (the snapshot's metadata is rewritten
 * as it is, with the cookie). */
static int publish_base(struct plan *p, const struct md_lock *lock, const struct cdisk *c, struct qs_error **err)
{
    char *key = qs_asprintf(COOKIE_BASE "%s", c->src.target);
    struct md_snapshot *s = md_store_snapshot_get(p->e->store, p->domain, p->snapname, err);
    int r = -1;

    /* a cookie naming an export that is gone stays as it is: this clone's export is its own then */
    if (s && md_snapshot_cookie_set(s, key, c->base, NULL) == 0)
        r = md_store_snapshot_put(p->e->store, lock, p->domain, s, 0, err);
    else if (s)
        r = 0;
    md_snapshot_free(s);
    free(key);
    return r;
}

/* Makes the clone's image of disk C (and the shared export under it), each file named in the record once
 * qsnap has created it. */
static int make_disk(struct plan *p, const struct md_lock *lock, struct intent *it, struct cdisk *c,
                     struct qs_error **err)
{
    struct engine *e = p->e;

    if (c->base && c->base_new) {
        if (export_file_new(c->base, err) < 0)
            return -1;
        intent_add_file(it, c->base);
        if (intent_update(e, lock, p->domain, it, err) < 0 || export_convert(e, &c->src, c->base, "qcow2", false,
                                                                              err) < 0)
            return -1;
        if (publish_base(p, lock, c, err) < 0)
            return -1;
        engine_step(e, "clone", "base");
    }
    if (export_file_new(c->file, err) < 0)
        return -1;
    intent_add_file(it, c->file);
    if (intent_update(e, lock, p->domain, it, err) < 0)
        return -1;
    if (p->flags & ENGINE_CLONE_FULL)
        return export_convert(e, &c->src, c->file, "qcow2", false, err);
    if (c->base)
        return img_create_overlay(c->file, c->base, "qcow2", err);
    return img_create_overlay(c->file, c->src.image, c->src.format, err);
}

/* Whether FILE is the export the source snapshot's cookie publishes (linked clones to come share it). */
static bool published(struct engine *e, const char *domain, const char *snapshot, const char *file)
{
    struct md_snapshot *s = snapshot ? md_store_snapshot_get(e->store, domain, snapshot, NULL) : NULL;
    bool r = false;

    for (size_t i = 0; s && i < s->ndisks && !r; i++) {
        char *key = qs_asprintf(COOKIE_BASE "%s", s->disks[i].name), *v = NULL;
        r = md_snapshot_cookie_get(s, key, &v, NULL) == 0 && qs_str_equal(v, file);
        free(v);
        free(key);
    }
    md_snapshot_free(s);
    return r;
}

/* Whether the clone named in IT is defined - by this operation (its uuid is the record's). */
static bool clone_defined(struct engine *e, const struct intent *it)
{
    struct md_domain *want = it->domain_xml ? md_domain_parse(it->domain_xml, strlen(it->domain_xml), NULL) : NULL;
    struct md_domain *have = it->target ? md_store_domain_get(e->store, it->target, NULL) : NULL;
    bool r = want && have && qs_str_equal(md_domain_uuid(want), md_domain_uuid(have));

    md_domain_free(want);
    md_domain_free(have);
    return r;
}

int clone_recover(struct engine *e, const char *domain, const struct md_lock *lock, struct intent *it,
                  struct qs_error **err)
{
    struct md_lock *clock = NULL;
    struct md_domain *cdom = NULL;
    struct qmp_client *c = NULL;
    char *status = NULL;
    int ret = -1;

    (void)lock;
    if (!clone_defined(e, it)) {
        /* not defined: nothing of it stays (an export other clones will share stays, once published) */
        for (size_t i = 0; it->files && it->files[i]; i++)
            if (!published(e, domain, it->snapshot, it->files[i]) && unlink(it->files[i]) < 0 && errno != ENOENT) {
                qs_error_set_errno(err, QS_ERR_IO, errno, "cannot remove '%s'", it->files[i]);
                return -1;
            }
        return 0;
    }
    /* defined: the clone stands; a start cut short leaves it shut off, a finished load runs as asked */
    if (!(clock = md_lock_acquire(e->store, it->target, e->lock_timeout_ms, err)) ||
        !(cdom = md_store_domain_get(e->store, it->target, err)) || engine_domain_connect(e, cdom, &c, err) < 0)
        goto out;
    if (c && vm_status(c, &status, NULL, err) < 0)
        goto out;
    if (c && strcmp(status, "inmigrate") == 0 && engine_qemu_quit(e, &c, err) < 0)
        goto out;
    if (c && it->want_running && strcmp(status, "paused") == 0 && vm_cont(c, err) < 0)
        goto out;
    ret = 0;
out:
    free(status);
    qmp_client_free(c);
    md_domain_free(cdom);
    md_lock_free(clock);
    return ret;
}

/* ---- the snapshot's memory ---- */

/* The vmstate of internal snapshot SNAP, in the image of one of its disks (where the save put it). */
static int find_vmstate(const struct md_snapshot *snap, struct vmstate **out, struct qs_error **err)
{
    *out = NULL;
    for (size_t i = 0; i < snap->ndisks && !*out; i++) {
        char *img;
        int r;
        if (snap->disks[i].snapshot == MD_LOCATION_NO || snap->disks[i].snapshot == MD_LOCATION_EXTERNAL ||
            !(img = files_snapshot_image(snap, snap->disks[i].name)))
            continue;
        r = vmstate_open(img, snap->name, out, err);
        free(img);
        if (r < 0)
            return -1;
    }
    if (!*out) {
        qs_error_set(err, QS_ERR_NOTFOUND, "snapshot '%s': no image of its disks holds its memory", snap->name);
        return -1;
    }
    return 0;
}

/* SNAP's memory file, read to its data; its header in *HOUT when HOUT is not NULL (the caller releases it). */
static int memory_file_open(const struct md_snapshot *snap, const char *domain, struct memstate_header *hout,
                            struct qs_error **err)
{
    struct memstate_header h = {0};
    int fd = open(snap->memory_file, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        qs_error_set_errno(err, errno == ENOENT ? QS_ERR_NOTFOUND : QS_ERR_IO, errno,
                           "cannot open memory state file '%s' of snapshot '%s'", snap->memory_file, snap->name);
        return -1;
    }
    if (memstate_header_read(fd, snap->memory_file, &h, err) < 0 || (domain && strcmp(h.domain, domain) != 0)) {
        if (domain && h.domain && strcmp(h.domain, domain) != 0)
            qs_error_set(err, QS_ERR_INVALID, "memory state file '%s' holds domain '%s', not '%s'", snap->memory_file,
                         h.domain, domain);
        memstate_header_release(&h);
        close(fd);
        return -1;
    }
    if (hout)
        *hout = h;
    else
        memstate_header_release(&h);
    return fd;
}

static bool has_memory(const struct md_snapshot *snap)
{
    return snap->state != MD_STATE_SHUTOFF && snap->state != MD_STATE_DISK_SNAPSHOT && snap->memory != MD_LOCATION_NO;
}

int clone_memory_check(const struct md_snapshot *snap, const char *domain, struct qs_error **err)
{
    struct vmstate *v = NULL;
    int fd;

    if (!has_memory(snap)) {
        qs_error_set(err, QS_ERR_UNSUPPORTED, "snapshot '%s' holds no memory (it is %s): clone it without --with-memory",
                     snap->name, snap->state == MD_STATE_SHUTOFF ? "of a shut-off domain" : "disk-only");
        return -1;
    }
    if (snap->memory == MD_LOCATION_EXTERNAL) {
        if ((fd = memory_file_open(snap, domain, NULL, err)) < 0)
            return -1;
        close(fd);
        return 0;
    }
    if (find_vmstate(snap, &v, err) < 0)
        return -1;
    vmstate_free(v);
    return 0;
}

/* The thread that streams an internal snapshot's vmstate to QEMU. */
struct feeder {
    struct vmstate *v;
    int fd;
    volatile bool stop;
    struct qs_error *err;
};

static void *feed(void *opaque)
{
    struct feeder *f = opaque;

    vmstate_copy(f->v, f->fd, &f->stop, &f->err);
    shutdown(f->fd, SHUT_WR); /* the stream ends here */
    return NULL;
}

int clone_load(struct engine *e, struct qmp_client *c, const struct md_domain *dom, const struct md_snapshot *snap,
               struct qs_error **err)
{
    struct memstate_options o = {.phase = "restore", .progress = e->progress, .opaque = e->opaque};
    struct feeder f = {NULL, -1, false, NULL};
    int sv[2] = {-1, -1}, fd = -1, ret = -1;
    pthread_t th;
    bool running = false;

    (void)dom;
    if (snap->memory == MD_LOCATION_EXTERNAL) {
        /* the file names the source domain: the clone loads it as it is, in the form its header says (a
         * mapped-ram file needs QEMU's mapped-ram on the way in too) */
        struct memstate_header h = {0};
        if ((fd = memory_file_open(snap, NULL, &h, err)) < 0)
            return -1;
        o.header = &h;
        o.path = snap->memory_file;
        ret = memstate_load(c, fd, &o, err);
        memstate_header_release(&h);
        close(fd);
        return ret;
    }
    if (find_vmstate(snap, &f.v, err) < 0)
        return -1;
    /* QEMU reads the stream from one end of a socket pair while a thread writes it at the other: nothing of
     * the RAM is copied to disk on the way */
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        qs_error_set_errno(err, QS_ERR_IO, errno, "cannot create a socket pair");
        goto out;
    }
    f.fd = sv[1];
    if ((errno = qs_thread_start(&th, feed, &f)) != 0) {
        qs_error_set_errno(err, QS_ERR_IO, errno, "cannot start a thread");
        goto out;
    }
    running = true;
    ret = memstate_load(c, sv[0], &o, err);
    /* QEMU has its own copy of the reading end: closing ours lets a writer whose reader failed see it */
    qs_close(sv[0]);
    sv[0] = -1;
    if (ret < 0)
        f.stop = true;
    pthread_join(th, NULL);
    running = false;
    if (ret == 0 && f.err) {
        qs_error_propagate(err, &f.err);
        ret = -1;
    }
out:
    if (running) {
        f.stop = true;
        pthread_join(th, NULL);
    }
    qs_error_free(f.err);
    qs_close(sv[0]);
    qs_close(sv[1]);
    vmstate_free(f.v);
    return ret;
}

/* Removes what a failed clone made before its definition was stored (the record says the same to recovery). */
static void unmake(struct engine *e, const char *domain, const struct intent *it)
{
    for (size_t i = 0; it->files && it->files[i]; i++)
        if (!published(e, domain, it->snapshot, it->files[i]))
            unlink(it->files[i]);
}

/* Starts the defined clone: a fresh boot, or from the snapshot's memory (clone_load). */
static int clone_start(struct plan *p, const struct md_lock *clock, struct intent *it, const struct md_lock *lock,
                       struct qs_error **err)
{
    struct qmp_client *c = NULL;
    int ret = -1;

    if (p->flags & ENGINE_CLONE_WITH_MEMORY) {
        it->want_running = p->snap->state == MD_STATE_RUNNING;
        if (intent_update(p->e, lock, p->domain, it, err) < 0 || engine_qemu_start_incoming(p->e, p->cdom, clock, &c,
                                                                                             err) < 0)
            goto out;
        engine_step(p->e, "clone", "start");
        if (clone_load(p->e, c, p->cdom, p->snap, err) < 0) {
            engine_qemu_quit(p->e, &c, NULL); /* best effort: the clone stays defined, shut off */
            goto out;
        }
        engine_step(p->e, "clone", "load");
        if (it->want_running && vm_cont(c, err) < 0)
            goto out;
    } else {
        if (engine_qemu_start(p->e, p->cdom, clock, false, &c, err) < 0)
            goto out;
        engine_step(p->e, "clone", "start");
    }
    ret = 0;
out:
    if (ret < 0)
        qs_error_prefix(err, "domain '%s' is defined but could not be started", p->name);
    qmp_client_free(c);
    return ret;
}

int domain_clone_op(struct engine *e, const char *domain, const char *snapshot, const char *name, unsigned flags,
                    struct qs_error **err)
{
    struct plan p = {e, domain, snapshot, name, flags, NULL, NULL, NULL, 0, NULL, NULL, NULL};
    struct md_domain *dom = NULL;
    struct md_lock *lock = NULL, *clock = NULL;
    struct intent it = {0};
    bool defined = false;
    int ret = -1;

    if (flags & ~(unsigned)SUPPORTED_CLONE) {
        qs_error_set(err, QS_ERR_UNSUPPORTED, "unsupported clone flags 0x%x", flags & ~(unsigned)SUPPORTED_CLONE);
        return -1;
    }
    if (flags & ENGINE_CLONE_WITH_MEMORY)
        p.flags |= ENGINE_CLONE_START;
    if (qs_name_check(name, "domain", err) < 0)
        return -1;
    if (strcmp(name, domain) == 0) {
        qs_error_set(err, QS_ERR_EXISTS, "domain '%s' is already defined", name);
        return -1;
    }
    /* the source's lock keeps the snapshot as it is; the new name's keeps another qsnap from taking it */
    if (!(dom = engine_domain_load(e, domain, err)) || !(lock = engine_domain_lock(e, domain, err)) ||
        !(clock = engine_domain_lock(e, name, err)))
        goto out;
    p.dom = dom;
    if (md_store_domain_exists(e->store, name, NULL) == 0) {
        qs_error_set(err, QS_ERR_EXISTS, "domain '%s' is already defined", name);
        goto out;
    }
    if (!(p.snap = export_snapshot_get(e, domain, snapshot, err)) ||
        ((p.flags & ENGINE_CLONE_WITH_MEMORY) && clone_memory_check(p.snap, domain, err) < 0) ||
        plan_domain(&p, err) < 0 || check_space(&p, err) < 0)
        goto out;
    it.op = qs_xstrdup("clone");
    it.kind = qs_xstrdup(flags & ENGINE_CLONE_FULL ? "full" : "linked");
    it.snapshot = qs_xstrdup(snapshot);
    it.target = qs_xstrdup(name);
    if (!(it.domain_xml = md_domain_format(p.cdom, err)) || intent_begin(e, lock, domain, &it, err) < 0)
        goto out;
    for (size_t i = 0; i < p.n; i++) {
        if (make_disk(&p, lock, &it, &p.d[i], err) < 0)
            goto out;
        engine_step(e, "clone", "disk");
    }
    if (p.nvram) {
        /* the snapshot's UEFI variables, as the clone's own */
        if (export_file_new(p.nvram, err) < 0)
            goto out;
        intent_add_file(&it, p.nvram);
        if (intent_update(e, lock, domain, &it, err) < 0 ||
            nvram_copy_for_clone(e, p.dom, domain, snapshot, p.nvram, err) < 0)
            goto out;
        engine_step(e, "clone", "nvram");
    }
    if (md_store_domain_put(e->store, clock, p.cdom, err) < 0)
        goto out;
    defined = true;
    free(it.phase);
    it.phase = qs_xstrdup("defined");
    if (intent_update(e, lock, domain, &it, err) < 0)
        goto out;
    engine_step(e, "clone", "define");
    if ((p.flags & ENGINE_CLONE_START) && clone_start(&p, clock, &it, lock, err) < 0)
        goto out;
    ret = 0;
out:
    if (ret < 0 && !defined && it.pid)
        unmake(e, domain, &it);
    if (it.pid)
        intent_finish(e, lock, domain, ret == 0);
    intent_release(&it);
    plan_release(&p);
    md_lock_free(clock);
    md_lock_free(lock);
    md_domain_free(dom);
    return ret;
}

int clone_check_delete(struct engine *e, const char *domain, char *const *names, struct qs_error **err)
{
    int ret = 0;

    /* no other domain, no clone: the snapshots' files need not be read */
    if (!files_others_exist(e, domain))
        return 0;

    for (size_t i = 0; names && names[i] && ret == 0; i++) {
        struct md_snapshot *s = md_store_snapshot_get(e->store, domain, names[i], NULL);
        for (size_t k = 0; s && k < s->ndisks && ret == 0; k++) {
            char *img, **users;
            if (s->disks[k].snapshot == MD_LOCATION_NO || !(img = files_snapshot_image(s, s->disks[k].name)))
                continue;
            users = files_users(e, domain, img);
            if (users[0]) {
                qs_error_set(err, QS_ERR_STATE,
                             "snapshot '%s' cannot be deleted: domain '%s' is a linked clone built on its image "
                             "'%s' of disk '%s' (undefine the clone and remove its disks first, or clone with --full)",
                             names[i], users[0], img, s->disks[k].name);
                ret = -1;
            }
            qs_strv_free(users);
            free(img);
        }
        md_snapshot_free(s);
    }
    return ret;
}
