#!/bin/bash
# check_qsnapd_manpage.sh QSNAPD PAGE: qsnapd(8) renders without groff warnings and documents every option
# `qsnapd --help` lists, and the token commands.
set -u
QSNAPD=$1
PAGE=$2
QSNAP=$QSNAPD
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

need_tool groff groff-base
for args in "" "-Tutf8 -rLL=60n" "-Tutf8 -rLL=120n"; do
    # shellcheck disable=SC2086
    w=$(groff -man -ww -z $args "$PAGE" 2>&1)
    [[ -z $w ]] || fail "groff ${args:+$args }warns: $w"
done
text=$(groff -man -Tascii -rLL=400n -P-cbou "$PAGE" 2>/dev/null)
for o in $("$QSNAPD" --help | grep -o -- '--[a-z][a-z-]*' | sort -u); do
    grep -q -- "$o" <<<"$text" || fail "option $o of qsnapd --help is not in $PAGE"
done
for c in "token create" "token list" "token revoke"; do
    grep -q "$c" <<<"$text" || fail "'$c' is not in $PAGE"
done
"$QSNAPD" --help | grep -q "qsnapd(8)" || fail "qsnapd --help does not point at qsnapd(8)"
finish
