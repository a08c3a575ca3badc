/* files.c: which image files a domain's state needs, and which an operation left unneeded. */
#include "files.h"
#include "img.h"
#include "qargv.h"
#include "qs_util.h"

#include <dirent.h>
#include <errno.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static bool has(char *const *v, const char *s)
{
    for (size_t i = 0; v && v[i]; i++)
        if (strcmp(v[i], s) == 0)
            return true;
    return false;
}

static void push(char ***v, size_t *n, const char *s)
{
    *v = qs_xrealloc(*v, (*n + 2) * sizeof(char *));
    (*v)[(*n)++] = qs_xstrdup(s);
    (*v)[*n] = NULL;
}

/* Adds FILE's chain to *V, stopping where it joins files already there (their chains are in already). */
static void add_chain(char ***v, size_t *n, const char *file)
{
    char *cur = qargv_path_abs(file, NULL);

    for (int depth = 0; cur && depth < 256 && !has(*v, cur); depth++) {
        char *b = NULL;
        push(v, n, cur);
        if (img_qcow2_backing(cur, &b, NULL) < 0 || !b) {
            free(b);
            break;
        }
        free(cur);
        cur = qargv_path_abs(b, NULL);
        free(b);
    }
    free(cur);
}

char **files_chain(const char *file)
{
    char **v = qs_xcalloc(1, sizeof(char *));
    size_t n = 0;

    add_chain(&v, &n, file);
    return v;
}

char *files_snapshot_image(const struct md_snapshot *snap, const char *target)
{
    struct md_domain *sd;
    char *r = NULL;

    if (!snap->domain_xml || !(sd = md_domain_parse(snap->domain_xml, strlen(snap->domain_xml), NULL)))
        return NULL;
    for (size_t k = 0; k < md_domain_disk_count(sd) && !r; k++) {
        struct md_domain_disk d;
        if (md_domain_disk_get(sd, k, &d, NULL) == 0 && qs_str_equal(d.target, target) && d.source)
            r = qargv_path_abs(d.source, md_domain_cwd(sd));
    }
    md_domain_free(sd);
    return r;
}

/* The source disk TARGET has in domain XML (a snapshot's <domain>), or NULL. Caller frees. */
static char *source_in(const struct md_domain *d, const char *target)
{
    for (size_t k = 0; d && k < md_domain_disk_count(d); k++) {
        struct md_domain_disk dd;
        if (md_domain_disk_get(d, k, &dd, NULL) == 0 && qs_str_equal(dd.target, target) && dd.source)
            return qs_xstrdup(dd.source);
    }
    return NULL;
}

/* Calls FN for every image in the disk chains of every defined domain but DOMAIN (a linked clone's overlays
 * sit on its source's images: they are needed as long as the clone is defined). */
static void others_each(struct engine *e, const char *domain, void (*fn)(void *opaque, const char *dom,
                                                                          const char *file), void *opaque)
{
    char **names = NULL;

    if (md_store_domain_list(e->store, &names, NULL) < 0)
        return;
    for (size_t i = 0; names[i]; i++) {
        struct md_domain *o;
        if (strcmp(names[i], domain) == 0 || !(o = md_store_domain_get(e->store, names[i], NULL)))
            continue;
        for (size_t k = 0; k < md_domain_disk_count(o); k++) {
            struct md_domain_disk d;
            char **chain;
            if (md_domain_disk_get(o, k, &d, NULL) < 0 || !d.source || !qs_str_equal(d.device, "disk"))
                continue;
            chain = files_chain(d.source);
            for (size_t j = 0; chain[j]; j++)
                fn(opaque, names[i], chain[j]);
            qs_strv_free(chain);
        }
        md_domain_free(o);
    }
    qs_strv_free(names);
}

struct chain_acc {
    char ***v;
    size_t *n;
    const char *file; /* files_users: the file looked for */
};

static void add_other(void *opaque, const char *dom, const char *file)
{
    struct chain_acc *a = opaque;
    (void)dom;
    if (!has(*a->v, file))
        push(a->v, a->n, file);
}

static void add_user(void *opaque, const char *dom, const char *file)
{
    struct chain_acc *a = opaque;
    if (strcmp(file, a->file) == 0 && !has(*a->v, dom))
        push(a->v, a->n, dom);
}

char **files_users(struct engine *e, const char *domain, const char *file)
{
    char **v = qs_xcalloc(1, sizeof(char *));
    size_t n = 0;
    struct chain_acc a = {&v, &n, file};

    others_each(e, domain, add_user, &a);
    return v;
}

int files_needed(struct engine *e, const char *domain, const struct md_lock *lock, const struct md_domain *dom,
                 const char *except, char ***out, struct qs_error **err)
{
    struct md_tree *t = md_tree_load(e->store, domain, lock, err);
    const struct md_entry **all = NULL;
    char **v = qs_xcalloc(1, sizeof(char *));
    size_t n = 0, count = 0;
    int ret = -1;

    if (!t)
        goto out;
    for (size_t k = 0; k < md_domain_disk_count(dom); k++) {
        struct md_domain_disk d;
        if (md_domain_disk_get(dom, k, &d, NULL) == 0 && d.source && qs_str_equal(d.device, "disk"))
            add_chain(&v, &n, d.source);
    }
    {
        struct chain_acc a = {&v, &n, NULL};
        others_each(e, domain, add_other, &a);
    }
    if (md_tree_list(t, NULL, MD_LIST_TOPOLOGICAL, &all, &count, err) < 0)
        goto out;
    for (size_t i = 0; i < count; i++) {
        struct md_snapshot *s;
        struct md_domain *sd = NULL;
        if (except && strcmp(all[i]->name, except) == 0)
            continue;
        if (!(s = md_store_snapshot_get(e->store, domain, all[i]->name, err)))
            goto out;
        if (s->domain_xml)
            sd = md_domain_parse(s->domain_xml, strlen(s->domain_xml), NULL);
        for (size_t j = 0; j < s->ndisks; j++) {
            const struct md_snapshot_disk *x = &s->disks[j];
            char *img = NULL;
            if (x->snapshot == MD_LOCATION_EXTERNAL) {
                img = source_in(sd, x->name);
                /* without its <domain> the frozen image is unknown: the overlay at least stays */
                if (!img && x->source)
                    img = qs_xstrdup(x->source);
            } else if (x->snapshot == MD_LOCATION_INTERNAL) {
                if (!(img = source_in(sd, x->name)))
                    img = source_in(dom, x->name);
            }
            if (img)
                add_chain(&v, &n, img);
            free(img);
        }
        md_domain_free(sd);
        md_snapshot_free(s);
    }
    *out = v;
    v = NULL;
    ret = 0;
out:
    free(all);
    md_tree_free(t);
    qs_strv_free(v);
    return ret;
}

char **files_children(char *const *needed, const char *file)
{
    char **v = qs_xcalloc(1, sizeof(char *));
    size_t n = 0;

    for (size_t i = 0; needed && needed[i]; i++) {
        char *b = NULL, *cb;
        if (img_qcow2_backing(needed[i], &b, NULL) < 0 || !b) {
            free(b);
            continue;
        }
        cb = qargv_path_abs(b, NULL);
        if (strcmp(cb, file) == 0)
            push(&v, &n, needed[i]);
        free(cb);
        free(b);
    }
    return v;
}

bool files_has_child(char *const *needed, const char *file)
{
    char **c = files_children(needed, file);
    bool r = c[0] != NULL;

    qs_strv_free(c);
    return r;
}

char *files_dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return qs_xstrdup(".");
    return slash == path ? qs_xstrdup("/") : qs_xstrndup(path, (size_t)(slash - path));
}

char **files_dependents(char *const *dirs, const char *target)
{
    char **v = qs_xcalloc(1, sizeof(char *));
    size_t n = 0;

    for (size_t i = 0; dirs && dirs[i]; i++) {
        DIR *d = opendir(dirs[i]);
        struct dirent *de;
        if (!d)
            continue;
        while ((de = readdir(d))) {
            char *path, *backing = NULL, *cb;
            struct stat st;
            if (de->d_name[0] == '.' && (!de->d_name[1] || (de->d_name[1] == '.' && !de->d_name[2])))
                continue;
            path = qs_asprintf("%s/%s", dirs[i], de->d_name);
            if (stat(path, &st) < 0 || !S_ISREG(st.st_mode) || img_qcow2_backing(path, &backing, NULL) < 0 ||
                !backing) {
                free(path);
                continue;
            }
            cb = qargv_path_abs(backing, NULL);
            if (strcmp(cb, target) == 0) {
                char *cp = qargv_path_abs(path, NULL);
                if (!has(v, cp))
                    push(&v, &n, cp);
                free(cp);
            }
            free(cb);
            free(backing);
            free(path);
        }
        closedir(d);
    }
    return v;
}

char **files_dirs(char *const *a, char *const *b, char *const *c)
{
    char *const *lists[] = {a, b, c};
    char **v = qs_xcalloc(1, sizeof(char *));
    size_t n = 0;

    for (size_t l = 0; l < 3; l++)
        for (size_t i = 0; lists[l] && lists[l][i]; i++) {
            char *d = files_dir_of(lists[l][i]);
            if (!has(v, d))
                push(&v, &n, d);
            free(d);
        }
    return v;
}

char **files_garbage(char *const *before, char *const *extra, char *const *after, char *const *keep)
{
    char **v = qs_xcalloc(1, sizeof(char *)), **dirs = files_dirs(before, extra, after);
    size_t n = 0;
    bool changed = true;

    for (int pass = 0; pass < 2; pass++) {
        char *const *src = pass == 0 ? before : extra;
        for (size_t i = 0; src && src[i]; i++) {
            char *f = qargv_path_abs(src[i], NULL), *b = NULL;
            /* only an overlay (a qcow2 with a backing file) may go: a base image is the user's own */
            if (!has(after, f) && !has(keep, f) && !has(v, f) && img_qcow2_backing(f, &b, NULL) == 0 && b)
                push(&v, &n, f);
            free(b);
            free(f);
        }
    }
    /* a file something else reads (an overlay made by hand on it) stays, and so does what it is built on */
    while (changed) {
        changed = false;
        for (size_t i = 0; i < n && !changed; i++) {
            char **deps = files_dependents(dirs, v[i]);
            bool outside = false;
            for (size_t k = 0; deps[k] && !outside; k++)
                outside = !has(v, deps[k]);
            qs_strv_free(deps);
            if (outside) {
                free(v[i]);
                memmove(&v[i], &v[i + 1], (n - i) * sizeof(char *));
                n--;
                changed = true;
            }
        }
    }
    qs_strv_free(dirs);
    return v;
}

void files_remove(char *const *files)
{
    for (size_t i = 0; files && files[i]; i++)
        if (unlink(files[i]) < 0 && errno != ENOENT) {
            /* best effort: snapshot-check reports what stays */
        }
}

int files_forget(struct engine *e, const struct md_lock *lock, struct md_domain *dom, char *const *files,
                 struct qs_error **err)
{
    bool changed = false;

    for (size_t i = 0; files && files[i]; i++) {
        if (!md_domain_made(dom, files[i]) || access(files[i], F_OK) == 0)
            continue;
        if (md_domain_set_made(dom, files[i], false, err) < 0)
            return -1;
        changed = true;
    }
    return changed ? md_store_domain_put(e->store, lock, dom, err) : 0;
}

bool files_made_top(const struct md_domain *dom)
{
    for (size_t k = 0; k < md_domain_disk_count(dom); k++) {
        struct md_domain_disk d;
        if (md_domain_disk_get(dom, k, &d, NULL) == 0 && d.source && md_domain_made(dom, d.source))
            return true;
    }
    return false;
}
