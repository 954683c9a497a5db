#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The kernel shim without root, in the guest: members of the devemu group serve user devices of their own
# (/dev/devemu-user/UID/NAME); an outsider cannot; one member cannot reach another's; i2cget reads one; the
# pytest fixture runs as a member.
#
#   tests/vm/run tests/vm/noroot_kshim.sh BUILD      (with devemu_kshim.ko loaded)
#
# As noroot_cuse.sh: bare uids (4242 a member, 4244 another member, 4245 an outsider) and a bare gid
# (4243) for the devemu group, which gets the control node as 70-devemu.rules gives it.
set -u
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
build=${1:-$repo/build}
devemud=$build/cuse_dev/devemud
devemuctl=$build/cuse_dev/devemuctl
control=/dev/devemu-kshim
group=4243
failed=0
pass() { echo "PASS: $*"; }
fail() {
	echo "FAIL: $*"
	failed=1
}

[[ -c $control ]] || {
	echo "FAIL: $control is missing (load devemu_kshim.ko first)"
	exit 1
}
command -v setpriv >/dev/null || {
	echo "SKIP: setpriv (util-linux) is not installed"
	exit 77
}
mode=$(stat -c %a "$control") owner=$(stat -c %u:%g "$control")
chgrp "$group" "$control" && chmod 0660 "$control"
trap 'chown "$owner" "$control"; chmod "$mode" "$control"' EXIT

# as UID [GROUPS] CMD...: runs CMD as UID (gid UID), in GROUPS, with its own runtime directory (setpriv execs
# CMD, so a background `as ... &` leaves $! the command's own pid).
as() {
	local uid=$1 groups=$2
	shift 2
	local rt=/tmp/noroot-kshim-$uid
	mkdir -m 0700 -p "$rt" && chown "$uid:$uid" "$rt"
	if [[ -n $groups ]]; then
		exec_as=(setpriv --reuid "$uid" --regid "$uid" --groups "$groups" --inh-caps=-all)
	else
		exec_as=(setpriv --reuid "$uid" --regid "$uid" --clear-groups --inh-caps=-all)
	fi
	"${exec_as[@]}" env XDG_RUNTIME_DIR="$rt" "$@"
}

# serve UID NAME SPEC LOG: a member's devemud on the kernel shim, in the background; waits until NAME serves.
serve() {
	mkdir -m 0700 -p "/tmp/noroot-kshim-$1" && chown "$1:$1" "/tmp/noroot-kshim-$1"
	setpriv --reuid "$1" --regid "$1" --groups "$group" --inh-caps=-all env XDG_RUNTIME_DIR="/tmp/noroot-kshim-$1" \
		"$devemud" -f --transport kshim --device "$2=$3" >"$4" 2>&1 &
	daemon_pid=$!
	for _ in $(seq 300); do
		as "$1" "$group" "$devemuctl" list 2>/dev/null | grep -q "$2.*serving" && return 0
		kill -0 "$daemon_pid" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

# 1. Outside the group: the control node refuses, and devemud says what gives it.
out=$(as 4245 "" "$devemud" -f --transport kshim --device nk0=loopback 2>&1)
if [[ $? -ne 0 && $out == *"Permission denied"*"devemu group"* ]]; then
	pass "an outsider is refused the kernel shim's control node with the reason"
else
	fail "an outsider and --transport kshim: $out"
fi

# 2. A member serves a user device: its node is in the member's directory, the member's, and works.
node=/dev/devemu-user/4242/nk0
if serve 4242 nk0 loopback /tmp/noroot-kshim-a.log; then
	a=$daemon_pid
	listed=$(as 4242 "$group" "$devemuctl" list 2>&1)
	got=$(as 4242 "$group" sh -c "echo hello > $node && head -c 6 $node" 2>&1)
	if [[ $listed == *"$node"*"serving"* && $got == hello && ! -e /dev/nk0 &&
		$(stat -c %u:%a "$node") == 4242:660 && $(cat /sys/class/devemu/u4242:nk0/owner) == 4242 ]]; then
		pass "a member serves $node over the kernel shim and uses it"
	else
		fail "a member's kshim node: list: $listed; read: $got; $(ls -l "$node" 2>&1); log: $(cat /tmp/noroot-kshim-a.log)"
	fi
else
	a=$daemon_pid
	fail "a member's devemud on the kernel shim did not serve nk0: $(cat /tmp/noroot-kshim-a.log)"
fi

# 3. Another member: the same name is its own device; the first member's node stays closed to it.
if serve 4244 nk0 loopback /tmp/noroot-kshim-b.log; then
	b=$daemon_pid
	if [[ -c /dev/devemu-user/4244/nk0 && -c $node ]] && ! as 4244 "$group" sh -c ": < $node" 2>/dev/null; then
		pass "another member's nk0 is its own; the first member's node is closed to it"
	else
		fail "two members' nk0: $(ls -lR /dev/devemu-user 2>&1)"
	fi
	kill -TERM "$b"
	wait "$b"
else
	b=$daemon_pid
	fail "another member's devemud did not serve nk0: $(cat /tmp/noroot-kshim-b.log)"
	kill -TERM "$b" 2>/dev/null
fi
[[ -c $node ]] && pass "stopping the other member's daemon left the first member's device alone" ||
	fail "the first member's node went with the other member's daemon"

# 4. A node open to others is refused, with what the module requires.
out=$(as 4242 "$group" "$devemud" -f --transport kshim --device nk1=loopback,mode=0666 2>&1)
if [[ $? -ne 0 && $out == *"Operation not permitted"*"give others no access"* ]]; then
	pass "a user device open to others is refused with the reason"
else
	fail "a member's mode=0666 device: $out"
fi

kill -TERM "$a"
wait "$a"
rc=$?
[[ $rc -eq 0 && ! -e $node && ! -e /sys/class/devemu/u4242:nk0 ]] &&
	pass "the member's daemon stops cleanly, its device goes" ||
	fail "the member's daemon exited $rc; $(ls -l "$node" 2>&1)"

# 5. A member's Python I2C chip read by i2cget. devemu-run would bind the node at /dev/i2c-7 in a user
# namespace, which a chrooted guest cannot create (unshare(CLONE_NEWUSER) is EPERM under chroot; the host
# suite runs devemu-run as a user): root binds it in a private mount namespace here instead.
if command -v i2cget >/dev/null; then
	if serve 4242 i2c-7 "i2c,slaves=python:$repo/examples/python/i2c_sensor.py:Hts221@0x5f" /tmp/noroot-kshim-i2c.log; then
		i=$daemon_pid
		out=$(unshare -m sh -c "touch /dev/i2c-7 && mount --bind /dev/devemu-user/4242/i2c-7 /dev/i2c-7 &&
			setpriv --reuid 4242 --regid 4242 --groups $group --inh-caps=-all i2cget -y 7 0x5f 0x0f" 2>&1)
		[[ $out == 0xbc ]] && pass "i2cget reads a member's Python chip through its kernel-shim device" ||
			fail "i2cget on a member's kshim i2c-7: $out; log: $(cat /tmp/noroot-kshim-i2c.log)"
		kill -TERM "$i"
		wait "$i"
	else
		fail "a member's i2c-7 with a Python chip did not serve: $(cat /tmp/noroot-kshim-i2c.log)"
		kill -TERM "$daemon_pid" 2>/dev/null
	fi
	rm -f /dev/i2c-7
fi
# 6. The pytest fixture as a member on the kernel shim: a Python device and a Python I2C chip, at the paths
# the daemon reports (/dev/devemu-user/4242/...).
out=$(as 4242 "$group" env PYTHONDONTWRITEBYTECODE=1 /usr/bin/python3 -m pytest -q -p no:cacheprovider \
	"$repo/tests/python/test_python_devices.py" -k "class_of_the_test_module or i2c_chip_of_the_test_module" \
	--devemu-transport kshim --devemu-devemud "$devemud" 2>&1)
[[ $out == *"2 passed"* && $out != *failed* ]] && pass "the pytest fixture serves a member's devices over the kernel shim" ||
	fail "the pytest fixture as a member on kshim: $out"
exit $failed
