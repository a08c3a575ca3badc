/* intent.c: the intent record's text form and its life cycle (begin, update, end, read). */
#include "intent.h"
#include "qs_buf.h"
#include "qs_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/*
 * The text: a first line "qsnap-intent 1", then one "KEY VALUE..." line per field, lists repeating their
 * key. Values are escaped so that each is one space-free token: '\\' and every byte <= 0x20 or 0x7f
 * become "\xHH". Unknown keys are an error: a newer qsnap's record is not guessed at.
 */
#define INTENT_MAGIC "qsnap-intent 1"

void intent_release(struct intent *it)
{
    free(it->op);
    free(it->kind);
    free(it->snapshot);
    free(it->phase);
    free(it->vm);
    for (size_t i = 0; i < it->ndisks; i++) {
        free(it->disks[i].target);
        free(it->disks[i].node);
        free(it->disks[i].file);
    }
    free(it->disks);
    qs_strv_free(it->names);
    qs_strv_free(it->files);
    qs_strv_free(it->nodes);
    qs_strv_free(it->merged);
    qs_strv_free(it->garbage);
    free(it->agent);
    free(it->snapshot_xml);
    free(it->domain_xml);
    free(it->undo_xml);
    free(it->target);
    memset(it, 0, sizeof(*it));
}

static void strv_push(char ***v, const char *s)
{
    size_t n = 0;
    while (*v && (*v)[n])
        n++;
    *v = qs_xrealloc(*v, (n + 2) * sizeof(char *));
    (*v)[n] = qs_xstrdup(s);
    (*v)[n + 1] = NULL;
}

void intent_add_disk(struct intent *it, const char *target, const char *node, const char *file)
{
    it->disks = qs_xrealloc(it->disks, (it->ndisks + 1) * sizeof(*it->disks));
    it->disks[it->ndisks++] = (struct intent_disk){qs_xstrdup(target), node ? qs_xstrdup(node) : NULL,
                                                   file ? qs_xstrdup(file) : NULL};
}

void intent_add_file(struct intent *it, const char *path) { strv_push(&it->files, path); }
void intent_add_node(struct intent *it, const char *node) { strv_push(&it->nodes, node); }
void intent_add_name(struct intent *it, const char *name) { strv_push(&it->names, name); }
void intent_add_merged(struct intent *it, const char *entry) { strv_push(&it->merged, entry); }
void intent_add_garbage(struct intent *it, const char *path) { strv_push(&it->garbage, path); }

bool intent_has_merged(const struct intent *it, const char *entry)
{
    for (size_t i = 0; it->merged && it->merged[i]; i++)
        if (strcmp(it->merged[i], entry) == 0)
            return true;
    return false;
}

/* ---- text ---- */

static void put_escaped(struct qs_buf *b, const char *s)
{
    if (!s) {
        qs_buf_add(b, "-", 1); /* absent; a real "-" is escaped below */
        return;
    }
    if (!*s || strcmp(s, "-") == 0) {
        qs_buf_addf(b, "\\x%02x", *s ? (unsigned char)*s++ : 0u); /* "" is "\x00", "-" is "\x2d" */
        if (!*s)
            return;
    }
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p <= 0x20 || *p == 0x7f || *p == '\\')
            qs_buf_addf(b, "\\x%02x", *p);
        else
            qs_buf_add(b, (const char *)p, 1);
    }
}

static void put_field(struct qs_buf *b, const char *key, const char *v)
{
    if (!v)
        return;
    qs_buf_addf(b, "%s ", key);
    put_escaped(b, v);
    qs_buf_add(b, "\n", 1);
}

char *intent_format(const struct intent *it)
{
    struct qs_buf b;

    qs_buf_init(&b, 0);
    qs_buf_addf(&b, "%s\n", INTENT_MAGIC);
    put_field(&b, "op", it->op);
    put_field(&b, "kind", it->kind);
    put_field(&b, "snapshot", it->snapshot);
    put_field(&b, "phase", it->phase);
    put_field(&b, "vm", it->vm);
    qs_buf_addf(&b, "want-running %d\nhalt %d\nstart %d\npid %ld\nstarted %lld\n", it->want_running ? 1 : 0,
                it->halt ? 1 : 0, it->start ? 1 : 0, it->pid, it->started);
    for (size_t i = 0; i < it->ndisks; i++) {
        qs_buf_add(&b, "disk ", 5);
        put_escaped(&b, it->disks[i].target);
        qs_buf_add(&b, " ", 1);
        put_escaped(&b, it->disks[i].node);
        qs_buf_add(&b, " ", 1);
        put_escaped(&b, it->disks[i].file);
        qs_buf_add(&b, "\n", 1);
    }
    for (size_t i = 0; it->names && it->names[i]; i++)
        put_field(&b, "name", it->names[i]);
    for (size_t i = 0; it->files && it->files[i]; i++)
        put_field(&b, "file", it->files[i]);
    for (size_t i = 0; it->nodes && it->nodes[i]; i++)
        put_field(&b, "node", it->nodes[i]);
    for (size_t i = 0; it->merged && it->merged[i]; i++)
        put_field(&b, "merged", it->merged[i]);
    for (size_t i = 0; it->garbage && it->garbage[i]; i++)
        put_field(&b, "garbage", it->garbage[i]);
    put_field(&b, "agent", it->agent);
    put_field(&b, "snapshot-xml", it->snapshot_xml);
    put_field(&b, "domain-xml", it->domain_xml);
    put_field(&b, "undo-xml", it->undo_xml);
    put_field(&b, "target", it->target);
    qs_buf_add(&b, "end\n", 4);
    return qs_buf_detach(&b, NULL);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Takes the next token of *p (up to a space or the line's end); NULL for "-"; *bad on a malformed escape. */
static char *take_token(const char **p, const char *end, bool *bad)
{
    const char *s = *p, *e = s;
    char *out, *o;

    while (e < end && *e != ' ')
        e++;
    *p = e < end ? e + 1 : e;
    if (e == s) {
        *bad = true; /* every value is written as at least one byte ("" as "\x00") */
        return NULL;
    }
    if (e - s == 1 && *s == '-')
        return NULL;
    out = o = qs_xmalloc((size_t)(e - s) + 1);
    for (const char *q = s; q < e; q++) {
        if (*q != '\\') {
            *o++ = *q;
            continue;
        }
        if (e - q < 4 || q[1] != 'x' || hexval(q[2]) < 0 || hexval(q[3]) < 0) {
            *bad = true;
            break;
        }
        *o++ = (char)(hexval(q[2]) * 16 + hexval(q[3]));
        q += 3;
    }
    *o = '\0';
    return out;
}

int intent_parse(const char *text, struct intent *it, struct qs_error **err)
{
    const char *p = text, *nl;
    bool bad = false, ended = false;
    int ret = -1;

    memset(it, 0, sizeof(*it));
    if (strncmp(p, INTENT_MAGIC "\n", sizeof(INTENT_MAGIC)) != 0)
        goto malformed;
    p += sizeof(INTENT_MAGIC);
    for (; *p && !ended && !bad; p = nl + 1) {
        const char *key = p, *sp;
        size_t klen;
        char **slot = NULL;

        if (!(nl = strchr(p, '\n')))
            goto malformed;
        sp = memchr(p, ' ', (size_t)(nl - p));
        klen = (size_t)((sp ? sp : nl) - key);
        p = sp ? sp + 1 : nl;
#define KEY(k) (klen == sizeof(k) - 1 && memcmp(key, k, klen) == 0)
        if (KEY("end")) {
            ended = true;
        } else if (KEY("op")) {
            slot = &it->op;
        } else if (KEY("kind")) {
            slot = &it->kind;
        } else if (KEY("snapshot")) {
            slot = &it->snapshot;
        } else if (KEY("phase")) {
            slot = &it->phase;
        } else if (KEY("vm")) {
            slot = &it->vm;
        } else if (KEY("agent")) {
            slot = &it->agent;
        } else if (KEY("snapshot-xml")) {
            slot = &it->snapshot_xml;
        } else if (KEY("domain-xml")) {
            slot = &it->domain_xml;
        } else if (KEY("undo-xml")) {
            slot = &it->undo_xml;
        } else if (KEY("target")) {
            slot = &it->target;
        } else if (KEY("want-running") || KEY("halt") || KEY("start") || KEY("pid") || KEY("started")) {
            char *v = take_token(&p, nl, &bad), *endp = NULL;
            long long n = v ? strtoll(v, &endp, 10) : 0;
            if (!v || endp == v || *endp)
                bad = true;
            else if (KEY("want-running"))
                it->want_running = n != 0;
            else if (KEY("halt"))
                it->halt = n != 0;
            else if (KEY("start"))
                it->start = n != 0;
            else if (KEY("pid"))
                it->pid = (long)n;
            else
                it->started = n;
            free(v);
        } else if (KEY("disk")) {
            char *t = take_token(&p, nl, &bad), *n = take_token(&p, nl, &bad), *f = take_token(&p, nl, &bad);
            if (t)
                intent_add_disk(it, t, n, f);
            else
                bad = true;
            free(t), free(n), free(f);
        } else if (KEY("name") || KEY("file") || KEY("node") || KEY("merged") || KEY("garbage")) {
            char *v = take_token(&p, nl, &bad);
            if (v)
                strv_push(KEY("name")     ? &it->names
                          : KEY("file")   ? &it->files
                          : KEY("node")   ? &it->nodes
                          : KEY("merged") ? &it->merged
                                          : &it->garbage,
                          v);
            else
                bad = true;
            free(v);
        } else {
            bad = true;
        }
#undef KEY
        if (slot) {
            free(*slot);
            *slot = take_token(&p, nl, &bad);
        }
    }
    if (bad || !ended || !it->op)
        goto malformed;
    ret = 0;
    goto out;
malformed:
    qs_error_set(err, QS_ERR_INVALID, "malformed intent record");
    intent_release(it);
out:
    return ret;
}

/* ---- life cycle ---- */

int intent_begin(struct engine *e, const struct md_lock *lock, const char *domain, struct intent *it,
                 struct qs_error **err)
{
    return intent_begin_ex(e, lock, domain, it, 0, err);
}

int intent_begin_ex(struct engine *e, const struct md_lock *lock, const char *domain, struct intent *it,
                    unsigned flags, struct qs_error **err)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    it->pid = (long)getpid();
    it->started = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    if (!it->phase)
        it->phase = qs_xstrdup("prepared");
    if (intent_write(e, lock, domain, it, flags, err) < 0)
        return -1;
    engine_step(e, it->op, "intent");
    return 0;
}

int intent_update(struct engine *e, const struct md_lock *lock, const char *domain, const struct intent *it,
                  struct qs_error **err)
{
    return intent_write(e, lock, domain, it, 0, err);
}

int intent_write(struct engine *e, const struct md_lock *lock, const char *domain, const struct intent *it,
                 unsigned flags, struct qs_error **err)
{
    char *text = intent_format(it);
    int r = md_store_intent_write(e->store, lock, domain, text, flags, err);

    free(text);
    return r;
}

int intent_sync(struct engine *e, const struct md_lock *lock, const char *domain, struct qs_error **err)
{
    return md_store_intent_sync(e->store, lock, domain, err);
}

void intent_end(struct engine *e, const struct md_lock *lock, const char *domain)
{
    md_store_intent_clear(e->store, lock, domain, NULL);
}

void intent_finish(struct engine *e, const struct md_lock *lock, const char *domain, bool ok)
{
    struct qs_error *ignore = NULL;

    if (ok) {
        intent_end(e, lock, domain);
        return;
    }
    e->after_undo = true;
    intent_recover(e, domain, lock, &ignore);
    e->after_undo = false;
    qs_error_free(ignore);
}

int intent_read(struct engine *e, const char *domain, struct intent *it, struct qs_error **err)
{
    char *text = NULL;
    int r;

    memset(it, 0, sizeof(*it));
    if (md_store_intent_get(e->store, domain, &text, err) < 0)
        return -1;
    if (!text)
        return 0;
    r = intent_parse(text, it, err);
    if (r < 0)
        qs_error_prefix(err, "domain '%s'", domain);
    free(text);
    return r < 0 ? -1 : 1;
}
