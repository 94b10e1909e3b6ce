# shellcheck shell=bash disable=SC2154
# scripts/interop/netns-postfix.sh: the many-hosts case of `make interop`,
# sourced by run.sh (its helpers: begin, err, end, render, wait_for, say).
#
# A second Postfix instance of its own (config, queue and log under
# $WORK/postfix-netns) runs in a server namespace at 198.18.1.1; three
# client namespaces (198.18.1.11-13) each run one shard of one load with
# a common --start-at; smtp-report merges their reports. The hosts are
# scripts/multihost/netns.sh's: a bridge with no way out, addresses from
# 198.18.0.0/15, torn down by stop_netns_postfix (from stop_all).
# Asserts: every shard exits 0; the merged accepted count equals what
# Postfix's log shows delivered (qmgr "removed"); Postfix logged a
# connection from each client address and from no other.

PFN=$WORK/postfix-netns
PFN_ADDR=198.18.1.1
PFN_CLIENTS=(198.18.1.11 198.18.1.12 198.18.1.13)
NETNS_PREFIX=ipf$$
# shellcheck source=scripts/multihost/netns.sh
. "$repo/scripts/multihost/netns.sh"
pfn_started=

start_netns_postfix() {
	local k
	netns_switch
	netns_host srv "$PFN_ADDR"
	for k in 1 2 3; do
		netns_host "c$k" "${PFN_CLIENTS[$((k - 1))]}"
	done
	mkdir -p "$PFN/conf" "$PFN/queue" "$PFN/data"
	chown postfix:postfix "$PFN/data"
	render "$here/postfix-main.cf" "$PFN/conf/main.cf"
	# The loopback instance's settings, but its own directories and log,
	# the namespace's address, and no SASL (the Dovecot socket is the
	# other instance's).
	postconf -c "$PFN/conf" -e \
		"queue_directory = $PFN/queue" \
		"data_directory = $PFN/data" \
		"maillog_file = $PFN/maillog" \
		"syslog_name = postfix-netns" \
		"inet_interfaces = $PFN_ADDR" \
		"inet_protocols = ipv4" \
		"mynetworks = 198.18.0.0/15" \
		"smtpd_sasl_auth_enable = no"
	# master.cf: the same services, one smtpd on port 25.
	{
		printf '%s inet n - n - - smtpd\n' "$PFN_ADDR:25"
		awk '/^[^ #].* inet / { skip = 1; next }
			skip && /^[ \t]/ { next }
			{ skip = 0; print }' "$here/postfix-master.cf"
	} >"$PFN/conf/master.cf"
	: >"$PFN/maillog"
	netns_exec srv postfix -c "$PFN/conf" check >"$PFN/check.log" 2>&1 ||
		{
			cat "$PFN/check.log" >&2
			return 1
		}
	pfn_started=1
	netns_exec srv postfix -c "$PFN/conf" start >"$PFN/start.log" 2>&1 ||
		{
			cat "$PFN/start.log" "$PFN/maillog" >&2
			return 1
		}
	wait_for 15 "Postfix on $PFN_ADDR:25" pfn_listening
}

pfn_listening() {
	[ -n "$(netns_exec srv ss -Hltn "sport = :25" 2>/dev/null)" ]
}

stop_netns_postfix() {
	if [ -n "$pfn_started" ]; then
		netns_exec srv postfix -c "$PFN/conf" stop >/dev/null 2>&1 ||
			true
		pfn_started=
	fi
	netns_teardown
}

pfn_removed() {
	grep -cE 'postfix-netns/qmgr\[[0-9]+\]: [0-9A-F]+: removed$' \
		"$PFN/maillog" || true
}

pfn_removed_is() {
	[ "$(pfn_removed)" = "$1" ]
}

netns_postfix_case() {
	say "== Postfix in a network namespace, three client hosts"
	begin postfix-netns-three-hosts
	if ! start_netns_postfix >"$CASE_DIR/setup.log" 2>&1; then
		err "the namespaced Postfix did not start:" \
			"$(tail -5 "$CASE_DIR/setup.log")"
		end
		return
	fi
	local report start k pids=() rc accepted got want addrs
	report=$(dirname "$SMTP_SOURCE")/smtp-report
	start=$(($(date +%s) + 2))
	for k in 1 2 3; do
		netns_exec "c$k" timeout -k 5 "$RUN_TIMEOUT" "$SMTP_SOURCE" \
			--timeout="$CLIENT_TIMEOUT" --shard="$k/3" \
			--start-at="$start" --report-file="$CASE_DIR/shard-$k.json" \
			-s 3 -m 300 -t "rcpt@$DOMAIN" "$PFN_ADDR:25" \
			</dev/null >"$CASE_DIR/stdout-$k" 2>"$CASE_DIR/stderr-$k" &
		pids+=("$!")
	done
	CASE_CMD="$SMTP_SOURCE --shard=K/3 --start-at=$start -s 3 -m 300"
	CASE_CMD+=" -t rcpt@$DOMAIN $PFN_ADDR:25 (K = 1, 2, 3, one per host)"
	for k in 1 2 3; do
		rc=0
		wait "${pids[$((k - 1))]}" || rc=$?
		[ "$rc" = 0 ] || err "shard $k exited $rc: $(cat "$CASE_DIR/stderr-$k")"
	done
	if "$report" merge "$CASE_DIR"/shard-*.json >"$CASE_DIR/merged.json" \
		2>"$CASE_DIR/merge.err"; then
		accepted=$(python3 -c 'import json, sys
print(json.load(open(sys.argv[1]))["messages"]["accepted"])' \
			"$CASE_DIR/merged.json")
		[ "$accepted" = 300 ] || err "merged: $accepted accepted, expected 300"
		wait_for 30 "Postfix to log $accepted messages" \
			pfn_removed_is "$accepted" || true
		sleep 0.5
		got=$(pfn_removed)
		[ "$got" = "$accepted" ] ||
			err "Postfix delivered $got messages, the merged report says $accepted"
	else
		err "smtp-report merge failed: $(cat "$CASE_DIR/merge.err")"
	fi
	want=$(printf '%s\n' "${PFN_CLIENTS[@]}" | sort)
	addrs=$(grep -oE 'postfix-netns/smtpd\[[0-9]+\]: connect from [^ ]*\[[0-9.]+\]' \
		"$PFN/maillog" | sed 's/.*\[\([0-9.]*\)\]$/\1/' | sort -u)
	[ "$addrs" = "$want" ] ||
		err "Postfix saw connections from ${addrs//$'\n'/ }," \
			"expected ${want//$'\n'/ }"
	stop_netns_postfix || err "the namespaces outlived the teardown"
	end
}
