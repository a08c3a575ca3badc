/* cmd_snapshot.c: virsh's snapshot commands over the engine, with virsh's options and output. */
#include "cli.h"
#include "json_out.h"
#include "qs_buf.h"
#include "qs_file.h"
#include "qs_proc.h"
#include "qs_util.h"
#include "vsh_output.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------------------------------------ */
/* Shared steps. */

/* The engine and the domain, looked up first as virsh does ("failed to get domain 'X'"). */
struct engine *cli_domain_engine(struct cli_ctx *ctx, const char *domain)
{
    struct engine *e = cli_engine(ctx);
    struct qs_error *err = NULL;

    if (!e)
        return NULL;
    if (domain && engine_domain_lookup(e, domain, &err) < 0) {
        if (err->code == QS_ERR_NOTFOUND) {
            qs_error_clear(&err);
            cli_failf(VSH_ERR_NO_DOMAIN, domain);
        } else {
            cli_fail(ctx, &err);
        }
        return NULL;
    }
    return e;
}

/*
 * --snapshotname NAME or --current: the snapshot a command is about, looked up before the command acts as
 * virsh does (an unknown name fails with the lookup's error alone, before "Failed to delete ..."). EXCLUSIVE:
 * both given is an error; otherwise NAME wins (snapshot-edit, where --current also means "make current").
 * Caller frees.
 */
static char *resolve_snapshot_found(struct cli_ctx *ctx, struct engine *e, const struct cli_args *args,
                                    const char *domain, bool exclusive, struct engine_snapshot_list **found)
{
    const char *name = cli_args_str(args, "snapshotname");
    bool current = cli_args_bool(args, "current");
    struct engine_snapshot_list *l = NULL;
    struct qs_error *err = NULL;
    char *out = NULL;

    if (name && current && exclusive) {
        cli_failf("%s", VSH_ERR_NAME_AND_CURRENT);
        return NULL;
    }
    if (name) {
        /* a command that only needs the name: its own lookup under the lock says whether the snapshot is
         * there (an interrupted operation recovered first); this one is for virsh's message alone, which a
         * file that is there cannot need (at 10,000 snapshots the lookup was ~0.8 ms of a delete) */
        if (!found && engine_snapshot_file_present(e, domain, name))
            return qs_xstrdup(name);
        if (engine_snapshot_lookup(e, domain, name, &l, &err) < 0) {
            cli_fail(ctx, &err);
            return NULL;
        }
        if (found)
            *found = l; /* the caller shows it: no second lookup */
        else
            engine_snapshot_list_free(l);
        return qs_xstrdup(name);
    }
    if (!current) {
        cli_failf("%s", VSH_ERR_NAME_OR_CURRENT);
        return NULL;
    }
    if (engine_snapshot_current_name(e, domain, &out, &err) < 0) {
        cli_fail(ctx, &err);
        return NULL;
    }
    if (!out)
        cli_failf("%s", VSH_ERR_NO_CURRENT);
    return out;
}

static char *resolve_snapshot(struct cli_ctx *ctx, struct engine *e, const struct cli_args *args,
                              const char *domain, bool exclusive)
{
    return resolve_snapshot_found(ctx, e, args, domain, exclusive, NULL);
}

static int print_buf(const struct qs_buf *b)
{
    if (vsh_buf_write(stdout, b) < 0) {
        cli_failf("cannot write output: %s", strerror(errno));
        return CLI_EXIT_FAILED;
    }
    return CLI_EXIT_OK;
}

/* One snapshot as a JSON object (the stable --json form); "guest_pause_us" only where the engine knows it
 * (snapshot-info of a --live snapshot). */
static void json_snapshot(struct json_out *j, const char *domain, const struct engine_snapshot *s)
{
    json_out_object_begin(j);
    json_out_kv_string(j, "name", engine_snapshot_name(s));
    json_out_kv_string(j, "domain", domain);
    json_out_kv_string(j, "description", engine_snapshot_description(s));
    json_out_kv_string(j, "state", engine_snapshot_state(s));
    json_out_kv_string(j, "location", engine_snapshot_location(s));
    json_out_kv_int(j, "creation_time", engine_snapshot_creation_time(s));
    json_out_kv_string(j, "parent", engine_snapshot_parent(s));
    json_out_kv_bool(j, "current", engine_snapshot_is_current(s));
    json_out_kv_int(j, "children", (int64_t)engine_snapshot_children(s));
    json_out_kv_int(j, "descendants", (int64_t)engine_snapshot_descendants(s));
    json_out_kv_bool(j, "metadata", true);
    if (engine_snapshot_pause_us(s) >= 0)
        json_out_kv_int(j, "guest_pause_us", engine_snapshot_pause_us(s));
    json_out_object_end(j);
}

/* Prints one snapshot's info block or JSON; L: its lookup already made (taken over), or NULL. */
static int show_info(struct cli_ctx *ctx, struct engine *e, const char *domain, const char *name, bool json,
                     struct engine_snapshot_list *l)
{
    struct qs_error *err = NULL;
    struct qs_buf out;
    const struct engine_snapshot *s;
    int ret;

    if (!l && engine_snapshot_lookup(e, domain, name, &l, &err) < 0)
        return cli_fail(ctx, &err);
    s = engine_snapshot_list_at(l, 0);
    qs_buf_init(&out, 0);
    if (json) {
        struct json_out j;
        json_out_init(&j, &out);
        json_snapshot(&j, domain, s);
    } else {
        char pause[48];
        struct vsh_snap_info info = {
            .name = engine_snapshot_name(s),
            .domain = domain,
            .current = engine_snapshot_is_current(s),
            .state = engine_snapshot_state(s),
            .location = engine_snapshot_location(s),
            .parent = engine_snapshot_parent(s),
            .children = (long)engine_snapshot_children(s),
            .descendants = (long)engine_snapshot_descendants(s),
            .metadata = true,
        };
        if (engine_snapshot_pause_us(s) >= 0) {
            snprintf(pause, sizeof(pause), "%.1f ms", (double)engine_snapshot_pause_us(s) / 1000.0);
            info.pause = pause;
        }
        vsh_snap_info_format(&info, &out);
    }
    ret = print_buf(&out);
    qs_buf_release(&out);
    engine_snapshot_list_free(l);
    return ret;
}

static int show_xml(struct cli_ctx *ctx, struct engine *e, const char *domain, const char *name, bool secure,
                    bool json)
{
    struct qs_error *err = NULL;
    struct qs_buf out;
    char *xml = NULL;
    int ret;

    if (engine_snapshot_get_xml(e, domain, name, secure, &xml, &err) < 0)
        return cli_fail(ctx, &err);
    qs_buf_init(&out, 0);
    if (json) {
        struct json_out j;
        json_out_init(&j, &out);
        json_out_object_begin(&j);
        json_out_kv_string(&j, "name", name);
        json_out_kv_string(&j, "domain", domain);
        json_out_kv_string(&j, "xml", xml);
        json_out_object_end(&j);
    } else {
        qs_buf_adds(&out, xml);
    }
    ret = print_buf(&out);
    qs_buf_release(&out);
    free(xml);
    return ret;
}

static int print_msg(struct cli_ctx *ctx, enum vsh_msg msg, const char *name, const char *arg)
{
    struct qs_buf out;
    int ret;

    qs_buf_init(&out, 0);
    vsh_msg_format(&out, msg, name, arg, ctx->quiet);
    ret = print_buf(&out);
    qs_buf_release(&out);
    return ret;
}

/* ------------------------------------------------------------------------------------------------ */
/* snapshot-create, snapshot-create-as */

static const struct cli_flag create_flag_map[] = {
    {"no-metadata", ENGINE_CREATE_NO_METADATA}, {"halt", ENGINE_CREATE_HALT},
    {"disk-only", ENGINE_CREATE_DISK_ONLY},     {"reuse-external", ENGINE_CREATE_REUSE_EXT},
    {"quiesce", ENGINE_CREATE_QUIESCE},         {"atomic", ENGINE_CREATE_ATOMIC},
    {"live", ENGINE_CREATE_LIVE},               {"validate", ENGINE_CREATE_VALIDATE},
    {"live-fallback", ENGINE_CREATE_LIVE_FALLBACK}, {"precopy", ENGINE_CREATE_PRECOPY},
};

static unsigned create_flags(const struct cli_args *args)
{
    return CLI_ARGS_FLAGS(args, create_flag_map);
}

int cli_xml_file_read(const char *file, char **xml)
{
    struct qs_error *err = NULL;
    size_t len = 0;
    int ret = CLI_EXIT_OK;

    *xml = NULL;
    if (qs_file_read(AT_FDCWD, file, 16u << 20, xml, &len, &err) < 0) {
        /* open and read failures end in ": STRERROR" (qs_error_set_errno); too big, not a file: their text */
        const char *why = err->code == QS_ERR_NOTFOUND || err->code == QS_ERR_IO ? strrchr(err->message, ':') : NULL;
        ret = why ? cli_failf("Failed to open file '%s'%s", file, why) : cli_failf("%s", err->message);
        qs_error_free(err);
    } else if (strlen(*xml) != len) { /* the engine takes a C string: a NUL would cut the document short */
        ret = cli_failf("file '%s' contains a NUL byte: not an XML document", file);
        free(*xml);
        *xml = NULL;
    }
    return ret;
}

static int cmd_create(struct cli_ctx *ctx, const struct cli_args *args)
{
    const char *domain = cli_args_str(args, "domain"), *file = cli_args_str(args, "xmlfile");
    struct engine *e = cli_domain_engine(ctx, domain);
    struct qs_error *err = NULL;
    unsigned flags;
    char *xml = NULL, *name = NULL;
    int ret = CLI_EXIT_FAILED;

    if (!e)
        return CLI_EXIT_FAILED;
    flags = create_flags(args) | (cli_args_bool(args, "redefine") ? ENGINE_CREATE_REDEFINE : 0) |
            (cli_args_bool(args, "current") ? ENGINE_CREATE_CURRENT : 0);
    if (file && cli_xml_file_read(file, &xml) != CLI_EXIT_OK)
        goto out;
    if (engine_snapshot_create(e, domain, xml, flags, &name, &err) < 0) {
        ret = cli_fail(ctx, &err);
        goto out;
    }
    ret = file ? print_msg(ctx, VSH_MSG_CREATED_FROM, name, file) : print_msg(ctx, VSH_MSG_CREATED, name, NULL);
out:
    free(xml);
    free(name);
    return ret;
}

/* virsh's escaping of text and attribute values: < > & ' " */
static void xml_escape(struct qs_buf *b, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<': qs_buf_adds(b, "&lt;"); break;
        case '>': qs_buf_adds(b, "&gt;"); break;
        case '&': qs_buf_adds(b, "&amp;"); break;
        case '\'': qs_buf_adds(b, "&apos;"); break;
        case '"': qs_buf_adds(b, "&quot;"); break;
        default: qs_buf_add(b, s, 1);
        }
    }
}

/* Splits "a,b,,c" at single commas (",," is a literal comma). Caller frees with qs_strv_free(). */
static char **split_spec(const char *spec)
{
    struct qs_buf cur;
    char **v = NULL;
    size_t n = 0;

    qs_buf_init(&cur, 0);
    for (const char *p = spec;; p++) {
        if (*p == ',' && p[1] == ',') {
            qs_buf_add(&cur, ",", 1);
            p++;
            continue;
        }
        if (*p == ',' || *p == '\0') {
            v = qs_xrealloc(v, (n + 2) * sizeof(char *));
            v[n++] = qs_buf_detach(&cur, NULL);
            v[n] = NULL;
            if (*p == '\0')
                break;
            continue;
        }
        qs_buf_add(&cur, p, 1);
    }
    return v;
}

/* --memspec [file=]PATH[,snapshot=TYPE] as virsh writes it: <memory snapshot='T' file='P'/>. */
static int memspec_xml(struct qs_buf *b, const char *spec)
{
    char **parts = split_spec(spec);
    const char *file = NULL, *snapshot = NULL;
    int ret = -1;

    for (size_t i = 0; parts[i]; i++) {
        const char *p = parts[i];
        if (i == 0 && !strchr(p, '='))
            file = p;
        else if (qs_str_has_prefix(p, "file="))
            file = p + 5;
        else if (qs_str_has_prefix(p, "snapshot="))
            snapshot = p + 9;
        else
            goto out;
    }
    qs_buf_adds(b, "  <memory");
    if (snapshot) {
        qs_buf_adds(b, " snapshot='");
        xml_escape(b, snapshot);
        qs_buf_adds(b, "'");
    }
    if (file) {
        qs_buf_adds(b, " file='");
        xml_escape(b, file);
        qs_buf_adds(b, "'");
    }
    qs_buf_adds(b, "/>\n");
    ret = 0;
out:
    qs_strv_free(parts);
    return ret;
}

/* --diskspec DISK[,snapshot=T][,driver=T][,stype=T][,file=P] as virsh writes it. */
static int diskspec_xml(struct qs_buf *b, const char *spec)
{
    char **parts = split_spec(spec);
    const char *snapshot = NULL, *driver = NULL, *stype = NULL, *file = NULL;
    int ret = -1;

    if (!parts[0] || !*parts[0])
        goto out;
    for (size_t i = 1; parts[i]; i++) {
        const char *p = parts[i];
        if (qs_str_has_prefix(p, "snapshot="))
            snapshot = p + 9;
        else if (qs_str_has_prefix(p, "driver="))
            driver = p + 7;
        else if (qs_str_has_prefix(p, "stype="))
            stype = p + 6;
        else if (qs_str_has_prefix(p, "file="))
            file = p + 5;
        else
            goto out;
    }
    qs_buf_adds(b, "    <disk name='");
    xml_escape(b, parts[0]);
    qs_buf_adds(b, "'");
    if (snapshot) {
        qs_buf_adds(b, " snapshot='");
        xml_escape(b, snapshot);
        qs_buf_adds(b, "'");
    }
    if (stype) {
        qs_buf_adds(b, " type='");
        xml_escape(b, stype);
        qs_buf_adds(b, "'");
    }
    if (!driver && !file) {
        qs_buf_adds(b, "/>\n");
    } else {
        qs_buf_adds(b, ">\n");
        if (driver) {
            qs_buf_adds(b, "      <driver type='");
            xml_escape(b, driver);
            qs_buf_adds(b, "'/>\n");
        }
        if (file) {
            qs_buf_adds(b, strcmp(stype ? stype : "file", "block") == 0 ? "      <source dev='" : "      <source file='");
            xml_escape(b, file);
            qs_buf_adds(b, "'/>\n");
        }
        qs_buf_adds(b, "    </disk>\n");
    }
    ret = 0;
out:
    qs_strv_free(parts);
    return ret;
}

static int cmd_create_as(struct cli_ctx *ctx, const struct cli_args *args)
{
    const char *domain = cli_args_str(args, "domain"), *name = cli_args_str(args, "name");
    const char *desc = cli_args_str(args, "description"), *memspec = cli_args_str(args, "memspec");
    const char *const *disks;
    size_t ndisks;
    struct engine *e = NULL;
    struct qs_error *err = NULL;
    struct qs_buf xml;
    char *created = NULL;
    int ret = CLI_EXIT_FAILED;

    qs_buf_init(&xml, 0);
    disks = cli_args_list(args, "diskspec", &ndisks);
    /* virsh resolves the domain even for --print-xml */
    if (!(e = cli_domain_engine(ctx, domain)))
        goto out;
    qs_buf_adds(&xml, "<domainsnapshot>\n");
    if (name) {
        qs_buf_adds(&xml, "  <name>");
        xml_escape(&xml, name);
        qs_buf_adds(&xml, "</name>\n");
    }
    if (desc) {
        qs_buf_adds(&xml, "  <description>");
        xml_escape(&xml, desc);
        qs_buf_adds(&xml, "</description>\n");
    }
    if (memspec && memspec_xml(&xml, memspec) < 0) {
        ret = cli_failf("unable to parse memspec: %s", memspec);
        goto out;
    }
    if (ndisks > 0) {
        qs_buf_adds(&xml, "  <disks>\n");
        for (size_t i = 0; i < ndisks; i++) {
            if (diskspec_xml(&xml, disks[i]) < 0) {
                ret = cli_failf("unable to parse diskspec: %s", disks[i]);
                goto out;
            }
        }
        qs_buf_adds(&xml, "  </disks>\n");
    }
    qs_buf_adds(&xml, "</domainsnapshot>\n");
    if (cli_args_bool(args, "print-xml")) {
        qs_buf_adds(&xml, "\n");
        ret = print_buf(&xml);
        goto out;
    }
    /* the name is refused for what it is, before a byte XML cannot hold (U+0001) fails its parse instead */
    if ((name && qs_name_check(name, "snapshot", &err) < 0) ||
        engine_snapshot_create(e, domain, xml.data, create_flags(args), &created, &err) < 0) {
        ret = cli_fail(ctx, &err);
        goto out;
    }
    ret = print_msg(ctx, VSH_MSG_CREATED, created, NULL);
out:
    free(created);
    qs_buf_release(&xml);
    return ret;
}

/* ------------------------------------------------------------------------------------------------ */
/* snapshot-list */

/* virsh's conflict checks, in virsh's order and wording. */
static bool list_conflicts(const struct cli_args *args)
{
    static const char *const exclusive[][2] = {
        {"parent", "roots"}, {"parent", "tree"}, {"roots", "tree"},
        {"roots", "from"},   {"roots", "current"}, {"tree", "name"},
    };
    static const char *const tree_filters[] = {"leaves", "no-leaves", "inactive", "active",
                                               "disk-only", "internal", "external"};

    for (size_t i = 0; i < sizeof(exclusive) / sizeof(exclusive[0]); i++)
        if (cli_args_exclusive(args, exclusive[i][0], exclusive[i][1]))
            return true;
    if (cli_args_str(args, "from") && cli_args_bool(args, "current")) {
        cli_failf(VSH_ERR_EXCLUSIVE_SHORT, "from", "current");
        return true;
    }
    if (cli_args_bool(args, "descendants") && !cli_args_str(args, "from") && !cli_args_bool(args, "current")) {
        cli_failf("%s", VSH_ERR_DESCENDANTS);
        return true;
    }
    if (cli_args_bool(args, "tree")) {
        for (size_t i = 0; i < sizeof(tree_filters) / sizeof(tree_filters[0]); i++) {
            if (cli_args_bool(args, tree_filters[i])) {
                cli_failf(VSH_ERR_EXCLUSIVE_SHORT, tree_filters[i], "tree");
                return true;
            }
        }
    }
    return false;
}

static const struct cli_flag list_flag_map[] = {
    {"roots", ENGINE_LIST_ROOTS},             {"leaves", ENGINE_LIST_LEAVES},
    {"no-leaves", ENGINE_LIST_NO_LEAVES},     {"metadata", ENGINE_LIST_METADATA},
    {"no-metadata", ENGINE_LIST_NO_METADATA}, {"inactive", ENGINE_LIST_INACTIVE},
    {"active", ENGINE_LIST_ACTIVE},           {"disk-only", ENGINE_LIST_DISK_ONLY},
    {"internal", ENGINE_LIST_INTERNAL},       {"external", ENGINE_LIST_EXTERNAL},
    {"descendants", ENGINE_LIST_DESCENDANTS}, {"topological", ENGINE_LIST_TOPOLOGICAL},
};

static unsigned list_flags(const struct cli_args *args)
{
    return CLI_ARGS_FLAGS(args, list_flag_map);
}

static int cmd_list(struct cli_ctx *ctx, const struct cli_args *args)
{
    const char *domain = cli_args_str(args, "domain");
    bool json = cli_args_bool(args, "json");
    struct engine *e;
    struct engine_snapshot_list *l = NULL;
    struct qs_error *err = NULL;
    struct qs_buf out;
    char *from = NULL;
    unsigned flags;
    size_t n;
    int ret = CLI_EXIT_FAILED;

    qs_buf_init(&out, 0);
    if (list_conflicts(args) || !(e = cli_domain_engine(ctx, domain)))
        goto out;
    flags = list_flags(args);
    if (cli_args_bool(args, "current")) {
        if (engine_snapshot_current_name(e, domain, &from, &err) < 0) {
            ret = cli_fail(ctx, &err);
            goto out;
        }
        if (!from) {
            ret = cli_failf("%s", VSH_ERR_NO_CURRENT);
            goto out;
        }
    } else if (cli_args_str(args, "from")) {
        from = qs_xstrdup(cli_args_str(args, "from"));
    }
    if (engine_snapshot_list(e, domain, flags, from, &l, &err) < 0) {
        ret = cli_fail(ctx, &err);
        goto out;
    }
    n = engine_snapshot_list_count(l);
    if (json) {
        struct json_out j;
        json_out_init(&j, &out);
        json_out_array_begin(&j);
        for (size_t i = 0; i < n; i++)
            json_snapshot(&j, domain, engine_snapshot_list_at(l, i));
        json_out_array_end(&j);
    } else if (cli_args_bool(args, "tree")) {
        /* virsh draws the tree itself from the list it asked for: the --from snapshot as the root, then its
         * children (all descendants with --descendants), each under its parent, siblings in list order */
        struct vsh_tree_node *nodes = qs_xcalloc(n + 2, sizeof(*nodes));
        size_t k = 0;
        if (from)
            nodes[k++].name = from;
        for (size_t i = 0; i < n; i++) {
            const struct engine_snapshot *s = engine_snapshot_list_at(l, i);
            nodes[k].name = engine_snapshot_name(s);
            nodes[k++].parent = engine_snapshot_parent(s);
        }
        vsh_tree_format(nodes, k, &out);
        free(nodes);
    } else {
        enum vsh_list_mode mode = cli_args_bool(args, "name")     ? VSH_LIST_NAMES
                                  : cli_args_bool(args, "parent") ? VSH_LIST_TABLE_PARENT
                                                                  : VSH_LIST_TABLE;
        char *pop = NULL, **pnames = NULL;
        size_t pn = 0;
        int64_t pstarted = 0;
        struct vsh_snap_row *rows;
        int written;
        /* an operation under way (another qsnap): snapshots being deleted say so in the State column, one
         * being created gets its row - in the tables only, as --name lists what exists */
        if (mode != VSH_LIST_NAMES && !from && !flags &&
            engine_domain_pending(e, domain, &pop, &pnames, &pn, NULL, &pstarted, NULL) < 0)
            pop = NULL;
        rows = qs_xcalloc(n + pn + 1, sizeof(*rows));
        for (size_t i = 0; i < n; i++) {
            const struct engine_snapshot *s = engine_snapshot_list_at(l, i);
            const char *state = engine_snapshot_state(s);
            for (size_t k = 0; pop && strcmp(pop, "delete") == 0 && k < pn; k++)
                if (strcmp(pnames[k], engine_snapshot_name(s)) == 0)
                    state = "deleting";
            rows[i] = (struct vsh_snap_row){engine_snapshot_name(s), engine_snapshot_creation_time(s), state,
                                            engine_snapshot_parent(s)};
        }
        if (pop && strcmp(pop, "create") == 0 && pn == 1) {
            bool listed = false;
            for (size_t i = 0; i < n && !listed; i++)
                listed = strcmp(rows[i].name, pnames[0]) == 0;
            if (!listed)
                rows[n++] = (struct vsh_snap_row){pnames[0], pstarted, "creating", NULL};
        }
        if (!(flags & ENGINE_LIST_TOPOLOGICAL))
            vsh_snap_rows_sort(rows, n);
        written = vsh_snap_list_format_to(rows, n, mode, ctx->quiet, &out, stdout);
        free(rows);
        free(pop);
        engine_strv_free(pnames, pn);
        if (written < 0) {
            ret = cli_failf("cannot write output: %s", strerror(errno));
            goto out;
        }
    }
    ret = print_buf(&out);
out:
    qs_buf_release(&out);
    engine_snapshot_list_free(l);
    free(from);
    return ret;
}

/* ------------------------------------------------------------------------------------------------ */
/* snapshot-info, -current, -parent, -dumpxml */

static int cmd_info(struct cli_ctx *ctx, const struct cli_args *args)
{
    const char *domain = cli_args_str(args, "domain");
    struct engine *e = cli_domain_engine(ctx, domain);
    struct engine_snapshot_list *l = NULL;
    char *name;
    int ret;

    if (!e || !(name = resolve_snapshot_found(ctx, e, args, domain, true, &l)))
        return CLI_EXIT_FAILED;
    ret = show_info(ctx, e, domain, name, cli_args_bool(args, "json"), l);
    free(name);
    return ret;
}

static int cmd_current(struct cli_ctx *ctx, const struct cli_args *args)
{
    const char *domain = cli_args_str(args, "domain"), *set = cli_args_str(args, "snapshotname");
    struct engine *e;
    struct qs_error *err = NULL;
    char *name = NULL;
    int ret = CLI_EXIT_FAILED;

    if (cli_args_exclusive(args, "name", "snapshotname") || !(e = cli_domain_engine(ctx, domain)))
        return CLI_EXIT_FAILED;
    if (set) {
        if (engine_snapshot_set_current(e, domain, set, &err) < 0)
            return cli_fail(ctx, &err);
        return print_msg(ctx, VSH_MSG_SET_CURRENT, set, NULL);
    }
    if (engine_snapshot_current_name(e, domain, &name, &err) < 0)
        return cli_fail(ctx, &err);
    if (!name)
        return cli_failf(VSH_ERR_NO_CURRENT_NAME, domain);
    if (cli_args_bool(args, "json"))
        ret = show_info(ctx, e, domain, name, true, NULL);
    else if (cli_args_bool(args, "name"))
        ret = fputs(name, stdout) < 0 ? CLI_EXIT_FAILED : CLI_EXIT_OK;
    else
        ret = show_xml(ctx, e, domain, name, cli_args_bool(args, "security-info"), false);
    free(name);
    return ret;
}

static int cmd_parent(struct cli_ctx *ctx, const struct cli_args *args)
{
    const char *domain = cli_args_str(args, "domain");
    struct engine *e = cli_domain_engine(ctx, domain);
    struct engine_snapshot_list *l = NULL;
    struct qs_error *err = NULL;
    const char *parent;
    char *name = NULL;
    int ret = CLI_EXIT_FAILED;

    if (!e || !(name = resolve_snapshot(ctx, e, args, domain, true)))
        goto out;
    if (engine_snapshot_lookup(e, domain, name, &l, &err) < 0) {
        ret = cli_fail(ctx, &err);
        goto out;
    }
    parent = engine_snapshot_parent(engine_snapshot_list_at(l, 0));
    if (!parent) {
        ret = cli_failf(VSH_ERR_NO_PARENT, name);
        goto out;
    }
    ret = fputs(parent, stdout) < 0 ? CLI_EXIT_FAILED : CLI_EXIT_OK;
out:
    engine_snapshot_list_free(l);
    free(name);
    return ret;
}

static int cmd_dumpxml(struct cli_ctx *ctx, const struct cli_args *args)
{
    const char *domain = cli_args_str(args, "domain");
    struct engine *e = cli_domain_engine(ctx, domain);

    if (!e)
        return CLI_EXIT_FAILED;
    return show_xml(ctx, e, domain, cli_args_str(args, "snapshotname"), cli_args_bool(args, "security-info"),
                    cli_args_bool(args, "json"));
}

/* ------------------------------------------------------------------------------------------------ */
/* snapshot-revert, snapshot-delete */

static const struct cli_flag revert_flag_map[] = {
    {"running", ENGINE_REVERT_RUNNING}, {"paused", ENGINE_REVERT_PAUSED}, {"force", ENGINE_REVERT_FORCE},
    {"reset-nvram", ENGINE_REVERT_RESET_NVRAM},
};
static const struct cli_flag delete_flag_map[] = {
    {"children", ENGINE_DELETE_CHILDREN},
    {"children-only", ENGINE_DELETE_CHILDREN_ONLY},
    {"metadata", ENGINE_DELETE_METADATA_ONLY},
    {"force", ENGINE_DELETE_FORCE},
};

static int cmd_revert(struct cli_ctx *ctx, const struct cli_args *args)
{
    const char *domain = cli_args_str(args, "domain");
    struct engine *e = cli_domain_engine(ctx, domain);
    struct qs_error *err = NULL;
    unsigned flags = CLI_ARGS_FLAGS(args, revert_flag_map);
    char *name;
    int ret;

    if (!e || !(name = resolve_snapshot(ctx, e, args, domain, true)))
        return CLI_EXIT_FAILED;
    if (engine_snapshot_revert(e, domain, name, flags, &err) < 0) {
        cli_failf(VSH_ERR_REVERT_FAILED, name);
        ret = cli_fail(ctx, &err);
    } else {
        ret = print_msg(ctx, VSH_MSG_REVERTED, name, NULL);
    }
    free(name);
    return ret;
}

static int cmd_delete(struct cli_ctx *ctx, const struct cli_args *args)
{
    const char *domain = cli_args_str(args, "domain");
    struct engine *e = cli_domain_engine(ctx, domain);
    struct qs_error *err = NULL;
    unsigned flags = CLI_ARGS_FLAGS(args, delete_flag_map);
    char *name;
    int ret;

    if (!e || !(name = resolve_snapshot(ctx, e, args, domain, true)))
        return CLI_EXIT_FAILED;
    if (engine_snapshot_delete(e, domain, name, flags, &err) < 0) {
        cli_failf(VSH_ERR_DELETE_FAILED, name);
        ret = cli_fail(ctx, &err);
    } else {
        ret = print_msg(ctx, flags & ENGINE_DELETE_CHILDREN_ONLY ? VSH_MSG_CHILDREN_DELETED : VSH_MSG_DELETED,
                        name, NULL);
    }
    free(name);
    return ret;
}

/* ------------------------------------------------------------------------------------------------ */
/* snapshot-edit */

/* Runs $VISUAL or $EDITOR (split at blanks, never through a shell) on PATH, attached to the terminal. */
static int run_editor(const char *path)
{
    const char *ed = getenv("VISUAL");
    char **argv = NULL, *copy, *tok, *save = NULL;
    size_t n = 0;
    struct qs_error *err = NULL;
    struct qs_proc_result res = {0};
    int ret = -1;

    if (!ed || !*ed)
        ed = getenv("EDITOR");
    if (!ed || !*ed)
        ed = "vi";
    copy = qs_xstrdup(ed);
    for (tok = strtok_r(copy, " \t", &save); tok; tok = strtok_r(NULL, " \t", &save)) {
        argv = qs_xrealloc(argv, (n + 3) * sizeof(char *));
        argv[n++] = tok;
    }
    argv = qs_xrealloc(argv, (n + 3) * sizeof(char *));
    argv[n++] = (char *)path;
    argv[n] = NULL;
    if (qs_proc_run_interactive(argv, &res, &err) < 0) {
        cli_fail(NULL, &err);
        goto out;
    }
    if (res.status != 0) {
        cli_failf("editor '%s' exited with status %d", argv[0], res.status);
        goto out;
    }
    ret = 0;
out:
    qs_proc_result_release(&res);
    free(argv);
    free(copy);
    return ret;
}

/* The <name> of a <domainsnapshot> document, found textually (cli/ does not parse XML). Caller frees. */
static char *xml_name(const char *xml)
{
    const char *s = strstr(xml, "<name>"), *end;
    if (!s)
        return NULL;
    s += strlen("<name>");
    end = strstr(s, "</name>");
    return end ? qs_xstrndup(s, (size_t)(end - s)) : NULL;
}

static int cmd_edit(struct cli_ctx *ctx, const struct cli_args *args)
{
    const char *domain = cli_args_str(args, "domain");
    struct engine *e = cli_domain_engine(ctx, domain);
    struct qs_error *err = NULL;
    char *name = NULL, *xml = NULL, *edited = NULL, *newname = NULL, *tmp = NULL;
    unsigned flags = ENGINE_CREATE_REDEFINE;
    bool created = false;
    int fd = -1, ret = CLI_EXIT_FAILED;

    if (!e || !(name = resolve_snapshot(ctx, e, args, domain, false)))
        goto out;
    if (cli_args_exclusive(args, "rename", "clone"))
        goto out;
    /* as virsh: --current with a name makes the edited snapshot current; alone it only selects it */
    if (cli_args_bool(args, "current") && cli_args_str(args, "snapshotname"))
        flags |= ENGINE_CREATE_CURRENT;
    if (engine_snapshot_get_xml(e, domain, name, true, &xml, &err) < 0) {
        ret = cli_fail(ctx, &err);
        goto out;
    }
    tmp = qs_asprintf("%s/qsnap-edit-XXXXXX.xml", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    fd = mkstemps(tmp, 4);
    created = fd >= 0;
    if (fd < 0 || qs_write_all(fd, xml, strlen(xml)) < 0) {
        ret = cli_failf("cannot write '%s': %s", tmp, strerror(errno));
        goto out;
    }
    close(fd);
    fd = -1;
    if (run_editor(tmp) < 0)
        goto out;
    if (qs_file_read(AT_FDCWD, tmp, 16u << 20, &edited, NULL, &err) < 0) {
        ret = cli_fail(ctx, &err);
        goto out;
    }
    if (strcmp(edited, xml) == 0 && !(flags & ENGINE_CREATE_CURRENT)) {
        ret = print_msg(ctx, VSH_MSG_NOT_CHANGED, name, NULL);
        goto out;
    }
    newname = xml_name(edited);
    if (newname && strcmp(newname, name) != 0 && !cli_args_bool(args, "rename") && !cli_args_bool(args, "clone")) {
        ret = cli_failf("Must use --rename or --clone to change %s to %s", name, newname);
        goto out;
    }
    if (newname && strcmp(newname, name) != 0) {
        /* the internal tags in the images carry the old name; QEMU cannot rename them */
        ret = cli_failf("snapshot '%s' cannot be renamed or cloned: its disk data is named after it", name);
        goto out;
    }
    if (engine_snapshot_create(e, domain, edited, flags, NULL, &err) < 0) {
        ret = cli_fail(ctx, &err);
        goto out;
    }
    ret = print_msg(ctx, VSH_MSG_EDITED, name, NULL);
out:
    if (created)
        unlink(tmp);
    qs_close(fd);
    free(tmp);
    free(newname);
    free(edited);
    free(xml);
    free(name);
    return ret;
}

/* ------------------------------------------------------------------------------------------------ */
/* Tables. */

#define OPT_DOMAIN {"domain", CLI_OPT_STRING, CLI_OPT_REQUIRED, "domain name, id or uuid"}
#define OPT_END {NULL, 0, 0, NULL}
#define CREATE_COMMON_OPTS                                                                                 \
    {"no-metadata", CLI_OPT_BOOL, 0, "take snapshot but create no metadata"},                             \
        {"halt", CLI_OPT_BOOL, 0, "halt domain after snapshot is created"},                               \
        {"disk-only", CLI_OPT_BOOL, 0, "capture disk state but not vm state"},                            \
        {"reuse-external", CLI_OPT_BOOL, 0, "reuse any existing external files"},                         \
        {"quiesce", CLI_OPT_BOOL, 0, "quiesce guest's file systems"},                                     \
        {"atomic", CLI_OPT_BOOL, 0, "require atomic operation"},                                          \
        {"live", CLI_OPT_BOOL, 0, "take a live snapshot"},                                                \
        {"live-fallback", CLI_OPT_BOOL, 0, "with --live: save paused where live cannot work"},            \
        {"precopy", CLI_OPT_BOOL, 0, "with --live: copy the RAM while the guest runs, pause at the end"}, \
        {"validate", CLI_OPT_BOOL, 0, "validate the XML against the schema"}

static const struct cli_opt create_opts[] = {
    OPT_DOMAIN,
    {"xmlfile", CLI_OPT_STRING, 0, "domain snapshot XML"},
    {"redefine", CLI_OPT_BOOL, 0, "redefine metadata for existing snapshot"},
    {"current", CLI_OPT_BOOL, 0, "with redefine, set current snapshot"},
    CREATE_COMMON_OPTS,
    OPT_END,
};
static const struct cli_opt create_as_opts[] = {
    OPT_DOMAIN,
    {"name", CLI_OPT_STRING, 0, "name of snapshot"},
    {"description", CLI_OPT_STRING, 0, "description of snapshot"},
    {"print-xml", CLI_OPT_BOOL, 0, "print XML document rather than create"},
    CREATE_COMMON_OPTS,
    {"memspec", CLI_OPT_STRING, CLI_OPT_NAMED, "memory attributes: [file=]name[,snapshot=type]"},
    {"diskspec", CLI_OPT_ARGV, 0, "disk attributes: disk[,snapshot=type][,driver=type][,stype=type][,file=name]"},
    OPT_END,
};
static const struct cli_opt current_opts[] = {
    OPT_DOMAIN,
    {"name", CLI_OPT_BOOL, 0, "list the name, rather than the full xml"},
    {"security-info", CLI_OPT_BOOL, 0, "include security sensitive information in XML dump"},
    {"snapshotname", CLI_OPT_STRING, 0, "name of existing snapshot to make current"},
    {"json", CLI_OPT_BOOL, 0, "print JSON instead of text"},
    OPT_END,
};
static const struct cli_opt edit_opts[] = {
    OPT_DOMAIN,
    {"snapshotname", CLI_OPT_STRING, 0, "snapshot name"},
    {"current", CLI_OPT_BOOL, 0, "also set edited snapshot as current"},
    {"rename", CLI_OPT_BOOL, 0, "allow renaming an existing snapshot"},
    {"clone", CLI_OPT_BOOL, 0, "allow cloning to new name"},
    OPT_END,
};
static const struct cli_opt info_opts[] = {
    OPT_DOMAIN,
    {"snapshotname", CLI_OPT_STRING, 0, "snapshot name"},
    {"current", CLI_OPT_BOOL, 0, "info on current snapshot"},
    {"json", CLI_OPT_BOOL, 0, "print JSON instead of text"},
    OPT_END,
};
static const struct cli_opt list_opts[] = {
    OPT_DOMAIN,
    {"parent", CLI_OPT_BOOL, 0, "add a column showing parent snapshot"},
    {"roots", CLI_OPT_BOOL, 0, "list only snapshots without parents"},
    {"leaves", CLI_OPT_BOOL, 0, "list only snapshots without children"},
    {"no-leaves", CLI_OPT_BOOL, 0, "list only snapshots that are not leaves (with children)"},
    {"metadata", CLI_OPT_BOOL, 0, "list only snapshots that have metadata that would prevent undefine"},
    {"no-metadata", CLI_OPT_BOOL, 0, "list only snapshots that have no metadata managed by libvirt"},
    {"inactive", CLI_OPT_BOOL, 0, "filter by snapshots taken while inactive"},
    {"active", CLI_OPT_BOOL, 0, "filter by snapshots taken while active (full system snapshots)"},
    {"disk-only", CLI_OPT_BOOL, 0, "filter by disk-only snapshots"},
    {"internal", CLI_OPT_BOOL, 0, "filter by internal snapshots"},
    {"external", CLI_OPT_BOOL, 0, "filter by external snapshots"},
    {"tree", CLI_OPT_BOOL, 0, "list snapshots in a tree"},
    {"from", CLI_OPT_STRING, 0, "limit list to children of given snapshot"},
    {"current", CLI_OPT_BOOL, 0, "limit list to children of current snapshot"},
    {"descendants", CLI_OPT_BOOL, 0, "with --from, list all descendants"},
    {"name", CLI_OPT_BOOL, 0, "list snapshot names only"},
    {"topological", CLI_OPT_BOOL, 0, "sort list topologically rather than by name"},
    {"json", CLI_OPT_BOOL, 0, "print JSON instead of text"},
    OPT_END,
};
static const struct cli_opt dumpxml_opts[] = {
    OPT_DOMAIN,
    {"snapshotname", CLI_OPT_STRING, CLI_OPT_REQUIRED, "snapshot name"},
    {"security-info", CLI_OPT_BOOL, 0, "include security sensitive information in XML dump"},
    {"json", CLI_OPT_BOOL, 0, "print JSON instead of text"},
    OPT_END,
};
static const struct cli_opt parent_opts[] = {
    OPT_DOMAIN,
    {"snapshotname", CLI_OPT_STRING, 0, "find parent of snapshot name"},
    {"current", CLI_OPT_BOOL, 0, "find parent of current snapshot"},
    OPT_END,
};
static const struct cli_opt revert_opts[] = {
    OPT_DOMAIN,
    {"snapshotname", CLI_OPT_STRING, 0, "snapshot name"},
    {"current", CLI_OPT_BOOL, 0, "revert to current snapshot"},
    {"running", CLI_OPT_BOOL, 0, "after reverting, change state to running"},
    {"paused", CLI_OPT_BOOL, 0, "after reverting, change state to paused"},
    {"force", CLI_OPT_BOOL, 0, "try harder on risky reverts"},
    {"reset-nvram", CLI_OPT_BOOL, 0, "re-initialize NVRAM from its pristine template"},
    OPT_END,
};
static const struct cli_opt delete_opts[] = {
    OPT_DOMAIN,
    {"snapshotname", CLI_OPT_STRING, 0, "snapshot name"},
    {"current", CLI_OPT_BOOL, 0, "delete current snapshot"},
    {"children", CLI_OPT_BOOL, 0, "delete snapshot and all children"},
    {"children-only", CLI_OPT_BOOL, 0, "delete children but not snapshot"},
    {"metadata", CLI_OPT_BOOL, 0, "delete only libvirt metadata, leaving snapshot contents behind"},
    {"force", CLI_OPT_BOOL, 0, "also delete a protected snapshot (snapshot-protect)"},
    OPT_END,
};

static const struct cli_cmd_def create_def = {"snapshot-create", "Create a snapshot from XML",
    "Create a snapshot (disk and RAM) from XML", create_opts};
static const struct cli_cmd_def create_as_def = {"snapshot-create-as", "Create a snapshot from a set of args",
    "Create a snapshot (disk and RAM) from arguments", create_as_opts};
static const struct cli_cmd_def current_def = {"snapshot-current", "Get or set the current snapshot",
    "Get or set the current snapshot", current_opts};
static const struct cli_cmd_def edit_def = {"snapshot-edit", "edit XML for a snapshot",
    "Edit the domain snapshot XML for a named snapshot", edit_opts};
static const struct cli_cmd_def info_def = {"snapshot-info", "snapshot information", "Returns basic information about a snapshot.",
    info_opts};
static const struct cli_cmd_def list_def = {"snapshot-list", "List snapshots for a domain", "Snapshot List",
    list_opts};
static const struct cli_cmd_def dumpxml_def = {"snapshot-dumpxml", "Dump XML for a domain snapshot",
    "Snapshot Dump XML", dumpxml_opts};
static const struct cli_cmd_def parent_def = {"snapshot-parent", "Get the name of the parent of a snapshot",
    "Extract the snapshot's parent, if any", parent_opts};
static const struct cli_cmd_def revert_def = {"snapshot-revert", "Revert a domain to a snapshot",
    "Revert domain to snapshot", revert_opts};
static const struct cli_cmd_def delete_def = {"snapshot-delete", "Delete a domain snapshot", "Snapshot Delete",
    delete_opts};

const struct cli_command cli_snapshot_commands[] = {
    {&create_def, cmd_create, 0},   {&create_as_def, cmd_create_as, 0},
    {&current_def, cmd_current, 0},       {&edit_def, cmd_edit, 0},
    {&info_def, cmd_info, 0},             {&list_def, cmd_list, 0},
    {&dumpxml_def, cmd_dumpxml, 0},       {&parent_def, cmd_parent, 0},
    {&revert_def, cmd_revert, 0},    {&delete_def, cmd_delete, 0},
    {NULL, NULL, 0},
};
