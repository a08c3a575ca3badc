/* routes_schedules.c: snapshot schedules and their runs, prune by retention, protected snapshots -
 * /api/schedules, /api/vms/{vm}/schedules[/{name}], /api/vms/{vm}/prune, /api/vms/{vm}/snapshots/{snap}/protect. */
#include "svc.h"

#include "qs_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEEP_MAX 1000000 /* as the CLI's --keep-* */
#define AGE_MAX (INT64_C(100) * 366 * 86400)

static json_object *str_or_null(const char *s)
{
    return s ? json_object_new_string(s) : NULL;
}

/* ---- retention {last, hourly, daily, weekly, monthly, yearly, max_age_s} ---- */

static const char *const keep_members[] = {"last", "hourly", "daily", "weekly", "monthly", "yearly", "max_age_s", NULL};

static int *keep_slot(struct engine_retention *k, size_t i)
{
    int *slots[] = {&k->keep_last, &k->keep_hourly, &k->keep_daily, &k->keep_weekly, &k->keep_monthly, &k->keep_yearly};
    return i < sizeof(slots) / sizeof(slots[0]) ? slots[i] : NULL;
}

static json_object *keep_json(const struct engine_retention *k)
{
    struct engine_retention c = *k;
    json_object *o = json_object_new_object();

    for (size_t i = 0; keep_slot(&c, i); i++)
        json_object_object_add(o, keep_members[i], json_object_new_int(*keep_slot(&c, i)));
    json_object_object_add(o, "max_age_s", json_object_new_int64(k->max_age_s));
    return o;
}

/* Member "keep" of O into *K; *any tells whether it was there. 400 on r and -1 when it is malformed. */
static int keep_parse(struct svc_req *r, json_object *o, struct engine_retention *k, bool *any)
{
    json_object *keep;
    int64_t v;

    memset(k, 0, sizeof(*k));
    *any = false;
    if (!o || !json_object_object_get_ex(o, "keep", &keep) || json_object_is_type(keep, json_type_null))
        return 0;
    if (!json_object_is_type(keep, json_type_object)) {
        svc_reply_error(r, 400, "invalid", "member 'keep' must be an object {last, hourly, daily, weekly, monthly, "
                                           "yearly, max_age_s}");
        return -1;
    }
    if (svc_body_only(r, keep, keep_members) < 0)
        return -1;
    for (size_t i = 0; keep_slot(k, i); i++) {
        if (svc_body_int(r, keep, keep_members[i], 0, KEEP_MAX, 0, &v) < 0)
            return -1;
        *keep_slot(k, i) = (int)v;
    }
    if (svc_body_int(r, keep, "max_age_s", 0, AGE_MAX, 0, &k->max_age_s) < 0)
        return -1;
    *any = true;
    return 0;
}

/* ---- schedules ---- */

/* A schedule as the API shows it: its settings as set (pattern and min_free_pct null and 0 for the defaults) and its
 * run state. */
static json_object *schedule_json(const struct engine_schedule *s)
{
    json_object *o = json_object_new_object();
    char href[1024];

    snprintf(href, sizeof(href), "/api/vms/%s/schedules/%s", s->domain, s->name);
    json_object_object_add(o, "id", json_object_new_string(s->name));
    json_object_object_add(o, "href", json_object_new_string(href));
    json_object_object_add(o, "vm", json_object_new_string(s->domain));
    json_object_object_add(o, "name", json_object_new_string(s->name));
    json_object_object_add(o, "cron", json_object_new_string(s->cron));
    json_object_object_add(o, "expanded", str_or_null(s->expanded));
    json_object_object_add(o, "kind", json_object_new_string(engine_schedule_kind_name(s->kind)));
    json_object_object_add(o, "quiesce", json_object_new_boolean(s->quiesce));
    json_object_object_add(o, "pattern", str_or_null(s->pattern));
    json_object_object_add(o, "offline", json_object_new_boolean(s->offline));
    json_object_object_add(o, "keep", keep_json(&s->keep));
    json_object_object_add(o, "min_free_pct", json_object_new_int(s->min_free_pct));
    json_object_object_add(o, "created", json_object_new_int64(s->created));
    json_object_object_add(o, "next_slot", json_object_new_int64(s->next_slot));
    json_object_object_add(o, "last_slot", json_object_new_int64(s->last_slot));
    json_object_object_add(o, "last_run", json_object_new_int64(s->last_run));
    json_object_object_add(o, "last_result", str_or_null(s->last_result));
    json_object_object_add(o, "last_error", str_or_null(s->last_error));
    json_object_object_add(o, "last_snapshot", str_or_null(s->last_snapshot));
    return o;
}

/* VM's schedules (NULL: every domain's), or only NAME's (404 when it has none of that name). */
static void schedules_reply(struct svc_req *r, const char *vm, const char *name)
{
    struct engine *e = svc_engine(r);
    struct engine_schedule *v = NULL;
    struct qs_error *err = NULL;
    json_object *a, *doc;
    size_t n = 0;

    if (!e)
        return;
    if (engine_schedule_list(e, vm, &v, &n, &err) < 0) {
        svc_reply_engine_error(r, &err);
        return;
    }
    if (name) {
        for (size_t i = 0; i < n; i++)
            if (strcmp(v[i].name, name) == 0)
                svc_reply(r, 200, schedule_json(&v[i]), "schedule");
        if (!r->status)
            svc_reply_error(r, 404, qs_error_code_name(QS_ERR_NOTFOUND), "domain '%s' has no schedule '%s'", vm, name);
    } else {
        a = json_object_new_array();
        for (size_t i = 0; i < n; i++)
            json_object_array_add(a, schedule_json(&v[i]));
        doc = json_object_new_object();
        json_object_object_add(doc, "schedule", a);
        svc_reply(r, 200, doc, "schedules");
    }
    engine_schedule_list_free(v, n);
}

static void get_all_schedules(struct svc_req *r) { schedules_reply(r, NULL, NULL); }
static void get_schedules(struct svc_req *r) { schedules_reply(r, r->params[0], NULL); }
static void get_schedule(struct svc_req *r) { schedules_reply(r, r->params[0], r->params[1]); }

static const char *const put_members[] = {"cron", "kind", "quiesce", "pattern", "offline", "keep", "min_free_pct",
                                          NULL};

/* The body of PUT .../schedules/{name} into *s (strings borrowed from the body); 400 on r and -1 when it is wrong.
 * The cron expression and the pattern are the engine's to check. */
static int schedule_parse(struct svc_req *r, struct engine_schedule *s)
{
    const char *kind = NULL, *cron = NULL, *pattern = NULL;
    bool any;
    int64_t pct;
    int k = ENGINE_SCHEDULE_INTERNAL;

    memset(s, 0, sizeof(*s));
    if (svc_body_only(r, NULL, put_members) < 0 || svc_body_string(r, "cron", &cron) < 0 ||
        svc_body_string(r, "kind", &kind) < 0 || svc_body_string(r, "pattern", &pattern) < 0 ||
        svc_body_bool(r, "quiesce", false, &s->quiesce) < 0 || svc_body_bool(r, "offline", false, &s->offline) < 0 ||
        svc_body_int(r, NULL, "min_free_pct", 0, 99, 0, &pct) < 0 || keep_parse(r, r->body, &s->keep, &any) < 0)
        return -1;
    /* the engine copies what it keeps: the body's strings are lent for the call */
    s->cron = (char *)cron;
    s->pattern = (char *)pattern;
    if (!s->cron) {
        svc_reply_error(r, 400, "invalid", "member 'cron' is required: 5 cron fields, or @hourly, @daily, @weekly, "
                                           "@monthly, @yearly");
        return -1;
    }
    if (kind && (k = engine_schedule_kind_from_name(kind)) < 0) {
        svc_reply_error(r, 400, "invalid", "member 'kind' must be internal, disk-only, live or memspec, not '%.64s'",
                        kind);
        return -1;
    }
    s->kind = (enum engine_schedule_kind)k;
    s->min_free_pct = (int)pct;
    return 0;
}

static int parse_put_schedule(struct svc_req *r)
{
    struct engine_schedule s;
    return schedule_parse(r, &s);
}

static void put_schedule(struct svc_req *r)
{
    struct engine *e = svc_engine(r);
    struct engine_schedule s;
    struct qs_error *err = NULL;
    int rc;

    if (!e || schedule_parse(r, &s) < 0)
        return;
    s.name = (char *)r->params[1];
    engine_session_write_begin(r->srv->session, r->params[0]);
    rc = engine_schedule_set(e, r->params[0], &s, &err);
    engine_session_write_end(r->srv->session, r->params[0]);
    if (rc < 0)
        svc_reply_engine_error(r, &err);
    else
        schedules_reply(r, r->params[0], r->params[1]);
}

static void delete_schedule(struct svc_req *r)
{
    struct engine *e = svc_engine(r);
    struct qs_error *err = NULL;
    int rc;

    if (!e)
        return;
    engine_session_write_begin(r->srv->session, r->params[0]);
    rc = engine_schedule_remove(e, r->params[0], r->params[1], &err);
    engine_session_write_end(r->srv->session, r->params[0]);
    if (rc < 0)
        svc_reply_engine_error(r, &err);
    else
        svc_reply(r, 200, json_object_new_object(), "action");
}

/* ---- runs: POST /api/vms/{vm}/schedules/run[?due=true][&schedule=NAME], POST /api/schedules/run?due=true ---- */

static int parse_run(struct svc_req *r)
{
    const char *name = svc_query(r, "schedule");
    struct qs_error *err = NULL;
    bool due, async;

    if (svc_query_bool(r, "due", false, &due) < 0 || svc_query_bool(r, "wait", false, &async) < 0 ||
        svc_body_bool(r, "async", true, &async) < 0)
        return -1;
    if (name && qs_name_check(name, "schedule", &err) < 0) {
        svc_reply_engine_error(r, &err);
        return -1;
    }
    return 0;
}

static int parse_run_all(struct svc_req *r)
{
    bool due = false;

    if (parse_run(r) < 0)
        return -1;
    svc_query_bool(r, "due", false, &due);
    if (svc_query(r, "schedule")) {
        svc_reply_error(r, 400, "invalid", "a schedule name needs its domain: POST /api/vms/{vm}/schedules/run");
        return -1;
    }
    /* as the CLI: every schedule of every domain at once is not something to ask by accident */
    if (!due) {
        svc_reply_error(r, 400, "invalid", "every domain's schedules run only when due (?due=true); to run them now, "
                                           "name the domain: POST /api/vms/{vm}/schedules/run");
        return -1;
    }
    return 0;
}

static json_object *run_args(struct svc_req *r)
{
    json_object *args = json_object_new_object();
    bool due = false;

    svc_query_bool(r, "due", false, &due);
    json_object_object_add(args, "due", json_object_new_boolean(due));
    json_object_object_add(args, "schedule", str_or_null(svc_query(r, "schedule")));
    return args;
}

static void post_run(struct svc_req *r)
{
    svc_reply_task(r, svc_task_submit_as(r->srv, r->requester, "schedule-run", r->params[0], NULL, run_args(r),
                                         svc_schedule_run_task));
}

static void post_run_all(struct svc_req *r)
{
    svc_reply_task(r, svc_task_submit_as(r->srv, r->requester, "schedule-run", NULL, NULL, run_args(r),
                                         svc_schedule_run_task));
}

/* ---- prune: POST /api/vms/{vm}/prune[?dry_run=true] {schedule, manual, keep} ---- */

static const char *const prune_members[] = {"schedule", "manual", "keep", "async", NULL};

static int parse_prune(struct svc_req *r)
{
    struct engine_retention keep;
    struct qs_error *err = NULL;
    const char *schedule;
    bool b, manual, any;

    if (svc_query_bool(r, "dry_run", false, &b) < 0 || svc_query_bool(r, "wait", false, &b) < 0 ||
        svc_body_only(r, NULL, prune_members) < 0 || svc_body_string(r, "schedule", &schedule) < 0 ||
        svc_body_bool(r, "manual", false, &manual) < 0 || svc_body_bool(r, "async", true, &b) < 0 ||
        keep_parse(r, r->body, &keep, &any) < 0)
        return -1;
    if (schedule && qs_name_check(schedule, "schedule", &err) < 0) {
        svc_reply_engine_error(r, &err);
        return -1;
    }
    if (schedule && manual) {
        svc_reply_error(r, 400, "invalid", "'schedule' and 'manual' are mutually exclusive");
        return -1;
    }
    if (manual && !any) {
        svc_reply_error(r, 400, "invalid", "'manual' needs retention rules in 'keep'");
        return -1;
    }
    return 0;
}

static json_object *prune_json(const struct engine_prune_item *v, size_t n)
{
    json_object *a = json_object_new_array(), *doc = json_object_new_object();

    for (size_t i = 0; i < n; i++) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "snapshot", json_object_new_string(v[i].snapshot));
        json_object_object_add(o, "creation_time", json_object_new_int64(v[i].creation_time));
        json_object_object_add(o, "schedule", str_or_null(v[i].schedule));
        json_object_object_add(o, "location", str_or_null(v[i].location));
        json_object_object_add(o, "action", json_object_new_string(engine_prune_action_name(v[i].action)));
        json_object_object_add(o, "rule", str_or_null(v[i].rule));
        json_object_object_add(o, "reason", str_or_null(v[i].reason));
        json_object_object_add(o, "error", str_or_null(v[i].error));
        json_object_array_add(a, o);
    }
    json_object_object_add(doc, "item", a);
    return doc;
}

/* ARGS (the request body, or {}) to the engine's call: its items in *doc (also when a delete failed). */
static int prune_do(struct engine *e, const char *vm, json_object *args, bool dry, json_object **doc,
                    struct qs_error **err)
{
    struct engine_prune_item *v = NULL;
    struct engine_retention keep;
    json_object *o, *k;
    size_t n = 0;
    unsigned flags = dry ? ENGINE_PRUNE_DRY_RUN : 0;
    bool any = json_object_object_get_ex(args, "keep", &k) && k;
    int rc;

    memset(&keep, 0, sizeof(keep));
    if (any) {
        for (size_t i = 0; keep_slot(&keep, i); i++)
            if (json_object_object_get_ex(k, keep_members[i], &o) && o)
                *keep_slot(&keep, i) = json_object_get_int(o);
        if (json_object_object_get_ex(k, "max_age_s", &o) && o)
            keep.max_age_s = json_object_get_int64(o);
    }
    if (json_object_object_get_ex(args, "manual", &o) && json_object_get_boolean(o))
        flags |= ENGINE_PRUNE_MANUAL;
    rc = engine_snapshot_prune(e, vm, json_object_get_string(json_object_object_get(args, "schedule")),
                               any ? &keep : NULL, flags, &v, &n, err);
    *doc = rc == 0 || n > 0 ? prune_json(v, n) : NULL;
    engine_prune_list_free(v, n);
    return rc;
}

static int run_prune(struct svc_task *t, struct engine *e, struct qs_error **err)
{
    json_object *doc = NULL;
    int rc = prune_do(e, svc_task_vm(t), svc_task_args(t), false, &doc, err);

    json_object *a = doc ? json_object_object_get(doc, "item") : NULL;

    for (size_t i = 0; a && i < json_object_array_length(a); i++) {
        json_object *it = json_object_array_get_idx(a, i);
        const char *action = json_object_get_string(json_object_object_get(it, "action"));
        if (action && strcmp(action, "remove") == 0)
            svc_event_snapshot(svc_task_server(t), svc_task_vm(t),
                               json_object_get_string(json_object_object_get(it, "snapshot")), "deleted");
    }
    if (doc)
        svc_task_set_result(t, doc);
    return rc;
}

/* A dry run changes nothing: answered at once. A prune deletes (merging external snapshots): a task. */
static void post_prune(struct svc_req *r)
{
    struct engine *e;
    struct qs_error *err = NULL;
    json_object *doc = NULL;
    bool dry = false;

    svc_query_bool(r, "dry_run", false, &dry);
    if (!dry) {
        svc_reply_task(r, svc_task_submit_as(r->srv, r->requester, "prune", r->params[0], NULL,
                                             r->body ? json_object_get(r->body) : json_object_new_object(), run_prune));
        return;
    }
    if (!(e = svc_engine(r)))
        return;
    if (prune_do(e, r->params[0], r->body, true, &doc, &err) < 0) {
        json_object_put(doc);
        svc_reply_engine_error(r, &err);
        return;
    }
    svc_reply(r, 200, doc, "prune");
}

/* ---- protect: POST .../snapshots/{snap}/protect and /unprotect ---- */

/* Actions, as oVirt changes a snapshot's state (restore, preview): a protected snapshot is a state of it that
 * prune and delete obey, not a field a client edits with the rest. */
static void protect(struct svc_req *r, bool on)
{
    struct engine *e = svc_engine(r);
    struct qs_error *err = NULL;
    json_object *o;
    int rc;

    if (!e)
        return;
    engine_session_write_begin(r->srv->session, r->params[0]);
    rc = engine_snapshot_protect(e, r->params[0], r->params[1], on, &err);
    engine_session_write_end(r->srv->session, r->params[0]);
    if (rc < 0) {
        svc_reply_engine_error(r, &err);
        return;
    }
    o = json_object_new_object();
    json_object_object_add(o, "id", json_object_new_string(r->params[1]));
    json_object_object_add(o, "protected", json_object_new_boolean(on));
    svc_reply(r, 200, o, "snapshot");
    svc_event_snapshot(r->srv, r->params[0], r->params[1], on ? "protected" : "unprotected");
}

static int parse_no_body(struct svc_req *r)
{
    static const char *const none[] = {NULL};
    return svc_body_only(r, NULL, none);
}

static void post_protect(struct svc_req *r) { protect(r, true); }
static void post_unprotect(struct svc_req *r) { protect(r, false); }

const struct svc_route svc_routes_schedules[] = {
    {SVC_GET, "/api/schedules", NULL, get_all_schedules, 0},
    {SVC_POST, "/api/schedules/run", parse_run_all, post_run_all, 0},
    {SVC_GET, "/api/vms/{vm}/schedules", NULL, get_schedules, 0},
    {SVC_POST, "/api/vms/{vm}/schedules/run", parse_run, post_run, 0},
    {SVC_GET, "/api/vms/{vm}/schedules/{name}", NULL, get_schedule, 0},
    {SVC_PUT, "/api/vms/{vm}/schedules/{name}", parse_put_schedule, put_schedule, 0},
    {SVC_DELETE, "/api/vms/{vm}/schedules/{name}", NULL, delete_schedule, 0},
    {SVC_POST, "/api/vms/{vm}/prune", parse_prune, post_prune, 0},
    {SVC_POST, "/api/vms/{vm}/snapshots/{snap}/protect", parse_no_body, post_protect, 0},
    {SVC_POST, "/api/vms/{vm}/snapshots/{snap}/unprotect", parse_no_body, post_unprotect, 0},
    {.pattern = NULL},
};
