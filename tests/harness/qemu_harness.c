/* qemu_harness.c: starts and stops real QEMU for tests, makes guest disks, reads guest RAM and disk bytes. */
#include "qemu_harness.h"

#include "qs_proc.h"
#include "qs_util.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
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
#define DEFAULT_COUNTER_TIMEOUT_MS 60000 /* against a hang: a loaded machine can take seconds to boot the guest */
#define TOOL_TIMEOUT_MS 60000
#define LOG_SCAN_TIMEOUT_MS 30000
#define BOOT_SECTOR_SIZE 512

struct vm_disk {
    char *id;
    char *format;
    char *path;
    uint64_t size;
    bool boot;
    char *arg_path; /* the image as QEMU's command line names it (relative with relative_paths) */
    char *blk;      /* BlockBackend name the style gives it (query-block "device"), or NULL */
    char *qdev;     /* qdev id the style gives its device, or NULL */
    char *qom;      /* its device as query-block named it at the first start (found by blk or qdev) */
    unsigned index;
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
    int style;
    bool relative;
    bool daemonize;
    bool child;                    /* pid is our child (else: -daemonize, or adopted: see reap()) */
    unsigned long long start_time; /* of a pid that is not our child, from /proc/PID/stat */
};

static bool foreign_gone(struct qh_vm *vm);
static void kill_strays(struct qh_vm *vm);
static int take_foreign(struct qh_vm *vm, struct qs_error **err);
static void record_devices(struct qh_vm *vm);
static int style_disk_setup(struct qh_vm *vm, struct vm_disk *d, const struct qh_disk *in, struct qs_error **err);
static char **style_disk_args(const struct qh_vm *vm, char **v, size_t *n, size_t *cap);

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

/*
 * ARGV (qemu-io and its options, up to the image; room is made for the -c commands) run with one
 * "read -P" per extent: 1 all match, 0 some do not (ok[i] says which), -1 error.
 */
static int qemu_io_check_extents(char *const argv[], const struct qh_extent *ext, size_t n, bool *ok,
                                 struct qs_error **err)
{
    size_t base = 0, k;
    char **full = NULL;
    struct qs_proc_result res = {0};
    int ret = -1;

    while (argv[base])
        base++;
    full = qs_xcalloc(base + 2 * n + 1, sizeof(*full));
    for (k = 0; k < base; k++)
        full[k] = argv[k];
    for (size_t i = 0; i < n; i++) {
        full[k++] = "-c";
        full[k++] = read_pattern_cmd(ext[i].pattern, ext[i].off, ext[i].len);
        if (ok)
            ok[i] = true;
    }
    if (qs_proc_run(full, TOOL_TIMEOUT_MS, 0, &res, err) < 0)
        goto out;
    if (res.status == 0 && !strstr(res.out, "failed") && !strstr(res.errout, "failed")) {
        ret = 1;
        goto out;
    }
    /* "Pattern verification failed at offset N, L bytes", on stdout or stderr by version */
    ret = 0;
    for (const char *p = res.out; p; p = p == res.out ? res.errout : NULL) {
        const char *m = p;
        while ((m = strstr(m, "Pattern verification failed at offset "))) {
            unsigned long long at;
            m += strlen("Pattern verification failed at offset ");
            if (sscanf(m, "%llu", &at) != 1)
                continue;
            for (size_t i = 0; i < n && ok; i++)
                if (ext[i].off == at)
                    ok[i] = false;
        }
    }
    if (res.status != 1 || (!strstr(res.out, "Pattern verification failed") &&
                            !strstr(res.errout, "Pattern verification failed"))) {
        qs_error_set(err, QS_ERR_IO, "'qemu-io' read check failed with status %d: %s%s", res.status,
                     res.errout, *res.errout ? "" : res.out);
        ret = -1;
    }
out:
    for (size_t i = 0; i < n; i++)
        free(full[base + 2 * i + 1]);
    free(full);
    qs_proc_result_release(&res);
    return ret;
}

int qh_image_check_extents(const char *path, const char *format, const struct qh_extent *ext, size_t n,
                           bool *ok, struct qs_error **err)
{
    format = format_or_default(format);
    if (check_format(format, err) < 0)
        return -1;
    {
        char *argv[] = {QEMU_IO, "-r", "-U", "-f", (char *)format, (char *)path, NULL};
        return qemu_io_check_extents(argv, ext, n, ok, err);
    }
}

/*
 * ARGV (qemu-io and its options, up to the image) run with "read -v OFF LEN": the hex dump it prints is
 * parsed into BUF (LEN bytes, every one of them required).
 */
static int qemu_io_read_bytes(char *const argv[], uint64_t off, size_t len, uint8_t *buf, struct qs_error **err)
{
    size_t base = 0, got = 0;
    char **full = NULL, *cmd = qs_asprintf("read -v %" PRIu64 " %zu", off, len);
    struct qs_proc_result res = {0};
    int ret = -1;

    while (argv[base])
        base++;
    full = qs_xcalloc(base + 3, sizeof(*full));
    memcpy(full, argv, base * sizeof(*full));
    full[base] = "-c";
    full[base + 1] = cmd;
    if (qs_proc_run(full, TOOL_TIMEOUT_MS, 0, &res, err) < 0)
        goto out;
    if (res.status != 0 || !strstr(res.out, "read ")) {
        qs_error_set(err, QS_ERR_IO, "'qemu-io' read failed with status %d: %s%s", res.status, res.errout,
                     *res.errout ? "" : res.out);
        goto out;
    }
    /* "00008000:  05 00 00 00 05 00 00 00 05 00 00 00 05 00 00 00  ................": 16 bytes a line after
       the offset; the text column is not read */
    for (const char *line = res.out; line && got < len;) {
        unsigned long long at;
        int used;
        if (sscanf(line, "%llx:%n", &at, &used) == 1 && at == off + got) {
            const char *p = line + used;
            unsigned b;
            for (int k = 0; k < 16 && got < len && sscanf(p, " %2x%n", &b, &used) == 1; k++, p += used)
                buf[got++] = (uint8_t)b;
        }
        if ((line = strchr(line, '\n')))
            line++;
    }
    if (got != len) {
        qs_error_set(err, QS_ERR_PROTOCOL, "'qemu-io' printed %zu of %zu bytes: %s", got, len, res.out);
        goto out;
    }
    ret = 0;
out:
    free(cmd);
    free(full);
    qs_proc_result_release(&res);
    return ret;
}

int qh_image_read(const char *path, const char *format, uint64_t off, size_t len, uint8_t *buf,
                  struct qs_error **err)
{
    format = format_or_default(format);
    if (check_format(format, err) < 0)
        return -1;
    {
        char *argv[] = {QEMU_IO, "-r", "-U", "-f", (char *)format, (char *)path, NULL};
        return qemu_io_read_bytes(argv, off, len, buf, err);
    }
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
    PUSH(vm->style == QH_STYLE_AHCI ? "q35,accel=tcg" : "pc,accel=tcg");
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
    for (size_t i = 0; vm->style == QH_STYLE_BLOCKDEV && i < vm->n_disks; i++) {
        const struct vm_disk *d = &vm->disks[i];
        esc = opt_escape(d->arg_path);
        PUSH("-blockdev");
        PUSHF("driver=file,filename=%s,node-name=file-%s", esc, d->id);
        free(esc);
        PUSH("-blockdev");
        PUSHF("driver=%s,file=file-%s,node-name=%s", d->format, d->id, d->id);
        PUSH("-device");
        if (d->boot)
            PUSHF("virtio-blk-pci,drive=%s,id=%s,bootindex=0", d->id, d->qdev);
        else
            PUSHF("virtio-blk-pci,drive=%s,id=%s", d->id, d->qdev);
    }
    if (vm->style != QH_STYLE_BLOCKDEV)
        v = style_disk_args(vm, v, &n, &cap);
    if (vm->daemonize)
        PUSH("-daemonize");
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
    if (!vm->child) {
        /* not ours to wait for: poll /proc (a blocking reap follows a SIGKILL, so it ends soon) */
        for (int i = 0; !foreign_gone(vm); i++) {
            if (!block || i >= DEFAULT_STOP_TIMEOUT_MS / 5)
                return false;
            sleep_ms(5);
        }
        if (status)
            *status = 0;
        return true;
    }
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

static void child_exec(char *const argv[], const char *cwd, int logfd, int errpipe, pid_t parent)
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
    if (cwd && chdir(cwd) < 0)
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
        child_exec(vm->argv, vm->relative ? vm->dir : NULL, logfd, errpipe[1], parent);
    vm->child = true;
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
        if (!vm->daemonize && stat(vm->hsock_path, &st) == 0 && S_ISSOCK(st.st_mode))
            break;
        if (reap(vm, false, &status)) {
            /* -daemonize: QEMU's first process exits 0 once the daemon has set up its monitors */
            if (vm->daemonize && WIFEXITED(status) && WEXITSTATUS(status) == 0)
                break;
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
    if (vm->daemonize && take_foreign(vm, err) < 0)
        goto out;
    if (vm->style != QH_STYLE_BLOCKDEV)
        record_devices(vm);
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
    static const struct qh_disk default_disk = {"vda", "qcow2", 0, true, NULL, NULL};
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
        d->index = (unsigned)i;
        if (style_disk_setup(vm, d, in, err) < 0)
            goto out;
        if (in->path) {
            d->path = qs_xstrdup(in->path);
            d->arg_path = qs_xstrdup(in->path);
            continue;
        }
        d->path = qs_asprintf("%s/%s.%s", vm->dir, d->id, d->format);
        d->arg_path = vm->relative ? qs_asprintf("%s.%s", d->id, d->format) : qs_xstrdup(d->path);
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
    vm->style = cfg->style;
    vm->relative = cfg->relative_paths;
    vm->daemonize = cfg->daemonize;
    for (size_t i = 0; cfg->extra_args && cfg->extra_args[i]; i++)
        strv_push(&vm->extra_args, &extra_n, &extra_cap, qs_xstrdup(cfg->extra_args[i]));
    if (!qh_style_name(vm->style)) {
        qs_error_set(err, QS_ERR_INVALID, "unknown disk style %d", vm->style);
        goto out;
    }
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
    if (vm->pid > 0 && (vm->child || !foreign_gone(vm))) {
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
    kill_strays(vm);
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
        free(vm->disks[i].arg_path);
        free(vm->disks[i].blk);
        free(vm->disks[i].qdev);
        free(vm->disks[i].qom);
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

/* Waits for qemu-io's report of a LEN-byte write at OFF in the log after byte FROM (disk ID for messages). */
static int await_logged_write(struct qh_vm *vm, off_t from, const char *id, uint64_t off, uint64_t len,
                              struct qs_error **err)
{
    char *want = qs_asprintf("wrote %" PRIu64 "/%" PRIu64 " bytes at offset %" PRIu64, len, len, off), *log = NULL;
    int64_t deadline = qs_now_ms() + LOG_SCAN_TIMEOUT_MS;
    int ret = -1;

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
    free(want);
    free(log);
    return ret;
}

int qh_vm_disk_write(struct qh_vm *vm, const char *id, uint8_t pattern, uint64_t off, uint64_t len,
                     struct qs_error **err)
{
    struct qmp_client *c = need_qmp(vm, err);
    char *line = NULL, *out = NULL;
    off_t from = log_size(vm);
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
    ret = await_logged_write(vm, from, id, off, len, err);
out:
    free(line);
    free(out);
    return ret;
}

/* Node NODE exported read-only through QEMU's NBD server on DIR/nbd.sock: *export_id and *uri (the address
 * qemu-io reads; caller frees) are set on success, and nbd_export_end() drops the export and the server
 * again. On failure nothing is left. */
static int nbd_export_begin(struct qh_vm *vm, struct qmp_client *c, const char *node, char **export_id, char **uri,
                            struct qs_error **err)
{
    struct qmp_args *args = qmp_args_new();
    int ret = -1;

    unlink(vm->nbd_path);
    {
        struct qmp_args *addr = qmp_args_set_obj(args, "addr");
        qmp_args_set_str(addr, "type", "unix");
        qmp_args_set_str(qmp_args_set_obj(addr, "data"), "path", vm->nbd_path);
    }
    if (qmp_client_execute(c, "nbd-server-start", args, NULL, err) < 0)
        goto out;
    qmp_args_free(args);

    *export_id = qs_asprintf("qh-check-%u", ++vm->nbd_seq);
    args = qmp_args_new();
    qmp_args_set_str(args, "type", "nbd");
    qmp_args_set_str(args, "id", *export_id);
    qmp_args_set_str(args, "node-name", node);
    qmp_args_set_str(args, "name", *export_id);
    qmp_args_set_bool(args, "writable", false);
    if (qmp_client_execute(c, "block-export-add", args, NULL, err) < 0) {
        qmp_client_execute(c, "nbd-server-stop", NULL, NULL, NULL); /* best effort: the error is set */
        free(*export_id);
        *export_id = NULL;
        goto out;
    }
    *uri = qs_asprintf("nbd+unix:///%s?socket=%s", *export_id, vm->nbd_path);
    ret = 0;
out:
    qmp_args_free(args);
    return ret;
}

/* Drops the export EXPORT_ID and the server; an error of its own turns RET (the reading's result) into -1.
 * Frees EXPORT_ID. */
static int nbd_export_end(struct qmp_client *c, char *export_id, int ret, struct qs_error **err)
{
    struct qmp_args *args = qmp_args_new();
    struct qmp_event *ev = NULL;
    struct qs_error *e2 = NULL;

    qmp_args_set_str(args, "id", export_id);
    /* qemu-io has exited, but QEMU may not have seen its connection close yet ("still in use" in the default
       mode, seen on QEMU 10 under load): drop whatever is left */
    qmp_args_set_str(args, "mode", "hard");
    /* deletion completes asynchronously: wait for it so the node is free again on return */
    if (qmp_client_execute(c, "block-export-del", args, NULL, &e2) == 0)
        qmp_client_event_wait(c, "BLOCK_EXPORT_DELETED", "id", export_id, 5000, &ev, &e2);
    qmp_event_free(ev);
    qmp_args_free(args);
    if (e2 && ret >= 0) {
        qs_error_propagate(err, &e2);
        ret = -1;
    }
    qs_error_free(e2);
    e2 = NULL;
    if (qmp_client_execute(c, "nbd-server-stop", NULL, NULL, &e2) < 0 && ret >= 0) {
        qs_error_propagate(err, &e2);
        ret = -1;
    }
    qs_error_free(e2);
    free(export_id);
    return ret;
}

/* The extents of node NODE read through a temporary read-only NBD export (qh_vm_guest_check's result). */
static int nbd_check(struct qh_vm *vm, const char *node, const struct qh_extent *ext, size_t n, bool *ok,
                     struct qs_error **err)
{
    struct qmp_client *c = need_qmp(vm, err);
    char *export_id = NULL, *uri = NULL;
    int r;

    if (!c || nbd_export_begin(vm, c, node, &export_id, &uri, err) < 0)
        return -1;
    {
        char *argv[] = {QEMU_IO, "-r", "-f", "raw", uri, NULL};
        r = qemu_io_check_extents(argv, ext, n, ok, err);
    }
    free(uri);
    return nbd_export_end(c, export_id, r, err);
}

int qh_vm_disk_check(struct qh_vm *vm, const char *node, uint8_t pattern, uint64_t off, uint64_t len,
                     struct qs_error **err)
{
    struct qh_extent e = {off, len, pattern};
    return nbd_check(vm, node, &e, 1, NULL, err);
}

/* ---------------------------------------------------------------------------------------------------
 * Disk styles: the command lines users start QEMU with.
 */

static const char *const style_names[] = {
    [QH_STYLE_BLOCKDEV] = "blockdev",
    [QH_STYLE_DRIVE_VIRTIO] = "drive-virtio",
    [QH_STYLE_DRIVE_NONE] = "drive-none",
    [QH_STYLE_DRIVE_NONE_NOID] = "drive-none-noid",
    [QH_STYLE_IDE] = "ide",
    [QH_STYLE_IDE_HD] = "ide-hd",
    [QH_STYLE_SCSI_HD] = "scsi-hd",
    [QH_STYLE_AHCI] = "ahci",
    [QH_STYLE_HDA] = "hda",
};
_Static_assert(sizeof(style_names) / sizeof(style_names[0]) == QH_STYLE_LAST, "a name for every style");

const char *qh_style_name(int style)
{
    return style >= 0 && style < QH_STYLE_LAST ? style_names[style] : NULL;
}

int qh_style_from_name(const char *name)
{
    for (int i = 0; name && i < QH_STYLE_LAST; i++)
        if (strcmp(style_names[i], name) == 0)
            return i;
    return -1;
}

/* The BlockBackend name and qdev id disk D gets in its VM's style (see enum qh_style). */
static int style_disk_setup(struct qh_vm *vm, struct vm_disk *d, const struct qh_disk *in, struct qs_error **err)
{
    static const unsigned max_disks[QH_STYLE_LAST] = {
        [QH_STYLE_BLOCKDEV] = 64, [QH_STYLE_DRIVE_VIRTIO] = 16, [QH_STYLE_DRIVE_NONE] = 16,
        [QH_STYLE_DRIVE_NONE_NOID] = 16, [QH_STYLE_IDE] = 4, [QH_STYLE_IDE_HD] = 4,
        [QH_STYLE_SCSI_HD] = 16, [QH_STYLE_AHCI] = 6, [QH_STYLE_HDA] = 4,
    };
    unsigned i = d->index;

    if (i >= max_disks[vm->style]) {
        qs_error_set(err, QS_ERR_INVALID, "style '%s' takes at most %u disks", style_names[vm->style],
                     max_disks[vm->style]);
        return -1;
    }
    switch (vm->style) {
    case QH_STYLE_BLOCKDEV:
        d->qdev = qs_xstrdup(in->qdev_id ? in->qdev_id : in->id);
        break;
    case QH_STYLE_DRIVE_VIRTIO:
        d->blk = qs_asprintf("virtio%u", i);
        break;
    case QH_STYLE_DRIVE_NONE:
    case QH_STYLE_DRIVE_NONE_NOID:
    case QH_STYLE_SCSI_HD:
    case QH_STYLE_AHCI:
        d->blk = qs_asprintf("drive-%s", in->id);
        if (in->qdev_id)
            d->qdev = qs_xstrdup(in->qdev_id);
        else if (vm->style == QH_STYLE_DRIVE_NONE)
            d->qdev = qs_asprintf("virtio-disk%u", i);
        else if (vm->style == QH_STYLE_AHCI)
            d->qdev = qs_asprintf("sata0-0-%u", i);
        break;
    case QH_STYLE_IDE:
    case QH_STYLE_HDA:
        d->blk = qs_asprintf("ide%u-hd%u", i / 2, i % 2);
        break;
    case QH_STYLE_IDE_HD:
        d->qdev = in->qdev_id ? qs_xstrdup(in->qdev_id) : qs_asprintf("ide0-%u-%u", i / 2, i % 2);
        break;
    default:
        break;
    }
    return 0;
}

/* Appends the disks' arguments of every style but QH_STYLE_BLOCKDEV to V; returns V. */
static char **style_disk_args(const struct qh_vm *vm, char **v, size_t *n, size_t *cap)
{
    static const char *const hd_opts[] = {"-hda", "-hdb", "-hdc", "-hdd"};

#define PUSH(s) strv_push(&v, n, cap, qs_xstrdup(s))
#define PUSHF(...) strv_push(&v, n, cap, qs_asprintf(__VA_ARGS__))
    if (vm->style == QH_STYLE_SCSI_HD) {
        PUSH("-device");
        PUSH("virtio-scsi-pci,id=scsi0");
    } else if (vm->style == QH_STYLE_AHCI) {
        PUSH("-device");
        PUSH("ahci,id=ahci0");
    }
    for (size_t k = 0; k < vm->n_disks; k++) {
        const struct vm_disk *d = &vm->disks[k];
        char *file = opt_escape(d->arg_path), *id = NULL, *dev = NULL;
        /* probing a raw image is refused for writes at sector 0: name the format then; qcow2 is probed
           as users usually leave it */
        const char *fmt = strcmp(d->format, "raw") == 0 ? ",format=raw" : "";

        id = d->qdev ? qs_asprintf(",id=%s", d->qdev) : qs_xstrdup("");
        switch (vm->style) {
        case QH_STYLE_DRIVE_VIRTIO:
            PUSH("-drive");
            PUSHF("file=%s,if=virtio%s", file, fmt);
            break;
        case QH_STYLE_IDE:
            PUSH("-drive");
            PUSHF("file=%s,if=ide%s", file, fmt);
            break;
        case QH_STYLE_HDA:
            PUSH(hd_opts[d->index]);
            PUSH(d->arg_path);
            break;
        case QH_STYLE_IDE_HD:
            PUSH("-blockdev");
            PUSHF("driver=file,filename=%s,node-name=file-%s", file, d->id);
            PUSH("-blockdev");
            PUSHF("driver=%s,file=file-%s,node-name=%s", d->format, d->id, d->id);
            dev = qs_asprintf("ide-hd,drive=%s,bus=ide.%u,unit=%u", d->id, d->index / 2, d->index % 2);
            break;
        default: /* -drive if=none + -device */
            PUSH("-drive");
            PUSHF("if=none,id=%s,file=%s,format=%s", d->blk, file, d->format);
            if (vm->style == QH_STYLE_SCSI_HD)
                dev = qs_asprintf("scsi-hd,drive=%s,bus=scsi0.0,channel=0,scsi-id=0,lun=%u", d->blk, d->index);
            else if (vm->style == QH_STYLE_AHCI)
                dev = qs_asprintf("ide-hd,drive=%s,bus=ahci0.%u", d->blk, d->index);
            else
                dev = qs_asprintf("virtio-blk-pci,drive=%s", d->blk);
            break;
        }
        if (dev) {
            PUSH("-device");
            PUSHF("%s%s%s", dev, id, d->boot ? ",bootindex=0" : "");
        }
        free(file);
        free(id);
        free(dev);
    }
#undef PUSH
#undef PUSHF
    return v;
}

/* ---------------------------------------------------------------------------------------------------
 * QEMUs that are not the harness's children: -daemonize, or started by qsnap and adopted.
 */

/* State and start time (clock ticks after boot) of process PID; false when there is none. Async-signal-safe
 * (the watchdog calls it after fork). */
static bool proc_stat(pid_t pid, char *state, unsigned long long *start)
{
    char path[32] = "/proc/", digits[16], buf[1024], *p;
    size_t k = 0, len = strlen(path);
    unsigned long long v = 0;
    int fd, field = 0;
    ssize_t n;

    do {
        digits[k++] = (char)('0' + pid % 10);
        pid /= 10;
    } while (pid > 0 && k < sizeof(digits));
    while (k > 0)
        path[len++] = digits[--k];
    memcpy(path + len, "/stat", 6);
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return false;
    do {
        n = read(fd, buf, sizeof(buf) - 1);
    } while (n < 0 && errno == EINTR);
    qs_close(fd);
    if (n <= 0)
        return false;
    buf[n] = '\0';
    /* after the command name in parentheses: field 3 is the state, field 22 the start time */
    if (!(p = strrchr(buf, ')')))
        return false;
    for (p++, field = 2; *p;) {
        while (*p == ' ')
            p++;
        if (!*p)
            break;
        field++;
        if (field == 3)
            *state = *p;
        if (field == 22) {
            while (*p >= '0' && *p <= '9')
                v = v * 10 + (unsigned long long)(*p++ - '0');
            *start = v;
            return true;
        }
        while (*p && *p != ' ')
            p++;
    }
    return false;
}

/*
 * The watchdog: a process outside the test's process tree (so that ctest's kill of a timed-out test does
 * not reach it) that SIGKILLs the registered QEMUs once the test process is gone (its pipe reaches EOF).
 * QEMUs the harness forks itself die with it through PR_SET_PDEATHSIG; these cannot.
 */
struct wd_msg {
    int32_t pid;
    uint32_t add;
    unsigned long long start;
};
#define WATCHDOG_MAX 128

static pthread_mutex_t wd_lock = PTHREAD_MUTEX_INITIALIZER;
static int wd_fd = -1;

static void wd_main(int rfd)
{
    struct wd_msg tab[WATCHDOG_MAX], m;
    size_t n = 0;
    ssize_t r;

    for (;;) {
        r = read(rfd, &m, sizeof(m));
        if (r < 0 && errno == EINTR)
            continue;
        if (r != (ssize_t)sizeof(m))
            break;
        if (m.add && n < WATCHDOG_MAX) {
            tab[n++] = m;
        } else if (!m.add) {
            for (size_t i = 0; i < n; i++)
                if (tab[i].pid == m.pid) {
                    tab[i] = tab[--n];
                    break;
                }
        }
    }
    for (size_t i = 0; i < n; i++) {
        char st = 0;
        unsigned long long start = 0;
        /* the same process, not a later one that reused the pid */
        if (proc_stat(tab[i].pid, &st, &start) && start == tab[i].start)
            kill(tab[i].pid, SIGKILL);
    }
    _exit(0);
}

/* A process forked from a test process is a test process of its own (its QEMUs die with it, not with us). */
static void wd_atfork_child(void)
{
    if (wd_fd >= 0)
        close(wd_fd);
    wd_fd = -1;
    pthread_mutex_init(&wd_lock, NULL);
}

/* Called with wd_lock held. */
static int wd_start(void)
{
    static bool atfork;
    int p[2];
    pid_t a;

    if (!atfork && pthread_atfork(NULL, NULL, wd_atfork_child) == 0)
        atfork = true;
    if (pipe2(p, O_CLOEXEC) < 0)
        return -1;
    if ((a = fork()) < 0) {
        qs_close(p[0]);
        qs_close(p[1]);
        return -1;
    }
    if (a == 0) {
        pid_t b = fork();
        int nullfd;
        if (b != 0)
            _exit(b < 0);
        /* fds the test holds (QMP clients, ctest's output pipes) must not stay open in here */
        nullfd = open("/dev/null", O_RDWR);
        if (nullfd >= 0) {
            dup2(nullfd, 0);
            dup2(nullfd, 1);
            dup2(nullfd, 2);
        }
        for (int fd = 3; fd < 1024; fd++)
            if (fd != p[0])
                close(fd);
        signal(SIGINT, SIG_IGN);
        signal(SIGTERM, SIG_IGN);
        signal(SIGHUP, SIG_IGN);
        wd_main(p[0]);
    }
    qs_close(p[0]);
    while (waitpid(a, NULL, 0) < 0 && errno == EINTR)
        ;
    wd_fd = p[1];
    return 0;
}

static void wd_send(pid_t pid, unsigned long long start, bool add)
{
    struct wd_msg m = {(int32_t)pid, add, start};

    pthread_mutex_lock(&wd_lock);
    if (wd_fd >= 0 || (add && wd_start() == 0))
        (void)!write(wd_fd, &m, sizeof(m));
    pthread_mutex_unlock(&wd_lock);
}

/* true (and the VM's pid forgotten) once a QEMU that is not our child has exited. */
static bool foreign_gone(struct qh_vm *vm)
{
    char st = 0;
    unsigned long long start = 0;

    if (vm->pid < 0)
        return true;
    /* a zombie is gone for us: its parent (init, or qsnap) reaps it */
    if (proc_stat(vm->pid, &st, &start) && st != 'Z' && start == vm->start_time)
        return false;
    wd_send(vm->pid, vm->start_time, false);
    vm->pid = -1;
    return true;
}

/* The QEMU at the other end of the harness's monitor becomes the VM's, not as our child. */
static int take_foreign(struct qh_vm *vm, struct qs_error **err)
{
    pid_t pid = qmp_client_peer_pid(vm->qmp);
    char st = 0;
    unsigned long long start = 0;

    if (pid <= 0 || !proc_stat(pid, &st, &start)) {
        qs_error_set(err, QS_ERR_IO, "cannot tell the pid of the qemu behind '%s'", vm->hsock_path);
        return -1;
    }
    vm->pid = pid;
    vm->child = false;
    vm->start_time = start;
    wd_send(pid, start, true);
    return 0;
}

int qh_vm_adopt(struct qh_vm *vm, int timeout_ms, struct qs_error **err)
{
    struct qmp_options opts = {0};

    if (qh_vm_running(vm)) {
        qs_error_set(err, QS_ERR_STATE, "the VM's qemu (pid %d) still runs", (int)vm->pid);
        return -1;
    }
    drop_qmp(vm);
    opts.connect_timeout_ms = timeout_ms > 0 ? timeout_ms : DEFAULT_START_TIMEOUT_MS;
    if (!(vm->qmp = qmp_client_connect(vm->hsock_path, &opts, err))) {
        qs_error_prefix(err, "harness monitor of a qemu started by someone else");
        return -1;
    }
    if (take_foreign(vm, err) < 0) {
        drop_qmp(vm);
        return -1;
    }
    return 0;
}

bool qh_program_available(const char *prog)
{
    return in_path(prog);
}

const char *qh_vm_harness_socket_path(const struct qh_vm *vm)
{
    return vm->hsock_path;
}

/* ---------------------------------------------------------------------------------------------------
 * A disk's device, whatever the style.
 */

static const struct vm_disk *find_disk(const struct qh_vm *vm, const char *id, struct qs_error **err)
{
    for (size_t i = 0; i < vm->n_disks; i++)
        if (strcmp(vm->disks[i].id, id) == 0)
            return &vm->disks[i];
    qs_error_set(err, QS_ERR_NOTFOUND, "no disk '%s' in the VM", id);
    return NULL;
}

/* Whether query-block's entry E is the device called QDEV (an id, or a QOM path as query-block gives it). */
static bool entry_has_qdev(const struct qmp_value *e, const char *qdev)
{
    const char *q = qmp_value_get_string(e, "qdev");
    size_t n;

    if (!q || !qdev)
        return false;
    if (strcmp(q, qdev) == 0)
        return true;
    /* a virtio-blk-pci device's disk sits on its backend: /machine/peripheral/ID/virtio-backend */
    n = strlen("/machine/peripheral/");
    return strncmp(q, "/machine/peripheral/", n) == 0 && strncmp(q + n, qdev, strlen(qdev)) == 0 &&
           q[n + strlen(qdev)] == '/';
}

/*
 * The entry of disk D in query-block reply R: by its BlockBackend name, else its qdev id, else the device
 * path seen at the first start (a restarted QEMU whose command line someone rewrote may lack the first two).
 */
static const struct qmp_value *find_entry(const struct qmp_reply *r, const struct vm_disk *d)
{
    const struct qmp_value *list = qmp_reply_value(r);

    for (int pass = 0; pass < 3; pass++) {
        for (size_t i = 0; i < qmp_value_array_len(list); i++) {
            const struct qmp_value *e = qmp_value_array_at(list, i);
            const char *dev = qmp_value_get_string(e, "device");
            if ((pass == 0 && d->blk && qs_str_equal(dev, d->blk)) || (pass == 1 && entry_has_qdev(e, d->qdev)) ||
                (pass == 2 && entry_has_qdev(e, d->qom)))
                return e;
        }
    }
    return NULL;
}

/* Remembers every disk's device path at the first start (see find_entry). */
static void record_devices(struct qh_vm *vm)
{
    struct qmp_reply *r = NULL;

    if (qmp_client_execute(vm->qmp, "query-block", NULL, &r, NULL) < 0)
        return;
    for (size_t i = 0; i < vm->n_disks; i++) {
        const struct qmp_value *e;
        if (vm->disks[i].qom || !(e = find_entry(r, &vm->disks[i])))
            continue;
        if (qmp_value_get_string(e, "qdev"))
            vm->disks[i].qom = qs_xstrdup(qmp_value_get_string(e, "qdev"));
    }
    qmp_reply_free(r);
}

int qh_vm_disk_device(struct qh_vm *vm, const char *id, char **qdev, char **node, char **file,
                      struct qs_error **err)
{
    struct qmp_client *c = need_qmp(vm, err);
    const struct vm_disk *d = c ? find_disk(vm, id, err) : NULL;
    struct qmp_reply *r = NULL;
    const struct qmp_value *e;
    const char *q, *nn, *fl;
    int ret = -1;

    if (!d || qmp_client_execute(c, "query-block", NULL, &r, err) < 0)
        goto out;
    if (!(e = find_entry(r, d))) {
        char *json = qmp_value_to_json(qmp_reply_value(r));
        qs_error_set(err, QS_ERR_NOTFOUND, "disk '%s' (%s%s%s) is not in query-block: %s", id,
                     d->blk ? d->blk : "", d->blk && d->qdev ? ", " : "", d->qdev ? d->qdev : "", json);
        free(json);
        goto out;
    }
    q = qmp_value_get_string(e, "qdev");
    nn = qmp_value_string(qmp_value_path(e, "inserted.node-name"));
    fl = qmp_value_string(qmp_value_path(e, "inserted.file"));
    if ((qdev && !q) || (node && !nn) || (file && !fl)) {
        qs_error_set(err, QS_ERR_NOTFOUND, "disk '%s' has no %s in query-block", id, q ? "medium" : "device");
        goto out;
    }
    if (qdev)
        *qdev = qs_xstrdup(q);
    if (node)
        *node = qs_xstrdup(nn);
    if (file && qs_str_has_prefix(fl, "json:")) {
        /* QEMU names a node whose backing is not its header's default by its options (an overlay added
           over a relatively named image): the image itself is the protocol node's file */
        struct qmp_reply *j = qmp_reply_parse(fl + 5, NULL);
        const char *f2 = j ? qmp_value_string(qmp_value_path(qmp_reply_value(j), "file.filename")) : NULL;
        *file = qs_xstrdup(f2 ? f2 : fl);
        qmp_reply_free(j);
    } else if (file) {
        *file = qs_xstrdup(fl);
    }
    ret = 0;
out:
    qmp_reply_free(r);
    return ret;
}

int qh_vm_guest_write(struct qh_vm *vm, const char *id, uint8_t pattern, uint64_t off, uint64_t len,
                      struct qs_error **err)
{
    struct qh_extent e = {off, len, pattern};
    char *qdev = NULL, *node = NULL, *line = NULL, *out = NULL;
    off_t from = log_size(vm);
    int ret = -1, r;

    if (qh_vm_disk_device(vm, id, &qdev, &node, NULL, err) < 0)
        goto out;
    line = qs_asprintf("qemu-io -d %s \"write -P 0x%02x %" PRIu64 " %" PRIu64 "\"", qdev, pattern, off, len);
    if (qmp_client_hmp(vm->qmp, line, &out, err) < 0)
        goto out;
    if (*out) {
        qs_error_set(err, QS_ERR_QEMU, "qemu-io write on '%s' (%s): %s", id, qdev, out);
        goto out;
    }
    /* qemu-io reports to QEMU's stdout: our log for our own QEMU; otherwise (-daemonize, a QEMU qsnap
       started) read the bytes back */
    if (vm->child && !vm->daemonize) {
        ret = await_logged_write(vm, from, id, off, len, err);
        goto out;
    }
    if ((r = nbd_check(vm, node, &e, 1, NULL, err)) < 0)
        goto out;
    if (r == 0) {
        qs_error_set(err, QS_ERR_IO, "the write of 0x%02x at %" PRIu64 " on '%s' (%s) did not land", pattern,
                     off, id, qdev);
        goto out;
    }
    ret = 0;
out:
    free(qdev);
    free(node);
    free(line);
    free(out);
    return ret;
}

int qh_vm_guest_check(struct qh_vm *vm, const char *id, const struct qh_extent *ext, size_t n, bool *ok,
                      struct qs_error **err)
{
    char *node = NULL;
    int ret = -1;

    if (qh_vm_disk_device(vm, id, NULL, &node, NULL, err) < 0)
        goto out;
    ret = nbd_check(vm, node, ext, n, ok, err);
out:
    free(node);
    return ret;
}

int qh_vm_guest_read(struct qh_vm *vm, const char *id, uint64_t off, size_t len, uint8_t *buf,
                     struct qs_error **err)
{
    struct qmp_client *c = need_qmp(vm, err);
    char *node = NULL, *export_id = NULL, *uri = NULL;
    int ret = -1;

    if (!c || qh_vm_disk_device(vm, id, NULL, &node, NULL, err) < 0 ||
        nbd_export_begin(vm, c, node, &export_id, &uri, err) < 0)
        goto out;
    {
        char *argv[] = {QEMU_IO, "-r", "-f", "raw", uri, NULL};
        ret = qemu_io_read_bytes(argv, off, len, buf, err);
    }
    ret = nbd_export_end(c, export_id, ret, err);
out:
    free(uri);
    free(node);
    return ret;
}

/* SIGKILLs the process listening on unix socket PATH when it is a QEMU of this VM (its command line names
 * the VM's directory). */
static void kill_listener(const struct qh_vm *vm, const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct ucred cred = {0};
    socklen_t len = sizeof(cred);
    char proc[64], cmdline[4096];
    int fd = -1, cfd = -1;
    ssize_t n;

    if (strlen(path) >= sizeof(sa.sun_path) || (fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
        return;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    /* the listener's credentials come with the connection: no QMP greeting needed */
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 || cred.pid <= 0)
        goto out;
    snprintf(proc, sizeof(proc), "/proc/%d/cmdline", (int)cred.pid);
    if ((cfd = open(proc, O_RDONLY | O_CLOEXEC)) < 0 || (n = read(cfd, cmdline, sizeof(cmdline) - 1)) <= 0)
        goto out;
    cmdline[n] = '\0';
    for (ssize_t i = 0; i < n; i++)
        if (cmdline[i] == '\0')
            cmdline[i] = ' ';
    if (strstr(cmdline, QEMU_BIN) && strstr(cmdline, vm->dir))
        kill(cred.pid, SIGKILL);
out:
    qs_close(cfd);
    qs_close(fd);
}

/* A QEMU started from the VM's argv by someone else (qsnap) that a failed test never adopted: it serves the
 * VM's sockets and would outlive the test otherwise. */
static void kill_strays(struct qh_vm *vm)
{
    if (!vm->dir)
        return;
    if (vm->hsock_path)
        kill_listener(vm, vm->hsock_path);
    if (vm->sock_path)
        kill_listener(vm, vm->sock_path);
}

int qh_vm_fill_ram(struct qh_vm *vm, int fill_mb, struct qs_error **err)
{
    char *out = NULL, *p, *path = NULL;
    unsigned long long hva;
    size_t chunk = 1u << 20;
    uint64_t *buf = qs_xmalloc(chunk), x = 0x9e3779b97f4a7c15ull ^ (uint64_t)fill_mb;
    int fd = -1, ret = -1;

    if (qmp_client_hmp(qh_vm_qmp(vm), "gpa2hva 0x100000", &out, err) < 0)
        goto out;
    p = out ? strstr(out, " is 0x") : NULL;
    if (!p || sscanf(p + 4, "%llx", &hva) != 1) {
        qs_error_set(err, QS_ERR_QEMU, "unexpected gpa2hva answer: %s", out ? out : "");
        goto out;
    }
    for (size_t i = 0; i < chunk / 8; i++) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        buf[i] = x * 0x2545f4914f6cdd1dull;
    }
    path = qs_asprintf("/proc/%d/mem", (int)qh_vm_pid(vm));
    if ((fd = open(path, O_RDWR | O_CLOEXEC)) < 0) {
        qs_error_set(err, QS_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
        goto out;
    }
    for (unsigned m = 0; m < (unsigned)fill_mb; m++) {
        /* each page's first word differs from every other page's */
        for (size_t pg = 0; pg < chunk / 8; pg += 512)
            buf[pg] = ((uint64_t)m << 32 | pg) + 1;
        if (pwrite(fd, buf, chunk, (off_t)(hva + (unsigned long long)m * chunk)) != (ssize_t)chunk) {
            qs_error_set(err, QS_ERR_IO, "cannot write guest RAM through '%s': %s", path, strerror(errno));
            goto out;
        }
    }
    ret = 0;
out:
    if (fd >= 0)
        close(fd);
    free(path);
    free(out);
    free(buf);
    return ret;
}
