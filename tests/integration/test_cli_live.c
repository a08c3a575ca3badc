/* test_cli_live.c: the qsnap command on real QEMU, checked from the guest's side (label integration). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "qemu_harness.h"
#include "qmp.h"
#include "qs_proc.h"
#include "qs_util.h"

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MiB (1024u * 1024u)
#define OFF_A 0u            /* vdb offsets the tests write patterns at */
#define OFF_B (1u * MiB)
#define LEN (64u * 1024u)

struct fixture {
    const struct qh_vm_config *cfg;
    struct qh_vm *vm;
    char *root;     /* qsnap --root */
    char *qsnap;    /* the binary */
    pid_t daemon;   /* a QEMU qsnap started (not the harness's child), killed at teardown */
};

static void check_(int rc, struct qs_error **err, const char *what, const char *file, int line)
{
    if (rc < 0) {
        print_error("%s:%d: %s: %s\n", file, line, what, *err ? (*err)->message : "failed");
        qs_error_clear(err);
        _fail(file, line);
    }
}
#define OK(call) check_((call), &err, #call, __FILE__, __LINE__)

/* Runs qsnap --root ROOT ARGS...; returns its exit status, stdout and stderr in *out / *errout. */
static int qsnap_run(struct fixture *f, char **out, char **errout, ...)
{
    char *argv[32] = {f->qsnap, "--root", f->root};
    struct qs_proc_result res = {0};
    struct qs_error *err = NULL;
    size_t n = 3;
    va_list ap;

    va_start(ap, errout);
    while ((argv[n] = va_arg(ap, char *)) != NULL && n < 30)
        n++;
    va_end(ap);
    check_(qs_proc_run(argv, 120000, 0, &res, &err), &err, "qsnap", __FILE__, __LINE__);
    if (out)
        *out = res.out, res.out = NULL;
    if (errout)
        *errout = res.errout, res.errout = NULL;
    qs_proc_result_release(&res);
    return res.status; /* release frees the strings only */
}

/* Runs qsnap and requires success; returns stdout (caller frees). */
#define QSNAP_OK(f, ...) qsnap_ok_(f, __FILE__, __LINE__, __VA_ARGS__, (char *)NULL)
static char *qsnap_ok_(struct fixture *f, const char *file, int line, ...)
{
    char *argv[32] = {f->qsnap, "--root", f->root};
    struct qs_proc_result res = {0};
    struct qs_error *err = NULL;
    size_t n = 3;
    va_list ap;
    char *out;

    va_start(ap, line);
    while ((argv[n] = va_arg(ap, char *)) != NULL && n < 30)
        n++;
    va_end(ap);
    check_(qs_proc_run(argv, 120000, 0, &res, &err), &err, "qsnap", file, line);
    if (res.status != 0) {
        print_error("%s:%d: qsnap %s %s failed (%d): %s\n", file, line, argv[3], argv[4] ? argv[4] : "",
                    res.status, res.errout);
        _fail(file, line);
    }
    out = res.out;
    res.out = NULL;
    qs_proc_result_release(&res);
    return out;
}

static int setup(void **state)
{
    struct fixture *f = *state;
    struct qs_error *err = NULL;
    const char *build = getenv("QSNAP_BUILD_DIR");

    if (!qh_qemu_available() || !build)
        return 0;
    if (!(f->vm = qh_vm_start(f->cfg, &err))) {
        print_error("cannot start qemu: %s\n", err->message);
        qs_error_free(err);
        return -1;
    }
    f->root = qs_asprintf("%s/root", qh_vm_dir(f->vm));
    f->qsnap = qs_asprintf("%s/cli/qsnap", build);
    f->daemon = -1;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    if (f->daemon > 0)
        kill(f->daemon, SIGKILL);
    qh_vm_free(f->vm);
    free(f->root);
    free(f->qsnap);
    f->vm = NULL;
    f->root = f->qsnap = NULL;
    return 0;
}

static struct fixture *fixture_of(void **state)
{
    struct fixture *f = *state;
    if (!f->vm)
        skip();
    return f;
}

static void attach(struct fixture *f)
{
    free(QSNAP_OK(f, "attach", "vm", "--qmp", qh_vm_socket_path(f->vm)));
}

static char *harness_status(struct fixture *f)
{
    struct qmp_reply *r = NULL;
    struct qs_error *err = NULL;
    char *s;
    OK(qmp_client_execute(qh_vm_qmp(f->vm), "query-status", NULL, &r, &err));
    s = qs_xstrdup(qmp_value_get_string(qmp_reply_value(r), "status"));
    qmp_reply_free(r);
    return s;
}

static void assert_status(struct fixture *f, const char *want)
{
    char *s = harness_status(f);
    assert_string_equal(s, want);
    free(s);
}

static void harness_exec(struct fixture *f, const char *cmd)
{
    struct qs_error *err = NULL;
    OK(qmp_client_execute(qh_vm_qmp(f->vm), cmd, NULL, NULL, &err));
}

static uint64_t counter(struct fixture *f)
{
    struct qs_error *err = NULL;
    uint64_t v = 0;
    OK(qh_vm_read_counter(f->vm, &v, &err));
    return v;
}

/* 1 when node NODE reads PATTERN over [off, off+LEN) through an NBD export of the running QEMU. */
static int disk_is(struct fixture *f, const char *node, uint8_t pattern, uint64_t off)
{
    struct qs_error *err = NULL;
    int r = qh_vm_disk_check(f->vm, node, pattern, off, LEN, &err);
    check_(r, &err, "disk check", __FILE__, __LINE__);
    return r;
}

static void disk_write(struct fixture *f, const char *dev, uint8_t pattern, uint64_t off)
{
    struct qs_error *err = NULL;
    OK(qh_vm_disk_write(f->vm, dev, pattern, off, LEN, &err));
}

/* Internal snapshot names on an image (qemu-img info -U, so it works while QEMU holds it). */
static char *image_tags(const char *path)
{
    char *argv[] = {"qemu-img", "snapshot", "-l", "-U", (char *)path, NULL};
    struct qs_proc_result res = {0};
    struct qs_error *err = NULL;
    char *out;
    check_(qs_proc_run(argv, 30000, 0, &res, &err), &err, "qemu-img", __FILE__, __LINE__);
    assert_int_equal(res.status, 0);
    out = res.out;
    res.out = NULL;
    qs_proc_result_release(&res);
    return out;
}

static bool image_has_tag(const char *path, const char *tag)
{
    char *list = image_tags(path), *line, *save = NULL;
    bool found = false;
    for (line = strtok_r(list, "\n", &save); line && !found; line = strtok_r(NULL, "\n", &save)) {
        char id[64], name[256];
        found = sscanf(line, "%63s %255s", id, name) == 2 && strcmp(name, tag) == 0;
    }
    free(list);
    return found;
}

static void offline_write(const char *path, uint8_t pattern, uint64_t off)
{
    char cmd[128];
    char *argv[] = {"qemu-io", "-f", "qcow2", "-c", cmd, (char *)path, NULL};
    struct qs_proc_result res = {0};
    struct qs_error *err = NULL;
    snprintf(cmd, sizeof(cmd), "write -P 0x%02x %llu %u", pattern, (unsigned long long)off, LEN);
    check_(qs_proc_run(argv, 30000, 0, &res, &err), &err, "qemu-io", __FILE__, __LINE__);
    assert_int_equal(res.status, 0);
    qs_proc_result_release(&res);
}

static int offline_is(const char *path, uint8_t pattern, uint64_t off)
{
    struct qs_error *err = NULL;
    int r = qh_image_check(path, "qcow2", pattern, off, LEN, &err);
    check_(r, &err, "image check", __FILE__, __LINE__);
    return r;
}

/* ------------------------------------------------------------------------------------------------ */

/*
 * The heart of it: a snapshot of a paused guest, then the guest runs on and its disk changes; the revert
 * happens in place (same QEMU process) and the guest sees exactly its old RAM and disk again.
 */
static void test_revert_in_place_ram_and_disk(void **state)
{
    struct fixture *f = fixture_of(state);
    struct qs_error *err = NULL;
    pid_t pid = qh_vm_pid(f->vm);
    uint64_t c0, c1, c2;
    char *out;

    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    attach(f);
    disk_write(f, "vdb", 0xaa, OFF_A);
    harness_exec(f, "stop");
    c0 = counter(f);

    out = QSNAP_OK(f, "snapshot-create-as", "vm", "s1", "before the change");
    assert_string_equal(out, "Domain snapshot s1 created\n");
    free(out);
    assert_status(f, "paused"); /* a save keeps a paused guest paused */
    assert_int_equal(counter(f), c0);

    harness_exec(f, "cont");
    OK(qh_vm_wait_counter_advancing(f->vm, 0, &c1, &err));
    assert_true(c1 > c0);
    disk_write(f, "vdb", 0xbb, OFF_A);
    assert_int_equal(disk_is(f, "vdb", 0xbb, OFF_A), 1);

    out = QSNAP_OK(f, "snapshot-revert", "vm", "s1");
    assert_string_equal(out, "Domain snapshot s1 reverted\n\n");
    free(out);
    assert_int_equal(qh_vm_pid(f->vm), pid); /* in place: no new QEMU */
    assert_status(f, "paused");              /* as the snapshot was */
    c2 = counter(f);
    assert_int_equal(c2, c0); /* RAM is the snapshot's, to the count */
    assert_int_equal(disk_is(f, "vdb", 0xaa, OFF_A), 1);
    assert_int_equal(disk_is(f, "vdb", 0xbb, OFF_A), 0);

    /* --running overrides the snapshot's paused state */
    free(QSNAP_OK(f, "snapshot-revert", "vm", "s1", "--running"));
    assert_status(f, "running");
    OK(qh_vm_wait_counter_advancing(f->vm, 0, &c2, &err));
    assert_true(c2 > c0);
}

/* A snapshot of a running guest records "running"; --paused reverts into a paused guest. */
static void test_running_snapshot_states(void **state)
{
    struct fixture *f = fixture_of(state);
    struct qs_error *err = NULL;
    char *out;

    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    attach(f);
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "--name", "run1"));
    assert_status(f, "running");
    out = QSNAP_OK(f, "snapshot-info", "vm", "run1");
    assert_non_null(strstr(out, "State:          running\n"));
    assert_non_null(strstr(out, "Location:       internal\n"));
    assert_non_null(strstr(out, "Current:        yes\n"));
    free(out);
    free(QSNAP_OK(f, "snapshot-revert", "vm", "run1", "--paused"));
    assert_status(f, "paused");
    free(QSNAP_OK(f, "snapshot-revert", "vm", "run1"));
    assert_status(f, "running");
    out = QSNAP_OK(f, "domstate", "vm");
    assert_string_equal(out, "running\n\n");
    free(out);
}

/* Tags on every qcow2 disk, named as the snapshots; delete re-parents children and removes tags. */
static void test_tags_agree_and_delete_reparents(void **state)
{
    struct fixture *f = fixture_of(state);
    const char *vda = qh_vm_disk_path(f->vm, "vda"), *vdb = qh_vm_disk_path(f->vm, "vdb");
    char *out;

    attach(f);
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "a"));
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "b"));
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "c"));
    assert_true(image_has_tag(vda, "b") && image_has_tag(vdb, "b"));
    out = QSNAP_OK(f, "snapshot-list", "vm", "--parent");
    assert_non_null(strstr(out, " c   "));
    free(out);

    out = QSNAP_OK(f, "snapshot-delete", "vm", "b");
    assert_string_equal(out, "Domain snapshot b deleted\n\n");
    free(out);
    assert_false(image_has_tag(vda, "b"));
    assert_false(image_has_tag(vdb, "b"));
    assert_true(image_has_tag(vda, "a") && image_has_tag(vda, "c"));
    out = QSNAP_OK(f, "snapshot-parent", "vm", "c");
    assert_string_equal(out, "a\n");
    free(out);

    out = QSNAP_OK(f, "snapshot-delete", "vm", "a", "--children");
    free(out);
    assert_false(image_has_tag(vda, "a") || image_has_tag(vda, "c") || image_has_tag(vdb, "c"));
    out = QSNAP_OK(f, "snapshot-list", "vm", "--name");
    assert_string_equal(out, "\n");
    free(out);
}

/* Off: qemu-img snapshots; revert applies the images; from off, a memory snapshot starts QEMU again. */
static void test_offline_and_start_from_off(void **state)
{
    struct fixture *f = fixture_of(state);
    struct qs_error *err = NULL;
    const char *vdb = qh_vm_disk_path(f->vm, "vdb");
    struct qmp_client *c = NULL;
    struct qmp_reply *r = NULL;
    uint64_t c0, got = 0;
    char *out, hmp[64];

    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    attach(f);
    harness_exec(f, "stop");
    c0 = counter(f);
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "mem"));

    out = QSNAP_OK(f, "destroy", "vm");
    assert_string_equal(out, "Domain 'vm' destroyed\n\n");
    free(out);
    OK(qh_vm_wait_exit(f->vm, 10000, NULL, &err));
    out = QSNAP_OK(f, "domstate", "vm");
    assert_string_equal(out, "shut off\n\n");
    free(out);

    offline_write(vdb, 0x11, OFF_B);
    out = QSNAP_OK(f, "snapshot-create-as", "vm", "off1");
    free(out);
    out = QSNAP_OK(f, "snapshot-info", "vm", "off1");
    assert_non_null(strstr(out, "State:          shutoff\n"));
    assert_non_null(strstr(out, "Parent:         mem\n"));
    free(out);
    assert_true(image_has_tag(vdb, "off1"));
    offline_write(vdb, 0x22, OFF_B);
    free(QSNAP_OK(f, "snapshot-revert", "vm", "off1"));
    assert_int_equal(offline_is(vdb, 0x11, OFF_B), 1);
    out = QSNAP_OK(f, "domstate", "vm");
    assert_string_equal(out, "shut off\n\n");
    free(out);

    /* a memory snapshot while off: qsnap starts QEMU from the recorded command line and loads it */
    free(QSNAP_OK(f, "snapshot-revert", "vm", "mem"));
    OK((c = qmp_client_connect(qh_vm_socket_path(f->vm), NULL, &err)) ? 0 : -1);
    f->daemon = qmp_client_peer_pid(c);
    assert_true(f->daemon > 0);
    OK(qmp_client_execute(c, "query-status", NULL, &r, &err));
    {
        /* started with -S, QEMU calls its stopped state prelaunch until the first cont */
        const char *st = qmp_value_get_string(qmp_reply_value(r), "status");
        assert_true(strcmp(st, "paused") == 0 || strcmp(st, "prelaunch") == 0);
    }
    qmp_reply_free(r);
    {
        char *text = NULL;
        unsigned long long lo = 0, hi = 0;
        snprintf(hmp, sizeof(hmp), "xp /2wx 0x%x", QH_COUNTER_ADDR);
        OK(qmp_client_hmp(c, hmp, &text, &err));
        assert_int_equal(sscanf(text, "%*x: %llx %llx", &lo, &hi), 2);
        got = (hi << 32) | lo;
        free(text);
    }
    assert_int_equal(got, c0);
    qmp_client_free(c);
    out = QSNAP_OK(f, "domstate", "vm");
    assert_string_equal(out, "paused\n\n");
    free(out);
    out = QSNAP_OK(f, "destroy", "vm");
    free(out);
    f->daemon = -1;

    out = QSNAP_OK(f, "snapshot-delete", "vm", "off1");
    free(out);
    assert_false(image_has_tag(vdb, "off1"));
}

/* What cannot work is refused before anything changes: metadata, tags and the run state stay. */
static void test_refusals_change_nothing(void **state)
{
    struct fixture *f = fixture_of(state);
    struct qs_error *err = NULL;
    const char *vda = qh_vm_disk_path(f->vm, "vda");
    char *out = NULL, *errout = NULL;

    attach(f);
    /* a raw disk cannot hold an internal snapshot */
    assert_int_equal(qsnap_run(f, &out, &errout, "snapshot-create-as", "vm", "x", NULL), 1);
    assert_string_equal(out, "\n");
    assert_non_null(strstr(errout, "error: disk 'vdc' is raw"));
    free(out);
    free(errout);
    assert_false(image_has_tag(vda, "x"));
    assert_status(f, "running");
    out = QSNAP_OK(f, "snapshot-list", "vm", "--name");
    assert_string_equal(out, "\n");
    free(out);

    /* excluding the raw disk works */
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "ok", "--diskspec", "vdc,snapshot=no"));
    out = QSNAP_OK(f, "snapshot-dumpxml", "vm", "ok");
    assert_non_null(strstr(out, "<disk name='vdc' snapshot='no'/>"));
    assert_non_null(strstr(out, "<disk name='vda' snapshot='internal'/>"));
    free(out);

    /* a duplicate name */
    assert_int_equal(qsnap_run(f, NULL, &errout, "snapshot-create-as", "vm", "ok", "--diskspec", "vdc,snapshot=no",
                               NULL),
                     1);
    assert_string_equal(errout, "error: operation failed: domain moment ok already exists");
    free(errout);

    /* names that would become paths */
    assert_int_equal(qsnap_run(f, NULL, &errout, "snapshot-create-as", "vm", "../evil", "--diskspec",
                               "vdc,snapshot=no", NULL),
                     1);
    assert_non_null(strstr(errout, "must not"));
    free(errout);
    assert_false(image_has_tag(vda, "../evil"));

    /* a tag removed behind qsnap's back: revert refuses and the guest keeps running (no restore-vm) */
    {
        struct qmp_args *a = qmp_args_new();
        qmp_args_set_str(a, "job-id", "behind-qsnaps-back");
        qmp_args_set_str(a, "tag", "ok");
        qmp_args_push_str(qmp_args_set_list(a, "devices"), "vda");
        OK(qmp_job_run(qh_vm_qmp(f->vm), "snapshot-delete", a, "behind-qsnaps-back", NULL, &err));
        qmp_args_free(a);
    }
    assert_int_equal(qsnap_run(f, NULL, &errout, "snapshot-revert", "vm", "ok", NULL), 1);
    assert_non_null(strstr(errout, "error: Failed to revert snapshot ok\nerror: internal snapshot 'ok' not found on disk 'vda'"));
    free(errout);
    assert_status(f, "running");
    out = QSNAP_OK(f, "snapshot-list", "vm", "--name");
    assert_string_equal(out, "ok\n\n");
    free(out);

    /* unknown domain and snapshot, as virsh words them */
    assert_int_equal(qsnap_run(f, NULL, &errout, "snapshot-info", "nodom", "ok", NULL), 1);
    assert_string_equal(errout, "error: failed to get domain 'nodom'");
    free(errout);
    assert_int_equal(qsnap_run(f, NULL, &errout, "snapshot-revert", "vm", "nope", NULL), 1);
    assert_string_equal(errout, "error: Domain snapshot not found: no domain snapshot with matching name 'nope'");
    free(errout);
    /* usage errors exit 2 */
    assert_int_equal(qsnap_run(f, NULL, &errout, "snapshot-list", "vm", "--bogus", NULL), 2);
    assert_string_equal(errout, "error: command 'snapshot-list' doesn't support option --bogus");
    free(errout);
}

/* Every snapshot file qsnap writes is valid against libvirt's schema; the metadata agrees with the images. */
static void test_files_valid_against_libvirt_schema(void **state)
{
    struct fixture *f = fixture_of(state);
    char *dir, *out;
    DIR *d;
    struct dirent *de;
    int checked = 0;

    if (access("/usr/share/libvirt/schemas/domainsnapshot.rng", R_OK) != 0)
        skip();
    attach(f);
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "v1", "--description", "<&'\"> quoted"));
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "v2"));
    harness_exec(f, "stop");
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "v3 paused"));
    dir = qs_asprintf("%s/snapshot/vm", f->root);
    assert_non_null(d = opendir(dir));
    while ((de = readdir(d))) {
        char *path, *argv[] = {"virt-xml-validate", NULL, "domainsnapshot", NULL};
        struct qs_proc_result res = {0};
        struct qs_error *err = NULL;
        if (!qs_str_has_suffix(de->d_name, ".xml"))
            continue;
        path = qs_asprintf("%s/%s", dir, de->d_name);
        argv[1] = path;
        OK(qs_proc_run(argv, 30000, 0, &res, &err));
        if (res.status != 0)
            print_error("%s: %s\n", path, res.errout);
        assert_int_equal(res.status, 0);
        qs_proc_result_release(&res);
        free(path);
        checked++;
    }
    closedir(d);
    free(dir);
    assert_int_equal(checked, 3);
    /* qemu-img's view agrees with the metadata */
    out = QSNAP_OK(f, "snapshot-list", "vm", "--name");
    assert_string_equal(out, "v1\nv2\nv3 paused\n\n");
    free(out);
    {
        char *tags = image_tags(qh_vm_disk_path(f->vm, "vda"));
        assert_non_null(strstr(tags, " v1 "));
        assert_non_null(strstr(tags, " v2 "));
        assert_non_null(strstr(tags, " v3 paused "));
        free(tags);
    }
}

static const struct qh_disk two_disks[] = {
    {.id = "vda", .boot = true},
    {.id = "vdb", .size = 16 * MiB},
};
static const struct qh_disk with_raw[] = {
    {.id = "vda", .boot = true},
    {.id = "vdb", .size = 16 * MiB},
    {.id = "vdc", .format = "raw", .size = 4 * MiB},
};
static struct fixture f_two = {.cfg = &(struct qh_vm_config){.disks = two_disks, .n_disks = 2}};
static struct fixture f_raw = {.cfg = &(struct qh_vm_config){.disks = with_raw, .n_disks = 3}};

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_prestate_setup_teardown(test_revert_in_place_ram_and_disk, setup, teardown, &f_two),
        cmocka_unit_test_prestate_setup_teardown(test_running_snapshot_states, setup, teardown, &f_two),
        cmocka_unit_test_prestate_setup_teardown(test_tags_agree_and_delete_reparents, setup, teardown, &f_two),
        cmocka_unit_test_prestate_setup_teardown(test_offline_and_start_from_off, setup, teardown, &f_two),
        cmocka_unit_test_prestate_setup_teardown(test_refusals_change_nothing, setup, teardown, &f_raw),
        cmocka_unit_test_prestate_setup_teardown(test_files_valid_against_libvirt_schema, setup, teardown, &f_two),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
