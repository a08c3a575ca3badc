#!/bin/bash
# check_manpage.sh QSNAP DOCDIR: doc/qsnap.1 renders without groff warnings and documents every command, every
# option of each command (in that command's entry), the global options, the JSON fields and the version that
# `qsnap` itself reports.
set -u
QSNAP=$1
PAGE=$2/qsnap.1
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

need_tool groff groff-base
[[ -r $PAGE ]] || { fail "cannot read $PAGE"; finish; }

tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT

# 1. groff warnings (all of them: -ww), typeset as groff does by default and for terminals 60 to 120 wide
for args in "" "-Tutf8 -rLL=60n" "-Tutf8 -rLL=80n" "-Tutf8 -rLL=120n"; do
    # shellcheck disable=SC2086 # $args is a list of options
    if ! groff -man -ww -z $args "$PAGE" 2>"$tmp/warnings" || [[ -s $tmp/warnings ]]; then
        fail "groff ${args:+$args }warns about $PAGE:"
        sed 's/^/    /' "$tmp/warnings" >&2
    fi
done

# The page as plain text, lines long enough never to wrap.
groff -man -Tascii -rLL=400n -P-cbou "$PAGE" 2>/dev/null >"$tmp/page.txt"
section()
{
    awk -v s="$1" '/^[A-Z]/ { on = ($0 == s); next } on' "$tmp/page.txt"
}
for s in NAME SYNOPSIS DESCRIPTION "GLOBAL OPTIONS" COMMANDS "JSON OUTPUT" ENVIRONMENT "EXIT STATUS" FILES \
    EXAMPLES "SEE ALSO"; do
    grep -qx -- "$s" "$tmp/page.txt" || fail "no section '$s'"
done

# 2. every command has an entry under COMMANDS ("       CMD ..." at the tag indent), and every option of the
# command appears in that entry: "--opt", or the bare name for one that may be given positionally
mapfile -t commands < <(help_commands)
((${#commands[@]} > 10)) || fail "qsnap help lists only ${#commands[@]} commands"
section COMMANDS >"$tmp/commands.txt"
for cmd in "${commands[@]}"; do
    awk -v c="$cmd" -v all="${commands[*]}" '
        BEGIN { n = split(all, cs, " "); for (i = 1; i <= n; i++) is[cs[i]] = 1 }
        /^       [^ ]/ { w = $1; if (w in is) on = (w == c) }
        /^   [^ ]/ { on = 0 }
        on' "$tmp/commands.txt" >"$tmp/entry.txt"
    if [[ ! -s $tmp/entry.txt ]]; then
        fail "command '$cmd' has no entry in COMMANDS"
        continue
    fi
    while read -r opt; do
        if [[ $opt == --* ]]; then
            grep -qE -- "(^|[^a-z0-9-])$opt([^a-z0-9-]|\$)" "$tmp/entry.txt" || fail "'$cmd': option $opt not documented"
        else
            grep -qE -- "(^|[^a-z0-9-])(--)?$opt([^a-z0-9-]|\$)" "$tmp/entry.txt" ||
                fail "'$cmd': argument $opt not documented"
        fi
    done < <(help_options "$cmd")
done

# 3. the global options `qsnap help` shows
section "GLOBAL OPTIONS" >"$tmp/global.txt"
for opt in $("$QSNAP" help | sed -n '/Global options:/,/^$/p' | grep -oE -- '(^|[ ,])--?[a-zA-Z][a-z-]*' |
    tr -d ' ,'); do
    grep -qE -- "(^|[^a-z-])$opt([^a-z-]|\$)" "$tmp/global.txt" || fail "global option $opt not documented"
done

# 4. exit statuses
section "EXIT STATUS" >"$tmp/exit.txt"
for code in 0 1 2; do
    grep -qE "^       $code\b" "$tmp/exit.txt" || fail "exit status $code not documented"
done

# 5. the version in .TH is the one qsnap reports
want=$("$QSNAP" version | awk '{ print $2 }')
grep -qE "^\.TH QSNAP 1 [^ ]+ \"qsnap $want\"" "$PAGE" || fail ".TH does not say qsnap $want"

# 6. every field of the --json objects is described under JSON OUTPUT
root=$(make_fixture "$tmp") || { fail "cannot create the fixture state directory"; finish; }
section "JSON OUTPUT" >"$tmp/json.txt"
{
    "$QSNAP" --root "$root" snapshot-info web base --json
    "$QSNAP" --root "$root" snapshot-dumpxml web base --json
} >"$tmp/json.out" || fail "--json commands failed"
keys=$(grep -oE '^  "[a-z_]+":' "$tmp/json.out" | tr -d ' ":' | sort -u)
[[ -n $keys ]] || fail "no JSON fields found in the --json output"
for k in $keys; do
    grep -qE "^       $k( |\$)" "$tmp/json.txt" || fail "JSON field '$k' has no entry in JSON OUTPUT"
done

finish
