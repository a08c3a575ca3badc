/* cli.h: what the command handlers share - the context, error printing, exit codes. */
#ifndef QS_CLI_H
#define QS_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include "engine.h"
#include "opts.h"

enum { CLI_EXIT_OK = 0, CLI_EXIT_FAILED = 1, CLI_EXIT_USAGE = 2 };

struct cli_ctx {
    const char *root;      /* --root, or NULL */
    int lock_timeout_ms;   /* --lock-timeout or $QSNAP_LOCK_TIMEOUT_MS (0: do not wait); -1: the engine's */
    bool quiet;            /* -q: no table headers, messages or per-command newline (as virsh -q) */
    struct engine *engine; /* opened on first use by cli_engine() */
    bool progress;         /* stderr is a terminal: show progress lines */
    bool progress_shown;   /* a progress line is on screen and needs clearing */
    int64_t test_now_ms;   /* $QSNAP_TEST_NOW (tests only): the engine's clock starts there; 0: the system's */
    int64_t start_mono_ms; /* when the command started, for the test clock */
};

enum cli_cmd_flags {
    CLI_CMD_NO_END = 1 << 0, /* no per-command newline after it (help, version) */
};

struct cli_command {
    const struct cli_cmd_def *def;
    int (*handler)(struct cli_ctx *ctx, const struct cli_args *args);
    unsigned flags;
};

/* The engine for ctx->root, opened once; NULL after printing the error. */
struct engine *cli_engine(struct cli_ctx *ctx);
/* The engine with DOMAIN (NULL: every domain, nothing looked up) looked up first, as virsh does ("failed to
 * get domain 'X'"); NULL after printing the error. */
struct engine *cli_domain_engine(struct cli_ctx *ctx, const char *domain);
/* Prints "error: MESSAGE" to stderr and frees *err. ctx may be NULL. Returns CLI_EXIT_FAILED. */
int cli_fail(struct cli_ctx *ctx, struct qs_error **err);
/* Prints "error: " + formatted text. Returns CLI_EXIT_FAILED. */
int cli_failf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The XML document in FILE (16 MiB at most, no NUL byte): CLI_EXIT_OK with *xml (caller frees), else the error
 * printed - virsh's "Failed to open file 'FILE': REASON" where the file cannot be read - and CLI_EXIT_FAILED. */
int cli_xml_file_read(const char *file, char **xml);

extern const struct cli_command cli_domain_commands[];
extern const struct cli_command cli_snapshot_commands[];
extern const struct cli_command cli_check_commands[];
extern const struct cli_command cli_preview_commands[];
extern const struct cli_command cli_schedule_commands[];
extern const struct cli_command cli_clone_commands[];

#endif
