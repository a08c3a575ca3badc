/* internal.h: internal snapshots (inside qcow2 images) - checks, save/load/delete jobs, offline qemu-img. */
#ifndef QS_ENGINE_INTERNAL_H
#define QS_ENGINE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "qmp.h"
#include "qs_error.h"
#include "vm.h"

/* The job id of qsnap's snapshot-save/-load/-delete: short, as QEMU's monitor reads a request byte by byte
 * (it goes out twice: with the command and with job-dismiss). Before 2026-12 it was ISNAP_JOB_OLD, which
 * recovery still looks for. */
#define ISNAP_JOB "qsnap"
#define ISNAP_JOB_OLD "qsnap-snapshot"

/* One disk of a domain as an internal-snapshot operation sees it. */
struct isnap_disk {
    const char *target; /* "vda": the name users and metadata use */
    const char *node;   /* QEMU node name (live) */
    const char *file;   /* image file (offline) */
};

typedef int (*isnap_progress_fn)(void *opaque, const char *phase, uint64_t done, uint64_t total);

/*
 * Live checks before an operation on TAG: every disk is present in QEMU, writable and qcow2 (else
 * QS_ERR_UNSUPPORTED naming the disk); for create, TAG is on no disk (QS_ERR_EXISTS); for load and delete,
 * TAG is on every disk (QS_ERR_NOTFOUND) and no other snapshot has TAG as its id (QEMU would load that
 * one: QS_ERR_UNSUPPORTED).
 */
enum isnap_op { ISNAP_CREATE, ISNAP_LOAD, ISNAP_DELETE };
int isnap_check_live(const struct vm_block *blocks, size_t nblocks, const struct isnap_disk *disks, size_t n,
                     const char *tag, enum isnap_op op, struct qs_error **err);
/* The same with qemu-img on the image files (VM off). */
int isnap_check_offline(const struct isnap_disk *disks, size_t n, const char *tag, enum isnap_op op,
                        struct qs_error **err);

/*
 * Live save/load/delete of TAG on every disk, vmstate on the first, as one QEMU job. On a failed save,
 * tags the job left on some disks are removed again. A failed load leaves QEMU in "restore-vm": the
 * caller decides whether to cont (the VM's memory is then undefined) - see engine.
 */
int isnap_save(struct qmp_client *c, const struct isnap_disk *disks, size_t n, const char *tag,
               isnap_progress_fn progress, void *opaque, struct qs_error **err);
/* LOADED (may be NULL) hears, with OPAQUE, how the load ended before its job is dismissed; DISMISSING (may
 * be NULL; only with LOADED) is called while job-dismiss goes to QEMU (qmp_job_options.dismissing). */
int isnap_load(struct qmp_client *c, const struct isnap_disk *disks, size_t n, const char *tag,
               isnap_progress_fn progress, void *opaque, void (*loaded)(void *opaque, bool ok),
               void (*dismissing)(void *opaque), struct qs_error **err);
int isnap_delete(struct qmp_client *c, const struct isnap_disk *disks, size_t n, const char *tag,
                 struct qs_error **err);

/* Which of DISKS hold TAG (has[i]; *count of them): through QEMU when C, else from the image files. */
int isnap_which(struct qmp_client *c, const struct isnap_disk *disks, size_t n, const char *tag, bool *has,
                size_t *count, struct qs_error **err);
/* Removes TAG from those of DISKS that hold it (a save or delete cut short), live when C, else offline. */
int isnap_delete_present(struct qmp_client *c, const struct isnap_disk *disks, size_t n, const char *tag,
                         struct qs_error **err);

/* Offline (qemu-img) create / apply / delete of TAG on every disk. A failed create removes the tags it
 * made. Apply is checked first on every disk, so it fails before changing anything when it can. */
int isnap_offline_create(const struct isnap_disk *disks, size_t n, const char *tag, struct qs_error **err);
int isnap_offline_apply(const struct isnap_disk *disks, size_t n, const char *tag, struct qs_error **err);
int isnap_offline_delete(const struct isnap_disk *disks, size_t n, const char *tag, struct qs_error **err);

#endif
