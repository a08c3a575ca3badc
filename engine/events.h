/* events.h: the per-domain event log - one JSON line per operation - and the scope each logged operation opens
 * around its work, so that nested work (a delete inside a prune, a create inside a schedule run) reports to
 * it. */
#ifndef QS_ENGINE_EVENTS_H
#define QS_ENGINE_EVENTS_H

#include <stdarg.h>
#include <stdint.h>

#include "engine_priv.h"

/* An event log is rotated (DOM.jsonl -> DOM.jsonl.1 -> ... -> .EVENTS_KEEP) once it would pass this size. */
#define EVENTS_MAX_DEFAULT (1024u * 1024u)
#define EVENTS_KEEP 3

/* An operation under way. Strings are the op's own (event_end frees them). */
struct event_op {
    const char *op;          /* static: "create", "prune", ... */
    char *domain;
    char *snapshot;
    char *detail;
    const char *outcome;     /* static; NULL: from the result ("ok" / "failed") */
    int64_t start_ms;        /* engine clock */
    int64_t start_mono_ms;
    int64_t pause_us;        /* -1: none measured */
    struct event_op *outer;
};

/* Opens EV for OP on DOMAIN (SNAPSHOT may be NULL) and makes it the engine's innermost operation. */
void event_begin(struct engine *e, struct event_op *ev, const char *op, const char *domain, const char *snapshot);
void event_set_snapshot(struct event_op *ev, const char *snapshot);
void event_set_detail(struct event_op *ev, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/*
 * Closes EV: appends its line to the domain's log (when the domain is defined; best effort - a log that
 * cannot be written never fails the operation) with the outcome from RC and ERR (may be NULL), and hands a
 * measured pause to the outer operation.
 */
void event_end(struct engine *e, struct event_op *ev, int rc, const struct qs_error *err);

#endif
