#!/usr/bin/env bash
# demo.sh: send mail with smtp-source to the project's own loopback sink
# (examples/sink.rs), then show the -c counter and what the sink received.
#
# Environment (all optional):
#   SMTP_SOURCE  the client to run (default: target/release/smtp-source);
#                set it to another smtp-source to compare
#   SINK         the sink (default: target/release/examples/sink)
#   SESSIONS     parallel sessions (default: 5)
#   MESSAGES     messages in all (default: 100)
#
# Only 127.0.0.1 is used, on a port the kernel picks; every process is
# bounded by timeout(1). Exits non-zero unless the sink got every message.
set -euo pipefail

SMTP_SOURCE=${SMTP_SOURCE:-target/release/smtp-source}
SINK=${SINK:-target/release/examples/sink}
SESSIONS=${SESSIONS:-5}
MESSAGES=${MESSAGES:-100}

die() {
	echo "demo: $*" >&2
	exit 1
}

[ -x "$SMTP_SOURCE" ] || die "$SMTP_SOURCE is not an executable (make build)"
[ -x "$SINK" ] || die "$SINK is not an executable (cargo build --release --example sink)"

WORK=$(mktemp -d)
SINK_PID=
cleanup() {
	[ -z "$SINK_PID" ] || kill "$SINK_PID" 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT

# start_sink OUT ARG...: starts the sink with ARGs (its output in OUT),
# sets SINK_PID and ADDR from its first line, "listening 127.0.0.1:PORT".
start_sink() {
	local out=$1
	shift
	timeout 70 "$SINK" "$@" --messages "$MESSAGES" --seconds 60 >"$out" &
	SINK_PID=$!
	for _ in $(seq 50); do
		[ -s "$out" ] && break
		sleep 0.1
	done
	ADDR=$(awk 'NR == 1 && $1 == "listening" { print $2 }' "$out")
	[ -n "$ADDR" ] || die "the sink did not start: $SINK $*"
}

echo "+ $SINK --messages $MESSAGES --seconds 60 &"
start_sink "$WORK/sink.out"

echo "+ $SMTP_SOURCE -c -s $SESSIONS -m $MESSAGES $ADDR"
start=$(date +%s.%N)
status=0
timeout 60 "$SMTP_SOURCE" -c -s "$SESSIONS" -m "$MESSAGES" "$ADDR" \
	>"$WORK/source.out" || status=$?
end=$(date +%s.%N)

# The counter is "1\r2\r...\rN\r\n": show its last value.
counter=$(tr '\r' '\n' <"$WORK/source.out" | grep -v '^$' | tail -n 1 || true)
elapsed=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }')
echo "smtp-source: exit status $status, -c counter ${counter:-none}, $elapsed s"

wait "$SINK_PID" || true
SINK_PID=
sed 1d "$WORK/sink.out"

[ "$status" -eq 0 ] || die "smtp-source failed (exit status $status)"
grep -q "messages=$MESSAGES " "$WORK/sink.out" ||
	die "expected the sink to receive $MESSAGES messages"
echo "demo: ok, $MESSAGES messages sent and received"

# Second leg: the same load over STARTTLS with certificate verification,
# AUTH PLAIN and XCLIENT client addresses, against the sink with those
# turned on. Skipped for a client without these options (the reference).
if ! "$SMTP_SOURCE" --help 2>&1 | grep -q -- '--tls'; then
	echo "demo: $SMTP_SOURCE has no --tls; TLS leg skipped"
	exit 0
fi
echo
echo "+ $SINK --tls --auth demo:demo-secret --xclient --ca-out ca.pem --messages $MESSAGES --seconds 60 &"
start_sink "$WORK/sink-tls.out" --tls --auth demo:demo-secret --xclient \
	--ca-out "$WORK/ca.pem"
PORT=${ADDR##*:}
echo "+ SMTP_SOURCE_PASSWORD=... $SMTP_SOURCE --tls=verify --tls-ca=ca.pem" \
	"--tls-servername=localhost --auth=PLAIN --auth-user=demo" \
	"--xclient=ADDR=192.0.2.0/28 --report -s $SESSIONS -m $MESSAGES 127.0.0.1:$PORT"
status=0
SMTP_SOURCE_PASSWORD=demo-secret timeout 60 "$SMTP_SOURCE" --tls=verify \
	--tls-ca="$WORK/ca.pem" --tls-servername=localhost --auth=PLAIN \
	--auth-user=demo --xclient=ADDR=192.0.2.0/28 --report \
	-s "$SESSIONS" -m "$MESSAGES" "127.0.0.1:$PORT" || status=$?
wait "$SINK_PID" || true
SINK_PID=
sed -n '2,/^first message/p' "$WORK/sink-tls.out" | sed '$d'
[ "$status" -eq 0 ] || die "smtp-source over TLS failed (exit status $status)"
grep -q "messages=$MESSAGES " "$WORK/sink-tls.out" ||
	die "expected the TLS sink to receive $MESSAGES messages"
echo "demo: ok, $MESSAGES messages over verified TLS with AUTH and XCLIENT"
