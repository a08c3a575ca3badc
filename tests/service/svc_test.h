/* svc_test.h: helpers for qsnapd's tests - a real qsnapd process, real HTTP (libcurl), replies recorded for
 * the OpenAPI check. */
#ifndef SVC_TEST_H
#define SVC_TEST_H

#include "qsnap_test.h"

#include <json-c/json.h>
#include <stdbool.h>
#include <sys/types.h>

/* A qsnapd the test started. */
struct st_daemon {
    pid_t pid;
    char *sock;      /* unix: socket path, or NULL for TCP */
    char *url;       /* "http://localhost" or "https://127.0.0.1:PORT" */
    char *ca;        /* TCP: the certificate to trust */
    char *log;       /* its stderr */
    char *record;    /* a directory that gets every reply (N.meta, N.body), or NULL */
    unsigned nrec;
};

/*
 * Starts BINARY ("qsnapd" or "qsnapd-fault" in $QSNAP_BUILD_DIR/service) with --root ROOT and the extra
 * arguments (NULL-terminated), listening on unix:DIR/api.sock (TCP when EXTRA has --listen), and waits until
 * it answers GET /api. LOG goes to DIR/qsnapd.log (appended).
 */
void st_start(struct st_daemon *d, const char *binary, const char *root, const char *dir, const char *const *extra);
/* SIGTERM, then SIGKILL after 10 s; reaped. */
void st_stop(struct st_daemon *d);
/* SIGKILL and reap (a crash). */
void st_kill(struct st_daemon *d);
void st_release(struct st_daemon *d);

/* A reply. */
struct st_reply {
    long status;
    char *body;
    char *type;     /* Content-Type */
    char *location; /* Location header, or NULL */
    json_object *json; /* the body parsed when it is JSON, else NULL */
};
void st_reply_release(struct st_reply *r);

/*
 * METHOD PATH (with query) with BODY (JSON text or NULL); HEADERS (NULL-terminated, may be NULL) added.
 * Fails the test when the request cannot be made at all. The reply is recorded when d->record is set.
 */
void st_http(struct st_daemon *d, const char *method, const char *path, const char *body, const char *const *headers,
             struct st_reply *r);
/* The same without HEADERS, but a request that cannot be made (the daemon died) returns -1 instead of failing. */
int st_http_try(struct st_daemon *d, const char *method, const char *path, const char *body, struct st_reply *r);
/* Requires STATUS and returns the parsed JSON (borrowed from r). */
json_object *st_expect(struct st_reply *r, long status);
/* A member as a string, or NULL. */
const char *st_str(json_object *o, const char *key);
/* Waits for the task at LOCATION (GET with ?wait) to end; returns its final JSON (caller puts it). */
json_object *st_task_wait(struct st_daemon *d, const char *location);
/* A task started by METHOD PATH BODY, waited for; requires STATE ("succeeded"/"failed"). Returns the final
 * task JSON (caller puts it). */
json_object *st_task(struct st_daemon *d, const char *method, const char *path, const char *body, const char *state);

/* Every reply D recorded, checked against service/openapi.json by check_openapi.py (jsonschema): fails the test on a
 * reply the document does not describe. */
void st_validate_replies(struct st_daemon *d);
/* Runs qsnap ARGS (NULL-terminated) directly on the fixture's root (D NULL) or through D (qsnap --connect) into
 * *res (release with qs_proc_result_release); returns its exit status. */
struct qs_proc_result;
int st_qsnap_run(struct qt_fixture *f, struct st_daemon *d, struct qs_proc_result *res, ...);
/* Runs qsnap ARGS (NULL-terminated) twice - directly on ROOT and through D (qsnap --connect) - and requires the same
 * stdout, stderr and exit status; returns that status, and stdout in *out when OUT is not NULL (caller frees). */
int st_qsnap_both(struct qt_fixture *f, struct st_daemon *d, char **out, ...);

/* A hash of every file's name, size, mode and content under DIR (to prove nothing changed), but the listing
 * cache .qsnap-index, which reads refresh. Caller frees. */
char *st_tree_hash(const char *dir);

#endif
