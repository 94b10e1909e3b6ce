#!/usr/bin/env bash
# scripts/multihost/run.sh: `make multihost`. One smtp-source load over
# three hosts, proven on one machine: the hosts are network namespaces
# (scripts/multihost/netns.sh) joined by a bridge with no way out,
# addressed from 198.18.0.0/15:
#
#   srv  198.18.0.1   the project's sink (examples/sink.rs) on port 25
#   ctl  198.18.0.2   GNU parallel and ssh: deploy/parallel/run-sharded.sh;
#                     Prometheus (on the namespace's own loopback)
#   c1   198.18.0.11  sshd, runs shard 1
#   c2   198.18.0.12  sshd, runs shard 2
#   c3   198.18.0.13  sshd, runs shard 3
#
# Each client host runs its own sshd with its own config, host key and
# authorized keys, all in a temporary directory (nothing is written to
# the machine's ssh configuration; /run/sshd is a tmpfs private to the
# sshd's mount namespace). From ctl, GNU parallel --sshlogin starts the
# shards over real ssh with one --start-at, brings their JSON reports
# back on stdout, and smtp-report merges them. Every shard serves
# --metrics-listen=9464 (lingering past its end), and Prometheus in ctl
# scrapes the three every second. Then it asserts:
#   - the merged report's accepted count equals what the sink received;
#   - every client address, and no other, connected to the sink;
#   - the shards' first connections, as the sink saw them, fall within
#     MULTIHOST_SKEW_MS (100) of one another;
#   - Prometheus's accepted count, summed over the three shards, equals
#     the merged report's, and so does its attempted count.
# It prints the figures (per-shard counts, the skew) and exits 0, or 1
# with what failed. Everything is torn down at exit, on failure too; every
# step is bounded in time.
#
# Needs: root, ip (iproute2), sshd and ssh (openssh-server,
# openssh-client), GNU parallel, python3, prometheus, and the release binaries
# (`make multihost` builds them).
#
# Environment: SMTP_SOURCE, SMTP_REPORT, SINK (default target/release/...),
# MULTIHOST_MESSAGES (3000), MULTIHOST_SKEW_MS (100), MULTIHOST_LEAD
# (seconds from now to the common start, 10: GNU parallel starts the ssh
# sessions one after another, and a busy machine is slow at it),
# MULTIHOST_DIR (default: a new temporary directory, removed at exit;
# when given, it is kept, with the reports and logs).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
release=$repo/target/release
SMTP_SOURCE=$(realpath -m "${SMTP_SOURCE:-$release/smtp-source}")
SMTP_REPORT=$(realpath -m "${SMTP_REPORT:-$release/smtp-report}")
SINK=$(realpath -m "${SINK:-$release/examples/sink}")
MESSAGES=${MULTIHOST_MESSAGES:-3000}
SKEW_MS=${MULTIHOST_SKEW_MS:-100}
LEAD=${MULTIHOST_LEAD:-10}
SERVER=198.18.0.1
CONTROL=198.18.0.2
CLIENTS=(c1 c2 c3)
declare -A ADDR=([c1]=198.18.0.11 [c2]=198.18.0.12 [c3]=198.18.0.13)

say() { printf 'multihost: %s\n' "$*"; }
die() {
	printf 'multihost: %s\n' "$*" >&2
	exit 1
}

[ "$(id -u)" = 0 ] || die "must run as root (network namespaces, sshd)"
for tool in ip /usr/sbin/sshd ssh ssh-keygen parallel python3 timeout \
	prometheus; do
	command -v "$tool" >/dev/null ||
		die "$tool is missing (apt-get install iproute2 openssh-server" \
			"openssh-client parallel python3 prometheus)"
done
for bin in "$SMTP_SOURCE" "$SMTP_REPORT" "$SINK"; do
	[ -x "$bin" ] || die "$bin is missing (make multihost builds it)"
done

# shellcheck source=scripts/multihost/netns.sh
. "$here/netns.sh"
if [ -n "${MULTIHOST_DIR:-}" ]; then
	WORK=$(realpath -m "$MULTIHOST_DIR")
	rm -rf "$WORK"
	mkdir -p "$WORK"
	keep=1
else
	WORK=$(mktemp -d /tmp/multihost.XXXXXX)
	keep=
fi
chmod 700 "$WORK"

cleanup() {
	local status=$?
	trap - EXIT INT TERM
	netns_teardown || status=1
	if [ -z "$keep" ]; then
		rm -rf "$WORK"
	fi
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Runs a command in the background and waits for it: bash runs a trap
# only between commands, and `wait` is one that a signal ends, so a TERM
# (from make's timeout, say) tears down at once, not when a step ends.
waited() {
	"$@" &
	wait "$!"
}

# ---------------------------------------------------------------------------
# The hosts

say "hosts: namespaces $NETNS_PREFIX-{sw,srv,ctl,c1,c2,c3}"
netns_switch
netns_host srv "$SERVER"
netns_host ctl "$CONTROL"
for c in "${CLIENTS[@]}"; do
	netns_host "$c" "${ADDR[$c]}"
done

# ---------------------------------------------------------------------------
# ssh: one key for the client side, one host key and sshd per client host

ssh-keygen -q -t ed25519 -N '' -C multihost -f "$WORK/id_ed25519"
cp "$WORK/id_ed25519.pub" "$WORK/authorized_keys"
: >"$WORK/known_hosts"
for c in "${CLIENTS[@]}"; do
	d=$WORK/$c
	mkdir -p "$d"
	ssh-keygen -q -t ed25519 -N '' -C "$c" -f "$d/host_key"
	printf '%s %s\n' "${ADDR[$c]}" "$(cut -d' ' -f1,2 "$d/host_key.pub")" \
		>>"$WORK/known_hosts"
	cat >"$d/sshd_config" <<EOF
ListenAddress ${ADDR[$c]}:22
HostKey $d/host_key
PidFile $d/sshd.pid
AuthorizedKeysFile $WORK/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PrintMotd no
PrintLastLog no
X11Forwarding no
AllowTcpForwarding no
MaxStartups 100
LogLevel ERROR
EOF
	/usr/sbin/sshd -t -f "$d/sshd_config" 2>&1 |
		grep -v 'privilege separation directory' >&2 || true
	# ip netns exec gives the command its own mount namespace: the tmpfs
	# on /run (for sshd's privilege separation directory) is seen there
	# only. -D: stays in the foreground, so it is our child.
	netns_exec "$c" sh -c 'mount -t tmpfs -o size=1m,mode=0755 \
multihost-run /run && mkdir -m 0755 /run/sshd && exec /usr/sbin/sshd -D -e \
-f "$1"' sshd "$d/sshd_config" 2>"$d/sshd.log" &
done
cat >"$WORK/ssh_config" <<EOF
Host *
	User root
	IdentityFile $WORK/id_ed25519
	IdentitiesOnly yes
	UserKnownHostsFile $WORK/known_hosts
	GlobalKnownHostsFile /dev/null
	StrictHostKeyChecking yes
	BatchMode yes
	ConnectTimeout 5
	ServerAliveInterval 5
	ServerAliveCountMax 3
	LogLevel ERROR
EOF
for c in "${CLIENTS[@]}"; do
	netns_wait_port ctl "${ADDR[$c]}" 22
	out=$(netns_exec ctl timeout 10 ssh -F "$WORK/ssh_config" \
		"${ADDR[$c]}" 'echo "$SSH_CONNECTION"') ||
		die "ssh to $c (${ADDR[$c]}) failed: $(cat "$WORK/$c/sshd.log")"
	# SSH_CONNECTION: client address, port, server address, port.
	read -r from _ to _ <<<"$out"
	if [ "$from" != "$CONTROL" ] || [ "$to" != "${ADDR[$c]}" ]; then
		die "ssh to $c came from $from to $to"
	fi
done
say "sshd up on ${ADDR[c1]}, ${ADDR[c2]}, ${ADDR[c3]}; ssh from $CONTROL works"

# ---------------------------------------------------------------------------
# The server: the sink, until it has every message (or 60 s)

netns_exec srv "$SINK" --listen "$SERVER:25" --peers --messages "$MESSAGES" \
	--seconds 60 --timeout 10 >"$WORK/sink.out" 2>"$WORK/sink.err" &
sink_pid=$!
# Not a probe connection: the sink would count it as a client's.
for _ in $(seq 1 100); do
	grep -q '^listening ' "$WORK/sink.out" && break
	kill -0 "$sink_pid" 2>/dev/null || die "the sink did not start"
	sleep 0.1
done
grep -q '^listening ' "$WORK/sink.out" || die "the sink did not listen"

# ---------------------------------------------------------------------------
# Prometheus in ctl, scraping the shards' --metrics-listen every second

METRICS_PORT=9464
LINGER=4
mkdir -p "$WORK/prometheus"
{
	printf 'global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n'
	printf 'scrape_configs:\n  - job_name: smtp-source\n'
	printf '    static_configs:\n      - targets:\n'
	for c in "${CLIENTS[@]}"; do
		printf '          - "%s:%s"\n' "${ADDR[$c]}" "$METRICS_PORT"
	done
} >"$WORK/prometheus.yml"
netns_exec ctl prometheus --config.file="$WORK/prometheus.yml" \
	--storage.tsdb.path="$WORK/prometheus" \
	--web.listen-address=127.0.0.1:9090 --log.level=warn \
	>"$WORK/prometheus.log" 2>&1 &
netns_wait_port ctl 127.0.0.1 9090

# ---------------------------------------------------------------------------
# The run: deploy/parallel/run-sharded.sh from ctl, a shard per client host

logins=$WORK/sshlogins
for c in "${CLIENTS[@]}"; do
	printf 'ssh -F %s %s\n' "$WORK/ssh_config" "${ADDR[$c]}"
done >"$logins"
say "run-sharded.sh: 3 shards over ssh, -m $MESSAGES"
status=0
waited netns_exec ctl env LEAD="$LEAD" SMTP_SOURCE="$SMTP_SOURCE" \
	SMTP_REPORT="$SMTP_REPORT" timeout 90 \
	bash "$repo/deploy/parallel/run-sharded.sh" "$logins" "$WORK/out" \
	--metrics-listen="$METRICS_PORT" --metrics-linger="$LINGER" \
	-s 5 -m "$MESSAGES" -d "$SERVER:25" >"$WORK/run.out" \
	2>"$WORK/run.err" || status=$?
sed 's/^/  /' "$WORK/run.err"
[ "$status" = 0 ] || {
	sed 's/^/  /' "$WORK/run.out" >&2
	die "run-sharded.sh exited $status"
}
# A shard that reached its host after the start time starts late, and the
# skew would measure ssh, not smtp-source.
if grep -q 'start-at is in the past' "$WORK/run.err"; then
	die "a shard started after the common start: raise MULTIHOST_LEAD"
fi
wait_status=0
waited timeout 70 tail --pid="$sink_pid" -f /dev/null || wait_status=$?
[ "$wait_status" = 0 ] || die "the sink did not finish"
wait "$sink_pid" || die "the sink exited $?"

# What Prometheus holds: each shard's last value (its series end when
# the shard does, so an instant query alone would find nothing).
promql() {
	netns_exec ctl timeout 10 python3 -c 'import json, sys, urllib.parse, urllib.request
url = "http://127.0.0.1:9090/api/v1/query?" + urllib.parse.urlencode({"query": sys.argv[1]})
r = json.load(urllib.request.urlopen(url, timeout=5))
print(json.dumps(r["data"]["result"]))' "$1"
}
for result in accepted attempted; do
	if [ "$result" = attempted ]; then
		sel='smtp_source_messages_total'
	else
		sel="smtp_source_messages_total{result=\"$result\"}"
	fi
	promql "sum(max_over_time(${sel}[5m]))" >"$WORK/prom-$result.json"
done
promql 'sum by (shard) (max_over_time(smtp_source_messages_total{result="accepted"}[5m]))' \
	>"$WORK/prom-shards.json"

# ---------------------------------------------------------------------------
# The asserts

python3 - "$WORK" "$SKEW_MS" "${ADDR[@]}" <<'EOF'
import json, sys
work, skew_ms, clients = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
sink = open(f"{work}/sink.out").read().splitlines()
merged = json.load(open(f"{work}/out/merged.json"))
failed = []

def check(ok, what):
    print(f"multihost: {'ok  ' if ok else 'FAIL'} {what}")
    if not ok:
        failed.append(what)

received = next(l for l in sink if l.startswith("sink received: "))
fields = dict(kv.split("=") for kv in received.split()[2:])
accepted = merged["messages"]["accepted"]
for k in range(1, 4):
    shard = json.load(open(f"{work}/out/shard-{k}.json"))
    m = shard["messages"]
    print(f"multihost: shard {k}/3: {m['accepted']} accepted of "
          f"{m['attempted']} attempted")
check(accepted == int(fields["messages"]),
      f"merged accepted {accepted} == server received {fields['messages']}")
check(merged["messages"]["attempted"] == accepted,
      f"every message accepted ({merged['messages']})")

peers = next(l for l in sink if l.startswith("peers: "))
first = {}
for kv in peers.split("; first ")[1].split(","):
    addr, t = kv.split("=")
    first[addr] = float(t)
check(sorted(first) == sorted(clients),
      f"the server saw exactly the client addresses: {sorted(first)}")
if first:
    skew = (max(first.values()) - min(first.values())) * 1000
    run_err = open(f"{work}/run.err").read()
    start = int(run_err.split("starting at ")[1].split()[0])
    late = (min(first.values()) - start) * 1000
    print(f"multihost: first connection {late:.0f} ms after the common "
          f"start; the shards' first connections {skew:.0f} ms apart")
    check(skew <= skew_ms,
          f"first connections within {skew:.0f} ms of one another "
          f"(limit {skew_ms} ms)")

def prom(name):
    r = json.load(open(f"{work}/prom-{name}.json"))
    return r

shards = {r["metric"].get("shard"): int(float(r["value"][1]))
          for r in prom("shards")}
print(f"multihost: Prometheus, accepted by shard: {shards}")
check(sorted(shards) == ["1/3", "2/3", "3/3"],
      "Prometheus scraped all three shards")
for name, want in [("accepted", accepted),
                   ("attempted", merged["messages"]["attempted"])]:
    r = prom(name)
    got = int(float(r[0]["value"][1])) if r else None
    check(got == want, f"Prometheus {name} summed over the shards {got} "
          f"== merged report {want}")
sys.exit(1 if failed else 0)
EOF
say "passed"
