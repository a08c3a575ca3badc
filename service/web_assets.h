/* web_assets.h: the page's files (web/), embedded into qsnapd at build time by web/embed.cmake. */
#ifndef QS_SVC_WEB_ASSETS_H
#define QS_SVC_WEB_ASSETS_H

#include <stddef.h>

struct svc_web_file {
    const char *name; /* "index.html", "app.js", ...: the file's name in web/ */
    const char *type; /* its Content-Type, from its extension */
    const unsigned char *data;
    size_t len;
};

/* Every file, ending with {.name = NULL}. Static data: nothing is read from disk when a request comes. */
extern const struct svc_web_file svc_web_files[];

#endif
