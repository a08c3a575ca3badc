/* router.c: routes (tables per file), request arguments and bodies, replies and errors - no HTTP here, so
 * the fuzzer can drive it. */
#include "svc.h"

#include "qs_buf.h"
#include "qs_util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Every route table: an area of the API adds its file's table here. */
static const struct svc_route *const route_tables[] = {
    svc_routes_vms,
    svc_routes_snapshots,
    svc_routes_tasks,
    svc_routes_meta,
    svc_routes_schedules,
    svc_routes_clone,
    svc_routes_qemu,
    svc_routes_web,
};

static const char *const method_names[] = {
    [SVC_GET] = "GET", [SVC_POST] = "POST", [SVC_PUT] = "PUT", [SVC_DELETE] = "DELETE",
};
_Static_assert(sizeof(method_names) / sizeof(method_names[0]) == SVC_METHOD__LAST, "method_names");

int svc_method_parse(const char *s)
{
    for (int i = 0; i < SVC_METHOD__LAST; i++)
        if (s && strcmp(s, method_names[i]) == 0)
            return i;
    return -1;
}

const char *svc_method_name(enum svc_method m)
{
    return (unsigned)m < SVC_METHOD__LAST ? method_names[m] : "?";
}

/* Matches PATTERN against the segments of the path in BUF (split in place by the caller's copy). */
static bool pattern_match(const char *pattern, char *const *segs, size_t nsegs, const char **params, size_t *np)
{
    size_t i = 0;
    const char *p = pattern;

    *np = 0;
    if (strcmp(pattern, "/") == 0) /* the root: no segment at all */
        return nsegs == 0;
    while (*p == '/') {
        const char *end;
        size_t len;
        p++;
        end = strchr(p, '/');
        len = end ? (size_t)(end - p) : strlen(p);
        if (i >= nsegs)
            return false;
        if (len >= 2 && p[0] == '{' && p[len - 1] == '}') {
            if (*np >= SVC_MAX_PARAMS)
                return false;
            params[(*np)++] = segs[i];
        } else if (strlen(segs[i]) != len || strncmp(segs[i], p, len) != 0) {
            return false;
        }
        i++;
        p += len;
    }
    return i == nsegs;
}

enum svc_match svc_route_find(enum svc_method method, const char *path, char *buf, size_t buflen,
                              const struct svc_route **route, struct svc_req *r)
{
    char *segs[16], *save = NULL;
    size_t nsegs = 0, len = strlen(path);
    enum svc_match res = SVC_MATCH_NONE;

    *route = NULL;
    if (path[0] != '/' || len + 1 > buflen)
        return SVC_MATCH_NONE;
    memcpy(buf, path, len + 1);
    /* empty segments ("//", a trailing "/") match nothing: a name is never empty */
    if (strstr(buf, "//") || (len > 1 && buf[len - 1] == '/'))
        return SVC_MATCH_NONE;
    for (char *s = strtok_r(buf, "/", &save); s; s = strtok_r(NULL, "/", &save)) {
        if (nsegs == sizeof(segs) / sizeof(segs[0]))
            return SVC_MATCH_NONE;
        segs[nsegs++] = s;
    }
    for (size_t t = 0; t < sizeof(route_tables) / sizeof(route_tables[0]); t++) {
        for (const struct svc_route *rt = route_tables[t]; rt->pattern; rt++) {
            const char *params[SVC_MAX_PARAMS];
            size_t np;
            if (!pattern_match(rt->pattern, segs, nsegs, params, &np))
                continue;
            if (rt->method != method) {
                res = SVC_MATCH_METHOD;
                continue;
            }
            memcpy(r->params, params, sizeof(params));
            r->nparams = np;
            *route = rt;
            return SVC_MATCH_OK;
        }
    }
    return res;
}

const char *svc_query(const struct svc_req *r, const char *name)
{
    for (size_t i = 0; r->query && r->query[i]; i += 2)
        if (strcmp(r->query[i], name) == 0)
            return r->query[i + 1] ? r->query[i + 1] : "";
    return NULL;
}

int svc_query_bool(struct svc_req *r, const char *name, bool def, bool *out)
{
    const char *v = svc_query(r, name);

    *out = def;
    if (!v)
        return 0;
    if (strcmp(v, "true") == 0 || strcmp(v, "1") == 0 || *v == '\0') {
        *out = true;
        return 0;
    }
    if (strcmp(v, "false") == 0 || strcmp(v, "0") == 0) {
        *out = false;
        return 0;
    }
    svc_reply_error(r, 400, "invalid", "query argument '%s' must be true or false", name);
    return -1;
}

int svc_body_bool(struct svc_req *r, const char *name, bool def, bool *out)
{
    json_object *v;

    *out = def;
    if (!r->body || !json_object_object_get_ex(r->body, name, &v) || json_object_is_type(v, json_type_null))
        return 0;
    if (!json_object_is_type(v, json_type_boolean)) {
        svc_reply_error(r, 400, "invalid", "member '%s' must be a boolean", name);
        return -1;
    }
    *out = json_object_get_boolean(v);
    return 0;
}

int svc_body_string(struct svc_req *r, const char *name, const char **out)
{
    json_object *v;

    *out = NULL;
    if (!r->body || !json_object_object_get_ex(r->body, name, &v) || json_object_is_type(v, json_type_null))
        return 0;
    if (!json_object_is_type(v, json_type_string)) {
        svc_reply_error(r, 400, "invalid", "member '%s' must be a string", name);
        return -1;
    }
    *out = json_object_get_string(v);
    if (strlen(*out) != (size_t)json_object_get_string_len(v)) {
        svc_reply_error(r, 400, "invalid", "member '%s' contains a NUL character", name);
        return -1;
    }
    return 0;
}

int svc_body_parse(struct svc_req *r, const char *body, size_t len)
{
    struct json_tokener *tok;
    json_object *doc;
    enum json_tokener_error jerr;

    if (len == 0)
        return 0;
    tok = json_tokener_new_ex(SVC_JSON_DEPTH);
    if (!tok) {
        svc_reply_error(r, 500, "internal", "out of memory");
        return -1;
    }
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    doc = json_tokener_parse_ex(tok, body, (int)len);
    jerr = json_tokener_get_error(tok);
    if (jerr == json_tokener_continue) {
        svc_reply_error(r, 400, "invalid", "the body is not valid JSON: it ends early");
        json_object_put(doc);
        doc = NULL;
    } else if (jerr != json_tokener_success) {
        svc_reply_error(r, 400, "invalid", "the body is not valid JSON: %s", json_tokener_error_desc(jerr));
        doc = NULL;
    } else if (json_tokener_get_parse_end(tok) != len) {
        svc_reply_error(r, 400, "invalid", "the body has data after its JSON value");
        json_object_put(doc);
        doc = NULL;
    } else if (!json_object_is_type(doc, json_type_object)) {
        svc_reply_error(r, 400, "invalid", "the body must be a JSON object");
        json_object_put(doc);
        doc = NULL;
    }
    json_tokener_free(tok);
    if (!doc)
        return -1;
    r->body = doc;
    return 0;
}

void svc_reply(struct svc_req *r, int status, json_object *doc, const char *root)
{
    json_object_put(r->out);
    r->status = status;
    r->out = doc;
    r->out_root = root;
}

void svc_reply_error(struct svc_req *r, int status, const char *code, const char *fmt, ...)
{
    json_object *o = json_object_new_object();
    char *msg;
    va_list ap;

    va_start(ap, fmt);
    if (vasprintf(&msg, fmt, ap) < 0)
        msg = NULL;
    va_end(ap);
    json_object_object_add(o, "code", json_object_new_string(code));
    json_object_object_add(o, "message", json_object_new_string(msg ? msg : "out of memory"));
    free(msg);
    svc_reply(r, status, o, "fault");
}

int svc_status_of(int code)
{
    switch (code) {
    case QS_ERR_INVALID:
    case QS_ERR_TOOBIG:
        return 400;
    case QS_ERR_NOTFOUND:
        return 404;
    case QS_ERR_EXISTS:
    case QS_ERR_STATE:
    case QS_ERR_UNSUPPORTED:
        return 409;
    case QS_ERR_BUSY:
        return 423;
    default:
        return 500;
    }
}

void svc_reply_engine_error(struct svc_req *r, struct qs_error **err)
{
    int code = *err ? (*err)->code : QS_ERR_INTERNAL;
    svc_reply_error(r, svc_status_of(code), qs_error_code_name(code), "%s",
                    *err && (*err)->message ? (*err)->message : "unknown error");
    qs_error_clear(err);
}

int svc_params_check(struct svc_req *r)
{
    struct qs_error *err = NULL;

    /* names become file names in the engine: refused here already, before any work is queued */
    for (size_t i = 0; i < r->nparams; i++)
        if (qs_name_check(r->params[i], "name", &err) < 0) {
            svc_reply_engine_error(r, &err);
            return -1;
        }
    return 0;
}

struct engine *svc_engine(struct svc_req *r)
{
    struct qs_error *err = NULL;

    if (!r->engine && !(r->engine = engine_session_get(r->srv->session, NULL, NULL, NULL, &err)))
        svc_reply_engine_error(r, &err);
    else if (r->requester)
        engine_set_requester(r->engine, r->requester);
    return r->engine;
}

int svc_require_local(struct svc_req *r, const char *what)
{
    if (r->auth == SVC_AUTH_LOCAL)
        return 0;
    svc_reply_error(r, 403, "forbidden", "a request naming %s is served only over the local UNIX socket", what);
    return -1;
}

void svc_reply_task(struct svc_req *r, struct svc_task *t)
{
    bool async = true, wait = false;
    char href[96];

    if (r->body)
        svc_body_bool(r, "async", true, &async);
    svc_query_bool(r, "wait", false, &wait);
    snprintf(href, sizeof(href), "/api/tasks/%s", svc_task_id(t));
    if (!async || wait) {
        struct qs_error *e;
        svc_task_wait(t, -1);
        if ((e = svc_task_error(t)) != NULL)
            svc_reply_engine_error(r, &e);
        else
            svc_reply(r, 200, svc_task_json(t), "task");
    } else {
        r->location = qs_xstrdup(href);
        svc_reply(r, 202, svc_task_json(t), "task");
    }
    svc_task_unref(t);
}

struct svc_body *svc_body_new(char *data, size_t len, const char *type)
{
    struct svc_body *b = qs_xcalloc(1, sizeof(*b));

    pthread_mutex_init(&b->mu, NULL);
    b->refs = 1;
    b->data = data;
    b->len = len;
    b->type = type;
    return b;
}

struct svc_body *svc_body_ref(struct svc_body *b)
{
    pthread_mutex_lock(&b->mu);
    b->refs++;
    pthread_mutex_unlock(&b->mu);
    return b;
}

void svc_body_unref(struct svc_body *b)
{
    bool last;

    if (!b)
        return;
    pthread_mutex_lock(&b->mu);
    last = --b->refs == 0;
    pthread_mutex_unlock(&b->mu);
    if (last) {
        pthread_mutex_destroy(&b->mu);
        free(b->data);
        free(b);
    }
}

void svc_xml_escape(struct qs_buf *b, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<': qs_buf_adds(b, "&lt;"); break;
        case '>': qs_buf_adds(b, "&gt;"); break;
        case '&': qs_buf_adds(b, "&amp;"); break;
        case '\'': qs_buf_adds(b, "&apos;"); break;
        case '"': qs_buf_adds(b, "&quot;"); break;
        default: qs_buf_add(b, s, 1);
        }
    }
}

int svc_body_int(struct svc_req *r, json_object *o, const char *name, int64_t min, int64_t max, int64_t def,
                 int64_t *out)
{
    json_object *v;
    int64_t x;

    *out = def;
    if (!o)
        o = r->body;
    if (!o || !json_object_object_get_ex(o, name, &v) || json_object_is_type(v, json_type_null))
        return 0;
    x = json_object_get_int64(v);
    if (!json_object_is_type(v, json_type_int) || x < min || x > max) {
        svc_reply_error(r, 400, "invalid", "member '%s' must be an integer from %lld to %lld", name, (long long)min,
                        (long long)max);
        return -1;
    }
    *out = x;
    return 0;
}

int svc_body_only(struct svc_req *r, json_object *o, const char *const *allowed)
{
    if (!o)
        o = r->body;
    if (!o)
        return 0;
    json_object_object_foreach(o, k, v)
    {
        size_t i;
        (void)v;
        for (i = 0; allowed[i] && strcmp(allowed[i], k) != 0; i++)
            ;
        if (!allowed[i]) {
            svc_reply_error(r, 400, "invalid", "unknown member '%.64s'", k);
            return -1;
        }
    }
    return 0;
}

int svc_query_int(struct svc_req *r, const char *name, int64_t min, int64_t max, int64_t def, int64_t *out)
{
    const char *v = svc_query(r, name);
    char *end;
    long long x;

    *out = def;
    if (!v)
        return 0;
    errno = 0;
    x = strtoll(v, &end, 10);
    if (*v < '0' || *v > '9' || errno || *end || x < min || x > max) {
        svc_reply_error(r, 400, "invalid", "query argument '%s' must be an integer from %lld to %lld", name,
                        (long long)min, (long long)max);
        return -1;
    }
    *out = x;
    return 0;
}
