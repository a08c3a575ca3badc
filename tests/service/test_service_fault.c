/* test_service_fault.c: qsnapd SIGKILLed in the middle of a create, a revert and a delete (qsnapd-fault dies
 * after step N of the operation); after a restart the operation is finished or undone, as with the CLI, and
 * the guest sees a whole state (label integration). */
#include "svc_test.h"

#include "qs_util.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static struct st_daemon daemon_;

static int teardown(void **state)
{
    st_release(&daemon_);
    return qt_teardown(state);
}

/* Submits METHOD PATH BODY to a qsnapd-fault that dies after step AT. Returns true when it died (false: the
 * operation had fewer steps and finished). */
static bool run_killed(struct qt_fixture *f, long at, const char *method, const char *path, const char *body)
{
    char buf[32];
    struct st_reply r;
    bool died = false;

    snprintf(buf, sizeof(buf), "%ld", at);
    setenv("QSNAP_FAULT_AT", buf, 1);
    st_start(&daemon_, "qsnapd-fault", f->root, qh_vm_dir(f->vm), NULL);
    unsetenv("QSNAP_FAULT_AT");
    st_http(&daemon_, method, path, body, NULL, &r);
    assert_int_equal(r.status, 202);
    for (int i = 0; i < 3000; i++) {
        int status;
        if (waitpid(daemon_.pid, &status, WNOHANG) == daemon_.pid) {
            assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
            daemon_.pid = -1;
            died = true;
            break;
        }
        usleep(10000);
        if (i > 100) {
            /* still alive after a second: the operation may have ended before step AT */
            struct st_reply t;
            char *p = qs_asprintf("%s", r.location);
            int got = st_http_try(&daemon_, "GET", p, NULL, &t);
            free(p);
            if (got < 0)
                continue; /* it is dying under the request: the next turn reaps it */
            if (t.json && st_str(t.json, "state") &&
                (!strcmp(st_str(t.json, "state"), "succeeded") || !strcmp(st_str(t.json, "state"), "failed"))) {
                st_reply_release(&t);
                break;
            }
            st_reply_release(&t);
        }
    }
    st_reply_release(&r);
    if (!died)
        st_stop(&daemon_);
    /* restarted: recovery runs before anything is served */
    st_start(&daemon_, "qsnapd", f->root, qh_vm_dir(f->vm), NULL);
    return died;
}

/* Nothing is pending, snapshot-check finds nothing, and NAME is whole or absent (metadata and tags agree). */
static bool verify_whole(struct qt_fixture *f, const char *name)
{
    const char *vda = qh_vm_disk_path(f->vm, "vda"), *vdb = qh_vm_disk_path(f->vm, "vdb");
    struct st_reply r;
    char *path = qs_asprintf("/api/vms/vm/snapshots/%s", name);
    bool present;

    st_http(&daemon_, "GET", "/api/vms/vm/pending", NULL, NULL, &r);
    assert_null(st_str(st_expect(&r, 200), "op"));
    st_reply_release(&r);
    st_http(&daemon_, "GET", "/api/vms/vm/check", NULL, NULL, &r);
    if (json_object_array_length(json_object_object_get(st_expect(&r, 200), "item")) != 0)
        print_error("check: %s\n", r.body);
    assert_int_equal(json_object_array_length(json_object_object_get(r.json, "item")), 0);
    st_reply_release(&r);
    st_http(&daemon_, "GET", path, NULL, NULL, &r);
    present = r.status == 200;
    assert_true(r.status == 200 || r.status == 404);
    st_reply_release(&r);
    assert_int_equal(qt_image_has_tag(vda, name), present);
    assert_int_equal(qt_image_has_tag(vdb, name), present);
    free(path);
    return present;
}

static void test_kill_mid_create_revert_delete(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    struct qs_error *err = NULL;
    int finished = 0, undone = 0, kills = 0;
    uint64_t c_snap;

    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    qt_attach(f);
    qt_disk_write(f, "vdb", 0xaa, 0);
    qt_exec(qh_vm_qmp(f->vm), "stop");
    c_snap = qt_counter(f);
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "s1"));
    qt_exec(qh_vm_qmp(f->vm), "cont");

    /* create: killed after each of its steps */
    for (long at = 1; at <= 4; at++) {
        char body[64], name[16];
        snprintf(name, sizeof(name), "c%ld", at);
        snprintf(body, sizeof(body), "{\"name\":\"%s\"}", name);
        if (!run_killed(f, at, "POST", "/api/vms/vm/snapshots", body)) {
            st_stop(&daemon_);
            break;
        }
        kills++;
        if (verify_whole(f, name))
            finished++;
        else
            undone++;
        qt_assert_status(qh_vm_qmp(f->vm), "running"); /* the guest was running: it runs again */
        st_stop(&daemon_);
    }

    /* revert to s1 (paused, 0xaa) from a running guest with 0xbb: killed after each step */
    for (long at = 1; at <= 6; at++) {
        struct st_reply r;
        char *cur;
        bool died;
        qt_exec(qh_vm_qmp(f->vm), "cont");
        qt_disk_write(f, "vdb", 0xbb, 0);
        died = run_killed(f, at, "POST", "/api/vms/vm/snapshots/s1/restore", "{}");
        verify_whole(f, "s1");
        st_http(&daemon_, "GET", "/api/vms/vm/current", NULL, NULL, &r);
        cur = qs_xstrdup(st_str(st_expect(&r, 200), "name") ? st_str(r.json, "name") : "");
        st_reply_release(&r);
        if (qt_node_reads(f, "vdb", 0xaa, 0) == 1) {
            /* finished: s1's disk and RAM, and s1 current */
            qt_exec(qh_vm_qmp(f->vm), "stop");
            assert_int_equal(qt_counter(f), c_snap);
            assert_string_equal(cur, "s1");
            finished += died;
        } else {
            /* undone: the guest's own disk, running as it was */
            assert_int_equal(qt_node_reads(f, "vdb", 0xbb, 0), 1);
            qt_assert_status(qh_vm_qmp(f->vm), "running");
            undone += died;
        }
        kills += died;
        free(cur);
        st_stop(&daemon_);
        if (!died)
            break;
    }

    /* delete: killed after each step; a delete goes forward once it began */
    qt_exec(qh_vm_qmp(f->vm), "cont");
    for (long at = 1; at <= 4; at++) {
        char name[16], path[64];
        snprintf(name, sizeof(name), "d%ld", at);
        free(QSNAP_OK(f, "snapshot-create-as", "vm", name));
        snprintf(path, sizeof(path), "/api/vms/vm/snapshots/%s", name);
        bool died = run_killed(f, at, "DELETE", path, NULL);
        bool present = verify_whole(f, name);
        if (died) {
            kills++;
            present ? undone++ : finished++;
        }
        st_stop(&daemon_);
        if (!died)
            break;
    }
    print_message("%d kills of qsnapd mid-operation: %d finished, %d undone after the restart\n", kills, finished,
                  undone);
    assert_true(kills >= 6);
    assert_int_equal(kills, finished + undone);
}

int main(void)
{
    static struct qt_fixture f1 = {.cfg = &qt_cfg_two_disks};
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_prestate_setup_teardown(test_kill_mid_create_revert_delete, qt_setup, teardown, &f1),
    };
    curl_global_init(CURL_GLOBAL_DEFAULT);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
