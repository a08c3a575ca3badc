/* schedule.c: schedules - policies stored per domain, their slots, and the runner that takes each due snapshot
 * once and prunes. */
#include "schedule.h"
#include "cron.h"
#include "events.h"
#include "external.h"
#include "pure.h"
#include "qs_buf.h"
#include "qs_file.h"
#include "qs_util.h"
#include "retention.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#define SCHED_FILE_MAX (1024u * 1024u)
#define SCHED_FORMAT "qsnap-schedules"
#define PATTERN_MAX 128

/* ---- storage: ROOT/schedule/DOMAIN.json, written atomically under the domain lock ---- */

static char *dup_or_null(const char *s)
{
    return s ? qs_xstrdup(s) : NULL;
}

static void sched_copy(struct engine_schedule *dst, const struct engine_schedule *src)
{
    *dst = *src;
    dst->domain = dup_or_null(src->domain);
    dst->name = dup_or_null(src->name);
    dst->cron = dup_or_null(src->cron);
    dst->pattern = dup_or_null(src->pattern);
    dst->expanded = dup_or_null(src->expanded);
    dst->last_result = dup_or_null(src->last_result);
    dst->last_error = dup_or_null(src->last_error);
    dst->last_snapshot = dup_or_null(src->last_snapshot);
}

/* The schedule directory, opened (and created when CREATE). -1 with *err, or -1 with *missing set (when
 * MISSING is given) and no error when it does not exist and CREATE is false. */
static int sched_dir_open(struct engine *e, bool create, bool *missing, struct qs_error **err)
{
    char *dir = qs_asprintf("%s/schedule", engine_root(e));
    int fd = -1;

    if (missing)
        *missing = false;
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    /* made once: opened first */
    if (fd < 0 && errno == ENOENT && create) {
        if (qs_dir_create(dir, 0700, err) < 0)
            goto out;
        fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    }
    if (fd < 0 && !create && errno == ENOENT && missing)
        *missing = true;
    else if (fd < 0)
        qs_error_set_errno(err, QS_ERR_IO, errno, "cannot open '%s'", dir);
out:
    free(dir);
    return fd;
}

static int64_t json_int(const struct qmp_value *o, const char *key)
{
    int64_t v = 0;
    qmp_value_int(qmp_value_get(o, key), &v);
    return v;
}

static bool json_bool(const struct qmp_value *o, const char *key)
{
    bool v = false;
    qmp_value_bool(qmp_value_get(o, key), &v);
    return v;
}

static int sched_from_json(const struct qmp_value *o, const char *domain, struct engine_schedule *s,
                           struct qs_error **err)
{
    const char *kind = qmp_value_get_string(o, "kind");

    memset(s, 0, sizeof(*s));
    if (!qmp_value_get_string(o, "name") || !qmp_value_get_string(o, "cron") ||
        engine_schedule_kind_from_name(kind) < 0) {
        qs_error_set(err, QS_ERR_INVALID, "schedule file of domain '%s' has a schedule without name, cron or kind",
                     domain);
        return -1;
    }
    s->domain = qs_xstrdup(domain);
    s->name = qs_xstrdup(qmp_value_get_string(o, "name"));
    s->cron = qs_xstrdup(qmp_value_get_string(o, "cron"));
    s->kind = (enum engine_schedule_kind)engine_schedule_kind_from_name(kind);
    s->quiesce = json_bool(o, "quiesce");
    s->pattern = dup_or_null(qmp_value_get_string(o, "pattern"));
    s->offline = json_bool(o, "offline");
    s->keep.keep_last = (int)json_int(o, "keep_last");
    s->keep.keep_hourly = (int)json_int(o, "keep_hourly");
    s->keep.keep_daily = (int)json_int(o, "keep_daily");
    s->keep.keep_weekly = (int)json_int(o, "keep_weekly");
    s->keep.keep_monthly = (int)json_int(o, "keep_monthly");
    s->keep.keep_yearly = (int)json_int(o, "keep_yearly");
    s->keep.max_age_s = json_int(o, "max_age_s");
    s->min_free_pct = (int)json_int(o, "min_free_pct");
    s->created = json_int(o, "created");
    s->last_slot = json_int(o, "last_slot");
    s->last_run = json_int(o, "last_run");
    s->last_result = dup_or_null(qmp_value_get_string(o, "last_result"));
    s->last_error = dup_or_null(qmp_value_get_string(o, "last_error"));
    s->last_snapshot = dup_or_null(qmp_value_get_string(o, "last_snapshot"));
    return 0;
}

static void sched_to_json(struct qmp_args *o, const struct engine_schedule *s)
{
    qmp_args_set_str(o, "name", s->name);
    qmp_args_set_str(o, "cron", s->cron);
    qmp_args_set_str(o, "kind", engine_schedule_kind_name(s->kind));
    qmp_args_set_bool(o, "quiesce", s->quiesce);
    qmp_args_set_str(o, "pattern", s->pattern);
    qmp_args_set_bool(o, "offline", s->offline);
    qmp_args_set_int(o, "keep_last", s->keep.keep_last);
    qmp_args_set_int(o, "keep_hourly", s->keep.keep_hourly);
    qmp_args_set_int(o, "keep_daily", s->keep.keep_daily);
    qmp_args_set_int(o, "keep_weekly", s->keep.keep_weekly);
    qmp_args_set_int(o, "keep_monthly", s->keep.keep_monthly);
    qmp_args_set_int(o, "keep_yearly", s->keep.keep_yearly);
    qmp_args_set_int(o, "max_age_s", s->keep.max_age_s);
    qmp_args_set_int(o, "min_free_pct", s->min_free_pct);
    qmp_args_set_int(o, "created", s->created);
    qmp_args_set_int(o, "last_slot", s->last_slot);
    qmp_args_set_int(o, "last_run", s->last_run);
    qmp_args_set_str(o, "last_result", s->last_result);
    qmp_args_set_str(o, "last_error", s->last_error);
    qmp_args_set_str(o, "last_snapshot", s->last_snapshot);
}

static int sched_cmp(const void *a, const void *b)
{
    const struct engine_schedule *x = a, *y = b;
    int c = strcmp(x->domain ? x->domain : "", y->domain ? y->domain : "");
    return c ? c : strcmp(x->name, y->name);
}

int sched_load(struct engine *e, const char *domain, struct engine_schedule **v, size_t *n, struct qs_error **err)
{
    char *file = qs_asprintf("%s.json", domain), *text = NULL;
    struct qmp_reply *r = NULL;
    const struct qmp_value *list;
    struct qs_error *local = NULL;
    bool missing;
    int fd = sched_dir_open(e, false, &missing, err), ret = -1;
    size_t cnt;

    *v = NULL;
    *n = 0;
    if (fd < 0) {
        ret = missing ? 0 : -1;
        goto out;
    }
    if (qs_file_read(fd, file, SCHED_FILE_MAX, &text, NULL, &local) < 0) {
        /* no file: no schedules, and no error left behind (a later one could not be set over it) */
        if (local->code == QS_ERR_NOTFOUND)
            ret = 0;
        else
            qs_error_propagate(err, &local);
        goto out;
    }
    if (!(r = qmp_reply_parse(text, err)))
        goto out;
    if (!qs_str_equal(qmp_value_get_string(qmp_reply_value(r), "format"), SCHED_FORMAT)) {
        qs_error_set(err, QS_ERR_INVALID, "'%s/schedule/%s' is not a qsnap schedule file", engine_root(e), file);
        goto out;
    }
    list = qmp_value_get(qmp_reply_value(r), "schedules");
    cnt = qmp_value_array_len(list);
    *v = qs_xcalloc(cnt + 1, sizeof(**v));
    for (size_t i = 0; i < cnt; i++) {
        if (sched_from_json(qmp_value_array_at(list, i), domain, &(*v)[i], err) < 0) {
            engine_schedule_list_free(*v, i);
            *v = NULL;
            goto out;
        }
    }
    *n = cnt;
    qsort(*v, *n, sizeof(**v), sched_cmp);
    ret = 0;
out:
    qs_error_free(local);
    qmp_reply_free(r);
    qs_close(fd);
    free(text);
    free(file);
    return ret;
}

/* Writes DOMAIN's schedules (the domain lock held); none removes the file. */
static int sched_save(struct engine *e, const char *domain, const struct engine_schedule *v, size_t n,
                      struct qs_error **err)
{
    char *file = qs_asprintf("%s.json", domain), *json = NULL, *text = NULL;
    struct qmp_args *a = NULL, *list;
    struct qs_error *local = NULL;
    int fd = sched_dir_open(e, true, NULL, err), ret = -1;

    if (fd < 0)
        goto out;
    if (n == 0) {
        if (qs_file_remove(fd, file, &local) < 0 && local->code != QS_ERR_NOTFOUND) {
            qs_error_propagate(err, &local);
            goto out;
        }
        ret = 0;
        goto out;
    }
    a = qmp_args_new();
    qmp_args_set_str(a, "format", SCHED_FORMAT);
    qmp_args_set_int(a, "version", 1);
    qmp_args_set_str(a, "domain", domain);
    list = qmp_args_set_list(a, "schedules");
    for (size_t i = 0; i < n; i++)
        sched_to_json(qmp_args_push_obj(list), &v[i]);
    json = qmp_args_to_json(a);
    text = qs_asprintf("%s\n", json);
    ret = qs_file_write_atomic(fd, file, text, strlen(text), 0600, err);
out:
    qs_error_free(local);
    qmp_args_free(a);
    qs_close(fd);
    free(json);
    free(text);
    free(file);
    return ret;
}

void schedule_forget(struct engine *e, const char *domain)
{
    int fd = sched_dir_open(e, false, NULL, NULL);
    char *file = qs_asprintf("%s.json", domain), *lock = qs_asprintf("%s.lock", domain);

    if (fd >= 0) {
        qs_file_remove(fd, file, NULL);
        unlinkat(fd, lock, 0);
    }
    qs_close(fd);
    free(file);
    free(lock);
}

static ssize_t sched_find(const struct engine_schedule *v, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i].name, name) == 0)
            return (ssize_t)i;
    return -1;
}

/* ---- checks ---- */

/* The snapshot name PATTERN gives for SLOT (local time). Caller frees; NULL + err when it makes none. */
static char *pattern_name(const char *pattern, int64_t slot, struct qs_error **err)
{
    char buf[256];
    time_t t = (time_t)slot;
    struct tm tm;
    size_t k = 0;

    if (localtime_r(&t, &tm)) {
        /* the pattern is the user's strftime format by design */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
        k = strftime(buf, sizeof(buf), pattern, &tm);
#pragma GCC diagnostic pop
    }
    if (k == 0 || k > QS_NAME_MAX) {
        qs_error_set(err, QS_ERR_INVALID, "name pattern '%s' makes no snapshot name (empty, or over %d bytes)",
                     pattern, QS_NAME_MAX);
        return NULL;
    }
    return qs_xstrdup(buf);
}

static int sched_check(const char *domain, const struct engine_schedule *s, struct qs_error **err)
{
    const struct engine_retention *k = &s->keep;
    struct cron c;
    char *sample;

    if (!s->name || qs_name_check(s->name, "schedule", err) < 0 || cron_parse(&c, s->cron, domain, NULL, err) < 0)
        return -1;
    if ((unsigned)s->kind >= ENGINE_SCHEDULE_KIND__LAST) {
        qs_error_set(err, QS_ERR_INVALID, "unknown schedule kind %d", (int)s->kind);
        return -1;
    }
    if (s->quiesce && s->kind == ENGINE_SCHEDULE_INTERNAL) {
        qs_error_set(err, QS_ERR_INVALID, "quiesce needs an external kind (disk-only, live or memspec): an internal "
                     "snapshot cannot freeze the guest's filesystems");
        return -1;
    }
    if (k->keep_last < 0 || k->keep_hourly < 0 || k->keep_daily < 0 || k->keep_weekly < 0 || k->keep_monthly < 0 ||
        k->keep_yearly < 0 || k->max_age_s < 0) {
        qs_error_set(err, QS_ERR_INVALID, "retention counts and the maximum age cannot be negative");
        return -1;
    }
    if (s->min_free_pct < 0 || s->min_free_pct > 99) {
        qs_error_set(err, QS_ERR_INVALID, "minimum free space must be from 0 to 99 percent, not %d", s->min_free_pct);
        return -1;
    }
    if (s->pattern && (!*s->pattern || strlen(s->pattern) > PATTERN_MAX)) {
        qs_error_set(err, QS_ERR_INVALID, "name pattern must be 1 to %d bytes", PATTERN_MAX);
        return -1;
    }
    /* the pattern must make a valid snapshot name (a date in the past stands for every slot) */
    if (!(sample = pattern_name(s->pattern ? s->pattern : SCHED_PATTERN_DEFAULT, 1709629200, err)))
        return -1;
    if (qs_name_check(sample, "snapshot", err) < 0) {
        qs_error_prefix(err, "name pattern '%s'", s->pattern);
        free(sample);
        return -1;
    }
    free(sample);
    return 0;
}

/* ---- the public calls ---- */

int engine_schedule_set(struct engine *e, const char *domain, const struct engine_schedule *s, struct qs_error **err)
{
    struct engine_schedule *v = NULL, copy;
    struct md_lock *lock = NULL;
    struct event_op ev;
    size_t n = 0;
    ssize_t at;
    int ret = -1;

    event_begin(e, &ev, "schedule-set", domain, NULL);
    if (engine_domain_lookup(e, domain, err) < 0 || sched_check(domain, s, err) < 0 ||
        !(lock = engine_domain_lock(e, domain, err)) || sched_load(e, domain, &v, &n, err) < 0)
        goto out;
    event_set_detail(&ev, "%s: %s %s", s->name, s->cron, engine_schedule_kind_name(s->kind));
    memset(&copy, 0, sizeof(copy));
    copy.domain = (char *)domain;
    copy.name = s->name;
    copy.cron = s->cron;
    copy.kind = s->kind;
    copy.quiesce = s->quiesce;
    copy.pattern = s->pattern;
    copy.offline = s->offline;
    copy.keep = s->keep;
    copy.min_free_pct = s->min_free_pct;
    copy.created = engine_now_ms(e) / 1000;
    if ((at = sched_find(v, n, s->name)) >= 0) {
        /* new settings, the same run state: a changed schedule does not catch up on its own past */
        copy.created = v[at].created;
        copy.last_slot = v[at].last_slot;
        copy.last_run = v[at].last_run;
        copy.last_result = v[at].last_result;
        copy.last_error = v[at].last_error;
        copy.last_snapshot = v[at].last_snapshot;
        {
            struct engine_schedule fresh;
            sched_copy(&fresh, &copy); /* before the old one's strings, which copy borrows, go */
            sched_release(&v[at]);
            v[at] = fresh;
        }
    } else {
        v = qs_xrealloc(v, (n + 1) * sizeof(*v));
        sched_copy(&v[n++], &copy);
    }
    ret = sched_save(e, domain, v, n, err);
out:
    event_end(e, &ev, ret, err ? *err : NULL);
    engine_schedule_list_free(v, n);
    md_lock_free(lock);
    return ret;
}

int engine_schedule_remove(struct engine *e, const char *domain, const char *name, struct qs_error **err)
{
    struct engine_schedule *v = NULL;
    struct md_lock *lock = NULL;
    struct event_op ev;
    size_t n = 0;
    ssize_t at;
    int ret = -1;

    event_begin(e, &ev, "schedule-remove", domain, NULL);
    event_set_detail(&ev, "%s", name ? name : "");
    if (engine_domain_lookup(e, domain, err) < 0 || !(lock = engine_domain_lock(e, domain, err)) ||
        sched_load(e, domain, &v, &n, err) < 0)
        goto out;
    if ((at = sched_find(v, n, name)) < 0) {
        qs_error_set(err, QS_ERR_NOTFOUND, "domain '%s' has no schedule '%s'", domain, name);
        goto out;
    }
    sched_release(&v[at]);
    memmove(&v[at], &v[at + 1], (n - (size_t)at - 1) * sizeof(*v));
    n--;
    ret = sched_save(e, domain, v, n, err);
out:
    event_end(e, &ev, ret, err ? *err : NULL);
    engine_schedule_list_free(v, n);
    md_lock_free(lock);
    return ret;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The domains that have a schedule file, sorted. */
static int sched_domains(struct engine *e, char ***names, size_t *n, struct qs_error **err)
{
    bool missing;
    int fd = sched_dir_open(e, false, &missing, err);
    DIR *d;
    struct dirent *de;
    size_t cap = 0;

    *names = NULL;
    *n = 0;
    if (fd < 0)
        return missing ? 0 : -1;
    if (!(d = fdopendir(fd))) {
        qs_error_set_errno(err, QS_ERR_IO, errno, "cannot read '%s/schedule'", engine_root(e));
        qs_close(fd);
        return -1;
    }
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        char *name;
        if (de->d_name[0] == '.' || !qs_str_has_suffix(de->d_name, ".json"))
            continue;
        name = qs_xstrndup(de->d_name, len - 5);
        if (qs_name_check(name, "domain", NULL) < 0) {
            free(name);
            continue;
        }
        qs_xgrow((void **)names, &cap, *n + 2, sizeof(char *));
        (*names)[(*n)++] = name;
        (*names)[*n] = NULL;
    }
    closedir(d);
    if (*n > 1)
        qsort(*names, *n, sizeof(char *), name_cmp);
    return 0;
}

/* The domains a call is about: DOMAIN (which must be defined), else every defined domain with a schedule file
 * (a file left by a domain undefined behind qsnap's back is passed over). */
static int sched_targets(struct engine *e, const char *domain, char ***domains, size_t *nd, struct qs_error **err)
{
    size_t k = 0;

    *domains = NULL;
    *nd = 0;
    if (domain) {
        if (engine_domain_lookup(e, domain, err) < 0)
            return -1;
        *domains = qs_xcalloc(2, sizeof(char *));
        (*domains)[0] = qs_xstrdup(domain);
        *nd = 1;
        return 0;
    }
    if (sched_domains(e, domains, nd, err) < 0)
        return -1;
    for (size_t i = 0; i < *nd; i++) {
        if (engine_domain_lookup(e, (*domains)[i], NULL) == 0)
            (*domains)[k++] = (*domains)[i];
        else
            free((*domains)[i]);
    }
    if (*domains)
        (*domains)[k] = NULL;
    *nd = k;
    return 0;
}

/* Fills the computed state of S: the expanded cron fields and the next slot. */
static void sched_fill(struct engine_schedule *s)
{
    struct cron c;

    free(s->expanded);
    s->expanded = NULL;
    s->next_slot = -1;
    if (cron_parse(&c, s->cron, s->domain, &s->expanded, NULL) == 0)
        s->next_slot = cron_next(&c, s->last_slot ? s->last_slot : s->created);
}

int engine_schedule_list(struct engine *e, const char *domain, struct engine_schedule **out, size_t *n,
                         struct qs_error **err)
{
    char **domains = NULL;
    size_t nd = 0;
    int ret = -1;

    *out = NULL;
    *n = 0;
    if (sched_targets(e, domain, &domains, &nd, err) < 0)
        return -1;
    for (size_t i = 0; i < nd; i++) {
        struct engine_schedule *v = NULL;
        size_t k = 0;
        if (sched_load(e, domains[i], &v, &k, err) < 0) {
            engine_schedule_list_free(*out, *n);
            *out = NULL;
            *n = 0;
            goto out;
        }
        *out = qs_xrealloc(*out, (*n + k + 1) * sizeof(**out));
        for (size_t j = 0; j < k; j++) {
            (*out)[*n] = v[j];
            sched_fill(&(*out)[(*n)++]);
        }
        free(v); /* the entries moved */
    }
    ret = 0;
out:
    qs_strv_free(domains);
    return ret;
}

/* ---- the runner ---- */

/* The runner lock of DOMAIN (ROOT/schedule/DOMAIN.lock, flock, never waited for): a second run of the same
 * domain - another timer tick, qsnapd, a user - is refused while one is under way. Returns the fd. */
static int runner_lock(struct engine *e, const char *domain, struct qs_error **err)
{
    char *file = qs_asprintf("%s.lock", domain), pid[32];
    int dfd = sched_dir_open(e, true, NULL, err), fd = -1;
    ssize_t k;

    if (dfd < 0)
        goto out;
    fd = openat(dfd, file, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        qs_error_set_errno(err, QS_ERR_IO, errno, "cannot open the runner lock of domain '%s'", domain);
        goto out;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int saved = errno;
        k = pread(fd, pid, sizeof(pid) - 1, 0);
        pid[k > 0 ? k : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        if (saved == EWOULDBLOCK)
            qs_error_set(err, QS_ERR_BUSY, "a schedule run of domain '%s' is already under way (qsnap process %s)",
                         domain, *pid ? pid : "?");
        else
            qs_error_set_errno(err, QS_ERR_IO, saved, "cannot lock the runner lock of domain '%s'", domain);
        qs_close(fd);
        fd = -1;
        goto out;
    }
    k = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t)k, 0) != k) {
        /* only the busy message reads it */
    }
out:
    qs_close(dfd);
    free(file);
    return fd;
}

static void time_text(char *buf, size_t len, int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!localtime_r(&tt, &tm) || strftime(buf, len, "%Y-%m-%d %H:%M %z", &tm) == 0)
        snprintf(buf, len, "@%lld", (long long)t);
}

int sched_free_pct(const char *dir)
{
    struct statvfs sv;

    if (statvfs(dir, &sv) < 0 || sv.f_blocks == 0)
        return -1;
    return (int)((unsigned long long)sv.f_bavail * 100 / sv.f_blocks);
}

/* A disk image's filesystem with less than MIN_PCT free: *why says which; false when all have enough (or
 * cannot be measured). */
static bool disk_low(struct engine *e, const char *domain, int min_pct, char **why)
{
    int (*free_pct)(const char *) = e->sched_ops && e->sched_ops->free_pct ? e->sched_ops->free_pct : sched_free_pct;
    struct md_domain *dom = md_store_domain_get(e->store, domain, NULL);
    size_t nd = dom ? md_domain_disk_count(dom) : 0;
    bool low = false;

    for (size_t k = 0; k < nd && !low; k++) {
        struct md_domain_disk d;
        char *copy;
        int pct;
        if (md_domain_disk_get(dom, k, &d, NULL) < 0 || !d.source || (d.device && strcmp(d.device, "disk") != 0))
            continue;
        copy = qs_xstrdup(d.source);
        pct = free_pct(dirname(copy));
        if (pct >= 0 && pct < min_pct) {
            low = true;
            *why = qs_asprintf("%d%% free on the filesystem of '%s' (below %d%%)", pct, d.source, min_pct);
        }
        free(copy);
    }
    md_domain_free(dom);
    return low;
}

/* The snapshot XML a run of S asks for: NAME, qsnap's marks in the cookie, the memory file of a memspec run. */
static char *run_xml(struct engine *e, const char *domain, const struct engine_schedule *s, const char *name,
                     int64_t slot, bool memfile, struct qs_error **err)
{
    struct md_snapshot *spec = md_snapshot_new();
    struct md_domain *dom = NULL;
    char when[64], num[32], *xml = NULL;

    spec->name = qs_xstrdup(name);
    time_text(when, sizeof(when), slot);
    spec->description = qs_asprintf("taken by schedule '%s' for %s", s->name, when);
    snprintf(num, sizeof(num), "%lld", (long long)slot);
    if (md_snapshot_cookie_set(spec, SCHED_COOKIE_SCHEDULE, s->name, err) < 0 ||
        md_snapshot_cookie_set(spec, SCHED_COOKIE_SLOT, num, err) < 0)
        goto out;
    if (memfile) {
        size_t nd;
        if (!(dom = md_store_domain_get(e->store, domain, err)))
            goto out;
        nd = md_domain_disk_count(dom);
        for (size_t k = 0; k < nd && !spec->memory_file; k++) {
            struct md_domain_disk d;
            if (md_domain_disk_get(dom, k, &d, NULL) == 0 && d.source && d.target &&
                (!d.device || strcmp(d.device, "disk") == 0)) {
                char *suffix = qs_asprintf("%s.mem", name);
                spec->memory_file = ext_default_file(d.source, suffix);
                free(suffix);
            }
        }
        if (!spec->memory_file) {
            qs_error_set(err, QS_ERR_UNSUPPORTED, "domain '%s' has no disk image beside which to put the memory "
                         "file", domain);
            goto out;
        }
        spec->memory = MD_LOCATION_EXTERNAL;
    }
    xml = md_snapshot_format(spec, 0, err);
out:
    md_domain_free(dom);
    md_snapshot_free(spec);
    return xml;
}

/* The name for SLOT: the pattern's, with "-2", "-3", ... when a snapshot of that name exists already. */
static char *run_name(struct engine *e, const char *domain, const struct engine_schedule *s, int64_t slot,
                      struct qs_error **err)
{
    char *base = pattern_name(s->pattern ? s->pattern : SCHED_PATTERN_DEFAULT, slot, err), *name = NULL;
    struct md_tree *t = NULL;

    if (!base || !(t = md_tree_load(e->store, domain, NULL, err)))
        goto out;
    for (int k = 1; k < 1000 && !name; k++) {
        char *cand = k == 1 ? qs_xstrdup(base) : qs_asprintf("%s-%d", base, k);
        if (!md_tree_find(t, cand) && qs_name_check(cand, "snapshot", NULL) == 0)
            name = cand;
        else
            free(cand);
    }
    if (!name)
        qs_error_set(err, QS_ERR_EXISTS, "no free snapshot name from pattern '%s' for this slot", base);
out:
    md_tree_free(t);
    free(base);
    return name;
}

static const struct schedule_ops default_ops = {engine_snapshot_create, engine_snapshot_delete, sched_free_pct};

/* Runs schedule S of DOMAIN for SLOT; RUN gets what happened. 0, or -1 when the run failed. */
static int run_one(struct engine *e, const char *domain, const struct engine_schedule *s, int64_t slot, long missed,
                   bool due, struct engine_run *run)
{
    const struct schedule_ops *ops = e->sched_ops ? e->sched_ops : &default_ops;
    enum engine_domain_state st;
    struct event_op ev;
    struct qs_error *err = NULL;
    struct qs_buf detail;
    char when[64], first[64], *name = NULL, *xml = NULL, *why = NULL, *made = NULL;
    bool off, memfile = false;
    unsigned flags = 0;
    int removed = 0, ret = -1;

    e->run_schedule = s->name;
    event_begin(e, &ev, "schedule-run", domain, NULL);
    qs_buf_init(&detail, 0);
    time_text(when, sizeof(when), slot);
    if (!due) {
        run->reason = qs_xstrdup("asked");
    } else if (missed > 0) {
        int64_t from = s->last_slot ? s->last_slot : s->created;
        struct cron c;
        if (cron_parse(&c, s->cron, domain, NULL, NULL) == 0)
            time_text(first, sizeof(first), cron_next(&c, from));
        else
            snprintf(first, sizeof(first), "?");
        run->reason = qs_asprintf("caught up: %s%ld slots from %s to %s passed while qsnap did not run; one "
                                  "snapshot taken for them", missed + 1 >= CRON_COUNT_MAX ? "over " : "",
                                  missed + 1, first, when);
    } else {
        run->reason = qs_asprintf("due at %s", when);
    }
    qs_buf_adds(&detail, run->reason);
    if (engine_domain_get_state(e, domain, &st, NULL, &err) < 0)
        goto out;
    off = st == ENGINE_DOMAIN_SHUTOFF;
    if (off && !s->offline) {
        ev.outcome = "skipped";
        run->outcome = qs_xstrdup("skipped");
        run->error = qs_xstrdup("the domain is shut off and the schedule takes no offline snapshots");
        qs_buf_addf(&detail, "; skipped: %s", run->error);
        ret = 0;
        goto out;
    }
    /* room first: a snapshot on a nearly full filesystem could fill it */
    if (retention_any(&s->keep) &&
        disk_low(e, domain, s->min_free_pct ? s->min_free_pct : SCHED_MIN_FREE_DEFAULT, &why)) {
        int r0 = 0;
        qs_buf_addf(&detail, "; pruned first: %s", why);
        if (prune_run(e, domain, s->name, &s->keep, 0, NULL, NULL, &r0, &err) < 0)
            goto out;
        removed += r0;
    }
    if (!(name = run_name(e, domain, s, slot, &err)))
        goto out;
    if (off) {
        /* disks only, in the kind's own form: internal stays internal, the external kinds get overlays */
        flags = s->kind == ENGINE_SCHEDULE_INTERNAL ? 0 : ENGINE_CREATE_DISK_ONLY;
    } else {
        switch (s->kind) {
        case ENGINE_SCHEDULE_INTERNAL: break;
        case ENGINE_SCHEDULE_DISK_ONLY: flags = ENGINE_CREATE_DISK_ONLY; break;
        case ENGINE_SCHEDULE_LIVE: flags = ENGINE_CREATE_LIVE; break;
        case ENGINE_SCHEDULE_MEMSPEC: memfile = true; break;
        default: break;
        }
        if (s->quiesce)
            flags |= ENGINE_CREATE_QUIESCE;
    }
    if (!(xml = run_xml(e, domain, s, name, slot, memfile, &err)))
        goto out;
    if (ops->create(e, domain, xml, flags, &made, &err) < 0)
        goto out;
    run->snapshot = qs_xstrdup(made ? made : name);
    event_set_snapshot(&ev, run->snapshot);
    qs_buf_addf(&detail, "; took '%s'%s", run->snapshot, off ? " (offline)" : "");
    if (retention_any(&s->keep)) {
        int r1 = 0;
        if (prune_run(e, domain, s->name, &s->keep, 0, NULL, NULL, &r1, &err) < 0) {
            qs_error_prefix(&err, "snapshot '%s' taken, but the prune after it failed", run->snapshot);
            removed += r1;
            goto out;
        }
        removed += r1;
    }
    if (removed)
        qs_buf_addf(&detail, "; pruned %d", removed);
    run->outcome = qs_xstrdup("ok");
    ret = 0;
out:
    run->pruned = removed;
    if (ret < 0) {
        run->outcome = qs_xstrdup("failed");
        run->error = qs_xstrdup(err ? err->message : "unknown error");
        qs_buf_addf(&detail, "; failed, retried at the next slot");
    }
    event_set_detail(&ev, "%s", detail.data);
    event_end(e, &ev, ret, err);
    e->run_schedule = NULL;
    qs_buf_release(&detail);
    qs_error_free(err);
    free(name);
    free(xml);
    free(why);
    free(made);
    return ret;
}

/* Records RUN in schedule NAME's state (under the domain lock; a schedule removed meanwhile is left alone). */
static int run_record(struct engine *e, const char *domain, const char *name, const struct engine_run *run, bool due,
                      struct qs_error **err)
{
    struct engine_schedule *v = NULL;
    struct md_lock *lock = NULL;
    size_t n = 0;
    ssize_t at;
    int ret = -1;

    if (!(lock = engine_domain_lock(e, domain, err)) || sched_load(e, domain, &v, &n, err) < 0)
        goto out;
    if ((at = sched_find(v, n, name)) >= 0) {
        struct engine_schedule *s = &v[at];
        if (due)
            s->last_slot = run->slot;
        s->last_run = engine_now_ms(e) / 1000;
        free(s->last_result);
        s->last_result = qs_xstrdup(run->outcome);
        free(s->last_error);
        s->last_error = dup_or_null(run->error);
        if (run->snapshot) {
            free(s->last_snapshot);
            s->last_snapshot = qs_xstrdup(run->snapshot);
        }
        if (sched_save(e, domain, v, n, err) < 0)
            goto out;
    }
    ret = 0;
out:
    engine_schedule_list_free(v, n);
    md_lock_free(lock);
    return ret;
}

static struct engine_run *runs_add(struct engine_run **v, size_t *n, size_t *cap)
{
    qs_xgrow((void **)v, cap, *n + 1, sizeof(**v));
    memset(&(*v)[*n], 0, sizeof(**v));
    return &(*v)[(*n)++];
}

/* The slot schedule S of DOMAIN is due for at NOW (seconds), with *count the slots passed; -1 when none is due. */
static int64_t due_slot(const char *domain, const struct engine_schedule *s, int64_t now, long *count)
{
    struct cron c;

    *count = 0;
    if (cron_parse(&c, s->cron, domain, NULL, NULL) < 0)
        return -1; /* checked when set: a hand-edited file */
    return cron_latest(&c, s->last_slot ? s->last_slot : s->created, now, count);
}

/* Whether a due run of DOMAIN (SCHEDULE, or any) may have anything to do - asked before the runner lock, so that a
 * tick with nothing due never takes it: qsnapd's runner and a systemd timer both ticking every minute then meet
 * only over a slot that is due, not every minute. True also when the answer needs the locked path (an unreadable
 * file, a schedule not found: its error is reported there). */
static bool run_maybe_due(struct engine *e, const char *domain, const char *schedule)
{
    struct engine_schedule *v = NULL;
    size_t n = 0;
    bool due = false, named = !schedule;
    int64_t now = engine_now_ms(e) / 1000;

    if (sched_load(e, domain, &v, &n, NULL) < 0)
        return true;
    for (size_t i = 0; i < n && !due; i++) {
        long count;
        if (schedule && strcmp(v[i].name, schedule) != 0)
            continue;
        named = true;
        due = due_slot(domain, &v[i], now, &count) >= 0;
    }
    engine_schedule_list_free(v, n);
    return due || !named;
}

/* The runs of one domain, under its runner lock. Failures are in the runs. */
static int run_domain(struct engine *e, const char *domain, const char *schedule, unsigned flags,
                      struct engine_run **runs, size_t *nruns, size_t *cap, struct qs_error **err)
{
    struct engine_schedule *v = NULL;
    struct qs_error *local = NULL;
    size_t n = 0;
    int lockfd, ret = -1;
    int64_t now;

    if ((flags & ENGINE_RUN_DUE) && !run_maybe_due(e, domain, schedule))
        return 0;
    if ((lockfd = runner_lock(e, domain, &local)) < 0) {
        struct engine_run *r = runs_add(runs, nruns, cap);
        struct event_op ev;
        r->domain = qs_xstrdup(domain);
        r->schedule = dup_or_null(schedule);
        r->outcome = qs_xstrdup(local->code == QS_ERR_BUSY ? "busy" : "failed");
        r->error = qs_xstrdup(local->message);
        event_begin(e, &ev, "schedule-run", domain, NULL);
        ev.outcome = r->outcome;
        event_set_detail(&ev, "refused: another run is under way");
        event_end(e, &ev, -1, local);
        qs_error_free(local);
        return 0;
    }
    if (sched_load(e, domain, &v, &n, err) < 0)
        goto out;
    if (schedule && sched_find(v, n, schedule) < 0) {
        qs_error_set(err, QS_ERR_NOTFOUND, "domain '%s' has no schedule '%s'", domain, schedule);
        goto out;
    }
    now = engine_now_ms(e) / 1000;
    for (size_t i = 0; i < n; i++) {
        const struct engine_schedule *s = &v[i];
        bool due = flags & ENGINE_RUN_DUE;
        struct engine_run *r;
        int64_t slot = now;
        long count = 0;

        if (schedule && strcmp(s->name, schedule) != 0)
            continue;
        if (due && (slot = due_slot(domain, s, now, &count)) < 0)
            continue;
        r = runs_add(runs, nruns, cap);
        r->domain = qs_xstrdup(domain);
        r->schedule = qs_xstrdup(s->name);
        r->slot = slot;
        r->missed = count > 1 ? count - 1 : 0;
        run_one(e, domain, s, slot, r->missed, due, r);
        if (run_record(e, domain, s->name, r, due, &local) < 0) {
            /* the slot stays due: the next run takes it again rather than losing it */
            free(r->outcome);
            r->outcome = qs_xstrdup("failed");
            free(r->error);
            r->error = qs_asprintf("the run could not be recorded: %s", local->message);
            qs_error_clear(&local);
        }
    }
    ret = 0;
out:
    engine_schedule_list_free(v, n);
    qs_close(lockfd);
    return ret;
}

int engine_schedule_run(struct engine *e, const char *domain, const char *schedule, unsigned flags,
                        struct engine_run **out, size_t *n, struct qs_error **err)
{
    struct engine_run *runs = NULL;
    size_t nruns = 0, cap = 0;
    char **domains = NULL;
    size_t nd = 0;
    int ret = -1;

    if (out)
        *out = NULL;
    if (n)
        *n = 0;
    if (schedule && !domain) {
        qs_error_set(err, QS_ERR_INVALID, "a schedule name needs its domain");
        return -1;
    }
    if (sched_targets(e, domain, &domains, &nd, err) < 0)
        return -1;
    for (size_t i = 0; i < nd; i++) {
        if (run_domain(e, domains[i], schedule, flags, &runs, &nruns, &cap, err) < 0)
            goto out;
    }
    ret = engine_run_list_check(runs, nruns, err);
out:
    qs_strv_free(domains);
    if (out) {
        *out = runs;
        *n = nruns;
    } else {
        engine_run_list_free(runs, nruns);
    }
    return ret;
}
