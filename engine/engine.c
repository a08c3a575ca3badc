/* engine.c: the engine object and the domain operations (attach, define, start, destroy, state). */
#include "engine_priv.h"
#include "intent.h"
#include "memstate.h" /* engine_qemu_start_incoming */
#include "disks.h"
#include "nvram.h"
#include "qargv.h"
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
    struct qs_error *local = NULL;
    struct engine *e = NULL;
    char *root = md_store_root_default(opts ? opts->root : NULL, err);

    if (!root)
        return NULL;
    e = qs_xcalloc(1, sizeof(*e));
    e->store = md_store_open(root, &local);
    if (!e->store) {
        /* say which directory, and how to choose another */
        qs_error_set(err, local->code, "state directory '%s' cannot be used: %s (choose another with --root DIR or "
                     "$QSNAP_ROOT)", root, local->message);
        qs_error_free(local);
        free(root);
        free(e);
        return NULL;
    }
    free(root);
    e->lock_timeout_ms = opts && opts->lock_timeout_ms ? opts->lock_timeout_ms : 10000;
    e->qmp_timeout_ms = opts && opts->qmp_timeout_ms ? opts->qmp_timeout_ms : 600000;
    e->progress = opts ? opts->progress : NULL;
    e->step = opts ? opts->step : NULL;
    e->opaque = opts ? opts->opaque : NULL;
    e->clock = opts ? opts->clock : NULL;
    return e;
}

void engine_free(struct engine *e)
{
    if (!e)
        return;
    md_store_free(e->store);
    engine_sched_release(e);
    free(e);
}

const char *engine_root(const struct engine *e)
{
    return md_store_root(e->store);
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

int engine_domain_exists(struct engine *e, const char *name, struct qs_error **err)
{
    struct qs_error *local = NULL;

    if (md_store_domain_exists(e->store, name, &local) == 0)
        return 0;
    if (local->code == QS_ERR_NOTFOUND) {
        qs_error_free(local);
        qs_error_set(err, QS_ERR_NOTFOUND, "Domain not found: no domain with matching name '%s'", name);
        return -1;
    }
    qs_error_propagate(err, &local);
    return -1;
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
        if (local->code == QS_ERR_BUSY && intent_read(e, name, &it, NULL) > 0 && !it.snapshot && it.target)
            qs_error_set(err, QS_ERR_BUSY, "domain '%s' is busy: qsnap process %ld is running a %s of '%s'", name,
                         it.pid, it.op, it.target); /* a save or restore: of a file */
        else if (local->code == QS_ERR_BUSY && it.op)
            qs_error_set(err, QS_ERR_BUSY, "domain '%s' is busy: qsnap process %ld is running %s %s of snapshot "
                         "'%s'", name, it.pid, strchr("aeiou", it.op[0]) ? "an" : "a", it.op,
                         it.snapshot ? it.snapshot : "?");
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

/* What only QEMU's schema tells is kept in ROOT/run per QEMU binary (qmp_client_set_feature_cache). */
static void feature_cache(struct engine *e, struct qmp_client *c)
{
    char *dir = qs_asprintf("%s/run", engine_root(e));

    qmp_client_set_feature_cache(c, dir);
    free(dir);
}

int engine_domain_connect(struct engine *e, const struct md_domain *dom, struct qmp_client **c,
                          struct qs_error **err)
{
    const char *sock = md_domain_qmp_socket(dom);
    struct qs_error *local = NULL;

    *c = NULL;
    if (!sock)
        return 0;
    if ((e->qmp_get ? e->qmp_get(e->qmp_opaque, sock, e->qmp_timeout_ms, c, &local)
                    : vm_connect(sock, e->qmp_timeout_ms, c, &local)) < 0) {
        if (local->code == QS_ERR_NOTFOUND) {
            qs_error_free(local);
            return 0;
        }
        qs_error_prefix(&local, "domain '%s'", md_domain_name(dom));
        qs_error_propagate(err, &local);
        return -1;
    }
    feature_cache(e, *c);
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

/* Field 22 of /proc/PID/stat (the process's start time since boot, in clock ticks), or 0. */
static long long process_start_time(pid_t pid)
{
    char path[64], buf[1024];
    long long start = 0;
    FILE *f;
    char *p;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    if (!(f = fopen(path, "re")))
        return 0;
    /* after the command name in parentheses (which may hold blanks): state is field 3, start time field 22 */
    if (fgets(buf, sizeof(buf), f) && (p = strrchr(buf, ')'))) {
        int field = 2;
        for (char *tok = strtok(p + 1, " "); tok; tok = strtok(NULL, " "))
            if (++field == 22) {
                start = strtoll(tok, NULL, 10);
                break;
            }
    }
    fclose(f);
    return start;
}

/* Records QEMU's process (pid PID, working directory CWD: NULL keeps the recorded one) in DOM. */
static int record_process(struct md_domain *dom, pid_t pid, const char *cwd, struct qs_error **err)
{
    char *keep = md_domain_cwd(dom) ? qs_xstrdup(md_domain_cwd(dom)) : NULL; /* borrowed from dom */
    int r = md_domain_set_process(dom, cwd ? cwd : keep, pid > 0 ? pid : 0, pid > 0 ? process_start_time(pid) : 0,
                                  err);
    free(keep);
    return r;
}

/* Everything attach learns from QEMU: a new definition NAME, or (OLD given) OLD brought up to date - its
 * disks matched by image, then by device, keep their names, so its snapshots still name them. */
static struct md_domain *attach_describe(struct qmp_client *c, const char *name, const char *sock,
                                         struct md_domain *old, struct qs_error **err)
{
    struct qmp_reply *mem = NULL, *cpus = NULL, *uuid = NULL;
    struct vm_block *blocks = NULL;
    struct disk_desc *dv = NULL;
    struct md_domain *dom = NULL, *ret = NULL;
    char **argv = NULL, *cwd = NULL, *machine = NULL, *mt = NULL;
    int64_t base = 0;
    size_t nblocks = 0, nd = 0;
    bool *kept = NULL;
    const char *u;
    pid_t pid = qmp_client_peer_pid(c);

    if (qmp_client_execute(c, "query-memory-size-summary", NULL, &mem, err) < 0 ||
        qmp_client_execute(c, "query-cpus-fast", NULL, &cpus, err) < 0 ||
        qmp_client_execute(c, "query-uuid", NULL, &uuid, err) < 0 || vm_blocks(c, &blocks, &nblocks, err) < 0)
        goto out;
    if (pid > 0)
        vm_read_cmdline(pid, &argv, NULL);
    if (disk_describe(c, pid, argv, blocks, nblocks, &dv, &nd, &cwd, err) < 0)
        goto out;
    qmp_value_int(qmp_value_get(qmp_reply_value(mem), "base-memory"), &base);
    u = qmp_value_get_string(qmp_reply_value(uuid), "UUID");
    if (u && strcmp(u, "00000000-0000-0000-0000-000000000000") == 0)
        u = NULL; /* QEMU without -uuid: the definition gets a random one */
    if (old) {
        dom = old;
        if (md_domain_set_memory_kib(dom, (unsigned long long)(base / 1024), err) < 0 ||
            md_domain_set_vcpus(dom, (unsigned)qmp_value_array_len(qmp_reply_value(cpus)), err) < 0)
            goto out;
    } else if (!(dom = md_domain_new(name, u, (unsigned long long)(base / 1024),
                                     (unsigned)qmp_value_array_len(qmp_reply_value(cpus)), err))) {
        goto out;
    }
    /* libvirt's machine names are QEMU's machine types ("pc-q35-7.2-machine" without the suffix) */
    {
        struct qmp_args *a = qmp_args_new();
        struct qmp_reply *r = NULL;
        qmp_args_set_str(a, "path", "/machine");
        qmp_args_set_str(a, "property", "type");
        if (qmp_client_execute(c, "qom-get", a, &r, NULL) == 0 && (mt = (char *)qmp_value_string(qmp_reply_value(r))))
            machine = qs_str_has_suffix(mt, "-machine") ? qs_xstrndup(mt, strlen(mt) - 8) : qs_xstrdup(mt);
        qmp_reply_free(r);
        qmp_args_free(a);
    }
    if ((machine && md_domain_set_machine(dom, machine, err) < 0) || md_domain_set_qmp_socket(dom, sock, err) < 0 ||
        record_process(dom, pid, cwd, err) < 0)
        goto out;
    /* disks: a known one keeps its target; the rest are added with the names disk_describe chose (renamed when
     * an old disk has the name) */
    kept = qs_xcalloc(md_domain_disk_count(dom) + 1, sizeof(bool));
    for (size_t i = 0; i < nd; i++) {
        const struct disk_desc *x = &dv[i];
        char *target = NULL;
        for (size_t k = 0; old && k < md_domain_disk_count(dom) && !target; k++) {
            struct md_domain_disk d;
            char *src;
            if (kept[k] || md_domain_disk_get(dom, k, &d, NULL) < 0 || !d.target)
                continue;
            src = d.source ? qargv_path_abs(d.source, NULL) : NULL;
            if (qs_str_equal(src, x->source) || (d.qdev && qs_str_equal(d.qdev, x->qdev)) ||
                (!d.qdev && d.drive && qs_str_equal(d.drive, x->drive))) {
                target = qs_xstrdup(d.target);
                kept[k] = true;
            }
            free(src);
        }
        if (target) {
            if (md_domain_set_disk_source(dom, target, x->source, err) < 0 ||
                md_domain_set_disk_driver_type(dom, target, x->format, err) < 0) {
                free(target);
                goto out;
            }
        } else {
            /* a new disk: its name, unless an old disk holds it */
            bool clash = false;
            for (size_t k = 0; old && k < md_domain_disk_count(dom) && !clash; k++) {
                struct md_domain_disk d;
                clash = md_domain_disk_get(dom, k, &d, NULL) == 0 && qs_str_equal(d.target, x->target);
            }
            target = qs_xstrdup(x->target);
            for (int j = 1; clash; j++) {
                clash = false;
                free(target);
                target = qs_asprintf("%.2s%c%c", x->target, 'a' + (j / 26) % 26, 'a' + j % 26);
                for (size_t k = 0; k < md_domain_disk_count(dom) && !clash; k++) {
                    struct md_domain_disk d;
                    clash = md_domain_disk_get(dom, k, &d, NULL) == 0 && qs_str_equal(d.target, target);
                }
            }
            if (md_domain_add_disk(dom, "file", "disk", x->format, x->source, target, x->bus, err) < 0) {
                free(target);
                goto out;
            }
            kept = qs_xrealloc(kept, (md_domain_disk_count(dom) + 1) * sizeof(bool));
            kept[md_domain_disk_count(dom) - 1] = true;
        }
        if (md_domain_set_disk_ident(dom, target, "node-name", x->node, err) < 0 ||
            md_domain_set_disk_ident(dom, target, "qdev", x->qdev, err) < 0 ||
            md_domain_set_disk_ident(dom, target, "drive", x->drive, err) < 0 ||
            md_domain_set_disk_ident(dom, target, "arg", x->arg, err) < 0) {
            free(target);
            goto out;
        }
        free(target);
    }
    /* disks the running QEMU no longer has leave the definition (snapshot disks stay: device 'disk' only) */
    for (size_t k = md_domain_disk_count(dom); old && k-- > 0;) {
        struct md_domain_disk d;
        char *t;
        if (kept[k] || md_domain_disk_get(dom, k, &d, NULL) < 0 || !d.target || !qs_str_equal(d.device, "disk"))
            continue;
        t = qs_xstrdup(d.target);
        if (md_domain_remove_disk(dom, t, err) < 0) {
            free(t);
            goto out;
        }
        free(t);
    }
    if (nvram_describe(c, argv, blocks, nblocks, cwd, dom, err) < 0 ||
        md_domain_set_argv(dom, argv ? (const char *const *)argv : NULL, err) < 0)
        goto out;
    ret = dom;
    dom = NULL;
out:
    free(kept);
    free(machine);
    free(cwd);
    disk_descs_free(dv, nd);
    qs_strv_free(argv);
    vm_blocks_free(blocks, nblocks);
    qmp_reply_free(mem);
    qmp_reply_free(cpus);
    qmp_reply_free(uuid);
    if (dom != old)
        md_domain_free(dom);
    return ret;
}

/* Another domain that names the QEMU on C (its socket SOCK, or its process): refused, naming it. */
static int attach_check_unique(struct engine *e, const char *name, const char *sock, struct qmp_client *c,
                               struct qs_error **err)
{
    char **names = NULL;
    pid_t pid = qmp_client_peer_pid(c);
    long long start = pid > 0 ? process_start_time(pid) : 0;
    int ret = 0;

    if (md_store_domain_list(e->store, &names, err) < 0)
        return -1;
    for (size_t i = 0; names[i] && ret == 0; i++) {
        struct md_domain *o;
        long long opid, ostart;
        char *osock;
        if (strcmp(names[i], name) == 0 || !(o = md_store_domain_get(e->store, names[i], NULL)))
            continue;
        osock = md_domain_qmp_socket(o) ? qargv_path_abs(md_domain_qmp_socket(o), NULL) : NULL;
        md_domain_process(o, &opid, &ostart);
        if (qs_str_equal(osock, sock)) {
            qs_error_set(err, QS_ERR_EXISTS, "QMP socket '%s' is already domain '%s'", sock, names[i]);
            ret = -1;
        } else if (pid > 0 && opid == pid && ostart == start) {
            qs_error_set(err, QS_ERR_EXISTS, "the QEMU on '%s' (process %d) is already domain '%s'", sock, (int)pid,
                         names[i]);
            ret = -1;
        }
        free(osock);
        md_domain_free(o);
    }
    qs_strv_free(names);
    return ret;
}

int engine_domain_attach(struct engine *e, const char *name, const char *qmp_socket, struct qs_error **err)
{
    return engine_domain_attach_flags(e, name, qmp_socket, 0, err);
}

int engine_domain_attach_flags(struct engine *e, const char *name, const char *qmp_socket, unsigned flags,
                               struct qs_error **err)
{
    struct md_lock *lock = NULL;
    struct md_domain *dom = NULL, *old = NULL;
    struct qmp_client *c = NULL;
    struct qs_error *local = NULL;
    bool update = flags & ENGINE_ATTACH_UPDATE;
    char *abs = NULL;
    int ret = -1;

    if (qs_name_check(name, "domain", err) < 0 || !(lock = engine_domain_lock(e, name, err)))
        goto out;
    old = md_store_domain_get(e->store, name, &local);
    if (!old && local->code != QS_ERR_NOTFOUND) {
        qs_error_propagate(err, &local);
        goto out;
    }
    if (old && !update) {
        qs_error_set(err, QS_ERR_EXISTS, "domain '%s' is already defined (use --update to record its running "
                     "QEMU again)", name);
        goto out;
    }
    if (!old && update) {
        qs_error_set(err, QS_ERR_NOTFOUND, "Domain not found: no domain with matching name '%s'", name);
        goto out;
    }
    if (!qmp_socket && old)
        qmp_socket = md_domain_qmp_socket(old);
    if (!qmp_socket) {
        qs_error_set(err, QS_ERR_INVALID, "domain '%s' records no QMP socket: give one with --qmp", name);
        goto out;
    }
    abs = qmp_socket[0] == '/' ? qs_xstrdup(qmp_socket) : realpath(qmp_socket, NULL);
    if (!abs) {
        qs_error_set_errno(err, QS_ERR_NOTFOUND, errno, "QMP socket '%s'", qmp_socket);
        goto out;
    }
    if (vm_connect(abs, e->qmp_timeout_ms, &c, err) < 0 || attach_check_unique(e, name, abs, c, err) < 0 ||
        !(dom = attach_describe(c, name, abs, old, err)))
        goto out;
    old = NULL; /* updated in place: now dom */
    if (md_store_domain_put(e->store, lock, dom, err) < 0)
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
    schedule_forget(e, name);
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

/* engine_qemu_start, and with INCOMING "-incoming defer" (memstate.c's restore) */
static int qemu_start(struct engine *e, struct md_domain *dom, const struct md_lock *lock, bool paused,
                      bool incoming, struct qmp_client **c, struct qs_error **err)
{
    const char *name = md_domain_name(dom);
    char **argv = md_domain_argv(dom), **pointed = NULL, **full = NULL;
    char *sock = NULL, *log = NULL;
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
    if (qargv_point_disks(argv, dom, &pointed, err) < 0)
        goto out;
    full = qargv_start(pointed, md_domain_cwd(dom), sock, paused, incoming);
    unlink(sock); /* a socket left by a QEMU that was killed */
    if (nvram_before_start(e, dom, err) < 0 || vm_spawn(full, md_domain_cwd(dom), log, &pid, err) < 0)
        goto out;
    *c = qmp_client_connect(sock, &opts, err);
    if (!*c) {
        if (process_exited(pid))
            qs_error_prefix(err, "QEMU exited at start (see '%s')", log);
        else
            kill(pid, SIGKILL);
        goto out;
    }
    feature_cache(e, *c);
    /* the socket when it is qsnap's own, and the process, so that no other domain attaches it */
    if ((!qs_str_equal(md_domain_qmp_socket(dom), sock) && md_domain_set_qmp_socket(dom, sock, err) < 0) ||
        record_process(dom, pid, NULL, err) < 0 || md_store_domain_put(e->store, lock, dom, err) < 0)
        goto out;
    ret = 0;
out:
    if (ret < 0 && *c) {
        engine_qemu_quit(e, c, NULL); /* best effort: the error that matters is already set */
    }
    qs_strv_free(argv);
    qs_strv_free(pointed);
    qs_strv_free(full);
    free(sock);
    free(log);
    return ret;
}

int engine_qemu_check_start(const struct md_domain *dom, struct qs_error **err)
{
    char **argv = md_domain_argv(dom), **pointed = NULL;
    int ret = -1;

    if (!argv || !argv[0])
        qs_error_set(err, QS_ERR_UNSUPPORTED,
                     "domain '%s' has no QEMU command line: attach the domain while it runs so qsnap records it",
                     md_domain_name(dom));
    else
        ret = qargv_point_disks(argv, dom, &pointed, err);
    qs_strv_free(argv);
    qs_strv_free(pointed);
    return ret;
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
