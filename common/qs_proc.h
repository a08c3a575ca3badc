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
/* Runs ARGV attached to this process's terminal (stdin, stdout, stderr inherited), no time limit; for an
 * editor. res->status as above; out and errout stay NULL. */
int qs_proc_run_interactive(char *const argv[], struct qs_proc_result *res, struct qs_error **err);

#ifdef __cplusplus
}
#endif
#endif
