/* svc.h: what qsnapd's files share - the server, requests and responses, routes, tasks, events, tokens. */
#ifndef QS_SVC_H
#define QS_SVC_H

#include <json-c/json.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "engine.h"
#include "qs_error.h"

/* Caps on what a client can make the server hold. */
#define SVC_BODY_MAX (1u << 20)      /* request body (a snapshot XML with its domain fits) */
#define SVC_JSON_DEPTH 16            /* nesting of a JSON body */
#define SVC_HEADER_MEMORY (32u << 10) /* per-connection buffer for the request line and headers */

struct svc_server;
struct svc_task;

/* ---- requests and responses -------------------------------------------------------------------- */

enum svc_method { SVC_GET, SVC_POST, SVC_PUT, SVC_DELETE, SVC_METHOD__LAST };

enum svc_auth {
    SVC_AUTH_LOCAL,     /* the UNIX socket: the peer is a local user of group qsnap */
    SVC_AUTH_TOKEN,     /* TCP, a read-write bearer token */
    SVC_AUTH_TOKEN_RO,  /* TCP, a read-only token: GET only */
    SVC_AUTH_NONE,      /* TCP without a token: only a route flagged SVC_ROUTE_NO_AUTH (the page's files) */
};

#define SVC_MAX_PARAMS 4

/* One request as the handlers see it: parsed, bounded, already authorised for its route's method. */
struct svc_req {
    struct svc_server *srv;
    enum svc_method method;
    const char *path;                  /* decoded, without the query */
    const char *params[SVC_MAX_PARAMS]; /* the route's {vm}, {snap}, {id} in order (into a copy of path) */
    size_t nparams;
    /* query arguments: name=value pairs, borrowed from the HTTP layer (NULL-terminated, name then value) */
    const char *const *query;
    json_object *body; /* the parsed JSON body (an object), NULL when none */
    enum svc_auth auth;
    bool xml;          /* Accept: application/xml - oVirt's element names */
    /* the response */
    int status;
    json_object *out;      /* the JSON document to send (taken over), or NULL */
    const char *out_root;  /* XML: the root element's name ("snapshots", "snapshot", ...) */
    char *raw;             /* a body sent as is (taken over), with raw_type */
    const char *raw_type;
    char *location;        /* Location header (taken over), or NULL */
    /* an event stream instead of a body (GET /api/events) */
    bool stream;
    struct engine *engine; /* svc_engine()'s, given back when the request ends */
    struct svc_body *shared; /* a body sent as is without a copy (a reference, dropped when sent) */
    /* who asked, recorded in the domain's event log: the token's name over TCP, "uid=N" (SO_PEERCRED) on the
       UNIX socket; NULL when unknown */
    const char *requester;
    /* the reply's Content-Security-Policy (static text); NULL: SVC_CSP_API */
    const char *csp;
};

/* What a reply may load when a browser renders it: an API reply nothing at all; the page (web/) its own
 * origin's script, style, images and API, and nothing inline. */
#define SVC_CSP_API "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
#define SVC_CSP_PAGE                                                                                          \
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "           \
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

/* A reply body several requests can send at once (a cached listing). */
struct svc_body {
    pthread_mutex_t mu;
    unsigned refs;
    size_t len;
    char *data;
    const char *type;
};
/* Takes over DATA (LEN bytes); one reference. */
struct svc_body *svc_body_new(char *data, size_t len, const char *type);
struct svc_body *svc_body_ref(struct svc_body *b);
void svc_body_unref(struct svc_body *b);

/* An engine for this request (given back by the HTTP layer); NULL with a 500 set on r. */
struct engine *svc_engine(struct svc_req *r);
/* Replies 202 with the task (Location: its URL), or - when the body says "async": false or the query
 * ?wait=true - waits for it and replies as its outcome (200 with the task, or the task's error). Drops T. */
void svc_reply_task(struct svc_req *r, struct svc_task *t);
/* Refuses (403) a request that names files or sockets unless it came over the UNIX socket. */
int svc_require_local(struct svc_req *r, const char *what);

/* A query argument's value, or NULL. */
const char *svc_query(const struct svc_req *r, const char *name);
/* A boolean query argument: "true"/"1" true, "false"/"0" false, absent DEF; anything else is an error
 * (400) recorded in r and -1 returned. */
int svc_query_bool(struct svc_req *r, const char *name, bool def, bool *out);
/* Body members, with type checks: absent gives DEF (0 returned); a wrong type sets a 400 on r (-1). */
int svc_body_bool(struct svc_req *r, const char *name, bool def, bool *out);
int svc_body_string(struct svc_req *r, const char *name, const char **out);
/* An integer member from MIN to MAX (absent: DEF); anything else is a 400 on r and -1. */
int svc_body_int(struct svc_req *r, json_object *o, const char *name, int64_t min, int64_t max, int64_t def,
                 int64_t *out);
/* Refuses (400) a member of object O (the body when NULL) not named in ALLOWED (NULL-terminated): a typo in an
 * optional member must not pass for its default. */
int svc_body_only(struct svc_req *r, json_object *o, const char *const *allowed);
/* A query argument as an integer from MIN to MAX (absent: DEF); 400 on r and -1 otherwise. */
int svc_query_int(struct svc_req *r, const char *name, int64_t min, int64_t max, int64_t def, int64_t *out);

/* Sets the response: JSON document DOC (taken over) with STATUS. ROOT names XML's root element. */
void svc_reply(struct svc_req *r, int status, json_object *doc, const char *root);
/* An error response {code, message} with STATUS. */
void svc_reply_error(struct svc_req *r, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The engine's error as a response: the status from its code (404, 409, 423, 400, 500), the engine's
 * code name and message. Frees *err. */
void svc_reply_engine_error(struct svc_req *r, struct qs_error **err);
/* The HTTP status for an engine error code. */
int svc_status_of(int code);

/* ---- routes -------------------------------------------------------------------------------------- */

enum svc_route_flags {
    SVC_ROUTE_LOCAL_ONLY = 1 << 0, /* takes paths chosen by the client: only over the UNIX socket */
    SVC_ROUTE_NO_AUTH = 1 << 1,    /* served without a token (nothing) */
};

/*
 * A route: METHOD and PATTERN ("/api/vms/{vm}/snapshots/{snap}"; "{...}" matches one non-empty segment).
 * PARSE (may be NULL) checks the request's arguments and body without touching the engine: it sets a 4xx
 * on the request and returns -1 when they are wrong (the fuzzer drives it). HANDLE does the work.
 */
struct svc_route {
    enum svc_method method;
    const char *pattern;
    int (*parse)(struct svc_req *r);
    void (*handle)(struct svc_req *r);
    unsigned flags;
};

/*
 * Route tables, one per file, each ending with {.pattern = NULL}. A new area (schedules, say) adds its own
 * file with its own table and one line in router.c's list.
 */
extern const struct svc_route svc_routes_vms[];
extern const struct svc_route svc_routes_snapshots[];
extern const struct svc_route svc_routes_tasks[];
extern const struct svc_route svc_routes_meta[];
extern const struct svc_route svc_routes_schedules[]; /* routes_schedules.c: schedules, runs, prune, protect */
extern const struct svc_route svc_routes_clone[];     /* routes_clone.c: export, clone */
extern const struct svc_route svc_routes_qemu[];      /* routes_qemu.c: the QEMU behind a domain */
extern const struct svc_route svc_routes_web[];       /* routes_web.c: the page (web/), served without a token */

/* GET /api/events?vm=NAME[&since=MS]: the domain's event log (routes_events.c); the stream without vm=. */
int svc_events_parse(struct svc_req *r);
void svc_events_history(struct svc_req *r);

enum svc_match { SVC_MATCH_OK, SVC_MATCH_NONE, SVC_MATCH_METHOD };
/*
 * Finds the route for METHOD and PATH; fills r->params (pointing into BUF, a copy of PATH of BUFLEN bytes
 * at least strlen(PATH)+1). SVC_MATCH_METHOD: the path exists with other methods (405).
 */
enum svc_match svc_route_find(enum svc_method method, const char *path, char *buf, size_t buflen,
                              const struct svc_route **route, struct svc_req *r);
struct qs_buf;
/* Appends S escaped for XML text and attribute values (< > & ' "). */
void svc_xml_escape(struct qs_buf *b, const char *s);
/* Checks the route's {vm}, {snap}, {id} with the engine's name rules; 400 on r and -1 when one fails. */
int svc_params_check(struct svc_req *r);
/* "GET" -> SVC_GET; -1 for any other method. */
int svc_method_parse(const char *s);
const char *svc_method_name(enum svc_method m);
/* Parses BODY (LEN bytes) as a JSON object with SVC_JSON_DEPTH; 400 on r and -1 when it is not one. */
int svc_body_parse(struct svc_req *r, const char *body, size_t len);

/* ---- tasks ----------------------------------------------------------------------------------------- */

struct svc_task;
/* The work of a task, on a worker thread, with an engine whose progress goes to the task. */
typedef int (*svc_task_fn)(struct svc_task *t, struct engine *e, struct qs_error **err);

/*
 * Queues KIND ("create", "delete", "restore", "preview", ...) on VM (NULL: no domain to serialise on),
 * about SNAPSHOT (may be NULL), with ARGS (taken over; may be NULL) for FN. Returns the task (a reference
 * the caller drops with svc_task_unref).
 */
struct svc_task *svc_task_submit(struct svc_server *srv, const char *kind, const char *vm, const char *snapshot,
                                 json_object *args, svc_task_fn fn);
/* The same on behalf of REQUESTER (the request's token name, may be NULL): the task's engine records it in the
 * domain's event log. */
struct svc_task *svc_task_submit_as(struct svc_server *srv, const char *requester, const char *kind, const char *vm,
                                    const char *snapshot, json_object *args, svc_task_fn fn);
void svc_task_unref(struct svc_task *t);
/* The task with ID, referenced (drop with svc_task_unref), or NULL. */
struct svc_task *svc_task_find(struct svc_server *srv, const char *id);
/* Waits up to MS (<0: forever) for T to finish; true when it did. */
bool svc_task_wait(struct svc_task *t, int ms);
/* The task as JSON (id, kind, vm, snapshot, state, progress, error, result, times). */
json_object *svc_task_json(struct svc_task *t);
const char *svc_task_id(const struct svc_task *t);
json_object *svc_task_args(struct svc_task *t); /* borrowed */
const char *svc_task_vm(const struct svc_task *t);
const char *svc_task_snapshot(const struct svc_task *t);
/* The task's result (shown as "result"), set by its function. RESULT is taken over. */
void svc_task_set_result(struct svc_task *t, json_object *result);
/* Asks a task to stop: a queued task fails at once (cancelled), a running one where the engine safely can.
 * 0, or -1 when it had finished already. */
int svc_task_cancel(struct svc_task *t);
/* A finished task's error as an engine error (NULL when it succeeded or runs); caller frees. */
struct qs_error *svc_task_error(struct svc_task *t);
struct svc_server *svc_task_server(const struct svc_task *t);
/* Every task (newest first) as a JSON array. */
json_object *svc_tasks_json(struct svc_server *srv);

int svc_tasks_start(struct svc_server *srv, int workers);
void svc_tasks_stop(struct svc_server *srv);

/* ---- events and metrics ---------------------------------------------------------------------------- */

/* Publishes an event (KIND "task" or "snapshot"; DATA taken over) to every /api/events stream. */
void svc_event_publish(struct svc_server *srv, const char *kind, json_object *data);
/* A snapshot event: CHANGE ("created", "deleted", "restored", "current", "in_preview") of SNAPSHOT on VM. */
void svc_event_snapshot(struct svc_server *srv, const char *vm, const char *snapshot, const char *change);
/* Waits for the event after sequence number *SEQ (0: only new ones) up to MS; writes "event: K\ndata: J\n\n"
 * into BUF (at most LEN bytes; a longer one is skipped) and returns its length, 0 on time-out, -1 when the
 * server stops. */
ssize_t svc_event_next(struct svc_server *srv, uint64_t *seq, char *buf, size_t len, int ms);

/* Frees the event ring and the metrics (the server stopped). */
void svc_events_release(struct svc_server *srv);
/* Records a finished operation for /metrics. */
void svc_metrics_op(struct svc_server *srv, const char *kind, bool ok, double seconds);
/* Records the guest pause of a live snapshot just taken. */
void svc_metrics_pause(struct svc_server *srv, int64_t pause_us);
/* Records the outcomes of schedule runs (the runner's and the API's) for /metrics. */
void svc_metrics_runs(struct svc_server *srv, const struct engine_run *runs, size_t n);
/* Prometheus text format. Caller frees. */
char *svc_metrics_text(struct svc_server *srv);

/* ---- tokens ------------------------------------------------------------------------------------------ */

/*
 * Bearer tokens for TCP clients: ROOT/qsnapd/tokens, one line per token "NAME rw|ro SHA256-HEX CREATED";
 * only the hash is kept. create prints the token once; revoke removes it. A token is checked against the
 * file as it is now (re-read when it changed), so a revoke takes effect at the next request.
 */
int svc_token_create(const char *root, const char *name, bool read_only, char **token, struct qs_error **err);
int svc_token_revoke(const char *root, const char *name, struct qs_error **err);
/* Lines "NAME rw|ro CREATED" for every token; caller frees. */
int svc_token_list(const char *root, char **text, struct qs_error **err);
/* Checks TOKEN: 1 and *read_only, *name (borrowed from a static per-thread buffer) when it is valid; 0 when not. */
int svc_token_check(struct svc_server *srv, const char *token, bool *read_only, const char **name);

/* ---- the schedule runner (scheduler.c) ----------------------------------------------------------------- */

/* A task's work for "schedule-run": ARGS {due, schedule}; the task's domain, or every domain with schedules
 * (each serialised with that domain's other writers). Its result {"run": [...]} is kept also when a run failed. */
int svc_schedule_run_task(struct svc_task *t, struct engine *e, struct qs_error **err);
/* The runner thread: a pass at start (a missed slot is caught up once) and one each minute, at second 30 of the
 * engines' clock, queueing a schedule-run task for each domain with a due schedule. */
int svc_scheduler_start(struct svc_server *srv);
/* Stops the thread (its queued tasks run on); a no-op when it was not started. */
void svc_scheduler_stop(struct svc_server *srv);
/* The engines' clock: ms since the epoch. */
int64_t svc_now_ms(const struct svc_server *srv);

/* ---- the server ---------------------------------------------------------------------------------------- */

struct svc_server {
    struct engine_session *session;
    const char *root;
    int request_timeout_s; /* a request's headers and body must arrive within this; 0: none */
    /* tasks */
    pthread_mutex_t mu;
    pthread_cond_t cv;      /* a task's state or progress changed: its waiters (svc_task_wait) */
    pthread_cond_t work_cv; /* a task became runnable, or the workers stop: one idle worker */
    struct svc_task *tasks; /* newest first */
    size_t ntasks;
    uint64_t next_task;
    pthread_t *workers;
    int nworkers;
    bool stopping;
    /* events */
    pthread_mutex_t ev_mu;
    pthread_cond_t ev_cv;
    struct svc_event_slot *events; /* a ring */
    uint64_t ev_seq;               /* sequence number of the newest event */
    /* metrics */
    pthread_mutex_t m_mu;
    struct svc_metric_op *ops;
    int64_t last_pause_us;
    uint64_t requests[6]; /* by status class: 1xx..5xx, index 0 unused */
    /* tokens */
    pthread_mutex_t tok_mu;
    struct svc_token *tokens;
    size_t ntokens;
    int64_t tok_mtime_ns;
    bool tok_loaded;
    /* the engines' clock (engine_options.clock; called with NULL); NULL: the system's */
    engine_clock_fn clock;
    /* where TCP clients with a read-write token may export to (--export-dir); NULL: nowhere */
    const char *export_dir;
    /* the schedule runner */
    pthread_mutex_t run_mu;
    pthread_cond_t run_cv;
    pthread_t runner;
    bool runner_started, runner_stop;
    uint64_t schedule_runs[4]; /* by outcome: ok, failed, skipped, busy (under m_mu) */
};

#endif
