/* test_md_schema.c: every file qsnap writes validates against libvirt's RelaxNG schemas (virt-xml-validate). */
#include "md_test_util.h"

#include "md.h"
#include "qs_proc.h"
#include "qt_skip.h"

static bool have_validator(void)
{
    return access("/usr/share/libvirt/schemas/domainsnapshot.rng", R_OK) == 0 &&
           access("/usr/bin/virt-xml-validate", X_OK) == 0;
}

static void validate(const char *path, const char *schema)
{
    char *argv[] = { "virt-xml-validate", (char *)path, (char *)schema, NULL };
    struct qs_proc_result res;
    struct qs_error *err = NULL;
    if (qs_proc_run(argv, 60000, 0, &res, &err) < 0)
        fail_msg("virt-xml-validate: %s", err->message);
    if (res.status != 0)
        fail_msg("%s does not validate as %s: %s", path, schema, res.errout);
    qs_proc_result_release(&res);
}

static void validate_dir(const char *dir, const char *schema, size_t *count)
{
    DIR *dp = opendir(dir);
    struct dirent *de;
    assert_non_null(dp);
    while ((de = readdir(dp))) {
        char *p;
        if (de->d_name[0] == '.' || !qs_str_has_suffix(de->d_name, ".xml"))
            continue;
        if (schema == NULL && !qs_str_has_prefix(de->d_name, "libvirt-") &&
            !qs_str_has_prefix(de->d_name, "dumpxml-") && !qs_str_has_prefix(de->d_name, "domain-"))
            continue;
        p = qs_asprintf("%s/%s", dir, de->d_name);
        validate(p, schema ? schema : (qs_str_has_prefix(de->d_name, "domain-") ? "domain" : "domainsnapshot"));
        (*count)++;
        free(p);
    }
    closedir(dp);
}

/* The golden outputs and everything a store writes: definitions, snapshots (on-disk form with <active>). */
static void test_schema(void **state)
{
    struct qs_error *err = NULL;
    char *tmp, *root, *out, *dir;
    struct md_store *st;
    struct md_lock *l;
    struct md_domain *d;
    size_t n = 0;
    (void)state;

    if (!have_validator())
        qt_skip_missing("libvirt's schemas or virt-xml-validate is missing (packages libvirt0, libvirt-clients)");
    out = t_data_path("out");
    validate_dir(out, NULL, &n);
    free(out);

    tmp = t_tmpdir();
    root = qs_asprintf("%s/state", tmp);
    st = md_store_open(root, &err);
    assert_non_null(st);
    l = md_lock_acquire(st, "vm1", 0, &err);
    {
        char *p = t_data_path("in/domain-libvirt.xml");
        size_t len;
        char *x = t_read(p, &len);
        d = md_domain_parse(x, len, &err);
        assert_non_null(d);
        const char *const av[] = { "qemu-system-x86_64", "-m", "1024", NULL };
        assert_int_equal(md_domain_set_argv(d, av, &err), 0);
        assert_int_equal(md_domain_set_qmp_socket(d, "/run/vm1.qmp", &err), 0);
        assert_int_equal(md_domain_set_disk_node_name(d, "vda", "n0", &err), 0);
        assert_int_equal(md_store_domain_put(st, l, d, &err), 0);
        free(x);
        free(p);
    }
    {
        static const char *const files[] = { "libvirt-running-internal.xml", "libvirt-shutoff.xml",
                                             "libvirt-disk-only-external.xml", "libvirt-external-memory.xml" };
        for (size_t i = 0; i < 4; i++) {
            char *rel = qs_asprintf("in/%s", files[i]), *p = t_data_path(rel);
            size_t len;
            char *x = t_read(p, &len);
            struct md_snapshot *s = md_snapshot_parse(x, len, MD_PARSE_ON_DISK, &err);
            char *dx;
            assert_non_null(s);
            /* embed the updated definition, as the engine does */
            dx = md_domain_format(d, &err);
            free(s->domain_xml);
            s->domain_xml = qs_xstrdup(strstr(dx, "<domain"));
            s->domain_xml[strlen(s->domain_xml) - 1] = '\0';
            if (md_store_snapshot_put(st, l, "vm1", s, 0, &err) < 0)
                fail_msg("%s: %s", files[i], err->message);
            md_snapshot_free(s);
            free(dx);
            free(x);
            free(p);
            free(rel);
        }
    }
    dir = qs_asprintf("%s/snapshot/vm1", root);
    validate_dir(dir, "domainsnapshot", &n);
    free(dir);
    dir = qs_asprintf("%s/qemu", root);
    validate_dir(dir, "domain", &n);
    free(dir);
    assert_true(n >= 14);
    md_domain_free(d);
    md_lock_free(l);
    md_store_free(st);
    t_rmrf(tmp);
    free(tmp);
    free(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = { cmocka_unit_test(test_schema) };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
