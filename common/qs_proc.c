/* qs_proc.c: fork+exec with an argv, pipes polled with a deadline. */
#include "qs_proc.h"
#include "qs_buf.h"
#include "qs_util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define DEFAULT_MAX_OUTPUT (1u << 20)

void qs_proc_result_release(struct qs_proc_result *res)
{
    if (!res)
        return;
    free(res->out);
    free(res->errout);
    res->out = res->errout = NULL;
}

static void child_exec(char *const argv[], int outfd, int errfd)
{
    int nullfd = open("/dev/null", O_RDONLY);
    if (nullfd < 0 || dup2(nullfd, 0) < 0 || dup2(outfd, 1) < 0 || dup2(errfd, 2) < 0)
        _exit(127);
    signal(SIGPIPE, SIG_DFL);
    execvp(argv[0], argv);
    _exit(127);
}

int qs_proc_run(char *const argv[], int timeout_ms, size_t max_output, struct qs_proc_result *res,
                struct qs_error **err)
{
    return qs_proc_run_watch(argv, timeout_ms, max_output, NULL, NULL, res, err);
}

int qs_proc_run_watch(char *const argv[], int timeout_ms, size_t max_output, qs_proc_watch_fn watch, void *opaque,
                      struct qs_proc_result *res, struct qs_error **err)
{
    int outp[2] = {-1, -1}, errp[2] = {-1, -1};
    struct qs_buf bufs[2];
    int ret = -1, wstatus = 0;
    pid_t pid = -1;
    int64_t deadline = timeout_ms > 0 ? qs_now_ms() + timeout_ms : 0;
    bool killed = false, stopped = false;

    if (!max_output)
        max_output = DEFAULT_MAX_OUTPUT;
    qs_buf_init(&bufs[0], max_output);
    qs_buf_init(&bufs[1], max_output);
    if (pipe2(outp, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0) {
        qs_error_set_errno(err, QS_ERR_IO, errno, "cannot create a pipe");
        goto out;
    }
    pid = fork();
    if (pid < 0) {
        qs_error_set_errno(err, QS_ERR_IO, errno, "cannot run '%s'", argv[0]);
        goto out;
    }
    if (pid == 0)
        child_exec(argv, outp[1], errp[1]);
    qs_close(outp[1]);
    qs_close(errp[1]);
    outp[1] = errp[1] = -1;

    {
        struct pollfd pfd[2] = {{outp[0], POLLIN, 0}, {errp[0], POLLIN, 0}};
        int open_fds = 2;
        while (open_fds > 0) {
            int wait_ms = -1, n;
            if (deadline) {
                int64_t left = deadline - qs_now_ms();
                if (left <= 0) {
                    kill(pid, SIGKILL);
                    killed = true;
                    break;
                }
                wait_ms = (int)left;
            }
            n = poll(pfd, 2, wait_ms);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                qs_error_set_errno(err, QS_ERR_IO, errno, "poll");
                kill(pid, SIGKILL);
                killed = true;
                break;
            }
            for (int i = 0; i < 2; i++) {
                char tmp[8192];
                ssize_t r;
                if (pfd[i].fd < 0 || !(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
                    continue;
                r = read(pfd[i].fd, tmp, sizeof(tmp));
                if (r < 0 && errno == EINTR)
                    continue;
                if (r <= 0) {
                    pfd[i].fd = -1;
                    open_fds--;
                    continue;
                }
                /* output past the cap is dropped; the child still runs to its end */
                if (!bufs[i].toobig)
                    qs_buf_add(&bufs[i], tmp, (size_t)r);
                if (i == 0 && watch && !stopped && watch(opaque, tmp, (size_t)r) != 0) {
                    kill(pid, SIGKILL);
                    stopped = true;
                }
            }
        }
    }
    while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR)
        ;
    pid = -1;
    if (stopped) {
        qs_error_set(err, QS_ERR_CANCELLED, "'%s' was stopped", argv[0]);
        goto out;
    }
    if (killed) {
        if (err && !*err)
            qs_error_set(err, QS_ERR_TIMEOUT, "'%s' did not finish within %d ms", argv[0], timeout_ms);
        goto out;
    }
    if (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 127 && bufs[1].len == 0) {
        qs_error_set(err, QS_ERR_NOTFOUND, "cannot run '%s'", argv[0]);
        goto out;
    }
    res->status = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 128 + WTERMSIG(wstatus);
    res->out = qs_buf_detach(&bufs[0], NULL);
    res->errout = qs_buf_detach(&bufs[1], NULL);
    {
        size_t l = strlen(res->errout);
        while (l > 0 && (res->errout[l - 1] == '\n' || res->errout[l - 1] == '\r'))
            res->errout[--l] = '\0';
    }
    ret = 0;
out:
    if (pid > 0) {
        kill(pid, SIGKILL);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    qs_close(outp[0]);
    qs_close(outp[1]);
    qs_close(errp[0]);
    qs_close(errp[1]);
    qs_buf_release(&bufs[0]);
    qs_buf_release(&bufs[1]);
    return ret;
}

int qs_proc_run_interactive(char *const argv[], struct qs_proc_result *res, struct qs_error **err)
{
    int wstatus = 0;
    pid_t pid = fork();

    if (pid < 0) {
        qs_error_set_errno(err, QS_ERR_IO, errno, "cannot run '%s'", argv[0]);
        return -1;
    }
    if (pid == 0) {
        signal(SIGPIPE, SIG_DFL);
        execvp(argv[0], argv);
        _exit(127);
    }
    while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR)
        ;
    memset(res, 0, sizeof(*res));
    res->status = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 128 + WTERMSIG(wstatus);
    if (res->status == 127) {
        qs_error_set(err, QS_ERR_NOTFOUND, "cannot run '%s'", argv[0]);
        return -1;
    }
    return 0;
}
