/* session.c: the engine for a long-lived service - pooled engines, cached snapshot trees, one writer per
 * domain in the process. */
#include "engine_priv.h"
#include "external.h" /* EXT_COOKIE_PAUSE */
#include "qs_util.h"
#include "vm.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* A domain's tree as loaded, and what vouches that it is still the store's: the generation (even) and the
 * snapshot directory's change time, which any file created, renamed or removed there moves. */
struct tree_ref {
    struct md_tree *tree;
    uint64_t gen;
    struct timespec mtime;
    ino_t ino;
    unsigned refs; /* the cache's own reference, and one per list handed out */
    uint64_t version; /* the session's count of loads when this one was made */
};

struct domain_slot {
    char *name;
    struct tree_ref *cached;
    bool writing;
    struct domain_slot *next;
};

/* A QMP connection the session keeps open between operations (kept), or has handed out (out). */
struct kept_conn {
    char *sock;
    struct qmp_client *c;
    int64_t idle_since_ms;
    struct kept_conn *next;
};

struct engine_session {
    struct engine_options opts;
    /* QMP connections: kept while a domain is busy, closed after qmp_keep_ms idle so that other clients
     * (qsnap, the user's own tools) get QEMU's monitor, which serves one client at a time */
    int qmp_keep_ms;
    struct kept_conn *kept, *out;
    pthread_t reaper;
    bool reaper_started, stopping;
    char *root;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct engine **idle; /* engines given back */
    size_t nidle, cap;
    struct domain_slot *slots;
    uint64_t loads;
};

struct engine_session *engine_session_new(const struct engine_options *opts, struct qs_error **err)
{
    struct engine_session *s = qs_xcalloc(1, sizeof(*s));
    struct engine *e;

    if (opts)
        s->opts = *opts;
    s->opts.progress = NULL;
    s->opts.step = NULL;
    s->opts.opaque = NULL;
    /* the first engine resolves (and creates) the state directory; every later one opens it by name */
    if (!(e = engine_new(&s->opts, err))) {
        free(s);
        return NULL;
    }
    s->root = qs_xstrdup(engine_root(e));
    s->opts.root = s->root;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    engine_session_put(s, e);
    return s;
}

static void tree_unref_locked(struct tree_ref *r)
{
    if (r && --r->refs == 0) {
        md_tree_free(r->tree);
        free(r);
    }
}

static void kept_close_all(struct engine_session *s);

void engine_session_free(struct engine_session *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (s->reaper_started)
        pthread_join(s->reaper, NULL);
    kept_close_all(s);
    for (size_t i = 0; i < s->nidle; i++)
        engine_free(s->idle[i]);
    free(s->idle);
    while (s->slots) {
        struct domain_slot *d = s->slots;
        s->slots = d->next;
        tree_unref_locked(d->cached);
        free(d->name);
        free(d);
    }
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s->root);
    free(s);
}

const char *engine_session_root(const struct engine_session *s)
{
    return s->root;
}

static int session_qmp_get(void *opaque, const char *sock, int timeout_ms, struct qmp_client **c,
                           struct qs_error **err);

struct engine *engine_session_get(struct engine_session *s, engine_progress_fn progress, engine_step_fn step,
                                  void *opaque, struct qs_error **err)
{
    struct engine *e = NULL;

    pthread_mutex_lock(&s->mu);
    if (s->nidle > 0)
        e = s->idle[--s->nidle];
    pthread_mutex_unlock(&s->mu);
    if (!e && !(e = engine_new(&s->opts, err)))
        return NULL;
    if (s->qmp_keep_ms > 0) {
        e->qmp_get = session_qmp_get;
        e->qmp_opaque = s;
    }
    e->progress = progress;
    e->step = step;
    e->opaque = opaque;
    return e;
}

void engine_session_put(struct engine_session *s, struct engine *e)
{
    if (!e)
        return;
    e->progress = NULL;
    e->step = NULL;
    e->opaque = NULL;
    pthread_mutex_lock(&s->mu);
    qs_xgrow((void **)&s->idle, &s->cap, s->nidle + 1, sizeof(*s->idle));
    s->idle[s->nidle++] = e;
    pthread_mutex_unlock(&s->mu);
}

/* DOMAIN's slot, made on first use; under s->mu. */
static struct domain_slot *slot_locked(struct engine_session *s, const char *domain)
{
    struct domain_slot *d;

    for (d = s->slots; d; d = d->next)
        if (strcmp(d->name, domain) == 0)
            return d;
    d = qs_xcalloc(1, sizeof(*d));
    d->name = qs_xstrdup(domain);
    d->next = s->slots;
    s->slots = d;
    return d;
}

void engine_session_write_begin(struct engine_session *s, const char *domain)
{
    struct domain_slot *d;

    pthread_mutex_lock(&s->mu);
    d = slot_locked(s, domain);
    while (d->writing)
        pthread_cond_wait(&s->cv, &s->mu);
    d->writing = true;
    pthread_mutex_unlock(&s->mu);
}

void engine_session_write_end(struct engine_session *s, const char *domain)
{
    pthread_mutex_lock(&s->mu);
    slot_locked(s, domain)->writing = false;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* The snapshot directory's identity and change time; zeroes when it does not exist (no snapshots yet). */
static void dir_stamp(struct engine *e, const char *domain, struct timespec *mtime, ino_t *ino)
{
    struct stat st;
    char *path = qs_asprintf("%s/snapshot/%s", md_store_root(e->store), domain); /* a checked name */

    memset(mtime, 0, sizeof(*mtime));
    *ino = 0;
    if (stat(path, &st) == 0) {
        *mtime = st.st_mtim;
        *ino = st.st_ino;
    }
    free(path);
}

struct tree_owner {
    struct engine_session *s;
    struct tree_ref *ref;
};

static void tree_release(void *opaque)
{
    struct tree_owner *o = opaque;

    pthread_mutex_lock(&o->s->mu);
    tree_unref_locked(o->ref);
    pthread_mutex_unlock(&o->s->mu);
    free(o);
}

/*
 * A reference to DOMAIN's tree: the cached one while the generation (even) and the directory's stamp are
 * those it was loaded under, else a fresh load that replaces it. The stamps are read before the load: a
 * change during the load makes the next call load again, never keeps a stale tree.
 */
static struct tree_ref *tree_get(struct engine_session *s, struct engine *e, const char *domain,
                                 struct qs_error **err)
{
    struct qs_error *local = NULL;
    struct tree_ref *r = NULL, *fresh;
    struct domain_slot *d;
    struct timespec mt;
    uint64_t gen;
    ino_t ino;

    /* an interrupted operation whose lock is free is recovered first, as a direct read does; what is
     * under way shows in engine_domain_pending */
    if (engine_domain_pending(e, domain, NULL, NULL, NULL, NULL, NULL, &local) < 0) {
        if (local->code == QS_ERR_NOTFOUND) {
            qs_error_free(local);
            qs_error_set(err, QS_ERR_NOTFOUND, "Domain not found: no domain with matching name '%s'", domain);
            return NULL;
        }
        qs_error_propagate(err, &local);
        return NULL;
    }
    gen = md_store_gen_read(e->store, domain);
    dir_stamp(e, domain, &mt, &ino);
    pthread_mutex_lock(&s->mu);
    d = slot_locked(s, domain);
    if (!(gen & 1) && d->cached && d->cached->gen == gen && d->cached->ino == ino &&
        d->cached->mtime.tv_sec == mt.tv_sec && d->cached->mtime.tv_nsec == mt.tv_nsec) {
        r = d->cached;
        r->refs++;
    }
    pthread_mutex_unlock(&s->mu);
    if (r)
        return r;
    fresh = qs_xcalloc(1, sizeof(*fresh));
    if (!(fresh->tree = md_tree_load(e->store, domain, NULL, err))) {
        free(fresh);
        return NULL;
    }
    fresh->gen = gen;
    fresh->mtime = mt;
    fresh->ino = ino;
    fresh->refs = 1;
    pthread_mutex_lock(&s->mu);
    fresh->version = ++s->loads;
    pthread_mutex_unlock(&s->mu);
    if (!(gen & 1)) {
        /* a loader that read an odd generation got a consistent tree (md_tree_load waits that out) but
         * cannot vouch for it by that stamp: not cached */
        pthread_mutex_lock(&s->mu);
        d = slot_locked(s, domain);
        tree_unref_locked(d->cached);
        d->cached = fresh;
        fresh->refs++;
        pthread_mutex_unlock(&s->mu);
    }
    return fresh;
}

static struct engine_snapshot_list *wrap(struct engine_session *s, struct tree_ref *r,
                                         const struct md_entry *const *entries, size_t n, int64_t pause_us)
{
    struct tree_owner *o = qs_xcalloc(1, sizeof(*o));

    o->s = s;
    o->ref = r;
    return engine_snapshot_list_wrap(r->tree, entries, n, pause_us, tree_release, o);
}

static void unref(struct engine_session *s, struct tree_ref *r)
{
    pthread_mutex_lock(&s->mu);
    tree_unref_locked(r);
    pthread_mutex_unlock(&s->mu);
}

int engine_session_snapshot_list(struct engine_session *s, struct engine *e, const char *domain, unsigned flags,
                                 const char *from, struct engine_snapshot_list **out, struct qs_error **err)
{
    struct tree_ref *r;
    const struct md_entry **entries = NULL;
    size_t n = 0;

    if (qs_name_check(domain, "domain", err) < 0 || !(r = tree_get(s, e, domain, err)))
        return -1;
    if (from && !md_tree_find(r->tree, from)) {
        qs_error_set(err, QS_ERR_NOTFOUND,
                     "Domain snapshot not found: no domain snapshot with matching name '%s'", from);
        unref(s, r);
        return -1;
    }
    if (md_tree_list(r->tree, from, list_flags_to_md(flags), &entries, &n, err) < 0) {
        unref(s, r);
        return -1;
    }
    *out = wrap(s, r, entries, n, -1);
    free(entries);
    return 0;
}

/* The pause a --live snapshot recorded in its <cookie> (-1 when none), as engine_snapshot_lookup reads it. */
static int64_t pause_of(struct engine *e, const char *domain, const char *name)
{
    struct md_snapshot *full = md_store_snapshot_get(e->store, domain, name, NULL);
    char *v = NULL, *end = NULL;
    long long us = -1;

    if (full && md_snapshot_cookie_get(full, EXT_COOKIE_PAUSE, &v, NULL) == 0 && v && *v >= '0' && *v <= '9') {
        errno = 0;
        us = strtoll(v, &end, 10);
        if (errno || *end)
            us = -1;
    }
    free(v);
    md_snapshot_free(full);
    return us;
}

int engine_session_snapshot_lookup(struct engine_session *s, struct engine *e, const char *domain, const char *name,
                                   struct engine_snapshot_list **out, struct qs_error **err)
{
    const struct md_entry *en;
    struct tree_ref *r;

    if (qs_name_check(domain, "domain", err) < 0 || !(r = tree_get(s, e, domain, err)))
        return -1;
    if (!(en = md_tree_find(r->tree, name))) {
        qs_error_set(err, QS_ERR_NOTFOUND,
                     "Domain snapshot not found: no domain snapshot with matching name '%s'", name);
        unref(s, r);
        return -1;
    }
    *out = wrap(s, r, &en, 1, en->external ? pause_of(e, domain, name) : -1);
    return 0;
}

int engine_session_snapshot_count(struct engine_session *s, struct engine *e, const char *domain, size_t *n,
                                  struct qs_error **err)
{
    struct tree_ref *r;

    if (qs_name_check(domain, "domain", err) < 0 || !(r = tree_get(s, e, domain, err)))
        return -1;
    *n = md_tree_count(r->tree);
    unref(s, r);
    return 0;
}

/* ---- disks, for a service's views ---- */

void engine_disks_free(struct engine_disk *d, size_t n)
{
    for (size_t i = 0; d && i < n; i++) {
        free(d[i].target);
        free(d[i].source);
        free(d[i].format);
        free(d[i].location);
    }
    free(d);
}

static char *dup_or_null(const char *s)
{
    return s ? qs_xstrdup(s) : NULL;
}

int engine_domain_get_disks(struct engine *e, const char *domain, struct engine_disk **disks, size_t *n,
                            struct qs_error **err)
{
    struct md_domain *dom = engine_domain_load(e, domain, err);
    size_t nd, k = 0;

    if (!dom)
        return -1;
    nd = md_domain_disk_count(dom);
    *disks = qs_xcalloc(nd + 1, sizeof(**disks));
    for (size_t i = 0; i < nd; i++) {
        struct md_domain_disk d;
        if (md_domain_disk_get(dom, i, &d, NULL) < 0 || !d.target || (d.device && strcmp(d.device, "disk") != 0))
            continue;
        (*disks)[k++] = (struct engine_disk){qs_xstrdup(d.target), dup_or_null(d.source), dup_or_null(d.driver_type),
                                             NULL};
    }
    *n = k;
    md_domain_free(dom);
    return 0;
}

int engine_snapshot_get_disks(struct engine *e, const char *domain, const char *name, struct engine_disk **disks,
                              size_t *n, char **memory_file, struct qs_error **err)
{
    struct qs_error *local = NULL;
    struct md_snapshot *s;

    if (engine_domain_lookup(e, domain, err) < 0)
        return -1;
    if (!(s = md_store_snapshot_get(e->store, domain, name, &local))) {
        if (local->code == QS_ERR_NOTFOUND) {
            qs_error_free(local);
            qs_error_set(err, QS_ERR_NOTFOUND,
                         "Domain snapshot not found: no domain snapshot with matching name '%s'", name);
        } else {
            qs_error_propagate(err, &local);
        }
        return -1;
    }
    *disks = qs_xcalloc(s->ndisks + 1, sizeof(**disks));
    for (size_t i = 0; i < s->ndisks; i++) {
        const struct md_snapshot_disk *d = &s->disks[i];
        const char *loc = md_location_to_string(d->snapshot);
        (*disks)[i] = (struct engine_disk){qs_xstrdup(d->name), dup_or_null(d->source), dup_or_null(d->driver_type),
                                           qs_xstrdup(loc ? loc : "default")};
    }
    *n = s->ndisks;
    if (memory_file)
        *memory_file = dup_or_null(s->memory_file);
    md_snapshot_free(s);
    return 0;
}

bool engine_session_writing(struct engine_session *s, const char *domain)
{
    bool w;

    pthread_mutex_lock(&s->mu);
    w = slot_locked(s, domain)->writing;
    pthread_mutex_unlock(&s->mu);
    return w;
}

int engine_session_tree_version(struct engine_session *s, struct engine *e, const char *domain, uint64_t *version,
                                struct qs_error **err)
{
    struct tree_ref *r;

    if (qs_name_check(domain, "domain", err) < 0 || !(r = tree_get(s, e, domain, err)))
        return -1;
    /* a tree that could not be cached (loaded under an odd generation) is a version of its own: 0, never
     * reused */
    pthread_mutex_lock(&s->mu);
    *version = slot_locked(s, domain)->cached == r ? r->version : 0;
    pthread_mutex_unlock(&s->mu);
    unref(s, r);
    return 0;
}

/* ---- QMP connections kept between operations ---- */

static void kept_free(struct kept_conn *k)
{
    qmp_client_close(k->c);
    free(k->sock);
    free(k);
}

static void kept_close_all(struct engine_session *s)
{
    while (s->kept) {
        struct kept_conn *k = s->kept;
        s->kept = k->next;
        kept_free(k);
    }
    /* handed out: their holders free them; no pool to return to any more */
    while (s->out) {
        struct kept_conn *k = s->out;
        s->out = k->next;
        if (k->c)
            qmp_client_set_release(k->c, NULL, NULL);
        free(k->sock);
        free(k);
    }
}

/* qmp_client_free of a connection the session handed out: kept for the next operation. */
static bool session_qmp_release(void *opaque, struct qmp_client *c)
{
    struct engine_session *s = opaque;
    bool keep = false;

    pthread_mutex_lock(&s->mu);
    for (struct kept_conn **pp = &s->out; *pp; pp = &(*pp)->next)
        if ((*pp)->c == c) {
            struct kept_conn *k = *pp;
            *pp = k->next;
            if (s->stopping) {
                free(k->sock);
                free(k);
                break;
            }
            k->idle_since_ms = qs_now_ms();
            k->next = s->kept;
            s->kept = k;
            keep = true;
            break;
        }
    pthread_cond_broadcast(&s->cv); /* a request waiting for this monitor (session_qmp_get) */
    pthread_mutex_unlock(&s->mu);
    return keep;
}

/* How long a request waits for the monitor another request of this process has: as long as a connect waits
 * for QEMU's greeting (vm_connect), which is what it would wait otherwise. */
#define SHARED_WAIT_MS 5000

/* Whether a connection to SOCK is handed out; under s->mu. */
static bool out_locked(const struct engine_session *s, const char *sock)
{
    for (const struct kept_conn *k = s->out; k; k = k->next)
        if (strcmp(k->sock, sock) == 0)
            return true;
    return false;
}

static int session_qmp_get(void *opaque, const char *sock, int timeout_ms, struct qmp_client **c,
                           struct qs_error **err)
{
    struct engine_session *s = opaque;
    struct kept_conn *k = NULL;
    struct timespec until;
    bool busy = false;

    /* QEMU's monitor serves one client at a time: while another request of this process has it (or is
     * connecting to it), a second connection would get no greeting until the first is closed - which a kept
     * one is not before its keep time. So one connection per socket: the entry goes into s->out before the
     * connect, and a second request waits for it to come back. */
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += SHARED_WAIT_MS / 1000;
    until.tv_nsec += (long)(SHARED_WAIT_MS % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L)
        until.tv_sec++, until.tv_nsec -= 1000000000L;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        for (struct kept_conn **pp = &s->kept; *pp; pp = &(*pp)->next)
            if (strcmp((*pp)->sock, sock) == 0) {
                k = *pp;
                *pp = k->next;
                break;
            }
        if (k || !out_locked(s, sock) || s->stopping)
            break;
        if (pthread_cond_timedwait(&s->cv, &s->mu, &until) != 0) {
            busy = out_locked(s, sock);
            break;
        }
    }
    if (!k && !busy) {
        k = qs_xcalloc(1, sizeof(*k));
        k->sock = qs_xstrdup(sock);
    }
    if (k) {
        k->next = s->out;
        s->out = k;
    }
    pthread_mutex_unlock(&s->mu);
    if (busy) {
        qs_error_set(err, QS_ERR_BUSY, "QMP socket '%s' was in use by another request for %d ms", sock,
                     SHARED_WAIT_MS);
        return -1;
    }
    if (k->c) {
        /* still QEMU's: what it sent meanwhile is read (events: dropped), and a QEMU that went away shows */
        struct qs_error *gone = NULL;
        if (qmp_client_poll(k->c, &gone) < 0) {
            qs_error_free(gone);
            qmp_client_close(k->c);
            k->c = NULL;
        } else {
            qmp_client_event_clear(k->c);
        }
    }
    if (!k->c) {
        struct qmp_client *nc = NULL;
        int r = vm_connect(sock, timeout_ms, &nc, err);
        pthread_mutex_lock(&s->mu);
        if (r < 0) {
            for (struct kept_conn **pp = &s->out; *pp; pp = &(*pp)->next)
                if (*pp == k) {
                    *pp = k->next;
                    break;
                }
            pthread_cond_broadcast(&s->cv);
        } else {
            k->c = nc;
        }
        pthread_mutex_unlock(&s->mu);
        if (r < 0) {
            free(k->sock);
            free(k);
            return -1;
        }
    }
    qmp_client_set_release(k->c, session_qmp_release, s);
    *c = k->c;
    return 0;
}

/* Closes what stayed idle past the keep time. */
static void *reaper_main(void *opaque)
{
    struct engine_session *s = opaque;

    pthread_mutex_lock(&s->mu);
    while (!s->stopping) {
        struct timespec until;
        int64_t now = qs_now_ms();
        struct kept_conn *doomed = NULL;
        for (struct kept_conn **pp = &s->kept; *pp;) {
            if (now - (*pp)->idle_since_ms >= s->qmp_keep_ms) {
                struct kept_conn *k = *pp;
                *pp = k->next;
                k->next = doomed;
                doomed = k;
                continue;
            }
            pp = &(*pp)->next;
        }
        pthread_mutex_unlock(&s->mu);
        while (doomed) {
            struct kept_conn *k = doomed;
            doomed = k->next;
            kept_free(k);
        }
        pthread_mutex_lock(&s->mu);
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += (long)(s->qmp_keep_ms < 100 ? s->qmp_keep_ms : 50) * 1000000L;
        if (until.tv_nsec >= 1000000000L)
            until.tv_sec++, until.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&s->cv, &s->mu, &until);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

int engine_session_set_qmp_keep(struct engine_session *s, int ms, struct qs_error **err)
{
    if (ms < 0 || ms > 60000) {
        qs_error_set(err, QS_ERR_INVALID, "a QMP connection can be kept 0 to 60000 ms, not %d", ms);
        return -1;
    }
    if (s->qmp_keep_ms > 0 || s->reaper_started) {
        qs_error_set(err, QS_ERR_STATE, "the QMP keep time is set once, before any engine is taken");
        return -1;
    }
    s->qmp_keep_ms = ms;
    if (ms > 0) {
        if (qs_thread_start(&s->reaper, reaper_main, s) != 0) {
            s->qmp_keep_ms = 0;
            qs_error_set(err, QS_ERR_IO, "cannot start the QMP connection reaper");
            return -1;
        }
        s->reaper_started = true;
    }
    /* engines taken before now (the pool) get it too */
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < s->nidle; i++) {
        s->idle[i]->qmp_get = ms > 0 ? session_qmp_get : NULL;
        s->idle[i]->qmp_opaque = s;
    }
    pthread_mutex_unlock(&s->mu);
    return 0;
}
