/* qs_proc.h: run a program from an argv (never a shell), capture its output, bounded in time and size. */
#ifndef QS_PROC_H
#define QS_PROC_H

#include <stddef.h>

#include "qs_error.h"

#ifdef __cplusplus
extern "C" {
#endif

struct qs_proc_result {
    int status;      /* exit status (0-255), or 128 + signal number when killed by a signal */
    char *out;       /* stdout, NUL-terminated; caller frees with qs_proc_result_release() */
    char *errout;    /* stderr, NUL-terminated, trailing newlines removed */
};

/*
 * Runs ARGV[0] (looked up in PATH) with ARGV, stdin from /dev/null, capturing stdout and stderr up to
 * MAX_OUTPUT bytes each (0: 1 MiB). After TIMEOUT_MS (0: none) the child is killed and QS_ERR_TIMEOUT
 * returned. A non-zero exit status is not an error here: read res->status. res is filled on success only.
 */
int qs_proc_run(char *const argv[], int timeout_ms, size_t max_output, struct qs_proc_result *res,
                struct qs_error **err);
void qs_proc_result_release(struct qs_proc_result *res);
/* Sees each piece of the child's stdout as it arrives (qemu-img -p's progress); non-zero stops the child. */
typedef int (*qs_proc_watch_fn)(void *opaque, const char *data, size_t len);
/* qs_proc_run with WATCH (may be NULL) called on stdout as it comes. A WATCH that returns non-zero kills the
 * child (SIGKILL) and the run fails with QS_ERR_CANCELLED. */
int qs_proc_run_watch(char *const argv[], int timeout_ms, size_t max_output, qs_proc_watch_fn watch, void *opaque,
                      struct qs_proc_result *res, struct qs_error **err);
/* Runs ARGV attached to this process's terminal (stdin, stdout, stderr inherited), no time limit; for an
 * editor. res->status as above; out and errout stay NULL. */
int qs_proc_run_interactive(char *const argv[], struct qs_proc_result *res, struct qs_error **err);

#ifdef __cplusplus
}
#endif
#endif
