#!/bin/sh
# SPDX-License-Identifier: MIT
# any_program.sh: ordinary programs (busybox cat/dd/hexdump, python3, the static C client) write to and read from a devemu loopback node.
#
# Usage: any_program.sh NODE [DEVEMU_CLIENT]
#   NODE           a devemu loopback node with capacity >= 4096 (leftovers are drained first)
#   DEVEMU_CLIENT  the static devemu_client binary (default: $DEVEMU_CLIENT, else
#                  build/tests/conformance/devemu_client of this repository)
# Exit 0 when every program round-trips its bytes exactly; non-zero with a FAIL line otherwise.

set -u

NODE=${1:?usage: any_program.sh NODE [DEVEMU_CLIENT]}
HERE=$(cd "$(dirname "$0")" && pwd)
CLIENT=${2:-${DEVEMU_CLIENT:-$HERE/../../build/tests/conformance/devemu_client}}
BB=/bin/busybox
PY=/usr/bin/python3
T=10 # seconds any single program may take

TMP=$(mktemp -d "${TMPDIR:-/tmp}/devemu-any.XXXXXX") || exit 2
trap 'rm -rf "$TMP"' EXIT INT TERM

fail() {
	echo "FAIL: $*" >&2
	exit 1
}
ok() { echo "ok: $*"; }

# timeout(1) from coreutils, else busybox's applet
if command -v timeout >/dev/null 2>&1; then
	TO="timeout"
else
	TO="$BB timeout"
fi

[ -e "$NODE" ] || fail "node $NODE does not exist"
[ -x "$BB" ] || fail "$BB not found (install busybox-static)"
[ -x "$PY" ] || fail "$PY not found"
[ -x "$CLIENT" ] || fail "devemu_client not found at $CLIENT (pass it as the second argument)"

drain() {
	$TO $T "$PY" - "$NODE" <<'EOF' || fail "draining $NODE with O_NONBLOCK reads failed"
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_NONBLOCK)
try:
    while os.read(fd, 65536):
        pass
except BlockingIOError:
    pass
EOF
}

# same FILE1 FILE2 WHAT: byte-exact comparison
same() {
	$BB cmp "$1" "$2" >/dev/null 2>&1 || fail "$3: bytes read back differ from bytes written ($($BB cmp "$1" "$2" 2>&1))"
}

drain

# 1. busybox cat writes (the shell opens NODE with O_CREAT|O_TRUNC), busybox dd reads
printf 'hello, devemu\n' >"$TMP/hello"
$TO $T $BB cat "$TMP/hello" >"$NODE" || fail "busybox cat >NODE failed"
$TO $T $BB dd if="$NODE" of="$TMP/hello.out" bs=14 count=1 2>/dev/null || fail "busybox dd if=NODE failed or blocked"
same "$TMP/hello" "$TMP/hello.out" "busybox cat -> busybox dd"
ok "busybox cat writes, busybox dd reads"

# 2. busybox dd writes 256 KiB (more than the FIFO) while busybox dd reads it back concurrently
$BB dd if=/dev/urandom of="$TMP/big" bs=1024 count=256 2>/dev/null || fail "making test data"
$TO 60 $BB dd if="$TMP/big" of="$NODE" bs=65536 2>/dev/null &
writer=$!
$TO 60 $BB dd if="$NODE" of="$TMP/big.out" bs=65536 count=4 iflag=fullblock 2>/dev/null
rrc=$?
wait $writer
wrc=$?
[ $wrc -eq 0 ] || fail "busybox dd of=NODE (256 KiB) exited $wrc"
[ $rrc -eq 0 ] || fail "busybox dd if=NODE (256 KiB) exited $rrc"
same "$TMP/big" "$TMP/big.out" "busybox dd 256 KiB"
ok "busybox dd writes and reads 256 KiB concurrently"

# 3. busybox hexdump reads what printf wrote
printf 'ABCDEFGHIJKLMNOP' >"$NODE" || fail "printf >NODE failed"
$TO $T $BB dd if="$NODE" bs=16 count=1 2>/dev/null | $BB hexdump -C >"$TMP/hex" ||
	fail "busybox dd | busybox hexdump failed or blocked"
expect='00000000  41 42 43 44 45 46 47 48  49 4a 4b 4c 4d 4e 4f 50  |ABCDEFGHIJKLMNOP|'
[ "$($BB head -n 1 "$TMP/hex")" = "$expect" ] || fail "busybox hexdump shows: $(cat "$TMP/hex")"
printf '0123456789abcdef' >"$NODE" || fail "printf >NODE failed"
$TO $T $BB hexdump -n 16 -C "$NODE" >"$TMP/hex2" || fail "busybox hexdump -n 16 NODE failed or blocked"
expect='00000000  30 31 32 33 34 35 36 37  38 39 61 62 63 64 65 66  |0123456789abcdef|'
[ "$($BB head -n 1 "$TMP/hex2")" = "$expect" ] || fail "busybox hexdump -n 16 NODE shows: $(cat "$TMP/hex2")"
ok "busybox hexdump"

# 4. python3: open(), os.read, select.poll
$TO $T "$PY" - "$NODE" <<'EOF' || fail "python3 open/os.read/select.poll (see above)"
import os, select, sys
node = sys.argv[1]
data = os.urandom(3000)
with open(node, "r+b", buffering=0) as f:
    fd = f.fileno()
    p = select.poll()
    p.register(fd, select.POLLIN | select.POLLOUT)
    ev = dict(p.poll(0))
    if ev.get(fd, 0) & select.POLLIN:
        sys.exit("python3: POLLIN on an empty node")
    if not ev.get(fd, 0) & select.POLLOUT:
        sys.exit("python3: no POLLOUT on an empty node")
    if f.write(data) != len(data):
        sys.exit("python3: short write")
    ev = dict(p.poll(2000))
    if not ev.get(fd, 0) & select.POLLIN:
        sys.exit("python3: no POLLIN after a write")
    back = b""
    while len(back) < len(data):
        back += os.read(fd, len(data) - len(back))
    if back != data:
        sys.exit("python3: bytes read back differ")
print("python3 ok")
EOF
ok "python3 open/os.read/select.poll"

# 5. the static C client: write/read and a 1 MiB echo
$BB dd if=/dev/urandom of="$TMP/c" bs=1000 count=3 2>/dev/null || fail "making test data"
$TO $T "$CLIENT" write "$NODE" <"$TMP/c" || fail "devemu_client write failed"
$TO $T "$CLIENT" read "$NODE" 3000 >"$TMP/c.out" || fail "devemu_client read failed or blocked"
same "$TMP/c" "$TMP/c.out" "devemu_client write -> read"
out=$($TO 60 "$CLIENT" echo "$NODE" 1048576 3) || fail "devemu_client echo 1 MiB: $out"
[ "$out" = "ok 1048576" ] || fail "devemu_client echo 1 MiB: $out"
ok "static devemu_client write/read/echo"

# 6. mixed: the C client writes, busybox dd reads; python writes, the C client reads
$TO $T "$CLIENT" write "$NODE" <"$TMP/hello" || fail "devemu_client write failed"
$TO $T $BB dd if="$NODE" of="$TMP/mix1" bs=14 count=1 2>/dev/null || fail "busybox dd read failed"
same "$TMP/hello" "$TMP/mix1" "devemu_client -> busybox dd"
$TO $T "$PY" -c 'import sys; open(sys.argv[1], "wb", buffering=0).write(open(sys.argv[2], "rb").read())' \
	"$NODE" "$TMP/c" || fail "python3 write failed"
$TO $T "$CLIENT" read "$NODE" 3000 >"$TMP/mix2" || fail "devemu_client read failed"
same "$TMP/c" "$TMP/mix2" "python3 -> devemu_client"
ok "mixed writers and readers"

echo "any_program: all checks passed on $NODE"
