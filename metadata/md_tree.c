/* md_tree.c: the snapshot tree of one domain: loading through the index, queries, virsh's list filters. */
#include "md_priv.h"
#include "qs_file.h"
#include "qs_util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/*
 * The index: ROOT/run/DOM.index, a cache of what listing needs of every snapshot file, in one binary file:
 * a header, one fixed-size record per snapshot in virsh's name order (the parent as a record number), and
 * the strings. A checksum covers the records and strings; a torn or foreign file is simply rebuilt.
 *
 * It vouches for the snapshot directory by the directory's stamp (device, inode, mtime, ctime): every way
 * qsnap and libvirt change snapshot files - a new file renamed into place, an unlink - changes the
 * directory, and a qsnap writer records the stamp after its own change. So a reader whose directory still
 * has the recorded stamp uses the index without looking at a single snapshot file (a stat of each costs
 * ~3 us here: 30 ms at 10,000 snapshots). A file rewritten in place, which changes no directory, is seen by
 * md_tree_load_checked() (snapshot-check) and whenever the directory changes otherwise.
 *
 * A stamp taken in the same clock tick as the directory's last change cannot tell a later change in that
 * tick ("racy", as git says of its index): such a stamp is trusted only after the names and inode numbers
 * of the directory's entries were compared with the records - unless the writer saw that the directory's
 * timestamps are finer than the tick (Linux's multigrain timestamps, 6.13 on).
 *
 * The index lives outside the snapshot directory so that writing it never changes the stamp it records.
 */
#define IX_MAGIC "QSNAPIX5"
#define IX_BOM 0x01020304u
#define IX_NONE UINT32_MAX
#define IX_MAX (1u << 30)
/* Files changed this recently are not vouched for by their own stat in the full check ("racy git"). */
#define RACY_NS (2ll * 1000 * 1000 * 1000)
/* Every snapshot of the index is in the file NAME.xml (as qsnap and libvirt name them): a writer may then
 * tell from the directory alone whether a snapshot of a name exists (md_index_quick). */
#define IXS_NAMED 1u

struct ix_stamp {
    uint64_t dev, ino;
    int64_t mtime_ns, ctime_ns;
    int64_t written_ns; /* CLOCK_REALTIME when the stamp was taken */
    uint32_t fine;      /* the directory's timestamps were seen finer than the clock tick */
    uint32_t flags;     /* IXS_* */
    uint32_t current;   /* the index's current snapshot, a record number (IX_NONE: none; 0 in a journal) */
    uint32_t pad;
    uint64_t body_sum;  /* the body this stamp vouches for */
    uint64_t sum;       /* of the fields above */
};

struct ix_header {
    char magic[8];
    uint32_t bom, header_size;
    uint64_t total_size;
    uint64_t body_sum; /* of everything after the header (ix_body_sum) */
    uint32_t count, rec_size;
    uint32_t strings_size, nroots;
    struct ix_stamp stamp; /* with the current record, under the stamp's sum */
};

/* One snapshot, with its place in the tree worked out by the writer (relink()), so that a reader has
 * nothing to compute. Record numbers are positions in name order. */
struct ix_rec {
    uint32_t name, description, file, memory_file; /* offsets into the strings; IX_NONE: none */
    uint32_t parent;                               /* record number; IX_NONE: a root */
    uint32_t disk_locations;
    uint32_t nchildren, children; /* its children: that many entries of the children list from there */
    uint32_t pre, last, depth;    /* pre-order number, the last one in its subtree, depth */
    uint8_t state, memory, external, current;
    int64_t creation_time;
    int64_t size, mtime_ns; /* the file's stat when it was read; size -1: too recent to vouch for */
    uint64_t ino;
    uint32_t aux; /* offset into the strings; IX_NONE: none */
    uint32_t pad;
    uint64_t sum; /* of the fields above: md_tree_peek() trusts one record without the whole index's sum */
};
_Static_assert(sizeof(struct ix_rec) == 96, "ix_rec");
/* After the records: the children list (record numbers, each parent's children in name order: count -
 * nroots of them), the pre-order (count record numbers), the roots (nroots record numbers, by name), then
 * the strings. */

struct node {
    struct md_entry e; /* first: entries handed out are nodes */
    long long size, mtime_ns, ino;
    struct node *up;   /* the parent as loaded or noted; relink() derives the rest from it */
    struct node *parent;
    struct node **children;
    size_t pre, last; /* pre-order number and the last one in this subtree */
    uint32_t rank;
    bool seen;
};

/*
 * A tree's memory: regions it allocates from and frees only as a whole. Entries stay where they are while a
 * writer adds snapshots. A big region is advised into huge pages: a page fault costs ~30 us on the virtual
 * machines qsnap is measured on (touching 2 MB in 4 KiB pages took 13-20 ms, in a huge page 0.3 ms), and a
 * tree of 10,000 snapshots takes 2 MB.
 */
struct region {
    struct region *next;
    size_t size, used; /* usable bytes after the header */
    bool mapped;       /* mmap'd (big), else malloc'd */
};
#define REGION_HDR ((sizeof(struct region) + 15) & ~(size_t)15)
#define HUGE_SIZE ((size_t)2 << 20)

struct md_tree {
    char *domain;
    struct node **by_name; /* every snapshot, in virsh's name order */
    size_t n, cap;
    struct node **topo;
    struct node **roots;
    size_t nroots;
    struct node **child_pool;
    struct node *current;
    struct region *regions;
    const char *ixdata; /* the index mapped; strings of nodes loaded from it point into it */
    size_t ixlen;
    size_t parsed;
    int path;     /* MD_LOAD_* */
    bool index_written;
    bool broken;  /* a writer's note did not fit the tree: its commit drops the index */
    bool fine;    /* the directory's timestamps were seen finer than the clock tick */
    bool aux_dirty;   /* md_tree_set_aux() gave a node new aux data */
    bool shape_dirty; /* a writer's note added, removed or re-parented a snapshot: the commit relinks */
    bool have_stamp;  /* loaded from the index alone: its stamp is in stamp */
    bool partial;     /* md_tree_peek(): one snapshot, no writer may use it */
    bool leaf;        /* md_tree_peek_leaf(): one snapshot without children, for a quick delete */
    uint64_t peek_body; /* the body sum of the index it was peeked from */
    size_t peek_jl;     /* and its journal's length then (0: none) */
    struct ix_stamp stamp;
    struct stat at_load; /* the snapshot directory the tree was read from (st_ino 0: none) */
};

/* SIZE bytes (rounded up to huge pages, *maplen) of fresh anonymous memory aligned to a huge page and asked to
 * be backed by huge pages: one page fault for 2 MiB, where 512 small pages would each cost one (~2 us even
 * prefaulted, on the virtual machines qsnap runs on, the first time each is touched). Unmap *maplen bytes. */
static char *huge_map(size_t size, size_t *maplen)
{
    size_t len = (size + HUGE_SIZE - 1) & ~(HUGE_SIZE - 1);
    char *p = mmap(NULL, len + HUGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), *a;

    if (p == MAP_FAILED)
        abort(); /* out of memory, as qs_xmalloc */
    /* aligned to a huge page, the rest given back */
    a = (char *)(((uintptr_t)p + HUGE_SIZE - 1) & ~(uintptr_t)(HUGE_SIZE - 1));
    if (a > p)
        munmap(p, (size_t)(a - p));
    munmap(a + len, (size_t)(p + len + HUGE_SIZE - (a + len)));
    madvise(a, len, MADV_HUGEPAGE);
    *maplen = len;
    return a;
}

static void *region_new(struct md_tree *t, size_t need)
{
    struct region *r;
    size_t size = need + REGION_HDR;

    if (size >= HUGE_SIZE / 4) {
        size_t len;
        r = (struct region *)huge_map(size, &len);
        r->size = len - REGION_HDR;
        r->mapped = true;
    } else {
        /* not zeroed here: t_alloc() zeroes what it hands out, so untouched pages stay unfaulted */
        size = size < 65536 ? 65536 : size;
        r = qs_xmalloc(size);
        r->size = size - REGION_HDR;
        r->mapped = false;
    }
    r->used = 0;
    r->next = t->regions;
    t->regions = r;
    return r;
}

/* SIZE zeroed bytes owned by T, 16-aligned. */
static void *t_alloc(struct md_tree *t, size_t size)
{
    struct region *r = t->regions;
    void *p;

    size = (size + 15) & ~(size_t)15;
    if (!r || r->size - r->used < size)
        r = region_new(t, size > 65536 ? size : 65536);
    p = (char *)r + REGION_HDR + r->used;
    r->used += size;
    if (!r->mapped) /* a fresh mapping is zero already */
        memset(p, 0, size);
    return p;
}

/* Room for NEED bytes of allocations in one region (a load sizes it from the snapshot count). */
static void t_reserve(struct md_tree *t, size_t need)
{
    struct region *r = t->regions;
    if (!r || r->size - r->used < need)
        region_new(t, need);
}

static const char *intern(struct md_tree *t, const char *s, size_t len)
{
    char *p;

    if (!s)
        return NULL;
    p = t_alloc(t, len + 1);
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

static const char *intern0(struct md_tree *t, const char *s)
{
    return s ? intern(t, s, strlen(s)) : NULL;
}

static struct md_tree *tree_new(const char *domain)
{
    struct md_tree *t = qs_xcalloc(1, sizeof(*t));
    t->domain = qs_xstrdup(domain ? domain : "");
    return t;
}

static void ix_release(const char *data, size_t len);

void md_tree_free(struct md_tree *t)
{
    if (!t)
        return;
    while (t->regions) {
        struct region *r = t->regions;
        t->regions = r->next;
        if (r->mapped)
            munmap(r, r->size + REGION_HDR);
        else
            free(r);
    }
    ix_release(t->ixdata, t->ixlen);
    free(t->domain);
    free(t);
}

/* A zeroed node, not yet in by_name. */
static struct node *node_alloc(struct md_tree *t)
{
    return t_alloc(t, sizeof(struct node));
}

/* Room for one more entry in by_name (arrays of the tree's memory are not reallocated: copied). */
static void by_name_room(struct md_tree *t)
{
    if (t->n + 1 >= t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 64;
        struct node **v = t_alloc(t, cap * sizeof(*v));
        if (t->n)
            memcpy(v, t->by_name, t->n * sizeof(*v));
        t->by_name = v;
        t->cap = cap;
    }
}

static void by_name_push(struct md_tree *t, struct node *n)
{
    by_name_room(t);
    t->by_name[t->n++] = n;
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
    n->e.disk_locations = 0;
    for (size_t i = 0; i < s->ndisks; i++)
        n->e.disk_locations |= 1u << s->disks[i].snapshot;
    n->e.external = md_snapshot_is_external(s);
    n->e.current = s->current;
    n->e.aux = NULL; /* derived from the file as it was: worked out again */
}

/* ---- order and lookup ---- */

/* virsh's order: case-insensitive, ties by bytes (a total order, so it can be searched) */
static int name_order(const char *a, const char *b)
{
    int r = strcasecmp(a, b);
    return r ? r : strcmp(a, b);
}

static int name_cmp(const void *a, const void *b)
{
    const struct node *x = *(struct node *const *)a, *y = *(struct node *const *)b;
    return name_order(x->e.name, y->e.name);
}

/* The position of NAME in by_name, or where it would go (*found false). */
static size_t find_pos(const struct md_tree *t, const char *name, bool *found)
{
    size_t lo = 0, hi = t->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int r = name_order(t->by_name[mid]->e.name, name);
        if (r == 0) {
            *found = true;
            return mid;
        }
        if (r < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

static struct node *find(const struct md_tree *t, const char *name)
{
    bool found;
    size_t i = name ? find_pos(t, name, &found) : 0;
    return name && found ? t->by_name[i] : NULL;
}

/* Whether FILE is NAME.xml, as qsnap and libvirt name a snapshot's file. */
static bool named_file(const char *name, const char *file)
{
    size_t n = strlen(name);
    return strncmp(file, name, n) == 0 && strcmp(file + n, ".xml") == 0;
}

static bool named(const struct md_entry *e)
{
    return named_file(e->name, e->file);
}

/* ---- structure ---- */

/*
 * From by_name (sorted) and every node's `up`: parents, children (sorted by name, as virsh --tree shows
 * them), roots, pre-order (topological) numbering and depth, the current snapshot. Fails on a second
 * current snapshot or a parent cycle.
 */
static int relink(struct md_tree *t, struct qs_error **err)
{
    size_t k = 0, sp = 0, pre = 0, *fill = NULL;
    struct node **stack = NULL;
    int ret = -1;

    t->topo = t->roots = t->child_pool = NULL;
    t->nroots = 0;
    t->current = NULL;
    for (size_t i = 0; i < t->n; i++) {
        struct node *n = t->by_name[i];
        n->rank = (uint32_t)i;
        n->e.nchildren = 0;
        n->seen = false;
    }
    for (size_t i = 0; i < t->n; i++) {
        struct node *n = t->by_name[i];
        n->parent = n->up;
        n->e.parent = n->up ? n->up->e.name : NULL;
        if (n->up)
            n->up->e.nchildren++;
        else
            t->nroots++;
        if (n->e.current) {
            if (t->current) {
                qs_error_set(err, QS_ERR_INVALID,
                             "too many snapshots claiming to be current for domain '%s' ('%s' and '%s')",
                             t->domain, t->current->e.name, n->e.name);
                goto out;
            }
            t->current = n;
        }
    }
    t->child_pool = t_alloc(t, (t->n + 1) * sizeof(*t->child_pool));
    t->roots = t_alloc(t, (t->nroots + 1) * sizeof(*t->roots));
    for (size_t i = 0; i < t->n; i++) {
        struct node *n = t->by_name[i];
        n->children = t->child_pool + k;
        k += n->e.nchildren;
    }
    fill = t_alloc(t, (t->n + 1) * sizeof(*fill));
    k = 0;
    for (size_t i = 0; i < t->n; i++) {
        struct node *n = t->by_name[i];
        if (n->parent)
            n->parent->children[fill[n->parent->rank]++] = n;
        else
            t->roots[k++] = n;
    }

    /* pre-order walk from the roots (topological order); whatever it misses sits on a cycle */
    t->topo = t_alloc(t, (t->n + 1) * sizeof(*t->topo));
    stack = t_alloc(t, (t->n + 1) * sizeof(*stack));
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
    return ret;
}

/* From nodes read from files (by_name unsorted, `up` unset, parents by name): sort, resolve, link. */
static int build(struct md_tree *t, struct qs_error **err)
{
    struct md_map names = {0};
    int ret = -1;

    md_map_init(&names, t->n);
    for (size_t i = 0; i < t->n; i++) {
        struct node *n = t->by_name[i], *other;
        if ((other = md_map_put(&names, n->e.name, n))) {
            qs_error_set(err, QS_ERR_INVALID, "snapshot '%s' of domain '%s' is defined twice ('%s' and '%s')",
                         n->e.name, t->domain, other->e.file, n->e.file);
            goto out;
        }
    }
    for (size_t i = 0; i < t->n; i++) {
        struct node *n = t->by_name[i];
        if (!n->e.parent)
            continue;
        if (!(n->up = md_map_get(&names, n->e.parent))) {
            qs_error_set(err, QS_ERR_INVALID,
                         "snapshots have inconsistent relations for domain '%s': parent '%s' of snapshot '%s' not found",
                         t->domain, n->e.parent, n->e.name);
            goto out;
        }
        if (n->up == n) {
            qs_error_set(err, QS_ERR_INVALID,
                         "snapshots have inconsistent relations for domain '%s': snapshot '%s' is its own parent",
                         t->domain, n->e.name);
            goto out;
        }
    }
    if (t->n > 1) /* no array at all for an empty tree: qsort must not see NULL */
        qsort(t->by_name, t->n, sizeof(*t->by_name), name_cmp);
    ret = relink(t, err);
out:
    md_map_release(&names);
    return ret;
}

/* ---- the index file ---- */

/* A fast 64-bit hash (four independent lanes of multiply-xorshift) to tell a whole, current index from a
 * torn or damaged one - not against forgery: anyone who can write the index can write the snapshot files.
 * Fed in pieces; TOTAL is known up front. */
struct hstate {
    uint64_t v[4];
    unsigned char buf[32];
    size_t nbuf;
};

static void h_init(struct hstate *st, uint64_t total)
{
    st->v[0] = 0x243f6a8885a308d3ull ^ total;
    st->v[1] = 0x13198a2e03707344ull ^ total;
    st->v[2] = 0xa4093822299f31d0ull ^ total;
    st->v[3] = 0x082efa98ec4e6c89ull ^ total;
    st->nbuf = 0;
}

static inline uint64_t h_lane(uint64_t v, uint64_t w)
{
    v = (v ^ w) * 0xff51afd7ed558ccdull;
    return v ^ (v >> 31);
}

static void h_block(struct hstate *st, const unsigned char *b)
{
    uint64_t w0, w1, w2, w3;
    memcpy(&w0, b, 8);
    memcpy(&w1, b + 8, 8);
    memcpy(&w2, b + 16, 8);
    memcpy(&w3, b + 24, 8);
    st->v[0] = h_lane(st->v[0], w0);
    st->v[1] = h_lane(st->v[1], w1);
    st->v[2] = h_lane(st->v[2], w2);
    st->v[3] = h_lane(st->v[3], w3);
}

static void h_add(struct hstate *st, const void *p, size_t n)
{
    const unsigned char *b = p;

    if (st->nbuf) {
        size_t k = 32 - st->nbuf < n ? 32 - st->nbuf : n;
        memcpy(st->buf + st->nbuf, b, k);
        st->nbuf += k;
        b += k;
        n -= k;
        if (st->nbuf < 32)
            return;
        h_block(st, st->buf);
        st->nbuf = 0;
    }
    if (n >= 32) { /* the lanes in registers for the bulk */
        uint64_t v0 = st->v[0], v1 = st->v[1], v2 = st->v[2], v3 = st->v[3], w0, w1, w2, w3;
        for (; n >= 32; b += 32, n -= 32) {
            memcpy(&w0, b, 8);
            memcpy(&w1, b + 8, 8);
            memcpy(&w2, b + 16, 8);
            memcpy(&w3, b + 24, 8);
            v0 = h_lane(v0, w0);
            v1 = h_lane(v1, w1);
            v2 = h_lane(v2, w2);
            v3 = h_lane(v3, w3);
        }
        st->v[0] = v0, st->v[1] = v1, st->v[2] = v2, st->v[3] = v3;
    }
    memcpy(st->buf, b, n);
    st->nbuf = n;
}

static uint64_t h_final(struct hstate *st)
{
    uint64_t h;

    memset(st->buf + st->nbuf, 0, 32 - st->nbuf);
    h_block(st, st->buf);
    h = st->v[0] ^ (st->v[1] << 17 | st->v[1] >> 47) ^ (st->v[2] << 31 | st->v[2] >> 33) ^
        (st->v[3] << 47 | st->v[3] >> 17);
    h = (h ^ (h >> 33)) * 0xc4ceb9fe1a85ec53ull;
    return h ^ (h >> 29);
}

static uint64_t ix_hash(const void *p, size_t n)
{
    struct hstate st;
    h_init(&st, n);
    h_add(&st, p, n);
    return h_final(&st);
}

uint64_t md_hash(const void *p, size_t n)
{
    return ix_hash(p, n);
}

static uint64_t stamp_sum(const struct ix_stamp *st)
{
    return ix_hash(st, offsetof(struct ix_stamp, sum));
}

static int64_t ts_ns(struct timespec ts)
{
    return (int64_t)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

static bool stat_same(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && ts_ns(a->st_mtim) == ts_ns(b->st_mtim) &&
           ts_ns(a->st_ctim) == ts_ns(b->st_ctim);
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts_ns(ts);
}

/* How far apart two changes of a directory may be and still get the same timestamp. */
static int64_t granularity_ns(const struct stat *dir)
{
    struct timespec res;
    int64_t g = 10 * 1000 * 1000;

    if (clock_getres(CLOCK_REALTIME_COARSE, &res) == 0 && ts_ns(res) > 0)
        g = ts_ns(res);
    /* a file system that keeps whole seconds (ext3, FAT keeps two) */
    if (dir->st_mtim.tv_nsec == 0 && dir->st_ctim.tv_nsec == 0)
        g = 2ll * 1000 * 1000 * 1000;
    return g;
}

bool md_stamp_fine(const struct stat *before, const struct stat *after)
{
    int64_t d = ts_ns(after->st_ctim) - ts_ns(before->st_ctim);
    return d > 0 && d < granularity_ns(after) / 2;
}

static bool stamp_matches(const struct ix_stamp *st, const struct stat *dir)
{
    return st->dev == (uint64_t)dir->st_dev && st->ino == (uint64_t)dir->st_ino &&
           st->mtime_ns == ts_ns(dir->st_mtim) && st->ctime_ns == ts_ns(dir->st_ctim);
}

/* A stamp taken in the tick of the directory's last change may miss a change later in that tick. */
static bool stamp_racy(const struct ix_stamp *st, const struct stat *dir)
{
    int64_t last = st->mtime_ns > st->ctime_ns ? st->mtime_ns : st->ctime_ns;
    return !st->fine && st->written_ns - last < granularity_ns(dir);
}

/* OBSERVED: when the content the stamp vouches for was seen (at or after DIR was taken). */
static void stamp_set(struct ix_stamp *st, const struct stat *dir, int64_t observed, bool fine, uint64_t body_sum,
                      uint32_t flags, uint32_t current)
{
    memset(st, 0, sizeof(*st));
    st->flags = flags;
    st->current = current;
    st->dev = (uint64_t)dir->st_dev;
    st->ino = (uint64_t)dir->st_ino;
    st->mtime_ns = ts_ns(dir->st_mtim);
    st->ctime_ns = ts_ns(dir->st_ctim);
    st->written_ns = observed;
    st->fine = fine;
    st->body_sum = body_sum;
    st->sum = stamp_sum(st);
}

/* A record's sum: its 88 bytes before the sum in two lanes, without the streaming hash's set-up (it is worked
 * out for every record of every index written: 10,000 of them at 10,000 snapshots). */
_Static_assert(offsetof(struct ix_rec, sum) == 88, "ix_rec sum");
static uint64_t rec_sum(const struct ix_rec *r)
{
    uint64_t w[11], a = 0x243f6a8885a308d3ull, b = 0x13198a2e03707344ull, h;

    memcpy(w, r, sizeof(w));
    for (size_t i = 0; i < 10; i += 2) {
        a = h_lane(a, w[i]);
        b = h_lane(b, w[i + 1]);
    }
    a = h_lane(a, w[10]);
    h = a ^ (b << 29 | b >> 35);
    h = (h ^ (h >> 33)) * 0xc4ceb9fe1a85ec53ull;
    return h ^ (h >> 29);
}

/* The header of DATA when it is a whole index of this build's layout (stamp not checked). */
static const struct ix_header *ix_header_ok(const char *data, size_t len)
{
    const struct ix_header *h = (const struct ix_header *)data;

    if (len < sizeof(*h) || memcmp(h->magic, IX_MAGIC, 8) != 0 || h->bom != IX_BOM ||
        h->header_size != sizeof(*h) || h->total_size != len || h->rec_size != sizeof(struct ix_rec) ||
        h->strings_size < 1 || h->nroots > h->count ||
        (uint64_t)h->count * (sizeof(struct ix_rec) + 2 * sizeof(uint32_t)) + h->strings_size + sizeof(*h) != len)
        return NULL;
    return h;
}

static const char *ix_strings(const char *data, const struct ix_header *h)
{
    return data + sizeof(*h) + (size_t)h->count * (sizeof(struct ix_rec) + 2 * sizeof(uint32_t));
}

/* A record's part of the body's sum: its own sum mixed with its place (records cannot trade places). */
static uint64_t rec_mix(uint32_t i, uint64_t sum)
{
    uint64_t h = sum ^ ((uint64_t)(i + 1) * 0x9e3779b97f4a7c15ull);
    h = (h ^ (h >> 33)) * 0xff51afd7ed558ccdull;
    return h ^ (h >> 33);
}

/*
 * The body's sum: the records' own sums, each mixed with its place and combined by XOR, with the hash of what
 * follows the records. A byte changed in a record changes that record's sum and so the body's; and a writer
 * that rewrites records in place (md_index_current_done) works out the new sum from their old and new sums
 * alone. *RECS_OK: every record carries its own sum.
 */
static uint64_t ix_body_sum(const char *data, const struct ix_header *h, bool *recs_ok)
{
    const struct ix_rec *recs = (const struct ix_rec *)(data + sizeof(*h));
    const char *rest = (const char *)(recs + h->count);
    uint64_t x = 0;
    bool ok = true;

    for (uint32_t i = 0; i < h->count; i++) {
        uint64_t sum = rec_sum(&recs[i]);
        ok = ok && sum == recs[i].sum;
        x ^= rec_mix(i, sum);
    }
    *recs_ok = ok;
    return x ^ ix_hash(rest, h->total_size - (size_t)(rest - data));
}

static bool stamp_ok(const struct ix_header *h)
{
    return h->stamp.sum == stamp_sum(&h->stamp) && h->stamp.body_sum == h->body_sum;
}

static const char *ix_str(const char *strs, uint32_t size, uint32_t off, bool *bad)
{
    if (off == IX_NONE)
        return NULL;
    if (off >= size) {
        *bad = true;
        return NULL;
    }
    return strs + off;
}

/* The tree from a checked index image (T keeps pointing into DATA), its structure as the writer worked it
 * out. False when the records do not make sense. */
static bool ix_load(struct md_tree *t, const char *data, const struct ix_header *h, struct qs_error **err)
{
    const struct ix_rec *recs = (const struct ix_rec *)(data + sizeof(*h));
    uint32_t cnt = h->count, npool = h->count - h->nroots;
    const uint32_t *pool = (const uint32_t *)(recs + cnt), *topo = pool + npool, *roots = topo + cnt;
    const char *strs = ix_strings(data, h);
    struct node **v;
    bool bad = false, recs_ok;

    (void)err;
    if (strs[h->strings_size - 1] != '\0' || ix_body_sum(data, h, &recs_ok) != h->body_sum || !recs_ok)
        return false;
    /* one region for the nodes and their arrays, with room for a writer's additions */
    t_reserve(t, (size_t)cnt * (sizeof(struct node) + 6 * sizeof(void *)) + 64 * sizeof(void *) + 4096);
    t->cap = cnt + 64;
    t->by_name = v = t_alloc(t, t->cap * sizeof(*v));
    t->child_pool = t_alloc(t, (cnt + 1) * sizeof(*t->child_pool));
    t->topo = t_alloc(t, (cnt + 1) * sizeof(*t->topo));
    t->roots = t_alloc(t, (h->nroots + 1) * sizeof(*t->roots));
    {
        struct node *nodes = t_alloc(t, (size_t)cnt * sizeof(*nodes));
        for (uint32_t i = 0; i < cnt; i++)
            v[i] = &nodes[i];
    }
    t->n = cnt;
    t->nroots = h->nroots;
    for (uint32_t i = 0; i < cnt && !bad; i++) {
        const struct ix_rec *r = &recs[i];
        struct node *n = v[i];
        n->e.name = ix_str(strs, h->strings_size, r->name, &bad);
        n->e.description = ix_str(strs, h->strings_size, r->description, &bad);
        n->e.file = ix_str(strs, h->strings_size, r->file, &bad);
        n->e.memory_file = ix_str(strs, h->strings_size, r->memory_file, &bad);
        n->e.aux = ix_str(strs, h->strings_size, r->aux, &bad);
        if (!n->e.name || !*n->e.name || !n->e.file || r->state >= MD_STATE__LAST ||
            r->memory >= MD_LOCATION__LAST || (r->parent != IX_NONE && (r->parent >= cnt || r->parent == i)) ||
            r->children > npool || r->nchildren > npool - r->children || r->pre >= cnt || r->last >= cnt ||
            r->last < r->pre) {
            bad = true;
            break;
        }
        n->up = n->parent = r->parent == IX_NONE ? NULL : v[r->parent];
        n->children = t->child_pool + r->children;
        n->e.nchildren = r->nchildren;
        n->pre = r->pre;
        n->last = r->last;
        n->e.depth = r->depth;
        n->rank = i;
        n->e.state = r->state;
        n->e.memory = r->memory;
        n->e.creation_time = r->creation_time;
        n->e.disk_locations = r->disk_locations;
        n->e.external = r->external != 0;
        n->e.current = r->current != 0;
        n->size = r->size;
        n->mtime_ns = r->mtime_ns;
        n->ino = (long long)r->ino;
        if (n->e.current) {
            if (t->current)
                bad = true;
            t->current = n;
        }
    }
    for (uint32_t i = 0; i < cnt && !bad; i++) {
        if ((i < npool && pool[i] >= cnt) || topo[i] >= cnt) {
            bad = true;
            break;
        }
        if (i < npool)
            t->child_pool[i] = v[pool[i]];
        t->topo[i] = v[topo[i]];
        if (v[i]->parent)
            v[i]->e.parent = v[i]->parent->e.name;
    }
    for (uint32_t i = 0; i < h->nroots && !bad; i++) {
        if (roots[i] >= cnt)
            bad = true;
        else
            t->roots[i] = v[roots[i]];
    }
    /* the header names the current snapshot as the records do */
    if (!bad && (h->stamp.current == IX_NONE ? t->current != NULL
                                             : h->stamp.current >= cnt || v[h->stamp.current] != t->current))
        bad = true;
    return !bad;
}

/* An index this large is read into huge pages rather than mapped: hashing a mapped 1 MiB index (10,000
 * snapshots) took 0.6-0.7 ms here, nearly all of it the first touch of its 264 pages, against 0.3-0.4 ms to
 * read it into one huge page and 0.07 ms to hash it there. */
#define IX_READ_MIN (HUGE_SIZE / 4)

static bool read_whole(int fd, char *buf, size_t size)
{
    size_t off = 0;
    while (off < size) {
        ssize_t n = pread(fd, buf + off, size - off, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        off += (size_t)n;
    }
    return true;
}

static void ix_release(const char *data, size_t len)
{
    if (!data)
        return;
    if (len >= IX_READ_MIN)
        len = (len + HUGE_SIZE - 1) & ~(HUGE_SIZE - 1); /* as huge_map() rounded it */
    munmap((void *)data, len);
}

/* ROOT/run/DOMAIN.index in memory (a small one mapped read-only and populated, a large one read into huge
 * pages); NULL when there is none or it is not a whole index. ix_release() it with *len. */
static const char *ix_read(struct md_store *s, const char *domain, const struct ix_header **h, size_t *len)
{
    char *name = qs_asprintf("run/%s.index", domain);
    int fd = openat(md_store_root_fd(s), name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    struct stat st;
    char *p = MAP_FAILED;
    size_t size = 0, maplen;

    *h = NULL;
    *len = 0;
    free(name);
    if (fd < 0)
        return NULL;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size >= (off_t)sizeof(struct ix_header) &&
        st.st_size <= IX_MAX) {
        size = (size_t)st.st_size;
        if (size < IX_READ_MIN) {
            p = mmap(NULL, size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
        } else {
            p = huge_map(size, &maplen);
            if (!read_whole(fd, p, size)) { /* it changed under us: as if there were none */
                munmap(p, maplen);
                p = MAP_FAILED;
            }
        }
    }
    close(fd);
    if (p == MAP_FAILED)
        return NULL;
    if (!(*h = ix_header_ok(p, size))) {
        ix_release(p, size);
        return NULL;
    }
    *len = size;
    return p;
}

/*
 * The journal: ROOT/run/DOM.ixlog, the changes writers made without loading the tree or rewriting the index
 * since it was written, so that they cost the same at 10 and at 100,000 snapshots: a new snapshot, not
 * current, its parent there (md_store_snapshot_add_quick); a new current snapshot on the current one, which is
 * rewritten as not current (md_store_snapshot_create_quick); a snapshot without children gone, with its
 * parent made current when it was (md_store_snapshot_delete_tree with md_tree_peek_leaf's tree); and "current"
 * moved, two files rewritten, when a journal is there already (md_store_snapshot_set_current). Each record
 * names a file written (its inode, its snapshot's parent - or "the one it had", for a file rewritten - and
 * whether it is current) or removed (inode 0, which no file has) and carries the directory's stamp after the
 * change. A reader whose directory has the last record's stamp loads the index, then applies the files as the
 * last record of each has them (jl_apply: each file parsed), and writes the result into a new index when it
 * may take the lock; a writer that loads the tree applies them and leaves the index to its own change; what
 * needs one or two snapshots reads the index and the journal's records, not its files (struct ixview). Every
 * index written removes the journal: one that is not about the index there (by the index's sums), or of
 * another format, is ignored. A record appended is whole or ignored: each has a sum, and the first bad one ends
 * the journal (the directory then no longer has the last good stamp: the load reads it).
 */
#define JL_MAGIC "QSNAPJL3"
#define JL_MAX MD_JOURNAL_MAX

struct jl_header {
    char magic[8];
    uint32_t bom, pad;
    uint64_t base_body, base_stamp; /* the index it is about: its body's sum, its stamp's sum */
    uint64_t sum;                   /* of the fields above */
};

struct jl_rec {
    uint32_t size;         /* the record with its file name and parent's name, padded to 8 bytes */
    uint32_t file_len;     /* 0: a new stamp only (md_index_restamp) */
    uint64_t ino;          /* the file's inode number; 0: the file was removed */
    uint64_t sum;          /* of the record and its names with this field 0 */
    struct ix_stamp stamp; /* the directory after the change */
    uint32_t parent_len;   /* a file written: its snapshot's parent's name (after the file's), or JL_ROOT, JL_SAME */
    uint32_t flags;        /* a file written: JL_CURRENT */
};
#define JL_ROOT UINT32_MAX        /* a root */
#define JL_SAME (UINT32_MAX - 1) /* the parent it had (the file rewritten) */
#define JL_CURRENT 1u
#define JL_REC_MAX (sizeof(struct jl_rec) + 2 * (QS_NAME_MAX + 4) + 16)
#define JL_FILE_MAX (sizeof(struct jl_header) + (size_t)(JL_MAX + 1) * JL_REC_MAX)

struct jl {
    char *data;
    size_t len;                   /* up to the end of the last good record */
    size_t nrec, nfiles;
    const struct ix_stamp *last;  /* the last good record's stamp (NULL: none) */
};

static char *jl_name(const char *domain)
{
    return qs_asprintf("%s.ixlog", domain);
}

static void jl_remove(int run, const char *domain)
{
    char *name = jl_name(domain);
    unlinkat(run, name, 0);
    free(name);
}

static uint64_t jl_header_sum(const struct jl_header *jh)
{
    return ix_hash(jh, offsetof(struct jl_header, sum));
}

static uint64_t jl_rec_sum(const struct jl_rec *r)
{
    char buf[JL_REC_MAX] __attribute__((aligned(8)));
    memcpy(buf, r, r->size);
    ((struct jl_rec *)buf)->sum = 0;
    return ix_hash(buf, r->size);
}

static size_t jl_parent_len(const struct jl_rec *r)
{
    return r->parent_len < JL_SAME ? r->parent_len : 0;
}

/* The record at OFF of J when it is a whole one (a file name without '/' or NUL ending in .xml; for a file
 * written, its parent's name without NUL, or none). */
static const struct jl_rec *jl_rec_at(const char *data, size_t len, size_t off)
{
    const struct jl_rec *r = (const struct jl_rec *)(data + off);
    const char *f = (const char *)(r + 1);
    size_t plen;

    if (len - off < sizeof(*r) || r->size < sizeof(*r) || r->size > len - off || r->size % 8 ||
        r->file_len > QS_NAME_MAX + 4 || (r->parent_len < JL_SAME && (r->parent_len > QS_NAME_MAX || !r->parent_len)))
        return NULL;
    plen = jl_parent_len(r);
    if (r->size < sizeof(*r) + r->file_len + plen || r->size - sizeof(*r) - r->file_len - plen >= 8 ||
        (r->flags & ~JL_CURRENT) || r->sum != jl_rec_sum(r) || r->stamp.sum != stamp_sum(&r->stamp))
        return NULL;
    if (r->file_len && (r->file_len < 5 || memchr(f, '/', r->file_len) || memchr(f, '\0', r->file_len) ||
                        memcmp(f + r->file_len - 4, ".xml", 4) != 0 || f[0] == '.'))
        return NULL;
    if (plen && memchr(f + r->file_len, '\0', plen))
        return NULL;
    return r;
}

/* DOMAIN's journal when it is about the index H (its records up to the first bad one); false when there is
 * none about H. jl_free() it either way. */
static bool jl_read(int run, const char *domain, const struct ix_header *h, struct jl *j)
{
    char *name = jl_name(domain);
    const struct jl_header *jh;
    size_t off;

    memset(j, 0, sizeof(*j));
    if (qs_file_read(run, name, JL_FILE_MAX, &j->data, &j->len, NULL) < 0) {
        free(name);
        j->data = NULL;
        j->len = 0;
        return false;
    }
    free(name);
    jh = (const struct jl_header *)j->data;
    if (j->len < sizeof(*jh) || memcmp(jh->magic, JL_MAGIC, 8) != 0 || jh->bom != IX_BOM ||
        jh->sum != jl_header_sum(jh) || jh->base_body != h->body_sum || jh->base_stamp != h->stamp.sum)
        return false;
    for (off = sizeof(*jh); off < j->len;) {
        const struct jl_rec *r = jl_rec_at(j->data, j->len, off);
        if (!r)
            break;
        j->nrec++;
        j->nfiles += r->file_len != 0;
        j->last = &r->stamp;
        off += r->size;
    }
    j->len = off;
    return true;
}

static void jl_free(struct jl *j)
{
    free(j->data);
    memset(j, 0, sizeof(*j));
}

/* Buffered writes of the index body, hashed on the way (the body is never whole in memory: a 10,000-snapshot
 * index is 0.8 MB, and every page a command touches costs it). */
struct ixout {
    int fd;
    bool failed, hashing; /* the records are summed one by one (ix_body_sum), not hashed here */
    size_t len;
    struct hstate hs;
    char buf[16384] __attribute__((aligned(16)));
};

static void ixout_flush(struct ixout *o)
{
    if (o->hashing)
        h_add(&o->hs, o->buf, o->len); /* whole chunks: the hash's fast path */
    if (o->len && !o->failed && qs_write_all(o->fd, o->buf, o->len) < 0)
        o->failed = true;
    o->len = 0;
}

/* Room for N (<= sizeof(buf)) bytes to fill in place. */
static void *ixout_room(struct ixout *o, size_t n)
{
    void *p;
    if (sizeof(o->buf) - o->len < n)
        ixout_flush(o);
    p = o->buf + o->len;
    o->len += n;
    return p;
}

static void ixout_add(struct ixout *o, const void *p, size_t n)
{
    const char *b = p;

    if (n <= sizeof(o->buf) - o->len) { /* the usual case: one small piece */
        memcpy(o->buf + o->len, b, n);
        o->len += n;
        return;
    }
    while (n) {
        size_t k = sizeof(o->buf) - o->len < n ? sizeof(o->buf) - o->len : n;
        memcpy(o->buf + o->len, b, k);
        o->len += k;
        b += k;
        n -= k;
        if (o->len == sizeof(o->buf))
            ixout_flush(o);
    }
}

static uint32_t ix_off(const char *str, size_t *off)
{
    uint32_t r;
    if (!str)
        return IX_NONE;
    r = (uint32_t)*off;
    *off += strlen(str) + 1;
    return r;
}

static void ix_put_str(struct ixout *o, const char *str)
{
    if (str)
        ixout_add(o, str, strlen(str) + 1);
}

/*
 * Writes T's index stamped with the snapshot directory DIR as seen at OBSERVED: a temporary renamed over
 * ROOT/run/DOMAIN.index, not synced - a crash may lose it or leave it torn, and the next load rebuilds it.
 * Layout: header, records in name order, strings (the first byte a NUL) in the records' order.
 */
/* Whether record I's aux data is record I-1's (the usual case: a domain's snapshots share their disks): then
 * it is written once. */
static bool aux_shared(const struct md_tree *t, size_t i)
{
    const char *a = t->by_name[i]->e.aux, *b = i ? t->by_name[i - 1]->e.aux : NULL;
    return a && b && (a == b || strcmp(a, b) == 0);
}

static int ix_write(struct md_store *s, struct md_tree *t, const struct stat *dir, int64_t observed, bool fine,
                    const struct ix_stamp *keep)
{
    struct ix_header h;
    struct ixout *o = NULL;
    char *tmp = NULL, *name = NULL;
    size_t ssize = 1, off = 1;
    uint64_t recs_x = 0;
    uint32_t prev_aux = IX_NONE, flags = IXS_NAMED;
    int run = -1, ret = -1;

    for (size_t i = 0; i < t->n; i++) {
        const struct md_entry *e = &t->by_name[i]->e;
        if (!named(e))
            flags &= ~IXS_NAMED;
        ix_off(e->name, &ssize);
        ix_off(e->description, &ssize);
        ix_off(e->file, &ssize);
        ix_off(e->memory_file, &ssize);
        if (!aux_shared(t, i))
            ix_off(e->aux, &ssize);
    }
    memset(&h, 0, sizeof(h));
    memcpy(h.magic, IX_MAGIC, 8);
    h.bom = IX_BOM;
    h.header_size = sizeof(h);
    h.count = (uint32_t)t->n;
    h.rec_size = sizeof(struct ix_rec);
    h.strings_size = (uint32_t)ssize;
    h.nroots = (uint32_t)t->nroots;
    h.total_size = sizeof(h) + t->n * (sizeof(struct ix_rec) + 2 * sizeof(uint32_t)) + ssize;
    if (ssize > UINT32_MAX / 2 || h.total_size > IX_MAX || (run = md_store_run_open(s)) < 0)
        goto out;
    name = qs_asprintf("%s.index", t->domain);
    tmp = qs_asprintf("%s.index.tmp", t->domain);
    o = qs_xmalloc(sizeof(*o));
    o->len = 0;
    o->failed = false;
    o->hashing = false;
    h_init(&o->hs, h.total_size - sizeof(h) - t->n * sizeof(struct ix_rec));
    unlinkat(run, tmp, 0);
    if ((o->fd = openat(run, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600)) < 0)
        goto out;
    if (lseek(o->fd, (off_t)sizeof(h), SEEK_SET) < 0)
        o->failed = true;
    for (size_t i = 0; i < t->n && !o->failed; i++) {
        const struct node *n = t->by_name[i];
        struct ix_rec *r = ixout_room(o, sizeof(*r));
        memset(r, 0, sizeof(*r));
        r->name = ix_off(n->e.name, &off);
        r->description = ix_off(n->e.description, &off);
        r->file = ix_off(n->e.file, &off);
        r->memory_file = ix_off(n->e.memory_file, &off);
        r->aux = prev_aux = aux_shared(t, i) ? prev_aux : ix_off(n->e.aux, &off);
        r->parent = n->parent ? n->parent->rank : IX_NONE;
        r->disk_locations = n->e.disk_locations;
        r->nchildren = (uint32_t)n->e.nchildren;
        r->children = (uint32_t)(n->children - t->child_pool);
        r->pre = (uint32_t)n->pre;
        r->last = (uint32_t)n->last;
        r->depth = (uint32_t)n->e.depth;
        r->creation_time = n->e.creation_time;
        r->size = n->size;
        r->mtime_ns = n->mtime_ns;
        r->ino = (uint64_t)n->ino;
        r->state = (uint8_t)n->e.state;
        r->memory = (uint8_t)n->e.memory;
        r->external = n->e.external;
        r->current = n->e.current;
        r->sum = rec_sum(r);
        recs_x ^= rec_mix((uint32_t)i, r->sum);
    }
    ixout_flush(o);
    o->hashing = true;
    for (size_t i = 0; i < t->n - t->nroots; i++)
        *(uint32_t *)ixout_room(o, sizeof(uint32_t)) = t->child_pool[i]->rank;
    for (size_t i = 0; i < t->n; i++)
        *(uint32_t *)ixout_room(o, sizeof(uint32_t)) = t->topo[i]->rank;
    for (size_t i = 0; i < t->nroots; i++)
        *(uint32_t *)ixout_room(o, sizeof(uint32_t)) = t->roots[i]->rank;
    ixout_add(o, "", 1);
    for (size_t i = 0; i < t->n && !o->failed; i++) {
        const struct md_entry *e = &t->by_name[i]->e;
        ix_put_str(o, e->name);
        ix_put_str(o, e->description);
        ix_put_str(o, e->file);
        ix_put_str(o, e->memory_file);
        if (!aux_shared(t, i))
            ix_put_str(o, e->aux);
    }
    ixout_flush(o);
    h.body_sum = h_final(&o->hs) ^ recs_x;
    if (keep) { /* the same directory as before: only the body changed */
        h.stamp = *keep;
        h.stamp.body_sum = h.body_sum;
        h.stamp.flags = flags;
        h.stamp.current = t->current ? t->current->rank : IX_NONE;
        h.stamp.sum = stamp_sum(&h.stamp);
    } else {
        stamp_set(&h.stamp, dir, observed, fine, h.body_sum, flags, t->current ? t->current->rank : IX_NONE);
    }
    if (!o->failed && pwrite(o->fd, &h, sizeof(h), 0) == (ssize_t)sizeof(h) && close(o->fd) == 0 &&
        renameat(run, tmp, run, name) == 0) {
        ret = 0;
        jl_remove(run, t->domain); /* what it added is in the index now, or it was about another one */
    } else
        unlinkat(run, tmp, 0);
    o->fd = -1;
out:
    if (o)
        qs_close(o->fd);
    free(o);
    qs_close(run);
    free(name);
    free(tmp);
    if (ret == 0)
        t->index_written = true;
    return ret;
}

void md_index_drop(struct md_store *s, const char *domain)
{
    int run = md_store_run_open(s);
    char *name = qs_asprintf("%s.index", domain);

    if (run >= 0) {
        unlinkat(run, name, 0);
        jl_remove(run, domain);
    }
    qs_close(run);
    free(name);
}

/* What vouches for DOMAIN's snapshot directory as DIR (a writer's view, the lock held): the index's own
 * stamp, or the last record of its journal (q->jl_len: the journal's length; 0 when there is none about this
 * index). *H: the index's header. */
static bool vouched(int run, const char *domain, const struct stat *dir, struct ix_header *h, struct md_quick *q,
                    size_t *nfiles)
{
    char *name = qs_asprintf("%s.index", domain);
    int fd = openat(run, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    const struct ix_stamp *v = NULL;
    struct jl j = {0};
    bool ok = false;

    free(name);
    memset(q, 0, sizeof(*q));
    *nfiles = 0;
    if (fd < 0)
        return false;
    if (pread(fd, h, sizeof(*h), 0) != (ssize_t)sizeof(*h) || memcmp(h->magic, IX_MAGIC, 8) != 0 ||
        h->bom != IX_BOM || h->header_size != sizeof(*h) || !stamp_ok(h))
        goto out;
    if (stamp_matches(&h->stamp, dir)) {
        v = &h->stamp;
    } else if (jl_read(run, domain, h, &j) && j.last && stamp_matches(j.last, dir)) {
        v = j.last;
        q->jl_len = j.len;
        q->nfiles = *nfiles = j.nfiles;
    }
    if (!v || stamp_racy(v, dir))
        goto out;
    q->dir = *dir;
    q->fine = v->fine;
    q->base_body = h->body_sum;
    q->base_stamp = h->stamp.sum;
    ok = true;
out:
    jl_free(&j);
    close(fd);
    return ok;
}

/* Appends to DOMAIN's journal (Q: as vouched() found it) that FILES[i] were written or removed, leaving the
 * directory as AFTER (N 0: a record of the stamp alone); or starts the journal with them. False when it could
 * not. */
static bool jl_add(int run, const char *domain, const struct md_quick *q, const struct md_jfile *files, size_t n,
                   const struct stat *after, bool fine)
{
    size_t hlen = q->jl_len ? 0 : sizeof(struct jl_header), cap = hlen + (n ? n : 1) * JL_REC_MAX, len = hlen;
    char *buf = qs_xmalloc(cap), *name = jl_name(domain), *tmp = NULL;
    struct jl_header *jh = (struct jl_header *)buf;
    bool ok = false;
    int fd = -1;

    memset(buf, 0, cap);
    for (size_t i = 0; i < (n ? n : 1); i++) {
        const struct md_jfile *jf = n ? &files[i] : NULL;
        const char *file = jf ? jf->file : "", *parent = jf && jf->ino && !jf->same_parent ? jf->parent : NULL;
        size_t flen = strlen(file), plen = parent ? strlen(parent) : 0, size;
        struct jl_rec *r = (struct jl_rec *)(buf + len);
        if (flen > QS_NAME_MAX + 4 || plen > QS_NAME_MAX || (parent && !plen))
            goto out;
        size = (sizeof(struct jl_rec) + flen + plen + 7) & ~(size_t)7;
        r->size = (uint32_t)size;
        r->file_len = (uint32_t)flen;
        r->ino = jf ? jf->ino : 0;
        stamp_set(&r->stamp, after, now_ns(), fine, 0, 0, 0);
        r->parent_len = parent ? (uint32_t)plen : jf && jf->ino && !jf->same_parent ? JL_ROOT : JL_SAME;
        r->flags = jf && jf->ino && jf->current ? JL_CURRENT : 0;
        memcpy(r + 1, file, flen);
        memcpy((char *)(r + 1) + flen, parent ? parent : "", plen);
        r->sum = jl_rec_sum(r);
        len += size;
    }
    if (q->jl_len) { /* after the last good record, over whatever a writer that died left */
        if ((fd = openat(run, name, O_WRONLY | O_CLOEXEC | O_NOFOLLOW)) >= 0 &&
            pwrite(fd, buf, len, (off_t)q->jl_len) == (ssize_t)len && ftruncate(fd, (off_t)(q->jl_len + len)) == 0)
            ok = true;
        goto out;
    }
    memcpy(jh->magic, JL_MAGIC, 8);
    jh->bom = IX_BOM;
    jh->base_body = q->base_body;
    jh->base_stamp = q->base_stamp;
    jh->sum = jl_header_sum(jh);
    tmp = qs_asprintf("%s.ixlog.tmp", domain);
    unlinkat(run, tmp, 0);
    if ((fd = openat(run, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600)) < 0)
        goto out;
    ok = qs_write_all(fd, buf, len) == 0 && close(fd) == 0;
    fd = -1;
    ok = ok && renameat(run, tmp, run, name) == 0;
    if (!ok)
        unlinkat(run, tmp, 0);
out:
    if (fd >= 0 && close(fd) < 0)
        ok = false;
    free(buf);
    free(name);
    free(tmp);
    return ok;
}

bool md_index_quick(struct md_store *s, const char *domain, int dirfd, struct md_quick *q)
{
    struct ix_header h;
    struct stat dir;
    size_t nfiles = 0;
    int run = md_store_run_open(s);
    bool ok = run >= 0 && fstat(dirfd, &dir) == 0 && vouched(run, domain, &dir, &h, q, &nfiles) &&
              (h.stamp.flags & IXS_NAMED) && nfiles < JL_MAX;

    qs_close(run);
    return ok;
}

size_t md_index_journal_records(struct md_store *s, const char *domain)
{
    const struct ix_header *h;
    size_t len, n = 0;
    const char *data = ix_read(s, domain, &h, &len);
    int run = md_store_run_open(s);
    struct jl j = {0};

    if (data && run >= 0 && jl_read(run, domain, h, &j))
        n = j.nrec;
    jl_free(&j);
    qs_close(run);
    ix_release(data, len);
    return n;
}

void md_index_quick_done(struct md_store *s, const char *domain, const struct md_quick *q,
                         const struct md_jfile *files, size_t n, const struct md_wstamp *w)
{
    int run = md_store_run_open(s);

    if (run >= 0 && !(w->ok && jl_add(run, domain, q, files, n, &w->last, w->fine)))
        md_index_drop(s, domain); /* the next load reads the directory */
    qs_close(run);
}

void md_index_restamp(struct md_store *s, const char *domain, int dirfd, const struct stat *before)
{
    struct ix_header h;
    struct md_quick q;
    struct stat after;
    size_t nfiles;
    char *name = qs_asprintf("%s.index", domain);
    int run = md_store_run_open(s), fd = -1;

    if (run < 0 || !vouched(run, domain, before, &h, &q, &nfiles) || fstat(dirfd, &after) < 0)
        goto out;
    /* the index held for the directory as it was just before the caller's change, which it does not
     * describe (not a snapshot file): it holds for the directory as it is now */
    if (q.jl_len) {
        if (!jl_add(run, domain, &q, NULL, 0, &after, q.fine || md_stamp_fine(before, &after)))
            md_index_drop(s, domain);
        goto out;
    }
    if ((fd = openat(run, name, O_RDWR | O_CLOEXEC | O_NOFOLLOW)) < 0)
        goto out;
    stamp_set(&h.stamp, &after, now_ns(), h.stamp.fine || md_stamp_fine(before, &after), h.body_sum, h.stamp.flags,
              h.stamp.current);
    if (pwrite(fd, &h.stamp, sizeof(h.stamp), offsetof(struct ix_header, stamp)) != (ssize_t)sizeof(h.stamp))
        unlinkat(run, name, 0); /* half a stamp: its sum fails, but say so plainly */
out:
    qs_close(fd);
    qs_close(run);
    free(name);
}

/* Writes the index when we may: under the caller's lock, or the domain lock if it is free right now. */
static void index_store(struct md_store *s, struct md_tree *t, const struct stat *dir, int64_t observed,
                        const struct md_lock *lock)
{
    struct md_lock *own = NULL;

    if (!md_lock_covers(lock, s, t->domain) && !(own = md_lock_acquire(s, t->domain, 0, NULL)))
        return;
    ix_write(s, t, dir, observed, t->fine, NULL);
    md_lock_free(own);
}

/* ---- loading ---- */

struct md_tree *md_tree_load(struct md_store *s, const char *domain, const struct md_lock *lock,
                             struct qs_error **err)
{
    return md_tree_load_internal(s, domain, lock, true, err);
}

enum scan_mode { SCAN_INODES, SCAN_STAT };

static struct md_tree *load_scan(struct md_store *s, const char *domain, const struct md_lock *lock,
                                 bool write_index, bool checked, struct qs_error **err);

/* J's records applied to T (loaded from the index J is about), in order: a file written parsed (a new snapshot
 * or a new version of one, the inode the record names), a file removed taken out (a snapshot no other one is
 * built on). False when anything does not fit (the load reads the directory). */
/* Whether a record of J between offsets FROM and TO names the file of record R too. */
static bool jl_names(const struct jl *j, size_t from, size_t to, const struct jl_rec *r)
{
    while (from < to) {
        const struct jl_rec *q = (const struct jl_rec *)(j->data + from);
        if (q != r && q->file_len == r->file_len && memcmp(q + 1, r + 1, r->file_len) == 0)
            return true;
        from += q->size;
    }
    return false;
}

/*
 * The journal's files as they are now (the last record of each file says how) into T: the ones written,
 * each once its parent is there, then the ones removed, in the journal's order (each was a leaf when it went).
 */
static bool jl_apply(struct md_store *s, struct md_tree *t, const struct jl *j)
{
    int dir = md_store_snapdir_open(s, t->domain, false, NULL);
    const struct jl_rec **last = qs_xcalloc(j->nrec + 1, sizeof(*last));
    struct md_snapshot **snaps = qs_xcalloc(j->nrec + 1, sizeof(*snaps));
    size_t n = 0, left = 0;
    bool ok = dir >= 0, progress = true;

    for (size_t off = sizeof(struct jl_header); off < j->len;) {
        const struct jl_rec *r = (const struct jl_rec *)(j->data + off);
        off += r->size;
        if (r->file_len && !jl_names(j, off, j->len, r))
            last[n++] = r;
    }
    for (size_t i = 0; ok && i < n; i++) {
        char *file = qs_xstrndup((const char *)(last[i] + 1), last[i]->file_len), *data = NULL;
        size_t len;
        if (last[i]->ino) {
            ok = qs_file_read(dir, file, MD_FILE_MAX, &data, &len, NULL) == 0 &&
                 (snaps[i] = md_snapshot_parse(data, len, MD_PARSE_ON_DISK | MD_PARSE_SKIP_SUBTREES, NULL)) &&
                 named_file(snaps[i]->name, file);
            t->parsed++;
            left++;
        }
        free(data);
        free(file);
    }
    while (ok && left && progress) {
        progress = false;
        for (size_t i = 0; ok && i < n; i++) {
            struct md_snapshot *sn = snaps[i];
            char *file;
            if (!sn || (sn->parent && !find(t, sn->parent)))
                continue;
            file = qs_asprintf("%s.xml", sn->name);
            ok = md_tree_note_file(t, dir, file, sn) == 0 && (uint64_t)find(t, sn->name)->ino == last[i]->ino;
            free(file);
            md_snapshot_free(sn);
            snaps[i] = NULL;
            left--;
            progress = true;
        }
    }
    ok = ok && !left;
    for (size_t i = 0; ok && i < n; i++) {
        char *name;
        struct node *nd;
        if (last[i]->ino)
            continue;
        name = qs_xstrndup((const char *)(last[i] + 1), last[i]->file_len - 4); /* NAME.xml: jl_rec_at() */
        /* not there: written earlier in the journal, gone by its end */
        if ((nd = find(t, name))) {
            ok = named(&nd->e);
            if (ok)
                md_tree_note_removed(t, name);
        }
        free(name);
    }
    for (size_t i = 0; i < n; i++)
        md_snapshot_free(snaps[i]);
    free(snaps);
    free(last);
    qs_close(dir);
    return ok && !t->broken && relink(t, NULL) == 0;
}

/*
 * The fast way: the index alone, when the snapshot directory still has the stamp the index records, or the
 * index and the few files its journal adds, when the directory has the journal's last stamp (and that stamp
 * is not racy). NULL (and no error) when it does not apply; *missing when there is no snapshot directory.
 */
static struct md_tree *load_index(struct md_store *s, const char *domain, bool *missing)
{
    const struct ix_header *h;
    const struct ix_stamp *v = NULL;
    struct md_tree *t = NULL;
    struct jl j = {0};
    struct stat st;
    size_t len;
    const char *data = ix_read(s, domain, &h, &len);
    char *rel = qs_asprintf("snapshot/%s", domain);
    int r = fstatat(md_store_root_fd(s), rel, &st, AT_SYMLINK_NOFOLLOW), run;

    *missing = r < 0 && errno == ENOENT;
    free(rel);
    if (data && r == 0 && S_ISDIR(st.st_mode) && stamp_ok(h)) {
        if (stamp_matches(&h->stamp, &st)) {
            v = &h->stamp;
        } else if ((run = md_store_run_open(s)) >= 0) {
            if (jl_read(run, domain, h, &j) && j.last && stamp_matches(j.last, &st))
                v = j.last;
            qs_close(run);
        }
    }
    if (!v || stamp_racy(v, &st)) {
        jl_free(&j);
        ix_release(data, len);
        return NULL;
    }
    t = tree_new(domain);
    t->fine = v->fine;
    t->at_load = st;
    t->stamp = *v;
    t->have_stamp = true;
    t->ixdata = data; /* the tree unmaps it */
    t->ixlen = len;
    t->path = MD_LOAD_INDEX;
    if (!ix_load(t, data, h, NULL) || (v != &h->stamp && !jl_apply(s, t, &j))) {
        jl_free(&j);
        md_tree_free(t);
        return NULL;
    }
    if (v != &h->stamp) {
        t->path = MD_LOAD_JOURNAL;
        t->shape_dirty = false;
    }
    jl_free(&j);
    return t;
}

/* A tree read through the journal becomes the index (the same stamp, the journal's snapshots in it) when we
 * may: under the caller's lock, or the domain lock if it is free right now, the directory as it was. */
static void jl_fold(struct md_store *s, struct md_tree *t, const struct md_lock *lock)
{
    struct md_lock *own = NULL;
    struct stat st;
    char *rel;

    if (!md_lock_covers(lock, s, t->domain) && !(own = md_lock_acquire(s, t->domain, 0, NULL)))
        return;
    rel = qs_asprintf("snapshot/%s", t->domain);
    if (fstatat(md_store_root_fd(s), rel, &st, AT_SYMLINK_NOFOLLOW) == 0 && stat_same(&st, &t->at_load) &&
        stamp_matches(&t->stamp, &st))
        ix_write(s, t, &st, 0, t->fine, &t->stamp);
    free(rel);
    md_lock_free(own);
}

static struct md_tree *load_once(struct md_store *s, const char *domain, const struct md_lock *lock,
                                 bool write_index, bool checked, struct qs_error **err)
{
    bool missing = false;
    struct md_tree *t = checked ? NULL : load_index(s, domain, &missing);

    if (t) {
        if (t->path == MD_LOAD_JOURNAL && write_index)
            jl_fold(s, t, lock);
        return t;
    }
    if (missing) {
        t = tree_new(domain);
        t->path = MD_LOAD_INDEX;
        return t;
    }
    return load_scan(s, domain, lock, write_index, checked, err);
}

/*
 * A reader without the lock that cannot use the index alone loads between two readings of the directory's
 * generation (md_store_gen_read): an odd one means a writer is between files, a changed one that it went
 * on meanwhile - either way the load is taken again, so no reader sees half of a change (no current
 * snapshot, or a child whose parent just went). A generation that stays odd while the domain lock is free
 * was left by a writer that died (the next one repairs it): it is not waited for.
 */
static struct md_tree *load_guarded(struct md_store *s, const char *domain, const struct md_lock *lock,
                                    bool write_index, bool checked, struct qs_error **err)
{
    struct md_tree *t = NULL;

    if (lock)
        return load_once(s, domain, lock, write_index, checked, err);
    for (int attempt = 0; attempt < 200; attempt++) {
        uint64_t g1 = md_store_gen_read(s, domain), g2;
        struct qs_error *local = NULL;
        if (g1 & 1) {
            struct md_lock *probe = md_lock_acquire(s, domain, 0, NULL);
            if (probe) { /* nobody writes: the odd generation is a dead writer's */
                t = load_once(s, domain, probe, write_index, checked, err);
                md_lock_free(probe);
                return t;
            }
            struct timespec ts = {0, 10 * 1000 * 1000};
            nanosleep(&ts, NULL);
            continue;
        }
        t = load_once(s, domain, NULL, write_index, checked, &local);
        if (t && (t->path == MD_LOAD_INDEX || t->path == MD_LOAD_JOURNAL)) {
            /* the index (and its journal) matched the directory: nothing was half-read */
            qs_error_free(local);
            return t;
        }
        g2 = md_store_gen_read(s, domain);
        if (g1 == g2) {
            qs_error_propagate(err, &local);
            return t;
        }
        qs_error_free(local);
        md_tree_free(t);
        t = NULL;
    }
    return load_once(s, domain, NULL, write_index, checked, err);
}

/* The string at OFF of the strings STRS (SIZE bytes), NULL when it does not end there. */
static const char *peek_str(const char *strs, uint32_t size, uint32_t off)
{
    return off < size && memchr(strs + off, '\0', size - off) ? strs + off : NULL;
}

/* NAME's record in the index MAP (header H) by binary search (*AT: its number), or NULL. A torn record met on
 * the way only sends the search astray: not found. The record's own sum is the caller's to check. */
static const struct ix_rec *ix_find(const char *map, const struct ix_header *h, const char *name, uint32_t *at)
{
    const struct ix_rec *recs = (const struct ix_rec *)(map + sizeof(*h));
    const char *strs = ix_strings(map, h);
    size_t lo = 0, hi = h->count;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const char *nm = peek_str(strs, h->strings_size, recs[mid].name);
        int c;
        if (!nm)
            return NULL;
        c = name_order(name, nm);
        if (c == 0) {
            *at = (uint32_t)mid;
            return &recs[mid];
        }
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

/*
 * ---- the index and its journal as one, for a few snapshots ----
 *
 * What touches one or two snapshots (snapshot-info, a delete of a leaf, a create or a move of "current" under
 * the lock) reads neither the whole index nor folds its journal: the index is mapped (only its header and the
 * records a binary search touches are read) and the journal's records say what its files hold now - each
 * written file's parent and whether it is current, as the writer wrote it (the file must still be that one:
 * its inode) - at most JV_MAX files. The journal may only have added snapshots, removed ones nothing else hangs
 * on, and rewritten files with their parent unchanged (what qsnap's quick writers journal); anything else, or
 * a file not as its last record has it, and the caller takes the whole tree.
 */
#define JV_MAX 16

struct jv_ent {
    char *name;
    char *parent;       /* written: its parent (NULL: a root) */
    bool written;       /* its file there now (false: removed) */
    bool known, current; /* written: the parent known (not only "the one it had"); current */
    uint32_t rec;       /* its index record; IX_NONE: not in the index */
    uint64_t ino;       /* its file's inode by the journal's last record of it (0: removed) */
};

struct ixview {
    const char *map;
    size_t maplen;
    struct ix_header h; /* a copy: a restamp rewrites the stamp in place */
    const struct ix_rec *recs;
    const char *strs;
    struct md_quick q; /* what vouched: for a writer's journal records (md_index_quick_done) */
    struct jv_ent ent[JV_MAX];
    size_t nent;
};

/* A snapshot's place as the index and the journal have it together. */
struct jv_place {
    const char *parent;
    size_t nchildren, descendants, depth;
    uint32_t rec;  /* IX_NONE: added by the journal */
    bool current;  /* as its last journal record, or else its index record, has it */
    bool journal;  /* its file written by the journal */
};

static void jv_close(struct ixview *v)
{
    if (v->map)
        munmap((void *)v->map, v->maplen);
    for (size_t i = 0; i < v->nent; i++) {
        free(v->ent[i].name);
        free(v->ent[i].parent);
    }
    memset(v, 0, sizeof(*v));
}

static const struct jv_ent *jv_ent(const struct ixview *v, const char *name)
{
    for (size_t i = 0; i < v->nent; i++)
        if (strcmp(v->ent[i].name, name) == 0)
            return &v->ent[i];
    return NULL;
}

/* NAME's index record when it is there and whole (its place checked), else IX_NONE. */
static uint32_t jv_rec(const struct ixview *v, const char *name)
{
    uint32_t at;
    const struct ix_rec *r = ix_find(v->map, &v->h, name, &at);

    if (!r || r->sum != rec_sum(r) || r->state >= MD_STATE__LAST || r->pre >= v->h.count ||
        r->last >= v->h.count || r->last < r->pre || (r->parent != IX_NONE && r->parent >= v->h.count))
        return IX_NONE;
    return at;
}

/* The name of record AT's parent: *OK false when that record is not whole. */
static const char *jv_rec_parent(const struct ixview *v, uint32_t at, bool *ok)
{
    const struct ix_rec *p;
    const char *nm = NULL;

    *ok = true;
    if (v->recs[at].parent == IX_NONE)
        return NULL;
    p = &v->recs[v->recs[at].parent];
    if (p->sum != rec_sum(p) || !(nm = peek_str(v->strs, v->h.strings_size, p->name)))
        *ok = false;
    return nm;
}

/* The journal's files, each as its last record has it, checked against the directory and the index (see above). */
static bool jv_files(struct ixview *v, int dirfd, const struct jl *j)
{
    for (size_t off = sizeof(struct jl_header); j->data && off < j->len;) {
        const struct jl_rec *r = (const struct jl_rec *)(j->data + off);
        struct jv_ent *e;
        char *name;

        off += r->size;
        if (!r->file_len)
            continue;
        name = qs_xstrndup((const char *)(r + 1), r->file_len - 4); /* jl_rec_at: NAME.xml */
        if (!(e = (struct jv_ent *)jv_ent(v, name))) {
            if (v->nent == JV_MAX) {
                free(name);
                return false;
            }
            e = &v->ent[v->nent++];
            e->name = name;
        } else {
            free(name);
        }
        e->ino = r->ino;
        e->written = r->ino != 0;
        e->current = e->written && (r->flags & JL_CURRENT);
        if (!e->written || r->parent_len != JL_SAME) { /* a rewrite keeps what an earlier record said */
            free(e->parent);
            e->parent = r->parent_len < JL_SAME ? qs_xstrndup((const char *)(r + 1) + r->file_len, r->parent_len) : NULL;
            e->known = e->written;
        }
    }
    for (size_t i = 0; i < v->nent; i++) {
        struct jv_ent *e = &v->ent[i];
        char *file = qs_asprintf("%s.xml", e->name);
        const char *pname;
        struct stat st;
        bool ok;

        e->rec = jv_rec(v, e->name);
        if (!e->written) { /* removed: gone still */
            ok = fstatat(dirfd, file, &st, AT_SYMLINK_NOFOLLOW) < 0 && errno == ENOENT;
        } else {
            ok = fstatat(dirfd, file, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
                 (uint64_t)st.st_ino == e->ino;
            /* rewritten: under the same parent (a snapshot the journal added says its parent itself) */
            if (ok && e->rec != IX_NONE) {
                pname = jv_rec_parent(v, e->rec, &ok);
                if (ok && !e->known) {
                    e->parent = pname ? qs_xstrdup(pname) : NULL;
                    e->known = true;
                }
                ok = ok && qs_str_equal(pname, e->parent);
            }
            ok = ok && e->known;
        }
        free(file);
        if (!ok)
            return false;
    }
    for (size_t i = 0; i < v->nent; i++) {
        const struct jv_ent *e = &v->ent[i];
        const char *p;
        size_t gone = 0;

        if (!e->written && e->rec != IX_NONE) {
            /* removed: every child it had in the index removed too, none added under it */
            for (size_t k = 0; k < v->nent; k++) {
                const struct jv_ent *f = &v->ent[k];
                if (f->written && qs_str_equal(f->parent, e->name))
                    return false;
                gone += !f->written && f->rec != IX_NONE && v->recs[f->rec].parent == e->rec;
            }
            if (gone != v->recs[e->rec].nchildren)
                return false;
        } else if (e->written && e->rec == IX_NONE) {
            /* added: its parents up to the index or a root are there */
            p = e->parent;
            for (size_t k = 0; p; k++) {
                const struct jv_ent *f = jv_ent(v, p);
                if (k > v->nent || (f && !f->written) || (!f && jv_rec(v, p) == IX_NONE))
                    return false;
                if (!f || f->rec != IX_NONE)
                    break;
                p = f->parent;
            }
        }
    }
    return true;
}

/*
 * DOMAIN's index (at least MIN_COUNT records, every snapshot in NAME.xml) and its journal, when together they
 * vouch for the snapshot directory DIRFD as it is now (a stamp that is not racy). False: take the tree.
 */
static bool jv_open(struct md_store *s, const char *domain, int dirfd, size_t min_count, struct ixview *v)
{
    char *ixname = qs_asprintf("%s.index", domain);
    int run = md_store_run_open(s), fd = -1;
    const struct ix_stamp *st = NULL;
    struct stat ist, dir;
    struct jl j = {0};
    bool ok = false;

    memset(v, 0, sizeof(*v));
    if (run < 0 || fstat(dirfd, &dir) < 0 || (fd = openat(run, ixname, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0 ||
        fstat(fd, &ist) < 0 || !S_ISREG(ist.st_mode) || ist.st_size < (off_t)sizeof(v->h) || ist.st_size > IX_MAX)
        goto out;
    v->maplen = (size_t)ist.st_size;
    if ((v->map = mmap(NULL, v->maplen, PROT_READ, MAP_SHARED, fd, 0)) == MAP_FAILED) {
        v->map = NULL;
        goto out;
    }
    if (!ix_header_ok(v->map, v->maplen))
        goto out;
    memcpy(&v->h, v->map, sizeof(v->h));
    if (v->h.count < min_count || v->h.count == 0 || !stamp_ok(&v->h) || !(v->h.stamp.flags & IXS_NAMED))
        goto out;
    v->recs = (const struct ix_rec *)(v->map + sizeof(v->h));
    v->strs = ix_strings(v->map, &v->h);
    if (stamp_matches(&v->h.stamp, &dir)) {
        st = &v->h.stamp;
    } else if (jl_read(run, domain, &v->h, &j) && j.last && stamp_matches(j.last, &dir)) {
        st = j.last;
        v->q.jl_len = j.len;
        v->q.nfiles = j.nfiles;
    }
    if (!st || stamp_racy(st, &dir))
        goto out;
    v->q.dir = dir;
    v->q.fine = st->fine;
    v->q.base_body = v->h.body_sum;
    v->q.base_stamp = v->h.stamp.sum;
    ok = jv_files(v, dirfd, &j);
out:
    jl_free(&j);
    qs_close(fd);
    qs_close(run);
    free(ixname);
    if (!ok)
        jv_close(v);
    return ok;
}

/* Whether NAME (record REC, IX_NONE: added) is a proper ancestor of E, a snapshot the journal added. */
static bool jv_above(const struct ixview *v, const char *name, uint32_t rec, const struct jv_ent *e)
{
    const char *p = e->parent;

    for (size_t k = 0; p && k <= v->nent; k++) {
        const struct jv_ent *f = jv_ent(v, p);
        uint32_t a;
        if (strcmp(p, name) == 0)
            return true;
        if (f && f->rec == IX_NONE) {
            p = f->parent;
            continue;
        }
        /* in the index from here up: its pre-order numbers tell (the journal moves no snapshot) */
        a = f ? f->rec : jv_rec(v, p);
        return rec != IX_NONE && a != IX_NONE && v->recs[rec].pre <= v->recs[a].pre &&
               v->recs[a].pre <= v->recs[rec].last;
    }
    return false;
}

/* NAME's place; false when it is not there (or the index cannot tell). */
static bool jv_lookup(const struct ixview *v, const char *name, struct jv_place *pl)
{
    const struct jv_ent *e = jv_ent(v, name);
    long long children, desc;
    bool ok = true;

    memset(pl, 0, sizeof(*pl));
    if (e && !e->written)
        return false;
    pl->rec = e ? e->rec : jv_rec(v, name);
    pl->journal = e != NULL;
    pl->current = e ? e->current : pl->rec != IX_NONE && v->recs[pl->rec].current;
    if (pl->rec != IX_NONE) {
        const struct ix_rec *r = &v->recs[pl->rec];
        children = r->nchildren;
        desc = r->last - r->pre;
        pl->depth = r->depth;
        pl->parent = jv_rec_parent(v, pl->rec, &ok);
        if (!ok)
            return false;
    } else if (e) {
        const char *p = e->parent;
        size_t d = 0;
        children = desc = 0;
        pl->parent = p;
        for (; p; d++) {
            const struct jv_ent *f = jv_ent(v, p);
            if (!f || f->rec != IX_NONE) { /* jv_files checked it is in the index */
                d += v->recs[f ? f->rec : jv_rec(v, p)].depth + 1;
                break;
            }
            p = f->parent;
        }
        pl->depth = d;
    } else {
        return false;
    }
    for (size_t i = 0; i < v->nent; i++) {
        const struct jv_ent *f = &v->ent[i];
        if (f->written && f->rec == IX_NONE) {
            children += qs_str_equal(f->parent, name);
            desc += jv_above(v, name, pl->rec, f);
        } else if (!f->written && f->rec != IX_NONE && pl->rec != IX_NONE) {
            children -= v->recs[f->rec].parent == pl->rec;
            desc -= v->recs[pl->rec].pre < v->recs[f->rec].pre && v->recs[f->rec].pre <= v->recs[pl->rec].last;
        }
    }
    if (children < 0 || desc < 0)
        return false;
    pl->nchildren = (size_t)children;
    pl->descendants = (size_t)desc;
    return true;
}

/* The current snapshot's name into CUR ("" for none); false when more than one claims to be. */
static bool jv_current(const struct ixview *v, char cur[QS_NAME_MAX + 1])
{
    size_t n = 0;
    const char *nm;

    cur[0] = '\0';
    for (size_t i = 0; i < v->nent; i++)
        if (v->ent[i].written && v->ent[i].current && n++ == 0)
            snprintf(cur, QS_NAME_MAX + 1, "%s", v->ent[i].name);
    if (v->h.stamp.current != IX_NONE) {
        const struct ix_rec *r = v->h.stamp.current < v->h.count ? &v->recs[v->h.stamp.current] : NULL;
        if (!r || r->sum != rec_sum(r) || !r->current || !(nm = peek_str(v->strs, v->h.strings_size, r->name)) ||
            strlen(nm) > QS_NAME_MAX)
            return false;
        /* a file the journal rewrote says itself */
        if (!jv_ent(v, nm) && n++ == 0)
            snprintf(cur, QS_NAME_MAX + 1, "%s", nm);
    }
    return n <= 1;
}

/*
 * One snapshot without reading the whole index (snapshot-info at 10,000 snapshots: reading, summing and
 * loading 1 MB was most of its time): its place in the tree (children, descendants, depth) from the index and
 * its journal (jv_lookup), the rest from its file, parsed, which must agree with its record on the parent and
 * on being current when the journal did not rewrite it. A file rewritten in place, which no stamp shows,
 * shows here with its new content, in a whole load with its old until snapshot-check or the directory's next
 * change. NULL when any of that does not hold: the caller loads the tree.
 */
static struct md_tree *peek(struct md_store *s, const char *domain, const char *name, size_t min_count, bool leaf)
{
    char *file = NULL, *data = NULL;
    struct md_snapshot *own = NULL;
    struct md_tree *t = NULL;
    struct ixview v = {0};
    struct jv_place pl;
    size_t len = 0;
    int dir = -1;

    if (qs_name_check(name, "snapshot", NULL) < 0 || (dir = md_store_snapdir_open(s, domain, false, NULL)) < 0 ||
        !jv_open(s, domain, dir, min_count, &v) || !jv_lookup(&v, name, &pl) || (leaf && pl.nchildren))
        goto out;
    file = qs_asprintf("%s.xml", name);
    if (qs_file_read(dir, file, MD_FILE_MAX, &data, &len, NULL) < 0 ||
        !(own = md_snapshot_parse(data, len, MD_PARSE_ON_DISK | MD_PARSE_SKIP_SUBTREES, NULL)) ||
        strcmp(own->name, name) != 0 || !qs_str_equal(own->parent, pl.parent) || own->current != pl.current)
        goto out;
    t = tree_new(domain);
    {
        struct node *n = node_alloc(t);
        const struct ix_rec *r = pl.journal ? NULL : &v.recs[pl.rec];
        node_from_snapshot(t, n, own);
        n->e.file = intern0(t, file);
        n->e.nchildren = pl.nchildren;
        n->e.depth = pl.depth;
        n->pre = 0;
        n->last = pl.descendants; /* md_tree_descendants() */
        n->size = r ? r->size : -1;
        n->mtime_ns = r ? r->mtime_ns : 0;
        n->ino = r ? (long long)r->ino : 0;
        by_name_push(t, n);
        if (n->e.current)
            t->current = n;
    }
    t->partial = true;
    t->path = MD_LOAD_PEEK;
    t->leaf = leaf;
    t->peek_body = v.h.body_sum;
    t->peek_jl = v.q.jl_len;
out:
    jv_close(&v);
    qs_close(dir);
    md_snapshot_free(own);
    free(data);
    free(file);
    return t;
}

/*
 * Moving "current" without the tree (md_store_snapshot_set_current under the lock): two files rewritten, the
 * tree's shape unchanged, so the index is patched in place - the two records (their current byte and sum),
 * then the header (the current record, the body's sum worked out from the old and new record sums, the
 * directory's new stamp). Only an index that vouches for the directory on its own (no journal: its records
 * would be lost from the patched body) is patched. A reader that meets a half-patched index sees sums that do
 * not agree (a record's own, or the body's) and reads the directory; a crash leaves the same for the next
 * load. The records keep the stat of the files as they were read: a scan parses the two rewritten files.
 */
bool md_index_current(struct md_store *s, const char *domain, int dirfd, const char *name, struct md_ixcur *c)
{
    struct ixview v;
    struct jv_place pl;
    bool ok;

    memset(c, 0, sizeof(*c));
    if (!jv_open(s, domain, dirfd, 1, &v))
        return false;
    c->dir = v.q.dir;
    c->fine = v.q.fine;
    if (v.q.jl_len) {
        /* a journal after the index: NAME and the current one as the two have them; the files go into it */
        ok = v.q.nfiles + 2 < JL_MAX && jv_lookup(&v, name, &pl) && jv_current(&v, c->old_name);
        c->journal = true;
        c->q = v.q;
    } else {
        /* the index alone: NAME's record and the current one's, patched in place (md_index_current_done) */
        c->rec = jv_rec(&v, name);
        ok = c->rec != IX_NONE && (v.recs[c->rec].current != 0) == (v.h.stamp.current == c->rec) &&
             jv_current(&v, c->old_name);
        c->body_sum = v.h.body_sum;
        c->stamp_sum = v.h.stamp.sum;
        c->old = v.h.stamp.current;
    }
    c->has_old = c->old_name[0] != '\0';
    jv_close(&v);
    return ok;
}

bool md_index_create_peek(struct md_store *s, const char *domain, int dirfd, const char *name, size_t min_count,
                          struct md_ixnew *n)
{
    char *file = qs_asprintf("%s.xml", name);
    struct ixview v;
    struct stat st;
    bool ok = false;

    memset(n, 0, sizeof(*n));
    /* every snapshot in NAME.xml (jv_open): no such file, no snapshot of that name */
    if (fstatat(dirfd, file, &st, AT_SYMLINK_NOFOLLOW) < 0 && errno == ENOENT && jv_open(s, domain, dirfd, min_count, &v)) {
        ok = v.q.nfiles < JL_MAX - 2 && jv_current(&v, n->cur);
        n->q = v.q;
        jv_close(&v);
    }
    free(file);
    return ok;
}

void md_index_current_done(struct md_store *s, const char *domain, const struct md_ixcur *c,
                           const struct md_wstamp *w)
{
    char *ixname = qs_asprintf("run/%s.index", domain);
    int fd = w->ok ? openat(md_store_root_fd(s), ixname, O_RDWR | O_CLOEXEC | O_NOFOLLOW) : -1;
    const uint32_t at[2] = {c->old, c->rec};
    struct ix_header h;
    uint64_t body;
    bool ok = false;

    free(ixname);
    /* the index the caller looked at, as it was */
    if (fd < 0 || pread(fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h) || memcmp(h.magic, IX_MAGIC, 8) != 0 ||
        h.bom != IX_BOM || h.header_size != sizeof(h) || h.body_sum != c->body_sum || h.stamp.sum != c->stamp_sum ||
        h.stamp.current != c->old)
        goto out;
    body = h.body_sum;
    for (int k = 0; k < 2; k++) {
        struct ix_rec r;
        off_t off = (off_t)sizeof(h) + (off_t)at[k] * (off_t)sizeof(r);
        if (at[k] == IX_NONE)
            continue;
        if (at[k] >= h.count || pread(fd, &r, sizeof(r), off) != (ssize_t)sizeof(r) || r.sum != rec_sum(&r))
            goto out;
        body ^= rec_mix(at[k], r.sum);
        r.current = k == 1;
        r.aux = IX_NONE; /* a file rewritten: the engine works its data out anew, as after the long way */
        r.sum = rec_sum(&r);
        body ^= rec_mix(at[k], r.sum);
        if (pwrite(fd, &r, sizeof(r), off) != (ssize_t)sizeof(r))
            goto out;
    }
    h.body_sum = body;
    stamp_set(&h.stamp, &w->last, now_ns(), w->fine, body, h.stamp.flags, c->rec);
    ok = pwrite(fd, &h, sizeof(h), 0) == (ssize_t)sizeof(h);
out:
    qs_close(fd);
    if (!ok)
        md_index_drop(s, domain); /* the next load reads the directory */
}

struct md_tree *md_tree_peek(struct md_store *s, const char *domain, const char *name, size_t min_count)
{
    return peek(s, domain, name, min_count, false);
}

struct md_tree *md_tree_peek_leaf(struct md_store *s, const char *domain, const struct md_lock *lock,
                                  const char *name, size_t min_count)
{
    return md_lock_covers(lock, s, domain) ? peek(s, domain, name, min_count, true) : NULL;
}

bool md_tree_peeked_leaf(const struct md_tree *t, uint64_t *body_sum, size_t *jl_len)
{
    if (!t || !t->leaf)
        return false;
    *body_sum = t->peek_body;
    *jl_len = t->peek_jl;
    return true;
}

struct md_tree *md_tree_load_internal(struct md_store *s, const char *domain, const struct md_lock *lock,
                                      bool write_index, struct qs_error **err)
{
    return load_guarded(s, domain, lock, write_index, false, err);
}

struct md_tree *md_tree_load_for_write(struct md_store *s, const char *domain, const struct md_lock *lock,
                                       struct qs_error **err)
{
    return load_guarded(s, domain, lock, false, false, err);
}

struct md_tree *md_tree_load_checked(struct md_store *s, const char *domain, const struct md_lock *lock,
                                     struct qs_error **err)
{
    return load_guarded(s, domain, lock, true, true, err);
}

/*
 * The directory itself: every *.xml file, vouched for by the index record of the same name when its inode
 * is the same (the directory's stamp matched but was racy) or its size, mtime and inode are (otherwise),
 * else parsed. The index is rewritten when anything differed.
 */
static struct md_tree *load_scan(struct md_store *s, const char *domain, const struct md_lock *lock,
                                 bool write_index, bool checked, struct qs_error **err)
{
    struct md_tree *t = tree_new(domain), *ret = NULL;
    struct qs_error *e = NULL;
    const struct ix_header *h = NULL;
    const struct ix_rec *recs = NULL;
    const char *strs = NULL;
    struct md_map files = {0};
    bool *used = NULL, dirty = false, recs_ok = false;
    const char *ix = NULL;
    char *data = NULL;
    enum scan_mode mode = SCAN_STAT;
    size_t len, ixlen = 0;
    int dir = -1;
    DIR *dp = NULL;
    struct dirent *de;
    struct stat dst;
    long long now;
    int64_t observed;

    if ((dir = md_store_snapdir_open(s, domain, false, &e)) < 0) {
        if (e->code != QS_ERR_NOTFOUND) {
            qs_error_propagate(err, &e);
            goto out;
        }
        t->path = MD_LOAD_INDEX;
        ret = t;
        goto out;
    }
    if (fstat(dir, &dst) < 0) {
        qs_error_set_errno(err, QS_ERR_IO, errno, "cannot stat snapshot directory of domain '%s'", domain);
        goto out;
    }
    /* what is read below is at least as new as the directory's stamp taken here */
    observed = now_ns();
    t->at_load = dst;
    ix = ix_read(s, domain, &h, &ixlen);
    /* strings of reused records will point into the index mapped */
    t->ixdata = ix;
    t->ixlen = ixlen;
    if (ix && ix_body_sum(ix, h, &recs_ok) == h->body_sum && recs_ok && ix[h->total_size - 1] == '\0') {
        recs = (const struct ix_rec *)(ix + sizeof(*h));
        strs = ix_strings(ix, h);
        t_reserve(t, (size_t)h->count * (sizeof(struct node) + 6 * sizeof(void *)) + 65536);
        used = qs_xcalloc(h->count + 1, sizeof(*used));
        md_map_init(&files, h->count);
        for (uint32_t i = 0; i < h->count; i++) {
            bool bad = false;
            const char *f = ix_str(strs, h->strings_size, recs[i].file, &bad);
            if (f && !bad)
                md_map_put(&files, f, (void *)&recs[i]);
        }
        /* the directory as recorded, only the tick unsure: entries renamed, added or removed show in
         * their inode numbers, nothing else can have happened. Not so after a journal: a file it rewrote
         * keeps its old record, and a file rewritten twice may get its first inode number back. */
        if (!checked && stamp_ok(h) && stamp_matches(&h->stamp, &dst))
            mode = SCAN_INODES;
        t->fine = stamp_ok(h) && h->stamp.dev == (uint64_t)dst.st_dev && h->stamp.ino == (uint64_t)dst.st_ino &&
                  h->stamp.fine;
    } else {
        md_map_init(&files, 0);
        h = NULL;
    }
    if (!h || !stamp_ok(h) || !stamp_matches(&h->stamp, &dst) || stamp_racy(&h->stamp, &dst))
        dirty = true; /* at least the stamp is rewritten */
    t->path = mode == SCAN_INODES ? MD_LOAD_INODES : MD_LOAD_STAT;

    {
        int dfd = dup(dir);
        if (dfd < 0 || !(dp = fdopendir(dfd))) {
            qs_error_set_errno(err, QS_ERR_IO, errno, "cannot read snapshot directory of domain '%s'", domain);
            qs_close(dfd);
            goto out;
        }
    }
    now = now_ns();
    while ((de = readdir(dp))) {
        const struct ix_rec *r;
        struct node *n;
        struct stat st;
        bool have_stat = false;
        if (de->d_name[0] == '.' || !qs_str_has_suffix(de->d_name, ".xml"))
            continue;
        if (de->d_type != DT_REG && de->d_type != DT_UNKNOWN)
            continue;
        r = md_map_get(&files, de->d_name);
        if (mode == SCAN_STAT || !r || r->ino != (uint64_t)de->d_ino) {
            if (fstatat(dir, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                if (errno == ENOENT) /* raced with a delete */
                    continue;
                qs_error_set_errno(err, QS_ERR_IO, errno, "cannot stat snapshot file '%s'", de->d_name);
                goto out;
            }
            if (!S_ISREG(st.st_mode))
                continue;
            have_stat = true;
        }
        if (r && !used[r - recs]) {
            bool same = have_stat ? (r->size == (int64_t)st.st_size && r->mtime_ns == ts_ns(st.st_mtim) &&
                                     r->ino == (uint64_t)st.st_ino)
                                  : r->ino == (uint64_t)de->d_ino;
            used[r - recs] = true;
            if (same) {
                bool bad = false;
                n = node_alloc(t);
                n->e.file = ix_str(strs, h->strings_size, r->file, &bad);
                n->e.name = ix_str(strs, h->strings_size, r->name, &bad);
                n->e.parent = r->parent == IX_NONE || r->parent >= h->count
                                  ? NULL
                                  : ix_str(strs, h->strings_size, recs[r->parent].name, &bad);
                n->e.description = ix_str(strs, h->strings_size, r->description, &bad);
                n->e.memory_file = ix_str(strs, h->strings_size, r->memory_file, &bad);
                n->e.aux = ix_str(strs, h->strings_size, r->aux, &bad);
                if (!bad && n->e.name && *n->e.name && r->state < MD_STATE__LAST && r->memory < MD_LOCATION__LAST &&
                    (r->parent == IX_NONE || r->parent < h->count)) {
                    n->e.state = r->state;
                    n->e.memory = r->memory;
                    n->e.creation_time = r->creation_time;
                    n->e.disk_locations = r->disk_locations;
                    n->e.external = r->external != 0;
                    n->e.current = r->current != 0;
                    n->size = r->size;
                    n->mtime_ns = r->mtime_ns;
                    n->ino = (long long)r->ino;
                    by_name_push(t, n);
                    continue;
                }
                memset(n, 0, sizeof(*n)); /* a damaged record: the file is read instead */
            }
        }
        if (!have_stat) {
            if (fstatat(dir, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                if (errno == ENOENT)
                    continue;
                qs_error_set_errno(err, QS_ERR_IO, errno, "cannot stat snapshot file '%s'", de->d_name);
                goto out;
            }
            if (!S_ISREG(st.st_mode))
                continue;
        }
        /* new or changed: parse it */
        {
            struct md_snapshot *snap;
            /* a file the index already lists as racy (size -1, same mtime and inode) and that is still racy
             * would be written back exactly as it is: no reason to rewrite the index for it */
            if (!(r && r->size == -1 && r->mtime_ns == ts_ns(st.st_mtim) && r->ino == (uint64_t)st.st_ino &&
                  ts_ns(st.st_mtim) > now - RACY_NS))
                dirty = true;
            free(data);
            data = NULL;
            if (qs_file_read(dir, de->d_name, MD_FILE_MAX, &data, &len, err) < 0)
                goto out;
            if (!(snap = md_snapshot_parse(data, len, MD_PARSE_ON_DISK | MD_PARSE_SKIP_SUBTREES, err))) {
                qs_error_prefix(err, "snapshot file '%s' of domain '%s'", de->d_name, domain);
                goto out;
            }
            n = node_alloc(t);
            n->e.file = intern0(t, de->d_name);
            node_from_snapshot(t, n, snap);
            n->size = ts_ns(st.st_mtim) > now - RACY_NS ? -1 : (long long)st.st_size;
            n->mtime_ns = ts_ns(st.st_mtim);
            n->ino = (long long)st.st_ino;
            md_snapshot_free(snap);
            by_name_push(t, n);
            t->parsed++;
        }
    }
    for (uint32_t i = 0; h && i < h->count; i++)
        if (!used[i])
            dirty = true; /* a file vanished */
    if (build(t, err) < 0)
        goto out;
    if (dirty && write_index)
        index_store(s, t, &dst, observed, lock);
    ret = t;
out:
    if (dp)
        closedir(dp);
    qs_close(dir);
    qs_error_free(e);
    md_map_release(&files);
    free(used);
    free(data);
    if (!ret)
        md_tree_free(t);
    return ret;
}

/* ---- writers keep the tree in step with their changes ---- */

int md_tree_note_file(struct md_tree *t, int dirfd, const char *file, const struct md_snapshot *snap)
{
    struct stat st;
    struct node *n, *old_up = NULL;
    bool found;
    size_t pos;

    if (fstatat(dirfd, file, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        t->broken = true;
        return -1;
    }
    pos = find_pos(t, snap->name, &found);
    if (found) {
        n = t->by_name[pos];
        old_up = n->up;
    } else {
        n = node_alloc(t);
        by_name_room(t);
        memmove(t->by_name + pos + 1, t->by_name + pos, (t->n - pos) * sizeof(*t->by_name));
        t->by_name[pos] = n;
        t->n++;
    }
    node_from_snapshot(t, n, snap);
    n->e.file = intern0(t, file);
    n->size = ts_ns(st.st_mtim) > now_ns() - RACY_NS ? -1 : (long long)st.st_size;
    n->mtime_ns = ts_ns(st.st_mtim);
    n->ino = (long long)st.st_ino;
    n->up = NULL;
    if (snap->parent && !(n->up = find(t, snap->parent))) {
        t->broken = true;
        return -1;
    }
    if (!found || n->up != old_up)
        t->shape_dirty = true;
    return 0;
}

void md_tree_note_removed(struct md_tree *t, const char *name)
{
    bool found;
    size_t pos = find_pos(t, name, &found);
    struct node *gone;

    if (!found) {
        t->broken = true;
        return;
    }
    gone = t->by_name[pos];
    memmove(t->by_name + pos, t->by_name + pos + 1, (t->n - pos - 1) * sizeof(*t->by_name));
    t->n--;
    t->shape_dirty = true;
    /* children must have been noted with their new parent first */
    for (size_t i = 0; i < t->n; i++)
        if (t->by_name[i]->up == gone)
            t->broken = true;
}

void md_wstamp_begin(struct md_wstamp *w, const struct md_tree *t, int dirfd)
{
    memset(w, 0, sizeof(*w));
    w->ok = fstat(dirfd, &w->last) == 0 && t->at_load.st_ino != 0 && stat_same(&w->last, &t->at_load);
    w->fine = t->fine;
}

void md_wstamp_before(struct md_wstamp *w, int dirfd)
{
    struct stat st;
    /* something other than this writer changed the directory since its last look */
    if (fstat(dirfd, &st) < 0 || !stat_same(&st, &w->last))
        w->ok = false;
    w->before = st;
}

void md_wstamp_after(struct md_wstamp *w, int dirfd)
{
    if (fstat(dirfd, &w->last) < 0)
        w->ok = false;
    else if (md_stamp_fine(&w->before, &w->last))
        w->fine = true;
}

void md_wstamp_grain(struct md_wstamp *w, const struct stat *mid)
{
    if (md_stamp_fine(mid, &w->last))
        w->fine = true;
}

/* relink() for a tree whose snapshots and parents are as it last worked them out (a writer only rewrote
 * files in place, as moving "current" does): only which one is current is looked at again. At 10,000
 * snapshots a relink takes 0.3-0.7 ms, most of it the fresh memory of its arrays. */
static int current_again(struct md_tree *t)
{
    t->current = NULL;
    for (size_t i = 0; i < t->n; i++) {
        if (!t->by_name[i]->e.current)
            continue;
        if (t->current)
            return -1; /* two: as relink() refuses them */
        t->current = t->by_name[i];
    }
    return 0;
}

void md_tree_commit(struct md_store *s, struct md_tree *t, const struct md_wstamp *w)
{
    /* the tree is the directory as it was loaded plus this writer's own changes, and nothing else changed
     * it in between (as far as the stamps can tell: see the top of this file) */
    t->have_stamp = false; /* the index it came from is replaced */
    if (t->broken || !w->ok || (t->shape_dirty ? relink(t, NULL) : current_again(t)) < 0 ||
        ix_write(s, t, &w->last, now_ns(), w->fine, NULL) < 0) {
        md_index_drop(s, t->domain); /* the next load reads the directory */
        t->at_load.st_ino = 0;       /* and the tree vouches for nothing */
        return;
    }
    /* the tree is the directory as the writer left it: the next writer under the same lock may go on with it */
    t->shape_dirty = false;
    t->at_load = w->last;
    t->fine = w->fine;
}

bool md_tree_still(struct md_store *s, const struct md_tree *t, const struct md_lock *lock, const char *domain)
{
    struct stat st;
    int64_t last;
    char *rel;
    int r;

    if (!t || t->broken || t->partial || t->at_load.st_ino == 0 || strcmp(t->domain, domain) != 0 ||
        !md_lock_covers(lock, s, domain))
        return false;
    rel = qs_asprintf("snapshot/%s", domain);
    r = fstatat(md_store_root_fd(s), rel, &st, AT_SYMLINK_NOFOLLOW);
    free(rel);
    if (r < 0 || !stat_same(&st, &t->at_load))
        return false;
    /* a change later in the tick of the directory's last one would not show (see stamp_racy): a load of
     * its own compares the files then */
    last = ts_ns(st.st_mtim) > ts_ns(st.st_ctim) ? ts_ns(st.st_mtim) : ts_ns(st.st_ctim);
    return t->fine || now_ns() - last >= granularity_ns(&st);
}

void md_tree_set_aux(struct md_tree *t, const struct md_entry *e, const char *aux)
{
    struct node *n = (struct node *)e;

    n->e.aux = aux ? intern0(t, aux) : NULL;
    t->aux_dirty = true;
}

void md_tree_aux_store(struct md_store *s, struct md_tree *t, const struct md_lock *lock)
{
    char *rel;
    struct stat st;
    int r;

    if (!t->aux_dirty || !t->have_stamp || t->broken || !md_lock_covers(lock, s, t->domain))
        return;
    rel = qs_asprintf("snapshot/%s", t->domain);
    r = fstatat(md_store_root_fd(s), rel, &st, AT_SYMLINK_NOFOLLOW);
    free(rel);
    /* the index this tree came from still vouches for the directory (the lock keeps writers out): the same
     * stamp over the records with their aux data */
    if (r == 0 && stat_same(&st, &t->at_load) && stamp_matches(&t->stamp, &st) && ix_write(s, t, &st, 0, t->fine,
                                                                                           &t->stamp) == 0)
        t->aux_dirty = false;
}

int md_tree_load_path(const struct md_tree *t) { return t->path; }

/* ---- queries ---- */

size_t md_tree_count(const struct md_tree *t) { return t->n; }
size_t md_tree_files_parsed(const struct md_tree *t) { return t->parsed; }
bool md_tree_index_written(const struct md_tree *t) { return t->index_written; }

const struct md_entry *md_tree_find(const struct md_tree *t, const char *name)
{
    struct node *n = find(t, name);
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

size_t md_tree_descendants(const struct md_tree *t, const struct md_entry *e)
{
    const struct node *n = (const struct node *)e;
    (void)t;
    return n ? n->last - n->pre : 0; /* a subtree's pre-order numbers are one run */
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
    if (from && !(f = find(t, from))) {
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

int md_snapshot_check_redefine(const char *domain_uuid, const struct md_snapshot *snap, struct qs_error **err)
{
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
    return 0;
}

int md_tree_check_redefine(const struct md_tree *t, const char *domain_uuid, const struct md_snapshot *snap,
                           struct qs_error **err)
{
    const struct node *other, *p;

    if (md_snapshot_check_redefine(domain_uuid, snap, err) < 0)
        return -1;
    if (snap->parent) {
        if (strcmp(snap->parent, snap->name) == 0) {
            qs_error_set(err, QS_ERR_INVALID, "cannot set snapshot '%s' as its own parent", snap->name);
            return -1;
        }
        if (!(p = find(t, snap->parent))) {
            qs_error_set(err, QS_ERR_INVALID, "invalid argument: parent %s for moment %s not found", snap->parent,
                         snap->name);
            return -1;
        }
        /* only a snapshot that exists already can be an ancestor of its new parent */
        for (const struct node *self = find(t, snap->name); self && p->parent; p = p->parent) {
            if (p->parent == self) {
                qs_error_set(err, QS_ERR_INVALID, "parent '%s' would create cycle to '%s'", p->e.name, snap->name);
                return -1;
            }
        }
    }
    if ((other = find(t, snap->name))) {
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
