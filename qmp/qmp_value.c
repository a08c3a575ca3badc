/* qmp_value.c: read-only views of QEMU's JSON, replies, and the argument builder (json-c underneath). */
#include "qmp_priv.h"
#include "qs_util.h"

#include <stdlib.h>
#include <string.h>

#define JSON_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

json_object *qmp_json_check(json_object *o)
{
    if (!o)
        abort(); /* json-c returns NULL only when out of memory */
    return o;
}

void qmp_json_set(json_object *obj, const char *key, json_object *val)
{
    if (!json_object_is_type(obj, json_type_object) || json_object_object_add(obj, key, val) < 0)
        abort();
}

void qmp_json_push(json_object *arr, json_object *val)
{
    if (!json_object_is_type(arr, json_type_array) || json_object_array_add(arr, val) < 0)
        abort();
}

json_tokener *qmp_tokener_new(void)
{
    json_tokener *tok = json_tokener_new_ex(QMP_JSON_MAX_DEPTH);

    if (!tok)
        abort();
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_ALLOW_TRAILING_CHARS);
    return tok;
}

static char *json_text(const void *o)
{
    const char *s = json_object_to_json_string_ext(qmp_json(o), JSON_FLAGS);

    if (!s)
        abort();
    return qs_xstrdup(s);
}

/* ------------------------------------------------------------------------------------------------ */

enum qmp_type qmp_value_type(const struct qmp_value *v)
{
    switch (json_object_get_type(qmp_json(v))) {
    case json_type_boolean:
        return QMP_BOOL;
    case json_type_int:
        return QMP_INT;
    case json_type_double:
        return QMP_DOUBLE;
    case json_type_string:
        return QMP_STRING;
    case json_type_object:
        return QMP_OBJECT;
    case json_type_array:
        return QMP_ARRAY;
    case json_type_null:
        break;
    }
    return QMP_NULL;
}

const struct qmp_value *qmp_value_get(const struct qmp_value *v, const char *key)
{
    json_object *m = NULL;

    if (!json_object_is_type(qmp_json(v), json_type_object))
        return NULL;
    json_object_object_get_ex(qmp_json(v), key, &m);
    return (const struct qmp_value *)m;
}

const struct qmp_value *qmp_value_path(const struct qmp_value *v, const char *path)
{
    char *copy = qs_xstrdup(path);
    char *key = copy;

    while (v && key) {
        char *dot = strchr(key, '.');
        if (dot)
            *dot = '\0';
        v = qmp_value_get(v, key);
        key = dot ? dot + 1 : NULL;
    }
    free(copy);
    return v;
}

const char *qmp_value_string(const struct qmp_value *v)
{
    if (!json_object_is_type(qmp_json(v), json_type_string))
        return NULL;
    return json_object_get_string(qmp_json(v));
}

const char *qmp_value_get_string(const struct qmp_value *v, const char *key)
{
    return qmp_value_string(qmp_value_get(v, key));
}

bool qmp_value_int(const struct qmp_value *v, int64_t *out)
{
    int64_t i;

    if (!json_object_is_type(qmp_json(v), json_type_int))
        return false;
    i = json_object_get_int64(qmp_json(v));
    /* json-c keeps integers above INT64_MAX as uint64 and clamps them here: they do not fit */
    if (i == INT64_MAX && json_object_get_uint64(qmp_json(v)) > (uint64_t)INT64_MAX)
        return false;
    *out = i;
    return true;
}

bool qmp_value_bool(const struct qmp_value *v, bool *out)
{
    if (!json_object_is_type(qmp_json(v), json_type_boolean))
        return false;
    *out = json_object_get_boolean(qmp_json(v));
    return true;
}

size_t qmp_value_array_len(const struct qmp_value *v)
{
    if (!json_object_is_type(qmp_json(v), json_type_array))
        return 0;
    return json_object_array_length(qmp_json(v));
}

const struct qmp_value *qmp_value_array_at(const struct qmp_value *v, size_t i)
{
    if (i >= qmp_value_array_len(v))
        return NULL;
    return (const struct qmp_value *)json_object_array_get_idx(qmp_json(v), i);
}

size_t qmp_value_object_len(const struct qmp_value *v)
{
    if (!json_object_is_type(qmp_json(v), json_type_object))
        return 0;
    return (size_t)json_object_object_length(qmp_json(v));
}

bool qmp_value_object_at(const struct qmp_value *v, size_t i, const char **key, const struct qmp_value **val)
{
    struct lh_entry *e;

    if (i >= qmp_value_object_len(v))
        return false;
    for (e = json_object_get_object(qmp_json(v))->head; i > 0; i--)
        e = e->next;
    *key = lh_entry_k(e);
    *val = lh_entry_v(e);
    return true;
}

char *qmp_value_to_json(const struct qmp_value *v)
{
    return json_text(v);
}

/* ------------------------------------------------------------------------------------------------ */

struct qmp_reply *qmp_reply_wrap(json_object *value)
{
    struct qmp_reply *r = qs_xcalloc(1, sizeof(*r));

    r->value = value;
    return r;
}

const struct qmp_value *qmp_reply_value(const struct qmp_reply *r)
{
    return r ? (const struct qmp_value *)r->value : NULL;
}

void qmp_reply_free(struct qmp_reply *r)
{
    if (!r)
        return;
    json_object_put(r->value);
    free(r);
}

struct qmp_reply *qmp_reply_parse(const char *json, struct qs_error **err)
{
    json_tokener *tok = qmp_tokener_new();
    size_t len = strlen(json), end;
    json_object *o = NULL;
    struct qmp_reply *r = NULL;
    enum json_tokener_error jerr;

    if (len >= INT32_MAX) {
        qs_error_set(err, QS_ERR_TOOBIG, "JSON text of %zu bytes is too big", len);
        goto out;
    }
    /* the terminating NUL tells json-c the input ends here (a bare number needs that) */
    o = json_tokener_parse_ex(tok, json, (int)len + 1);
    jerr = json_tokener_get_error(tok);
    if (jerr != json_tokener_success) {
        qs_error_set(err, QS_ERR_INVALID, "invalid JSON at offset %zu: %s", json_tokener_get_parse_end(tok),
                     json_tokener_error_desc(jerr));
        goto out;
    }
    end = json_tokener_get_parse_end(tok);
    if (end < len && json[end + strspn(json + end, " \t\r\n")] != '\0') {
        qs_error_set(err, QS_ERR_INVALID, "invalid JSON: text after the value at offset %zu", end);
        goto out;
    }
    r = qmp_reply_wrap(o);
    o = NULL;
out:
    json_object_put(o);
    json_tokener_free(tok);
    return r;
}

/* ------------------------------------------------------------------------------------------------ */

struct qmp_args *qmp_args_new(void)
{
    return (struct qmp_args *)qmp_json_check(json_object_new_object());
}

void qmp_args_free(struct qmp_args *a)
{
    json_object_put(qmp_json(a));
}

void qmp_args_set_str(struct qmp_args *a, const char *key, const char *val)
{
    qmp_json_set(qmp_json(a), key, val ? qmp_json_check(json_object_new_string(val)) : NULL);
}

void qmp_args_set_int(struct qmp_args *a, const char *key, int64_t val)
{
    qmp_json_set(qmp_json(a), key, qmp_json_check(json_object_new_int64(val)));
}

void qmp_args_set_bool(struct qmp_args *a, const char *key, bool val)
{
    qmp_json_set(qmp_json(a), key, qmp_json_check(json_object_new_boolean(val)));
}

void qmp_args_set_null(struct qmp_args *a, const char *key)
{
    qmp_json_set(qmp_json(a), key, NULL);
}

struct qmp_args *qmp_args_set_obj(struct qmp_args *a, const char *key)
{
    json_object *o = qmp_json_check(json_object_new_object());

    qmp_json_set(qmp_json(a), key, o);
    return (struct qmp_args *)o;
}

struct qmp_args *qmp_args_set_list(struct qmp_args *a, const char *key)
{
    json_object *o = qmp_json_check(json_object_new_array());

    qmp_json_set(qmp_json(a), key, o);
    return (struct qmp_args *)o;
}

void qmp_args_push_str(struct qmp_args *list, const char *val)
{
    qmp_json_push(qmp_json(list), val ? qmp_json_check(json_object_new_string(val)) : NULL);
}

struct qmp_args *qmp_args_push_obj(struct qmp_args *list)
{
    json_object *o = qmp_json_check(json_object_new_object());

    qmp_json_push(qmp_json(list), o);
    return (struct qmp_args *)o;
}

char *qmp_args_to_json(const struct qmp_args *a)
{
    return json_text(a);
}
