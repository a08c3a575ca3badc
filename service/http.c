/* http.c: qsnapd's HTTP layer on libmicrohttpd - bounded requests, authentication, routing, JSON or XML
 * replies, the event stream, the per-request log line. */
#include "http.h"

#include "qs_buf.h"
#include "qs_util.h"

#include <errno.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---- live connections, for the per-request time cap ---- */

struct live_conn {
    int fd;
    int64_t since_ms;  /* when the current request began arriving (or the previous one ended) */
    bool handling;     /* the request is complete and being answered: no cap (a task wait, an event stream) */
    struct live_conn *next;
};

struct http_server {
    struct svc_server *srv;
    struct MHD_Daemon *mhd;
    bool unix_socket;
    pthread_mutex_t mu;
    struct live_conn *conns;
    pthread_t watchdog;
    bool watchdog_started, stop;
};

/* Per request (MHD's con_cls). */
struct req_state {
    int64_t t0_ns;
    struct qs_buf body;
    bool too_big, form, bad_length;
    uid_t uid;
    bool uid_known;
};

static struct live_conn *conn_find_locked(struct http_server *h, int fd)
{
    for (struct live_conn *c = h->conns; c; c = c->next)
        if (c->fd == fd)
            return c;
    return NULL;
}

static int conn_fd(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? ci->connect_fd : -1;
}

static void conn_mark(struct http_server *h, struct MHD_Connection *conn, bool handling)
{
    int fd = conn_fd(conn);
    struct live_conn *c;

    pthread_mutex_lock(&h->mu);
    if ((c = conn_find_locked(h, fd)) != NULL) {
        c->handling = handling;
        c->since_ms = qs_now_ms();
    }
    pthread_mutex_unlock(&h->mu);
}

static void notify_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                              enum MHD_ConnectionNotificationCode toe)
{
    struct http_server *h = cls;
    int fd = conn_fd(conn);
    (void)socket_context;

    pthread_mutex_lock(&h->mu);
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        struct live_conn *c = qs_xcalloc(1, sizeof(*c));
        c->fd = fd;
        c->since_ms = qs_now_ms();
        c->next = h->conns;
        h->conns = c;
    } else {
        /* MHD tells before it closes the socket: the watchdog never touches a descriptor reused since */
        for (struct live_conn **pp = &h->conns; *pp; pp = &(*pp)->next)
            if ((*pp)->fd == fd) {
                struct live_conn *x = *pp;
                *pp = x->next;
                free(x);
                break;
            }
    }
    pthread_mutex_unlock(&h->mu);
}

/* A client that sends its request too slowly (headers or body) is cut off: MHD's own timeout only counts
 * idle time, which a byte every few seconds resets. */
static void *watchdog_main(void *opaque)
{
    struct http_server *h = opaque;

    for (;;) {
        struct timespec ts = {0, 200 * 1000 * 1000};
        int64_t now;
        nanosleep(&ts, NULL);
        pthread_mutex_lock(&h->mu);
        if (h->stop) {
            pthread_mutex_unlock(&h->mu);
            return NULL;
        }
        now = qs_now_ms();
        for (struct live_conn *c = h->conns; c; c = c->next)
            if (!c->handling && c->fd >= 0 && now - c->since_ms > (int64_t)h->srv->request_timeout_s * 1000) {
                shutdown(c->fd, SHUT_RDWR);
                c->fd = -1;
            }
        pthread_mutex_unlock(&h->mu);
    }
}

static void request_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                              enum MHD_RequestTerminationCode toe)
{
    struct http_server *h = cls;
    struct req_state *st = *con_cls;
    (void)toe;

    conn_mark(h, conn, false);
    if (st) {
        qs_buf_release(&st->body);
        free(st);
        *con_cls = NULL;
    }
}

/* ---- XML: oVirt's element names from the JSON document ---- */

static void xml_value(struct qs_buf *b, const char *name, json_object *v, int depth);

/* An object as the element NAME: "id" and "href" become attributes (as oVirt has them), every other member
 * a child element; an array member repeats its element; null members are left out. */
static void xml_object(struct qs_buf *b, const char *name, json_object *o, int depth)
{
    json_object *id = NULL, *href = NULL;

    qs_buf_addf(b, "%*s<%s", depth * 2, "", name);
    if (json_object_object_get_ex(o, "id", &id) && id) {
        qs_buf_adds(b, " id=\"");
        svc_xml_escape(b, json_object_get_string(id));
        qs_buf_adds(b, "\"");
    }
    if (json_object_object_get_ex(o, "href", &href) && href) {
        qs_buf_adds(b, " href=\"");
        svc_xml_escape(b, json_object_get_string(href));
        qs_buf_adds(b, "\"");
    }
    qs_buf_adds(b, ">\n");
    json_object_object_foreach(o, k, v)
    {
        if (!v || strcmp(k, "id") == 0 || strcmp(k, "href") == 0)
            continue;
        if (json_object_is_type(v, json_type_array)) {
            /* a collection member ("snapshot": [...]) repeats; another list ("disks") is wrapped */
            bool plural = k[strlen(k) - 1] == 's';
            char *item = plural ? qs_xstrndup(k, strlen(k) - 1) : qs_xstrdup(k);
            if (plural)
                qs_buf_addf(b, "%*s<%s>\n", (depth + 1) * 2, "", k);
            for (size_t i = 0; i < json_object_array_length(v); i++)
                xml_value(b, item, json_object_array_get_idx(v, i), depth + 1 + plural);
            if (plural)
                qs_buf_addf(b, "%*s</%s>\n", (depth + 1) * 2, "", k);
            free(item);
        } else {
            xml_value(b, k, v, depth + 1);
        }
    }
    qs_buf_addf(b, "%*s</%s>\n", depth * 2, "", name);
}

static void xml_value(struct qs_buf *b, const char *name, json_object *v, int depth)
{
    if (!v)
        return;
    if (json_object_is_type(v, json_type_object)) {
        xml_object(b, name, v, depth);
        return;
    }
    qs_buf_addf(b, "%*s<%s>", depth * 2, "", name);
    svc_xml_escape(b, json_object_get_string(v));
    qs_buf_addf(b, "</%s>\n", name);
}

/* A document's XML form: ROOT holding the object's members; a collection document ({"snapshot": [...]})
 * becomes <snapshots><snapshot .../>...</snapshots>. */
static char *xml_render(json_object *doc, const char *root)
{
    struct qs_buf b;

    qs_buf_init(&b, 0);
    qs_buf_adds(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    if (json_object_object_length(doc) == 1) {
        json_object_object_foreach(doc, k, v)
        {
            if (v && json_object_is_type(v, json_type_array)) {
                qs_buf_addf(&b, "<%s>\n", root);
                for (size_t i = 0; i < json_object_array_length(v); i++)
                    xml_value(&b, k, json_object_array_get_idx(v, i), 1);
                qs_buf_addf(&b, "</%s>\n", root);
                return qs_buf_detach(&b, NULL);
            }
        }
    }
    xml_object(&b, root, doc, 0);
    return qs_buf_detach(&b, NULL);
}

/* ---- replies ---- */

/* ---- the event stream ---- */

struct stream {
    struct svc_server *srv;
    uint64_t seq;
};

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct stream *s = cls;
    ssize_t n;
    (void)pos;

    n = svc_event_next(s->srv, &s->seq, buf, max, 15000);
    if (n < 0)
        return MHD_CONTENT_READER_END_OF_STREAM;
    if (n == 0) {
        /* a comment keeps proxies and clients from timing out an idle stream */
        static const char keep[] = ": keep-alive\n\n";
        memcpy(buf, keep, sizeof(keep) - 1);
        return (ssize_t)(sizeof(keep) - 1);
    }
    return n;
}

/* ---- the access handler ---- */

static const char *accept_xml(struct MHD_Connection *conn)
{
    const char *a = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Accept");
    return a && strstr(a, "application/xml") && !strstr(a, "application/json") ? a : NULL;
}

/* Collects the query arguments as name, value pairs. */
struct query_acc {
    const char **v;
    size_t n, cap;
};

static enum MHD_Result query_iter(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    struct query_acc *q = cls;
    (void)kind;

    if (q->n >= 64)
        return MHD_NO; /* more arguments than any route reads */
    qs_xgrow((void **)&q->v, &q->cap, q->n + 3, sizeof(*q->v));
    q->v[q->n++] = key;
    q->v[q->n++] = value;
    q->v[q->n] = NULL;
    return MHD_YES;
}

static void log_request(struct http_server *h, struct req_state *st, const char *who, const char *method,
                        const char *url, int status)
{
    pthread_mutex_lock(&h->srv->m_mu);
    if (status >= 100 && status < 600)
        h->srv->requests[status / 100]++;
    pthread_mutex_unlock(&h->srv->m_mu);
    /* one line per request, as libvirtd logs its clients: who asked what, and the outcome */
    fprintf(stderr, "qsnapd: %s %s %s %d %.2fms\n", who, method, url, status,
            (double)(qs_now_ns() - st->t0_ns) / 1e6);
}

static enum MHD_Result send_reply(struct MHD_Connection *conn, struct svc_req *r)
{
    struct MHD_Response *resp;
    enum MHD_Result ret;
    char *body;
    const char *type;

    if (r->stream) {
        struct stream *s = qs_xcalloc(1, sizeof(*s));
        s->srv = r->srv;
        resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, s, free);
        MHD_add_response_header(resp, "Content-Type", "text/event-stream");
    } else if (r->shared) {
        /* sent from the shared buffer itself; the response holds a reference until it is gone */
        resp = MHD_create_response_from_buffer_with_free_callback_cls(r->shared->len, r->shared->data,
                                                                      (MHD_ContentReaderFreeCallback)svc_body_unref,
                                                                      svc_body_ref(r->shared));
        MHD_add_response_header(resp, "Content-Type", r->shared->type);
    } else {
        if (r->raw) {
            body = r->raw;
            r->raw = NULL;
            type = r->raw_type;
        } else if (r->xml) {
            body = xml_render(r->out ? r->out : json_object_new_object(), r->out_root ? r->out_root : "result");
            type = "application/xml";
        } else {
            body = qs_xstrdup(r->out ? json_object_to_json_string_ext(r->out, JSON_C_TO_STRING_PLAIN |
                                                                               JSON_C_TO_STRING_NOSLASHESCAPE)
                                     : "{}");
            type = "application/json";
        }
        resp = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
        MHD_add_response_header(resp, "Content-Type", type);
    }
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    /* a browser never guesses a reply's type, runs or loads anything an API reply holds, shows one inside another
       site's frame, or tells where a link from the page came from */
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "Content-Security-Policy", r->csp ? r->csp : SVC_CSP_API);
    MHD_add_response_header(resp, "X-Frame-Options", "DENY");
    MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
    if (r->location)
        MHD_add_response_header(resp, "Location", r->location);
    if (r->status == 401)
        MHD_add_response_header(resp, "WWW-Authenticate", "Bearer realm=\"qsnapd\"");
    ret = MHD_queue_response(conn, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static void req_release(struct svc_req *r)
{
    json_object_put(r->body);
    json_object_put(r->out);
    free(r->raw);
    free(r->location);
    svc_body_unref(r->shared);
    if (r->engine) {
        engine_set_requester(r->engine, NULL); /* engines are pooled */
        engine_session_put(r->srv->session, r->engine);
    }
}

/* Who sent it, for the log: the peer's uid on the UNIX socket (SO_PEERCRED), the token's name over TCP. */
static void peer_uid(struct MHD_Connection *conn, struct req_state *st)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);
    int fd = conn_fd(conn);

    if (fd >= 0 && getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
        st->uid = cred.uid;
        st->uid_known = true;
    }
}

/* Whether METHOD URL is a route served without a token (the page's files). */
static bool public_route(const char *method, const char *url)
{
    struct svc_req probe = {0};
    const struct svc_route *rt = NULL;
    char *buf = qs_xmalloc(strlen(url) + 1);
    int m = svc_method_parse(method);
    bool pub = m >= 0 && svc_route_find((enum svc_method)m, url, buf, strlen(url) + 1, &rt, &probe) == SVC_MATCH_OK &&
               (rt->flags & SVC_ROUTE_NO_AUTH);

    free(buf);
    return pub;
}

/* "localhost", "NAME.localhost", 127.x.x.x or [::1], with or without a port. */
static bool loopback_host(const char *host)
{
    size_t len = host[0] == '[' ? strcspn(host, "]") + 1 : strcspn(host, ":");
    char name[256];

    if (len >= sizeof(name) || (host[len] != '\0' && host[len] != ':'))
        return false;
    memcpy(name, host, len);
    name[len] = '\0';
    if (strcasecmp(name, "localhost") == 0 || strcasecmp(name, "[::1]") == 0 ||
        (len > 10 && strcasecmp(name + len - 10, ".localhost") == 0))
        return true;
    if (strncmp(name, "127.", 4) != 0)
        return false;
    for (size_t i = 4; i < len; i++)
        if (name[i] != '.' && (name[i] < '0' || name[i] > '9'))
            return false;
    return true;
}

/*
 * Another site can make the user's browser send simple requests here (a form's POST, a no-cors fetch); over a
 * UNIX socket forwarded to a local port (ssh -L, socat), which needs no token, they would act as the user.
 * Refused: what a browser marks as sent for another site (Sec-Fetch-Site, an Origin that is not this Host), and
 * on the UNIX socket a Host that is not this machine (a page whose own name was rebound to 127.0.0.1). Clients
 * that are not browsers send neither mark, and curl --unix-socket http://localhost/... names localhost.
 */
static int cross_site_check(struct http_server *h, struct MHD_Connection *conn, struct svc_req *r)
{
    const char *site = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Sec-Fetch-Site");
    const char *origin = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin");
    const char *host = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Host");
    const char *o;

    if (site && strcmp(site, "same-origin") != 0 && strcmp(site, "none") != 0) {
        svc_reply_error(r, 403, "forbidden", "a request sent for another site (Sec-Fetch-Site: %.32s) is refused",
                        site);
        return -1;
    }
    if (origin && (!(o = strstr(origin, "://")) || !host || strcasecmp(o + 3, host) != 0)) {
        svc_reply_error(r, 403, "forbidden", "a request from another origin ('%.200s') is refused", origin);
        return -1;
    }
    if (h->unix_socket && host && !loopback_host(host)) {
        svc_reply_error(r, 403, "forbidden",
                        "host '%.200s' is not this machine: requests over the local socket name localhost", host);
        return -1;
    }
    return 0;
}

static enum MHD_Result access_handler(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                      const char *version, const char *upload_data, size_t *upload_data_size,
                                      void **con_cls)
{
    struct http_server *h = cls;
    struct req_state *st = *con_cls;
    struct svc_req r = {0};
    struct query_acc q = {0};
    const struct svc_route *route = NULL;
    char who[256], *pathbuf = NULL;
    enum MHD_Result ret;
    int m;
    (void)version;

    if (!st) {
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        const char *ct = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type");
        st = qs_xcalloc(1, sizeof(*st));
        st->t0_ns = qs_now_ns();
        qs_buf_init(&st->body, SVC_BODY_MAX);
        if (cl && strtoull(cl, NULL, 10) > SVC_BODY_MAX)
            st->too_big = true;
        /* no form uploads: MHD's form parser is never used, and such bodies are refused */
        if (ct && (strncasecmp(ct, "multipart/", 10) == 0 ||
                   strncasecmp(ct, "application/x-www-form-urlencoded", 33) == 0))
            st->form = true;
        if (h->unix_socket)
            peer_uid(conn, st);
        *con_cls = st;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        /* bounded: past the cap the rest is read and dropped, then refused with 413 */
        if (!st->too_big && !st->form && qs_buf_add(&st->body, upload_data, *upload_data_size) < 0)
            st->too_big = true;
        *upload_data_size = 0;
        return MHD_YES;
    }
    conn_mark(h, conn, true);

    r.srv = h->srv;
    r.xml = accept_xml(conn) != NULL;
    MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, query_iter, &q);
    r.query = q.v;
    if (h->unix_socket) {
        r.auth = SVC_AUTH_LOCAL;
        if (st->uid_known) {
            snprintf(who, sizeof(who), "uid=%u", (unsigned)st->uid);
            r.requester = who; /* the event log names the connecting user, not qsnapd's own uid */
        } else {
            snprintf(who, sizeof(who), "uid=?");
        }
    } else if (public_route(method, url)) {
        /* the page's own files: no data in them, and a browser loads them before it has a token */
        r.auth = SVC_AUTH_NONE;
        snprintf(who, sizeof(who), "token=-");
    } else {
        const char *a = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization"), *name = NULL;
        bool ro = false;
        snprintf(who, sizeof(who), "token=-");
        if (!a || strncasecmp(a, "Bearer ", 7) != 0 || svc_token_check(h->srv, a + 7, &ro, &name) != 1) {
            svc_reply_error(&r, 401, "unauthorized", "a valid bearer token is required");
            goto reply;
        }
        snprintf(who, sizeof(who), "token=%s", name);
        r.auth = ro ? SVC_AUTH_TOKEN_RO : SVC_AUTH_TOKEN;
        r.requester = name;
    }
    if (cross_site_check(h, conn, &r) < 0)
        goto reply;
    if ((m = svc_method_parse(method)) < 0) {
        svc_reply_error(&r, 405, "invalid", "method '%.16s' is not allowed", method);
        goto reply;
    }
    r.method = (enum svc_method)m;
    if (r.auth == SVC_AUTH_TOKEN_RO && r.method != SVC_GET) {
        svc_reply_error(&r, 403, "forbidden", "a read-only token can only GET");
        goto reply;
    }
    if (st->form) {
        svc_reply_error(&r, 415, "invalid", "form uploads are not accepted: send a JSON object");
        goto reply;
    }
    if (st->too_big) {
        svc_reply_error(&r, 413, "too-big", "the body is larger than %u bytes", SVC_BODY_MAX);
        goto reply;
    }
    pathbuf = qs_xmalloc(strlen(url) + 1);
    r.path = url;
    switch (svc_route_find(r.method, url, pathbuf, strlen(url) + 1, &route, &r)) {
    case SVC_MATCH_NONE:
        svc_reply_error(&r, 404, "not-found", "no such resource");
        goto reply;
    case SVC_MATCH_METHOD:
        svc_reply_error(&r, 405, "invalid", "method %s is not allowed here", method);
        goto reply;
    case SVC_MATCH_OK:
        break;
    }
    if (r.auth == SVC_AUTH_NONE && !(route->flags & SVC_ROUTE_NO_AUTH)) {
        /* public_route() let it through without a token: never as far as data */
        svc_reply_error(&r, 401, "unauthorized", "a valid bearer token is required");
        goto reply;
    }
    if ((route->flags & SVC_ROUTE_LOCAL_ONLY) && svc_require_local(&r, "files or sockets") < 0)
        goto reply;
    if (svc_params_check(&r) < 0)
        goto reply;
    if (svc_body_parse(&r, st->body.data ? st->body.data : "", st->body.len) < 0)
        goto reply;
    if (route->parse && route->parse(&r) < 0)
        goto reply;
    route->handle(&r);
    if (!r.status)
        svc_reply_error(&r, 500, "internal", "the handler gave no reply");
reply:
    log_request(h, st, who, method, url, r.status);
    ret = send_reply(conn, &r);
    req_release(&r);
    free(q.v);
    free(pathbuf);
    return ret;
}

__attribute__((format(printf, 2, 0))) static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    fputs("qsnapd: libmicrohttpd: ", stderr);
    vfprintf(stderr, fmt, ap);
}

struct http_server *http_server_start(struct svc_server *srv, const struct http_options *o, struct qs_error **err)
{
    struct http_server *h = qs_xcalloc(1, sizeof(*h));
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG |
                     MHD_USE_POLL;

    h->srv = srv;
    h->unix_socket = o->unix_socket;
    pthread_mutex_init(&h->mu, NULL);
    if (o->tls_cert)
        flags |= MHD_USE_TLS;
    if (o->tls_cert)
        h->mhd = MHD_start_daemon(flags, 0, NULL, NULL, access_handler, h,
                                  MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
                                  MHD_OPTION_LISTEN_SOCKET, o->listen_fd,
                                  MHD_OPTION_CONNECTION_LIMIT, (unsigned)o->max_connections,
                                  MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)o->max_connections / 2,
                                  MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)o->idle_timeout_s,
                                  MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)SVC_HEADER_MEMORY,
                                  MHD_OPTION_NOTIFY_CONNECTION, notify_connection, h,
                                  MHD_OPTION_NOTIFY_COMPLETED, request_completed, h,
                                  MHD_OPTION_HTTPS_MEM_CERT, o->tls_cert, MHD_OPTION_HTTPS_MEM_KEY, o->tls_key,
                                  MHD_OPTION_END);
    else
        h->mhd = MHD_start_daemon(flags, 0, NULL, NULL, access_handler, h,
                                  MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
                                  MHD_OPTION_LISTEN_SOCKET, o->listen_fd,
                                  MHD_OPTION_CONNECTION_LIMIT, (unsigned)o->max_connections,
                                  MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)o->idle_timeout_s,
                                  MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)SVC_HEADER_MEMORY,
                                  MHD_OPTION_NOTIFY_CONNECTION, notify_connection, h,
                                  MHD_OPTION_NOTIFY_COMPLETED, request_completed, h,
                                  MHD_OPTION_END);
    if (!h->mhd) {
        qs_error_set(err, QS_ERR_IO, "libmicrohttpd could not start on the listening socket");
        pthread_mutex_destroy(&h->mu);
        free(h);
        return NULL;
    }
    if (srv->request_timeout_s > 0 && pthread_create(&h->watchdog, NULL, watchdog_main, h) == 0)
        h->watchdog_started = true;
    return h;
}

void http_server_stop(struct http_server *h)
{
    if (!h)
        return;
    pthread_mutex_lock(&h->mu);
    h->stop = true;
    pthread_mutex_unlock(&h->mu);
    if (h->watchdog_started)
        pthread_join(h->watchdog, NULL);
    MHD_stop_daemon(h->mhd);
    while (h->conns) {
        struct live_conn *c = h->conns;
        h->conns = c->next;
        free(c);
    }
    pthread_mutex_destroy(&h->mu);
    free(h);
}
