/* cmd_domain.c: domains without libvirt - attach, define, undefine, list, domstate, start, destroy, save,
 * restore. */
#include "cli.h"
#include "qs_buf.h"
#include "qs_file.h"
#include "qs_util.h"
#include "vsh_output.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OPT_DOMAIN {"domain", CLI_OPT_STRING, CLI_OPT_REQUIRED, "domain name"}

static int cmd_attach(struct cli_ctx *ctx, const struct cli_args *args)
{
    struct engine *e = cli_engine(ctx);
    struct qs_error *err = NULL;
    const char *name = cli_args_str(args, "domain"), *sock = cli_args_str(args, "qmp");
    bool update = cli_args_bool(args, "update");

    if (!sock && !update) {
        fprintf(stderr, "error: command 'attach' requires <qmp> option\n");
        return CLI_EXIT_USAGE;
    }
    if (!e)
        return CLI_EXIT_FAILED;
    if (engine_domain_attach_flags(e, name, sock, update ? ENGINE_ATTACH_UPDATE : 0, &err) < 0)
        return cli_fail(ctx, &err);
    if (!ctx->quiet) { /* virsh -q leaves out confirmations */
        if (update)
            printf("Domain '%s' updated from its running QEMU\n", name);
        else
            printf("Domain '%s' attached from %s\n", name, sock);
    }
    return CLI_EXIT_OK;
}

static int cmd_define(struct cli_ctx *ctx, const struct cli_args *args)
{
    struct engine *e = cli_engine(ctx);
    struct qs_error *err = NULL;
    const char *file = cli_args_str(args, "file");
    char *xml = NULL, *name = NULL;
    int ret = CLI_EXIT_FAILED;

    if (!e)
        return CLI_EXIT_FAILED;
    if (cli_xml_file_read(file, &xml) != CLI_EXIT_OK)
        goto out;
    if (engine_domain_define(e, xml, cli_args_str(args, "qmp"), &name, &err) < 0) {
        ret = cli_fail(ctx, &err);
        goto out;
    }
    if (!ctx->quiet) /* virsh -q leaves out confirmations */
        printf("Domain '%s' defined from %s\n", name, file);
    ret = CLI_EXIT_OK;
out:
    free(xml);
    free(name);
    return ret;
}

static int cmd_undefine(struct cli_ctx *ctx, const struct cli_args *args)
{
    struct engine *e = cli_engine(ctx);
    struct qs_error *err = NULL;
    const char *name = cli_args_str(args, "domain");

    if (!e)
        return CLI_EXIT_FAILED;
    if (engine_domain_undefine(e, name, cli_args_bool(args, "snapshots-metadata"), &err) < 0)
        return cli_fail(ctx, &err);
    if (!ctx->quiet) /* virsh -q leaves out confirmations */
        printf("Domain '%s' has been undefined\n", name);
    return CLI_EXIT_OK;
}

static int cmd_domstate(struct cli_ctx *ctx, const struct cli_args *args)
{
    struct engine *e = cli_engine(ctx);
    struct qs_error *err = NULL;
    enum engine_domain_state st;

    if (!e)
        return CLI_EXIT_FAILED;
    if (engine_domain_get_state(e, cli_args_str(args, "domain"), &st, NULL, &err) < 0)
        return cli_fail(ctx, &err);
    printf("%s\n", engine_domain_state_name(st));
    return CLI_EXIT_OK;
}

static int cmd_list(struct cli_ctx *ctx, const struct cli_args *args)
{
    struct engine *e = cli_engine(ctx);
    struct qs_error *err = NULL;
    char **names = NULL;
    size_t n = 0;
    bool all = cli_args_bool(args, "all");
    struct vsh_table *t = NULL;
    int ret = CLI_EXIT_FAILED;

    if (!e)
        return CLI_EXIT_FAILED;
    if (engine_domain_list(e, &names, &n, &err) < 0) {
        ret = cli_fail(ctx, &err);
        goto out;
    }
    t = vsh_table_new(3, (const char *const[]){"Id", "Name", "State"});
    for (size_t i = 0; i < n; i++) {
        enum engine_domain_state st;
        char id[32] = "-";
        int pid = -1;
        if (engine_domain_get_state(e, names[i], &st, &pid, &err) < 0) {
            ret = cli_fail(ctx, &err);
            goto out;
        }
        if (st == ENGINE_DOMAIN_SHUTOFF && !all)
            continue;
        if (pid > 0)
            snprintf(id, sizeof(id), "%d", pid);
        vsh_table_add_row(t, (const char *const[]){id, names[i], engine_domain_state_name(st)});
    }
    {
        struct qs_buf out;
        qs_buf_init(&out, 0);
        vsh_table_format(t, !ctx->quiet, &out);
        ret = vsh_buf_write(stdout, &out) < 0 ? cli_failf("cannot write output") : CLI_EXIT_OK;
        qs_buf_release(&out);
    }
out:
    vsh_table_free(t);
    engine_strv_free(names, n);
    return ret;
}

static int cmd_start(struct cli_ctx *ctx, const struct cli_args *args)
{
    struct engine *e = cli_engine(ctx);
    struct qs_error *err = NULL;
    const char *name = cli_args_str(args, "domain");

    if (!e)
        return CLI_EXIT_FAILED;
    if (engine_domain_start(e, name, cli_args_bool(args, "paused"), &err) < 0)
        return cli_fail(ctx, &err);
    if (!ctx->quiet) /* virsh -q leaves out confirmations */
        printf("Domain '%s' started\n", name);
    return CLI_EXIT_OK;
}

static int cmd_destroy(struct cli_ctx *ctx, const struct cli_args *args)
{
    struct engine *e = cli_engine(ctx);
    struct qs_error *err = NULL;
    const char *name = cli_args_str(args, "domain");

    if (!e)
        return CLI_EXIT_FAILED;
    if (engine_domain_destroy(e, name, &err) < 0)
        return cli_fail(ctx, &err);
    if (!ctx->quiet) /* virsh -q leaves out confirmations */
        printf("Domain '%s' destroyed\n", name);
    return CLI_EXIT_OK;
}

/* --running / --paused of save and restore as engine flags. */
static unsigned run_flags(const struct cli_args *args)
{
    return (cli_args_bool(args, "running") ? ENGINE_SAVE_RUNNING : 0u) |
           (cli_args_bool(args, "paused") ? ENGINE_SAVE_PAUSED : 0u);
}

static int cmd_save(struct cli_ctx *ctx, const struct cli_args *args)
{
    struct engine *e;
    struct qs_error *err = NULL;
    const char *name = cli_args_str(args, "domain"), *file = cli_args_str(args, "file");

    if (cli_args_exclusive(args, "running", "paused"))
        return CLI_EXIT_USAGE;
    if (!(e = cli_engine(ctx)))
        return CLI_EXIT_FAILED;
    if (engine_domain_save(e, name, file, run_flags(args), &err) < 0)
        return cli_fail(ctx, &err);
    if (!ctx->quiet) /* virsh -q leaves out confirmations; its text starts with a newline */
        printf("\nDomain '%s' saved to %s\n", name, file);
    return CLI_EXIT_OK;
}

static int cmd_restore(struct cli_ctx *ctx, const struct cli_args *args)
{
    struct engine *e;
    struct qs_error *err = NULL;
    const char *file = cli_args_str(args, "file");

    if (cli_args_exclusive(args, "running", "paused"))
        return CLI_EXIT_USAGE;
    if (!(e = cli_engine(ctx)))
        return CLI_EXIT_FAILED;
    if (engine_domain_restore(e, file, run_flags(args), NULL, &err) < 0)
        return cli_fail(ctx, &err);
    if (!ctx->quiet) /* virsh -q leaves out confirmations */
        printf("Domain restored from %s\n", file);
    return CLI_EXIT_OK;
}

static const struct cli_opt attach_opts[] = {
    OPT_DOMAIN,
    {"qmp", CLI_OPT_STRING, 0, "path of the VM's QMP UNIX socket (with --update: default the recorded one)"},
    {"update", CLI_OPT_BOOL, 0, "record the running QEMU of a defined domain again, keeping its snapshots"},
    {NULL, 0, 0, NULL},
};
static const struct cli_opt define_opts[] = {
    {"file", CLI_OPT_STRING, CLI_OPT_REQUIRED, "file containing an XML domain description"},
    {"qmp", CLI_OPT_STRING, CLI_OPT_NAMED, "path of the VM's QMP UNIX socket"},
    {NULL, 0, 0, NULL},
};
static const struct cli_opt undefine_opts[] = {
    OPT_DOMAIN,
    {"snapshots-metadata", CLI_OPT_BOOL, 0, "remove all domain snapshot metadata too"},
    {NULL, 0, 0, NULL},
};
static const struct cli_opt domain_only_opts[] = {OPT_DOMAIN, {NULL, 0, 0, NULL}};
static const struct cli_opt list_opts[] = {
    {"all", CLI_OPT_BOOL, 0, "list inactive & active domains"},
    {NULL, 0, 0, NULL},
};
static const struct cli_opt start_opts[] = {
    OPT_DOMAIN,
    {"paused", CLI_OPT_BOOL, 0, "leave the guest paused after start"},
    {NULL, 0, 0, NULL},
};

static const struct cli_opt save_opts[] = {
    OPT_DOMAIN,
    {"file", CLI_OPT_STRING, CLI_OPT_REQUIRED, "where to save the data"},
    {"running", CLI_OPT_BOOL, 0, "set domain to be running on restore"},
    {"paused", CLI_OPT_BOOL, 0, "set domain to be paused on restore"},
    {NULL, 0, 0, NULL},
};
static const struct cli_opt restore_opts[] = {
    {"file", CLI_OPT_STRING, CLI_OPT_REQUIRED, "the state to restore"},
    {"running", CLI_OPT_BOOL, 0, "restore domain into running state"},
    {"paused", CLI_OPT_BOOL, 0, "restore domain into paused state"},
    {NULL, 0, 0, NULL},
};

static const struct cli_cmd_def attach_def = {"attach", "take over a running QEMU",
    "Record a running QEMU, started by someone else, as domain NAME: its disks (named as libvirt would, with "
    "absolute image paths), memory, uuid, working directory and command line. With --update, record the "
    "running QEMU of domain NAME again (after it was restarted with another command line or socket): its "
    "snapshots and disk names stay.",
    attach_opts};
static const struct cli_cmd_def define_def = {"define", "define (but don't start) a domain from an XML file",
    "Define a domain from a libvirt domain XML file.", define_opts};
static const struct cli_cmd_def undefine_def = {"undefine", "undefine a domain",
    "Undefine an inactive or active domain (its disk images stay).", undefine_opts};
static const struct cli_cmd_def list_def = {"list", "list domains", "Returns list of domains.", list_opts};
static const struct cli_cmd_def domstate_def = {"domstate", "domain state", "Returns state about a domain.",
    domain_only_opts};
static const struct cli_cmd_def start_def = {"start", "start a (previously defined) inactive domain",
    "Start a domain from its recorded or defined QEMU command line.", start_opts};
static const struct cli_cmd_def destroy_def = {"destroy", "destroy (stop) a domain",
    "Destroy a given domain: QEMU is stopped at once.", domain_only_opts};
static const struct cli_cmd_def save_def = {"save", "save a domain state to a file",
    "Save the RAM state of a running domain; its QEMU then exits.", save_opts};
static const struct cli_cmd_def restore_def = {"restore", "restore a domain from a saved state in a file",
    "Restore a domain.", restore_opts};

const struct cli_command cli_domain_commands[] = {
    {&attach_def, cmd_attach, 0},     {&define_def, cmd_define, 0},     {&undefine_def, cmd_undefine, 0},
    {&list_def, cmd_list, 0},         {&domstate_def, cmd_domstate, 0}, {&start_def, cmd_start, 0},
    {&destroy_def, cmd_destroy, 0},   {&save_def, cmd_save, 0},         {&restore_def, cmd_restore, 0},
    {NULL, NULL, 0},
};
