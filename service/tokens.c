/* tokens.c: bearer tokens for TCP clients - made random, stored as SHA-256 only, revocable, read-only or not. */
#include "svc.h"

#include "qs_buf.h"
#include "qs_file.h"
#include "qs_util.h"

#include <errno.h>
#include <fcntl.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define TOKENS_MAX (1u << 20)
#define TOKEN_BYTES 32 /* 256 random bits: no salt or slow hash is needed to keep a stolen file useless */

struct svc_token {
    char name[QS_NAME_MAX + 1];
    bool read_only;
    unsigned char hash[32];
    long long created;
};

static char *tokens_dir(const char *root)
{
    return qs_asprintf("%s/qsnapd", root);
}

static void hex(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

static int unhex(const char *s, unsigned char *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned v = 0;
        for (int k = 0; k < 2; k++) {
            char c = s[2 * i + k];
            v <<= 4;
            if (c >= '0' && c <= '9')
                v |= (unsigned)(c - '0');
            else if (c >= 'a' && c <= 'f')
                v |= (unsigned)(c - 'a' + 10);
            else
                return -1;
        }
        out[i] = (unsigned char)v;
    }
    return s[2 * n] == '\0' ? 0 : -1;
}

static int sha256(const char *text, unsigned char out[32])
{
    return gnutls_hash_fast(GNUTLS_DIG_SHA256, text, strlen(text), out) == 0 ? 0 : -1;
}

/* Parses the file's text; lines that do not parse are skipped (the file is only ever written here). */
static struct svc_token *tokens_parse(char *text, size_t *n)
{
    struct svc_token *v = NULL;
    size_t cap = 0;
    char *save = NULL;

    *n = 0;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char name[QS_NAME_MAX + 1], mode[4], h[65];
        long long created;
        struct svc_token t = {0};
        if (sscanf(line, "%200s %3s %64s %lld", name, mode, h, &created) != 4 || unhex(h, t.hash, 32) < 0)
            continue;
        snprintf(t.name, sizeof(t.name), "%s", name);
        t.read_only = strcmp(mode, "ro") == 0;
        t.created = created;
        qs_xgrow((void **)&v, &cap, *n + 1, sizeof(*v));
        v[(*n)++] = t;
    }
    return v;
}

static int tokens_load(const char *root, struct svc_token **v, size_t *n, struct qs_error **err)
{
    char *dir = tokens_dir(root), *path = qs_asprintf("%s/tokens", dir), *text = NULL;
    struct qs_error *local = NULL;
    int ret = -1;

    *v = NULL;
    *n = 0;
    if (qs_file_read(AT_FDCWD, path, TOKENS_MAX, &text, NULL, &local) < 0) {
        if (local->code == QS_ERR_NOTFOUND) {
            qs_error_free(local);
            ret = 0;
        } else {
            qs_error_propagate(err, &local);
        }
        goto out;
    }
    *v = tokens_parse(text, n);
    ret = 0;
out:
    free(text);
    free(path);
    free(dir);
    return ret;
}

static int tokens_store(const char *root, const struct svc_token *v, size_t n, struct qs_error **err)
{
    char *dir = tokens_dir(root);
    struct qs_buf b;
    int fd = -1, ret = -1;

    qs_buf_init(&b, 0);
    for (size_t i = 0; i < n; i++) {
        char h[65];
        hex(v[i].hash, 32, h);
        qs_buf_addf(&b, "%s %s %s %lld\n", v[i].name, v[i].read_only ? "ro" : "rw", h, v[i].created);
    }
    if (qs_dir_create(dir, 0700, err) < 0)
        goto out;
    if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        qs_error_set_errno(err, QS_ERR_IO, errno, "cannot open '%s'", dir);
        goto out;
    }
    ret = qs_file_write_atomic(fd, "tokens", b.data ? b.data : "", b.len, 0600, err);
out:
    qs_close(fd);
    qs_buf_release(&b);
    free(dir);
    return ret;
}

int svc_token_create(const char *root, const char *name, bool read_only, char **token, struct qs_error **err)
{
    struct svc_token *v = NULL, t = {0};
    unsigned char raw[TOKEN_BYTES];
    char text[2 * TOKEN_BYTES + 8];
    size_t n = 0;
    int ret = -1;

    if (qs_name_check(name, "token", err) < 0 || tokens_load(root, &v, &n, err) < 0)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i].name, name) == 0) {
            qs_error_set(err, QS_ERR_EXISTS, "token '%s' already exists", name);
            goto out;
        }
    if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw)) {
        qs_error_set_errno(err, QS_ERR_IO, errno, "cannot read random bytes");
        goto out;
    }
    memcpy(text, "qs_", 3);
    hex(raw, sizeof(raw), text + 3);
    snprintf(t.name, sizeof(t.name), "%s", name);
    t.read_only = read_only;
    t.created = (long long)time(NULL);
    if (sha256(text, t.hash) < 0) {
        qs_error_set(err, QS_ERR_INTERNAL, "SHA-256 failed");
        goto out;
    }
    v = qs_xrealloc(v, (n + 1) * sizeof(*v));
    v[n++] = t;
    if (tokens_store(root, v, n, err) < 0)
        goto out;
    *token = qs_xstrdup(text);
    ret = 0;
out:
    explicit_bzero(raw, sizeof(raw));
    explicit_bzero(text, sizeof(text));
    free(v);
    return ret;
}

int svc_token_revoke(const char *root, const char *name, struct qs_error **err)
{
    struct svc_token *v = NULL;
    size_t n = 0, k = 0;
    int ret = -1;

    if (tokens_load(root, &v, &n, err) < 0)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i].name, name) != 0)
            v[k++] = v[i];
    if (k == n) {
        qs_error_set(err, QS_ERR_NOTFOUND, "no token named '%s'", name);
        goto out;
    }
    ret = tokens_store(root, v, k, err);
out:
    free(v);
    return ret;
}

int svc_token_list(const char *root, char **text, struct qs_error **err)
{
    struct svc_token *v = NULL;
    struct qs_buf b;
    size_t n = 0;

    if (tokens_load(root, &v, &n, err) < 0)
        return -1;
    qs_buf_init(&b, 0);
    for (size_t i = 0; i < n; i++)
        qs_buf_addf(&b, "%s %s %lld\n", v[i].name, v[i].read_only ? "ro" : "rw", v[i].created);
    free(v);
    *text = qs_buf_detach(&b, NULL);
    if (!*text)
        *text = qs_xstrdup("");
    return 0;
}

int svc_token_check(struct svc_server *srv, const char *token, bool *read_only, const char **name)
{
    static __thread char who[QS_NAME_MAX + 1];
    unsigned char h[32];
    char *path = qs_asprintf("%s/qsnapd/tokens", srv->root);
    struct stat st;
    int64_t mt;
    int ret = 0;

    if (!token || strlen(token) > 256 || sha256(token, h) < 0) {
        free(path);
        return 0;
    }
    pthread_mutex_lock(&srv->tok_mu);
    /* the file as it is now: a revoke or a new token counts at the next request */
    mt = stat(path, &st) == 0 ? (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec + (int64_t)st.st_ino : -1;
    if (!srv->tok_loaded || mt != srv->tok_mtime_ns) {
        free(srv->tokens);
        srv->tokens = NULL;
        srv->ntokens = 0;
        if (mt >= 0)
            tokens_load(srv->root, &srv->tokens, &srv->ntokens, NULL);
        srv->tok_mtime_ns = mt;
        srv->tok_loaded = true;
    }
    for (size_t i = 0; i < srv->ntokens; i++) {
        /* compared in constant time: a timing difference must not tell how much of a guess was right */
        if (gnutls_memcmp(srv->tokens[i].hash, h, sizeof(h)) == 0) {
            *read_only = srv->tokens[i].read_only;
            snprintf(who, sizeof(who), "%s", srv->tokens[i].name);
            *name = who;
            ret = 1;
            break;
        }
    }
    pthread_mutex_unlock(&srv->tok_mu);
    free(path);
    return ret;
}
