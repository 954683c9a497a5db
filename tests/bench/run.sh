#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# run.sh: runs the benchmark matrix on every available target and prints one table with ratios to /dev/zero and to the bare CUSE responder.
#
# Usage: tests/bench/run.sh [--targets LIST] [--skip LIST] [--seconds S] [--pin CPUS|none] [--raw FILE]
#   LIST is comma-separated from: kernel bare-cuse devemu-cuse devemu-kshim devemu-kshim-req
#   devemu-kshim-poll devemu-fuse python-cuse python-kshim python-fuse (the zero model written in Python,
#   examples/python/zero.py; over the kernel shim it takes the request path, like devemu-kshim-req). devemu-kshim serves reads and writes from the window's stream FIFOs
#   (the default); devemu-kshim-req is the same device with fifo=off (a request per call).
#   (default: all; a target whose prerequisites are missing is skipped with a note).
# Environment:
#   BENCH_SECONDS   run time of one cell in one round (default 0.5)
#   BENCH_ROUNDS    rounds over the whole matrix; each cell reports its median round (default 3)
#   BENCH_SIZES     read/write sizes in bytes (default "1 4096 131072")
#   BENCH_THREADS   read/write thread counts (default "1 4")
#   BENCH_OPS       operations measured (default "read write poll fionread"; "read" for rng)
#   BENCH_MODEL     the model the devemu targets serve: zero (default; the kernel target is
#                   /dev/zero) or rng (the kernel target is /dev/urandom; rng takes no writes)
#   BENCH_START_TIMEOUT  seconds to wait for a daemon's node (default 30)
#   BENCH_POLL_CPU  CPU of the busy-polling daemon (devemu-kshim-poll); default: another CPU
#                   than the bench's when the bench is pinned to one CPU and there are two
#   BENCH_PIN       CPU list for taskset, applied to the bench and every daemon, or "none";
#                   default: "0" under tests/vm (DEVEMU_IN_VM=1), where wake-ups across emulated
#                   CPUs cost milliseconds and swamp the per-op cost, "none" elsewhere (also --pin)
#   DEVEMUD         devemud binary (default $repo/build/cuse_dev/devemud)
#   DEVEMUD_ARGS    extra arguments for devemud
#   BENCH_DIR       where devemu_bench and bare_cuse are (default $repo/build/tests/bench);
#                   when they are missing there, they are compiled into a temporary directory.
#
# Every number in one table comes from the same run: the cells are interleaved
# (for each round, for each cell, every target in turn), with all daemons
# started up front and idle while another target is measured; a cell shows the
# round with its median mean latency, so one disturbed round does not decide a
# ratio. The exit status is 1 when a cell of an available target failed, 0
# otherwise (skipped targets are not failures).

set -u -o pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
DEVEMUD=${DEVEMUD:-$repo/build/cuse_dev/devemud}
BENCH_DIR=${BENCH_DIR:-$repo/build/tests/bench}
cell_seconds=${BENCH_SECONDS:-0.5}
rounds=${BENCH_ROUNDS:-3}
sizes=${BENCH_SIZES:-1 4096 131072}
thread_counts=${BENCH_THREADS:-1 4}
start_timeout=${BENCH_START_TIMEOUT:-30}
if [[ ${DEVEMU_IN_VM:-} == 1 ]]; then pin=${BENCH_PIN:-0}; else pin=${BENCH_PIN:-none}; fi
read -r -a devemud_args <<<"${DEVEMUD_ARGS:-}"

all_targets=(kernel bare-cuse devemu-cuse devemu-kshim devemu-kshim-req devemu-kshim-poll devemu-fuse python-cuse
	python-kshim python-fuse)
bench_model=${BENCH_MODEL:-zero}
case $bench_model in
zero) kernel_node=/dev/zero ;;
rng) kernel_node=/dev/urandom ;;
*) echo "run.sh: BENCH_MODEL must be zero or rng" >&2; exit 2 ;;
esac
targets=("${all_targets[@]}")
skip=()
raw_out=

usage() {
	awk 'NR >= 5 { if ($0 == "#") exit; sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"
}

split_list() { tr ',' ' ' <<<"$1"; }

while (($#)); do
	case $1 in
	--targets) read -r -a targets <<<"$(split_list "${2:?}")"; shift 2 ;;
	--skip) read -r -a skip <<<"$(split_list "${2:?}")"; shift 2 ;;
	--seconds) cell_seconds=${2:?}; shift 2 ;;
	--pin) pin=${2:?}; shift 2 ;;
	--raw) raw_out=${2:?}; shift 2 ;;
	-h | --help) usage; exit 0 ;;
	*) echo "run.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
	esac
done
for t in "${targets[@]}" "${skip[@]}"; do
	[[ " ${all_targets[*]} " == *" $t "* ]] ||
		{ echo "run.sh: unknown target '$t'" >&2; exit 2; }
done
[[ $cell_seconds =~ ^[0-9]*\.?[0-9]+$ ]] ||
	{ echo "run.sh: bad seconds '$cell_seconds'" >&2; exit 2; }
[[ $rounds =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: bad BENCH_ROUNDS '$rounds'" >&2; exit 2; }

# The busy-polling daemon's CPU: BENCH_POLL_CPU, or else, when the bench is pinned to one CPU
# and there is another, the last CPU (or the first, if the bench has the last).
poll_cpu=${BENCH_POLL_CPU:-}
if [[ -z $poll_cpu && $pin =~ ^[0-9]+$ ]] && (($(nproc) >= 2)); then
	poll_cpu=$(($(nproc) - 1))
	((poll_cpu == pin)) && poll_cpu=0
fi
pinned=()
if [[ $pin != none ]]; then
	command -v taskset >/dev/null || { echo "run.sh: --pin needs taskset (util-linux)" >&2; exit 2; }
	taskset -c "$pin" true 2>/dev/null || { echo "run.sh: cannot pin to CPUs '$pin'" >&2; exit 2; }
	pinned=(taskset -c "$pin")
fi

tmp=
for base in "${TMPDIR:-/tmp}" /dev/shm "$repo/build"; do
	mkdir -p "$base" 2>/dev/null
	tmp=$(mktemp -d "$base/devemu-bench.XXXXXX" 2>/dev/null) && break
done
[[ -n $tmp ]] || { echo "run.sh: no writable temporary directory" >&2; exit 1; }

declare -A pid_of=() node_of=() skip_note=()
notes=()

# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
	local t
	for t in "${!pid_of[@]}"; do
		stop_daemon "$t"
	done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- binaries ---------------------------------------------------------------

bench=$BENCH_DIR/devemu_bench
bare=$BENCH_DIR/bare_cuse
cc=${CC:-cc}
if [[ ! -x $bench ]]; then
	bench=$tmp/devemu_bench
	echo "run.sh: no $BENCH_DIR/devemu_bench, compiling into $tmp" >&2
	"$cc" -O2 -Wall -Wextra -o "$bench" "$here/devemu_bench.c" -pthread ||
		{ echo "run.sh: cannot build devemu_bench" >&2; exit 1; }
fi
if [[ ! -x $bare ]]; then
	bare=$tmp/bare_cuse
	# shellcheck disable=SC2046
	"$cc" -O2 -Wall -Wextra -o "$bare" "$here/bare_cuse.c" \
		$(pkg-config --cflags --libs fuse3 2>/dev/null || echo -lfuse3) \
		2>"$tmp/bare_cuse.build" || bare=
fi

# --- targets ----------------------------------------------------------------

want() {
	[[ " ${targets[*]} " == *" $1 "* && " ${skip[*]} " != *" $1 "* ]]
}

# start_daemon TARGET NODE CMD...: run CMD in the background until NODE appears.
start_daemon() {
	local target=$1 node=$2 waited=0 limit
	shift 2
	"${pinned[@]}" "$@" >"$tmp/$target.log" 2>&1 &
	pid_of[$target]=$!
	limit=$((start_timeout * 10))
	while [[ ! -e $node ]]; do
		if ! kill -0 "${pid_of[$target]}" 2>/dev/null || ((waited >= limit)); then
			skip_note[$target]="did not create $node ($(tail -n 1 "$tmp/$target.log" 2>/dev/null || echo no output))"
			stop_daemon "$target"
			return 1
		fi
		sleep 0.1
		waited=$((waited + 1))
	done
	node_of[$target]=$node
}

stop_daemon() {
	local pid=${pid_of[$1]:-} i
	[[ -n $pid ]] || return 0
	unset "pid_of[$1]"
	kill -TERM "$pid" 2>/dev/null
	for ((i = 0; i < 50; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	return 0
}

# start_devemud TARGET TRANSPORT [ARGS...]: devemud's zero model (MODEL, default zero) as /dev/bench_<target>_<pid>.
start_devemud() {
	local name=bench_${1//-/_}_$$
	[[ -x $DEVEMUD ]] || { skip_note[$1]="no devemud at $DEVEMUD"; return 1; }
	start_daemon "$1" "/dev/$name" "$DEVEMUD" --foreground --transport "$2" --control none \
		--device "$name=${MODEL:-$bench_model}${FIFO:+,fifo=$FIFO}" "${devemud_args[@]}" "${@:3}"
}
python_zero="python,script=$repo/examples/python/zero.py,class=Zero"

setup_target() {
	case $1 in
	kernel)
		[[ -c $kernel_node ]] || { skip_note[$1]="no $kernel_node"; return 1; }
		node_of[$1]=$kernel_node
		;;
	bare-cuse)
		[[ -c /dev/cuse ]] || { skip_note[$1]="no /dev/cuse (kernel without CUSE; run in tests/vm)"; return 1; }
		[[ -n $bare ]] || { skip_note[$1]="cannot build bare_cuse: $(head -n 1 "$tmp/bare_cuse.build")"; return 1; }
		start_daemon "$1" "/dev/bench_bare_$$" "$bare" "bench_bare_$$"
		;;
	devemu-cuse)
		[[ -c /dev/cuse ]] || { skip_note[$1]="no /dev/cuse (kernel without CUSE; run in tests/vm)"; return 1; }
		start_devemud "$1" cuse
		;;
	devemu-kshim)
		# --- devemu-kshim: the kernel path. Needs devemu_kshim.ko loaded;
		# devemud then serves the same zero model with --transport kshim.
		[[ -d /sys/module/devemu_kshim ]] || { skip_note[$1]="devemu_kshim.ko not loaded"; return 1; }
		start_devemud "$1" kshim
		;;
	devemu-kshim-req)
		# The same without the stream FIFOs: every read and write is a request to the daemon.
		[[ -d /sys/module/devemu_kshim ]] || { skip_note[$1]="devemu_kshim.ko not loaded"; return 1; }
		FIFO=off start_devemud "$1" kshim
		;;
	devemu-kshim-poll)
		# The kernel path with the core busy-polling the ring for BENCH_BUSY_POLL us (default 200)
		# after each doorbell instead of sleeping on the eventfd. Busy-polling is meant for a CPU
		# of the daemon's own (as io_uring's SQPOLL thread): the daemon runs on poll_cpu when
		# there is one, so a request reaches the core without waking it and without a context
		# switch on the caller's CPU.
		[[ -d /sys/module/devemu_kshim ]] || { skip_note[$1]="devemu_kshim.ko not loaded"; return 1; }
		local -a saved=("${pinned[@]}")
		[[ -n $poll_cpu ]] && pinned=(taskset -c "$poll_cpu")
		FIFO=off start_devemud "$1" kshim --busy-poll "${BENCH_BUSY_POLL:-200}"
		local ret=$?
		pinned=("${saved[@]}")
		return $ret
		;;
	devemu-fuse)
		[[ -c /dev/fuse ]] || { skip_note[$1]="no /dev/fuse"; return 1; }
		start_devemud "$1" fuse
		;;
	python-cuse)
		[[ -c /dev/cuse ]] || { skip_note[$1]="no /dev/cuse (kernel without CUSE; run in tests/vm)"; return 1; }
		MODEL=$python_zero start_devemud "$1" cuse
		;;
	python-kshim)
		[[ -d /sys/module/devemu_kshim ]] || { skip_note[$1]="devemu_kshim.ko not loaded"; return 1; }
		MODEL=$python_zero start_devemud "$1" kshim
		;;
	python-fuse)
		[[ -c /dev/fuse ]] || { skip_note[$1]="no /dev/fuse"; return 1; }
		MODEL=$python_zero start_devemud "$1" fuse
		;;
	esac
}

active=()
for t in "${all_targets[@]}"; do
	want "$t" || continue
	if setup_target "$t"; then
		active+=("$t")
	fi
done
((${#active[@]})) || { echo "run.sh: no target available" >&2; for t in "${!skip_note[@]}"; do echo "  $t: ${skip_note[$t]}" >&2; done; exit 1; }

# --- measurement ------------------------------------------------------------

cells=()
if [[ $bench_model == rng ]]; then default_ops="read"; else default_ops="read write poll fionread"; fi
for op in ${BENCH_OPS:-$default_ops}; do
	case $op in
	poll | fionread) cells+=("$op 0 1") ;;
	*)
		for size in $sizes; do
			for threads in $thread_counts; do
				cells+=("$op $size $threads")
			done
		done
		;;
	esac
done

declare -A ops_s=() mb_s=() mean=() p99=() fail=() errno_of=() mark_of=() nops=() bells=()
results=$tmp/results
: >"$results"
clock_ns=
failed=0
# A wedged daemon must not hang the table: bound each cell generously.
cell_timeout=$(awk -v s="$cell_seconds" 'BEGIN { printf "%d", s * 5 + 60 }')

# kv KEY LINE: the value of KEY in a key=value result line.
kv() {
	local word
	for word in $2; do
		[[ $word == "$1="* ]] && { echo "${word#*=}"; return; }
	done
}

# take KEY LINE: file a result line's numbers under KEY (no subshells: this
# runs for every cell, and a fork is slow in an emulated guest).
take() {
	local word
	for word in $2; do
		case $word in
		ops_per_s=*) ops_s[$1]=${word#*=} ;;
		mb_per_s=*) mb_s[$1]=${word#*=} ;;
		mean_ns=*) mean[$1]=${word#*=} ;;
		p99_ns=*) p99[$1]=${word#*=} ;;
		errno=*) errno_of[$1]=${word#*=} ;;
		ops=*) nops[$1]=${word#*=} ;;
		doorbells=*) bells[$1]=${word#*=} ;;
		clock_ns=*) clock_ns=${clock_ns:-${word#*=}} ;;
		esac
	done
	[[ ${errno_of[$1]} == 0 ]] || mark_of[$1]=${errno_of[$1]}
}

# run_cell TARGET OP SIZE THREADS: one round of one cell; appends its result line.
run_cell() {
	local target=$1 op=$2 size=$3 threads=$4 key="$1|$2|$3|$4" line rc
	local extra=() sysfs="" before=""
	# A kernel-shim node counts the daemon wake-ups it asked for (sysfs doorbells).
	[[ -r /sys/class/devemu/${node_of[$target]#/dev/}/doorbells ]] &&
		sysfs=/sys/class/devemu/${node_of[$target]#/dev/}/doorbells && read -r before <"$sysfs"
	# /dev/zero, and zero models like it, may reject FIONREAD (ENOTTY): that
	# still measures the ioctl round trip, so the row stays, marked.
	[[ $op == fionread ]] && extra=(--allow-errors)
	line=$(timeout -k 5 "$cell_timeout" "${pinned[@]}" "$bench" --node "${node_of[$target]}" \
		--op "$op" --size "$size" --threads "$threads" \
		--seconds "$cell_seconds" --label "$target" "${extra[@]}" \
		2>"$tmp/cell.err")
	rc=$?
	if [[ -n $sysfs && -n $line ]]; then
		local after
		read -r after <"$sysfs"
		line+=" doorbells=$((after - before))"
	fi
	[[ -n $raw_out && -n $line ]] && echo "$line" >>"$raw_out"
	[[ -n $line ]] && printf '%s\t%s\n' "$key" "$line" >>"$results"
	((rc)) || return 0
	failed=1
	[[ -z ${fail[$key]:-} ]] || return 0
	if [[ -n $line ]]; then
		fail[$key]="$(kv errno "$line") after $(kv ops "$line") ops"
	elif ((rc == 124 || rc == 137)); then
		fail[$key]="timed out"
	else
		fail[$key]=$(head -n 1 "$tmp/cell.err")
		fail[$key]=${fail[$key]:-exit $rc}
	fi
}

[[ -n $raw_out ]] && : >"$raw_out"
for ((round = 1; round <= rounds; round++)); do
	for cell in "${cells[@]}"; do
		for t in "${active[@]}"; do
			# shellcheck disable=SC2086
			run_cell "$t" $cell
		done
	done
done

# Each cell's median round by mean latency (the lower median for an even count).
while IFS=$'\t' read -r key line; do
	take "$key" "$line"
done < <(awk -F'\t' '
	{ match($2, /mean_ns=[0-9.]+/); print $1 "\t" substr($2, RSTART + 8, RLENGTH - 8) "\t" $2 }' "$results" |
	sort -t$'\t' -k1,1 -k2,2g |
	awk -F'\t' '
		function flush() { if (n) print key "\t" l[int((n + 1) / 2)]; n = 0 }
		$1 != key { flush(); key = $1 }
		{ l[++n] = $3 }
		END { flush() }')

# Facts the table needs, read before the daemons go away.
for t in devemu-fuse python-fuse; do
	[[ " ${cells[*]} " == *" fionread 0 1 "* ]] || continue
	if [[ -n ${node_of[$t]:-} ]] && [[ $(stat -L -c %F "${node_of[$t]}" 2>/dev/null) == regular*file ]]; then
		mark_of[$t|fionread|0|1]=VFS
		notes+=("$t fionread (VFS): the node is a regular file in a FUSE mount, so the VFS answers FIONREAD (i_size - pos) without asking devemud; summaries skip that cell.")
	fi
done
for t in "${!pid_of[@]}"; do
	stop_daemon "$t"
done

# --- report -----------------------------------------------------------------

fmt_size() {
	case $1 in
	0) echo - ;;
	*) if (($1 >= 1048576 && $1 % 1048576 == 0)); then echo "$(($1 / 1048576)) MiB"
	   elif (($1 >= 1024 && $1 % 1024 == 0)); then echo "$(($1 / 1024)) KiB"
	   else echo "$1 B"; fi ;;
	esac
}

machine() {
	local model vm container
	model=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null)
	vm=$(systemd-detect-virt --vm 2>/dev/null) || vm=${vm:-none}
	[[ $vm == none ]] && grep -qw hypervisor /proc/cpuinfo 2>/dev/null && vm="yes (cpuid hypervisor flag)"
	[[ $model == *TCG* ]] && vm="$vm, software emulation (TCG)"
	[[ ${DEVEMU_IN_VM:-} == 1 ]] && vm="$vm, tests/vm guest"
	container=$(systemd-detect-virt --container 2>/dev/null) || container=${container:-none}
	echo "machine: Linux $(uname -r), $(nproc) CPUs, ${model:-unknown CPU}; VM: ${vm:-unknown}; container: ${container:-unknown}"
}

echo "devemu benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), ${cell_seconds} s per cell and round, median of $rounds round(s)"
machine
echo "kernel command line: $(cat /proc/cmdline)"
echo "model: $bench_model (kernel row: $kernel_node)"
if [[ $pin != none ]]; then
	echo "pinned: the bench and every daemon run on CPU(s) $pin (taskset)$(want devemu-kshim-poll && [[ -n $poll_cpu ]] && echo ", except the busy-polling daemon (devemu-kshim-poll): CPU $poll_cpu")"
fi
[[ ${DEVEMU_BENCH_CLOCK:-} == icount ]] &&
	echo "clock: QEMU -icount shift=0 (tests/bench/vm.sh --icount): guest time is guest instructions, 1 us = 1000 instructions (kernel and user); ratios are instruction-count ratios"
[[ -n $clock_ns ]] && echo "clock read: ${clock_ns} ns (amortised in lat mean; included once in each lat p99 sample)"
echo

# The table: one raw row per target and cell, formatted by one awk into
# aligned columns that are also a markdown table (numbers right-aligned).
for cell in "${cells[@]}"; do
	read -r op size threads <<<"$cell"
	for t in "${active[@]}"; do
		key="$t|$op|$size|$threads"
		mark=${mark_of[$key]:-}
		[[ -n ${fail[$key]:-} ]] && mark=failed
		printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$op" "$mark" \
			"$size" "$threads" "${ops_s[$key]:-}" "${mb_s[$key]:-}" \
			"${mean[$key]:-}" "${p99[$key]:-}" \
			"${mean[kernel|$op|$size|$threads]:-}" \
			"${mean[bare-cuse|$op|$size|$threads]:-}" "${nops[$key]:-}" "${bells[$key]:-}"
	done
done | awk -F'\t' '
	function size(b) {
		if (b == 0) return "-"
		if (b >= 1048576 && b % 1048576 == 0) return b / 1048576 " MiB"
		if (b >= 1024 && b % 1024 == 0) return b / 1024 " KiB"
		return b " B"
	}
	function ns(v) {
		if (v == "") return ""
		if (v < 1000) return sprintf("%.0f ns", v)
		if (v < 1e6) return sprintf("%.2f us", v / 1e3)
		return sprintf("%.2f ms", v / 1e6)
	}
	function ratio(a, b) { return (a == "" || b == "" || b <= 0) ? "-" : sprintf("%.2fx", a / b) }
	BEGIN {
		n = split("target|op|size|threads|ops/s|MB/s|lat mean|lat p99|x zero|x bare|wake/MB", r, "|")
		for (i = 1; i <= n; i++) cell[1, i] = r[i]
		rows = 1
	}
	{
		rows++
		r[1] = $1; r[2] = $2 ($3 == "" ? "" : " (" $3 ")"); r[3] = size($4); r[4] = $5
		if ($8 == "") {
			r[2] = $2; r[5] = "failed"; for (i = 6; i <= n; i++) r[i] = ""
		} else {
			r[5] = sprintf("%.0f", $6); r[6] = $4 == 0 ? "-" : sprintf("%.1f", $7)
			r[7] = ns($8); r[8] = ns($9); r[9] = ratio($8, $10); r[10] = ratio($8, $11)
			r[11] = ($13 == "" || $4 == 0 || $12 <= 0) ? "-" : sprintf("%.1f", $13 / ($12 * $4 / 1e6))
		}
		for (i = 1; i <= n; i++) cell[rows, i] = r[i]
	}
	END {
		for (row = 1; row <= rows; row++)
			for (i = 1; i <= n; i++)
				if (length(cell[row, i]) > w[i]) w[i] = length(cell[row, i])
		for (row = 1; row <= rows; row++) {
			line = "|"
			for (i = 1; i <= n; i++)
				line = line sprintf(i >= 4 && row > 1 ? " %*s |" : " %-*s |", w[i], cell[row, i])
			print line
			if (row == 1) {
				line = "|"
				for (i = 1; i <= n; i++) {
					dashes = sprintf("%*s", w[i], ""); gsub(/ /, "-", dashes)
					line = line (i >= 4 ? "-" dashes ":|" : ":" dashes "-|")
				}
				print line
			}
		}
	}'

echo
echo "lat mean = per-op latency seen by one thread (its run time / its ops); lat p99 = over individually timed ops;"
echo "ops/s and MB/s are totals over all threads."
echo "x zero, x bare = lat / lat of the kernel row ($kernel_node), of bare-cuse in the same cell of this run (lower is better)."
echo "wake/MB = daemon wake-ups the kernel shim asked for (sysfs doorbells) per MB moved (kshim rows only)."


# summary FROM REF: geometric mean and worst of FROM's latency ratio to REF over shared cells.
summary() {
	local from=$1 ref=$2 cell key rkey list=()
	for cell in "${cells[@]}"; do
		read -r op size threads <<<"$cell"
		key="$from|$op|$size|$threads"
		rkey="$ref|$op|$size|$threads"
		[[ -n ${mean[$key]:-} && -n ${mean[$rkey]:-} && -z ${fail[$key]:-} && -z ${fail[$rkey]:-} ]] || continue
		[[ ${mark_of[$key]:-} == "${mark_of[$rkey]:-}" && ${mark_of[$key]:-} != VFS ]] || continue
		list+=("${mean[$key]} ${mean[$rkey]} $op/$(fmt_size "$size" | tr -d ' ')/x$threads")
	done
	((${#list[@]})) || return 0
	printf '%s\n' "${list[@]}" | awk -v from="$from" -v ref="$ref" '
		{ r = $1 / $2; s += log(r); n++; if (r > worst) { worst = r; where = $3 } }
		END {
			g = exp(s / n)
			printf "%s vs %s: geometric mean %.2fx over %d cells, worst %.2fx (%s)", from, ref, g, n, worst, where
			if (from == "devemu-cuse" && ref == "bare-cuse")
				printf "; target <= 1.10x: %s", g <= 1.10 ? "met" : "missed"
			printf "\n"
		}'
}

summaries=$(for t in "${active[@]}"; do
	[[ $t == kernel ]] && continue
	[[ $t == devemu-* ]] && summary "$t" bare-cuse
	[[ $t == devemu-kshim* ]] && summary "$t" devemu-cuse
	# the cost of Python against the C++ zero on the same path (kshim: both on the request path)
	[[ $t == python-kshim ]] && summary "$t" devemu-kshim-req
	[[ $t == python-cuse || $t == python-fuse ]] && summary "$t" "devemu-${t#python-}"
	summary "$t" kernel
done)
[[ -n $summaries ]] && printf '\n%s\n' "$summaries"

for t in "${active[@]}"; do
	e=${errno_of[$t|fionread|0|1]:-0}
	[[ $e != 0 ]] && notes+=("$t fionread ($e): FIONREAD is rejected there, so that row is the cost of a rejected ioctl; summaries compare it only with rows rejected the same way.")
done
for cell in "${cells[@]}"; do
	read -r op size threads <<<"$cell"
	for t in "${active[@]}"; do
		key="$t|$op|$size|$threads"
		[[ -n ${fail[$key]:-} ]] &&
			notes+=("$t $op$( ((size)) && echo " $(fmt_size "$size")") x$threads failed: ${fail[$key]}")
	done
done
cpus=$("${pinned[@]}" nproc)
for threads in $thread_counts; do
	((threads > cpus)) || continue
	notes+=("$threads threads on $cpus CPU(s): lat includes time a thread waits for a CPU (compare ops/s there).")
	break
done

for t in "${all_targets[@]}"; do
	want "$t" || continue
	[[ -n ${skip_note[$t]:-} ]] && notes+=("$t skipped: ${skip_note[$t]}")
done
((${#notes[@]})) && { echo; printf 'note: %s\n' "${notes[@]}"; }
exit "$failed"
