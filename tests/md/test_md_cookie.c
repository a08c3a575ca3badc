/* test_md_cookie.c: qsnap's own values in a snapshot's <cookie> - set, get, other elements kept, round trip
 * through format and parse (unit). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "md.h"

static const char doc_with_cookie[] =
    "<domainsnapshot>\n"
    "  <name>s1</name>\n"
    "  <cookie>\n"
    "    <cpu mode='custom'>\n"
    "      <model>qemu64</model>\n"
    "    </cpu>\n"
    "  </cookie>\n"
    "</domainsnapshot>\n";

static char *get(const struct md_snapshot *s, const char *key)
{
    struct qs_error *err = NULL;
    char *v = (char *)1;
    assert_int_equal(md_snapshot_cookie_get(s, key, &v, &err), 0);
    return v;
}

static void test_cookie_new(void **state)
{
    struct md_snapshot *s = md_snapshot_new(), *back;
    struct qs_error *err = NULL;
    char *xml, *v;

    (void)state;
    s->name = strdup("s1");
    assert_null(get(s, "pause-us"));
    assert_int_equal(md_snapshot_cookie_set(s, "pause-us", "2400", &err), 0);
    v = get(s, "pause-us");
    assert_string_equal(v, "2400");
    free(v);
    assert_null(get(s, "other"));
    /* set twice: refused, value unchanged */
    assert_int_equal(md_snapshot_cookie_set(s, "pause-us", "1", &err), -1);
    assert_int_equal(err->code, QS_ERR_EXISTS);
    qs_error_clear(&err);
    /* a key that is no element name */
    assert_int_equal(md_snapshot_cookie_set(s, "a b", "1", &err), -1);
    assert_int_equal(err->code, QS_ERR_INVALID);
    qs_error_clear(&err);

    xml = md_snapshot_format(s, 0, &err);
    assert_non_null(xml);
    assert_non_null(strstr(xml, "  <cookie>\n    <qsnap:pause-us xmlns:qsnap='https://qsnap.dev/xmlns/snapshot/1'>"
                                "2400</qsnap:pause-us>\n  </cookie>\n"));
    back = md_snapshot_parse(xml, strlen(xml), 0, &err);
    assert_non_null(back);
    v = get(back, "pause-us");
    assert_string_equal(v, "2400");
    free(v);
    free(xml);
    md_snapshot_free(back);
    md_snapshot_free(s);
}

static void test_cookie_keeps_others(void **state)
{
    struct qs_error *err = NULL;
    struct md_snapshot *s = md_snapshot_parse(doc_with_cookie, strlen(doc_with_cookie), 0, &err);
    char *xml, *v;

    (void)state;
    assert_non_null(s);
    assert_null(get(s, "pause-us"));
    assert_int_equal(md_snapshot_cookie_set(s, "pause-us", "7", &err), 0);
    xml = md_snapshot_format(s, 0, &err);
    assert_non_null(xml);
    assert_non_null(strstr(xml, "  <cookie>\n    <cpu mode='custom'>\n      <model>qemu64</model>\n    </cpu>\n"
                                "    <qsnap:pause-us xmlns:qsnap='https://qsnap.dev/xmlns/snapshot/1'>7"
                                "</qsnap:pause-us>\n  </cookie>\n"));
    v = get(s, "pause-us");
    assert_string_equal(v, "7");
    free(v);
    /* an element of that name in another namespace is not qsnap's */
    free(s->cookie_xml);
    s->cookie_xml = strdup("<cookie>\n  <pause-us>9</pause-us>\n</cookie>");
    assert_null(get(s, "pause-us"));
    free(xml);
    md_snapshot_free(s);
}

/* Removing a value: every other element byte for byte, the cookie gone when nothing is left in it. */
static void test_cookie_remove(void **state)
{
    struct qs_error *err = NULL;
    struct md_snapshot *s = md_snapshot_parse(doc_with_cookie, strlen(doc_with_cookie), 0, &err), *bare;
    char *before, *xml;

    (void)state;
    assert_non_null(s);
    before = md_snapshot_format(s, 0, &err);
    assert_int_equal(md_snapshot_cookie_set(s, "protected", "yes", &err), 0);
    assert_int_equal(md_snapshot_cookie_set(s, "schedule", "hourly", &err), 0);
    assert_int_equal(md_snapshot_cookie_remove(s, "protected", &err), 0);
    assert_null(get(s, "protected"));
    xml = get(s, "schedule");
    assert_string_equal(xml, "hourly");
    free(xml);
    assert_int_equal(md_snapshot_cookie_remove(s, "schedule", &err), 0);
    xml = md_snapshot_format(s, 0, &err);
    assert_string_equal(xml, before); /* back to what libvirt wrote */
    free(xml);
    /* absent: nothing to do; a bad key: refused */
    assert_int_equal(md_snapshot_cookie_remove(s, "protected", &err), 0);
    assert_int_equal(md_snapshot_cookie_remove(s, "Bad Key", &err), -1);
    assert_int_equal(err->code, QS_ERR_INVALID);
    qs_error_clear(&err);
    /* a cookie of qsnap's values only goes away with the last one */
    bare = md_snapshot_new();
    bare->name = strdup("s2");
    assert_int_equal(md_snapshot_cookie_set(bare, "protected", "yes", &err), 0);
    assert_int_equal(md_snapshot_cookie_remove(bare, "protected", &err), 0);
    assert_null(bare->cookie_xml);
    md_snapshot_free(bare);
    free(before);
    md_snapshot_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cookie_new),
        cmocka_unit_test(test_cookie_keeps_others),
        cmocka_unit_test(test_cookie_remove),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
