/* qs_util.h: small helpers every module shares: allocation, strings, time, fds, name checks. */
#ifndef QS_UTIL_H
#define QS_UTIL_H

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "qs_error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Allocation that cannot fail: out of memory aborts (as glib and git do). Caller frees with free(). */
void *qs_xmalloc(size_t n);
void *qs_xcalloc(size_t n, size_t size);
void *qs_xrealloc(void *p, size_t n);
/* Grows *p (of *cap elements of size) to hold at least need elements. */
void qs_xgrow(void **p, size_t *cap, size_t need, size_t size);
char *qs_xstrdup(const char *s);
char *qs_xstrndup(const char *s, size_t n);
char *qs_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *qs_vasprintf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

/* Frees a NULL-terminated array of strings and the array; accepts NULL. */
void qs_strv_free(char **v);
/* Number of strings in a NULL-terminated array; 0 for NULL. */
size_t qs_strv_len(char *const *v);
/* Whether the NULL-terminated array V (may be NULL) holds a string equal to S. */
bool qs_strv_has(char *const *v, const char *s);

/* Equal strings, treating two NULLs as equal. */
bool qs_str_equal(const char *a, const char *b);
bool qs_str_has_prefix(const char *s, const char *prefix);
bool qs_str_has_suffix(const char *s, const char *suffix);

/* Monotonic clock in milliseconds / nanoseconds. */
int64_t qs_now_ms(void);
int64_t qs_now_ns(void);

/*
 * Checks that NAME may become one component of a path: non-empty, at most QS_NAME_MAX bytes, valid
 * UTF-8, no '/', no leading '.', no control bytes (< 0x20, 0x7f). WHAT names the kind of thing for the
 * message ("snapshot", "domain"). Returns 0, or -1 with QS_ERR_INVALID.
 */
#define QS_NAME_MAX 200
int qs_name_check(const char *name, const char *what, struct qs_error **err);

/* Valid UTF-8 (no overlongs, no surrogates) of LEN bytes. */
bool qs_utf8_valid(const char *s, size_t len);

/* Sets FD_CLOEXEC / O_NONBLOCK on fd. 0 or -1 with errno. */
int qs_fd_set_cloexec(int fd);
int qs_fd_set_nonblock(int fd, bool on);
/* write()s all of buf, retrying on EINTR and short writes. 0 or -1 with errno. */
int qs_write_all(int fd, const void *buf, size_t len);
/* close() that keeps errno and ignores fd < 0. */
void qs_close(int fd);

/* pthread_create() of a thread with every signal blocked: a library's helper thread never takes a signal
 * meant for its host (a daemon's sigwait() for SIGTERM, a tool's SIGINT handler). 0 or an errno value. */
int qs_thread_start(pthread_t *th, void *(*fn)(void *), void *arg);

#ifdef __cplusplus
}
#endif
#endif
