# SPDX-License-Identifier: MIT
# The evdev model against real clients: evtest (capabilities, injected events, grab) and struct input_event reads from Python.

import ctypes
import errno
import fcntl
import os
import re
import select
import signal
import struct
import subprocess
import threading
import time

import pytest

from devemu_testlib import unique
from devemu_testlib.abi import IOR, IOW

EVENT = struct.Struct("qqHHi")  # struct input_event on 64-bit: struct timeval, type, code, value
EV_SYN, EV_KEY, EV_ABS, EV_MSC, EV_LED = 0, 1, 3, 4, 0x11
SYN_REPORT, SYN_DROPPED = 0, 3
KEY_A, KEY_B, KEY_C = 30, 48, 46
MSC_SCAN = 4
LED_CAPSL = 1
ABS_X, ABS_Y = 0, 1
BTN_TOUCH = 0x14a


EVIOCGVERSION = IOR("E", 0x01, 4)
EVIOCGID = IOR("E", 0x02, 8)
EVIOCGRAB = IOW("E", 0x90, 4)
EVIOCSCLOCKID = IOW("E", 0xa0, 4)


def EVIOCGNAME(n):
    return IOR("E", 0x06, n)


def EVIOCGBIT(ev, n):
    return IOR("E", 0x20 + ev, n)


def EVIOCGKEY(n):
    return IOR("E", 0x18, n)


def EVIOCGLED(n):
    return IOR("E", 0x19, n)


def EVIOCGABS(axis):
    return IOR("E", 0x40 + axis, 24)


def serve(devemud, options=""):
    name = unique("evdev")
    d = devemud((name, "evdev" + ("," + options if options else "")))
    return d, name, d.node(name)


def bits(buf):
    return {i for i in range(len(buf) * 8) if buf[i // 8] >> (i % 8) & 1}


def read_events(fd, size=EVENT.size * 64):
    """One read(); the events as (type, code, value) and their timestamps."""
    data = os.read(fd, size)
    assert len(data) % EVENT.size == 0, len(data)
    evs = [EVENT.unpack_from(data, i) for i in range(0, len(data), EVENT.size)]
    return [(t, c, v) for _, _, t, c, v in evs], [s + u / 1e6 for s, u, _, _, _ in evs]


def drain(fd):
    """Everything readable now on an O_NONBLOCK fd."""
    out = []
    while True:
        try:
            evs, _ = read_events(fd)
        except BlockingIOError:
            return out
        out += evs


def tap(key, scan):
    syn = (EV_SYN, SYN_REPORT, 0)
    return [(EV_MSC, MSC_SCAN, scan), (EV_KEY, key, 1), syn, (EV_MSC, MSC_SCAN, scan), (EV_KEY, key, 0), syn]


def wait_readable(fd, seconds):
    return bool(select.select([fd], [], [], seconds)[0])


class Evtest:
    """evtest NODE in the background, line-buffered (stdbuf), its output collected."""

    def __init__(self, node, *args):
        self.proc = subprocess.Popen(["stdbuf", "-oL", "evtest", *args, node], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True)
        self._out = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            with self._lock:
                self._out.append(line)

    def text(self):
        with self._lock:
            return "".join(self._out)

    def wait_for(self, pattern, seconds=30, count=1):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if len(re.findall(pattern, self.text(), re.M)) >= count:
                return self.text()
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"evtest did not print {pattern!r} (x{count}) within {seconds} s "
                             f"(exit {self.proc.poll()}):\n{self.text()}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._reader.join(timeout=10)
        return self.text()


@pytest.fixture
def evtest():
    started = []

    def start(node, *args):
        e = Evtest(node, *args)
        started.append(e)
        return e

    yield start
    for e in started:
        e.stop()


def test_evtest_lists_the_keyboards_capabilities(devemud, evtest):
    d, name, node = serve(devemud, "name=devemu test keyboard,vendor=0x1234,product=0x5678")
    e = evtest(node)
    out = e.wait_for(r"^Testing \.\.\. \(interrupt to exit\)")
    assert "Input driver version is 1.0.1" in out
    assert "Input device ID: bus 0x6 vendor 0x1234 product 0x5678 version 0x1" in out
    assert 'Input device name: "devemu test keyboard"' in out
    for line in ("Event type 0 (EV_SYN)", "Event type 1 (EV_KEY)", "Event type 4 (EV_MSC)",
                 "Event type 17 (EV_LED)", "Event code 30 (KEY_A)", "Event code 1 (KEY_ESC)",
                 "Event code 125 (KEY_LEFTMETA)", "Event code 4 (MSC_SCAN)", "Event code 1 (LED_CAPSL)",
                 "Repeat code 0 (REP_DELAY)"):
        assert line in out, f"{line!r} missing:\n{out}"
    assert re.search(r"Repeat code 0 \(REP_DELAY\)\n\s+Value\s+250\n\s+Repeat code 1 \(REP_PERIOD\)\n\s+Value\s+33", out)
    # The keys evtest lists are those EVIOCGBIT reports.
    listed = set(int(c) for c in re.findall(r"^    Event code (\d+) \(KEY_\w+\)", out, re.M))
    fd = os.open(node, os.O_RDONLY | os.O_NONBLOCK)
    try:
        keybits = bits(fcntl.ioctl(fd, EVIOCGBIT(EV_KEY, 96), bytes(96)))
    finally:
        os.close(fd)
    assert listed == keybits
    assert len(listed) == 109  # the keyboard type's key table (a PC keyboard, core/models/evdev)


def test_evtest_prints_injected_events(devemud, evtest):
    d, name, node = serve(devemud)
    e = evtest(node)
    e.wait_for(r"^Testing \.\.\.")
    d.inject(name, "tap", "KEY_A")
    out = e.wait_for(r"type 1 \(EV_KEY\), code 30 \(KEY_A\), value 0")
    events = re.findall(r"^Event: time \d+\.\d+, (.*)$", out, re.M)
    assert events == ["type 4 (EV_MSC), code 4 (MSC_SCAN), value 1e",
                      "type 1 (EV_KEY), code 30 (KEY_A), value 1",
                      "-------------- SYN_REPORT ------------",
                      "type 4 (EV_MSC), code 4 (MSC_SCAN), value 1e",
                      "type 1 (EV_KEY), code 30 (KEY_A), value 0",
                      "-------------- SYN_REPORT ------------"], out
    # A held key autorepeats (value 2) until it is released; nothing shows before the SYN_REPORT.
    d.inject(name, "key", "KEY_B", "1")
    time.sleep(0.3)
    assert "), code 48 (KEY_B)" not in e.text()
    d.inject(name, "syn")
    e.wait_for(r"code 48 \(KEY_B\), value 2", seconds=10)
    d.inject(name, "key", "KEY_B", "0")
    d.inject(name, "syn")
    out = e.wait_for(r"code 48 \(KEY_B\), value 0")
    b = [m for m in re.findall(r"code 48 \(KEY_B\), value (\d)", out)]
    assert b[0] == "1" and b[-1] == "0" and set(b[1:-1]) == {"2"}, b


def test_evtest_shows_a_tablets_axes_and_pen_events(devemud, evtest):
    d, name, node = serve(devemud, "type=tablet,abs_x=0:4095,abs_y=0:2047")
    e = evtest(node)
    out = e.wait_for(r"^Testing \.\.\.")
    for axis, lo, hi in (("0 (ABS_X)", 0, 4095), ("1 (ABS_Y)", 0, 2047), ("24 (ABS_PRESSURE)", 0, 2047)):
        m = re.search(rf"Event code {re.escape(axis)}\n\s+Value\s+(-?\d+)\n\s+Min\s+(-?\d+)\n\s+Max\s+(-?\d+)", out)
        assert m, f"{axis} missing:\n{out}"
        assert (int(m.group(2)), int(m.group(3))) == (lo, hi)
    assert "Event code 320 (BTN_TOOL_PEN)" in out and "Event code 330 (BTN_TOUCH)" in out
    assert "Property type 0 (INPUT_PROP_POINTER)" in out
    assert "Event type 1 (EV_KEY)" in out and "Event type 3 (EV_ABS)" in out and "EV_REP" not in out
    for args in (("key", "BTN_TOOL_PEN", "1"), ("abs", "ABS_X", "1000"), ("abs", "ABS_Y", "500"),
                 ("abs", "ABS_PRESSURE", "300"), ("key", "BTN_TOUCH", "1"), ("syn",)):
        d.inject(name, *args)
    out = e.wait_for(r"code 330 \(BTN_TOUCH\), value 1")
    for line in ("type 1 (EV_KEY), code 320 (BTN_TOOL_PEN), value 1", "type 3 (EV_ABS), code 0 (ABS_X), value 1000",
                 "type 3 (EV_ABS), code 1 (ABS_Y), value 500", "type 3 (EV_ABS), code 24 (ABS_PRESSURE), value 300"):
        assert line in out, f"{line!r} missing:\n{out}"


def test_evtest_shows_a_joysticks_fuzz_and_flat(devemud, evtest):
    d, name, node = serve(devemud, "type=joystick")
    e = evtest(node)
    out = e.wait_for(r"^Testing \.\.\.")
    m = re.search(r"Event code 0 \(ABS_X\)\n\s+Value\s+0\n\s+Min\s+-32768\n\s+Max\s+32767\n\s+Fuzz\s+(\d+)\n\s+Flat\s+(\d+)", out)
    assert m and (int(m.group(1)), int(m.group(2))) == (16, 128), out
    assert "Event code 288 (BTN_TRIGGER)" in out
    d.inject(name, "tap", "BTN_TRIGGER")
    e.wait_for(r"code 288 \(BTN_TRIGGER\), value 0")


def test_python_reads_framed_input_events(devemud):
    d, name, node = serve(devemud, "repeat=off")  # a key held across slow devemuctl calls would repeat
    fd = os.open(node, os.O_RDONLY | os.O_NONBLOCK)
    try:
        assert struct.unpack("i", fcntl.ioctl(fd, EVIOCGVERSION, bytes(4)))[0] == 0x010001
        assert fcntl.ioctl(fd, EVIOCGNAME(256), bytes(256)).rstrip(b"\0") == b"devemu keyboard"
        with pytest.raises(BlockingIOError):
            os.read(fd, EVENT.size)
        # Events become readable only with their SYN_REPORT.
        d.inject(name, "key", "KEY_C", "1")
        assert not wait_readable(fd, 0.3)
        d.inject(name, "syn")
        assert wait_readable(fd, 10)
        before = time.time()
        evs, stamps = read_events(fd)
        assert evs == [(EV_MSC, MSC_SCAN, 0x2e), (EV_KEY, KEY_C, 1), (EV_SYN, SYN_REPORT, 0)]
        assert all(abs(s - before) < 5 for s in stamps) and stamps[0] == stamps[-1]
        # EVIOCGKEY shows the held key.
        assert KEY_C in bits(fcntl.ioctl(fd, EVIOCGKEY(96), bytes(96)))
        # Smaller than one event: EINVAL; a larger odd size gives whole events.
        d.inject(name, "key", "KEY_C", "0")
        d.inject(name, "syn")
        assert wait_readable(fd, 10)
        with pytest.raises(OSError) as e:
            os.read(fd, EVENT.size - 1)
        assert e.value.errno == errno.EINVAL
        assert len(os.read(fd, EVENT.size + 7)) == EVENT.size
        assert drain(fd) == [(EV_KEY, KEY_C, 0), (EV_SYN, SYN_REPORT, 0)]
    finally:
        os.close(fd)

    # A blocking read waits for the next packet.
    fd = os.open(node, os.O_RDONLY)
    try:
        got = []
        reader = threading.Thread(target=lambda: got.append(read_events(fd)[0]), daemon=True)
        reader.start()
        time.sleep(0.5)
        assert not got
        d.inject(name, "tap", "KEY_A")
        reader.join(timeout=20)
        assert got and got[0] == tap(KEY_A, 0x1e)[:len(got[0])] and got[0][-1] == (EV_SYN, SYN_REPORT, 0)
    finally:
        os.close(fd)


def test_every_open_file_gets_every_event(devemud, evtest):
    d, name, node = serve(devemud)
    a = os.open(node, os.O_RDONLY | os.O_NONBLOCK)
    b = os.open(node, os.O_RDONLY | os.O_NONBLOCK)
    try:
        e = evtest(node)
        e.wait_for(r"^Testing \.\.\.")
        d.inject(name, "tap", "KEY_A", "KEY_B")
        assert wait_readable(a, 10) and wait_readable(b, 10)
        time.sleep(0.2)
        expected = tap(KEY_A, 0x1e) + tap(KEY_B, 0x30)
        assert drain(a) == expected
        assert drain(b) == expected
        e.wait_for(r"code 48 \(KEY_B\), value 0")
        # A file opened later sees only what comes after.
        c = os.open(node, os.O_RDONLY | os.O_NONBLOCK)
        try:
            assert drain(c) == []
        finally:
            os.close(c)
    finally:
        os.close(a)
        os.close(b)


def test_written_events_reach_every_reader(devemud):
    d, name, node = serve(devemud)
    w = os.open(node, os.O_RDWR | os.O_NONBLOCK)
    r = os.open(node, os.O_RDONLY | os.O_NONBLOCK)
    try:
        packet = EVENT.pack(0, 0, EV_LED, LED_CAPSL, 1) + EVENT.pack(0, 0, EV_SYN, SYN_REPORT, 0)
        assert os.write(w, packet) == len(packet)
        assert wait_readable(r, 10)
        assert drain(r) == [(EV_LED, LED_CAPSL, 1), (EV_SYN, SYN_REPORT, 0)]
        assert LED_CAPSL in bits(fcntl.ioctl(r, EVIOCGLED(8), bytes(8)))
        assert "leds on: LED_CAPSL" in d.inject(name, "state")
        with pytest.raises(OSError) as e:
            os.write(w, b"short")
        assert e.value.errno == errno.EINVAL
    finally:
        os.close(w)
        os.close(r)


def test_bad_pointers_fault_and_foreign_ioctls_are_einval(devemud):
    d, name, node = serve(devemud)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
    fd = os.open(node, os.O_RDONLY)
    try:
        assert libc.ioctl(fd, EVIOCGNAME(64), 16) == -1 and ctypes.get_errno() == errno.EFAULT
        assert libc.ioctl(fd, EVIOCGBIT(EV_KEY, 96), 16) == -1 and ctypes.get_errno() == errno.EFAULT
        # evdev answers EINVAL, not ENOTTY, to what it does not know.
        with pytest.raises(OSError) as e:
            fcntl.ioctl(fd, EVIOCGBIT(0x14, 8), bytes(8))  # EV_REP has no code bitmap
        assert e.value.errno == errno.EINVAL
        with pytest.raises(OSError) as e:
            fcntl.ioctl(fd, EVIOCGABS(ABS_X), bytes(24))  # a keyboard has no axes
        assert e.value.errno == errno.EINVAL
        with pytest.raises(OSError) as e:
            fcntl.ioctl(fd, EVIOCSCLOCKID, struct.pack("i", 2))  # CLOCK_PROCESS_CPUTIME_ID
        assert e.value.errno == errno.EINVAL
    finally:
        os.close(fd)


def test_grab_gives_one_file_every_event(devemud, evtest, need_cuse):
    d, name, node = serve(devemud)
    other = os.open(node, os.O_RDONLY | os.O_NONBLOCK)
    try:
        grabber = evtest(node, "--grab")
        grabber.wait_for(r"^Testing \.\.\.")
        d.inject(name, "tap", "KEY_A")
        grabber.wait_for(r"code 30 \(KEY_A\), value 0")
        assert drain(other) == []
        with pytest.raises(OSError) as e:
            fcntl.ioctl(other, EVIOCGRAB, 1)
        assert e.value.errno == errno.EBUSY
        # A second evtest says the device is grabbed: it prints "Testing ..." and only then tries EVIOCGRAB.
        second = evtest(node)
        out = second.wait_for(r"^Testing \.\.\.[\s\S]*This device is grabbed by another process\.")
        assert out.count("This device is grabbed by another process.") == 1, out
        grabber.stop()
        d.inject(name, "tap", "KEY_B")
        assert wait_readable(other, 10)
        time.sleep(0.2)
        assert drain(other) == tap(KEY_B, 0x30)
        # Python grabs with the value itself as argument.
        assert fcntl.ioctl(other, EVIOCGRAB, 1) == 0
        assert fcntl.ioctl(other, EVIOCGRAB, 0) == 0
    finally:
        os.close(other)


def test_clock_id_switches_the_timestamps(devemud):
    d, name, node = serve(devemud)
    fd = os.open(node, os.O_RDONLY | os.O_NONBLOCK)
    try:
        fcntl.ioctl(fd, EVIOCSCLOCKID, struct.pack("i", time.CLOCK_MONOTONIC))
        d.inject(name, "tap", "KEY_A")
        assert wait_readable(fd, 10)
        now = time.clock_gettime(time.CLOCK_MONOTONIC)
        evs, stamps = read_events(fd)
        assert evs[:3] == tap(KEY_A, 0x1e)[:3]
        assert abs(stamps[0] - now) < 5, (stamps[0], now)
    finally:
        os.close(fd)


def test_each_files_queue_is_read_in_the_kernel_on_the_shim(devemud, transport):
    """On the kernel shim every open file's events wait in a receive FIFO of its own in the window:
    reads, poll and a blocked reader's wake-up happen in the kernel, each file keeps its own queue
    (a reader that falls behind overflows alone, with SYN_DROPPED), and an ioctl that flushes the
    queue (EVIOCGKEY) still drops the events waiting in the FIFO."""
    d, name, node = serve(devemud, "queue=8,scan=off,repeat=off")
    syn = (EV_SYN, SYN_REPORT, 0)

    def tapped(key):
        return [(EV_KEY, key, 1), syn, (EV_KEY, key, 0), syn]

    fast = os.open(node, os.O_RDONLY | os.O_NONBLOCK)
    slow = os.open(node, os.O_RDONLY | os.O_NONBLOCK)
    blocking = os.open(node, os.O_RDONLY)
    try:
        got = []
        reader = threading.Thread(target=lambda: got.append(read_events(blocking, EVENT.size * 4)[0]), daemon=True)
        reader.start()
        time.sleep(0.3)
        for key, code in (("KEY_A", KEY_A), ("KEY_B", KEY_B), ("KEY_C", KEY_C)):
            d.inject(name, "tap", key)
            assert wait_readable(fast, 10)
            time.sleep(0.05)
            assert drain(fast) == tapped(code)
        reader.join(timeout=20)
        assert got == [tapped(KEY_A)]
        # 12 events for a queue of 8: the slow file lost A and B behind SYN_DROPPED, the fast one nothing.
        assert wait_readable(slow, 10)
        assert drain(slow) == [(EV_SYN, SYN_DROPPED, 0), syn] + tapped(KEY_C)
        ops = d.stats(name)["operations"]["read"]
        if transport == "kshim":
            assert ops["in_kernel"] == ops["requests"] > 0, ops
        else:
            assert ops["in_kernel"] == 0, ops
        # A held key's events wait in the FIFO; EVIOCGKEY shows the key and drops them (the report stays).
        d.inject(name, "key", "KEY_A", "1")
        d.inject(name, "syn")
        assert wait_readable(fast, 10)
        assert KEY_A in bits(fcntl.ioctl(fast, EVIOCGKEY(96), bytes(96)))
        assert drain(fast) == [syn]
        assert drain(slow) == [(EV_KEY, KEY_A, 1), syn]
    finally:
        os.close(fast)
        os.close(slow)
        os.close(blocking)
