#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# kernel-trixie.sh [ensure|path|kver|vmlinuz|kdir|make ARGS...]: Debian 13 (trixie)'s kernel for the
# module build and the VM tests, in a debootstrap'd trixie chroot cached outside the tree.
#
#   ensure (default)  create the chroot if it is not there yet (minbase + linux-image-amd64 +
#                     linux-headers-amd64 + gcc + make + perl (kernel-doc, for W=1) of trixie), then print its root
#   path | kver | vmlinuz | kdir
#                     print the chroot's root, its kernel version, /boot/vmlinuz-KVER (host path),
#                     the kernel build directory (chroot path); exit 1 with the reason if absent
#   make ARGS...      run make ARGS in the chroot (trixie's compiler); ARGS use chroot paths
#
# The root is $DEVEMU_TRIXIE_ROOT (default /var/cache/devemu/trixie).  It is complete once
# ROOT/.devemu-complete exists (written last); an interrupted creation is started over.  The
# kernel's modules (cuse, 9p, virtio) are in ROOT/lib/modules/KVER, which tests/vm/run reads for
# "--kernel trixie".  Creating it needs root and Debian's mirror ($DEVEMU_TRIXIE_MIRROR, default
# http://deb.debian.org/debian); it takes a few minutes and ~600 MB.
set -euo pipefail

root=${DEVEMU_TRIXIE_ROOT:-/var/cache/devemu/trixie}
mirror=${DEVEMU_TRIXIE_MIRROR:-http://deb.debian.org/debian}
marker=$root/.devemu-complete
log=$root.log # what debootstrap and apt-get said while creating it

die() {
	echo "kernel-trixie: $*" >&2
	exit 1
}

need() {
	[[ -f $marker ]] || die "no trixie chroot at $root (create it as root: scripts/kernel-trixie.sh ensure)"
}

# kver: the newest kernel version with both an image and a build directory in the chroot.
kver() {
	local k v best=
	for k in "$root"/boot/vmlinuz-*; do
		v=${k##*/vmlinuz-}
		[[ -f $k && -f $root/lib/modules/$v/modules.dep && -f $root/usr/src/linux-headers-$v/Makefile ]] || continue
		best=$(printf '%s\n' "$best" "$v" | sed '/^$/d' | sort -V | tail -n 1)
	done
	[[ -n $best ]] || die "$root has no kernel with modules and headers (remove it and run scripts/kernel-trixie.sh ensure)"
	echo "$best"
}

create() {
	local t0 tmp
	[[ $(id -u) -eq 0 ]] || die "creating $root needs root"
	t0=$(date +%s)
	if ! command -v debootstrap >/dev/null; then
		echo "kernel-trixie: installing debootstrap" >&2
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap >/dev/null ||
			{ apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap >/dev/null; }
	fi
	mkdir -p "$(dirname "$root")"
	tmp=$root.new
	rm -rf -- "$tmp"
	echo "kernel-trixie: debootstrap trixie into $tmp (minbase)" >&2
	debootstrap --variant=minbase --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
		trixie "$tmp" "$mirror" >"$log" 2>&1 ||
		die "debootstrap failed, see $log"
	echo "kernel-trixie: installing linux-image-amd64 linux-headers-amd64 gcc make perl" >&2
	# INITRD=No: the kernel's postinst hook skips update-initramfs (the VM builds its own).
	# Nothing is started in the chroot (policy-rc.d), and /proc is not needed by these packages.
	printf '#!/bin/sh\nexit 101\n' >"$tmp/usr/sbin/policy-rc.d"
	chmod 755 "$tmp/usr/sbin/policy-rc.d"
	chroot "$tmp" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive INITRD=No \
		apt-get install -y -q --no-install-recommends linux-image-amd64 linux-headers-amd64 gcc make perl \
		>>"$log" 2>&1 ||
		die "apt-get install in the chroot failed, see $log"
	chroot "$tmp" apt-get clean
	rm -f -- "$tmp"/boot/initrd.img-*
	rm -rf -- "$root"
	mv -- "$tmp" "$root"
	date -u +%FT%TZ >"$marker"
	echo "kernel-trixie: $root ready (kernel $(kver)) in $(($(date +%s) - t0)) s" >&2
}

cmd=${1:-ensure}
case $cmd in
ensure)
	[[ -f $marker ]] || create
	kver >/dev/null
	echo "$root"
	;;
path) need && echo "$root" ;;
kver) need && kver ;;
vmlinuz) need && echo "$root/boot/vmlinuz-$(kver)" ;;
kdir) need && echo "/usr/src/linux-headers-$(kver)" ;;
make)
	need
	shift
	[[ $(id -u) -eq 0 ]] || die "building in the chroot needs root (chroot)"
	exec chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C make "$@"
	;;
*) die "unknown command '$cmd' (ensure, path, kver, vmlinuz, kdir, make)" ;;
esac
