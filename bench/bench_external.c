/* bench_external.c: the guest's pause during qsnap's external snapshots - disk-only and with memory. */
/*
 * One VM per guest RAM size, RAM filled with pseudo-random data (a file-backed memory backend, as
 * bench_internal.c does: every page is non-zero, so a memory save writes all of it), two qcow2 disks
 * (vda boot, vdb), attached to qsnap under a fresh --root. Per iteration, two snapshots, each deleted again
 * (merged, untimed) so that every create starts from the same two-image chain:
 *   disk-only - snapshot-create-as --disk-only: blockdev-add of two overlays, one blockdev-snapshot
 *               transaction;
 *   memspec   - snapshot-create-as --memspec file=F: stop, RAM and devices to F (migration), the same
 *               transaction, cont.
 * The guest's pause is QEMU's own STOP -> RESUME event timestamps, read on the harness's monitor (a second
 * monitor that only watches); no STOP is a pause of 0 (the vCPUs never stopped). The wall time is qsnap's
 * whole process, posix_spawn to waitpid.
 *
 * Not a test: prints a Markdown table on stdout (progress on stderr) and writes --json / --md.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "qemu_harness.h"
#include "qmp.h"
#include "qs_util.h"

extern char **environ;

#define MAX_ITER 100
#define DOMAIN "bench"
#define EVENT_WAIT_MS 200 /* after qsnap exits, for events still on their way */

struct series {
    double v[MAX_ITER];
    size_t n;
};

enum kind { K_DISK, K_MEM, K__LAST };
static const char *const kind_names[] = {"disk-only (2 disks)", "--memspec (2 disks)"};
_Static_assert(sizeof(kind_names) / sizeof(kind_names[0]) == K__LAST, "kind_names");

struct result {
    int mem_mb;
    struct series pause[K__LAST], wall[K__LAST];
    long long mem_file_bytes;
};

struct bench {
    const char *qsnap;
    char *workdir, *ramdir, *root, *out_path, *err_path;
    int n;
    struct qh_vm *vm;
    struct result res[4];
    size_t nres;
    char qemu_version[64];
};

static void die(const char *what, struct qs_error *err)
{
    fprintf(stderr, "bench_external: %s%s%s\n", what, err ? ": " : "", err && err->message ? err->message : "");
    exit(1);
}

static void series_add(struct series *s, double v)
{
    if (s->n < MAX_ITER)
        s->v[s->n++] = v;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double series_q(const struct series *s, double q)
{
    double t[MAX_ITER];
    if (s->n == 0)
        return NAN;
    memcpy(t, s->v, s->n * sizeof(double));
    qsort(t, s->n, sizeof(double), cmp_double);
    if (q < 0)
        return t[0];
    if (q > 1)
        return t[s->n - 1];
    return s->n % 2 ? t[s->n / 2] : (t[s->n / 2 - 1] + t[s->n / 2]) / 2;
}
#define MEDIAN(s) series_q((s), 0.5)
#define MIN(s) series_q((s), -1)
#define MAX(s) series_q((s), 2)

/* Runs qsnap --root ROOT ARGS... (NULL-terminated); its wall time in ms. A failure ends the benchmark. */
static double qsnap_run(struct bench *b, ...)
{
    char *argv[16] = {(char *)b->qsnap, "--root", b->root};
    posix_spawn_file_actions_t fa;
    size_t n = 3;
    int64_t t0, t1;
    pid_t pid;
    int st, rc;
    va_list ap;

    va_start(ap, b);
    while ((argv[n] = va_arg(ap, char *)) != NULL && n < 14)
        n++;
    va_end(ap);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, b->out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, b->err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    t0 = qs_now_ns();
    if ((rc = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ)) != 0)
        die(qs_asprintf("cannot run '%s': %s", argv[0], strerror(rc)), NULL);
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    t1 = qs_now_ns();
    posix_spawn_file_actions_destroy(&fa);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        char buf[4096] = "";
        int fd = open(b->err_path, O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            ssize_t k = read(fd, buf, sizeof(buf) - 1);
            buf[k > 0 ? k : 0] = '\0';
            close(fd);
        }
        die(qs_asprintf("qsnap %s %s failed: %s", argv[3], argv[4] ? argv[4] : "", buf), NULL);
    }
    return (double)(t1 - t0) / 1e6;
}

/* The guest's pause from the STOP and RESUME events the watching monitor has received, in ms. */
static double observed_pause(struct bench *b)
{
    struct qmp_client *hc = qh_vm_qmp(b->vm);
    struct qs_error *err = NULL;
    struct qmp_event *ev = NULL;
    int64_t stop = 0, resume = 0;

    for (;;) {
        int r = qmp_client_event_wait(hc, NULL, NULL, NULL, EVENT_WAIT_MS, &ev, &err);
        if (r < 0) {
            if (err && err->code == QS_ERR_TIMEOUT) {
                qs_error_free(err);
                break;
            }
            die("the harness's monitor failed", err);
        }
        if (strcmp(qmp_event_name(ev), "STOP") == 0 && !stop)
            stop = qmp_event_timestamp_us(ev);
        else if (strcmp(qmp_event_name(ev), "RESUME") == 0)
            resume = qmp_event_timestamp_us(ev);
        qmp_event_free(ev);
        ev = NULL;
    }
    if (!stop)
        return 0.0;
    if (!resume)
        die("STOP without RESUME: the guest stayed paused", NULL);
    return (double)(resume - stop) / 1e3;
}

static char *ram_file_create(struct bench *b, int mb)
{
    char *path = qs_asprintf("%s/ram-%d.img", b->ramdir, mb);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    uint64_t x = 0x9e3779b97f4a7c15ull ^ (uint64_t)mb, *buf = qs_xmalloc(1u << 20);

    if (fd < 0)
        die(qs_asprintf("cannot create '%s': %s", path, strerror(errno)), NULL);
    for (int m = 0; m < mb; m++) {
        for (size_t i = 0; i < (1u << 20) / 8; i++) {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            buf[i] = x * 0x2545f4914f6cdd1dull;
        }
        if (qs_write_all(fd, buf, 1u << 20) < 0)
            die(qs_asprintf("cannot write '%s': %s", path, strerror(errno)), NULL);
    }
    free(buf);
    close(fd);
    return path;
}

static void run_size(struct bench *b, int mb)
{
    static const struct qh_disk disks[] = {{.id = "vda", .boot = true}, {.id = "vdb", .size = 64u << 20}};
    struct result *res = &b->res[b->nres++];
    struct qh_vm_config vc = {.mem_mb = mb, .disks = disks, .n_disks = 2, .start_timeout_ms = 60000};
    char *ram = ram_file_create(b, mb), *extra[5] = {NULL};
    char *obj = qs_asprintf("memory-backend-file,id=bench-ram,size=%dM,mem-path=%s,share=off", mb, ram);
    struct qs_error *err = NULL;

    res->mem_mb = mb;
    fprintf(stderr, "bench_external: %d MiB of guest RAM, filled\n", mb);
    extra[0] = "-object";
    extra[1] = obj;
    extra[2] = "-machine";
    extra[3] = "memory-backend=bench-ram";
    vc.extra_args = (const char *const *)extra;
    if (!(b->vm = qh_vm_start(&vc, &err)))
        die("cannot start QEMU", err);
    unlink(ram); /* QEMU has mapped it */
    if (qh_vm_wait_counter_advancing(b->vm, 30000, NULL, &err) < 0)
        die("the guest did not boot", err);
    snprintf(b->qemu_version, sizeof(b->qemu_version), "%s", qmp_client_version(qh_vm_qmp(b->vm)));
    b->root = qs_asprintf("%s/root-%d", b->workdir, mb);
    qsnap_run(b, "attach", DOMAIN, "--qmp", qh_vm_socket_path(b->vm), (char *)NULL);

    /* one untimed round of each first (the first migration after boot is slower) */
    for (int i = -1; i < b->n; i++) {
        for (int k = 0; k < K__LAST; k++) {
            char name[32], *mem = NULL, *spec = NULL;
            double wall, pause;
            struct stat st;
            snprintf(name, sizeof(name), "%s%d", k == K_DISK ? "d" : "m", i + 1);
            observed_pause(b); /* drain */
            if (k == K_DISK) {
                wall = qsnap_run(b, "snapshot-create-as", DOMAIN, name, "--disk-only", (char *)NULL);
            } else {
                mem = qs_asprintf("%s/%s.mem", b->workdir, name);
                spec = qs_asprintf("file=%s", mem);
                wall = qsnap_run(b, "snapshot-create-as", DOMAIN, name, "--memspec", spec, (char *)NULL);
                if (stat(mem, &st) == 0)
                    res->mem_file_bytes = (long long)st.st_size;
            }
            pause = observed_pause(b);
            if (!qh_vm_running(b->vm))
                die("QEMU is gone", NULL);
            if (i >= 0) {
                series_add(&res->pause[k], pause);
                series_add(&res->wall[k], wall);
            }
            fprintf(stderr, "  %-20s %2d: pause %8.2f ms, qsnap %8.1f ms\n", kind_names[k], i + 1, pause, wall);
            qsnap_run(b, "snapshot-delete", DOMAIN, name, (char *)NULL);
            free(mem);
            free(spec);
        }
    }
    qh_vm_free(b->vm);
    b->vm = NULL;
    free(obj);
    free(ram);
}

static void write_md(const struct bench *b, FILE *f)
{
    fprintf(f, "# qsnap external snapshots: the guest's pause\n\n");
    fprintf(f, "QEMU %s, TCG, guest RAM filled with pseudo-random data (file-backed memory backend), two qcow2 "
               "disks; %d runs per row after one untimed round. Pause: QEMU's STOP -> RESUME event timestamps "
               "on a second monitor (0: the vCPUs never stopped). qsnap: the whole process, spawn to exit.\n\n",
            b->qemu_version, b->n);
    fprintf(f, "| guest RAM | snapshot | pause median (min-max), ms | qsnap median (min-max), ms | memory file |\n");
    fprintf(f, "|---|---|---|---|---|\n");
    for (size_t r = 0; r < b->nres; r++)
        for (int k = 0; k < K__LAST; k++) {
            const struct result *x = &b->res[r];
            fprintf(f, "| %d MiB | %s | %.2f (%.2f-%.2f) | %.1f (%.1f-%.1f) | ", x->mem_mb, kind_names[k],
                    MEDIAN(&x->pause[k]), MIN(&x->pause[k]), MAX(&x->pause[k]), MEDIAN(&x->wall[k]),
                    MIN(&x->wall[k]), MAX(&x->wall[k]));
            if (k == K_MEM)
                fprintf(f, "%.1f MiB |\n", (double)x->mem_file_bytes / (1 << 20));
            else
                fprintf(f, "- |\n");
        }
}

static void json_series(FILE *f, const char *key, const struct series *s)
{
    fprintf(f, "\"%s\": {\"median\": %.3f, \"min\": %.3f, \"max\": %.3f, \"samples\": [", key, MEDIAN(s), MIN(s),
            MAX(s));
    for (size_t i = 0; i < s->n; i++)
        fprintf(f, "%s%.3f", i ? ", " : "", s->v[i]);
    fprintf(f, "]}");
}

static void write_json(const struct bench *b, FILE *f)
{
    fprintf(f, "{\"qemu\": \"%s\", \"runs\": %d, \"results\": [", b->qemu_version, b->n);
    for (size_t r = 0; r < b->nres; r++) {
        const struct result *x = &b->res[r];
        fprintf(f, "%s\n  {\"guest_ram_mib\": %d, \"memory_file_bytes\": %lld", r ? "," : "", x->mem_mb,
                x->mem_file_bytes);
        for (int k = 0; k < K__LAST; k++) {
            fprintf(f, ", \"%s\": {", k == K_DISK ? "disk_only" : "memspec");
            json_series(f, "pause_ms", &x->pause[k]);
            fprintf(f, ", ");
            json_series(f, "qsnap_ms", &x->wall[k]);
            fprintf(f, "}");
        }
        fprintf(f, "}");
    }
    fprintf(f, "\n]}\n");
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_external [--qsnap PATH] [--guest PATH] [-n RUNS] [--sizes MB,MB,...] "
                    "[--json FILE] [--md FILE]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    struct bench b = {.qsnap = QSNAP_BENCH_QSNAP, .n = 5};
    const char *guest = getenv("QSNAP_GUEST"), *json = NULL, *md = NULL, *sizes = "256,1024";
    char tmpl[] = "/tmp/qsnap-bench-ext.XXXXXX", shm[] = "/dev/shm/qsnap-bench-ext.XXXXXX";
    struct stat st;

    if (!guest || !*guest)
        guest = QSNAP_BENCH_GUEST;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            usage();
        if (strcmp(a, "--qsnap") == 0)
            b.qsnap = v;
        else if (strcmp(a, "--guest") == 0)
            guest = v;
        else if (strcmp(a, "-n") == 0)
            b.n = atoi(v);
        else if (strcmp(a, "--sizes") == 0)
            sizes = v;
        else if (strcmp(a, "--json") == 0)
            json = v;
        else if (strcmp(a, "--md") == 0)
            md = v;
        else
            usage();
        i++;
    }
    if (b.n < 1 || b.n > MAX_ITER)
        usage();
    if (access(guest, R_OK) < 0)
        die(qs_asprintf("guest boot sector '%s' not found: build the tree or set QSNAP_GUEST", guest), NULL);
    setenv("QSNAP_GUEST", guest, 1);
    if (!qh_qemu_available())
        die("qemu-system-x86_64 is not available", NULL);
    if (!mkdtemp(tmpl))
        die("cannot create a work directory", NULL);
    b.workdir = tmpl;
    b.out_path = qs_asprintf("%s/out.txt", b.workdir);
    b.err_path = qs_asprintf("%s/err.txt", b.workdir);
    /* guest RAM files on tmpfs when there is one: no writeback of them competing with the memory save */
    b.ramdir = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && mkdtemp(shm) ? shm : tmpl;

    for (const char *p = sizes; *p && b.nres < sizeof(b.res) / sizeof(b.res[0]);) {
        char *end;
        long mb = strtol(p, &end, 10);
        if (end == p || mb < 64)
            usage();
        run_size(&b, (int)mb);
        p = *end == ',' ? end + 1 : end;
    }
    write_md(&b, stdout);
    if (md) {
        FILE *f = fopen(md, "w");
        if (!f)
            die(qs_asprintf("cannot write '%s': %s", md, strerror(errno)), NULL);
        write_md(&b, f);
        fclose(f);
    }
    if (json) {
        FILE *f = fopen(json, "w");
        if (!f)
            die(qs_asprintf("cannot write '%s': %s", json, strerror(errno)), NULL);
        write_json(&b, f);
        fclose(f);
    }
    if (b.ramdir != b.workdir)
        rmdir(b.ramdir);
    {
        char *argv_rm[] = {"rm", "-rf", b.workdir, NULL};
        pid_t pid;
        int wst;
        if (posix_spawnp(&pid, "rm", NULL, NULL, argv_rm, environ) == 0)
            waitpid(pid, &wst, 0);
    }
    return 0;
}
