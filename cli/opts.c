/* opts.c: virsh-style option parsing and help from one table per command. */
#include "opts.h"
#include "qs_util.h"

#include <stdlib.h>
#include <string.h>

static int opt_index(const struct cli_cmd_def *def, const char *name, size_t len)
{
    for (int i = 0; def->opts[i].name; i++)
        if (strlen(def->opts[i].name) == len && strncmp(def->opts[i].name, name, len) == 0)
            return i;
    return -1;
}

static void argv_push(struct cli_args *args, int i, const char *val)
{
    args->argv[i] = qs_xrealloc(args->argv[i], (args->nargv[i] + 2) * sizeof(char *));
    args->argv[i][args->nargv[i]++] = val;
    args->argv[i][args->nargv[i]] = NULL;
}

/* virsh's wording for an option in messages: <domain> for a positional, --name otherwise. */
static void opt_print_ref(const struct cli_opt *o, FILE *out)
{
    fprintf(out, "<%s>", o->name);
}

static int set_value(const struct cli_cmd_def *def, struct cli_args *args, int i, const char *val)
{
    const struct cli_opt *o = &def->opts[i];

    if (o->type == CLI_OPT_ARGV) {
        argv_push(args, i, val);
        return 0;
    }
    if (args->values[i]) {
        fprintf(stderr, "error: option --%s already seen\n", o->name);
        return -1;
    }
    args->values[i] = val;
    return 0;
}

int cli_args_parse(const struct cli_cmd_def *def, int argc, char **argv, struct cli_args *args)
{
    bool only_positional = false;

    memset(args, 0, sizeof(*args));
    args->def = def;
    for (int k = 1; k < argc; k++) {
        const char *a = argv[k];
        int i;

        if (!only_positional && strcmp(a, "--") == 0) {
            only_positional = true;
            continue;
        }
        if (!only_positional && strcmp(a, "--help") == 0) {
            cli_cmd_print_help(def, stdout);
            return 1;
        }
        if (!only_positional && a[0] == '-' && a[1] == '-' && a[2]) {
            const char *name = a + 2, *eq = strchr(name, '=');
            size_t len = eq ? (size_t)(eq - name) : strlen(name);

            i = opt_index(def, name, len);
            if (i < 0) {
                fprintf(stderr, "error: command '%s' doesn't support option --%.*s\n", def->name, (int)len, name);
                return -1;
            }
            if (def->opts[i].type == CLI_OPT_BOOL) {
                if (eq) {
                    fprintf(stderr, "error: invalid '=' after option --%s\n", def->opts[i].name);
                    return -1;
                }
                args->values[i] = "";
                continue;
            }
            if (eq) {
                if (set_value(def, args, i, eq + 1) < 0)
                    return -1;
                continue;
            }
            if (k + 1 >= argc) {
                fprintf(stderr, "error: expected syntax: --%s <string>\n", def->opts[i].name);
                return -1;
            }
            if (set_value(def, args, i, argv[++k]) < 0)
                return -1;
            continue;
        }
        /* positional: the first string option not given yet, or the ARGV option */
        for (i = 0; def->opts[i].name; i++) {
            const struct cli_opt *o = &def->opts[i];
            if (o->type == CLI_OPT_BOOL || (o->flags & CLI_OPT_NAMED))
                continue;
            if (o->type == CLI_OPT_ARGV || !args->values[i])
                break;
        }
        if (!def->opts[i].name) {
            fprintf(stderr, "error: unexpected data '%s'\n", a);
            return -1;
        }
        if (set_value(def, args, i, a) < 0)
            return -1;
    }
    for (int i = 0; def->opts[i].name; i++) {
        const struct cli_opt *o = &def->opts[i];
        bool given = o->type == CLI_OPT_ARGV ? args->nargv[i] > 0 : args->values[i] != NULL;
        if ((o->flags & CLI_OPT_REQUIRED) && !given) {
            fprintf(stderr, "error: command '%s' requires ", def->name);
            opt_print_ref(o, stderr);
            fprintf(stderr, " option\n");
            return -1;
        }
    }
    return 0;
}

void cli_args_release(struct cli_args *args)
{
    for (int i = 0; i < CLI_MAX_OPTS; i++)
        free(args->argv[i]);
    memset(args, 0, sizeof(*args));
}

static int must_index(const struct cli_args *args, const char *name)
{
    int i = opt_index(args->def, name, strlen(name));
    if (i < 0)
        abort(); /* a handler asked for an option its table lacks: a bug */
    return i;
}

bool cli_args_bool(const struct cli_args *args, const char *name)
{
    return args->values[must_index(args, name)] != NULL;
}

bool cli_args_given(const struct cli_args *args, const char *name)
{
    int i = opt_index(args->def, name, strlen(name));
    return i >= 0 && (args->values[i] != NULL || args->nargv[i] > 0);
}

const char *cli_args_str(const struct cli_args *args, const char *name)
{
    return args->values[must_index(args, name)];
}

const char *const *cli_args_list(const struct cli_args *args, const char *name, size_t *n)
{
    static const char *const empty[] = {NULL};
    int i = must_index(args, name);
    if (n)
        *n = args->nargv[i];
    return args->argv[i] ? (const char *const *)args->argv[i] : empty;
}

unsigned cli_args_flags(const struct cli_args *args, const struct cli_flag *map, size_t n)
{
    unsigned f = 0;
    for (size_t i = 0; i < n; i++)
        if (cli_args_bool(args, map[i].opt))
            f |= map[i].flag;
    return f;
}

bool cli_args_exclusive(const struct cli_args *args, const char *a, const char *b)
{
    if (args->values[must_index(args, a)] && args->values[must_index(args, b)]) {
        fprintf(stderr, "error: Options --%s and --%s are mutually exclusive\n", a, b);
        return true;
    }
    return false;
}

void cli_cmd_print_help(const struct cli_cmd_def *def, FILE *out)
{
    fprintf(out, "  NAME\n    %s - %s\n\n  SYNOPSIS\n    %s", def->name, def->summary, def->name);
    for (int i = 0; def->opts[i].name; i++) {
        const struct cli_opt *o = &def->opts[i];
        bool req = o->flags & CLI_OPT_REQUIRED, pos = !(o->flags & CLI_OPT_NAMED);
        switch (o->type) {
        case CLI_OPT_BOOL:
            fprintf(out, " [--%s]", o->name);
            break;
        case CLI_OPT_STRING:
            if (req && pos)
                fprintf(out, " <%s>", o->name);
            else if (req)
                fprintf(out, " --%s <string>", o->name);
            else
                fprintf(out, " [--%s <string>]", o->name);
            break;
        case CLI_OPT_ARGV:
            fprintf(out, pos ? " [[--%s] <string>]..." : " [--%s <string>]...", o->name);
            break;
        }
    }
    fprintf(out, "\n\n  DESCRIPTION\n    %s\n\n  OPTIONS\n", def->description);
    for (int i = 0; def->opts[i].name; i++) {
        const struct cli_opt *o = &def->opts[i];
        char *label;
        bool pos = !(o->flags & CLI_OPT_NAMED) && ((o->flags & CLI_OPT_REQUIRED) || o->type == CLI_OPT_ARGV);
        if (o->type == CLI_OPT_BOOL)
            label = qs_asprintf("--%s", o->name);
        else if (pos)
            label = qs_asprintf("[--%s] <string>", o->name);
        else
            label = qs_asprintf("--%s <string>", o->name);
        fprintf(out, "    %-15s  %s\n", label, o->help);
        free(label);
    }
    fprintf(out, "\n\n");
}
