/* test_md_store.c: the store (layout, permissions, locks, domains, snapshots), the index and the tree. */
#include "md_test_util.h"

#include "md.h"
#include "md_priv.h"

#include <sys/time.h>
#include <time.h>

struct fx {
    char *root;
    struct md_store *store;
};

static int setup(void **state)
{
    struct fx *f = qs_xcalloc(1, sizeof(*f));
    struct qs_error *err = NULL;
    char *tmp = t_tmpdir();
    f->root = qs_asprintf("%s/state", tmp);
    free(tmp);
    f->store = md_store_open(f->root, &err);
    if (!f->store)
        fail_msg("%s", err->message);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    char *parent = qs_xstrdup(f->root);
    *strrchr(parent, '/') = '\0';
    md_store_free(f->store);
    t_rmrf(parent);
    free(parent);
    free(f->root);
    free(f);
    return 0;
}

static char *snapdir(struct fx *f, const char *dom)
{
    return qs_asprintf("%s/snapshot/%s", f->root, dom);
}

/* Sets a file's mtime well in the past so the index may vouch for it (recent files are "racy"). */
static void age_file(const char *path, int seconds_ago)
{
    struct timespec ts[2];
    clock_gettime(CLOCK_REALTIME, &ts[0]);
    ts[0].tv_sec -= seconds_ago;
    ts[1] = ts[0];
    assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
}

static void age_dir(const char *dir)
{
    DIR *dp = opendir(dir);
    struct dirent *de;
    assert_non_null(dp);
    while ((de = readdir(dp))) {
        if (qs_str_has_suffix(de->d_name, ".xml")) {
            char *p = qs_asprintf("%s/%s", dir, de->d_name);
            age_file(p, 3600);
            free(p);
        }
    }
    closedir(dp);
}

static void copy_libvirt_dir(struct fx *f, const char *dom)
{
    static const char *const names[] = { "before-upgrade", "offline", "Branch", "disk-only", "with-memory" };
    char *dir = snapdir(f, dom);
    struct qs_error *err = NULL;
    assert_int_equal(qs_dir_create(dir, 0700, &err), 0);
    for (size_t i = 0; i < 5; i++) {
        char *rel = qs_asprintf("libvirt-dir/vm1/%s.xml", names[i]), *src = t_data_path(rel);
        char *dst = qs_asprintf("%s/%s.xml", dir, names[i]);
        size_t len;
        char *data = t_read(src, &len);
        t_write(dst, data, len);
        free(data);
        free(rel);
        free(src);
        free(dst);
    }
    age_dir(dir);
    free(dir);
}

static struct md_tree *load(struct fx *f, const char *dom)
{
    struct qs_error *err = NULL;
    struct md_tree *t = md_tree_load(f->store, dom, NULL, &err);
    if (!t)
        fail_msg("load: %s", err->message);
    return t;
}

/* "a,b,c" of a list call */
static char *list_names(const struct md_tree *t, const char *from, unsigned flags)
{
    const struct md_entry **v = NULL;
    size_t n = 0;
    struct qs_error *err = NULL;
    struct qs_buf b;
    if (md_tree_list(t, from, flags, &v, &n, &err) < 0)
        fail_msg("list: %s", err->message);
    qs_buf_init(&b, 0);
    qs_buf_adds(&b, "");
    for (size_t i = 0; i < n; i++)
        qs_buf_addf(&b, "%s%s", i ? "," : "", v[i]->name);
    free(v);
    return qs_buf_detach(&b, NULL);
}

#define ASSERT_LIST(t, from, flags, want)                                                                          \
    do {                                                                                                           \
        char *got_ = list_names(t, from, flags);                                                                   \
        assert_string_equal(got_, want);                                                                           \
        free(got_);                                                                                                \
    } while (0)

static void test_root_resolve(void **state)
{
    struct qs_error *err = NULL;
    char *r;
    (void)state;

    r = md_store_root_resolve("/x", "/env", 1000, "/xdg", "/home/u", &err);
    assert_string_equal(r, "/x");
    free(r);
    r = md_store_root_resolve(NULL, "/env", 0, "/xdg", "/home/u", &err);
    assert_string_equal(r, "/env");
    free(r);
    r = md_store_root_resolve(NULL, "", 0, "/xdg", "/home/u", &err);
    assert_string_equal(r, "/var/lib/qsnap");
    free(r);
    r = md_store_root_resolve(NULL, NULL, 1000, "/xdg", "/home/u", &err);
    assert_string_equal(r, "/xdg/qsnap");
    free(r);
    r = md_store_root_resolve(NULL, NULL, 1000, "relative", "/home/u", &err);
    assert_string_equal(r, "/home/u/.local/state/qsnap");
    free(r);
    assert_null(md_store_root_resolve(NULL, NULL, 1000, NULL, NULL, &err));
    assert_int_equal(err->code, QS_ERR_INVALID);
    qs_error_clear(&err);
    assert_null(md_store_root_resolve("rel", NULL, 0, NULL, NULL, &err));
    assert_int_equal(err->code, QS_ERR_INVALID);
    qs_error_clear(&err);
    r = md_store_root_default("/explicit", &err);
    assert_string_equal(r, "/explicit");
    free(r);
}

static void assert_mode(const char *path, mode_t mode)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, mode);
}

static void test_domains(void **state)
{
    struct fx *f = *state;
    struct qs_error *err = NULL;
    struct md_lock *lock, *other;
    struct md_domain *d, *g;
    char **names = NULL;
    char *p;

    assert_mode(f->root, 0700);
    p = qs_asprintf("%s/qemu", f->root);
    assert_mode(p, 0700);
    free(p);

    d = md_domain_new("vm1", "c7a5fdbd-cdaf-9455-926a-d65c16db1809", 65536, 1, &err);
    assert_non_null(d);
    lock = md_lock_acquire(f->store, "vm1", 0, &err);
    assert_non_null(lock);
    assert_string_equal(md_lock_domain(lock), "vm1");
    other = md_lock_acquire(f->store, "vm2", 0, &err);
    assert_non_null(other);

    /* mutating calls need the right lock */
    assert_int_equal(md_store_domain_put(f->store, NULL, d, &err), -1);
    assert_int_equal(err->code, QS_ERR_INVALID);
    qs_error_clear(&err);
    assert_int_equal(md_store_domain_put(f->store, other, d, &err), -1);
    assert_string_equal(err->message, "the lock of domain 'vm2' does not cover domain 'vm1'");
    qs_error_clear(&err);

    assert_int_equal(md_store_domain_put(f->store, lock, d, &err), 0);
    p = qs_asprintf("%s/qemu/vm1.xml", f->root);
    assert_mode(p, 0600);
    free(p);
    g = md_store_domain_get(f->store, "vm1", &err);
    assert_non_null(g);
    assert_string_equal(md_domain_uuid(g), "c7a5fdbd-cdaf-9455-926a-d65c16db1809");
    md_domain_free(g);
    assert_null(md_store_domain_get(f->store, "nope", &err));
    assert_int_equal(err->code, QS_ERR_NOTFOUND);
    assert_string_equal(err->message, "domain 'nope' not found");
    qs_error_clear(&err);
    assert_null(md_store_domain_get(f->store, "../etc", &err));
    assert_int_equal(err->code, QS_ERR_INVALID);
    qs_error_clear(&err);

    assert_int_equal(md_store_domain_list(f->store, &names, &err), 0);
    assert_int_equal(qs_strv_len(names), 1);
    assert_string_equal(names[0], "vm1");
    qs_strv_free(names);

    /* a domain with snapshots is not deleted unless asked */
    copy_libvirt_dir(f, "vm1");
    assert_int_equal(md_store_domain_delete(f->store, lock, "vm1", 0, &err), -1);
    assert_int_equal(err->code, QS_ERR_STATE);
    assert_string_equal(err->message, "cannot delete domain 'vm1' with 5 snapshots");
    qs_error_clear(&err);
    assert_int_equal(md_store_domain_delete(f->store, lock, "vm1", MD_DOMAIN_DELETE_SNAPSHOTS, &err), 0);
    p = snapdir(f, "vm1");
    assert_int_equal(access(p, F_OK), -1);
    free(p);
    assert_int_equal(md_store_domain_delete(f->store, lock, "vm1", 0, &err), -1);
    assert_int_equal(err->code, QS_ERR_NOTFOUND);
    qs_error_clear(&err);

    md_lock_free(other);
    md_lock_free(lock);
    md_domain_free(d);
}

static void test_lock_busy(void **state)
{
    struct fx *f = *state;
    struct qs_error *err = NULL;
    struct md_lock *a, *b;
    int64_t t0;
    char *p;

    a = md_lock_acquire(f->store, "vm1", 0, &err);
    assert_non_null(a);
    p = qs_asprintf("%s/run/vm1.lock", f->root);
    assert_mode(p, 0600);
    free(p);
    t0 = qs_now_ms();
    b = md_lock_acquire(f->store, "vm1", 100, &err);
    assert_null(b);
    assert_true(qs_now_ms() - t0 >= 100);
    assert_int_equal(err->code, QS_ERR_BUSY);
    assert_string_equal(err->message, "domain 'vm1' is locked by another qsnap process");
    qs_error_clear(&err);

    /* another process sees the same */
    {
        pid_t pid = fork();
        if (pid == 0) {
            struct qs_error *e = NULL;
            struct md_lock *c = md_lock_acquire(f->store, "vm1", 50, &e);
            _exit(!c && e && e->code == QS_ERR_BUSY ? 0 : 1);
        }
        int st;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    md_lock_free(a);
    b = md_lock_acquire(f->store, "vm1", 0, &err);
    assert_non_null(b);
    md_lock_free(b);
    md_lock_free(NULL);
    assert_null(md_lock_acquire(f->store, "a/b", 0, &err));
    assert_int_equal(err->code, QS_ERR_INVALID);
    qs_error_clear(&err);
}

/* Lets the clock tick past the snapshot directory's last change, so that a stamp taken now is not racy. */
static void settle(void)
{
    struct timespec ts = {0, 30 * 1000 * 1000};
    nanosleep(&ts, NULL);
}

/* A file replaced the way libvirt and qsnap write them: a new file renamed over the old one. */
static void replace_file(const char *path, const char *data, size_t len)
{
    char *tmp = qs_asprintf("%s.new", path);
    t_write(tmp, data, len);
    assert_int_equal(rename(tmp, path), 0);
    free(tmp);
}

static char *with_state(const char *data, const char *from, const char *to)
{
    size_t off = (size_t)(strstr(data, from) - data);
    return qs_asprintf("%.*s%s%s", (int)off, data, to, data + off + strlen(from));
}

static void test_libvirt_dir(void **state)
{
    struct fx *f = *state;
    struct qs_error *err = NULL;
    struct md_tree *t;
    const struct md_entry *e;
    static const char *const names[] = { "before-upgrade", "offline", "Branch", "disk-only", "with-memory" };

    copy_libvirt_dir(f, "vm1");
    settle();
    t = load(f, "vm1");
    assert_int_equal(md_tree_count(t), 5);
    assert_int_equal(md_tree_files_parsed(t), 5);
    assert_true(md_tree_index_written(t));
    e = md_tree_current(t);
    assert_string_equal(e->name, "with-memory");
    assert_true(e->external);
    assert_int_equal(e->memory, MD_LOCATION_EXTERNAL);
    assert_string_equal(e->memory_file, "/var/lib/libvirt/qemu/snapshot/vm1/with-memory.mem");
    assert_int_equal(e->depth, 3);
    assert_string_equal(md_tree_parent(t, e)->name, "disk-only");
    e = md_tree_find(t, "before-upgrade");
    assert_string_equal(e->description, "first");
    assert_int_equal(e->creation_time, 1700000000);
    assert_int_equal(e->disk_locations, (1u << MD_LOCATION_INTERNAL) | (1u << MD_LOCATION_NO));
    assert_int_equal(md_tree_root_count(t), 1);
    assert_ptr_equal(md_tree_root(t, 0), e);
    assert_int_equal(e->nchildren, 2);
    assert_string_equal(md_tree_child(t, e, 0)->name, "Branch");
    assert_string_equal(md_tree_child(t, e, 1)->name, "offline");
    assert_null(md_tree_child(t, e, 2));
    assert_true(md_tree_is_ancestor(t, e, md_tree_find(t, "with-memory")));
    assert_false(md_tree_is_ancestor(t, md_tree_find(t, "Branch"), md_tree_find(t, "with-memory")));
    assert_false(md_tree_is_ancestor(t, e, e));
    assert_null(md_tree_find(t, "nope"));
    md_tree_free(t);

    /* warm: the index vouches for every file; the same answers */
    t = load(f, "vm1");
    assert_int_equal(md_tree_files_parsed(t), 0);
    assert_false(md_tree_index_written(t));
    assert_int_equal(md_tree_count(t), 5);
    assert_string_equal(md_tree_current(t)->name, "with-memory");
    assert_string_equal(md_tree_find(t, "before-upgrade")->description, "first");
    ASSERT_LIST(t, NULL, 0, "before-upgrade,Branch,disk-only,offline,with-memory");
    md_tree_free(t);

    /* every file comes back byte for byte through the store */
    for (size_t i = 0; i < 5; i++) {
        struct md_snapshot *s = md_store_snapshot_get(f->store, "vm1", names[i], &err);
        char *rel = qs_asprintf("libvirt-dir/vm1/%s.xml", names[i]), *path = t_data_path(rel), *out, *in;
        size_t len;
        if (!s)
            fail_msg("%s: %s", names[i], err->message);
        assert_non_null(s->domain_xml);
        out = md_snapshot_format(s, MD_FORMAT_ON_DISK, &err);
        in = t_read(path, &len);
        assert_string_equal(out, in);
        free(in);
        free(out);
        free(rel);
        free(path);
        md_snapshot_free(s);
    }
    assert_null(md_store_snapshot_get(f->store, "vm1", "nope", &err));
    assert_int_equal(err->code, QS_ERR_NOTFOUND);
    qs_error_clear(&err);
}

/* Descendants counted by walking the children. */
static size_t walk_count(const struct md_tree *t, const struct md_entry *e)
{
    size_t n = 0;
    for (size_t i = 0; i < e->nchildren; i++)
        n += 1 + walk_count(t, md_tree_child(t, e, i));
    return n;
}

static void test_filters(void **state)
{
    struct fx *f = *state;
    struct qs_error *err = NULL;
    struct md_tree *t;
    const struct md_entry **v;
    size_t n;

    copy_libvirt_dir(f, "vm1");
    t = load(f, "vm1");
    assert_int_equal(md_tree_descendants(t, md_tree_find(t, "before-upgrade")), 4);
    assert_int_equal(md_tree_descendants(t, md_tree_find(t, "offline")), 2);
    assert_int_equal(md_tree_descendants(t, md_tree_find(t, "with-memory")), 0);
    for (size_t i = 0; i < md_tree_count(t); i++) {
        const struct md_entry **all = NULL;
        size_t nall = 0;
        assert_int_equal(md_tree_list(t, NULL, 0, &all, &nall, &err), 0);
        assert_int_equal(md_tree_descendants(t, all[i]), walk_count(t, all[i]));
        free(all);
    }
    /* before-upgrade(running, int) -> Branch(paused, int), offline(shutoff, int) -> disk-only(disk, ext)
     * -> with-memory(running, ext) */
    ASSERT_LIST(t, NULL, 0, "before-upgrade,Branch,disk-only,offline,with-memory");
    ASSERT_LIST(t, NULL, MD_LIST_TOPOLOGICAL, "before-upgrade,Branch,offline,disk-only,with-memory");
    ASSERT_LIST(t, NULL, MD_LIST_TREE, "before-upgrade,Branch,offline,disk-only,with-memory");
    ASSERT_LIST(t, NULL, MD_LIST_ROOTS, "before-upgrade");
    ASSERT_LIST(t, NULL, MD_LIST_LEAVES, "Branch,with-memory");
    ASSERT_LIST(t, NULL, MD_LIST_NO_LEAVES, "before-upgrade,disk-only,offline");
    ASSERT_LIST(t, NULL, MD_LIST_LEAVES | MD_LIST_NO_LEAVES, ""); /* as virsh: each filters on its own */
    ASSERT_LIST(t, NULL, MD_LIST_ACTIVE, "before-upgrade,Branch,with-memory");
    ASSERT_LIST(t, NULL, MD_LIST_INACTIVE, "offline");
    ASSERT_LIST(t, NULL, MD_LIST_DISK_ONLY, "disk-only");
    ASSERT_LIST(t, NULL, MD_LIST_INACTIVE | MD_LIST_DISK_ONLY, "disk-only,offline");
    ASSERT_LIST(t, NULL, MD_LIST_INTERNAL, "before-upgrade,Branch,offline");
    ASSERT_LIST(t, NULL, MD_LIST_EXTERNAL, "disk-only,with-memory");
    ASSERT_LIST(t, NULL, MD_LIST_INTERNAL | MD_LIST_EXTERNAL, "before-upgrade,Branch,disk-only,offline,with-memory");
    ASSERT_LIST(t, NULL, MD_LIST_ACTIVE | MD_LIST_EXTERNAL, "with-memory");
    ASSERT_LIST(t, NULL, MD_LIST_METADATA, "before-upgrade,Branch,disk-only,offline,with-memory");
    ASSERT_LIST(t, NULL, MD_LIST_NO_METADATA, "");
    ASSERT_LIST(t, NULL, MD_LIST_METADATA | MD_LIST_NO_METADATA, "before-upgrade,Branch,disk-only,offline,with-memory");
    ASSERT_LIST(t, "before-upgrade", 0, "Branch,offline");
    ASSERT_LIST(t, "before-upgrade", MD_LIST_DESCENDANTS, "Branch,disk-only,offline,with-memory");
    ASSERT_LIST(t, "before-upgrade", MD_LIST_DESCENDANTS | MD_LIST_TOPOLOGICAL, "Branch,offline,disk-only,with-memory");
    ASSERT_LIST(t, "before-upgrade", MD_LIST_LEAVES, "Branch");
    ASSERT_LIST(t, "before-upgrade", MD_LIST_DESCENDANTS | MD_LIST_LEAVES, "Branch,with-memory");
    ASSERT_LIST(t, "offline", MD_LIST_TREE, "offline,disk-only,with-memory");
    ASSERT_LIST(t, "with-memory", 0, "");
    ASSERT_LIST(t, "with-memory", MD_LIST_TREE, "with-memory");

    assert_int_equal(md_tree_list(t, "offline", MD_LIST_ROOTS, &v, &n, &err), -1);
    assert_int_equal(err->code, QS_ERR_INVALID);
    qs_error_clear(&err);
    assert_int_equal(md_tree_list(t, NULL, MD_LIST_TREE | MD_LIST_LEAVES, &v, &n, &err), -1);
    assert_int_equal(err->code, QS_ERR_INVALID);
    qs_error_clear(&err);
    assert_int_equal(md_tree_list(t, NULL, MD_LIST_TREE | MD_LIST_ROOTS, &v, &n, &err), -1);
    qs_error_clear(&err);
    assert_int_equal(md_tree_list(t, NULL, MD_LIST_DESCENDANTS, &v, &n, &err), -1);
    qs_error_clear(&err);
    assert_int_equal(md_tree_list(t, "nope", 0, &v, &n, &err), -1);
    assert_int_equal(err->code, QS_ERR_NOTFOUND);
    assert_string_equal(err->message, "snapshot 'nope' not found in domain 'vm1'");
    qs_error_clear(&err);
    assert_int_equal(md_tree_list(t, NULL, 1u << 30, &v, &n, &err), -1);
    qs_error_clear(&err);
    md_tree_free(t);

    /* an empty domain is an empty tree */
    t = load(f, "nothing");
    assert_int_equal(md_tree_count(t), 0);
    assert_null(md_tree_current(t));
    ASSERT_LIST(t, NULL, 0, "");
    md_tree_free(t);
}

static void test_index_staleness(void **state)
{
    struct fx *f = *state;
    struct md_tree *t;
    char *dir, *p, *idx;
    size_t len;
    char *data, *fixed;

    copy_libvirt_dir(f, "vm1");
    dir = snapdir(f, "vm1");
    idx = qs_asprintf("%s/run/vm1.index", f->root);
    settle();
    t = load(f, "vm1");
    assert_int_equal(md_tree_load_path(t), MD_LOAD_STAT);
    assert_int_equal(md_tree_files_parsed(t), 5);
    assert_true(md_tree_index_written(t));
    md_tree_free(t);

    /* the directory unchanged: the index alone, not a file looked at */
    t = load(f, "vm1");
    assert_int_equal(md_tree_load_path(t), MD_LOAD_INDEX);
    assert_int_equal(md_tree_files_parsed(t), 0);
    assert_false(md_tree_index_written(t));
    md_tree_free(t);

    /* one file replaced: only it is parsed, the index is rewritten */
    p = qs_asprintf("%s/Branch.xml", dir);
    data = t_read(p, &len);
    fixed = with_state(data, "<state>paused</state>\n", "<state>crashed</state>\n");
    replace_file(p, fixed, strlen(fixed));
    free(fixed);
    free(data);
    age_file(p, 1800);
    settle();
    t = load(f, "vm1");
    assert_int_equal(md_tree_load_path(t), MD_LOAD_STAT);
    assert_int_equal(md_tree_files_parsed(t), 1);
    assert_true(md_tree_index_written(t));
    assert_int_equal(md_tree_find(t, "Branch")->state, MD_STATE_CRASHED);
    md_tree_free(t);
    t = load(f, "vm1");
    assert_int_equal(md_tree_load_path(t), MD_LOAD_INDEX);
    assert_int_equal(md_tree_files_parsed(t), 0);
    assert_int_equal(md_tree_find(t, "Branch")->state, MD_STATE_CRASHED);
    md_tree_free(t);

    /* a file rewritten in place changes no directory entry: the index still vouches for it, until a
     * checked load (snapshot-check) looks at every file */
    data = t_read(p, &len);
    fixed = with_state(data, "<state>crashed</state>\n", "<state>running</state>\n");
    t_write(p, fixed, strlen(fixed));
    free(fixed);
    free(data);
    age_file(p, 1700);
    t = load(f, "vm1");
    assert_int_equal(md_tree_files_parsed(t), 0);
    assert_int_equal(md_tree_find(t, "Branch")->state, MD_STATE_CRASHED);
    md_tree_free(t);
    {
        struct qs_error *err = NULL;
        t = md_tree_load_checked(f->store, "vm1", NULL, &err);
        if (!t)
            fail_msg("checked load: %s", err->message);
        assert_int_equal(md_tree_load_path(t), MD_LOAD_STAT);
        assert_int_equal(md_tree_files_parsed(t), 1);
        assert_true(md_tree_index_written(t));
        assert_int_equal(md_tree_find(t, "Branch")->state, MD_STATE_RUNNING);
        md_tree_free(t);
    }
    t = load(f, "vm1");
    assert_int_equal(md_tree_files_parsed(t), 0);
    assert_int_equal(md_tree_find(t, "Branch")->state, MD_STATE_RUNNING);
    md_tree_free(t);

    /* a file vanished: nothing to parse, the index is rewritten */
    assert_int_equal(unlink(p), 0);
    t = load(f, "vm1");
    assert_int_equal(md_tree_count(t), 4);
    assert_int_equal(md_tree_files_parsed(t), 0);
    assert_true(md_tree_index_written(t));
    assert_null(md_tree_find(t, "Branch"));
    md_tree_free(t);

    /* a file appeared */
    {
        char *src = t_data_path("libvirt-dir/vm1/Branch.xml");
        data = t_read(src, &len);
        t_write(p, data, len);
        free(data);
        free(src);
        age_file(p, 1700);
    }
    t = load(f, "vm1");
    assert_int_equal(md_tree_count(t), 5);
    assert_int_equal(md_tree_files_parsed(t), 1);
    assert_int_equal(md_tree_find(t, "Branch")->state, MD_STATE_PAUSED);
    md_tree_free(t);
    /* read again at once: the stamp may be racy (same clock tick as the change); then the entries' inode
     * numbers are compared instead - still no file is parsed */
    t = load(f, "vm1");
    assert_int_not_equal(md_tree_load_path(t), MD_LOAD_STAT);
    assert_int_equal(md_tree_files_parsed(t), 0);
    md_tree_free(t);

    /* a damaged, truncated or foreign index is ignored and rebuilt */
    data = t_read(idx, &len);
    assert_true(qs_str_has_prefix(data, "QSNAPIX5"));
    {
        /* one byte of the first record's creation time (at offset 50 in it, after the header): nothing but
         * the sums can tell */
        char *bad = qs_xmalloc(len);
        uint32_t hsize;
        memcpy(&hsize, data + 12, sizeof(hsize));
        memcpy(bad, data, len);
        bad[hsize + 50] ^= 0x01;
        t_write(idx, bad, len);
        free(bad);
        t = load(f, "vm1");
        assert_int_equal(md_tree_files_parsed(t), 5);
        md_tree_free(t);
        t_write(idx, data, len);
    }
    t_write(idx, data, len / 2);
    t = load(f, "vm1");
    assert_int_equal(md_tree_files_parsed(t), 5);
    assert_true(md_tree_index_written(t));
    md_tree_free(t);
    data[len - 3] ^= 0x55; /* one byte of the strings: the checksum fails */
    t_write(idx, data, len);
    free(data);
    t = load(f, "vm1");
    assert_int_equal(md_tree_files_parsed(t), 5);
    md_tree_free(t);
    t_write(idx, "garbage", 7);
    t = load(f, "vm1");
    assert_int_equal(md_tree_files_parsed(t), 5);
    md_tree_free(t);

    /* while another process holds the lock, loading works but leaves the index alone */
    {
        struct qs_error *err = NULL;
        struct md_lock *l = md_lock_acquire(f->store, "vm1", 0, &err);
        unlink(idx);
        t = load(f, "vm1");
        assert_false(md_tree_index_written(t));
        assert_int_equal(access(idx, F_OK), -1);
        md_tree_free(t);
        t = md_tree_load(f->store, "vm1", l, &err);
        assert_true(md_tree_index_written(t));
        md_tree_free(t);
        md_lock_free(l);
    }
    free(p);
    free(idx);
    free(dir);
}

static struct md_snapshot *mk_snap(const char *name, const char *parent, int state, const char *uuid)
{
    struct md_snapshot *s = md_snapshot_new();
    struct md_snapshot_disk *d;
    s->name = qs_xstrdup(name);
    s->parent = parent ? qs_xstrdup(parent) : NULL;
    s->state = state;
    s->creation_time = 1700000000;
    s->memory = (state == MD_STATE_SHUTOFF || state == MD_STATE_DISK_SNAPSHOT) ? MD_LOCATION_NO : MD_LOCATION_INTERNAL;
    d = md_snapshot_disk_add(s);
    d->name = qs_xstrdup("vda");
    d->snapshot = MD_LOCATION_INTERNAL;
    s->domain_xml = qs_asprintf("<domain type='qemu'>\n  <name>vm1</name>\n  <uuid>%s</uuid>\n</domain>", uuid);
    return s;
}

#define UUID1 "c7a5fdbd-cdaf-9455-926a-d65c16db1809"

static void expect_put_fail(struct fx *f, struct md_lock *l, struct md_snapshot *s, unsigned flags, int code,
                            const char *msg)
{
    struct qs_error *err = NULL;
    char *dir = snapdir(f, "vm1");
    uint64_t before = t_hash_dir(f->root);
    assert_int_equal(md_store_snapshot_put(f->store, l, "vm1", s, flags, &err), -1);
    assert_int_equal(err->code, code);
    if (strcmp(err->message, msg) != 0)
        fail_msg("got '%s', want '%s'", err->message, msg);
    qs_error_free(err);
    assert_true(t_hash_dir(f->root) == before); /* nothing on disk changed */
    free(dir);
}

static void put_ok(struct fx *f, struct md_lock *l, struct md_snapshot *s)
{
    struct qs_error *err = NULL;
    if (md_store_snapshot_put(f->store, l, "vm1", s, 0, &err) < 0)
        fail_msg("put %s: %s", s->name, err->message);
}

/* The lock of domain vm1, defined. */
static struct md_lock *vm1_defined(struct fx *f)
{
    struct qs_error *err = NULL;
    struct md_lock *l = md_lock_acquire(f->store, "vm1", 0, &err);
    struct md_domain *d = md_domain_new("vm1", UUID1, 65536, 1, &err);

    assert_non_null(l);
    assert_non_null(d);
    assert_int_equal(md_store_domain_put(f->store, l, d, &err), 0);
    md_domain_free(d);
    return l;
}

static void test_put_rules(void **state)
{
    struct fx *f = *state;
    struct qs_error *err = NULL;
    struct md_lock *l = vm1_defined(f);
    struct md_snapshot *s;
    struct md_tree *t;
    char *p;


    s = mk_snap("s1", NULL, MD_STATE_RUNNING, UUID1);
    s->current = true;
    put_ok(f, l, s);
    p = qs_asprintf("%s/snapshot/vm1/s1.xml", f->root);
    assert_mode(p, 0600);
    free(p);
    p = snapdir(f, "vm1");
    assert_mode(p, 0700);
    free(p);
    md_snapshot_free(s);

    s = mk_snap("s2", "s1", MD_STATE_RUNNING, UUID1);
    s->current = true;
    put_ok(f, l, s);
    md_snapshot_free(s);
    t = md_tree_load(f->store, "vm1", l, &err);
    assert_string_equal(md_tree_current(t)->name, "s2");
    assert_false(md_tree_find(t, "s1")->current);
    md_tree_free(t);

    s = mk_snap("s3", "nope", MD_STATE_RUNNING, UUID1);
    expect_put_fail(f, l, s, 0, QS_ERR_INVALID, "invalid argument: parent nope for moment s3 not found");
    free(s->parent);
    s->parent = qs_xstrdup("s3");
    expect_put_fail(f, l, s, 0, QS_ERR_INVALID, "cannot set snapshot 's3' as its own parent");
    md_snapshot_free(s);

    s = mk_snap("s1", "s2", MD_STATE_RUNNING, UUID1);
    expect_put_fail(f, l, s, 0, QS_ERR_INVALID, "parent 's2' would create cycle to 's1'");
    md_snapshot_free(s);

    s = mk_snap("s4", "s2", MD_STATE_RUNNING, "00000000-0000-4000-8000-000000000000");
    expect_put_fail(f, l, s, 0, QS_ERR_INVALID, "definition for snapshot 's4' must use uuid '" UUID1 "'");
    s->creation_time = 0;
    expect_put_fail(f, l, s, 0, QS_ERR_INVALID, "missing creationTime from existing snapshot 's4'");
    s->creation_time = 5;
    free(s->domain_xml);
    s->domain_xml = NULL;
    expect_put_fail(f, l, s, 0, QS_ERR_INVALID, "a redefined snapshot 's4' must contain its domain definition");
    free(s->name);
    s->name = qs_xstrdup("../evil");
    expect_put_fail(f, l, s, 0, QS_ERR_INVALID, "snapshot name '../evil' must not start with '.'");
    free(s->name);
    s->name = qs_xstrdup("a/b");
    expect_put_fail(f, l, s, 0, QS_ERR_INVALID, "snapshot name 'a/b' must not contain '/'");
    md_snapshot_free(s);

    s = mk_snap("s1", NULL, MD_STATE_SHUTOFF, UUID1);
    expect_put_fail(f, l, s, 0, QS_ERR_INVALID,
                    "cannot change between online and offline snapshot state in snapshot 's1'");
    md_snapshot_free(s);
    s = mk_snap("s1", NULL, MD_STATE_PAUSED, UUID1);
    expect_put_fail(f, l, s, MD_PUT_NO_REPLACE, QS_ERR_EXISTS, "snapshot 's1' already exists in domain 'vm1'");
    put_ok(f, l, s); /* running -> paused is allowed */
    md_snapshot_free(s);
    s = mk_snap("s3", "s2", MD_STATE_SHUTOFF, UUID1);
    put_ok(f, l, s);
    md_snapshot_free(s);
    s = mk_snap("s3", "s2", MD_STATE_DISK_SNAPSHOT, UUID1);
    expect_put_fail(f, l, s, 0, QS_ERR_INVALID, "cannot change between disk only and full system in snapshot 's3'");
    md_snapshot_free(s);

    /* a lock for another domain is no proof */
    {
        struct md_lock *o = md_lock_acquire(f->store, "vm2", 0, &err);
        s = mk_snap("s9", NULL, MD_STATE_RUNNING, UUID1);
        expect_put_fail(f, o, s, 0, QS_ERR_INVALID, "the lock of domain 'vm2' does not cover domain 'vm1'");
        md_snapshot_free(s);
        md_lock_free(o);
    }
    md_lock_free(l);
}

static void test_delete_and_current(void **state)
{
    struct fx *f = *state;
    struct qs_error *err = NULL;
    struct md_lock *l;
    struct md_tree *t;
    struct md_snapshot *s;

    copy_libvirt_dir(f, "vm1");
    l = md_lock_acquire(f->store, "vm1", 0, &err);

    /* deleting the current snapshot makes its parent current */
    assert_int_equal(md_store_snapshot_delete(f->store, l, "vm1", "with-memory", 0, &err), 0);
    t = md_tree_load(f->store, "vm1", l, &err);
    assert_string_equal(md_tree_current(t)->name, "disk-only");
    md_tree_free(t);

    /* deleting an inner snapshot re-parents its children */
    assert_int_equal(md_store_snapshot_delete(f->store, l, "vm1", "offline", 0, &err), 0);
    t = md_tree_load(f->store, "vm1", l, &err);
    assert_string_equal(md_tree_find(t, "disk-only")->parent, "before-upgrade");
    ASSERT_LIST(t, "before-upgrade", 0, "Branch,disk-only");
    md_tree_free(t);
    s = md_store_snapshot_get(f->store, "vm1", "disk-only", &err);
    assert_string_equal(s->parent, "before-upgrade");
    assert_true(s->current);
    assert_non_null(s->cookie_xml == NULL ? s->domain_xml : s->cookie_xml);
    md_snapshot_free(s);

    /* set current explicitly, then none */
    assert_int_equal(md_store_snapshot_set_current(f->store, l, "vm1", "Branch", &err), 0);
    t = md_tree_load(f->store, "vm1", l, &err);
    assert_string_equal(md_tree_current(t)->name, "Branch");
    assert_false(md_tree_find(t, "disk-only")->current);
    md_tree_free(t);
    assert_int_equal(md_store_snapshot_set_current(f->store, l, "vm1", NULL, &err), 0);
    t = md_tree_load(f->store, "vm1", l, &err);
    assert_null(md_tree_current(t));
    md_tree_free(t);
    assert_int_equal(md_store_snapshot_set_current(f->store, l, "vm1", "nope", &err), -1);
    assert_int_equal(err->code, QS_ERR_NOTFOUND);
    qs_error_clear(&err);

    /* children-only keeps the snapshot and makes it current when the current one goes */
    assert_int_equal(md_store_snapshot_set_current(f->store, l, "vm1", "Branch", &err), 0);
    assert_int_equal(md_store_snapshot_delete(f->store, l, "vm1", "before-upgrade", MD_DELETE_CHILDREN_ONLY, &err), 0);
    t = md_tree_load(f->store, "vm1", l, &err);
    assert_int_equal(md_tree_count(t), 1);
    assert_string_equal(md_tree_current(t)->name, "before-upgrade");
    md_tree_free(t);
    assert_int_equal(md_store_snapshot_delete(f->store, l, "vm1", "before-upgrade", MD_DELETE_CHILDREN, &err), 0);
    t = md_tree_load(f->store, "vm1", l, &err);
    assert_int_equal(md_tree_count(t), 0);
    md_tree_free(t);
    assert_int_equal(md_store_snapshot_delete(f->store, l, "vm1", "before-upgrade", 0, &err), -1);
    assert_int_equal(err->code, QS_ERR_NOTFOUND);
    qs_error_clear(&err);
    assert_int_equal(md_store_snapshot_delete(f->store, l, "vm1", "x", MD_DELETE_CHILDREN | MD_DELETE_CHILDREN_ONLY,
                                              &err), -1);
    assert_int_equal(err->code, QS_ERR_INVALID);
    qs_error_clear(&err);
    md_lock_free(l);
}

/* Rewrites FILE in the copied libvirt dir, replacing FROM with TO. */
static void edit(struct fx *f, const char *file, const char *from, const char *to)
{
    char *dir = snapdir(f, "vm1"), *p = qs_asprintf("%s/%s", dir, file);
    size_t len;
    char *data = t_read(p, &len), *out;
    size_t off;
    assert_non_null(strstr(data, from));
    off = (size_t)(strstr(data, from) - data);
    out = qs_asprintf("%.*s%s%s", (int)off, data, to, data + off + strlen(from));
    t_write(p, out, strlen(out));
    age_file(p, 3600);
    free(out);
    free(data);
    free(p);
    free(dir);
}

static void expect_load_fail(struct fx *f, int code, const char *needle)
{
    struct qs_error *err = NULL;
    uint64_t before = t_hash_dir(f->root);
    struct md_tree *t = md_tree_load(f->store, "vm1", NULL, &err);
    assert_null(t);
    assert_int_equal(err->code, code);
    if (!strstr(err->message, needle))
        fail_msg("message '%s' lacks '%s'", err->message, needle);
    qs_error_free(err);
    assert_true(t_hash_dir(f->root) == before); /* no index written, nothing touched */
}

/* The index a reader would use now (it must agree with a checked load) and how it was read. */
static int load_agrees(struct fx *f, size_t *count, size_t *parsed)
{
    struct qs_error *err = NULL;
    struct md_tree *t = load(f, "vm1"), *c = md_tree_load_checked(f->store, "vm1", NULL, &err);
    const struct md_entry **a = NULL, **b = NULL;
    size_t na = 0, nb = 0;
    int path = md_tree_load_path(t);

    if (!c)
        fail_msg("checked load: %s", err->message);
    assert_int_equal(md_tree_list(t, NULL, MD_LIST_TOPOLOGICAL, &a, &na, &err), 0);
    assert_int_equal(md_tree_list(c, NULL, MD_LIST_TOPOLOGICAL, &b, &nb, &err), 0);
    assert_int_equal(na, nb);
    for (size_t i = 0; i < na; i++) {
        assert_string_equal(a[i]->name, b[i]->name);
        assert_true(qs_str_equal(a[i]->parent, b[i]->parent));
        assert_int_equal(a[i]->current, b[i]->current);
        assert_int_equal(a[i]->nchildren, b[i]->nchildren);
        assert_int_equal(a[i]->depth, b[i]->depth);
        assert_int_equal(a[i]->state, b[i]->state);
        assert_string_equal(a[i]->file, b[i]->file);
    }
    *count = na;
    *parsed = md_tree_files_parsed(t);
    free(a);
    free(b);
    md_tree_free(t);
    md_tree_free(c);
    return path;
}

#define ASSERT_FRESH(f, want_count)                                                                                \
    do {                                                                                                           \
        size_t n_, parsed_;                                                                                        \
        int path_ = load_agrees((f), &n_, &parsed_);                                                               \
        assert_int_equal(n_, (want_count));                                                                        \
        assert_int_equal(parsed_, 0);                                                                              \
        assert_int_not_equal(path_, MD_LOAD_STAT);                                                                 \
    } while (0)

static const char *aux_of(struct md_tree *t, const char *name)
{
    const struct md_entry *e = md_tree_find(t, name);
    assert_non_null(e);
    return e->aux;
}

/* The engine's data kept with each entry: stored under the lock, read back from the index alone, shared by
 * neighbours, dropped for a file that changed, never kept without the lock or for a directory that moved on. */
static void test_index_aux(void **state)
{
    struct fx *f = *state;
    struct qs_error *err = NULL;
    struct md_lock *l = vm1_defined(f);
    struct md_snapshot *s;
    struct md_tree *t;
    const char *names[] = {"a", "b", "c"};

    for (size_t i = 0; i < 3; i++) {
        s = mk_snap(names[i], i ? names[i - 1] : NULL, MD_STATE_RUNNING, UUID1);
        s->current = i == 2;
        put_ok(f, l, s);
        md_snapshot_free(s);
        md_tree_free(load(f, "vm1"));
    }
    ASSERT_FRESH(f, 3);
    t = md_tree_load(f->store, "vm1", l, &err);
    assert_int_equal(md_tree_load_path(t), MD_LOAD_INDEX);
    assert_null(aux_of(t, "a"));
    md_tree_set_aux(t, md_tree_find(t, "a"), "same\tline\n");
    md_tree_set_aux(t, md_tree_find(t, "b"), "same\tline\n");
    md_tree_set_aux(t, md_tree_find(t, "c"), "other");
    /* without the lock nothing is kept */
    md_tree_aux_store(f->store, t, NULL);
    md_tree_free(t);
    t = load(f, "vm1");
    assert_null(aux_of(t, "a"));
    md_tree_free(t);

    t = md_tree_load(f->store, "vm1", l, &err);
    md_tree_set_aux(t, md_tree_find(t, "a"), "same\tline\n");
    md_tree_set_aux(t, md_tree_find(t, "b"), "same\tline\n");
    md_tree_set_aux(t, md_tree_find(t, "c"), "other");
    md_tree_aux_store(f->store, t, l);
    md_tree_free(t);
    ASSERT_FRESH(f, 3); /* the same stamp: still vouches for the directory */
    t = load(f, "vm1");
    assert_string_equal(aux_of(t, "a"), "same\tline\n");
    assert_string_equal(aux_of(t, "b"), "same\tline\n");
    assert_string_equal(aux_of(t, "c"), "other");
    md_tree_free(t);

    /* a writer's change: its file's aux goes (worked out anew), the others' stay */
    assert_int_equal(md_store_snapshot_set_current(f->store, l, "vm1", "b", &err), 0);
    ASSERT_FRESH(f, 3);
    t = load(f, "vm1");
    assert_string_equal(aux_of(t, "a"), "same\tline\n");
    assert_null(aux_of(t, "b"));
    assert_null(aux_of(t, "c"));
    md_tree_free(t);

    /* the directory changed behind the tree's back: not kept over an index that no longer vouches */
    t = md_tree_load(f->store, "vm1", l, &err);
    md_tree_set_aux(t, md_tree_find(t, "b"), "late");
    s = mk_snap("z", "a", MD_STATE_RUNNING, UUID1);
    put_ok(f, l, s);
    md_snapshot_free(s);
    md_tree_aux_store(f->store, t, l);
    md_tree_free(t);
    t = load(f, "vm1");
    assert_int_equal(md_tree_count(t), 4);
    assert_null(aux_of(t, "b"));
    assert_null(aux_of(t, "z"));
    assert_string_equal(aux_of(t, "a"), "same\tline\n");
    md_tree_free(t);
    md_lock_free(l);
}

/* A snapshot file written behind qsnap's back (libvirt's, say): DIR/TO.xml, snapshot FROM's renamed TO and
 * not current. */
static void write_foreign(const char *dir, const char *from, const char *to)
{
    char *src = qs_asprintf("%s/%s.xml", dir, from), *dst = qs_asprintf("%s/%s.xml", dir, to);
    char *was = qs_asprintf("<name>%s</name>", from), *now = qs_asprintf("<name>%s</name>", to), *xml, *renamed,
         *plain;
    size_t len;

    xml = t_read(src, &len);
    renamed = with_state(xml, was, now);
    plain = strstr(renamed, "<active>1</active>") ? with_state(renamed, "<active>1</active>", "<active>0</active>")
                                                  : qs_xstrdup(renamed);
    t_write(dst, plain, strlen(plain));
    free(plain);
    free(renamed);
    free(xml);
    free(now);
    free(was);
    free(dst);
    free(src);
}

static void test_index_writers(void **state)
{
    struct fx *f = *state;
    struct qs_error *err = NULL;
    struct md_lock *l = vm1_defined(f);
    struct md_snapshot *s;
    struct md_tree *t;
    char *dir = snapdir(f, "vm1"), *legacy, *idx = qs_asprintf("%s/run/vm1.index", f->root);
    struct stat st;

    /* a chain a <- b <- c, then d on a; c current */
    const char *names[] = {"a", "b", "c", "d"}, *parents[] = {NULL, "a", "b", "a"};
    for (size_t i = 0; i < 4; i++) {
        s = mk_snap(names[i], parents[i], MD_STATE_RUNNING, UUID1);
        s->current = i == 2;
        put_ok(f, l, s);
        md_snapshot_free(s);
        if (i == 0) /* the first snapshot made the directory: the next load reads it */
            md_tree_free(load(f, "vm1"));
    }
    /* every write after that kept the index in step: the next reader parses nothing */
    ASSERT_FRESH(f, 4);

    /* re-parenting delete: c moves to a; current stays c */
    assert_int_equal(md_store_snapshot_delete(f->store, l, "vm1", "b", 0, &err), 0);
    ASSERT_FRESH(f, 3);
    t = load(f, "vm1");
    assert_string_equal(md_tree_find(t, "c")->parent, "a");
    assert_int_equal(md_tree_find(t, "a")->nchildren, 2);
    md_tree_free(t);

    /* moving current, deleting the current one (its parent takes over), deleting with children */
    assert_int_equal(md_store_snapshot_set_current(f->store, l, "vm1", "d", &err), 0);
    ASSERT_FRESH(f, 3);
    assert_int_equal(md_store_snapshot_delete(f->store, l, "vm1", "d", 0, &err), 0);
    ASSERT_FRESH(f, 2);
    t = load(f, "vm1");
    assert_string_equal(md_tree_current(t)->name, "a");
    md_tree_free(t);
    s = mk_snap("e", "c", MD_STATE_RUNNING, UUID1);
    put_ok(f, l, s);
    md_snapshot_free(s);
    assert_int_equal(md_store_snapshot_delete(f->store, l, "vm1", "c", MD_DELETE_CHILDREN_ONLY, &err), 0);
    ASSERT_FRESH(f, 2);
    assert_int_equal(md_store_snapshot_delete(f->store, l, "vm1", "a", MD_DELETE_CHILDREN, &err), 0);
    ASSERT_FRESH(f, 0);

    /* an intent record comes and goes without making the index stale */
    s = mk_snap("x", NULL, MD_STATE_RUNNING, UUID1);
    put_ok(f, l, s);
    md_snapshot_free(s);
    assert_int_equal(md_store_intent_put(f->store, l, "vm1", "record\n", &err), 0);
    ASSERT_FRESH(f, 1);
    assert_int_equal(md_store_intent_clear(f->store, l, "vm1", &err), 0);
    ASSERT_FRESH(f, 1);

    /* the index of qsnap before goes with the next write */
    legacy = qs_asprintf("%s/%s", dir, MD_INDEX_NAME_V1);
    t_write(legacy, "qsnap-index 1\n", 14);
    s = mk_snap("y", "x", MD_STATE_RUNNING, UUID1);
    put_ok(f, l, s);
    md_snapshot_free(s);
    assert_int_equal(stat(legacy, &st), -1);
    ASSERT_FRESH(f, 2);

    /* something else changed the directory since the writer loaded its tree: the writer's index would
     * not know it, so it drops the index and the next reader reads the directory */
    t = md_tree_load(f->store, "vm1", l, &err);
    write_foreign(dir, "x", "z");
    {
        struct md_wstamp w;
        int dfd = open(dir, O_RDONLY | O_DIRECTORY);
        md_wstamp_begin(&w, t, dfd);
        assert_false(w.ok);
        md_tree_commit(f->store, t, &w);
        assert_int_equal(stat(idx, &st), -1);
        close(dfd);
    }
    md_tree_free(t);
    t = load(f, "vm1");
    assert_int_equal(md_tree_load_path(t), MD_LOAD_STAT);
    assert_non_null(md_tree_find(t, "z"));
    md_tree_free(t);

    free(legacy);
    free(idx);
    free(dir);
    md_lock_free(l);
}

/* Whether this file system's directory timestamps are finer than the clock tick (Linux 6.13's multigrain
 * timestamps; a busy machine may hide it once, not five times): else a stamp taken right after a change is
 * racy, and neither the quick way nor a reader trusts it until a load took a new one a tick later. */
static bool fine_stamps(struct fx *f)
{
    char *d = qs_asprintf("%s/probe", f->root), *p = qs_asprintf("%s/probe/x", f->root);
    struct stat a, b;
    bool fine = false;

    assert_int_equal(mkdir(d, 0700), 0);
    for (int i = 0; i < 5 && !fine; i++) {
        assert_int_equal(stat(d, &a), 0);
        t_write(p, "x", 1);
        assert_int_equal(stat(d, &b), 0);
        fine = md_stamp_fine(&a, &b);
        unlink(p);
    }
    rmdir(d);
    free(p);
    free(d);
    return fine;
}

/* A tick later, a load under the lock: the index vouches for the directory again with a stamp that is not
 * racy, the journal folded into it. */
static void settle_load(struct fx *f, struct md_lock *l)
{
    struct qs_error *err = NULL;
    struct md_tree *t;

    settle();
    if (!(t = md_tree_load(f->store, "vm1", l, &err)))
        fail_msg("load: %s", err->message);
    md_tree_free(t);
}

/* The quick way for a new snapshot: 1 added, 0 declined - and then nothing on disk changed. */
static int quick(struct fx *f, struct md_lock *l, const struct md_domain *def, const char *name,
                 const char *parent, const char *uuid, bool current)
{
    struct qs_error *err = NULL;
    struct md_snapshot *s = mk_snap(name, parent, MD_STATE_SHUTOFF, uuid);
    uint64_t before = t_hash_dir(f->root);
    int r;

    s->current = current;
    r = md_store_snapshot_add_quick(f->store, l, "vm1", def, s, &err);
    if (r < 0)
        fail_msg("quick %s: %s", name, err->message);
    if (r == 0)
        assert_true(t_hash_dir(f->root) == before);
    md_snapshot_free(s);
    return r;
}

/* Added the quick way, after the tick a racy stamp (a busy machine hid the timestamps' grain) may need. */
static void quick_ok(struct fx *f, struct md_lock *l, const struct md_domain *def, const char *name,
                     const char *parent)
{
    for (int i = 0; i < 5; i++) {
        if (quick(f, l, def, name, parent, UUID1, false) == 1)
            return;
        settle_load(f, l);
    }
    fail_msg("%s: the quick way declined five times", name);
}

/*
 * A new snapshot added without the tree (a redefine): a journal record instead of a new index. A reader
 * loads the index and the files the journal names, and, when it may take the lock, folds them into the
 * index; whatever the journal cannot vouch for (a foreign change, a torn record) is read from the
 * directory. The quick way declines, changing nothing, whenever the directory alone cannot tell enough.
 */
static void test_quick_add(void **state)
{
    struct fx *f = *state;
    struct qs_error *err = NULL;
    struct md_lock *l = vm1_defined(f);
    struct md_domain *def = md_store_domain_get(f->store, "vm1", &err);
    char *dir = snapdir(f, "vm1"), *jl = qs_asprintf("%s/run/vm1.ixlog", f->root), *p, *xml, *other;
    bool fine = fine_stamps(f), full = false;
    struct md_snapshot *s;
    struct stat st;
    size_t n, parsed, len, count = 6;
    int path;

    assert_non_null(def);
    /* no snapshot directory, no index: the long way */
    assert_int_equal(quick(f, l, def, "a", NULL, UUID1, false), 0);
    s = mk_snap("a", NULL, MD_STATE_SHUTOFF, UUID1);
    put_ok(f, l, s);
    md_snapshot_free(s);
    settle_load(f, l);

    /* b on a, then c on b: journal records, the index as it was */
    quick_ok(f, l, def, "b", "a");
    assert_int_equal(stat(jl, &st), 0);
    assert_true(md_index_journal_records(f->store, "vm1") >= 1);
    quick_ok(f, l, def, "c", "b");
    /* a reader without the lock (this test holds it): the index and the journal's files, no fold */
    path = load_agrees(f, &n, &parsed);
    assert_int_equal(n, 3);
    if (fine) {
        assert_int_equal(path, MD_LOAD_JOURNAL);
        assert_int_equal(parsed, md_index_journal_records(f->store, "vm1"));
        assert_int_equal(stat(jl, &st), 0);
    }
    /* under the lock the journal goes into the index */
    settle_load(f, l);
    assert_int_equal(stat(jl, &st), -1);
    ASSERT_FRESH(f, 3);

    /* what the directory alone cannot tell, or that the long way must refuse: declined */
    assert_int_equal(quick(f, l, def, "b", "a", UUID1, false), 0);      /* exists */
    assert_int_equal(quick(f, l, def, "x", "nothere", UUID1, false), 0); /* no parent */
    assert_int_equal(quick(f, l, def, "x", "x", UUID1, false), 0);       /* its own parent */
    assert_int_equal(quick(f, l, def, "x", "a", "00000000-0000-0000-0000-000000000001", false), 0);
    assert_int_equal(quick(f, l, def, "x", "a", UUID1, true), 0); /* current: another file changes */
    /* a snapshot in a file not named after it: a missing NAME.xml no longer means no such snapshot */
    p = qs_asprintf("%s/a.xml", dir);
    xml = t_read(p, &len);
    free(p);
    other = with_state(xml, "<name>a</name>", "<name>g</name>");
    p = qs_asprintf("%s/gfile.xml", dir);
    t_write(p, other, strlen(other));
    settle_load(f, l);
    assert_int_equal(quick(f, l, def, "g", "a", UUID1, false), 0);
    unlink(p);
    free(p);
    free(other);
    free(xml);
    settle_load(f, l);

    /* a change by something else since the last stamp: declined, and the next load reads the directory */
    quick_ok(f, l, def, "d", "c");
    write_foreign(dir, "a", "z");
    assert_int_equal(quick(f, l, def, "e", "d", UUID1, false), 0);
    assert_int_not_equal(load_agrees(f, &n, &parsed), MD_LOAD_JOURNAL);
    assert_int_equal(n, 5);
    settle_load(f, l);

    /* a torn record: the journal ends before it, the directory is read, nothing is lost */
    quick_ok(f, l, def, "e", "d");
    assert_int_equal(stat(jl, &st), 0);
    assert_int_equal(truncate(jl, st.st_size - 8), 0);
    assert_int_not_equal(load_agrees(f, &n, &parsed), MD_LOAD_JOURNAL);
    assert_int_equal(n, 6);
    settle_load(f, l);

    /* an intent record coming (a change that is no snapshot file) keeps the journal good */
    quick_ok(f, l, def, "f", "e");
    count++;
    assert_int_equal(md_store_intent_put(f->store, l, "vm1", "record\n", &err), 0);
    if (fine && md_index_journal_records(f->store, "vm1") == 2)
        assert_int_equal(load_agrees(f, &n, &parsed), MD_LOAD_JOURNAL);
    assert_int_equal(md_store_intent_clear(f->store, l, "vm1", &err), 0);
    settle_load(f, l);

    /* a full journal: the quick way declines, the long way writes a new index */
    for (int i = 0; i < 4 * MD_JOURNAL_MAX && !full; i++) {
        char name[16], parent[16];
        snprintf(name, sizeof(name), "j%03d", i);
        snprintf(parent, sizeof(parent), i ? "j%03d" : "f", i - 1);
        if (quick(f, l, def, name, parent, UUID1, false) == 1) {
            count++;
            continue;
        }
        full = md_index_journal_records(f->store, "vm1") == MD_JOURNAL_MAX;
        s = mk_snap(name, parent, MD_STATE_SHUTOFF, UUID1);
        put_ok(f, l, s);
        md_snapshot_free(s);
        count++;
        assert_int_equal(stat(jl, &st), -1);
        if (!full)
            settle_load(f, l); /* declined for a racy stamp: a tick later */
    }
    assert_true(full || !fine);
    ASSERT_FRESH(f, count);

    md_domain_free(def);
    free(jl);
    free(dir);
    md_lock_free(l);
}

/* Deletes NAME with md_tree_peek_leaf's tree when it gives one (*quick: it did, and the delete went into the
 * journal) - else as the engine does, with a tree loaded for writing. */
static void delete_peeked(struct fx *f, struct md_lock *l, const char *name, bool *quick)
{
    struct qs_error *err = NULL;
    size_t before = md_index_journal_records(f->store, "vm1");
    struct md_tree *t = md_tree_peek_leaf(f->store, "vm1", l, name, 0);

    if (!t)
        t = md_tree_load_for_write(f->store, "vm1", l, &err);
    assert_non_null(t);
    if (md_store_snapshot_delete_tree(f->store, l, "vm1", t, name, 0, &err) < 0)
        fail_msg("delete %s: %s", name, err->message);
    *quick = md_tree_load_path(t) == MD_LOAD_PEEK && md_index_journal_records(f->store, "vm1") > before;
    md_tree_free(t);
}

static const char *current_name(struct fx *f)
{
    static char buf[64];
    struct md_tree *t = load(f, "vm1");
    const struct md_entry *c = md_tree_current(t);

    snprintf(buf, sizeof(buf), "%s", c ? c->name : "-");
    md_tree_free(t);
    return buf;
}

static void peek_agrees(const struct md_tree *t, struct md_tree *p, const char *name);

/*
 * A snapshot nothing is built on, deleted with md_tree_peek_leaf's tree: its file removed, its parent made
 * current when it was, the index left as it was and the journal saying so - a reader applies it, a writer's
 * load for writing leaves it to the writer's change. Whatever the index no longer vouches for takes the long
 * way, which comes to the same snapshots.
 */
static void test_quick_delete(void **state)
{
    struct fx *f = *state;
    struct qs_error *err = NULL;
    struct md_lock *l = vm1_defined(f), *other;
    static const char *const chain[][2] = {{"a", NULL}, {"b", "a"}, {"c", "b"}, {"d", "a"}, {"e", "d"},
                                           {"f", "b"}, {"g", "a"}};
    char *dir = snapdir(f, "vm1"), *jl = qs_asprintf("%s/run/vm1.ixlog", f->root);
    bool fine = fine_stamps(f), quick;
    struct md_snapshot *s;
    struct md_tree *t;
    struct stat st;
    size_t n, parsed, count = 7;
    int path;

    for (size_t i = 0; i < count; i++) {
        s = mk_snap(chain[i][0], chain[i][1], MD_STATE_SHUTOFF, UUID1);
        s->current = strcmp(chain[i][0], "c") == 0;
        put_ok(f, l, s);
        md_snapshot_free(s);
    }
    settle_load(f, l);
    /* only a snapshot nothing is built on, under the domain's own lock */
    assert_null(md_tree_peek_leaf(f->store, "vm1", l, "b", 0));
    assert_null(md_tree_peek_leaf(f->store, "vm1", l, "a", 0));
    assert_null(md_tree_peek_leaf(f->store, "vm1", l, "nothere", 0));
    assert_null(md_tree_peek_leaf(f->store, "vm1", NULL, "c", 0));
    assert_null(md_tree_peek_leaf(f->store, "vm1", l, "c", 8));
    other = md_lock_acquire(f->store, "vm2", 0, &err);
    assert_null(md_tree_peek_leaf(f->store, "vm1", other, "c", 0));
    md_lock_free(other);

    /* the current one: its parent becomes current; two records, the index as it was */
    delete_peeked(f, l, "c", &quick);
    count--;
    assert_string_equal(current_name(f), "b");
    if (fine) {
        assert_true(quick);
        assert_int_equal(md_index_journal_records(f->store, "vm1"), 2);
        /* a reader: the index and the one file written, the removal applied */
        path = load_agrees(f, &n, &parsed);
        assert_int_equal(path, MD_LOAD_JOURNAL);
        assert_int_equal(parsed, 1);
        assert_int_equal(n, count);
        /* the index and its journal vouch together: peeks read through the journal (b rewritten as current,
         * a with one descendant fewer) */
        t = load(f, "vm1");
        for (size_t i = 0; i < 3; i++) {
            const char *nm = (const char *[]){"b", "a", "e"}[i];
            struct md_tree *pk = i == 2 ? md_tree_peek_leaf(f->store, "vm1", l, nm, 0) : md_tree_peek(f->store, "vm1", nm, 0);
            assert_non_null(pk);
            peek_agrees(t, pk, nm);
            md_tree_free(pk);
        }
        md_tree_free(t);
        /* a load for writing applies the journal and leaves it */
        t = md_tree_load_for_write(f->store, "vm1", l, &err);
        assert_non_null(t);
        assert_int_equal(md_tree_load_path(t), MD_LOAD_JOURNAL);
        assert_int_equal(md_tree_count(t), count);
        assert_null(md_tree_find(t, "c"));
        assert_string_equal(md_tree_current(t)->name, "b");
        md_tree_free(t);
        assert_int_equal(stat(jl, &st), 0);
    }
    /* the next delete too: one more record */
    delete_peeked(f, l, "e", &quick);
    count--;
    if (fine) {
        assert_true(quick);
        assert_int_equal(md_index_journal_records(f->store, "vm1"), 3);
    }
    assert_int_not_equal(load_agrees(f, &n, &parsed), MD_LOAD_STAT);
    assert_int_equal(n, count);
    settle_load(f, l);
    ASSERT_FRESH(f, count);

    /* one that is not current: one record */
    delete_peeked(f, l, "g", &quick);
    count--;
    if (fine)
        assert_int_equal(md_index_journal_records(f->store, "vm1"), 1);
    assert_string_equal(current_name(f), "b");
    ASSERT_FRESH(f, count);
    settle_load(f, l);

    /* a torn record: the journal ends before it, the directory is read, nothing comes back */
    delete_peeked(f, l, "f", &quick);
    count--;
    if (quick) {
        assert_int_equal(stat(jl, &st), 0);
        assert_int_equal(truncate(jl, st.st_size - 8), 0);
        assert_int_not_equal(load_agrees(f, &n, &parsed), MD_LOAD_JOURNAL);
        assert_int_equal(n, count);
    }
    settle_load(f, l);

    /* a change by something else after the peek: the long way, the same snapshots */
    s = mk_snap("h", "d", MD_STATE_SHUTOFF, UUID1);
    put_ok(f, l, s);
    md_snapshot_free(s);
    count++;
    settle_load(f, l);
    t = md_tree_peek_leaf(f->store, "vm1", l, "h", 0);
    write_foreign(dir, "a", "z");
    count++;
    assert_int_equal(md_store_snapshot_delete_tree(f->store, l, "vm1", t, "h", 0, &err), 0);
    count--;
    md_tree_free(t);
    assert_int_equal(stat(jl, &st), -1);
    ASSERT_FRESH(f, count);
    assert_null(md_tree_find(t = load(f, "vm1"), "h"));
    assert_non_null(md_tree_find(t, "z"));
    md_tree_free(t);

    /* the last current one, a root: none is current after it */
    settle_load(f, l);
    assert_int_equal(md_store_snapshot_set_current(f->store, l, "vm1", "z", &err), 0);
    settle_load(f, l);
    delete_peeked(f, l, "z", &quick);
    count--;
    assert_string_equal(current_name(f), "-");
    ASSERT_FRESH(f, count);

    free(jl);
    free(dir);
    md_lock_free(l);
}

static ino_t index_ino(struct fx *f)
{
    char *p = qs_asprintf("%s/run/vm1.index", f->root);
    struct stat st;
    ino_t ino = stat(p, &st) == 0 ? st.st_ino : 0;

    free(p);
    return ino;
}

/*
 * Moving "current" without the tree (as a revert does): the two files rewritten and the index patched in
 * place - the same file, read by the next load alone and by a peek - whenever the index vouches for the
 * directory on its own; otherwise the long way. Either way the snapshots come out as a checked load reads
 * them.
 */
static void test_quick_current(void **state)
{
    struct fx *f = *state;
    struct qs_error *err = NULL;
    struct md_lock *l = vm1_defined(f);
    struct md_domain *def = md_store_domain_get(f->store, "vm1", &err);
    static const char *const chain[][2] = {{"a", NULL}, {"b", "a"}, {"c", "b"}, {"d", "a"}, {"e", "d"}};
    char *dir = snapdir(f, "vm1");
    bool fine = fine_stamps(f);
    struct md_snapshot *s;
    struct md_tree *t;
    size_t n, parsed, count = 5;
    uint64_t before;
    ino_t ino;
    int path;

    for (size_t i = 0; i < count; i++) {
        s = mk_snap(chain[i][0], chain[i][1], MD_STATE_SHUTOFF, UUID1);
        s->current = strcmp(chain[i][0], "c") == 0;
        put_ok(f, l, s);
        md_snapshot_free(s);
    }
    settle_load(f, l);

    /* c -> e, then e -> a: the same index file, read alone */
    ino = index_ino(f);
    assert_int_equal(md_store_snapshot_set_current(f->store, l, "vm1", "e", &err), 0);
    assert_string_equal(current_name(f), "e");
    path = load_agrees(f, &n, &parsed);
    assert_int_equal(n, count);
    if (fine) {
        assert_true(index_ino(f) == ino);
        assert_int_equal(path, MD_LOAD_INDEX);
        assert_int_equal(parsed, 0);
        /* snapshot-info's peek reads the patched records */
        t = md_tree_peek(f->store, "vm1", "e", 0);
        assert_non_null(t);
        assert_true(md_tree_find(t, "e")->current);
        md_tree_free(t);
        t = md_tree_peek(f->store, "vm1", "c", 0);
        assert_non_null(t);
        assert_false(md_tree_find(t, "c")->current);
        md_tree_free(t);
    }
    settle();
    assert_int_equal(md_store_snapshot_set_current(f->store, l, "vm1", "a", &err), 0);
    assert_string_equal(current_name(f), "a");
    ASSERT_FRESH(f, count);
    if (fine)
        assert_true(index_ino(f) == ino);

    /* the current one again: nothing is written */
    settle();
    before = t_hash_dir(f->root);
    assert_int_equal(md_store_snapshot_set_current(f->store, l, "vm1", "a", &err), 0);
    assert_true(t_hash_dir(f->root) == before);

    /* none current, then one: no old record to clear */
    assert_int_equal(md_store_snapshot_set_current(f->store, l, "vm1", NULL, &err), 0);
    settle_load(f, l);
    assert_string_equal(current_name(f), "-");
    assert_int_equal(md_store_snapshot_set_current(f->store, l, "vm1", "d", &err), 0);
    assert_string_equal(current_name(f), "d");
    ASSERT_FRESH(f, count);

    /* the index's word for which record is current is under its stamp's sum: changed (to "none"), the index
     * no longer vouches, and the move cannot leave two current snapshots */
    settle_load(f, l);
    {
        char *idx = qs_asprintf("%s/run/vm1.index", f->root), *data;
        size_t len;
        uint32_t cur, none = UINT32_MAX;
        data = t_read(idx, &len);
        memcpy(&cur, data + 96, sizeof(cur)); /* the stamp's current field: header 48 bytes, stamp's 48 on */
        assert_true(cur < count);
        memcpy(data + 96, &none, sizeof(none));
        replace_file(idx, data, len);
        free(data);
        free(idx);
    }
    assert_int_equal(md_store_snapshot_set_current(f->store, l, "vm1", "b", &err), 0);
    assert_string_equal(current_name(f), "b");
    ASSERT_FRESH(f, count);

    /* a snapshot not there: refused, nothing changed */
    settle();
    before = t_hash_dir(f->root);
    assert_int_equal(md_store_snapshot_set_current(f->store, l, "vm1", "nothere", &err), -1);
    assert_int_equal(err->code, QS_ERR_NOTFOUND);
    qs_error_clear(&err);
    assert_true(t_hash_dir(f->root) == before);

    /* a change by something else since the index: the long way, a new index */
    settle_load(f, l);
    write_foreign(dir, "b", "z");
    count++;
    ino = index_ino(f);
    assert_int_equal(md_store_snapshot_set_current(f->store, l, "vm1", "z", &err), 0);
    assert_string_equal(current_name(f), "z");
    ASSERT_FRESH(f, count);
    assert_true(index_ino(f) != ino);

    /* a journal there (a quick redefine): its snapshot would be lost from a patched index - the two files go
     * into the journal, the index as it was */
    settle_load(f, l);
    if (quick(f, l, def, "j", "e", UUID1, false) == 1) {
        size_t records = md_index_journal_records(f->store, "vm1");
        count++;
        ino = index_ino(f);
        assert_int_equal(md_store_snapshot_set_current(f->store, l, "vm1", "j", &err), 0);
        assert_string_equal(current_name(f), "j");
        if (fine) {
            assert_true(index_ino(f) == ino);
            assert_int_equal(md_index_journal_records(f->store, "vm1"), records + 2);
        }
        assert_int_not_equal(load_agrees(f, &n, &parsed), MD_LOAD_STAT);
        assert_int_equal(n, count);
        settle_load(f, l);
        ASSERT_FRESH(f, count);
    }

    md_domain_free(def);
    free(dir);
    md_lock_free(l);
}

/* Whether P (from md_tree_peek) has NAME as T (a whole load) has it; P may be NULL (declined). */
static void peek_agrees(const struct md_tree *t, struct md_tree *p, const char *name)
{
    const struct md_entry *a = md_tree_find(t, name), *b;

    if (!p)
        return;
    assert_int_equal(md_tree_load_path(p), MD_LOAD_PEEK);
    b = md_tree_find(p, name);
    assert_non_null(a);
    assert_non_null(b);
    assert_string_equal(a->name, b->name);
    assert_true(qs_str_equal(a->parent, b->parent));
    assert_true(qs_str_equal(a->description, b->description));
    assert_string_equal(a->file, b->file);
    assert_true(qs_str_equal(a->memory_file, b->memory_file));
    assert_int_equal(a->state, b->state);
    assert_int_equal(a->memory, b->memory);
    assert_int_equal(a->creation_time, b->creation_time);
    assert_int_equal(a->disk_locations, b->disk_locations);
    assert_int_equal(a->external, b->external);
    assert_int_equal(a->current, b->current);
    assert_int_equal(a->nchildren, b->nchildren);
    assert_int_equal(a->depth, b->depth);
    assert_int_equal(md_tree_descendants(t, a), md_tree_descendants(p, b));
}

/*
 * md_tree_peek: one snapshot read from its index record and its file. It gives the entry a whole load gives,
 * and NULL - never a wrong entry - when the index cannot vouch (too few snapshots, a foreign change), for a
 * name not there, or with any byte of the index damaged; through the index's journal, what a whole load gives.
 */
static void test_peek(void **state)
{
    static const char *const names[] = {"before-upgrade", "offline", "Branch", "disk-only", "with-memory"};
    struct fx *f = *state;
    struct qs_error *err = NULL;
    char *dir = snapdir(f, "vm1"), *idx = qs_asprintf("%s/run/vm1.index", f->root), *data;
    struct md_tree *t, *pk;
    struct md_lock *l;
    struct md_domain *def;
    size_t len;
    int declined = 0;
    bool fine = fine_stamps(f);

    copy_libvirt_dir(f, "vm1");
    settle();
    t = load(f, "vm1");
    for (size_t i = 0; i < 5; i++) {
        pk = md_tree_peek(f->store, "vm1", names[i], 0);
        assert_non_null(pk);
        peek_agrees(t, pk, names[i]);
        md_tree_free(pk);
    }
    assert_null(md_tree_peek(f->store, "vm1", "offline", 6)); /* fewer than asked for: load instead */
    assert_null(md_tree_peek(f->store, "vm1", "nothere", 0));
    assert_null(md_tree_peek(f->store, "vm1", "../vm1", 0));

    /* every byte of the index damaged in turn: each peek declines or is right */
    data = t_read(idx, &len);
    for (size_t off = 0; off < len; off++) {
        char *bad = qs_xmalloc(len);
        memcpy(bad, data, len);
        bad[off] ^= 0x5a;
        replace_file(idx, bad, len);
        for (size_t i = 0; i < 5; i++) {
            pk = md_tree_peek(f->store, "vm1", names[i], 0);
            if (!pk) {
                declined++;
                continue;
            }
            peek_agrees(t, pk, names[i]); /* fails the test on a wrong entry */
            md_tree_free(pk);
        }
        free(bad);
    }
    assert_true(declined > 0);
    replace_file(idx, data, len);
    free(data);
    pk = md_tree_peek(f->store, "vm1", "offline", 0);
    assert_non_null(pk);
    md_tree_free(pk);

    /* a foreign change of the directory, then a journal: the index alone no longer vouches */
    write_foreign(dir, "Branch", "foreign");
    assert_null(md_tree_peek(f->store, "vm1", "Branch", 0));
    md_tree_free(t);
    settle();
    t = load(f, "vm1");
    assert_non_null((pk = md_tree_peek(f->store, "vm1", "foreign", 0)));
    peek_agrees(t, pk, "foreign");
    md_tree_free(pk);
    l = md_lock_acquire(f->store, "vm1", 0, &err);
    assert_non_null(l);
    def = md_domain_new("vm1", UUID1, 65536, 1, &err);
    assert_int_equal(md_store_domain_put(f->store, l, def, &err), 0);
    settle();
    md_tree_free(md_tree_load(f->store, "vm1", l, &err));
    /* a journal: the peek reads through it (offline gains a child) */
    if (quick(f, l, def, "late", "offline", UUID1, false) == 1) {
        struct md_tree *w = load(f, "vm1");
        for (size_t i = 0; i < 2; i++) {
            const char *nm = i ? "late" : "offline";
            pk = md_tree_peek(f->store, "vm1", nm, 0);
            assert_true(pk || !fine);
            peek_agrees(w, pk, nm);
            md_tree_free(pk);
        }
        md_tree_free(w);
    }
    md_domain_free(def);
    md_lock_free(l);
    md_tree_free(t);
    free(idx);
    free(dir);
}

/*
 * The quick writers in a random order (redefines, creates, moves of "current", deletes of leaves), each
 * through the index's journal where it can: after every step each snapshot's peek agrees with a model kept
 * here (parent, current, children, descendants, depth), and a whole load with the model's count. Folds now
 * and then (a load under the lock, a tick later).
 */
#define PJ_MAX 64
struct pj_model {
    char name[PJ_MAX][16];
    int parent[PJ_MAX]; /* -1: a root */
    bool alive[PJ_MAX];
    int n, current;     /* current -1: none */
};

static size_t pj_children(const struct pj_model *m, int k)
{
    size_t c = 0;
    for (int i = 0; i < m->n; i++)
        c += m->alive[i] && m->parent[i] == k;
    return c;
}

static size_t pj_descendants(const struct pj_model *m, int k)
{
    size_t c = 0;
    for (int i = 0; i < m->n; i++)
        if (m->alive[i] && m->parent[i] == k)
            c += 1 + pj_descendants(m, i);
    return c;
}

static size_t pj_depth(const struct pj_model *m, int k)
{
    return m->parent[k] < 0 ? 0 : 1 + pj_depth(m, m->parent[k]);
}

/* Every live snapshot peeked; the peeks that read a journal counted into *THROUGH. */
static void pj_check(struct fx *f, const struct pj_model *m, size_t *through)
{
    size_t live = 0, n, parsed;
    bool journal = md_index_journal_records(f->store, "vm1") > 0;

    for (int k = 0; k < m->n; k++) {
        struct md_tree *p;
        const struct md_entry *e;
        if (!m->alive[k])
            continue;
        live++;
        if (!(p = md_tree_peek(f->store, "vm1", m->name[k], 0)))
            continue;
        *through += journal;
        e = md_tree_find(p, m->name[k]);
        assert_non_null(e);
        if (m->parent[k] < 0)
            assert_null(e->parent);
        else
            assert_string_equal(e->parent, m->name[m->parent[k]]);
        assert_int_equal(e->current, k == m->current);
        assert_int_equal(e->nchildren, pj_children(m, k));
        assert_int_equal(md_tree_descendants(p, e), pj_descendants(m, k));
        assert_int_equal(e->depth, pj_depth(m, k));
        md_tree_free(p);
    }
    if (m->current >= 0)
        assert_string_equal(current_name(f), m->name[m->current]);
    else
        assert_string_equal(current_name(f), "-");
    assert_int_not_equal(load_agrees(f, &n, &parsed), MD_LOAD_STAT);
    assert_int_equal(n, live);
}

static void test_peek_journal(void **state)
{
    struct fx *f = *state;
    struct qs_error *err = NULL;
    struct md_lock *l = vm1_defined(f);
    struct md_domain *def = md_store_domain_get(f->store, "vm1", &err);
    struct pj_model m = {.current = -1};
    size_t through = 0, quick_ops = 0;
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    bool fine = fine_stamps(f);

    assert_non_null(def);
    /* a start of four, the long way */
    for (int i = 0; i < 4; i++) {
        struct md_snapshot *s = mk_snap((const char *[]){"r0", "r1", "r2", "r3"}[i], i ? "r0" : NULL,
                                        MD_STATE_SHUTOFF, UUID1);
        snprintf(m.name[i], sizeof(m.name[i]), "r%d", i);
        m.parent[i] = i ? 0 : -1;
        m.alive[i] = true;
        m.n++;
        put_ok(f, l, s);
        md_snapshot_free(s);
    }
    assert_int_equal(md_store_snapshot_set_current(f->store, l, "vm1", "r2", &err), 0);
    m.current = 2;
    settle_load(f, l);

    for (int step = 0; step < 120 && m.n < PJ_MAX; step++) {
        int op, k, tries = 0;
        size_t before = md_index_journal_records(f->store, "vm1");
        bool quick_way;

        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        op = (int)((seed >> 33) % 10);
        do { /* a live snapshot */
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            k = (int)((seed >> 33) % (uint64_t)m.n);
        } while (!m.alive[k] && ++tries < 1000);
        if (op < 3) { /* a redefine under K */
            struct md_snapshot *s;
            snprintf(m.name[m.n], sizeof(m.name[m.n]), "d%d", step);
            s = mk_snap(m.name[m.n], m.name[k], MD_STATE_SHUTOFF, UUID1);
            if (md_store_snapshot_add_quick(f->store, l, "vm1", def, s, &err) != 1)
                put_ok(f, l, s);
            md_snapshot_free(s);
            m.parent[m.n] = k;
            m.alive[m.n++] = true;
        } else if (op < 6) { /* a create: on the current one, current from now on */
            struct md_snapshot *s;
            snprintf(m.name[m.n], sizeof(m.name[m.n]), "c%d", step);
            s = mk_snap(m.name[m.n], m.current >= 0 ? m.name[m.current] : NULL, MD_STATE_SHUTOFF, UUID1);
            s->current = true;
            if (md_store_snapshot_create_quick(f->store, l, "vm1", def, s, 0, &err) == 1) {
                m.parent[m.n] = m.current;
                m.alive[m.n] = true;
                m.current = m.n++;
            }
            md_snapshot_free(s);
        } else if (op < 8) { /* K current */
            assert_int_equal(md_store_snapshot_set_current(f->store, l, "vm1", m.name[k], &err), 0);
            m.current = k;
        } else if (pj_children(&m, k) == 0) { /* K deleted */
            delete_peeked(f, l, m.name[k], &quick_way);
            m.alive[k] = false;
            if (m.current == k)
                m.current = m.parent[k];
        }
        quick_ops += md_index_journal_records(f->store, "vm1") > before;
        pj_check(f, &m, &through);
        if (step % 17 == 16)
            settle_load(f, l);
    }
    /* on a file system whose stamps say what changed, most steps went through the journal */
    if (fine) {
        assert_true(quick_ops > 60);
        assert_true(through > 1000);
    }
    md_domain_free(def);
    md_lock_free(l);
}

/* Writers given the caller's tree work on it and keep it in step, so that it goes from one writer to the
 * next with the index fresh; once something else changed the directory, a writer loads its own and leaves
 * the caller's (stale) tree alone. */
static void test_writer_tree(void **state)
{
    struct fx *f = *state;
    struct qs_error *err = NULL;
    struct md_lock *l = vm1_defined(f);
    struct md_snapshot *s;
    struct md_tree *t;
    char *dir = snapdir(f, "vm1");

    s = mk_snap("a", NULL, MD_STATE_RUNNING, UUID1);
    s->current = true;
    put_ok(f, l, s);
    md_snapshot_free(s);
    md_tree_free(load(f, "vm1"));
    settle();
    t = md_tree_load(f->store, "vm1", l, &err);
    assert_non_null(t);

    s = mk_snap("b", "a", MD_STATE_RUNNING, UUID1);
    s->current = true;
    assert_int_equal(md_store_snapshot_put_tree(f->store, l, "vm1", t, NULL, s, MD_PUT_NO_REPLACE, &err), 0);
    md_snapshot_free(s);
    assert_int_equal(md_tree_count(t), 2);
    assert_string_equal(md_tree_current(t)->name, "b");
    assert_string_equal(md_tree_find(t, "a")->file, "a.xml");
    assert_int_equal(md_tree_find(t, "a")->nchildren, 1);
    ASSERT_FRESH(f, 2);

    settle();
    assert_int_equal(md_store_snapshot_set_current_tree(f->store, l, "vm1", t, "a", &err), 0);
    assert_string_equal(md_tree_current(t)->name, "a");
    ASSERT_FRESH(f, 2);
    settle();
    assert_int_equal(md_store_snapshot_delete_tree(f->store, l, "vm1", t, "b", 0, &err), 0);
    assert_int_equal(md_tree_count(t), 1);
    assert_null(md_tree_find(t, "b"));
    ASSERT_FRESH(f, 1);

    /* a snapshot file from elsewhere (libvirt's, say) after the tree was loaded */
    write_foreign(dir, "a", "z");
    settle();
    s = mk_snap("c", "a", MD_STATE_RUNNING, UUID1);
    assert_int_equal(md_store_snapshot_put_tree(f->store, l, "vm1", t, NULL, s, MD_PUT_NO_REPLACE, &err), 0);
    md_snapshot_free(s);
    /* the writer's own tree had z: the index it wrote knows all three */
    ASSERT_FRESH(f, 3);
    md_tree_free(load(f, "vm1"));
    assert_int_equal(md_tree_count(t), 1);
    assert_null(md_tree_find(t, "c"));
    md_tree_free(t);

    free(dir);
    md_lock_free(l);
}

static char *intent_text(struct fx *f)
{
    struct qs_error *err = NULL;
    char *text = NULL;
    if (md_store_intent_get(f->store, "vm1", &text, &err) < 0)
        fail_msg("intent get: %s", err->message);
    return text;
}

#define ASSERT_INTENT(f, want)                                                                                     \
    do {                                                                                                           \
        char *got_ = intent_text(f);                                                                               \
        if ((want) == NULL)                                                                                        \
            assert_null(got_);                                                                                     \
        else                                                                                                       \
            assert_string_equal(got_, (want));                                                                     \
        free(got_);                                                                                                \
    } while (0)

/* The intent record: written in place, a chain of frames; what a crash leaves of a frame is told apart. */
static void test_intent_frames(void **state)
{
    struct fx *f = *state;
    struct qs_error *err = NULL;
    struct md_lock *l = md_lock_acquire(f->store, "vm1", 0, &err);
    char *path = qs_asprintf("%s/snapshot/vm1/.qsnap-intent", f->root), *data, *big;
    size_t len, len1;
    struct stat st1, st2;

    ASSERT_INTENT(f, NULL);
    assert_int_equal(md_store_intent_clear(f->store, l, "vm1", &err), 0); /* nothing to clear: fine */
    assert_int_equal(md_store_intent_put(f->store, l, "vm1", "first\n", &err), 0);
    ASSERT_INTENT(f, "first\n");
    assert_mode(path, 0600);
    assert_int_equal(md_store_intent_put(f->store, l, "vm1", "second, longer\n", &err), 0);
    ASSERT_INTENT(f, "second, longer\n");
    assert_int_equal(stat(path, &st1), 0);
    assert_int_equal(md_store_intent_clear(f->store, l, "vm1", &err), 0);
    ASSERT_INTENT(f, NULL);

    /* the file stays and is written in place: same inode, never shorter */
    assert_int_equal(md_store_intent_put(f->store, l, "vm1", "x\n", &err), 0);
    assert_int_equal(stat(path, &st2), 0);
    assert_int_equal(st1.st_ino, st2.st_ino);
    assert_true(st2.st_size >= st1.st_size);
    ASSERT_INTENT(f, "x\n");

    /* an update cut short by a crash (its frame torn): the record before it counts */
    data = t_read(path, &len1);
    free(data);
    assert_int_equal(md_store_intent_put(f->store, l, "vm1", "update that will be torn\n", &err), 0);
    data = t_read(path, &len);
    {
        /* damage the last byte of the update's text: its hash fails */
        int fd = open(path, O_WRONLY);
        char c = 'Z';
        off_t at;
        const char *p = memmem(data, len, "torn\n", 5);
        assert_non_null(p);
        at = (off_t)(p - data);
        assert_int_equal(pwrite(fd, &c, 1, at), 1);
        close(fd);
    }
    free(data);
    ASSERT_INTENT(f, "x\n");
    /* the next update goes where the torn one was */
    assert_int_equal(md_store_intent_put(f->store, l, "vm1", "update again\n", &err), 0);
    ASSERT_INTENT(f, "update again\n");

    /* a first frame cut short: no record (the operation had not begun) */
    assert_int_equal(md_store_intent_clear(f->store, l, "vm1", &err), 0);
    assert_int_equal(md_store_intent_put(f->store, l, "vm1", "begun?\n", &err), 0);
    {
        int fd = open(path, O_WRONLY);
        assert_int_equal(pwrite(fd, "?", 1, 30), 1);
        close(fd);
    }
    ASSERT_INTENT(f, NULL);

    /* frames of an earlier, longer chain further in the file never continue a new one: same lengths */
    big = qs_asprintf("%0512d\n", 7);
    assert_int_equal(md_store_intent_put(f->store, l, "vm1", big, &err), 0);
    assert_int_equal(md_store_intent_put(f->store, l, "vm1", "old update\n", &err), 0);
    assert_int_equal(md_store_intent_clear(f->store, l, "vm1", &err), 0);
    assert_int_equal(md_store_intent_put(f->store, l, "vm1", big, &err), 0);
    ASSERT_INTENT(f, big);
    free(big);

    /* a record qsnap wrote before (a whole text file) is read as it is, and cleared */
    assert_int_equal(unlink(path), 0);
    t_write(path, "qsnap-intent 1\nop create\nend\n", 30);
    ASSERT_INTENT(f, "qsnap-intent 1\nop create\nend\n");
    assert_int_equal(md_store_intent_clear(f->store, l, "vm1", &err), 0);
    ASSERT_INTENT(f, NULL);

    /* written unsynced: the same chain, readable at once (another process sees the page cache), synced later */
    assert_int_equal(md_store_intent_write(f->store, l, "vm1", "begun, unsynced\n", MD_INTENT_NOSYNC, &err), 0);
    ASSERT_INTENT(f, "begun, unsynced\n");
    assert_int_equal(md_store_intent_write(f->store, l, "vm1", "loaded\n", MD_INTENT_NOSYNC, &err), 0);
    ASSERT_INTENT(f, "loaded\n");
    assert_int_equal(md_store_intent_sync(f->store, l, "vm1", &err), 0);
    ASSERT_INTENT(f, "loaded\n");
    assert_int_equal(md_store_intent_clear(f->store, l, "vm1", &err), 0);
    ASSERT_INTENT(f, NULL);
    /* the first record of a domain creates the file: synced (with its name) whatever the flags */
    assert_int_equal(unlink(path), 0);
    assert_int_equal(md_store_intent_write(f->store, l, "vm1", "new file\n", MD_INTENT_NOSYNC, &err), 0);
    ASSERT_INTENT(f, "new file\n");
    assert_int_equal(md_store_intent_clear(f->store, l, "vm1", &err), 0);

    /* without the lock: refused */
    assert_int_equal(md_store_intent_put(f->store, NULL, "vm1", "x", &err), -1);
    qs_error_clear(&err);
    assert_int_equal(md_store_intent_write(f->store, NULL, "vm1", "x", MD_INTENT_NOSYNC, &err), -1);
    qs_error_clear(&err);
    assert_int_equal(md_store_intent_sync(f->store, NULL, "vm1", &err), -1);
    qs_error_clear(&err);
    free(path);
    md_lock_free(l);
}

static void test_bad_dirs(void **state)
{
    struct fx *f = *state;
    char *dir;

    copy_libvirt_dir(f, "vm1");
    dir = snapdir(f, "vm1");

    edit(f, "offline.xml", "<active>0</active>", "<active>1</active>");
    expect_load_fail(f, QS_ERR_INVALID, "too many snapshots claiming to be current for domain 'vm1'");
    edit(f, "offline.xml", "<active>1</active>", "<active>0</active>");

    edit(f, "Branch.xml", "<name>before-upgrade</name>", "<name>gone</name>");
    expect_load_fail(f, QS_ERR_INVALID, "parent 'gone' of snapshot 'Branch' not found");
    edit(f, "Branch.xml", "<name>gone</name>", "<name>before-upgrade</name>");

    /* before-upgrade -> offline -> disk-only; make before-upgrade's parent disk-only */
    edit(f, "before-upgrade.xml", "  <state>running</state>\n",
         "  <state>running</state>\n  <parent>\n    <name>disk-only</name>\n  </parent>\n");
    expect_load_fail(f, QS_ERR_INVALID, "creates a cycle");
    edit(f, "before-upgrade.xml", "  <parent>\n    <name>disk-only</name>\n  </parent>\n", "");

    edit(f, "Branch.xml", "<name>Branch</name>", "<name>offline</name>");
    expect_load_fail(f, QS_ERR_INVALID, "snapshot 'offline' of domain 'vm1' is defined twice");
    edit(f, "Branch.xml", "<name>offline</name>", "<name>Bad/Name</name>");
    expect_load_fail(f, QS_ERR_INVALID, "must not contain '/'");
    edit(f, "Branch.xml", "<name>Bad/Name</name>", "<name>Branch</name>");

    edit(f, "disk-only.xml", "</domainsnapshot>", "</domainsnapshot");
    expect_load_fail(f, QS_ERR_INVALID, "snapshot file 'disk-only.xml' of domain 'vm1': cannot parse snapshot XML");
    edit(f, "disk-only.xml", "</domainsnapshot", "</domainsnapshot>");

    {
        char *p = qs_asprintf("%s/huge.xml", dir);
        int fd = open(p, O_CREAT | O_WRONLY, 0600);
        assert_true(fd >= 0);
        assert_int_equal(ftruncate(fd, MD_FILE_MAX + 1), 0);
        close(fd);
        age_file(p, 3600);
        expect_load_fail(f, QS_ERR_TOOBIG, "'huge.xml' is larger than");
        unlink(p);
        free(p);
    }

    /* repaired: loads again */
    md_tree_free(load(f, "vm1"));
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_root_resolve),
        cmocka_unit_test_setup_teardown(test_domains, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock_busy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_libvirt_dir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_filters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_index_staleness, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_and_current, setup, teardown),
        cmocka_unit_test_setup_teardown(test_index_writers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_index_aux, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_tree, setup, teardown),
        cmocka_unit_test_setup_teardown(test_quick_add, setup, teardown),
        cmocka_unit_test_setup_teardown(test_peek, setup, teardown),
        cmocka_unit_test_setup_teardown(test_peek_journal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_quick_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_quick_current, setup, teardown),
        cmocka_unit_test_setup_teardown(test_intent_frames, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_dirs, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
