/* md_tree.c: the snapshot tree of one domain: loading through the index, queries, virsh's list filters. */
#include "md_priv.h"
#include "qs_file.h"
#include "qs_util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define INDEX_MAGIC "qsnap-index 1"
#define INDEX_MAX (256u * 1024 * 1024)
/* Files changed this recently are not vouched for by the index (mtime granularity, "racy git"). */
#define RACY_NS (2ll * 1000 * 1000 * 1000)

struct node {
    struct md_entry e; /* first: entries handed out are nodes */
    long long size, mtime_ns, ino;
    struct node *parent;
    struct node **children;
    size_t pre, last; /* pre-order number and the last one in this subtree */
    bool seen;
};

/* Strings live in chunks owned by the tree. */
struct chunk {
    struct chunk *next;
    size_t used, cap;
    char data[];
};

struct md_tree {
    char *domain;
    struct node *nodes;
    size_t n, cap;
    struct node **by_name;
    struct node **topo;
    struct node **roots;
    size_t nroots;
    struct node **child_pool;
    struct node *current;
    struct md_map names;
    struct chunk *chunks;
    size_t parsed;
    bool index_written;
};

static const char *intern(struct md_tree *t, const char *s, size_t len)
{
    struct chunk *c = t->chunks;
    char *p;

    if (!s)
        return NULL;
    if (!c || c->cap - c->used < len + 1) {
        size_t cap = len + 1 > 65536 ? len + 1 : 65536;
        c = qs_xmalloc(sizeof(*c) + cap);
        c->used = 0;
        c->cap = cap;
        c->next = t->chunks;
        t->chunks = c;
    }
    p = c->data + c->used;
    memcpy(p, s, len);
    p[len] = '\0';
    c->used += len + 1;
    return p;
}

static const char *intern0(struct md_tree *t, const char *s)
{
    return s ? intern(t, s, strlen(s)) : NULL;
}

void md_tree_free(struct md_tree *t)
{
    if (!t)
        return;
    while (t->chunks) {
        struct chunk *c = t->chunks;
        t->chunks = c->next;
        free(c);
    }
    md_map_release(&t->names);
    free(t->nodes);
    free(t->by_name);
    free(t->topo);
    free(t->roots);
    free(t->child_pool);
    free(t->domain);
    free(t);
}

static struct node *node_add(struct md_tree *t)
{
    struct node *n;
    qs_xgrow((void **)&t->nodes, &t->cap, t->n + 1, sizeof(*t->nodes));
    n = &t->nodes[t->n++];
    memset(n, 0, sizeof(*n));
    return n;
}

static void node_from_snapshot(struct md_tree *t, struct node *n, const struct md_snapshot *s)
{
    n->e.name = intern0(t, s->name);
    n->e.parent = intern0(t, s->parent);
    n->e.description = intern0(t, s->description);
    n->e.state = s->state;
    n->e.creation_time = s->creation_time;
    n->e.memory = s->memory;
    n->e.memory_file = intern0(t, s->memory_file);
    for (size_t i = 0; i < s->ndisks; i++)
        n->e.disk_locations |= 1u << s->disks[i].snapshot;
    n->e.external = md_snapshot_is_external(s);
    n->e.current = s->current;
}

/* ---- the index file ---- */

static void esc_field(struct qs_buf *b, const char *s)
{
    if (!s)
        return;
    for (const char *p = s; *p; p++) {
        switch (*p) {
        case '\\': qs_buf_adds(b, "\\\\"); break;
        case '\t': qs_buf_adds(b, "\\t"); break;
        case '\n': qs_buf_adds(b, "\\n"); break;
        case '\r': qs_buf_adds(b, "\\r"); break;
        default: qs_buf_add(b, p, 1);
        }
    }
}

static char *index_format(const struct md_tree *t)
{
    struct qs_buf b;
    struct timespec now;
    long long now_ns;

    clock_gettime(CLOCK_REALTIME, &now);
    now_ns = (long long)now.tv_sec * 1000000000ll + now.tv_nsec;
    qs_buf_init(&b, 0);
    qs_buf_adds(&b, INDEX_MAGIC "\n");
    for (size_t i = 0; i < t->n; i++) {
        const struct node *n = t->by_name[i];
        bool racy = n->mtime_ns > now_ns - RACY_NS;
        esc_field(&b, n->e.file);
        qs_buf_addf(&b, "\t%lld\t%lld\t%lld\t", racy ? -1ll : n->size, n->mtime_ns, n->ino);
        esc_field(&b, n->e.name);
        qs_buf_adds(&b, "\t");
        esc_field(&b, n->e.parent);
        qs_buf_addf(&b, "\t%d\t%lld\t%d\t", n->e.state, n->e.creation_time, n->e.memory);
        esc_field(&b, n->e.memory_file);
        qs_buf_addf(&b, "\t%u\t%d\t%d\t", n->e.disk_locations, n->e.external, n->e.current);
        esc_field(&b, n->e.description);
        qs_buf_adds(&b, "\n");
    }
    qs_buf_addf(&b, "end %zu\n", t->n);
    return qs_buf_detach(&b, NULL);
}

/* One record of the index, pointing into the (unescaped in place) index text. */
struct irec {
    char *f[14];
    bool used;
};
enum { F_FILE, F_SIZE, F_MTIME, F_INO, F_NAME, F_PARENT, F_STATE, F_CTIME, F_MEM, F_MEMFILE, F_DISKS, F_EXT,
       F_CUR, F_DESC, F__N };

/* Unescapes S in place; false on a bad escape. */
static bool unesc(char *s)
{
    char *w = s;
    for (char *r = s; *r; r++) {
        if (*r != '\\') {
            *w++ = *r;
            continue;
        }
        switch (*++r) {
        case '\\': *w++ = '\\'; break;
        case 't': *w++ = '\t'; break;
        case 'n': *w++ = '\n'; break;
        case 'r': *w++ = '\r'; break;
        default: return false;
        }
    }
    *w = '\0';
    return true;
}

/* Parses the index text in place into records; false when it is not a complete, well-formed index. */
static bool index_parse(char *data, struct irec **recs, size_t *nrecs)
{
    char *p = data, *line;
    struct irec *v = NULL;
    size_t n = 0, cap = 0;
    bool ended = false;

    line = strsep(&p, "\n");
    if (!line || strcmp(line, INDEX_MAGIC) != 0)
        return false;
    while (p && *p) {
        struct irec r = { 0 };
        char *q;
        size_t k = 0;
        line = strsep(&p, "\n");
        if (qs_str_has_prefix(line, "end ")) {
            long long cnt;
            ended = md_parse_ll(line + 4, &cnt) == 0 && cnt == (long long)n && (!p || !*p);
            break;
        }
        q = line;
        while (q && k < F__N)
            r.f[k++] = strsep(&q, "\t");
        if (k != F__N || q)
            goto bad;
        for (k = 0; k < F__N; k++)
            if (!unesc(r.f[k]))
                goto bad;
        qs_xgrow((void **)&v, &cap, n + 1, sizeof(*v));
        v[n++] = r;
    }
    if (!ended)
        goto bad;
    *recs = v;
    *nrecs = n;
    return true;
bad:
    free(v);
    return false;
}

static bool node_from_index(struct md_tree *t, struct node *n, const struct irec *r)
{
    long long v[9];
    const int idx[9] = { F_SIZE, F_MTIME, F_INO, F_STATE, F_CTIME, F_MEM, F_DISKS, F_EXT, F_CUR };

    for (int i = 0; i < 9; i++)
        if (md_parse_ll(r->f[idx[i]], &v[i]) < 0)
            return false;
    if (v[3] < 0 || v[3] >= MD_STATE__LAST || v[5] < 0 || v[5] >= MD_LOCATION__LAST || !*r->f[F_NAME])
        return false;
    n->size = v[0];
    n->mtime_ns = v[1];
    n->ino = v[2];
    n->e.state = (int)v[3];
    n->e.creation_time = v[4];
    n->e.memory = (int)v[5];
    n->e.disk_locations = (unsigned)v[6];
    n->e.external = v[7] != 0;
    n->e.current = v[8] != 0;
    n->e.name = intern0(t, r->f[F_NAME]);
    n->e.parent = *r->f[F_PARENT] ? intern0(t, r->f[F_PARENT]) : NULL;
    n->e.memory_file = *r->f[F_MEMFILE] ? intern0(t, r->f[F_MEMFILE]) : NULL;
    n->e.description = *r->f[F_DESC] ? intern0(t, r->f[F_DESC]) : NULL;
    return true;
}

/* ---- building the tree ---- */

static int name_cmp(const void *a, const void *b)
{
    const struct node *x = *(struct node *const *)a, *y = *(struct node *const *)b;
    int r = strcasecmp(x->e.name, y->e.name);
    return r ? r : strcmp(x->e.name, y->e.name);
}

static int build(struct md_tree *t, struct qs_error **err)
{
    size_t *nch = NULL, k, sp = 0, pre = 0;
    struct node **stack = NULL;
    int ret = -1;

    md_map_init(&t->names, t->n);
    for (size_t i = 0; i < t->n; i++) {
        struct node *n = &t->nodes[i], *other;
        if ((other = md_map_put(&t->names, n->e.name, n))) {
            qs_error_set(err, QS_ERR_INVALID, "snapshot '%s' of domain '%s' is defined twice ('%s' and '%s')",
                         n->e.name, t->domain, other->e.file, n->e.file);
            goto out;
        }
        if (n->e.current) {
            if (t->current) {
                qs_error_set(err, QS_ERR_INVALID,
                             "too many snapshots claiming to be current for domain '%s' ('%s' and '%s')", t->domain,
                             t->current->e.name, n->e.name);
                goto out;
            }
            t->current = n;
        }
    }
    t->by_name = qs_xcalloc(t->n + 1, sizeof(*t->by_name));
    for (size_t i = 0; i < t->n; i++)
        t->by_name[i] = &t->nodes[i];
    qsort(t->by_name, t->n, sizeof(*t->by_name), name_cmp);

    /* link parents; children lists come out sorted because we walk by name */
    nch = qs_xcalloc(t->n + 1, sizeof(*nch));
    for (size_t i = 0; i < t->n; i++) {
        struct node *n = t->by_name[i];
        if (!n->e.parent) {
            t->nroots++;
            continue;
        }
        if (!(n->parent = md_map_get(&t->names, n->e.parent))) {
            qs_error_set(err, QS_ERR_INVALID,
                         "snapshots have inconsistent relations for domain '%s': parent '%s' of snapshot '%s' not found",
                         t->domain, n->e.parent, n->e.name);
            goto out;
        }
        if (n->parent == n) {
            qs_error_set(err, QS_ERR_INVALID,
                         "snapshots have inconsistent relations for domain '%s': snapshot '%s' is its own parent",
                         t->domain, n->e.name);
            goto out;
        }
        n->parent->e.nchildren++;
    }
    t->child_pool = qs_xcalloc(t->n + 1, sizeof(*t->child_pool));
    t->roots = qs_xcalloc(t->nroots + 1, sizeof(*t->roots));
    k = 0;
    for (size_t i = 0; i < t->n; i++) {
        struct node *n = &t->nodes[i];
        n->children = t->child_pool + k;
        k += n->e.nchildren;
    }
    k = 0;
    for (size_t i = 0; i < t->n; i++) {
        struct node *n = t->by_name[i];
        if (n->parent) {
            size_t idx = (size_t)(n->parent - t->nodes);
            n->parent->children[nch[idx]++] = n;
        } else {
            t->roots[k++] = n;
        }
    }

    /* pre-order walk from the roots (topological order); whatever it misses sits on a cycle */
    t->topo = qs_xcalloc(t->n + 1, sizeof(*t->topo));
    stack = qs_xcalloc(t->n + 1, sizeof(*stack));
    for (size_t r = t->nroots; r-- > 0;)
        stack[sp++] = t->roots[r];
    while (sp) {
        struct node *n = stack[--sp];
        n->seen = true;
        n->pre = pre;
        n->e.depth = n->parent ? n->parent->e.depth + 1 : 0;
        t->topo[pre++] = n;
        for (size_t c = n->e.nchildren; c-- > 0;)
            stack[sp++] = n->children[c];
    }
    if (pre != t->n) {
        for (size_t i = 0; i < t->n; i++) {
            struct node *n = t->by_name[i];
            if (!n->seen) {
                qs_error_set(err, QS_ERR_INVALID,
                             "snapshots have inconsistent relations for domain '%s': parent '%s' of snapshot '%s' "
                             "creates a cycle",
                             t->domain, n->e.parent, n->e.name);
                goto out;
            }
        }
    }
    for (size_t i = t->n; i-- > 0;) {
        struct node *n = t->topo[i];
        n->last = n->pre;
        for (size_t c = 0; c < n->e.nchildren; c++)
            if (n->children[c]->last > n->last)
                n->last = n->children[c]->last;
    }
    ret = 0;
out:
    free(nch);
    free(stack);
    return ret;
}

/* The index is a cache: replaced atomically (temp + rename) but not fsync'd - a crash may lose it or leave
 * it torn, and index_parse() then rejects it ("end N") and the next load rebuilds it from the files. */
static int index_write(int dir, const char *data)
{
    char tmp[] = MD_INDEX_NAME ".tmp";
    int fd, ret = -1;

    unlinkat(dir, tmp, 0);
    if ((fd = openat(dir, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600)) < 0)
        return -1;
    if (qs_write_all(fd, data, strlen(data)) == 0 && close(fd) == 0 && renameat(dir, tmp, dir, MD_INDEX_NAME) == 0)
        ret = 0;
    else
        unlinkat(dir, tmp, 0);
    return ret;
}

/* Writes the index when we may: under the caller's lock, or the domain lock if it is free right now. */
static void index_store(struct md_store *s, struct md_tree *t, int dir, const struct md_lock *lock)
{
    struct md_lock *own = NULL;
    char *data;

    if (!md_lock_covers(lock, s, t->domain) && !(own = md_lock_acquire(s, t->domain, 0, NULL)))
        return;
    data = index_format(t);
    if (index_write(dir, data) == 0)
        t->index_written = true;
    free(data);
    md_lock_free(own);
}

struct md_tree *md_tree_load(struct md_store *s, const char *domain, const struct md_lock *lock,
                             struct qs_error **err)
{
    return md_tree_load_internal(s, domain, lock, true, err);
}

static struct md_tree *load_once(struct md_store *s, const char *domain, const struct md_lock *lock,
                                 bool write_index, struct qs_error **err);

/*
 * A reader without the lock loads between two readings of the directory's generation (md_store_gen_read):
 * an odd one means a writer is between files, a changed one that it went on meanwhile - either way the
 * load is taken again, so no reader sees half of a change (no current snapshot, or a child whose parent
 * just went). A generation that stays odd (a writer that died; the next one repairs it) is waited for
 * 2 s at most.
 */
struct md_tree *md_tree_load_internal(struct md_store *s, const char *domain, const struct md_lock *lock,
                                      bool write_index, struct qs_error **err)
{
    struct md_tree *t = NULL;

    if (lock)
        return load_once(s, domain, lock, write_index, err);
    for (int attempt = 0; attempt < 200; attempt++) {
        uint64_t g1 = md_store_gen_read(s, domain), g2;
        struct qs_error *local = NULL;
        if (g1 & 1) {
            struct timespec ts = {0, 10 * 1000 * 1000};
            nanosleep(&ts, NULL);
            continue;
        }
        t = load_once(s, domain, NULL, write_index, &local);
        g2 = md_store_gen_read(s, domain);
        if (g1 == g2) {
            qs_error_propagate(err, &local);
            return t;
        }
        qs_error_free(local);
        md_tree_free(t);
        t = NULL;
    }
    return load_once(s, domain, NULL, write_index, err);
}

static struct md_tree *load_once(struct md_store *s, const char *domain, const struct md_lock *lock,
                                 bool write_index, struct qs_error **err)
{
    struct md_tree *t = qs_xcalloc(1, sizeof(*t)), *ret = NULL;
    struct qs_error *e = NULL;
    struct irec *recs = NULL;
    struct md_map files = { 0 };
    size_t nrecs = 0;
    char *idx = NULL, *data = NULL;
    size_t len;
    bool dirty = false;
    int dir = -1;
    DIR *dp = NULL;
    struct dirent *de;
    struct timespec now_ts;
    long long now_ns;

    t->domain = qs_xstrdup(domain ? domain : "");
    if ((dir = md_store_snapdir_open(s, domain, false, &e)) < 0) {
        if (e->code != QS_ERR_NOTFOUND) {
            qs_error_propagate(err, &e);
            goto out;
        }
        if (build(t, err) < 0)
            goto out;
        ret = t;
        goto out;
    }
    if (qs_file_read(dir, MD_INDEX_NAME, INDEX_MAX, &idx, &len, NULL) == 0 && strlen(idx) == len &&
        index_parse(idx, &recs, &nrecs)) {
        md_map_init(&files, nrecs);
        for (size_t i = 0; i < nrecs; i++)
            md_map_put(&files, recs[i].f[F_FILE], &recs[i]);
    } else {
        dirty = true;
        md_map_init(&files, 0);
    }

    {
        int dfd = dup(dir);
        if (dfd < 0 || !(dp = fdopendir(dfd))) {
            qs_error_set_errno(err, QS_ERR_IO, errno, "cannot read snapshot directory of domain '%s'", domain);
            qs_close(dfd);
            goto out;
        }
    }
    clock_gettime(CLOCK_REALTIME, &now_ts);
    now_ns = (long long)now_ts.tv_sec * 1000000000ll + now_ts.tv_nsec;
    while ((de = readdir(dp))) {
        struct stat st;
        struct irec *r;
        struct node *n;
        if (de->d_name[0] == '.' || !qs_str_has_suffix(de->d_name, ".xml"))
            continue;
        if (fstatat(dir, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            if (errno == ENOENT) /* raced with a delete */
                continue;
            qs_error_set_errno(err, QS_ERR_IO, errno, "cannot stat snapshot file '%s'", de->d_name);
            goto out;
        }
        if (!S_ISREG(st.st_mode))
            continue;
        n = node_add(t);
        n->e.file = intern0(t, de->d_name);
        n->size = (long long)st.st_size;
        n->mtime_ns = (long long)st.st_mtim.tv_sec * 1000000000ll + st.st_mtim.tv_nsec;
        n->ino = (long long)st.st_ino;
        r = md_map_get(&files, de->d_name);
        if (r && !r->used) {
            long long sz, mt, in;
            r->used = true;
            if (md_parse_ll(r->f[F_SIZE], &sz) == 0 && md_parse_ll(r->f[F_MTIME], &mt) == 0 &&
                md_parse_ll(r->f[F_INO], &in) == 0 && sz == n->size && mt == n->mtime_ns && in == n->ino &&
                node_from_index(t, n, r))
                continue;
        }
        /* new or changed: parse it */
        {
            struct md_snapshot *snap;
            const char *file = n->e.file;
            long long size = n->size, mt = n->mtime_ns, ino = n->ino, mt0, in0;
            /* a file the index already lists as racy (size -1, same mtime and inode) and that is still
             * racy would be written back exactly as it is: no reason to rewrite the index */
            if (!(r && strcmp(r->f[F_SIZE], "-1") == 0 && md_parse_ll(r->f[F_MTIME], &mt0) == 0 &&
                  md_parse_ll(r->f[F_INO], &in0) == 0 && mt0 == mt && in0 == ino && mt > now_ns - RACY_NS))
                dirty = true;
            free(data);
            data = NULL;
            if (qs_file_read(dir, de->d_name, MD_FILE_MAX, &data, &len, err) < 0)
                goto out;
            if (!(snap = md_snapshot_parse(data, len, MD_PARSE_ON_DISK | MD_PARSE_SKIP_SUBTREES, err))) {
                qs_error_prefix(err, "snapshot file '%s' of domain '%s'", de->d_name, domain);
                goto out;
            }
            memset(n, 0, sizeof(*n));
            n->e.file = file;
            n->size = size;
            n->mtime_ns = mt;
            n->ino = ino;
            node_from_snapshot(t, n, snap);
            md_snapshot_free(snap);
            t->parsed++;
        }
    }
    for (size_t i = 0; i < nrecs; i++)
        if (!recs[i].used)
            dirty = true; /* a file vanished */
    if (build(t, err) < 0)
        goto out;
    if (dirty && write_index)
        index_store(s, t, dir, lock);
    ret = t;
out:
    if (dp)
        closedir(dp);
    qs_close(dir);
    qs_error_free(e);
    md_map_release(&files);
    free(recs);
    free(idx);
    free(data);
    if (!ret)
        md_tree_free(t);
    return ret;
}

/* ---- queries ---- */

size_t md_tree_count(const struct md_tree *t) { return t->n; }
size_t md_tree_files_parsed(const struct md_tree *t) { return t->parsed; }
bool md_tree_index_written(const struct md_tree *t) { return t->index_written; }

const struct md_entry *md_tree_find(const struct md_tree *t, const char *name)
{
    struct node *n = name ? md_map_get(&t->names, name) : NULL;
    return n ? &n->e : NULL;
}

const struct md_entry *md_tree_current(const struct md_tree *t)
{
    return t->current ? &t->current->e : NULL;
}

const struct md_entry *md_tree_parent(const struct md_tree *t, const struct md_entry *e)
{
    const struct node *n = (const struct node *)e;
    return n && n->parent ? &n->parent->e : NULL;
}

const struct md_entry *md_tree_child(const struct md_tree *t, const struct md_entry *e, size_t i)
{
    const struct node *n = (const struct node *)e;
    return n && i < n->e.nchildren ? &n->children[i]->e : NULL;
}

size_t md_tree_root_count(const struct md_tree *t) { return t->nroots; }

const struct md_entry *md_tree_root(const struct md_tree *t, size_t i)
{
    return i < t->nroots ? &t->roots[i]->e : NULL;
}

bool md_tree_is_ancestor(const struct md_tree *t, const struct md_entry *a, const struct md_entry *e)
{
    const struct node *x = (const struct node *)a, *y = (const struct node *)e;
    return x && y && x != y && y->pre > x->pre && y->pre <= x->last;
}

#define LEAF_FLAGS (MD_LIST_LEAVES | MD_LIST_NO_LEAVES)
#define META_FLAGS (MD_LIST_METADATA | MD_LIST_NO_METADATA)
#define STATUS_FLAGS (MD_LIST_INACTIVE | MD_LIST_ACTIVE | MD_LIST_DISK_ONLY)
#define LOCATION_FLAGS (MD_LIST_INTERNAL | MD_LIST_EXTERNAL)
#define ALL_FLAGS ((MD_LIST_TREE << 1) - 1)

static bool keep(const struct node *n, unsigned flags)
{
    /* virsh applies --leaves and --no-leaves each on its own: both together select nothing */
    if ((flags & MD_LIST_LEAVES) && n->e.nchildren)
        return false;
    if ((flags & MD_LIST_NO_LEAVES) && !n->e.nchildren)
        return false;
    if ((flags & META_FLAGS) == MD_LIST_NO_METADATA)
        return false; /* every snapshot qsnap knows has metadata */
    if (flags & STATUS_FLAGS) {
        bool shutoff = n->e.state == MD_STATE_SHUTOFF, disk = n->e.state == MD_STATE_DISK_SNAPSHOT;
        if (!((flags & MD_LIST_INACTIVE) && shutoff) && !((flags & MD_LIST_DISK_ONLY) && disk) &&
            !((flags & MD_LIST_ACTIVE) && !shutoff && !disk))
            return false;
    }
    if (flags & LOCATION_FLAGS) {
        if (!((flags & MD_LIST_EXTERNAL) && n->e.external) && !((flags & MD_LIST_INTERNAL) && !n->e.external))
            return false;
    }
    return true;
}

int md_tree_list(const struct md_tree *t, const char *from, unsigned flags, const struct md_entry ***out, size_t *nout,
                 struct qs_error **err)
{
    const struct node *f = NULL;
    struct node **order;
    const struct md_entry **v;
    size_t n = 0;

    if (flags & ~ALL_FLAGS) {
        qs_error_set(err, QS_ERR_INVALID, "unsupported list flags 0x%x", flags & ~ALL_FLAGS);
        return -1;
    }
    if ((flags & MD_LIST_ROOTS) && (from || (flags & MD_LIST_TREE))) {
        qs_error_set(err, QS_ERR_INVALID, "listing roots cannot be combined with %s",
                     from ? "a starting snapshot" : "a tree listing");
        return -1;
    }
    if ((flags & MD_LIST_TREE) && (flags & (LEAF_FLAGS | STATUS_FLAGS | LOCATION_FLAGS))) {
        qs_error_set(err, QS_ERR_INVALID, "a tree listing cannot be filtered");
        return -1;
    }
    if ((flags & MD_LIST_DESCENDANTS) && !from) {
        qs_error_set(err, QS_ERR_INVALID, "listing descendants needs a starting snapshot");
        return -1;
    }
    if (from && !(f = md_map_get(&t->names, from))) {
        qs_error_set(err, QS_ERR_NOTFOUND, "snapshot '%s' not found in domain '%s'", from, t->domain);
        return -1;
    }
    order = (flags & (MD_LIST_TOPOLOGICAL | MD_LIST_TREE)) ? t->topo : t->by_name;
    v = qs_xcalloc(t->n + 1, sizeof(*v));
    if ((flags & MD_LIST_TREE) && f)
        v[n++] = &f->e;
    for (size_t i = 0; i < t->n; i++) {
        const struct node *x = order[i];
        if (f) {
            if ((flags & (MD_LIST_DESCENDANTS | MD_LIST_TREE))) {
                if (!(x->pre > f->pre && x->pre <= f->last))
                    continue;
            } else if (x->parent != f) {
                continue;
            }
        } else if ((flags & MD_LIST_ROOTS) && x->parent) {
            continue;
        }
        if (!keep(x, flags))
            continue;
        v[n++] = &x->e;
    }
    *out = v;
    *nout = n;
    return 0;
}

int md_tree_check_redefine(const struct md_tree *t, const char *domain_uuid, const struct md_snapshot *snap,
                           struct qs_error **err)
{
    const struct node *other, *p;

    if (md_snapshot_validate(snap, err) < 0)
        return -1;
    if (domain_uuid) {
        struct md_domain *d = md_domain_parse(snap->domain_xml, strlen(snap->domain_xml), err);
        bool same;
        if (!d) {
            qs_error_prefix(err, "domain of snapshot '%s'", snap->name);
            return -1;
        }
        same = md_domain_uuid(d) && strcasecmp(md_domain_uuid(d), domain_uuid) == 0;
        md_domain_free(d);
        if (!same) {
            qs_error_set(err, QS_ERR_INVALID, "definition for snapshot '%s' must use uuid '%s'", snap->name,
                         domain_uuid);
            return -1;
        }
    }
    if (snap->parent) {
        if (strcmp(snap->parent, snap->name) == 0) {
            qs_error_set(err, QS_ERR_INVALID, "cannot set snapshot '%s' as its own parent", snap->name);
            return -1;
        }
        if (!(p = md_map_get(&t->names, snap->parent))) {
            qs_error_set(err, QS_ERR_INVALID, "invalid argument: parent %s for moment %s not found", snap->parent,
                         snap->name);
            return -1;
        }
        for (; p->parent; p = p->parent) {
            if (strcmp(p->parent->e.name, snap->name) == 0) {
                qs_error_set(err, QS_ERR_INVALID, "parent '%s' would create cycle to '%s'", p->e.name, snap->name);
                return -1;
            }
        }
    }
    if ((other = md_map_get(&t->names, snap->name))) {
        bool was_online = other->e.state == MD_STATE_RUNNING || other->e.state == MD_STATE_PAUSED;
        bool online = snap->state == MD_STATE_RUNNING || snap->state == MD_STATE_PAUSED;
        if (was_online != online) {
            qs_error_set(err, QS_ERR_INVALID,
                         "cannot change between online and offline snapshot state in snapshot '%s'", snap->name);
            return -1;
        }
        if ((other->e.state == MD_STATE_DISK_SNAPSHOT) != (snap->state == MD_STATE_DISK_SNAPSHOT)) {
            qs_error_set(err, QS_ERR_INVALID, "cannot change between disk only and full system in snapshot '%s'",
                         snap->name);
            return -1;
        }
    }
    return 0;
}
