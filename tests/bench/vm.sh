#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# vm.sh: runs tests/bench/run.sh inside the tests/vm guest with devemu_kshim.ko loaded, so the
# CUSE and kernel-shim rows exist (this machine's own kernel has neither).
#
# Usage: tests/bench/vm.sh [--icount] [--stream] [run.sh arguments]
#   --stream  run tests/bench/stream.sh (pipe vs loopback, one writer and one reader) instead of run.sh
#   --icount  boot the guest with one vCPU under QEMU's instruction counter (-icount shift=0,
#             sleep=off): guest time then advances one nanosecond per guest instruction, kernel
#             and user alike, so "lat" is instructions per operation / 1000 and a ratio is a
#             ratio of instruction counts. These runs repeat to within a few percent, where
#             wall-clock TCG runs of the same binaries differ by 10-40% from run to run
#             (host scheduling of the emulator threads); what icount does not model is
#             cache, TLB and memory cost.
# Without --icount the guest runs as tests/vm/run always does (2 vCPUs, multi-threaded TCG) and
# lat is wall-clock time in the guest.
# The guest boots a production kernel command line (DEVEMU_VM_DEBUG=0: no slub_debug, no
# panic_on_warn); run.sh prints it (/proc/cmdline) above the table.
# Environment: BENCH_* variables of run.sh are passed into the guest.

set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

icount=0
if [[ ${1:-} == --icount ]]; then
	icount=1
	shift
fi
script=run.sh
if [[ ${1:-} == --stream ]]; then
	script=stream.sh
	shift
fi
ko=$repo/build/kshim/devemu_kshim.ko
[[ -r $ko ]] || { echo "vm.sh: $ko is missing (build with kernel headers installed)" >&2; exit 1; }

vars=$(compgen -v | grep '^BENCH_' | tr '\n' ' ' || true)
export DEVEMU_VM_ENV="${DEVEMU_VM_ENV:-} $vars DEVEMU_BENCH_CLOCK"
if ((icount)); then
	export DEVEMU_VM_SMP=1 DEVEMU_VM_ACCEL=tcg,thread=single
	export DEVEMU_VM_QEMU_ARGS="-icount shift=0,sleep=off"
	export DEVEMU_BENCH_CLOCK=icount
else
	export DEVEMU_BENCH_CLOCK=wall
fi
export DEVEMU_VM_DEBUG=${DEVEMU_VM_DEBUG:-0}
cd "$repo"
args=$(printf ' %q' "$@")
exec "$repo/tests/vm/run" --timeout "${BENCH_VM_TIMEOUT:-3600}" \
	sh -c "insmod build/kshim/devemu_kshim.ko && exec tests/bench/$script$args"
