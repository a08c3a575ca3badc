/* qargv_clone.c: a clone's QEMU command line - the source's, with what two QEMUs cannot share made its own. */
#include "qargv.h"
#include "qs_util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/un.h>

struct rewrite {
    const struct qargv_clone_opts *o;
    char **out;
    size_t n;
    char **dropped_chardevs; /* ids of the -chardev that -mon monitors use */
    char **macs;             /* every MAC the source and the clone name, so that a new one differs */
    bool has_uuid, has_name;
};

static void out_push(struct rewrite *r, char *s)
{
    r->out = qs_xrealloc(r->out, (r->n + 2) * sizeof(char *));
    r->out[r->n++] = s;
    r->out[r->n] = NULL;
}

static void strv_add(char ***v, const char *s)
{
    size_t n = qs_strv_len(*v);
    *v = qs_xrealloc(*v, (n + 2) * sizeof(char *));
    (*v)[n] = qs_xstrdup(s);
    (*v)[n + 1] = NULL;
}

static bool strv_contains(char *const *v, const char *s)
{
    for (size_t i = 0; v && v[i]; i++)
        if (strcasecmp(v[i], s) == 0)
            return true;
    return false;
}

/* A bare flag ("server") or KEY=on/yes/true. */
static bool flag_on(const struct qopt *kv, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++) {
        if (!kv[i].key && i > 0 && strcmp(kv[i].val, key) == 0)
            return true;
        if (kv[i].key && strcmp(kv[i].key, key) == 0)
            return strcmp(kv[i].val, "on") == 0 || strcmp(kv[i].val, "yes") == 0 || strcmp(kv[i].val, "true") == 0;
    }
    return false;
}

static int refuse(const char *opt, const char *val, const char *why, struct qs_error **err)
{
    qs_error_set(err, QS_ERR_UNSUPPORTED, "a clone cannot have option '%s %s' of its own: %s", opt, val, why);
    return -1;
}

/* A new socket path in the run directory, unique to the clone (its uuid) and the socket (ID). Caller frees. */
static char *socket_path(const struct rewrite *r, const char *id, struct qs_error **err)
{
    char *p = qs_asprintf("%s/%.8s-%.40s.sock", r->o->run_dir, r->o->uuid, id && *id ? id : "sock");

    for (char *c = p + strlen(r->o->run_dir) + 1; *c; c++)
        if (*c == '/' || *c == ',')
            *c = '_';
    if (strlen(p) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
        qs_error_set(err, QS_ERR_UNSUPPORTED, "socket path '%s' for the clone is too long", p);
        free(p);
        return NULL;
    }
    return p;
}

/* A random locally administered MAC in QEMU's range that no NIC of the source or the clone has. */
static char *new_mac(struct rewrite *r, struct qs_error **err)
{
    for (int tries = 0; tries < 100; tries++) {
        unsigned char b[3];
        char *m;
        if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b)) {
            qs_error_set_errno(err, QS_ERR_IO, errno, "cannot generate a MAC address");
            return NULL;
        }
        m = qs_asprintf("52:54:00:%02x:%02x:%02x", b[0], b[1], b[2]);
        if (!strv_contains(r->macs, m) && strcmp(m, "52:54:00:12:34:56") != 0) {
            strv_add(&r->macs, m);
            return m;
        }
        free(m);
    }
    qs_error_set(err, QS_ERR_INTERNAL, "no free MAC address found");
    return NULL;
}

/* Sets KEY (mac, macaddr) of the NIC option KV to a new MAC. */
static int set_mac(struct rewrite *r, struct qopt **kv, size_t *n, const char *key, struct qs_error **err)
{
    char *m = new_mac(r, err);

    if (!m)
        return -1;
    *kv = qopts_put(*kv, n, key, m, true);
    free(m);
    return 0;
}

/* The first pass: what the source names that the clone must avoid or drop. */
static void survey(struct rewrite *r, char *const *argv)
{
    for (size_t i = 1; argv[i] && argv[i + 1]; i++) {
        const char *a = argv[i], *v = argv[i + 1];
        size_t n;
        struct qopt *kv;
        if (!qargv_is(a, "-mon") && !qargv_is(a, "-device") && !qargv_is(a, "-nic") && !qargv_is(a, "-net"))
            continue;
        kv = qopts_parse(v, &n);
        if (qargv_is(a, "-mon") && qopts_get(kv, n, "chardev"))
            strv_add(&r->dropped_chardevs, qopts_get(kv, n, "chardev"));
        if (qopts_get(kv, n, "mac"))
            strv_add(&r->macs, qopts_get(kv, n, "mac"));
        if (qopts_get(kv, n, "macaddr"))
            strv_add(&r->macs, qopts_get(kv, n, "macaddr"));
        qopts_free(kv, n);
    }
}

static int rewrite_chardev(struct rewrite *r, const char *opt, const char *val, struct qopt **kv, size_t *n,
                           bool *drop, struct qs_error **err)
{
    const char *backend = *n > 0 && !(*kv)[0].key ? (*kv)[0].val : qopts_get(*kv, *n, "backend");
    const char *id = qopts_get(*kv, *n, "id");

    if (id && strv_contains(r->dropped_chardevs, id)) {
        *drop = true; /* the source's monitor: the clone gets qsnap's */
        return 0;
    }
    if (qopts_get(*kv, *n, "fd"))
        return refuse(opt, val, "it passes a file descriptor of the source's QEMU", err);
    if (!qs_str_equal(backend, "socket") || !flag_on(*kv, *n, "server"))
        return 0; /* a client, a file, a pty: nothing the two would fight over */
    if (qopts_get(*kv, *n, "path")) {
        char *p = socket_path(r, id, err);
        if (!p)
            return -1;
        *kv = qopts_put(*kv, n, "path", p, false);
        free(p);
        return 0;
    }
    return refuse(opt, val, "it listens on a TCP port the source's QEMU holds", err);
}

/* -serial and -parallel: "unix:PATH,server..." moves; a TCP or telnet server cannot be shared. */
static int rewrite_serial(struct rewrite *r, const char *opt, const char *val, char **nv, struct qs_error **err)
{
    const char *comma;
    char *p;

    if (!strstr(val, "server"))
        return 0;
    if (qs_str_has_prefix(val, "unix:")) {
        comma = strchr(val, ',');
        if (!(p = socket_path(r, opt + (opt[1] == '-' ? 2 : 1), err)))
            return -1;
        *nv = qs_asprintf("unix:%s%s", p, comma ? comma : "");
        free(p);
        return 0;
    }
    if (qs_str_has_prefix(val, "tcp:") || qs_str_has_prefix(val, "telnet:") || qs_str_has_prefix(val, "websocket:"))
        return refuse(opt, val, "it listens on a TCP port the source's QEMU holds", err);
    return 0;
}

/* -vnc: a display (a TCP port) becomes a UNIX socket of the clone's. */
static int rewrite_vnc(struct rewrite *r, const char *opt, const char *val, char **nv, struct qs_error **err)
{
    const char *comma = strchr(val, ',');
    char *p;

    if (strcmp(val, "none") == 0)
        return 0;
    if (strstr(val, "websocket"))
        return refuse(opt, val, "its websocket listens on a TCP port the source's QEMU holds", err);
    if (!(p = socket_path(r, "vnc", err)))
        return -1;
    *nv = qs_asprintf("unix:%s%s", p, comma ? comma : "");
    free(p);
    return 0;
}

static int check_netdev(const char *opt, const char *val, const struct qopt *kv, size_t n, struct qs_error **err)
{
    const char *type = n > 0 && !kv[0].key ? kv[0].val : qopts_get(kv, n, "type");

    if (qopts_get(kv, n, "hostfwd"))
        return refuse(opt, val, "its hostfwd listens on a host port the source's QEMU holds", err);
    if (qopts_get(kv, n, "fd") || qopts_get(kv, n, "fds") || qopts_get(kv, n, "vhostfd") ||
        qopts_get(kv, n, "vhostfds"))
        return refuse(opt, val, "it passes a file descriptor of the source's QEMU", err);
    if (qs_str_equal(type, "tap") && qopts_get(kv, n, "ifname"))
        return refuse(opt, val, "its tap device is the source's", err);
    if (qs_str_equal(type, "socket") && qopts_get(kv, n, "listen"))
        return refuse(opt, val, "it listens on a TCP port the source's QEMU holds", err);
    return 0;
}

/* -name: the implied first value or guest= carries the name. */
static char *rewrite_name(const struct rewrite *r, const char *val)
{
    size_t n;
    struct qopt *kv = qopts_parse(val, &n);
    char *s;

    if (n > 0 && !kv[0].key) {
        free(kv[0].val);
        kv[0].val = qs_xstrdup(r->o->name);
    } else {
        kv = qopts_put(kv, &n, "guest", r->o->name, true);
    }
    s = qopts_format(kv, n);
    qopts_free(kv, n);
    return s;
}

static int rewrite_object(const char *opt, const char *val, const struct qopt *kv, size_t n, const char *cwd,
                          struct qs_error **err)
{
    const char *path = qopts_get(kv, n, "mem-path");
    struct stat st;
    char *abs;
    int ret = 0;

    if (!path || !flag_on(kv, n, "share"))
        return 0;
    abs = qargv_path_abs(path, cwd);
    /* a directory (hugetlbfs) gets a new file per QEMU; one file would be the same RAM in both */
    if (stat(abs, &st) == 0 && !S_ISDIR(st.st_mode))
        ret = refuse(opt, val, "its shared guest RAM is the source's file", err);
    free(abs);
    return ret;
}

/* One option and its value: appended to the clone's argv as they should be, or dropped. */
static int rewrite_one(struct rewrite *r, const char *a, const char *v, bool *consumed, struct qs_error **err)
{
    struct qopt *kv = NULL;
    size_t n = 0;
    char *nv = NULL;
    bool drop = false;
    int ret = -1;

    *consumed = true;
    if (qargv_is(a, "-qmp") || qargv_is(a, "-qmp-pretty") || qargv_is(a, "-monitor") || qargv_is(a, "-mon") ||
        qargv_is(a, "-pidfile") || qargv_is(a, "-loadvm")) {
        return 0; /* the source's monitors, its pid file, a snapshot to load at its start */
    }
    if (qargv_is(a, "-readconfig"))
        return refuse(a, v, "qsnap cannot rewrite what the file holds", err);
    if (qargv_is(a, "-add-fd"))
        return refuse(a, v, "it passes a file descriptor of the source's QEMU", err);
    if (qargv_is(a, "-name")) {
        nv = rewrite_name(r, v);
        r->has_name = true;
    } else if (qargv_is(a, "-uuid")) {
        nv = qs_xstrdup(r->o->uuid);
        r->has_uuid = true;
    } else if (qargv_is(a, "-chardev")) {
        kv = qopts_parse(v, &n);
        if (rewrite_chardev(r, a, v, &kv, &n, &drop, err) < 0)
            goto out;
        nv = qopts_format(kv, n);
    } else if (qargv_is(a, "-serial") || qargv_is(a, "-parallel")) {
        if (rewrite_serial(r, a, v, &nv, err) < 0)
            goto out;
    } else if (qargv_is(a, "-vnc")) {
        if (rewrite_vnc(r, a, v, &nv, err) < 0)
            goto out;
    } else if (qargv_is(a, "-spice")) {
        kv = qopts_parse(v, &n);
        if (qopts_get(kv, n, "port") || qopts_get(kv, n, "tls-port")) {
            refuse(a, v, "it listens on a TCP port the source's QEMU holds", err);
            goto out;
        }
        if (flag_on(kv, n, "unix") && qopts_get(kv, n, "addr")) {
            char *p = socket_path(r, "spice", err);
            if (!p)
                goto out;
            kv = qopts_put(kv, &n, "addr", p, false);
            free(p);
        }
        nv = qopts_format(kv, n);
    } else if (qargv_is(a, "-netdev") || qargv_is(a, "-nic") || qargv_is(a, "-net")) {
        const char *type;
        kv = qopts_parse(v, &n);
        type = n > 0 && !kv[0].key ? kv[0].val : NULL;
        if (check_netdev(a, v, kv, n, err) < 0)
            goto out;
        if (qargv_is(a, "-nic") && !qs_str_equal(type, "none") && set_mac(r, &kv, &n, "mac", err) < 0)
            goto out;
        if (qargv_is(a, "-net") && qs_str_equal(type, "nic") && set_mac(r, &kv, &n, "macaddr", err) < 0)
            goto out;
        nv = qopts_format(kv, n);
    } else if (qargv_is(a, "-device")) {
        kv = qopts_parse(v, &n);
        if (qopts_get(kv, n, "netdev") && set_mac(r, &kv, &n, "mac", err) < 0)
            goto out;
        nv = qopts_format(kv, n);
    } else if (qargv_is(a, "-object")) {
        kv = qopts_parse(v, &n);
        if (rewrite_object(a, v, kv, n, r->o->cwd, err) < 0)
            goto out;
    } else {
        *consumed = false;
        ret = 0;
        goto out;
    }
    if (!drop) {
        out_push(r, qs_xstrdup(a));
        out_push(r, nv ? nv : qs_xstrdup(v));
        nv = NULL;
    }
    ret = 0;
out:
    free(nv);
    qopts_free(kv, n);
    return ret;
}

int qargv_clone(char *const *argv, const struct qargv_clone_opts *o, char ***out, struct qs_error **err)
{
    struct rewrite r = {.o = o};
    int ret = -1;

    *out = NULL;
    if (!argv || !argv[0]) {
        qs_error_set(err, QS_ERR_INVALID, "no QEMU command line to clone");
        return -1;
    }
    survey(&r, argv);
    out_push(&r, qs_xstrdup(argv[0]));
    for (size_t i = 1; argv[i]; i++) {
        bool consumed = false;
        /* options qsnap knows take one value; everything else is copied one word at a time */
        if (argv[i][0] == '-' && argv[i + 1] && rewrite_one(&r, argv[i], argv[i + 1], &consumed, err) < 0)
            goto out;
        if (consumed) {
            i++;
            continue;
        }
        out_push(&r, qs_xstrdup(argv[i]));
    }
    if (!r.has_name) {
        struct qopt kv = {"guest", (char *)o->name};
        out_push(&r, qs_xstrdup("-name"));
        out_push(&r, qopts_format(&kv, 1)); /* commas in the name doubled */
    }
    if (!r.has_uuid) {
        out_push(&r, qs_xstrdup("-uuid"));
        out_push(&r, qs_xstrdup(o->uuid));
    }
    *out = r.out;
    r.out = NULL;
    ret = 0;
out:
    qs_strv_free(r.out);
    qs_strv_free(r.dropped_chardevs);
    qs_strv_free(r.macs);
    return ret;
}
