#!/bin/sh
# Replays each harness's regression inputs, then fuzzes it for $FUZZ_SECONDS; fails on any crash.
# Usage (from csrc/, normally through `make fuzz`): sh fuzz/run.sh HARNESS...
set -u
build=${FUZZ_BUILD:-build-fuzz}
seconds=${FUZZ_SECONDS:-60}
status=0
for h in "$@"; do
	mkdir -p "$build/corpus/$h" "$build/artifacts" "fuzz/regressions/$h"
	regs=$(find "fuzz/regressions/$h" -type f ! -name '.*' | sort)
	if [ -n "$regs" ]; then
		echo "== $h: replaying $(echo "$regs" | wc -l) regression input(s)"
		# shellcheck disable=SC2086
		if ! "$build/$h" $regs >"$build/$h.replay.log" 2>&1; then
			tail -n 40 "$build/$h.replay.log"; echo "FAIL $h: a regression input fails again"; status=1; continue
		fi
	fi
	echo "== $h: fuzzing for $seconds s"
	# shellcheck disable=SC2086
	"$build/$h" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
		-artifact_prefix="$build/artifacts/$h-" ${FUZZ_FLAGS:-} "$build/corpus/$h" "fuzz/corpus/$h" \
		>"$build/$h.log" 2>&1
	rc=$?
	grep -E '^#[0-9]+.*(DONE|pulse)|^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)' \
		"$build/$h.log" | tail -n 6
	if [ $rc -ne 0 ]; then
		tail -n 60 "$build/$h.log"
		echo "FAIL $h: exit $rc; the input is in $build/artifacts/"
		status=1
	else
		echo "PASS $h"
	fi
done
exit $status
