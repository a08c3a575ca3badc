/* qs_buf.c: growable byte buffer with a cap. */
#include "qs_buf.h"
#include "qs_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void qs_buf_init(struct qs_buf *b, size_t max)
{
    memset(b, 0, sizeof(*b));
    b->max = max;
}

void qs_buf_release(struct qs_buf *b)
{
    free(b->data);
    qs_buf_init(b, b->max);
}

char *qs_buf_reserve(struct qs_buf *b, size_t n)
{
    if (b->max && (n > b->max || b->len > b->max - n)) {
        b->toobig = true;
        return NULL;
    }
    qs_xgrow((void **)&b->data, &b->cap, b->len + n + 1, 1);
    return b->data + b->len;
}

int qs_buf_add(struct qs_buf *b, const void *data, size_t len)
{
    char *p = qs_buf_reserve(b, len);
    if (!p)
        return -1;
    if (len)
        memcpy(p, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}

int qs_buf_adds(struct qs_buf *b, const char *s)
{
    return qs_buf_add(b, s, strlen(s));
}

int qs_buf_vaddf(struct qs_buf *b, const char *fmt, va_list ap)
{
    char *s = qs_vasprintf(fmt, ap);
    int r = qs_buf_adds(b, s);
    free(s);
    return r;
}

int qs_buf_addf(struct qs_buf *b, const char *fmt, ...)
{
    va_list ap;
    int r;
    va_start(ap, fmt);
    r = qs_buf_vaddf(b, fmt, ap);
    va_end(ap);
    return r;
}

void qs_buf_consume(struct qs_buf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
    } else {
        memmove(b->data, b->data + n, b->len - n);
        b->len -= n;
    }
    if (b->data)
        b->data[b->len] = '\0';
}

void qs_buf_reset(struct qs_buf *b)
{
    b->len = 0;
    b->toobig = false;
    if (b->data)
        b->data[0] = '\0';
}

char *qs_buf_detach(struct qs_buf *b, size_t *len)
{
    char *d = b->data ? b->data : qs_xstrdup("");
    if (len)
        *len = b->len;
    qs_buf_init(b, b->max);
    return d;
}
