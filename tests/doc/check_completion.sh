#!/bin/bash
# check_completion.sh QSNAP DOCDIR: doc/qsnap.bash-completion, driven as bash drives it (COMP_WORDS,
# COMP_CWORD, COMP_LINE, COMP_POINT set by hand), offers every command `qsnap help` lists and exactly each
# command's options, and completes domain names, snapshot names and files from a fixture state directory.
set -u
QSNAP=$1
SCRIPT=$2/qsnap.bash-completion
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
# shellcheck source=../../doc/qsnap.bash-completion
. "$SCRIPT" || { fail "cannot source $SCRIPT"; finish; }
[[ $(complete -p qsnap 2>/dev/null) == "complete -F _qsnap qsnap" ]] || fail "no 'complete -F _qsnap qsnap'"

# Completes LINE (cursor at its end), with "qsnap" in it standing for $QSNAP; the words are split as readline
# splits them: at blanks (not escaped ones), and each run of the COMP_WORDBREAKS characters = and : is a word
# of its own. Leaves the candidates in COMPREPLY.
complete_line()
{
    local line=${1/#qsnap/$QSNAP} w="" c i
    COMP_WORDS=()
    for ((i = 0; i < ${#line}; i++)); do
        c=${line:i:1}
        if [[ $c == \\ ]]; then
            w+=${line:i:2}
            i=$((i + 1))
        elif [[ $c == " " ]]; then
            [[ -n $w ]] && COMP_WORDS+=("$w")
            w=""
        elif [[ $c == [=:] ]]; then
            [[ -n $w && $w != *[!=:]* ]] || { [[ -n $w ]] && COMP_WORDS+=("$w"); w=""; }
            w+=$c
        else
            [[ -n $w && $w != *[!=:]* ]] && { COMP_WORDS+=("$w"); w=""; }
            w+=$c
        fi
    done
    COMP_WORDS+=("$w")
    COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
    COMP_LINE=$line
    COMP_POINT=${#line}
    COMPREPLY=()
    _qsnap qsnap "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
}

# expect LINE CANDIDATE...: completing LINE offers exactly these candidates (in any order).
expect()
{
    local line=$1 got want
    shift
    complete_line "$line"
    got=$(printf '%s\n' "${COMPREPLY[@]}" | sort)
    want=$(printf '%s\n' "$@" | sort)
    [[ $# -gt 0 ]] || want=""
    [[ ${#COMPREPLY[@]} -gt 0 ]] || got=""
    if [[ $got != "$want" ]]; then
        fail "completing '$line': got [${got//$'\n'/ }], want [${want//$'\n'/ }]"
    fi
}

# 1. the commands: all of `qsnap help`'s, and only those
mapfile -t commands < <(help_commands)
((${#commands[@]} > 10)) || fail "qsnap help lists only ${#commands[@]} commands"
expect "qsnap " "${commands[@]}"
expect "qsnap --root /x -q " "${commands[@]}"
expect "qsnap snapshot-cre" snapshot-create snapshot-create-as
expect "qsnap help snapshot-d" snapshot-delete snapshot-dumpxml
expect "qsnap -" --root --connect --lock-timeout --quiet --version --help -q -V -h
expect "qsnap --lock-timeout 300 snapshot-cre" snapshot-create snapshot-create-as
expect "qsnap --lock-timeout " # a number: nothing to offer

# 2. each command's options: exactly those of `qsnap help CMD`
for cmd in "${commands[@]}"; do
    mapfile -t opts < <(help_options "$cmd" | sed 's/^\([^-]\)/--\1/')
    expect "qsnap $cmd --" "${opts[@]}"
done
# options already given are not offered again (a repeatable one is)
expect "qsnap snapshot-revert web --current --" --snapshotname --running --paused --force --reset-nvram
expect "qsnap snapshot-create-as web --diskspec vda --dis" --disk-only --diskspec

# 3. names from a state directory, found through --root, --root=, and $QSNAP_ROOT
root=$(make_fixture "$tmp") || { fail "cannot create the fixture state directory"; finish; }
expect "qsnap --root $root domstate " 'vm\ one' web
expect "qsnap --root=$root domstate v" 'vm\ one'
expect "qsnap --root $root snapshot-list --domain w" web
expect "qsnap --root $root attach " # a new name: nothing to offer
QSNAP_ROOT=$root expect "qsnap undefine " 'vm\ one' web
expect "qsnap --root $root snapshot-revert web " a:b after base 'with\ space'
expect "qsnap --root $root snapshot-revert web a" a:b after
expect "qsnap --root $root snapshot-revert web a:" b # readline replaces only what follows the ':'
expect "qsnap --root $root snapshot-delete web --snapshotname w" 'with\ space'
expect "qsnap --root $root snapshot-info web --snapshotname=b" base
expect "qsnap --root $root snapshot-info --snapshotname b --domain " 'vm\ one' web
expect "qsnap --root $root snapshot-list web --from " a:b after base 'with\ space'
expect "qsnap --root $root snapshot-dumpxml --domain web " a:b after base 'with\ space'
expect "qsnap --root $root snapshot-revert nodomain " # unknown domain: nothing, and no error
expect "qsnap --root $root snapshot-export web base --disk " vda
expect "qsnap --root $root snapshot-export web base v" vda
expect "qsnap --root $root snapshot-export web base vda --to /x --format " qcow2 raw
QSNAP_ROOT=$root expect "qsnap snapshot-parent web --snapshotname af" after

# schedules: kinds, and the domain's schedule names where a command takes one
"$QSNAP" -q --root "$root" schedule-set web hourly --cron @hourly >/dev/null || fail "schedule-set failed"
"$QSNAP" -q --root "$root" schedule-set web 'night ly' --cron '0 3 * * *' >/dev/null || fail "schedule-set failed"
expect "qsnap --root $root schedule-set web x --cron @daily --kind " internal disk-only live memspec
expect "qsnap --root $root schedule-set web x --kind=d" disk-only
expect "qsnap --root $root schedule-remove web " hourly 'night\ ly'
expect "qsnap --root $root schedule-run web --schedule h" hourly
expect "qsnap --root $root snapshot-prune web --schedule n" 'night\ ly'
expect "qsnap --root $root snapshot-protect web a" a:b after

# 4. files for file arguments
touch "$tmp/dom.xml" "$tmp/domain-two.xml"
expect "qsnap define $tmp/dom" "$tmp/dom.xml" "$tmp/domain-two.xml"
expect "qsnap define --file=$tmp/domain-" "$tmp/domain-two.xml"
expect "qsnap --root $root snapshot-create web $tmp/domain-" "$tmp/domain-two.xml"
expect "qsnap attach vm --qmp $tmp/domain-" "$tmp/domain-two.xml"
expect "qsnap snapshot-export web base vda --to $tmp/domain-" "$tmp/domain-two.xml"

# 5. without COMP_LINE (COMP_WORDS only) it still works
complete_line "qsnap --root $root snapshot-revert web b"
unset COMP_LINE COMP_POINT
COMPREPLY=()
_qsnap
[[ ${COMPREPLY[*]-} == base ]] || fail "without COMP_LINE: got [${COMPREPLY[*]-}], want [base]"

finish
