/* cmd_check.c: snapshot-check - a domain's snapshot metadata reconciled with its images, optionally repaired. */
#include "cli.h"
#include "json_out.h"
#include "qs_buf.h"
#include "qs_util.h"
#include "vsh_output.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* One item as a text line: "MESSAGE (fix: FIX)", or "repaired: MESSAGE". */
static void text_item(struct qs_buf *b, const struct engine_check_item *it)
{
    const char *fix = engine_check_item_fix(it);

    if (engine_check_item_repaired(it))
        qs_buf_addf(b, "repaired: %s\n", engine_check_item_message(it));
    else if (engine_check_item_is_note(it))
        qs_buf_addf(b, "note: %s\n", engine_check_item_message(it));
    else if (fix)
        qs_buf_addf(b, "%s (fix: %s)\n", engine_check_item_message(it), fix);
    else
        qs_buf_addf(b, "%s\n", engine_check_item_message(it));
}

static void json_item(struct json_out *j, const struct engine_check_item *it)
{
    json_out_object_begin(j);
    json_out_kv_string(j, "kind", engine_check_item_kind(it));
    json_out_kv_string(j, "snapshot", engine_check_item_snapshot(it));
    json_out_kv_string(j, "disk", engine_check_item_disk(it));
    json_out_kv_string(j, "message", engine_check_item_message(it));
    json_out_kv_string(j, "fix", engine_check_item_fix(it));
    json_out_kv_bool(j, "repaired", engine_check_item_repaired(it));
    json_out_kv_bool(j, "note", engine_check_item_is_note(it));
    json_out_object_end(j);
}

static int cmd_check(struct cli_ctx *ctx, const struct cli_args *args)
{
    const char *domain = cli_args_str(args, "domain");
    bool json = cli_args_bool(args, "json");
    unsigned flags = cli_args_bool(args, "repair") ? ENGINE_CHECK_REPAIR : 0;
    struct engine_check_report *r = NULL;
    struct qs_error *err = NULL;
    struct engine *e = cli_engine(ctx);
    struct qs_buf out;
    size_t n, repaired = 0, notes = 0;
    int ret = CLI_EXIT_FAILED;

    qs_buf_init(&out, 0);
    if (!e)
        goto out;
    if (engine_domain_lookup(e, domain, &err) < 0) {
        if (err->code == QS_ERR_NOTFOUND) {
            qs_error_clear(&err);
            cli_failf(VSH_ERR_NO_DOMAIN, domain);
        } else {
            cli_fail(ctx, &err);
        }
        goto out;
    }
    if (engine_snapshot_check(e, domain, flags, &r, &err) < 0) {
        cli_fail(ctx, &err);
        goto out;
    }
    n = engine_check_report_count(r);
    if (json) {
        struct json_out j;
        json_out_init(&j, &out);
        json_out_array_begin(&j);
        for (size_t i = 0; i < n; i++)
            json_item(&j, engine_check_report_at(r, i));
        json_out_array_end(&j);
    }
    for (size_t i = 0; i < n; i++) {
        const struct engine_check_item *it = engine_check_report_at(r, i);
        if (engine_check_item_repaired(it))
            repaired++;
        else if (engine_check_item_is_note(it))
            notes++;
        if (!json)
            text_item(&out, it);
    }
    if (vsh_buf_write(stdout, &out) < 0) {
        cli_failf("cannot write output: %s", strerror(errno));
        goto out;
    }
    if (repaired + notes < n) {
        n -= notes;
        cli_failf("domain '%s': %zu discrepanc%s (%zu repaired)", domain, n, n == 1 ? "y" : "ies", repaired);
        goto out;
    }
    ret = CLI_EXIT_OK;
out:
    qs_buf_release(&out);
    engine_check_report_free(r);
    return ret;
}

static const struct cli_opt check_opts[] = {
    {"domain", CLI_OPT_STRING, CLI_OPT_REQUIRED, "domain name"},
    {"repair", CLI_OPT_BOOL, 0, "apply the safe fixes (never deletes data)"},
    {"json", CLI_OPT_BOOL, 0, "print JSON instead of text"},
    {NULL, 0, 0, NULL},
};

static const struct cli_cmd_def check_def = {
    "snapshot-check", "Check snapshot metadata against the disks",
    "Reconciles the domain's snapshot metadata with its disk images, overlay and memory files and the running "
    "QEMU; prints one line per discrepancy (and notes on limitations, which are not discrepancies) and exits 1 "
    "when any discrepancy remains. --repair applies the safe fixes.",
    check_opts};

const struct cli_command cli_check_commands[] = {
    {&check_def, cmd_check, CLI_CMD_NO_END}, /* clean: no output at all */
    {NULL, NULL, 0},
};
