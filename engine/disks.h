/* disks.h: a domain's disks in a running QEMU - found again after every restart by their image and device,
 * never by a node name QEMU generated - and described as libvirt would name them. */
#ifndef QS_ENGINE_DISKS_H
#define QS_ENGINE_DISKS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "md.h"
#include "qmp.h"
#include "qs_error.h"
#include "vm.h"

/*
 * The block (of B[0..N)) that is disk D of DOM in the running QEMU: the one whose top image is D's
 * source, else the one with D's device, drive id or command-line node name. Found by its device but on
 * another image, it is QS_ERR_STATE naming both (QEMU was started on other images than the domain's); not
 * found, QS_ERR_NOTFOUND. Borrowed from B.
 */
const struct vm_block *disk_block(const struct vm_block *b, size_t n, const struct md_domain *dom,
                                  const struct md_domain_disk *d, struct qs_error **err);

/* The image file QEMU calls NAME, absolute: a relative name against CWD (QEMU's working directory), the
 * file inside a "json:{...}" name (QEMU gives one when, for instance, a relative backing name would not
 * resolve). NULL when NAME names no file. Caller frees. */
char *disk_image_name(const char *name, const char *cwd);

/* The absolute image of block B of DOM's QEMU (relative names against its working directory, "json:" names
 * opened), or NULL when QEMU does not name a file. Caller frees. */
char *disk_block_image(const struct vm_block *b, const struct md_domain *dom);

/* disk_block, but a disk found by its device on another image is returned as it is (snapshot-check
 * reports the difference). */
const struct vm_block *disk_block_device(const struct vm_block *b, size_t n, const struct md_domain *dom,
                                         const struct md_domain_disk *d, struct qs_error **err);

/*
 * Whether the QEMU on C can open its images again by the names it has: a migration (save, memory snapshot)
 * ends by reopening them, and a QEMU that opened one by a relative path and left that directory since
 * (-daemonize moves to "/") would fail there. QS_ERR_UNSUPPORTED naming the image and what to do.
 */
int disk_check_reopen(struct qmp_client *c, const struct md_domain *dom, struct qs_error **err);

/* One disk of a QEMU being attached, as the definition records it. */
struct disk_desc {
    char *target; /* libvirt's name: "vda", "sda", "hdc" */
    char *bus;    /* "virtio", "sata", "scsi", "ide", "usb", "fdc" */
    char *source; /* absolute image path */
    char *format; /* "qcow2", "raw", ... */
    char *qdev;   /* query-block's qdev (an id or a QOM path); NULL without a guest device */
    char *drive;  /* the -drive id; NULL for -blockdev */
    char *node;   /* the node name, when the command line gave it (never QEMU's "#blockN") */
    char *arg;    /* index (decimal) in ARGV of the option that opens the image; NULL when none does */
};
void disk_descs_free(struct disk_desc *v, size_t n);

/*
 * Describes the writable disks of the QEMU on C (process PID, command line ARGV, may be NULL): absolute
 * sources (a relative image path is resolved against QEMU's working directory, or - after -daemonize,
 * which changes it to "/" - found among the files QEMU has open; neither is QS_ERR_UNSUPPORTED), libvirt
 * targets and buses from the guest devices' types (vdX for virtio-blk, sdX for SCSI and SATA, hdX for IDE
 * by its bus and unit; a device id that is already such a name is kept), and what finds each disk again.
 * *cwd gets the directory the command line's relative paths are relative to (NULL when unknown).
 * Caller frees *out with disk_descs_free() and *cwd with free().
 */
int disk_describe(struct qmp_client *c, pid_t pid, char *const *argv, const struct vm_block *b, size_t nb,
                  struct disk_desc **out, size_t *n, char **cwd, struct qs_error **err);

#endif
