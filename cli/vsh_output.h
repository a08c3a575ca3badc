/* vsh_output.h: virsh 9.0 compatible text output for the snapshot commands (pure formatting, no engine). */
#ifndef VSH_OUTPUT_H
#define VSH_OUTPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "qs_buf.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * The output model (doc/virsh-output.md has every rule with an example):
 *  - A command writes its BODY to stdout, then virsh writes one "\n" after every command that got past
 *    option parsing, success or failure (vsh_command_end). With --quiet (-q) that newline, the table
 *    header and the "Domain snapshot ... created" style messages are all left out.
 *  - Errors go to stderr as "error: MESSAGE\n" (vsh_error_format); the exit status is 1.
 * Every function here appends to a qs_buf and returns 0, or -1 when the buffer hit its cap (b->toobig).
 * Strings are UTF-8. Width is display width as virsh measures it in a UTF-8 locale (wcwidth), whatever the
 * locale of the calling process.
 */

/* Appends the newline virsh prints after each command (nothing when quiet). */
int vsh_command_end(struct qs_buf *out, bool quiet);
/* Appends "error: MESSAGE\n" (the stderr line of a failed command). */
int vsh_error_format(struct qs_buf *err, const char *message);
/* Writes the whole buffer to FP; 0 or -1 with errno. */
int vsh_buf_write(FILE *fp, const struct qs_buf *b);

/* ---- text cells ---- */

/*
 * Appends S as a virsh table cell shows it: ASCII control bytes become "\xNN", a backslash followed by 'x'
 * becomes "\x5c", a non-printable or invalid non-ASCII byte becomes "\xff" (virsh's sign-extension quirk),
 * everything else is copied. Stores the display width of what was appended in *width (may be NULL).
 * S NULL is "".
 */
int vsh_cell_encode(struct qs_buf *out, const char *s, size_t *width);
/* Display width of S after vsh_cell_encode (wide CJK 2, combining marks 0, each escape 4). */
size_t vsh_cell_width(const char *s);

/* ---- tables (vsh-table) ---- */

/* A table of NCOLS columns. Heap object: vsh_table_new / vsh_table_free. Cells are copied. */
struct vsh_table;
/* HEADER: ncols column titles. Never fails (aborts on OOM). */
struct vsh_table *vsh_table_new(size_t ncols, const char *const *header);
/* CELLS: ncols strings, NULL meaning "". */
void vsh_table_add_row(struct vsh_table *t, const char *const *cells);
/*
 * Appends the table: with HEADER, the title row and a dash line (sum of (column width + 3) dashes); then
 * one line per row. Each cell is " " + text, every cell but the last padded to its column's width + 2 more
 * spaces (so columns are 3 apart and the last one is never padded). Column width = widest cell, titles
 * included (even when HEADER is false, as virsh computes it).
 */
int vsh_table_format(const struct vsh_table *t, bool header, struct qs_buf *out);
/* vsh_table_format with the header, written to FP: 0, or -1 with errno (write error). */
int vsh_table_print(const struct vsh_table *t, FILE *fp);
void vsh_table_free(struct vsh_table *t);

/* ---- snapshot-list ---- */

/* One snapshot as snapshot-list, --tree and the sorter see it. All strings borrowed; NULL means none. */
struct vsh_snap_row {
    const char *name;
    long long creation_time; /* seconds since the epoch; shown in local time */
    const char *state;       /* "running", "shutoff", "disk-snapshot", ... */
    const char *parent;      /* NULL for a root */
};

enum vsh_list_mode {
    VSH_LIST_TABLE,        /* Name, Creation Time, State */
    VSH_LIST_TABLE_PARENT, /* --parent: Name, Creation Time, State, Parent */
    VSH_LIST_NAMES,        /* --name: one raw name per line (wins over --parent) */
    VSH_LIST_TREE,         /* --tree */
};

/*
 * Appends the BODY of snapshot-list for ROWS in the order given (sort first with vsh_snap_rows_sort; the
 * --topological order is the engine's). QUIET drops the table header. Not included: vsh_command_end().
 * Tree mode: see vsh_tree_format. Creation times use the process's local time zone (TZ).
 */
int vsh_snap_list_format(const struct vsh_snap_row *rows, size_t n, enum vsh_list_mode mode, bool quiet,
                         struct qs_buf *out);
/* The same, writing what OUT holds to FP (not flushed) whenever it holds 64 KiB, so that a long listing does
 * not sit whole in memory: the rest stays in OUT. -1 (errno set) when a write failed. */
int vsh_snap_list_format_to(const struct vsh_snap_row *rows, size_t n, enum vsh_list_mode mode, bool quiet,
                            struct qs_buf *out, FILE *fp);

/* virsh's name order: ASCII case-insensitive (strcasecmp), ties broken by plain byte order (strcmp). */
int vsh_snap_name_cmp(const char *a, const char *b);
/* Sorts ROWS in place by vsh_snap_name_cmp on name. */
void vsh_snap_rows_sort(struct vsh_snap_row *rows, size_t n);

/* A node of the --tree drawing: name and parent name (borrowed). */
struct vsh_tree_node {
    const char *name;
    const char *parent; /* NULL, or a name not among the nodes: drawn as a root */
};

/*
 * Appends the --tree drawing of NODES: roots in array order, each root's children in array order (pass
 * them sorted). Names are printed raw (no escaping). Shape, for base -> {a -> {x}, b} and a root r:
 *   "base\n  |\n  +- a\n  |   |\n  |   +- x\n  |     \n  +- b\n    \nr\n\n"
 * Empty input appends nothing. Not included: vsh_command_end().
 */
int vsh_tree_format(const struct vsh_tree_node *nodes, size_t n, struct qs_buf *out);

/* ---- snapshot-info and other key/value blocks ---- */

/* Appends "LABEL VALUE\n" with the label left-aligned in 15 columns ("%-15s %s\n"), as virsh's info blocks. */
int vsh_kv_format(struct qs_buf *out, const char *label, const char *value);

struct vsh_snap_info {
    const char *name;
    const char *domain;
    bool current;
    const char *state;    /* "running", "shutoff", "disk-snapshot", ... */
    const char *location; /* "internal" or "external" */
    const char *parent;   /* NULL prints "-" */
    long children;        /* direct children; < 0 leaves out both Children and Descendants */
    long descendants;
    bool metadata;        /* libvirt-managed metadata: "yes" */
    const char *pause;    /* qsnap's own last line "Guest pause:" ("2.4 ms"); NULL leaves it out */
};

/* Appends the BODY of snapshot-info (Name .. Metadata lines, then Guest pause when set). Not included:
 * vsh_command_end(). */
int vsh_snap_info_format(const struct vsh_snap_info *info, struct qs_buf *out);

/* ---- times ---- */

/* Appends T as local time "%Y-%m-%d %H:%M:%S %z" (e.g. "2023-11-14 22:13:20 +0000"). */
int vsh_time_format(long long t, struct qs_buf *out);

/* ---- one-line messages (virsh prints them with vshPrintExtra: all are left out when quiet) ---- */

enum vsh_msg {
    VSH_MSG_CREATED,         /* "Domain snapshot %s created"                      (snapshot-create-as) */
    VSH_MSG_CREATED_FROM,    /* "Domain snapshot %s created from '%s'"            (snapshot-create FILE) */
    VSH_MSG_SET_CURRENT,     /* "Snapshot %s set as current"                      (snapshot-current DOM S) */
    VSH_MSG_REVERTED,        /* "Domain snapshot %s reverted\n"                   (snapshot-revert) */
    VSH_MSG_DELETED,         /* "Domain snapshot %s deleted\n"        (snapshot-delete, also --children) */
    VSH_MSG_CHILDREN_DELETED, /* "Domain snapshot %s children deleted\n"          (--children-only) */
    VSH_MSG_EDITED,          /* "Snapshot %s edited.\n"                           (snapshot-edit) */
    VSH_MSG_NOT_CHANGED,     /* "Snapshot %s XML configuration not changed.\n"    (snapshot-edit) */
    VSH_MSG_CLONED,          /* "Snapshot %s cloned to %s.\n"                     (snapshot-edit --clone) */
    VSH_MSG__LAST
};

/* Appends the BODY of message MSG for NAME (and ARG where the text has a second %s, else ignored);
 * nothing when QUIET. Not included: vsh_command_end(). */
int vsh_msg_format(struct qs_buf *out, enum vsh_msg msg, const char *name, const char *arg, bool quiet);

/* ---- error texts virsh 9.0 prints (the part after "error: "); printf formats, %s = the quoted subject ---- */
#define VSH_ERR_NO_SNAPSHOT "Domain snapshot not found: no domain snapshot with matching name '%s'"
#define VSH_ERR_NO_CURRENT "Domain snapshot not found: the domain does not have a current snapshot"
#define VSH_ERR_NO_CURRENT_NAME "domain '%s' has no current snapshot" /* snapshot-current */
#define VSH_ERR_NO_DOMAIN "failed to get domain '%s'"
#define VSH_ERR_NO_PARENT "snapshot '%s' has no parent"
#define VSH_ERR_NAME_OR_CURRENT "--snapshotname or --current is required"
#define VSH_ERR_NAME_AND_CURRENT "--snapshotname and --current are mutually exclusive"
#define VSH_ERR_EXCLUSIVE "Options --%s and --%s are mutually exclusive"
/* the second spelling: --from/--current, and --tree with a filter (filter first: "--inactive and --tree") */
#define VSH_ERR_EXCLUSIVE_SHORT "--%s and --%s are mutually exclusive"
#define VSH_ERR_DESCENDANTS "--descendants requires either --from or --current"
#define VSH_ERR_UNKNOWN_COMMAND "unknown command: '%s'"
#define VSH_ERR_HELP_UNKNOWN "command or command group '%s' doesn't exist" /* help NAME */
#define VSH_ERR_UNKNOWN_OPTION "command '%s' doesn't support option --%s"
#define VSH_ERR_REQUIRED_OPTION "command '%s' requires <%s> option"
#define VSH_ERR_OPTION_SYNTAX "expected syntax: --%s <%s>"
#define VSH_ERR_EXISTS "operation failed: domain moment %s already exists"
#define VSH_ERR_DELETE_FAILED "Failed to delete snapshot %s"
#define VSH_ERR_REVERT_FAILED "Failed to revert snapshot %s"

#ifdef __cplusplus
}
#endif
#endif
