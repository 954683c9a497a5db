# SPDX-License-Identifier: MIT
# Record and replay with real programs: a passthrough device over a pty records a dialogue, a replay device serves it.

import errno
import os
import re
import sys
import threading
import time
import tty

import pytest

from devemu_testlib import run, unique

# A client as a test writer would have one: a modem dialogue and a size-encoded termios ioctl (TCGETS2, which
# the FUSE fallback forwards; TCGETS has no size and needs CUSE). It prints what it saw.
CLIENT = r"""
import fcntl, os, sys
TCGETS2 = 0x802C542A
fd = os.open(sys.argv[1], os.O_RDWR)
os.write(fd, b"AT\r")
reply = b""
while not reply.endswith(b"OK\r\n"):
    chunk = os.read(fd, 64)
    if not chunk:
        break
    reply += chunk
t = fcntl.ioctl(fd, TCGETS2, bytes(44))
os.write(fd, b"ATI\r")
info = b""
while not info.endswith(b"\r\n"):
    info += os.read(fd, 64)
os.close(fd)
print(repr(reply), t.hex(), repr(info))
"""


def client(node):
    r = run([sys.executable, "-c", CLIENT, node], timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout


class Modem:
    """The far side of a pty, raw, answering AT with OK and ATI with a name, a little later."""

    def __init__(self):
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        heard = b""
        while True:
            try:
                heard += os.read(self.master, 64)
            except OSError:
                return
            while b"\r" in heard:
                line, heard = heard.split(b"\r", 1)
                os.write(self.master, {b"AT": b"OK\r\n", b"ATI": b"devemu modem 1\r\n"}.get(line, b"ERROR\r\n"))

    def close(self):
        os.close(self.slave)
        os.close(self.master)
        self.thread.join(5)


def test_a_recorded_pty_dialogue_replays_the_same_to_the_same_program(devemud, tmp_path):
    modem = Modem()
    trace = tmp_path / "modem.trace"
    try:
        name = unique("pt")
        d = devemud((name, f"passthrough,path={modem.path},record={trace}"))
        live = client(d.node(name))
        assert "b'OK\\r\\n'" in live and "b'devemu modem 1\\r\\n'" in live, live
        assert d.stop() == 0
    finally:
        modem.close()
    text = trace.read_text()
    assert text.startswith("devemu-trace 1\n"), text
    assert 'write 0 ' in text and 'data="AT\\r" result=3' in text, text
    assert "request=0x802c542a out=" in text, text

    name = unique("rp")
    r = devemud((name, f"replay,trace={trace}"))
    assert client(r.node(name)) == live
    status = r.inject(name, "status")
    assert "next=finished mismatches=0 unknown_ioctls=0" in status, status
    assert "warning: " + name not in r.log(), r.log()


def test_a_device_misbehaving_under_a_fault_is_recorded_and_replays_the_same(devemud, tmp_path):
    """devemuctl fault on a recording passthrough (passthrough.md): a --short read is what the real node did, so
    the trace holds it and the replay serves the same short read; an --errno fault answers before the model, never
    reaches the real node and is not in the trace."""
    trace = tmp_path / "faulty.trace"
    name = unique("pt")
    d = devemud((name, f"passthrough,path=/dev/urandom,record={trace}"))
    fd = os.open(d.node(name), os.O_RDONLY)
    try:
        d.ctl_ok("fault", name, "--op", "read", "--short", "5", "--count", "1")
        first = os.read(fd, 16)
        d.ctl_ok("fault", name, "--op", "read", "--errno", "EIO", "--count", "1")
        with pytest.raises(OSError) as e:
            os.read(fd, 16)
        assert e.value.errno == errno.EIO
        second = os.read(fd, 16)
    finally:
        os.close(fd)
    assert (len(first), len(second)) == (5, 16)
    assert d.stop() == 0
    reads = [line for line in trace.read_text().splitlines() if line.startswith("read ")]
    assert len(reads) == 2 and "result=5 " in reads[0] and "result=16 " in reads[1], reads

    name = unique("rp")
    r = devemud((name, f"replay,trace={trace},speed=0"))
    fd = os.open(r.node(name), os.O_RDONLY)
    try:
        assert os.read(fd, 16) == first  # five bytes, as the real device gave them under the fault
        assert os.read(fd, 16) == second
    finally:
        os.close(fd)
    assert "mismatches=0" in r.inject(name, "status")


def test_an_umockdev_script_is_replayed_to_shell_programs(devemud, tmp_path):
    script = tmp_path / "ping.script"
    script.write_text("w 0 ping^J\nr 20 pong^J\nw 0 caret^`\nr 0 ^@^A\n")
    name = unique("us")
    d = devemud((name, f"replay,script={script}"))
    node = d.node(name)
    r = run(f"printf 'ping\\n' > {node} && head -c 5 {node}", shell=True, timeout=30)
    assert r.returncode == 0 and r.stdout == "pong\n", r
    # A write that is not the recorded one fails with EIO, and the daemon says what differed.
    r = run(f"printf 'carrot' > {node}", shell=True, timeout=30)
    assert r.returncode != 0 and ("I/O error" in r.stderr or "Input/output error" in r.stderr), r
    d.wait_log(r'write mismatch at byte 3 of operation 3 \(.*ping.script:3\).*got "carrot" expected "caret\^"')
    r = run(f"printf 'caret^' > {node} && head -c 2 {node} | od -An -tx1", shell=True, timeout=30)
    assert r.returncode == 0 and r.stdout.split() == ["00", "01"], r
    assert "position=4/4 next=finished mismatches=1" in d.inject(name, "status")


def test_a_malformed_trace_is_refused_with_file_and_line(devemud, tmp_path):
    trace = tmp_path / "bad.trace"
    trace.write_text("devemu-trace 1\nread 0 +0.1 result=4 data=\"OK\"\n")
    name = unique("bad")
    d = devemud((name, f"replay,trace={trace}"), start=False)
    try:
        d.start(timeout=10)
        started = True
    except Exception as e:  # DaemonError carries the log
        started = False
        message = str(e)
    assert not started
    assert f"{trace}:2: read result=4 but data holds 2 bytes" in message, message


def test_devemu_trace_prints_a_recording_in_words(opts, tmp_path):
    trace = tmp_path / "modem.trace"
    trace.write_text("devemu-trace 1\nopen 0 +0.000000 flags=04002 result=0\n"
                     "ioctl 0 +0.000100 request=TIOCMGET out=06010000 result=0\n"
                     "ioctl 0 +0.000100 request=EVIOCGBIT(1,96) result=-EINVAL\n"
                     "read 0 +0.200000 result=4 data=\"OK\\r\\n\"\nrelease 0 +0.010000\n")
    tool = os.path.join(opts.build_dir, "tools", "devemu-trace", "devemu-trace")
    r = run([tool, "print", str(trace)])
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "+0.000000  file 0  open O_RDWR|O_NONBLOCK -> 0",
        "+0.000100  file 0  ioctl TIOCMGET -> 0, writes 06010000",
        "+0.000100  file 0  ioctl EVIOCGBIT(1,96) fails with EINVAL",
        '+0.200000  file 0  read 4 bytes "OK\\r\\n"',
        "+0.010000  file 0  release"], r.stdout
    script = tmp_path / "ping.script"
    script.write_text("w 0 ping^J\nr 20 pong^J\n")
    r = run([tool, "print", str(script)])
    assert r.stdout.splitlines() == ['+0.000000  file 0  write "ping\\n" -> 5',
                                     '+0.020000  file 0  read 5 bytes "pong\\n"'], r
    trace.write_text("devemu-trace 1\nread 0 +0.1 result=4 data=\"OK\"\n")
    r = run([tool, "print", str(trace)])
    assert r.returncode == 1 and r.stderr == f"devemu-trace: {trace}:2: read result=4 but data holds 2 bytes\n", r


def test_bad_recordings_are_refused_with_file_and_line_while_the_daemon_serves_its_other_devices(devemud, tmp_path):
    """A truncated or malformed file of each format, added to a running daemon: devemuctl says which file, which
    line and what is wrong; a replay mismatch fails only that write; the loopback and the good replay serve on."""
    good = tmp_path / "good.trace"
    good.write_text('devemu-trace 1\nopen 0 +0 flags=02 result=0\nwrite 0 +0 data="ping" result=4\n'
                    'read 0 +0 result=4 data="pong"\nwrite 0 +0 data="again" result=5\n'
                    'read 0 +0 result=2 data="ok"\nrelease 0 +0\n')
    lo, rp = unique("lo"), unique("rp")
    d = devemud((lo, "loopback"), (rp, f"replay,trace={good}"))

    def loopback_serves():
        fd = os.open(d.node(lo), os.O_RDWR)
        try:
            os.write(fd, b"still here")
            assert os.read(fd, 64) == b"still here"
        finally:
            os.close(fd)

    bad = {
        # a recording cut short in its last line
        "cut.trace": ("trace", 'devemu-trace 1\nopen 0 +0 flags=02 result=0\nread 0 +0.2 result=4 data="OK',
                      ":3: a quoted string without its closing quote (the file ends in this line without a "
                      "newline: cut short?)"),
        "short.trace": ("trace", "devemu-trace 1\nread 0 +0.1 result=4 data=4F4B\n",
                        ":2: read result=4 but data holds 2 bytes"),
        "noheader.trace": ("trace", "read 0 +0 result=0\n",
                           ":1: expected the header 'devemu-trace 1' before the first operation"),
        "bad.script": ("script", "w 0 AT^M\nr 10 OK^!\n", ":2: '^!' is not an escape"),
        "bad.events": ("evemu", "N: kbd\nE: 0.1 0001 001e 1\n", ":2: '0.1' is not a time stamp"),
        "usb.ioctl": ("ioctl", "@DEV /dev/bus/usb/001/002\nUSBDEVFS_CONNECTINFO 0 0300000000000000\n", ":2: "),
    }
    for i, (file, (kind, text, message)) in enumerate(bad.items()):
        path = tmp_path / file
        path.write_text(text)
        r = d.ctl("add", f"{unique('bad')}={'replay'},{kind}={path}")
        assert r.returncode != 0, (file, r)
        assert f"{path}{message}" in r.stderr + r.stdout, (file, r.stderr, r.stdout)
        loopback_serves()
    r = d.ctl("add", f"{unique('bad')}=replay,trace={tmp_path / 'missing.trace'}")
    assert r.returncode != 0 and f"{tmp_path / 'missing.trace'}: cannot open: No such file or directory" in r.stderr

    # The good replay serves; a write it does not expect fails alone, with the file and line in the log.
    fd = os.open(d.node(rp), os.O_RDWR)
    try:
        os.write(fd, b"ping")
        assert os.read(fd, 64) == b"pong"
        try:
            os.write(fd, b"agian")
            raise AssertionError("a mismatching write was accepted")
        except OSError as e:
            assert e.errno == errno.EIO, e
        d.wait_log(rf'write mismatch at byte 2 of operation 4 \({re.escape(str(good))}:5\).*got "agian" '
                   r'expected "again"')
        loopback_serves()
        os.write(fd, b"again")
        assert os.read(fd, 64) == b"ok"
    finally:
        os.close(fd)
    loopback_serves()
    # The release reaches the daemon after close() returns (FUSE sends it on its own).
    deadline = time.monotonic() + 10
    while "position=6/6 " not in d.inject(rp, "status") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "position=6/6 next=finished mismatches=1" in d.inject(rp, "status")
