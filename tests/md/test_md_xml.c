/* test_md_xml.c: <domainsnapshot> and <domain> XML: golden in/out files, byte-exact round trips, bad input. */
#include "md_test_util.h"

#include "md.h"
#include "md_priv.h"

#include <time.h>

static const char *const snapshot_inputs[] = {
    "libvirt-running-internal.xml", "libvirt-shutoff.xml", "libvirt-disk-only-external.xml",
    "libvirt-external-memory.xml",  "libvirt-network-disk.xml", "dumpxml-running.xml",
    "create-minimal.xml",
};

static unsigned parse_flags_for(const char *name)
{
    if (qs_str_has_prefix(name, "libvirt-"))
        return MD_PARSE_ON_DISK;
    if (qs_str_has_prefix(name, "dumpxml-"))
        return MD_PARSE_REDEFINE;
    return 0;
}

static void test_snapshot_golden(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(snapshot_inputs) / sizeof(snapshot_inputs[0]); i++) {
        const char *name = snapshot_inputs[i];
        char *rel = qs_asprintf("in/%s", name), *path = t_data_path(rel), *orel = qs_asprintf("out/%s", name);
        size_t len;
        char *in = t_read(path, &len), *out;
        struct qs_error *err = NULL;
        unsigned pf = parse_flags_for(name);
        struct md_snapshot *snap = md_snapshot_parse(in, len, pf, &err);
        if (!snap)
            fail_msg("%s: %s", name, err->message);
        out = md_snapshot_format(snap, (pf & MD_PARSE_ON_DISK) ? MD_FORMAT_ON_DISK : 0, &err);
        assert_non_null(out);
        t_golden(orel, out);
        /* libvirt's own forms come back byte for byte */
        if (pf)
            assert_string_equal(out, in);
        md_snapshot_free(snap);
        free(out);
        free(in);
        free(path);
        free(rel);
        free(orel);
    }
}

static struct md_snapshot *parse_file(const char *rel, unsigned flags)
{
    char *path = t_data_path(rel);
    size_t len;
    char *in = t_read(path, &len);
    struct qs_error *err = NULL;
    struct md_snapshot *s = md_snapshot_parse(in, len, flags, &err);
    if (!s)
        fail_msg("%s: %s", rel, err->message);
    free(in);
    free(path);
    return s;
}

static void test_snapshot_fields(void **state)
{
    struct md_snapshot *s;
    (void)state;

    s = parse_file("in/libvirt-running-internal.xml", MD_PARSE_ON_DISK);
    assert_string_equal(s->name, "before-upgrade");
    assert_string_equal(s->description, "it's <fine> & \"quoted\"\nsecond line");
    assert_int_equal(s->state, MD_STATE_RUNNING);
    assert_null(s->parent);
    assert_int_equal(s->creation_time, 1700000000);
    assert_int_equal(s->memory, MD_LOCATION_INTERNAL);
    assert_int_equal(s->ndisks, 2);
    assert_string_equal(s->disks[0].name, "vda");
    assert_int_equal(s->disks[0].snapshot, MD_LOCATION_INTERNAL);
    assert_null(s->disks[0].raw);
    assert_int_equal(s->disks[1].snapshot, MD_LOCATION_NO);
    assert_true(s->current);
    assert_true(qs_str_has_prefix(s->domain_xml, "<domain type='kvm'>\n  <name>vm1</name>"));
    assert_true(qs_str_has_suffix(s->domain_xml, "\n</domain>"));
    assert_true(qs_str_has_prefix(s->inactive_domain_xml, "<inactiveDomain type='kvm'>"));
    assert_true(qs_str_has_prefix(s->cookie_xml, "<cookie>\n  <cpu mode='custom'"));
    assert_false(md_snapshot_is_external(s));
    md_snapshot_free(s);

    s = parse_file("in/libvirt-disk-only-external.xml", MD_PARSE_ON_DISK);
    assert_int_equal(s->state, MD_STATE_DISK_SNAPSHOT);
    assert_string_equal(s->parent, "offline");
    assert_int_equal(s->memory, MD_LOCATION_NO);
    assert_int_equal(s->disks[0].snapshot, MD_LOCATION_EXTERNAL);
    assert_string_equal(s->disks[0].type, "file");
    assert_string_equal(s->disks[0].driver_type, "qcow2");
    assert_string_equal(s->disks[0].source, "/var/lib/libvirt/images/vm1.disk-only");
    assert_true(md_snapshot_is_external(s));
    assert_false(s->current);
    md_snapshot_free(s);

    s = parse_file("in/libvirt-external-memory.xml", MD_PARSE_ON_DISK);
    assert_int_equal(s->memory, MD_LOCATION_EXTERNAL);
    assert_string_equal(s->memory_file, "/var/lib/libvirt/qemu/snapshot/vm1/with-memory.mem");
    md_snapshot_free(s);

    /* a network disk is kept verbatim */
    s = parse_file("in/libvirt-network-disk.xml", MD_PARSE_ON_DISK);
    assert_non_null(s->disks[0].raw);
    assert_string_equal(s->disks[0].type, "network");
    assert_null(s->disks[0].source);
    md_snapshot_free(s);

    /* a user's creation document: libvirt's defaults, unknown elements kept */
    s = parse_file("in/create-minimal.xml", 0);
    assert_int_equal(s->memory, MD_LOCATION_EXTERNAL);
    assert_int_equal(s->disks[0].snapshot, MD_LOCATION_EXTERNAL);
    assert_int_equal(s->state, MD_STATE_NOSTATE);
    assert_int_equal(s->creation_time, 0);
    assert_non_null(s->extra_xml);
    md_snapshot_free(s);
}

static void test_snapshot_build_and_copy(void **state)
{
    struct md_snapshot *s = md_snapshot_new(), *c;
    struct md_snapshot_disk *d;
    struct qs_error *err = NULL;
    char *xml, *xml2;
    (void)state;

    s->name = qs_xstrdup("s1");
    s->state = MD_STATE_SHUTOFF;
    s->creation_time = 1;
    s->memory = MD_LOCATION_NO;
    d = md_snapshot_disk_add(s);
    d->name = qs_xstrdup("vda");
    d->snapshot = MD_LOCATION_EXTERNAL;
    d->driver_type = qs_xstrdup("qcow2");
    d->source = qs_xstrdup("/images/a.s1");
    s->domain_xml = qs_xstrdup("<domain type='qemu'>\n  <name>vm</name>\n  <uuid>00000000-0000-4000-8000-000000000001</uuid>\n</domain>");
    s->current = true;
    xml = md_snapshot_format(s, MD_FORMAT_ON_DISK, &err);
    assert_string_equal(xml,
                        "<domainsnapshot>\n"
                        "  <name>s1</name>\n"
                        "  <state>shutoff</state>\n"
                        "  <creationTime>1</creationTime>\n"
                        "  <memory snapshot='no'/>\n"
                        "  <disks>\n"
                        "    <disk name='vda' snapshot='external' type='file'>\n"
                        "      <driver type='qcow2'/>\n"
                        "      <source file='/images/a.s1'/>\n"
                        "    </disk>\n"
                        "  </disks>\n"
                        "  <domain type='qemu'>\n"
                        "    <name>vm</name>\n"
                        "    <uuid>00000000-0000-4000-8000-000000000001</uuid>\n"
                        "  </domain>\n"
                        "  <active>1</active>\n"
                        "</domainsnapshot>\n");
    assert_int_equal(md_snapshot_validate(s, &err), 0);
    c = md_snapshot_copy(s);
    xml2 = md_snapshot_format(c, MD_FORMAT_ON_DISK, &err);
    assert_string_equal(xml, xml2);
    free(xml2);
    md_snapshot_free(c);
    free(xml);

    free(s->name);
    s->name = NULL;
    assert_null(md_snapshot_format(s, 0, &err));
    assert_int_equal(err->code, QS_ERR_INVALID);
    qs_error_clear(&err);
    md_snapshot_free(s);
    md_snapshot_free(NULL);
}

static void test_enums(void **state)
{
    (void)state;
    for (int i = 0; i < MD_STATE__LAST; i++)
        assert_int_equal(md_state_from_string(md_state_to_string(i)), i);
    for (int i = 0; i < MD_LOCATION__LAST; i++)
        assert_int_equal(md_location_from_string(md_location_to_string(i)), i);
    assert_string_equal(md_state_to_string(MD_STATE_DISK_SNAPSHOT), "disk-snapshot");
    assert_string_equal(md_location_to_string(MD_LOCATION_MANUAL), "manual");
    assert_null(md_state_to_string(MD_STATE__LAST));
    assert_null(md_state_to_string(-1));
    assert_int_equal(md_state_from_string("bogus"), -1);
    assert_int_equal(md_location_from_string(NULL), -1);
}

static void expect_parse_error(const char *xml, unsigned flags, int code, const char *needle)
{
    struct qs_error *err = NULL;
    struct md_snapshot *s = md_snapshot_parse(xml, strlen(xml), flags, &err);
    if (s)
        fail_msg("parsed but should fail: %s", xml);
    assert_non_null(err);
    assert_int_equal(err->code, code);
    if (!strstr(err->message, needle))
        fail_msg("message '%s' lacks '%s'", err->message, needle);
    qs_error_free(err);
}

static void test_bad_documents(void **state)
{
    static const char *const files[] = { "bad/malformed.xml", "bad/xxe.xml", "bad/billion-laughs.xml" };
    static const char *const needles[] = { "line 3", "DOCTYPE", "DOCTYPE" };
    (void)state;

    for (size_t i = 0; i < 3; i++) {
        char *path = t_data_path(files[i]);
        size_t len;
        char *in = t_read(path, &len);
        int64_t t0 = qs_now_ms();
        struct qs_error *err = NULL;
        assert_null(md_snapshot_parse(in, len, 0, &err));
        /* refused at the DOCTYPE (the message says so below), not expanded: expanding the billion laughs
         * would take far longer than this bound, which a loaded machine never reaches for a refusal */
        assert_true(qs_now_ms() - t0 < 30000);
        assert_int_equal(err->code, QS_ERR_INVALID);
        if (!strstr(err->message, needles[i]))
            fail_msg("%s: message '%s' lacks '%s'", files[i], err->message, needles[i]);
        assert_null(strstr(err->message, "root:")); /* nothing of /etc/passwd */
        qs_error_clear(&err);
        /* the domain parser is just as careful */
        assert_null(md_domain_parse(in, len, &err));
        assert_int_equal(err->code, QS_ERR_INVALID);
        qs_error_free(err);
        free(in);
        free(path);
    }

    /* a huge document is refused before parsing */
    {
        size_t big = MD_FILE_MAX + 1;
        char *huge = qs_xmalloc(big + 1);
        struct qs_error *err = NULL;
        memset(huge, ' ', big);
        memcpy(huge, "<domainsnapshot>", 16);
        huge[big] = '\0';
        assert_null(md_snapshot_parse(huge, big, 0, &err));
        assert_int_equal(err->code, QS_ERR_TOOBIG);
        qs_error_free(err);
        free(huge);
    }

    expect_parse_error("", 0, QS_ERR_INVALID, "cannot parse");
    expect_parse_error("<domain/>", 0, QS_ERR_INVALID, "expected a <domainsnapshot>");
    expect_parse_error("<domainsnapshot><name>&undefined;</name></domainsnapshot>", 0, QS_ERR_INVALID,
                       "cannot parse");
    expect_parse_error("<domainsnapshot><state>flying</state></domainsnapshot>", 0, QS_ERR_INVALID,
                       "invalid state 'flying'");
    expect_parse_error("<domainsnapshot><creationTime>12x</creationTime></domainsnapshot>", 0, QS_ERR_INVALID,
                       "invalid creationTime '12x'");
    expect_parse_error("<domainsnapshot><memory snapshot='manual'/></domainsnapshot>", 0, QS_ERR_INVALID,
                       "'manual' memory snapshot mode not supported");
    expect_parse_error("<domainsnapshot><memory snapshot='internal' file='/m'/></domainsnapshot>", 0,
                       QS_ERR_INVALID, "memory filename '/m' requires external snapshot");
    expect_parse_error("<domainsnapshot><memory snapshot='external'/></domainsnapshot>", 0, QS_ERR_INVALID,
                       "external memory snapshots require a filename");
    expect_parse_error("<domainsnapshot><memory file='rel/m'/></domainsnapshot>", 0, QS_ERR_INVALID,
                       "must be absolute");
    expect_parse_error("<domainsnapshot><disks><disk snapshot='no'/></disks></domainsnapshot>", 0, QS_ERR_INVALID,
                       "missing name from disk snapshot element");
    expect_parse_error("<domainsnapshot><disks><disk name='vda' snapshot='sideways'/></disks></domainsnapshot>", 0,
                       QS_ERR_INVALID, "invalid disk snapshot location 'sideways' for disk 'vda'");
    expect_parse_error("<domainsnapshot><disks><disk name='vda'><source file='rel'/></disk></disks></domainsnapshot>",
                       0, QS_ERR_INVALID, "disk snapshot image path 'rel' must be absolute");
    expect_parse_error("<domainsnapshot><disks><disk name='vda'/><disk name='vda'/></disks></domainsnapshot>", 0,
                       QS_ERR_INVALID, "disk 'vda' specified twice");
    /* redefinition / on-disk rules */
    expect_parse_error("<domainsnapshot><state>running</state></domainsnapshot>", MD_PARSE_REDEFINE,
                       QS_ERR_INVALID, "a redefined snapshot must have a name");
    expect_parse_error("<domainsnapshot><name>a</name><creationTime>1</creationTime></domainsnapshot>",
                       MD_PARSE_REDEFINE, QS_ERR_INVALID, "missing state from existing snapshot 'a'");
    expect_parse_error("<domainsnapshot><name>a</name><state>nostate</state></domainsnapshot>", MD_PARSE_REDEFINE,
                       QS_ERR_INVALID, "invalid state 'nostate'");
    expect_parse_error("<domainsnapshot><name>a</name><state>running</state></domainsnapshot>", MD_PARSE_REDEFINE,
                       QS_ERR_INVALID, "missing creationTime from existing snapshot 'a'");
    expect_parse_error("<domainsnapshot><name>a</name><state>shutoff</state><creationTime>1</creationTime>"
                       "<memory snapshot='internal'/></domainsnapshot>",
                       MD_PARSE_REDEFINE, QS_ERR_INVALID, "memory state cannot be saved with offline");
    expect_parse_error("<domainsnapshot><name>a</name><state>running</state><creationTime>1</creationTime>"
                       "</domainsnapshot>",
                       MD_PARSE_ON_DISK, QS_ERR_INVALID, "could not find 'active' element");
    expect_parse_error("<domainsnapshot><name>a</name><state>running</state><creationTime>1</creationTime>"
                       "<active>2</active></domainsnapshot>",
                       MD_PARSE_ON_DISK, QS_ERR_INVALID, "invalid <active> value '2'");
    /* names that must never become paths */
    expect_parse_error("<domainsnapshot><name>a/b</name><state>running</state><creationTime>1</creationTime>"
                       "</domainsnapshot>",
                       MD_PARSE_REDEFINE, QS_ERR_INVALID, "must not contain '/'");
    expect_parse_error("<domainsnapshot><name>..</name><state>running</state><creationTime>1</creationTime>"
                       "</domainsnapshot>",
                       MD_PARSE_REDEFINE, QS_ERR_INVALID, "must not start with '.'");
    expect_parse_error("<domainsnapshot><name>a&#9;b</name><state>running</state><creationTime>1</creationTime>"
                       "</domainsnapshot>",
                       MD_PARSE_REDEFINE, QS_ERR_INVALID, "control characters");
    expect_parse_error("<domainsnapshot><name>a\x7f</name><state>running</state><creationTime>1</creationTime>"
                       "</domainsnapshot>",
                       MD_PARSE_REDEFINE, QS_ERR_INVALID, "control characters");
    expect_parse_error("<domainsnapshot><name>a</name><parent><name>../x</name></parent><state>running</state>"
                       "<creationTime>1</creationTime></domainsnapshot>",
                       MD_PARSE_REDEFINE, QS_ERR_INVALID, "parent snapshot name");
}

static void test_validate(void **state)
{
    struct md_snapshot *s = parse_file("in/libvirt-shutoff.xml", MD_PARSE_ON_DISK);
    struct qs_error *err = NULL;
    (void)state;

    assert_int_equal(md_snapshot_validate(s, &err), 0);
    free(s->domain_xml);
    s->domain_xml = NULL;
    assert_int_equal(md_snapshot_validate(s, &err), -1);
    assert_string_equal(err->message, "a redefined snapshot 'offline' must contain its domain definition");
    qs_error_clear(&err);
    md_snapshot_free(s);
}

static void test_reindent(void **state)
{
    const char *in = "<a>\n  <b>text\n  more</b>\n\n  <c/>\n</a>";
    char *out = md_xml_reindent(in, strlen(in), 2), *back;
    (void)state;
    assert_string_equal(out, "<a>\n    <b>text\n  more</b>\n\n    <c/>\n  </a>");
    back = md_xml_reindent(out, strlen(out), -2);
    assert_string_equal(back, in);
    free(out);
    free(back);
}

/* ---- domain definitions ---- */

static struct md_domain *parse_domain_file(const char *rel, char **text)
{
    char *path = t_data_path(rel);
    size_t len;
    char *in = t_read(path, &len);
    struct qs_error *err = NULL;
    struct md_domain *d = md_domain_parse(in, len, &err);
    if (!d)
        fail_msg("%s: %s", rel, err->message);
    free(path);
    if (text)
        *text = in;
    else
        free(in);
    return d;
}

static void test_domain_round_trip(void **state)
{
    char *in, *out;
    struct qs_error *err = NULL;
    struct md_domain *d = parse_domain_file("in/domain-libvirt.xml", &in);
    struct md_domain_disk disk;
    char **argv;
    (void)state;

    assert_string_equal(md_domain_name(d), "vm1");
    assert_string_equal(md_domain_uuid(d), "c7a5fdbd-cdaf-9455-926a-d65c16db1809");
    assert_int_equal(md_domain_memory_kib(d), 1048576);
    assert_int_equal(md_domain_vcpus(d), 2);
    assert_int_equal(md_domain_disk_count(d), 2);
    assert_int_equal(md_domain_disk_get(d, 0, &disk, &err), 0);
    assert_string_equal(disk.type, "file");
    assert_string_equal(disk.device, "disk");
    assert_string_equal(disk.driver_type, "qcow2");
    assert_string_equal(disk.source, "/var/lib/libvirt/images/vm1.qcow2");
    assert_string_equal(disk.target, "vda");
    assert_null(disk.node_name);
    assert_int_equal(md_domain_disk_get(d, 1, &disk, &err), 0);
    assert_string_equal(disk.device, "cdrom");
    assert_null(disk.source);
    assert_int_equal(md_domain_disk_get(d, 2, &disk, &err), -1);
    assert_int_equal(err->code, QS_ERR_NOTFOUND);
    qs_error_clear(&err);
    assert_null(md_domain_qmp_socket(d));
    assert_null(md_domain_argv(d));

    /* untouched: byte for byte */
    out = md_domain_format(d, &err);
    assert_string_equal(out, in);
    t_golden("out/domain-libvirt.xml", out);
    free(out);

    /* qsnap's updates; everything else stays */
    assert_int_equal(md_domain_set_qmp_socket(d, "/run/qsnap/vm1.qmp", &err), 0);
    {
        const char *const av[] = { "qemu-system-x86_64", "-machine", "q35", "-name", "vm1 'quoted' & <x>", NULL };
        assert_int_equal(md_domain_set_argv(d, av, &err), 0);
    }
    assert_int_equal(md_domain_set_disk_node_name(d, "vda", "qsnap-vda-0", &err), 0);
    assert_int_equal(md_domain_set_disk_node_name(d, "sda", "qsnap-sda-0", &err), 0);
    assert_int_equal(md_domain_set_disk_source(d, "vda", "/var/lib/libvirt/images/vm1.s1", &err), 0);
    assert_int_equal(md_domain_set_disk_source(d, "sda", "/srv/iso/debian.iso", &err), 0);
    assert_int_equal(md_domain_set_disk_driver_type(d, "vda", "qcow2", &err), 0);
    assert_int_equal(md_domain_set_disk_source(d, "vdz", "/x", &err), -1);
    assert_int_equal(err->code, QS_ERR_NOTFOUND);
    assert_string_equal(err->message, "disk 'vdz' not found in domain 'vm1'");
    qs_error_clear(&err);
    assert_string_equal(md_domain_qmp_socket(d), "/run/qsnap/vm1.qmp");
    argv = md_domain_argv(d);
    assert_int_equal(qs_strv_len(argv), 5);
    assert_string_equal(argv[4], "vm1 'quoted' & <x>");
    qs_strv_free(argv);
    assert_int_equal(md_domain_disk_get(d, 0, &disk, &err), 0);
    assert_string_equal(disk.node_name, "qsnap-vda-0");
    assert_string_equal(disk.source, "/var/lib/libvirt/images/vm1.s1");
    out = md_domain_format(d, &err);
    t_golden("out/domain-libvirt-modified.xml", out);

    /* it parses back to the same values and formats to the same bytes */
    {
        struct md_domain *d2 = md_domain_parse(out, strlen(out), &err);
        char *out2;
        assert_non_null(d2);
        assert_string_equal(md_domain_qmp_socket(d2), "/run/qsnap/vm1.qmp");
        out2 = md_domain_format(d2, &err);
        assert_string_equal(out, out2);
        free(out2);
        md_domain_free(d2);
    }
    free(out);

    /* removing qsnap's data restores the original document */
    assert_int_equal(md_domain_set_qmp_socket(d, NULL, &err), 0);
    assert_int_equal(md_domain_set_argv(d, NULL, &err), 0);
    assert_int_equal(md_domain_set_disk_node_name(d, "vda", NULL, &err), 0);
    assert_int_equal(md_domain_set_disk_node_name(d, "sda", NULL, &err), 0);
    assert_null(md_domain_qmp_socket(d));
    assert_null(md_domain_argv(d));
    md_domain_free(d);
    free(in);
    md_domain_free(NULL);
}

static void test_domain_new(void **state)
{
    struct qs_error *err = NULL;
    struct md_domain *d = md_domain_new("guest", "11111111-2222-4333-8444-555555555555", 262144, 1, &err);
    char *out;
    (void)state;

    assert_non_null(d);
    assert_int_equal(md_domain_add_disk(d, "file", NULL, "qcow2", "/srv/guest.qcow2", "vda", NULL, &err), 0);
    assert_int_equal(md_domain_add_disk(d, "block", "disk", "raw", "/dev/vg0/data", "vdb", "virtio", &err), 0);
    assert_int_equal(md_domain_add_disk(d, "file", NULL, NULL, NULL, "vda", NULL, &err), -1);
    assert_int_equal(err->code, QS_ERR_EXISTS);
    qs_error_clear(&err);
    assert_int_equal(md_domain_set_disk_node_name(d, "vda", "n-vda", &err), 0);
    assert_int_equal(md_domain_set_qmp_socket(d, "/tmp/guest.qmp", &err), 0);
    assert_int_equal(md_domain_set_memory_kib(d, 524288, &err), 0);
    assert_int_equal(md_domain_set_vcpus(d, 2, &err), 0);
    {
        const char *const av[] = { "qemu-system-x86_64", "-m", "512", NULL };
        assert_int_equal(md_domain_set_argv(d, av, &err), 0);
    }
    assert_int_equal(md_domain_memory_kib(d), 524288);
    assert_int_equal(md_domain_vcpus(d), 2);
    {
        struct md_domain_disk disk;
        assert_int_equal(md_domain_disk_get(d, 1, &disk, &err), 0);
        assert_string_equal(disk.source, "/dev/vg0/data");
        assert_string_equal(disk.type, "block");
    }
    out = md_domain_format(d, &err);
    t_golden("out/domain-new.xml", out);
    free(out);
    md_domain_free(d);

    /* random uuid */
    d = md_domain_new("guest2", NULL, 1024, 1, &err);
    assert_non_null(d);
    assert_int_equal(strlen(md_domain_uuid(d)), 36);
    assert_int_equal(md_domain_uuid(d)[14], '4');
    md_domain_free(d);

    assert_null(md_domain_new("bad/name", NULL, 1024, 1, &err));
    assert_int_equal(err->code, QS_ERR_INVALID);
    qs_error_clear(&err);

    assert_null(md_domain_parse("<domainsnapshot/>", 17, &err));
    assert_string_equal(err->message, "expected a <domain> document, found <domainsnapshot>");
    qs_error_clear(&err);
    {
        const char *bad = "<domain><name>x</name><memory unit='parsecs'>1</memory></domain>";
        assert_null(md_domain_parse(bad, strlen(bad), &err));
        assert_int_equal(err->code, QS_ERR_INVALID);
        qs_error_clear(&err);
    }
}

/* What finds a disk again after a restart, the process, the machine type; a disk removed with its data. */
static void test_domain_identity(void **state)
{
    struct qs_error *err = NULL;
    struct md_domain *d = md_domain_new("guest", "11111111-2222-4333-8444-555555555555", 65536, 1, &err);
    struct md_domain_disk disk;
    long long pid, start;
    char *out;
    (void)state;

    assert_non_null(d);
    assert_int_equal(md_domain_add_disk(d, "file", "disk", "qcow2", "/srv/a.qcow2", "vda", "virtio", &err), 0);
    assert_int_equal(md_domain_add_disk(d, "file", "disk", "qcow2", "/srv/b.qcow2", "sda", "sata", &err), 0);
    assert_int_equal(md_domain_set_disk_ident(d, "vda", "qdev", "/machine/peripheral-anon/device[0]/virtio-backend",
                                              &err), 0);
    assert_int_equal(md_domain_set_disk_ident(d, "vda", "drive", "virtio0", &err), 0);
    assert_int_equal(md_domain_set_disk_ident(d, "vda", "arg", "4", &err), 0);
    assert_int_equal(md_domain_set_disk_ident(d, "sda", "qdev", "sda", &err), 0);
    assert_int_equal(md_domain_set_disk_ident(d, "vda", "colour", "x", &err), -1);
    assert_int_equal(err->code, QS_ERR_INVALID);
    qs_error_clear(&err);
    assert_int_equal(md_domain_set_process(d, "/srv", 1234, 99, &err), 0);
    assert_int_equal(md_domain_set_machine(d, "pc-q35-7.2", &err), 0);
    assert_int_equal(md_domain_disk_get(d, 0, &disk, &err), 0);
    assert_string_equal(disk.bus, "virtio");
    assert_string_equal(disk.drive, "virtio0");
    assert_string_equal(disk.arg, "4");
    assert_null(disk.node_name);
    assert_string_equal(md_domain_cwd(d), "/srv");
    md_domain_process(d, &pid, &start);
    assert_true(pid == 1234 && start == 99);
    /* every identity attribute removed: the entry goes; then the disk itself */
    assert_int_equal(md_domain_set_disk_ident(d, "sda", "qdev", NULL, &err), 0);
    assert_int_equal(md_domain_remove_disk(d, "vda", &err), 0);
    assert_int_equal(md_domain_disk_count(d), 1);
    assert_int_equal(md_domain_remove_disk(d, "vda", &err), -1);
    assert_int_equal(err->code, QS_ERR_NOTFOUND);
    qs_error_clear(&err);
    /* the files qsnap made: recorded, and left out of the copy a snapshot keeps */
    assert_int_equal(md_domain_set_made(d, "/srv/b.s1", true, &err), 0);
    assert_true(md_domain_made(d, "/srv/b.s1"));
    assert_false(md_domain_made(d, "/srv/b.qcow2"));
    out = md_domain_format_copy(d, &err);
    assert_null(strstr(out, "b.s1"));
    assert_non_null(strstr(out, "cwd='/srv'"));
    free(out);
    assert_int_equal(md_domain_set_made(d, "/srv/b.s1", false, &err), 0);
    assert_false(md_domain_made(d, "/srv/b.s1"));
    assert_int_equal(md_domain_set_process(d, NULL, 0, 0, &err), 0);
    assert_null(md_domain_cwd(d));
    out = md_domain_format(d, &err);
    assert_non_null(strstr(out, "machine='pc-q35-7.2'"));
    assert_null(strstr(out, "qsnap:disk"));
    assert_null(strstr(out, "<metadata>")); /* nothing of qsnap's left: no empty element either */
    assert_non_null(strstr(out, "<target dev='sda' bus='sata'/>"));
    free(out);
    md_domain_free(d);
}

/* A snapshot embeds a domain: the engine takes md_domain_format() output as domain_xml. */
/* A clone's own name and uuid; a bad name changes nothing. */
static void test_domain_new_identity(void **state)
{
    struct qs_error *err = NULL;
    struct md_domain *d = md_domain_new("web", "0c1d2e3f-4a5b-4c6d-8e7f-001122334455", 1024, 1, &err);
    char *xml, *uuid;
    (void)state;

    assert_non_null(d);
    assert_int_equal(md_domain_set_identity(d, "web-2", NULL, &err), 0);
    assert_string_equal(md_domain_name(d), "web-2");
    assert_non_null(md_domain_uuid(d));
    assert_string_not_equal(md_domain_uuid(d), "0c1d2e3f-4a5b-4c6d-8e7f-001122334455");
    assert_int_equal(strlen(md_domain_uuid(d)), 36);
    uuid = qs_xstrdup(md_domain_uuid(d));
    assert_int_equal(md_domain_set_identity(d, "a/b", NULL, &err), -1);
    assert_int_equal(err->code, QS_ERR_INVALID);
    qs_error_clear(&err);
    assert_string_equal(md_domain_name(d), "web-2");
    assert_string_equal(md_domain_uuid(d), uuid);
    assert_int_equal(md_domain_set_identity(d, "web-3", "11111111-2222-4333-8444-555555555555", &err), 0);
    xml = md_domain_format(d, &err);
    assert_non_null(strstr(xml, "<name>web-3</name>\n  <uuid>11111111-2222-4333-8444-555555555555</uuid>"));
    free(xml);
    free(uuid);
    md_domain_free(d);
}

/* UEFI firmware as libvirt records it, qsnap's data on the variables beside; removed without a trace. */
static void test_domain_nvram(void **state)
{
    struct qs_error *err = NULL;
    struct md_domain *d = md_domain_new("web", "0c1d2e3f-4a5b-4c6d-8e7f-001122334455", 1024, 1, &err);
    struct md_domain_nvram nv = {"/usr/share/OVMF/OVMF_CODE_4M.fd", "/vm/web_VARS.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd",
                                 "raw", "7", "pflash1", NULL}, got;
    char *xml;
    (void)state;

    assert_int_equal(md_domain_nvram_get(d, &got), 0);
    assert_int_equal(md_domain_set_nvram(d, &nv, &err), 0);
    assert_int_equal(md_domain_nvram_get(d, &got), 1);
    assert_string_equal(got.loader, nv.loader);
    assert_string_equal(got.file, nv.file);
    assert_string_equal(got.templ, nv.templ);
    assert_string_equal(got.format, "raw");
    assert_string_equal(got.arg, "7");
    assert_string_equal(got.drive, "pflash1");
    assert_null(got.node_name);
    xml = md_domain_format(d, &err);
    assert_non_null(strstr(xml, "    <type arch='x86_64' machine='pc'>hvm</type>\n"
                                "    <loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.fd</loader>\n"
                                "    <nvram template='/usr/share/OVMF/OVMF_VARS_4M.fd'>/vm/web_VARS.fd</nvram>\n"
                                "  </os>"));
    assert_non_null(strstr(xml, "<qsnap:nvram format='raw' arg='7' drive='pflash1'/>"));
    free(xml);
    /* its own strings given back: a change of one field (the clone's file) */
    got.file = "/vm/web2_VARS.fd";
    assert_int_equal(md_domain_set_nvram(d, &got, &err), 0);
    assert_int_equal(md_domain_nvram_get(d, &got), 1);
    assert_string_equal(got.file, "/vm/web2_VARS.fd");
    assert_string_equal(got.loader, nv.loader);
    assert_int_equal(md_domain_set_nvram(d, NULL, &err), 0);
    assert_int_equal(md_domain_nvram_get(d, &got), 0);
    xml = md_domain_format(d, &err);
    assert_null(strstr(xml, "loader"));
    assert_null(strstr(xml, "nvram"));
    assert_null(strstr(xml, "<metadata>"));
    free(xml);
    md_domain_free(d);
}

static void test_snapshot_with_domain(void **state)
{
    struct qs_error *err = NULL;
    struct md_domain *d = parse_domain_file("in/domain-libvirt.xml", NULL);
    struct md_snapshot *s = parse_file("in/libvirt-shutoff.xml", MD_PARSE_ON_DISK), *s2;
    char *dx = md_domain_format(d, &err), *x1, *x2;
    (void)state;

    /* the definition file has a comment header; a snapshot's <domain> starts at the element */
    free(s->domain_xml);
    s->domain_xml = qs_xstrdup(strstr(dx, "<domain"));
    s->domain_xml[strlen(s->domain_xml) - 1] = '\0'; /* no final newline */
    x1 = md_snapshot_format(s, MD_FORMAT_ON_DISK, &err);
    {
        char *path = t_data_path("in/libvirt-shutoff.xml");
        size_t len;
        char *want = t_read(path, &len);
        assert_string_equal(x1, want);
        free(want);
        free(path);
    }
    s2 = md_snapshot_parse(x1, strlen(x1), MD_PARSE_ON_DISK, &err);
    x2 = md_snapshot_format(s2, MD_FORMAT_ON_DISK, &err);
    assert_string_equal(x1, x2);
    free(x1);
    free(x2);
    free(dx);
    md_snapshot_free(s);
    md_snapshot_free(s2);
    md_domain_free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_snapshot_golden),   cmocka_unit_test(test_snapshot_fields),
        cmocka_unit_test(test_snapshot_build_and_copy), cmocka_unit_test(test_enums),
        cmocka_unit_test(test_bad_documents),     cmocka_unit_test(test_validate),
        cmocka_unit_test(test_reindent),          cmocka_unit_test(test_domain_round_trip),
        cmocka_unit_test(test_domain_new),        cmocka_unit_test(test_snapshot_with_domain),
        cmocka_unit_test(test_domain_identity),   cmocka_unit_test(test_domain_new_identity),
        cmocka_unit_test(test_domain_nvram),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
