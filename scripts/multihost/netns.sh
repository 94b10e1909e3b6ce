# shellcheck shell=bash
# scripts/multihost/netns.sh: hosts as Linux network namespaces, for
# `make multihost` (scripts/multihost/run.sh) and the namespaced Postfix
# case of `make interop`. Sourced by bash, not run.
#
# One "switch" namespace holds a bridge; every host is a namespace with
# one veth into it and one address from 198.18.0.0/15 (RFC 2544, the
# benchmarking range). Nothing is added to the machine's own namespace:
# the veth pairs are made inside the switch namespace, no namespace has
# a default route, and the bridge has no uplink, so no packet can leave.
#
# Names carry the caller's PID (NETNS_PREFIX, default smh$$), so runs
# side by side do not meet. netns_teardown ends the processes left in
# the namespaces (all started by the caller) and deletes them, and fails
# if one is still there; call it from an EXIT trap.

: "${NETNS_PREFIX:=smh$$}"
NETNS_SWITCH=$NETNS_PREFIX-sw
NETNS_MADE=()

netns_switch() {
	ip netns add "$NETNS_SWITCH"
	NETNS_MADE+=("$NETNS_SWITCH")
	ip -n "$NETNS_SWITCH" link set lo up
	ip -n "$NETNS_SWITCH" link add br0 type bridge
	ip -n "$NETNS_SWITCH" link set br0 up
}

# netns_host NAME ADDR: namespace $NETNS_PREFIX-NAME with eth0 = ADDR/24
# on the switch.
netns_host() {
	local ns=$NETNS_PREFIX-$1 addr=$2
	ip netns add "$ns"
	NETNS_MADE+=("$ns")
	ip -n "$ns" link set lo up
	ip -n "$NETNS_SWITCH" link add "p-$1" type veth peer name eth0 \
		netns "$ns"
	ip -n "$NETNS_SWITCH" link set "p-$1" master br0 up
	ip -n "$ns" addr add "$addr/24" dev eth0
	ip -n "$ns" link set eth0 up
}

# netns_exec NAME CMD...: CMD in host NAME's namespace.
netns_exec() {
	local ns=$NETNS_PREFIX-$1
	shift
	ip netns exec "$ns" "$@"
}

# Waits (bounded) until ADDR:PORT accepts from host NAME.
netns_wait_port() {
	local name=$1 addr=$2 port=$3 _
	for _ in $(seq 1 100); do
		if netns_exec "$name" timeout 1 bash -c \
			"exec 3<>/dev/tcp/$addr/$port" 2>/dev/null; then
			return 0
		fi
		sleep 0.1
	done
	echo "netns: $addr:$port never answered from $name" >&2
	return 1
}

# Every process still in our namespaces gets TERM, then KILL after a
# second; then the namespaces go (their veths with them).
netns_teardown() {
	local ns pids
	for sig in TERM KILL; do
		pids=
		for ns in "${NETNS_MADE[@]}"; do
			pids="$pids $(ip netns pids "$ns" 2>/dev/null || true)"
		done
		[ -n "${pids// /}" ] || break
		# shellcheck disable=SC2086
		kill -s "$sig" $pids 2>/dev/null || true
		[ "$sig" = KILL ] || sleep 1
	done
	for ns in "${NETNS_MADE[@]}"; do
		ip netns del "$ns" 2>/dev/null || true
	done
	# Said, not assumed: a namespace that is still there fails the run.
	local left=
	for ns in "${NETNS_MADE[@]}"; do
		if ip netns list | grep -qw -- "$ns"; then
			left="$left $ns"
		fi
	done
	NETNS_MADE=()
	if [ -n "$left" ]; then
		echo "netns: still there after teardown:$left" >&2
		return 1
	fi
}
