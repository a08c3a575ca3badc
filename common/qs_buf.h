/* qs_buf.h: a growable byte buffer with a hard cap and a sticky "too big" error (git strbuf, curl dynbuf). */
#ifndef QS_BUF_H
#define QS_BUF_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

struct qs_buf {
    char *data;   /* always NUL-terminated once anything was added; NULL before */
    size_t len;   /* bytes in use, not counting the NUL */
    size_t cap;   /* bytes allocated */
    size_t max;   /* hard cap on len; 0 = no cap */
    bool toobig;  /* sticky: an append would have passed max; nothing was added by it */
};

/* Embedded buffer lifecycle. max = 0 means unbounded. */
void qs_buf_init(struct qs_buf *b, size_t max);
void qs_buf_release(struct qs_buf *b);
/* Appends; returns 0, or -1 (and sets toobig) when it would pass the cap. Aborts on OOM. */
int qs_buf_add(struct qs_buf *b, const void *data, size_t len);
int qs_buf_adds(struct qs_buf *b, const char *s);
int qs_buf_addf(struct qs_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int qs_buf_vaddf(struct qs_buf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
/* Drops the first n bytes (n <= len). */
void qs_buf_consume(struct qs_buf *b, size_t n);
void qs_buf_reset(struct qs_buf *b);
/* Returns the contents (never NULL; "" when empty) and leaves b empty. Caller frees with free(). */
char *qs_buf_detach(struct qs_buf *b, size_t *len);
/* Makes room for n more bytes at data + len without adding them; returns that pointer or NULL (toobig). */
char *qs_buf_reserve(struct qs_buf *b, size_t n);

#ifdef __cplusplus
}
#endif
#endif
