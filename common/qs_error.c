/* qs_error.c: the error type. */
#include "qs_error.h"
#include "qs_util.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const code_names[] = {
    [0] = "ok",
    [QS_ERR_INTERNAL] = "internal",
    [QS_ERR_INVALID] = "invalid",
    [QS_ERR_NOTFOUND] = "not-found",
    [QS_ERR_EXISTS] = "exists",
    [QS_ERR_BUSY] = "busy",
    [QS_ERR_TIMEOUT] = "timeout",
    [QS_ERR_QEMU] = "qemu",
    [QS_ERR_IO] = "io",
    [QS_ERR_UNSUPPORTED] = "unsupported",
    [QS_ERR_PROTOCOL] = "protocol",
    [QS_ERR_DISCONNECTED] = "disconnected",
    [QS_ERR_CANCELLED] = "cancelled",
    [QS_ERR_TOOBIG] = "too-big",
    [QS_ERR_STATE] = "state",
};
static_assert(sizeof(code_names) / sizeof(code_names[0]) == QS_ERR__LAST, "code_names out of step");

const char *qs_error_code_name(int code)
{
    if (code <= 0 || code >= QS_ERR__LAST)
        return "internal";
    return code_names[code];
}

__attribute__((format(printf, 5, 0))) static void error_setv(struct qs_error **err, int code,
                                                          const char *qmp_class, const char *suffix,
                                                          const char *fmt, va_list ap)
{
    struct qs_error *e;
    char *msg;

    if (!err || *err)
        return;
    msg = qs_vasprintf(fmt, ap);
    if (suffix) {
        char *full = qs_asprintf("%s: %s", msg, suffix);
        free(msg);
        msg = full;
    }
    e = qs_xcalloc(1, sizeof(*e));
    e->code = code;
    e->message = msg;
    e->qmp_class = qmp_class ? qs_xstrdup(qmp_class) : NULL;
    *err = e;
}

void qs_error_set(struct qs_error **err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    error_setv(err, code, NULL, NULL, fmt, ap);
    va_end(ap);
}

void qs_error_set_errno(struct qs_error **err, int code, int errnum, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    error_setv(err, code, NULL, strerror(errnum), fmt, ap);
    va_end(ap);
}

void qs_error_set_qmp(struct qs_error **err, const char *qmp_class, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    error_setv(err, QS_ERR_QEMU, qmp_class, NULL, fmt, ap);
    va_end(ap);
}

void qs_error_prefix(struct qs_error **err, const char *fmt, ...)
{
    va_list ap;
    char *prefix, *msg;

    if (!err || !*err)
        return;
    va_start(ap, fmt);
    prefix = qs_vasprintf(fmt, ap);
    va_end(ap);
    msg = qs_asprintf("%s: %s", prefix, (*err)->message);
    free(prefix);
    free((*err)->message);
    (*err)->message = msg;
}

void qs_error_propagate(struct qs_error **dst, struct qs_error **src)
{
    if (!src || !*src)
        return;
    if (dst && !*dst) {
        *dst = *src;
    } else {
        qs_error_free(*src);
    }
    *src = NULL;
}

void qs_error_free(struct qs_error *e)
{
    if (!e)
        return;
    free(e->message);
    free(e->qmp_class);
    free(e);
}

void qs_error_clear(struct qs_error **err)
{
    if (!err)
        return;
    qs_error_free(*err);
    *err = NULL;
}
