/* routes_qemu.c: GET /api/vms/{vm}/qemu - which QEMU a domain runs on and what of it qsnap uses. */
#include "svc.h"

static void get_qemu(struct svc_req *r)
{
    struct engine *e = svc_engine(r);
    struct engine_qemu_info info;
    struct qs_error *err = NULL;
    json_object *o, *a;

    if (!e)
        return;
    if (engine_domain_qemu_info(e, r->params[0], &info, &err) < 0) {
        engine_qemu_info_release(&info);
        svc_reply_engine_error(r, &err);
        return;
    }
    o = json_object_new_object();
    a = json_object_new_array();
    json_object_object_add(o, "version", json_object_new_string(info.version ? info.version : ""));
    json_object_object_add(o, "package", json_object_new_string(info.package ? info.package : ""));
    for (char **f = info.features; f && *f; f++)
        json_object_array_add(a, json_object_new_string(*f));
    json_object_object_add(o, "features", a);
    engine_qemu_info_release(&info);
    svc_reply(r, 200, o, "qemu");
}

const struct svc_route svc_routes_qemu[] = {
    {SVC_GET, "/api/vms/{vm}/qemu", NULL, get_qemu, 0},
    {.pattern = NULL},
};
