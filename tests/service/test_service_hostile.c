/* test_service_hostile.c: qsnapd against hostile and heavy clients - oversized and malformed requests, slow
 * clients, traversal names, unknown methods, missing / wrong / read-only / revoked tokens over TLS, and 50
 * clients reading while reverts and creates run; every refusal a 4xx JSON error with the state directory
 * unchanged (label integration). */
#include "svc_test.h"

#include "qs_proc.h"
#include "qs_util.h"

#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <grp.h>
#include <unistd.h>

static struct st_daemon daemon_, tcp_;

static int teardown(void **state)
{
    st_release(&daemon_);
    st_release(&tcp_);
    return qt_teardown(state);
}

/* A 4xx JSON error {code, message}. */
static void expect_error(struct st_reply *r, long status)
{
    json_object *o = st_expect(r, status);
    assert_non_null(o);
    assert_non_null(st_str(o, "code"));
    assert_non_null(st_str(o, "message"));
}

/* Raw bytes to the UNIX socket (what no HTTP client would send); returns the reply's text (caller frees), read
 * until the server closes or TIMEOUT_MS passes. *closed_ms gets when it closed (-1: it did not). */
static char *raw(const char *sock, const char *const *chunks, int gap_ms, int timeout_ms, long *closed_ms)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    char buf[4096], *out = qs_xstrdup("");
    int64_t t0 = qs_now_ms();

    *closed_ms = -1;
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    for (size_t i = 0; chunks[i]; i++) {
        if (send(fd, chunks[i], strlen(chunks[i]), MSG_NOSIGNAL) < 0)
            break;
        if (gap_ms && chunks[i + 1])
            usleep((useconds_t)gap_ms * 1000);
    }
    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        int left = timeout_ms - (int)(qs_now_ms() - t0);
        ssize_t n;
        if (left <= 0 || poll(&p, 1, left) <= 0)
            break;
        n = recv(fd, buf, sizeof(buf) - 1, 0);
        if (n <= 0) {
            *closed_ms = (long)(qs_now_ms() - t0);
            break;
        }
        buf[n] = '\0';
        char *grown = qs_asprintf("%s%s", out, buf);
        free(out);
        out = grown;
    }
    close(fd);
    return out;
}

/* A process of uid/gid 65534 (nobody) protects s1 through the UNIX socket SOCK: the socket and its directory
 * opened to it for the call (qsnapd makes the socket 0660 for its group). */
static void peer_protects_as_nobody(struct qt_fixture *f, const char *sock)
{
    static const char req[] = "POST /api/vms/vm/snapshots/s1/protect HTTP/1.1\r\nHost: localhost\r\n"
                              "Content-Length: 0\r\nConnection: close\r\n\r\n";
    const char *dir = qh_vm_dir(f->vm);
    struct stat dst, sst;
    int status;
    pid_t pid;

    assert_int_equal(stat(dir, &dst), 0);
    assert_int_equal(stat(sock, &sst), 0);
    assert_int_equal(chmod(dir, 0711), 0);
    assert_int_equal(chmod(sock, 0666), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        char buf[4096];
        ssize_t n, got = 0;
        int fd;
        if (setgroups(0, NULL) < 0 || setgid(65534) < 0 || setuid(65534) < 0)
            _exit(3);
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
            send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL) != (ssize_t)sizeof(req) - 1)
            _exit(4);
        while (got < (ssize_t)sizeof(buf) - 1 && (n = recv(fd, buf + got, sizeof(buf) - 1 - (size_t)got, 0)) > 0)
            got += n;
        buf[got] = '\0';
        _exit(strncmp(buf, "HTTP/1.1 200 ", 13) == 0 ? 0 : 5);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    chmod(sock, sst.st_mode & 07777);
    chmod(dir, dst.st_mode & 07777);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_hostile_requests(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    const char *extra[] = {"--request-timeout", "2", NULL};
    struct st_reply r;
    char *before, *after, *big, *body, *text;
    long closed;

    qt_attach(f);
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "s1"));
    st_start(&daemon_, "qsnapd", f->root, qh_vm_dir(f->vm), extra);
    /* a first read refreshes the listing index the CLI left stale: that is the state to keep */
    st_http(&daemon_, "GET", "/api/vms/vm/snapshots", NULL, NULL, &r);
    st_expect(&r, 200);
    st_reply_release(&r);
    before = st_tree_hash(f->root);

    /* bodies: too big (with and without a Content-Length), not JSON, not an object, wrong types, a form */
    big = qs_xmalloc((2u << 20) + 3);
    memset(big, ' ', 2u << 20);
    memcpy(big, "{\"name\":\"", 9);
    strcpy(big + (2u << 20), "\"}");
    st_http(&daemon_, "POST", "/api/vms/vm/snapshots", big, NULL, &r);
    expect_error(&r, 413);
    st_reply_release(&r);
    {
        const char *chunked[] = {"Transfer-Encoding: chunked", NULL};
        st_http(&daemon_, "POST", "/api/vms/vm/snapshots", big, chunked, &r);
        expect_error(&r, 413);
        st_reply_release(&r);
    }
    free(big);
    static const char *const bad_bodies[] = {
        "{", "[]", "\"s\"", "{\"name\":1}", "{\"name\":\"a\"} x", "{\"disks\":{}}", "{\"disks\":[{\"file\":\"/x\"}]}",
        "{\"disks\":[{\"name\":\"vda\",\"file\":\"rel/path\"}]}", "{\"memory_file\":\"/a/../b\"}", "{\"name\":\"\\u0000x\"}",
        "{\"a\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}", "{\"name\":\"x\xff\"}",
        "{\"xml\":\"<domainsnapshot/>\",\"name\":\"x\"}",
    };
    for (size_t i = 0; i < sizeof(bad_bodies) / sizeof(bad_bodies[0]); i++) {
        st_http(&daemon_, "POST", "/api/vms/vm/snapshots", bad_bodies[i], NULL, &r);
        if (r.status != 400)
            print_error("body %zu: %s\n", i, bad_bodies[i]);
        expect_error(&r, 400);
        st_reply_release(&r);
    }
    {
        const char *form[] = {"Content-Type: application/x-www-form-urlencoded", NULL};
        st_http(&daemon_, "POST", "/api/vms/vm/snapshots", "name=x", form, &r);
        expect_error(&r, 415);
        st_reply_release(&r);
    }
    /* paths: traversal, control bytes, unknown resources, unknown and wrong methods */
    static const char *const bad_paths[] = {
        "/api/vms/..", "/api/vms/../snapshots", "/api/vms/.hidden/snapshots", "/api/vms/%2e%2e/snapshots",
        "/api/vms/vm/snapshots/..%2F..%2Fetc", "/api/vms/a%00b", "/api/vms/%0a", "/api/vms/vm/snapshots/%2e",
    };
    for (size_t i = 0; i < sizeof(bad_paths) / sizeof(bad_paths[0]); i++) {
        st_http(&daemon_, "GET", bad_paths[i], NULL, NULL, &r);
        if (r.status != 400 && r.status != 404)
            print_error("path %s: %ld %s\n", bad_paths[i], r.status, r.body);
        assert_true(r.status == 400 || r.status == 404);
        expect_error(&r, r.status);
        st_reply_release(&r);
        st_http(&daemon_, "DELETE", bad_paths[i], NULL, NULL, &r);
        assert_true(r.status >= 400 && r.status < 500);
        st_reply_release(&r);
    }
    st_http(&daemon_, "GET", "/api/nothing", NULL, NULL, &r);
    expect_error(&r, 404);
    st_reply_release(&r);
    st_http(&daemon_, "PATCH", "/api/vms/vm", NULL, NULL, &r);
    expect_error(&r, 405);
    st_reply_release(&r);
    st_http(&daemon_, "BREW", "/api/vms", NULL, NULL, &r);
    expect_error(&r, 405);
    st_reply_release(&r);
    st_http(&daemon_, "PUT", "/api/vms/vm/snapshots", "{}", NULL, &r);
    expect_error(&r, 405);
    st_reply_release(&r);
    st_http(&daemon_, "GET", "/api/tasks/1?wait=forever", NULL, NULL, &r);
    expect_error(&r, 400);
    st_reply_release(&r);
    st_http(&daemon_, "GET", "/api/vms/vm/snapshots?tree=maybe", NULL, NULL, &r);
    expect_error(&r, 400);
    st_reply_release(&r);

    /* malformed HTTP: MHD answers 400 and closes; headers past the cap are refused */
    {
        const char *junk[] = {"GARBAGE\r\n\r\n", NULL};
        text = raw(daemon_.sock, junk, 0, 5000, &closed);
        assert_true(strncmp(text, "HTTP/1.1 400", 12) == 0 || closed >= 0);
        free(text);
        char *huge = qs_xmalloc(64 << 10);
        memset(huge, 'a', 64 << 10);
        memcpy(huge, "GET /api HTTP/1.1\r\nHost: x\r\nX-Big: ", 35);
        huge[(64 << 10) - 1] = '\0';
        const char *hh[] = {huge, "\r\n\r\n", NULL};
        text = raw(daemon_.sock, hh, 0, 5000, &closed);
        assert_true(strstr(text, " 431 ") || strstr(text, " 413 ") || strstr(text, " 400 ") || closed >= 0);
        assert_null(strstr(text, " 200 "));
        free(text);
        free(huge);
    }
    /* a slow client (a byte of headers every 300 ms) is cut off by the 2 s request limit; others are served
     * meanwhile */
    {
        const char *slow[64];
        static const char hdr[] = "GET /api/vms HTTP/1.1\r\nHost: localhost\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        char one[sizeof(hdr)][2];
        size_t n = 0;
        for (size_t i = 0; i < sizeof(hdr) - 1 && n < 63; i++, n++) {
            one[i][0] = hdr[i];
            one[i][1] = '\0';
            slow[n] = one[i];
        }
        slow[n] = NULL;
        text = raw(daemon_.sock, slow, 300, 30000, &closed);
        assert_true(closed >= 0);
        assert_true(closed < 15000);
        assert_null(strstr(text, " 200 "));
        free(text);
        st_http(&daemon_, "GET", "/api/vms", NULL, NULL, &r);
        st_expect(&r, 200);
        st_reply_release(&r);
    }
    /* a slow body likewise */
    {
        const char *slowbody[] = {"POST /api/vms/vm/snapshots HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                  "Content-Length: 100\r\n\r\n{",
                                  "\"", "n", "a", "m", "e", "\"", ":", NULL};
        text = raw(daemon_.sock, slowbody, 1000, 30000, &closed);
        assert_true(closed >= 0);
        assert_null(strstr(text, " 202 "));
        free(text);
    }

    /* nothing above changed the state directory, and the snapshot is whole */
    after = st_tree_hash(f->root);
    assert_string_equal(before, after);
    free(before);
    free(after);
    st_http(&daemon_, "GET", "/api/vms/vm/snapshots/s1", NULL, NULL, &r);
    st_expect(&r, 200);
    st_reply_release(&r);
    (void)body;

    /* on the UNIX socket the event log names the connecting user (SO_PEERCRED), not qsnapd's uid */
    peer_protects_as_nobody(f, daemon_.sock);
    st_http(&daemon_, "POST", "/api/vms/vm/snapshots/s1/unprotect", NULL, NULL, &r);
    st_expect(&r, 200);
    st_reply_release(&r);
    st_http(&daemon_, "GET", "/api/events?vm=vm", NULL, NULL, &r);
    {
        json_object *a = json_object_object_get(st_expect(&r, 200), "event");
        size_t n = json_object_array_length(a);
        json_object *last = json_object_array_get_idx(a, n - 1), *prev = json_object_array_get_idx(a, n - 2);
        char *me = qs_asprintf("uid=%u", (unsigned)getuid());
        assert_string_equal(st_str(prev, "op"), "protect");
        assert_string_equal(st_str(prev, "requester"), "uid=65534");
        assert_string_equal(st_str(last, "op"), "unprotect");
        assert_string_equal(st_str(last, "requester"), me);
        free(me);
    }
    st_reply_release(&r);
}

/* TCP: TLS only, a token on every request; read-only tokens GET; requests naming files stay local; revoked
 * tokens stop at once. */
static void test_tokens_over_tls(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    char *cert = qt_path_in(f, "cert.pem"), *key = qt_path_in(f, "key.pem"), *rw = NULL, *ro = NULL, *before;
    char *port_arg, auth_rw[256], auth_ro[256], *exports;
    const char *h_rw[] = {auth_rw, NULL}, *h_ro[] = {auth_ro, NULL}, *h_bad[] = {"Authorization: Bearer qs_0000", NULL};
    struct qs_proc_result res = {0};
    struct qs_error *err = NULL;
    struct st_reply r;
    int port;

    qt_attach(f);
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "s1"));
    {
        char *argv[] = {"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                        "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", NULL};
        OK(qs_proc_run(argv, 60000, 0, &res, &err));
        assert_int_equal(res.status, 0);
        qs_proc_result_release(&res);
    }
    /* tokens, made with qsnapd token create (printed once) */
    {
        const char *build = getenv("QSNAP_BUILD_DIR");
        char *bin = qs_asprintf("%s/service/qsnapd", build);
        char *a1[] = {bin, "--root", f->root, "token", "create", "admin", NULL};
        char *a2[] = {bin, "--root", f->root, "token", "create", "viewer", "--read-only", NULL};
        char *a3[] = {bin, "--root", f->root, "token", "list", NULL};
        OK(qs_proc_run(a1, 30000, 0, &res, &err));
        assert_int_equal(res.status, 0);
        rw = qs_xstrndup(res.out, strcspn(res.out, "\n"));
        qs_proc_result_release(&res);
        OK(qs_proc_run(a2, 30000, 0, &res, &err));
        ro = qs_xstrndup(res.out, strcspn(res.out, "\n"));
        qs_proc_result_release(&res);
        OK(qs_proc_run(a3, 30000, 0, &res, &err));
        qt_assert_contains(res.out, "admin rw ");
        qt_assert_contains(res.out, "viewer ro ");
        assert_null(strstr(res.out, rw)); /* never shown again */
        qs_proc_result_release(&res);
        /* only hashes are stored */
        char *tokfile = qs_asprintf("%s/qsnapd/tokens", f->root), *text = qt_slurp(tokfile);
        assert_null(strstr(text, rw + 3));
        assert_null(strstr(text, ro + 3));
        free(text);
        free(tokfile);
        free(bin);
    }
    snprintf(auth_rw, sizeof(auth_rw), "Authorization: Bearer %s", rw);
    snprintf(auth_ro, sizeof(auth_ro), "Authorization: Bearer %s", ro);
    /* a free port, then qsnapd on it with TLS */
    {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof(sa);
        assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
        getsockname(s, (struct sockaddr *)&sa, &len);
        port = ntohs(sa.sin_port);
        close(s);
    }
    port_arg = qs_asprintf("tcp:127.0.0.1:%d", port);
    tcp_.url = qs_asprintf("https://127.0.0.1:%d", port);
    tcp_.ca = qs_xstrdup(cert);
    /* exports over TCP go only into --export-dir */
    exports = qt_path_in(f, "exports");
    assert_int_equal(mkdir(exports, 0700), 0);
    {
        const char *extra[] = {"--listen", port_arg, "--tls-cert", cert, "--tls-key", key, "--export-dir", exports,
                               NULL};
        st_start(&tcp_, "qsnapd", f->root, qh_vm_dir(f->vm), extra);
    }
    {
        const char *h[] = {auth_ro, NULL};
        st_http(&tcp_, "GET", "/api/vms/vm/snapshots", NULL, h, &r);
        st_expect(&r, 200);
        st_reply_release(&r);
    }
    before = st_tree_hash(f->root);
    /* no token, a wrong one: 401 */
    st_http(&tcp_, "GET", "/api/vms", NULL, NULL, &r);
    expect_error(&r, 401);
    st_reply_release(&r);
    st_http(&tcp_, "GET", "/api/vms", NULL, h_bad, &r);
    expect_error(&r, 401);
    st_reply_release(&r);
    /* read-only: GET yes, anything else 403 */
    st_http(&tcp_, "GET", "/api/vms/vm/snapshots", NULL, h_ro, &r);
    st_expect(&r, 200);
    st_reply_release(&r);
    st_http(&tcp_, "POST", "/api/vms/vm/snapshots", "{\"name\":\"x\"}", h_ro, &r);
    expect_error(&r, 403);
    st_reply_release(&r);
    st_http(&tcp_, "DELETE", "/api/vms/vm/snapshots/s1", NULL, h_ro, &r);
    expect_error(&r, 403);
    st_reply_release(&r);
    /* read-write, but files and sockets only locally */
    st_http(&tcp_, "POST", "/api/vms", "{\"name\":\"x\",\"qmp_socket\":\"/tmp/x\"}", h_rw, &r);
    expect_error(&r, 403);
    st_reply_release(&r);
    st_http(&tcp_, "POST", "/api/vms/vm/snapshots", "{\"memory_file\":\"/tmp/m\",\"live\":true}", h_rw, &r);
    expect_error(&r, 403);
    st_reply_release(&r);
    st_http(&tcp_, "POST", "/api/vms/vm/save", "{\"path\":\"/tmp/x\"}", h_rw, &r);
    expect_error(&r, 403);
    st_reply_release(&r);
    /* an export's file: only a new one directly inside --export-dir, for a read-write token */
    {
        char *b1 = qs_asprintf("{\"disk\":\"vda\",\"to\":\"%s/../escape.qcow2\"}", exports);
        char *b2 = qs_asprintf("{\"disk\":\"vda\",\"to\":\"%s/sub/x.qcow2\"}", exports);
        char *b3 = qs_asprintf("{\"disk\":\"vda\",\"to\":\"%s/.hidden\"}", exports);
        char *b4 = qs_asprintf("{\"disk\":\"vda\",\"to\":\"%s\"}", exports);
        const char *bodies[] = {"{\"disk\":\"vda\",\"to\":\"/etc/cron.d/x\"}", "{\"disk\":\"vda\",\"to\":\"x.qcow2\"}",
                                b1, b2, b3, b4};
        for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
            st_http(&tcp_, "POST", "/api/vms/vm/snapshots/s1/export", bodies[i], h_rw, &r);
            if (i == 4) {
                expect_error(&r, 400); /* the name check of a file inside */
            } else {
                expect_error(&r, 403);
                qt_assert_contains(st_str(r.json, "message"), "exports over TCP go only to a file directly inside");
            }
            st_reply_release(&r);
        }
        st_http(&tcp_, "POST", "/api/vms/vm/snapshots/s1/export", b4, h_ro, &r);
        expect_error(&r, 403);
        st_reply_release(&r);
        free(b1);
        free(b2);
        free(b3);
        free(b4);
        assert_false(qt_exists("/etc/cron.d/x"));
    }
    {
        char *now = st_tree_hash(f->root);
        assert_string_equal(before, now);
        free(now);
    }
    {
        char *b = qs_asprintf("{\"disk\":\"vdb\",\"to\":\"%s/vdb.qcow2\",\"async\":false}", exports);
        char *img = qs_asprintf("%s/vdb.qcow2", exports);
        st_http(&tcp_, "POST", "/api/vms/vm/snapshots/s1/export", b, h_rw, &r);
        assert_string_equal(st_str(st_expect(&r, 200), "state"), "succeeded");
        st_reply_release(&r);
        assert_true(qt_exists(img));
        free(img);
        free(b);
    }
    /* who asked is the token's name in the event log */
    st_http(&tcp_, "POST", "/api/vms/vm/snapshots/s1/protect", NULL, h_rw, &r);
    st_expect(&r, 200);
    st_reply_release(&r);
    st_http(&tcp_, "GET", "/api/events?vm=vm", NULL, h_ro, &r);
    {
        json_object *a = json_object_object_get(st_expect(&r, 200), "event");
        json_object *last = json_object_array_get_idx(a, json_object_array_length(a) - 1), *prev;
        assert_string_equal(st_str(last, "op"), "protect");
        assert_string_equal(st_str(last, "requester"), "admin");
        prev = json_object_array_get_idx(a, json_object_array_length(a) - 2);
        assert_string_equal(st_str(prev, "op"), "export");
        assert_string_equal(st_str(prev, "requester"), "admin");
    }
    st_reply_release(&r);
    st_http(&tcp_, "POST", "/api/vms/vm/snapshots/s1/unprotect", NULL, h_rw, &r);
    st_expect(&r, 200);
    st_reply_release(&r);
    /* and it works */
    st_http(&tcp_, "POST", "/api/vms/vm/snapshots", "{\"name\":\"t1\",\"async\":false}", h_rw, &r);
    assert_string_equal(st_str(st_expect(&r, 200), "state"), "succeeded");
    st_reply_release(&r);
    /* revoked: refused at the next request */
    {
        const char *build = getenv("QSNAP_BUILD_DIR");
        char *bin = qs_asprintf("%s/service/qsnapd", build);
        char *a[] = {bin, "--root", f->root, "token", "revoke", "viewer", NULL};
        OK(qs_proc_run(a, 30000, 0, &res, &err));
        assert_int_equal(res.status, 0);
        qs_proc_result_release(&res);
        free(bin);
    }
    st_http(&tcp_, "GET", "/api/vms", NULL, h_ro, &r);
    expect_error(&r, 401);
    st_reply_release(&r);
    st_http(&tcp_, "GET", "/api/vms", NULL, h_rw, &r);
    st_expect(&r, 200);
    st_reply_release(&r);
    /* plain HTTP to the TLS port is not served */
    {
        CURL *c = curl_easy_init();
        char *url = qs_asprintf("http://127.0.0.1:%d/api/vms", port);
        long st = 0;
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
        if (curl_easy_perform(c) == CURLE_OK)
            curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
        assert_true(st != 200);
        curl_easy_cleanup(c);
        free(url);
    }
    /* a TCP listener without TLS is refused at start */
    {
        const char *build = getenv("QSNAP_BUILD_DIR");
        char *bin = qs_asprintf("%s/service/qsnapd", build);
        char *a[] = {bin, "--root", f->root, "--listen", "tcp:127.0.0.1:0", NULL};
        OK(qs_proc_run(a, 30000, 0, &res, &err));
        assert_int_equal(res.status, 1);
        qt_assert_contains(res.errout, "a TCP listener needs --tls-cert and --tls-key");
        qs_proc_result_release(&res);
        free(bin);
    }
    free(before);
    free(exports);
    free(port_arg);
    free(rw);
    free(ro);
    free(cert);
    free(key);
}

/* ---- 50 readers while reverts and creates run ---- */

#define READERS 50

struct reader {
    struct st_daemon *d;
    volatile bool *stop;
    int requests, failures, torn;
    char why[256];
    int only;         /* > 0: GET /api/vms/vm (QEMU's state through its monitor) this many times, nothing else */
};

/* A listing is whole: exactly one current snapshot, and every parent is in the list. */
static bool listing_whole(json_object *doc, char *why, size_t len)
{
    json_object *a = json_object_object_get(doc, "snapshot");
    size_t n = a ? json_object_array_length(a) : 0;
    int current = 0;

    for (size_t i = 0; i < n; i++) {
        json_object *o = json_object_array_get_idx(a, i);
        const char *parent = st_str(o, "parent");
        bool found = !parent;
        current += json_object_get_boolean(json_object_object_get(o, "current"));
        for (size_t k = 0; k < n && !found; k++)
            found = strcmp(st_str(json_object_array_get_idx(a, k), "id"), parent) == 0;
        if (!found) {
            snprintf(why, len, "parent '%s' missing", parent);
            return false;
        }
    }
    if (current != 1) {
        snprintf(why, len, "%d current snapshots among %zu", current, n);
        return false;
    }
    return true;
}

static void *reader_main(void *opaque)
{
    struct reader *rd = opaque;
    CURL *c = curl_easy_init(); /* one keep-alive connection per client */
    char *list = qs_asprintf("%s/api/vms/vm/snapshots", rd->d->url), *one = qs_asprintf("%s/api/vms/vm/snapshots/base",
                                                                                        rd->d->url);
    int i = 0;

    if (rd->only) {
        free(one);
        one = qs_asprintf("%s/api/vms/vm", rd->d->url);
    }
    while (rd->only ? i < rd->only : (!*rd->stop || i < 4)) {
        long st = 0;
        curl_easy_setopt(c, CURLOPT_URL, (i % 2 || rd->only) ? one : list);
        curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, rd->d->sock);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, NULL); /* fwrite to WRITEDATA */
        {
            FILE *mem;
            char *text = NULL;
            size_t len = 0;
            mem = open_memstream(&text, &len);
            curl_easy_setopt(c, CURLOPT_WRITEDATA, mem);
            CURLcode rc = curl_easy_perform(c);
            fclose(mem);
            if (rc == CURLE_OK)
                curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
            rd->requests++;
            if (st != 200) {
                rd->failures++;
                snprintf(rd->why, sizeof(rd->why), "HTTP %ld (%s): %.150s", st, curl_easy_strerror(rc),
                         text ? text : "");
            } else {
                json_object *doc = json_tokener_parse(text);
                if (!doc)
                    rd->torn++;
                else if (i % 2 == 0 && !rd->only && !listing_whole(doc, rd->why, sizeof(rd->why)))
                    rd->torn++;
                json_object_put(doc);
            }
            free(text);
        }
        i++;
    }
    curl_easy_cleanup(c);
    free(list);
    free(one);
    return NULL;
}

static void test_fifty_readers_during_writes(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    struct qs_error *err = NULL;
    struct reader rd[READERS];
    pthread_t th[READERS];
    volatile bool stop = false;
    int total = 0, failed = 0, torn = 0, writes = 0;

    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    qt_attach(f);
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "base"));
    {
        const char *extra[] = {"--max-connections", "256", NULL};
        st_start(&daemon_, "qsnapd", f->root, qh_vm_dir(f->vm), extra);
    }
    for (int i = 0; i < READERS; i++) {
        rd[i] = (struct reader){.d = &daemon_, .stop = &stop};
        assert_int_equal(pthread_create(&th[i], NULL, reader_main, &rd[i]), 0);
    }
    /* writes through the API while they read: creates, reverts (which move "current"), deletes */
    for (int k = 0; k < 6; k++) {
        char body[64], path[96];
        snprintf(body, sizeof(body), "{\"name\":\"w%d\"}", k);
        json_object_put(st_task(&daemon_, "POST", "/api/vms/vm/snapshots", body, "succeeded"));
        json_object_put(st_task(&daemon_, "POST", "/api/vms/vm/snapshots/base/restore", "{}", "succeeded"));
        snprintf(path, sizeof(path), "/api/vms/vm/snapshots/w%d/restore", k);
        json_object_put(st_task(&daemon_, "POST", path, NULL, "succeeded"));
        writes += 3;
        if (k % 2) {
            snprintf(path, sizeof(path), "/api/vms/vm/snapshots/w%d", k - 1);
            json_object_put(st_task(&daemon_, "DELETE", path, NULL, "succeeded"));
            writes++;
        }
    }
    stop = true;
    for (int i = 0; i < READERS; i++) {
        pthread_join(th[i], NULL);
        total += rd[i].requests;
        failed += rd[i].failures;
        torn += rd[i].torn;
        if (rd[i].failures || rd[i].torn)
            print_error("reader %d: %s\n", i, rd[i].why);
    }
    print_message("%d reads by %d clients during %d writes: %d failed, %d torn\n", total, READERS, writes, failed,
                  torn);
    assert_int_equal(failed, 0);
    assert_int_equal(torn, 0);
    assert_true(total >= READERS * 4);

    /* readers that all need QEMU's monitor at once (GET /api/vms/vm asks QEMU for the VM's state): it serves
     * one client at a time, so they take turns on qsnapd's one connection - none may wait for a greeting
     * that a connection qsnapd keeps would never let come (423 after 5 s). A keep time longer than that makes
     * the wait certain where two requests meet (qsnapd's default, 500 ms, leaves it to chance) */
    st_stop(&daemon_);
    {
        const char *extra[] = {"--qmp-keep", "60000", NULL};
        st_start(&daemon_, "qsnapd", f->root, qh_vm_dir(f->vm), extra);
    }
    total = failed = 0;
    for (int i = 0; i < 8; i++) {
        rd[i] = (struct reader){.d = &daemon_, .stop = &stop, .only = 5};
        assert_int_equal(pthread_create(&th[i], NULL, reader_main, &rd[i]), 0);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        total += rd[i].requests;
        failed += rd[i].failures + rd[i].torn;
        if (rd[i].failures || rd[i].torn)
            print_error("monitor reader %d: %s\n", i, rd[i].why);
    }
    print_message("%d concurrent reads of the VM's state: %d failed\n", total, failed);
    assert_int_equal(total, 40);
    assert_int_equal(failed, 0);
    st_stop(&daemon_);
}

int main(void)
{
    static struct qt_fixture f1 = {.cfg = &qt_cfg_two_disks}, f2 = {.cfg = &qt_cfg_two_disks},
                             f3 = {.cfg = &qt_cfg_two_disks};
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_prestate_setup_teardown(test_hostile_requests, qt_setup, teardown, &f1),
        cmocka_unit_test_prestate_setup_teardown(test_tokens_over_tls, qt_setup, teardown, &f2),
        cmocka_unit_test_prestate_setup_teardown(test_fifty_readers_during_writes, qt_setup, teardown, &f3),
    };
    curl_global_init(CURL_GLOBAL_DEFAULT);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
