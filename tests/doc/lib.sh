# lib.sh: shared by the tests/doc checks - failure reporting, `qsnap help` parsing, a state directory fixture.
# Sourced with QSNAP (the binary) set.

failures=0

fail()
{
    printf 'FAIL: %s\n' "$*" >&2
    failures=$((failures + 1))
}

# Exits with the verdict: 0 when nothing failed.
finish()
{
    if ((failures)); then
        printf '%d check(s) failed\n' "$failures" >&2
        exit 1
    fi
    printf 'ok\n'
    exit 0
}

# The commands `qsnap help` lists, one a line.
help_commands()
{
    "$QSNAP" help | awk '/^ [A-Za-z]+ commands:$/ { on = 1; next } /^$/ { on = 0 } on { print $1 }'
}

# The options `qsnap help CMD` lists, one a line: "--name", or "name" for one that may be positional
# (shown as "[--name] <string>").
help_options()
{
    "$QSNAP" help "$1" | awk '
        /^  OPTIONS$/ { on = 1; next }
        on && /^    \[--[a-z0-9-]+\] / { s = $1; gsub(/[][]|--/, "", s); print s; next }
        on && /^    --[a-z0-9-]+/ { print $1 }'
}

# A libvirt <domain> document: name $1, uuid $2, one qcow2 disk vda in directory $3 (need not exist).
fixture_domain_xml()
{
    printf "<domain type='kvm'>\n  <name>%s</name>\n  <uuid>%s</uuid>\n  <memory unit='KiB'>65536</memory>\n" \
        "$1" "$2"
    printf "  <devices>\n    <disk type='file' device='disk'>\n      <driver name='qemu' type='qcow2'/>\n"
    printf "      <source file='%s/%s.qcow2'/>\n      <target dev='vda' bus='virtio'/>\n" "$3" "$1"
    printf "    </disk>\n  </devices>\n</domain>\n"
}

# Creates a state directory under $1 with domains "web" and "vm one" and snapshots of "web" named "base",
# "with space", "a:b" and "after" (metadata only, through --redefine: no QEMU needed). Prints its path.
make_fixture()
{
    local dir=$1 root=$1/root name
    local web_uuid=6f1b5c2e-5d0a-4a47-9b1e-2f6c1d0e8a01

    fixture_domain_xml web "$web_uuid" "$dir" >"$dir/web.xml"
    fixture_domain_xml "vm one" 6f1b5c2e-5d0a-4a47-9b1e-2f6c1d0e8a02 "$dir" >"$dir/vm-one.xml"
    "$QSNAP" -q --root "$root" define "$dir/web.xml" >/dev/null || return 1
    "$QSNAP" -q --root "$root" define "$dir/vm-one.xml" >/dev/null || return 1
    for name in base "with space" "a:b" after; do
        {
            printf "<domainsnapshot>\n  <name>%s</name>\n  <description>fixture</description>\n" "$name"
            printf "  <state>shutoff</state>\n  <creationTime>1700000000</creationTime>\n"
            printf "  <memory snapshot='no'/>\n  <disks>\n    <disk name='vda' snapshot='internal'/>\n  </disks>\n"
            fixture_domain_xml web "$web_uuid" "$dir"
            printf "</domainsnapshot>\n"
        } >"$dir/snap.xml"
        "$QSNAP" -q --root "$root" snapshot-create web "$dir/snap.xml" --redefine || return 1
    done
    printf '%s\n' "$root"
}

# Tool $1 (package $2) is there; when it is not: under $QSNAP_REQUIRE_QEMU=1 (scripts/test, CI) a failure,
# else the check skips (ctest's SKIP_RETURN_CODE 77).
need_tool()
{
    command -v "$1" >/dev/null && return 0
    if [[ ${QSNAP_REQUIRE_QEMU:-} == 1 ]]; then
        printf 'FAIL: %s is missing (package %s), and $QSNAP_REQUIRE_QEMU=1 makes that a failure\n' "$1" "$2" >&2
        exit 1
    fi
    printf 'SKIP: %s is missing (apt-get install %s)\n' "$1" "$2"
    exit 77
}

# The same for a part of a check: returns 1 (the part is not run, and says so) instead of skipping all.
have_tool()
{
    command -v "$1" >/dev/null && return 0
    if [[ ${QSNAP_REQUIRE_QEMU:-} == 1 ]]; then
        fail "$1 is missing (package $2), and \$QSNAP_REQUIRE_QEMU=1 makes that a failure"
        return 1
    fi
    printf 'not checked: %s is missing (apt-get install %s)\n' "$1" "$2"
    return 1
}
