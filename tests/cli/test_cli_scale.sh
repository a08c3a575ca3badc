#!/bin/bash
# test_cli_scale.sh: what qsnap says of a domain with 700 snapshots, where its commands take their quick ways:
# the redefines append to the index's journal (run/DOM.ixlog) and snapshot-info reads one index record
# (md_tree_peek, from 512 snapshots on), and a delete of a snapshot nothing is built on appends to the journal
# too (md_tree_peek_leaf). Every answer is checked against what the construction makes true:
# a chain c1 <- ... <- c600 and a branch b1 <- ... <- b100 on c300, b100 redefined --current last. Then the
# domain gets a qcow2 disk and, shut off, takes 22 internal snapshots in a row (into the journal; once it
# names 16 files a create takes the long way, which folds it), then creates, reverts and deletes with
# snapshot-info between each.
#
# Usage: test_cli_scale.sh QSNAP
set -uo pipefail
qsnap=${1:?usage: test_cli_scale.sh QSNAP}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/qsnap-scale.XXXXXX")
trap '[ -n "${QSNAP_KEEP_TMP:-}" ] || rm -rf "$tmp"' EXIT
root=$tmp/root
fails=0
q() { "$qsnap" --root "$root" "$@"; }
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

mkdir -p "$root/qemu" "$tmp/in"
cat >"$root/qemu/vm1.xml" <<'XML'
<domain type='qemu'>
  <name>vm1</name>
  <uuid>11111111-2222-3333-4444-555555555555</uuid>
  <memory unit='KiB'>65536</memory>
</domain>
XML
snap() { # NAME PARENT TIME
    local parent=""
    [ -n "$2" ] && parent="  <parent><name>$2</name></parent>"
    printf '<domainsnapshot>\n  <name>%s</name>\n  <state>shutoff</state>\n%s\n  <creationTime>%s</creationTime>\n  <memory snapshot="no"/>\n  <domain type="qemu"><name>vm1</name><uuid>11111111-2222-3333-4444-555555555555</uuid><memory unit="KiB">65536</memory></domain>\n</domainsnapshot>\n' \
        "$1" "$parent" "$3" >"$tmp/in/$1.xml"
}
for i in $(seq 1 600); do snap "c$i" "$([ "$i" -gt 1 ] && echo "c$((i - 1))")" $((1700000000 + i)); done
for i in $(seq 1 100); do snap "b$i" "$([ "$i" -gt 1 ] && echo "b$((i - 1))" || echo c300)" $((1700001000 + i)); done
for i in $(seq 1 600); do q snapshot-create vm1 "$tmp/in/c$i.xml" --redefine >/dev/null || fail "redefine c$i"; done
# a journal there now: the directory's timestamps are fine enough for the quick ways (Linux 6.13 on)
fine=0
[ -e "$root/run/vm1.ixlog" ] && fine=1
for i in $(seq 1 99); do q snapshot-create vm1 "$tmp/in/b$i.xml" --redefine >/dev/null || fail "redefine b$i"; done
q snapshot-create vm1 "$tmp/in/b100.xml" --redefine --current >/dev/null || fail "redefine b100 --current"
# the redefines that did not load the tree left records behind them, or none when the last one folded them
[ "$(q snapshot-list vm1 --name | grep -c .)" = 700 ] || fail "list: not 700 snapshots"

info() { # NAME CURRENT PARENT CHILDREN DESCENDANTS
    local want
    want=$(printf 'Name:           %s\nDomain:         vm1\nCurrent:        %s\nState:          shutoff\nLocation:       internal\nParent:         %s\nChildren:       %s\nDescendants:    %s\nMetadata:       yes' \
        "$1" "$2" "$3" "$4" "$5")
    [ "$(q snapshot-info vm1 "$1")" = "$want" ] || fail "snapshot-info $1: $(q snapshot-info vm1 "$1" | tr '\n' ' ')"
}
info c1 no - 1 699
info c299 no c298 1 401
info c300 no c299 2 400
info c301 no c300 1 299
info c600 no c599 0 0
info b1 no c300 1 99
info b100 yes b99 0 0
[ "$(q snapshot-parent vm1 b1)" = c300 ] || fail "snapshot-parent b1"
[ "$(q snapshot-current vm1 --name)" = b100 ] || fail "snapshot-current"
q snapshot-info vm1 nothere >"$tmp/out" 2>"$tmp/err" && fail "snapshot-info of a missing snapshot succeeded"
grep -q "no domain snapshot with matching name 'nothere'" "$tmp/err" || fail "snapshot-info nothere: $(cat "$tmp/err")"
j=$(q snapshot-info vm1 c300 --json)
for kv in '"children":2' '"descendants":400' '"parent":"c299"' '"current":false'; do
    [[ $j == *"${kv//:/: }"* || $j == *"$kv"* ]] || fail "snapshot-info --json c300 lacks $kv: $j"
done

# deletes: the leaf c600, then the current leaf b100 (b99 becomes current), into the journal, each read back
# through it by the next command; then c300, which has children, the long way (c301 and b1 move to c299)
q snapshot-delete vm1 c600 --metadata >/dev/null || fail "delete c600"
[ $fine = 0 ] || [ -e "$root/run/vm1.ixlog" ] || fail "delete c600: no journal record"
info c599 no c598 0 0
q snapshot-info vm1 c600 >/dev/null 2>&1 && fail "c600 still there"
q snapshot-delete vm1 b100 --metadata >/dev/null || fail "delete b100"
[ $fine = 0 ] || [ -e "$root/run/vm1.ixlog" ] || fail "delete b100: no journal record"
[ "$(q snapshot-current vm1 --name)" = b99 ] || fail "snapshot-current after deleting b100"
info b99 yes b98 0 0
info c300 no c299 2 398
q snapshot-delete vm1 c300 --metadata >/dev/null || fail "delete c300"
info c299 no c298 2 398
info b1 no c299 1 98
info c301 no c299 1 298
[ "$(q snapshot-list vm1 --name | grep -c .)" = 697 ] || fail "list: not 697 snapshots"
[ "$(q snapshot-list vm1 --leaves --name | grep . | sort | tr '\n' ' ')" = "b99 c599 " ] || fail "leaves: $(q snapshot-list vm1 --leaves --name | tr '\n' ' ')"
[ "$(q snapshot-current vm1 --name)" = b99 ] || fail "snapshot-current after the deletes"

# internal creates of the shut-off domain, now with a disk
qemu-img create -q -f qcow2 "$tmp/disk.qcow2" 16M || fail "qemu-img create"
cat >"$root/qemu/vm1.xml" <<XML
<domain type='qemu'>
  <name>vm1</name>
  <uuid>11111111-2222-3333-4444-555555555555</uuid>
  <memory unit='KiB'>65536</memory>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='$tmp/disk.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
  </devices>
</domain>
XML
rm -f "$root/run/vm1.ixlog"
q snapshot-list vm1 --name >/dev/null # the index again, for the directory as it is
q snapshot-create-as vm1 n1 >/dev/null || fail "create n1"
[ "$(q snapshot-current vm1 --name)" = n1 ] || fail "snapshot-current after creating n1"
info n1 yes b99 0 0
info b99 no b98 1 1
# in a row, no reader between them
for i in $(seq 2 22); do
    q snapshot-create-as vm1 "n$i" >/dev/null || fail "create n$i"
done
prev=n1
for i in $(seq 2 22); do
    [ "$(q snapshot-parent vm1 "n$i")" = "$prev" ] || fail "parent of n$i: $(q snapshot-parent vm1 "n$i" 2>&1)"
    prev=n$i
done
[ "$(q snapshot-current vm1 --name)" = n22 ] || fail "snapshot-current after creating n22"
info n22 yes n21 0 0
info n10 no n9 1 12
info b99 no b98 1 22
q snapshot-create-as vm1 n5 >/dev/null 2>"$tmp/err" && fail "a second n5 was created"
grep -q "already exists" "$tmp/err" || fail "create n5 again: $(cat "$tmp/err")"
# the benchmark's round twice, no listing between (a listing folds the journal): create, info, revert,
# delete - each write into the journal when the stamps allow, each answer read through it
rm -f "$root/run/vm1.ixlog"
q snapshot-list vm1 --name >/dev/null
q snapshot-create-as vm1 r1 >/dev/null || fail "create r1"
[ $fine = 0 ] || [ -e "$root/run/vm1.ixlog" ] || fail "create r1: no journal record"
info r1 yes n22 0 0
info n22 no n21 1 1
q snapshot-revert vm1 n10 >/dev/null || fail "revert n10"
info n10 yes n9 1 13
info r1 no n22 0 0
q snapshot-delete vm1 r1 >/dev/null || fail "delete r1"
info n22 no n21 0 0
info n10 yes n9 1 12
q snapshot-create-as vm1 r2 >/dev/null || fail "create r2"
info r2 yes n10 0 0
info n10 no n9 2 13
info b99 no b98 1 23
q snapshot-revert vm1 n22 >/dev/null || fail "revert n22"
info n22 yes n21 0 0
info r2 no n10 0 0
q snapshot-delete vm1 r2 >/dev/null || fail "delete r2"
info n10 no n9 1 12
[ $fine = 0 ] || [ -e "$root/run/vm1.ixlog" ] || fail "the round left no journal"
[ "$(qemu-img snapshot -l "$tmp/disk.qcow2" | grep -c ' n[0-9]')" = 22 ] || fail "the disk lacks tags: $(qemu-img snapshot -l "$tmp/disk.qcow2")"
# exactly one file says current, n22's
[ "$(grep -l '<active>1</active>' "$root/snapshot/vm1/"*.xml 2>/dev/null)" = "$root/snapshot/vm1/n22.xml" ] ||
    fail "current files: $(grep -l '<active>1</active>' "$root/snapshot/vm1/"*.xml 2>/dev/null | tr '
' ' ')"
q snapshot-check vm1 >"$tmp/out" 2>&1 || fail "snapshot-check: $(cat "$tmp/out")"
[ "$(q snapshot-list vm1 --name | grep -c .)" = 719 ] || fail "list: not 719 snapshots"
[ "$(q snapshot-current vm1 --name)" = n22 ] || fail "snapshot-current at the end"
[ $fails -eq 0 ] && echo "test_cli_scale: 719 snapshots, every answer right" || exit 1
