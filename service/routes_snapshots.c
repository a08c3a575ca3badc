/* routes_snapshots.c: /api/vms/{vm}/snapshots and oVirt's actions - list, show, create, delete, restore,
 * current, and the preview cycle. */
#include "svc.h"

#include "qs_buf.h"
#include "qs_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* List filters as query arguments, with the engine's flags. */
static const struct {
    const char *arg;
    unsigned flag;
} list_args[] = {
    {"roots", ENGINE_LIST_ROOTS},         {"descendants", ENGINE_LIST_DESCENDANTS},
    {"leaves", ENGINE_LIST_LEAVES},       {"no_leaves", ENGINE_LIST_NO_LEAVES},
    {"inactive", ENGINE_LIST_INACTIVE},   {"active", ENGINE_LIST_ACTIVE},
    {"disk_only", ENGINE_LIST_DISK_ONLY}, {"internal", ENGINE_LIST_INTERNAL},
    {"external", ENGINE_LIST_EXTERNAL},   {"metadata", ENGINE_LIST_METADATA},
    {"no_metadata", ENGINE_LIST_NO_METADATA}, {"topological", ENGINE_LIST_TOPOLOGICAL},
    {"tree", ENGINE_LIST_TREE},
};

/* What every snapshot of a listing shares: the preview, the operation under way. */
struct snap_ctx {
    const char *vm;
    char *previewed;  /* the snapshot in preview, or NULL */
    char **pending;   /* snapshots being created or deleted */
    size_t npending;
};

static void snap_ctx_release(struct snap_ctx *c)
{
    free(c->previewed);
    engine_strv_free(c->pending, c->npending);
}

/* MAYBE_PREVIEW false: the caller knows there is no preview point (asking would look for its file). */
static int snap_ctx_init(struct snap_ctx *c, struct engine *e, const char *vm, bool maybe_preview,
                         struct qs_error **err)
{
    enum engine_preview_state ps;

    memset(c, 0, sizeof(*c));
    c->vm = vm;
    if ((maybe_preview && engine_snapshot_preview_get(e, vm, &ps, &c->previewed, err) < 0) ||
        engine_domain_pending(e, vm, NULL, &c->pending, &c->npending, NULL, NULL, err) < 0)
        return -1;
    return 0;
}

static bool is_pending(const struct snap_ctx *c, const char *name)
{
    for (size_t i = 0; i < c->npending; i++)
        if (strcmp(c->pending[i], name) == 0)
            return true;
    return false;
}

/* A snapshot in oVirt's fields (id, description, date, snapshot_status, snapshot_type,
 * persist_memorystate) and qsnap's (name, parent, current, state, location, children, ...). NDESC is its
 * is its number of descendants when the caller counted them, else -1. */
static json_object *snap_json(const struct snap_ctx *c, const struct engine_snapshot *s, int64_t ndesc)
{
    json_object *o = json_object_new_object();
    const char *name = engine_snapshot_name(s), *parent = engine_snapshot_parent(s);
    const char *desc = engine_snapshot_description(s), *state = engine_snapshot_state(s);
    int64_t t = engine_snapshot_creation_time(s);
    bool point = strcmp(name, ENGINE_PREVIEW_POINT) == 0;
    char date[32], href[1024];
    struct tm tm;
    time_t tt = (time_t)t;

    gmtime_r(&tt, &tm);
    strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(href, sizeof(href), "/api/vms/%s/snapshots/%s", c->vm, name);
    json_object_object_add(o, "id", json_object_new_string(name));
    json_object_object_add(o, "href", json_object_new_string(href));
    json_object_object_add(o, "name", json_object_new_string(name));
    json_object_object_add(o, "description", desc ? json_object_new_string(desc) : NULL);
    json_object_object_add(o, "date", json_object_new_string(date));
    json_object_object_add(o, "creation_time", json_object_new_int64(t));
    json_object_object_add(o, "snapshot_status",
                           json_object_new_string(is_pending(c, name)                        ? "locked"
                                                  : qs_str_equal(c->previewed, name) ? "in_preview"
                                                                                     : "ok"));
    json_object_object_add(o, "snapshot_type", json_object_new_string(point ? "preview" : "regular"));
    json_object_object_add(o, "persist_memorystate",
                           json_object_new_boolean(strcmp(state, "shutoff") != 0 &&
                                                   strcmp(state, "disk-snapshot") != 0));
    json_object_object_add(o, "parent", parent ? json_object_new_string(parent) : NULL);
    json_object_object_add(o, "current", json_object_new_boolean(engine_snapshot_is_current(s)));
    json_object_object_add(o, "state", json_object_new_string(state));
    json_object_object_add(o, "location", json_object_new_string(engine_snapshot_location(s)));
    json_object_object_add(o, "children", json_object_new_int64((int64_t)engine_snapshot_children(s)));
    json_object_object_add(o, "descendants",
                           json_object_new_int64(ndesc >= 0 ? ndesc : (int64_t)engine_snapshot_descendants(s)));
    if (engine_snapshot_pause_us(s) >= 0)
        json_object_object_add(o, "guest_pause_us", json_object_new_int64(engine_snapshot_pause_us(s)));
    return o;
}

/*
 * Every snapshot's number of descendants in one pass over the whole tree (parents before children, walked
 * backwards: each adds itself and its own descendants to its parent), as name -> count. Asking each entry
 * would walk its subtree: quadratic for a long chain, seconds at 10,000 snapshots.
 */
static json_object *descendants_all(struct engine_session *ss, struct engine *e, const char *vm)
{
    struct engine_snapshot_list *all = NULL;
    json_object *counts;
    size_t n;
    int64_t *d;

    if (engine_session_snapshot_list(ss, e, vm, ENGINE_LIST_TOPOLOGICAL, NULL, &all, NULL) < 0)
        return NULL;
    n = engine_snapshot_list_count(all);
    counts = json_object_new_object();
    d = qs_xcalloc(n + 1, sizeof(*d));
    for (size_t i = 0; i < n; i++)
        json_object_object_add(counts, engine_snapshot_name(engine_snapshot_list_at(all, i)),
                               json_object_new_int64((int64_t)i));
    for (size_t i = n; i-- > 0;) {
        const char *parent = engine_snapshot_parent(engine_snapshot_list_at(all, i));
        json_object *pi;
        if (parent && json_object_object_get_ex(counts, parent, &pi))
            d[json_object_get_int64(pi)] += 1 + d[i];
    }
    for (size_t i = 0; i < n; i++)
        json_object_object_add(counts, engine_snapshot_name(engine_snapshot_list_at(all, i)),
                               json_object_new_int64(d[i]));
    free(d);
    engine_snapshot_list_free(all);
    return counts;
}

/* ---- formatted listings, kept while the tree they came from stands ---- */

#define LIST_CACHE 32

struct list_cached {
    char *vm, *key;       /* the query as sent; "" for none */
    uint64_t version;     /* engine_session_tree_version */
    char *pending;        /* the operation under way when it was made ("" when none) */
    struct svc_body *body;
    uint64_t used;
};

static pthread_mutex_t cache_mu = PTHREAD_MUTEX_INITIALIZER;
static struct list_cached cache[LIST_CACHE];
static uint64_t cache_clock;

/* The query as one string, the key of a listing. Caller frees. */
static char *query_key(const struct svc_req *r)
{
    struct qs_buf b;

    qs_buf_init(&b, 0);
    for (size_t i = 0; r->query && r->query[i]; i += 2)
        qs_buf_addf(&b, "%s=%s&", r->query[i], r->query[i + 1] ? r->query[i + 1] : "");
    return b.data ? qs_buf_detach(&b, NULL) : qs_xstrdup("");
}

/* What is under way on VM, as one string ("" when nothing): part of a listing's key (locked snapshots). */
static char *pending_key(struct engine *e, const char *vm, struct qs_error **err)
{
    char *op = NULL, **names = NULL, *key;
    size_t n = 0;
    struct qs_buf b;
    int r = engine_domain_pending(e, vm, &op, &names, &n, NULL, NULL, err);

    if (r < 0)
        return NULL;
    qs_buf_init(&b, 0);
    qs_buf_adds(&b, "");
    if (r > 0) {
        qs_buf_addf(&b, "%s:", op);
        for (size_t i = 0; i < n; i++)
            qs_buf_addf(&b, "%s/", names[i]);
    }
    key = b.data ? qs_buf_detach(&b, NULL) : qs_xstrdup("");
    engine_strv_free(names, n);
    free(op);
    return key;
}

static struct svc_body *cache_get(const char *vm, const char *key, uint64_t version, const char *pending)
{
    struct svc_body *b = NULL;

    if (!version)
        return NULL;
    pthread_mutex_lock(&cache_mu);
    for (size_t i = 0; i < LIST_CACHE; i++)
        if (cache[i].body && cache[i].version == version && !strcmp(cache[i].vm, vm) && !strcmp(cache[i].key, key) &&
            !strcmp(cache[i].pending, pending)) {
            cache[i].used = ++cache_clock;
            b = svc_body_ref(cache[i].body);
            break;
        }
    pthread_mutex_unlock(&cache_mu);
    return b;
}

static void cache_put(const char *vm, const char *key, uint64_t version, const char *pending, struct svc_body *body)
{
    size_t victim = 0;

    if (!version)
        return;
    pthread_mutex_lock(&cache_mu);
    for (size_t i = 0; i < LIST_CACHE; i++) {
        if (!cache[i].body || (cache[i].vm && !strcmp(cache[i].vm, vm) && !strcmp(cache[i].key, key))) {
            victim = i;
            break;
        }
        if (cache[i].used < cache[victim].used)
            victim = i;
    }
    free(cache[victim].vm);
    free(cache[victim].key);
    free(cache[victim].pending);
    svc_body_unref(cache[victim].body);
    cache[victim] = (struct list_cached){qs_xstrdup(vm), qs_xstrdup(key), version, qs_xstrdup(pending),
                                         svc_body_ref(body), ++cache_clock};
    pthread_mutex_unlock(&cache_mu);
}

static int parse_list(struct svc_req *r)
{
    bool b;

    for (size_t i = 0; i < sizeof(list_args) / sizeof(list_args[0]); i++)
        if (svc_query_bool(r, list_args[i].arg, false, &b) < 0)
            return -1;
    if (svc_query_bool(r, "marks", false, &b) < 0)
        return -1;
    return svc_query_bool(r, "all_content", false, &b);
}

static void get_snapshots(struct svc_req *r)
{
    struct engine *e = svc_engine(r);
    struct engine_snapshot_list *l = NULL;
    struct qs_error *err = NULL;
    struct snap_ctx c = {0};
    json_object *a, *doc, *desc = NULL;
    unsigned flags = 0;
    bool all = false, marks = false;
    char *key = NULL, *pending = NULL;
    uint64_t version = 0;

    if (!e)
        return;
    for (size_t i = 0; i < sizeof(list_args) / sizeof(list_args[0]); i++) {
        bool b = false;
        svc_query_bool(r, list_args[i].arg, false, &b);
        if (b)
            flags |= list_args[i].flag;
    }
    svc_query_bool(r, "all_content", false, &all);
    svc_query_bool(r, "marks", false, &marks);
    /* the JSON form of a listing is kept while the tree and what is under way stay the same: a second
     * listing of 10,000 snapshots is then a send, not 170,000 values formatted again */
    key = query_key(r);
    if (engine_session_tree_version(r->srv->session, e, r->params[0], &version, &err) < 0 ||
        !(pending = pending_key(e, r->params[0], &err))) {
        svc_reply_engine_error(r, &err);
        goto out;
    }
    if (!r->xml && (r->shared = cache_get(r->params[0], key, version, pending)) != NULL) {
        r->status = 200;
        goto out;
    }
    if (engine_session_snapshot_list(r->srv->session, e, r->params[0], flags, svc_query(r, "from"), &l, &err) < 0) {
        svc_reply_engine_error(r, &err);
        goto out;
    }
    desc = descendants_all(r->srv->session, e, r->params[0]);
    if (snap_ctx_init(&c, e, r->params[0], !desc || json_object_object_get_ex(desc, ENGINE_PREVIEW_POINT, NULL),
                      &err) < 0) {
        svc_reply_engine_error(r, &err);
        goto out;
    }
    a = json_object_new_array_ext((int)engine_snapshot_list_count(l));
    for (size_t i = 0; i < engine_snapshot_list_count(l); i++) {
        const struct engine_snapshot *s = engine_snapshot_list_at(l, i);
        json_object *dv = NULL;
        json_object *o = snap_json(&c, s, desc && json_object_object_get_ex(desc, engine_snapshot_name(s), &dv)
                                              ? json_object_get_int64(dv)
                                              : -1);
        if (all) {
            char *xml = NULL;
            if (engine_snapshot_get_xml(e, r->params[0], engine_snapshot_name(s), false, &xml, NULL) == 0)
                json_object_object_add(o, "xml", json_object_new_string(xml));
            free(xml);
        }
        if (marks) {
            /* qsnap's marks, asked for (the page shows them in its tree): a file per snapshot */
            char *sched = NULL;
            bool prot = false;
            if (engine_snapshot_marks(e, r->params[0], engine_snapshot_name(s), &prot, &sched, NULL) == 0) {
                json_object_object_add(o, "protected", json_object_new_boolean(prot));
                json_object_object_add(o, "schedule", sched ? json_object_new_string(sched) : NULL);
            }
            free(sched);
        }
        json_object_array_add(a, o);
    }
    doc = json_object_new_object();
    json_object_object_add(doc, "snapshot", a);
    if (!r->xml && !all) {
        uint64_t after = 0;
        size_t len;
        const char *text =
            json_object_to_json_string_length(doc, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
        r->shared = svc_body_new(qs_xstrndup(text, len), len, "application/json");
        r->status = 200;
        json_object_put(doc);
        /* kept only when nothing changed while it was made */
        if (engine_session_tree_version(r->srv->session, e, r->params[0], &after, NULL) == 0 && after == version)
            cache_put(r->params[0], key, version, pending, r->shared);
    } else {
        svc_reply(r, 200, doc, "snapshots");
    }
out:
    free(key);
    free(pending);
    json_object_put(desc);
    snap_ctx_release(&c);
    engine_snapshot_list_free(l);
}

static int parse_get_one(struct svc_req *r)
{
    bool b;
    return svc_query_bool(r, "all_content", false, &b) < 0 || svc_query_bool(r, "security_info", false, &b) < 0
               ? -1
               : 0;
}

static void get_snapshot(struct svc_req *r)
{
    struct engine *e = svc_engine(r);
    struct engine_snapshot_list *l = NULL;
    struct qs_error *err = NULL;
    struct engine_disk *d = NULL;
    struct snap_ctx c = {0};
    char *mem = NULL, *xml = NULL;
    size_t nd = 0;
    bool all = false, secure = false;
    json_object *o, *disks;

    if (!e)
        return;
    svc_query_bool(r, "all_content", false, &all);
    svc_query_bool(r, "security_info", false, &secure);
    if (engine_session_snapshot_lookup(r->srv->session, e, r->params[0], r->params[1], &l, &err) < 0 ||
        snap_ctx_init(&c, e, r->params[0], true, &err) < 0 ||
        engine_snapshot_get_disks(e, r->params[0], r->params[1], &d, &nd, &mem, &err) < 0 ||
        (all && engine_snapshot_get_xml(e, r->params[0], r->params[1], secure, &xml, &err) < 0)) {
        svc_reply_engine_error(r, &err);
        goto out;
    }
    o = snap_json(&c, engine_snapshot_list_at(l, 0), -1);
    disks = json_object_new_array();
    for (size_t i = 0; i < nd; i++) {
        json_object *x = json_object_new_object();
        json_object_object_add(x, "id", json_object_new_string(d[i].target));
        json_object_object_add(x, "target", json_object_new_string(d[i].target));
        json_object_object_add(x, "location", json_object_new_string(d[i].location));
        json_object_object_add(x, "source", d[i].source ? json_object_new_string(d[i].source) : NULL);
        json_object_array_add(disks, x);
    }
    json_object_object_add(o, "disks", disks);
    json_object_object_add(o, "memory_file", mem ? json_object_new_string(mem) : NULL);
    /* qsnap's marks (protected, the schedule that took it): one snapshot's file, so here and not in listings */
    {
        char *sched = NULL;
        bool prot = false;
        if (engine_snapshot_marks(e, r->params[0], r->params[1], &prot, &sched, NULL) == 0) {
            json_object_object_add(o, "protected", json_object_new_boolean(prot));
            json_object_object_add(o, "schedule", sched ? json_object_new_string(sched) : NULL);
        }
        free(sched);
    }
    if (xml)
        json_object_object_add(o, "xml", json_object_new_string(xml));
    svc_reply(r, 200, o, "snapshot");
out:
    snap_ctx_release(&c);
    engine_disks_free(d, nd);
    engine_snapshot_list_free(l);
    free(mem);
    free(xml);
}

/* ---- create ---- */

static const struct {
    const char *member;
    unsigned flag;
} create_members[] = {
    {"disk_only", ENGINE_CREATE_DISK_ONLY},   {"live", ENGINE_CREATE_LIVE},
    {"live_fallback", ENGINE_CREATE_LIVE_FALLBACK}, {"quiesce", ENGINE_CREATE_QUIESCE},
    {"precopy", ENGINE_CREATE_PRECOPY},
    {"halt", ENGINE_CREATE_HALT},             {"no_metadata", ENGINE_CREATE_NO_METADATA},
    {"reuse_external", ENGINE_CREATE_REUSE_EXT}, {"atomic", ENGINE_CREATE_ATOMIC},
    {"validate", ENGINE_CREATE_VALIDATE},     {"redefine", ENGINE_CREATE_REDEFINE},
    {"current", ENGINE_CREATE_CURRENT},
};

static int check_path(struct svc_req *r, const char *what, const char *p)
{
    if (p[0] != '/' || strstr(p, "/../") || qs_str_has_suffix(p, "/..")) {
        svc_reply_error(r, 400, "invalid", "%s '%s' must be an absolute path without '..'", what, p);
        return -1;
    }
    return svc_require_local(r, "a file path");
}

static int parse_create(struct svc_req *r)
{
    const char *s;
    json_object *disks, *v;
    bool b;

    for (size_t i = 0; i < sizeof(create_members) / sizeof(create_members[0]); i++)
        if (svc_body_bool(r, create_members[i].member, false, &b) < 0)
            return -1;
    if (svc_body_bool(r, "persist_memorystate", true, &b) < 0 || svc_body_bool(r, "async", true, &b) < 0 ||
        svc_body_string(r, "name", &s) < 0)
        return -1;
    if (s) {
        struct qs_error *err = NULL;
        if (qs_name_check(s, "snapshot", &err) < 0) {
            svc_reply_engine_error(r, &err);
            return -1;
        }
    }
    if (svc_body_string(r, "description", &s) < 0)
        return -1;
    if (svc_body_string(r, "xml", &s) < 0)
        return -1;
    if (s) {
        /* a whole <domainsnapshot>: it may name files */
        if (svc_require_local(r, "a snapshot XML document") < 0)
            return -1;
        if (json_object_object_get_ex(r->body, "name", &v) || json_object_object_get_ex(r->body, "disks", &v) ||
            json_object_object_get_ex(r->body, "memory_file", &v) ||
            json_object_object_get_ex(r->body, "description", &v)) {
            svc_reply_error(r, 400, "invalid", "'xml' says it all: no 'name', 'description', 'disks' or 'memory_file'");
            return -1;
        }
    }
    if (svc_body_string(r, "memory_file", &s) < 0 || (s && check_path(r, "memory_file", s) < 0))
        return -1;
    if (r->body && json_object_object_get_ex(r->body, "disks", &disks)) {
        if (!json_object_is_type(disks, json_type_array)) {
            svc_reply_error(r, 400, "invalid", "member 'disks' must be an array");
            return -1;
        }
        for (size_t i = 0; i < json_object_array_length(disks); i++) {
            json_object *d = json_object_array_get_idx(disks, i), *x;
            if (!json_object_is_type(d, json_type_object) || !json_object_object_get_ex(d, "name", &x) ||
                !json_object_is_type(x, json_type_string)) {
                svc_reply_error(r, 400, "invalid", "each of 'disks' must be an object with a string 'name'");
                return -1;
            }
            json_object_object_foreach(d, k, val)
            {
                if (strcmp(k, "name") != 0 && strcmp(k, "snapshot") != 0 && strcmp(k, "file") != 0 &&
                    strcmp(k, "driver") != 0) {
                    svc_reply_error(r, 400, "invalid", "unknown member '%s' in 'disks'", k);
                    return -1;
                }
                if (!json_object_is_type(val, json_type_string)) {
                    svc_reply_error(r, 400, "invalid", "member '%s' of 'disks' must be a string", k);
                    return -1;
                }
                if (strcmp(k, "file") == 0 && check_path(r, "file", json_object_get_string(val)) < 0)
                    return -1;
            }
        }
    }
    return 0;
}

/* The <domainsnapshot> the body's members describe (as snapshot-create-as builds it); caller frees. */
static char *create_xml(json_object *body)
{
    json_object *v, *disks;
    struct qs_buf b;

    qs_buf_init(&b, 0);
    qs_buf_adds(&b, "<domainsnapshot>\n");
    if (json_object_object_get_ex(body, "name", &v) && json_object_is_type(v, json_type_string)) {
        qs_buf_adds(&b, "  <name>");
        svc_xml_escape(&b, json_object_get_string(v));
        qs_buf_adds(&b, "</name>\n");
    }
    if (json_object_object_get_ex(body, "description", &v) && json_object_is_type(v, json_type_string)) {
        qs_buf_adds(&b, "  <description>");
        svc_xml_escape(&b, json_object_get_string(v));
        qs_buf_adds(&b, "</description>\n");
    }
    if (json_object_object_get_ex(body, "memory_file", &v) && json_object_is_type(v, json_type_string)) {
        qs_buf_adds(&b, "  <memory snapshot='external' file='");
        svc_xml_escape(&b, json_object_get_string(v));
        qs_buf_adds(&b, "'/>\n");
    }
    if (json_object_object_get_ex(body, "disks", &disks) && json_object_array_length(disks) > 0) {
        qs_buf_adds(&b, "  <disks>\n");
        for (size_t i = 0; i < json_object_array_length(disks); i++) {
            json_object *d = json_object_array_get_idx(disks, i), *x;
            qs_buf_adds(&b, "    <disk name='");
            svc_xml_escape(&b, json_object_get_string(json_object_object_get(d, "name")));
            qs_buf_adds(&b, "'");
            if (json_object_object_get_ex(d, "snapshot", &x)) {
                qs_buf_adds(&b, " snapshot='");
                svc_xml_escape(&b, json_object_get_string(x));
                qs_buf_adds(&b, "'");
            }
            qs_buf_adds(&b, ">\n");
            if (json_object_object_get_ex(d, "driver", &x)) {
                qs_buf_adds(&b, "      <driver type='");
                svc_xml_escape(&b, json_object_get_string(x));
                qs_buf_adds(&b, "'/>\n");
            }
            if (json_object_object_get_ex(d, "file", &x)) {
                qs_buf_adds(&b, "      <source file='");
                svc_xml_escape(&b, json_object_get_string(x));
                qs_buf_adds(&b, "'/>\n");
            }
            qs_buf_adds(&b, "    </disk>\n");
        }
        qs_buf_adds(&b, "  </disks>\n");
    }
    qs_buf_adds(&b, "</domainsnapshot>\n");
    return qs_buf_detach(&b, NULL);
}

static int run_create(struct svc_task *t, struct engine *e, struct qs_error **err)
{
    json_object *args = svc_task_args(t), *v, *res;
    unsigned flags = 0;
    char *xml = NULL, *name = NULL;
    struct engine_snapshot_list *l = NULL;
    int ret;

    for (size_t i = 0; i < sizeof(create_members) / sizeof(create_members[0]); i++)
        if (json_object_object_get_ex(args, create_members[i].member, &v) && json_object_get_boolean(v))
            flags |= create_members[i].flag;
    /* oVirt's "no memory": qsnap's disk-only snapshot */
    if (json_object_object_get_ex(args, "persist_memorystate", &v) && json_object_is_type(v, json_type_boolean) &&
        !json_object_get_boolean(v))
        flags |= ENGINE_CREATE_DISK_ONLY;
    /* "xml": null is no document at all (the engine's defaults), as the CLI's snapshot-create-as without
     * arguments asks */
    if (json_object_object_get_ex(args, "xml", &v))
        xml = v ? qs_xstrdup(json_object_get_string(v)) : NULL;
    else if (!(flags & ENGINE_CREATE_REDEFINE))
        xml = create_xml(args);
    ret = engine_snapshot_create(e, svc_task_vm(t), xml, flags, &name, err);
    free(xml);
    if (ret < 0)
        return -1;
    res = json_object_new_object();
    json_object_object_add(res, "snapshot", json_object_new_string(name));
    svc_task_set_result(t, res);
    if ((flags & ENGINE_CREATE_LIVE) && engine_snapshot_lookup(e, svc_task_vm(t), name, &l, NULL) == 0) {
        if (engine_snapshot_pause_us(engine_snapshot_list_at(l, 0)) >= 0)
            svc_metrics_pause(svc_task_server(t), engine_snapshot_pause_us(engine_snapshot_list_at(l, 0)));
        engine_snapshot_list_free(l);
    }
    svc_event_snapshot(svc_task_server(t), svc_task_vm(t), name, "created");
    free(name);
    return 0;
}

static void post_snapshots(struct svc_req *r)
{
    const char *name = NULL;

    svc_body_string(r, "name", &name);
    svc_reply_task(r, svc_task_submit_as(r->srv, r->requester, "create", r->params[0], name,
                                         r->body ? json_object_get(r->body) : json_object_new_object(), run_create));
}

/* ---- delete ---- */

static int parse_delete(struct svc_req *r)
{
    bool b;
    return svc_query_bool(r, "children", false, &b) < 0 || svc_query_bool(r, "children_only", false, &b) < 0 ||
                   svc_query_bool(r, "metadata_only", false, &b) < 0 || svc_query_bool(r, "wait", false, &b) < 0
               ? -1
               : 0;
}

static int run_delete(struct svc_task *t, struct engine *e, struct qs_error **err)
{
    json_object *args = svc_task_args(t), *v;
    unsigned flags = 0;

    if (json_object_object_get_ex(args, "children", &v) && json_object_get_boolean(v))
        flags |= ENGINE_DELETE_CHILDREN;
    if (json_object_object_get_ex(args, "children_only", &v) && json_object_get_boolean(v))
        flags |= ENGINE_DELETE_CHILDREN_ONLY;
    if (json_object_object_get_ex(args, "metadata_only", &v) && json_object_get_boolean(v))
        flags |= ENGINE_DELETE_METADATA_ONLY;
    if (engine_snapshot_delete(e, svc_task_vm(t), svc_task_snapshot(t), flags, err) < 0)
        return -1;
    svc_event_snapshot(svc_task_server(t), svc_task_vm(t), svc_task_snapshot(t), "deleted");
    return 0;
}

static void delete_snapshot(struct svc_req *r)
{
    json_object *args = json_object_new_object();
    static const char *const names[] = {"children", "children_only", "metadata_only"};

    for (size_t i = 0; i < 3; i++) {
        bool b = false;
        svc_query_bool(r, names[i], false, &b);
        json_object_object_add(args, names[i], json_object_new_boolean(b));
    }
    svc_reply_task(r, svc_task_submit_as(r->srv, r->requester, "delete", r->params[0], r->params[1], args,
                                         run_delete));
}

/* ---- restore (revert) ---- */

static int parse_restore(struct svc_req *r)
{
    bool mem, a, b, f;

    if (svc_body_bool(r, "restore_memory", true, &mem) < 0 || svc_body_bool(r, "start", false, &a) < 0 ||
        svc_body_bool(r, "paused", false, &b) < 0 || svc_body_bool(r, "force", false, &f) < 0 ||
        svc_body_bool(r, "async", true, &f) < 0)
        return -1;
    if (!mem) {
        svc_reply_error(r, 400, "invalid", "restore_memory false is not offered: a snapshot is restored with what it holds");
        return -1;
    }
    if (a && b) {
        svc_reply_error(r, 400, "invalid", "'start' and 'paused' are mutually exclusive");
        return -1;
    }
    return 0;
}

static unsigned revert_flags(json_object *args)
{
    json_object *v;
    unsigned f = 0;

    if (json_object_object_get_ex(args, "start", &v) && json_object_get_boolean(v))
        f |= ENGINE_REVERT_RUNNING;
    if (json_object_object_get_ex(args, "paused", &v) && json_object_get_boolean(v))
        f |= ENGINE_REVERT_PAUSED;
    if (json_object_object_get_ex(args, "force", &v) && json_object_get_boolean(v))
        f |= ENGINE_REVERT_FORCE;
    return f;
}

static int run_restore(struct svc_task *t, struct engine *e, struct qs_error **err)
{
    if (engine_snapshot_revert(e, svc_task_vm(t), svc_task_snapshot(t), revert_flags(svc_task_args(t)), err) < 0)
        return -1;
    svc_event_snapshot(svc_task_server(t), svc_task_vm(t), svc_task_snapshot(t), "restored");
    return 0;
}

static void post_restore(struct svc_req *r)
{
    svc_reply_task(r, svc_task_submit_as(r->srv, r->requester, "restore", r->params[0], r->params[1],
                                         r->body ? json_object_get(r->body) : json_object_new_object(), run_restore));
}

/* ---- current ---- */

static void get_current(struct svc_req *r)
{
    struct engine *e = svc_engine(r);
    struct qs_error *err = NULL;
    char *name = NULL;
    json_object *o;

    if (!e)
        return;
    if (engine_snapshot_current_name(e, r->params[0], &name, &err) < 0) {
        svc_reply_engine_error(r, &err);
        return;
    }
    o = json_object_new_object();
    json_object_object_add(o, "name", name ? json_object_new_string(name) : NULL);
    free(name);
    svc_reply(r, 200, o, "current");
}

static int parse_put_current(struct svc_req *r)
{
    const char *name;

    if (svc_body_string(r, "name", &name) < 0)
        return -1;
    if (!name) {
        svc_reply_error(r, 400, "invalid", "member 'name' is required");
        return -1;
    }
    return 0;
}

static void put_current(struct svc_req *r)
{
    struct engine *e = svc_engine(r);
    struct qs_error *err = NULL;
    const char *name = NULL;
    json_object *o;

    if (!e)
        return;
    svc_body_string(r, "name", &name);
    engine_session_write_begin(r->srv->session, r->params[0]);
    if (engine_snapshot_set_current(e, r->params[0], name, &err) < 0) {
        svc_reply_engine_error(r, &err);
    } else {
        o = json_object_new_object();
        json_object_object_add(o, "name", json_object_new_string(name));
        svc_reply(r, 200, o, "current");
        svc_event_snapshot(r->srv, r->params[0], name, "current");
    }
    engine_session_write_end(r->srv->session, r->params[0]);
}

/* ---- the preview cycle: POST /api/vms/{vm}/previewsnapshot {snapshot: {id}}, commitsnapshot, undosnapshot ---- */

static int parse_preview(struct svc_req *r)
{
    json_object *snap, *id;

    if (parse_restore(r) < 0)
        return -1;
    if (!r->body || !json_object_object_get_ex(r->body, "snapshot", &snap) ||
        !json_object_is_type(snap, json_type_object) || !json_object_object_get_ex(snap, "id", &id) ||
        !json_object_is_type(id, json_type_string)) {
        svc_reply_error(r, 400, "invalid", "the body must name the snapshot: {\"snapshot\": {\"id\": NAME}}");
        return -1;
    }
    {
        struct qs_error *err = NULL;
        if (qs_name_check(json_object_get_string(id), "snapshot", &err) < 0) {
            svc_reply_engine_error(r, &err);
            return -1;
        }
    }
    return 0;
}

static int run_preview(struct svc_task *t, struct engine *e, struct qs_error **err)
{
    if (engine_snapshot_preview(e, svc_task_vm(t), svc_task_snapshot(t), revert_flags(svc_task_args(t)), err) < 0)
        return -1;
    svc_event_snapshot(svc_task_server(t), svc_task_vm(t), svc_task_snapshot(t), "in_preview");
    return 0;
}

static int run_commit(struct svc_task *t, struct engine *e, struct qs_error **err)
{
    if (engine_snapshot_preview_commit(e, svc_task_vm(t), err) < 0)
        return -1;
    svc_event_snapshot(svc_task_server(t), svc_task_vm(t), ENGINE_PREVIEW_POINT, "deleted");
    return 0;
}

static int run_undo(struct svc_task *t, struct engine *e, struct qs_error **err)
{
    if (engine_snapshot_preview_undo(e, svc_task_vm(t), revert_flags(svc_task_args(t)), err) < 0)
        return -1;
    svc_event_snapshot(svc_task_server(t), svc_task_vm(t), ENGINE_PREVIEW_POINT, "deleted");
    return 0;
}

static void post_preview(struct svc_req *r)
{
    json_object *snap = json_object_object_get(r->body, "snapshot");
    const char *id = json_object_get_string(json_object_object_get(snap, "id"));
    svc_reply_task(r, svc_task_submit_as(r->srv, r->requester, "preview", r->params[0], id, json_object_get(r->body),
                                         run_preview));
}

static void post_commit(struct svc_req *r)
{
    svc_reply_task(r, svc_task_submit_as(r->srv, r->requester, "commit", r->params[0], NULL,
                                         r->body ? json_object_get(r->body) : json_object_new_object(), run_commit));
}

static void post_undo(struct svc_req *r)
{
    svc_reply_task(r, svc_task_submit_as(r->srv, r->requester, "undo", r->params[0], NULL,
                                         r->body ? json_object_get(r->body) : json_object_new_object(), run_undo));
}

static int parse_async_only(struct svc_req *r)
{
    bool b;
    return svc_body_bool(r, "async", true, &b);
}

const struct svc_route svc_routes_snapshots[] = {
    {SVC_GET, "/api/vms/{vm}/snapshots", parse_list, get_snapshots, 0},
    {SVC_POST, "/api/vms/{vm}/snapshots", parse_create, post_snapshots, 0},
    {SVC_GET, "/api/vms/{vm}/snapshots/{snap}", parse_get_one, get_snapshot, 0},
    {SVC_DELETE, "/api/vms/{vm}/snapshots/{snap}", parse_delete, delete_snapshot, 0},
    {SVC_POST, "/api/vms/{vm}/snapshots/{snap}/restore", parse_restore, post_restore, 0},
    {SVC_GET, "/api/vms/{vm}/current", NULL, get_current, 0},
    {SVC_PUT, "/api/vms/{vm}/current", parse_put_current, put_current, 0},
    {SVC_POST, "/api/vms/{vm}/previewsnapshot", parse_preview, post_preview, 0},
    {SVC_POST, "/api/vms/{vm}/commitsnapshot", parse_async_only, post_commit, 0},
    {SVC_POST, "/api/vms/{vm}/undosnapshot", parse_restore, post_undo, 0},
    {.pattern = NULL},
};
