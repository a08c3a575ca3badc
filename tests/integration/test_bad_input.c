/* test_bad_input.c: bad input everywhere: each case fails cleanly and changes nothing (label integration). */
#include "qsnap_test.h"

#include "md.h"

#include "qs_util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define MiB (1024u * 1024u)

static int n_bad; /* every bad input tried, printed at the end */

/* ------------------------------------------------------------------------------------------------ */
/* What "nothing changed" means: the bytes of every file under --root (but run/, the lock files) and of the
 * images the test names. */

static void fnv(uint64_t *h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        *h ^= b[i];
        *h *= 0x100000001b3ull;
    }
}

/* Appends "PATH HASH\n" for the file at PATH to *m. */
static void manifest_file(char **m, const char *path)
{
    uint64_t h = 0xcbf29ce484222325ull;
    char buf[65536], *old = *m;
    ssize_t n;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd >= 0) {
        while ((n = read(fd, buf, sizeof(buf))) > 0)
            fnv(&h, buf, (size_t)n);
        close(fd);
    }
    *m = qs_asprintf("%s%s %s%016llx\n", old, path, fd < 0 ? "missing " : "", (unsigned long long)h);
    free(old);
}

/* The intent record of the domain whose snapshot directory is DIR, as "pending"/"none": its file is kept
 * once made and cleared in place, so its bytes change with every operation, refused ones too. */
static void manifest_intent(char **m, const char *dir, const char *path)
{
    char *root = qs_xstrdup(dir), *domain = strrchr(root, '/'), *snap, *text = NULL, *old = *m;
    struct qs_error *err = NULL;
    struct md_store *st;

    *domain++ = '\0';
    snap = strrchr(root, '/');
    *snap = '\0'; /* ROOT/snapshot/DOM -> ROOT */
    st = md_store_open(root, &err);
    if (!st || md_store_intent_get(st, domain, &text, &err) < 0)
        fail_msg("cannot read the intent record in '%s': %s", dir, err ? err->message : "?");
    *m = qs_asprintf("%s%s %s\n", old, path, text ? "pending" : "none");
    free(old);
    free(text);
    md_store_free(st);
    free(root);
}

static void manifest_tree(char **m, const char *dir, int depth)
{
    struct dirent **ents = NULL;
    int n = scandir(dir, &ents, NULL, alphasort);

    for (int i = 0; i < n; i++) {
        const char *name = ents[i]->d_name;
        char *path = qs_asprintf("%s/%s", dir, name), *old;
        struct stat st;
        /* run/ holds the lock files; .qsnap-index is the listing cache, rewritten by reads as it ages; events/
         * is the event log, which records failed attempts too */
        if (strcmp(name, ".") != 0 && strcmp(name, "..") != 0 && !(depth == 0 && strcmp(name, "run") == 0) &&
            !(depth == 0 && strcmp(name, "events") == 0) &&
            strcmp(name, ".qsnap-index") != 0 && lstat(path, &st) == 0) {
            if (S_ISDIR(st.st_mode)) {
                old = *m;
                *m = qs_asprintf("%s%s/ %o\n", old, path, (unsigned)st.st_mode);
                free(old);
                manifest_tree(m, path, depth + 1);
            } else if (strcmp(name, ".qsnap-intent") == 0) {
                manifest_intent(m, dir, path);
            } else {
                manifest_file(m, path);
            }
        }
        free(path);
        free(ents[i]);
    }
    free(ents);
}

#define MAX_IMAGES 8
static const char *images[MAX_IMAGES]; /* extra files whose bytes must not change; NULL-terminated */

/* Every file under --root (but run/, the lock files) and every image, with a hash of its bytes. */
static char *state_manifest(struct qt_fixture *f)
{
    char *m = qs_xstrdup("");

    manifest_tree(&m, f->root, 0);
    manifest_file(&m, qh_vm_disk_path(f->vm, "vda"));
    manifest_file(&m, qh_vm_disk_path(f->vm, "vdb"));
    for (int i = 0; i < MAX_IMAGES && images[i]; i++)
        manifest_file(&m, images[i]);
    return m;
}

/* Prints the manifest lines only one side has. */
static void print_changes(const char *before, const char *after)
{
    const char *sides[2][2] = {{before, after}, {after, before}};

    print_error("state CHANGED:\n");
    for (int k = 0; k < 2; k++) {
        for (const char *l = sides[k][0], *e; *l; l = e + 1) {
            char *line;
            e = strchr(l, '\n');
            line = qs_xstrndup(l, (size_t)(e - l) + 1);
            if (!strstr(sides[k][1], line))
                print_error("%s %s", k == 0 ? "-" : "+", line);
            free(line);
        }
    }
}

/* ------------------------------------------------------------------------------------------------ */

/*
 * BAD(f, status, want, args...): qsnap ARGS must exit STATUS with stderr exactly WANT (but its last newline) - "@DIR@"
 * in WANT stands for the VM's directory, and "*" for text QEMU or libxml2 words (it differs between their
 * versions), as in fnmatch(3) -, change no byte under --root nor in the images, and leave the VM running.
 * Where virsh has the same case its text is noted: [virsh] the same, [virsh: ...] how it differs.
 */
#define BAD(f, status, want, ...) bad_(f, __FILE__, __LINE__, status, want, NULL, __VA_ARGS__, (char *)NULL)
/* The same where either of two texts is right (ALT: an outcome that depends on how fast the machine is). */
#define BAD2(f, status, want, alt, ...) bad_(f, __FILE__, __LINE__, status, want, alt, __VA_ARGS__, (char *)NULL)

/* Whether ERROUT is WANT with "@DIR@" put in for DIR and "*" matching any text. */
static bool error_matches(const char *want, const char *dir, const char *errout)
{
    char *full = qs_xstrdup(""), *old;
    const char *at;
    bool ok;

    for (const char *w = want; *w; w = at ? at + 5 : w + strlen(w)) {
        at = strstr(w, "@DIR@");
        old = full;
        full = at ? qs_asprintf("%s%.*s%s", old, (int)(at - w), w, dir) : qs_asprintf("%s%s", old, w);
        free(old);
    }
    ok = fnmatch(full, errout, FNM_NOESCAPE) == 0;
    free(full);
    return ok;
}

static void bad_(struct qt_fixture *f, const char *file, int line, int status, const char *want, const char *alt,
                 ...)
{
    char *argv[32] = {NULL};
    char *out = NULL, *errout = NULL;
    char *before = state_manifest(f), *after;
    va_list ap;
    int n = 0, rc;
    bool ok;

    va_start(ap, alt);
    while (n < 31 && (argv[n] = va_arg(ap, char *)) != NULL)
        n++;
    argv[n] = NULL;
    va_end(ap);
    /* qt_qsnap_run takes a fixed list: pass up to 12 arguments */
    assert_true(n <= 12);
    rc = qt_qsnap_run(f, &out, &errout, argv[0], argv[1], argv[2], argv[3], argv[4], argv[5], argv[6], argv[7],
                      argv[8], argv[9], argv[10], argv[11], (char *)NULL);
    n_bad++;
    after = state_manifest(f);
    /* (qt_qsnap_run took the last newline off stderr) */
    ok = error_matches(want, qh_vm_dir(f->vm), errout) || (alt && error_matches(alt, qh_vm_dir(f->vm), errout));
    if (rc != status || !ok || strcmp(before, after) != 0) {
        print_error("%s:%d: qsnap %s %s: status %d (wanted %d), stderr:\n'%.600s'\nwanted:\n'%s'\n", file, line,
                    argv[0], n > 1 ? argv[1] : "", rc, status, errout, want);
        if (strcmp(before, after) != 0)
            print_changes(before, after);
        _fail(file, line);
    }
    free(before);
    free(after);
    /* an error goes to stderr only; stdout carries at most virsh's empty line */
    if (strspn(out, "\n") != strlen(out)) {
        print_error("%s:%d: qsnap %s printed to stdout: '%.200s'\n", file, line, argv[0], out);
        _fail(file, line);
    }
    assert_int_equal(kill(qh_vm_pid(f->vm), 0), 0);
    qt_assert_status(qh_vm_qmp(f->vm), "running");
    free(out);
    free(errout);
}

static char *write_tmp(struct qt_fixture *f, const char *name, const void *data, size_t len)
{
    char *path = qt_path_in(f, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
    return path;
}

static char *write_str(struct qt_fixture *f, const char *name, const char *text)
{
    return write_tmp(f, name, text, strlen(text));
}

static void run_ok(const char *cmd)
{
    int rc = system(cmd);
    if (rc != 0)
        print_error("'%s' failed: %d\n", cmd, rc);
    assert_int_equal(rc, 0);
}

/* ------------------------------------------------------------------------------------------------ */

/* Command lines that are wrong: usage errors exit 2, refused names exit 1; nothing moves. */
static void test_bad_command_lines(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    char big[4097], ctl[] = "a\001b", tab[] = "a\tb", utf[] = "bad\xff\xfeutf8", nl[] = "a\nb";

    qt_attach(f);
    free(QSNAP_OK(f, "snapshot-create-as", "vm", "keep"));
    memset(big, 'n', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';

    /* usage errors: virsh's words exactly ([virsh]: tests/cli/golden has them too); exit 2 where virsh says 1 */
    BAD(f, 2, "error: unknown command: 'no-such-command'", "no-such-command"); /* [virsh] */
    BAD(f, 2, "error: unknown command: 'snapshot-creat'", "snapshot-creat", "vm"); /* [virsh] */
    BAD(f, 2, "error: unknown command: ''", ""); /* [virsh] */
    BAD(f, 2, "error: command 'snapshot-list' doesn't support option --bogus", "snapshot-list", "vm",
        "--bogus"); /* [virsh] */
    BAD(f, 2, "error: command 'snapshot-create-as' doesn't support option --no-such", "snapshot-create-as", "vm",
        "x", "--no-such"); /* [virsh] */
    BAD(f, 2, "error: command 'snapshot-list' requires <domain> option", "snapshot-list"); /* [virsh] */
    BAD(f, 2, "error: command 'attach' requires <qmp> option", "attach", "x");
    BAD(f, 2, "error: expected syntax: --qmp <string>", "attach", "x", "--qmp");
    BAD(f, 2, "error: expected syntax: --name <string>", "snapshot-create-as", "vm", "--name"); /* [virsh] */
    BAD(f, 2, "error: option --domain already seen", "snapshot-list", "--domain", "vm", "--domain",
        "vm"); /* [virsh] */
    BAD(f, 2, "error: option --name already seen", "snapshot-create-as", "vm", "--name", "a", "--name",
        "b"); /* [virsh] */
    BAD(f, 2, "error: unexpected data 'extra2'", "snapshot-list", "vm", "extra1", "extra2"); /* [virsh] */
    BAD(f, 2, "error: unexpected data 'more'", "snapshot-delete", "vm", "keep", "more", "andmore"); /* [virsh] */
#define LOCK_NUMBER "error: --lock-timeout must be a number of milliseconds from 0 to 86400000, not "
    BAD(f, 2, LOCK_NUMBER "'abc'", "--lock-timeout", "abc", "list");
    BAD(f, 2, LOCK_NUMBER "'-1'", "--lock-timeout", "-1", "list");
    BAD(f, 2, LOCK_NUMBER "'99999999999999999999999'", "--lock-timeout", "99999999999999999999999", "list");
    BAD(f, 2, LOCK_NUMBER "'12abc'", "--lock-timeout", "12abc", "list");

    /* names that would be paths, hidden files, control bytes, too long, not UTF-8 - [virsh: takes 'a/b' and
     * '.hidden', drops U+0001 from a name, and fails the XML parse of bad UTF-8: its names never become paths] */
    BAD(f, 1, "error: snapshot name 'a/b' must not contain '/'", "snapshot-create-as", "vm", "a/b");
    BAD(f, 1, "error: snapshot name '../../etc' must not start with '.'", "snapshot-create-as", "vm", "../../etc");
    BAD(f, 1, "error: snapshot name '.hidden' must not start with '.'", "snapshot-create-as", "vm", ".hidden");
    BAD(f, 1, "error: snapshot name must not contain control characters", "snapshot-create-as", "vm", ctl);
    BAD(f, 1, "error: snapshot name must not contain control characters", "snapshot-create-as", "vm", tab);
    BAD(f, 1, "error: snapshot name must not contain control characters", "snapshot-create-as", "vm", nl);
    BAD(f, 1, "error: snapshot name is longer than 200 bytes", "snapshot-create-as", "vm", big);
    BAD(f, 1, "error: snapshot name is not valid UTF-8", "snapshot-create-as", "vm", utf);
    BAD(f, 1, "error: domain name 'a/b' must not contain '/'", "attach", "a/b", "--qmp", qh_vm_socket_path(f->vm));
    BAD(f, 1, "error: domain name '.vm' must not start with '.'", "attach", ".vm", "--qmp",
        qh_vm_socket_path(f->vm));
    BAD(f, 1, "error: domain name must not contain control characters", "attach", ctl, "--qmp",
        qh_vm_socket_path(f->vm));
    BAD(f, 1, "error: domain name is longer than 200 bytes", "attach", big, "--qmp", qh_vm_socket_path(f->vm));
    BAD(f, 1, "error: domain name is not valid UTF-8", "attach", utf, "--qmp", qh_vm_socket_path(f->vm));
    BAD(f, 1, "error: domain name '../vm' must not start with '.'", "snapshot-info", "../vm", "keep");
    /* [virsh] for the three lookups */
    BAD(f, 1, "error: Domain snapshot not found: no domain snapshot with matching name '../keep'", "snapshot-info",
        "vm", "../keep");
    BAD(f, 1, "error: Domain snapshot not found: no domain snapshot with matching name '../../qemu/vm'",
        "snapshot-delete", "vm", "../../qemu/vm");
    {
        char *want = qs_asprintf("error: Domain snapshot not found: no domain snapshot with matching name '%s'", big);
        BAD(f, 1, want, "snapshot-revert", "vm", big);
        free(want);
    }
    /* [virsh: "error: unsupported configuration: no disk named 'vdz'", and for the location libvirt's XML
     * error "Invalid value for attribute 'snapshot' in element 'disk': 'bogus'."] */
    BAD(f, 1, "error: no disk named 'vdz'", "snapshot-create-as", "vm", "--diskspec", "vdz,snapshot=internal");
    BAD(f, 1, "error: invalid disk snapshot location 'bogus' for disk 'vda'", "snapshot-create-as", "vm",
        "--diskspec", "vda,snapshot=bogus");
}

/* XML given to snapshot-create and define that must be refused before anything happens. */
static void test_hostile_xml(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    const char *src = getenv("QSNAP_SOURCE_DIR");
    char *laughs, *xxe, *p, *big;
    size_t big_len = 17u * MiB;
#define PARSE "error: cannot parse snapshot XML: "
#define DOCTYPE "a DOCTYPE (DTD, entities) is not allowed"
    /* WANT for snapshot-create, WANT_REDEFINE for it with --redefine (NULL: the same). [virsh: libvirt's
     * parser errors come as "(domain_snapshot):LINE: MESSAGE" with the line and a caret under it, its XML errors
     * as "XML error: ...": e.g. "XML error: expecting root element of 'domainsnapshot', not 'domain'", "internal
     * error: missing creationTime from existing snapshot"] */
    struct {
        const char *name, *xml, *want, *want_redefine;
    } snap_cases[] = {
        {"malformed", "<domainsnapshot><name>x</name>",
         PARSE "line 1: Premature end of data in tag domainsnapshot line 1", NULL},
        {"empty", "", PARSE "line 1: Document is empty", NULL},
        {"not-xml", "\x7f" "ELF\x02\x01\x01 binary", PARSE "line 1: Start tag expected, '<' not found", NULL},
        {"wrong-root", "<domain type='qemu'><name>x</name></domain>",
         "error: expected a <domainsnapshot> document, found <domain>", NULL},
        {"bad-utf8", "<domainsnapshot><name>\xff\xfe</name></domainsnapshot>",
         PARSE "line 1: Input is not proper UTF-8, indicate encoding !\nBytes: 0xFF 0xFE 0x3C 0x2F", NULL},
        {"nul", "<domainsnapshot><name>a</name></domainsnapshot>\0<x/>",
         "error: file '@DIR@/snap.xml' contains a NUL byte: not an XML document", NULL},
        {"dtd", "<!DOCTYPE domainsnapshot SYSTEM 'http://example.invalid/x.dtd'><domainsnapshot/>", PARSE DOCTYPE,
         NULL},
        {"unknown-disk", "<domainsnapshot><name>d1</name><disks><disk name='vdz' snapshot='internal'/></disks>"
                         "</domainsnapshot>", "error: no disk named 'vdz'",
         "error: missing state from existing snapshot 'd1'"},
        {"dup-disk", "<domainsnapshot><name>d2</name><disks><disk name='vda' snapshot='internal'/>"
                     "<disk name='vda' snapshot='internal'/></disks></domainsnapshot>",
         "error: disk 'vda' specified twice (snapshot 'd2')", "error: missing state from existing snapshot 'd2'"},
        {"bad-location", "<domainsnapshot><name>d3</name><memory snapshot='sideways'/></domainsnapshot>",
         "error: invalid memory snapshot location 'sideways'", NULL},
        {"bad-state", "<domainsnapshot><name>d4</name><state>dancing</state></domainsnapshot>",
         "error: invalid state 'dancing' in domain snapshot XML", NULL},
        {"slash-name", "<domainsnapshot><name>a/b</name></domainsnapshot>",
         "error: snapshot name 'a/b' must not contain '/'", NULL},
        {"dot-name", "<domainsnapshot><name>.a</name></domainsnapshot>",
         "error: snapshot name '.a' must not start with '.'", NULL},
        {"ctl-name", "<domainsnapshot><name>a&#x1;b</name></domainsnapshot>",
         PARSE "line 1: xmlParseCharRef: invalid xmlChar value 1", NULL},
        {"rel-memfile", "<domainsnapshot><name>d5</name><memory snapshot='external' file='rel/mem'/>"
                        "</domainsnapshot>", "error: memory snapshot file path 'rel/mem' must be absolute (snapshot 'd5')",
         "error: missing state from existing snapshot 'd5'"},
    };
    /* [virsh: "error: Failed to define domain from FILE" first, then libvirt's words: "missing name
     * information", "(domain_definition):1: Document is empty", ...] */
    struct {
        const char *name, *xml, *want;
    } dom_cases[] = {
        {"d-malformed", "<domain type='qemu'><name>x</name>",
         "error: cannot parse domain XML: line 1: Premature end of data in tag domain line 1"},
        {"d-empty", "", "error: cannot parse domain XML: line 1: Document is empty"},
        {"d-wrong-root", "<domainsnapshot><name>x</name></domainsnapshot>",
         "error: expected a <domain> document, found <domainsnapshot>"},
        {"d-no-name", "<domain type='qemu'><memory>65536</memory></domain>", "error: the domain XML has no <name>"},
        {"d-slash-name", "<domain type='qemu'><name>a/b</name></domain>", "error: domain name 'a/b' must not contain '/'"},
        {"d-dot-name", "<domain type='qemu'><name>.a</name></domain>", "error: domain name '.a' must not start with '.'"},
        {"d-bad-utf8", "<domain type='qemu'><name>\xc3\x28</name></domain>",
         "error: cannot parse domain XML: line 1: Input is not proper UTF-8, indicate encoding !\nBytes: 0xC3 0x28 "
         "0x3C 0x2F"},
    };

    qt_attach(f);
    assert_non_null(src);
    p = qs_asprintf("%s/tests/md/data/bad/billion-laughs.xml", src);
    laughs = p;
    xxe = qs_asprintf("%s/tests/md/data/bad/xxe.xml", src);
    /* more than the 16 MiB any metadata file may have, well-formed */
    big = qs_xmalloc(big_len);
    memset(big, ' ', big_len);
    memcpy(big, "<domainsnapshot><name>big</name><description>", 45);
    memcpy(big + big_len - 32, "</description></domainsnapshot>\n", 32);
    p = write_tmp(f, "big.xml", big, big_len);
    free(big);

    BAD(f, 1, PARSE DOCTYPE, "snapshot-create", "vm", "--xmlfile", laughs);
    BAD(f, 1, PARSE DOCTYPE, "snapshot-create", "vm", "--xmlfile", xxe);
    BAD(f, 1, "error: '@DIR@/big.xml' is larger than 16777216 bytes", "snapshot-create", "vm", "--xmlfile", p);
    BAD(f, 1, PARSE DOCTYPE, "snapshot-create", "vm", "--xmlfile", laughs, "--redefine");
    BAD(f, 1, "error: Failed to open file '/nonexistent/snap.xml': No such file or directory", "snapshot-create",
        "vm", "--xmlfile", "/nonexistent/snap.xml"); /* [virsh] */
    BAD(f, 1, "error: cannot parse domain XML: " DOCTYPE, "define", "--file", laughs);
    BAD(f, 1, "error: cannot parse domain XML: " DOCTYPE, "define", "--file", xxe);
    BAD(f, 1, "error: '@DIR@/big.xml' is larger than 16777216 bytes", "define", "--file", p);
    BAD(f, 1, "error: Failed to open file '/nonexistent/dom.xml': No such file or directory", "define", "--file",
        "/nonexistent/dom.xml"); /* [virsh] */
    free(p);
    for (size_t i = 0; i < sizeof(snap_cases) / sizeof(snap_cases[0]); i++) {
        /* the "nul" case carries its bytes past the NUL */
        size_t len = strcmp(snap_cases[i].name, "nul") == 0 ? 53 : strlen(snap_cases[i].xml);
        print_message("snapshot XML: %s\n", snap_cases[i].name);
        p = write_tmp(f, "snap.xml", snap_cases[i].xml, len);
        BAD(f, 1, snap_cases[i].want, "snapshot-create", "vm", "--xmlfile", p);
        BAD(f, 1, snap_cases[i].want_redefine ? snap_cases[i].want_redefine : snap_cases[i].want, "snapshot-create",
            "vm", "--xmlfile", p, "--redefine");
        free(p);
    }
    for (size_t i = 0; i < sizeof(dom_cases) / sizeof(dom_cases[0]); i++) {
        print_message("domain XML: %s\n", dom_cases[i].name);
        p = write_str(f, "dom.xml", dom_cases[i].xml);
        BAD(f, 1, dom_cases[i].want, "define", "--file", p);
        free(p);
    }
    free(laughs);
    free(xxe);
}

/* ------------------------------------------------------------------------------------------------ */
/* A UNIX socket that is not QEMU. */

enum fake_mode { FAKE_GARBAGE, FAKE_HTTP, FAKE_SILENT, FAKE_GREETING_GARBAGE, FAKE_BAD_GREETING, FAKE_HUGE };

struct fake_server {
    int fd;
    char *path;
    volatile enum fake_mode mode;
    volatile int stop;
    pthread_t thread;
};

#define GREETING "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, \"package\": \"\"}, " \
                 "\"capabilities\": []}}\r\n"

static void send_all(int fd, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        if (w <= 0)
            return;
        s += w;
        n -= (size_t)w;
    }
}

/* Reads until the client goes away (bounded: a client that stays 30 s is a hang the test reports). */
static void drain(int fd)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    char buf[4096];

    while (poll(&pfd, 1, 30000) > 0 && recv(fd, buf, sizeof(buf), 0) > 0)
        ;
}

static void fake_serve(int c, enum fake_mode mode)
{
    static const char http[] = "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 5\r\n\r\nhello";
    static const char garbage[] = "\x00\x01\x02garbage}}]]{{\r\n\xff\xfe";
    char buf[4096];

    switch (mode) {
    case FAKE_GARBAGE:
        send_all(c, garbage, sizeof(garbage));
        break;
    case FAKE_HTTP:
        send_all(c, http, strlen(http));
        break;
    case FAKE_SILENT:
        break;
    case FAKE_GREETING_GARBAGE:
        send_all(c, GREETING, strlen(GREETING));
        (void)recv(c, buf, sizeof(buf), 0); /* qmp_capabilities */
        send_all(c, "this is not json\r\n", 18);
        break;
    case FAKE_BAD_GREETING:
        send_all(c, "{\"QMP\": {\"version\": \"seven\"}}\r\n", 31);
        break;
    case FAKE_HUGE: {
        /* one string that never ends, up to 80 MiB (the client's cap is 64 MiB) */
        char *chunk = qs_xmalloc(MiB);
        memset(chunk, 'a', MiB);
        send_all(c, "{\"QMP\": \"", 9);
        for (int i = 0; i < 80; i++) {
            ssize_t w = send(c, chunk, MiB, MSG_NOSIGNAL);
            if (w <= 0)
                break;
        }
        free(chunk);
        break;
    }
    }
    drain(c);
}

static void *fake_main(void *opaque)
{
    struct fake_server *s = opaque;

    while (!s->stop) {
        int c = accept4(s->fd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0)
            continue;
        fake_serve(c, s->mode);
        close(c);
    }
    return NULL;
}

static void fake_start(struct fake_server *s, const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};

    s->path = qs_xstrdup(path);
    assert_true(strlen(path) < sizeof(sa.sun_path));
    strcpy(sa.sun_path, path);
    unlink(path);
    s->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(s->fd >= 0);
    assert_int_equal(bind(s->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(s->fd, 8), 0);
    assert_int_equal(pthread_create(&s->thread, NULL, fake_main, s), 0);
}

static void fake_stop(struct fake_server *s)
{
    s->stop = 1;
    shutdown(s->fd, SHUT_RDWR);
    pthread_join(s->thread, NULL);
    close(s->fd);
    unlink(s->path);
    free(s->path);
}

/* A minimal definition of NAME with one qcow2 disk vda on IMAGE; uuids differ by IDX. */
static char *domain_xml(const char *name, unsigned idx, const char *image)
{
    return qs_asprintf("<domain type='qemu'>\n  <name>%s</name>\n  <uuid>5f0e2a44-6b1c-4d2e-9f30-%012x</uuid>\n  <memory unit='KiB'>65536</memory>\n"
                       "  <vcpu>1</vcpu>\n  <os>\n    <type arch='x86_64' machine='pc'>hvm</type>\n  </os>\n"
                       "  <devices>\n    <disk type='file' device='disk'>\n"
                       "      <driver name='qemu' type='qcow2'/>\n      <source file='%s'/>\n"
                       "      <target dev='vda' bus='virtio'/>\n    </disk>\n  </devices>\n</domain>\n",
                       name, idx, image);
}

static void test_socket_not_qemu(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
#define ON_FAKE "'@DIR@/fake.qmp'"
    /* WHY: what qsnap says of the peer; "domain 'fake': " comes first for a defined domain's commands. The
     * parser's words ("unexpected end of data") are json-c's. */
    static const struct {
        enum fake_mode mode;
        const char *what, *why;
    } modes[] = {
        {FAKE_GARBAGE, "garbage", "QEMU sent invalid JSON on " ON_FAKE ": unexpected end of data"},
        {FAKE_HTTP, "http", "QEMU sent invalid JSON on " ON_FAKE ": unexpected character"},
        /* the wait is what was left of the connect's 5 s: 4999 ms, say */
        {FAKE_SILENT, "silent", "QMP socket " ON_FAKE " gave no greeting within * ms: is another client connected?"},
        {FAKE_GREETING_GARBAGE, "greet+garbage",
         "cannot negotiate QMP capabilities on " ON_FAKE ": QEMU sent invalid JSON on " ON_FAKE ": boolean expected"},
        {FAKE_BAD_GREETING, "bad greeting", "QMP socket " ON_FAKE " sent no QMP greeting with a QEMU version"},
        {FAKE_HUGE, "huge line", "QMP message on " ON_FAKE " is larger than 67108864 bytes"},
    };
    /* a slow qsnap (valgrind, a loaded machine) reads less than the 64 MiB cap of the huge greeting before the
     * connect's 5 s are over */
    static const char slow_huge[] = "QMP socket " ON_FAKE " gave no greeting within * ms: is another client connected?";
    struct fake_server s = {0};
    char *sock = qt_path_in(f, "fake.qmp"), *img = qt_path_in(f, "fake.qcow2"), *xml, *file, *cmd;
    char *snap = write_str(f, "fake-snap.xml", "<domainsnapshot><name>s2</name></domainsnapshot>");

    qt_attach(f);
    cmd = qs_asprintf("qemu-img create -q -f qcow2 '%s' 16M", img);
    run_ok(cmd);
    free(cmd);
    images[0] = img;
    fake_start(&s, sock);
    xml = domain_xml("fake", 100, img);
    file = write_str(f, "fake.xml", xml);
    free(QSNAP_OK(f, "define", "--file", file, "--qmp", sock));
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        char *want = qs_asprintf("error: %s", modes[i].why);
        char *want_dom = qs_asprintf("error: domain 'fake': %s", modes[i].why);
        char *alt = modes[i].mode == FAKE_HUGE ? qs_asprintf("error: %s", slow_huge) : NULL;
        char *alt_dom = alt ? qs_asprintf("error: domain 'fake': %s", slow_huge) : NULL;

        print_message("fake QMP peer: %s\n", modes[i].what);
        s.mode = modes[i].mode;
        BAD2(f, 1, want, alt, "attach", "x", "--qmp", sock);
        BAD2(f, 1, want_dom, alt_dom, "snapshot-create-as", "fake", "s1");
        /* a snapshot document that parses, so that the socket is what fails */
        BAD2(f, 1, want_dom, alt_dom, "snapshot-create", "fake", "--xmlfile", snap);
        free(want), free(want_dom), free(alt), free(alt_dom);
    }
    fake_stop(&s);
    images[0] = NULL;
    free(xml);
    free(file);
    free(snap);
    free(sock);
    free(img);
}

/* ------------------------------------------------------------------------------------------------ */
/* Disk images that are not what the definition says, for an offline domain. */

static void test_bad_images(void **state)
{
    struct qt_fixture *f = qt_fixture_of(state);
    static const char *const kinds[] = {"raw", "garbage", "truncated", "nobacking"};
#define RAW "error: disk 'vda' is raw: internal snapshots need qcow2"
#define CUT "error: disk 'vda': *'@DIR@/img-truncated.qcow2'*" /* then QEMU's words */
#define GONE "'@DIR@/img-nobacking.qcow2.base'*"
    /* per kind: snapshot-create-as (and snapshot-create of a document), --disk-only (from "truncated" on),
     * revert and delete of "good" */
    static const char *const wants[][4] = {
        {RAW, NULL, "error: Failed to revert snapshot good\n" RAW, "error: Failed to delete snapshot good\n" RAW},
        {RAW, NULL, "error: Failed to revert snapshot good\n" RAW, "error: Failed to delete snapshot good\n" RAW},
        {CUT, CUT, "error: Failed to revert snapshot good\n" CUT, "error: Failed to delete snapshot good\n" CUT},
        {"error: disk 'vda': *" GONE, "error: disk 'vda': @DIR@/img-nobacking.s2: *" GONE,
         "error: Failed to revert snapshot good\nerror: internal snapshot 'good' not found on disk 'vda'",
         "error: Failed to delete snapshot good\nerror: internal snapshot 'good' not found on disk 'vda'"},
    };
    char *snap = write_str(f, "img-snap.xml", "<domainsnapshot><name>s3</name></domainsnapshot>");

    qt_attach(f);
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        char name[32], *img, *xml, *file, *cmd;

        snprintf(name, sizeof(name), "img-%s", kinds[i]);
        img = qs_asprintf("%s/%s.qcow2", qh_vm_dir(f->vm), name);
        cmd = qs_asprintf("qemu-img create -q -f qcow2 '%s' 16M", img);
        run_ok(cmd);
        free(cmd);
        xml = domain_xml(name, (unsigned)i, img);
        file = write_str(f, "img.xml", xml);
        free(QSNAP_OK(f, "define", "--file", file));
        /* a snapshot while the image is good, to revert to once it is not */
        free(QSNAP_OK(f, "snapshot-create-as", name, "good"));
        assert_true(qt_image_has_tag(img, "good"));
        switch (i) {
        case 0: /* raw bytes where qcow2 was promised */
            cmd = qs_asprintf("rm -f '%s' && qemu-img create -q -f raw '%s' 1M", img, img);
            break;
        case 1:
            cmd = qs_asprintf("head -c 65536 /dev/urandom > '%s'", img);
            break;
        case 2: /* a qcow2 header cut short */
            cmd = qs_asprintf("truncate -s 40 '%s'", img);
            break;
        default: /* a qcow2 whose backing file is gone */
            cmd = qs_asprintf("rm -f '%s' && qemu-img create -q -f qcow2 '%s.base' 16M && "
                              "qemu-img create -q -f qcow2 -b '%s.base' -F qcow2 '%s' && rm -f '%s.base'",
                              img, img, img, img, img);
            break;
        }
        run_ok(cmd);
        free(cmd);
        images[0] = img;
        BAD(f, 1, wants[i][0], "snapshot-create-as", name, "s1");
        if (i >= 2) /* an overlay on raw (or random) bytes is fine: external snapshots need no qcow2 below */
            BAD(f, 1, wants[i][1], "snapshot-create-as", name, "s2", "--disk-only");
        BAD(f, 1, wants[i][2], "snapshot-revert", name, "good");
        BAD(f, 1, wants[i][3], "snapshot-delete", name, "good");
        /* a snapshot document that parses, so that the image is what fails */
        BAD(f, 1, wants[i][0], "snapshot-create", name, "--xmlfile", snap);
        images[0] = NULL;
        free(xml);
        free(file);
        free(img);
    }
    free(snap);
}

static struct qt_fixture f_cli = {.cfg = &qt_cfg_two_disks};
static struct qt_fixture f_xml = {.cfg = &qt_cfg_two_disks};
static struct qt_fixture f_sock = {.cfg = &qt_cfg_two_disks};
static struct qt_fixture f_img = {.cfg = &qt_cfg_two_disks};

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_prestate_setup_teardown(test_bad_command_lines, qt_setup, qt_teardown, &f_cli),
        cmocka_unit_test_prestate_setup_teardown(test_hostile_xml, qt_setup, qt_teardown, &f_xml),
        cmocka_unit_test_prestate_setup_teardown(test_socket_not_qemu, qt_setup, qt_teardown, &f_sock),
        cmocka_unit_test_prestate_setup_teardown(test_bad_images, qt_setup, qt_teardown, &f_img),
    };
    int rc;

    signal(SIGPIPE, SIG_IGN);
    if (getenv("QSNAP_TEST_FILTER")) /* e.g. "*images*": the valgrind run takes a part */
        cmocka_set_test_filter(getenv("QSNAP_TEST_FILTER"));
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    printf("bad inputs tried: %d\n", n_bad);
    return rc;
}
