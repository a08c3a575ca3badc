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

#include "bench_util.h"
#include "qemu_harness.h"
#include "qmp.h"
#include "qs_util.h"

extern char **environ;

#define MAX_ITER 100
#define DOMAIN "bench"
#define EVENT_WAIT_MS 200 /* after qsnap exits, for events still on their way */

enum kind { K_DISK, K_MEM, K__LAST };
static const char *const kind_names[] = {"disk-only (2 disks)", "--memspec (2 disks)"};
_Static_assert(sizeof(kind_names) / sizeof(kind_names[0]) == K__LAST, "kind_names");

struct result {
    int mem_mb;
    struct bench_series pause[K__LAST], wall[K__LAST];
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

/* Runs qsnap --root ROOT ARGS... (NULL-terminated); its wall time in ms. A failure ends the benchmark. */
static double qsnap_run(struct bench *b, ...)
{
    struct bench_run r;
    va_list ap;

    va_start(ap, b);
    bench_qsnap_vrun(b->qsnap, b->root, b->out_path, b->err_path, &r, ap);
    va_end(ap);
    return r.wall_ms;
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
            bench_die("the harness's monitor failed", err);
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
        bench_die("STOP without RESUME: the guest stayed paused", NULL);
    return (double)(resume - stop) / 1e3;
}

static void run_size(struct bench *b, int mb)
{
    static const struct qh_disk disks[] = {{.id = "vda", .boot = true}, {.id = "vdb", .size = 64u << 20}};
    struct result *res = &b->res[b->nres++];
    struct qh_vm_config vc = {.mem_mb = mb, .disks = disks, .n_disks = 2, .start_timeout_ms = 60000};
    struct bench_ram ram = {0};
    struct qs_error *err = NULL;

    res->mem_mb = mb;
    fprintf(stderr, "bench_external: %d MiB of guest RAM, filled\n", mb);
    bench_ram_init(&ram, b->ramdir, mb);
    vc.extra_args = ram.args;
    if (!(b->vm = qh_vm_start(&vc, &err)))
        bench_die("cannot start QEMU", err);
    bench_ram_release(&ram); /* QEMU has mapped it */
    if (qh_vm_wait_counter_advancing(b->vm, 30000, NULL, &err) < 0)
        bench_die("the guest did not boot", err);
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
                bench_die("QEMU is gone", NULL);
            if (i >= 0) {
                bench_series_add(&res->pause[k], pause);
                bench_series_add(&res->wall[k], wall);
            }
            fprintf(stderr, "  %-20s %2d: pause %8.2f ms, qsnap %8.1f ms\n", kind_names[k], i + 1, pause, wall);
            qsnap_run(b, "snapshot-delete", DOMAIN, name, (char *)NULL);
            free(mem);
            free(spec);
        }
    }
    qh_vm_free(b->vm);
    b->vm = NULL;
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
                    bench_series_median(&x->pause[k]), bench_series_min(&x->pause[k]),
                    bench_series_max(&x->pause[k]), bench_series_median(&x->wall[k]), bench_series_min(&x->wall[k]),
                    bench_series_max(&x->wall[k]));
            if (k == K_MEM)
                fprintf(f, "%.1f MiB |\n", (double)x->mem_file_bytes / (1 << 20));
            else
                fprintf(f, "- |\n");
        }
}

static void json_series(FILE *f, const char *key, const struct bench_series *s)
{
    fprintf(f, "\"%s\": {\"median\": %.3f, \"min\": %.3f, \"max\": %.3f, \"samples\": [", key,
            bench_series_median(s), bench_series_min(s), bench_series_max(s));
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

    bench_prog = "bench_external";
    if (!guest || !*guest)
        guest = QSNAP_BENCH_GUEST;
    for (int i = 1; i < argc; i += 2) {
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
    }
    if (b.n < 1 || b.n > MAX_ITER)
        usage();
    if (access(guest, R_OK) < 0)
        bench_die(qs_asprintf("guest boot sector '%s' not found: build the tree or set QSNAP_GUEST", guest), NULL);
    setenv("QSNAP_GUEST", guest, 1);
    if (!qh_qemu_available())
        bench_die("qemu-system-x86_64 is not available", NULL);
    if (!mkdtemp(tmpl))
        bench_die("cannot create a work directory", NULL);
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
            bench_die(qs_asprintf("cannot write '%s': %s", md, strerror(errno)), NULL);
        write_md(&b, f);
        fclose(f);
    }
    if (json) {
        FILE *f = fopen(json, "w");
        if (!f)
            bench_die(qs_asprintf("cannot write '%s': %s", json, strerror(errno)), NULL);
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
