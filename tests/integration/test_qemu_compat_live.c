/* test_qemu_compat_live.c: qsnap on whichever QEMU runs the VM - `version --domain` and the features it
 * detected, memory files through file: + add-fd where QEMU has it (no deprecation warning), the save file's
 * version 2 header and version 1 files still restoring, and - when the test run has two QEMU versions (the
 * QEMU 10 pass of scripts/test: QEMU 10 first in PATH, the system's 7.2 in /usr/bin) - a state saved under
 * 7.2 restored under 10.0, and one saved under 10.0 refused by 7.2 with the reason (integration). */
#include "qsnap_test.h"

#include "qs_proc.h"
#include "qs_util.h"

#include <endian.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SYSTEM_QEMU "/usr/bin/qemu-system-x86_64"

static bool version_at_least(struct qmp_client *c, int major, int minor)
{
    int ma = 0, mi = 0;

    qmp_client_version_num(c, &ma, &mi, NULL);
    return ma > major || (ma == major && mi >= minor);
}

/* "QEMU emulator version X.Y.Z ..." of BIN's --version, or NULL. Caller frees. */
static char *binary_version(const char *bin)
{
    struct qs_proc_result res = {0};
    struct qs_error *err = NULL;
    char *argv[] = {(char *)bin, "--version", NULL}, *v = NULL, *p;

    if (qs_proc_run(argv, 30000, 0, &res, &err) < 0) {
        qs_error_free(err);
        return NULL;
    }
    if (res.status == 0 && (p = strstr(res.out, "version ")))
        v = qs_xstrndup(p + 8, strcspn(p + 8, " \n"));
    qs_proc_result_release(&res);
    return v;
}

/* The run log of a QEMU qsnap started: ROOT/run/vm.log. Caller frees. */
static char *daemon_log(struct qt_fixture *f)
{
    char *path = qs_asprintf("%s/run/vm.log", f->root), *text = qt_exists(path) ? qt_slurp(path) : qs_xstrdup("");

    free(path);
    return text;
}

/* qsnap restore FILE: the guest counts on in the QEMU qsnap started, whose log has no deprecation warning
 * (file: + add-fd where QEMU has it: QEMU 9.1+ warns on every fd: migration to a file). */
static void restore_runs(struct qt_fixture *f, const char *file)
{
    struct qmp_client *c;
    char *log;

    free(QSNAP_OK(f, "restore", file));
    c = qt_daemon_client(f);
    qt_client_counter_advances(c);
    qmp_client_free(c);
    log = daemon_log(f);
    assert_null(strstr(log, "deprecated"));
    free(log);
}

static uint32_t be32_at(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return be32toh(v);
}

/* version, features, the header, no deprecation warning; a version 1 file made from it restores too */
static void test_version_features_and_header(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    struct qs_error *err = NULL;
    struct qmp_client *h = qh_vm_qmp(f->vm);
    char *out, *want, *save = qt_path_in(f, "vm.save"), *v1 = qt_path_in(f, "vm.v1"), *data, *version;
    bool mapped_ram;
    unsigned char head[40];
    uint32_t name_len, xml_len, writer_len;
    uint64_t off_v2, off_v1;
    struct stat st;
    int fd, fd1;

    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    qt_attach(f);
    /* the harness's client goes with the QEMU the save ends: what is asked of it later is kept now */
    version = qs_xstrdup(qmp_client_version(h));
    mapped_ram = version_at_least(h, 9, 0);
    out = QSNAP_OK(f, "version", "--domain", "vm");
    want = qs_asprintf("Compiled against library: qsnap %s\nUsing library: qsnap %s\nUsing API: QEMU %s\n"
                       "Running hypervisor: QEMU %s\n", QSNAP_VERSION, QSNAP_VERSION, QSNAP_VERSION,
                       qmp_client_version(h));
    assert_string_equal(out, want);
    free(out), free(want);
    out = QSNAP_OK(f, "version", "--domain", "vm", "--features");
    print_message("%s", out);
    qt_assert_contains(out, " background-snapshot");
    /* what qsnap found in QEMU's schema and capabilities against QEMU's own changelog */
    assert_int_equal(strstr(out, " file-migration") != NULL, version_at_least(h, 8, 2));
    assert_int_equal(strstr(out, " mapped-ram") != NULL, version_at_least(h, 9, 0));
    assert_int_equal(strstr(out, " direct-io") != NULL, version_at_least(h, 9, 1));
    assert_int_equal(strstr(out, " background-snapshot-keeps-paused") != NULL, version_at_least(h, 9, 0));
    free(out);
    qt_qsnap_fail(f, "Domain not found", "version", "--domain", "nosuchvm", (char *)NULL);

    /* save: the header names the QEMU and its machine type */
    free(QSNAP_OK(f, "save", "vm", save));
    OK(qh_vm_wait_exit(f->vm, 10000, NULL, &err));
    qt_qsnap_fail(f, "is not running", "version", "--domain", "vm", (char *)NULL);
    assert_true((fd = open(save, O_RDONLY | O_CLOEXEC)) >= 0);
    assert_int_equal(pread(fd, head, sizeof(head), 0), (ssize_t)sizeof(head));
    assert_memory_equal(head, "QSNAPSAV", 8);
    assert_int_equal(be32_at(head + 8), 2);
    name_len = be32_at(head + 24), xml_len = be32_at(head + 28), writer_len = be32_at(head + 32);
    memcpy(&off_v2, head + 16, 8);
    off_v2 = be64toh(off_v2);
    data = qs_xcalloc(1, writer_len + 1);
    assert_int_equal(pread(fd, data, writer_len, 40 + name_len + xml_len), (ssize_t)writer_len);
    want = qs_asprintf("qemu=%s\nmachine=pc-i440fx-", version);
    assert_true(qs_str_has_prefix(data, want));
    free(want), free(data);

    /* mapped-ram (RAM at fixed file offsets, written by parallel channels) wherever QEMU has it */
    print_message("save file flags 0x%x\n", be32_at(head + 12));
    assert_int_equal((be32_at(head + 12) & 2) != 0, mapped_ram);
    if (be32_at(head + 12) & 2) {
        /* version 1 files hold plain streams only: restore this one as it is */
        close(fd);
        restore_runs(f, save);
        free(save), free(v1), free(version);
        return;
    }
    /* the same stream behind a version 1 header (qsnap before this one wrote those) */
    off_v1 = (32 + name_len + xml_len + 4095) / 4096 * 4096;
    assert_int_equal(fstat(fd, &st), 0);
    data = qs_xcalloc(1, (size_t)st.st_size);
    assert_int_equal(pread(fd, data, (size_t)st.st_size, 0), st.st_size);
    assert_true((fd1 = open(v1, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) >= 0);
    {
        unsigned char *hdr = qs_xcalloc(1, (size_t)off_v1);
        uint32_t one = htobe32(1);
        uint64_t o = htobe64(off_v1);
        memcpy(hdr, data, 32);
        memcpy(hdr + 8, &one, 4);
        memcpy(hdr + 16, &o, 8);
        memcpy(hdr + 32, data + 40, name_len + xml_len);
        assert_int_equal(write(fd1, hdr, (size_t)off_v1), (ssize_t)off_v1);
        assert_int_equal(write(fd1, data + off_v2, (size_t)(st.st_size - (off_t)off_v2)),
                         (ssize_t)(st.st_size - (off_t)off_v2));
        free(hdr);
    }
    close(fd1);
    close(fd);
    free(data);

    restore_runs(f, v1);
    free(QSNAP_OK(f, "destroy", "vm"));
    restore_runs(f, save);
    free(save), free(v1), free(version);
}

/* ---- two QEMU versions: the older is the system's, the newer first in PATH ----------------------------- */

static char *old_path_env, *saved_path;

/* PATH with /usr/bin first: the harness starts the system's QEMU. */
static int setup_old(void **state)
{
    int r;

    saved_path = qs_xstrdup(getenv("PATH"));
    setenv("PATH", old_path_env, 1);
    r = qt_setup(state);
    setenv("PATH", saved_path, 1);
    free(saved_path);
    return r;
}

static bool two_versions(char **newer, char **older)
{
    char *sys = binary_version(SYSTEM_QEMU), *path = binary_version("qemu-system-x86_64");
    bool two = sys && path && strcmp(sys, path) != 0;

    *older = sys;
    *newer = path;
    return two;
}

/* Skips (by design) the calling test unless two QEMU versions are there; in scripts/test's QEMU 10 pass
 * ($QSNAP_QEMU10_PASS=1) they must be. Frees *NEWER, *OLDER and TO_FREE before it skips. */
#define NEED_TWO_VERSIONS(newer, older, to_free)                                                                 \
    do {                                                                                                         \
        if (!two_versions(newer, older)) {                                                                       \
            free(*(newer)), free(*(older)), free(to_free);                                                       \
            if (getenv("QSNAP_QEMU10_PASS"))                                                                     \
                fail_msg("the QEMU 10 pass has one QEMU version only: PATH's is " SYSTEM_QEMU "'s");            \
            qt_skip_by_design("needs a second QEMU version first in PATH (scripts/test's QEMU 10 pass has one)"); \
        }                                                                                                        \
    } while (0)

static void test_old_state_restores_on_new(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    struct qs_error *err = NULL;
    char *save = qt_path_in(f, "old.save"), *newer = NULL, *older = NULL;
    struct qmp_client *c;
    uint64_t before;

    NEED_TWO_VERSIONS(&newer, &older, save);
    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    assert_true(qs_str_has_prefix(qmp_client_version(qh_vm_qmp(f->vm)), older));
    qt_attach(f);
    qt_disk_write(f, "vdb", 0x5a, 0);
    free(QSNAP_OK(f, "save", "vm", save));
    OK(qh_vm_wait_exit(f->vm, 10000, NULL, &err));
    /* the recorded command line says "qemu-system-x86_64": PATH finds the newer QEMU now */
    free(QSNAP_OK(f, "restore", save));
    c = qt_daemon_client(f);
    print_message("state of QEMU %s restored under QEMU %s\n", older, qmp_client_version(c));
    assert_string_equal(qmp_client_version(c), newer);
    before = qt_client_counter(c, true);
    qt_client_counter_advances(c);
    assert_true(before > 0);
    /* the newer QEMU runs the older machine type the state was saved from */
    {
        struct qmp_args *a = qmp_args_new();
        struct qmp_reply *r = NULL;
        char *want = qs_asprintf("pc-i440fx-%.*s-machine", (int)strcspn(strchr(older, '.') + 1, ".") +
                                 (int)(strchr(older, '.') - older) + 1, older);
        qmp_args_set_str(a, "path", "/machine");
        qmp_args_set_str(a, "property", "type");
        OK(qmp_client_execute(c, "qom-get", a, &r, &err));
        print_message("machine type now: %s\n", qmp_value_string(qmp_reply_value(r)));
        assert_string_equal(qmp_value_string(qmp_reply_value(r)), want);
        qmp_reply_free(r);
        qmp_args_free(a);
        free(want);
    }
    qmp_client_free(c);
    assert_int_equal(qt_image_is(qh_vm_disk_path(f->vm, "vdb"), "qcow2", 0x5a, 0), 1);
    free(QSNAP_OK(f, "destroy", "vm"));
    free(save), free(newer), free(older);
}

static void test_new_state_refused_by_old(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    struct qs_error *err = NULL;
    char *save = qt_path_in(f, "new.save"), *newer = NULL, *older = NULL, *xml, *xml2, *p, *errout = NULL;
    char *path_xml;
    size_t len;
    int rc;

    NEED_TWO_VERSIONS(&newer, &older, save);
    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    qt_attach(f);
    free(QSNAP_OK(f, "save", "vm", save));
    OK(qh_vm_wait_exit(f->vm, 10000, NULL, &err));
    /* the user goes back to the system's QEMU: the domain's recorded binary becomes /usr/bin's */
    path_xml = qs_asprintf("%s/qemu/vm.xml", f->root);
    xml = qt_slurp(path_xml);
    p = strstr(xml, "<qsnap:arg value='");
    assert_non_null(p);
    p += strlen("<qsnap:arg value='");
    len = strcspn(p, "'");
    xml2 = qs_asprintf("%.*s%s%s", (int)(p - xml), xml, SYSTEM_QEMU, p + len);
    {
        int fd = open(path_xml, O_WRONLY | O_TRUNC | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, xml2, strlen(xml2)), (ssize_t)strlen(xml2));
        close(fd);
    }
    rc = qt_qsnap_run(f, NULL, &errout, "restore", save, (char *)NULL);
    print_message("restore of a QEMU %s state under %s: %s", newer, older, errout);
    assert_int_equal(rc, 1);
    qt_assert_contains(errout, "error: ");
    qt_assert_contains(errout, newer);
    qt_assert_contains(errout, "machine type pc-i440fx-");
    free(errout);
    errout = QSNAP_OK(f, "domstate", "vm");
    assert_string_equal(errout, "shut off\n\n");
    free(errout);
    assert_true(qt_exists(save));
    free(xml), free(xml2), free(path_xml), free(save), free(newer), free(older);
}

static struct qt_fixture f1 = {.cfg = &qt_cfg_two_disks};
static struct qt_fixture f2 = {.cfg = &qt_cfg_two_disks};
static struct qt_fixture f3 = {.cfg = &qt_cfg_two_disks};

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_prestate_setup_teardown(test_version_features_and_header, qt_setup, qt_teardown, &f1),
        cmocka_unit_test_prestate_setup_teardown(test_old_state_restores_on_new, setup_old, qt_teardown, &f2),
        cmocka_unit_test_prestate_setup_teardown(test_new_state_refused_by_old, qt_setup, qt_teardown, &f3),
    };
    const char *path = getenv("PATH");
    int r;

    old_path_env = qs_asprintf("/usr/bin:%s", path ? path : "/bin");
    r = cmocka_run_group_tests(tests, NULL, NULL);
    free(old_path_env);
    return r;
}
