/* routes_vms.c: /api/vms - the domains, their definitions, state, start/destroy, save/restore, check. */
#include "svc.h"

#include "qs_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The last state each domain was seen in: shown while a writer holds its QEMU's monitor (QEMU serves one
 * client: asking would wait for the operation). */
static pthread_mutex_t seen_mu = PTHREAD_MUTEX_INITIALIZER;
static json_object *seen; /* name -> [state, pid] */

static void seen_put(const char *name, const char *state, int pid)
{
    json_object *v = json_object_new_array();

    json_object_array_add(v, json_object_new_string(state));
    json_object_array_add(v, json_object_new_int(pid));
    pthread_mutex_lock(&seen_mu);
    if (!seen)
        seen = json_object_new_object();
    json_object_object_add(seen, name, v);
    pthread_mutex_unlock(&seen_mu);
}

static bool seen_get(const char *name, char *state, size_t len, int *pid)
{
    json_object *v;
    bool ok = false;

    pthread_mutex_lock(&seen_mu);
    if (seen && json_object_object_get_ex(seen, name, &v)) {
        snprintf(state, len, "%s", json_object_get_string(json_object_array_get_idx(v, 0)));
        *pid = json_object_get_int(json_object_array_get_idx(v, 1));
        ok = true;
    }
    pthread_mutex_unlock(&seen_mu);
    return ok;
}

/* The state words of the API: virsh's, with '_' for blanks ("shut off" -> "shut_off"). */
static json_object *state_json(const char *virsh)
{
    char buf[32];
    size_t i;

    for (i = 0; virsh[i] && i + 1 < sizeof(buf); i++)
        buf[i] = virsh[i] == ' ' ? '_' : virsh[i];
    buf[i] = '\0';
    return json_object_new_string(buf);
}

/* A domain as GET /api/vms/{vm} shows it; NULL with the engine's error. */
static json_object *vm_json(struct svc_req *r, struct engine *e, const char *name, struct qs_error **err)
{
    json_object *o = json_object_new_object(), *disks = json_object_new_array(), *pv = json_object_new_object();
    enum engine_domain_state st = ENGINE_DOMAIN_NOSTATE;
    enum engine_preview_state ps;
    struct engine_disk *d = NULL;
    char *cur = NULL, *target = NULL, *op = NULL, **snaps = NULL, href[512], state[32];
    size_t nd = 0, count = 0, ns = 0;
    long ppid = 0;
    int64_t started = 0;
    int pid = -1, pend;
    bool locked = engine_session_writing(r->srv->session, name);

    if (engine_domain_get_disks(e, name, &d, &nd, err) < 0)
        goto fail;
    if (locked && seen_get(name, state, sizeof(state), &pid)) {
        /* the operation holds the monitor: the state from before it */
    } else {
        if (engine_domain_get_state(e, name, &st, &pid, err) < 0)
            goto fail;
        snprintf(state, sizeof(state), "%s", engine_domain_state_name(st));
        seen_put(name, state, pid);
    }
    if (engine_session_snapshot_count(r->srv->session, e, name, &count, err) < 0 ||
        engine_snapshot_current_name(e, name, &cur, err) < 0 ||
        engine_snapshot_preview_get(e, name, &ps, &target, err) < 0 ||
        (pend = engine_domain_pending(e, name, &op, &snaps, &ns, &ppid, &started, err)) < 0)
        goto fail;
    snprintf(href, sizeof(href), "/api/vms/%s", name);
    json_object_object_add(o, "id", json_object_new_string(name));
    json_object_object_add(o, "href", json_object_new_string(href));
    json_object_object_add(o, "name", json_object_new_string(name));
    json_object_object_add(o, "state", state_json(state));
    json_object_object_add(o, "pid", pid > 0 ? json_object_new_int(pid) : NULL);
    for (size_t i = 0; i < nd; i++) {
        json_object *x = json_object_new_object();
        json_object_object_add(x, "id", json_object_new_string(d[i].target));
        json_object_object_add(x, "target", json_object_new_string(d[i].target));
        json_object_object_add(x, "source", d[i].source ? json_object_new_string(d[i].source) : NULL);
        json_object_object_add(x, "format", d[i].format ? json_object_new_string(d[i].format) : NULL);
        json_object_array_add(disks, x);
    }
    json_object_object_add(o, "disks", disks);
    disks = NULL;
    json_object_object_add(o, "snapshot_count", json_object_new_int64((int64_t)count));
    json_object_object_add(o, "current_snapshot", cur ? json_object_new_string(cur) : NULL);
    json_object_object_add(pv, "state", json_object_new_string(ps == ENGINE_PREVIEW_ACTIVE ? "active"
                                                              : ps == ENGINE_PREVIEW_INTERRUPTED ? "interrupted"
                                                                                                 : "none"));
    json_object_object_add(pv, "snapshot", target ? json_object_new_string(target) : NULL);
    json_object_object_add(o, "preview", pv);
    pv = NULL;
    if (pend > 0) {
        json_object *p = json_object_new_object(), *a = json_object_new_array();
        for (size_t i = 0; i < ns; i++)
            json_object_array_add(a, json_object_new_string(snaps[i]));
        json_object_object_add(p, "op", json_object_new_string(op));
        json_object_object_add(p, "snapshots", a);
        json_object_object_add(p, "pid", json_object_new_int64(ppid));
        json_object_object_add(p, "started", json_object_new_int64(started));
        json_object_object_add(o, "pending", p);
    } else {
        json_object_object_add(o, "pending", NULL);
    }
    json_object_object_add(o, "locked", json_object_new_boolean(locked || pend > 0));
    goto out;
fail:
    json_object_put(o);
    o = NULL;
out:
    json_object_put(disks);
    json_object_put(pv);
    engine_disks_free(d, nd);
    engine_strv_free(snaps, ns);
    free(op);
    free(cur);
    free(target);
    return o;
}

static void get_vms(struct svc_req *r)
{
    struct engine *e = svc_engine(r);
    struct qs_error *err = NULL;
    json_object *a, *doc;
    char **names = NULL;
    size_t n = 0;
    bool brief = false;

    if (!e || svc_query_bool(r, "brief", false, &brief) < 0)
        return;
    if (engine_domain_list(e, &names, &n, &err) < 0) {
        svc_reply_engine_error(r, &err);
        return;
    }
    a = json_object_new_array();
    for (size_t i = 0; i < n; i++) {
        json_object *v = brief ? NULL : vm_json(r, e, names[i], &err);
        if (!v) {
            /* undefined in between, or its QEMU busy with another process: listed by name alone */
            qs_error_clear(&err);
            v = json_object_new_object();
            json_object_object_add(v, "id", json_object_new_string(names[i]));
            json_object_object_add(v, "name", json_object_new_string(names[i]));
        }
        json_object_array_add(a, v);
    }
    engine_strv_free(names, n);
    doc = json_object_new_object();
    json_object_object_add(doc, "vm", a);
    svc_reply(r, 200, doc, "vms");
}

static void get_vm(struct svc_req *r)
{
    struct engine *e = svc_engine(r);
    struct qs_error *err = NULL;
    json_object *v;
    bool brief = false;

    if (!e || svc_query_bool(r, "brief", false, &brief) < 0)
        return;
    if (brief) {
        /* whether it is defined, without asking its QEMU anything */
        if (engine_domain_lookup(e, r->params[0], &err) < 0) {
            svc_reply_engine_error(r, &err);
            return;
        }
        v = json_object_new_object();
        json_object_object_add(v, "id", json_object_new_string(r->params[0]));
        json_object_object_add(v, "name", json_object_new_string(r->params[0]));
        svc_reply(r, 200, v, "vm");
        return;
    }
    if (!(v = vm_json(r, e, r->params[0], &err)))
        svc_reply_engine_error(r, &err);
    else
        svc_reply(r, 200, v, "vm");
}

/* POST /api/vms: attach a running QEMU ({name, qmp_socket}) or define from XML ({xml[, qmp_socket]}). */
static int parse_add(struct svc_req *r)
{
    const char *name, *sock, *xml;
    bool update;

    if (svc_body_string(r, "name", &name) < 0 || svc_body_string(r, "qmp_socket", &sock) < 0 ||
        svc_body_string(r, "xml", &xml) < 0 || svc_body_bool(r, "update", false, &update) < 0)
        return -1;
    if (update && (xml || !name)) {
        svc_reply_error(r, 400, "invalid", "'update' records a defined domain's QEMU again: give 'name' (and "
                                           "'qmp_socket' when it changed), no 'xml'");
        return -1;
    }
    if (!xml && !update && (!name || !sock)) {
        svc_reply_error(r, 400, "invalid", "give 'name' and 'qmp_socket' (attach), or 'xml' (define)");
        return -1;
    }
    if (xml && name) {
        svc_reply_error(r, 400, "invalid", "'name' comes from the XML when defining");
        return -1;
    }
    if (sock && sock[0] != '/') {
        svc_reply_error(r, 400, "invalid", "'qmp_socket' must be an absolute path");
        return -1;
    }
    return svc_require_local(r, "a QMP socket or a domain definition");
}

static void post_vms(struct svc_req *r)
{
    struct engine *e = svc_engine(r);
    struct qs_error *err = NULL;
    const char *name = NULL, *sock = NULL, *xml = NULL;
    char *defined = NULL, href[512];
    json_object *o;
    bool update = false;
    int rc;

    if (!e)
        return;
    svc_body_string(r, "name", &name);
    svc_body_string(r, "qmp_socket", &sock);
    svc_body_string(r, "xml", &xml);
    svc_body_bool(r, "update", false, &update);
    rc = xml ? engine_domain_define(e, xml, sock, &defined, &err)
             : engine_domain_attach_flags(e, name, sock, update ? ENGINE_ATTACH_UPDATE : 0, &err);
    if (rc < 0) {
        svc_reply_engine_error(r, &err);
        return;
    }
    o = json_object_new_object();
    json_object_object_add(o, "name", json_object_new_string(defined ? defined : name));
    snprintf(href, sizeof(href), "/api/vms/%s", defined ? defined : name);
    r->location = qs_xstrdup(href);
    free(defined);
    svc_reply(r, 201, o, "vm");
}

static int parse_delete_vm(struct svc_req *r)
{
    bool force;
    return svc_query_bool(r, "force", false, &force);
}

static void delete_vm(struct svc_req *r)
{
    struct engine *e = svc_engine(r);
    struct qs_error *err = NULL;
    bool force = false;

    if (!e)
        return;
    svc_query_bool(r, "force", false, &force);
    engine_session_write_begin(r->srv->session, r->params[0]);
    if (engine_domain_undefine(e, r->params[0], force, &err) < 0)
        svc_reply_engine_error(r, &err);
    else
        svc_reply(r, 200, json_object_new_object(), "action");
    engine_session_write_end(r->srv->session, r->params[0]);
}

static void get_pending(struct svc_req *r)
{
    struct engine *e = svc_engine(r);
    struct qs_error *err = NULL;
    json_object *o, *a;
    char *op = NULL, **snaps = NULL;
    size_t ns = 0;
    long pid = 0;
    int64_t started = 0;
    int pend;

    if (!e)
        return;
    if ((pend = engine_domain_pending(e, r->params[0], &op, &snaps, &ns, &pid, &started, &err)) < 0) {
        svc_reply_engine_error(r, &err);
        return;
    }
    o = json_object_new_object();
    a = json_object_new_array();
    for (size_t i = 0; i < ns; i++)
        json_object_array_add(a, json_object_new_string(snaps[i]));
    json_object_object_add(o, "op", op ? json_object_new_string(op) : NULL);
    json_object_object_add(o, "snapshots", a);
    json_object_object_add(o, "pid", pend > 0 ? json_object_new_int64(pid) : NULL);
    json_object_object_add(o, "started", pend > 0 ? json_object_new_int64(started) : NULL);
    engine_strv_free(snaps, ns);
    free(op);
    svc_reply(r, 200, o, "pending");
}

static void get_preview(struct svc_req *r)
{
    struct engine *e = svc_engine(r);
    struct qs_error *err = NULL;
    enum engine_preview_state ps;
    char *target = NULL;
    json_object *o;

    if (!e)
        return;
    if (engine_snapshot_preview_get(e, r->params[0], &ps, &target, &err) < 0) {
        svc_reply_engine_error(r, &err);
        return;
    }
    o = json_object_new_object();
    json_object_object_add(o, "state", json_object_new_string(ps == ENGINE_PREVIEW_ACTIVE        ? "active"
                                                             : ps == ENGINE_PREVIEW_INTERRUPTED ? "interrupted"
                                                                                                : "none"));
    json_object_object_add(o, "snapshot", target ? json_object_new_string(target) : NULL);
    free(target);
    svc_reply(r, 200, o, "preview");
}

static void get_definition(struct svc_req *r)
{
    struct engine *e = svc_engine(r);
    struct qs_error *err = NULL;
    json_object *o;
    char *xml = NULL;

    if (!e)
        return;
    if (engine_domain_get_xml(e, r->params[0], &xml, &err) < 0) {
        svc_reply_engine_error(r, &err);
        return;
    }
    o = json_object_new_object();
    json_object_object_add(o, "xml", json_object_new_string(xml));
    free(xml);
    svc_reply(r, 200, o, "definition");
}

/* ---- start, destroy, save, restore: tasks ---- */

static int run_start(struct svc_task *t, struct engine *e, struct qs_error **err)
{
    json_object *v;
    bool paused = json_object_object_get_ex(svc_task_args(t), "paused", &v) && json_object_get_boolean(v);
    return engine_domain_start(e, svc_task_vm(t), paused, err);
}

static int run_destroy(struct svc_task *t, struct engine *e, struct qs_error **err)
{
    return engine_domain_destroy(e, svc_task_vm(t), err);
}

static unsigned save_flags(json_object *args)
{
    json_object *v;
    unsigned f = 0;
    if (json_object_object_get_ex(args, "running", &v) && json_object_get_boolean(v))
        f |= ENGINE_SAVE_RUNNING;
    if (json_object_object_get_ex(args, "paused", &v) && json_object_get_boolean(v))
        f |= ENGINE_SAVE_PAUSED;
    return f;
}

static int run_save(struct svc_task *t, struct engine *e, struct qs_error **err)
{
    json_object *args = svc_task_args(t), *v = json_object_object_get(args, "path");
    return engine_domain_save(e, svc_task_vm(t), json_object_get_string(v), save_flags(args), err);
}

static int run_restore(struct svc_task *t, struct engine *e, struct qs_error **err)
{
    json_object *args = svc_task_args(t), *v = json_object_object_get(args, "path"), *res;
    char *name = NULL;

    if (engine_domain_restore(e, json_object_get_string(v), save_flags(args), &name, err) < 0)
        return -1;
    res = json_object_new_object();
    json_object_object_add(res, "vm", json_object_new_string(name));
    svc_task_set_result(t, res);
    free(name);
    return 0;
}

static int parse_state_flags(struct svc_req *r)
{
    bool a, b;
    if (svc_body_bool(r, "running", false, &a) < 0 || svc_body_bool(r, "paused", false, &b) < 0 ||
        svc_body_bool(r, "async", true, &a) < 0)
        return -1;
    return 0;
}

static int parse_path_task(struct svc_req *r)
{
    const char *path;

    if (parse_state_flags(r) < 0 || svc_body_string(r, "path", &path) < 0)
        return -1;
    if (!path || path[0] != '/') {
        svc_reply_error(r, 400, "invalid", "'path' must be an absolute path");
        return -1;
    }
    return svc_require_local(r, "a file path");
}

static void submit(struct svc_req *r, const char *kind, const char *vm, svc_task_fn fn)
{
    json_object *args = r->body ? json_object_get(r->body) : json_object_new_object();
    svc_reply_task(r, svc_task_submit_as(r->srv, r->requester, kind, vm, NULL, args, fn));
}

static void post_start(struct svc_req *r) { submit(r, "start", r->params[0], run_start); }
static void post_destroy(struct svc_req *r) { submit(r, "destroy", r->params[0], run_destroy); }
static void post_save(struct svc_req *r) { submit(r, "save", r->params[0], run_save); }
/* the domain is known only once the file's header is read: not serialised on a domain here (the engine's
 * lock still is) */
static void post_restore(struct svc_req *r) { submit(r, "restore", NULL, run_restore); }

/* ---- check ---- */

static void check(struct svc_req *r, bool repair)
{
    struct engine *e = svc_engine(r);
    struct qs_error *err = NULL;
    struct engine_check_report *rep = NULL;
    json_object *a, *doc;

    if (!e)
        return;
    if (repair)
        engine_session_write_begin(r->srv->session, r->params[0]);
    if (engine_snapshot_check(e, r->params[0], repair ? ENGINE_CHECK_REPAIR : 0, &rep, &err) < 0) {
        svc_reply_engine_error(r, &err);
        goto out;
    }
    a = json_object_new_array();
    for (size_t i = 0; i < engine_check_report_count(rep); i++) {
        const struct engine_check_item *it = engine_check_report_at(rep, i);
        json_object *o = json_object_new_object();
        const char *s;
        json_object_object_add(o, "kind", json_object_new_string(engine_check_item_kind(it)));
        s = engine_check_item_snapshot(it);
        json_object_object_add(o, "snapshot", s ? json_object_new_string(s) : NULL);
        s = engine_check_item_disk(it);
        json_object_object_add(o, "disk", s ? json_object_new_string(s) : NULL);
        json_object_object_add(o, "message", json_object_new_string(engine_check_item_message(it)));
        s = engine_check_item_fix(it);
        json_object_object_add(o, "fix", s ? json_object_new_string(s) : NULL);
        json_object_object_add(o, "repaired", json_object_new_boolean(engine_check_item_repaired(it)));
        json_object_object_add(o, "note", json_object_new_boolean(engine_check_item_is_note(it)));
        json_object_array_add(a, o);
    }
    doc = json_object_new_object();
    json_object_object_add(doc, "item", a);
    svc_reply(r, 200, doc, "check");
out:
    if (repair)
        engine_session_write_end(r->srv->session, r->params[0]);
    engine_check_report_free(rep);
}

static void get_check(struct svc_req *r) { check(r, false); }
static void post_check(struct svc_req *r) { check(r, true); }

const struct svc_route svc_routes_vms[] = {
    {SVC_GET, "/api/vms", NULL, get_vms, 0},
    {SVC_POST, "/api/vms", parse_add, post_vms, SVC_ROUTE_LOCAL_ONLY},
    {SVC_GET, "/api/vms/{vm}", NULL, get_vm, 0},
    {SVC_DELETE, "/api/vms/{vm}", parse_delete_vm, delete_vm, 0},
    {SVC_GET, "/api/vms/{vm}/definition", NULL, get_definition, 0},
    {SVC_GET, "/api/vms/{vm}/pending", NULL, get_pending, 0},
    {SVC_GET, "/api/vms/{vm}/preview", NULL, get_preview, 0},
    {SVC_POST, "/api/vms/{vm}/start", parse_state_flags, post_start, 0},
    {SVC_POST, "/api/vms/{vm}/destroy", parse_state_flags, post_destroy, 0},
    {SVC_POST, "/api/vms/{vm}/save", parse_path_task, post_save, SVC_ROUTE_LOCAL_ONLY},
    {SVC_POST, "/api/restore", parse_path_task, post_restore, SVC_ROUTE_LOCAL_ONLY},
    {SVC_GET, "/api/vms/{vm}/check", NULL, get_check, 0},
    {SVC_POST, "/api/vms/{vm}/check", NULL, post_check, 0},
    {.pattern = NULL},
};
