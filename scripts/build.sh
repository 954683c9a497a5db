#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Configures (once) and builds devemu in build/.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f build/build.ninja ]; then
	meson setup build >/dev/null
fi
meson compile -C build >/dev/null || meson compile -C build
