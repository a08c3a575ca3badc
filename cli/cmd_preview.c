/* cmd_preview.c: snapshot-preview, snapshot-commit, snapshot-undo - oVirt's preview cycle, in virsh's style. */
#include "cli.h"
#include "qs_util.h"
#include "vsh_output.h"

#include <stdio.h>
#include <stdlib.h>

/* "Domain snapshot NAME WHAT", as virsh words its confirmations; nothing with -q. */
static int say(struct cli_ctx *ctx, const char *name, const char *what)
{
    if (ctx->quiet)
        return CLI_EXIT_OK;
    return printf("Domain snapshot %s %s\n", name, what) < 0 ? CLI_EXIT_FAILED : CLI_EXIT_OK;
}

static const struct cli_flag state_flag_map[] = {
    {"running", ENGINE_REVERT_RUNNING}, {"paused", ENGINE_REVERT_PAUSED}, {"force", ENGINE_REVERT_FORCE},
};

static int cmd_preview(struct cli_ctx *ctx, const struct cli_args *args)
{
    const char *domain = cli_args_str(args, "domain"), *name = cli_args_str(args, "snapshotname");
    struct engine *e = cli_domain_engine(ctx, domain);
    struct qs_error *err = NULL;

    if (!e)
        return CLI_EXIT_FAILED;
    if (engine_snapshot_preview(e, domain, name, CLI_ARGS_FLAGS(args, state_flag_map), &err) < 0) {
        cli_failf("Failed to preview snapshot %s", name);
        return cli_fail(ctx, &err);
    }
    return say(ctx, name, "previewed");
}

/* The snapshot in preview, for the messages; NULL after printing the error. Caller frees. */
static char *previewed(struct cli_ctx *ctx, struct engine *e, const char *domain)
{
    enum engine_preview_state st;
    struct qs_error *err = NULL;
    char *name = NULL;

    if (engine_snapshot_preview_get(e, domain, &st, &name, &err) < 0) {
        cli_fail(ctx, &err);
        return NULL;
    }
    if (st == ENGINE_PREVIEW_NONE)
        cli_failf("domain '%s' has no snapshot in preview", domain);
    return name;
}

static int cmd_commit(struct cli_ctx *ctx, const struct cli_args *args)
{
    const char *domain = cli_args_str(args, "domain");
    struct engine *e = cli_domain_engine(ctx, domain);
    struct qs_error *err = NULL;
    char *name;
    int ret;

    if (!e || !(name = previewed(ctx, e, domain)))
        return CLI_EXIT_FAILED;
    if (engine_snapshot_preview_commit(e, domain, &err) < 0) {
        cli_failf("Failed to commit the preview of snapshot %s", name);
        ret = cli_fail(ctx, &err);
    } else {
        ret = say(ctx, name, "preview committed");
    }
    free(name);
    return ret;
}

static int cmd_undo(struct cli_ctx *ctx, const struct cli_args *args)
{
    const char *domain = cli_args_str(args, "domain");
    struct engine *e = cli_domain_engine(ctx, domain);
    struct qs_error *err = NULL;
    char *name;
    int ret;

    if (!e || !(name = previewed(ctx, e, domain)))
        return CLI_EXIT_FAILED;
    if (engine_snapshot_preview_undo(e, domain, CLI_ARGS_FLAGS(args, state_flag_map), &err) < 0) {
        cli_failf("Failed to undo the preview of snapshot %s", name);
        ret = cli_fail(ctx, &err);
    } else {
        ret = say(ctx, name, "preview undone");
    }
    free(name);
    return ret;
}

#define OPT_DOMAIN {"domain", CLI_OPT_STRING, CLI_OPT_REQUIRED, "domain name, id or uuid"}
#define OPT_END {NULL, 0, 0, NULL}

static const struct cli_opt preview_opts[] = {
    OPT_DOMAIN,
    {"snapshotname", CLI_OPT_STRING, CLI_OPT_REQUIRED, "snapshot name"},
    {"running", CLI_OPT_BOOL, 0, "after previewing, change state to running"},
    {"paused", CLI_OPT_BOOL, 0, "after previewing, change state to paused"},
    {"force", CLI_OPT_BOOL, 0, "try harder on risky reverts"},
    OPT_END,
};
static const struct cli_opt commit_opts[] = {OPT_DOMAIN, OPT_END};
static const struct cli_opt undo_opts[] = {
    OPT_DOMAIN,
    {"running", CLI_OPT_BOOL, 0, "after undoing, change state to running"},
    {"paused", CLI_OPT_BOOL, 0, "after undoing, change state to paused"},
    {"force", CLI_OPT_BOOL, 0, "try harder on risky reverts"},
    OPT_END,
};

static const struct cli_cmd_def preview_def = {"snapshot-preview", "Run a domain on a snapshot, keeping its state",
    "Run the domain on a snapshot for a look, keeping the state it leaves as the preview point "
    "qsnap-before-preview, until snapshot-commit keeps the preview or snapshot-undo goes back",
    preview_opts};
static const struct cli_cmd_def commit_def = {"snapshot-commit", "Keep the snapshot a domain previews",
    "Make the previewed snapshot the domain's state and drop the preview point", commit_opts};
static const struct cli_cmd_def undo_def = {"snapshot-undo", "Return a domain to where its preview began",
    "Revert the domain to the preview point exactly (RAM too when it ran) and drop the point", undo_opts};

const struct cli_command cli_preview_commands[] = {
    {&preview_def, cmd_preview, 0},
    {&commit_def, cmd_commit, 0},
    {&undo_def, cmd_undo, 0},
    {NULL, NULL, 0},
};
