/* qs_file.h: crash-safe file writes, capped reads and private directories. */
#ifndef QS_FILE_H
#define QS_FILE_H

#include <stddef.h>
#include <sys/types.h>

#include "qs_error.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Writes DATA to DIRFD/NAME atomically: NAME.tmp created O_EXCL with MODE, written, fsync'd, renamed over
 * NAME, then the directory fsync'd (git lockfile.h). A stale NAME.tmp left by a crash is removed first.
 * On failure nothing but a possibly stale temporary is left and NAME is unchanged.
 */
int qs_file_write_atomic(int dirfd, const char *name, const void *data, size_t len, mode_t mode,
                         struct qs_error **err);
/* Reads all of DIRFD/NAME (dirfd may be AT_FDCWD) up to MAX bytes; more is QS_ERR_TOOBIG. Missing is
 * QS_ERR_NOTFOUND. *data is NUL-terminated; caller frees with free(). */
int qs_file_read(int dirfd, const char *name, size_t max, char **data, size_t *len, struct qs_error **err);
/* unlinkat + fsync of the directory. Missing is QS_ERR_NOTFOUND. */
int qs_file_remove(int dirfd, const char *name, struct qs_error **err);
/* Creates PATH and its missing parents with MODE (existing ones are kept as they are). */
int qs_dir_create(const char *path, mode_t mode, struct qs_error **err);
/* fsync of a directory fd. */
int qs_dir_sync(int dirfd, struct qs_error **err);

#ifdef __cplusplus
}
#endif
#endif
