/* pure.h: engine helpers with no engine state behind them (pure.c), shared by libqsnap and qsnap-remote. */
#ifndef QS_ENGINE_PURE_H
#define QS_ENGINE_PURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine.h"

/* A snapshot-check report, as the engine builds it and qsnap-remote reads it from the API. */
struct engine_check_item {
    char *kind;
    char *snapshot;
    char *disk;
    char *message;
    char *fix;
    bool repaired;
    bool note; /* a limitation to know of, nothing wrong */
};

struct engine_check_report {
    struct engine_check_item *items;
    size_t n, cap;
};

/* Frees what schedule S holds and zeroes it (S itself is the caller's). */
void sched_release(struct engine_schedule *s);

/* engine_time_parse with "now" given: NOW_MS is what a duration counts back from. */
int engine_time_parse_at(const char *text, int64_t now_ms, int64_t *ms, struct qs_error **err);

#endif
