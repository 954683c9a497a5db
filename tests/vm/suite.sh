#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The vm suite, run inside the guest by tests/vm/run: conformance, any-program and service tests on real CUSE.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
build=${1:-$repo/build}
cd "$repo"
echo "vm suite: kernel $(uname -r), /dev/cuse: $(ls -l /dev/cuse 2>&1)"
status=0
pytest() { /usr/bin/python3 -m pytest -q -rs -p no:cacheprovider "$@" || status=1; }

pytest "$repo/tests/conformance/test_node.py" --transport cuse --devemud "$build/cuse_dev/devemud" \
	--client "$build/tests/conformance/devemu_client" --check-dmesg
pytest "$repo/tests/service" --transport cuse --devemud "$build/cuse_dev/devemud" \
	--devemuctl "$build/cuse_dev/devemuctl" --build-dir "$build" --service-timeout 240
exit $status
