/* intent.h: intent records - what a mutating operation is about to do, written before it touches QEMU or an
 * image, so that the next qsnap command can finish or undo it after a crash. */
#ifndef QS_ENGINE_INTENT_H
#define QS_ENGINE_INTENT_H

#include <stdbool.h>
#include <stddef.h>

#include "engine_priv.h"

/* One disk an operation works on. */
struct intent_disk {
    char *target; /* "vda" */
    char *node;   /* QEMU node name (live), may be NULL */
    char *file;   /* image file, may be NULL */
};

/*
 * The record. Strings are the record's (intent_release frees them). Kept small: what recovery cannot learn
 * from QEMU, the images or the metadata themselves.
 */
struct intent {
    char *op;            /* "create", "revert", "delete", "redefine", "current", "export", "clone", "save",
                            "restore" */
    char *kind;          /* "internal", "external", "metadata"; save, restore: "memory" */
    char *snapshot;      /* the snapshot concerned (delete: the first of names) */
    char *phase;         /* "prepared"; revert: "loaded" once QEMU's load succeeded; save: "written" once the
                            temporary holds the whole state, "renamed" once the file does */
    char *vm;            /* QEMU's run state when the operation began, "shutoff" when none ran */
    bool want_running;   /* revert: the VM runs afterwards */
    bool halt;           /* create: QEMU is quit afterwards */
    bool start;          /* revert: qsnap starts QEMU for the operation (external: after the switch) */
    long pid;            /* the qsnap process that wrote it */
    long long started;   /* wall clock, ms since the epoch */
    struct intent_disk *disks;
    size_t ndisks;
    char **names;        /* delete: the snapshots, in the order they go; NULL-terminated */
    char **files;        /* files the operation creates (undo removes them); NULL-terminated */
    char **nodes;        /* QEMU nodes it adds (undo deletes them); NULL-terminated */
    char **merged;       /* delete: "SNAPSHOT/TARGET" for every disk already merged; NULL-terminated */
    char **garbage;      /* files nothing needs once the operation is done (finishing removes them, undoing
                            keeps them); NULL-terminated */
    char *agent;         /* create: the guest agent socket when the filesystems get frozen */
    char *snapshot_xml;  /* the snapshot metadata to write when finishing (on-disk form) */
    char *domain_xml;    /* the domain definition to store when finishing */
    char *undo_xml;      /* revert to another image: the definition to store back when undoing */
    char *target;        /* export, save: the file being written; restore: the file read; clone: the new
                            domain */
};

void intent_release(struct intent *it);
void intent_add_disk(struct intent *it, const char *target, const char *node, const char *file);
void intent_add_file(struct intent *it, const char *path);
void intent_add_node(struct intent *it, const char *node);
void intent_add_name(struct intent *it, const char *name);
void intent_add_merged(struct intent *it, const char *entry);
void intent_add_garbage(struct intent *it, const char *path);
bool intent_has_merged(const struct intent *it, const char *entry);

/* Serialises IT (caller frees) / parses TEXT into IT (QS_ERR_INVALID when it is not a qsnap intent record). */
char *intent_format(const struct intent *it);
int intent_parse(const char *text, struct intent *it, struct qs_error **err);

/* Writes IT as DOMAIN's record (durably, before anything it describes happens), stamping pid and time
 * and reporting step "intent" of IT->op. */
int intent_begin(struct engine *e, const struct md_lock *lock, const char *domain, struct intent *it,
                 struct qs_error **err);
/* Rewrites the record after IT changed (a new phase). */
int intent_update(struct engine *e, const struct md_lock *lock, const char *domain, const struct intent *it,
                  struct qs_error **err);
/* begin and update with md_store_intent_write()'s FLAGS: MD_INTENT_NOSYNC only for a record whose loss in a
 * crash of the machine changes nothing recovery does, or one the caller syncs itself (intent_sync) before it
 * goes on past what the record must survive. */
int intent_begin_ex(struct engine *e, const struct md_lock *lock, const char *domain, struct intent *it,
                    unsigned flags, struct qs_error **err);
int intent_write(struct engine *e, const struct md_lock *lock, const char *domain, const struct intent *it,
                 unsigned flags, struct qs_error **err);
int intent_sync(struct engine *e, const struct md_lock *lock, const char *domain, struct qs_error **err);
/* Removes the record: the operation is complete (or undone). Best effort: a record left behind is
 * recovered again, which finds nothing left to do. */
void intent_end(struct engine *e, const struct md_lock *lock, const char *domain);
/* Ends an operation that wrote a record: OK removes it; a failure runs recovery on it at once (the
 * operation's own undo already ran: recovery checks what is left and removes the record when nothing is;
 * when it cannot, the record stays for the next command). */
void intent_finish(struct engine *e, const struct md_lock *lock, const char *domain, bool ok);
/* DOMAIN's record: 1 and *it filled, 0 when there is none. */
int intent_read(struct engine *e, const char *domain, struct intent *it, struct qs_error **err);

/*
 * Finishes or undoes DOMAIN's unfinished operation, if its record exists; LOCK is DOMAIN's. Finishing:
 * what the operation had already made irreversible (a snapshot every disk holds, a switched disk, a
 * loaded state, a started merge) is completed and its metadata written; undoing: everything the record
 * says it would create is removed and the VM's run state given back. A failure leaves the record in
 * place and says what is needed.
 */
int intent_recover(struct engine *e, const char *domain, const struct md_lock *lock, struct qs_error **err);
/* intent_recover's work (recover.c); intent_recover (events.c) logs it. */
int intent_recover_op(struct engine *e, const char *domain, const struct md_lock *lock, struct qs_error **err);

#endif
