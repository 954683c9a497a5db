#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# run_selftest.sh [KO [BUILD]]: the devemu_kshim.ko self-tests, as root on a throw-away kernel (tests/vm/run):
# insmod KO, the pytest suite tests/kshim (against kshim_echo and kshim_hostile, and a chaos run with devemud
# if it is built), kshim_caller and kshim_caller32 (64- and 32-bit clients) against kshim_echo and, with
# --file-fifo, against kshim_hostile ffifo (per-file FIFOs), rmmod refused
# while a daemon is attached or a client file is open and clean once they are gone, no window left in /proc/vmallocinfo, no warning in the kernel log. Exit 0: all passed.
#   KO      default: build/kshim/devemu_kshim.ko
#   BUILD   the meson build directory (kshim_echo, kshim_hostile, kshim_caller[32] in BUILD/tests/kshim, else
#           compiled here with cc; devemud in BUILD/cuse_dev); default: build
#   $DEVEMUD  devemud for test_chaos_devemud (skipped without it); default: BUILD/cuse_dev/devemud
# Example: tests/vm/run tests/kshim/run_selftest.sh
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
ko=${1:-$repo/build/kshim/devemu_kshim.ko}
build=${2:-$repo/build}
bin=$build/tests/kshim
failures=0

fail() {
	echo "FAIL $*"
	failures=$((failures + 1))
}

if [[ $EUID -ne 0 ]]; then
	echo "SKIP: needs root (run it in tests/vm/run)"
	exit 77
fi
[[ -r $ko ]] || { echo "FAIL no module at $ko"; exit 1; }
if [[ ! -x $bin/kshim_echo || ! -x $bin/kshim_hostile || ! -x $bin/kshim_fuzz_daemon || ! -x $bin/kshim_caller ]]; then
	bin=$(mktemp -d)
	for p in kshim_echo kshim_hostile kshim_fuzz_daemon kshim_caller; do
		cc -O2 -Wall -I"$repo/core/include" -o "$bin/$p" "$here/$p.c" || { echo "FAIL cannot build $p"; exit 1; }
	done
	cc -m32 -O2 -Wall -I"$repo/core/include" -o "$bin/kshim_caller32" "$here/kshim_caller.c" 2>/dev/null ||
		rm -f "$bin/kshim_caller32"
fi
if lsmod | grep -q '^devemu_kshim '; then
	echo "FAIL devemu_kshim is already loaded"
	exit 1
fi

log_start=$(dmesg | wc -l)
echo "== insmod $ko (kernel $(uname -r))"
insmod "$ko" || { echo "FAIL insmod"; exit 1; }

devemud=${DEVEMUD:-$build/cuse_dev/devemud}
/usr/bin/python3 -m pytest -q -rs -p no:cacheprovider "$here" --build-dir "$build" --kshim-bin "$bin" \
	--devemud "$devemud" --check-dmesg || fail "pytest $here"

echo "== 64-bit and 32-bit callers (kshim_caller, kshim_caller32) against kshim_echo"
"$bin/kshim_echo" -r kst-caller >/dev/null 2>&1 &
echo_pid=$!
for _ in $(seq 100); do [[ -e /dev/kst-caller ]] && break; sleep 0.05; done
for p in kshim_caller kshim_caller32; do
	if [[ -x $bin/$p ]]; then
		"$bin/$p" kst-caller || fail "$p"
	elif [[ $p == kshim_caller32 ]]; then
		echo "SKIP kshim_caller32: not built (the compiler cannot link -m32 programs: install gcc-multilib)"
	else
		fail "no $bin/$p"
	fi
done
kill "$echo_pid"
wait "$echo_pid" 2>/dev/null
[[ -e /dev/kst-caller ]] && fail "/dev/kst-caller left after kshim_echo -r ended"

echo "== 64-bit and 32-bit callers on per-file FIFOs (kshim_caller --file-fifo) against kshim_hostile ffifo"
"$bin/kshim_hostile" ffifo kst-callerff >/dev/null 2>&1 &
hostile_pid=$!
for _ in $(seq 100); do [[ -e /dev/kst-callerff ]] && break; sleep 0.05; done
for p in kshim_caller kshim_caller32; do
	[[ -x $bin/$p ]] && { "$bin/$p" --file-fifo kst-callerff || fail "$p --file-fifo"; }
done
kill "$hostile_pid"
wait "$hostile_pid" 2>/dev/null
# kst-callerff stays, daemon-less: rmmod below removes it.

echo "== rmmod with a daemon attached, then with a client file open on a device whose daemon is gone"
"$bin/kshim_echo" kst-rmmod >/dev/null 2>&1 &
echo_pid=$!
for _ in $(seq 100); do [[ -e /dev/kst-rmmod ]] && break; sleep 0.05; done
sleep 0.2
if rmmod devemu_kshim 2>/dev/null; then
	fail "rmmod succeeded with a daemon attached"
	exit 1
fi
echo "rmmod refused while a daemon is attached: ok"
grep -q 'kshim_channel_create' /proc/vmallocinfo || fail "the window of a live channel is not in /proc/vmallocinfo (leak check blind)"
exec 9<>/dev/kst-rmmod || fail "open /dev/kst-rmmod"
kill -9 "$echo_pid"
wait "$echo_pid" 2>/dev/null
if rmmod devemu_kshim 2>/dev/null; then
	fail "rmmod succeeded with a client file open"
	exit 1
fi
echo "rmmod refused while /dev/kst-rmmod is open: ok"
exec 9>&-
if grep -q 'kshim_channel_create' /proc/vmallocinfo; then
	fail "windows still allocated after every channel closed:"
	grep kshim_channel_create /proc/vmallocinfo
fi
rmmod devemu_kshim || fail "rmmod after the last file closed"
[[ -e /dev/kst-rmmod ]] && fail "/dev/kst-rmmod left after rmmod"
[[ -e /dev/devemu-kshim ]] && fail "/dev/devemu-kshim left after rmmod"
[[ -d /sys/class/devemu ]] && fail "/sys/class/devemu left after rmmod"
echo "rmmod with a daemon-less device left: ok"

echo "== kernel log"
problems=$(dmesg | tail -n +"$((log_start + 1))" |
	grep -E 'WARNING:|BUG:|BUG [^ ]+ \(|Oops|general protection|Call Trace:|list_(add|del) corruption|Poison overwritten|Redzone|blocked for more than|usercopy' || true)
if [[ -n $problems ]]; then
	fail "kernel log:"
	echo "$problems"
fi
dmesg | tail -n +"$((log_start + 1))" | grep -E 'devemu' | sed 's/^/  /' | head -40

if ((failures)); then
	echo "run_selftest: $failures failure(s)"
	exit 1
fi
echo "run_selftest: all passed"
