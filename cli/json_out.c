/* json_out.c: streaming JSON writer with RFC 8259 string escaping. */
#include "json_out.h"

#include <stdio.h>
#include <string.h>

void json_out_init(struct json_out *j, struct qs_buf *buf)
{
    memset(j, 0, sizeof(*j));
    j->buf = buf;
    j->first[0] = true;
}

static void indent(struct json_out *j)
{
    qs_buf_adds(j->buf, "\n");
    for (int i = 0; i < j->depth; i++)
        qs_buf_adds(j->buf, "  ");
}

/* Separator and line break before a value or key at the current depth. */
static void before_item(struct json_out *j)
{
    if (j->after_key) {
        j->after_key = false;
        return;
    }
    if (j->depth == 0)
        return;
    if (!j->first[j->depth])
        qs_buf_adds(j->buf, ",");
    j->first[j->depth] = false;
    indent(j);
}

static void open_(struct json_out *j, const char *c)
{
    before_item(j);
    qs_buf_adds(j->buf, c);
    if (j->depth + 1 < JSON_OUT_DEPTH)
        j->depth++;
    j->first[j->depth] = true;
}

static void close_(struct json_out *j, const char *c)
{
    bool empty = j->first[j->depth];
    if (j->depth > 0)
        j->depth--;
    if (!empty)
        indent(j);
    qs_buf_adds(j->buf, c);
    if (j->depth == 0)
        qs_buf_adds(j->buf, "\n");
}

void json_out_object_begin(struct json_out *j) { open_(j, "{"); }
void json_out_object_end(struct json_out *j) { close_(j, "}"); }
void json_out_array_begin(struct json_out *j) { open_(j, "["); }
void json_out_array_end(struct json_out *j) { close_(j, "]"); }

static void write_string(struct qs_buf *b, const char *s)
{
    qs_buf_adds(b, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': qs_buf_adds(b, "\\\""); break;
        case '\\': qs_buf_adds(b, "\\\\"); break;
        case '\n': qs_buf_adds(b, "\\n"); break;
        case '\r': qs_buf_adds(b, "\\r"); break;
        case '\t': qs_buf_adds(b, "\\t"); break;
        case '\b': qs_buf_adds(b, "\\b"); break;
        case '\f': qs_buf_adds(b, "\\f"); break;
        default:
            if (*p < 0x20 || *p == 0x7f)
                qs_buf_addf(b, "\\u%04x", *p);
            else
                qs_buf_add(b, p, 1);
        }
    }
    qs_buf_adds(b, "\"");
}

void json_out_key(struct json_out *j, const char *key)
{
    before_item(j);
    write_string(j->buf, key);
    qs_buf_adds(j->buf, ": ");
    j->after_key = true;
}

static void scalar(struct json_out *j, const char *text)
{
    before_item(j);
    qs_buf_adds(j->buf, text);
    if (j->depth == 0)
        qs_buf_adds(j->buf, "\n");
}

void json_out_string(struct json_out *j, const char *s)
{
    if (!s) {
        json_out_null(j);
        return;
    }
    before_item(j);
    write_string(j->buf, s);
    if (j->depth == 0)
        qs_buf_adds(j->buf, "\n");
}

void json_out_int(struct json_out *j, int64_t v)
{
    char tmp[32];
    snprintf(tmp, sizeof(tmp), "%lld", (long long)v);
    scalar(j, tmp);
}

void json_out_bool(struct json_out *j, bool v) { scalar(j, v ? "true" : "false"); }
void json_out_null(struct json_out *j) { scalar(j, "null"); }

void json_out_kv_string(struct json_out *j, const char *key, const char *s)
{
    json_out_key(j, key);
    json_out_string(j, s);
}

void json_out_kv_int(struct json_out *j, const char *key, int64_t v)
{
    json_out_key(j, key);
    json_out_int(j, v);
}

void json_out_kv_bool(struct json_out *j, const char *key, bool v)
{
    json_out_key(j, key);
    json_out_bool(j, v);
}
