/* qsnap_test.h: cmocka helpers for integration tests that drive the qsnap binary against a harness VM. */
#ifndef QSNAP_TEST_H
#define QSNAP_TEST_H

/* cmocka.h needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <sys/types.h>

#include "qemu_harness.h"
#include "qmp.h"
#include "qs_error.h"
#include "qt_skip.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bytes every pattern write and check covers. */
#define QT_LEN (64u * 1024u)

/*
 * A test's VM and its qsnap: pass a static one as cmocka's prestate to qt_setup / qt_teardown. Only cfg and
 * agent are set by the test; the rest is the fixture's. Without QEMU (or $QSNAP_BUILD_DIR) setup leaves vm
 * NULL and qt_fixture_of() skips the test.
 */
struct qt_fixture {
    const struct qh_vm_config *cfg;
    bool agent;     /* give the VM a guest agent channel (the counter guest runs no agent: nobody answers) */
    struct qh_vm *vm;
    char *root;     /* qsnap --root, DIR/root */
    char *qsnap;    /* the binary, $QSNAP_BUILD_DIR/cli/qsnap */
    pid_t daemon;   /* a QEMU qsnap started (not the harness's child), SIGKILLed at teardown when > 0 */
    char *tmp;      /* with agent: the directory of the agent's socket */
    char *chardev;  /* with agent: the -chardev argument */
};

/* The usual VM: boot disk vda (qcow2, 64 MiB) and a blank qcow2 vdb of 16 MiB. */
extern const struct qh_vm_config qt_cfg_two_disks;

int qt_setup(void **state);
int qt_teardown(void **state);
/* The fixture of a test; when setup found no QEMU: a failure under $QSNAP_REQUIRE_QEMU=1, else a skip. */
struct qt_fixture *qt_fixture_of(void **state);

/* The -chardev / -device arguments of a guest agent channel on CHARDEV ("socket,...,id=qga0"), NULL-terminated
 * in EXTRA[0..6]. */
void qt_agent_args(const char *extra[7], const char *chardev);

/* Fails the test at FILE:LINE with *err's message when RC < 0 (and clears *err). */
void qt_check(int rc, struct qs_error **err, const char *what, const char *file, int line);
/* OK(call): a call taking &err (a local struct qs_error *err) must not fail. */
#define OK(call) qt_check((call), &err, #call, __FILE__, __LINE__)

/*
 * Runs qsnap --root ROOT ARGS... (NULL-terminated); returns its exit status, and stdout / stderr in *out /
 * *errout when those are non-NULL (caller frees).
 */
int qt_qsnap_run(struct qt_fixture *f, char **out, char **errout, ...);
/* QSNAP_OK(f, args...): runs qsnap and requires exit 0; returns stdout (caller frees). */
#define QSNAP_OK(f, ...) qt_qsnap_ok_(f, __FILE__, __LINE__, __VA_ARGS__, (char *)NULL)
char *qt_qsnap_ok_(struct qt_fixture *f, const char *file, int line, ...);
/* Runs qsnap ARGS... (NULL-terminated) and requires exit 1 with WANT in its stderr. */
void qt_qsnap_fail(struct qt_fixture *f, const char *want, ...);
/* qsnap attach vm --qmp <the VM's test socket>. */
void qt_attach(struct qt_fixture *f);

/* Asserts NEEDLE is in HAY, printing HAY when not. */
void qt_assert_contains(const char *hay, const char *needle);

/* Files. All returned strings: caller frees. */
char *qt_path_in(struct qt_fixture *f, const char *name); /* DIR/NAME in the VM's directory */
bool qt_exists(const char *path);                          /* lstat */
char *qt_slurp(const char *path);
char *qt_domain_xml(struct qt_fixture *f);                   /* ROOT/qemu/vm.xml */
char *qt_snapshot_xml(struct qt_fixture *f, const char *name); /* ROOT/snapshot/vm/NAME.xml */
/* true when libvirt's schemas, virt-xml-validate and xmllint are installed. */
bool qt_schema_available(void);
/* Every ROOT/snapshot/vm/ *.xml passes virt-xml-validate and there are WANT of them; without the schema see
 * qt_part_missing(). */
void qt_validate_all(struct qt_fixture *f, int want);

/* QEMU through any QMP client. */
/* Whether DOMAIN has an intent record pending (an operation not finished or recovered). The record's file
 * stays once made, cleared in place: its existence says nothing. */
bool qt_intent_pending(struct qt_fixture *f, const char *domain);
char *qt_status_of(struct qmp_client *c); /* query-status's status; caller frees */
void qt_assert_status(struct qmp_client *c, const char *want); /* "paused" also takes "prelaunch" */
void qt_exec(struct qmp_client *c, const char *command); /* a command without arguments; must succeed */
/* Whether a pre-copy on C's QEMU sees every guest write, asked of QEMU here (not through qsnap's feature code):
 * KVM (query-kvm), or QEMU 9.0+ - TCG's dirty tracking before 9.0 loses writes (QEMU commit 03bfc2188f). */
bool qt_precopy_coherent(struct qmp_client *c);
/* Per device its top node, file and chain depth, then every node name (auto-named ones as "#auto"). */
char *qt_query_block(struct qmp_client *c);
char *qt_live_file(struct qmp_client *c, const char *dev); /* the top image file of device DEV */
char *qt_live_node(struct qmp_client *c, const char *dev); /* the top node of device DEV */
/*
 * The guest counter read with HMP xp on C (any QEMU, not only the harness's). NEED_MAGIC: the magic must be
 * there (else the test fails); otherwise a missing magic reads as 0 (not booted yet).
 */
uint64_t qt_client_counter(struct qmp_client *c, bool need_magic);
/* The guest boots and counts on C's QEMU (waits up to 60 s, then 30 s). */
void qt_client_counter_advances(struct qmp_client *c);
/* SIGKILLs, by pid, every QEMU whose command line names the fixture's state directory: the ones qsnap started
 * with its own sockets there (clones, restarts), which outlive the test otherwise. */
void qt_kill_started(struct qt_fixture *f);
/* A client on the VM's test socket to a QEMU qsnap started; records its pid in f->daemon. Caller frees. */
struct qmp_client *qt_daemon_client(struct qt_fixture *f);
/* A client on clone NAME's QMP socket (qsnap's own, ROOT/run/NAME.qmp); fails the test when there is none.
 * Caller frees. */
struct qmp_client *qt_clone_client(struct qt_fixture *f, const char *name);

/* The harness's VM. */
uint64_t qt_counter(struct qt_fixture *f); /* qh_vm_read_counter */
void qt_disk_write(struct qt_fixture *f, const char *dev, uint8_t pattern, uint64_t off); /* QT_LEN bytes */
/* 1 when node NODE reads PATTERN over QT_LEN bytes at OFF (NBD export of the running QEMU), else 0. */
int qt_node_reads(struct qt_fixture *f, const char *node, uint8_t pattern, uint64_t off);
/* The same for device DEV's current top node. */
int qt_guest_reads(struct qt_fixture *f, const char *dev, uint8_t pattern, uint64_t off);

/* Images, offline (qemu-io / qemu-img with -U where they read). */
int qt_image_is(const char *path, const char *fmt, uint8_t pattern, uint64_t off); /* 1 match, 0 not */
void qt_offline_write(const char *path, uint8_t pattern, uint64_t off);          /* qcow2, QT_LEN bytes */
char *qt_image_tags(const char *path);                                           /* qemu-img snapshot -l */
bool qt_image_has_tag(const char *path, const char *tag);
char *qt_backing_of(const char *path); /* the backing file in the header; NULL when none */
/* Field KEY of `qemu-img info` (a string, or an integer as its digits); NULL when absent. Caller frees. */
char *qt_image_field(const char *path, const char *key);

/* ------------------------------------------------------------------------------------------------
 * Every VM style (qh_vm_config.style), and what a user would check after a sequence of operations.
 */

/* The QEMU qsnap started (start, restore, an external revert) becomes the harness's VM again (qh_vm_adopt):
 * its monitor, its guest checks, killed at teardown. */
void qt_adopt(struct qt_fixture *f);
/* After a qsnap command that may have restarted QEMU: when the VM's QEMU no longer answers the harness, waits
 * for it to exit and adopts the one qsnap started (qt_adopt). A QEMU that still answers is kept. */
void qt_follow(struct qt_fixture *f);
/* QT_LEN bytes of PATTERN at OFF written through disk ID's guest device, in any style (qh_vm_guest_write). */
void qt_guest_write(struct qt_fixture *f, const char *id, uint8_t pattern, uint64_t off);
/* 1 when disk ID's guest device reads PATTERN over QT_LEN bytes at OFF, else 0 (qh_vm_guest_check). */
int qt_guest_is(struct qt_fixture *f, const char *id, uint8_t pattern, uint64_t off);
/* virt-xml-validate PATH SCHEMA ("domain", "domainsnapshot") passes; without libvirt's schemas see
 * qt_part_missing(). */
void qt_validate_xml(const char *path, const char *schema);
/*
 * What libvirt makes of qsnap's files: ROOT/qemu/vm.xml, every ROOT/snapshot/vm/ *.xml and every
 * snapshot-dumpxml pass virt-xml-validate, and one virsh process on the test driver (test:///default) defines
 * the domain and redefines every snapshot, parents first, without an error, ending with qsnap's current
 * snapshot and qsnap's --tree. Without virsh and the schemas see qt_part_missing().
 */
void qt_libvirt_accepts(struct qt_fixture *f);
/* qsnap snapshot-check vm exits 0 (its report printed when not). */
void qt_check_clean(struct qt_fixture *f);
/*
 * Every regular file in the VM's directory is used - an image in the backing chain of a disk of the domain's
 * definition or of a snapshot's <domain>, or a snapshot's memory file - or its base name is in ALLOWED
 * (NULL-terminated; may be NULL); and every used file exists. The state directory, sockets and qemu.log
 * are not counted.
 */
void qt_no_orphans(struct qt_fixture *f, const char *const *allowed);

/* ------------------------------------------------------------------------------------------------
 * qsnap-fault (the test build, cli/main.c) held after a step, as long as the test needs, on any machine.
 */

/* Sets up the hold of qsnap-fault after step AT ("1": the first) until qt_fault_release(): exports
 * QSNAP_FAULT_PAUSE_AT=AT, QSNAP_FAULT_LOG=DIR/fault-held.log and QSNAP_FAULT_PAUSE_UNTIL=DIR/fault-release (DIR:
 * the VM's directory; both files removed first). Call it before forking the qsnap-fault to hold. */
void qt_fault_hold(struct qt_fixture *f, const char *at);
/* Waits (up to 120 s, then fails) until the held qsnap-fault has reached step AT (the log has AT lines). */
void qt_fault_wait_held(struct qt_fixture *f, long at);
/* Lets it go on, and unsets the variables. */
void qt_fault_release(struct qt_fixture *f);

#ifdef __cplusplus
}
#endif
#endif
