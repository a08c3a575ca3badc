/* md_priv.h: metadata internals shared by the metadata/ sources and their tests (libxml2 stays in here). */
#ifndef MD_PRIV_H
#define MD_PRIV_H

#include <libxml/parser.h>
#include <libxml/tree.h>

#include <sys/stat.h>

#include "md.h"
#include "qs_buf.h"
#include "qs_util.h"

/* Byte range [start, end) of one element in the source text; hung on xmlNode->_private. */
struct md_range {
    size_t start, end;
};

/* A parsed document plus the text it came from, so untouched elements can be written back byte for byte. */
struct md_xml {
    xmlDocPtr doc;
    char *src;               /* copy of the input, NUL-terminated */
    size_t len;
    struct md_range *ranges; /* one per element, document order; NULL when ranges were not computed */
    size_t nranges;
};

/*
 * Parses DATA safely: at most MD_FILE_MAX bytes, no network, no DTD (a DOCTYPE stops the parser at once,
 * so entity bombs and external entities never run), no entity substitution, errors collected per parse
 * (never printed). WHAT names the document in messages. With RANGES, element byte ranges are recorded.
 */
int md_xml_parse(struct md_xml *x, const char *data, size_t len, const char *what, bool ranges,
                 struct qs_error **err);
void md_xml_release(struct md_xml *x);

/* Marks NODE and its ancestors changed: they are serialized from the tree, not copied from the source. */
void md_xml_touch(xmlNodePtr node);
/* Serializes NODE: unchanged elements verbatim from X->src, the rest in libvirt's style. */
void md_xml_serialize(struct qs_buf *b, const struct md_xml *x, xmlNodePtr node);
/* The verbatim source text of an element (valid while X lives); NULL when unavailable. */
const char *md_xml_raw(const struct md_xml *x, xmlNodePtr node, size_t *len);

/* libvirt's virBufferEscapeString: < > & ' " escaped, control bytes other than \t \n \r dropped. */
void md_xml_escape(struct qs_buf *b, const char *s);
/*
 * Shifts the indentation of every "structural" newline of S (one between '>' and '<' with only white
 * space around it) by DELTA spaces: DELTA > 0 adds them (not before an empty line), DELTA < 0 removes them
 * where present. Text content keeps its newlines. Returns a new string; caller frees with free().
 */
char *md_xml_reindent(const char *s, size_t len, int delta);

/* Element helpers. NS NULL = no namespace. */
bool md_xml_is(xmlNodePtr node, const char *name, const char *ns);
xmlNodePtr md_xml_child(xmlNodePtr parent, const char *name, const char *ns);
/* Attribute without namespace as a new string; NULL if absent. Caller frees with free(). */
char *md_xml_prop(xmlNodePtr node, const char *name);
/* Text content as a new string; NULL when empty. Caller frees with free(). */
char *md_xml_content(xmlNodePtr node);
/* Inserts CHILD into PARENT before REF (NULL: last), indented like PARENT's other children (2 spaces per
 * level); touches PARENT. */
void md_xml_insert(xmlNodePtr parent, xmlNodePtr child, xmlNodePtr ref);
/* Unlinks and frees NODE with the white space before it; touches its parent. */
void md_xml_remove(xmlNodePtr node);
/* A new element in NS (may be NULL) with optional literal TEXT content. */
xmlNodePtr md_xml_new(xmlDocPtr doc, xmlNsPtr ns, const char *name, const char *text);
/* Sets a no-namespace attribute literally; touches NODE. */
void md_xml_set_prop(xmlNodePtr node, const char *name, const char *value);
/* Replaces NODE's content with literal TEXT; touches NODE. */
void md_xml_set_text(xmlNodePtr node, const char *text);

/* Strict decimal parse of a whole string. */
int md_parse_ll(const char *s, long long *out);

/* A string -> pointer hash map (open addressing, FNV-1a); keys are borrowed. */
struct md_map {
    const char **keys;
    void **vals;
    size_t cap, n;
};
void md_map_init(struct md_map *m, size_t expected);
void md_map_release(struct md_map *m);
/* Returns the existing value for KEY without replacing it, or NULL after inserting. */
void *md_map_put(struct md_map *m, const char *key, void *val);
void *md_map_get(const struct md_map *m, const char *key);

/* Store internals used by the tree. */
int md_store_snapdir_open(struct md_store *store, const char *domain, bool create, struct qs_error **err);
/* The state directory's descriptor (borrowed), and ROOT/run opened (caller closes; -1 on failure). */
int md_store_root_fd(const struct md_store *store);
int md_store_run_open(struct md_store *store);
bool md_lock_covers(const struct md_lock *lock, const struct md_store *store, const char *domain);
int md_lock_check(const struct md_lock *lock, const struct md_store *store, const char *domain,
                  struct qs_error **err);

/* md_tree_load(), optionally without refreshing the index (mutations: a failed one must leave the disk as it
 * was, a successful one makes the index stale anyway). */
/* The snapshot directory's generation: odd while a writer changes several files, bumped when it is done
 * (a seqlock for readers that take no lock). 0 when there is none. */
uint64_t md_store_gen_read(struct md_store *store, const char *domain);
struct md_tree *md_tree_load_internal(struct md_store *store, const char *domain, const struct md_lock *lock,
                                      bool write_index, struct qs_error **err);

/* The listing cache of qsnap before the index moved to ROOT/run/DOM.index (removed when seen). */
#define MD_INDEX_NAME_V1 ".qsnap-index"
/* Tree internals for tests: whether the last md_tree_load parsed N files and rewrote the index, and how it
 * read the directory: the index alone, the index checked against the entries' inode numbers (a racy stamp),
 * every file's stat, or the index and the files its journal adds. */
size_t md_tree_files_parsed(const struct md_tree *tree);
bool md_tree_index_written(const struct md_tree *tree);
enum { MD_LOAD_INDEX = 1, MD_LOAD_INODES, MD_LOAD_STAT, MD_LOAD_JOURNAL, MD_LOAD_PEEK };
int md_tree_load_path(const struct md_tree *tree);

/*
 * Writers, holding the lock, keep the tree they loaded in step with their own changes and commit it as the
 * new index, so that the next reader needs no snapshot file. Around every change of the snapshot directory
 * a writer takes md_wstamp_before()/_after(): a change by anything else in between (seen as a stamp that
 * moved) makes the commit drop the index instead.
 */
struct md_wstamp {
    struct stat last, before;
    bool ok, fine;
};
void md_wstamp_begin(struct md_wstamp *w, const struct md_tree *tree, int dirfd);
void md_wstamp_before(struct md_wstamp *w, int dirfd);
void md_wstamp_after(struct md_wstamp *w, int dirfd);
/* MID, a stat of the directory between two changes of this writer right after each other (W's last look the
 * later): whether they show timestamps finer than the tick. */
void md_wstamp_grain(struct md_wstamp *w, const struct stat *mid);
/* FILE (in the snapshot directory DIRFD) now holds SNAP: added to or replaced in the tree (by name). */
int md_tree_note_file(struct md_tree *tree, int dirfd, const char *file, const struct md_snapshot *snap);
/* Snapshot NAME is gone (its children were noted with their new parent before). */
void md_tree_note_removed(struct md_tree *tree, const char *name);
/* Writes the index of TREE stamped with W's last look at the directory, or removes it when W or a note
 * failed. */
/* Whether TREE, loaded under LOCK, still describes DOMAIN's snapshot directory as it is now (nothing changed
 * it since the load or since TREE's last commit), so that a writer under LOCK may work on it. */
bool md_tree_still(struct md_store *store, const struct md_tree *tree, const struct md_lock *lock,
                   const char *domain);
void md_tree_commit(struct md_store *store, struct md_tree *tree, const struct md_wstamp *w);
/* Removes DOMAIN's index (the next load reads the directory). */
void md_index_drop(struct md_store *store, const char *domain);
/*
 * For changes of the snapshot directory that touch no snapshot file (the intent record): when the index
 * held for the directory as it was (BEFORE, a stat taken just before the change), it holds for it as it is
 * now. Lock held.
 */
void md_index_restamp(struct md_store *store, const char *domain, int dirfd, const struct stat *before);
/*
 * Writers changing the directory without loading the tree (lock held): md_index_quick() says whether DOMAIN's
 * index, with its journal, vouches for the snapshot directory DIRFD as it is now, has every snapshot in the
 * file NAME.xml (so that the directory alone tells which names exist) and has room for more records;
 * md_index_quick_done() then records the N FILES written or removed, in that order, W the writer's stamps
 * from q->dir on - or drops the index when W saw anything else change the directory.
 */
/* Records a journal holds before a quick writer takes the long way (which writes a new index). */
#define MD_JOURNAL_MAX 128
struct md_quick {
    struct stat dir;
    uint64_t base_body, base_stamp; /* the index vouched by */
    size_t jl_len;                  /* its journal's good length (0: none about this index) */
    size_t nfiles;                  /* the files its records name */
    bool fine;
};
bool md_index_quick(struct md_store *store, const char *domain, int dirfd, struct md_quick *q);
/* For tests: the good records of DOMAIN's journal about its index (0: none). */
size_t md_index_journal_records(struct md_store *store, const char *domain);
/*
 * A create without the tree (lock held): md_index_create_peek() says whether DOMAIN's index (with at least
 * MIN_COUNT records) and its journal vouch for the snapshot directory DIRFD as it is now, every snapshot in
 * NAME.xml, and there is no NAME; then N holds the current snapshot's name ("" for none) and what
 * md_index_quick_done() needs.
 */
struct md_ixnew {
    struct md_quick q;
    char cur[QS_NAME_MAX + 1];
};
bool md_index_create_peek(struct md_store *store, const char *domain, int dirfd, const char *name, size_t min_count,
                          struct md_ixnew *n);
/* A file a quick writer wrote (INO: its inode now) or removed (INO 0), as its journal record has it: a written
 * one's snapshot's PARENT (NULL: a root) unless SAME_PARENT (rewritten, its parent unchanged), and whether it
 * is CURRENT. */
struct md_jfile {
    const char *file;
    uint64_t ino;
    const char *parent;
    bool same_parent, current;
};
void md_index_quick_done(struct md_store *store, const char *domain, const struct md_quick *q,
                         const struct md_jfile *files, size_t n, const struct md_wstamp *w);
/*
 * A writer making NAME current without the tree (lock held): md_index_current() says whether DOMAIN's index
 * (and its journal) vouch for the snapshot directory DIRFD as it is now, every snapshot in NAME.xml, and have
 * NAME; then C holds the current snapshot's name (if any). Once the writer rewrote the files (the old
 * current one first), md_index_current_done() patches the index in place, W the writer's stamps from c->dir
 * on - or drops it when W saw anything else change the directory. With a journal (c->journal) the writer
 * records the two files there instead.
 */
struct md_ixcur {
    struct stat dir;
    uint64_t body_sum, stamp_sum; /* the index looked at */
    uint32_t rec, old;            /* NAME's record and the current one's (UINT32_MAX: none) */
    char old_name[QS_NAME_MAX + 1];
    bool has_old, fine;
    /* the index has a journal: the two files go into it (md_index_quick_done with Q), nothing is patched */
    bool journal;
    struct md_quick q;
};
bool md_index_current(struct md_store *store, const char *domain, int dirfd, const char *name, struct md_ixcur *c);
void md_index_current_done(struct md_store *store, const char *domain, const struct md_ixcur *c,
                           const struct md_wstamp *w);
/* Whether T came from md_tree_peek_leaf(): then *BODY_SUM is the index's it was read from, *JL_LEN the length
 * of that index's journal then (0: none). */
bool md_tree_peeked_leaf(const struct md_tree *t, uint64_t *body_sum, size_t *jl_len);
/* md_tree_check_redefine() without the tree: the snapshot valid, and its domain's uuid DOMAIN_UUID (NULL:
 * not checked). */
int md_snapshot_check_redefine(const char *domain_uuid, const struct md_snapshot *snap, struct qs_error **err);
/* A fast 64-bit hash of N bytes (to tell a whole file from a torn or damaged one; not cryptographic). */
uint64_t md_hash(const void *p, size_t n);
/* Whether two stats of a directory around one change show timestamps finer than the clock tick. */
bool md_stamp_fine(const struct stat *before, const struct stat *after);

#endif
