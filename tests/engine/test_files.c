/* test_files.c: what a domain's state needs when a linked clone elsewhere is built on its images - the clone's
 * chain counts as needed, so the source's garbage never takes what the clone reads (label unit; qemu-img). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "files.h"
#include "qs_proc.h"
#include "qs_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char *tmp;

static void img(const char *path, const char *backing)
{
    char *argv[] = {"qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", (char *)backing, (char *)path,
                    NULL};
    char *plain[] = {"qemu-img", "create", "-q", "-f", "qcow2", (char *)path, "16M", NULL};
    struct qs_proc_result res = {0};
    struct qs_error *err = NULL;

    assert_int_equal(qs_proc_run(backing ? argv : plain, 30000, 0, &res, &err), 0);
    assert_int_equal(res.status, 0);
    qs_proc_result_release(&res);
}

static void define(struct engine *e, const char *name, const char *disk)
{
    struct qs_error *err = NULL;
    char *xml = qs_asprintf("<domain type='qemu'>\n  <name>%s</name>\n  <uuid>%s</uuid>\n"
                            "  <memory unit='KiB'>131072</memory>\n"
                            "  <os>\n    <type arch='x86_64' machine='pc'>hvm</type>\n  </os>\n  <devices>\n"
                            "    <disk type='file' device='disk'>\n      <driver name='qemu' type='qcow2'/>\n"
                            "      <source file='%s'/>\n      <target dev='vda' bus='virtio'/>\n    </disk>\n"
                            "  </devices>\n</domain>\n",
                            name, strcmp(name, "src") == 0 ? "00000000-0000-4000-8000-000000000001"
                                                           : "00000000-0000-4000-8000-000000000002", disk);
    if (engine_domain_define(e, xml, NULL, NULL, &err) < 0)
        fail_msg("define %s: %s", name, err->message);
    free(xml);
}

static bool has(char *const *v, const char *s)
{
    for (size_t i = 0; v && v[i]; i++)
        if (strcmp(v[i], s) == 0)
            return true;
    return false;
}

static void test_clone_chain_needed(void **state)
{
    struct qs_error *err = NULL;
    char *root = qs_asprintf("%s/root", tmp), *a = qs_asprintf("%s/a", tmp), *b = qs_asprintf("%s/b", tmp);
    char *base = qs_asprintf("%s/base.qcow2", a), *mid = qs_asprintf("%s/mid.qcow2", a);
    char *top = qs_asprintf("%s/top.qcow2", a), *fresh = qs_asprintf("%s/fresh.qcow2", a);
    char *clone = qs_asprintf("%s/clone.qcow2", b), **before = NULL, **after = NULL, **garbage, **users;
    struct engine_options o = {.root = root};
    struct engine *e;
    struct md_domain *now, *next;
    (void)state;

    assert_int_equal(mkdir(a, 0700), 0);
    assert_int_equal(mkdir(b, 0700), 0);
    img(base, NULL);
    img(mid, base);
    img(top, mid);
    img(fresh, base);
    img(clone, mid); /* a linked clone in a directory of its own, on the source's middle overlay */
    assert_non_null(e = engine_new(&o, &err));
    define(e, "src", top);
    define(e, "cl", clone);
    assert_non_null(now = engine_domain_load(e, "src", &err));
    assert_int_equal(files_needed(e, "src", NULL, now, NULL, &before, &err), 0);
    assert_true(has(before, top) && has(before, mid) && has(before, base));
    assert_true(has(before, clone)); /* the clone's chain is the source's business too */
    /* the source moves to a new overlay on the base (as a revert does): its old top goes, the middle stays */
    define(e, "src", fresh);
    assert_non_null(next = engine_domain_load(e, "src", &err));
    assert_int_equal(files_needed(e, "src", NULL, next, NULL, &after, &err), 0);
    garbage = files_garbage(before, NULL, after, NULL);
    assert_true(has(garbage, top));
    assert_false(has(garbage, mid));
    assert_false(has(garbage, base));
    users = files_users(e, "src", mid);
    assert_non_null(users[0]);
    assert_string_equal(users[0], "cl");
    assert_null(users[1]);
    qs_strv_free(users);
    users = files_users(e, "src", top);
    assert_null(users[0]);
    qs_strv_free(users);
    qs_strv_free(garbage);
    qs_strv_free(before);
    qs_strv_free(after);
    md_domain_free(now);
    md_domain_free(next);
    engine_free(e);
    free(root), free(a), free(b), free(base), free(mid), free(top), free(fresh), free(clone);
}

static int setup(void **state)
{
    char tmpl[] = "/tmp/qsnap-files-XXXXXX";
    (void)state;
    tmp = qs_xstrdup(mkdtemp(tmpl));
    return 0;
}

static int teardown(void **state)
{
    char *argv[] = {"rm", "-rf", tmp, NULL};
    struct qs_proc_result res = {0};
    (void)state;
    if (!getenv("QSNAP_KEEP_TMP"))
        qs_proc_run(argv, 30000, 0, &res, NULL);
    qs_proc_result_release(&res);
    free(tmp);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_clone_chain_needed, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
