/* quiesce.c: guest filesystem freeze/thaw through the guest agent, and finding the agent's socket. */
#include "quiesce.h"
#include "qga.h"
#include "qs_util.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define AGENT_PORT_NAME "org.qemu.guest_agent.0"

int quiesce_freeze(const char *qga_socket, int timeout_ms, struct qs_error **err)
{
    struct qga_client *g = NULL;
    struct qs_error *ignore = NULL;
    int ret = -1;

    if (!(g = qga_client_connect(qga_socket, timeout_ms, err)))
        goto out;
    /* a guest without an agent is found out quickly, before any freeze was asked for (nothing to thaw) */
    if (qga_client_sync(g, timeout_ms < QUIESCE_SYNC_TIMEOUT_MS ? timeout_ms : QUIESCE_SYNC_TIMEOUT_MS, err) < 0)
        goto out;
    if (qga_fsfreeze_freeze(g, timeout_ms, NULL, err) < 0) {
        /* the agent thaws what it froze when the freeze fails, but after a timeout the freeze may still be
         * under way: a thaw now (it waits for the freeze in the agent's queue) is the only safe end */
        qga_fsfreeze_thaw(g, timeout_ms, NULL, &ignore);
        goto out;
    }
    ret = 0;
out:
    qs_error_free(ignore);
    qga_client_free(g);
    return ret;
}

int quiesce_thaw(const char *qga_socket, int timeout_ms, struct qs_error **err)
{
    struct qga_client *g = NULL;
    int ret = -1;

    if (!(g = qga_client_connect(qga_socket, timeout_ms, err)) || qga_fsfreeze_thaw(g, timeout_ms, NULL, err) < 0)
        goto out;
    ret = 0;
out:
    qga_client_free(g);
    return ret;
}

/*
 * The value of KEY in a QEMU option string "type,k=v,k=v" (",," is a literal comma), or NULL; KEY "" gives
 * the leading bare word (the type: "socket", "virtserialport"). Caller frees.
 */
static char *opt_get(const char *s, const char *key)
{
    size_t klen = strlen(key);
    bool first = true;

    while (*s) {
        const char *p = s;
        char *val, *w;

        /* one item runs to a single comma */
        while (*p && !(p[0] == ',' && p[1] != ',')) {
            if (p[0] == ',' && p[1] == ',')
                p++;
            p++;
        }
        if ((first && klen == 0 && !memchr(s, '=', (size_t)(p - s))) ||
            (klen > 0 && strncmp(s, key, klen) == 0 && s[klen] == '=')) {
            const char *v = klen ? s + klen + 1 : s;
            val = w = qs_xmalloc((size_t)(p - v) + 1);
            for (; v < p; v++) {
                if (v[0] == ',' && v[1] == ',')
                    v++;
                *w++ = *v;
            }
            *w = '\0';
            return val;
        }
        first = false;
        s = *p ? p + 1 : p;
    }
    return NULL;
}

char *quiesce_agent_socket(char *const *argv)
{
    char *chardev = NULL, *ret = NULL;

    /* the agent's port first, then the socket chardev it names */
    for (size_t i = 0; argv && argv[i] && !chardev; i++) {
        char *type, *name;

        if (strcmp(argv[i], "-device") != 0 || !argv[i + 1])
            continue;
        type = opt_get(argv[i + 1], "");
        name = opt_get(argv[i + 1], "name");
        if (qs_str_equal(type, "virtserialport") && qs_str_equal(name, AGENT_PORT_NAME))
            chardev = opt_get(argv[i + 1], "chardev");
        free(type);
        free(name);
    }
    for (size_t i = 0; chardev && argv[i] && !ret; i++) {
        char *type, *id;

        if (strcmp(argv[i], "-chardev") != 0 || !argv[i + 1])
            continue;
        type = opt_get(argv[i + 1], "");
        id = opt_get(argv[i + 1], "id");
        if (qs_str_equal(type, "socket") && qs_str_equal(id, chardev))
            ret = opt_get(argv[i + 1], "path");
        free(type);
        free(id);
    }
    free(chardev);
    return ret;
}
