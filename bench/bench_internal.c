/* bench_internal.c: qsnap's whole-process time for internal snapshots against the raw QMP work, same VM. */
/*
 * One VM per configuration (guest RAM size; RAM filled with data or idle), started with the test harness
 * and attached to qsnap under a fresh --root. Two sides:
 *   raw   - a QMP client on the VM's test socket, connected before and closed after each operation (untimed):
 *           snapshot-save / -load / -delete with qmp_job_run, and query-named-block-nodes / query-block;
 *   qsnap - the binary from posix_spawn to waitpid: snapshot-create-as, -revert, -delete, -list.
 * Create and delete use each iteration's own snapshot; revert goes back to a base snapshot taken at the
 * start (raw: its own base), so qsnap's "current" moves on every create and revert.
 * The harness's own monitor only watches: JOB_STATUS_CHANGE, STOP and RESUME events, stamped by QEMU, split
 * every job operation into "before the job", "the job", "job end to dismiss" and "after the dismiss", and
 * give the guest's pause.
 *
 * Each iteration runs one side's whole cycle (create, revert, delete, list) and then the other's, the first
 * side alternating, so that both sides' creates follow a load (QEMU's first save after a load is 2-4x slower).
 *
 * Guest RAM "filled": QEMU gets -object memory-backend-file,mem-path=F,share=off and -machine
 * memory-backend=..., with F pre-filled with pseudo-random bytes (on /dev/shm when it exists). The guest
 * sees the file's bytes as its RAM (a private mapping: the guest's own writes never reach F), so every
 * page is non-zero and a save writes all of it. F is unlinked once QEMU has mapped it.
 *
 * Not a test: prints a Markdown report on stdout (progress on stderr) and writes --json / --md.
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
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"
#include "qemu_harness.h"
#include "qmp.h"
#include "qs_proc.h"
#include "qs_util.h"

extern char **environ;

#define MAX_ITER BENCH_MAX_SAMPLES
#define MAX_CONFIGS 8
#define MAX_COUNTS 8
#define DOMAIN "bench"
#define RAW_JOB "bench-raw"
#define QSNAP_JOB "qsnap" /* engine/internal.c's job id: events with it are qsnap's */
#define SETTLE_MS 20               /* before every timed operation, untimed: QEMU done with the last one */
#define EVENT_TIMEOUT_MS 10000

/* ------------------------------------------------------------------------------------------------ */
/* Results. */

enum op { OP_CREATE, OP_REVERT, OP_DELETE, OP_LIST, OP__LAST };
static const char *const op_names[] = {"create", "revert", "delete", "list"};
static const char *const op_qsnap[] = {"snapshot-create-as", "snapshot-revert", "snapshot-delete", "snapshot-list"};
static const char *const op_raw[] = {"snapshot-save job", "snapshot-load job", "snapshot-delete job",
                                     "query-named-block-nodes"};
_Static_assert(sizeof(op_names) / sizeof(op_names[0]) == OP__LAST, "op_names");

/* One side (qsnap or raw) of one operation. */
struct side {
    struct bench_series wall;      /* whole time, ms */
    struct bench_series pre;       /* start -> job "created" */
    struct bench_series job;       /* "created" -> "concluded" */
    struct bench_series dismiss;   /* "concluded" -> "null" (dismissed) */
    struct bench_series post;      /* "null" -> end */
    struct bench_series outside;   /* wall minus created->null: everything that is not QEMU's job handling */
    struct bench_series pause;     /* STOP -> RESUME */
};

struct opres {
    struct side q, r;
};

struct config {
    int mem_mb;
    bool filled;
    int64_t vmstate_bytes; /* the warm-up snapshot's vm-state-size */
    struct opres ops[OP__LAST];
    struct bench_series raw_query_block; /* the other query a QMP-side listing would use */
    double elapsed_s;
};

struct floors {
    struct bench_series spawn_true;    /* posix_spawn /bin/true to waitpid */
    struct bench_series qsnap_version; /* qsnap version: exec + dynamic linking, no work */
    struct bench_series qsnap_domstate; /* domain XML + QMP connect + handshake + query-status */
    struct bench_series raw_connect;   /* qmp_client_connect + free: connect, greeting, qmp_capabilities */
    struct bench_series raw_status;    /* query-status on an open connection */
    bool done;
};

struct listscale {
    size_t count;
    double cold_ms; /* first list: no index yet */
    struct bench_series warm;
};

struct bench {
    const char *qsnap;
    const char *workdir;
    const char *ramdir;
    const char *image_dir; /* where the harness puts the VM's disks */
    int n;
    struct config configs[MAX_CONFIGS];
    size_t nconfigs;
    size_t counts[MAX_COUNTS];
    size_t ncounts;
    struct listscale scale[MAX_COUNTS];
    struct floors floors;
    char qemu_version[64];
    double load_before[3], load_after[3];
    time_t started;
    double total_s;
    /* per VM */
    struct qh_vm *vm;
    char *root;
    char *out_path, *err_path;
};

/* ------------------------------------------------------------------------------------------------ */
/* Helpers. */

static void progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void progress(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs("\n", stderr);
    va_end(ap);
}

/* Writes PATH; AGE_S > 0 dates it that many seconds back (as files written long ago). */
static void write_text(const char *path, const char *text, mode_t mode, int age_s)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0 || qs_write_all(fd, text, strlen(text)) < 0) {
        fprintf(stderr, "bench_internal: cannot write '%s': %s\n", path, strerror(errno));
        exit(1);
    }
    if (age_s > 0) {
        struct timespec t[2];
        clock_gettime(CLOCK_REALTIME, &t[0]);
        t[0].tv_sec -= age_s;
        t[1] = t[0];
        futimens(fd, t);
    }
    close(fd);
}

static void make_dir(const char *path)
{
    if (mkdir(path, 0700) < 0 && errno != EEXIST) {
        fprintf(stderr, "bench_internal: cannot create '%s': %s\n", path, strerror(errno));
        exit(1);
    }
}

/* rm -r of a directory this program made (no symlinks followed: it only holds our files). */
static void remove_tree(const char *path)
{
    char *argv[] = {"rm", "-rf", "--", (char *)path, NULL};
    struct qs_proc_result res = {0};
    struct qs_error *err = NULL;
    if (qs_proc_run(argv, 60000, 0, &res, &err) == 0)
        qs_proc_result_release(&res);
    qs_error_free(err);
}

/* ------------------------------------------------------------------------------------------------ */
/* Whole-process runs. */

/* Runs qsnap --root ROOT ARGS...; a failure ends the benchmark with qsnap's stderr. */
static void qsnap_run(struct bench *b, struct bench_run *r, const char *a1, const char *a2, const char *a3,
                      const char *a4)
{
    bench_qsnap_run(b->qsnap, b->root, b->out_path, b->err_path, r, a1, a2, a3, a4, (char *)NULL);
}

/* ------------------------------------------------------------------------------------------------ */
/* The watching monitor (the harness's own). */

struct stamps {
    int64_t created, concluded, null_, stop, resume; /* QEMU's timestamps, us; 0: not seen */
};

static void observer_drain(struct qmp_client *hc)
{
    struct qs_error *err = NULL;
    struct qmp_event *ev;

    if (qmp_client_poll(hc, &err) < 0)
        bench_die("the harness's monitor failed", err);
    while ((ev = qmp_client_event_pop(hc)))
        qmp_event_free(ev);
}

/* Reads events until job JOB_ID is dismissed ("null"), recording the stamps that matter. */
static void observer_collect(struct qmp_client *hc, const char *job_id, struct stamps *st)
{
    struct qs_error *err = NULL;
    struct qmp_event *ev = NULL;

    memset(st, 0, sizeof(*st));
    for (;;) {
        const char *name, *id, *status;
        int64_t ts;
        if (qmp_client_event_wait(hc, NULL, NULL, NULL, EVENT_TIMEOUT_MS, &ev, &err) < 0)
            bench_die("waiting for the job's events on the harness's monitor", err);
        name = qmp_event_name(ev);
        ts = qmp_event_timestamp_us(ev);
        if (strcmp(name, "STOP") == 0 && !st->stop)
            st->stop = ts;
        else if (strcmp(name, "RESUME") == 0)
            st->resume = ts;
        else if (strcmp(name, "JOB_STATUS_CHANGE") == 0) {
            id = qmp_value_get_string(qmp_event_data(ev), "id");
            status = qmp_value_get_string(qmp_event_data(ev), "status");
            if (qs_str_equal(id, job_id) && status) {
                if (strcmp(status, "created") == 0)
                    st->created = ts;
                else if (strcmp(status, "concluded") == 0)
                    st->concluded = ts;
                else if (strcmp(status, "null") == 0) {
                    st->null_ = ts;
                    qmp_event_free(ev);
                    return;
                }
            }
        }
        qmp_event_free(ev);
        ev = NULL;
    }
}

static void side_add(struct side *s, double wall_ms, int64_t start_us, int64_t end_us, const struct stamps *st,
                     bool job)
{
    bench_series_add(&s->wall, wall_ms);
    if (!job)
        return;
    if (st->created && st->concluded && st->null_) {
        bench_series_add(&s->pre, (double)(st->created - start_us) / 1e3);
        bench_series_add(&s->job, (double)(st->concluded - st->created) / 1e3);
        bench_series_add(&s->dismiss, (double)(st->null_ - st->concluded) / 1e3);
        bench_series_add(&s->post, (double)(end_us - st->null_) / 1e3);
        bench_series_add(&s->outside, wall_ms - (double)(st->null_ - st->created) / 1e3);
    }
    if (st->stop && st->resume && st->resume >= st->stop)
        bench_series_add(&s->pause, (double)(st->resume - st->stop) / 1e3);
}

/* ------------------------------------------------------------------------------------------------ */
/* One operation, each way. */

static struct qmp_client *raw_connect(struct bench *b)
{
    struct qmp_options o = {.connect_timeout_ms = 30000, .timeout_ms = 600000};
    struct qs_error *err = NULL;
    struct qmp_client *c = qmp_client_connect(qh_vm_socket_path(b->vm), &o, &err);
    if (!c)
        bench_die("raw QMP connect", err);
    return c;
}

static struct qmp_args *job_args(const char *tag, bool vmstate)
{
    struct qmp_args *a = qmp_args_new();
    qmp_args_set_str(a, "tag", tag);
    if (vmstate)
        qmp_args_set_str(a, "vmstate", "vda");
    qmp_args_push_str(qmp_args_set_list(a, "devices"), "vda");
    return a;
}

static void check_running(struct bench *b, const char *after)
{
    struct qmp_reply *r = NULL;
    struct qs_error *err = NULL;
    bool running = false;

    if (qmp_client_execute(qh_vm_qmp(b->vm), "query-status", NULL, &r, &err) < 0)
        bench_die("query-status", err);
    qmp_value_bool(qmp_value_get(qmp_reply_value(r), "running"), &running);
    qmp_reply_free(r);
    if (!running) {
        fprintf(stderr, "bench_internal: the guest is not running after %s\n", after);
        exit(1);
    }
}

static void raw_op(struct bench *b, struct config *cf, enum op op, const char *tag, bool record)
{
    static const char *const cmds[] = {"snapshot-save", "snapshot-load", "snapshot-delete", NULL};
    struct qmp_client *hc = qh_vm_qmp(b->vm), *c = raw_connect(b);
    struct qs_error *err = NULL;
    struct stamps st = {0};
    int64_t t0, t1, s_us, e_us;

    observer_drain(hc);
    bench_sleep_ms(SETTLE_MS);
    if (op == OP_LIST) {
        struct qmp_reply *r = NULL;
        t0 = qs_now_ns();
        if (qmp_client_execute(c, "query-named-block-nodes", NULL, &r, &err) < 0)
            bench_die("query-named-block-nodes", err);
        t1 = qs_now_ns();
        qmp_reply_free(r);
        r = NULL;
        if (record)
            bench_series_add(&cf->ops[op].r.wall, (double)(t1 - t0) / 1e6);
        t0 = qs_now_ns();
        if (qmp_client_execute(c, "query-block", NULL, &r, &err) < 0)
            bench_die("query-block", err);
        t1 = qs_now_ns();
        qmp_reply_free(r);
        if (record)
            bench_series_add(&cf->raw_query_block, (double)(t1 - t0) / 1e6);
        qmp_client_free(c);
        return;
    }
    {
        struct qmp_args *a = job_args(tag, op != OP_DELETE);
        s_us = bench_real_us();
        t0 = qs_now_ns();
        if (qmp_job_run(c, cmds[op], a, RAW_JOB, NULL, &err) < 0)
            bench_die(cmds[op], err);
        t1 = qs_now_ns();
        e_us = bench_real_us();
        qmp_args_free(a);
    }
    qmp_client_free(c);
    observer_collect(hc, RAW_JOB, &st);
    if (op == OP_REVERT)
        check_running(b, "snapshot-load");
    if (record)
        side_add(&cf->ops[op].r, (double)(t1 - t0) / 1e6, s_us, e_us, &st, true);
}

static void qsnap_op(struct bench *b, struct config *cf, enum op op, const char *tag, bool record)
{
    struct qmp_client *hc = qh_vm_qmp(b->vm);
    struct stamps st = {0};
    struct bench_run r;

    observer_drain(hc);
    bench_sleep_ms(SETTLE_MS);
    switch (op) {
    case OP_CREATE:
        qsnap_run(b, &r, "snapshot-create-as", DOMAIN, "--name", tag);
        break;
    case OP_REVERT:
        qsnap_run(b, &r, "snapshot-revert", DOMAIN, "--snapshotname", tag);
        break;
    case OP_DELETE:
        qsnap_run(b, &r, "snapshot-delete", DOMAIN, "--snapshotname", tag);
        break;
    default:
        qsnap_run(b, &r, "snapshot-list", DOMAIN, NULL, NULL);
        break;
    }
    if (op != OP_LIST)
        observer_collect(hc, QSNAP_JOB, &st);
    if (op == OP_REVERT)
        check_running(b, "qsnap snapshot-revert");
    if (record)
        side_add(&cf->ops[op].q, r.wall_ms, r.start_us, r.end_us, &st, op != OP_LIST);
}

/* ------------------------------------------------------------------------------------------------ */
/* Guest RAM. */

/* The vm-state-size QEMU reports for TAG on node vda. */
static int64_t vmstate_size(struct bench *b, const char *tag)
{
    struct qmp_reply *r = NULL;
    struct qs_error *err = NULL;
    const struct qmp_value *nodes;
    int64_t size = -1;

    if (qmp_client_execute(qh_vm_qmp(b->vm), "query-named-block-nodes", NULL, &r, &err) < 0)
        bench_die("query-named-block-nodes", err);
    nodes = qmp_reply_value(r);
    for (size_t i = 0; i < qmp_value_array_len(nodes); i++) {
        const struct qmp_value *n = qmp_value_array_at(nodes, i);
        const struct qmp_value *snaps = qmp_value_path(n, "image.snapshots");
        if (!qs_str_equal(qmp_value_get_string(n, "node-name"), "vda"))
            continue;
        for (size_t k = 0; k < qmp_value_array_len(snaps); k++) {
            const struct qmp_value *s = qmp_value_array_at(snaps, k);
            if (qs_str_equal(qmp_value_get_string(s, "name"), tag))
                qmp_value_int(qmp_value_get(s, "vm-state-size"), &size);
        }
    }
    qmp_reply_free(r);
    return size;
}

/* ------------------------------------------------------------------------------------------------ */
/* Floors: what a whole process costs before it does anything. */

static void measure_floors(struct bench *b)
{
    char *truth[] = {"/bin/true", NULL};
    char *version[] = {(char *)b->qsnap, "version", NULL};
    struct bench_run r;

    progress("floors: process start, dynamic linking, QMP connect");
    for (int i = 0; i < b->n; i++) {
        struct qmp_client *c;
        struct qmp_reply *rep = NULL;
        struct qs_error *err = NULL;
        int64_t t0;

        bench_sleep_ms(SETTLE_MS);
        bench_spawn(truth, b->out_path, b->err_path, &r);
        bench_series_add(&b->floors.spawn_true, r.wall_ms);
        bench_sleep_ms(SETTLE_MS);
        bench_spawn(version, b->out_path, b->err_path, &r);
        bench_series_add(&b->floors.qsnap_version, r.wall_ms);
        bench_sleep_ms(SETTLE_MS);
        qsnap_run(b, &r, "domstate", DOMAIN, NULL, NULL);
        bench_series_add(&b->floors.qsnap_domstate, r.wall_ms);
        bench_sleep_ms(SETTLE_MS);
        t0 = qs_now_ns();
        c = raw_connect(b);
        bench_series_add(&b->floors.raw_connect, (double)(qs_now_ns() - t0) / 1e6);
        t0 = qs_now_ns();
        if (qmp_client_execute(c, "query-status", NULL, &rep, &err) < 0)
            bench_die("query-status", err);
        bench_series_add(&b->floors.raw_status, (double)(qs_now_ns() - t0) / 1e6);
        qmp_reply_free(rep);
        qmp_client_free(c);
    }
    b->floors.done = true;
}

/* ------------------------------------------------------------------------------------------------ */
/* snapshot-list at scale: COUNT snapshot files, libvirt's on-disk form, in a root of their own. */

/* TEMPLATE (a snapshot file qsnap wrote) with name NAME, parent PARENT (NULL: root), active ACTIVE. */
static char *snapshot_from_template(const char *tmpl, const char *name, const char *parent, bool active)
{
    const char *n0 = strstr(tmpl, "<name>"), *n1 = n0 ? strstr(n0, "</name>") : NULL;
    const char *p0 = strstr(tmpl, "  <parent>"), *p1 = p0 ? strstr(p0, "</parent>\n") : NULL;
    const char *st = strstr(tmpl, "</state>\n"), *a0 = strstr(tmpl, "  <active>");
    char *head, *mid, *out;

    if (!n0 || !n1 || !st || !a0 || st < n1 || a0 < st || (p0 && (!p1 || p0 < st || p1 > a0))) {
        fprintf(stderr, "bench_internal: unexpected snapshot file layout\n");
        exit(1);
    }
    st += strlen("</state>\n");
    head = qs_asprintf("%.*s<name>%s</name>%.*s", (int)(n0 - tmpl), tmpl, name, (int)(st - (n1 + 7)), n1 + 7);
    /* from after </state> (minus an old parent) up to <active> */
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

static void measure_list_scale(struct bench *b, const char *tmpl_name)
{
    char *src_root = b->root;
    char *tpath = qs_asprintf("%s/snapshot/%s/%s.xml", src_root, DOMAIN, tmpl_name);
    char *dpath = qs_asprintf("%s/qemu/%s.xml", src_root, DOMAIN);
    char *tmpl = bench_read_text(tpath), *dom = bench_read_text(dpath);

    if (!tmpl || !dom)
        bench_die("cannot read the template snapshot or domain file", NULL);
    for (size_t k = 0; k < b->ncounts; k++) {
        size_t count = b->counts[k];
        struct listscale *ls = &b->scale[k];
        char *root = qs_asprintf("%s/list-%zu", b->workdir, count), *p, *out;
        struct bench_run r;
        size_t lines = 0;

        progress("snapshot-list with %zu snapshots", count);
        ls->count = count;
        make_dir(root);
        p = qs_asprintf("%s/qemu", root), make_dir(p), free(p);
        p = qs_asprintf("%s/snapshot", root), make_dir(p), free(p);
        p = qs_asprintf("%s/snapshot/%s", root, DOMAIN), make_dir(p), free(p);
        p = qs_asprintf("%s/qemu/%s.xml", root, DOMAIN), write_text(p, dom, 0600, 3600), free(p);
        /* a chain, as successive creates make it; the last one current; written an hour "ago" so that the
         * first list builds the index and the others use it, as for snapshots not touched in the last 2 s */
        for (size_t i = 1; i <= count; i++) {
            char name[32], parent[32], *xml;
            snprintf(name, sizeof(name), "s%05zu", i);
            snprintf(parent, sizeof(parent), "s%05zu", i - 1);
            xml = snapshot_from_template(tmpl, name, i > 1 ? parent : NULL, i == count);
            p = qs_asprintf("%s/snapshot/%s/%s.xml", root, DOMAIN, name);
            write_text(p, xml, 0600, 3600); /* older than the index's 2 s "racy" window */
            free(p);
            free(xml);
        }
        b->root = root;
        bench_sleep_ms(SETTLE_MS);
        qsnap_run(b, &r, "snapshot-list", DOMAIN, NULL, NULL);
        ls->cold_ms = r.wall_ms;
        out = bench_read_text(b->out_path);
        for (char *c = out; c && *c; c++)
            lines += *c == '\n';
        free(out);
        if (lines < count + 2 || lines > count + 4) { /* header, dashes, rows, blank lines */
            fprintf(stderr, "bench_internal: snapshot-list printed %zu lines for %zu snapshots\n", lines, count);
            exit(1);
        }
        for (int i = 0; i < b->n; i++) {
            bench_sleep_ms(SETTLE_MS);
            qsnap_run(b, &r, "snapshot-list", DOMAIN, NULL, NULL);
            bench_series_add(&ls->warm, r.wall_ms);
        }
        b->root = src_root;
        free(root);
    }
    free(tpath);
    free(dpath);
    free(tmpl);
    free(dom);
}

/* ------------------------------------------------------------------------------------------------ */
/* One configuration: one VM. */

static void run_config(struct bench *b, struct config *cf, bool first)
{
    struct qh_vm_config vc = {.mem_mb = cf->mem_mb, .start_timeout_ms = 60000};
    struct bench_ram ram = {0};
    struct qs_error *err = NULL;
    int64_t t_start = qs_now_ms();
    struct bench_run r;

    progress("VM with %d MiB of guest RAM, %s", cf->mem_mb, cf->filled ? "filled with data" : "idle");
    if (cf->filled) {
        bench_ram_init(&ram, b->ramdir, cf->mem_mb);
        vc.extra_args = ram.args;
    }
    if (!(b->vm = qh_vm_start(&vc, &err)))
        bench_die("cannot start QEMU", err);
    bench_ram_release(&ram); /* QEMU has mapped it */
    if (qh_vm_wait_counter_advancing(b->vm, 30000, NULL, &err) < 0)
        bench_die("the guest did not boot", err);
    qmp_client_set_timeout(qh_vm_qmp(b->vm), 600000);
    snprintf(b->qemu_version, sizeof(b->qemu_version), "%s", qmp_client_version(qh_vm_qmp(b->vm)));

    b->root = qs_asprintf("%s/root-%d%s", b->workdir, cf->mem_mb, cf->filled ? "-filled" : "-idle");
    qsnap_run(b, &r, "attach", DOMAIN, "--qmp", qh_vm_socket_path(b->vm));

    /* warm-up: the first save after boot is slow; "warm" stays as the snapshot files' template */
    progress("  warm-up");
    qsnap_op(b, cf, OP_CREATE, "warm", false);
    cf->vmstate_bytes = vmstate_size(b, "warm");
    raw_op(b, cf, OP_CREATE, "rwarm", false);
    raw_op(b, cf, OP_REVERT, "rwarm", false);
    qsnap_op(b, cf, OP_REVERT, "warm", false);
    qsnap_op(b, cf, OP_LIST, NULL, false);
    raw_op(b, cf, OP_LIST, NULL, false);

    for (int i = 0; i < b->n; i++) {
        char qtag[32], rtag[32];
        bool raw_first = i % 2 == 0;
        snprintf(qtag, sizeof(qtag), "q%03d", i);
        snprintf(rtag, sizeof(rtag), "r%03d", i);
        progress("  iteration %d/%d", i + 1, b->n);
        /* one whole cycle per side, the sides alternating: every create then follows a load (QEMU's first
         * save after a load runs 2-4x slower than the next one, so interleaving single operations would
         * hand that penalty to whichever side went first). Revert goes back to the base snapshot (not the
         * current one: qsnap moves "current" as "take one, go back, drop it" does). */
        for (int side = 0; side < 2; side++) {
            bool raw = (side == 0) == raw_first;
            for (int op = 0; op < OP__LAST; op++) {
                const char *qt = op == OP_LIST ? NULL : op == OP_REVERT ? "warm" : qtag;
                const char *rt = op == OP_LIST ? NULL : op == OP_REVERT ? "rwarm" : rtag;
                if (raw)
                    raw_op(b, cf, op, rt, true);
                else
                    qsnap_op(b, cf, op, qt, true);
            }
        }
    }
    if (first) {
        measure_floors(b);
        measure_list_scale(b, "warm");
    }
    qsnap_op(b, cf, OP_DELETE, "warm", false);
    raw_op(b, cf, OP_DELETE, "rwarm", false);
    qh_vm_free(b->vm);
    b->vm = NULL;
    free(b->root);
    b->root = NULL;
    cf->elapsed_s = (double)(qs_now_ms() - t_start) / 1e3;
}

/* ------------------------------------------------------------------------------------------------ */
/* Reporting. */

static double ratio(const struct opres *o)
{
    return bench_series_median(&o->q.wall) / bench_series_median(&o->r.wall);
}

static double overhead(const struct opres *o)
{
    return bench_series_median(&o->q.wall) - bench_series_median(&o->r.wall);
}

/* qsnap's time outside QEMU's job handling, less the raw client's (list: no job, no raw share) */
static double paired_overhead(const struct opres *o, enum op op)
{
    if (op == OP_LIST)
        return bench_series_median(&o->q.wall);
    return bench_series_median(&o->q.outside) - bench_series_median(&o->r.outside);
}

/* A number, or null for NaN (no samples): JSON has no NaN. */
static void json_num(FILE *f, double v)
{
    if (isnan(v) || isinf(v))
        fputs("null", f);
    else
        fprintf(f, "%.3f", v);
}

static void json_series(FILE *f, const char *key, const struct bench_series *s, bool samples)
{
    fprintf(f, "\"%s\": {\"n\": %zu, \"median\": ", key, s->n);
    json_num(f, bench_series_median(s));
    fputs(", \"min\": ", f);
    json_num(f, bench_series_min(s));
    fputs(", \"max\": ", f);
    json_num(f, bench_series_max(s));
    if (samples) {
        fputs(", \"samples\": [", f);
        for (size_t i = 0; i < s->n; i++)
            fprintf(f, "%s%.3f", i ? ", " : "", s->v[i]);
        fputs("]", f);
    }
    fputs("}", f);
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

static void json_side(FILE *f, const struct side *s, bool job)
{
    fputs("{", f);
    json_series(f, "wall_ms", &s->wall, true);
    if (job) {
        fputs(", \"breakdown_ms\": {", f);
        json_series(f, "start_to_job_created", &s->pre, false);
        fputs(", ", f);
        json_series(f, "job_created_to_concluded", &s->job, false);
        fputs(", ", f);
        json_series(f, "job_concluded_to_dismissed", &s->dismiss, false);
        fputs(", ", f);
        json_series(f, "job_dismissed_to_end", &s->post, false);
        fputs(", ", f);
        json_series(f, "outside_job", &s->outside, false);
        fputs("}", f);
        if (s->pause.n) {
            fputs(", ", f);
            json_series(f, "guest_pause_ms", &s->pause, false);
        }
    }
    fputs("}", f);
}

static bool overhead_ok(double ms) { return !isnan(ms) && ms < 10.0; }

static void write_json(const struct bench *b, const char *path)
{
    FILE *f = fopen(path, "we");
    struct utsname u;

    if (!f)
        bench_die(qs_asprintf("cannot write '%s': %s", path, strerror(errno)), NULL);
    uname(&u);
    fputs("{\n  \"benchmark\": \"internal snapshots: qsnap whole-process vs raw QMP\",\n", f);
    fprintf(f, "  \"started_utc\": %lld,\n  \"total_s\": %.1f,\n  \"iterations\": %d,\n", (long long)b->started,
            b->total_s, b->n);
    fputs("  \"machine\": {\"kernel\": ", f);
    json_str(f, u.release);
    fprintf(f, ", \"cpus\": %ld, \"qemu\": ", sysconf(_SC_NPROCESSORS_ONLN));
    json_str(f, b->qemu_version);
    fprintf(f, ", \"accel\": \"tcg\", \"loadavg_before\": [%.2f, %.2f, %.2f], \"loadavg_after\": [%.2f, %.2f, %.2f]},\n",
            b->load_before[0], b->load_before[1], b->load_before[2], b->load_after[0], b->load_after[1],
            b->load_after[2]);
    fputs("  \"method\": {\"qsnap\": \"posix_spawn to waitpid of the qsnap binary\", \"raw\": \"qmp_job_run / "
          "qmp_client_execute on a connection opened before and closed after the timed call\", \"ram_fill\": "
          "\"memory-backend-file share=off over a file of pseudo-random bytes (filled); default anonymous RAM of "
          "the idle counter guest (idle)\", \"order\": \"per iteration one side's create, revert, delete, list, then the other side's; raw first on even iterations\"},\n",
          f);
    fputs("  \"image_dir\": ", f);
    json_str(f, b->image_dir);
    fputs(",\n  \"qsnap_root_dir\": ", f);
    json_str(f, b->workdir);
    fputs(",\n  \"configs\": [\n", f);
    for (size_t c = 0; c < b->nconfigs; c++) {
        const struct config *cf = &b->configs[c];
        fprintf(f, "    {\"mem_mib\": %d, \"ram\": \"%s\", \"vmstate_bytes\": %lld, \"elapsed_s\": %.1f, \"ops\": {\n",
                cf->mem_mb, cf->filled ? "filled" : "idle", (long long)cf->vmstate_bytes, cf->elapsed_s);
        for (int op = 0; op < OP__LAST; op++) {
            const struct opres *o = &cf->ops[op];
            fprintf(f, "      \"%s\": {\"qsnap_command\": \"%s\", \"raw_command\": \"%s\", \"ratio\": ",
                    op_names[op], op_qsnap[op], op_raw[op]);
            json_num(f, ratio(o));
            fputs(", \"overhead_ms\": ", f);
            json_num(f, overhead(o));
            fputs(", \"paired_overhead_ms\": ", f);
            json_num(f, paired_overhead(o, op));
            fputs(",\n        \"qsnap\": ", f);
            json_side(f, &o->q, op != OP_LIST);
            fputs(",\n        \"raw\": ", f);
            json_side(f, &o->r, op != OP_LIST);
            if (op == OP_LIST) {
                fputs(",\n        ", f);
                json_series(f, "raw_query_block_ms", &cf->raw_query_block, true);
            }
            fprintf(f, "}%s\n", op + 1 < OP__LAST ? "," : "");
        }
        fprintf(f, "    }}%s\n", c + 1 < b->nconfigs ? "," : "");
    }
    fputs("  ],\n  \"list_scale\": [\n", f);
    for (size_t k = 0; k < b->ncounts; k++) {
        fprintf(f, "    {\"snapshots\": %zu, \"cold_ms\": ", b->scale[k].count);
        json_num(f, b->scale[k].cold_ms);
        fputs(", ", f);
        json_series(f, "warm_ms", &b->scale[k].warm, true);
        fprintf(f, "}%s\n", k + 1 < b->ncounts ? "," : "");
    }
    fputs("  ],\n  \"floors\": {", f);
    json_series(f, "spawn_bin_true_ms", &b->floors.spawn_true, false);
    fputs(", ", f);
    json_series(f, "qsnap_version_ms", &b->floors.qsnap_version, false);
    fputs(", ", f);
    json_series(f, "qsnap_domstate_ms", &b->floors.qsnap_domstate, false);
    fputs(", ", f);
    json_series(f, "raw_qmp_connect_ms", &b->floors.raw_connect, false);
    fputs(", ", f);
    json_series(f, "raw_query_status_ms", &b->floors.raw_status, false);
    fputs("},\n  \"targets\": {\"revert_ratio_max\": 1.2, \"overhead_ms_max\": 10, \"results\": [\n", f);
    for (size_t c = 0; c < b->nconfigs; c++) {
        const struct config *cf = &b->configs[c];
        double rr = ratio(&cf->ops[OP_REVERT]);
        fprintf(f, "    {\"mem_mib\": %d, \"ram\": \"%s\", \"revert_ratio\": ", cf->mem_mb,
                cf->filled ? "filled" : "idle");
        json_num(f, rr);
        fprintf(f, ", \"revert_ratio_met\": %s", rr <= 1.2 ? "true" : "false");
        for (int op = 0; op < OP__LAST; op++) {
            double po = paired_overhead(&cf->ops[op], op);
            fprintf(f, ", \"%s_overhead_ms\": ", op_names[op]);
            json_num(f, po);
            fprintf(f, ", \"%s_overhead_met\": %s", op_names[op], overhead_ok(po) ? "true" : "false");
        }
        fprintf(f, "}%s\n", c + 1 < b->nconfigs ? "," : "");
    }
    fputs("  ]}\n}\n", f);
    if (fclose(f) != 0)
        bench_die(qs_asprintf("cannot write '%s': %s", path, strerror(errno)), NULL);
}

static void md_ms(FILE *f, const struct bench_series *s)
{
    if (!s->n)
        fputs(" - |", f);
    else
        fprintf(f, " %.1f (%.1f) |", bench_series_median(s), bench_series_min(s));
}

static void write_md(const struct bench *b, FILE *f)
{
    char when[64];
    struct tm tm;

    gmtime_r(&b->started, &tm);
    strftime(when, sizeof(when), "%Y-%m-%d %H:%M UTC", &tm);
    fprintf(f, "# qsnap vs raw QMP: internal snapshots\n\n");
    fprintf(f, "One run of `scripts/bench` (%s, %.0f s): QEMU %s, TCG, %ld CPUs, load average %.2f before / %.2f "
               "after. N = %d per operation; times in ms as median (min).\n\n",
            when, b->total_s, b->qemu_version, sysconf(_SC_NPROCESSORS_ONLN), b->load_before[0], b->load_after[0],
            b->n);
    fprintf(f, "Disk images and guest RAM files on `%s`; qsnap's `--root` on `%s`.\n\n", b->image_dir, b->workdir);
    fputs("- **qsnap**: the whole process, posix_spawn to waitpid (`qsnap --root R snapshot-create-as / "
          "snapshot-revert / snapshot-delete / snapshot-list bench ...`). Per iteration: create a snapshot, revert "
          "in place on the running VM to the base snapshot taken at the start (so \"current\" moves, as in "
          "\"take one, go back, drop it\"), delete the new one, list.\n"
          "- **raw**: the same QEMU work on an open QMP connection (`qmp_job_run` of snapshot-save / -load / "
          "-delete; `query-named-block-nodes` for list), connect and close untimed.\n"
          "- **overhead** = qsnap median - raw median. **paired** = median(qsnap wall - QEMU's job span) - "
          "median(raw wall - job span), the job span being JOB_STATUS_CHANGE created -> null as stamped by QEMU "
          "and seen on a second monitor: it removes the save/load time's own noise. For list (no QMP) paired is "
          "qsnap's whole time.\n"
          "- **filled**: guest RAM is a private mapping of a file of pseudo-random bytes "
          "(`-object memory-backend-file,share=off` + `-machine memory-backend=`), so every page is saved; "
          "**idle**: the counter guest's ordinary RAM, nearly all zero pages.\n"
          "- each iteration runs one side's create, revert, delete, list, then the other side's; which side goes "
          "first alternates, to share the machine's noise (every create follows a load on both sides: QEMU's "
          "first save after a load is 2-4x slower than the next).\n\n",
          f);
    for (size_t c = 0; c < b->nconfigs; c++) {
        const struct config *cf = &b->configs[c];
        fprintf(f, "## %d MiB guest RAM, %s (vmstate %.0f MiB)\n\n", cf->mem_mb, cf->filled ? "filled" : "idle",
                (double)cf->vmstate_bytes / 1048576.0);
        fputs("| operation | qsnap | raw QMP | ratio | overhead | paired overhead | guest pause qsnap | guest pause raw |\n"
              "|---|---:|---:|---:|---:|---:|---:|---:|\n",
              f);
        for (int op = 0; op < OP__LAST; op++) {
            const struct opres *o = &cf->ops[op];
            fprintf(f, "| %s (%s) |", op_names[op], op_raw[op]);
            md_ms(f, &o->q.wall);
            md_ms(f, &o->r.wall);
            fprintf(f, " %.2fx | %+.1f | %+.1f |", ratio(o), overhead(o), paired_overhead(o, op));
            md_ms(f, &o->q.pause);
            md_ms(f, &o->r.pause);
            fputs("\n", f);
        }
        fprintf(f, "| (raw query-block) | |");
        md_ms(f, &cf->raw_query_block);
        fputs(" | | | | |\n\n", f);
        fputs("Where the time goes, from QEMU's event stamps (median ms; qsnap | raw):\n\n"
              "| operation | start -> job created | job (created -> concluded) | concluded -> dismissed | "
              "dismissed -> exit/return |\n|---|---:|---:|---:|---:|\n",
              f);
        for (int op = 0; op < OP_LIST; op++) {
            const struct opres *o = &cf->ops[op];
            fprintf(f, "| %s | %.1f \\| %.1f | %.1f \\| %.1f | %.1f \\| %.1f | %.1f \\| %.1f |\n", op_names[op],
                    bench_series_median(&o->q.pre), bench_series_median(&o->r.pre),
                    bench_series_median(&o->q.job), bench_series_median(&o->r.job),
                    bench_series_median(&o->q.dismiss), bench_series_median(&o->r.dismiss),
                    bench_series_median(&o->q.post), bench_series_median(&o->r.post));
        }
        fputs("\n", f);
    }
    if (b->ncounts) {
        fputs("## snapshot-list at scale (metadata only: 0 QMP)\n\n| snapshots | qsnap snapshot-list | first run "
              "(no index) |\n|---:|---:|---:|\n",
              f);
        for (size_t k = 0; k < b->ncounts; k++) {
            fprintf(f, "| %zu |", b->scale[k].count);
            md_ms(f, &b->scale[k].warm);
            fprintf(f, " %.1f |\n", b->scale[k].cold_ms);
        }
        fputs("\n", f);
    }
    if (b->floors.done) {
        fputs("## Floors (what any process or connection costs here)\n\n| what | ms |\n|---|---:|\n| posix_spawn "
              "/bin/true |",
              f);
        md_ms(f, &b->floors.spawn_true);
        fputs("\n| qsnap version (exec + dynamic linking) |", f);
        md_ms(f, &b->floors.qsnap_version);
        fputs("\n| qsnap domstate (domain XML + QMP connect + handshake + query-status) |", f);
        md_ms(f, &b->floors.qsnap_domstate);
        fputs("\n| raw QMP connect (connect + greeting + qmp_capabilities) |", f);
        md_ms(f, &b->floors.raw_connect);
        fputs("\n| raw query-status on an open connection |", f);
        md_ms(f, &b->floors.raw_status);
        fputs("\n\n", f);
    }
    fputs("## Targets\n\n| config | revert ratio (<= 1.2x) | create overhead | revert overhead | delete overhead | "
          "list time | (< 10 ms, paired) |\n|---|---:|---:|---:|---:|---:|---|\n",
          f);
    for (size_t c = 0; c < b->nconfigs; c++) {
        const struct config *cf = &b->configs[c];
        double rr = ratio(&cf->ops[OP_REVERT]);
        int missed = 0;
        fprintf(f, "| %d MiB %s | %.2fx %s |", cf->mem_mb, cf->filled ? "filled" : "idle", rr,
                rr <= 1.2 ? "met" : "**missed**");
        for (int op = 0; op < OP__LAST; op++) {
            double po = paired_overhead(&cf->ops[op], op);
            missed += !overhead_ok(po);
            fprintf(f, " %.1f %s |", po, overhead_ok(po) ? "met" : "**missed**");
        }
        fprintf(f, " %s |\n", missed ? "missed" : "met");
    }
    fputs("\nFor scale: libvirt 9.0 on this machine kind takes ~95 ms to create and ~2.7 s to revert the same "
          "snapshot (it restarts QEMU).\n",
          f);
}

/* ------------------------------------------------------------------------------------------------ */

static size_t parse_list(const char *s, size_t *out, size_t max)
{
    size_t n = 0;
    char *copy = qs_xstrdup(s), *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t && n < max; t = strtok_r(NULL, ",", &save))
        if (*t)
            out[n++] = strtoul(t, NULL, 10);
    free(copy);
    return n;
}

static void usage(void)
{
    fputs("usage: bench_internal [--qsnap PATH] [--guest PATH] [-n N] [--filled MIB,...] [--idle MIB,...]\n"
          "                      [--list-counts N,...] [--image-dir DIR] [--json FILE] [--md FILE]\n"
          "Times qsnap's create/revert/delete/list against the raw QMP work on one VM per RAM config.\n"
          "Defaults: -n 10 --filled 256,1024 --idle 256 --list-counts 10,1000; qsnap and the guest from the\n"
          "build tree ($QSNAP_BIN, $QSNAP_GUEST override); disk images in /dev/shm when it exists (--image-dir).\n",
          stderr);
    exit(2);
}

int main(int argc, char **argv)
{
    static struct bench b; /* large: keep it off the stack */
    const char *json = NULL, *md = NULL, *filled = "256,1024", *idle = "256", *counts = "10,1000";
    const char *guest = getenv("QSNAP_GUEST"), *image_dir = NULL;
    char tmpl[4096];
    const char *tmp = getenv("TMPDIR");
    struct stat sst;
    FILE *mdf;
    int64_t t0 = qs_now_ms();

    bench_prog = "bench_internal";
    b.qsnap = getenv("QSNAP_BIN") ? getenv("QSNAP_BIN") : QSNAP_BENCH_QSNAP;
    if (!guest || !*guest)
        guest = QSNAP_BENCH_GUEST;
    b.n = 10;
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
        else if (strcmp(a, "--filled") == 0)
            filled = v;
        else if (strcmp(a, "--idle") == 0)
            idle = v;
        else if (strcmp(a, "--list-counts") == 0)
            counts = v;
        else if (strcmp(a, "--image-dir") == 0)
            image_dir = v;
        else if (strcmp(a, "--json") == 0)
            json = v;
        else if (strcmp(a, "--md") == 0)
            md = v;
        else
            usage();
    }
    if (b.n < 1 || b.n > MAX_ITER)
        usage();
    if (access(b.qsnap, X_OK) < 0)
        bench_die(qs_asprintf("qsnap binary '%s' not found: build it or pass --qsnap", b.qsnap), NULL);
    if (access(guest, R_OK) < 0)
        bench_die(qs_asprintf("guest boot sector '%s' not found: build the tree or set QSNAP_GUEST", guest), NULL);
    setenv("QSNAP_GUEST", guest, 1);
    if (!qh_qemu_available())
        bench_die("qemu-system-x86_64, qemu-img and qemu-io must be in PATH", NULL);

    {
        size_t mb[MAX_CONFIGS], n;
        n = parse_list(filled, mb, MAX_CONFIGS);
        for (size_t i = 0; i < n && b.nconfigs < MAX_CONFIGS; i++)
            b.configs[b.nconfigs++] = (struct config){.mem_mb = (int)mb[i], .filled = true};
        n = parse_list(idle, mb, MAX_CONFIGS);
        for (size_t i = 0; i < n && b.nconfigs < MAX_CONFIGS; i++)
            b.configs[b.nconfigs++] = (struct config){.mem_mb = (int)mb[i], .filled = false};
        b.ncounts = parse_list(counts, b.counts, MAX_COUNTS);
    }
    if (b.nconfigs == 0)
        usage();

    snprintf(tmpl, sizeof(tmpl), "%s/qsnap-bench.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(tmpl))
        bench_die(qs_asprintf("cannot create '%s': %s", tmpl, strerror(errno)), NULL);
    b.workdir = tmpl;
    b.out_path = qs_asprintf("%s/out.txt", b.workdir);
    b.err_path = qs_asprintf("%s/err.txt", b.workdir);
    /* guest RAM files on tmpfs when there is one: no disk writeback competing with the snapshots */
    if (stat("/dev/shm", &sst) == 0 && S_ISDIR(sst.st_mode) && access("/dev/shm", W_OK) == 0) {
        static char shm[64];
        snprintf(shm, sizeof(shm), "/dev/shm/qsnap-bench.XXXXXX");
        b.ramdir = mkdtemp(shm) ? shm : tmpl;
    } else {
        b.ramdir = tmpl;
    }
    /* the VM's disk images (the harness makes them under $TMPDIR) on tmpfs too, unless told otherwise: a
     * save then costs what QEMU does, not what the host disk's writeback does (it is the same work for raw
     * and qsnap, but a 1 GiB save to this disk varied 5-21 s). qsnap's --root stays in the work directory,
     * on a real file system, so its fsyncs cost what they cost. */
    if (!image_dir)
        image_dir = b.ramdir != tmpl ? "/dev/shm" : NULL;
    if (image_dir)
        setenv("TMPDIR", image_dir, 1);
    b.image_dir = image_dir ? image_dir : (tmp && *tmp ? tmp : "/tmp");
    b.started = time(NULL);
    getloadavg(b.load_before, 3);
    for (size_t c = 0; c < b.nconfigs; c++)
        run_config(&b, &b.configs[c], c == 0);
    getloadavg(b.load_after, 3);
    b.total_s = (double)(qs_now_ms() - t0) / 1e3;

    if (json)
        write_json(&b, json);
    if (md) {
        if (!(mdf = fopen(md, "we")))
            bench_die(qs_asprintf("cannot write '%s': %s", md, strerror(errno)), NULL);
        write_md(&b, mdf);
        fclose(mdf);
    }
    write_md(&b, stdout);
    if (b.ramdir != b.workdir)
        rmdir(b.ramdir);
    if (!getenv("QSNAP_KEEP_TMP"))
        remove_tree(b.workdir);
    free(b.out_path);
    free(b.err_path);
    return 0;
}
