# SPDX-License-Identifier: MIT
# devemu-run and devemu-record: nodes at the paths programs expect, in a private mount namespace, for static
# binaries and scripts; exit status passed through; nothing left behind; an evemu recording read by an evdev client.

import os
import shutil
import signal
import sys
import time

import pytest

from devemu_testlib import run, unique
from devemu_testlib.processes import interrupted_run

from test_replay import Modem

BIN = os.path.join(os.path.dirname(__file__), "..", "..", "python", "bin")
# A path no host has: the node exists only inside the run's namespace.
TTY = "/dev/ttyDEVEMU-TEST0"


def mounts():
    with open("/proc/self/mountinfo") as f:
        return sorted(line.split()[4] for line in f)


def test_a_static_busybox_finds_the_node_at_a_path_the_host_does_not_have(devemu_run):
    assert not os.path.lexists(TTY)
    name = unique("lo")
    r = devemu_run("--device", f"{name}=loopback", "--bind", f"{TTY}={name}", "--",
                   "busybox", "sh", "-c", f"echo hello > {TTY} && busybox dd if={TTY} bs=6 count=1 2>/dev/null "
                   f"&& busybox cat /proc/self/mountinfo | busybox grep -c ' {TTY} '")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "hello\n1\n", r
    # Nothing of it outside: no node at the path, no mount of it or of the device (other suites may be mounting
    # and unmounting their own meanwhile: only ours are looked for), devemud's own node gone.
    assert not os.path.lexists(TTY)
    assert not os.path.lexists(f"/dev/{name}")
    assert not [m for m in mounts() if m == TTY or name in m], mounts()


def test_the_programs_exit_status_and_a_killing_signal_are_passed_through(devemu_run):
    name = unique("lo")
    r = devemu_run("--device", f"{name}=zero", "--bind", f"{TTY}={name}", "--", "busybox", "sh", "-c", "exit 7")
    assert r.returncode == 7, r.stderr
    r = devemu_run("--device", f"{name}=zero", "--bind", f"{TTY}={name}", "--",
                   "busybox", "sh", "-c", "kill -TERM $$")
    assert r.returncode == 128 + signal.SIGTERM, r.stderr
    r = devemu_run("--device", f"{name}=zero", "--", "/nonexistent/prog")
    assert r.returncode == 127 and "/nonexistent/prog: command not found" in r.stderr, r
    r = devemu_run("--device", f"{name}=zero", "--bind", f"{TTY}=other", "--", "true")
    assert r.returncode == 125 and "no --device named 'other'" in r.stderr, r
    r = devemu_run("--device", f"{name}=nosuchmodel", "--", "true")
    assert r.returncode == 125 and "devemud did not start" in r.stderr and "nosuchmodel" in r.stderr, r


@pytest.mark.parametrize("how", ["kill", "killpg"])
def test_a_signal_sent_to_devemu_run_reaches_the_program_exactly_once(opts, transport, tmp_path, how):
    """SIGINT by kill() to devemu-run's pid, or to its process group (as a terminal's Ctrl-C or a supervisor
    does): the program, in a job of its own, gets it once either way and goes on."""
    from devemu_testlib import processes
    ready, go = tmp_path / "ready", tmp_path / "go"
    prog = tmp_path / "counter.sh"
    prog.write_text(f"#!/bin/sh\nn=0\ntrap 'n=$((n+1))' INT\ntouch {ready}\n"
                    f"while [ ! -e {go} ]; do sleep 0.05; done\necho caught $n\n")
    prog.chmod(0o755)
    name = unique("lo")
    p = processes.popen([sys.executable, os.path.join(BIN, "devemu-run"), "--transport", transport, "--devemud",
                         opts.devemud, "--device", f"{name}=zero", "--", str(prog)],
                        stdout=processes.subprocess.PIPE, stderr=processes.subprocess.PIPE, text=True,
                        start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert ready.exists(), p.communicate(timeout=10)
        (os.kill if how == "kill" else os.killpg)(p.pid, signal.SIGINT)
        time.sleep(0.5)
        go.touch()
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        processes.forget(p)
    assert p.returncode == 0, err
    assert out == "caught 1\n", (out, err)


def test_a_shell_script_reads_an_umockdev_script_replay_in_a_directory_the_host_lacks(devemu_run, tmp_path):
    script = tmp_path / "modem.script"
    script.write_text("w 0 AT^M\nr 10 OK^M^J\n")
    prog = tmp_path / "talk.sh"
    prog.write_text("#!/bin/sh\nset -e\nnode=/dev/devemu-test-dir/modem0\nprintf 'AT\\r' > $node\n"
                    "head -c 4 $node | od -An -c\nls /dev/devemu-test-dir\n")
    prog.chmod(0o755)
    name = unique("um")
    r = devemu_run("--device", f"{name}=replay,script={script}", "--bind", f"/dev/devemu-test-dir/modem0={name}",
                   "--", str(prog))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["O", "K", "\\r", "\\n", "modem0"], r
    assert not os.path.lexists("/dev/devemu-test-dir")


# An evdev client as tests write them: the name and id, then events until KEY_A is released, with the
# time since the first event.
EVDEV_READER = r"""
import fcntl, os, struct, sys, time
EVIOCGNAME = lambda n: (2 << 30) | (n << 16) | (ord('E') << 8) | 0x06
EVIOCGID = (2 << 30) | (8 << 16) | (ord('E') << 8) | 0x02
EVIOCGBIT = lambda ev, n: (2 << 30) | (n << 16) | (ord('E') << 8) | (0x20 + ev)
fd = os.open(sys.argv[1], os.O_RDONLY)
name = fcntl.ioctl(fd, EVIOCGNAME(256), bytes(256)).split(b"\0")[0].decode()
bus, vendor, product, version = struct.unpack("4H", fcntl.ioctl(fd, EVIOCGID, bytes(8)))
keys = fcntl.ioctl(fd, EVIOCGBIT(1, 96), bytes(96))
print(f"{name} bus={bus:#x} vendor={vendor:#x} product={product:#x} KEY_A={bool(keys[30 // 8] & (1 << 30 % 8))}")
first = None
released = False
while not released:
    data = os.read(fd, 24 * 16)
    first = first or time.monotonic()
    for i in range(0, len(data), 24):
        sec, usec, typ, code, value = struct.unpack("qqHHi", data[i:i + 24])
        print(f"{sec}.{usec:06d} type={typ} code={code} value={value}")
        released = released or (typ, code, value) == (1, 30, 0)
print(f"release after {time.monotonic() - first:.2f} s")
"""

EVEMU = """# EVEMU 1.3
N: devemu evemu kbd
I: 0003 1234 5678 0111
P: 00 00 00 00 00 00 00 00
B: 00 13 00 00 00 00 00 00 00
B: 01 00 00 00 40 00 00 00 00
B: 01 00 00 00 00 00 00 00 00
B: 04 10 00 00 00 00 00 00 00
E: 0.000000 0004 0004 458756	# EV_MSC / MSC_SCAN             458756
E: 0.000000 0001 001e 0001	# EV_KEY / KEY_A                1
E: 0.000000 0000 0000 0000	# ------------ SYN_REPORT (0) ----------
E: 0.150000 0001 001e 0000	# EV_KEY / KEY_A                0
E: 0.150000 0000 0000 0000	# ------------ SYN_REPORT (0) ----------
"""


def test_an_evdev_client_reads_an_evemu_recording_with_its_timing(devemu_run, tmp_path):
    events = tmp_path / "kbd.events"
    events.write_text(EVEMU)
    reader = tmp_path / "reader.py"
    reader.write_text(EVDEV_READER)
    name = unique("ev")
    node = "/dev/input/devemu-test-event0"
    r = devemu_run("--device", f"{name}=replay,evemu={events}", "--bind", f"{node}={name}", "--",
                   sys.executable, str(reader), node)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "devemu evemu kbd bus=0x3 vendor=0x1234 product=0x5678 KEY_A=True", r.stdout
    assert lines[1:-1] == ["0.000000 type=4 code=4 value=458756", "0.000000 type=1 code=30 value=1",
                         "0.000000 type=0 code=0 value=0", "0.150000 type=1 code=30 value=0",
                         "0.150000 type=0 code=0 value=0"], r.stdout
    assert 0.12 <= float(lines[-1].split()[2]) < 2, r.stdout


RECORDED_CLIENT = r"""
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_NOCTTY)
for cmd in (b"AT\r", b"ATI\r"):
    os.write(fd, cmd)
    reply = b""
    while not reply.endswith(b"\r\n"):
        reply += os.read(fd, 64)
    print(repr(reply))
"""


def test_devemu_record_records_a_program_at_the_real_nodes_path_and_the_trace_replays(devemu_run, tmp_path):
    client = tmp_path / "client.py"
    client.write_text(RECORDED_CLIENT)
    trace = tmp_path / "modem.trace"
    modem = Modem()
    try:
        # The program opens the real pty's path; inside its namespace a recording passthrough sits there.
        r = devemu_run("--device", modem.path, "-o", str(trace), "--", sys.executable, str(client), modem.path,
                       tool="record")
        assert r.returncode == 0, r.stderr
        assert f"trace written to {trace}" in r.stderr
    finally:
        modem.close()
    live = r.stdout
    assert live == "b'OK\\r\\n'\nb'devemu modem 1\\r\\n'\n", live
    text = trace.read_text()
    assert 'write 0 ' in text and 'data="ATI\\r" result=4' in text, text

    name = unique("rp")
    r = devemu_run("--device", f"{name}=replay,trace={trace},speed=0", "--bind", f"{TTY}={name}", "--",
                   sys.executable, str(client), TTY)
    assert r.returncode == 0, r.stderr
    assert r.stdout == live


@pytest.mark.skipif(not shutil.which("umockdev-run"), reason="umockdev-run not installed (Debian: umockdev)")
def test_the_same_script_under_umockdev_run_and_devemu_run_prints_the_same(devemu_run, tmp_path):
    """umockdev's own replay (LD_PRELOAD, its testbed) and devemu's (a real node at the same path) side by side."""
    path = f"/dev/ttyDEVEMU{os.getpid()}"
    script = tmp_path / "modem.script"
    script.write_text("w 0 AT^M\nr 10 OK^M^J\nw 0 ATI^M\nr 5 devemu^`modem^M^J\n")
    prog = tmp_path / "talk.sh"
    # One open file for the whole dialogue (umockdev starts a script again at each open).
    prog.write_text(f"#!/bin/sh\nset -e\nexec 3<>{path}\nprintf 'AT\\r' >&3\nhead -c 4 <&3 | od -An -c\n"
                    "printf 'ATI\\r' >&3\nhead -c 14 <&3\n")
    prog.chmod(0o755)
    device = tmp_path / "tty.umockdev"
    name = os.path.basename(path)
    device.write_text(f"P: /devices/virtual/tty/{name}\nN: {name}\nE: DEVNAME={path}\nE: SUBSYSTEM=tty\n"
                      "A: dev=188:1\n")
    under_umockdev = run(["umockdev-run", "-d", str(device), "-s", f"{path}={script}", "--", str(prog)], timeout=60)
    assert under_umockdev.returncode == 0, under_umockdev.stderr
    dev = unique("um")
    under_devemu = devemu_run("--device", f"{dev}=replay,script={script}", "--bind", f"{path}={dev}", "--",
                              str(prog))
    assert under_devemu.returncode == 0, under_devemu.stderr
    # run() reads text: the \r\n the device sent shows as \n
    assert under_devemu.stdout == under_umockdev.stdout == "   O   K  \\r  \\n\ndevemu^modem\n"


def test_i2c_tools_recorded_with_devemu_record_replay_the_same(devemud, devemu_run, need_cuse, tmp_path):
    """I2C_SMBUS (i2cget) and I2C_RDWR (i2ctransfer) through a recording passthrough over devemu's own i2c bus,
    then replayed at the same path: the same output (pointer-holding ioctls: CUSE or the kernel shim)."""
    from test_i2c import serve, tool
    d, bus, name, node = serve(devemud)
    tool("i2cset", "-y", str(bus), "0x50", "0x10", "0x42")
    tool("i2cset", "-y", str(bus), "0x50", "0x11", "0x43")
    commands = f"i2cget -y {bus} 0x50 0x10 && i2ctransfer -y {bus} w1@0x50 0x10 r2"
    trace = tmp_path / "i2c.trace"
    r = devemu_run("--device", node, "-o", str(trace), "--", "sh", "-c", commands, tool="record")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "0x42\n0x42 0x43\n", r.stdout
    text = trace.read_text()
    assert "request=I2C_SMBUS in=0110" in text and "request=I2C_RDWR in=" in text and "out=4243" in text, text
    rp = unique("rp")
    replayed = devemu_run("--device", f"{rp}=replay,trace={trace},speed=0", "--bind", f"{node}={rp}", "--",
                          "sh", "-c", commands)
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout == r.stdout


def test_a_program_that_catches_sigint_is_recorded_whole(opts, transport, devemu_run, tmp_path):
    """Ctrl-C reaches the whole foreground group: devemu-record ignores it, the program traps it and goes on
    talking to the device; what it does afterwards is in the trace."""
    modem = Modem()
    trace = tmp_path / "sigint.trace"
    ready, go = tmp_path / "ready", tmp_path / "go"
    prog = tmp_path / "stubborn.sh"
    prog.write_text(f"#!/bin/sh\ntrap 'echo caught SIGINT' INT\nexec 3<>{modem.path}\n"
                    f"printf 'AT\\r' >&3\nhead -c 4 <&3 | od -An -c\ntouch {ready}\n"
                    f"while [ ! -e {go} ]; do sleep 0.05; done\n"
                    "printf 'ATI\\r' >&3\nhead -c 16 <&3\n")
    prog.chmod(0o755)

    def go_on():
        time.sleep(0.2)
        go.touch()

    try:
        status, out, err = interrupted_run(
            [sys.executable, os.path.join(BIN, "devemu-record"), "--transport", transport, "--devemud", opts.devemud,
             "--device", modem.path, "-o", str(trace), "--", str(prog)], ready, after_sigint=go_on)
    finally:
        modem.close()
    assert status == 0, err
    assert "caught SIGINT" in out and out.endswith("devemu modem 1\n"), out  # text mode: \r\n as \n
    text = trace.read_text()
    assert 'data="ATI\\r" result=4' in text and 'data="devemu modem 1\\r\\n"' in text, text


@pytest.mark.skipif(not shutil.which("evtest"), reason="evtest not installed")
def test_evtest_lists_and_prints_an_evemu_recording_at_dev_input_event5(devemu_run, tmp_path):
    """evtest, unmodified, at the path it is given. On the FUSE fallback its EVIOCGRAB test (a value, which
    FUSE does not carry) fails and it warns that the device is grabbed, then reads the events all the same."""
    events = tmp_path / "kbd.events"
    events.write_text(EVEMU)
    name = unique("ev")
    r = devemu_run("--device", f"{name}=replay,evemu={events}", "--bind", f"/dev/input/event5={name}", "--",
                   "timeout", "2", "stdbuf", "-oL", "evtest", "/dev/input/event5")
    assert r.returncode == 124, r  # timeout(1) ended evtest, and its status came through
    for line in ('Input device ID: bus 0x3 vendor 0x1234 product 0x5678 version 0x111',
                 'Input device name: "devemu evemu kbd"', "    Event code 30 (KEY_A)",
                 "Event: time 0.000000, type 1 (EV_KEY), code 30 (KEY_A), value 1",
                 "Event: time 0.150000, type 1 (EV_KEY), code 30 (KEY_A), value 0",
                 "Event: time 0.150000, -------------- SYN_REPORT ------------"):
        assert line in r.stdout.splitlines(), r.stdout
