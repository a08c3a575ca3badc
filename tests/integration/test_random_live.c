/* test_random_live.c: model-based random test of the snapshot life cycle on real QEMU - seeded random
 * sequences of create (internal, external disk-only, now and then with memory), guest writes, reverts and
 * deletes in any order, each step checked against a model of the disks' bytes, the RAM counter where memory
 * comes back, and the snapshot tree; at the end snapshot-check is clean and no file is orphaned. A running
 * variant and a shut-off one (integration).
 *
 * QSNAP_RANDOM_SEED=N repeats a sequence, QSNAP_RANDOM_STEPS=N sets its length, QSNAP_RANDOM_KINDS (e.g.
 * "internal" or "external,memspec") narrows the creates to find which kind a failure needs. The seed is printed first; on
 * a failure the operations so far are printed. Seeds that failed once are kept in regressions[] and run
 * every time, before a fresh seed. */
#include "qsnap_test.h"

#include "qs_util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MiB (1024u * 1024u)
#define SLOTS 5          /* places per disk a write goes to */
#define MAX_SNAPS 64     /* snapshots per sequence, alive or deleted */
#define MAX_ALIVE 6      /* beyond it, a create becomes a delete */
#define LIVE_STEPS 20    /* a fresh seed's length, running (~1.5-4 s a step on this loaded machine) */
#define OFFLINE_STEPS 24 /* and shut off (~1-3 s a step) */

enum variant { RUNNING, SHUTOFF };
static const char *const variant_names[] = {"running", "shutoff"};

/* Seeds that once failed, replayed every run up to the step that failed (then the clean-up and its checks),
 * with the QSNAP_RANDOM_KINDS they failed with (NULL: all). */
static const struct {
    enum variant variant;
    uint64_t seed;
    int steps;
    const char *kinds;
    const char *what; /* what it found */
} regressions[] = {
    {SHUTOFF, 2, 3, NULL, "external r1, revert to r1, delete r1: refused, 'is also the backing file of ... (another "
                    "branch)' - the branch is the VM's current disk"},
    {RUNNING, 2, 3, NULL, "external r1, revert to r1, delete r1 refused as 'another branch', running"},
    {SHUTOFF, 6, 8, NULL, "deleting an external snapshot whose overlay holds a later internal one is refused: "
                    "'merging it would lose that snapshot'"},
    {SHUTOFF, 10, 11, NULL, "revert to an internal snapshot whose tag sits below an external overlay succeeds, but the "
                      "disk keeps the overlay's data (the tag is applied to the image under it, which is also an "
                      "external snapshot's frozen image: seed 3, 15 steps, reverts to that one wrongly)"},
    {SHUTOFF, 12, 8, NULL, "revert to an external snapshot: an internal snapshot taken on the branch it leaves is then "
                     "looked for in the new overlay (snapshot-check: tag missing)"},
    {RUNNING, 3, 12, NULL, "revert to an internal snapshot whose tag sits below an external overlay: 'not found on "
                     "disk'"},
    {RUNNING, 108, 10, "internal,external", "a dead end: i1, e1, e2, revert e1, delete e1, delete e2 - the VM stays "
                                            "on e1's new overlay, and i1 is refused while it runs ('delete it while "
                                            "the domain is shut off')"},
    {RUNNING, 1786081863211077, 3, NULL, "a revert to a disk-only snapshot boots the guest afresh: the next "
                                         "operation read the guest's counter before the boot sector had run"},
    {RUNNING, 1773135946388536, 20, NULL, "the same after three reverts to one disk-only snapshot in a row"},
    {SHUTOFF, 1774061258206839, 14, NULL, "r1 disk-only, r2 internal, r3 disk-only, revert to r1 (nothing needs r3's "
                                          "overlay any more): a revert to r2 ran the disk on r2's image, r3's frozen "
                                          "image, and the next write changed what r3 reverts to"},
};
#define N_REGRESSIONS (sizeof(regressions) / sizeof(regressions[0]))

/* ------------------------------------------------------------------------------------------------ */
/* The model. */

enum disk_id { BOOT, DATA, N_DISKS };
static const char *const disk_ids[N_DISKS] = {"boot", "data"};

/* Where slot S of a disk is: the boot disk is 64 MiB (its sector 0 boots the guest), the data disk 16. */
static uint64_t slot_off(int disk, int s)
{
    return disk == BOOT ? (8u + 4u * (unsigned)s) * MiB : (1u + 2u * (unsigned)s) * MiB;
}

struct bytes {
    uint8_t b[N_DISKS][SLOTS]; /* the pattern of each slot's QT_LEN bytes; 0: never written */
};

enum kind { INTERNAL, EXTERNAL, MEMSPEC };

struct snap {
    char name[16];
    enum kind kind;
    struct bytes disk;
    bool ram;       /* memory comes back on revert */
    uint64_t c0, c1; /* counter window of its instant */
    int parent;     /* index, or -1 */
    bool alive;
};

struct model {
    struct bytes cur;
    struct snap s[MAX_SNAPS];
    int n;
    int current; /* index, or -1 */
    bool externals; /* an external snapshot was made: internal tags may sit below overlays */
};

/* splitmix64: the same sequence from a seed everywhere. */
static uint64_t rng_next(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static unsigned rng_below(uint64_t *x, unsigned n)
{
    return (unsigned)(rng_next(x) % n);
}

static int alive_count(const struct model *m)
{
    int k = 0;
    for (int i = 0; i < m->n; i++)
        k += m->s[i].alive;
    return k;
}

/* The K-th alive snapshot (K below alive_count). */
static int alive_at(const struct model *m, unsigned k)
{
    for (int i = 0; i < m->n; i++)
        if (m->s[i].alive && k-- == 0)
            return i;
    return -1;
}

/* ------------------------------------------------------------------------------------------------ */
/* A run: its fixture, model and log. */

struct run {
    struct qt_fixture f;
    enum variant variant;
    uint64_t seed;
    int steps;
    const char *what;  /* a regression's finding */
    const char *kinds; /* the creates allowed (QSNAP_RANDOM_KINDS), NULL: all */
    struct model m;
    char *log;   /* one line per operation */
    bool passed; /* set at the end: teardown prints the log when not */
    int at;      /* the step under way (1-based; steps + 1: the clean-up) */
    int refused;
    int64_t ms_ops, ms_disks, ms_tree, ms_check; /* where the time goes, for sizing the sequences */
    char *target[N_DISKS]; /* the domain's target of each disk (for offline writes) */
};

static void log_op(struct run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void log_op(struct run *r, const char *fmt, ...)
{
    va_list ap;
    char *line, *t;

    va_start(ap, fmt);
    line = qs_vasprintf(fmt, ap);
    va_end(ap);
    t = qs_asprintf("%s%s\n", r->log ? r->log : "", line);
    free(r->log);
    free(line);
    r->log = t;
}

static int run_setup(void **state)
{
    struct run *r = *state;
    static const struct qh_disk disks[] = {{.id = "boot", .boot = true}, {.id = "data", .size = 16u * MiB}};
    static const struct qh_vm_config cfg = {.mem_mb = 64, .disks = disks, .n_disks = 2};

    r->f.cfg = &cfg;
    memset(&r->m, 0, sizeof(r->m));
    r->m.current = -1;
    r->passed = false;
    r->at = 0;
    r->refused = 0;
    r->ms_ops = r->ms_disks = r->ms_tree = r->ms_check = 0;
    free(r->log);
    r->log = NULL;
    return qt_setup(state);
}

static int run_teardown(void **state)
{
    struct run *r = *state;

    if (!r->passed && r->f.vm) {
        char *save = NULL;
        print_error("\n%s sequence, seed %" PRIu64 " (QSNAP_RANDOM_SEED=%" PRIu64 " QSNAP_RANDOM_STEPS=%d%s%s to "
                    "repeat), failed in %s %d after these operations:\n",
                    variant_names[r->variant], r->seed, r->seed, r->steps, r->kinds ? " QSNAP_RANDOM_KINDS=" : "",
                    r->kinds ? r->kinds : "",
                    r->at > r->steps ? "the clean-up after step" : "step", r->at > r->steps ? r->steps : r->at);
        /* line by line: cmocka cuts long messages */
        for (char *l = strtok_r(r->log ? r->log : "", "\n", &save); l; l = strtok_r(NULL, "\n", &save))
            print_error("%s\n", l);
        if (r->what)
            print_error("(a regression case; it found: %s)\n", r->what);
    }
    for (int d = 0; d < N_DISKS; d++) {
        free(r->target[d]);
        r->target[d] = NULL;
    }
    free(r->log);
    r->log = NULL;
    return qt_teardown(state);
}

/* ------------------------------------------------------------------------------------------------ */
/* Checks against the model. */

/* Shut off: the image the definition runs disk D on (the guest's disk). Caller frees. */
static char *offline_source(struct run *r, int d)
{
    char *x = qt_domain_xml(&r->f), *want = qs_asprintf("<target dev='%s'", r->target[d]);
    char *t = strstr(x, want), *start = t, *p, *src;

    if (!t)
        print_error("no disk with target '%s' in the definition:\n%s\n", r->target[d], x);
    assert_non_null(t);
    while (start > x && strncmp(start, "<disk ", 6) != 0)
        start--;
    p = strstr(start, "<source file='");
    assert_true(p && p < t);
    p += strlen("<source file='");
    src = qs_xstrndup(p, strcspn(p, "'"));
    free(want);
    free(x);
    return src;
}

static void check_disks(struct run *r, const char *when)
{
    struct qt_fixture *f = &r->f;

    for (int d = 0; d < N_DISKS; d++) {
        struct qh_extent e[SLOTS];
        bool ok[SLOTS];
        struct qs_error *err = NULL;
        int res;

        for (int s = 0; s < SLOTS; s++)
            e[s] = (struct qh_extent){slot_off(d, s), QT_LEN, r->m.cur.b[d][s]};
        if (r->variant == RUNNING) {
            res = qh_vm_guest_check(f->vm, disk_ids[d], e, SLOTS, ok, &err);
        } else {
            char *src = offline_source(r, d);
            res = qh_image_check_extents(src, "qcow2", e, SLOTS, ok, &err);
            free(src);
        }
        qt_check(res, &err, "disk check", __FILE__, __LINE__);
        if (res != 1) {
            for (int s = 0; s < SLOTS; s++)
                if (!ok[s])
                    print_error("%s: disk %s slot %d (offset %" PRIu64 ") should read 0x%02x\n", when, disk_ids[d],
                                s, slot_off(d, s), r->m.cur.b[d][s]);
        }
        assert_int_equal(res, 1);
    }
}

/* snapshot-list --json against the model: the same names, parents and current snapshot. */
static void check_tree(struct run *r, const char *when)
{
    struct qs_error *err = NULL;
    char *json = QSNAP_OK(&r->f, "snapshot-list", "vm", "--json"), *want = qs_xstrdup(""), *got = qs_xstrdup("");
    struct qmp_reply *rep = qmp_reply_parse(json, &err);
    const struct qmp_value *list;

    qt_check(rep ? 0 : -1, &err, "snapshot-list --json", __FILE__, __LINE__);
    list = qmp_reply_value(rep);
    /* both as "name parent current" lines, in the model's creation order */
    for (int i = 0; i < r->m.n; i++) {
        const struct snap *s = &r->m.s[i];
        char *t;
        if (!s->alive)
            continue;
        t = qs_asprintf("%s%s %s %s\n", want, s->name, s->parent >= 0 ? r->m.s[s->parent].name : "-",
                        r->m.current == i ? "current" : "");
        free(want);
        want = t;
        for (size_t k = 0; k < qmp_value_array_len(list); k++) {
            const struct qmp_value *v = qmp_value_array_at(list, k);
            const char *parent = qmp_value_get_string(v, "parent");
            bool cur = false;
            if (!qs_str_equal(qmp_value_get_string(v, "name"), s->name))
                continue;
            qmp_value_bool(qmp_value_get(v, "current"), &cur);
            t = qs_asprintf("%s%s %s %s\n", got, s->name, parent ? parent : "-", cur ? "current" : "");
            free(got);
            got = t;
        }
    }
    if (strcmp(want, got) != 0 || qmp_value_array_len(list) != (size_t)alive_count(&r->m))
        print_error("%s: snapshots should be (name parent current):\n%sbut qsnap lists:\n%s\n", when, want, json);
    assert_string_equal(got, want);
    assert_int_equal(qmp_value_array_len(list), alive_count(&r->m));
    qmp_reply_free(rep);
    free(json), free(want), free(got);
}

/* A QEMU qsnap started in place of the VM's becomes the harness's. */
static void follow(struct run *r)
{
    if (r->variant == RUNNING)
        qt_follow(&r->f);
}

/* ------------------------------------------------------------------------------------------------ */
/* Operations. */

static void op_create(struct run *r, enum kind kind)
{
    struct qt_fixture *f = &r->f;
    struct snap *s = &r->m.s[r->m.n];
    char *mem = NULL, *spec = NULL;

    snprintf(s->name, sizeof(s->name), "r%d", r->m.n + 1);
    log_op(r, "snapshot-create-as vm %s%s", s->name,
           kind == EXTERNAL ? " --disk-only" : kind == MEMSPEC ? " --memspec file=DIR/NAME.mem" : "");
    s->kind = kind;
    s->disk = r->m.cur;
    s->parent = r->m.current;
    s->ram = r->variant == RUNNING && kind != EXTERNAL;
    if (r->variant == RUNNING)
        s->c0 = qt_counter(f);
    if (kind == MEMSPEC) {
        char *n = qs_asprintf("%s.mem", s->name);
        mem = qt_path_in(f, n);
        spec = qs_asprintf("file=%s,snapshot=external", mem);
        free(n);
        free(QSNAP_OK(f, "snapshot-create-as", "vm", s->name, "--memspec", spec));
    } else if (kind == EXTERNAL) {
        free(QSNAP_OK(f, "snapshot-create-as", "vm", s->name, "--disk-only"));
    } else {
        free(QSNAP_OK(f, "snapshot-create-as", "vm", s->name));
    }
    follow(r);
    if (r->variant == RUNNING)
        s->c1 = qt_counter(f);
    s->alive = true;
    r->m.current = r->m.n++;
    if (kind != INTERNAL)
        r->m.externals = true;
    free(mem);
    free(spec);
}

static void op_write(struct run *r, int disk, int slot, uint8_t pattern)
{
    log_op(r, "write 0x%02x to disk %s slot %d", pattern, disk_ids[disk], slot);
    if (r->variant == RUNNING) {
        qt_guest_write(&r->f, disk_ids[disk], pattern, slot_off(disk, slot));
    } else {
        char *src = offline_source(r, disk);
        qt_offline_write(src, pattern, slot_off(disk, slot));
        free(src);
    }
    r->m.cur.b[disk][slot] = pattern;
}

/*
 * Runs qsnap CMD vm S [FLAG]; it must succeed ("deleting snapshots in any order after any reverts succeeds",
 * issue 11 item 4) but in one case: an internal snapshot once external overlays exist (its tag may sit below
 * one) "can be reverted and deleted, or [is] refused with the exact reason and reported by snapshot-check" -
 * exit 1, an error naming the snapshot that does not claim its tag is missing (it is not), nothing changed
 * (the step's checks see to that), and snapshot-check, still exiting 0, names the snapshot. Returns true when
 * it ran.
 */
static bool may_refuse(struct run *r, const struct snap *s, const char *cmd, const char *flag)
{
    char *out = NULL, *errout = NULL;
    int rc;

    if (s->kind != INTERNAL || !r->m.externals) {
        if (flag)
            free(QSNAP_OK(&r->f, cmd, "vm", s->name, flag));
        else
            free(QSNAP_OK(&r->f, cmd, "vm", s->name));
        follow(r);
        return true;
    }
    rc = qt_qsnap_run(&r->f, &out, &errout, cmd, "vm", s->name, flag, (char *)NULL);
    if (rc != 0) {
        bool why = qs_str_has_prefix(errout, "error: ") && strstr(errout, s->name) && !strstr(errout, "not found");
        if (rc != 1 || !why)
            print_error("qsnap %s vm %s: exit %d, not a refusal with its reason: %s\n", cmd, s->name, rc, errout);
        assert_int_equal(rc, 1);
        assert_true(why);
        for (char *c = errout; *c; c++)
            if (*c == '\n')
                *c = ' ';
        log_op(r, "  refused: %s", errout);
        r->refused++;
        free(out);
        free(errout);
        out = errout = NULL;
        rc = qt_qsnap_run(&r->f, &out, &errout, "snapshot-check", "vm", (char *)NULL);
        if (rc != 0 || (!strstr(out, s->name) && !strstr(errout, s->name)))
            print_error("snapshot-check vm should exit 0 and report '%s', which qsnap refuses to %s (exit %d):\n%s%s\n",
                        s->name, cmd + strlen("snapshot-"), rc, out, errout);
        assert_int_equal(rc, 0);
        assert_true(strstr(out, s->name) || strstr(errout, s->name));
        rc = 1;
    }
    free(out);
    free(errout);
    follow(r);
    return rc == 0;
}

static void op_revert(struct run *r, int i)
{
    struct qt_fixture *f = &r->f;
    struct snap *s = &r->m.s[i];

    if (r->variant == SHUTOFF) {
        log_op(r, "snapshot-revert vm %s", s->name);
        char *out;
        if (!may_refuse(r, s, "snapshot-revert", NULL))
            return;
        out = QSNAP_OK(f, "domstate", "vm");
        assert_string_equal(out, "shut off\n\n");
        free(out);
    } else if (s->ram) {
        uint64_t got;
        log_op(r, "snapshot-revert vm %s --paused; cont", s->name);
        if (!may_refuse(r, s, "snapshot-revert", "--paused"))
            return;
        qt_assert_status(qh_vm_qmp(f->vm), "paused");
        got = qt_counter(f);
        if (got < s->c0 || got > s->c1)
            print_error("revert to %s: the guest counter is %" PRIu64 ", the snapshot was taken between %" PRIu64
                        " and %" PRIu64 "\n", s->name, got, s->c0, s->c1);
        assert_true(got >= s->c0 && got <= s->c1);
        qt_exec(qh_vm_qmp(f->vm), "cont");
    } else {
        log_op(r, "snapshot-revert vm %s --running", s->name);
        struct qs_error *err = NULL;
        if (!may_refuse(r, s, "snapshot-revert", "--running"))
            return;
        qt_assert_status(qh_vm_qmp(f->vm), "running");
        /* a snapshot without RAM boots the guest afresh: its counter comes back once the boot sector runs
         * (under load, later than the next operation would read it) */
        OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    }
    r->m.cur = s->disk;
    r->m.current = i;
}

static void op_delete(struct run *r, int i)
{
    struct snap *s = &r->m.s[i];

    log_op(r, "snapshot-delete vm %s", s->name);
    if (!may_refuse(r, s, "snapshot-delete", NULL))
        return;
    for (int k = 0; k < r->m.n; k++)
        if (r->m.s[k].alive && r->m.s[k].parent == i)
            r->m.s[k].parent = s->parent;
    if (r->m.current == i)
        r->m.current = s->parent;
    s->alive = false;
    if (s->kind == MEMSPEC) {
        char *n = qs_asprintf("%s.mem", s->name), *p = qt_path_in(&r->f, n);
        if (qt_exists(p))
            print_error("%s's memory file %s is still there\n", s->name, p);
        assert_false(qt_exists(p));
        free(n), free(p);
    }
}

/* KIND, or the next one ALLOW (QSNAP_RANDOM_KINDS) allows (the draws stay the same). */
static enum kind kind_allowed(enum kind kind, enum variant v, const char *allow)
{
    static const char *const names[] = {"internal", "external", "memspec"};

    for (int k = 0; allow && *allow && k < 3; k++) {
        enum kind c = (enum kind)(((int)kind + k) % 3);
        if (strstr(allow, names[c]) && !(c == MEMSPEC && v == SHUTOFF))
            return c;
    }
    return kind;
}

/* One random step: the same draws whatever qsnap does, so a seed always means the same sequence. */
static void step(struct run *r, uint64_t *rng, int k)
{
    unsigned what = rng_below(rng, 100), pick = rng_below(rng, 1000), disk = rng_below(rng, N_DISKS);
    unsigned slot = rng_below(rng, SLOTS), pattern = 1 + rng_below(rng, 255), kind = rng_below(rng, 10);
    int alive = alive_count(&r->m);
    char when[64];

    int64_t t0 = qs_now_ms(), t1, t2, t3;

    snprintf(when, sizeof(when), "step %d", k + 1);
    if (what < 35 && alive >= MAX_ALIVE)
        what = 80; /* a delete instead */
    if (what >= 60 && alive == 0)
        what = 0; /* nothing to revert or delete: a create */
    if (r->m.n >= MAX_SNAPS && what < 35)
        what = 35;
    if (what < 35) {
        /* internal or external alike; with memory now and then (running only) */
        enum kind kk = kind < 5 ? INTERNAL : kind < 9 || r->variant == SHUTOFF ? EXTERNAL : MEMSPEC;
        op_create(r, kind_allowed(kk, r->variant, r->kinds));
    } else if (what < 60) {
        op_write(r, (int)disk, (int)slot, (uint8_t)pattern);
    } else if (what < 80) {
        op_revert(r, alive_at(&r->m, pick % (unsigned)alive));
    } else {
        op_delete(r, alive_at(&r->m, pick % (unsigned)alive));
    }
    t1 = qs_now_ms();
    check_disks(r, when);
    t2 = qs_now_ms();
    check_tree(r, when);
    t3 = qs_now_ms();
    qt_check_clean(&r->f);
    r->ms_ops += t1 - t0;
    r->ms_disks += t2 - t1;
    r->ms_tree += t3 - t2;
    r->ms_check += qs_now_ms() - t3;
}

/* The domain's target names of the two disks, from the definition, matched by their images. */
static void learn_targets(struct run *r)
{
    char *x = qt_domain_xml(&r->f);

    for (int d = 0; d < N_DISKS; d++) {
        char *want = qs_asprintf("<source file='%s'/>", qh_vm_disk_path(r->f.vm, disk_ids[d]));
        char *p = strstr(x, want), *t;
        assert_non_null(p);
        t = strstr(p, "<target dev='");
        assert_non_null(t);
        t += strlen("<target dev='");
        r->target[d] = qs_xstrndup(t, strcspn(t, "'"));
        free(want);
    }
    free(x);
}

static void run_sequence(struct run *r)
{
    struct qt_fixture *f = &r->f;
    struct qs_error *err = NULL;
    uint64_t rng = r->seed;

    print_message("%s sequence: seed %" PRIu64 ", %d steps%s%s\n", variant_names[r->variant], r->seed, r->steps,
                  r->kinds ? ", creates: " : "", r->kinds ? r->kinds : "");
    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    qt_attach(f);
    learn_targets(r);
    if (r->variant == SHUTOFF) {
        log_op(r, "destroy vm");
        free(QSNAP_OK(f, "destroy", "vm"));
        OK(qh_vm_wait_exit(f->vm, 20000, NULL, &err));
    }
    for (int k = 0; k < r->steps; k++) {
        r->at = k + 1;
        step(r, &rng, k);
    }
    r->at = r->steps + 1;
    /* then everything goes, in a random order; what is refused (see may_refuse) is tried again later */
    while (alive_count(&r->m) > 0) {
        unsigned n = (unsigned)alive_count(&r->m), first = rng_below(&rng, n), k;
        for (k = 0; k < n; k++) {
            int i = alive_at(&r->m, (first + k) % n);
            op_delete(r, i);
            if (!r->m.s[i].alive)
                break;
        }
        if (k == n) {
            char names[MAX_ALIVE * 16 + 16] = "";
            for (int i = 0; i < r->m.n; i++)
                if (r->m.s[i].alive && strlen(names) + strlen(r->m.s[i].name) + 2 < sizeof(names))
                    strcat(strcat(names, " "), r->m.s[i].name);
            fail_msg("every snapshot left (%s) is refused deletion: a dead end", names + 1);
        }
        check_disks(r, "clean-up");
        check_tree(r, "clean-up");
    }
    qt_check_clean(f);
    qt_no_orphans(f, NULL);
    print_message("%s sequence, seed %" PRIu64 ": %d steps, %d snapshots made, %d refusals; %.1f s in "
                  "operations, %.1f s checking disks, %.1f s the tree, %.1f s snapshot-check\n",
                  variant_names[r->variant], r->seed, r->steps, r->m.n, r->refused, r->ms_ops / 1000.0,
                  r->ms_disks / 1000.0, r->ms_tree / 1000.0, r->ms_check / 1000.0);
    r->passed = true;
}

/* ------------------------------------------------------------------------------------------------ */

static void test_sequence(void **state)
{
    struct run *r = *state;
    qt_fixture_of(state);
    run_sequence(r);
}

static uint64_t fresh_seed(void)
{
    const char *e = getenv("QSNAP_RANDOM_SEED");
    struct timespec ts;

    if (e && *e)
        return strtoull(e, NULL, 0);
    clock_gettime(CLOCK_REALTIME, &ts);
    return ((uint64_t)ts.tv_sec * 1000003u) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
}

static int steps_for(enum variant v)
{
    const char *e = getenv("QSNAP_RANDOM_STEPS");
    if (e && *e)
        return atoi(e);
    return v == RUNNING ? LIVE_STEPS : OFFLINE_STEPS;
}

int main(void)
{
    static struct run runs[N_REGRESSIONS + 2];
    static struct CMUnitTest tests[N_REGRESSIONS + 2];
    static char names[N_REGRESSIONS + 2][96];
    uint64_t seed = fresh_seed();
    size_t n = 0;

    /* with a seed given, only that sequence (both variants) */
    for (size_t i = 0; i < N_REGRESSIONS && !getenv("QSNAP_RANDOM_SEED"); i++) {
        runs[n].variant = regressions[i].variant;
        runs[n].seed = regressions[i].seed;
        runs[n].steps = regressions[i].steps;
        runs[n].what = regressions[i].what;
        runs[n].kinds = regressions[i].kinds;
        snprintf(names[n], sizeof(names[n]), "regression.%s.%" PRIu64, variant_names[runs[n].variant], runs[n].seed);
        n++;
    }
    for (int v = RUNNING; v <= SHUTOFF; v++) {
        runs[n].variant = (enum variant)v;
        runs[n].seed = seed;
        runs[n].steps = steps_for((enum variant)v);
        runs[n].kinds = getenv("QSNAP_RANDOM_KINDS");
        snprintf(names[n], sizeof(names[n]), "random.%s", variant_names[v]);
        n++;
    }
    for (size_t i = 0; i < n; i++)
        tests[i] = (struct CMUnitTest){names[i], test_sequence, run_setup, run_teardown, &runs[i]};
    print_message("random sequences: seed %" PRIu64 " (QSNAP_RANDOM_SEED=%" PRIu64 " to repeat)\n", seed, seed);
    if (getenv("QSNAP_TEST_FILTER")) /* e.g. "*shutoff*" */
        cmocka_set_test_filter(getenv("QSNAP_TEST_FILTER"));
    return _cmocka_run_group_tests("random", tests, n, NULL, NULL);
}
