/* qmpcall.c: qsnap-qmpcall, run one QMP command (or HMP line) through qsnap's QMP client and print the result. */
#include "qmp.h"
#include "qs_util.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_GETS 16

static void usage(FILE *f)
{
    fprintf(f, "usage: qsnap-qmpcall [--timeout MS] [--get PATH]... SOCKET COMMAND [ARGS-JSON]\n"
               "       qsnap-qmpcall [--timeout MS] --hmp SOCKET COMMAND-LINE\n"
               "\n"
               "Connects to QEMU's QMP socket, runs COMMAND with the ARGS-JSON object and prints its return value\n"
               "as JSON. --get PATH prints the member at a dotted PATH of the return value instead (strings\n"
               "unquoted; several --get print space-separated on one line). --hmp runs a human monitor line\n"
               "and prints its output. Errors go to stderr as 'error: ...'. Exit: 0 ok, 1 failed, 2 usage.\n");
}

static bool add_list(struct qmp_args *list, const struct qmp_value *arr, struct qs_error **err);

/* The args builder has no raw-JSON entry point: rebuild the parsed object member by member. */
static bool add_members(struct qmp_args *obj, const struct qmp_value *v, struct qs_error **err)
{
    const char *key = NULL;
    const struct qmp_value *m = NULL;

    for (size_t i = 0; qmp_value_object_at(v, i, &key, &m); i++) {
        int64_t n;
        bool b;
        switch (qmp_value_type(m)) {
        case QMP_STRING:
            qmp_args_set_str(obj, key, qmp_value_string(m));
            break;
        case QMP_INT:
            qmp_value_int(m, &n);
            qmp_args_set_int(obj, key, n);
            break;
        case QMP_BOOL:
            qmp_value_bool(m, &b);
            qmp_args_set_bool(obj, key, b);
            break;
        case QMP_NULL:
            qmp_args_set_null(obj, key);
            break;
        case QMP_OBJECT:
            if (!add_members(qmp_args_set_obj(obj, key), m, err))
                return false;
            break;
        case QMP_ARRAY:
            if (!add_list(qmp_args_set_list(obj, key), m, err))
                return false;
            break;
        default:
            qs_error_set(err, QS_ERR_UNSUPPORTED, "member '%s': numbers with a fraction are not supported", key);
            return false;
        }
    }
    return true;
}

static bool add_list(struct qmp_args *list, const struct qmp_value *arr, struct qs_error **err)
{
    for (size_t i = 0; i < qmp_value_array_len(arr); i++) {
        const struct qmp_value *e = qmp_value_array_at(arr, i);
        switch (qmp_value_type(e)) {
        case QMP_STRING:
            qmp_args_push_str(list, qmp_value_string(e));
            break;
        case QMP_OBJECT:
            if (!add_members(qmp_args_push_obj(list), e, err))
                return false;
            break;
        default:
            /* qmp_args has no push_int/push_bool/push_list */
            qs_error_set(err, QS_ERR_UNSUPPORTED, "list elements must be strings or objects");
            return false;
        }
    }
    return true;
}

/* Prints a value found by --get: strings bare, everything else as JSON. */
static void print_plain(const struct qmp_value *v)
{
    char *json;

    if (qmp_value_type(v) == QMP_STRING) {
        fputs(qmp_value_string(v), stdout);
        return;
    }
    json = qmp_value_to_json(v);
    fputs(json, stdout);
    free(json);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"hmp", no_argument, NULL, 'H'},
        {"get", required_argument, NULL, 'g'},
        {"timeout", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *gets[MAX_GETS];
    size_t n_gets = 0;
    bool hmp = false;
    struct qmp_options opts = {0};
    struct qmp_client *c = NULL;
    struct qmp_reply *parsed = NULL, *reply = NULL;
    struct qmp_args *args = NULL;
    struct qs_error *err = NULL;
    char *out = NULL, *json = NULL;
    int opt, ret = 1;

    while ((opt = getopt_long(argc, argv, "+Hg:t:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'H':
            hmp = true;
            break;
        case 'g':
            if (n_gets == MAX_GETS) {
                fprintf(stderr, "error: at most %d --get\n", MAX_GETS);
                return 2;
            }
            gets[n_gets++] = optarg;
            break;
        case 't': {
            char *end = NULL;
            long ms = strtol(optarg, &end, 10);
            if (*optarg == '\0' || *end || ms <= 0 || ms > 3600000) {
                fprintf(stderr, "error: bad --timeout '%s'\n", optarg);
                return 2;
            }
            opts.timeout_ms = (int)ms;
            break;
        }
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (argc - optind < 2 || argc - optind > 3 || (hmp && (argc - optind != 2 || n_gets))) {
        usage(stderr);
        return 2;
    }

    if (!hmp && argc - optind == 3) {
        if (!(parsed = qmp_reply_parse(argv[optind + 2], &err)))
            goto out;
        if (qmp_value_type(qmp_reply_value(parsed)) != QMP_OBJECT) {
            qs_error_set(&err, QS_ERR_INVALID, "ARGS-JSON must be an object");
            goto out;
        }
        args = qmp_args_new();
        if (!add_members(args, qmp_reply_value(parsed), &err))
            goto out;
    }
    if (!(c = qmp_client_connect(argv[optind], &opts, &err)))
        goto out;
    if (hmp) {
        if (qmp_client_hmp(c, argv[optind + 1], &out, &err) < 0)
            goto out;
        /* HMP answers with CRLF line ends */
        for (const char *p = out; *p; p++)
            if (!(p[0] == '\r' && p[1] == '\n'))
                putchar(*p);
        ret = 0;
        goto out;
    }
    if (qmp_client_execute(c, argv[optind + 1], args, &reply, &err) < 0)
        goto out;
    if (n_gets) {
        for (size_t i = 0; i < n_gets; i++) {
            const struct qmp_value *v = qmp_value_path(qmp_reply_value(reply), gets[i]);
            if (!v) {
                qs_error_set(&err, QS_ERR_NOTFOUND, "no '%s' in the reply", gets[i]);
                goto out;
            }
            if (i)
                putchar(' ');
            print_plain(v);
        }
        putchar('\n');
    } else {
        json = qmp_value_to_json(qmp_reply_value(reply));
        puts(json);
    }
    ret = 0;
out:
    if (err) {
        fprintf(stderr, "error: %s\n", err->message);
        ret = 1;
    }
    if (fflush(stdout) != 0 && ret == 0) {
        fprintf(stderr, "error: cannot write the output\n");
        ret = 1;
    }
    free(json);
    free(out);
    qmp_args_free(args);
    qmp_reply_free(parsed);
    qmp_reply_free(reply);
    qmp_client_free(c);
    qs_error_free(err);
    return ret;
}
