#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# build_ko.sh KO61 OUTDIR: builds devemu_kshim.ko for Debian 13's kernel (6.12) with trixie's compiler, in
# the chroot of scripts/kernel-trixie.sh, from the sources kshim/build_ko.sh copied next to KO61 (its
# src/ directory: whatever files kshim/meson.build lists), and leaves OUTDIR/devemu_kshim.ko (the 6.1
# module is not touched). Called by kshim/trixie/meson.build. Fails, saying why, without the chroot.
set -eu
ko61=$1
out=$2
helper=$(dirname "$0")/../../scripts/kernel-trixie.sh
src61=$(dirname "$ko61")/src
root=$("$helper" path) || exit 1
kdir=$("$helper" kdir) || exit 1
mkdir -p "$out"
# kbuild writes next to the sources, and the compiler runs in the chroot: build in a private
# directory inside it, then copy the module and the log out.
job=$(mktemp -d "$root/tmp/devemu-kshim.XXXXXX")
trap 'rm -rf -- "$job"' EXIT
for f in "$src61"/*.c "$src61"/*.h "$src61"/Kbuild; do
	[ -f "$f" ] && cp "$f" "$job/"
done
cp -r "$src61/include" "$job/include"
rel=/tmp/${job##*/}
if ! "$helper" make -C "$kdir" M="$rel" modules >"$job/build.log" 2>&1; then
	cp "$job/build.log" "$out/build.log"
	cat "$job/build.log" >&2
	exit 1
fi
cp "$job/build.log" "$out/build.log"
if grep -q 'warning:' "$job/build.log"; then
	cat "$job/build.log" >&2
fi
cp "$job/devemu_kshim.ko" "$out/devemu_kshim.ko"
