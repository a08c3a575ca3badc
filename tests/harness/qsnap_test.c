/* qsnap_test.c: cmocka helpers for integration tests that drive the qsnap binary against a harness VM. */
#include "qsnap_test.h"

#include "qs_file.h"
#include "qs_proc.h"
#include "qs_util.h"

#include <dirent.h>
#include <fcntl.h>
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
    f->qsnap = qs_asprintf("%s/cli/qsnap", build);
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
    if (!f->vm)
        skip();
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
    return access("/usr/share/libvirt/schemas/domainsnapshot.rng", R_OK) == 0;
}

void qt_validate_all(struct qt_fixture *f, int want)
{
    char *dir;
    DIR *d;
    struct dirent *de;
    int checked = 0;

    if (!qt_schema_available())
        return;
    dir = qs_asprintf("%s/snapshot/vm", f->root);
    assert_non_null(d = opendir(dir));
    while ((de = readdir(d))) {
        char *path, *argv[] = {"virt-xml-validate", NULL, "domainsnapshot", NULL};
        struct qs_proc_result res = {0};
        struct qs_error *err = NULL;
        if (!qs_str_has_suffix(de->d_name, ".xml"))
            continue;
        path = qs_asprintf("%s/%s", dir, de->d_name);
        argv[1] = path;
        OK(qs_proc_run(argv, TOOL_TIMEOUT_MS, 0, &res, &err));
        if (res.status != 0)
            print_error("%s: %s\n", path, res.errout);
        assert_int_equal(res.status, 0);
        qs_proc_result_release(&res);
        free(path);
        checked++;
    }
    closedir(d);
    free(dir);
    assert_int_equal(checked, want);
}

/* ------------------------------------------------------------------------------------------------ */
/* QEMU through any QMP client. */

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

void qt_assert_status(struct qmp_client *c, const char *want)
{
    char *s = qt_status_of(c);
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
    for (int i = 0; i < 100 && (a = qt_client_counter(c, false)) == 0; i++)
        usleep(100000);
    assert_true(a > 0);
    for (int i = 0; i < 100 && (b = qt_client_counter(c, false)) <= a; i++)
        usleep(50000);
    assert_true(b > a);
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
