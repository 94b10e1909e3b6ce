#!/bin/sh
# skip-summary.sh: what `make test` did not run.
#
# Usage: sh tests/skip-summary.sh LOG
#
# LOG holds one `test<TAB>why` line per skip, appended by the tests'
# support::skip when SMTP_SOURCE_SKIP_LOG names it. The test runner
# counts a skipped test as passed (it returned early); this prints, after
# the runner's own summary, how many did not run and why, grouped by
# reason. Exit status 0: a skip is reported, not failed (CI fails on any
# skip with SMTP_SOURCE_REQUIRE_ALL=1 instead).
set -eu

log=$1
if [ ! -s "$log" ]; then
	echo "make test: no test skipped itself"
	exit 0
fi
sort -u "$log" | awk -F '\t' '
	{
		n++
		count[$2]++
		if (count[$2] <= 3) names[$2] = names[$2] "\n      " $1
		order[$2] = order[$2] ? order[$2] : ++reasons
	}
	END {
		printf "make test: %d test%s skipped (not run, but counted as passed above):\n",
			n, n == 1 ? "" : "s"
		for (r in order) by[order[r]] = r
		for (i = 1; i <= reasons; i++) {
			r = by[i]
			printf "  %d: %s%s", count[r], r, names[r]
			if (count[r] > 3) printf "\n      ... and %d more", count[r] - 3
			printf "\n"
		}
	}'
