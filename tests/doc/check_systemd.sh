#!/bin/bash
# check_systemd.sh BUILD_DIR: `cmake --install` puts the schedule runner's systemd units under the prefix,
# the service runs the installed qsnap's `schedule-run --due` (which, with nothing scheduled, succeeds
# silently), the timer fires every minute, and systemd-analyze accepts both units (a failure without it under
# $QSNAP_REQUIRE_QEMU=1, else not checked).
set -u
BUILD=$1
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
cmake --install "$BUILD" --prefix "$prefix" >"$tmp/install.log" 2>&1 || { fail "cmake --install failed:"; cat "$tmp/install.log" >&2; finish; }
unit=$prefix/lib/systemd/system
for f in qsnap-schedule.service qsnap-schedule.timer; do
    [[ -f $unit/$f ]] || fail "$unit/$f not installed"
done
[[ -f $unit/qsnap-schedule.service ]] || finish

exec_start=$(sed -n 's/^ExecStart=//p' "$unit/qsnap-schedule.service")
[[ $exec_start == "$prefix/bin/qsnap schedule-run --due" ]] || fail "ExecStart is '$exec_start'"
[[ $(sed -n 's/^OnCalendar=//p' "$unit/qsnap-schedule.timer") == "*-*-* *:*:00" ]] || fail "the timer is not every minute"
grep -qx 'WantedBy=timers.target' "$unit/qsnap-schedule.timer" || fail "the timer is not wanted by timers.target"

# what the service runs: nothing due, nothing printed, exit 0
read -r -a argv <<<"$exec_start"
out=$(QSNAP_ROOT=$tmp/root "${argv[@]}" 2>&1) || fail "'$exec_start' failed: $out"
[[ -z $out ]] || fail "'$exec_start' printed '$out' with nothing scheduled"

if have_tool systemd-analyze systemd; then
    systemd-analyze verify --man=no "$unit/qsnap-schedule.service" "$unit/qsnap-schedule.timer" 2>"$tmp/verify" ||
        { fail "systemd-analyze verify:"; cat "$tmp/verify" >&2; }
    mapfile -t next < <(systemd-analyze calendar --iterations=2 '*-*-* *:*:00' | sed -n 's/.*\(Next elapse\|Iter. #2\): \(.*\)$/\2/p')
    if ((${#next[@]} == 2)); then
        d=$(($(date -d "${next[1]}" +%s) - $(date -d "${next[0]}" +%s)))
        ((d == 60)) || fail "the timer's slots are $d s apart"
    fi
fi
finish
