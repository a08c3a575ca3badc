/* bench_summary.c: one table - qsnap vs the raw QMP floor vs virsh, per operation, guest pause, peak RSS. */
/*
 * For each guest RAM size (--sizes, default 256,1024), RAM filled with data:
 *   qsnap - the binary, posix_spawn to wait4 (wall time and ru_maxrss) against a harness VM;
 *   raw   - the same QEMU work on a fresh QMP connection to the same VM (connect untimed): the floor;
 *   virsh - libvirt 9.0 (`virsh -c qemu:///system`, one process per command) on a libvirt domain with the
 *           same boot disk image (the counter guest) and RAM size, when --virsh is given.
 * Operations: create (internal; external --disk-only; --memspec; live = background-snapshot), revert (in
 * place for qsnap/raw; libvirt restarts QEMU), delete, list; plus snapshot-list with 10 / 1,000 / 10,000
 * snapshots (metadata only: qsnap and virsh).
 *
 * Guest RAM is QEMU's ordinary anonymous RAM, filled through /proc/PID/mem at the host address HMP
 * `gpa2hva` gives for guest-physical 1 MiB, up to 2 MiB below the top (SeaBIOS keeps its tables there): the
 * same way for the harness's QEMU and libvirt's, and background-snapshot (userfaultfd write-protect) works
 * on it. The guest's pause is QEMU's STOP -> RESUME event stamps, read on a second monitor that only
 * watches (the harness's own; for libvirt an extra -qmp socket given with <qemu:commandline>).
 *
 * Raw floors: internal = snapshot-save / -load / -delete jobs, query-named-block-nodes; disk-only =
 * transaction{blockdev-snapshot-sync}; memspec = stop, migrate to a passed fd, transaction, cont; live =
 * background-snapshot capability on, migrate to a passed fd while the guest runs (QEMU stops it only to
 * write-protect RAM and save the devices), capability off again - memory only: stopping the guest first to
 * take a disk overlay at the same instant kept it paused for 1.3-1.8 s in QEMU 7.2 (256 MiB), so that is not
 * the floor. Live snapshots run last, on a VM of their own: once a QEMU 7.2 process has taken a background
 * snapshot, its later stop-and-migrate saves were 4-5x slower.
 *
 * Not a test: writes --md / --json / --pause-dat (gnuplot data) and prints the Markdown on stdout.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"
#include "qemu_harness.h"
#include "qmp.h"
#include "qs_proc.h"
#include "qs_util.h"

#define DOMAIN "bench"
#define VDOM "qsnapbench"
#define VDOM_UUID "5a1e0b3c-9d2f-4c11-8a7e-0b5e7c0ffee1"
#define VIRSH "/usr/bin/virsh"
#define RAW_JOB "bench-raw"
#define SETTLE_MS 20
#define MAX_SIZES 6
#define MAX_COUNTS 4
#define FILL_START (1u << 20)

enum side { S_Q, S_R, S_V, S__LAST };
enum idle_row { IDLE_CREATE, IDLE_REVERT, IDLE_DELETE, IDLE_CREATE_DISK, IDLE_REVERT_DISK, IDLE_DELETE_DISK, IDLE__LAST };
static const char *const idle_names[] = {"create (internal)", "revert", "delete (internal)",
                                         "create, qsnap's state on disk", "revert, qsnap's state on disk",
                                         "delete, qsnap's state on disk"};
static const char *const idle_keys[] = {"create", "revert", "delete", "create_state_on_disk", "revert_state_on_disk",
                                        "delete_state_on_disk"};
_Static_assert(sizeof(idle_names) / sizeof(idle_names[0]) == IDLE__LAST, "idle_names");
static const char *const side_names[] = {"qsnap", "raw", "virsh"};

/* An internal create right after a revert (snapshot-load) and one with no load before it: QEMU copies the
 * loaded snapshot's vmstate clusters on write (COW) in the first case - measured, that costs 2-3x the
 * save. Every create of a row starts from the same state on all sides (see run_size). */
enum row { R_CREATE, R_CREATE_FRESH, R_DISK, R_MEM, R_LIVE, R_REVERT, R_DELETE, R_LIST, R__LAST };
static const char *const row_names[] = {"create (internal), after a revert", "create (internal), no revert before",
                                        "create --disk-only (external)",     "create --memspec (external)",
                                        "create live (background-snapshot)", "revert",
                                        "delete (internal)",                 "list"};
static const char *const row_keys[] = {"create_internal",  "create_internal_fresh", "create_disk_only",
                                       "create_memspec",   "create_live",           "revert",
                                       "delete",           "list"};
_Static_assert(sizeof(row_names) / sizeof(row_names[0]) == R__LAST, "row_names");
_Static_assert(sizeof(row_keys) / sizeof(row_keys[0]) == R__LAST, "row_keys");

struct cell {
    struct bench_series t[S__LAST];     /* wall, ms */
    struct bench_series pause[S__LAST]; /* STOP -> RESUME, ms */
    struct bench_series job[S__LAST];   /* QEMU's job: its JOB_STATUS_CHANGE "created" -> "concluded", ms */
    struct bench_series rest[S__LAST];  /* the wall time outside that job (the side's own), ms */
    struct bench_series cpu;            /* qsnap's own CPU time (user + system), ms */
    long rss_kb;                        /* largest qsnap ru_maxrss */
    char *na[S__LAST];                  /* why a side has no numbers */
};

struct sizeres {
    int mb;
    int64_t vmstate_bytes;
    double live_first_ms; /* the first raw background snapshot's pause (untimed warm-up) */
    double mem_first_ms;  /* the first stop-and-migrate on the VM, after the internal rows (untimed warm-up) */
    struct cell c[R__LAST];
};

struct listres {
    size_t count;
    struct cell c; /* S_Q and S_V */
    double q_cold_ms;
};

enum scale_row { SC_CREATE, SC_INFO, SC_REVERT, SC_DELETE, SC_LIST, SC__LAST };
static const char *const scale_names[] = {"create (internal)", "info", "revert", "delete (internal)", "list"};
static const char *const scale_keys[] = {"create", "info", "revert", "delete", "list"};
_Static_assert(sizeof(scale_names) / sizeof(scale_names[0]) == SC__LAST, "scale_names");

struct scaleres {
    size_t count;            /* snapshots in the domain (one real, the rest metadata only) */
    struct cell op[SC__LAST]; /* qsnap's whole process */
    double cold_ms;          /* the first listing after the files appeared */
};

#define MAX_REDEF_ROUNDS 9

struct redefres {
    size_t count;
    size_t runs;                       /* of COUNT redefines each, over all rounds */
    double op_median_ms;               /* one redefine (one process), median over them all */
    double wall_ms, cpu_ms;            /* totals over all runs */
    double round_ms[MAX_REDEF_ROUNDS]; /* one run's mean time in each round */
};

struct pausept {
    int mb;
    struct bench_series savevm, memspec, live, qlive;
    double live_first_ms;
};

struct bench {
    const char *qsnap, *workdir, *shmdir;
    int n, n_slow, n_scale, redef_rounds;
    bool virsh, manage_libvirtd, skip_live;
    bool aa; /* --aa: qsnap's turns of the internal rows run raw's operations (an A/A control) */
    bool virsh_hung; /* libvirtd did not answer after a restart: virsh is not run again */
    int live_ok; /* -1 unknown, 0 unsupported, 1 supported */
    char *live_why;
    char *raw_base; /* the node the last raw overlay went on (raw_undo commits it back into that one) */
    struct sizeres sizes[MAX_SIZES];
    size_t nsizes;
    struct listres lists[MAX_COUNTS];
    size_t nlists;
    struct scaleres scale[MAX_COUNTS];
    size_t nscale;
    struct redefres redef[MAX_COUNTS];
    size_t nredef;
    const char *libvirt_root; /* libvirt in a root of its own (scripts/libvirt11), NULL: the system's */
    char libvirt_version[64], virsh_qemu[64];
    struct pausept pts[MAX_SIZES + 4];
    int idle_mb;
    struct cell idle[IDLE__LAST];
    struct bench_series floor_true, floor_version; /* posix_spawn /bin/true; qsnap version */
    size_t npts;
    char *qsnap_template, *qsnap_domxml, *virsh_template;
    char qemu_version[64];
    double load_before, load_after, total_s;
    time_t started;
    /* per VM */
    struct qh_vm *vm;
    char *root, *out_path, *err_path;
    struct qmp_client *vmon; /* libvirt domain's extra monitor */
    char *vmon_path;
    int seq;
};

static double med(const struct bench_series *s);

static void progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void progress(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("bench_summary: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs("\n", stderr);
    va_end(ap);
}

static void write_text(const char *path, const char *text, int age_s)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || qs_write_all(fd, text, strlen(text)) < 0)
        bench_die(qs_asprintf("cannot write '%s': %s", path, strerror(errno)), NULL);
    if (age_s > 0) {
        struct timespec t[2];
        clock_gettime(CLOCK_REALTIME, &t[0]);
        t[0].tv_sec -= age_s;
        t[1] = t[0];
        futimens(fd, t);
    }
    close(fd);
}

static void make_dir(const char *path, mode_t mode)
{
    if (mkdir(path, mode) < 0 && errno != EEXIST)
        bench_die(qs_asprintf("cannot create '%s': %s", path, strerror(errno)), NULL);
    chmod(path, mode);
}

static void remove_tree(const char *path)
{
    char *argv[] = {"rm", "-rf", "--", (char *)path, NULL};
    struct qs_proc_result res = {0};
    struct qs_error *err = NULL;
    if (qs_proc_run(argv, 120000, 0, &res, &err) == 0)
        qs_proc_result_release(&res);
    qs_error_free(err);
}

static char *first_line(const char *s)
{
    size_t n = strcspn(s ? s : "", "\r\n");
    return qs_asprintf("%.*s", (int)n, s ? s : "");
}

/* ------------------------------------------------------------------------------------------------ */
/* Processes. */

/* qsnap --root ROOT ARGS... (NULL-terminated). Returns the exit status; the run in *r. */
static int qsnap_try(struct bench *b, struct bench_run *r, ...)
{
    char *argv[20] = {(char *)b->qsnap, "--root", b->root};
    size_t n = 3;
    va_list ap;

    va_start(ap, r);
    while (n < 18 && (argv[n] = va_arg(ap, char *)) != NULL)
        n++;
    va_end(ap);
    argv[n] = NULL;
    bench_spawn(argv, b->out_path, b->err_path, r);
    return r->status;
}

static void must(struct bench *b, int status, const char *what)
{
    if (status != 0) {
        char *e = bench_read_text(b->err_path);
        bench_die(qs_asprintf("%s failed (exit %d): %s", what, status, e ? e : ""), NULL);
    }
}

/* The start of a virsh command line: virsh [in the libvirt root] -c qemu:///system. Returns its length. */
static size_t virsh_prefix(const struct bench *b, char **argv)
{
    size_t n = 0;
    if (b->libvirt_root) {
        argv[n++] = "/usr/sbin/chroot";
        argv[n++] = (char *)b->libvirt_root;
    }
    argv[n++] = VIRSH;
    argv[n++] = "-c";
    argv[n++] = "qemu:///system";
    return n;
}

/* A path of libvirt's (absolute, as libvirt sees it) as the host sees it. Caller frees. */
static char *libvirt_path(const struct bench *b, const char *path)
{
    return qs_asprintf("%s%s", b->libvirt_root ? b->libvirt_root : "", path);
}

/* virsh -c qemu:///system ARGS... (NULL-terminated). */
static int virsh_try(struct bench *b, struct bench_run *r, ...)
{
    char *argv[28];
    size_t n = virsh_prefix(b, argv);
    va_list ap;

    va_start(ap, r);
    while (n < 22 && (argv[n] = va_arg(ap, char *)) != NULL)
        n++;
    va_end(ap);
    argv[n] = NULL;
    bench_spawn(argv, b->out_path, b->err_path, r);
    return r->status;
}

/* What virsh talks to: "libvirt X (daemon)" and its QEMU, from `virsh version`. */
static void virsh_versions(struct bench *b)
{
    struct bench_run r;
    char *out, *p;

    snprintf(b->libvirt_version, sizeof(b->libvirt_version), "libvirt ?");
    if (virsh_try(b, &r, "version", (char *)NULL) != 0 || !(out = bench_read_text(b->out_path)))
        return;
    if ((p = strstr(out, "Running against daemon: ")))
        snprintf(b->libvirt_version, sizeof(b->libvirt_version), "libvirt %.*s", (int)strcspn(p + 24, "\n"),
                 p + 24);
    else if ((p = strstr(out, "Using library: libvirt ")))
        snprintf(b->libvirt_version, sizeof(b->libvirt_version), "libvirt %.*s", (int)strcspn(p + 23, "\n"),
                 p + 23);
    if ((p = strstr(out, "Running hypervisor: ")))
        snprintf(b->virsh_qemu, sizeof(b->virsh_qemu), " with %.*s", (int)strcspn(p + 20, "\n"), p + 20);
    free(out);
}

/* ------------------------------------------------------------------------------------------------ */
/* Monitors. */

static struct qmp_client *mon_connect(const char *path)
{
    struct qmp_options o = {.connect_timeout_ms = 30000, .timeout_ms = 600000};
    struct qs_error *err = NULL;
    struct qmp_client *c = qmp_client_connect(path, &o, &err);
    if (!c)
        bench_die(qs_asprintf("QMP connect to '%s'", path), err);
    return c;
}

static void mon_drain(struct qmp_client *w)
{
    struct qs_error *err = NULL;
    struct qmp_event *ev;

    if (qmp_client_poll(w, &err) < 0)
        bench_die("the watching monitor failed", err);
    while ((ev = qmp_client_event_pop(w)))
        qmp_event_free(ev);
}

/* STOP -> RESUME from the watching monitor's events, ms; 0 when the vCPUs never stopped. With JOB, QEMU's
 * job's time from its "created" to its "concluded" stamp (NAN when no job ran). */
static double mon_pause_job(struct qmp_client *w, bool pause, double *job)
{
    struct qs_error *err = NULL;
    struct qmp_event *ev = NULL;
    int64_t stop = 0, resume = 0, created = 0, concluded = 0;

    for (;;) {
        int r = qmp_client_event_wait(w, NULL, NULL, NULL, stop && !resume ? 30000 : 30, &ev, &err);
        if (r < 0) {
            if (err && err->code == QS_ERR_TIMEOUT) {
                qs_error_free(err);
                break;
            }
            bench_die("the watching monitor failed", err);
        }
        if (strcmp(qmp_event_name(ev), "JOB_STATUS_CHANGE") == 0) {
            const char *st = qmp_value_get_string(qmp_event_data(ev), "status");
            if (qs_str_equal(st, "created") && !created)
                created = qmp_event_timestamp_us(ev);
            else if (qs_str_equal(st, "concluded") && created && !concluded)
                concluded = qmp_event_timestamp_us(ev);
        }
        if (strcmp(qmp_event_name(ev), "STOP") == 0 && !stop)
            stop = qmp_event_timestamp_us(ev);
        else if (strcmp(qmp_event_name(ev), "RESUME") == 0 && stop)
            resume = qmp_event_timestamp_us(ev);
        qmp_event_free(ev);
        ev = NULL;
    }
    if (job)
        *job = created && concluded ? (double)(concluded - created) / 1e3 : NAN;
    if (!stop)
        return 0.0;
    if (!resume && pause)
        bench_die("STOP without RESUME: the guest stayed paused", NULL);
    return (double)(resume - stop) / 1e3;
}

static double mon_pause(struct qmp_client *w)
{
    return mon_pause_job(w, true, NULL);
}

/* A cell's job and rest series from one run of WALL ms whose job took JOB ms (NAN: none). */
static void cell_job(struct cell *c, enum side sd, double wall, double job)
{
    if (isnan(job))
        return;
    bench_series_add(&c->job[sd], job);
    bench_series_add(&c->rest[sd], wall - job);
}

static void hmp(struct qmp_client *c, const char *cmd, char **out)
{
    struct qs_error *err = NULL;
    if (qmp_client_hmp(c, cmd, out, &err) < 0)
        bench_die(qs_asprintf("HMP %s", cmd), err);
}

static void exec_ok(struct qmp_client *c, const char *cmd, struct qmp_args *a, struct qmp_reply **rep)
{
    struct qs_error *err = NULL;
    if (qmp_client_execute(c, cmd, a, rep, &err) < 0)
        bench_die(cmd, err);
    qmp_args_free(a);
}

/* Waits for the counter guest's magic (it has booted). */
static void wait_guest(struct qmp_client *c)
{
    for (int i = 0; i < 600; i++) {
        char *out = NULL;
        char want[16];
        hmp(c, "xp /1wx 0x9008", &out);
        snprintf(want, sizeof(want), "0x%08x", QH_COUNTER_MAGIC);
        if (out && strstr(out, want)) {
            free(out);
            return;
        }
        free(out);
        bench_sleep_ms(50);
    }
    bench_die("the guest did not boot", NULL);
}

/* Fills guest RAM [1 MiB, MB - 2 MiB) with non-zero pseudo-random data through /proc/PID/mem. */
static void fill_ram(struct qmp_client *c, pid_t pid, int mb)
{
    char *out = NULL, *p, *path;
    unsigned long long hva;
    size_t chunk = 1u << 20;
    uint64_t *buf = qs_xmalloc(chunk), x = 0x9e3779b97f4a7c15ull ^ (uint64_t)mb;
    int fd;

    hmp(c, "gpa2hva 0x100000", &out);
    p = out ? strstr(out, " is 0x") : NULL;
    if (!p || sscanf(p + 4, "%llx", &hva) != 1)
        bench_die(qs_asprintf("unexpected gpa2hva answer: %s", out ? out : ""), NULL);
    free(out);
    for (size_t i = 0; i < chunk / 8; i++) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        buf[i] = x * 0x2545f4914f6cdd1dull;
    }
    path = qs_asprintf("/proc/%d/mem", (int)pid);
    if ((fd = open(path, O_RDWR | O_CLOEXEC)) < 0)
        bench_die(qs_asprintf("cannot open '%s': %s", path, strerror(errno)), NULL);
    for (unsigned m = 0; m + 3 <= (unsigned)mb; m++) {
        for (size_t pg = 0; pg < chunk / 8; pg += 512)
            buf[pg] = ((uint64_t)m << 32 | pg) + 1; /* every page differs */
        if (pwrite(fd, buf, chunk, (off_t)(hva + (unsigned long long)m * chunk)) != (ssize_t)chunk)
            bench_die(qs_asprintf("cannot write guest RAM through '%s': %s", path, strerror(errno)), NULL);
    }
    close(fd);
    free(path);
    free(buf);
}

/* ------------------------------------------------------------------------------------------------ */
/* Raw QMP work. */

static struct qmp_args *job_args(const char *tag, bool vmstate)
{
    struct qmp_args *a = qmp_args_new();
    qmp_args_set_str(a, "tag", tag);
    if (vmstate)
        qmp_args_set_str(a, "vmstate", "vda");
    qmp_args_push_str(qmp_args_set_list(a, "devices"), "vda");
    return a;
}

static void raw_job(struct qmp_client *c, const char *cmd, const char *tag)
{
    struct qmp_args *a = job_args(tag, strcmp(cmd, "snapshot-delete") != 0);
    struct qs_error *err = NULL;
    if (qmp_job_run(c, cmd, a, RAW_JOB, NULL, &err) < 0)
        bench_die(cmd, err);
    qmp_args_free(a);
}

/* The active node of the VM's one disk. */
static char *top_node(struct qmp_client *c)
{
    struct qmp_reply *r = NULL;
    const char *n;
    char *out;

    exec_ok(c, "query-block", NULL, &r);
    n = qmp_value_string(qmp_value_path(qmp_value_array_at(qmp_reply_value(r), 0), "inserted.node-name"));
    if (!n)
        bench_die("query-block: no node name", NULL);
    out = qs_xstrdup(n);
    qmp_reply_free(r);
    return out;
}

static void raw_transaction(struct bench *b, struct qmp_client *c, const char *name)
{
    struct qmp_args *a = qmp_args_new(), *act = qmp_args_push_obj(qmp_args_set_list(a, "actions")), *d;
    char *top = top_node(c), *file = qs_asprintf("%s/raw-%s.qcow2", b->shmdir, name);

    qmp_args_set_str(act, "type", "blockdev-snapshot-sync");
    d = qmp_args_set_obj(act, "data");
    qmp_args_set_str(d, "node-name", top);
    qmp_args_set_str(d, "snapshot-file", file);
    qmp_args_set_str(d, "snapshot-node-name", name);
    qmp_args_set_str(d, "format", "qcow2");
    exec_ok(c, "transaction", a, NULL);
    free(b->raw_base);
    b->raw_base = top;
    free(file);
}

/* Untimed: the raw overlay NAME committed back into the node it went on, and its file removed - the chain as
 * qsnap's own external create and delete leave it, so that the two sides can take turns. */
static void raw_undo(struct bench *b, const char *name)
{
    struct qmp_client *c = mon_connect(qh_vm_socket_path(b->vm));
    struct qmp_args *a = qmp_args_new();
    struct qmp_job_options o = {.complete_on_ready = true};
    struct qs_error *err = NULL;
    char *file = qs_asprintf("%s/raw-%s.qcow2", b->shmdir, name);

    qmp_args_set_str(a, "device", name);
    qmp_args_set_str(a, "base-node", b->raw_base);
    if (qmp_job_run(c, "block-commit", a, "bench-undo", &o, &err) < 0)
        bench_die("block-commit of a raw overlay", err);
    qmp_args_free(a);
    qmp_client_free(c);
    unlink(file);
    free(file);
}

static void set_bg(struct qmp_client *c, bool on)
{
    struct qmp_args *a = qmp_args_new(), *cap = qmp_args_push_obj(qmp_args_set_list(a, "capabilities"));
    qmp_args_set_str(cap, "capability", "background-snapshot");
    qmp_args_set_bool(cap, "state", on);
    exec_ok(c, "migrate-set-capabilities", a, NULL);
}

/* migrate to a new file PATH through a passed fd and waits for the end. */
static void raw_migrate(struct qmp_client *c, const char *path)
{
    struct qs_error *err = NULL;
    struct qmp_args *a;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

    if (fd < 0)
        bench_die(qs_asprintf("cannot create '%s': %s", path, strerror(errno)), NULL);
    if (qmp_client_send_fd(c, fd, "benchmem", &err) < 0)
        bench_die("getfd", err);
    close(fd);
    a = qmp_args_new();
    qmp_args_set_str(a, "uri", "fd:benchmem");
    exec_ok(c, "migrate", a, NULL);
    for (;;) {
        struct qmp_reply *r = NULL;
        const char *st;
        exec_ok(c, "query-migrate", NULL, &r);
        st = qmp_value_get_string(qmp_reply_value(r), "status");
        if (st && strcmp(st, "completed") == 0) {
            qmp_reply_free(r);
            return;
        }
        if (st && (strcmp(st, "failed") == 0 || strcmp(st, "cancelled") == 0))
            bench_die(qs_asprintf("migration %s: %s", st,
                                  qmp_value_get_string(qmp_reply_value(r), "error-desc")
                                      ? qmp_value_get_string(qmp_reply_value(r), "error-desc")
                                      : "?"),
                      NULL);
        qmp_reply_free(r);
        bench_sleep_ms(2);
    }
}

enum rawop { RAW_SAVE, RAW_LOAD, RAW_DEL, RAW_LIST, RAW_DISK, RAW_MEM, RAW_LIVE };

/* One raw operation on a fresh connection (connect and close untimed); its wall time in ms. */
static double raw_op(struct bench *b, enum rawop op, const char *name)
{
    struct qmp_client *c = mon_connect(qh_vm_socket_path(b->vm));
    char *mem = qs_asprintf("%s/raw-%s.mem", b->shmdir, name ? name : "x");
    int64_t t0;
    double ms;

    bench_sleep_ms(SETTLE_MS);
    t0 = qs_now_ns();
    switch (op) {
    case RAW_SAVE:
        raw_job(c, "snapshot-save", name);
        break;
    case RAW_LOAD:
        raw_job(c, "snapshot-load", name);
        break;
    case RAW_DEL:
        raw_job(c, "snapshot-delete", name);
        break;
    case RAW_LIST: {
        struct qmp_reply *r = NULL;
        exec_ok(c, "query-named-block-nodes", NULL, &r);
        qmp_reply_free(r);
        break;
    }
    case RAW_DISK:
        raw_transaction(b, c, name);
        break;
    case RAW_MEM:
        exec_ok(c, "stop", NULL, NULL);
        raw_migrate(c, mem);
        raw_transaction(b, c, name);
        exec_ok(c, "cont", NULL, NULL);
        break;
    case RAW_LIVE: /* memory only: a stop + transaction first makes QEMU keep the guest paused ~1.3 s */
        set_bg(c, true);
        raw_migrate(c, mem);
        set_bg(c, false);
        break;
    }
    ms = (double)(qs_now_ns() - t0) / 1e6;
    qmp_client_free(c);
    unlink(mem);
    free(mem);
    return ms;
}

static int64_t vmstate_size(struct qmp_client *c, const char *tag)
{
    struct qmp_reply *r = NULL;
    const struct qmp_value *nodes;
    int64_t size = -1;

    exec_ok(c, "query-named-block-nodes", NULL, &r);
    nodes = qmp_reply_value(r);
    for (size_t i = 0; i < qmp_value_array_len(nodes); i++) {
        const struct qmp_value *snaps = qmp_value_path(qmp_value_array_at(nodes, i), "image.snapshots");
        for (size_t k = 0; k < qmp_value_array_len(snaps); k++) {
            const struct qmp_value *s = qmp_value_array_at(snaps, k);
            int64_t v = -1;
            if (qs_str_equal(qmp_value_get_string(s, "name"), tag) && qmp_value_int(qmp_value_get(s, "vm-state-size"), &v) &&
                v > size)
                size = v;
        }
    }
    qmp_reply_free(r);
    return size;
}

/* ------------------------------------------------------------------------------------------------ */
/* qsnap and raw on a harness VM. */

static void start_vm_fill(struct bench *b, int mb, bool fill);
static void start_vm(struct bench *b, int mb)
{
    start_vm_fill(b, mb, true);
}

static void start_vm_fill(struct bench *b, int mb, bool fill)
{
    struct qh_vm_config vc = {.mem_mb = mb, .start_timeout_ms = 60000};
    struct qs_error *err = NULL;

    if (!(b->vm = qh_vm_start(&vc, &err)))
        bench_die("cannot start QEMU", err);
    if (qh_vm_wait_counter_advancing(b->vm, 30000, NULL, &err) < 0)
        bench_die("the guest did not boot", err);
    qmp_client_set_timeout(qh_vm_qmp(b->vm), 600000);
    snprintf(b->qemu_version, sizeof(b->qemu_version), "%s", qmp_client_version(qh_vm_qmp(b->vm)));
    if (fill)
        fill_ram(qh_vm_qmp(b->vm), qh_vm_pid(b->vm), mb);
    {
        struct qmp_args *a = qmp_args_new();
        qmp_args_set_int(a, "max-bandwidth", INT64_C(1) << 40);
        exec_ok(qh_vm_qmp(b->vm), "migrate-set-parameters", a, NULL);
    }
    /* the state directory on the same tmpfs as the images: the raw floor pays no disk flush either (the
     * idle section also times a state directory on disk) */
    b->root = qs_asprintf("%s/root-%d%s-%d", b->shmdir, mb, fill ? "" : "-idle", b->seq++);
    {
        struct bench_run r;
        must(b, qsnap_try(b, &r, "attach", DOMAIN, "--qmp", qh_vm_socket_path(b->vm), (char *)NULL), "qsnap attach");
    }
}

static void stop_vm(struct bench *b)
{
    qh_vm_free(b->vm);
    b->vm = NULL;
}

/* Runs one timed qsnap operation: wall, pause and RSS into cell C (when C is non-NULL). */
static int qsnap_cell(struct bench *b, struct cell *c, int pause, ...)
{
    char *argv[20] = {(char *)b->qsnap, "--root", b->root};
    size_t n = 3;
    struct bench_run r;
    va_list ap;
    double p, job = NAN;

    va_start(ap, pause);
    while (n < 18 && (argv[n] = va_arg(ap, char *)) != NULL)
        n++;
    va_end(ap);
    argv[n] = NULL;
    mon_drain(qh_vm_qmp(b->vm));
    bench_sleep_ms(SETTLE_MS);
    bench_spawn(argv, b->out_path, b->err_path, &r);
    if (r.status != 0)
        return r.status;
    p = mon_pause_job(qh_vm_qmp(b->vm), pause, &job);
    if (c) {
        cell_job(c, S_Q, r.wall_ms, job);
        bench_series_add(&c->t[S_Q], r.wall_ms);
        bench_series_add(&c->cpu, r.cpu_ms);
        if (pause)
            bench_series_add(&c->pause[S_Q], p);
        if (r.maxrss_kb > c->rss_kb)
            c->rss_kb = r.maxrss_kb;
    }
    return 0;
}

/* One raw operation timed into side SD of cell C (C NULL: untimed). */
static void raw_cell_side(struct bench *b, struct cell *c, enum rawop op, const char *name, bool pause, enum side sd)
{
    double ms, p, job = NAN;

    mon_drain(qh_vm_qmp(b->vm));
    ms = raw_op(b, op, name);
    p = mon_pause_job(qh_vm_qmp(b->vm), pause, &job);
    if (c) {
        cell_job(c, sd, ms, job);
        bench_series_add(&c->t[sd], ms);
        if (pause)
            bench_series_add(&c->pause[sd], p);
    }
}

static void raw_cell(struct bench *b, struct cell *c, enum rawop op, const char *name, bool pause)
{
    raw_cell_side(b, c, op, name, pause, S_R);
}

#define QOK(b, st, what) must((b), (st), (what))

/* qsnap --live: tried once; "not supported" (or any failure) makes the column n/a. */
static bool qsnap_live_probe(struct bench *b, const char *name, const char *spec)
{
    if (b->live_ok >= 0)
        return b->live_ok == 1;
    {
        struct bench_run r;
        int st = qsnap_try(b, &r, "snapshot-create-as", DOMAIN, name, "--live", "--memspec", spec, (char *)NULL);
        if (st == 0) {
            b->live_ok = 1;
            mon_pause(qh_vm_qmp(b->vm));
            QOK(b, qsnap_try(b, &r, "snapshot-delete", DOMAIN, name, (char *)NULL), "qsnap snapshot-delete (live)");
        } else {
            char *e = bench_read_text(b->err_path);
            b->live_ok = 0;
            b->live_why = first_line(e);
            free(e);
            progress("qsnap --live not available: %s", b->live_why);
        }
    }
    return b->live_ok == 1;
}

static void qsnap_live_runs(struct bench *b, struct cell *c, int n, int mb)
{
    char name[32], *mem, *spec;

    snprintf(name, sizeof(name), "qlive-probe-%d", mb);
    mem = qs_asprintf("%s/q-%s.mem", b->shmdir, name);
    spec = qs_asprintf("file=%s", mem);
    if (!qsnap_live_probe(b, name, spec)) {
        if (c)
            c->na[S_Q] = qs_xstrdup("n/a");
        unlink(mem);
        free(mem);
        free(spec);
        return;
    }
    unlink(mem);
    free(mem);
    free(spec);
    for (int i = 0; i < n; i++) {
        struct bench_run r;
        snprintf(name, sizeof(name), "ql%d-%d", mb, i);
        mem = qs_asprintf("%s/q-%s.mem", b->shmdir, name);
        spec = qs_asprintf("file=%s", mem);
        progress("  live %d/%d qsnap", i + 1, n);
        QOK(b, qsnap_cell(b, c, true, "snapshot-create-as", DOMAIN, name, "--live", "--memspec", spec, (char *)NULL),
            "qsnap snapshot-create-as --live");
        QOK(b, qsnap_try(b, &r, "snapshot-delete", DOMAIN, name, (char *)NULL), "qsnap snapshot-delete (live)");
        unlink(mem);
        free(mem);
        free(spec);
    }
}

/* One round of the internal rows on qsnap's side (Q) or raw's, timed into S's cells (S NULL: untimed). */
static void internal_round(struct bench *b, struct sizeres *s, int i, bool q)
{
    struct cell *c = s ? s->c : NULL;
    struct bench_run r;
    char name[64], fresh[64];

    progress("  internal %s %s", s ? "timed" : "warm-up", q ? "qsnap" : "raw");
    snprintf(name, sizeof(name), "%c%s%d", q ? 'q' : 'r', s ? "" : "w", i < 0 ? 0 : i);
    snprintf(fresh, sizeof(fresh), "%cf%s%d", q ? 'q' : 'r', s ? "" : "w", i < 0 ? 0 : i);
    raw_cell(b, NULL, RAW_LOAD, "rbase", true);
    if (q && b->aa) { /* the control: raw's operations in qsnap's turn */
        raw_cell_side(b, c ? &c[R_CREATE] : NULL, RAW_SAVE, name, true, S_Q);
        raw_cell_side(b, c ? &c[R_CREATE_FRESH] : NULL, RAW_SAVE, fresh, true, S_Q);
        raw_cell_side(b, c ? &c[R_REVERT] : NULL, RAW_LOAD, "qbase", true, S_Q);
        raw_cell_side(b, c ? &c[R_DELETE] : NULL, RAW_DEL, name, false, S_Q);
        raw_cell(b, NULL, RAW_DEL, fresh, false);
        raw_cell_side(b, c ? &c[R_LIST] : NULL, RAW_LIST, NULL, false, S_Q);
    } else if (q) {
        QOK(b, qsnap_cell(b, c ? &c[R_CREATE] : NULL, true, "snapshot-create-as", DOMAIN, name, (char *)NULL),
            "qsnap snapshot-create-as");
        QOK(b, qsnap_cell(b, c ? &c[R_CREATE_FRESH] : NULL, true, "snapshot-create-as", DOMAIN, fresh, (char *)NULL),
            "qsnap snapshot-create-as");
        QOK(b, qsnap_cell(b, c ? &c[R_REVERT] : NULL, true, "snapshot-revert", DOMAIN, "qbase", (char *)NULL),
            "qsnap snapshot-revert");
        QOK(b, qsnap_cell(b, c ? &c[R_DELETE] : NULL, false, "snapshot-delete", DOMAIN, name, (char *)NULL),
            "qsnap snapshot-delete");
        QOK(b, qsnap_try(b, &r, "snapshot-delete", DOMAIN, fresh, (char *)NULL), "qsnap snapshot-delete");
        QOK(b, qsnap_cell(b, c ? &c[R_LIST] : NULL, false, "snapshot-list", DOMAIN, (char *)NULL),
            "qsnap snapshot-list");
    } else {
        raw_cell(b, c ? &c[R_CREATE] : NULL, RAW_SAVE, name, true);
        raw_cell(b, c ? &c[R_CREATE_FRESH] : NULL, RAW_SAVE, fresh, true);
        raw_cell(b, c ? &c[R_REVERT] : NULL, RAW_LOAD, "qbase", true);
        raw_cell(b, c ? &c[R_DELETE] : NULL, RAW_DEL, name, false);
        raw_cell(b, NULL, RAW_DEL, fresh, false);
        raw_cell(b, c ? &c[R_LIST] : NULL, RAW_LIST, NULL, false);
    }
}

static void run_size(struct bench *b, struct sizeres *s)
{
    int mb = s->mb, nslow = mb >= 1024 ? b->n_slow : b->n;
    struct bench_run r;
    char name[64];

    progress("%d MiB guest RAM: qsnap and raw QMP", mb);
    start_vm(b, mb);
    /* warm-up, and the two revert targets */
    QOK(b, qsnap_cell(b, NULL, true, "snapshot-create-as", DOMAIN, "qbase", (char *)NULL), "qsnap create qbase");
    raw_cell(b, NULL, RAW_SAVE, "rbase", true);
    s->vmstate_bytes = vmstate_size(qh_vm_qmp(b->vm), "rbase");
    raw_cell(b, NULL, RAW_LOAD, "rbase", true);
    QOK(b, qsnap_cell(b, NULL, true, "snapshot-revert", DOMAIN, "qbase", (char *)NULL), "qsnap revert qbase");
    if (!b->qsnap_template) {
        char *p = qs_asprintf("%s/snapshot/%s/qbase.xml", b->root, DOMAIN);
        char *d = qs_asprintf("%s/qemu/%s.xml", b->root, DOMAIN);
        b->qsnap_template = bench_read_text(p);
        b->qsnap_domxml = bench_read_text(d);
        free(p);
        free(d);
    }

    /*
     * Every create of a row starts from the same state on both sides: "after a revert" follows an untimed
     * raw load of rbase (QEMU then copies that snapshot's vmstate clusters on write), "no revert before"
     * follows that first save (whose end drops the vmstate area, so nothing is copied). Both sides' revert
     * loads qbase (loading rbase instead, raw's load ran ~16 ms shorter at 256 MiB). The sides take turns
     * going first. One untimed round of each side comes first: the first saves into the image grow its
     * file (1 GiB: 5.8 s and 3.6 s against 2.1-2.6 s and 0.6-0.7 s later, on whichever side went first).
     */
    internal_round(b, NULL, -1, true);
    internal_round(b, NULL, -1, false);
    for (int i = 0; i < nslow; i++)
        for (int k = 0; k < 2; k++)
            internal_round(b, s, i, (i + k) % 2 == 0);
    /* back to qsnap's base before the external ones; raw's internal snapshots dropped */
    raw_cell(b, NULL, RAW_DEL, "rbase", false);


    /* the first migration of this VM after the internal rows takes several times the later ones, on either
     * side (1 GiB: 3.0-3.8 s, then 0.5-1.9 s): whichever side went first paid it - one raw stop-and-migrate
     * first, untimed, no overlay */
    {
        struct qmp_client *c = qh_vm_qmp(b->vm);
        char *mem = qs_asprintf("%s/warm-%d.mem", b->shmdir, mb);
        int64_t t0 = qs_now_ns();
        progress("  external: raw stop-and-migrate, untimed first one");
        exec_ok(c, "stop", NULL, NULL);
        raw_migrate(c, mem);
        exec_ok(c, "cont", NULL, NULL);
        s->mem_first_ms = (double)(qs_now_ns() - t0) / 1e6;
        unlink(mem);
        free(mem);
    }
    /* the sides take turns, the first of a pair alternating: raw's overlay goes again after each of its turns,
     * as qsnap's delete takes its own away (both commit the overlay back) */
    for (int i = 0; i < 2 * b->n; i++) {
        bool raw = (i % 2) != (i / 2) % 2;
        char *mem, *spec;
        progress("  external %d/%d %s", i / 2 + 1, b->n, raw ? "raw" : "qsnap");
        if (raw) {
            snprintf(name, sizeof(name), "rd%d", i / 2);
            raw_cell(b, &s->c[R_DISK], RAW_DISK, name, true);
            raw_undo(b, name);
            snprintf(name, sizeof(name), "rm%d", i / 2);
            raw_cell(b, &s->c[R_MEM], RAW_MEM, name, true);
            raw_undo(b, name);
            continue;
        }
        snprintf(name, sizeof(name), "qd%d", i / 2);
        QOK(b, qsnap_cell(b, &s->c[R_DISK], true, "snapshot-create-as", DOMAIN, name, "--disk-only", (char *)NULL),
            "qsnap snapshot-create-as --disk-only");
        QOK(b, qsnap_try(b, &r, "snapshot-delete", DOMAIN, name, (char *)NULL), "qsnap snapshot-delete (disk-only)");
        snprintf(name, sizeof(name), "qm%d", i / 2);
        mem = qs_asprintf("%s/q-%s.mem", b->shmdir, name);
        spec = qs_asprintf("file=%s", mem);
        QOK(b, qsnap_cell(b, &s->c[R_MEM], true, "snapshot-create-as", DOMAIN, name, "--memspec", spec, (char *)NULL),
            "qsnap snapshot-create-as --memspec");
        QOK(b, qsnap_try(b, &r, "snapshot-delete", DOMAIN, name, (char *)NULL), "qsnap snapshot-delete (memspec)");
        unlink(mem);
        free(mem);
        free(spec);
    }
    stop_vm(b);
    if (b->skip_live) {
        s->live_first_ms = NAN;
        s->c[R_LIVE].na[S_R] = qs_xstrdup("not run");
        s->c[R_LIVE].na[S_Q] = qs_xstrdup("not run");
        return;
    }
    /* live on a VM of its own: after a background snapshot, QEMU 7.2's stop-and-migrate saves of the same
     * process were 4-5x slower (256 MiB: 115 -> 490-580 ms), so nothing else runs after one */
    progress("  live: qsnap --live (when the binary has it), then raw, on a fresh VM");
    start_vm(b, mb);
    qsnap_live_runs(b, &s->c[R_LIVE], b->n_slow, mb);
    s->live_first_ms = NAN;
    if (b->live_ok != 1) { /* else qsnap's live snapshots came first on this VM */
        struct cell w = {0};
        progress("  live raw, untimed first one");
        raw_cell(b, &w, RAW_LIVE, "rlwarm", true);
        s->live_first_ms = med(&w.pause[S_R]);
    }
    for (int i = 0; i < b->n_slow; i++) {
        progress("  live %d/%d raw", i + 1, b->n_slow);
        snprintf(name, sizeof(name), "rl%d", i);
        raw_cell(b, &s->c[R_LIVE], RAW_LIVE, name, true);
    }
    stop_vm(b);
}

/* Guest pause only, for the plot's other RAM sizes: savevm, stop-and-migrate, live (raw; qsnap live). */
static void run_pause_point(struct bench *b, struct pausept *pt)
{
    struct cell c = {0};
    int n = b->n_slow;
    char name[32];

    progress("%d MiB guest RAM: guest pause only", pt->mb);
    start_vm(b, pt->mb);
    pt->live_first_ms = NAN;
    raw_cell(b, NULL, RAW_SAVE, "warm", true);
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof(name), "ps%d", i);
        raw_cell(b, NULL, RAW_LOAD, "warm", true); /* as in run_size, where every create follows a load */
        raw_cell(b, &c, RAW_SAVE, name, true);
        raw_cell(b, NULL, RAW_DEL, name, false);
    }
    pt->savevm = c.pause[S_R];
    memset(&c, 0, sizeof(c));
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof(name), "pm%d", i);
        raw_cell(b, &c, RAW_MEM, name, true);
    }
    pt->memspec = c.pause[S_R];
    memset(&c, 0, sizeof(c));
    if (b->live_ok != 1) {
        raw_cell(b, &c, RAW_LIVE, "plwarm", true);
        pt->live_first_ms = med(&c.pause[S_R]);
        memset(&c, 0, sizeof(c));
    }
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof(name), "pl%d", i);
        raw_cell(b, &c, RAW_LIVE, name, true);
    }
    pt->live = c.pause[S_R];
    stop_vm(b);
    if (b->live_ok == 1) { /* on a VM of its own: qsnap's metadata knows nothing of the raw overlays */
        memset(&c, 0, sizeof(c));
        start_vm(b, pt->mb);
        qsnap_live_runs(b, &c, n, pt->mb);
        pt->qlive = c.pause[S_Q];
        stop_vm(b);
    }
}

/* ------------------------------------------------------------------------------------------------ */
/* libvirt. */

static char *domain_xml(struct bench *b, int mb, const char *disk)
{
    return qs_asprintf(
        "<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>\n"
        "  <name>" VDOM "</name>\n  <uuid>" VDOM_UUID "</uuid>\n"
        "  <memory unit='MiB'>%d</memory>\n  <vcpu>1</vcpu>\n"
        "  <os><type arch='x86_64' machine='pc'>hvm</type></os>\n"
        "  <on_poweroff>destroy</on_poweroff><on_reboot>destroy</on_reboot><on_crash>destroy</on_crash>\n"
        "  <devices>\n    <emulator>/usr/bin/qemu-system-x86_64</emulator>\n"
        "    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='%s'/>"
        "<target dev='vda' bus='virtio'/><boot order='1'/></disk>\n"
        "    <controller type='usb' model='none'/>\n    <video><model type='none'/></video>\n"
        "    <memballoon model='none'/>\n  </devices>\n"
        "  <qemu:commandline><qemu:arg value='-qmp'/><qemu:arg value='unix:%s,server=on,wait=off'/>"
        "</qemu:commandline>\n</domain>\n",
        mb, disk, b->vmon_path);
}

static void virsh_must(struct bench *b, int st, const char *what)
{
    if (st != 0) {
        char *e = bench_read_text(b->err_path);
        bench_die(qs_asprintf("virsh %s failed (exit %d): %s", what, st, e ? e : ""), NULL);
    }
}

static void vmon_reconnect(struct bench *b)
{
    qmp_client_free(b->vmon);
    b->vmon = mon_connect(b->vmon_path);
    qmp_client_set_timeout(b->vmon, 600000);
}

/* One timed virsh command into C (pause from the extra monitor when PAUSE). Returns the exit status. */
static int virsh_cell(struct bench *b, struct cell *c, bool pause, char *const args[])
{
    char *argv[28];
    struct bench_run r;
    size_t n = virsh_prefix(b, argv);

    for (size_t i = 0; args[i] && n < 26; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    if (b->vmon)
        mon_drain(b->vmon);
    bench_sleep_ms(SETTLE_MS);
    bench_spawn(argv, b->out_path, b->err_path, &r);
    if (r.status != 0)
        return r.status;
    if (c) {
        bench_series_add(&c->t[S_V], r.wall_ms);
        if (pause && b->vmon)
            bench_series_add(&c->pause[S_V], mon_pause(b->vmon));
    }
    return 0;
}

static void virsh_undefine(struct bench *b)
{
    struct bench_run r;
    virsh_try(b, &r, "destroy", VDOM, (char *)NULL);
    virsh_try(b, &r, "undefine", VDOM, "--snapshots-metadata", (char *)NULL);
}

/* Defines and starts the libvirt domain (boot image in DIR), connects its extra monitor, fills RAM. */
static void virsh_up(struct bench *b, int mb, const char *dir, bool fill)
{
    char *disk = qs_asprintf("%s/vda.qcow2", dir), *xmlp = qs_asprintf("%s/domain.xml", b->workdir), *xml;
    struct qs_error *err = NULL;
    struct bench_run r;

    make_dir(dir, 0777);
    if (qh_image_create_boot(disk, "qcow2", 64u << 20, &err) < 0)
        bench_die("boot image", err);
    chmod(disk, 0666);
    b->vmon_path = qs_asprintf("%s/mon.sock", dir);
    xml = domain_xml(b, mb, disk);
    write_text(xmlp, xml, 0);
    virsh_undefine(b);
    virsh_must(b, virsh_try(b, &r, "define", xmlp, (char *)NULL), "define");
    virsh_must(b, virsh_try(b, &r, "start", VDOM, (char *)NULL), "start");
    b->vmon = NULL;
    vmon_reconnect(b);
    wait_guest(b->vmon);
    if (fill)
        fill_ram(b->vmon, qmp_client_peer_pid(b->vmon), mb);
    free(disk);
    free(xml);
    free(xmlp);
}

static void virsh_down(struct bench *b, const char *dir)
{
    qmp_client_free(b->vmon);
    b->vmon = NULL;
    virsh_undefine(b);
    remove_tree(dir);
    free(b->vmon_path);
    b->vmon_path = NULL;
}

static void run_virsh(struct bench *b, struct sizeres *s)
{
    int mb = s->mb, nslow = b->n_slow; /* each internal round restarts QEMU (revert): seconds */
    char *dir = qs_asprintf("%s/lv-%d", b->shmdir, mb);
    char name[64];

    progress("%d MiB guest RAM: virsh (libvirt)", mb);
    virsh_up(b, mb, dir, true);

    {
        char *a[] = {"snapshot-create-as", VDOM, "vbase", NULL};
        virsh_must(b, virsh_cell(b, NULL, true, a), "snapshot-create-as vbase");
    }
    if (!b->virsh_template) {
        char *rel = qs_asprintf("/var/lib/libvirt/qemu/snapshot/%s/vbase.xml", VDOM), *p = libvirt_path(b, rel);
        free(rel);
        b->virsh_template = bench_read_text(p);
        free(p);
    }
    {
        /* every timed create follows a revert, as on the other sides (libvirt's restarts QEMU with -loadvm) */
        char *rv[] = {"snapshot-revert", VDOM, "vbase", NULL};
        virsh_must(b, virsh_cell(b, NULL, false, rv), "snapshot-revert");
        vmon_reconnect(b);
    }
    for (int i = 0; i < nslow; i++) {
        char fresh[64];
        char *cr[] = {"snapshot-create-as", VDOM, name, NULL}, *rv[] = {"snapshot-revert", VDOM, "vbase", NULL};
        char *cf[] = {"snapshot-create-as", VDOM, fresh, NULL}, *df[] = {"snapshot-delete", VDOM, fresh, NULL};
        char *dl[] = {"snapshot-delete", VDOM, name, NULL}, *ls[] = {"snapshot-list", VDOM, NULL};
        progress("  internal %d/%d virsh", i + 1, nslow);
        snprintf(name, sizeof(name), "v%d", i);
        snprintf(fresh, sizeof(fresh), "vf%d", i);
        virsh_must(b, virsh_cell(b, &s->c[R_CREATE], true, cr), "snapshot-create-as");
        virsh_must(b, virsh_cell(b, &s->c[R_CREATE_FRESH], true, cf), "snapshot-create-as");
        virsh_must(b, virsh_cell(b, &s->c[R_REVERT], false, rv), "snapshot-revert");
        vmon_reconnect(b); /* libvirt started a new QEMU */
        virsh_must(b, virsh_cell(b, &s->c[R_DELETE], false, dl), "snapshot-delete");
        virsh_must(b, virsh_cell(b, NULL, false, df), "snapshot-delete");
        virsh_must(b, virsh_cell(b, &s->c[R_LIST], false, ls), "snapshot-list");
    }
    for (int i = 0; i < b->n; i++) {
        char *ds = qs_asprintf("vda,snapshot=external,file=%s/vd%d.qcow2", dir, i);
        char *a[] = {"snapshot-create-as", VDOM, name, "--disk-only", "--diskspec", ds, NULL};
        progress("  external disk-only %d/%d virsh", i + 1, b->n);
        snprintf(name, sizeof(name), "vd%d", i);
        if (virsh_cell(b, &s->c[R_DISK], true, a) != 0) {
            char *e = bench_read_text(b->err_path);
            s->c[R_DISK].na[S_V] = qs_asprintf("failed: %s", e ? e : "");
            free(e);
            free(ds);
            break;
        }
        free(ds);
    }
    for (int live = 0; live < (b->skip_live ? 1 : 2); live++) {
        enum row row = live ? R_LIVE : R_MEM;
        for (int i = 0; i < (live ? nslow : b->n); i++) {
            char *ms, *ds, *mf;
            snprintf(name, sizeof(name), "v%c%d", live ? 'l' : 'm', i);
            mf = qs_asprintf("%s/%s.mem", dir, name);
            ms = qs_asprintf("file=%s,snapshot=external", mf);
            ds = qs_asprintf("vda,snapshot=external,file=%s/%s.qcow2", dir, name);
            {
                char *a[] = {"snapshot-create-as", VDOM, name, "--memspec", ms, "--diskspec", ds, live ? "--live" : NULL,
                             NULL};
                progress("  external %s %d/%d virsh", live ? "--live --memspec" : "--memspec", i + 1,
                         live ? nslow : b->n);
                if (virsh_cell(b, &s->c[row], true, a) != 0) {
                    char *e = bench_read_text(b->err_path);
                    s->c[row].na[S_V] = qs_asprintf("failed: %s", e ? e : "");
                    free(e);
                    i = 1 << 20;
                }
            }
            unlink(mf);
            free(mf);
            free(ms);
            free(ds);
        }
    }
    virsh_down(b, dir);
    free(dir);
}

/*
 * Create, revert and delete of an idle guest (RAM nearly all zero pages, so QEMU's own work is small and
 * qsnap's per-command cost shows): qsnap and raw in place, virsh with its restart on revert. Each round
 * is create, revert, delete on every side, so every create follows a revert.
 */
static void run_idle(struct bench *b)
{
    struct cell *c = b->idle;
    char *dir = qs_asprintf("%s/lv-idle", b->shmdir);
    char name[32];
    int n = 2 * b->n;

    char *tmpfs_root, *disk_root = qs_asprintf("%s/root-idle-disk", b->workdir);

    progress("%d MiB guest RAM, idle: create, revert, delete", b->idle_mb);
    start_vm_fill(b, b->idle_mb, false);
    tmpfs_root = b->root;
    QOK(b, qsnap_cell(b, NULL, true, "snapshot-create-as", DOMAIN, "qbase", (char *)NULL), "qsnap create qbase");
    /* a second state directory on the disk (/tmp here), the way /var/lib/qsnap is: its synced writes */
    b->root = disk_root;
    {
        struct bench_run r;
        must(b, qsnap_try(b, &r, "attach", DOMAIN, "--qmp", qh_vm_socket_path(b->vm), (char *)NULL), "qsnap attach");
    }
    QOK(b, qsnap_cell(b, NULL, true, "snapshot-create-as", DOMAIN, "dbase", (char *)NULL), "qsnap create dbase");
    b->root = tmpfs_root;
    raw_cell(b, NULL, RAW_SAVE, "rbase", true);
    for (int i = 0; i < n; i++) {
        for (int k = 0; k < 3; k++) {
            int side = (i + k) % 3;
            if (side < 2) {
                int off = side == 0 ? 0 : IDLE_CREATE_DISK;
                b->root = side == 0 ? tmpfs_root : disk_root;
                snprintf(name, sizeof(name), "%ci%d", side == 0 ? 'q' : 'd', i);
                QOK(b, qsnap_cell(b, &c[off + IDLE_CREATE], true, "snapshot-create-as", DOMAIN, name, (char *)NULL),
                    "qsnap snapshot-create-as");
                QOK(b, qsnap_cell(b, &c[off + IDLE_REVERT], true, "snapshot-revert", DOMAIN, side == 0 ? "qbase" : "dbase",
                                  (char *)NULL),
                    "qsnap snapshot-revert");
                QOK(b, qsnap_cell(b, &c[off + IDLE_DELETE], false, "snapshot-delete", DOMAIN, name, (char *)NULL),
                    "qsnap snapshot-delete");
                b->root = tmpfs_root;
            } else {
                snprintf(name, sizeof(name), "ri%d", i);
                raw_cell(b, &c[IDLE_CREATE], RAW_SAVE, name, true);
                raw_cell(b, &c[IDLE_REVERT], RAW_LOAD, "rbase", true);
                raw_cell(b, &c[IDLE_DELETE], RAW_DEL, name, false);
            }
        }
    }
    stop_vm(b);
    free(disk_root);
    for (int k = IDLE_CREATE_DISK; k < IDLE__LAST; k++) {
        c[k].na[S_R] = qs_xstrdup("(as above)");
        c[k].na[S_V] = qs_xstrdup("-");
    }
    if (!b->virsh) {
        for (int k = 0; k < IDLE_CREATE_DISK; k++)
            c[k].na[S_V] = qs_xstrdup("n/a (no --virsh)");
        free(dir);
        return;
    }
    virsh_up(b, b->idle_mb, dir, false);
    {
        char *a[] = {"snapshot-create-as", VDOM, "vbase", NULL}, *rv[] = {"snapshot-revert", VDOM, "vbase", NULL};
        char *cr[] = {"snapshot-create-as", VDOM, name, NULL}, *dl[] = {"snapshot-delete", VDOM, name, NULL};
        virsh_must(b, virsh_cell(b, NULL, true, a), "snapshot-create-as vbase");
        for (int i = 0; i < b->n_slow; i++) {
            snprintf(name, sizeof(name), "vi%d", i);
            virsh_must(b, virsh_cell(b, &c[IDLE_CREATE], true, cr), "snapshot-create-as");
            virsh_must(b, virsh_cell(b, &c[IDLE_REVERT], false, rv), "snapshot-revert");
            vmon_reconnect(b);
            virsh_must(b, virsh_cell(b, &c[IDLE_DELETE], false, dl), "snapshot-delete");
        }
    }
    virsh_down(b, dir);
    free(dir);
}

/* ------------------------------------------------------------------------------------------------ */
/* snapshot-list at scale: qsnap (its root) and virsh (libvirt's snapshot directory, daemon restarted). */

/* TEMPLATE (a snapshot file in libvirt's on-disk form) renamed NAME, with parent PARENT, active ACTIVE. */
static char *snapshot_from_template(const char *tmpl, const char *name, const char *parent, bool active)
{
    const char *n0 = strstr(tmpl, "<name>"), *n1 = n0 ? strstr(n0, "</name>") : NULL;
    const char *p0 = strstr(tmpl, "  <parent>"), *p1 = p0 ? strstr(p0, "</parent>\n") : NULL;
    const char *st = strstr(tmpl, "</state>\n"), *a0 = strstr(tmpl, "  <active>");
    char *head, *mid, *out;

    if (!n0 || !n1 || !st || !a0 || st < n1 || a0 < st || (p0 && (!p1 || p0 < st || p1 > a0)))
        bench_die("unexpected snapshot file layout", NULL);
    st += strlen("</state>\n");
    head = qs_asprintf("%.*s<name>%s</name>%.*s", (int)(n0 - tmpl), tmpl, name, (int)(st - (n1 + 7)), n1 + 7);
    if (p0)
        mid = qs_asprintf("%.*s%.*s", (int)(p0 - st), st, (int)(a0 - (p1 + 10)), p1 + 10);
    else
        mid = qs_asprintf("%.*s", (int)(a0 - st), st);
    if (parent)
        out = qs_asprintf("%s  <parent>\n    <name>%s</name>\n  </parent>\n%s  <active>%d</active>\n</domainsnapshot>\n",
                          head, parent, mid, active ? 1 : 0);
    else
        out = qs_asprintf("%s%s  <active>%d</active>\n</domainsnapshot>\n", head, mid, active ? 1 : 0);
    free(head);
    free(mid);
    return out;
}

static void write_chain_named(const char *dir, const char *tmpl, const char *prefix, size_t count, bool current)
{
    for (size_t i = 1; i <= count; i++) {
        char name[32], parent[32], *xml, *p;
        snprintf(name, sizeof(name), "%s%06zu", prefix, i);
        snprintf(parent, sizeof(parent), "%s%06zu", prefix, i - 1);
        xml = snapshot_from_template(tmpl, name, i > 1 ? parent : NULL, current && i == count);
        p = qs_asprintf("%s/%s.xml", dir, name);
        write_text(p, xml, 3600); /* older than qsnap's index "racy" window */
        free(p);
        free(xml);
    }
}

static void write_chain(const char *dir, const char *tmpl, size_t count)
{
    write_chain_named(dir, tmpl, "s", count, true);
}

static pid_t libvirtd_pid(const struct bench *b)
{
    char *path = libvirt_path(b, "/run/libvirtd.pid"), *s = bench_read_text(path);
    free(path);
    pid_t p = s ? (pid_t)atoi(s) : 0;
    free(s);
    return p > 0 && kill(p, 0) == 0 ? p : 0;
}

/* `virsh version` given SECONDS to answer (a daemon that hangs must not hang the run): its status. */
static int virsh_version_within(struct bench *b, int seconds)
{
    char secs[16], *argv[12];
    size_t n = 0;
    struct bench_run r;

    snprintf(secs, sizeof(secs), "%d", seconds);
    argv[n++] = "/usr/bin/timeout";
    argv[n++] = secs;
    n += virsh_prefix(b, argv + n);
    argv[n++] = "version";
    argv[n] = NULL;
    bench_spawn(argv, b->out_path, b->err_path, &r);
    return r.status;
}

/* Restarts libvirtd; false when it does not answer within 3 minutes (libvirt 9.0 was seen here probing QEMU's
 * capabilities again and again after a restart, never answering) - the run goes on without it. */
static bool libvirtd_restart(struct bench *b)
{
    pid_t p = libvirtd_pid(b);
    struct bench_run r;
    char *in_root[] = {"/usr/sbin/chroot", (char *)b->libvirt_root, "/usr/sbin/libvirtd", "-d", NULL};
    char *here[] = {"/usr/sbin/libvirtd", "-d", NULL}, **argv = b->libvirt_root ? in_root : here;
    int64_t deadline;

    if (p) {
        kill(p, SIGTERM);
        for (int i = 0; i < 600 && kill(p, 0) == 0; i++)
            bench_sleep_ms(50);
    }
    bench_spawn(argv, b->out_path, b->err_path, &r);
    deadline = qs_now_ms() + 180000;
    while (qs_now_ms() < deadline) {
        if (virsh_version_within(b, 20) == 0)
            return true;
        bench_sleep_ms(100);
    }
    progress("libvirtd did not answer within 3 minutes of its restart: virsh's list cells are n/a");
    return false;
}

static void run_lists(struct bench *b)
{
    char *vrel = qs_asprintf("/var/lib/libvirt/qemu/snapshot/%s", VDOM), *vdir = libvirt_path(b, vrel);
    bool virsh = b->virsh && b->manage_libvirtd && b->virsh_template;

    if (virsh) { /* the domain defined again (inactive): snapshot-list needs it */
        char *xmlp = qs_asprintf("%s/domain.xml", b->workdir), *xml;
        struct bench_run r;
        b->vmon_path = qs_asprintf("%s/mon.sock", b->shmdir);
        xml = domain_xml(b, 256, "/nonexistent.qcow2");
        write_text(xmlp, xml, 0);
        virsh_undefine(b);
        virsh_must(b, virsh_try(b, &r, "define", xmlp, (char *)NULL), "define");
        free(xml);
        free(xmlp);
    }
    for (size_t k = 0; k < b->nlists; k++) {
        struct listres *l = &b->lists[k];
        char *root = qs_asprintf("%s/list-%zu", b->workdir, l->count), *p, *saved = b->root;
        struct bench_run r;

        progress("snapshot-list with %zu snapshots", l->count);
        make_dir(root, 0700);
        p = qs_asprintf("%s/qemu", root), make_dir(p, 0700), free(p);
        p = qs_asprintf("%s/snapshot", root), make_dir(p, 0700), free(p);
        p = qs_asprintf("%s/snapshot/%s", root, DOMAIN), make_dir(p, 0700);
        write_chain(p, b->qsnap_template, l->count);
        free(p);
        p = qs_asprintf("%s/qemu/%s.xml", root, DOMAIN), write_text(p, b->qsnap_domxml, 3600), free(p);
        b->root = root;
        QOK(b, qsnap_try(b, &r, "snapshot-list", DOMAIN, (char *)NULL), "qsnap snapshot-list (scale)");
        l->q_cold_ms = r.wall_ms;
        for (int i = 0; i < b->n; i++) {
            bench_sleep_ms(SETTLE_MS);
            QOK(b, qsnap_try(b, &r, "snapshot-list", DOMAIN, (char *)NULL), "qsnap snapshot-list (scale)");
            bench_series_add(&l->c.t[S_Q], r.wall_ms);
            bench_series_add(&l->c.cpu, r.cpu_ms);
            if (r.maxrss_kb > l->c.rss_kb)
                l->c.rss_kb = r.maxrss_kb;
        }
        {
            char *out = bench_read_text(b->out_path);
            size_t lines = 0;
            for (char *c = out; c && *c; c++)
                lines += *c == '\n';
            free(out);
            if (lines < l->count + 2)
                bench_die(qs_asprintf("qsnap snapshot-list printed %zu lines for %zu snapshots", lines, l->count),
                          NULL);
        }
        b->root = saved;
        remove_tree(root);
        free(root);

        if (virsh) {
            pid_t pd = libvirtd_pid(b);
            if (pd) {
                kill(pd, SIGTERM);
                for (int i = 0; i < 600 && kill(pd, 0) == 0; i++)
                    bench_sleep_ms(50);
            }
            remove_tree(vdir);
            make_dir(vdir, 0755);
            write_chain(vdir, b->virsh_template, l->count);
            if (!libvirtd_restart(b)) {
                l->c.na[S_V] = qs_xstrdup("n/a (libvirtd did not answer after its restart)");
                l->c.na[S_R] = qs_xstrdup("- (metadata only: no QEMU work)");
                virsh = false;
                b->virsh_hung = true;
                continue;
            }
            for (int i = 0; i <= b->n; i++) {
                char *a[] = {"snapshot-list", VDOM, NULL};
                virsh_must(b, virsh_cell(b, i ? &l->c : NULL, false, a), "snapshot-list (scale)");
            }
            {
                char *out = bench_read_text(b->out_path);
                size_t lines = 0;
                for (char *c = out; c && *c; c++)
                    lines += *c == '\n';
                free(out);
                if (lines < l->count + 2)
                    bench_die(qs_asprintf("virsh snapshot-list printed %zu lines for %zu snapshots", lines, l->count),
                              NULL);
            }
        } else {
            l->c.na[S_V] = qs_xstrdup(b->virsh_hung ? "n/a (libvirtd did not answer after its restart)"
                                      : b->virsh    ? "n/a (libvirtd not managed by this run)"
                                                    : "n/a (no --virsh)");
        }
        l->c.na[S_R] = qs_xstrdup("- (metadata only: no QEMU work)");
    }
    if (virsh) {
        pid_t pd = libvirtd_pid(b);
        if (pd) {
            kill(pd, SIGTERM);
            for (int i = 0; i < 600 && kill(pd, 0) == 0; i++)
                bench_sleep_ms(50);
        }
        remove_tree(vdir);
        if (libvirtd_restart(b))
            virsh_undefine(b);
        else
            b->virsh_hung = true;
    }
    free(vdir);
    free(vrel);
}

/* ------------------------------------------------------------------------------------------------ */
/* Flat in the number of snapshots: the same operations at 1, 10,000 and 100,000 snapshots of one domain. */

/*
 * One VM (idle, so that QEMU's own work is small), one qsnap state directory per count, each attached to
 * it: a real snapshot sbCOUNT and COUNT - 1 metadata-only ones (a chain, written as libvirt would leave
 * them). The operations run round by round, the counts taking turns, so that the machine's load falls on
 * all of them alike.
 */
static void run_scale(struct bench *b)
{
    char *roots[MAX_COUNTS] = {0}, name[64], base[64];

    if (!b->nscale)
        return;
    progress("flat in N: %zu state directories on one idle %d MiB VM", b->nscale, b->idle_mb ? b->idle_mb : 256);
    start_vm_fill(b, b->idle_mb ? b->idle_mb : 256, false);
    free(b->root);
    b->root = NULL;
    for (size_t k = 0; k < b->nscale; k++) {
        struct scaleres *sc = &b->scale[k];
        struct bench_run r;
        char *dir, *tmpl, *p;
        roots[k] = qs_asprintf("%s/scale-%zu", b->shmdir, sc->count);
        b->root = roots[k];
        must(b, qsnap_try(b, &r, "attach", DOMAIN, "--qmp", qh_vm_socket_path(b->vm), (char *)NULL), "qsnap attach");
        snprintf(base, sizeof(base), "sb%zu", sc->count);
        QOK(b, qsnap_try(b, &r, "snapshot-create-as", DOMAIN, base, (char *)NULL), "qsnap create (scale base)");
        if (sc->count > 1) {
            progress("  writing %zu snapshot files", sc->count - 1);
            dir = qs_asprintf("%s/snapshot/%s", roots[k], DOMAIN);
            p = qs_asprintf("%s/%s.xml", dir, base);
            tmpl = bench_read_text(p);
            write_chain_named(dir, tmpl, "g", sc->count - 1, false);
            free(tmpl);
            free(p);
            free(dir);
        }
        /* the first command after the files appeared reads them all and writes the index */
        QOK(b, qsnap_try(b, &r, "snapshot-list", DOMAIN, "--name", (char *)NULL), "qsnap snapshot-list (scale)");
        sc->cold_ms = r.wall_ms;
        progress("  %zu snapshots: first listing %.0f ms", sc->count, r.wall_ms);
    }
    for (int i = 0; i < b->n_scale; i++) {
        progress("  round %d/%d", i + 1, b->n_scale);
        for (size_t j = 0; j < b->nscale; j++) {
            size_t k = (j + (size_t)i) % b->nscale;
            struct scaleres *sc = &b->scale[k];
            struct cell *c = sc->op;
            b->root = roots[k];
            snprintf(base, sizeof(base), "sb%zu", sc->count);
            snprintf(name, sizeof(name), "c%zu-%d", sc->count, i);
            QOK(b, qsnap_cell(b, &c[SC_CREATE], false, "snapshot-create-as", DOMAIN, name, (char *)NULL),
                "qsnap snapshot-create-as (scale)");
            QOK(b, qsnap_cell(b, &c[SC_INFO], false, "snapshot-info", DOMAIN, base, (char *)NULL),
                "qsnap snapshot-info (scale)");
            QOK(b, qsnap_cell(b, &c[SC_REVERT], false, "snapshot-revert", DOMAIN, base, (char *)NULL),
                "qsnap snapshot-revert (scale)");
            QOK(b, qsnap_cell(b, &c[SC_DELETE], false, "snapshot-delete", DOMAIN, name, (char *)NULL),
                "qsnap snapshot-delete (scale)");
            QOK(b, qsnap_cell(b, &c[SC_LIST], false, "snapshot-list", DOMAIN, (char *)NULL), "qsnap snapshot-list (scale)");
        }
    }
    b->root = NULL;
    stop_vm(b);
    for (size_t k = 0; k < b->nscale; k++) {
        remove_tree(roots[k]);
        free(roots[k]);
    }
}

/*
 * snapshot-create --redefine one by one into an empty domain, COUNT times (a chain, as a copy of libvirt's
 * metadata would be recreated): wall and CPU time of the qsnap processes. Linear in COUNT when a redefine
 * costs the same at 1 and at 10,000 snapshots. Every count redefines as many snapshots per round as the
 * largest (1,000 ten times for 10,000 once), in turns of the smallest count's size: each stretch of the
 * machine's time, and whatever else it did then, lands on every count alike. A count's time is the mean of
 * its runs.
 */
static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void redefine_inputs(const struct bench *b, const char *in, size_t count)
{
    make_dir(in, 0700);
    for (size_t i = 1; i <= count; i++) {
        char name[32], parent[32], *xml, *a, *p;
        snprintf(name, sizeof(name), "d%06zu", i);
        snprintf(parent, sizeof(parent), "d%06zu", i - 1);
        xml = snapshot_from_template(b->qsnap_template, name, i > 1 ? parent : NULL, false);
        if ((a = strstr(xml, "  <active>0</active>\n")))
            memmove(a, a + strlen("  <active>0</active>\n"), strlen(a + strlen("  <active>0</active>\n")) + 1);
        p = qs_asprintf("%s/%s.xml", in, name);
        write_text(p, xml, 0);
        free(p);
        free(xml);
    }
}

struct redefrun {
    char *in, *root; /* the inputs; the run's root (NULL between runs) */
    size_t done;     /* redefined in this run */
    double *ops;     /* every redefine's wall time */
    size_t nops;
};

/* STEP more redefines of RD's current run (a fresh root when it starts); the time into RD. */
static double redefine_step(struct bench *b, struct redefres *rd, struct redefrun *x, size_t step)
{
    char *p, *saved = b->root;
    int64_t t0;
    double ms;

    if (!x->root) {
        x->root = qs_asprintf("%s/redefine-%zu", b->shmdir, rd->count);
        make_dir(x->root, 0700);
        p = qs_asprintf("%s/qemu", x->root), make_dir(p, 0700), free(p);
        p = qs_asprintf("%s/qemu/%s.xml", x->root, DOMAIN), write_text(p, b->qsnap_domxml, 0), free(p);
    }
    b->root = x->root;
    t0 = qs_now_ns();
    for (size_t i = x->done + 1; i <= x->done + step; i++) {
        struct bench_run r;
        p = qs_asprintf("%s/d%06zu.xml", x->in, i);
        QOK(b, qsnap_try(b, &r, "snapshot-create", DOMAIN, p, "--redefine", (char *)NULL),
            "qsnap snapshot-create --redefine");
        rd->cpu_ms += r.cpu_ms;
        x->ops[x->nops++] = r.wall_ms;
        free(p);
    }
    ms = (double)(qs_now_ns() - t0) / 1e6;
    b->root = saved;
    rd->wall_ms += ms;
    if ((x->done += step) == rd->count) {
        remove_tree(x->root);
        free(x->root);
        x->root = NULL;
        x->done = 0;
        rd->runs++;
    }
    return ms;
}

static void run_redefine(struct bench *b)
{
    struct redefrun x[MAX_COUNTS] = {0};
    size_t small = SIZE_MAX, big = 0;

    if (!b->nredef || !b->qsnap_template || !b->qsnap_domxml)
        return;
    for (size_t k = 0; k < b->nredef; k++) {
        small = b->redef[k].count < small ? b->redef[k].count : small;
        big = b->redef[k].count > big ? b->redef[k].count : big;
    }
    for (size_t k = 0; k < b->nredef; k++) {
        x[k].in = qs_asprintf("%s/redefine-in-%zu", b->shmdir, b->redef[k].count);
        redefine_inputs(b, x[k].in, b->redef[k].count);
        x[k].ops = qs_xcalloc(big * (size_t)b->redef_rounds, sizeof(double));
    }
    for (int round = 0; round < b->redef_rounds; round++) {
        progress("redefine one by one: round %d/%d, %zu snapshots per count in turns of %zu", round + 1,
                 b->redef_rounds, big, small);
        for (size_t j = 0; j < big / small; j++)
            for (size_t i = 0; i < b->nredef; i++) {
                size_t k = (i + j) % b->nredef;
                b->redef[k].round_ms[round] += redefine_step(b, &b->redef[k], &x[k], small);
            }
        for (size_t k = 0; k < b->nredef; k++)
            b->redef[k].round_ms[round] /= (double)(big / b->redef[k].count);
    }
    for (size_t k = 0; k < b->nredef; k++) {
        qsort(x[k].ops, x[k].nops, sizeof(double), cmp_double);
        b->redef[k].op_median_ms = x[k].ops[x[k].nops / 2];
        progress("  %zu: %zu runs, %.2f s each", b->redef[k].count, b->redef[k].runs,
                 b->redef[k].wall_ms / 1e3 / (double)b->redef[k].runs);
        free(x[k].ops);
        remove_tree(x[k].in);
        free(x[k].in);
    }
}

/* ------------------------------------------------------------------------------------------------ */
/* Output. */

static double med(const struct bench_series *s)
{
    return s->n ? bench_series_median(s) : NAN;
}

static void md_ms(FILE *f, const struct cell *c, enum side sd)
{
    if (c->t[sd].n)
        fprintf(f, " %.1f |", med(&c->t[sd]));
    else
        fprintf(f, " %s |", c->na[sd] ? c->na[sd] : "-");
}

static void md_ratio(FILE *f, double a, double b)
{
    if (isnan(a) || isnan(b) || b <= 0)
        fputs(" - |", f);
    else
        fprintf(f, " %.2fx |", a / b);
}

static void md_pause(FILE *f, const struct cell *c)
{
    bool any = false;
    fputs(" ", f);
    for (int sd = 0; sd < S__LAST; sd++) {
        if (sd)
            fputs(" / ", f);
        if (c->pause[sd].n) {
            fprintf(f, "%.1f", med(&c->pause[sd]));
            any = true;
        } else {
            fputs("-", f);
        }
    }
    if (!any) {
        fputs(" |", f);
        return;
    }
    fputs(" |", f);
}

static void md_cell_row(FILE *f, const char *label, const struct cell *c, bool pause)
{
    fprintf(f, "| %s |", label);
    md_ms(f, c, S_Q);
    md_ms(f, c, S_R);
    md_ms(f, c, S_V);
    if (c->t[S_Q].n && c->t[S_R].n)
        fprintf(f, " %+.1f |", med(&c->t[S_Q]) - med(&c->t[S_R]));
    else
        fputs(" - |", f);
    md_ratio(f, med(&c->t[S_Q]), med(&c->t[S_R]));
    md_ratio(f, med(&c->t[S_V]), med(&c->t[S_Q]));
    if (pause)
        md_pause(f, c);
    else
        fputs(" - |", f);
    if (c->cpu.n)
        fprintf(f, " %.1f |", med(&c->cpu));
    else
        fputs(" - |", f);
    if (c->rss_kb)
        fprintf(f, " %.1f MiB |\n", (double)c->rss_kb / 1024.0);
    else
        fputs(" - |\n", f);
}

/* Where the internal rows' time goes: QEMU's job (the same job with the same arguments on both sides) and the
 * rest of each side's wall time; the first N rows of C (those that ran a job). */
static void md_job_table(FILE *f, const struct cell *c, const char *const *names, int n)
{
    bool any = false;
    for (int r = 0; r < n; r++)
        any = any || (c[r].job[S_Q].n && c[r].job[S_R].n);
    if (!any)
        return;
    fputs("The internal rows split at QEMU's own stamps: **QEMU's job** from its JOB_STATUS_CHANGE \"created\" to "
          "\"concluded\" (the same snapshot-save/-load/-delete job with the same arguments on both sides), and "
          "**the rest**, the side's wall time outside it (qsnap: process start, QMP connection and queries, "
          "metadata, exit; raw: sending the command, reading the end).\n\n"
          "| operation | QEMU's job, qsnap / raw | the rest, qsnap / raw | the rest, qsnap-raw |\n"
          "|---|---:|---:|---:|\n",
          f);
    for (int r = 0; r < n; r++) {
        const struct cell *x = &c[r];
        if (!x->job[S_Q].n || !x->job[S_R].n)
            continue;
        fprintf(f, "| %s | %.1f / %.1f | %.1f / %.1f | %+.1f |\n", names[r], med(&x->job[S_Q]),
                med(&x->job[S_R]), med(&x->rest[S_Q]), med(&x->rest[S_R]), med(&x->rest[S_Q]) - med(&x->rest[S_R]));
    }
    fputs("\n", f);
}

static const char table_head[] =
    "| operation | qsnap | raw QMP | virsh | qsnap-raw | qsnap/raw | virsh/qsnap | guest pause q / raw / virsh | "
    "qsnap CPU | qsnap peak RSS |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";

/* One target: what, the measured value, and met / missed. */
#define QEMU_JOB 2   /* missed by no more than the same QEMU job ran longer on qsnap's turn */
#define QEMU_FLOOR 3 /* missed where QEMU's own figure (the raw side) misses it too, and qsnap is within */
#define FLOOR_SLACK 1.1 /* 10% of it (qsnap's live snapshot also takes the disks', which raw's leaves out) */

struct target {
    char what[200], measured[128];
    int met; /* 1 met, 0 missed, -1 not measured, QEMU_JOB, QEMU_FLOOR */
};

struct targets {
    struct target t[32];
    size_t n;
};

static void target_add(struct targets *ts, int met, const char *measured, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void target_add(struct targets *ts, int met, const char *measured, const char *fmt, ...)
{
    struct target *t;
    va_list ap;
    if (ts->n == sizeof(ts->t) / sizeof(ts->t[0]))
        return;
    t = &ts->t[ts->n++];
    va_start(ap, fmt);
    vsnprintf(t->what, sizeof(t->what), fmt, ap);
    va_end(ap);
    snprintf(t->measured, sizeof(t->measured), "%s", measured);
    t->met = met;
}

static const struct scaleres *scale_at(const struct bench *b, size_t count)
{
    for (size_t k = 0; k < b->nscale; k++)
        if (b->scale[k].count == count)
            return &b->scale[k];
    return NULL;
}

static void compute_targets(const struct bench *b, struct targets *ts)
{
    char m[128];
    int met;

    memset(ts, 0, sizeof(*ts));
    /* item 1: internal create at raw + 10 ms and faster than virsh */
    for (size_t i = 0; i < b->nsizes; i++) {
        const struct sizeres *s = &b->sizes[i];
        for (int r = R_CREATE; r <= R_CREATE_FRESH; r++) {
            const struct cell *c = &s->c[r];
            double q = med(&c->t[S_Q]), raw = med(&c->t[S_R]), v = med(&c->t[S_V]);
            double qj = med(&c->job[S_Q]), rj = med(&c->job[S_R]), qr = med(&c->rest[S_Q]), rr = med(&c->rest[S_R]);
            snprintf(m, sizeof(m), "%+.1f ms (%.1f vs %.1f; QEMU's job %.1f vs %.1f)", q - raw, q, raw, qj, rj);
            /* over by more than QEMU's job ran longer on qsnap's turn, or by what qsnap did outside it: missed;
               over only as far as the same job with the same arguments took longer: QEMU's */
            met = isnan(q - raw) ? -1 : q - raw <= 10 ? 1 : 0;
            if (met == 0 && !isnan(qr - rr) && qr - rr <= 10 && q - raw - (qj - rj) <= 10)
                met = QEMU_JOB;
            target_add(ts, met, m, "internal create %s, %d MiB: qsnap <= raw + 10 ms",
                       r == R_CREATE ? "after a revert" : "with no revert before", s->mb);
            snprintf(m, sizeof(m), "%+.1f ms (%.1f vs %.1f)", qr - rr, qr, rr);
            target_add(ts, isnan(qr - rr) ? -1 : qr - rr <= 10, m,
                       "internal create %s, %d MiB: qsnap's time outside QEMU's job <= raw's + 10 ms",
                       r == R_CREATE ? "after a revert" : "with no revert before", s->mb);
            snprintf(m, sizeof(m), "%.1f vs %.1f ms", q, v);
            target_add(ts, isnan(q) || isnan(v) ? -1 : q < v, m, "internal create %s, %d MiB: qsnap faster than virsh",
                       r == R_CREATE ? "after a revert" : "with no revert before", s->mb);
        }
    }
    /* item 2: the whole process at raw + 10 ms on the idle guest */
    for (int k = IDLE_CREATE; k <= IDLE_DELETE; k++) {
        const struct cell *c = &b->idle[k];
        double q = med(&c->t[S_Q]), raw = med(&c->t[S_R]);
        snprintf(m, sizeof(m), "%+.1f ms (%.1f vs %.1f; qsnap CPU %.1f)", q - raw, q, raw, med(&c->cpu));
        target_add(ts, isnan(q - raw) ? -1 : q - raw <= 10, m, "%s, idle %d MiB guest: qsnap <= raw + 10 ms",
                   idle_names[k], b->idle_mb);
    }
    {
        const struct cell *c = &b->idle[IDLE_REVERT];
        double sp = med(&c->t[S_V]) / med(&c->t[S_Q]);
        snprintf(m, sizeof(m), "%.1fx", sp);
        target_add(ts, isnan(sp) ? -1 : sp >= 50, m, "revert in place >= 50x faster than virsh's, idle %d MiB guest",
                   b->idle_mb);
    }
    /* item 3: flat in N */
    {
        const struct scaleres *one = scale_at(b, 1), *ten = scale_at(b, 10000), *hundred = scale_at(b, 100000);
        for (int k = 0; one && ten && k < SC__LAST; k++) {
            double a = med(&one->op[k].t[S_Q]), z = med(&ten->op[k].t[S_Q]);
            if (k == SC_LIST)
                continue;
            snprintf(m, sizeof(m), "%.2fx (%.1f vs %.1f ms)", z / a, z, a);
            target_add(ts, isnan(z / a) ? -1 : z / a <= 1.2, m, "%s at 10,000 snapshots <= 1.2x at 1", scale_names[k]);
        }
        if (ten) {
            double l = med(&ten->op[SC_LIST].t[S_Q]);
            snprintf(m, sizeof(m), "%.1f ms", l);
            target_add(ts, isnan(l) ? -1 : l <= 20, m, "snapshot-list of 10,000 snapshots <= 20 ms");
        }
        if (hundred) {
            snprintf(m, sizeof(m), "list %.1f, create %.1f, delete %.1f ms", med(&hundred->op[SC_LIST].t[S_Q]),
                     med(&hundred->op[SC_CREATE].t[S_Q]), med(&hundred->op[SC_DELETE].t[S_Q]));
            target_add(ts, hundred->op[SC_LIST].t[S_Q].n ? 1 : -1, m, "100,000 snapshots in one domain work");
        }
    }
    if (b->nredef >= 2 && b->redef[0].runs && b->redef[1].runs) {
        const struct redefres *x = &b->redef[0], *y = &b->redef[1];
        double xr = x->wall_ms / (double)x->runs, yr = y->wall_ms / (double)y->runs;
        double ratio = yr / xr, cratio = (y->cpu_ms / (double)y->runs) / (x->cpu_ms / (double)x->runs);
        double allowed = (double)y->count / (double)x->count;
        char rounds[64] = "";
        for (int r = 0; r < b->redef_rounds && b->redef_rounds > 1; r++)
            snprintf(rounds + strlen(rounds), sizeof(rounds) - strlen(rounds), "%s%.2f", r ? ", " : "; rounds ",
                     y->round_ms[r] / x->round_ms[r]);
        snprintf(m, sizeof(m), "%.2fx (%.2f vs %.3f s a run%s; CPU %.2fx; one redefine's median %.2f vs %.2f ms)",
                 ratio, yr / 1e3, xr / 1e3, rounds, cratio, y->op_median_ms, x->op_median_ms);
        target_add(ts, ratio <= allowed, m, "redefining %zu one by one <= %.0fx redefining %zu", y->count, allowed,
                   x->count);
    }
    /* item 4: the guest's pause, and the whole live snapshot against a stop-and-save (raw's --memspec: stop,
       the RAM to a file, the disks' snapshot, cont) */
    for (size_t i = 0; i < b->nsizes; i++) {
        const struct sizeres *s = &b->sizes[i];
        double raw = med(&s->c[R_LIVE].pause[S_R]), q = med(&s->c[R_LIVE].pause[S_Q]);
        double lq = med(&s->c[R_LIVE].t[S_Q]), lr = med(&s->c[R_LIVE].t[S_R]), save = med(&s->c[R_MEM].t[S_R]);
        if (s->mb != 1024)
            continue;
        snprintf(m, sizeof(m), "raw %.1f ms, qsnap %.1f ms", raw, q);
        met = isnan(q) ? -1 : q <= 10 ? 1 : 0;
        if (met == 0 && raw > 10 && q <= raw * FLOOR_SLACK)
            met = QEMU_FLOOR;
        target_add(ts, met, m, "live snapshot pause <= 10 ms at 1 GiB");
        snprintf(m, sizeof(m), "%.1fx (%.0f vs %.0f ms; QEMU's own background snapshot %.0f ms: %.1fx)", lq / save, lq,
                 save, lr, lr / save);
        met = isnan(lq / save) ? -1 : lq / save <= 1.5 ? 1 : 0;
        if (met == 0 && lr / save > 1.5 && lq <= lr * FLOOR_SLACK)
            met = QEMU_FLOOR;
        target_add(ts, met, m, "whole live snapshot <= 1.5x a stop-and-save (raw), 1 GiB");
    }
}

static const char *met_word(int met)
{
    return met < 0                ? "not measured"
           : met == QEMU_JOB   ? "over in QEMU's job only"
           : met == QEMU_FLOOR ? "QEMU's floor: its own figure is over"
           : met               ? "**met**"
                               : "**missed**";
}

static void write_md(const struct bench *b, FILE *f)
{
    struct targets ts;
    char when[64];
    struct tm tm;

    compute_targets(b, &ts);
    gmtime_r(&b->started, &tm);
    strftime(when, sizeof(when), "%Y-%m-%d %H:%M UTC", &tm);
    fprintf(f, "# qsnap vs the raw QMP floor vs virsh: summary\n\n");
    if (b->aa)
        fputs("**A/A control (--aa)**: in the internal rows the \"qsnap\" column is raw's QMP operations run in "
              "qsnap's turns - two identical sides.\n\n",
              f);
    fprintf(f, "One run of `scripts/bench` (%s, %.0f s of benchmark): QEMU %s, TCG, %ld CPUs shared, load average "
               "%.2f before / %.2f after; virsh: %s%s. N = %d per cell (%d for the 1 GiB internal cells, every "
               "live cell and virsh's internal create/revert/delete/list; each after an untimed warm-up); times in "
               "ms, medians.\n\n",
            when, b->total_s, b->qemu_version, sysconf(_SC_NPROCESSORS_ONLN), b->load_before, b->load_after,
            b->virsh ? b->libvirt_version : "not run", b->virsh && b->virsh_qemu[0] ? b->virsh_qemu : "", b->n,
            b->n_slow);
    fputs("- **qsnap**: the whole process, posix_spawn to wait4; its state directory on the same tmpfs as the "
          "images (the idle section also times one on disk). **raw QMP**: the same QEMU work on an open QMP "
          "connection (internal: snapshot-save/-load/-delete jobs, query-named-block-nodes; disk-only: "
          "transaction{blockdev-snapshot-sync}; --memspec: stop, migrate to an fd, transaction, cont; live: "
          "background-snapshot on, migrate to an fd while the guest runs, capability off - memory only, no disk "
          "overlay). **virsh**: one `virsh` process per command against libvirtd, on a libvirt domain "
          "with the same boot image and RAM; its revert restarts QEMU; its \"live\" row is `--live --memspec` "
          "(pre-copy migration, libvirt's only live mode).\n"
          "- **guest pause**: QEMU's STOP -> RESUME event stamps on a second monitor, qsnap / raw / virsh (0 = the "
          "vCPUs never stopped). **qsnap CPU**: user + system time of the qsnap process (what it costs whatever "
          "the machine's load). **peak RSS**: the largest ru_maxrss of the qsnap processes in that cell.\n"
          "- Internal creates: every side's create of a row starts from the same state - right after a load of one "
          "snapshot (\"after a revert\"), or right after that create (\"no revert before\"). After a load QEMU "
          "copies the loaded snapshot's vmstate clusters on write, which the first save pays.\n"
          "- Guest RAM: QEMU's anonymous RAM filled with pseudo-random data through /proc/PID/mem (HMP "
          "`gpa2hva`), 1 MiB to 2 MiB below the top; the same for libvirt's QEMU. Disk images, memory files "
          "and overlays on /dev/shm.\n\n",
          f);
    for (size_t i = 0; i < b->nsizes; i++) {
        const struct sizeres *s = &b->sizes[i];
        fprintf(f, "## %d MiB guest RAM, filled (internal vmstate %.0f MiB)\n\n%s", s->mb,
                (double)s->vmstate_bytes / 1048576.0, table_head);
        for (int r = 0; r < R__LAST; r++)
            md_cell_row(f, row_names[r], &s->c[r], r <= R_REVERT);
        fputs("\n", f);
        md_job_table(f, s->c, row_names, R__LAST);
        if (!isnan(s->mem_first_ms) && s->mem_first_ms > 0)
            fprintf(f, "Before the external rows, one raw stop-and-migrate, untimed (the VM's first migration after "
                       "the internal rows, which would fall to the side that goes first): %.1f ms.\n\n",
                    s->mem_first_ms);
        if (b->live_ok != 1)
            fprintf(f, "qsnap live: n/a - the binary said: `%s`\n\n", b->live_why ? b->live_why : "not tried");
    }
    if (b->idle_mb > 0) {
        fprintf(f, "## %d MiB guest RAM, idle (nearly all zero pages): qsnap's own cost\n\n%s", b->idle_mb, table_head);
        for (int k = 0; k < IDLE__LAST; k++)
            md_cell_row(f, idle_names[k], &b->idle[k], k != IDLE_DELETE && k != IDLE_DELETE_DISK);
        fputs("\n", f);
        md_job_table(f, b->idle, idle_names, IDLE__LAST);
        fputs("Every create follows a revert on every side. \"state on disk\": the same commands with qsnap's "
              "state directory on the machine's disk (ext4), where its synced writes (intent record, metadata) "
              "cost what a flush costs there.\n\n",
              f);
    }
    if (b->nscale) {
        fputs("## Flat in the number of snapshots (qsnap, idle guest)\n\n| snapshots in the domain |", f);
        for (int k = 0; k < SC__LAST; k++)
            fprintf(f, " %s |", scale_names[k]);
        fputs(" first listing (no index) | qsnap CPU: create / info / list |\n|---:|", f);
        for (int k = 0; k <= SC__LAST + 1; k++)
            fputs("---:|", f);
        fputs("\n", f);
        for (size_t i = 0; i < b->nscale; i++) {
            const struct scaleres *sc = &b->scale[i];
            fprintf(f, "| %zu |", sc->count);
            for (int k = 0; k < SC__LAST; k++)
                fprintf(f, " %.1f |", med(&sc->op[k].t[S_Q]));
            fprintf(f, " %.0f | %.1f / %.1f / %.1f |\n", sc->cold_ms, med(&sc->op[SC_CREATE].cpu),
                    med(&sc->op[SC_INFO].cpu), med(&sc->op[SC_LIST].cpu));
        }
        fprintf(f,
                "\nOne real snapshot per domain, the others metadata only (a chain, as libvirt leaves its files); "
                "all the domains attached to one VM, the counts taking turns round by round; medians of %d "
                "rounds.\n\n",
                b->n_scale);
    }
    if (b->nredef) {
        fprintf(f, "## Redefining one by one\n\n%d rounds; in each, every count redefines as many snapshots as the "
                   "largest, the counts taking turns %zu redefines at a time.\n\n| snapshots | runs | one run: mean "
                   "| in each round | per snapshot: mean / median | qsnap CPU, one run |\n|---:|---:|---:|---|---:|---:|\n",
                b->redef_rounds, b->redef[0].count);
        for (size_t i = 0; i < b->nredef; i++) {
            const struct redefres *rd = &b->redef[i];
            if (!rd->runs)
                continue;
            fprintf(f, "| %zu | %zu | %.3f s | ", rd->count, rd->runs, rd->wall_ms / 1e3 / (double)rd->runs);
            for (int r = 0; r < b->redef_rounds; r++)
                fprintf(f, "%s%.3f s", r ? ", " : "", rd->round_ms[r] / 1e3);
            fprintf(f, " | %.3f / %.3f ms | %.2f s |\n", rd->wall_ms / ((double)rd->count * (double)rd->runs),
                    rd->op_median_ms, rd->cpu_ms / 1e3 / (double)rd->runs);
        }
        fputs("\nA flat cost per redefine makes the ratio of the runs' times the counts' ratio, give or take the "
              "machine's noise; the median says what one redefine costs.\n\n",
              f);
    }
    if (b->nlists) {
        fprintf(f, "## snapshot-list at scale (metadata only)\n\n%s", table_head);
        for (size_t k = 0; k < b->nlists; k++) {
            char label[32];
            snprintf(label, sizeof(label), "%zu", b->lists[k].count);
            md_cell_row(f, label, &b->lists[k].c, false);
        }
        fputs("\n", f);
    }
    if (b->npts) {
        fputs("## Guest pause against RAM size (pause.png)\n\nRaw QMP, median ms; the same procedure at every size: "
              "savevm = a snapshot-save job right after a snapshot-load (as every internal create \"after a "
              "revert\" above), stop-and-migrate = the raw --memspec work, live = a background snapshot of the "
              "running guest (memory only); in parentheses the first background snapshot after the RAM fill (the "
              "untimed warm-up; none when qsnap's live snapshots ran first on that VM). Live snapshots run on a VM "
              "of their own, after everything else.\n\n| guest RAM | savevm | stop-and-migrate (--memspec) | live "
              "(background-snapshot) | live (qsnap --live) |\n|---:|---:|---:|---:|---:|\n",
              f);
        for (size_t i = 0; i < b->npts; i++) {
            const struct pausept *p = &b->pts[i];
            fprintf(f, "| %d MiB | %.1f | %.1f | %.1f", p->mb, med(&p->savevm), med(&p->memspec), med(&p->live));
            if (!isnan(p->live_first_ms))
                fprintf(f, " (%.1f)", p->live_first_ms);
            fputs(" | ", f);
            if (p->qlive.n)
                fprintf(f, "%.1f |\n", med(&p->qlive));
            else
                fputs("n/a |\n", f);
        }
    }
    fprintf(f, "\nProcess floors on this machine during the run: posix_spawn of /bin/true %.1f ms, `qsnap version` "
               "(exec, loading, no work) %.1f ms.\n",
            med(&b->floor_true), med(&b->floor_version));
    fputs("\n## Targets (this run)\n\n| target | measured | |\n|---|---:|---|\n", f);
    for (size_t i = 0; i < ts.n; i++)
        fprintf(f, "| %s | %s | %s |\n", ts.t[i].what, ts.t[i].measured, met_word(ts.t[i].met));
    fputs("\n", f);
}

static void json_num(FILE *f, double v)
{
    if (isnan(v) || isinf(v))
        fputs("null", f);
    else
        fprintf(f, "%.3f", v);
}

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; s && *s; s++) {
        if (*s == '"' || *s == '\\')
            fprintf(f, "\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            fprintf(f, "\\u%04x", *s);
        else
            fputc(*s, f);
    }
    fputc('"', f);
}

static void json_series(FILE *f, const struct bench_series *s)
{
    fputs("{\"median\": ", f);
    json_num(f, med(s));
    fputs(", \"samples\": [", f);
    for (size_t i = 0; i < s->n; i++)
        fprintf(f, "%s%.3f", i ? ", " : "", s->v[i]);
    fputs("]}", f);
}

static void json_cell(FILE *f, const struct cell *c)
{
    fputs("{", f);
    for (int sd = 0; sd < S__LAST; sd++) {
        fprintf(f, "%s\"%s_ms\": ", sd ? ", " : "", side_names[sd]);
        if (c->t[sd].n)
            json_series(f, &c->t[sd]);
        else if (c->na[sd])
            json_str(f, c->na[sd]);
        else
            fputs("null", f);
        fprintf(f, ", \"%s_pause_ms\": ", side_names[sd]);
        if (c->pause[sd].n)
            json_series(f, &c->pause[sd]);
        else
            fputs("null", f);
    }
    for (int sd = 0; sd < S__LAST; sd++)
        if (c->job[sd].n) {
            fprintf(f, ", \"%s_job_ms\": ", side_names[sd]);
            json_series(f, &c->job[sd]);
            fprintf(f, ", \"%s_rest_ms\": ", side_names[sd]);
            json_series(f, &c->rest[sd]);
        }
    fputs(", \"qsnap_cpu_ms\": ", f);
    if (c->cpu.n)
        json_series(f, &c->cpu);
    else
        fputs("null", f);
    fputs(", \"qsnap_over_raw\": ", f);
    json_num(f, med(&c->t[S_Q]) / med(&c->t[S_R]));
    fputs(", \"qsnap_minus_raw_ms\": ", f);
    json_num(f, med(&c->t[S_Q]) - med(&c->t[S_R]));
    fputs(", \"virsh_over_qsnap\": ", f);
    json_num(f, med(&c->t[S_V]) / med(&c->t[S_Q]));
    fputs(", \"qsnap_peak_rss_kib\": ", f);
    if (c->rss_kb)
        fprintf(f, "%ld", c->rss_kb);
    else
        fputs("null", f);
    fputs("}", f);
}

static void write_json(const struct bench *b, FILE *f)
{
    struct targets ts;

    compute_targets(b, &ts);
    fprintf(f, "{\n  \"started_unix\": %lld, \"seconds\": %.1f, \"qemu\": ", (long long)b->started, b->total_s);
    json_str(f, b->qemu_version);
    fputs(", \"libvirt\": ", f);
    json_str(f, b->virsh ? b->libvirt_version : "");
    fputs(", \"libvirt_qemu\": ", f);
    json_str(f, b->virsh_qemu);
    fprintf(f, ", \"n\": %d, \"n_slow\": %d, \"n_scale\": %d, \"redefine_rounds\": %d, \"virsh\": %s, \"load_before\": %.2f, "
               "\"load_after\": %.2f,\n",
            b->n, b->n_slow, b->n_scale, b->redef_rounds, b->virsh ? "true" : "false", b->load_before, b->load_after);
    fputs("  \"qsnap_live\": ", f);
    if (b->live_ok == 1)
        fputs("\"supported\"", f);
    else
        json_str(f, b->live_why ? b->live_why : "not tried");
    fputs(",\n  \"floor_spawn_bin_true_ms\": ", f);
    json_series(f, &b->floor_true);
    fputs(", \"floor_qsnap_version_ms\": ", f);
    json_series(f, &b->floor_version);
    fputs(",\n  \"sizes\": [\n", f);
    for (size_t i = 0; i < b->nsizes; i++) {
        const struct sizeres *s = &b->sizes[i];
        fprintf(f, "    {\"guest_ram_mib\": %d, \"vmstate_bytes\": %lld, \"memspec_first_raw_ms\": ", s->mb,
                (long long)s->vmstate_bytes);
        json_num(f, s->mem_first_ms > 0 ? s->mem_first_ms : NAN);
        for (int r = 0; r < R__LAST; r++) {
            fprintf(f, ",\n      \"%s\": ", row_keys[r]);
            json_cell(f, &s->c[r]);
        }
        fprintf(f, "}%s\n", i + 1 < b->nsizes ? "," : "");
    }
    fprintf(f, "  ],\n  \"idle\": {\"guest_ram_mib\": %d", b->idle_mb);
    for (int k = 0; k < IDLE__LAST; k++) {
        fprintf(f, ",\n    \"%s\": ", idle_keys[k]);
        json_cell(f, &b->idle[k]);
    }
    fputs("},\n  \"scale\": [\n", f);
    for (size_t i = 0; i < b->nscale; i++) {
        const struct scaleres *sc = &b->scale[i];
        fprintf(f, "    {\"snapshots\": %zu, \"first_listing_ms\": ", sc->count);
        json_num(f, sc->cold_ms);
        for (int k = 0; k < SC__LAST; k++) {
            fprintf(f, ", \"%s\": ", scale_keys[k]);
            json_cell(f, &sc->op[k]);
        }
        fprintf(f, "}%s\n", i + 1 < b->nscale ? "," : "");
    }
    fputs("  ],\n  \"redefine\": [", f);
    for (size_t i = 0; i < b->nredef; i++) {
        fprintf(f, "%s{\"snapshots\": %zu, \"runs\": %zu, \"wall_ms\": ", i ? ", " : "", b->redef[i].count,
                b->redef[i].runs);
        json_num(f, b->redef[i].wall_ms);
        fputs(", \"qsnap_cpu_ms\": ", f);
        json_num(f, b->redef[i].cpu_ms);
        fputs(", \"op_median_ms\": ", f);
        json_num(f, b->redef[i].op_median_ms);
        fputs(", \"round_ms\": [", f);
        for (int r = 0; r < b->redef_rounds; r++) {
            fputs(r ? ", " : "", f);
            json_num(f, b->redef[i].round_ms[r]);
        }
        fputs("]}", f);
    }
    fputs("],\n  \"list_scale\": [\n", f);
    for (size_t k = 0; k < b->nlists; k++) {
        fprintf(f, "    {\"snapshots\": %zu, \"qsnap_cold_ms\": ", b->lists[k].count);
        json_num(f, b->lists[k].q_cold_ms);
        fputs(", \"list\": ", f);
        json_cell(f, &b->lists[k].c);
        fprintf(f, "}%s\n", k + 1 < b->nlists ? "," : "");
    }
    fputs("  ],\n  \"pause_vs_ram\": [\n", f);
    for (size_t i = 0; i < b->npts; i++) {
        const struct pausept *p = &b->pts[i];
        fprintf(f, "    {\"guest_ram_mib\": %d, \"live_raw_first_ms\": ", p->mb);
        json_num(f, p->live_first_ms);
        fputs(", \"savevm_ms\": ", f);
        json_series(f, &p->savevm);
        fputs(", \"stop_and_migrate_ms\": ", f);
        json_series(f, &p->memspec);
        fputs(", \"live_raw_ms\": ", f);
        json_series(f, &p->live);
        fputs(", \"live_qsnap_ms\": ", f);
        if (p->qlive.n)
            json_series(f, &p->qlive);
        else
            fputs("null", f);
        fprintf(f, "}%s\n", i + 1 < b->npts ? "," : "");
    }
    fputs("  ],\n  \"targets\": [\n", f);
    for (size_t i = 0; i < ts.n; i++) {
        fputs("    {\"target\": ", f);
        json_str(f, ts.t[i].what);
        fputs(", \"measured\": ", f);
        json_str(f, ts.t[i].measured);
        fprintf(f, ", \"met\": %s%s}%s\n", ts.t[i].met < 0 ? "null" : ts.t[i].met == 1 ? "true" : "false",
                ts.t[i].met == QEMU_JOB ? ", \"over_in\": \"qemu_job\""
                : ts.t[i].met == QEMU_FLOOR ? ", \"over_in\": \"qemu_floor\""
                                            : "",
                i + 1 < ts.n ? "," : "");
    }
    fputs("  ]\n}\n", f);
}

/* gnuplot data: MiB savevm stop-and-migrate live-raw live-qsnap (NaN: none). */
static void write_dat(const struct bench *b, FILE *f)
{
    fputs("# guest_ram_mib savevm_ms stop_and_migrate_ms live_raw_ms live_qsnap_ms (medians)\n", f);
    for (size_t i = 0; i < b->npts; i++) {
        const struct pausept *p = &b->pts[i];
        fprintf(f, "%d %.3f %.3f %.3f ", p->mb, med(&p->savevm), med(&p->memspec), med(&p->live));
        if (p->qlive.n)
            fprintf(f, "%.3f\n", med(&p->qlive));
        else
            fputs("NaN\n", f);
    }
}

static FILE *open_out(const char *path)
{
    FILE *f = fopen(path, "we");
    if (!f)
        bench_die(qs_asprintf("cannot write '%s': %s", path, strerror(errno)), NULL);
    return f;
}

/* ------------------------------------------------------------------------------------------------ */

static size_t parse_list(const char *s, int *out, size_t max)
{
    size_t n = 0;
    char *copy = qs_xstrdup(s), *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t && n < max; t = strtok_r(NULL, ",", &save))
        if (*t)
            out[n++] = atoi(t);
    free(copy);
    return n;
}

static void usage(void)
{
    fputs("usage: bench_summary [--qsnap PATH] [--guest PATH] [-n N] [--n-slow N] [--n-scale N] [--sizes MIB,...]\n"
          "                     [--pause-sizes MIB,...] [--list-counts N,...] [--virsh] [--manage-libvirtd]\n"
          "                     [--idle-revert MIB] [--scale-counts N,...] [--redefine-counts N,...]\n"
          "                     [--redefine-rounds N] [--libvirt-root DIR] [--skip-live] [--aa] [--md FILE] [--json FILE] [--pause-dat FILE]\n"
          "Defaults: -n 5 --n-slow 3 --n-scale 21 --sizes 256,1024 --pause-sizes 128,256,512,1024\n"
          "--list-counts 10,1000,10000 --idle-revert 256 (0: none) --scale-counts 1,10000,100000 --redefine-counts 1000,10000 (\"\": none)\n"
          "--redefine-rounds 3 (each count redefines the largest count's number per round, in turns).\n"
          "--libvirt-root: virsh and libvirtd of the root scripts/libvirt11 made (libvirt 11.3, QEMU 10.0).\n"
          "--virsh: also time virsh (libvirtd must be running, qemu:///system); --manage-libvirtd: this run may\n"
          "stop and start libvirtd (pid in /run/libvirtd.pid) to load 10,000 snapshot files for virsh's list.\n"
          "--aa: a control - in the internal rows qsnap's turns run raw's QMP operations too (the \"qsnap\" column\n"
          "is then raw in qsnap's place): how far two identical sides differ on this machine.\n",
          stderr);
    exit(2);
}

int main(int argc, char **argv)
{
    static struct bench b;
    const char *guest = getenv("QSNAP_GUEST"), *md = NULL, *json = NULL, *dat = NULL;
    const char *sizes = "256,1024", *psizes = "128,256,512,1024", *counts = "10,1000,10000";
    const char *scounts = "1,10000,100000", *rcounts = "1000,10000";
    char tmpl[] = "/tmp/qsnap-bench-sum.XXXXXX", shm[] = "/dev/shm/qsnap-bench-sum.XXXXXX";
    int szs[MAX_SIZES], ps[MAX_SIZES], cnt[MAX_COUNTS], cnt_s[MAX_COUNTS];
    size_t nps, ncnt;
    double la[3];
    int64_t t0 = qs_now_ms();
    struct stat st;

    bench_prog = "bench_summary";
    b.qsnap = getenv("QSNAP_BIN") ? getenv("QSNAP_BIN") : QSNAP_BENCH_QSNAP;
    if (!guest || !*guest)
        guest = QSNAP_BENCH_GUEST;
    b.n = 5;
    b.n_slow = 3;
    b.redef_rounds = 3;
    b.n_scale = 21; /* tens of ms each: QEMU's own jitter needs more rounds than the file counts change */
    b.idle_mb = 256;
    b.live_ok = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--virsh") == 0) {
            b.virsh = true;
            continue;
        }
        if (strcmp(a, "--manage-libvirtd") == 0) {
            b.manage_libvirtd = true;
            continue;
        }
        if (strcmp(a, "--aa") == 0) {
            b.aa = true;
            continue;
        }
        if (strcmp(a, "--skip-live") == 0) {
            b.skip_live = true;
            b.live_ok = 0;
            b.live_why = qs_xstrdup("not run (--skip-live)");
            continue;
        }
        if (!v)
            usage();
        if (strcmp(a, "--qsnap") == 0)
            b.qsnap = v;
        else if (strcmp(a, "--guest") == 0)
            guest = v;
        else if (strcmp(a, "-n") == 0)
            b.n = atoi(v);
        else if (strcmp(a, "--n-slow") == 0)
            b.n_slow = atoi(v);
        else if (strcmp(a, "--n-scale") == 0)
            b.n_scale = atoi(v);
        else if (strcmp(a, "--redefine-rounds") == 0)
            b.redef_rounds = atoi(v);
        else if (strcmp(a, "--sizes") == 0)
            sizes = v;
        else if (strcmp(a, "--pause-sizes") == 0)
            psizes = v;
        else if (strcmp(a, "--list-counts") == 0)
            counts = v;
        else if (strcmp(a, "--md") == 0)
            md = v;
        else if (strcmp(a, "--json") == 0)
            json = v;
        else if (strcmp(a, "--pause-dat") == 0)
            dat = v;
        else if (strcmp(a, "--idle-revert") == 0)
            b.idle_mb = atoi(v);
        else if (strcmp(a, "--scale-counts") == 0)
            scounts = v;
        else if (strcmp(a, "--redefine-counts") == 0)
            rcounts = v;
        else if (strcmp(a, "--libvirt-root") == 0)
            b.libvirt_root = v;
        else
            usage();
        i++;
    }
    if (b.n < 1 || b.n > BENCH_MAX_SAMPLES || b.n_slow < 1 || b.n_slow > BENCH_MAX_SAMPLES ||
        b.n_scale < 1 || b.n_scale > BENCH_MAX_SAMPLES || b.redef_rounds < 1 || b.redef_rounds > MAX_REDEF_ROUNDS)
        usage();
    if (access(b.qsnap, X_OK) < 0)
        bench_die(qs_asprintf("qsnap binary '%s' not found", b.qsnap), NULL);
    if (access(guest, R_OK) < 0)
        bench_die(qs_asprintf("guest boot sector '%s' not found", guest), NULL);
    setenv("QSNAP_GUEST", guest, 1);
    if (!qh_qemu_available())
        bench_die("qemu-system-x86_64 and qemu-img must be in PATH", NULL);
    if (!mkdtemp(tmpl))
        bench_die("cannot create a work directory", NULL);
    b.workdir = tmpl;
    chmod(tmpl, 0755);
    b.shmdir = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && mkdtemp(shm) ? shm : tmpl;
    chmod(b.shmdir, 0755); /* libvirt's QEMU (another user) reaches its images below it */
    setenv("TMPDIR", b.shmdir, 1); /* the harness's disks */
    b.out_path = qs_asprintf("%s/out.txt", b.workdir);
    b.err_path = qs_asprintf("%s/err.txt", b.workdir);

    b.started = time(NULL);
    for (int i = 0; i < b.n; i++) { /* what any process costs here, before it does anything */
        char *t[] = {"/bin/true", NULL}, *v[] = {(char *)b.qsnap, "version", NULL};
        struct bench_run r;
        bench_spawn(t, b.out_path, b.err_path, &r);
        bench_series_add(&b.floor_true, r.wall_ms);
        bench_spawn(v, b.out_path, b.err_path, &r);
        bench_series_add(&b.floor_version, r.wall_ms);
    }
    getloadavg(la, 3);
    b.load_before = la[0];
    {
        size_t n = parse_list(sizes, szs, MAX_SIZES);
        for (size_t i = 0; i < n; i++)
            b.sizes[b.nsizes++].mb = szs[i];
        nps = parse_list(psizes, ps, MAX_SIZES);
        ncnt = parse_list(counts, cnt, MAX_COUNTS);
        n = parse_list(scounts, cnt_s, MAX_COUNTS);
        for (size_t i = 0; i < n; i++)
            if (cnt_s[i] > 0)
                b.scale[b.nscale++].count = (size_t)cnt_s[i];
        n = parse_list(rcounts, cnt_s, MAX_COUNTS);
        for (size_t i = 0; i < n; i++)
            if (cnt_s[i] > 0)
                b.redef[b.nredef++].count = (size_t)cnt_s[i];
        /* in turns of the first (smallest) count, each count a divisor of the last (largest); no count twice
           (each has its own root and inputs, named by the count) */
        for (size_t i = 1; i < b.nredef; i++)
            if (b.redef[i].count <= b.redef[i - 1].count || b.redef[i].count % b.redef[0].count ||
                b.redef[b.nredef - 1].count % b.redef[i].count)
                bench_die("--redefine-counts: strictly ascending, each a multiple of the first and a divisor of the last", NULL);
    }
    if (b.virsh)
        virsh_versions(&b);
    for (size_t i = 0; i < b.nsizes; i++) {
        run_size(&b, &b.sizes[i]);
        if (b.virsh)
            run_virsh(&b, &b.sizes[i]);
        else
            for (int r = 0; r < R__LAST; r++)
                b.sizes[i].c[r].na[S_V] = qs_xstrdup("n/a (no --virsh)");
    }
    if (b.idle_mb > 0)
        run_idle(&b);
    for (size_t i = 0; i < nps; i++) {
        struct pausept *p = &b.pts[b.npts++];
        const struct sizeres *s = NULL;
        p->mb = ps[i];
        for (size_t k = 0; k < b.nsizes; k++)
            if (b.sizes[k].mb == ps[i])
                s = &b.sizes[k];
        if (s) { /* from the main run: raw savevm, stop-and-migrate (--memspec), live */
            p->savevm = s->c[R_CREATE].pause[S_R];
            p->memspec = s->c[R_MEM].pause[S_R];
            p->live = s->c[R_LIVE].pause[S_R];
            p->qlive = s->c[R_LIVE].pause[S_Q];
            p->live_first_ms = s->live_first_ms;
        } else {
            run_pause_point(&b, p);
        }
    }
    for (size_t k = 0; k < ncnt && b.qsnap_template; k++)
        b.lists[b.nlists++].count = (size_t)cnt[k];
    run_lists(&b);
    run_scale(&b);
    run_redefine(&b);
    getloadavg(la, 3);
    b.load_after = la[0];
    b.total_s = (double)(qs_now_ms() - t0) / 1e3;

    if (md) {
        FILE *f = open_out(md);
        write_md(&b, f);
        fclose(f);
    }
    if (json) {
        FILE *f = open_out(json);
        write_json(&b, f);
        fclose(f);
    }
    if (dat) {
        FILE *f = open_out(dat);
        write_dat(&b, f);
        fclose(f);
    }
    write_md(&b, stdout);
    if (b.shmdir != b.workdir)
        remove_tree(b.shmdir);
    if (!getenv("QSNAP_KEEP_TMP"))
        remove_tree(b.workdir);
    return 0;
}
