/* qargv.c: QEMU command lines - key=value options, the option that opens each disk, the argv of a restart. */
#include "qargv.h"
#include "qs_buf.h"
#include "qs_util.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void qopts_free(struct qopt *kv, size_t n)
{
    for (size_t i = 0; kv && i < n; i++)
        free(kv[i].key), free(kv[i].val);
    free(kv);
}

struct qopt *qopts_parse(const char *s, size_t *n)
{
    struct qopt *kv = NULL;
    size_t cap = 0;
    struct qs_buf cur;

    *n = 0;
    qs_buf_init(&cur, 0);
    for (const char *p = s;; p++) {
        if (*p == ',' && p[1] == ',') {
            qs_buf_add(&cur, ",", 1);
            p++;
            continue;
        }
        if (*p == ',' || *p == '\0') {
            char *item = qs_buf_detach(&cur, NULL), *eq = strchr(item, '=');
            qs_xgrow((void **)&kv, &cap, *n + 1, sizeof(*kv));
            /* only the text before the first '=' is a key: values may hold '=' */
            kv[*n].key = eq ? qs_xstrndup(item, (size_t)(eq - item)) : NULL;
            kv[*n].val = qs_xstrdup(eq ? eq + 1 : item);
            (*n)++;
            free(item);
            if (*p == '\0')
                break;
            continue;
        }
        qs_buf_add(&cur, p, 1);
    }
    qs_buf_release(&cur);
    return kv;
}

char *qopts_format(const struct qopt *kv, size_t n)
{
    struct qs_buf b;
    qs_buf_init(&b, 0);
    for (size_t i = 0; i < n; i++) {
        if (!kv[i].key && !kv[i].val)
            continue; /* dropped */
        if (b.len)
            qs_buf_adds(&b, ",");
        if (kv[i].key)
            qs_buf_addf(&b, "%s=", kv[i].key);
        for (const char *p = kv[i].val; *p; p++)
            qs_buf_adds(&b, *p == ',' ? ",," : (char[]){*p, 0});
    }
    return qs_buf_detach(&b, NULL);
}

const char *qopts_get(const struct qopt *kv, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (kv[i].key && strcmp(kv[i].key, key) == 0)
            return kv[i].val;
    return NULL;
}

char *qopt_get(const char *s, const char *key)
{
    size_t n;
    struct qopt *kv = qopts_parse(s, &n);
    const char *v = qopts_get(kv, n, key);
    char *r = v ? qs_xstrdup(v) : NULL;

    qopts_free(kv, n);
    return r;
}

/* Sets KEY to VAL everywhere it appears, or appends it when ADD and it does not. */
struct qopt *qopts_put(struct qopt *kv, size_t *n, const char *key, const char *val, bool add)
{
    bool found = false;

    for (size_t i = 0; i < *n; i++)
        if (kv[i].key && strcmp(kv[i].key, key) == 0) {
            free(kv[i].val);
            kv[i].val = qs_xstrdup(val);
            found = true;
        }
    if (!found && add) {
        kv = qs_xrealloc(kv, (*n + 1) * sizeof(*kv));
        kv[*n].key = qs_xstrdup(key);
        kv[*n].val = qs_xstrdup(val);
        (*n)++;
    }
    return kv;
}

char *qargv_path_abs(const char *path, const char *cwd)
{
    char *joined, *real;

    if (!path)
        return NULL;
    /* json:{...} and URLs (nbd://, ...) are not paths */
    if (path[0] == '/' || qs_str_has_prefix(path, "json:") || strstr(path, "://"))
        joined = qs_xstrdup(path);
    else if (cwd)
        joined = qs_asprintf("%s/%s", cwd, path);
    else
        joined = qs_xstrdup(path);
    if (joined[0] != '/' || !(real = realpath(joined, NULL)))
        return joined;
    free(joined);
    return real;
}

bool qargv_is(const char *arg, const char *name)
{
    if (arg[0] == '-' && arg[1] == '-')
        arg++;
    return strcmp(arg, name) == 0;
}

ssize_t qargv_find(char *const *argv, const char *option, const char *key, const char *val)
{
    for (size_t i = 0; argv && argv[i] && argv[i + 1]; i++) {
        char *v;
        bool hit;
        if (!qargv_is(argv[i], option) || argv[i + 1][0] == '{')
            continue;
        v = qopt_get(argv[i + 1], key);
        hit = qs_str_equal(v, val);
        free(v);
        if (hit)
            return (ssize_t)i + 1;
    }
    return -1;
}

/* -hda .. -hdd: the IDE index they stand for, or -1. */
static int hd_index(const char *arg)
{
    if (arg[0] == '-' && arg[1] == '-')
        arg++;
    if (strncmp(arg, "-hd", 3) == 0 && arg[3] >= 'a' && arg[3] <= 'd' && arg[4] == '\0')
        return arg[3] - 'a';
    return -1;
}

static bool same_path(const char *file, const char *cwd, const char *source)
{
    char *a = qargv_path_abs(file, cwd), *b = qargv_path_abs(source, NULL);
    bool eq = a && b && strcmp(a, b) == 0;

    free(a);
    free(b);
    return eq;
}

/* The -blockdev format node over file node FILE_NODE (its "file" option names it), or the file node itself. */
static ssize_t blockdev_over(char *const *argv, ssize_t file_i, const char *file_node)
{
    ssize_t fmt = file_node ? qargv_find(argv, "-blockdev", "file", file_node) : -1;
    return fmt >= 0 ? fmt : file_i;
}

ssize_t qargv_disk_option(char *const *argv, const char *cwd, const char *drive, const char *node,
                          const char *source)
{
    ssize_t i;

    if (drive && (i = qargv_find(argv, "-drive", "id", drive)) >= 0)
        return i;
    if (node && node[0] != '#') {
        if ((i = qargv_find(argv, "-blockdev", "node-name", node)) >= 0 ||
            (i = qargv_find(argv, "-drive", "node-name", node)) >= 0)
            return i;
    }
    if (!source)
        return -1;
    for (size_t k = 0; argv && argv[k] && argv[k + 1]; k++) {
        const char *v = argv[k + 1];
        struct qopt *kv;
        size_t n;
        const char *f;
        ssize_t hit = -1;

        if (hd_index(argv[k]) >= 0) {
            if (same_path(v, cwd, source))
                return (ssize_t)k + 1;
            continue;
        }
        if ((!qargv_is(argv[k], "-drive") && !qargv_is(argv[k], "-blockdev")) || v[0] == '{')
            continue;
        kv = qopts_parse(v, &n);
        if (qargv_is(argv[k], "-drive")) {
            f = qopts_get(kv, n, "file") ? qopts_get(kv, n, "file") : qopts_get(kv, n, "file.filename");
            if (f && same_path(f, cwd, source))
                hit = (ssize_t)k + 1;
        } else if ((f = qopts_get(kv, n, "filename")) && same_path(f, cwd, source)) {
            hit = blockdev_over(argv, (ssize_t)k + 1, qopts_get(kv, n, "node-name"));
        } else if ((f = qopts_get(kv, n, "file.filename")) && same_path(f, cwd, source)) {
            hit = (ssize_t)k + 1;
        }
        qopts_free(kv, n);
        if (hit >= 0)
            return hit;
    }
    return -1;
}

/* Options a format node keeps when its driver changes (the rest belong to the old driver). */
static bool generic_blockdev_key(const char *key)
{
    static const char *const keep[] = {"driver", "node-name", "file", "discard", "read-only", "auto-read-only",
                                       "detect-zeroes", "force-share", NULL};
    if (!key || qs_str_has_prefix(key, "file.") || qs_str_has_prefix(key, "cache."))
        return true;
    for (size_t i = 0; keep[i]; i++)
        if (strcmp(key, keep[i]) == 0)
            return true;
    return false;
}

static void argv_put(char **argv, ssize_t i, struct qopt *kv, size_t n)
{
    free(argv[i]);
    argv[i] = qopts_format(kv, n);
}

/* Points the option whose value is argv[I] at SOURCE in FORMAT (may be NULL: unchanged). */
static int point_option(char **argv, ssize_t i, const char *target, const char *source, const char *format,
                        struct qs_error **err)
{
    struct qopt *kv = NULL, *fkv = NULL;
    size_t n = 0, fn = 0;
    const char *fref;
    int hd = hd_index(argv[i - 1]), ret = -1;

    if (hd >= 0) {
        /* -hdX takes a bare file name (a comma would start options) and probes its format: a -drive with the
         * same index and media says the same and takes both */
        struct qopt d[] = {{qs_xstrdup("file"), qs_xstrdup(source)},
                           {qs_xstrdup("index"), qs_asprintf("%d", hd)},
                           {qs_xstrdup("media"), qs_xstrdup("disk")},
                           {qs_xstrdup("format"), qs_xstrdup(format ? format : "qcow2")}};
        free(argv[i - 1]);
        argv[i - 1] = qs_xstrdup("-drive");
        free(argv[i]);
        argv[i] = qopts_format(d, 4);
        for (size_t k = 0; k < 4; k++)
            free(d[k].key), free(d[k].val);
        return 0;
    }
    kv = qopts_parse(argv[i], &n);
    if (qargv_is(argv[i - 1], "-drive")) {
        kv = qopts_put(kv, &n, qopts_get(kv, n, "file.filename") ? "file.filename" : "file", source, true);
        if (format)
            kv = qopts_put(kv, &n, "format", format, true);
        argv_put(argv, i, kv, n);
        ret = 0;
        goto out;
    }
    /* -blockdev */
    if (format && !qs_str_equal(qopts_get(kv, n, "driver"), format) &&
        !qs_str_equal(qopts_get(kv, n, "driver"), "file")) {
        for (size_t k = 0; k < n; k++)
            if (!generic_blockdev_key(kv[k].key))
                free(kv[k].key), free(kv[k].val), kv[k].key = kv[k].val = NULL;
        kv = qopts_put(kv, &n, "driver", format, true);
    }
    if ((fref = qopts_get(kv, n, "file")) != NULL) {
        ssize_t fi = qargv_find(argv, "-blockdev", "node-name", fref);
        if (fi < 0) {
            qs_error_set(err, QS_ERR_UNSUPPORTED, "disk '%s': file node '%s' not found in the command line", target,
                         fref);
            goto out;
        }
        fkv = qopts_parse(argv[fi], &fn);
        fkv = qopts_put(fkv, &fn, "filename", source, true);
        argv_put(argv, fi, fkv, fn);
    } else if (qopts_get(kv, n, "file.filename")) {
        kv = qopts_put(kv, &n, "file.filename", source, false);
    } else if (qopts_get(kv, n, "filename")) {
        /* a protocol node on its own (driver=file): it can only take a new file of the same format */
        if (format && !qs_str_equal(format, "raw")) {
            qs_error_set(err, QS_ERR_UNSUPPORTED, "disk '%s': its -blockdev opens the file without a format node, "
                         "which cannot take a %s image", target, format);
            goto out;
        }
        kv = qopts_put(kv, &n, "filename", source, false);
    }
    argv_put(argv, i, kv, n);
    ret = 0;
out:
    qopts_free(kv, n);
    qopts_free(fkv, fn);
    return ret;
}

int qargv_point_option(char **argv, ssize_t i, const char *what, const char *source, const char *format,
                       struct qs_error **err)
{
    return point_option(argv, i, what, source, format, err);
}

/* Whether argv[I] (an option's value) belongs to an option qsnap knows how to point at a new image. */
static bool disk_option_at(char *const *argv, ssize_t i)
{
    return i > 0 && argv[i] && argv[i][0] != '{' &&
           (qargv_is(argv[i - 1], "-drive") || qargv_is(argv[i - 1], "-blockdev") || hd_index(argv[i - 1]) >= 0);
}

/* Definitions from before identities were recorded: the -device with the target as id, and its drive=. */
static ssize_t legacy_option(char *const *argv, const struct md_domain_disk *d)
{
    ssize_t dev = qargv_find(argv, "-device", "id", d->target), i;
    char *x = dev >= 0 ? qopt_get(argv[dev], "drive") : NULL;

    if (!x)
        x = qs_xstrdup(d->node_name && d->node_name[0] != '#' ? d->node_name : d->target);
    if ((i = qargv_find(argv, "-blockdev", "node-name", x)) < 0 && (i = qargv_find(argv, "-drive", "id", x)) < 0)
        i = qargv_find(argv, "-drive", "node-name", x);
    free(x);
    return i;
}

int qargv_point_disks(char *const *argv, const struct md_domain *dom, char ***out, struct qs_error **err)
{
    size_t nd = md_domain_disk_count(dom), na = qs_strv_len(argv);
    char **v = qs_xcalloc(na + 1, sizeof(char *));
    const char *cwd = md_domain_cwd(dom);

    for (size_t i = 0; i < na; i++)
        v[i] = qs_xstrdup(argv[i]);
    for (size_t k = 0; k < nd; k++) {
        struct md_domain_disk d;
        ssize_t i = -1;
        long long at;
        char *end = NULL;

        if (md_domain_disk_get(dom, k, &d, err) < 0)
            goto fail;
        if (!d.target || !d.source || (d.device && strcmp(d.device, "disk") != 0))
            continue;
        if (d.arg && (at = strtoll(d.arg, &end, 10)) > 0 && *end == '\0' && at < (long long)na &&
            disk_option_at(v, (ssize_t)at))
            i = (ssize_t)at;
        else if (!d.arg)
            i = legacy_option(v, &d);
        if (i < 0)
            i = qargv_disk_option(v, cwd, d.drive, d.node_name, d.source);
        if (i >= 0) {
            if (point_option(v, i, d.target, d.source, d.driver_type, err) < 0)
                goto fail;
            continue;
        }
        qs_error_set(err, QS_ERR_UNSUPPORTED,
                     "disk '%s' now uses '%s', which the recorded QEMU command line does not open, and no -drive, "
                     "-blockdev or -hdX option of it can be pointed there (run 'qsnap attach --update' on the "
                     "running QEMU to record its command line again)",
                     d.target, d.source);
        goto fail;
    }
    *out = v;
    return 0;
fail:
    qs_strv_free(v);
    return -1;
}

/* Does the monitor option value ARG ("unix:PATH,server=on", a -chardev socket) listen on PATH? */
static bool socket_arg_is(const char *opt, const char *arg, const char *cwd, const char *path)
{
    char *p = NULL;
    bool eq;

    if (qargv_is(opt, "-qmp") || qargv_is(opt, "-qmp-pretty")) {
        const char *s = qs_str_has_prefix(arg, "unix:") ? arg + 5 : arg;
        const char *comma = strchr(s, ',');
        p = comma ? qs_xstrndup(s, (size_t)(comma - s)) : qs_xstrdup(s);
    } else if (qargv_is(opt, "-chardev")) {
        size_t n;
        struct qopt *kv = qopts_parse(arg, &n);
        /* the backend is the implied first value: "socket,id=...,path=..." */
        if (n > 0 && !kv[0].key && strcmp(kv[0].val, "socket") == 0)
            p = qopt_get(arg, "path");
        qopts_free(kv, n);
    }
    if (!p)
        return false;
    eq = same_path(p, cwd, path) || strcmp(p, path) == 0;
    free(p);
    return eq;
}

char **qargv_start(char *const *argv, const char *cwd, const char *sock, bool paused, bool incoming)
{
    size_t n = qs_strv_len(argv), k = 0;
    char **out = qs_xcalloc(n + 7, sizeof(char *));
    bool has_qmp = false;

    for (size_t i = 0; i < n; i++) {
        const char *a = argv[i];
        if (qargv_is(a, "-daemonize") || qargv_is(a, "-S"))
            continue;
        if (qargv_is(a, "-incoming") && i + 1 < n) {
            i++;
            continue;
        }
        if (i + 1 < n && socket_arg_is(a, argv[i + 1], cwd, sock))
            has_qmp = true;
        out[k++] = qs_xstrdup(a);
    }
    if (!has_qmp) {
        out[k++] = qs_xstrdup("-qmp");
        out[k++] = qs_asprintf("unix:%s,server=on,wait=off", sock);
    }
    if (paused)
        out[k++] = qs_xstrdup("-S");
    if (incoming) {
        out[k++] = qs_xstrdup("-incoming");
        out[k++] = qs_xstrdup("defer");
    }
    return out;
}
