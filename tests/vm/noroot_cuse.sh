#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# CUSE without root, in the guest: a member of the devemu group serves CUSE nodes; an outsider cannot; neither reaches root's socket.
#
#   tests/vm/run tests/vm/noroot_cuse.sh BUILD
#
# The guest's /etc is the host's, read-only: no useradd here. The user is a bare uid (4242),
# somebody else another (4244), the devemu group a bare gid (4243), with /dev/cuse given to that gid as 70-devemu.rules gives
# it to "devemu". The guest runs no udevd: the optional rule that gives CUSE nodes to the group
# is played by a loop that chgrps the node once it appears (later than the kernel made it, as
# udev would, so devemud's wait for udev is exercised too).
set -u
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../../build}
devemud=$build/cuse_dev/devemud
devemuctl=$build/cuse_dev/devemuctl
uid=4242
group=4243
other=4244 # somebody else
runtime=/tmp/noroot-run
failed=0
pass() { echo "PASS: $*"; }
fail() {
	echo "FAIL: $*"
	failed=1
}

[[ -c /dev/cuse ]] || {
	echo "FAIL: no /dev/cuse in the guest"
	exit 1
}
command -v setpriv >/dev/null || {
	echo "SKIP: setpriv (util-linux) is not installed"
	exit 77
}
chgrp "$group" /dev/cuse && chmod 0660 /dev/cuse
mkdir -m 0700 -p "$runtime" && chown "$uid:$uid" "$runtime"

member=(setpriv --reuid "$uid" --regid "$uid" --groups "$group" --inh-caps=-all env XDG_RUNTIME_DIR="$runtime")
member() { "${member[@]}" "$@"; }
# The same user outside the group, and somebody else.
outsider() { setpriv --reuid "$uid" --regid "$uid" --clear-groups --inh-caps=-all env XDG_RUNTIME_DIR="$runtime" "$@"; }
other() { setpriv --reuid "$other" --regid "$other" --clear-groups --inh-caps=-all "$@"; }

# 1. Not in the group: /dev/cuse refuses, and devemud says what to do.
out=$(outsider "$devemud" -f --transport cuse --device nr0=loopback 2>&1)
if [[ $? -ne 0 && $out == *"not open to this user"*"devemu group"* ]]; then
	pass "an outsider is refused /dev/cuse with the reason"
else
	fail "an outsider and --transport cuse: $out"
fi

# 2. A member, but nothing gives it the node: devemud waits for udev, then says so; no node is left.
out=$(member timeout 30 "$devemud" -f --transport cuse --device nr1=loopback 2>&1)
if [[ $? -ne 0 && $out == *"a udev rule must give it to you"* && ! -e /dev/nr1 ]]; then
	pass "a member whose node nobody gives it is told about the udev rule"
else
	fail "a member without the node rule: $out"
fi

# 3. A member with the node rule (played by a loop): serves /dev/nr2 and uses it.
(for _ in $(seq 300); do
	if [[ -e /dev/nr2 ]]; then
		sleep 0.2
		chgrp "$group" /dev/nr2 && chmod 0660 /dev/nr2
		exit 0
	fi
	sleep 0.05
done) &
udev=$!
"${member[@]}" "$devemud" -f --transport cuse --device nr2=loopback >/tmp/noroot-nr2.log 2>&1 &
daemon=$!
for _ in $(seq 200); do
	member "$devemuctl" list 2>/dev/null | grep -q "nr2.*serving" && break
	sleep 0.1
done
wait "$udev"
listed=$(member "$devemuctl" list 2>&1)
got=$(member sh -c 'echo hello > /dev/nr2 && head -c 6 /dev/nr2' 2>&1)
if [[ $listed == *"/dev/nr2"*"serving"* && $got == "hello" ]]; then
	pass "a member serves /dev/nr2 over CUSE and uses it"
else
	fail "a member's CUSE node: list: $listed; read: $got; log: $(cat /tmp/noroot-nr2.log)"
fi
if [[ $(stat -c %U /dev/nr2) == root ]] && ! other sh -c ': < /dev/nr2' 2>/dev/null; then
	pass "somebody else outside the group cannot open the member's node"
else
	fail "somebody else opened /dev/nr2"
fi
out=$(other "$devemuctl" --socket "$runtime/devemu/control" list 2>&1)
[[ $out == *"Permission denied"* ]] && pass "somebody else cannot reach the member's socket" ||
	fail "somebody else on the member's socket: $out"

# 4. Root's daemon: its socket stays root's.
"$devemud" -f --transport cuse --device sys0=loopback --control /run/devemu/control 2>/tmp/noroot-sys.log &
system=$!
for _ in $(seq 200); do
	"$devemuctl" --socket /run/devemu/control list 2>/dev/null | grep -q "sys0.*serving" && break
	sleep 0.1
done
out=$(member "$devemuctl" --socket /run/devemu/control list 2>&1)
[[ $out == *"Permission denied"* ]] && pass "a member cannot reach the system control socket" ||
	fail "member on the system socket: $out"
kill -TERM "$system"
wait "$system"

kill -TERM "$daemon"
wait "$daemon"
rc=$?
[[ $rc -eq 0 && ! -e /dev/nr2 ]] && pass "the member's daemon stops cleanly, its node goes" ||
	fail "the member's daemon exited $rc, /dev/nr2 $(ls -l /dev/nr2 2>&1)"
exit $failed
