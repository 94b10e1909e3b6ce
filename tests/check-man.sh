#!/bin/sh
# check-man.sh: check that the manual page documents the whole interface.
#
# Usage: sh tests/check-man.sh [man/smtp-source.1]
#
# Checks, in the roff source:
#   - every letter of the getopt string has an option entry (\-X);
#   - the long options, SMTP_SOURCE_TIMEOUT and the required sections;
#   - one NOTES entry for each deliberate difference X1..X15.
# If HELP_BIN names a built smtp-source, every option letter must also
# appear in its --help output.
#
# `make man` runs this after `man --warnings`.
set -eu

page=${1:-man/smtp-source.1}
optstring='46AcC:df:F:l:Lm:M:Nor:R:s:S:t:T:vw:'
fail=0

bad() {
	echo "check-man: $page: $*" >&2
	fail=1
}

[ -r "$page" ] || { echo "check-man: cannot read $page" >&2; exit 1; }

# Letters of the getopt string, one per line, without the colons.
letters=$(printf '%s' "$optstring" | tr -d ':' | fold -w1)

# Option entries: the tag line after each .TP, such as `.B \-d` or
# `.BI \-m " message_count"`. Print the option letter of each.
tags=$(awk '
	prev == ".TP" && /^\.BI? \\-[0-9A-Za-z]( |$)/ { print substr($2, 3, 1) }
	{ prev = $0 }
' "$page")

for l in $letters; do
	printf '%s\n' "$tags" | grep -qx -- "$l" ||
		bad "option -$l has no .TP entry (.B \\-$l or .BI \\-$l ...)"
done

for s in '\-\-timeout=' '\-\-max\-connecting=' '\-\-help' '\-\-version' \
	'SMTP_SOURCE_TIMEOUT'; do
	grep -Fq -- "$s" "$page" || bad "missing $s"
done

for sec in NAME SYNOPSIS DESCRIPTION OPTIONS EXTENSIONS ENVIRONMENT \
	'EXIT STATUS' DIAGNOSTICS NOTES EXAMPLES BUGS 'SEE ALSO'; do
	grep -Eq "^\.SH \"?$sec\"?\$" "$page" || bad "missing section $sec"
done

n=1
while [ "$n" -le 15 ]; do
	grep -Eq "^\.B X$n\$" "$page" || bad "missing NOTES entry X$n"
	n=$((n + 1))
done

grep -Fq 'smtp\-sink' "$page" || bad "SEE ALSO lacks smtp-sink(1)"

if [ -n "${HELP_BIN:-}" ]; then
	help=$("$HELP_BIN" --help) || bad "$HELP_BIN --help failed"
	for l in $letters; do
		printf '%s\n' "$help" | grep -Eq -- "-$l\\b|-[A-Za-z0-9]*$l" ||
			bad "option -$l missing from $HELP_BIN --help"
	done
fi

if [ "$fail" -ne 0 ]; then
	exit 1
fi
echo "check-man: $page documents all $(printf "%s\n" "$letters" | wc -l) option letters, the long options and X1-X15"
