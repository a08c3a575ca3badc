/* bench_util.h: what the benchmarks that drive qsnap on a harness VM share - samples, runs, filled guest RAM. */
#ifndef BENCH_UTIL_H
#define BENCH_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "qemu_harness.h"
#include "qs_error.h"

/* The program's name in messages ("bench_internal"); set by main before anything else. */
extern const char *bench_prog;

/* Prints "PROG: WHAT[: err's message]" on stderr and exits 1. */
_Noreturn void bench_die(const char *what, struct qs_error *err);

/* ------------------------------------------------------------------------------------------------ */
/* Samples. */

#define BENCH_MAX_SAMPLES 200

struct bench_series {
    double v[BENCH_MAX_SAMPLES];
    size_t n;
};

/* Adds V (samples past BENCH_MAX_SAMPLES are dropped). */
void bench_series_add(struct bench_series *s, double v);
/* Median, smallest and largest sample; NAN when there are none. */
double bench_series_median(const struct bench_series *s);
double bench_series_min(const struct bench_series *s);
double bench_series_max(const struct bench_series *s);

/* ------------------------------------------------------------------------------------------------ */
/* Clocks and files. */

/* CLOCK_REALTIME in microseconds, as QEMU stamps its events. */
int64_t bench_real_us(void);
void bench_sleep_ms(int ms);
/* The whole file at PATH; NULL when it cannot be opened. Caller frees. */
char *bench_read_text(const char *path);

/* ------------------------------------------------------------------------------------------------ */
/* Whole-process runs. */

struct bench_run {
    double wall_ms;
    int64_t start_us, end_us; /* CLOCK_REALTIME, as QEMU stamps its events */
    int status;               /* exit status, 128 + signal */
    long maxrss_kb;           /* the child's peak resident set (wait4 rusage ru_maxrss), KiB */
    double cpu_ms;            /* the child's user + system CPU time: what it cost, whatever the machine's load */
};

/* posix_spawn ARGV (argv[0] a path) with stdin /dev/null, stdout and stderr to OUT_PATH / ERR_PATH; waits
 * (wait4, for the child's peak RSS). The time covers both. Cannot spawn: the benchmark ends. */
void bench_spawn(char *const argv[], const char *out_path, const char *err_path, struct bench_run *r);
/* Runs QSNAP --root ROOT ARGS... (NULL-terminated, at most 12) like bench_spawn; a failure ends the benchmark
 * with qsnap's stderr. */
void bench_qsnap_run(const char *qsnap, const char *root, const char *out_path, const char *err_path,
                     struct bench_run *r, ...);
void bench_qsnap_vrun(const char *qsnap, const char *root, const char *out_path, const char *err_path,
                      struct bench_run *r, va_list ap);

/* ------------------------------------------------------------------------------------------------ */
/* Guest RAM filled with data. */

/*
 * The QEMU arguments that back the guest's MB MiB of RAM with a file of pseudo-random bytes (xorshift64*: no
 * page is zero, none repeats) in DIR: -object memory-backend-file,...,share=off -machine memory-backend=...
 * The guest sees the file's bytes as its RAM; its own writes never reach the file.
 */
struct bench_ram {
    char *file;
    char *object;
    const char *args[5]; /* NULL-terminated, for qh_vm_config.extra_args */
};

/* Creates the file and the arguments. */
void bench_ram_init(struct bench_ram *ram, const char *dir, int mb);
/* Once QEMU has mapped it: unlinks the file (the pages live as long as the mapping) and frees. */
void bench_ram_release(struct bench_ram *ram);

/* Fills guest RAM [1 MiB, 1 MiB + FILL_MB) of VM (anonymous RAM, as users run it: the background snapshot
 * refuses file-backed RAM) with non-zero pseudo-random data: qh_vm_fill_ram(). Failure ends the benchmark. */
void bench_fill_ram(struct qh_vm *vm, int fill_mb);

#endif
