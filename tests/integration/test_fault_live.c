/* test_fault_live.c: qsnap killed (SIGKILL) at every step boundary of every operation, then the next command
 * recovers: metadata and images agree, the VM runs as it should, nothing that existed before is lost. Also
 * QEMU killed during a save, a load and a commit (label integration). */
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
    enum { CREATE, DELETE, REVERT, CURRENT, EXPORT, CLONE } what;
};

static unsigned points_total, points_recovered_forward, points_recovered_back, scenarios_run, scenarios_total;

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

static void write_pattern(struct qt_fixture *f, enum kind k, uint8_t pattern)
{
    if (k == RUNNING) {
        qt_disk_write(f, "vdb", pattern, OFF_A);
    } else {
        char *img = current_image(f, "vdb");
        qt_offline_write(img, pattern, OFF_A);
        free(img);
    }
}

static void snap_create(struct qt_fixture *f, const struct scenario *sc, const char *name)
{
    if (sc->external_base)
        free(QSNAP_OK(f, "snapshot-create-as", "vm", name, "--disk-only"));
    else
        free(QSNAP_OK(f, "snapshot-create-as", "vm", name));
}

/* The state before the operation: base holds 0x11, (victim 0x22,) the disk now reads 0x22 (0x33). */
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

/* Runs the operation with qsnap-fault dying after step AT; returns its exit status (137: killed). */
static int run_faulty(struct qt_fixture *f, const struct scenario *sc, long at)
{
    char *saved = f->qsnap, buf[32], *argv[8] = {0};
    int st;

    snprintf(buf, sizeof(buf), "%ld", at);
    setenv("QSNAP_FAULT_AT", buf, 1);
    f->qsnap = fault_binary(f);
    /* "@DIR@" stands for the VM's directory */
    for (size_t i = 0; i < 7 && sc->op[i]; i++)
        argv[i] = strncmp(sc->op[i], "@DIR@", 5) == 0 ? qs_asprintf("%s%s", qh_vm_dir(f->vm), sc->op[i] + 5)
                                                       : qs_xstrdup(sc->op[i]);
    st = qt_qsnap_run(f, NULL, NULL, argv[0], argv[1], argv[2], argv[3], argv[4], argv[5], argv[6],
                      (char *)NULL);
    free(f->qsnap);
    f->qsnap = saved;
    for (size_t i = 0; i < 7; i++)
        free(argv[i]);
    unsetenv("QSNAP_FAULT_AT");
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

/* An export or a clone killed at step AT, then the next command on the source: nothing half-made survives,
 * and the source VM is untouched. */
static void verify_copy(struct qt_fixture *f, const struct scenario *sc, long at)
{
    char *out = NULL, *errout = NULL;
    char *def = qs_asprintf("%s/qemu/c1.xml", f->root), *export = qt_path_in(f, "out.qcow2");
    int st;

    free(QSNAP_OK(f, "snapshot-list", "vm"));
    assert_false(intent_pending(f));
    st = qt_qsnap_run(f, &out, &errout, "snapshot-check", "vm", (char *)NULL);
    if (st != 0)
        print_error("%s, killed after step %ld: snapshot-check: %s%s\n", sc->name, at, out, errout);
    assert_int_equal(st, 0);
    free(out), free(errout);
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

/* After the crash and the next command: everything agrees and nothing old is lost. */
static void verify(struct qt_fixture *f, const struct scenario *sc, long at)
{
    if (sc->what == EXPORT || sc->what == CLONE) {
        verify_copy(f, sc, at);
        return;
    }
    char *cur, *out = NULL, *errout = NULL;
    bool target_exists;
    int st;

    /* the next command (a read-only one) recovered: no record left */
    free(QSNAP_OK(f, "snapshot-list", "vm"));
    if (intent_pending(f)) {
        /* a mutating command reports why recovery failed */
        char *text = intent_record(f);
        print_error("record:\n%s\n", text);
        free(text);
        qt_qsnap_run(f, &out, &errout, "snapshot-delete", "vm", "no-such-snapshot", (char *)NULL);
        print_error("%s, killed after step %ld: the intent record is still there: %s\n", sc->name, at, errout);
        free(out), free(errout);
        out = errout = NULL;
    }
    assert_false(intent_pending(f));
    /* metadata and images agree */
    st = qt_qsnap_run(f, &out, &errout, "snapshot-check", "vm", (char *)NULL);
    if (st != 0)
        print_error("%s, killed after step %ld: snapshot-check: %s%s\n", sc->name, at, out, errout);
    assert_int_equal(st, 0);
    free(out);
    free(errout);

    /* the VM runs as it should: a running one still runs - after a revert too, whose target was taken while
     * it ran (finished: QEMU on the snapshot, running; undone: on the state it left, running) */
    if (sc->kind == RUNNING)
        qt_assert_status(qh_vm_qmp(f->vm), "running");

    /* the outcome is whole: finished or undone */
    target_exists = exists(f, sc->target);
    assert_true(exists(f, "base"));
    cur = current_name(f);
    switch (sc->what) {
    case CREATE:
        target_exists ? points_recovered_forward++ : points_recovered_back++;
        assert_int_equal(reads(f, sc->kind, 0x22), 1); /* the guest's disk is as it was */
        break;
    case DELETE:
        assert_false(target_exists); /* a delete always goes forward */
        points_recovered_forward++;
        assert_int_equal(reads(f, sc->kind, 0x33), 1);
        break;
    case REVERT:
        if (cur && strcmp(cur, sc->target) == 0) {
            points_recovered_forward++;
            if (sc->kind == OFFLINE || !sc->external_base)
                assert_int_equal(reads(f, sc->kind, 0x11), 1);
        } else {
            points_recovered_back++;
            assert_int_equal(reads(f, sc->kind, 0x33), 1);
        }
        break;
    case CURRENT:
        (cur && strcmp(cur, sc->target) == 0) ? points_recovered_forward++ : points_recovered_back++;
        break;
    case EXPORT:
    case CLONE:
        break; /* verify_copy */
    }
    free(cur);
    /* the data from before: base still gives back 0x11 (internal snapshots revert in place) */
    if (!sc->external_base) {
        free(QSNAP_OK(f, "snapshot-revert", "vm", "base"));
        assert_int_equal(reads(f, sc->kind, 0x11), 1);
    }
}

static void run_matrix(void **state, const struct scenario *sc)
{
    struct qt_fixture *f = qt_fixture_of(state);
    long at;

    for (at = 1; at < 40; at++) {
        int st;
        reset(f);
        prestate(f, sc);
        st = run_faulty(f, sc, at);
        if (st == 0)
            break; /* fewer steps than AT: the whole operation ran */
        if (st != 128 + SIGKILL)
            print_error("%s: qsnap-fault exited %d at step %ld\n", sc->name, st, at);
        assert_int_equal(st, 128 + SIGKILL);
        points_total++;
        verify(f, sc, at);
    }
    print_message("%s: %ld injection points\n", sc->name, at - 1);
    assert_true(at > 2); /* an operation without step boundaries would prove nothing */
    scenarios_run++;
}

#define SCENARIO(fn, ...)                                                                                     \
    static void fn(void **state)                                                                              \
    {                                                                                                         \
        static const struct scenario sc = __VA_ARGS__;                                                        \
        run_matrix(state, &sc);                                                                               \
    }

SCENARIO(test_create_internal_running, {"create internal, running", RUNNING, false, false,
                                        {"snapshot-create-as", "vm", "new"}, "new", CREATE})
SCENARIO(test_revert_internal_running, {"revert internal, running", RUNNING, false, true,
                                        {"snapshot-revert", "vm", "base"}, "base", REVERT})
SCENARIO(test_delete_internal_running, {"delete internal, running", RUNNING, false, true,
                                        {"snapshot-delete", "vm", "victim"}, "victim", DELETE})
SCENARIO(test_create_internal_offline, {"create internal, off", OFFLINE, false, false,
                                        {"snapshot-create-as", "vm", "new"}, "new", CREATE})
SCENARIO(test_revert_internal_offline, {"revert internal, off", OFFLINE, false, true,
                                        {"snapshot-revert", "vm", "base"}, "base", REVERT})
SCENARIO(test_delete_internal_offline, {"delete internal, off", OFFLINE, false, true,
                                        {"snapshot-delete", "vm", "victim"}, "victim", DELETE})
SCENARIO(test_create_external_running, {"create external disk-only, running", RUNNING, true, false,
                                        {"snapshot-create-as", "vm", "new", "--disk-only"}, "new", CREATE})
SCENARIO(test_delete_external_running, {"delete external (merge), running", RUNNING, true, true,
                                        {"snapshot-delete", "vm", "victim"}, "victim", DELETE})
SCENARIO(test_create_external_offline, {"create external, off", OFFLINE, true, false,
                                        {"snapshot-create-as", "vm", "new", "--disk-only"}, "new", CREATE})
SCENARIO(test_delete_external_offline, {"delete external (merge), off", OFFLINE, true, true,
                                        {"snapshot-delete", "vm", "victim"}, "victim", DELETE})
SCENARIO(test_revert_external_offline, {"revert external, off", OFFLINE, true, true,
                                        {"snapshot-revert", "vm", "base"}, "base", REVERT})
SCENARIO(test_create_memspec_running, {"create --memspec, running", RUNNING, true, false,
                                       {"snapshot-create-as", "vm", "new", "--memspec", "@DIR@/new.mem"}, "new",
                                       CREATE})
SCENARIO(test_create_live_running, {"create --live (background snapshot), running", RUNNING, true, false,
                                    {"snapshot-create-as", "vm", "new", "--live"}, "new", CREATE})
SCENARIO(test_current, {"snapshot-current", RUNNING, false, true, {"snapshot-current", "vm", "base"}, "base",
                        CURRENT})
SCENARIO(test_export_internal, {"snapshot-export internal, running", RUNNING, false, false,
                                {"snapshot-export", "vm", "base", "vdb", "@DIR@/out.qcow2"}, "base", EXPORT})
SCENARIO(test_export_external, {"snapshot-export external, running", RUNNING, true, false,
                                {"snapshot-export", "vm", "base", "vdb", "@DIR@/out.qcow2"}, "base", EXPORT})
SCENARIO(test_clone_linked_internal, {"domain-clone linked internal, running", RUNNING, false, false,
                                      {"domain-clone", "vm", "base", "c1", "--start"}, "base", CLONE})
SCENARIO(test_clone_full_external, {"domain-clone --full external, running", RUNNING, true, false,
                                    {"domain-clone", "vm", "base", "c1", "--full"}, "base", CLONE})
SCENARIO(test_clone_with_memory, {"domain-clone --with-memory internal, running", RUNNING, false, false,
                                  {"domain-clone", "vm", "base", "c1", "--with-memory"}, "base", CLONE})

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
        struct scenario sc = {"qemu killed", RUNNING, external, true, {NULL}, "victim", DELETE};
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
    struct scenario sc = {"enospc", RUNNING, false, false, {NULL}, "new", CREATE};
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
    struct scenario sc = {"enospc overlay", RUNNING, true, false, {NULL}, "new", CREATE};
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
    struct scenario sc = {"pending", RUNNING, false, false, {NULL}, "new", CREATE};
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

int main(void)
{
    static struct qt_fixture f = {.cfg = &qt_cfg_two_disks};
    const struct CMUnitTest tests[] = {
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
        cmocka_unit_test_prestate_setup_teardown(test_current, qt_setup, qt_teardown, &f),
        cmocka_unit_test_prestate_setup_teardown(test_export_internal, qt_setup, teardown, &f),
        cmocka_unit_test_prestate_setup_teardown(test_export_external, qt_setup, teardown, &f),
        cmocka_unit_test_prestate_setup_teardown(test_clone_linked_internal, qt_setup, teardown, &f),
        cmocka_unit_test_prestate_setup_teardown(test_clone_full_external, qt_setup, teardown, &f),
        cmocka_unit_test_prestate_setup_teardown(test_clone_with_memory, qt_setup, teardown, &f),
        cmocka_unit_test_prestate_setup_teardown(test_qemu_killed_during_save, qt_setup, qt_teardown, &f),
        cmocka_unit_test_prestate_setup_teardown(test_qemu_killed_during_load, qt_setup, qt_teardown, &f),
        cmocka_unit_test_prestate_setup_teardown(test_qemu_killed_during_commit, qt_setup, qt_teardown, &f),
        cmocka_unit_test_prestate_setup_teardown(test_enospc_metadata, qt_setup, qt_teardown, &f),
        cmocka_unit_test_prestate_setup_teardown(test_enospc_overlay, qt_setup, qt_teardown, &f),
        cmocka_unit_test_prestate_setup_teardown(test_pending_shown_and_refused, qt_setup, qt_teardown, &f),
        cmocka_unit_test(test_totals),
    };
    /* the matrix's scenarios are the tests run_matrix() ends: those named after an operation */
    for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++)
        scenarios_total += strstr(tests[i].name, "qemu_killed") == NULL && strstr(tests[i].name, "enospc") == NULL &&
                           strstr(tests[i].name, "pending") == NULL && strstr(tests[i].name, "totals") == NULL;
    if (getenv("QSNAP_TEST_FILTER")) /* e.g. "*delete_external*" */
        cmocka_set_test_filter(getenv("QSNAP_TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
