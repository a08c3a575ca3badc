/* opts.h: virsh-style command options - one table per command drives parsing, usage and help. */
#ifndef QS_CLI_OPTS_H
#define QS_CLI_OPTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

enum cli_opt_type {
    CLI_OPT_BOOL,   /* --flag */
    CLI_OPT_STRING, /* --name VALUE, --name=VALUE, or positional */
    CLI_OPT_ARGV,   /* repeatable string, collects every occurrence (and trailing positionals) */
};

enum cli_opt_flags {
    CLI_OPT_REQUIRED = 1 << 0, /* must be given */
    CLI_OPT_NAMED = 1 << 1,    /* only as --name VALUE, never filled from a positional argument */
};

struct cli_opt {
    const char *name;
    enum cli_opt_type type;
    unsigned flags;
    const char *help;
};

#define CLI_MAX_OPTS 32

struct cli_cmd_def {
    const char *name;
    const char *summary;     /* one line for `qsnap help` and NAME */
    const char *description; /* DESCRIPTION paragraph */
    const struct cli_opt *opts; /* terminated by {NULL} */
};

/* Parsed arguments of one command. */
struct cli_args {
    const struct cli_cmd_def *def;
    const char *values[CLI_MAX_OPTS]; /* string values (BOOL: non-NULL when given) */
    const char **argv[CLI_MAX_OPTS];  /* ARGV values, NULL-terminated */
    size_t nargv[CLI_MAX_OPTS];
};

/*
 * Parses ARGV (argv[0] is the command name) as virsh does: --opt VALUE, --opt=VALUE, and positional
 * arguments filling the string options not yet given, in table order. On a usage error prints
 * "error: ..." to stderr and returns -1. --help prints the command's help and returns 1.
 */
int cli_args_parse(const struct cli_cmd_def *def, int argc, char **argv, struct cli_args *args);
void cli_args_release(struct cli_args *args);
bool cli_args_bool(const struct cli_args *args, const char *name);
/* True when the command has option NAME and it was given (no abort for options the table lacks). */
bool cli_args_given(const struct cli_args *args, const char *name);
/* The value or NULL. Borrowed from argv. */
const char *cli_args_str(const struct cli_args *args, const char *name);
/* The ARGV option's values (NULL-terminated, never NULL) and their count. */
const char *const *cli_args_list(const struct cli_args *args, const char *name, size_t *n);
/* An option that sets a flag bit when given. */
struct cli_flag {
    const char *opt;
    unsigned flag;
};
/* The OR of MAP[i].flag for every boolean option MAP[i].opt that was given. */
unsigned cli_args_flags(const struct cli_args *args, const struct cli_flag *map, size_t n);
#define CLI_ARGS_FLAGS(args, map) cli_args_flags((args), (map), sizeof(map) / sizeof((map)[0]))

/* Prints "error: Options --A and --B are mutually exclusive" and returns true when both are given. */
bool cli_args_exclusive(const struct cli_args *args, const char *a, const char *b);

/* virsh-format help (NAME, SYNOPSIS, DESCRIPTION, OPTIONS) of one command. */
void cli_cmd_print_help(const struct cli_cmd_def *def, FILE *out);

#endif
