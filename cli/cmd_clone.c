/* cmd_clone.c: from a snapshot to a volume or a new VM - snapshot-export, domain-clone. */
#include "cli.h"
#include "json_out.h"
#include "qs_buf.h"
#include "qs_util.h"
#include "vsh_output.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define OPT_DOMAIN {"domain", CLI_OPT_STRING, CLI_OPT_REQUIRED, "domain name"}

/* PATH made absolute against the working directory (the engine takes absolute paths only). Caller frees. */
static char *absolute(const char *path)
{
    char *cwd;
    char *r;

    if (path[0] == '/')
        return qs_xstrdup(path);
    if (!(cwd = getcwd(NULL, 0)))
        return qs_xstrdup(path); /* the engine says what is wrong with it */
    r = qs_asprintf("%s/%s", cwd, qs_str_has_prefix(path, "./") ? path + 2 : path);
    free(cwd);
    return r;
}

static int cmd_export(struct cli_ctx *ctx, const struct cli_args *args)
{
    const char *domain = cli_args_str(args, "domain"), *snap = cli_args_str(args, "snapshotname");
    const char *disk = cli_args_str(args, "disk"), *format = cli_args_str(args, "format");
    bool json = cli_args_bool(args, "json"), compress = cli_args_bool(args, "compress");
    struct engine *e = cli_domain_engine(ctx, domain);
    struct engine_export_result res = {0};
    struct qs_error *err = NULL;
    char *file;
    int64_t t0;
    int ret;

    if (!e)
        return CLI_EXIT_FAILED;
    file = absolute(cli_args_str(args, "to"));
    t0 = qs_now_ms();
    if (engine_snapshot_export(e, domain, snap, disk, file, format, compress ? ENGINE_EXPORT_COMPRESS : 0, &res,
                               &err) < 0) {
        ret = cli_fail(ctx, &err);
        goto out;
    }
    if (json) {
        struct qs_buf b;
        struct json_out j;
        qs_buf_init(&b, 0);
        json_out_init(&j, &b);
        json_out_object_begin(&j);
        json_out_kv_string(&j, "domain", domain);
        json_out_kv_string(&j, "snapshot", snap);
        json_out_kv_string(&j, "disk", disk);
        json_out_kv_string(&j, "file", file);
        json_out_kv_string(&j, "format", format ? format : "qcow2");
        json_out_kv_bool(&j, "compressed", compress);
        json_out_kv_int(&j, "size", (int64_t)res.size);
        json_out_kv_int(&j, "virtual_size", (int64_t)res.virtual_size);
        json_out_kv_int(&j, "time_ms", qs_now_ms() - t0);
        json_out_object_end(&j);
        qs_buf_adds(&b, "\n");
        fwrite(b.data, 1, b.len, stdout);
        qs_buf_release(&b);
    } else if (!ctx->quiet) {
        printf("Domain snapshot %s disk %s exported to %s\n", snap, disk, file);
    }
    ret = CLI_EXIT_OK;
out:
    free(file);
    return ret;
}

static int cmd_clone(struct cli_ctx *ctx, const struct cli_args *args)
{
    const char *domain = cli_args_str(args, "domain"), *snap = cli_args_str(args, "snapshotname");
    const char *name = cli_args_str(args, "newname");
    struct engine *e;
    struct qs_error *err = NULL;
    unsigned flags = 0;

    if (cli_args_exclusive(args, "linked", "full"))
        return CLI_EXIT_USAGE;
    if (!(e = cli_domain_engine(ctx, domain)))
        return CLI_EXIT_FAILED;
    if (cli_args_bool(args, "full"))
        flags |= ENGINE_CLONE_FULL;
    if (cli_args_bool(args, "start"))
        flags |= ENGINE_CLONE_START;
    if (cli_args_bool(args, "with-memory"))
        flags |= ENGINE_CLONE_WITH_MEMORY;
    if (engine_domain_clone(e, domain, snap, name, flags, &err) < 0)
        return cli_fail(ctx, &err);
    if (!ctx->quiet)
        printf("Domain '%s' cloned from snapshot %s of domain '%s'%s\n", name, snap, domain,
               flags & ENGINE_CLONE_WITH_MEMORY ? ", started from its memory"
               : flags & ENGINE_CLONE_START     ? ", started"
                                                : "");
    return CLI_EXIT_OK;
}

static const struct cli_opt export_opts[] = {
    OPT_DOMAIN,
    {"snapshotname", CLI_OPT_STRING, CLI_OPT_REQUIRED, "snapshot name"},
    {"disk", CLI_OPT_STRING, CLI_OPT_REQUIRED, "the disk to export (its target, e.g. vda)"},
    {"to", CLI_OPT_STRING, CLI_OPT_REQUIRED, "the image file to write (must not exist)"},
    {"format", CLI_OPT_STRING, CLI_OPT_NAMED, "qcow2 (default) or raw"},
    {"compress", CLI_OPT_BOOL, 0, "compressed qcow2 clusters"},
    {"json", CLI_OPT_BOOL, 0, "report the file, its size and the time taken as JSON"},
    {NULL, 0, 0, NULL},
};
static const struct cli_opt clone_opts[] = {
    OPT_DOMAIN,
    {"snapshotname", CLI_OPT_STRING, CLI_OPT_REQUIRED, "snapshot name"},
    {"newname", CLI_OPT_STRING, CLI_OPT_REQUIRED, "name of the new domain"},
    {"linked", CLI_OPT_BOOL, 0, "disks as qcow2 overlays on the snapshot's images (default)"},
    {"full", CLI_OPT_BOOL, 0, "disks as independent copies"},
    {"start", CLI_OPT_BOOL, 0, "start the new domain"},
    {"with-memory", CLI_OPT_BOOL, 0, "start the new domain from the snapshot's memory"},
    {NULL, 0, 0, NULL},
};

static const struct cli_cmd_def export_def = {
    "snapshot-export", "Export a disk of a snapshot as an image",
    "Write one disk as it was at the snapshot to a standalone qcow2 or raw image, while the domain runs, is "
    "paused or is shut off. Only data the guest can no longer change is read.",
    export_opts};
static const struct cli_cmd_def clone_def = {
    "domain-clone", "Create a new domain from a snapshot",
    "Define a new domain from a snapshot: its disks linked to the snapshot's images or copied, its own name, "
    "uuid, QMP socket and MAC addresses; optionally started, or started from the snapshot's memory.",
    clone_opts};

const struct cli_command cli_clone_commands[] = {
    {&export_def, cmd_export, 0},
    {&clone_def, cmd_clone, 0},
    {NULL, NULL, 0},
};
