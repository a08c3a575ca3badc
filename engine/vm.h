/* vm.h: what the engine asks of a live QEMU (status, block devices) and of its process (spawn, kill). */
#ifndef QS_ENGINE_VM_H
#define QS_ENGINE_VM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "qmp.h"
#include "qs_error.h"

/* A block device as query-block shows it. */
struct vm_block {
    char *device;   /* qdev id ("vda" from /machine/peripheral/vda/...), else the drive id */
    char *qdev;     /* the guest device as query-block names it: its id ("sda") or QOM path; NULL if none */
    char *drive;    /* the -drive id ("drive0", or QEMU's "virtio0", "ide0-hd0"); NULL for -blockdev */
    char *node;     /* node-name of the top (format) node */
    char *file;     /* image file of the top node */
    char *format;   /* "qcow2", "raw", ... */
    bool readonly;
    int64_t backing_depth;
    int64_t virtual_size; /* of the top node's image, bytes; 0 when QEMU did not say */
    char **tags;    /* internal snapshot names in the image, NULL-terminated */
    char **tag_ids; /* their QEMU ids ("1", "2", ...), same order */
    int64_t *vmstate_sizes; /* vm-state-size for each tag */
};

void vm_block_release(struct vm_block *b);
void vm_blocks_free(struct vm_block *b, size_t n);

/*
 * Connects to a domain's QMP socket. A missing socket or one nobody listens on (QEMU gone) is
 * QS_ERR_NOTFOUND at once, not after retries, so callers can tell "shut off" from "broken".
 */
int vm_connect(const char *socket_path, int timeout_ms, struct qmp_client **c, struct qs_error **err);
/* query-status: *status is QEMU's run state word (borrowed from a static table or copied: caller frees). */
int vm_status(struct qmp_client *c, char **status, bool *running, struct qs_error **err);
/* query-block: every device with a medium. Caller frees with vm_blocks_free(). */
int vm_blocks(struct qmp_client *c, struct vm_block **blocks, size_t *n, struct qs_error **err);
/* vm_status and vm_blocks in one round trip. */
int vm_status_blocks(struct qmp_client *c, char **status, bool *running, struct vm_block **blocks, size_t *n,
                     struct qs_error **err);
/* The block whose device id or node name is NAME, or NULL. */
const struct vm_block *vm_blocks_find(const struct vm_block *b, size_t n, const char *name);
/* Whether TAG is among b's internal snapshots. */
bool vm_block_has_tag(const struct vm_block *b, const char *tag);
/*
 * QEMU's loadvm looks a tag up by id before name: TAG is ambiguous when some other snapshot's id is TAG.
 * Returns that snapshot's name (borrowed) or NULL.
 */
const char *vm_block_tag_clash(const struct vm_block *b, const char *tag);
int vm_stop(struct qmp_client *c, struct qs_error **err);

/* Block graph. */

/* Every node name QEMU has (query-named-block-nodes). Caller frees with qs_strv_free(). */
int vm_node_names(struct qmp_client *c, char ***names, struct qs_error **err);
/* One node of a backing chain, top first. */
struct vm_chain_node {
    char *node;   /* format node name */
    char *file;   /* its image file */
    char *format; /* "qcow2", "raw", ... */
};
void vm_chain_free(struct vm_chain_node *chain, size_t n);
/* The backing chain under format node TOP, TOP first, read from QEMU's block graph. Caller frees with
 * vm_chain_free(). */
int vm_chain(struct qmp_client *c, const char *top, struct vm_chain_node **chain, size_t *n,
             struct qs_error **err);
/* blockdev-add of a qcow2 image FILE as node NODE with no backing opened (backing: null). */
int vm_blockdev_add_qcow2(struct qmp_client *c, const char *node, const char *file, struct qs_error **err);
int vm_blockdev_del(struct qmp_client *c, const char *node, struct qs_error **err);
/*
 * Asks the kernel to back the guest RAM of the QEMU behind C (the mapping of the RAM block that holds guest
 * address 1 MiB, found with HMP gpa2hva and /proc/PID/maps) with transparent huge pages again:
 * process_madvise(MADV_COLLAPSE), while the guest runs. A background snapshot's write protection splits them,
 * and QEMU's setup of the next one, inside the guest's pause, write-protects page by page then: measured at
 * 1 GiB on QEMU 7.2 under TCG, a pause of 1,265-1,935 ms on split pages against 23-25 ms after a collapse
 * (which took 83-574 ms). Best effort (QEMU on another host, THP off, no CAP_SYS_NICE, Linux before 6.1: nothing
 * happens): the bytes collapsed, or -1.
 */
long long vm_ram_collapse(struct qmp_client *c);
/* Makes the (empty, existing) file FILE a qcow2 image of SIZE bytes on BACKING (format BACKING_FMT), written
 * by QEMU itself: a blockdev-create job, the file opened only for the job. What `qemu-img create -f qcow2 -b
 * BACKING -F BACKING_FMT FILE` makes, without starting a process (~20 ms of CPU here). */
int vm_blockdev_create_qcow2(struct qmp_client *c, const char *file, const char *backing, const char *backing_fmt,
                             int64_t size, int timeout_ms, struct qs_error **err);
int vm_cont(struct qmp_client *c, struct qs_error **err);

/*
 * Starts ARGV as a daemon that outlives this process (new session, stdin /dev/null, stdout and stderr
 * appended to LOG_PATH, working directory CWD when not NULL) and returns its pid once exec succeeded (an
 * exec failure, and a CWD it cannot enter, are reported).
 */
int vm_spawn(char *const argv[], const char *cwd, const char *log_path, pid_t *pid, struct qs_error **err);
/* Sends SIGKILL to PID when it is a QEMU process (its /proc/PID/exe names qemu-system-*). */
int vm_kill(pid_t pid, struct qs_error **err);
/* NULL-terminated argv read from /proc/PID/cmdline. Caller frees with qs_strv_free(). */
int vm_read_cmdline(pid_t pid, char ***argv, struct qs_error **err);

#endif
