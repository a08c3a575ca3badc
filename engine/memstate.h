/* memstate.h: a VM's memory and device state to and from an open file, through QEMU's fd: migration. */
#ifndef QS_ENGINE_MEMSTATE_H
#define QS_ENGINE_MEMSTATE_H

#include <stdbool.h>
#include <stdint.h>

#include "engine_priv.h"
#include "qmp.h"
#include "qs_error.h"

struct memstate_options {
    int timeout_ms;              /* the whole migration; 0: no limit */
    int poll_ms;                 /* progress polling between MIGRATION events; 0: 100 */
    const char *phase;           /* progress phase word; NULL: "save" / "restore" */
    engine_progress_fn progress; /* may be NULL; non-zero cancels a save (not a load: QEMU cannot stop one) */
    void *opaque;
    bool background;             /* save only: QEMU's background-snapshot capability (see memstate_save) */
    bool plain;                  /* save only: never mapped-ram (by default a save that is not background uses
                                    mapped-ram + multifd where QEMU has them, for disk speed) */
    int downtime_ms;             /* save only, > 0: QEMU's downtime-limit for this save - a pre-copy ends (the
                                    guest stopped) only once what is left takes no longer to write */
    int converge_passes;         /* save only, > 0 with FORCED: a pre-copy of a running guest still active
                                    after this many passes over its RAM stops the guest (*forced = true) */
    bool *forced;
    const struct memstate_header *header; /* load only, may be NULL: the file's header, checked against the
                                             QEMU first (memstate_load_check) */
    const char *path;            /* load only: the file's name for messages */
};

/*
 * Writes the state of the VM behind C into FD, from FD's current offset on: getfd (SCM_RIGHTS), the
 * "events" capability on, max-bandwidth raised, migrate {"uri": "fd:NAME"}, then MIGRATION events and
 * query-migrate until the status is completed (progress from ram.transferred / ram.total). failed and
 * cancelled are errors with QEMU's error-desc (QS_ERR_QEMU), a cancel asked by the callback is
 * QS_ERR_CANCELLED, passing opts->timeout_ms is QS_ERR_TIMEOUT (the migration is cancelled first).
 * The fd name is always closed in QEMU and the capability and bandwidth are set back as they were.
 * FD stays the caller's (QEMU has its own copy). A paused VM stays paused: for a non-live save, stop the
 * VM first; either way QEMU ends in run state "postmigrate" on success, and "cont" resumes it if needed.
 * opts may be NULL.
 *
 * opts->background: the "background-snapshot" capability is on for this save (and set back after it). QEMU
 * then stops the VM (no-op when it is already stopped), writes the device state, write-protects the RAM
 * (userfaultfd) and RESUMES the VM, whatever its run state was (a STOP / RESUME event pair), then writes the
 * RAM as it was at that instant while the guest runs. The images stay active; the run state ends
 * "running", not "postmigrate". Check with memstate_live_check first: a refused capability fails here.
 */
int memstate_save(struct qmp_client *c, int fd, const struct memstate_options *opts, struct qs_error **err);

/*
 * memstate_save in two halves, so that what needs no pause (capabilities, bandwidth, passing the fd) is
 * done before the guest is stopped: begin, then finish with RUN (migrate and wait) or without (only undo
 * what begin set). finish must follow every begin, also a failed one.
 */
struct mig_channel;
struct memstate_save_ctx {
    bool begun, fd_sent, started;
    struct mig_channel *chan; /* how QEMU got the file (getfd + fd:, or add-fd + file:) */
    struct mig_saved {
        bool events, have_events;
        bool background, have_background;
        int64_t bandwidth;
        bool have_bandwidth;
        bool mapped, have_mapped;     /* mapped-ram */
        bool multifd, have_multifd;
        int64_t channels;             /* multifd-channels */
        bool have_channels;
        int64_t downtime;             /* downtime-limit, ms */
        bool have_downtime;
    } saved;
    bool mapped_ram; /* the stream is written in mapped-ram form (mark the header: memstate_header_mark) */
};
/* Waits up to TIMEOUT_MS for a migration someone else started (recovery after its process died) to end;
 * *status gets its last state word ("completed", "failed", "cancelled", "none"). Caller frees. */
int memstate_settle(struct qmp_client *c, int timeout_ms, char **status, struct qs_error **err);

int memstate_save_begin(struct qmp_client *c, int fd, const struct memstate_options *opts,
                        struct memstate_save_ctx *s, struct qs_error **err);
int memstate_save_finish(struct qmp_client *c, struct memstate_save_ctx *s, bool run,
                         const struct memstate_options *opts, struct qs_error **err);
/* Only the migrate command of a begun save (finish with RUN then waits for it): for a caller that must act
 * between QEMU accepting the migration and its end (the live snapshot). */
int memstate_save_start(struct qmp_client *c, struct memstate_save_ctx *s, struct qs_error **err);
/*
 * After memstate_save_start of a background save: returns once QEMU has captured the VM (devices saved, RAM
 * write-protected) - never earlier, so a guest stopped before the migrate may be resumed now without running
 * between the caller's disk switch and the capture. QEMU before 9.0 resumes the guest itself at that
 * point: *resume_us gets its RESUME event's timestamp; from 9.0 a guest that was paused stays paused and
 * *resume_us is -1 (the capture is seen in query-migrate: the first RAM page written after it). A failed
 * migration is QS_ERR_QEMU; TIMEOUT_MS (0: 10 minutes) passing is QS_ERR_TIMEOUT.
 */
int memstate_capture_wait(struct qmp_client *c, int timeout_ms, int64_t *resume_us, struct qs_error **err);
/*
 * A begun save, started if it is not yet, run to its end while the guest runs (pre-copy): QEMU copies the RAM
 * in passes, stops the guest for the last dirty pages and the devices, and ends in "postmigrate" - the guest
 * stopped at the instant the file holds. opts->converge_passes / forced bound the passes. Settings are set
 * back by memstate_save_finish (RUN: the migration is over by then), which the caller may leave until after
 * the pause.
 */
int memstate_save_wait(struct qmp_client *c, struct memstate_save_ctx *s, const struct memstate_options *opts,
                       struct qs_error **err);

/*
 * Whether a background save can work on C's QEMU: it has the "background-snapshot" capability and accepts
 * it (QEMU checks the host's userfaultfd write-protect support and the guest's memory: file-backed or
 * shared RAM is refused). Sets it on and back off; changes nothing else. QS_ERR_UNSUPPORTED with QEMU's
 * reason when not; other codes for a failed QMP exchange.
 */
int memstate_live_check(struct qmp_client *c, struct qs_error **err);
/*
 * Whether a pre-copy save (memstate_save_wait while the guest runs) captures every guest write on C's QEMU
 * (QMP_FEATURE_PRECOPY_COHERENT): QS_ERR_UNSUPPORTED with the reason when not (TCG before QEMU 9.0 loses
 * writes), other codes for a failed QMP exchange. Changes nothing.
 */
int memstate_precopy_check(struct qmp_client *c, struct qs_error **err);

/*
 * Loads a state written by memstate_save from FD's current offset into a QEMU started with -incoming defer
 * (engine_qemu_start_incoming): getfd + migrate-incoming {"uri": "fd:NAME"}, waits for completed. The VM is
 * then paused (it was started with -S): "cont" it if wanted. A failed load ends the QEMU process (QEMU 7.2
 * exits when an incoming migration fails): QS_ERR_QEMU or QS_ERR_DISCONNECTED. opts may be NULL.
 */
int memstate_load(struct qmp_client *c, int fd, const struct memstate_options *opts, struct qs_error **err);

/*
 * engine_qemu_start with "-incoming defer" and -S: QEMU waits in run state "inmigrate" for
 * migrate-incoming. Implemented in engine.c next to engine_qemu_start (declared here, not in
 * engine_priv.h, to keep that header's owner's file untouched; move it there when convenient).
 */
int engine_qemu_start_incoming(struct engine *e, struct md_domain *dom, const struct md_lock *lock,
                               struct qmp_client **c, struct qs_error **err);

/* ---------------------------------------------------------------------------------------------------
 * The save file: qsnap's header, then QEMU's migration stream. All integers big-endian:
 *
 *   0  8  magic "QSNAPSAV"
 *   8  4  version, MEMSTATE_VERSION (version 1 files, without the writer field, are still read)
 *  12  4  flags: bit 0 = run the guest after a restore, bit 1 = the stream is in mapped-ram form
 *  16  8  offset of the migration stream: fixed part + name + xml + writer rounded up to 4096
 *  24  4  length of the domain name (at most QS_NAME_MAX)
 *  28  4  length of the domain XML (at most MEMSTATE_XML_MAX)
 *  32  4  length of the writer field (version 2; at most MEMSTATE_WRITER_MAX)
 *  36  4  zero
 *  40     the name, the XML (no NULs), the writer ("qemu=10.0.2\nmachine=pc-i440fx-10.0\n": the QEMU that wrote
 *         the stream and its machine type - QEMU loads a state only into the same machine type, and not
 *         the state of a newer QEMU), zeros up to the stream, which starts with QEMU's "QEVM"
 */
#define MEMSTATE_MAGIC "QSNAPSAV"
#define MEMSTATE_VERSION 2u
#define MEMSTATE_FLAG_RUNNING 1u
#define MEMSTATE_FLAG_MAPPED_RAM 2u
#define MEMSTATE_XML_MAX (16u << 20)
#define MEMSTATE_WRITER_MAX 1024u

struct memstate_header {
    char *domain;         /* caller frees with memstate_header_release() */
    char *xml;
    bool running;
    bool mapped_ram;      /* the stream needs QEMU's mapped-ram capability to be read */
    uint64_t data_offset;
    unsigned version;     /* the header's version */
    char *qemu_version;   /* the QEMU that wrote it ("7.2.22"), NULL in a version 1 file */
    char *machine;        /* its machine type ("pc-i440fx-7.2"), NULL in a version 1 file */
};

/* What the header says of the QEMU that writes the stream: its version and resolved machine type (QOM's
 * /machine type), asked of C. Both caller-freed. */
int memstate_writer_get(struct qmp_client *c, char **qemu_version, char **machine, struct qs_error **err);

/* Writes the header at offset 0 of FD and leaves the offset at the stream's start. PATH names FD in errors.
 * C is the QEMU that will write the stream (for the writer field). */
int memstate_header_write(int fd, const char *path, const char *domain, const char *xml, bool running,
                          struct qmp_client *c, struct qs_error **err);
/* After memstate_save_begin chose mapped-ram (s->mapped_ram): sets the header's flag in FD (pwrite). */
int memstate_header_mark(int fd, const char *path, bool running, bool mapped_ram, struct qs_error **err);
/* Reads and checks the header (and QEMU's stream magic after it) from FD and leaves the offset at the
 * stream's start. A file that is not a qsnap save file is QS_ERR_INVALID. */
int memstate_header_read(int fd, const char *path, struct memstate_header *h, struct qs_error **err);
void memstate_header_release(struct memstate_header *h);

/*
 * Before a QEMU is started to load the state in H: DOM's recorded command line gets the machine type the
 * state was written with (an alias such as "pc" or a missing -machine resolves to the newest type of the
 * QEMU that runs it, and QEMU loads a state only into the type it was saved from: a 7.2 state loads into
 * QEMU 10 as pc-i440fx-7.2). Changes DOM in memory only; nothing for a version 1 header.
 */
int memstate_pin_machine(struct md_domain *dom, const struct memstate_header *h, struct qs_error **err);
/*
 * Whether C's QEMU (started for it) can load the state in H, the file at PATH: QS_ERR_UNSUPPORTED with the
 * reason when it was written by a newer QEMU, in another machine type, or with mapped-ram this QEMU lacks.
 */
int memstate_load_check(struct qmp_client *c, const struct memstate_header *h, const char *path,
                        struct qs_error **err);

/*
 * What a migration whose process died leaves in C's QEMU, dropped: the capabilities a save or load turns on
 * for itself (background-snapshot, mapped-ram, multifd) set back to off, QEMU's default - nothing knows any
 * more what they were, and left on they break a later stream (fd:, a background snapshot) - and the file's
 * descriptor (add-fd's fdset, a getfd name). Call it when no migration runs (memstate_settle).
 */
int memstate_leftovers_drop(struct qmp_client *c, struct qs_error **err);

struct intent;
/*
 * Finishes or undoes a save or restore whose process died, from its record IT (recover.c calls it with the
 * domain's QEMU in *c, or NULL; it may quit it): a save is finished once its file is whole (renamed into
 * place, QEMU ended), else the temporary goes and the VM gets its run state back; a restore keeps a QEMU
 * whose state came in (run as asked) and ends one still waiting for it.
 */
int memstate_recover(struct engine *e, const struct intent *it, struct qmp_client **c, struct qs_error **err);

#endif
