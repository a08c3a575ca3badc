/* snapshot.c: snapshot operations - list, show, create, revert, delete - over QMP, qemu-img and metadata. */
#include "engine_priv.h"
#include "clone.h"
#include "external.h"
#include "intent.h"
#include "internal.h"
#include "disks.h"
#include "nvram.h"
#include "files.h"
#include "img.h"
#include "qargv.h"
#include "qs_util.h"
#include "vm.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------------------------------------ */
/* Summaries: views into a loaded tree, which the list owns. */

struct engine_snapshot {
    const struct md_tree *tree;
    const struct md_entry *entry;
    bool pause_known; /* engine_snapshot_lookup only: the listing reads no <cookie> */
    int64_t pause_us;
};

struct engine_snapshot_list {
    struct md_tree *tree;
    struct engine_snapshot *items;
    size_t n;
    void (*release)(void *owner); /* engine_snapshot_list_wrap: the tree is OWNER's, not the list's */
    void *owner;
};

const char *engine_snapshot_name(const struct engine_snapshot *s) { return s->entry->name; }
const char *engine_snapshot_parent(const struct engine_snapshot *s) { return s->entry->parent; }
const char *engine_snapshot_description(const struct engine_snapshot *s) { return s->entry->description; }
int64_t engine_snapshot_creation_time(const struct engine_snapshot *s) { return s->entry->creation_time; }
bool engine_snapshot_is_current(const struct engine_snapshot *s) { return s->entry->current; }
size_t engine_snapshot_children(const struct engine_snapshot *s) { return s->entry->nchildren; }
int64_t engine_snapshot_pause_us(const struct engine_snapshot *s) { return s->pause_known ? s->pause_us : -1; }

const char *engine_snapshot_state(const struct engine_snapshot *s)
{
    const char *st = md_state_to_string(s->entry->state);
    return st ? st : "nostate";
}

const char *engine_snapshot_location(const struct engine_snapshot *s)
{
    return s->entry->external ? "external" : "internal";
}

size_t engine_snapshot_descendants(const struct engine_snapshot *s)
{
    return md_tree_descendants(s->tree, s->entry);
}

size_t engine_snapshot_list_count(const struct engine_snapshot_list *l) { return l->n; }

const struct engine_snapshot *engine_snapshot_list_at(const struct engine_snapshot_list *l, size_t i)
{
    return i < l->n ? &l->items[i] : NULL;
}

void engine_snapshot_list_free(struct engine_snapshot_list *l)
{
    if (!l)
        return;
    free(l->items);
    if (l->release)
        l->release(l->owner);
    else
        md_tree_free(l->tree);
    free(l);
}

/* A read-only command finds an interrupted operation: recovered now when its lock is free (one try, errors
 * left for the next mutating command to report); when another qsnap holds the lock it is under way. */
static void recover_if_free(struct engine *e, const char *domain)
{
    struct md_lock *lock;
    struct qs_error *ignore = NULL;
    char *text = NULL;

    if (e->recovering || md_store_intent_get(e->store, domain, &text, NULL) < 0 || !text)
        return;
    free(text);
    if (!(lock = md_lock_acquire(e->store, domain, 0, NULL)))
        return;
    intent_recover(e, domain, lock, &ignore);
    qs_error_free(ignore);
    md_lock_free(lock);
}

int engine_domain_pending(struct engine *e, const char *name, char **op, char ***snapshots, size_t *n,
                          long *pid, int64_t *started, struct qs_error **err)
{
    struct intent it = {0};
    int r;

    if (op)
        *op = NULL;
    if (snapshots)
        *snapshots = NULL;
    if (n)
        *n = 0;
    if (engine_domain_lookup(e, name, err) < 0)
        return -1;
    recover_if_free(e, name);
    if ((r = intent_read(e, name, &it, err)) <= 0)
        return r;
    if (op)
        *op = qs_xstrdup(it.op);
    if (snapshots) {
        if (it.names) {
            *snapshots = it.names;
            it.names = NULL;
        } else {
            *snapshots = qs_xcalloc(2, sizeof(char *));
            (*snapshots)[0] = qs_xstrdup(it.snapshot ? it.snapshot : "");
        }
        if (n)
            *n = qs_strv_len(*snapshots);
    }
    if (pid)
        *pid = it.pid;
    if (started)
        *started = it.started / 1000;
    intent_release(&it);
    return 1;
}

/* Snapshots from which looking one up reads its index record and file rather than the whole index. */
#define PEEK_MIN 512

/* The tree, or with ONLY a tree of snapshot ONLY alone when that is quicker to get (md_tree_peek). */
static struct md_tree *tree_load_for(struct engine *e, const char *domain, const struct md_lock *lock,
                                     const char *only, struct qs_error **err)
{
    struct md_tree *t;

    /* that the domain exists is all a tree needs of it: a stat, not a parse of its XML */
    if (engine_domain_exists(e, domain, err) < 0)
        return NULL;
    if (!lock)
        recover_if_free(e, domain);
    if (only && !lock && (t = md_tree_peek(e->store, domain, only, PEEK_MIN)))
        return t;
    return md_tree_load(e->store, domain, lock, err);
}

static struct md_tree *tree_load(struct engine *e, const char *domain, const struct md_lock *lock,
                                 struct qs_error **err)
{
    return tree_load_for(e, domain, lock, NULL, err);
}

static void snapshot_not_found(const char *name, struct qs_error **err)
{
    qs_error_set(err, QS_ERR_NOTFOUND, "Domain snapshot not found: no domain snapshot with matching name '%s'",
                 name);
}

static const struct md_entry *tree_find(const struct md_tree *t, const char *name, struct qs_error **err)
{
    const struct md_entry *en = md_tree_find(t, name);
    if (!en)
        snapshot_not_found(name, err);
    return en;
}

unsigned list_flags_to_md(unsigned f)
{
    static const struct {
        unsigned engine, md;
    } map[] = {
        {ENGINE_LIST_ROOTS, MD_LIST_ROOTS},         {ENGINE_LIST_DESCENDANTS, MD_LIST_DESCENDANTS},
        {ENGINE_LIST_LEAVES, MD_LIST_LEAVES},       {ENGINE_LIST_NO_LEAVES, MD_LIST_NO_LEAVES},
        {ENGINE_LIST_INACTIVE, MD_LIST_INACTIVE},   {ENGINE_LIST_ACTIVE, MD_LIST_ACTIVE},
        {ENGINE_LIST_DISK_ONLY, MD_LIST_DISK_ONLY}, {ENGINE_LIST_INTERNAL, MD_LIST_INTERNAL},
        {ENGINE_LIST_EXTERNAL, MD_LIST_EXTERNAL},   {ENGINE_LIST_METADATA, MD_LIST_METADATA},
        {ENGINE_LIST_NO_METADATA, MD_LIST_NO_METADATA}, {ENGINE_LIST_TOPOLOGICAL, MD_LIST_TOPOLOGICAL},
        {ENGINE_LIST_TREE, MD_LIST_TREE},
    };
    unsigned out = 0;
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (f & map[i].engine)
            out |= map[i].md;
    return out;
}

int engine_snapshot_list(struct engine *e, const char *domain, unsigned flags, const char *from,
                         struct engine_snapshot_list **out, struct qs_error **err)
{
    struct engine_snapshot_list *l = qs_xcalloc(1, sizeof(*l));
    const struct md_entry **entries = NULL;
    size_t n = 0;
    int ret = -1;

    if (!(l->tree = tree_load(e, domain, NULL, err)))
        goto out;
    if (from && !tree_find(l->tree, from, err))
        goto out;
    if (md_tree_list(l->tree, from, list_flags_to_md(flags), &entries, &n, err) < 0)
        goto out;
    l->items = qs_xcalloc(n + 1, sizeof(*l->items));
    for (size_t i = 0; i < n; i++)
        l->items[i] = (struct engine_snapshot){l->tree, entries[i], false, 0};
    l->n = n;
    *out = l;
    l = NULL;
    ret = 0;
out:
    free(entries);
    engine_snapshot_list_free(l);
    return ret;
}

int engine_snapshot_lookup(struct engine *e, const char *domain, const char *name,
                           struct engine_snapshot_list **out, struct qs_error **err)
{
    struct engine_snapshot_list *l = qs_xcalloc(1, sizeof(*l));
    const struct md_entry *en;

    if (!(l->tree = tree_load_for(e, domain, NULL, name, err)) || !(en = tree_find(l->tree, name, err))) {
        engine_snapshot_list_free(l);
        return -1;
    }
    l->items = qs_xcalloc(1, sizeof(*l->items));
    l->items[0] = (struct engine_snapshot){l->tree, en, false, 0};
    if (en->external) {
        /* the pause of a --live snapshot is in its <cookie>, which the tree does not keep; a file that cannot
         * be read now simply shows none */
        struct qs_error *ignore = NULL;
        struct md_snapshot *full = md_store_snapshot_get(e->store, domain, name, &ignore);
        char *v = NULL, *end = NULL;
        long long us = -1;
        if (full && md_snapshot_cookie_get(full, EXT_COOKIE_PAUSE, &v, &ignore) == 0 && v && *v >= '0' &&
            *v <= '9') {
            errno = 0;
            us = strtoll(v, &end, 10);
            if (errno == 0 && *end == '\0' && us >= 0) {
                l->items[0].pause_known = true;
                l->items[0].pause_us = us;
            }
        }
        free(v);
        md_snapshot_free(full);
        qs_error_free(ignore);
    }
    l->n = 1;
    *out = l;
    return 0;
}

bool engine_snapshot_file_present(struct engine *e, const char *domain, const char *name)
{
    return md_store_snapshot_file_present(e->store, domain, name);
}

int engine_snapshot_current_name(struct engine *e, const char *domain, char **name, struct qs_error **err)
{
    struct md_tree *t = tree_load(e, domain, NULL, err);
    const struct md_entry *cur;

    if (!t)
        return -1;
    cur = md_tree_current(t);
    *name = cur ? qs_xstrdup(cur->name) : NULL;
    md_tree_free(t);
    return 0;
}

int engine_snapshot_set_current(struct engine *e, const char *domain, const char *name, struct qs_error **err)
{
    struct md_lock *lock = NULL;
    struct md_tree *t = NULL;
    struct intent it = {0};
    int ret = -1;

    if (!(lock = engine_domain_lock(e, domain, err)) || !(t = tree_load(e, domain, lock, err)) ||
        !tree_find(t, name, err))
        goto out;
    it.op = qs_xstrdup("current");
    it.kind = qs_xstrdup("metadata");
    it.snapshot = qs_xstrdup(name);
    /* two files change (the old current, the new): the record finishes the pair after a crash */
    if (intent_begin(e, lock, domain, &it, err) < 0 ||
        md_store_snapshot_set_current_tree(e->store, lock, domain, t, name, err) < 0)
        goto out;
    engine_step(e, "current", "metadata");
    ret = 0;
out:
    if (it.pid)
        intent_finish(e, lock, domain, ret == 0);
    intent_release(&it);
    md_tree_free(t);
    md_lock_free(lock);
    return ret;
}

static struct md_snapshot *snapshot_get(struct engine *e, const char *domain, const char *name,
                                        struct qs_error **err)
{
    struct qs_error *local = NULL;
    struct md_snapshot *s = md_store_snapshot_get(e->store, domain, name, &local);

    if (!s && local->code == QS_ERR_NOTFOUND) {
        qs_error_free(local);
        snapshot_not_found(name, err);
        return NULL;
    }
    qs_error_propagate(err, &local);
    return s;
}

int engine_snapshot_get_xml(struct engine *e, const char *domain, const char *name, bool secure, char **xml,
                            struct qs_error **err)
{
    struct md_domain *dom = engine_domain_load(e, domain, err);
    struct md_snapshot *s = NULL;

    *xml = NULL;
    if (dom && (s = snapshot_get(e, domain, name, err)))
        *xml = md_snapshot_format(s, secure ? MD_FORMAT_SECURE : 0, err);
    md_snapshot_free(s);
    md_domain_free(dom);
    return *xml ? 0 : -1;
}

/* ------------------------------------------------------------------------------------------------ */
/* Which disks an internal snapshot covers. */

struct disk_set {
    struct isnap_disk *disks; /* file: the image holding the tag (from a snapshot: where it was taken) */
    const char **now;         /* each disk's current image (the domain's source) */
    size_t n;
    bool moved;               /* some tag is in another image than the disk's current one */
    char **owned; /* strings the set owns */
    size_t nowned;
};

static void disk_set_release(struct disk_set *ds)
{
    for (size_t i = 0; i < ds->nowned; i++)
        free(ds->owned[i]);
    free(ds->owned);
    free(ds->disks);
    free(ds->now);
    memset(ds, 0, sizeof(*ds));
}

static const char *disk_set_own(struct disk_set *ds, const char *s)
{
    char *copy;
    if (!s)
        return NULL;
    copy = qs_xstrdup(s);
    ds->owned = qs_xrealloc(ds->owned, (ds->nowned + 1) * sizeof(char *));
    ds->owned[ds->nowned++] = copy;
    return copy;
}

static const struct md_snapshot_disk *spec_disk(const struct md_snapshot *spec, const char *target)
{
    for (size_t i = 0; spec && i < spec->ndisks; i++)
        if (strcmp(spec->disks[i].name, target) == 0)
            return &spec->disks[i];
    return NULL;
}

/*
 * The domain's disks (device 'disk') that SPEC does not exclude with snapshot='no'. A disk SPEC names
 * that the domain lacks is an error, as is any location but internal (external snapshots come later).
 */
static int disk_set_from_domain(struct disk_set *ds, const struct md_domain *dom, const struct md_snapshot *spec,
                                struct qs_error **err)
{
    size_t n = md_domain_disk_count(dom);

    for (size_t i = 0; spec && i < spec->ndisks; i++) {
        const struct md_snapshot_disk *sd = &spec->disks[i];
        bool found = false;
        for (size_t k = 0; k < n && !found; k++) {
            struct md_domain_disk d;
            found = md_domain_disk_get(dom, k, &d, NULL) == 0 && qs_str_equal(d.target, sd->name);
        }
        if (!found) {
            qs_error_set(err, QS_ERR_INVALID, "no disk named '%s'", sd->name);
            return -1;
        }
        if (sd->snapshot == MD_LOCATION_EXTERNAL || sd->snapshot == MD_LOCATION_MANUAL) {
            qs_error_set(err, QS_ERR_UNSUPPORTED, "disk '%s': %s disk snapshots are not supported yet", sd->name,
                         md_location_to_string(sd->snapshot));
            return -1;
        }
    }
    ds->disks = qs_xcalloc(n + 1, sizeof(*ds->disks));
    ds->now = qs_xcalloc(n + 1, sizeof(*ds->now));
    for (size_t k = 0; k < n; k++) {
        struct md_domain_disk d;
        const struct md_snapshot_disk *sd;
        if (md_domain_disk_get(dom, k, &d, err) < 0)
            return -1;
        if (!d.target || (d.device && strcmp(d.device, "disk") != 0))
            continue;
        sd = spec_disk(spec, d.target);
        if (sd && sd->snapshot == MD_LOCATION_NO)
            continue;
        /* the node is found in the running QEMU (disk_set_bind); until then the target stands in */
        ds->now[ds->n] = disk_set_own(ds, d.source);
        ds->disks[ds->n] = (struct isnap_disk){disk_set_own(ds, d.target), disk_set_own(ds, d.target),
                                               ds->now[ds->n]};
        ds->n++;
    }
    return 0;
}

/* Finds each disk's node in the running QEMU (blocks B): by its image and device, never by a remembered name. */
static int disk_set_bind(struct disk_set *ds, const struct md_domain *dom, const struct vm_block *b, size_t nb,
                         struct qs_error **err)
{
    for (size_t i = 0; i < ds->n; i++) {
        const struct vm_block *hit = NULL;
        for (size_t k = 0; k < md_domain_disk_count(dom) && !hit; k++) {
            struct md_domain_disk d;
            if (md_domain_disk_get(dom, k, &d, NULL) == 0 && qs_str_equal(d.target, ds->disks[i].target) &&
                !(hit = disk_block(b, nb, dom, &d, err)))
                return -1;
        }
        if (!hit) {
            qs_error_set(err, QS_ERR_STATE, "the domain has no disk '%s'", ds->disks[i].target);
            return -1;
        }
        ds->disks[i].node = disk_set_own(ds, hit->node);
    }
    return 0;
}

/* The disks SNAP holds internally, resolved against the domain for node names and files. */
static int disk_set_from_snapshot(struct disk_set *ds, const struct md_domain *dom, const struct md_snapshot *snap,
                                  struct qs_error **err)
{
    size_t n = md_domain_disk_count(dom);

    ds->disks = qs_xcalloc(snap->ndisks + 1, sizeof(*ds->disks));
    ds->now = qs_xcalloc(snap->ndisks + 1, sizeof(*ds->now));
    for (size_t i = 0; i < snap->ndisks; i++) {
        const struct md_snapshot_disk *sd = &snap->disks[i];
        bool found = false;
        if (sd->snapshot != MD_LOCATION_INTERNAL)
            continue;
        for (size_t k = 0; k < n && !found; k++) {
            struct md_domain_disk d;
            char *tagged, *cur;
            if (md_domain_disk_get(dom, k, &d, err) < 0)
                return -1;
            if (!qs_str_equal(d.target, sd->name))
                continue;
            found = true;
            /* the tag is in the image the disk had when the snapshot was taken: after external snapshots or a
             * revert to another branch, that is no longer the disk's current image */
            cur = d.source ? qargv_path_abs(d.source, NULL) : NULL;
            if (!(tagged = files_snapshot_image(snap, sd->name)))
                tagged = cur ? qs_xstrdup(cur) : NULL;
            if (tagged && cur && strcmp(tagged, cur) != 0)
                ds->moved = true;
            ds->now[ds->n] = disk_set_own(ds, cur);
            ds->disks[ds->n] = (struct isnap_disk){disk_set_own(ds, d.target), disk_set_own(ds, d.target),
                                                   disk_set_own(ds, tagged)};
            ds->n++;
            free(tagged);
            free(cur);
        }
        if (!found) {
            qs_error_set(err, QS_ERR_STATE, "snapshot '%s' holds disk '%s', which the domain no longer has",
                         snap->name, sd->name);
            return -1;
        }
    }
    if (ds->n == 0) {
        qs_error_set(err, QS_ERR_UNSUPPORTED, "snapshot '%s' holds no internal disk snapshot", snap->name);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------------ */
/* Create. */

#define SUPPORTED_CREATE                                                                                   \
    (ENGINE_CREATE_REDEFINE | ENGINE_CREATE_CURRENT | ENGINE_CREATE_NO_METADATA | ENGINE_CREATE_HALT |      \
     ENGINE_CREATE_ATOMIC | ENGINE_CREATE_VALIDATE | ENGINE_CREATE_DISK_ONLY | ENGINE_CREATE_REUSE_EXT |  \
     ENGINE_CREATE_QUIESCE | ENGINE_CREATE_LIVE | ENGINE_CREATE_LIVE_FALLBACK | ENGINE_CREATE_PRECOPY)

static int create_redefine(struct engine *e, const char *domain, struct md_snapshot *snap, unsigned flags,
                           struct qs_error **err)
{
    struct md_domain *dom = engine_domain_load(e, domain, err);
    struct md_lock *lock = NULL;
    struct md_tree *t = NULL;
    const struct md_entry *old;
    struct intent it = {0};
    int ret = -1;

    if (!dom || !(lock = engine_domain_lock(e, domain, err)))
        goto out;
    /* a new snapshot that is not to be current needs no tree: what adding it costs does not grow with the
     * snapshots there */
    if (!(flags & ENGINE_CREATE_CURRENT) &&
        (ret = md_store_snapshot_add_quick(e->store, lock, domain, dom, snap, err)) != 0) {
        if (ret > 0) {
            ret = 0;
            engine_step(e, "redefine", "metadata");
        }
        goto out;
    }
    ret = -1;
    /* the write below writes the index: a journal is applied to the tree, not first written into one */
    if (!(t = md_tree_load_for_write(e->store, domain, lock, err)))
        goto out;
    old = md_tree_find(t, snap->name);
    /* redefining the current snapshot keeps it current, as libvirt does */
    snap->current = (flags & ENGINE_CREATE_CURRENT) || (old && old->current);
    /* one file, or two when "current" moves: the record carries the new content */
    if (snap->current && !(old && old->current)) {
        it.op = qs_xstrdup("redefine");
        it.kind = qs_xstrdup("metadata");
        it.snapshot = qs_xstrdup(snap->name);
        if (md_tree_check_redefine(t, md_domain_uuid(dom), snap, err) < 0 ||
            !(it.snapshot_xml = md_snapshot_format(snap, MD_FORMAT_ON_DISK, err)) ||
            intent_begin(e, lock, domain, &it, err) < 0)
            goto out;
    }
    ret = md_store_snapshot_put_tree(e->store, lock, domain, t, dom, snap, 0, err);
    if (ret == 0)
        engine_step(e, "redefine", "metadata");
out:
    if (it.pid)
        intent_finish(e, lock, domain, ret == 0);
    intent_release(&it);
    md_tree_free(t);
    md_lock_free(lock);
    md_domain_free(dom);
    return ret;
}

static int progress_adapter(void *opaque, const char *phase, uint64_t done, uint64_t total)
{
    struct engine *e = opaque;
    return e->progress ? e->progress(e->opaque, phase, done, total) : 0;
}

/* Removes TAG again after the metadata write failed (best effort: the error that matters is the first). */
static void create_undo(struct qmp_client *c, const struct disk_set *ds, const char *tag)
{
    struct qs_error *ignore = NULL;
    if (c)
        isnap_delete(c, ds->disks, ds->n, tag, &ignore);
    else
        isnap_offline_delete(ds->disks, ds->n, tag, &ignore);
    qs_error_free(ignore);
}

int snapshot_create_op(struct engine *e, const char *domain, const char *xml, unsigned flags, char **name,
                       struct qs_error **err)
{
    struct md_snapshot *snap = NULL;
    struct md_domain *dom = NULL;
    struct md_lock *lock = NULL;
    struct md_tree *t = NULL;
    struct qmp_client *c = NULL;
    struct disk_set ds = {0};
    const struct md_entry *cur;
    char *status = NULL, qcur[QS_NAME_MAX + 1] = "";
    struct intent it = {0};
    struct nvram_capture nvc = {0};
    bool taken = false, recorded = false, running = false, quick = false;
    int ret = -1;

    if (flags & ~SUPPORTED_CREATE) {
        qs_error_set(err, QS_ERR_UNSUPPORTED, "unsupported snapshot flags 0x%x", flags & ~SUPPORTED_CREATE);
        return -1;
    }
    if ((flags & ENGINE_CREATE_REDEFINE) && (flags & (ENGINE_CREATE_HALT | ENGINE_CREATE_NO_METADATA |
                                                      ENGINE_CREATE_QUIESCE | ENGINE_CREATE_LIVE |
                                                      ENGINE_CREATE_PRECOPY))) {
        qs_error_set(err, QS_ERR_INVALID, "redefine cannot be combined with halt, no-metadata, quiesce or live");
        return -1;
    }
    if ((flags & ENGINE_CREATE_CURRENT) && !(flags & ENGINE_CREATE_REDEFINE)) {
        qs_error_set(err, QS_ERR_INVALID, "Flag 'VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE' is required by flag "
                                          "'VIR_DOMAIN_SNAPSHOT_CREATE_CURRENT'");
        return -1;
    }
    if (xml) {
        snap = md_snapshot_parse(xml, strlen(xml), (flags & ENGINE_CREATE_REDEFINE) ? MD_PARSE_REDEFINE : 0, err);
        if (!snap)
            return -1;
    } else {
        snap = md_snapshot_new();
    }
    if (flags & ENGINE_CREATE_REDEFINE) {
        ret = create_redefine(e, domain, snap, flags, err);
        if (ret == 0 && name)
            *name = qs_xstrdup(snap->name);
        goto out;
    }
    if (snap->memory == MD_LOCATION_MANUAL) {
        qs_error_set(err, QS_ERR_UNSUPPORTED, "manual memory snapshots are not supported");
        goto out;
    }
    if (!snap->name)
        snap->name = qs_asprintf("%lld", (long long)(engine_now_ms(e) / 1000)); /* libvirt's default name */
    if (qs_name_check(snap->name, "snapshot", err) < 0)
        goto out;
    if (!(dom = engine_domain_load(e, domain, err)) || !(lock = engine_domain_lock(e, domain, err)))
        goto out;
    /* an internal create at scale needs of the tree only the current snapshot and that the name is free: both
     * peeked, and the metadata written without the tree (md_store_snapshot_create_quick) */
    quick = !(flags & (ENGINE_CREATE_LIVE | ENGINE_CREATE_NO_METADATA)) && !ext_wanted(snap, flags) &&
            md_store_snapshot_create_peek(e->store, lock, domain, snap->name, PEEK_MIN, qcur, sizeof(qcur)) == 1;
    if (!quick && !(t = md_tree_load_for_write(e->store, domain, lock, err)))
        goto out;
    if (t && md_tree_find(t, snap->name)) {
        qs_error_set(err, QS_ERR_EXISTS, "operation failed: domain moment %s already exists", snap->name);
        goto out;
    }
    /* --live without --memspec: external memory in the default file (ext_create names it) */
    if ((flags & ENGINE_CREATE_LIVE) && !(flags & ENGINE_CREATE_DISK_ONLY) && snap->memory == MD_LOCATION_DEFAULT)
        snap->memory = MD_LOCATION_EXTERNAL;
    if ((flags & ENGINE_CREATE_LIVE_FALLBACK) && !(flags & ENGINE_CREATE_LIVE)) {
        qs_error_set(err, QS_ERR_INVALID, "--live-fallback needs --live");
        goto out;
    }
    if ((flags & ENGINE_CREATE_PRECOPY) && !(flags & ENGINE_CREATE_LIVE)) {
        qs_error_set(err, QS_ERR_INVALID, "--precopy needs --live");
        goto out;
    }
    if (ext_wanted(snap, flags) || (flags & ENGINE_CREATE_LIVE)) {
        it.op = qs_xstrdup("create");
        it.kind = qs_xstrdup("external");
        it.snapshot = qs_xstrdup(snap->name);
        recorded = true; /* from here on ext_create may write it; it.pid says whether it did */
        if (engine_domain_connect(e, dom, &c, err) < 0 ||
            (!(flags & ENGINE_CREATE_NO_METADATA) && nvram_capture_begin(e, c, dom, domain, snap->name, &nvc, err) < 0) ||
            ext_create(e, dom, lock, t, snap, flags, &it, &c, err) < 0)
            goto out;
        if (name)
            *name = qs_xstrdup(snap->name);
        ret = 0;
        goto out;
    }
    /* internal snapshots from here on */
    if (flags & ENGINE_CREATE_LIVE) {
        qs_error_set(err, QS_ERR_UNSUPPORTED, "live snapshots need external memory (--memspec file=PATH, or none "
                     "for the default file)");
        goto out;
    }
    if (flags & ENGINE_CREATE_QUIESCE) {
        qs_error_set(err, QS_ERR_INVALID, "--quiesce needs an external snapshot (--disk-only or --memspec)");
        goto out;
    }
    if (disk_set_from_domain(&ds, dom, snap, err) < 0 || engine_domain_connect(e, dom, &c, err) < 0)
        goto out;

    if (c) {
        struct vm_block *blocks = NULL;
        size_t nb = 0;
        int r;
        if (vm_status_blocks(c, &status, &running, &blocks, &nb, err) < 0)
            goto out;
        r = disk_set_bind(&ds, dom, blocks, nb, err);
        if (r == 0)
            r = isnap_check_live(blocks, nb, ds.disks, ds.n, snap->name, ISNAP_CREATE, err);
        vm_blocks_free(blocks, nb);
        if (r < 0)
            goto out;
        snap->state = running ? MD_STATE_RUNNING : MD_STATE_PAUSED;
        snap->memory = MD_LOCATION_INTERNAL;
    } else {
        if (isnap_check_offline(ds.disks, ds.n, snap->name, ISNAP_CREATE, err) < 0)
            goto out;
        snap->state = MD_STATE_SHUTOFF;
        snap->memory = MD_LOCATION_NO;
    }
    if (!(flags & ENGINE_CREATE_NO_METADATA)) {
        /* the record: every domain disk, internal or excluded, as libvirt lists them - made before the save,
         * so that the intent record carries it */
        size_t nd = md_domain_disk_count(dom);
        for (size_t i = 0; i < snap->ndisks; i++)
            free(snap->disks[i].name), free(snap->disks[i].type), free(snap->disks[i].driver_type),
                free(snap->disks[i].source), free(snap->disks[i].raw);
        free(snap->disks);
        snap->disks = NULL;
        snap->ndisks = 0;
        for (size_t k = 0; k < nd; k++) {
            struct md_domain_disk d;
            struct md_snapshot_disk *sd;
            bool in = false;
            if (md_domain_disk_get(dom, k, &d, err) < 0)
                goto out;
            if (!d.target || (d.device && strcmp(d.device, "disk") != 0))
                continue;
            for (size_t i = 0; i < ds.n && !in; i++)
                in = strcmp(ds.disks[i].target, d.target) == 0;
            sd = md_snapshot_disk_add(snap);
            sd->name = qs_xstrdup(d.target);
            sd->snapshot = in ? MD_LOCATION_INTERNAL : MD_LOCATION_NO;
        }
        cur = t ? md_tree_current(t) : NULL;
        free(snap->parent);
        snap->parent = cur ? qs_xstrdup(cur->name) : qcur[0] ? qs_xstrdup(qcur) : NULL;
        snap->creation_time = (long long)(engine_now_ms(e) / 1000);
        free(snap->domain_xml);
        if (!(snap->domain_xml = md_domain_format_copy(dom, err)))
            goto out;
        snap->current = true;
        if (md_snapshot_validate(snap, err) < 0)
            goto out;
    }
    it.op = qs_xstrdup("create");
    it.kind = qs_xstrdup("internal");
    it.snapshot = qs_xstrdup(snap->name);
    it.vm = qs_xstrdup(c ? (running ? "running" : status) : "shutoff");
    it.halt = (flags & ENGINE_CREATE_HALT) && c;
    for (size_t i = 0; i < ds.n; i++)
        intent_add_disk(&it, ds.disks[i].target, ds.disks[i].node, ds.disks[i].file);
    if (!(flags & ENGINE_CREATE_NO_METADATA) &&
        !(it.snapshot_xml = md_snapshot_format(snap, MD_FORMAT_ON_DISK, err)))
        goto out;
    if (intent_begin(e, lock, domain, &it, err) < 0)
        goto out;
    recorded = true;
    /* the UEFI variables with the snapshot (a copy beside its metadata: recovery removes one without it) */
    if (!(flags & ENGINE_CREATE_NO_METADATA) && nvram_capture_begin(e, c, dom, domain, snap->name, &nvc, err) < 0)
        goto out;
    if (c ? isnap_save(c, ds.disks, ds.n, snap->name, progress_adapter, e, err) < 0
          : isnap_offline_create(ds.disks, ds.n, snap->name, err) < 0)
        goto out;
    taken = true;
    if (c)
        engine_note_pause(e, engine_pause_from_events(c));
    engine_step(e, "create", "save");
    if (!(flags & ENGINE_CREATE_NO_METADATA)) {
        int q = quick ? md_store_snapshot_create_quick(e->store, lock, domain, dom, snap, PEEK_MIN, err) : 0;
        /* declined (nothing changed): the long way, with the tree */
        if (q < 0 || (q == 0 && ((!t && !(t = md_tree_load_for_write(e->store, domain, lock, err))) ||
                                 md_store_snapshot_put_tree(e->store, lock, domain, t, dom, snap, MD_PUT_NO_REPLACE,
                                                            err) < 0)))
            goto undo;
        engine_step(e, "create", "metadata");
    }
    if ((flags & ENGINE_CREATE_HALT) && c) {
        if (engine_qemu_quit(e, &c, err) < 0)
            goto out; /* the snapshot stands; only the halt failed */
        engine_step(e, "create", "halt");
    }
    if (name)
        *name = qs_xstrdup(snap->name);
    ret = 0;
    goto out;

undo:
    if (taken)
        create_undo(c, &ds, snap->name);
out:
    /* done, or undone above (a save that failed removed its own tags; nothing else was made) */
    nvram_capture_end(&nvc, c, ret == 0);
    qmp_client_free(c); /* before recovery, which connects on its own: QEMU serves one client */
    if (recorded && it.pid)
        intent_finish(e, lock, domain, ret == 0);
    intent_release(&it);
    free(status);
    disk_set_release(&ds);
    md_tree_free(t);
    md_lock_free(lock);
    md_domain_free(dom);
    md_snapshot_free(snap);
    return ret;
}

/* ------------------------------------------------------------------------------------------------ */
/* Revert. */

static bool snapshot_has_memory(const struct md_snapshot *s)
{
    return s->state != MD_STATE_SHUTOFF && s->state != MD_STATE_DISK_SNAPSHOT && s->memory != MD_LOCATION_NO;
}

/* What a revert's load reports to: progress, and the intent record once QEMU's load has succeeded. */
struct revert_ctx {
    struct engine *e;
    const struct md_lock *lock;
    const char *domain;
    struct intent *it;
    const struct md_domain *dom;
    struct md_domain *owned; /* a definition the revert switched to (freed with the context) */
    bool loaded_written;     /* the record says "loaded", not synced yet */
};

static int revert_progress(void *opaque, const char *phase, uint64_t done, uint64_t total)
{
    struct revert_ctx *r = opaque;
    return progress_adapter(r->e, phase, done, total);
}

/*
 * The record's "loaded" tells recovery the snapshot's state is in QEMU (and its disks) once the job that
 * said so is dismissed. It must be readable before job-dismiss goes (a crash of this process leaves QEMU
 * running): written here, unsynced. It must also survive a crash of the machine, which takes QEMU and its
 * job along: synced in revert_dismissing(), while QEMU reads job-dismiss, and before anything after the
 * load. Best effort, both: without it, recovery still finds the concluded job in QEMU unless it was
 * dismissed.
 */
static void revert_loaded(void *opaque, bool ok)
{
    struct revert_ctx *r = opaque;

    if (!ok)
        return;
    free(r->it->phase);
    r->it->phase = qs_xstrdup("loaded");
    r->loaded_written = intent_write(r->e, r->lock, r->domain, r->it, MD_INTENT_NOSYNC, NULL) == 0;
    engine_step(r->e, "revert", "loaded"); /* the job concluded, not dismissed yet */
}

static void revert_dismissing(void *opaque)
{
    struct revert_ctx *r = opaque;

    if (r->loaded_written)
        intent_sync(r->e, r->lock, r->domain, NULL);
}

/*
 * In-place load on a live QEMU. The guest must not run between the load and the wanted end state, so a
 * wanted pause is taken before the load (a load keeps a paused VM paused) and cont comes after it.
 */
static int revert_live(struct revert_ctx *rc, struct qmp_client *c, struct disk_set *ds, const char *tag,
                       bool want_running, struct qs_error **err)
{
    struct engine *e = rc->e;
    struct vm_block *blocks = NULL;
    size_t nb = 0;
    char *status = NULL;
    bool running = false;
    int ret = -1;

    if (vm_status_blocks(c, &status, &running, &blocks, &nb, err) < 0 ||
        disk_set_bind(ds, rc->dom, blocks, nb, err) < 0 ||
        isnap_check_live(blocks, nb, ds->disks, ds->n, tag, ISNAP_LOAD, err) < 0)
        goto out;
    if (!rc->it->vm)
        rc->it->vm = qs_xstrdup(running ? "running" : status);
    /*
     * Not synced: what this record makes recovery do needs the QEMU it is about, which a crash of the machine
     * takes along (no QEMU: nothing loaded is undone, and a run state has none to give back); a crash of this
     * process finds it written. A record that started QEMU or switched the definition was synced before that,
     * with the same content. "loaded", which does count then, is synced (revert_loaded()).
     */
    if (intent_begin_ex(e, rc->lock, rc->domain, rc->it, MD_INTENT_NOSYNC, err) < 0)
        goto out;
    if (!want_running && running) {
        if (vm_stop(c, err) < 0)
            goto out;
        engine_step(e, "revert", "stop");
    }
    if (isnap_load(c, ds->disks, ds->n, tag, revert_progress, rc, revert_loaded, revert_dismissing, err) < 0) {
        /* QEMU stays stopped (restore-vm) after a failed load: give back the run state we found. The
         * checks above catch the failures that come before any RAM is touched. */
        struct qs_error *ignore = NULL;
        if (running)
            vm_cont(c, &ignore);
        qs_error_free(ignore);
        goto out;
    }
    engine_note_pause(e, engine_pause_from_events(c));
    engine_step(e, "revert", "load");
    free(status);
    status = NULL;
    /* a load keeps a running VM running (the job restarts it): no need to ask again */
    if (!(running && want_running) && vm_status(c, &status, &running, err) < 0)
        goto out;
    if (want_running && !running && vm_cont(c, err) < 0)
        goto out;
    if (!want_running && running && vm_stop(c, err) < 0)
        goto out;
    engine_step(e, "revert", "state");
    ret = 0;
out:
    free(status);
    vm_blocks_free(blocks, nb);
    return ret;
}

/* The external snapshot that froze FILE for disk TARGET (its name, caller frees), or NULL. */
static char *frozen_by(struct engine *e, const char *domain, const char *target, const char *file)
{
    struct md_tree *t = md_tree_load(e->store, domain, NULL, NULL);
    const struct md_entry **all = NULL;
    size_t n = 0;
    char *r = NULL;

    if (t && md_tree_list(t, NULL, MD_LIST_EXTERNAL, &all, &n, NULL) == 0) {
        for (size_t i = 0; i < n && !r; i++) {
            struct md_snapshot *x = md_store_snapshot_get(e->store, domain, all[i]->name, NULL);
            char *img = x ? files_snapshot_image(x, target) : NULL;
            if (img && strcmp(img, file) == 0)
                r = qs_xstrdup(x->name);
            free(img);
            md_snapshot_free(x);
        }
    }
    free(all);
    md_tree_free(t);
    return r;
}

/* Why the tag of snapshot NAME in FILE (disk TARGET) cannot be touched: other images are built on it (a
 * revert would change them), or (LIVE_DELETE) the running QEMU only reads it. */
static void tag_frozen_error(struct engine *e, const char *domain, const char *name, const char *target,
                             const char *file, bool live_delete, struct qs_error **err)
{
    char *by = frozen_by(e, domain, target, file);

    if (live_delete && by)
        qs_error_set(err, QS_ERR_UNSUPPORTED,
                     "snapshot '%s' is inside image '%s' of disk '%s', which external snapshot '%s' froze and the "
                     "running QEMU only reads: delete it while the domain is shut off, or delete snapshot '%s' "
                     "first (that merges its changes into the image)",
                     name, file, target, by, by);
    else if (live_delete)
        qs_error_set(err, QS_ERR_UNSUPPORTED,
                     "snapshot '%s' is inside image '%s' of disk '%s', which the running QEMU only reads (images "
                     "holding other snapshots are built on it): delete it while the domain is shut off, or "
                     "delete those snapshots first (the images are then merged)",
                     name, file, target);
    else if (by)
        qs_error_set(err, QS_ERR_UNSUPPORTED,
                     "snapshot '%s' is inside image '%s' of disk '%s', which external snapshot '%s' froze: "
                     "reverting to it would change '%s' and what is built on it; delete snapshot '%s' first (that "
                     "merges its changes into the image), then revert",
                     name, file, target, by, by, by);
    else
        qs_error_set(err, QS_ERR_UNSUPPORTED,
                     "snapshot '%s' is inside image '%s' of disk '%s', on which images holding other snapshots are "
                     "built: reverting to it would change them; delete those snapshots first (the images are then "
                     "merged), then revert",
                     name, file, target);
    free(by);
}

/*
 * Reverts to internal snapshot SNAP whose tags are in images the disks no longer run on (DS->moved): an
 * image another needed file is built on is refused (the load would change it); else QEMU is quit, the
 * definition points at the tagged images, and the snapshot is loaded into a fresh QEMU (or applied with
 * qemu-img for a snapshot without memory). Whether QEMU can start on them is known before it is quit. The
 * files of the state left behind that nothing needs go into the record's garbage.
 */
static int revert_moved(struct revert_ctx *rc, const struct md_snapshot *snap, struct disk_set *ds, unsigned flags,
                        struct qmp_client **c, bool *started, struct qs_error **err)
{
    struct engine *e = rc->e;
    const struct md_domain *dom = rc->dom;
    struct md_domain *next = NULL;
    char **before = NULL, **after = NULL, **garbage = NULL, *old = NULL;
    bool memory = snapshot_has_memory(snap), running = false;
    bool want_running = (flags & ENGINE_REVERT_RUNNING) ||
                        (!(flags & ENGINE_REVERT_PAUSED) && snap->state == MD_STATE_RUNNING);
    bool start = memory || (flags & (ENGINE_REVERT_RUNNING | ENGINE_REVERT_PAUSED));
    int ret = -1;

    if (files_needed(e, rc->domain, rc->lock, dom, NULL, &before, err) < 0 || !(old = md_domain_format(dom, err)) ||
        !(next = md_domain_parse(old, strlen(old), err)))
        goto out;
    for (size_t i = 0; i < ds->n; i++) {
        const struct isnap_disk *d = &ds->disks[i];
        struct img_info info = {0};
        char *by = NULL;
        if (!d->file || qs_str_equal(d->file, ds->now[i]))
            continue;
        if (access(d->file, F_OK) < 0) {
            qs_error_set(err, QS_ERR_NOTFOUND, "snapshot '%s': image '%s' of disk '%s' is missing", snap->name,
                         d->file, d->target);
            goto out;
        }
        /* built on, or itself the state of an external snapshot taken after this one (what runs no longer
         * being built on it does not free it): loading the tag would change that snapshot */
        if (files_has_child(before, d->file) || (by = frozen_by(e, rc->domain, d->target, d->file))) {
            free(by);
            tag_frozen_error(e, rc->domain, snap->name, d->target, d->file, false, err);
            goto out;
        }
        if (img_info_get(d->file, true, &info, err) < 0)
            goto out;
        if (!img_info_has_tag(&info, snap->name)) {
            qs_error_set(err, QS_ERR_NOTFOUND, "internal snapshot '%s' not found on disk '%s' (image '%s')",
                         snap->name, d->target, d->file);
            img_info_release(&info);
            goto out;
        }
        img_info_release(&info);
        if (md_domain_set_disk_source(next, d->target, d->file, err) < 0 ||
            md_domain_set_disk_driver_type(next, d->target, "qcow2", err) < 0 ||
            md_domain_set_disk_node_name(next, d->target, NULL, err) < 0)
            goto out;
    }
    if ((start || *c) && engine_qemu_check_start(next, err) < 0) {
        qs_error_prefix(err, "cannot revert domain '%s' to snapshot '%s'", rc->domain, snap->name);
        goto out;
    }
    if (files_needed(e, rc->domain, rc->lock, next, NULL, &after, err) < 0)
        goto out;
    garbage = files_garbage(before, NULL, after, NULL);
    for (size_t i = 0; garbage[i]; i++) {
        intent_add_garbage(rc->it, garbage[i]);
        if (md_domain_set_made(next, garbage[i], false, err) < 0)
            goto out;
    }
    if (*c && vm_status(*c, NULL, &running, err) < 0)
        goto out;
    rc->it->vm = qs_xstrdup(*c ? (running ? "running" : "paused") : "shutoff");
    rc->it->want_running = want_running;
    rc->it->start = memory;
    rc->it->undo_xml = old;
    old = NULL;
    rc->it->phase = qs_xstrdup(memory ? "switch" : "apply");
    if (intent_begin(e, rc->lock, rc->domain, rc->it, err) < 0)
        goto out;
    if (*c) {
        if (engine_qemu_quit(e, c, err) < 0)
            goto out;
        engine_step(e, "revert", "quit");
    }
    if (md_store_domain_put(e->store, rc->lock, next, err) < 0)
        goto out;
    engine_step(e, "revert", "switch");
    rc->dom = next;
    if (memory) {
        if (engine_qemu_start(e, next, rc->lock, true, c, err) < 0)
            goto out;
        *started = true;
        engine_step(e, "revert", "start");
        if (revert_live(rc, *c, ds, snap->name, want_running, err) < 0)
            goto out;
    } else {
        if (isnap_offline_apply(ds->disks, ds->n, snap->name, err) < 0)
            goto out;
        free(rc->it->phase);
        rc->it->phase = qs_xstrdup("applied");
        if (intent_update(e, rc->lock, rc->domain, rc->it, err) < 0)
            goto out;
        engine_step(e, "revert", "apply");
        if (start) {
            if (engine_qemu_start(e, next, rc->lock, flags & ENGINE_REVERT_PAUSED, c, err) < 0)
                goto out;
            engine_step(e, "revert", "start");
        }
    }
    ret = 0;
out:
    if (rc->dom != next)
        md_domain_free(next);
    else
        rc->owned = next;
    qs_strv_free(before);
    qs_strv_free(after);
    qs_strv_free(garbage);
    free(old);
    return ret;
}

int snapshot_revert_op(struct engine *e, const char *domain, const char *name, unsigned flags,
                       struct qs_error **err)
{
    struct md_domain *dom = NULL;
    struct md_lock *lock = NULL;
    struct md_snapshot *snap = NULL;
    struct qmp_client *c = NULL;
    struct disk_set ds = {0};
    struct intent it = {0};
    struct revert_ctx rc = {e, NULL, domain, &it, NULL, NULL, false};
    bool started = false, want_running;
    int ret = -1;

    if ((flags & ENGINE_REVERT_RUNNING) && (flags & ENGINE_REVERT_PAUSED)) {
        qs_error_set(err, QS_ERR_INVALID,
                     "Flags 'VIR_DOMAIN_SNAPSHOT_REVERT_RUNNING' and 'VIR_DOMAIN_SNAPSHOT_REVERT_PAUSED' are "
                     "mutually exclusive");
        return -1;
    }
    if (!(dom = engine_domain_load(e, domain, err)) || !(lock = engine_domain_lock(e, domain, err)) ||
        !(snap = snapshot_get(e, domain, name, err)) || nvram_revert_begin(e, dom, domain, snap, flags, err) < 0)
        goto out;
    rc.lock = lock;
    rc.dom = dom;
    it.op = qs_xstrdup("revert");
    it.snapshot = qs_xstrdup(name);
    if (md_snapshot_is_external(snap)) {
        /* the disks go back (on new overlays); with external memory QEMU loads it, else the VM boots afresh
         * only when asked */
        it.kind = qs_xstrdup("external");
        if (engine_domain_connect(e, dom, &c, err) < 0 || ext_revert(e, dom, lock, snap, flags, &it, &c, err) < 0)
            goto out;
        goto current;
    }
    it.kind = qs_xstrdup("internal");
    if (disk_set_from_snapshot(&ds, dom, snap, err) < 0 || engine_domain_connect(e, dom, &c, err) < 0)
        goto out;
    for (size_t i = 0; i < ds.n; i++)
        intent_add_disk(&it, ds.disks[i].target, ds.disks[i].node, ds.disks[i].file);
    if (ds.moved) {
        /* the tags are in images the disks left (an external snapshot or a revert came since): the domain goes
         * back onto them */
        if (revert_moved(&rc, snap, &ds, flags, &c, &started, err) < 0)
            goto out;
        goto current;
    }

    if (snapshot_has_memory(snap)) {
        want_running = (flags & ENGINE_REVERT_RUNNING) ||
                       (!(flags & ENGINE_REVERT_PAUSED) && snap->state == MD_STATE_RUNNING);
        it.want_running = want_running;
        if (!c) {
            /* nothing runs: a fresh QEMU, paused, receives the snapshot */
            if (isnap_check_offline(ds.disks, ds.n, name, ISNAP_LOAD, err) < 0)
                goto out;
            it.vm = qs_xstrdup("shutoff");
            it.start = true;
            if (intent_begin(e, lock, domain, &it, err) < 0)
                goto out;
            if (engine_qemu_start(e, dom, lock, true, &c, err) < 0)
                goto out;
            engine_step(e, "revert", "start");
            started = true;
        }
        if (revert_live(&rc, c, &ds, name, want_running, err) < 0)
            goto out;
    } else {
        /* a disk-only snapshot of a shut-off VM: the VM goes off, the images go back, and it starts again
         * only when asked (as libvirt does) */
        it.phase = qs_xstrdup("apply");
        it.vm = qs_xstrdup(c ? "running" : "shutoff");
        if (isnap_check_offline(ds.disks, ds.n, name, ISNAP_LOAD, err) < 0 ||
            intent_begin(e, lock, domain, &it, err) < 0)
            goto out;
        if (c) {
            if (engine_qemu_quit(e, &c, err) < 0)
                goto out;
            engine_step(e, "revert", "quit");
        }
        if (isnap_offline_apply(ds.disks, ds.n, name, err) < 0)
            goto out;
        free(it.phase);
        it.phase = qs_xstrdup("applied");
        if (intent_update(e, lock, domain, &it, err) < 0)
            goto out;
        engine_step(e, "revert", "apply");
        if (flags & (ENGINE_REVERT_RUNNING | ENGINE_REVERT_PAUSED)) {
            if (engine_qemu_start(e, dom, lock, flags & ENGINE_REVERT_PAUSED, &c, err) < 0)
                goto out;
            engine_step(e, "revert", "start");
        }
    }
current:
    if (md_store_snapshot_set_current(e->store, lock, domain, name, err) < 0)
        goto out;
    engine_step(e, "revert", "metadata");
    /* the state left behind: its files that nothing needs any more */
    files_remove(it.garbage);
    ret = 0;
out:
    if (ret < 0 && started && c) {
        /* we started QEMU for this revert: leave the domain off as we found it */
        engine_qemu_quit(e, &c, NULL); /* best effort: the error that matters is already set */
    }
    /* the snapshot's UEFI variables, when no QEMU start took them: a QEMU that loaded the snapshot in place
     * writes its RAM's copy back when the guest runs */
    if (nvram_revert_end(e, ret == 0, c != NULL, err) < 0)
        ret = -1;
    qmp_client_free(c);
    c = NULL;
    if (it.pid)
        intent_finish(e, lock, domain, ret == 0);
    intent_release(&it);
    disk_set_release(&ds);
    md_snapshot_free(snap);
    md_lock_free(lock);
    md_domain_free(rc.owned);
    md_domain_free(dom);
    return ret;
}

/* ------------------------------------------------------------------------------------------------ */
/* Delete. */

/* The subset of DS where PICK[i]: the strings stay DS's. */
static void disk_set_pick(const struct disk_set *ds, const bool *pick, bool want, struct disk_set *out)
{
    memset(out, 0, sizeof(*out));
    out->disks = qs_xcalloc(ds->n + 1, sizeof(*out->disks));
    out->now = qs_xcalloc(ds->n + 1, sizeof(*out->now));
    for (size_t i = 0; i < ds->n; i++)
        if (pick[i] == want) {
            out->now[out->n] = ds->now[i];
            out->disks[out->n++] = ds->disks[i];
        }
}

/* Removes internal snapshot SNAP's tags: live from the images QEMU runs on, with qemu-img from images QEMU
 * does not have open (a revert or an external snapshot left them); a tag in an image the running QEMU only
 * reads (a backing file of its disk) cannot be removed until it is shut off. */
static int delete_internal(struct engine *e, struct qmp_client *c, const struct md_domain *dom, const char *domain,
                           const struct md_snapshot *snap, struct disk_set *ds, bool present_only,
                           struct qs_error **err)
{
    bool *live = qs_xcalloc(ds->n + 1, sizeof(bool));
    struct disk_set on = {0}, off = {0};
    struct vm_block *blocks = NULL;
    size_t nb = 0;
    int ret = -1;

    for (size_t i = 0; i < ds->n; i++) {
        live[i] = c && qs_str_equal(ds->disks[i].file, ds->now[i]);
        if (c && !live[i] && ds->now[i]) {
            char **chain = files_chain(ds->now[i]);
            bool open = false;
            for (size_t k = 0; chain[k] && !open; k++)
                open = qs_str_equal(chain[k], ds->disks[i].file);
            qs_strv_free(chain);
            if (open) {
                tag_frozen_error(e, domain, snap->name, ds->disks[i].target, ds->disks[i].file, true, err);
                goto out;
            }
        }
    }
    disk_set_pick(ds, live, true, &on);
    disk_set_pick(ds, live, false, &off);
    if (on.n && (vm_blocks(c, &blocks, &nb, err) < 0 || disk_set_bind(&on, dom, blocks, nb, err) < 0))
        goto out;
    if (present_only) {
        /* finishing a delete a crash cut short: the tags still there go */
        ret = (on.n && isnap_delete_present(c, on.disks, on.n, snap->name, err) < 0) ||
                      (off.n && isnap_delete_present(NULL, off.disks, off.n, snap->name, err) < 0)
                  ? -1
                  : 0;
        goto out;
    }
    if (on.n && isnap_check_live(blocks, nb, on.disks, on.n, snap->name, ISNAP_DELETE, err) < 0)
        goto out;
    if (off.n && isnap_check_offline(off.disks, off.n, snap->name, ISNAP_DELETE, err) < 0)
        goto out;
    if ((on.n && isnap_delete(c, on.disks, on.n, snap->name, err) < 0) ||
        (off.n && isnap_offline_delete(off.disks, off.n, snap->name, err) < 0))
        goto out;
    ret = 0;
out:
    vm_blocks_free(blocks, nb);
    disk_set_release(&on);
    disk_set_release(&off);
    free(live);
    return ret;
}

/* Removes snapshot NAME's data: its internal tags, or its external overlays merged away. The image files
 * that nothing needs once NAME's metadata is gone are noted in IT's garbage (recorded), for the caller to
 * remove after the metadata. */
static int delete_data(struct engine *e, struct qmp_client *c, struct md_domain *dom, const struct md_lock *lock,
                       const char *domain, const char *name, struct intent *it, bool recovering, bool *files_moved,
                       struct qs_error **err)
{
    struct md_snapshot *snap = snapshot_get(e, domain, name, err);
    struct disk_set ds = {0};
    char **before = NULL, **after = NULL, **mine = NULL, **garbage = NULL;
    bool external, gc;
    int ret = -1;

    if (!snap)
        return -1;
    external = md_snapshot_is_external(snap);
    if (!external && disk_set_from_snapshot(&ds, dom, snap, err) < 0)
        goto out;
    /* files change only around external snapshots and tags in images the disks left */
    gc = *files_moved = external || ds.moved;
    if (gc && files_needed(e, domain, lock, dom, NULL, &before, err) < 0)
        goto out;
    if (external) {
        if (ext_delete(e, dom, lock, snap, c, it, err) < 0)
            goto out;
    } else if (delete_internal(e, c, dom, domain, snap, &ds, recovering, err) < 0) {
        goto out;
    }
    if (gc) {
        /* the snapshot's own overlays count even when nothing needed them any more */
        mine = qs_xcalloc(snap->ndisks + 1, sizeof(char *));
        for (size_t i = 0, k = 0; i < snap->ndisks; i++)
            if (snap->disks[i].snapshot == MD_LOCATION_EXTERNAL && snap->disks[i].source)
                mine[k++] = qargv_path_abs(snap->disks[i].source, NULL);
        if (files_needed(e, domain, lock, dom, name, &after, err) < 0)
            goto out;
        garbage = files_garbage(before, mine, after, NULL);
        for (size_t i = 0; garbage[i]; i++)
            intent_add_garbage(it, garbage[i]);
        if (garbage[0] && intent_update(e, lock, domain, it, err) < 0)
            goto out;
    }
    ret = 0;
out:
    qs_strv_free(before);
    qs_strv_free(after);
    qs_strv_free(mine);
    qs_strv_free(garbage);
    disk_set_release(&ds);
    md_snapshot_free(snap);
    return ret;
}

int engine_snapshot_delete_one(struct engine *e, struct qmp_client *c, struct md_domain *dom,
                               const struct md_lock *lock, struct md_tree *t, const char *domain, const char *name,
                               struct intent *it, bool recovering, struct qs_error **err)
{
    bool files_moved = false;

    if (delete_data(e, c, dom, lock, domain, name, it, recovering, &files_moved, err) < 0)
        return -1;
    engine_step(e, "delete", "data");
    if (md_store_snapshot_delete_tree(e->store, lock, domain, t, name, 0, err) < 0)
        return -1;
    engine_step(e, "delete", "metadata");
    /* the record keeps the list: a crash before this removes them in recovery */
    files_remove(it->garbage);
    if (files_forget(e, lock, dom, it->garbage, err) < 0)
        return -1;
    qs_strv_free(it->garbage);
    it->garbage = NULL;
    if (files_moved || files_made_top(dom)) {
        /* an image left shared by branches that are gone now takes its last branch back (best effort: the
         * delete itself is done, and the next one tries again) */
        struct qs_error *ignore = NULL;
        ext_collapse(e, dom, lock, c, it, &ignore);
        qs_error_free(ignore);
        qs_strv_free(it->garbage);
        it->garbage = NULL;
    }
    return 0;
}

/* Appends E's descendants, deepest first (each after all of its own descendants). */
static void collect_descendants(const struct md_tree *t, const struct md_entry *en, const struct md_entry ***v,
                                size_t *n, size_t *cap)
{
    for (size_t i = 0; i < en->nchildren; i++) {
        const struct md_entry *ch = md_tree_child(t, en, i);
        collect_descendants(t, ch, v, n, cap);
        qs_xgrow((void **)v, cap, *n + 1, sizeof(**v));
        (*v)[(*n)++] = ch;
    }
}

int snapshot_delete_op(struct engine *e, const char *domain, const char *name, unsigned flags,
                       struct qs_error **err)
{
    struct md_domain *dom = NULL;
    struct md_lock *lock = NULL;
    struct md_tree *t = NULL;
    struct qmp_client *c = NULL;
    const struct md_entry *en, **doomed = NULL;
    size_t n = 0, cap = 0;
    char **names = NULL;
    struct intent it = {0};
    bool untouched = false;
    int ret = -1;

    if ((flags & ENGINE_DELETE_CHILDREN) && (flags & ENGINE_DELETE_CHILDREN_ONLY)) {
        qs_error_set(err, QS_ERR_INVALID,
                     "Flags 'VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN' and 'VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN_ONLY' "
                     "are mutually exclusive");
        return -1;
    }
    if (!(dom = engine_domain_load(e, domain, err)) || !(lock = engine_domain_lock(e, domain, err)))
        goto out;
    /* a snapshot nothing is built on, from its index record: the metadata delete then neither loads the tree
     * nor rewrites the index */
    if (!(flags & (ENGINE_DELETE_CHILDREN | ENGINE_DELETE_CHILDREN_ONLY)))
        t = md_tree_peek_leaf(e->store, domain, lock, name, PEEK_MIN);
    if ((!t && !(t = md_tree_load_for_write(e->store, domain, lock, err))) || !(en = tree_find(t, name, err)))
        goto out;
    if (flags & (ENGINE_DELETE_CHILDREN | ENGINE_DELETE_CHILDREN_ONLY))
        collect_descendants(t, en, &doomed, &n, &cap);
    if (!(flags & ENGINE_DELETE_CHILDREN_ONLY)) {
        qs_xgrow((void **)&doomed, &cap, n + 1, sizeof(*doomed));
        doomed[n++] = en;
    }
    if (!(flags & ENGINE_DELETE_FORCE) && protect_check(e, domain, doomed, n, err) < 0)
        goto out;
    /* names outlive the tree, which each metadata delete makes stale */
    names = qs_xcalloc(n + 1, sizeof(char *));
    it.op = qs_xstrdup("delete");
    it.kind = qs_xstrdup(flags & ENGINE_DELETE_METADATA_ONLY ? "metadata" : "data");
    it.snapshot = qs_xstrdup(name);
    for (size_t i = 0; i < n; i++) {
        names[i] = qs_xstrdup(doomed[i]->name);
        intent_add_name(&it, names[i]);
    }
    /* T goes on to the metadata deletes, which keep it in step (or load their own when something else
     * changed the directory meanwhile); its entries are not looked at again here */
    if (n == 0) {
        ret = 0;
        goto out;
    }
    /* a linked clone's overlays are built on these snapshots' images */
    if (!(flags & ENGINE_DELETE_METADATA_ONLY) && clone_check_delete(e, domain, names, err) < 0)
        goto out;
    if (flags & ENGINE_DELETE_METADATA_ONLY) {
        unsigned mf = (flags & ENGINE_DELETE_CHILDREN ? MD_DELETE_CHILDREN : 0) |
                      (flags & ENGINE_DELETE_CHILDREN_ONLY ? MD_DELETE_CHILDREN_ONLY : 0);
        if (intent_begin(e, lock, domain, &it, err) < 0)
            goto out;
        ret = md_store_snapshot_delete_tree(e->store, lock, domain, t, name, mf, err);
        if (ret == 0)
            engine_step(e, "delete", "metadata");
        goto out;
    }
    if (engine_domain_connect(e, dom, &c, err) < 0)
        goto out;
    it.vm = qs_xstrdup(c ? "running" : "shutoff");
    if (intent_begin(e, lock, domain, &it, err) < 0)
        goto out;
    /* one snapshot at a time, leaves first, data then metadata: every step leaves both in agreement */
    for (size_t i = 0; i < n; i++) {
        size_t merged = qs_strv_len(it.merged);
        struct qs_error *local = NULL;
        if (engine_snapshot_delete_one(e, c, dom, lock, t, domain, names[i], &it, false, &local) < 0) {
            /* a refusal comes before this snapshot's data is touched: nothing is left to finish */
            untouched = qs_strv_len(it.merged) == merged && !it.garbage &&
                        (local->code == QS_ERR_UNSUPPORTED || local->code == QS_ERR_INVALID ||
                         local->code == QS_ERR_NOTFOUND || local->code == QS_ERR_EXISTS);
            qs_error_propagate(err, &local);
            goto out;
        }
    }
    ret = 0;
out:
    qmp_client_free(c);
    c = NULL;
    /* a failed delete is not undone: recovery goes on with it, or the record stays for the next command */
    if (it.pid)
        intent_finish(e, lock, domain, ret == 0 || untouched);
    if (ret == 0)
        nvram_tidy(e, NULL, dom, domain, names); /* the UEFI variables of the snapshots gone */
    intent_release(&it);
    qs_strv_free(names);
    free(doomed);
    md_tree_free(t);
    md_lock_free(lock);
    md_domain_free(dom);
    return ret;
}

/* ------------------------------------------------------------------------------------------------ */
/* Lists over a tree someone else keeps (session.c's cache). */

struct engine_snapshot_list *engine_snapshot_list_wrap(const struct md_tree *t, const struct md_entry *const *entries,
                                                       size_t n, int64_t pause_us, void (*release)(void *owner),
                                                       void *owner)
{
    struct engine_snapshot_list *l = qs_xcalloc(1, sizeof(*l));

    l->tree = (struct md_tree *)t;
    l->items = qs_xcalloc(n + 1, sizeof(*l->items));
    for (size_t i = 0; i < n; i++)
        l->items[i] = (struct engine_snapshot){t, entries[i], pause_us >= 0, pause_us};
    l->n = n;
    l->release = release;
    l->owner = owner;
    return l;
}
