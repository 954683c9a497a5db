#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs one libFuzzer target for a bounded time from its seed corpus; prints executions and coverage; fails on a crash.
# Usage: run.sh TARGET SEED_DIR WORK_DIR SECONDS (new inputs go to WORK_DIR/corpus, never into the seed directory).
set -uo pipefail
target=$1 seeds=$2 work=$3 seconds=$4
name=$(basename "$target")
rm -rf "$work"
mkdir -p "$work/corpus" "$work/artifacts"
log=$work/fuzz.log
"$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
	-artifact_prefix="$work/artifacts/" "$work/corpus" "$seeds" >"$log" 2>&1
status=$?
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
# "#123456 DONE cov: 812 ft: 2301 corp: 160/9133b lim: 4096 exec/s: 8230 rss: 61Mb"
last=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
field() { sed -n "s/.* $1: \([^ ]*\).*/\1/p" <<<"$last"; }
echo "$name: ${execs:-?} executions in $seconds s, coverage ${last:+$(field cov)} edges, $(field ft) features, corpus $(field corp) (from $(ls "$seeds" | wc -l) seeds)"
if [ $status -ne 0 ]; then
	echo "$name: the fuzzer failed (exit $status):"
	report=$(sed -n '/ERROR: \|runtime error\|deadly signal\|Timeout\|out-of-memory/,$p' "$log" | head -n 80)
	if [ -n "$report" ]; then echo "$report"; else tail -n 60 "$log"; fi
	for a in "$work"/artifacts/*; do
		[ -e "$a" ] || continue
		echo "reproducer: $a ($(stat -c %s "$a") bytes; run: $target $a)"
		od -A d -t x1z "$a" | head -n 16
	done
	exit 1
fi
