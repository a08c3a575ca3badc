/* test_qargv.c: QEMU command lines as users write them - the option that opens each disk is found (by drive
 * id, node name or image, relative paths against QEMU's directory) and pointed at a new image whatever its
 * style, and a start's argv keeps the user's monitor (label unit). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "md.h"
#include "qargv.h"
#include "qs_util.h"

#include <stdlib.h>
#include <string.h>

static void test_options_round_trip(void **state)
{
    size_t n;
    struct qopt *kv = qopts_parse("file=/a,,b/c.qcow2,if=virtio,readonly", &n);
    char *back;
    (void)state;

    assert_int_equal(n, 3);
    assert_string_equal(qopts_get(kv, n, "file"), "/a,b/c.qcow2");
    assert_string_equal(qopts_get(kv, n, "if"), "virtio");
    assert_null(kv[2].key); /* an implied value */
    back = qopts_format(kv, n);
    assert_string_equal(back, "file=/a,,b/c.qcow2,if=virtio,readonly");
    free(back);
    qopts_free(kv, n);
}

static void test_disk_option_found(void **state)
{
    char *argv[] = {"qemu-system-x86_64",
                    "-drive", "file=boot.qcow2,if=virtio",                                /* 2 */
                    "-drive", "if=none,id=drive0,file=/srv/data.qcow2",                   /* 4 */
                    "-device", "virtio-blk-pci,drive=drive0",
                    "-blockdev", "driver=file,filename=/srv/b.qcow2,node-name=f0",        /* 8 */
                    "-blockdev", "driver=qcow2,file=f0,node-name=n0",                     /* 10 */
                    "-hdb", "disks/c.qcow2",                                              /* 12 */
                    "--drive", "file.filename=/srv/d.qcow2,format=qcow2,if=ide,index=2",  /* 14 */
                    NULL};
    (void)state;

    assert_int_equal(qargv_disk_option(argv, "/vm", NULL, NULL, "/vm/boot.qcow2"), 2);
    assert_int_equal(qargv_disk_option(argv, "/vm", "drive0", NULL, NULL), 4);
    assert_int_equal(qargv_disk_option(argv, "/vm", NULL, NULL, "/srv/data.qcow2"), 4);
    /* a file node's image is opened by the format node over it */
    assert_int_equal(qargv_disk_option(argv, "/vm", NULL, NULL, "/srv/b.qcow2"), 10);
    assert_int_equal(qargv_disk_option(argv, "/vm", NULL, "n0", NULL), 10);
    assert_int_equal(qargv_disk_option(argv, "/vm", NULL, NULL, "/vm/disks/c.qcow2"), 12);
    assert_int_equal(qargv_disk_option(argv, "/vm", NULL, NULL, "/srv/d.qcow2"), 14);
    /* QEMU's generated node names are never looked up; an unknown image is not found */
    assert_int_equal(qargv_disk_option(argv, "/vm", NULL, "#block123", NULL), -1);
    assert_int_equal(qargv_disk_option(argv, "/vm", NULL, NULL, "/elsewhere/boot.qcow2"), -1);
    /* relative to another directory: not this image */
    assert_int_equal(qargv_disk_option(argv, "/other", NULL, NULL, "/vm/boot.qcow2"), -1);
}

static const char domain_xml[] =
    "<domain type='qemu'>\n"
    "  <name>vm</name>\n"
    "  <uuid>6d352bd2-7151-44ec-8050-407e94557c43</uuid>\n"
    "  <metadata>\n"
    "    <qsnap:qsnap xmlns:qsnap='https://qsnap.dev/xmlns/domain/1'>\n"
    "      <qsnap:process cwd='/vm' pid='42' start='7'/>\n"
    "      <qsnap:disk target='vda' drive='virtio0' qdev='/machine/peripheral-anon/device[0]/virtio-backend' "
    "arg='2'/>\n"
    "      <qsnap:disk target='hdb' drive='ide0-hd1' qdev='/machine/unattached/device[19]' arg='4'/>\n"
    "      <qsnap:disk target='sda' node-name='n0' qdev='sda' arg='8'/>\n"
    "    </qsnap:qsnap>\n"
    "  </metadata>\n"
    "  <memory unit='KiB'>65536</memory>\n"
    "  <vcpu placement='static'>1</vcpu>\n"
    "  <os>\n"
    "    <type arch='x86_64' machine='pc'>hvm</type>\n"
    "  </os>\n"
    "  <devices>\n"
    "    <disk type='file' device='disk'>\n"
    "      <driver name='qemu' type='qcow2'/>\n"
    "      <source file='/vm/boot.e1'/>\n"
    "      <target dev='vda' bus='virtio'/>\n"
    "    </disk>\n"
    "    <disk type='file' device='disk'>\n"
    "      <driver name='qemu' type='qcow2'/>\n"
    "      <source file='/vm/x,y.e1'/>\n"
    "      <target dev='hdb' bus='ide'/>\n"
    "    </disk>\n"
    "    <disk type='file' device='disk'>\n"
    "      <driver name='qemu' type='qcow2'/>\n"
    "      <source file='/srv/b.e1'/>\n"
    "      <target dev='sda' bus='scsi'/>\n"
    "    </disk>\n"
    "  </devices>\n"
    "</domain>\n";

static struct md_domain *domain_with(const char *const *argv)
{
    struct qs_error *err = NULL;
    struct md_domain *d = md_domain_parse(domain_xml, strlen(domain_xml), &err);

    assert_non_null(d);
    assert_int_equal(md_domain_set_argv(d, argv, &err), 0);
    return d;
}

static void test_point_every_style(void **state)
{
    const char *argv[] = {"qemu-system-x86_64",
                          "-drive", "file=boot.qcow2,if=virtio",                         /* 2: vda */
                          "-hdb", "x.qcow2",                                            /* 4: hdb */
                          "-device", "virtio-scsi-pci",
                          "-blockdev", "driver=qcow2,file=f0,node-name=n0,cache.direct=on", /* 8: sda */
                          "-blockdev", "driver=file,filename=/srv/b.qcow2,node-name=f0",  /* 10 */
                          "-device", "scsi-hd,drive=n0,id=sda",
                          NULL};
    struct md_domain *d = domain_with(argv);
    struct qs_error *err = NULL;
    char **out = NULL;
    const char *cwd;
    (void)state;

    cwd = md_domain_cwd(d);
    assert_string_equal(cwd, "/vm");
    {
        long long pid, start;
        md_domain_process(d, &pid, &start);
        assert_true(pid == 42 && start == 7);
    }
    assert_int_equal(qargv_point_disks((char *const *)argv, d, &out, &err), 0);
    assert_string_equal(out[2], "file=/vm/boot.e1,if=virtio,format=qcow2");
    /* -hdX takes no options: it becomes the -drive it stands for, which can name a comma */
    assert_string_equal(out[3], "-drive");
    assert_string_equal(out[4], "file=/vm/x,,y.e1,index=1,media=disk,format=qcow2");
    assert_string_equal(out[8], "driver=qcow2,file=f0,node-name=n0,cache.direct=on");
    assert_string_equal(out[10], "driver=file,filename=/srv/b.e1,node-name=f0");
    assert_string_equal(out[12], "scsi-hd,drive=n0,id=sda");
    assert_null(out[13]);
    qs_strv_free(out);
    md_domain_free(d);
}

static void test_point_refused_when_not_opened(void **state)
{
    /* the recorded option is not a disk option, and nothing opens the image: QEMU would open another one */
    const char *argv[] = {"qemu-system-x86_64", "-m", "64", "-blockdev",
                          "{\"driver\":\"qcow2\",\"node-name\":\"n0\",\"file\":\"f0\"}", "-hdb", "x.qcow2", NULL};
    struct md_domain *d = domain_with(argv);
    struct qs_error *err = NULL;
    char **out = NULL;
    (void)state;

    assert_int_equal(qargv_point_disks((char *const *)argv, d, &out, &err), -1);
    assert_null(out);
    assert_int_equal(err->code, QS_ERR_UNSUPPORTED);
    assert_non_null(strstr(err->message, "disk 'vda'"));
    assert_non_null(strstr(err->message, "attach --update"));
    qs_error_free(err);
    md_domain_free(d);
}

static void test_start_argv(void **state)
{
    char *argv[] = {"qemu-system-x86_64", "-daemonize", "-S", "-incoming", "tcp:0:4444",
                    "-qmp", "unix:qmp.sock,server=on,wait=off", NULL};
    char *chardev[] = {"qemu-system-x86_64", "-chardev", "socket,id=mon0,path=/run/vm.qmp,server=on,wait=off",
                       "-mon", "chardev=mon0,mode=control", NULL};
    char **out;
    (void)state;

    /* qsnap decides -daemonize, -S and -incoming; the relative monitor is the recorded socket */
    out = qargv_start(argv, "/vm", "/vm/qmp.sock", true, true);
    assert_int_equal(qs_strv_len(out), 6);
    assert_string_equal(out[1], "-qmp");
    assert_string_equal(out[2], "unix:qmp.sock,server=on,wait=off");
    assert_string_equal(out[3], "-S");
    assert_string_equal(out[4], "-incoming");
    assert_string_equal(out[5], "defer");
    qs_strv_free(out);
    /* in another directory it is not: a monitor of qsnap's own is added */
    out = qargv_start(argv, "/elsewhere", "/vm/qmp.sock", false, false);
    assert_int_equal(qs_strv_len(out), 5);
    assert_string_equal(out[3], "-qmp");
    assert_string_equal(out[4], "unix:/vm/qmp.sock,server=on,wait=off");
    qs_strv_free(out);
    /* a monitor on a -chardev socket counts */
    out = qargv_start(chardev, NULL, "/run/vm.qmp", false, false);
    assert_int_equal(qs_strv_len(out), 5);
    qs_strv_free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_options_round_trip),
        cmocka_unit_test(test_disk_option_found),
        cmocka_unit_test(test_point_every_style),
        cmocka_unit_test(test_point_refused_when_not_opened),
        cmocka_unit_test(test_start_argv),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
