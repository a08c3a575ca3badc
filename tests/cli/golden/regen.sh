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
# Fixtures (built by fixtures.sh, which ../test_cli_golden.sh shares):
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

# shellcheck source=fixtures.sh
. "$here/fixtures.sh"

make_fixtures() { golden_make_fixtures "$tmp"; }

# the fixture's commands as one virsh command string: "CMD; CMD; ... "
setup_for() {
    local line
    golden_fixture_setup "$1" >"$tmp/setup" || exit 2
    while IFS= read -r line; do printf '%s; ' "$line"; done <"$tmp/setup"
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
