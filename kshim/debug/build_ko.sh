#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# build_ko.sh KO61 OUTDIR: builds devemu_kshim.ko for the debug kernel (Debian 12's source with KASAN, UBSAN,
# lockdep and kmemleak, from scripts/kernel-debug.sh) from the sources kshim/build_ko.sh copied next to KO61 (its
# src/ directory), and leaves OUTDIR/devemu_kshim.ko. Called by kshim/debug/meson.build. Fails, saying why,
# without the debug kernel.
set -eu
ko61=$1
out=$2
kdir=$("$(dirname "$0")/../../scripts/kernel-debug.sh" kdir) || exit 1
src=$out/src
rm -rf -- "$src"
mkdir -p "$src"
for f in "$(dirname "$ko61")"/src/*.c "$(dirname "$ko61")"/src/*.h "$(dirname "$ko61")"/src/Kbuild; do
	[ -f "$f" ] && cp "$f" "$src/"
done
cp -r "$(dirname "$ko61")/src/include" "$src/include"
src=$(cd "$src" && pwd)
if ! make -C "$kdir" M="$src" modules >"$src/build.log" 2>&1; then
	cat "$src/build.log" >&2
	exit 1
fi
if grep -q 'warning:' "$src/build.log"; then
	cat "$src/build.log" >&2
fi
cp "$src/devemu_kshim.ko" "$out/devemu_kshim.ko"
