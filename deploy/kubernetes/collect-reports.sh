#!/bin/sh
# collect-reports.sh: gather the Indexed Job's shard reports and merge them.
#
# Usage: deploy/kubernetes/collect-reports.sh [JOB] OUTDIR
#
#   JOB      the Job's name (default smtp-source)
#   OUTDIR   where the reports go (created): pod logs as logs/POD.log,
#            each shard's report as shard-K.json, merged.json, merged.txt
#
# Environment: KUBECTL (default kubectl; with its namespace and context
# flags if needed, e.g. KUBECTL="kubectl -n load"), SMTP_REPORT (default
# smtp-report).
#
# Every pod of the Job prints its JSON report between the lines
# "--- smtp-source report begin" and "--- smtp-source report end"
# (smtp-source-job.yaml). The report names its shard ("shard":{"index":K,
# "count":N}), so the file names do not depend on pod names. A pod whose
# log has no report, or a shard seen twice (an old pod), is an error;
# shards that never reported are named. The merged text report goes to
# stdout. Exit status: 0 when all N shards were merged, 1 otherwise (what
# there is is still merged).
set -eu

case $# in
1) job=smtp-source out=$1 ;;
2) job=$1 out=$2 ;;
*)
	sed -n '4,10p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
	;;
esac
: "${KUBECTL:=kubectl}"
: "${SMTP_REPORT:=smtp-report}"

mkdir -p "$out/logs"
rm -f "$out"/logs/*.log "$out"/shard-*.json "$out"/merged.json \
	"$out"/merged.txt
status=0
count=
# KUBECTL is a command line: split on purpose.
# shellcheck disable=SC2086
pods=$($KUBECTL get pods -l "job-name=$job" -o name)
[ -n "$pods" ] || {
	echo "collect-reports.sh: no pods with job-name=$job" >&2
	exit 1
}
for pod in $pods; do
	name=${pod#pod/}
	log=$out/logs/$name.log
	# shellcheck disable=SC2086
	$KUBECTL logs "$pod" >"$log" || {
		echo "collect-reports.sh: no log for $pod" >&2
		status=1
		continue
	}
	report=$(sed -n '/^--- smtp-source report begin$/,/^--- smtp-source report end$/p' \
		"$log" | grep '^{"version":' || true)
	if [ -z "$report" ]; then
		echo "collect-reports.sh: $pod printed no report" >&2
		status=1
		continue
	fi
	k=$(printf '%s\n' "$report" |
		sed -n 's/.*"shard":{"index":\([0-9]*\),"count":\([0-9]*\)}.*/\1/p')
	n=$(printf '%s\n' "$report" |
		sed -n 's/.*"shard":{"index":\([0-9]*\),"count":\([0-9]*\)}.*/\2/p')
	if [ -z "$k" ]; then
		echo "collect-reports.sh: $pod's report names no shard" >&2
		status=1
		continue
	fi
	if [ -e "$out/shard-$k.json" ]; then
		echo "collect-reports.sh: shard $k twice ($pod); old pods?" >&2
		status=1
		continue
	fi
	count=${count:-$n}
	printf '%s\n' "$report" >"$out/shard-$k.json"
done

if [ -z "$count" ]; then
	echo "collect-reports.sh: no pod printed a report" >&2
	exit 1
fi
missing=
for k in $(seq 1 "$count"); do
	[ -e "$out/shard-$k.json" ] || missing="$missing $k"
done
if [ -n "$missing" ]; then
	echo "collect-reports.sh: no report from shard(s)$missing of $count" >&2
	status=1
fi
"$SMTP_REPORT" merge "$out"/shard-*.json >"$out/merged.json"
"$SMTP_REPORT" text "$out/merged.json" >"$out/merged.txt"
cat "$out/merged.txt"
exit "$status"
