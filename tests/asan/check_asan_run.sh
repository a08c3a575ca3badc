#!/usr/bin/env bash
# tests/asan/check_asan_run.sh RUNNER CANARY BUILD: the ASan pass can fail. A heap overflow, undefined behaviour
# and a leak in a child process whose stderr and exit status its parent throws away (sanitizer_canary) each turn
# the run red with the report shown; a clean run passes; a run in which a required program never ran
# instrumented fails; and the programs the pass's tests drive from BUILD (qsnap, qsnap-remote, which qsnap
# --connect becomes and which reports under qsnap's name, qsnap-fault, qsnapd) are instrumented ones.
set -uo pipefail
runner=$1
canary=$2
build=$3
failures=0

fail() { printf 'FAIL: %s\n' "$*" >&2; failures=$((failures + 1)); }

# expect RC-WANT PATTERN ARGS...: asan_run.sh ARGS exits RC-WANT ("nonzero" or a number), output matching PATTERN
expect() {
  local want=$1 pattern=$2 out rc=0
  shift 2
  out=$(bash "$runner" "$@" 2>&1) || rc=$?
  if { [ "$want" = nonzero ] && [ "$rc" -eq 0 ]; } || { [ "$want" != nonzero ] && [ "$rc" -ne "$want" ]; }; then
    fail "asan_run.sh $*: exit $rc, wanted $want; output:"$'\n'"$out"
  elif ! grep -qE -- "$pattern" <<<"$out"; then
    fail "asan_run.sh $*: no '$pattern' in:"$'\n'"$out"
  fi
}

name=$(basename "$canary")
expect nonzero 'ERROR: AddressSanitizer: heap-buffer-overflow' --require "$name" -- "$canary" parent heap
expect nonzero 'runtime error: signed integer overflow' --require "$name" -- "$canary" parent ub
expect nonzero 'ERROR: LeakSanitizer: detected memory leaks' --require "$name" -- "$canary" parent leak
expect 0 "2 instrumented process\\(es\\): $name x2" --require "$name" -- "$canary" parent none
expect nonzero "no instrumented 'qsnap' ran" --require qsnap -- "$canary" parent none
expect nonzero "no instrumented 'true' ran" --require true -- true
for prog in cli/qsnap cli/qsnap-remote cli/qsnap-fault service/qsnapd; do
  name=$(basename "$prog")
  expect 0 "instrumented process\\(es\\): $name x1" --require "$name" -- "$build/$prog" --version
done

if ((failures)); then
  printf '%d check(s) failed\n' "$failures" >&2
  exit 1
fi
echo ok
