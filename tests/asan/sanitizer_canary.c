/* sanitizer_canary.c: a program with a known sanitizer finding, in a child whose verdict nobody reads - what
 * check_asan_run.sh feeds asan_run.sh to show that the ASan pass turns such a finding red. Sanitizer builds
 * only (QSNAP_SANITIZE). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <fcntl.h>

/* volatile: the compiler must not see through the faults below and drop them */
static volatile int sink;

static int fault(const char *kind)
{
    if (strcmp(kind, "heap") == 0) {
        char *p = malloc(8);
        volatile int at = 8;
        p[at] = 1; /* heap-buffer-overflow */
        sink = p[0];
        free(p);
    } else if (strcmp(kind, "ub") == 0) {
        volatile int big = INT_MAX;
        sink = big + 1; /* signed integer overflow */
    } else if (strcmp(kind, "leak") == 0) {
        char *volatile p = malloc(64);
        memset(p, 1, 64);
        p = NULL; /* lost: LeakSanitizer reports it at exit */
    } else if (strcmp(kind, "none") != 0) {
        fprintf(stderr, "sanitizer_canary: unknown kind '%s'\n", kind);
        return 2;
    }
    return 0;
}

int main(int argc, char **argv)
{
    pid_t pid;

    if (argc == 3 && strcmp(argv[1], "child") == 0)
        return fault(argv[2]);
    if (argc != 3 || strcmp(argv[1], "parent") != 0) {
        fprintf(stderr, "usage: sanitizer_canary parent|child heap|ub|leak|none\n");
        return 2;
    }
    /* the parent runs the child as tests run qsnap: its stderr captured away, its exit status not looked at */
    if ((pid = fork()) < 0)
        return 2;
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0)
            dup2(null, 2);
        execl("/proc/self/exe", argv[0], "child", argv[2], (char *)NULL);
        _exit(127);
    }
    waitpid(pid, NULL, 0);
    return 0;
}
