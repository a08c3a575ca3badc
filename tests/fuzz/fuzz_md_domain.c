/* fuzz_md_domain.c: libFuzzer harness: <domain> parsing, the accessors and setters, formatting back. */
#include "md.h"
#include "qs_util.h"

#include <stdlib.h>
#include <string.h>

static void read_all(const struct md_domain *dom)
{
    struct qs_error *err = NULL;
    struct md_domain_disk d;
    char **argv;

    (void)md_domain_name(dom);
    (void)md_domain_uuid(dom);
    (void)md_domain_memory_kib(dom);
    (void)md_domain_vcpus(dom);
    (void)md_domain_qmp_socket(dom);
    for (size_t i = 0; i <= md_domain_disk_count(dom); i++) { /* one past the end must fail cleanly */
        if (md_domain_disk_get(dom, i, &d, &err) == 0)
            (void)(d.target && d.source && d.type && d.device && d.driver_type && d.node_name);
        qs_error_free(err);
        err = NULL;
    }
    if ((argv = md_domain_argv(dom)))
        qs_strv_free(argv);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const argv[] = {"qemu-system-x86_64", "-S", NULL};
    struct qs_error *err = NULL;
    struct md_domain *dom = md_domain_parse((const char *)data, size, &err), *again = NULL;
    struct md_domain_disk d;
    char *xml = NULL, *target = NULL;

    qs_error_free(err);
    err = NULL;
    if (!dom)
        return 0;
    read_all(dom);
    xml = md_domain_format(dom, &err);
    qs_error_free(err);
    err = NULL;
    free(xml);

    /* what qsnap changes in a definition, then the document again */
    if (md_domain_disk_count(dom) > 0 && md_domain_disk_get(dom, 0, &d, &err) == 0 && d.target)
        target = strdup(d.target);
    qs_error_free(err);
    err = NULL;
#define TRY(call)                                                                                           \
    do {                                                                                                    \
        (void)(call);                                                                                       \
        qs_error_free(err);                                                                                 \
        err = NULL;                                                                                         \
    } while (0)
    TRY(md_domain_set_qmp_socket(dom, "/run/qsnap/x.qmp", &err));
    TRY(md_domain_set_argv(dom, argv, &err));
    TRY(md_domain_set_memory_kib(dom, 65536, &err));
    TRY(md_domain_set_vcpus(dom, 2, &err));
    if (target) {
        TRY(md_domain_set_disk_source(dom, target, "/var/lib/x.qcow2", &err));
        TRY(md_domain_set_disk_driver_type(dom, target, "qcow2", &err));
        TRY(md_domain_set_disk_node_name(dom, target, "node-x", &err));
        TRY(md_domain_set_disk_node_name(dom, target, NULL, &err));
    }
    TRY(md_domain_add_disk(dom, "file", NULL, "qcow2", "/var/lib/new.qcow2", "vdzz", NULL, &err));
    TRY(md_domain_set_qmp_socket(dom, NULL, &err));
    read_all(dom);
    if ((xml = md_domain_format(dom, &err))) {
        again = md_domain_parse(xml, strlen(xml), &err);
        if (again)
            read_all(again);
    }
    qs_error_free(err);
    md_domain_free(again);
    md_domain_free(dom);
    free(xml);
    free(target);
    return 0;
}
