/* test_service_clone.c: export, clone and the QEMU behind a VM through qsnapd, on real QEMU over real HTTP - the
 * exported image holds the snapshot's bytes, a clone started from the snapshot's RAM counts on from it - and
 * qsnap --connect prints what qsnap prints, byte for byte, for these commands and for schedules, prune, protect
 * and the event log on a real VM (label integration). */
#include "svc_test.h"

#include "qs_proc.h"
#include "qs_util.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static struct st_daemon daemon_;

static void start_service(struct qt_fixture *f)
{
    memset(&daemon_, 0, sizeof(daemon_));
    daemon_.record = qs_asprintf("%s/replies", qh_vm_dir(f->vm));
    assert_int_equal(mkdir(daemon_.record, 0700), 0);
    /* no runner: a schedule the test sets must not fire between the two halves of a comparison */
    st_start(&daemon_, "qsnapd", f->root, qh_vm_dir(f->vm), (const char *const[]){"--no-scheduler", NULL});
}

/* qsnap ARGS directly and through qsnapd: the same bytes and status. Returns the status; *out gets stdout. */
#define BOTH(f, out, ...) st_qsnap_both((f), &daemon_, (out), __VA_ARGS__, (char *)NULL)

/* A line of TEXT starting with PREFIX removed (a measured time), in place. */
static void drop_line(char *text, const char *prefix)
{
    char *p = strstr(text, prefix), *nl;

    if (p && (nl = strchr(p, '\n')))
        memmove(p, nl + 1, strlen(nl + 1) + 1);
}

static void test_export_clone(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    struct qs_error *err = NULL;
    struct st_reply r;
    struct qmp_client *c;
    json_object *t, *res;
    char *out, *file = qt_path_in(f, "e.qcow2"), *raw = qt_path_in(f, "e.raw"), *body;
    uint64_t at;
    time_t s2_at;

    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    qt_attach(f);
    /* s1 of the paused guest with 0xaa on vdb; then the guest goes on with 0xbb */
    qt_disk_write(f, "vdb", 0xaa, 0);
    qt_exec(qh_vm_qmp(f->vm), "stop");
    at = qt_counter(f);
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "s1"));
    qt_exec(qh_vm_qmp(f->vm), "cont");
    qt_disk_write(f, "vdb", 0xbb, 0);
    start_service(f);

    /* the QEMU behind the VM */
    assert_int_equal(BOTH(f, &out, "version", "--domain", "vm", "--features"), 0);
    qt_assert_contains(out, "Running hypervisor: QEMU ");
    qt_assert_contains(out, "QEMU features used by qsnap:");
    free(out);
    st_http(&daemon_, "GET", "/api/vms/vm/qemu", NULL, NULL, &r);
    res = st_expect(&r, 200);
    assert_non_null(st_str(res, "version"));
    assert_true(json_object_is_type(json_object_object_get(res, "features"), json_type_array));
    st_reply_release(&r);
    assert_int_equal(BOTH(f, NULL, "version", "--domain", "nope"), 1);

    /* export while the guest runs: the same words either way, and the image holds s1's bytes, not the 0xbb after */
    {
        struct qs_proc_result a, b;
        assert_int_equal(st_qsnap_run(f, NULL, &a, "snapshot-export", "vm", "s1", "--disk", "vdb", "--to", file, NULL),
                         0);
        assert_int_equal(qt_image_is(file, "qcow2", 0xaa, 0), 1);
        unlink(file);
        assert_int_equal(st_qsnap_run(f, &daemon_, &b, "snapshot-export", "vm", "s1", "--disk", "vdb", "--to", file,
                                      NULL),
                         0);
        assert_string_equal(a.out, b.out);
        assert_string_equal(a.errout, b.errout);
        assert_int_equal(qt_image_is(file, "qcow2", 0xaa, 0), 1);
        assert_null(qt_backing_of(file));
        qs_proc_result_release(&a);
        qs_proc_result_release(&b);
    }
    /* what the engine refuses, refused in the same words: the file exists, no such disk, format, snapshot */
    assert_int_equal(BOTH(f, NULL, "snapshot-export", "vm", "s1", "--disk", "vdb", "--to", file), 1);
    assert_int_equal(BOTH(f, NULL, "snapshot-export", "vm", "s1", "--disk", "vdz", "--to", raw), 1);
    assert_int_equal(BOTH(f, NULL, "snapshot-export", "vm", "s1", "--disk", "vdb", "--to", raw, "--format", "vmdk"), 1);
    assert_int_equal(BOTH(f, NULL, "snapshot-export", "vm", "s1", "--disk", "vdb", "--to", raw, "--format", "raw",
                          "--compress"),
                     1);
    assert_int_equal(BOTH(f, NULL, "snapshot-export", "vm", "nope", "--disk", "vdb", "--to", raw), 1);
    assert_int_equal(BOTH(f, NULL, "snapshot-export", "vm", "a/b", "--disk", "vdb", "--to", raw), 1);
    assert_false(qt_exists(raw));
    /* --json: the same but for the time it took */
    {
        struct qs_proc_result a, b;
        assert_int_equal(st_qsnap_run(f, NULL, &a, "snapshot-export", "vm", "s1", "--disk", "vdb", "--to", raw,
                                      "--format", "raw", "--json", NULL),
                         0);
        unlink(raw);
        assert_int_equal(st_qsnap_run(f, &daemon_, &b, "snapshot-export", "vm", "s1", "--disk", "vdb", "--to", raw,
                                      "--format", "raw", "--json", NULL),
                         0);
        drop_line(a.out, "  \"time_ms\": ");
        drop_line(b.out, "  \"time_ms\": ");
        assert_string_equal(a.out, b.out);
        qt_assert_contains(b.out, "\"virtual_size\": 16777216,");
        assert_int_equal(qt_image_is(raw, "raw", 0xaa, 0), 1);
        qs_proc_result_release(&a);
        qs_proc_result_release(&b);
    }
    /* the API's own task: 'to' relative is the engine's refusal, the result names the file */
    st_http(&daemon_, "POST", "/api/vms/vm/snapshots/s1/export", "{\"disk\":\"vdb\",\"to\":\"rel.qcow2\"}", NULL, &r);
    st_expect(&r, 202);
    t = st_task_wait(&daemon_, r.location);
    assert_string_equal(st_str(t, "state"), "failed");
    assert_string_equal(st_str(json_object_object_get(t, "error"), "message"),
                        "export file 'rel.qcow2' must be an absolute file path");
    json_object_put(t);
    st_reply_release(&r);
    unlink(file);
    body = qs_asprintf("{\"disk\":\"vdb\",\"to\":\"%s\",\"compress\":true}", file);
    t = st_task(&daemon_, "POST", "/api/vms/vm/snapshots/s1/export", body, "succeeded");
    res = json_object_object_get(t, "result");
    assert_string_equal(st_str(res, "file"), file);
    assert_true(json_object_get_boolean(json_object_object_get(res, "compressed")));
    assert_int_equal(json_object_get_int64(json_object_object_get(res, "virtual_size")), 16 << 20);
    assert_true(json_object_get_int64(json_object_object_get(res, "size")) > 0);
    assert_string_equal(st_str(t, "kind"), "export");
    json_object_put(t);
    free(body);
    assert_int_equal(qt_image_is(file, "qcow2", 0xaa, 0), 1);
    st_http(&daemon_, "POST", "/api/vms/vm/snapshots/s1/export", "{\"to\":\"/tmp/x\"}", NULL, &r);
    st_expect(&r, 400);
    st_reply_release(&r);
    st_http(&daemon_, "POST", "/api/vms/vm/snapshots/s1/export", "{\"disk\":\"vdb\",\"to\":\"/tmp/x\",\"mode\":1}",
            NULL, &r);
    st_expect(&r, 400);
    st_reply_release(&r);

    /* clone: the same words either way (c1 directly, c2 through qsnapd) */
    {
        struct qs_proc_result a, b;
        assert_int_equal(st_qsnap_run(f, NULL, &a, "domain-clone", "vm", "s1", "c1", NULL), 0);
        assert_int_equal(st_qsnap_run(f, &daemon_, &b, "domain-clone", "vm", "s1", "c2", NULL), 0);
        assert_string_equal(a.out, "Domain 'c1' cloned from snapshot s1 of domain 'vm'\n\n");
        assert_string_equal(b.out, "Domain 'c2' cloned from snapshot s1 of domain 'vm'\n\n");
        qs_proc_result_release(&a);
        qs_proc_result_release(&b);
    }
    assert_int_equal(BOTH(f, NULL, "domain-clone", "vm", "s1", "c1"), 1);   /* exists */
    assert_int_equal(BOTH(f, NULL, "domain-clone", "vm", "nope", "c9"), 1); /* no snapshot */
    assert_int_equal(BOTH(f, NULL, "domain-clone", "vm", "s1", ".c9"), 1);  /* a name that is no file name */
    assert_int_equal(BOTH(f, &out, "domstate", "c2"), 0);
    assert_string_equal(out, "shut off\n\n");
    free(out);
    /* a fork of the paused snapshot through the API: the clone holds s1's RAM to the count, then counts on, and
     * its disk is s1's while the original's is not */
    t = st_task(&daemon_, "POST", "/api/vms/vm/snapshots/s1/clone", "{\"name\":\"c3\",\"with_memory\":true}",
                "succeeded");
    assert_string_equal(st_str(json_object_object_get(t, "result"), "vm"), "c3");
    assert_string_equal(st_str(t, "kind"), "clone");
    json_object_put(t);
    c = qt_clone_client(f, "c3");
    qt_assert_status(c, "paused");
    assert_int_equal(qt_client_counter(c, true), at);
    qt_exec(c, "cont");
    qt_client_counter_advances(c);
    qmp_client_free(c);
    assert_int_equal(qt_guest_reads(f, "vdb", 0xbb, 0), 1);
    {
        char *img = qt_path_in(f, "c3-vdb.qcow2");
        assert_int_equal(qt_image_is(img, "qcow2", 0xaa, 0), 1);
        free(img);
    }
    st_http(&daemon_, "POST", "/api/vms/vm/snapshots/s1/clone", "{\"name\":\"x/y\"}", NULL, &r);
    qt_assert_contains(st_str(st_expect(&r, 400), "message"), "must not contain '/'");
    st_reply_release(&r);
    st_http(&daemon_, "POST", "/api/vms/vm/snapshots/s1/clone", "{\"name\":\"c4\",\"full\":true,\"linked\":true}",
            NULL, &r);
    st_expect(&r, 400);
    st_reply_release(&r);
    st_http(&daemon_, "GET", "/api/vms/c3/qemu", NULL, NULL, &r);
    st_expect(&r, 200);
    st_reply_release(&r);
    st_http(&daemon_, "GET", "/api/vms/c2/qemu", NULL, NULL, &r);
    qt_assert_contains(st_str(st_expect(&r, 409), "message"), "is not running");
    st_reply_release(&r);

    /* qsnap's own commands on the real VM, byte for byte both ways (each pair leaves the state as the second
     * found it: setting the same again, reads, refusals) */
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "s2"));
    s2_at = time(NULL);
    assert_int_equal(BOTH(f, NULL, "schedule-set", "vm", "h", "--cron", "@hourly", "--keep-last", "1"), 0);
    assert_int_equal(BOTH(f, NULL, "schedule-list"), 0);
    assert_int_equal(BOTH(f, NULL, "schedule-list", "vm", "--json"), 0);
    assert_int_equal(BOTH(f, NULL, "schedule-remove", "vm", "nope"), 1);
    assert_int_equal(BOTH(f, NULL, "schedule-run", "vm", "--due"), 0);
    assert_int_equal(BOTH(f, &out, "snapshot-protect", "vm", "s2"), 0);
    assert_string_equal(out, "Domain snapshot s2 protected\n\n");
    free(out);
    assert_int_equal(BOTH(f, NULL, "snapshot-delete", "vm", "s2"), 1);
    assert_int_equal(BOTH(f, NULL, "snapshot-prune", "vm", "--manual", "--keep-last", "1", "--dry-run"), 0);
    /* a real prune (a task) that finds everything protected */
    assert_int_equal(BOTH(f, NULL, "snapshot-protect", "vm", "s1"), 0);
    assert_int_equal(BOTH(f, &out, "snapshot-prune", "vm", "--manual", "--max-age", "1s"), 0);
    qt_assert_contains(out, "Pruned: keep 0, protected 2, removed 0\n");
    free(out);
    assert_int_equal(BOTH(f, NULL, "snapshot-prune", "vm", "--manual", "--max-age", "1s", "--json"), 0);
    assert_int_equal(BOTH(f, NULL, "snapshot-protect", "vm", "s2", "--unprotect"), 0);
    assert_int_equal(BOTH(f, NULL, "snapshot-protect", "vm", "s1", "--unprotect"), 0);
    assert_int_equal(BOTH(f, NULL, "snapshot-protect", "vm", "nope"), 1);
    assert_int_equal(BOTH(f, NULL, "events", "vm", "--since", "1h"), 0);
    assert_int_equal(BOTH(f, NULL, "events", "vm", "--json"), 0);
    assert_int_equal(BOTH(f, NULL, "events", "vm", "--since", "soon"), 2);
    /* through qsnapd alone, a prune that removes (the linked clones keep their own copy of s1's disks). A
     * snapshot is older than 1s once a whole second lies between its creation second and now's: wait for it
     * rather than count on the commands above taking that long */
    while (time(NULL) < s2_at + 2)
        usleep(50 * 1000);
    {
        struct qs_proc_result b;
        assert_int_equal(st_qsnap_run(f, &daemon_, &b, "snapshot-prune", "vm", "--manual", "--max-age", "1s", NULL), 0);
        qt_assert_contains(b.out, "Pruned: keep 0, protected 0, removed 2\n");
        qs_proc_result_release(&b);
    }
    assert_false(qt_image_has_tag(qh_vm_disk_path(f->vm, "vdb"), "s1"));
    out = QSNAP_OK(f, "snapshot-list", "vm", "--name");
    assert_string_equal(out, "\n");
    free(out);
    free(QSNAP_OK(f, "schedule-remove", "vm", "h"));
    st_validate_replies(&daemon_);
    st_stop(&daemon_);
    st_release(&daemon_);
    free(file);
    free(raw);
}

/* qsnapd goes before the VMs, and the clones qsnap started go with them */
static int teardown(void **state)
{
    st_release(&daemon_);
    qt_kill_started(*state);
    return qt_teardown(state);
}

int main(void)
{
    static struct qt_fixture f1 = {.cfg = &qt_cfg_two_disks};
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_prestate_setup_teardown(test_export_clone, qt_setup, teardown, &f1),
    };
    setenv("TZ", "UTC", 1);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
