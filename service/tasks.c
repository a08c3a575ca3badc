/* tasks.c: operations as tasks - a queue, worker threads, one writer per domain, progress, cancel. */
#include "svc.h"

#include "qs_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define TASKS_KEPT 1000 /* finished tasks remembered for GET /api/tasks/{id} */

enum task_state { TASK_QUEUED, TASK_RUNNING, TASK_SUCCEEDED, TASK_FAILED, TASK_STATE__LAST };
static const char *const task_state_names[] = {"queued", "running", "succeeded", "failed"};
_Static_assert(sizeof(task_state_names) / sizeof(task_state_names[0]) == TASK_STATE__LAST, "task states");

struct svc_task {
    struct svc_server *srv;
    char id[40];
    char *kind, *vm, *snapshot;
    char *requester; /* the token's name, for the event log; NULL: none */
    json_object *args, *result;
    svc_task_fn fn;
    enum task_state state;
    char *phase;
    uint64_t done, total;
    int err_code;
    char *err_message;
    bool cancel;
    unsigned refs; /* the table's, and one per holder */
    double created, started, finished; /* wall clock seconds */
    struct svc_task *next;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void task_free(struct svc_task *t)
{
    free(t->kind);
    free(t->vm);
    free(t->snapshot);
    free(t->requester);
    free(t->phase);
    free(t->err_message);
    json_object_put(t->args);
    json_object_put(t->result);
    free(t);
}

void svc_task_unref(struct svc_task *t)
{
    struct svc_server *srv;
    bool last;

    if (!t)
        return;
    srv = t->srv;
    pthread_mutex_lock(&srv->mu);
    last = --t->refs == 0;
    pthread_mutex_unlock(&srv->mu);
    if (last)
        task_free(t);
}

const char *svc_task_id(const struct svc_task *t) { return t->id; }
struct svc_server *svc_task_server(const struct svc_task *t) { return t->srv; }
json_object *svc_task_args(struct svc_task *t) { return t->args; }
const char *svc_task_vm(const struct svc_task *t) { return t->vm; }
const char *svc_task_snapshot(const struct svc_task *t) { return t->snapshot; }

void svc_task_set_result(struct svc_task *t, json_object *result)
{
    pthread_mutex_lock(&t->srv->mu);
    json_object_put(t->result);
    t->result = result;
    pthread_mutex_unlock(&t->srv->mu);
}

/* Under srv->mu. */
static json_object *task_json_locked(const struct svc_task *t)
{
    json_object *o = json_object_new_object(), *p = json_object_new_object();
    char href[64];

    snprintf(href, sizeof(href), "/api/tasks/%s", t->id);
    json_object_object_add(o, "id", json_object_new_string(t->id));
    json_object_object_add(o, "href", json_object_new_string(href));
    json_object_object_add(o, "kind", json_object_new_string(t->kind));
    json_object_object_add(o, "vm", t->vm ? json_object_new_string(t->vm) : NULL);
    json_object_object_add(o, "snapshot", t->snapshot ? json_object_new_string(t->snapshot) : NULL);
    json_object_object_add(o, "state", json_object_new_string(task_state_names[t->state]));
    json_object_object_add(p, "phase", t->phase ? json_object_new_string(t->phase) : NULL);
    json_object_object_add(p, "done", json_object_new_int64((int64_t)t->done));
    json_object_object_add(p, "total", json_object_new_int64((int64_t)t->total));
    json_object_object_add(o, "progress", p);
    if (t->state == TASK_FAILED) {
        json_object *e = json_object_new_object();
        json_object_object_add(e, "code", json_object_new_string(qs_error_code_name(t->err_code)));
        json_object_object_add(e, "message", json_object_new_string(t->err_message ? t->err_message : ""));
        json_object_object_add(o, "error", e);
    } else {
        json_object_object_add(o, "error", NULL);
    }
    json_object_object_add(o, "result", t->result ? json_object_get(t->result) : NULL);
    json_object_object_add(o, "created", json_object_new_double(t->created));
    json_object_object_add(o, "started", t->started > 0 ? json_object_new_double(t->started) : NULL);
    json_object_object_add(o, "finished", t->finished > 0 ? json_object_new_double(t->finished) : NULL);
    return o;
}

json_object *svc_task_json(struct svc_task *t)
{
    json_object *o;

    pthread_mutex_lock(&t->srv->mu);
    o = task_json_locked(t);
    pthread_mutex_unlock(&t->srv->mu);
    return o;
}

json_object *svc_tasks_json(struct svc_server *srv)
{
    json_object *a = json_object_new_array();

    pthread_mutex_lock(&srv->mu);
    for (struct svc_task *t = srv->tasks; t; t = t->next)
        json_object_array_add(a, task_json_locked(t));
    pthread_mutex_unlock(&srv->mu);
    return a;
}

static void publish_task(struct svc_task *t)
{
    svc_event_publish(t->srv, "task", svc_task_json(t));
}

struct svc_task *svc_task_submit(struct svc_server *srv, const char *kind, const char *vm, const char *snapshot,
                                 json_object *args, svc_task_fn fn)
{
    return svc_task_submit_as(srv, NULL, kind, vm, snapshot, args, fn);
}

struct svc_task *svc_task_submit_as(struct svc_server *srv, const char *requester, const char *kind, const char *vm,
                                    const char *snapshot, json_object *args, svc_task_fn fn)
{
    struct svc_task *t = qs_xcalloc(1, sizeof(*t)), **pp;
    unsigned char rnd[6] = {0};
    size_t kept = 0;

    t->srv = srv;
    t->kind = qs_xstrdup(kind);
    t->vm = vm ? qs_xstrdup(vm) : NULL;
    t->snapshot = snapshot ? qs_xstrdup(snapshot) : NULL;
    t->requester = requester ? qs_xstrdup(requester) : NULL;
    t->args = args;
    t->fn = fn;
    t->created = now_s();
    t->refs = 2; /* the table's and the caller's */
    /* not guessable from another task's id: a task's result is only for whoever may read the API */
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
        memset(rnd, 0, sizeof(rnd));
    pthread_mutex_lock(&srv->mu);
    snprintf(t->id, sizeof(t->id), "%llu-%02x%02x%02x%02x%02x%02x", (unsigned long long)++srv->next_task, rnd[0],
             rnd[1], rnd[2], rnd[3], rnd[4], rnd[5]);
    t->next = srv->tasks;
    srv->tasks = t;
    srv->ntasks++;
    /* forget the oldest finished tasks past the cap */
    for (pp = &srv->tasks; *pp;) {
        struct svc_task *x = *pp;
        if (++kept > TASKS_KEPT && (x->state == TASK_SUCCEEDED || x->state == TASK_FAILED)) {
            *pp = x->next;
            srv->ntasks--;
            if (--x->refs == 0)
                task_free(x);
            continue;
        }
        pp = &x->next;
    }
    /* one idle worker: the others would only wake to find nothing (each such wake-up cost ~0.2 ms of a
     * revert's latency on 2 CPUs) */
    pthread_cond_signal(&srv->work_cv);
    pthread_mutex_unlock(&srv->mu);
    publish_task(t);
    return t;
}

struct svc_task *svc_task_find(struct svc_server *srv, const char *id)
{
    struct svc_task *t;

    pthread_mutex_lock(&srv->mu);
    for (t = srv->tasks; t; t = t->next)
        if (strcmp(t->id, id) == 0) {
            t->refs++;
            break;
        }
    pthread_mutex_unlock(&srv->mu);
    return t;
}

bool svc_task_wait(struct svc_task *t, int ms)
{
    struct timespec until;
    bool done;

    clock_gettime(CLOCK_REALTIME, &until);
    if (ms >= 0) {
        until.tv_sec += ms / 1000;
        until.tv_nsec += (long)(ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L)
            until.tv_sec++, until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&t->srv->mu);
    while (!(done = t->state == TASK_SUCCEEDED || t->state == TASK_FAILED) && !t->srv->stopping) {
        if (ms < 0)
            pthread_cond_wait(&t->srv->cv, &t->srv->mu);
        else if (pthread_cond_timedwait(&t->srv->cv, &t->srv->mu, &until) != 0)
            break;
    }
    pthread_mutex_unlock(&t->srv->mu);
    return done;
}

int svc_task_cancel(struct svc_task *t)
{
    int ret = 0;
    bool now = false;

    pthread_mutex_lock(&t->srv->mu);
    if (t->state == TASK_QUEUED) {
        t->state = TASK_FAILED;
        t->err_code = QS_ERR_CANCELLED;
        t->err_message = qs_xstrdup("the task was cancelled before it started");
        t->finished = now_s();
        now = true;
        pthread_cond_broadcast(&t->srv->cv);
    } else if (t->state == TASK_RUNNING) {
        t->cancel = true;
    } else {
        ret = -1;
    }
    pthread_mutex_unlock(&t->srv->mu);
    if (now)
        publish_task(t);
    return ret;
}

struct qs_error *svc_task_error(struct svc_task *t)
{
    struct qs_error *e = NULL;

    pthread_mutex_lock(&t->srv->mu);
    if (t->state == TASK_FAILED)
        qs_error_set(&e, t->err_code, "%s", t->err_message ? t->err_message : "");
    pthread_mutex_unlock(&t->srv->mu);
    return e;
}

/* The engine's progress: kept on the task, published, and the task's cancel flag answered. */
static int task_progress(void *opaque, const char *phase, uint64_t done, uint64_t total)
{
    struct svc_task *t = opaque;
    bool cancel;

    pthread_mutex_lock(&t->srv->mu);
    free(t->phase);
    t->phase = qs_xstrdup(phase);
    t->done = done;
    t->total = total;
    cancel = t->cancel;
    pthread_cond_broadcast(&t->srv->cv);
    pthread_mutex_unlock(&t->srv->mu);
    publish_task(t);
    return cancel ? 1 : 0;
}

/* Test builds only (qsnapd-fault): the process SIGKILLs itself after step $QSNAP_FAULT_AT of an operation, as
 * qsnap-fault does, so that the tests can prove recovery after a crash of the service. */
#ifdef QSNAP_FAULT_INJECTION
#include <signal.h>
#include <stdatomic.h>
static void task_step(void *opaque, const char *op, const char *step)
{
    static atomic_long count;
    const char *at = getenv("QSNAP_FAULT_AT");
    (void)opaque;
    (void)op;
    (void)step;
    if (at && atol(at) == ++count)
        raise(SIGKILL);
}
#else
/* $QSNAPD_TRACE: every step boundary of every operation on stderr, with the time since the task started -
 * where an operation's time goes (the benchmark's breakdown). */
static void task_step(void *opaque, const char *op, const char *step)
{
    struct svc_task *t = opaque;
    static int on = -1;

    if (on < 0)
        on = getenv("QSNAPD_TRACE") != NULL;
    if (on)
        fprintf(stderr, "qsnapd: task %s %s %s +%.2fms\n", t->id, op, step, (now_s() - t->started) * 1e3);
}
#endif

/* The next queued task whose domain no other worker writes; under srv->mu. */
static struct svc_task *next_runnable_locked(struct svc_server *srv)
{
    struct svc_task *pick = NULL;

    /* oldest first: the list is newest first */
    for (struct svc_task *t = srv->tasks; t; t = t->next) {
        bool blocked = false;
        if (t->state != TASK_QUEUED)
            continue;
        for (struct svc_task *o = srv->tasks; o && t->vm; o = o->next)
            if (o->state == TASK_RUNNING && o->vm && strcmp(o->vm, t->vm) == 0)
                blocked = true;
        /* an older queued task of the same domain goes first */
        for (struct svc_task *o = t->next; o && t->vm && !blocked; o = o->next)
            if (o->state == TASK_QUEUED && o->vm && strcmp(o->vm, t->vm) == 0)
                blocked = true;
        if (!blocked)
            pick = t;
    }
    return pick;
}

static void *worker_main(void *opaque)
{
    struct svc_server *srv = opaque;

    for (;;) {
        struct svc_task *t;
        struct qs_error *err = NULL;
        struct engine *e;
        double t0;
        int r = -1;

        pthread_mutex_lock(&srv->mu);
        while (!srv->stopping && !(t = next_runnable_locked(srv)))
            pthread_cond_wait(&srv->work_cv, &srv->mu);
        if (srv->stopping) {
            pthread_mutex_unlock(&srv->mu);
            return NULL;
        }
        t->state = TASK_RUNNING;
        t->started = now_s();
        t->refs++;
        /* still more to run: wake another worker. Idle workers looked before they slept, a new task signals
         * one and a finish leaves its domain's next to the worker that finished, so this should find
         * nothing; it is here so that no task ever waits on a sleeping worker if that reasoning is wrong */
        if (next_runnable_locked(srv))
            pthread_cond_signal(&srv->work_cv);
        pthread_mutex_unlock(&srv->mu);
        publish_task(t);

        t0 = mono_s();
        if (t->vm)
            engine_session_write_begin(srv->session, t->vm);
        if ((e = engine_session_get(srv->session, task_progress, task_step, t, &err)) != NULL) {
            engine_set_requester(e, t->requester);
            r = t->fn(t, e, &err);
            engine_set_requester(e, NULL); /* engines are pooled */
            engine_session_put(srv->session, e);
        }
        if (t->vm)
            engine_session_write_end(srv->session, t->vm);

        pthread_mutex_lock(&srv->mu);
        t->finished = now_s();
        if (r == 0) {
            t->state = TASK_SUCCEEDED;
        } else {
            t->state = TASK_FAILED;
            t->err_code = err ? err->code : QS_ERR_INTERNAL;
            t->err_message = qs_xstrdup(err && err->message ? err->message : "unknown error");
        }
        /* its waiters; the task of this domain that may now run is this worker's next (it looks before it
         * sleeps), so no other worker is woken for it */
        pthread_cond_broadcast(&srv->cv);
        pthread_mutex_unlock(&srv->mu);
        qs_error_free(err);
        svc_metrics_op(srv, t->kind, r == 0, mono_s() - t0);
        publish_task(t);
        svc_task_unref(t);
    }
}

int svc_tasks_start(struct svc_server *srv, int workers)
{
    srv->workers = qs_xcalloc((size_t)workers, sizeof(pthread_t));
    for (int i = 0; i < workers; i++) {
        if (pthread_create(&srv->workers[i], NULL, worker_main, srv) != 0)
            return -1;
        srv->nworkers++;
    }
    return 0;
}

void svc_tasks_stop(struct svc_server *srv)
{
    pthread_mutex_lock(&srv->mu);
    srv->stopping = true;
    pthread_cond_broadcast(&srv->cv);
    pthread_cond_broadcast(&srv->work_cv);
    pthread_mutex_unlock(&srv->mu);
    for (int i = 0; i < srv->nworkers; i++)
        pthread_join(srv->workers[i], NULL);
    free(srv->workers);
    srv->workers = NULL;
    srv->nworkers = 0;
    while (srv->tasks) {
        struct svc_task *t = srv->tasks;
        srv->tasks = t->next;
        task_free(t);
    }
}
