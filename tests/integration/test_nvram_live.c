/* test_nvram_live.c: UEFI variables kept with every snapshot, on a real OVMF boot under TCG (one boot: it is
 * slow). The UEFI shell's startup.nsh writes a variable, QsnapGen = "genN", every second; snapshots capture
 * it, reverts bring the old value back, --reset-nvram puts the firmware's template in place, a clone gets
 * the snapshot's variables as its own (label integration; Debian's ovmf package). */
#include "qsnap_test.h"

#include "qs_proc.h"
#include "qs_util.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define OVMF_CODE "/usr/share/OVMF/OVMF_CODE_4M.fd"
#define OVMF_VARS "/usr/share/OVMF/OVMF_VARS_4M.fd"
#define BOOT_TIMEOUT_S 600

static char *uefi_dir, *vars, *code_arg, *vars_arg, *fat_arg;
static const char *extra[8];
static const struct qh_disk disks[] = {{.id = "vda", .size = 16u << 20}};
static struct qh_vm_config cfg = {.mem_mb = 256, .disks = disks, .n_disks = 1, .extra_args = extra,
                                  .start_timeout_ms = 60000};

/* The value of QsnapGen in the variable store FILE (OVMF's authenticated variable format: a 60-byte header,
 * the UTF-16 name, the data): N of "genN" of the instance in state VAR_ADDED (0x3f), else - a copy taken
 * while the guest was replacing it, which the firmware resolves the same way - of the one in deleted
 * transition (0x3e); -1 when there is none. */
static long var_gen(const char *file)
{
    static const char name[] = "Q\0s\0n\0a\0p\0G\0e\0n\0\0\0";
    char *text = NULL;
    size_t len = 0;
    long best = -1, transition = -1;
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    struct stat st;

    if (fd < 0 || fstat(fd, &st) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    len = (size_t)st.st_size;
    text = qs_xmalloc(len + 1);
    if (read(fd, text, len) != (ssize_t)len)
        len = 0;
    close(fd);
    for (size_t i = 60; i + sizeof(name) - 1 < len; i++) {
        const unsigned char *h = (const unsigned char *)text + i - 60;
        unsigned data_size;
        if (memcmp(text + i, name, sizeof(name) - 1) != 0 || h[0] != 0xaa || h[1] != 0x55 ||
            (h[2] != 0x3f && h[2] != 0x3e))
            continue;
        data_size = h[36] | h[37] << 8 | h[38] << 16 | (unsigned)h[39] << 24;
        if (data_size > 3 && data_size < 32 && i + sizeof(name) - 1 + data_size <= len &&
            memcmp(text + i + sizeof(name) - 1, "gen", 3) == 0) {
            char v[32] = {0};
            memcpy(v, text + i + sizeof(name) - 1 + 3, data_size - 3);
            if (h[2] == 0x3f)
                best = strtol(v, NULL, 10);
            else
                transition = strtol(v, NULL, 10);
        }
    }
    free(text);
    return best >= 0 ? best : transition;
}

static long wait_gen(const char *file, long at_least, int timeout_s)
{
    long g = -1;
    for (int i = 0; i < timeout_s * 10 && (g = var_gen(file)) < at_least; i++)
        usleep(100 * 1000);
    if (g < at_least)
        print_error("%s: QsnapGen is %ld after %d s, wanted %ld\n", file, g, timeout_s, at_least);
    assert_true(g >= at_least);
    return g;
}

static char *slurp_len(const char *path, size_t *len)
{
    char *text = NULL;
    struct qs_error *err = NULL;
    int fd = open(path, O_RDONLY);
    struct stat st;

    assert_true(fd >= 0 && fstat(fd, &st) == 0);
    *len = (size_t)st.st_size;
    text = qs_xmalloc(*len + 1);
    assert_int_equal(read(fd, text, *len), (ssize_t)*len);
    close(fd);
    (void)err;
    return text;
}

static void assert_same_file(const char *a, const char *b)
{
    size_t la, lb;
    char *x = slurp_len(a, &la), *y = slurp_len(b, &lb);

    if (la != lb || memcmp(x, y, la) != 0)
        fail_msg("'%s' and '%s' differ", a, b);
    free(x);
    free(y);
}

static void test_uefi_variables(void **state)
{
    struct qt_fixture *f = uefi_dir ? qt_fixture_of(state) : NULL;
    char *dom, *s1, *e1, *x, *want, *clone_vars;
    long g, g1, ge;
    struct stat st;
    int64_t t0;

    if (!f)
        qt_skip_missing("OVMF's firmware is missing (package ovmf)");
    s1 = qs_asprintf("%s/snapshot/vm/s1.nvram", f->root);
    e1 = qs_asprintf("%s/snapshot/vm/e1.nvram", f->root);
    clone_vars = qt_path_in(f, "u1_VARS.fd");
    t0 = qs_now_ms();

    g = wait_gen(vars, 2, BOOT_TIMEOUT_S);
    print_message("OVMF booted to the shell and wrote QsnapGen=gen%ld in %lld ms\n", g, (long long)(qs_now_ms() - t0));
    qt_attach(f);
    /* the firmware recorded as libvirt does; its pflash is not a disk */
    dom = qt_domain_xml(f);
    qt_assert_contains(dom, "<loader readonly='yes' type='pflash'>" OVMF_CODE "</loader>");
    want = qs_asprintf("<nvram template='" OVMF_VARS "'>%s</nvram>", vars);
    qt_assert_contains(dom, want);
    free(want);
    assert_null(strstr(dom, "dev='vdb'"));
    assert_null(strstr(dom, "OVMF_VARS_4M.fd' bus"));
    free(dom);
    dom = qs_asprintf("%s/qemu/vm.xml", f->root);
    qt_validate_xml(dom, "domain");

    /* an internal snapshot: the variables copied beside its metadata */
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "s1"));
    assert_int_equal(stat(s1, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    g1 = var_gen(s1);
    assert_true(g1 >= 2);
    wait_gen(vars, g1 + 3, 120);
    /* in place: the RAM of the snapshot holds the flash, and QEMU writes it back as the guest resumes */
    free(QSNAP_OK(f, "snapshot-revert", "vm", "s1"));
    g = var_gen(vars);
    print_message("internal: captured gen%ld, after the revert the store holds gen%ld\n", g1, g);
    assert_true(g >= g1 && g <= g1 + 1);

    /* from shut off: the snapshot's variables go in place before QEMU starts and loads its RAM (paused, so
     * that QEMU writes nothing back: what the store holds is qsnap's doing) */
    wait_gen(vars, g1 + 3, 120);
    {
        struct qs_error *err = NULL;
        OK(qh_vm_stop(f->vm, 0, &err));
    }
    free(QSNAP_OK(f, "snapshot-revert", "vm", "s1", "--paused"));
    assert_same_file(vars, s1);
    print_message("from shut off: captured gen%ld, the store holds gen%ld\n", g1, var_gen(vars));
    {
        struct qmp_client *c = qt_daemon_client(f);
        char *status = qt_status_of(c);
        assert_string_not_equal(status, "running"); /* paused ("prelaunch" after a load into a -S start) */
        free(status);
        qt_exec(c, "cont");
        qmp_client_free(c);
    }

    /* an external disk-only snapshot; its revert stops QEMU and qsnap puts the variables back */
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "e1", "--disk-only"));
    ge = var_gen(e1);
    assert_true(ge >= g1);
    wait_gen(vars, ge + 2, 120);
    free(QSNAP_OK(f, "snapshot-revert", "vm", "e1"));
    assert_same_file(vars, e1);
    assert_int_equal(var_gen(vars), ge);
    print_message("external: captured gen%ld, back after the revert\n", ge);

    /* --reset-nvram: the template; refused for a snapshot whose RAM would bring the variables back */
    free(QSNAP_OK(f, "snapshot-revert", "vm", "e1", "--reset-nvram"));
    assert_same_file(vars, OVMF_VARS);
    qt_qsnap_fail(f, "snapshot 's1' holds memory", "snapshot-revert", "vm", "s1", "--reset-nvram", (char *)NULL);
    assert_same_file(vars, OVMF_VARS);

    /* a clone gets the snapshot's variables as its own file, which its command line opens */
    free(QSNAP_OK(f, "domain-clone", "vm", "e1", "u1"));
    assert_same_file(clone_vars, e1);
    x = qs_asprintf("%s/qemu/u1.xml", f->root);
    {
        char *cx = qt_slurp(x), *w = qs_asprintf("'>%s</nvram>", clone_vars), *a = qs_asprintf("file=%s", clone_vars);
        qt_assert_contains(cx, w);
        qt_assert_contains(cx, a);
        free(w), free(a), free(cx);
    }
    qt_validate_xml(x, "domain");
    free(x);

    /* the clone is built on the image holding s1's tag: s1 stays until it is gone; then its copy goes too */
    qt_qsnap_fail(f, "domain 'u1' is a linked clone", "snapshot-delete", "vm", "s1", (char *)NULL);
    free(QSNAP_OK(f, "undefine", "u1"));
    free(QSNAP_OK(f, "snapshot-delete", "vm", "s1"));
    assert_false(qt_exists(s1));
    assert_true(qt_exists(e1));
    print_message("UEFI test: %lld ms\n", (long long)(qs_now_ms() - t0));
    free(dom), free(s1), free(e1), free(clone_vars);
}

static int setup(void **state)
{
    char tmpl[] = "/tmp/qsnap-uefi-XXXXXX", *fat, *script;
    FILE *fp;
    struct qs_proc_result res = {0};

    if (access(OVMF_CODE, R_OK) < 0 || access(OVMF_VARS, R_OK) < 0)
        return 0; /* the test skips, or fails under $QSNAP_REQUIRE_QEMU=1 */
    uefi_dir = qs_xstrdup(mkdtemp(tmpl));
    vars = qs_asprintf("%s/vm_VARS.fd", uefi_dir);
    fat = qs_asprintf("%s/fat", uefi_dir);
    {
        char *argv[] = {"cp", OVMF_VARS, vars, NULL};
        assert_int_equal(qs_proc_run(argv, 10000, 0, &res, NULL), 0);
        qs_proc_result_release(&res);
    }
    assert_int_equal(mkdir(fat, 0700), 0);
    script = qs_asprintf("%s/startup.nsh", fat);
    assert_non_null(fp = fopen(script, "w"));
    fputs("echo qsnap-start\r\n"
          "for %a run (1 100000)\r\n"
          "  setvar QsnapGen -guid 6c2f7d4e-1b5a-4c39-9a51-0f2d3c4b5a69 -nv -bs =S\"gen%a\"\r\n"
          "  stall 1000000\r\n"
          "endfor\r\n",
          fp);
    fclose(fp);
    code_arg = qs_asprintf("if=pflash,format=raw,readonly=on,file=%s", OVMF_CODE);
    vars_arg = qs_asprintf("if=pflash,format=raw,file=%s", vars);
    fat_arg = qs_asprintf("file=fat:%s,format=raw,if=virtio,readonly=on", fat);
    extra[0] = "-drive", extra[1] = code_arg, extra[2] = "-drive", extra[3] = vars_arg;
    extra[4] = "-drive", extra[5] = fat_arg, extra[6] = NULL;
    free(fat);
    free(script);
    return qt_setup(state);
}

static int teardown(void **state)
{
    struct qt_fixture *f = *state;
    char *argv[] = {"rm", "-rf", uefi_dir, NULL};
    struct qs_proc_result res = {0};

    qt_kill_started(f); /* the QEMUs qsnap started for the reverts */
    qt_teardown(state);
    if (uefi_dir && !getenv("QSNAP_KEEP_TMP"))
        qs_proc_run(argv, 30000, 0, &res, NULL);
    qs_proc_result_release(&res);
    free(uefi_dir), free(vars), free(code_arg), free(vars_arg), free(fat_arg);
    uefi_dir = vars = code_arg = vars_arg = fat_arg = NULL;
    return 0;
}

/* ---- qcow2 variables: kept in the snapshot, as internal snapshots of their own image ---- */

static char *q_vars, *q_code_arg, *q_vars_arg;
static const char *q_extra[6];
static struct qh_vm_config q_cfg = {.disks = disks, .n_disks = 1, .extra_args = q_extra, .paused = true};

/* Writes PATTERN over the first 4 KiB of the qcow2 variables (QEMU off). */
static void vars_write(uint8_t pattern)
{
    qt_offline_write(q_vars, pattern, 0);
}

static bool vars_hold(uint8_t pattern)
{
    return qt_image_is(q_vars, "qcow2", pattern, 0) == 1;
}

/* QEMU never runs the firmware here (-S throughout): what the variables hold is qsnap's doing. */
static void test_qcow2_variables(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    struct qs_error *err = NULL;
    char *dom, *clone_vars = qt_path_in(f, "q1_VARS.qcow2"), *copy = qs_asprintf("%s/snapshot/vm/s1.nvram", f->root);

    qt_attach(f);
    dom = qt_domain_xml(f);
    qt_assert_contains(dom, "<qsnap:nvram format='qcow2'");
    free(dom);
    /* a paused VM's internal snapshot: the variables' image gets the tag too, and no copy is made */
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "s1"));
    assert_true(qt_image_has_tag(q_vars, "s1"));
    assert_false(qt_exists(copy));
    OK(qh_vm_stop(f->vm, 0, &err));
    vars_write(0xb2);
    /* from shut off: the tag is applied before QEMU starts (paused: the snapshot was) */
    free(QSNAP_OK(f, "snapshot-revert", "vm", "s1"));
    assert_true(vars_hold(0xa1));
    free(QSNAP_OK(f, "destroy", "vm"));
    /* shut off: a disk-only snapshot tags them with qemu-img; its revert applies the tag */
    vars_write(0xc3);
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "d1"));
    assert_true(qt_image_has_tag(q_vars, "d1"));
    vars_write(0xd4);
    free(QSNAP_OK(f, "snapshot-revert", "vm", "d1"));
    assert_true(vars_hold(0xc3));
    /* the template into the active state, the tags kept */
    free(QSNAP_OK(f, "snapshot-revert", "vm", "d1", "--reset-nvram"));
    {
        char *argv[] = {"qemu-img", "compare", "-q", "-f", "qcow2", "-F", "raw", q_vars, OVMF_VARS, NULL};
        struct qs_proc_result res = {0};
        OK(qs_proc_run(argv, 30000, 0, &res, &err));
        assert_int_equal(res.status, 0);
        qs_proc_result_release(&res);
    }
    assert_true(qt_image_has_tag(q_vars, "s1") && qt_image_has_tag(q_vars, "d1"));
    /* a clone: the variables of the snapshot, in an image of its own */
    free(QSNAP_OK(f, "domain-clone", "vm", "d1", "q1"));
    assert_int_equal(qt_image_is(clone_vars, "qcow2", 0xc3, 0), 1);
    assert_null(qt_backing_of(clone_vars));
    /* deletes take the tags with them */
    free(QSNAP_OK(f, "snapshot-delete", "vm", "s1"));
    assert_false(qt_image_has_tag(q_vars, "s1"));
    assert_true(qt_image_has_tag(q_vars, "d1"));
    free(clone_vars);
    free(copy);
}

static int q_setup(void **state)
{
    char tmpl[] = "/tmp/qsnap-uefiq-XXXXXX";
    struct qs_proc_result res = {0};

    if (access(OVMF_CODE, R_OK) < 0 || access(OVMF_VARS, R_OK) < 0)
        return 0;
    uefi_dir = qs_xstrdup(mkdtemp(tmpl));
    q_vars = qs_asprintf("%s/vm_VARS.qcow2", uefi_dir);
    {
        char *argv[] = {"qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", OVMF_VARS, q_vars, NULL};
        assert_int_equal(qs_proc_run(argv, 30000, 0, &res, NULL), 0);
        assert_int_equal(res.status, 0);
        qs_proc_result_release(&res);
    }
    vars_write(0xa1);
    q_code_arg = qs_asprintf("if=pflash,format=raw,readonly=on,file=%s", OVMF_CODE);
    q_vars_arg = qs_asprintf("if=pflash,format=qcow2,file=%s", q_vars);
    q_extra[0] = "-drive", q_extra[1] = q_code_arg, q_extra[2] = "-drive", q_extra[3] = q_vars_arg, q_extra[4] = NULL;
    return qt_setup(state);
}

static int q_teardown(void **state)
{
    teardown(state);
    free(q_vars), free(q_code_arg), free(q_vars_arg);
    q_vars = q_code_arg = q_vars_arg = NULL;
    return 0;
}

int main(void)
{
    static struct qt_fixture f = {.cfg = &cfg}, fq = {.cfg = &q_cfg};
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_prestate_setup_teardown(test_uefi_variables, setup, teardown, &f),
        cmocka_unit_test_prestate_setup_teardown(test_qcow2_variables, q_setup, q_teardown, &fq),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
