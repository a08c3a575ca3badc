/* web_vm.c: qsnap-test-vm, the harness's VM for a test written in another language (tests/web's browser test):
 * starts QEMU with the counter guest (boot disk vda, blank vdb), then answers one command a line on stdin with
 * one line on stdout, the guest seen as the C tests see it. EOF or "quit" ends QEMU and removes its directory.
 *
 *   (at start)                  ready QMP-SOCKET DIR        | missing WHAT | error MESSAGE
 *   advancing                   ok COUNTER  (the guest booted and counts)
 *   counter                     ok COUNTER  (the RAM counter; exact while the guest is stopped)
 *   stop | cont                 ok          (QMP, on the harness's own monitor)
 *   status                      ok STATUS   (query-status: running, paused, ...)
 *   write DISK BYTE OFF LEN     ok          (through the guest's device)
 *   check DISK BYTE OFF LEN     ok 1 | ok 0 (what the guest's device reads)
 * A failed command answers "error MESSAGE". */
#include "qemu_harness.h"
#include "qmp.h"
#include "qs_util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void reply_error(struct qs_error **err)
{
    printf("error %s\n", *err && (*err)->message ? (*err)->message : "unknown error");
    qs_error_clear(err);
}

static int command(struct qh_vm *vm, char *line)
{
    struct qs_error *err = NULL;
    char verb[16], disk[32];
    unsigned pattern;
    uint64_t value, off, len;

    if (sscanf(line, "%15s", verb) != 1)
        return 0;
    if (strcmp(verb, "quit") == 0)
        return 1;
    if (strcmp(verb, "advancing") == 0) {
        if (qh_vm_wait_counter_advancing(vm, 0, &value, &err) < 0)
            reply_error(&err);
        else
            printf("ok %" PRIu64 "\n", value);
    } else if (strcmp(verb, "counter") == 0) {
        if (qh_vm_read_counter(vm, &value, &err) < 0)
            reply_error(&err);
        else
            printf("ok %" PRIu64 "\n", value);
    } else if (strcmp(verb, "stop") == 0 || strcmp(verb, "cont") == 0) {
        if (qmp_client_execute(qh_vm_qmp(vm), verb, NULL, NULL, &err) < 0)
            reply_error(&err);
        else
            printf("ok\n");
    } else if (strcmp(verb, "status") == 0) {
        struct qmp_reply *r = NULL;
        if (qmp_client_execute(qh_vm_qmp(vm), "query-status", NULL, &r, &err) < 0)
            reply_error(&err);
        else
            printf("ok %s\n", qmp_value_get_string(qmp_reply_value(r), "status"));
        qmp_reply_free(r);
    } else if ((strcmp(verb, "write") == 0 || strcmp(verb, "check") == 0) &&
               sscanf(line, "%*s %31s %x %" SCNu64 " %" SCNu64, disk, &pattern, &off, &len) == 4 && pattern <= 0xff) {
        if (verb[0] == 'w') {
            if (qh_vm_guest_write(vm, disk, (uint8_t)pattern, off, len, &err) < 0)
                reply_error(&err);
            else
                printf("ok\n");
        } else {
            struct qh_extent ext = {off, len, (uint8_t)pattern};
            int m = qh_vm_guest_check(vm, disk, &ext, 1, NULL, &err);
            if (m < 0)
                reply_error(&err);
            else
                printf("ok %d\n", m);
        }
    } else {
        printf("error unknown command '%s'\n", verb);
    }
    return 0;
}

int main(void)
{
    static const struct qh_disk disks[] = {
        {.id = "vda", .format = "qcow2", .boot = true},
        {.id = "vdb", .format = "qcow2", .size = 16u << 20},
    };
    struct qh_vm_config cfg = {.disks = disks, .n_disks = 2};
    struct qs_error *err = NULL;
    struct qh_vm *vm;
    char line[512];

    setvbuf(stdout, NULL, _IOLBF, 0);
    if (!qh_qemu_available() || !qh_guest_path()) {
        printf("missing %s\n", qh_guest_path() ? "qemu-system-x86_64, qemu-img or qemu-io (qemu-system-x86, "
                                                 "qemu-utils)"
                                               : "$QSNAP_GUEST (the counter guest; ctest sets it)");
        return 0;
    }
    if (!(vm = qh_vm_start(&cfg, &err))) {
        reply_error(&err);
        return 1;
    }
    printf("ready %s %s\n", qh_vm_socket_path(vm), qh_vm_dir(vm));
    while (fgets(line, sizeof(line), stdin))
        if (command(vm, line))
            break;
    qh_vm_free(vm);
    printf("ok\n");
    return 0;
}
