/* memstate.c: VM state to/from a file through fd: migration, the save file's header, virsh save/restore. */
#include "memstate.h"
#include "disks.h"
#include "intent.h"
#include "qs_buf.h"
#include "qs_proc.h"
#include "qs_util.h"
#include "vm.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SAVE_FDNAME "qsnap-memstate-out"
#define LOAD_FDNAME "qsnap-memstate-in"
#define DEFAULT_POLL_MS 100
#define CANCEL_WAIT_MS 10000
/* QEMU's clean-up after a migration ended (mig_cleanup_wait) */
#define CLEANUP_WAIT_MS 10000
/* for a save to a file the 128 MiB/s default only slows things down */
#define SAVE_BANDWIDTH ((int64_t)1 << 40)
#define HEADER_FIXED_V1 32u
#define HEADER_FIXED 40u
#define HEADER_ALIGN 4096u
#define QEMU_STREAM_MAGIC "QEVM"
#define CAPTURE_POLL_MS 1
#define MACHINE_HELP_TIMEOUT_MS 30000
#define CAPTURE_QUERY_TIMEOUT_MS 300000
#define CAPTURE_DEFAULT_TIMEOUT_MS 600000
/* a migration QEMU still runs for a dead process: recovery lets it end */
#define SETTLE_MS 600000

/* ------------------------------------------------------------------------------------------------
 * Migration settings, set for one operation and set back after it
 */

/* struct mig_saved (what mig_setup changed, to set back) is declared in memstate.h with the save context */

#define CAP_EVENTS "events"
#define CAP_BACKGROUND "background-snapshot"
#define CAP_MAPPED_RAM "mapped-ram"
#define CAP_MULTIFD "multifd"
/* parallel channels for a mapped-ram save or load: the file system takes them in parallel, QEMU's threads
 * compress nothing - a few are enough for disk speed */
#define MULTIFD_CHANNELS 4

/* Migration capability NAME: *present (may be NULL) whether QEMU has it, *on its state. */
static int cap_get(struct qmp_client *c, const char *name, bool *present, bool *on, struct qs_error **err)
{
    struct qmp_reply *r = NULL;
    const struct qmp_value *v;
    int ret = -1;

    if (qmp_client_execute(c, "query-migrate-capabilities", NULL, &r, err) < 0)
        goto out;
    v = qmp_reply_value(r);
    *on = false;
    if (present)
        *present = false;
    for (size_t i = 0; i < qmp_value_array_len(v); i++) {
        const struct qmp_value *cap = qmp_value_array_at(v, i);
        if (qs_str_equal(qmp_value_get_string(cap, "capability"), name)) {
            qmp_value_bool(qmp_value_get(cap, "state"), on);
            if (present)
                *present = true;
        }
    }
    ret = 0;
out:
    qmp_reply_free(r);
    return ret;
}

static int cap_set(struct qmp_client *c, const char *name, bool on, struct qs_error **err)
{
    struct qmp_args *a = qmp_args_new(), *cap;
    int ret;

    cap = qmp_args_push_obj(qmp_args_set_list(a, "capabilities"));
    qmp_args_set_str(cap, "capability", name);
    qmp_args_set_bool(cap, "state", on);
    ret = qmp_client_execute(c, "migrate-set-capabilities", a, NULL, err);
    qmp_args_free(a);
    return ret;
}

static int bandwidth_set(struct qmp_client *c, int64_t bytes_per_s, struct qs_error **err)
{
    struct qmp_args *a = qmp_args_new();
    int ret;

    qmp_args_set_int(a, "max-bandwidth", bytes_per_s);
    ret = qmp_client_execute(c, "migrate-set-parameters", a, NULL, err);
    qmp_args_free(a);
    return ret;
}

/* Turns MIGRATION events on (and, for a save, the bandwidth cap off, and background-snapshot on when asked),
 * recording what to set back. */
static int param_int(struct qmp_client *c, const char *name, int64_t v, struct qs_error **err)
{
    struct qmp_args *a = qmp_args_new();
    int ret;

    qmp_args_set_int(a, name, v);
    ret = qmp_client_execute(c, "migrate-set-parameters", a, NULL, err);
    qmp_args_free(a);
    return ret;
}

/* Capability NAME on, recording its old state in *old / *have. */
static int cap_on(struct qmp_client *c, const char *name, bool *old, bool *have, struct qs_error **err)
{
    if (cap_get(c, name, NULL, old, err) < 0)
        return -1;
    if (*old)
        return 0;
    if (cap_set(c, name, true, err) < 0)
        return -1;
    *have = true;
    return 0;
}

/* Turns MIGRATION events on (and, for a save, the bandwidth cap off, and background-snapshot on when asked;
 * with MAPPED, mapped-ram and multifd on), recording what to set back. */
static int mig_setup(struct qmp_client *c, bool outgoing, bool background, bool mapped, int downtime_ms,
                     struct mig_saved *saved, struct qs_error **err)
{
    struct qmp_reply *r = NULL;
    int ret = -1;

    if (cap_get(c, CAP_EVENTS, NULL, &saved->events, err) < 0)
        goto out;
    if (!saved->events) {
        if (cap_set(c, CAP_EVENTS, true, err) < 0)
            goto out;
        saved->have_events = true;
    }
    if (background) {
        if (cap_get(c, CAP_BACKGROUND, NULL, &saved->background, err) < 0)
            goto out;
        if (!saved->background) {
            if (cap_set(c, CAP_BACKGROUND, true, err) < 0) {
                qs_error_prefix(err, "live save");
                goto out;
            }
            saved->have_background = true;
        }
    }
    if (outgoing || mapped) {
        int64_t ch;
        if (qmp_client_execute(c, "query-migrate-parameters", NULL, &r, err) < 0)
            goto out;
        if (outgoing && qmp_value_int(qmp_value_get(qmp_reply_value(r), "max-bandwidth"), &saved->bandwidth)) {
            if (bandwidth_set(c, SAVE_BANDWIDTH, err) < 0)
                goto out;
            saved->have_bandwidth = true;
        }
        if (outgoing && downtime_ms > 0 &&
            qmp_value_int(qmp_value_get(qmp_reply_value(r), "downtime-limit"), &saved->downtime) &&
            saved->downtime != downtime_ms) {
            if (param_int(c, "downtime-limit", downtime_ms, err) < 0)
                goto out;
            saved->have_downtime = true;
        }
        if (mapped) {
            /* RAM pages at fixed offsets of the file, written (and read back) by parallel channels */
            if (cap_on(c, CAP_MAPPED_RAM, &saved->mapped, &saved->have_mapped, err) < 0 ||
                cap_on(c, CAP_MULTIFD, &saved->multifd, &saved->have_multifd, err) < 0)
                goto out;
            if (qmp_value_int(qmp_value_get(qmp_reply_value(r), "multifd-channels"), &ch) && ch != MULTIFD_CHANNELS) {
                if (param_int(c, "multifd-channels", MULTIFD_CHANNELS, err) < 0)
                    goto out;
                saved->channels = ch;
                saved->have_channels = true;
            }
        }
    }
    ret = 0;
out:
    qmp_reply_free(r);
    return ret;
}

/*
 * Waits until QEMU has cleaned up after an outgoing migration that reached its end. QEMU's migration thread
 * sets "completed" (or "failed", "cancelled") and only then schedules the clean-up, in the main loop, that
 * joins the thread and shuts the multifd channels down - and that shutdown does nothing once multifd is off
 * again (7.2 to 10.x: it asks migrate_multifd() first). A capability set back in between leaves multifd's
 * state behind, and QEMU 10.0 aborts in the next multifd save ("multifd_device_state_send_setup: Assertion
 * `!multifd_send_device_state' failed", seen in CI). The clean-up's last step drops the migration's yank
 * instance, which query-yank (QEMU 6.0 on) shows. Best effort: after CLEANUP_WAIT_MS, or without
 * query-yank, the settings are set back anyway.
 */
static void mig_cleanup_wait(struct qmp_client *c)
{
    int64_t deadline = qs_now_ms() + CLEANUP_WAIT_MS;

    for (;;) {
        struct qmp_reply *r = NULL;
        struct qs_error *local = NULL;
        const struct qmp_value *v;
        bool pending = false;

        if (qmp_client_execute(c, "query-yank", NULL, &r, &local) < 0) {
            qs_error_free(local);
            return;
        }
        v = qmp_reply_value(r);
        for (size_t i = 0; i < qmp_value_array_len(v); i++)
            pending = pending || qs_str_equal(qmp_value_get_string(qmp_value_array_at(v, i), "type"), "migration");
        qmp_reply_free(r);
        if (!pending || qs_now_ms() >= deadline)
            return;
        {
            struct timespec ts = {0, 2 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
}

int memstate_leftovers_drop(struct qmp_client *c, struct qs_error **err)
{
    static const char *const caps[] = {CAP_BACKGROUND, CAP_MAPPED_RAM, CAP_MULTIFD};
    static const char *const names[] = {SAVE_FDNAME, LOAD_FDNAME};
    struct qmp_reply *r = NULL;
    const struct qmp_value *sets;
    int ret = -1;

    mig_cleanup_wait(c); /* the dead process's migration ended; QEMU may not have cleaned up after it yet */
    for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
        bool present = false, on = false;
        if (cap_get(c, caps[i], &present, &on, err) < 0 || (present && on && cap_set(c, caps[i], false, err) < 0))
            goto out;
    }
    /* the file's descriptor: an fdset of add-fd stays as long as a monitor is connected, and keeps the file
     * (a removed temporary's blocks too) open in QEMU */
    if (qmp_client_execute(c, "query-fdsets", NULL, &r, err) < 0)
        goto out;
    sets = qmp_reply_value(r);
    for (size_t i = 0; i < qmp_value_array_len(sets); i++) {
        const struct qmp_value *set = qmp_value_array_at(sets, i), *fds = qmp_value_get(set, "fds");
        bool ours = false;
        int64_t id;
        for (size_t k = 0; k < qmp_value_array_len(fds); k++) {
            const char *o = qmp_value_get_string(qmp_value_array_at(fds, k), "opaque");
            ours = ours || qs_str_equal(o, SAVE_FDNAME) || qs_str_equal(o, LOAD_FDNAME);
        }
        if (ours && qmp_value_int(qmp_value_get(set, "fdset-id"), &id)) {
            struct qmp_args *a = qmp_args_new();
            qmp_args_set_int(a, "fdset-id", id);
            int rr = qmp_client_execute(c, "remove-fd", a, NULL, err);
            qmp_args_free(a);
            if (rr < 0)
                goto out;
        }
    }
    /* a getfd name no migration took: there may be none, which is not an error */
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        struct qmp_args *a = qmp_args_new();
        struct qs_error *ignore = NULL;
        qmp_args_set_str(a, "fdname", names[i]);
        qmp_client_execute(c, "closefd", a, NULL, &ignore);
        qmp_args_free(a);
        qs_error_free(ignore);
    }
    ret = 0;
out:
    qmp_reply_free(r);
    return ret;
}

/* Sets back what mig_setup changed; errors go to ERR only when it has none yet. */
static void mig_restore(struct qmp_client *c, struct mig_saved *saved, struct qs_error **err)
{
    if (saved->have_background)
        cap_set(c, CAP_BACKGROUND, saved->background, err);
    if (saved->have_events)
        cap_set(c, CAP_EVENTS, saved->events, err);
    if (saved->have_bandwidth)
        bandwidth_set(c, saved->bandwidth, err);
    if (saved->have_mapped)
        cap_set(c, CAP_MAPPED_RAM, saved->mapped, err);
    if (saved->have_multifd)
        cap_set(c, CAP_MULTIFD, saved->multifd, err);
    if (saved->have_channels)
        param_int(c, "multifd-channels", saved->channels, err);
    if (saved->have_downtime)
        param_int(c, "downtime-limit", saved->downtime, err);
    saved->have_events = saved->have_background = saved->have_bandwidth = saved->have_downtime = false;
    saved->have_mapped = saved->have_multifd = saved->have_channels = false;
}

/*
 * How QEMU gets the file. Where QEMU has "file:" migration: add-fd and "file:/dev/fdset/N,offset=OFF" (from
 * QEMU 9.1 "fd:" on a regular file is deprecated, a warning on every save and load, later an error); QEMU
 * dups the set's fd whose access mode matches its own open flags (write-only for a save, read-only for a
 * load). Elsewhere (7.2), and for a stream that is not a file (a clone's vmstate through a socket, where fd:
 * is not deprecated): getfd and "fd:NAME", from the fd's current offset.
 */
struct mig_channel {
    bool file;      /* add-fd + file: */
    int64_t fdset;  /* the fdset QEMU made, -1 none */
    bool named;     /* fd: getfd done */
    const char *fdname;
    char *uri;
};

static int channel_open(struct qmp_client *c, int fd, bool outgoing, const char *fdname, struct mig_channel *ch,
                        struct qs_error **err)
{
    int want = outgoing ? O_WRONLY : O_RDONLY, flags, own = -1, ret = -1;
    struct qmp_args *a = NULL;
    struct qmp_reply *r = NULL;
    off_t off;

    memset(ch, 0, sizeof(*ch));
    ch->fdset = -1;
    ch->fdname = fdname;
    if (qmp_client_feature(c, QMP_FEATURE_FILE_MIGRATION, &ch->file, err) < 0)
        goto out;
    if (ch->file) {
        struct stat st;
        if (fstat(fd, &st) < 0) {
            qs_error_set_errno(err, QS_ERR_IO, errno, "cannot use the memory state file's descriptor");
            goto out;
        }
        ch->file = S_ISREG(st.st_mode);
    }
    if (!ch->file) {
        if (qmp_client_send_fd(c, fd, fdname, err) < 0)
            goto out;
        ch->named = true;
        ch->uri = qs_asprintf("fd:%s", fdname);
        ret = 0;
        goto out;
    }
    if ((off = lseek(fd, 0, SEEK_CUR)) < 0 || (flags = fcntl(fd, F_GETFL)) < 0) {
        qs_error_set_errno(err, QS_ERR_IO, errno, "cannot use the memory state file's descriptor");
        goto out;
    }
    if ((flags & O_ACCMODE) != want) {
        /* the same file, opened again with the access mode QEMU will ask its fdset for */
        char path[64];
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        if ((own = open(path, want | O_CLOEXEC)) < 0) {
            qs_error_set_errno(err, QS_ERR_IO, errno, "cannot reopen the memory state file");
            goto out;
        }
    }
    a = qmp_args_new();
    qmp_args_set_str(a, "opaque", fdname);
    if (qmp_client_execute_fd(c, "add-fd", a, own >= 0 ? own : fd, &r, err) < 0)
        goto out;
    if (!qmp_value_int(qmp_value_get(qmp_reply_value(r), "fdset-id"), &ch->fdset)) {
        qs_error_set(err, QS_ERR_PROTOCOL, "add-fd returned no fdset-id");
        goto out;
    }
    ch->uri = qs_asprintf("file:/dev/fdset/%lld,offset=%lld", (long long)ch->fdset, (long long)off);
    ret = 0;
out:
    qs_close(own);
    qmp_reply_free(r);
    qmp_args_free(a);
    return ret;
}

/* Gives the fd back (closefd / remove-fd), not minding a name a started migration consumed already. */
static void channel_close(struct qmp_client *c, struct mig_channel *ch)
{
    struct qmp_args *a = NULL;
    struct qs_error *ignore = NULL;

    if (ch->named) {
        a = qmp_args_new();
        qmp_args_set_str(a, "fdname", ch->fdname);
        qmp_client_execute(c, "closefd", a, NULL, &ignore);
    } else if (ch->fdset >= 0) {
        a = qmp_args_new();
        qmp_args_set_int(a, "fdset-id", ch->fdset);
        qmp_client_execute(c, "remove-fd", a, NULL, &ignore);
    }
    qs_error_free(ignore);
    qmp_args_free(a);
    free(ch->uri);
    memset(ch, 0, sizeof(*ch));
    ch->fdset = -1;
}

/* query-migrate: *status (caller frees), ram transferred / total and error-desc (caller frees, may be NULL). */
/* query-migrate: status, RAM progress, error-desc and (PASSES non-NULL) the dirty-bitmap syncs so far - one per
 * pre-copy pass. */
static int mig_query_passes(struct qmp_client *c, char **status, uint64_t *done, uint64_t *total, char **desc,
                            int64_t *passes, struct qs_error **err)
{
    struct qmp_reply *r = NULL;
    const struct qmp_value *v;
    const char *s;
    int64_t n;

    if (qmp_client_execute(c, "query-migrate", NULL, &r, err) < 0)
        return -1;
    v = qmp_reply_value(r);
    s = qmp_value_get_string(v, "status");
    *status = qs_xstrdup(s ? s : "none");
    *done = qmp_value_int(qmp_value_path(v, "ram.transferred"), &n) && n > 0 ? (uint64_t)n : 0;
    *total = qmp_value_int(qmp_value_path(v, "ram.total"), &n) && n > 0 ? (uint64_t)n : 0;
    s = qmp_value_get_string(v, "error-desc");
    *desc = s ? qs_xstrdup(s) : NULL;
    if (passes && !qmp_value_int(qmp_value_path(v, "ram.dirty-sync-count"), passes))
        *passes = 0;
    qmp_reply_free(r);
    return 0;
}

static int mig_query(struct qmp_client *c, char **status, uint64_t *done, uint64_t *total, char **desc,
                     struct qs_error **err)
{
    return mig_query_passes(c, status, done, total, desc, NULL, err);
}

/*
 * Waits for the migration to end. WHAT is "save" or "restore" for messages. Events only wake us early;
 * query-migrate is the truth (an event can be missed, e.g. when it came before the capability was set).
 */
static int mig_wait(struct qmp_client *c, const char *what, bool outgoing, const struct memstate_options *o,
                    struct qs_error **err)
{
    int poll_ms = o && o->poll_ms > 0 ? o->poll_ms : DEFAULT_POLL_MS;
    int64_t deadline = o && o->timeout_ms > 0 ? qs_now_ms() + o->timeout_ms : 0;
    const char *phase = o && o->phase ? o->phase : what;
    int64_t cancel_deadline = 0;
    int ret = -1, why = 0; /* why: the code to fail with once a cancel we asked for is done */
    char *status = NULL, *desc = NULL;
    uint64_t done, total;
    int64_t passes = 0;

    for (;;) {
        struct qmp_event *ev = NULL;
        struct qs_error *local = NULL;

        free(status);
        free(desc);
        status = desc = NULL;
        if (mig_query_passes(c, &status, &done, &total, &desc, &passes, err) < 0) {
            qs_error_prefix(err, "%s of the VM state", what);
            goto out;
        }
        if (strcmp(status, "completed") == 0) {
            if (why)
                break; /* it finished before the cancel took: the state is whole, but we were told to stop */
            if (o && o->progress)
                o->progress(o->opaque, phase, total, total);
            ret = 0;
            goto out;
        }
        if (strcmp(status, "failed") == 0 || strcmp(status, "cancelled") == 0) {
            if (why)
                break;
            if (desc)
                qs_error_set_qmp(err, "GenericError", "%s of the VM state %s: %s", what, status, desc);
            else
                qs_error_set_qmp(err, "GenericError", "%s of the VM state %s", what, status);
            goto out;
        }
        if (!why && o && o->progress && o->progress(o->opaque, phase, done, total) != 0 && outgoing)
            why = QS_ERR_CANCELLED;
        /* a pre-copy that does not converge (the guest dirties its RAM faster than the file takes it): the
         * guest is stopped, and the rest goes in that pause */
        if (!why && outgoing && o && o->converge_passes > 0 && o->forced && !*o->forced &&
            passes >= o->converge_passes && strcmp(status, "active") == 0) {
            if (qmp_client_execute(c, "stop", NULL, NULL, err) < 0)
                goto out;
            *o->forced = true;
        }
        if (!why && deadline && qs_now_ms() >= deadline)
            why = QS_ERR_TIMEOUT;
        if (why && !cancel_deadline) {
            if (!outgoing) {
                /* QEMU cannot stop an incoming migration; the caller ends the process */
                break;
            }
            if (qmp_client_execute(c, "migrate_cancel", NULL, NULL, err) < 0)
                goto out;
            cancel_deadline = qs_now_ms() + CANCEL_WAIT_MS;
        }
        if (cancel_deadline && qs_now_ms() >= cancel_deadline) {
            qs_error_set(err, QS_ERR_TIMEOUT, "%s of the VM state did not stop after migrate_cancel", what);
            goto out;
        }
        if (qmp_client_event_wait(c, "MIGRATION", NULL, NULL, poll_ms, &ev, &local) < 0) {
            if (local->code != QS_ERR_TIMEOUT) {
                qs_error_propagate(err, &local);
                qs_error_prefix(err, "%s of the VM state", what);
                goto out;
            }
            qs_error_free(local);
        }
        qmp_event_free(ev);
    }
    if (why == QS_ERR_CANCELLED)
        qs_error_set(err, QS_ERR_CANCELLED, "%s of the VM state cancelled", what);
    else
        qs_error_set(err, QS_ERR_TIMEOUT, "%s of the VM state did not finish within %d ms", what,
                     o ? o->timeout_ms : 0);
out:
    free(status);
    free(desc);
    return ret;
}

int memstate_settle(struct qmp_client *c, int timeout_ms, char **status, struct qs_error **err)
{
    int64_t deadline = qs_now_ms() + timeout_ms;

    *status = NULL;
    for (;;) {
        uint64_t done, total;
        char *desc = NULL;
        if (mig_query(c, status, &done, &total, &desc, err) < 0)
            return -1;
        free(desc);
        if (!strcmp(*status, "completed") || !strcmp(*status, "failed") || !strcmp(*status, "cancelled") ||
            !strcmp(*status, "none"))
            return 0;
        if (qs_now_ms() >= deadline) {
            qs_error_set(err, QS_ERR_TIMEOUT, "a migration is still '%s'", *status);
            free(*status);
            *status = NULL;
            return -1;
        }
        free(*status);
        *status = NULL;
        {
            struct timespec ts = {0, 20 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
}

int memstate_save_begin(struct qmp_client *c, int fd, const struct memstate_options *opts,
                        struct memstate_save_ctx *s, struct qs_error **err)
{
    memset(s, 0, sizeof(*s));
    s->begun = true;
    s->chan = qs_xcalloc(1, sizeof(*s->chan));
    s->chan->fdset = -1;
    if (!(opts && (opts->background || opts->plain))) {
        bool file = false, mapped = false;
        if (qmp_client_feature(c, QMP_FEATURE_FILE_MIGRATION, &file, err) < 0 ||
            qmp_client_feature(c, QMP_FEATURE_MAPPED_RAM, &mapped, err) < 0)
            return -1;
        s->mapped_ram = file && mapped; /* mapped-ram needs file: */
    }
    if (mig_setup(c, true, opts && opts->background, s->mapped_ram, opts ? opts->downtime_ms : 0, &s->saved, err) < 0 ||
        channel_open(c, fd, true, SAVE_FDNAME, s->chan, err) < 0)
        return -1;
    s->fd_sent = true;
    return 0;
}

int memstate_save_start(struct qmp_client *c, struct memstate_save_ctx *s, struct qs_error **err)
{
    struct qmp_args *a = NULL;
    int ret = -1;

    if (!s->begun || !s->fd_sent || s->started) {
        qs_error_set(err, QS_ERR_INVALID, "memory state save not prepared");
        return -1;
    }
    a = qmp_args_new();
    qmp_args_set_str(a, "uri", s->chan->uri);
    qmp_client_event_clear(c);
    if (qmp_client_execute(c, "migrate", a, NULL, err) < 0)
        goto out;
    s->started = true;
    ret = 0;
out:
    qmp_args_free(a);
    return ret;
}

/* A RESUME event within TIMEOUT_MS (0: only one already queued): 1 with *us its timestamp, 0 none, -1 error. */
static int resume_take(struct qmp_client *c, int timeout_ms, int64_t *us, struct qs_error **err)
{
    struct qmp_event *ev = NULL;
    struct qs_error *local = NULL;

    if (qmp_client_event_wait(c, "RESUME", NULL, NULL, timeout_ms, &ev, &local) < 0) {
        if (local->code == QS_ERR_TIMEOUT) {
            qs_error_free(local);
            return 0;
        }
        qs_error_propagate(err, &local);
        return -1;
    }
    *us = qmp_event_timestamp_us(ev);
    qmp_event_free(ev);
    return 1;
}

/* ram.remaining of query-migrate (absent before setup made QEMU's RAM state): -1 when absent. */
static int64_t mig_remaining(struct qmp_client *c, char **status, uint64_t *total, char **desc, struct qs_error **err)
{
    struct qmp_reply *r = NULL;
    const struct qmp_value *v;
    const char *st;
    int64_t n, rem = -1;

    /* from QEMU 8.2 the migration's setup holds QEMU's big lock and this reply waits for it: a long setup
     * (a big guest on a loaded host) must not look like a dead QEMU */
    if (qmp_client_execute_timeout(c, "query-migrate", NULL, CAPTURE_QUERY_TIMEOUT_MS, &r, err) < 0)
        return -2;
    v = qmp_reply_value(r);
    st = qmp_value_get_string(v, "status");
    *status = qs_xstrdup(st ? st : "none");
    *total = qmp_value_int(qmp_value_path(v, "ram.total"), &n) && n > 0 ? (uint64_t)n : 0;
    if (qmp_value_int(qmp_value_path(v, "ram.remaining"), &n))
        rem = n;
    st = qmp_value_get_string(v, "error-desc");
    *desc = st ? qs_xstrdup(st) : NULL;
    qmp_reply_free(r);
    return rem;
}

int memstate_capture_wait(struct qmp_client *c, int timeout_ms, int64_t *resume_us, struct qs_error **err)
{
    int64_t deadline = qs_now_ms() + (timeout_ms > 0 ? timeout_ms : CAPTURE_DEFAULT_TIMEOUT_MS);
    char *status = NULL, *desc = NULL;
    int ret = -1;

    *resume_us = -1;
    for (;;) {
        uint64_t total = 0;
        int64_t rem;
        int r;

        /* QEMU before 9.0 resumes the guest itself once the RAM is write-protected */
        if ((r = resume_take(c, 0, resume_us, err)) != 0) {
            ret = r > 0 ? 0 : -1;
            goto out;
        }
        free(status);
        free(desc);
        status = desc = NULL;
        if ((rem = mig_remaining(c, &status, &total, &desc, err)) == -2)
            goto out;
        if (!strcmp(status, "completed")) {
            ret = 0;
            goto out;
        }
        if (!strcmp(status, "failed") || !strcmp(status, "cancelled") || !strcmp(status, "none")) {
            qs_error_set_qmp(err, "GenericError", "live save of the VM state %s%s%s", status, desc ? ": " : "",
                             desc ? desc : "");
            goto out;
        }
        /*
         * "active" only says setup is over: QEMU stops the vCPUs and saves the devices after it (QEMU's
         * migration thread, 7.2 to 10.x). Every page is dirty until the RAM is write-protected; the first
         * page written after that lowers ram.remaining - from then on the RAM of this instant is kept.
         */
        if (!strcmp(status, "active") && rem >= 0 && total > 0 && (uint64_t)rem < total) {
            ret = 0;
            goto out;
        }
        if (qs_now_ms() >= deadline) {
            qs_error_set(err, QS_ERR_TIMEOUT, "QEMU did not capture the VM state within %d ms (migration '%s')",
                         timeout_ms > 0 ? timeout_ms : CAPTURE_DEFAULT_TIMEOUT_MS, status);
            goto out;
        }
        /* a RESUME wakes us at once; otherwise look again after a short while (this runs inside the pause) */
        if ((r = resume_take(c, CAPTURE_POLL_MS, resume_us, err)) != 0) {
            ret = r > 0 ? 0 : -1;
            goto out;
        }
    }
out:
    free(status);
    free(desc);
    return ret;
}

int memstate_save_finish(struct qmp_client *c, struct memstate_save_ctx *s, bool run,
                         const struct memstate_options *opts, struct qs_error **err)
{
    int ret = run ? -1 : 0;

    if (!s->begun)
        return 0;
    if (run) {
        if ((!s->started && memstate_save_start(c, s, err) < 0) || mig_wait(c, "save", true, opts, err) < 0)
            goto out;
        ret = 0;
    } else if (s->started) {
        /* a migration we started and no longer want: it must be over before its settings are set back */
        struct qs_error *ignore = NULL;
        char *st = NULL;
        qmp_client_execute(c, "migrate_cancel", NULL, NULL, &ignore);
        qs_error_free(ignore);
        ignore = NULL;
        memstate_settle(c, CANCEL_WAIT_MS, &st, &ignore);
        qs_error_free(ignore);
        free(st);
    }
out:
    if (s->started)
        mig_cleanup_wait(c);
    if (s->fd_sent)
        channel_close(c, s->chan);
    mig_restore(c, &s->saved, ret < 0 ? NULL : err);
    if (ret == 0 && err && *err)
        ret = -1; /* could not set a setting back */
    s->begun = s->fd_sent = s->started = false;
    free(s->chan);
    s->chan = NULL;
    return ret;
}

int memstate_save_wait(struct qmp_client *c, struct memstate_save_ctx *s, const struct memstate_options *opts,
                       struct qs_error **err)
{
    if ((!s->started && memstate_save_start(c, s, err) < 0) || mig_wait(c, "save", true, opts, err) < 0)
        return -1;
    /* QEMU's migration thread leaves "finish-migrate" for "postmigrate" after "completed": until then cont
     * is refused ("Migration is not finalized yet"); the clean-up comes after that */
    mig_cleanup_wait(c);
    return 0;
}

int memstate_save(struct qmp_client *c, int fd, const struct memstate_options *opts, struct qs_error **err)
{
    struct memstate_save_ctx s;

    if (memstate_save_begin(c, fd, opts, &s, err) < 0) {
        memstate_save_finish(c, &s, false, opts, NULL);
        return -1;
    }
    return memstate_save_finish(c, &s, true, opts, err);
}

int memstate_live_check(struct qmp_client *c, struct qs_error **err)
{
    struct qs_error *local = NULL;
    bool present = false, on = false;

    if (cap_get(c, CAP_BACKGROUND, &present, &on, err) < 0)
        return -1;
    if (!present) {
        qs_error_set(err, QS_ERR_UNSUPPORTED, "QEMU %s has no '%s' migration capability",
                     qmp_client_version(c), CAP_BACKGROUND);
        return -1;
    }
    if (on)
        return 0; /* someone left it on: QEMU accepted it then, and memstate_save keeps it as it is */
    /* QEMU checks the host (userfaultfd write-protect) and the guest's memory when the capability is set */
    if (cap_set(c, CAP_BACKGROUND, true, &local) < 0) {
        if (local->code != QS_ERR_QEMU) {
            qs_error_propagate(err, &local);
            return -1;
        }
        qs_error_set(err, QS_ERR_UNSUPPORTED, "%s", local->message);
        qs_error_free(local);
        return -1;
    }
    return cap_set(c, CAP_BACKGROUND, false, err);
}

int memstate_precopy_check(struct qmp_client *c, struct qs_error **err)
{
    bool ok = false;

    if (qmp_client_feature(c, QMP_FEATURE_PRECOPY_COHERENT, &ok, err) < 0)
        return -1;
    if (!ok) {
        qs_error_set(err, QS_ERR_UNSUPPORTED, "QEMU %s without KVM loses guest writes from a pre-copy (QEMU 9.0 "
                     "or newer can, or KVM)", qmp_client_version(c));
        return -1;
    }
    return 0;
}

int memstate_load(struct qmp_client *c, int fd, const struct memstate_options *opts, struct qs_error **err)
{
    struct mig_saved saved = {0};
    struct mig_channel ch = {.fdset = -1};
    struct qmp_args *a = NULL;
    bool fd_sent = false;
    int ret = -1;

    if (opts && opts->header &&
        memstate_load_check(c, opts->header, opts->path ? opts->path : "(memory state)", err) < 0)
        goto out;
    if (mig_setup(c, false, false, opts && opts->header && opts->header->mapped_ram, 0, &saved, err) < 0 ||
        channel_open(c, fd, false, LOAD_FDNAME, &ch, err) < 0)
        goto out;
    fd_sent = true;
    a = qmp_args_new();
    qmp_args_set_str(a, "uri", ch.uri);
    qmp_client_event_clear(c);
    if (qmp_client_execute(c, "migrate-incoming", a, NULL, err) < 0 || mig_wait(c, "restore", false, opts, err) < 0)
        goto out;
    ret = 0;
out:
    /* after a failure QEMU may be gone: nothing to set back then */
    if (ret == 0 || (err && *err && (*err)->code != QS_ERR_DISCONNECTED)) {
        if (fd_sent)
            channel_close(c, &ch);
        mig_restore(c, &saved, ret < 0 ? NULL : err);
        if (ret == 0 && err && *err)
            ret = -1;
    }
    free(ch.uri);
    qmp_args_free(a);
    return ret;
}

/* ------------------------------------------------------------------------------------------------
 * The save file's header
 */

static uint64_t header_data_offset(uint64_t fixed, size_t name_len, size_t xml_len, size_t writer_len)
{
    uint64_t n = fixed + (uint64_t)name_len + xml_len + writer_len;

    return (n + HEADER_ALIGN - 1) / HEADER_ALIGN * HEADER_ALIGN;
}

#define MACHINE_SUFFIX "-machine"

int memstate_writer_get(struct qmp_client *c, char **qemu_version, char **machine, struct qs_error **err)
{
    struct qmp_args *a = qmp_args_new();
    struct qmp_reply *r = NULL;
    const char *type;
    size_t len;
    int ret = -1;

    qmp_args_set_str(a, "path", "/machine");
    qmp_args_set_str(a, "property", "type");
    if (qmp_client_execute(c, "qom-get", a, &r, err) < 0)
        goto out;
    type = qmp_value_string(qmp_reply_value(r));
    len = type ? strlen(type) : 0;
    if (len <= strlen(MACHINE_SUFFIX) || strcmp(type + len - strlen(MACHINE_SUFFIX), MACHINE_SUFFIX) != 0 ||
        strpbrk(type, ",\n= ")) {
        qs_error_set(err, QS_ERR_PROTOCOL, "QEMU reports machine type '%s'", type ? type : "");
        goto out;
    }
    *machine = qs_xstrndup(type, len - strlen(MACHINE_SUFFIX));
    *qemu_version = qs_xstrdup(qmp_client_version(c));
    ret = 0;
out:
    qmp_reply_free(r);
    qmp_args_free(a);
    return ret;
}

int memstate_header_write(int fd, const char *path, const char *domain, const char *xml, bool running,
                          struct qmp_client *c, struct qs_error **err)
{
    size_t name_len = strlen(domain), xml_len = strlen(xml), writer_len;
    char *qv = NULL, *machine = NULL, *writer = NULL, *buf = NULL;
    uint64_t off, v64;
    uint32_t v32;
    int ret = -1;

    if (memstate_writer_get(c, &qv, &machine, err) < 0)
        goto out;
    writer = qs_asprintf("qemu=%s\nmachine=%s\n", qv, machine);
    writer_len = strlen(writer);
    if (name_len > QS_NAME_MAX || xml_len > MEMSTATE_XML_MAX || writer_len > MEMSTATE_WRITER_MAX) {
        qs_error_set(err, QS_ERR_TOOBIG, "domain '%s' is too large for a save file header", domain);
        goto out;
    }
    off = header_data_offset(HEADER_FIXED, name_len, xml_len, writer_len);
    buf = qs_xcalloc(1, (size_t)off);
    memcpy(buf, MEMSTATE_MAGIC, 8);
    v32 = htobe32(MEMSTATE_VERSION);
    memcpy(buf + 8, &v32, 4);
    v32 = htobe32(running ? MEMSTATE_FLAG_RUNNING : 0);
    memcpy(buf + 12, &v32, 4);
    v64 = htobe64(off);
    memcpy(buf + 16, &v64, 8);
    v32 = htobe32((uint32_t)name_len);
    memcpy(buf + 24, &v32, 4);
    v32 = htobe32((uint32_t)xml_len);
    memcpy(buf + 28, &v32, 4);
    v32 = htobe32((uint32_t)writer_len);
    memcpy(buf + 32, &v32, 4);
    memcpy(buf + HEADER_FIXED, domain, name_len);
    memcpy(buf + HEADER_FIXED + name_len, xml, xml_len);
    memcpy(buf + HEADER_FIXED + name_len + xml_len, writer, writer_len);
    if (lseek(fd, 0, SEEK_SET) < 0 || qs_write_all(fd, buf, (size_t)off) < 0) {
        qs_error_set_errno(err, QS_ERR_IO, errno, "cannot write to '%s'", path);
        goto out;
    }
    ret = 0;
out:
    free(buf);
    free(writer);
    free(qv);
    free(machine);
    return ret;
}

/* Reads exactly LEN bytes at OFF: 1, 0 when the file is shorter, -1 error. */
static int read_at(int fd, void *buf, size_t len, uint64_t off)
{
    size_t got = 0;
    ssize_t n;

    while (got < len) {
        n = pread(fd, (char *)buf + got, len - got, (off_t)(off + got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            return 0;
        got += (size_t)n;
    }
    return 1;
}

int memstate_header_mark(int fd, const char *path, bool running, bool mapped_ram, struct qs_error **err)
{
    uint32_t v32 = htobe32((running ? MEMSTATE_FLAG_RUNNING : 0) | (mapped_ram ? MEMSTATE_FLAG_MAPPED_RAM : 0));

    if (pwrite(fd, &v32, 4, 12) != 4) {
        qs_error_set_errno(err, QS_ERR_IO, errno, "cannot write to '%s'", path);
        return -1;
    }
    return 0;
}

/* "KEY=" line of the writer field, or NULL. Caller frees. */
static char *writer_value(const char *writer, const char *key)
{
    size_t klen = strlen(key);

    for (const char *l = writer; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        if (strncmp(l, key, klen) == 0 && l[klen] == '=') {
            const char *v = l + klen + 1, *end = strchr(v, '\n');
            return end ? qs_xstrndup(v, (size_t)(end - v)) : qs_xstrdup(v);
        }
    }
    return NULL;
}

int memstate_header_read(int fd, const char *path, struct memstate_header *h, struct qs_error **err)
{
    unsigned char fixed[HEADER_FIXED];
    char qevm[4];
    uint32_t version, flags, name_len, xml_len, writer_len = 0, zero = 0;
    uint64_t off, fixed_len;
    char *name = NULL, *xml = NULL, *writer = NULL;
    int r, ret = -1;

    memset(h, 0, sizeof(*h));
    if ((r = read_at(fd, fixed, HEADER_FIXED_V1, 0)) < 0)
        goto io;
    if (r == 0 || memcmp(fixed, MEMSTATE_MAGIC, 8) != 0) {
        qs_error_set(err, QS_ERR_INVALID, "'%s' is not a qsnap saved state file", path);
        goto out;
    }
    memcpy(&version, fixed + 8, 4);
    version = be32toh(version);
    if (version < 1 || version > MEMSTATE_VERSION) {
        qs_error_set(err, QS_ERR_UNSUPPORTED, "saved state file '%s' has version %u; this qsnap reads versions 1 "
                     "to %u", path, version, MEMSTATE_VERSION);
        goto out;
    }
    fixed_len = version == 1 ? HEADER_FIXED_V1 : HEADER_FIXED;
    if (version >= 2) {
        if ((r = read_at(fd, fixed + HEADER_FIXED_V1, HEADER_FIXED - HEADER_FIXED_V1, HEADER_FIXED_V1)) < 0)
            goto io;
        if (r == 0) {
            qs_error_set(err, QS_ERR_INVALID, "saved state file '%s' is truncated", path);
            goto out;
        }
        memcpy(&writer_len, fixed + 32, 4);
        memcpy(&zero, fixed + 36, 4);
        writer_len = be32toh(writer_len);
    }
    memcpy(&flags, fixed + 12, 4);
    memcpy(&off, fixed + 16, 8);
    memcpy(&name_len, fixed + 24, 4);
    memcpy(&xml_len, fixed + 28, 4);
    flags = be32toh(flags);
    off = be64toh(off);
    name_len = be32toh(name_len);
    xml_len = be32toh(xml_len);
    if (name_len == 0 || name_len > QS_NAME_MAX || xml_len == 0 || xml_len > MEMSTATE_XML_MAX ||
        writer_len > MEMSTATE_WRITER_MAX || zero != 0 ||
        off != header_data_offset(fixed_len, name_len, xml_len, writer_len) ||
        (flags & ~(MEMSTATE_FLAG_RUNNING | (version >= 2 ? MEMSTATE_FLAG_MAPPED_RAM : 0)))) {
        qs_error_set(err, QS_ERR_INVALID, "saved state file '%s' has a corrupt header", path);
        goto out;
    }
    name = qs_xcalloc(1, (size_t)name_len + 1);
    xml = qs_xcalloc(1, (size_t)xml_len + 1);
    writer = qs_xcalloc(1, (size_t)writer_len + 1);
    if ((r = read_at(fd, name, name_len, fixed_len)) < 0 ||
        (r > 0 && (r = read_at(fd, xml, xml_len, fixed_len + name_len)) < 0) ||
        (r > 0 && writer_len && (r = read_at(fd, writer, writer_len, fixed_len + name_len + xml_len)) < 0) ||
        (r > 0 && (r = read_at(fd, qevm, sizeof(qevm), off)) < 0))
        goto io;
    if (r == 0) {
        qs_error_set(err, QS_ERR_INVALID, "saved state file '%s' is truncated", path);
        goto out;
    }
    if (strlen(name) != name_len || strlen(xml) != xml_len || strlen(writer) != writer_len ||
        qs_name_check(name, "domain", NULL) < 0) {
        qs_error_set(err, QS_ERR_INVALID, "saved state file '%s' has a corrupt header", path);
        goto out;
    }
    if (memcmp(qevm, QEMU_STREAM_MAGIC, 4) != 0) {
        qs_error_set(err, QS_ERR_INVALID, "saved state file '%s' holds no QEMU state after its header", path);
        goto out;
    }
    if (lseek(fd, (off_t)off, SEEK_SET) < 0)
        goto io;
    h->domain = name;
    h->xml = xml;
    h->running = flags & MEMSTATE_FLAG_RUNNING;
    h->mapped_ram = flags & MEMSTATE_FLAG_MAPPED_RAM;
    h->data_offset = off;
    h->version = version;
    h->qemu_version = writer_value(writer, "qemu");
    h->machine = writer_value(writer, "machine");
    name = xml = NULL;
    ret = 0;
    goto out;
io:
    qs_error_set_errno(err, QS_ERR_IO, errno, "cannot read '%s'", path);
out:
    free(name);
    free(xml);
    free(writer);
    return ret;
}

void memstate_header_release(struct memstate_header *h)
{
    if (!h)
        return;
    free(h->domain);
    free(h->xml);
    free(h->qemu_version);
    free(h->machine);
    h->domain = h->xml = h->qemu_version = h->machine = NULL;
}

/* ------------------------------------------------------------------------------------------------
 * Loading under another QEMU than the one that wrote the state
 */

static bool is_machine_opt(const char *a)
{
    return !strcmp(a, "-machine") || !strcmp(a, "-M") || !strcmp(a, "--machine");
}

/* OPTS ("pc,accel=tcg", "type=q35,...", "accel=tcg") with its machine type set to TYPE. */
static char *machine_opts_with(const char *opts, const char *type)
{
    char *copy = qs_xstrdup(opts), *save = NULL, *it;
    struct qs_buf b;
    bool done = false, first = true;

    qs_buf_init(&b, 0);
    for (it = strtok_r(copy, ",", &save); it; it = strtok_r(NULL, ",", &save)) {
        if (!done && ((first && !strchr(it, '=')) || qs_str_has_prefix(it, "type="))) {
            it = (char *)type;
            done = true;
        }
        qs_buf_addf(&b, "%s%s", b.len ? "," : "", it);
        first = false;
    }
    free(copy);
    if (!done) {
        char *rest = qs_buf_detach(&b, NULL), *r = qs_asprintf("%s%s%s", type, *rest ? "," : "", rest);
        free(rest);
        return r;
    }
    return qs_buf_detach(&b, NULL);
}

/* Whether QEMU binary BIN knows machine type TYPE ("-machine help"), so that a state it cannot take is
 * refused with the reason before a QEMU is started for it. */
static int machine_known(const char *bin, const char *type, const struct memstate_header *h, struct qs_error **err)
{
    char *argv[] = {(char *)bin, "-machine", "help", NULL}, *ver[] = {(char *)bin, "--version", NULL};
    struct qs_proc_result res = {0}, vres = {0};
    size_t tlen = strlen(type);
    bool found = false;
    int ret = -1;

    if (qs_proc_run(argv, MACHINE_HELP_TIMEOUT_MS, 0, &res, err) < 0) {
        qs_error_prefix(err, "cannot ask '%s' for its machine types", bin);
        return -1;
    }
    for (const char *l = res.out; l && *l && !found; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
        found = strncmp(l, type, tlen) == 0 && (l[tlen] == ' ' || l[tlen] == '\n' || l[tlen] == '\0');
    if (res.status != 0 || found) {
        ret = 0; /* a binary that cannot list its machines fails at start with its own message */
        goto out;
    }
    if (qs_proc_run(ver, MACHINE_HELP_TIMEOUT_MS, 0, &vres, NULL) == 0 && vres.out && strstr(vres.out, "version "))
        *strchrnul(strstr(vres.out, "version ") + 8, ' ') = '\0';
    qs_error_set(err, QS_ERR_UNSUPPORTED, "the state was written by QEMU %s with machine type %s, which '%s'%s%s%s does "
                 "not have: QEMU loads a state only into the machine type it was saved from (a newer QEMU's state "
                 "does not load into an older QEMU)", h->qemu_version ? h->qemu_version : "?", type, bin,
                 vres.out && strstr(vres.out, "version ") ? " (QEMU " : "",
                 vres.out && strstr(vres.out, "version ") ? strstr(vres.out, "version ") + 8 : "",
                 vres.out && strstr(vres.out, "version ") ? ")" : "");
out:
    qs_proc_result_release(&res);
    qs_proc_result_release(&vres);
    return ret;
}

int memstate_pin_machine(struct md_domain *dom, const struct memstate_header *h, struct qs_error **err)
{
    char **argv = NULL, **out = NULL;
    size_t n, k = 0;
    bool pinned = false;
    int ret = -1;

    if (!h->machine)
        return 0;
    if (!(argv = md_domain_argv(dom)) || !argv[0])
        goto done; /* nothing recorded: starting fails later with its own message */
    if (machine_known(argv[0], h->machine, h, err) < 0)
        goto out;
    n = qs_strv_len(argv);
    out = qs_xcalloc(n + 3, sizeof(char *));
    for (size_t i = 0; i < n; i++) {
        out[k++] = qs_xstrdup(argv[i]);
        if (is_machine_opt(argv[i]) && i + 1 < n && !pinned) {
            out[k++] = machine_opts_with(argv[++i], h->machine);
            pinned = true;
        }
    }
    if (!pinned) {
        out[k++] = qs_xstrdup("-machine");
        out[k++] = qs_xstrdup(h->machine);
    }
    if (md_domain_set_argv(dom, (const char *const *)out, err) < 0)
        goto out;
done:
    ret = 0;
out:
    qs_strv_free(argv);
    qs_strv_free(out);
    return ret;
}

/* -1, 0, 1 as version A is older, the same (major.minor) or newer than B; 0 when one does not parse. */
static int version_cmp(const char *a, const char *b)
{
    int amaj, amin, bmaj, bmin;

    if (!a || !b || sscanf(a, "%d.%d", &amaj, &amin) != 2 || sscanf(b, "%d.%d", &bmaj, &bmin) != 2)
        return 0;
    return amaj != bmaj ? (amaj < bmaj ? -1 : 1) : amin != bmin ? (amin < bmin ? -1 : 1) : 0;
}

int memstate_load_check(struct qmp_client *c, const struct memstate_header *h, const char *path,
                        struct qs_error **err)
{
    char *qv = NULL, *machine = NULL;
    bool has = false;
    int ret = -1;

    if (h->mapped_ram) {
        if (qmp_client_feature(c, QMP_FEATURE_MAPPED_RAM, &has, err) < 0)
            goto out;
        if (!has) {
            qs_error_set(err, QS_ERR_UNSUPPORTED, "memory state file '%s' was written in mapped-ram form by QEMU %s; "
                         "QEMU %s cannot read that form (QEMU 9.0 or newer can)", path,
                         h->qemu_version ? h->qemu_version : "?", qmp_client_version(c));
            goto out;
        }
    }
    if (!h->machine) {
        ret = 0; /* a version 1 file: written by the QEMU 7.2 of its day, nothing recorded to check */
        goto out;
    }
    if (memstate_writer_get(c, &qv, &machine, err) < 0)
        goto out;
    if (version_cmp(h->qemu_version, qv) > 0) {
        qs_error_set(err, QS_ERR_UNSUPPORTED, "memory state file '%s' was written by QEMU %s (machine type %s); "
                     "QEMU %s cannot load the state of a newer QEMU", path, h->qemu_version, h->machine, qv);
        goto out;
    }
    if (strcmp(machine, h->machine) != 0) {
        qs_error_set(err, QS_ERR_UNSUPPORTED, "memory state file '%s' was written by QEMU %s with machine type %s; "
                     "QEMU %s runs machine type %s and cannot load it", path, h->qemu_version, h->machine, qv,
                     machine);
        goto out;
    }
    ret = 0;
out:
    free(qv);
    free(machine);
    return ret;
}

/* ------------------------------------------------------------------------------------------------
 * virsh save / restore
 */

static int flags_check(unsigned flags, struct qs_error **err)
{
    if (flags & ~(unsigned)(ENGINE_SAVE_RUNNING | ENGINE_SAVE_PAUSED)) {
        qs_error_set(err, QS_ERR_INVALID, "unsupported flags 0x%x", flags);
        return -1;
    }
    if ((flags & ENGINE_SAVE_RUNNING) && (flags & ENGINE_SAVE_PAUSED)) {
        qs_error_set(err, QS_ERR_INVALID, "running and paused are mutually exclusive");
        return -1;
    }
    return 0;
}

static void options_for(struct engine *e, const char *phase, struct memstate_options *o)
{
    memset(o, 0, sizeof(*o));
    o->timeout_ms = 0; /* a big guest on a slow disk takes what it takes; QMP replies keep their timeout */
    o->phase = phase;
    o->progress = e->progress;
    o->opaque = e->opaque;
}

/* fsync of PATH's directory after a rename into it. */
static int dir_sync_of(const char *path, struct qs_error **err)
{
    char *copy = qs_xstrdup(path);
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC), ret = -1;

    if (fd < 0 || fsync(fd) < 0)
        qs_error_set_errno(err, QS_ERR_IO, errno, "cannot sync the directory of '%s'", path);
    else
        ret = 0;
    qs_close(fd);
    free(copy);
    return ret;
}

/* The temporary a save writes before renaming it over PATH: named before it exists, so that the intent record
 * names it before it is made (the process id and the clock make it unique; O_EXCL makes sure). Caller frees. */
static char *save_tmp_name(const char *path)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return qs_asprintf("%s.qsnap-%ld-%llx", path, (long)getpid(),
                       (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec);
}

/* Records the save's new phase ("written": the temporary holds the whole state; "renamed": PATH does). */
static int save_phase(struct engine *e, const struct md_lock *lock, const char *name, struct intent *it,
                      const char *phase, struct qs_error **err)
{
    free(it->phase);
    it->phase = qs_xstrdup(phase);
    return intent_update(e, lock, name, it, err);
}

int engine_domain_save(struct engine *e, const char *name, const char *path, unsigned flags,
                       struct qs_error **err)
{
    struct md_domain *dom = NULL;
    struct md_lock *lock = NULL;
    struct qmp_client *c = NULL;
    struct memstate_options o;
    struct memstate_save_ctx msave;
    struct intent it = {0};
    char *xml = NULL, *status = NULL, *tmp = NULL;
    bool was_running = false, stopped = false, made = false, renamed = false, run_after;
    int fd = -1, ret = -1;

    if (flags_check(flags, err) < 0 || !(dom = engine_domain_load(e, name, err)) ||
        !(lock = engine_domain_lock(e, name, err)) || engine_domain_connect(e, dom, &c, err) < 0)
        goto out;
    if (!c) {
        qs_error_set(err, QS_ERR_STATE, "Requested operation is not valid: domain is not running");
        goto out;
    }
    if (vm_status(c, &status, &was_running, err) < 0 || disk_check_reopen(c, dom, err) < 0)
        goto out;
    if (!was_running && strcmp(status, "paused") != 0) {
        qs_error_set(err, QS_ERR_STATE, "domain '%s' cannot be saved in QEMU state '%s'", name, status);
        goto out;
    }
    /* the save ends QEMU: a restore must be able to start it again, or the RAM would be stranded in the file */
    if (engine_qemu_check_start(dom, err) < 0) {
        qs_error_prefix(err, "cannot save domain '%s': a restore could not start its QEMU again", name);
        goto out;
    }
    if (!(xml = md_domain_format(dom, err)))
        goto out;
    run_after = flags & ENGINE_SAVE_RUNNING ? true : flags & ENGINE_SAVE_PAUSED ? false : was_running;

    /* a temporary next to PATH: PATH appears whole or not at all, and an old file survives a failure. The
     * record names it first: a crash leaves no file that nothing knows of */
    tmp = save_tmp_name(path);
    it.op = qs_xstrdup("save");
    it.kind = qs_xstrdup("memory");
    it.target = qs_xstrdup(path);
    it.vm = qs_xstrdup(was_running ? "running" : "paused");
    intent_add_file(&it, tmp);
    if (intent_begin(e, lock, name, &it, err) < 0)
        goto out;
    if ((fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0) {
        qs_error_set_errno(err, errno == ENOENT ? QS_ERR_NOTFOUND : QS_ERR_IO, errno, "cannot create '%s'", path);
        /* not qsnap's (or not there): the record must not name it for recovery to remove */
        qs_strv_free(it.files);
        it.files = NULL;
        intent_update(e, lock, name, &it, NULL);
        goto out;
    }
    made = true;
    if (memstate_header_write(fd, path, name, xml, run_after, c, err) < 0)
        goto out;
    if (was_running) {
        /* not live: the state written is the state at this instant, as virsh save does */
        if (vm_stop(c, err) < 0)
            goto out;
        stopped = true;
        engine_step(e, "save", "stop");
    }
    options_for(e, "save", &o);
    if (memstate_save_begin(c, fd, &o, &msave, err) < 0 ||
        (msave.mapped_ram && memstate_header_mark(fd, path, run_after, true, err) < 0)) {
        memstate_save_finish(c, &msave, false, &o, NULL);
        goto out;
    }
    if (memstate_save_finish(c, &msave, true, &o, err) < 0)
        goto out;
    engine_step(e, "save", "state");
    if (fsync(fd) < 0 || close(fd) < 0) {
        fd = -1;
        qs_error_set_errno(err, QS_ERR_IO, errno, "cannot write '%s'", path);
        goto out;
    }
    fd = -1;
    if (save_phase(e, lock, name, &it, "written", err) < 0)
        goto out;
    engine_step(e, "save", "written");
    if (rename(tmp, path) < 0) {
        qs_error_set_errno(err, QS_ERR_IO, errno, "cannot rename the saved state to '%s'", path);
        goto out;
    }
    made = false;
    renamed = true;
    /* the state is safe on disk once the directory is: from then on QEMU goes whatever happens */
    if (dir_sync_of(path, err) < 0 || save_phase(e, lock, name, &it, "renamed", err) < 0)
        goto out;
    engine_step(e, "save", "renamed");
    if (engine_qemu_quit(e, &c, err) < 0)
        goto out;
    engine_step(e, "save", "quit");
    ret = 0;
out:
    if (ret < 0 && c && !renamed) {
        /* a failed save gives the VM its run state back (cont also works from postmigrate) */
        struct qs_error *ignore = NULL;
        if (stopped)
            vm_cont(c, &ignore);
        qs_error_free(ignore);
    }
    if (made)
        unlink(tmp);
    qs_close(fd);
    qmp_client_free(c);
    /* after a failure, recovery checks what is left against the record: a save renamed into place still has
     * its QEMU to end, anything before that is undone */
    if (it.pid)
        intent_finish(e, lock, name, ret == 0);
    intent_release(&it);
    free(tmp);
    free(xml);
    free(status);
    md_lock_free(lock);
    md_domain_free(dom);
    return ret;
}

/* A save the process cut short (memstate_recover): before "written" the VM gets back its run state and the
 * temporary goes; a written temporary is renamed into place; once PATH holds the state, QEMU is ended. */
static int recover_save(struct engine *e, const struct intent *it, struct qmp_client **c, struct qs_error **err)
{
    const char *tmp = it->files ? it->files[0] : NULL;
    bool written = qs_str_equal(it->phase, "written"), renamed = qs_str_equal(it->phase, "renamed");
    char *mig = NULL, *status = NULL;
    bool running = false;
    int ret = -1;

    if (*c && memstate_settle(*c, SETTLE_MS, &mig, err) < 0)
        goto out; /* the migration QEMU still runs for the dead process ends first */
    if (written && tmp && access(tmp, F_OK) == 0) {
        /* the state is whole in the temporary (it was synced before the phase was written): finish */
        if (rename(tmp, it->target) < 0) {
            qs_error_set_errno(err, QS_ERR_IO, errno, "cannot rename the saved state to '%s'", it->target);
            goto out;
        }
        if (dir_sync_of(it->target, err) < 0)
            goto out;
        renamed = true;
    }
    if (renamed) {
        /* QEMU holds the saved state, stopped (a guest someone resumed since has moved on: it stays) */
        if (*c && vm_status(*c, &status, &running, err) < 0)
            goto out;
        ret = *c && !running ? engine_qemu_quit(e, c, err) : 0;
        goto out;
    }
    /* not in place: undone. (Written and no temporary: the process died between the rename and its record -
     * QEMU still holds the RAM, so it runs on and PATH keeps a copy; or its own cleanup removed it.) */
    if (tmp && unlink(tmp) < 0 && errno != ENOENT) {
        qs_error_set_errno(err, QS_ERR_IO, errno, "cannot remove '%s'", tmp);
        goto out;
    }
    ret = 0;
    if (!*c)
        goto out;
    if (memstate_leftovers_drop(*c, err) < 0 || vm_status(*c, &status, &running, err) < 0) {
        ret = -1;
        goto out;
    }
    if (qs_str_equal(it->vm, "running") && !running &&
        (!strcmp(status, "paused") || !strcmp(status, "postmigrate") || !strcmp(status, "finish-migrate")))
        ret = vm_cont(*c, err);
out:
    free(mig);
    free(status);
    return ret;
}

/* The definition to start: the stored one (after checking it is the saved domain's) or, when the domain
 * was undefined since, the saved XML, stored again. */
static struct md_domain *restore_domain(struct engine *e, const struct memstate_header *h, const char *path,
                                        const struct md_lock *lock, struct qs_error **err)
{
    struct md_domain *saved = NULL, *dom = NULL;
    struct qs_error *local = NULL;

    if (!(saved = md_domain_parse(h->xml, strlen(h->xml), err)))
        goto fail;
    if (!qs_str_equal(md_domain_name(saved), h->domain)) {
        qs_error_set(err, QS_ERR_INVALID, "saved state file '%s' has a corrupt header", path);
        goto fail;
    }
    dom = md_store_domain_get(e->store, h->domain, &local);
    if (!dom && local->code == QS_ERR_NOTFOUND) {
        qs_error_free(local);
        local = NULL;
        if (md_store_domain_put(e->store, lock, saved, err) < 0)
            goto fail;
        return saved;
    }
    if (!dom) {
        qs_error_propagate(err, &local);
        goto fail;
    }
    if (md_domain_uuid(saved) && md_domain_uuid(dom) && strcmp(md_domain_uuid(saved), md_domain_uuid(dom)) != 0) {
        qs_error_set(err, QS_ERR_INVALID, "saved state file '%s' belongs to domain '%s' with uuid %s, not to the "
                     "defined domain of that name (uuid %s)", path, h->domain, md_domain_uuid(saved),
                     md_domain_uuid(dom));
        goto fail;
    }
    md_domain_free(saved);
    return dom;
fail:
    md_domain_free(saved);
    md_domain_free(dom);
    return NULL;
}

int engine_domain_restore(struct engine *e, const char *path, unsigned flags, char **name, struct qs_error **err)
{
    struct memstate_header h = {0};
    struct md_domain *dom = NULL;
    struct md_lock *lock = NULL;
    struct qmp_client *c = NULL;
    struct memstate_options o;
    struct intent it = {0};
    int fd = -1, ret = -1;
    bool run, started = false;

    if (flags_check(flags, err) < 0)
        goto out;
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
        qs_error_set_errno(err, errno == ENOENT ? QS_ERR_NOTFOUND : QS_ERR_IO, errno, "cannot open '%s'", path);
        goto out;
    }
    if (memstate_header_read(fd, path, &h, err) < 0 || !(lock = engine_domain_lock(e, h.domain, err)) ||
        !(dom = restore_domain(e, &h, path, lock, err)) || engine_domain_connect(e, dom, &c, err) < 0)
        goto out;
    if (c) {
        qs_error_set(err, QS_ERR_STATE, "Requested operation is not valid: domain '%s' is already active",
                     h.domain);
        goto out;
    }
    if (memstate_pin_machine(dom, &h, err) < 0) {
        qs_error_prefix(err, "cannot restore domain '%s' from '%s'", h.domain, path);
        goto out;
    }
    run = flags & ENGINE_SAVE_RUNNING ? true : flags & ENGINE_SAVE_PAUSED ? false : h.running;
    /* a QEMU started for the restore is qsnap's until the state is in: recorded, so that a crash does not
     * leave it waiting for a state that never comes */
    it.op = qs_xstrdup("restore");
    it.kind = qs_xstrdup("memory");
    it.target = qs_xstrdup(path);
    it.vm = qs_xstrdup("shutoff");
    it.want_running = run;
    it.start = true;
    if (intent_begin(e, lock, h.domain, &it, err) < 0)
        goto out;
    if (engine_qemu_start_incoming(e, dom, lock, &c, err) < 0) {
        if (h.machine)
            qs_error_prefix(err, "cannot start QEMU for the state in '%s' (written by QEMU %s, machine type %s)",
                            path, h.qemu_version, h.machine);
        goto out;
    }
    started = true;
    engine_step(e, "restore", "start");
    options_for(e, "restore", &o);
    o.header = &h;
    o.path = path;
    if (lseek(fd, (off_t)h.data_offset, SEEK_SET) < 0) {
        qs_error_set_errno(err, QS_ERR_IO, errno, "cannot read '%s'", path);
        goto out;
    }
    if (memstate_load(c, fd, &o, err) < 0) {
        qs_error_prefix(err, "cannot restore domain '%s' from '%s'", h.domain, path);
        goto out;
    }
    engine_step(e, "restore", "load");
    if (run && vm_cont(c, err) < 0)
        goto out;
    engine_step(e, "restore", "state");
    if (name)
        *name = qs_xstrdup(h.domain);
    ret = 0;
out:
    if (ret < 0 && started && c) {
        /* a QEMU half loaded is no use to anyone (one that ran before is not ours to end) */
        engine_qemu_quit(e, &c, NULL); /* best effort: the error that matters is already set */
    }
    qmp_client_free(c);
    if (it.pid)
        intent_finish(e, lock, h.domain, ret == 0);
    intent_release(&it);
    memstate_header_release(&h);
    md_lock_free(lock);
    md_domain_free(dom);
    qs_close(fd);
    return ret;
}

/* A restore the process cut short: a QEMU whose state came in is given the run state asked for; one still
 * waiting for it (or whose load failed) goes - the domain stays off and the file is untouched, for another
 * restore. */
static int recover_restore(struct engine *e, const struct intent *it, struct qmp_client **c, struct qs_error **err)
{
    char *mig = NULL, *status = NULL;
    bool running = false;
    int ret = -1;

    if (!*c)
        return 0;
    if (memstate_settle(*c, SETTLE_MS, &mig, err) < 0 || vm_status(*c, &status, &running, err) < 0)
        goto out;
    /* the run state tells (a finished incoming migration's own status may be gone already): loaded, QEMU
     * left "inmigrate" for "paused" (-S) */
    if (!strcmp(status, "inmigrate"))
        ret = engine_qemu_quit(e, c, err);
    else if (memstate_leftovers_drop(*c, err) < 0)
        ret = -1;
    else if (it->want_running && !running)
        ret = vm_cont(*c, err);
    else
        ret = 0;
out:
    free(mig);
    free(status);
    return ret;
}

int memstate_recover(struct engine *e, const struct intent *it, struct qmp_client **c, struct qs_error **err)
{
    if (qs_str_equal(it->op, "save"))
        return recover_save(e, it, c, err);
    return recover_restore(e, it, c, err);
}
