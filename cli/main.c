/* main.c: the qsnap command line - global options, the command table, dispatch and exit codes. */
#include "engine.h"
#include "qs_util.h"

#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2 };

struct cli_ctx {
    const char *root; /* --root, or NULL for QSNAP_ROOT / the default */
};

struct cli_command {
    const char *name;
    int (*handler)(struct cli_ctx *ctx, int argc, char **argv);
    const char *synopsis;
    const char *summary;
};

static int cmd_help(struct cli_ctx *ctx, int argc, char **argv);
static int cmd_version(struct cli_ctx *ctx, int argc, char **argv);

static const struct cli_command commands[] = {
    {"help", cmd_help, "help [COMMAND]", "show the commands, or one command's usage"},
    {"version", cmd_version, "version", "show qsnap's version"},
};

static const struct cli_command *command_find(const char *name)
{
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

static void usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void usage_error(const char *fmt, ...)
{
    va_list ap;
    fputs("error: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\n", stderr);
}

static int cmd_help(struct cli_ctx *ctx, int argc, char **argv)
{
    (void)ctx;
    if (argc > 2) {
        usage_error("unexpected argument '%s'", argv[2]);
        return EXIT_USAGE;
    }
    if (argc == 2) {
        const struct cli_command *c = command_find(argv[1]);
        if (!c) {
            usage_error("unknown command: '%s'", argv[1]);
            return EXIT_USAGE;
        }
        printf("usage: qsnap [--root DIR] %s\n\n  %s\n", c->synopsis, c->summary);
        return EXIT_OK;
    }
    printf("usage: qsnap [--root DIR] COMMAND [ARGS...]\n\n"
           "Snapshots of QEMU virtual machines, without libvirt.\n\n"
           "Commands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        printf("  %-24s %s\n", commands[i].name, commands[i].summary);
    printf("\nGlobal options:\n"
           "  --root DIR               state directory (default: $QSNAP_ROOT, /var/lib/qsnap as root,\n"
           "                           $XDG_STATE_HOME/qsnap otherwise)\n"
           "  -V, --version            show qsnap's version\n"
           "  -h, --help               show this help\n\n"
           "Exit status: 0 success, 1 the operation failed, 2 usage error.\n");
    return EXIT_OK;
}

static int cmd_version(struct cli_ctx *ctx, int argc, char **argv)
{
    (void)ctx;
    if (argc > 1) {
        usage_error("unexpected argument '%s'", argv[1]);
        return EXIT_USAGE;
    }
    printf("qsnap %s\n", engine_version());
    return EXIT_OK;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"root", required_argument, NULL, 'r'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct cli_ctx ctx = {0};
    const struct cli_command *cmd;
    int c, idx;

    opterr = 0;
    /* '+': stop at the command name; its own options are its handler's */
    while ((c = getopt_long(argc, argv, "+Vh", opts, NULL)) != -1) {
        switch (c) {
        case 'r':
            ctx.root = optarg;
            break;
        case 'V':
            return cmd_version(&ctx, 1, argv);
        case 'h':
            return cmd_help(&ctx, 1, argv);
        default:
            usage_error("unknown option '%s'", argv[optind - 1]);
            return EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        cmd_help(&ctx, 1, argv);
        return EXIT_USAGE;
    }
    idx = optind;
    cmd = command_find(argv[idx]);
    if (!cmd) {
        usage_error("unknown command: '%s'", argv[idx]);
        return EXIT_USAGE;
    }
    optind = 0; /* full getopt reset for the handler's own parsing */
    return cmd->handler(&ctx, argc - idx, argv + idx);
}
