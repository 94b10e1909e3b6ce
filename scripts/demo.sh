#!/usr/bin/env bash
# demo.sh: send mail with smtp-source to Debian's smtp-sink on loopback,
# then show the -c counter and what the sink counted.
#
# Environment (all optional):
#   SMTP_SOURCE  the client to run (default: target/release/smtp-source);
#                set it to the reference binary to compare
#   REFERENCE    the unpacked postfix package (default: target/reference),
#                made by `make reference`
#   SESSIONS     parallel sessions (default: 5)
#   MESSAGES     messages in all (default: 100)
#
# Only 127.0.0.1 is used, on a free port; every process is bounded by
# timeout(1). Exits non-zero when the sink did not get every message.
set -euo pipefail

SMTP_SOURCE=${SMTP_SOURCE:-target/release/smtp-source}
REFERENCE=${REFERENCE:-target/reference}
SESSIONS=${SESSIONS:-5}
MESSAGES=${MESSAGES:-100}

die() {
	echo "demo: $*" >&2
	exit 1
}

# Debian's package puts smtp-sink in usr/sbin and its shared libraries in
# usr/lib/postfix; accept a flatter layout too.
find_sink() {
	local c
	for c in "$REFERENCE/usr/sbin/smtp-sink" "$REFERENCE/sbin/smtp-sink" \
		"$REFERENCE/bin/smtp-sink" "$REFERENCE/smtp-sink"; do
		if [ -x "$c" ]; then
			echo "$c"
			return 0
		fi
	done
	return 1
}

# A port that nothing listens on now: bind port 0 and read it back.
free_port() {
	if command -v python3 >/dev/null 2>&1; then
		python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
	else
		local p
		while :; do
			p=$((20000 + RANDOM % 30000))
			listening "$p" || { echo "$p"; return 0; }
		done
	fi
}

# Is someone listening on 127.0.0.1:$1 (or on all addresses)?
listening() {
	local hex
	hex=$(printf '%04X' "$1")
	awk -v want="$hex" '$4 == "0A" {
		split($2, a, ":"); if (a[2] == want) found = 1
	} END { exit !found }' /proc/net/tcp
}

[ -x "$SMTP_SOURCE" ] ||
	die "$SMTP_SOURCE is not an executable (run make build)"
SINK=$(find_sink) ||
	die "no smtp-sink under $REFERENCE (run make reference)"
LIBDIR="$REFERENCE/usr/lib/postfix"
export LD_LIBRARY_PATH="$LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

PORT=$(free_port)
WORK=$(mktemp -d)
SINK_PID=
cleanup() {
	if [ -n "$SINK_PID" ]; then
		kill "$SINK_PID" 2>/dev/null || true
		wait "$SINK_PID" 2>/dev/null || true
	fi
	rm -rf "$WORK"
}
trap cleanup EXIT

# smtp-sink refuses to run as root without -u.
sink_args=(-c)
if [ "$(id -u)" -eq 0 ]; then
	sink_args+=(-u nobody)
fi
echo "+ $SINK ${sink_args[*]} 127.0.0.1:$PORT 256 &"
timeout 120 "$SINK" "${sink_args[@]}" "127.0.0.1:$PORT" 256 \
	>"$WORK/sink.out" 2>"$WORK/sink.err" &
SINK_PID=$!

# Wait up to 5 s for the sink to listen.
for _ in $(seq 50); do
	listening "$PORT" && break
	kill -0 "$SINK_PID" 2>/dev/null ||
		{ cat "$WORK/sink.err" >&2; die "smtp-sink did not start"; }
	sleep 0.1
done
listening "$PORT" || die "smtp-sink is not listening on 127.0.0.1:$PORT"

echo "+ $SMTP_SOURCE -c -s $SESSIONS -m $MESSAGES 127.0.0.1:$PORT"
start=$(date +%s.%N)
status=0
timeout 60 "$SMTP_SOURCE" -c -s "$SESSIONS" -m "$MESSAGES" \
	"127.0.0.1:$PORT" >"$WORK/source.out" 2>"$WORK/source.err" ||
	status=$?
end=$(date +%s.%N)
cat "$WORK/source.err" >&2

# The counter is "1\r2\r...\rN\r\n": show its last value.
counter=$(tr '\r' '\n' <"$WORK/source.out" | grep -v '^$' | tail -n 1 || true)
elapsed=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }')
echo "smtp-source: exit status $status, -c counter ${counter:-none}," \
	"$elapsed s"

# Give the sink a moment to count the last QUIT, then stop it.
sleep 0.3
kill "$SINK_PID" 2>/dev/null || true
wait "$SINK_PID" 2>/dev/null || true
SINK_PID=

# smtp-sink -c rewrites "sess=N quit=N mesg=N" in place after \r.
received=$(tr '\r' '\n' <"$WORK/sink.out" | grep -v '^$' | tail -n 1 || true)
echo "smtp-sink received: ${received:-nothing}"

[ "$status" -eq 0 ] || die "smtp-source failed (exit status $status)"
case "$received" in
*"mesg=$MESSAGES") echo "demo: ok, $MESSAGES messages sent and received" ;;
*) die "expected mesg=$MESSAGES from smtp-sink" ;;
esac
