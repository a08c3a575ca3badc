#!/bin/bash
# test_cli_golden.sh: qsnap against virsh 9.0 - every case of golden/cases.txt run through qsnap on the same
# fixtures, stdout, stderr and exit status compared byte for byte with the golden files.
#
# Usage: test_cli_golden.sh QSNAP [CASE...]        (no CASE: every case)
#   QSNAP: the qsnap binary. Golden files: golden/ next to this script. QSNAP_GOLDEN_VERBOSE=1 lists every case.
#
# Each case gets a fresh state directory (qsnap --root), a copy of its fixture, built from metadata alone
# (`define`, `snapshot-create --redefine`, `snapshot-current`): no QEMU, and qcow2 images only for the REAL
# cases (below). The virsh command string 'A; B' becomes one qsnap process per command, in the fixtures'
# directory, with TZ=UTC LC_ALL=C.UTF-8 and the case's environment and options; stdout and stderr are
# concatenated, the status is the last one's.
#
# A case is one of:
#   compared   stdout, stderr and status must equal the golden files; USAGE_RC: status 2, not 1; ANY_ORDER:
#              stdout's lines compared sorted; EXPECT_SED: stdout expected as the golden text after a sed edit
#   DEVIATE    qsnap differs from virsh by design; not compared, the reason is printed
#   SKIP       needs what metadata cannot give (virsh's running 'test' domain, a running VM)
#   REAL       run on real qcow2 images (the fixture's disk paths pointed at them, internal snapshots as tags,
#              external ones as overlays): compared as above, then the images checked - the tags left in
#              vda and vdb must be the case's list, a revert must have brought back the snapshot's bytes
#   PENDING    a known bug outside cli/ (engine/, metadata/); compared, must still FAIL - when it passes, the
#              test fails until the entry is removed, so the list cannot go stale
# The fixture 'test' is virsh's running built-in domain. qsnap gets a stand-in: a shut-off domain 'test' with
# redefined snapshots t1 <- t2 <- t3 (running, internal, t3 current), which is enough for the cases that only
# look at metadata or fail before touching the VM; the others are in SKIP. After the golden cases come a few
# qsnap-only checks (`own`) for what virsh's answer cannot show: refused names, snapshot-edit renames.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
golden=$here/golden
qsnap=${1:?usage: test_cli_golden.sh QSNAP [CASE...]}
shift
qsnap=$(cd "$(dirname "$qsnap")" && pwd)/$(basename "$qsnap")
export TZ=UTC LC_ALL=C.UTF-8
unset QSNAP_ROOT VISUAL EDITOR
# shellcheck source=golden/fixtures.sh
. "$golden/fixtures.sh"

# virsh keeps a domain in its parsed form, with the test driver's defaults filled in (currentMemory, boot,
# clock, on_*, listen, video), and prints that form inside every <domainsnapshot>. qsnap keeps the XML it is
# given (filling in a driver's defaults is not its job). So qsnap's fixtures get that parsed form - the domain
# block of golden/dumpxml-security.out - in place of regen.sh's shorter text: the same domain (name, uuid,
# disks, VNC password), stored as virsh stored it.
golden_domain_xml() {
    local name=${1:-vm1} uuid=${2:-11111111-2222-3333-4444-555555555555}
    sed -n '/^  <domain /,/^  <\/domain>/s/^  //p' "$golden/dumpxml-security.out" |
        sed -e "s|<name>vm1</name>|<name>$name</name>|" -e "s|<uuid>[^<]*</uuid>|<uuid>$uuid</uuid>|"
}

# ---- expectations ----------------------------------------------------------------------------------------

# Usage errors (unknown option or command, missing option or value) exit 2 in qsnap, 1 in virsh (STYLE.md,
# doc/virsh-output.md section 9). Output must still match.
declare -A USAGE_RC=(
    [list-unknown-option]=1 [list-missing-domain]=1 [list-from-missing-value]=1
    [dumpxml-missing-name]=1 [unknown-command]=1 [help-unknown]=1
)

# Help texts: qsnap adds --json to list, info, current and dumpxml, and lacks dumpxml's --xpath and --wrap.
# The expectation is virsh's text with these edits (sed scripts).
json_line='    --json           print JSON instead of text'
# and it adds --live-fallback and --precopy to the create commands, and --force (protected snapshots) to delete
live_fallback_line='    --live-fallback  with --live: save paused where live cannot work'
precopy_line='    --precopy        with --live: copy the RAM while the guest runs, pause at the end'
force_line='    --force          also delete a protected snapshot (snapshot-protect)'
declare -A EXPECT_SED=(
    [help-snapshot-list]="/^    snapshot-list </s/\$/ [--json]/; /^    --topological /a\\
$json_line"
    [help-snapshot-info]="/^    snapshot-info </s/\$/ [--json]/; /^    --current /a\\
$json_line"
    [help-option]="/^    snapshot-info </s/\$/ [--json]/; /^    --current /a\\
$json_line"
    [help-snapshot-current]="/^    snapshot-current </s/\$/ [--json]/; /^    --snapshotname /a\\
$json_line"
    [help-snapshot-dumpxml]="s/ \[--xpath <string>\] \[--wrap\]\$/ [--json]/; /^    --xpath /d; /^    --wrap /c\\
$json_line"
    [help-snapshot-create]="s/ \[--live\] / [--live] [--live-fallback] [--precopy] /; /^    --live /a\\
$live_fallback_line\\
$precopy_line"
    [help-snapshot-create-as]="s/ \[--live\] / [--live] [--live-fallback] [--precopy] /; /^    --live /a\\
$live_fallback_line\\
$precopy_line"
    [help-snapshot-delete]="/^    snapshot-delete </s/\$/ [--force]/; /^    --metadata /a\\
$force_line"
)

odd_names="qsnap refuses snapshot names with control characters (they become file names), so the odd fixture \
lacks 'tab<TAB>name' and its child 'nel<U+0085>x'; refusal checked by the odd-refuse-* checks"
declare -A DEVIATE=(
    [list-odd]=$odd_names [list-odd-name]=$odd_names [list-odd-tree]=$odd_names
    [create-as-invalid-name]="virsh's test driver accepts 'a/b'; qsnap refuses '/' in names (checked by odd-refuse-slash)"
    [edit-rename-refused]="virsh's test driver cannot delete metadata alone, its errors are an artifact; qsnap \
prints virsh's text for other drivers (checked by edit-rename-refused-qsnap)"
    [edit-rename]="qsnap refuses to rename: internal snapshots in the images carry the name (checked by edit-rename-qsnap)"
    [edit-clone]="qsnap refuses to clone: internal snapshots in the images carry the name"
)

running="needs virsh's running 'test' domain (a running QEMU)"
disks="takes a real snapshot: needs the domain's disk images"
images="reverts or deletes internal snapshots: needs the qcow2 images at /var/lib/qsnap/vm1"
declare -A SKIP=(
    [create-xml-invalid]="virsh's error is its test driver's (a running domain with no disk it can snapshot)"
    [revert-current]="$images, and a running QEMU: 'after update' holds the guest's RAM"
    [create-as-disk-only]="$disks; virsh's test driver cannot do --disk-only (unsupported flags)"
    [create-as-no-metadata]="$disks; virsh's test driver cannot do --no-metadata (unsupported flags)"
    [delete-metadata]="virsh's test driver cannot do --metadata (unsupported flags); qsnap's is tested on real images in test_memspec_live"
    [revert-running]=$running
)

# virsh prints --topological in the driver's order (doc/virsh-output.md 3.2: only parents before children are
# promised; the test driver put the root Beta before base), qsnap in its engine's (depth-first, siblings by
# name). Compared with stdout's lines sorted: the same lines, in an order that may differ.
declare -A ANY_ORDER=(
    [list-topological]=1 [list-topological-parent]=1 [list-name-topological]=1 [list-tree-topological]=1
)

# Cases run on real images (see REAL above): the tags each must leave in vda.qcow2 and vdb.qcow2, sorted and
# separated by '|' ('=base' for the revert: every tag kept, and the images read as they were at 'base'). The
# fixture's images: vda and vdb with the tags of every internal snapshot of vm1 and test, the overlays of
# 'ext-mem' and 'disk-only' beside them (a branch the domain no longer runs on), the memory file of 'ext-mem'.
cafe=$'cafe\xcc\x81'
all_tags="Beta|after update|alpha|base|$cafe|t1|t2|t3|快照-一"
declare -A REAL=(
    [delete]="Beta|after update|base|$cafe|t1|t2|t3|快照-一" [delete-quiet]="Beta|after update|base|$cafe|t1|t2|t3|快照-一"
    [delete-middle]="Beta|alpha|base|$cafe|t1|t2|t3|快照-一" [delete-current]="Beta|alpha|base|$cafe|t1|t2|t3|快照-一"
    [delete-children]="Beta|alpha|base|$cafe|t1|t2|t3" [delete-children-only]="Beta|base|t1|t2|t3"
    [revert]="=base"
    [create-as]="$all_tags|s1" [create-as-option]="$all_tags|s1" [create-as-quiet]="$all_tags|s1"
    [create-as-spaces]="$all_tags|with space" [create-xml]="$all_tags|fromxml" [create-xml-then-list]="$all_tags|fromxml"
)
# and the files left beside them (default: all): deleting the external snapshots removes their overlays and
# memory file, which nothing else uses
all_files='ext-mem.mem vda.1700014400.qcow2 vda.1700018000.qcow2 vda.qcow2 vdb.1700014400.qcow2 vdb.1700018000.qcow2 vdb.qcow2'
declare -A REAL_FILES=([delete-children]='vda.qcow2 vdb.qcow2' [delete-children-only]='vda.qcow2 vdb.qcow2')

# Known differences whose fix belongs to engine/ or metadata/: each entry names where the fix goes (none now).
declare -A PENDING=()

# ---- running qsnap -------------------------------------------------------------------------------------------

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
files=$tmp/files
files_img=$tmp/files.img
cwd_files=$files
mkdir -p "$files" "$tmp/tpl"

# Splits a virsh command string at ';' outside quotes into the array CMDS.
split_commands() {
    local s=$1 cur='' q='' ch i
    CMDS=()
    for ((i = 0; i < ${#s}; i++)); do
        ch=${s:i:1}
        if [ -n "$q" ]; then
            [ "$ch" = "$q" ] && q=''
        elif [ "$ch" = "'" ] || [ "$ch" = '"' ]; then
            q=$ch
        elif [ "$ch" = ';' ]; then
            CMDS+=("$cur")
            cur=''
            continue
        fi
        cur+=$ch
    done
    CMDS+=("$cur")
}

# run_qsnap ROOT OUT ERR ENVS OPTS CMDSTRING: runs each command of CMDSTRING, appending to OUT and ERR.
# Returns the last command's status.
run_qsnap() {
    local root=$1 out=$2 err=$3 envs=$4 opts=$5 cmdline=$6 c rc=0
    local -a envv=() optv=() argv=()
    [ -n "$envs" ] && read -r -a envv <<<"$envs"
    [ -n "$opts" ] && read -r -a optv <<<"$opts"
    envv=("${envv[@]/\$TMP/$files}")
    : >"$out"
    : >"$err"
    split_commands "$cmdline"
    for c in "${CMDS[@]}"; do
        eval "argv=($c)"
        rc=0
        if [ -n "${connect_sock:-}" ]; then
            # QSNAP_GOLDEN_QSNAPD: the same command through qsnapd serving ROOT (qsnap --connect)
            (cd "$cwd_files" && env "${envv[@]}" "$qsnap" --connect "unix:$connect_sock" "${optv[@]}" "${argv[@]}") \
                >>"$out" 2>>"$err" </dev/null || rc=$?
        else
            (cd "$cwd_files" && env "${envv[@]}" "$qsnap" --root "$root" "${optv[@]}" "${argv[@]}") \
                >>"$out" 2>>"$err" </dev/null || rc=$?
        fi
    done
    return $rc
}

# The commands that build fixture F for qsnap: regen.sh's, but the odd fixture without the names qsnap
# refuses and a metadata stand-in for virsh's running 'test' domain.
qsnap_fixture_setup() {
    case $1 in
    odd) golden_fixture_setup odd | grep -v -e ' o1.xml ' -e ' o2.xml ' ;;
    test)
        echo 'define test.xml'
        printf 'snapshot-create test t%s.xml --redefine\n' 1 2 3
        echo 'snapshot-current test t3' ;;
    *) golden_fixture_setup "$1" ;;
    esac
}

# The images of the REAL cases, made once into $tmp/imgtpl and copied to $tmp/img before each case (the
# fixture files in $files_img name $tmp/img where the others name /var/lib/qsnap/vm1). Internal snapshots are
# tags made with qemu-img (no vmstate: nothing here loads one), 'base' holding bytes 0x11 that later writes
# change; 'ext-mem' and 'disk-only' are overlays on vda/vdb, as their external snapshots left them.
img() { qemu-img "$@" >/dev/null; }
build_images() (
    set -e
    d=$tmp/imgtpl
    mkdir -p "$d"
    for t in vda vdb; do
        img create -q -f qcow2 "$d/$t.qcow2" 1M
        qemu-io -f qcow2 -c 'write -P 0x11 0 64k' "$d/$t.qcow2" >/dev/null
        img snapshot -c base "$d/$t.qcow2"
        qemu-io -f qcow2 -c 'write -P 0x22 0 64k' "$d/$t.qcow2" >/dev/null
        for tag in 'after update' "$cafe" '快照-一' Beta alpha t1 t2 t3; do img snapshot -c "$tag" "$d/$t.qcow2"; done
        img create -q -u -f qcow2 -F qcow2 -b "$tmp/img/$t.qcow2" "$d/$t.1700014400.qcow2" 1M
        img create -q -u -f qcow2 -F qcow2 -b "$tmp/img/$t.1700014400.qcow2" "$d/$t.1700018000.qcow2" 1M
    done
    printf 'not loaded by these cases\n' >"$d/ext-mem.mem"
)
fresh_images() { rm -rf "$tmp/img" && cp -a "$tmp/imgtpl" "$tmp/img"; }

# The tags of IMAGE, sorted (bytes), one per line.
image_tags() {
    qemu-img snapshot -l -U "$1" | awk 'NR > 2 { sub(/^[0-9]+ +/, ""); sub(/ +[0-9.]+ [KMG]?i?B .*$/, ""); sub(/ +0 B .*$/, ""); print }' |
        LC_ALL=C sort
}

# check_images NAME: the REAL case's images after it ran; prints what differs, returns 1 then.
check_images() {
    local want=${REAL[$1]} t ok=0
    for t in vda vdb; do
        if [ "$want" = "=base" ]; then
            if ! qemu-io -f qcow2 -c 'read -P 0x11 0 64k' "$tmp/img/$t.qcow2" >/dev/null 2>&1; then
                echo "  $t.qcow2 does not read as at 'base' (0x11) after the revert"
                ok=1
            fi
            want=$all_tags
        fi
        if ! diff <(tr '|' '\n' <<<"$want" | LC_ALL=C sort) <(image_tags "$tmp/img/$t.qcow2") >"$tmp/tags.diff"; then
            echo "  the tags left in $t.qcow2 differ (- expected, + found):"
            sed 's/^/    /' "$tmp/tags.diff"
            ok=1
        fi
        [ "${REAL[$1]}" = "=base" ] && want="=base"
    done
    files_left=$(cd "$tmp/img" && LC_ALL=C ls | tr '\n' ' ')
    if [ "${files_left% }" != "${REAL_FILES[$1]:-$all_files}" ]; then
        echo "  files beside the images: expected '${REAL_FILES[$1]:-$all_files}', found '${files_left% }'"
        ok=1
    fi
    return $ok
}

build_fixtures() {
    local f line root
    golden_make_fixtures "$files"
    golden_domain_xml test 6695eb01-f6a4-8304-79aa-97f2502e193f >"$files/test.xml"
    golden_snap "$files" t1.xml t1 '' 1700100000 running internal internal '' test 6695eb01-f6a4-8304-79aa-97f2502e193f
    golden_snap "$files" t2.xml t2 t1 1700100060 running internal internal '' test 6695eb01-f6a4-8304-79aa-97f2502e193f
    golden_snap "$files" t3.xml t3 t2 1700100120 running internal internal '' test 6695eb01-f6a4-8304-79aa-97f2502e193f
    # o2.xml without its parent: U+0085 (a C1 control) alone
    golden_snap "$files" nel.xml 'nel&#133;x' '' 1700000060 shutoff no internal ''
    # a document in ISO-8859-15 (0xa4 is the euro sign there): the static qsnap reads it as the shared one did
    golden_snap "$files" latin9.xml latin9 '' 1700000120 shutoff no internal $'price \xa4 5'
    sed -i '1i <?xml version="1.0" encoding="ISO-8859-15"?>' "$files/latin9.xml"
    # the REAL cases' copies: vm1 and test with their disks on $tmp/img
    mkdir -p "$files_img"
    cp -a "$files/." "$files_img/"
    sed -i "s|/var/lib/qsnap/vm1|$tmp/img|g" "$files_img"/*.xml
    build_images || { echo "FAIL: cannot make the REAL cases' images" >&2; return 1; }
    for f in none vm1 empty odd test vm1.img test.img; do
        root=$tmp/tpl/$f
        mkdir -p "$root"
        [ "$f" = none ] && continue
        cwd_files=$files
        [ "${f%.img}" != "$f" ] && cwd_files=$files_img
        while IFS= read -r line; do
            if ! run_qsnap "$root" "$tmp/setup.out" "$tmp/setup.err" '' '' "$line"; then
                echo "FAIL fixture $f: qsnap $line" >&2
                cat "$tmp/setup.err" >&2
                return 1
            fi
        done < <(qsnap_fixture_setup "${f%.img}")
    done
    cwd_files=$files
}

# Byte comparison of one stream; on a difference, a unified diff with line ends marked '$'.
compare() {
    local what=$1 want=$2 got=$3
    cmp -s "$want" "$got" && return 0
    echo "  $what differs (- virsh, + qsnap; \$ marks a line end):"
    diff -u --label virsh --label qsnap <(sed 's/$/$/' "$want") <(sed 's/$/$/' "$got") | sed 's/^/    /'
    return 1
}

# check NAME FIXTURE ENVS OPTS CMD WANT_OUT WANT_ERR WANT_RC: runs a case on a fresh copy of its fixture.
# Prints the differences to $tmp/report; returns 0 when all three streams match (ANY_ORDER: stdout's lines
# sorted on both sides).
check() {
    local name=$1 fixture=$2 envs=$3 opts=$4 cmd=$5 want_out=$6 want_err=$7 want_rc=$8 root rc=0 ok=0
    root=$tmp/root.$name
    rm -rf "$root"
    if [ -n "${REAL[$name]:-}" ]; then
        fixture=$fixture.img
        cwd_files=$files_img
        fresh_images
    fi
    cp -a "$tmp/tpl/$fixture" "$root"
    qsnapd_start "$root" "$envs"
    run_qsnap "$root" "$tmp/out" "$tmp/err" "$envs" "$opts" "$cmd" || rc=$?
    qsnapd_stop
    cwd_files=$files
    if [ -n "${ANY_ORDER[$name]:-}" ]; then
        LC_ALL=C sort "$want_out" >"$tmp/want.sorted"
        LC_ALL=C sort -o "$tmp/out" "$tmp/out"
        want_out=$tmp/want.sorted
    fi
    {
        compare stdout "$want_out" "$tmp/out" || ok=1
        compare stderr "$want_err" "$tmp/err" || ok=1
        if [ "$rc" != "$want_rc" ]; then
            echo "  exit status: virsh $want_rc (expected from qsnap), qsnap $rc"
            ok=1
        fi
        if [ -n "${REAL[$name]:-}" ] && ! check_images "$name"; then
            ok=1
        fi
    } >"$tmp/report"
    rm -rf "$root"
    return $ok
}

# $QSNAP_GOLDEN_QSNAPD (the qsnapd binary): every case runs through a qsnapd serving its state directory, with
# qsnap --connect; the expectations stay the same, so direct and remote output must be byte-identical.
connect_sock=
qsnapd_pid=
qsnapd_start() {
    local -a envv=()
    [ -n "${QSNAP_GOLDEN_QSNAPD:-}" ] || return 0
    # the case's environment goes where the engine runs: $QSNAP_TEST_NOW sets qsnapd's clock too
    [ -n "${2:-}" ] && read -r -a envv <<<"$2"
    envv=("${envv[@]/\$TMP/$files}")
    connect_sock=$tmp/api.sock
    rm -f "$connect_sock"
    env "${envv[@]}" "$QSNAP_GOLDEN_QSNAPD" --root "$1" --listen "unix:$connect_sock" 2>>"$tmp/qsnapd.log" &
    qsnapd_pid=$!
    for _ in $(seq 200); do [ -S "$connect_sock" ] && return 0; sleep 0.01; done
    echo "qsnapd did not start:" >&2
    cat "$tmp/qsnapd.log" >&2
    return 1
}
qsnapd_failures=0
qsnapd_stop() {
    local st=0
    [ -n "$qsnapd_pid" ] || return 0
    kill "$qsnapd_pid" 2>/dev/null
    wait "$qsnapd_pid" 2>/dev/null || st=$?
    qsnapd_pid=
    connect_sock=
    # a clean stop exits 0: anything else (a sanitizer's report under ASan, a crash) is a failure
    if [ "$st" -ne 0 ]; then
        echo "qsnapd exited $st:" >&2
        tail -20 "$tmp/qsnapd.log" >&2
        qsnapd_failures=$((qsnapd_failures + 1))
    fi
}
trap 'qsnapd_stop; rm -rf "$tmp"' EXIT

# ---- the cases -----------------------------------------------------------------------------------------------

declare -i passed=0 failed=0 deviated=0 skipped=0 pending=0 own_passed=0
declare -a failures=()

result() { # result STATUS NAME [DETAIL]
    case $1 in
    ok) passed+=1 ;;
    own) own_passed+=1 ;;
    FAIL) failed+=1; failures+=("$2") ;;
    esac
    if [ "$1" = FAIL ] || [ "${QSNAP_GOLDEN_VERBOSE:-0}" = 1 ]; then
        echo "$1 $2${3:+: $3}"
    fi
}

selected() {
    local c
    [ ${#want_cases[@]} -eq 0 ] && return 0
    for c in "${want_cases[@]}"; do [ "$c" = "$1" ] && return 0; done
    return 1
}

want_cases=("$@")
build_fixtures || exit 1

while IFS='|' read -r name fixture envs opts cmd; do
    case $name in '' | '#'*) continue ;; esac
    selected "$name" || continue
    if [ -n "${DEVIATE[$name]:-}" ]; then
        deviated+=1
        result deviate "$name" "${DEVIATE[$name]}"
        continue
    fi
    if [ -n "${SKIP[$name]:-}" ]; then
        skipped+=1
        result skip "$name" "${SKIP[$name]}"
        continue
    fi
    want_out=$golden/$name.out
    want_rc=$(cat "$golden/$name.rc")
    [ -n "${USAGE_RC[$name]:-}" ] && want_rc=2
    if [ -n "${EXPECT_SED[$name]:-}" ]; then
        sed -e "${EXPECT_SED[$name]}" "$want_out" >"$tmp/want.edited"
        want_out=$tmp/want.edited
    fi
    if check "$name" "$fixture" "$envs" "$opts" "$cmd" "$want_out" "$golden/$name.err" "$want_rc"; then
        if [ -n "${PENDING[$name]:-}" ]; then
            result FAIL "$name" "listed as PENDING but passes now: remove it from PENDING"
        else
            result ok "$name"
        fi
    elif [ -n "${PENDING[$name]:-}" ]; then
        pending+=1
        result pending "$name" "${PENDING[$name]}"
        [ "${QSNAP_GOLDEN_VERBOSE:-0}" = 1 ] && cat "$tmp/report"
    else
        result FAIL "$name" "qsnap $opts $cmd"
        cat "$tmp/report"
    fi
done <"$golden/cases.txt"

# ---- qsnap's own answers where virsh's cannot be matched ----------------------------------------------------

# own NAME FIXTURE ENVS CMD RC OUT ERR: a qsnap-only case; OUT and ERR are the exact expected texts.
own() {
    selected "$1" || return 0
    printf '%s' "$6" >"$tmp/want.out"
    printf '%s' "$7" >"$tmp/want.err"
    if check "$1" "$2" "$3" '' "$4" "$tmp/want.out" "$tmp/want.err" "$5"; then
        result own "$1"
    else
        result FAIL "$1" "qsnap $4"
        cat "$tmp/report"
    fi
}
# names that cannot become file names are refused with a clear error (after the per-command newline)
own odd-refuse-tab empty '' 'snapshot-create vm1 o1.xml --redefine' 1 $'\n' \
    $'error: snapshot name must not contain control characters\n'
own odd-refuse-nel-parent empty '' 'snapshot-create vm1 o2.xml --redefine' 1 $'\n' \
    $'error: parent snapshot name must not contain control characters\n'
own odd-refuse-slash test '' 'snapshot-create-as test a/b' 1 $'\n' $'error: snapshot name \'a/b\' must not contain \'/\'\n'
own odd-refuse-dot test '' 'snapshot-create-as test .hidden' 1 $'\n' \
    $'error: snapshot name \'.hidden\' must not start with \'.\'\n'
# U+0085 is no control byte: accepted, and the table escapes it as virsh does (doc 3.1: \xff per byte)
own odd-nel-accepted empty '' 'snapshot-create vm1 nel.xml --redefine; snapshot-list vm1' 0 \
    "Domain snapshot nel"$'\xc2\x85'"x created from 'nel.xml'
 Name           Creation Time               State
-----------------------------------------------------
 nel\\xff\\xffx   2023-11-14 22:14:20 +0000   shutoff

" ''
own encoding-latin9 empty '' 'snapshot-create vm1 latin9.xml --redefine; snapshot-list vm1 --json' 0 \
    "Domain snapshot latin9 created from 'latin9.xml'
[
  {
    \"name\": \"latin9\",
    \"domain\": \"vm1\",
    \"description\": \"price € 5\",
    \"state\": \"shutoff\",
    \"location\": \"internal\",
    \"creation_time\": 1700000120,
    \"parent\": null,
    \"current\": false,
    \"children\": 0,
    \"descendants\": 0,
    \"metadata\": true
  }
]
" ''
# snapshot-edit changing the name: virsh's text for drivers that get that far; qsnap cannot rename at all
own edit-rename-refused-qsnap vm1 'EDITOR=$TMP/ed-rename' 'snapshot-edit vm1 base' 1 $'\n' \
    $'error: Must use --rename or --clone to change base to base2\n'
own edit-rename-qsnap vm1 'EDITOR=$TMP/ed-rename' 'snapshot-edit vm1 base --rename; snapshot-list vm1 --roots --name' 0 \
    $'\nbase\nBeta\n\n' $'error: snapshot \'base\' cannot be renamed or cloned: its disk data is named after it\n'

# qsnap's own commands - schedules, prune, protected snapshots, the event log - have no virsh to match: their
# expectations are golden/own/NAME.{out,err,rc} for the cases of golden/own/cases.txt (as cases.txt: NAME|FIXTURE|
# ENVS|OPTS|CMD), on metadata fixtures and a clock the case sets (qsnapd's too), so that direct and --connect
# output are both held to the same bytes. QSNAP_GOLDEN_OWN_REGEN=1 rewrites them from direct mode, for review as a
# diff. The fixture 'evlog' is vm1 with a fixed event log (golden/own/evlog.jsonl). What needs disk images or a
# running QEMU (a real prune, export, clone, version --domain) is compared in tests/service/test_service_more.c.
own_dir=$golden/own
if [ -d "$tmp/tpl/vm1" ]; then
    rm -rf "$tmp/tpl/evlog"
    cp -a "$tmp/tpl/vm1" "$tmp/tpl/evlog"
    cp "$own_dir/evlog.jsonl" "$tmp/tpl/evlog/events/vm1.jsonl"
fi
while IFS='|' read -r name fixture envs opts cmd; do
    case $name in '' | '#'*) continue ;; esac
    selected "$name" || continue
    if [ "${QSNAP_GOLDEN_OWN_REGEN:-0}" = 1 ] && [ -z "${QSNAP_GOLDEN_QSNAPD:-}" ]; then
        rm -rf "$tmp/regen"
        cp -a "$tmp/tpl/$fixture" "$tmp/regen"
        rc=0
        run_qsnap "$tmp/regen" "$own_dir/$name.out" "$own_dir/$name.err" "$envs" "$opts" "$cmd" || rc=$?
        echo "$rc" >"$own_dir/$name.rc"
    fi
    if check "$name" "$fixture" "$envs" "$opts" "$cmd" "$own_dir/$name.out" "$own_dir/$name.err" \
        "$(cat "$own_dir/$name.rc")"; then
        result own "$name"
    else
        result FAIL "$name" "qsnap $opts $cmd"
        cat "$tmp/report"
    fi
done <"$own_dir/cases.txt"

echo "test_cli_golden: golden cases: $passed passed, $deviated deviations, $skipped skipped, $pending pending;" \
    "qsnap-only checks: $own_passed passed; $failed failed"
[ $failed -eq 0 ] || { echo "failed: ${failures[*]}"; exit 1; }
[ "$qsnapd_failures" -eq 0 ] || { echo "qsnapd did not stop cleanly $qsnapd_failures times"; exit 1; }
