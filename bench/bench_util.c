/* bench_util.c: what the benchmarks that drive qsnap on a harness VM share - samples, runs, filled guest RAM. */
#include "bench_util.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "qs_util.h"

extern char **environ;

const char *bench_prog = "bench";

void bench_die(const char *what, struct qs_error *err)
{
    fprintf(stderr, "%s: %s%s%s\n", bench_prog, what, err ? ": " : "", err && err->message ? err->message : "");
    exit(1);
}

/* ------------------------------------------------------------------------------------------------ */
/* Samples. */

void bench_series_add(struct bench_series *s, double v)
{
    if (s->n < BENCH_MAX_SAMPLES)
        s->v[s->n++] = v;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double bench_series_median(const struct bench_series *s)
{
    double t[BENCH_MAX_SAMPLES];

    if (s->n == 0)
        return NAN;
    memcpy(t, s->v, s->n * sizeof(double));
    qsort(t, s->n, sizeof(double), cmp_double);
    return s->n % 2 ? t[s->n / 2] : (t[s->n / 2 - 1] + t[s->n / 2]) / 2;
}

double bench_series_min(const struct bench_series *s)
{
    double m = NAN;
    for (size_t i = 0; i < s->n; i++)
        if (isnan(m) || s->v[i] < m)
            m = s->v[i];
    return m;
}

double bench_series_max(const struct bench_series *s)
{
    double m = NAN;
    for (size_t i = 0; i < s->n; i++)
        if (isnan(m) || s->v[i] > m)
            m = s->v[i];
    return m;
}

/* ------------------------------------------------------------------------------------------------ */
/* Clocks and files. */

int64_t bench_real_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void bench_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

char *bench_read_text(const char *path)
{
    FILE *f = fopen(path, "re");
    char *buf = NULL;
    size_t cap = 0, n = 0, r;

    if (!f)
        return NULL;
    do {
        qs_xgrow((void **)&buf, &cap, n + 4097, 1);
        r = fread(buf + n, 1, 4096, f);
        n += r;
    } while (r > 0);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* ------------------------------------------------------------------------------------------------ */
/* Whole-process runs. */

void bench_spawn(char *const argv[], const char *out_path, const char *err_path, struct bench_run *r)
{
    posix_spawn_file_actions_t fa;
    pid_t pid;
    int64_t t0, t1;
    struct rusage ru = {0};
    int st, rc;

    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    r->start_us = bench_real_us();
    t0 = qs_now_ns();
    rc = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
    if (rc != 0)
        bench_die(qs_asprintf("cannot run '%s': %s", argv[0], strerror(rc)), NULL);
    while (wait4(pid, &st, 0, &ru) < 0 && errno == EINTR)
        ;
    t1 = qs_now_ns();
    r->end_us = bench_real_us();
    r->maxrss_kb = ru.ru_maxrss;
    r->cpu_ms = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
                (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
    posix_spawn_file_actions_destroy(&fa);
    r->wall_ms = (double)(t1 - t0) / 1e6;
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

void bench_qsnap_vrun(const char *qsnap, const char *root, const char *out_path, const char *err_path,
                      struct bench_run *r, va_list ap)
{
    char *argv[16] = {(char *)qsnap, "--root", (char *)root};
    size_t n = 3;

    while ((argv[n] = va_arg(ap, char *)) != NULL && n < 14)
        n++;
    bench_spawn(argv, out_path, err_path, r);
    if (r->status != 0) {
        char *e = bench_read_text(err_path);
        bench_die(qs_asprintf("qsnap %s %s failed (exit %d): %s", argv[3], argv[4] ? argv[4] : "", r->status,
                              e ? e : ""),
                  NULL);
    }
}

void bench_qsnap_run(const char *qsnap, const char *root, const char *out_path, const char *err_path,
                     struct bench_run *r, ...)
{
    va_list ap;

    va_start(ap, r);
    bench_qsnap_vrun(qsnap, root, out_path, err_path, r, ap);
    va_end(ap);
}

/* ------------------------------------------------------------------------------------------------ */
/* Guest RAM filled with data. */

void bench_ram_init(struct bench_ram *ram, const char *dir, int mb)
{
    char *path = qs_asprintf("%s/ram-%d.img", dir, mb);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    uint64_t x = 0x9e3779b97f4a7c15ull ^ (uint64_t)mb;
    size_t chunk = 1u << 20;
    uint64_t *buf = qs_xmalloc(chunk);

    if (fd < 0)
        bench_die(qs_asprintf("cannot create '%s': %s", path, strerror(errno)), NULL);
    for (int m = 0; m < mb; m++) {
        for (size_t i = 0; i < chunk / 8; i++) {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            buf[i] = x * 0x2545f4914f6cdd1dull;
        }
        if (qs_write_all(fd, buf, chunk) < 0)
            bench_die(qs_asprintf("cannot write '%s': %s", path, strerror(errno)), NULL);
    }
    free(buf);
    close(fd);
    ram->file = path;
    ram->object = qs_asprintf("memory-backend-file,id=bench-ram,size=%dM,mem-path=%s,share=off", mb, path);
    ram->args[0] = "-object";
    ram->args[1] = ram->object;
    ram->args[2] = "-machine";
    ram->args[3] = "memory-backend=bench-ram";
    ram->args[4] = NULL;
}

void bench_ram_release(struct bench_ram *ram)
{
    if (ram->file)
        unlink(ram->file);
    free(ram->file);
    free(ram->object);
    ram->file = ram->object = NULL;
    ram->args[1] = NULL;
}

void bench_fill_ram(struct qh_vm *vm, int fill_mb)
{
    struct qs_error *err = NULL;

    if (qh_vm_fill_ram(vm, fill_mb, &err) < 0)
        bench_die("filling guest RAM", err);
}
