/* test_vmstyles_live.c: qsnap on the VMs users actually run - each way of giving QEMU its disks (enum qh_style)
 * through attach, internal / external / --memspec create-revert-delete, save/restore, QEMU restarted by hand
 * and by qsnap, checked from the guest's side (RAM counter, disk bytes) and by libvirt (integration).
 *
 * One ctest entry per style (QSNAP_TEST_FILTER="STYLE.*"), so the styles run in parallel and a failure
 * names its style. Run by hand without the filter, it runs them all. */
#include "qsnap_test.h"

#include "qs_util.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MiB (1024u * 1024u)
#define OFF_BOOT (8u * MiB) /* far from the boot sector */
#define OFF_DATA (1u * MiB)

/* A style as a user writes it, and what libvirt would call its disks. */
struct style_case {
    const char *name; /* qh_style_name(style) */
    int style;
    bool relative;                       /* image paths relative to QEMU's cwd (the VM's directory) */
    bool daemonize;
    const char *qdev_boot, *qdev_data;   /* the devices' id= where the style takes one; NULL: its default */
    const char *bus;                     /* libvirt's <target bus=> of both disks */
    const char *target_boot, *target_data; /* libvirt's <target dev=> */
};

static const struct style_case cases[] = {
    /* the harness's classic form: ids that already are libvirt's names */
    {"blockdev", QH_STYLE_BLOCKDEV, false, false, "vda", "vdb", "virtio", "vda", "vdb"},
    /* the man page's form, relative paths, and a daemon (its cwd becomes /) */
    {"drive-virtio", QH_STYLE_DRIVE_VIRTIO, true, true, NULL, NULL, "virtio", "vda", "vdb"},
    /* libvirt's own command line: ids virtio-disk0/1 are aliases, not target names */
    {"drive-none", QH_STYLE_DRIVE_NONE, false, false, NULL, NULL, "virtio", "vda", "vdb"},
    {"drive-none-noid", QH_STYLE_DRIVE_NONE_NOID, false, false, NULL, NULL, "virtio", "vda", "vdb"},
    {"ide", QH_STYLE_IDE, false, false, NULL, NULL, "ide", "hda", "hdb"},
    {"ide-hd", QH_STYLE_IDE_HD, false, false, NULL, NULL, "ide", "hda", "hdb"},
    /* the data disk's id=sdc is already a libvirt name: honoured */
    {"scsi-hd", QH_STYLE_SCSI_HD, false, false, NULL, "sdc", "scsi", "sda", "sdc"},
    {"ahci", QH_STYLE_AHCI, false, false, NULL, NULL, "sata", "sda", "sdb"},
    /* -hda/-hdb with relative paths, QEMU in the foreground */
    {"hda", QH_STYLE_HDA, true, false, NULL, NULL, "ide", "hda", "hdb"},
};
#define N_CASES (sizeof(cases) / sizeof(cases[0]))

/* ------------------------------------------------------------------------------------------------ */
/* The fixture: a style's VM with a boot disk and a data disk. */

struct style_fixture {
    struct qt_fixture f; /* first: cmocka's state points at both */
    const struct style_case *c;
    struct qh_disk disks[2];
    struct qh_vm_config cfg;
    int64_t t0; /* when the part started, for its duration */
};

static int style_setup(void **state)
{
    struct style_fixture *s = *state;

    s->disks[0] = (struct qh_disk){.id = "boot", .boot = true, .qdev_id = s->c->qdev_boot};
    s->disks[1] = (struct qh_disk){.id = "data", .size = 16u * MiB, .qdev_id = s->c->qdev_data};
    s->cfg = (struct qh_vm_config){.mem_mb = 64, .disks = s->disks, .n_disks = 2, .style = s->c->style,
                                   .relative_paths = s->c->relative, .daemonize = s->c->daemonize};
    s->f.cfg = &s->cfg;
    s->t0 = qs_now_ms();
    return qt_setup(state);
}

static int style_teardown(void **state)
{
    struct style_fixture *s = *state;

    if (s->f.vm)
        print_message("%s: %.1f s\n", s->c->name, (double)(qs_now_ms() - s->t0) / 1000.0);
    return qt_teardown(state);
}

static const struct style_case *case_of(void **state)
{
    qt_fixture_of(state);
    return ((struct style_fixture *)*state)->c;
}

/* ------------------------------------------------------------------------------------------------ */
/* Checks. */

static void write_both(struct qt_fixture *f, uint8_t pattern)
{
    qt_guest_write(f, "boot", pattern, OFF_BOOT);
    qt_guest_write(f, "data", pattern, OFF_DATA);
}

/* What the guest sees on both disks is PATTERN (where write_both writes). */
static void expect_both(struct qt_fixture *f, uint8_t pattern, const char *when)
{
    int b = qt_guest_is(f, "boot", pattern, OFF_BOOT), d = qt_guest_is(f, "data", pattern, OFF_DATA);

    if (b != 1 || d != 1)
        print_error("%s: the guest should read 0x%02x: boot disk %s, data disk %s\n", when, pattern,
                    b ? "does" : "does not", d ? "does" : "does not");
    assert_int_equal(b, 1);
    assert_int_equal(d, 1);
}

/* A QEMU qsnap started in place of the VM's (start, restore, an external revert) becomes the harness's. */
static void follow(struct qt_fixture *f)
{
    qt_follow(f);
}

static void expect_state(struct qt_fixture *f, const char *domstate, const char *qemu_status)
{
    char *out = QSNAP_OK(f, "domstate", "vm"), *want = qs_asprintf("%s\n\n", domstate);

    assert_string_equal(out, want);
    free(out);
    free(want);
    if (qemu_status)
        qt_assert_status(qh_vm_qmp(f->vm), qemu_status);
}

struct dom_disk {
    char *source, *target, *bus;
};

/* The value of ATTR='...' in [P, END), or NULL. Caller frees. */
static char *attr_in(const char *p, const char *end, const char *attr)
{
    const char *a = strstr(p, attr), *q;
    char quote;

    if (!a || a >= end)
        return NULL;
    a += strlen(attr);
    quote = *a;
    if ((quote != '\'' && quote != '"') || !(q = strchr(a + 1, quote)))
        return NULL;
    return qs_xstrndup(a + 1, (size_t)(q - a - 1));
}

/* The <disk>s of the domain definition (ROOT/qemu/vm.xml), at most MAX. */
static size_t domain_disks(struct qt_fixture *f, struct dom_disk *out, size_t max)
{
    char *x = qt_domain_xml(f);
    const char *p = x, *end;
    size_t n = 0;

    while (n < max && (p = strstr(p, "<disk ")) && (end = strstr(p, "</disk>"))) {
        out[n].source = attr_in(p, end, "<source file=");
        out[n].target = attr_in(p, end, "<target dev=");
        out[n].bus = attr_in(p, end, " bus=");
        n++;
        p = end;
    }
    free(x);
    return n;
}

static void dom_disks_release(struct dom_disk *d, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(d[i].source);
        free(d[i].target);
        free(d[i].bus);
    }
}

/* The image QEMU runs disk ID on, as an absolute path (a relative one is QEMU's cwd's: the VM's dir). */
static char *live_file(struct qt_fixture *f, const char *id)
{
    struct qs_error *err = NULL;
    char *file = NULL, *abs, buf[PATH_MAX];

    OK(qh_vm_disk_device(f->vm, id, NULL, NULL, &file, &err));
    abs = file[0] == '/' ? qs_xstrdup(file) : qs_asprintf("%s/%s", qh_vm_dir(f->vm), file);
    free(file);
    if (realpath(abs, buf)) {
        free(abs);
        abs = qs_xstrdup(buf);
    }
    return abs;
}

/*
 * The definition has the two disks with absolute sources, the images QEMU really runs on; with NAMES also
 * libvirt's targets and buses for the style, and it validates as libvirt's domain XML.
 */
static void expect_definition(struct qt_fixture *f, const struct style_case *c, bool names)
{
    struct dom_disk d[4] = {{0}};
    size_t n = domain_disks(f, d, 4);
    char *live[2] = {live_file(f, "boot"), live_file(f, "data")};
    const char *want_target[2] = {c->target_boot, c->target_data};
    char *x;

    x = qt_domain_xml(f);
    if (n != 2)
        print_error("the definition should have 2 disks:\n%s\n", x);
    assert_int_equal(n, 2);
    for (int k = 0; k < 2; k++) {
        struct dom_disk *m = NULL;
        for (size_t i = 0; i < n; i++)
            if (d[i].source && strcmp(d[i].source, live[k]) == 0)
                m = &d[i];
        if (!m)
            print_error("%s: the definition should name the image QEMU runs the %s disk on, "
                        "<source file='%s'/>, in:\n%s\n", c->name, k ? "data" : "boot", live[k], x);
        assert_non_null(m);
        if (names && (!qs_str_equal(m->target, want_target[k]) || !qs_str_equal(m->bus, c->bus)))
            print_error("%s: the %s disk (%s) should be <target dev='%s' bus='%s'/> as libvirt names it, in:\n%s\n",
                        c->name, k ? "data" : "boot", live[k], want_target[k], c->bus, x);
        if (names) {
            assert_string_equal(m->target, want_target[k]);
            assert_string_equal(m->bus, c->bus);
        }
    }
    free(x);
    if (names) {
        x = qs_asprintf("%s/qemu/vm.xml", f->root);
        qt_validate_xml(x, "domain");
        free(x);
    }
    dom_disks_release(d, n);
    free(live[0]);
    free(live[1]);
}

static char *image_path(struct qt_fixture *f, const char *id)
{
    return qs_xstrdup(qh_vm_disk_path(f->vm, id));
}

/* A revert --paused that brings back RAM: the guest paused with the counter of the snapshot's instant,
 * between C0 and C1 (read around its create), and the disks' PATTERN; then it runs on. */
static void revert_paused_check(struct qt_fixture *f, const char *snap, uint64_t c0, uint64_t c1, uint8_t pattern)
{
    uint64_t got;
    char *when = qs_asprintf("after snapshot-revert vm %s --paused", snap);

    free(QSNAP_OK(f, "snapshot-revert", "vm", snap, "--paused"));
    follow(f);
    expect_state(f, "paused", "paused");
    got = qt_counter(f);
    if (got < c0 || got > c1)
        print_error("%s: the guest counter is %llu, the snapshot was taken between %llu and %llu\n", when,
                    (unsigned long long)got, (unsigned long long)c0, (unsigned long long)c1);
    assert_true(got >= c0 && got <= c1);
    expect_both(f, pattern, when);
    qt_exec(qh_vm_qmp(f->vm), "cont");
    {
        struct qs_error *err = NULL;
        OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    }
    free(when);
}

/* Creates snapshot NAME (with options A1 and A2, each may be NULL) with the counter read around it. */
static void create_timed(struct qt_fixture *f, const char *name, uint64_t *c0, uint64_t *c1, const char *a1,
                         const char *a2)
{
    *c0 = qt_counter(f);
    if (a2)
        free(QSNAP_OK(f, "snapshot-create-as", "vm", name, a1, a2));
    else if (a1)
        free(QSNAP_OK(f, "snapshot-create-as", "vm", name, a1));
    else
        free(QSNAP_OK(f, "snapshot-create-as", "vm", name));
    follow(f);
    *c1 = qt_counter(f);
}

static void expect_no_snapshots(struct qt_fixture *f)
{
    char *out = QSNAP_OK(f, "snapshot-list", "vm", "--name");
    assert_string_equal(out, "\n");
    free(out);
}

/* The end of every scenario: what a user would check after cleaning up. */
static void expect_clean_end(struct qt_fixture *f, const char *const *allowed)
{
    qt_check_clean(f);
    qt_no_orphans(f, allowed);
}

/* QEMU restarted by qsnap: destroy (the VM is shut off), start from the recorded command line; the guest runs. */
static void restart_by_qsnap(struct qt_fixture *f)
{
    struct qs_error *err = NULL;

    free(QSNAP_OK(f, "destroy", "vm"));
    OK(qh_vm_wait_exit(f->vm, 20000, NULL, &err));
    expect_state(f, "shut off", NULL);
    free(QSNAP_OK(f, "start", "vm"));
    qt_adopt(f);
    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    expect_state(f, "running", "running");
}

/*
 * Runs qsnap A1..A5 (NULL-terminated), a command that saves the guest's RAM through a migration into FILE.
 * A daemonized QEMU that opened its images by relative paths runs in '/': QEMU (7.2) reopens images by name
 * when a migration completes (file-posix drops write access on inactivation) and the migration fails. There
 * qsnap may refuse up front instead, saying why and changing nothing - no file, no snapshot, the run state
 * as it was - and once qsnap has restarted that QEMU itself (destroy + start, images by absolute paths) the
 * command must work. Returns true when the command succeeded; false when it was refused so and the VM has
 * been restarted by qsnap (the caller runs it again).
 */
static bool migrates(struct qt_fixture *f, const struct style_case *c, const char *file, const char *a1,
                     const char *a2, const char *a3, const char *a4, const char *a5)
{
    char *status = qt_status_of(qh_vm_qmp(f->vm)), *out = NULL, *errout = NULL, *list;
    char *before = QSNAP_OK(f, "snapshot-list", "vm", "--name");
    int rc = qt_qsnap_run(f, &out, &errout, a1, a2, a3, a4, a5, (char *)NULL);
    bool why;

    if (rc == 0) {
        free(status), free(out), free(errout), free(before);
        return true;
    }
    why = qs_str_has_prefix(errout, "error: ") &&
          (strstr(errout, "relative") || strstr(errout, "boot.qcow2") || strstr(errout, "data.qcow2"));
    if (!(c->daemonize && c->relative) || rc != 1 || !why)
        print_error("%s: qsnap %s failed (%d): %s\n", c->name, a1, rc, errout);
    assert_true(c->daemonize && c->relative);
    assert_int_equal(rc, 1);
    assert_true(why);
    /* nothing changed */
    assert_true(qh_vm_running(f->vm));
    qt_assert_status(qh_vm_qmp(f->vm), status);
    assert_false(qt_exists(file));
    list = QSNAP_OK(f, "snapshot-list", "vm", "--name");
    assert_string_equal(list, before);
    free(list);
    print_message("%s: qsnap %s refused: %s\n", c->name, a1, errout);
    /* qsnap's own restart names the images by absolute paths */
    restart_by_qsnap(f);
    if (strcmp(status, "paused") == 0)
        qt_exec(qh_vm_qmp(f->vm), "stop");
    free(status), free(out), free(errout), free(before);
    return false;
}

/* ------------------------------------------------------------------------------------------------ */
/* Scenarios, each on a fresh VM of the style. */

/*
 * What libvirt makes of it: the disks get libvirt's targets and buses, and every file qsnap writes - the
 * definition, internal, external and --memspec snapshots, after an external revert and after a restart by
 * qsnap - validates, and libvirt's test driver takes the domain and the snapshots.
 */
static void test_libvirt(void **state)
{
    const struct style_case *c = case_of(state);
    struct qt_fixture *f = qt_fixture_of(state);
    struct qs_error *err = NULL;
    char *mem = qt_path_in(f, "m1.mem"), *spec = qs_asprintf("file=%s,snapshot=external", mem);

    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    qt_attach(f);
    expect_definition(f, c, true);
    qt_libvirt_accepts(f);
    /* one of each kind; each create also rewrites the one before (no longer current) */
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "i1", "--description", "internal"));
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "e1", "--disk-only"));
    follow(f);
    expect_definition(f, c, true);
    if (!migrates(f, c, mem, "snapshot-create-as", "vm", "m1", "--memspec", spec))
        free(QSNAP_OK(f, "snapshot-create-as", "vm", "m1", "--memspec", spec));
    follow(f);
    expect_definition(f, c, true);
    qt_libvirt_accepts(f);
    free(QSNAP_OK(f, "snapshot-revert", "vm", "e1", "--running"));
    follow(f);
    expect_definition(f, c, true);
    qt_libvirt_accepts(f);
    restart_by_qsnap(f);
    expect_definition(f, c, true);
    qt_libvirt_accepts(f);
    free(mem), free(spec);
}

/*
 * Internal snapshots: create, revert --paused (the RAM counter within the create's window, the disks'
 * bytes) and running, delete (tags gone) - and across restarts: QEMU restarted by hand with the same command
 * line, snapshots taken before and after are listed, checked, reverted and deleted; then restarted by qsnap
 * (destroy + start), snapshots of that QEMU.
 */
static void test_internal(void **state)
{
    const struct style_case *c = case_of(state);
    struct qt_fixture *f = qt_fixture_of(state);
    struct qs_error *err = NULL;
    uint64_t a0, a1, b0, b1, k0, k1;
    char *boot = image_path(f, "boot"), *data = image_path(f, "data"), *out;

    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    qt_attach(f);
    expect_definition(f, c, false);
    write_both(f, 0x41);
    create_timed(f, "before", &a0, &a1, "--description", "taken before the restart");
    assert_true(qt_image_has_tag(boot, "before") && qt_image_has_tag(data, "before"));
    write_both(f, 0x40);
    revert_paused_check(f, "before", a0, a1, 0x41);
    expect_state(f, "running", "running");
    write_both(f, 0x42);

    /* by hand, the same command line: the same VM to the user */
    OK(qh_vm_stop(f->vm, 0, &err));
    OK(qh_vm_restart(f->vm, false, false, &err));
    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    expect_state(f, "running", "running");
    qt_check_clean(f);
    expect_definition(f, c, false);
    create_timed(f, "after", &b0, &b1, NULL, NULL);
    assert_true(qt_image_has_tag(boot, "after") && qt_image_has_tag(data, "after"));
    write_both(f, 0x43);
    out = QSNAP_OK(f, "snapshot-list", "vm", "--name");
    assert_string_equal(out, "after\nbefore\n\n");
    free(out);
    revert_paused_check(f, "before", a0, a1, 0x41);
    revert_paused_check(f, "after", b0, b1, 0x42);
    free(QSNAP_OK(f, "snapshot-revert", "vm", "before"));
    follow(f);
    expect_state(f, "running", "running");
    expect_both(f, 0x41, "after snapshot-revert vm before (running)");
    free(QSNAP_OK(f, "snapshot-revert", "vm", "after"));
    follow(f);
    expect_both(f, 0x42, "after snapshot-revert vm after (running)");
    qt_check_clean(f);

    /* by qsnap: destroy, start from the recorded command line */
    restart_by_qsnap(f);
    expect_both(f, 0x42, "after destroy and start");
    expect_definition(f, c, false);
    qt_check_clean(f);
    create_timed(f, "started", &k0, &k1, NULL, NULL);
    write_both(f, 0x44);
    revert_paused_check(f, "before", a0, a1, 0x41);
    revert_paused_check(f, "started", k0, k1, 0x42);
    qt_libvirt_accepts(f); /* the files of internal snapshots across restarts */

    free(QSNAP_OK(f, "snapshot-delete", "vm", "after"));
    free(QSNAP_OK(f, "snapshot-delete", "vm", "before"));
    free(QSNAP_OK(f, "snapshot-delete", "vm", "started"));
    assert_false(qt_image_has_tag(boot, "before") || qt_image_has_tag(boot, "after") || qt_image_has_tag(boot, "started"));
    assert_false(qt_image_has_tag(data, "before") || qt_image_has_tag(data, "after") || qt_image_has_tag(data, "started"));
    expect_no_snapshots(f);
    expect_both(f, 0x42, "after deleting every snapshot");
    expect_clean_end(f, NULL);
    free(boot), free(data);
}

/*
 * External disk-only: e1, e2 on one line, revert to e1 (QEMU restarted by qsnap on new overlays), then the
 * everyday clean-up - delete e2, delete e1 - keeps the current data and leaves no file behind.
 */
static void test_external(void **state)
{
    const struct style_case *c = case_of(state);
    struct qt_fixture *f = qt_fixture_of(state);
    struct qs_error *err = NULL;
    char *boot = image_path(f, "boot"), *data = image_path(f, "data"), *x, *file;

    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    qt_attach(f);
    write_both(f, 0x51);
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "e1", "--disk-only"));
    follow(f);
    expect_state(f, "running", "running");
    /* QEMU runs on new overlays, the definition says so, the frozen images keep their bytes */
    file = live_file(f, "data");
    assert_string_not_equal(file, data);
    free(file);
    expect_definition(f, c, false);
    write_both(f, 0x52);
    assert_int_equal(qt_image_is(data, "qcow2", 0x51, OFF_DATA), 1);
    assert_int_equal(qt_image_is(boot, "qcow2", 0x51, OFF_BOOT), 1);
    x = qt_snapshot_xml(f, "e1");
    qt_assert_contains(x, "<state>disk-snapshot</state>");
    free(x);

    free(QSNAP_OK(f, "snapshot-create-as", "vm", "e2", "--disk-only"));
    follow(f);
    write_both(f, 0x53);

    /* revert to e1 and run: QEMU restarted by qsnap on the disks of e1's instant */
    free(QSNAP_OK(f, "snapshot-revert", "vm", "e1", "--running"));
    follow(f);
    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    expect_state(f, "running", "running");
    expect_both(f, 0x51, "after snapshot-revert vm e1 --running");
    expect_definition(f, c, false);
    qt_check_clean(f);
    write_both(f, 0x54);

    /* clean up: the branch left by the revert is no snapshot's, the current data stays */
    free(QSNAP_OK(f, "snapshot-delete", "vm", "e2"));
    follow(f);
    expect_both(f, 0x54, "after deleting e2");
    qt_check_clean(f);
    qt_libvirt_accepts(f); /* the files a revert and a delete rewrote */
    free(QSNAP_OK(f, "snapshot-delete", "vm", "e1"));
    follow(f);
    expect_state(f, "running", "running");
    expect_both(f, 0x54, "after deleting e1");
    expect_no_snapshots(f);
    expect_definition(f, c, false);
    expect_clean_end(f, NULL);
    /* restarted by hand with the user's own command line: with no snapshot left, the current data is in the
       images that command line names (the merges went back into them) */
    OK(qh_vm_stop(f->vm, 0, &err));
    OK(qh_vm_restart(f->vm, false, false, &err));
    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    expect_both(f, 0x54, "after deleting every snapshot and restarting QEMU by hand");
    free(boot), free(data);
}

/* External with memory: the RAM of the instant comes back (paused, then running), the disks too; the delete
 * removes the memory file. */
static void test_memspec(void **state)
{
    const struct style_case *c = case_of(state);
    struct qt_fixture *f = qt_fixture_of(state);
    struct qs_error *err = NULL;
    char *mem = qt_path_in(f, "m1.mem"), *spec = qs_asprintf("file=%s,snapshot=external", mem), *x;
    uint64_t c0, c1;

    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    qt_attach(f);
    write_both(f, 0x61);
    c0 = qt_counter(f);
    if (!migrates(f, c, mem, "snapshot-create-as", "vm", "m1", "--memspec", spec)) {
        c0 = qt_counter(f);
        free(QSNAP_OK(f, "snapshot-create-as", "vm", "m1", "--memspec", spec));
    }
    follow(f);
    c1 = qt_counter(f);
    expect_state(f, "running", "running");
    assert_true(qt_exists(mem));
    expect_definition(f, c, false);
    x = qt_snapshot_xml(f, "m1");
    qt_assert_contains(x, "<state>running</state>");
    free(x);
    write_both(f, 0x62);

    revert_paused_check(f, "m1", c0, c1, 0x61);
    expect_definition(f, c, false);
    write_both(f, 0x63);
    free(QSNAP_OK(f, "snapshot-revert", "vm", "m1"));
    follow(f);
    expect_state(f, "running", "running");
    expect_both(f, 0x61, "after snapshot-revert vm m1");
    qt_check_clean(f);
    write_both(f, 0x64);

    free(QSNAP_OK(f, "snapshot-delete", "vm", "m1"));
    follow(f);
    expect_state(f, "running", "running");
    expect_both(f, 0x64, "after deleting m1");
    assert_false(qt_exists(mem));
    expect_no_snapshots(f);
    expect_definition(f, c, false);
    expect_clean_end(f, NULL);
    free(mem), free(spec);
}

/* save / restore (the RAM exactly, paused as saved), then an internal snapshot of the restored QEMU. */
static void test_save_restore(void **state)
{
    const struct style_case *c = case_of(state);
    struct qt_fixture *f = qt_fixture_of(state);
    static const char *const allowed[] = {"vm.save", NULL}; /* the user's file, not qsnap's */
    struct qs_error *err = NULL;
    char *file = qt_path_in(f, "vm.save");
    uint64_t c0, k0, k1;

    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    qt_attach(f);
    write_both(f, 0x71);
    qt_exec(qh_vm_qmp(f->vm), "stop");
    c0 = qt_counter(f);
    if (!migrates(f, c, file, "save", "vm", file, NULL, NULL)) {
        c0 = qt_counter(f);
        free(QSNAP_OK(f, "save", "vm", file));
    }
    OK(qh_vm_wait_exit(f->vm, 20000, NULL, &err));
    expect_state(f, "shut off", NULL);
    assert_int_equal(qt_image_is(qh_vm_disk_path(f->vm, "data"), "qcow2", 0x71, OFF_DATA), 1);

    free(QSNAP_OK(f, "restore", file));
    qt_adopt(f);
    expect_state(f, "paused", "paused");
    assert_int_equal(qt_counter(f), c0);
    expect_both(f, 0x71, "after restore");
    expect_definition(f, c, false);
    qt_exec(qh_vm_qmp(f->vm), "cont");
    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    qt_check_clean(f);

    /* the restored QEMU is qsnap's: snapshots of it work as of any other */
    write_both(f, 0x72);
    create_timed(f, "r1", &k0, &k1, NULL, NULL);
    write_both(f, 0x73);
    revert_paused_check(f, "r1", k0, k1, 0x72);
    free(QSNAP_OK(f, "snapshot-delete", "vm", "r1"));
    expect_no_snapshots(f);
    expect_clean_end(f, allowed);
    free(file);
}

/* ------------------------------------------------------------------------------------------------ */

static const struct {
    const char *part;
    void (*fn)(void **state);
} parts[] = {
    {"libvirt", test_libvirt},   {"internal", test_internal}, {"external", test_external},
    {"memspec", test_memspec},   {"save_restore", test_save_restore},
};
#define N_PARTS (sizeof(parts) / sizeof(parts[0]))

int main(void)
{
    static struct style_fixture fx[N_CASES][N_PARTS];
    static struct CMUnitTest tests[N_CASES * N_PARTS];
    static char names[N_CASES * N_PARTS][64];
    size_t n = 0;

    for (size_t i = 0; i < N_CASES; i++) {
        assert_string_equal(qh_style_name(cases[i].style), cases[i].name);
        for (size_t k = 0; k < N_PARTS; k++, n++) {
            fx[i][k].c = &cases[i];
            snprintf(names[n], sizeof(names[n]), "%s.%s", cases[i].name, parts[k].part);
            tests[n] = (struct CMUnitTest){names[n], parts[k].fn, style_setup, style_teardown, &fx[i][k]};
        }
    }
    if (getenv("QSNAP_TEST_FILTER")) /* e.g. "ide.*": one style per ctest entry */
        cmocka_set_test_filter(getenv("QSNAP_TEST_FILTER"));
    return _cmocka_run_group_tests("vmstyles", tests, n, NULL, NULL);
}
