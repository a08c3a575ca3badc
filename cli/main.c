/* main.c: the qsnap command line - global options, the command table, dispatch and exit codes. */
#include "cli.h"
#include "qs_util.h"
#include "vsh_output.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int cmd_help(struct cli_ctx *ctx, const struct cli_args *args);
static int cmd_version(struct cli_ctx *ctx, const struct cli_args *args);

static const struct cli_opt help_opts[] = {
    {"command", CLI_OPT_STRING, 0, "show the usage of this command"},
    {NULL, 0, 0, NULL},
};
static const struct cli_opt no_opts[] = {{NULL, 0, 0, NULL}};
static const struct cli_cmd_def help_def = {"help", "print help", "Prints the commands, or one command's usage.",
                                            help_opts};
static const struct cli_cmd_def version_def = {"version", "show version", "Prints qsnap's version.", no_opts};
static const struct cli_command main_commands[] = {
    {&help_def, cmd_help, CLI_CMD_NO_END},
    {&version_def, cmd_version, CLI_CMD_NO_END},
    {NULL, NULL, 0},
};

/* Every command table, in the order help lists them. */
static const struct cli_command *const tables[] = {main_commands, cli_domain_commands, cli_snapshot_commands,
                                                   cli_check_commands, cli_clone_commands};

static const struct cli_command *command_find(const char *name)
{
    for (size_t t = 0; t < sizeof(tables) / sizeof(tables[0]); t++)
        for (const struct cli_command *c = tables[t]; c->def; c++)
            if (strcmp(c->def->name, name) == 0)
                return c;
    return NULL;
}

int cli_failf(const char *fmt, ...)
{
    va_list ap;
    fflush(stdout);
    fputs("error: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\n", stderr);
    return CLI_EXIT_FAILED;
}

int cli_fail(struct cli_ctx *ctx, struct qs_error **err)
{
    (void)ctx;
    cli_failf("%s", *err && (*err)->message ? (*err)->message : "unknown error");
    qs_error_clear(err);
    return CLI_EXIT_FAILED;
}

/* A progress line on a terminal ("save: 42%"), nothing otherwise. Never cancels. */
static int progress_show(void *opaque, const char *phase, uint64_t done, uint64_t total)
{
    struct cli_ctx *ctx = opaque;

    if (!ctx->progress)
        return 0;
    if (total > 0)
        fprintf(stderr, "\r%s: %3u%%", phase, (unsigned)(done * 100 / total));
    else
        fprintf(stderr, "\r%s...", phase);
    fflush(stderr);
    ctx->progress_shown = true;
    return 0;
}

#ifdef QSNAP_FAULT_INJECTION
/*
 * Test builds only (the qsnap-fault binary): every step boundary is appended to $QSNAP_FAULT_LOG as
 * "OP STEP", and the process SIGKILLs itself right after step number $QSNAP_FAULT_AT (from 1) - as a crash
 * would stop it, with nothing cleaned up - or waits there ($QSNAP_FAULT_PAUSE_AT), as a slow operation would.
 */
#include <fcntl.h>
#include <signal.h>

static void fault_step(void *opaque, const char *op, const char *step)
{
    static long count;
    const char *log = getenv("QSNAP_FAULT_LOG"), *at = getenv("QSNAP_FAULT_AT");
    (void)opaque;

    count++;
    if (log && *log) {
        int fd = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
        if (fd >= 0) {
            dprintf(fd, "%s %s\n", op, step);
            close(fd);
        }
    }
    if (at && atol(at) == count)
        raise(SIGKILL);
    /* $QSNAP_FAULT_PAUSE_AT: hold still after that step for $QSNAP_FAULT_PAUSE_MS, lock and record held */
    at = getenv("QSNAP_FAULT_PAUSE_AT");
    if (at && atol(at) == count) {
        const char *ms = getenv("QSNAP_FAULT_PAUSE_MS");
        usleep((useconds_t)(ms ? atol(ms) : 3000) * 1000u);
    }
}
#endif

struct engine *cli_engine(struct cli_ctx *ctx)
{
    struct engine_options opts = {.root = ctx->root, .progress = progress_show, .opaque = ctx};
    struct qs_error *err = NULL;

#ifdef QSNAP_FAULT_INJECTION
    opts.step = fault_step;
#endif

    /* the engine reads 0 as its default (10 s): "do not wait" becomes one try and a 1 ms deadline */
    if (ctx->lock_timeout_ms >= 0)
        opts.lock_timeout_ms = ctx->lock_timeout_ms > 0 ? ctx->lock_timeout_ms : 1;
    if (!ctx->engine && !(ctx->engine = engine_new(&opts, &err)))
        cli_fail(ctx, &err);
    return ctx->engine;
}

static int cmd_help(struct cli_ctx *ctx, const struct cli_args *args)
{
    const char *name = cli_args_str(args, "command");

    if (name) {
        const struct cli_command *c = command_find(name);
        if (!c) {
            /* help got past option parsing: virsh's per-command newline, then its wording */
            if (!ctx->quiet)
                fputs("\n", stdout);
            cli_failf(VSH_ERR_HELP_UNKNOWN, name);
            return CLI_EXIT_USAGE;
        }
        cli_cmd_print_help(c->def, stdout);
        return CLI_EXIT_OK;
    }
    printf("usage: qsnap [--root DIR] [--lock-timeout MS] [-q] COMMAND [ARGS...]\n\n"
           "Snapshots of QEMU virtual machines, without libvirt. Commands take virsh's options.\n");
    for (size_t t = 0; t < sizeof(tables) / sizeof(tables[0]); t++) {
        static const char *const titles[] = {"Generic", "Domain", "Snapshot", "Consistency", "Clone"};
        printf("\n %s commands:\n", titles[t]);
        for (const struct cli_command *c = tables[t]; c->def; c++)
            printf("    %-20s %s\n", c->def->name, c->def->summary);
    }
    printf("\n Global options:\n"
           "    --root DIR           state directory (default: $QSNAP_ROOT, /var/lib/qsnap as root,\n"
           "                         $XDG_STATE_HOME/qsnap otherwise)\n"
           "    --lock-timeout MS    wait at most MS milliseconds for another qsnap's lock on the domain\n"
           "                         (default: $QSNAP_LOCK_TIMEOUT_MS, else 10000; 0: do not wait)\n"
           "    -q, --quiet          quiet mode, as virsh -q\n"
           "    -V, --version        show qsnap's version\n"
           "    -h, --help           show this help\n\n"
           " 'qsnap help COMMAND' shows a command's options. Exit status: 0 success, 1 the operation failed,\n"
           " 2 usage error.\n\n");
    return CLI_EXIT_OK;
}

static int cmd_version(struct cli_ctx *ctx, const struct cli_args *args)
{
    (void)ctx;
    (void)args;
    printf("qsnap %s\n", engine_version());
    return CLI_EXIT_OK;
}

/* A lock wait in milliseconds: 0 to one day, decimal digits only. -1 when S is not one. */
static int lock_timeout_parse(const char *s)
{
    char *end;
    long v;

    if (!s || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    v = strtol(s, &end, 10);
    return errno || *end || v > 86400000L ? -1 : (int)v;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"root", required_argument, NULL, 'r'}, {"quiet", no_argument, NULL, 'q'},
        {"version", no_argument, NULL, 'V'},    {"help", no_argument, NULL, 'h'},
        {"lock-timeout", required_argument, NULL, 'L'},
        {NULL, 0, 0, 0},
    };
    struct cli_ctx ctx = {.lock_timeout_ms = -1};
    const char *lock_env;
    const struct cli_command *cmd;
    struct cli_args args;
    int c, idx, ret;

    opterr = 0;
    /* '+': stop at the command name; its own options are its table's */
    while ((c = getopt_long(argc, argv, "+qVh", opts, NULL)) != -1) {
        switch (c) {
        case 'r':
            ctx.root = optarg;
            break;
        case 'q':
            ctx.quiet = true;
            break;
        case 'L':
            if ((ctx.lock_timeout_ms = lock_timeout_parse(optarg)) < 0) {
                cli_failf("--lock-timeout must be a number of milliseconds from 0 to 86400000, not '%s'", optarg);
                return CLI_EXIT_USAGE;
            }
            break;
        case 'V':
            printf("qsnap %s\n", engine_version());
            return CLI_EXIT_OK;
        case 'h':
            cmd = command_find("help");
            cli_args_parse(cmd->def, 1, argv, &args);
            return cmd_help(&ctx, &args);
        default:
            cli_failf("unsupported option '%s'. See --help.", argv[optind - 1]);
            return CLI_EXIT_USAGE;
        }
    }
    /* --lock-timeout wins over the environment */
    if (ctx.lock_timeout_ms < 0 && (lock_env = getenv("QSNAP_LOCK_TIMEOUT_MS")) && *lock_env &&
        (ctx.lock_timeout_ms = lock_timeout_parse(lock_env)) < 0) {
        cli_failf("QSNAP_LOCK_TIMEOUT_MS must be a number of milliseconds from 0 to 86400000, not '%s'", lock_env);
        return CLI_EXIT_USAGE;
    }
    if (optind >= argc) {
        cmd = command_find("help");
        cli_args_parse(cmd->def, 1, argv, &args);
        cmd_help(&ctx, &args);
        return CLI_EXIT_USAGE;
    }
    idx = optind;
    cmd = command_find(argv[idx]);
    if (!cmd) {
        cli_failf(VSH_ERR_UNKNOWN_COMMAND, argv[idx]);
        return CLI_EXIT_USAGE;
    }
    switch (cli_args_parse(cmd->def, argc - idx, argv + idx, &args)) {
    case 1:
        return CLI_EXIT_OK; /* --help */
    case 0:
        break;
    default:
        return CLI_EXIT_USAGE;
    }
    ctx.progress = isatty(STDERR_FILENO);
    ret = cmd->handler(&ctx, &args);
    if (ctx.progress_shown)
        fputs("\r\033[K", stderr);
    /* virsh ends every command that got past option parsing with a newline, success or failure */
    if (!(cmd->flags & CLI_CMD_NO_END) && !ctx.quiet && !cli_args_given(&args, "json"))
        fputs("\n", stdout);
    cli_args_release(&args);
    engine_free(ctx.engine);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        cli_failf("cannot write output");
        ret = CLI_EXIT_FAILED;
    }
    return ret;
}
