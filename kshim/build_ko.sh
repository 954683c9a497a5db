#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# build_ko.sh KDIR OUTDIR FILE...: builds devemu_kshim.ko with kbuild in OUTDIR/src, a copy of the
# sources (kbuild writes its objects next to them; devemu.h goes to include/devemu/uapi/), and
# leaves OUTDIR/devemu_kshim.ko. Called by kshim/meson.build.
set -eu
kdir=$1
out=$2
shift 2
src=$out/src
mkdir -p "$src/include/devemu/uapi"
for f in "$@"; do
	case $f in
	*/devemu.h) cp "$f" "$src/include/devemu/uapi/devemu.h" ;;
	*) cp "$f" "$src/" ;;
	esac
done
src=$(cd "$src" && pwd)
if ! make -C "$kdir" M="$src" modules >"$src/build.log" 2>&1; then
	cat "$src/build.log" >&2
	exit 1
fi
# Warnings are errors in spirit: show them.
if grep -q 'warning:' "$src/build.log"; then
	cat "$src/build.log" >&2
fi
cp "$src/devemu_kshim.ko" "$out/devemu_kshim.ko"
