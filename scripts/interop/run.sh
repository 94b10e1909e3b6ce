#!/usr/bin/env bash
# scripts/interop/run.sh: `make interop`. Our smtp-source against servers
# that nobody here wrote:
#   - Postfix's smtpd (Debian's package), an instance of its own: STARTTLS,
#     SMTPS, a TLS-required listener, a haproxy (PROXY v1/v2) listener,
#     XCLIENT, SASL through Dovecot; every message goes to the discard
#     transport and is counted in Postfix's own log;
#   - Dovecot's LMTP server (on 127.0.0.1 and on a UNIX socket), delivering
#     into Maildirs whose files are counted;
#   - aiosmtpd (PyPI) with STARTTLS and AUTH required, counting messages;
#   - a second Postfix in a network namespace, loaded by three client
#     namespaces at once, one shard each (netns-postfix.sh).
# Each case runs the client, asserts its exit status (and stderr for the
# failures we ask for) and that what the server received equals the
# client's JSON report (messages.accepted). Before the client cases,
# "fixture" cases check each server feature with Python's smtplib, so a
# broken server setup is told apart from a broken client.
#
# Needs: root, Debian (apt-get; it installs postfix, dovecot-core,
# dovecot-lmtpd, openssl, with service starts denied by a policy-rc.d),
# python3 with pip (it installs aiosmtpd), and the release binary
# (`make build`). Everything it makes lives under $INTEROP_DIR (default
# target/interop; the logs stay there after the run); every server listens
# on 127.0.0.1 or a UNIX socket only and is stopped at exit.
#
# `run.sh --serve [SECONDS]` only starts the servers and keeps them up
# (addresses in $INTEROP_DIR/servers.env), to try things by hand.
#
# Last, the capacity cases: Postfix reloaded with default_process_limit=4
# ($INTEROP_CAPACITY_LIMIT) and each session holding its smtpd for a
# second, three --find-capacity searches (SLO: median transaction under
# 1.5 s, no errors), each must find a rate near the knee of 4 a second,
# and the three must agree within 10%; the rates go to
# $INTEROP_DIR/capacity.txt.
# `run.sh --capacity` runs only those (Postfix alone).
#
# Environment: SMTP_SOURCE (default target/release/smtp-source),
# INTEROP_DIR (default target/interop), INTEROP_SKIP_INSTALL=1 (use what is
# installed). Prints PASS/FAIL per case and `N passed, N failed` at the end;
# exits 1 if any case failed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

SMTP_SOURCE=$(realpath -m "${SMTP_SOURCE:-$repo/target/release/smtp-source}")
WORK=$(realpath -m "${INTEROP_DIR:-$repo/target/interop}")
cd "$repo"
DOMAIN=interop.test
TLS=$WORK/tls
PF=$WORK/postfix
PF_LOG=$PF/maillog
DC=$WORK/dovecot
AIO=$WORK/aiosmtpd
CASES=$WORK/cases
# The Python that runs the aiosmtpd server.
AIO_PYTHON=python3
# Every client run: the client's own deadline, and ours around it.
CLIENT_TIMEOUT=20
RUN_TIMEOUT=60

say() { printf '%s\n' "$*"; }
# shellcheck source=scripts/interop/netns-postfix.sh
. "$here/netns-postfix.sh"
die() {
	printf 'interop: %s\n' "$*" >&2
	exit 1
}

# ---------------------------------------------------------------------------
# Packages

POLICY_RC=/usr/sbin/policy-rc.d
made_policy_rc=
install_packages() {
	if [ "${INTEROP_SKIP_INSTALL:-}" = 1 ]; then
		return
	fi
	[ "$(id -u)" = 0 ] || die "must run as root (apt-get, postfix, dovecot)"
	local pkgs=(postfix dovecot-core dovecot-lmtpd openssl) missing=() p
	for p in "${pkgs[@]}"; do
		if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
			grep -q 'install ok installed'; then
			missing+=("$p")
		fi
	done
	if [ "${#missing[@]}" -gt 0 ]; then
		say "installing ${missing[*]}"
		# The packages' postinst must not start the system's Postfix or
		# Dovecot: invoke-rc.d asks policy-rc.d, and 101 means "no".
		if [ ! -e "$POLICY_RC" ]; then
			printf '#!/bin/sh\nexit 101\n' >"$POLICY_RC"
			chmod 755 "$POLICY_RC"
			made_policy_rc=1
		fi
		export DEBIAN_FRONTEND=noninteractive
		echo "postfix postfix/main_mailer_type select No configuration" |
			debconf-set-selections
		apt-get update -qq
		apt-get install -y -qq --no-install-recommends "${missing[@]}" \
			>"$WORK/apt.log" 2>&1 ||
			{
				tail -20 "$WORK/apt.log" >&2
				die "apt-get install ${missing[*]} failed"
			}
		remove_policy_rc
	fi
	if ! "$AIO_PYTHON" -c 'import aiosmtpd' 2>/dev/null; then
		say "installing aiosmtpd"
		if ! "$AIO_PYTHON" -m pip install -q --disable-pip-version-check \
			--root-user-action=ignore aiosmtpd >"$WORK/pip.log" 2>&1; then
			# No pip: Debian's package, for Debian's python3.
			tail -5 "$WORK/pip.log" >&2
			say "pip install aiosmtpd failed; trying python3-aiosmtpd"
			apt-get install -y -qq --no-install-recommends python3-aiosmtpd \
				>>"$WORK/apt.log" 2>&1 ||
				die "neither pip nor apt-get could install aiosmtpd"
			AIO_PYTHON=/usr/bin/python3
		fi
	fi
}

remove_policy_rc() {
	if [ -n "$made_policy_rc" ]; then
		rm -f "$POLICY_RC"
		made_policy_rc=
	fi
}

# ---------------------------------------------------------------------------
# Helpers: ports, waits, templates

# N distinct loopback ports free on both 127.0.0.1 and ::1 (bound at
# once, then let go).
free_ports() {
	python3 - "$1" <<'EOF'
import socket, sys
socks, ports = [], []
while len(ports) < int(sys.argv[1]):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s6 = socket.socket(socket.AF_INET6)
    try:
        s6.bind(("::1", port))
    except OSError:
        continue
    socks += [s, s6]
    ports.append(port)
print(" ".join(map(str, ports)))
EOF
}

# Is something listening on 127.0.0.1:$1? (/proc, no probe connection.)
listening() {
	local hex
	hex=$(printf '%04X' "$1")
	grep -q "^ *[0-9]*: 0100007F:$hex 00000000:0000 0A" /proc/net/tcp
}

# ... on [::1]:$1?
listening6() {
	local hex
	hex=$(printf '%04X' "$1")
	grep -q "^ *[0-9]*: 00000000000000000000000001000000:$hex 0\{32\}:0000 0A" \
		/proc/net/tcp6
}

# wait_for SECONDS DESCRIPTION COMMAND...: poll COMMAND every 0.2 s.
wait_for() {
	local secs=$1 what=$2 i
	shift 2
	for ((i = 0; i < secs * 5; i++)); do
		if "$@"; then
			return 0
		fi
		sleep 0.2
	done
	say "interop: timed out after ${secs}s waiting for $what" >&2
	return 1
}

# render TEMPLATE OUT: fill in @WORK@ and the ports.
render() {
	sed -e "s|@WORK@|$WORK|g" \
		-e "s|@PF_SMTP@|$PF_SMTP|g" -e "s|@PF_SMTPS@|$PF_SMTPS|g" \
		-e "s|@PF_PROXY@|$PF_PROXY|g" -e "s|@PF_ENCRYPT@|$PF_ENCRYPT|g" \
		-e "s|@PF_SMTP6@|$PF_SMTP6|g" -e "s|@PF_PROXY6@|$PF_PROXY6|g" \
		-e "s|@PF_SMALL@|$PF_SMALL|g" -e "s|@PF_HOLD@|$PF_HOLD|g" \
		-e "s|@LMTP_PORT@|$LMTP_PORT|g" "$1" >"$2"
}

pid_alive() {
	[ -n "$1" ] && kill -0 "$1" 2>/dev/null
}

pid_dead() {
	! pid_alive "$1"
}

# ---------------------------------------------------------------------------
# Certificates: a CA, a server certificate for localhost (and 127.0.0.1)
# signed by it, a client certificate, and an unrelated CA for the
# must-fail verification.

make_certs() {
	mkdir -p "$TLS"
	(
		cd "$TLS"
		local ossl=(openssl)
		for ca in ca other-ca; do
			"${ossl[@]}" req -x509 -newkey rsa:2048 -nodes -days 30 \
				-keyout "$ca.key" -out "$ca.pem" -subj "/CN=interop $ca" \
				-addext basicConstraints=critical,CA:TRUE \
				-addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
		done
		printf '%s\n' "subjectAltName=DNS:localhost,IP:127.0.0.1" \
			"basicConstraints=CA:FALSE" \
			"keyUsage=digitalSignature,keyEncipherment" \
			"extendedKeyUsage=serverAuth" >server.ext
		printf '%s\n' "basicConstraints=CA:FALSE" \
			"keyUsage=digitalSignature,keyEncipherment" \
			"extendedKeyUsage=clientAuth" >client.ext
		for who in server client; do
			cn=localhost
			[ "$who" = client ] && cn=client.interop.test
			"${ossl[@]}" req -newkey rsa:2048 -nodes -keyout "$who.key" \
				-out "$who.csr" -subj "/CN=$cn" 2>/dev/null
			"${ossl[@]}" x509 -req -in "$who.csr" -CA ca.pem -CAkey ca.key \
				-CAcreateserial -days 30 -extfile "$who.ext" \
				-out "$who.pem" 2>/dev/null
		done
		chmod 644 ./*.pem ./*.key
	)
}

# ---------------------------------------------------------------------------
# Postfix

pf_started=
start_postfix() {
	mkdir -p "$PF/conf" "$PF/queue" "$PF/data"
	chown postfix:postfix "$PF/data"
	render "$here/postfix-main.cf" "$PF/conf/main.cf"
	render "$here/postfix-master.cf" "$PF/conf/master.cf"
	: >"$PF_LOG"
	# `postfix check` makes the queue directories and sets their owners.
	postfix -c "$PF/conf" check >"$PF/check.log" 2>&1 ||
		{
			cat "$PF/check.log" >&2
			die "postfix check failed"
		}
	pf_started=1
	postfix -c "$PF/conf" start >"$PF/start.log" 2>&1 ||
		{
			cat "$PF/start.log" "$PF_LOG" >&2
			die "postfix start failed"
		}
	local p
	for p in "$PF_SMTP" "$PF_SMTPS" "$PF_PROXY" "$PF_ENCRYPT" "$PF_SMALL" \
		"$PF_HOLD"; do
		wait_for 15 "Postfix on 127.0.0.1:$p" listening "$p" ||
			{
				cat "$PF_LOG" >&2
				die "Postfix did not start"
			}
	done
	for p in "$PF_SMTP6" "$PF_PROXY6"; do
		wait_for 15 "Postfix on [::1]:$p" listening6 "$p" ||
			{
				cat "$PF_LOG" >&2
				die "Postfix did not start"
			}
	done
	say "postfix $(postconf -c "$PF/conf" -h mail_version):" \
		"smtp $PF_SMTP, smtps $PF_SMTPS, proxy $PF_PROXY," \
		"encrypt $PF_ENCRYPT, [::1] smtp $PF_SMTP6, [::1] proxy $PF_PROXY6," \
		"4 KB limit $PF_SMALL, hold $PF_HOLD"
}

pf_master_pid() {
	head -1 "$PF/queue/pid/master.pid" 2>/dev/null | tr -d ' ' || true
}

stop_postfix() {
	[ -n "$pf_started" ] || return 0
	local pid
	pid=$(pf_master_pid)
	postfix -c "$PF/conf" stop >/dev/null 2>&1 || true
	if [ -n "$pid" ] && ! wait_for 15 "Postfix to stop" pid_dead "$pid"; then
		postfix -c "$PF/conf" abort >/dev/null 2>&1 || true
	fi
	pf_started=
}

# Postfix logs asynchronously: a case remembers the log's size before the
# client runs and looks only at what was written after.
PF_MARK=0
pf_mark() {
	PF_MARK=$(stat -c %s "$PF_LOG")
}

pf_segment() {
	tail -c +$((PF_MARK + 1)) "$PF_LOG"
}

# Messages that went through: qmgr logs "removed" once per message, after
# the discard transport took every recipient.
pf_received() {
	pf_segment | grep -cE 'postfix/qmgr\[[0-9]+\]: [0-9A-F]+: removed$' || true
}

pf_received_is() {
	[ "$(pf_received)" = "$1" ]
}

# ---------------------------------------------------------------------------
# Dovecot

dc_started=
start_dovecot() {
	mkdir -p "$DC/run" "$DC/state" "$DC/mail" "$DC/home"
	render "$here/dovecot.conf" "$DC/dovecot.conf"
	# user:password:uid:gid:gecos:home:shell; the mail belongs to nobody.
	local uid gid u
	uid=$(id -u nobody)
	gid=$(id -g nobody)
	: >"$DC/users"
	for u in alice:secret1 bob:secret2 carol:secret3 dave:secret4; do
		printf '%s:{PLAIN}%s:%s:%s::%s/home/%s::\n' "${u%%:*}" "${u#*:}" \
			"$uid" "$gid" "$DC" "${u%%:*}" >>"$DC/users"
	done
	chmod 640 "$DC/users"
	chgrp dovecot "$DC/users"
	chown nobody "$DC/mail" "$DC/home"
	dc_started=1
	dovecot -c "$DC/dovecot.conf" >"$DC/start.log" 2>&1 ||
		{
			cat "$DC/start.log" "$DC/dovecot.log" >&2 || true
			die "dovecot failed to start"
		}
	if ! {
		wait_for 15 "Dovecot LMTP on 127.0.0.1:$LMTP_PORT" listening "$LMTP_PORT" &&
			wait_for 15 "Dovecot's LMTP socket" test -S "$DC/lmtp.sock" &&
			wait_for 15 "Dovecot's auth socket" test -S "$PF/queue/private/auth"
	}; then
		cat "$DC/dovecot.log" >&2 || true
		die "Dovecot did not start"
	fi
	say "dovecot $(dovecot --version | cut -d' ' -f1):" \
		"lmtp 127.0.0.1:$LMTP_PORT and unix:$DC/lmtp.sock"
}

stop_dovecot() {
	[ -n "$dc_started" ] || return 0
	local pid
	pid=$(cat "$DC/run/master.pid" 2>/dev/null || true)
	dovecot -c "$DC/dovecot.conf" stop >/dev/null 2>&1 || true
	if [ -n "$pid" ]; then
		if ! wait_for 15 "Dovecot to stop" pid_dead "$pid" &&
			[ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dovecot ]; then
			kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	dc_started=
}

# Delivered messages: one file per message in the Maildirs.
dc_received() {
	find "$DC/mail" -type f \( -path '*/new/*' -o -path '*/cur/*' \) | wc -l
}

# ---------------------------------------------------------------------------
# aiosmtpd

aio_pid=
start_aiosmtpd() {
	mkdir -p "$AIO"
	"$AIO_PYTHON" "$here/aiosmtpd_server.py" "$AIO_PORT" "$TLS/server.pem" \
		"$TLS/server.key" "$AIO/count" alice:secret1 bob:secret2 \
		>"$AIO/server.log" 2>&1 &
	aio_pid=$!
	echo "$aio_pid" >"$AIO/pid"
	wait_for 20 "aiosmtpd on 127.0.0.1:$AIO_PORT" listening "$AIO_PORT" ||
		{
			cat "$AIO/server.log" >&2
			die "aiosmtpd did not start"
		}
	say "aiosmtpd $("$AIO_PYTHON" -c 'import aiosmtpd; print(aiosmtpd.__version__)'):" \
		"127.0.0.1:$AIO_PORT"
}

stop_aiosmtpd() {
	[ -n "$aio_pid" ] || return 0
	kill -TERM "$aio_pid" 2>/dev/null || true
	wait_for 10 "aiosmtpd to stop" pid_dead "$aio_pid" ||
		kill -KILL "$aio_pid" 2>/dev/null || true
	wait "$aio_pid" 2>/dev/null || true
	aio_pid=
}

aio_received() {
	cat "$AIO/count"
}

# ---------------------------------------------------------------------------
# Start, stop, and the rule that nothing listens beyond loopback

# A run that was killed (SIGKILL) left its servers up: stop them through
# their own configuration before their directory goes.
stop_leftovers() {
	if [ -f "$PF/conf/main.cf" ] && [ -n "$(pf_master_pid)" ]; then
		pf_started=1
	fi
	if [ -f "$DC/dovecot.conf" ] && [ -f "$DC/run/master.pid" ]; then
		dc_started=1
	fi
	aio_pid=$(cat "$AIO/pid" 2>/dev/null || true)
	if [ -n "$aio_pid" ] &&
		! grep -qs aiosmtpd_server "/proc/$aio_pid/cmdline"; then
		aio_pid=
	fi
	stop_aiosmtpd
	stop_dovecot
	stop_postfix
}

serve_pid=
stop_all() {
	set +e
	if [ -n "$serve_pid" ]; then
		kill "$serve_pid" 2>/dev/null
	fi
	stop_aiosmtpd
	stop_dovecot
	stop_postfix
	stop_netns_postfix
	remove_policy_rc
}

# Our daemons' listening sockets, by process name, must all be on loopback.
check_loopback_only() {
	command -v ss >/dev/null 2>&1 || return 0
	local bad
	bad=$(ss -Hltnp 2>/dev/null |
		grep -E 'users:\(\("(master|smtpd|dovecot|lmtp|auth|python3?)"' |
		awk '{print $4}' |
		grep -vE '^(127\.[0-9.]+|\[::1\]|\[::ffff:127\.[0-9.]+\]):[0-9]+$' ||
		true)
	if [ -n "$bad" ]; then
		say "interop: listening beyond loopback: $bad" >&2
		return 1
	fi
}

# ---------------------------------------------------------------------------
# Cases

PASSED=0
FAILED=0
FAILED_NAMES=()
CASE=
CASE_ERR=()
CASE_CMD=
CASE_DIR=
RC=0
# What each server had received before the case ran.
DC_BEFORE=0
AIO_BEFORE=0

CASE_T0=
begin() {
	CASE=$1
	CASE_T0=$EPOCHREALTIME
	CASE_ERR=()
	CASE_CMD=
	CASE_DIR=$CASES/$CASE
	mkdir -p "$CASE_DIR"
	pf_mark
	DC_BEFORE=$(dc_received)
	AIO_BEFORE=$(aio_received)
}

err() {
	CASE_ERR+=("$*")
}

end() {
	local secs
	secs=$(awk -v a="$CASE_T0" -v b="$EPOCHREALTIME" \
		'BEGIN { printf "%.1f", b - a }')
	if [ "${#CASE_ERR[@]}" -eq 0 ]; then
		PASSED=$((PASSED + 1))
		say "PASS $CASE (${secs} s)"
		return
	fi
	FAILED=$((FAILED + 1))
	FAILED_NAMES+=("$CASE")
	say "FAIL $CASE (${secs} s)"
	local e
	for e in "${CASE_ERR[@]}"; do
		say "     - $e"
	done
	if [ -n "$CASE_CMD" ]; then
		say "     command: $CASE_CMD"
	fi
	if [ -s "$CASE_DIR/stderr" ]; then
		say "     stderr (last 15 lines):"
		tail -15 "$CASE_DIR/stderr" | sed 's/^/       | /'
	fi
}

# client ARGS...: run our smtp-source with a JSON report and our deadline.
# SMTP_SOURCE_PASSWORD, when set by the caller, goes along.
client() {
	local argv=("$SMTP_SOURCE" "--timeout=$CLIENT_TIMEOUT"
		"--report-file=$CASE_DIR/report.json" "$@")
	CASE_CMD=${SMTP_SOURCE_PASSWORD:+SMTP_SOURCE_PASSWORD=$SMTP_SOURCE_PASSWORD }${argv[*]}
	rm -f "$CASE_DIR/report.json"
	RC=0
	timeout -k 5 "$RUN_TIMEOUT" "${argv[@]}" </dev/null \
		>"$CASE_DIR/stdout" 2>"$CASE_DIR/stderr" || RC=$?
	if [ "$RC" = 124 ] || [ "$RC" = 137 ]; then
		err "client still running after ${RUN_TIMEOUT}s (killed)"
	fi
}

# report FIELD: messages.FIELD of the client's JSON report ("" if none).
report() {
	python3 -c 'import json, sys
try:
    print(json.load(open(sys.argv[1]))["messages"][sys.argv[2]])
except Exception:
    pass' "$CASE_DIR/report.json" "$1"
}

# received SERVER: what SERVER received during the case (Postfix: whatever
# its log shows now, without waiting).
received() {
	case $1 in
	postfix) pf_received ;;
	dovecot) echo $(($(dc_received) - DC_BEFORE)) ;;
	aiosmtpd) echo $(($(aio_received) - AIO_BEFORE)) ;;
	esac
}

# server_got SERVER N: the server received N messages in this case. For
# Postfix, wait (at most 30 s) for its log to show them, then a moment
# more for any surplus.
server_got() {
	local server=$1 want=$2 got
	if [ "$server" = postfix ]; then
		wait_for 30 "Postfix to log $want messages" pf_received_is "$want" ||
			true
		sleep 0.5
	fi
	got=$(received "$server")
	if [ "$got" != "$want" ]; then
		err "$server received $got messages, expected $want"
	fi
}

# expect_ok SERVER [ACCEPTED]: exit 0, the report's accepted count
# (= ACCEPTED when given), and the server received exactly that many.
expect_ok() {
	local server=$1 want=${2:-} accepted
	if [ "$RC" != 0 ]; then
		err "exit status $RC, expected 0"
	fi
	accepted=$(report accepted)
	if [ -z "$accepted" ]; then
		err "no JSON report in $CASE_DIR/report.json"
		return
	fi
	if [ -n "$want" ] && [ "$accepted" != "$want" ]; then
		err "report: $accepted accepted, expected $want"
	fi
	server_got "$server" "$accepted"
}

# expect_report FIELD VALUE
expect_report() {
	local got
	got=$(report "$1")
	if [ "$got" != "$2" ]; then
		err "report: messages.$1 is '${got}', expected $2"
	fi
}

# expect_tls FIELD OP N: the report's tls.FIELD compared with N (OP is a
# test(1) operator: -eq, -ge, ...), e.g. expect_tls resumed -ge 1.
expect_tls() {
	local got
	got=$(python3 -c 'import json, sys
try:
    print(json.load(open(sys.argv[1]))["tls"][sys.argv[2]])
except Exception:
    pass' "$CASE_DIR/report.json" "$1")
	if [ -z "$got" ] || ! test "$got" "$2" "$3"; then
		err "report: tls.$1 is '${got}', expected $2 $3"
	fi
}

# expect_codes COMMAND CODES: the report's reply codes for COMMAND are
# exactly CODES (comma-separated, sorted), e.g. expect_codes MAIL 250.
expect_codes() {
	local got
	got=$(python3 -c 'import json, sys
try:
    r = json.load(open(sys.argv[1]))
    print(",".join(sorted(r["reply_codes"].get(sys.argv[2], {}))))
except Exception:
    pass' "$CASE_DIR/report.json" "$1")
	if [ "$got" != "$2" ]; then
		err "report: reply codes to $1 are '${got}', expected $2"
	fi
}

# expect_fail STATUS REGEX: exit STATUS and stderr matching REGEX
# (grep -E, case-insensitive).
expect_fail() {
	if [ "$RC" != "$1" ]; then
		err "exit status $RC, expected $1"
	fi
	if ! grep -Eiq -- "$2" "$CASE_DIR/stderr"; then
		err "stderr does not match /$2/"
	fi
	if grep -q 'usage:' "$CASE_DIR/stderr"; then
		err "a usage error, not the failure asked for"
	fi
}

# expect_pf_log REGEX [MIN]: at least MIN (default 1) distinct matches of
# REGEX (grep -Eo) in Postfix's log since the case began.
expect_pf_log() {
	local n
	n=$({ pf_segment | grep -Eo -- "$1" || true; } | sort -u |
		tee "$CASE_DIR/log-matches" | wc -l)
	if [ "$n" -lt "${2:-1}" ]; then
		err "Postfix log has $n distinct /$1/, expected at least ${2:-1}"
	fi
}

# expect_pf_clients_only REGEX: every message Postfix queued since the
# case began came from a client (name[addr]) matching REGEX.
expect_pf_clients_only() {
	local others
	others=$({ pf_segment | grep -Eo ': client=[^ ,]+' || true; } |
		sed 's/^: client=//' | { grep -Ev -- "^$1\$" || true; } | sort -u |
		tr '\n' ' ')
	if [ -n "$others" ]; then
		err "Postfix logged other clients: $others"
	fi
}

# probe NAME SERVER CHECK ARGS...: a fixture case, Python's smtplib
# against one server feature (scripts/interop/probe.py).
probe() {
	local name=$1 server=$2 n
	shift 2
	begin "fixture-$name"
	CASE_CMD="python3 scripts/interop/probe.py $*"
	RC=0
	timeout -k 5 "$RUN_TIMEOUT" python3 "$here/probe.py" "$@" \
		>"$CASE_DIR/stdout" 2>"$CASE_DIR/stderr" || RC=$?
	n=$(sed -n 's/^accepted //p' "$CASE_DIR/stdout")
	if [ "$RC" != 0 ] || [ -z "$n" ]; then
		err "probe failed (exit $RC)"
	else
		server_got "$server" "$n"
	fi
}

fixtures() {
	say "== fixtures (Python's smtplib against each server feature)"
	probe postfix-starttls postfix postfix-starttls "$PF_SMTP" "$TLS/ca.pem"
	end
	probe postfix-smtps postfix postfix-smtps "$PF_SMTPS" "$TLS/ca.pem"
	end
	probe postfix-xclient postfix postfix-xclient "$PF_SMTP"
	expect_pf_log 'client=unknown\[10\.0\.0\.9\]'
	end
	probe postfix-proxy-v1 postfix postfix-proxy "$PF_PROXY" v1 192.0.2.7
	expect_pf_log 'client=unknown\[192\.0\.2\.7\]'
	end
	probe postfix-proxy-v2 postfix postfix-proxy "$PF_PROXY" v2 192.0.2.6
	expect_pf_log 'client=unknown\[192\.0\.2\.6\]'
	end
	probe postfix-encrypt postfix postfix-encrypt "$PF_ENCRYPT" "$TLS/ca.pem"
	end
	probe lmtp-inet dovecot lmtp "127.0.0.1:$LMTP_PORT" "$TLS/ca.pem"
	end
	probe lmtp-unix dovecot lmtp "unix:$DC/lmtp.sock" -
	end
	probe aiosmtpd aiosmtpd aiosmtpd "$AIO_PORT" "$TLS/ca.pem"
	end
	begin fixture-loopback-only
	check_loopback_only || err "a server listens beyond loopback"
	end
}

# --- Postfix ---------------------------------------------------------------

postfix_cases() {
	local smtp=127.0.0.1:$PF_SMTP ca=$TLS/ca.pem
	say "== Postfix"

	begin postfix-starttls-may
	client --tls=may -s 2 -m 4 -t "rcpt@$DOMAIN" "$smtp"
	expect_ok postfix 4
	end

	begin postfix-starttls-encrypt
	client --tls=encrypt -s 2 -m 4 -t "rcpt@$DOMAIN" "$smtp"
	expect_ok postfix 4
	end

	begin postfix-starttls-bare-tls
	client --tls -m 2 -t "rcpt@$DOMAIN" "$smtp"
	expect_ok postfix 2
	end

	begin postfix-starttls-verify
	client --tls=verify --tls-ca="$ca" --tls-servername=localhost -s 2 -m 4 \
		-t "rcpt@$DOMAIN" "$smtp"
	expect_ok postfix 4
	end

	begin postfix-verify-wrong-ca
	client --tls=verify --tls-ca="$TLS/other-ca.pem" \
		--tls-servername=localhost -m 1 -t "rcpt@$DOMAIN" "$smtp"
	expect_fail 1 'certificate|verif'
	server_got postfix 0
	end

	begin postfix-verify-wrong-name
	client --tls=verify --tls-ca="$ca" --tls-servername=mx.example.org \
		-m 1 -t "rcpt@$DOMAIN" "$smtp"
	expect_fail 1 'certificate|verif|name'
	server_got postfix 0
	end

	begin postfix-ipv6-starttls-verify
	client --tls=verify --tls-ca="$ca" --tls-servername=localhost -s 2 -m 4 \
		-t "rcpt@$DOMAIN" "[::1]:$PF_SMTP6"
	expect_ok postfix 4
	expect_pf_clients_only 'unknown\[::1\]'
	end

	begin postfix-smtps
	client --tls-wrapper --tls=verify --tls-ca="$ca" \
		--tls-servername=localhost -s 2 -m 4 -t "rcpt@$DOMAIN" \
		"127.0.0.1:$PF_SMTPS"
	expect_ok postfix 4
	end

	begin postfix-tls-reuse-connection
	client --tls -d -s 2 -m 6 -t "rcpt@$DOMAIN" "$smtp"
	expect_ok postfix 6
	# One TLS handshake per session, not per message.
	expect_pf_log 'TLS connection established from [^ ]+: TLS' 1
	local n
	n=$(pf_segment | grep -c 'TLS connection established from' || true)
	[ "$n" = 2 ] || err "Postfix logged $n TLS handshakes, expected 2 (-s 2 -d)"
	end

	begin postfix-tls-resume
	client --tls --tls-resume -m 4 -t "rcpt@$DOMAIN" "$smtp"
	expect_ok postfix 4
	# Postfix 3.7 issues no new ticket on a resumed handshake, so only
	# every other connection resumes (aiosmtpd resumes all but the first).
	expect_tls resumed -ge 1
	end

	begin postfix-tls-wrapper-on-starttls-port
	client --tls-wrapper -m 1 -t "rcpt@$DOMAIN" "$smtp"
	expect_fail 1 'TLS handshake'
	server_got postfix 0
	end

	begin postfix-starttls-on-smtps-port
	# Both sides wait for the other: the client's deadline ends it.
	client --tls --timeout=2 -m 1 -t "rcpt@$DOMAIN" "127.0.0.1:$PF_SMTPS"
	expect_fail 1 'timeout'
	server_got postfix 0
	end

	begin postfix-tls-client-cert
	client --tls=verify --tls-ca="$ca" --tls-servername=localhost \
		--tls-cert="$TLS/client.pem" --tls-key="$TLS/client.key" -m 2 \
		-t "rcpt@$DOMAIN" "127.0.0.1:$PF_ENCRYPT"
	expect_ok postfix 2
	expect_pf_log 'Trusted TLS connection established from'
	end

	begin postfix-auth-plain
	SMTP_SOURCE_PASSWORD=secret1 client --tls --auth=PLAIN --auth-user=alice \
		-s 2 -m 4 -t "rcpt@$DOMAIN" "$smtp"
	expect_ok postfix 4
	expect_pf_log 'sasl_method=PLAIN, sasl_username=alice'
	end

	begin postfix-auth-login
	SMTP_SOURCE_PASSWORD=secret2 client --tls --auth=LOGIN --auth-user=bob \
		-m 3 -t "rcpt@$DOMAIN" "$smtp"
	expect_ok postfix 3
	expect_pf_log 'sasl_method=LOGIN, sasl_username=bob'
	end

	begin postfix-auth-wrong-password
	SMTP_SOURCE_PASSWORD=wrong client --tls --auth=PLAIN --auth-user=alice \
		-m 1 -t "rcpt@$DOMAIN" "$smtp"
	expect_fail 1 '535'
	server_got postfix 0
	end

	begin postfix-auth-not-offered-before-tls
	# smtpd_tls_auth_only: no AUTH in the EHLO reply without TLS.
	SMTP_SOURCE_PASSWORD=secret1 client --auth=PLAIN --auth-user=alice \
		--auth-plaintext -m 1 -t "rcpt@$DOMAIN" "$smtp"
	expect_fail 1 'AUTH PLAIN not offered'
	server_got postfix 0
	end

	begin postfix-auth-file
	printf 'alice:secret1\nbob:secret2\n' >"$CASE_DIR/auth.txt"
	client --tls --auth=PLAIN --auth-file="$CASE_DIR/auth.txt" -s 2 -m 4 \
		-t "rcpt@$DOMAIN" "$smtp"
	expect_ok postfix 4
	expect_pf_log 'sasl_username=(alice|bob)' 2
	end

	begin postfix-auth-smtps-login
	SMTP_SOURCE_PASSWORD=secret1 client --tls-wrapper --auth=LOGIN \
		--auth-user=alice -m 2 -t "rcpt@$DOMAIN" "127.0.0.1:$PF_SMTPS"
	expect_ok postfix 2
	expect_pf_log 'sasl_method=LOGIN, sasl_username=alice'
	end

	begin postfix-xclient
	client --xclient=ADDR=10.0.0.0/30 -s 1 -m 4 -t "rcpt@$DOMAIN" "$smtp"
	expect_ok postfix 4
	expect_pf_log 'client=unknown\[10\.0\.0\.[0-3]\]' 2
	expect_pf_clients_only 'unknown\[10\.0\.0\.[0-3]\]'
	end

	begin postfix-xclient-ipv6
	# XCLIENT wants IPv6 addresses as ADDR=IPV6:...
	client --xclient=ADDR=2001:db8::/126 -m 4 -t "rcpt@$DOMAIN" "$smtp"
	expect_ok postfix 4
	expect_pf_log 'client=unknown\[2001:db8::[0-3]?\]' 2
	expect_pf_clients_only 'unknown\[2001:db8::[0-3]?\]'
	end

	begin postfix-xclient-auth-relay
	# An outside client may relay once authenticated.
	SMTP_SOURCE_PASSWORD=secret1 client --xclient=ADDR=10.0.0.1 --tls \
		--auth=PLAIN --auth-user=alice -m 2 -t rcpt@elsewhere.example "$smtp"
	expect_ok postfix 2
	expect_pf_log 'client=unknown\[10\.0\.0\.1\], sasl_method=PLAIN, sasl_username=alice'
	end

	begin postfix-xclient-tls-name
	client --tls --xclient=ADDR=10.0.0.0/30,NAME=faked.example -m 2 \
		-t "rcpt@$DOMAIN" "$smtp"
	expect_ok postfix 2
	expect_pf_log 'client=faked\.example\[10\.0\.0\.[0-3]\]'
	expect_pf_clients_only 'faked\.example\[10\.0\.0\.[0-3]\]'
	end

	local v
	for v in v1 v2; do
		begin "postfix-proxy-$v"
		client --proxy="$v" --proxy-source=192.0.2.0/29 -s 2 -m 6 \
			-t "rcpt@$DOMAIN" "127.0.0.1:$PF_PROXY"
		expect_ok postfix 6
		expect_pf_log 'client=unknown\[192\.0\.2\.[0-7]\]' 2
		expect_pf_clients_only 'unknown\[192\.0\.2\.[0-7]\]'
		end
	done

	for v in v1 v2; do
		begin "postfix-proxy-$v-ipv6"
		client --proxy="$v" --proxy-source=2001:db8::/125 -s 2 -m 4 \
			-t "rcpt@$DOMAIN" "[::1]:$PF_PROXY6"
		expect_ok postfix 4
		expect_pf_log 'client=unknown\[2001:db8::[0-7]?\]' 2
		expect_pf_clients_only 'unknown\[2001:db8::[0-7]?\]'
		end
	done

	begin postfix-proxy-v2-tls
	client --proxy=v2 --proxy-source=192.0.2.0/29 --tls=verify \
		--tls-ca="$ca" --tls-servername=localhost -m 2 -t "rcpt@$DOMAIN" \
		"127.0.0.1:$PF_PROXY"
	expect_ok postfix 2
	expect_pf_log 'client=unknown\[192\.0\.2\.[0-7]\]'
	end

	begin postfix-pipelining-tls
	client --tls --ehlo --pipelining -d -s 2 -m 10 -t "rcpt@$DOMAIN" "$smtp"
	expect_ok postfix 10
	end

	begin postfix-chunking-tls
	client --tls --ehlo --chunking -d -s 2 -m 10 -l 20000 -t "rcpt@$DOMAIN" "$smtp"
	expect_ok postfix 10
	end

	begin postfix-chunking-tls-1mb
	client --tls --ehlo --chunking -d -m 3 -l 1000000 -t "rcpt@$DOMAIN" "$smtp"
	expect_ok postfix 3
	expect_pf_log 'size=100[0-9]{4},' 1
	end

	begin postfix-pipelining-chunking-tls
	client --tls --ehlo --pipelining --chunking -d -s 10 -m 40 \
		-t "rcpt@$DOMAIN" "$smtp"
	expect_ok postfix 40
	end

	begin postfix-encrypt-listener-no-tls
	# MAIL (and so BDAT) before STARTTLS: 530, the client says so.
	client --ehlo --chunking -m 1 -t "rcpt@$DOMAIN" "127.0.0.1:$PF_ENCRYPT"
	expect_fail 1 '530'
	server_got postfix 0
	end

	begin postfix-encrypt-listener-chunking-tls
	client --tls --ehlo --chunking --pipelining -m 3 -t "rcpt@$DOMAIN" \
		"127.0.0.1:$PF_ENCRYPT"
	expect_ok postfix 3
	end

	begin postfix-rejected-rcpt-A
	# Recipients outside mydestination from a faked outside client.
	client --xclient=ADDR=10.0.0.1 -A -m 2 -t rcpt@elsewhere.example "$smtp"
	if [ "$RC" != 0 ]; then err "exit status $RC, expected 0"; fi
	expect_report rejected 2
	expect_report accepted 0
	server_got postfix 0
	end
}

# --- Dovecot LMTP ----------------------------------------------------------

dovecot_cases() {
	local lmtp=127.0.0.1:$LMTP_PORT sock=unix:$DC/lmtp.sock
	say "== Dovecot LMTP"

	begin lmtp-inet
	client -L -s 2 -m 4 -t "alice@$DOMAIN" "$lmtp"
	expect_ok dovecot 4
	end

	begin lmtp-unix
	client -L -s 2 -m 4 -t "bob@$DOMAIN" "$sock"
	expect_ok dovecot 4
	end

	begin lmtp-unix-d-pipelining-chunking
	client -L --pipelining --chunking -d -s 2 -m 6 -t "carol@$DOMAIN" "$sock"
	expect_ok dovecot 6
	end

	begin lmtp-rejected-rcpt-A
	client -L -A -m 2 -t "nouser@$DOMAIN" "$lmtp"
	if [ "$RC" != 0 ]; then err "exit status $RC, expected 0"; fi
	expect_report rejected 2
	expect_report accepted 0
	server_got dovecot 0
	end

	begin lmtp-rejected-rcpt-pipelining-chunking
	client -v -L --pipelining --chunking -A -d -m 3 -t "nouser@$DOMAIN" "$lmtp"
	if [ "$RC" != 0 ]; then err "exit status $RC, expected 0"; fi
	expect_report rejected 3
	expect_report accepted 0
	# The server's 503 to a BDAT without valid recipients is fine; a 503
	# to the next MAIL ("MAIL already given") means no RSET in between.
	expect_codes MAIL 250
	server_got dovecot 0
	end

	begin lmtp-starttls
	client -L --tls=verify --tls-ca="$TLS/ca.pem" --tls-servername=localhost \
		-m 2 -t "dave@$DOMAIN" "$lmtp"
	expect_ok dovecot 2
	end

	begin lmtp-starttls-resume
	client -L --tls --tls-resume -m 4 -t "dave@$DOMAIN" "$lmtp"
	expect_ok dovecot 4
	# Each lmtp process has its own ticket keys: whether a connection
	# resumes depends on which process takes it, so no count is asserted.
	end
}

# --- aiosmtpd --------------------------------------------------------------

aiosmtpd_cases() {
	local aio=127.0.0.1:$AIO_PORT ca=$TLS/ca.pem
	say "== aiosmtpd"

	begin aiosmtpd-auth-plain
	SMTP_SOURCE_PASSWORD=secret1 client --tls=verify --tls-ca="$ca" \
		--tls-servername=localhost --auth=PLAIN --auth-user=alice -s 2 -m 4 \
		-t "rcpt@$DOMAIN" "$aio"
	expect_ok aiosmtpd 4
	end

	begin aiosmtpd-auth-login
	SMTP_SOURCE_PASSWORD=secret2 client --tls --auth=LOGIN --auth-user=bob \
		-m 3 -t "rcpt@$DOMAIN" "$aio"
	expect_ok aiosmtpd 3
	end

	begin aiosmtpd-auth-file
	printf 'alice:secret1\nbob:secret2\n' >"$CASE_DIR/auth.txt"
	client --tls --auth=LOGIN --auth-file="$CASE_DIR/auth.txt" -s 2 -m 4 \
		-t "rcpt@$DOMAIN" "$aio"
	expect_ok aiosmtpd 4
	end

	begin aiosmtpd-auth-d-pipelining
	SMTP_SOURCE_PASSWORD=secret1 client --tls --auth=PLAIN --auth-user=alice \
		--pipelining -d -m 5 -t "rcpt@$DOMAIN" "$aio"
	expect_ok aiosmtpd 5
	end

	begin aiosmtpd-tls-resume
	SMTP_SOURCE_PASSWORD=secret1 client --tls --tls-resume --auth=PLAIN \
		--auth-user=alice -m 4 -t "rcpt@$DOMAIN" "$aio"
	expect_ok aiosmtpd 4
	expect_tls resumed -eq 3
	end

	begin aiosmtpd-auth-wrong-password
	SMTP_SOURCE_PASSWORD=wrong client --tls --auth=LOGIN --auth-user=bob \
		-m 1 -t "rcpt@$DOMAIN" "$aio"
	expect_fail 1 '535'
	server_got aiosmtpd 0
	end

	begin aiosmtpd-no-tls
	# The server wants STARTTLS before MAIL (530).
	client -m 1 -t "rcpt@$DOMAIN" "$aio"
	expect_fail 1 '530'
	server_got aiosmtpd 0
	end
}

# ---------------------------------------------------------------------------

# run.sh --serve [SECONDS]: start the servers, write their addresses to
# $WORK/servers.env, and keep them up for SECONDS (default 600) or until
# SIGINT/SIGTERM, to try things by hand.
serve() {
	printf '%s\n' "POSTFIX_SMTP=127.0.0.1:$PF_SMTP" \
		"POSTFIX_SMTPS=127.0.0.1:$PF_SMTPS" \
		"POSTFIX_PROXY=127.0.0.1:$PF_PROXY" \
		"POSTFIX_ENCRYPT=127.0.0.1:$PF_ENCRYPT" \
		"POSTFIX_SMTP6=[::1]:$PF_SMTP6" \
		"POSTFIX_PROXY6=[::1]:$PF_PROXY6" \
		"DOVECOT_LMTP=127.0.0.1:$LMTP_PORT" \
		"DOVECOT_LMTP_UNIX=unix:$DC/lmtp.sock" \
		"AIOSMTPD=127.0.0.1:$AIO_PORT" \
		"TLS_CA=$TLS/ca.pem" \
		"POSTFIX_LOG=$PF_LOG" >"$WORK/servers.env"
	cat "$WORK/servers.env"
	say "serving for $1 s (users alice:secret1 bob:secret2; Ctrl-C stops)"
	sleep "$1" &
	serve_pid=$!
	wait "$serve_pid" || true
	serve_pid=
}

# --- ESMTP parameters ------------------------------------------------------

# esmtp_count KIND KEY: the report's esmtp.KIND.KEY (0 when absent, "" when
# there is no report; KIND is params or refusals).
esmtp_count() {
	python3 -c 'import json, sys
try:
    print(json.load(open(sys.argv[1]))["esmtp"][sys.argv[2]].get(sys.argv[3], 0))
except Exception:
    pass' "$CASE_DIR/report.json" "$1" "$2"
}

# expect_esmtp KIND KEY N
expect_esmtp() {
	local got
	got=$(esmtp_count "$1" "$2")
	if [ "$got" != "$3" ]; then
		err "report: esmtp.$1.$2 is '${got}', expected $3"
	fi
}

# pf_held: every message in Postfix's hold queue, as postcat shows it
# (saved as the case's postcat file), then deleted.
pf_held() {
	local f
	wait_for 30 "Postfix to hold a message" \
		sh -c "ls '$PF/queue/hold' | grep -q ." || true
	sleep 1
	for f in "$PF"/queue/hold/*; do
		[ -f "$f" ] || continue
		postcat -c "$PF/conf" "$f" 2>&1
	done >"$CASE_DIR/postcat"
	postsuper -c "$PF/conf" -d ALL hold >/dev/null 2>&1 || true
}

# expect_held REGEX [MIN]: at least MIN lines of the held messages'
# postcat output match REGEX.
expect_held() {
	local n
	n=$(grep -Ec -- "$1" "$CASE_DIR/postcat" || true)
	if [ "$n" -lt "${2:-1}" ]; then
		err "postcat has $n lines matching /$1/, expected at least ${2:-1}"
	fi
}

postfix_esmtp_cases() {
	local smtp=127.0.0.1:$PF_SMTP small=127.0.0.1:$PF_SMALL
	local hold=127.0.0.1:$PF_HOLD f8=$CASES/8bit.eml utf8
	utf8=$(printf 'j\303\266rg@%s' "$DOMAIN")
	printf 'Subject: 8-bit\n\nK\303\244se und Br\303\266tchen\n' >"$f8"
	say "== Postfix: ESMTP parameters"

	begin postfix-size-over-limit-552-at-mail
	# SIZE= declared: this listener's 4096-byte limit refuses at MAIL.
	client --ehlo -A -m 2 -l 10000 -t "rcpt@$DOMAIN" "$small"
	if [ "$RC" != 0 ]; then err "exit status $RC, expected 0"; fi
	expect_report rejected 2
	expect_report accepted 0
	expect_codes MAIL 552
	expect_codes DATA ""
	expect_esmtp params SIZE 2
	expect_esmtp refusals mail_552 2
	expect_pf_log 'reject: MAIL from [^ ]+: 552 5\.3\.4 Message size exceeds fixed limit' 1
	server_got postfix 0
	end

	begin postfix-size-under-limit
	client --ehlo --pipelining -m 2 -t "rcpt@$DOMAIN" "$small"
	expect_ok postfix 2
	expect_esmtp params SIZE 2
	end

	begin postfix-8bitmime
	client --ehlo --pipelining -F "$f8" -m 2 -t "rcpt@$DOMAIN" "$smtp"
	expect_ok postfix 2
	expect_esmtp params BODY=8BITMIME 2
	end

	begin postfix-8bitmime-chunking
	client --ehlo --chunking -F "$f8" -m 2 -t "rcpt@$DOMAIN" "$smtp"
	expect_ok postfix 2
	expect_esmtp params BODY=8BITMIME 2
	end

	begin postfix-smtputf8
	# smtputf8_enable = yes: a UTF-8 recipient, declared.
	client --ehlo -m 2 -t "$utf8" "$smtp"
	expect_ok postfix 2
	expect_esmtp params SMTPUTF8 2
	expect_pf_log "to=<$utf8>" 1
	end

	begin postfix-smtputf8-held
	# The queue file records the request: the last field of message_size
	# is Postfix's sendopts, 3 = SMTPUTF8 requested, UTF-8 in a header.
	client --ehlo -m 1 -t "$utf8" "$hold"
	expect_report accepted 1
	pf_held
	expect_held "^recipient: $utf8\$"
	expect_held '^message_size:( +[0-9]+){5} +3$'
	end

	begin postfix-smtputf8-undeclared-held
	# The same recipient without SMTPUTF8 (HELO, as the reference
	# sends it): Postfix takes it, but as mail that never asked for
	# SMTPUTF8 (sendopts 2: UTF-8 seen in a header, not requested), which
	# a later hop without SMTPUTF8 may refuse.
	client -m 1 -t "$utf8" "$hold"
	expect_report accepted 1
	pf_held
	expect_held '^message_size:( +[0-9]+){5} +2$'
	end

	begin postfix-dsn-held
	client --ehlo --pipelining --dsn-notify=SUCCESS,FAILURE --dsn-ret=HDRS \
		--dsn-envid=interop-%n --dsn-orcpt -m 2 -t "rcpt@$DOMAIN" "$hold"
	expect_report accepted 2
	expect_esmtp params NOTIFY 2
	expect_esmtp params ORCPT 2
	expect_esmtp params RET 2
	expect_esmtp params ENVID 2
	pf_held
	# ENVID, RET=HDRS (2), NOTIFY=SUCCESS,FAILURE (2|4) and ORCPT.
	expect_held '^named_attribute: envelope_id=interop-[01]$' 2
	expect_held '^named_attribute: ret_flags=2$' 2
	expect_held '^named_attribute: notify_flags=6$' 2
	expect_held "^named_attribute: dsn_orig_rcpt=rfc822;rcpt@$DOMAIN\$" 2
	end

	begin postfix-dsn-success-notice
	# NOTIFY=SUCCESS through the discard transport: Postfix sends the
	# sender a success notice.
	client --ehlo --dsn-notify=SUCCESS --dsn-envid=notice-%n -m 1 \
		-f "sender@$DOMAIN" -t "rcpt@$DOMAIN" "$smtp"
	if [ "$RC" != 0 ]; then err "exit status $RC, expected 0"; fi
	wait_for 30 "Postfix to log the notice" \
		sh -c "tail -c +$((PF_MARK + 1)) '$PF_LOG' | grep -q 'status notification'" ||
		true
	expect_pf_log 'sender delivery status notification: [0-9A-Za-z]+' 1
	end
}

# aiosmtpd records every parameter exactly as it parsed it (upper case).
aiosmtpd_esmtp_case() {
	local aio=127.0.0.1:$AIO_PORT f8=$CASES/8bit.eml utf8
	utf8=$(printf 'j\303\266rg@%s' "$DOMAIN")
	begin aiosmtpd-esmtp-every-parameter
	SMTP_SOURCE_PASSWORD=secret1 client --tls --auth=PLAIN --auth-user=alice \
		--requiretls --dsn-notify=SUCCESS,DELAY --dsn-ret=FULL \
		--dsn-envid=aio-%n --dsn-orcpt --mail-param=MT-PRIORITY=3 \
		--mail-param=HOLDFOR=60 --rcpt-param=X-TAG=a+2Bb -F "$f8" -m 2 -r 2 \
		-t "$utf8" "$aio"
	expect_ok aiosmtpd 2
	tail -n 2 "$AIO/count.options" >"$CASE_DIR/options" 2>/dev/null || true
	python3 - "$CASE_DIR/options" >"$CASE_DIR/options.check" 2>&1 <<'PY' ||
import json, sys
seen = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
assert len(seen) == 2, seen
envids = set()
for m in seen:
    opts = m["mail_options"]
    assert opts[0] == "SIZE=%d" % m["size"], (opts, m["size"])
    envid = [o for o in opts if o.startswith("ENVID=")][0]
    envids.add(envid)
    want = [opts[0], "BODY=8BITMIME", "SMTPUTF8", "RET=FULL", envid,
            "REQUIRETLS", "MT-PRIORITY=3", "HOLDFOR=60"]
    assert opts == want, (opts, want)
    rcpts = m["rcpt_tos"]
    assert rcpts == ["2j\u00f6rg@interop.test", "j\u00f6rg@interop.test"], rcpts
    want_r = []
    for r in ["2J+C3+B6RG@INTEROP.TEST", "J+C3+B6RG@INTEROP.TEST"]:
        want_r += ["NOTIFY=SUCCESS,DELAY", "ORCPT=RFC822;" + r, "X-TAG=A+2BB"]
    assert m["rcpt_options"] == want_r, (m["rcpt_options"], want_r)
assert envids == {"ENVID=AIO-0", "ENVID=AIO-1"}, envids
print("ok", json.dumps(seen, ensure_ascii=False))
PY
		err "aiosmtpd's options: $(cat "$CASE_DIR/options.check")"
	end
}

# ---------------------------------------------------------------------------
# Capacity: Postfix with few smtpd processes has a knee; three searches
# must each find it and agree within 10%.

# smtpd processes (and every other service's) during the capacity cases.
CAPACITY_LIMIT=${INTEROP_CAPACITY_LIMIT:-4}

# Seconds each SMTP session holds its smtpd process during the capacity
# cases (Postfix's `sleep` restriction): with N processes the knee is then
# N / (this + a few ms) sessions a second, well below what the host's CPU
# allows, so it is the process limit that the search finds.
CAPACITY_HOLD=1

# limit_postfix N [HOLD]: default_process_limit=N, each session held HOLD
# seconds (none without), applied by a reload.
limit_postfix() {
	local hold=${2:+sleep $2, }
	postconf -c "$PF/conf" -e "default_process_limit=$1" \
		"smtpd_client_restrictions=${hold}permit"
	postfix -c "$PF/conf" reload >/dev/null 2>&1 ||
		err "postfix reload failed"
	sleep 1
}

# Is Postfix's queue empty? (A search overloads Postfix on purpose; the
# next search starts when what it queued has been delivered.)
pf_queue_empty() {
	postqueue -c "$PF/conf" -p 2>/dev/null | grep -q 'Mail queue is empty'
}

# The capacity found by the client's JSON report ("" if none).
capacity_rate() {
	python3 -c 'import json, sys
try:
    r = json.load(open(sys.argv[1]))["capacity"]["rate"]
    print("" if r is None else r)
except Exception:
    pass' "$CASE_DIR/report.json"
}

# agree RATE...: each within 10% of their mean.
agree() {
	python3 -c 'import sys
r = [float(x) for x in sys.argv[1:]]
m = sum(r) / len(r)
sys.exit(0 if len(r) == 3 and all(abs(x / m - 1) <= 0.1 for x in r) else 1)' "$@"
}

capacity_cases() {
	local smtp=127.0.0.1:$PF_SMTP k rate rates=()
	say "== Postfix capacity (default_process_limit=$CAPACITY_LIMIT)"
	limit_postfix "$CAPACITY_LIMIT" "$CAPACITY_HOLD"
	for k in 1 2 3; do
		wait_for 120 "Postfix's queue to empty" pf_queue_empty ||
			say "     (Postfix's queue is not empty)"
		begin "postfix-capacity-$k"
		RUN_TIMEOUT=300 client -s 40 --find-capacity --step=8s --rate=1 \
			--threshold='transaction.p50<1500ms' --threshold='errors==0' \
			-t "rcpt@$DOMAIN" "$smtp"
		if [ "$RC" != 0 ]; then
			err "exit status $RC, expected 0"
		fi
		rate=$(capacity_rate)
		if [ -n "$rate" ]; then
			rates+=("$rate")
			say "     capacity $rate messages/s"
			grep -E '^ +[0-9]+ ' "$CASE_DIR/stdout" | sed 's/^/       | /' ||
				true
		else
			err "no capacity found"
		fi
		server_got postfix "$(report accepted)"
		end
	done
	begin postfix-capacity-agree
	say "postfix capacity, default_process_limit=$CAPACITY_LIMIT:" \
		"${rates[*]} messages/s" | tee "$WORK/capacity.txt"
	agree "${rates[@]}" || err "three searches disagree: ${rates[*]}"
	end
	limit_postfix 50
}

main() {
	local start=$SECONDS
	[ -x "$SMTP_SOURCE" ] || die "$SMTP_SOURCE not found (make build)"
	stop_leftovers
	rm -rf "$WORK"
	mkdir -p "$WORK" "$CASES"
	trap stop_all EXIT
	trap 'exit 1' INT TERM
	install_packages
	read -r PF_SMTP PF_SMTPS PF_PROXY PF_ENCRYPT PF_SMTP6 PF_PROXY6 \
		LMTP_PORT AIO_PORT PF_SMALL PF_HOLD <<<"$(free_ports 10)"
	make_certs
	start_postfix
	if [ "${1:-}" = --capacity ]; then
		# Nothing but Postfix: the other servers' counters read empty.
		mkdir -p "$DC/mail" "$AIO"
		echo 0 >"$AIO/count"
		capacity_cases
		say "$PASSED passed, $FAILED failed"
		[ "$FAILED" -eq 0 ]
		return
	fi
	start_dovecot
	start_aiosmtpd
	if [ "${1:-}" = --serve ]; then
		serve "${2:-600}"
		return
	fi
	fixtures
	postfix_cases
	postfix_esmtp_cases
	dovecot_cases
	aiosmtpd_cases
	aiosmtpd_esmtp_case
	netns_postfix_case
	capacity_cases
	say ""
	if [ "$FAILED" -gt 0 ]; then
		say "failed: ${FAILED_NAMES[*]}"
		say "logs: $PF_LOG, $DC/dovecot.log, $AIO/server.log, $CASES/"
	fi
	say "interop: $((SECONDS - start)) s"
	say "$PASSED passed, $FAILED failed"
	[ "$FAILED" -eq 0 ]
}

main "$@"
