/* test_vsh_output.c: the virsh output layer against the virsh 9.0 golden files in tests/cli/golden. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qs_buf.h"
#include "qs_util.h"
#include "vsh_output.h"

#define CAFE "cafe\xcc\x81"                         /* e + U+0301 COMBINING ACUTE ACCENT */
#define CJK "\xe5\xbf\xab\xe7\x85\xa7-\xe4\xb8\x80" /* 快照-一: display width 7 */

/* The vm1 fixture of regen.sh, in the order it is defined (not sorted). */
static const struct vsh_snap_row vm1[] = {
    {"base", 1700000000, "shutoff", NULL},
    {"after update", 1700003600, "running", "base"},
    {CAFE, 1700007200, "paused", "base"},
    {CJK, 1700010800, "running", "after update"},
    {"ext-mem", 1700014400, "running", "after update"},
    {"disk-only", 1700018000, "disk-snapshot", "ext-mem"},
    {"Beta", 1700021600, "shutoff", NULL},
    {"alpha", 1700025200, "shutoff", "base"},
};
#define VM1_N (sizeof(vm1) / sizeof(vm1[0]))

/* The odd fixture, in the order virsh printed it (dup / DUP tie: see doc/virsh-output.md). */
static const struct vsh_snap_row odd[] = {
    {"back\\\\xslash", 1700000120, "shutoff", NULL},
    {"dup", 1700000180, "shutoff", NULL},
    {"DUP", 1700000240, "shutoff", NULL},
    {"nel\xc2\x85x", 1700000060, "shutoff", "tab\tname"},
    {"tab\tname", 1700000000, "shutoff", NULL},
};

struct golden {
    char *out, *err;
    size_t out_len, err_len;
    int rc;
};

static char *slurp(const char *name, const char *ext, size_t *len)
{
    const char *src = getenv("QSNAP_SOURCE_DIR");
    char *path = qs_asprintf("%s/tests/cli/golden/%s.%s", src ? src : ".", name, ext);
    FILE *fp = fopen(path, "rb");
    struct qs_buf b;
    char chunk[4096];
    size_t n;

    if (!fp)
        fail_msg("cannot open golden file '%s'", path);
    qs_buf_init(&b, 0);
    while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
        qs_buf_add(&b, chunk, n);
    fclose(fp);
    free(path);
    return qs_buf_detach(&b, len);
}

static void golden_load(const char *name, struct golden *g)
{
    char *rc;
    size_t len;

    g->out = slurp(name, "out", &g->out_len);
    g->err = slurp(name, "err", &g->err_len);
    rc = slurp(name, "rc", &len);
    g->rc = atoi(rc);
    free(rc);
}

static void golden_release(struct golden *g)
{
    free(g->out);
    free(g->err);
}

/* Prints both sides with control and non-ASCII bytes visible. */
static void dump(const char *what, const char *s, size_t len)
{
    fprintf(stderr, "--- %s (%zu bytes):\n", what, len);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n')
            fputs("$\n", stderr);
        else if (c < 0x20 || c >= 0x7f)
            fprintf(stderr, "<%02x>", c);
        else
            fputc(c, stderr);
    }
    fputs("[end]\n", stderr);
}

static void expect_same(const char *name, const char *stream, const char *want, size_t want_len,
                        const struct qs_buf *got)
{
    const char *g = got->data ? got->data : "";
    if (want_len != got->len || memcmp(want, g, want_len) != 0) {
        fprintf(stderr, "golden case '%s': %s differs\n", name, stream);
        dump("virsh", want, want_len);
        dump("qsnap", g, got->len);
        fail_msg("golden case '%s': %s differs from virsh", name, stream);
    }
}

/* Compares stdout, stderr and the exit status of golden case NAME with what the formatters produced. */
static void check(const char *name, const struct qs_buf *out, const struct qs_buf *err, int rc)
{
    struct golden g;

    golden_load(name, &g);
    expect_same(name, "stdout", g.out, g.out_len, out);
    expect_same(name, "stderr", g.err, g.err_len, err);
    if (g.rc != rc)
        fail_msg("golden case '%s': exit status %d, virsh %d", name, rc, g.rc);
    golden_release(&g);
}

/* A snapshot-list case: stdout only, exit 0. */
static void check_out(const char *name, const struct qs_buf *out)
{
    struct qs_buf err;
    qs_buf_init(&err, 0);
    check(name, out, &err, 0);
    qs_buf_release(&err);
}

static const struct vsh_snap_row *vm1_find(const char *name)
{
    for (size_t i = 0; i < VM1_N; i++)
        if (strcmp(vm1[i].name, name) == 0)
            return &vm1[i];
    fail_msg("no snapshot '%s' in the fixture", name);
    return NULL;
}

static size_t children(const char *name)
{
    size_t n = 0;
    for (size_t i = 0; i < VM1_N; i++)
        n += vm1[i].parent && strcmp(vm1[i].parent, name) == 0;
    return n;
}

static size_t descendants(const char *name)
{
    size_t n = 0;
    for (size_t i = 0; i < VM1_N; i++)
        if (vm1[i].parent && strcmp(vm1[i].parent, name) == 0)
            n += 1 + descendants(vm1[i].name);
    return n;
}

/* What the engine would hand the CLI for a filter: the vm1 rows for which KEEP is true, unsorted. */
typedef int (*keep_fn)(const struct vsh_snap_row *r, const void *arg);

static size_t vm1_select(struct vsh_snap_row *rows, keep_fn keep, const void *arg)
{
    size_t n = 0;
    for (size_t i = 0; i < VM1_N; i++)
        if (!keep || keep(&vm1[i], arg))
            rows[n++] = vm1[i];
    return n;
}

static int keep_root(const struct vsh_snap_row *r, const void *arg)
{
    (void)arg;
    return r->parent == NULL;
}

static int keep_leaf(const struct vsh_snap_row *r, const void *arg)
{
    (void)arg;
    return children(r->name) == 0;
}

static int keep_inner(const struct vsh_snap_row *r, const void *arg)
{
    (void)arg;
    return children(r->name) != 0;
}

static int keep_child_of(const struct vsh_snap_row *r, const void *arg)
{
    return r->parent && strcmp(r->parent, arg) == 0;
}

static int keep_descendant_of(const struct vsh_snap_row *r, const void *arg)
{
    while (r->parent) {
        if (strcmp(r->parent, arg) == 0)
            return 1;
        r = vm1_find(r->parent);
    }
    return 0;
}

/* --from X --tree: X itself plus its children (or descendants), X drawn as the root. */
static int keep_self_and_children(const struct vsh_snap_row *r, const void *arg)
{
    return strcmp(r->name, arg) == 0 || keep_child_of(r, arg);
}

static void list_case(const char *name, keep_fn keep, const void *arg, enum vsh_list_mode mode, bool quiet)
{
    struct vsh_snap_row rows[VM1_N];
    struct qs_buf out;
    size_t n = vm1_select(rows, keep, arg);

    qs_buf_init(&out, 0);
    vsh_snap_rows_sort(rows, n);
    assert_int_equal(vsh_snap_list_format(rows, n, mode, quiet, &out), 0);
    vsh_command_end(&out, quiet);
    check_out(name, &out);
    qs_buf_release(&out);
}

static int setup_utc(void **state)
{
    (void)state;
    setenv("TZ", "UTC", 1);
    tzset();
    return 0;
}

static void test_list_table(void **state)
{
    (void)state;
    list_case("list-plain", NULL, NULL, VSH_LIST_TABLE, false);
    list_case("list-parent", NULL, NULL, VSH_LIST_TABLE_PARENT, false);
    list_case("list-roots", keep_root, NULL, VSH_LIST_TABLE, false);
    list_case("list-leaves", keep_leaf, NULL, VSH_LIST_TABLE, false);
    list_case("list-no-leaves", keep_inner, NULL, VSH_LIST_TABLE, false);
    list_case("list-from", keep_child_of, "base", VSH_LIST_TABLE, false);
    list_case("list-from-parent", keep_child_of, "base", VSH_LIST_TABLE_PARENT, false);
    list_case("list-extra-arg", keep_child_of, "base", VSH_LIST_TABLE, false);
    list_case("list-from-descendants", keep_descendant_of, "base", VSH_LIST_TABLE, false);
    list_case("list-from-descendants-parent", keep_descendant_of, "base", VSH_LIST_TABLE_PARENT, false);
    list_case("list-current", keep_child_of, "after update", VSH_LIST_TABLE, false);
    list_case("list-current-descendants", keep_descendant_of, "after update", VSH_LIST_TABLE, false);
    list_case("list-from-leaf", keep_child_of, "alpha", VSH_LIST_TABLE, false);
    list_case("list-quiet", NULL, NULL, VSH_LIST_TABLE, true);
}

static void test_list_names(void **state)
{
    (void)state;
    list_case("list-name", NULL, NULL, VSH_LIST_NAMES, false);
    list_case("list-name-parent", NULL, NULL, VSH_LIST_NAMES, false);
    list_case("list-name-leaves", keep_leaf, NULL, VSH_LIST_NAMES, false);
    list_case("list-from-name", keep_child_of, "base", VSH_LIST_NAMES, false);
    list_case("list-current-name", keep_child_of, "after update", VSH_LIST_NAMES, false);
    list_case("list-quiet-name", NULL, NULL, VSH_LIST_NAMES, true);
}

static void test_list_tree(void **state)
{
    (void)state;
    list_case("list-tree", NULL, NULL, VSH_LIST_TREE, false);
    list_case("list-quiet-tree", NULL, NULL, VSH_LIST_TREE, true);
    list_case("list-tree-metadata", NULL, NULL, VSH_LIST_TREE, false);
    list_case("list-tree-no-metadata", keep_child_of, "nothing", VSH_LIST_TREE, false);
    list_case("list-from-tree", keep_self_and_children, "after update", VSH_LIST_TREE, false);
    list_case("list-current-tree", keep_self_and_children, "after update", VSH_LIST_TREE, false);
    list_case("list-from-tree-root", keep_self_and_children, "base", VSH_LIST_TREE, false);
    list_case("list-from-leaf-tree", keep_self_and_children, "alpha", VSH_LIST_TREE, false);
}

/* --topological: the order is the engine's (parents first); the formatters keep it as given. */
static void test_list_topological(void **state)
{
    static const char *const order[] = {"Beta", "base", "after update", "ext-mem", "disk-only", CJK, "alpha",
                                        CAFE};
    struct vsh_snap_row rows[VM1_N];
    struct qs_buf out;
    (void)state;

    for (size_t i = 0; i < VM1_N; i++)
        rows[i] = *vm1_find(order[i]);
    qs_buf_init(&out, 0);
    vsh_snap_list_format(rows, VM1_N, VSH_LIST_TABLE, false, &out);
    vsh_command_end(&out, false);
    check_out("list-topological", &out);
    qs_buf_reset(&out);
    vsh_snap_list_format(rows, VM1_N, VSH_LIST_TABLE_PARENT, false, &out);
    vsh_command_end(&out, false);
    check_out("list-topological-parent", &out);
    qs_buf_reset(&out);
    vsh_snap_list_format(rows, VM1_N, VSH_LIST_NAMES, false, &out);
    vsh_command_end(&out, false);
    check_out("list-name-topological", &out);
    qs_buf_reset(&out);
    vsh_snap_list_format(rows, VM1_N, VSH_LIST_TREE, false, &out);
    vsh_command_end(&out, false);
    check_out("list-tree-topological", &out);
    qs_buf_release(&out);
}

static void test_list_empty(void **state)
{
    (void)state;
    list_case("list-empty", keep_child_of, "nothing", VSH_LIST_TABLE, false);
    list_case("list-empty-parent", keep_child_of, "nothing", VSH_LIST_TABLE_PARENT, false);
    list_case("list-empty-name", keep_child_of, "nothing", VSH_LIST_NAMES, false);
    list_case("list-empty-tree", keep_child_of, "nothing", VSH_LIST_TREE, false);
    list_case("list-empty-quiet", keep_child_of, "nothing", VSH_LIST_TABLE, true);
    list_case("list-leaves-no-leaves", keep_child_of, "nothing", VSH_LIST_TABLE, false);
    list_case("list-no-metadata", keep_child_of, "nothing", VSH_LIST_TABLE, false);
}

static void test_list_time_zones(void **state)
{
    (void)state;
    setenv("TZ", "America/New_York", 1);
    tzset();
    list_case("list-tz", NULL, NULL, VSH_LIST_TABLE, false);
    setenv("TZ", "Asia/Kolkata", 1);
    tzset();
    list_case("list-tz-half", keep_root, NULL, VSH_LIST_TABLE, false);
    setup_utc(NULL);
}

static void test_list_escapes(void **state)
{
    const size_t n = sizeof(odd) / sizeof(odd[0]);
    struct vsh_tree_node nodes[sizeof(odd) / sizeof(odd[0])];
    static const size_t tree_order[] = {0, 2, 1, 3, 4}; /* virsh drew DUP before dup here */
    struct qs_buf out;
    (void)state;

    qs_buf_init(&out, 0);
    vsh_snap_list_format(odd, n, VSH_LIST_TABLE_PARENT, false, &out);
    vsh_command_end(&out, false);
    check_out("list-odd", &out);
    qs_buf_reset(&out);
    vsh_snap_list_format(odd, n, VSH_LIST_NAMES, false, &out);
    vsh_command_end(&out, false);
    check_out("list-odd-name", &out);
    qs_buf_reset(&out);
    for (size_t i = 0; i < n; i++) {
        nodes[i].name = odd[tree_order[i]].name;
        nodes[i].parent = odd[tree_order[i]].parent;
    }
    vsh_tree_format(nodes, n, &out);
    vsh_command_end(&out, false);
    check_out("list-odd-tree", &out);
    qs_buf_release(&out);
}

/* A long listing written out as it is made comes out byte for byte as the whole one, in every mode, and
 * never holds much more than 64 KiB. */
static void test_list_streamed(void **state)
{
    enum { N = 5000 };
    static const enum vsh_list_mode modes[] = {VSH_LIST_TABLE, VSH_LIST_TABLE_PARENT, VSH_LIST_NAMES};
    struct vsh_snap_row *rows = calloc(N, sizeof(*rows));
    char (*names)[32] = calloc(N, sizeof(*names));
    (void)state;

    for (size_t i = 0; i < N; i++) {
        snprintf(names[i], sizeof(names[i]), "snapshot-number-%05zu", i);
        rows[i] = (struct vsh_snap_row){names[i], 1700000000 + (long long)i, "running", i ? names[i - 1] : NULL};
    }
    for (size_t m = 0; m < sizeof(modes) / sizeof(modes[0]); m++) {
        struct qs_buf whole, part;
        char *got = NULL;
        size_t gotlen = 0;
        FILE *fp = open_memstream(&got, &gotlen);

        qs_buf_init(&whole, 0);
        qs_buf_init(&part, 0);
        assert_int_equal(vsh_snap_list_format(rows, N, modes[m], false, &whole), 0);
        assert_int_equal(vsh_snap_list_format_to(rows, N, modes[m], false, &part, fp), 0);
        assert_true(part.len < ((size_t)64 << 10) + 256);
        assert_true(whole.len > part.len);
        assert_int_equal(fwrite(part.data, 1, part.len, fp), part.len);
        assert_int_equal(fclose(fp), 0);
        assert_int_equal(gotlen, whole.len);
        assert_memory_equal(got, whole.data, whole.len);
        free(got);
        qs_buf_release(&whole);
        qs_buf_release(&part);
    }
    free(names);
    free(rows);
}

static void info_case(const char *name, const char *snap, const char *current)
{
    const struct vsh_snap_row *r = vm1_find(snap);
    const char *loc = (strcmp(snap, "ext-mem") == 0 || strcmp(snap, "disk-only") == 0) ? "external" : "internal";
    struct vsh_snap_info info = {
        .name = r->name,
        .domain = "vm1",
        .current = strcmp(snap, current) == 0,
        .state = r->state,
        .location = loc,
        .parent = r->parent,
        .children = (long)children(snap),
        .descendants = (long)descendants(snap),
        .metadata = true,
    };
    struct qs_buf out;

    qs_buf_init(&out, 0);
    assert_int_equal(vsh_snap_info_format(&info, &out), 0);
    vsh_command_end(&out, false);
    check_out(name, &out);
    qs_buf_release(&out);
}

static void test_info(void **state)
{
    (void)state;
    info_case("info-current-snap", "after update", "after update");
    info_case("info-current", "after update", "after update");
    info_case("info-noncurrent", "base", "after update");
    info_case("info-option", "base", "after update");
    info_case("info-leaf", "alpha", "after update");
    info_case("info-root-leaf", "Beta", "after update");
    info_case("info-external", "ext-mem", "after update");
    info_case("info-disk-only", "disk-only", "after update");
    info_case("info-paused", CAFE, "after update");
}

/* Commands that print a bare name: snapshot-parent, snapshot-current --name (no newline of their own). */
static void name_case(const char *name, const char *value, bool quiet)
{
    struct qs_buf out;

    qs_buf_init(&out, 0);
    qs_buf_adds(&out, value);
    vsh_command_end(&out, quiet);
    check_out(name, &out);
    qs_buf_release(&out);
}

static void test_names(void **state)
{
    (void)state;
    name_case("parent-has", "base", false);
    name_case("parent-deep", "ext-mem", false);
    name_case("parent-cjk", "after update", false);
    name_case("parent-current", "base", false);
    name_case("current-name", "after update", false);
    name_case("current-quiet-name", "after update", true);
}

static void msg_case(const char *name, enum vsh_msg msg, const char *snap, const char *arg, bool quiet)
{
    struct qs_buf out;

    qs_buf_init(&out, 0);
    assert_int_equal(vsh_msg_format(&out, msg, snap, arg, quiet), 0);
    vsh_command_end(&out, quiet);
    check_out(name, &out);
    qs_buf_release(&out);
}

static void test_messages(void **state)
{
    (void)state;
    msg_case("create-as", VSH_MSG_CREATED, "s1", NULL, false);
    msg_case("create-as-option", VSH_MSG_CREATED, "s1", NULL, false);
    msg_case("create-as-quiet", VSH_MSG_CREATED, "s1", NULL, true);
    msg_case("create-as-invalid-name", VSH_MSG_CREATED, "a/b", NULL, false);
    msg_case("create-xml", VSH_MSG_CREATED_FROM, "fromxml", "new.xml", false);
    msg_case("create-redefine", VSH_MSG_CREATED_FROM, "base", "s1.xml", false);
    msg_case("current-set", VSH_MSG_SET_CURRENT, "base", NULL, false);
    msg_case("current-set-option", VSH_MSG_SET_CURRENT, "alpha", NULL, false);
    msg_case("revert", VSH_MSG_REVERTED, "base", NULL, false);
    msg_case("revert-current", VSH_MSG_REVERTED, "after update", NULL, false);
    msg_case("delete", VSH_MSG_DELETED, "alpha", NULL, false);
    msg_case("delete-quiet", VSH_MSG_DELETED, "alpha", NULL, true);
    msg_case("delete-children-only-leaf", VSH_MSG_CHILDREN_DELETED, "alpha", NULL, false);
    msg_case("edit-description", VSH_MSG_EDITED, "base", NULL, false);
    msg_case("edit-unchanged", VSH_MSG_NOT_CHANGED, "base", NULL, false);
}

/* Two commands in one run: the message, then the tree of what is left. */
static void test_delete_then_tree(void **state)
{
    const struct vsh_tree_node after_children[] = {
        {"base", NULL}, {"alpha", "base"}, {CAFE, "base"}, {"Beta", NULL}};
    /* deleting 'after update' alone hands its children to its parent (sorted again by name) */
    const struct vsh_tree_node after_middle[] = {
        {"base", NULL}, {"alpha", "base"}, {CAFE, "base"}, {"disk-only", "ext-mem"},
        {"ext-mem", "base"}, {CJK, "base"}, {"Beta", NULL}};
    const struct vsh_tree_node after_children_only[] = {{"base", NULL}, {"Beta", NULL}};
    struct qs_buf out;
    (void)state;

    qs_buf_init(&out, 0);
    vsh_msg_format(&out, VSH_MSG_DELETED, "after update", NULL, false);
    vsh_command_end(&out, false);
    vsh_tree_format(after_children, 4, &out);
    vsh_command_end(&out, false);
    check_out("delete-children", &out);

    qs_buf_reset(&out);
    vsh_msg_format(&out, VSH_MSG_DELETED, "after update", NULL, false);
    vsh_command_end(&out, false);
    vsh_tree_format(after_middle, 7, &out);
    vsh_command_end(&out, false);
    check_out("delete-middle", &out);

    qs_buf_reset(&out);
    vsh_msg_format(&out, VSH_MSG_CHILDREN_DELETED, "base", NULL, false);
    vsh_command_end(&out, false);
    vsh_tree_format(after_children_only, 2, &out);
    vsh_command_end(&out, false);
    check_out("delete-children-only", &out);
    qs_buf_release(&out);
}

/* A failed command: "error: ..." on stderr; stdout gets virsh's per-command newline unless the error came
 * from option parsing (the command never ran). */
static void error_case(const char *name, bool parsed, const char *fmt, const char *a, const char *b)
{
    struct qs_buf out, err;
    char *msg;

    qs_buf_init(&out, 0);
    qs_buf_init(&err, 0);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    msg = qs_asprintf(fmt, a, b);
#pragma GCC diagnostic pop
    vsh_error_format(&err, msg);
    if (parsed)
        vsh_command_end(&out, false);
    check(name, &out, &err, 1);
    free(msg);
    qs_buf_release(&out);
    qs_buf_release(&err);
}

static void test_errors(void **state)
{
    (void)state;
    error_case("info-unknown", true, VSH_ERR_NO_SNAPSHOT, "nope", NULL);
    error_case("list-from-unknown", true, VSH_ERR_NO_SNAPSHOT, "nope", NULL);
    error_case("delete-unknown", true, VSH_ERR_NO_SNAPSHOT, "nope", NULL);
    error_case("revert-unknown", true, VSH_ERR_NO_SNAPSHOT, "nope", NULL);
    error_case("dumpxml-unknown", true, VSH_ERR_NO_SNAPSHOT, "nope", NULL);
    error_case("info-no-current", true, VSH_ERR_NO_CURRENT, NULL, NULL);
    error_case("list-current-none", true, VSH_ERR_NO_CURRENT, NULL, NULL);
    error_case("current-none", true, VSH_ERR_NO_CURRENT_NAME, "vm1", NULL);
    error_case("list-unknown-domain", true, VSH_ERR_NO_DOMAIN, "nodom", NULL);
    error_case("parent-root", true, VSH_ERR_NO_PARENT, "base", NULL);
    error_case("info-missing-name", true, VSH_ERR_NAME_OR_CURRENT, NULL, NULL);
    error_case("info-name-and-current", true, VSH_ERR_NAME_AND_CURRENT, NULL, NULL);
    error_case("list-tree-parent", true, VSH_ERR_EXCLUSIVE, "parent", "tree");
    error_case("list-roots-from", true, VSH_ERR_EXCLUSIVE, "roots", "from");
    error_case("list-tree-name", true, VSH_ERR_EXCLUSIVE, "tree", "name");
    error_case("create-as-exists", true, VSH_ERR_EXISTS, "t1", NULL);
    error_case("list-from-current", true, VSH_ERR_EXCLUSIVE_SHORT, "from", "current");
    error_case("list-tree-inactive", true, VSH_ERR_EXCLUSIVE_SHORT, "inactive", "tree");
    error_case("list-tree-leaves-external", true, VSH_ERR_EXCLUSIVE_SHORT, "leaves", "tree");
    error_case("list-descendants-alone", true, VSH_ERR_DESCENDANTS, NULL, NULL);
    error_case("unknown-command", false, VSH_ERR_UNKNOWN_COMMAND, "snapshot-frob", NULL);
    error_case("list-unknown-option", false, VSH_ERR_UNKNOWN_OPTION, "snapshot-list", "foo");
    error_case("list-missing-domain", false, VSH_ERR_REQUIRED_OPTION, "snapshot-list", "domain");
    error_case("list-from-missing-value", false, VSH_ERR_OPTION_SYNTAX, "from", "string");
}

/* --print-xml prints the document and one more newline. */
static void test_print_xml(void **state)
{
    struct qs_buf out;
    (void)state;

    qs_buf_init(&out, 0);
    qs_buf_adds(&out, "<domainsnapshot>\n  <name>s1</name>\n</domainsnapshot>\n");
    qs_buf_adds(&out, "\n");
    vsh_command_end(&out, false);
    check_out("create-as-print-xml-name", &out);
    qs_buf_release(&out);
}

static void test_widths(void **state)
{
    struct qs_buf b;
    size_t w = 99;
    (void)state;

    assert_int_equal(vsh_cell_width("after update"), 12);
    assert_int_equal(vsh_cell_width(CJK), 7);
    assert_int_equal(vsh_cell_width(CAFE), 4);
    assert_int_equal(vsh_cell_width("tab\tname"), 11);
    assert_int_equal(vsh_cell_width(""), 0);
    assert_int_equal(vsh_cell_width(NULL), 0);
    qs_buf_init(&b, 0);
    vsh_cell_encode(&b, "a\\xb\xff" "c\x7f", &w);
    assert_string_equal(b.data, "a\\x5cxb\\xffc\\x7f");
    assert_int_equal(w, 1 + 4 + 2 + 4 + 1 + 4);
    qs_buf_release(&b);
}

static void test_sort(void **state)
{
    struct vsh_snap_row rows[] = {{"b", 0, "", NULL}, {"B", 0, "", NULL}, {"a", 0, "", NULL},
                                  {"\xe5\xbf\xab", 0, "", NULL}, {"Z", 0, "", NULL}};
    (void)state;

    vsh_snap_rows_sort(rows, 5);
    assert_string_equal(rows[0].name, "a");
    assert_string_equal(rows[1].name, "B"); /* tie on case: byte order */
    assert_string_equal(rows[2].name, "b");
    assert_string_equal(rows[3].name, "Z");
    assert_string_equal(rows[4].name, "\xe5\xbf\xab");
}

static void test_table_generic(void **state)
{
    static const char *const hdr[] = {"A", "Long title"};
    static const char *const row[] = {"wider cell", NULL};
    struct vsh_table *t = vsh_table_new(2, hdr);
    struct qs_buf out;
    (void)state;

    vsh_table_add_row(t, row);
    qs_buf_init(&out, 0);
    vsh_table_format(t, true, &out);
    assert_string_equal(out.data, " A            Long title\n"
                                  "--------------------------\n" /* (10 + 3) * 2 */
                                  " wider cell   \n");
    qs_buf_reset(&out);
    vsh_table_format(t, false, &out);
    assert_string_equal(out.data, " wider cell   \n");
    qs_buf_release(&out);
    vsh_table_free(t);
    vsh_table_free(NULL);
}

static void test_time(void **state)
{
    struct qs_buf out;
    (void)state;

    qs_buf_init(&out, 0);
    vsh_time_format(1700000000, &out);
    assert_string_equal(out.data, "2023-11-14 22:13:20 +0000");
    qs_buf_release(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_widths),
        cmocka_unit_test(test_sort),
        cmocka_unit_test(test_table_generic),
        cmocka_unit_test(test_time),
        cmocka_unit_test(test_list_table),
        cmocka_unit_test(test_list_names),
        cmocka_unit_test(test_list_tree),
        cmocka_unit_test(test_list_topological),
        cmocka_unit_test(test_list_empty),
        cmocka_unit_test(test_list_time_zones),
        cmocka_unit_test(test_list_escapes),
        cmocka_unit_test(test_info),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_messages),
        cmocka_unit_test(test_delete_then_tree),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_list_streamed),
        cmocka_unit_test(test_print_xml),
    };
    return cmocka_run_group_tests(tests, setup_utc, NULL);
}
