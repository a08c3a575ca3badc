/* qemu_harness.h: run real QEMU with qsnap's counter guest for tests - disks, process, QMP, guest-visible checks. */
#ifndef QEMU_HARNESS_H
#define QEMU_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "qmp.h"
#include "qs_error.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * The guest (tests/guest/counter.asm) counts in RAM at QH_COUNTER_ADDR (64-bit, as two dwords) and keeps
 * QH_COUNTER_MAGIC in the dword at QH_COUNTER_ADDR + 8.
 */
#define QH_COUNTER_ADDR 0x9000u
#define QH_COUNTER_MAGIC 0x51534e50u

/* ---------------------------------------------------------------------------------------------------
 * Environment.
 */

/* true when qemu-system-x86_64, qemu-img and qemu-io are in PATH (tests skip otherwise: qt_skip.h). */
bool qh_qemu_available(void);
/* The guest boot sector: $QSNAP_GUEST (set by ctest). Borrowed; NULL when unset. */
const char *qh_guest_path(void);

/* ---------------------------------------------------------------------------------------------------
 * Images (no QEMU process needed). Paths are used as given; existing files are replaced.
 */

/* A FORMAT ("qcow2" or "raw") image of SIZE bytes that boots the guest (boot sector at offset 0). */
int qh_image_create_boot(const char *path, const char *format, uint64_t size, struct qs_error **err);
/* A blank FORMAT image of SIZE bytes (qemu-img create). */
int qh_image_create_blank(const char *path, const char *format, uint64_t size, struct qs_error **err);
/*
 * Checks with qemu-io (read-only, -U so it works while QEMU holds the image) that LEN bytes at OFF of the
 * image at PATH, read through FORMAT, all equal PATTERN. Returns 1 match, 0 mismatch, -1 error.
 */
int qh_image_check(const char *path, const char *format, uint8_t pattern, uint64_t off, uint64_t len,
                   struct qs_error **err);

/*
 * Reads LEN bytes at OFF of the image at PATH through FORMAT into BUF (qemu-io -r -U "read -v", so QEMU may
 * hold the image; what QEMU has not flushed yet is not there: read images QEMU no longer writes).
 */
int qh_image_read(const char *path, const char *format, uint64_t off, size_t len, uint8_t *buf,
                  struct qs_error **err);

/* ---------------------------------------------------------------------------------------------------
 * A VM: a private temporary directory, its disks, and at most one QEMU process at a time.
 *
 * QEMU gets two QMP monitors: qh_vm_socket_path() is left free for the code under test (qsnap, a test's
 * own qmp_client), and the harness keeps its own client on a second socket (qh_vm_qmp()). QEMU serves
 * one client per monitor, so the two never block each other.
 *
 * Node names: disk ID has a format node "ID" over a file node "file-ID"; the device is
 * virtio-blk-pci with qdev id "ID" (qemu-io path "ID/virtio-backend").
 */

/*
 * How QEMU is given its disks: the ways users start it. Each disk ID's image is DIR/ID.FORMAT (or
 * qh_disk.path); the boot disk boots the guest in every style. BLKNAME below is the disk's BlockBackend name
 * in query-block ("device"), N the disk's index in the config.
 */
enum qh_style {
    QH_STYLE_BLOCKDEV,        /* -blockdev file node "file-ID" + format node "ID", -device virtio-blk-pci,
                                 drive=ID,id=ID (qdev_id overrides the id) - the harness's classic form */
    QH_STYLE_DRIVE_VIRTIO,    /* -drive file=IMAGE,if=virtio (BLKNAME virtioN) */
    QH_STYLE_DRIVE_NONE,      /* -drive if=none,id=drive-ID + -device virtio-blk-pci,drive=drive-ID,
                                 id=virtio-diskN (libvirt's alias, not a target name) */
    QH_STYLE_DRIVE_NONE_NOID, /* the same, the -device without an id (unless qdev_id) */
    QH_STYLE_IDE,             /* -drive file=IMAGE,if=ide on pc (BLKNAME ide<bus>-hd<unit>) */
    QH_STYLE_IDE_HD,          /* -blockdev as QH_STYLE_BLOCKDEV + -device ide-hd,bus=ide.<N/2>,unit=<N%2>,
                                 id=ide0-<N/2>-<N%2> on pc */
    QH_STYLE_SCSI_HD,         /* -device virtio-scsi-pci,id=scsi0, -drive if=none,id=drive-ID + -device
                                 scsi-hd,bus=scsi0.0,scsi-id=0,lun=N (no id unless qdev_id) */
    QH_STYLE_AHCI,            /* -machine q35, -device ahci,id=ahci0, -drive if=none,id=drive-ID + -device
                                 ide-hd,bus=ahci0.N,id=sata0-0-N */
    QH_STYLE_HDA,             /* -hda / -hdb / -hdc / -hdd IMAGE (at most 4 disks) */
    QH_STYLE_LAST
};

/* The style's name ("blockdev", "drive-virtio", "drive-none", "drive-none-noid", "ide", "ide-hd", "scsi-hd",
 * "ahci", "hda"); NULL out of range. Borrowed. */
const char *qh_style_name(int style);
/* The style named NAME, or -1. */
int qh_style_from_name(const char *name);

struct qh_disk {
    const char *id;      /* qdev id and format node name, e.g. "vda"; unique per VM */
    const char *format;  /* "qcow2" (default when NULL) or "raw" */
    uint64_t size;       /* virtual size; 0: 64 MiB */
    bool boot;           /* made from the guest boot sector and given bootindex=0; else blank */
    const char *path;    /* existing image to attach as is (not created, not removed); NULL: create
                            DIR/ID.FORMAT */
    const char *qdev_id; /* styles with a -device: its id=; NULL: the style's default (enum qh_style) */
};

struct qh_vm_config {
    int mem_mb;                     /* guest RAM; 0: 128 */
    const struct qh_disk *disks;    /* NULL / n_disks 0: one boot disk {"vda", qcow2, 64 MiB} */
    size_t n_disks;
    bool paused;                    /* -S: the guest does not run until "cont" */
    bool incoming_defer;            /* -incoming defer */
    const char *const *extra_args;  /* NULL-terminated, appended to QEMU's argv; may be NULL */
    int start_timeout_ms;           /* QEMU up and both monitors connectable; 0: 30000 */
    int style;                      /* enum qh_style: how QEMU is given its disks; 0: QH_STYLE_BLOCKDEV */
    bool relative_paths;            /* created images named relative to DIR, and QEMU's cwd is DIR */
    bool daemonize;                 /* -daemonize: QEMU is not the harness's child (see qh_vm_adopt) */
};

struct qh_vm;

/*
 * Creates a temporary directory (mkdtemp under $TMPDIR or /tmp), the disks, and starts QEMU
 * (fork/exec with an argv; stdout and stderr go to DIR/qemu.log; QEMU gets SIGKILL if the test process
 * dies). Returns once the harness's QMP client is connected. cfg may be NULL for the defaults.
 * Start VMs from a thread that outlives them: QEMU's death signal fires when the forking thread exits.
 * Caller frees with qh_vm_free().
 */
struct qh_vm *qh_vm_start(const struct qh_vm_config *cfg, struct qs_error **err);
/*
 * Starts QEMU again with the same disks (after qh_vm_stop/qh_vm_kill or an exit), with PAUSED and
 * INCOMING_DEFER overriding the config's. Fails with QS_ERR_STATE while QEMU runs.
 */
int qh_vm_restart(struct qh_vm *vm, bool paused, bool incoming_defer, struct qs_error **err);
/*
 * Ends QEMU: "quit" over the harness's monitor, then SIGKILL if it has not exited after TIMEOUT_MS
 * (0: 10000); always reaped. No-op when QEMU is not running. Returns 0 when QEMU exited by itself.
 */
int qh_vm_stop(struct qh_vm *vm, int timeout_ms, struct qs_error **err);
/* SIGKILL and reap (crash tests). No-op when QEMU is not running. */
void qh_vm_kill(struct qh_vm *vm);
/*
 * Waits up to TIMEOUT_MS for QEMU to exit on its own (reaping it); *status gets the waitpid status
 * when non-NULL. QS_ERR_TIMEOUT if it is still running. 0 at once when it had already been reaped.
 */
int qh_vm_wait_exit(struct qh_vm *vm, int timeout_ms, int *status, struct qs_error **err);
/* Kills QEMU if running, removes the directory (unless $QSNAP_KEEP_TMP is set) and frees. Accepts NULL. */
void qh_vm_free(struct qh_vm *vm);

/* pid of the running QEMU, or -1. */
pid_t qh_vm_pid(const struct qh_vm *vm);
/* true while QEMU runs (checked with waitpid WNOHANG, reaping an exited QEMU). */
bool qh_vm_running(struct qh_vm *vm);
/* The test's QMP socket (not used by the harness). Borrowed. */
const char *qh_vm_socket_path(const struct qh_vm *vm);
/* The VM's temporary directory. Borrowed. */
const char *qh_vm_dir(const struct qh_vm *vm);
/* QEMU's log (stdout + stderr), DIR/qemu.log. Borrowed. */
const char *qh_vm_log_path(const struct qh_vm *vm);
/* The argv QEMU was last started with, NULL-terminated (argv[0] is "qemu-system-x86_64"). Borrowed. */
char *const *qh_vm_argv(const struct qh_vm *vm);
/* Image path of disk ID, or NULL. Borrowed. */
const char *qh_vm_disk_path(const struct qh_vm *vm, const char *id);

/*
 * The harness's own QMP client (on its private monitor), connected while QEMU runs; NULL otherwise.
 * Borrowed: do not free. Usable for anything; events of every kind are queued on it.
 */
struct qmp_client *qh_vm_qmp(struct qh_vm *vm);

/* ---------------------------------------------------------------------------------------------------
 * Guest-visible state.
 */

/*
 * Reads the guest counter with HMP "xp". QS_ERR_STATE when the magic is not there (guest not booted yet,
 * or not the counter guest). The two dwords are read while the guest may run: a reading taken just as the
 * low dword wraps (every ~15 s at TCG speed) can be 2^32 short. Stop the guest for exact values.
 */
int qh_vm_read_counter(struct qh_vm *vm, uint64_t *value, struct qs_error **err);
/*
 * Waits until the guest has booted and the counter has moved past its first reading (and *value, when
 * non-NULL, the last reading). QS_ERR_TIMEOUT after TIMEOUT_MS (0: 60000).
 */
int qh_vm_wait_counter_advancing(struct qh_vm *vm, int timeout_ms, uint64_t *value, struct qs_error **err);

/*
 * Writes LEN bytes of PATTERN at OFF through the guest device of disk ID (HMP qemu-io on
 * "ID/virtio-backend"), confirmed from QEMU's log.
 */
int qh_vm_disk_write(struct qh_vm *vm, const char *id, uint8_t pattern, uint64_t off, uint64_t len,
                     struct qs_error **err);
/*
 * Reads LEN bytes at OFF of block node NODE (e.g. "vda", or an overlay's node) through a temporary
 * read-only NBD export and checks they all equal PATTERN. Returns 1 match, 0 mismatch, -1 error.
 * Uses QEMU's one NBD server (on DIR/nbd.sock, stopped again before returning): fails if the code under
 * test has an NBD server running.
 */
int qh_vm_disk_check(struct qh_vm *vm, const char *node, uint8_t pattern, uint64_t off, uint64_t len,
                     struct qs_error **err);

/* ---------------------------------------------------------------------------------------------------
 * Every style (enum qh_style): a QEMU the harness did not start, and the guest's disks found by their
 * device rather than by a node name.
 */

/*
 * Takes as this VM's a QEMU someone else started with the VM's command line (qsnap's start, restore or
 * external revert; the harness's own monitor, DIR/harness.sock, is in that command line): connects the
 * harness's client there, within TIMEOUT_MS (0: 30000), and takes the pid from the socket's peer. From then
 * on the VM's functions work on that QEMU as on the harness's own (qh_vm_stop, qh_vm_kill, qh_vm_free end
 * it; a watchdog process kills it should the test process die first). QS_ERR_STATE while the VM's QEMU
 * still runs.
 */
int qh_vm_adopt(struct qh_vm *vm, int timeout_ms, struct qs_error **err);

/*
 * Disk ID's device in the running QEMU, found in query-block by the BlockBackend name or qdev id its style
 * gave it (so it holds after external snapshots and restarts): *qdev gets what "qemu-io -d" takes (the qdev
 * id or QOM path), *node its top block node (QEMU's generated "#blockN" for -drive disks), *file its top
 * image as QEMU names it (relative when the command line was; from a "json:{...}" name, its file.filename).
 * Any may be NULL. Caller frees them.
 */
int qh_vm_disk_device(struct qh_vm *vm, const char *id, char **qdev, char **node, char **file,
                      struct qs_error **err);

/*
 * Writes LEN bytes of PATTERN at OFF through the guest device of disk ID, in any style (HMP qemu-io -d on
 * the device qh_vm_disk_device finds), confirmed from QEMU's log where the harness started QEMU itself, else
 * by reading them back through the device's top node (a -daemonize QEMU prints qemu-io's results nowhere).
 */
int qh_vm_guest_write(struct qh_vm *vm, const char *id, uint8_t pattern, uint64_t off, uint64_t len,
                      struct qs_error **err);

/* A run of LEN bytes at OFF that should all be PATTERN. */
struct qh_extent {
    uint64_t off;
    uint64_t len;
    uint8_t pattern;
};

/*
 * Checks N extents of what the guest sees on disk ID (its device's top node, read through a temporary NBD
 * export as qh_vm_disk_check does) in one qemu-io run. Returns 1 when all match, 0 when some do not (then
 * ok[i], when OK is non-NULL, tells which), -1 on error.
 */
int qh_vm_guest_check(struct qh_vm *vm, const char *id, const struct qh_extent *ext, size_t n, bool *ok,
                      struct qs_error **err);

/*
 * Reads LEN bytes at OFF of what the guest sees on disk ID into BUF (its device's top node through a
 * temporary NBD export, as qh_vm_guest_check). Stop the guest first for bytes of one instant.
 */
int qh_vm_guest_read(struct qh_vm *vm, const char *id, uint64_t off, size_t len, uint8_t *buf,
                     struct qs_error **err);

/* The same for the image file at PATH (qemu-io -r -U, so QEMU may hold it). */
int qh_image_check_extents(const char *path, const char *format, const struct qh_extent *ext, size_t n,
                           bool *ok, struct qs_error **err);

/* true when PROG is an executable in PATH (for tests that need a tool such as virsh). */
bool qh_program_available(const char *prog);

/* The harness's monitor socket, DIR/harness.sock (what a QEMU started from the VM's argv listens on). */
const char *qh_vm_harness_socket_path(const struct qh_vm *vm);

/*
 * Fills guest RAM [1 MiB, 1 MiB + FILL_MB MiB) of VM's QEMU with non-zero pseudo-random data (xorshift64*: no
 * page is zero, none repeats) through /proc/PID/mem, at the host address HMP gpa2hva gives: a guest whose
 * RAM takes real time to save and load. The counter guest's code and counter live below 1 MiB.
 */
int qh_vm_fill_ram(struct qh_vm *vm, int fill_mb, struct qs_error **err);

#ifdef __cplusplus
}
#endif
#endif
