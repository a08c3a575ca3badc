/* prune.c: retention applied to a domain's snapshots (per schedule, or the manual ones), and protected
 * snapshots. */
#include "events.h"
#include "pure.h"
#include "qs_buf.h"
#include "qs_file.h"
#include "qs_util.h"
#include "retention.h"
#include "schedule.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- qsnap's marks of one snapshot ---- */

struct marks {
    char *schedule; /* NULL: manual */
    bool protect;
};

/*
 * Marks by file identity: a long-lived engine (qsnapd, a runner) prunes the same snapshots again and again, and
 * reading marks means parsing a whole snapshot file. Every metadata write is a rename of a new file, so
 * (inode, size, mtime) changes whenever the content does.
 */
struct marks_entry {
    char *domain, *name;
    long long ino, size, mtime_ns;
    struct marks m;
};
struct marks_cache {
    struct marks_entry *v;
    size_t n, cap;
};

void engine_sched_release(struct engine *e)
{
    free(e->requester);
    e->requester = NULL;
    if (e->marks) {
        for (size_t i = 0; i < e->marks->n; i++) {
            free(e->marks->v[i].domain);
            free(e->marks->v[i].name);
            free(e->marks->v[i].m.schedule);
        }
        free(e->marks->v);
        free(e->marks);
        e->marks = NULL;
    }
}

static int marks_parse(struct engine *e, const char *domain, const char *name, struct marks *m, struct qs_error **err)
{
    struct md_snapshot *s = md_store_snapshot_get(e->store, domain, name, err);
    char *p = NULL;
    int ret = -1;

    memset(m, 0, sizeof(*m));
    if (!s)
        return -1;
    if (md_snapshot_cookie_get(s, SCHED_COOKIE_SCHEDULE, &m->schedule, err) < 0 ||
        md_snapshot_cookie_get(s, SCHED_COOKIE_PROTECTED, &p, err) < 0)
        goto out;
    m->protect = qs_str_equal(p, "yes");
    ret = 0;
out:
    free(p);
    md_snapshot_free(s);
    return ret;
}

/* Whether the snapshot file at PATH may carry marks: its text names one of their elements (a snapshot with
 * none, as nearly all are, then needs no parse; a file that cannot be read is parsed, to say why). */
static bool mentions_marks(const char *path)
{
    char *data = NULL;
    size_t len = 0;
    bool r = true;

    if (qs_file_read(AT_FDCWD, path, MD_FILE_MAX, &data, &len, NULL) == 0)
        r = memmem(data, len, SCHED_COOKIE_SCHEDULE, strlen(SCHED_COOKIE_SCHEDULE)) ||
            memmem(data, len, SCHED_COOKIE_PROTECTED, strlen(SCHED_COOKIE_PROTECTED));
    free(data);
    return r;
}

/* NAME's marks; FILE (may be NULL: NAME.xml) is its file in the snapshot directory. */
static int marks_read_file(struct engine *e, const char *domain, const char *name, const char *file, struct marks *m,
                           struct qs_error **err)
{
    char *path = file ? qs_asprintf("%s/snapshot/%s/%s", engine_root(e), domain, file)
                      : qs_asprintf("%s/snapshot/%s/%s.xml", engine_root(e), domain, name);
    struct marks_cache *c;
    struct marks_entry *hit = NULL;
    struct stat st;
    bool known = stat(path, &st) == 0, plain = known && !mentions_marks(path);
    int r;

    free(path);
    if (!e->marks)
        e->marks = qs_xcalloc(1, sizeof(*e->marks));
    c = e->marks;
    for (size_t i = 0; i < c->n && !hit; i++)
        if (strcmp(c->v[i].name, name) == 0 && strcmp(c->v[i].domain, domain) == 0)
            hit = &c->v[i];
    if (known && hit && hit->ino == (long long)st.st_ino && hit->size == (long long)st.st_size &&
        hit->mtime_ns == (long long)st.st_mtim.tv_sec * 1000000000ll + st.st_mtim.tv_nsec) {
        m->schedule = hit->m.schedule ? qs_xstrdup(hit->m.schedule) : NULL;
        m->protect = hit->m.protect;
        return 0;
    }
    if (plain)
        memset(m, 0, sizeof(*m));
    else if ((r = marks_parse(e, domain, name, m, err)) < 0 || !known)
        return r;
    if (!hit) {
        qs_xgrow((void **)&c->v, &c->cap, c->n + 1, sizeof(*c->v));
        hit = &c->v[c->n++];
        memset(hit, 0, sizeof(*hit));
        hit->domain = qs_xstrdup(domain);
        hit->name = qs_xstrdup(name);
    }
    free(hit->m.schedule);
    hit->m.schedule = m->schedule ? qs_xstrdup(m->schedule) : NULL;
    hit->m.protect = m->protect;
    hit->ino = (long long)st.st_ino;
    hit->size = (long long)st.st_size;
    hit->mtime_ns = (long long)st.st_mtim.tv_sec * 1000000000ll + st.st_mtim.tv_nsec;
    return 0;
}

static int marks_read(struct engine *e, const char *domain, const char *name, struct marks *m, struct qs_error **err)
{
    return marks_read_file(e, domain, name, NULL, m, err);
}

int engine_snapshot_marks(struct engine *e, const char *domain, const char *name, bool *protect, char **schedule,
                          struct qs_error **err)
{
    struct marks m;
    struct qs_error *local = NULL;

    if (engine_domain_lookup(e, domain, err) < 0)
        return -1;
    if (marks_read(e, domain, name, &m, &local) < 0) {
        if (local->code == QS_ERR_NOTFOUND) {
            qs_error_clear(&local);
            qs_error_set(err, QS_ERR_NOTFOUND,
                         "Domain snapshot not found: no domain snapshot with matching name '%s'", name);
        }
        qs_error_propagate(err, &local);
        return -1;
    }
    if (protect)
        *protect = m.protect;
    if (schedule)
        *schedule = m.schedule;
    else
        free(m.schedule);
    return 0;
}

int protect_check(struct engine *e, const char *domain, const struct md_entry *const *entries, size_t n,
                  struct qs_error **err)
{
    for (size_t i = 0; i < n; i++) {
        struct marks m;
        if (marks_read(e, domain, entries[i]->name, &m, err) < 0)
            return -1;
        free(m.schedule);
        if (m.protect) {
            qs_error_set(err, QS_ERR_STATE, "snapshot '%s' is protected: unprotect it first (snapshot-protect "
                         "--unprotect) or delete with --force", entries[i]->name);
            return -1;
        }
    }
    return 0;
}

int engine_snapshot_protect(struct engine *e, const char *domain, const char *name, bool protect,
                            struct qs_error **err)
{
    struct md_lock *lock = NULL;
    struct md_snapshot *s = NULL;
    struct qs_error *local = NULL;
    struct event_op ev;
    char *old = NULL;
    int ret = -1;

    event_begin(e, &ev, protect ? "protect" : "unprotect", domain, name);
    if (engine_domain_lookup(e, domain, err) < 0 || !(lock = engine_domain_lock(e, domain, err)))
        goto out;
    if (!(s = md_store_snapshot_get(e->store, domain, name, &local))) {
        if (local->code == QS_ERR_NOTFOUND) {
            qs_error_clear(&local);
            qs_error_set(err, QS_ERR_NOTFOUND,
                         "Domain snapshot not found: no domain snapshot with matching name '%s'", name);
        }
        qs_error_propagate(err, &local);
        goto out;
    }
    if (md_snapshot_cookie_get(s, SCHED_COOKIE_PROTECTED, &old, err) < 0)
        goto out;
    if (qs_str_equal(old, "yes") == protect) {
        ret = 0; /* already so: the file stays as it is */
        goto out;
    }
    /* one file rewritten atomically: no intent record needed */
    if (md_snapshot_cookie_remove(s, SCHED_COOKIE_PROTECTED, err) < 0 ||
        (protect && md_snapshot_cookie_set(s, SCHED_COOKIE_PROTECTED, "yes", err) < 0) ||
        md_store_snapshot_put(e->store, lock, domain, s, 0, err) < 0)
        goto out;
    ret = 0;
out:
    event_end(e, &ev, ret, err ? *err : NULL);
    free(old);
    md_snapshot_free(s);
    md_lock_free(lock);
    return ret;
}

/* ---- prune ---- */

/* One snapshot considered, with its marks. */
struct cand {
    const struct md_entry *en;
    struct marks m;
};

/* Forgets DOMAIN's entries for snapshots not among the N in C (deleted ones): the cache stays the tree's size. */
static void marks_sweep(struct engine *e, const char *domain, const struct cand *c, size_t n)
{
    struct marks_cache *mc = e->marks;
    size_t k = 0;

    for (size_t i = 0; mc && i < mc->n; i++) {
        struct marks_entry *x = &mc->v[i];
        bool keep = strcmp(x->domain, domain) != 0;
        for (size_t j = 0; j < n && !keep; j++)
            keep = strcmp(c[j].en->name, x->name) == 0;
        if (keep) {
            mc->v[k++] = *x;
        } else {
            free(x->domain);
            free(x->name);
            free(x->m.schedule);
        }
    }
    if (mc)
        mc->n = k;
}

static void cands_free(struct cand *c, size_t n)
{
    for (size_t i = 0; c && i < n; i++)
        free(c[i].m.schedule);
    free(c);
}

static int item_age_cmp(const void *a, const void *b)
{
    const struct engine_prune_item *x = *(struct engine_prune_item *const *)a;
    const struct engine_prune_item *y = *(struct engine_prune_item *const *)b;
    if (x->creation_time != y->creation_time)
        return x->creation_time < y->creation_time ? -1 : 1;
    return strcmp(x->snapshot, y->snapshot);
}

/* Appends the decisions for one group (the candidates whose schedule is GROUP, NULL: the manual ones). */
static void group_decide(struct engine *e, struct cand *c, size_t nc, const char *group,
                         const struct engine_retention *keep, struct engine_prune_item **out, size_t *n, size_t *cap)
{
    struct ret_item *items = qs_xcalloc(nc + 1, sizeof(*items));
    size_t k = 0;

    for (size_t i = 0; i < nc; i++) {
        if (!qs_str_equal(c[i].m.schedule, group))
            continue;
        items[k].name = c[i].en->name;
        items[k].time = c[i].en->creation_time;
        items[k].protect = c[i].m.protect;
        items[k].opaque = &c[i];
        k++;
    }
    retention_apply(items, k, keep, engine_now_ms(e) / 1000);
    for (size_t i = 0; i < k; i++) {
        const struct ret_item *it = &items[i];
        const struct cand *cd = it->opaque;
        struct engine_prune_item *p;
        qs_xgrow((void **)out, cap, *n + 1, sizeof(**out));
        p = &(*out)[(*n)++];
        memset(p, 0, sizeof(*p));
        p->snapshot = qs_xstrdup(it->name);
        p->creation_time = it->time;
        p->schedule = group ? qs_xstrdup(group) : NULL;
        p->location = qs_xstrdup(cd->en->external ? "external" : "internal");
        p->action = it->mark == RET_PROTECTED ? ENGINE_PRUNE_PROTECTED
                    : it->mark == RET_KEEP    ? ENGINE_PRUNE_KEEP
                                              : ENGINE_PRUNE_REMOVE;
        p->rule = qs_xstrdup(it->mark == RET_PROTECTED ? "protected"
                             : it->expired            ? "max-age"
                                                      : ret_rule_name(it->rule));
        p->reason = retention_reason(it, keep);
    }
    free(items);
}

int prune_run(struct engine *e, const char *domain, const char *schedule, const struct engine_retention *keep,
              unsigned flags, struct engine_prune_item **out, size_t *n, int *removed, struct qs_error **err)
{
    const struct schedule_ops *ops = e->sched_ops;
    struct engine_schedule *sv = NULL;
    struct engine_prune_item *items = NULL, **doomed = NULL;
    struct md_tree *t = NULL;
    struct cand *c = NULL;
    struct event_op ev;
    size_t nsv = 0, nc = 0, ni = 0, cap = 0, nd = 0, kept = 0, prot = 0, gone = 0, refused = 0;
    bool manual = flags & ENGINE_PRUNE_MANUAL, dry = flags & ENGINE_PRUNE_DRY_RUN, stopped = false;
    ssize_t at = -1;
    int ret = -1;

    if (out)
        *out = NULL;
    if (n)
        *n = 0;
    if (removed)
        *removed = 0;
    event_begin(e, &ev, "prune", domain, NULL);
    if (engine_domain_lookup(e, domain, err) < 0 || sched_load(e, domain, &sv, &nsv, err) < 0)
        goto out;
    if (manual && schedule) {
        qs_error_set(err, QS_ERR_INVALID, "a prune of the manual snapshots cannot name a schedule");
        goto out;
    }
    if ((manual || schedule) && keep && !retention_any(keep)) {
        qs_error_set(err, QS_ERR_INVALID, "no retention rule given (keep-last, keep-hourly, ..., max-age)");
        goto out;
    }
    if (manual && !keep) {
        qs_error_set(err, QS_ERR_INVALID, "manual snapshots are pruned only by rules given for them "
                     "(--keep-last N, ..., --max-age)");
        goto out;
    }
    if (schedule) {
        for (size_t i = 0; i < nsv; i++)
            if (strcmp(sv[i].name, schedule) == 0)
                at = (ssize_t)i;
        if (at < 0 && !keep) {
            qs_error_set(err, QS_ERR_NOTFOUND, "domain '%s' has no schedule '%s': give retention rules to prune "
                         "the snapshots it made", domain, schedule);
            goto out;
        }
    }
    /* the tree as it is now; each delete takes the lock and checks again (protection, existence) */
    if (!(t = md_tree_load(e->store, domain, NULL, err)))
        goto out;
    nc = md_tree_count(t);
    c = qs_xcalloc(nc + 1, sizeof(*c));
    {
        const struct md_entry **all = NULL;
        size_t na = 0;
        if (md_tree_list(t, NULL, 0, &all, &na, err) < 0)
            goto out;
        for (size_t i = 0; i < na && i < nc; i++) {
            c[i].en = all[i];
            if (marks_read_file(e, domain, all[i]->name, all[i]->file, &c[i].m, err) < 0) {
                free(all);
                nc = i;
                goto out;
            }
        }
        nc = na < nc ? na : nc;
        free(all);
    }
    marks_sweep(e, domain, c, nc);
    if (manual) {
        group_decide(e, c, nc, NULL, keep, &items, &ni, &cap);
    } else if (schedule) {
        group_decide(e, c, nc, schedule, keep ? keep : &sv[at].keep, &items, &ni, &cap);
    } else {
        for (size_t i = 0; i < nsv; i++)
            group_decide(e, c, nc, sv[i].name, keep ? keep : &sv[i].keep, &items, &ni, &cap);
    }
    for (size_t i = 0; i < ni; i++) {
        if (items[i].action == ENGINE_PRUNE_REMOVE) {
            doomed = qs_xrealloc(doomed, (nd + 1) * sizeof(*doomed));
            doomed[nd++] = &items[i];
        } else if (items[i].action == ENGINE_PRUNE_PROTECTED) {
            prot++;
        } else {
            kept++;
        }
    }
    /* oldest first, one at a time, through the engine's own delete (merges for external snapshots) */
    if (nd > 1)
        qsort(doomed, nd, sizeof(*doomed), item_age_cmp);
    for (size_t i = 0; i < nd && !dry; i++) {
        struct engine_prune_item *p = doomed[i];
        struct qs_error *local = NULL;
        int r;
        if (stopped) {
            p->action = ENGINE_PRUNE_KEPT;
            p->error = qs_xstrdup("not removed: the prune stopped at an earlier delete that failed");
            continue;
        }
        r = ops ? ops->remove(e, domain, p->snapshot, 0, &local) : engine_snapshot_delete(e, domain, p->snapshot, 0,
                                                                                         &local);
        if (r == 0 || local->code == QS_ERR_NOTFOUND) {
            gone++; /* removed, or already gone */
        } else {
            /* a refusal changes nothing (the snapshot stands whole); any other failure ends the prune here, and
             * recovery finishes what the delete began */
            p->action = ENGINE_PRUNE_KEPT;
            p->error = qs_xstrdup(local->message);
            refused++;
            if (local->code != QS_ERR_UNSUPPORTED && local->code != QS_ERR_STATE && local->code != QS_ERR_INVALID &&
                local->code != QS_ERR_EXISTS) {
                stopped = true;
                qs_error_set(err, local->code, "prune of domain '%s' stopped: %s", domain, local->message);
            }
        }
        qs_error_free(local);
    }
    if (removed)
        *removed = (int)gone;
    event_set_detail(&ev, "%s%s%s: kept %zu, protected %zu, %s %zu%s", dry ? "dry run, " : "",
                     manual ? "manual snapshots" : schedule ? "schedule " : "every schedule",
                     manual ? "" : schedule ? schedule : "", kept + refused, prot, dry ? "would remove" : "removed",
                     dry ? nd : gone, refused ? " (some deletes refused or failed: see their events)" : "");
    ret = stopped ? -1 : 0;
out:
    event_end(e, &ev, ret, err ? *err : NULL);
    if (out) {
        *out = items;
        *n = ni;
    } else {
        engine_prune_list_free(items, ni);
    }
    free(doomed);
    cands_free(c, nc);
    md_tree_free(t);
    engine_schedule_list_free(sv, nsv);
    return ret;
}

int engine_snapshot_prune(struct engine *e, const char *domain, const char *schedule,
                          const struct engine_retention *keep, unsigned flags, struct engine_prune_item **out,
                          size_t *n, struct qs_error **err)
{
    return prune_run(e, domain, schedule, keep, flags, out, n, NULL, err);
}
