/* routes_events.c: a domain's event log over the API - GET /api/events?vm=NAME[&since=MS] (without vm= the same
 * path is the server-sent-event stream of routes_meta.c). */
#include "svc.h"

#include "qs_util.h"

#include <stdlib.h>
#include <string.h>

static json_object *str_or_null(const char *s)
{
    return s ? json_object_new_string(s) : NULL;
}

int svc_events_parse(struct svc_req *r)
{
    const char *vm = svc_query(r, "vm");
    struct qs_error *err = NULL;
    int64_t since;

    if (!vm) {
        if (svc_query(r, "since")) {
            svc_reply_error(r, 400, "invalid", "'since' reads a domain's event log: give 'vm' too");
            return -1;
        }
        return 0;
    }
    if (qs_name_check(vm, "domain", &err) < 0) {
        svc_reply_engine_error(r, &err);
        return -1;
    }
    return svc_query_int(r, "since", 0, INT64_MAX / 2, 0, &since);
}

void svc_events_history(struct svc_req *r)
{
    struct engine *e = svc_engine(r);
    struct engine_event *v = NULL;
    struct qs_error *err = NULL;
    json_object *a, *doc;
    const char *vm = svc_query(r, "vm");
    int64_t since = 0;
    size_t n = 0;

    if (!e)
        return;
    svc_query_int(r, "since", 0, INT64_MAX / 2, 0, &since);
    if (engine_events_read(e, vm, since, &v, &n, &err) < 0) {
        svc_reply_engine_error(r, &err);
        return;
    }
    a = json_object_new_array();
    for (size_t i = 0; i < n; i++) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "vm", json_object_new_string(vm));
        json_object_object_add(o, "time_ms", json_object_new_int64(v[i].time_ms));
        json_object_object_add(o, "op", json_object_new_string(v[i].op));
        json_object_object_add(o, "snapshot", str_or_null(v[i].snapshot));
        json_object_object_add(o, "outcome", str_or_null(v[i].outcome));
        json_object_object_add(o, "duration_ms", json_object_new_int64(v[i].duration_ms));
        json_object_object_add(o, "error", str_or_null(v[i].error));
        json_object_object_add(o, "pause_us", v[i].pause_us >= 0 ? json_object_new_int64(v[i].pause_us) : NULL);
        json_object_object_add(o, "uid", json_object_new_int64(v[i].uid));
        json_object_object_add(o, "pid", json_object_new_int64(v[i].pid));
        json_object_object_add(o, "requester", str_or_null(v[i].requester));
        json_object_object_add(o, "schedule", str_or_null(v[i].schedule));
        json_object_object_add(o, "detail", str_or_null(v[i].detail));
        json_object_array_add(a, o);
    }
    engine_event_list_free(v, n);
    doc = json_object_new_object();
    json_object_object_add(doc, "event", a);
    svc_reply(r, 200, doc, "events");
}
