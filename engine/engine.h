/* engine.h: libqsnap's public interface - snapshot operations on QEMU VMs, callable from any front end. */
#ifndef QSNAP_ENGINE_H
#define QSNAP_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qs_error.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Conventions: every fallible call takes `struct qs_error **err` last, sets it only on failure and returns
 * <0 (or NULL). The library never prints and never exits; it keeps no process-global state, so several
 * engines may live in one process (one per thread). Strings returned through `char **` are the caller's
 * (free()); `const char *` results are borrowed from the object they came from.
 */

/* The library's version, "MAJOR.MINOR.PATCH". Borrowed. */
QS_EXPORT const char *engine_version(void);

/* ------------------------------------------------------------------------------------------------ */
/* The engine: one state directory, its options and callbacks. */

struct engine;

/*
 * Progress of a long operation. PHASE is a short stable word ("save", "load", "delete", "commit", ...);
 * TOTAL is 0 when unknown. Return non-zero to ask the operation to stop where it safely can (it then
 * fails with QS_ERR_CANCELLED and leaves everything as it was).
 */
typedef int (*engine_progress_fn)(void *opaque, const char *phase, uint64_t done, uint64_t total);

/*
 * Step boundaries of mutating operations, reached in order: OP is "create", "revert", "delete",
 * "redefine", "current" or "recover"; STEP a short word ("intent", "save", "switch", "metadata", ...). For
 * tracing, and for tests that stop the process at each boundary to prove recovery. Must not call back
 * into the engine.
 */
typedef void (*engine_step_fn)(void *opaque, const char *op, const char *step);

/* The wall clock: milliseconds since the epoch. */
typedef int64_t (*engine_clock_fn)(void *opaque);

struct engine_options {
    const char *root;            /* state directory; NULL: $QSNAP_ROOT, else /var/lib/qsnap (root) or
                                    $XDG_STATE_HOME/qsnap */
    int lock_timeout_ms;         /* wait for another qsnap's domain lock; 0: 10000 */
    int qmp_timeout_ms;          /* wait for a QMP reply; 0: 60000 (a savevm of a big guest takes long) */
    engine_progress_fn progress; /* may be NULL */
    void *opaque;                /* passed to progress and step */
    engine_step_fn step;         /* may be NULL */
    engine_clock_fn clock;       /* wall clock for snapshot times, schedules, prune ages and events; NULL: the
                                    system's (tests set their own) */
};

/* opts may be NULL. Caller frees with engine_free(). */
QS_EXPORT struct engine *engine_new(const struct engine_options *opts, struct qs_error **err);
QS_EXPORT void engine_free(struct engine *e);
/* The resolved state directory. Borrowed. */
QS_EXPORT const char *engine_root(const struct engine *e);

/* ------------------------------------------------------------------------------------------------ */
/* Domains: QEMU VMs qsnap knows, with or without a running process. */

/* As virsh's domstate prints them. */
enum engine_domain_state {
    ENGINE_DOMAIN_NOSTATE,
    ENGINE_DOMAIN_RUNNING,
    ENGINE_DOMAIN_BLOCKED,
    ENGINE_DOMAIN_PAUSED,
    ENGINE_DOMAIN_SHUTDOWN,
    ENGINE_DOMAIN_SHUTOFF,
    ENGINE_DOMAIN_CRASHED,
    ENGINE_DOMAIN_PMSUSPENDED,
    ENGINE_DOMAIN_STATE__LAST
};
/* "running", "paused", "shut off", ... exactly as virsh prints them. */
QS_EXPORT const char *engine_domain_state_name(enum engine_domain_state s);

/*
 * Takes over a running QEMU that someone else started: connects to its QMP socket, discovers its disks
 * (node names, files, formats), memory, vcpus and uuid, records its command line when the process is
 * local, and stores a libvirt <domain> definition named NAME.
 */
QS_EXPORT int engine_domain_attach(struct engine *e, const char *name, const char *qmp_socket,
                                   struct qs_error **err);
enum engine_attach_flags {
    ENGINE_ATTACH_UPDATE = 1 << 0, /* NAME is defined: record its running QEMU again (socket, command line,
                                      disks' images and devices), keeping its snapshots and disk names */
};
/*
 * engine_domain_attach with FLAGS. Disks are named as libvirt would (vda.. virtio-blk, sda.. SCSI and SATA,
 * hda.. IDE by bus and unit; a device id that already is such a name is kept) with their bus, and recorded
 * with absolute image paths (relative ones resolved against QEMU's working directory) and what finds them
 * again after QEMU restarts (device, drive id, the command-line option that opens the image) - never a node
 * name QEMU generated. QMP_SOCKET may be NULL with UPDATE (the recorded one). A QEMU (socket or process)
 * another domain already names is QS_ERR_EXISTS, naming that domain.
 */
QS_EXPORT int engine_domain_attach_flags(struct engine *e, const char *name, const char *qmp_socket,
                                         unsigned flags, struct qs_error **err);
/* Stores a libvirt domain XML definition (name from the XML); QMP_SOCKET (may be NULL) overrides the one
 * in the XML's qsnap metadata. *name (may be NULL) gets the domain's name. */
QS_EXPORT int engine_domain_define(struct engine *e, const char *xml, const char *qmp_socket, char **name,
                                   struct qs_error **err);
/* 0 when domain NAME is defined; -1 with QS_ERR_NOTFOUND (or another error) otherwise. */
QS_EXPORT int engine_domain_lookup(struct engine *e, const char *name, struct qs_error **err);
/* Removes a definition and its snapshot metadata (not the disk images). Refused while it has snapshots
 * unless force is set. */
QS_EXPORT int engine_domain_undefine(struct engine *e, const char *name, bool force, struct qs_error **err);
/* Names of the defined domains, sorted. Caller frees with qs_strv_free()-style loop or engine_strv_free(). */
QS_EXPORT int engine_domain_list(struct engine *e, char ***names, size_t *n, struct qs_error **err);
/* The domain's state, and (pid may be NULL) its QEMU's pid, or -1 when it does not run. */
QS_EXPORT int engine_domain_get_state(struct engine *e, const char *name, enum engine_domain_state *state,
                                      int *pid, struct qs_error **err);
/* The domain's stored XML definition. Caller frees. */
QS_EXPORT int engine_domain_get_xml(struct engine *e, const char *name, char **xml, struct qs_error **err);
/* Starts QEMU from the recorded or defined command line, with qsnap's own QMP socket; paused if asked. */
QS_EXPORT int engine_domain_start(struct engine *e, const char *name, bool paused, struct qs_error **err);
/* Stops QEMU at once (QMP quit, then SIGKILL), as virsh destroy. */
QS_EXPORT int engine_domain_destroy(struct engine *e, const char *name, struct qs_error **err);
/*
 * An operation under way on domain NAME: another qsnap process is running it (its intent record is there
 * and it holds the lock), or a crash interrupted it and recovery could not finish it yet. Returns 1 and
 * fills *op ("create", "revert", "delete", "redefine", "current"), *snapshots (the snapshots it concerns:
 * being created or deleted; count in *n; caller frees with engine_strv_free), *pid (the qsnap process) and
 * *started (seconds since the epoch); 0 when nothing is under way. An interrupted operation whose lock is
 * free is recovered first. Any out-parameter may be NULL.
 */
QS_EXPORT int engine_domain_pending(struct engine *e, const char *name, char **op, char ***snapshots, size_t *n,
                                    long *pid, int64_t *started, struct qs_error **err);
/* Frees an array of n strings from this library; accepts NULL. */
QS_EXPORT void engine_strv_free(char **v, size_t n);

/* ------------------------------------------------------------------------------------------------ */
/* Snapshots. Flags carry libvirt's meanings (virDomainSnapshot*Flags). */

enum engine_create_flags {
    ENGINE_CREATE_REDEFINE = 1 << 0,     /* take the XML as metadata of an existing snapshot */
    ENGINE_CREATE_CURRENT = 1 << 1,      /* with REDEFINE: make it the current snapshot */
    ENGINE_CREATE_NO_METADATA = 1 << 2,  /* take the snapshot, keep no metadata */
    ENGINE_CREATE_HALT = 1 << 3,         /* stop the VM after the snapshot */
    ENGINE_CREATE_DISK_ONLY = 1 << 4,    /* disks only, no memory */
    ENGINE_CREATE_REUSE_EXT = 1 << 5,    /* external files exist already */
    ENGINE_CREATE_QUIESCE = 1 << 6,      /* freeze guest filesystems through the guest agent */
    ENGINE_CREATE_ATOMIC = 1 << 7,       /* all or nothing (qsnap is always atomic) */
    ENGINE_CREATE_LIVE = 1 << 8,         /* guest keeps running while memory is written */
    ENGINE_CREATE_VALIDATE = 1 << 9,     /* check the XML against the schema */
    ENGINE_CREATE_LIVE_FALLBACK = 1 << 10, /* with LIVE: where a live save cannot work, save with the guest
                                              paused instead of failing */
    ENGINE_CREATE_PRECOPY = 1 << 11,     /* with LIVE: the RAM by pre-copy (QEMU's ordinary migration) */
};

enum engine_revert_flags {
    ENGINE_REVERT_RUNNING = 1 << 0, /* run afterwards, whatever the snapshot's state */
    ENGINE_REVERT_PAUSED = 1 << 1,  /* stay paused afterwards */
    ENGINE_REVERT_FORCE = 1 << 2,   /* allow risky reverts */
    ENGINE_REVERT_RESET_NVRAM = 1 << 3, /* UEFI variables fresh from the firmware's template, not the snapshot's */
};

enum engine_delete_flags {
    ENGINE_DELETE_CHILDREN = 1 << 0,      /* the snapshot and all its descendants */
    ENGINE_DELETE_METADATA_ONLY = 1 << 1, /* metadata only; disks keep their data */
    ENGINE_DELETE_CHILDREN_ONLY = 1 << 2, /* the descendants, not the snapshot */
    ENGINE_DELETE_FORCE = 1 << 3,         /* also protected snapshots (engine_snapshot_protect) */
};

/* Selection and order for engine_snapshot_list (virsh snapshot-list's filters). Within the groups
 * {INACTIVE, ACTIVE, DISK_ONLY}, {INTERNAL, EXTERNAL}, {METADATA, NO_METADATA} flags are alternatives (OR);
 * the groups combine with AND. LEAVES and NO_LEAVES each filter on their own (both: nothing), as virsh. */
enum engine_list_flags {
    ENGINE_LIST_ROOTS = 1 << 0,
    ENGINE_LIST_DESCENDANTS = 1 << 1, /* with from: all descendants, not only children */
    ENGINE_LIST_LEAVES = 1 << 2,
    ENGINE_LIST_NO_LEAVES = 1 << 3,
    ENGINE_LIST_INACTIVE = 1 << 4,
    ENGINE_LIST_ACTIVE = 1 << 5,
    ENGINE_LIST_DISK_ONLY = 1 << 6,
    ENGINE_LIST_INTERNAL = 1 << 7,
    ENGINE_LIST_EXTERNAL = 1 << 8,
    ENGINE_LIST_METADATA = 1 << 9,
    ENGINE_LIST_NO_METADATA = 1 << 10,
    ENGINE_LIST_TOPOLOGICAL = 1 << 11, /* parents before children */
    ENGINE_LIST_TREE = 1 << 12,        /* pre-order, children by name; with from, from itself first */
};

/* A snapshot's summary, as listed. Read with the accessors below. */
struct engine_snapshot;

QS_EXPORT const char *engine_snapshot_name(const struct engine_snapshot *s);
QS_EXPORT const char *engine_snapshot_parent(const struct engine_snapshot *s);      /* NULL for a root */
QS_EXPORT const char *engine_snapshot_description(const struct engine_snapshot *s); /* NULL when none */
/* "running", "paused", "shutoff", "disk-snapshot", ... (libvirt's domainsnapshot state words). */
QS_EXPORT const char *engine_snapshot_state(const struct engine_snapshot *s);
QS_EXPORT int64_t engine_snapshot_creation_time(const struct engine_snapshot *s); /* seconds since epoch */
/* "internal" or "external" (virsh's Location). */
QS_EXPORT const char *engine_snapshot_location(const struct engine_snapshot *s);
QS_EXPORT bool engine_snapshot_is_current(const struct engine_snapshot *s);
QS_EXPORT size_t engine_snapshot_children(const struct engine_snapshot *s);
QS_EXPORT size_t engine_snapshot_descendants(const struct engine_snapshot *s);
/* The guest's pause while a --live snapshot was taken, in microseconds (QEMU's STOP to RESUME), or -1 when
 * not recorded. Known only for snapshots from engine_snapshot_lookup (-1 in lists). */
QS_EXPORT int64_t engine_snapshot_pause_us(const struct engine_snapshot *s);

/* A list of snapshots. */
struct engine_snapshot_list;
QS_EXPORT size_t engine_snapshot_list_count(const struct engine_snapshot_list *l);
QS_EXPORT const struct engine_snapshot *engine_snapshot_list_at(const struct engine_snapshot_list *l, size_t i);
QS_EXPORT void engine_snapshot_list_free(struct engine_snapshot_list *l);

/*
 * The snapshots of DOMAIN that FLAGS select; FROM (may be NULL) restricts them to FROM's children (or all
 * descendants with ENGINE_LIST_DESCENDANTS). Sorted by name unless ENGINE_LIST_TOPOLOGICAL.
 * Caller frees *out with engine_snapshot_list_free().
 */
QS_EXPORT int engine_snapshot_list(struct engine *e, const char *domain, unsigned flags, const char *from,
                                   struct engine_snapshot_list **out, struct qs_error **err);
/* One snapshot's summary (a list of one). */
QS_EXPORT int engine_snapshot_lookup(struct engine *e, const char *domain, const char *name,
                                     struct engine_snapshot_list **out, struct qs_error **err);
/* Whether snapshot NAME of DOMAIN has its file where libvirt and qsnap put it: a stat, no parse, no tree. True
 * lets a command that looks NAME up under its lock anyway skip a lookup before; false tells nothing. */
QS_EXPORT bool engine_snapshot_file_present(struct engine *e, const char *domain, const char *name);
/* The current snapshot's name, or *name = NULL when there is none. Caller frees. */
QS_EXPORT int engine_snapshot_current_name(struct engine *e, const char *domain, char **name,
                                           struct qs_error **err);
/* Makes NAME the current snapshot (metadata only). */
QS_EXPORT int engine_snapshot_set_current(struct engine *e, const char *domain, const char *name,
                                          struct qs_error **err);
/* virsh snapshot-dumpxml: the <domainsnapshot> document (without <active>). Caller frees. */
QS_EXPORT int engine_snapshot_get_xml(struct engine *e, const char *domain, const char *name, bool secure,
                                      char **xml, struct qs_error **err);

/*
 * Takes a snapshot described by a <domainsnapshot> document (may be NULL: all defaults). Running or paused
 * VM: memory and disks inside the qcow2 images (snapshot-save job); shut-off VM: disks only (qemu-img).
 * DISK_ONLY (or a disk snapshot='external'): external disk-only snapshot - a qcow2 overlay per disk (the
 * given file, else libvirt's name: the image's extension replaced by ".NAME"), switched to atomically
 * (one blockdev-snapshot transaction) while QEMU runs; the domain then runs on the overlays. A memory
 * element with snapshot='external' and a file (--memspec): the RAM goes to that file (migration to an fd)
 * and the disks switch in the same pause. QUIESCE freezes the guest's filesystems through the guest agent
 * around the switch (always thawed).
 * LIVE: an external memory snapshot (a memory element with no file, or none, gets the default file: the
 * first disk's image path with its extension replaced by ".NAME.mem", created O_EXCL 0600) during which the
 * guest runs: disks switched and devices saved in one short pause, then the RAM of that instant written by
 * QEMU's background-snapshot (userfaultfd write-protect) while the guest runs. Not with DISK_ONLY or
 * internal memory. Where QEMU cannot do it (no background-snapshot capability, no userfaultfd write-protect,
 * file-backed or shared guest RAM) it fails with QS_ERR_UNSUPPORTED and QEMU's reason before anything is
 * created, unless LIVE_FALLBACK: then the ordinary save (guest paused throughout). A paused VM stays paused
 * (ordinary save). The pause is kept with the snapshot (engine_snapshot_pause_us).
 * LIVE|PRECOPY: the RAM is copied while the guest runs, in passes (QEMU's ordinary migration, as libvirt's live
 * external snapshot does), and the guest is paused only for what the last pass left, the devices and the disk
 * switch - the snapshot's instant is the end of the copy, not its start. Needs no userfaultfd; a guest still
 * dirtying its RAM after 20 passes is stopped for the rest of the copy.
 * With REDEFINE, only records metadata (libvirt's rules apply). *name (may be NULL) gets the snapshot's
 * name (generated from the time when the XML gives none). Caller frees.
 */
QS_EXPORT int engine_snapshot_create(struct engine *e, const char *domain, const char *xml, unsigned flags,
                                     char **name, struct qs_error **err);
/* Reverts DOMAIN to NAME: in place (snapshot-load) when QEMU runs; flags as enum engine_revert_flags. An
 * external snapshot: QEMU is quit, new overlays go on the snapshot's images (the old branch stays); with a
 * memory file a fresh QEMU loads it (-incoming), running or paused as the snapshot was or as the flags say;
 * a disk-only one boots afresh only with RUNNING or PAUSED. */
QS_EXPORT int engine_snapshot_revert(struct engine *e, const char *domain, const char *name, unsigned flags,
                                     struct qs_error **err);
/* Deletes NAME (and/or its descendants); children move to NAME's parent. Flags: enum engine_delete_flags.
 * An external snapshot is merged (block-commit live, qemu-img commit/rebase offline) and its memory file
 * removed; what cannot be merged safely (an image another branch needs) is refused. A protected snapshot
 * among those deleted is refused (QS_ERR_STATE, before anything changes) unless ENGINE_DELETE_FORCE. */
QS_EXPORT int engine_snapshot_delete(struct engine *e, const char *domain, const char *name, unsigned flags,
                                     struct qs_error **err);

/* ------------------------------------------------------------------------------------------------ */
/* Saved state: virsh save / restore. The VM's RAM and device state go to a file and QEMU exits; restore
 * starts QEMU again from the domain's command line and loads the file into it. The file starts with a
 * header of qsnap's own (versioned, with the domain's name and XML, as libvirt's save format carries the
 * XML), then QEMU's migration stream. */

enum engine_save_flags {
    ENGINE_SAVE_RUNNING = 1 << 0, /* save: recorded as "run after restore"; restore: run, whatever recorded */
    ENGINE_SAVE_PAUSED = 1 << 1,  /* save: recorded as "paused after restore"; restore: stay paused */
};

/*
 * Saves running or paused domain NAME to PATH (created 0600, replaced atomically when it exists: written
 * as a temporary in the same directory, fsync'd, renamed) and ends its QEMU, which frees its RAM. The
 * guest is paused for the save. Without a flag the file records the state the VM was in. On failure the
 * VM keeps running (or stays paused) as before and PATH is untouched. Progress phase: "save".
 */
QS_EXPORT int engine_domain_save(struct engine *e, const char *name, const char *path, unsigned flags,
                                 struct qs_error **err);
/*
 * Restores the state saved in PATH: reads and checks the header before anything else (a file that is not
 * a save file is QS_ERR_INVALID and no QEMU is started), starts the domain's QEMU from its definition with
 * -incoming defer and loads the state. A domain that is no longer defined is defined again from the XML in
 * the file; a defined one with another uuid is refused. The guest then runs or stays paused as FLAGS say,
 * else as recorded. *name (may be NULL) gets the domain's name; caller frees. Progress phase: "restore".
 */
QS_EXPORT int engine_domain_restore(struct engine *e, const char *path, unsigned flags, char **name,
                                    struct qs_error **err);

/* ------------------------------------------------------------------------------------------------ */
/* From a snapshot to a volume or a new VM. */

enum engine_export_flags {
    ENGINE_EXPORT_COMPRESS = 1 << 0, /* qcow2 with compressed clusters */
};

/* What an export wrote. */
struct engine_export_result {
    uint64_t size;         /* bytes of the file written */
    uint64_t virtual_size; /* the disk's size as the guest sees it */
};

/*
 * Writes disk DISK (its target, "vda") of DOMAIN as it was at snapshot NAME to PATH (absolute), a standalone
 * image with no backing file in FORMAT ("qcow2", or NULL for it; "raw"), with the VM running, paused or off.
 * Reads only what the guest can no longer change - an internal snapshot's clusters in the image that holds its
 * tag, an external snapshot's frozen image and its backing chain - under the domain lock, so the snapshot
 * cannot go away meanwhile; QEMU is not involved. Written to a temporary file beside PATH (0600) and renamed
 * at the end: a failure, a crash or a cancel leaves no part of it. PATH that exists is QS_ERR_EXISTS, a disk
 * the snapshot does not hold QS_ERR_NOTFOUND, too little room in PATH's file system (checked before, with
 * qemu-img measure) QS_ERR_IO naming both sizes. Progress phase: "export". *res (may be NULL) is filled on
 * success.
 */
QS_EXPORT int engine_snapshot_export(struct engine *e, const char *domain, const char *name, const char *disk,
                                     const char *path, const char *format, unsigned flags,
                                     struct engine_export_result *res, struct qs_error **err);

enum engine_clone_flags {
    ENGINE_CLONE_FULL = 1 << 0,        /* independent copies of the disks (default: linked overlays) */
    ENGINE_CLONE_START = 1 << 1,       /* start the clone afterwards (a fresh boot) */
    ENGINE_CLONE_WITH_MEMORY = 1 << 2, /* start it from the snapshot's RAM and devices (implies START) */
};

/*
 * Defines domain NAME as a copy of DOMAIN at snapshot SNAPSHOT: the snapshot's definition and QEMU command
 * line with a new name, uuid, QMP socket (qsnap's own), MAC addresses and sockets of its own, and disks of its
 * own next to the source's images, named NAME-TARGET.qcow2: linked (default) - qcow2 overlays on the
 * snapshot's frozen images, or on one export of an internal snapshot's disks that every linked clone of that
 * snapshot shares - or FULL copies. A UEFI guest gets its own NVRAM with the variables of the snapshot. The
 * source is not touched (it may run meanwhile); while a linked clone is built on images of the source's
 * snapshot, deleting that snapshot is refused, naming the clone. START boots the clone; WITH_MEMORY starts it
 * from the snapshot's RAM (internal: read from the image holding it; external: its memory file), running or
 * paused as the snapshot was. An option the clone cannot have of its own (a TCP port it would listen on, a
 * tap device) is QS_ERR_UNSUPPORTED before anything is made. Progress phases: "export" (copies), "restore".
 */
QS_EXPORT int engine_domain_clone(struct engine *e, const char *domain, const char *snapshot, const char *name,
                                  unsigned flags, struct qs_error **err);

/* ------------------------------------------------------------------------------------------------ */
/* Consistency check: a domain's snapshot metadata against its images, files and running QEMU. */

enum engine_check_flags {
    ENGINE_CHECK_REPAIR = 1 << 0, /* apply the safe fixes (never deletes user data), under the domain lock */
};

/* One discrepancy found, and a report: a list of them. Read with the accessors below. */
struct engine_check_item;
struct engine_check_report;

/*
 * Reconciles DOMAIN's snapshot metadata with reality (tags in the qcow2 images, overlay and memory files,
 * the running QEMU's images, leftover files). Works with QEMU running (QMP) and off (qemu-img -U). A
 * discrepancy is an item of the report, not an error: the call fails only when the check itself cannot
 * run (unknown domain, lock busy with REPAIR, QEMU not answering). With REPAIR, safe fixes are applied
 * and their items marked repaired: a tag on every disk adopted as a snapshot, metadata whose tag no disk
 * has dropped, qsnap's stale temporaries removed, the definition pointed at QEMU's live overlays.
 * Caller frees *out with engine_check_report_free().
 */
QS_EXPORT int engine_snapshot_check(struct engine *e, const char *domain, unsigned flags,
                                    struct engine_check_report **out, struct qs_error **err);
QS_EXPORT size_t engine_check_report_count(const struct engine_check_report *r);
/* Item I, or NULL when out of range. Borrowed from the report. */
QS_EXPORT const struct engine_check_item *engine_check_report_at(const struct engine_check_report *r, size_t i);
QS_EXPORT void engine_check_report_free(struct engine_check_report *r);
/* A stable word: "tag-missing", "untracked", "overlay-missing", ... (see the man page). Borrowed. */
QS_EXPORT const char *engine_check_item_kind(const struct engine_check_item *it);
/* The snapshot concerned (for a tag without metadata: the tag), or NULL. Borrowed. */
QS_EXPORT const char *engine_check_item_snapshot(const struct engine_check_item *it);
/* The disk (target, "vda") concerned, or NULL. Borrowed. */
QS_EXPORT const char *engine_check_item_disk(const struct engine_check_item *it);
/* What is wrong, one line in the house style. Borrowed. */
QS_EXPORT const char *engine_check_item_message(const struct engine_check_item *it);
/* What fixes it, or NULL when there is no safe fix to suggest. Borrowed. */
QS_EXPORT const char *engine_check_item_fix(const struct engine_check_item *it);
/* True when REPAIR fixed it. */
QS_EXPORT bool engine_check_item_repaired(const struct engine_check_item *it);
/* True for a note: a limitation worth knowing (kind "tag-below-overlay": an internal snapshot whose tag is in
 * an image an external snapshot froze), not a discrepancy; notes do not make a check fail. */
QS_EXPORT bool engine_check_item_is_note(const struct engine_check_item *it);


/* ------------------------------------------------------------------------------------------------ */
/* Preview: oVirt's preview / commit / undo cycle, which no libvirt tool has. The VM runs on a snapshot
 * while the state it left is kept as a snapshot of its own, the "before preview" point
 * (ENGINE_PREVIEW_POINT, an internal snapshot: RAM and disks when the VM ran, disks when it was off; its
 * <cookie> names the previewed snapshot). Commit drops the point; undo reverts to it and drops it. Every
 * step is an ordinary create, revert or delete with its intent record, so a crash leaves either no point
 * (nothing happened) or the point on disk: running the interrupted call again finishes it. */

/* The name of the kept "before preview" point. */
#define ENGINE_PREVIEW_POINT "qsnap-before-preview"

/* Where a domain stands in the cycle (engine_snapshot_preview_get). */
enum engine_preview_state {
    ENGINE_PREVIEW_NONE = 0,    /* no preview */
    ENGINE_PREVIEW_ACTIVE,      /* the VM runs on the previewed snapshot; the point is kept */
    ENGINE_PREVIEW_INTERRUPTED, /* the point is kept but the VM is on it (a preview or an undo was cut
                                   short): preview again, or undo */
};

/*
 * Previews internal snapshot NAME of DOMAIN: keeps the VM's state as ENGINE_PREVIEW_POINT, then reverts to
 * NAME (FLAGS: enum engine_revert_flags). Refused (QS_ERR_STATE) while another snapshot is in preview;
 * previewing the same snapshot again after an interruption finishes it. An external snapshot is
 * QS_ERR_UNSUPPORTED (its revert leaves the images the point lives in). When the revert fails, the VM is
 * taken back to the point and the point dropped.
 */
QS_EXPORT int engine_snapshot_preview(struct engine *e, const char *domain, const char *name, unsigned flags,
                                      struct qs_error **err);
/* Makes the preview the VM's state: the point is deleted. QS_ERR_STATE when no preview is active. */
QS_EXPORT int engine_snapshot_preview_commit(struct engine *e, const char *domain, struct qs_error **err);
/* Returns to the kept point exactly (RAM too when it has RAM) and deletes it; FLAGS as for revert.
 * QS_ERR_STATE when there is no point. */
QS_EXPORT int engine_snapshot_preview_undo(struct engine *e, const char *domain, unsigned flags,
                                           struct qs_error **err);
/* DOMAIN's preview state; *snapshot (may be NULL) gets the previewed snapshot's name (caller frees), or
 * NULL with ENGINE_PREVIEW_NONE. */
QS_EXPORT int engine_snapshot_preview_get(struct engine *e, const char *domain, enum engine_preview_state *state,
                                          char **snapshot, struct qs_error **err);


/* ------------------------------------------------------------------------------------------------ */
/* Sessions: the engine for a long-lived, multi-threaded service (qsnapd). A session is shared by every
 * thread; each thread works through an engine it takes from the session and gives back. It keeps each
 * domain's snapshot tree in memory while the store's generation and the snapshot directory say it is
 * unchanged (the CLI and other processes change it under the same locks: their changes are seen at the
 * next call), and lets one writer per domain run in the process at a time while readers never wait. */

struct engine_session;

/* OPTS as for engine_new (its progress, opaque and step are ignored: each engine_session_get gives its
 * own). Caller frees with engine_session_free(), after every engine is given back. */
QS_EXPORT struct engine_session *engine_session_new(const struct engine_options *opts, struct qs_error **err);
QS_EXPORT void engine_session_free(struct engine_session *s);
/* The resolved state directory. Borrowed. */
QS_EXPORT const char *engine_session_root(const struct engine_session *s);
/*
 * Keeps each domain's QMP connection open for MS milliseconds after an operation ends (0, the default: a new
 * connection per operation), so that back-to-back operations skip QEMU's greeting and capabilities. QEMU
 * serves one client at a time: another process asking meanwhile waits at most MS for the monitor. Set once,
 * right after engine_session_new.
 */
QS_EXPORT int engine_session_set_qmp_keep(struct engine_session *s, int ms, struct qs_error **err);
/* An engine for the calling thread until engine_session_put(); PROGRESS and STEP (may be NULL) with OPAQUE
 * are its callbacks. Engines are reused: taking one costs no store open. */
QS_EXPORT struct engine *engine_session_get(struct engine_session *s, engine_progress_fn progress,
                                            engine_step_fn step, void *opaque, struct qs_error **err);
QS_EXPORT void engine_session_put(struct engine_session *s, struct engine *e);
/* Waits until no other thread of the process writes DOMAIN, and marks it written by the caller until
 * engine_session_write_end(). Other processes are kept out by the domain's lock, as before. */
QS_EXPORT void engine_session_write_begin(struct engine_session *s, const char *domain);
QS_EXPORT void engine_session_write_end(struct engine_session *s, const char *domain);
/* engine_snapshot_list and engine_snapshot_lookup from the cached tree (loaded again when the store
 * changed). Same results and errors as the engine's own. E is an engine of this session. */
QS_EXPORT int engine_session_snapshot_list(struct engine_session *s, struct engine *e, const char *domain,
                                           unsigned flags, const char *from, struct engine_snapshot_list **out,
                                           struct qs_error **err);
QS_EXPORT int engine_session_snapshot_lookup(struct engine_session *s, struct engine *e, const char *domain,
                                             const char *name, struct engine_snapshot_list **out,
                                             struct qs_error **err);
/* How many snapshots DOMAIN has (cached tree). */
QS_EXPORT int engine_session_snapshot_count(struct engine_session *s, struct engine *e, const char *domain,
                                            size_t *n, struct qs_error **err);


/* A disk as a service shows it: of a domain's definition, or of a snapshot (location then says how the
 * snapshot holds it: "internal", "external", "no", ...; source is an external snapshot's overlay). */
struct engine_disk {
    char *target;   /* "vda" */
    char *source;   /* image file, or NULL */
    char *format;   /* "qcow2", ..., or NULL */
    char *location; /* snapshots only; NULL for a domain's disk */
};
QS_EXPORT void engine_disks_free(struct engine_disk *d, size_t n);
/* DOMAIN's disks (device 'disk') as defined. Caller frees with engine_disks_free(). */
QS_EXPORT int engine_domain_get_disks(struct engine *e, const char *domain, struct engine_disk **disks, size_t *n,
                                      struct qs_error **err);
/* Snapshot NAME's disks and (may be NULL) its memory file (NULL when none; caller frees). */
QS_EXPORT int engine_snapshot_get_disks(struct engine *e, const char *domain, const char *name,
                                        struct engine_disk **disks, size_t *n, char **memory_file,
                                        struct qs_error **err);
/* Which tree of DOMAIN the session now serves: the same number while nothing changed, a new one after any
 * change (by any process), 0 when the tree cannot be cached. Lets a service keep what it made from a tree
 * (a formatted listing) as long as the tree stands. */
QS_EXPORT int engine_session_tree_version(struct engine_session *s, struct engine *e, const char *domain,
                                          uint64_t *version, struct qs_error **err);
/* True while a thread of the process writes DOMAIN (a state query would wait for QEMU's monitor). */
QS_EXPORT bool engine_session_writing(struct engine_session *s, const char *domain);
/* ------------------------------------------------------------------------------------------------ */
/* Schedules, retention, protected snapshots and the event log. Kept in the state directory beside the
 * snapshots (ROOT/schedule/DOM.json, ROOT/events/DOM.jsonl), never inside libvirt's snapshot files: a
 * snapshot carries only qsnap's marks in its <cookie> (which schedule made it, whether it is protected). */

/* What a schedule takes. */
enum engine_schedule_kind {
    ENGINE_SCHEDULE_INTERNAL,  /* RAM and disks inside the qcow2 images (running), disks only (shut off) */
    ENGINE_SCHEDULE_DISK_ONLY, /* external disk-only: an overlay per disk */
    ENGINE_SCHEDULE_LIVE,      /* external with memory, the guest running while its RAM is written (--live) */
    ENGINE_SCHEDULE_MEMSPEC,   /* external with memory, the guest paused for the save (--memspec); the file
                                  is the first disk's image with its extension replaced by ".NAME.mem" */
    ENGINE_SCHEDULE_KIND__LAST
};
/* "internal", "disk-only", "live", "memspec". */
QS_EXPORT const char *engine_schedule_kind_name(enum engine_schedule_kind k);
/* The kind named S, or -1. */
QS_EXPORT int engine_schedule_kind_from_name(const char *s);

/*
 * Retention, Proxmox Backup's rules: each count (0: rule not set) keeps the newest snapshot of that many
 * periods - the last N snapshots, hours, days, ISO weeks, months, years in local time - in this order, each
 * rule looking only at what the earlier ones left; periods without snapshots do not count. MAX_AGE_S (0:
 * none) removes any snapshot older than that, kept or not. No rule at all keeps everything. Protected
 * snapshots are never removed.
 */
struct engine_retention {
    int keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_yearly;
    int64_t max_age_s;
};

/*
 * A schedule of a domain. engine_schedule_set reads the settings (name to min_free_pct); the state below
 * them is filled by engine_schedule_list. Strings are owned by whoever made the struct: the caller for
 * set, the list for list.
 */
struct engine_schedule {
    char *domain;            /* list only */
    char *name;              /* the schedule's name (a name check applies, as for snapshots) */
    char *cron;              /* 5 cron fields, or @hourly @daily @weekly @monthly @yearly */
    enum engine_schedule_kind kind;
    bool quiesce;            /* freeze the guest's filesystems (external kinds, guest agent needed) */
    char *pattern;           /* snapshot name, strftime() of the slot's local time; NULL: "auto-%Y%m%d-%H%M" */
    bool offline;            /* snapshot a shut-off domain (disks only); false: skip it */
    struct engine_retention keep; /* applied to this schedule's snapshots after each successful run */
    int min_free_pct;        /* prune before the snapshot when a disk image's filesystem has less free; 0: 10 */
    /* state (list only) */
    char *expanded;          /* the five cron fields in effect (an alias spread for this domain) */
    int64_t created;         /* when it was set, seconds since the epoch */
    int64_t last_slot;       /* the slot of the last run (0: none yet) */
    int64_t last_run;        /* when that run happened */
    int64_t next_slot;       /* the next slot after last_slot (or created): due once it has come; -1: none */
    char *last_result;       /* "ok", "failed", "skipped"; NULL: never ran */
    char *last_error;        /* the last run's error or skip reason, or NULL */
    char *last_snapshot;     /* the snapshot the last successful run took, or NULL */
};

/* Adds schedule S->name to DOMAIN, or replaces its settings (its run state stays). Checks the cron
 * expression, the pattern (it must make a valid snapshot name) and the kind against the options. */
QS_EXPORT int engine_schedule_set(struct engine *e, const char *domain, const struct engine_schedule *s,
                                  struct qs_error **err);
/* Removes schedule NAME of DOMAIN (QS_ERR_NOTFOUND when there is none). Its snapshots stay. */
QS_EXPORT int engine_schedule_remove(struct engine *e, const char *domain, const char *name,
                                     struct qs_error **err);
/* The schedules of DOMAIN (NULL: of every domain), by domain then name. Caller frees with
 * engine_schedule_list_free(). */
QS_EXPORT int engine_schedule_list(struct engine *e, const char *domain, struct engine_schedule **out, size_t *n,
                                   struct qs_error **err);
QS_EXPORT void engine_schedule_list_free(struct engine_schedule *v, size_t n);

enum engine_run_flags {
    ENGINE_RUN_DUE = 1 << 0, /* only schedules whose slot has come (else: every schedule asked for, now) */
};

/* One schedule's run. */
struct engine_run {
    char *domain, *schedule;
    char *outcome;  /* "ok", "failed", "skipped", "busy" (another run of the domain is under way) */
    int64_t slot;   /* the slot it ran for (seconds since the epoch) */
    long missed;    /* slots it stands for beyond the one taken (a run missed while nothing ran) */
    char *snapshot; /* the snapshot taken, or NULL */
    char *reason;   /* why it ran ("due", "caught up: ...", "asked"), or why it was skipped */
    char *error;    /* the failure, or NULL */
    int pruned;     /* snapshots its prune removed */
};

/*
 * The runner (qsnapd, and `qsnap schedule-run --due` from a systemd timer). For DOMAIN (NULL: every domain
 * with schedules) and SCHEDULE (NULL: all of them): with ENGINE_RUN_DUE each schedule whose next slot has come
 * takes one snapshot - one, also when several slots passed while nothing ran (the event log says how many
 * were missed) - otherwise each runs now. A run prunes the schedule's own snapshots by its retention after
 * a successful snapshot, and before it when a disk image's filesystem is short of space (min_free_pct). A
 * failed run is recorded and retried at the next slot. Runs of one domain never overlap: a run holds the
 * domain's runner lock (a second is "busy") and every operation the domain lock. *out (may be NULL) lists
 * what ran; caller frees with engine_run_list_free(). Returns -1 (err set, the runs still listed) when a run
 * failed or was busy.
 */
QS_EXPORT int engine_schedule_run(struct engine *e, const char *domain, const char *schedule, unsigned flags,
                                  struct engine_run **out, size_t *n, struct qs_error **err);
QS_EXPORT void engine_run_list_free(struct engine_run *v, size_t n);

enum engine_prune_flags {
    ENGINE_PRUNE_DRY_RUN = 1 << 0, /* decide and report, delete nothing */
    ENGINE_PRUNE_MANUAL = 1 << 1,  /* the snapshots no schedule made (never pruned otherwise); needs KEEP */
};

/* What a prune decided for one snapshot. */
enum engine_prune_action {
    ENGINE_PRUNE_KEEP,      /* a rule keeps it */
    ENGINE_PRUNE_REMOVE,    /* removed (or, dry run, would be) */
    ENGINE_PRUNE_PROTECTED, /* protected: kept whatever the rules say */
    ENGINE_PRUNE_KEPT,      /* to be removed, but its delete was refused or failed: kept (error says why) */
    ENGINE_PRUNE_ACTION__LAST
};
/* "keep", "remove", "protected", "kept". */
QS_EXPORT const char *engine_prune_action_name(enum engine_prune_action a);

struct engine_prune_item {
    char *snapshot;
    int64_t creation_time;
    char *schedule;   /* the schedule that made it; NULL: a manual snapshot */
    char *location;   /* "internal" or "external" (an external one's delete merges its overlay) */
    enum engine_prune_action action;
    char *rule;       /* "keep-last", ..., "keep-yearly", "max-age", "none", "protected" */
    char *reason;     /* one line: why ("keep-daily: newest of 2024-03-05 (2 of 7)") */
    char *error;      /* KEPT: the delete's error */
};

/*
 * Prunes DOMAIN's snapshots. The groups: SCHEDULE's snapshots when given (also of a schedule since removed),
 * the manual ones with ENGINE_PRUNE_MANUAL, else each schedule's own. KEEP (NULL: each schedule's own
 * retention; required for MANUAL and for a schedule that no longer exists) decides per group; protected
 * snapshots are kept. Removals go through engine_snapshot_delete, oldest first, one at a time (external
 * snapshots are merged as delete does; one whose delete is refused stays, marked KEPT with the reason); a
 * delete that fails other than by refusal stops the prune there. *out lists every snapshot looked at, newest
 * first per group; caller frees with engine_prune_list_free(). Returns -1 when a delete failed (the list
 * is still filled).
 */
QS_EXPORT int engine_snapshot_prune(struct engine *e, const char *domain, const char *schedule,
                                    const struct engine_retention *keep, unsigned flags,
                                    struct engine_prune_item **out, size_t *n, struct qs_error **err);
QS_EXPORT void engine_prune_list_free(struct engine_prune_item *v, size_t n);

/* Marks snapshot NAME protected (no prune and no delete without ENGINE_DELETE_FORCE removes it), or not. */
QS_EXPORT int engine_snapshot_protect(struct engine *e, const char *domain, const char *name, bool protect,
                                      struct qs_error **err);
/* qsnap's marks of snapshot NAME: whether it is protected and (*schedule, may be NULL; caller frees) the
 * schedule that made it, NULL for a manual snapshot. */
QS_EXPORT int engine_snapshot_marks(struct engine *e, const char *domain, const char *name, bool *protect,
                                    char **schedule, struct qs_error **err);

/*
 * Who asks for the operations this engine runs from now on, recorded in the event log beside the process's
 * uid: qsnapd passes the name of the request's token. NULL clears it. Copied.
 */
QS_EXPORT void engine_set_requester(struct engine *e, const char *name);

/* One entry of a domain's event log. */
struct engine_event {
    int64_t time_ms;   /* when it began, ms since the epoch */
    char *op;          /* "create", "revert", "delete", "prune", "schedule-run", "recover", "protect", ... */
    char *snapshot;    /* or NULL */
    char *outcome;     /* "ok", "failed", "skipped", "busy" */
    int64_t duration_ms;
    char *error;       /* or NULL */
    int64_t pause_us;  /* the guest's pause, -1 when none was measured */
    long uid;          /* the process's uid */
    long pid;
    char *requester;   /* qsnapd's token name, or NULL */
    char *schedule;    /* the schedule it ran for, or NULL */
    char *detail;      /* why, or what it did ("caught up: ...", "kept 7, removed 1"), or NULL */
};

/*
 * DOMAIN's event log since SINCE_MS (ms since the epoch; 0: all that is kept), oldest first. Every operation
 * on a defined domain is appended to it as one JSON line (ROOT/events/DOM.jsonl, rotated by size into .1 .. .3;
 * a line nobody can read is skipped). Caller frees with engine_event_list_free().
 */
QS_EXPORT int engine_events_read(struct engine *e, const char *domain, int64_t since_ms, struct engine_event **out,
                                 size_t *n, struct qs_error **err);
QS_EXPORT void engine_event_list_free(struct engine_event *v, size_t n);

/* A duration: N with a unit s, m, h, d, w or y (365 d), or several ("1d12h"). */
QS_EXPORT int engine_duration_parse(const char *text, int64_t *seconds, struct qs_error **err);
/*
 * A time: seconds since the epoch ("@1700000000"), a local date and time ("2024-03-05", "2024-03-05 10:00",
 * "2024-03-05T10:00:30"), or a duration meaning that long before now by the engine's clock ("2h", "7d").
 */
QS_EXPORT int engine_time_parse(struct engine *e, const char *text, int64_t *ms, struct qs_error **err);
/* ---------------------------------------------------------------------------------------------------
 * The QEMU behind a domain (qemuinfo.c).
 */
struct engine_qemu_info {
    char *version;   /* "10.0.2", as QEMU reports it (query-version, in the QMP greeting) */
    char *package;   /* the distribution's package string, possibly "" */
    char **features; /* NULL-terminated: what qsnap would use that this QEMU has - "file-migration",
                        "background-snapshot", "mapped-ram", "multifd", "direct-io", and behaviours such as
                        "background-snapshot-keeps-paused" (the qmp_feature names) */
};
/* Asks the running QEMU of domain NAME (QS_ERR_STATE when it is off). INFO is filled; release it with
 * engine_qemu_info_release() (also after a failure: it is left empty). */
QS_EXPORT int engine_domain_qemu_info(struct engine *e, const char *name, struct engine_qemu_info *info,
                                      struct qs_error **err);
QS_EXPORT void engine_qemu_info_release(struct engine_qemu_info *info);

/* ---------------------------------------------------------------------------------------------------
 * For front ends that run schedules domain by domain (qsnapd serialises each domain's writers).
 */
/* What engine_schedule_run reports for runs V: 0 when none failed (ok or skipped), else -1 with "N of M schedule
 * runs failed" - QS_ERR_BUSY when every failure was a refusal for a run under way, QS_ERR_STATE otherwise. */
QS_EXPORT int engine_run_list_check(const struct engine_run *v, size_t n, struct qs_error **err);

#ifdef __cplusplus
}
#endif
#endif
