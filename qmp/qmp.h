/* qmp.h: a QMP client - socket, framing, ids, events, jobs, HMP, fd passing. json-c never leaves qmp/. */
#ifndef QMP_H
#define QMP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "qs_error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------------------
 * Values: a read-only view of JSON that QEMU sent. A value is borrowed from the reply or event that
 * holds it and lives as long as that object.
 */
struct qmp_value;

enum qmp_type { QMP_NULL, QMP_BOOL, QMP_INT, QMP_DOUBLE, QMP_STRING, QMP_OBJECT, QMP_ARRAY };

enum qmp_type qmp_value_type(const struct qmp_value *v);
/* Member KEY of an object, or NULL (also when v is NULL or not an object). */
const struct qmp_value *qmp_value_get(const struct qmp_value *v, const char *key);
/* Follows a dotted path of member names: qmp_value_path(ret, "inserted.node-name"). NULL if absent. */
const struct qmp_value *qmp_value_path(const struct qmp_value *v, const char *path);
/* The string, or NULL when v is NULL or not a string. Borrowed. */
const char *qmp_value_string(const struct qmp_value *v);
/* Shorthand: qmp_value_string(qmp_value_get(v, key)). */
const char *qmp_value_get_string(const struct qmp_value *v, const char *key);
/* true and *out set when v is an integer (or a bool for _bool); false otherwise, *out untouched. */
bool qmp_value_int(const struct qmp_value *v, int64_t *out);
bool qmp_value_bool(const struct qmp_value *v, bool *out);
/* Array length (0 when not an array) and element i (NULL when out of range). */
size_t qmp_value_array_len(const struct qmp_value *v);
const struct qmp_value *qmp_value_array_at(const struct qmp_value *v, size_t i);
/* Iterates an object's members: index 0..n-1, returns false past the end. key and val are borrowed. */
size_t qmp_value_object_len(const struct qmp_value *v);
bool qmp_value_object_at(const struct qmp_value *v, size_t i, const char **key, const struct qmp_value **val);
/* Compact JSON text of v. Caller frees with free(). */
char *qmp_value_to_json(const struct qmp_value *v);

/* A reply's return value (or an event's data) and the storage that holds it. */
struct qmp_reply;
const struct qmp_value *qmp_reply_value(const struct qmp_reply *r);
void qmp_reply_free(struct qmp_reply *r);
/* Parses JSON text into a reply-like holder (for tests and for tools); NULL + QS_ERR_INVALID on bad JSON. */
struct qmp_reply *qmp_reply_parse(const char *json, struct qs_error **err);

/* ---------------------------------------------------------------------------------------------------
 * Arguments: a builder for a command's "arguments" object. Child objects and lists returned by the
 * _obj/_list calls are borrowed from their parent and freed with it.
 */
struct qmp_args;

/* A new empty object. Caller frees with qmp_args_free(). */
struct qmp_args *qmp_args_new(void);
void qmp_args_free(struct qmp_args *a);
/* Object members (a must be an object). Strings are copied. */
void qmp_args_set_str(struct qmp_args *a, const char *key, const char *val);
void qmp_args_set_int(struct qmp_args *a, const char *key, int64_t val);
void qmp_args_set_bool(struct qmp_args *a, const char *key, bool val);
void qmp_args_set_null(struct qmp_args *a, const char *key);
struct qmp_args *qmp_args_set_obj(struct qmp_args *a, const char *key);
struct qmp_args *qmp_args_set_list(struct qmp_args *a, const char *key);
/* List elements (a must be a list). */
void qmp_args_push_str(struct qmp_args *list, const char *val);
struct qmp_args *qmp_args_push_obj(struct qmp_args *list);
/* Compact JSON text. Caller frees with free(). */
char *qmp_args_to_json(const struct qmp_args *a);

/* ---------------------------------------------------------------------------------------------------
 * The client.
 */
struct qmp_client;

struct qmp_options {
    int connect_timeout_ms; /* connect + greeting + qmp_capabilities; 0: 10000 */
    int timeout_ms;         /* default wait for a reply; 0: 30000 */
    size_t max_message;     /* cap on one incoming message; 0: 64 MiB */
    size_t max_events;      /* cap on queued events, oldest dropped past it; 0: 4096 */
    const char *name;       /* qmp_client_new_fd: the socket's path for messages; NULL: "fd N" */
};

/*
 * Connects to the QMP UNIX socket at PATH, retrying while it does not exist yet or refuses connections,
 * until opts->connect_timeout_ms; reads the greeting and negotiates capabilities. opts may be NULL.
 * A socket whose QEMU already has a client (no greeting arrives) fails with QS_ERR_BUSY; a socket that
 * cannot be connected to in time, with QS_ERR_TIMEOUT.
 * Caller frees with qmp_client_free().
 */
struct qmp_client *qmp_client_connect(const char *path, const struct qmp_options *opts, struct qs_error **err);
/* Same on an already connected stream socket (taken over: closed by qmp_client_free, also on failure). */
struct qmp_client *qmp_client_new_fd(int fd, const struct qmp_options *opts, struct qs_error **err);
/* Closes the socket and frees queued events - or, with a release hook set, gives the client to the hook,
 * which may keep it (a pool of connections kept open). Accepts NULL. */
void qmp_client_free(struct qmp_client *c);
/*
 * A hook qmp_client_free calls instead of closing a client that is not broken (no earlier timeout,
 * disconnect or protocol error): FN(OPAQUE, C) returns true when it kept C, false to let it be closed. The
 * keeper closes it later with qmp_client_close, which ignores the hook.
 */
typedef bool (*qmp_release_fn)(void *opaque, struct qmp_client *c);
void qmp_client_set_release(struct qmp_client *c, qmp_release_fn fn, void *opaque);
void qmp_client_close(struct qmp_client *c);

/* QEMU's version from the greeting: "7.2.22" (borrowed) and as numbers. */
const char *qmp_client_version(const struct qmp_client *c);
void qmp_client_version_num(const struct qmp_client *c, int *major, int *minor, int *micro);
/* The package string from the greeting ("Debian 1:7.2+dfsg-7..."), possibly "". Borrowed. */
const char *qmp_client_package(const struct qmp_client *c);
/* pid of the peer process (SO_PEERCRED), or -1 when unknown. */
pid_t qmp_client_peer_pid(const struct qmp_client *c);
/* Changes the default reply timeout. */
void qmp_client_set_timeout(struct qmp_client *c, int timeout_ms);

/*
 * Runs COMMAND with ARGS (NULL for none) and waits for its reply (the next one: requests go without an id, and QEMU
 * answers them in order; events that arrive meanwhile are queued). On success *ret (when ret is non-NULL) holds the
 * "return" value; caller frees with qmp_reply_free(). An error reply is QS_ERR_QEMU with the QMP class in
 * err->qmp_class and QEMU's desc as the message. EOF/ECONNRESET/EPIPE are QS_ERR_DISCONNECTED; no reply in time is
 * QS_ERR_TIMEOUT; bytes that are not QMP are QS_ERR_PROTOCOL, a message over opts->max_message QS_ERR_TOOBIG. After any
 * of these the client is unusable: later calls fail with QS_ERR_DISCONNECTED. timeout_ms <= 0 uses the client default.
 */
int qmp_client_execute(struct qmp_client *c, const char *command, const struct qmp_args *args,
                       struct qmp_reply **ret, struct qs_error **err);
/* FIRST and SECOND in one round trip, SECOND sent whatever FIRST's outcome: each reply or error in
 * ret1, err1 and ret2, err2 (NULL on entry); -1 when the connection failed (the reason in *err1). */
int qmp_client_execute_pair(struct qmp_client *c, const char *first, const struct qmp_args *args1,
                            struct qmp_reply **ret1, struct qs_error **err1, const char *second,
                            const struct qmp_args *args2, struct qmp_reply **ret2, struct qs_error **err2);
int qmp_client_execute_timeout(struct qmp_client *c, const char *command, const struct qmp_args *args,
                               int timeout_ms, struct qmp_reply **ret, struct qs_error **err);
/*
 * Sends COMMAND without waiting for its reply: the client reads that reply (and drops it, an error too)
 * before the reply of its next request, in qmp_client_poll, or in qmp_client_free before it closes. For
 * housekeeping nobody waits on, on a connection that outlives the operation (qmp_client_kept).
 */
int qmp_client_send(struct qmp_client *c, const char *command, const struct qmp_args *args, struct qs_error **err);
/* Reads the replies qmp_client_send left owed, within the client's timeout (events that come with them are
 * queued, as every event). */
int qmp_client_settle(struct qmp_client *c, struct qs_error **err);
/* Whether qmp_client_free gives C to a keeper (qmp_client_set_release) rather than closing it. */
bool qmp_client_kept(const struct qmp_client *c);

/*
 * HMP passthrough (human-monitor-command). *output (may be NULL) gets the text as QEMU sent it (lines end
 * in "\r\n"); an output that starts with "Error:" (as QEMU reports HMP failures inside a successful reply)
 * becomes QS_ERR_QEMU with the text after "Error: ", trimmed, as the message.
 * Caller frees *output with free().
 */
int qmp_client_hmp(struct qmp_client *c, const char *command_line, char **output, struct qs_error **err);

/*
 * Passes FD to QEMU with SCM_RIGHTS alongside {"execute":"getfd","arguments":{"fdname":FDNAME}}.
 * FD stays owned by the caller. Use it afterwards as "fd:FDNAME" (migrate) and closefd when done.
 */
int qmp_client_send_fd(struct qmp_client *c, int fd, const char *fdname, struct qs_error **err);

/* ---------------------------------------------------------------------------------------------------
 * Events. Every event read while waiting for anything is queued in arrival order.
 */
struct qmp_event;

const char *qmp_event_name(const struct qmp_event *e);
/* The "data" member (an empty object when absent). Borrowed from e. */
const struct qmp_value *qmp_event_data(const struct qmp_event *e);
/* QEMU's timestamp in microseconds since the epoch. */
int64_t qmp_event_timestamp_us(const struct qmp_event *e);
void qmp_event_free(struct qmp_event *e);

/* Takes the oldest queued event, or NULL when none is queued (never reads the socket). Caller frees. */
struct qmp_event *qmp_client_event_pop(struct qmp_client *c);
/*
 * Waits for an event named NAME (NULL: any) whose data matches MATCH_KEY == MATCH_VAL when MATCH_KEY is
 * non-NULL (string members only, e.g. "id" / "job0"). Queued events are searched first; the matching one
 * is removed from the queue, others stay. QS_ERR_TIMEOUT after timeout_ms (0: only what already arrived;
 * < 0: the client default); that timeout leaves the client usable. Caller frees *ev.
 */
int qmp_client_event_wait(struct qmp_client *c, const char *name, const char *match_key, const char *match_val,
                          int timeout_ms, struct qmp_event **ev, struct qs_error **err);
/* Drops every queued event. */
void qmp_client_event_clear(struct qmp_client *c);
/* Reads what the socket already has (non-blocking) into the queue; replies to nobody are dropped. */
int qmp_client_poll(struct qmp_client *c, struct qs_error **err);

/* ---------------------------------------------------------------------------------------------------
 * Jobs: snapshot-save/-load/-delete, block-commit, block-stream, ... run to their end.
 */

/* Progress: current/total as query-jobs reports them. Return non-zero to cancel the job (job-cancel). */
typedef int (*qmp_progress_fn)(void *opaque, const char *job_id, uint64_t current, uint64_t total);

struct qmp_job_options {
    int timeout_ms;           /* whole job; 0: no limit other than the client's per-reply timeout */
    int poll_ms;              /* progress polling interval; 0: 100 */
    bool complete_on_ready;   /* on READY (active block-commit, mirror) issue job-complete */
    qmp_progress_fn progress; /* may be NULL */
    void *opaque;
    /* may be NULL: called once the job has concluded and before job-dismiss, OK telling whether it
     * succeeded - the last moment a crash of the caller still leaves the result readable in query-jobs */
    void (*concluded)(void *opaque, const char *job_id, bool ok);
    /* may be NULL (taken only with concluded): called after concluded, once job-dismiss is written and
     * before its reply is read (QEMU reads a request a byte at a time: local work done here, a sync of what
     * concluded wrote, costs the caller nothing it would not wait for anyway). Must not use the client. */
    void (*dismissing)(void *opaque, const char *job_id);
};

/*
 * Starts job JOB_ID with COMMAND and a copy of ARGS ("job-id": JOB_ID is added when absent, another job-id
 * is QS_ERR_INVALID; block-commit, block-stream, blockdev-/drive-backup and -mirror also get
 * "auto-dismiss": false so their error can be read) and waits for it to conclude, reporting progress.
 * A failed job's reason is read from query-jobs before job-dismiss and returned as QS_ERR_QEMU (class
 * GenericError). A job cancelled by the callback returns QS_ERR_CANCELLED; one that passes
 * opts->timeout_ms is cancelled and returns QS_ERR_TIMEOUT. The job is dismissed before returning, unless
 * the connection failed or the job did not end even after job-cancel. opts may be NULL.
 */
int qmp_job_run(struct qmp_client *c, const char *command, const struct qmp_args *args, const char *job_id,
                const struct qmp_job_options *opts, struct qs_error **err);

/* What became of a job another client started (recovery after that client died). */
enum qmp_job_outcome {
    QMP_JOB_ABSENT,    /* no such job (never started, or already dismissed) */
    QMP_JOB_SUCCEEDED, /* it concluded without error; now dismissed */
    QMP_JOB_FAILED,    /* it concluded with an error (in *error when non-NULL; caller frees); now dismissed */
};
/*
 * Waits up to TIMEOUT_MS for job JOB_ID to conclude (issuing job-complete when it waits READY and
 * COMPLETE_ON_READY, job-finalize when pending), then dismisses it. QS_ERR_TIMEOUT when it is still running.
 */
int qmp_job_settle(struct qmp_client *c, const char *job_id, int timeout_ms, bool complete_on_ready,
                   enum qmp_job_outcome *outcome, char **error, struct qs_error **err);

/* ---------------------------------------------------------------------------------------------------
 * Features: what the QEMU behind a connection can do. Asked of QEMU once per connection (query-commands,
 * query-migrate-capabilities, query-qmp-schema) and cached on the client; behaviours that no query shows
 * come from the greeting's version (the same as query-version's).
 */
enum qmp_feature {
    QMP_FEATURE_FILE_MIGRATION,      /* "file:" migration URIs (migrate's channels have a file transport, 8.2+),
                                        the fd passed with add-fd as /dev/fdset/N */
    QMP_FEATURE_BACKGROUND_SNAPSHOT, /* migration capability background-snapshot (6.0+) */
    QMP_FEATURE_MAPPED_RAM,          /* migration capability mapped-ram (9.0+): RAM at fixed file offsets */
    QMP_FEATURE_MULTIFD,             /* migration capability multifd */
    QMP_FEATURE_DIRECT_IO,           /* migration parameter direct-io (9.1+) */
    QMP_FEATURE_BG_KEEPS_PAUSED,     /* a background snapshot of a paused VM leaves it paused (9.0+; before, QEMU
                                        resumes it) */
    QMP_FEATURE_SETUP_HOLDS_LOCK,    /* migration setup holds QEMU's big lock: QMP replies stall meanwhile (8.2+) */
    QMP_FEATURE_FD_FILE_DEPRECATED,  /* "fd:" migration to a regular file warns (9.1+; an error later) */
    QMP_FEATURE_PRECOPY_COHERENT,    /* a pre-copy (a migration while the guest runs) sees every guest write: KVM's
                                        dirty log, or TCG from 9.0 - before, TCG lost writes made while a pass
                                        cleared the dirty bitmap (QEMU commit 03bfc2188f) */
    QMP_FEATURE_LAST
};
/* The feature's name for messages ("mapped-ram"), NULL for an unknown value. Borrowed. */
const char *qmp_feature_to_string(enum qmp_feature f);
/* *has: whether C's QEMU has FEATURE. -1 only when asking QEMU failed. */
int qmp_client_feature(struct qmp_client *c, enum qmp_feature feature, bool *has, struct qs_error **err);
/* *has: whether C's QEMU knows command NAME (query-commands, asked once per connection). */
int qmp_client_has_command(struct qmp_client *c, const char *name, bool *has, struct qs_error **err);
/* Keeps what only the schema tells (file: migration, direct-io) in DIR (qsnap's ROOT/run), one file per QEMU
 * binary (its /proc/PID/exe and version), so that the next connection to any QEMU of that binary need not ask
 * for the schema. NULL: no such file is read or written. */
void qmp_client_set_feature_cache(struct qmp_client *c, const char *dir);
/* Drops what was learnt (for a connection whose QEMU could have changed: none today). */
void qmp_client_features_forget(struct qmp_client *c);

/*
 * qmp_client_execute with FD passed alongside (SCM_RIGHTS), for commands that take one: add-fd (then
 * "/dev/fdset/N" in a path QEMU opens; QEMU dups the set's fd whose access mode matches its open flags, so
 * open FD O_WRONLY for what QEMU writes and O_RDONLY for what it reads). FD stays the caller's.
 */
int qmp_client_execute_fd(struct qmp_client *c, const char *command, const struct qmp_args *args, int fd,
                          struct qmp_reply **ret, struct qs_error **err);

#ifdef __cplusplus
}
#endif
#endif
