/* routes_web.c: the page qsnapd serves - GET / (index.html) and GET /web/{file}, from the files compiled into
 * the binary (web_assets.h). No token is needed for them: they hold no data, and a browser must load the page
 * before it can ask for a token; every request the page makes for data carries one. */
#include "svc.h"
#include "web_assets.h"

#include "qs_util.h"

#include <string.h>

/* A file by its exact name in the compiled table: a client's name never reaches the filesystem. */
static const struct svc_web_file *web_file(const char *name)
{
    for (const struct svc_web_file *f = svc_web_files; f->name; f++)
        if (strcmp(f->name, name) == 0)
            return f;
    return NULL;
}

static void web_reply(struct svc_req *r, const char *name)
{
    const struct svc_web_file *f = web_file(name);

    if (!f) {
        svc_reply_error(r, 404, "not-found", "no such resource");
        return;
    }
    r->status = 200;
    r->raw = qs_xstrndup((const char *)f->data, f->len);
    r->raw_type = f->type;
    r->csp = SVC_CSP_PAGE;
}

static void get_index(struct svc_req *r)
{
    web_reply(r, "index.html");
}

static void get_web_file(struct svc_req *r)
{
    web_reply(r, r->params[0]);
}

const struct svc_route svc_routes_web[] = {
    {SVC_GET, "/", NULL, get_index, SVC_ROUTE_NO_AUTH},
    {SVC_GET, "/web/{file}", NULL, get_web_file, SVC_ROUTE_NO_AUTH},
    {.pattern = NULL},
};
