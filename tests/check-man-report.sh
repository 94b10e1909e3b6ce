#!/bin/sh
# check-man-report.sh: check that man/smtp-report.1 documents the whole
# interface of smtp-report: each command (the words src/bin/smtp-report.rs
# matches) has a .TP entry, and the required sections are there.
#
# Usage: sh tests/check-man-report.sh [man/smtp-report.1]
set -eu

page=${1:-man/smtp-report.1}
src=$(dirname "$0")/../src/bin/smtp-report.rs
fail=0

bad() {
	echo "check-man-report: $page: $*" >&2
	fail=1
}

[ -r "$page" ] || { echo "check-man-report: cannot read $page" >&2; exit 1; }

commands='merge text html'
if [ -r "$src" ]; then
	found=$(sed -n 's/^ *\["\([a-z]*\)", .*=>.*/\1/p' "$src" | sort -u)
	[ -n "$found" ] || bad "cannot find the commands in $src"
	commands="$commands $found"
fi
for c in $(printf '%s\n' $commands | sort -u); do
	awk -v c="$c" 'prev == ".TP" && $0 == ".B " c { found = 1 }
		{ prev = $0 } END { exit !found }' "$page" ||
		bad "command $c has no .TP entry"
done

for sec in NAME SYNOPSIS DESCRIPTION COMMANDS 'EXIT STATUS' DIAGNOSTICS \
	EXAMPLES 'SEE ALSO'; do
	grep -Eq "^\.SH \"?$sec\"?\$" "$page" || bad "missing section $sec"
done

if [ "$fail" -ne 0 ]; then
	exit 1
fi
echo "check-man-report: $page documents the commands: $(printf '%s\n' $commands | sort -u | tr '\n' ' ')"
