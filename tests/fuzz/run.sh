#!/usr/bin/env bash
# tests/fuzz/run.sh: builds the libFuzzer harnesses (clang, -DQSNAP_FUZZ=ON) and runs each for a while over its
# seed corpus; exits non-zero when any harness finds a crash, a leak, a timeout or undefined behaviour.
# Usage: tests/fuzz/run.sh [SECONDS_PER_HARNESS [BUILD_DIR]]   (defaults: 20, <repo>/build-fuzz)
# New inputs go to BUILD_DIR/fuzz-work/NAME (the corpus in the tree is left alone); a crashing input is saved
# as BUILD_DIR/fuzz-work/NAME-crash-* and can be replayed with: BUILD_DIR/tests/fuzz/NAME FILE
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
secs=${1:-20}
build=${2:-$here/build-fuzz}
harnesses=(fuzz_qmp fuzz_qga fuzz_md_snapshot fuzz_md_domain fuzz_service fuzz_cron)

command -v clang >/dev/null || { echo "fuzz: clang is missing (scripts/setup installs it)" >&2; exit 1; }
if [ ! -f "$build/CMakeCache.txt" ]; then
  CC=clang cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DQSNAP_FUZZ=ON >/dev/null
fi
nice cmake --build "$build" --target qsnap_fuzzers -j"$(nproc)" >/dev/null

work=$build/fuzz-work
mkdir -p "$work"
failed=0
for h in "${harnesses[@]}"; do
  mkdir -p "$work/$h"
  log=$work/$h.log
  rc=0
  # -timeout: one input taking over 10 s is a hang; -rss_limit_mb: a blow-up is a finding too
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "$build/tests/fuzz/$h" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="$work/$h-" "$work/$h" "$here/tests/fuzz/corpus/$h" >"$log" 2>&1 || rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)
  if [ "$rc" -ne 0 ]; then
    echo "fuzz: $h FAILED (exit $rc) after ${runs:-?} runs; log: $log" >&2
    grep -E 'ERROR|SUMMARY|runtime error|Test unit written' "$log" | head -20 >&2 || true
    failed=$((failed + 1))
  else
    echo "fuzz: $h ok: ${runs:-?} runs in ${secs}s (${rate:-?} exec/s, ${cov:-cov: ?})"
  fi
done
passed=$(( ${#harnesses[@]} - failed ))
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
