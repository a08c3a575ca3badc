/* preview.c: oVirt's preview / commit / undo cycle on top of create, revert and delete. */
#include "engine_priv.h"
#include "qs_util.h"

#include <stdlib.h>
#include <string.h>

/* The cookie element that marks the point and names the previewed snapshot. */
#define COOKIE_PREVIEW_OF "preview-of"

/*
 * The kept point of DOMAIN: 1 with *target (caller frees) when ENGINE_PREVIEW_POINT exists and carries
 * the cookie; 0 when there is no such snapshot. A snapshot of that name without the cookie is a user's
 * own: QS_ERR_EXISTS, so that nothing here ever deletes it.
 */
static int point_read(struct engine *e, const char *domain, char **target, struct qs_error **err)
{
    struct qs_error *local = NULL;
    struct md_snapshot *s;
    char *v = NULL;
    int ret = -1;

    *target = NULL;
    if (engine_domain_lookup(e, domain, err) < 0)
        return -1;
    s = md_store_snapshot_get(e->store, domain, ENGINE_PREVIEW_POINT, &local);
    if (!s) {
        if (local->code == QS_ERR_NOTFOUND) {
            qs_error_free(local);
            return 0;
        }
        qs_error_propagate(err, &local);
        return -1;
    }
    if (md_snapshot_cookie_get(s, COOKIE_PREVIEW_OF, &v, err) < 0)
        goto out;
    if (!v) {
        qs_error_set(err, QS_ERR_EXISTS,
                     "snapshot '%s' of domain '%s' is not a preview point qsnap made: rename or delete it first",
                     ENGINE_PREVIEW_POINT, domain);
        goto out;
    }
    *target = v;
    ret = 1;
out:
    md_snapshot_free(s);
    return ret;
}

int engine_snapshot_preview_get(struct engine *e, const char *domain, enum engine_preview_state *state,
                                char **snapshot, struct qs_error **err)
{
    char *target = NULL, *cur = NULL;
    int r;

    *state = ENGINE_PREVIEW_NONE;
    if (snapshot)
        *snapshot = NULL;
    if ((r = point_read(e, domain, &target, err)) <= 0)
        return r;
    if (engine_snapshot_current_name(e, domain, &cur, err) < 0) {
        free(target);
        return -1;
    }
    *state = qs_str_equal(cur, ENGINE_PREVIEW_POINT) ? ENGINE_PREVIEW_INTERRUPTED : ENGINE_PREVIEW_ACTIVE;
    if (snapshot)
        *snapshot = target;
    else
        free(target);
    free(cur);
    return 0;
}

/* Creates the point: the VM's state now, whatever it is (running: RAM and disks; off: disks). */
static int point_create(struct engine *e, const char *domain, const char *target, struct qs_error **err)
{
    struct md_snapshot *s = md_snapshot_new();
    char *xml = NULL;
    int ret = -1;

    s->name = qs_xstrdup(ENGINE_PREVIEW_POINT);
    /* oVirt's name for it */
    s->description = qs_asprintf("Active VM before the preview of '%s'", target);
    if (md_snapshot_cookie_set(s, COOKIE_PREVIEW_OF, target, err) < 0 || !(xml = md_snapshot_format(s, 0, err)))
        goto out;
    ret = engine_snapshot_create(e, domain, xml, 0, NULL, err);
out:
    free(xml);
    md_snapshot_free(s);
    return ret;
}

/* Back to the point and the point dropped: undo's work, and a failed preview's cleanup. */
static int point_restore(struct engine *e, const char *domain, unsigned flags, struct qs_error **err)
{
    if (engine_snapshot_revert(e, domain, ENGINE_PREVIEW_POINT, flags, err) < 0)
        return -1;
    return engine_snapshot_delete(e, domain, ENGINE_PREVIEW_POINT, 0, err);
}

int engine_snapshot_preview(struct engine *e, const char *domain, const char *name, unsigned flags,
                            struct qs_error **err)
{
    struct engine_snapshot_list *l = NULL;
    enum engine_preview_state st;
    struct qs_error *local = NULL;
    char *target = NULL;
    int ret = -1;

    if (qs_name_check(name, "snapshot", err) < 0)
        return -1;
    if (strcmp(name, ENGINE_PREVIEW_POINT) == 0) {
        qs_error_set(err, QS_ERR_INVALID, "snapshot '%s' is the preview point: use undo to return to it", name);
        return -1;
    }
    if (engine_snapshot_preview_get(e, domain, &st, &target, err) < 0 ||
        engine_snapshot_lookup(e, domain, name, &l, err) < 0)
        goto out;
    if (st != ENGINE_PREVIEW_NONE && !qs_str_equal(target, name)) {
        qs_error_set(err, QS_ERR_STATE, "domain '%s' is previewing snapshot '%s': commit or undo it first", domain,
                     target);
        goto out;
    }
    if (st == ENGINE_PREVIEW_ACTIVE) {
        qs_error_set(err, QS_ERR_STATE, "domain '%s' is already previewing snapshot '%s'", domain, name);
        goto out;
    }
    if (strcmp(engine_snapshot_location(engine_snapshot_list_at(l, 0)), "external") == 0) {
        qs_error_set(err, QS_ERR_UNSUPPORTED,
                     "snapshot '%s' is external: preview needs an internal snapshot (revert to it instead)", name);
        goto out;
    }
    /* an interrupted preview of the same snapshot already has its point: only the revert is left */
    if (st == ENGINE_PREVIEW_NONE && point_create(e, domain, name, err) < 0)
        goto out;
    engine_step(e, "preview", "point");
    if (engine_snapshot_revert(e, domain, name, flags, &local) < 0) {
        /* the VM may have lost its RAM to a failed load: the point brings it back, then goes */
        struct qs_error *undo = NULL;
        if (point_restore(e, domain, 0, &undo) < 0)
            qs_error_prefix(&local, "and the VM could not be taken back to '%s' (%s)", ENGINE_PREVIEW_POINT,
                            undo->message);
        qs_error_free(undo);
        qs_error_propagate(err, &local);
        goto out;
    }
    engine_step(e, "preview", "revert");
    ret = 0;
out:
    free(target);
    engine_snapshot_list_free(l);
    return ret;
}

int engine_snapshot_preview_commit(struct engine *e, const char *domain, struct qs_error **err)
{
    enum engine_preview_state st;
    char *target = NULL;
    int ret = -1;

    if (engine_snapshot_preview_get(e, domain, &st, &target, err) < 0)
        return -1;
    if (st == ENGINE_PREVIEW_NONE) {
        qs_error_set(err, QS_ERR_STATE, "domain '%s' has no snapshot in preview", domain);
        goto out;
    }
    if (st == ENGINE_PREVIEW_INTERRUPTED) {
        qs_error_set(err, QS_ERR_STATE,
                     "the preview of snapshot '%s' on domain '%s' did not finish: preview it again, or undo", target,
                     domain);
        goto out;
    }
    ret = engine_snapshot_delete(e, domain, ENGINE_PREVIEW_POINT, 0, err);
    if (ret == 0)
        engine_step(e, "commit", "delete");
out:
    free(target);
    return ret;
}

int engine_snapshot_preview_undo(struct engine *e, const char *domain, unsigned flags, struct qs_error **err)
{
    enum engine_preview_state st;

    if (engine_snapshot_preview_get(e, domain, &st, NULL, err) < 0)
        return -1;
    if (st == ENGINE_PREVIEW_NONE) {
        qs_error_set(err, QS_ERR_STATE, "domain '%s' has no snapshot in preview", domain);
        return -1;
    }
    if (engine_snapshot_revert(e, domain, ENGINE_PREVIEW_POINT, flags, err) < 0)
        return -1;
    engine_step(e, "undo", "revert");
    if (engine_snapshot_delete(e, domain, ENGINE_PREVIEW_POINT, 0, err) < 0)
        return -1;
    engine_step(e, "undo", "delete");
    return 0;
}
