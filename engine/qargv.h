/* qargv.h: QEMU command lines as qsnap records and rewrites them - key=value options, the option that opens
 * each disk's image (-blockdev, -drive with or without an id and with any if=, -hda..-hdd), and the argv a
 * restart runs. */
#ifndef QS_ENGINE_QARGV_H
#define QS_ENGINE_QARGV_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "md.h"
#include "qs_error.h"

/* One "key=value" of a QEMU option string (",," is a literal comma); key NULL for an implied first value. A
 * pair with both NULL is dropped when formatted. */
struct qopt {
    char *key;
    char *val;
};

struct qopt *qopts_parse(const char *s, size_t *n);
void qopts_free(struct qopt *kv, size_t n);
/* The option string again, commas in values doubled. Caller frees. */
char *qopts_format(const struct qopt *kv, size_t n);
/* The value of KEY, or NULL. Borrowed. */
const char *qopts_get(const struct qopt *kv, size_t n, const char *key);
/* Sets KEY to VAL everywhere it appears, or appends it when ADD and it does not; returns the (moved) array. */
struct qopt *qopts_put(struct qopt *kv, size_t *n, const char *key, const char *val, bool add);
/* The value of KEY in the option string S, or NULL. Caller frees. */
char *qopt_get(const char *s, const char *key);

/* PATH as QEMU opened it, absolute: a relative path taken against CWD (when known); "json:" names and
 * protocol URLs are kept as they are. Canonical (realpath) when the file exists. Caller frees. */
char *qargv_path_abs(const char *path, const char *cwd);

/* Whether ARG is the command-line option NAME ("-drive"), also spelt with two dashes. */
bool qargv_is(const char *arg, const char *name);
/* Index of the value of the first OPTION whose key=value options have KEY=VAL, or -1. */
ssize_t qargv_find(char *const *argv, const char *option, const char *key, const char *val);

/*
 * Index of the value of the option that opens a disk's image: the -drive with id DRIVE, the -blockdev (the
 * format node over a file node, or one node with file.filename) named NODE, else the -drive, -blockdev or
 * -hda..-hdd whose image is SOURCE (absolute; relative paths in ARGV are taken against CWD, may be NULL).
 * -1 when none is.
 */
ssize_t qargv_disk_option(char *const *argv, const char *cwd, const char *drive, const char *node,
                          const char *source);

/*
 * The recorded ARGV with every disk of DOM (device 'disk' with a source) opened on its current source and
 * format: the option recorded for the disk (md_domain_disk.arg), else the one qargv_disk_option finds (by
 * -device id and drive= for definitions from before identities were recorded). A disk whose option cannot
 * be rewritten while the argv does not open its image is QS_ERR_UNSUPPORTED: QEMU would silently open
 * another image. Decides everything without side effects, so a caller can know before it quits QEMU that
 * the start will find its command line. *out: the new argv (NULL-terminated; caller frees with
 * qs_strv_free).
 */
int qargv_point_disks(char *const *argv, const struct md_domain *dom, char ***out, struct qs_error **err);

/* Points the option whose value is ARGV[I] (a -drive, -blockdev or -hdX, from qargv_disk_option) at SOURCE
 * in FORMAT (NULL: unchanged), in place; WHAT names it in errors. */
int qargv_point_option(char **argv, ssize_t i, const char *what, const char *source, const char *format,
                       struct qs_error **err);

/*
 * The argv a start runs: ARGV without -daemonize, -S and -incoming (qsnap decides those), with a QMP
 * monitor on SOCK (the recorded one is kept when it serves SOCK, relative paths taken against CWD), -S when
 * PAUSED and "-incoming defer" when INCOMING. Caller frees with qs_strv_free.
 */
char **qargv_start(char *const *argv, const char *cwd, const char *sock, bool paused, bool incoming);

/* What a clone's command line gets of its own (qargv_clone). */
struct qargv_clone_opts {
    const char *name;    /* -name */
    const char *uuid;    /* -uuid */
    const char *run_dir; /* where its sockets go (qsnap's run directory) */
    const char *cwd;     /* the directory relative paths in ARGV are relative to; may be NULL */
};

/*
 * The command line of a clone of ARGV (its disks already pointed at the clone's images, qargv_point_disks):
 * no monitor of the source's (-qmp, -monitor, -mon and its -chardev: qsnap adds its own at start), no
 * -pidfile or -loadvm; -name and -uuid the clone's; every listening UNIX socket (-chardev, -serial,
 * -parallel, -vnc, -spice) moved to RUN_DIR under the clone's uuid; a VNC display becomes a UNIX socket; every
 * NIC (-device with netdev=, -nic, -net nic) a new random MAC 52:54:00:xx:xx:xx. What cannot be the clone's
 * own - a TCP port it would listen on (hostfwd, a TCP server chardev, -spice port), a tap device by name or
 * an fd, shared file-backed memory, -readconfig, -add-fd - is QS_ERR_UNSUPPORTED naming the option.
 * *out: NULL-terminated, caller frees with qs_strv_free.
 */
int qargv_clone(char *const *argv, const struct qargv_clone_opts *o, char ***out, struct qs_error **err);

#endif
