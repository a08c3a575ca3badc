/* test_service_live.c: qsnapd on real QEMU over real HTTP - every endpoint, the preview cycle checked from the
 * guest's side, the event stream, metrics, XML, and every reply validated against the OpenAPI document
 * (label integration). */
#include "svc_test.h"

#include "qs_proc.h"
#include "qs_util.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define POINT "qsnap-before-preview"

/* ---- the event stream, read by a thread ---- */

struct sse {
    struct st_daemon *d;
    pthread_mutex_t mu;
    char *text;
    size_t len;
    bool stop;
};

static size_t sse_data(char *p, size_t size, size_t n, void *opaque)
{
    struct sse *s = opaque;
    bool stop;

    pthread_mutex_lock(&s->mu);
    s->text = qs_xrealloc(s->text, s->len + size * n + 1);
    memcpy(s->text + s->len, p, size * n);
    s->len += size * n;
    s->text[s->len] = '\0';
    stop = s->stop;
    pthread_mutex_unlock(&s->mu);
    return stop ? 0 : size * n;
}

static int sse_progress(void *opaque, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
    struct sse *s = opaque;
    bool stop;
    (void)a, (void)b, (void)c, (void)d;
    pthread_mutex_lock(&s->mu);
    stop = s->stop;
    pthread_mutex_unlock(&s->mu);
    return stop;
}

static void *sse_main(void *opaque)
{
    struct sse *s = opaque;
    CURL *c = curl_easy_init();
    char *url = qs_asprintf("%s/api/events", s->d->url);

    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, s->d->sock);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sse_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, s);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, sse_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, s);
    curl_easy_perform(c);
    curl_easy_cleanup(c);
    free(url);
    return NULL;
}

static bool sse_has(struct sse *s, const char *needle)
{
    bool found;
    pthread_mutex_lock(&s->mu);
    found = s->text && strstr(s->text, needle);
    pthread_mutex_unlock(&s->mu);
    return found;
}

/* ---- the fixture: a VM, qsnapd on its root, replies recorded ---- */

static struct st_daemon daemon_;

static void start_service(struct qt_fixture *f)
{
    memset(&daemon_, 0, sizeof(daemon_));
    daemon_.record = qs_asprintf("%s/replies", qh_vm_dir(f->vm));
    assert_int_equal(mkdir(daemon_.record, 0700), 0);
    st_start(&daemon_, "qsnapd", f->root, qh_vm_dir(f->vm), NULL);
}

static void http(const char *method, const char *path, const char *body, struct st_reply *r)
{
    st_http(&daemon_, method, path, body, NULL, r);
}

/* Every reply recorded so far, checked against the OpenAPI document by check_openapi.py (jsonschema). */
static void validate_replies(void)
{
    st_validate_replies(&daemon_);
}

static void test_every_endpoint(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    struct qs_error *err = NULL;
    const char *vdb = qh_vm_disk_path(f->vm, "vdb");
    struct st_reply r;
    json_object *o, *t, *a;
    uint64_t c_snap, c_now;
    struct sse s = {.d = &daemon_};
    pthread_t sse_thread;
    char *body;

    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    start_service(f);
    pthread_mutex_init(&s.mu, NULL);
    assert_int_equal(pthread_create(&sse_thread, NULL, sse_main, &s), 0);

    /* entry point, the empty host, the OpenAPI document itself */
    http("GET", "/api", NULL, &r);
    assert_string_equal(st_str(st_expect(&r, 200), "product"), "qsnapd");
    st_reply_release(&r);
    http("GET", "/api/openapi.json", NULL, &r);
    assert_string_equal(st_str(st_expect(&r, 200), "openapi"), "3.1.0");
    st_reply_release(&r);
    http("GET", "/api/vms", NULL, &r);
    assert_int_equal(json_object_array_length(json_object_object_get(st_expect(&r, 200), "vm")), 0);
    st_reply_release(&r);

    /* attach the running QEMU */
    body = qs_asprintf("{\"name\":\"vm\",\"qmp_socket\":\"%s\"}", qh_vm_socket_path(f->vm));
    http("POST", "/api/vms", body, &r);
    free(body);
    assert_string_equal(st_str(st_expect(&r, 201), "name"), "vm");
    assert_string_equal(r.location, "/api/vms/vm");
    st_reply_release(&r);
    http("GET", "/api/vms/vm", NULL, &r);
    o = st_expect(&r, 200);
    assert_string_equal(st_str(o, "state"), "running");
    assert_int_equal(json_object_array_length(json_object_object_get(o, "disks")), 2);
    assert_int_equal(json_object_get_int(json_object_object_get(o, "snapshot_count")), 0);
    assert_null(st_str(o, "current_snapshot"));
    st_reply_release(&r);
    http("GET", "/api/vms?brief=true", NULL, &r);
    st_expect(&r, 200);
    st_reply_release(&r);
    http("GET", "/api/vms/vm/definition", NULL, &r);
    assert_non_null(strstr(st_str(st_expect(&r, 200), "xml"), "<domain"));
    st_reply_release(&r);
    http("GET", "/api/vms/vm/pending", NULL, &r);
    assert_null(st_str(st_expect(&r, 200), "op"));
    st_reply_release(&r);
    http("GET", "/api/vms/vm/current", NULL, &r);
    assert_null(st_str(st_expect(&r, 200), "name"));
    st_reply_release(&r);

    /* s1 of the paused guest with 0xaa on vdb: a task (202, Location), polled to its end */
    qt_disk_write(f, "vdb", 0xaa, 0);
    qt_exec(qh_vm_qmp(f->vm), "stop");
    c_snap = qt_counter(f);
    t = st_task(&daemon_, "POST", "/api/vms/vm/snapshots", "{\"name\":\"s1\",\"description\":\"before\"}", "succeeded");
    assert_string_equal(st_str(json_object_object_get(t, "result"), "snapshot"), "s1");
    assert_string_equal(st_str(t, "kind"), "create");
    json_object_put(t);
    assert_true(qt_image_has_tag(vdb, "s1"));
    http("GET", "/api/vms/vm/snapshots", NULL, &r);
    a = json_object_object_get(st_expect(&r, 200), "snapshot");
    assert_int_equal(json_object_array_length(a), 1);
    o = json_object_array_get_idx(a, 0);
    assert_string_equal(st_str(o, "id"), "s1");
    assert_string_equal(st_str(o, "description"), "before");
    assert_string_equal(st_str(o, "snapshot_status"), "ok");
    assert_string_equal(st_str(o, "snapshot_type"), "regular");
    assert_true(json_object_get_boolean(json_object_object_get(o, "persist_memorystate")));
    assert_string_equal(st_str(o, "state"), "paused");
    st_reply_release(&r);
    http("GET", "/api/vms/vm/snapshots/s1?all_content=true", NULL, &r);
    o = st_expect(&r, 200);
    assert_non_null(strstr(st_str(o, "xml"), "<domainsnapshot>"));
    assert_int_equal(json_object_array_length(json_object_object_get(o, "disks")), 2);
    st_reply_release(&r);
    /* oVirt's element names with Accept: application/xml */
    {
        const char *hx[] = {"Accept: application/xml", NULL};
        st_http(&daemon_, "GET", "/api/vms/vm/snapshots", NULL, hx, &r);
        assert_int_equal(r.status, 200);
        assert_non_null(strstr(r.body, "<snapshots>\n  <snapshot id=\"s1\" href=\"/api/vms/vm/snapshots/s1\">"));
        assert_non_null(strstr(r.body, "<snapshot_status>ok</snapshot_status>"));
        assert_non_null(strstr(r.body, "<persist_memorystate>true</persist_memorystate>"));
        st_reply_release(&r);
    }

    /* restore, waited for in the request ("async": false): the guest's RAM and disk are s1's */
    qt_exec(qh_vm_qmp(f->vm), "cont");
    qt_disk_write(f, "vdb", 0xbb, 0);
    http("POST", "/api/vms/vm/snapshots/s1/restore", "{\"async\":false}", &r);
    assert_string_equal(st_str(st_expect(&r, 200), "state"), "succeeded");
    st_reply_release(&r);
    qt_assert_status(qh_vm_qmp(f->vm), "paused");
    assert_int_equal(qt_counter(f), c_snap);
    assert_int_equal(qt_node_reads(f, "vdb", 0xaa, 0), 1);

    /* the preview cycle: preview s1 from a later state, undo returns to it exactly */
    qt_exec(qh_vm_qmp(f->vm), "cont");
    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    qt_disk_write(f, "vdb", 0xcc, 0);
    qt_exec(qh_vm_qmp(f->vm), "stop");
    c_now = qt_counter(f);
    json_object_put(st_task(&daemon_, "POST", "/api/vms/vm/previewsnapshot", "{\"snapshot\":{\"id\":\"s1\"}}",
                            "succeeded"));
    assert_int_equal(qt_counter(f), c_snap);
    assert_int_equal(qt_node_reads(f, "vdb", 0xaa, 0), 1);
    http("GET", "/api/vms/vm/snapshots", NULL, &r);
    a = json_object_object_get(st_expect(&r, 200), "snapshot");
    assert_int_equal(json_object_array_length(a), 2);
    for (size_t i = 0; i < 2; i++) {
        o = json_object_array_get_idx(a, i);
        if (strcmp(st_str(o, "id"), "s1") == 0)
            assert_string_equal(st_str(o, "snapshot_status"), "in_preview");
        else
            assert_string_equal(st_str(o, "snapshot_type"), "preview");
    }
    st_reply_release(&r);
    http("GET", "/api/vms/vm/preview", NULL, &r);
    assert_string_equal(st_str(st_expect(&r, 200), "state"), "active");
    st_reply_release(&r);
    /* a second preview is refused while one lasts: 409 with the engine's words */
    t = st_task(&daemon_, "POST", "/api/vms/vm/previewsnapshot", "{\"snapshot\":{\"id\":\"s1\"}}", "failed");
    assert_string_equal(st_str(json_object_object_get(t, "error"), "code"), "state");
    json_object_put(t);
    qt_exec(qh_vm_qmp(f->vm), "cont");
    qt_disk_write(f, "vdb", 0xdd, 0);
    json_object_put(st_task(&daemon_, "POST", "/api/vms/vm/undosnapshot", NULL, "succeeded"));
    assert_int_equal(qt_counter(f), c_now);
    assert_int_equal(qt_node_reads(f, "vdb", 0xcc, 0), 1);
    assert_false(qt_image_has_tag(vdb, POINT));
    /* preview again and commit: the previewed state stays, the point goes */
    json_object_put(st_task(&daemon_, "POST", "/api/vms/vm/previewsnapshot",
                            "{\"snapshot\":{\"id\":\"s1\"},\"start\":true}", "succeeded"));
    qt_assert_status(qh_vm_qmp(f->vm), "running");
    json_object_put(st_task(&daemon_, "POST", "/api/vms/vm/commitsnapshot", NULL, "succeeded"));
    assert_false(qt_image_has_tag(vdb, POINT));
    assert_int_equal(qt_node_reads(f, "vdb", 0xaa, 0), 1);
    t = st_task(&daemon_, "POST", "/api/vms/vm/commitsnapshot", "{}", "failed");
    assert_non_null(strstr(st_str(json_object_object_get(t, "error"), "message"), "has no snapshot in preview"));
    json_object_put(t);

    /* current, s2, delete with ?wait, the task list, a cancel of a finished task */
    json_object_put(st_task(&daemon_, "POST", "/api/vms/vm/snapshots", "{\"name\":\"s2\"}", "succeeded"));
    http("PUT", "/api/vms/vm/current", "{\"name\":\"s1\"}", &r);
    assert_string_equal(st_str(st_expect(&r, 200), "name"), "s1");
    st_reply_release(&r);
    http("GET", "/api/vms/vm/current", NULL, &r);
    assert_string_equal(st_str(st_expect(&r, 200), "name"), "s1");
    st_reply_release(&r);
    http("DELETE", "/api/vms/vm/snapshots/s2?wait=true", NULL, &r);
    assert_string_equal(st_str(st_expect(&r, 200), "state"), "succeeded");
    st_reply_release(&r);
    assert_false(qt_image_has_tag(vdb, "s2"));
    http("GET", "/api/tasks", NULL, &r);
    a = json_object_object_get(st_expect(&r, 200), "task");
    assert_true(json_object_array_length(a) >= 8);
    body = qs_asprintf("/api/tasks/%s", st_str(json_object_array_get_idx(a, 0), "id"));
    st_reply_release(&r);
    http("DELETE", body, NULL, &r);
    assert_string_equal(st_str(st_expect(&r, 409), "code"), "state");
    st_reply_release(&r);
    free(body);

    /* check, repair (nothing to repair), metrics */
    http("GET", "/api/vms/vm/check", NULL, &r);
    assert_int_equal(json_object_array_length(json_object_object_get(st_expect(&r, 200), "item")), 0);
    st_reply_release(&r);
    http("POST", "/api/vms/vm/check", NULL, &r);
    st_expect(&r, 200);
    st_reply_release(&r);
    http("GET", "/metrics", NULL, &r);
    assert_int_equal(r.status, 200);
    qt_assert_contains(r.body, "qsnap_snapshots{vm=\"vm\"} 1\n");
    qt_assert_contains(r.body, "qsnap_operations_total{kind=\"create\",outcome=\"success\"} 2\n");
    qt_assert_contains(r.body, "qsnap_operations_total{kind=\"preview\",outcome=\"failure\"} 1\n");
    qt_assert_contains(r.body, "qsnap_operation_duration_seconds_bucket{kind=\"restore\",outcome=\"success\",le=\"+Inf\"} 1\n");
    st_reply_release(&r);

    /* errors: unknown domain and snapshot, bad JSON, a wrong member type, a name that is a path */
    http("GET", "/api/vms/nope", NULL, &r);
    assert_string_equal(st_str(st_expect(&r, 404), "code"), "not-found");
    st_reply_release(&r);
    http("GET", "/api/vms/vm/snapshots/nope", NULL, &r);
    qt_assert_contains(st_str(st_expect(&r, 404), "message"), "no domain snapshot with matching name 'nope'");
    st_reply_release(&r);
    http("POST", "/api/vms/vm/snapshots", "{\"name\":", &r);
    st_expect(&r, 400);
    st_reply_release(&r);
    http("POST", "/api/vms/vm/snapshots", "{\"live\":\"yes\"}", &r);
    st_expect(&r, 400);
    st_reply_release(&r);
    http("POST", "/api/vms/vm/snapshots", "{\"name\":\"../../etc/x\"}", &r);
    st_expect(&r, 400);
    st_reply_release(&r);

    /* the stream saw the tasks and the snapshot changes */
    for (int i = 0; i < 100 && !sse_has(&s, "\"change\":\"created\""); i++)
        usleep(20000);
    assert_true(sse_has(&s, "event: task\ndata: {"));
    assert_true(sse_has(&s, "event: snapshot\ndata: {\"vm\":\"vm\",\"snapshot\":\"s1\",\"change\":\"created\"}"));
    assert_true(sse_has(&s, "\"change\":\"in_preview\""));
    pthread_mutex_lock(&s.mu);
    s.stop = true;
    pthread_mutex_unlock(&s.mu);
    pthread_join(sse_thread, NULL);
    free(s.text);
    pthread_mutex_destroy(&s.mu);

    /* DELETE the domain: refused with snapshots, then forced */
    http("DELETE", "/api/vms/vm", NULL, &r);
    st_expect(&r, 409);
    st_reply_release(&r);
    qt_validate_all(f, 1);
    validate_replies();
    st_stop(&daemon_);
    st_release(&daemon_);
}

/* A stopped service comes back on the same state; the CLI works beside it on the same directory. */
static void test_cli_beside_service(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    struct st_reply r;
    char *out, *conn;

    qt_attach(f);
    start_service(f);
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "cli1"));
    http("GET", "/api/vms/vm/snapshots/cli1", NULL, &r); /* the cache sees the CLI's change */
    st_expect(&r, 200);
    st_reply_release(&r);
    json_object_put(st_task(&daemon_, "POST", "/api/vms/vm/snapshots", "{\"name\":\"api1\"}", "succeeded"));
    out = QSNAP_OK(f, "snapshot-list", "vm", "--name");
    assert_string_equal(out, "api1\ncli1\n\n");
    free(out);
    /* --connect: the same output through the service, for a command with a real QEMU behind it */
    conn = qs_asprintf("unix:%s", daemon_.sock);
    {
        struct qs_proc_result a = {0}, b = {0};
        struct qs_error *err = NULL;
        char *argv_direct[] = {f->qsnap, "--root", f->root, "snapshot-revert", "vm", "cli1", NULL};
        char *argv_remote[] = {f->qsnap, "--connect", conn, "snapshot-revert", "vm", "api1", NULL};
        char *argv_info[] = {f->qsnap, "--connect", conn, "snapshot-info", "vm", "--current", NULL};
        char *argv_info_d[] = {f->qsnap, "--root", f->root, "snapshot-info", "vm", "--current", NULL};
        OK(qs_proc_run(argv_direct, 120000, 0, &a, &err));
        OK(qs_proc_run(argv_remote, 120000, 0, &b, &err));
        assert_int_equal(a.status, 0);
        assert_int_equal(b.status, 0);
        assert_string_equal(a.out, "Domain snapshot cli1 reverted\n\n");
        assert_string_equal(b.out, "Domain snapshot api1 reverted\n\n");
        qs_proc_result_release(&a);
        qs_proc_result_release(&b);
        OK(qs_proc_run(argv_info, 120000, 0, &a, &err));
        OK(qs_proc_run(argv_info_d, 120000, 0, &b, &err));
        assert_string_equal(a.out, b.out);
        assert_string_equal(a.errout, b.errout);
        qt_assert_contains(a.out, "Name:           api1\n");
        qs_proc_result_release(&a);
        qs_proc_result_release(&b);
    }
    free(conn);

    /* three tasks of one domain sent at once: the first runs, the others queue behind it, and each one's
     * finish must start the next (a worker left asleep would leave a task queued until this gives up) */
    {
        char *loc[3];
        double started[3];
        for (int i = 0; i < 3; i++) {
            char *body = qs_asprintf("{\"name\":\"q%d\"}", i);
            http("POST", "/api/vms/vm/snapshots", body, &r);
            st_expect(&r, 202);
            assert_non_null(r.location);
            loc[i] = qs_xstrdup(r.location);
            st_reply_release(&r);
            free(body);
        }
        for (int i = 0; i < 3; i++) {
            const char *st = NULL;
            char *path = qs_asprintf("%s?wait=1000", loc[i]);
            for (int tries = 0; tries < 60 && !(st && strcmp(st, "queued") != 0 && strcmp(st, "running") != 0);
                 tries++) {
                st_reply_release(&r);
                http("GET", path, NULL, &r);
                st = st_str(st_expect(&r, 200), "state");
            }
            assert_string_equal(st, "succeeded");
            started[i] = json_object_get_double(json_object_object_get(st_expect(&r, 200), "started"));
            st_reply_release(&r);
            free(path);
            free(loc[i]);
        }
        assert_true(started[0] <= started[1] && started[1] <= started[2]); /* in the order they came */
        out = QSNAP_OK(f, "snapshot-list", "vm", "--name");
        assert_string_equal(out, "api1\ncli1\nq0\nq1\nq2\n\n");
        free(out);
    }
    validate_replies();
    st_stop(&daemon_);
    st_release(&daemon_);
}

/* qsnapd goes before the VM, also when a test failed half way */
static int teardown(void **state)
{
    st_release(&daemon_);
    return qt_teardown(state);
}

int main(void)
{
    static struct qt_fixture f1 = {.cfg = &qt_cfg_two_disks}, f2 = {.cfg = &qt_cfg_two_disks};
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_prestate_setup_teardown(test_every_endpoint, qt_setup, teardown, &f1),
        cmocka_unit_test_prestate_setup_teardown(test_cli_beside_service, qt_setup, teardown, &f2),
    };
    curl_global_init(CURL_GLOBAL_DEFAULT);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
