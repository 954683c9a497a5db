# SPDX-License-Identifier: MIT
# Record and replay round trips with real clients: devemu-record records a program through a passthrough over one of
# devemu's own devices (rtc, evdev, rng, serial, i2c), devemu-run replays the trace at the same path, and the
# program prints the same.
"""
What the FUSE fallback carries (the host suite): only ioctls whose argument is _IOC_SIZE bytes moved in the encoded
direction. hwclock (RTC_RD_TIME, RTC_UIE_ON/OFF), evtest's EVIOCG* queries, plain reads (busybox od) and
TCGETS2-style size-encoded ioctls round-trip there; stty and pyserial (TCGETS/TCSETS have no size), i2c-tools
(I2C_FUNCS, I2C_SLAVE are values; I2C_SMBUS and I2C_RDWR hold pointers) and evtest's EVIOCGRAB (a value) need CUSE
or the kernel shim, and run in the VM suite (tests/vm/suite.sh runs this directory on both).
"""

import os
import re
import subprocess
import sys
import threading
import time

import pytest

from devemu_testlib import run, unique
from devemu_testlib.processes import interrupted_run

from test_replay import Modem
from test_run import BIN


def round_trip(devemu_run, node, command, tmp_path, stem="rt", timeout=90):
    """Records command (a list) with devemu-record at node, replays the trace at the same path with devemu-run;
    returns (recorded CompletedProcess, replayed CompletedProcess, trace path)."""
    trace = tmp_path / f"{stem}.trace"
    recorded = devemu_run("--device", node, "-o", str(trace), "--", *command, tool="record", timeout=timeout)
    assert recorded.returncode == 0, recorded.stderr
    assert f"trace written to {trace}" in recorded.stderr
    name = unique("rp")
    replayed = devemu_run("--device", f"{name}=replay,trace={trace},speed=0", "--bind", f"{node}={name}",
                          "--log-level", "info", "--", *command, timeout=timeout)
    assert replayed.returncode == 0, replayed.stderr
    return recorded, replayed, trace


# ---------------------------------------------------------------------------------------------
# Carried by every transport
# ---------------------------------------------------------------------------------------------

def test_hwclock_recorded_over_the_rtc_model_replays_the_same_time(devemud, devemu_run, tmp_path):
    """hwclock --show: RTC_UIE_ON, select() until the update interrupt (a poll line), RTC_UIE_OFF, RTC_RD_TIME.
    The time printed is the recorded RTC's less how long hwclock itself waited: replayed at the recorded speed,
    the two agree to within scheduling jitter (not to the microsecond; on a slow guest not always to the second)."""
    import datetime
    name = unique("rtc")
    d = devemud((name, "rtc"))
    node = d.node(name)
    command = ["hwclock", "--rtc", node, "--utc", "--noadjfile", "--show"]
    trace = tmp_path / "hwclock.trace"
    recorded = devemu_run("--device", node, "-o", str(trace), "--", *command, tool="record")
    assert recorded.returncode == 0, recorded.stderr
    text = trace.read_text()
    assert "request=RTC_RD_TIME out=" in text and "\npoll 0 " in text, text
    rp = unique("rp")
    replayed = devemu_run("--device", f"{rp}=replay,trace={trace}", "--bind", f"{node}={rp}", "--", *command)
    assert replayed.returncode == 0, replayed.stderr
    live, again = (datetime.datetime.fromisoformat(r.stdout.strip()) for r in (recorded, replayed))
    assert abs((live - again).total_seconds()) < 0.5, (recorded.stdout, replayed.stdout)


@pytest.mark.skipif(not os.path.exists("/usr/bin/evtest"), reason="evtest not installed")
def test_evtest_recorded_over_the_evdev_model_replays_the_same_lines(opts, transport, devemud, devemu_run, tmp_path):
    """evtest lists the keyboard's capabilities and prints two injected key strokes; the replay prints the same,
    time stamps included (the recorded events' own). On the FUSE fallback its EVIOCGRAB (a value) is not carried,
    and it says the device is grabbed: in the recording and the replay alike."""
    name = unique("ev")
    d = devemud((name, "evdev,name=devemu roundtrip kbd"))
    node = d.node(name)
    trace = tmp_path / "evtest.trace"
    command = ["timeout", "4", "stdbuf", "-oL", "evtest", node]
    p = subprocess.Popen([sys.executable, os.path.join(BIN, "devemu-record"), "--transport", transport,
                          "--devemud", opts.devemud, "--device", node, "-o", str(trace), "--", *command],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(p.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 30
        while not any(line.startswith("Testing ...") for line in lines) and time.monotonic() < deadline:
            assert p.poll() is None, p.stderr.read()
            time.sleep(0.02)
        d.inject(name, "tap", "KEY_A")
        d.inject(name, "tap", "KEY_B")
        p.wait(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    reader.join(10)
    assert p.returncode == 124, p.stderr.read()  # timeout(1) ended evtest
    live = "".join(lines)
    assert "code 30 (KEY_A), value 1" in live and "code 48 (KEY_B), value 0" in live, live
    rp = unique("rp")
    replayed = devemu_run("--device", f"{rp}=replay,trace={trace},speed=0", "--bind", f"{node}={rp}", "--",
                          *command)
    assert replayed.returncode == 124, replayed.stderr
    assert replayed.stdout == live


def test_a_static_busybox_reading_the_rng_is_recorded_and_replayed(devemud, devemu_run, tmp_path):
    """busybox-static: no libc to preload, its open and read are plain syscalls on the node at the path."""
    name = unique("rng")
    d = devemud((name, "rng"))
    node = d.node(name)
    r = run(["file", "-L", "/bin/busybox"])
    if "statically linked" not in r.stdout:
        pytest.skip("/bin/busybox is not the static one (Debian: busybox-static)")
    command = ["/bin/busybox", "od", "-An", "-tx1", "-N", "48", node]
    recorded, replayed, trace = round_trip(devemu_run, node, command, tmp_path, "busybox")
    assert len(recorded.stdout.split()) == 48, recorded.stdout
    assert replayed.stdout == recorded.stdout  # random bytes: only a replay gives them again
    assert "read 0 " in trace.read_text()


# A program that catches SIGINT: it says what the modem answered, then waits for more; its own handler writes a
# goodbye to the device and exits with status 3.
SIGINT_CLIENT = r"""
import os, signal, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_NOCTTY)
def bye(signum, frame):
    os.write(fd, b"ATH\r")
    reply = b""
    while not reply.endswith(b"\r\n"):
        reply += os.read(fd, 64)
    print("interrupted, modem said", repr(reply), flush=True)
    sys.exit(3)
signal.signal(signal.SIGINT, bye)
os.write(fd, b"AT\r")
reply = b""
while not reply.endswith(b"\r\n"):
    reply += os.read(fd, 64)
print("modem said", repr(reply), flush=True)
open(sys.argv[2], "w").close()
while True:
    os.read(fd, 64)  # nothing more comes until the handler speaks
"""


def test_a_program_exiting_from_its_sigint_handler_is_recorded_and_replayed(opts, transport, devemu_run, tmp_path):
    client = tmp_path / "client.py"
    client.write_text(SIGINT_CLIENT)
    trace = tmp_path / "sigint.trace"
    ready = tmp_path / "ready"
    modem = Modem()
    try:
        status, live, err = interrupted_run(
            [sys.executable, os.path.join(BIN, "devemu-record"), "--transport", transport, "--devemud", opts.devemud,
             "--device", modem.path, "-o", str(trace), "--", sys.executable, str(client), modem.path, str(ready)],
            ready)
    finally:
        modem.close()
    assert status == 3, err  # the program's own exit status, through devemu-record
    assert live == "modem said b'OK\\r\\n'\ninterrupted, modem said b'ERROR\\r\\n'\n", live
    text = trace.read_text()
    assert 'data="ATH\\r" result=4' in text and 'data="ERROR\\r\\n"' in text and "\nrelease 0 " in text, text

    ready.unlink()
    name = unique("rp")
    status, again, err = interrupted_run(
        [sys.executable, os.path.join(BIN, "devemu-run"), "--transport", transport, "--devemud", opts.devemud,
         "--device", f"{name}=replay,trace={trace},speed=0", "--bind", f"{modem.path}={name}", "--",
         sys.executable, str(client), modem.path, str(ready)], ready)
    assert status == 3, err
    assert again == live


# ---------------------------------------------------------------------------------------------
# Value and pointer ioctls: CUSE and the kernel shim
# ---------------------------------------------------------------------------------------------

def test_stty_and_a_static_busybox_stty_recorded_over_the_serial_model_replay_the_same(
        devemud, devemu_run, need_cuse, tmp_path):
    name = unique("ser")
    d = devemud((name, "serial"))
    node = d.node(name)
    script = (f"stty -F {node} 115200 cs7 parenb -echo && stty -F {node} -a && "
              f"/bin/busybox stty -F {node} -a && /bin/busybox stty -F {node} 9600 && stty -F {node}")
    recorded, replayed, trace = round_trip(devemu_run, node, ["sh", "-c", script], tmp_path, "stty")
    assert "speed 115200 baud" in recorded.stdout and "cs7" in recorded.stdout, recorded.stdout
    assert replayed.stdout == recorded.stdout
    text = trace.read_text()
    assert "request=TCSETS" in text and "request=TCGETS out=" in text, text
    assert "\nopen 4 " in text  # five programs, five opens, each replayed from its own


PYSERIAL_CLIENT = r"""
import serial, sys
with serial.Serial(sys.argv[1], 115200, timeout=5) as port:
    print("waiting", port.in_waiting, "cts", port.cts, "dsr", port.dsr)
    port.write(b"hello over the wire\n")
    port.flush()
    got = b""
    while len(got) < 20:
        chunk = port.read(20 - len(got))
        if not chunk:
            break
        got += chunk
    print(repr(got), "left", port.in_waiting)
    port.baudrate = 9600
    print(port.get_settings())
"""


def test_pyserial_recorded_over_the_serial_model_replays_the_same(devemud, devemu_run, need_cuse, tmp_path):
    pytest.importorskip("serial", reason="python3-serial (pyserial) is not installed")
    name = unique("ser")
    d = devemud((name, "serial"))  # its far end loops the bytes back
    node = d.node(name)
    client = tmp_path / "client.py"
    client.write_text(PYSERIAL_CLIENT)
    recorded, replayed, _ = round_trip(devemu_run, node, [sys.executable, str(client), node], tmp_path, "pyserial")
    assert "b'hello over the wire\\n' left 0" in recorded.stdout, recorded.stdout
    assert replayed.stdout == recorded.stdout


def test_i2c_tools_recorded_over_the_i2c_model_replay_the_same(devemud, devemu_run, need_cuse, tmp_path):
    """i2cdetect's probe of every address, i2cset and i2cget: separate programs, separate opens of /dev/i2c-N."""
    from test_i2c import serve
    d, bus, name, node = serve(devemud)
    script = (f"i2cdetect -y {bus} && i2cset -y {bus} 0x50 0x20 0x5a && i2cget -y {bus} 0x50 0x20 && "
              f"i2cget -y {bus} 0x50 0x21")
    recorded, replayed, trace = round_trip(devemu_run, node, ["sh", "-c", script], tmp_path, "i2c")
    assert "50: 50 " in recorded.stdout and "0x5a\n" in recorded.stdout, recorded.stdout
    assert replayed.stdout == recorded.stdout
    text = trace.read_text()
    assert "request=I2C_FUNCS" in text and "request=I2C_SLAVE arg=0x50" in text, text


# ---------------------------------------------------------------------------------------------
# umockdev side by side: its script and ioctl formats, written here, under umockdev-run and devemu-run
# ---------------------------------------------------------------------------------------------

# An evdev client as a test writer has one: the id, name and keys (with the lengths it was recorded with:
# umockdev answers only those), then two events.
UMOCKDEV_CLIENT = r"""
import fcntl, os, struct, sys
EVIOCGID = (2 << 30) | (8 << 16) | (ord('E') << 8) | 0x02
EVIOCGNAME = lambda n: (2 << 30) | (n << 16) | (ord('E') << 8) | 0x06
EVIOCGBIT = lambda ev, n: (2 << 30) | (n << 16) | (ord('E') << 8) | (0x20 + ev)
fd = os.open(sys.argv[1], os.O_RDONLY)
print("id bus=%#x vendor=%#x product=%#x version=%#x" % struct.unpack("4H", fcntl.ioctl(fd, EVIOCGID, bytes(8))))
print("name", fcntl.ioctl(fd, EVIOCGNAME(20), bytes(20)).rstrip(b"\0").decode())
keys = fcntl.ioctl(fd, EVIOCGBIT(1, 96), bytes(96))
print("keys", [c for c in range(96 * 8) if keys[c // 8] >> (c % 8) & 1])
data = b""
while len(data) < 48:
    data += os.read(fd, 48 - len(data))
for i in range(0, 48, 24):
    print("event %d.%06d type=%d code=%d value=%d" % struct.unpack("qqHHi", data[i:i + 24]))
"""


def umockdev_escaped(data):
    """Bytes as umockdev's script format writes them: below 32 as ^ and the byte + 64, ^ itself as ^`."""
    assert all(b < 0x7f for b in data)
    return "".join("^`" if b == 0x5e else f"^{chr(b + 64)}" if b < 32 else chr(b) for b in data)


@pytest.fixture
def umockdev_kbd(tmp_path):
    """(path, device description, ioctl file, script) of a keyboard at a path of its own, in umockdev's formats."""
    import shutil
    import struct
    if not shutil.which("umockdev-run"):
        pytest.skip("umockdev-run not installed (Debian: umockdev)")
    number = 900 + os.getpid() % 99
    path = f"/dev/input/event{number}"
    device = tmp_path / "kbd.umockdev"
    device.write_text(f"P: /devices/virtual/input/input{number}/event{number}\nN: input/event{number}\n"
                      f"E: DEVNAME={path}\nE: SUBSYSTEM=input\nE: ID_INPUT=1\nE: ID_INPUT_KEYBOARD=1\n"
                      f"A: dev=13:{number}\n")
    name = b"devemu side by side\0"
    keys = bytearray(96)
    for code in (30, 48):
        keys[code // 8] |= 1 << code % 8
    ioctl = tmp_path / "kbd.ioctl"
    ioctl.write_text(f"@DEV {path}\nEVIOCGID 0 0300341278561101\n"
                     f"EVIOCGNAME {len(name)} {name.hex().upper()}\n"
                     f"EVIOCGBIT(1) 96 {bytes(keys).hex().upper()}\n")
    events = struct.pack("qqHHi", 1, 100, 1, 30, 1) + struct.pack("qqHHi", 1, 100, 0, 0, 0)
    script = tmp_path / "kbd.script"
    script.write_text(f"r 20 {umockdev_escaped(events)}\n")
    return path, device, ioctl, script


def test_an_evdev_client_under_umockdev_run_and_devemu_run_prints_the_same(devemu_run, umockdev_kbd, tmp_path):
    """umockdev's ioctl file and script, as umockdev-record writes them, read by both as they are."""
    path, device, ioctl, script = umockdev_kbd
    client = tmp_path / "client.py"
    client.write_text(UMOCKDEV_CLIENT)
    under_umockdev = run(["umockdev-run", "-d", str(device), "-i", f"{path}={ioctl}", "-s", f"{path}={script}",
                          "--", sys.executable, str(client), path], timeout=60)
    assert under_umockdev.returncode == 0, under_umockdev.stderr
    name = unique("um")
    under_devemu = devemu_run("--device", f"{name}=replay,ioctl={ioctl},script={script}", "--bind", f"{path}={name}",
                              "--", sys.executable, str(client), path)
    assert under_devemu.returncode == 0, under_devemu.stderr
    assert under_devemu.stdout == under_umockdev.stdout == (
        "id bus=0x3 vendor=0x1234 product=0x5678 version=0x111\nname devemu side by side\nkeys [30, 48]\n"
        "event 1.000100 type=1 code=30 value=1\nevent 1.000100 type=0 code=0 value=0\n")


def test_a_static_binary_reads_the_replay_under_devemu_run_and_not_under_umockdev_run(devemu_run, umockdev_kbd):
    """umockdev redirects libc calls with LD_PRELOAD: busybox-static makes its syscalls itself and finds no node.
    devemu-run's node is real, at the path, in the program's mount namespace."""
    path, device, ioctl, script = umockdev_kbd
    if "statically linked" not in run(["file", "-L", "/bin/busybox"]).stdout:
        pytest.skip("/bin/busybox is not the static one (Debian: busybox-static)")
    command = ["/bin/busybox", "od", "-An", "-tx1", "-N", "48", path]
    under_umockdev = run(["umockdev-run", "-d", str(device), "-s", f"{path}={script}", "--", *command], timeout=60)
    assert under_umockdev.returncode != 0 and "No such file or directory" in under_umockdev.stderr, under_umockdev
    name = unique("um")
    under_devemu = devemu_run("--device", f"{name}=replay,script={script}", "--bind", f"{path}={name}", "--", *command)
    assert under_devemu.returncode == 0, under_devemu.stderr
    assert under_devemu.stdout.split()[:20] == ["01", "00", "00", "00", "00", "00", "00", "00",
                                                "64", "00", "00", "00", "00", "00", "00", "00",
                                                "01", "00", "1e", "00"], under_devemu.stdout
