/* routes_clone.c: from a snapshot to a volume or a new VM - POST /api/vms/{vm}/snapshots/{snap}/export and
 * .../clone, both tasks. */
#include "svc.h"

#include "qs_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- export {disk, to, format, compress} ---- */

static const char *const export_members[] = {"disk", "to", "format", "compress", "async", NULL};

/*
 * TO is a file qsnapd (root) creates with bytes the guest wrote. Over the UNIX socket (the qsnap group, as for save
 * files and memory files) it may be any absolute path, checked by the engine as in direct mode. Over TCP a
 * read-write token may only name a new file directly inside --export-dir: anywhere else a remote client could
 * plant guest-chosen bytes where the host runs them (/etc/cron.d).
 */
static int check_to(struct svc_req *r, const char *to)
{
    const char *dir = r->srv->export_dir, *base = strrchr(to, '/');
    struct qs_error *err = NULL;

    if (r->auth == SVC_AUTH_LOCAL)
        return 0;
    if (!dir) {
        svc_reply_error(r, 403, "forbidden", "exports over TCP go only to qsnapd's --export-dir, and it has none: "
                                             "export over the local UNIX socket");
        return -1;
    }
    if (!base || (size_t)(base - to) != strlen(dir) || strncmp(to, dir, strlen(dir)) != 0) {
        svc_reply_error(r, 403, "forbidden", "exports over TCP go only to a file directly inside '%s', not '%.256s'",
                        dir, to);
        return -1;
    }
    if (qs_name_check(base + 1, "export file", &err) < 0) {
        svc_reply_engine_error(r, &err);
        return -1;
    }
    return 0;
}

static int parse_export(struct svc_req *r)
{
    const char *disk, *to, *format;
    bool b;

    if (svc_body_only(r, NULL, export_members) < 0 || svc_body_string(r, "disk", &disk) < 0 ||
        svc_body_string(r, "to", &to) < 0 || svc_body_string(r, "format", &format) < 0 ||
        svc_body_bool(r, "compress", false, &b) < 0 || svc_body_bool(r, "async", true, &b) < 0)
        return -1;
    if (!disk || !to) {
        svc_reply_error(r, 400, "invalid", "members 'disk' (its target, \"vda\") and 'to' (a new file on the server) "
                                           "are required");
        return -1;
    }
    return check_to(r, to);
}

static int run_export(struct svc_task *t, struct engine *e, struct qs_error **err)
{
    json_object *args = svc_task_args(t), *v, *res;
    const char *disk = json_object_get_string(json_object_object_get(args, "disk"));
    const char *to = json_object_get_string(json_object_object_get(args, "to"));
    const char *format = json_object_get_string(json_object_object_get(args, "format"));
    bool compress = json_object_object_get_ex(args, "compress", &v) && json_object_get_boolean(v);
    struct engine_export_result out = {0};

    if (engine_snapshot_export(e, svc_task_vm(t), svc_task_snapshot(t), disk, to, format,
                               compress ? ENGINE_EXPORT_COMPRESS : 0, &out, err) < 0)
        return -1;
    res = json_object_new_object();
    json_object_object_add(res, "disk", json_object_new_string(disk));
    json_object_object_add(res, "file", json_object_new_string(to));
    json_object_object_add(res, "format", json_object_new_string(format ? format : "qcow2"));
    json_object_object_add(res, "compressed", json_object_new_boolean(compress));
    json_object_object_add(res, "size", json_object_new_int64((int64_t)out.size));
    json_object_object_add(res, "virtual_size", json_object_new_int64((int64_t)out.virtual_size));
    svc_task_set_result(t, res);
    return 0;
}

static void post_export(struct svc_req *r)
{
    svc_reply_task(r, svc_task_submit_as(r->srv, r->requester, "export", r->params[0], r->params[1],
                                         json_object_get(r->body), run_export));
}

/* ---- clone {name, full, start, with_memory} ---- */

static const char *const clone_members[] = {"name", "full", "linked", "start", "with_memory", "async", NULL};

static int parse_clone(struct svc_req *r)
{
    struct qs_error *err = NULL;
    const char *name;
    bool full, linked, b;

    if (svc_body_only(r, NULL, clone_members) < 0 || svc_body_string(r, "name", &name) < 0 ||
        svc_body_bool(r, "full", false, &full) < 0 || svc_body_bool(r, "linked", false, &linked) < 0 ||
        svc_body_bool(r, "start", false, &b) < 0 || svc_body_bool(r, "with_memory", false, &b) < 0 ||
        svc_body_bool(r, "async", true, &b) < 0)
        return -1;
    if (!name) {
        svc_reply_error(r, 400, "invalid", "member 'name' (the new domain's) is required");
        return -1;
    }
    if (full && linked) {
        svc_reply_error(r, 400, "invalid", "'full' and 'linked' are mutually exclusive");
        return -1;
    }
    /* the engine's own check, before anything is queued */
    if (qs_name_check(name, "domain", &err) < 0) {
        svc_reply_engine_error(r, &err);
        return -1;
    }
    return 0;
}

static int run_clone(struct svc_task *t, struct engine *e, struct qs_error **err)
{
    static const struct {
        const char *member;
        unsigned flag;
    } flags_of[] = {
        {"full", ENGINE_CLONE_FULL}, {"start", ENGINE_CLONE_START}, {"with_memory", ENGINE_CLONE_WITH_MEMORY}};
    json_object *args = svc_task_args(t), *v, *res;
    const char *name = json_object_get_string(json_object_object_get(args, "name"));
    unsigned flags = 0;
    char href[512];

    for (size_t i = 0; i < sizeof(flags_of) / sizeof(flags_of[0]); i++)
        if (json_object_object_get_ex(args, flags_of[i].member, &v) && json_object_get_boolean(v))
            flags |= flags_of[i].flag;
    if (engine_domain_clone(e, svc_task_vm(t), svc_task_snapshot(t), name, flags, err) < 0)
        return -1;
    res = json_object_new_object();
    snprintf(href, sizeof(href), "/api/vms/%s", name);
    json_object_object_add(res, "vm", json_object_new_string(name));
    json_object_object_add(res, "href", json_object_new_string(href));
    svc_task_set_result(t, res);
    return 0;
}

/* Serialised on the source domain, whose snapshot it reads (the engine locks the new one itself). */
static void post_clone(struct svc_req *r)
{
    svc_reply_task(r, svc_task_submit_as(r->srv, r->requester, "clone", r->params[0], r->params[1],
                                         json_object_get(r->body), run_clone));
}

const struct svc_route svc_routes_clone[] = {
    {SVC_POST, "/api/vms/{vm}/snapshots/{snap}/export", parse_export, post_export, 0},
    {SVC_POST, "/api/vms/{vm}/snapshots/{snap}/clone", parse_clone, post_clone, 0},
    {.pattern = NULL},
};
