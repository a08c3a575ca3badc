/* events.c: the server-sent event ring behind GET /api/events, and the counters behind GET /metrics. */
#include "svc.h"

#include "qs_buf.h"
#include "qs_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RING 256 /* events a slow stream may fall behind by before it skips */

struct svc_event_slot {
    uint64_t seq;
    char *text; /* "event: K\ndata: J\n\n" */
};

void svc_event_publish(struct svc_server *srv, const char *kind, json_object *data)
{
    const char *j = json_object_to_json_string_ext(data, JSON_C_TO_STRING_PLAIN |
                                                                     JSON_C_TO_STRING_NOSLASHESCAPE);
    char *text = qs_asprintf("event: %s\ndata: %s\n\n", kind, j);
    struct svc_event_slot *slot;

    json_object_put(data);
    pthread_mutex_lock(&srv->ev_mu);
    if (!srv->events)
        srv->events = qs_xcalloc(RING, sizeof(*srv->events));
    slot = &srv->events[++srv->ev_seq % RING];
    free(slot->text);
    slot->text = text;
    slot->seq = srv->ev_seq;
    pthread_cond_broadcast(&srv->ev_cv);
    pthread_mutex_unlock(&srv->ev_mu);
}

void svc_event_snapshot(struct svc_server *srv, const char *vm, const char *snapshot, const char *change)
{
    json_object *o = json_object_new_object();

    json_object_object_add(o, "vm", json_object_new_string(vm));
    json_object_object_add(o, "snapshot", snapshot ? json_object_new_string(snapshot) : NULL);
    json_object_object_add(o, "change", json_object_new_string(change));
    svc_event_publish(srv, "snapshot", o);
}

ssize_t svc_event_next(struct svc_server *srv, uint64_t *seq, char *buf, size_t len, int ms)
{
    struct timespec until;
    ssize_t ret = 0;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L)
        until.tv_sec++, until.tv_nsec -= 1000000000L;
    pthread_mutex_lock(&srv->ev_mu);
    if (*seq == 0)
        *seq = srv->ev_seq; /* a new stream sees what happens from now on */
    for (;;) {
        if (srv->stopping) {
            ret = -1;
            break;
        }
        if (srv->ev_seq > *seq) {
            uint64_t want = *seq + 1;
            struct svc_event_slot *slot;
            if (srv->ev_seq - want >= RING)
                want = srv->ev_seq - RING + 1; /* fell behind: skip what the ring lost */
            slot = &srv->events[want % RING];
            *seq = want;
            if (slot->text && strlen(slot->text) <= len) {
                ret = (ssize_t)strlen(slot->text);
                memcpy(buf, slot->text, (size_t)ret);
                break;
            }
            continue;
        }
        if (pthread_cond_timedwait(&srv->ev_cv, &srv->ev_mu, &until) != 0)
            break;
    }
    pthread_mutex_unlock(&srv->ev_mu);
    return ret;
}

/* ---- metrics ---- */

static const double buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
#define NBUCKETS (sizeof(buckets) / sizeof(buckets[0]))

struct svc_metric_op {
    char *kind;
    bool ok;
    uint64_t count;
    double sum;
    uint64_t le[NBUCKETS]; /* cumulative */
    struct svc_metric_op *next;
};

void svc_metrics_op(struct svc_server *srv, const char *kind, bool ok, double seconds)
{
    struct svc_metric_op *m;

    pthread_mutex_lock(&srv->m_mu);
    for (m = srv->ops; m; m = m->next)
        if (m->ok == ok && strcmp(m->kind, kind) == 0)
            break;
    if (!m) {
        m = qs_xcalloc(1, sizeof(*m));
        m->kind = qs_xstrdup(kind);
        m->ok = ok;
        m->next = srv->ops;
        srv->ops = m;
    }
    m->count++;
    m->sum += seconds;
    for (size_t i = 0; i < NBUCKETS; i++)
        if (seconds <= buckets[i])
            m->le[i]++;
    pthread_mutex_unlock(&srv->m_mu);
}

/* The outcomes engine_run's outcome takes, in the order of srv->schedule_runs. */
static const char *const run_outcomes[] = {"ok", "failed", "skipped", "busy"};
_Static_assert(sizeof(run_outcomes) / sizeof(run_outcomes[0]) ==
                   sizeof(((struct svc_server *)0)->schedule_runs) / sizeof(uint64_t),
               "run_outcomes");

void svc_metrics_runs(struct svc_server *srv, const struct engine_run *runs, size_t n)
{
    pthread_mutex_lock(&srv->m_mu);
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < sizeof(run_outcomes) / sizeof(run_outcomes[0]); k++)
            if (strcmp(runs[i].outcome, run_outcomes[k]) == 0)
                srv->schedule_runs[k]++;
    pthread_mutex_unlock(&srv->m_mu);
}

void svc_metrics_pause(struct svc_server *srv, int64_t pause_us)
{
    pthread_mutex_lock(&srv->m_mu);
    srv->last_pause_us = pause_us;
    pthread_mutex_unlock(&srv->m_mu);
}

/* Prometheus label values escape \, " and newline. Domain names cannot hold control characters. */
static void label(struct qs_buf *b, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\' || *s == '"')
            qs_buf_add(b, "\\", 1);
        qs_buf_add(b, s, 1);
    }
}

char *svc_metrics_text(struct svc_server *srv)
{
    struct engine *e = engine_session_get(srv->session, NULL, NULL, NULL, NULL);
    struct qs_buf b;
    char **names = NULL;
    size_t n = 0;

    qs_buf_init(&b, 0);
    qs_buf_adds(&b, "# HELP qsnap_snapshots Snapshots per VM.\n# TYPE qsnap_snapshots gauge\n");
    if (e && engine_domain_list(e, &names, &n, NULL) == 0) {
        for (size_t i = 0; i < n; i++) {
            size_t count = 0;
            if (engine_session_snapshot_count(srv->session, e, names[i], &count, NULL) < 0)
                continue;
            qs_buf_adds(&b, "qsnap_snapshots{vm=\"");
            label(&b, names[i]);
            qs_buf_addf(&b, "\"} %zu\n", count);
        }
        engine_strv_free(names, n);
    }
    engine_session_put(srv->session, e);
    pthread_mutex_lock(&srv->m_mu);
    qs_buf_adds(&b, "# HELP qsnap_operations_total Operations finished, by kind and outcome.\n"
                    "# TYPE qsnap_operations_total counter\n");
    for (struct svc_metric_op *m = srv->ops; m; m = m->next)
        qs_buf_addf(&b, "qsnap_operations_total{kind=\"%s\",outcome=\"%s\"} %llu\n", m->kind,
                    m->ok ? "success" : "failure", (unsigned long long)m->count);
    qs_buf_adds(&b, "# HELP qsnap_operation_duration_seconds Time an operation took, by kind and outcome.\n"
                    "# TYPE qsnap_operation_duration_seconds histogram\n");
    for (struct svc_metric_op *m = srv->ops; m; m = m->next) {
        const char *o = m->ok ? "success" : "failure";
        for (size_t i = 0; i < NBUCKETS; i++)
            qs_buf_addf(&b, "qsnap_operation_duration_seconds_bucket{kind=\"%s\",outcome=\"%s\",le=\"%g\"} %llu\n",
                        m->kind, o, buckets[i], (unsigned long long)m->le[i]);
        qs_buf_addf(&b, "qsnap_operation_duration_seconds_bucket{kind=\"%s\",outcome=\"%s\",le=\"+Inf\"} %llu\n",
                    m->kind, o, (unsigned long long)m->count);
        qs_buf_addf(&b, "qsnap_operation_duration_seconds_sum{kind=\"%s\",outcome=\"%s\"} %.6f\n", m->kind, o,
                    m->sum);
        qs_buf_addf(&b, "qsnap_operation_duration_seconds_count{kind=\"%s\",outcome=\"%s\"} %llu\n", m->kind, o,
                    (unsigned long long)m->count);
    }
    qs_buf_adds(&b, "# HELP qsnap_live_snapshot_pause_seconds Guest pause of the last live snapshot taken.\n"
                    "# TYPE qsnap_live_snapshot_pause_seconds gauge\n");
    if (srv->last_pause_us >= 0)
        qs_buf_addf(&b, "qsnap_live_snapshot_pause_seconds %.6f\n", (double)srv->last_pause_us / 1e6);
    qs_buf_adds(&b, "# HELP qsnap_http_requests_total Requests answered, by status class.\n"
                    "# TYPE qsnap_http_requests_total counter\n");
    for (int c = 1; c <= 5; c++)
        qs_buf_addf(&b, "qsnap_http_requests_total{class=\"%dxx\"} %llu\n", c,
                    (unsigned long long)srv->requests[c]);
    qs_buf_adds(&b, "# HELP qsnap_schedule_runs_total Schedule runs (the runner's and those asked for), by outcome.\n"
                    "# TYPE qsnap_schedule_runs_total counter\n");
    for (size_t k = 0; k < sizeof(run_outcomes) / sizeof(run_outcomes[0]); k++)
        qs_buf_addf(&b, "qsnap_schedule_runs_total{outcome=\"%s\"} %llu\n", run_outcomes[k],
                    (unsigned long long)srv->schedule_runs[k]);
    pthread_mutex_unlock(&srv->m_mu);
    return qs_buf_detach(&b, NULL);
}

void svc_events_release(struct svc_server *srv)
{
    for (size_t i = 0; srv->events && i < RING; i++)
        free(srv->events[i].text);
    free(srv->events);
    srv->events = NULL;
    while (srv->ops) {
        struct svc_metric_op *m = srv->ops;
        srv->ops = m->next;
        free(m->kind);
        free(m);
    }
}
