#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs the Debian packages devemu needs for a purpose (build, test, vm, asan, fuzz, kernel-source, debug-kernel,
# plot), only those that are missing.
# vm also provides Debian 13's kernel (6.12) for the vm-trixie tests: scripts/kernel-trixie.sh creates its
# chroot once (a few minutes) under /var/cache/devemu/trixie and reuses it afterwards.  debug-kernel builds the
# debug kernel for the vm-debug tests once per machine (scripts/kernel-debug.sh, /var/cache/devemu/debug-kernel).
set -euo pipefail

build_pkgs=(meson ninja-build pkg-config g++ libfuse3-dev fuse3 libboost-dev libboost-program-options-dev
	libfmt-dev doctest-dev libsystemd-dev libtomlplusplus-dev nlohmann-json3-dev libcap-dev systemd kmod
	python3-dev pybind11-dev)
test_pkgs=(python3 python3-pytest busybox-static util-linux rng-tools5 python3-serial i2c-tools evtest umockdev gpsd
	gpsd-clients)
vm_pkgs=(qemu-system-x86 linux-image-amd64 linux-headers-amd64 cpio kmod busybox-static gcc-multilib debootstrap)
# Building the debug kernel (purpose kernel-source, which scripts/kernel-debug.sh asks for): Debian 12's kernel
# source and what building it takes.
kernel_source_pkgs=(linux-source-6.1 bc bison flex libelf-dev libssl-dev cpio xz-utils make gcc)
# The sanitized build and the libFuzzer targets: clang and its runtimes (libFuzzer, ASan, UBSan).
fuzz_pkgs=(clang-14 libclang-rt-14-dev)
# tests/bench/plot_latency.py draws README's latency plot (docs/latency.svg) from a benchmark run.
plot_pkgs=(python3-matplotlib)

want=()
for purpose in "$@"; do
	case "$purpose" in
	build) want+=("${build_pkgs[@]}") ;;
	test) want+=("${build_pkgs[@]}" "${test_pkgs[@]}") ;;
	vm) want+=("${vm_pkgs[@]}") ;;
	asan) want+=("${build_pkgs[@]}" "${test_pkgs[@]}" "${fuzz_pkgs[@]}") ;;
	fuzz) want+=("${build_pkgs[@]}" "${fuzz_pkgs[@]}") ;;
	kernel-source) want+=("${kernel_source_pkgs[@]}") ;;
	debug-kernel) want+=("${vm_pkgs[@]}" "${kernel_source_pkgs[@]}") ;;
	plot) want+=("${plot_pkgs[@]}") ;;
	*) echo "deps.sh: unknown purpose '$purpose' (build, test, vm, asan, fuzz, kernel-source, debug-kernel, plot)" >&2; exit 2 ;;
	esac
done

trixie=0 debug_kernel=0
for purpose in "$@"; do
	[ "$purpose" = vm ] && trixie=1
	[ "$purpose" = debug-kernel ] && debug_kernel=1
done

missing=()
for p in "${want[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# A kernel that cannot be made does not stop the other suites: the vm-trixie or vm-debug tests then fail and
# say why.
kernels() {
	if [ $trixie -eq 1 ]; then
		"$(dirname "$0")/kernel-trixie.sh" ensure >/dev/null ||
			echo "deps.sh: warning: no Debian 13 kernel (scripts/kernel-trixie.sh failed): the vm-trixie tests will fail" >&2
	fi
	if [ $debug_kernel -eq 1 ]; then
		"$(dirname "$0")/kernel-debug.sh" ensure >/dev/null ||
			echo "deps.sh: warning: no debug kernel (scripts/kernel-debug.sh failed): the vm-debug tests will fail" >&2
	fi
	return 0
}

if [ ${#missing[@]} -eq 0 ]; then
	kernels
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	echo "deps.sh: missing packages: ${missing[*]}; run as root (or: sudo apt-get install ${missing[*]})" >&2
	exit 1
fi
echo "deps.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
kernels
