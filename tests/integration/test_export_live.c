/* test_export_live.c: snapshot-export on real QEMU - a disk as it was at an internal or external snapshot,
 * exported while the guest keeps writing to it, paused, or shut off; refusals that leave nothing behind
 * (integration). */
#include "qsnap_test.h"

#include "qs_proc.h"
#include "qs_util.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#define MiB (1024u * 1024u)
#define DATA (16u * MiB) /* vdb's first 16 MiB hold the snapshot's pattern */
#define SMALL (2u * MiB)  /* what later writes change */
#define VDB (32u * MiB)

static const struct qh_disk big_disks[] = {
    {.id = "vda", .boot = true},
    {.id = "vdb", .size = VDB},
};
static const struct qh_vm_config cfg = {.disks = big_disks, .n_disks = 2};

/* Everything under DIR, as "name size" lines. Caller frees. */
static char *listing(const char *dir)
{
    char *argv[] = {"find", (char *)dir, "-printf", "%P %s\n", NULL};
    struct qs_proc_result res = {0};
    struct qs_error *err = NULL;

    OK(qs_proc_run(argv, 10000, 0, &res, &err));
    free(res.errout);
    return res.out;
}

/* The exported image: FORMAT, no backing file, PATTERN over the first LEN bytes and zeros after DATA. */
static void assert_export_len(const char *path, const char *format, uint8_t pattern, uint64_t len)
{
    struct qs_error *err = NULL;
    char *backing = qt_backing_of(path);

    assert_null(backing);
    assert_int_equal(qh_image_check(path, format, pattern, 0, len, &err), 1);
    assert_int_equal(qh_image_check(path, format, 0x00, DATA, VDB - DATA, &err), 1);
    if (err)
        print_error("%s\n", err->message);
    assert_null(err);
}

static void assert_export(const char *path, const char *format, uint8_t pattern)
{
    assert_export_len(path, format, pattern, DATA);
}

/* vdb holds 0x11 over its first LEN bytes. */
static void prepare_len(struct qt_fixture *f, uint64_t len)
{
    struct qs_error *err = NULL;

    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    qt_attach(f);
    OK(qh_vm_disk_write(f->vm, "vdb", 0x11, 0, len, &err));
}

static void prepare(struct qt_fixture *f)
{
    prepare_len(f, DATA);
}

/* ---- the guest writes the whole time ---- */

struct writer {
    struct qh_vm *vm;
    atomic_bool stop, exporting;
    atomic_uint total, during;
    int failed;
};

static void *writer_run(void *opaque)
{
    struct writer *w = opaque;
    struct qs_error *err = NULL;
    uint64_t off = 0;

    while (!atomic_load(&w->stop)) {
        if (qh_vm_disk_write(w->vm, "vdb", 0x22, off, 256u * 1024u, &err) < 0) {
            w->failed = 1;
            qs_error_clear(&err);
            break;
        }
        atomic_fetch_add(&w->total, 1);
        if (atomic_load(&w->exporting))
            atomic_fetch_add(&w->during, 1);
        off = (off + 3u * MiB + 256u * 1024u) % DATA;
    }
    return NULL;
}

static void test_export_internal_while_guest_writes(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    char *out = qt_path_in(f, "vdb-s1.qcow2"), *json, *errout = NULL;
    struct writer w = {.vm = f->vm};
    pthread_t th;
    struct stat st;
    int st_rc;

    prepare(f);
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "s1"));
    assert_int_equal(pthread_create(&th, NULL, writer_run, &w), 0);
    while (atomic_load(&w.total) < 3)
        usleep(1000);
    atomic_store(&w.exporting, true);
    st_rc = qt_qsnap_run(f, &json, &errout, "snapshot-export", "vm", "s1", "--disk", "vdb", "--to", out, "--json",
                         (char *)NULL);
    atomic_store(&w.exporting, false);
    atomic_store(&w.stop, true);
    pthread_join(th, NULL);
    if (st_rc != 0)
        print_error("export: %s\n", errout);
    assert_int_equal(st_rc, 0);
    assert_int_equal(w.failed, 0);
    print_message("guest writes during the export: %u (of %u)\n", w.during, w.total);
    assert_true(w.during > 0);
    /* the guest's disk moved on; the export has the snapshot's bytes, every one of them */
    assert_int_equal(qt_guest_reads(f, "vdb", 0x22, 0), 1);
    assert_export(out, "qcow2", 0x11);
    assert_int_equal(stat(out, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    qt_assert_contains(json, "\"snapshot\": \"s1\"");
    qt_assert_contains(json, "\"format\": \"qcow2\"");
    qt_assert_contains(json, "\"virtual_size\": 33554432");
    qt_assert_contains(json, "\"time_ms\": ");
    {
        char *want = qs_asprintf("\"size\": %lld", (long long)st.st_size);
        qt_assert_contains(json, want);
        free(want);
    }
    qt_assert_status(qh_vm_qmp(f->vm), "running");
    free(json);
    free(errout);
    free(out);
}

/* ---- external snapshots; raw and compressed; paused and shut off ---- */

static void test_export_external_raw_compressed(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    char *raw = qt_path_in(f, "e1.raw"), *comp = qt_path_in(f, "e1.qcow2"), *boot = qt_path_in(f, "boot.qcow2");
    char *s0 = qt_path_in(f, "s0.qcow2"), *msg;
    struct qs_error *err = NULL;

    prepare_len(f, SMALL);
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "s0"));
    OK(qh_vm_disk_write(f->vm, "vdb", 0x33, 0, SMALL, &err));
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "e1", "--disk-only"));
    OK(qh_vm_disk_write(f->vm, "vdb", 0x44, 0, SMALL, &err));
    msg = QSNAP_OK(f, "snapshot-export", "vm", "e1", "--disk", "vdb", "--to", raw, "--format", "raw");
    qt_assert_contains(msg, "Domain snapshot e1 disk vdb exported to ");
    free(msg);
    assert_export_len(raw, "raw", 0x33, SMALL);
    free(QSNAP_OK(f, "snapshot-export", "vm", "e1", "--disk", "vdb", "--to", comp, "--compress"));
    assert_export_len(comp, "qcow2", 0x33, SMALL);
    /* the boot disk too: its boot sector is there */
    free(QSNAP_OK(f, "snapshot-export", "vm", "e1", "--disk", "vda", "--to", boot));
    assert_null(qt_backing_of(boot));
    /* an internal snapshot whose tag the external one froze under its overlay */
    free(QSNAP_OK(f, "snapshot-export", "vm", "s0", "vdb", s0));
    assert_export_len(s0, "qcow2", 0x11, SMALL);

    /* paused: exported, and still paused */
    qt_exec(qh_vm_qmp(f->vm), "stop");
    unlink(s0);
    free(QSNAP_OK(f, "snapshot-export", "vm", "s0", "--disk", "vdb", "--to", s0));
    assert_export_len(s0, "qcow2", 0x11, SMALL);
    qt_assert_status(qh_vm_qmp(f->vm), "paused");
    /* shut off */
    OK(qh_vm_stop(f->vm, 0, &err));
    unlink(raw);
    free(QSNAP_OK(f, "snapshot-export", "vm", "e1", "--disk", "vdb", "--to", raw, "--format", "raw"));
    assert_export_len(raw, "raw", 0x33, SMALL);
    free(raw), free(comp), free(boot), free(s0);
}

/* ---- refusals: nothing written, nothing left ---- */

static void test_export_refused(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    char *dir = qt_path_in(f, "out"), *file = qt_path_in(f, "out/x.qcow2"), *before, *after;
    char *mine = qt_path_in(f, "out/mine");

    prepare_len(f, SMALL);
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "s1"));
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "s2", "--diskspec", "vdb,snapshot=no"));
    assert_int_equal(mkdir(dir, 0700), 0);
    {
        int fd = open(mine, O_WRONLY | O_CREAT | O_EXCL, 0644);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, "keep", 4), 4);
        close(fd);
    }
    before = listing(dir);
    qt_qsnap_fail(f, "file '", "snapshot-export", "vm", "s1", "--disk", "vdb", "--to", mine, (char *)NULL);
    qt_qsnap_fail(f, "snapshot 's2' does not hold disk 'vdb'", "snapshot-export", "vm", "s2", "--disk", "vdb",
                  "--to", file, (char *)NULL);
    qt_qsnap_fail(f, "snapshot 's1' does not hold disk 'vdz'", "snapshot-export", "vm", "s1", "--disk", "vdz",
                  "--to", file, (char *)NULL);
    qt_qsnap_fail(f, "no domain snapshot with matching name 'nope'", "snapshot-export", "vm", "nope", "--disk",
                  "vdb", "--to", file, (char *)NULL);
    qt_qsnap_fail(f, "compression needs the qcow2 format", "snapshot-export", "vm", "s1", "--disk", "vdb", "--to",
                  file, "--format", "raw", "--compress", (char *)NULL);
    qt_qsnap_fail(f, "unsupported export format 'vmdk'", "snapshot-export", "vm", "s1", "--disk", "vdb", "--to",
                  file, "--format", "vmdk", (char *)NULL);
    qt_qsnap_fail(f, "failed to get domain 'nodom'", "snapshot-export", "nodom", "s1", "--disk", "vdb", "--to",
                  file, (char *)NULL);
    after = listing(dir);
    assert_string_equal(before, after);
    {
        char *kept = qt_slurp(mine);
        assert_string_equal(kept, "keep");
        free(kept);
    }
    qt_assert_status(qh_vm_qmp(f->vm), "running");
    free(before), free(after), free(dir), free(file), free(mine);
}

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

/* Too little room: refused before anything is written; and room taken away while the copy runs (the fault
 * build holds still after its "prepare" step): qemu-img's ENOSPC, and the half-written temporary removed. */
static void test_export_no_space(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    char *mnt = qt_path_in(f, "small"), *file = qt_path_in(f, "small/x.qcow2"), *out = NULL, *errout = NULL;
    char *filler = qt_path_in(f, "small/filler"), *errfile = qt_path_in(f, "fault.err"), *bin, *before;
    pid_t child;
    int st, status = 0;

    if (!tiny_fs(mnt, "4m")) {
        free(mnt), free(file), free(filler), free(errfile);
        qt_skip_missing("cannot mount a tmpfs (needs root)");
    }
    prepare_len(f, SMALL);
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "s1"));
    before = listing(mnt);
    st = qt_qsnap_run(f, &out, &errout, "snapshot-export", "vm", "s1", "--disk", "vdb", "--to", file, (char *)NULL);
    assert_int_equal(st, 1);
    qt_assert_contains(errout, "not enough space in '");
    qt_assert_contains(errout, "No space left on device");
    print_message("refused: %s", errout);
    free(out), free(errout);
    out = errout = NULL;
    {
        char *after = listing(mnt);
        assert_string_equal(before, after);
        free(after);
    }
    umount2(mnt, MNT_DETACH);
    /* room at the check, none during the copy */
    assert_true(tiny_fs(mnt, "16m"));
    bin = qs_asprintf("%s/cli/qsnap-fault", getenv("QSNAP_BUILD_DIR"));
    qt_fault_hold(f, "2"); /* after "intent" and "prepare", until the file system is full */
    child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        if (!freopen("/dev/null", "w", stdout) || !freopen(errfile, "w", stderr))
            _exit(126);
        execl(bin, bin, "--root", f->root, "snapshot-export", "vm", "s1", "--disk", "vdb", "--to", file,
              (char *)NULL);
        _exit(127);
    }
    qt_fault_wait_held(f, 2);
    {
        char *argv[] = {"dd", "if=/dev/zero", NULL, "bs=1M", "status=none", NULL};
        struct qs_proc_result res = {0};
        struct qs_error *err = NULL;
        argv[2] = qs_asprintf("of=%s", filler);
        OK(qs_proc_run(argv, 20000, 0, &res, &err)); /* until the file system is full */
        qs_proc_result_release(&res);
        free(argv[2]);
    }
    qt_fault_release(f);
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 1);
    errout = qt_slurp(errfile);
    qt_assert_contains(errout, "No space left on device");
    print_message("full during the copy: %s", errout);
    unlink(filler);
    {
        char *after = listing(mnt);
        assert_string_equal(before, after); /* no temporary, no file */
        free(after);
    }
    assert_false(qt_intent_pending(f, "vm"));
    qt_assert_status(qh_vm_qmp(f->vm), "running");
    umount2(mnt, MNT_DETACH);
    free(errout), free(before), free(bin), free(mnt), free(file), free(filler), free(errfile);
}

/* The domain lock is held for the whole copy: the snapshot cannot be deleted under it. */
static void test_export_holds_lock(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    char *file = qt_path_in(f, "x.qcow2"), *bin = qs_asprintf("%s/cli/qsnap-fault", getenv("QSNAP_BUILD_DIR"));
    char *out = NULL, *errout = NULL;
    pid_t child;
    int st, status = 0;

    prepare_len(f, SMALL);
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "s1"));
    qt_fault_hold(f, "2"); /* inside the copy, until the delete was refused */
    child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        if (!freopen("/dev/null", "w", stdout))
            _exit(126);
        execl(bin, bin, "--root", f->root, "snapshot-export", "vm", "s1", "--disk", "vdb", "--to", file,
              (char *)NULL);
        _exit(127);
    }
    qt_fault_wait_held(f, 2);
    st = qt_qsnap_run(f, &out, &errout, "--lock-timeout", "200", "snapshot-delete", "vm", "s1", (char *)NULL);
    assert_int_equal(st, 1);
    qt_assert_contains(errout, "is running an export of snapshot 's1'");
    qt_fault_release(f);
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_export_len(file, "qcow2", 0x11, SMALL);
    free(out), free(errout), free(file), free(bin);
}

int main(void)
{
    static struct qt_fixture f = {.cfg = &cfg};
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_prestate_setup_teardown(test_export_internal_while_guest_writes, qt_setup, qt_teardown, &f),
        cmocka_unit_test_prestate_setup_teardown(test_export_external_raw_compressed, qt_setup, qt_teardown, &f),
        cmocka_unit_test_prestate_setup_teardown(test_export_refused, qt_setup, qt_teardown, &f),
        cmocka_unit_test_prestate_setup_teardown(test_export_no_space, qt_setup, qt_teardown, &f),
        cmocka_unit_test_prestate_setup_teardown(test_export_holds_lock, qt_setup, qt_teardown, &f),
    };
    if (getenv("QSNAP_TEST_FILTER"))
        cmocka_set_test_filter(getenv("QSNAP_TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
