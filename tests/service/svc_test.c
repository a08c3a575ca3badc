/* svc_test.c: a real qsnapd for tests, real HTTP through libcurl, replies recorded for the OpenAPI check. */
#include "svc_test.h"

#include "qs_buf.h"
#include "qs_proc.h"
#include "qs_util.h"

#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

void st_start(struct st_daemon *d, const char *binary, const char *root, const char *dir, const char *const *extra)
{
    const char *build = getenv("QSNAP_BUILD_DIR");
    char *argv[32], *bin;
    size_t n = 0;
    bool tcp = false;
    struct st_reply r = {0};

    assert_non_null(build);
    bin = qs_asprintf("%s/service/%s", build, binary);
    if (!d->log)
        d->log = qs_asprintf("%s/qsnapd.log", dir);
    argv[n++] = bin;
    argv[n++] = "--root";
    argv[n++] = (char *)root;
    for (size_t i = 0; extra && extra[i]; i++) {
        if (strcmp(extra[i], "--listen") == 0)
            tcp = true;
        argv[n++] = (char *)extra[i];
    }
    if (!tcp) {
        free(d->sock);
        d->sock = qs_asprintf("%s/api.sock", dir);
        free(d->url);
        d->url = qs_xstrdup("http://localhost");
        argv[n++] = "--listen";
        argv[n++] = qs_asprintf("unix:%s", d->sock);
    }
    argv[n] = NULL;
    d->pid = fork();
    assert_true(d->pid >= 0);
    if (d->pid == 0) {
        int fd = open(d->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600), null = open("/dev/null", O_RDWR);
        /* dies with the test; never holds ctest's output open */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (null >= 0)
            dup2(null, 0), dup2(null, 1);
        if (fd >= 0)
            dup2(fd, 2);
        execv(bin, argv);
        _exit(127);
    }
    if (!tcp)
        free(argv[n - 1]);
    free(bin);
    /* up when it answers */
    for (int i = 0; i < 500; i++) {
        char *saved = d->record;
        CURL *c = curl_easy_init();
        long st = 0;
        char *url = qs_asprintf("%s/api", d->url);
        curl_easy_setopt(c, CURLOPT_URL, url);
        if (d->sock)
            curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, d->sock);
        if (d->ca)
            curl_easy_setopt(c, CURLOPT_CAINFO, d->ca);
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 2000L);
        if (curl_easy_perform(c) == CURLE_OK)
            curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
        curl_easy_cleanup(c);
        free(url);
        (void)saved;
        if (st > 0)
            return;
        if (waitpid(d->pid, NULL, WNOHANG) == d->pid) {
            char *log = qt_slurp(d->log);
            print_error("qsnapd exited at start:\n%s\n", log ? log : "");
            free(log);
            d->pid = -1;
            fail();
        }
        sleep_ms(20);
    }
    (void)r;
    print_error("qsnapd did not answer in 10 s\n");
    fail();
}

/* Signals SIG, waits up to GRACE_MS, then SIGKILL; returns the wait status (-1: not running). */
static int reap(struct st_daemon *d, int sig, int grace_ms)
{
    int status = -1;

    if (d->pid <= 0)
        return -1;
    kill(d->pid, sig);
    for (int i = 0; i < grace_ms / 10; i++) {
        if (waitpid(d->pid, &status, WNOHANG) == d->pid) {
            d->pid = -1;
            return status;
        }
        sleep_ms(10);
    }
    kill(d->pid, SIGKILL);
    waitpid(d->pid, &status, 0);
    d->pid = -1;
    return status;
}

/* Every thread of qsnapd but main has SIGTERM and SIGINT blocked (main waits for them with sigwait): one that
 * has not would take one and the process would die of it, mid-operation. Read from /proc/PID/task/N/status. */
static void assert_stop_signals_blocked(pid_t pid)
{
    char *dir = qs_asprintf("/proc/%d/task", (int)pid);
    DIR *d = opendir(dir);
    struct dirent *e;
    int threads = 0;

    assert_non_null(d);
    while ((e = readdir(d))) {
        char *path, line[256];
        FILE *f;
        unsigned long long blk = 0;
        bool seen = false;
        /* main is in sigwait(), which unblocks what it waits for while it waits */
        if (e->d_name[0] == '.' || atoi(e->d_name) == (int)pid)
            continue;
        path = qs_asprintf("%s/%s/status", dir, e->d_name);
        if (!(f = fopen(path, "r"))) { /* a thread that just ended */
            free(path);
            continue;
        }
        while (fgets(line, sizeof(line), f))
            if (sscanf(line, "SigBlk: %llx", &blk) == 1)
                seen = true;
        fclose(f);
        assert_true(seen);
        if (!(blk & (1ULL << (SIGTERM - 1))) || !(blk & (1ULL << (SIGINT - 1))))
            print_error("qsnapd thread %s does not block SIGTERM/SIGINT (SigBlk %llx)\n", e->d_name, blk);
        assert_true(blk & (1ULL << (SIGTERM - 1)));
        assert_true(blk & (1ULL << (SIGINT - 1)));
        threads++;
        free(path);
    }
    closedir(d);
    free(dir);
    assert_true(threads > 0);
}

void st_stop(struct st_daemon *d)
{
    int status;

    if (d->pid > 0)
        assert_stop_signals_blocked(d->pid);
    status = reap(d, SIGTERM, 10000);

    /* a clean stop exits 0: a sanitizer's report (in a sanitizer build) or a crash fails the test */
    if (status != -1 && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
        char *log = qt_slurp(d->log);
        print_error("qsnapd did not stop cleanly (status 0x%x):\n%s\n", (unsigned)status, log ? log : "");
        free(log);
        fail();
    }
}

void st_kill(struct st_daemon *d) { reap(d, SIGKILL, 10000); }

void st_release(struct st_daemon *d)
{
    st_kill(d);
    free(d->sock);
    free(d->url);
    free(d->ca);
    free(d->log);
    free(d->record);
    memset(d, 0, sizeof(*d));
}

void st_reply_release(struct st_reply *r)
{
    free(r->body);
    free(r->type);
    free(r->location);
    json_object_put(r->json);
    memset(r, 0, sizeof(*r));
}

static size_t on_body(char *p, size_t size, size_t n, void *opaque)
{
    qs_buf_add(opaque, p, size * n);
    return size * n;
}

static size_t on_header(char *p, size_t size, size_t n, void *opaque)
{
    struct st_reply *r = opaque;
    size_t len = size * n;

    if (len > 10 && strncasecmp(p, "Location: ", 10) == 0) {
        free(r->location);
        r->location = qs_xstrndup(p + 10, len - 10);
        r->location[strcspn(r->location, "\r\n")] = '\0';
    }
    return len;
}

static void record(struct st_daemon *d, const char *method, const char *path, struct st_reply *r)
{
    char *meta, *base;
    FILE *f;
    size_t q = strcspn(path, "?");

    if (!d->record)
        return;
    base = qs_asprintf("%s/%04u", d->record, d->nrec++);
    meta = qs_asprintf("%s.meta", base);
    f = fopen(meta, "w");
    assert_non_null(f);
    fprintf(f, "%s %.*s %ld %s\n", method, (int)q, path, r->status, r->type ? r->type : "none");
    fclose(f);
    free(meta);
    meta = qs_asprintf("%s.body", base);
    f = fopen(meta, "w");
    assert_non_null(f);
    fputs(r->body ? r->body : "", f);
    fclose(f);
    free(meta);
    free(base);
}

static int http_do(struct st_daemon *d, const char *method, const char *path, const char *body,
                   const char *const *headers, struct st_reply *r, bool must);

void st_http(struct st_daemon *d, const char *method, const char *path, const char *body, const char *const *headers,
             struct st_reply *r)
{
    http_do(d, method, path, body, headers, r, true);
}

int st_http_try(struct st_daemon *d, const char *method, const char *path, const char *body, struct st_reply *r)
{
    return http_do(d, method, path, body, NULL, r, false);
}

static int http_do(struct st_daemon *d, const char *method, const char *path, const char *body,
                   const char *const *headers, struct st_reply *r, bool must)
{
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    struct qs_buf b;
    char *url = qs_asprintf("%s%s", d->url, path), errbuf[CURL_ERROR_SIZE] = "", *ct = NULL;
    CURLcode rc;

    memset(r, 0, sizeof(*r));
    qs_buf_init(&b, 0);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 300000L);
    if (d->sock)
        curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, d->sock);
    if (d->ca)
        curl_easy_setopt(c, CURLOPT_CAINFO, d->ca);
    if (body) {
        bool typed = false;
        for (size_t i = 0; headers && headers[i]; i++)
            typed |= strncasecmp(headers[i], "Content-Type:", 13) == 0;
        if (!typed)
            h = curl_slist_append(h, "Content-Type: application/json");
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    for (size_t i = 0; headers && headers[i]; i++)
        h = curl_slist_append(h, headers[i]);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    if ((rc = curl_easy_perform(c)) != CURLE_OK) {
        if (!must) {
            curl_slist_free_all(h);
            curl_easy_cleanup(c);
            qs_buf_release(&b);
            free(url);
            return -1;
        }
        print_error("%s %s: %s\n", method, path, *errbuf ? errbuf : curl_easy_strerror(rc));
        fail();
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
    r->type = ct ? qs_xstrdup(ct) : NULL;
    r->body = qs_buf_detach(&b, NULL);
    if (!r->body)
        r->body = qs_xstrdup("");
    if (r->type && strncmp(r->type, "application/json", 16) == 0)
        r->json = json_tokener_parse(r->body);
    record(d, method, path, r);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    free(url);
    return 0;
}

json_object *st_expect(struct st_reply *r, long status)
{
    if (r->status != status) {
        print_error("HTTP %ld, expected %ld: %s\n", r->status, status, r->body);
        fail();
    }
    return r->json;
}

const char *st_str(json_object *o, const char *key)
{
    json_object *v;
    return o && json_object_object_get_ex(o, key, &v) && v ? json_object_get_string(v) : NULL;
}

json_object *st_task_wait(struct st_daemon *d, const char *location)
{
    for (int i = 0; i < 600; i++) {
        struct st_reply r;
        char *path = qs_asprintf("%s?wait=1000", location);
        json_object *t;
        const char *state;
        st_http(d, "GET", path, NULL, NULL, &r);
        free(path);
        t = st_expect(&r, 200);
        state = st_str(t, "state");
        if (state && (strcmp(state, "succeeded") == 0 || strcmp(state, "failed") == 0)) {
            json_object *out = json_object_get(t);
            st_reply_release(&r);
            return out;
        }
        st_reply_release(&r);
    }
    fail_msg("task %s did not end", location);
    return NULL;
}

json_object *st_task(struct st_daemon *d, const char *method, const char *path, const char *body, const char *state)
{
    struct st_reply r;
    json_object *t;

    st_http(d, method, path, body, NULL, &r);
    st_expect(&r, 202);
    assert_non_null(r.location);
    assert_true(strncmp(r.location, "/api/tasks/", 11) == 0);
    t = st_task_wait(d, r.location);
    if (strcmp(st_str(t, "state"), state) != 0) {
        print_error("%s %s: task %s, expected %s: %s\n", method, path, st_str(t, "state"), state,
                    json_object_to_json_string(t));
        fail();
    }
    st_reply_release(&r);
    return t;
}

/* FNV-1a over names, sizes, modes and contents, walked in sorted order. */
static void hash_dir(const char *dir, uint64_t *h)
{
    struct dirent **ents = NULL;
    int n = scandir(dir, &ents, NULL, alphasort);

    for (int i = 0; i < n; i++) {
        const char *name = ents[i]->d_name;
        char *p = qs_asprintf("%s/%s", dir, name);
        struct stat st;
        /* .qsnap-index is the listing cache a read may refresh (it vouches for files by time): not state */
        if (strcmp(name, ".") && strcmp(name, "..") && strcmp(name, ".qsnap-index") && lstat(p, &st) == 0) {
            char line[512];
            snprintf(line, sizeof(line), "%s %lld %o\n", name, (long long)st.st_size, (unsigned)st.st_mode);
            if (getenv("QSNAP_TEST_HASH_VERBOSE"))
                fprintf(stderr, "hash: %s/%s", dir, line);
            for (const char *c = line; *c; c++)
                *h = (*h ^ (unsigned char)*c) * 1099511628211ULL;
            if (S_ISDIR(st.st_mode)) {
                hash_dir(p, h);
            } else if (S_ISREG(st.st_mode)) {
                char *data = qt_slurp(p);
                for (const char *c = data; c && *c; c++)
                    *h = (*h ^ (unsigned char)*c) * 1099511628211ULL;
                free(data);
            }
        }
        free(p);
        free(ents[i]);
    }
    free(ents);
}

char *st_tree_hash(const char *dir)
{
    uint64_t h = 1469598103934665603ULL;
    hash_dir(dir, &h);
    return qs_asprintf("%016llx", (unsigned long long)h);
}

void st_validate_replies(struct st_daemon *d)
{
    const char *src = getenv("QSNAP_SOURCE_DIR");
    char *script = qs_asprintf("%s/tests/service/check_openapi.py", src);
    char *doc = qs_asprintf("%s/service/openapi.json", src);
    char *argv[] = {"/usr/bin/python3", script, doc, d->record, NULL};
    struct qs_proc_result res = {0};
    struct qs_error *err = NULL;

    assert_non_null(d->record);
    OK(qs_proc_run(argv, 120000, 0, &res, &err));
    if (res.status != 0)
        print_error("%s%s", res.out, res.errout);
    assert_int_equal(res.status, 0);
    assert_non_null(strstr(res.out, " 0 failures"));
    qs_proc_result_release(&res);
    free(script);
    free(doc);
}

/* qsnap ARGV-tail AP on F's root (D NULL) or through D. */
static int qsnap_va(struct qt_fixture *f, struct st_daemon *d, struct qs_proc_result *res, va_list ap)
{
    char *argv[64], *conn = d ? qs_asprintf("unix:%s", d->sock) : NULL;
    struct qs_error *err = NULL;
    size_t n = 3;

    argv[0] = f->qsnap;
    argv[1] = d ? "--connect" : "--root";
    argv[2] = d ? conn : f->root;
    for (char *x; (x = va_arg(ap, char *)) != NULL && n < 62;)
        argv[n++] = x;
    argv[n] = NULL;
    memset(res, 0, sizeof(*res));
    OK(qs_proc_run(argv, 300000, 0, res, &err));
    free(conn);
    return res->status;
}

int st_qsnap_run(struct qt_fixture *f, struct st_daemon *d, struct qs_proc_result *res, ...)
{
    va_list ap;
    int st;

    va_start(ap, res);
    st = qsnap_va(f, d, res, ap);
    va_end(ap);
    return st;
}

int st_qsnap_both(struct qt_fixture *f, struct st_daemon *d, char **out, ...)
{
    struct qs_proc_result a = {0}, b = {0};
    const char *what;
    va_list ap;
    int st;

    va_start(ap, out);
    what = va_arg(ap, const char *);
    va_end(ap);
    va_start(ap, out);
    qsnap_va(f, NULL, &a, ap);
    va_end(ap);
    va_start(ap, out);
    qsnap_va(f, d, &b, ap);
    va_end(ap);
    if (a.status != b.status || strcmp(a.out, b.out) != 0 || strcmp(a.errout, b.errout) != 0) {
        print_error("qsnap %s ...: direct and --connect differ\n--- direct (%d)\n%s%s\n--- connect (%d)\n%s%s\n",
                    what, a.status, a.out, a.errout, b.status, b.out, b.errout);
        fail();
    }
    st = a.status;
    if (out)
        *out = qs_xstrdup(a.out);
    qs_proc_result_release(&a);
    qs_proc_result_release(&b);
    return st;
}
