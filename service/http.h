/* http.h: qsnapd's HTTP server (libmicrohttpd) over a listening socket the caller made. */
#ifndef QS_SVC_HTTP_H
#define QS_SVC_HTTP_H

#include <stdbool.h>

#include "svc.h"

struct http_options {
    int listen_fd;          /* bound and listening; the server takes it over */
    bool unix_socket;       /* local peers (uid logged, no token); else TCP: TLS and a bearer token */
    const char *tls_cert;   /* PEM text, TCP only (required there) */
    const char *tls_key;
    int max_connections;    /* concurrent connections */
    int idle_timeout_s;     /* an idle connection is closed after this */
};

struct http_server;

/* Starts serving (a thread per connection). Caller stops with http_server_stop(). */
struct http_server *http_server_start(struct svc_server *srv, const struct http_options *o, struct qs_error **err);
void http_server_stop(struct http_server *h);

#endif
