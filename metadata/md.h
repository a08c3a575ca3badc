/* md.h: snapshot metadata: libvirt's <domainsnapshot> and <domain> XML, the on-disk store, the snapshot tree. */
#ifndef MD_H
#define MD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "qs_error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Largest metadata file or document qsnap reads (bigger is QS_ERR_TOOBIG). */
#define MD_FILE_MAX (16u * 1024 * 1024)

/* XML namespaces qsnap writes into a domain definition. */
#define MD_QSNAP_NS "https://qsnap.dev/xmlns/domain/1"
#define MD_QEMU_NS "http://libvirt.org/schemas/domain/qemu/1.0"
/* qsnap's own values in a snapshot's <cookie> (libvirt's schema allows any element there). */
#define MD_QSNAP_SNAPSHOT_NS "https://qsnap.dev/xmlns/snapshot/1"

/* ---- enums (libvirt's spellings) ---------------------------------------------------------------------- */

/* <state>: libvirt's virDomainSnapshotState. NOSTATE (0) means "no <state> element". */
enum md_state {
    MD_STATE_NOSTATE = 0,
    MD_STATE_RUNNING,
    MD_STATE_BLOCKED,
    MD_STATE_PAUSED,
    MD_STATE_SHUTDOWN,
    MD_STATE_SHUTOFF,
    MD_STATE_CRASHED,
    MD_STATE_PMSUSPENDED,
    MD_STATE_DISK_SNAPSHOT,
    MD_STATE__LAST
};

/* memory@snapshot and disk@snapshot: libvirt's virDomainSnapshotLocation. DEFAULT (0) = attribute absent. */
enum md_location {
    MD_LOCATION_DEFAULT = 0,
    MD_LOCATION_NO,
    MD_LOCATION_INTERNAL,
    MD_LOCATION_EXTERNAL,
    MD_LOCATION_MANUAL,
    MD_LOCATION__LAST
};

/* "running", "disk-snapshot", ...; NULL for out-of-range values. */
const char *md_state_to_string(int state);
/* The enum value, or -1 for an unknown string. */
int md_state_from_string(const char *s);
/* "default", "no", "internal", "external", "manual"; NULL for out-of-range values. */
const char *md_location_to_string(int loc);
int md_location_from_string(const char *s);

/* ---- the snapshot model: plain data, owned by the struct ----------------------------------------------- */

struct md_snapshot_disk {
    char *name;        /* disk target ("vda") or path; required */
    int snapshot;      /* enum md_location; DEFAULT = no attribute */
    char *type;        /* "file", "block", ...; NULL = no attribute */
    char *driver_type; /* <driver type=...>: "qcow2"; NULL = none */
    char *source;      /* <source file=...> (or dev= for type block); NULL = none */
    /*
     * When parsing meets a <disk> holding more than the fields above (network sources, seclabels, other
     * attributes) or formatted differently, the element is kept here verbatim (indentation relative to the
     * <disk> itself) and written back instead of the fields. Free and NULL it after changing the fields.
     */
    char *raw;
};

struct md_snapshot {
    char *name;
    char *description;               /* NULL = none */
    int state;                       /* enum md_state */
    char *parent;                    /* parent snapshot name; NULL for a root */
    long long creation_time;         /* seconds since the epoch; 0 = no <creationTime> */
    int memory;                      /* enum md_location; DEFAULT = no <memory> element */
    char *memory_file;               /* <memory file=...> */
    struct md_snapshot_disk *disks;
    size_t ndisks;
    /*
     * Subtrees kept verbatim (byte for byte as read, each line's indentation relative to the element's
     * own start tag): the whole <domain>, <inactiveDomain> and <cookie> elements, and any other element
     * of <domainsnapshot> qsnap does not know (in document order). NULL = absent.
     */
    char *domain_xml;
    char *inactive_domain_xml;
    char *cookie_xml;
    char *extra_xml;
    bool current;                    /* the on-disk <active>1</active> */
};

/* A zeroed snapshot; free with md_snapshot_free(). */
struct md_snapshot *md_snapshot_new(void);
void md_snapshot_free(struct md_snapshot *snap);
/* A deep copy; free with md_snapshot_free(). */
struct md_snapshot *md_snapshot_copy(const struct md_snapshot *snap);
/* Appends a zeroed disk and returns it (owned by snap; valid until the next append). */
struct md_snapshot_disk *md_snapshot_disk_add(struct md_snapshot *snap);
/* True when memory or any disk is external (libvirt's virDomainSnapshotDefIsExternal). */
bool md_snapshot_is_external(const struct md_snapshot *snap);
/*
 * qsnap's values in <cookie>: elements <qsnap:KEY xmlns:qsnap=MD_QSNAP_SNAPSHOT_NS>VALUE</qsnap:KEY>.
 * KEY is a plain element name ([a-z0-9-], starting with a letter). _get sets *value to the first such
 * element's text (caller frees with free()), or to NULL when there is none (also with no cookie, or one
 * that does not parse); it returns -1 only for a bad KEY. _set appends the element to the cookie (creating
 * <cookie>; other elements of the cookie stay as they were); a KEY already there is QS_ERR_EXISTS.
 */
int md_snapshot_cookie_get(const struct md_snapshot *snap, const char *key, char **value, struct qs_error **err);
int md_snapshot_cookie_set(struct md_snapshot *snap, const char *key, const char *value, struct qs_error **err);
/* Removes qsnap's KEY elements from the cookie, every other element byte for byte as it was; a cookie left
 * with no element is dropped. No KEY there is no error. */
int md_snapshot_cookie_remove(struct md_snapshot *snap, const char *key, struct qs_error **err);

enum md_parse_flags {
    /* libvirt's redefine rules: name, state and creationTime required, memory location defaulted from
     * the state, memory/disk consistency checked, names checked with qs_name_check(). */
    MD_PARSE_REDEFINE = 1u << 0,
    /* The on-disk form: like REDEFINE and <active> required; sets ->current. */
    MD_PARSE_ON_DISK = 1u << 1,
    /* Do not copy <domain>, <inactiveDomain>, <cookie> and unknown elements (listing only). */
    MD_PARSE_SKIP_SUBTREES = 1u << 2,
};

/*
 * Parses a <domainsnapshot> document of LEN bytes (at most MD_FILE_MAX). No network, no DTD, no entity
 * expansion. Returns a new snapshot (caller frees with md_snapshot_free()) or NULL with *err set
 * (QS_ERR_INVALID, QS_ERR_TOOBIG).
 */
struct md_snapshot *md_snapshot_parse(const char *xml, size_t len, unsigned flags, struct qs_error **err);

enum md_format_flags {
    MD_FORMAT_ON_DISK = 1u << 0, /* append <active>0|1</active> as libvirt does in its snapshot files */
    /* keep secrets (<graphics passwd=...>) in <domain> and <inactiveDomain>, as libvirt's
     * VIR_DOMAIN_XML_SECURE; without it they are left out. ON_DISK always keeps them. */
    MD_FORMAT_SECURE = 1u << 1,
};

/*
 * Formats SNAP the way libvirt does (2-space indent, single quotes, libvirt's element order, verbatim
 * subtrees re-indented under <domainsnapshot>), ending in a newline. A file libvirt wrote comes back byte
 * for byte. Caller frees with free(). NULL with QS_ERR_INVALID when the snapshot has no name.
 */
char *md_snapshot_format(const struct md_snapshot *snap, unsigned flags, struct qs_error **err);

/*
 * Checks the rules libvirt applies to a snapshot definition on its own: name (qs_name_check), state and
 * creationTime present, <domain> present, memory file only with external memory and absolute, no memory
 * for offline/disk-only snapshots, disk names present and unique, absolute disk sources.
 */
int md_snapshot_validate(const struct md_snapshot *snap, struct qs_error **err);

/* ---- domain definitions ---------------------------------------------------------------------------- */

/* A libvirt <domain> document; everything qsnap does not model is kept verbatim. Opaque. */
struct md_domain;

/* One <devices><disk> as read; strings are borrowed from the domain and valid until it is changed or freed. */
struct md_domain_disk {
    const char *type;        /* "file", "block", ...; NULL if absent */
    const char *device;      /* "disk", "cdrom", ...; "disk" if absent */
    const char *driver_type; /* "qcow2", "raw"; NULL if absent */
    const char *source;      /* source file (or dev for block); NULL if absent */
    const char *target;      /* "vda"; NULL if absent */
    const char *bus;         /* <target bus=...>: "virtio", "sata", "ide", "scsi"; NULL if absent */
    /* How qsnap finds the disk in a running QEMU and in its command line (qsnap's metadata; NULL if unknown): */
    const char *node_name;   /* a node name the command line gives (-blockdev node-name=, -drive node-name=) */
    const char *qdev;        /* the guest device as query-block names it: "vda" or a QOM path */
    const char *drive;       /* the -drive id, QEMU's own ("virtio0", "ide0-hd0") when the user gave none */
    const char *arg;         /* index in the recorded argv of the option that opens the disk's image */
};

/* Parses a <domain> document (at most MD_FILE_MAX bytes). Caller frees with md_domain_free(). */
struct md_domain *md_domain_parse(const char *xml, size_t len, struct qs_error **err);
/* A minimal new definition (type 'qemu', x86_64 hvm). UUID NULL = random. Caller frees with md_domain_free(). */
struct md_domain *md_domain_new(const char *name, const char *uuid, unsigned long long memory_kib,
                                unsigned vcpus, struct qs_error **err);
void md_domain_free(struct md_domain *dom);
/* The document again: untouched parts byte for byte as read, changed parts in libvirt's style.
 * Caller frees with free(). */
char *md_domain_format(const struct md_domain *dom, struct qs_error **err);

const char *md_domain_name(const struct md_domain *dom);   /* NULL if absent; stable across the setters */
const char *md_domain_uuid(const struct md_domain *dom);   /* NULL if absent */
unsigned long long md_domain_memory_kib(const struct md_domain *dom); /* 0 if absent */
unsigned md_domain_vcpus(const struct md_domain *dom);      /* 1 if absent */
size_t md_domain_disk_count(const struct md_domain *dom);
/* Disk I (0 <= I < count) into *out; -1 (QS_ERR_NOTFOUND) if out of range. */
int md_domain_disk_get(const struct md_domain *dom, size_t i, struct md_domain_disk *out, struct qs_error **err);
/* The QMP socket path from qsnap's metadata; NULL if unknown. Borrowed. */
const char *md_domain_qmp_socket(const struct md_domain *dom);
/* The working directory QEMU was started in (relative paths of its command line are relative to it); NULL if
 * unknown. Borrowed. */
const char *md_domain_cwd(const struct md_domain *dom);
/* The QEMU process last seen running the domain: its pid and start time (/proc/PID/stat field 22), 0 when
 * unknown. Together they tell one process from a later one with a reused pid. */
void md_domain_process(const struct md_domain *dom, long long *pid, long long *start);
/* The QEMU command line qsnap starts the domain with (qsnap's <metadata>, not <qemu:commandline>, whose
 * arguments libvirt would append to its own), NULL-terminated, or NULL if none. Caller frees with
 * qs_strv_free(). */
char **md_domain_argv(const struct md_domain *dom);

/* Setters: change the document in place; NULL removes where stated. */
int md_domain_set_qmp_socket(struct md_domain *dom, const char *path, struct qs_error **err); /* NULL removes */
int md_domain_set_argv(struct md_domain *dom, const char *const *argv, struct qs_error **err); /* NULL removes */
int md_domain_set_memory_kib(struct md_domain *dom, unsigned long long kib, struct qs_error **err);
int md_domain_set_vcpus(struct md_domain *dom, unsigned vcpus, struct qs_error **err);
/* Disk setters address a disk by target dev; QS_ERR_NOTFOUND "disk 'vdz' not found in domain 'x'". */
int md_domain_set_disk_source(struct md_domain *dom, const char *target, const char *source,
                              struct qs_error **err);
int md_domain_set_disk_driver_type(struct md_domain *dom, const char *target, const char *type,
                                   struct qs_error **err);
int md_domain_set_disk_node_name(struct md_domain *dom, const char *target, const char *node_name,
                                 struct qs_error **err); /* NULL removes */
/* Sets (VALUE NULL: removes) one of the disk's identity attributes in qsnap's metadata: KEY "node-name",
 * "qdev", "drive" or "arg" (see struct md_domain_disk). */
int md_domain_set_disk_ident(struct md_domain *dom, const char *target, const char *key, const char *value,
                             struct qs_error **err);
/* Records the working directory and the process (pid 0: none); cwd NULL and pid 0 remove both. */
int md_domain_set_process(struct md_domain *dom, const char *cwd, long long pid, long long start,
                          struct qs_error **err);
/* Image files qsnap made for the domain (overlays of snapshots and reverts), absolute paths: a file qsnap
 * made may be merged away when nothing needs it apart; the user's own images never are. */
bool md_domain_made(const struct md_domain *dom, const char *file);
int md_domain_set_made(struct md_domain *dom, const char *file, bool made, struct qs_error **err);
/* md_domain_format() without the record of the files qsnap made: the copy a snapshot keeps in its <domain>
 * (what the domain was, not what qsnap made since). Caller frees with free(). */
char *md_domain_format_copy(const struct md_domain *dom, struct qs_error **err);
/*
 * A UEFI guest's firmware as libvirt records it: <os><loader readonly='yes' type='pflash'>CODE</loader> and
 * <nvram template=TEMPLATE>VARS</nvram>, plus qsnap's <qsnap:nvram> with what finds the variables' drive in
 * the command line. Strings are borrowed from the domain (valid until it changes).
 */
struct md_domain_nvram {
    const char *loader;    /* the firmware code (read-only pflash); NULL if not recorded */
    const char *file;      /* the variables store (writable pflash) */
    const char *templ;     /* the pristine variables the store starts from; NULL if unknown */
    const char *format;    /* qsnap: the store's format, "raw" or "qcow2" */
    const char *arg;       /* qsnap: index in the recorded argv of the option that opens the store */
    const char *drive;     /* qsnap: its -drive id ("pflash1") */
    const char *node_name; /* qsnap: its -blockdev node name, when the command line names one */
};
/* 1 and *out filled when DOM records UEFI variables (<os><nvram>), 0 when not. */
int md_domain_nvram_get(const struct md_domain *dom, struct md_domain_nvram *out);
/* Records the firmware (NV NULL, or NV->file NULL: removes <loader>, <nvram> and qsnap's data on them). */
int md_domain_set_nvram(struct md_domain *dom, const struct md_domain_nvram *nv, struct qs_error **err);
/* Sets <name> (checked with qs_name_check) and <uuid> (NULL: a new random one): a clone's own identity. */
int md_domain_set_identity(struct md_domain *dom, const char *name, const char *uuid, struct qs_error **err);
/* Sets <os><type machine=...> ("pc-q35-7.2"). */
int md_domain_set_machine(struct md_domain *dom, const char *machine, struct qs_error **err);
/* Removes disk TARGET (and qsnap's data on it) from the definition. */
int md_domain_remove_disk(struct md_domain *dom, const char *target, struct qs_error **err);
/* Adds <disk type=TYPE device=DEVICE> with driver, source and <target dev=TARGET bus=BUS>. TYPE "file" or
 * "block"; DEVICE NULL = "disk"; BUS NULL = "virtio"; DRIVER_TYPE NULL = none. */
int md_domain_add_disk(struct md_domain *dom, const char *type, const char *device, const char *driver_type,
                       const char *source, const char *target, const char *bus, struct qs_error **err);

/* ---- the store ------------------------------------------------------------------------------------- */

/*
 * Layout under ROOT (directories 0700, files 0600, every write atomic):
 *   ROOT/qemu/DOM.xml             domain definitions (like /etc/libvirt/qemu)
 *   ROOT/snapshot/DOM/NAME.xml    one file per snapshot, libvirt's on-disk form (like
 *                                 /var/lib/libvirt/qemu/snapshot/DOM, which can be copied in as it is)
 *   ROOT/snapshot/DOM/.qsnap-gen    generation: odd while a writer changes several files, so that readers
 *                                 without the lock never load half of a change
 *   ROOT/snapshot/DOM/.qsnap-intent an operation's intent record (engine/intent.h)
 *   ROOT/run/DOM.lock             per-domain lock file
 *   ROOT/run/DOM.index            listing cache, vouched for by the snapshot directory's stamp (md_tree.c)
 */
struct md_store;
/* A held per-domain lock. Opaque. */
struct md_lock;
struct md_tree;

/*
 * The state directory: EXPLICIT if non-NULL, else ENV_ROOT (the value of $QSNAP_ROOT) if non-empty, else
 * /var/lib/qsnap for uid 0, else XDG_STATE_HOME/qsnap (when absolute), else HOME/.local/state/qsnap.
 * QS_ERR_INVALID when nothing applies or the result is not absolute. Caller frees with free().
 */
char *md_store_root_resolve(const char *explicit_root, const char *env_root, uid_t uid,
                            const char *xdg_state_home, const char *home, struct qs_error **err);
/* md_store_root_resolve() with $QSNAP_ROOT, getuid(), $XDG_STATE_HOME and $HOME. */
char *md_store_root_default(const char *explicit_root, struct qs_error **err);

/* Opens (creating when missing, 0700) the store at ROOT. Caller frees with md_store_free(). */
struct md_store *md_store_open(const char *root, struct qs_error **err);
void md_store_free(struct md_store *store);
const char *md_store_root(const struct md_store *store);

/*
 * Takes the lock of DOMAIN (flock on ROOT/run/DOM.lock), waiting up to TIMEOUT_MS (0: try once, <0: wait
 * forever). QS_ERR_BUSY "domain 'X' is locked by another qsnap process" when it stays taken. Every
 * mutating store call takes the lock as proof. Caller releases with md_lock_free().
 */
struct md_lock *md_lock_acquire(struct md_store *store, const char *domain, int timeout_ms,
                                struct qs_error **err);
void md_lock_free(struct md_lock *lock);
const char *md_lock_domain(const struct md_lock *lock);

/* Whether DOMAIN is defined (its file exists; not parsed): 0, or -1 with QS_ERR_NOTFOUND. */
int md_store_domain_exists(struct md_store *store, const char *domain, struct qs_error **err);
/* Domain definitions. get: caller frees with md_domain_free(); QS_ERR_NOTFOUND if undefined. */
struct md_domain *md_store_domain_get(struct md_store *store, const char *domain, struct qs_error **err);
/* Writes the definition under its own name; LOCK must be that domain's. */
int md_store_domain_put(struct md_store *store, const struct md_lock *lock, const struct md_domain *dom,
                        struct qs_error **err);
/* Names of defined domains, sorted; *names NULL-terminated, caller frees with qs_strv_free(). */
int md_store_domain_list(struct md_store *store, char ***names, struct qs_error **err);
enum md_domain_delete_flags {
    MD_DOMAIN_DELETE_SNAPSHOTS = 1u << 0, /* also remove the snapshot metadata (else QS_ERR_STATE if any) */
};
int md_store_domain_delete(struct md_store *store, const struct md_lock *lock, const char *domain,
                           unsigned flags, struct qs_error **err);

/* Whether DOMAIN's snapshot directory holds NAME.xml, as libvirt and qsnap name snapshot files: one stat, no
 * parse. A hint for callers that look NAME up under the lock anyway; false also for a name that is no file. */
bool md_store_snapshot_file_present(struct md_store *store, const char *domain, const char *name);
/* One snapshot, fully parsed (subtrees included). Caller frees with md_snapshot_free(). */
struct md_snapshot *md_store_snapshot_get(struct md_store *store, const char *domain, const char *name,
                                          struct qs_error **err);
enum md_put_flags {
    MD_PUT_NO_REPLACE = 1u << 0, /* QS_ERR_EXISTS when a snapshot of that name exists */
};
/*
 * Writes SNAP as ROOT/snapshot/DOMAIN/NAME.xml after libvirt's redefinition checks (md_snapshot_validate,
 * the domain's uuid, parent exists, no cycle, no online/offline or disk-only change when replacing). When
 * snap->current, the previous current snapshot is rewritten as not current first.
 */
int md_store_snapshot_put(struct md_store *store, const struct md_lock *lock, const char *domain,
                          const struct md_snapshot *snap, unsigned flags, struct qs_error **err);
enum md_delete_flags {
    MD_DELETE_CHILDREN = 1u << 0,      /* delete the snapshot and all its descendants */
    MD_DELETE_CHILDREN_ONLY = 1u << 1, /* delete the descendants only */
};
/*
 * Deletes snapshot metadata as libvirt does: without flags the children are re-parented to the snapshot's
 * parent first; when the current snapshot goes away its surviving nearest ancestor becomes current.
 */
int md_store_snapshot_delete(struct md_store *store, const struct md_lock *lock, const char *domain,
                             const char *name, unsigned flags, struct qs_error **err);
/* Makes NAME the current snapshot (NULL: none). */
int md_store_snapshot_set_current(struct md_store *store, const struct md_lock *lock, const char *domain,
                                  const char *name, struct qs_error **err);
/*
 * The same three with the caller's TREE, loaded under LOCK (md_tree_load): a writer works on it instead of
 * loading its own when the snapshot directory is still as TREE saw it (else it loads one, and TREE goes
 * stale), and keeps it in step with its change, so that TREE can go to the next writer. At 10,000 snapshots
 * a load is ~0.8 ms of a command's time. DEF: the domain's definition when the caller has it (NULL: read).
 */
int md_store_snapshot_put_tree(struct md_store *store, const struct md_lock *lock, const char *domain,
                               struct md_tree *tree, const struct md_domain *def, const struct md_snapshot *snap,
                               unsigned flags, struct qs_error **err);
/*
 * The quick way to create SNAP as the new current snapshot, its parent the current one (or none when there is
 * none), when it needs no tree: DOMAIN has at least MIN_COUNT snapshots, no snapshot SNAP's name, and the index
 * and its journal vouch for the directory. The old current snapshot's file is rewritten as not current, then SNAP's written,
 * both recorded in the index's journal. DEF: the domain's definition. 1: created; 0: that way does not apply or
 * SNAP's parent is not the current snapshot, nothing changed (take md_store_snapshot_put_tree()); -1: writing
 * failed (ERR; the next load reads the directory).
 */
int md_store_snapshot_create_quick(struct md_store *store, const struct md_lock *lock, const char *domain,
                                   const struct md_domain *def, const struct md_snapshot *snap, size_t min_count,
                                   struct qs_error **err);
/*
 * What md_store_snapshot_create_quick() would take as SNAP's parent: 1 when it applies (LOCK held; NAME not
 * there), with CUR the current snapshot's name ("" for none); 0: load the tree.
 */
int md_store_snapshot_create_peek(struct md_store *store, const struct md_lock *lock, const char *domain,
                                  const char *name, size_t min_count, char *cur, size_t cur_size);
/*
 * The quick way to add SNAP, when it needs no tree: a name the domain does not have, not current, its parent
 * (if any) there, the index vouching for the directory (see md_tree.c's journal). DEF: the domain's
 * definition. 1: added; 0: that way does not apply, nothing changed (take md_store_snapshot_put_tree(),
 * which also gives the errors); -1: writing failed (ERR).
 */
int md_store_snapshot_add_quick(struct md_store *store, const struct md_lock *lock, const char *domain,
                                const struct md_domain *def, const struct md_snapshot *snap, struct qs_error **err);
int md_store_snapshot_delete_tree(struct md_store *store, const struct md_lock *lock, const char *domain,
                                  struct md_tree *tree, const char *name, unsigned flags, struct qs_error **err);
int md_store_snapshot_set_current_tree(struct md_store *store, const struct md_lock *lock, const char *domain,
                                       struct md_tree *tree, const char *name, struct qs_error **err);

/*
 * The domain's intent record: ROOT/snapshot/DOMAIN/.qsnap-intent (libvirt ignores it: no .xml), an opaque
 * text the engine writes before an operation touches QEMU or an image and clears when it is done. put is
 * durable when it returns (written in place and fdatasync'd; md_store.c says how a crash is told apart);
 * get gives *text NULL when there is none (the file may stay, cleared); clear is not synced: a record that
 * comes back after a crash is recovered again, which recovery must allow. Caller frees *text.
 */
int md_store_intent_put(struct md_store *store, const struct md_lock *lock, const char *domain, const char *text,
                        struct qs_error **err);
/* put, or with MD_INTENT_NOSYNC only written (as visible to another process as a synced one, not proof
 * against the machine's crash: for a record whose loss then changes nothing, or one synced later with
 * md_store_intent_sync()). A record that creates the file is synced whatever the flags. */
#define MD_INTENT_NOSYNC 1u
int md_store_intent_write(struct md_store *store, const struct md_lock *lock, const char *domain, const char *text,
                          unsigned flags, struct qs_error **err);
int md_store_intent_sync(struct md_store *store, const struct md_lock *lock, const char *domain,
                         struct qs_error **err);
int md_store_intent_get(struct md_store *store, const char *domain, char **text, struct qs_error **err);
int md_store_intent_clear(struct md_store *store, const struct md_lock *lock, const char *domain,
                          struct qs_error **err);

/* The snapshot directory's generation (0 when there is none): odd while a writer changes several files,
 * moved on by every change of the snapshots; lets a long-lived reader tell that a tree it keeps is stale. */
uint64_t md_store_gen_read(struct md_store *store, const char *domain);

/* ---- the tree -------------------------------------------------------------------------------------- */

/* What listing needs of one snapshot; owned by the tree, read-only. */
struct md_entry {
    const char *name;
    const char *parent;      /* NULL for a root */
    const char *description; /* NULL if none */
    const char *file;        /* file name in the snapshot directory ("s1.xml") */
    int state;               /* enum md_state */
    long long creation_time;
    int memory;              /* enum md_location */
    const char *memory_file;
    unsigned disk_locations; /* bit (1u << enum md_location) for every disk's location */
    bool external;           /* memory or any disk external */
    bool current;
    size_t nchildren;
    size_t depth;            /* 0 for roots */
    /* The engine's own data derived from this snapshot's file (md_tree_set_aux), kept in the index for as long
     * as the file is unchanged; NULL: none (not worked out yet, or the file changed since). */
    const char *aux;
};

struct md_tree;

/*
 * Loads the snapshot tree of DOMAIN (an empty tree when it has no snapshot directory). Uses and refreshes
 * the index: while the snapshot directory has the stamp the index records, no snapshot file is looked at;
 * otherwise files the index does not vouch for are parsed and the index is rewritten (if LOCK is given or
 * the domain lock is free). A file rewritten in place, changing no directory entry, is not noticed until
 * the directory changes: md_tree_load_checked() looks at every file. Fails with QS_ERR_INVALID on a
 * malformed file, two snapshots of one name, more than one current snapshot, a missing parent or a parent
 * cycle; nothing is written then. Caller frees with md_tree_free().
 */
struct md_tree *md_tree_load(struct md_store *store, const char *domain, const struct md_lock *lock,
                             struct qs_error **err);
/* md_tree_load() for a writer that goes on to change the directory under LOCK: the index is left to that
 * change (a journal is applied, not written into a new index first). */
struct md_tree *md_tree_load_for_write(struct md_store *store, const char *domain, const struct md_lock *lock,
                                       struct qs_error **err);
/*
 * Gives E (an entry of T) the engine's data AUX derived from its file (copied; NULL: none). The entries of T
 * stay where they are. md_tree_aux_store() then keeps it in the index, under LOCK (the domain's), if T came
 * from the index alone and the snapshot directory is still as the index says; otherwise it is simply not
 * kept (worked out again next time). Never an error: the index is a cache.
 */
void md_tree_set_aux(struct md_tree *t, const struct md_entry *e, const char *aux);
void md_tree_aux_store(struct md_store *store, struct md_tree *t, const struct md_lock *lock);
/* md_tree_load() that trusts no stamp: every file's size, mtime and inode are compared with the index. */
struct md_tree *md_tree_load_checked(struct md_store *store, const char *domain, const struct md_lock *lock,
                                     struct qs_error **err);
void md_tree_free(struct md_tree *tree);
size_t md_tree_count(const struct md_tree *tree);
const struct md_entry *md_tree_find(const struct md_tree *tree, const char *name); /* NULL if absent */
const struct md_entry *md_tree_current(const struct md_tree *tree);                /* NULL if none */
const struct md_entry *md_tree_parent(const struct md_tree *tree, const struct md_entry *e);
/* Children of E sorted by name (virsh --tree order); roots likewise. */
const struct md_entry *md_tree_child(const struct md_tree *tree, const struct md_entry *e, size_t i);
size_t md_tree_root_count(const struct md_tree *tree);
const struct md_entry *md_tree_root(const struct md_tree *tree, size_t i);
/*
 * A tree of snapshot NAME alone, when DOMAIN's index vouches for the directory, holds at least MIN_COUNT
 * snapshots and has a sound record of NAME for its file as it is: the entry as a load gives it (its parent's
 * name, children, descendants, depth), read without the whole index. Only for looking at that entry (no
 * list, no writer, no other entry, md_tree_current() only when NAME is current). NULL: load the tree.
 */
struct md_tree *md_tree_peek(struct md_store *store, const char *domain, const char *name, size_t min_count);
/*
 * md_tree_peek() for deleting NAME under LOCK (the domain's) when no snapshot is built on it: with this tree
 * md_store_snapshot_delete_tree() removes its file (and makes its parent current when it was) and records that
 * in the index's journal, neither loading the tree nor rewriting the index, when the index still vouches for
 * the directory then; else it loads the tree itself. NULL: load the tree.
 */
struct md_tree *md_tree_peek_leaf(struct md_store *store, const char *domain, const struct md_lock *lock,
                                  const char *name, size_t min_count);
/* How many snapshots are built on E, at any depth. */
size_t md_tree_descendants(const struct md_tree *tree, const struct md_entry *e);
/* True when ANCESTOR is a proper ancestor of E. */
bool md_tree_is_ancestor(const struct md_tree *tree, const struct md_entry *ancestor, const struct md_entry *e);

/* virsh snapshot-list as flags. Within a group (metadata, status, location) flags are OR-ed, groups are
 * AND-ed, as libvirt does; LEAVES and NO_LEAVES each filter on their own (both: nothing), as virsh shows. */
enum md_list_flags {
    MD_LIST_ROOTS = 1u << 0,       /* only snapshots without a parent (not with FROM or TREE) */
    MD_LIST_DESCENDANTS = 1u << 1, /* with FROM: all descendants, not only the direct children */
    MD_LIST_LEAVES = 1u << 2,
    MD_LIST_NO_LEAVES = 1u << 3,
    MD_LIST_METADATA = 1u << 4,    /* every qsnap snapshot has metadata */
    MD_LIST_NO_METADATA = 1u << 5,
    MD_LIST_INACTIVE = 1u << 6,    /* state shutoff */
    MD_LIST_ACTIVE = 1u << 7,      /* neither shutoff nor disk-snapshot: has memory */
    MD_LIST_DISK_ONLY = 1u << 8,   /* state disk-snapshot */
    MD_LIST_INTERNAL = 1u << 9,
    MD_LIST_EXTERNAL = 1u << 10,
    MD_LIST_TOPOLOGICAL = 1u << 11, /* parents before children instead of sorted by name */
    /* Pre-order walk with children sorted by name; with FROM, FROM itself comes first (virsh --tree).
     * Not combinable with ROOTS or the leaves/status/location filters. */
    MD_LIST_TREE = 1u << 12,
};

/*
 * The snapshots virsh snapshot-list would show. FROM (NULL = whole tree) limits the list to FROM's
 * children, or all its descendants with MD_LIST_DESCENDANTS. Order: by name as virsh sorts (case
 * insensitive), or topological, or tree order. *out is an array of *n borrowed entries; caller frees the
 * array with free().
 */
int md_tree_list(const struct md_tree *tree, const char *from, unsigned flags, const struct md_entry ***out,
                 size_t *n, struct qs_error **err);

/*
 * libvirt's redefinition checks of SNAP against TREE: md_snapshot_validate(), DOMAIN_UUID (NULL: not
 * checked) equal to the uuid in snap->domain_xml, not its own parent, parent exists, no cycle, and when
 * replacing a snapshot of that name no change between online and offline or disk-only and full system.
 */
int md_tree_check_redefine(const struct md_tree *tree, const char *domain_uuid, const struct md_snapshot *snap,
                           struct qs_error **err);

#ifdef __cplusplus
}
#endif
#endif
