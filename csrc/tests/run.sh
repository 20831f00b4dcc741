#!/bin/sh
# Runs every C test program in $1: exit 0 passes, 77 skips, anything else fails.
dir=${1:-build/tests}
pass=0; fail=0; skip=0
for t in "$dir"/test_*; do
	[ -x "$t" ] || continue
	out=$(timeout 120 "$t" 2>&1); rc=$?
	case $rc in
	0) pass=$((pass + 1)); echo "PASS $(basename "$t")" ;;
	77) skip=$((skip + 1)); echo "SKIP $(basename "$t"): $out" ;;
	*) fail=$((fail + 1)); echo "FAIL $(basename "$t") (exit $rc)"; echo "$out" | tail -n 20 ;;
	esac
done
echo "ctests: $pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ] && [ "$pass" -gt 0 ]
