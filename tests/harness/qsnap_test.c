/* qsnap_test.c: cmocka helpers for integration tests that drive the qsnap binary against a harness VM. */
#include "qsnap_test.h"

#include "md.h"

#include "qs_file.h"
#include "qs_proc.h"
#include "qs_util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define QSNAP_TIMEOUT_MS 120000
#define TOOL_TIMEOUT_MS 30000
#define MAX_ARGS 30 /* qsnap arguments after --root ROOT */

static const struct qh_disk two_disks[] = {
    {.id = "vda", .boot = true},
    {.id = "vdb", .size = 16u << 20},
};
const struct qh_vm_config qt_cfg_two_disks = {.disks = two_disks, .n_disks = 2};

void qt_check(int rc, struct qs_error **err, const char *what, const char *file, int line)
{
    if (rc < 0) {
        print_error("%s:%d: %s: %s\n", file, line, what, *err ? (*err)->message : "failed");
        qs_error_clear(err);
        _fail(file, line);
    }
}

void qt_agent_args(const char *extra[7], const char *chardev)
{
    extra[0] = "-chardev";
    extra[1] = chardev;
    extra[2] = "-device";
    extra[3] = "virtio-serial-pci";
    extra[4] = "-device";
    extra[5] = "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0";
    extra[6] = NULL;
}

int qt_setup(void **state)
{
    struct qt_fixture *f = *state;
    struct qs_error *err = NULL;
    const char *build = getenv("QSNAP_BUILD_DIR");

    if (!qh_qemu_available() || !build)
        return 0;
    if (f->agent) {
        /* one agent fixture at a time: cmocka runs the tests one by one */
        static const char *extra[8];
        static struct qh_vm_config cfg;
        char tmpl[] = "/tmp/qsnap-agent-XXXXXX";
        assert_non_null(mkdtemp(tmpl));
        f->tmp = qs_xstrdup(tmpl);
        f->chardev = qs_asprintf("socket,path=%s/qga.sock,server=on,wait=off,id=qga0", f->tmp);
        qt_agent_args(extra, f->chardev);
        cfg = *f->cfg;
        cfg.extra_args = extra;
        f->cfg = &cfg;
    }
    if (!(f->vm = qh_vm_start(f->cfg, &err))) {
        print_error("cannot start qemu: %s\n", err->message);
        qs_error_free(err);
        return -1;
    }
    f->root = qs_asprintf("%s/root", qh_vm_dir(f->vm));
    /* $QSNAP_TEST_QSNAP: another build of the command (the valgrind tests' qsnap-shared) */
    f->qsnap = getenv("QSNAP_TEST_QSNAP") && *getenv("QSNAP_TEST_QSNAP") ? qs_xstrdup(getenv("QSNAP_TEST_QSNAP"))
                                                                       : qs_asprintf("%s/cli/qsnap", build);
    f->daemon = -1;
    return 0;
}

int qt_teardown(void **state)
{
    struct qt_fixture *f = *state;

    if (f->daemon > 0)
        kill(f->daemon, SIGKILL);
    qh_vm_free(f->vm);
    if (f->tmp) {
        char *s = qs_asprintf("%s/qga.sock", f->tmp);
        unlink(s);
        rmdir(f->tmp);
        free(s);
    }
    free(f->tmp);
    free(f->chardev);
    free(f->root);
    free(f->qsnap);
    f->vm = NULL;
    f->tmp = f->chardev = f->root = f->qsnap = NULL;
    return 0;
}

struct qt_fixture *qt_fixture_of(void **state)
{
    struct qt_fixture *f = *state;
    if (!f->vm) {
        if (!getenv("QSNAP_BUILD_DIR"))
            qt_skip_missing("$QSNAP_BUILD_DIR is unset (ctest sets it)");
        qt_skip_missing("qemu-system-x86_64, qemu-img or qemu-io is not in PATH");
    }
    return f;
}

/* ------------------------------------------------------------------------------------------------ */
/* qsnap. */

/*
 * Runs ARGV (N words), behind $QSNAP_TEST_WRAPPER when that is set: words split at spaces, e.g.
 * "valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite -q".
 */
static int qsnap_exec(char **argv, size_t n, struct qs_proc_result *res, struct qs_error **err)
{
    const char *wrapper = getenv("QSNAP_TEST_WRAPPER");
    char *words = NULL, *save = NULL, **full = NULL;
    size_t k = 0;
    int r;

    if (!wrapper || !*wrapper)
        return qs_proc_run(argv, QSNAP_TIMEOUT_MS, 0, res, err);
    words = qs_xstrdup(wrapper);
    full = qs_xcalloc(strlen(wrapper) / 2 + 1 + n + 1, sizeof(char *));
    for (char *w = strtok_r(words, " ", &save); w; w = strtok_r(NULL, " ", &save))
        full[k++] = w;
    for (size_t i = 0; i < n; i++)
        full[k++] = argv[i];
    full[k] = NULL;
    /* valgrind makes qsnap several times slower */
    r = qs_proc_run(full, QSNAP_TIMEOUT_MS * 3, 0, res, err);
    free(full);
    free(words);
    return r;
}

/* Runs qsnap --root ROOT and the NULL-terminated arguments in AP; a failure to run fails at FILE:LINE. */
static void qsnap_vrun(struct qt_fixture *f, struct qs_proc_result *res, char *argv[MAX_ARGS + 2 + 3],
                       const char *file, int line, va_list ap)
{
    struct qs_error *err = NULL;
    size_t n = 3;

    argv[0] = f->qsnap;
    argv[1] = "--root";
    argv[2] = f->root;
    while ((argv[n] = va_arg(ap, char *)) != NULL && n < MAX_ARGS)
        n++;
    qt_check(qsnap_exec(argv, n, res, &err), &err, "qsnap", file, line);
}

int qt_qsnap_run(struct qt_fixture *f, char **out, char **errout, ...)
{
    char *argv[MAX_ARGS + 2 + 3];
    struct qs_proc_result res = {0};
    va_list ap;

    va_start(ap, errout);
    qsnap_vrun(f, &res, argv, __FILE__, __LINE__, ap);
    va_end(ap);
    if (out)
        *out = res.out, res.out = NULL;
    if (errout)
        *errout = res.errout, res.errout = NULL;
    qs_proc_result_release(&res);
    return res.status; /* release frees the strings only */
}

char *qt_qsnap_ok_(struct qt_fixture *f, const char *file, int line, ...)
{
    char *argv[MAX_ARGS + 2 + 3];
    struct qs_proc_result res = {0};
    va_list ap;
    char *out;

    va_start(ap, line);
    qsnap_vrun(f, &res, argv, file, line, ap);
    va_end(ap);
    if (res.status != 0) {
        print_error("%s:%d: qsnap %s %s failed (%d): %s\n", file, line, argv[3], argv[4] ? argv[4] : "",
                    res.status, res.errout);
        _fail(file, line);
    }
    out = res.out;
    res.out = NULL;
    qs_proc_result_release(&res);
    return out;
}

void qt_qsnap_fail(struct qt_fixture *f, const char *want, ...)
{
    char *argv[MAX_ARGS + 2 + 3];
    struct qs_proc_result res = {0};
    va_list ap;

    va_start(ap, want);
    qsnap_vrun(f, &res, argv, __FILE__, __LINE__, ap);
    va_end(ap);
    if (res.status != 1 || !strstr(res.errout, want))
        print_error("qsnap %s: status %d, stderr: %s (wanted '%s')\n", argv[3], res.status, res.errout, want);
    assert_int_equal(res.status, 1);
    assert_non_null(strstr(res.errout, want));
    qs_proc_result_release(&res);
}

void qt_attach(struct qt_fixture *f)
{
    free(QSNAP_OK(f, "attach", "vm", "--qmp", qh_vm_socket_path(f->vm)));
}

void qt_assert_contains(const char *hay, const char *needle)
{
    if (!strstr(hay, needle))
        print_error("'%s' not found in:\n%s\n", needle, hay);
    assert_non_null(strstr(hay, needle));
}

/* ------------------------------------------------------------------------------------------------ */
/* Files. */

char *qt_path_in(struct qt_fixture *f, const char *name)
{
    return qs_asprintf("%s/%s", qh_vm_dir(f->vm), name);
}

bool qt_exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

char *qt_slurp(const char *path)
{
    struct qs_error *err = NULL;
    char *data = NULL;
    OK(qs_file_read(AT_FDCWD, path, 16u << 20, &data, NULL, &err));
    return data;
}

char *qt_domain_xml(struct qt_fixture *f)
{
    char *p = qs_asprintf("%s/qemu/vm.xml", f->root), *x = qt_slurp(p);
    free(p);
    return x;
}

char *qt_snapshot_xml(struct qt_fixture *f, const char *name)
{
    char *p = qs_asprintf("%s/snapshot/vm/%s.xml", f->root, name), *x = qt_slurp(p);
    free(p);
    return x;
}

bool qt_schema_available(void)
{
    return access("/usr/share/libvirt/schemas/domainsnapshot.rng", R_OK) == 0 &&
           qh_program_available("virt-xml-validate") && qh_program_available("xmllint");
}

#define NO_SCHEMA_TOOLS "(packages libvirt0, libvirt-clients, libxml2-utils)"
#define NO_SCHEMA "libvirt's schemas, virt-xml-validate or xmllint is missing " NO_SCHEMA_TOOLS

void qt_validate_all(struct qt_fixture *f, int want)
{
    char *dir;
    DIR *d;
    struct dirent *de;
    int checked = 0;

    if (!qt_schema_available()) {
        qt_part_missing(NO_SCHEMA);
        return;
    }
    dir = qs_asprintf("%s/snapshot/vm", f->root);
    assert_non_null(d = opendir(dir));
    while ((de = readdir(d))) {
        char *path;
        if (!qs_str_has_suffix(de->d_name, ".xml"))
            continue;
        path = qs_asprintf("%s/%s", dir, de->d_name);
        qt_validate_xml(path, "domainsnapshot");
        free(path);
        checked++;
    }
    closedir(d);
    free(dir);
    assert_int_equal(checked, want);
}

/* ------------------------------------------------------------------------------------------------ */
/* QEMU through any QMP client. */

bool qt_intent_pending(struct qt_fixture *f, const char *domain)
{
    struct qs_error *err = NULL;
    struct md_store *st = md_store_open(f->root, &err);
    char *text = NULL;
    bool pending;

    if (!st || md_store_intent_get(st, domain, &text, &err) < 0)
        fail_msg("cannot read the intent record of '%s': %s", domain, err ? err->message : "?");
    pending = text != NULL;
    free(text);
    md_store_free(st);
    return pending;
}

char *qt_status_of(struct qmp_client *c)
{
    struct qmp_reply *r = NULL;
    struct qs_error *err = NULL;
    char *s;

    OK(qmp_client_execute(c, "query-status", NULL, &r, &err));
    s = qs_xstrdup(qmp_value_get_string(qmp_reply_value(r), "status"));
    qmp_reply_free(r);
    return s;
}

bool qt_precopy_coherent(struct qmp_client *c)
{
    struct qmp_reply *r = NULL;
    struct qs_error *err = NULL;
    bool kvm = false;
    int major = 0, minor = 0;

    qmp_client_version_num(c, &major, &minor, NULL);
    assert_true(major > 0);
    OK(qmp_client_execute(c, "query-kvm", NULL, &r, &err));
    assert_true(qmp_value_bool(qmp_value_get(qmp_reply_value(r), "enabled"), &kvm));
    qmp_reply_free(r);
    return kvm || major >= 9;
}

void qt_assert_status(struct qmp_client *c, const char *want)
{
    char *s = qt_status_of(c);
    /* a QEMU qsnap started with -S and loaded a snapshot into stays "prelaunch": stopped as "paused" is, and
     * what `qsnap domstate` (like virsh) shows as paused */
    if (strcmp(want, "paused") == 0 && strcmp(s, "prelaunch") == 0)
        want = "prelaunch";
    assert_string_equal(s, want);
    free(s);
}

void qt_exec(struct qmp_client *c, const char *command)
{
    struct qs_error *err = NULL;
    OK(qmp_client_execute(c, command, NULL, NULL, &err));
}

char *qt_query_block(struct qmp_client *c)
{
    struct qmp_reply *r = NULL, *nn = NULL;
    struct qmp_args *a = qmp_args_new();
    struct qs_error *err = NULL;
    char *s = qs_xstrdup(""), *t;

    OK(qmp_client_execute(c, "query-block", NULL, &r, &err));
    for (size_t i = 0; i < qmp_value_array_len(qmp_reply_value(r)); i++) {
        const struct qmp_value *ins = qmp_value_get(qmp_value_array_at(qmp_reply_value(r), i), "inserted");
        int64_t depth = -1;
        qmp_value_int(qmp_value_get(ins, "backing_file_depth"), &depth);
        t = qs_asprintf("%s%s %s %lld\n", s, qmp_value_get_string(ins, "node-name"),
                        qmp_value_get_string(ins, "file"), (long long)depth);
        free(s);
        s = t;
    }
    qmp_args_set_bool(a, "flat", true);
    OK(qmp_client_execute(c, "query-named-block-nodes", a, &nn, &err));
    for (size_t i = 0; i < qmp_value_array_len(qmp_reply_value(nn)); i++) {
        const char *name = qmp_value_get_string(qmp_value_array_at(qmp_reply_value(nn), i), "node-name");
        t = qs_asprintf("%s%s\n", s, name[0] == '#' ? "#auto" : name);
        free(s);
        s = t;
    }
    qmp_args_free(a);
    qmp_reply_free(nn);
    qmp_reply_free(r);
    return s;
}

/* The string at PATH ("inserted.file", ...) of the query-block entry whose qdev names DEV; must exist. */
static char *device_field(struct qmp_client *c, const char *dev, const char *path)
{
    struct qmp_reply *r = NULL;
    struct qs_error *err = NULL;
    char *v = NULL;

    OK(qmp_client_execute(c, "query-block", NULL, &r, &err));
    for (size_t i = 0; i < qmp_value_array_len(qmp_reply_value(r)); i++) {
        const struct qmp_value *d = qmp_value_array_at(qmp_reply_value(r), i);
        const char *qdev = qmp_value_get_string(d, "qdev");
        if (qdev && strstr(qdev, dev)) {
            free(v);
            v = qs_xstrdup(qmp_value_string(qmp_value_path(d, path)));
        }
    }
    qmp_reply_free(r);
    assert_non_null(v);
    return v;
}

char *qt_live_file(struct qmp_client *c, const char *dev)
{
    return device_field(c, dev, "inserted.file");
}

char *qt_live_node(struct qmp_client *c, const char *dev)
{
    return device_field(c, dev, "inserted.node-name");
}

uint64_t qt_client_counter(struct qmp_client *c, bool need_magic)
{
    struct qs_error *err = NULL;
    char *text = NULL, hmp[64];
    unsigned long long lo = 0, hi = 0, magic = 0;

    snprintf(hmp, sizeof(hmp), "xp /3wx 0x%x", QH_COUNTER_ADDR);
    OK(qmp_client_hmp(c, hmp, &text, &err));
    assert_int_equal(sscanf(text, "%*x: %llx %llx %llx", &lo, &hi, &magic), 3);
    free(text);
    if (need_magic)
        assert_int_equal(magic, QH_COUNTER_MAGIC);
    if (magic != QH_COUNTER_MAGIC)
        return 0;
    return (hi << 32) | lo;
}

void qt_client_counter_advances(struct qmp_client *c)
{
    uint64_t a = 0, b = 0;
    /* 60 s and 30 s: against a hang, far beyond what even a loaded machine needs */
    for (int i = 0; i < 600 && (a = qt_client_counter(c, false)) == 0; i++)
        usleep(100000);
    assert_true(a > 0);
    for (int i = 0; i < 600 && (b = qt_client_counter(c, false)) <= a; i++)
        usleep(50000);
    assert_true(b > a);
}

void qt_kill_started(struct qt_fixture *f)
{
    DIR *d = opendir("/proc");
    struct dirent *de;

    if (!d || !f->root) {
        if (d)
            closedir(d);
        return;
    }
    while ((de = readdir(d))) {
        char path[300], buf[8192];
        ssize_t n;
        int fd;
        if (de->d_name[0] < '1' || de->d_name[0] > '9')
            continue;
        snprintf(path, sizeof(path), "/proc/%s/cmdline", de->d_name);
        if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
            continue;
        n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n <= 0)
            continue;
        for (ssize_t i = 0; i < n; i++)
            if (!buf[i])
                buf[i] = ' ';
        buf[n] = '\0';
        if (strstr(buf, "qemu-system") && strstr(buf, f->root))
            kill(atoi(de->d_name), SIGKILL);
    }
    closedir(d);
}

struct qmp_client *qt_daemon_client(struct qt_fixture *f)
{
    struct qs_error *err = NULL;
    struct qmp_client *c = qmp_client_connect(qh_vm_socket_path(f->vm), NULL, &err);
    qt_check(c ? 0 : -1, &err, "connect", __FILE__, __LINE__);
    f->daemon = qmp_client_peer_pid(c);
    return c;
}

/* ------------------------------------------------------------------------------------------------ */
/* The harness's VM. */

uint64_t qt_counter(struct qt_fixture *f)
{
    struct qs_error *err = NULL;
    uint64_t v = 0;
    OK(qh_vm_read_counter(f->vm, &v, &err));
    return v;
}

void qt_disk_write(struct qt_fixture *f, const char *dev, uint8_t pattern, uint64_t off)
{
    struct qs_error *err = NULL;
    OK(qh_vm_disk_write(f->vm, dev, pattern, off, QT_LEN, &err));
}

int qt_node_reads(struct qt_fixture *f, const char *node, uint8_t pattern, uint64_t off)
{
    struct qs_error *err = NULL;
    int r = qh_vm_disk_check(f->vm, node, pattern, off, QT_LEN, &err);
    qt_check(r, &err, "disk check", __FILE__, __LINE__);
    return r;
}

int qt_guest_reads(struct qt_fixture *f, const char *dev, uint8_t pattern, uint64_t off)
{
    char *node = qt_live_node(qh_vm_qmp(f->vm), dev);
    int r = qt_node_reads(f, node, pattern, off);
    free(node);
    return r;
}

/* ------------------------------------------------------------------------------------------------ */
/* Images. */

int qt_image_is(const char *path, const char *fmt, uint8_t pattern, uint64_t off)
{
    struct qs_error *err = NULL;
    int r = qh_image_check(path, fmt, pattern, off, QT_LEN, &err);
    qt_check(r, &err, "image check", __FILE__, __LINE__);
    return r;
}

/* Runs a tool's ARGV, requires exit 0; returns its stdout (caller frees). */
static char *tool_ok(char *const argv[])
{
    struct qs_proc_result res = {0};
    struct qs_error *err = NULL;
    char *out;

    qt_check(qs_proc_run(argv, TOOL_TIMEOUT_MS, 0, &res, &err), &err, argv[0], __FILE__, __LINE__);
    assert_int_equal(res.status, 0);
    out = res.out;
    res.out = NULL;
    qs_proc_result_release(&res);
    return out;
}

void qt_offline_write(const char *path, uint8_t pattern, uint64_t off)
{
    char cmd[128];
    char *argv[] = {"qemu-io", "-f", "qcow2", "-c", cmd, (char *)path, NULL};

    snprintf(cmd, sizeof(cmd), "write -P 0x%02x %llu %u", pattern, (unsigned long long)off, QT_LEN);
    free(tool_ok(argv));
}

char *qt_image_tags(const char *path)
{
    char *argv[] = {"qemu-img", "snapshot", "-l", "-U", (char *)path, NULL};
    return tool_ok(argv);
}

bool qt_image_has_tag(const char *path, const char *tag)
{
    char *list = qt_image_tags(path), *line, *save = NULL;
    bool found = false;

    for (line = strtok_r(list, "\n", &save); line && !found; line = strtok_r(NULL, "\n", &save)) {
        char id[64], name[256];
        found = sscanf(line, "%63s %255s", id, name) == 2 && strcmp(name, tag) == 0;
    }
    free(list);
    return found;
}

char *qt_image_field(const char *path, const char *key)
{
    char *argv[] = {"qemu-img", "info", "-U", "--output=json", (char *)path, NULL};
    struct qs_error *err = NULL;
    char *json = tool_ok(argv), *out = NULL;
    const struct qmp_value *v;
    struct qmp_reply *r;
    int64_t n;

    r = qmp_reply_parse(json, &err);
    assert_non_null(r);
    v = qmp_value_get(qmp_reply_value(r), key);
    if (qmp_value_get_string(qmp_reply_value(r), key))
        out = qs_xstrdup(qmp_value_get_string(qmp_reply_value(r), key));
    else if (v && qmp_value_int(v, &n))
        out = qs_asprintf("%lld", (long long)n);
    qmp_reply_free(r);
    free(json);
    return out;
}

char *qt_backing_of(const char *path)
{
    char *argv[] = {"qemu-img", "info", "-U", "--output=json", (char *)path, NULL};
    struct qs_error *err = NULL;
    char *json = tool_ok(argv), *out;
    struct qmp_reply *r;
    const char *b;

    r = qmp_reply_parse(json, &err);
    assert_non_null(r);
    b = qmp_value_get_string(qmp_reply_value(r), "backing-filename");
    out = b ? qs_xstrdup(b) : NULL;
    qmp_reply_free(r);
    free(json);
    return out;
}

/* ------------------------------------------------------------------------------------------------ */
/* Every VM style, and what a user would check. */

void qt_adopt(struct qt_fixture *f)
{
    struct qs_error *err = NULL;
    OK(qh_vm_adopt(f->vm, 20000, &err));
}

void qt_follow(struct qt_fixture *f)
{
    struct qs_error *err = NULL;
    struct qmp_client *c = qh_vm_running(f->vm) ? qh_vm_qmp(f->vm) : NULL;

    /* qsnap quits QEMU before it starts the next: a monitor that answers is the same QEMU */
    if (c && qmp_client_execute(c, "query-status", NULL, NULL, &err) == 0)
        return;
    qs_error_clear(&err);
    OK(qh_vm_wait_exit(f->vm, 20000, NULL, &err));
    qt_adopt(f);
}

void qt_guest_write(struct qt_fixture *f, const char *id, uint8_t pattern, uint64_t off)
{
    struct qs_error *err = NULL;
    OK(qh_vm_guest_write(f->vm, id, pattern, off, QT_LEN, &err));
}

int qt_guest_is(struct qt_fixture *f, const char *id, uint8_t pattern, uint64_t off)
{
    struct qh_extent e = {off, QT_LEN, pattern};
    struct qs_error *err = NULL;
    int r = qh_vm_guest_check(f->vm, id, &e, 1, NULL, &err);
    qt_check(r, &err, "guest check", __FILE__, __LINE__);
    return r;
}

void qt_validate_xml(const char *path, const char *schema)
{
    char *argv[] = {"virt-xml-validate", (char *)path, (char *)schema, NULL};
    struct qs_proc_result res = {0};
    struct qs_error *err = NULL;

    if (!qt_schema_available()) {
        qt_part_missing(NO_SCHEMA);
        return;
    }
    OK(qs_proc_run(argv, TOOL_TIMEOUT_MS, 0, &res, &err));
    if (res.status != 0) {
        char *x = qt_slurp(path);
        print_error("%s is not a valid libvirt %s: %s%s\n%s\n", path, schema, res.errout, res.out, x);
        free(x);
    }
    assert_int_equal(res.status, 0);
    qs_proc_result_release(&res);
}

/* Lines of TEXT, empty ones dropped, as a NULL-terminated array (caller frees with qs_strv_free). */
static char **text_lines(const char *text)
{
    char **v = qs_xcalloc(1, sizeof(*v)), *copy = qs_xstrdup(text), *save = NULL;
    size_t n = 0;

    for (char *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        v = qs_xrealloc(v, (n + 2) * sizeof(*v));
        v[n++] = qs_xstrdup(l);
        v[n] = NULL;
    }
    free(copy);
    return v;
}

/* Drops blank (or all-space) lines and trailing spaces of S, in place. */
static void squeeze_blank_lines(char *s)
{
    char *w = s, *line = s;

    while (*line) {
        char *end = strchr(line, '\n'), *stop;
        size_t len = end ? (size_t)(end - line) : strlen(line);
        stop = line + len;
        while (stop > line && stop[-1] == ' ')
            stop--;
        if (stop > line) {
            memmove(w, line, (size_t)(stop - line));
            w += stop - line;
            *w++ = '\n';
        }
        line += len + (end ? 1 : 0);
    }
    *w = '\0';
}

void qt_libvirt_accepts(struct qt_fixture *f)
{
    char *dom = qs_asprintf("%s/qemu/vm.xml", f->root), *names_out, *cmd, *t, *current = NULL, *tree = NULL;
    char *tmpl = qt_path_in(f, "libvirt-check"), **names; /* the VM's: removed with it, even on a failure */
    struct qs_proc_result res = {0};
    struct qs_error *err = NULL;

    if (!qt_schema_available() || !qh_program_available("virsh")) {
        qt_part_missing("virsh, libvirt's schemas, virt-xml-validate or xmllint is missing " NO_SCHEMA_TOOLS);
        free(dom);
        free(tmpl);
        return;
    }
    qt_validate_xml(dom, "domain");
    names_out = QSNAP_OK(f, "snapshot-list", "vm", "--topological", "--name");
    names = text_lines(names_out);
    if (names[0]) {
        current = QSNAP_OK(f, "snapshot-current", "vm", "--name");
        current[strcspn(current, "\n")] = '\0';
        tree = QSNAP_OK(f, "snapshot-list", "vm", "--tree");
    }
    assert_true(mkdir(tmpl, 0700) == 0 || errno == EEXIST);
    cmd = qs_asprintf("define --validate %s", dom);
    for (size_t i = 0; names[i]; i++) {
        char *file = qs_asprintf("%s/snapshot/vm/%s.xml", f->root, names[i]);
        char *dump = QSNAP_OK(f, "snapshot-dumpxml", "vm", names[i]);
        char *dumpfile = qs_asprintf("%s/%s.xml", tmpl, names[i]);
        int dfd = open(tmpl, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(dfd >= 0);
        qt_validate_xml(file, "domainsnapshot");
        OK(qs_file_write_atomic(dfd, dumpfile + strlen(tmpl) + 1, dump, strlen(dump), 0600, &err));
        close(dfd);
        qt_validate_xml(dumpfile, "domainsnapshot");
        unlink(dumpfile);
        t = qs_asprintf("%s; snapshot-create vm --redefine --validate %s%s", cmd, file,
                        current && strcmp(current, names[i]) == 0 ? " --current" : "");
        free(cmd);
        cmd = t;
        free(file), free(dump), free(dumpfile);
    }
    if (names[0]) {
        t = qs_asprintf("%s; echo @@; snapshot-current vm --name; echo @@; snapshot-list vm --tree", cmd);
        free(cmd);
        cmd = t;
    }
    {
        char *argv[] = {"virsh", "-c", "test:///default", cmd, NULL};
        OK(qs_proc_run(argv, TOOL_TIMEOUT_MS, 0, &res, &err));
    }
    /* virsh goes on after a failed command: every one must have succeeded, with nothing on stderr */
    if (res.status != 0 || *res.errout)
        print_error("libvirt refuses qsnap's files (status %d): %s\n---\n%s\n---\nvirsh %s\n", res.status,
                    res.errout, res.out, cmd);
    assert_int_equal(res.status, 0);
    assert_string_equal(res.errout, "");
    qt_assert_contains(res.out, "Domain 'vm' defined from");
    for (size_t i = 0; names[i]; i++) {
        t = qs_asprintf("Domain snapshot %s created from", names[i]);
        qt_assert_contains(res.out, t);
        free(t);
    }
    if (names[0]) {
        /* the same current snapshot and the same tree as qsnap shows (blank lines aside: virsh's shell
           mode ends a command's output differently) */
        char *got = strstr(res.out, "@@\n");
        char *want = qs_asprintf("@@\n%s\n@@\n%s", current, tree);
        assert_non_null(got);
        squeeze_blank_lines(got);
        squeeze_blank_lines(want);
        if (strcmp(got, want) != 0)
            print_error("libvirt's current snapshot and tree:\n%s\nqsnap's:\n%s\n", got, want);
        assert_string_equal(got, want);
        free(want);
    }
    qs_proc_result_release(&res);
    rmdir(tmpl);
    free(tmpl);
    qs_strv_free(names);
    free(names_out), free(cmd), free(current), free(tree), free(dom);
}

void qt_check_clean(struct qt_fixture *f)
{
    char *out = NULL, *errout = NULL;
    int rc = qt_qsnap_run(f, &out, &errout, "snapshot-check", "vm", (char *)NULL);

    if (rc != 0)
        print_error("snapshot-check vm exited %d:\n%s%s\n", rc, out, errout);
    assert_int_equal(rc, 0);
    free(out);
    free(errout);
}

/* Appends to *V (of *N) every value of ATTR='...' (or "...") in TEXT[0..END). */
static void push_attr_values(char ***v, size_t *n, const char *text, const char *end, const char *attr)
{
    size_t alen = strlen(attr);

    for (const char *p = text; (p = strstr(p, attr)) && p < end; p += alen) {
        const char *q = p + alen, *close;
        if (*q != '\'' && *q != '"')
            continue;
        if (!(close = strchr(q + 1, *q)))
            break;
        *v = qs_xrealloc(*v, (*n + 2) * sizeof(**v));
        (*v)[(*n)++] = qs_xstrndup(q + 1, (size_t)(close - q - 1));
        (*v)[*n] = NULL;
    }
}

static bool strv_has(char *const *v, const char *s)
{
    for (size_t i = 0; v && v[i]; i++)
        if (strcmp(v[i], s) == 0)
            return true;
    return false;
}

/* PATH resolved (symlinks, ..); PATH itself when it does not exist. Caller frees. */
static char *resolved(const char *path)
{
    char buf[PATH_MAX];
    return qs_xstrdup(realpath(path, buf) ? buf : path);
}

void qt_no_orphans(struct qt_fixture *f, const char *const *allowed)
{
    char **named = NULL, **used = qs_xcalloc(1, sizeof(char *)), *snapdir, *x, *report = qs_xstrdup("");
    size_t n_named = 0, n_used = 0;
    const char *dir = qh_vm_dir(f->vm);
    struct dirent *de;
    DIR *d;

    /* the definition's disks */
    x = qt_domain_xml(f);
    push_attr_values(&named, &n_named, x, x + strlen(x), "<source file=");
    free(x);
    /* each snapshot's: the images its <domain> ran on (what a revert goes back to) and its memory file */
    snapdir = qs_asprintf("%s/snapshot/vm", f->root);
    if ((d = opendir(snapdir))) {
        while ((de = readdir(d))) {
            char *p, *dom;
            if (!qs_str_has_suffix(de->d_name, ".xml"))
                continue;
            p = qs_asprintf("%s/%s", snapdir, de->d_name);
            x = qt_slurp(p);
            dom = strstr(x, "<domain ");
            if (!dom)
                dom = strstr(x, "<domain>");
            if (dom)
                push_attr_values(&named, &n_named, dom, dom + strlen(dom), "<source file=");
            {
                char *mem = strstr(x, "<memory ");
                if (mem)
                    push_attr_values(&named, &n_named, mem, strchr(mem, '>') ? strchr(mem, '>') : mem, " file=");
            }
            free(x);
            free(p);
        }
        closedir(d);
    }
    /* and their backing chains */
    for (size_t i = 0; i < n_named; i++) {
        char *argv[] = {"qemu-img", "info", "-U", "--backing-chain", "--output=json", named[i], NULL};
        struct qs_proc_result res = {0};
        struct qs_error *err = NULL;
        struct qmp_reply *r;

        if (!qt_exists(named[i])) {
            char *t = qs_asprintf("%s  missing: %s (named by qsnap's metadata)\n", report, named[i]);
            free(report);
            report = t;
            continue;
        }
        OK(qs_proc_run(argv, TOOL_TIMEOUT_MS, 0, &res, &err));
        if (res.status != 0) {
            char *t = qs_asprintf("%s  broken chain under %s: %s\n", report, named[i], res.errout);
            free(report);
            report = t;
            qs_proc_result_release(&res);
            continue;
        }
        r = qmp_reply_parse(res.out, &err);
        assert_non_null(r);
        for (size_t k = 0; k < qmp_value_array_len(qmp_reply_value(r)); k++) {
            const char *file = qmp_value_get_string(qmp_value_array_at(qmp_reply_value(r), k), "filename");
            char *abs = file ? resolved(file) : NULL;
            if (abs && !strv_has(used, abs)) {
                used = qs_xrealloc(used, (n_used + 2) * sizeof(*used));
                used[n_used++] = abs;
                used[n_used] = NULL;
            } else {
                free(abs);
            }
        }
        qmp_reply_free(r);
        qs_proc_result_release(&res);
    }
    for (size_t i = 0; i < n_named; i++) {
        char *abs = resolved(named[i]);
        if (!strv_has(used, abs)) {
            used = qs_xrealloc(used, (n_used + 2) * sizeof(*used));
            used[n_used++] = abs;
            used[n_used] = NULL;
        } else {
            free(abs);
        }
    }
    /* what else is in the VM's directory */
    assert_non_null(d = opendir(dir));
    while ((de = readdir(d))) {
        struct stat st;
        char *p = qs_asprintf("%s/%s", dir, de->d_name), *abs;
        if (lstat(p, &st) < 0 || !S_ISREG(st.st_mode) || strcmp(de->d_name, "qemu.log") == 0 ||
            strv_has((char *const *)allowed, de->d_name)) {
            free(p);
            continue;
        }
        abs = resolved(p);
        if (!strv_has(used, abs)) {
            char *t = qs_asprintf("%s  orphan: %s (neither the VM nor a snapshot uses it)\n", report, p);
            free(report);
            report = t;
        }
        free(abs);
        free(p);
    }
    closedir(d);
    if (*report) {
        char *out = QSNAP_OK(f, "snapshot-list", "vm", "--tree");
        print_error("files of the VM's directory against qsnap's metadata:\n%sused:\n", report);
        for (size_t i = 0; i < n_used; i++)
            print_error("  %s\n", used[i]);
        print_error("snapshots:\n%s\n", out);
        free(out);
    }
    assert_string_equal(report, "");
    qs_strv_free(named);
    qs_strv_free(used);
    free(snapdir);
    free(report);
}

/* ------------------------------------------------------------------------------------------------ */
/* qsnap-fault held after a step. */

#define FAULT_HELD_MS 120000

void qt_fault_hold(struct qt_fixture *f, const char *at)
{
    char *log = qt_path_in(f, "fault-held.log"), *release = qt_path_in(f, "fault-release");

    unlink(log);
    unlink(release);
    setenv("QSNAP_FAULT_PAUSE_AT", at, 1);
    setenv("QSNAP_FAULT_LOG", log, 1);
    setenv("QSNAP_FAULT_PAUSE_UNTIL", release, 1);
    free(log);
    free(release);
}

void qt_fault_wait_held(struct qt_fixture *f, long at)
{
    char *log = qt_path_in(f, "fault-held.log"), *text = NULL;
    int64_t deadline = qs_now_ms() + FAULT_HELD_MS;
    long lines = 0;

    for (;;) {
        free(text);
        text = qt_exists(log) ? qt_slurp(log) : NULL;
        lines = 0;
        for (const char *p = text; p && (p = strchr(p, '\n')); p++)
            lines++;
        if (lines >= at || qs_now_ms() >= deadline)
            break;
        usleep(10 * 1000);
    }
    if (lines < at)
        fail_msg("qsnap-fault did not reach step %ld within %d ms (steps so far:\n%s)", at, FAULT_HELD_MS,
                 text ? text : "");
    free(text);
    free(log);
}

void qt_fault_release(struct qt_fixture *f)
{
    char *release = qt_path_in(f, "fault-release");
    int fd = open(release, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);

    assert_true(fd >= 0);
    close(fd);
    unsetenv("QSNAP_FAULT_PAUSE_AT");
    unsetenv("QSNAP_FAULT_LOG");
    unsetenv("QSNAP_FAULT_PAUSE_UNTIL");
    free(release);
}

struct qmp_client *qt_clone_client(struct qt_fixture *f, const char *name)
{
    struct qs_error *err = NULL;
    char *sock = qs_asprintf("%s/run/%s.qmp", f->root, name);
    struct qmp_client *c = qmp_client_connect(sock, NULL, &err);

    qt_check(c ? 0 : -1, &err, "connect to the clone", __FILE__, __LINE__);
    free(sock);
    return c;
}
