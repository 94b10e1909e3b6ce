#!/bin/sh
# check-man.sh: check that the manual page documents the whole interface.
#
# Usage: sh tests/check-man.sh [man/smtp-source.1]
#
# Checks, in the roff source:
#   - every letter of the getopt string has an option entry (\-X);
#   - every long option has an entry (\-\-name in a .TP/.TQ tag line):
#     the list below, and, when the sources are next to this script, every
#     name in src/longopts.rs's LONG_OPTIONS table (which also makes the
#     parser and --help);
#   - the environment variables and the required sections;
#   - the report's latency phases and error classes (from src/report/stats.rs
#     when it is there) and the keys of its "tls" object;
#   - one NOTES entry for each deliberate difference X1..X15.
# If HELP_BIN names a built smtp-source, every option letter and long
# option must also appear in its --help output.
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

# The long options, also when the sources are not at hand.
longopts='timeout max-connecting ehlo pipelining chunking report report-file
hlog rate arrival duration numbering help version
tls tls-wrapper tls-ca tls-servername tls-cert tls-key tls-resume
auth auth-user auth-file auth-plaintext xclient proxy proxy-source'

src=$(dirname "$0")/../src
if [ -r "$src/longopts.rs" ]; then
	# Every name of the LONG_OPTIONS table: the one list the parser and
	# --help read too.
	table=$(awk '/^pub const LONG_OPTIONS/ { f = 1; next }
		f && /^\];/ { f = 0 } f' "$src/longopts.rs" |
		sed -n 's/^ *name: "\([a-z0-9-]*\)",.*/\1/p')
	[ -n "$table" ] ||
		bad "cannot find the LONG_OPTIONS table in $src/longopts.rs"
	longopts="$longopts $table"
fi

# Long option entries: every --name in the tag lines after .TP or .TQ,
# such as `.BI \-\-tls\-ca= file` or `.BR \-\-tls [ =may ...`.
longtags=$(awk '
	(prev == ".TP" || prev == ".TQ") && /^\.(B|BI|BR) / {
		line = $0
		gsub(/\\-/, "-", line)
		while (match(line, /--[A-Za-z0-9]+(-[A-Za-z0-9]+)*/)) {
			print substr(line, RSTART + 2, RLENGTH - 2)
			line = substr(line, RSTART + RLENGTH)
		}
	}
	{ prev = $0 }
' "$page")

for o in $(printf '%s\n' $longopts | sort -u); do
	printf '%s\n' "$longtags" | grep -qx -- "$o" ||
		bad "long option --$o has no .TP entry"
done

# Environment variables: an entry each (.TP, then .B NAME).
for v in SMTP_SOURCE_TIMEOUT SMTP_SOURCE_PASSWORD; do
	awk -v v="$v" 'prev == ".TP" && $0 == ".B " v { found = 1 }
		{ prev = $0 } END { exit !found }' "$page" ||
		bad "ENVIRONMENT has no entry for $v"
done

# Report keys: each named in bold somewhere (.B key, .BR key ,
# .RB ( key ,).
keys='handshakes full resumed versions ciphers tls'
stats="$src/report/stats.rs"
if [ -r "$stats" ]; then
	phases=$(awk '/pub fn key/ { f = 1 } f && /^    }/ { f = 0 } f' \
		"$stats" | sed -n 's/.*=> "\([a-z_0-9]*\)",*$/\1/p')
	classes=$(awk '/^pub const ERROR_KEYS/ { f = 1; next }
		f && /^\];/ { f = 0 } f' "$stats" |
		sed -n 's/^ *"\([a-z_0-9]*\)",*$/\1/p')
	[ -n "$phases" ] && [ -n "$classes" ] ||
		bad "cannot find the report keys in $stats"
	keys="$keys $phases $classes"
else
	bad "cannot read $stats for the report keys"
fi
for k in $keys; do
	grep -Eq "^\.(B|BR|RB) (\( )?$k( |\$)" "$page" ||
		bad "report key $k is not described"
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
	for o in $(printf '%s\n' $longopts | sort -u); do
		printf '%s\n' "$help" | grep -Eq -- "--$o([^a-z0-9-]|\$)" ||
			bad "option --$o missing from $HELP_BIN --help"
	done
fi

if [ "$fail" -ne 0 ]; then
	exit 1
fi
echo "check-man: $page documents all $(printf "%s\n" "$letters" | wc -l) option letters, $(printf '%s\n' $longopts | sort -u | wc -l) long options, the report keys and X1-X15"
