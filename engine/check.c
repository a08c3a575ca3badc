/* check.c: snapshot-check - a domain's snapshot metadata reconciled with its images, files and QEMU. */
#include "engine_priv.h"
#include "pure.h"
#include "disks.h"
#include "files.h"
#include "qargv.h"
#include "img.h"
#include "qs_buf.h"
#include "qs_file.h"
#include "qs_proc.h"
#include "qs_util.h"
#include "vm.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHECK_IMG_TIMEOUT_MS 60000
#define CHECK_CHAIN_MAX 256

/* ------------------------------------------------------------------------------------------------ */
/* The report. */


/* Adds an item; FIX (may be NULL) is taken over. The message is formatted. Returns the item (valid until the
 * next add). */
__attribute__((format(printf, 6, 7))) static struct engine_check_item *
item_add(struct engine_check_report *r, const char *kind, const char *snapshot, const char *disk, char *fix,
         const char *fmt, ...)
{
    struct engine_check_item *it;
    va_list ap;

    qs_xgrow((void **)&r->items, &r->cap, r->n + 1, sizeof(*r->items));
    it = &r->items[r->n++];
    memset(it, 0, sizeof(*it));
    it->kind = qs_xstrdup(kind);
    it->snapshot = snapshot ? qs_xstrdup(snapshot) : NULL;
    it->disk = disk ? qs_xstrdup(disk) : NULL;
    va_start(ap, fmt);
    it->message = qs_vasprintf(fmt, ap);
    va_end(ap);
    it->fix = fix;
    return it;
}

/* A repair that failed: the item stays unrepaired and says why. */
static void item_repair_failed(struct engine_check_item *it, struct qs_error **local)
{
    char *m = qs_asprintf("%s (repair failed: %s)", it->message,
                          *local && (*local)->message ? (*local)->message : "unknown error");
    free(it->message);
    it->message = m;
    qs_error_clear(local);
}

/* ------------------------------------------------------------------------------------------------ */
/* What the images say: backing chains and internal snapshots, from QEMU or qemu-img. */

struct ctag {
    char *name;
    char *id;
    int64_t vmsize;
    int64_t date;
};

struct cimage {
    char *file;   /* canonical path (as named when it does not resolve) */
    char *format; /* "qcow2", "raw", ... */
    struct ctag *tags;
    size_t ntags;
};

struct cdisk {
    char *target;
    char *source;       /* the definition's source; NULL if none */
    char *source_canon;
    char *live_node;    /* live: QEMU's top node */
    char *live_file;    /* live: QEMU's name of the top image (may be json:{...}) */
    bool known;         /* the chain below was read */
    struct cimage *chain; /* top first */
    size_t nchain;
};

static void cimage_release(struct cimage *im)
{
    for (size_t i = 0; i < im->ntags; i++) {
        free(im->tags[i].name);
        free(im->tags[i].id);
    }
    free(im->tags);
    free(im->file);
    free(im->format);
}

static void cdisk_release(struct cdisk *d)
{
    for (size_t i = 0; i < d->nchain; i++)
        cimage_release(&d->chain[i]);
    free(d->chain);
    free(d->target);
    free(d->source);
    free(d->source_canon);
    free(d->live_node);
    free(d->live_file);
}

/* realpath when the file exists, else a copy: paths compare by what they name */
static char *canon(const char *path)
{
    char *r = path ? realpath(path, NULL) : NULL;
    return r ? r : qs_xstrdup(path ? path : "");
}

static bool path_exists(const char *path)
{
    struct stat st;
    return path && stat(path, &st) == 0;
}

/* One ImageInfo (qemu-img info's JSON, or query-block's inserted.image) into IM; relative names (as QEMU
 * opened them) are taken against CWD. */
static void image_from_value(const struct qmp_value *v, struct cimage *im, const char *cwd)
{
    const struct qmp_value *snaps = qmp_value_get(v, "snapshots");
    const char *file = qmp_value_get_string(v, "filename"), *fmt = qmp_value_get_string(v, "format");
    size_t n = qmp_value_array_len(snaps);

    if (!(im->file = disk_image_name(file, cwd)))
        im->file = qs_xstrdup(file ? file : "");
    im->format = qs_xstrdup(fmt ? fmt : "");
    im->tags = qs_xcalloc(n + 1, sizeof(*im->tags));
    for (size_t i = 0; i < n; i++) {
        const struct qmp_value *sn = qmp_value_array_at(snaps, i);
        const char *name = qmp_value_get_string(sn, "name"), *id = qmp_value_get_string(sn, "id");
        struct ctag *t;
        if (!name)
            continue;
        t = &im->tags[im->ntags++];
        t->name = qs_xstrdup(name);
        t->id = qs_xstrdup(id ? id : "");
        qmp_value_int(qmp_value_get(sn, "vm-state-size"), &t->vmsize);
        qmp_value_int(qmp_value_get(sn, "date-sec"), &t->date);
    }
}

static void chain_add(struct cdisk *d, const struct qmp_value *v, const char *cwd)
{
    d->chain = qs_xrealloc(d->chain, (d->nchain + 1) * sizeof(*d->chain));
    memset(&d->chain[d->nchain], 0, sizeof(*d->chain));
    image_from_value(v, &d->chain[d->nchain++], cwd);
}

/* VM off: qemu-img info -U --backing-chain (-U: a QEMU started meanwhile does not make it fail). */
static int disk_read_offline(struct cdisk *d, struct qs_error **err)
{
    char *argv[] = {"qemu-img", "info", "-U", "--backing-chain", "--output=json", "--", d->source, NULL};
    struct qs_proc_result res = {0};
    struct qmp_reply *r = NULL;
    const struct qmp_value *list;
    int ret = -1;

    if (qs_proc_run(argv, CHECK_IMG_TIMEOUT_MS, 0, &res, err) < 0)
        return -1;
    if (res.status != 0) {
        const char *msg = res.errout ? res.errout : "";
        size_t len = strlen(msg);
        if (qs_str_has_prefix(msg, "qemu-img: "))
            msg += strlen("qemu-img: "), len -= strlen("qemu-img: ");
        while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == '\r'))
            len--;
        qs_error_set(err, QS_ERR_QEMU, "%.*s", (int)len, len ? msg : "qemu-img info failed");
        goto out;
    }
    if (!(r = qmp_reply_parse(res.out, err)))
        goto out;
    list = qmp_reply_value(r);
    for (size_t i = 0; i < qmp_value_array_len(list) && i < CHECK_CHAIN_MAX; i++)
        chain_add(d, qmp_value_array_at(list, i), NULL);
    d->known = d->nchain > 0;
    ret = 0;
out:
    qmp_reply_free(r);
    qs_proc_result_release(&res);
    return ret;
}

/* The query-block entry whose top node is NODE, or NULL. */
static const struct qmp_value *live_by_node(const struct qmp_value *list, const char *node)
{
    for (size_t i = 0; node && i < qmp_value_array_len(list); i++) {
        const struct qmp_value *ins = qmp_value_get(qmp_value_array_at(list, i), "inserted");
        if (ins && qs_str_equal(qmp_value_get_string(ins, "node-name"), node))
            return ins;
    }
    return NULL;
}

/* ------------------------------------------------------------------------------------------------ */
/* The check. */

struct check {
    struct engine *e;
    const char *domain;
    bool repair;
    struct md_domain *dom;
    struct md_lock *lock;
    struct md_tree *tree;         /* NULL when the metadata cannot be read */
    struct md_snapshot **snaps;   /* every readable snapshot */
    size_t nsnaps;
    struct qmp_client *c;         /* NULL when QEMU does not run */
    struct cdisk *disks;          /* the definition's disks (device 'disk') */
    size_t ndisks;
    struct cimage *aside;         /* images a snapshot's tags are in that no disk's chain holds */
    size_t naside;
    char **needed;                /* the image files the domain's state needs (files_needed); NULL: unknown */
    struct engine_check_report *r;
};

static struct cdisk *disk_find(struct check *k, const char *target)
{
    for (size_t i = 0; i < k->ndisks; i++)
        if (qs_str_equal(k->disks[i].target, target))
            return &k->disks[i];
    return NULL;
}

/* Whether FILE (canonical) is the overlay of an external disk of some snapshot. */
static const struct md_snapshot *overlay_owner(const struct check *k, const char *file)
{
    for (size_t i = 0; i < k->nsnaps; i++) {
        const struct md_snapshot *s = k->snaps[i];
        for (size_t j = 0; j < s->ndisks; j++) {
            char *c;
            bool eq;
            if (s->disks[j].snapshot != MD_LOCATION_EXTERNAL || !s->disks[j].source)
                continue;
            c = canon(s->disks[j].source);
            eq = strcmp(c, file) == 0;
            free(c);
            if (eq)
                return s;
        }
    }
    return NULL;
}

/* Stale NAME.tmp files of qsnap's atomic writes: in the snapshot directory (NAME.xml.tmp,
 * .qsnap-index.tmp) and the domain definition's (DOM.xml.tmp). With the lock held no write is in flight,
 * so removing them is safe. */
static void check_temporaries(struct check *k)
{
    const char *root = md_store_root(k->e->store);
    char *dirs[2], *own_def = qs_asprintf("%s.xml.tmp", k->domain);

    dirs[0] = qs_asprintf("%s/snapshot/%s", root, k->domain);
    dirs[1] = qs_asprintf("%s/qemu", root);
    for (int i = 0; i < 2; i++) {
        DIR *d = opendir(dirs[i]);
        struct dirent *de;
        if (!d)
            continue;
        while ((de = readdir(d))) {
            const char *n = de->d_name;
            struct engine_check_item *it;
            struct qs_error *local = NULL;
            struct stat st;
            char *path;
            bool ours = i == 0 ? (qs_str_has_suffix(n, ".xml.tmp") || strcmp(n, ".qsnap-index.tmp") == 0)
                               : strcmp(n, own_def) == 0;
            if (!ours || fstatat(dirfd(d), n, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
                continue;
            path = qs_asprintf("%s/%s", dirs[i], n);
            it = item_add(k->r, "stale-temporary", NULL, NULL,
                          qs_xstrdup("remove it (snapshot-check --repair): an interrupted write left it"),
                          "leftover temporary file '%s' of an interrupted metadata write", path);
            if (k->repair) {
                if (qs_file_remove(dirfd(d), n, &local) < 0)
                    item_repair_failed(it, &local);
                else
                    it->repaired = true;
            }
            free(path);
        }
        closedir(d);
    }
    free(dirs[0]);
    free(dirs[1]);
    free(own_def);
}

static void tree_collect(const struct md_tree *t, const struct md_entry *en, const struct md_entry ***v, size_t *n,
                         size_t *cap)
{
    qs_xgrow((void **)v, cap, *n + 1, sizeof(**v));
    (*v)[(*n)++] = en;
    for (size_t i = 0; i < en->nchildren; i++)
        tree_collect(t, md_tree_child(t, en, i), v, n, cap);
}

/* The tree and every snapshot in it; an unreadable tree or file is an item, not a failure. */
static void load_metadata(struct check *k)
{
    struct qs_error *local = NULL;
    const struct md_entry **v = NULL;
    size_t n = 0, cap = 0;

    /* every file looked at: a file edited in place (no directory change) is not missed */
    if (!(k->tree = md_tree_load_checked(k->e->store, k->domain, k->lock, &local))) {
        item_add(k->r, "metadata-unreadable", NULL, NULL,
                 qs_xstrdup("correct or remove the offending snapshot file by hand (snapshot-edit cannot load "
                            "it either); the snapshots were not checked"),
                 "snapshot metadata of domain '%s' cannot be loaded: %s", k->domain,
                 local && local->message ? local->message : "unknown error");
        qs_error_clear(&local);
        return;
    }
    for (size_t i = 0; i < md_tree_root_count(k->tree); i++)
        tree_collect(k->tree, md_tree_root(k->tree, i), &v, &n, &cap);
    k->snaps = qs_xcalloc(n + 1, sizeof(*k->snaps));
    for (size_t i = 0; i < n; i++) {
        struct md_snapshot *s = md_store_snapshot_get(k->e->store, k->domain, v[i]->name, &local);
        if (!s) {
            item_add(k->r, "metadata-unreadable", v[i]->name, NULL, NULL, "snapshot '%s' cannot be read: %s",
                     v[i]->name, local && local->message ? local->message : "unknown error");
            qs_error_clear(&local);
            continue;
        }
        k->snaps[k->nsnaps++] = s;
    }
    free(v);
}

/* The definition's disks, and what QEMU (running) or qemu-img (off) says of their images. */
static int load_disks(struct check *k, struct qs_error **err)
{
    struct qmp_reply *r = NULL;
    const struct qmp_value *list = NULL;
    struct vm_block *blocks = NULL;
    size_t nd = md_domain_disk_count(k->dom), nb = 0;
    int ret = -1;

    if (k->c) {
        if (qmp_client_execute(k->c, "query-block", NULL, &r, err) < 0 || vm_blocks(k->c, &blocks, &nb, err) < 0)
            goto out;
        list = qmp_reply_value(r);
    }
    k->disks = qs_xcalloc(nd + 1, sizeof(*k->disks));
    for (size_t i = 0; i < nd; i++) {
        struct md_domain_disk dd;
        struct cdisk *d;
        struct qs_error *local = NULL;
        if (md_domain_disk_get(k->dom, i, &dd, err) < 0)
            goto out;
        if (!dd.target || (dd.device && strcmp(dd.device, "disk") != 0))
            continue;
        d = &k->disks[k->ndisks++];
        d->target = qs_xstrdup(dd.target);
        d->source = dd.source ? qs_xstrdup(dd.source) : NULL;
        d->source_canon = dd.source ? canon(dd.source) : NULL;
        if (k->c) {
            const struct vm_block *b = disk_block_device(blocks, nb, k->dom, &dd, &local);
            const struct qmp_value *ins = b ? live_by_node(list, b->node) : NULL, *img;
            const char *node, *file;
            qs_error_free(local);
            local = NULL;
            if (!ins) {
                item_add(k->r, "disk-not-attached", NULL, d->target,
                         qs_xstrdup("attach it to QEMU, or remove it from the definition"),
                         "disk '%s': not attached to the running QEMU", d->target);
                continue;
            }
            node = qmp_value_get_string(ins, "node-name");
            file = qmp_value_get_string(ins, "file");
            d->live_node = qs_xstrdup(node ? node : "");
            d->live_file = qs_xstrdup(file ? file : "");
            img = qmp_value_get(ins, "image");
            for (size_t depth = 0; img && depth < CHECK_CHAIN_MAX; depth++) {
                chain_add(d, img, md_domain_cwd(k->dom));
                img = qmp_value_get(img, "backing-image");
            }
            d->known = d->nchain > 0;
        } else {
            if (!d->source) {
                item_add(k->r, "image-missing", NULL, d->target, NULL, "disk '%s': the definition names no source",
                         d->target);
                continue;
            }
            if (!path_exists(d->source)) {
                item_add(k->r, "image-missing", NULL, d->target,
                         qs_xstrdup("restore the image, or point the definition at the right one"),
                         "disk '%s': image '%s' missing", d->target, d->source);
                continue;
            }
            if (disk_read_offline(d, &local) < 0) {
                item_add(k->r, "image-unreadable", NULL, d->target, NULL, "disk '%s': image '%s' cannot be read: %s",
                         d->target, d->source, local && local->message ? local->message : "unknown error");
                qs_error_clear(&local);
            }
        }
    }
    ret = 0;
out:
    vm_blocks_free(blocks, nb);
    qmp_reply_free(r);
    return ret;
}

/* QEMU runs: each disk's active image against the definition. When the definition's image is in the live
 * chain and every image above it is a snapshot's overlay, the definition is pointed at the live top. */
static void check_definition(struct check *k)
{
    bool changed = false;

    for (size_t i = 0; k->c && i < k->ndisks; i++) {
        struct cdisk *d = &k->disks[i];
        struct engine_check_item *it;
        struct qs_error *local = NULL;
        size_t pos = 0;
        bool known = false;
        if (!d->known || qs_str_has_prefix(d->live_file, "json:") || !d->source_canon ||
            strcmp(d->chain[0].file, d->source_canon) == 0)
            continue;
        for (size_t j = 1; j < d->nchain && !known; j++)
            if (strcmp(d->chain[j].file, d->source_canon) == 0) {
                known = true;
                pos = j;
            }
        for (size_t j = 0; known && j < pos; j++)
            if (!overlay_owner(k, d->chain[j].file))
                known = false;
        it = item_add(k->r, "definition-stale", NULL, d->target,
                      known ? qs_asprintf("point the definition at '%s' (snapshot-check --repair)", d->chain[0].file)
                            : qs_xstrdup("find out which image is right: redefine the domain (define) or restart "
                                         "QEMU on the defined image"),
                      "disk '%s': QEMU runs on '%s', the definition names '%s'", d->target, d->chain[0].file,
                      d->source);
        if (!known || !k->repair)
            continue;
        if (md_domain_set_disk_source(k->dom, d->target, d->chain[0].file, &local) < 0 ||
            md_domain_set_disk_driver_type(k->dom, d->target, d->chain[0].format, &local) < 0 ||
            (d->live_node && *d->live_node &&
             md_domain_set_disk_node_name(k->dom, d->target, d->live_node, &local) < 0)) {
            item_repair_failed(it, &local);
            continue;
        }
        it->repaired = true;
        changed = true;
    }
    if (changed) {
        struct qs_error *local = NULL;
        if (md_store_domain_put(k->e->store, k->lock, k->dom, &local) < 0) {
            for (size_t i = 0; i < k->r->n; i++)
                if (k->r->items[i].repaired && strcmp(k->r->items[i].kind, "definition-stale") == 0) {
                    struct qs_error *copy = NULL;
                    qs_error_set(&copy, local->code, "%s", local->message);
                    k->r->items[i].repaired = false;
                    item_repair_failed(&k->r->items[i], &copy);
                }
            qs_error_clear(&local);
        }
    }
}

static const struct ctag *image_tag(const struct cimage *im, const char *name)
{
    for (size_t i = 0; i < im->ntags; i++)
        if (strcmp(im->tags[i].name, name) == 0)
            return &im->tags[i];
    return NULL;
}

/* Image FILE (canonical) outside every disk's chain, read with qemu-img (cached); NULL when unreadable. */
static const struct cimage *image_aside(struct check *k, const char *file)
{
    char *argv[] = {"qemu-img", "info", "-U", "--output=json", "--", (char *)file, NULL};
    struct qs_proc_result res = {0};
    struct qmp_reply *r = NULL;
    const struct cimage *im = NULL;

    for (size_t i = 0; i < k->naside; i++)
        if (strcmp(k->aside[i].file, file) == 0)
            return &k->aside[i];
    if (qs_proc_run(argv, CHECK_IMG_TIMEOUT_MS, 0, &res, NULL) == 0 && res.status == 0 &&
        (r = qmp_reply_parse(res.out ? res.out : "", NULL))) {
        k->aside = qs_xrealloc(k->aside, (k->naside + 1) * sizeof(*k->aside));
        memset(&k->aside[k->naside], 0, sizeof(*k->aside));
        image_from_value(qmp_reply_value(r), &k->aside[k->naside], NULL);
        im = &k->aside[k->naside++];
    }
    qmp_reply_free(r);
    qs_proc_result_release(&res);
    return im;
}

/* The image of disk D where snapshot S's tag belongs: the one S's <domain> named - in D's chain (an external
 * snapshot taken later put overlays above it), or beside it (a revert left it) - else the active image. */
static const struct cimage *tag_image(struct check *k, const struct cdisk *d, const struct md_snapshot *s)
{
    char *src = files_snapshot_image(s, d->target);
    const struct cimage *im = NULL;

    for (size_t j = 0; src && j < d->nchain && !im; j++)
        if (strcmp(d->chain[j].file, src) == 0)
            im = &d->chain[j];
    if (!im && src && path_exists(src))
        im = image_aside(k, src);
    free(src);
    return im ? im : &d->chain[0];
}

/* A tag in an image other images are built on or an external snapshot froze: it stays usable, but a revert
 * to it waits for that snapshot's delete, and while QEMU reads the image (a backing file of its disk) so
 * does a delete. Said once, as a note. */
static void note_frozen_tag(struct check *k, const struct cdisk *d, const struct md_snapshot *s,
                            const struct cimage *im)
{
    bool backing = false;
    struct engine_check_item *it;
    const char *by = NULL;
    char *wait;

    for (size_t i = 0; i < k->nsnaps && !by; i++) {
        char *f = md_snapshot_is_external(k->snaps[i]) ? files_snapshot_image(k->snaps[i], d->target) : NULL;
        if (f && strcmp(f, im->file) == 0)
            by = k->snaps[i]->name;
        free(f);
    }
    /* the frozen image of an external snapshot is its state even when nothing is built on it any more */
    if (!by && (!k->needed || !files_has_child(k->needed, im->file)))
        return;
    for (size_t j = 1; j < d->nchain && !backing; j++)
        backing = &d->chain[j] == im;
    wait = by ? qs_asprintf("snapshot '%s' deleted first (its changes are then merged into the image)", by)
              : qs_xstrdup("the snapshots inside the images built on it deleted first");
    it = item_add(k->r, "tag-below-overlay", s->name, d->target, NULL,
                  "snapshot '%s': disk '%s': its tag is in image '%s', on which later images are built: reverting "
                  "to it needs %s%s",
                  s->name, d->target, im->file, wait,
                  backing && k->c ? "; deleting it, the domain shut off (QEMU only reads that image)" : "");
    it->note = true;
    free(wait);
}

/* An internal snapshot: its tag on each of its disks. With every disk lacking it, nothing can be reverted
 * or lost: the metadata is dropped (children re-parented, as snapshot-delete --metadata). */
static bool check_internal(struct check *k, const struct md_snapshot *s)
{
    size_t want = 0, missing = 0, first = k->r->n;
    bool unsure = false; /* a disk whose images could not be read, or that the definition lost */
    bool dropped = false;

    for (size_t i = 0; i < s->ndisks; i++) {
        const struct md_snapshot_disk *sd = &s->disks[i];
        const struct cdisk *d;
        const struct cimage *im;
        if (sd->snapshot != MD_LOCATION_INTERNAL)
            continue;
        want++;
        if (!(d = disk_find(k, sd->name))) {
            missing++;
            unsure = true;
            item_add(k->r, "disk-unknown", s->name, sd->name, NULL,
                     "snapshot '%s': disk '%s' is no longer in the domain definition", s->name, sd->name);
            continue;
        }
        if (!d->known) {
            unsure = true; /* reported with the disk; unknown is not missing */
            continue;
        }
        im = tag_image(k, d, s);
        if (image_tag(im, s->name)) {
            note_frozen_tag(k, d, s, im);
            continue;
        }
        missing++;
        item_add(k->r, "tag-missing", s->name, sd->name, NULL, "snapshot '%s': disk '%s': tag '%s' missing from %s",
                 s->name, sd->name, s->name, im->file);
    }
    if (missing == 0)
        return false;
    if (missing == want && !unsure) {
        /* no disk has it: the metadata describes nothing; dropping it loses nothing */
        struct qs_error *local = NULL;
        bool done = false;
        for (size_t i = first; i < k->r->n; i++)
            k->r->items[i].fix = qs_xstrdup("snapshot-delete --metadata, or snapshot-check --repair");
        if (k->repair) {
            if (md_store_snapshot_delete(k->e->store, k->lock, k->domain, s->name, 0, &local) == 0)
                done = dropped = true;
            for (size_t i = first; i < k->r->n; i++) {
                if (done) {
                    k->r->items[i].repaired = true;
                } else {
                    struct qs_error *copy = NULL;
                    qs_error_set(&copy, local->code, "%s", local->message);
                    item_repair_failed(&k->r->items[i], &copy);
                }
            }
            qs_error_clear(&local);
        }
    } else {
        for (size_t i = first; i < k->r->n; i++)
            k->r->items[i].fix = qs_asprintf(
                "the snapshot cannot be reverted: snapshot-delete --metadata, then qemu-img snapshot -d '%s' on "
                "the disks that still have it (VM off)",
                s->name);
    }
    return dropped;
}

/* "qcow2" when FILE starts with qcow2's magic, else "raw" (what qemu-img rebase -F needs). */
static const char *format_guess(const char *file)
{
    unsigned char magic[4] = {0};
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    bool qcow2 = false;

    if (fd >= 0) {
        qcow2 = pread(fd, magic, sizeof(magic), 0) == (ssize_t)sizeof(magic) && memcmp(magic, "QFI\xfb", 4) == 0;
        close(fd);
    }
    return qcow2 ? "qcow2" : "raw";
}

/* An external snapshot: its overlays, the images they sit on, its memory file. */
static void check_external(struct check *k, const struct md_snapshot *s)
{
    for (size_t i = 0; i < s->ndisks; i++) {
        const struct md_snapshot_disk *sd = &s->disks[i];
        const struct cdisk *d;
        char *frozen, *backing = NULL, *cb = NULL;
        if (sd->snapshot != MD_LOCATION_EXTERNAL || !sd->source)
            continue;
        frozen = files_snapshot_image(s, sd->name);
        /* the domain runs on the image itself (a revert to an internal snapshot inside it did so before
         * qsnap refused that): every write changes the snapshot's state */
        if (frozen && (d = disk_find(k, sd->name)) && d->known && d->nchain && strcmp(d->chain[0].file, frozen) == 0)
            item_add(k->r, "frozen-written", s->name, sd->name,
                     qs_xstrdup("take a disk-only snapshot (snapshot-create-as --disk-only) so that writes go to "
                                "an overlay; what was written since is in this snapshot's state already"),
                     "snapshot '%s': disk '%s' runs on image '%s', which the snapshot froze: what the domain "
                     "writes changes the snapshot",
                     s->name, sd->name, frozen);
        if (frozen && !path_exists(frozen))
            item_add(k->r, "frozen-missing", s->name, sd->name,
                     qs_xstrdup("restore the image from a backup; without it the snapshot and its overlays are "
                                "unusable"),
                     "snapshot '%s': disk '%s': image '%s' the snapshot froze is missing", s->name, sd->name,
                     frozen);
        /* an overlay that is gone is fine: the snapshot's state is its frozen image, and a revert discards
         * the overlay the state it left ran on, unless something still needs it (which then says so) */
        if (path_exists(sd->source) && frozen && img_qcow2_backing(sd->source, &backing, NULL) == 0) {
            cb = backing ? canon(backing) : NULL;
            if (!cb || strcmp(cb, frozen) != 0)
                item_add(k->r, "overlay-backing", s->name, sd->name,
                         qs_asprintf("if the overlay really holds this snapshot's changes: qemu-img rebase -u -F "
                                     "%s -b '%s' '%s'",
                                     format_guess(frozen), frozen, sd->source),
                         "snapshot '%s': disk '%s': overlay '%s' is backed by '%s', not by the snapshot's image "
                         "'%s'",
                         s->name, sd->name, sd->source, cb ? cb : "nothing", frozen);
        }
        free(cb);
        free(backing);
        free(frozen);
    }
    if (s->memory == MD_LOCATION_EXTERNAL && s->memory_file && !path_exists(s->memory_file))
        item_add(k->r, "memory-missing", s->name, NULL,
                 qs_xstrdup("restore the file from a backup; snapshot-delete --metadata if the snapshot is not "
                            "needed"),
                 "snapshot '%s': memory file '%s' missing", s->name, s->memory_file);
}

static bool snapshot_named(const struct check *k, const char *name)
{
    for (size_t i = 0; i < k->nsnaps; i++)
        if (strcmp(k->snaps[i]->name, name) == 0)
            return true;
    return false;
}

/* Whether some image of a qcow2 disk has another snapshot whose id is NAME (QEMU would load that one). */
static bool tag_id_clash(const struct check *k, const char *name)
{
    for (size_t i = 0; i < k->ndisks; i++)
        for (size_t j = 0; k->disks[i].known && j < k->disks[i].chain[0].ntags; j++) {
            const struct ctag *t = &k->disks[i].chain[0].tags[j];
            if (strcmp(t->id, name) == 0 && strcmp(t->name, name) != 0)
                return true;
        }
    return false;
}

/* Metadata for TAG, found on every qcow2 disk, as a redefinition would record it. */
static int adopt(struct check *k, const char *tag, int64_t date, bool memory, struct qs_error **err)
{
    struct md_snapshot *s = md_snapshot_new();
    struct md_tree *t = NULL;
    const struct md_entry *cur;
    int ret = -1;

    s->name = qs_xstrdup(tag);
    s->creation_time = date;
    s->state = memory ? MD_STATE_RUNNING : MD_STATE_SHUTOFF;
    s->memory = memory ? MD_LOCATION_INTERNAL : MD_LOCATION_NO;
    for (size_t i = 0; i < k->ndisks; i++) {
        const struct cdisk *d = &k->disks[i];
        struct md_snapshot_disk *sd = md_snapshot_disk_add(s);
        sd->name = qs_xstrdup(d->target);
        sd->snapshot = d->known && image_tag(&d->chain[0], tag) ? MD_LOCATION_INTERNAL : MD_LOCATION_NO;
    }
    if (!(s->domain_xml = md_domain_format_copy(k->dom, err)) ||
        !(t = md_tree_load(k->e->store, k->domain, k->lock, err)))
        goto out;
    cur = md_tree_current(t);
    s->parent = cur ? qs_xstrdup(cur->name) : NULL;
    ret = md_store_snapshot_put(k->e->store, k->lock, k->domain, s, MD_PUT_NO_REPLACE, err);
out:
    md_tree_free(t);
    md_snapshot_free(s);
    return ret;
}

/* Tags in the active images that no snapshot's metadata names. */
static void check_untracked(struct check *k)
{
    size_t nq = 0;
    char **seen = NULL;
    size_t nseen = 0;

    for (size_t i = 0; i < k->ndisks; i++)
        if (k->disks[i].known && strcmp(k->disks[i].chain[0].format, "qcow2") == 0)
            nq++;
    for (size_t i = 0; i < k->ndisks; i++) {
        const struct cdisk *d = &k->disks[i];
        if (!d->known)
            continue;
        for (size_t j = 0; j < d->chain[0].ntags; j++) {
            const char *tag = d->chain[0].tags[j].name;
            const struct ctag *mem = NULL, *first = NULL;
            struct qs_buf have, lack;
            size_t on = 0;
            bool dup = false;
            for (size_t x = 0; x < nseen && !dup; x++)
                dup = strcmp(seen[x], tag) == 0;
            if (dup || snapshot_named(k, tag) || (k->tree && md_tree_find(k->tree, tag)))
                continue;
            seen = qs_xrealloc(seen, (nseen + 1) * sizeof(*seen));
            seen[nseen++] = qs_xstrdup(tag);
            qs_buf_init(&have, 0);
            qs_buf_init(&lack, 0);
            for (size_t x = 0; x < k->ndisks; x++) {
                const struct cdisk *o = &k->disks[x];
                const struct ctag *t;
                if (!o->known || strcmp(o->chain[0].format, "qcow2") != 0)
                    continue;
                if ((t = image_tag(&o->chain[0], tag))) {
                    on++;
                    if (!first)
                        first = t;
                    if (t->vmsize > 0)
                        mem = t;
                    qs_buf_addf(&have, "%s'%s'", have.len ? ", " : "", o->target);
                } else {
                    qs_buf_addf(&lack, "%s'%s'", lack.len ? ", " : "", o->target);
                }
            }
            if (on == nq) {
                struct qs_error *local = NULL;
                const struct md_entry *cur = k->tree ? md_tree_current(k->tree) : NULL;
                bool safe = qs_name_check(tag, "snapshot", NULL) == 0 && !tag_id_clash(k, tag);
                struct engine_check_item *it = item_add(
                    k->r, "untracked", tag, NULL,
                    safe ? (cur ? qs_asprintf("snapshot-check --repair adopts it as snapshot '%s' (state %s, parent: "
                                              "the current snapshot '%s')",
                                              tag, mem ? "running" : "shutoff", cur->name)
                                : qs_asprintf("snapshot-check --repair adopts it as snapshot '%s' (state %s, no "
                                              "parent: there is no current snapshot)",
                                              tag, mem ? "running" : "shutoff"))
                         : qs_asprintf("its name cannot be a snapshot's: qemu-img snapshot -d '%s' on every disk "
                                       "(VM off) if it is not needed",
                                       tag),
                    "tag '%s' on every disk (%s) has no snapshot metadata", tag, have.data ? have.data : "");
                if (safe && k->repair) {
                    if (adopt(k, tag, mem ? mem->date : first->date, mem != NULL, &local) < 0)
                        item_repair_failed(it, &local);
                    else
                        it->repaired = true;
                }
            } else {
                item_add(k->r, "untracked-partial", tag, NULL,
                         qs_asprintf("no snapshot can use it: qemu-img snapshot -d '%s' on %s (VM off) if it is not "
                                     "needed",
                                     tag, have.data ? have.data : ""),
                         "tag '%s' on disk %s has no snapshot metadata and is missing from %s", tag,
                         have.data ? have.data : "", lack.data ? lack.data : "");
            }
            qs_buf_release(&have);
            qs_buf_release(&lack);
        }
    }
    for (size_t i = 0; i < nseen; i++)
        free(seen[i]);
    free(seen);
}

static void strv_push_unique(char ***v, size_t *n, char *s /* taken */)
{
    for (size_t i = 0; i < *n; i++)
        if (strcmp((*v)[i], s) == 0) {
            free(s);
            return;
        }
    *v = qs_xrealloc(*v, (*n + 2) * sizeof(char *));
    (*v)[(*n)++] = s;
    (*v)[*n] = NULL;
}

static bool strv_contains(char **v, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i], s) == 0)
            return true;
    return false;
}

/* Files named as libvirt names overlays (IMAGE's extension replaced by ".NAME") beside an image the domain
 * uses, qcow2 and backed by one of its images, that nothing refers to. Reported only: they hold data. */
static void check_overlay_files(struct check *k)
{
    char **refs = NULL, **images = NULL, **reported = NULL;
    size_t nrefs = 0, nimages = 0, nrep = 0;

    for (size_t i = 0; i < k->ndisks; i++) {
        const struct cdisk *d = &k->disks[i];
        if (d->source_canon) {
            strv_push_unique(&refs, &nrefs, qs_xstrdup(d->source_canon));
            strv_push_unique(&images, &nimages, qs_xstrdup(d->source_canon));
        }
        for (size_t j = 0; j < d->nchain; j++) {
            strv_push_unique(&refs, &nrefs, qs_xstrdup(d->chain[j].file));
            strv_push_unique(&images, &nimages, qs_xstrdup(d->chain[j].file));
        }
    }
    /* every file the state needs (the chains of the disks and of every snapshot's images) */
    for (size_t i = 0; k->needed && k->needed[i]; i++)
        strv_push_unique(&refs, &nrefs, qs_xstrdup(k->needed[i]));
    for (size_t i = 0; i < k->nsnaps; i++) {
        const struct md_snapshot *s = k->snaps[i];
        if (s->memory_file)
            strv_push_unique(&refs, &nrefs, canon(s->memory_file));
        for (size_t j = 0; j < s->ndisks; j++) {
            char *src = files_snapshot_image(s, s->disks[j].name);
            if (s->disks[j].source)
                strv_push_unique(&refs, &nrefs, canon(s->disks[j].source));
            if (src) {
                strv_push_unique(&refs, &nrefs, qs_xstrdup(src));
                strv_push_unique(&images, &nimages, src);
            }
        }
    }
    for (size_t i = 0; i < nimages; i++) {
        const char *slash = strrchr(images[i], '/'), *base, *dot;
        char *dir, *stem;
        DIR *d;
        struct dirent *de;
        if (!slash)
            continue;
        base = slash + 1;
        dot = strrchr(base, '.');
        dir = slash == images[i] ? qs_xstrdup("/") : qs_xstrndup(images[i], (size_t)(slash - images[i]));
        stem = dot ? qs_xstrndup(base, (size_t)(dot - base)) : qs_xstrdup(base);
        if ((d = opendir(dir))) {
            while ((de = readdir(d))) {
                size_t sl = strlen(stem);
                char *path, *cpath, *backing = NULL, *cb = NULL;
                struct stat st;
                if (strncmp(de->d_name, stem, sl) != 0 || de->d_name[sl] != '.' || !de->d_name[sl + 1] ||
                    strcmp(de->d_name, base) == 0)
                    continue;
                path = qs_asprintf("%s/%s", strcmp(dir, "/") == 0 ? "" : dir, de->d_name);
                cpath = canon(path);
                if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && !strv_contains(refs, nrefs, cpath) &&
                    !strv_contains(reported, nrep, cpath) && img_qcow2_backing(path, &backing, NULL) == 0 && backing &&
                    strv_contains(images, nimages, (cb = canon(backing)))) {
                    const char *target = NULL;
                    for (size_t x = 0; x < k->ndisks && !target; x++)
                        for (size_t y = 0; y < k->disks[x].nchain && !target; y++)
                            if (strcmp(k->disks[x].chain[y].file, cb) == 0)
                                target = k->disks[x].target;
                    item_add(k->r, "unreferenced-overlay", NULL, target,
                             qs_xstrdup("nothing refers to it: remove it by hand if its data are not needed"),
                             "file '%s' is an overlay of '%s' that no snapshot or definition refers to", cpath, cb);
                    strv_push_unique(&reported, &nrep, qs_xstrdup(cpath));
                }
                free(cb);
                free(backing);
                free(cpath);
                free(path);
            }
            closedir(d);
        }
        free(dir);
        free(stem);
    }
    qs_strv_free(refs);
    qs_strv_free(images);
    qs_strv_free(reported);
}

/* No current snapshot, while every disk's active image is the overlay of one external snapshot. */
static void check_current(struct check *k)
{
    const struct md_snapshot *owner = NULL;
    bool all = k->ndisks > 0;

    if (!k->tree || md_tree_current(k->tree) || k->nsnaps == 0)
        return;
    for (size_t i = 0; i < k->ndisks && all; i++) {
        const struct cdisk *d = &k->disks[i];
        const char *top = d->known ? d->chain[0].file : d->source_canon;
        const struct md_snapshot *o = top ? overlay_owner(k, top) : NULL;
        if (!o || (owner && o != owner))
            all = false;
        owner = o;
    }
    if (!all || !owner)
        return;
    item_add(k->r, "no-current", owner->name, NULL, qs_asprintf("snapshot-current %s %s", k->domain, owner->name),
             "no current snapshot, but the domain runs on the overlays of snapshot '%s'", owner->name);
}

int engine_snapshot_check(struct engine *e, const char *domain, unsigned flags, struct engine_check_report **out,
                          struct qs_error **err)
{
    struct check k = {.e = e, .domain = domain, .repair = flags & ENGINE_CHECK_REPAIR};
    bool dropped = false;
    int ret = -1;

    *out = NULL;
    if (flags & ~(unsigned)ENGINE_CHECK_REPAIR) {
        qs_error_set(err, QS_ERR_UNSUPPORTED, "unsupported check flags 0x%x", flags & ~(unsigned)ENGINE_CHECK_REPAIR);
        return -1;
    }
    k.r = qs_xcalloc(1, sizeof(*k.r));
    if (!(k.dom = engine_domain_load(e, domain, err)) || (k.repair && !(k.lock = engine_domain_lock(e, domain, err))))
        goto out;
    if (engine_domain_connect(e, k.dom, &k.c, err) < 0)
        goto out;
    check_temporaries(&k);
    load_metadata(&k);
    if (load_disks(&k, err) < 0)
        goto out;
    if (k.tree) {
        /* unreadable images leave it unknown: nothing is then said on what they need */
        struct qs_error *local = NULL;
        if (files_needed(e, domain, k.lock, k.dom, NULL, &k.needed, &local) < 0)
            qs_error_clear(&local);
    }
    check_definition(&k);
    for (size_t i = 0; i < k.nsnaps; i++) {
        if (md_snapshot_is_external(k.snaps[i]))
            check_external(&k, k.snaps[i]);
        else
            dropped |= check_internal(&k, k.snaps[i]);
    }
    if (dropped) {
        /* the tree changed under us: parents and the current snapshot may have moved */
        struct qs_error *local = NULL;
        md_tree_free(k.tree);
        if (!(k.tree = md_tree_load(e->store, domain, k.lock, &local)))
            qs_error_clear(&local);
    }
    if (k.tree) {
        /* a tree that could not be loaded cannot say which tags are tracked */
        check_untracked(&k);
        check_current(&k);
        /* without the snapshots' files every overlay would look unreferenced */
        check_overlay_files(&k);
    }
    *out = k.r;
    k.r = NULL;
    ret = 0;
out:
    engine_check_report_free(k.r);
    for (size_t i = 0; i < k.ndisks; i++)
        cdisk_release(&k.disks[i]);
    free(k.disks);
    for (size_t i = 0; i < k.naside; i++)
        cimage_release(&k.aside[i]);
    free(k.aside);
    qs_strv_free(k.needed);
    for (size_t i = 0; i < k.nsnaps; i++)
        md_snapshot_free(k.snaps[i]);
    free(k.snaps);
    qmp_client_free(k.c);
    md_tree_free(k.tree);
    md_lock_free(k.lock);
    md_domain_free(k.dom);
    return ret;
}
