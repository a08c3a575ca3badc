/* routes_tasks.c: /api/tasks - what long operations report, and cancelling them. */
#include "svc.h"

#include <stdlib.h>
#include <string.h>

#define WAIT_MAX_MS 60000

static int parse_get_task(struct svc_req *r)
{
    const char *w = svc_query(r, "wait");
    char *end;
    long ms;

    if (!w)
        return 0;
    ms = strtol(w, &end, 10);
    if (*w == '\0' || *end || ms < 0 || ms > WAIT_MAX_MS) {
        svc_reply_error(r, 400, "invalid", "query argument 'wait' must be milliseconds from 0 to %d", WAIT_MAX_MS);
        return -1;
    }
    return 0;
}

static void get_tasks(struct svc_req *r)
{
    json_object *doc = json_object_new_object();

    json_object_object_add(doc, "task", svc_tasks_json(r->srv));
    svc_reply(r, 200, doc, "tasks");
}

static void get_task(struct svc_req *r)
{
    struct svc_task *t = svc_task_find(r->srv, r->params[0]);
    const char *w = svc_query(r, "wait");

    if (!t) {
        svc_reply_error(r, 404, "not-found", "no task '%s'", r->params[0]);
        return;
    }
    /* a long poll: answers as soon as the task ends, or after WAIT ms */
    if (w && atoi(w) > 0)
        svc_task_wait(t, atoi(w));
    svc_reply(r, 200, svc_task_json(t), "task");
    svc_task_unref(t);
}

static void delete_task(struct svc_req *r)
{
    struct svc_task *t = svc_task_find(r->srv, r->params[0]);

    if (!t) {
        svc_reply_error(r, 404, "not-found", "no task '%s'", r->params[0]);
        return;
    }
    if (svc_task_cancel(t) < 0)
        svc_reply_error(r, 409, "state", "task '%s' has finished", r->params[0]);
    else
        svc_reply(r, 202, svc_task_json(t), "task");
    svc_task_unref(t);
}

const struct svc_route svc_routes_tasks[] = {
    {SVC_GET, "/api/tasks", NULL, get_tasks, 0},
    {SVC_GET, "/api/tasks/{id}", parse_get_task, get_task, 0},
    {SVC_DELETE, "/api/tasks/{id}", NULL, delete_task, 0},
    {.pattern = NULL},
};
