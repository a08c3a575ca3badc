/* test_check_live.c: qsnap snapshot-check on real QEMU and on its images while it is off (label integration). */
#include "qsnap_test.h"

#include "qs_util.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MiB (1024u * 1024u)

/* snapshot-check's exit status; stdout in *out (caller frees; may be NULL). */
static int check(struct qt_fixture *f, bool repair, bool json, char **out)
{
    char *o = NULL, *e = NULL;
    int rc;

    if (repair && json)
        rc = qt_qsnap_run(f, &o, &e, "snapshot-check", "vm", "--repair", "--json", NULL);
    else if (repair)
        rc = qt_qsnap_run(f, &o, &e, "snapshot-check", "vm", "--repair", NULL);
    else if (json)
        rc = qt_qsnap_run(f, &o, &e, "snapshot-check", "vm", "--json", NULL);
    else
        rc = qt_qsnap_run(f, &o, &e, "snapshot-check", "vm", NULL);
    if (rc == 0) {
        assert_string_equal(e, "");
    } else {
        /* the summary line, and nothing else on stderr */
        if (rc != 1 || !strstr(e, "error: domain 'vm': ") || !strstr(e, "discrepanc"))
            fail_msg("snapshot-check exit %d, stderr: %s\nstdout: %s", rc, e, o);
    }
    free(e);
    if (out)
        *out = o;
    else
        free(o);
    return rc;
}

static size_t count_objects(const char *json)
{
    size_t n = 0;
    for (const char *p = strchr(json, '{'); p; p = strchr(p + 1, '{'))
        n++;
    return n;
}

/* JSON objects of snapshot-check --json output that are notes (a limitation, not a discrepancy). */
static size_t count_notes(const char *json)
{
    size_t n = 0;
    for (const char *p = strstr(json, "\"note\": true"); p; p = strstr(p + 1, "\"note\": true"))
        n++;
    return n;
}

/* A clean check: exit 0 and nothing but notes, in text (each line "note: ...") and in JSON. */
static void check_clean(struct qt_fixture *f)
{
    char *out;
    int rc = check(f, false, false, &out);
    if (rc != 0)
        fail_msg("snapshot-check not clean (exit %d):\n%s", rc, out);
    for (const char *line = out; *line; line = strchr(line, '\n') + 1) {
        if (strncmp(line, "note: ", 6) != 0)
            fail_msg("snapshot-check not clean:\n%s", out);
        if (!strchr(line, '\n'))
            break;
    }
    free(out);
    assert_int_equal(check(f, false, true, &out), 0);
    assert_int_equal(count_objects(out), count_notes(out));
    free(out);
}

/*
 * The JSON object (of snapshot-check --json output JSON) with this kind and snapshot (NULL: null) whose
 * "repaired" is REPAIRED; counts them.
 */
static int items(const char *json, const char *kind, const char *snapshot, bool repaired)
{
    char *k = qs_asprintf("\"kind\": \"%s\",", kind);
    char *s = snapshot ? qs_asprintf("\"snapshot\": \"%s\",", snapshot) : qs_xstrdup("\"snapshot\": null,");
    const char *r = repaired ? "\"repaired\": true" : "\"repaired\": false";
    int n = 0;

    for (const char *p = strchr(json, '{'); p; p = strchr(p + 1, '{')) {
        const char *end = strchr(p, '}');
        char *obj = qs_xstrndup(p, end ? (size_t)(end - p) : strlen(p));
        if (strstr(obj, k) && strstr(obj, s) && strstr(obj, r))
            n++;
        free(obj);
    }
    free(k);
    free(s);
    return n;
}


/* FNV-1a of a whole file: the images' bytes must not change when the check repairs metadata. */
static uint64_t file_hash(const char *path)
{
    unsigned char buf[65536];
    uint64_t h = 1469598103934665603ull;
    ssize_t n;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    assert_true(fd >= 0);
    while ((n = read(fd, buf, sizeof(buf))) > 0)
        for (ssize_t i = 0; i < n; i++)
            h = (h ^ buf[i]) * 1099511628211ull;
    close(fd);
    return h;
}

static void img(const char *op, const char *tag, const char *path)
{
    char *cmd = qs_asprintf("qemu-img snapshot %s '%s' '%s'", op, tag, path);
    assert_int_equal(system(cmd), 0);
    free(cmd);
}

static void sh(const char *cmd)
{
    if (system(cmd) != 0)
        fail_msg("command failed: %s", cmd);
}

/* qsnap destroy, and the harness sees its QEMU gone. */
static void destroy(struct qt_fixture *f)
{
    struct qs_error *err = NULL;
    free(QSNAP_OK(f, "destroy", "vm"));
    OK(qh_vm_wait_exit(f->vm, 10000, NULL, &err));
}

static char *snapdir_file(struct qt_fixture *f, const char *name)
{
    return qs_asprintf("%s/snapshot/vm/%s", f->root, name);
}

/* ------------------------------------------------------------------------------------------------ */

/* Internal and external snapshots that agree with the images: clean while QEMU runs and after it stopped. */
static void test_consistent_running_and_off(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    struct qs_error *err = NULL;

    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    qt_attach(f);
    check_clean(f); /* no snapshot at all */
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "i1"));
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "i2"));
    check_clean(f);
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "e1", "--disk-only"));
    check_clean(f); /* QEMU on the overlays, the definition too */
    destroy(f);
    check_clean(f);
    /* an offline snapshot on the overlays, and check --repair on a clean domain changes nothing */
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "off1"));
    {
        /* the notes that i1 and i2 wait for e1's delete before a revert; nothing repaired */
        char *out;
        assert_int_equal(check(f, true, false, &out), 0);
        assert_null(strstr(out, "repaired"));
        free(out);
    }
    check_clean(f);
}

/*
 * VM off, discrepancies made by hand with qemu-img: each is reported with its kind; --repair fixes the safe
 * ones (tag gone from every disk, tag on every disk, qsnap's temporary) and leaves the rest, and the images'
 * bytes and tags stay as they were.
 */
static void test_offline_tags_and_repair(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    const char *vda = qh_vm_disk_path(f->vm, "vda"), *vdb = qh_vm_disk_path(f->vm, "vdb");
    char *tmp = snapdir_file(f, "s2.xml.tmp"), *orphan = qt_path_in(f, "vda.orphan");
    char *out, *tags_a, *tags_b, *cmd;
    uint64_t ha, hb, ho;

    qt_attach(f);
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "s1"));
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "s2"));
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "s3"));
    destroy(f);
    check_clean(f);

    img("-d", "s1", vda); /* s1: gone from every disk -> metadata can go */
    img("-d", "s1", vdb);
    img("-d", "s2", vdb); /* s2: gone from one disk -> not repairable */
    img("-c", "u1", vda); /* u1: on every disk without metadata -> adopted */
    img("-c", "u1", vdb);
    img("-c", "p1", vda); /* p1: on one disk without metadata -> reported */
    sh((cmd = qs_asprintf("echo partial > '%s'", tmp)));
    free(cmd);
    sh((cmd = qs_asprintf("qemu-img create -q -f qcow2 -F qcow2 -b '%s' '%s'", vda, orphan)));
    free(cmd);

    assert_int_equal(check(f, false, false, &out), 1);
    {
        char *want = qs_asprintf("snapshot 's1': disk 'vdb': tag 's1' missing from %s (fix: snapshot-delete "
                                 "--metadata, or snapshot-check --repair)\n",
                                 vdb);
        qt_assert_contains(out, want);
        free(want);
    }
    free(out);
    assert_int_equal(check(f, false, true, &out), 1);
    assert_int_equal(items(out, "tag-missing", "s1", false), 2);
    assert_int_equal(items(out, "tag-missing", "s2", false), 1);
    assert_int_equal(items(out, "untracked", "u1", false), 1);
    assert_int_equal(items(out, "untracked-partial", "p1", false), 1);
    assert_int_equal(items(out, "stale-temporary", NULL, false), 1);
    assert_int_equal(items(out, "unreferenced-overlay", NULL, false), 1);
    assert_int_equal(count_objects(out), 7);
    qt_assert_contains(out, "parent: the current snapshot 's3'");
    free(out);

    tags_a = qt_image_tags(vda);
    tags_b = qt_image_tags(vdb);
    ha = file_hash(vda);
    hb = file_hash(vdb);
    ho = file_hash(orphan);

    assert_int_equal(check(f, true, true, &out), 1);
    assert_int_equal(items(out, "tag-missing", "s1", true), 2);
    assert_int_equal(items(out, "untracked", "u1", true), 1);
    assert_int_equal(items(out, "stale-temporary", NULL, true), 1);
    assert_int_equal(items(out, "tag-missing", "s2", false), 1);
    assert_int_equal(items(out, "untracked-partial", "p1", false), 1);
    assert_int_equal(items(out, "unreferenced-overlay", NULL, false), 1);
    free(out);

    assert_true(file_hash(vda) == ha); /* metadata repairs: the images' bytes are untouched */
    assert_true(file_hash(vdb) == hb);

    /* what was repaired is gone from the report; the rest stays */
    assert_int_equal(check(f, false, true, &out), 1);
    assert_int_equal(count_objects(out), 3);
    assert_int_equal(items(out, "tag-missing", "s2", false), 1);
    assert_int_equal(items(out, "untracked-partial", "p1", false), 1);
    assert_int_equal(items(out, "unreferenced-overlay", NULL, false), 1);
    free(out);
    /* text form of a repair run: nothing left to repair, so no "repaired:" line */
    assert_int_equal(check(f, true, false, &out), 1);
    assert_null(strstr(out, "repaired: "));
    free(out);

    /* the metadata: s1 dropped (s2 re-parented to none), u1 adopted under the current snapshot s3 */
    out = QSNAP_OK(f, "snapshot-list", "vm", "--name");
    assert_string_equal(out, "s2\ns3\nu1\n\n");
    free(out);
    out = QSNAP_OK(f, "snapshot-info", "vm", "u1");
    qt_assert_contains(out, "State:          shutoff\n");
    qt_assert_contains(out, "Parent:         s3\n");
    qt_assert_contains(out, "Current:        no\n");
    free(out);
    assert_int_equal(qt_qsnap_run(f, NULL, NULL, "snapshot-parent", "vm", "s2", NULL), 1); /* a root now */
    assert_false(qt_exists(tmp));
    assert_true(qt_exists(orphan));
    /* the adopted snapshot works: revert to it (offline, qemu-img -a) */
    free(QSNAP_OK(f, "snapshot-revert", "vm", "u1"));

    /* images: same tags, same bytes (a revert with qemu-img -a rewrites the header: compare before it) */
    {
        char *a = qt_image_tags(vda), *b = qt_image_tags(vdb);
        assert_string_equal(a, tags_a);
        assert_string_equal(b, tags_b);
        free(a);
        free(b);
    }
    assert_true(file_hash(orphan) == ho);
    free(tags_a);
    free(tags_b);
    free(tmp);
    free(orphan);
}

/* Repair never touches image bytes: hashes before and after a repair that adopts and drops. */
static void test_repair_keeps_image_bytes(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    const char *vda = qh_vm_disk_path(f->vm, "vda"), *vdb = qh_vm_disk_path(f->vm, "vdb");
    char *out, *ta, *tb;
    uint64_t ha, hb;

    qt_attach(f);
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "gone"));
    destroy(f);
    img("-d", "gone", vda);
    img("-d", "gone", vdb);
    img("-c", "new", vda);
    img("-c", "new", vdb);
    ta = qt_image_tags(vda);
    tb = qt_image_tags(vdb);
    ha = file_hash(vda);
    hb = file_hash(vdb);
    assert_int_equal(check(f, true, true, &out), 0); /* everything found was repaired */
    assert_int_equal(items(out, "tag-missing", "gone", true), 2);
    assert_int_equal(items(out, "untracked", "new", true), 1);
    assert_int_equal(count_objects(out), 3);
    qt_assert_contains(out, "no parent: there is no current snapshot");
    free(out);
    check_clean(f);
    assert_true(file_hash(vda) == ha);
    assert_true(file_hash(vdb) == hb);
    out = qt_image_tags(vda);
    assert_string_equal(out, ta);
    free(out);
    out = qt_image_tags(vdb);
    assert_string_equal(out, tb);
    free(out);
    free(ta);
    free(tb);
}

/* Metadata files removed by hand: an orphaned child makes the tree unreadable (reported, not repaired);
 * a removed root snapshot's tags are adopted again, with its memory ("running"). */
static void test_removed_metadata(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    char *x1 = snapdir_file(f, "m1.xml"), *out;
    struct qs_error *err = NULL;
    pid_t pid = qh_vm_pid(f->vm);
    uint64_t lo, hi, now, got;

    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    qt_attach(f);
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "m1"));
    qt_disk_write(f, "vdb", 0x2a, 0);
    OK(qh_vm_read_counter(f->vm, &lo, &err));
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "m2"));
    OK(qh_vm_read_counter(f->vm, &hi, &err));
    qt_disk_write(f, "vdb", 0x2b, 0);
    assert_int_equal(unlink(x1), 0);
    assert_int_equal(check(f, false, true, &out), 1);
    assert_int_equal(items(out, "metadata-unreadable", NULL, false), 1);
    qt_assert_contains(out, "m1"); /* the loader's message names the missing parent */
    free(out);
    assert_int_equal(check(f, true, true, &out), 1); /* not repaired: a human decides */
    assert_int_equal(items(out, "metadata-unreadable", NULL, false), 1);
    free(out);

    /* m2's metadata gone too: both tags are on every disk without metadata */
    free(x1);
    x1 = snapdir_file(f, "m2.xml");
    assert_int_equal(unlink(x1), 0);
    assert_int_equal(check(f, false, true, &out), 1);
    assert_int_equal(items(out, "untracked", "m1", false), 1);
    assert_int_equal(items(out, "untracked", "m2", false), 1);
    free(out);
    assert_int_equal(check(f, true, false, &out), 0);
    qt_assert_contains(out, "repaired: tag 'm1' on every disk ('vda', 'vdb') has no snapshot metadata\n");
    free(out);
    check_clean(f);
    out = QSNAP_OK(f, "snapshot-info", "vm", "m1");
    qt_assert_contains(out, "State:          running\n"); /* vm-state-size > 0 */
    free(out);
    /* the adopted memory snapshot reverts in place: the same QEMU process, running, with the RAM counter of
     * m2's save (between the readings around it, behind the one before the revert) and m2's disk bytes */
    OK(qh_vm_wait_counter_advancing(f->vm, 0, &now, &err));
    free(QSNAP_OK(f, "snapshot-revert", "vm", "m2", "--paused"));
    assert_int_equal(qh_vm_pid(f->vm), pid);
    assert_int_equal(kill(pid, 0), 0);
    qt_assert_status(qh_vm_qmp(f->vm), "paused");
    OK(qh_vm_read_counter(f->vm, &got, &err));
    print_message("counter %llu at m2 (saved within [%llu, %llu]), %llu before the revert\n",
                  (unsigned long long)got, (unsigned long long)lo, (unsigned long long)hi, (unsigned long long)now);
    assert_true(got >= lo && got <= hi && got < now);
    assert_int_equal(qt_guest_reads(f, "vdb", 0x2a, 0), 1);
    qt_exec(qh_vm_qmp(f->vm), "cont");
    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    free(x1);
}

/* External snapshots: overlay, frozen image and memory file removed, overlay rebased elsewhere. */
static void test_external_files(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    char *mem = qt_path_in(f, "x2.mem"), *spec = qs_asprintf("file=%s,snapshot=external", mem);
    char *ovb1 = qt_path_in(f, "vdb.x1"), *ova1 = qt_path_in(f, "vda.x1"), *blank = qt_path_in(f, "blank.qcow2");
    char *out, *cmd;
    struct qs_error *err = NULL;

    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    qt_attach(f);
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "x1", "--disk-only"));
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "x2", "--memspec", spec));
    check_clean(f);
    /* x2 no longer current (its file edited by hand) while QEMU runs on its overlays: reported only */
    {
        char *x2 = snapdir_file(f, "x2.xml"), *data = qt_slurp(x2), *p = strstr(data, "<active>1</active>");
        FILE *fp;
        assert_non_null(p);
        p[strlen("<active>")] = '0';
        assert_non_null(fp = fopen(x2, "w"));
        fputs(data, fp);
        fclose(fp);
        assert_int_equal(check(f, true, true, &out), 1);
        assert_int_equal(items(out, "no-current", "x2", false), 1);
        assert_int_equal(count_objects(out), 1);
        free(out);
        free(QSNAP_OK(f, "snapshot-current", "vm", "x2")); /* the fix it suggests */
        free(data);
        free(x2);
    }
    check_clean(f);
    destroy(f);
    check_clean(f);
    /* the definition on x2's frozen image of vda (what a revert into it left before qsnap refused that):
     * reported, and clean again once it is back on the overlay */
    {
        char *x = qt_domain_xml(f), *ova2 = qt_path_in(f, "vda.x2"), *xmlpath = qt_path_in(f, "def.xml");
        char *src = qs_asprintf("<source file='%s'/>", ova2), *p = strstr(x, src), *y;
        FILE *fp;
        assert_non_null(p);
        y = qs_asprintf("%.*s<source file='%s'/>%s", (int)(p - x), x, ova1, p + strlen(src));
        assert_non_null(fp = fopen(xmlpath, "w"));
        fputs(y, fp);
        fclose(fp);
        free(QSNAP_OK(f, "define", xmlpath));
        assert_int_equal(check(f, false, true, &out), 1);
        assert_int_equal(items(out, "frozen-written", "x2", false), 1);
        assert_int_equal(items(out, "frozen-written", "x1", false), 0);
        free(out);
        assert_non_null(fp = fopen(xmlpath, "w"));
        fputs(x, fp);
        fclose(fp);
        free(QSNAP_OK(f, "define", xmlpath));
        check_clean(f);
        free(y);
        free(src);
        free(xmlpath);
        free(ova2);
        free(x);
    }

    assert_int_equal(unlink(mem), 0);
    assert_int_equal(unlink(ovb1), 0); /* x1's overlay of vdb, which x2 froze */
    sh((cmd = qs_asprintf("qemu-img create -q -f qcow2 '%s' 64M && qemu-img rebase -u -F qcow2 -b '%s' '%s'", blank,
                          blank, ova1)));
    free(cmd);
    assert_int_equal(check(f, true, true, &out), 1);
    assert_int_equal(items(out, "memory-missing", "x2", false), 1);
    /* x1's overlay is x2's frozen image: missing, it is x2's loss (an overlay no one needs may be gone) */
    assert_int_equal(items(out, "overlay-missing", "x1", false), 0);
    assert_int_equal(items(out, "frozen-missing", "x2", false), 1);
    assert_int_equal(items(out, "overlay-backing", "x1", false), 1);
    free(out);
    free(mem);
    free(spec);
    free(ovb1);
    free(ova1);
    free(blank);
}

/*
 * QEMU runs: a tag saved behind qsnap's back (QMP job) is adopted with its memory; a definition that lost
 * track of QEMU's overlays is pointed at them again; one pointing at an unrelated image is only reported.
 */
static void test_live_tags_and_definition(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    struct qs_error *err = NULL;
    const char *vda = qh_vm_disk_path(f->vm, "vda");
    char *ova = qt_path_in(f, "vda.d1"), *xmlpath = qt_path_in(f, "def.xml"), *x, *p, *out;

    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    qt_attach(f);
    {
        struct qmp_args *a = qmp_args_new(), *devs;
        qmp_args_set_str(a, "job-id", "behind");
        qmp_args_set_str(a, "tag", "hidden");
        qmp_args_set_str(a, "vmstate", "vda");
        devs = qmp_args_set_list(a, "devices");
        qmp_args_push_str(devs, "vda");
        qmp_args_push_str(devs, "vdb");
        OK(qmp_job_run(qh_vm_qmp(f->vm), "snapshot-save", a, "behind", NULL, &err));
        qmp_args_free(a);
    }
    assert_int_equal(check(f, false, true, &out), 1);
    assert_int_equal(items(out, "untracked", "hidden", false), 1);
    assert_int_equal(count_objects(out), 1);
    free(out);
    assert_int_equal(check(f, true, false, &out), 0);
    free(out);
    check_clean(f);
    out = QSNAP_OK(f, "snapshot-info", "vm", "hidden");
    qt_assert_contains(out, "State:          running\n");
    free(out);

    free(QSNAP_OK(f, "snapshot-create-as", "vm", "d1", "--disk-only"));
    check_clean(f);
    /* the definition back on the base image of vda, as if the switch had not been recorded */
    x = qt_domain_xml(f);
    {
        char *src = qs_asprintf("<source file='%s'/>", ova), *y;
        assert_non_null(p = strstr(x, src));
        p += strlen("<source file='");
        free(src);
        y = qs_asprintf("%.*s%s%s", (int)(p - x), x, vda, p + strlen(ova));
        FILE *fp = fopen(xmlpath, "w");
        assert_non_null(fp);
        fputs(y, fp);
        fclose(fp);
        free(y);
    }
    free(QSNAP_OK(f, "define", xmlpath));
    assert_int_equal(check(f, false, true, &out), 1);
    assert_int_equal(items(out, "definition-stale", NULL, false), 1);
    qt_assert_contains(out, "\"disk\": \"vda\"");
    free(out);
    assert_int_equal(check(f, true, true, &out), 0);
    assert_int_equal(items(out, "definition-stale", NULL, true), 1);
    free(out);
    check_clean(f);
    free(x);
    x = qt_domain_xml(f);
    qt_assert_contains(x, ova);
    free(x);

    /* a definition naming an image outside QEMU's chain: reported, not repaired */
    {
        char *other = qt_path_in(f, "other.qcow2"), *cmd, *y;
        sh((cmd = qs_asprintf("qemu-img create -q -f qcow2 '%s' 16M", other)));
        free(cmd);
        char *src = qs_asprintf("<source file='%s'/>", ova);
        x = qt_domain_xml(f);
        assert_non_null(p = strstr(x, src));
        p += strlen("<source file='");
        free(src);
        y = qs_asprintf("%.*s%s%s", (int)(p - x), x, other, p + strlen(ova));
        FILE *fp = fopen(xmlpath, "w");
        fputs(y, fp);
        fclose(fp);
        free(y);
        free(x);
        free(QSNAP_OK(f, "define", xmlpath));
        assert_int_equal(check(f, true, true, &out), 1);
        assert_int_equal(items(out, "definition-stale", NULL, false), 1);
        free(out);
        x = qt_domain_xml(f);
        qt_assert_contains(x, other);
        free(x);
        free(other);
    }
    free(ova);
    free(xmlpath);
}

static struct qt_fixture f1 = {.cfg = &qt_cfg_two_disks};
static struct qt_fixture f2 = {.cfg = &qt_cfg_two_disks};
static struct qt_fixture f3 = {.cfg = &qt_cfg_two_disks};
static struct qt_fixture f4 = {.cfg = &qt_cfg_two_disks};
static struct qt_fixture f5 = {.cfg = &qt_cfg_two_disks};
static struct qt_fixture f6 = {.cfg = &qt_cfg_two_disks};

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_prestate_setup_teardown(test_consistent_running_and_off, qt_setup, qt_teardown, &f1),
        cmocka_unit_test_prestate_setup_teardown(test_offline_tags_and_repair, qt_setup, qt_teardown, &f2),
        cmocka_unit_test_prestate_setup_teardown(test_repair_keeps_image_bytes, qt_setup, qt_teardown, &f3),
        cmocka_unit_test_prestate_setup_teardown(test_removed_metadata, qt_setup, qt_teardown, &f4),
        cmocka_unit_test_prestate_setup_teardown(test_external_files, qt_setup, qt_teardown, &f5),
        cmocka_unit_test_prestate_setup_teardown(test_live_tags_and_definition, qt_setup, qt_teardown, &f6),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
