#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Every soak, load and fault run behind docs/reliability.md's figures: load, soak and SIGKILLs on the
# host's transport (the FUSE fallback here), then, in the VM (tests/vm/run), SIGKILLs on CUSE and on the
# kernel shim and the module load/unload cycles. Prints each run's table; exit status 1 if any check failed.
# Usage: tests/soak/run.sh [BUILD_DIR]   (default build/; SOAK_OPS=N shortens the soak; SOAK_VM=0 skips the VM)
set -uo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
soak=(/usr/bin/python3 tests/soak/soak.py --devemud "$build/cuse_dev/devemud")
status=0
run() {
	echo "\$ $*"
	"$@" || status=1
}
run "${soak[@]}" load --devices 256 --clients 1000 --rounds 200
run "${soak[@]}" soak --ops "${SOAK_OPS:-10000000}"
run "${soak[@]}" kill --cycles 100
if [[ ${SOAK_VM:-1} != 0 ]]; then
	ko=$build/kshim/devemu_kshim.ko
	vm=$(printf '%q ' "${soak[@]}")
	run flock /tmp/devemu-vm.lock tests/vm/run --timeout 3000 -- sh -c "
		$vm --transport cuse kill --cycles 100 || exit 1
		insmod $ko || exit 1
		$vm --transport kshim kill --cycles 100 || exit 1
		$vm --transport kshim load --devices 64 --clients 256 --rounds 50 || exit 1
		rmmod devemu_kshim || exit 1
		$vm modcycle --cycles 50 --module $ko"
fi
exit $status
