/* test_preview_live.c: snapshot-preview / -commit / -undo on real QEMU, checked from the guest's side
 * (label integration). */
#include "qsnap_test.h"

#include "qs_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define POINT "qsnap-before-preview"

/* s1 of a paused guest with 0xaa on vdb; then the guest runs on, vdb gets 0xbb and the guest is paused
 * again: *c_snap is s1's counter, *c_now the counter the preview point must keep. */
static void setup_s1(struct qt_fixture *f, uint64_t *c_snap, uint64_t *c_now)
{
    struct qs_error *err = NULL;

    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    qt_attach(f);
    qt_disk_write(f, "vdb", 0xaa, 0);
    qt_exec(qh_vm_qmp(f->vm), "stop");
    *c_snap = qt_counter(f);
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "s1"));
    qt_exec(qh_vm_qmp(f->vm), "cont");
    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    qt_disk_write(f, "vdb", 0xbb, 0);
    qt_exec(qh_vm_qmp(f->vm), "stop");
    *c_now = qt_counter(f);
    assert_true(*c_now > *c_snap);
}

/* preview shows the snapshot's RAM and disk; undo gives back the state the preview left, to the count. */
static void test_preview_undo(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    const char *vda = qh_vm_disk_path(f->vm, "vda"), *vdb = qh_vm_disk_path(f->vm, "vdb");
    pid_t pid = qh_vm_pid(f->vm);
    uint64_t c_snap, c_now;
    char *out;

    setup_s1(f, &c_snap, &c_now);
    out = QSNAP_OK(f, "snapshot-preview", "vm", "s1");
    assert_string_equal(out, "Domain snapshot s1 previewed\n\n");
    free(out);
    assert_int_equal(qh_vm_pid(f->vm), pid);
    qt_assert_status(qh_vm_qmp(f->vm), "paused");
    assert_int_equal(qt_counter(f), c_snap);
    assert_int_equal(qt_node_reads(f, "vdb", 0xaa, 0), 1);
    /* the point is an ordinary internal snapshot on every disk, in a schema-valid file */
    assert_true(qt_image_has_tag(vda, POINT) && qt_image_has_tag(vdb, POINT));
    out = QSNAP_OK(f, "snapshot-list", "vm", "--name");
    assert_string_equal(out, "qsnap-before-preview\ns1\n\n");
    free(out);
    out = qt_snapshot_xml(f, POINT);
    qt_assert_contains(out, "https://qsnap.dev/xmlns/snapshot/1");
    qt_assert_contains(out, ">s1</qsnap:preview-of>");
    free(out);
    qt_validate_all(f, 2);
    out = QSNAP_OK(f, "snapshot-current", "vm", "--name");
    assert_string_equal(out, "s1\n");
    free(out);

    /* the guest runs a while on the preview and writes; undo forgets all of it */
    qt_exec(qh_vm_qmp(f->vm), "cont");
    qt_disk_write(f, "vdb", 0xcc, 0);
    out = QSNAP_OK(f, "snapshot-undo", "vm");
    assert_string_equal(out, "Domain snapshot s1 preview undone\n\n");
    free(out);
    assert_int_equal(qh_vm_pid(f->vm), pid);
    qt_assert_status(qh_vm_qmp(f->vm), "paused"); /* the point was paused */
    assert_int_equal(qt_counter(f), c_now);
    assert_int_equal(qt_node_reads(f, "vdb", 0xbb, 0), 1);
    assert_false(qt_image_has_tag(vda, POINT) || qt_image_has_tag(vdb, POINT));
    out = QSNAP_OK(f, "snapshot-list", "vm", "--name");
    assert_string_equal(out, "s1\n\n");
    free(out);
    out = QSNAP_OK(f, "snapshot-current", "vm", "--name");
    assert_string_equal(out, "s1\n"); /* current as before the preview */
    free(out);
    qt_validate_all(f, 1);
}

/* commit keeps the previewed state and drops the point; refusals change nothing. */
static void test_preview_commit_and_refusals(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    const char *vdb = qh_vm_disk_path(f->vm, "vdb");
    uint64_t c_snap, c_now;
    char *out;

    setup_s1(f, &c_snap, &c_now);
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "s2"));
    qt_qsnap_fail(f, "domain 'vm' has no snapshot in preview", "snapshot-commit", "vm", (char *)NULL);
    qt_qsnap_fail(f, "domain 'vm' has no snapshot in preview", "snapshot-undo", "vm", (char *)NULL);
    qt_qsnap_fail(f, "no domain snapshot with matching name 'nope'", "snapshot-preview", "vm", "nope", (char *)NULL);
    qt_qsnap_fail(f, "is the preview point", "snapshot-preview", "vm", POINT, (char *)NULL);
    qt_qsnap_fail(f, "failed to get domain 'other'", "snapshot-preview", "other", "s1", (char *)NULL);
    assert_false(qt_image_has_tag(vdb, POINT));

    /* --running: the preview runs whatever the snapshot's state */
    free(QSNAP_OK(f, "snapshot-preview", "vm", "s1", "--running"));
    qt_assert_status(qh_vm_qmp(f->vm), "running");
    qt_qsnap_fail(f, "is previewing snapshot 's1': commit or undo it first", "snapshot-preview", "vm", "s2",
                  (char *)NULL);
    qt_qsnap_fail(f, "is already previewing snapshot 's1'", "snapshot-preview", "vm", "s1", (char *)NULL);
    qt_disk_write(f, "vdb", 0xdd, 0);
    out = QSNAP_OK(f, "snapshot-commit", "vm");
    assert_string_equal(out, "Domain snapshot s1 preview committed\n\n");
    free(out);
    qt_assert_status(qh_vm_qmp(f->vm), "running");
    assert_int_equal(qt_node_reads(f, "vdb", 0xdd, 0), 1); /* the preview's own writes stay */
    assert_false(qt_image_has_tag(vdb, POINT));
    assert_true(qt_image_has_tag(vdb, "s1") && qt_image_has_tag(vdb, "s2"));
    out = QSNAP_OK(f, "snapshot-list", "vm", "--name");
    assert_string_equal(out, "s1\ns2\n\n");
    free(out);
    out = QSNAP_OK(f, "snapshot-current", "vm", "--name");
    assert_string_equal(out, "s1\n");
    free(out);
    qt_validate_all(f, 2);
}

/* The preview cut short right after the point was kept (qsnap SIGKILLed): the point survives, the state says
 * so, and running the preview again finishes it; undo then still returns exactly. */
static void test_preview_interrupted(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    const char *build = getenv("QSNAP_BUILD_DIR");
    char *saved = f->qsnap, *log = qt_path_in(f, "fault.log"), *text, *line, buf[32];
    uint64_t c_snap, c_now;
    long at = 0, n = 0;
    char *out;
    int st;

    setup_s1(f, &c_snap, &c_now);
    /* which step number is "preview point": count the steps of a preview with the log on, then undo it */
    f->qsnap = qs_asprintf("%s/cli/qsnap-fault", build);
    setenv("QSNAP_FAULT_LOG", log, 1);
    free(QSNAP_OK(f, "snapshot-preview", "vm", "s1"));
    unsetenv("QSNAP_FAULT_LOG");
    text = qt_slurp(log);
    for (line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        n++;
        if (strcmp(line, "preview point") == 0)
            at = n;
    }
    free(text);
    assert_true(at > 0);
    free(QSNAP_OK(f, "snapshot-undo", "vm"));
    assert_int_equal(qt_counter(f), c_now);

    snprintf(buf, sizeof(buf), "%ld", at);
    setenv("QSNAP_FAULT_AT", buf, 1);
    st = qt_qsnap_run(f, NULL, NULL, "snapshot-preview", "vm", "s1", (char *)NULL);
    unsetenv("QSNAP_FAULT_AT");
    free(f->qsnap);
    f->qsnap = saved;
    assert_int_equal(st, 137); /* SIGKILL */
    /* the point is there and the VM still on it: commit refuses, the same preview finishes */
    assert_true(qt_image_has_tag(qh_vm_disk_path(f->vm, "vdb"), POINT));
    assert_int_equal(qt_counter(f), c_now);
    qt_qsnap_fail(f, "did not finish: preview it again, or undo", "snapshot-commit", "vm", (char *)NULL);
    free(QSNAP_OK(f, "snapshot-preview", "vm", "s1"));
    assert_int_equal(qt_counter(f), c_snap);
    assert_int_equal(qt_node_reads(f, "vdb", 0xaa, 0), 1);
    out = QSNAP_OK(f, "snapshot-undo", "vm");
    free(out);
    assert_int_equal(qt_counter(f), c_now);
    assert_int_equal(qt_node_reads(f, "vdb", 0xbb, 0), 1);
    out = QSNAP_OK(f, "snapshot-check", "vm");
    free(out);
    free(log);
}

int main(void)
{
    static struct qt_fixture f1 = {.cfg = &qt_cfg_two_disks}, f2 = {.cfg = &qt_cfg_two_disks},
                             f3 = {.cfg = &qt_cfg_two_disks};
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_prestate_setup_teardown(test_preview_undo, qt_setup, qt_teardown, &f1),
        cmocka_unit_test_prestate_setup_teardown(test_preview_commit_and_refusals, qt_setup, qt_teardown, &f2),
        cmocka_unit_test_prestate_setup_teardown(test_preview_interrupted, qt_setup, qt_teardown, &f3),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
