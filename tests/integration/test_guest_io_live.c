/* test_guest_io_live.c: snapshots taken while the guest writes its own disk, of every kind that captures RAM
 * or disk while the guest runs - internal, --memspec, --live, --live --precopy, --disk-only - and save/restore (integration;
 * QEMU 7.2 and 10.0 alike).
 *
 * The guest (diskcounter.asm) writes sector 64 of its IDE disk without end and keeps in RAM what it wrote:
 * done, and pending while a write is in flight. RAM and disk of one instant therefore have the disk holding
 * done or pending, never less than done, never more than pending; a snapshot where that fails let the guest
 * run between the capture of the one and of the other. After each revert (or restore) the guest must run on
 * from there: its writes reach the disk whole (every dword of the sector the same) and the value grows past
 * the snapshot's. A disk-only snapshot has no RAM: the guest boots on the frozen disk and counts on from the
 * value it finds there. Several rounds per kind, and a revert to the first snapshot after the later ones. */
#include "qsnap_test.h"

#include "qs_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SECTOR_OFF (64u * 512u) /* diskcounter.asm's LBA 64 */
#define SECTOR 512u
#define ROUNDS 3
#define RUN_ON 20            /* writes the guest must finish past a snapshot's value after its revert */
#define RUN_ON_TIMEOUT_MS 60000 /* against a hang only: a loaded machine writes far slower than an idle one */

enum kind { KIND_INTERNAL, KIND_MEMSPEC, KIND_LIVE, KIND_PRECOPY, KIND_PRECOPY_FALLBACK, KIND_DISK_ONLY };

/* The guest boots from its IDE disk (primary master, which it writes) beside a second IDE disk: both in
 * every snapshot. */
static const struct qh_disk ide_disks[] = {
    {.id = "hda", .boot = true, .size = 16u << 20},
    {.id = "hdb", .size = 16u << 20},
};
static const struct qh_vm_config cfg_ide = {.disks = ide_disks, .n_disks = 2, .style = QH_STYLE_IDE_HD};

/* What diskcounter.asm keeps at 0x9010. */
struct guest {
    uint32_t pending, done, bootval, torn;
};

/* A snapshot's instant as seen after its revert: RAM and the disk the guest sees. */
struct instant {
    uint32_t done, pending, disk;
};

static void guest_ram(struct qt_fixture *f, struct guest *g)
{
    struct qs_error *err = NULL;
    char *out = NULL;

    OK(qmp_client_hmp(qh_vm_qmp(f->vm), "xp /4wx 0x9010", &out, &err));
    assert_int_equal(sscanf(out, "%*x: %x %x %x %x", &g->pending, &g->done, &g->bootval, &g->torn), 4);
    free(out);
}

static uint32_t guest_done(struct qt_fixture *f)
{
    struct guest g;
    guest_ram(f, &g);
    return g.done;
}

/* The value sector 64 holds in BUF: all its dwords alike, or the test fails (a torn or stray write). */
static uint32_t sector_value(const uint8_t *buf, const char *where)
{
    uint32_t v = (uint32_t)buf[0] | (uint32_t)buf[1] << 8 | (uint32_t)buf[2] << 16 | (uint32_t)buf[3] << 24;

    for (unsigned i = 4; i < SECTOR; i += 4) {
        uint32_t w = (uint32_t)buf[i] | (uint32_t)buf[i + 1] << 8 | (uint32_t)buf[i + 2] << 16 |
                     (uint32_t)buf[i + 3] << 24;
        if (w != v)
            fail_msg("%s: sector 64 is torn: dword 0 is %u, dword %u is %u", where, v, i / 4, w);
    }
    return v;
}

/* Sector 64 as the guest sees it now (stop the guest first). */
static uint32_t disk_now(struct qt_fixture *f)
{
    struct qs_error *err = NULL;
    uint8_t buf[SECTOR];

    OK(qh_vm_guest_read(f->vm, "hda", SECTOR_OFF, SECTOR, buf, &err));
    return sector_value(buf, "the guest's disk");
}

/* Sector 64 of the image at PATH (one QEMU no longer writes: a frozen image, or the disk after QEMU quit). */
static uint32_t image_value(const char *path)
{
    struct qs_error *err = NULL;
    uint8_t buf[SECTOR];

    OK(qh_image_read(path, "qcow2", SECTOR_OFF, SECTOR, buf, &err));
    return sector_value(buf, path);
}

/* The image disk hda runs on now: what an external snapshot is about to freeze. Caller frees. */
static char *hda_top(struct qt_fixture *f)
{
    struct qs_error *err = NULL;
    char *file = NULL;

    OK(qh_vm_disk_device(f->vm, "hda", NULL, NULL, &file, &err));
    return file;
}

/* The instant a revert --paused (or restore --paused) left: RAM against the disk the guest sees. */
static struct instant check_instant(struct qt_fixture *f, const char *name)
{
    struct guest g;
    struct instant in;

    qt_assert_status(qh_vm_qmp(f->vm), "paused");
    guest_ram(f, &g);
    in.done = g.done;
    in.pending = g.pending;
    in.disk = disk_now(f);
    print_message("%s: RAM done=%u pending=%u, disk %u\n", name, in.done, in.pending, in.disk);
    assert_int_equal(g.torn, 0);
    assert_true(in.pending == in.done || in.pending == in.done + 1);
    if (in.disk != in.done && in.disk != in.pending)
        fail_msg("%s: RAM and disk are not of one instant: the disk holds %u, %s", name, in.disk,
                 in.disk < in.done ? "less than the RAM says was written" : "more than the RAM had written");
    return in;
}

/* The guest runs on from FROM: RUN_ON more writes finish, and, stopped, its disk holds what its RAM says it
 * wrote (done or the write in flight) - no write lost, none torn, none left over from before the revert. */
static void run_on(struct qt_fixture *f, uint32_t from)
{
    struct qmp_client *c = qh_vm_qmp(f->vm);
    int64_t deadline = qs_now_ms() + RUN_ON_TIMEOUT_MS;
    struct guest g;
    uint32_t disk;

    qt_exec(c, "cont");
    while (guest_done(f) < from + RUN_ON && qs_now_ms() < deadline)
        usleep(10 * 1000);
    qt_exec(c, "stop");
    guest_ram(f, &g);
    disk = disk_now(f);
    assert_int_equal(g.torn, 0);
    if (g.done < from + RUN_ON)
        fail_msg("the guest wrote only up to %u from %u in %d ms", g.done, from, RUN_ON_TIMEOUT_MS);
    assert_true(g.pending == g.done || g.pending == g.done + 1);
    if (disk != g.done && disk != g.pending)
        fail_msg("after running on from %u: RAM done=%u pending=%u, but the disk holds %u", from, g.done,
                 g.pending, disk);
    qt_exec(c, "cont");
}

/* The guest has booted (the magic is there) and counts. */
static void booted(struct qt_fixture *f)
{
    struct qs_error *err = NULL;
    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
}

static void create(struct qt_fixture *f, enum kind k, const char *name)
{
    char *mem, *spec;

    switch (k) {
    case KIND_INTERNAL:
        free(QSNAP_OK(f, "snapshot-create-as", "vm", name));
        break;
    case KIND_MEMSPEC:
        mem = qs_asprintf("%s/%s.mem", qh_vm_dir(f->vm), name);
        spec = qs_asprintf("file=%s,snapshot=external", mem);
        free(QSNAP_OK(f, "snapshot-create-as", "vm", name, "--memspec", spec));
        free(spec);
        free(mem);
        break;
    case KIND_LIVE:
        free(QSNAP_OK(f, "snapshot-create-as", "vm", name, "--live"));
        break;
    case KIND_PRECOPY:
        free(QSNAP_OK(f, "snapshot-create-as", "vm", name, "--live", "--precopy"));
        break;
    case KIND_PRECOPY_FALLBACK:
        free(QSNAP_OK(f, "snapshot-create-as", "vm", name, "--live", "--precopy", "--live-fallback"));
        break;
    case KIND_DISK_ONLY:
        free(QSNAP_OK(f, "snapshot-create-as", "vm", name, "--disk-only"));
        break;
    }
}

/* Snapshots of kind K with RAM, taken while the guest writes: each reverted (paused) at once and its RAM
 * checked against its disk, then the guest runs on; at the end the first one again, which must give back
 * exactly what it gave the first time. */
static void rounds(struct qt_fixture *f, enum kind k)
{
    struct instant at[ROUNDS], again;
    uint32_t frozen[ROUNDS];

    for (int i = 0; i < ROUNDS; i++) {
        char name[16], *top = NULL;
        uint32_t before, later;

        snprintf(name, sizeof(name), "s%d", i);
        if (k != KIND_INTERNAL)
            top = hda_top(f); /* the image the snapshot freezes */
        before = guest_done(f);
        create(f, k, name); /* the guest writes on while qsnap works */
        later = guest_done(f);
        frozen[i] = top ? image_value(top) : 0;
        free(top);

        free(QSNAP_OK(f, "snapshot-revert", "vm", name, "--paused"));
        qt_follow(f);
        at[i] = check_instant(f, name);
        print_message("  guest at %u before the create, %u after it%s\n", before, later,
                      k == KIND_INTERNAL ? "" : "; frozen image as read from the file too");
        /* an instant inside the create, not one before it (nor after) */
        assert_true(at[i].done >= before);
        assert_true(at[i].done <= later);
        if (k != KIND_INTERNAL)
            assert_int_equal(at[i].disk, frozen[i]);
        run_on(f, at[i].done);
    }

    /* back to the first, past the later ones */
    free(QSNAP_OK(f, "snapshot-revert", "vm", "s0", "--paused"));
    qt_follow(f);
    again = check_instant(f, "s0 again");
    assert_int_equal(again.done, at[0].done);
    assert_int_equal(again.pending, at[0].pending);
    assert_int_equal(again.disk, at[0].disk);
    run_on(f, again.done);
    qt_check_clean(f);
}

static void ram_rounds(struct qt_fixture *f, enum kind k)
{
    booted(f);
    qt_attach(f);
    rounds(f, k);
}

static void test_internal(void **state)
{
    ram_rounds(qt_fixture_of(state), KIND_INTERNAL);
}

static void test_memspec(void **state)
{
    ram_rounds(qt_fixture_of(state), KIND_MEMSPEC);
}

/* RAM and disks of one instant in a --live snapshot, whichever order QEMU captures them in (its RAM is written
 * while the guest runs on). */
static void test_live(void **state)
{
    ram_rounds(qt_fixture_of(state), KIND_LIVE);
}

/* --live --precopy: the RAM copied in passes while the guest writes, the guest stopped for the last of it and
 * the disk switch - RAM and disks of that one instant. */
static void test_precopy(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    enum kind k = KIND_PRECOPY;

    booted(f);
    qt_attach(f);
    if (!qt_precopy_coherent(qh_vm_qmp(f->vm))) {
        /* TCG before QEMU 9.0: a pre-copy's RAM missed the guest's last writes here (RAM done=4582, disk 4587) -
         * refused, nothing made, the guest running on; --live-fallback saves it paused, of one instant */
        char *top = hda_top(f), *mem = qs_asprintf("%s/hda.s0.mem", qh_vm_dir(f->vm)), *after, *list;
        qt_qsnap_fail(f, "loses guest writes from a pre-copy (QEMU 9.0 or newer can, or KVM)", "snapshot-create-as",
                      "vm", "s0", "--live", "--precopy", (char *)NULL);
        after = hda_top(f);
        assert_string_equal(after, top);
        assert_false(qt_exists(mem));
        list = QSNAP_OK(f, "snapshot-list", "vm", "--name");
        assert_string_equal(list, "\n");
        qt_assert_status(qh_vm_qmp(f->vm), "running");
        print_message("--live --precopy refused on this QEMU (TCG before 9.0); --live-fallback instead\n");
        free(list), free(after), free(mem), free(top);
        k = KIND_PRECOPY_FALLBACK;
    }
    rounds(f, k);
}

/* The guest boots on a disk-only snapshot's disk (revert --paused, then cont): QEMU shows it the frozen
 * value before it runs, and it counts on from exactly that value. */
static uint32_t boot_on(struct qt_fixture *f, const char *name, uint32_t frozen)
{
    struct guest g;
    uint32_t disk;

    free(QSNAP_OK(f, "snapshot-revert", "vm", name, "--paused"));
    qt_follow(f);
    qt_assert_status(qh_vm_qmp(f->vm), "paused");
    disk = disk_now(f);
    assert_int_equal(disk, frozen);
    qt_exec(qh_vm_qmp(f->vm), "cont");
    booted(f);
    guest_ram(f, &g);
    print_message("%s: frozen disk %u, the guest booted on it read %u, now at %u\n", name, frozen, g.bootval,
                  g.done);
    assert_int_equal(g.torn, 0);
    assert_int_equal(g.bootval, frozen);
    assert_true(g.done >= frozen);
    return frozen;
}

static void test_disk_only(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    uint32_t frozen[ROUNDS];

    booted(f);
    qt_attach(f);
    for (int i = 0; i < ROUNDS; i++) {
        char name[16], *top = hda_top(f);
        uint32_t before, later;

        snprintf(name, sizeof(name), "d%d", i);
        before = guest_done(f);
        create(f, KIND_DISK_ONLY, name);
        later = guest_done(f);
        frozen[i] = image_value(top);
        free(top);
        print_message("%s: guest at %u before the create, %u after it, frozen disk %u\n", name, before, later,
                      frozen[i]);
        /* a value the guest wrote while qsnap worked: done at that instant or the write then in flight */
        assert_true(frozen[i] >= before);
        assert_true(frozen[i] <= later + 1);
        run_on(f, boot_on(f, name, frozen[i]));
    }
    run_on(f, boot_on(f, "d0", frozen[0]));
    qt_check_clean(f);
}

/* save stops the writing guest and writes its RAM; restore --paused gives that RAM on the disk as QEMU left
 * it. */
static void test_save_restore(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    struct qs_error *err = NULL;

    booted(f);
    qt_attach(f);
    for (int i = 0; i < 2; i++) {
        char *file = qs_asprintf("%s/vm%d.save", qh_vm_dir(f->vm), i), *image = hda_top(f), name[16];
        uint32_t before, disk;
        struct instant in;

        snprintf(name, sizeof(name), "save %d", i);
        before = guest_done(f);
        free(QSNAP_OK(f, "save", "vm", file));
        OK(qh_vm_wait_exit(f->vm, 20000, NULL, &err));
        disk = image_value(image);
        free(QSNAP_OK(f, "restore", file, "--paused"));
        qt_adopt(f);
        in = check_instant(f, name);
        assert_true(in.done >= before);
        assert_int_equal(in.disk, disk);
        run_on(f, in.done);
        free(image);
        free(file);
    }
}

static struct qt_fixture f_internal = {.cfg = &cfg_ide}, f_memspec = {.cfg = &cfg_ide}, f_live = {.cfg = &cfg_ide},
                         f_precopy = {.cfg = &cfg_ide}, f_disk_only = {.cfg = &cfg_ide}, f_save = {.cfg = &cfg_ide};

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_prestate_setup_teardown(test_internal, qt_setup, qt_teardown, &f_internal),
        cmocka_unit_test_prestate_setup_teardown(test_memspec, qt_setup, qt_teardown, &f_memspec),
        cmocka_unit_test_prestate_setup_teardown(test_live, qt_setup, qt_teardown, &f_live),
        cmocka_unit_test_prestate_setup_teardown(test_precopy, qt_setup, qt_teardown, &f_precopy),
        cmocka_unit_test_prestate_setup_teardown(test_disk_only, qt_setup, qt_teardown, &f_disk_only),
        cmocka_unit_test_prestate_setup_teardown(test_save_restore, qt_setup, qt_teardown, &f_save),
    };
    const char *build = getenv("QSNAP_BUILD_DIR");

    if (getenv("QSNAP_TEST_FILTER")) /* e.g. "test_live": one kind */
        cmocka_set_test_filter(getenv("QSNAP_TEST_FILTER"));
    if (build) {
        /* the harness boots whatever $QSNAP_GUEST is: the disk-writing guest */
        char *guest = qs_asprintf("%s/tests/guest/diskcounter.bin", build);
        setenv("QSNAP_GUEST", guest, 1);
        free(guest);
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
