/* test_qargv_clone.c: a clone's QEMU command line - the source's monitors gone, its name, uuid, sockets and
 * MAC addresses its own, and what two QEMUs cannot share refused by name (label unit). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "qargv.h"
#include "qs_util.h"

#include <stdlib.h>
#include <string.h>

#define UUID "0c1d2e3f-4a5b-4c6d-8e7f-001122334455"

static const struct qargv_clone_opts opts = {"web2", UUID, "/var/lib/qsnap/run", "/vm"};

/* The value after option OPT (the Nth of them, from 0), or NULL. */
static const char *value_of(char *const *v, const char *opt, int nth)
{
    for (size_t i = 0; v[i] && v[i + 1]; i++)
        if (strcmp(v[i], opt) == 0 && nth-- == 0)
            return v[i + 1];
    return NULL;
}

static bool mac_ok(const char *m)
{
    return m && strlen(m) == 17 && strncmp(m, "52:54:00:", 9) == 0;
}

static void test_clone_rewrite(void **state)
{
    char *argv[] = {"qemu-system-x86_64",
                    "-name", "web,debug-threads=on",
                    "-uuid", "11111111-2222-3333-4444-555555555555",
                    "-qmp", "unix:/run/web.qmp,server=on,wait=off",
                    "-chardev", "socket,id=mon0,path=/run/web.mon,server=on,wait=off",
                    "-mon", "chardev=mon0,mode=control",
                    "-chardev", "socket,id=qga0,path=/run/qga.sock,server=on,wait=off",
                    "-device", "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0",
                    "-chardev", "socket,id=vhost0,path=/run/vhost.sock",
                    "-netdev", "user,id=n0",
                    "-device", "virtio-net-pci,netdev=n0,id=net0,mac=52:54:00:aa:bb:cc",
                    "-netdev", "bridge,id=n1,br=br0",
                    "-device", "e1000,netdev=n1",
                    "-nic", "user,model=e1000",
                    "-net", "nic,model=rtl8139",
                    "-net", "user",
                    "-vnc", ":3,password=off",
                    "-serial", "unix:/run/ser.sock,server=on,wait=off",
                    "-monitor", "stdio",
                    "-pidfile", "/run/web.pid",
                    "-loadvm", "s1",
                    "-drive", "file=/img/web2-vda.qcow2,if=virtio",
                    "-object", "memory-backend-file,id=m0,size=1G,mem-path=/dev/hugepages,share=on",
                    "-S", "-nodefaults",
                    NULL};
    struct qs_error *err = NULL;
    char **v = NULL, *all;
    const char *m1, *m2, *m3, *m4;
    size_t len = 0;
    (void)state;

    assert_int_equal(qargv_clone(argv, &opts, &v, &err), 0);
    for (size_t i = 0; v[i]; i++)
        len += strlen(v[i]) + 1;
    all = qs_xcalloc(len + 1, 1);
    for (size_t i = 0; v[i]; i++)
        strcat(strcat(all, v[i]), " ");
    /* the source's monitors, pid file and start-up snapshot are gone */
    assert_null(value_of(v, "-qmp", 0));
    assert_null(value_of(v, "-mon", 0));
    assert_null(value_of(v, "-monitor", 0));
    assert_null(value_of(v, "-pidfile", 0));
    assert_null(value_of(v, "-loadvm", 0));
    assert_null(strstr(all, "mon0"));
    /* its identity */
    assert_string_equal(value_of(v, "-name", 0), "web2,debug-threads=on");
    assert_string_equal(value_of(v, "-uuid", 0), UUID);
    /* listening sockets move to the run directory under the clone's uuid; a client stays */
    assert_string_equal(value_of(v, "-chardev", 0),
                        "socket,id=qga0,path=/var/lib/qsnap/run/0c1d2e3f-qga0.sock,server=on,wait=off");
    assert_string_equal(value_of(v, "-chardev", 1), "socket,id=vhost0,path=/run/vhost.sock");
    assert_string_equal(value_of(v, "-serial", 0), "unix:/var/lib/qsnap/run/0c1d2e3f-serial.sock,server=on,wait=off");
    assert_string_equal(value_of(v, "-vnc", 0), "unix:/var/lib/qsnap/run/0c1d2e3f-vnc.sock,password=off");
    /* every NIC a new MAC of QEMU's range, all different */
    m1 = strstr(value_of(v, "-device", 1), "mac=");
    m2 = strstr(value_of(v, "-device", 2), "mac=");
    m3 = strstr(value_of(v, "-nic", 0), "mac=");
    m4 = strstr(value_of(v, "-net", 0), "macaddr=");
    assert_non_null(m1), assert_non_null(m2), assert_non_null(m3), assert_non_null(m4);
    m1 += 4, m2 += 4, m3 += 4, m4 += 8;
    assert_true(mac_ok(m1) && mac_ok(m2) && mac_ok(m3) && mac_ok(m4));
    assert_int_not_equal(strcmp(m1, "52:54:00:aa:bb:cc"), 0);
    assert_int_not_equal(strcmp(m1, m2), 0);
    assert_int_not_equal(strcmp(m3, m4), 0);
    assert_string_equal(value_of(v, "-net", 1), "user"); /* a backend, not a NIC */
    assert_string_equal(value_of(v, "-device", 0), "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0");
    /* the rest as it was, in order */
    assert_string_equal(value_of(v, "-drive", 0), "file=/img/web2-vda.qcow2,if=virtio");
    assert_non_null(strstr(all, " -S -nodefaults "));
    assert_non_null(strstr(all, "mem-path=/dev/hugepages,share=on")); /* a directory: a file per QEMU */
    free(all);
    qs_strv_free(v);
}

static void test_clone_uuid_added(void **state)
{
    char *argv[] = {"qemu-system-x86_64", "-m", "128", NULL};
    struct qs_error *err = NULL;
    char **v = NULL;
    (void)state;

    assert_int_equal(qargv_clone(argv, &opts, &v, &err), 0);
    assert_string_equal(value_of(v, "-m", 0), "128");
    assert_string_equal(value_of(v, "-uuid", 0), UUID);
    assert_string_equal(value_of(v, "-name", 0), "guest=web2");
    qs_strv_free(v);
}

static void test_clone_refused(void **state)
{
    static const char *const cases[][3] = {
        {"-netdev", "user,id=n0,hostfwd=tcp::2222-:22", "hostfwd"},
        {"-nic", "user,hostfwd=tcp::2222-:22", "hostfwd"},
        {"-netdev", "tap,id=t0,ifname=tap0,script=no", "tap device"},
        {"-netdev", "tap,id=t0,fd=3", "file descriptor"},
        {"-netdev", "socket,id=s0,listen=:1234", "TCP port"},
        {"-chardev", "socket,id=c0,host=0.0.0.0,port=4444,server=on,wait=off", "TCP port"},
        {"-serial", "tcp::4555,server,nowait", "TCP port"},
        {"-spice", "port=5930,disable-ticketing=on", "TCP port"},
        {"-vnc", ":1,websocket=on", "websocket"},
        {"-readconfig", "/etc/vm.cfg", "cannot rewrite"},
        {"-add-fd", "fd=3,set=2", "file descriptor"},
    };
    (void)state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *argv[] = {"qemu-system-x86_64", (char *)cases[i][0], (char *)cases[i][1], NULL};
        struct qs_error *err = NULL;
        char **v = NULL, *want = qs_asprintf("option '%s %s'", cases[i][0], cases[i][1]);
        assert_int_equal(qargv_clone(argv, &opts, &v, &err), -1);
        assert_null(v);
        assert_int_equal(err->code, QS_ERR_UNSUPPORTED);
        if (!strstr(err->message, want) || !strstr(err->message, cases[i][2]))
            fail_msg("case %zu: %s", i, err->message);
        qs_error_free(err);
        free(want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clone_rewrite),
        cmocka_unit_test(test_clone_uuid_added),
        cmocka_unit_test(test_clone_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
