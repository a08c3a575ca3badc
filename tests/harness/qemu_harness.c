/* qemu_harness.c: starts and stops real QEMU for tests, makes guest disks, reads guest RAM and disk bytes. */
#include "qemu_harness.h"

#include "qs_proc.h"
#include "qs_util.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define QEMU_BIN "qemu-system-x86_64"
#define QEMU_IMG "qemu-img"
#define QEMU_IO "qemu-io"
#define DEFAULT_MEM_MB 128
#define DEFAULT_DISK_SIZE (64ull << 20)
#define DEFAULT_START_TIMEOUT_MS 30000
#define DEFAULT_STOP_TIMEOUT_MS 10000
#define DEFAULT_COUNTER_TIMEOUT_MS 10000
#define TOOL_TIMEOUT_MS 60000
#define LOG_SCAN_TIMEOUT_MS 5000
#define BOOT_SECTOR_SIZE 512

struct vm_disk {
    char *id;
    char *format;
    char *path;
    uint64_t size;
    bool boot;
};

struct qh_vm {
    char *dir;
    char *log_path;
    char *sock_path;    /* for the code under test */
    char *hsock_path;   /* the harness's own monitor */
    char *nbd_path;
    int mem_mb;
    int start_timeout_ms;
    bool paused;
    bool incoming_defer;
    char **extra_args;
    struct vm_disk *disks;
    size_t n_disks;
    char **argv;
    pid_t pid;
    struct qmp_client *qmp;
    unsigned nbd_seq;
};

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static bool in_path(const char *prog)
{
    const char *path = getenv("PATH");
    bool found = false;
    char *copy = NULL, *save = NULL;

    if (!path)
        path = "/usr/bin:/bin";
    copy = qs_xstrdup(path);
    for (char *d = strtok_r(copy, ":", &save); d && !found; d = strtok_r(NULL, ":", &save)) {
        char *p = qs_asprintf("%s/%s", *d ? d : ".", prog);
        found = access(p, X_OK) == 0;
        free(p);
    }
    free(copy);
    return found;
}

bool qh_qemu_available(void)
{
    return in_path(QEMU_BIN) && in_path(QEMU_IMG) && in_path(QEMU_IO);
}

const char *qh_guest_path(void)
{
    const char *p = getenv("QSNAP_GUEST");
    return p && *p ? p : NULL;
}

/* ---------------------------------------------------------------------------------------------------
 * Images.
 */

static const char *format_or_default(const char *format)
{
    return format ? format : "qcow2";
}

static int check_format(const char *format, struct qs_error **err)
{
    if (strcmp(format, "qcow2") != 0 && strcmp(format, "raw") != 0) {
        qs_error_set(err, QS_ERR_INVALID, "unsupported disk format '%s'", format);
        return -1;
    }
    return 0;
}

/* Runs a tool and turns a non-zero exit into an error carrying its stderr. */
static int run_tool(char *const argv[], struct qs_error **err)
{
    struct qs_proc_result res = {0};
    int ret = -1;

    if (qs_proc_run(argv, TOOL_TIMEOUT_MS, 0, &res, err) < 0)
        goto out;
    if (res.status != 0) {
        qs_error_set(err, QS_ERR_IO, "'%s' failed with status %d: %s", argv[0], res.status, res.errout);
        goto out;
    }
    ret = 0;
out:
    qs_proc_result_release(&res);
    return ret;
}

static int read_boot_sector(uint8_t sector[BOOT_SECTOR_SIZE], struct qs_error **err)
{
    const char *guest = qh_guest_path();
    int fd = -1, ret = -1;
    ssize_t n;

    if (!guest) {
        qs_error_set(err, QS_ERR_NOTFOUND, "QSNAP_GUEST is not set (run the test through ctest)");
        goto out;
    }
    if ((fd = open(guest, O_RDONLY | O_CLOEXEC)) < 0) {
        qs_error_set_errno(err, QS_ERR_IO, errno, "cannot open guest '%s'", guest);
        goto out;
    }
    do {
        n = pread(fd, sector, BOOT_SECTOR_SIZE, 0);
    } while (n < 0 && errno == EINTR);
    if (n != BOOT_SECTOR_SIZE || sector[510] != 0x55 || sector[511] != 0xaa) {
        qs_error_set(err, QS_ERR_INVALID, "guest '%s' is not a 512-byte boot sector", guest);
        goto out;
    }
    ret = 0;
out:
    qs_close(fd);
    return ret;
}

/* A sparse raw file of SIZE bytes holding SECTOR at offset 0. */
static int write_raw_boot(const char *path, const uint8_t *sector, uint64_t size, struct qs_error **err)
{
    int fd = -1, ret = -1;

    if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0) {
        qs_error_set_errno(err, QS_ERR_IO, errno, "cannot create '%s'", path);
        goto out;
    }
    if (qs_write_all(fd, sector, BOOT_SECTOR_SIZE) < 0 || ftruncate(fd, (off_t)size) < 0 || fsync(fd) < 0) {
        qs_error_set_errno(err, QS_ERR_IO, errno, "cannot write '%s'", path);
        goto out;
    }
    ret = 0;
out:
    qs_close(fd);
    return ret;
}

int qh_image_create_boot(const char *path, const char *format, uint64_t size, struct qs_error **err)
{
    uint8_t sector[BOOT_SECTOR_SIZE];
    char *raw = NULL;
    int ret = -1;

    format = format_or_default(format);
    if (!size)
        size = DEFAULT_DISK_SIZE;
    if (check_format(format, err) < 0 || read_boot_sector(sector, err) < 0)
        goto out;
    if (strcmp(format, "raw") == 0) {
        ret = write_raw_boot(path, sector, size, err);
        goto out;
    }
    raw = qs_asprintf("%s.raw-tmp", path);
    if (write_raw_boot(raw, sector, size, err) < 0)
        goto out;
    {
        char *argv[] = {QEMU_IMG, "convert", "-q", "-f", "raw", "-O", "qcow2", raw, (char *)path, NULL};
        if (run_tool(argv, err) < 0)
            goto out;
    }
    ret = 0;
out:
    if (raw)
        unlink(raw);
    free(raw);
    return ret;
}

int qh_image_create_blank(const char *path, const char *format, uint64_t size, struct qs_error **err)
{
    char sizebuf[32];
    int ret = -1;

    format = format_or_default(format);
    if (!size)
        size = DEFAULT_DISK_SIZE;
    if (check_format(format, err) < 0)
        goto out;
    snprintf(sizebuf, sizeof(sizebuf), "%" PRIu64, size);
    {
        char *argv[] = {QEMU_IMG, "create", "-q", "-f", (char *)format, (char *)path, sizebuf, NULL};
        ret = run_tool(argv, err);
    }
out:
    return ret;
}

/* qemu-io's answer to a "read -P": exit 0 = match, 1 with "Pattern verification failed" = mismatch. */
static int qemu_io_read_check(char *const argv[], struct qs_error **err)
{
    struct qs_proc_result res = {0};
    int ret = -1;

    if (qs_proc_run(argv, TOOL_TIMEOUT_MS, 0, &res, err) < 0)
        goto out;
    if (res.status == 0 && strstr(res.out, "read ") && !strstr(res.out, "failed")) {
        ret = 1;
    } else if (res.status == 1 && (strstr(res.out, "Pattern verification failed") ||
                                   strstr(res.errout, "Pattern verification failed"))) {
        ret = 0;
    } else {
        qs_error_set(err, QS_ERR_IO, "'qemu-io' read check failed with status %d: %s%s", res.status,
                     res.errout, *res.errout ? "" : res.out);
    }
out:
    qs_proc_result_release(&res);
    return ret;
}

static char *read_pattern_cmd(uint8_t pattern, uint64_t off, uint64_t len)
{
    return qs_asprintf("read -P 0x%02x %" PRIu64 " %" PRIu64, pattern, off, len);
}

int qh_image_check(const char *path, const char *format, uint8_t pattern, uint64_t off, uint64_t len,
                   struct qs_error **err)
{
    char *cmd = read_pattern_cmd(pattern, off, len);
    int ret = -1;

    format = format_or_default(format);
    if (check_format(format, err) < 0)
        goto out;
    {
        char *argv[] = {QEMU_IO, "-r", "-U", "-f", (char *)format, (char *)path, "-c", cmd, NULL};
        ret = qemu_io_read_check(argv, err);
    }
out:
    free(cmd);
    return ret;
}

/* ---------------------------------------------------------------------------------------------------
 * The VM object.
 */

static void strv_push(char ***v, size_t *n, size_t *cap, char *s)
{
    qs_xgrow((void **)v, cap, *n + 2, sizeof(**v));
    (*v)[(*n)++] = s;
    (*v)[*n] = NULL;
}

/* QEMU's option syntax: a comma inside a value is written twice. */
static char *opt_escape(const char *s)
{
    size_t n = strlen(s), j = 0;
    char *out = qs_xmalloc(2 * n + 1);

    for (size_t i = 0; i < n; i++) {
        out[j++] = s[i];
        if (s[i] == ',')
            out[j++] = ',';
    }
    out[j] = '\0';
    return out;
}

static char **build_argv(const struct qh_vm *vm, bool paused, bool incoming_defer)
{
    char **v = NULL;
    size_t n = 0, cap = 0;
    char *esc;

#define PUSH(s) strv_push(&v, &n, &cap, qs_xstrdup(s))
#define PUSHF(...) strv_push(&v, &n, &cap, qs_asprintf(__VA_ARGS__))
    PUSH(QEMU_BIN);
    PUSH("-nodefaults");
    PUSH("-no-user-config");
    PUSH("-display");
    PUSH("none");
    PUSH("-machine");
    PUSH("pc,accel=tcg");
    PUSH("-m");
    PUSHF("%d", vm->mem_mb);
    PUSH("-qmp");
    esc = opt_escape(vm->sock_path);
    PUSHF("unix:%s,server=on,wait=off", esc);
    free(esc);
    PUSH("-qmp");
    esc = opt_escape(vm->hsock_path);
    PUSHF("unix:%s,server=on,wait=off", esc);
    free(esc);
    for (size_t i = 0; i < vm->n_disks; i++) {
        const struct vm_disk *d = &vm->disks[i];
        esc = opt_escape(d->path);
        PUSH("-blockdev");
        PUSHF("driver=file,filename=%s,node-name=file-%s", esc, d->id);
        free(esc);
        PUSH("-blockdev");
        PUSHF("driver=%s,file=file-%s,node-name=%s", d->format, d->id, d->id);
        PUSH("-device");
        if (d->boot)
            PUSHF("virtio-blk-pci,drive=%s,id=%s,bootindex=0", d->id, d->id);
        else
            PUSHF("virtio-blk-pci,drive=%s,id=%s", d->id, d->id);
    }
    if (paused)
        PUSH("-S");
    if (incoming_defer) {
        PUSH("-incoming");
        PUSH("defer");
    }
    for (size_t i = 0; vm->extra_args && vm->extra_args[i]; i++)
        PUSH(vm->extra_args[i]);
#undef PUSH
#undef PUSHF
    return v;
}

/* The last line(s) of QEMU's log, for error messages. Caller frees. */
static char *log_tail(const struct qh_vm *vm)
{
    char buf[512];
    int fd = open(vm->log_path, O_RDONLY | O_CLOEXEC);
    off_t size;
    ssize_t n = 0;

    if (fd < 0)
        return qs_xstrdup("");
    size = lseek(fd, 0, SEEK_END);
    if (size > 0)
        n = pread(fd, buf, sizeof(buf) - 1, size > (off_t)sizeof(buf) - 1 ? size - (off_t)sizeof(buf) + 1 : 0);
    qs_close(fd);
    if (n < 0)
        n = 0;
    buf[n] = '\0';
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = '\0';
    for (ssize_t i = 0; i < n; i++)
        if (buf[i] == '\n' || buf[i] == '\r')
            buf[i] = ' ';
    return qs_xstrdup(buf);
}

static bool reap(struct qh_vm *vm, bool block, int *status)
{
    int st = 0;
    pid_t r;

    if (vm->pid < 0)
        return true;
    do {
        r = waitpid(vm->pid, &st, block ? 0 : WNOHANG);
    } while (r < 0 && errno == EINTR);
    if (r == 0)
        return false;
    /* r < 0 (ECHILD): someone else reaped it; treat as gone */
    vm->pid = -1;
    if (status)
        *status = r > 0 ? st : 0;
    return true;
}

static void drop_qmp(struct qh_vm *vm)
{
    qmp_client_free(vm->qmp);
    vm->qmp = NULL;
}

static void child_exec(char *const argv[], int logfd, int errpipe, pid_t parent)
{
    int nullfd;
    sigset_t none;
    int e;

    /* QEMU must not outlive a test that crashed or timed out: it would spin a core forever */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(127);
    nullfd = open("/dev/null", O_RDONLY);
    if (nullfd < 0 || dup2(nullfd, 0) < 0 || dup2(logfd, 1) < 0 || dup2(logfd, 2) < 0)
        goto fail;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    /* fds the test holds (QMP clients, NBD) are not QEMU's business */
    for (int fd = 3; fd < 1024; fd++)
        if (fd != errpipe)
            close(fd);
    execvp(argv[0], argv);
fail:
    e = errno;
    (void)!write(errpipe, &e, sizeof(e));
    _exit(127);
}

static int launch(struct qh_vm *vm, bool paused, bool incoming_defer, struct qs_error **err)
{
    int logfd = -1, errpipe[2] = {-1, -1}, child_errno = 0, ret = -1;
    int64_t deadline = qs_now_ms() + vm->start_timeout_ms;
    struct qmp_options opts = {0};
    pid_t parent = getpid();
    ssize_t n;

    if (vm->pid > 0) {
        qs_error_set(err, QS_ERR_STATE, "qemu is already running as pid %d", (int)vm->pid);
        goto out;
    }
    /* stale sockets of an earlier run would look like a started QEMU */
    unlink(vm->sock_path);
    unlink(vm->hsock_path);
    qs_strv_free(vm->argv);
    vm->argv = build_argv(vm, paused, incoming_defer);

    if ((logfd = open(vm->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600)) < 0) {
        qs_error_set_errno(err, QS_ERR_IO, errno, "cannot open '%s'", vm->log_path);
        goto out;
    }
    if (pipe2(errpipe, O_CLOEXEC) < 0) {
        qs_error_set_errno(err, QS_ERR_IO, errno, "cannot create a pipe");
        goto out;
    }
    vm->pid = fork();
    if (vm->pid < 0) {
        qs_error_set_errno(err, QS_ERR_IO, errno, "cannot fork for '%s'", QEMU_BIN);
        goto out;
    }
    if (vm->pid == 0)
        child_exec(vm->argv, logfd, errpipe[1], parent);
    qs_close(errpipe[1]);
    errpipe[1] = -1;
    do {
        n = read(errpipe[0], &child_errno, sizeof(child_errno));
    } while (n < 0 && errno == EINTR);
    if (n > 0) {
        reap(vm, true, NULL);
        qs_error_set_errno(err, child_errno == ENOENT ? QS_ERR_NOTFOUND : QS_ERR_IO, child_errno,
                           "cannot run '%s'", QEMU_BIN);
        goto out;
    }

    /* the monitor socket appears during QEMU's startup; an early exit means bad arguments */
    for (;;) {
        struct stat st;
        int status = 0;
        if (stat(vm->hsock_path, &st) == 0 && S_ISSOCK(st.st_mode))
            break;
        if (reap(vm, false, &status)) {
            char *tail = log_tail(vm);
            qs_error_set(err, QS_ERR_IO, "qemu exited during startup (status 0x%x): %s", status, tail);
            free(tail);
            goto out;
        }
        if (qs_now_ms() >= deadline) {
            qs_error_set(err, QS_ERR_TIMEOUT, "qemu did not create '%s' within %d ms", vm->hsock_path,
                         vm->start_timeout_ms);
            goto out;
        }
        sleep_ms(5);
    }
    opts.connect_timeout_ms = (int)(deadline - qs_now_ms());
    if (opts.connect_timeout_ms < 1000)
        opts.connect_timeout_ms = 1000;
    if (!(vm->qmp = qmp_client_connect(vm->hsock_path, &opts, err))) {
        qs_error_prefix(err, "harness monitor");
        goto out;
    }
    ret = 0;
out:
    if (ret < 0 && vm->pid > 0) {
        kill(vm->pid, SIGKILL);
        reap(vm, true, NULL);
    }
    qs_close(logfd);
    qs_close(errpipe[0]);
    qs_close(errpipe[1]);
    return ret;
}

static int make_dir(char **dir, struct qs_error **err)
{
    const char *tmp = getenv("TMPDIR");
    char *templ = qs_asprintf("%s/qsnap-test-XXXXXX", tmp && *tmp ? tmp : "/tmp");

    if (!mkdtemp(templ)) {
        qs_error_set_errno(err, QS_ERR_IO, errno, "cannot create a directory from '%s'", templ);
        free(templ);
        return -1;
    }
    *dir = templ;
    return 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (flag == FTW_DP)
        rmdir(path);
    else
        unlink(path);
    return 0;
}

static void remove_dir(const char *dir)
{
    nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* A disk id becomes a node name, a qdev id and a file name: keep it to plain characters, and unique. */
static int check_disk_id(const struct qh_vm *vm, const char *id, struct qs_error **err)
{
    static const char letters[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    static const char rest[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";

    if (!id || !*id || !strchr(letters, id[0]) || strlen(id) > 31 || strspn(id, rest) != strlen(id)) {
        qs_error_set(err, QS_ERR_INVALID, "bad disk id '%s'", id ? id : "(null)");
        return -1;
    }
    for (size_t i = 0; i < vm->n_disks; i++) {
        if (strcmp(vm->disks[i].id, id) == 0) {
            qs_error_set(err, QS_ERR_INVALID, "duplicate disk id '%s'", id);
            return -1;
        }
    }
    return 0;
}

static int setup_disks(struct qh_vm *vm, const struct qh_vm_config *cfg, struct qs_error **err)
{
    static const struct qh_disk default_disk = {"vda", "qcow2", 0, true, NULL};
    const struct qh_disk *disks = cfg->n_disks ? cfg->disks : &default_disk;
    size_t n = cfg->n_disks ? cfg->n_disks : 1;
    int ret = -1;

    vm->disks = qs_xcalloc(n, sizeof(*vm->disks));
    for (size_t i = 0; i < n; i++) {
        const struct qh_disk *in = &disks[i];
        struct vm_disk *d = &vm->disks[vm->n_disks];
        if (check_disk_id(vm, in->id, err) < 0 || check_format(format_or_default(in->format), err) < 0)
            goto out;
        vm->n_disks++;
        d->id = qs_xstrdup(in->id);
        d->format = qs_xstrdup(format_or_default(in->format));
        d->size = in->size ? in->size : DEFAULT_DISK_SIZE;
        d->boot = in->boot;
        if (in->path) {
            d->path = qs_xstrdup(in->path);
            continue;
        }
        d->path = qs_asprintf("%s/%s.%s", vm->dir, d->id, d->format);
        if ((d->boot ? qh_image_create_boot(d->path, d->format, d->size, err)
                     : qh_image_create_blank(d->path, d->format, d->size, err)) < 0)
            goto out;
    }
    ret = 0;
out:
    return ret;
}

struct qh_vm *qh_vm_start(const struct qh_vm_config *cfg, struct qs_error **err)
{
    static const struct qh_vm_config defaults = {0};
    struct qh_vm *vm = qs_xcalloc(1, sizeof(*vm));
    struct qh_vm *ret = NULL;
    size_t extra_n = 0, extra_cap = 0;

    if (!cfg)
        cfg = &defaults;
    vm->pid = -1;
    vm->mem_mb = cfg->mem_mb > 0 ? cfg->mem_mb : DEFAULT_MEM_MB;
    vm->start_timeout_ms = cfg->start_timeout_ms > 0 ? cfg->start_timeout_ms : DEFAULT_START_TIMEOUT_MS;
    vm->paused = cfg->paused;
    vm->incoming_defer = cfg->incoming_defer;
    for (size_t i = 0; cfg->extra_args && cfg->extra_args[i]; i++)
        strv_push(&vm->extra_args, &extra_n, &extra_cap, qs_xstrdup(cfg->extra_args[i]));
    if (make_dir(&vm->dir, err) < 0)
        goto out;
    vm->log_path = qs_asprintf("%s/qemu.log", vm->dir);
    vm->sock_path = qs_asprintf("%s/qmp.sock", vm->dir);
    vm->hsock_path = qs_asprintf("%s/harness.sock", vm->dir);
    vm->nbd_path = qs_asprintf("%s/nbd.sock", vm->dir);
    if (strlen(vm->hsock_path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
        qs_error_set(err, QS_ERR_INVALID, "socket path '%s' is too long for a unix socket", vm->hsock_path);
        goto out;
    }
    if (setup_disks(vm, cfg, err) < 0 || launch(vm, vm->paused, vm->incoming_defer, err) < 0)
        goto out;
    ret = vm;
    vm = NULL;
out:
    qh_vm_free(vm);
    return ret;
}

int qh_vm_restart(struct qh_vm *vm, bool paused, bool incoming_defer, struct qs_error **err)
{
    if (qh_vm_running(vm)) {
        qs_error_set(err, QS_ERR_STATE, "qemu is still running as pid %d", (int)vm->pid);
        return -1;
    }
    drop_qmp(vm);
    return launch(vm, paused, incoming_defer, err);
}

int qh_vm_wait_exit(struct qh_vm *vm, int timeout_ms, int *status, struct qs_error **err)
{
    int64_t deadline = qs_now_ms() + timeout_ms;
    int st = 0;

    for (;;) {
        if (reap(vm, false, &st))
            break;
        if (qs_now_ms() >= deadline) {
            qs_error_set(err, QS_ERR_TIMEOUT, "qemu (pid %d) still running after %d ms", (int)vm->pid,
                         timeout_ms);
            return -1;
        }
        sleep_ms(5);
    }
    drop_qmp(vm);
    if (status)
        *status = st;
    return 0;
}

int qh_vm_stop(struct qh_vm *vm, int timeout_ms, struct qs_error **err)
{
    struct qs_error *qerr = NULL;
    int ret = 0;

    if (timeout_ms <= 0)
        timeout_ms = DEFAULT_STOP_TIMEOUT_MS;
    if (vm->pid < 0)
        goto out;
    if (vm->qmp)
        /* the reply may be lost to the exit (EOF): only the process going away counts */
        qmp_client_execute_timeout(vm->qmp, "quit", NULL, timeout_ms, NULL, &qerr);
    if (qh_vm_wait_exit(vm, timeout_ms, NULL, NULL) < 0) {
        qs_error_set(err, QS_ERR_TIMEOUT, "qemu (pid %d) did not quit within %d ms%s%s, killed", (int)vm->pid,
                     timeout_ms, qerr ? ": " : "", qerr ? qerr->message : "");
        qh_vm_kill(vm);
        ret = -1;
    }
out:
    drop_qmp(vm);
    qs_error_free(qerr);
    return ret;
}

void qh_vm_kill(struct qh_vm *vm)
{
    if (vm->pid > 0) {
        kill(vm->pid, SIGKILL);
        reap(vm, true, NULL);
    }
    drop_qmp(vm);
}

void qh_vm_free(struct qh_vm *vm)
{
    const char *keep = getenv("QSNAP_KEEP_TMP");

    if (!vm)
        return;
    qh_vm_kill(vm);
    if (vm->dir) {
        if (keep && *keep && strcmp(keep, "0") != 0)
            fprintf(stderr, "harness: keeping '%s'\n", vm->dir);
        else
            remove_dir(vm->dir);
    }
    for (size_t i = 0; i < vm->n_disks; i++) {
        free(vm->disks[i].id);
        free(vm->disks[i].format);
        free(vm->disks[i].path);
    }
    free(vm->disks);
    qs_strv_free(vm->argv);
    qs_strv_free(vm->extra_args);
    free(vm->dir);
    free(vm->log_path);
    free(vm->sock_path);
    free(vm->hsock_path);
    free(vm->nbd_path);
    free(vm);
}

pid_t qh_vm_pid(const struct qh_vm *vm)
{
    return vm->pid;
}

bool qh_vm_running(struct qh_vm *vm)
{
    if (vm->pid < 0)
        return false;
    if (reap(vm, false, NULL)) {
        drop_qmp(vm);
        return false;
    }
    return true;
}

const char *qh_vm_socket_path(const struct qh_vm *vm)
{
    return vm->sock_path;
}

const char *qh_vm_dir(const struct qh_vm *vm)
{
    return vm->dir;
}

const char *qh_vm_log_path(const struct qh_vm *vm)
{
    return vm->log_path;
}

char *const *qh_vm_argv(const struct qh_vm *vm)
{
    return vm->argv;
}

const char *qh_vm_disk_path(const struct qh_vm *vm, const char *id)
{
    for (size_t i = 0; i < vm->n_disks; i++)
        if (strcmp(vm->disks[i].id, id) == 0)
            return vm->disks[i].path;
    return NULL;
}

struct qmp_client *qh_vm_qmp(struct qh_vm *vm)
{
    return vm->qmp;
}

static struct qmp_client *need_qmp(struct qh_vm *vm, struct qs_error **err)
{
    if (!vm->qmp)
        qs_error_set(err, QS_ERR_STATE, "qemu is not running");
    return vm->qmp;
}

/* ---------------------------------------------------------------------------------------------------
 * Guest RAM.
 */

/* "0000000000009000: 0x0000abcd 0x00000000 0x51534e50\r\n" */
static int parse_xp(const char *out, uint32_t words[3], struct qs_error **err)
{
    const char *p = strchr(out, ':');
    char *end = NULL;

    if (!p)
        goto bad;
    p++;
    for (int i = 0; i < 3; i++) {
        unsigned long long v;
        errno = 0;
        v = strtoull(p, &end, 16);
        if (end == p || errno || v > UINT32_MAX)
            goto bad;
        words[i] = (uint32_t)v;
        p = end;
    }
    return 0;
bad:
    qs_error_set(err, QS_ERR_PROTOCOL, "cannot parse 'xp' output '%s'", out);
    return -1;
}

int qh_vm_read_counter(struct qh_vm *vm, uint64_t *value, struct qs_error **err)
{
    struct qmp_client *c = need_qmp(vm, err);
    char *out = NULL, *cmd = qs_asprintf("xp /3wx 0x%x", QH_COUNTER_ADDR);
    uint32_t w[3];
    int ret = -1;

    if (!c || qmp_client_hmp(c, cmd, &out, err) < 0 || parse_xp(out, w, err) < 0)
        goto out;
    if (w[2] != QH_COUNTER_MAGIC) {
        qs_error_set(err, QS_ERR_STATE, "no counter magic at 0x%x (found 0x%08x): guest not running yet",
                     QH_COUNTER_ADDR + 8, w[2]);
        goto out;
    }
    *value = (uint64_t)w[1] << 32 | w[0];
    ret = 0;
out:
    free(cmd);
    free(out);
    return ret;
}

int qh_vm_wait_counter_advancing(struct qh_vm *vm, int timeout_ms, uint64_t *value, struct qs_error **err)
{
    int64_t deadline;
    bool have_first = false;
    uint64_t first = 0, v = 0;
    struct qs_error *last = NULL;
    int ret = -1;

    if (timeout_ms <= 0)
        timeout_ms = DEFAULT_COUNTER_TIMEOUT_MS;
    deadline = qs_now_ms() + timeout_ms;
    for (;;) {
        qs_error_clear(&last);
        if (qh_vm_read_counter(vm, &v, &last) == 0) {
            if (!have_first) {
                first = v;
                have_first = true;
            } else if (v > first) {
                break;
            }
        } else if (last->code != QS_ERR_STATE) {
            qs_error_propagate(err, &last);
            goto out;
        }
        if (qs_now_ms() >= deadline) {
            if (have_first)
                qs_error_set(err, QS_ERR_TIMEOUT, "guest counter stuck at %" PRIu64 " for %d ms", first,
                             timeout_ms);
            else
                qs_error_set(err, QS_ERR_TIMEOUT, "guest counter not there after %d ms: %s", timeout_ms,
                             last ? last->message : "");
            goto out;
        }
        sleep_ms(20);
    }
    if (value)
        *value = v;
    ret = 0;
out:
    qs_error_free(last);
    return ret;
}

/* ---------------------------------------------------------------------------------------------------
 * Disk bytes.
 */

static off_t log_size(const struct qh_vm *vm)
{
    struct stat st;
    return stat(vm->log_path, &st) == 0 ? st.st_size : 0;
}

/* The log from byte FROM on (capped at 64 KiB). Caller frees. */
static char *log_since(const struct qh_vm *vm, off_t from)
{
    size_t cap = 64 * 1024;
    char *buf = qs_xmalloc(cap + 1);
    int fd = open(vm->log_path, O_RDONLY | O_CLOEXEC);
    ssize_t n = 0;

    if (fd >= 0) {
        do {
            n = pread(fd, buf, cap, from);
        } while (n < 0 && errno == EINTR);
        qs_close(fd);
    }
    buf[n > 0 ? n : 0] = '\0';
    return buf;
}

int qh_vm_disk_write(struct qh_vm *vm, const char *id, uint8_t pattern, uint64_t off, uint64_t len,
                     struct qs_error **err)
{
    struct qmp_client *c = need_qmp(vm, err);
    char *line = NULL, *out = NULL, *want = NULL, *log = NULL;
    off_t from = log_size(vm);
    int64_t deadline;
    int ret = -1;

    if (!c)
        goto out;
    /* qemu-io prints to QEMU's stdout (our log), not into the HMP reply */
    line = qs_asprintf("qemu-io -d %s/virtio-backend \"write -P 0x%02x %" PRIu64 " %" PRIu64 "\"", id, pattern,
                       off, len);
    if (qmp_client_hmp(c, line, &out, err) < 0)
        goto out;
    if (*out) {
        qs_error_set(err, QS_ERR_QEMU, "qemu-io write on '%s': %s", id, out);
        goto out;
    }
    want = qs_asprintf("wrote %" PRIu64 "/%" PRIu64 " bytes at offset %" PRIu64, len, len, off);
    deadline = qs_now_ms() + LOG_SCAN_TIMEOUT_MS;
    for (;;) {
        char *failed;
        free(log);
        log = log_since(vm, from);
        if (strstr(log, want))
            break;
        if ((failed = strstr(log, "write failed"))) {
            failed[strcspn(failed, "\r\n")] = '\0';
            qs_error_set(err, QS_ERR_IO, "qemu-io write on '%s': %s", id, failed);
            goto out;
        }
        if (qs_now_ms() >= deadline) {
            qs_error_set(err, QS_ERR_TIMEOUT, "no '%s' in '%s' within %d ms", want, vm->log_path,
                         LOG_SCAN_TIMEOUT_MS);
            goto out;
        }
        sleep_ms(10);
    }
    ret = 0;
out:
    free(line);
    free(out);
    free(want);
    free(log);
    return ret;
}

int qh_vm_disk_check(struct qh_vm *vm, const char *node, uint8_t pattern, uint64_t off, uint64_t len,
                     struct qs_error **err)
{
    struct qmp_client *c = need_qmp(vm, err);
    struct qmp_args *args = NULL;
    char *export_id = NULL, *uri = NULL, *cmd = NULL;
    bool server = false, exported = false;
    int ret = -1;

    if (!c)
        goto out;
    unlink(vm->nbd_path);
    args = qmp_args_new();
    {
        struct qmp_args *addr = qmp_args_set_obj(args, "addr");
        qmp_args_set_str(addr, "type", "unix");
        qmp_args_set_str(qmp_args_set_obj(addr, "data"), "path", vm->nbd_path);
    }
    if (qmp_client_execute(c, "nbd-server-start", args, NULL, err) < 0)
        goto out;
    server = true;
    qmp_args_free(args);

    export_id = qs_asprintf("qh-check-%u", ++vm->nbd_seq);
    args = qmp_args_new();
    qmp_args_set_str(args, "type", "nbd");
    qmp_args_set_str(args, "id", export_id);
    qmp_args_set_str(args, "node-name", node);
    qmp_args_set_str(args, "name", export_id);
    qmp_args_set_bool(args, "writable", false);
    if (qmp_client_execute(c, "block-export-add", args, NULL, err) < 0)
        goto out;
    exported = true;

    uri = qs_asprintf("nbd+unix:///%s?socket=%s", export_id, vm->nbd_path);
    cmd = read_pattern_cmd(pattern, off, len);
    {
        char *argv[] = {QEMU_IO, "-r", "-f", "raw", uri, "-c", cmd, NULL};
        ret = qemu_io_read_check(argv, err);
    }
out:
    if (exported) {
        struct qs_error *e2 = NULL;
        struct qmp_event *ev = NULL;
        qmp_args_free(args);
        args = qmp_args_new();
        qmp_args_set_str(args, "id", export_id);
        /* deletion completes asynchronously: wait for it so the node is free again on return */
        if (qmp_client_execute(c, "block-export-del", args, NULL, &e2) == 0)
            qmp_client_event_wait(c, "BLOCK_EXPORT_DELETED", "id", export_id, 5000, &ev, &e2);
        qmp_event_free(ev);
        if (e2 && ret >= 0) {
            qs_error_propagate(err, &e2);
            ret = -1;
        }
        qs_error_free(e2);
    }
    if (server) {
        struct qs_error *e2 = NULL;
        if (qmp_client_execute(c, "nbd-server-stop", NULL, NULL, &e2) < 0 && ret >= 0) {
            qs_error_propagate(err, &e2);
            ret = -1;
        }
        qs_error_free(e2);
    }
    qmp_args_free(args);
    free(export_id);
    free(uri);
    free(cmd);
    return ret;
}
