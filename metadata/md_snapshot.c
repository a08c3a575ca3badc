/* md_snapshot.c: the <domainsnapshot> model: enum tables, parse, format, validation. */
#include "md_priv.h"
#include "qs_util.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

static const char *const state_names[] = {
    "nostate", "running", "blocked", "paused", "shutdown", "shutoff", "crashed", "pmsuspended", "disk-snapshot",
};
static_assert(sizeof(state_names) / sizeof(state_names[0]) == MD_STATE__LAST, "state_names out of step");

static const char *const location_names[] = { "default", "no", "internal", "external", "manual" };
static_assert(sizeof(location_names) / sizeof(location_names[0]) == MD_LOCATION__LAST,
              "location_names out of step");

const char *md_state_to_string(int state)
{
    return state >= 0 && state < MD_STATE__LAST ? state_names[state] : NULL;
}

int md_state_from_string(const char *s)
{
    for (int i = 0; s && i < MD_STATE__LAST; i++)
        if (strcmp(s, state_names[i]) == 0)
            return i;
    return -1;
}

const char *md_location_to_string(int loc)
{
    return loc >= 0 && loc < MD_LOCATION__LAST ? location_names[loc] : NULL;
}

int md_location_from_string(const char *s)
{
    for (int i = 0; s && i < MD_LOCATION__LAST; i++)
        if (strcmp(s, location_names[i]) == 0)
            return i;
    return -1;
}

struct md_snapshot *md_snapshot_new(void)
{
    return qs_xcalloc(1, sizeof(struct md_snapshot));
}

static void disk_release(struct md_snapshot_disk *d)
{
    free(d->name);
    free(d->type);
    free(d->driver_type);
    free(d->source);
    free(d->raw);
}

void md_snapshot_free(struct md_snapshot *snap)
{
    if (!snap)
        return;
    free(snap->name);
    free(snap->description);
    free(snap->parent);
    free(snap->memory_file);
    for (size_t i = 0; i < snap->ndisks; i++)
        disk_release(&snap->disks[i]);
    free(snap->disks);
    free(snap->domain_xml);
    free(snap->inactive_domain_xml);
    free(snap->cookie_xml);
    free(snap->extra_xml);
    free(snap);
}

static char *dup0(const char *s)
{
    return s ? qs_xstrdup(s) : NULL;
}

struct md_snapshot *md_snapshot_copy(const struct md_snapshot *s)
{
    struct md_snapshot *c = md_snapshot_new();

    c->name = dup0(s->name);
    c->description = dup0(s->description);
    c->state = s->state;
    c->parent = dup0(s->parent);
    c->creation_time = s->creation_time;
    c->memory = s->memory;
    c->memory_file = dup0(s->memory_file);
    for (size_t i = 0; i < s->ndisks; i++) {
        struct md_snapshot_disk *d = md_snapshot_disk_add(c);
        const struct md_snapshot_disk *o = &s->disks[i];
        d->name = dup0(o->name);
        d->snapshot = o->snapshot;
        d->type = dup0(o->type);
        d->driver_type = dup0(o->driver_type);
        d->source = dup0(o->source);
        d->raw = dup0(o->raw);
    }
    c->domain_xml = dup0(s->domain_xml);
    c->inactive_domain_xml = dup0(s->inactive_domain_xml);
    c->cookie_xml = dup0(s->cookie_xml);
    c->extra_xml = dup0(s->extra_xml);
    c->current = s->current;
    return c;
}

struct md_snapshot_disk *md_snapshot_disk_add(struct md_snapshot *snap)
{
    struct md_snapshot_disk *d;

    snap->disks = qs_xrealloc(snap->disks, (snap->ndisks + 1) * sizeof(*snap->disks));
    d = &snap->disks[snap->ndisks++];
    memset(d, 0, sizeof(*d));
    return d;
}

bool md_snapshot_is_external(const struct md_snapshot *snap)
{
    if (snap->memory == MD_LOCATION_EXTERNAL)
        return true;
    for (size_t i = 0; i < snap->ndisks; i++)
        if (snap->disks[i].snapshot == MD_LOCATION_EXTERNAL)
            return true;
    return false;
}

static bool offline_state(int state)
{
    return state == MD_STATE_SHUTOFF || state == MD_STATE_DISK_SNAPSHOT;
}

/* ---- format ---- */

static void pad(struct qs_buf *b, int n)
{
    for (int i = 0; i < n; i++)
        qs_buf_add(b, " ", 1);
}

/* An element kept verbatim, re-indented to INDENT. */
static void add_raw(struct qs_buf *b, const char *raw, int indent)
{
    char *r = md_xml_reindent(raw, strlen(raw), indent);
    pad(b, indent);
    qs_buf_adds(b, r);
    qs_buf_adds(b, "\n");
    free(r);
}

static void strip_walk(xmlNodePtr n, bool *changed)
{
    for (; n; n = n->next) {
        if (n->type != XML_ELEMENT_NODE)
            continue;
        if (md_xml_is(n, "graphics", NULL) && xmlHasProp(n, (const xmlChar *)"passwd")) {
            xmlUnsetProp(n, (const xmlChar *)"passwd");
            md_xml_touch(n);
            *changed = true;
        }
        strip_walk(n->children, changed);
    }
}

/*
 * A <domain> kept verbatim, without the secrets libvirt leaves out unless asked (graphics passwd).
 * *out is NULL when RAW holds none (use RAW as it is). Caller frees *out.
 */
static int strip_secrets(const char *raw, char **out, struct qs_error **err)
{
    struct md_xml x = {0};
    struct qs_buf b;
    bool changed = false;

    *out = NULL;
    if (!strstr(raw, "passwd"))
        return 0;
    if (md_xml_parse(&x, raw, strlen(raw), "domain", true, err) < 0)
        return -1;
    strip_walk(xmlDocGetRootElement(x.doc), &changed);
    if (changed) {
        qs_buf_init(&b, 0);
        md_xml_serialize(&b, &x, xmlDocGetRootElement(x.doc));
        *out = qs_buf_detach(&b, NULL);
    }
    md_xml_release(&x);
    return 0;
}

/* The <domain>-like subtree RAW at INDENT, secrets removed unless SECURE. */
static int add_domain(struct qs_buf *b, const char *raw, bool secure, struct qs_error **err)
{
    char *clean = NULL;

    if (!secure && strip_secrets(raw, &clean, err) < 0)
        return -1;
    add_raw(b, clean ? clean : raw, 2);
    free(clean);
    return 0;
}

static void format_disk(struct qs_buf *b, const struct md_snapshot_disk *d, int indent)
{
    const char *type = d->type ? d->type : "file";

    if (d->raw) {
        add_raw(b, d->raw, indent);
        return;
    }
    pad(b, indent);
    qs_buf_adds(b, "<disk name='");
    md_xml_escape(b, d->name ? d->name : "");
    qs_buf_adds(b, "'");
    if (d->snapshot > 0 && d->snapshot < MD_LOCATION__LAST)
        qs_buf_addf(b, " snapshot='%s'", location_names[d->snapshot]);
    if (!d->source && !d->driver_type) {
        qs_buf_adds(b, "/>\n");
        return;
    }
    qs_buf_adds(b, " type='");
    md_xml_escape(b, type);
    qs_buf_adds(b, "'>\n");
    if (d->driver_type) {
        pad(b, indent + 2);
        qs_buf_adds(b, "<driver type='");
        md_xml_escape(b, d->driver_type);
        qs_buf_adds(b, "'/>\n");
    }
    if (d->source) {
        pad(b, indent + 2);
        qs_buf_adds(b, strcmp(type, "block") == 0 ? "<source dev='" : "<source file='");
        md_xml_escape(b, d->source);
        qs_buf_adds(b, "'/>\n");
    }
    pad(b, indent);
    qs_buf_adds(b, "</disk>\n");
}

char *md_snapshot_format(const struct md_snapshot *snap, unsigned flags, struct qs_error **err)
{
    bool secure = flags & (MD_FORMAT_SECURE | MD_FORMAT_ON_DISK);
    struct qs_buf b;

    if (!snap->name) {
        qs_error_set(err, QS_ERR_INVALID, "snapshot has no name");
        return NULL;
    }
    qs_buf_init(&b, 0);
    qs_buf_adds(&b, "<domainsnapshot>\n  <name>");
    md_xml_escape(&b, snap->name);
    qs_buf_adds(&b, "</name>\n");
    if (snap->description) {
        qs_buf_adds(&b, "  <description>");
        md_xml_escape(&b, snap->description);
        qs_buf_adds(&b, "</description>\n");
    }
    if (snap->state > 0 && snap->state < MD_STATE__LAST)
        qs_buf_addf(&b, "  <state>%s</state>\n", state_names[snap->state]);
    if (snap->parent) {
        qs_buf_adds(&b, "  <parent>\n    <name>");
        md_xml_escape(&b, snap->parent);
        qs_buf_adds(&b, "</name>\n  </parent>\n");
    }
    if (snap->creation_time)
        qs_buf_addf(&b, "  <creationTime>%lld</creationTime>\n", snap->creation_time);
    if (snap->memory > 0 && snap->memory < MD_LOCATION__LAST) {
        qs_buf_addf(&b, "  <memory snapshot='%s'", location_names[snap->memory]);
        if (snap->memory_file) {
            qs_buf_adds(&b, " file='");
            md_xml_escape(&b, snap->memory_file);
            qs_buf_adds(&b, "'");
        }
        qs_buf_adds(&b, "/>\n");
    }
    if (snap->ndisks) {
        qs_buf_adds(&b, "  <disks>\n");
        for (size_t i = 0; i < snap->ndisks; i++)
            format_disk(&b, &snap->disks[i], 4);
        qs_buf_adds(&b, "  </disks>\n");
    }
    if ((snap->domain_xml && add_domain(&b, snap->domain_xml, secure, err) < 0) ||
        (snap->inactive_domain_xml && add_domain(&b, snap->inactive_domain_xml, secure, err) < 0)) {
        qs_buf_release(&b);
        return NULL;
    }
    if (snap->cookie_xml)
        add_raw(&b, snap->cookie_xml, 2);
    if (snap->extra_xml)
        add_raw(&b, snap->extra_xml, 2);
    if (flags & MD_FORMAT_ON_DISK)
        qs_buf_addf(&b, "  <active>%d</active>\n", snap->current ? 1 : 0);
    qs_buf_adds(&b, "</domainsnapshot>\n");
    return qs_buf_detach(&b, NULL);
}

/* ---- validation ---- */

/* Memory and disk rules libvirt applies while parsing a snapshot definition. */
static int validate_locations(const struct md_snapshot *s, struct qs_error **err)
{
    const char *name = s->name ? s->name : "";

    if (s->memory == MD_LOCATION_MANUAL) {
        qs_error_set(err, QS_ERR_INVALID, "'manual' memory snapshot mode not supported (snapshot '%s')", name);
        return -1;
    }
    if (s->memory_file && s->memory != MD_LOCATION_EXTERNAL) {
        qs_error_set(err, QS_ERR_INVALID, "memory filename '%s' requires external snapshot (snapshot '%s')",
                     s->memory_file, name);
        return -1;
    }
    if (!s->memory_file && s->memory == MD_LOCATION_EXTERNAL) {
        qs_error_set(err, QS_ERR_INVALID, "external memory snapshots require a filename (snapshot '%s')", name);
        return -1;
    }
    if (offline_state(s->state) && s->memory != MD_LOCATION_DEFAULT && s->memory != MD_LOCATION_NO) {
        qs_error_set(err, QS_ERR_INVALID,
                     "memory state cannot be saved with offline or disk-only snapshot '%s'", name);
        return -1;
    }
    if (s->memory_file && s->memory_file[0] != '/') {
        qs_error_set(err, QS_ERR_INVALID, "memory snapshot file path '%s' must be absolute (snapshot '%s')",
                     s->memory_file, name);
        return -1;
    }
    for (size_t i = 0; i < s->ndisks; i++) {
        const struct md_snapshot_disk *d = &s->disks[i];
        if (!d->name || !*d->name) {
            qs_error_set(err, QS_ERR_INVALID, "missing name from disk snapshot element (snapshot '%s')", name);
            return -1;
        }
        for (size_t j = 0; j < i; j++) {
            if (s->disks[j].name && strcmp(s->disks[j].name, d->name) == 0) {
                qs_error_set(err, QS_ERR_INVALID, "disk '%s' specified twice (snapshot '%s')", d->name, name);
                return -1;
            }
        }
        if (d->source && d->source[0] != '/') {
            qs_error_set(err, QS_ERR_INVALID, "disk snapshot image path '%s' must be absolute (snapshot '%s')",
                         d->source, name);
            return -1;
        }
        if (d->source && d->snapshot != MD_LOCATION_EXTERNAL && d->snapshot != MD_LOCATION_DEFAULT) {
            qs_error_set(err, QS_ERR_INVALID, "file '%s' for disk '%s' requires use of external snapshot mode",
                         d->source, d->name);
            return -1;
        }
    }
    return 0;
}

static int validate_required(const struct md_snapshot *s, struct qs_error **err)
{
    if (!s->name) {
        qs_error_set(err, QS_ERR_INVALID, "a redefined snapshot must have a name");
        return -1;
    }
    if (qs_name_check(s->name, "snapshot", err) < 0)
        return -1;
    if (s->parent && qs_name_check(s->parent, "parent snapshot", err) < 0)
        return -1;
    if (s->state <= MD_STATE_NOSTATE || s->state >= MD_STATE__LAST) {
        qs_error_set(err, QS_ERR_INVALID, "missing state from existing snapshot '%s'", s->name);
        return -1;
    }
    if (!s->creation_time) {
        qs_error_set(err, QS_ERR_INVALID, "missing creationTime from existing snapshot '%s'", s->name);
        return -1;
    }
    return 0;
}

int md_snapshot_validate(const struct md_snapshot *s, struct qs_error **err)
{
    if (validate_required(s, err) < 0)
        return -1;
    if (!s->domain_xml) {
        qs_error_set(err, QS_ERR_INVALID, "a redefined snapshot '%s' must contain its domain definition", s->name);
        return -1;
    }
    return validate_locations(s, err);
}

/* ---- parse ---- */

static int parse_location(xmlNodePtr n, const char *what, const char *subject, int *out, struct qs_error **err)
{
    char *v = md_xml_prop(n, "snapshot");
    int loc, ret = 0;

    if (!v) {
        *out = MD_LOCATION_DEFAULT;
        return 0;
    }
    loc = md_location_from_string(v);
    if (loc <= MD_LOCATION_DEFAULT) {
        qs_error_set(err, QS_ERR_INVALID, "invalid %s snapshot location '%s'%s%s%s", what, v,
                     subject ? " for disk '" : "", subject ? subject : "", subject ? "'" : "");
        ret = -1;
    } else {
        *out = loc;
    }
    free(v);
    return ret;
}

/* The raw text of element N as a string at indentation 0 (N sits at DEPTH levels of 2 spaces). */
static char *raw_element(const struct md_xml *x, xmlNodePtr n, int depth)
{
    size_t len;
    const char *raw = md_xml_raw(x, n, &len);
    struct qs_buf b;

    if (raw)
        return md_xml_reindent(raw, len, -2 * depth);
    /* no byte ranges: fall back to libvirt-style serialization */
    qs_buf_init(&b, 0);
    md_xml_serialize(&b, x, n);
    {
        char *s = qs_buf_detach(&b, &len);
        char *r = md_xml_reindent(s, len, -2 * depth);
        free(s);
        return r;
    }
}

static int parse_disk(const struct md_xml *x, xmlNodePtr n, struct md_snapshot *snap, bool keep_raw,
                      struct qs_error **err)
{
    struct md_snapshot_disk *d = md_snapshot_disk_add(snap);
    xmlNodePtr drv, src;

    d->name = md_xml_prop(n, "name");
    if (!d->name) {
        qs_error_set(err, QS_ERR_INVALID, "missing name from disk snapshot element");
        return -1;
    }
    if (parse_location(n, "disk", d->name, &d->snapshot, err) < 0)
        return -1;
    d->type = md_xml_prop(n, "type");
    if ((drv = md_xml_child(n, "driver", NULL)))
        d->driver_type = md_xml_prop(drv, "type");
    if ((src = md_xml_child(n, "source", NULL)))
        d->source = md_xml_prop(src, (d->type && strcmp(d->type, "block") == 0) ? "dev" : "file");
    if (keep_raw) {
        /* keep the element verbatim unless the fields reproduce it exactly */
        char *raw = raw_element(x, n, 2);
        struct qs_buf b;
        char *fmt;
        qs_buf_init(&b, 0);
        format_disk(&b, d, 0);
        fmt = qs_buf_detach(&b, NULL);
        fmt[strlen(fmt) - 1] = '\0';
        if (!md_xml_is(n, "disk", NULL) || strcmp(fmt, raw) != 0)
            d->raw = raw;
        else
            free(raw);
        free(fmt);
    }
    /* libvirt: a disk with a source or format but no mode is external */
    if (d->snapshot == MD_LOCATION_DEFAULT && (d->source || d->driver_type))
        d->snapshot = MD_LOCATION_EXTERNAL;
    return 0;
}

static void append_extra(char **extra, char *raw)
{
    if (!*extra) {
        *extra = raw;
        return;
    }
    {
        char *j = qs_asprintf("%s\n%s", *extra, raw);
        free(*extra);
        free(raw);
        *extra = j;
    }
}

struct md_snapshot *md_snapshot_parse(const char *xml, size_t len, unsigned flags, struct qs_error **err)
{
    struct md_xml x;
    struct md_snapshot *snap = NULL, *ret = NULL;
    bool keep = !(flags & MD_PARSE_SKIP_SUBTREES);
    bool redefine = flags & (MD_PARSE_REDEFINE | MD_PARSE_ON_DISK);
    bool have_active = false;
    int active = 0;
    char *v = NULL;
    bool have_memory = false;
    xmlNodePtr root;

    if (md_xml_parse(&x, xml, len, "snapshot XML", keep, err) < 0)
        return NULL;
    root = xmlDocGetRootElement(x.doc);
    if (!md_xml_is(root, "domainsnapshot", NULL)) {
        qs_error_set(err, QS_ERR_INVALID, "expected a <domainsnapshot> document, found <%s>",
                     (const char *)root->name);
        goto out;
    }
    snap = md_snapshot_new();
    for (xmlNodePtr n = root->children; n; n = n->next) {
        const char *name = (const char *)n->name;
        free(v);
        v = NULL;
        if (n->type != XML_ELEMENT_NODE)
            continue;
        if (n->ns) {
            if (keep)
                append_extra(&snap->extra_xml, raw_element(&x, n, 1));
        } else if (strcmp(name, "name") == 0) {
            if (!snap->name)
                snap->name = md_xml_content(n);
        } else if (strcmp(name, "description") == 0) {
            if (!snap->description)
                snap->description = md_xml_content(n);
        } else if (strcmp(name, "state") == 0) {
            v = md_xml_content(n);
            snap->state = md_state_from_string(v);
            if (snap->state < 0 || (redefine && snap->state == MD_STATE_NOSTATE)) {
                qs_error_set(err, QS_ERR_INVALID, "invalid state '%s' in domain snapshot XML", v ? v : "");
                goto out;
            }
        } else if (strcmp(name, "parent") == 0) {
            if (!snap->parent)
                snap->parent = md_xml_content(md_xml_child(n, "name", NULL));
        } else if (strcmp(name, "creationTime") == 0) {
            v = md_xml_content(n);
            if (md_parse_ll(v, &snap->creation_time) < 0) {
                qs_error_set(err, QS_ERR_INVALID, "invalid creationTime '%s' in domain snapshot XML", v ? v : "");
                goto out;
            }
        } else if (strcmp(name, "memory") == 0) {
            if (have_memory)            /* the first one counts, as libvirt reads it */
                continue;
            have_memory = true;
            if (parse_location(n, "memory", NULL, &snap->memory, err) < 0)
                goto out;
            snap->memory_file = md_xml_prop(n, "file");
        } else if (strcmp(name, "disks") == 0) {
            for (xmlNodePtr d = n->children; d; d = d->next)
                if (d->type == XML_ELEMENT_NODE && parse_disk(&x, d, snap, keep, err) < 0)
                    goto out;
        } else if (strcmp(name, "domain") == 0) {
            if (keep && !snap->domain_xml)
                snap->domain_xml = raw_element(&x, n, 1);
        } else if (strcmp(name, "inactiveDomain") == 0) {
            if (keep && !snap->inactive_domain_xml)
                snap->inactive_domain_xml = raw_element(&x, n, 1);
        } else if (strcmp(name, "cookie") == 0) {
            if (keep && !snap->cookie_xml)
                snap->cookie_xml = raw_element(&x, n, 1);
        } else if (strcmp(name, "active") == 0) {
            long long a;
            v = md_xml_content(n);
            if (md_parse_ll(v, &a) < 0 || a < 0 || a > 1) {
                qs_error_set(err, QS_ERR_INVALID, "invalid <active> value '%s' in domain snapshot XML", v ? v : "");
                goto out;
            }
            have_active = true;
            active = (int)a;
        } else if (keep) {
            append_extra(&snap->extra_xml, raw_element(&x, n, 1));
        }
    }

    if (snap->memory == MD_LOCATION_DEFAULT) {
        if (snap->memory_file)
            snap->memory = MD_LOCATION_EXTERNAL;
        else if (redefine)
            snap->memory = offline_state(snap->state) ? MD_LOCATION_NO : MD_LOCATION_INTERNAL;
    }
    if (redefine && validate_required(snap, err) < 0)
        goto out;
    if (validate_locations(snap, err) < 0)
        goto out;
    if (flags & MD_PARSE_ON_DISK) {
        if (!have_active) {
            qs_error_set(err, QS_ERR_INVALID, "could not find 'active' element in snapshot '%s'", snap->name);
            goto out;
        }
        snap->current = active != 0;
    }
    ret = snap;
    snap = NULL;
out:
    free(v);
    md_snapshot_free(snap);
    md_xml_release(&x);
    return ret;
}

/* ---- qsnap's values in <cookie> ---- */

static int cookie_key_check(const char *key, struct qs_error **err)
{
    bool ok = key && key[0] >= 'a' && key[0] <= 'z' && strlen(key) <= 64;

    for (const char *p = key; ok && *p; p++)
        ok = (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-';
    if (!ok) {
        qs_error_set(err, QS_ERR_INVALID, "invalid cookie key '%s'", key ? key : "");
        return -1;
    }
    return 0;
}

int md_snapshot_cookie_get(const struct md_snapshot *snap, const char *key, char **value, struct qs_error **err)
{
    struct md_xml x = {0};
    struct qs_error *ignore = NULL;
    xmlNodePtr root;

    *value = NULL;
    if (cookie_key_check(key, err) < 0)
        return -1;
    if (!snap->cookie_xml)
        return 0;
    /* a cookie qsnap cannot read holds no value of its own */
    if (md_xml_parse(&x, snap->cookie_xml, strlen(snap->cookie_xml), "snapshot cookie", false, &ignore) < 0) {
        qs_error_free(ignore);
        return 0;
    }
    root = xmlDocGetRootElement(x.doc);
    for (xmlNodePtr n = root ? root->children : NULL; n && !*value; n = n->next)
        if (n->type == XML_ELEMENT_NODE && md_xml_is(n, key, MD_QSNAP_SNAPSHOT_NS))
            *value = md_xml_content(n);
    md_xml_release(&x);
    return 0;
}

int md_snapshot_cookie_set(struct md_snapshot *snap, const char *key, const char *value, struct qs_error **err)
{
    struct qs_buf b;
    char *old = NULL, *elem, *end;
    int ret = -1;

    if (md_snapshot_cookie_get(snap, key, &old, err) < 0)
        return -1;
    if (old) {
        qs_error_set(err, QS_ERR_EXISTS, "snapshot '%s' already has cookie value '%s'", snap->name ? snap->name : "",
                     key);
        goto out;
    }
    qs_buf_init(&b, 0);
    qs_buf_addf(&b, "<qsnap:%s xmlns:qsnap='%s'>", key, MD_QSNAP_SNAPSHOT_NS);
    md_xml_escape(&b, value);
    qs_buf_addf(&b, "</qsnap:%s>", key);
    elem = qs_buf_detach(&b, NULL);
    end = snap->cookie_xml ? strrchr(snap->cookie_xml, '<') : NULL;
    qs_buf_init(&b, 0);
    if (!end || end == snap->cookie_xml || end[1] != '/') {
        /* no cookie, or an empty-element <cookie/>: a new one */
        qs_buf_addf(&b, "<cookie>\n  %s\n</cookie>", elem);
    } else {
        qs_buf_add(&b, snap->cookie_xml, (size_t)(end - snap->cookie_xml));
        if (end[-1] != '\n')
            qs_buf_adds(&b, "\n");
        qs_buf_addf(&b, "  %s\n%s", elem, end);
    }
    free(elem);
    free(snap->cookie_xml);
    snap->cookie_xml = qs_buf_detach(&b, NULL);
    ret = 0;
out:
    free(old);
    return ret;
}

int md_snapshot_cookie_remove(struct md_snapshot *snap, const char *key, struct qs_error **err)
{
    struct md_xml x = {0};
    struct qs_error *ignore = NULL;
    struct qs_buf b;
    xmlNodePtr root, n, next;
    bool removed = false, left = false;

    if (cookie_key_check(key, err) < 0)
        return -1;
    if (!snap->cookie_xml)
        return 0;
    /* a cookie qsnap cannot read holds no value of its own: nothing to remove */
    if (md_xml_parse(&x, snap->cookie_xml, strlen(snap->cookie_xml), "snapshot cookie", true, &ignore) < 0) {
        qs_error_free(ignore);
        return 0;
    }
    root = xmlDocGetRootElement(x.doc);
    for (n = root ? root->children : NULL; n; n = next) {
        next = n->next;
        if (n->type != XML_ELEMENT_NODE)
            continue;
        if (md_xml_is(n, key, MD_QSNAP_SNAPSHOT_NS)) {
            md_xml_remove(n);
            removed = true;
        } else {
            left = true;
        }
    }
    if (removed) {
        free(snap->cookie_xml);
        snap->cookie_xml = NULL;
        if (left) {
            qs_buf_init(&b, 0);
            md_xml_serialize(&b, &x, root);
            snap->cookie_xml = qs_buf_detach(&b, NULL);
        }
    }
    md_xml_release(&x);
    return 0;
}
