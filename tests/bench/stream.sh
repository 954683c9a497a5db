#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# stream.sh: one writer process and one reader process, through a kernel pipe and through devemu's loopback
# on each transport available (CUSE, the kernel shim with its stream FIFOs and with fifo=off), per write size; a
# table with the ratio to the pipe and, for the kernel shim, the daemon wake-ups per MB. Run it inside tests/vm (tests/bench/vm.sh --stream).
#
# Environment: BENCH_SECONDS (default 1), BENCH_SIZES (default "1 4096"), DEVEMUD, BENCH_DIR as run.sh.
set -u -o pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
DEVEMUD=${DEVEMUD:-$repo/build/cuse_dev/devemud}
BENCH_DIR=${BENCH_DIR:-$repo/build/tests/bench}
seconds=${BENCH_SECONDS:-1}
sizes=${BENCH_SIZES:-1 4096}
sb=$BENCH_DIR/stream_bench
[[ -x $sb ]] || { echo "stream.sh: no $sb (meson compile)" >&2; exit 1; }
if [[ ${DEVEMU_IN_VM:-} == 1 ]]; then pin=(taskset -c 0); else pin=(); fi

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; }
trap cleanup EXIT

start() { # start NAME TRANSPORT [OPTIONS]: devemud's loopback as /dev/NAME
	"${pin[@]}" "$DEVEMUD" --foreground --transport "$2" --control none --device "$1=loopback,capacity=64K,mode=0666${3:-}" \
		>"/tmp/stream-$1.log" 2>&1 &
	pids+=($!)
	for _ in $(seq 300); do [[ -e /dev/$1 ]] && return 0; sleep 0.1; done
	echo "stream.sh: /dev/$1 did not appear: $(tail -n 1 "/tmp/stream-$1.log")" >&2
	return 1
}

targets=(pipe)
[[ -c /dev/cuse ]] && start "sb_cuse_$$" cuse && targets+=(cuse)
[[ -d /sys/module/devemu_kshim ]] && start "sb_kshim_$$" kshim ,fifo=on && targets+=(kshim)
[[ -d /sys/module/devemu_kshim ]] && start "sb_kreq_$$" kshim ,fifo=off && targets+=(kshim-req)

echo "devemu stream benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'): one writer and one reader process, ${seconds} s per row"
echo "kernel $(uname -r), command line: $(cat /proc/cmdline)"
[[ ${DEVEMU_BENCH_CLOCK:-} == icount ]] && echo "clock: QEMU -icount shift=0: MB/s are MB per 1e9 guest instructions"
echo
printf '| %-9s | %10s | %12s | %12s | %8s | %8s |\n' target write "writes/s" "MB/s" "x pipe" "wake/MB"
printf '|:%s-|-%s:|-%s:|-%s:|-%s:|-%s:|\n' --------- ---------- ------------ ------------ -------- --------
for size in $sizes; do
	declare -A mb=()
	for t in "${targets[@]}"; do
		bells=""
		case $t in
		pipe) args=(-p) ;;
		cuse) args=(-n "/dev/sb_cuse_$$") ;;
		kshim | kshim-req)
			node=sb_kshim_$$
			[[ $t == kshim-req ]] && node=sb_kreq_$$
			args=(-n "/dev/$node")
			read -r b0 <"/sys/class/devemu/$node/doorbells"
			;;
		esac
		line=$("${pin[@]}" "$sb" "${args[@]}" -s "$size" -t "$seconds" -l "$t") || { echo "| $t | $size | failed |"; continue; }
		m=${line##*mb_per_s=}; m=${m%% *}
		w=${line##*writes_per_s=}
		bytes=${line##*bytes=}; bytes=${bytes%% *}
		mb[$t]=$m
		wake=-
		if [[ $t == kshim* ]]; then
			read -r b1 <"/sys/class/devemu/$node/doorbells"
			wake=$(awk -v d=$((b1 - b0)) -v b="$bytes" 'BEGIN { printf "%.1f", b ? d / (b / 1e6) : 0 }')
		fi
		ratio=$(awk -v a="$m" -v p="${mb[pipe]:-0}" 'BEGIN { if (p > 0) printf "%.3f", a / p; else print "-" }')
		printf '| %-9s | %10s | %12s | %12s | %8s | %8s |\n' "$t" "$size B" "$w" "$m" "$ratio" "$wake"
	done
done
echo
echo "x pipe = MB/s / the pipe's MB/s at the same write size; wake/MB = daemon wake-ups the kernel shim asked for per MB;"
echo "kshim = fifo=on (a loop in the stream FIFOs), kshim-req = fifo=off (a request per read and write)."
