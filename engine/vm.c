/* vm.c: live QEMU queries over QMP, and the QEMU process: spawn as a daemon, kill, read its argv. */
#include "vm.h"
#include "qs_file.h"
#include "qs_util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

void vm_block_release(struct vm_block *b)
{
    if (!b)
        return;
    free(b->device);
    free(b->qdev);
    free(b->drive);
    free(b->node);
    free(b->file);
    free(b->format);
    qs_strv_free(b->tags);
    qs_strv_free(b->tag_ids);
    free(b->vmstate_sizes);
    memset(b, 0, sizeof(*b));
}

void vm_blocks_free(struct vm_block *b, size_t n)
{
    for (size_t i = 0; b && i < n; i++)
        vm_block_release(&b[i]);
    free(b);
}

/*
 * A plain connect() that neither retries nor waits: tells "nobody listens" apart from "QEMU is there".
 * The connected socket goes to *keep (the QMP session then runs on it: QEMU serves one client at a time).
 */
static int socket_probe(const char *path, int *keep, struct qs_error **err)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd;

    if (strlen(path) >= sizeof(sa.sun_path)) {
        qs_error_set(err, QS_ERR_INVALID, "QMP socket path '%s' is too long", path);
        return -1;
    }
    strcpy(sa.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        qs_error_set_errno(err, QS_ERR_IO, errno, "cannot create a socket");
        return -1;
    }
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
        *keep = fd;
        return 0;
    }
    if (errno == ENOENT || errno == ECONNREFUSED)
        qs_error_set(err, QS_ERR_NOTFOUND, "no QEMU listens on '%s'", path);
    else
        qs_error_set_errno(err, QS_ERR_IO, errno, "cannot connect to '%s'", path);
    close(fd);
    return -1;
}

int vm_connect(const char *socket_path, int timeout_ms, struct qmp_client **c, struct qs_error **err)
{
    struct qmp_options opts = {.connect_timeout_ms = 5000, .timeout_ms = timeout_ms, .name = socket_path};

    /* QEMU can reset a connection it accepted while the previous client was still being let go (seen in
     * CI right after another qsnap process exited): a few more tries, the probe telling a QEMU that is gone */
    for (int attempt = 0;; attempt++) {
        struct qs_error *local = NULL;
        int fd = -1;
        if (socket_probe(socket_path, &fd, err) < 0)
            return -1;
        if ((*c = qmp_client_new_fd(fd, &opts, &local)))
            return 0;
        if (local->code != QS_ERR_DISCONNECTED || attempt == 3) {
            qs_error_propagate(err, &local);
            return -1;
        }
        qs_error_free(local);
        {
            struct timespec ts = {0, 20 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
}

/* query-status' reply R (freed) as vm_status tells it. */
static int status_take(struct qmp_reply *r, char **status, bool *running, struct qs_error **err)
{
    const char *s = qmp_value_get_string(qmp_reply_value(r), "status");
    bool run = false;
    int ret = -1;

    if (!s || !qmp_value_bool(qmp_value_get(qmp_reply_value(r), "running"), &run)) {
        qs_error_set(err, QS_ERR_PROTOCOL, "query-status reply lacks 'status' or 'running'");
        goto out;
    }
    if (status)
        *status = qs_xstrdup(s);
    if (running)
        *running = run;
    ret = 0;
out:
    qmp_reply_free(r);
    return ret;
}

int vm_status(struct qmp_client *c, char **status, bool *running, struct qs_error **err)
{
    struct qmp_reply *r = NULL;

    if (qmp_client_execute(c, "query-status", NULL, &r, err) < 0)
        return -1;
    return status_take(r, status, running, err);
}

/* "/machine/peripheral/vda/virtio-backend" -> "vda"; other qdev paths have no user id. */
static char *qdev_id(const char *qdev)
{
    static const char prefix[] = "/machine/peripheral/";
    const char *end;

    if (!qdev || !qs_str_has_prefix(qdev, prefix))
        return NULL;
    qdev += sizeof(prefix) - 1;
    end = strchr(qdev, '/');
    return end ? qs_xstrndup(qdev, (size_t)(end - qdev)) : qs_xstrdup(qdev);
}

static int block_fill(struct vm_block *b, const struct qmp_value *dev, const struct qmp_value *ins,
                      struct qs_error **err)
{
    const struct qmp_value *snaps = qmp_value_path(ins, "image.snapshots");
    const char *device = qmp_value_get_string(dev, "device");
    const char *node = qmp_value_get_string(ins, "node-name");
    const char *file = qmp_value_get_string(ins, "file");
    const char *drv = qmp_value_get_string(ins, "drv");
    size_t nsnaps = qmp_value_array_len(snaps);

    if (!node || !file || !drv) {
        qs_error_set(err, QS_ERR_PROTOCOL, "query-block entry lacks node-name, file or drv");
        return -1;
    }
    b->device = qdev_id(qmp_value_get_string(dev, "qdev"));
    if (qmp_value_get_string(dev, "qdev") && *qmp_value_get_string(dev, "qdev"))
        b->qdev = qs_xstrdup(qmp_value_get_string(dev, "qdev"));
    if (device && *device)
        b->drive = qs_xstrdup(device);
    if (!b->device && b->qdev && !strchr(b->qdev, '/'))
        b->device = qs_xstrdup(b->qdev); /* a -device id=X of some kinds (ide-hd, scsi-hd) comes as "X" */
    if (!b->device)
        b->device = qs_xstrdup(device && *device ? device : node);
    b->node = qs_xstrdup(node);
    b->file = qs_xstrdup(file);
    b->format = qs_xstrdup(drv);
    qmp_value_bool(qmp_value_get(ins, "ro"), &b->readonly);
    qmp_value_int(qmp_value_get(ins, "backing_file_depth"), &b->backing_depth);
    qmp_value_int(qmp_value_path(ins, "image.virtual-size"), &b->virtual_size);
    b->tags = qs_xcalloc(nsnaps + 1, sizeof(char *));
    b->tag_ids = qs_xcalloc(nsnaps + 1, sizeof(char *));
    b->vmstate_sizes = qs_xcalloc(nsnaps + 1, sizeof(int64_t));
    for (size_t i = 0, k = 0; i < nsnaps; i++) {
        const struct qmp_value *sn = qmp_value_array_at(snaps, i);
        const char *name = qmp_value_get_string(sn, "name");
        const char *id = qmp_value_get_string(sn, "id");
        if (!name || !id)
            continue;
        b->tags[k] = qs_xstrdup(name);
        b->tag_ids[k] = qs_xstrdup(id);
        qmp_value_int(qmp_value_get(sn, "vm-state-size"), &b->vmstate_sizes[k]);
        k++;
    }
    return 0;
}

/* query-block's reply R (freed) as vm_blocks tells it. */
static int blocks_take(struct qmp_reply *r, struct vm_block **blocks, size_t *n, struct qs_error **err)
{
    const struct qmp_value *list;
    struct vm_block *out = NULL;
    size_t count = 0, len;
    int ret = -1;

    list = qmp_reply_value(r);
    len = qmp_value_array_len(list);
    out = qs_xcalloc(len + 1, sizeof(*out));
    for (size_t i = 0; i < len; i++) {
        const struct qmp_value *dev = qmp_value_array_at(list, i);
        const struct qmp_value *ins = qmp_value_get(dev, "inserted");
        if (!ins)
            continue; /* empty CD-ROM drive */
        if (block_fill(&out[count], dev, ins, err) < 0) {
            count++;
            goto out;
        }
        count++;
    }
    *blocks = out;
    *n = count;
    out = NULL;
    ret = 0;
out:
    vm_blocks_free(out, count);
    qmp_reply_free(r);
    return ret;
}

int vm_blocks(struct qmp_client *c, struct vm_block **blocks, size_t *n, struct qs_error **err)
{
    struct qmp_reply *r = NULL;

    if (qmp_client_execute(c, "query-block", NULL, &r, err) < 0)
        return -1;
    return blocks_take(r, blocks, n, err);
}

int vm_status_blocks(struct qmp_client *c, char **status, bool *running, struct vm_block **blocks, size_t *n,
                     struct qs_error **err)
{
    struct qmp_reply *rs = NULL, *rb = NULL;
    struct qs_error *es = NULL, *eb = NULL;

    if (qmp_client_execute_pair(c, "query-status", NULL, &rs, &es, "query-block", NULL, &rb, &eb) < 0 || es ||
        eb) {
        qs_error_propagate(err, es ? &es : &eb);
        qs_error_free(es);
        qs_error_free(eb);
        qmp_reply_free(rs);
        qmp_reply_free(rb);
        return -1;
    }
    if (status_take(rs, status, running, err) < 0) {
        qmp_reply_free(rb);
        return -1;
    }
    if (blocks_take(rb, blocks, n, err) < 0) {
        if (status) {
            free(*status);
            *status = NULL;
        }
        return -1;
    }
    return 0;
}

const struct vm_block *vm_blocks_find(const struct vm_block *b, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(b[i].device, name) == 0 || strcmp(b[i].node, name) == 0)
            return &b[i];
    return NULL;
}

bool vm_block_has_tag(const struct vm_block *b, const char *tag)
{
    for (char **t = b->tags; t && *t; t++)
        if (strcmp(*t, tag) == 0)
            return true;
    return false;
}

const char *vm_block_tag_clash(const struct vm_block *b, const char *tag)
{
    for (size_t i = 0; b->tags && b->tags[i]; i++)
        if (strcmp(b->tag_ids[i], tag) == 0 && strcmp(b->tags[i], tag) != 0)
            return b->tags[i];
    return NULL;
}

int vm_stop(struct qmp_client *c, struct qs_error **err)
{
    return qmp_client_execute(c, "stop", NULL, NULL, err);
}

int vm_cont(struct qmp_client *c, struct qs_error **err)
{
    return qmp_client_execute(c, "cont", NULL, NULL, err);
}

/* Runs in the grandchild: never returns. Reports its pid, then an exec failure's errno, on REPORT. */
static void spawn_exec(char *const argv[], const char *cwd, const char *log_path, int report)
{
    pid_t self = getpid();
    int nullfd, logfd, e;

    if (write(report, &self, sizeof(self)) != (ssize_t)sizeof(self))
        _exit(127);
    setsid();
    nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    logfd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (nullfd < 0 || logfd < 0 || dup2(nullfd, 0) < 0 || dup2(logfd, 1) < 0 || dup2(logfd, 2) < 0 ||
        (cwd && chdir(cwd) < 0)) {
        e = errno;
    } else {
        signal(SIGPIPE, SIG_DFL);
        execvp(argv[0], argv);
        e = errno;
    }
    if (write(report, &e, sizeof(e)) < 0)
        _exit(127);
    _exit(127);
}

int vm_spawn(char *const argv[], const char *cwd, const char *log_path, pid_t *pid, struct qs_error **err)
{
    int p[2] = {-1, -1}, ret = -1, status, e = 0;
    pid_t mid, child = -1;
    ssize_t n;

    if (pipe2(p, O_CLOEXEC) < 0) {
        qs_error_set_errno(err, QS_ERR_IO, errno, "cannot create a pipe");
        return -1;
    }
    mid = fork();
    if (mid < 0) {
        qs_error_set_errno(err, QS_ERR_IO, errno, "cannot start '%s'", argv[0]);
        goto out;
    }
    if (mid == 0) {
        /* the middle process exits at once so the daemon is reparented and never our zombie */
        close(p[0]);
        if (fork() == 0)
            spawn_exec(argv, cwd, log_path, p[1]);
        _exit(0);
    }
    close(p[1]);
    p[1] = -1;
    while (waitpid(mid, &status, 0) < 0 && errno == EINTR)
        ;
    do
        n = read(p[0], &child, sizeof(child));
    while (n < 0 && errno == EINTR);
    if (n != (ssize_t)sizeof(child)) {
        qs_error_set(err, QS_ERR_IO, "cannot start '%s'", argv[0]);
        goto out;
    }
    do
        n = read(p[0], &e, sizeof(e));
    while (n < 0 && errno == EINTR);
    if (n == (ssize_t)sizeof(e)) {
        qs_error_set_errno(err, e == ENOENT ? QS_ERR_NOTFOUND : QS_ERR_IO, e, "cannot run '%s'%s%s", argv[0],
                           cwd ? " in " : "", cwd ? cwd : "");
        goto out;
    }
    *pid = child;
    ret = 0;
out:
    qs_close(p[0]);
    qs_close(p[1]);
    return ret;
}

int vm_read_cmdline(pid_t pid, char ***argv, struct qs_error **err)
{
    char *path = qs_asprintf("/proc/%d/cmdline", (int)pid);
    char *data = NULL, **v = NULL;
    size_t len = 0, count = 0;
    int ret = -1;

    if (qs_file_read(AT_FDCWD, path, 1 << 20, &data, &len, err) < 0)
        goto out;
    for (size_t i = 0; i < len; i++)
        if (data[i] == '\0')
            count++;
    v = qs_xcalloc(count + 1, sizeof(char *));
    for (size_t i = 0, k = 0; i < len && k < count; k++) {
        v[k] = qs_xstrdup(data + i);
        i += strlen(data + i) + 1;
    }
    if (count == 0) {
        qs_error_set(err, QS_ERR_NOTFOUND, "process %d has no command line", (int)pid);
        goto out;
    }
    *argv = v;
    v = NULL;
    ret = 0;
out:
    qs_strv_free(v);
    free(data);
    free(path);
    return ret;
}

int vm_kill(pid_t pid, struct qs_error **err)
{
    char *exe = qs_asprintf("/proc/%d/exe", (int)pid);
    char target[4096];
    ssize_t n = readlink(exe, target, sizeof(target) - 1);
    int ret = -1;

    if (n < 0) {
        qs_error_set_errno(err, errno == ENOENT ? QS_ERR_NOTFOUND : QS_ERR_IO, errno,
                           "cannot inspect process %d", (int)pid);
        goto out;
    }
    target[n] = '\0';
    if (!strstr(target, "qemu-system-")) {
        qs_error_set(err, QS_ERR_INVALID, "process %d is '%s', not QEMU: not killing it", (int)pid, target);
        goto out;
    }
    if (kill(pid, SIGKILL) < 0 && errno != ESRCH) {
        qs_error_set_errno(err, QS_ERR_IO, errno, "cannot kill process %d", (int)pid);
        goto out;
    }
    ret = 0;
out:
    free(exe);
    return ret;
}

int vm_node_names(struct qmp_client *c, char ***names, struct qs_error **err)
{
    struct qmp_args *a = qmp_args_new();
    struct qmp_reply *r = NULL;
    const struct qmp_value *list;
    size_t n, k = 0;
    char **v;

    qmp_args_set_bool(a, "flat", true);
    if (qmp_client_execute(c, "query-named-block-nodes", a, &r, err) < 0) {
        qmp_args_free(a);
        return -1;
    }
    qmp_args_free(a);
    list = qmp_reply_value(r);
    n = qmp_value_array_len(list);
    v = qs_xcalloc(n + 1, sizeof(char *));
    for (size_t i = 0; i < n; i++) {
        const char *name = qmp_value_get_string(qmp_value_array_at(list, i), "node-name");
        if (name)
            v[k++] = qs_xstrdup(name);
    }
    qmp_reply_free(r);
    *names = v;
    return 0;
}

void vm_chain_free(struct vm_chain_node *chain, size_t n)
{
    for (size_t i = 0; chain && i < n; i++) {
        free(chain[i].node);
        free(chain[i].file);
        free(chain[i].format);
    }
    free(chain);
}

/* The graph id of the block-driver node NAME, or -1. */
static int64_t graph_node_id(const struct qmp_value *nodes, const char *name)
{
    for (size_t i = 0; i < qmp_value_array_len(nodes); i++) {
        const struct qmp_value *nd = qmp_value_array_at(nodes, i);
        int64_t id;
        if (qs_str_equal(qmp_value_get_string(nd, "type"), "block-driver") &&
            qs_str_equal(qmp_value_get_string(nd, "name"), name) && qmp_value_int(qmp_value_get(nd, "id"), &id))
            return id;
    }
    return -1;
}

static const char *graph_node_name(const struct qmp_value *nodes, int64_t id)
{
    for (size_t i = 0; i < qmp_value_array_len(nodes); i++) {
        const struct qmp_value *nd = qmp_value_array_at(nodes, i);
        int64_t nid;
        if (qmp_value_int(qmp_value_get(nd, "id"), &nid) && nid == id)
            return qmp_value_get_string(nd, "name");
    }
    return NULL;
}

int vm_chain(struct qmp_client *c, const char *top, struct vm_chain_node **chain, size_t *n,
             struct qs_error **err)
{
    struct qmp_args *a = qmp_args_new();
    struct qmp_reply *g = NULL, *nn = NULL;
    const struct qmp_value *nodes, *edges, *infos;
    struct vm_chain_node *out = NULL;
    size_t count = 0, cap = 0;
    const char *name = top;
    int ret = -1;

    qmp_args_set_bool(a, "flat", true);
    /* node names of the edges are only in the debug graph; files and formats in query-named-block-nodes */
    if (qmp_client_execute(c, "x-debug-query-block-graph", NULL, &g, err) < 0 ||
        qmp_client_execute(c, "query-named-block-nodes", a, &nn, err) < 0)
        goto out;
    nodes = qmp_value_get(qmp_reply_value(g), "nodes");
    edges = qmp_value_get(qmp_reply_value(g), "edges");
    infos = qmp_reply_value(nn);
    while (name) {
        int64_t id = graph_node_id(nodes, name), child = -1;
        const struct qmp_value *info = NULL;
        const char *file, *drv;
        if (id < 0 || count > 256) {
            qs_error_set(err, QS_ERR_NOTFOUND, "block node '%s' not found in QEMU's block graph", name);
            goto out;
        }
        for (size_t i = 0; i < qmp_value_array_len(infos) && !info; i++)
            if (qs_str_equal(qmp_value_get_string(qmp_value_array_at(infos, i), "node-name"), name))
                info = qmp_value_array_at(infos, i);
        qs_xgrow((void **)&out, &cap, count + 1, sizeof(*out));
        out[count].node = qs_xstrdup(name);
        file = qmp_value_get_string(info, "file"); /* NULL-safe: no info, no string */
        drv = qmp_value_get_string(info, "drv");
        out[count].file = qs_xstrdup(file ? file : "");
        out[count].format = qs_xstrdup(drv ? drv : "");
        count++;
        for (size_t i = 0; i < qmp_value_array_len(edges) && child < 0; i++) {
            const struct qmp_value *ed = qmp_value_array_at(edges, i);
            int64_t p;
            if (qmp_value_int(qmp_value_get(ed, "parent"), &p) && p == id &&
                qs_str_equal(qmp_value_get_string(ed, "name"), "backing"))
                qmp_value_int(qmp_value_get(ed, "child"), &child);
        }
        name = child >= 0 ? graph_node_name(nodes, child) : NULL;
    }
    *chain = out;
    *n = count;
    out = NULL;
    ret = 0;
out:
    vm_chain_free(out, count);
    qmp_args_free(a);
    qmp_reply_free(g);
    qmp_reply_free(nn);
    return ret;
}

int vm_blockdev_add_qcow2(struct qmp_client *c, const char *node, const char *file, struct qs_error **err)
{
    struct qmp_args *a = qmp_args_new(), *f;
    int ret;

    qmp_args_set_str(a, "driver", "qcow2");
    qmp_args_set_str(a, "node-name", node);
    f = qmp_args_set_obj(a, "file");
    qmp_args_set_str(f, "driver", "file");
    qmp_args_set_str(f, "filename", file);
    qmp_args_set_null(a, "backing");
    ret = qmp_client_execute(c, "blockdev-add", a, NULL, err);
    qmp_args_free(a);
    return ret;
}

int vm_blockdev_create_qcow2(struct qmp_client *c, const char *file, const char *backing, const char *backing_fmt,
                             int64_t size, int timeout_ms, struct qs_error **err)
{
    struct qmp_args *a = qmp_args_new(), *o, *f;
    struct qmp_job_options jo = {.timeout_ms = timeout_ms};
    char job[64];
    int ret;

    snprintf(job, sizeof(job), "qsnap-create-%d", (int)getpid());
    o = qmp_args_set_obj(a, "options");
    qmp_args_set_str(o, "driver", "qcow2");
    f = qmp_args_set_obj(o, "file"); /* opened for the job only, closed when it ends */
    qmp_args_set_str(f, "driver", "file");
    qmp_args_set_str(f, "filename", file);
    qmp_args_set_int(o, "size", size);
    qmp_args_set_str(o, "backing-file", backing);
    qmp_args_set_str(o, "backing-fmt", backing_fmt);
    ret = qmp_job_run(c, "blockdev-create", a, job, &jo, err);
    qmp_args_free(a);
    return ret;
}

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif

long long vm_ram_collapse(struct qmp_client *c)
{
    pid_t pid = qmp_client_peer_pid(c);
    unsigned long long hva = 0, lo, hi, start = 0, end = 0;
    char *out = NULL, *p, path[64], *line = NULL;
    size_t cap = 0;
    struct iovec iov;
    long long ret = -1;
    FILE *maps;
    int pidfd, mem;

#if defined(SYS_pidfd_open) && defined(SYS_process_madvise)
    if (pid <= 0 || qmp_client_hmp(c, "gpa2hva 0x100000", &out, NULL) < 0)
        goto out;
    /* "Host virtual address for 0x100000 (pc.ram) is 0x7f..." */
    if (!(p = strstr(out, " is 0x")) || sscanf(p + 4, "%llx", &hva) != 1)
        goto out;
    snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
    if (!(maps = fopen(path, "re")))
        goto out;
    /* whole lines: a mapped file's long path must not be read as the start of one */
    while (getline(&line, &cap, maps) > 0)
        if (sscanf(line, "%llx-%llx", &lo, &hi) == 2 && lo <= hva && hva < hi) {
            start = lo;
            end = hi;
            break;
        }
    free(line);
    fclose(maps);
    if (end <= start)
        goto out;
    /* RAM the guest never touched has no page table yet: the collapse skips it, and QEMU's setup then
     * populates it page by page in the pause. A read of one byte per 2 MiB maps the huge zero page there. */
    snprintf(path, sizeof(path), "/proc/%d/mem", (int)pid);
    if ((mem = open(path, O_RDONLY | O_CLOEXEC)) >= 0) {
        char byte;
        for (unsigned long long a = start; a < end; a += 2ull << 20)
            if (pread(mem, &byte, 1, (off_t)a) != 1)
                break;
        close(mem);
    }
    if ((pidfd = (int)syscall(SYS_pidfd_open, pid, 0)) < 0)
        goto out;
    iov.iov_base = (void *)(uintptr_t)start;
    iov.iov_len = (size_t)(end - start);
    ret = syscall(SYS_process_madvise, pidfd, &iov, 1, MADV_COLLAPSE, 0);
    close(pidfd);
#else
    (void)pid, (void)hva, (void)lo, (void)hi, (void)start, (void)end, (void)p, (void)path, (void)line, (void)cap,
        (void)iov, (void)maps, (void)pidfd, (void)mem;
#endif
out:
    free(out);
    return ret < 0 ? -1 : ret;
}

int vm_blockdev_del(struct qmp_client *c, const char *node, struct qs_error **err)
{
    struct qmp_args *a = qmp_args_new();
    int ret;

    qmp_args_set_str(a, "node-name", node);
    ret = qmp_client_execute(c, "blockdev-del", a, NULL, err);
    qmp_args_free(a);
    return ret;
}
