/* md_test_util.h: helpers shared by the metadata tests: data files, golden comparison, temp dirs, dir hashes. */
#ifndef MD_TEST_UTIL_H
#define MD_TEST_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "qs_file.h"
#include "qs_util.h"

static inline char *t_data_path(const char *rel)
{
    return qs_asprintf("%s/%s", MD_TEST_DATA, rel);
}

static __attribute__((noinline, unused)) char *t_read(const char *path, size_t *len)
{
    char *data = NULL;
    struct qs_error *err = NULL;
    if (qs_file_read(AT_FDCWD, path, 64u << 20, &data, len, &err) < 0) {
        fail_msg("cannot read %s: %s", path, err->message);
    }
    return data;
}

static inline void t_write(const char *path, const char *data, size_t len)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* Compares GOT with the golden file REL (under data/); QSNAP_REGENERATE=1 rewrites the golden file. */
static inline void t_golden(const char *rel, const char *got)
{
    char *path = t_data_path(rel);
    const char *regen = getenv("QSNAP_REGENERATE");
    if (regen && strcmp(regen, "1") == 0) {
        t_write(path, got, strlen(got));
    } else {
        size_t len;
        char *want = t_read(path, &len);
        if (strcmp(want, got) != 0) {
            char *gp = qs_asprintf("%s.got", path);
            t_write(gp, got, strlen(got));
            fail_msg("%s differs from golden file (output written to %s; QSNAP_REGENERATE=1 to accept)", rel, gp);
        }
        free(want);
    }
    free(path);
}

static inline char *t_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    char *tmpl = qs_asprintf("%s/qsnap-md-XXXXXX", base && *base ? base : "/tmp");
    assert_non_null(mkdtemp(tmpl));
    return tmpl;
}

static inline void t_rmrf(const char *path)
{
    char *cmd[] = { "rm", "-rf", (char *)path, NULL };
    pid_t pid = fork();
    if (pid == 0) {
        execvp(cmd[0], cmd);
        _exit(127);
    }
    int st;
    waitpid(pid, &st, 0);
}

/* A fingerprint of every file under DIR (names, sizes, contents, modes): equal iff nothing changed. */
static inline void t_hash_dir_rec(const char *dir, uint64_t *h)
{
    DIR *dp = opendir(dir);
    struct dirent *de;
    char **names = NULL;
    size_t n = 0;
    if (!dp)
        return;
    while ((de = readdir(dp))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        names = qs_xrealloc(names, (n + 1) * sizeof(*names));
        names[n++] = qs_xstrdup(de->d_name);
    }
    closedir(dp);
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            if (strcmp(names[i], names[j]) > 0) {
                char *t = names[i];
                names[i] = names[j];
                names[j] = t;
            }
    for (size_t i = 0; i < n; i++) {
        char *p = qs_asprintf("%s/%s", dir, names[i]);
        struct stat st;
        for (const char *c = names[i]; *c; c++)
            *h = (*h ^ (unsigned char)*c) * 1099511628211ull;
        if (lstat(p, &st) == 0) {
            *h = (*h ^ (uint64_t)st.st_mode) * 1099511628211ull;
            *h = (*h ^ (uint64_t)st.st_mtim.tv_nsec) * 1099511628211ull;
            if (S_ISDIR(st.st_mode)) {
                t_hash_dir_rec(p, h);
            } else if (S_ISREG(st.st_mode)) {
                size_t len;
                char *d = NULL;
                if (qs_file_read(AT_FDCWD, p, 64u << 20, &d, &len, NULL) == 0) {
                    for (size_t k = 0; k < len; k++)
                        *h = (*h ^ (unsigned char)d[k]) * 1099511628211ull;
                    free(d);
                }
            }
        }
        free(p);
        free(names[i]);
    }
    free(names);
}

static inline uint64_t t_hash_dir(const char *dir)
{
    uint64_t h = 1469598103934665603ull;
    t_hash_dir_rec(dir, &h);
    return h;
}

#endif
