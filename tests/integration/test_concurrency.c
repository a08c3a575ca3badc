/* test_concurrency.c: several qsnap processes on one domain - the lock, and a randomised run against a model. */
#include "qsnap_test.h"

#include "qmp.h"
#include "qs_proc.h"
#include "qs_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BUSY_MSG "domain 'vm' is locked by another qsnap process"
/* the same refusal when the holder left an intent record saying what it does */
#define BUSY_MSG_INTENT "domain 'vm' is busy: qsnap process "
#define WORKERS 4
#define MAX_OWN 8             /* a worker deletes instead of creating once it has this many snapshots */
#define WORKER_LOCK_MS "120000" /* generous: with 4 workers nobody should ever give up */
#define QSNAP_RUN_MS 180000
/* A refused writer that took this long hangs: far above what a loaded machine adds, far below the 600 s
 * default the lock test sets ($QSNAP_LOCK_TIMEOUT_MS), so it still tells the given timeout from that one. */
#define HANG_MS 60000
#define MAX_NAMES 512

/* ------------------------------------------------------------------------------------------------ */
/* Helpers usable in forked children: no cmocka asserts here (a failed assert would longjmp into the
 * parent's copy of the test). */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts); /* one clock for every process: the parent orders their logs by it */
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* qsnap --root ROOT [--lock-timeout LOCK_MS] ARGS... (NULL-terminated). Returns the exit status, or -1 when
 * it could not be run; *out / *errout get its output (caller frees; "" when it could not run). */
static int qsnap_runv(const char *qsnap, const char *root, const char *lock_ms, char **out, char **errout,
                      const char *const *args)
{
    char *argv[32];
    struct qs_proc_result res = {0};
    struct qs_error *err = NULL;
    size_t n = 0;

    argv[n++] = (char *)qsnap;
    argv[n++] = "--root";
    argv[n++] = (char *)root;
    if (lock_ms) {
        argv[n++] = "--lock-timeout";
        argv[n++] = (char *)lock_ms;
    }
    for (size_t i = 0; args[i] && n < 31; i++)
        argv[n++] = (char *)args[i];
    argv[n] = NULL;
    if (qs_proc_run(argv, QSNAP_RUN_MS, 0, &res, &err) < 0) {
        *out = qs_xstrdup("");
        *errout = qs_asprintf("cannot run qsnap: %s", err ? err->message : "?");
        qs_error_free(err);
        return -1;
    }
    *out = res.out;
    *errout = res.errout;
    return res.status;
}

/* The guest counter through the client C (HMP xp); false when it cannot be read. */
static bool counter_read(struct qmp_client *c, uint64_t *v)
{
    struct qs_error *err = NULL;
    unsigned long long lo = 0, hi = 0, magic = 0;
    char *text = NULL, hmp[64];
    bool ok;

    snprintf(hmp, sizeof(hmp), "xp /3wx 0x%x", QH_COUNTER_ADDR);
    if (qmp_client_hmp(c, hmp, &text, &err) < 0) {
        qs_error_free(err);
        return false;
    }
    ok = sscanf(text, "%*x: %llx %llx %llx", &lo, &hi, &magic) == 3 && magic == QH_COUNTER_MAGIC;
    free(text);
    *v = ((uint64_t)hi << 32) | lo;
    return ok;
}

/* Worker W's region of vdb, and the pattern its create number SEQ leaves there. */
#define REGION_OFF(w) ((uint64_t)((w) + 1) << 20)
#define SEQ_PATTERN(seq) ((uint8_t)(1 + (seq) % 255))

/* Writes QT_LEN bytes of PAT at OFF through vdb's guest device (HMP qemu-io on client C), confirmed from
 * QEMU's log at LOG_PATH (qemu-io prints there, not in the reply). false with *why set on failure. */
static bool disk_write(struct qmp_client *c, const char *log_path, uint8_t pat, uint64_t off, char *why,
                       size_t whylen)
{
    struct qs_error *err = NULL;
    struct stat st;
    char line[160], want[96], *out = NULL;
    int64_t deadline;
    off_t from = stat(log_path, &st) == 0 ? st.st_size : 0;
    bool ok = false;

    snprintf(line, sizeof(line), "qemu-io -d vdb/virtio-backend \"write -P 0x%02x %llu %u\"", pat,
             (unsigned long long)off, QT_LEN);
    if (qmp_client_hmp(c, line, &out, &err) < 0 || *out) {
        snprintf(why, whylen, "qemu-io write: %s", err ? err->message : out);
        goto out;
    }
    snprintf(want, sizeof(want), "wrote %u/%u bytes at offset %llu", QT_LEN, QT_LEN, (unsigned long long)off);
    deadline = now_ms() + 60000; /* against a hang only: qemu-io prints before HMP returns */
    while (!ok && now_ms() < deadline) {
        FILE *log = fopen(log_path, "r");
        char buf[512];
        if (log && fseeko(log, from, SEEK_SET) == 0)
            while (!ok && fgets(buf, sizeof(buf), log))
                ok = strstr(buf, want) != NULL;
        if (log)
            fclose(log);
        if (!ok)
            usleep(10000);
    }
    if (!ok)
        snprintf(why, whylen, "no '%s' in QEMU's log", want);
out:
    qs_error_free(err);
    free(out);
    return ok;
}

/* The set of names in a NUL-terminated, newline-separated list (blank lines skipped). Returns the count. */
static size_t names_split(const char *text, char names[][64], size_t max)
{
    size_t n = 0;
    const char *p = text;

    while (*p && n < max) {
        size_t len = strcspn(p, "\n");
        if (len > 0 && len < 64) {
            memcpy(names[n], p, len);
            names[n++][len] = '\0';
        }
        p += len;
        if (*p == '\n')
            p++;
    }
    return n;
}

static bool names_has(char names[][64], size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(names[i], name) == 0)
            return true;
    return false;
}

/* ------------------------------------------------------------------------------------------------ */
/* Fixture: the usual two qcow2 disks, 64 MiB of RAM, and a QMP monitor of its own for each worker (QEMU
 * serves one client per monitor; the workers read the guest counter at the same time as qsnap works). */

static char conc_dir[64];
static char *monitor_args[2 * WORKERS + 1];
static const struct qh_disk conc_disks[] = {
    {.id = "vda", .boot = true},
    {.id = "vdb", .size = 16u << 20},
};
static struct qh_vm_config conc_cfg = {.mem_mb = 64, .disks = conc_disks, .n_disks = 2};

static char *worker_monitor(int w)
{
    return qs_asprintf("%s/w%d.qmp", conc_dir, w);
}

static int conc_setup(void **state)
{
    struct qt_fixture *f = *state;

    snprintf(conc_dir, sizeof(conc_dir), "/tmp/qsnap-conc-XXXXXX");
    if (!mkdtemp(conc_dir))
        return -1;
    for (int w = 0; w < WORKERS; w++) {
        char *path = worker_monitor(w);
        monitor_args[2 * w] = "-qmp";
        monitor_args[2 * w + 1] = qs_asprintf("unix:%s,server=on,wait=off", path);
        free(path);
    }
    monitor_args[2 * WORKERS] = NULL;
    conc_cfg.extra_args = (const char *const *)monitor_args;
    f->cfg = &conc_cfg;
    return qt_setup(state);
}

static int conc_teardown(void **state)
{
    qt_teardown(state);
    for (int w = 0; w < WORKERS; w++) {
        char *path = worker_monitor(w);
        unlink(path);
        free(path);
        free(monitor_args[2 * w + 1]);
        monitor_args[2 * w + 1] = NULL;
    }
    rmdir(conc_dir);
    return 0;
}

/* ------------------------------------------------------------------------------------------------ */
/* a) The lock: a held lock makes a second writer fail with the busy message after its --lock-timeout,
 * readers do not wait for it, and a writer that waits goes ahead once it is released. */

/* Runs qsnap ARGS (NULL-terminated) with LOCK_MS; requires STATUS and, when WANT is set, WANT in stderr.
 * Returns the time it took in ms. */
static int64_t timed_qsnap(struct qt_fixture *f, const char *lock_ms, int status, const char *want,
                           const char *const *args)
{
    char *out = NULL, *errout = NULL;
    int64_t t0 = now_ms(), dt;
    int st = qsnap_runv(f->qsnap, f->root, lock_ms, &out, &errout, args);

    dt = now_ms() - t0;
    if (st != status || (want && !strstr(errout, want)))
        print_error("qsnap %s %s: status %d (wanted %d) after %lld ms, stderr: %s\n", args[0], args[1], st, status,
                    (long long)dt, errout);
    assert_int_equal(st, status);
    if (want)
        assert_non_null(strstr(errout, want));
    free(out);
    free(errout);
    return dt;
}

static void test_lock_serialises(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    const char *vda = qh_vm_disk_path(f->vm, "vda");
    const char *create_x[] = {"snapshot-create-as", "vm", "x", NULL};
    const char *create_w[] = {"snapshot-create-as", "vm", "waited", NULL};
    int64_t dt;
    char *lock_path, *out;
    int fd, status = -1;
    pid_t child;

    qt_attach(f);
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "s0"));

    /* hold the domain lock exactly as md_store does: flock on ROOT/run/vm.lock */
    lock_path = qs_asprintf("%s/run/vm.lock", f->root);
    fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(flock(fd, LOCK_EX | LOCK_NB), 0);

    /* busy after the timeout given, not at once and not after the 600 s of the environment: lower bounds
     * hold on any machine, the upper one only catches a hang (HANG_MS) */
    setenv("QSNAP_LOCK_TIMEOUT_MS", "600000", 1);
    dt = timed_qsnap(f, "300", 1, "error: " BUSY_MSG, create_x);
    print_message("busy after --lock-timeout 300: %lld ms\n", (long long)dt);
    assert_true(dt >= 300 && dt < HANG_MS);
    dt = timed_qsnap(f, "0", 1, BUSY_MSG, (const char *[]){"snapshot-delete", "vm", "s0", NULL});
    assert_true(dt < HANG_MS);
    dt = timed_qsnap(f, "300", 1, BUSY_MSG, (const char *[]){"snapshot-revert", "vm", "s0", NULL});
    assert_true(dt >= 300 && dt < HANG_MS);
    /* the environment sets the default: 10.5 s, waited in full where the built-in 10 s would have given up */
    setenv("QSNAP_LOCK_TIMEOUT_MS", "10500", 1);
    dt = timed_qsnap(f, NULL, 1, BUSY_MSG, create_x);
    print_message("busy after $QSNAP_LOCK_TIMEOUT_MS=10500: %lld ms\n", (long long)dt);
    assert_true(dt >= 10500 && dt < HANG_MS + 10500);
    /* the option wins over it, both ways */
    setenv("QSNAP_LOCK_TIMEOUT_MS", "200", 1);
    dt = timed_qsnap(f, "1500", 1, BUSY_MSG, create_x);
    assert_true(dt >= 1500 && dt < HANG_MS);
    setenv("QSNAP_LOCK_TIMEOUT_MS", "600000", 1);
    dt = timed_qsnap(f, "200", 1, BUSY_MSG, create_x);
    assert_true(dt >= 200 && dt < HANG_MS);
    setenv("QSNAP_LOCK_TIMEOUT_MS", "soon", 1);
    timed_qsnap(f, NULL, 2, "QSNAP_LOCK_TIMEOUT_MS", create_x);
    unsetenv("QSNAP_LOCK_TIMEOUT_MS");
    timed_qsnap(f, "-5", 2, "--lock-timeout", create_x);
    timed_qsnap(f, "12ms", 2, "--lock-timeout", create_x);

    /* commands that only read take no lock: told not to wait for one (--lock-timeout 0), they succeed while
     * it is held - a reader that took it would have failed busy (exit status, not time, proves it) */
    timed_qsnap(f, "0", 0, NULL, (const char *[]){"snapshot-list", "vm", "--name", NULL});
    timed_qsnap(f, "0", 0, NULL, (const char *[]){"snapshot-info", "vm", "s0", NULL});
    timed_qsnap(f, "0", 0, NULL, (const char *[]){"snapshot-current", "vm", "--name", NULL});
    timed_qsnap(f, "0", 0, NULL, (const char *[]){"snapshot-dumpxml", "vm", "s0", NULL});
    timed_qsnap(f, "0", 0, NULL, (const char *[]){"snapshot-list", "vm", "--tree", NULL});
    /* nothing of the refused writes happened */
    out = QSNAP_OK(f, "snapshot-list", "vm", "--name");
    assert_string_equal(out, "s0\n\n");
    free(out);
    assert_false(qt_image_has_tag(vda, "x"));
    assert_true(qt_image_has_tag(vda, "s0"));

    /* a writer with a long timeout waits while the lock is held, and goes ahead once it is released */
    child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        char *o, *e;
        int st;
        close(fd); /* the flock belongs to the open file: this copy would hold it until the child ends */
        st = qsnap_runv(f->qsnap, f->root, "30000", &o, &e, create_w);
        if (st != 0)
            fprintf(stderr, "waiting writer: status %d: %s\n", st, e);
        _exit(st < 0 ? 99 : st);
    }
    usleep(1500 * 1000);
    assert_int_equal(waitpid(child, &status, WNOHANG), 0); /* still waiting */
    assert_false(qt_image_has_tag(vda, "waited"));
    dt = now_ms();
    close(fd); /* releases the flock */
    assert_int_equal(waitpid(child, &status, 0), child);
    dt = now_ms() - dt;
    print_message("the waiting writer finished %lld ms after the release\n", (long long)dt);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_true(qt_image_has_tag(vda, "waited") && qt_image_has_tag(qh_vm_disk_path(f->vm, "vdb"), "waited"));
    out = QSNAP_OK(f, "snapshot-current", "vm", "--name");
    assert_string_equal(out, "waited\n");
    free(out);
    free(lock_path);
}

/* ------------------------------------------------------------------------------------------------ */
/* Read consistency: commands that read take no lock, so they must never see a half-made change. A writer
 * moves "current" back and forth (snapshot-current NAME: no QEMU involved, so it is fast) while the test
 * reads. md_store_snapshot_set_current() rewrites two files one after the other (old current cleared, then
 * new one set) and a reader scans the directory file by file, so a reader can see zero current snapshots,
 * or two (the old file read before the clear, the new one after the set). */

enum read_result { READ_OK, READ_NO_CURRENT, READ_TWO_CURRENT, READ_TORN_OTHER, READ_FAILED, READ_KINDS };
static const char *const read_result_names[] = {"ok", "no current", "two current", "other torn", "failed"};
_Static_assert(sizeof(read_result_names) / sizeof(read_result_names[0]) == READ_KINDS, "read_result_names");

static enum read_result read_classify(int status, const char *errout)
{
    if (status == 0)
        return READ_OK;
    if (strstr(errout, "has no current snapshot"))
        return READ_NO_CURRENT;
    if (strstr(errout, "too many snapshots claiming to be current"))
        return READ_TWO_CURRENT;
    if (strstr(errout, "inconsistent relations") || strstr(errout, "No such file"))
        return READ_TORN_OTHER;
    return READ_FAILED;
}

/* Torn reads fail the test: readers load between two readings of the directory's generation (a seqlock,
 * metadata/md_store.c). QSNAP_CONC_STRICT=0 only reports them. */
static bool strict_reads(void)
{
    const char *s = getenv("QSNAP_CONC_STRICT");
    return !s || strcmp(s, "0") != 0;
}

static void test_reads_during_writes(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    unsigned counts[READ_KINDS] = {0};
    int status = -1, rounds = 0;
    pid_t child;

    qt_attach(f);
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "a"));
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "b"));
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "c"));
    child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        int bad = 0;
        for (int i = 0; i < 150; i++) {
            const char *args[] = {"snapshot-current", "vm", i % 2 ? "a" : "c", NULL};
            char *o, *e;
            if (qsnap_runv(f->qsnap, f->root, "60000", &o, &e, args) != 0) {
                fprintf(stderr, "writer: snapshot-current %s: %s\n", args[2], e);
                bad++;
            }
            free(o);
            free(e);
        }
        _exit(bad ? 1 : 0);
    }
    while (waitpid(child, &status, WNOHANG) == 0) {
        const char *list[] = {"snapshot-list", "vm", "--name", NULL};
        const char *cur[] = {"snapshot-current", "vm", "--name", NULL};
        char *o, *e;
        int st = qsnap_runv(f->qsnap, f->root, NULL, &o, &e, rounds % 2 ? list : cur);
        enum read_result r = read_classify(st, e);
        if (r == READ_OK && rounds % 2 && strcmp(o, "a\nb\nc\n\n") != 0)
            r = READ_FAILED;
        if (r == READ_OK && !(rounds % 2) && strcmp(o, "a\n") != 0 && strcmp(o, "c\n") != 0)
            r = READ_FAILED;
        if (r == READ_FAILED)
            print_error("%s: status %d, out [%s], err [%s]\n", rounds % 2 ? "snapshot-list" : "snapshot-current",
                        st, o, e);
        counts[r]++;
        rounds++;
        free(o);
        free(e);
    }
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    print_message("reads during 150 moves of current: %d reads;", rounds);
    for (int k = 0; k < READ_KINDS; k++)
        print_message(" %s %u", read_result_names[k], counts[k]);
    print_message("\n");
    assert_int_equal(counts[READ_FAILED], 0);
    assert_true(counts[READ_OK] > 0);
    if (counts[READ_NO_CURRENT] + counts[READ_TWO_CURRENT] + counts[READ_TORN_OTHER] > 0) {
        print_message("lock-free readers saw a half-made change of the snapshot directory\n");
        if (strict_reads())
            fail_msg("torn reads");
    }
}

/* ------------------------------------------------------------------------------------------------ */
/* b) The randomised run. WORKERS processes each run 60-80 random operations on the one running VM. A
 * worker only changes snapshots it created itself (names "wN-SEQ"), so the effect of its own operations on
 * the SET of snapshots does not depend on how the workers interleave: the parent's model replays each
 * worker's successful creates and deletes in that worker's order. (Deletes with --children are left out
 * for that reason: another worker may at any time create a snapshot under one of mine - after I reverted
 * to it - and --children would then delete it behind its owner's back.) The tree's SHAPE does depend on
 * the interleaving, which the workers cannot observe; it is checked for being well formed, and then
 * serially at the end.
 *
 * RAM and disk: just before each create a worker writes a pattern unique to that create (its number) to
 * its own 64 KiB region of vdb, then reads the guest counter (lo), and reads it again after the create
 * (hi), all through a QMP monitor of its own. The savevm happens in between, so the snapshot holds that
 * pattern in the region and a counter in [lo, hi] - unless a revert (by any worker) put the guest's RAM and
 * disks back in the meantime. A snapshot whose create window overlaps no successful revert is "clean"; at
 * the end the test reverts (paused) to up to 3 clean survivors one by one and checks the exact counter
 * against the window and the region against the pattern. (Nobody else writes to a worker's region, and
 * the windows of one worker's creates never overlap, so a revert to the wrong snapshot shows.) */

enum op_kind { OP_CREATE, OP_REVERT, OP_DELETE, OP_LIST, OP_INFO, OP_CURRENT, OP_TREE, OP_KINDS };
static const char *const op_names[] = {"create", "revert", "delete", "list", "info", "current", "tree"};
static const int op_weights[] = {30, 12, 16, 14, 12, 8, 8};
/* NOCUR: snapshot-current found none (right when a current root was deleted, or a torn read); TORN: a
 * lock-free read saw a half-made change (see test_reads_during_writes) */
enum op_result { RES_OK, RES_BUSY, RES_NOCUR, RES_TORN, RES_BAD, RES_KINDS };
_Static_assert(sizeof(op_names) / sizeof(op_names[0]) == OP_KINDS, "op_names");
_Static_assert(sizeof(op_weights) / sizeof(op_weights[0]) == OP_KINDS, "op_weights");

struct op_rec {
    int worker;
    enum op_kind kind;
    enum op_result res;
    int status; /* qsnap's exit status */
    char name[64];
    int64_t t0, t1;
    uint64_t lo, hi;
    char msg[256];
};

struct own_snap {
    char name[64];
};

static uint32_t rng_next(uint64_t *s)
{
    /* splitmix64: tiny, and the same sequence everywhere for a seed */
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return (uint32_t)((z ^ (z >> 31)) >> 32);
}

static void rec_write(FILE *log, const struct op_rec *r)
{
    char msg[256];
    size_t i;

    for (i = 0; r->msg[i] && i < sizeof(msg) - 1; i++)
        msg[i] = r->msg[i] == '\n' || r->msg[i] == '\t' ? ' ' : r->msg[i];
    msg[i] = '\0';
    fprintf(log, "%d\t%d\t%d\t%d\t%s\t%lld\t%lld\t%llu\t%llu\t%s\n", r->worker, (int)r->kind, (int)r->res,
            r->status, r->name[0] ? r->name : "-", (long long)r->t0, (long long)r->t1, (unsigned long long)r->lo,
            (unsigned long long)r->hi, msg);
    fflush(log);
}

static enum op_result classify(enum op_kind k, int status, const char *errout)
{
    if (status == 0)
        return RES_OK;
    if (status == 1 && (strstr(errout, BUSY_MSG) || strstr(errout, BUSY_MSG_INTENT)))
        return RES_BUSY;
    switch (status == 1 ? read_classify(status, errout) : READ_FAILED) {
    case READ_NO_CURRENT:
        return k == OP_CURRENT ? RES_NOCUR : RES_BAD;
    case READ_TWO_CURRENT:
    case READ_TORN_OTHER:
        /* for revert and delete too: the CLI looks the name up without the lock before the engine takes it
         * (cli/cmd_snapshot.c resolve_snapshot) and fails there - the operation itself never started */
        return RES_TORN;
    default:
        return RES_BAD;
    }
}

/* One worker: runs NOPS operations, logs each to LOG_PATH. Exits 0 (the parent judges the log). */
static void worker_run(struct qt_fixture *f, int w, uint64_t seed, const char *log_path)
{
    struct own_snap own[MAX_OWN + 1];
    size_t nown = 0;
    uint64_t rs = seed * 1000003u + (uint64_t)w * 7919u + 1;
    int nops = 60 + (int)(rng_next(&rs) % 21), seq = 0, total_weight = 0;
    char *sock = worker_monitor(w);
    struct qs_error *err = NULL;
    struct qmp_client *c = qmp_client_connect(sock, NULL, &err);
    FILE *log = fopen(log_path, "w");
    const char *qemu_log = qh_vm_log_path(f->vm);

    if (!log)
        _exit(97);
    if (!c) {
        struct op_rec r = {.worker = w, .kind = OP_LIST, .res = RES_BAD};
        snprintf(r.msg, sizeof(r.msg), "worker monitor %s: %s", sock, err ? err->message : "?");
        rec_write(log, &r);
        _exit(98);
    }
    for (int k = 0; k < OP_KINDS; k++)
        total_weight += op_weights[k];
    for (int i = 0; i < nops; i++) {
        struct op_rec r = {.worker = w};
        int pick = (int)(rng_next(&rs) % (uint32_t)total_weight), k = 0, status;
        size_t victim = 0;
        const char *args[8] = {NULL};
        char *out = NULL, *errout = NULL;

        while (pick >= op_weights[k])
            pick -= op_weights[k++];
        r.kind = (enum op_kind)k;
        if (nown == 0 && r.kind != OP_LIST && r.kind != OP_TREE && r.kind != OP_CURRENT)
            r.kind = OP_CREATE;
        if (r.kind == OP_CREATE && nown >= MAX_OWN)
            r.kind = OP_DELETE;
        if (nown > 0)
            victim = rng_next(&rs) % nown;
        args[1] = "vm";
        switch (r.kind) {
        case OP_CREATE:
            snprintf(r.name, sizeof(r.name), "w%d-%03d", w, seq++);
            args[0] = "snapshot-create-as";
            args[2] = r.name;
            break;
        case OP_REVERT:
        case OP_DELETE:
        case OP_INFO:
            snprintf(r.name, sizeof(r.name), "%s", own[victim].name);
            args[0] = r.kind == OP_REVERT ? "snapshot-revert" : r.kind == OP_DELETE ? "snapshot-delete"
                                                                                    : "snapshot-info";
            args[2] = r.name;
            break;
        case OP_LIST:
            args[0] = "snapshot-list";
            args[2] = "--name";
            break;
        case OP_CURRENT:
            args[0] = "snapshot-current";
            args[2] = "--name";
            break;
        case OP_TREE:
            args[0] = "snapshot-list";
            args[2] = "--tree";
            break;
        case OP_KINDS:
            break;
        }
        r.t0 = now_ms();
        if (r.kind == OP_CREATE &&
            !disk_write(c, qemu_log, SEQ_PATTERN(seq - 1), REGION_OFF(w), r.msg, sizeof(r.msg))) {
            r.res = RES_BAD;
            rec_write(log, &r);
            continue;
        }
        if (r.kind == OP_CREATE && !counter_read(c, &r.lo))
            snprintf(r.msg, sizeof(r.msg), "cannot read the counter before the create");
        status = qsnap_runv(f->qsnap, f->root, WORKER_LOCK_MS, &out, &errout, args);
        if (r.kind == OP_CREATE) {
            uint64_t a = 0, b = 0;
            /* a reading that races the low dword's wrap can be 2^32 short: take the larger of two */
            if (!counter_read(c, &a) || !counter_read(c, &b))
                snprintf(r.msg, sizeof(r.msg), "cannot read the counter after the create");
            r.hi = a > b ? a : b;
        }
        r.t1 = now_ms();
        r.status = status;
        r.res = classify(r.kind, status, errout);
        if (r.res != RES_OK)
            snprintf(r.msg, sizeof(r.msg), "status %d: %s", status, errout);
        /* what a success must show of the worker's own snapshots */
        if (r.res == RES_OK && r.kind == OP_LIST) {
            static char names[MAX_NAMES][64];
            size_t n = names_split(out, names, MAX_NAMES);
            for (size_t j = 0; j < nown; j++)
                if (!names_has(names, n, own[j].name)) {
                    r.res = RES_BAD;
                    snprintf(r.msg, sizeof(r.msg), "own snapshot '%s' missing from snapshot-list", own[j].name);
                    break;
                }
        }
        if (r.res == RES_OK && r.kind == OP_INFO) {
            char want[128];
            snprintf(want, sizeof(want), "Name:           %s\n", r.name);
            if (!strstr(out, want)) {
                r.res = RES_BAD;
                snprintf(r.msg, sizeof(r.msg), "snapshot-info %s: no '%s' line in: %s", r.name, "Name:", out);
            }
        }
        if (r.res == RES_OK && r.kind == OP_TREE) {
            for (size_t j = 0; j < nown; j++)
                if (!strstr(out, own[j].name)) {
                    r.res = RES_BAD;
                    snprintf(r.msg, sizeof(r.msg), "own snapshot '%s' missing from snapshot-list --tree",
                             own[j].name);
                    break;
                }
        }
        if (r.res == RES_OK && r.kind == OP_CREATE) {
            snprintf(own[nown].name, sizeof(own[nown].name), "%s", r.name);
            nown++;
        }
        if (r.res == RES_OK && r.kind == OP_DELETE) {
            own[victim] = own[nown - 1];
            nown--;
        }
        rec_write(log, &r);
        free(out);
        free(errout);
    }
    qmp_client_free(c);
    free(sock);
    fclose(log);
    _exit(0);
}

/* The log line LINE, parsed into *r. */
static bool rec_parse(const char *line, struct op_rec *r)
{
    int kind, res, off = 0;
    long long t0, t1;
    unsigned long long lo, hi;

    memset(r, 0, sizeof(*r));
    if (sscanf(line, "%d\t%d\t%d\t%d\t%63s\t%lld\t%lld\t%llu\t%llu\t%n", &r->worker, &kind, &res, &r->status,
               r->name, &t0, &t1, &lo, &hi, &off) < 9 ||
        kind < 0 || kind >= OP_KINDS || res < 0 || res >= RES_KINDS)
        return false;
    r->kind = (enum op_kind)kind;
    r->res = (enum op_result)res;
    r->t0 = t0;
    r->t1 = t1;
    r->lo = lo;
    r->hi = hi;
    if (off > 0)
        snprintf(r->msg, sizeof(r->msg), "%.*s", (int)strcspn(line + off, "\n"), line + off);
    if (strcmp(r->name, "-") == 0)
        r->name[0] = '\0';
    return true;
}

/* The names in the model, from the records in order (each worker's own order is the file's). */
struct model_snap {
    char name[64];
    int worker, seq;
    int64_t t0, t1;
    uint64_t lo, hi;
    bool clean; /* no successful revert overlapped its create */
};

static int name_cmp(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

/* Sorted internal snapshot tags of the qcow2 image at PATH (qemu-img snapshot -l -U). */
static size_t image_tags(const char *path, char tags[][64], size_t max)
{
    char *text = qt_image_tags(path), *line, *save = NULL;
    size_t n = 0;
    int lineno = 0;

    for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save), lineno++) {
        char id[32], tag[64];
        /* "Snapshot list:" and the "ID TAG VM SIZE ..." header come first */
        if (lineno < 2 || n >= max || sscanf(line, "%31s %63s", id, tag) != 2)
            continue;
        snprintf(tags[n++], 64, "%s", tag);
    }
    free(text);
    qsort(tags, n, 64, name_cmp);
    return n;
}

static void assert_same_names(const char *what, char got[][64], size_t ngot, char want[][64], size_t nwant)
{
    bool same = ngot == nwant;

    for (size_t i = 0; same && i < ngot; i++)
        same = strcmp(got[i], want[i]) == 0;
    if (!same) {
        print_error("%s disagrees with the model: %zu names, the model %zu\n", what, ngot, nwant);
        for (size_t i = 0; i < ngot; i++)
            if (!names_has(want, nwant, got[i]))
                print_error("  %s: extra '%s'\n", what, got[i]);
        for (size_t i = 0; i < nwant; i++)
            if (!names_has(got, ngot, want[i]))
                print_error("  %s: missing '%s'\n", what, want[i]);
    }
    assert_true(same);
}

/* The snapshots as snapshot-list --json shows them: names, parents ("" for a root), current flags. */
struct listed {
    char name[64], parent[64];
    bool current;
    int64_t ctime;
};

static size_t list_json(struct qt_fixture *f, struct listed *v, size_t max)
{
    struct qs_error *err = NULL;
    char *out = QSNAP_OK(f, "snapshot-list", "vm", "--json");
    struct qmp_reply *r = qmp_reply_parse(out, &err);
    const struct qmp_value *a;
    size_t n = 0;

    OK(r ? 0 : -1);
    a = qmp_reply_value(r);
    assert_int_equal(qmp_value_type(a), QMP_ARRAY);
    for (size_t i = 0; i < qmp_value_array_len(a) && n < max; i++) {
        const struct qmp_value *o = qmp_value_array_at(a, i), *cur = qmp_value_get(o, "current");
        const char *name = qmp_value_get_string(o, "name"), *parent = qmp_value_get_string(o, "parent");
        bool b = false;
        assert_non_null(name);
        assert_true(cur && qmp_value_bool(cur, &b));
        snprintf(v[n].name, sizeof(v[n].name), "%s", name);
        snprintf(v[n].parent, sizeof(v[n].parent), "%s", parent ? parent : "");
        v[n].current = b;
        assert_true(qmp_value_int(qmp_value_get(o, "creation_time"), &v[n].ctime));
        n++;
    }
    qmp_reply_free(r);
    free(out);
    return n;
}

/* Well formed: every parent exists, no cycle, a parent is not younger than its child, at most one current
 * (none is legitimate: deleting a current root leaves none, as in libvirt). Returns the current's index
 * or -1. */
static int tree_check(const struct listed *v, size_t n)
{
    int current = -1;

    for (size_t i = 0; i < n; i++) {
        size_t steps = 0;
        const struct listed *x = &v[i];
        if (v[i].current) {
            if (current >= 0)
                print_error("two current snapshots: '%s' and '%s'\n", v[current].name, v[i].name);
            assert_true(current < 0);
            current = (int)i;
        }
        while (x->parent[0]) {
            const struct listed *p = NULL;
            for (size_t j = 0; j < n && !p; j++)
                if (strcmp(v[j].name, x->parent) == 0)
                    p = &v[j];
            if (!p)
                print_error("the parent '%s' of '%s' does not exist\n", x->parent, x->name);
            assert_non_null(p);
            assert_true(p->ctime <= x->ctime);
            x = p;
            assert_true(++steps <= n); /* else a cycle */
        }
    }
    return current;
}

static const struct listed *listed_find(const struct listed *v, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i].name, name) == 0)
            return &v[i];
    return NULL;
}

/* Requires NAME to be listed with parent PARENT ("" for a root); returns whether it is the current one. */
static bool expect_parent(const struct listed *v, size_t n, const char *name, const char *parent)
{
    const struct listed *x = listed_find(v, n, name);
    if (!x || strcmp(x->parent, parent) != 0)
        print_error("'%s': parent '%s', wanted '%s'\n", name, x ? x->parent : "(not listed)", parent);
    assert_non_null(x);
    assert_string_equal(x->parent, parent);
    return x->current;
}

/* Metadata, the xml files and both disks' tags hold exactly the NWANT sorted names WANT. */
static void expect_names(struct qt_fixture *f, char want[][64], size_t nwant)
{
    static char got[MAX_NAMES][64];
    char *out = QSNAP_OK(f, "snapshot-list", "vm", "--name"), *dir;
    struct dirent *de;
    DIR *d;
    size_t n = names_split(out, got, MAX_NAMES);

    free(out);
    qsort(got, n, 64, name_cmp);
    assert_same_names("snapshot-list --name", got, n, want, nwant);
    dir = qs_asprintf("%s/snapshot/vm", f->root);
    assert_non_null(d = opendir(dir));
    n = 0;
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (de->d_name[0] == '.' || len < 5 || strcmp(de->d_name + len - 4, ".xml") != 0 || n >= MAX_NAMES)
            continue;
        snprintf(got[n++], 64, "%.*s", (int)(len - 4), de->d_name);
    }
    closedir(d);
    free(dir);
    qsort(got, n, 64, name_cmp);
    assert_same_names("ROOT/snapshot/vm/*.xml", got, n, want, nwant);
    n = image_tags(qh_vm_disk_path(f->vm, "vda"), got, MAX_NAMES);
    assert_same_names("vda's internal snapshots", got, n, want, nwant);
    n = image_tags(qh_vm_disk_path(f->vm, "vdb"), got, MAX_NAMES);
    assert_same_names("vdb's internal snapshots", got, n, want, nwant);
}

/*
 * After the random run, serially on the tree it left, with the model now tracking the shape too: creates
 * hang under the current snapshot, a delete re-parents the children, and a delete with --children takes
 * the whole subtree (computed from the listing) and moves current to the parent.
 */
static void serial_tail(struct qt_fixture *f, char want[][64], size_t nwant)
{
    static struct listed v[MAX_NAMES];
    static char left[MAX_NAMES][64];
    char s[64], sparent[64];
    size_t n, ndoomed = 0, nleft = 0, best = 0, most = 0;
    int cur;

    /* the survivor with the most children, so that --children has a subtree to take */
    n = list_json(f, v, MAX_NAMES);
    for (size_t i = 0; i < n; i++) {
        size_t kids = 0;
        for (size_t j = 0; j < n; j++)
            kids += strcmp(v[j].parent, v[i].name) == 0;
        if (kids > most || i == 0)
            best = i, most = kids;
    }
    memcpy(s, v[best].name, sizeof(s));
    memcpy(sparent, v[best].parent, sizeof(sparent));

    free(QSNAP_OK(f, "snapshot-revert", "vm", s));
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "fin-a"));
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "fin-b"));
    n = list_json(f, v, MAX_NAMES);
    assert_false(expect_parent(v, n, "fin-a", s));
    assert_true(expect_parent(v, n, "fin-b", "fin-a"));
    free(QSNAP_OK(f, "snapshot-revert", "vm", s));
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "fin-c"));
    free(QSNAP_OK(f, "snapshot-delete", "vm", "fin-a"));
    n = list_json(f, v, MAX_NAMES);
    assert_false(expect_parent(v, n, "fin-b", s)); /* re-parented */
    assert_true(expect_parent(v, n, "fin-c", s));
    assert_null(listed_find(v, n, "fin-a"));
    assert_int_equal(n, nwant + 2);

    /* S and everything under it goes; current (fin-c, under S) moves to S's parent */
    for (size_t i = 0; i < n; i++) {
        const struct listed *x = &v[i];
        bool under = false;
        for (size_t steps = 0; x && steps <= n && !under; steps++) {
            under = strcmp(x->name, s) == 0;
            x = x->parent[0] ? listed_find(v, n, x->parent) : NULL;
        }
        if (under)
            ndoomed++;
        else
            memcpy(left[nleft++], v[i].name, sizeof(left[0]));
    }
    free(QSNAP_OK(f, "snapshot-delete", "vm", s, "--children"));
    print_message("serial tail: '%s' and its %zu descendants deleted with --children, %zu snapshots left\n", s,
                  ndoomed - 1, nleft);
    assert_true(ndoomed >= 3); /* S, fin-b, fin-c at least */
    qsort(left, nleft, 64, name_cmp);
    expect_names(f, left, nleft);
    n = list_json(f, v, MAX_NAMES);
    cur = tree_check(v, n);
    if (sparent[0]) {
        assert_true(cur >= 0);
        assert_string_equal(v[cur].name, sparent);
    } else {
        assert_int_equal(cur, -1); /* a root's subtree had current: nothing is current now */
    }
}

static uint64_t conc_seed(void)
{
    const char *s = getenv("QSNAP_CONC_SEED");
    struct timespec ts;

    if (s && *s)
        return strtoull(s, NULL, 0);
    clock_gettime(CLOCK_REALTIME, &ts);
    return ((uint64_t)ts.tv_sec * 1000003u) ^ (uint64_t)ts.tv_nsec ^ (uint64_t)getpid();
}

static void test_random_mixed_operations(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    struct qs_error *err = NULL;
    uint64_t seed = conc_seed();
    static struct op_rec recs[WORKERS * 100];
    static struct model_snap model[MAX_NAMES];
    static char want[MAX_NAMES][64];
    static struct listed listed[MAX_NAMES];
    unsigned per[OP_KINDS][RES_KINDS] = {{0}};
    size_t nrecs = 0, nmodel = 0, nlisted, ntorn, nbad = 0, nchecked = 0, nclean = 0;
    pid_t pids[WORKERS];
    char *logs[WORKERS];
    int64_t start, elapsed;
    int current;

    print_message("concurrency seed %llu (QSNAP_CONC_SEED=%llu replays each worker's choices)\n",
                  (unsigned long long)seed, (unsigned long long)seed);
    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    qt_attach(f);

    start = now_ms();
    for (int w = 0; w < WORKERS; w++) {
        char name[32];
        snprintf(name, sizeof(name), "worker%d.log", w);
        logs[w] = qt_path_in(f, name);
        fflush(NULL);
        pids[w] = fork();
        assert_true(pids[w] >= 0);
        if (pids[w] == 0)
            worker_run(f, w, seed, logs[w]);
    }
    for (int w = 0; w < WORKERS; w++) {
        int status = -1;
        assert_int_equal(waitpid(pids[w], &status, 0), pids[w]);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            print_error("worker %d ended with status 0x%x\n", w, status);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    elapsed = now_ms() - start;

    /* the logs; the model replays each worker's successful creates and deletes in its order */
    for (int w = 0; w < WORKERS; w++) {
        char *text = qt_slurp(logs[w]), *line, *save = NULL;
        assert_non_null(text);
        for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
            struct op_rec *r = &recs[nrecs];
            assert_true(nrecs < sizeof(recs) / sizeof(recs[0]));
            assert_true(rec_parse(line, r));
            nrecs++;
            per[r->kind][r->res]++;
            if (r->res == RES_BAD) {
                print_error("worker %d: %s %s: %s\n", r->worker, op_names[r->kind], r->name, r->msg);
                nbad++;
            }
            if (r->res != RES_OK)
                continue;
            if (r->kind == OP_CREATE) {
                assert_true(nmodel < MAX_NAMES);
                model[nmodel] = (struct model_snap){.t0 = r->t0, .t1 = r->t1, .lo = r->lo, .hi = r->hi};
                assert_int_equal(sscanf(r->name, "w%d-%d", &model[nmodel].worker, &model[nmodel].seq), 2);
                snprintf(model[nmodel].name, sizeof(model[nmodel].name), "%s", r->name);
                nmodel++;
            } else if (r->kind == OP_DELETE) {
                size_t k;
                for (k = 0; k < nmodel && strcmp(model[k].name, r->name) != 0; k++)
                    ;
                assert_true(k < nmodel); /* a worker deletes only what it believes exists */
                model[k] = model[--nmodel];
            }
        }
        free(text);
        unlink(logs[w]);
        free(logs[w]);
    }
    print_message("%zu operations by %d workers in %lld ms; per kind (ok/busy/no current/torn read/unexpected):\n",
                  nrecs, WORKERS, (long long)elapsed);
    for (int k = 0; k < OP_KINDS; k++)
        print_message("  %-8s %3u / %u / %u / %u / %u\n", op_names[k], per[k][RES_OK], per[k][RES_BUSY],
                      per[k][RES_NOCUR], per[k][RES_TORN], per[k][RES_BAD]);
    assert_true(nrecs >= WORKERS * 60);
    assert_int_equal(nbad, 0);
    /* the writes happened, not only their refusals: a worker waits up to WORKER_LOCK_MS (2 minutes) for the
     * lock, so a busy refusal means an operation held it that long - a hang; and every kind of write ran */
    for (int k = 0; k < OP_KINDS; k++)
        if (per[k][RES_BUSY] > 0)
            fail_msg("%u %s operations refused for the lock after waiting %s ms for it", per[k][RES_BUSY],
                     op_names[k], WORKER_LOCK_MS);
    assert_true(per[OP_CREATE][RES_OK] >= WORKERS * 6); /* ~20 a worker: 30% of 60-80 ops, more while it has none */
    assert_true(per[OP_REVERT][RES_OK] >= 1);
    assert_true(per[OP_DELETE][RES_OK] >= 1);
    ntorn = 0;
    for (int k = 0; k < OP_KINDS; k++)
        ntorn += per[k][RES_TORN];
    if (ntorn > 0) {
        for (size_t j = 0; j < nrecs; j++)
            if (recs[j].res == RES_TORN)
                print_message("  torn: worker %d %s %s: %s\n", recs[j].worker, op_names[recs[j].kind], recs[j].name,
                              recs[j].msg);
        print_message("lock-free reads saw a half-made change (see test_reads_during_writes)\n");
        if (strict_reads())
            fail_msg("torn reads");
    }

    /* metadata, both disks' internal snapshots, and the model: the same names */
    for (size_t i = 0; i < nmodel; i++)
        memcpy(want[i], model[i].name, sizeof(want[i]));
    qsort(want, nmodel, 64, name_cmp);
    expect_names(f, want, nmodel);

    /* the tree is well formed */
    nlisted = list_json(f, listed, MAX_NAMES);
    assert_int_equal(nlisted, nmodel);
    current = tree_check(listed, nlisted);
    print_message("%zu snapshots survive; current: %s\n", nmodel, current >= 0 ? listed[current].name : "none");
    {
        char *out = QSNAP_OK(f, "snapshot-list", "vm", "--tree");
        for (size_t i = 0; i < nmodel; i++)
            qt_assert_contains(out, want[i]);
        free(out);
    }

    /* RAM: clean survivors (no revert overlapped their create), reverted to one by one, paused */
    for (size_t i = 0; i < nmodel; i++) {
        model[i].clean = true;
        for (size_t j = 0; j < nrecs && model[i].clean; j++)
            /* a revert that was not refused for the lock may have happened, even one that failed */
            if (recs[j].kind == OP_REVERT && recs[j].res != RES_BUSY && recs[j].t0 < model[i].t1 &&
                recs[j].t1 > model[i].t0)
                model[i].clean = false;
        nclean += model[i].clean;
    }
    for (size_t i = 0; i < nmodel && nchecked < 3; i++) {
        uint64_t v;
        char *out;
        if (!model[i].clean || model[i].lo == 0 || model[i].hi < model[i].lo)
            continue;
        free(QSNAP_OK(f, "snapshot-revert", "vm", model[i].name, "--paused"));
        qt_assert_status(qh_vm_qmp(f->vm), "paused");
        v = qt_counter(f);
        print_message("revert to %s: counter %llu, created within [%llu, %llu]\n", model[i].name,
                      (unsigned long long)v, (unsigned long long)model[i].lo, (unsigned long long)model[i].hi);
        assert_true(v >= model[i].lo && v <= model[i].hi);
        /* the worker's region of vdb holds what it wrote just before this create (and not a later one) */
        assert_int_equal(qt_node_reads(f, "vdb", SEQ_PATTERN(model[i].seq), REGION_OFF(model[i].worker)), 1);
        out = QSNAP_OK(f, "snapshot-current", "vm", "--name");
        assert_true(strncmp(out, model[i].name, strlen(model[i].name)) == 0 && out[strlen(model[i].name)] == '\n');
        free(out);
        nlisted = list_json(f, listed, MAX_NAMES);
        current = tree_check(listed, nlisted);
        assert_true(current >= 0);
        assert_string_equal(listed[current].name, model[i].name);
        nchecked++;
    }
    print_message("%zu of %zu survivors were clean; %zu checked by a revert\n", nclean, nmodel, nchecked);
    if (nmodel > 0 && nchecked == 0)
        print_message("no clean survivor to check the RAM of (every create overlapped a revert)\n");
    assert_true(nmodel == 0 || nchecked > 0);
    if (nmodel > 0)
        serial_tail(f, want, nmodel);
}

int main(void)
{
    static struct qt_fixture f_lock = {.cfg = &qt_cfg_two_disks}, f_reads = {.cfg = &qt_cfg_two_disks}, f_random;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_prestate_setup_teardown(test_lock_serialises, qt_setup, qt_teardown, &f_lock),
        cmocka_unit_test_prestate_setup_teardown(test_reads_during_writes, qt_setup, qt_teardown, &f_reads),
        cmocka_unit_test_prestate_setup_teardown(test_random_mixed_operations, conc_setup, conc_teardown,
                                                 &f_random),
    };

    if (getenv("QSNAP_TEST_FILTER")) /* e.g. "*lock*" */
        cmocka_set_test_filter(getenv("QSNAP_TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
