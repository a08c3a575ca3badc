/* qs_file.c: atomic writes (temp, fsync, rename, fsync dir), capped reads, private directories. */
#include "qs_file.h"
#include "qs_util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int qs_dir_sync(int dirfd, struct qs_error **err)
{
    if (fsync(dirfd) < 0 && errno != EINVAL) {
        qs_error_set_errno(err, QS_ERR_IO, errno, "cannot sync directory");
        return -1;
    }
    return 0;
}

int qs_file_write_atomic(int dirfd, const char *name, const void *data, size_t len, mode_t mode,
                         struct qs_error **err)
{
    char *tmp = qs_asprintf("%s.tmp", name);
    int fd = -1, ret = -1;

    if (unlinkat(dirfd, tmp, 0) < 0 && errno != ENOENT) {
        qs_error_set_errno(err, QS_ERR_IO, errno, "cannot remove stale '%s'", tmp);
        goto out;
    }
    fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0) {
        qs_error_set_errno(err, QS_ERR_IO, errno, "cannot create '%s'", tmp);
        goto out;
    }
    if (qs_write_all(fd, data, len) < 0) {
        qs_error_set_errno(err, QS_ERR_IO, errno, "cannot write '%s'", tmp);
        goto unlink;
    }
    if (fsync(fd) < 0) {
        qs_error_set_errno(err, QS_ERR_IO, errno, "cannot sync '%s'", tmp);
        goto unlink;
    }
    if (close(fd) < 0) {
        fd = -1;
        qs_error_set_errno(err, QS_ERR_IO, errno, "cannot close '%s'", tmp);
        goto unlink;
    }
    fd = -1;
    if (renameat(dirfd, tmp, dirfd, name) < 0) {
        qs_error_set_errno(err, QS_ERR_IO, errno, "cannot rename '%s' to '%s'", tmp, name);
        goto unlink;
    }
    ret = qs_dir_sync(dirfd, err);
    goto out;

unlink:
    unlinkat(dirfd, tmp, 0);
out:
    qs_close(fd);
    free(tmp);
    return ret;
}

int qs_file_read(int dirfd, const char *name, size_t max, char **data, size_t *len, struct qs_error **err)
{
    int fd, ret = -1;
    struct stat st;
    char *buf = NULL;
    size_t have = 0, cap;

    fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        qs_error_set_errno(err, errno == ENOENT ? QS_ERR_NOTFOUND : QS_ERR_IO, errno, "cannot open '%s'", name);
        return -1;
    }
    if (fstat(fd, &st) < 0) {
        qs_error_set_errno(err, QS_ERR_IO, errno, "cannot stat '%s'", name);
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        qs_error_set(err, QS_ERR_INVALID, "'%s' is not a regular file", name);
        goto out;
    }
    if ((size_t)st.st_size > max) {
        qs_error_set(err, QS_ERR_TOOBIG, "'%s' is larger than %zu bytes", name, max);
        goto out;
    }
    cap = (size_t)st.st_size + 1;
    buf = qs_xmalloc(cap + 1);
    for (;;) {
        ssize_t n = read(fd, buf + have, cap - have);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            qs_error_set_errno(err, QS_ERR_IO, errno, "cannot read '%s'", name);
            goto out;
        }
        if (n == 0)
            break;
        have += (size_t)n;
        if (have > max) {
            qs_error_set(err, QS_ERR_TOOBIG, "'%s' is larger than %zu bytes", name, max);
            goto out;
        }
        if (have == cap) {
            cap *= 2;
            buf = qs_xrealloc(buf, cap + 1);
        }
    }
    buf[have] = '\0';
    *data = buf;
    buf = NULL;
    if (len)
        *len = have;
    ret = 0;
out:
    free(buf);
    qs_close(fd);
    return ret;
}

int qs_file_remove(int dirfd, const char *name, struct qs_error **err)
{
    if (unlinkat(dirfd, name, 0) < 0) {
        qs_error_set_errno(err, errno == ENOENT ? QS_ERR_NOTFOUND : QS_ERR_IO, errno, "cannot remove '%s'", name);
        return -1;
    }
    return qs_dir_sync(dirfd, err);
}

int qs_dir_create(const char *path, mode_t mode, struct qs_error **err)
{
    char *p = qs_xstrdup(path);
    int ret = -1;

    for (char *s = p + 1;; s++) {
        char c = *s;
        if (c != '/' && c != '\0')
            continue;
        *s = '\0';
        if (mkdir(p, mode) < 0 && errno != EEXIST) {
            qs_error_set_errno(err, QS_ERR_IO, errno, "cannot create directory '%s'", p);
            goto out;
        }
        *s = c;
        if (c == '\0')
            break;
    }
    {
        struct stat st;
        if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode)) {
            qs_error_set(err, QS_ERR_IO, "'%s' is not a directory", path);
            goto out;
        }
    }
    ret = 0;
out:
    free(p);
    return ret;
}
