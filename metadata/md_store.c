/* md_store.c: the state directory: paths, per-domain locks, domain definitions, snapshot files. */
#include "md_priv.h"
#include "qs_file.h"
#include "qs_util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct md_store {
    char *root;
    int root_fd;
};

struct md_lock {
    const struct md_store *store;
    char *domain;
    int fd;
};

char *md_store_root_resolve(const char *explicit_root, const char *env_root, uid_t uid,
                            const char *xdg_state_home, const char *home, struct qs_error **err)
{
    char *r = NULL;

    if (explicit_root && *explicit_root)
        r = qs_xstrdup(explicit_root);
    else if (env_root && *env_root)
        r = qs_xstrdup(env_root);
    else if (uid == 0)
        r = qs_xstrdup("/var/lib/qsnap");
    else if (xdg_state_home && xdg_state_home[0] == '/')
        r = qs_asprintf("%s/qsnap", xdg_state_home);
    else if (home && home[0] == '/')
        r = qs_asprintf("%s/.local/state/qsnap", home);
    if (!r) {
        qs_error_set(err, QS_ERR_INVALID, "cannot find a state directory: set QSNAP_ROOT or HOME");
        return NULL;
    }
    if (r[0] != '/') {
        qs_error_set(err, QS_ERR_INVALID, "state directory '%s' is not an absolute path", r);
        free(r);
        return NULL;
    }
    return r;
}

char *md_store_root_default(const char *explicit_root, struct qs_error **err)
{
    return md_store_root_resolve(explicit_root, getenv("QSNAP_ROOT"), getuid(), getenv("XDG_STATE_HOME"),
                                 getenv("HOME"), err);
}

static int mkdir_at(int dirfd, const char *name, struct qs_error **err)
{
    if (mkdirat(dirfd, name, 0700) < 0) {
        if (errno == EEXIST)
            return 0;
        qs_error_set_errno(err, QS_ERR_IO, errno, "cannot create directory '%s'", name);
        return -1;
    }
    return qs_dir_sync(dirfd, err);
}

struct md_store *md_store_open(const char *root, struct qs_error **err)
{
    struct md_store *s = NULL;
    int fd;

    if (!root || root[0] != '/') {
        qs_error_set(err, QS_ERR_INVALID, "state directory '%s' is not an absolute path", root ? root : "");
        return NULL;
    }
    if (qs_dir_create(root, 0700, err) < 0)
        return NULL;
    fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        qs_error_set_errno(err, QS_ERR_IO, errno, "cannot open state directory '%s'", root);
        return NULL;
    }
    if (mkdir_at(fd, "qemu", err) < 0 || mkdir_at(fd, "snapshot", err) < 0 || mkdir_at(fd, "run", err) < 0) {
        qs_error_prefix(err, "state directory '%s'", root);
        close(fd);
        return NULL;
    }
    s = qs_xcalloc(1, sizeof(*s));
    s->root = qs_xstrdup(root);
    s->root_fd = fd;
    return s;
}

void md_store_free(struct md_store *s)
{
    if (!s)
        return;
    qs_close(s->root_fd);
    free(s->root);
    free(s);
}

const char *md_store_root(const struct md_store *s)
{
    return s->root;
}

int md_store_root_fd(const struct md_store *s)
{
    return s->root_fd;
}

/* Opens DIR/SUB (creating it when asked) relative to the root. */
static int subdir_open(const struct md_store *s, const char *sub, bool create, struct qs_error **err)
{
    int fd = openat(s->root_fd, sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);

    if (fd < 0 && errno == ENOENT && create) {
        if (mkdir_at(s->root_fd, sub, err) < 0)
            return -1;
        fd = openat(s->root_fd, sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    }
    if (fd < 0)
        qs_error_set_errno(err, errno == ENOENT ? QS_ERR_NOTFOUND : QS_ERR_IO, errno, "cannot open '%s/%s'",
                           s->root, sub);
    return fd;
}

int md_store_run_open(struct md_store *s)
{
    return subdir_open(s, "run", true, NULL);
}

int md_store_snapdir_open(struct md_store *s, const char *domain, bool create, struct qs_error **err)
{
    int top = -1, fd = -1;

    if (qs_name_check(domain, "domain", err) < 0)
        return -1;
    if ((top = subdir_open(s, "snapshot", true, err)) < 0)
        return -1;
    fd = openat(top, domain, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0 && errno == ENOENT && create) {
        if (mkdir_at(top, domain, err) < 0)
            goto out;
        fd = openat(top, domain, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    }
    if (fd < 0)
        qs_error_set_errno(err, errno == ENOENT ? QS_ERR_NOTFOUND : QS_ERR_IO, errno,
                           "cannot open snapshot directory of domain '%s'", domain);
out:
    qs_close(top);
    return fd;
}

/* ---- locks ---- */

struct md_lock *md_lock_acquire(struct md_store *s, const char *domain, int timeout_ms, struct qs_error **err)
{
    struct md_lock *l = NULL;
    char *name = NULL;
    int run = -1, fd = -1;
    int64_t deadline;

    if (qs_name_check(domain, "domain", err) < 0)
        return NULL;
    if ((run = subdir_open(s, "run", true, err)) < 0)
        return NULL;
    name = qs_asprintf("%s.lock", domain);
    fd = openat(run, name, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        qs_error_set_errno(err, QS_ERR_IO, errno, "cannot open lock file '%s'", name);
        goto out;
    }
    deadline = qs_now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    for (;;) {
        if (flock(fd, LOCK_EX | LOCK_NB) == 0)
            break;
        if (errno == EINTR)
            continue;
        if (errno != EWOULDBLOCK) {
            qs_error_set_errno(err, QS_ERR_IO, errno, "cannot lock domain '%s'", domain);
            goto out;
        }
        if (timeout_ms >= 0 && qs_now_ms() >= deadline) {
            qs_error_set(err, QS_ERR_BUSY, "domain '%s' is locked by another qsnap process", domain);
            goto out;
        }
        {
            struct timespec ts = { 0, 10 * 1000 * 1000 };
            nanosleep(&ts, NULL);
        }
    }
    l = qs_xcalloc(1, sizeof(*l));
    l->store = s;
    l->domain = qs_xstrdup(domain);
    l->fd = fd;
    fd = -1;
out:
    qs_close(fd);
    qs_close(run);
    free(name);
    return l;
}

void md_lock_free(struct md_lock *l)
{
    if (!l)
        return;
    qs_close(l->fd); /* closing the only descriptor releases the flock */
    free(l->domain);
    free(l);
}

const char *md_lock_domain(const struct md_lock *l)
{
    return l->domain;
}

bool md_lock_covers(const struct md_lock *l, const struct md_store *s, const char *domain)
{
    return l && l->store == s && domain && strcmp(l->domain, domain) == 0;
}

int md_lock_check(const struct md_lock *l, const struct md_store *s, const char *domain, struct qs_error **err)
{
    if (qs_name_check(domain, "domain", err) < 0)
        return -1;
    if (!l) {
        qs_error_set(err, QS_ERR_INVALID, "changing domain '%s' needs its lock", domain);
        return -1;
    }
    if (!md_lock_covers(l, s, domain)) {
        qs_error_set(err, QS_ERR_INVALID, "the lock of domain '%s' does not cover domain '%s'", l->domain, domain);
        return -1;
    }
    return 0;
}

/* ---- domain definitions ---- */

int md_store_domain_exists(struct md_store *s, const char *domain, struct qs_error **err)
{
    struct stat st;
    char *file;
    int dir, r;

    if (qs_name_check(domain, "domain", err) < 0 || (dir = subdir_open(s, "qemu", true, err)) < 0)
        return -1;
    file = qs_asprintf("%s.xml", domain);
    r = fstatat(dir, file, &st, 0);
    if (r < 0)
        qs_error_set(err, QS_ERR_NOTFOUND, "domain '%s' not found", domain);
    free(file);
    close(dir);
    return r < 0 ? -1 : 0;
}

struct md_domain *md_store_domain_get(struct md_store *s, const char *domain, struct qs_error **err)
{
    struct md_domain *d = NULL;
    char *file = NULL, *data = NULL;
    size_t len;
    int dir = -1;
    struct qs_error *e = NULL;

    if (qs_name_check(domain, "domain", err) < 0)
        return NULL;
    if ((dir = subdir_open(s, "qemu", true, err)) < 0)
        return NULL;
    file = qs_asprintf("%s.xml", domain);
    if (qs_file_read(dir, file, MD_FILE_MAX, &data, &len, &e) < 0) {
        if (e->code == QS_ERR_NOTFOUND)
            qs_error_set(err, QS_ERR_NOTFOUND, "domain '%s' not found", domain);
        else
            qs_error_propagate(err, &e);
        goto out;
    }
    if (!(d = md_domain_parse(data, len, err))) {
        qs_error_prefix(err, "definition of domain '%s'", domain);
        goto out;
    }
    if (!md_domain_name(d) || strcmp(md_domain_name(d), domain) != 0) {
        qs_error_set(err, QS_ERR_INVALID, "definition '%s' names domain '%s'", file,
                     md_domain_name(d) ? md_domain_name(d) : "");
        md_domain_free(d);
        d = NULL;
    }
out:
    qs_error_free(e);
    qs_close(dir);
    free(file);
    free(data);
    return d;
}

int md_store_domain_put(struct md_store *s, const struct md_lock *lock, const struct md_domain *d,
                        struct qs_error **err)
{
    const char *name = md_domain_name(d);
    char *file = NULL, *xml = NULL;
    int dir = -1, ret = -1;

    if (!name) {
        qs_error_set(err, QS_ERR_INVALID, "domain definition has no name");
        return -1;
    }
    if (md_lock_check(lock, s, name, err) < 0)
        return -1;
    if (!md_domain_uuid(d)) {
        qs_error_set(err, QS_ERR_INVALID, "domain '%s' has no uuid", name);
        return -1;
    }
    if ((dir = subdir_open(s, "qemu", true, err)) < 0)
        return -1;
    if (!(xml = md_domain_format(d, err)))
        goto out;
    file = qs_asprintf("%s.xml", name);
    ret = qs_file_write_atomic(dir, file, xml, strlen(xml), 0600, err);
out:
    qs_close(dir);
    free(file);
    free(xml);
    return ret;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int md_store_domain_list(struct md_store *s, char ***names, struct qs_error **err)
{
    int dir;
    DIR *dp;
    struct dirent *de;
    char **v = NULL;
    size_t n = 0, cap = 0;

    if ((dir = subdir_open(s, "qemu", true, err)) < 0)
        return -1;
    if (!(dp = fdopendir(dir))) {
        qs_error_set_errno(err, QS_ERR_IO, errno, "cannot read '%s/qemu'", s->root);
        close(dir);
        return -1;
    }
    while ((de = readdir(dp))) {
        size_t len = strlen(de->d_name);
        char *name;
        if (de->d_name[0] == '.' || len <= 4 || !qs_str_has_suffix(de->d_name, ".xml"))
            continue;
        name = qs_xstrndup(de->d_name, len - 4);
        if (qs_name_check(name, "domain", NULL) < 0) {
            free(name);
            continue;
        }
        qs_xgrow((void **)&v, &cap, n + 2, sizeof(*v));
        v[n++] = name;
    }
    closedir(dp);
    if (!v)
        v = qs_xcalloc(1, sizeof(*v));
    v[n] = NULL;
    qsort(v, n, sizeof(*v), cmp_str);
    *names = v;
    return 0;
}

/* Removes every file of a snapshot directory, then the directory. */
static int snapdir_remove(struct md_store *s, const char *domain, struct qs_error **err)
{
    int top = -1, fd = -1, ret = -1;
    DIR *dp = NULL;
    struct dirent *de;

    if ((fd = md_store_snapdir_open(s, domain, false, err)) < 0)
        return -1;
    if (!(dp = fdopendir(fd))) {
        qs_error_set_errno(err, QS_ERR_IO, errno, "cannot read snapshot directory of domain '%s'", domain);
        close(fd);
        return -1;
    }
    while ((de = readdir(dp))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (unlinkat(dirfd(dp), de->d_name, 0) < 0 && errno != ENOENT) {
            qs_error_set_errno(err, QS_ERR_IO, errno, "cannot remove '%s'", de->d_name);
            goto out;
        }
    }
    if ((top = subdir_open(s, "snapshot", false, err)) < 0)
        goto out;
    if (unlinkat(top, domain, AT_REMOVEDIR) < 0) {
        qs_error_set_errno(err, QS_ERR_IO, errno, "cannot remove snapshot directory of domain '%s'", domain);
        goto out;
    }
    ret = qs_dir_sync(top, err);
out:
    if (dp)
        closedir(dp);
    qs_close(top);
    return ret;
}

int md_store_domain_delete(struct md_store *s, const struct md_lock *lock, const char *domain, unsigned flags,
                           struct qs_error **err)
{
    struct md_tree *t = NULL;
    char *file = NULL;
    int dir = -1, ret = -1, sfd;
    bool has_dir;
    struct qs_error *e = NULL;

    if (md_lock_check(lock, s, domain, err) < 0)
        return -1;
    sfd = md_store_snapdir_open(s, domain, false, NULL);
    has_dir = sfd >= 0;
    qs_close(sfd);
    if (has_dir && !(flags & MD_DOMAIN_DELETE_SNAPSHOTS)) {
        if (!(t = md_tree_load_internal(s, domain, lock, false, err)))
            goto out;
        if (md_tree_count(t) > 0) {
            qs_error_set(err, QS_ERR_STATE, "cannot delete domain '%s' with %zu snapshots", domain,
                         md_tree_count(t));
            goto out;
        }
    }
    if ((dir = subdir_open(s, "qemu", true, err)) < 0)
        goto out;
    file = qs_asprintf("%s.xml", domain);
    if (qs_file_remove(dir, file, &e) < 0) {
        if (e->code != QS_ERR_NOTFOUND || !has_dir) {
            if (e->code == QS_ERR_NOTFOUND)
                qs_error_set(err, QS_ERR_NOTFOUND, "domain '%s' not found", domain);
            else
                qs_error_propagate(err, &e);
            goto out;
        }
    }
    if (has_dir && snapdir_remove(s, domain, err) < 0)
        goto out;
    md_index_drop(s, domain);
    ret = 0;
out:
    qs_error_free(e);
    md_tree_free(t);
    qs_close(dir);
    free(file);
    return ret;
}

/* ---- snapshots ---- */

static struct md_snapshot *read_snapshot(int dir, const char *file, struct qs_error **err)
{
    char *data = NULL;
    size_t len;
    struct md_snapshot *snap = NULL;

    if (qs_file_read(dir, file, MD_FILE_MAX, &data, &len, err) < 0)
        return NULL;
    if (!(snap = md_snapshot_parse(data, len, MD_PARSE_ON_DISK, err)))
        qs_error_prefix(err, "snapshot file '%s'", file);
    free(data);
    return snap;
}

static int write_snapshot(int dir, const char *file, const struct md_snapshot *snap, struct qs_error **err)
{
    char *xml = md_snapshot_format(snap, MD_FORMAT_ON_DISK, err);
    int ret;

    if (!xml)
        return -1;
    ret = qs_file_write_atomic(dir, file, xml, strlen(xml), 0600, err);
    free(xml);
    return ret;
}

bool md_store_snapshot_file_present(struct md_store *s, const char *domain, const char *name)
{
    struct stat st;
    char *file;
    bool present;
    int dir;

    if (qs_name_check(domain, "domain", NULL) < 0 || qs_name_check(name, "snapshot", NULL) < 0 ||
        (dir = md_store_snapdir_open(s, domain, false, NULL)) < 0)
        return false;
    file = qs_asprintf("%s.xml", name);
    present = fstatat(dir, file, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode);
    free(file);
    qs_close(dir);
    return present;
}

struct md_snapshot *md_store_snapshot_get(struct md_store *s, const char *domain, const char *name,
                                          struct qs_error **err)
{
    struct md_tree *t = NULL;
    const struct md_entry *e;
    struct md_snapshot *snap = NULL;
    int dir = -1;

    if (qs_name_check(domain, "domain", err) < 0 || qs_name_check(name, "snapshot", err) < 0)
        return NULL;
    /* fast path: NAME.xml, as libvirt and qsnap name the files */
    if ((dir = md_store_snapdir_open(s, domain, false, NULL)) >= 0) {
        char *file = qs_asprintf("%s.xml", name);
        snap = read_snapshot(dir, file, NULL);
        free(file);
        qs_close(dir);
        dir = -1;
        if (snap && snap->name && strcmp(snap->name, name) == 0)
            return snap;
        md_snapshot_free(snap);
        snap = NULL;
    }
    if (!(t = md_tree_load_internal(s, domain, NULL, false, err)))
        return NULL;
    if (!(e = md_tree_find(t, name))) {
        qs_error_set(err, QS_ERR_NOTFOUND, "snapshot '%s' not found in domain '%s'", name, domain);
        goto out;
    }
    if ((dir = md_store_snapdir_open(s, domain, false, err)) < 0)
        goto out;
    snap = read_snapshot(dir, e->file, err);
out:
    qs_close(dir);
    md_tree_free(t);
    return snap;
}

/* A writer's changes of the snapshot directory DIR, kept in step with its tree T (md_priv.h). */
struct change {
    int dir;
    struct md_tree *t;
    struct md_wstamp w;
};

static void change_begin(struct change *c, struct md_store *s, const char *domain, struct md_tree *t, int dir)
{
    c->dir = dir;
    c->t = t;
    md_wstamp_begin(&c->w, t, dir);
    /* qsnap before the index moved kept it here */
    md_wstamp_before(&c->w, dir);
    if (unlinkat(dir, MD_INDEX_NAME_V1, 0) == 0)
        md_wstamp_after(&c->w, dir);
    else
        c->w.last = c->w.before;
    (void)s;
    (void)domain;
}

static int change_write(struct change *c, const char *file, const struct md_snapshot *snap, struct qs_error **err)
{
    int r;

    md_wstamp_before(&c->w, c->dir);
    r = write_snapshot(c->dir, file, snap, err);
    md_wstamp_after(&c->w, c->dir);
    if (r == 0 && c->t) /* a quick writer has no tree */
        md_tree_note_file(c->t, c->dir, file, snap);
    return r;
}

static int change_remove(struct change *c, const char *file, const char *name, struct qs_error **err)
{
    int r;

    md_wstamp_before(&c->w, c->dir);
    r = qs_file_remove(c->dir, file, err);
    md_wstamp_after(&c->w, c->dir);
    if (r == 0 && name)
        md_tree_note_removed(c->t, name);
    return r;
}

/* ---- the generation: a seqlock on disk for readers without the lock ---- */

#define GEN_FILE ".qsnap-gen"

static uint64_t gen_get(int dir)
{
    char *data = NULL;
    size_t len = 0;
    uint64_t v = 0;

    if (qs_file_read(dir, GEN_FILE, 64, &data, &len, NULL) == 0)
        v = strtoull(data, NULL, 10);
    free(data);
    return v;
}

/*
 * Visible to other processes at once (rename), not synced: it orders readers, it protects no data. Its two
 * changes of the directory (the new file, then the rename) come microseconds apart, a stat between them:
 * the writer's clearest look at the grain of the directory's timestamps (its other looks span a file's
 * fsync, which a busy disk stretches past half a tick).
 */
static void gen_set(struct change *c, uint64_t v)
{
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%llu\n", (unsigned long long)v), fd;
    struct stat mid;
    bool have_mid;

    md_wstamp_before(&c->w, c->dir);
    fd = openat(c->dir, GEN_FILE ".tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        md_wstamp_after(&c->w, c->dir);
        return;
    }
    have_mid = fstat(c->dir, &mid) == 0;
    if (write(fd, buf, (size_t)n) == n) {
        if (close(fd) == 0 && renameat(c->dir, GEN_FILE ".tmp", c->dir, GEN_FILE) == 0)
            goto out;
    } else {
        close(fd);
    }
    /* a full disk, say: readers lose the ordering of this one change, nothing is left behind */
    unlinkat(c->dir, GEN_FILE ".tmp", 0);
out:
    md_wstamp_after(&c->w, c->dir);
    if (have_mid)
        md_wstamp_grain(&c->w, &mid);
}

/* Before a change of several files: odd (a writer that died left it odd: moved on all the same). */
static void gen_begin(struct change *c)
{
    uint64_t v = gen_get(c->dir);
    gen_set(c, (v & 1) ? v + 2 : v + 1);
}

static void gen_end(struct change *c)
{
    uint64_t v = gen_get(c->dir);
    gen_set(c, (v & 1) ? v + 1 : v + 2);
}

uint64_t md_store_gen_read(struct md_store *s, const char *domain)
{
    int dir = md_store_snapdir_open(s, domain, false, NULL);
    uint64_t v = dir >= 0 ? gen_get(dir) : 0;

    qs_close(dir);
    return v;
}

/* Rewrites the snapshot in FILE with a new parent and/or current flag. */
static int rewrite(struct change *c, const char *file, bool set_parent, const char *parent, int current,
                   struct qs_error **err)
{
    struct md_snapshot *snap = read_snapshot(c->dir, file, err);
    int ret = -1;

    if (!snap)
        return -1;
    if (set_parent) {
        free(snap->parent);
        snap->parent = parent ? qs_xstrdup(parent) : NULL;
    }
    if (current >= 0)
        snap->current = current != 0;
    ret = change_write(c, file, snap, err);
    md_snapshot_free(snap);
    return ret;
}

/* The tree a writer works on: the caller's MINE when it still describes the directory, else one of its own
 * (*owned: free it). */
static struct md_tree *writer_tree(struct md_store *s, const char *domain, const struct md_lock *lock,
                                   struct md_tree *mine, bool *owned, struct qs_error **err)
{
    *owned = !md_tree_still(s, mine, lock, domain);
    return *owned ? md_tree_load_internal(s, domain, lock, false, err) : mine;
}

int md_store_snapshot_put(struct md_store *s, const struct md_lock *lock, const char *domain,
                          const struct md_snapshot *snap, unsigned flags, struct qs_error **err)
{
    return md_store_snapshot_put_tree(s, lock, domain, NULL, NULL, snap, flags, err);
}

int md_store_snapshot_put_tree(struct md_store *s, const struct md_lock *lock, const char *domain,
                               struct md_tree *mine, const struct md_domain *known, const struct md_snapshot *snap,
                               unsigned flags, struct qs_error **err)
{
    struct md_tree *t = NULL;
    struct md_domain *def = NULL;
    const struct md_entry *old, *cur;
    struct qs_error *e = NULL;
    struct change c;
    char *file = NULL;
    bool begun = false, owned = true;
    int dir = -1, ret = -1;

    if (md_lock_check(lock, s, domain, err) < 0)
        return -1;
    if (!snap->name) {
        qs_error_set(err, QS_ERR_INVALID, "a redefined snapshot must have a name");
        return -1;
    }
    if (qs_name_check(snap->name, "snapshot", err) < 0)
        return -1;
    if (!(t = writer_tree(s, domain, lock, mine, &owned, err)))
        goto out;
    old = md_tree_find(t, snap->name);
    if (old && (flags & MD_PUT_NO_REPLACE)) {
        qs_error_set(err, QS_ERR_EXISTS, "snapshot '%s' already exists in domain '%s'", snap->name, domain);
        goto out;
    }
    if (!known && !(def = md_store_domain_get(s, domain, &e)) && e->code != QS_ERR_NOTFOUND) {
        qs_error_propagate(err, &e);
        goto out;
    }
    if (md_tree_check_redefine(t, known ? md_domain_uuid(known) : def ? md_domain_uuid(def) : NULL, snap, err) < 0)
        goto out;
    if ((dir = md_store_snapdir_open(s, domain, true, err)) < 0)
        goto out;
    cur = md_tree_current(t);
    change_begin(&c, s, domain, t, dir);
    gen_begin(&c);
    begun = true;
    /* clear the old current first: a crash in between leaves no current snapshot, never two */
    if (snap->current && cur && strcmp(cur->name, snap->name) != 0 && rewrite(&c, cur->file, false, NULL, 0, err) < 0)
        goto out;
    file = qs_asprintf("%s.xml", snap->name);
    if (change_write(&c, file, snap, err) < 0)
        goto out;
    if (old && strcmp(old->file, file) != 0 && change_remove(&c, old->file, NULL, err) < 0)
        goto out;
    ret = 0;
out:
    if (begun) {
        gen_end(&c);
        md_tree_commit(s, t, &c.w);
    }
    qs_error_free(e);
    md_domain_free(def);
    qs_close(dir);
    free(file);
    if (owned)
        md_tree_free(t);
    return ret;
}

/* A quick writer's change of the directory DIR (no tree), from LAST, as the index vouched for it. */
static void quick_begin(struct change *c, int dir, const struct stat *last, bool fine)
{
    c->dir = dir;
    c->t = NULL;
    c->w.last = *last;
    c->w.ok = true;
    c->w.fine = fine;
    gen_begin(c);
}

int md_store_snapshot_add_quick(struct md_store *s, const struct md_lock *lock, const char *domain,
                                const struct md_domain *def, const struct md_snapshot *snap, struct qs_error **err)
{
    struct md_quick q;
    struct change c = {0};
    struct stat st;
    char *file = NULL, *pfile = NULL;
    int dir = -1, ret = 0;

    if (!def || !snap->name || snap->current || md_lock_check(lock, s, domain, NULL) < 0 ||
        qs_name_check(snap->name, "snapshot", NULL) < 0 ||
        (snap->parent &&
         (strcmp(snap->parent, snap->name) == 0 || qs_name_check(snap->parent, "snapshot", NULL) < 0)) ||
        (dir = md_store_snapdir_open(s, domain, false, NULL)) < 0)
        goto out;
    file = qs_asprintf("%s.xml", snap->name);
    pfile = snap->parent ? qs_asprintf("%s.xml", snap->parent) : NULL;
    /* the index vouches for the directory and says every snapshot is in NAME.xml: no such file, no snapshot
     * of that name; the parent's file there, the parent there */
    if (!md_index_quick(s, domain, dir, &q) || fstatat(dir, file, &st, AT_SYMLINK_NOFOLLOW) == 0 || errno != ENOENT ||
        (pfile && (fstatat(dir, pfile, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))) ||
        md_snapshot_check_redefine(md_domain_uuid(def), snap, NULL) < 0)
        goto out;
    /* from here on the directory changes: the answer is 1 or -1 */
    ret = -1;
    quick_begin(&c, dir, &q.dir, q.fine);
    md_wstamp_before(&c.w, dir);
    if (write_snapshot(dir, file, snap, err) == 0)
        ret = 1;
    md_wstamp_after(&c.w, dir);
    gen_end(&c);
    if (ret == 1 && fstatat(dir, file, &st, AT_SYMLINK_NOFOLLOW) == 0)
        md_index_quick_done(s, domain, &q, &(struct md_jfile){file, (uint64_t)st.st_ino, snap->parent, false, false},
                            1, &c.w);
    else
        md_index_drop(s, domain);
out:
    qs_close(dir);
    free(file);
    free(pfile);
    return ret;
}

/*
 * "current" moving to FILE without the tree, in the snapshot directory DIR as SEEN (a quick writer's change,
 * see quick_begin): the current snapshot's file OFILE (NULL: none) rewritten as not current first (a crash in
 * between leaves none current, never two), then FILE written - SNAP, or (NULL) its file rewritten as current.
 * The files go into JF (*N of them) for the journal. 1 done, -1 failed.
 */
static int current_pair(struct change *c, int dir, const struct stat *seen, bool fine, const char *ofile,
                        const char *file, const struct md_snapshot *snap, struct md_jfile *jf, size_t *n,
                        struct qs_error **err)
{
    const char *f[2] = {ofile, file};
    struct stat st;
    int ret = 1;

    *n = 0;
    quick_begin(c, dir, seen, fine);
    for (int i = ofile ? 0 : 1; i < 2 && ret == 1; i++) {
        int r = i == 0 ? rewrite(c, ofile, false, NULL, 0, err)
                       : snap ? change_write(c, file, snap, err) : rewrite(c, file, false, NULL, 1, err);
        if (r == 0 && fstatat(dir, f[i], &st, AT_SYMLINK_NOFOLLOW) < 0) {
            qs_error_set_errno(err, QS_ERR_IO, errno, "cannot stat snapshot file '%s'", f[i]);
            r = -1;
        }
        if (r < 0) {
            ret = -1;
            break;
        }
        /* the old current one and a file rewritten keep their parent; a new snapshot says its own */
        jf[(*n)++] = (struct md_jfile){f[i], (uint64_t)st.st_ino, i == 1 && snap ? snap->parent : NULL,
                                       i == 0 || !snap, i == 1};
    }
    gen_end(c);
    return ret;
}

int md_store_snapshot_create_peek(struct md_store *s, const struct md_lock *lock, const char *domain,
                                  const char *name, size_t min_count, char *cur, size_t cur_size)
{
    struct md_ixnew n;
    int dir = -1, ret = 0;

    if (md_lock_check(lock, s, domain, NULL) < 0 || qs_name_check(name, "snapshot", NULL) < 0 ||
        (dir = md_store_snapdir_open(s, domain, false, NULL)) < 0 ||
        !md_index_create_peek(s, domain, dir, name, min_count, &n) || strlen(n.cur) >= cur_size)
        goto out;
    memcpy(cur, n.cur, strlen(n.cur) + 1);
    ret = 1;
out:
    qs_close(dir);
    return ret;
}

int md_store_snapshot_create_quick(struct md_store *s, const struct md_lock *lock, const char *domain,
                                   const struct md_domain *def, const struct md_snapshot *snap, size_t min_count,
                                   struct qs_error **err)
{
    struct md_ixnew n;
    struct change c = {0};
    struct md_jfile jf[2];
    char *file = NULL, *ofile = NULL;
    size_t k = 0;
    int dir = -1, ret = 0;

    if (!def || !snap->name || !snap->current || md_lock_check(lock, s, domain, NULL) < 0 ||
        qs_name_check(snap->name, "snapshot", NULL) < 0 || (dir = md_store_snapdir_open(s, domain, false, NULL)) < 0 ||
        !md_index_create_peek(s, domain, dir, snap->name, min_count, &n) ||
        (n.cur[0] ? !snap->parent || strcmp(snap->parent, n.cur) != 0 : snap->parent != NULL) ||
        md_snapshot_check_redefine(md_domain_uuid(def), snap, NULL) < 0)
        goto out;
    file = qs_asprintf("%s.xml", snap->name);
    ofile = n.cur[0] ? qs_asprintf("%s.xml", n.cur) : NULL;
    /* from here on the directory changes: the answer is 1 or -1; both files go to the journal */
    if ((ret = current_pair(&c, dir, &n.q.dir, n.q.fine, ofile, file, snap, jf, &k, err)) == 1)
        md_index_quick_done(s, domain, &n.q, jf, k, &c.w);
    else
        md_index_drop(s, domain);
out:
    qs_close(dir);
    free(file);
    free(ofile);
    return ret;
}

static void collect_subtree(const struct md_tree *t, const struct md_entry *e, const struct md_entry ***v,
                            size_t *n)
{
    for (size_t i = 0; i < e->nchildren; i++) {
        const struct md_entry *c = md_tree_child(t, e, i);
        *v = qs_xrealloc(*v, (*n + 1) * sizeof(**v));
        (*v)[(*n)++] = c;
        collect_subtree(t, c, v, n);
    }
}

int md_store_snapshot_delete(struct md_store *s, const struct md_lock *lock, const char *domain, const char *name,
                             unsigned flags, struct qs_error **err)
{
    return md_store_snapshot_delete_tree(s, lock, domain, NULL, name, flags, err);
}

/*
 * The quick way to delete NAME, a snapshot no other one is built on, with T from md_tree_peek_leaf(): its file
 * removed, its parent's rewritten as current when it was, both recorded in the index's journal. 1 done, 0
 * declined (nothing changed: the index no longer vouches for the directory as T was read, or it is not that
 * index any more), -1 failed (the next load reads the directory).
 */
static int delete_quick(struct md_store *s, const char *domain, const struct md_tree *t, const char *name,
                        struct qs_error **err)
{
    const struct md_entry *e = md_tree_find(t, name);
    struct md_jfile jf[2] = {{0}};
    uint64_t body;
    size_t jl_len;
    struct md_quick q;
    struct change c = {0};
    struct stat st;
    char *file = NULL, *pfile = NULL;
    size_t n = 1;
    int dir = -1, ret = 0;

    if (!e || e->nchildren || !md_tree_peeked_leaf(t, &body, &jl_len) ||
        (dir = md_store_snapdir_open(s, domain, false, NULL)) < 0)
        goto out;
    file = qs_asprintf("%s.xml", name);
    pfile = e->current && e->parent ? qs_asprintf("%s.xml", e->parent) : NULL;
    /* the index T was read from, and its journal as it was then, vouching for the directory now: what T says
     * of NAME (no children, its parent, current or not) still holds */
    if (strcmp(e->file, file) != 0 || !md_index_quick(s, domain, dir, &q) || q.base_body != body ||
        q.jl_len != jl_len || q.nfiles + 2 >= MD_JOURNAL_MAX ||
        (pfile && (fstatat(dir, pfile, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))))
        goto out;
    /* from here on the directory changes: the answer is 1 or -1 */
    ret = -1;
    quick_begin(&c, dir, &q.dir, q.fine);
    jf[0].file = file;
    /* as the long way: the file goes, then the parent becomes current (a crash in between leaves none) */
    if (change_remove(&c, file, NULL, err) == 0 &&
        (!pfile ||
         (rewrite(&c, pfile, false, NULL, 1, err) == 0 && fstatat(dir, pfile, &st, AT_SYMLINK_NOFOLLOW) == 0)))
        ret = 1;
    if (ret == 1 && pfile) /* the parent, rewritten as current */
        jf[n++] = (struct md_jfile){pfile, (uint64_t)st.st_ino, NULL, true, true};
    gen_end(&c);
    if (ret == 1)
        md_index_quick_done(s, domain, &q, jf, n, &c.w);
    else
        md_index_drop(s, domain);
out:
    qs_close(dir);
    free(file);
    free(pfile);
    return ret;
}

int md_store_snapshot_delete_tree(struct md_store *s, const struct md_lock *lock, const char *domain,
                                  struct md_tree *mine, const char *name, unsigned flags, struct qs_error **err)
{
    struct md_tree *t = NULL;
    const struct md_entry *e, *cur, **doomed = NULL, *new_current = NULL;
    struct change c;
    size_t ndoomed = 0;
    bool lose_current = false, begun = false, owned = true;
    int dir = -1, ret = -1, quick;

    if (md_lock_check(lock, s, domain, err) < 0 || qs_name_check(name, "snapshot", err) < 0)
        return -1;
    if ((flags & MD_DELETE_CHILDREN) && (flags & MD_DELETE_CHILDREN_ONLY)) {
        qs_error_set(err, QS_ERR_INVALID,
                     "Flags 'VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN' and 'VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN_ONLY' "
                     "are mutually exclusive");
        return -1;
    }
    if (!flags && mine && (quick = delete_quick(s, domain, mine, name, err)) != 0)
        return quick < 0 ? -1 : 0;
    if (!(t = writer_tree(s, domain, lock, mine, &owned, err)))
        goto out;
    if (!(e = md_tree_find(t, name))) {
        qs_error_set(err, QS_ERR_NOTFOUND, "snapshot '%s' not found in domain '%s'", name, domain);
        goto out;
    }
    if ((dir = md_store_snapdir_open(s, domain, false, err)) < 0)
        goto out;
    change_begin(&c, s, domain, t, dir);
    gen_begin(&c);
    begun = true;
    cur = md_tree_current(t);
    if (flags & (MD_DELETE_CHILDREN | MD_DELETE_CHILDREN_ONLY)) {
        collect_subtree(t, e, &doomed, &ndoomed);
        for (size_t i = 0; i < ndoomed; i++)
            if (doomed[i] == cur)
                lose_current = true;
        if (flags & MD_DELETE_CHILDREN) {
            if (cur == e)
                lose_current = true;
            new_current = md_tree_parent(t, e);
        } else {
            new_current = e;
        }
        /* leaves first (reverse pre-order): every intermediate state is a consistent tree */
        for (size_t i = ndoomed; i-- > 0;)
            if (change_remove(&c, doomed[i]->file, doomed[i]->name, err) < 0)
                goto out;
        if ((flags & MD_DELETE_CHILDREN) && change_remove(&c, e->file, e->name, err) < 0)
            goto out;
    } else {
        /* re-parent the children first, then drop the file */
        for (size_t i = 0; i < e->nchildren; i++)
            if (rewrite(&c, md_tree_child(t, e, i)->file, true, e->parent, -1, err) < 0)
                goto out;
        if (change_remove(&c, e->file, e->name, err) < 0)
            goto out;
        lose_current = cur == e;
        new_current = md_tree_parent(t, e);
    }
    if (lose_current && new_current && rewrite(&c, new_current->file, false, NULL, 1, err) < 0)
        goto out;
    ret = 0;
out:
    if (begun) {
        gen_end(&c);
        md_tree_commit(s, t, &c.w);
    }
    free(doomed);
    qs_close(dir);
    if (owned)
        md_tree_free(t);
    return ret;
}

int md_store_snapshot_set_current(struct md_store *s, const struct md_lock *lock, const char *domain,
                                  const char *name, struct qs_error **err)
{
    return md_store_snapshot_set_current_tree(s, lock, domain, NULL, name, err);
}

/*
 * The quick way to make NAME current (md_index_current): the current snapshot's file rewritten as not current,
 * then NAME's as current - as the long way does - and the index patched in place (or, with a journal, both
 * files appended to it). 1 done (or NAME was current
 * already), 0 declined (nothing changed), -1 failed (the next load reads the directory).
 */
static int set_current_quick(struct md_store *s, const char *domain, const char *name, struct qs_error **err)
{
    struct md_ixcur ic;
    struct change c = {0};
    struct md_jfile jf[2];
    char *file = NULL, *ofile = NULL;
    size_t n = 0;
    int dir = md_store_snapdir_open(s, domain, false, NULL), ret = 0;

    if (dir < 0 || !md_index_current(s, domain, dir, name, &ic))
        goto out;
    if (ic.has_old && strcmp(ic.old_name, name) == 0) {
        ret = 1;
        goto out;
    }
    file = qs_asprintf("%s.xml", name);
    ofile = ic.has_old ? qs_asprintf("%s.xml", ic.old_name) : NULL;
    ret = current_pair(&c, dir, &ic.dir, ic.fine, ofile, file, NULL, jf, &n, err);
    if (ret == 1 && ic.journal)
        md_index_quick_done(s, domain, &ic.q, jf, n, &c.w);
    else if (ret == 1)
        md_index_current_done(s, domain, &ic, &c.w);
    else
        md_index_drop(s, domain);
out:
    qs_close(dir);
    free(file);
    free(ofile);
    return ret;
}

int md_store_snapshot_set_current_tree(struct md_store *s, const struct md_lock *lock, const char *domain,
                                       struct md_tree *mine, const char *name, struct qs_error **err)
{
    struct md_tree *t = NULL;
    const struct md_entry *e = NULL, *cur;
    struct change c;
    bool begun = false, owned = true;
    int dir = -1, ret = -1, quick;

    if (md_lock_check(lock, s, domain, err) < 0)
        return -1;
    if (name && qs_name_check(name, "snapshot", err) < 0)
        return -1;
    if (!mine && name && (quick = set_current_quick(s, domain, name, err)) != 0)
        return quick < 0 ? -1 : 0;
    if (!(t = writer_tree(s, domain, lock, mine, &owned, err)))
        goto out;
    if (name && !(e = md_tree_find(t, name))) {
        qs_error_set(err, QS_ERR_NOTFOUND, "snapshot '%s' not found in domain '%s'", name, domain);
        goto out;
    }
    cur = md_tree_current(t);
    if (cur == e) {
        ret = 0;
        goto out;
    }
    if ((dir = md_store_snapdir_open(s, domain, false, err)) < 0)
        goto out;
    change_begin(&c, s, domain, t, dir);
    gen_begin(&c);
    begun = true;
    if (cur && rewrite(&c, cur->file, false, NULL, 0, err) < 0)
        goto out;
    if (e && rewrite(&c, e->file, false, NULL, 1, err) < 0)
        goto out;
    ret = 0;
out:
    if (begun) {
        gen_end(&c);
        md_tree_commit(s, t, &c.w);
    }
    qs_close(dir);
    if (owned)
        md_tree_free(t);
    return ret;
}

/* ---- intent records ---- */

/*
 * ROOT/snapshot/DOM/.qsnap-intent holds a chain of frames from offset 0: a header (magic, sequence number,
 * length, hash of the text) and the record's text. An operation's first record goes to offset 0, each
 * update of it after the last frame of the chain; the last whole frame of the chain is the record. A
 * cleared record is a zeroed first header. The file is written in place and never shrinks, so a put is one
 * write and one fdatasync of blocks the file already has - no new file, no rename, no directory to sync
 * (on this machine's ext4: ~1 ms against ~20 ms for the temporary-and-rename it replaces).
 *
 * Crash safety: a put returns only once its frame is on disk, before the caller touches QEMU or an image
 * (a write with MD_INTENT_NOSYNC leaves the sync to its caller, for the records md.h says).
 * A frame cut short by a crash fails its hash and ends the chain there, so what counts is the last frame
 * written whole: for a first frame none (the operation had not started), for an update the record before
 * it (as when the update had not been made). A clear is a frame with no text (not synced: if it is lost,
 * the record comes back and is recovered again, which recovery allows). A chain starts at a random
 * sequence number and goes on one by one, so frames of earlier chains left further in the file never
 * continue it. The file's name is synced once, when it is created.
 */
#define INTENT_FILE ".qsnap-intent"
#define INTENT_MAX (64u << 20) /* it may carry a snapshot's and a domain's XML */
#define INTENT_MAGIC 0x52495351u /* "QSIR" */

struct intent_frame {
    uint32_t magic, seq;
    uint64_t len;
    uint64_t sum;
};

/* The chain in DATA: the last whole frame's text (*text, *tlen; NULL when none or cleared), where the chain
 * ends (*end) and the last sequence number seen (*seq). */
static void intent_chain(const char *data, size_t len, const char **text, size_t *tlen, size_t *end,
                         uint32_t *seq)
{
    size_t off = 0;
    bool first = true;

    *text = NULL;
    *tlen = 0;
    *end = 0;
    while (len - off >= sizeof(struct intent_frame)) {
        struct intent_frame f;
        memcpy(&f, data + off, sizeof(f));
        if (f.magic != INTENT_MAGIC || (!first && f.seq != *seq + 1) || f.len > len - off - sizeof(f) ||
            md_hash(data + off + sizeof(f), f.len) != f.sum)
            break;
        *seq = f.seq;
        first = false;
        *text = data + off + sizeof(f);
        *tlen = f.len;
        off += sizeof(f) + ((f.len + 7) & ~(uint64_t)7);
        if (off > len)
            off = len;
        *end = off;
    }
}

/* The whole file (empty when missing); -1 on other errors. */
static int intent_load(int dir, char **data, size_t *len, struct qs_error **err)
{
    struct qs_error *local = NULL;

    *data = NULL;
    *len = 0;
    if (qs_file_read(dir, INTENT_FILE, INTENT_MAX, data, len, &local) == 0)
        return 0;
    if (local->code == QS_ERR_NOTFOUND) {
        qs_error_free(local);
        return 0;
    }
    qs_error_propagate(err, &local);
    return -1;
}

int md_store_intent_put(struct md_store *s, const struct md_lock *lock, const char *domain, const char *text,
                        struct qs_error **err)
{
    return md_store_intent_write(s, lock, domain, text, 0, err);
}

int md_store_intent_write(struct md_store *s, const struct md_lock *lock, const char *domain, const char *text,
                          unsigned flags, struct qs_error **err)
{
    struct intent_frame f = {INTENT_MAGIC, 0, 0, 0};
    const char *cur;
    char *data = NULL, *buf = NULL;
    size_t len, clen, end = 0, tlen = strlen(text), flen;
    uint32_t seq = 0;
    struct stat before;
    bool created = false, have;
    int dir, fd = -1, ret = -1;

    if (md_lock_check(lock, s, domain, err) < 0 || (dir = md_store_snapdir_open(s, domain, true, err)) < 0)
        return -1;
    have = fstat(dir, &before) == 0;
    if (intent_load(dir, &data, &len, err) < 0)
        goto out;
    intent_chain(data, len, &cur, &clen, &end, &seq);
    /* an operation's first record starts a chain again; an update of it follows its last frame */
    if (!cur || clen == 0) {
        end = 0;
        if (getrandom(&seq, sizeof(seq), 0) != (ssize_t)sizeof(seq))
            seq = (uint32_t)qs_now_ns() ^ (uint32_t)getpid();
        f.seq = seq;
    } else {
        f.seq = seq + 1;
    }
    f.len = tlen;
    f.sum = md_hash(text, tlen);
    flen = sizeof(f) + ((tlen + 7) & ~(size_t)7);
    buf = qs_xcalloc(1, flen);
    memcpy(buf, &f, sizeof(f));
    memcpy(buf + sizeof(f), text, tlen);
    fd = openat(dir, INTENT_FILE, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0 && errno == ENOENT) {
        fd = openat(dir, INTENT_FILE, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        created = fd >= 0;
    }
    if (fd < 0) {
        qs_error_set_errno(err, QS_ERR_IO, errno, "cannot open the intent record of domain '%s'", domain);
        goto out;
    }
    if (pwrite(fd, buf, flen, (off_t)end) != (ssize_t)flen) {
        qs_error_set_errno(err, QS_ERR_IO, errno ? errno : ENOSPC, "cannot write the intent record of domain '%s'",
                           domain);
        goto out;
    }
    /* a new file is always synced, its name with it */
    if ((created ? fsync(fd) : (flags & MD_INTENT_NOSYNC) ? 0 : fdatasync(fd)) < 0) {
        qs_error_set_errno(err, QS_ERR_IO, errno, "cannot sync the intent record of domain '%s'", domain);
        goto out;
    }
    if (created) { /* its name too, once */
        if (qs_dir_sync(dir, err) < 0)
            goto out;
        if (have)
            md_index_restamp(s, domain, dir, &before); /* no snapshot file changed */
    }
    ret = 0;
out:
    if (ret < 0 && fd >= 0 && end == 0 && created)
        unlinkat(dir, INTENT_FILE, 0); /* a full disk, say: nothing half-made is left */
    qs_close(fd);
    qs_close(dir);
    free(buf);
    free(data);
    return ret;
}

int md_store_intent_sync(struct md_store *s, const struct md_lock *lock, const char *domain, struct qs_error **err)
{
    int dir, fd = -1, ret = -1;

    if (md_lock_check(lock, s, domain, err) < 0 || (dir = md_store_snapdir_open(s, domain, false, err)) < 0)
        return -1;
    if ((fd = openat(dir, INTENT_FILE, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0 || fdatasync(fd) < 0)
        qs_error_set_errno(err, QS_ERR_IO, errno, "cannot sync the intent record of domain '%s'", domain);
    else
        ret = 0;
    qs_close(fd);
    qs_close(dir);
    return ret;
}

int md_store_intent_get(struct md_store *s, const char *domain, char **text, struct qs_error **err)
{
    struct qs_error *local = NULL;
    const char *cur;
    char *data = NULL;
    size_t len, clen, end;
    uint32_t seq = 0;
    int dir, ret = 0;

    *text = NULL;
    if ((dir = md_store_snapdir_open(s, domain, false, &local)) < 0) {
        if (local->code != QS_ERR_NOTFOUND) {
            qs_error_propagate(err, &local);
            return -1;
        }
        qs_error_free(local);
        return 0;
    }
    if (intent_load(dir, &data, &len, err) < 0) {
        ret = -1;
    } else if (len && memcmp(data, "qsnap-intent ", 13) == 0) {
        *text = data; /* a record the text-file format of qsnap before left behind */
        data = NULL;
    } else {
        intent_chain(data, len, &cur, &clen, &end, &seq);
        if (cur && clen)
            *text = qs_xstrndup(cur, clen);
    }
    free(data);
    qs_close(dir);
    return ret;
}

int md_store_intent_clear(struct md_store *s, const struct md_lock *lock, const char *domain,
                          struct qs_error **err)
{
    struct intent_frame f = {INTENT_MAGIC, 0, 0, 0};
    const char *cur;
    char *data = NULL;
    size_t len, clen, end = 0;
    uint32_t seq = 0;
    struct qs_error *local = NULL;
    int dir, fd = -1, ret = 0;

    if (md_lock_check(lock, s, domain, err) < 0)
        return -1;
    if ((dir = md_store_snapdir_open(s, domain, false, &local)) < 0) {
        if (local->code == QS_ERR_NOTFOUND) { /* no snapshot directory: no record */
            qs_error_free(local);
            return 0;
        }
        qs_error_propagate(err, &local);
        return -1;
    }
    if (intent_load(dir, &data, &len, err) < 0) {
        ret = -1;
        goto out;
    }
    if (len && memcmp(data, "qsnap-intent ", 13) == 0) {
        /* a record of qsnap before, the whole file: it goes */
        if (unlinkat(dir, INTENT_FILE, 0) < 0 && errno != ENOENT) {
            qs_error_set_errno(err, QS_ERR_IO, errno, "cannot clear the intent record of domain '%s'", domain);
            ret = -1;
        }
        goto out;
    }
    intent_chain(data, len, &cur, &clen, &end, &seq);
    if (!cur || clen == 0)
        goto out; /* nothing recorded */
    /* a frame with no text after the last one (not synced: see above) */
    f.seq = seq + 1;
    f.sum = md_hash("", 0);
    if ((fd = openat(dir, INTENT_FILE, O_WRONLY | O_CLOEXEC | O_NOFOLLOW)) < 0 ||
        pwrite(fd, &f, sizeof(f), (off_t)end) != (ssize_t)sizeof(f)) {
        qs_error_set_errno(err, QS_ERR_IO, errno ? errno : ENOSPC, "cannot clear the intent record of domain '%s'",
                           domain);
        ret = -1;
    }
out:
    qs_close(fd);
    qs_close(dir);
    free(data);
    return ret;
}
