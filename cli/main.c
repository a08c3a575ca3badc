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
static const struct cli_cmd_def help_def = {"help", "print help", "Prints the commands, or one command's usage.",
                                            help_opts};
static const struct cli_opt version_opts[] = {
    {"domain", CLI_OPT_STRING, 0, "also the QEMU this running domain runs on"},
    {"features", CLI_OPT_BOOL, 0, "with --domain: also QEMU's package and the QEMU features qsnap uses it has"},
    {NULL, 0, 0, NULL},
};
static const struct cli_cmd_def version_def = {
    "version", "show version",
    "Prints qsnap's version; with --domain, in virsh's form, with the version of the QEMU the domain runs on.",
    version_opts};
static const struct cli_command main_commands[] = {
    {&help_def, cmd_help, CLI_CMD_NO_END},
    {&version_def, cmd_version, CLI_CMD_NO_END},
    {NULL, NULL, 0},
};

/* Every command table, in the order help lists them. */
static const struct cli_command *const tables[] = {main_commands, cli_domain_commands, cli_snapshot_commands,
                                                   cli_check_commands, cli_preview_commands,
                                                   cli_schedule_commands, cli_clone_commands};

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
 * would stop it, with nothing cleaned up - or waits there ($QSNAP_FAULT_PAUSE_AT), as a slow operation would:
 * for $QSNAP_FAULT_PAUSE_MS, or until the file $QSNAP_FAULT_PAUSE_UNTIL exists.
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
        const char *ms = getenv("QSNAP_FAULT_PAUSE_MS"), *until = getenv("QSNAP_FAULT_PAUSE_UNTIL");
        /* $QSNAP_FAULT_PAUSE_UNTIL: until that file exists instead - a test lets it go on when it is done,
         * however slow the machine; or until its directory is gone (a failed test's) or ten minutes passed */
        for (int i = 0; until && *until && i < 60000 && access(until, F_OK) != 0; i++) {
            char dir[4096];
            snprintf(dir, sizeof(dir), "%s", until);
            if (strrchr(dir, '/'))
                *strrchr(dir, '/') = '\0';
            if (access(dir, F_OK) != 0)
                break;
            usleep(10000);
        }
        if (!until || !*until)
            usleep((useconds_t)(ms ? atol(ms) : 3000) * 1000u);
    }
}
#endif

/* $QSNAP_TEST_NOW: tests set the wall clock (seconds since the epoch) to drive schedules through time without
 * waiting; it runs on from there at the real pace. */
static int64_t test_clock(void *opaque)
{
    struct cli_ctx *ctx = opaque;
    return ctx->test_now_ms + (qs_now_ms() - ctx->start_mono_ms);
}

struct engine *cli_engine(struct cli_ctx *ctx)
{
    struct engine_options opts = {.root = ctx->root, .progress = progress_show, .opaque = ctx};
    struct qs_error *err = NULL;
    const char *now = getenv("QSNAP_TEST_NOW");

    if (now && *now) {
        char *end;
        long long v = strtoll(now, &end, 10);
        if (*end || v <= 0) {
            cli_failf("QSNAP_TEST_NOW must be seconds since the epoch, not '%s'", now);
            return NULL;
        }
        ctx->test_now_ms = v * 1000;
        ctx->start_mono_ms = qs_now_ms();
        opts.clock = test_clock;
    }

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
    printf("usage: qsnap [--root DIR | --connect URL] [--lock-timeout MS] [-q] COMMAND [ARGS...]\n\n"
           "Snapshots of QEMU virtual machines, without libvirt. Commands take virsh's options.\n");
    for (size_t t = 0; t < sizeof(tables) / sizeof(tables[0]); t++) {
        static const char *const titles[] = {"Generic", "Domain", "Snapshot", "Consistency", "Preview",
                                             "Schedule", "Clone"};
        printf("\n %s commands:\n", titles[t]);
        for (const struct cli_command *c = tables[t]; c->def; c++)
            printf("    %-20s %s\n", c->def->name, c->def->summary);
    }
    printf("\n Global options:\n"
           "    --root DIR           state directory (default: $QSNAP_ROOT, /var/lib/qsnap as root,\n"
           "                         $XDG_STATE_HOME/qsnap otherwise)\n"
           "    --lock-timeout MS    wait at most MS milliseconds for another qsnap's lock on the domain\n"
           "                         (default: $QSNAP_LOCK_TIMEOUT_MS, else 10000; 0: do not wait)\n"
           "    --connect URL        run the command through qsnapd: unix:PATH, or https://HOST:PORT with\n"
           "                         $QSNAP_TOKEN (default: $QSNAP_CONNECT; output as without it)\n"
           "    -q, --quiet          quiet mode, as virsh -q\n"
           "    -V, --version        show qsnap's version\n"
           "    -h, --help           show this help\n\n"
           " 'qsnap help COMMAND' shows a command's options. Exit status: 0 success, 1 the operation failed,\n"
           " 2 usage error.\n\n");
    return CLI_EXIT_OK;
}

static int cmd_version(struct cli_ctx *ctx, const struct cli_args *args)
{
    const char *dom = cli_args_str(args, "domain");
    struct engine_qemu_info info;
    struct qs_error *err = NULL;
    struct engine *e;

    if (!dom) {
        if (cli_args_bool(args, "features")) {
            cli_failf("--features needs --domain");
            return CLI_EXIT_USAGE;
        }
        printf("qsnap %s\n", engine_version());
        return CLI_EXIT_OK;
    }
    if (!(e = cli_engine(ctx)))
        return CLI_EXIT_FAILED;
    if (engine_domain_qemu_info(e, dom, &info, &err) < 0)
        return cli_fail(ctx, &err);
    /* virsh version's lines; the API is qsnap's own, as virsh names its QEMU driver's */
    printf("Compiled against library: qsnap %s\n", QSNAP_VERSION);
    printf("Using library: qsnap %s\n", engine_version());
    printf("Using API: QEMU %s\n", engine_version());
    printf("Running hypervisor: QEMU %s\n", info.version);
    if (cli_args_bool(args, "features")) {
        printf("QEMU package: %s\nQEMU features used by qsnap:", *info.package ? info.package : "-");
        for (char **f = info.features; f && *f; f++)
            printf(" %s", *f);
        printf("\n");
    }
    engine_qemu_info_release(&info);
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

/*
 * --connect: the command runs through qsnapd. This binary has no HTTP client; it hands over to
 * qsnap-remote, the same command line built on the remote engine (libcurl), as git hands https to
 * git-remote-https - so commands without --connect never load libcurl. qsnap-remote is looked for next to
 * this binary (the build tree), then in QSNAP_LIBEXECDIR. Returns -1 after a usage error; does not return
 * otherwise (exit 1 when the exec fails).
 */
static int remote_dispatch(const char *connect, const char *root, char **argv)
{
    if (root) {
        cli_failf("--root cannot be used with --connect: the state directory is qsnapd's");
        return -1;
    }
#ifdef QSNAP_REMOTE
    (void)argv;
    return setenv("QSNAP_CONNECT", connect, 1);
#else
    {
        char self[4096], *slash, *path;
        ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
        setenv("QSNAP_CONNECT", connect, 1);
        if (n > 0) {
            self[n] = '\0';
            if ((slash = strrchr(self, '/')) != NULL) {
                path = qs_asprintf("%.*s/qsnap-remote", (int)(slash - self), self);
                if (access(path, X_OK) == 0)
                    execv(path, argv);
                free(path);
            }
        }
        execv(QSNAP_LIBEXECDIR "/qsnap-remote", argv);
        cli_failf("cannot run '%s': %s", QSNAP_LIBEXECDIR "/qsnap-remote", strerror(errno));
        exit(CLI_EXIT_FAILED);
    }
#endif
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"root", required_argument, NULL, 'r'}, {"quiet", no_argument, NULL, 'q'},
        {"version", no_argument, NULL, 'V'},    {"help", no_argument, NULL, 'h'},
        {"lock-timeout", required_argument, NULL, 'L'},
        {"connect", required_argument, NULL, 'C'},
        {NULL, 0, 0, 0},
    };
    const char *connect = NULL;
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
        case 'C':
            connect = optarg;
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
    if (!connect && getenv("QSNAP_CONNECT") && *getenv("QSNAP_CONNECT"))
        connect = getenv("QSNAP_CONNECT");
    if (connect && remote_dispatch(connect, ctx.root, argv) < 0)
        return CLI_EXIT_USAGE;
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
