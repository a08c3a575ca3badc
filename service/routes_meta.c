/* routes_meta.c: the API's entry point, its OpenAPI description, /metrics and the event stream. */
#include "svc.h"

#include "qs_util.h"

#include <stdlib.h>
#include <string.h>

/* service/openapi.json, embedded at build time (openapi_json.c). */
extern const char svc_openapi_json[];

static void get_api(struct svc_req *r)
{
    json_object *o = json_object_new_object(), *links = json_object_new_object();

    json_object_object_add(o, "product", json_object_new_string("qsnapd"));
    json_object_object_add(o, "version", json_object_new_string(engine_version()));
    json_object_object_add(links, "vms", json_object_new_string("/api/vms"));
    json_object_object_add(links, "tasks", json_object_new_string("/api/tasks"));
    json_object_object_add(links, "events", json_object_new_string("/api/events"));
    json_object_object_add(links, "openapi", json_object_new_string("/api/openapi.json"));
    json_object_object_add(links, "metrics", json_object_new_string("/metrics"));
    json_object_object_add(o, "links", links);
    svc_reply(r, 200, o, "api");
}

static void get_openapi(struct svc_req *r)
{
    r->status = 200;
    r->raw = qs_xstrdup(svc_openapi_json);
    r->raw_type = "application/json";
}

static void get_metrics(struct svc_req *r)
{
    r->status = 200;
    r->raw = svc_metrics_text(r->srv);
    r->raw_type = "text/plain; version=0.0.4";
}

static void get_events(struct svc_req *r)
{
    if (svc_query(r, "vm")) {
        svc_events_history(r);
        return;
    }
    r->status = 200;
    r->stream = true;
}

const struct svc_route svc_routes_meta[] = {
    {SVC_GET, "/api", NULL, get_api, 0},
    {SVC_GET, "/api/openapi.json", NULL, get_openapi, 0},
    {SVC_GET, "/metrics", NULL, get_metrics, 0},
    {SVC_GET, "/api/events", svc_events_parse, get_events, 0},
    {.pattern = NULL},
};
