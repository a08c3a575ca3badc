/* files.h: the image files a domain's state needs - its disks' chains and its snapshots' - so that files no
 * longer needed after a revert or a delete are removed, and files still needed are never touched. */
#ifndef QS_ENGINE_FILES_H
#define QS_ENGINE_FILES_H

#include <stdbool.h>
#include <stddef.h>

#include "engine_priv.h"

/*
 * Every image file the state of DOM (the definition as it is or will be) and its snapshots needs: the
 * backing chain (read from the images' headers) of each disk's current image, of each external snapshot's
 * frozen images (the images its <domain> names for its external disks) and of each internal snapshot's
 * images (those holding its tags: its <domain>'s, else the disks' current ones); and the disks' chains of
 * every other defined domain (a linked clone's overlays are built on its source's images). Snapshot EXCEPT
 * (may be NULL) does not count. Canonical paths, NULL-terminated; caller frees with qs_strv_free.
 */
int files_needed(struct engine *e, const char *domain, const struct md_lock *lock, const struct md_domain *dom,
                 const char *except, char ***out, struct qs_error **err);

/* The images DOMAIN's external snapshots froze (what their <domain>s name for their external disks), canonical;
 * NULL-terminated, caller frees with qs_strv_free. */
int files_frozen(struct engine *e, const char *domain, const struct md_lock *lock, char ***out,
                 struct qs_error **err);

/* The defined domains other than DOMAIN whose disks' backing chains hold FILE (canonical): a linked clone
 * built on DOMAIN's images. NULL-terminated; caller frees with qs_strv_free. */
char **files_users(struct engine *e, const char *domain, const char *file);
/* Whether a domain other than DOMAIN is defined (one that could use DOMAIN's files: a linked clone). */
bool files_others_exist(struct engine *e, const char *domain);

/* Whether NEEDED (from files_needed) holds a file backed by FILE (canonical): FILE is frozen under it. */
bool files_has_child(char *const *needed, const char *file);
/* The needed files backed by FILE, NULL-terminated (caller frees with qs_strv_free). */
char **files_children(char *const *needed, const char *file);

/*
 * The files of BEFORE (plus EXTRA, may be NULL: files the operation let go of, needed or not before) that
 * AFTER lacks and that qsnap may remove: qcow2 overlays (images with a backing file - never a base image),
 * not named by KEEP (may be NULL), and not read by a file outside the garbage (an overlay someone made on
 * it in the images' directories). NULL-terminated; caller frees with qs_strv_free.
 */
char **files_garbage(char *const *before, char *const *extra, char *const *after, char *const *keep);

/* Every regular file in DIRS whose qcow2 header names TARGET (canonical) as its backing file, canonical;
 * NULL-terminated (caller frees with qs_strv_free). */
char **files_dependents(char *const *dirs, const char *target);
/* The directories of the files in A, B and C (each may be NULL), once each. Caller frees with qs_strv_free. */
char **files_dirs(char *const *a, char *const *b, char *const *c);

/* Removes FILES (best effort: one that is gone already is fine). */
void files_remove(char *const *files);

/* Drops from DOM's record of the files qsnap made those of FILES that are gone, and stores DOM if that
 * changed it (LOCK is its domain's). */
int files_forget(struct engine *e, const struct md_lock *lock, struct md_domain *dom, char *const *files,
                 struct qs_error **err);
/* Whether some disk of DOM runs on a file qsnap made (an overlay): then a chain may have become mergeable. */
bool files_made_top(const struct md_domain *dom);

/* The backing chain of FILE from its header onwards, FILE first, canonical; NULL-terminated. */
char **files_chain(const char *file);
/* The image disk TARGET had when SNAP was taken (the source its <domain> names: an external snapshot's
 * frozen image, an internal snapshot's tagged image), canonical; NULL when it does not say. Caller frees. */
char *files_snapshot_image(const struct md_snapshot *snap, const char *target);
/* PATH's directory ("." without a slash). Caller frees. */
char *files_dir_of(const char *path);

#endif
