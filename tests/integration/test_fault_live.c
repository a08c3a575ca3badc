/* test_fault_live.c: qsnap killed (SIGKILL) at every step boundary of every changing operation, then the next
 * command recovers: metadata and images agree, the VM runs as it should, nothing that existed before is lost,
 * and the guest sees the old state or the new one (disk bytes; RAM where the operation moves it), never a mix.
 * Each kill is proven to land right after the step it is named after (qsnap-fault's step log) and inside the
 * operation (its intent record is still there until the next command recovers it). The operations: internal
 * create, revert and delete running and shut off; external disk-only create, merge-delete and revert running
 * and shut off (create and delete both ways); --memspec and --live create, and reverts to such snapshots;
 * delete --children; snapshot-current; export; clone; save and restore; snapshot-preview, -commit and -undo.
 * Also QEMU killed during a save, a load and a commit, full disks, and an operation under way shown and
 * refused (label integration). */
#include "qsnap_test.h"

#include "md.h"
#include "qs_proc.h"
#include "qs_util.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <dirent.h>
#include <unistd.h>

#define MiB (1024u * 1024u)
#define OFF_A 0u

enum kind { RUNNING, OFFLINE };

struct scenario {
    const char *name;
    enum kind kind;
    bool external_base;          /* "base" (and "victim") are external snapshots */
    bool victim;                 /* a second snapshot "victim" after base, the one a delete removes */
    const char *op[8];           /* the operation, run by qsnap-fault: "vm" is the domain */
    const char *target;          /* the snapshot the operation creates, deletes or reverts to */
    enum { CREATE, DELETE, REVERT, CURRENT, EXPORT, CLONE, SAVE, RESTORE, PREVIEW, COMMIT, UNDO } what;
    const char *snap_args[3];    /* options of the snapshots the prestate takes instead of --disk-only ("@DIR@": the
                                    VM's directory, "@SNAP@": the snapshot's name) */
    bool children;               /* a third snapshot "leaf" under victim (then the disk reads 0x44) */
    const char *setup[4];        /* a plain command after the prestate, before the operation */
};

static unsigned points_total, points_recovered_forward, points_recovered_back, scenarios_run, scenarios_total;

#define POINT "qsnap-before-preview" /* the preview cycle's kept state */
/* The guest's RAM carries the disk's pattern too (running VMs): a word beside the counter that the guest never
 * writes, set from outside through QEMU's memory. What a snapshot or save of RAM holds comes back with it. */
#define RAM_MARK_ADDR (QH_COUNTER_ADDR + 0x10u)
#define RAM_MARK(pattern) (0x5a5a0000u | (pattern))

/* ---- helpers ---- */

static char *fault_binary(struct qt_fixture *f)
{
    const char *build = getenv("QSNAP_BUILD_DIR");
    (void)f;
    return qs_asprintf("%s/cli/qsnap-fault", build);
}

/* A fresh VM and state directory: the fixture's VM is replaced. */
static void reset(struct qt_fixture *f)
{
    struct qs_error *err = NULL;

    if (f->daemon > 0) {
        kill(f->daemon, SIGKILL);
        f->daemon = -1;
    }
    qt_kill_started(f); /* a clone's QEMU */
    qh_vm_free(f->vm);
    f->vm = qh_vm_start(f->cfg, &err);
    if (!f->vm) {
        print_error("cannot start qemu: %s\n", err ? err->message : "?");
        fail();
    }
    free(f->root);
    f->root = qs_asprintf("%s/root", qh_vm_dir(f->vm));
}

/* The current image of disk DEV from the stored definition. Caller frees. */
static char *current_image(struct qt_fixture *f, const char *dev)
{
    char *xml = qt_domain_xml(f), *target = qs_asprintf("<target dev='%s'", dev), *p, *s, *q, *out = NULL;

    p = strstr(xml, target);
    assert_non_null(p);
    /* the <source file='...'/> of the same <disk> comes before its <target> */
    *p = '\0';
    s = strrchr(xml, '<');
    while (s && strncmp(s, "<source file='", 14) != 0) {
        *s = '\0';
        s = strrchr(xml, '<');
    }
    assert_non_null(s);
    q = strchr(s + 14, '\'');
    assert_non_null(q);
    out = qs_xstrndup(s + 14, (size_t)(q - (s + 14)));
    free(target);
    free(xml);
    return out;
}

/* Pattern at OFF_A as the domain sees it: through the running harness VM, else from its current image. */
static int reads(struct qt_fixture *f, enum kind k, uint8_t pattern)
{
    if (k == RUNNING)
        return qt_guest_reads(f, "vdb", pattern, OFF_A);
    {
        char *img = current_image(f, "vdb");
        int r = qt_image_is(img, "qcow2", pattern, OFF_A);
        free(img);
        return r;
    }
}

/* The host address of guest physical address GPA in the harness's QEMU (HMP gpa2hva). */
static unsigned long long guest_hva(struct qt_fixture *f, unsigned gpa)
{
    struct qs_error *err = NULL;
    unsigned long long hva = 0;
    char cmd[32], *out = NULL, *p;

    snprintf(cmd, sizeof(cmd), "gpa2hva 0x%x", gpa);
    OK(qmp_client_hmp(qh_vm_qmp(f->vm), cmd, &out, &err));
    p = out ? strstr(out, " is 0x") : NULL;
    if (!p || sscanf(p + 4, "%llx", &hva) != 1)
        fail_msg("unexpected gpa2hva answer: %s", out ? out : "");
    free(out);
    return hva;
}

/* Sets the RAM mark of the running guest to PATTERN's: written into QEMU's memory (/proc/PID/mem) while no
 * migration runs, so that whatever saves RAM afterwards holds it. */
static void ram_mark(struct qt_fixture *f, uint8_t pattern)
{
    char *path = qs_asprintf("/proc/%d/mem", (int)qh_vm_pid(f->vm));
    uint32_t v = RAM_MARK(pattern);
    int fd = open(path, O_RDWR | O_CLOEXEC);

    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, &v, sizeof(v), (off_t)guest_hva(f, RAM_MARK_ADDR)), (ssize_t)sizeof(v));
    close(fd);
    free(path);
}

/* 1 when the running guest's RAM carries PATTERN's mark, else 0 (the mark it has is printed). */
static int ram_is(struct qt_fixture *f, uint8_t pattern)
{
    struct qs_error *err = NULL;
    char cmd[32], *out = NULL;
    unsigned long long v = 0;

    snprintf(cmd, sizeof(cmd), "xp /1wx 0x%x", RAM_MARK_ADDR);
    OK(qmp_client_hmp(qh_vm_qmp(f->vm), cmd, &out, &err));
    assert_int_equal(sscanf(out, "%*x: %llx", &v), 1);
    free(out);
    if (v != RAM_MARK(pattern))
        print_error("RAM mark 0x%llx, not 0x%x\n", v, RAM_MARK(pattern));
    return v == RAM_MARK(pattern);
}

static void write_pattern(struct qt_fixture *f, enum kind k, uint8_t pattern)
{
    if (k == RUNNING) {
        qt_disk_write(f, "vdb", pattern, OFF_A);
        ram_mark(f, pattern);
    } else {
        char *img = current_image(f, "vdb");
        qt_offline_write(img, pattern, OFF_A);
        free(img);
    }
}

/* ARG with "@DIR@" (the VM's directory) and "@SNAP@" (SNAP) put in. Caller frees. */
static char *expand(struct qt_fixture *f, const char *arg, const char *snap)
{
    const char *at = strstr(arg, "@SNAP@");
    char *head, *r;

    if (strncmp(arg, "@DIR@", 5) == 0) {
        char *rest = expand(f, arg + 5, snap);
        r = qs_asprintf("%s%s", qh_vm_dir(f->vm), rest);
        free(rest);
        return r;
    }
    if (!at || !snap)
        return qs_xstrdup(arg);
    head = qs_xstrndup(arg, (size_t)(at - arg));
    r = qs_asprintf("%s%s%s", head, snap, at + 6);
    free(head);
    return r;
}

/* Runs BIN (NULL: the plain qsnap) with the arguments OP (at most 7, expanded for SNAP); returns its status. */
static int run_op(struct qt_fixture *f, const char *bin, const char *const *op, const char *snap, char **out,
                  char **errout)
{
    char *saved = f->qsnap, *argv[8] = {0};
    int st;

    for (size_t i = 0; i < 7 && op[i]; i++)
        argv[i] = expand(f, op[i], snap);
    if (bin)
        f->qsnap = qs_xstrdup(bin);
    st = qt_qsnap_run(f, out, errout, argv[0], argv[1], argv[2], argv[3], argv[4], argv[5], argv[6], (char *)NULL);
    if (bin) {
        free(f->qsnap);
        f->qsnap = saved;
    }
    for (size_t i = 0; i < 7; i++)
        free(argv[i]);
    return st;
}

static void snap_create(struct qt_fixture *f, const struct scenario *sc, const char *name)
{
    const char *op[7] = {"snapshot-create-as", "vm", name, NULL};
    char *errout = NULL;

    if (sc->snap_args[0])
        for (size_t i = 0; i < 3; i++)
            op[3 + i] = sc->snap_args[i];
    else if (sc->external_base)
        op[3] = "--disk-only";
    if (run_op(f, NULL, op, name, NULL, &errout) != 0)
        fail_msg("snapshot-create-as %s: %s", name, errout);
    free(errout);
}

/* Whether the domain's QEMU runs, after a command that may have quit it or started another: the harness then
 * follows the one qsnap started (its guest checks read that QEMU). */
static bool follow(struct qt_fixture *f)
{
    struct qs_error *err = NULL;
    char *out;
    bool up;

    if (qh_vm_running(f->vm) && qmp_client_execute(qh_vm_qmp(f->vm), "query-status", NULL, NULL, &err) == 0)
        return true;
    qs_error_clear(&err);
    OK(qh_vm_wait_exit(f->vm, 20000, NULL, &err));
    out = QSNAP_OK(f, "domstate", "vm");
    up = strcmp(out, "shut off\n\n") != 0;
    free(out);
    if (up)
        qt_adopt(f);
    return up;
}

/* The state before the operation: base holds 0x11, (victim 0x22, (leaf 0x33,)) the disk now reads 0x22 (0x33,
 * 0x44); a running guest's RAM is marked alike. Then the scenario's setup command. */
static void prestate(struct qt_fixture *f, const struct scenario *sc)
{
    struct qs_error *err = NULL;

    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    qt_attach(f);
    if (sc->kind == OFFLINE)
        OK(qh_vm_stop(f->vm, 0, &err));
    write_pattern(f, sc->kind, 0x11);
    snap_create(f, sc, "base");
    write_pattern(f, sc->kind, 0x22);
    if (sc->victim) {
        snap_create(f, sc, "victim");
        write_pattern(f, sc->kind, 0x33);
    }
    if (sc->children) {
        snap_create(f, sc, "leaf");
        write_pattern(f, sc->kind, 0x44);
    }
    if (sc->setup[0]) {
        char *errout = NULL;
        if (run_op(f, NULL, sc->setup, NULL, NULL, &errout) != 0)
            fail_msg("%s: %s", sc->setup[0], errout);
        free(errout);
        follow(f);
    }
}

static bool exists(struct qt_fixture *f, const char *name)
{
    char *out = QSNAP_OK(f, "snapshot-list", "vm", "--name");
    bool r = false;

    for (char *line = out; line && *line;) {
        char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        if (len == strlen(name) && strncmp(line, name, len) == 0)
            r = true;
        line = nl ? nl + 1 : NULL;
    }
    free(out);
    return r;
}

static char *current_name(struct qt_fixture *f)
{
    char *out = NULL;
    int st = qt_qsnap_run(f, &out, NULL, "snapshot-current", "vm", "--name", (char *)NULL);
    if (st != 0) {
        free(out);
        return NULL;
    }
    out[strcspn(out, "\n")] = '\0';
    return out;
}

/*
 * Runs the operation with qsnap-fault dying after step AT; returns its exit status (137: killed). qsnap-fault
 * logs every step boundary it passes: killed, it passed exactly AT of them and the last one is the step it
 * died after (*step, "OP STEP"; caller frees); finished, it passed AT - 1, so the points before covered every
 * step of the operation.
 */
static int run_faulty(struct qt_fixture *f, const struct scenario *sc, long at, char **step)
{
    char *log = qt_path_in(f, "fault-steps.log"), *bin = fault_binary(f), buf[32], *text, *line, *save = NULL;
    long n = 0;
    int st, fd;

    *step = NULL;
    fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    close(fd);
    snprintf(buf, sizeof(buf), "%ld", at);
    setenv("QSNAP_FAULT_AT", buf, 1);
    setenv("QSNAP_FAULT_LOG", log, 1);
    st = run_op(f, bin, sc->op, NULL, NULL, NULL);
    unsetenv("QSNAP_FAULT_AT");
    unsetenv("QSNAP_FAULT_LOG");
    text = qt_slurp(log);
    for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        n++;
        free(*step);
        *step = qs_xstrdup(line);
    }
    if (n != (st == 0 ? at - 1 : at))
        fail_msg("%s: qsnap-fault exited %d at step %ld after %ld step boundaries", sc->name, st, at, n);
    free(text), free(bin), free(log);
    return st;
}

/* The intent record of domain 'vm' (NULL when none; caller frees): the file stays once made, cleared. */
static char *intent_record(struct qt_fixture *f)
{
    struct qs_error *err = NULL;
    struct md_store *st = md_store_open(f->root, &err);
    char *text = NULL;

    if (!st || md_store_intent_get(st, "vm", &text, &err) < 0)
        fail_msg("cannot read the intent record: %s", err ? err->message : "?");
    md_store_free(st);
    return text;
}

static bool intent_pending(struct qt_fixture *f)
{
    char *text = intent_record(f);
    bool pending = text != NULL;
    free(text);
    return pending;
}

/* Files in the VM's directory whose names start with PREFIX (a clone's, an export's temporary). */
static int count_files(struct qt_fixture *f, const char *prefix)
{
    DIR *d = opendir(qh_vm_dir(f->vm));
    struct dirent *de;
    int n = 0;

    assert_non_null(d);
    while ((de = readdir(d)))
        n += strncmp(de->d_name, prefix, strlen(prefix)) == 0;
    closedir(d);
    return n;
}

/* The operation of the intent record left behind ("create", ...; caller frees), NULL when there is none. */
static char *intent_op(struct qt_fixture *f)
{
    char *text = intent_record(f), *p, *op = NULL;

    if (text && (p = strstr(text, "\nop ")))
        op = qs_xstrndup(p + 4, strcspn(p + 4, "\n"));
    free(text);
    return op;
}

/*
 * The next command after the kill: a plain listing, which recovers the operation left under way (PENDING_OP,
 * NULL when none was - the test build logs "recover OP" when it recovers OP), then no record is left and
 * snapshot-check finds metadata and images in agreement.
 */
static void recovered(struct qt_fixture *f, const struct scenario *sc, long at, const char *pending_op)
{
    static const char *const list[] = {"snapshot-list", "vm", NULL};
    char *log = qt_path_in(f, "fault-next.log"), *bin = fault_binary(f), *text, *want, *out = NULL, *errout = NULL;
    int st, fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

    assert_true(fd >= 0);
    close(fd);
    setenv("QSNAP_FAULT_LOG", log, 1);
    st = run_op(f, bin, list, NULL, NULL, &errout);
    unsetenv("QSNAP_FAULT_LOG");
    if (st != 0)
        fail_msg("%s, killed after step %ld: snapshot-list: %s", sc->name, at, errout);
    free(errout);
    errout = NULL;
    text = qt_slurp(log);
    want = qs_asprintf("recover %s\n", pending_op ? pending_op : "");
    if (pending_op ? !strstr(text, want) : strstr(text, "recover ") != NULL)
        fail_msg("%s, killed after step %ld: the next command's steps are '%s', not '%s'", sc->name, at, text,
                 want);
    free(want), free(text), free(bin), free(log);
    if (intent_pending(f)) {
        /* a mutating command reports why recovery failed */
        char *rec = intent_record(f);
        print_error("record:\n%s\n", rec);
        free(rec);
        qt_qsnap_run(f, &out, &errout, "snapshot-delete", "vm", "no-such-snapshot", (char *)NULL);
        print_error("%s, killed after step %ld: the intent record is still there: %s\n", sc->name, at, errout);
        free(out), free(errout);
        out = errout = NULL;
    }
    assert_false(intent_pending(f));
    st = qt_qsnap_run(f, &out, &errout, "snapshot-check", "vm", (char *)NULL);
    if (st != 0)
        print_error("%s, killed after step %ld: snapshot-check: %s%s\n", sc->name, at, out, errout);
    assert_int_equal(st, 0);
    free(out), free(errout);
}

/* An export or a clone killed at step AT, then the next command on the source: nothing half-made survives,
 * and the source VM is untouched. */
static void verify_copy(struct qt_fixture *f, const struct scenario *sc, long at, const char *pending_op)
{
    char *out = NULL;
    char *def = qs_asprintf("%s/qemu/c1.xml", f->root), *export = qt_path_in(f, "out.qcow2");

    recovered(f, sc, at, pending_op);
    /* the source ran on, its disk as it was */
    qt_assert_status(qh_vm_qmp(f->vm), "running");
    assert_int_equal(reads(f, RUNNING, 0x22), 1);
    if (sc->what == EXPORT) {
        /* the file is whole or absent, and no temporary is left */
        assert_int_equal(count_files(f, ".out.qcow2."), 0);
        if (qt_exists(export)) {
            points_recovered_forward++;
            assert_null(qt_backing_of(export));
            assert_int_equal(qt_image_is(export, "qcow2", 0x11, OFF_A), 1);
        } else {
            points_recovered_back++;
        }
    } else if (qt_exists(def)) {
        /* defined: whole - its disks read the snapshot's bytes and it starts */
        char *img = qt_path_in(f, "c1-vdb.qcow2");
        points_recovered_forward++;
        assert_int_equal(qt_image_is(img, "qcow2", 0x11, OFF_A), 1);
        free(img);
        out = QSNAP_OK(f, "domstate", "c1");
        if (strcmp(out, "shut off\n\n") == 0)
            free(QSNAP_OK(f, "start", "c1"));
        free(out);
        out = QSNAP_OK(f, "domstate", "c1");
        assert_true(strcmp(out, "running\n\n") == 0 || strcmp(out, "paused\n\n") == 0);
        free(out);
        free(QSNAP_OK(f, "destroy", "c1"));
    } else {
        /* undone: none of its files */
        points_recovered_back++;
        assert_int_equal(count_files(f, "c1-"), 0);
    }
    /* a shared export of an internal snapshot stays only once published in its cookie */
    {
        char *base = qt_path_in(f, "vm-base-vdb.base.qcow2");
        if (qt_exists(base)) {
            char *x = qt_snapshot_xml(f, "base");
            qt_assert_contains(x, "clone-base-vdb");
            assert_int_equal(qt_image_is(base, "qcow2", 0x11, OFF_A), 1);
            free(x);
        }
        free(base);
    }
    /* the data from before: base still gives back 0x11 */
    if (!sc->external_base) {
        free(QSNAP_OK(f, "snapshot-revert", "vm", "base"));
        assert_int_equal(reads(f, RUNNING, 0x11), 1);
    }
    free(def), free(export);
}

/* A save killed at step AT, then the next command: undone, the same QEMU runs on with the guest's RAM and disk
 * and no file was made; finished, QEMU is gone and the file holds them: a restore gives the guest back. Never
 * a temporary left. */
static void verify_save(struct qt_fixture *f, const struct scenario *sc, long at, const char *pending_op)
{
    char *file = qt_path_in(f, "vm.save");

    recovered(f, sc, at, pending_op);
    assert_true(exists(f, "base"));
    assert_int_equal(count_files(f, "vm.save.qsnap-"), 0);
    if (follow(f)) {
        points_recovered_back++;
        qt_assert_status(qh_vm_qmp(f->vm), "running");
        assert_false(qt_exists(file));
        assert_int_equal(ram_is(f, 0x22), 1);
        assert_int_equal(reads(f, RUNNING, 0x22), 1);
        free(file);
        return;
    }
    points_recovered_forward++;
    assert_true(qt_exists(file));
    free(QSNAP_OK(f, "restore", file));
    assert_true(follow(f));
    qt_assert_status(qh_vm_qmp(f->vm), "running"); /* as it was saved */
    assert_int_equal(ram_is(f, 0x22), 1);
    assert_int_equal(reads(f, RUNNING, 0x22), 1);
    free(file);
}

/* A restore killed at step AT, then the next command: the guest runs from the file (finished) or the domain
 * is still off (undone); the file is untouched, and a second restore brings the guest back again. */
static void verify_restore(struct qt_fixture *f, const struct scenario *sc, long at, const char *pending_op)
{
    char *file = qt_path_in(f, "vm.save");

    recovered(f, sc, at, pending_op);
    assert_true(exists(f, "base"));
    assert_true(qt_exists(file));
    if (follow(f)) {
        points_recovered_forward++;
        qt_assert_status(qh_vm_qmp(f->vm), "running"); /* as it was saved */
        assert_int_equal(ram_is(f, 0x22), 1);
        assert_int_equal(reads(f, RUNNING, 0x22), 1);
        free(QSNAP_OK(f, "destroy", "vm"));
        assert_false(follow(f));
    } else {
        points_recovered_back++;
    }
    free(QSNAP_OK(f, "restore", file));
    assert_true(follow(f));
    qt_assert_status(qh_vm_qmp(f->vm), "running");
    assert_int_equal(ram_is(f, 0x22), 1);
    assert_int_equal(reads(f, RUNNING, 0x22), 1);
    free(file);
}

/*
 * A step of the preview cycle killed (base 0x11 previewed from the state after it, 0x22), then the next
 * command: the VM runs, and its guest sees - RAM and disk alike - the state before the preview (no preview,
 * or one cut short on its kept point) or the snapshot's (the preview holds, with its point). What the user's
 * command left undone then ends as a user would end it: a preview cut short on its point with undo, a commit
 * or undo by running it again.
 */
static void verify_preview(struct qt_fixture *f, const struct scenario *sc, long at, const char *pending_op)
{
    bool point, on_point, before;
    char *cur;

    recovered(f, sc, at, pending_op);
    assert_true(follow(f));
    qt_assert_status(qh_vm_qmp(f->vm), "running");
    assert_true(exists(f, "base"));
    point = exists(f, POINT);
    cur = current_name(f);
    on_point = point && qs_str_equal(cur, POINT);
    before = reads(f, RUNNING, 0x22) == 1;
    if (!before)
        assert_int_equal(reads(f, RUNNING, 0x11), 1);
    assert_int_equal(ram_is(f, before ? 0x22 : 0x11), 1);
    /* the guest's state and the metadata agree: on the point or without a preview it is the state before, in
     * a preview (or after a commit) base's */
    if (on_point || (!point && sc->what != COMMIT))
        assert_true(before);
    else
        assert_false(before);
    assert_string_equal(cur ? cur : "", on_point ? POINT : "base");
    if (sc->what == COMMIT ? !point : sc->what == PREVIEW ? !before : before)
        points_recovered_forward++;
    else
        points_recovered_back++;
    if (point && (on_point || sc->what != PREVIEW)) {
        const bool commit = sc->what == COMMIT && !on_point;
        free(QSNAP_OK(f, commit ? "snapshot-commit" : "snapshot-undo", "vm"));
        assert_false(exists(f, POINT));
        assert_int_equal(reads(f, RUNNING, commit ? 0x11 : 0x22), 1);
        assert_int_equal(ram_is(f, commit ? 0x11 : 0x22), 1);
    }
    free(cur);
}

/* After the crash and the next command: everything agrees and nothing old is lost. PENDING_OP: the operation
 * the kill left under way (its record). */
static void verify(struct qt_fixture *f, const struct scenario *sc, long at, const char *pending_op)
{
    switch (sc->what) {
    case EXPORT:
    case CLONE:
        verify_copy(f, sc, at, pending_op);
        return;
    case SAVE:
        verify_save(f, sc, at, pending_op);
        return;
    case RESTORE:
        verify_restore(f, sc, at, pending_op);
        return;
    case PREVIEW:
    case COMMIT:
    case UNDO:
        verify_preview(f, sc, at, pending_op);
        return;
    default:
        break;
    }
    char *cur;
    bool target_exists, memory = !sc->external_base || sc->snap_args[0];
    uint8_t now = sc->children ? 0x44 : sc->victim ? 0x33 : 0x22;

    recovered(f, sc, at, pending_op);
    /* the VM runs as it should: a running one still runs - after a revert too, whose target was taken while
     * it ran (finished: QEMU on the snapshot, running; undone: on the state it left, running) */
    if (sc->kind == RUNNING) {
        assert_true(follow(f));
        qt_assert_status(qh_vm_qmp(f->vm), "running");
    }

    /* the outcome is whole: finished or undone */
    target_exists = exists(f, sc->target);
    assert_true(exists(f, "base"));
    cur = current_name(f);
    switch (sc->what) {
    case CREATE:
        target_exists ? points_recovered_forward++ : points_recovered_back++;
        assert_int_equal(reads(f, sc->kind, 0x22), 1); /* the guest's disk is as it was */
        if (sc->kind == RUNNING)
            assert_int_equal(ram_is(f, 0x22), 1);
        break;
    case DELETE:
        assert_false(target_exists); /* a delete always goes forward */
        if (sc->children)
            assert_false(exists(f, "leaf"));
        points_recovered_forward++;
        assert_int_equal(reads(f, sc->kind, now), 1);
        if (sc->kind == RUNNING)
            assert_int_equal(ram_is(f, now), 1);
        break;
    case REVERT:
        /* the guest's disk tells which way it went, and the metadata must say the same */
        if (reads(f, sc->kind, 0x11) == 1) {
            points_recovered_forward++;
            assert_string_equal(cur ? cur : "", sc->target);
            /* RAM from the snapshot; a disk-only one boots afresh */
            if (sc->kind == RUNNING && memory)
                assert_int_equal(ram_is(f, 0x11), 1);
        } else {
            points_recovered_back++;
            assert_int_equal(reads(f, sc->kind, now), 1);
            assert_string_equal(cur ? cur : "", sc->victim ? "victim" : "base");
            if (sc->kind == RUNNING)
                assert_int_equal(ram_is(f, now), 1);
        }
        break;
    case CURRENT:
        (cur && strcmp(cur, sc->target) == 0) ? points_recovered_forward++ : points_recovered_back++;
        break;
    default:
        fail(); /* handled above */
    }
    free(cur);
    /* the data from before: base still gives back 0x11 (internal snapshots revert in place) */
    if (!sc->external_base) {
        free(QSNAP_OK(f, "snapshot-revert", "vm", "base"));
        assert_int_equal(reads(f, sc->kind, 0x11), 1);
        if (sc->kind == RUNNING)
            assert_int_equal(ram_is(f, 0x11), 1);
    }
}

/* Whether STEP ("OP STEP") is a boundary between the operations a composite command (the preview cycle) runs,
 * where no record is open. */
static bool between_operations(const char *step)
{
    return qs_str_has_prefix(step, "preview ") || qs_str_has_prefix(step, "commit ") ||
           qs_str_has_prefix(step, "undo ");
}

static void run_matrix(void **state, const struct scenario *sc)
{
    struct qt_fixture *f = qt_fixture_of(state);
    int64_t t0 = qs_now_ms();
    long at;

    for (at = 1; at < 40; at++) {
        char *step = NULL, *pending_op;
        int st;
        reset(f);
        prestate(f, sc);
        st = run_faulty(f, sc, at, &step);
        if (st == 0) {
            free(step);
            break; /* fewer steps than AT: the whole operation ran */
        }
        if (st != 128 + SIGKILL)
            print_error("%s: qsnap-fault exited %d at step %ld\n", sc->name, st, at);
        assert_int_equal(st, 128 + SIGKILL);
        /* the kill came inside the operation the step names: its record is there, as the dead process left it */
        pending_op = intent_op(f);
        if (!pending_op && !between_operations(step))
            fail_msg("%s: killed after step %ld '%s', but no operation was under way", sc->name, at, step);
        if (pending_op && (!qs_str_has_prefix(step, pending_op) || step[strlen(pending_op)] != ' '))
            fail_msg("%s: killed after step %ld '%s' inside a %s", sc->name, at, step, pending_op);
        print_message("%s: killed after step %ld '%s' (%s)\n", sc->name, at, step,
                      pending_op ? pending_op : "between operations");
        points_total++;
        verify(f, sc, at, pending_op);
        free(pending_op);
        free(step);
    }
    print_message("%s: %ld injection points (%.1f s)\n", sc->name, at - 1, (double)(qs_now_ms() - t0) / 1000.0);
    assert_true(at > 2); /* an operation without step boundaries would prove nothing */
    scenarios_run++;
}

#define SCENARIO(fn, ...)                                                                                     \
    static void fn(void **state)                                                                              \
    {                                                                                                         \
        static const struct scenario sc = __VA_ARGS__;                                                        \
        run_matrix(state, &sc);                                                                               \
    }

SCENARIO(test_create_internal_running, {.name = "create internal, running", .kind = RUNNING,
                                        .op = {"snapshot-create-as", "vm", "new"}, .target = "new", .what = CREATE})
SCENARIO(test_revert_internal_running, {.name = "revert internal, running", .kind = RUNNING, .victim = true,
                                        .op = {"snapshot-revert", "vm", "base"}, .target = "base", .what = REVERT})
SCENARIO(test_delete_internal_running, {.name = "delete internal, running", .kind = RUNNING, .victim = true,
                                        .op = {"snapshot-delete", "vm", "victim"}, .target = "victim",
                                        .what = DELETE})
SCENARIO(test_create_internal_offline, {.name = "create internal, off", .kind = OFFLINE,
                                        .op = {"snapshot-create-as", "vm", "new"}, .target = "new", .what = CREATE})
SCENARIO(test_revert_internal_offline, {.name = "revert internal, off", .kind = OFFLINE, .victim = true,
                                        .op = {"snapshot-revert", "vm", "base"}, .target = "base", .what = REVERT})
SCENARIO(test_delete_internal_offline, {.name = "delete internal, off", .kind = OFFLINE, .victim = true,
                                        .op = {"snapshot-delete", "vm", "victim"}, .target = "victim",
                                        .what = DELETE})
SCENARIO(test_create_external_running, {.name = "create external disk-only, running", .kind = RUNNING,
                                        .external_base = true,
                                        .op = {"snapshot-create-as", "vm", "new", "--disk-only"}, .target = "new",
                                        .what = CREATE})
SCENARIO(test_delete_external_running, {.name = "delete external (merge), running", .kind = RUNNING,
                                        .external_base = true, .victim = true,
                                        .op = {"snapshot-delete", "vm", "victim"}, .target = "victim",
                                        .what = DELETE})
SCENARIO(test_create_external_offline, {.name = "create external, off", .kind = OFFLINE, .external_base = true,
                                        .op = {"snapshot-create-as", "vm", "new", "--disk-only"}, .target = "new",
                                        .what = CREATE})
SCENARIO(test_delete_external_offline, {.name = "delete external (merge), off", .kind = OFFLINE,
                                        .external_base = true, .victim = true,
                                        .op = {"snapshot-delete", "vm", "victim"}, .target = "victim",
                                        .what = DELETE})
SCENARIO(test_revert_external_offline, {.name = "revert external, off", .kind = OFFLINE, .external_base = true,
                                        .victim = true, .op = {"snapshot-revert", "vm", "base"}, .target = "base",
                                        .what = REVERT})
SCENARIO(test_create_memspec_running, {.name = "create --memspec, running", .kind = RUNNING, .external_base = true,
                                       .op = {"snapshot-create-as", "vm", "new", "--memspec", "@DIR@/new.mem"},
                                       .target = "new", .what = CREATE})
SCENARIO(test_create_live_running, {.name = "create --live (background snapshot), running", .kind = RUNNING,
                                    .external_base = true, .op = {"snapshot-create-as", "vm", "new", "--live"},
                                    .target = "new", .what = CREATE})
/* --live-fallback: where QEMU's pre-copy would lose guest writes (TCG before 9.0) the save runs paused - the
 * same kill points, through the other path */
SCENARIO(test_create_precopy_running, {.name = "create --live --precopy --live-fallback, running", .kind = RUNNING,
                                       .external_base = true,
                                       .op = {"snapshot-create-as", "vm", "new", "--live", "--precopy",
                                              "--live-fallback"},
                                       .target = "new", .what = CREATE})
SCENARIO(test_current, {.name = "snapshot-current", .kind = RUNNING, .victim = true,
                        .op = {"snapshot-current", "vm", "base"}, .target = "base", .what = CURRENT})
SCENARIO(test_export_internal, {.name = "snapshot-export internal, running", .kind = RUNNING,
                                .op = {"snapshot-export", "vm", "base", "vdb", "@DIR@/out.qcow2"}, .target = "base",
                                .what = EXPORT})
SCENARIO(test_export_external, {.name = "snapshot-export external, running", .kind = RUNNING, .external_base = true,
                                .op = {"snapshot-export", "vm", "base", "vdb", "@DIR@/out.qcow2"}, .target = "base",
                                .what = EXPORT})
SCENARIO(test_clone_linked_internal, {.name = "domain-clone linked internal, running", .kind = RUNNING,
                                      .op = {"domain-clone", "vm", "base", "c1", "--start"}, .target = "base",
                                      .what = CLONE})
SCENARIO(test_clone_full_external, {.name = "domain-clone --full external, running", .kind = RUNNING,
                                    .external_base = true, .op = {"domain-clone", "vm", "base", "c1", "--full"},
                                    .target = "base", .what = CLONE})
SCENARIO(test_clone_with_memory, {.name = "domain-clone --with-memory internal, running", .kind = RUNNING,
                                  .op = {"domain-clone", "vm", "base", "c1", "--with-memory"}, .target = "base",
                                  .what = CLONE})

/* Reverts of a running VM that restart QEMU, delete --children, save and restore, the preview cycle */
SCENARIO(test_revert_external_running, {.name = "revert external disk-only, running", .kind = RUNNING,
                                        .external_base = true,
                                        .op = {"snapshot-revert", "vm", "base", "--running"}, .target = "base",
                                        .what = REVERT})
SCENARIO(test_revert_memspec_running, {.name = "revert to a --memspec snapshot, running", .kind = RUNNING,
                                       .external_base = true, .op = {"snapshot-revert", "vm", "base"},
                                       .target = "base", .what = REVERT,
                                       .snap_args = {"--memspec", "@DIR@/@SNAP@.mem"}})
SCENARIO(test_revert_live_running, {.name = "revert to a --live snapshot, running", .kind = RUNNING,
                                    .external_base = true, .op = {"snapshot-revert", "vm", "base"},
                                    .target = "base", .what = REVERT, .snap_args = {"--live"}})
SCENARIO(test_delete_children_running, {.name = "delete --children internal, running", .kind = RUNNING,
                                        .victim = true, .children = true,
                                        .op = {"snapshot-delete", "vm", "victim", "--children"}, .target = "victim",
                                        .what = DELETE})
SCENARIO(test_save, {.name = "save, running", .kind = RUNNING, .op = {"save", "vm", "@DIR@/vm.save"},
                     .target = "base", .what = SAVE})
SCENARIO(test_restore, {.name = "restore", .kind = RUNNING, .op = {"restore", "@DIR@/vm.save"}, .target = "base",
                        .what = RESTORE, .setup = {"save", "vm", "@DIR@/vm.save"}})
SCENARIO(test_preview, {.name = "snapshot-preview, running", .kind = RUNNING,
                        .op = {"snapshot-preview", "vm", "base"}, .target = "base", .what = PREVIEW})
SCENARIO(test_preview_commit, {.name = "snapshot-commit, running", .kind = RUNNING,
                               .op = {"snapshot-commit", "vm"}, .target = "base", .what = COMMIT,
                               .setup = {"snapshot-preview", "vm", "base"}})
SCENARIO(test_preview_undo, {.name = "snapshot-undo, running", .kind = RUNNING,
                             .op = {"snapshot-undo", "vm"}, .target = "base", .what = UNDO,
                             .setup = {"snapshot-preview", "vm", "base"}})

/* ---- QEMU dies under a running operation ---- */

/* A job's status from a JOB_STATUS_CHANGE event on the harness's monitor, waited for up to TIMEOUT_MS; NULL when
 * none came (QEMU gone, or the time passed). *ID gets the job's id when it is NULL on entry. Caller frees. */
static char *job_status_next(struct qt_fixture *f, char **id, int timeout_ms)
{
    struct qs_error *err = NULL;
    struct qmp_event *ev = NULL;
    char *status = NULL;

    if (qmp_client_event_wait(qh_vm_qmp(f->vm), "JOB_STATUS_CHANGE", *id ? "id" : NULL, *id, timeout_ms, &ev,
                              &err) == 0) {
        status = qs_xstrdup(qmp_value_get_string(qmp_event_data(ev), "status"));
        if (!*id)
            *id = qs_xstrdup(qmp_value_get_string(qmp_event_data(ev), "id"));
    }
    qmp_event_free(ev);
    qs_error_free(err);
    return status;
}

/*
 * QEMU SIGKILLed while qsnap waits on a save, a load, a commit: qsnap fails cleanly, the next command leaves
 * metadata and images in agreement, base's data is intact. That the kill landed inside QEMU's job is read from
 * QEMU's own events on the harness's monitor: the job said "running", and nothing after it (no "waiting",
 * "pending", "aborting" or "concluded") came before the socket closed. The guest's RAM holds 64 MiB of data
 * so that a save or load takes a while; a commit is slowed to a crawl (block-job-set-speed) once it runs. A
 * kill that still came too late (a loaded machine) is tried again, up to five times.
 */
static void qemu_killed_during(void **state, const char *const op[], bool external)
{
    struct qt_fixture *f = qt_fixture_of(state);
    struct qs_error *err = NULL;
    char *out = NULL, *errout = NULL, *outfile = NULL, *errfile = NULL, *status = NULL, *id = NULL;
    bool landed = false;
    int st = -1;

    for (int attempt = 1; attempt <= 5 && !landed; attempt++) {
        struct scenario sc = {.name = "qemu killed", .kind = RUNNING, .external_base = external, .victim = true,
                              .target = "victim", .what = DELETE};
        char after[64] = "";
        pid_t child;

        reset(f);
        free(outfile), free(errfile);
        outfile = qt_path_in(f, "qsnap.out");
        errfile = qt_path_in(f, "qsnap.err");
        OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
        if (!external)
            OK(qh_vm_fill_ram(f->vm, 64, &err)); /* before base and victim: their states hold it too */
        prestate(f, &sc);
        OK(qmp_client_poll(qh_vm_qmp(f->vm), &err));
        qmp_client_event_clear(qh_vm_qmp(f->vm));
        child = fork();
        assert_true(child >= 0);
        if (child == 0) {
            if (!freopen(outfile, "w", stdout) || !freopen(errfile, "w", stderr))
                _exit(126);
            execl(f->qsnap, f->qsnap, "--root", f->root, op[0], op[1], op[2], (char *)NULL);
            _exit(127);
        }
        free(id);
        id = NULL;
        free(status);
        status = job_status_next(f, &id, 120000);
        while (status && strcmp(status, "running") != 0) {
            free(status);
            status = job_status_next(f, &id, 120000);
        }
        if (status && external) {
            struct qmp_args *a = qmp_args_new();
            qmp_args_set_str(a, "device", id);
            qmp_args_set_int(a, "speed", 1);
            qmp_client_execute(qh_vm_qmp(f->vm), "block-job-set-speed", a, NULL, NULL); /* too late: seen below */
            qmp_args_free(a);
        }
        assert_int_equal(kill(qh_vm_pid(f->vm), SIGKILL), 0);
        if (!status)
            fail_msg("%s: no job of QEMU's ran", op[0]);
        /* what QEMU still said about the job before it died */
        while ((free(status), status = job_status_next(f, &id, 10000)))
            if (strcmp(status, "ready") != 0 && !after[0])
                snprintf(after, sizeof(after), "%s", status);
        assert_int_equal(waitpid(child, &st, 0), child);
        qh_vm_kill(f->vm); /* reap it */
        landed = !after[0];
        print_message("%s: QEMU killed while job '%s' ran (attempt %d): %s\n", op[0], id, attempt,
                      landed ? "nothing more came from it" : after);
    }
    if (!landed)
        fail_msg("%s: the kill came after QEMU's job in five attempts", op[0]);
    /* qsnap noticed, and failed with a message */
    assert_true(WIFEXITED(st));
    out = qt_slurp(outfile);
    errout = qt_slurp(errfile);
    print_message("qsnap: exit %d, %s", WEXITSTATUS(st), errout);
    assert_int_equal(WEXITSTATUS(st), 1);
    assert_true(qs_str_has_prefix(errout, "error: "));
    free(out), free(errout);
    out = errout = NULL;
    free(QSNAP_OK(f, "snapshot-list", "vm"));
    st = qt_qsnap_run(f, &out, &errout, "snapshot-check", "vm", (char *)NULL);
    if (st != 0)
        print_error("after QEMU died: snapshot-check: %s%s\n", out, errout);
    assert_int_equal(st, 0);
    free(out);
    free(errout);
    assert_true(exists(f, "base"));
    if (!external) {
        /* base's data: a revert of the shut-off domain starts QEMU from the snapshot */
        free(QSNAP_OK(f, "snapshot-revert", "vm", "base", "--paused"));
        {
            struct qmp_client *c = qt_daemon_client(f);
            qmp_client_free(c);
        }
        kill(f->daemon, SIGKILL);
        f->daemon = -1;
        {
            char *img = current_image(f, "vdb");
            assert_int_equal(qt_image_is(img, "qcow2", 0x11, OFF_A), 1);
            free(img);
        }
    }
    free(outfile), free(errfile), free(id), free(status);
}

static void test_qemu_killed_during_save(void **state)
{
    static const char *const op[] = {"snapshot-create-as", "vm", "new", NULL};
    qemu_killed_during(state, op, false);
}

static void test_qemu_killed_during_load(void **state)
{
    static const char *const op[] = {"snapshot-revert", "vm", "base", NULL};
    qemu_killed_during(state, op, false);
}

static void test_qemu_killed_during_commit(void **state)
{
    static const char *const op[] = {"snapshot-delete", "vm", "victim", NULL};
    qemu_killed_during(state, op, true);
}

/*
 * qsnap before 2026-12 named its QEMU job "qsnap-snapshot" (now "qsnap"), and one killed while that job ran left
 * it for the next command - an upgrade in between must not strand it. Emulated on a real QEMU: qsnap-fault killed
 * right after the intent record of an internal create, then the job the older qsnap would have run (snapshot-save
 * "qsnap-snapshot" of the record's tag on the record's nodes, vmstate on the first) left concluded in QEMU, not
 * dismissed. The next command settles it by that name and finishes the create: the snapshot is listed, QEMU has
 * no job left, the guest runs, and reverting to it gives back the disk it had then.
 */
static void test_old_qsnap_killed_in_its_job(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    struct scenario sc = {.name = "old job name", .kind = RUNNING, .op = {"snapshot-create-as", "vm", "new"},
                          .target = "new", .what = CREATE};
    struct qs_error *err = NULL;
    struct qmp_reply *r = NULL;
    struct qmp_args *a = qmp_args_new();
    struct qmp_args *devices;
    char *step = NULL, *text, *line, *save = NULL, *op;
    bool vmstate = false, concluded = false;

    reset(f);
    prestate(f, &sc);
    assert_int_equal(run_faulty(f, &sc, 1, &step), 128 + SIGKILL);
    assert_string_equal(step, "create intent");
    op = intent_op(f);
    assert_string_equal(op, "create");
    free(op);
    /* the job as the record describes it */
    qmp_args_set_str(a, "job-id", "qsnap-snapshot");
    qmp_args_set_str(a, "tag", "new");
    devices = qmp_args_set_list(a, "devices");
    text = intent_record(f);
    for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char target[64], node[128];
        if (sscanf(line, "disk %63s %127s", target, node) != 2)
            continue;
        if (!vmstate) {
            qmp_args_set_str(a, "vmstate", node);
            vmstate = true;
        }
        qmp_args_push_str(devices, node);
    }
    free(text);
    assert_true(vmstate);
    OK(qmp_client_execute(qh_vm_qmp(f->vm), "snapshot-save", a, NULL, &err));
    qmp_args_free(a);
    for (int i = 0; i < 3000 && !concluded; i++) {
        const struct qmp_value *jobs;
        OK(qmp_client_execute(qh_vm_qmp(f->vm), "query-jobs", NULL, &r, &err));
        jobs = qmp_reply_value(r);
        for (size_t k = 0; k < qmp_value_array_len(jobs); k++) {
            const struct qmp_value *j = qmp_value_array_at(jobs, k);
            if (qs_str_equal(qmp_value_get_string(j, "id"), "qsnap-snapshot")) {
                assert_null(qmp_value_get_string(j, "error"));
                concluded = qs_str_equal(qmp_value_get_string(j, "status"), "concluded");
            }
        }
        qmp_reply_free(r);
        r = NULL;
        if (!concluded)
            usleep(20000);
    }
    assert_true(concluded);

    /* the next command: a listing recovers it */
    assert_true(exists(f, "new"));
    assert_null(intent_record(f));
    OK(qmp_client_execute(qh_vm_qmp(f->vm), "query-jobs", NULL, &r, &err));
    assert_int_equal(qmp_value_array_len(qmp_reply_value(r)), 0);
    qmp_reply_free(r);
    qt_assert_status(qh_vm_qmp(f->vm), "running");
    free(QSNAP_OK(f, "snapshot-revert", "vm", "base"));
    assert_int_equal(reads(f, RUNNING, 0x11), 1);
    free(QSNAP_OK(f, "snapshot-revert", "vm", "new"));
    assert_int_equal(reads(f, RUNNING, 0x22), 1);
    free(step);
}

/* Whether migration capability NAME is on in the harness's QEMU (false when it has none of that name). */
static bool capability_on(struct qt_fixture *f, const char *name)
{
    struct qs_error *err = NULL;
    struct qmp_reply *r = NULL;
    const struct qmp_value *v;
    bool on = false;

    OK(qmp_client_execute(qh_vm_qmp(f->vm), "query-migrate-capabilities", NULL, &r, &err));
    v = qmp_reply_value(r);
    for (size_t i = 0; i < qmp_value_array_len(v); i++)
        if (qs_str_equal(qmp_value_get_string(qmp_value_array_at(v, i), "capability"), name))
            qmp_value_bool(qmp_value_get(qmp_value_array_at(v, i), "state"), &on);
    qmp_reply_free(r);
    return on;
}

/* Whether the harness's QEMU still holds a descriptor qsnap passed it for a memory file (an fdset of add-fd,
 * whose opaque is qsnap's name for it). */
static bool memory_fd_left(struct qt_fixture *f)
{
    struct qs_error *err = NULL;
    struct qmp_reply *r = NULL;
    const struct qmp_value *sets;
    bool left = false;

    OK(qmp_client_execute(qh_vm_qmp(f->vm), "query-fdsets", NULL, &r, &err));
    sets = qmp_reply_value(r);
    for (size_t i = 0; i < qmp_value_array_len(sets); i++) {
        const struct qmp_value *fds = qmp_value_get(qmp_value_array_at(sets, i), "fds");
        for (size_t k = 0; k < qmp_value_array_len(fds); k++)
            left = left || qs_str_has_prefix(qmp_value_get_string(qmp_value_array_at(fds, k), "opaque"),
                                             "qsnap-memstate");
    }
    qmp_reply_free(r);
    return left;
}

/*
 * qsnap SIGKILLed while QEMU writes a save's migration stream, where no step boundary falls: QEMU goes on
 * writing for nobody. The next command lets the migration end, removes the temporary, resumes the guest
 * (its RAM and disk as they were), and drops what the save set in QEMU - the capabilities (mapped-ram and
 * multifd on QEMU 9.0+: left on, a later --live snapshot is refused) and the file's descriptor. That the kill
 * landed inside the stream is read from QEMU: the migration was still active once qsnap was gone. The guest's
 * RAM holds 64 MiB of data so that the stream lasts; a kill that still came too late is tried again, up to
 * five times.
 */
static void test_qsnap_killed_in_save_stream(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    struct scenario sc = {.name = "qsnap killed in a save's stream", .kind = RUNNING, .target = "base",
                          .what = SAVE};
    struct qs_error *err = NULL;
    char *file = NULL, *status = NULL;
    bool landed = false;

    for (int attempt = 1; attempt <= 5 && !landed; attempt++) {
        struct qmp_event *ev = NULL;
        struct qmp_reply *r = NULL;
        pid_t child;
        int st;

        reset(f);
        free(file);
        file = qt_path_in(f, "vm.save");
        OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
        OK(qh_vm_fill_ram(f->vm, 64, &err));
        prestate(f, &sc);
        OK(qmp_client_poll(qh_vm_qmp(f->vm), &err));
        qmp_client_event_clear(qh_vm_qmp(f->vm));
        child = fork();
        assert_true(child >= 0);
        if (child == 0) {
            if (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr))
                _exit(126);
            execl(f->qsnap, f->qsnap, "--root", f->root, "save", "vm", file, (char *)NULL);
            _exit(127);
        }
        /* qsnap turns MIGRATION events on: every monitor gets them */
        OK(qmp_client_event_wait(qh_vm_qmp(f->vm), "MIGRATION", "status", "active", 120000, &ev, &err));
        qmp_event_free(ev);
        assert_int_equal(kill(child, SIGKILL), 0);
        assert_int_equal(waitpid(child, &st, 0), child);
        OK(qmp_client_execute(qh_vm_qmp(f->vm), "query-migrate", NULL, &r, &err));
        free(status);
        status = qs_xstrdup(qmp_value_get_string(qmp_reply_value(r), "status"));
        qmp_reply_free(r);
        landed = strcmp(status, "active") == 0;
        print_message("save: qsnap killed in the stream (attempt %d): the migration is '%s'\n", attempt, status);
    }
    if (!landed)
        fail_msg("save: the kill came after the stream in five attempts");
    recovered(f, &sc, 0, "save");
    assert_true(follow(f));
    qt_assert_status(qh_vm_qmp(f->vm), "running");
    assert_int_equal(ram_is(f, 0x22), 1);
    assert_int_equal(reads(f, RUNNING, 0x22), 1);
    assert_false(qt_exists(file));
    assert_int_equal(count_files(f, "vm.save.qsnap-"), 0);
    assert_false(capability_on(f, "mapped-ram") || capability_on(f, "multifd"));
    assert_false(memory_fd_left(f));
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "live", "--live"));
    free(file), free(status);
}

/* ---- a full disk ---- */

/* A small tmpfs at DIR (root only: the test is skipped otherwise, or fails under $QSNAP_REQUIRE_QEMU=1). */
static bool tiny_fs(const char *dir, const char *size)
{
    char *opts = qs_asprintf("size=%s,mode=0700", size);
    bool ok;

    mkdir(dir, 0700);
    ok = mount("tmpfs", dir, "tmpfs", 0, opts) == 0;
    free(opts);
    return ok;
}

/* Fills DIR's file system until LEAVE bytes are free (a file DIR/filler). */
static void fill_until(const char *dir, unsigned long long leave)
{
    struct statvfs sv;
    char *path = qs_asprintf("%s/filler", dir), buf[4096] = {0};
    unsigned long long avail;
    int fd;

    assert_int_equal(statvfs(dir, &sv), 0);
    avail = (unsigned long long)sv.f_bavail * sv.f_frsize;
    assert_true(avail > leave);
    fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    for (unsigned long long left = avail - leave; left > 0;) {
        size_t n = left < sizeof(buf) ? (size_t)left : sizeof(buf);
        ssize_t w = write(fd, buf, n);
        assert_true(w > 0);
        left -= (unsigned long long)w;
    }
    close(fd);
    free(path);
}

/* Everything under DIR, as "path size" lines (what the state directory holds). Caller frees. */
static char *listing(const char *dir)
{
    /* the listing cache and the readers' generation counter change with reads and attempts, and the event log
     * records attempts: not state (run/ holds the lock files and the listing cache; the intent record's file
     * stays once made, cleared in place: intent_pending() tells whether it holds a record) */
    char *run = qs_asprintf("%s/run", dir);
    char *argv[] = {"find", (char *)dir, "-path", run, "-prune", "-o", "!", "-name", ".qsnap-index", "!", "-name",
                    ".qsnap-gen", "!", "-name", ".qsnap-intent", "!", "-path", "*/events*", "-printf", "%P %s\n",
                    NULL};
    struct qs_proc_result res = {0};
    struct qs_error *err = NULL;

    OK(qs_proc_run(argv, 10000, 0, &res, &err));
    free(run);
    return res.out;
}

/* ENOSPC while writing metadata: the state directory on a full tmpfs with room for the intent record only.
 * The snapshot fails with the error, its tags are removed again, the record goes, the guest runs on. */
static void test_enospc_metadata(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    struct scenario sc = {.name = "enospc", .kind = RUNNING, .target = "new", .what = CREATE};
    char *mnt = qs_asprintf("%s/small", qh_vm_dir(f->vm)), *root, *out = NULL, *errout = NULL, *before, *after;
    int st;

    reset(f);
    free(mnt);
    mnt = qs_asprintf("%s/small", qh_vm_dir(f->vm));
    if (!tiny_fs(mnt, "1m")) {
        free(mnt);
        qt_skip_missing("cannot mount a tmpfs (needs root)");
    }
    root = qs_asprintf("%s/root", mnt);
    free(f->root);
    f->root = root;
    prestate(f, &sc);
    /* no room at all: the intent record is written in place into its file's pages (made by the snapshot
     * before), the snapshot file finds none */
    free(QSNAP_OK(f, "snapshot-list", "vm")); /* the listing cache exists before, as after */
    fill_until(mnt, 0);
    before = listing(f->root);
    st = qt_qsnap_run(f, &out, &errout, "snapshot-create-as", "vm", "new", (char *)NULL);
    assert_int_equal(st, 1);
    if (!strstr(errout, "No space left on device"))
        print_error("stderr: %s\n", errout);
    assert_non_null(strstr(errout, "No space left on device"));
    print_message("full state directory: %s\n", errout);
    free(out), free(errout);
    after = listing(f->root);
    assert_string_equal(before, after); /* nothing changed, not even a stray temporary */
    assert_false(intent_pending(f));
    qt_assert_status(qh_vm_qmp(f->vm), "running");
    assert_false(qt_image_has_tag(qh_vm_disk_path(f->vm, "vda"), "new"));
    assert_false(qt_image_has_tag(qh_vm_disk_path(f->vm, "vdb"), "new"));
    /* with room again, all is well */
    {
        char *filler = qs_asprintf("%s/filler", mnt);
        unlink(filler);
        free(filler);
    }
    out = errout = NULL;
    st = qt_qsnap_run(f, &out, &errout, "snapshot-check", "vm", (char *)NULL);
    assert_int_equal(st, 0);
    free(out), free(errout);
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "new"));
    free(before), free(after);
    reset(f); /* the old root is freed with the fixture's; unmount before the VM's directory goes */
    umount2(mnt, MNT_DETACH);
    free(mnt);
}

/* ENOSPC while creating an overlay: the overlays named on a full tmpfs. The snapshot fails, no overlay file
 * is left, nothing changed, the guest runs on its old images. */
static void test_enospc_overlay(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    struct scenario sc = {.name = "enospc overlay", .kind = RUNNING, .external_base = true, .target = "new",
                          .what = CREATE};
    char *mnt, *spec_a, *spec_b, *out = NULL, *errout = NULL, *before, *after, *ls_before, *ls_after;
    int st;

    reset(f);
    mnt = qs_asprintf("%s/small", qh_vm_dir(f->vm));
    if (!tiny_fs(mnt, "64k")) {
        free(mnt);
        qt_skip_missing("cannot mount a tmpfs (needs root)");
    }
    prestate(f, &sc);
    fill_until(mnt, 0);
    spec_a = qs_asprintf("vda,snapshot=external,file=%s/a.ov", mnt);
    spec_b = qs_asprintf("vdb,snapshot=external,file=%s/b.ov", mnt);
    free(QSNAP_OK(f, "snapshot-list", "vm")); /* the listing cache exists before, as after */
    before = listing(f->root);
    ls_before = listing(mnt);
    st = qt_qsnap_run(f, &out, &errout, "snapshot-create-as", "vm", "new", "--disk-only", "--diskspec", spec_a,
                      "--diskspec", spec_b, (char *)NULL);
    assert_int_equal(st, 1);
    if (!strstr(errout, "No space left on device"))
        print_error("stderr: %s\n", errout);
    assert_non_null(strstr(errout, "No space left on device"));
    print_message("full overlay directory: %s\n", errout);
    after = listing(f->root);
    ls_after = listing(mnt);
    assert_string_equal(before, after);
    assert_string_equal(ls_before, ls_after); /* no overlay left behind */
    qt_assert_status(qh_vm_qmp(f->vm), "running");
    assert_int_equal(reads(f, RUNNING, 0x22), 1);
    free(out), free(errout);
    out = errout = NULL;
    st = qt_qsnap_run(f, &out, &errout, "snapshot-check", "vm", (char *)NULL);
    assert_int_equal(st, 0);
    free(out), free(errout);
    free(before), free(after), free(ls_before), free(ls_after), free(spec_a), free(spec_b);
    reset(f);
    umount2(mnt, MNT_DETACH);
    free(mnt);
}

/* While another qsnap is in the middle of a create (its record written, its lock held), the listing shows
 * the snapshot as being created and a second changing command is refused with who is doing what. */
static void test_pending_shown_and_refused(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    struct scenario sc = {.name = "pending", .kind = RUNNING, .target = "new", .what = CREATE};
    char *bin, *out = NULL, *errout = NULL, *want;
    pid_t child;
    int st, status = 0;

    reset(f);
    prestate(f, &sc);
    bin = fault_binary(f);
    qt_fault_hold(f, "1"); /* right after the intent record, until the test is done: no window to miss */
    child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        if (!freopen("/dev/null", "w", stdout))
            _exit(126);
        execl(bin, bin, "--root", f->root, "snapshot-create-as", "vm", "new", (char *)NULL);
        _exit(127);
    }
    qt_fault_wait_held(f, 1);
    assert_true(intent_pending(f));
    out = QSNAP_OK(f, "snapshot-list", "vm");
    qt_assert_contains(out, " new ");
    qt_assert_contains(out, "creating");
    free(out);
    out = NULL;
    st = qt_qsnap_run(f, &out, &errout, "--lock-timeout", "200", "snapshot-delete", "vm", "base", (char *)NULL);
    assert_int_equal(st, 1);
    want = qs_asprintf("domain 'vm' is busy: qsnap process %d is running a create of snapshot 'new'", (int)child);
    qt_assert_contains(errout, want);
    free(want), free(out), free(errout);
    qt_fault_release(f);
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_true(exists(f, "new") && exists(f, "base"));
    out = QSNAP_OK(f, "snapshot-list", "vm");
    assert_null(strstr(out, "creating"));
    free(out);
    free(bin);
}

/* The QEMUs qsnap started for clones go with the fixture. */
static int teardown(void **state)
{
    qt_kill_started(*state);
    return qt_teardown(state);
}

/* Runs last: the matrix as a whole. */
static void test_totals(void **state)
{
    (void)state;
    print_message("fault injection: %u scenarios, %u points, %u finished forward, %u undone\n", scenarios_run,
                  points_total, points_recovered_forward, points_recovered_back);
    assert_true(scenarios_run > 0);
    /* every point's outcome was judged whole one way or the other */
    assert_int_equal(points_recovered_forward + points_recovered_back, points_total);
    assert_true(points_total >= 2 * scenarios_run);
    /* the whole matrix (no QSNAP_TEST_FILTER): recovery went both ways somewhere, and no scenario was left out */
    if (scenarios_run == scenarios_total) {
        assert_true(points_recovered_forward > 0);
        assert_true(points_recovered_back > 0);
    }
}

/* The matrix runs as two ctest entries, in parallel and each well inside ctest's timeout: argument "a" runs
 * the operations up to test_current and the QEMU-kill, ENOSPC and pending cases, "b" the rest (export, clone,
 * running reverts, --children, save, restore, preview); no argument runs everything. */
int main(int argc, char **argv)
{
    static struct qt_fixture f = {.cfg = &qt_cfg_two_disks};
    const struct CMUnitTest all[] = {
        cmocka_unit_test_prestate_setup_teardown(test_create_internal_running, qt_setup, qt_teardown, &f),
        cmocka_unit_test_prestate_setup_teardown(test_revert_internal_running, qt_setup, qt_teardown, &f),
        cmocka_unit_test_prestate_setup_teardown(test_delete_internal_running, qt_setup, qt_teardown, &f),
        cmocka_unit_test_prestate_setup_teardown(test_create_internal_offline, qt_setup, qt_teardown, &f),
        cmocka_unit_test_prestate_setup_teardown(test_revert_internal_offline, qt_setup, qt_teardown, &f),
        cmocka_unit_test_prestate_setup_teardown(test_delete_internal_offline, qt_setup, qt_teardown, &f),
        cmocka_unit_test_prestate_setup_teardown(test_create_external_running, qt_setup, qt_teardown, &f),
        cmocka_unit_test_prestate_setup_teardown(test_delete_external_running, qt_setup, qt_teardown, &f),
        cmocka_unit_test_prestate_setup_teardown(test_create_external_offline, qt_setup, qt_teardown, &f),
        cmocka_unit_test_prestate_setup_teardown(test_delete_external_offline, qt_setup, qt_teardown, &f),
        cmocka_unit_test_prestate_setup_teardown(test_revert_external_offline, qt_setup, qt_teardown, &f),
        cmocka_unit_test_prestate_setup_teardown(test_create_memspec_running, qt_setup, qt_teardown, &f),
        cmocka_unit_test_prestate_setup_teardown(test_create_live_running, qt_setup, qt_teardown, &f),
        cmocka_unit_test_prestate_setup_teardown(test_create_precopy_running, qt_setup, qt_teardown, &f),
        cmocka_unit_test_prestate_setup_teardown(test_current, qt_setup, qt_teardown, &f),
        cmocka_unit_test_prestate_setup_teardown(test_qemu_killed_during_save, qt_setup, qt_teardown, &f),
        cmocka_unit_test_prestate_setup_teardown(test_qemu_killed_during_load, qt_setup, qt_teardown, &f),
        cmocka_unit_test_prestate_setup_teardown(test_qemu_killed_during_commit, qt_setup, qt_teardown, &f),
        cmocka_unit_test_prestate_setup_teardown(test_old_qsnap_killed_in_its_job, qt_setup, qt_teardown, &f),
        cmocka_unit_test_prestate_setup_teardown(test_qsnap_killed_in_save_stream, qt_setup, qt_teardown, &f),
        cmocka_unit_test_prestate_setup_teardown(test_enospc_metadata, qt_setup, qt_teardown, &f),
        cmocka_unit_test_prestate_setup_teardown(test_enospc_overlay, qt_setup, qt_teardown, &f),
        cmocka_unit_test_prestate_setup_teardown(test_pending_shown_and_refused, qt_setup, qt_teardown, &f),
        /* part b from here */
        cmocka_unit_test_prestate_setup_teardown(test_export_internal, qt_setup, teardown, &f),
        cmocka_unit_test_prestate_setup_teardown(test_export_external, qt_setup, teardown, &f),
        cmocka_unit_test_prestate_setup_teardown(test_clone_linked_internal, qt_setup, teardown, &f),
        cmocka_unit_test_prestate_setup_teardown(test_clone_full_external, qt_setup, teardown, &f),
        cmocka_unit_test_prestate_setup_teardown(test_clone_with_memory, qt_setup, teardown, &f),
        cmocka_unit_test_prestate_setup_teardown(test_revert_external_running, qt_setup, teardown, &f),
        cmocka_unit_test_prestate_setup_teardown(test_revert_memspec_running, qt_setup, teardown, &f),
        cmocka_unit_test_prestate_setup_teardown(test_revert_live_running, qt_setup, teardown, &f),
        cmocka_unit_test_prestate_setup_teardown(test_delete_children_running, qt_setup, qt_teardown, &f),
        cmocka_unit_test_prestate_setup_teardown(test_save, qt_setup, teardown, &f),
        cmocka_unit_test_prestate_setup_teardown(test_restore, qt_setup, teardown, &f),
        cmocka_unit_test_prestate_setup_teardown(test_preview, qt_setup, qt_teardown, &f),
        cmocka_unit_test_prestate_setup_teardown(test_preview_commit, qt_setup, qt_teardown, &f),
        cmocka_unit_test_prestate_setup_teardown(test_preview_undo, qt_setup, qt_teardown, &f),
    };
    const size_t n_all = sizeof(all) / sizeof(all[0]), split = 23;
    struct CMUnitTest sel[sizeof(all) / sizeof(all[0]) + 1];
    size_t from = 0, to = n_all, n = 0;

    if (argc > 1 && strcmp(argv[1], "a") == 0)
        to = split;
    else if (argc > 1 && strcmp(argv[1], "b") == 0)
        from = split;
    else if (argc > 1) {
        fprintf(stderr, "usage: %s [a|b]\n", argv[0]);
        return 2;
    }
    for (size_t i = from; i < to; i++)
        sel[n++] = all[i];
    sel[n++] = (struct CMUnitTest)cmocka_unit_test(test_totals);
    /* the matrix's scenarios are the tests run_matrix() ends: those named after an operation */
    for (size_t i = 0; i < n; i++)
        scenarios_total += strstr(sel[i].name, "killed") == NULL && strstr(sel[i].name, "enospc") == NULL &&
                           strstr(sel[i].name, "pending") == NULL && strstr(sel[i].name, "totals") == NULL;
    if (getenv("QSNAP_TEST_FILTER")) /* e.g. "*delete_external*" */
        cmocka_set_test_filter(getenv("QSNAP_TEST_FILTER"));
    return _cmocka_run_group_tests(from == split ? "fault b" : to == split ? "fault a" : "fault", sel, n, NULL,
                                   NULL);
}
