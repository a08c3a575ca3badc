/* test_common.c: unit tests for common/: errors, the capped buffer, name checks, atomic files, processes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qs_buf.h"
#include "qs_error.h"
#include "qs_file.h"
#include "qs_proc.h"
#include "qs_util.h"

static void test_error_first_wins(void **state)
{
    struct qs_error *err = NULL;
    (void)state;
    qs_error_set(&err, QS_ERR_NOTFOUND, "snapshot '%s' not found", "s1");
    qs_error_set(&err, QS_ERR_INVALID, "second");
    assert_int_equal(err->code, QS_ERR_NOTFOUND);
    assert_string_equal(err->message, "snapshot 's1' not found");
    qs_error_prefix(&err, "disk '%s'", "vda");
    assert_string_equal(err->message, "disk 'vda': snapshot 's1' not found");
    assert_string_equal(qs_error_code_name(err->code), "not-found");
    qs_error_clear(&err);
    assert_null(err);
    qs_error_set(NULL, QS_ERR_IO, "ignored"); /* NULL err is allowed */
    qs_error_set_qmp(&err, "GenericError", "boom");
    assert_int_equal(err->code, QS_ERR_QEMU);
    assert_string_equal(err->qmp_class, "GenericError");
    qs_error_free(err);
    qs_error_free(NULL);
}

static void test_buf_cap(void **state)
{
    struct qs_buf b;
    char *s;
    size_t len;
    (void)state;
    qs_buf_init(&b, 8);
    assert_int_equal(qs_buf_adds(&b, "abcd"), 0);
    assert_int_equal(qs_buf_addf(&b, "%d", 123), 0);
    assert_string_equal(b.data, "abcd123");
    assert_int_equal(qs_buf_adds(&b, "xy"), -1);
    assert_true(b.toobig);
    assert_string_equal(b.data, "abcd123"); /* a refused append adds nothing */
    qs_buf_consume(&b, 2);
    assert_string_equal(b.data, "cd123");
    s = qs_buf_detach(&b, &len);
    assert_string_equal(s, "cd123");
    assert_int_equal(len, 5);
    free(s);
    assert_null(b.data);
    qs_buf_release(&b);
}

static void test_name_check(void **state)
{
    static const char *const bad[] = {"", "a/b", "..", ".hidden", "tab\there", "del\x7f", "\xff\xfe",
                                      "\xc0\xaf" /* overlong '/' */, "\xed\xa0\x80" /* surrogate */};
    struct qs_error *err = NULL;
    char longname[QS_NAME_MAX + 2];
    (void)state;
    assert_int_equal(qs_name_check("snap 1", "snapshot", &err), 0);
    assert_int_equal(qs_name_check("Über-ß 快照", "snapshot", &err), 0);
    assert_null(err);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(qs_name_check(bad[i], "snapshot", &err), -1);
        assert_int_equal(err->code, QS_ERR_INVALID);
        qs_error_clear(&err);
    }
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    assert_int_equal(qs_name_check(longname, "domain", &err), -1);
    qs_error_clear(&err);
}

static void test_file_atomic(void **state)
{
    char dir[] = "/tmp/qs-test-XXXXXX";
    struct qs_error *err = NULL;
    char *data = NULL;
    size_t len = 0;
    struct stat st;
    int dfd;
    (void)state;
    assert_non_null(mkdtemp(dir));
    dfd = open(dir, O_RDONLY | O_DIRECTORY);
    assert_true(dfd >= 0);
    assert_int_equal(qs_file_write_atomic(dfd, "a.xml", "one", 3, 0600, &err), 0);
    assert_int_equal(qs_file_write_atomic(dfd, "a.xml", "two!", 4, 0600, &err), 0);
    assert_int_equal(fstatat(dfd, "a.xml", &st, 0), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(fstatat(dfd, "a.xml.tmp", &st, 0), -1); /* no temporary left */
    assert_int_equal(qs_file_read(dfd, "a.xml", 100, &data, &len, &err), 0);
    assert_string_equal(data, "two!");
    free(data);
    assert_int_equal(qs_file_read(dfd, "a.xml", 3, &data, &len, &err), -1);
    assert_int_equal(err->code, QS_ERR_TOOBIG);
    qs_error_clear(&err);
    assert_int_equal(qs_file_read(dfd, "missing", 3, &data, &len, &err), -1);
    assert_int_equal(err->code, QS_ERR_NOTFOUND);
    qs_error_clear(&err);
    assert_int_equal(qs_file_remove(dfd, "a.xml", &err), 0);
    close(dfd);
    {
        char *sub = qs_asprintf("%s/x/y", dir);
        assert_int_equal(qs_dir_create(sub, 0700, &err), 0);
        assert_int_equal(stat(sub, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0700);
        rmdir(sub);
        free(sub);
        sub = qs_asprintf("%s/x", dir);
        rmdir(sub);
        free(sub);
    }
    rmdir(dir);
}

static void test_proc(void **state)
{
    struct qs_proc_result res = {0};
    struct qs_error *err = NULL;
    char *echo[] = {"sh", "-c", "printf out; printf 'err\\n' >&2; exit 3", NULL};
    char *sleeper[] = {"sleep", "600", NULL};
    char *missing[] = {"qsnap-no-such-program", NULL};
    int64_t t0;
    (void)state;
    assert_int_equal(qs_proc_run(echo, 5000, 0, &res, &err), 0);
    assert_int_equal(res.status, 3);
    assert_string_equal(res.out, "out");
    assert_string_equal(res.errout, "err");
    qs_proc_result_release(&res);
    t0 = qs_now_ms();
    assert_int_equal(qs_proc_run(sleeper, 100, 0, &res, &err), -1);
    assert_int_equal(err->code, QS_ERR_TIMEOUT);
    assert_true(qs_now_ms() - t0 < 60000); /* killed at its deadline, long before its 600 s */
    qs_error_clear(&err);
    assert_int_equal(qs_proc_run(missing, 1000, 0, &res, &err), -1);
    assert_int_equal(err->code, QS_ERR_NOTFOUND);
    qs_error_clear(&err);
}

/* A watcher sees stdout as it comes, and stops the child when it says so. */
struct watch_seen {
    size_t calls, bytes, stop_after;
};

static int watch_count(void *opaque, const char *data, size_t len)
{
    struct watch_seen *w = opaque;
    (void)data;
    w->calls++;
    w->bytes += len;
    return w->stop_after && w->bytes >= w->stop_after;
}

static void test_proc_watch(void **state)
{
    struct qs_proc_result res = {0};
    struct qs_error *err = NULL;
    struct watch_seen w = {0};
    char *talker[] = {"sh", "-c", "printf one; sleep 0.05; printf two", NULL};
    char *endless[] = {"sh", "-c", "while :; do printf x; sleep 0.01; done", NULL};
    int64_t t0;
    (void)state;
    assert_int_equal(qs_proc_run_watch(talker, 5000, 0, watch_count, &w, &res, &err), 0);
    assert_int_equal(res.status, 0);
    assert_string_equal(res.out, "onetwo");
    assert_int_equal(w.bytes, 6);
    assert_true(w.calls >= 2); /* seen while it ran, not at its end */
    qs_proc_result_release(&res);
    w = (struct watch_seen){.stop_after = 3};
    t0 = qs_now_ms();
    assert_int_equal(qs_proc_run_watch(endless, 10000, 0, watch_count, &w, &res, &err), -1);
    assert_int_equal(err->code, QS_ERR_CANCELLED); /* not its 10 s deadline's QS_ERR_TIMEOUT */
    assert_true(qs_now_ms() - t0 < 60000);
    qs_error_clear(&err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_first_wins), cmocka_unit_test(test_buf_cap),
        cmocka_unit_test(test_name_check),       cmocka_unit_test(test_file_atomic),
        cmocka_unit_test(test_proc),             cmocka_unit_test(test_proc_watch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
