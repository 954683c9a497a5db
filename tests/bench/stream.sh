#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# stream.sh: one writer process and one reader process, through a kernel pipe and through devemu's loopback
# on each transport available (CUSE, the kernel shim with its stream FIFOs and with fifo=off), per write size; a
# table with the ratio to the pipe and, for the kernel shim, the daemon wake-ups per MB. The serial model on its
# loopback plug (pace=none, raw, XON/XOFF: its own STOP comes back to it, so a reader that falls behind slows the
# writer instead of losing bytes) runs the same way with BENCH_STREAM_MODELS="loopback serial". A row that does
# not finish (a stream that lost bytes) prints "failed". Run it inside tests/vm (tests/bench/vm.sh --stream).
#
# Environment: BENCH_SECONDS (default 1), BENCH_SIZES (default "1 4096"), BENCH_STREAM_MODELS ("loopback",
# the default, and/or "serial"), DEVEMUD, BENCH_DIR as run.sh.
set -u -o pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
DEVEMUD=${DEVEMUD:-$repo/build/cuse_dev/devemud}
BENCH_DIR=${BENCH_DIR:-$repo/build/tests/bench}
seconds=${BENCH_SECONDS:-1}
sizes=${BENCH_SIZES:-1 4096}
models=${BENCH_STREAM_MODELS:-loopback}
sb=$BENCH_DIR/stream_bench
[[ -x $sb ]] || { echo "stream.sh: no $sb (meson compile)" >&2; exit 1; }
if [[ ${DEVEMU_IN_VM:-} == 1 ]]; then pin=(taskset -c 0); else pin=(); fi

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; }
trap cleanup EXIT

declare -A node=()
started=0
start() { # start TARGET TRANSPORT DEVICE-SPEC: devemud serving the spec as /dev/sb_N_PID, the target's node
	local name=sb_$((started++))_$$
	"${pin[@]}" "$DEVEMUD" --foreground --transport "$2" --control none --device "$name=$3,mode=0666" \
		>"/tmp/stream-$name.log" 2>&1 &
	pids+=($!)
	for _ in $(seq 300); do
		if [[ -e /dev/$name ]]; then
			node[$1]=$name
			targets+=("$1")
			return 0
		fi
		sleep 0.1
	done
	echo "stream.sh: /dev/$name did not appear: $(tail -n 1 "/tmp/stream-$name.log")" >&2
	return 1
}

targets=(pipe)
for model in $models; do
	case $model in
	loopback) spec=loopback,capacity=64K prefix= ;;
	serial) spec=serial,pace=none prefix=serial- ;;
	*) echo "stream.sh: unknown model $model (loopback, serial)" >&2; exit 2 ;;
	esac
	[[ -c /dev/cuse ]] && start "${prefix}cuse" cuse "$spec"
	[[ -d /sys/module/devemu_kshim ]] && start "${prefix}kshim" kshim "$spec,fifo=on"
	[[ -d /sys/module/devemu_kshim ]] && start "${prefix}kshim-req" kshim "$spec,fifo=off"
done
# A serial port raw (VMIN 1, VTIME 0: the kernel shim's FIFOs serve it), with XON/XOFF over its own plug.
for t in "${targets[@]}"; do
	[[ $t == serial-* ]] && stty -F "/dev/${node[$t]}" raw -echo ixon ixoff
done

echo "devemu stream benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'): one writer and one reader process, ${seconds} s per row"
echo "kernel $(uname -r), command line: $(cat /proc/cmdline)"
[[ ${DEVEMU_BENCH_CLOCK:-} == icount ]] && echo "clock: QEMU -icount shift=0: MB/s are MB per 1e9 guest instructions"
echo
printf '| %-16s | %10s | %12s | %12s | %8s | %8s |\n' target write "writes/s" "MB/s" "x pipe" "wake/MB"
printf '|:%s-|-%s:|-%s:|-%s:|-%s:|-%s:|\n' ---------------- ---------- ------------ ------------ -------- --------
for size in $sizes; do
	declare -A mb=()
	for t in "${targets[@]}"; do
		bells=""
		case $t in
		pipe) args=(-p) ;;
		*) args=(-n "/dev/${node[$t]}") ;;
		esac
		[[ $t == *kshim* ]] && read -r b0 <"/sys/class/devemu/${node[$t]}/doorbells"
		# A stream that loses bytes would leave the reader's drain waiting: the row fails instead.
		line=$(timeout "$(awk -v s="$seconds" 'BEGIN { print int(s * 20 + 60) }')" "${pin[@]}" "$sb" "${args[@]}" \
			-s "$size" -t "$seconds" -l "$t") || { echo "| $t | $size B | failed |"; continue; }
		m=${line##*mb_per_s=}; m=${m%% *}
		w=${line##*writes_per_s=}
		bytes=${line##*bytes=}; bytes=${bytes%% *}
		mb[$t]=$m
		wake=-
		if [[ $t == *kshim* ]]; then
			read -r b1 <"/sys/class/devemu/${node[$t]}/doorbells"
			wake=$(awk -v d=$((b1 - b0)) -v b="$bytes" 'BEGIN { printf "%.1f", b ? d / (b / 1e6) : 0 }')
		fi
		ratio=$(awk -v a="$m" -v p="${mb[pipe]:-0}" 'BEGIN { if (p > 0) printf "%.3f", a / p; else print "-" }')
		printf '| %-16s | %10s | %12s | %12s | %8s | %8s |\n' "$t" "$size B" "$w" "$m" "$ratio" "$wake"
	done
done
echo
echo "x pipe = MB/s / the pipe's MB/s at the same write size; wake/MB = daemon wake-ups the kernel shim asked for per MB;"
echo "kshim = fifo=on (a loop in the stream FIFOs), kshim-req = fifo=off (a request per read and write);"
echo "serial-* = the serial model's loopback plug (pace=none, raw, ixon ixoff), on the same three paths."
