/* md_xml.c: safe libxml2 parsing, byte ranges of elements, libvirt-style serialization, small DOM helpers. */
#include "md_priv.h"
#include "qs_util.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

struct parse_state {
    bool dtd;
    int line;
    char *msg;
};

/* Per-context structured error handler: keeps the first error, prints nothing. */
static void on_error(void *user, xmlErrorPtr e)
{
    xmlParserCtxtPtr ctxt = user;
    struct parse_state *st = ctxt ? ctxt->_private : NULL;
    size_t n;

    if (!st || !e || st->msg || e->level < XML_ERR_ERROR)
        return;
    st->msg = qs_xstrdup(e->message ? e->message : "unknown error");
    n = strlen(st->msg);
    while (n > 0 && (st->msg[n - 1] == '\n' || st->msg[n - 1] == ' '))
        st->msg[--n] = '\0';
    st->line = e->line;
}

/* A DOCTYPE is refused before its internal subset is read: no entity declarations, no external DTD. */
static void on_internal_subset(void *user, const xmlChar *name, const xmlChar *ext, const xmlChar *sys)
{
    xmlParserCtxtPtr ctxt = user;
    struct parse_state *st = ctxt->_private;

    st->dtd = true;
    xmlStopParser(ctxt);
}

static void assign_ranges(struct md_xml *x, xmlNodePtr node, size_t *i, bool *ok)
{
    for (xmlNodePtr n = node; n && *ok; n = n->next) {
        if (n->type != XML_ELEMENT_NODE)
            continue;
        if (*i >= x->nranges) {
            *ok = false;
            return;
        }
        {
            struct md_range *r = &x->ranges[(*i)++];
            const char *p = x->src + r->start + 1;
            size_t plen = (n->ns && n->ns->prefix) ? strlen((const char *)n->ns->prefix) : 0;
            size_t nlen = strlen((const char *)n->name);
            if (plen && (strncmp(p, (const char *)n->ns->prefix, plen) != 0 || p[plen] != ':')) {
                *ok = false;
                return;
            }
            if (plen)
                p += plen + 1;
            if (strncmp(p, (const char *)n->name, nlen) != 0 || r->end <= r->start) {
                *ok = false;
                return;
            }
            n->_private = r;
        }
        assign_ranges(x, n->children, i, ok);
    }
}

static void clear_ranges(xmlNodePtr node)
{
    for (xmlNodePtr n = node; n; n = n->next) {
        n->_private = NULL;
        if (n->type == XML_ELEMENT_NODE)
            clear_ranges(n->children);
    }
}

/* Finds the byte range of every element of a well-formed document (libxml2 has already checked it). */
static bool scan_ranges(struct md_xml *x)
{
    const char *s = x->src;
    size_t len = x->len, pos = 0, cap = 0, depth = 0, scap = 0;
    size_t *stack = NULL;
    bool ok = true;

    while (pos < len) {
        const char *p = memchr(s + pos, '<', len - pos);
        size_t i, j;
        if (!p)
            break;
        i = (size_t)(p - s);
        if (len - i >= 4 && memcmp(p, "<!--", 4) == 0) {
            const char *e = memmem(p + 4, len - i - 4, "-->", 3);
            pos = e ? (size_t)(e - s) + 3 : len;
        } else if (len - i >= 9 && memcmp(p, "<![CDATA[", 9) == 0) {
            const char *e = memmem(p + 9, len - i - 9, "]]>", 3);
            pos = e ? (size_t)(e - s) + 3 : len;
        } else if (len - i >= 2 && p[1] == '?') {
            const char *e = memmem(p + 2, len - i - 2, "?>", 2);
            pos = e ? (size_t)(e - s) + 2 : len;
        } else if (len - i >= 2 && p[1] == '!') {
            ok = false; /* a DOCTYPE never gets this far */
            break;
        } else if (len - i >= 2 && p[1] == '/') {
            const char *e = memchr(p, '>', len - i);
            if (!e || depth == 0) {
                ok = false;
                break;
            }
            x->ranges[stack[--depth]].end = (size_t)(e - s) + 1;
            pos = (size_t)(e - s) + 1;
        } else {
            char q = 0;
            for (j = i + 1; j < len; j++) {
                char c = s[j];
                if (q) {
                    if (c == q)
                        q = 0;
                } else if (c == '"' || c == '\'') {
                    q = c;
                } else if (c == '>') {
                    break;
                }
            }
            if (j >= len) {
                ok = false;
                break;
            }
            qs_xgrow((void **)&x->ranges, &cap, x->nranges + 1, sizeof(*x->ranges));
            x->ranges[x->nranges].start = i;
            x->ranges[x->nranges].end = 0;
            if (s[j - 1] == '/') {
                x->ranges[x->nranges].end = j + 1;
            } else {
                qs_xgrow((void **)&stack, &scap, depth + 1, sizeof(*stack));
                stack[depth++] = x->nranges;
            }
            x->nranges++;
            pos = j + 1;
        }
    }
    free(stack);
    if (ok && depth == 0) {
        size_t k = 0;
        assign_ranges(x, xmlDocGetRootElement(x->doc), &k, &ok);
        if (ok && k == x->nranges)
            return true;
    }
    clear_ranges(x->doc->children);
    free(x->ranges);
    x->ranges = NULL;
    x->nranges = 0;
    return false;
}

int md_xml_parse(struct md_xml *x, const char *data, size_t len, const char *what, bool ranges,
                 struct qs_error **err)
{
    xmlParserCtxtPtr ctxt = NULL;
    struct parse_state st = { 0 };
    int ret = -1;

    memset(x, 0, sizeof(*x));
    if (len > MD_FILE_MAX) {
        qs_error_set(err, QS_ERR_TOOBIG, "%s is larger than %u bytes", what, MD_FILE_MAX);
        goto out;
    }
    if (len > INT_MAX) {
        qs_error_set(err, QS_ERR_TOOBIG, "%s is too large", what);
        goto out;
    }
    if (memchr(data, '\0', len)) { /* never XML; libxml2 would stop reading there and take the rest as read */
        qs_error_set(err, QS_ERR_INVALID, "cannot parse %s: it contains a NUL byte", what);
        goto out;
    }
    xmlInitParser();
    ctxt = xmlNewParserCtxt();
    if (!ctxt) {
        qs_error_set(err, QS_ERR_INTERNAL, "cannot create an XML parser context");
        goto out;
    }
    ctxt->_private = &st;
    ctxt->sax->serror = on_error;
    ctxt->sax->internalSubset = on_internal_subset;
    ctxt->sax->externalSubset = NULL;
    ctxt->sax->entityDecl = NULL;
    ctxt->sax->getEntity = NULL;
    ctxt->sax->resolveEntity = NULL;
    /* No XML_PARSE_NOENT, no DTDLOAD/DTDATTR/DTDVALID, no HUGE; NONET for good measure. */
    x->doc = xmlCtxtReadMemory(ctxt, data, (int)len, NULL, NULL,
                               XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    if (st.dtd) {
        qs_error_set(err, QS_ERR_INVALID, "cannot parse %s: a DOCTYPE (DTD, entities) is not allowed", what);
        goto out;
    }
    if (!x->doc || !ctxt->wellFormed) {
        if (st.msg)
            qs_error_set(err, QS_ERR_INVALID, "cannot parse %s: line %d: %s", what, st.line, st.msg);
        else
            qs_error_set(err, QS_ERR_INVALID, "cannot parse %s", what);
        goto out;
    }
    if (!xmlDocGetRootElement(x->doc)) {
        qs_error_set(err, QS_ERR_INVALID, "cannot parse %s: no root element", what);
        goto out;
    }
    x->src = qs_xstrndup(data, len);
    x->len = len;
    if (ranges)
        scan_ranges(x);
    ret = 0;
out:
    if (ret < 0)
        md_xml_release(x);
    if (ctxt) {
        ctxt->_private = NULL;
        xmlFreeParserCtxt(ctxt);
    }
    free(st.msg);
    return ret;
}

void md_xml_release(struct md_xml *x)
{
    if (!x)
        return;
    if (x->doc)
        xmlFreeDoc(x->doc);
    free(x->src);
    free(x->ranges);
    memset(x, 0, sizeof(*x));
}

void md_xml_touch(xmlNodePtr node)
{
    for (xmlNodePtr n = node; n && n->type == XML_ELEMENT_NODE; n = n->parent)
        n->_private = NULL;
}

const char *md_xml_raw(const struct md_xml *x, xmlNodePtr node, size_t *len)
{
    const struct md_range *r;

    if (!x->ranges || !node || node->type != XML_ELEMENT_NODE || !node->_private)
        return NULL;
    r = node->_private;
    *len = r->end - r->start;
    return x->src + r->start;
}

void md_xml_escape(struct qs_buf *b, const char *s)
{
    const char *run = s;

    for (const char *p = s; *p; p++) {
        const char *rep = NULL;
        unsigned char c = (unsigned char)*p;
        switch (c) {
        case '<': rep = "&lt;"; break;
        case '>': rep = "&gt;"; break;
        case '&': rep = "&amp;"; break;
        case '"': rep = "&quot;"; break;
        case '\'': rep = "&apos;"; break;
        default:
            if (c < 0x20 && c != '\n' && c != '\t' && c != '\r')
                rep = "";
        }
        if (rep) {
            qs_buf_add(b, run, (size_t)(p - run));
            qs_buf_adds(b, rep);
            run = p + 1;
        }
    }
    qs_buf_adds(b, run);
}

static void add_qname(struct qs_buf *b, xmlNsPtr ns, const xmlChar *name)
{
    if (ns && ns->prefix)
        qs_buf_addf(b, "%s:", (const char *)ns->prefix);
    qs_buf_adds(b, (const char *)name);
}

void md_xml_serialize(struct qs_buf *b, const struct md_xml *x, xmlNodePtr node)
{
    size_t rlen;
    const char *raw;

    switch (node->type) {
    case XML_ELEMENT_NODE:
        if ((raw = md_xml_raw(x, node, &rlen))) {
            qs_buf_add(b, raw, rlen);
            return;
        }
        qs_buf_adds(b, "<");
        add_qname(b, node->ns, node->name);
        /* libvirt writes attributes first, then namespace declarations */
        for (xmlAttrPtr a = node->properties; a; a = a->next) {
            xmlChar *v = xmlNodeGetContent((xmlNodePtr)a);
            qs_buf_adds(b, " ");
            add_qname(b, a->ns, a->name);
            qs_buf_adds(b, "='");
            md_xml_escape(b, v ? (const char *)v : "");
            qs_buf_adds(b, "'");
            xmlFree(v);
        }
        for (xmlNsPtr ns = node->nsDef; ns; ns = ns->next) {
            qs_buf_adds(b, ns->prefix ? " xmlns:" : " xmlns");
            if (ns->prefix)
                qs_buf_adds(b, (const char *)ns->prefix);
            qs_buf_adds(b, "='");
            md_xml_escape(b, ns->href ? (const char *)ns->href : "");
            qs_buf_adds(b, "'");
        }
        if (!node->children) {
            qs_buf_adds(b, "/>");
            return;
        }
        qs_buf_adds(b, ">");
        for (xmlNodePtr c = node->children; c; c = c->next)
            md_xml_serialize(b, x, c);
        qs_buf_adds(b, "</");
        add_qname(b, node->ns, node->name);
        qs_buf_adds(b, ">");
        return;
    case XML_TEXT_NODE:
        if (node->content)
            md_xml_escape(b, (const char *)node->content);
        return;
    case XML_CDATA_SECTION_NODE:
        qs_buf_addf(b, "<![CDATA[%s]]>", node->content ? (const char *)node->content : "");
        return;
    case XML_COMMENT_NODE:
        qs_buf_addf(b, "<!--%s-->", node->content ? (const char *)node->content : "");
        return;
    case XML_PI_NODE:
        qs_buf_addf(b, "<?%s%s%s?>", (const char *)node->name, node->content ? " " : "",
                    node->content ? (const char *)node->content : "");
        return;
    case XML_ENTITY_REF_NODE:
        qs_buf_addf(b, "&%s;", (const char *)node->name);
        return;
    default:
        return;
    }
}

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

char *md_xml_reindent(const char *s, size_t len, int delta)
{
    struct qs_buf b;
    bool after_gt = false; /* only white space since the last '>' */

    qs_buf_init(&b, 0);
    qs_buf_add(&b, "", 0);
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        qs_buf_add(&b, &c, 1);
        if (c == '>') {
            after_gt = true;
            continue;
        }
        if (c != '\n') {
            if (!is_ws(c))
                after_gt = false;
            continue;
        }
        if (!after_gt)
            continue;
        {
            size_t j = i + 1;
            while (j < len && is_ws(s[j]))
                j++;
            if (j >= len || s[j] != '<')
                continue;
        }
        if (delta > 0) {
            if (i + 1 < len && s[i + 1] != '\n' && s[i + 1] != '\r')
                for (int k = 0; k < delta; k++)
                    qs_buf_add(&b, " ", 1);
        } else if (delta < 0) {
            size_t k = (size_t)-delta, m = 0;
            while (m < k && i + 1 + m < len && s[i + 1 + m] == ' ')
                m++;
            if (m == k)
                i += k;
        }
    }
    return qs_buf_detach(&b, NULL);
}

bool md_xml_is(xmlNodePtr node, const char *name, const char *ns)
{
    if (!node || node->type != XML_ELEMENT_NODE || strcmp((const char *)node->name, name) != 0)
        return false;
    if (!ns)
        return node->ns == NULL;
    return node->ns && node->ns->href && strcmp((const char *)node->ns->href, ns) == 0;
}

xmlNodePtr md_xml_child(xmlNodePtr parent, const char *name, const char *ns)
{
    if (!parent)
        return NULL;
    for (xmlNodePtr n = parent->children; n; n = n->next)
        if (md_xml_is(n, name, ns))
            return n;
    return NULL;
}

char *md_xml_prop(xmlNodePtr node, const char *name)
{
    xmlChar *v;
    char *r;

    if (!node)
        return NULL;
    v = xmlGetNoNsProp(node, (const xmlChar *)name);
    if (!v)
        return NULL;
    r = qs_xstrdup((const char *)v);
    xmlFree(v);
    return r;
}

char *md_xml_content(xmlNodePtr node)
{
    xmlChar *v;
    char *r = NULL;

    if (!node)
        return NULL;
    v = xmlNodeGetContent(node);
    if (v && *v)
        r = qs_xstrdup((const char *)v);
    xmlFree(v);
    return r;
}

static size_t node_depth(xmlNodePtr n)
{
    size_t d = 0;
    for (xmlNodePtr p = n->parent; p && p->type == XML_ELEMENT_NODE; p = p->parent)
        d++;
    return d;
}

static xmlNodePtr ws_node(xmlDocPtr doc, size_t indent)
{
    char buf[130];
    if (indent > sizeof(buf) - 2)
        indent = sizeof(buf) - 2;
    buf[0] = '\n';
    memset(buf + 1, ' ', indent);
    buf[indent + 1] = '\0';
    return xmlNewDocText(doc, (const xmlChar *)buf);
}

static bool is_ws_text(xmlNodePtr n)
{
    if (!n || n->type != XML_TEXT_NODE)
        return false;
    for (const xmlChar *p = n->content; p && *p; p++)
        if (!is_ws((char)*p))
            return false;
    return true;
}

void md_xml_insert(xmlNodePtr parent, xmlNodePtr child, xmlNodePtr ref)
{
    size_t d = node_depth(parent) + (parent->type == XML_ELEMENT_NODE ? 1 : 0);
    bool has_elems = false;

    md_xml_touch(parent);
    for (xmlNodePtr n = parent->children; n; n = n->next)
        if (!is_ws_text(n))
            has_elems = true;
    if (!has_elems) {
        while (parent->children) {
            xmlNodePtr n = parent->children;
            xmlUnlinkNode(n);
            xmlFreeNode(n);
        }
        xmlAddChild(parent, ws_node(parent->doc, 2 * d));
        xmlAddChild(parent, child);
        xmlAddChild(parent, ws_node(parent->doc, d ? 2 * (d - 1) : 0));
        return;
    }
    if (ref) {
        xmlAddPrevSibling(ref, child);
        xmlAddNextSibling(child, ws_node(parent->doc, 2 * d));
        return;
    }
    if (is_ws_text(parent->last)) {
        xmlNodePtr last = parent->last;
        xmlAddPrevSibling(last, child);
        xmlAddPrevSibling(child, ws_node(parent->doc, 2 * d));
        return;
    }
    xmlAddChild(parent, child);
}

void md_xml_remove(xmlNodePtr node)
{
    xmlNodePtr prev = node->prev;

    if (node->parent)
        md_xml_touch(node->parent);
    if (is_ws_text(prev)) {
        xmlUnlinkNode(prev);
        xmlFreeNode(prev);
    }
    xmlUnlinkNode(node);
    xmlFreeNode(node);
}

xmlNodePtr md_xml_new(xmlDocPtr doc, xmlNsPtr ns, const char *name, const char *text)
{
    xmlNodePtr n = xmlNewDocNode(doc, ns, (const xmlChar *)name, NULL);
    if (!n)
        abort();
    if (text)
        xmlAddChild(n, xmlNewDocText(doc, (const xmlChar *)text));
    return n;
}

void md_xml_set_prop(xmlNodePtr node, const char *name, const char *value)
{
    md_xml_touch(node);
    xmlSetProp(node, (const xmlChar *)name, (const xmlChar *)value);
}

void md_xml_set_text(xmlNodePtr node, const char *text)
{
    md_xml_touch(node);
    while (node->children) {
        xmlNodePtr c = node->children;
        xmlUnlinkNode(c);
        xmlFreeNode(c);
    }
    if (text && *text)
        xmlAddChild(node, xmlNewDocText(node->doc, (const xmlChar *)text));
}

int md_parse_ll(const char *s, long long *out)
{
    char *end;
    long long v;

    if (!s || !*s || is_ws(*s))
        return -1;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

/* ---- string map ---- */

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

void md_map_init(struct md_map *m, size_t expected)
{
    size_t cap = 16;
    while (cap < expected * 2)
        cap *= 2;
    m->keys = qs_xcalloc(cap, sizeof(*m->keys));
    m->vals = qs_xcalloc(cap, sizeof(*m->vals));
    m->cap = cap;
    m->n = 0;
}

void md_map_release(struct md_map *m)
{
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof(*m));
}

static void map_grow(struct md_map *m)
{
    struct md_map nm;
    md_map_init(&nm, m->cap);
    for (size_t i = 0; i < m->cap; i++)
        if (m->keys[i])
            md_map_put(&nm, m->keys[i], m->vals[i]);
    md_map_release(m);
    *m = nm;
}

void *md_map_put(struct md_map *m, const char *key, void *val)
{
    size_t i;

    if ((m->n + 1) * 2 > m->cap)
        map_grow(m);
    for (i = hash_str(key) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (!m->keys[i]) {
            m->keys[i] = key;
            m->vals[i] = val;
            m->n++;
            return NULL;
        }
        if (strcmp(m->keys[i], key) == 0)
            return m->vals[i];
    }
}

void *md_map_get(const struct md_map *m, const char *key)
{
    if (!m->cap)
        return NULL;
    for (size_t i = hash_str(key) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (!m->keys[i])
            return NULL;
        if (strcmp(m->keys[i], key) == 0)
            return m->vals[i];
    }
}
