/* test_intent.c: the intent record's text form - every value survives a round trip, and anything that is
 * not a complete record of this version is refused rather than guessed at (label unit). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "intent.h"
#include "qs_util.h"

#include <stdlib.h>
#include <string.h>

static void test_round_trip(void **state)
{
    struct intent a = {0}, b = {0};
    struct qs_error *err = NULL;
    char *text, *again;
    (void)state;

    a.op = qs_xstrdup("delete");
    a.kind = qs_xstrdup("data");
    a.snapshot = qs_xstrdup("s p\\a\nce\t\x7f-");
    a.phase = qs_xstrdup("loaded");
    a.vm = qs_xstrdup("");   /* empty is not absent */
    a.want_running = true;
    a.start = true;
    a.pid = 4242;
    a.started = 1795341101668LL;
    intent_add_disk(&a, "vda", NULL, "/img/with space/a.qcow2");
    intent_add_disk(&a, "vdb", "qsnap-vdb-1", "-");
    intent_add_name(&a, "c1");
    intent_add_name(&a, "b\xc3\xa9");
    intent_add_file(&a, "/tmp/x.mem");
    intent_add_node(&a, "qsnap-vda-1");
    intent_add_merged(&a, "c1/vda");
    intent_add_garbage(&a, "/img/old overlay.qcow2");
    a.undo_xml = qs_xstrdup("<domain>\n  <name>u</name>\n</domain>\n");
    a.agent = qs_xstrdup("/run/qga.sock");
    a.snapshot_xml = qs_xstrdup("<domainsnapshot>\n  <name>x</name>\n</domainsnapshot>\n");
    a.domain_xml = qs_xstrdup("<domain type='kvm'>\r\n</domain>");
    a.target = qs_xstrdup("web clone 2");

    text = intent_format(&a);
    assert_null(strchr(strchr(text, '\n') + 1, '\t')); /* one line per field: every control byte escaped */
    assert_int_equal(intent_parse(text, &b, &err), 0);
    assert_string_equal(b.op, "delete");
    assert_string_equal(b.snapshot, a.snapshot);
    assert_string_equal(b.vm, "");
    assert_null(b.disks[0].node);
    assert_string_equal(b.disks[0].file, "/img/with space/a.qcow2");
    assert_string_equal(b.disks[1].file, "-");
    assert_int_equal(b.ndisks, 2);
    assert_string_equal(b.names[1], "b\xc3\xa9");
    assert_null(b.names[2]);
    assert_true(intent_has_merged(&b, "c1/vda"));
    assert_false(intent_has_merged(&b, "c1/vdb"));
    assert_true(b.want_running && b.start && !b.halt);
    assert_int_equal(b.pid, 4242);
    assert_int_equal(b.started, 1795341101668LL);
    assert_string_equal(b.snapshot_xml, a.snapshot_xml);
    assert_string_equal(b.domain_xml, a.domain_xml);
    assert_string_equal(b.garbage[0], "/img/old overlay.qcow2");
    assert_null(b.garbage[1]);
    assert_string_equal(b.undo_xml, a.undo_xml);
    assert_string_equal(b.target, "web clone 2");
    again = intent_format(&b);
    assert_string_equal(again, text); /* stable */
    free(text);
    free(again);
    intent_release(&a);
    intent_release(&b);
}

static void test_refused(void **state)
{
    static const char *const bad[] = {
        "",
        "qsnap-intent 2\nop create\nend\n",               /* another version */
        "qsnap-intent 1\nop create\n",                    /* torn: no end */
        "qsnap-intent 1\nop create\nen",                  /* torn mid-line */
        "qsnap-intent 1\nkind internal\nend\n",           /* no operation */
        "qsnap-intent 1\nop create\nfuture-key 1\nend\n", /* a newer qsnap's field */
        "qsnap-intent 1\nop cre\\x4\nend\n",              /* a cut escape */
        "qsnap-intent 1\nop create\npid x\nend\n",        /* not a number */
        "qsnap-intent 1\nop create\ndisk\nend\n",         /* a disk without a target */
    };
    (void)state;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct intent it = {0};
        struct qs_error *err = NULL;
        if (intent_parse(bad[i], &it, &err) == 0)
            fail_msg("accepted: %s", bad[i]);
        assert_int_equal(err->code, QS_ERR_INVALID);
        qs_error_free(err);
        assert_null(it.op); /* nothing half-filled */
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
