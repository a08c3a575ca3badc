/* vsh_output.c: virsh 9.0 compatible tables, --tree drawings, info blocks, times and messages. */
#include "vsh_output.h"

#include "qs_util.h"

#include <errno.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <wchar.h>
#include <wctype.h>

#define VSH_ESCAPE_WIDTH 4 /* "\xNN" */

int vsh_command_end(struct qs_buf *out, bool quiet)
{
    return quiet ? 0 : qs_buf_adds(out, "\n");
}

int vsh_error_format(struct qs_buf *err, const char *message)
{
    return qs_buf_addf(err, "error: %s\n", message ? message : "");
}

int vsh_buf_write(FILE *fp, const struct qs_buf *b)
{
    if (b->len && fwrite(b->data, 1, b->len, fp) != b->len)
        return -1;
    return fflush(fp) == 0 ? 0 : -1;
}

/*
 * Width and printability come from glibc's UTF-8 tables, as in virsh running in a UTF-8 locale. The
 * caller's locale may be "C" (qsnap never calls setlocale), so a C.UTF-8 ctype locale is switched in for
 * the calling thread only while measuring.
 */
struct vsh_ctype {
    locale_t loc;
    locale_t prev;
};

static void vsh_ctype_enter(struct vsh_ctype *c)
{
    c->loc = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
    c->prev = c->loc ? uselocale(c->loc) : (locale_t)0;
}

static void vsh_ctype_leave(struct vsh_ctype *c)
{
    if (c->loc) {
        uselocale(c->prev);
        freelocale(c->loc);
    }
    c->loc = (locale_t)0;
}

/* Decodes one UTF-8 sequence at S (N bytes available): its length and code point, or 0 when invalid. */
static size_t utf8_decode(const unsigned char *s, size_t n, wchar_t *wc)
{
    size_t len, i;
    unsigned long cp;

    if (s[0] < 0x80) {
        *wc = s[0];
        return 1;
    } else if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        len = 2;
        cp = s[0] & 0x1f;
    } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        len = 3;
        cp = s[0] & 0x0f;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        len = 4;
        cp = s[0] & 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    *wc = (wchar_t)cp;
    return len;
}

/* "\xNN" as virsh's table prints a byte: it formats a (signed) char, so every byte >= 0x80 shows as
 * "\xff" (the first two hex digits of the sign-extended value). */
static int add_escape(struct qs_buf *out, unsigned char byte)
{
    if (byte >= 0x80)
        return qs_buf_adds(out, "\\xff");
    return qs_buf_addf(out, "\\x%02x", byte);
}

static int cell_encode(struct qs_buf *out, const char *s, size_t *width)
{
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    size_t n = strlen((const char *)p), w = 0, len, i;
    wchar_t wc;
    int r = 0, cw;

    while (*p && r == 0) {
        /* a run of printable ASCII (one column each) goes out as it is: names, times and states are
         * nearly always only that, and a table of 10,000 snapshots is mostly such runs */
        for (len = 0; p[len] >= 0x20 && p[len] < 0x7f && !(p[len] == '\\' && p[len + 1] == 'x'); len++)
            ;
        if (len) {
            r = qs_buf_add(out, p, len);
            w += len;
            p += len;
            n -= len;
            continue;
        }
        if ((p[0] == '\\' && p[1] == 'x') || p[0] < 0x20 || p[0] == 0x7f) {
            r = add_escape(out, p[0]);
            w += VSH_ESCAPE_WIDTH;
            p++;
            n--;
            continue;
        }
        len = utf8_decode(p, n, &wc);
        if (len == 0) {
            r = add_escape(out, p[0]);
            w += VSH_ESCAPE_WIDTH;
            len = 1;
        } else if (!iswprint((wint_t)wc)) {
            for (i = 0; i < len && r == 0; i++) {
                r = add_escape(out, p[i]);
                w += VSH_ESCAPE_WIDTH;
            }
        } else {
            r = qs_buf_add(out, p, len);
            cw = wcwidth(wc);
            w += cw > 0 ? (size_t)cw : 0;
        }
        p += len;
        n -= len;
    }
    if (width)
        *width = w;
    return r;
}

int vsh_cell_encode(struct qs_buf *out, const char *s, size_t *width)
{
    struct vsh_ctype ct;
    int r;

    vsh_ctype_enter(&ct);
    r = cell_encode(out, s, width);
    vsh_ctype_leave(&ct);
    return r;
}

size_t vsh_cell_width(const char *s)
{
    struct qs_buf tmp;
    size_t w = 0;

    qs_buf_init(&tmp, 0);
    vsh_cell_encode(&tmp, s, &w);
    qs_buf_release(&tmp);
    return w;
}

struct vsh_table {
    size_t ncols;
    size_t nrows; /* row 0 is the header */
    size_t cap;
    size_t *cells;        /* nrows * ncols offsets into text, row-major */
    struct qs_buf text;   /* the cells' strings, each NUL-terminated: one allocation, not one per cell */
};

struct vsh_table *vsh_table_new(size_t ncols, const char *const *header)
{
    struct vsh_table *t = qs_xcalloc(1, sizeof(*t));

    t->ncols = ncols;
    qs_buf_init(&t->text, 0);
    vsh_table_add_row(t, header);
    return t;
}

void vsh_table_add_row(struct vsh_table *t, const char *const *cells)
{
    qs_xgrow((void **)&t->cells, &t->cap, (t->nrows + 1) * t->ncols, sizeof(*t->cells));
    for (size_t j = 0; j < t->ncols; j++) {
        const char *c = cells[j] ? cells[j] : "";
        t->cells[t->nrows * t->ncols + j] = t->text.len;
        qs_buf_add(&t->text, c, strlen(c) + 1);
    }
    t->nrows++;
}

void vsh_table_free(struct vsh_table *t)
{
    if (!t)
        return;
    qs_buf_release(&t->text);
    free(t->cells);
    free(t);
}

/* N copies of byte C. */
static int add_run(struct qs_buf *out, char c, size_t n)
{
    char buf[64];
    int r = 0;

    memset(buf, c, sizeof(buf));
    while (n > 0 && r == 0) {
        size_t k = n < sizeof(buf) ? n : sizeof(buf);
        r = qs_buf_add(out, buf, k);
        n -= k;
    }
    return r;
}

/* The text of cell (ROW, COL) of a table SRC (row 0: the titles); SCRATCH may hold it. MEASURING: only its
 * width counts (any text of that width will do). */
typedef const char *(*table_cell_fn)(const void *src, size_t row, size_t col, struct qs_buf *scratch,
                                     bool measuring);

/*
 * Renders NROWS rows (row 0 the titles, shown when HEADER) of NCOLS columns as virsh does. Cells are asked for
 * twice - to measure, then to write - and never kept: a table of 10,000 snapshots would otherwise hold a few
 * MB of copies, and every page costs a fault.
 */
/* What a listing has of OUT goes to FP once it holds this much (FP NULL: nothing goes): the same 64 KiB are
 * written again and again instead of a buffer of the whole listing (0.7 MB for 10,000 snapshots: ~170 pages,
 * each a page fault). */
#define FLUSH_AT ((size_t)64 << 10)

static int flush_full(struct qs_buf *out, FILE *fp)
{
    if (!fp || out->len < FLUSH_AT)
        return 0;
    if (fwrite(out->data, 1, out->len, fp) != out->len)
        return -1;
    qs_buf_reset(out);
    return 0;
}

static int table_render(const void *src, size_t nrows, size_t ncols, table_cell_fn cell, bool header,
                        struct qs_buf *out, FILE *fp)
{
    size_t colw[8] = {0}, w, i, j;
    struct qs_buf scratch, measure;
    struct vsh_ctype ct;
    int r = 0;

    if (ncols == 0 || ncols > sizeof(colw) / sizeof(colw[0]))
        return ncols == 0 ? 0 : -1;
    qs_buf_init(&scratch, 0);
    qs_buf_init(&measure, 0);
    vsh_ctype_enter(&ct);
    /* the titles count towards the widths even without a header, as in virsh */
    for (i = 0; i < nrows && r == 0; i++) {
        for (j = 0; j < ncols && r == 0; j++) {
            qs_buf_reset(&measure);
            r = cell_encode(&measure, cell(src, i, j, &scratch, true), &w);
            if (w > colw[j])
                colw[j] = w;
        }
    }
    for (i = header ? 0 : 1; i < nrows && r == 0; i++) {
        for (j = 0; j < ncols && r == 0; j++) {
            r = qs_buf_adds(out, " ");
            if (r == 0)
                r = cell_encode(out, cell(src, i, j, &scratch, false), &w);
            if (j + 1 < ncols && r == 0)
                r = add_run(out, ' ', colw[j] - w + 2);
        }
        if (r == 0)
            r = qs_buf_adds(out, "\n");
        if (i == 0 && r == 0) {
            for (j = 0; j < ncols && r == 0; j++)
                r = add_run(out, '-', colw[j] + 3);
            if (r == 0)
                r = qs_buf_adds(out, "\n");
        }
        if (r == 0)
            r = flush_full(out, fp);
    }
    vsh_ctype_leave(&ct);
    qs_buf_release(&scratch);
    qs_buf_release(&measure);
    return r;
}

static const char *table_cell(const void *src, size_t row, size_t col, struct qs_buf *scratch, bool measuring)
{
    const struct vsh_table *t = src;
    (void)scratch;
    (void)measuring;
    return t->text.data + t->cells[row * t->ncols + col];
}

int vsh_table_format(const struct vsh_table *t, bool header, struct qs_buf *out)
{
    return table_render(t, t->nrows, t->ncols, table_cell, header, out, NULL);
}

int vsh_table_print(const struct vsh_table *t, FILE *fp)
{
    struct qs_buf b;
    int r;

    qs_buf_init(&b, 0);
    r = vsh_table_format(t, true, &b);
    if (r == 0)
        r = vsh_buf_write(fp, &b);
    qs_buf_release(&b);
    return r;
}

int vsh_time_format(long long t, struct qs_buf *out)
{
    time_t tt = (time_t)t;
    struct tm tm;
    long off, y;
    char s[64];

    /* strftime("%Y-%m-%d %H:%M:%S %z") by hand: strftime (or snprintf) costs as much as everything else in
     * a row of a 10,000-snapshot listing */
    if (!localtime_r(&tt, &tm))
        return qs_buf_adds(out, "");
    off = tm.tm_gmtoff / 60;
    y = (long)tm.tm_year + 1900;
    if (y < 0 || y > 9999 || off <= -100 * 60 || off >= 100 * 60) {
        if (strftime(s, sizeof(s), "%Y-%m-%d %H:%M:%S %z", &tm) == 0)
            return qs_buf_adds(out, "");
        return qs_buf_adds(out, s);
    }
    {
        const long f[] = {y, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, labs(off) / 60, labs(off) % 60};
        const char sep[] = {'-', '-', ' ', ':', ':', ' ', 0, 0};
        char *p = s;
        for (size_t i = 0; i < 8; i++) {
            if (i == 0) {
                *p++ = (char)('0' + f[0] / 1000);
                *p++ = (char)('0' + f[0] / 100 % 10);
            }
            *p++ = (char)('0' + f[i] / 10 % 10);
            *p++ = (char)('0' + f[i] % 10);
            if (sep[i])
                *p++ = sep[i];
            if (i == 5)
                *p++ = off < 0 ? '-' : '+';
        }
        return qs_buf_add(out, s, (size_t)(p - s));
    }
}

int vsh_snap_name_cmp(const char *a, const char *b)
{
    int r = strcasecmp(a, b);
    return r ? r : strcmp(a, b);
}

static int snap_row_cmp(const void *a, const void *b)
{
    const struct vsh_snap_row *ra = a, *rb = b;
    return vsh_snap_name_cmp(ra->name, rb->name);
}

void vsh_snap_rows_sort(struct vsh_snap_row *rows, size_t n)
{
    size_t i = 1;

    /* the engine lists in this order already: only an added row is out of place */
    while (i < n && snap_row_cmp(&rows[i - 1], &rows[i]) <= 0)
        i++;
    if (i < n)
        qsort(rows, n, sizeof(*rows), snap_row_cmp);
}

struct snap_table {
    const struct vsh_snap_row *rows;
};

static const char *snap_cell(const void *src, size_t row, size_t col, struct qs_buf *scratch, bool measuring)
{
    static const char *const titles[] = {"Name", "Creation Time", "State", "Parent"};
    const struct vsh_snap_row *r;

    if (row == 0)
        return titles[col];
    r = &((const struct snap_table *)src)->rows[row - 1];
    switch (col) {
    case 0:
        return r->name;
    case 1:
        /* "YYYY-MM-DD HH:MM:SS +hhmm" is 25 columns for every time two days clear of years 1 and 9999 (no
         * UTC offset reaches a day): no need to ask localtime_r() a second time per row to know it */
        if (measuring && r->creation_time > -62135596800ll + 172800 && r->creation_time < 253402300799ll - 172800)
            return "0000-00-00 00:00:00 +0000";
        qs_buf_reset(scratch);
        vsh_time_format(r->creation_time, scratch);
        return scratch->data ? scratch->data : "";
    case 2:
        return r->state;
    default:
        return r->parent;
    }
}

static int snap_list_table(const struct vsh_snap_row *rows, size_t n, bool with_parent, bool quiet,
                           struct qs_buf *out, FILE *fp)
{
    struct snap_table st = {rows};
    return table_render(&st, n + 1, with_parent ? 4 : 3, snap_cell, !quiet, out, fp);
}

int vsh_snap_list_format(const struct vsh_snap_row *rows, size_t n, enum vsh_list_mode mode, bool quiet,
                         struct qs_buf *out)
{
    return vsh_snap_list_format_to(rows, n, mode, quiet, out, NULL);
}

int vsh_snap_list_format_to(const struct vsh_snap_row *rows, size_t n, enum vsh_list_mode mode, bool quiet,
                            struct qs_buf *out, FILE *fp)
{
    struct vsh_tree_node *nodes = NULL;
    int r = 0;

    switch (mode) {
    case VSH_LIST_TABLE:
    case VSH_LIST_TABLE_PARENT:
        r = snap_list_table(rows, n, mode == VSH_LIST_TABLE_PARENT, quiet, out, fp);
        break;
    case VSH_LIST_NAMES:
        for (size_t i = 0; i < n && r == 0; i++) {
            r = qs_buf_adds(out, rows[i].name);
            if (r == 0)
                r = qs_buf_adds(out, "\n");
            if (r == 0)
                r = flush_full(out, fp);
        }
        break;
    case VSH_LIST_TREE:
        nodes = qs_xcalloc(n ? n : 1, sizeof(*nodes));
        for (size_t i = 0; i < n; i++) {
            nodes[i].name = rows[i].name;
            nodes[i].parent = rows[i].parent;
        }
        r = vsh_tree_format(nodes, n, out);
        break;
    }
    free(nodes);
    return r;
}

struct tree_ctx {
    const struct vsh_tree_node *nodes;
    size_t n;
    size_t *parent; /* index of each node's parent, or n for a root */
    struct qs_buf indent;
    struct qs_buf *out;
};

static const char *indent_str(const struct tree_ctx *c)
{
    return c->indent.data ? c->indent.data : "";
}

static void indent_truncate(struct tree_ctx *c, size_t len)
{
    c->indent.len = len;
    if (c->indent.data)
        c->indent.data[len] = '\0';
}

/*
 * One node, then a "|" line when it has children, then the children (the last one marked). A last child
 * without children closes its branch with a line of the indent alone: the blank-looking lines of virsh.
 */
static int tree_node(struct tree_ctx *c, size_t idx, bool root, bool last)
{
    size_t mark = c->indent.len, lastchild = c->n, i;
    int r;

    if ((r = qs_buf_addf(c->out, "%s%s%s\n", indent_str(c), root ? "" : "+- ", c->nodes[idx].name)) < 0)
        goto out;
    if (!root && (r = qs_buf_adds(&c->indent, last ? "  " : "| ")) < 0)
        goto out;
    for (i = 0; i < c->n; i++)
        if (c->parent[i] == idx)
            lastchild = i;
    if (lastchild == c->n) {
        if (last)
            r = qs_buf_addf(c->out, "%s\n", indent_str(c));
        goto out;
    }
    if ((r = qs_buf_addf(c->out, "%s  |\n", indent_str(c))) < 0 || (r = qs_buf_adds(&c->indent, "  ")) < 0)
        goto out;
    for (i = 0; i < c->n && r == 0; i++)
        if (c->parent[i] == idx)
            r = tree_node(c, i, false, i == lastchild);
out:
    indent_truncate(c, mark);
    return r;
}

int vsh_tree_format(const struct vsh_tree_node *nodes, size_t n, struct qs_buf *out)
{
    struct tree_ctx c = {.nodes = nodes, .n = n, .out = out};
    int r = 0;

    if (n == 0)
        return 0;
    c.parent = qs_xcalloc(n, sizeof(*c.parent));
    qs_buf_init(&c.indent, 0);
    for (size_t i = 0; i < n; i++) {
        c.parent[i] = n;
        if (!nodes[i].parent)
            continue;
        for (size_t j = 0; j < n; j++) {
            if (j != i && strcmp(nodes[j].name, nodes[i].parent) == 0) {
                c.parent[i] = j;
                break;
            }
        }
    }
    /* a root is its own "last" sibling: a root without children is followed by an empty line */
    for (size_t i = 0; i < n && r == 0; i++)
        if (c.parent[i] == n)
            r = tree_node(&c, i, true, true);
    qs_buf_release(&c.indent);
    free(c.parent);
    return r;
}

int vsh_kv_format(struct qs_buf *out, const char *label, const char *value)
{
    return qs_buf_addf(out, "%-15s %s\n", label, value ? value : "");
}

int vsh_snap_info_format(const struct vsh_snap_info *info, struct qs_buf *out)
{
    char num[32];
    int r = 0;

    r |= vsh_kv_format(out, "Name:", info->name);
    r |= vsh_kv_format(out, "Domain:", info->domain);
    r |= vsh_kv_format(out, "Current:", info->current ? "yes" : "no");
    r |= vsh_kv_format(out, "State:", info->state);
    r |= vsh_kv_format(out, "Location:", info->location);
    r |= vsh_kv_format(out, "Parent:", info->parent ? info->parent : "-");
    if (info->children >= 0) {
        snprintf(num, sizeof(num), "%ld", info->children);
        r |= vsh_kv_format(out, "Children:", num);
        snprintf(num, sizeof(num), "%ld", info->descendants);
        r |= vsh_kv_format(out, "Descendants:", num);
    }
    r |= vsh_kv_format(out, "Metadata:", info->metadata ? "yes" : "no");
    if (info->pause)
        r |= vsh_kv_format(out, "Guest pause:", info->pause);
    return r ? -1 : 0;
}

static const char *const msg_formats[] = {
    [VSH_MSG_CREATED] = "Domain snapshot %s created",
    [VSH_MSG_CREATED_FROM] = "Domain snapshot %s created from '%s'",
    [VSH_MSG_SET_CURRENT] = "Snapshot %s set as current",
    [VSH_MSG_REVERTED] = "Domain snapshot %s reverted\n",
    [VSH_MSG_DELETED] = "Domain snapshot %s deleted\n",
    [VSH_MSG_CHILDREN_DELETED] = "Domain snapshot %s children deleted\n",
    [VSH_MSG_EDITED] = "Snapshot %s edited.\n",
    [VSH_MSG_NOT_CHANGED] = "Snapshot %s XML configuration not changed.\n",
    [VSH_MSG_CLONED] = "Snapshot %s cloned to %s.\n",
};
_Static_assert(sizeof(msg_formats) / sizeof(msg_formats[0]) == VSH_MSG__LAST, "one format per message");

int vsh_msg_format(struct qs_buf *out, enum vsh_msg msg, const char *name, const char *arg, bool quiet)
{
    const char *fmt;

    if (quiet)
        return 0;
    if ((int)msg < 0 || msg >= VSH_MSG__LAST)
        return -1;
    fmt = msg_formats[msg];
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    return qs_buf_addf(out, fmt, name ? name : "", arg ? arg : "");
#pragma GCC diagnostic pop
}
