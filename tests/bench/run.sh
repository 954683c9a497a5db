#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# run.sh: runs the benchmark matrix on every available target and prints one table with ratios to /dev/zero and to the bare CUSE responder.
#
# Usage: tests/bench/run.sh [--targets LIST] [--skip LIST] [--seconds S] [--raw FILE]
#   LIST is comma-separated from: kernel bare-cuse devemu-cuse devemu-kshim devemu-fuse
#   (default: all; a target whose prerequisites are missing is skipped with a note).
# Environment:
#   BENCH_SECONDS   run time of one cell (default 1)
#   BENCH_SIZES     read/write sizes in bytes (default "1 4096 131072")
#   BENCH_THREADS   read/write thread counts (default "1 4")
#   BENCH_START_TIMEOUT  seconds to wait for a daemon's node (default 30)
#   DEVEMUD         devemud binary (default $repo/build/cuse_dev/devemud)
#   DEVEMUD_ARGS    extra arguments for devemud
#   BENCH_DIR       where devemu_bench and bare_cuse are (default $repo/build/tests/bench);
#                   when they are missing there, they are compiled into a temporary directory.
#
# Every number in one table comes from the same run: the cells are interleaved
# (for each cell, every target in turn), with all daemons started up front and
# idle while another target is measured. The exit status is 1 when a cell of
# an available target failed, 0 otherwise (skipped targets are not failures).

set -u -o pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
DEVEMUD=${DEVEMUD:-$repo/build/cuse_dev/devemud}
BENCH_DIR=${BENCH_DIR:-$repo/build/tests/bench}
cell_seconds=${BENCH_SECONDS:-1}
sizes=${BENCH_SIZES:-1 4096 131072}
thread_counts=${BENCH_THREADS:-1 4}
start_timeout=${BENCH_START_TIMEOUT:-30}
read -r -a devemud_args <<<"${DEVEMUD_ARGS:-}"

all_targets=(kernel bare-cuse devemu-cuse devemu-kshim devemu-fuse)
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
	"$@" >"$tmp/$target.log" 2>&1 &
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

# start_devemud TARGET TRANSPORT: devemud's zero model as /dev/bench_<transport>_<pid>.
start_devemud() {
	local name=bench_$2_$$
	[[ -x $DEVEMUD ]] || { skip_note[$1]="no devemud at $DEVEMUD"; return 1; }
	start_daemon "$1" "/dev/$name" "$DEVEMUD" --foreground --transport "$2" \
		--device "$name=zero" "${devemud_args[@]}"
}

setup_target() {
	case $1 in
	kernel)
		[[ -c /dev/zero ]] || { skip_note[$1]="no /dev/zero"; return 1; }
		node_of[$1]=/dev/zero
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
	devemu-fuse)
		[[ -c /dev/fuse ]] || { skip_note[$1]="no /dev/fuse"; return 1; }
		start_devemud "$1" fuse
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
for op in read write; do
	for size in $sizes; do
		for threads in $thread_counts; do
			cells+=("$op $size $threads")
		done
	done
done
cells+=("poll 0 1" "fionread 0 1")

declare -A ops_s=() mb_s=() mean=() p99=() fail=() errno_of=()
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

run_cell() {
	local target=$1 op=$2 size=$3 threads=$4 key="$1|$2|$3|$4" line rc
	local extra=()
	# /dev/zero has no FIONREAD: its row is the cost of the ioctl syscall (ENOTTY).
	[[ $target == kernel && $op == fionread ]] && extra=(--allow-errors)
	line=$(timeout -k 5 "$cell_timeout" "$bench" --node "${node_of[$target]}" \
		--op "$op" --size "$size" --threads "$threads" \
		--seconds "$cell_seconds" --label "$target" "${extra[@]}" \
		2>"$tmp/cell.err")
	rc=$?
	[[ -n $raw_out && -n $line ]] && echo "$line" >>"$raw_out"
	if [[ -z $line ]]; then
		if ((rc == 124 || rc == 137)); then
			fail[$key]="timed out"
		else
			fail[$key]=$(head -n 1 "$tmp/cell.err")
			fail[$key]=${fail[$key]:-exit $rc}
		fi
		failed=1
		return
	fi
	ops_s[$key]=$(kv ops_per_s "$line")
	mb_s[$key]=$(kv mb_per_s "$line")
	mean[$key]=$(kv mean_ns "$line")
	p99[$key]=$(kv p99_ns "$line")
	errno_of[$key]=$(kv errno "$line")
	: "${clock_ns:=$(kv clock_ns "$line")}"
	if ((rc)); then
		fail[$key]="${errno_of[$key]} after $(kv ops "$line") ops"
		failed=1
	fi
}

[[ -n $raw_out ]] && : >"$raw_out"
for cell in "${cells[@]}"; do
	for t in "${active[@]}"; do
		# shellcheck disable=SC2086
		run_cell "$t" $cell
	done
done

# Facts the table needs, read before the daemons go away.
if [[ -n ${node_of[devemu-fuse]:-} ]] && [[ $(stat -L -c %F "${node_of[devemu-fuse]}" 2>/dev/null) == "regular file" ]]; then
	notes+=("devemu-fuse fionread: the node is a regular file in a FUSE mount, so the VFS answers FIONREAD (i_size - pos) without asking devemud.")
fi
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

fmt_ns() {
	awk -v v="$1" 'BEGIN {
		if (v < 1000) printf "%.0f ns", v
		else if (v < 1e6) printf "%.2f us", v / 1e3
		else printf "%.2f ms", v / 1e6 }'
}

ratio() {
	[[ -n ${2:-} && -n ${1:-} ]] || { echo -; return; }
	awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }'
}

machine() {
	local model virt hv
	model=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null)
	virt=$(systemd-detect-virt 2>/dev/null) || virt=${virt:-none}
	if grep -qw hypervisor /proc/cpuinfo 2>/dev/null; then hv=yes; else hv=no; fi
	echo "machine: Linux $(uname -r), $(nproc) CPUs, ${model:-unknown CPU}; virtualization: ${virt:-unknown}, cpuid hypervisor flag: $hv"
}

echo "devemu benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), ${cell_seconds} s per cell"
machine
[[ -n $clock_ns ]] && echo "clock read: ${clock_ns} ns (amortised in lat mean; included once in each lat p99 sample)"
echo

rows=$tmp/rows
{
	printf 'target\top\tsize\tthreads\tops/s\tMB/s\tlat mean\tlat p99\tx zero\tx bare\n'
	for cell in "${cells[@]}"; do
		read -r op size threads <<<"$cell"
		for t in "${active[@]}"; do
			key="$t|$op|$size|$threads"
			zkey="kernel|$op|$size|$threads"
			bkey="bare-cuse|$op|$size|$threads"
			if [[ -n ${fail[$key]:-} && -z ${mean[$key]:-} ]]; then
				printf '%s\t%s\t%s\t%s\tfailed\t\t\t\t\t\n' "$t" "$op" \
					"$(fmt_size "$size")" "$threads"
				continue
			fi
			mark=
			[[ -n ${fail[$key]:-} ]] && mark=" (failed)"
			[[ $t == kernel && $op == fionread && ${errno_of[$key]} != 0 ]] &&
				mark=" (${errno_of[$key]})"
			printf '%s\t%s%s\t%s\t%s\t%.0f\t%s\t%s\t%s\t%s\t%s\n' "$t" "$op" "$mark" \
				"$(fmt_size "$size")" "$threads" "${ops_s[$key]}" \
				"$([[ $size == 0 ]] && echo - || printf '%.1f' "${mb_s[$key]}")" \
				"$(fmt_ns "${mean[$key]}")" "$(fmt_ns "${p99[$key]}")" \
				"$(ratio "${mean[$key]}" "${mean[$zkey]:-}")" \
				"$(ratio "${mean[$key]}" "${mean[$bkey]:-}")"
		done
	done
} >"$rows"

# Aligned columns that are also a markdown table; numbers right-aligned.
awk -F'\t' '
	{ for (i = 1; i <= NF; i++) { cell[NR, i] = $i; if (length($i) > w[i]) w[i] = length($i) } n = NF; rows = NR }
	END {
		for (r = 1; r <= rows; r++) {
			line = "|"
			for (i = 1; i <= n; i++) {
				if (i >= 4 && r > 1) line = line sprintf(" %*s |", w[i], cell[r, i])
				else line = line sprintf(" %-*s |", w[i], cell[r, i])
			}
			print line
			if (r == 1) {
				line = "|"
				for (i = 1; i <= n; i++) {
					dashes = sprintf("%*s", w[i], ""); gsub(/ /, "-", dashes)
					line = line (i >= 4 ? "-" dashes ":|" : ":" dashes "-|")
				}
				print line
			}
		}
	}' "$rows"

echo
echo "lat mean = per-op latency seen by one thread (its run time / its ops); lat p99 = over individually timed ops;"
echo "ops/s and MB/s are totals over all threads."
echo "x zero, x bare = lat / lat of /dev/zero, of bare-cuse in the same cell of this run (lower is better)."

# summary FROM REF: geometric mean and worst of FROM's latency ratio to REF over shared cells.
summary() {
	local from=$1 ref=$2 cell key rkey list=()
	for cell in "${cells[@]}"; do
		read -r op size threads <<<"$cell"
		key="$from|$op|$size|$threads"
		rkey="$ref|$op|$size|$threads"
		[[ -n ${mean[$key]:-} && -n ${mean[$rkey]:-} && -z ${fail[$key]:-} && -z ${fail[$rkey]:-} ]] || continue
		list+=("${mean[$key]} ${mean[$rkey]} $op/$(fmt_size "$size" | tr -d ' ')/x$threads")
	done
	((${#list[@]})) || return 0
	printf '%s\n' "${list[@]}" | awk -v from="$from" -v ref="$ref" '
		{ r = $1 / $2; s += log(r); n++; if (r > worst) { worst = r; where = $3 } }
		END {
			g = exp(s / n)
			printf "%s vs %s: geometric mean %.2fx over %d cells, worst %.2fx (%s)", from, ref, g, n, worst, where
			if (ref == "bare-cuse" && from ~ /^devemu-/)
				printf "; target <= 1.10x: %s", g <= 1.10 ? "met" : "missed"
			printf "\n"
		}'
}

summaries=$(for t in "${active[@]}"; do
	[[ $t == kernel ]] && continue
	[[ $t == devemu-* ]] && summary "$t" bare-cuse
	summary "$t" kernel
done)
[[ -n $summaries ]] && printf '\n%s\n' "$summaries"

[[ -n ${errno_of[kernel|fionread|0|1]:-} && ${errno_of[kernel|fionread|0|1]} != 0 ]] &&
	notes+=("kernel fionread: /dev/zero has no FIONREAD, so that row is the cost of an ioctl syscall the kernel rejects (${errno_of[kernel|fionread|0|1]}).")
for cell in "${cells[@]}"; do
	read -r op size threads <<<"$cell"
	for t in "${active[@]}"; do
		key="$t|$op|$size|$threads"
		[[ -n ${fail[$key]:-} ]] &&
			notes+=("$t $op$( ((size)) && echo " $(fmt_size "$size")") x$threads failed: ${fail[$key]}")
	done
done
for threads in $thread_counts; do
	((threads > $(nproc))) || continue
	notes+=("$threads threads on $(nproc) CPUs: lat includes time a thread waits for a CPU (compare ops/s there).")
	break
done

for t in "${all_targets[@]}"; do
	want "$t" || continue
	[[ -n ${skip_note[$t]:-} ]] && notes+=("$t skipped: ${skip_note[$t]}")
done
((${#notes[@]})) && { echo; printf 'note: %s\n' "${notes[@]}"; }
exit "$failed"
