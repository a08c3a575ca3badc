/* qemuinfo.c: which QEMU a domain runs on and what of it qsnap uses - for `qsnap version --domain`. */
#include "engine_priv.h"
#include "pure.h"
#include "qmp.h"
#include "qs_util.h"

#include <stdlib.h>
#include <string.h>

int engine_domain_qemu_info(struct engine *e, const char *name, struct engine_qemu_info *info,
                            struct qs_error **err)
{
    struct md_domain *dom = NULL;
    struct qmp_client *c = NULL;
    size_t n = 0;
    int ret = -1;

    memset(info, 0, sizeof(*info));
    if (!(dom = engine_domain_load(e, name, err)) || engine_domain_connect(e, dom, &c, err) < 0)
        goto out;
    if (!c) {
        qs_error_set(err, QS_ERR_STATE, "domain '%s' is not running: no QEMU to ask", name);
        goto out;
    }
    info->features = qs_xcalloc(QMP_FEATURE_LAST + 1, sizeof(char *));
    for (int f = 0; f < QMP_FEATURE_LAST; f++) {
        bool has = false;
        if (qmp_client_feature(c, (enum qmp_feature)f, &has, err) < 0)
            goto out;
        if (has)
            info->features[n++] = qs_xstrdup(qmp_feature_to_string((enum qmp_feature)f));
    }
    info->version = qs_xstrdup(qmp_client_version(c));
    info->package = qs_xstrdup(qmp_client_package(c));
    ret = 0;
out:
    if (ret < 0)
        engine_qemu_info_release(info);
    qmp_client_free(c);
    md_domain_free(dom);
    return ret;
}
