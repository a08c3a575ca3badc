/* qmp_features.c: what the QEMU behind a connection can do - asked once (query-commands,
 * query-migrate-capabilities, query-qmp-schema, the greeting's version) and cached on the connection. */
#include "qmp_priv.h"
#include "qs_util.h"

#include "qs_buf.h"
#include "qs_file.h"

#include <assert.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct qmp_features {
    json_object *commands;  /* name -> null, from query-commands; NULL until asked */
    json_object *caps;      /* capability -> state, from query-migrate-capabilities; NULL until asked */
    json_object *schema;    /* entity name -> SchemaInfo, from query-qmp-schema; NULL until asked */
    signed char known[QMP_FEATURE_LAST]; /* -1 not asked yet, else 0 / 1 */
    char *cache_dir;        /* where the schema's answers are kept per QEMU binary; NULL: nowhere */
};

static const char *const feature_names[] = {
    [QMP_FEATURE_FILE_MIGRATION] = "file-migration",
    [QMP_FEATURE_BACKGROUND_SNAPSHOT] = "background-snapshot",
    [QMP_FEATURE_MAPPED_RAM] = "mapped-ram",
    [QMP_FEATURE_MULTIFD] = "multifd",
    [QMP_FEATURE_DIRECT_IO] = "direct-io",
    [QMP_FEATURE_BG_KEEPS_PAUSED] = "background-snapshot-keeps-paused",
    [QMP_FEATURE_SETUP_HOLDS_LOCK] = "migration-setup-holds-lock",
    [QMP_FEATURE_FD_FILE_DEPRECATED] = "fd-file-migration-deprecated",
    [QMP_FEATURE_PRECOPY_COHERENT] = "precopy-dirty-tracking",
};
static_assert(sizeof(feature_names) / sizeof(feature_names[0]) == QMP_FEATURE_LAST, "feature_names");

const char *qmp_feature_to_string(enum qmp_feature f)
{
    return (unsigned)f < QMP_FEATURE_LAST ? feature_names[f] : NULL;
}

void qmp_features_free(struct qmp_features *f)
{
    if (!f)
        return;
    json_object_put(f->commands);
    json_object_put(f->caps);
    json_object_put(f->schema);
    free(f->cache_dir);
    free(f);
}

static struct qmp_features *features_of(struct qmp_client *c)
{
    struct qmp_features **slot = qmp_client_features_slot(c);

    if (!*slot) {
        *slot = qs_xcalloc(1, sizeof(**slot));
        memset((*slot)->known, -1, sizeof((*slot)->known));
    }
    return *slot;
}

/* Runs COMMAND and indexes its array reply by member KEY (VAL_KEY's value, or null, per entry). */
static json_object *index_reply(struct qmp_client *c, const char *command, const char *key, const char *val_key,
                                struct qs_error **err)
{
    struct qmp_reply *r = NULL;
    json_object *arr, *idx = NULL;

    if (qmp_client_execute(c, command, NULL, &r, err) < 0)
        return NULL;
    arr = r->value;
    idx = qmp_json_check(json_object_new_object());
    for (size_t i = 0; json_object_is_type(arr, json_type_array) && i < json_object_array_length(arr); i++) {
        json_object *e = json_object_array_get_idx(arr, i), *k, *v = NULL;
        if (!json_object_object_get_ex(e, key, &k) || !json_object_is_type(k, json_type_string))
            continue;
        if (val_key)
            json_object_object_get_ex(e, val_key, &v);
        qmp_json_set(idx, json_object_get_string(k), v ? json_object_get(v) : NULL);
    }
    qmp_reply_free(r);
    return idx;
}

int qmp_client_has_command(struct qmp_client *c, const char *name, bool *has, struct qs_error **err)
{
    struct qmp_features *f = features_of(c);

    if (!f->commands && !(f->commands = index_reply(c, "query-commands", "name", "name", err)))
        return -1;
    *has = json_object_object_get_ex(f->commands, name, NULL);
    return 0;
}

/* ---------------------------------------------------------------------------------------------------
 * query-qmp-schema: type names are opaque there, so a type is reached from a command by member names.
 */

static json_object *schema_entity(const struct qmp_features *f, const char *name)
{
    json_object *e = NULL;

    return name && json_object_object_get_ex(f->schema, name, &e) ? e : NULL;
}

static const char *str_member(json_object *o, const char *key)
{
    json_object *v;

    return json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string)
               ? json_object_get_string(v) : NULL;
}

/* The type of member MEMBER of object type TYPE (arrays are followed to their element type). */
static const char *schema_member_type(const struct qmp_features *f, const char *type, const char *member)
{
    json_object *obj = schema_entity(f, type), *members, *elem;
    const char *t = NULL;

    if (!obj || !qs_str_equal(str_member(obj, "meta-type"), "object") ||
        !json_object_object_get_ex(obj, "members", &members))
        return NULL;
    for (size_t i = 0; i < json_object_array_length(members) && !t; i++) {
        json_object *m = json_object_array_get_idx(members, i);
        if (qs_str_equal(str_member(m, "name"), member))
            t = str_member(m, "type");
    }
    elem = schema_entity(f, t);
    if (elem && qs_str_equal(str_member(elem, "meta-type"), "array"))
        t = str_member(elem, "element-type");
    return t;
}

/* Whether union (object with variants) TYPE has a variant for tag value CASE_. */
static bool schema_has_variant(const struct qmp_features *f, const char *type, const char *case_)
{
    json_object *obj = schema_entity(f, type), *variants;

    if (!obj || !json_object_object_get_ex(obj, "variants", &variants))
        return false;
    for (size_t i = 0; i < json_object_array_length(variants); i++)
        if (qs_str_equal(str_member(json_object_array_get_idx(variants, i), "case"), case_))
            return true;
    return false;
}

static int schema_load(struct qmp_client *c, struct qmp_features *f, struct qs_error **err)
{
    struct qmp_reply *r = NULL;
    json_object *arr;
    bool has = false;

    if (f->schema)
        return 0;
    if (qmp_client_has_command(c, "query-qmp-schema", &has, err) < 0)
        return -1;
    f->schema = qmp_json_check(json_object_new_object()); /* without the command every lookup says no */
    if (!has)
        return 0;
    /* 200-400 KB on one line: give it the time a loaded machine needs */
    if (qmp_client_execute_timeout(c, "query-qmp-schema", NULL, qmp_client_timeout(c) * 2, &r, err) < 0) {
        json_object_put(f->schema);
        f->schema = NULL;
        return -1;
    }
    arr = r->value;
    for (size_t i = 0; json_object_is_type(arr, json_type_array) && i < json_object_array_length(arr); i++) {
        json_object *e = json_object_array_get_idx(arr, i);
        const char *name = str_member(e, "name");
        if (name)
            qmp_json_set(f->schema, name, json_object_get(e));
    }
    qmp_reply_free(r);
    return 0;
}

/* The arg-type / ret-type of command NAME. */
static const char *schema_command_type(const struct qmp_features *f, const char *name, const char *which)
{
    json_object *cmd = schema_entity(f, name);

    return cmd && qs_str_equal(str_member(cmd, "meta-type"), "command") ? str_member(cmd, which) : NULL;
}

/* ---------------------------------------------------------------------------------------------------
 * Features
 */

static int cap_known(struct qmp_client *c, struct qmp_features *f, const char *cap, bool *has, struct qs_error **err)
{
    if (!f->caps && !(f->caps = index_reply(c, "query-migrate-capabilities", "capability", "state", err)))
        return -1;
    *has = json_object_object_get_ex(f->caps, cap, NULL);
    return 0;
}

/* query-kvm: whether the guest runs under KVM (else TCG, on this host) */
static int kvm_enabled(struct qmp_client *c, bool *on, struct qs_error **err)
{
    struct qmp_reply *r = NULL;

    if (qmp_client_execute(c, "query-kvm", NULL, &r, err) < 0)
        return -1;
    if (!qmp_value_bool(qmp_value_get(qmp_reply_value(r), "enabled"), on))
        *on = false;
    qmp_reply_free(r);
    return 0;
}

static bool version_at_least(const struct qmp_client *c, int major, int minor)
{
    int ma = 0, mi = 0;

    qmp_client_version_num(c, &ma, &mi, NULL);
    return ma > major || (ma == major && mi >= minor);
}

/* ---------------------------------------------------------------------------------------------------
 * The schema's answers, kept per QEMU binary: query-qmp-schema (207 KB on 7.2) takes QEMU 22-73 ms here, on
 * every memory operation of a QEMU without mapped-ram. A file CACHE_DIR/qemu-HASH.features holds them for
 * one binary: /proc/PID/exe's device, inode, size and modification time and the greeting's version, written
 * out in full on its second line and compared whole (the hash only names the file). A replaced binary is
 * another key; a file that does not match, or any error, is a miss - the schema is asked as before.
 */
#define CACHE_MAGIC "qsnap-qemu-features 1"
#define CACHE_MAX 4096

/* Features the schema decides, the ones kept. */
static bool cache_kept(enum qmp_feature feat)
{
    return feat == QMP_FEATURE_FILE_MIGRATION || feat == QMP_FEATURE_DIRECT_IO;
}

/* The binary's key and its file's name (caller frees both); false when the peer's binary cannot be told. */
static bool cache_key(struct qmp_client *c, char **key, char **name)
{
    pid_t pid = qmp_client_peer_pid(c);
    char exe[64];
    struct stat st;
    uint64_t h = 0xcbf29ce484222325ull;

    if (pid <= 0 || !qmp_client_version(c) || strchr(qmp_client_version(c), '\n'))
        return false;
    snprintf(exe, sizeof(exe), "/proc/%d/exe", (int)pid);
    if (stat(exe, &st) < 0)
        return false;
    *key = qs_asprintf("%ju %ju %jd %jd.%09ld %s", (uintmax_t)st.st_dev, (uintmax_t)st.st_ino,
                       (intmax_t)st.st_size, (intmax_t)st.st_mtim.tv_sec, (long)st.st_mtim.tv_nsec,
                       qmp_client_version(c));
    for (const unsigned char *p = (const unsigned char *)*key; *p; p++)
        h = (h ^ *p) * 0x100000001b3ull; /* FNV-1a */
    *name = qs_asprintf("qemu-%016" PRIx64 ".features", h);
    return true;
}

/* FEAT's kept answer: 1 / 0, or -1 when there is none. */
static int cache_get(struct qmp_client *c, struct qmp_features *f, enum qmp_feature feat)
{
    char *key = NULL, *name = NULL, *data = NULL, *want = NULL, *path;
    size_t len;
    int ret = -1;

    if (!f->cache_dir || !cache_key(c, &key, &name))
        return -1;
    path = qs_asprintf("%s/%s", f->cache_dir, name);
    if (qs_file_read(AT_FDCWD, path, CACHE_MAX, &data, &len, NULL) == 0) {
        char *head = qs_asprintf(CACHE_MAGIC "\nkey %s\n", key);
        want = qs_asprintf("\n%s ", feature_names[feat]);
        if (strncmp(data, head, strlen(head)) == 0) {
            const char *at = strstr(data + strlen(head) - 1, want);
            if (at && (at[strlen(want)] == '0' || at[strlen(want)] == '1') && at[strlen(want) + 1] == '\n')
                ret = at[strlen(want)] == '1';
        }
        free(head);
    }
    free(want);
    free(data);
    free(path);
    free(name);
    free(key);
    return ret;
}

/* Keeps the schema's answers known on C so far (errors ignored: a cache). */
static void cache_put(struct qmp_client *c, struct qmp_features *f)
{
    char *key = NULL, *name = NULL, *text;
    struct qs_buf b;
    int dfd;

    if (!f->cache_dir || !cache_key(c, &key, &name))
        return;
    qs_buf_init(&b, CACHE_MAX);
    qs_buf_addf(&b, CACHE_MAGIC "\nkey %s\n", key);
    for (int i = 0; i < QMP_FEATURE_LAST; i++)
        if (cache_kept((enum qmp_feature)i) && f->known[i] >= 0)
            qs_buf_addf(&b, "%s %d\n", feature_names[i], f->known[i]);
    text = qs_buf_detach(&b, NULL);
    if (text && (dfd = open(f->cache_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
        qs_file_write_atomic(dfd, name, text, strlen(text), 0600, NULL);
        close(dfd);
    }
    free(text);
    free(name);
    free(key);
}

void qmp_client_set_feature_cache(struct qmp_client *c, const char *dir)
{
    struct qmp_features *f = features_of(c);

    free(f->cache_dir);
    f->cache_dir = dir ? qs_xstrdup(dir) : NULL;
}

int qmp_client_feature(struct qmp_client *c, enum qmp_feature feat, bool *has, struct qs_error **err)
{
    struct qmp_features *f;
    bool h = false, cmd = false, asked = false;
    const char *t;
    int kept;

    if ((unsigned)feat >= QMP_FEATURE_LAST) {
        qs_error_set(err, QS_ERR_INVALID, "unknown QEMU feature %d", (int)feat);
        return -1;
    }
    f = features_of(c);
    if (f->known[feat] >= 0) {
        *has = f->known[feat];
        return 0;
    }
    switch (feat) {
    case QMP_FEATURE_FILE_MIGRATION:
        /* migrate {"channels": [{"addr": {"transport": "file", ...}}]} exists exactly where "file:" URIs do;
         * the fd goes in through add-fd, so that must be there too */
        if (qmp_client_has_command(c, "add-fd", &cmd, err) < 0)
            return -1;
        /* mapped-ram (9.0+) works over file: only: a QEMU with that capability has it, and the schema - 236 KB
         * that QEMU takes 45-440 ms to produce here - need not be asked */
        if (cmd && cap_known(c, f, "mapped-ram", &h, err) < 0)
            return -1;
        if (h || !cmd)
            break;
        if ((kept = cache_get(c, f, feat)) >= 0) {
            h = kept;
            break;
        }
        if (schema_load(c, f, err) < 0)
            return -1;
        t = schema_member_type(f, schema_command_type(f, "migrate", "arg-type"), "channels");
        t = t ? schema_member_type(f, t, "addr") : NULL;
        h = t && schema_has_variant(f, t, "file");
        asked = true;
        break;
    case QMP_FEATURE_DIRECT_IO:
        if ((kept = cache_get(c, f, feat)) >= 0) {
            h = kept;
            break;
        }
        if (schema_load(c, f, err) < 0)
            return -1;
        h = schema_member_type(f, schema_command_type(f, "query-migrate-parameters", "ret-type"), "direct-io");
        asked = true;
        break;
    case QMP_FEATURE_BACKGROUND_SNAPSHOT:
        if (cap_known(c, f, "background-snapshot", &h, err) < 0)
            return -1;
        break;
    case QMP_FEATURE_MAPPED_RAM:
        if (cap_known(c, f, "mapped-ram", &h, err) < 0)
            return -1;
        break;
    case QMP_FEATURE_MULTIFD:
        if (cap_known(c, f, "multifd", &h, err) < 0)
            return -1;
        break;
    /* behaviours no schema shows: the version is all there is (QEMU's own changelog for each) */
    case QMP_FEATURE_BG_KEEPS_PAUSED:
        h = version_at_least(c, 9, 0);
        break;
    case QMP_FEATURE_SETUP_HOLDS_LOCK:
        h = version_at_least(c, 8, 2);
        break;
    case QMP_FEATURE_FD_FILE_DEPRECATED:
        h = version_at_least(c, 9, 1);
        break;
    case QMP_FEATURE_PRECOPY_COHERENT:
        /* KVM keeps its own dirty log; TCG's dirty bitmap lost writes before 9.0 (its fast sync path left the
         * vCPUs' TLB entries writable without marking) */
        h = version_at_least(c, 9, 0);
        if (!h && kvm_enabled(c, &h, err) < 0)
            return -1;
        break;
    case QMP_FEATURE_LAST:
        break;
    }
    f->known[feat] = h;
    *has = h;
    if (asked)
        cache_put(c, f);
    return 0;
}

void qmp_client_features_forget(struct qmp_client *c)
{
    struct qmp_features **slot = qmp_client_features_slot(c);
    char *dir = *slot && (*slot)->cache_dir ? qs_xstrdup((*slot)->cache_dir) : NULL;

    qmp_features_free(*slot);
    *slot = NULL;
    if (dir)
        qmp_client_set_feature_cache(c, dir);
    free(dir);
}
