/* qs_error.h: the one error type of qsnap, passed as the last parameter of every fallible call. */
#ifndef QS_ERROR_H
#define QS_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

/* Marks the functions libqsnap exports (everything else is built with hidden visibility). */
#ifndef QS_EXPORT
#define QS_EXPORT __attribute__((visibility("default")))
#endif

/* Stable codes: callers branch on these, never on the message text. */
enum qs_error_code {
    QS_ERR_INTERNAL = 1, /* a bug or an impossible state */
    QS_ERR_INVALID,      /* bad argument or bad input document */
    QS_ERR_NOTFOUND,     /* no such domain, snapshot, tag, file, job */
    QS_ERR_EXISTS,       /* already exists */
    QS_ERR_BUSY,         /* a lock is held by someone else */
    QS_ERR_TIMEOUT,      /* a wait ran out */
    QS_ERR_QEMU,         /* QEMU answered with an error (see qmp_class) */
    QS_ERR_IO,           /* a system call failed */
    QS_ERR_UNSUPPORTED,  /* cannot be done with this VM, disk or QEMU */
    QS_ERR_PROTOCOL,     /* the peer broke the QMP protocol */
    QS_ERR_DISCONNECTED, /* the peer went away (EOF, ECONNRESET, EPIPE) */
    QS_ERR_CANCELLED,    /* a callback asked to stop */
    QS_ERR_TOOBIG,       /* a message, file or value exceeded its cap */
    QS_ERR_STATE,        /* the VM or a snapshot is in the wrong state */
    QS_ERR__LAST
};

struct qs_error {
    int code;        /* enum qs_error_code */
    char *message;   /* lower-case start, no full stop, subject quoted */
    char *qmp_class; /* QMP error class ("GenericError", ...) when code is QS_ERR_QEMU, else NULL */
};

/* Sets *err when err is non-NULL and *err is NULL (the first error wins). Never fails: aborts on OOM. */
QS_EXPORT void qs_error_set(struct qs_error **err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Like qs_error_set, with ": strerror(errnum)" appended. */
QS_EXPORT void qs_error_set_errno(struct qs_error **err, int code, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Like qs_error_set, also recording the QMP class (copied). Code is QS_ERR_QEMU. */
QS_EXPORT void qs_error_set_qmp(struct qs_error **err, const char *qmp_class, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prepends "PREFIX: " to an error already set; no-op when err or *err is NULL. */
QS_EXPORT void qs_error_prefix(struct qs_error **err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Moves *src into *dst (when *dst is empty; otherwise frees *src). *src becomes NULL. */
QS_EXPORT void qs_error_propagate(struct qs_error **dst, struct qs_error **src);
/* Frees an error; accepts NULL. */
QS_EXPORT void qs_error_free(struct qs_error *e);
/* Frees *err and sets it to NULL; accepts NULL and *err == NULL. */
QS_EXPORT void qs_error_clear(struct qs_error **err);
/* "internal", "invalid", ...: a stable lower-case name for a code, for JSON output and logs. */
QS_EXPORT const char *qs_error_code_name(int code);

#ifdef __cplusplus
}
#endif
#endif
