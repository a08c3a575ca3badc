/* qmp_priv.h: what the qmp/ sources share behind qmp.h; json-c types stay on this side. */
#ifndef QMP_PRIV_H
#define QMP_PRIV_H

#include <json-c/json.h>

#include "qmp.h"

/* Deeper than json-c's default of 32: query-block nests one level per backing file. QEMU allows 1024. */
#define QMP_JSON_MAX_DEPTH 1024

/* struct qmp_value and struct qmp_args are json-c objects under another name. */
static inline json_object *qmp_json(const void *p)
{
    return (json_object *)p;
}

struct qmp_reply {
    json_object *value; /* one reference owned; NULL for JSON null */
};

struct qmp_event {
    json_object *msg;      /* the whole message, owned; name and data point into it */
    const char *name;
    json_object *data;     /* always an object */
    int64_t timestamp_us;
    struct qmp_event *next;
};

/* Takes over one reference to VALUE (may be NULL). Caller frees with qmp_reply_free(). */
struct qmp_reply *qmp_reply_wrap(json_object *value);
/* A tokener for QEMU's JSON: strict, deep enough, several values in one stream. Aborts on OOM. */
json_tokener *qmp_tokener_new(void);
/* json-c setters that abort on OOM (and on a type mismatch, which is a bug of the caller). */
void qmp_json_set(json_object *obj, const char *key, json_object *val);
void qmp_json_push(json_object *arr, json_object *val);
json_object *qmp_json_check(json_object *o);

/*
 * qmp_client_event_wait without the error for a timeout: 1 with *ev set, 0 when TIMEOUT_MS ran out
 * (0: only what already arrived), -1 with *err on a connection error.
 */
int qmp_client_event_take(struct qmp_client *c, const char *name, const char *key, const char *val,
                          int timeout_ms, struct qmp_event **ev, struct qs_error **err);
/* Drops the queued events matching as in qmp_client_event_wait; never reads the socket. */
void qmp_client_event_drop(struct qmp_client *c, const char *name, const char *key, const char *val);
/* How many events the client dropped past its cap so far. */
uint64_t qmp_client_events_dropped(const struct qmp_client *c);
/* qmp_client_execute(), calling SENT(OPAQUE) (when not NULL) once the request is written and before its reply
 * is awaited: local work done there overlaps QEMU's reading of the request. SENT must not use C. */
int qmp_client_execute_sent(struct qmp_client *c, const char *command, const struct qmp_args *args,
                            void (*sent)(void *opaque), void *opaque, struct qmp_reply **ret,
                            struct qs_error **err);
/* The client's default reply timeout in ms. */
int qmp_client_timeout(const struct qmp_client *c);

/* The per-connection feature cache (qmp_features.c): the client only holds it and frees it with itself. */
struct qmp_features;
struct qmp_features **qmp_client_features_slot(struct qmp_client *c);
void qmp_features_free(struct qmp_features *f);

#endif
