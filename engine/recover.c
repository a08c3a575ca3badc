/* recover.c: finishing or undoing an operation a crash interrupted, from its intent record. */
#include "external.h"
#include "disks.h"
#include "export.h"
#include "clone.h"
#include "nvram.h"
#include "files.h"
#include "intent.h"
#include "memstate.h"
#include "internal.h"
#include "qs_util.h"
#include "quiesce.h"
#include "vm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SETTLE_MS 600000 /* a job or migration QEMU still runs for the dead process: let it end */

/* ---- what QEMU and the images say ---- */

/* Waits for the job the dead process ran (if any) to end; *ok: it ended well (false when there was none). */
static int job_settle(struct qmp_client *c, const char *job, bool complete, bool *present, bool *ok,
                      struct qs_error **err)
{
    enum qmp_job_outcome o = QMP_JOB_ABSENT;

    if (qmp_job_settle(c, job, SETTLE_MS, complete, &o, NULL, err) < 0)
        return -1;
    *present = o != QMP_JOB_ABSENT;
    *ok = o == QMP_JOB_SUCCEEDED;
    return 0;
}

/* job_settle for the snapshot-* job of the dead process, under its name now or its name before. */
static int internal_job_settle(struct qmp_client *c, bool *present, bool *ok, struct qs_error **err)
{
    if (job_settle(c, ISNAP_JOB, false, present, ok, err) < 0)
        return -1;
    return *present ? 0 : job_settle(c, ISNAP_JOB_OLD, false, present, ok, err);
}

/* Resumes the guest when the operation found it running and QEMU now holds it stopped. */
static int run_state_back(const struct intent *it, struct qmp_client *c, struct qs_error **err)
{
    char *status = NULL;
    bool running = false;
    int ret = 0;

    if (!c || !qs_str_equal(it->vm, "running"))
        return 0;
    if (vm_status(c, &status, &running, err) < 0)
        return -1;
    if (!running && (!strcmp(status, "paused") || !strcmp(status, "postmigrate") || !strcmp(status, "save-vm") ||
                     !strcmp(status, "restore-vm")))
        ret = vm_cont(c, err);
    free(status);
    return ret;
}

/* The isnap disks of IT where SEL[i] (all when SEL is NULL). Borrowed strings. */
static struct isnap_disk *isnap_disks(const struct intent *it, const bool *sel, size_t *n)
{
    struct isnap_disk *v = qs_xcalloc(it->ndisks + 1, sizeof(*v));

    *n = 0;
    for (size_t i = 0; i < it->ndisks; i++)
        if (!sel || sel[i])
            v[(*n)++] = (struct isnap_disk){it->disks[i].target,
                                            it->disks[i].node ? it->disks[i].node : it->disks[i].target,
                                            it->disks[i].file};
    return v;
}

static bool snapshot_exists(struct engine *e, const char *domain, const char *name)
{
    struct md_snapshot *s = md_store_snapshot_get(e->store, domain, name, NULL);
    bool r = s != NULL;

    md_snapshot_free(s);
    return r;
}

/* Writes the record's snapshot metadata unless it is there already. */
static int snapshot_put(struct engine *e, const char *domain, const struct md_lock *lock, const char *xml,
                        struct md_snapshot **out, struct qs_error **err)
{
    struct md_snapshot *s = md_snapshot_parse(xml, strlen(xml), MD_PARSE_ON_DISK, err);
    int ret = -1;

    if (!s)
        return -1;
    if (snapshot_exists(e, domain, s->name) || md_store_snapshot_put(e->store, lock, domain, s, MD_PUT_NO_REPLACE,
                                                                     err) == 0)
        ret = 0;
    if (out && ret == 0)
        *out = s;
    else
        md_snapshot_free(s);
    return ret;
}

static int domain_put_xml(struct engine *e, const struct md_lock *lock, const char *xml, struct qs_error **err)
{
    struct md_domain *d = md_domain_parse(xml, strlen(xml), err);
    int r = d ? md_store_domain_put(e->store, lock, d, err) : -1;

    md_domain_free(d);
    return r;
}

/* ---- internal snapshots ---- */

static int recover_create_internal(struct engine *e, const char *domain, const struct md_lock *lock,
                                   const struct intent *it, struct qmp_client **c, struct qs_error **err)
{
    bool *has = qs_xcalloc(it->ndisks + 1, sizeof(bool)), present = false, ok = false;
    struct isnap_disk *all_disks = NULL;
    size_t n = 0, nall = 0;
    int ret = -1;

    if (*c && internal_job_settle(*c, &present, &ok, err) < 0)
        goto out;
    all_disks = isnap_disks(it, NULL, &nall);
    if (isnap_which(*c, all_disks, nall, it->snapshot, has, &n, err) < 0)
        goto out;
    if (n == it->ndisks && n > 0) {
        /* every disk holds it: the snapshot was taken - finish it */
        if (it->snapshot_xml && snapshot_put(e, domain, lock, it->snapshot_xml, NULL, err) < 0)
            goto out;
        if (it->halt && *c && engine_qemu_quit(e, c, err) < 0)
            goto out;
    } else if (n > 0) {
        /* a save cut short: the tags it left go (none had it before: the operation checked) */
        if (isnap_delete_present(*c, all_disks, nall, it->snapshot, err) < 0)
            goto out;
    }
    ret = run_state_back(it, *c, err);
out:
    free(all_disks);
    free(has);
    return ret;
}

/* The revert is done: "current", and the files the state left behind needed. */
static int revert_finished(struct engine *e, const char *domain, const struct md_lock *lock,
                           const struct intent *it, struct qs_error **err)
{
    if (md_store_snapshot_set_current(e->store, lock, domain, it->snapshot, err) < 0)
        return -1;
    files_remove(it->garbage);
    return 0;
}

/* Whether the stored definition still is IT's undo definition (a revert to other images did not switch). */
static bool switch_pending(struct engine *e, const char *domain, const struct intent *it)
{
    struct md_domain *now = md_store_domain_get(e->store, domain, NULL);
    struct md_domain *undo = md_domain_parse(it->undo_xml, strlen(it->undo_xml), NULL);
    bool same = now && undo && md_domain_disk_count(now) == md_domain_disk_count(undo);

    for (size_t k = 0; same && k < md_domain_disk_count(now); k++) {
        struct md_domain_disk a, b;
        same = md_domain_disk_get(now, k, &a, NULL) == 0 && md_domain_disk_get(undo, k, &b, NULL) == 0 &&
               qs_str_equal(a.source, b.source);
    }
    md_domain_free(now);
    md_domain_free(undo);
    return same;
}

static int recover_revert_internal(struct engine *e, const char *domain, const struct md_lock *lock,
                                   struct intent *it, struct qmp_client **c, struct qs_error **err)
{
    bool present = false, ok = false, loaded = qs_str_equal(it->phase, "loaded");
    int ret = -1;

    if (qs_str_equal(it->phase, "applied"))
        return revert_finished(e, domain, lock, it, err);
    if (it->undo_xml && !loaded && switch_pending(e, domain, it)) {
        /* a revert to other images stopped before the definition switched: the QEMU found (if any) is the
         * one it started from, or none when it had been quit already */
        return qs_str_equal(it->phase, "apply") ? 0 : run_state_back(it, *c, err);
    }
    if (qs_str_equal(it->phase, "apply")) {
        /* an offline revert: the images were going back with qemu-img; QEMU is not running on them unless
         * someone started it since, and then nothing is touched */
        size_t n = 0;
        struct isnap_disk *all = isnap_disks(it, NULL, &n);
        if (*c) {
            free(all);
            return 0;
        }
        ret = isnap_offline_apply(all, n, it->snapshot, err);
        free(all);
        if (ret < 0)
            return -1;
        return revert_finished(e, domain, lock, it, err);
    }
    if (*c) {
        if (internal_job_settle(*c, &present, &ok, err) < 0)
            return -1;
        loaded = loaded || ok;
    }
    if (loaded) {
        /* QEMU holds the snapshot's state: finish - run state as asked, then "current" */
        if (*c) {
            char *status = NULL;
            bool running = false;
            if (vm_status(*c, &status, &running, err) < 0)
                return -1;
            free(status);
            if (it->want_running && !running && vm_cont(*c, err) < 0)
                return -1;
            if (!it->want_running && running && vm_stop(*c, err) < 0)
                return -1;
        }
        return revert_finished(e, domain, lock, it, err);
    }
    /* nothing was loaded (or the load failed): undo - a QEMU started for the revert goes, else the run state
     * comes back; a switch to other images is switched back (the domain stays off: its QEMU was quit) */
    if (it->start && *c && engine_qemu_quit(e, c, err) < 0)
        return -1;
    if (it->undo_xml)
        return domain_put_xml(e, lock, it->undo_xml, err);
    if (it->start)
        return 0;
    return run_state_back(it, *c, err);
}

/* ---- external snapshots ---- */

/* Whether QEMU's active top of every disk of IT is the overlay IT made for it. */
static int switched_live(const struct intent *it, struct qmp_client *c, bool *all, bool *none,
                         struct qs_error **err)
{
    struct vm_block *blocks = NULL;
    size_t nb = 0, n = 0;

    if (vm_blocks(c, &blocks, &nb, err) < 0)
        return -1;
    /* the overlay's node at the top of a device: its disk switched (node names are the record's own) */
    for (size_t i = 0; i < it->ndisks; i++) {
        bool top = false;
        for (size_t k = 0; k < nb && !top; k++)
            top = it->disks[i].node && qs_str_equal(blocks[k].node, it->disks[i].node);
        n += top;
    }
    vm_blocks_free(blocks, nb);
    *all = n == it->ndisks;
    *none = n == 0;
    return 0;
}

/* Whether the stored definition already names every overlay of IT (the offline switch). */
static bool switched_offline(struct engine *e, const char *domain, const struct intent *it)
{
    struct md_domain *dom = md_store_domain_get(e->store, domain, NULL);
    size_t n = 0;

    for (size_t i = 0; dom && i < md_domain_disk_count(dom); i++) {
        struct md_domain_disk d;
        if (md_domain_disk_get(dom, i, &d, NULL) < 0)
            continue;
        for (size_t k = 0; k < it->ndisks; k++)
            n += qs_str_equal(d.target, it->disks[k].target) && qs_str_equal(d.source, it->disks[k].file);
    }
    md_domain_free(dom);
    return n == it->ndisks;
}

/* Removes what IT would have added: its QEMU nodes (those QEMU still has) and its files - never a file a
 * running QEMU has as a disk's image. */
/* The working directory recorded for DOMAIN's QEMU (relative image names are relative to it), or NULL. */
static char *domain_cwd(struct engine *e, const char *domain)
{
    struct md_domain *d = md_store_domain_get(e->store, domain, NULL);
    char *r = d && md_domain_cwd(d) ? qs_xstrdup(md_domain_cwd(d)) : NULL;

    md_domain_free(d);
    return r;
}

static void external_unwind(const struct intent *it, struct qmp_client *c, const char *cwd)
{
    struct vm_block *blocks = NULL;
    size_t nb = 0;
    char **names = NULL;

    if (c && vm_node_names(c, &names, NULL) == 0) {
        for (size_t i = 0; it->nodes && it->nodes[i]; i++)
            for (size_t k = 0; names[k]; k++)
                if (strcmp(names[k], it->nodes[i]) == 0)
                    vm_blockdev_del(c, it->nodes[i], NULL);
    }
    qs_strv_free(names);
    if (c && vm_blocks(c, &blocks, &nb, NULL) < 0)
        return; /* cannot tell what QEMU uses: leave the files (snapshot-check reports them) */
    for (size_t i = 0; it->files && it->files[i]; i++) {
        bool used = false;
        for (size_t k = 0; k < nb && !used; k++) {
            char *f = disk_image_name(blocks[k].file, cwd);
            used = qs_str_equal(f, it->files[i]) || qs_str_equal(blocks[k].file, it->files[i]);
            free(f);
        }
        if (!used)
            unlink(it->files[i]);
    }
    vm_blocks_free(blocks, nb);
}

static int recover_create_external(struct engine *e, const char *domain, const struct md_lock *lock,
                                   const struct intent *it, struct qmp_client **c, struct qs_error **err)
{
    struct md_snapshot *spec = NULL;
    char *mig = NULL;
    bool all = false, none = true, forward;
    int ret = -1;

    if (it->snapshot_xml && !(spec = md_snapshot_parse(it->snapshot_xml, strlen(it->snapshot_xml),
                                                       MD_PARSE_ON_DISK, err)))
        return -1;
    if (qs_str_equal(it->vm, "shutoff")) {
        /* an offline create switches by storing the definition (metadata just before it): those decide,
         * even when someone has started QEMU since */
        forward = switched_offline(e, domain, it) || (spec && snapshot_exists(e, domain, spec->name));
    } else if (*c) {
        /* a memory save the dead process began runs on in QEMU: let it end first, then drop what it left */
        if (memstate_settle(*c, SETTLE_MS, &mig, err) < 0 ||
            (spec && spec->memory == MD_LOCATION_EXTERNAL && memstate_leftovers_drop(*c, err) < 0) ||
            switched_live(it, *c, &all, &none, err) < 0)
            goto out;
        forward = all;
    } else {
        /* QEMU died too: it may have written into the overlays after the switch - keep them */
        forward = true;
    }
    if (it->agent && !e->after_undo) {
        /* the guest's filesystems may still be frozen: thaw them (the agent answers a running guest; the
         * operation's own undo, when it ran, thawed them already) */
        struct qs_error *ignore = NULL;
        if (!forward || !it->halt)
            run_state_back(it, *c, &ignore);
        qs_error_free(ignore);
        ignore = NULL;
        quiesce_thaw(it->agent, QUIESCE_TIMEOUT_MS, &ignore);
        qs_error_free(ignore);
    }
    if (!forward) {
        {
            char *cwd = domain_cwd(e, domain);
            external_unwind(it, *c, cwd);
            free(cwd);
        }
        ret = run_state_back(it, *c, err);
        goto out;
    }
    /* the disks switched: finish. A memory file only counts when its save completed. */
    if (spec && spec->memory == MD_LOCATION_EXTERNAL && !qs_str_equal(mig, "completed")) {
        if (spec->memory_file)
            unlink(spec->memory_file);
        free(spec->memory_file);
        spec->memory_file = NULL;
        spec->memory = MD_LOCATION_NO;
        spec->state = MD_STATE_DISK_SNAPSHOT;
    }
    if (spec && !snapshot_exists(e, domain, spec->name) &&
        md_store_snapshot_put(e->store, lock, domain, spec, MD_PUT_NO_REPLACE, err) < 0)
        goto out;
    if (it->domain_xml && domain_put_xml(e, lock, it->domain_xml, err) < 0)
        goto out;
    if (run_state_back(it, *c, err) < 0)
        goto out;
    if (it->halt && *c && engine_qemu_quit(e, c, err) < 0)
        goto out;
    ret = 0;
out:
    free(mig);
    md_snapshot_free(spec);
    return ret;
}

static int recover_revert_external(struct engine *e, const char *domain, const struct md_lock *lock,
                                   const struct intent *it, struct qmp_client **c, struct qs_error **err)
{
    bool was_up = !qs_str_equal(it->vm, "shutoff");

    if (!switched_offline(e, domain, it)) {
        if (*c || !was_up || !it->domain_xml || e->after_undo) {
            /* the definition still names the old images and their QEMU was not quit (or there was none, or the
             * revert's own failure path gave it back): the new overlays go, and the domain is as it was */
            char *cwd = domain_cwd(e, domain);
            external_unwind(it, *c, cwd);
            free(cwd);
            return 0;
        }
        /* QEMU was quit for the revert and its RAM is gone: going back could only boot the old disks afresh,
         * so the revert goes forward - onto the overlays made before the quit */
        if (domain_put_xml(e, lock, it->domain_xml, err) < 0)
            return -1;
    }
    if (*c) {
        /* the fresh QEMU of the revert: a load the dead process began runs on in QEMU - let it end; keep the
         * QEMU when the state came in, else start again below */
        char *status = NULL, *mig = NULL;
        bool running = false;
        int r = vm_status(*c, &status, &running, err);
        if (r == 0 && !strcmp(status, "inmigrate")) {
            free(status);
            status = NULL;
            r = memstate_settle(*c, SETTLE_MS, &mig, err) < 0 ? -1 : vm_status(*c, &status, &running, err);
        }
        if (r == 0 && !strcmp(status, "inmigrate"))
            r = engine_qemu_quit(e, c, err);
        else if (r == 0 && (r = memstate_leftovers_drop(*c, err)) == 0 && it->want_running && !running)
            r = vm_cont(*c, err);
        free(status);
        free(mig);
        if (r < 0)
            return -1;
    }
    if (!*c && it->start && !e->after_undo) {
        /* QEMU as the revert would have started it. Best effort, as in the revert itself: a start or load that
         * fails leaves the domain off on the snapshot's disks, and the revert stands (retrying it at every
         * command would leave the domain stuck) */
        struct md_domain *dom = md_store_domain_get(e->store, domain, NULL);
        struct md_snapshot *snap = md_store_snapshot_get(e->store, domain, it->snapshot, NULL);
        struct qs_error *ignore = NULL;
        if (dom && snap)
            ext_revert_start(e, dom, lock, snap, true, it->want_running, c, &ignore);
        qs_error_free(ignore);
        md_snapshot_free(snap);
        md_domain_free(dom);
    }
    if (md_store_snapshot_set_current(e->store, lock, domain, it->snapshot, err) < 0)
        return -1;
    files_remove(it->garbage);
    return 0;
}

/* ---- delete: always forward, one snapshot at a time ---- */

/* Whether a disk of snapshot NAME is noted as merged. */
static bool any_merged(const struct intent *it, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; it->merged && it->merged[i]; i++)
        if (strncmp(it->merged[i], name, n) == 0 && it->merged[i][n] == '/')
            return true;
    return false;
}

static int recover_delete(struct engine *e, const char *domain, const struct md_lock *lock, struct intent *it,
                          struct qmp_client **c, struct qs_error **err)
{
    char *job = qs_asprintf("qsnap-commit-%ld", it->pid);
    bool present = false, ok = false, data = !qs_str_equal(it->kind, "metadata");
    int ret = -1;

    if (*c && (internal_job_settle(*c, &present, &ok, err) < 0 ||
               job_settle(*c, job, true, &present, &ok, err) < 0))
        goto out;
    for (size_t i = 0; it->names && it->names[i]; i++) {
        const char *name = it->names[i];
        struct md_snapshot *s = md_store_snapshot_get(e->store, domain, name, NULL);
        struct md_domain *dom;
        struct qs_error *local = NULL;
        size_t merged = qs_strv_len(it->merged);
        bool external;
        int r;
        if (!s)
            continue; /* gone already */
        external = md_snapshot_is_external(s);
        md_snapshot_free(s);
        if (!data) {
            /* metadata only */
            if (md_store_snapshot_delete(e->store, lock, domain, name, 0, err) < 0)
                goto out;
            continue;
        }
        if (!(dom = engine_domain_load(e, domain, err)))
            goto out;
        r = engine_snapshot_delete_one(e, *c, dom, lock, NULL, domain, name, it, true, &local);
        md_domain_free(dom);
        if (r < 0 && external && qs_strv_len(it->merged) == merged && !any_merged(it, name) &&
            (local->code == QS_ERR_UNSUPPORTED || local->code == QS_ERR_INVALID)) {
            /* refused before anything of it changed: the delete ends here, the snapshot stays */
            qs_error_free(local);
            ret = 0;
            goto out;
        }
        qs_error_propagate(err, &local);
        if (r < 0)
            goto out;
    }
    /* what the deleted snapshots alone needed */
    files_remove(it->garbage);
    ret = 0;
out:
    free(job);
    return ret;
}

/* ---- metadata only ---- */

static int recover_metadata(struct engine *e, const char *domain, const struct md_lock *lock,
                            const struct intent *it, struct qs_error **err)
{
    struct md_snapshot *s = NULL;
    int ret = -1;

    if (qs_str_equal(it->op, "current"))
        return md_store_snapshot_set_current(e->store, lock, domain, it->snapshot, err);
    /* redefine: the new content replaces whatever the crash left (it was valid when written) */
    if (!it->snapshot_xml)
        return 0;
    if (!(s = md_snapshot_parse(it->snapshot_xml, strlen(it->snapshot_xml), MD_PARSE_ON_DISK, err)))
        return -1;
    ret = md_store_snapshot_put(e->store, lock, domain, s, 0, err);
    md_snapshot_free(s);
    return ret;
}

int intent_recover_op(struct engine *e, const char *domain, const struct md_lock *lock, struct qs_error **err)
{
    struct intent it = {0};
    struct md_domain *dom = NULL;
    struct qmp_client *c = NULL;
    int r, ret = -1;

    if ((r = intent_read(e, domain, &it, err)) <= 0)
        return r;
    e->recovering = true;
    engine_step(e, "recover", it.op);
    if (!(dom = engine_domain_load(e, domain, err)) || engine_domain_connect(e, dom, &c, err) < 0)
        goto out;
    if (qs_str_equal(it.op, "delete"))
        r = recover_delete(e, domain, lock, &it, &c, err);
    else if (qs_str_equal(it.op, "export"))
        r = export_recover(e, domain, lock, &it, err);
    else if (qs_str_equal(it.op, "clone"))
        r = clone_recover(e, domain, lock, &it, err);
    else if (qs_str_equal(it.op, "save") || qs_str_equal(it.op, "restore"))
        r = memstate_recover(e, &it, &c, err);
    else if (qs_str_equal(it.kind, "metadata"))
        r = recover_metadata(e, domain, lock, &it, err);
    else if (qs_str_equal(it.op, "create"))
        r = qs_str_equal(it.kind, "external") ? recover_create_external(e, domain, lock, &it, &c, err)
                                               : recover_create_internal(e, domain, lock, &it, &c, err);
    else if (qs_str_equal(it.op, "revert"))
        r = qs_str_equal(it.kind, "external") ? recover_revert_external(e, domain, lock, &it, &c, err)
                                               : recover_revert_internal(e, domain, lock, &it, &c, err);
    else {
        qs_error_set(err, QS_ERR_UNSUPPORTED, "unknown operation '%s'", it.op);
        r = -1;
    }
    if (r < 0)
        goto out;
    intent_end(e, lock, domain);
    {
        /* a create undone leaves no copy or tag of its UEFI variables */
        char *one[] = {it.snapshot, NULL};
        nvram_tidy(e, c, NULL, domain, it.names ? it.names : one);
    }
    ret = 0;
out:
    if (ret < 0 && !it.snapshot && it.target) /* a save or restore: of a file */
        qs_error_prefix(err, "domain '%s' has an unfinished %s of '%s' (qsnap process %ld) that could not be "
                        "completed or undone", domain, it.op, it.target, it.pid);
    else if (ret < 0)
        qs_error_prefix(err, "domain '%s' has an unfinished %s of snapshot '%s' (qsnap process %ld) that could "
                        "not be completed or undone", domain, it.op, it.snapshot ? it.snapshot : "?", it.pid);
    e->recovering = false;
    qmp_client_free(c);
    md_domain_free(dom);
    intent_release(&it);
    return ret;
}
