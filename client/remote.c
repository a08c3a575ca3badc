/* remote.c: engine.h over qsnapd's REST API (libcurl, json-c) - what `qsnap --connect` links instead of the
 * engine, so that the CLI's own formatting runs on data that came through the API. */
#include "engine.h"

#include "pure.h"
#include "qs_buf.h"
#include "qs_util.h"

#include <curl/curl.h>
#include <errno.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define REPLY_MAX (256u << 20) /* a listing of many snapshots with --tree; a reply past it is refused */
#define POLL_MS 1000

struct engine {
    CURL *curl;          /* one handle: its connection is kept alive across the calls of a command */
    char *base;          /* "http://localhost" or "https://host:port" */
    char *unix_path;     /* unix: */
    char *auth;          /* "Authorization: Bearer ..." */
    char *ca;            /* $QSNAP_CACERT */
    engine_progress_fn progress;
    void *opaque;
    engine_clock_fn clock; /* the caller's (tests set one); NULL: the system's */
};

const char *engine_version(void)
{
    return QSNAP_VERSION;
}

/*
 * $QSNAP_CONNECT: "unix:PATH", or "https://HOST:PORT" with $QSNAP_TOKEN (and $QSNAP_CACERT for a private
 * CA). The engine options' root and lock timeout belong to the service, not to its clients.
 */
struct engine *engine_new(const struct engine_options *opts, struct qs_error **err)
{
    const char *url = getenv("QSNAP_CONNECT"), *tok = getenv("QSNAP_TOKEN"), *ca = getenv("QSNAP_CACERT");
    struct engine *e;

    if (!url || !*url) {
        qs_error_set(err, QS_ERR_INVALID, "no qsnapd to connect to ($QSNAP_CONNECT is empty)");
        return NULL;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        qs_error_set(err, QS_ERR_INTERNAL, "libcurl could not start");
        return NULL;
    }
    e = qs_xcalloc(1, sizeof(*e));
    if (qs_str_has_prefix(url, "unix:")) {
        e->unix_path = qs_xstrdup(url + 5);
        e->base = qs_xstrdup("http://localhost");
    } else if (qs_str_has_prefix(url, "https://")) {
        e->base = qs_xstrdup(url);
        if (e->base[strlen(e->base) - 1] == '/')
            e->base[strlen(e->base) - 1] = '\0';
        if (tok && *tok)
            e->auth = qs_asprintf("Authorization: Bearer %s", tok);
        if (ca && *ca)
            e->ca = qs_xstrdup(ca);
    } else {
        qs_error_set(err, QS_ERR_INVALID, "--connect takes unix:PATH or https://HOST:PORT, not '%s'", url);
        free(e);
        return NULL;
    }
    if (!(e->curl = curl_easy_init())) {
        qs_error_set(err, QS_ERR_INTERNAL, "libcurl could not start");
        engine_free(e);
        return NULL;
    }
    e->progress = opts ? opts->progress : NULL;
    e->opaque = opts ? opts->opaque : NULL;
    e->clock = opts ? opts->clock : NULL;
    return e;
}

void engine_free(struct engine *e)
{
    if (!e)
        return;
    if (e->curl)
        curl_easy_cleanup(e->curl);
    free(e->base);
    free(e->unix_path);
    if (e->auth)
        explicit_bzero(e->auth, strlen(e->auth));
    free(e->auth);
    free(e->ca);
    free(e);
}

const char *engine_root(const struct engine *e)
{
    return e->unix_path ? e->unix_path : e->base;
}

/* ---- HTTP ---- */

static size_t on_data(char *p, size_t size, size_t n, void *opaque)
{
    struct qs_buf *b = opaque;
    return qs_buf_add(b, p, size * n) < 0 ? 0 : size * n;
}

/* PATH with each "%s" filled by ARGS percent-encoded (names may hold any character but '/'). */
static char *path_of(struct engine *e, const char *fmt, const char *a, const char *b)
{
    char *ea = a ? curl_easy_escape(e->curl, a, 0) : NULL, *eb = b ? curl_easy_escape(e->curl, b, 0) : NULL;
    char *out;

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    out = qs_asprintf(fmt, ea ? ea : "", eb ? eb : "");
#pragma GCC diagnostic pop
    curl_free(ea);
    curl_free(eb);
    return out;
}

/* The engine's code for a name qsnapd sent (qs_error_code_name's words). */
static int code_of(const char *name)
{
    for (int c = 1; c < QS_ERR__LAST; c++)
        if (name && strcmp(qs_error_code_name(c), name) == 0)
            return c;
    return QS_ERR_INTERNAL;
}

/*
 * One request: METHOD PATH with BODY (JSON text or NULL). *doc gets the parsed reply (caller puts it). A
 * reply of 4xx/5xx becomes the engine error qsnapd reported (code and message as the engine gave them), so
 * the CLI prints what it prints in direct mode. Returns the status, or -1.
 */
static int request(struct engine *e, const char *method, const char *path, json_object *body, json_object **doc,
                   struct qs_error **err)
{
    struct qs_buf reply;
    struct curl_slist *hdr = NULL;
    char *url = qs_asprintf("%s%s", e->base, path), errbuf[CURL_ERROR_SIZE] = "";
    const char *text = body ? json_object_to_json_string_ext(body, JSON_C_TO_STRING_PLAIN) : NULL;
    long status = 0;
    CURLcode rc;
    int ret = -1;

    *doc = NULL;
    qs_buf_init(&reply, REPLY_MAX);
    curl_easy_reset(e->curl);
    curl_easy_setopt(e->curl, CURLOPT_URL, url);
    curl_easy_setopt(e->curl, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(e->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e->curl, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(e->curl, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(e->curl, CURLOPT_WRITEDATA, &reply);
    curl_easy_setopt(e->curl, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    curl_easy_setopt(e->curl, CURLOPT_PROTOCOLS_STR, "http,https");
    if (e->unix_path)
        curl_easy_setopt(e->curl, CURLOPT_UNIX_SOCKET_PATH, e->unix_path);
    if (e->ca)
        curl_easy_setopt(e->curl, CURLOPT_CAINFO, e->ca);
    hdr = curl_slist_append(hdr, "Accept: application/json");
    if (e->auth)
        hdr = curl_slist_append(hdr, e->auth);
    if (text) {
        hdr = curl_slist_append(hdr, "Content-Type: application/json");
        curl_easy_setopt(e->curl, CURLOPT_POSTFIELDS, text);
        curl_easy_setopt(e->curl, CURLOPT_POSTFIELDSIZE, (long)strlen(text));
    }
    curl_easy_setopt(e->curl, CURLOPT_HTTPHEADER, hdr);
    if ((rc = curl_easy_perform(e->curl)) != CURLE_OK) {
        qs_error_set(err, QS_ERR_IO, "cannot reach qsnapd at '%s': %s", engine_root(e),
                     *errbuf ? errbuf : curl_easy_strerror(rc));
        goto out;
    }
    curl_easy_getinfo(e->curl, CURLINFO_RESPONSE_CODE, &status);
    if (reply.len > 0) {
        struct json_tokener *tok = json_tokener_new_ex(64);
        *doc = json_tokener_parse_ex(tok, reply.data, (int)reply.len);
        if (json_tokener_get_error(tok) != json_tokener_success) {
            json_object_put(*doc);
            *doc = NULL;
        }
        json_tokener_free(tok);
    }
    if (!*doc || !json_object_is_type(*doc, json_type_object)) {
        qs_error_set(err, QS_ERR_PROTOCOL, "qsnapd at '%s' sent a reply that is not a JSON object (HTTP %ld)",
                     engine_root(e), status);
        goto out;
    }
    if (status >= 400) {
        json_object *c = json_object_object_get(*doc, "code"), *m = json_object_object_get(*doc, "message");
        qs_error_set(err, code_of(json_object_get_string(c)), "%s", m ? json_object_get_string(m) : "unknown error");
        goto out;
    }
    ret = (int)status;
out:
    if (ret < 0) {
        json_object_put(*doc);
        *doc = NULL;
    }
    curl_slist_free_all(hdr);
    qs_buf_release(&reply);
    free(url);
    return ret;
}

static const char *str(json_object *o, const char *k)
{
    json_object *v;
    return json_object_object_get_ex(o, k, &v) && v && json_object_is_type(v, json_type_string)
               ? json_object_get_string(v)
               : NULL;
}

static char *dup_str(json_object *o, const char *k)
{
    const char *s = str(o, k);
    return s ? qs_xstrdup(s) : NULL;
}

static int64_t num(json_object *o, const char *k, int64_t def)
{
    json_object *v;
    return json_object_object_get_ex(o, k, &v) && v ? json_object_get_int64(v) : def;
}

static bool flag(json_object *o, const char *k)
{
    json_object *v;
    return json_object_object_get_ex(o, k, &v) && v && json_object_get_boolean(v);
}

/* Runs the task a 202 started until it ends, its progress to the callback; *result (may be NULL) gets its
 * result member, also when the task failed (caller puts it). A failed task is its engine error. */
static int task_run(struct engine *e, json_object *task, json_object **result, struct qs_error **err)
{
    char *id = dup_str(task, "id"), *last = NULL;
    json_object *cur = json_object_get(task);
    int ret = -1;

    if (result)
        *result = NULL;
    if (!id) {
        qs_error_set(err, QS_ERR_PROTOCOL, "qsnapd's reply names no task");
        goto out;
    }
    for (;;) {
        const char *state = str(cur, "state");
        json_object *p = json_object_object_get(cur, "progress"), *next = NULL;
        char *path;
        if (state && strcmp(state, "succeeded") == 0) {
            if (result && json_object_object_get(cur, "result"))
                *result = json_object_get(json_object_object_get(cur, "result"));
            ret = 0;
            break;
        }
        if (state && strcmp(state, "failed") == 0) {
            json_object *er = json_object_object_get(cur, "error");
            /* what a failed prune or schedule run still reports (the runs, the snapshots looked at) */
            if (result && json_object_object_get(cur, "result"))
                *result = json_object_get(json_object_object_get(cur, "result"));
            qs_error_set(err, code_of(str(er, "code")), "%s", str(er, "message") ? str(er, "message") : "failed");
            break;
        }
        if (e->progress && p && str(p, "phase")) {
            char *now = qs_asprintf("%s %lld %lld", str(p, "phase"), (long long)num(p, "done", 0),
                                    (long long)num(p, "total", 0));
            if (!qs_str_equal(now, last) &&
                e->progress(e->opaque, str(p, "phase"), (uint64_t)num(p, "done", 0), (uint64_t)num(p, "total", 0))) {
                /* asked to stop: the service stops where the engine safely can */
                json_object *ignore = NULL;
                path = path_of(e, "/api/tasks/%s", id, NULL);
                request(e, "DELETE", path, NULL, &ignore, NULL);
                json_object_put(ignore);
                free(path);
            }
            free(last);
            last = now;
        }
        path = path_of(e, "/api/tasks/%s?wait=" "1000", id, NULL);
        if (request(e, "GET", path, NULL, &next, err) < 0) {
            free(path);
            break;
        }
        free(path);
        json_object_put(cur);
        cur = next;
    }
out:
    json_object_put(cur);
    free(last);
    free(id);
    return ret;
}

/* A request that starts a task, then the task to its end. BODY is taken over. */
static int run(struct engine *e, const char *method, char *path, json_object *body, json_object **result,
               struct qs_error **err)
{
    json_object *doc = NULL;
    int st = request(e, method, path, body, &doc, err), ret = -1;

    free(path);
    json_object_put(body);
    if (st < 0)
        return -1;
    if (st == 202 || (st == 200 && str(doc, "state")))
        ret = task_run(e, doc, result, err);
    else
        ret = 0;
    json_object_put(doc);
    return ret;
}

/* GET PATH (taken over) into *doc. */
static int get(struct engine *e, char *path, json_object **doc, struct qs_error **err)
{
    int st = request(e, "GET", path, NULL, doc, err);
    free(path);
    return st < 0 ? -1 : 0;
}

/* ---- domains ---- */

int engine_domain_lookup(struct engine *e, const char *name, struct qs_error **err)
{
    json_object *doc = NULL;
    int r = get(e, path_of(e, "/api/vms/%s?brief=true", name, NULL), &doc, err);
    json_object_put(doc);
    return r;
}

int engine_domain_list(struct engine *e, char ***names, size_t *n, struct qs_error **err)
{
    json_object *doc = NULL, *a;

    if (get(e, qs_xstrdup("/api/vms?brief=true"), &doc, err) < 0)
        return -1;
    a = json_object_object_get(doc, "vm");
    *n = a ? json_object_array_length(a) : 0;
    *names = qs_xcalloc(*n + 1, sizeof(char *));
    for (size_t i = 0; i < *n; i++)
        (*names)[i] = dup_str(json_object_array_get_idx(a, i), "name");
    json_object_put(doc);
    return 0;
}

int engine_domain_get_state(struct engine *e, const char *name, enum engine_domain_state *state, int *pid,
                            struct qs_error **err)
{
    json_object *doc = NULL;
    const char *s;

    if (get(e, path_of(e, "/api/vms/%s", name, NULL), &doc, err) < 0)
        return -1;
    s = str(doc, "state");
    *state = ENGINE_DOMAIN_NOSTATE;
    for (int i = 0; s && i < ENGINE_DOMAIN_STATE__LAST; i++) {
        char w[32];
        size_t k;
        const char *word = engine_domain_state_name(i);
        for (k = 0; word[k] && k + 1 < sizeof(w); k++)
            w[k] = word[k] == ' ' ? '_' : word[k];
        w[k] = '\0';
        if (strcmp(w, s) == 0)
            *state = (enum engine_domain_state)i;
    }
    if (pid)
        *pid = (int)num(doc, "pid", -1);
    json_object_put(doc);
    return 0;
}

int engine_domain_get_xml(struct engine *e, const char *name, char **xml, struct qs_error **err)
{
    json_object *doc = NULL;

    if (get(e, path_of(e, "/api/vms/%s/definition", name, NULL), &doc, err) < 0)
        return -1;
    *xml = dup_str(doc, "xml");
    json_object_put(doc);
    return *xml ? 0 : -1;
}

int engine_domain_attach(struct engine *e, const char *name, const char *qmp_socket, struct qs_error **err)
{
    return engine_domain_attach_flags(e, name, qmp_socket, 0, err);
}

int engine_domain_attach_flags(struct engine *e, const char *name, const char *qmp_socket, unsigned flags,
                               struct qs_error **err)
{
    json_object *b = json_object_new_object(), *doc = NULL;
    /* resolved here, as the direct engine does it: qsnapd's working directory is not the user's */
    char *abs = !qmp_socket ? NULL : qmp_socket[0] == '/' ? qs_xstrdup(qmp_socket) : realpath(qmp_socket, NULL);
    int st;

    if (qmp_socket && !abs) {
        qs_error_set_errno(err, QS_ERR_NOTFOUND, errno, "QMP socket '%s'", qmp_socket);
        json_object_put(b);
        return -1;
    }
    json_object_object_add(b, "name", json_object_new_string(name));
    if (abs)
        json_object_object_add(b, "qmp_socket", json_object_new_string(abs));
    if (flags & ENGINE_ATTACH_UPDATE)
        json_object_object_add(b, "update", json_object_new_boolean(true));
    st = request(e, "POST", "/api/vms", b, &doc, err);
    json_object_put(b);
    json_object_put(doc);
    free(abs);
    return st < 0 ? -1 : 0;
}

int engine_domain_define(struct engine *e, const char *xml, const char *qmp_socket, char **name,
                         struct qs_error **err)
{
    json_object *b = json_object_new_object(), *doc = NULL;
    int st;

    json_object_object_add(b, "xml", json_object_new_string(xml));
    if (qmp_socket)
        json_object_object_add(b, "qmp_socket", json_object_new_string(qmp_socket));
    st = request(e, "POST", "/api/vms", b, &doc, err);
    json_object_put(b);
    if (st >= 0 && name)
        *name = dup_str(doc, "name");
    json_object_put(doc);
    return st < 0 ? -1 : 0;
}

int engine_domain_undefine(struct engine *e, const char *name, bool force, struct qs_error **err)
{
    json_object *doc = NULL;
    char *path = path_of(e, force ? "/api/vms/%s?force=true" : "/api/vms/%s", name, NULL);
    int st = request(e, "DELETE", path, NULL, &doc, err);

    free(path);
    json_object_put(doc);
    return st < 0 ? -1 : 0;
}

static json_object *body_flags(const char *k1, bool v1, const char *k2, bool v2)
{
    json_object *b = json_object_new_object();
    if (k1)
        json_object_object_add(b, k1, json_object_new_boolean(v1));
    if (k2)
        json_object_object_add(b, k2, json_object_new_boolean(v2));
    return b;
}

int engine_domain_start(struct engine *e, const char *name, bool paused, struct qs_error **err)
{
    return run(e, "POST", path_of(e, "/api/vms/%s/start", name, NULL), body_flags("paused", paused, NULL, false), NULL,
               err);
}

int engine_domain_destroy(struct engine *e, const char *name, struct qs_error **err)
{
    return run(e, "POST", path_of(e, "/api/vms/%s/destroy", name, NULL), json_object_new_object(), NULL, err);
}

/* A path as the user meant it: relative ones against this process's directory, not qsnapd's. */
static char *abs_path(const char *p)
{
    char cwd[PATH_MAX];
    if (p[0] == '/' || !getcwd(cwd, sizeof(cwd)))
        return qs_xstrdup(p);
    return qs_asprintf("%s/%s", cwd, p);
}

int engine_domain_save(struct engine *e, const char *name, const char *path, unsigned flags, struct qs_error **err)
{
    json_object *b = body_flags("running", flags & ENGINE_SAVE_RUNNING, "paused", flags & ENGINE_SAVE_PAUSED);
    char *abs = abs_path(path);

    json_object_object_add(b, "path", json_object_new_string(abs));
    free(abs);
    return run(e, "POST", path_of(e, "/api/vms/%s/save", name, NULL), b, NULL, err);
}

int engine_domain_restore(struct engine *e, const char *path, unsigned flags, char **name, struct qs_error **err)
{
    json_object *b = body_flags("running", flags & ENGINE_SAVE_RUNNING, "paused", flags & ENGINE_SAVE_PAUSED), *res = NULL;
    char *abs = abs_path(path);
    int r;

    json_object_object_add(b, "path", json_object_new_string(abs));
    free(abs);
    r = run(e, "POST", qs_xstrdup("/api/restore"), b, &res, err);
    if (r == 0 && name)
        *name = dup_str(res, "vm");
    json_object_put(res);
    return r;
}

int engine_domain_pending(struct engine *e, const char *name, char **op, char ***snapshots, size_t *n, long *pid,
                          int64_t *started, struct qs_error **err)
{
    json_object *doc = NULL, *a;
    int ret;

    if (op)
        *op = NULL;
    if (snapshots)
        *snapshots = NULL;
    if (n)
        *n = 0;
    if (get(e, path_of(e, "/api/vms/%s/pending", name, NULL), &doc, err) < 0)
        return -1;
    ret = str(doc, "op") ? 1 : 0;
    if (ret) {
        a = json_object_object_get(doc, "snapshots");
        if (op)
            *op = dup_str(doc, "op");
        if (snapshots) {
            size_t k = a ? json_object_array_length(a) : 0;
            *snapshots = qs_xcalloc(k + 1, sizeof(char *));
            for (size_t i = 0; i < k; i++)
                (*snapshots)[i] = qs_xstrdup(json_object_get_string(json_object_array_get_idx(a, i)));
            if (n)
                *n = k;
        }
        if (pid)
            *pid = (long)num(doc, "pid", 0);
        if (started)
            *started = num(doc, "started", 0);
    }
    json_object_put(doc);
    return ret;
}

/* ---- snapshots ---- */

struct engine_snapshot {
    char *name, *parent, *description, *state, *location;
    int64_t creation_time, pause_us;
    bool current;
    size_t children, descendants;
};

struct engine_snapshot_list {
    struct engine_snapshot *items;
    size_t n;
};

const char *engine_snapshot_name(const struct engine_snapshot *s) { return s->name; }
const char *engine_snapshot_parent(const struct engine_snapshot *s) { return s->parent; }
const char *engine_snapshot_description(const struct engine_snapshot *s) { return s->description; }
const char *engine_snapshot_state(const struct engine_snapshot *s) { return s->state; }
int64_t engine_snapshot_creation_time(const struct engine_snapshot *s) { return s->creation_time; }
const char *engine_snapshot_location(const struct engine_snapshot *s) { return s->location; }
bool engine_snapshot_is_current(const struct engine_snapshot *s) { return s->current; }
size_t engine_snapshot_children(const struct engine_snapshot *s) { return s->children; }
size_t engine_snapshot_descendants(const struct engine_snapshot *s) { return s->descendants; }
int64_t engine_snapshot_pause_us(const struct engine_snapshot *s) { return s->pause_us; }
size_t engine_snapshot_list_count(const struct engine_snapshot_list *l) { return l->n; }

const struct engine_snapshot *engine_snapshot_list_at(const struct engine_snapshot_list *l, size_t i)
{
    return i < l->n ? &l->items[i] : NULL;
}

void engine_snapshot_list_free(struct engine_snapshot_list *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++) {
        struct engine_snapshot *s = &l->items[i];
        free(s->name);
        free(s->parent);
        free(s->description);
        free(s->state);
        free(s->location);
    }
    free(l->items);
    free(l);
}

static void snapshot_from(struct engine_snapshot *s, json_object *o)
{
    s->name = dup_str(o, "name");
    s->parent = dup_str(o, "parent");
    s->description = dup_str(o, "description");
    s->state = dup_str(o, "state");
    s->location = dup_str(o, "location");
    s->creation_time = num(o, "creation_time", 0);
    s->pause_us = num(o, "guest_pause_us", -1);
    s->current = flag(o, "current");
    s->children = (size_t)num(o, "children", 0);
    s->descendants = (size_t)num(o, "descendants", 0);
    if (!s->name)
        s->name = qs_xstrdup("");
    if (!s->state)
        s->state = qs_xstrdup("nostate");
    if (!s->location)
        s->location = qs_xstrdup("internal");
}

static const struct {
    unsigned flag;
    const char *arg;
} list_args[] = {
    {ENGINE_LIST_ROOTS, "roots"},         {ENGINE_LIST_DESCENDANTS, "descendants"},
    {ENGINE_LIST_LEAVES, "leaves"},       {ENGINE_LIST_NO_LEAVES, "no_leaves"},
    {ENGINE_LIST_INACTIVE, "inactive"},   {ENGINE_LIST_ACTIVE, "active"},
    {ENGINE_LIST_DISK_ONLY, "disk_only"}, {ENGINE_LIST_INTERNAL, "internal"},
    {ENGINE_LIST_EXTERNAL, "external"},   {ENGINE_LIST_METADATA, "metadata"},
    {ENGINE_LIST_NO_METADATA, "no_metadata"}, {ENGINE_LIST_TOPOLOGICAL, "topological"},
    {ENGINE_LIST_TREE, "tree"},
};

int engine_snapshot_list(struct engine *e, const char *domain, unsigned flags, const char *from,
                         struct engine_snapshot_list **out, struct qs_error **err)
{
    struct qs_buf q;
    json_object *doc = NULL, *a;
    struct engine_snapshot_list *l;
    char *path;
    int r;

    qs_buf_init(&q, 0);
    path = path_of(e, "/api/vms/%s/snapshots", domain, NULL);
    qs_buf_adds(&q, path);
    free(path);
    qs_buf_adds(&q, "?");
    for (size_t i = 0; i < sizeof(list_args) / sizeof(list_args[0]); i++)
        if (flags & list_args[i].flag)
            qs_buf_addf(&q, "%s=true&", list_args[i].arg);
    if (from) {
        char *ef = curl_easy_escape(e->curl, from, 0);
        qs_buf_addf(&q, "from=%s", ef);
        curl_free(ef);
    }
    r = get(e, qs_buf_detach(&q, NULL), &doc, err);
    if (r < 0)
        return -1;
    a = json_object_object_get(doc, "snapshot");
    l = qs_xcalloc(1, sizeof(*l));
    l->n = a ? json_object_array_length(a) : 0;
    l->items = qs_xcalloc(l->n + 1, sizeof(*l->items));
    for (size_t i = 0; i < l->n; i++)
        snapshot_from(&l->items[i], json_object_array_get_idx(a, i));
    json_object_put(doc);
    *out = l;
    return 0;
}

int engine_snapshot_lookup(struct engine *e, const char *domain, const char *name, struct engine_snapshot_list **out,
                           struct qs_error **err)
{
    json_object *doc = NULL;
    struct engine_snapshot_list *l;

    if (get(e, path_of(e, "/api/vms/%s/snapshots/%s", domain, name), &doc, err) < 0)
        return -1;
    l = qs_xcalloc(1, sizeof(*l));
    l->n = 1;
    l->items = qs_xcalloc(1, sizeof(*l->items));
    snapshot_from(&l->items[0], doc);
    json_object_put(doc);
    *out = l;
    return 0;
}

bool engine_snapshot_file_present(struct engine *e, const char *domain, const char *name)
{
    (void)e, (void)domain, (void)name;
    return false; /* no files here: the lookup is one request either way */
}

int engine_snapshot_current_name(struct engine *e, const char *domain, char **name, struct qs_error **err)
{
    json_object *doc = NULL;

    if (get(e, path_of(e, "/api/vms/%s/current", domain, NULL), &doc, err) < 0)
        return -1;
    *name = dup_str(doc, "name");
    json_object_put(doc);
    return 0;
}

int engine_snapshot_set_current(struct engine *e, const char *domain, const char *name, struct qs_error **err)
{
    json_object *b = json_object_new_object(), *doc = NULL;
    char *path = path_of(e, "/api/vms/%s/current", domain, NULL);
    int st;

    json_object_object_add(b, "name", json_object_new_string(name));
    st = request(e, "PUT", path, b, &doc, err);
    free(path);
    json_object_put(b);
    json_object_put(doc);
    return st < 0 ? -1 : 0;
}

int engine_snapshot_get_xml(struct engine *e, const char *domain, const char *name, bool secure, char **xml,
                            struct qs_error **err)
{
    json_object *doc = NULL;

    *xml = NULL;
    if (get(e,
            path_of(e, secure ? "/api/vms/%s/snapshots/%s?all_content=true&security_info=true"
                              : "/api/vms/%s/snapshots/%s?all_content=true",
                    domain, name),
            &doc, err) < 0)
        return -1;
    *xml = dup_str(doc, "xml");
    json_object_put(doc);
    if (!*xml) {
        qs_error_set(err, QS_ERR_PROTOCOL, "qsnapd sent no XML for snapshot '%s'", name);
        return -1;
    }
    return 0;
}

static const struct {
    unsigned flag;
    const char *member;
} create_members[] = {
    {ENGINE_CREATE_REDEFINE, "redefine"},     {ENGINE_CREATE_CURRENT, "current"},
    {ENGINE_CREATE_NO_METADATA, "no_metadata"}, {ENGINE_CREATE_HALT, "halt"},
    {ENGINE_CREATE_DISK_ONLY, "disk_only"},   {ENGINE_CREATE_REUSE_EXT, "reuse_external"},
    {ENGINE_CREATE_QUIESCE, "quiesce"},       {ENGINE_CREATE_ATOMIC, "atomic"},
    {ENGINE_CREATE_LIVE, "live"},             {ENGINE_CREATE_VALIDATE, "validate"},
    {ENGINE_CREATE_LIVE_FALLBACK, "live_fallback"}, {ENGINE_CREATE_PRECOPY, "precopy"},
};

int engine_snapshot_create(struct engine *e, const char *domain, const char *xml, unsigned flags, char **name,
                           struct qs_error **err)
{
    json_object *b = json_object_new_object(), *res = NULL;
    int r;

    /* the document as it is (null: none), so that the engine behind qsnapd sees what the direct one would */
    json_object_object_add(b, "xml", xml ? json_object_new_string(xml) : NULL);
    for (size_t i = 0; i < sizeof(create_members) / sizeof(create_members[0]); i++)
        if (flags & create_members[i].flag)
            json_object_object_add(b, create_members[i].member, json_object_new_boolean(true));
    r = run(e, "POST", path_of(e, "/api/vms/%s/snapshots", domain, NULL), b, &res, err);
    if (r == 0 && name)
        *name = dup_str(res, "snapshot");
    json_object_put(res);
    return r;
}

static json_object *revert_body(unsigned flags)
{
    json_object *b = json_object_new_object();
    if (flags & ENGINE_REVERT_RUNNING)
        json_object_object_add(b, "start", json_object_new_boolean(true));
    if (flags & ENGINE_REVERT_PAUSED)
        json_object_object_add(b, "paused", json_object_new_boolean(true));
    if (flags & ENGINE_REVERT_FORCE)
        json_object_object_add(b, "force", json_object_new_boolean(true));
    return b;
}

int engine_snapshot_revert(struct engine *e, const char *domain, const char *name, unsigned flags,
                           struct qs_error **err)
{
    if ((flags & ENGINE_REVERT_RUNNING) && (flags & ENGINE_REVERT_PAUSED)) {
        qs_error_set(err, QS_ERR_INVALID,
                     "Flags 'VIR_DOMAIN_SNAPSHOT_REVERT_RUNNING' and 'VIR_DOMAIN_SNAPSHOT_REVERT_PAUSED' are "
                     "mutually exclusive");
        return -1;
    }
    return run(e, "POST", path_of(e, "/api/vms/%s/snapshots/%s/restore", domain, name), revert_body(flags), NULL, err);
}

int engine_snapshot_delete(struct engine *e, const char *domain, const char *name, unsigned flags,
                           struct qs_error **err)
{
    struct qs_buf q;
    char *path = path_of(e, "/api/vms/%s/snapshots/%s", domain, name);

    qs_buf_init(&q, 0);
    qs_buf_addf(&q, "%s?children=%s&children_only=%s&metadata_only=%s", path,
                flags & ENGINE_DELETE_CHILDREN ? "true" : "false", flags & ENGINE_DELETE_CHILDREN_ONLY ? "true" : "false",
                flags & ENGINE_DELETE_METADATA_ONLY ? "true" : "false");
    free(path);
    if ((flags & ENGINE_DELETE_CHILDREN) && (flags & ENGINE_DELETE_CHILDREN_ONLY)) {
        qs_buf_release(&q);
        qs_error_set(err, QS_ERR_INVALID,
                     "Flags 'VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN' and 'VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN_ONLY' "
                     "are mutually exclusive");
        return -1;
    }
    return run(e, "DELETE", qs_buf_detach(&q, NULL), NULL, NULL, err);
}

/* ---- preview ---- */

int engine_snapshot_preview(struct engine *e, const char *domain, const char *name, unsigned flags,
                            struct qs_error **err)
{
    json_object *b = revert_body(flags), *s = json_object_new_object();

    json_object_object_add(s, "id", json_object_new_string(name));
    json_object_object_add(b, "snapshot", s);
    return run(e, "POST", path_of(e, "/api/vms/%s/previewsnapshot", domain, NULL), b, NULL, err);
}

int engine_snapshot_preview_commit(struct engine *e, const char *domain, struct qs_error **err)
{
    return run(e, "POST", path_of(e, "/api/vms/%s/commitsnapshot", domain, NULL), json_object_new_object(), NULL, err);
}

int engine_snapshot_preview_undo(struct engine *e, const char *domain, unsigned flags, struct qs_error **err)
{
    return run(e, "POST", path_of(e, "/api/vms/%s/undosnapshot", domain, NULL), revert_body(flags), NULL, err);
}

int engine_snapshot_preview_get(struct engine *e, const char *domain, enum engine_preview_state *state,
                                char **snapshot, struct qs_error **err)
{
    json_object *doc = NULL;
    const char *s;

    *state = ENGINE_PREVIEW_NONE;
    if (snapshot)
        *snapshot = NULL;
    if (get(e, path_of(e, "/api/vms/%s/preview", domain, NULL), &doc, err) < 0)
        return -1;
    s = str(doc, "state");
    *state = qs_str_equal(s, "active")        ? ENGINE_PREVIEW_ACTIVE
             : qs_str_equal(s, "interrupted") ? ENGINE_PREVIEW_INTERRUPTED
                                              : ENGINE_PREVIEW_NONE;
    if (snapshot)
        *snapshot = dup_str(doc, "snapshot");
    json_object_put(doc);
    return 0;
}

/* ---- check ---- */

int engine_snapshot_check(struct engine *e, const char *domain, unsigned flags, struct engine_check_report **out,
                          struct qs_error **err)
{
    json_object *doc = NULL, *a;
    struct engine_check_report *r;
    char *path = path_of(e, "/api/vms/%s/check", domain, NULL);
    int st = request(e, (flags & ENGINE_CHECK_REPAIR) ? "POST" : "GET", path, NULL, &doc, err);

    free(path);
    if (st < 0)
        return -1;
    a = json_object_object_get(doc, "item");
    r = qs_xcalloc(1, sizeof(*r));
    r->n = a ? json_object_array_length(a) : 0;
    r->items = qs_xcalloc(r->n + 1, sizeof(*r->items));
    for (size_t i = 0; i < r->n; i++) {
        json_object *o = json_object_array_get_idx(a, i);
        r->items[i] = (struct engine_check_item){dup_str(o, "kind"),    dup_str(o, "snapshot"), dup_str(o, "disk"),
                                                 dup_str(o, "message"), dup_str(o, "fix"),      flag(o, "repaired"),
                                                 flag(o, "note")};
    }
    json_object_put(doc);
    *out = r;
    return 0;
}


/* ---- times ---- */

/* A duration counts back from the caller's clock, as in direct mode: the user's "2h" means two hours before
 * the user's now. */
int engine_time_parse(struct engine *e, const char *text, int64_t *ms, struct qs_error **err)
{
    struct timespec ts;
    int64_t now;

    clock_gettime(CLOCK_REALTIME, &ts);
    now = e->clock ? e->clock(e->opaque) : (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    return engine_time_parse_at(text, now, ms, err);
}

/* ---- schedules, runs, prune, protect ---- */

static const char *const keep_names[] = {"last", "hourly", "daily", "weekly", "monthly", "yearly"};

static int *keep_slot(struct engine_retention *k, size_t i)
{
    int *slots[] = {&k->keep_last, &k->keep_hourly, &k->keep_daily, &k->keep_weekly, &k->keep_monthly, &k->keep_yearly};
    return slots[i];
}

static json_object *keep_body(const struct engine_retention *keep)
{
    struct engine_retention k = *keep;
    json_object *o = json_object_new_object();

    for (size_t i = 0; i < sizeof(keep_names) / sizeof(keep_names[0]); i++)
        json_object_object_add(o, keep_names[i], json_object_new_int(*keep_slot(&k, i)));
    json_object_object_add(o, "max_age_s", json_object_new_int64(k.max_age_s));
    return o;
}

static void keep_from(struct engine_retention *k, json_object *o)
{
    memset(k, 0, sizeof(*k));
    for (size_t i = 0; i < sizeof(keep_names) / sizeof(keep_names[0]); i++)
        *keep_slot(k, i) = (int)num(o, keep_names[i], 0);
    k->max_age_s = num(o, "max_age_s", 0);
}

int engine_schedule_set(struct engine *e, const char *domain, const struct engine_schedule *s, struct qs_error **err)
{
    json_object *b, *doc = NULL;
    const char *kind;
    char *path;
    int st;

    /* the engine's first check, here: a name with '/' would not even reach it through a path */
    if (!s->name) {
        qs_error_set(err, QS_ERR_INVALID, "a schedule needs a name");
        return -1;
    }
    if (qs_name_check(s->name, "schedule", err) < 0)
        return -1;
    b = json_object_new_object();
    json_object_object_add(b, "cron", s->cron ? json_object_new_string(s->cron) : NULL);
    kind = engine_schedule_kind_name(s->kind);
    json_object_object_add(b, "kind", json_object_new_string(kind ? kind : "?"));
    json_object_object_add(b, "quiesce", json_object_new_boolean(s->quiesce));
    json_object_object_add(b, "pattern", s->pattern ? json_object_new_string(s->pattern) : NULL);
    json_object_object_add(b, "offline", json_object_new_boolean(s->offline));
    json_object_object_add(b, "keep", keep_body(&s->keep));
    json_object_object_add(b, "min_free_pct", json_object_new_int(s->min_free_pct));
    path = path_of(e, "/api/vms/%s/schedules/%s", domain, s->name);
    st = request(e, "PUT", path, b, &doc, err);
    free(path);
    json_object_put(b);
    json_object_put(doc);
    return st < 0 ? -1 : 0;
}

int engine_schedule_remove(struct engine *e, const char *domain, const char *name, struct qs_error **err)
{
    json_object *doc = NULL;
    char *path;
    int st;

    /* a name no schedule can have is not one the domain has (what the engine finds), and no path to send */
    if (qs_name_check(name, "schedule", NULL) < 0) {
        qs_error_set(err, QS_ERR_NOTFOUND, "domain '%s' has no schedule '%s'", domain, name);
        return -1;
    }
    path = path_of(e, "/api/vms/%s/schedules/%s", domain, name);
    st = request(e, "DELETE", path, NULL, &doc, err);
    free(path);
    json_object_put(doc);
    return st < 0 ? -1 : 0;
}

int engine_schedule_list(struct engine *e, const char *domain, struct engine_schedule **out, size_t *n,
                         struct qs_error **err)
{
    json_object *doc = NULL, *a;

    *out = NULL;
    *n = 0;
    if (get(e, domain ? path_of(e, "/api/vms/%s/schedules", domain, NULL) : qs_xstrdup("/api/schedules"), &doc,
            err) < 0)
        return -1;
    a = json_object_object_get(doc, "schedule");
    *n = a ? json_object_array_length(a) : 0;
    *out = qs_xcalloc(*n + 1, sizeof(**out));
    for (size_t i = 0; i < *n; i++) {
        json_object *o = json_object_array_get_idx(a, i);
        struct engine_schedule *s = &(*out)[i];
        int k = engine_schedule_kind_from_name(str(o, "kind"));
        s->domain = dup_str(o, "vm");
        s->name = dup_str(o, "name");
        s->cron = dup_str(o, "cron");
        s->kind = k < 0 ? ENGINE_SCHEDULE_INTERNAL : (enum engine_schedule_kind)k;
        s->quiesce = flag(o, "quiesce");
        s->pattern = dup_str(o, "pattern");
        s->offline = flag(o, "offline");
        keep_from(&s->keep, json_object_object_get(o, "keep"));
        s->min_free_pct = (int)num(o, "min_free_pct", 0);
        s->expanded = dup_str(o, "expanded");
        s->created = num(o, "created", 0);
        s->last_slot = num(o, "last_slot", 0);
        s->last_run = num(o, "last_run", 0);
        s->next_slot = num(o, "next_slot", -1);
        s->last_result = dup_str(o, "last_result");
        s->last_error = dup_str(o, "last_error");
        s->last_snapshot = dup_str(o, "last_snapshot");
        if (!s->domain || !s->name || !s->cron) {
            engine_schedule_list_free(*out, *n);
            *out = NULL;
            *n = 0;
            json_object_put(doc);
            qs_error_set(err, QS_ERR_PROTOCOL, "qsnapd sent a schedule without its domain, name or cron");
            return -1;
        }
    }
    json_object_put(doc);
    return 0;
}

int engine_schedule_run(struct engine *e, const char *domain, const char *schedule, unsigned flags,
                        struct engine_run **out, size_t *n, struct qs_error **err)
{
    struct qs_buf q;
    json_object *res = NULL, *a;
    char *path;
    size_t k;
    int r;

    if (out)
        *out = NULL;
    if (n)
        *n = 0;
    if (schedule && !domain) {
        qs_error_set(err, QS_ERR_INVALID, "a schedule name needs its domain");
        return -1;
    }
    qs_buf_init(&q, 0);
    path = domain ? path_of(e, "/api/vms/%s/schedules/run", domain, NULL) : qs_xstrdup("/api/schedules/run");
    qs_buf_addf(&q, "%s?due=%s", path, flags & ENGINE_RUN_DUE ? "true" : "false");
    free(path);
    if (schedule) {
        char *es = curl_easy_escape(e->curl, schedule, 0);
        qs_buf_addf(&q, "&schedule=%s", es);
        curl_free(es);
    }
    r = run(e, "POST", qs_buf_detach(&q, NULL), json_object_new_object(), &res, err);
    a = json_object_object_get(res, "run");
    k = a ? json_object_array_length(a) : 0;
    if (out) {
        *out = qs_xcalloc(k + 1, sizeof(**out));
        for (size_t i = 0; i < k; i++) {
            json_object *o = json_object_array_get_idx(a, i);
            struct engine_run *x = &(*out)[i];
            x->domain = dup_str(o, "vm");
            x->schedule = dup_str(o, "schedule");
            x->outcome = dup_str(o, "outcome");
            x->slot = num(o, "slot", 0);
            x->missed = (long)num(o, "missed", 0);
            x->snapshot = dup_str(o, "snapshot");
            x->reason = dup_str(o, "reason");
            x->error = dup_str(o, "error");
            x->pruned = (int)num(o, "pruned", 0);
            if (!x->domain)
                x->domain = qs_xstrdup("");
            if (!x->outcome)
                x->outcome = qs_xstrdup("failed");
        }
        *n = k;
    }
    json_object_put(res);
    return r;
}

/* The items of a prune's reply; NULL when it has none (caller frees with engine_prune_list_free). */
static struct engine_prune_item *prune_items(json_object *doc, size_t *n)
{
    json_object *a = json_object_object_get(doc, "item");
    struct engine_prune_item *v;

    *n = a ? json_object_array_length(a) : 0;
    v = qs_xcalloc(*n + 1, sizeof(*v));
    for (size_t i = 0; i < *n; i++) {
        json_object *o = json_object_array_get_idx(a, i);
        const char *action = str(o, "action");
        v[i].snapshot = dup_str(o, "snapshot");
        v[i].creation_time = num(o, "creation_time", 0);
        v[i].schedule = dup_str(o, "schedule");
        v[i].location = dup_str(o, "location");
        v[i].action = ENGINE_PRUNE_KEPT;
        for (int k = 0; action && k < ENGINE_PRUNE_ACTION__LAST; k++)
            if (strcmp(action, engine_prune_action_name((enum engine_prune_action)k)) == 0)
                v[i].action = (enum engine_prune_action)k;
        v[i].rule = dup_str(o, "rule");
        v[i].reason = dup_str(o, "reason");
        v[i].error = dup_str(o, "error");
        if (!v[i].snapshot)
            v[i].snapshot = qs_xstrdup("");
        if (!v[i].location)
            v[i].location = qs_xstrdup("internal");
        if (!v[i].reason)
            v[i].reason = qs_xstrdup("");
    }
    return v;
}

int engine_snapshot_prune(struct engine *e, const char *domain, const char *schedule,
                          const struct engine_retention *keep, unsigned flags, struct engine_prune_item **out,
                          size_t *n, struct qs_error **err)
{
    bool dry = flags & ENGINE_PRUNE_DRY_RUN;
    json_object *b = json_object_new_object(), *doc = NULL;
    char *path = path_of(e, dry ? "/api/vms/%s/prune?dry_run=true" : "/api/vms/%s/prune", domain, NULL);
    int r;

    *out = NULL;
    *n = 0;
    if (schedule)
        json_object_object_add(b, "schedule", json_object_new_string(schedule));
    if (flags & ENGINE_PRUNE_MANUAL)
        json_object_object_add(b, "manual", json_object_new_boolean(true));
    if (keep)
        json_object_object_add(b, "keep", keep_body(keep));
    if (dry) {
        /* answered at once */
        int st = request(e, "POST", path, b, &doc, err);
        free(path);
        json_object_put(b);
        r = st < 0 ? -1 : 0;
    } else {
        /* a task; a delete that failed leaves the items in its result */
        r = run(e, "POST", path, b, &doc, err);
    }
    if (doc)
        *out = prune_items(doc, n);
    json_object_put(doc);
    return r;
}

int engine_snapshot_protect(struct engine *e, const char *domain, const char *name, bool protect,
                            struct qs_error **err)
{
    json_object *doc = NULL;
    char *path = path_of(e, protect ? "/api/vms/%s/snapshots/%s/protect" : "/api/vms/%s/snapshots/%s/unprotect",
                         domain, name);
    int st = request(e, "POST", path, NULL, &doc, err);

    free(path);
    json_object_put(doc);
    return st < 0 ? -1 : 0;
}

/* ---- the event log ---- */

int engine_events_read(struct engine *e, const char *domain, int64_t since_ms, struct engine_event **out,
                       size_t *n, struct qs_error **err)
{
    json_object *doc = NULL, *a;
    char *dom = curl_easy_escape(e->curl, domain, 0), *path;
    int r;

    *out = NULL;
    *n = 0;
    path = qs_asprintf("/api/events?vm=%s&since=%lld", dom ? dom : "", (long long)(since_ms > 0 ? since_ms : 0));
    curl_free(dom);
    if ((r = get(e, path, &doc, err)) < 0)
        return -1;
    a = json_object_object_get(doc, "event");
    *n = a ? json_object_array_length(a) : 0;
    *out = qs_xcalloc(*n + 1, sizeof(**out));
    for (size_t i = 0; i < *n; i++) {
        json_object *o = json_object_array_get_idx(a, i);
        struct engine_event *v = &(*out)[i];
        v->time_ms = num(o, "time_ms", 0);
        v->op = dup_str(o, "op");
        v->snapshot = dup_str(o, "snapshot");
        v->outcome = dup_str(o, "outcome");
        v->duration_ms = num(o, "duration_ms", 0);
        v->error = dup_str(o, "error");
        v->pause_us = num(o, "pause_us", -1);
        v->uid = (long)num(o, "uid", -1);
        v->pid = (long)num(o, "pid", -1);
        v->requester = dup_str(o, "requester");
        v->schedule = dup_str(o, "schedule");
        v->detail = dup_str(o, "detail");
        if (!v->op)
            v->op = qs_xstrdup("");
        if (!v->outcome)
            v->outcome = qs_xstrdup("");
    }
    json_object_put(doc);
    return 0;
}

/* ---- export and clone ---- */

int engine_snapshot_export(struct engine *e, const char *domain, const char *name, const char *disk,
                           const char *path, const char *format, unsigned flags, struct engine_export_result *res,
                           struct qs_error **err)
{
    json_object *b, *out = NULL;
    int r;

    /* as the engine's first checks: what it would refuse before anything else, refused here the same way (a name
     * with '/' would not even reach it through a path) */
    if (flags & ~(unsigned)ENGINE_EXPORT_COMPRESS) {
        qs_error_set(err, QS_ERR_UNSUPPORTED, "unsupported export flags 0x%x",
                     flags & ~(unsigned)ENGINE_EXPORT_COMPRESS);
        return -1;
    }
    if (qs_name_check(name, "snapshot", err) < 0)
        return -1;
    b = json_object_new_object();
    json_object_object_add(b, "disk", disk ? json_object_new_string(disk) : NULL);
    json_object_object_add(b, "to", path ? json_object_new_string(path) : NULL);
    json_object_object_add(b, "format", format ? json_object_new_string(format) : NULL);
    json_object_object_add(b, "compress", json_object_new_boolean(flags & ENGINE_EXPORT_COMPRESS));
    r = run(e, "POST", path_of(e, "/api/vms/%s/snapshots/%s/export", domain, name), b, &out, err);
    if (r == 0 && res) {
        res->size = (uint64_t)num(out, "size", 0);
        res->virtual_size = (uint64_t)num(out, "virtual_size", 0);
    }
    json_object_put(out);
    return r;
}

int engine_domain_clone(struct engine *e, const char *domain, const char *snapshot, const char *name,
                        unsigned flags, struct qs_error **err)
{
    json_object *b;

    if (qs_name_check(snapshot, "snapshot", err) < 0)
        return -1;
    b = json_object_new_object();
    json_object_object_add(b, "name", json_object_new_string(name));
    json_object_object_add(b, "full", json_object_new_boolean(flags & ENGINE_CLONE_FULL));
    json_object_object_add(b, "start", json_object_new_boolean(flags & ENGINE_CLONE_START));
    json_object_object_add(b, "with_memory", json_object_new_boolean(flags & ENGINE_CLONE_WITH_MEMORY));
    return run(e, "POST", path_of(e, "/api/vms/%s/snapshots/%s/clone", domain, snapshot), b, NULL, err);
}

/* ---- the QEMU behind a domain ---- */

int engine_domain_qemu_info(struct engine *e, const char *name, struct engine_qemu_info *info,
                            struct qs_error **err)
{
    json_object *doc = NULL, *a;
    size_t k;

    memset(info, 0, sizeof(*info));
    if (get(e, path_of(e, "/api/vms/%s/qemu", name, NULL), &doc, err) < 0)
        return -1;
    a = json_object_object_get(doc, "features");
    k = a ? json_object_array_length(a) : 0;
    info->version = qs_xstrdup(str(doc, "version") ? str(doc, "version") : "");
    info->package = qs_xstrdup(str(doc, "package") ? str(doc, "package") : "");
    info->features = qs_xcalloc(k + 1, sizeof(char *));
    for (size_t i = 0; i < k; i++)
        info->features[i] = qs_xstrdup(json_object_get_string(json_object_array_get_idx(a, i)));
    json_object_put(doc);
    return 0;
}
