/* test_cli_live.c: the qsnap command on real QEMU, checked from the guest's side (label integration). */
#include "qsnap_test.h"

#include "qs_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MiB (1024u * 1024u)
#define OFF_A 0u            /* vdb offsets the tests write patterns at */
#define OFF_B (1u * MiB)

/* ------------------------------------------------------------------------------------------------ */

/*
 * The heart of it: a snapshot of a paused guest, then the guest runs on and its disk changes; the revert
 * happens in place (same QEMU process) and the guest sees exactly its old RAM and disk again.
 */
static void test_revert_in_place_ram_and_disk(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    struct qs_error *err = NULL;
    pid_t pid = qh_vm_pid(f->vm);
    uint64_t c0, c1, c2;
    char *out;

    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    qt_attach(f);
    qt_disk_write(f, "vdb", 0xaa, OFF_A);
    qt_exec(qh_vm_qmp(f->vm), "stop");
    c0 = qt_counter(f);

    out = QSNAP_OK(f, "snapshot-create-as", "vm", "s1", "before the change");
    assert_string_equal(out, "Domain snapshot s1 created\n");
    free(out);
    qt_assert_status(qh_vm_qmp(f->vm), "paused"); /* a save keeps a paused guest paused */
    assert_int_equal(qt_counter(f), c0);

    qt_exec(qh_vm_qmp(f->vm), "cont");
    OK(qh_vm_wait_counter_advancing(f->vm, 0, &c1, &err));
    assert_true(c1 > c0);
    qt_disk_write(f, "vdb", 0xbb, OFF_A);
    assert_int_equal(qt_node_reads(f, "vdb", 0xbb, OFF_A), 1);

    out = QSNAP_OK(f, "snapshot-revert", "vm", "s1");
    assert_string_equal(out, "Domain snapshot s1 reverted\n\n");
    free(out);
    assert_int_equal(qh_vm_pid(f->vm), pid); /* in place: no new QEMU */
    qt_assert_status(qh_vm_qmp(f->vm), "paused");              /* as the snapshot was */
    c2 = qt_counter(f);
    assert_int_equal(c2, c0); /* RAM is the snapshot's, to the count */
    assert_int_equal(qt_node_reads(f, "vdb", 0xaa, OFF_A), 1);
    assert_int_equal(qt_node_reads(f, "vdb", 0xbb, OFF_A), 0);

    /* --running overrides the snapshot's paused state */
    free(QSNAP_OK(f, "snapshot-revert", "vm", "s1", "--running"));
    qt_assert_status(qh_vm_qmp(f->vm), "running");
    OK(qh_vm_wait_counter_advancing(f->vm, 0, &c2, &err));
    assert_true(c2 > c0);
}

/* A snapshot of a running guest records "running"; --paused reverts into a paused guest. */
static void test_running_snapshot_states(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    struct qs_error *err = NULL;
    char *out;

    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    qt_attach(f);
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "--name", "run1"));
    qt_assert_status(qh_vm_qmp(f->vm), "running");
    out = QSNAP_OK(f, "snapshot-info", "vm", "run1");
    assert_non_null(strstr(out, "State:          running\n"));
    assert_non_null(strstr(out, "Location:       internal\n"));
    assert_non_null(strstr(out, "Current:        yes\n"));
    free(out);
    free(QSNAP_OK(f, "snapshot-revert", "vm", "run1", "--paused"));
    qt_assert_status(qh_vm_qmp(f->vm), "paused");
    free(QSNAP_OK(f, "snapshot-revert", "vm", "run1"));
    qt_assert_status(qh_vm_qmp(f->vm), "running");
    out = QSNAP_OK(f, "domstate", "vm");
    assert_string_equal(out, "running\n\n");
    free(out);
}

/* Tags on every qcow2 disk, named as the snapshots; delete re-parents children and removes tags. */
static void test_tags_agree_and_delete_reparents(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    const char *vda = qh_vm_disk_path(f->vm, "vda"), *vdb = qh_vm_disk_path(f->vm, "vdb");
    char *out;

    qt_attach(f);
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "a"));
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "b"));
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "c"));
    assert_true(qt_image_has_tag(vda, "b") && qt_image_has_tag(vdb, "b"));
    out = QSNAP_OK(f, "snapshot-list", "vm", "--parent");
    assert_non_null(strstr(out, " c   "));
    free(out);

    out = QSNAP_OK(f, "snapshot-delete", "vm", "b");
    assert_string_equal(out, "Domain snapshot b deleted\n\n");
    free(out);
    assert_false(qt_image_has_tag(vda, "b"));
    assert_false(qt_image_has_tag(vdb, "b"));
    assert_true(qt_image_has_tag(vda, "a") && qt_image_has_tag(vda, "c"));
    out = QSNAP_OK(f, "snapshot-parent", "vm", "c");
    assert_string_equal(out, "a\n");
    free(out);

    out = QSNAP_OK(f, "snapshot-delete", "vm", "a", "--children");
    free(out);
    assert_false(qt_image_has_tag(vda, "a") || qt_image_has_tag(vda, "c") || qt_image_has_tag(vdb, "c"));
    out = QSNAP_OK(f, "snapshot-list", "vm", "--name");
    assert_string_equal(out, "\n");
    free(out);
}

/* Off: qemu-img snapshots; revert applies the images; from off, a memory snapshot starts QEMU again. */
static void test_offline_and_start_from_off(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    struct qs_error *err = NULL;
    const char *vdb = qh_vm_disk_path(f->vm, "vdb");
    struct qmp_client *c = NULL;
    struct qmp_reply *r = NULL;
    uint64_t c0, got = 0;
    char *out, hmp[64];

    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    qt_attach(f);
    qt_exec(qh_vm_qmp(f->vm), "stop");
    c0 = qt_counter(f);
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "mem"));

    out = QSNAP_OK(f, "destroy", "vm");
    assert_string_equal(out, "Domain 'vm' destroyed\n\n");
    free(out);
    OK(qh_vm_wait_exit(f->vm, 10000, NULL, &err));
    out = QSNAP_OK(f, "domstate", "vm");
    assert_string_equal(out, "shut off\n\n");
    free(out);

    qt_offline_write(vdb, 0x11, OFF_B);
    out = QSNAP_OK(f, "snapshot-create-as", "vm", "off1");
    free(out);
    out = QSNAP_OK(f, "snapshot-info", "vm", "off1");
    assert_non_null(strstr(out, "State:          shutoff\n"));
    assert_non_null(strstr(out, "Parent:         mem\n"));
    free(out);
    assert_true(qt_image_has_tag(vdb, "off1"));
    qt_offline_write(vdb, 0x22, OFF_B);
    free(QSNAP_OK(f, "snapshot-revert", "vm", "off1"));
    assert_int_equal(qt_image_is(vdb, "qcow2", 0x11, OFF_B), 1);
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
    assert_false(qt_image_has_tag(vdb, "off1"));
}

/* What cannot work is refused before anything changes: metadata, tags and the run state stay. */
static void test_refusals_change_nothing(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    struct qs_error *err = NULL;
    const char *vda = qh_vm_disk_path(f->vm, "vda");
    char *out = NULL, *errout = NULL;

    qt_attach(f);
    /* a raw disk cannot hold an internal snapshot */
    assert_int_equal(qt_qsnap_run(f, &out, &errout, "snapshot-create-as", "vm", "x", NULL), 1);
    assert_string_equal(out, "\n");
    assert_non_null(strstr(errout, "error: disk 'vdc' is raw"));
    free(out);
    free(errout);
    assert_false(qt_image_has_tag(vda, "x"));
    qt_assert_status(qh_vm_qmp(f->vm), "running");
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
    assert_int_equal(qt_qsnap_run(f, NULL, &errout, "snapshot-create-as", "vm", "ok", "--diskspec", "vdc,snapshot=no",
                               NULL),
                     1);
    assert_string_equal(errout, "error: operation failed: domain moment ok already exists");
    free(errout);

    /* names that would become paths */
    assert_int_equal(qt_qsnap_run(f, NULL, &errout, "snapshot-create-as", "vm", "../evil", "--diskspec",
                               "vdc,snapshot=no", NULL),
                     1);
    assert_non_null(strstr(errout, "must not"));
    free(errout);
    assert_false(qt_image_has_tag(vda, "../evil"));

    /* a tag removed behind qsnap's back: revert refuses and the guest keeps running (no restore-vm) */
    {
        struct qmp_args *a = qmp_args_new();
        qmp_args_set_str(a, "job-id", "behind-qsnaps-back");
        qmp_args_set_str(a, "tag", "ok");
        qmp_args_push_str(qmp_args_set_list(a, "devices"), "vda");
        OK(qmp_job_run(qh_vm_qmp(f->vm), "snapshot-delete", a, "behind-qsnaps-back", NULL, &err));
        qmp_args_free(a);
    }
    assert_int_equal(qt_qsnap_run(f, NULL, &errout, "snapshot-revert", "vm", "ok", NULL), 1);
    assert_non_null(strstr(errout, "error: Failed to revert snapshot ok\nerror: internal snapshot 'ok' not found on disk 'vda'"));
    free(errout);
    qt_assert_status(qh_vm_qmp(f->vm), "running");
    out = QSNAP_OK(f, "snapshot-list", "vm", "--name");
    assert_string_equal(out, "ok\n\n");
    free(out);

    /* unknown domain and snapshot, as virsh words them */
    assert_int_equal(qt_qsnap_run(f, NULL, &errout, "snapshot-info", "nodom", "ok", NULL), 1);
    assert_string_equal(errout, "error: failed to get domain 'nodom'");
    free(errout);
    assert_int_equal(qt_qsnap_run(f, NULL, &errout, "snapshot-revert", "vm", "nope", NULL), 1);
    assert_string_equal(errout, "error: Domain snapshot not found: no domain snapshot with matching name 'nope'");
    free(errout);
    /* usage errors exit 2 */
    assert_int_equal(qt_qsnap_run(f, NULL, &errout, "snapshot-list", "vm", "--bogus", NULL), 2);
    assert_string_equal(errout, "error: command 'snapshot-list' doesn't support option --bogus");
    free(errout);
}

/* Every snapshot file qsnap writes is valid against libvirt's schema; the metadata agrees with the images. */
static void test_files_valid_against_libvirt_schema(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    char *out;

    if (!qt_schema_available())
        qt_skip_missing("libvirt's schemas, virt-xml-validate or xmllint is missing (packages libvirt0, "
                        "libvirt-clients, libxml2-utils)");
    qt_attach(f);
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "v1", "--description", "<&'\"> quoted"));
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "v2"));
    qt_exec(qh_vm_qmp(f->vm), "stop");
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "v3 paused"));
    qt_validate_all(f, 3);
    /* qemu-img's view agrees with the metadata */
    out = QSNAP_OK(f, "snapshot-list", "vm", "--name");
    assert_string_equal(out, "v1\nv2\nv3 paused\n\n");
    free(out);
    {
        char *tags = qt_image_tags(qh_vm_disk_path(f->vm, "vda"));
        assert_non_null(strstr(tags, " v1 "));
        assert_non_null(strstr(tags, " v2 "));
        assert_non_null(strstr(tags, " v3 paused "));
        free(tags);
    }
}

static const struct qh_disk with_raw[] = {
    {.id = "vda", .boot = true},
    {.id = "vdb", .size = 16 * MiB},
    {.id = "vdc", .format = "raw", .size = 4 * MiB},
};
static struct qt_fixture f_two = {.cfg = &qt_cfg_two_disks};
static struct qt_fixture f_raw = {.cfg = &(struct qh_vm_config){.disks = with_raw, .n_disks = 3}};

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_prestate_setup_teardown(test_revert_in_place_ram_and_disk, qt_setup, qt_teardown, &f_two),
        cmocka_unit_test_prestate_setup_teardown(test_running_snapshot_states, qt_setup, qt_teardown, &f_two),
        cmocka_unit_test_prestate_setup_teardown(test_tags_agree_and_delete_reparents, qt_setup, qt_teardown, &f_two),
        cmocka_unit_test_prestate_setup_teardown(test_offline_and_start_from_off, qt_setup, qt_teardown, &f_two),
        cmocka_unit_test_prestate_setup_teardown(test_refusals_change_nothing, qt_setup, qt_teardown, &f_raw),
        cmocka_unit_test_prestate_setup_teardown(test_files_valid_against_libvirt_schema, qt_setup, qt_teardown,
                                                 &f_two),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
