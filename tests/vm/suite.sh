#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The vm suite, run inside the guest by tests/vm/run: conformance, any-program, service, device-class and
# Python-package tests on real CUSE nodes and, with devemu_kshim.ko loaded, on kernel-shim nodes.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
build=${1:-$repo/build}
# DEVEMU_VM_PARTS: cuse, kshim (the suites on kernel-shim nodes), kshim-selftest (the module's self-tests).
parts=${DEVEMU_VM_PARTS:-cuse kshim}
cd "$repo"
echo "vm suite: kernel $(uname -r), /dev/cuse: $(ls -l /dev/cuse 2>&1)"
status=0
# Every suite takes the library's options (tests/lib/devemu_testlib): --check-dmesg fails the test during
# which the kernel logged a warning, BUG or oops.
pytest() {
	echo "== pytest $*"
	/usr/bin/python3 -m pytest -q -rs -p no:cacheprovider "$@" --build-dir "$build" --devemud "$build/cuse_dev/devemud" \
		--check-dmesg || status=1
}
conformance() {
	pytest "$repo/tests/conformance/test_node.py" --transport "$1" --client "$build/tests/conformance/devemu_client" "${@:2}"
}
service() {
	pytest "$repo/tests/service" --transport "$1" --devemuctl "$build/cuse_dev/devemuctl" --test-timeout 240 "${@:2}"
}
devices() {
	pytest "$repo/tests/devices" --transport "$1" --devemuctl "$build/cuse_dev/devemuctl"
}
# The devemu Python package's suite takes only the plugin's options, as a user's project would.
python_package() {
	echo "== pytest tests/python --devemu-transport $1"
	PYTHONDONTWRITEBYTECODE=1 /usr/bin/python3 -m pytest -q -rs -p no:cacheprovider "$repo/tests/python" \
		--devemu-transport "$1" --devemu-devemud "$build/cuse_dev/devemud" || status=1
}

if [[ " $parts " == *" cuse "* ]]; then
	# The suites skip without /dev/cuse (for a user's machine); this guest must have it.
	[[ -c /dev/cuse ]] || { echo "FAIL: no /dev/cuse in the guest"; exit 1; }
	conformance cuse
	service cuse
	devices cuse
	python_package cuse
	# CUSE as a member of the devemu group (a bare uid and gid: the guest's /etc is read-only).
	echo "== tests/vm/noroot_cuse.sh"
	"$here/noroot_cuse.sh" "$build" || status=1
fi
ko=${DEVEMU_KSHIM_KO:-$build/kshim/devemu_kshim.ko}
if [[ " $parts " == *" kshim-selftest "* || " $parts " == *" kshim "* ]] && [[ ! -r $ko ]]; then
	echo "FAIL: $ko was not built (kernel headers missing?)"
	exit 1
fi
# The module's own self-tests (tests/kshim: stand-in, hostile and random daemons and clients), which load and
# unload it themselves.
if [[ " $parts " == *" kshim-selftest "* ]]; then
	echo "== tests/kshim/run_selftest.sh $ko"
	"$repo/tests/kshim/run_selftest.sh" "$ko" "$build" || status=1
fi
if [[ " $parts " == *" kshim "* ]]; then
	# DEVEMU_VM_KSHIM_SUITES picks which of the suites run on kernel-shim nodes (the debug kernel's CI run
	# takes conformance only: the others take four times as long there).
	kshim_suites=" ${DEVEMU_VM_KSHIM_SUITES:-conformance service devices python} "
	insmod "$ko" || { echo "FAIL: insmod $ko"; exit 1; }
	[[ -c /dev/devemu-kshim ]] || { echo "FAIL: no /dev/devemu-kshim after insmod"; exit 1; }
	# Twice: with the stream FIFOs (the default: a loopback is a loop in them), then on the request path.
	[[ $kshim_suites == *" conformance "* ]] && conformance kshim && conformance kshim --fifo off
	# The plugin build is transport-independent and slow here; it ran on CUSE above.
	[[ $kshim_suites == *" service "* ]] && service kshim -k "not plugin"
	[[ $kshim_suites == *" devices "* ]] && devices kshim
	[[ $kshim_suites == *" python "* ]] && python_package kshim
	# The kernel shim as members of the devemu group (user devices), as noroot_cuse.sh does for CUSE.
	if [[ $kshim_suites == *" service "* ]]; then
		echo "== tests/vm/noroot_kshim.sh"
		"$here/noroot_kshim.sh" "$build" || status=1
	fi
	rmmod devemu_kshim || { echo "FAIL: rmmod devemu_kshim after the suites"; status=1; }
fi
exit $status
