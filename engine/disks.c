/* disks.c: a domain's disks in a running QEMU - found by image and device after every restart, described
 * with libvirt's names and buses at attach. */
#include "disks.h"
#include "nvram.h"
#include "qargv.h"
#include "qs_util.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The image path inside a "json:{...}" name (its innermost "filename"), else NULL. Caller frees. */
static char *json_filename(const char *name)
{
    struct qmp_reply *r;
    const struct qmp_value *v;
    char *out = NULL;

    if (!qs_str_has_prefix(name, "json:") || !(r = qmp_reply_parse(name + 5, NULL)))
        return NULL;
    for (v = qmp_reply_value(r); v && !out; v = qmp_value_get(v, "file")) {
        const char *f = qmp_value_get_string(v, "filename");
        if (f && qmp_value_type(qmp_value_get(v, "file")) != QMP_OBJECT)
            out = qs_xstrdup(f);
    }
    qmp_reply_free(r);
    return out;
}

char *disk_image_name(const char *name, const char *cwd)
{
    char *inner, *abs;

    if (!name || !*name)
        return NULL;
    if (!qs_str_has_prefix(name, "json:"))
        return qargv_path_abs(name, cwd);
    if (!(inner = json_filename(name)))
        return NULL;
    abs = qargv_path_abs(inner, cwd);
    free(inner);
    return abs;
}

/* The absolute image of block B (relative names taken against CWD), or NULL when QEMU does not say. */
static char *block_image(const struct vm_block *b, const char *cwd)
{
    return disk_image_name(b->file, cwd);
}

static const struct vm_block *block_find(const struct vm_block *b, size_t n, const struct md_domain *dom,
                                         const struct md_domain_disk *d, bool strict, struct qs_error **err)
{
    const char *cwd = md_domain_cwd(dom);
    char *src = d->source ? qargv_path_abs(d->source, NULL) : NULL, *img = NULL;
    const struct vm_block *hit = NULL;

    /* the image first: it is what the snapshot is of, whatever the device is called today */
    for (size_t i = 0; src && i < n && !hit; i++) {
        char *f = block_image(&b[i], cwd);
        if (f && strcmp(f, src) == 0)
            hit = &b[i];
        free(f);
    }
    if (hit)
        goto out;
    for (size_t i = 0; i < n && !hit; i++) {
        if (d->qdev ? qs_str_equal(b[i].qdev, d->qdev)
            : d->drive ? qs_str_equal(b[i].drive, d->drive)
            : (d->node_name && d->node_name[0] != '#' && qs_str_equal(b[i].node, d->node_name)) ||
                  qs_str_equal(b[i].device, d->target))
            hit = &b[i];
    }
    if (!hit) {
        qs_error_set(err, QS_ERR_NOTFOUND, "disk '%s'%s%s%s is not attached to the running QEMU of domain '%s'",
                     d->target, src ? " (image '" : "", src ? src : "", src ? "')" : "", md_domain_name(dom));
        goto out;
    }
    if (strict && src && (img = block_image(hit, cwd)) && strcmp(img, src) != 0) {
        qs_error_set(err, QS_ERR_STATE,
                     "disk '%s': the running QEMU of domain '%s' has image '%s' where the domain has '%s' (QEMU was "
                     "started on other images: start it with 'qsnap start', or record what runs with 'qsnap "
                     "attach --update')",
                     d->target, md_domain_name(dom), img, src);
        hit = NULL;
    }
out:
    free(img);
    free(src);
    return hit;
}

const struct vm_block *disk_block(const struct vm_block *b, size_t n, const struct md_domain *dom,
                                  const struct md_domain_disk *d, struct qs_error **err)
{
    return block_find(b, n, dom, d, true, err);
}

char *disk_block_image(const struct vm_block *b, const struct md_domain *dom)
{
    return block_image(b, md_domain_cwd(dom));
}

const struct vm_block *disk_block_device(const struct vm_block *b, size_t n, const struct md_domain *dom,
                                         const struct md_domain_disk *d, struct qs_error **err)
{
    return block_find(b, n, dom, d, false, err);
}

void disk_descs_free(struct disk_desc *v, size_t n)
{
    for (size_t i = 0; v && i < n; i++) {
        free(v[i].target);
        free(v[i].bus);
        free(v[i].source);
        free(v[i].format);
        free(v[i].qdev);
        free(v[i].drive);
        free(v[i].node);
        free(v[i].arg);
    }
    free(v);
}

/* ---- relative image paths ---- */

/* The files process PID has open: their paths (readlink of /proc/PID/fd/N). NULL when unreadable. */
static char **open_files(pid_t pid)
{
    char dir[64];
    DIR *d;
    struct dirent *de;
    char **v = NULL;
    size_t n = 0;

    snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
    if (!(d = opendir(dir)))
        return NULL;
    v = qs_xcalloc(1, sizeof(char *));
    while ((de = readdir(d))) {
        char link[320], target[PATH_MAX];
        ssize_t len;
        if (de->d_name[0] == '.')
            continue;
        snprintf(link, sizeof(link), "%s/%s", dir, de->d_name);
        if ((len = readlink(link, target, sizeof(target) - 1)) <= 0 || target[0] != '/')
            continue;
        target[len] = '\0';
        v = qs_xrealloc(v, (n + 2) * sizeof(char *));
        v[n++] = qs_xstrdup(target);
        v[n] = NULL;
    }
    closedir(d);
    return v;
}

/*
 * The absolute path of image FILE that QEMU (PID, working directory PROC_CWD) opened by a relative name.
 * -daemonize moves QEMU to "/" after it opened its images: then the image is the one among its open files
 * whose path ends in FILE, and *start_cwd (when still NULL) gets the directory QEMU was started in.
 */
static char *relative_image(const char *file, const char *proc_cwd, char *const *open, char **start_cwd)
{
    char *cand = proc_cwd ? qargv_path_abs(file, proc_cwd) : NULL, *found = NULL, *tail;
    bool dots = strstr(file, "..") != NULL;

    if (cand && access(cand, F_OK) == 0 && (!open || qs_strv_has(open, cand))) {
        if (!*start_cwd)
            *start_cwd = qs_xstrdup(proc_cwd);
        return cand;
    }
    free(cand);
    tail = qs_asprintf("/%s", qs_str_has_prefix(file, "./") ? file + 2 : file);
    for (size_t i = 0; open && open[i] && !dots; i++) {
        if (!qs_str_has_suffix(open[i], tail))
            continue;
        if (found && strcmp(found, open[i]) != 0) {
            free(found); /* two candidates: which one QEMU meant cannot be told */
            found = NULL;
            break;
        }
        if (!found)
            found = qs_xstrdup(open[i]);
    }
    if (found && !*start_cwd)
        *start_cwd = qs_xstrndup(found, strlen(found) - strlen(tail));
    free(tail);
    return found;
}

/* ---- libvirt's names and buses ---- */

static char *qom_string(struct qmp_client *c, const char *path, const char *prop)
{
    struct qmp_args *a = qmp_args_new();
    struct qmp_reply *r = NULL;
    char *out = NULL;

    qmp_args_set_str(a, "path", path);
    qmp_args_set_str(a, "property", prop);
    if (qmp_client_execute(c, "qom-get", a, &r, NULL) == 0 && qmp_value_string(qmp_reply_value(r)))
        out = qs_xstrdup(qmp_value_string(qmp_reply_value(r)));
    qmp_reply_free(r);
    qmp_args_free(a);
    return out;
}

static int64_t qom_int(struct qmp_client *c, const char *path, const char *prop)
{
    struct qmp_args *a = qmp_args_new();
    struct qmp_reply *r = NULL;
    int64_t v = -1;

    qmp_args_set_str(a, "path", path);
    qmp_args_set_str(a, "property", prop);
    if (qmp_client_execute(c, "qom-get", a, &r, NULL) < 0 || !qmp_value_int(qmp_reply_value(r), &v))
        v = -1;
    qmp_reply_free(r);
    qmp_args_free(a);
    return v;
}

/* The QOM path of the guest device query-block calls QDEV: an id is under /machine/peripheral; virtio-blk's
 * backend sits one level under its PCI device. Caller frees. */
static char *device_path(const char *qdev)
{
    char *p;
    size_t len;

    if (!qdev || !*qdev)
        return NULL;
    p = qdev[0] == '/' ? qs_xstrdup(qdev) : qs_asprintf("/machine/peripheral/%s", qdev);
    len = strlen(p);
    if (len > 15 && strcmp(p + len - 15, "/virtio-backend") == 0)
        p[len - 15] = '\0';
    return p;
}

struct naming {
    const char *bus;    /* libvirt's bus */
    const char *prefix; /* "vd", "sd", "hd", "fd" */
    int index;          /* IDE: 2 * bus + unit (hda = 0); -1 when any free name will do */
};

static struct naming device_naming(struct qmp_client *c, const char *qdev)
{
    struct naming nm = {"virtio", "vd", -1};
    char *path = device_path(qdev), *type = path ? qom_string(c, path, "type") : NULL;

    if (!type)
        goto out;
    if (qs_str_has_prefix(type, "virtio-blk")) {
        nm = (struct naming){"virtio", "vd", -1};
    } else if (qs_str_has_prefix(type, "scsi-")) {
        nm = (struct naming){"scsi", "sd", -1};
    } else if (qs_str_has_prefix(type, "usb-")) {
        nm = (struct naming){"usb", "sd", -1};
    } else if (strcmp(type, "floppy") == 0) {
        nm = (struct naming){"fdc", "fd", -1};
    } else if (qs_str_has_prefix(type, "ide-")) {
        /* the controller decides: AHCI (q35's, or -device ahci) is SATA, PIIX is IDE */
        char *bus = qom_string(c, path, "parent_bus"), *slash = bus ? strrchr(bus, '/') : NULL, *ctl = NULL;
        if (slash) {
            char *ctrl_path = qs_xstrndup(bus, (size_t)(slash - bus));
            ctl = qom_string(c, ctrl_path, "type");
            free(ctrl_path);
        }
        if (ctl && strstr(ctl, "ahci")) {
            nm = (struct naming){"sata", "sd", -1};
        } else {
            const char *dot = bus ? strrchr(bus, '.') : NULL;
            int64_t unit = qom_int(c, path, "unit");
            long busno = dot ? strtol(dot + 1, NULL, 10) : -1;
            nm = (struct naming){"ide", "hd", busno >= 0 && busno < 2 && unit >= 0 && unit < 2
                                                  ? (int)(2 * busno + unit) : -1};
        }
        free(ctl);
        free(bus);
    }
out:
    free(type);
    free(path);
    return nm;
}

/* libvirt's disk name number I with PREFIX: a..z, then aa..zz. Caller frees. */
static char *disk_name(const char *prefix, int i)
{
    if (i < 26)
        return qs_asprintf("%s%c", prefix, 'a' + i);
    return qs_asprintf("%s%c%c", prefix, 'a' + (i / 26 - 1), 'a' + i % 26);
}

/* A name of the form PREFIX + letters (what libvirt parses as a disk name), for the honoured device ids. */
static bool is_disk_name(const char *s, const char *prefix)
{
    size_t pl = strlen(prefix);
    if (!s || strncmp(s, prefix, pl) != 0 || !s[pl] || strlen(s + pl) > 2)
        return false;
    for (const char *p = s + pl; *p; p++)
        if (*p < 'a' || *p > 'z')
            return false;
    return true;
}

static bool name_taken(const struct disk_desc *v, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (qs_str_equal(v[i].target, name))
            return true;
    return false;
}

int disk_describe(struct qmp_client *c, pid_t pid, char *const *argv, const struct vm_block *b, size_t nb,
                  struct disk_desc **out, size_t *n, char **cwd, struct qs_error **err)
{
    struct disk_desc *v = qs_xcalloc(nb + 1, sizeof(*v));
    struct naming *nm = qs_xcalloc(nb + 1, sizeof(*nm));
    char *proc_cwd = NULL, *start_cwd = NULL, **open = NULL;
    size_t k = 0;
    int ret = -1;

    if (pid > 0) {
        char link[64], target[PATH_MAX];
        ssize_t len;
        snprintf(link, sizeof(link), "/proc/%d/cwd", (int)pid);
        if ((len = readlink(link, target, sizeof(target) - 1)) > 0) {
            target[len] = '\0';
            proc_cwd = qs_xstrdup(target);
        }
        open = open_files(pid);
    }
    for (size_t i = 0; i < nb; i++) {
        const struct vm_block *bl = &b[i];
        char *file = NULL;
        if (bl->readonly || nvram_is_pflash(c, bl))
            continue; /* a CD-ROM or a read-only image holds no snapshot; UEFI's pflash is firmware */
        file = qs_str_has_prefix(bl->file, "json:") ? json_filename(bl->file) : qs_xstrdup(bl->file);
        if (!file) {
            qs_error_set(err, QS_ERR_UNSUPPORTED, "disk '%s': QEMU names its image '%s', which is not a file",
                         bl->device, bl->file);
            goto out;
        }
        if (file[0] == '/') {
            v[k].source = qargv_path_abs(file, NULL);
        } else if (strstr(file, "://")) {
            qs_error_set(err, QS_ERR_UNSUPPORTED, "disk '%s': image '%s' is not a local file", bl->device, file);
            free(file);
            goto out;
        } else if (!(v[k].source = relative_image(file, proc_cwd, open, &start_cwd))) {
            qs_error_set(err, QS_ERR_UNSUPPORTED,
                         "disk '%s': QEMU opened image '%s' by a relative path, and the directory it is relative to "
                         "cannot be known (QEMU's working directory is '%s'%s): start QEMU with absolute image paths",
                         bl->device, file, proc_cwd ? proc_cwd : "unknown",
                         qs_str_equal(proc_cwd, "/") ? ", as -daemonize leaves it" : "");
            free(file);
            goto out;
        }
        free(file);
        v[k].format = qs_xstrdup(bl->format);
        v[k].qdev = bl->qdev ? qs_xstrdup(bl->qdev) : NULL;
        v[k].drive = bl->drive ? qs_xstrdup(bl->drive) : NULL;
        v[k].node = bl->node && bl->node[0] != '#' ? qs_xstrdup(bl->node) : NULL;
        nm[k] = device_naming(c, bl->qdev);
        v[k].bus = qs_xstrdup(nm[k].bus);
        /* a device id that already is a libvirt name of its bus is kept */
        if (bl->qdev && !strchr(bl->qdev, '/') && is_disk_name(bl->qdev, nm[k].prefix) &&
            !name_taken(v, k, bl->qdev))
            v[k].target = qs_xstrdup(bl->qdev);
        else if (bl->device && is_disk_name(bl->device, nm[k].prefix) && !name_taken(v, k, bl->device) &&
                 bl->qdev && qs_str_has_prefix(bl->qdev, "/machine/peripheral/"))
            v[k].target = qs_xstrdup(bl->device);
        k++;
    }
    if (!start_cwd && proc_cwd)
        start_cwd = qs_xstrdup(proc_cwd);
    /* IDE disks by their place (hda is bus 0 unit 0), then the others in QEMU's order */
    for (size_t i = 0; i < k; i++) {
        if (v[i].target || nm[i].index < 0)
            continue;
        char *name = disk_name(nm[i].prefix, nm[i].index);
        if (!name_taken(v, k, name))
            v[i].target = name;
        else
            free(name);
    }
    for (size_t i = 0; i < k; i++) {
        for (int j = 0; !v[i].target && j < 26 * 27; j++) {
            char *name = disk_name(nm[i].prefix, j);
            if (!name_taken(v, k, name))
                v[i].target = name;
            else
                free(name);
        }
    }
    for (size_t i = 0; i < k; i++) {
        ssize_t at = qargv_disk_option(argv, start_cwd, v[i].drive, v[i].node, v[i].source);
        if (at >= 0)
            v[i].arg = qs_asprintf("%zd", at);
    }
    *out = v;
    *n = k;
    *cwd = start_cwd;
    v = NULL;
    start_cwd = NULL;
    ret = 0;
out:
    disk_descs_free(v, k + 1);
    free(nm);
    free(proc_cwd);
    free(start_cwd);
    qs_strv_free(open);
    return ret;
}

int disk_check_reopen(struct qmp_client *c, const struct md_domain *dom, struct qs_error **err)
{
    struct qmp_args *a = qmp_args_new();
    struct qmp_reply *r = NULL;
    char link[64], cwd[PATH_MAX];
    pid_t pid = qmp_client_peer_pid(c);
    ssize_t len;
    int ret = 0;

    if (pid <= 0)
        goto out;
    snprintf(link, sizeof(link), "/proc/%d/cwd", (int)pid);
    if ((len = readlink(link, cwd, sizeof(cwd) - 1)) <= 0)
        goto out;
    cwd[len] = '\0';
    qmp_args_set_bool(a, "flat", true);
    if (qmp_client_execute(c, "query-named-block-nodes", a, &r, err) < 0) {
        ret = -1;
        goto out;
    }
    for (size_t i = 0; i < qmp_value_array_len(qmp_reply_value(r)) && ret == 0; i++) {
        const char *file = qmp_value_get_string(qmp_value_array_at(qmp_reply_value(r), i), "file");
        char *name = file && qs_str_has_prefix(file, "json:") ? json_filename(file) : (file ? qs_xstrdup(file) : NULL);
        char *now, *meant;
        if (!name || name[0] == '/' || strstr(name, "://")) {
            free(name);
            continue;
        }
        /* by this name QEMU would open another file (or none) from where it is now than the one it has */
        now = qargv_path_abs(name, cwd);
        meant = qargv_path_abs(name, md_domain_cwd(dom));
        if (strcmp(now, meant) != 0 || access(now, F_OK) < 0) {
            qs_error_set(err, QS_ERR_UNSUPPORTED,
                         "domain '%s': QEMU opened image '%s' by a relative path and has left the directory it is "
                         "relative to (-daemonize moves it to '/'): it could not open the image again when the "
                         "memory state is written; start the domain with 'qsnap start' (qsnap gives QEMU absolute "
                         "paths), or QEMU with absolute image paths",
                         md_domain_name(dom), name);
            ret = -1;
        }
        free(now);
        free(meant);
        free(name);
    }
out:
    qmp_reply_free(r);
    qmp_args_free(a);
    return ret;
}
