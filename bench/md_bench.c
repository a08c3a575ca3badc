/* md_bench.c: times snapshot metadata loading (cold: no index, warm: index) and listing for 10, 1,000 and
 * 10,000 snapshots of one domain, each file with a realistic ~3 KB <domain>. Prints a table; not a test. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "md.h"
#include "qs_util.h"

#define UUID "c7a5fdbd-cdaf-9455-926a-d65c16db1809"

static const char domain_body[] =
    "  <domain type='kvm'>\n"
    "    <name>bench</name>\n"
    "    <uuid>" UUID "</uuid>\n"
    "    <metadata>\n"
    "      <libosinfo:libosinfo xmlns:libosinfo=\"http://libosinfo.org/xmlns/libvirt/domain/1.0\">\n"
    "        <libosinfo:os id=\"http://debian.org/debian/12\"/>\n"
    "      </libosinfo:libosinfo>\n"
    "    </metadata>\n"
    "    <memory unit='KiB'>1048576</memory>\n"
    "    <currentMemory unit='KiB'>1048576</currentMemory>\n"
    "    <vcpu placement='static'>2</vcpu>\n"
    "    <os>\n"
    "      <type arch='x86_64' machine='pc-q35-7.2'>hvm</type>\n"
    "      <boot dev='hd'/>\n"
    "    </os>\n"
    "    <features>\n"
    "      <acpi/>\n"
    "      <apic/>\n"
    "    </features>\n"
    "    <cpu mode='host-passthrough' check='none' migratable='on'/>\n"
    "    <clock offset='utc'>\n"
    "      <timer name='rtc' tickpolicy='catchup'/>\n"
    "      <timer name='pit' tickpolicy='delay'/>\n"
    "      <timer name='hpet' present='no'/>\n"
    "    </clock>\n"
    "    <on_poweroff>destroy</on_poweroff>\n"
    "    <on_reboot>restart</on_reboot>\n"
    "    <on_crash>destroy</on_crash>\n"
    "    <devices>\n"
    "      <emulator>/usr/bin/qemu-system-x86_64</emulator>\n"
    "      <disk type='file' device='disk'>\n"
    "        <driver name='qemu' type='qcow2' discard='unmap'/>\n"
    "        <source file='/var/lib/libvirt/images/bench.qcow2'/>\n"
    "        <target dev='vda' bus='virtio'/>\n"
    "        <address type='pci' domain='0x0000' bus='0x04' slot='0x00' function='0x0'/>\n"
    "      </disk>\n"
    "      <disk type='file' device='cdrom'>\n"
    "        <driver name='qemu' type='raw'/>\n"
    "        <target dev='sda' bus='sata'/>\n"
    "        <readonly/>\n"
    "        <address type='drive' controller='0' bus='0' target='0' unit='0'/>\n"
    "      </disk>\n"
    "      <controller type='usb' index='0' model='qemu-xhci' ports='15'>\n"
    "        <address type='pci' domain='0x0000' bus='0x02' slot='0x00' function='0x0'/>\n"
    "      </controller>\n"
    "      <controller type='sata' index='0'>\n"
    "        <address type='pci' domain='0x0000' bus='0x00' slot='0x1f' function='0x2'/>\n"
    "      </controller>\n"
    "      <controller type='pci' index='0' model='pcie-root'/>\n"
    "      <interface type='network'>\n"
    "        <mac address='52:54:00:6b:3c:58'/>\n"
    "        <source network='default'/>\n"
    "        <model type='virtio'/>\n"
    "        <address type='pci' domain='0x0000' bus='0x01' slot='0x00' function='0x0'/>\n"
    "      </interface>\n"
    "      <serial type='pty'>\n"
    "        <target type='isa-serial' port='0'>\n"
    "          <model name='isa-serial'/>\n"
    "        </target>\n"
    "      </serial>\n"
    "      <console type='pty'>\n"
    "        <target type='serial' port='0'/>\n"
    "      </console>\n"
    "      <input type='mouse' bus='ps2'/>\n"
    "      <input type='keyboard' bus='ps2'/>\n"
    "      <graphics type='vnc' port='-1' autoport='yes'>\n"
    "        <listen type='address'/>\n"
    "      </graphics>\n"
    "      <video>\n"
    "        <model type='virtio' heads='1' primary='yes'/>\n"
    "        <address type='pci' domain='0x0000' bus='0x00' slot='0x01' function='0x0'/>\n"
    "      </video>\n"
    "      <memballoon model='virtio'>\n"
    "        <address type='pci' domain='0x0000' bus='0x05' slot='0x00' function='0x0'/>\n"
    "      </memballoon>\n"
    "    </devices>\n"
    "  </domain>\n";

static double ms_since(int64_t t0)
{
    return (double)(qs_now_ns() - t0) / 1e6;
}

/* Snapshot I: a tree where every 7th snapshot branches off an older one; the last one is current. */
static void generate(const char *dir, size_t n)
{
    struct timespec old[2];
    clock_gettime(CLOCK_REALTIME, &old[0]);
    old[0].tv_sec -= 3600; /* files older than the index's "racy" window, as real snapshots are */
    old[1] = old[0];
    for (size_t i = 0; i < n; i++) {
        char name[64], path[1024], parent[96] = "";
        FILE *f;
        snprintf(name, sizeof(name), "snap-%06zu", i);
        if (i > 0)
            snprintf(parent, sizeof(parent), "  <parent>\n    <name>snap-%06zu</name>\n  </parent>\n",
                     (i % 7 == 0) ? i / 2 : i - 1);
        snprintf(path, sizeof(path), "%s/%s.xml", dir, name);
        f = fopen(path, "w");
        if (!f) {
            perror(path);
            exit(1);
        }
        fprintf(f,
                "<domainsnapshot>\n  <name>%s</name>\n  <description>nightly %zu</description>\n"
                "  <state>%s</state>\n%s  <creationTime>%zu</creationTime>\n  <memory snapshot='%s'/>\n"
                "  <disks>\n    <disk name='vda' snapshot='internal'/>\n    <disk name='sda' snapshot='no'/>\n"
                "  </disks>\n%s  <active>%d</active>\n</domainsnapshot>\n",
                name, i, i % 3 ? "running" : "shutoff", parent, 1700000000 + i, i % 3 ? "internal" : "no",
                domain_body, i == n - 1);
        fclose(f);
        utimensat(AT_FDCWD, path, old, 0);
    }
}

int main(int argc, char **argv)
{
    static const size_t sizes[] = { 10, 1000, 10000 };
    const char *base = getenv("TMPDIR");
    char tmpl[512];
    int rounds = argc > 1 ? atoi(argv[1]) : 5;

    snprintf(tmpl, sizeof(tmpl), "%s/qsnap-bench-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpl)) {
        perror("mkdtemp");
        return 1;
    }
    printf("snapshots | file KB | cold load ms | warm load ms | list ms (by name) | list ms (topological)\n");
    printf("----------+---------+--------------+--------------+-------------------+----------------------\n");
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        size_t n = sizes[k];
        char root[600], dir[700], idx[800], file[800];
        struct qs_error *err = NULL;
        struct md_store *st;
        double cold = 1e9, warm = 1e9, list = 1e9, topo = 1e9;
        struct stat sb;

        snprintf(root, sizeof(root), "%s/r%zu", tmpl, n);
        if (!(st = md_store_open(root, &err))) {
            fprintf(stderr, "%s\n", err->message);
            return 1;
        }
        snprintf(dir, sizeof(dir), "%s/snapshot/bench", root);
        mkdir(dir, 0700);
        generate(dir, n);
        snprintf(idx, sizeof(idx), "%s/.qsnap-index", dir);
        snprintf(file, sizeof(file), "%s/snap-000000.xml", dir);
        stat(file, &sb);
        for (int r = 0; r < rounds; r++) {
            struct md_tree *t;
            const struct md_entry **v;
            size_t cnt;
            int64_t t0;
            double ms;

            unlink(idx);
            t0 = qs_now_ns();
            t = md_tree_load(st, "bench", NULL, &err);
            ms = ms_since(t0);
            if (!t || md_tree_count(t) != n) {
                fprintf(stderr, "cold load failed: %s\n", err ? err->message : "count");
                return 1;
            }
            cold = ms < cold ? ms : cold;
            md_tree_free(t);

            t0 = qs_now_ns();
            t = md_tree_load(st, "bench", NULL, &err);
            ms = ms_since(t0);
            if (!t) {
                fprintf(stderr, "warm load failed: %s\n", err->message);
                return 1;
            }
            warm = ms < warm ? ms : warm;

            t0 = qs_now_ns();
            if (md_tree_list(t, NULL, 0, &v, &cnt, &err) < 0 || cnt != n)
                return 1;
            ms = ms_since(t0);
            list = ms < list ? ms : list;
            free(v);
            t0 = qs_now_ns();
            if (md_tree_list(t, NULL, MD_LIST_TOPOLOGICAL, &v, &cnt, &err) < 0 || cnt != n)
                return 1;
            ms = ms_since(t0);
            topo = ms < topo ? ms : topo;
            free(v);
            md_tree_free(t);
        }
        printf("%9zu | %7.1f | %12.1f | %12.2f | %17.3f | %21.3f\n", n, (double)sb.st_size / 1024, cold, warm, list,
               topo);
        md_store_free(st);
    }
    printf("(best of %d rounds; files in the page cache; cold = no index: every file parsed, index written)\n",
           rounds);
    {
        char *rm[] = { "rm", "-rf", tmpl, NULL };
        pid_t pid = fork();
        if (pid == 0) {
            execvp(rm[0], rm);
            _exit(127);
        }
        waitpid(pid, NULL, 0);
    }
    return 0;
}
