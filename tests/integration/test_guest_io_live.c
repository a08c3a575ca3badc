/* test_live_race_live.c: a live snapshot's RAM and disks are of one instant - the guest (diskcounter.asm)
 * writes its IDE disk without end and keeps in RAM what it wrote; after each `--live` snapshot the RAM
 * loaded back must match the disk frozen by the same snapshot. Fails if the guest runs between the disk
 * switch and QEMU's RAM capture, whichever order (integration; QEMU 7.2 and 10.0 alike). */
#include "qsnap_test.h"

#include "qs_proc.h"
#include "qs_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SECTOR_OFF (64u * 512u) /* diskcounter.asm's LBA 64 */
#define ROUNDS 3

/* The IDE disk the guest writes, made in its own directory before QEMU starts (the harness's disks are
 * virtio). */
static char ide_dir[] = "/tmp/qsnap-race-XXXXXX";
static char ide_image[128], ide_file_arg[256];
static const char *ide_args[] = {"-blockdev", ide_file_arg, "-blockdev", "driver=qcow2,file=file-hda,node-name=hda",
                                 "-device", "ide-hd,drive=hda,id=hda,bus=ide.0,unit=0", NULL};
static struct qh_vm_config cfg_ide;

/* The dword at OFF of the qcow2 image PATH, read with qemu-io (-U: QEMU may hold the image). */
static uint32_t image_dword(const char *path, uint64_t off)
{
    struct qs_error *err = NULL;
    struct qs_proc_result res = {0};
    char cmd[64];
    char *argv[] = {"qemu-io", "-U", "-r", "-f", "qcow2", "-c", cmd, (char *)path, NULL};
    unsigned b[4];
    char *p;

    snprintf(cmd, sizeof(cmd), "read -v %llu 4", (unsigned long long)off);
    OK(qs_proc_run(argv, 60000, 0, &res, &err));
    assert_int_equal(res.status, 0);
    /* "00008000:  05 00 00 00  ...." */
    p = strstr(res.out, ":  ");
    assert_non_null(p);
    assert_int_equal(sscanf(p + 3, "%x %x %x %x", &b[0], &b[1], &b[2], &b[3]), 4);
    qs_proc_result_release(&res);
    return (uint32_t)(b[0] | b[1] << 8 | b[2] << 16 | (uint32_t)b[3] << 24);
}

/* A dword of guest RAM at ADDR through HMP xp on C. */
static uint32_t ram_dword(struct qmp_client *c, unsigned addr)
{
    struct qs_error *err = NULL;
    char cmd[32], *out = NULL, *p;
    unsigned v;

    snprintf(cmd, sizeof(cmd), "xp /1wx 0x%x", addr);
    OK(qmp_client_hmp(c, cmd, &out, &err));
    p = strstr(out, ": ");
    assert_non_null(p);
    assert_int_equal(sscanf(p + 2, "%x", &v), 1);
    free(out);
    return v;
}

/* The file image of the hda node QEMU runs on now. */
static char *hda_top(struct qmp_client *c)
{
    return qt_live_file(c, "hda");
}

/* A client on the QEMU that runs the domain now: the harness's own monitor until the first revert, then a
 * connection to the QEMU qsnap started (its one monitor: give it back before qsnap runs again). */
static struct qmp_client *vm_client(struct qt_fixture *f, bool reverted, struct qmp_client **own)
{
    if (!reverted)
        return qh_vm_qmp(f->vm);
    return *own = qt_daemon_client(f);
}

static void vm_client_done(struct qmp_client **own)
{
    qmp_client_free(*own);
    *own = NULL;
}

static void test_live_ram_and_disk_of_one_instant(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    struct qs_error *err = NULL;
    struct qmp_client *c, *own = NULL;
    uint32_t base_done = 0;

    OK(qh_vm_wait_counter_advancing(f->vm, 0, NULL, &err));
    qt_attach(f);
    for (int i = 0; i < ROUNDS; i++) {
        char name[16], *frozen, *info, *p;
        uint32_t pending, done, disk, later;
        double pause = -1;

        snprintf(name, sizeof(name), "r%d", i);
        c = vm_client(f, i > 0, &own);
        frozen = hda_top(c); /* the image the snapshot will freeze */
        vm_client_done(&own);
        /* the guest writes on while qsnap works */
        free(QSNAP_OK(f, "snapshot-create-as", "vm", name, "--live"));
        c = vm_client(f, i > 0, &own);
        later = ram_dword(c, 0x9014);
        vm_client_done(&own);
        info = QSNAP_OK(f, "snapshot-info", "vm", name);
        if ((p = strstr(info, "Guest pause:    ")))
            sscanf(p + strlen("Guest pause:    "), "%lf", &pause);
        free(info);

        /* the snapshot's RAM, loaded into a paused QEMU, against the disk it froze */
        free(QSNAP_OK(f, "snapshot-revert", "vm", name, "--paused"));
        if (i == 0)
            OK(qh_vm_wait_exit(f->vm, 10000, NULL, &err));
        c = vm_client(f, true, &own);
        qt_assert_status(c, "paused");
        pending = ram_dword(c, 0x9010);
        done = ram_dword(c, 0x9014);
        disk = image_dword(frozen, SECTOR_OFF);
        print_message("snapshot %s: RAM done=%u pending=%u, frozen disk %u, guest at %u after the create; "
                      "pause %.1f ms\n", name, done, pending, disk, later, pause);
        /* the guest ran between create and now: it is a live snapshot, not of the end */
        assert_true(done > base_done);
        assert_true(done <= later);
        /* one instant: the disk holds what the RAM says was written, or the write then in flight */
        assert_true(pending == done || pending == done + 1);
        assert_true(disk == done || disk == pending);
        base_done = done;
        free(frozen);
        qt_exec(c, "cont");
        /* let it write a while before the next round */
        for (int k = 0; k < 200 && ram_dword(c, 0x9014) < done + 50; k++)
            usleep(10 * 1000);
        vm_client_done(&own);
    }
}

static struct qt_fixture f1 = {.cfg = &cfg_ide};

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_prestate_setup_teardown(test_live_ram_and_disk_of_one_instant, qt_setup, qt_teardown, &f1),
    };
    const char *build = getenv("QSNAP_BUILD_DIR");
    struct qs_error *err = NULL;
    char *guest;
    int r;

    if (!build || !qh_qemu_available())
        return cmocka_run_group_tests(tests, NULL, NULL); /* skipped by qt_setup */
    /* the harness boots whatever $QSNAP_GUEST is: the disk-writing guest, from vda */
    guest = qs_asprintf("%s/tests/guest/diskcounter.bin", build);
    setenv("QSNAP_GUEST", guest, 1);
    free(guest);
    if (!mkdtemp(ide_dir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(ide_image, sizeof(ide_image), "%s/hda.qcow2", ide_dir);
    snprintf(ide_file_arg, sizeof(ide_file_arg), "driver=file,filename=%s,node-name=file-hda", ide_image);
    if (qh_image_create_blank(ide_image, "qcow2", 16u << 20, &err) < 0) {
        fprintf(stderr, "%s\n", err->message);
        return 1;
    }
    cfg_ide = qt_cfg_two_disks;
    cfg_ide.n_disks = 1; /* vda, the boot disk */
    cfg_ide.extra_args = ide_args;
    r = cmocka_run_group_tests(tests, NULL, NULL);
    if (!getenv("QSNAP_KEEP_TMP")) {
        char *rm[] = {"rm", "-rf", ide_dir, NULL};
        struct qs_proc_result res = {0};
        if (qs_proc_run(rm, 60000, 0, &res, &err) == 0)
            qs_proc_result_release(&res);
        qs_error_free(err);
    }
    return r;
}
