/* qsnapd.c: the qsnap service - options, the listening socket, signals, start-up recovery, token commands. */
#include "http.h"
#include "svc.h"

#include "qs_file.h"
#include "qs_util.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define DEFAULT_LISTEN "unix:/run/qsnap/api.sock"
#define SOCKET_GROUP "qsnap"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: qsnapd [--listen unix:PATH | tcp:HOST:PORT] [--tls-cert FILE --tls-key FILE] [--root DIR]\n"
            "              [--workers N] [--max-connections N] [--request-timeout S] [--idle-timeout S]\n"
            "              [--no-scheduler] [--export-dir DIR]\n"
            "       qsnapd token create NAME [--read-only] [--root DIR]\n"
            "       qsnapd token list [--root DIR]\n"
            "       qsnapd token revoke NAME [--root DIR]\n"
            "\n"
            "The qsnap service: snapshots of QEMU VMs over a REST API (oVirt's resources and preview cycle,\n"
            "tasks, server-sent events, OpenAPI at /api/openapi.json, Prometheus metrics at /metrics), and\n"
            "the runner of snapshot schedules (a pass at start, then one every minute). A web page for a\n"
            "browser is served at / (over TCP it asks for a token).\n"
            "\n"
            "Options:\n"
            "  --listen ADDR          unix:PATH (default " DEFAULT_LISTEN ", mode 0660, group " SOCKET_GROUP ")\n"
            "                         or tcp:HOST:PORT (needs --tls-cert and --tls-key; clients need a token)\n"
            "                         A socket passed by systemd (LISTEN_FDS) is used instead.\n"
            "  --tls-cert FILE        PEM certificate for tcp:\n"
            "  --tls-key FILE         PEM private key for tcp:\n"
            "  --root DIR             state directory (default: $QSNAP_ROOT, /var/lib/qsnap as root)\n"
            "  --workers N            threads running operations (default 4; one per domain at a time)\n"
            "  --max-connections N    concurrent connections (default 128)\n"
            "  --request-timeout S    a request's headers and body must arrive within S seconds (default 30)\n"
            "  --idle-timeout S       an idle connection is closed after S seconds (default 60)\n"
            "  --qmp-keep MS          keep a VM's QMP connection MS ms after an operation (default 500; 0: never)\n"
            "  --no-scheduler         do not run snapshot schedules (the host uses qsnap-schedule.timer instead)\n"
            "  --export-dir DIR       TCP clients with a read-write token may export snapshot disks into DIR\n"
            "  -V, --version          show the version\n"
            "  -h, --help             show this help\n"
            "\n"
            "Token commands (for TCP clients; the token is printed once, only its SHA-256 is kept):\n"
            "  token create NAME [--read-only]   a new token; read-only tokens can only GET\n"
            "  token list                        the tokens' names, modes and creation times\n"
            "  token revoke NAME                 the token stops working at once\n"
            "\n"
            "Exit status: 0 success, 1 failure, 2 usage error. See qsnapd(8).\n");
}

static int fail(struct qs_error **err)
{
    fprintf(stderr, "error: %s\n", *err && (*err)->message ? (*err)->message : "unknown error");
    qs_error_clear(err);
    return 1;
}

/* ---- token commands ---- */

static int cmd_token(int argc, char **argv, const char *root_opt)
{
    static const struct option opts[] = {
        {"read-only", no_argument, NULL, 'R'}, {"root", required_argument, NULL, 'r'}, {NULL, 0, NULL, 0}};
    const char *root_arg = root_opt, *verb, *name = NULL;
    struct engine_options eo = {0};
    struct engine *e = NULL;
    struct qs_error *err = NULL;
    bool ro = false;
    char *text = NULL;
    int c, ret = 1;

    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'R')
            ro = true;
        else if (c == 'r')
            root_arg = optarg;
        else
            return 2;
    }
    if (optind >= argc) {
        fprintf(stderr, "error: token needs create, list or revoke\n");
        return 2;
    }
    verb = argv[optind];
    if (optind + 1 < argc)
        name = argv[optind + 1];
    if ((strcmp(verb, "create") == 0 || strcmp(verb, "revoke") == 0) && !name) {
        fprintf(stderr, "error: token %s needs a NAME\n", verb);
        return 2;
    }
    eo.root = root_arg;
    if (!(e = engine_new(&eo, &err)))
        return fail(&err);
    if (strcmp(verb, "create") == 0) {
        if (svc_token_create(engine_root(e), name, ro, &text, &err) < 0)
            goto out;
        printf("%s\n", text);
    } else if (strcmp(verb, "revoke") == 0) {
        if (svc_token_revoke(engine_root(e), name, &err) < 0)
            goto out;
    } else if (strcmp(verb, "list") == 0) {
        if (svc_token_list(engine_root(e), &text, &err) < 0)
            goto out;
        fputs(text, stdout);
    } else {
        fprintf(stderr, "error: unknown token command '%s'\n", verb);
        ret = 2;
        goto done;
    }
    ret = 0;
out:
    if (ret)
        fail(&err);
done:
    if (text)
        explicit_bzero(text, strlen(text));
    free(text);
    engine_free(e);
    return ret;
}

/* ---- listening sockets ---- */

/* A socket systemd passed (socket activation: LISTEN_PID is us, LISTEN_FDS >= 1, the first is fd 3). */
static int systemd_socket(bool *is_unix)
{
    const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);

    if (!pid || !fds || atol(pid) != (long)getpid() || atoi(fds) < 1)
        return -1;
    if (getsockname(3, (struct sockaddr *)&ss, &len) < 0)
        return -1;
    *is_unix = ss.ss_family == AF_UNIX;
    qs_fd_set_cloexec(3);
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    return 3;
}

static int listen_unix(const char *path, struct qs_error **err)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    char *dir = qs_xstrdup(path), *slash = strrchr(dir, '/'), *tmp = NULL;
    struct group *g;
    struct stat st;
    mode_t old;
    int fd = -1;

    if (strlen(path) >= sizeof(sa.sun_path) || path[0] != '/') {
        qs_error_set(err, QS_ERR_INVALID, "socket path '%s' must be absolute and shorter than %zu bytes", path,
                     sizeof(sa.sun_path));
        goto fail;
    }
    if (slash && slash != dir) {
        *slash = '\0';
        if (qs_dir_create(dir, 0755, err) < 0)
            goto fail;
    }
    /* a socket left by a qsnapd that was killed: replaced; anything else there is not ours */
    if (lstat(path, &st) == 0) {
        int probe;
        if (!S_ISSOCK(st.st_mode)) {
            qs_error_set(err, QS_ERR_EXISTS, "'%s' exists and is not a socket", path);
            goto fail;
        }
        probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        memcpy(sa.sun_path, path, strlen(path) + 1);
        if (probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
            close(probe);
            qs_error_set(err, QS_ERR_BUSY, "another qsnapd listens on '%s'", path);
            goto fail;
        }
        qs_close(probe);
        unlink(path);
    }
    /* bound and made ready under a temporary name, then renamed into place: whoever sees PATH can connect
     * (a client waiting for the socket to appear met a bound socket that did not listen yet) */
    tmp = qs_asprintf("%s.new", path);
    if (strlen(tmp) >= sizeof(sa.sun_path)) {
        qs_error_set(err, QS_ERR_INVALID, "socket path '%s' must be shorter than %zu bytes", path,
                     sizeof(sa.sun_path) - 4);
        goto fail;
    }
    unlink(tmp);
    memcpy(sa.sun_path, tmp, strlen(tmp) + 1);
    if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0) {
        qs_error_set_errno(err, QS_ERR_IO, errno, "socket");
        goto fail;
    }
    /* created 0660 at once: no moment where others could connect */
    old = umask(0117);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        umask(old);
        qs_error_set_errno(err, QS_ERR_IO, errno, "cannot bind '%s'", path);
        goto fail;
    }
    umask(old);
    if ((g = getgrnam(SOCKET_GROUP)) != NULL) {
        if (chown(tmp, (uid_t)-1, g->gr_gid) < 0)
            fprintf(stderr, "qsnapd: warning: cannot give '%s' to group %s: %s\n", path, SOCKET_GROUP,
                    strerror(errno));
    } else if (getuid() == 0) {
        fprintf(stderr, "qsnapd: warning: no group '%s': only root can use '%s'\n", SOCKET_GROUP, path);
    }
    if (chmod(tmp, 0660) < 0 || listen(fd, 64) < 0 || rename(tmp, path) < 0) {
        qs_error_set_errno(err, QS_ERR_IO, errno, "cannot listen on '%s'", path);
        goto fail;
    }
    free(tmp);
    free(dir);
    return fd;
fail:
    if (fd >= 0)
        unlink(tmp);
    qs_close(fd);
    free(tmp);
    free(dir);
    return -1;
}

static int listen_tcp(const char *hostport, struct qs_error **err)
{
    char *host = qs_xstrdup(hostport), *port = strrchr(host, ':');
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai = NULL;
    int fd = -1, one = 1, rc;

    if (!port) {
        qs_error_set(err, QS_ERR_INVALID, "tcp:HOST:PORT expected, not 'tcp:%s'", hostport);
        goto out;
    }
    *port++ = '\0';
    if (host[0] == '[' && host[strlen(host) - 1] == ']') {
        memmove(host, host + 1, strlen(host));
        host[strlen(host) - 1] = '\0';
    }
    if ((rc = getaddrinfo(*host ? host : NULL, port, &hints, &ai)) != 0) {
        qs_error_set(err, QS_ERR_INVALID, "cannot resolve '%s': %s", hostport, gai_strerror(rc));
        goto out;
    }
    if ((fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 64) < 0) {
        qs_error_set_errno(err, QS_ERR_IO, errno, "cannot listen on tcp:%s", hostport);
        qs_close(fd);
        fd = -1;
    }
out:
    if (ai)
        freeaddrinfo(ai);
    free(host);
    return fd;
}

static char *read_pem(const char *path, struct qs_error **err)
{
    char *data = NULL;
    if (qs_file_read(AT_FDCWD, path, 1u << 20, &data, NULL, err) < 0) {
        qs_error_prefix(err, "cannot read '%s'", path);
        return NULL;
    }
    return data;
}

/* Finishes or undoes what a killed qsnapd (or qsnap) left half done, before serving anyone. */
static void recover_all(struct engine_session *s)
{
    struct engine *e = engine_session_get(s, NULL, NULL, NULL, NULL);
    char **names = NULL;
    size_t n = 0;

    if (e && engine_domain_list(e, &names, &n, NULL) == 0) {
        for (size_t i = 0; i < n; i++) {
            struct qs_error *err = NULL;
            char *op = NULL;
            /* recovers when the domain's lock is free; what stays pending is reported */
            if (engine_domain_pending(e, names[i], &op, NULL, NULL, NULL, NULL, &err) > 0)
                fprintf(stderr, "qsnapd: domain '%s': an unfinished %s is still pending\n", names[i], op);
            if (err)
                fprintf(stderr, "qsnapd: domain '%s': %s\n", names[i], err->message);
            qs_error_free(err);
            free(op);
        }
        engine_strv_free(names, n);
    }
    engine_session_put(s, e);
}

/* $QSNAP_TEST_NOW, as qsnap reads it: tests set the wall clock (seconds since the epoch) to drive schedules through
 * time without waiting; it runs on from there at the real pace. The engines call it with their progress opaque:
 * the base is the process's. */
static int64_t test_now_ms, test_start_mono_ms;

static int64_t test_clock(void *opaque)
{
    (void)opaque;
    return test_now_ms + (qs_now_ms() - test_start_mono_ms);
}

static int test_clock_setup(engine_clock_fn *clock)
{
    const char *now = getenv("QSNAP_TEST_NOW");
    char *end;
    long long v;

    if (!now || !*now)
        return 0;
    v = strtoll(now, &end, 10);
    if (*end || v <= 0) {
        fprintf(stderr, "error: QSNAP_TEST_NOW must be seconds since the epoch, not '%s'\n", now);
        return -1;
    }
    test_now_ms = v * 1000;
    test_start_mono_ms = qs_now_ms();
    *clock = test_clock;
    return 0;
}

static int positive(const char *s, int max)
{
    char *end;
    long v = strtol(s, &end, 10);
    return *s && !*end && v > 0 && v <= max ? (int)v : -1;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"listen", required_argument, NULL, 'l'},        {"tls-cert", required_argument, NULL, 'c'},
        {"tls-key", required_argument, NULL, 'k'},       {"root", required_argument, NULL, 'r'},
        {"workers", required_argument, NULL, 'w'},       {"max-connections", required_argument, NULL, 'm'},
        {"request-timeout", required_argument, NULL, 't'}, {"idle-timeout", required_argument, NULL, 'i'},
        {"qmp-keep", required_argument, NULL, 'K'},
        {"no-scheduler", no_argument, NULL, 'S'},        {"export-dir", required_argument, NULL, 'E'},
        {"version", no_argument, NULL, 'V'},             {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *listen_arg = NULL, *cert_path = NULL, *key_path = NULL, *root = NULL;
    struct http_options ho = {.listen_fd = -1, .max_connections = 128, .idle_timeout_s = 60};
    struct svc_server srv = {.request_timeout_s = 30, .last_pause_us = -1};
    struct engine_options eo = {0};
    struct http_server *h = NULL;
    struct qs_error *err = NULL;
    char *cert = NULL, *key = NULL;
    int workers = 4, qmp_keep = 500, c, sig, ret = 1;
    bool scheduler = true;
    sigset_t set;

    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "token") == 0) {
            /* "qsnapd [--root DIR] token ...": the global options before it still count */
            for (int k = 1; k < i; k++)
                if (strcmp(argv[k], "--root") == 0 && k + 1 < i)
                    root = argv[k + 1];
            return cmd_token(argc - i, argv + i, root);
        }
    while ((c = getopt_long(argc, argv, "Vh", opts, NULL)) != -1) {
        switch (c) {
        case 'l': listen_arg = optarg; break;
        case 'c': cert_path = optarg; break;
        case 'k': key_path = optarg; break;
        case 'r': root = optarg; break;
        case 'w':
            if ((workers = positive(optarg, 64)) < 0)
                goto usage;
            break;
        case 'm':
            if ((ho.max_connections = positive(optarg, 10000)) < 0)
                goto usage;
            break;
        case 't':
            if ((srv.request_timeout_s = positive(optarg, 3600)) < 0)
                goto usage;
            break;
        case 'i':
            if ((ho.idle_timeout_s = positive(optarg, 86400)) < 0)
                goto usage;
            break;
        case 'K':
            if (strcmp(optarg, "0") != 0 && (qmp_keep = positive(optarg, 60000)) < 0)
                goto usage;
            if (strcmp(optarg, "0") == 0)
                qmp_keep = 0;
            break;
        case 'S': scheduler = false; break;
        case 'E':
            if (optarg[0] != '/' || strstr(optarg, "/../") || qs_str_has_suffix(optarg, "/..") ||
                (strlen(optarg) > 1 && qs_str_has_suffix(optarg, "/"))) {
                fprintf(stderr, "error: --export-dir must be an absolute directory path without '..' or a final "
                                "'/', not '%s'\n", optarg);
                return 2;
            }
            srv.export_dir = optarg;
            break;
        case 'V': printf("qsnapd %s\n", engine_version()); return 0;
        case 'h': usage(stdout); return 0;
        default: goto usage;
        }
    }
    if (optind < argc)
        goto usage;
    if (!!cert_path != !!key_path) {
        fprintf(stderr, "error: --tls-cert and --tls-key go together\n");
        return 2;
    }

    /* the signals are waited for in main; blocked before any thread exists (the engine's QMP reaper, the
       workers, the server's), so none can take a SIGTERM and die of it mid-operation */
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    eo.root = root;
    if (test_clock_setup(&eo.clock) < 0)
        return 2;
    srv.clock = eo.clock;
    if (!(srv.session = engine_session_new(&eo, &err)) ||
        engine_session_set_qmp_keep(srv.session, qmp_keep, &err) < 0) {
        engine_session_free(srv.session);
        return fail(&err);
    }
    srv.root = engine_session_root(srv.session);

    if ((ho.listen_fd = systemd_socket(&ho.unix_socket)) < 0) {
        if (!listen_arg)
            listen_arg = DEFAULT_LISTEN;
        if (qs_str_has_prefix(listen_arg, "unix:")) {
            ho.unix_socket = true;
            ho.listen_fd = listen_unix(listen_arg + 5, &err);
        } else if (qs_str_has_prefix(listen_arg, "tcp:")) {
            ho.listen_fd = listen_tcp(listen_arg + 4, &err);
        } else {
            fprintf(stderr, "error: --listen takes unix:PATH or tcp:HOST:PORT, not '%s'\n", listen_arg);
            ret = 2;
            goto out;
        }
        if (ho.listen_fd < 0)
            goto fail;
    }
    if (!ho.unix_socket) {
        /* the network sees only TLS, and every request carries a token */
        if (!cert_path) {
            qs_error_set(&err, QS_ERR_INVALID, "a TCP listener needs --tls-cert and --tls-key");
            goto fail;
        }
        if (!(cert = read_pem(cert_path, &err)) || !(key = read_pem(key_path, &err)))
            goto fail;
        ho.tls_cert = cert;
        ho.tls_key = key;
    }

    pthread_mutex_init(&srv.mu, NULL);
    pthread_cond_init(&srv.cv, NULL);
    pthread_cond_init(&srv.work_cv, NULL);
    pthread_mutex_init(&srv.ev_mu, NULL);
    pthread_cond_init(&srv.ev_cv, NULL);
    pthread_mutex_init(&srv.m_mu, NULL);
    pthread_mutex_init(&srv.tok_mu, NULL);

    recover_all(srv.session);
    if (svc_tasks_start(&srv, workers) < 0) {
        qs_error_set(&err, QS_ERR_IO, "cannot start the worker threads");
        goto fail;
    }
    /* said before the first request can be served and logged: a client that saw an answer sees this line */
    if (!scheduler)
        fprintf(stderr, "qsnapd: the schedule runner is off (--no-scheduler)\n");
    if (!(h = http_server_start(&srv, &ho, &err)))
        goto fail;
    ho.listen_fd = -1; /* the server's now */
    fprintf(stderr, "qsnapd %s: serving %s (state directory %s)\n", engine_version(),
            listen_arg ? listen_arg : "the socket systemd passed", srv.root);
    if (scheduler && svc_scheduler_start(&srv) < 0) {
        qs_error_set(&err, QS_ERR_IO, "cannot start the schedule runner");
        goto fail;
    }
    for (;;) {
        if (sigwait(&set, &sig) != 0)
            continue;
        if (sig != SIGHUP)
            break;
    }
    fprintf(stderr, "qsnapd: stopping\n");
    ret = 0;
    goto out;
usage:
    usage(stderr);
    return 2;
fail:
    fail(&err);
out:
    /* the runner first (it queues no more), then the event streams and waiting requests, the server, the workers */
    svc_scheduler_stop(&srv);
    pthread_mutex_lock(&srv.ev_mu);
    srv.stopping = true;
    pthread_cond_broadcast(&srv.ev_cv);
    pthread_mutex_unlock(&srv.ev_mu);
    pthread_mutex_lock(&srv.mu);
    pthread_cond_broadcast(&srv.cv);
    pthread_cond_broadcast(&srv.work_cv);
    pthread_mutex_unlock(&srv.mu);
    http_server_stop(h);
    srv.stopping = false;
    svc_tasks_stop(&srv);
    qs_close(ho.listen_fd);
    if (listen_arg && qs_str_has_prefix(listen_arg, "unix:") && h)
        unlink(listen_arg + 5);
    engine_session_free(srv.session);
    svc_events_release(&srv);
    free(srv.tokens);
    free(cert);
    free(key);
    return ret;
}
