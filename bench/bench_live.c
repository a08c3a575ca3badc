/*
 * bench_live.c: live snapshots and memory files on the QEMU in PATH (scripts/bench runs it on 7.2 and on 10.0).
 *
 * Guest: --mem MiB (default 1024) of ordinary anonymous RAM, --fill MiB (default 512) of it pseudo-random data.
 * Each part on a fresh QEMU process, N snapshots in a row in that process (a later background snapshot
 * differs from the first: see THP below):
 *   qsnap-live   `qsnap snapshot-create-as --live` (and `--live --precopy`): the guest's pause from QEMU's own STOP / RESUME event
 *                stamps, and the whole process
 *   precopy-raw  QEMU's own pre-copy to a file while the guest runs, cont at its "completed" event: the floor
 *                of --precopy without disks switched
 *   bg-raw       QEMU's own background snapshot (migrate with background-snapshot, QEMU stops the guest
 *                itself): its pause and query-migrate's setup-time - the floor without disks switched
 *   bg-stopfirst stop, then the same migration (the disks could switch in that pause): the floor of a live
 *                snapshot whose disks and RAM are of one instant; its pause holds QEMU's setup
 *   stop-save    stop, migrate to a file, fsync, cont: the whole stop-and-save (qsnap --memspec's QEMU work)
 * Memory files (stopped guest, fsync included): the plain stream and, where QEMU has it, mapped-ram with
 * multifd, saved and loaded (a fresh -incoming QEMU), in MB/s of guest RAM, against dd of the same size to
 * the same directory (conv=fdatasync). AnonHugePages of QEMU before each snapshot shows the THP splitting
 * that makes later background snapshots of a process slower.
 * Writes --md and --json.
 */
#include "bench_util.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qmp.h"
#include "qs_util.h"

struct bench {
    const char *qsnap, *workdir;
    int mem_mb, fill_mb, n;
    char qemu[64];
    struct qh_vm *vm;
};

static void exec_ok(struct qmp_client *c, const char *cmd, struct qmp_args *a, struct qmp_reply **rep)
{
    struct qs_error *err = NULL;
    if (qmp_client_execute(c, cmd, a, rep, &err) < 0)
        bench_die(cmd, err);
    qmp_args_free(a);
}

static void cap(struct qmp_client *c, const char *name, bool on)
{
    struct qmp_args *a = qmp_args_new(), *x = qmp_args_push_obj(qmp_args_set_list(a, "capabilities"));
    qmp_args_set_str(x, "capability", name);
    qmp_args_set_bool(x, "state", on);
    exec_ok(c, "migrate-set-capabilities", a, NULL);
}

static void param(struct qmp_client *c, const char *name, int64_t v)
{
    struct qmp_args *a = qmp_args_new();
    qmp_args_set_int(a, name, v);
    exec_ok(c, "migrate-set-parameters", a, NULL);
}

static bool has_cap(struct qmp_client *c, const char *name)
{
    bool has = false;
    struct qs_error *err = NULL;
    enum qmp_feature f = strcmp(name, "mapped-ram") == 0 ? QMP_FEATURE_MAPPED_RAM
                         : strcmp(name, "precopy") == 0  ? QMP_FEATURE_PRECOPY_COHERENT
                                                         : QMP_FEATURE_FILE_MIGRATION;
    if (qmp_client_feature(c, f, &has, &err) < 0)
        bench_die("feature", err);
    return has;
}

static long anon_huge_kb(pid_t pid)
{
    char *path = qs_asprintf("/proc/%d/smaps_rollup", (int)pid), *t = bench_read_text(path), *p;
    long kb = -1;
    if (t && (p = strstr(t, "AnonHugePages:")))
        kb = strtol(p + strlen("AnonHugePages:"), NULL, 10);
    free(t);
    free(path);
    return kb;
}

static void vm_up(struct bench *b)
{
    struct qh_vm_config cfg = {0};
    struct qs_error *err = NULL;
    cfg.mem_mb = b->mem_mb;
    cfg.disks = NULL;
    if (!(b->vm = qh_vm_start(&cfg, &err)) || qh_vm_wait_counter_advancing(b->vm, 0, NULL, &err) < 0)
        bench_die("start QEMU", err);
    bench_fill_ram(b->vm, b->fill_mb);
    snprintf(b->qemu, sizeof(b->qemu), "%s", qmp_client_version(qh_vm_qmp(b->vm)));
}

/* qsnap attach of the bench's VM (its state directory inside the VM's directory) */
static void attach(struct bench *b)
{
    char *root = qs_asprintf("%s/root", qh_vm_dir(b->vm)), *o = qs_asprintf("%s/out", b->workdir);
    struct bench_run run;
    bench_qsnap_run(b->qsnap, root, o, o, &run, "attach", "vm", "--qmp", qh_vm_socket_path(b->vm), (char *)NULL);
    free(root), free(o);
}

static void vm_down(struct bench *b)
{
    qh_vm_free(b->vm);
    b->vm = NULL;
}

/* STOP then RESUME stamps queued on C: the pause in ms, NAN when one is missing. */
static double pause_ms(struct qmp_client *c, int wait_ms)
{
    struct qmp_event *s = NULL, *r = NULL;
    struct qs_error *err = NULL;
    double ms = NAN;
    if (qmp_client_event_wait(c, "STOP", NULL, NULL, wait_ms, &s, &err) == 0 &&
        qmp_client_event_wait(c, "RESUME", NULL, NULL, wait_ms, &r, &err) == 0)
        ms = (double)(qmp_event_timestamp_us(r) - qmp_event_timestamp_us(s)) / 1000.0;
    qs_error_free(err);
    qmp_event_free(s);
    qmp_event_free(r);
    return ms;
}

/* query-migrate until STATUS is final; setup-time in ms (-1 when absent). *remaining_lt_total: seen active with
 * ram.remaining below ram.total (QEMU has captured the VM). */
static const char *mig_poll(struct qmp_client *c, int64_t *setup_ms, bool *captured)
{
    static char st[32];
    struct qmp_reply *r = NULL;
    int64_t rem = -1, tot = 0;
    exec_ok(c, "query-migrate", NULL, &r);
    snprintf(st, sizeof(st), "%s", qmp_value_get_string(qmp_reply_value(r), "status") ?
                                   qmp_value_get_string(qmp_reply_value(r), "status") : "none");
    if (setup_ms && !qmp_value_int(qmp_value_get(qmp_reply_value(r), "setup-time"), setup_ms))
        *setup_ms = -1;
    qmp_value_int(qmp_value_path(qmp_reply_value(r), "ram.remaining"), &rem);
    qmp_value_int(qmp_value_path(qmp_reply_value(r), "ram.total"), &tot);
    if (captured)
        *captured = !strcmp(st, "completed") || (!strcmp(st, "active") && rem >= 0 && rem < tot);
    qmp_reply_free(r);
    return st;
}

static void mig_wait_done(struct qmp_client *c, int64_t *setup_ms)
{
    for (;;) {
        const char *st = mig_poll(c, setup_ms, NULL);
        if (!strcmp(st, "completed"))
            return;
        if (!strcmp(st, "failed") || !strcmp(st, "cancelled"))
            bench_die("migration failed", NULL);
        bench_sleep_ms(20);
    }
}

/* The URI for FD as qsnap gives it: file: + add-fd where QEMU has it, else fd:. FDSET gets the set to remove. */
static char *mig_uri(struct qmp_client *c, int fd, int64_t *fdset)
{
    struct qs_error *err = NULL;
    *fdset = -1;
    if (has_cap(c, "file")) {
        struct qmp_reply *r = NULL;
        if (qmp_client_execute_fd(c, "add-fd", NULL, fd, &r, &err) < 0)
            bench_die("add-fd", err);
        qmp_value_int(qmp_value_get(qmp_reply_value(r), "fdset-id"), fdset);
        qmp_reply_free(r);
        return qs_asprintf("file:/dev/fdset/%lld,offset=0", (long long)*fdset);
    }
    if (qmp_client_send_fd(c, fd, "bench", &err) < 0)
        bench_die("getfd", err);
    return qs_xstrdup("fd:bench");
}

static void uri_done(struct qmp_client *c, int64_t fdset)
{
    struct qmp_args *a = qmp_args_new();
    struct qs_error *err = NULL;
    if (fdset >= 0) {
        qmp_args_set_int(a, "fdset-id", fdset);
        qmp_client_execute(c, "remove-fd", a, NULL, &err);
    }
    qs_error_free(err);
    qmp_args_free(a);
}

struct row {
    struct bench_series pause, whole, setup;
    long thp_first, thp_later;
};

static void migrate(struct qmp_client *c, const char *uri)
{
    struct qmp_args *a = qmp_args_new();
    qmp_args_set_str(a, "uri", uri);
    exec_ok(c, "migrate", a, NULL);
}

/* One raw background snapshot to a new file; STOP_FIRST: stop before the migrate, cont after the capture
 * unless QEMU resumed the guest itself. */
static void bg_once(struct bench *b, bool stop_first, struct row *row, int i)
{
    struct qmp_client *c = qh_vm_qmp(b->vm);
    char *file = qs_asprintf("%s/bg-%d.mem", qh_vm_dir(b->vm), i), *uri;
    int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int64_t fdset, setup = -1, t0;
    long thp = anon_huge_kb(qh_vm_pid(b->vm));
    bool captured = false;
    struct qmp_event *ev = NULL;
    struct qs_error *err = NULL;

    if (fd < 0)
        bench_die(file, NULL);
    *(i == 0 ? &row->thp_first : &row->thp_later) = thp;
    uri = mig_uri(c, fd, &fdset);
    cap(c, "background-snapshot", true);
    qmp_client_event_clear(c);
    t0 = bench_real_us();
    if (stop_first)
        exec_ok(c, "stop", NULL, NULL);
    migrate(c, uri);
    if (stop_first) {
        for (;;) {
            if (qmp_client_event_wait(c, "RESUME", NULL, NULL, 0, &ev, &err) == 0) {
                /* QEMU resumed it (before 9.0): keep the event for pause_ms */
                break;
            }
            qs_error_free(err);
            err = NULL;
            mig_poll(c, NULL, &captured);
            if (captured) {
                exec_ok(c, "cont", NULL, NULL);
                break;
            }
            bench_sleep_ms(1);
        }
    }
    mig_wait_done(c, &setup);
    fsync(fd);
    bench_series_add(&row->whole, (double)(bench_real_us() - t0) / 1000.0);
    if (ev) {
        /* put the RESUME back in order: STOP first, then this one */
        struct qmp_event *s = NULL;
        if (qmp_client_event_wait(c, "STOP", NULL, NULL, 1000, &s, &err) == 0)
            bench_series_add(&row->pause, (double)(qmp_event_timestamp_us(ev) - qmp_event_timestamp_us(s)) / 1000.0);
        qs_error_free(err);
        qmp_event_free(s);
        qmp_event_free(ev);
    } else {
        bench_series_add(&row->pause, pause_ms(c, 5000));
    }
    bench_series_add(&row->setup, (double)setup);
    cap(c, "background-snapshot", false);
    uri_done(c, fdset);
    close(fd);
    unlink(file);
    free(uri);
    free(file);
}

static void qsnap_live_once(struct bench *b, struct row *row, int i, bool precopy)
{
    struct qmp_client *c = qh_vm_qmp(b->vm);
    char name[16], *out = qs_asprintf("%s/out", b->workdir), *errp = qs_asprintf("%s/err", b->workdir);
    char *root = qs_asprintf("%s/root", qh_vm_dir(b->vm));
    struct bench_run run;

    *(i == 0 ? &row->thp_first : &row->thp_later) = anon_huge_kb(qh_vm_pid(b->vm));
    snprintf(name, sizeof(name), "%s%d", precopy ? "p" : "l", i);
    qmp_client_event_clear(c);
    if (precopy)
        bench_qsnap_run(b->qsnap, root, out, errp, &run, "snapshot-create-as", "vm", name, "--live", "--precopy",
                        (char *)NULL);
    else
        bench_qsnap_run(b->qsnap, root, out, errp, &run, "snapshot-create-as", "vm", name, "--live", (char *)NULL);
    bench_series_add(&row->whole, run.wall_ms);
    bench_series_add(&row->pause, pause_ms(c, 5000));
    free(out), free(errp), free(root);
}

static void stop_save_once(struct bench *b, struct row *row, int i)
{
    struct qmp_client *c = qh_vm_qmp(b->vm);
    char *file = qs_asprintf("%s/ss-%d.mem", qh_vm_dir(b->vm), i), *uri;
    int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int64_t fdset, t0, setup = -1;

    uri = mig_uri(c, fd, &fdset);
    qmp_client_event_clear(c);
    t0 = bench_real_us();
    exec_ok(c, "stop", NULL, NULL);
    migrate(c, uri);
    mig_wait_done(c, &setup);
    fsync(fd);
    exec_ok(c, "cont", NULL, NULL);
    bench_series_add(&row->whole, (double)(bench_real_us() - t0) / 1000.0);
    bench_series_add(&row->pause, pause_ms(c, 5000));
    uri_done(c, fdset);
    close(fd);
    unlink(file);
    free(uri);
    free(file);
}

/* QEMU's own pre-copy to a file: migrate while the guest runs, QEMU stops it for the last pass, cont at the
 * "completed" event - the floor of --precopy without disks switched (plain stream, no mapped-ram). */
static void precopy_raw_once(struct bench *b, struct row *row, int i)
{
    struct qmp_client *c = qh_vm_qmp(b->vm);
    char *file = qs_asprintf("%s/pc-%d.mem", qh_vm_dir(b->vm), i), *uri;
    int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int64_t fdset, t0, setup = -1;
    struct qmp_event *ev = NULL;
    struct qs_error *err = NULL;

    if (fd < 0)
        bench_die(file, NULL);
    uri = mig_uri(c, fd, &fdset);
    cap(c, "events", true);
    param(c, "downtime-limit", 10); /* as qsnap --precopy sets it */
    qmp_client_event_clear(c);
    t0 = bench_real_us();
    migrate(c, uri);
    if (qmp_client_event_wait(c, "MIGRATION", "status", "completed", 600000, &ev, &err) < 0)
        bench_die("pre-copy", err);
    qmp_event_free(ev);
    /* QEMU refuses cont ("Migration is not finalized yet") until its migration thread has left the
     * finish-migrate run state, a moment after "completed" */
    while (qmp_client_execute(c, "cont", NULL, NULL, &err) < 0) {
        if (!err->message || !strstr(err->message, "not finalized"))
            bench_die("cont", err);
        qs_error_free(err);
        err = NULL;
        bench_sleep_ms(1);
    }
    mig_wait_done(c, &setup);
    fsync(fd);
    bench_series_add(&row->whole, (double)(bench_real_us() - t0) / 1000.0);
    bench_series_add(&row->pause, pause_ms(c, 5000));
    cap(c, "events", false);
    param(c, "downtime-limit", 300);
    uri_done(c, fdset);
    close(fd);
    unlink(file);
    free(uri);
    free(file);
}

/* ---- memory files ------------------------------------------------------------------------------------- */

struct tput {
    double save_mbs, load_mbs;
    bool done;
};

/* Saves the stopped guest to FILE (MAPPED: mapped-ram + multifd), then loads it into a fresh -incoming QEMU. */
static void file_once(struct bench *b, bool mapped, struct tput *t)
{
    struct qmp_client *c = qh_vm_qmp(b->vm);
    char *file = qs_asprintf("%s/%s.mem", b->workdir, mapped ? "mapped" : "plain"), *uri;
    int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int64_t fdset, t0;
    struct qs_error *err = NULL;
    double mb = b->mem_mb;

    if (mapped) {
        cap(c, "mapped-ram", true);
        cap(c, "multifd", true);
        param(c, "multifd-channels", 4);
    }
    param(c, "max-bandwidth", (int64_t)1 << 40);
    uri = mig_uri(c, fd, &fdset);
    exec_ok(c, "stop", NULL, NULL);
    t0 = bench_real_us();
    migrate(c, uri);
    mig_wait_done(c, NULL);
    fsync(fd);
    t->save_mbs = mb / ((double)(bench_real_us() - t0) / 1e6);
    close(fd);
    free(uri);
    /* load: a new QEMU waiting for the stream */
    qh_vm_stop(b->vm, 0, NULL);
    if (qh_vm_restart(b->vm, true, true, &err) < 0)
        bench_die("restart -incoming", err);
    c = qh_vm_qmp(b->vm);
    if (mapped) {
        cap(c, "mapped-ram", true);
        cap(c, "multifd", true);
        param(c, "multifd-channels", 4);
    }
    fd = open(file, O_RDONLY | O_CLOEXEC);
    uri = mig_uri(c, fd, &fdset);
    t0 = bench_real_us();
    {
        struct qmp_args *a = qmp_args_new();
        qmp_args_set_str(a, "uri", uri);
        exec_ok(c, "migrate-incoming", a, NULL);
    }
    mig_wait_done(c, NULL);
    t->load_mbs = mb / ((double)(bench_real_us() - t0) / 1e6);
    t->done = true;
    close(fd);
    unlink(file);
    free(uri);
    free(file);
}

static double dd_mbs(const char *dir, int mb)
{
    char *of = qs_asprintf("of=%s/dd.out", dir), *count = qs_asprintf("count=%d", mb), *o = qs_asprintf("%s/dd.log", dir);
    char *argv[] = {"/bin/dd", "if=/dev/zero", of, "bs=1M", count, "conv=fdatasync", "status=none", NULL};
    struct bench_run r;
    bench_spawn(argv, o, o, &r);
    unlink(of + 3);
    unlink(o);
    free(of), free(count), free(o);
    return r.status == 0 ? mb / (r.wall_ms / 1000.0) : NAN;
}

int main(int argc, char **argv)
{
    struct bench b = {.qsnap = getenv("QSNAP_BIN") ? getenv("QSNAP_BIN") : QSNAP_BENCH_QSNAP, .mem_mb = 1024,
                      .fill_mb = 512, .n = 3};
    const char *md = NULL, *json = NULL;
    struct row live = {0}, pre = {0}, preraw = {0}, raw = {0}, stopfirst = {0}, stopsave = {0};
    bool pre_ok = false;
    struct tput plain = {0}, mapped = {0};
    double dd;
    char tmpl[] = "/var/tmp/qsnap-bench-live-XXXXXX";
    FILE *f;

    bench_prog = "bench_live";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--mem") && i + 1 < argc)
            b.mem_mb = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--fill") && i + 1 < argc)
            b.fill_mb = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-n") && i + 1 < argc)
            b.n = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--md") && i + 1 < argc)
            md = argv[++i];
        else if (!strcmp(argv[i], "--json") && i + 1 < argc)
            json = argv[++i];
        else
            bench_die("usage: bench_live [--mem MB] [--fill MB] [-n N] [--md FILE] [--json FILE]", NULL);
    }
    if (!getenv("QSNAP_GUEST"))
        setenv("QSNAP_GUEST", QSNAP_BENCH_GUEST, 1);
    if (b.n < 1 || b.n > BENCH_MAX_SAMPLES || b.fill_mb < 0 || b.fill_mb + 3 > b.mem_mb || !qh_qemu_available())
        bench_die("bad --mem/--fill/-n, or no qemu-system-x86_64 and qemu-img in PATH", NULL);
    /* memory files on a disk file system (/var/tmp), as users keep them; not tmpfs */
    if (!mkdtemp(tmpl))
        bench_die("mkdtemp", NULL);
    b.workdir = tmpl;
    setenv("TMPDIR", tmpl, 1);

    fprintf(stderr, "bench_live: qsnap --live x%d\n", b.n);
    vm_up(&b);
    attach(&b);
    for (int i = 0; i < b.n; i++)
        qsnap_live_once(&b, &live, i, false);
    vm_down(&b);
    fprintf(stderr, "bench_live: qsnap --live --precopy x%d\n", b.n);
    vm_up(&b);
    /* qsnap refuses it where QEMU's pre-copy loses guest writes (TCG before 9.0): no row then */
    pre_ok = has_cap(qh_vm_qmp(b.vm), "precopy");
    attach(&b);
    for (int i = 0; pre_ok && i < b.n; i++)
        qsnap_live_once(&b, &pre, i, true);
    vm_down(&b);
    fprintf(stderr, "bench_live: QEMU's pre-copy to a file x%d\n", b.n);
    vm_up(&b);
    param(qh_vm_qmp(b.vm), "max-bandwidth", (int64_t)1 << 40);
    for (int i = 0; i < b.n; i++)
        precopy_raw_once(&b, &preraw, i);
    vm_down(&b);
    fprintf(stderr, "bench_live: QEMU's background snapshot x%d\n", b.n);
    vm_up(&b);
    param(qh_vm_qmp(b.vm), "max-bandwidth", (int64_t)1 << 40);
    for (int i = 0; i < b.n; i++)
        bg_once(&b, false, &raw, i);
    vm_down(&b);
    fprintf(stderr, "bench_live: stop, then QEMU's background snapshot x%d\n", b.n);
    vm_up(&b);
    param(qh_vm_qmp(b.vm), "max-bandwidth", (int64_t)1 << 40);
    for (int i = 0; i < b.n; i++)
        bg_once(&b, true, &stopfirst, i);
    vm_down(&b);
    fprintf(stderr, "bench_live: stop-and-save x%d\n", b.n);
    vm_up(&b);
    param(qh_vm_qmp(b.vm), "max-bandwidth", (int64_t)1 << 40);
    for (int i = 0; i < b.n; i++)
        stop_save_once(&b, &stopsave, i);
    fprintf(stderr, "bench_live: memory files\n");
    file_once(&b, false, &plain);
    vm_down(&b);
    vm_up(&b);
    if (has_cap(qh_vm_qmp(b.vm), "mapped-ram"))
        file_once(&b, true, &mapped);
    vm_down(&b);
    dd = dd_mbs(tmpl, b.mem_mb);

    if (md && (f = fopen(md, "w"))) {
        struct { const char *name; struct row *r; } rows[] = {{"qsnap --live", &live}, {"qsnap --live --precopy", &pre},
            {"QEMU pre-copy to a file, cont at completed (no disks)", &preraw}, {"QEMU background snapshot (no disks)", &raw},
            {"stop + QEMU background snapshot (floor with disks)", &stopfirst}, {"stop-and-save (stop, migrate, fsync, cont)", &stopsave}};
        fprintf(f, "# Live snapshots and memory files, QEMU %s\n\n", b.qemu);
        fprintf(f, "Guest: %d MiB RAM, %d MiB of it filled with data; %d in a row per QEMU process; medians "
                   "(min-max); pause from QEMU's STOP/RESUME stamps.\n\n", b.mem_mb, b.fill_mb, b.n);
        fprintf(f, "| | guest pause ms | whole ms | QEMU setup-time ms | AnonHugePages kB first / later |\n|---|---:|---:|---:|---:|\n");
        for (size_t k = 0; k < sizeof(rows) / sizeof(rows[0]); k++) {
            struct row *r = rows[k].r;
            if (r == &pre && !pre_ok) {
                fprintf(f, "| %s | refused: QEMU %s under TCG loses guest writes from a pre-copy (9.0+ or KVM "
                           "can) | | | |\n", rows[k].name, b.qemu);
                continue;
            }
            fprintf(f, "| %s | %.1f (%.1f-%.1f) | %.0f | ", rows[k].name, bench_series_median(&r->pause),
                    bench_series_min(&r->pause), bench_series_max(&r->pause), bench_series_median(&r->whole));
            if (r->setup.n)
                fprintf(f, "%.0f (%.0f-%.0f) |", bench_series_median(&r->setup), bench_series_min(&r->setup),
                        bench_series_max(&r->setup));
            else
                fprintf(f, "- |");
            fprintf(f, " %ld / %ld |\n", r->thp_first, b.n > 1 ? r->thp_later : -1);
        }
        fprintf(f, "\nWhole live snapshot against a stop-and-save: %.2fx",
                bench_series_median(&live.whole) / bench_series_median(&stopsave.whole));
        if (pre_ok)
            fprintf(f, " (--precopy: %.2fx)", bench_series_median(&pre.whole) / bench_series_median(&stopsave.whole));
        fprintf(f, ".\n\n");
        fprintf(f, "| memory file (%d MiB guest, stopped) | save MB/s | load MB/s |\n|---|---:|---:|\n", b.mem_mb);
        fprintf(f, "| plain stream | %.0f | %.0f |\n", plain.save_mbs, plain.load_mbs);
        if (mapped.done)
            fprintf(f, "| mapped-ram + multifd (4) | %.0f | %.0f |\n", mapped.save_mbs, mapped.load_mbs);
        else
            fprintf(f, "| mapped-ram + multifd | QEMU %s has no mapped-ram | |\n", b.qemu);
        fprintf(f, "| dd of the same size, same directory (conv=fdatasync) | %.0f | |\n", dd);
        fclose(f);
    }
    if (json && (f = fopen(json, "w"))) {
        fprintf(f, "{\"qemu\": \"%s\", \"mem_mb\": %d, \"fill_mb\": %d, \"n\": %d,\n", b.qemu, b.mem_mb, b.fill_mb, b.n);
        fprintf(f, " \"pause_ms\": {\"qsnap_live\": %.2f, \"qsnap_precopy\": %s, \"precopy_raw\": %.2f, \"bg_raw\": %.2f, \"bg_stopfirst\": %.2f, \"stop_save\": %.2f},\n",
                bench_series_median(&live.pause), pre_ok ? qs_asprintf("%.2f", bench_series_median(&pre.pause)) : "null", bench_series_median(&preraw.pause),
                bench_series_median(&raw.pause), bench_series_median(&stopfirst.pause), bench_series_median(&stopsave.pause));
        fprintf(f, " \"whole_ms\": {\"qsnap_live\": %.1f, \"qsnap_precopy\": %s, \"precopy_raw\": %.1f, \"bg_raw\": %.1f, \"bg_stopfirst\": %.1f, \"stop_save\": %.1f},\n",
                bench_series_median(&live.whole), pre_ok ? qs_asprintf("%.1f", bench_series_median(&pre.whole)) : "null", bench_series_median(&preraw.whole),
                bench_series_median(&raw.whole), bench_series_median(&stopfirst.whole), bench_series_median(&stopsave.whole));
        fprintf(f, " \"setup_ms\": {\"bg_raw\": %.0f, \"bg_stopfirst\": %.0f},\n", bench_series_median(&raw.setup),
                bench_series_median(&stopfirst.setup));
        fprintf(f, " \"file_mbs\": {\"plain_save\": %.0f, \"plain_load\": %.0f, \"mapped_save\": %s, \"mapped_load\": %s, \"dd\": %.0f}}\n",
                plain.save_mbs, plain.load_mbs, mapped.done ? qs_asprintf("%.0f", mapped.save_mbs) : "null",
                mapped.done ? qs_asprintf("%.0f", mapped.load_mbs) : "null", dd);
        fclose(f);
    }
    {
        char *rm[] = {"/bin/rm", "-rf", tmpl, NULL};
        struct bench_run r;
        bench_spawn(rm, "/dev/null", "/dev/null", &r);
    }
    return 0;
}
