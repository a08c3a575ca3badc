/* engine.c: the engine object and the domain operations (attach, define, start, destroy, state). */
#include "engine_priv.h"
#include "intent.h"
#include "memstate.h" /* engine_qemu_start_incoming */
#include "qs_buf.h"
#include "qs_util.h"
#include "vm.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define QUIT_GRACE_MS 5000

const char *engine_version(void)
{
    return QSNAP_VERSION;
}

struct engine *engine_new(const struct engine_options *opts, struct qs_error **err)
{
    struct engine *e = NULL;
    char *root = md_store_root_default(opts ? opts->root : NULL, err);

    if (!root)
        return NULL;
    e = qs_xcalloc(1, sizeof(*e));
    e->store = md_store_open(root, err);
    free(root);
    if (!e->store) {
        free(e);
        return NULL;
    }
    e->lock_timeout_ms = opts && opts->lock_timeout_ms ? opts->lock_timeout_ms : 10000;
    e->qmp_timeout_ms = opts && opts->qmp_timeout_ms ? opts->qmp_timeout_ms : 600000;
    e->progress = opts ? opts->progress : NULL;
    e->step = opts ? opts->step : NULL;
    e->opaque = opts ? opts->opaque : NULL;
    return e;
}

void engine_free(struct engine *e)
{
    if (!e)
        return;
    md_store_free(e->store);
    free(e);
}

const char *engine_root(const struct engine *e)
{
    return md_store_root(e->store);
}

void engine_strv_free(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

static const char *const state_names[] = {
    [ENGINE_DOMAIN_NOSTATE] = "no state",       [ENGINE_DOMAIN_RUNNING] = "running",
    [ENGINE_DOMAIN_BLOCKED] = "idle",           [ENGINE_DOMAIN_PAUSED] = "paused",
    [ENGINE_DOMAIN_SHUTDOWN] = "in shutdown",   [ENGINE_DOMAIN_SHUTOFF] = "shut off",
    [ENGINE_DOMAIN_CRASHED] = "crashed",        [ENGINE_DOMAIN_PMSUSPENDED] = "pmsuspended",
};
_Static_assert(sizeof(state_names) / sizeof(state_names[0]) == ENGINE_DOMAIN_STATE__LAST, "state_names");

const char *engine_domain_state_name(enum engine_domain_state s)
{
    return (unsigned)s < ENGINE_DOMAIN_STATE__LAST ? state_names[s] : "no state";
}

enum engine_domain_state engine_state_from_qemu(const char *status)
{
    static const struct {
        const char *qemu;
        enum engine_domain_state state;
    } map[] = {
        {"running", ENGINE_DOMAIN_RUNNING},         {"shutdown", ENGINE_DOMAIN_SHUTDOWN},
        {"guest-panicked", ENGINE_DOMAIN_CRASHED},  {"internal-error", ENGINE_DOMAIN_CRASHED},
        {"suspended", ENGINE_DOMAIN_PMSUSPENDED},
    };
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (strcmp(map[i].qemu, status) == 0)
            return map[i].state;
    /* paused, prelaunch, inmigrate, postmigrate, finish-migrate, restore-vm, save-vm, debug, io-error,
     * watchdog, colo: the guest does not run */
    return ENGINE_DOMAIN_PAUSED;
}

struct md_domain *engine_domain_load(struct engine *e, const char *name, struct qs_error **err)
{
    struct qs_error *local = NULL;
    struct md_domain *dom;

    if (qs_name_check(name, "domain", err) < 0)
        return NULL;
    dom = md_store_domain_get(e->store, name, &local);
    if (!dom && local->code == QS_ERR_NOTFOUND) {
        qs_error_free(local);
        qs_error_set(err, QS_ERR_NOTFOUND, "Domain not found: no domain with matching name '%s'", name);
        return NULL;
    }
    qs_error_propagate(err, &local);
    return dom;
}

int engine_domain_lookup(struct engine *e, const char *name, struct qs_error **err)
{
    /* a stat, not a parse: every command looks its domain up first, and then loads it anyway */
    return md_store_domain_exists(e->store, name, err);
}

struct md_lock *engine_domain_lock(struct engine *e, const char *name, struct qs_error **err)
{
    struct qs_error *local = NULL;
    struct md_lock *lock = md_lock_acquire(e->store, name, e->lock_timeout_ms, &local);
    struct intent it = {0};

    if (!lock) {
        /* say what the other process is doing, when its record says so */
        if (local->code == QS_ERR_BUSY && intent_read(e, name, &it, NULL) > 0)
            qs_error_set(err, QS_ERR_BUSY, "domain '%s' is busy: qsnap process %ld is running a %s of snapshot "
                         "'%s'", name, it.pid, it.op, it.snapshot ? it.snapshot : "?");
        else
            qs_error_propagate(err, &local);
        qs_error_free(local);
        intent_release(&it);
        return NULL;
    }
    /* an operation a crash interrupted is finished or undone before anything else happens */
    if (!e->recovering && intent_recover(e, name, lock, err) < 0) {
        md_lock_free(lock);
        return NULL;
    }
    return lock;
}

int engine_domain_connect(struct engine *e, const struct md_domain *dom, struct qmp_client **c,
                          struct qs_error **err)
{
    const char *sock = md_domain_qmp_socket(dom);
    struct qs_error *local = NULL;

    *c = NULL;
    if (!sock)
        return 0;
    if (vm_connect(sock, e->qmp_timeout_ms, c, &local) < 0) {
        if (local->code == QS_ERR_NOTFOUND) {
            qs_error_free(local);
            return 0;
        }
        qs_error_prefix(&local, "domain '%s'", md_domain_name(dom));
        qs_error_propagate(err, &local);
        return -1;
    }
    return 0;
}

int engine_domain_get_state(struct engine *e, const char *name, enum engine_domain_state *state, int *pid,
                            struct qs_error **err)
{
    struct md_domain *dom = engine_domain_load(e, name, err);
    struct qmp_client *c = NULL;
    char *status = NULL;
    int ret = -1;

    if (!dom)
        return -1;
    if (engine_domain_connect(e, dom, &c, err) < 0)
        goto out;
    if (!c) {
        *state = ENGINE_DOMAIN_SHUTOFF;
        if (pid)
            *pid = -1;
        ret = 0;
        goto out;
    }
    if (vm_status(c, &status, NULL, err) < 0)
        goto out;
    *state = engine_state_from_qemu(status);
    if (pid)
        *pid = (int)qmp_client_peer_pid(c);
    ret = 0;
out:
    free(status);
    qmp_client_free(c);
    md_domain_free(dom);
    return ret;
}

int engine_domain_get_xml(struct engine *e, const char *name, char **xml, struct qs_error **err)
{
    struct md_domain *dom = engine_domain_load(e, name, err);
    if (!dom)
        return -1;
    *xml = md_domain_format(dom, err);
    md_domain_free(dom);
    return *xml ? 0 : -1;
}

int engine_domain_list(struct engine *e, char ***names, size_t *n, struct qs_error **err)
{
    char **v = NULL;
    if (md_store_domain_list(e->store, &v, err) < 0)
        return -1;
    *names = v;
    *n = qs_strv_len(v);
    return 0;
}

/* Everything attach learns from QEMU, recorded in a new definition. */
static struct md_domain *attach_describe(struct qmp_client *c, const char *name, const char *sock,
                                         struct qs_error **err)
{
    struct qmp_reply *mem = NULL, *cpus = NULL, *uuid = NULL;
    struct vm_block *blocks = NULL;
    struct md_domain *dom = NULL, *ret = NULL;
    char **argv = NULL;
    int64_t base = 0;
    size_t nblocks = 0;
    const char *u;
    pid_t pid;

    if (qmp_client_execute(c, "query-memory-size-summary", NULL, &mem, err) < 0 ||
        qmp_client_execute(c, "query-cpus-fast", NULL, &cpus, err) < 0 ||
        qmp_client_execute(c, "query-uuid", NULL, &uuid, err) < 0 || vm_blocks(c, &blocks, &nblocks, err) < 0)
        goto out;
    qmp_value_int(qmp_value_get(qmp_reply_value(mem), "base-memory"), &base);
    u = qmp_value_get_string(qmp_reply_value(uuid), "UUID");
    if (u && strcmp(u, "00000000-0000-0000-0000-000000000000") == 0)
        u = NULL; /* QEMU without -uuid: the definition gets a random one */
    dom = md_domain_new(name, u, (unsigned long long)(base / 1024),
                        (unsigned)qmp_value_array_len(qmp_reply_value(cpus)), err);
    if (!dom || md_domain_set_qmp_socket(dom, sock, err) < 0)
        goto out;
    for (size_t i = 0; i < nblocks; i++) {
        const struct vm_block *b = &blocks[i];
        if (b->readonly)
            continue; /* a CD-ROM or a read-only image holds no snapshot */
        if (md_domain_add_disk(dom, "file", "disk", b->format, b->file, b->device, NULL, err) < 0 ||
            md_domain_set_disk_node_name(dom, b->device, b->node, err) < 0)
            goto out;
    }
    pid = qmp_client_peer_pid(c);
    if (pid > 0 && vm_read_cmdline(pid, &argv, NULL) == 0 &&
        md_domain_set_argv(dom, (const char *const *)argv, err) < 0)
        goto out;
    ret = dom;
    dom = NULL;
out:
    qs_strv_free(argv);
    vm_blocks_free(blocks, nblocks);
    qmp_reply_free(mem);
    qmp_reply_free(cpus);
    qmp_reply_free(uuid);
    md_domain_free(dom);
    return ret;
}

int engine_domain_attach(struct engine *e, const char *name, const char *qmp_socket, struct qs_error **err)
{
    struct md_lock *lock = NULL;
    struct md_domain *dom = NULL, *old = NULL;
    struct qmp_client *c = NULL;
    struct qs_error *local = NULL;
    char *abs = NULL;
    int ret = -1;

    if (qs_name_check(name, "domain", err) < 0 || !(lock = engine_domain_lock(e, name, err)))
        goto out;
    old = md_store_domain_get(e->store, name, &local);
    if (old || local->code != QS_ERR_NOTFOUND) {
        if (old)
            qs_error_set(err, QS_ERR_EXISTS, "domain '%s' is already defined", name);
        else
            qs_error_propagate(err, &local);
        goto out;
    }
    abs = qmp_socket[0] == '/' ? qs_xstrdup(qmp_socket) : realpath(qmp_socket, NULL);
    if (!abs) {
        qs_error_set_errno(err, QS_ERR_NOTFOUND, errno, "QMP socket '%s'", qmp_socket);
        goto out;
    }
    if (vm_connect(abs, e->qmp_timeout_ms, &c, err) < 0 || !(dom = attach_describe(c, name, abs, err)) ||
        md_store_domain_put(e->store, lock, dom, err) < 0)
        goto out;
    ret = 0;
out:
    qs_error_free(local);
    qmp_client_free(c);
    md_domain_free(old);
    md_domain_free(dom);
    md_lock_free(lock);
    free(abs);
    return ret;
}

int engine_domain_define(struct engine *e, const char *xml, const char *qmp_socket, char **name,
                         struct qs_error **err)
{
    struct md_domain *dom = md_domain_parse(xml, strlen(xml), err);
    struct md_lock *lock = NULL;
    char *n = NULL;
    int ret = -1;

    if (!dom)
        return -1;
    /* a copy: the name is borrowed from dom, and setting the socket below changes dom */
    n = md_domain_name(dom) ? qs_xstrdup(md_domain_name(dom)) : NULL;
    if (!n) {
        qs_error_set(err, QS_ERR_INVALID, "the domain XML has no <name>");
        goto out;
    }
    if (qs_name_check(n, "domain", err) < 0 || (qmp_socket && md_domain_set_qmp_socket(dom, qmp_socket, err) < 0) ||
        !(lock = engine_domain_lock(e, n, err)) || md_store_domain_put(e->store, lock, dom, err) < 0)
        goto out;
    if (name)
        *name = qs_xstrdup(n);
    ret = 0;
out:
    md_lock_free(lock);
    md_domain_free(dom);
    free(n);
    return ret;
}

int engine_domain_undefine(struct engine *e, const char *name, bool force, struct qs_error **err)
{
    struct md_domain *dom = engine_domain_load(e, name, err);
    struct md_lock *lock = NULL;
    struct qs_error *local = NULL;
    int ret = -1;

    if (!dom || !(lock = engine_domain_lock(e, name, err)))
        goto out;
    if (md_store_domain_delete(e->store, lock, name, force ? MD_DOMAIN_DELETE_SNAPSHOTS : 0, &local) < 0) {
        if (local->code == QS_ERR_STATE) {
            qs_error_free(local);
            local = NULL;
            qs_error_set(err, QS_ERR_STATE,
                         "Requested operation is not valid: cannot delete inactive domain with snapshots");
        }
        qs_error_propagate(err, &local);
        goto out;
    }
    ret = 0;
out:
    md_lock_free(lock);
    md_domain_free(dom);
    return ret;
}

/* Reads /proc/PID/stat's state letter: gone or a zombie counts as exited. */
static bool process_exited(pid_t pid)
{
    char path[64], buf[512];
    FILE *f;
    char *p;
    bool gone = true;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    f = fopen(path, "re");
    if (!f)
        return true;
    if (fgets(buf, sizeof(buf), f) && (p = strrchr(buf, ')')) && p[1] == ' ')
        gone = p[2] == 'Z' || p[2] == 'X';
    fclose(f);
    return gone;
}

static bool wait_exit(pid_t pid, int timeout_ms)
{
    int64_t deadline = qs_now_ms() + timeout_ms;
    while (!process_exited(pid)) {
        if (qs_now_ms() >= deadline)
            return false;
        usleep(2000);
    }
    return true;
}

int engine_qemu_quit(struct engine *e, struct qmp_client **c, struct qs_error **err)
{
    pid_t pid = qmp_client_peer_pid(*c);
    struct qs_error *local = NULL;
    int ret = -1;

    (void)e;
    /* QEMU may close the socket before its reply arrives: a disconnect here is success */
    if (qmp_client_execute_timeout(*c, "quit", NULL, QUIT_GRACE_MS, NULL, &local) < 0 &&
        local->code != QS_ERR_DISCONNECTED && local->code != QS_ERR_TIMEOUT) {
        qs_error_propagate(err, &local);
        goto out;
    }
    qmp_client_free(*c);
    *c = NULL;
    if (pid > 0 && !wait_exit(pid, QUIT_GRACE_MS)) {
        if (vm_kill(pid, err) < 0)
            goto out;
        if (!wait_exit(pid, QUIT_GRACE_MS)) {
            qs_error_set(err, QS_ERR_TIMEOUT, "QEMU process %d did not exit", (int)pid);
            goto out;
        }
    }
    ret = 0;
out:
    qs_error_free(local);
    qmp_client_free(*c);
    *c = NULL;
    return ret;
}

int engine_domain_destroy(struct engine *e, const char *name, struct qs_error **err)
{
    struct md_domain *dom = engine_domain_load(e, name, err);
    struct md_lock *lock = NULL;
    struct qmp_client *c = NULL;
    int ret = -1;

    if (!dom || !(lock = engine_domain_lock(e, name, err)) || engine_domain_connect(e, dom, &c, err) < 0)
        goto out;
    if (!c) {
        qs_error_set(err, QS_ERR_STATE, "Requested operation is not valid: domain is not running");
        goto out;
    }
    ret = engine_qemu_quit(e, &c, err);
out:
    qmp_client_free(c);
    md_lock_free(lock);
    md_domain_free(dom);
    return ret;
}

/* "-qmp unix:PATH,server=on,..." naming PATH? */
static bool qmp_arg_is(const char *arg, const char *path)
{
    size_t n = strlen(path);
    if (qs_str_has_prefix(arg, "unix:"))
        arg += 5;
    return strncmp(arg, path, n) == 0 && (arg[n] == '\0' || arg[n] == ',');
}

/* ---- the recorded command line, pointed at the disks' current images ---------------------------- */

/* One "key=value" of a QEMU option string (",," is a literal comma); key NULL for an implied first value. */
struct opt_kv {
    char *key;
    char *val;
};

static void opts_free(struct opt_kv *kv, size_t n)
{
    for (size_t i = 0; kv && i < n; i++)
        free(kv[i].key), free(kv[i].val);
    free(kv);
}

static struct opt_kv *opts_parse(const char *s, size_t *n)
{
    struct opt_kv *kv = NULL;
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

static char *opts_format(const struct opt_kv *kv, size_t n)
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

static const char *opts_get(const struct opt_kv *kv, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (kv[i].key && strcmp(kv[i].key, key) == 0)
            return kv[i].val;
    return NULL;
}

static void opts_set(struct opt_kv *kv, size_t n, const char *key, const char *val)
{
    for (size_t i = 0; i < n; i++)
        if (kv[i].key && strcmp(kv[i].key, key) == 0) {
            free(kv[i].val);
            kv[i].val = qs_xstrdup(val);
        }
}

/* Index of the argument after OPTION whose key=value options have KEY=VAL, or -1. */
static ssize_t argv_find(char **argv, const char *option, const char *key, const char *val)
{
    for (size_t i = 0; argv[i] && argv[i + 1]; i++) {
        struct opt_kv *kv;
        size_t n;
        bool hit;
        if (strcmp(argv[i], option) != 0 || argv[i + 1][0] == '{')
            continue;
        kv = opts_parse(argv[i + 1], &n);
        hit = qs_str_equal(opts_get(kv, n, key), val);
        opts_free(kv, n);
        if (hit)
            return (ssize_t)i + 1;
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

/* Replaces argv[i] by the options KV. */
static void argv_put(char **argv, ssize_t i, struct opt_kv *kv, size_t n)
{
    free(argv[i]);
    argv[i] = opts_format(kv, n);
}

/*
 * Points the format node of disk D at D's current image and format. The node is the one the disk's
 * -device (id = target) names with drive=, else the disk's recorded node name, else the target; it is a
 * -blockdev (its file= node's filename, or file.filename, is changed) or a -drive (file=, format=). The
 * node keeps its name, so the device still finds it; *node gets that name (QEMU's after the start).
 * An argv that does not mention the image and cannot be rewritten is refused: QEMU would silently open
 * another image.
 */
static int argv_point_disk(char **argv, const struct md_domain_disk *d, char **node, struct qs_error **err)
{
    struct opt_kv *kv = NULL, *fkv = NULL;
    size_t n = 0, fn = 0;
    ssize_t dev = argv_find(argv, "-device", "id", d->target), i;
    char *x = NULL;
    const char *fmt, *fref;
    int ret = -1;

    *node = NULL;
    if (dev >= 0) {
        kv = opts_parse(argv[dev], &n);
        x = opts_get(kv, n, "drive") ? qs_xstrdup(opts_get(kv, n, "drive")) : NULL;
        opts_free(kv, n);
        kv = NULL;
    }
    if (!x)
        x = qs_xstrdup(d->node_name && argv_find(argv, "-blockdev", "node-name", d->node_name) >= 0 ? d->node_name
                                                                                                  : d->target);
    if ((i = argv_find(argv, "-blockdev", "node-name", x)) >= 0) {
        kv = opts_parse(argv[i], &n);
        fmt = opts_get(kv, n, "driver");
        if (d->driver_type && !qs_str_equal(fmt, d->driver_type)) {
            for (size_t k = 0; k < n; k++)
                if (!generic_blockdev_key(kv[k].key))
                    free(kv[k].key), free(kv[k].val), kv[k].key = kv[k].val = NULL;
            opts_set(kv, n, "driver", d->driver_type);
        }
        if ((fref = opts_get(kv, n, "file")) != NULL) {
            ssize_t fi = argv_find(argv, "-blockdev", "node-name", fref);
            if (fi < 0) {
                qs_error_set(err, QS_ERR_UNSUPPORTED, "disk '%s': file node '%s' not found in the command line",
                             d->target, fref);
                goto out;
            }
            fkv = opts_parse(argv[fi], &fn);
            if (!qs_str_equal(opts_get(fkv, fn, "filename"), d->source)) {
                opts_set(fkv, fn, "filename", d->source);
                argv_put(argv, fi, fkv, fn);
            }
        } else if (opts_get(kv, n, "file.filename")) {
            opts_set(kv, n, "file.filename", d->source);
        }
        argv_put(argv, i, kv, n);
    } else if ((i = argv_find(argv, "-drive", "id", x)) >= 0 || (i = argv_find(argv, "-drive", "node-name", x)) >= 0) {
        kv = opts_parse(argv[i], &n);
        opts_set(kv, n, "file", d->source);
        if (d->driver_type && opts_get(kv, n, "format"))
            opts_set(kv, n, "format", d->driver_type);
        argv_put(argv, i, kv, n);
    } else {
        /* not a form qsnap rewrites (JSON -blockdev, -hda, ...): fine while it still names the image */
        bool named = false;
        for (size_t k = 0; argv[k] && !named; k++)
            named = strstr(argv[k], d->source) != NULL;
        if (!named) {
            qs_error_set(err, QS_ERR_UNSUPPORTED,
                         "disk '%s' now uses '%s', which the recorded QEMU command line does not open, and its "
                         "node '%s' is not a -blockdev or -drive qsnap can rewrite",
                         d->target, d->source, x);
            goto out;
        }
        free(x);
        x = NULL;
    }
    *node = x;
    x = NULL;
    ret = 0;
out:
    free(x);
    opts_free(kv, n);
    opts_free(fkv, fn);
    return ret;
}

/* The recorded argv with every disk's format node pointed at its current image; names[k] gets disk k's
 * node name in the new QEMU (NULL when unknown). */
static int argv_point_disks(char **argv, const struct md_domain *dom, char ***names, struct qs_error **err)
{
    size_t nd = md_domain_disk_count(dom);
    char **v = qs_xcalloc(nd + 1, sizeof(char *));

    for (size_t k = 0; k < nd; k++) {
        struct md_domain_disk d;
        if (md_domain_disk_get(dom, k, &d, err) < 0)
            goto fail;
        if (!d.target || !d.source || (d.device && strcmp(d.device, "disk") != 0))
            continue;
        if (argv_point_disk(argv, &d, &v[k], err) < 0)
            goto fail;
    }
    *names = v;
    return 0;
fail:
    for (size_t k = 0; k < nd; k++)
        free(v[k]);
    free(v);
    return -1;
}

/*
 * The argv to start: the recorded one without -daemonize, -S and -incoming (qsnap decides those), with a
 * QMP monitor on SOCK (the recorded one is reused when the argv already serves it).
 */
static char **start_argv(char **argv, const char *sock, bool paused)
{
    size_t n = qs_strv_len(argv), k = 0;
    char **out = qs_xcalloc(n + 5, sizeof(char *));
    bool has_qmp = false;

    for (size_t i = 0; i < n; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-daemonize") == 0 || strcmp(a, "-S") == 0)
            continue;
        if (strcmp(a, "-incoming") == 0 && i + 1 < n) {
            i++;
            continue;
        }
        if (strcmp(a, "-qmp") == 0 && i + 1 < n && qmp_arg_is(argv[i + 1], sock))
            has_qmp = true;
        out[k++] = qs_xstrdup(a);
    }
    if (!has_qmp) {
        out[k++] = qs_xstrdup("-qmp");
        out[k++] = qs_asprintf("unix:%s,server=on,wait=off", sock);
    }
    if (paused)
        out[k++] = qs_xstrdup("-S");
    return out;
}

static char **argv_add_incoming_defer(char **argv);

/* engine_qemu_start, and with INCOMING "-incoming defer" (memstate.c's restore) */
static int qemu_start(struct engine *e, struct md_domain *dom, const struct md_lock *lock, bool paused,
                      bool incoming, struct qmp_client **c, struct qs_error **err)
{
    const char *name = md_domain_name(dom);
    char **argv = md_domain_argv(dom), **full = NULL, **nodes = NULL;
    char *sock = NULL, *log = NULL;
    size_t nd = md_domain_disk_count(dom);
    bool changed = false;
    struct qmp_options opts = {.connect_timeout_ms = 30000, .timeout_ms = e->qmp_timeout_ms};
    pid_t pid = -1;
    int ret = -1;

    if (!argv || !argv[0]) {
        qs_error_set(err, QS_ERR_UNSUPPORTED,
                     "domain '%s' has no QEMU command line: attach the domain while it runs so qsnap records "
                     "it",
                     name);
        goto out;
    }
    sock = md_domain_qmp_socket(dom) ? qs_xstrdup(md_domain_qmp_socket(dom))
                                     : qs_asprintf("%s/run/%s.qmp", engine_root(e), name);
    if (strlen(sock) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
        qs_error_set(err, QS_ERR_INVALID, "QMP socket path '%s' is too long", sock);
        goto out;
    }
    log = qs_asprintf("%s/run/%s.log", engine_root(e), name);
    if (argv_point_disks(argv, dom, &nodes, err) < 0)
        goto out;
    full = start_argv(argv, sock, paused);
    if (incoming)
        full = argv_add_incoming_defer(full);
    unlink(sock); /* a socket left by a QEMU that was killed */
    if (vm_spawn(full, log, &pid, err) < 0)
        goto out;
    *c = qmp_client_connect(sock, &opts, err);
    if (!*c) {
        if (process_exited(pid))
            qs_error_prefix(err, "QEMU exited at start (see '%s')", log);
        else
            kill(pid, SIGKILL);
        goto out;
    }
    if (!qs_str_equal(md_domain_qmp_socket(dom), sock)) {
        if (md_domain_set_qmp_socket(dom, sock, err) < 0)
            goto out;
        changed = true;
    }
    /* the new QEMU names each disk's top node as the command line does, not as a past snapshot did */
    for (size_t k = 0; k < nd; k++) {
        struct md_domain_disk d;
        if (!nodes[k] || md_domain_disk_get(dom, k, &d, NULL) < 0 || qs_str_equal(d.node_name, nodes[k]))
            continue;
        char *target = qs_xstrdup(d.target); /* d's strings die with the change */
        int r = md_domain_set_disk_node_name(dom, target, nodes[k], err);
        free(target);
        if (r < 0)
            goto out;
        changed = true;
    }
    if (changed && md_store_domain_put(e->store, lock, dom, err) < 0)
        goto out;
    ret = 0;
out:
    for (size_t k = 0; nodes && k < nd; k++)
        free(nodes[k]);
    free(nodes);
    if (ret < 0 && *c) {
        engine_qemu_quit(e, c, NULL); /* best effort: the error that matters is already set */
    }
    qs_strv_free(argv);
    qs_strv_free(full);
    free(sock);
    free(log);
    return ret;
}

/* ---- -incoming defer, for restoring a saved state (memstate.c; declared in memstate.h) ---------------- */

/* Takes over ARGV (a start_argv() result) and returns it with "-incoming defer" appended. */
static char **argv_add_incoming_defer(char **argv)
{
    size_t n = qs_strv_len(argv);

    argv = qs_xrealloc(argv, (n + 3) * sizeof(char *));
    argv[n] = qs_xstrdup("-incoming");
    argv[n + 1] = qs_xstrdup("defer");
    argv[n + 2] = NULL;
    return argv;
}

int engine_qemu_start(struct engine *e, struct md_domain *dom, const struct md_lock *lock, bool paused,
                      struct qmp_client **c, struct qs_error **err)
{
    return qemu_start(e, dom, lock, paused, false, c, err);
}

int engine_qemu_start_incoming(struct engine *e, struct md_domain *dom, const struct md_lock *lock,
                               struct qmp_client **c, struct qs_error **err)
{
    /* -S too: the guest must not run once the state is in, before the caller decides */
    return qemu_start(e, dom, lock, true, true, c, err);
}

/* ---- end of -incoming defer ------------------------------------------------------------------------- */

int engine_domain_start(struct engine *e, const char *name, bool paused, struct qs_error **err)
{
    struct md_domain *dom = engine_domain_load(e, name, err);
    struct md_lock *lock = NULL;
    struct qmp_client *c = NULL;
    int ret = -1;

    if (!dom || !(lock = engine_domain_lock(e, name, err)) || engine_domain_connect(e, dom, &c, err) < 0)
        goto out;
    if (c) {
        qs_error_set(err, QS_ERR_STATE, "Requested operation is not valid: domain is already running");
        goto out;
    }
    ret = engine_qemu_start(e, dom, lock, paused, &c, err);
out:
    qmp_client_free(c);
    md_lock_free(lock);
    md_domain_free(dom);
    return ret;
}
