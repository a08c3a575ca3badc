/* test_vmstate.c: an internal snapshot's vmstate read from its qcow2 file - written with qemu-io's vmstate
 * access, snapshotted with qemu-img, the table's size field set as savevm would, read back byte for byte
 * across clusters and zero holes; missing and ambiguous tags refused (label unit; qemu-img, qemu-io). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "qs_proc.h"
#include "qs_util.h"
#include "vmstate.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define KiB 1024u

static char *dir;

static void run(char *const argv[])
{
    struct qs_proc_result res = {0};
    struct qs_error *err = NULL;

    assert_int_equal(qs_proc_run(argv, 30000, 0, &res, &err), 0);
    if (res.status != 0)
        fail_msg("%s: %s", argv[0], res.errout);
    qs_proc_result_release(&res);
}

static uint64_t be(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

static void put_be(unsigned char *p, uint64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--, v >>= 8)
        p[i] = (unsigned char)v;
}

/* Sets the vmstate size of the first snapshot in IMG's table (both the 32-bit field and the 64-bit extra). */
static void set_vmstate_size(const char *img, uint64_t size)
{
    unsigned char h[72], e[48];
    int fd = open(img, O_RDWR);
    uint64_t table;

    assert_true(fd >= 0);
    assert_int_equal(pread(fd, h, sizeof(h), 0), (ssize_t)sizeof(h));
    table = be(h + 64, 8);
    assert_int_equal(pread(fd, e, sizeof(e), (off_t)table), (ssize_t)sizeof(e));
    assert_true(be(e + 36, 4) >= 8); /* version 3: extra data with the 64-bit size */
    put_be(e + 32, size, 4);
    put_be(e + 40, size, 8);
    assert_int_equal(pwrite(fd, e, sizeof(e), (off_t)table), (ssize_t)sizeof(e));
    close(fd);
}

static void test_vmstate_read(void **state)
{
    char *img = qs_asprintf("%s/a.qcow2", dir), *sz = qs_xstrdup("4M");
    char *create[] = {"qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", img, sz, NULL};
    /* two patterns, and a hole between them that no write touched */
    char *io[] = {"qemu-io", "-f", "qcow2", img, "-c", "write -b -P 0x5a 0 10k", "-c", "write -b -P 0xa5 16k 6k",
                  "-c", "write -P 0x77 0 64k", NULL};
    char *snap[] = {"qemu-img", "snapshot", "-c", "t1", img, NULL};
    char *after[] = {"qemu-io", "-f", "qcow2", img, "-c", "write -b -P 0x11 0 22k", NULL};
    struct qs_error *err = NULL;
    struct vmstate *v = NULL;
    unsigned char *buf = qs_xmalloc(22 * KiB);
    (void)state;

    run(create);
    run(io);
    run(snap);
    run(after); /* the active layer moves on: the snapshot's clusters do not */
    /* as qemu-img made it, the tag holds no vmstate */
    assert_int_equal(vmstate_open(img, "t1", &v, &err), 0);
    assert_null(v);
    set_vmstate_size(img, 22 * KiB);
    assert_int_equal(vmstate_open(img, "t1", &v, &err), 0);
    assert_non_null(v);
    assert_int_equal(vmstate_size(v), 22 * KiB);
    assert_int_equal(vmstate_read(v, buf, 0, 22 * KiB, &err), 0);
    for (size_t i = 0; i < 22 * KiB; i++) {
        unsigned char want = i < 10 * KiB ? 0x5a : i < 16 * KiB ? 0x00 : 0xa5;
        if (buf[i] != want)
            fail_msg("byte %zu: 0x%02x, want 0x%02x", i, buf[i], want);
    }
    /* a read across a cluster boundary, at an odd place */
    assert_int_equal(vmstate_read(v, buf, 4095, 3, &err), 0);
    assert_true(buf[0] == 0x5a && buf[2] == 0x5a);
    assert_int_equal(vmstate_read(v, buf, 22 * KiB - 1, 2, &err), -1);
    assert_int_equal(err->code, QS_ERR_INVALID);
    qs_error_clear(&err);
    /* the whole of it to a file */
    {
        char *out = qs_asprintf("%s/vm.bin", dir);
        int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        unsigned char *back = qs_xmalloc(22 * KiB);
        assert_int_equal(vmstate_copy(v, fd, NULL, &err), 0);
        close(fd);
        fd = open(out, O_RDONLY);
        assert_int_equal(read(fd, back, 22 * KiB), (ssize_t)(22 * KiB));
        close(fd);
        assert_int_equal(vmstate_read(v, buf, 0, 22 * KiB, &err), 0);
        assert_memory_equal(back, buf, 22 * KiB);
        free(back);
        free(out);
    }
    vmstate_free(v);
    free(buf);
    free(img);
    free(sz);
}

static void test_vmstate_refused(void **state)
{
    char *img = qs_asprintf("%s/b.qcow2", dir), *raw = qs_asprintf("%s/c.raw", dir);
    char *create[] = {"qemu-img", "create", "-q", "-f", "qcow2", img, "1M", NULL};
    char *mkraw[] = {"qemu-img", "create", "-q", "-f", "raw", raw, "1M", NULL};
    char *twice[] = {"qemu-img", "snapshot", "-c", "dup", img, NULL};
    struct qs_error *err = NULL;
    struct vmstate *v = NULL;
    (void)state;

    run(create);
    run(mkraw);
    assert_int_equal(vmstate_open(img, "nope", &v, &err), -1);
    assert_int_equal(err->code, QS_ERR_NOTFOUND);
    qs_error_clear(&err);
    run(twice);
    run(twice); /* qemu-img lets a name in twice */
    assert_int_equal(vmstate_open(img, "dup", &v, &err), -1);
    assert_int_equal(err->code, QS_ERR_INVALID);
    qs_error_clear(&err);
    assert_int_equal(vmstate_open(raw, "x", &v, &err), -1);
    assert_int_equal(err->code, QS_ERR_INVALID);
    qs_error_clear(&err);
    assert_null(v);
    free(img);
    free(raw);
}

static int setup(void **state)
{
    char tmpl[] = "/tmp/qsnap-vmstate-XXXXXX";
    (void)state;
    dir = qs_xstrdup(mkdtemp(tmpl));
    return 0;
}

static int teardown(void **state)
{
    char *argv[] = {"rm", "-rf", dir, NULL};
    struct qs_proc_result res = {0};
    (void)state;
    qs_proc_run(argv, 30000, 0, &res, NULL);
    qs_proc_result_release(&res);
    free(dir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_vmstate_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vmstate_refused, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
