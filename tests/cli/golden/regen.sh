#!/bin/bash
# regen.sh: regenerates the virsh 9.0 golden files (NAME.cmd/.out/.err/.rc) from cases.txt with the test driver.
#
# Usage: tests/cli/golden/regen.sh [CASE...]      (no argument: every case)
# Needs virsh (libvirt-clients). Review the result as a diff: `git diff tests/cli/golden`.
#
# Each case runs ONE virsh process (the test driver keeps state for one process only):
#   fixture none : virsh -c test:///default ARGV...          (argv mode, no setup)
#   fixture F    : virsh -c test:///default 'SETUP(F); echo @@GOLDEN@@; COMMAND'
# and keeps only what follows the marker on stdout. The exit status is that of the last command.
# Fixtures:
#   vm1   : shut-off domain vm1 with 8 redefined snapshots (fixed creation times, current 'after update')
#   empty : domain vm1 without snapshots
#   odd   : domain vm1 with names a table must escape (tab, U+0085, backslash-x) and 'dup' / 'DUP'
#   test  : the test driver's running domain 'test' with a chain created by snapshot-create-as t1, t2, t3
# cases.txt: NAME|FIXTURE|ENV|VIRSH-OPTIONS|COMMAND   (# starts a comment)
# Output per case: NAME.cmd ('# fixture=F [env=..] [virsh-options=..]' then the exact virsh command string),
# NAME.out (stdout after the marker), NAME.err (stderr), NAME.rc (exit status). TZ=UTC, LC_ALL=C.UTF-8.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
export TZ=UTC LC_ALL=C.UTF-8
unset VIRSH_DEFAULT_CONNECT_URI LIBVIRT_DEFAULT_URI
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
marker=@@GOLDEN@@

domain_xml() {
    cat <<'XML'
<domain type='test'>
  <name>vm1</name>
  <uuid>11111111-2222-3333-4444-555555555555</uuid>
  <memory unit='KiB'>1048576</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
  <devices>
    <disk type='file' device='disk'>
      <source file='/var/lib/qsnap/vm1/vda.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='disk'>
      <source file='/var/lib/qsnap/vm1/vdb.qcow2'/>
      <target dev='vdb' bus='virtio'/>
    </disk>
    <graphics type='vnc' port='-1' autoport='yes' passwd='secret'/>
  </devices>
</domain>
XML
}

# snap FILE NAME PARENT CTIME STATE MEMORY DISKS DESCRIPTION
#   MEMORY: no | internal | external:PATH     DISKS: internal | external (overlays under /var/lib/qsnap/vm1)
snap() {
    local file=$1 name=$2 parent=$3 ctime=$4 state=$5 mem=$6 disks=$7 desc=$8 d
    {
        echo "<domainsnapshot>"
        echo "  <name>$name</name>"
        [ -n "$desc" ] && echo "  <description>$desc</description>"
        echo "  <state>$state</state>"
        [ -n "$parent" ] && echo "  <parent><name>$parent</name></parent>"
        echo "  <creationTime>$ctime</creationTime>"
        case $mem in
        external:*) echo "  <memory snapshot='external' file='${mem#external:}'/>" ;;
        *) echo "  <memory snapshot='$mem'/>" ;;
        esac
        echo "  <disks>"
        for d in vda vdb; do
            if [ "$disks" = external ]; then
                echo "    <disk name='$d' snapshot='external' type='file'>"
                echo "      <source file='/var/lib/qsnap/vm1/$d.$ctime.qcow2'/>"
                echo "    </disk>"
            else
                echo "    <disk name='$d' snapshot='$disks'/>"
            fi
        done
        echo "  </disks>"
        domain_xml | sed 's/^/  /'
        echo "</domainsnapshot>"
    } >"$tmp/$file"
}

make_fixtures() {
    domain_xml >"$tmp/vm1.xml"
    snap s1.xml 'base' '' 1700000000 shutoff no internal 'Base install'
    snap s2.xml 'after update' 'base' 1700003600 running internal internal 'after apt upgrade'
    snap s3.xml $'cafe\xcc\x81' 'base' 1700007200 paused internal internal ''
    snap s4.xml '快照-一' 'after update' 1700010800 running internal internal 'wide name'
    snap s5.xml 'ext-mem' 'after update' 1700014400 running external:/var/lib/qsnap/vm1/ext-mem.mem external ''
    snap s6.xml 'disk-only' 'ext-mem' 1700018000 disk-snapshot no external ''
    snap s7.xml 'Beta' '' 1700021600 shutoff no internal \
        'A long description that goes on and on, well past eighty columns, to show that virsh prints it untouched in the XML'
    snap s8.xml 'alpha' 'base' 1700025200 shutoff no internal ''
    # names a table must escape (tab, U+0085 NEL, a literal backslash-x) and two names equal but for case
    snap o1.xml 'tab&#9;name' '' 1700000000 shutoff no internal ''
    snap o2.xml 'nel&#133;x' 'tab&#9;name' 1700000060 shutoff no internal ''
    snap o3.xml 'back\\xslash' '' 1700000120 shutoff no internal ''
    snap o4.xml 'dup' '' 1700000180 shutoff no internal ''
    snap o5.xml 'DUP' '' 1700000240 shutoff no internal ''
    # a stand-alone snapshot document for snapshot-create / --redefine cases
    printf '<domainsnapshot>\n  <name>fromxml</name>\n  <description>made from xml</description>\n</domainsnapshot>\n' \
        >"$tmp/new.xml"
    # an EDITOR that changes the description, one that changes nothing, one that renames
    printf '#!/bin/sh\nsed -i "s|<description>Base install</description>|<description>Edited</description>|" "$1"\n' >"$tmp/ed-desc"
    printf '#!/bin/sh\nexit 0\n' >"$tmp/ed-none"
    printf '#!/bin/sh\nsed -i "s|<name>base</name>|<name>base2</name>|" "$1"\n' >"$tmp/ed-rename"
    chmod +x "$tmp/ed-desc" "$tmp/ed-none" "$tmp/ed-rename"
}

setup_for() {
    case $1 in
    vm1)
        printf 'define vm1.xml; '
        printf 'snapshot-create vm1 s1.xml --redefine; snapshot-create vm1 s2.xml --redefine; '
        printf 'snapshot-create vm1 s3.xml --redefine; snapshot-create vm1 s4.xml --redefine; '
        printf 'snapshot-create vm1 s5.xml --redefine; snapshot-create vm1 s6.xml --redefine; '
        printf 'snapshot-create vm1 s7.xml --redefine; snapshot-create vm1 s8.xml --redefine; '
        printf "snapshot-current vm1 'after update'; " ;;
    empty) printf 'define vm1.xml; ' ;;
    odd)
        printf 'define vm1.xml; '
        printf 'snapshot-create vm1 o1.xml --redefine; snapshot-create vm1 o2.xml --redefine; '
        printf 'snapshot-create vm1 o3.xml --redefine; snapshot-create vm1 o4.xml --redefine; '
        printf 'snapshot-create vm1 o5.xml --redefine; ' ;;
    test) printf 'snapshot-create-as test t1; snapshot-create-as test t2; snapshot-create-as test t3; ' ;;
    *) echo "regen.sh: unknown fixture '$1'" >&2; exit 2 ;;
    esac
}

run_case() {
    local name=$1 fixture=$2 envs=$3 opts=$4 cmd=$5 out err rc=0
    local -a envv=() optv=() argv=()
    [ -n "$envs" ] && read -r -a envv <<<"$envs"
    [ -n "$opts" ] && read -r -a optv <<<"$opts"
    envv=("${envv[@]/\$TMP/$tmp}")
    if [ "$fixture" = none ]; then
        eval "argv=($cmd)"
        (cd "$tmp" && env "${envv[@]}" virsh "${optv[@]}" -c test:///default "${argv[@]}") \
            >"$tmp/out" 2>"$tmp/err" || rc=$?
        cp "$tmp/out" "$here/$name.out"
    else
        (cd "$tmp" && env "${envv[@]}" virsh "${optv[@]}" -c test:///default \
            "$(setup_for "$fixture")echo $marker; $cmd") >"$tmp/out" 2>"$tmp/err" || rc=$?
        if ! grep -q "$marker" "$tmp/out"; then
            echo "regen.sh: case '$name': the setup failed" >&2
            cat "$tmp/err" >&2
            exit 1
        fi
        # echo prints the marker; the newline after it is virsh's per-command newline (absent with -q)
        local strip=1
        case " $opts " in *" -q "*|*" --quiet "*) strip=0 ;; esac
        python3 - "$tmp/out" "$marker" "$here/$name.out" "$strip" <<'PY'
import sys
data = open(sys.argv[1], 'rb').read()
m = sys.argv[2].encode()
rest = data[data.index(m) + len(m):]
if sys.argv[4] == '1' and rest.startswith(b'\n'):
    rest = rest[1:]
open(sys.argv[3], 'wb').write(rest)
PY
    fi
    {
        echo "# fixture=$fixture${envs:+ env=$envs}${opts:+ virsh-options=$opts}"
        printf '%s\n' "$cmd"
    } >"$here/$name.cmd"
    cp "$tmp/err" "$here/$name.err"
    echo "$rc" >"$here/$name.rc"
}

make_fixtures
n=0
while IFS='|' read -r name fixture envs opts cmd; do
    case $name in ''|'#'*) continue ;; esac
    if [ $# -gt 0 ]; then
        want=0
        for c in "$@"; do [ "$c" = "$name" ] && want=1; done
        [ $want = 1 ] || continue
    fi
    run_case "$name" "$fixture" "$envs" "$opts" "$cmd"
    n=$((n + 1))
done <"$here/cases.txt"
echo "regen.sh: $n cases written to $here"
