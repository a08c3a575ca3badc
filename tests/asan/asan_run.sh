#!/usr/bin/env bash
# tests/asan/asan_run.sh: runs one test of the ASan pass (label asan, sanitizer build) so that a sanitizer finding
# in any process of it turns it red - the test itself and every instrumented qsnap, qsnap-fault, qsnap-remote and
# qsnapd it starts, whatever the test does with their stderr and exit status.
#
# Usage: asan_run.sh [--require NAME]... -- COMMAND [ARG...]
#
# Every instrumented process writes its reports (ASan, LeakSanitizer, UBSan: one runtime, the build is clang's) to
# a private directory (log_path, one file per process named after its program), and at a normal exit its
# allocation statistics (atexit=1): so the directory also shows which programs ran instrumented. The test fails
# when any file holds a report (printed), and when a program named by --require never ran instrumented (the
# test did not drive this build's binary). A finding also ends its process at once with status 86.
set -uo pipefail

require=()
while [ $# -gt 0 ]; do
  case $1 in
    --require) require+=("$2"); shift 2 ;;
    --) shift; break ;;
    *) echo "usage: asan_run.sh [--require NAME]... -- COMMAND [ARG...]" >&2; exit 2 ;;
  esac
done
[ $# -gt 0 ] || { echo "usage: asan_run.sh [--require NAME]... -- COMMAND [ARG...]" >&2; exit 2; }

dir=$(mktemp -d "${TMPDIR:-/tmp}/qsnap-asan-XXXXXX")
common="log_path=$dir/san:log_exe_name=1:exitcode=86"
export ASAN_OPTIONS="$common:halt_on_error=1:detect_leaks=1:abort_on_error=0:atexit=1"
export UBSAN_OPTIONS="$common:halt_on_error=1:print_stacktrace=1"

"$@"
rc=$?

shopt -s nullglob
files=("$dir"/san.*)
report='ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|SUMMARY: (Address|Leak|UndefinedBehavior)Sanitizer'
bad=0
for f in "${files[@]}"; do
  if grep -qE "$report" "$f"; then
    bad=$((bad + 1))
    echo "asan_run: sanitizer report from ${f##*/san.}:" >&2
    grep -vE '^(AddressSanitizer exit stats:|Stats: )' "$f" | head -200 >&2
  fi
done

# which programs ran instrumented, and how many processes of each
summary=$(for f in "${files[@]}"; do n=${f##*/san.}; echo "${n%.*}"; done | sort | uniq -c |
  awk '{printf "%s%s x%s", sep, $2, $1; sep=", "}')
echo "asan_run: ${#files[@]} instrumented process(es)${summary:+: $summary}"
missing=0
for name in "${require[@]}"; do
  found=0
  for f in "${files[@]}"; do
    n=${f##*/san.}
    [ "${n%.*}" = "$name" ] && found=1 && break
  done
  if [ "$found" -eq 0 ]; then
    missing=$((missing + 1))
    echo "asan_run: no instrumented '$name' ran: the test did not drive this build's $name" >&2
  fi
done

if [ -z "${QSNAP_KEEP_TMP:-}" ]; then
  rm -rf "$dir"
else
  echo "asan_run: reports kept in $dir"
fi
if [ "$bad" -gt 0 ]; then
  echo "asan_run: $bad process(es) with a sanitizer report (test exit status $rc): failed" >&2
  exit 1
fi
[ "$missing" -eq 0 ] || exit 1
exit "$rc"
