/* nvram.h: a UEFI guest's variables (OVMF's VARS pflash) - found at attach, captured with every snapshot,
 * put back on revert, reset from the firmware's template, given to a clone. */
#ifndef QS_ENGINE_NVRAM_H
#define QS_ENGINE_NVRAM_H

#include <stdbool.h>
#include <stddef.h>

#include "engine_priv.h"
#include "vm.h"

/* Whether block B of the QEMU on C is a pflash device (QOM type cfi.pflash01): firmware, not a disk. */
bool nvram_is_pflash(struct qmp_client *c, const struct vm_block *b);

/*
 * Records in DOM the firmware of the QEMU on C (blocks B[0..NB), command line ARGV, may be NULL; relative
 * image names against CWD): the read-only pflash as <loader>, the writable one as <nvram> with its format,
 * what finds it in ARGV, and the template the firmware's descriptor (/usr/share/qemu/firmware/ *.json, as
 * libvirt reads them) names for that code. A QEMU without a writable pflash leaves DOM as it is.
 */
int nvram_describe(struct qmp_client *c, char *const *argv, const struct vm_block *b, size_t nb, const char *cwd,
                   struct md_domain *dom, struct qs_error **err);

/* A snapshot's capture of the variables being made. */
struct nvram_capture {
    char *path;           /* raw: ROOT/snapshot/DOM/NAME.nvram; NULL: nothing captured */
    char *src;            /* the domain's variables */
    unsigned char *first; /* raw: what the copy holds */
    size_t len;
    char *tag;            /* qcow2: the internal snapshot taken in the variables' image */
    char *node;           /* qcow2, live: the pflash's node in QEMU */
};

/*
 * Before snapshot NAME of DOM is taken (C: its QEMU, or NULL when it is off): raw variables are read and
 * written as the snapshot's copy, ROOT/snapshot/DOMAIN/NAME.nvram (0600, atomically) - beside the metadata,
 * where libvirt reads only *.xml; qcow2 variables get an internal snapshot NAME in their own image
 * (blockdev-snapshot-internal-sync live, qemu-img off). Nothing for a domain without UEFI variables.
 */
int nvram_capture_begin(struct engine *e, struct qmp_client *c, const struct md_domain *dom, const char *domain,
                        const char *name, struct nvram_capture *cap, struct qs_error **err);
/* After (C: the QEMU now, may be NULL): OK - raw variables are read again, and when the guest changed them
 * while the snapshot was taken, the copy holds the later state (a snapshot with memory carries the flash in
 * its RAM anyway: QEMU writes that back when the guest runs); not OK - the copy or tag goes. Releases CAP. */
void nvram_capture_end(struct nvram_capture *cap, struct qmp_client *c, bool ok);

/*
 * A revert of DOMAIN to SNAP begins (FLAGS: enum engine_revert_flags): checks ENGINE_REVERT_RESET_NVRAM
 * (the domain must have UEFI variables with a template; a snapshot with memory refuses it: its RAM holds the
 * variables, which QEMU writes back when the guest runs) and notes what the next QEMU start of DOMAIN, or
 * nvram_revert_end when none comes, puts in place: the snapshot's copy, or the template.
 */
int nvram_revert_begin(struct engine *e, const struct md_domain *dom, const char *domain,
                       const struct md_snapshot *snap, unsigned flags, struct qs_error **err);
/* QEMU of DOM is about to start: the noted variables go into its store first (QEMU must not have it open). */
int nvram_before_start(struct engine *e, const struct md_domain *dom, struct qs_error **err);
/* The revert is over: OK and QEMU not running (QEMU_UP false) - the noted variables go in place now; a QEMU
 * that loaded the snapshot in place writes its RAM's copy back when the guest runs. Clears the note. */
int nvram_revert_end(struct engine *e, bool ok, bool qemu_up, struct qs_error **err);

/* Copies snapshot NAME's variables (else DOM's current ones) to DEST, a file qsnap created: a clone's own. */
int nvram_copy_for_clone(struct engine *e, const struct md_domain *dom, const char *domain, const char *name,
                         const char *dest, struct qs_error **err);

/* Removes the copies (raw) of the snapshots GONE names (NULL-terminated; NULL: of every snapshot of DOMAIN, a
 * scan of its directory) whose metadata is gone (a create undone, a delete done), and in qcow2 variables the
 * tags of the snapshots GONE names when their metadata is gone - only those: a tag qsnap did not just drop may
 * be the user's own. C: DOMAIN's QEMU when the caller
 * holds its client (QEMU serves one), else NULL. DOM: DOMAIN's definition when the caller has it, else NULL. */
void nvram_tidy(struct engine *e, struct qmp_client *c, const struct md_domain *dom, const char *domain,
                char *const *gone);

#endif
