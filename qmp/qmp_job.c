/* qmp_job.c: runs one QMP job (snapshot-save, block-commit, ...) to its end and dismisses it. */
#include "qmp_priv.h"
#include "qs_util.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_POLL_MS 100

/*
 * Commands whose job would vanish when it ends, taking its error along, unless told "auto-dismiss": false.
 * snapshot-save/-load/-delete, blockdev-create and x-blockdev-amend do not take that argument: their jobs
 * always wait for job-dismiss.
 */
static const char *const auto_dismiss_commands[] = {
    "block-commit", "block-stream", "blockdev-backup", "blockdev-mirror", "drive-backup", "drive-mirror",
};

struct job_info {
    bool found;
    char *status;
    char *error; /* NULL when the job has none */
    uint64_t current, total;
};

static void job_info_release(struct job_info *ji)
{
    free(ji->status);
    free(ji->error);
    memset(ji, 0, sizeof(*ji));
}

/* Fills JI with job ID's entry in REPLY, query-jobs' (ji->found false when there is none). */
static void job_find(const struct qmp_reply *reply, const char *id, struct job_info *ji)
{
    const struct qmp_value *jobs = qmp_reply_value(reply), *j;
    const char *status, *error;
    int64_t n;

    job_info_release(ji);
    for (size_t i = 0; i < qmp_value_array_len(jobs) && !ji->found; i++) {
        j = qmp_value_array_at(jobs, i);
        if (!qs_str_equal(qmp_value_get_string(j, "id"), id))
            continue;
        ji->found = true;
        status = qmp_value_get_string(j, "status");
        ji->status = qs_xstrdup(status ? status : "");
        if ((error = qmp_value_get_string(j, "error")))
            ji->error = qs_xstrdup(error);
        if (qmp_value_int(qmp_value_get(j, "current-progress"), &n) && n > 0)
            ji->current = (uint64_t)n;
        if (qmp_value_int(qmp_value_get(j, "total-progress"), &n) && n > 0)
            ji->total = (uint64_t)n;
    }
}

/* Fills JI with job ID's entry in query-jobs (ji->found false when there is none). */
static int job_query(struct qmp_client *c, const char *id, struct job_info *ji, struct qs_error **err)
{
    struct qmp_reply *reply = NULL;

    job_info_release(ji);
    if (qmp_client_execute(c, "query-jobs", NULL, &reply, err) < 0)
        return -1;
    job_find(reply, id, ji);
    qmp_reply_free(reply);
    return 0;
}

static int ms_until(int64_t t)
{
    int64_t left = t - qs_now_ms();

    return left <= 0 ? 0 : left > INT_MAX ? INT_MAX : (int)left;
}

/* Runs VERB ("job-dismiss", ...) on job ID, SENT(OPAQUE) (may be NULL) called once it is written. */
static int job_verb_sent(struct qmp_client *c, const char *verb, const char *id, void (*sent)(void *), void *opaque,
                         struct qs_error **err)
{
    struct qmp_args *a = qmp_args_new();
    int ret;

    qmp_args_set_str(a, "id", id);
    ret = qmp_client_execute_sent(c, verb, a, sent, opaque, NULL, err);
    qmp_args_free(a);
    return ret;
}

static int job_verb(struct qmp_client *c, const char *verb, const char *id, struct qs_error **err)
{
    return job_verb_sent(c, verb, id, NULL, NULL, err);
}

struct dismiss_ctx {
    const struct qmp_job_options *opts;
    const char *id;
};

static void dismiss_sent(void *opaque)
{
    struct dismiss_ctx *d = opaque;
    d->opts->dismissing(d->opts->opaque, d->id);
}

/*
 * job-dismiss of job ID after its outcome was read, OPTS->dismissing called while it goes. On a connection
 * that outlives the operation (qsnapd's kept monitors) its reply is not waited for: QEMU runs the dismiss
 * before anything sent after it, the client reads the reply before the next one, and the next job on it
 * starts by reading it (qmp_job_run). A dismiss lost after all (the process dies before QEMU read it)
 * leaves a concluded job of that name, which the next qmp_job_run dismisses.
 */
static int job_dismiss(struct qmp_client *c, const char *id, const struct qmp_job_options *opts,
                       struct qs_error **err)
{
    struct dismiss_ctx d = {opts, id};
    void (*sent)(void *) = opts->concluded && opts->dismissing ? dismiss_sent : NULL;
    struct qmp_args *a;
    int ret;

    if (!qmp_client_kept(c))
        return job_verb_sent(c, "job-dismiss", id, sent, &d, err);
    a = qmp_args_new();
    qmp_args_set_str(a, "id", id);
    ret = qmp_client_send(c, "job-dismiss", a, err);
    qmp_args_free(a);
    if (ret == 0 && sent)
        sent(&d);
    return ret;
}

/*
 * job_verb for verbs that race with the job moving on by itself (a cancel as it concludes): QEMU refusing
 * is not fatal and goes to *refused (dropped when refused is NULL); other errors fail.
 */
static int job_act(struct qmp_client *c, const char *verb, const char *id, struct qs_error **refused,
                   struct qs_error **err)
{
    struct qs_error *local = NULL;
    int ret = job_verb(c, verb, id, &local);

    if (ret < 0 && local->code == QS_ERR_QEMU) {
        qs_error_prefix(&local, "'%s' of job '%s' refused", verb, id);
        qs_error_propagate(refused, &local);
        ret = 0;
    }
    qs_error_propagate(err, &local);
    return ret;
}

/* query-jobs and job-dismiss of concluded job ID in one round trip: JI as query-jobs told it. */
static int job_read_and_dismiss(struct qmp_client *c, const char *job_id, struct job_info *ji, struct qs_error **err)
{
    struct qmp_args *a = qmp_args_new();
    struct qmp_reply *jobs = NULL;
    struct qs_error *qerr = NULL, *derr = NULL;
    int ret = -1;

    qmp_args_set_str(a, "id", job_id);
    if (qmp_client_execute_pair(c, "query-jobs", NULL, &jobs, &qerr, "job-dismiss", a, NULL, &derr) < 0) {
        qs_error_propagate(err, &qerr);
        goto out;
    }
    if (qerr) {
        qs_error_propagate(err, &qerr);
        goto out;
    }
    job_find(jobs, job_id, ji);
    if (!ji->found) {
        qs_error_set(err, QS_ERR_STATE, "job '%s' was dismissed by someone else before its result was read", job_id);
        goto out;
    }
    if (derr) {
        qs_error_propagate(err, &derr);
        goto out;
    }
    ret = 0;
out:
    qs_error_free(qerr);
    qs_error_free(derr);
    qmp_reply_free(jobs);
    qmp_args_free(a);
    return ret;
}

/* A deep copy of ARGS with job-id set and, where the command takes it, "auto-dismiss": false. */
static json_object *job_args(const char *command, const struct qmp_args *args, const char *job_id,
                             struct qs_error **err)
{
    json_object *a = NULL, *v = NULL;

    if (!args)
        a = qmp_json_check(json_object_new_object());
    else if (json_object_deep_copy(qmp_json(args), &a, NULL) < 0)
        abort(); /* fails only when out of memory */
    if (json_object_object_get_ex(a, "job-id", &v) && !qs_str_equal(qmp_value_string((struct qmp_value *)v), job_id)) {
        qs_error_set(err, QS_ERR_INVALID, "arguments of '%s' do not name job '%s'", command, job_id);
        json_object_put(a);
        return NULL;
    }
    qmp_json_set(a, "job-id", qmp_json_check(json_object_new_string(job_id)));
    for (size_t i = 0; i < sizeof(auto_dismiss_commands) / sizeof(auto_dismiss_commands[0]); i++) {
        if (strcmp(command, auto_dismiss_commands[i]) == 0)
            qmp_json_set(a, "auto-dismiss", qmp_json_check(json_object_new_boolean(0)));
    }
    return a;
}

/*
 * Starts COMMAND (A: job-id set). A refusal while a concluded job of that name is still there (its dismiss
 * lost with the process that sent it) dismisses that one and tries once more: nobody reads its outcome any
 * more (an interrupted operation's recovery, which would, runs before a new one).
 */
static int job_start(struct qmp_client *c, const char *command, json_object *a, const char *job_id, int timeout_ms,
                     struct qs_error **err)
{
    struct qs_error *refused = NULL;
    struct job_info ji = {0};
    bool stale;

    if (qmp_client_execute_timeout(c, command, (const struct qmp_args *)a, timeout_ms, NULL, &refused) == 0)
        return 0;
    stale = refused->code == QS_ERR_QEMU && job_query(c, job_id, &ji, NULL) == 0 && ji.found &&
            strcmp(ji.status, "concluded") == 0;
    job_info_release(&ji);
    if (!stale || job_verb(c, "job-dismiss", job_id, NULL) < 0) {
        qs_error_propagate(err, &refused);
        return -1;
    }
    qs_error_free(refused);
    qmp_client_event_drop(c, "JOB_STATUS_CHANGE", "id", job_id);
    return qmp_client_execute_timeout(c, command, (const struct qmp_args *)a, timeout_ms, NULL, err);
}

int qmp_job_run(struct qmp_client *c, const char *command, const struct qmp_args *args, const char *job_id,
                const struct qmp_job_options *opts, struct qs_error **err)
{
    static const struct qmp_job_options defaults;
    struct qs_error *failure = NULL;
    struct job_info ji = {0};
    struct qmp_event *ev = NULL;
    json_object *a = NULL;
    int64_t start = qs_now_ms(), deadline, next_poll, now;
    bool cancelled = false, completed = false, finalized = false, timed_out = false, clean = false;
    uint64_t dropped = qmp_client_events_dropped(c);
    char before[16] = ""; /* the job's status before its last event */
    const char *status;
    int poll_ms, r, ret = -1;

    if (!opts)
        opts = &defaults;
    poll_ms = opts->poll_ms > 0 ? opts->poll_ms : DEFAULT_POLL_MS;
    deadline = opts->timeout_ms > 0 ? start + opts->timeout_ms : INT64_MAX;
    if (!(a = job_args(command, args, job_id, err)))
        goto out;
    /* events of an earlier job of the same name must not be taken for this one's: its dismiss, when not
     * waited for (job_dismiss), is read first, with the events it brought */
    if (qmp_client_settle(c, err) < 0)
        goto out;
    qmp_client_event_drop(c, "JOB_STATUS_CHANGE", "id", job_id);
    /* in QEMU 7.2 snapshot-save replies only when its work is done: the job's whole budget goes to the reply,
     * and its status events may all be queued by then */
    if (job_start(c, command, a, job_id, opts->timeout_ms, err) < 0)
        goto out;
    next_poll = qs_now_ms() + poll_ms;
    for (;;) {
        r = qmp_client_event_take(c, "JOB_STATUS_CHANGE", "id", job_id,
                                  ms_until(next_poll < deadline ? next_poll : deadline), &ev, err);
        if (r < 0)
            goto out;
        status = r > 0 ? qmp_value_get_string(qmp_event_data(ev), "status") : NULL;
        /* "null": someone else dismissed it; the query below says so */
        if (qs_str_equal(status, "concluded") || qs_str_equal(status, "null")) {
            /* QEMU moves a job that fails to "aborting" before it concludes (job_update_rc in every path),
             * so one that concludes right from "pending" ended well: nothing to read before dismissing it,
             * as long as none of its events can have been dropped */
            clean = qs_str_equal(status, "concluded") && strcmp(before, "pending") == 0 &&
                    qmp_client_events_dropped(c) == dropped;
            break;
        }
        if (status)
            snprintf(before, sizeof(before), "%s", status);
        if (qs_str_equal(status, "ready") && opts->complete_on_ready && !completed && !cancelled) {
            completed = true;
            if (job_act(c, "job-complete", job_id, &failure, err) < 0)
                goto out;
            if (failure) { /* refused: end the job and report why */
                cancelled = true;
                if (job_act(c, "job-cancel", job_id, NULL, err) < 0)
                    goto out;
            }
        }
        qmp_event_free(ev);
        ev = NULL;
        if ((now = qs_now_ms()) >= deadline) {
            if (timed_out) {
                qs_error_set(err, QS_ERR_TIMEOUT, "job '%s' did not end after job-cancel", job_id);
                goto out;
            }
            timed_out = cancelled = true;
            if (job_act(c, "job-cancel", job_id, NULL, err) < 0)
                goto out;
            deadline = now + qmp_client_timeout(c);
        }
        if (now < next_poll)
            continue;
        if (job_query(c, job_id, &ji, err) < 0)
            goto out;
        if (!ji.found || strcmp(ji.status, "concluded") == 0)
            break; /* its event was lost (the queue is capped) or it is gone: the query below tells */
        /* only a job started with "auto-finalize": false stays pending */
        if (strcmp(ji.status, "pending") == 0 && !finalized) {
            finalized = true;
            if (job_act(c, "job-finalize", job_id, NULL, err) < 0)
                goto out;
        }
        if (opts->progress && !cancelled && opts->progress(opts->opaque, job_id, ji.current, ji.total) != 0) {
            cancelled = true;
            if (job_act(c, "job-cancel", job_id, NULL, err) < 0)
                goto out;
        }
        next_poll = qs_now_ms() + poll_ms;
    }
    /* a failed job's reason is only in query-jobs, and only until job-dismiss */
    if (clean && !failure && !timed_out && !cancelled) {
        if (opts->concluded)
            opts->concluded(opts->opaque, job_id, true);
        if (job_dismiss(c, job_id, opts, err) < 0)
            goto out;
    } else if (opts->concluded) {
        /* the caller notes the outcome while the job still tells it (a crash before the note leaves the job
         * for recovery to read) */
        if (job_query(c, job_id, &ji, err) < 0)
            goto out;
        if (!ji.found) {
            qs_error_set(err, QS_ERR_STATE, "job '%s' was dismissed by someone else before its result was read",
                         job_id);
            goto out;
        }
        opts->concluded(opts->opaque, job_id, !failure && !timed_out && !cancelled && !ji.error);
        if (job_dismiss(c, job_id, opts, err) < 0)
            goto out;
    } else if (job_read_and_dismiss(c, job_id, &ji, err) < 0) {
        goto out;
    }
    qmp_client_event_drop(c, "JOB_STATUS_CHANGE", "id", job_id);
    if (failure)
        qs_error_propagate(err, &failure);
    else if (timed_out)
        qs_error_set(err, QS_ERR_TIMEOUT, "job '%s' did not finish within %d ms", job_id, opts->timeout_ms);
    else if (cancelled)
        qs_error_set(err, QS_ERR_CANCELLED, "job '%s' was cancelled", job_id);
    else if (ji.error)
        qs_error_set_qmp(err, "GenericError", "%s", ji.error);
    else
        ret = 0;
out:
    qs_error_free(failure);
    qmp_event_free(ev);
    job_info_release(&ji);
    json_object_put(a);
    return ret;
}

int qmp_job_settle(struct qmp_client *c, const char *job_id, int timeout_ms, bool complete_on_ready,
                   enum qmp_job_outcome *outcome, char **error, struct qs_error **err)
{
    struct job_info ji = {0};
    int64_t deadline = qs_now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    bool completed = false, finalized = false;
    int ret = -1;

    *outcome = QMP_JOB_ABSENT;
    if (error)
        *error = NULL;
    for (;;) {
        if (job_query(c, job_id, &ji, err) < 0)
            goto out;
        if (!ji.found) {
            ret = 0;
            goto out;
        }
        if (strcmp(ji.status, "concluded") == 0)
            break;
        if (strcmp(ji.status, "ready") == 0 && complete_on_ready && !completed) {
            completed = true;
            if (job_act(c, "job-complete", job_id, NULL, err) < 0)
                goto out;
            continue;
        }
        if (strcmp(ji.status, "pending") == 0 && !finalized) {
            finalized = true;
            if (job_act(c, "job-finalize", job_id, NULL, err) < 0)
                goto out;
            continue;
        }
        if (qs_now_ms() >= deadline) {
            qs_error_set(err, QS_ERR_TIMEOUT, "job '%s' is still %s", job_id, ji.status);
            goto out;
        }
        {
            struct timespec ts = {0, 20 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    *outcome = ji.error ? QMP_JOB_FAILED : QMP_JOB_SUCCEEDED;
    if (ji.error && error) {
        *error = ji.error;
        ji.error = NULL;
    }
    if (job_verb(c, "job-dismiss", job_id, err) < 0)
        goto out;
    ret = 0;
out:
    job_info_release(&ji);
    return ret;
}
