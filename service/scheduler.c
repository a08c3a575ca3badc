/* scheduler.c: qsnapd's schedule runner - a thread that finds the domains with a due schedule at start and every
 * minute and queues a schedule-run task for each, so that a scheduled snapshot waits for (and keeps out) the
 * domain's other writers like any operation of the API; and the schedule-run task itself. */
#include "svc.h"

#include "qs_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TICK_MS 60000
/* Second 30 of each minute: clear of the systemd timer (qsnap-schedule.timer fires at second 0), so that a host
 * running both meets a collision only over a snapshot that takes longer than that. */
#define TICK_OFFSET_MS 30000

int64_t svc_now_ms(const struct svc_server *srv)
{
    struct timespec ts;

    if (srv->clock)
        return srv->clock(NULL);
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the task ---- */

static json_object *runs_json(const struct engine_run *v, size_t n)
{
    json_object *a = json_object_new_array(), *doc = json_object_new_object();

    for (size_t i = 0; i < n; i++) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "vm", json_object_new_string(v[i].domain));
        json_object_object_add(o, "schedule", v[i].schedule ? json_object_new_string(v[i].schedule) : NULL);
        json_object_object_add(o, "outcome", json_object_new_string(v[i].outcome));
        json_object_object_add(o, "slot", json_object_new_int64(v[i].slot));
        json_object_object_add(o, "missed", json_object_new_int64(v[i].missed));
        json_object_object_add(o, "snapshot", v[i].snapshot ? json_object_new_string(v[i].snapshot) : NULL);
        json_object_object_add(o, "reason", v[i].reason ? json_object_new_string(v[i].reason) : NULL);
        json_object_object_add(o, "error", v[i].error ? json_object_new_string(v[i].error) : NULL);
        json_object_object_add(o, "pruned", json_object_new_int(v[i].pruned));
        json_object_array_add(a, o);
    }
    json_object_object_add(doc, "run", a);
    return doc;
}

/* Appends B's N runs to *V (taken over). */
static void runs_append(struct engine_run **v, size_t *n, struct engine_run *b, size_t nb)
{
    if (!nb) {
        free(b);
        return;
    }
    *v = qs_xrealloc(*v, (*n + nb) * sizeof(**v));
    memcpy(*v + *n, b, nb * sizeof(*b));
    *n += nb;
    free(b);
}

/* The runner's own tasks say what happened on qsnapd's stderr (the journal); a run asked through the API answers
 * its client instead. A busy run is another runner's (the systemd timer's, or a user's): the slot stays due and is
 * taken by the one that holds it. */
static void runs_log(const struct engine_run *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const struct engine_run *x = &v[i];
        if (x->snapshot)
            fprintf(stderr, "qsnapd: schedule %s/%s: took %s (%s)%s%s\n", x->domain, x->schedule, x->snapshot,
                    x->reason ? x->reason : "", x->error ? "; failed: " : "", x->error ? x->error : "");
        else
            fprintf(stderr, "qsnapd: schedule %s/%s: %s%s%s\n", x->domain, x->schedule ? x->schedule : "*", x->outcome,
                    x->error ? ": " : "", x->error ? x->error : "");
    }
}

int svc_schedule_run_task(struct svc_task *t, struct engine *e, struct qs_error **err)
{
    struct svc_server *srv = svc_task_server(t);
    json_object *args = svc_task_args(t), *v;
    const char *schedule = json_object_get_string(json_object_object_get(args, "schedule"));
    bool due = json_object_object_get_ex(args, "due", &v) && json_object_get_boolean(v);
    bool runner = json_object_object_get_ex(args, "runner", &v) && json_object_get_boolean(v);
    unsigned flags = due ? ENGINE_RUN_DUE : 0;
    struct engine_run *runs = NULL;
    size_t n = 0;
    int rc;

    if (svc_task_vm(t)) {
        /* the worker holds the domain's write turn already */
        rc = engine_schedule_run(e, svc_task_vm(t), schedule, flags, &runs, &n, err);
    } else {
        /* every domain with schedules, one at a time, each in its write turn; verdict as the engine gives it for
         * all of them at once */
        struct engine_schedule *s = NULL;
        size_t ns = 0;
        rc = engine_schedule_list(e, NULL, &s, &ns, err);
        for (size_t i = 0; rc == 0 && i < ns; i++) {
            struct engine_run *one = NULL;
            struct qs_error *local = NULL;
            size_t k = 0;
            if (i > 0 && strcmp(s[i].domain, s[i - 1].domain) == 0)
                continue;
            engine_session_write_begin(srv->session, s[i].domain);
            if (engine_schedule_run(e, s[i].domain, NULL, flags, &one, &k, &local) < 0 &&
                engine_run_list_check(one, k, NULL) == 0) {
                /* not a run's failure: the pass stops there, as the engine's does */
                qs_error_propagate(err, &local);
                rc = -1;
            }
            qs_error_free(local);
            engine_session_write_end(srv->session, s[i].domain);
            runs_append(&runs, &n, one, k);
        }
        engine_schedule_list_free(s, ns);
        if (rc == 0)
            rc = engine_run_list_check(runs, n, err);
    }
    svc_metrics_runs(srv, runs, n);
    for (size_t i = 0; i < n; i++)
        if (runs[i].snapshot)
            svc_event_snapshot(srv, runs[i].domain, runs[i].snapshot, "created");
    if (runner)
        runs_log(runs, n);
    /* kept also on failure: the runs that went well, and why the others did not */
    svc_task_set_result(t, runs_json(runs, n));
    engine_run_list_free(runs, n);
    return rc;
}

/* ---- the runner thread ---- */

struct inflight {
    struct svc_task *t;
    char *vm;
};

/* A domain whose last pass found another run under way: left alone for a while, so that a long snapshot of
 * another runner (the systemd timer's) is not met by a refusal every minute. The slot stays due meanwhile. */
struct backoff {
    char *vm;
    int64_t until_ms;
};
#define BUSY_BACKOFF_MS (5 * 60000)

/* Whether task T's runs include one refused as busy. */
static bool task_was_busy(struct svc_task *t)
{
    json_object *o = svc_task_json(t), *a = json_object_object_get(json_object_object_get(o, "result"), "run");
    bool busy = false;

    for (size_t i = 0; a && i < json_object_array_length(a) && !busy; i++)
        busy = strcmp(json_object_get_string(json_object_object_get(json_object_array_get_idx(a, i), "outcome")),
                      "busy") == 0;
    json_object_put(o);
    return busy;
}

/* Queues a due pass of each domain that has a due schedule and no pass of the runner still queued or running. */
static void tick(struct svc_server *srv, struct inflight **fl, size_t *nfl, struct backoff **bo, size_t *nbo)
{
    struct qs_error *err = NULL;
    struct engine_schedule *s = NULL;
    struct engine *e;
    size_t ns = 0, k = 0;
    int64_t now_ms = svc_now_ms(srv), now = now_ms / 1000;

    for (size_t i = 0; i < *nfl; i++) {
        if (svc_task_wait((*fl)[i].t, 0)) {
            if (task_was_busy((*fl)[i].t)) {
                *bo = qs_xrealloc(*bo, (*nbo + 1) * sizeof(**bo));
                (*bo)[(*nbo)++] = (struct backoff){(*fl)[i].vm, now_ms + BUSY_BACKOFF_MS};
            } else {
                free((*fl)[i].vm);
            }
            svc_task_unref((*fl)[i].t);
        } else {
            (*fl)[k++] = (*fl)[i];
        }
    }
    *nfl = k;
    for (size_t i = k = 0; i < *nbo; i++) {
        if ((*bo)[i].until_ms > now_ms)
            (*bo)[k++] = (*bo)[i];
        else
            free((*bo)[i].vm);
    }
    *nbo = k;
    if (!(e = engine_session_get(srv->session, NULL, NULL, NULL, &err)) ||
        engine_schedule_list(e, NULL, &s, &ns, &err) < 0) {
        fprintf(stderr, "qsnapd: the schedule runner cannot read the schedules: %s\n", err->message);
        qs_error_free(err);
        engine_session_put(srv->session, e);
        return;
    }
    engine_session_put(srv->session, e);
    for (size_t i = 0; i < ns; i++) {
        json_object *args;
        bool busy = false;
        /* next_slot is the first slot after the last run (or the schedule's creation): due once it has come */
        if (s[i].next_slot < 0 || s[i].next_slot > now)
            continue;
        for (size_t j = 0; j < *nfl && !busy; j++)
            busy = strcmp((*fl)[j].vm, s[i].domain) == 0;
        for (size_t j = 0; j < *nbo && !busy; j++)
            busy = strcmp((*bo)[j].vm, s[i].domain) == 0;
        if (busy)
            continue;
        args = json_object_new_object();
        json_object_object_add(args, "due", json_object_new_boolean(true));
        json_object_object_add(args, "runner", json_object_new_boolean(true));
        *fl = qs_xrealloc(*fl, (*nfl + 1) * sizeof(**fl));
        (*fl)[*nfl].vm = qs_xstrdup(s[i].domain);
        (*fl)[*nfl].t = svc_task_submit(srv, "schedule-run", s[i].domain, NULL, args, svc_schedule_run_task);
        (*nfl)++;
    }
    engine_schedule_list_free(s, ns);
}

static void *runner_main(void *opaque)
{
    struct svc_server *srv = opaque;
    struct inflight *fl = NULL;
    struct backoff *bo = NULL;
    size_t nfl = 0, nbo = 0;
    bool first = true;

    pthread_mutex_lock(&srv->run_mu);
    while (!srv->runner_stop) {
        int64_t now, wait_ms;
        struct timespec until;
        pthread_mutex_unlock(&srv->run_mu);
        tick(srv, &fl, &nfl, &bo, &nbo);
        if (first)
            fprintf(stderr, "qsnapd: the schedule runner made its pass at start; next at second 30 of each minute\n");
        first = false;
        /* the next tick at second 30 of a minute of the engines' clock (a test's clock too) */
        now = svc_now_ms(srv);
        wait_ms = (now / TICK_MS) * TICK_MS + TICK_OFFSET_MS - now;
        if (wait_ms <= 0)
            wait_ms += TICK_MS;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += wait_ms / 1000;
        until.tv_nsec += (wait_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L)
            until.tv_sec++, until.tv_nsec -= 1000000000L;
        pthread_mutex_lock(&srv->run_mu);
        while (!srv->runner_stop && pthread_cond_timedwait(&srv->run_cv, &srv->run_mu, &until) == 0)
            ;
    }
    pthread_mutex_unlock(&srv->run_mu);
    for (size_t i = 0; i < nfl; i++) {
        svc_task_unref(fl[i].t);
        free(fl[i].vm);
    }
    free(fl);
    for (size_t i = 0; i < nbo; i++)
        free(bo[i].vm);
    free(bo);
    return NULL;
}

int svc_scheduler_start(struct svc_server *srv)
{
    pthread_condattr_t ca;

    pthread_mutex_init(&srv->run_mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&srv->run_cv, &ca);
    pthread_condattr_destroy(&ca);
    srv->runner_stop = false;
    if (pthread_create(&srv->runner, NULL, runner_main, srv) != 0)
        return -1;
    srv->runner_started = true;
    return 0;
}

void svc_scheduler_stop(struct svc_server *srv)
{
    if (!srv->runner_started)
        return;
    pthread_mutex_lock(&srv->run_mu);
    srv->runner_stop = true;
    pthread_cond_broadcast(&srv->run_cv);
    pthread_mutex_unlock(&srv->run_mu);
    pthread_join(srv->runner, NULL);
    srv->runner_started = false;
    pthread_mutex_destroy(&srv->run_mu);
    pthread_cond_destroy(&srv->run_cv);
}
