#!/bin/sh
# sink-test.sh: fault recipes (a refusing, disconnecting or slow server)
# made with the options of Debian's smtp-sink (unpacked by `make
# reference`, never installed), run against it.
#
# Each recipe starts a fresh smtp-sink on 127.0.0.1 and a free port, runs
# our smtp-source against it, and compares the exit status and stderr with
# what is expected (Postfix's wording; ours where we deliberately differ:
# the man page's NOTES, X1-X15). Every run is bounded by `timeout` and, where it
# helps, by the sink's own -n limit. Exit 1 if any recipe differs.
#
# Environment: SMTP_SOURCE (default target/release/smtp-source) and
# REFERENCE (default target/reference).
set -u

REFERENCE=${REFERENCE:-target/reference}
SMTP_SOURCE=${SMTP_SOURCE:-target/release/smtp-source}
sink=$REFERENCE/usr/sbin/smtp-sink

for f in "$sink" "$SMTP_SOURCE"; do
    if [ ! -x "$f" ]; then
        echo "sink-test: $f not found (make build reference)" >&2
        exit 1
    fi
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/sink-test.XXXXXX")
sink_pid=
cleanup() {
    if [ -n "$sink_pid" ]; then
        kill "$sink_pid" 2>/dev/null
        wait "$sink_pid" 2>/dev/null
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# argv[0] must be plain "smtp-source" for the expected texts: run it
# through a symlink of that name on PATH.
mkdir "$tmp/bin"
abs=$(cd "$(dirname "$SMTP_SOURCE")" && pwd)/$(basename "$SMTP_SOURCE")
ln -s "$abs" "$tmp/bin/smtp-source"
sink_lib=$(cd "$REFERENCE/usr/lib/postfix" && pwd)

# As root smtp-sink insists on dropping privileges.
sink_user=
if [ "$(id -u)" = 0 ]; then
    sink_user="-u nobody"
fi

# A free loopback port: bind port 0 and let it go.
free_port() {
    python3 -c 'import socket; s = socket.socket(); \
s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null ||
        echo $((20000 + $$ % 10000))
}

# Wait (at most 5 s) until something listens on 127.0.0.1:$1. A probe
# connection would count as a sink session, so read /proc/net/tcp.
wait_listen() {
    hex=$(printf '%04X' "$1")
    n=0
    while [ $n -lt 250 ]; do
        if grep -q "^ *[0-9]*: 0100007F:$hex 00000000:0000 0A" \
            /proc/net/tcp 2>/dev/null; then
            return 0
        fi
        if ! kill -0 "$sink_pid" 2>/dev/null; then
            return 1
        fi
        sleep 0.02
        n=$((n + 1))
    done
    return 1
}

now() {
    date +%s.%N
}

failures=0
total=0

# run_recipe NAME TIMEOUT 'SINK OPTIONS' 'OUR OPTIONS' EXIT STDERR...
# SINK OPTIONS are shell words (quotes allowed). Each STDERR is one
# accepted stderr text (lines separated by newlines, "" for none).
run_recipe() {
    name=$1 stage=$2 sinkopts=$3 ours=$4 want_rc=$5
    shift 5
    total=$((total + 1))
    port=$(free_port)
    echo "== $name"
    echo "   smtp-sink $sinkopts 127.0.0.1:$port 4096"
    echo "   SMTP_SOURCE_TIMEOUT=$stage smtp-source $ours 127.0.0.1:$port"
    # Keep the accepted texts, then turn "$@" into the sink's options.
    n_alt=$#
    i=0
    for alt in "$@"; do
        printf '%s' "$alt" >"$tmp/want.$i"
        i=$((i + 1))
    done
    eval "set -- $sinkopts"
    LD_LIBRARY_PATH=$sink_lib timeout 90 "$sink" $sink_user "$@" \
        "127.0.0.1:$port" 4096 >/dev/null 2>"$tmp/sink.err" &
    sink_pid=$!
    if ! wait_listen "$port"; then
        echo "   FAIL: smtp-sink did not start:"
        sed 's/^/     /' "$tmp/sink.err"
        failures=$((failures + 1))
        return
    fi
    start=$(now)
    # shellcheck disable=SC2086 # our options are plain words
    (cd "$tmp" && PATH="$tmp/bin:$PATH" SMTP_SOURCE_TIMEOUT=$stage \
        timeout 60 smtp-source $ours "127.0.0.1:$port") \
        >"$tmp/out" 2>"$tmp/err"
    rc=$?
    took=$(awk "BEGIN { printf \"%.2f\", $(now) - $start }")
    kill "$sink_pid" 2>/dev/null
    wait "$sink_pid" 2>/dev/null
    sink_pid=
    printf '%s' "$(cat "$tmp/err")" >"$tmp/got"
    i=0
    ok=no
    while [ $i -lt "$n_alt" ]; do
        if [ "$rc" = "$want_rc" ] && cmp -s "$tmp/got" "$tmp/want.$i"; then
            ok=yes
        fi
        i=$((i + 1))
    done
    echo "   expected: exit $want_rc, stderr:"
    i=0
    while [ $i -lt "$n_alt" ]; do
        [ $i -gt 0 ] && echo "     or:"
        if [ -s "$tmp/want.$i" ]; then
            sed 's/^/     | /' "$tmp/want.$i"
            echo
        else
            echo "     (empty)"
        fi
        i=$((i + 1))
    done
    echo "   actual:   exit $rc, ${took}s, stderr:"
    if [ -s "$tmp/got" ]; then
        sed 's/^/     | /' "$tmp/got"
        echo
    else
        echo "     (empty)"
    fi
    if [ $ok = yes ]; then
        echo "   PASS"
    else
        echo "   FAIL"
        failures=$((failures + 1))
    fi
}

p="smtp-source"
nl='
'
lost_msg="$p: fatal: lost connection while sending message"
violates="550 This violates SMTP"
tls="530 5.7.0 Must issue a STARTTLS command first"
soft="450 4.3.0 Error: command failed"
hard="500 5.3.0 Error: command failed"
closing="421 4.0.0 Server closing connection"

# Baseline and slow servers: everything succeeds.
run_recipe baseline 300 "-n 20" "-s 5 -m 20" 0 ""
run_recipe slow_data_reply 300 "-w 2 -n 5" "-s 5 -m 5" 0 ""
run_recipe slow_rcpt_reply 300 "-W rcpt:1:50 -n 4" "-s 2 -m 4" 0 ""
run_recipe high_concurrency 300 "-m 3000 -n 1000" "-s 1000 -m 1000" 0 ""
run_recipe lmtp 300 "-L -n 2" "-L -r 3 -m 2" 0 ""

# Rejections: fatal, or warnings under -A; LMTP recipients.
run_recipe reject_rcpt 300 "-r rcpt" "" 1 \
    "$p: fatal: recipient rejected: $soft"
run_recipe reject_rcpt_a 300 "-r rcpt -n 3" "-A -m 3" 0 \
    "$p: warning: recipient rejected: $soft$nl$p: warning: recipient \
rejected: $soft$nl$p: warning: recipient rejected: $soft"
run_recipe reject_mail 300 "-f mail" "" 1 \
    "$p: fatal: sender rejected: $hard"
run_recipe starttls_required 300 "-f mail -B '$tls'" "" 1 \
    "$p: fatal: sender rejected: $tls"
run_recipe starttls_required_a 300 "-f mail -B '$tls' -n 2" "-A -m 2" 0 \
    "$p: warning: sender rejected: $tls$nl$p: warning: sender rejected: $tls"
run_recipe reply_421_rcpt 300 "-Q rcpt" "" 1 \
    "$p: fatal: recipient rejected: $closing"
run_recipe reply_421_rcpt_a 300 "-Q rcpt -n 2" "-A -m 2" 0 \
    "$p: warning: recipient rejected: $closing$nl$p: warning: recipient \
rejected: $closing"
run_recipe lmtp_reject_rcpt_a 300 "-L -r rcpt -n 1" "-L -A -r 2" 0 \
    "$p: warning: recipient rejected: $soft$nl$p: warning: recipient \
rejected: $soft"

# Disconnects during DATA and at QUIT (no reply to QUIT is no error:
# NOTES X5).
run_recipe silent_disconnect_data 300 "-q data" "" 1 \
    "$p: fatal: lost connection while sending DATA command"
run_recipe silent_disconnect_quit 300 "-q quit -n 1" "" 0 ""
# 2 MB may fit in the loopback socket buffers before the sink gives up:
# then the 550 is read as the end-of-data reply (the reference races the
# same way).
run_recipe abort_in_data_2mb 300 "-A 0" "-l 2000000" 1 \
    "$lost_msg" "$lost_msg (server said: $violates)" \
    "$p: fatal: end of data rejected: $violates"
run_recipe abort_in_data_20mb 300 "-A 0" "-l 20000000" 1 \
    "$lost_msg" "$lost_msg (server said: $violates)"

# Deadlines (every wait has one: NOTES X1), with T = 1 s: a server that
# stops reading, and a late end-of-data reply.
run_recipe slow_reader 1 "-H 5 -T 4096" "-T 4096 -l 20000000" 1 \
    "$p: fatal: timeout while sending message"
run_recipe late_end_of_data_reply 1 "-W .:3" "" 1 \
    "$p: fatal: timeout while sending message"

echo
echo "sink-test: $((total - failures)) of $total recipes as expected"
[ "$failures" -eq 0 ]
