/* events.c: the per-domain event log (append, rotate, read), the logged entry points of create, revert,
 * delete, export, clone and recovery, the engine's clock, and time parsing by it (pure.c parses). */
#include "events.h"
#include "clone.h"
#include "export.h"
#include "intent.h"
#include "pure.h"
#include "qs_buf.h"
#include "qs_file.h"
#include "qs_util.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int64_t engine_now_ms(struct engine *e)
{
    struct timespec ts;

    if (e->clock)
        return e->clock(e->opaque);
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void engine_set_requester(struct engine *e, const char *name)
{
    free(e->requester);
    e->requester = name ? qs_xstrdup(name) : NULL;
}

void engine_note_pause(struct engine *e, int64_t pause_us)
{
    if (e->ev && pause_us >= 0)
        e->ev->pause_us = pause_us;
}

int64_t engine_pause_from_events(struct qmp_client *c)
{
    struct qmp_event *stop = NULL, *resume = NULL;
    int64_t r = -1;

    /* both come before the job's or command's end: only what has arrived is looked at */
    if (qmp_client_event_wait(c, "STOP", NULL, NULL, 0, &stop, NULL) == 0 &&
        qmp_client_event_wait(c, "RESUME", NULL, NULL, 0, &resume, NULL) == 0 &&
        qmp_event_timestamp_us(resume) >= qmp_event_timestamp_us(stop))
        r = qmp_event_timestamp_us(resume) - qmp_event_timestamp_us(stop);
    qmp_event_free(stop);
    qmp_event_free(resume);
    return r;
}

/* ---- the log file ---- */

static char *events_dir(struct engine *e)
{
    return qs_asprintf("%s/events", engine_root(e));
}

static char *events_path(struct engine *e, const char *domain, int generation)
{
    if (generation == 0)
        return qs_asprintf("%s/events/%s.jsonl", engine_root(e), domain);
    return qs_asprintf("%s/events/%s.jsonl.%d", engine_root(e), domain, generation);
}

/* Opens the current log locked (LOCK_EX to write, LOCK_SH to read), following a rotation another process
 * made while we waited for the lock. -1 with errno. */
static int log_open_locked(const char *path, bool write)
{
    for (int tries = 0; tries < 100; tries++) {
        int fd = write ? open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600) : open(path, O_RDONLY | O_CLOEXEC);
        struct stat a, b;
        if (fd < 0)
            return -1;
        if (flock(fd, write ? LOCK_EX : LOCK_SH) < 0 || fstat(fd, &a) < 0) {
            qs_close(fd);
            return -1;
        }
        if (stat(path, &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev)
            return fd;
        close(fd);
    }
    errno = EAGAIN;
    return -1;
}

static int log_append(struct engine *e, const char *domain, const char *line, size_t len)
{
    size_t max = e->events_max ? e->events_max : EVENTS_MAX_DEFAULT;
    char *dir = events_dir(e), *path = events_path(e, domain, 0);
    struct stat st;
    int fd = -1, ret = -1;

    /* the directory is made once: try the file first */
    if ((fd = log_open_locked(path, true)) < 0 && (errno != ENOENT || qs_dir_create(dir, 0700, NULL) < 0 ||
                                                   (fd = log_open_locked(path, true)) < 0))
        goto out;
    if (fstat(fd, &st) < 0)
        goto out;
    if (st.st_size > 0 && (size_t)st.st_size + len > max) {
        /* rotate under the lock of the current file: writers waiting for it follow to the new one */
        for (int g = EVENTS_KEEP; g > 0; g--) {
            char *from = events_path(e, domain, g - 1), *to = events_path(e, domain, g);
            if (rename(from, to) < 0 && errno != ENOENT)
                g = 0;
            free(from);
            free(to);
        }
        close(fd);
        if ((fd = log_open_locked(path, true)) < 0 || fstat(fd, &st) < 0)
            goto out;
    }
    /* a line cut short (a full disk) is taken back: the next one must start a line of its own */
    if ((ret = qs_write_all(fd, line, len)) < 0 && ftruncate(fd, st.st_size) < 0)
        ret = -1;
out:
    qs_close(fd);
    free(dir);
    free(path);
    return ret;
}

/* ---- operations ---- */

void event_begin(struct engine *e, struct event_op *ev, const char *op, const char *domain, const char *snapshot)
{
    memset(ev, 0, sizeof(*ev));
    ev->op = op;
    ev->domain = domain ? qs_xstrdup(domain) : NULL;
    ev->snapshot = snapshot ? qs_xstrdup(snapshot) : NULL;
    ev->start_ms = engine_now_ms(e);
    ev->start_mono_ms = qs_now_ms();
    ev->pause_us = -1;
    ev->outer = e->ev;
    e->ev = ev;
}

void event_set_snapshot(struct event_op *ev, const char *snapshot)
{
    free(ev->snapshot);
    ev->snapshot = snapshot ? qs_xstrdup(snapshot) : NULL;
}

void event_set_detail(struct event_op *ev, const char *fmt, ...)
{
    va_list ap;

    free(ev->detail);
    va_start(ap, fmt);
    ev->detail = qs_vasprintf(fmt, ap);
    va_end(ap);
}

static void iso_time(char *out, size_t len, int64_t ms)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    size_t k;

    if (!gmtime_r(&t, &tm) || (k = strftime(out, len, "%Y-%m-%dT%H:%M:%S", &tm)) == 0) {
        snprintf(out, len, "?");
        return;
    }
    snprintf(out + k, len - k, ".%03dZ", (int)(ms % 1000));
}

void event_end(struct engine *e, struct event_op *ev, int rc, const struct qs_error *err)
{
    struct qmp_args *a = NULL;
    char at[40], *line = NULL;

    e->ev = ev->outer;
    if (ev->outer && ev->pause_us >= 0 && ev->outer->pause_us < 0)
        ev->outer->pause_us = ev->pause_us;
    /* only a defined domain has a log: a name that names nothing must not become a file */
    if (!ev->domain || qs_name_check(ev->domain, "domain", NULL) < 0 || engine_domain_lookup(e, ev->domain, NULL) < 0)
        goto out;
    a = qmp_args_new();
    iso_time(at, sizeof(at), ev->start_ms);
    qmp_args_set_str(a, "at", at);
    qmp_args_set_int(a, "time_ms", ev->start_ms);
    qmp_args_set_str(a, "op", ev->op);
    qmp_args_set_str(a, "domain", ev->domain);
    qmp_args_set_str(a, "snapshot", ev->snapshot);
    qmp_args_set_str(a, "outcome", ev->outcome ? ev->outcome : rc == 0 ? "ok" : "failed");
    qmp_args_set_int(a, "duration_ms", qs_now_ms() - ev->start_mono_ms);
    qmp_args_set_str(a, "error", rc < 0 && err ? err->message : NULL);
    qmp_args_set_str(a, "error_code", rc < 0 && err ? qs_error_code_name(err->code) : NULL);
    if (ev->pause_us >= 0)
        qmp_args_set_int(a, "pause_us", ev->pause_us);
    else
        qmp_args_set_null(a, "pause_us");
    qmp_args_set_int(a, "uid", (int64_t)getuid());
    qmp_args_set_int(a, "pid", (int64_t)getpid());
    qmp_args_set_str(a, "requester", e->requester);
    qmp_args_set_str(a, "schedule", e->run_schedule);
    qmp_args_set_str(a, "detail", ev->detail);
    line = qmp_args_to_json(a);
    {
        char *nl = qs_asprintf("%s\n", line);
        log_append(e, ev->domain, nl, strlen(nl));
        free(nl);
    }
out:
    free(line);
    qmp_args_free(a);
    free(ev->domain);
    free(ev->snapshot);
    free(ev->detail);
    memset(ev, 0, sizeof(*ev));
}

/* ---- the logged entry points ---- */

/* The name a snapshot XML asks for, for the log of a create that failed before naming it. */
static char *xml_name(const char *xml)
{
    struct md_snapshot *s = xml ? md_snapshot_parse(xml, strlen(xml), 0, NULL) : NULL;
    char *n = s && s->name ? qs_xstrdup(s->name) : NULL;
    md_snapshot_free(s);
    return n;
}

int engine_snapshot_create(struct engine *e, const char *domain, const char *xml, unsigned flags, char **name,
                           struct qs_error **err)
{
    struct event_op ev;
    struct qs_error *local = NULL;
    char *made = NULL;
    int r;

    event_begin(e, &ev, flags & ENGINE_CREATE_REDEFINE ? "redefine" : "create", domain, NULL);
    r = snapshot_create_op(e, domain, xml, flags, &made, &local);
    if (made) {
        event_set_snapshot(&ev, made);
    } else {
        char *asked = xml_name(xml);
        event_set_snapshot(&ev, asked);
        free(asked);
    }
    event_end(e, &ev, r, local);
    qs_error_propagate(err, &local);
    if (name)
        *name = made;
    else
        free(made);
    return r;
}

int engine_snapshot_revert(struct engine *e, const char *domain, const char *name, unsigned flags,
                           struct qs_error **err)
{
    struct event_op ev;
    struct qs_error *local = NULL;
    int r;

    event_begin(e, &ev, "revert", domain, name);
    r = snapshot_revert_op(e, domain, name, flags, &local);
    event_end(e, &ev, r, local);
    qs_error_propagate(err, &local);
    return r;
}

int engine_snapshot_delete(struct engine *e, const char *domain, const char *name, unsigned flags,
                           struct qs_error **err)
{
    struct event_op ev;
    struct qs_error *local = NULL;
    struct qs_buf how;
    int r;

    event_begin(e, &ev, "delete", domain, name);
    qs_buf_init(&how, 0);
    if (flags & ENGINE_DELETE_CHILDREN)
        qs_buf_adds(&how, " children");
    if (flags & ENGINE_DELETE_CHILDREN_ONLY)
        qs_buf_adds(&how, " children-only");
    if (flags & ENGINE_DELETE_METADATA_ONLY)
        qs_buf_adds(&how, " metadata");
    if (flags & ENGINE_DELETE_FORCE)
        qs_buf_adds(&how, " force");
    if (how.len)
        event_set_detail(&ev, "%s", how.data + 1);
    qs_buf_release(&how);
    r = snapshot_delete_op(e, domain, name, flags, &local);
    event_end(e, &ev, r, local);
    qs_error_propagate(err, &local);
    return r;
}

int engine_snapshot_export(struct engine *e, const char *domain, const char *name, const char *disk,
                           const char *path, const char *format, unsigned flags,
                           struct engine_export_result *res, struct qs_error **err)
{
    struct event_op ev;
    struct qs_error *local = NULL;
    int r;

    event_begin(e, &ev, "export", domain, name);
    event_set_detail(&ev, "disk %s to %s (%s%s)", disk ? disk : "?", path ? path : "?", format ? format : "qcow2",
                     flags & ENGINE_EXPORT_COMPRESS ? ", compressed" : "");
    r = snapshot_export_op(e, domain, name, disk, path, format, flags, res, &local);
    event_end(e, &ev, r, local);
    qs_error_propagate(err, &local);
    return r;
}

int engine_domain_clone(struct engine *e, const char *domain, const char *snapshot, const char *name,
                        unsigned flags, struct qs_error **err)
{
    struct event_op ev;
    struct qs_error *local = NULL;
    int r;

    /* in the source's log: the new domain has none until it exists */
    event_begin(e, &ev, "clone", domain, snapshot);
    event_set_detail(&ev, "to domain '%s' (%s%s)", name ? name : "?", flags & ENGINE_CLONE_FULL ? "full" : "linked",
                     flags & ENGINE_CLONE_WITH_MEMORY ? ", started from its memory"
                     : flags & ENGINE_CLONE_START     ? ", started"
                                                      : "");
    r = domain_clone_op(e, domain, snapshot, name, flags, &local);
    event_end(e, &ev, r, local);
    qs_error_propagate(err, &local);
    return r;
}

int intent_recover(struct engine *e, const char *domain, const struct md_lock *lock, struct qs_error **err)
{
    struct intent it = {0};
    struct event_op ev;
    struct qs_error *local = NULL;
    char when[64] = "?";
    time_t t;
    struct tm tm;
    int r = intent_read(e, domain, &it, NULL);

    if (r == 0)
        return 0;
    if (r < 0) /* a record that cannot be read: recovery says why */
        return intent_recover_op(e, domain, lock, err);
    t = (time_t)(it.started / 1000);
    if (localtime_r(&t, &tm))
        strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S %z", &tm);
    event_begin(e, &ev, "recover", domain, it.snapshot);
    event_set_detail(&ev, "an interrupted %s (%s) by qsnap process %ld, begun %s", it.op ? it.op : "?",
                     it.kind ? it.kind : "?", it.pid, when);
    r = intent_recover_op(e, domain, lock, &local);
    event_end(e, &ev, r, local);
    qs_error_propagate(err, &local);
    intent_release(&it);
    return r;
}

/* ---- reading ---- */

static char *dup_or_null(const char *s)
{
    return s ? qs_xstrdup(s) : NULL;
}

static int64_t get_int(const struct qmp_value *v, const char *key, int64_t dflt)
{
    int64_t x;
    return qmp_value_int(qmp_value_get(v, key), &x) ? x : dflt;
}

/* Appends the events of one file's TEXT at or after SINCE_MS. */
static void parse_lines(const char *text, int64_t since_ms, struct engine_event **v, size_t *n, size_t *cap)
{
    for (const char *p = text; *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        char *line = qs_xstrndup(p, len);
        struct qmp_reply *r = len ? qmp_reply_parse(line, NULL) : NULL;
        const struct qmp_value *o = r ? qmp_reply_value(r) : NULL;

        p += len + (nl ? 1 : 0);
        if (o && qmp_value_type(o) == QMP_OBJECT && qmp_value_get_string(o, "op") &&
            get_int(o, "time_ms", -1) >= since_ms) {
            struct engine_event *ev;
            qs_xgrow((void **)v, cap, *n + 1, sizeof(**v));
            ev = &(*v)[(*n)++];
            ev->time_ms = get_int(o, "time_ms", 0);
            ev->op = qs_xstrdup(qmp_value_get_string(o, "op"));
            ev->snapshot = dup_or_null(qmp_value_get_string(o, "snapshot"));
            ev->outcome = dup_or_null(qmp_value_get_string(o, "outcome"));
            ev->duration_ms = get_int(o, "duration_ms", 0);
            ev->error = dup_or_null(qmp_value_get_string(o, "error"));
            ev->pause_us = get_int(o, "pause_us", -1);
            ev->uid = (long)get_int(o, "uid", -1);
            ev->pid = (long)get_int(o, "pid", -1);
            ev->requester = dup_or_null(qmp_value_get_string(o, "requester"));
            ev->schedule = dup_or_null(qmp_value_get_string(o, "schedule"));
            ev->detail = dup_or_null(qmp_value_get_string(o, "detail"));
        }
        qmp_reply_free(r);
        free(line);
    }
}

int engine_events_read(struct engine *e, const char *domain, int64_t since_ms, struct engine_event **out,
                       size_t *n, struct qs_error **err)
{
    size_t max = (e->events_max ? e->events_max : EVENTS_MAX_DEFAULT) * 4 + 65536, cap = 0;
    char *cur = NULL;
    int fd = -1;

    *out = NULL;
    *n = 0;
    if (engine_domain_lookup(e, domain, err) < 0)
        return -1;
    cur = events_path(e, domain, 0);
    /* the shared lock on the current file keeps a writer from rotating while the files are read */
    fd = log_open_locked(cur, false);
    for (int g = EVENTS_KEEP; g >= 0; g--) {
        char *path = events_path(e, domain, g), *text = NULL;
        struct qs_error *local = NULL;
        if (qs_file_read(AT_FDCWD, path, max, &text, NULL, &local) == 0)
            parse_lines(text, since_ms, out, n, &cap);
        else if (local->code != QS_ERR_NOTFOUND) {
            qs_error_propagate(err, &local);
            free(path);
            qs_close(fd);
            free(cur);
            engine_event_list_free(*out, *n);
            *out = NULL;
            *n = 0;
            return -1;
        }
        qs_error_free(local);
        free(text);
        free(path);
    }
    qs_close(fd);
    free(cur);
    return 0;
}

/* ---- durations and times ---- */

int engine_time_parse(struct engine *e, const char *text, int64_t *ms, struct qs_error **err)
{
    return engine_time_parse_at(text, engine_now_ms(e), ms, err);
}
