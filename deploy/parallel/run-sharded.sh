#!/usr/bin/env bash
# run-sharded.sh: one smtp-source load over many hosts with GNU parallel.
#
# Usage: deploy/parallel/run-sharded.sh LOGINFILE OUTDIR SMTP-SOURCE-ARGS...
#
#   LOGINFILE   GNU parallel ssh login file: one host a line
#               (user@host, or ":" for this machine); a line "4/host"
#               runs 4 shards on that host at once.
#   OUTDIR      where the shards' reports and the merged report go
#               (created): shard-K.json, merged.json, merged.txt.
#   SMTP-SOURCE-ARGS
#               the whole run's smtp-source options and endpoint, as for
#               one host: -m and --rate are for the whole run.
#
# Environment:
#   SHARDS        number of shards (default: the hosts' job slots, one
#                 per host unless the login file says N/host)
#   LEAD          seconds between now and the common start (default 5;
#                 enough for ssh to reach every host)
#   SMTP_SOURCE   smtp-source on the hosts (default: smtp-source)
#   SMTP_REPORT   smtp-report here (default: smtp-report)
#
# Every host runs `smtp-source --shard=K/N --start-at=T` with the same
# T, writes its JSON report to stdout, and GNU parallel brings it back;
# smtp-report then merges them (counts added, histograms added: the
# percentiles are those of all samples). The exit status is 1 if a
# shard failed (the reports that exist are still merged), else 0.
set -euo pipefail

if [ "$#" -lt 3 ]; then
	sed -n '3,16p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
fi
logins=$1
out=$2
shift 2
: "${LEAD:=5}"
: "${SMTP_SOURCE:=smtp-source}"
: "${SMTP_REPORT:=smtp-report}"

# Job slots: "N/host" lines count N, other lines one.
slots=$(awk '!/^[[:space:]]*(#|$)/ {
	n = 1; if (match($1, /^[0-9]+\//)) n = substr($1, 1, RLENGTH - 1)
	t += n } END { print t + 0 }' "$logins")
shards=${SHARDS:-$slots}
if [ "$shards" -lt 1 ]; then
	echo "run-sharded.sh: no hosts in $logins" >&2
	exit 2
fi

mkdir -p "$out"
rm -f "$out"/shard-*.json "$out"/merged.json "$out"/merged.txt \
	"$out"/reports.log
start=$(( $(date +%s) + LEAD ))
echo "run-sharded.sh: $shards shards, starting at $start" \
	"($(date -u -d "@$start" +%Y-%m-%dT%H:%M:%SZ))" >&2

# Every host gets the slots its line gives it (one by default) and
# runs that many shards at once: "-j 100%" of a host's CPUs, with the
# CPU count set by the N/ prefix.
slotted="$out/sshloginfile"
awk '!/^[[:space:]]*(#|$)/ { if ($1 !~ /^[0-9]+\//) $1 = "1/" $1; print }' \
	"$logins" >"$slotted"

# -q: the arguments go to the hosts quoted as they are here. Each job
# prints one line, its JSON report.
status=0
parallel -q -j 100% --sshloginfile "$slotted" --halt never \
	"$SMTP_SOURCE" --shard={}/"$shards" --start-at="$start" \
	--report-file=/dev/stdout "$@" ::: $(seq 1 "$shards") \
	>"$out/reports.log" || status=1

# One report a line; each names its shard.
grep '^{"version":1' "$out/reports.log" | while IFS= read -r line; do
	k=$(printf '%s\n' "$line" | sed -n 's/.*"shard":{"index":\([0-9]*\),.*/\1/p')
	printf '%s\n' "$line" >"$out/shard-${k:-x}.json"
done

set -- "$out"/shard-*.json
if [ ! -e "$1" ]; then
	echo "run-sharded.sh: no shard reported" >&2
	exit 1
fi
"$SMTP_REPORT" merge "$@" >"$out/merged.json"
"$SMTP_REPORT" text "$out/merged.json" | tee "$out/merged.txt"
exit "$status"
