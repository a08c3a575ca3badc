/* bench_service.c: qsnapd on a real QEMU - a revert through the API on a keep-alive connection against the raw
 * snapshot-load of the same VM in the same run, listing 10,000 snapshots through the API, requests/s for 50
 * concurrent readers, and qsnapd's RSS idle and under load. Prints a table and writes JSON; not a test. */
#include "bench_util.h"
#include "qemu_harness.h"

#include "qmp.h"
#include "qs_util.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define UUID "6b1f0d3e-2a57-4c8e-9d0b-3f5e7a9c1b24"

struct cfg {
    int n, mem_mb, list_n, readers, seconds;
    const char *out_json, *out_md;
};

static struct qh_vm *vm;
static pid_t qsnapd = -1;
static char *sock;

static void stop_qsnapd(void)
{
    if (qsnapd > 0) {
        kill(qsnapd, SIGTERM);
        waitpid(qsnapd, NULL, 0);
        qsnapd = -1;
    }
}

/* ---- HTTP over one keep-alive connection ---- */

static size_t sink(char *p, size_t size, size_t n, void *opaque)
{
    size_t *len = opaque;
    (void)p;
    *len += size * n;
    return size * n;
}

/* METHOD PATH BODY on C; returns the status; *bytes gets the body's size. Fails the benchmark on a transport
 * error or a status of 400 or more. */
static long req(CURL *c, const char *method, const char *path, const char *body, size_t *bytes)
{
    char *url = qs_asprintf("http://localhost%s", path);
    struct curl_slist *h = NULL;
    size_t len = 0;
    long st = 0;
    CURLcode rc;

    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, sock);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &len);
    if (body) {
        h = curl_slist_append(h, "Content-Type: application/json");
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    } else {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, NULL);
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
    curl_slist_free_all(h);
    free(url);
    if (rc != CURLE_OK || st >= 400) {
        fprintf(stderr, "bench_service: %s %s: %s (HTTP %ld)\n", method, path, curl_easy_strerror(rc), st);
        exit(1);
    }
    if (bytes)
        *bytes = len;
    return st;
}

/* qsnapd's resident set now (VmRSS) and at its peak (VmHWM), in KiB. */
static void rss(long *now, long *peak)
{
    char path[64], *text, *p;

    snprintf(path, sizeof(path), "/proc/%d/status", (int)qsnapd);
    *now = *peak = -1;
    if (!(text = bench_read_text(path)))
        return;
    if ((p = strstr(text, "VmRSS:")))
        *now = atol(p + 6);
    if ((p = strstr(text, "VmHWM:")))
        *peak = atol(p + 6);
    free(text);
}

/* ---- QEMU's own stamps of a job, read on the harness's monitor (QMP events go to every monitor) ---- */

static void events_drain(void)
{
    struct qs_error *err = NULL;
    struct qmp_event *ev;

    if (qmp_client_poll(qh_vm_qmp(vm), &err) < 0)
        bench_die("the harness's monitor", err);
    while ((ev = qmp_client_event_pop(qh_vm_qmp(vm))))
        qmp_event_free(ev);
}

/* The span of job JOB_ID from QEMU's event stamps, created to concluded, in ms; waits for its dismissal
 * (the "null" status) when WAIT_NULL, else returns at "concluded". Fails the benchmark on an aborted job. */
static double job_span_ms(const char *job_id, bool wait_null)
{
    struct qs_error *err = NULL;
    int64_t created = 0, concluded = 0;

    for (;;) {
        struct qmp_event *ev = NULL;
        const char *id, *status;
        bool end = false;
        if (qmp_client_event_wait(qh_vm_qmp(vm), "JOB_STATUS_CHANGE", "id", job_id, 60000, &ev, &err) < 0)
            bench_die("waiting for the job's events", err);
        id = qmp_value_get_string(qmp_event_data(ev), "id");
        status = qmp_value_get_string(qmp_event_data(ev), "status");
        if (qs_str_equal(id, job_id) && status) {
            if (!strcmp(status, "created"))
                created = qmp_event_timestamp_us(ev);
            else if (!strcmp(status, "aborting"))
                bench_die("the load job failed", NULL);
            else if (!strcmp(status, "concluded"))
                concluded = qmp_event_timestamp_us(ev), end = !wait_null;
            else if (!strcmp(status, "null"))
                end = true;
        }
        qmp_event_free(ev);
        if (end)
            break;
    }
    return (double)(concluded - created) / 1e3;
}

/* QEMU's own snapshot-load of "s1", as a minimal client runs it on an open monitor: the command, its events
 * until "concluded", job-dismiss and its reply. *total_ms gets the whole, *span_ms QEMU's job from its own
 * stamps (created to concluded), both for the same load. */
static void raw_load(double *total_ms, double *span_ms)
{
    struct qmp_args *a = qmp_args_new(), *d = qmp_args_new();
    struct qmp_reply *r = NULL;
    struct qs_error *err = NULL;
    int64_t t0, t1;

    qmp_args_set_str(a, "job-id", "bench-load");
    qmp_args_set_str(a, "tag", "s1");
    qmp_args_set_str(a, "vmstate", "vda");
    qmp_args_push_str(qmp_args_set_list(a, "devices"), "vda");
    qmp_args_set_str(d, "id", "bench-load");
    t0 = qs_now_ns();
    if (qmp_client_execute(qh_vm_qmp(vm), "snapshot-load", a, &r, &err) < 0)
        bench_die("snapshot-load", err);
    qmp_reply_free(r);
    *span_ms = job_span_ms("bench-load", false);
    if (qmp_client_execute(qh_vm_qmp(vm), "job-dismiss", d, &r, &err) < 0)
        bench_die("job-dismiss", err);
    t1 = qs_now_ns();
    qmp_reply_free(r);
    *total_ms = (double)(t1 - t0) / 1e6;
    qmp_args_free(a);
    qmp_args_free(d);
}

/* ---- the 10,000 snapshots: libvirt's on-disk files written directly, a chain (the worst case for a tree) ---- */

static void write_snapshots(const char *root, int n)
{
    char *dir = qs_asprintf("%s/snapshot/big", root);
    struct qs_error *err = NULL;

    mkdir(dir, 0700);
    for (int i = 0; i < n; i++) {
        char *path = qs_asprintf("%s/s%05d.xml", dir, i), *parent = i ? qs_asprintf("s%05d", i - 1) : NULL;
        FILE *f = fopen(path, "w");
        if (!f)
            bench_die("cannot write a snapshot file", err);
        fprintf(f,
                "<domainsnapshot>\n  <name>s%05d</name>\n  <description>snapshot %d</description>\n"
                "  <state>shutoff</state>\n%s%s%s  <creationTime>%d</creationTime>\n  <memory snapshot='no'/>\n"
                "  <disks>\n    <disk name='vda' snapshot='internal'/>\n  </disks>\n"
                "  <domain type='qemu'>\n    <name>big</name>\n    <uuid>" UUID "</uuid>\n"
                "    <memory unit='KiB'>262144</memory>\n    <vcpu>1</vcpu>\n"
                "    <os>\n      <type arch='x86_64'>hvm</type>\n    </os>\n"
                "    <devices>\n      <disk type='file' device='disk'>\n        <driver name='qemu' type='qcow2'/>\n"
                "        <source file='/var/lib/qsnap/big.qcow2'/>\n        <target dev='vda' bus='virtio'/>\n"
                "      </disk>\n    </devices>\n  </domain>\n  <active>%d</active>\n</domainsnapshot>\n",
                i, i, parent ? "  <parent>\n    <name>" : "", parent ? parent : "",
                parent ? "</name>\n  </parent>\n" : "", 1700000000 + i, i == n - 1);
        fclose(f);
        free(parent);
        free(path);
    }
    free(dir);
}

/* ---- readers ---- */

struct reader {
    atomic_bool *stop;
    long requests;
};

static void *reader_main(void *opaque)
{
    struct reader *r = opaque;
    CURL *c = curl_easy_init();

    while (!atomic_load(r->stop)) {
        req(c, "GET", "/api/vms/vm/snapshots", NULL, NULL);
        r->requests++;
    }
    curl_easy_cleanup(c);
    return NULL;
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_service [-n N] [--mem MB] [--list N] [--readers N] [--seconds S] "
                    "[--json FILE] [--md FILE]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"mem", required_argument, NULL, 'm'},  {"list", required_argument, NULL, 'l'},
        {"readers", required_argument, NULL, 'r'}, {"seconds", required_argument, NULL, 's'},
        {"json", required_argument, NULL, 'j'}, {"md", required_argument, NULL, 'M'},
        {NULL, 0, NULL, 0},
    };
    struct cfg cf = {.n = 41, .mem_mb = 256, .list_n = 10000, .readers = 50, .seconds = 5};
    struct qh_disk disk = {.id = "vda", .boot = true};
    struct qh_vm_config vc = {.disks = &disk, .n_disks = 1};
    struct bench_series api = {0}, raw = {0}, list_warm = {0}, api_job = {0}, api_over = {0}, connect = {0},
                        checks = {0}, synced = {0}, raw_job = {0}, raw_over = {0}, pair_over = {0};
    struct qs_error *err = NULL;
    struct reader *rd;
    pthread_t *th;
    atomic_bool stop = false;
    double list_cold = 0, rps;
    long idle_rss, idle_hwm, load_rss = 0, load_hwm, tmp_hwm, total = 0;
    size_t list_bytes = 0;
    char *root, *log, *body;
    int syncfd = -1;
    CURL *c;
    FILE *out;
    int opt;

    bench_prog = "bench_service";
    while ((opt = getopt_long(argc, argv, "n:", opts, NULL)) != -1) {
        switch (opt) {
        case 'n': cf.n = atoi(optarg); break;
        case 'm': cf.mem_mb = atoi(optarg); break;
        case 'l': cf.list_n = atoi(optarg); break;
        case 'r': cf.readers = atoi(optarg); break;
        case 's': cf.seconds = atoi(optarg); break;
        case 'j': cf.out_json = optarg; break;
        case 'M': cf.out_md = optarg; break;
        default: usage();
        }
    }
    if (cf.n < 1 || cf.n > BENCH_MAX_SAMPLES || cf.readers < 1 || cf.seconds < 1)
        usage();
    vc.mem_mb = cf.mem_mb;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (!(vm = qh_vm_start(&vc, &err)) || qh_vm_wait_counter_advancing(vm, 20000, NULL, &err) < 0)
        bench_die("QEMU", err);
    /* what a new QMP connection costs (connect, greeting, qmp_capabilities): what qsnapd's kept ones save */
    for (int i = 0; i < cf.n; i++) {
        struct qmp_options o = {.connect_timeout_ms = 30000, .timeout_ms = 60000};
        int64_t c0 = qs_now_ns();
        struct qmp_client *rc = qmp_client_connect(qh_vm_socket_path(vm), &o, &err);
        if (!rc)
            bench_die("QMP connect", err);
        bench_series_add(&connect, (double)(qs_now_ns() - c0) / 1e6);
        qmp_client_free(rc);
    }
    root = qs_asprintf("%s/root", qh_vm_dir(vm));
    sock = qs_asprintf("%s/api.sock", qh_vm_dir(vm));
    log = qs_asprintf("%s/qsnapd.log", qh_vm_dir(vm));
    if ((qsnapd = fork()) == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        char *listen = qs_asprintf("unix:%s", sock);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(fd, 2);
        execl(QSNAP_BENCH_QSNAPD, "qsnapd", "--root", root, "--listen", listen, "--max-connections", "256",
              (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 500 && access(sock, F_OK) != 0; i++)
        bench_sleep_ms(10);
    bench_sleep_ms(100);
    c = curl_easy_init();
    body = qs_asprintf("{\"name\":\"vm\",\"qmp_socket\":\"%s\"}", qh_vm_socket_path(vm));
    req(c, "POST", "/api/vms", body, NULL);
    free(body);
    req(c, "POST", "/api/vms/vm/snapshots", "{\"name\":\"s1\",\"async\":false}", NULL);
    rss(&idle_rss, &idle_hwm);
    {
        char *p = qs_asprintf("%s/bench-sync", root), block[4096] = {0};
        if ((syncfd = open(p, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0 ||
            write(syncfd, block, sizeof(block)) != (ssize_t)sizeof(block) || fsync(syncfd) < 0)
            bench_die("bench-sync", NULL);
        free(p);
    }

    /* revert: the API on a keep-alive connection, and QEMU's own snapshot-load job on the harness's open
     * monitor, interleaved; two warm-ups each */
    for (int i = -2; i < cf.n; i++) {
        int64_t t0, t1;
        double span;
        events_drain();
        t0 = qs_now_ns();
        req(c, "POST", "/api/vms/vm/snapshots/s1/restore", "{\"async\":false}", NULL);
        t1 = qs_now_ns();
        span = job_span_ms("qsnap", true);
        if (i >= 0) {
            bench_series_add(&api, (double)(t1 - t0) / 1e6);
            bench_series_add(&api_job, span);
            bench_series_add(&api_over, (double)(t1 - t0) / 1e6 - span);
        }
        /* on the harness's own monitor: always open, never in qsnapd's way (QEMU serves one client per
         * monitor, and qsnapd keeps its connection to the other one between reverts) */
        {
            double whole, rspan;
            raw_load(&whole, &rspan);
            events_drain();
            if (i >= 0) {
                bench_series_add(&raw, whole);
                bench_series_add(&raw_job, rspan);
                bench_series_add(&raw_over, whole - rspan);
                bench_series_add(&pair_over, ((double)(t1 - t0) / 1e6 - span) - (whole - rspan));
            }
        }
        /* what a revert asks QEMU before its load (run state, and the disks' nodes and tags to check the
         * snapshot is in each), in the one round trip qsnap makes of it */
        {
            struct qmp_reply *r1 = NULL, *r2 = NULL;
            struct qs_error *e1 = NULL, *e2 = NULL;
            t0 = qs_now_ns();
            if (qmp_client_execute_pair(qh_vm_qmp(vm), "query-status", NULL, &r1, &e1, "query-block", NULL, &r2,
                                        &e2) < 0 || e1 || e2)
                bench_die("query-status + query-block", e1 ? e1 : e2);
            t1 = qs_now_ns();
            qmp_reply_free(r1);
            qmp_reply_free(r2);
            if (i >= 0)
                bench_series_add(&checks, (double)(t1 - t0) / 1e6);
        }
        /* the one synced write of a revert (its "loaded" record: a frame written in place into the intent
         * file, then fdatasync), raw, on the same file system: the disk's floor under the API */
        {
            char frame[256];
            memset(frame, i & 0xff, sizeof(frame));
            t0 = qs_now_ns();
            if (pwrite(syncfd, frame, sizeof(frame), 0) != (ssize_t)sizeof(frame) || fdatasync(syncfd) < 0)
                bench_die("synced write", NULL);
            t1 = qs_now_ns();
            if (i >= 0)
                bench_series_add(&synced, (double)(t1 - t0) / 1e6);
        }
    }

    /* 10,000 snapshots of a defined domain: the first listing loads them (and builds the index), the next
     * ones come from the tree qsnapd keeps */
    body = qs_asprintf("{\"xml\":\"<domain type='qemu'><name>big</name><uuid>" UUID "</uuid><memory unit='KiB'>"
                       "262144</memory><vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os><devices><disk "
                       "type='file' device='disk'><driver name='qemu' type='qcow2'/><source file="
                       "'/var/lib/qsnap/big.qcow2'/><target dev='vda' bus='virtio'/></disk></devices></domain>\"}");
    req(c, "POST", "/api/vms", body, NULL);
    free(body);
    write_snapshots(root, cf.list_n);
    {
        int64_t t0 = qs_now_ns();
        req(c, "GET", "/api/vms/big/snapshots", NULL, &list_bytes);
        list_cold = (double)(qs_now_ns() - t0) / 1e6;
        for (int i = 0; i < cf.n; i++) {
            t0 = qs_now_ns();
            req(c, "GET", "/api/vms/big/snapshots", NULL, &list_bytes);
            bench_series_add(&list_warm, (double)(qs_now_ns() - t0) / 1e6);
        }
    }

    /* 50 readers for a while */
    rd = qs_xcalloc((size_t)cf.readers, sizeof(*rd));
    th = qs_xcalloc((size_t)cf.readers, sizeof(*th));
    for (int i = 0; i < cf.readers; i++) {
        rd[i].stop = &stop;
        pthread_create(&th[i], NULL, reader_main, &rd[i]);
    }
    {
        int64_t t0 = qs_now_ns();
        for (int s = 0; s < cf.seconds * 10; s++) {
            long now;
            bench_sleep_ms(100);
            rss(&now, &tmp_hwm);
            if (now > load_rss)
                load_rss = now;
        }
        atomic_store(&stop, true);
        for (int i = 0; i < cf.readers; i++) {
            pthread_join(th[i], NULL);
            total += rd[i].requests;
        }
        rps = (double)total / ((double)(qs_now_ns() - t0) / 1e9);
    }
    rss(&tmp_hwm, &load_hwm);

    out = stdout;
    fprintf(out, "| measure | value |\n|---|---|\n");
    fprintf(out, "| revert through the API (keep-alive, waited), median of %d | %.2f ms (min %.2f) |\n", cf.n,
            bench_series_median(&api), bench_series_min(&api));
    fprintf(out, "| raw snapshot-load job, same VM, interleaved, median | %.2f ms (min %.2f) |\n",
            bench_series_median(&raw), bench_series_min(&raw));
    fprintf(out, "| API over raw (target <= +3 ms) | %+.2f ms (%.2fx) |\n",
            bench_series_median(&api) - bench_series_median(&raw), bench_series_median(&api) / bench_series_median(&raw));
    fprintf(out, "| raw query-status + query-block (the checks before a load, one round trip), interleaved, median | "
                 "%.2f ms |\n",
            bench_series_median(&checks));
    fprintf(out, "| API over raw load + raw checks | %+.2f ms |\n",
            bench_series_median(&api) - bench_series_median(&raw) - bench_series_median(&checks));
    fprintf(out, "| one synced in-place write (a 256-byte frame and fdatasync, qsnapd's state directory), interleaved, "
                 "median | %.2f ms (min %.2f) |\n",
            bench_series_median(&synced), bench_series_min(&synced));
    fprintf(out, "| API over raw load + raw checks + one synced write | %+.2f ms |\n",
            bench_series_median(&api) - bench_series_median(&raw) - bench_series_median(&checks) -
                bench_series_median(&synced));
    fprintf(out, "| QEMU's load job inside the API's revert (median, from QEMU's event stamps) | %.2f ms |\n",
            bench_series_median(&api_job));
    fprintf(out, "| qsnapd's own time per revert: request minus QEMU's job, median | %.2f ms (min %.2f) |\n",
            bench_series_median(&api_over), bench_series_min(&api_over));
    fprintf(out, "| QEMU's load job inside the raw load (median, from QEMU's event stamps) | %.2f ms |\n",
            bench_series_median(&raw_job));
    fprintf(out, "| the raw load's own time: whole minus QEMU's job, median | %.2f ms (min %.2f) |\n",
            bench_series_median(&raw_over), bench_series_min(&raw_over));
    fprintf(out, "| API over raw outside QEMU's job: (API - its job) - (raw - its job), each revert with the raw load "
                 "after it, median (target <= +3 ms) | %+.2f ms (min %+.2f, max %+.2f) |\n",
            bench_series_median(&pair_over), bench_series_min(&pair_over), bench_series_max(&pair_over));
    fprintf(out, "| a QMP connection (connect, greeting, qmp_capabilities), median | %.2f ms |\n",
            bench_series_median(&connect));
    fprintf(out, "| list %d snapshots through the API, first (loads the files) | %.1f ms |\n", cf.list_n, list_cold);
    fprintf(out, "| list %d snapshots through the API, cached tree, median (target 10 ms) | %.2f ms (%zu bytes) |\n",
            cf.list_n, bench_series_median(&list_warm), list_bytes);
    fprintf(out, "| %d concurrent readers (keep-alive), %d s | %.0f requests/s (%ld requests) |\n", cf.readers,
            cf.seconds, rps, total);
    fprintf(out, "| qsnapd RSS idle (after attach and one snapshot) | %.1f MiB |\n", idle_rss / 1024.0);
    fprintf(out, "| qsnapd RSS under load (max sampled) / peak | %.1f / %.1f MiB |\n", load_rss / 1024.0,
            load_hwm / 1024.0);
    if (cf.out_json) {
        FILE *j = fopen(cf.out_json, "w");
        if (j) {
            fprintf(j,
                    "{\"revert_api_ms\":%.3f,\"revert_raw_ms\":%.3f,\"revert_delta_ms\":%.3f,"
                    "\"revert_overhead_ms\":%.3f,\"revert_raw_overhead_ms\":%.3f,\"revert_outside_delta_ms\":%.3f,"
                    "\"revert_api_job_ms\":%.3f,\"revert_raw_job_ms\":%.3f,\"checks_raw_ms\":%.3f,"
                    "\"synced_write_ms\":%.3f,\"list_n\":%d,"
                    "\"list_cold_ms\":%.3f,\"list_warm_ms\":%.3f,\"list_bytes\":%zu,\"readers\":%d,\"rps\":%.1f,"
                    "\"rss_idle_kib\":%ld,\"rss_load_kib\":%ld,\"rss_peak_kib\":%ld,\"samples\":%d,\"mem_mb\":%d}\n",
                    bench_series_median(&api), bench_series_median(&raw),
                    bench_series_median(&api) - bench_series_median(&raw), bench_series_median(&api_over),
                    bench_series_median(&raw_over), bench_series_median(&pair_over), bench_series_median(&api_job),
                    bench_series_median(&raw_job), bench_series_median(&checks), bench_series_median(&synced),
                    cf.list_n, list_cold,
                    bench_series_median(&list_warm), list_bytes, cf.readers, rps, idle_rss, load_rss, load_hwm, cf.n,
                    cf.mem_mb);
            fclose(j);
        }
    }
    close(syncfd);
    curl_easy_cleanup(c);
    stop_qsnapd();
    qh_vm_free(vm);
    free(rd);
    free(th);
    free(root);
    free(sock);
    free(log);
    return 0;
}
