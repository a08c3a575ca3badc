/* json_out.h: a small streaming JSON writer for --json output (cli/ never sees json-c). */
#ifndef QS_CLI_JSON_OUT_H
#define QS_CLI_JSON_OUT_H

#include <stdbool.h>
#include <stdint.h>

#include "qs_buf.h"

#define JSON_OUT_DEPTH 16

/* Writes pretty-printed JSON (2-space indent) into a qs_buf. Keys and strings are escaped. */
struct json_out {
    struct qs_buf *buf;
    int depth;
    bool first[JSON_OUT_DEPTH]; /* no member written yet at this depth */
    bool after_key;             /* a key was written: the value follows on the same line */
};

void json_out_init(struct json_out *j, struct qs_buf *buf);
void json_out_object_begin(struct json_out *j);
void json_out_object_end(struct json_out *j);
void json_out_array_begin(struct json_out *j);
void json_out_array_end(struct json_out *j);
void json_out_key(struct json_out *j, const char *key);
/* s may be NULL: writes null. */
void json_out_string(struct json_out *j, const char *s);
void json_out_int(struct json_out *j, int64_t v);
void json_out_bool(struct json_out *j, bool v);
void json_out_null(struct json_out *j);
/* Shorthands for a key and its value. */
void json_out_kv_string(struct json_out *j, const char *key, const char *s);
void json_out_kv_int(struct json_out *j, const char *key, int64_t v);
void json_out_kv_bool(struct json_out *j, const char *key, bool v);

#endif
