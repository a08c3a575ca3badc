/* md_domain.c: libvirt <domain> definitions: the fields qsnap reads and sets, the rest kept verbatim. */
#include "md_priv.h"
#include "qs_util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

struct disk_cache {
    char *type, *device, *driver_type, *source, *target, *bus, *node_name, *qdev, *drive, *arg;
};

struct nvram_cache {
    char *loader, *file, *templ, *format, *arg, *drive, *node_name;
};

struct md_domain {
    struct md_xml x;
    /* cached view, rebuilt after every change */
    char *name, *uuid, *qmp_socket, *cwd;
    struct nvram_cache nv;
    long long pid, pid_start;
    unsigned long long memory_kib;
    unsigned vcpus;
    struct disk_cache *disks;
    size_t ndisks;
};

static xmlNodePtr root_of(const struct md_domain *d)
{
    return xmlDocGetRootElement(d->x.doc);
}

static void cache_clear(struct md_domain *d)
{
    free(d->name);
    free(d->uuid);
    free(d->qmp_socket);
    free(d->cwd);
    for (size_t i = 0; i < d->ndisks; i++) {
        struct disk_cache *c = &d->disks[i];
        free(c->type);
        free(c->device);
        free(c->driver_type);
        free(c->source);
        free(c->target);
        free(c->bus);
        free(c->node_name);
        free(c->qdev);
        free(c->drive);
        free(c->arg);
    }
    free(d->disks);
    free(d->nv.loader);
    free(d->nv.file);
    free(d->nv.templ);
    free(d->nv.format);
    free(d->nv.arg);
    free(d->nv.drive);
    free(d->nv.node_name);
    memset(&d->nv, 0, sizeof(d->nv));
    d->name = d->uuid = d->qmp_socket = d->cwd = NULL;
    d->pid = d->pid_start = 0;
    d->disks = NULL;
    d->ndisks = 0;
    d->memory_kib = 0;
    d->vcpus = 1;
}

static xmlNodePtr qsnap_meta(const struct md_domain *d)
{
    return md_xml_child(md_xml_child(root_of(d), "metadata", NULL), "qsnap", MD_QSNAP_NS);
}

/* libvirt's memory units, to KiB. */
static int scale_kib(const char *unit, unsigned long long v, unsigned long long *out)
{
    static const struct { const char *u; unsigned long long mul; } units[] = {
        { "b", 1 }, { "bytes", 1 }, { "KB", 1000ull }, { "k", 1024ull }, { "KiB", 1024ull },
        { "MB", 1000000ull }, { "M", 1048576ull }, { "MiB", 1048576ull }, { "GB", 1000000000ull },
        { "G", 1073741824ull }, { "GiB", 1073741824ull }, { "TB", 1000000000000ull },
        { "T", 1099511627776ull }, { "TiB", 1099511627776ull },
    };
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(unit, units[i].u) == 0) {
            if (v > ~0ull / units[i].mul)
                return -1;
            *out = v * units[i].mul / 1024;
            return 0;
        }
    }
    return -1;
}

static int cache_build(struct md_domain *d, struct qs_error **err)
{
    xmlNodePtr root = root_of(d), n, devices, meta;
    char *v = NULL, *unit = NULL;
    long long ll;
    int ret = -1;

    char *old_name = d->name, *old_uuid = d->uuid;

    /* the name and uuid stay the same strings when they did not change: callers hold md_domain_name()
     * across the setters, which rebuild this cache */
    d->name = d->uuid = NULL;
    cache_clear(d);
    d->name = md_xml_content(md_xml_child(root, "name", NULL));
    d->uuid = md_xml_content(md_xml_child(root, "uuid", NULL));
    if (old_name && d->name && strcmp(old_name, d->name) == 0) {
        free(d->name);
        d->name = old_name;
        old_name = NULL;
    }
    if (old_uuid && d->uuid && strcmp(old_uuid, d->uuid) == 0) {
        free(d->uuid);
        d->uuid = old_uuid;
        old_uuid = NULL;
    }
    free(old_name);
    free(old_uuid);
    if ((n = md_xml_child(root, "memory", NULL))) {
        v = md_xml_content(n);
        unit = md_xml_prop(n, "unit");
        if (md_parse_ll(v, &ll) < 0 || ll < 0 ||
            scale_kib(unit ? unit : "KiB", (unsigned long long)ll, &d->memory_kib) < 0) {
            qs_error_set(err, QS_ERR_INVALID, "invalid memory '%s%s%s' in domain '%s'", v ? v : "",
                         unit ? " " : "", unit ? unit : "", d->name ? d->name : "");
            goto out;
        }
        free(v);
        v = NULL;
    }
    if ((n = md_xml_child(root, "vcpu", NULL))) {
        v = md_xml_content(n);
        if (md_parse_ll(v, &ll) < 0 || ll < 1 || ll > 65535) {
            qs_error_set(err, QS_ERR_INVALID, "invalid vcpu count '%s' in domain '%s'", v ? v : "",
                         d->name ? d->name : "");
            goto out;
        }
        d->vcpus = (unsigned)ll;
        free(v);
        v = NULL;
    }
    meta = qsnap_meta(d);
    if ((n = md_xml_child(meta, "qmp", MD_QSNAP_NS)))
        d->qmp_socket = md_xml_prop(n, "socket");
    if ((n = md_xml_child(meta, "process", MD_QSNAP_NS))) {
        d->cwd = md_xml_prop(n, "cwd");
        free(v);
        v = md_xml_prop(n, "pid");
        if (md_parse_ll(v, &ll) == 0 && ll > 0)
            d->pid = ll;
        free(v);
        v = md_xml_prop(n, "start");
        if (md_parse_ll(v, &ll) == 0 && ll > 0)
            d->pid_start = ll;
        free(v);
        v = NULL;
    }
    if ((n = md_xml_child(md_xml_child(root, "os", NULL), "nvram", NULL))) {
        xmlNodePtr q = md_xml_child(meta, "nvram", MD_QSNAP_NS);
        d->nv.file = md_xml_content(n);
        d->nv.templ = md_xml_prop(n, "template");
        d->nv.loader = md_xml_content(md_xml_child(md_xml_child(root, "os", NULL), "loader", NULL));
        d->nv.format = md_xml_prop(q, "format");
        d->nv.arg = md_xml_prop(q, "arg");
        d->nv.drive = md_xml_prop(q, "drive");
        d->nv.node_name = md_xml_prop(q, "node-name");
    }
    devices = md_xml_child(root, "devices", NULL);
    for (n = devices ? devices->children : NULL; n; n = n->next) {
        struct disk_cache *c;
        xmlNodePtr s;
        if (!md_xml_is(n, "disk", NULL))
            continue;
        d->disks = qs_xrealloc(d->disks, (d->ndisks + 1) * sizeof(*d->disks));
        c = &d->disks[d->ndisks++];
        memset(c, 0, sizeof(*c));
        c->type = md_xml_prop(n, "type");
        c->device = md_xml_prop(n, "device");
        if (!c->device)
            c->device = qs_xstrdup("disk");
        c->driver_type = md_xml_prop(md_xml_child(n, "driver", NULL), "type");
        if ((s = md_xml_child(n, "source", NULL))) {
            bool block = c->type && strcmp(c->type, "block") == 0;
            c->source = md_xml_prop(s, block ? "dev" : "file");
            if (!c->source && c->type && strcmp(c->type, "network") == 0)
                c->source = md_xml_prop(s, "name");
        }
        c->target = md_xml_prop(md_xml_child(n, "target", NULL), "dev");
        c->bus = md_xml_prop(md_xml_child(n, "target", NULL), "bus");
        if (c->target && meta) {
            for (xmlNodePtr m = meta->children; m; m = m->next) {
                char *t;
                if (!md_xml_is(m, "disk", MD_QSNAP_NS))
                    continue;
                t = md_xml_prop(m, "target");
                if (t && strcmp(t, c->target) == 0) {
                    free(c->node_name);
                    free(c->qdev);
                    free(c->drive);
                    free(c->arg);
                    c->node_name = md_xml_prop(m, "node-name");
                    c->qdev = md_xml_prop(m, "qdev");
                    c->drive = md_xml_prop(m, "drive");
                    c->arg = md_xml_prop(m, "arg");
                }
                free(t);
            }
        }
    }
    ret = 0;
out:
    free(v);
    free(unit);
    return ret;
}

struct md_domain *md_domain_parse(const char *xml, size_t len, struct qs_error **err)
{
    struct md_domain *d = qs_xcalloc(1, sizeof(*d));
    xmlNodePtr root;

    if (md_xml_parse(&d->x, xml, len, "domain XML", true, err) < 0)
        goto fail;
    root = root_of(d);
    if (!md_xml_is(root, "domain", NULL)) {
        qs_error_set(err, QS_ERR_INVALID, "expected a <domain> document, found <%s>", (const char *)root->name);
        goto fail;
    }
    if (cache_build(d, err) < 0)
        goto fail;
    return d;
fail:
    md_domain_free(d);
    return NULL;
}

void md_domain_free(struct md_domain *d)
{
    if (!d)
        return;
    cache_clear(d);
    md_xml_release(&d->x);
    free(d);
}

static int random_uuid(char out[37], struct qs_error **err)
{
    unsigned char u[16];
    size_t have = 0;

    while (have < sizeof(u)) {
        ssize_t n = getrandom(u + have, sizeof(u) - have, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            qs_error_set_errno(err, QS_ERR_IO, errno, "cannot generate a uuid");
            return -1;
        }
        have += (size_t)n;
    }
    u[6] = (u[6] & 0x0f) | 0x40;
    u[8] = (u[8] & 0x3f) | 0x80;
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0], u[1], u[2],
             u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
    return 0;
}

struct md_domain *md_domain_new(const char *name, const char *uuid, unsigned long long memory_kib,
                                unsigned vcpus, struct qs_error **err)
{
    char ubuf[37];
    struct qs_buf b;
    struct md_domain *d = NULL;
    size_t len;
    char *xml;

    if (qs_name_check(name, "domain", err) < 0)
        return NULL;
    if (!uuid) {
        if (random_uuid(ubuf, err) < 0)
            return NULL;
        uuid = ubuf;
    }
    qs_buf_init(&b, 0);
    qs_buf_adds(&b, "<domain type='qemu'>\n  <name>");
    md_xml_escape(&b, name);
    qs_buf_adds(&b, "</name>\n  <uuid>");
    md_xml_escape(&b, uuid);
    qs_buf_addf(&b,
                "</uuid>\n"
                "  <memory unit='KiB'>%llu</memory>\n"
                "  <currentMemory unit='KiB'>%llu</currentMemory>\n"
                "  <vcpu placement='static'>%u</vcpu>\n"
                "  <os>\n"
                "    <type arch='x86_64' machine='pc'>hvm</type>\n"
                "  </os>\n"
                "  <devices>\n"
                "  </devices>\n"
                "</domain>\n",
                memory_kib, memory_kib, vcpus ? vcpus : 1);
    xml = qs_buf_detach(&b, &len);
    d = md_domain_parse(xml, len, err);
    free(xml);
    return d;
}

char *md_domain_format(const struct md_domain *d, struct qs_error **err)
{
    struct qs_buf b;
    xmlNodePtr root = root_of(d);

    qs_buf_init(&b, 0);
    /* prolog (XML declaration, libvirt's warning comment) and epilog are kept as they were */
    if (d->x.ranges && d->x.nranges) {
        qs_buf_add(&b, d->x.src, d->x.ranges[0].start);
        md_xml_serialize(&b, &d->x, root);
        qs_buf_add(&b, d->x.src + d->x.ranges[0].end, d->x.len - d->x.ranges[0].end);
    } else {
        for (xmlNodePtr n = d->x.doc->children; n; n = n->next) {
            md_xml_serialize(&b, &d->x, n);
            qs_buf_adds(&b, "\n");
        }
    }
    return qs_buf_detach(&b, NULL);
}

const char *md_domain_name(const struct md_domain *d) { return d->name; }
const char *md_domain_uuid(const struct md_domain *d) { return d->uuid; }
unsigned long long md_domain_memory_kib(const struct md_domain *d) { return d->memory_kib; }
unsigned md_domain_vcpus(const struct md_domain *d) { return d->vcpus; }
size_t md_domain_disk_count(const struct md_domain *d) { return d->ndisks; }
const char *md_domain_qmp_socket(const struct md_domain *d) { return d->qmp_socket; }
const char *md_domain_cwd(const struct md_domain *d) { return d->cwd; }

void md_domain_process(const struct md_domain *d, long long *pid, long long *start)
{
    *pid = d->pid;
    *start = d->pid_start;
}

int md_domain_disk_get(const struct md_domain *d, size_t i, struct md_domain_disk *out, struct qs_error **err)
{
    const struct disk_cache *c;

    if (i >= d->ndisks) {
        qs_error_set(err, QS_ERR_NOTFOUND, "domain '%s' has no disk %zu", d->name ? d->name : "", i);
        return -1;
    }
    c = &d->disks[i];
    out->type = c->type;
    out->device = c->device;
    out->driver_type = c->driver_type;
    out->source = c->source;
    out->target = c->target;
    out->bus = c->bus;
    out->node_name = c->node_name;
    out->qdev = c->qdev;
    out->drive = c->drive;
    out->arg = c->arg;
    return 0;
}

/*
 * The argv lives in qsnap's own metadata (<qsnap:argv><qsnap:arg value='...'/>), not in
 * <qemu:commandline>: libvirt appends <qemu:commandline> arguments to a command line of its own, so a
 * whole argv there would break the domain (and every snapshot's copy of it) once back in libvirt.
 */
char **md_domain_argv(const struct md_domain *d)
{
    xmlNodePtr av = md_xml_child(qsnap_meta(d), "argv", MD_QSNAP_NS);
    char **v = NULL;
    size_t n = 0;

    if (!av)
        return NULL;
    for (xmlNodePtr a = av->children; a; a = a->next) {
        char *val;
        if (!md_xml_is(a, "arg", MD_QSNAP_NS))
            continue;
        val = md_xml_prop(a, "value");
        v = qs_xrealloc(v, (n + 2) * sizeof(*v));
        v[n++] = val ? val : qs_xstrdup("");
        v[n] = NULL;
    }
    return v;
}

/* ---- setters ---- */

/* Inserts CHILD as a child of PARENT after the last child named one of AFTER (else first). */
static void insert_after_any(xmlNodePtr parent, xmlNodePtr child, const char *const *after)
{
    xmlNodePtr ref = NULL, last = NULL;

    for (xmlNodePtr n = parent->children; n; n = n->next) {
        if (n->type != XML_ELEMENT_NODE)
            continue;
        for (size_t i = 0; after[i]; i++)
            if (md_xml_is(n, after[i], NULL))
                last = n;
    }
    if (last) {
        for (ref = last->next; ref && ref->type != XML_ELEMENT_NODE; ref = ref->next)
            ;
    } else {
        for (ref = parent->children; ref && ref->type != XML_ELEMENT_NODE; ref = ref->next)
            ;
    }
    md_xml_insert(parent, child, ref);
}

static xmlNodePtr ensure_qsnap_meta(struct md_domain *d)
{
    static const char *const before_metadata[] = { "name", "uuid", "genid", "title", "description", NULL };
    xmlNodePtr root = root_of(d), meta, q;
    xmlNsPtr ns;

    if (!(meta = md_xml_child(root, "metadata", NULL))) {
        meta = md_xml_new(d->x.doc, NULL, "metadata", NULL);
        insert_after_any(root, meta, before_metadata);
    }
    if ((q = md_xml_child(meta, "qsnap", MD_QSNAP_NS)))
        return q;
    q = md_xml_new(d->x.doc, NULL, "qsnap", NULL);
    ns = xmlNewNs(q, (const xmlChar *)MD_QSNAP_NS, (const xmlChar *)"qsnap");
    xmlSetNs(q, ns);
    md_xml_insert(meta, q, NULL);
    return q;
}

static bool has_elements(xmlNodePtr n)
{
    for (xmlNodePtr c = n ? n->children : NULL; c; c = c->next)
        if (c->type == XML_ELEMENT_NODE)
            return true;
    return false;
}

/* Drops qsnap's metadata element, and <metadata>, when they became empty. */
static void prune_qsnap_meta(struct md_domain *d)
{
    xmlNodePtr meta = md_xml_child(root_of(d), "metadata", NULL);
    xmlNodePtr q = md_xml_child(meta, "qsnap", MD_QSNAP_NS);

    if (q && !has_elements(q))
        md_xml_remove(q);
    if (meta && !has_elements(meta))
        md_xml_remove(meta);
}

int md_domain_set_qmp_socket(struct md_domain *d, const char *path, struct qs_error **err)
{
    xmlNodePtr q = qsnap_meta(d), qmp = md_xml_child(q, "qmp", MD_QSNAP_NS);

    if (!path) {
        if (qmp) {
            md_xml_remove(qmp);
            prune_qsnap_meta(d);
        }
        return cache_build(d, err);
    }
    if (!qmp) {
        q = ensure_qsnap_meta(d);
        qmp = md_xml_new(d->x.doc, q->ns, "qmp", NULL);
        md_xml_insert(q, qmp, md_xml_child(q, "disk", MD_QSNAP_NS));
    }
    md_xml_set_prop(qmp, "socket", path);
    return cache_build(d, err);
}

int md_domain_set_argv(struct md_domain *d, const char *const *argv, struct qs_error **err)
{
    xmlNodePtr q = qsnap_meta(d), av = md_xml_child(q, "argv", MD_QSNAP_NS);

    if (av) {
        md_xml_remove(av);
        if (!argv)
            prune_qsnap_meta(d);
    }
    if (!argv)
        return cache_build(d, err);
    q = ensure_qsnap_meta(d);
    av = md_xml_new(d->x.doc, q->ns, "argv", NULL);
    md_xml_insert(q, av, NULL);
    for (size_t i = 0; argv[i]; i++) {
        xmlNodePtr a = md_xml_new(d->x.doc, q->ns, "arg", NULL);
        xmlSetProp(a, (const xmlChar *)"value", (const xmlChar *)argv[i]);
        md_xml_insert(av, a, NULL);
    }
    return cache_build(d, err);
}

int md_domain_set_memory_kib(struct md_domain *d, unsigned long long kib, struct qs_error **err)
{
    static const char *const before[] = { "name", "uuid", "genid", "title", "description", "metadata",
                                          "maxMemory", NULL };
    xmlNodePtr root = root_of(d), m = md_xml_child(root, "memory", NULL), cur;
    char buf[32];

    snprintf(buf, sizeof(buf), "%llu", kib);
    if (!m) {
        m = md_xml_new(d->x.doc, NULL, "memory", NULL);
        insert_after_any(root, m, before);
    }
    md_xml_set_text(m, buf);
    md_xml_set_prop(m, "unit", "KiB");
    if ((cur = md_xml_child(root, "currentMemory", NULL))) {
        md_xml_set_text(cur, buf);
        md_xml_set_prop(cur, "unit", "KiB");
    }
    return cache_build(d, err);
}

int md_domain_set_vcpus(struct md_domain *d, unsigned vcpus, struct qs_error **err)
{
    static const char *const before[] = { "name", "uuid", "genid", "title", "description", "metadata",
                                          "maxMemory", "memory", "currentMemory", "blkiotune", "memtune",
                                          "memoryBacking", NULL };
    xmlNodePtr root = root_of(d), v = md_xml_child(root, "vcpu", NULL);
    char buf[16];

    if (vcpus < 1) {
        qs_error_set(err, QS_ERR_INVALID, "domain '%s' needs at least one vcpu", d->name ? d->name : "");
        return -1;
    }
    snprintf(buf, sizeof(buf), "%u", vcpus);
    if (!v) {
        v = md_xml_new(d->x.doc, NULL, "vcpu", NULL);
        insert_after_any(root, v, before);
    }
    md_xml_set_text(v, buf);
    return cache_build(d, err);
}

static xmlNodePtr find_disk(struct md_domain *d, const char *target, struct qs_error **err)
{
    xmlNodePtr devices = md_xml_child(root_of(d), "devices", NULL);

    for (xmlNodePtr n = devices ? devices->children : NULL; n; n = n->next) {
        char *t;
        bool match;
        if (!md_xml_is(n, "disk", NULL))
            continue;
        t = md_xml_prop(md_xml_child(n, "target", NULL), "dev");
        match = t && target && strcmp(t, target) == 0;
        free(t);
        if (match)
            return n;
    }
    qs_error_set(err, QS_ERR_NOTFOUND, "disk '%s' not found in domain '%s'", target ? target : "",
                 d->name ? d->name : "");
    return NULL;
}

int md_domain_set_disk_source(struct md_domain *d, const char *target, const char *source,
                              struct qs_error **err)
{
    xmlNodePtr disk = find_disk(d, target, err), src;
    char *type;
    bool block;

    if (!disk)
        return -1;
    type = md_xml_prop(disk, "type");
    block = type && strcmp(type, "block") == 0;
    free(type);
    if (!(src = md_xml_child(disk, "source", NULL))) {
        static const char *const before[] = { "driver", NULL };
        src = md_xml_new(d->x.doc, NULL, "source", NULL);
        insert_after_any(disk, src, before);
    }
    md_xml_set_prop(src, block ? "dev" : "file", source);
    return cache_build(d, err);
}

int md_domain_set_disk_driver_type(struct md_domain *d, const char *target, const char *type,
                                   struct qs_error **err)
{
    xmlNodePtr disk = find_disk(d, target, err), drv;

    if (!disk)
        return -1;
    if (!(drv = md_xml_child(disk, "driver", NULL))) {
        xmlNodePtr first;
        drv = md_xml_new(d->x.doc, NULL, "driver", NULL);
        xmlSetProp(drv, (const xmlChar *)"name", (const xmlChar *)"qemu");
        for (first = disk->children; first && first->type != XML_ELEMENT_NODE; first = first->next)
            ;
        md_xml_insert(disk, drv, first);
    }
    md_xml_set_prop(drv, "type", type);
    return cache_build(d, err);
}

int md_domain_set_disk_ident(struct md_domain *d, const char *target, const char *key, const char *value,
                             struct qs_error **err)
{
    static const char *const keys[] = {"node-name", "qdev", "drive", "arg", NULL};
    xmlNodePtr q, entry = NULL;
    bool known = false, left = false;

    for (size_t i = 0; keys[i] && !known; i++)
        known = strcmp(keys[i], key) == 0;
    if (!known) {
        qs_error_set(err, QS_ERR_INVALID, "unknown disk attribute '%s'", key);
        return -1;
    }
    if (!find_disk(d, target, err))
        return -1;
    q = qsnap_meta(d);
    for (xmlNodePtr m = q ? q->children : NULL; m && !entry; m = m->next) {
        char *t;
        if (!md_xml_is(m, "disk", MD_QSNAP_NS))
            continue;
        t = md_xml_prop(m, "target");
        if (t && strcmp(t, target) == 0)
            entry = m;
        free(t);
    }
    if (!value) {
        if (entry) {
            xmlUnsetProp(entry, (const xmlChar *)key);
            md_xml_touch(entry);
            for (size_t i = 0; keys[i] && !left; i++)
                left = xmlHasProp(entry, (const xmlChar *)keys[i]) != NULL;
            if (!left) {
                md_xml_remove(entry);
                prune_qsnap_meta(d);
            }
        }
        return cache_build(d, err);
    }
    if (!entry) {
        q = ensure_qsnap_meta(d);
        entry = md_xml_new(d->x.doc, q->ns, "disk", NULL);
        xmlSetProp(entry, (const xmlChar *)"target", (const xmlChar *)target);
        md_xml_insert(q, entry, NULL);
    }
    md_xml_set_prop(entry, key, value);
    return cache_build(d, err);
}

int md_domain_set_disk_node_name(struct md_domain *d, const char *target, const char *node_name,
                                 struct qs_error **err)
{
    return md_domain_set_disk_ident(d, target, "node-name", node_name, err);
}

int md_domain_set_process(struct md_domain *d, const char *cwd, long long pid, long long start,
                          struct qs_error **err)
{
    xmlNodePtr q = qsnap_meta(d), p = md_xml_child(q, "process", MD_QSNAP_NS);
    char buf[32];

    if (p) {
        md_xml_remove(p);
        if (!cwd && pid <= 0)
            prune_qsnap_meta(d);
    }
    if (!cwd && pid <= 0)
        return cache_build(d, err);
    q = ensure_qsnap_meta(d);
    p = md_xml_new(d->x.doc, q->ns, "process", NULL);
    md_xml_insert(q, p, md_xml_child(q, "disk", MD_QSNAP_NS));
    if (cwd)
        md_xml_set_prop(p, "cwd", cwd);
    if (pid > 0) {
        snprintf(buf, sizeof(buf), "%lld", pid);
        md_xml_set_prop(p, "pid", buf);
        snprintf(buf, sizeof(buf), "%lld", start);
        md_xml_set_prop(p, "start", buf);
    }
    return cache_build(d, err);
}

/* qsnap's <qsnap:made file='...'/> entry for FILE, or NULL. */
static xmlNodePtr made_entry(const struct md_domain *d, const char *file)
{
    xmlNodePtr q = qsnap_meta(d);

    for (xmlNodePtr m = q ? q->children : NULL; m; m = m->next) {
        char *f;
        bool eq;
        if (!md_xml_is(m, "made", MD_QSNAP_NS))
            continue;
        f = md_xml_prop(m, "file");
        eq = f && strcmp(f, file) == 0;
        free(f);
        if (eq)
            return m;
    }
    return NULL;
}

bool md_domain_made(const struct md_domain *d, const char *file)
{
    return file && made_entry(d, file) != NULL;
}

int md_domain_set_made(struct md_domain *d, const char *file, bool made, struct qs_error **err)
{
    xmlNodePtr m = made_entry(d, file), q;

    if (made && !m) {
        q = ensure_qsnap_meta(d);
        m = md_xml_new(d->x.doc, q->ns, "made", NULL);
        xmlSetProp(m, (const xmlChar *)"file", (const xmlChar *)file);
        md_xml_insert(q, m, md_xml_child(q, "argv", MD_QSNAP_NS));
    } else if (!made && m) {
        md_xml_remove(m);
        prune_qsnap_meta(d);
    }
    return cache_build(d, err);
}

char *md_domain_format_copy(const struct md_domain *d, struct qs_error **err)
{
    char *xml = md_domain_format(d, err);
    struct md_domain *copy;
    xmlNodePtr q, next;
    bool any = false;

    for (q = qsnap_meta(d), q = q ? q->children : NULL; q && !any; q = q->next)
        any = md_xml_is(q, "made", MD_QSNAP_NS);
    if (!xml || !any)
        return xml;
    if (!(copy = md_domain_parse(xml, strlen(xml), err))) {
        free(xml);
        return NULL;
    }
    free(xml);
    for (q = qsnap_meta(copy), q = q ? q->children : NULL; q; q = next) {
        next = q->next;
        if (md_xml_is(q, "made", MD_QSNAP_NS))
            md_xml_remove(q);
    }
    prune_qsnap_meta(copy);
    xml = md_domain_format(copy, err);
    md_domain_free(copy);
    return xml;
}

int md_domain_nvram_get(const struct md_domain *d, struct md_domain_nvram *out)
{
    if (!d->nv.file || !*d->nv.file)
        return 0;
    *out = (struct md_domain_nvram){d->nv.loader, d->nv.file, d->nv.templ, d->nv.format, d->nv.arg, d->nv.drive,
                                    d->nv.node_name};
    return 1;
}

int md_domain_set_nvram(struct md_domain *d, const struct md_domain_nvram *nv, struct qs_error **err)
{
    static const char *const after_type[] = { "type", "firmware", NULL };
    static const char *const after_loader[] = { "type", "firmware", "loader", NULL };
    xmlNodePtr os = md_xml_child(root_of(d), "os", NULL), loader, nvram, q;
    /* a copy: NV's strings may be the domain's own, which the changes below free */
    struct md_domain_nvram c = {0};
    char *copies[7];

    if (!os) {
        qs_error_set(err, QS_ERR_INVALID, "domain '%s' has no <os>", d->name ? d->name : "");
        return -1;
    }
    if (nv) {
        const char *in[7] = {nv->loader, nv->file, nv->templ, nv->format, nv->arg, nv->drive, nv->node_name};
        for (size_t i = 0; i < 7; i++)
            copies[i] = in[i] ? qs_xstrdup(in[i]) : NULL;
        c = (struct md_domain_nvram){copies[0], copies[1], copies[2], copies[3], copies[4], copies[5], copies[6]};
    }
    if ((loader = md_xml_child(os, "loader", NULL)))
        md_xml_remove(loader);
    if ((nvram = md_xml_child(os, "nvram", NULL)))
        md_xml_remove(nvram);
    if ((q = md_xml_child(qsnap_meta(d), "nvram", MD_QSNAP_NS))) {
        md_xml_remove(q);
        prune_qsnap_meta(d);
    }
    if (c.file) {
        if (c.loader) {
            loader = md_xml_new(d->x.doc, NULL, "loader", c.loader);
            xmlSetProp(loader, (const xmlChar *)"readonly", (const xmlChar *)"yes");
            xmlSetProp(loader, (const xmlChar *)"type", (const xmlChar *)"pflash");
            insert_after_any(os, loader, after_type);
        }
        nvram = md_xml_new(d->x.doc, NULL, "nvram", c.file);
        if (c.templ)
            xmlSetProp(nvram, (const xmlChar *)"template", (const xmlChar *)c.templ);
        insert_after_any(os, nvram, after_loader);
        q = ensure_qsnap_meta(d);
        nvram = md_xml_new(d->x.doc, q->ns, "nvram", NULL);
        md_xml_insert(q, nvram, NULL);
        if (c.format)
            md_xml_set_prop(nvram, "format", c.format);
        if (c.arg)
            md_xml_set_prop(nvram, "arg", c.arg);
        if (c.drive)
            md_xml_set_prop(nvram, "drive", c.drive);
        if (c.node_name)
            md_xml_set_prop(nvram, "node-name", c.node_name);
    }
    if (nv)
        for (size_t i = 0; i < 7; i++)
            free(copies[i]);
    return cache_build(d, err);
}

int md_domain_set_identity(struct md_domain *d, const char *name, const char *uuid, struct qs_error **err)
{
    static const char *const before_uuid[] = { "name", NULL };
    xmlNodePtr root = root_of(d), n, u;
    char ubuf[37];

    if (qs_name_check(name, "domain", err) < 0)
        return -1;
    if (!uuid) {
        if (random_uuid(ubuf, err) < 0)
            return -1;
        uuid = ubuf;
    }
    if (!(n = md_xml_child(root, "name", NULL))) {
        n = md_xml_new(d->x.doc, NULL, "name", NULL);
        md_xml_insert(root, n, root->children);
    }
    md_xml_set_text(n, name);
    if (!(u = md_xml_child(root, "uuid", NULL))) {
        u = md_xml_new(d->x.doc, NULL, "uuid", NULL);
        insert_after_any(root, u, before_uuid);
    }
    md_xml_set_text(u, uuid);
    return cache_build(d, err);
}

int md_domain_set_machine(struct md_domain *d, const char *machine, struct qs_error **err)
{
    xmlNodePtr type = md_xml_child(md_xml_child(root_of(d), "os", NULL), "type", NULL);

    if (!type) {
        qs_error_set(err, QS_ERR_INVALID, "domain '%s' has no <os><type>", d->name ? d->name : "");
        return -1;
    }
    md_xml_set_prop(type, "machine", machine);
    return cache_build(d, err);
}

int md_domain_remove_disk(struct md_domain *d, const char *target, struct qs_error **err)
{
    xmlNodePtr disk = find_disk(d, target, err);

    if (!disk)
        return -1;
    if (md_domain_set_disk_ident(d, target, "node-name", NULL, err) < 0 ||
        md_domain_set_disk_ident(d, target, "qdev", NULL, err) < 0 ||
        md_domain_set_disk_ident(d, target, "drive", NULL, err) < 0 ||
        md_domain_set_disk_ident(d, target, "arg", NULL, err) < 0 || !(disk = find_disk(d, target, err)))
        return -1;
    md_xml_remove(disk);
    return cache_build(d, err);
}

int md_domain_add_disk(struct md_domain *d, const char *type, const char *device, const char *driver_type,
                       const char *source, const char *target, const char *bus, struct qs_error **err)
{
    xmlNodePtr root = root_of(d), devices, disk, n, last = NULL, ref = NULL;
    bool block;

    if (!type || (strcmp(type, "file") != 0 && strcmp(type, "block") != 0)) {
        qs_error_set(err, QS_ERR_INVALID, "unsupported disk type '%s'", type ? type : "");
        return -1;
    }
    if (!target || !*target) {
        qs_error_set(err, QS_ERR_INVALID, "a disk needs a target");
        return -1;
    }
    for (size_t i = 0; i < d->ndisks; i++) {
        if (d->disks[i].target && strcmp(d->disks[i].target, target) == 0) {
            qs_error_set(err, QS_ERR_EXISTS, "disk '%s' already exists in domain '%s'", target,
                         d->name ? d->name : "");
            return -1;
        }
    }
    block = strcmp(type, "block") == 0;
    if (!(devices = md_xml_child(root, "devices", NULL))) {
        devices = md_xml_new(d->x.doc, NULL, "devices", NULL);
        md_xml_insert(root, devices, md_xml_child(root, "commandline", MD_QEMU_NS));
    }
    for (n = devices->children; n; n = n->next)
        if (md_xml_is(n, "disk", NULL) || md_xml_is(n, "emulator", NULL))
            last = n;
    if (last)
        for (ref = last->next; ref && ref->type != XML_ELEMENT_NODE; ref = ref->next)
            ;
    else
        for (ref = devices->children; ref && ref->type != XML_ELEMENT_NODE; ref = ref->next)
            ;
    disk = md_xml_new(d->x.doc, NULL, "disk", NULL);
    xmlSetProp(disk, (const xmlChar *)"type", (const xmlChar *)type);
    xmlSetProp(disk, (const xmlChar *)"device", (const xmlChar *)(device ? device : "disk"));
    md_xml_insert(devices, disk, ref);
    if (driver_type) {
        n = md_xml_new(d->x.doc, NULL, "driver", NULL);
        xmlSetProp(n, (const xmlChar *)"name", (const xmlChar *)"qemu");
        xmlSetProp(n, (const xmlChar *)"type", (const xmlChar *)driver_type);
        md_xml_insert(disk, n, NULL);
    }
    if (source) {
        n = md_xml_new(d->x.doc, NULL, "source", NULL);
        xmlSetProp(n, (const xmlChar *)(block ? "dev" : "file"), (const xmlChar *)source);
        md_xml_insert(disk, n, NULL);
    }
    n = md_xml_new(d->x.doc, NULL, "target", NULL);
    xmlSetProp(n, (const xmlChar *)"dev", (const xmlChar *)target);
    xmlSetProp(n, (const xmlChar *)"bus", (const xmlChar *)(bus ? bus : "virtio"));
    md_xml_insert(disk, n, NULL);
    return cache_build(d, err);
}
