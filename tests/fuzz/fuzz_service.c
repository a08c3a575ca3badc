/* fuzz_service.c: libFuzzer harness for qsnapd's router and body parsing - what any client can send. The input
 * is "METHOD PATH[?QUERY]\n" then "local|rw|ro\n" (who asks) and the body; every route's parse step runs on it
 * (no engine is reached: parse steps never touch one). */
#include "svc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Splits "a=1&b&c=" into name, value pairs in place (the HTTP layer gives them decoded; so does this). */
static const char **query_split(char *q, const char **v, size_t max)
{
    size_t n = 0;
    for (char *save = NULL, *p = strtok_r(q, "&", &save); p && n + 2 < max; p = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(p, '=');
        if (eq)
            *eq++ = '\0';
        v[n++] = p;
        v[n++] = eq ? eq : "";
    }
    v[n] = NULL;
    return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct svc_server srv;
    char *text = malloc(size + 1), *line1, *line2, *body, *path, *q, *sp, *buf;
    const char *qv[64];
    const struct svc_route *route = NULL;
    struct svc_req r = {0};
    int m;

    memcpy(text, data, size);
    text[size] = '\0';
    line1 = text;
    if (!(line2 = strchr(line1, '\n')))
        goto out;
    *line2++ = '\0';
    if (!(body = strchr(line2, '\n')))
        goto out;
    *body++ = '\0';
    if (!(sp = strchr(line1, ' ')))
        goto out;
    *sp = '\0';
    path = sp + 1;
    if ((q = strchr(path, '?')))
        *q++ = '\0';
    r.srv = &srv;
    r.auth = strcmp(line2, "ro") == 0 ? SVC_AUTH_TOKEN_RO : strcmp(line2, "rw") == 0 ? SVC_AUTH_TOKEN : SVC_AUTH_LOCAL;
    r.query = q ? query_split(q, qv, 64) : NULL;
    if ((m = svc_method_parse(line1)) < 0)
        goto out;
    r.method = (enum svc_method)m;
    r.path = path;
    buf = malloc(strlen(path) + 1);
    if (svc_route_find(r.method, path, buf, strlen(path) + 1, &route, &r) == SVC_MATCH_OK &&
        (!(route->flags & SVC_ROUTE_LOCAL_ONLY) || svc_require_local(&r, "x") == 0) && svc_params_check(&r) == 0 &&
        svc_body_parse(&r, body, (size_t)(text + size - body)) == 0 && route->parse)
        route->parse(&r);
    free(buf);
    json_object_put(r.body);
    json_object_put(r.out);
out:
    free(text);
    return 0;
}
