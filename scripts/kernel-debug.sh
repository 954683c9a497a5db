#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# kernel-debug.sh [ensure|path|kver|vmlinuz|kdir|status]: a debug build of Debian 12's own kernel source
# (linux-source-6.1) with KASAN, UBSAN, lockdep (PROVE_LOCKING), DEBUG_ATOMIC_SLEEP and kmemleak, for running the
# kernel shim under the kernel's checkers in the VM; built once per machine and cached outside the tree.
#
#   ensure (default)  build it if the cache holds no build of the current source and configuration, then print
#                     the root; prints how long the build took
#   path | kver | vmlinuz | kdir
#                     print the root, the kernel version, ROOT/boot/vmlinuz-KVER, the build directory (the kernel
#                     tree modules are built against); exit 1 with the reason if there is no current build
#   status            say whether a current build is cached (exit 0) or not (exit 1), and why
#
# The configuration is "make allnoconfig" plus tests/vm/debug-kernel.config (everything the VM needs built in,
# modules enabled for devemu_kshim.ko), checked option by option after olddefconfig.  The root is
# $DEVEMU_DEBUG_KERNEL_ROOT (default /var/cache/devemu/debug-kernel):
#   ROOT/src/linux-source-6.1/      the source tree, built in place (ROOT/lib/modules/KVER/build points to it)
#   ROOT/boot/vmlinuz-KVER          the image tests/vm/run boots ("--kernel debug")
#   ROOT/lib/modules/KVER/          modules.dep (empty) and modules.builtin, which tests/vm/run reads
#   ROOT/.devemu-complete           written last: the key (source package version + configuration hash) and the
#                                   build time; a build whose key differs from the current one is redone
# Building needs root (the packages), ~3 GB and, on two cores, about a quarter of an hour (the figure of the last
# build is in the marker and in docs/reliability.md).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
fragment=$here/../tests/vm/debug-kernel.config
root=${DEVEMU_DEBUG_KERNEL_ROOT:-/var/cache/devemu/debug-kernel}
tarball=/usr/src/linux-source-6.1.tar.xz
marker=$root/.devemu-complete
log=$root.log # what make said during the last build

die() {
	echo "kernel-debug: $*" >&2
	exit 1
}

# key: what a build depends on: the source package's version and the configuration fragment.
key() {
	local v
	v=$(dpkg-query -W -f='${Version}' linux-source-6.1 2>/dev/null) || v=none
	echo "linux-source-6.1 $v config $(sha256sum <"$fragment" | cut -c1-16)"
}

current() {
	[[ -f $marker ]] && [[ $(head -n 1 "$marker") == "$(key)" ]]
}

need() {
	current || die "no current debug kernel at $root ($(why); build it as root: scripts/kernel-debug.sh ensure)"
}

why() {
	if [[ ! -f $marker ]]; then
		echo "not built"
	else
		echo "built for '$(head -n 1 "$marker")', now '$(key)'"
	fi
}

kver() {
	local k
	for k in "$root"/boot/vmlinuz-*; do
		[[ -f $k ]] && { echo "${k##*/vmlinuz-}"; return 0; }
	done
	die "$root has no boot/vmlinuz-* (remove $root and run scripts/kernel-debug.sh ensure)"
}

# check_config: every option the fragment sets must have that value in the final .config.
check_config() {
	local cfg=$1 line name want got bad=()
	while IFS= read -r line; do
		case $line in
		CONFIG_*=*)
			name=${line%%=*}
			want=${line#*=}
			got=$(grep -m1 "^$name=" "$cfg" | cut -d= -f2-) || got=
			[[ $got == "$want" ]] || bad+=("$name=$want (got ${got:-unset})")
			;;
		'# CONFIG_'*' is not set')
			name=${line#\# }
			name=${name%% *}
			! grep -q "^$name=" "$cfg" || bad+=("$name unset (got $(grep -m1 "^$name=" "$cfg" | cut -d= -f2-))")
			;;
		esac
	done <"$fragment"
	((${#bad[@]} == 0)) || die "configuration: $(printf '%s; ' "${bad[@]}")see $cfg"
}

build() {
	local t0 src jobs kv
	[[ $(id -u) -eq 0 ]] || die "building $root needs root"
	t0=$(date +%s)
	"$here/deps.sh" kernel-source || die "cannot install the packages the kernel build needs (scripts/deps.sh kernel-source)"
	[[ -r $tarball ]] || die "$tarball missing (apt-get install linux-source-6.1)"
	rm -rf -- "$root"
	mkdir -p "$root/src"
	echo "kernel-debug: unpacking $tarball into $root/src" >&2
	tar -C "$root/src" -xJf "$tarball"
	src=$root/src/linux-source-6.1
	[[ -f $src/Makefile ]] || die "$tarball did not unpack to $src"
	jobs=$(($(nproc) + 1)) # (one more than the cores: a job is always ready while another waits on the disk)
	echo "kernel-debug: configuring (allnoconfig + ${fragment##*/tests/})" >&2
	{
		make -C "$src" allnoconfig
		"$src/scripts/kconfig/merge_config.sh" -m -O "$src" "$src/.config" "$fragment"
		make -C "$src" olddefconfig
	} >"$log" 2>&1 || die "configuration failed, see $log"
	check_config "$src/.config"
	echo "kernel-debug: building with $jobs jobs (log: $log)" >&2
	make -C "$src" -j"$jobs" bzImage modules >>"$log" 2>&1 || die "the build failed, see $log"
	kv=$(make -s -C "$src" kernelrelease)
	mkdir -p "$root/boot" "$root/lib/modules"
	make -C "$src" INSTALL_MOD_PATH="$root" modules_install >>"$log" 2>&1 || die "modules_install failed, see $log"
	cp -- "$src/arch/x86/boot/bzImage" "$root/boot/vmlinuz-$kv"
	cp -- "$src/.config" "$root/boot/config-$kv"
	ln -sfn "$src" "$root/lib/modules/$kv/build"
	{
		key
		echo "built $(date -u +%FT%TZ) in $(($(date +%s) - t0)) s with $jobs jobs on $(nproc) CPUs"
	} >"$marker"
	echo "kernel-debug: $root ready (kernel $kv) in $(($(date +%s) - t0)) s" >&2
}

cmd=${1:-ensure}
case $cmd in
ensure)
	current || build
	echo "$root"
	;;
path) need && echo "$root" ;;
kver) need && kver ;;
vmlinuz) need && echo "$root/boot/vmlinuz-$(kver)" ;;
kdir) need && echo "$root/lib/modules/$(kver)/build" ;;
status)
	if current; then
		echo "debug kernel $(kver) at $root: $(sed -n 2p "$marker")"
	else
		echo "no current debug kernel at $root: $(why)"
		exit 1
	fi
	;;
*) die "unknown command '$cmd' (ensure, path, kver, vmlinuz, kdir, status)" ;;
esac
