#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# build_ko.sh KO61 OUTDIR: builds devemu_kshim.ko for the debug kernel (Debian 12's source with KASAN, UBSAN,
# lockdep and kmemleak, from scripts/kernel-debug.sh) from the sources kshim/build_ko.sh copied next to KO61 (its
# src/ directory), and leaves OUTDIR/devemu_kshim.ko, by kshim/build_ko.sh with the debug kernel's tree. Called by
# kshim/debug/meson.build. Fails, saying why, without the debug kernel.
set -eu
ko61=$1
out=$2
here=$(dirname "$0")
kdir=$("$here/../../scripts/kernel-debug.sh" kdir) || exit 1
src61=$(dirname "$ko61")/src
exec "$here/../build_ko.sh" "$kdir" "$out" "$src61"/*.c "$src61"/*.h "$src61"/Kbuild \
	"$src61/include/devemu/uapi/devemu.h"
