# SPDX-License-Identifier: MIT
# Device behaviour written in Python, as a test writer uses it: a class of this module serves a node
# (the python model), sits at the far end of a UART (serial far=) or on an I2C bus (i2c slaves=); errors, the
# examples (AT modem, GPS with gpsd, mailbox, the I2C sensor with i2c-tools).

import errno
import fcntl
import os
import select
import struct
import sys
import time

import pytest

from devemu.pytest_plugin import PythonDeviceWarning

EXAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples", "python")
sys.path.insert(0, os.path.abspath(EXAMPLES))

import mail_slot  # noqa: E402  (examples/python, put on the path above)
from at_modem import AtModem  # noqa: E402

# _IOWR('P', 1, __u64): the device doubles the number.
DOUBLE = (3 << 30) | (8 << 16) | (ord("P") << 8) | 1


class Mailbox(mail_slot.Mailbox):
    """The example's mailbox (examples/python/mail_slot.py), with a bug, a full disk and a counter."""

    def open(self, file):
        file.reads = 0  # per-open state lives on the File object

    def read(self, file, size):
        data = super().read(file, size)  # BlockingIOError on an empty slot parks the caller
        file.reads += 1
        return data

    def write(self, file, data):
        if data.startswith(b"crash"):
            raise ZeroDivisionError("the device's code has a bug")
        if data.startswith(b"full"):
            raise OSError(errno.ENOSPC, "no room")
        return super().write(file, data)

    def ioctl(self, file, cmd, call):
        if cmd != DOUBLE:
            return super().ioctl(file, cmd, call)
        (n,) = struct.unpack("Q", call.read_user(call.arg, 8))
        call.write_user(call.arg, struct.pack("Q", 2 * n))


def read_some(fd, want, timeout=5.0):
    """Reads from fd until want was seen (or timeout); returns everything read."""
    got = b""
    deadline = time.monotonic() + timeout
    while want not in got and time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if r:
            got += os.read(fd, 4096)
    return got


def test_a_class_of_the_test_module_serves_the_node(devemu):
    box = devemu.device(Mailbox)
    assert box.model == "python"
    fd = os.open(box.path, os.O_RDWR | os.O_NONBLOCK)
    try:
        with pytest.raises(BlockingIOError):
            os.read(fd, 10)
        assert select.select([fd], [], [], 0)[0] == []
        assert os.write(fd, b"hello") == 5
        assert select.select([fd], [], [], 1)[0] == [fd]
        assert os.read(fd, 10) == b"hello"
        with pytest.raises(OSError) as e:
            os.write(fd, b"full")
        assert e.value.errno == errno.ENOSPC
    finally:
        os.close(fd)


def test_a_blocked_read_is_woken_by_a_python_timer(devemu):
    box = devemu.device("python", cls=Mailbox)
    with open(box.path, "rb", buffering=0) as f:
        assert box.inject("post", "tick", "tock") == "posted"
        start = time.monotonic()
        assert f.read(100) == b"tick tock"  # parked in the core until the timer's notify()
        assert time.monotonic() - start >= 0.03


def test_an_ioctl_reads_and_writes_the_callers_memory(devemu):
    box = devemu.device(Mailbox)
    with open(box.path, "rb", buffering=0) as f:
        arg = bytearray(struct.pack("Q", 21))
        assert fcntl.ioctl(f, DOUBLE, arg, True) == 0
        assert struct.unpack("Q", arg)[0] == 42
        with pytest.raises(OSError) as e:
            fcntl.ioctl(f, DOUBLE + 1, bytearray(8), True)
        assert e.value.errno == errno.ENOTTY


def test_a_python_exception_fails_the_request_with_eio_and_logs_the_traceback(devemu):
    box = devemu.device(Mailbox)
    fd = os.open(box.path, os.O_RDWR)
    try:
        with pytest.raises(OSError) as e:
            os.write(fd, b"crash")
        assert e.value.errno == errno.EIO
        assert os.write(fd, b"next") == 4  # the daemon keeps serving, the device too
        assert os.read(fd, 10) == b"next"
    finally:
        os.close(fd)
    log = devemu.daemon.log()
    assert "Traceback (most recent call last):" in log
    assert "ZeroDivisionError: the device's code has a bug" in log
    assert 'raise ZeroDivisionError("the device\'s code has a bug")' in log
    # The fixture turns each traceback into a warning, so pytest shows it even for a passing test.
    with pytest.warns(PythonDeviceWarning, match="ZeroDivisionError"):
        devemu._warn_python_errors()


class Broken:
    def __init__(self, device):
        raise RuntimeError("cannot start")


def test_a_class_that_cannot_start_is_the_daemons_error(devemu):
    import devemu as devemu_pkg

    devemu.device("loopback")
    with pytest.raises(devemu_pkg.ControlError) as e:
        devemu.device(Broken)
    assert "RuntimeError: cannot start" in e.value.message


def test_a_daemon_without_python_devices_does_not_load_python(devemu):
    devemu.device("loopback")

    def maps():
        with open(f"/proc/{devemu.daemon.pid}/maps") as f:
            return f.read()

    assert "libpython" not in maps() and "libdevemu-python" not in maps()
    devemu.device(Mailbox)
    assert "libpython" in maps()


def test_the_at_modem_answers_over_plain_reads_and_writes(devemu):
    """Works on every transport: no termios (the tty's defaults: canonical, echo)."""
    modem = devemu.device("serial", far=AtModem)
    fd = os.open(modem.path, os.O_RDWR | os.O_NOCTTY)
    try:
        os.write(fd, b"AT\r")
        assert b"OK" in read_some(fd, b"OK")
        os.write(fd, b"ATI\r")
        assert AtModem.IDENTITY.encode() in read_some(fd, b"OK")
        os.write(fd, b"ATD5551234\r")
        assert b"CONNECT 9600" in read_some(fd, b"CONNECT")
        assert "dcd=1" in modem.inject("info").split()
        # Not online data here: with the tty's default ECHO the line discipline sends the remote's echo
        # back to it, a loop a real modem makes too (seen in the VM on CUSE); raw mode is pyserial's test.
    finally:
        os.close(fd)


def test_the_at_modem_with_pyserial(devemu):
    serial = pytest.importorskip("serial", reason="python3-serial (pyserial) is not installed")
    if devemu.transport == "fuse":
        pytest.skip("pyserial sets termios (TCGETS/TCSETS have no size encoded): it needs CUSE or the "
                    "kernel shim, the FUSE fallback answers ENOTTY")
    modem = devemu.device("serial", far=AtModem)
    with serial.Serial(str(modem.path), 115200, timeout=3) as port:
        port.write(b"ATE0\r")
        assert port.read_until(b"OK\r\n").endswith(b"OK\r\n")
        port.write(b"AT+CSQ\r")
        assert b"+CSQ: 23,99" in port.read_until(b"OK\r\n")
        assert not port.cd and port.dsr and port.cts
        port.write(b"ATD5551234\r")
        assert b"CONNECT 115200" in port.read_until(b"\r\n", 40) + port.read_until(b"\r\n")
        time.sleep(0.05)
        assert port.cd  # carrier detect rose with CONNECT
        port.write(b"hello remote")  # online, in raw mode: the remote's echo comes back once
        assert port.read(len(b"hello remote")) == b"hello remote"
        port.dtr = False  # &D2: dropping DTR hangs up
        time.sleep(0.2)
        assert not port.cd
        assert b"NO CARRIER" in port.read_until(b"NO CARRIER\r\n")


def _free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_gpsd_decodes_a_fix_from_the_gps_example(devemu, tmp_path):
    import json
    import shutil
    import subprocess

    from gps import Gps  # examples/python

    if not shutil.which("gpsd") or not shutil.which("gpspipe"):
        pytest.skip("gpsd and gpspipe are not installed (Debian: gpsd, gpsd-clients)")
    if devemu.transport == "fuse":
        pytest.skip("gpsd sets the port's speed with termios (no size encoded): it needs CUSE or the kernel "
                    "shim, the FUSE fallback answers ENOTTY")
    receiver = devemu.device("serial", far=Gps)
    port = str(_free_port())
    gpsd = subprocess.Popen(["gpsd", "-N", "-n", "-b", "-s", "9600", "-S", port, "-F", str(tmp_path / "gpsd.sock"),
                             str(receiver.path)], stderr=subprocess.PIPE)
    try:
        time.sleep(0.5)
        pipe = subprocess.run(["gpspipe", "-w", "-n", "20", f"127.0.0.1:{port}"], capture_output=True, timeout=30)
    finally:
        gpsd.terminate()
        gpsd.wait(timeout=10)
    fixes = [r for r in map(json.loads, pipe.stdout.decode().splitlines())
             if r.get("class") == "TPV" and r.get("mode", 0) >= 2]
    assert fixes, pipe.stdout.decode()
    assert abs(fixes[-1]["lat"] - Gps.LAT) < 0.01 and abs(fixes[-1]["lon"] - Gps.LON) < 0.01


def test_the_mailbox_example_by_its_spec(devemu):
    """The spec a user writes on devemud's command line: script= and class=, no fixture magic."""
    box = devemu.device("python", script=mail_slot.__file__, **{"class": "Mailbox"})
    with open(box.path, "r+b", buffering=0) as f:
        f.write(b"you have mail")
        arg = bytearray(4)
        fcntl.ioctl(f, mail_slot.MBOX_PEEK, arg, True)
        assert struct.unpack("I", arg)[0] == 13
        assert f.read(100) == b"you have mail"


class Stuck:
    """A device whose read never returns by itself (the second one does)."""

    def __init__(self, device):
        self.reads = 0

    def read(self, file, size):
        self.reads += 1
        while self.reads == 1:
            try:
                pass
            except Exception:  # a device's own broad except does not keep the interruption out
                pass
        return b"fine"


def test_a_python_method_that_never_returns_is_interrupted_and_the_daemon_serves_on(devemu):
    stuck = devemu.device(Stuck)
    other = devemu.device("loopback")
    fd = os.open(stuck.path, os.O_RDONLY)
    try:
        start = time.monotonic()
        with pytest.raises(OSError) as e:
            os.read(fd, 10)
        assert e.value.errno == errno.EIO
        assert 1.5 < time.monotonic() - start < 10  # the call's budget is 2 s
        assert os.read(fd, 10) == b"fine"
    finally:
        os.close(fd)
    with open(other.path, "r+b", buffering=0) as f:
        f.write(b"alive")
        assert f.read(5) == b"alive"
    log = devemu.daemon.log()
    assert "Stuck.read() ran longer than 2 s and was interrupted; the request fails with EIO:" in log
    assert "CallTimeout" in log
    devemu.daemon.control.list()  # the control socket answers too


class _Interrupted(Exception):
    pass


def test_a_signal_interrupts_a_read_parked_by_python_code(devemu):
    """Cancellation stays in the core: the Python class never hears of it."""
    import signal

    box = devemu.device(Mailbox)
    fd = os.open(box.path, os.O_RDWR)

    def interrupted(signum, frame):  # Python retries EINTR itself (PEP 475) unless the handler raises
        raise _Interrupted()

    old = signal.signal(signal.SIGALRM, interrupted)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        start = time.monotonic()
        with pytest.raises(_Interrupted):
            os.read(fd, 10)
        assert time.monotonic() - start < 2
        assert box.stats()["cancelled"] == 1
        assert os.write(fd, b"after") == 5  # nothing was lost, the device serves on
        assert os.read(fd, 10) == b"after"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        os.close(fd)


def test_a_device_traceback_shows_in_pytests_output_of_a_passing_test(pytestconfig, devemud_path, tmp_path):
    """End to end, as a user sees it: a test module whose device raises once; its run passes and
    prints the traceback in the warnings summary."""
    import subprocess

    (tmp_path / "test_inner.py").write_text(
        "import os, pytest\n"
        "class Flaky:\n"
        "    def __init__(self, device):\n"
        "        self.calls = 0\n"
        "    def read(self, file, size):\n"
        "        self.calls += 1\n"
        "        if self.calls == 1:\n"
        "            raise KeyError('first read goes wrong')\n"
        "        return b'ok'\n"
        "def test_it(devemu):\n"
        "    dev = devemu.device(Flaky)\n"
        "    fd = os.open(dev.path, os.O_RDONLY)\n"
        "    with pytest.raises(OSError):\n"
        "        os.read(fd, 2)\n"
        "    assert os.read(fd, 2) == b'ok'\n"
        "    os.close(fd)\n")
    package = os.path.dirname(os.path.dirname(os.path.abspath(sys.modules["devemu"].__file__)))
    from devemu.daemon import default_transport

    transport = pytestconfig.getoption("--devemu-transport") or default_transport()
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "devemu.pytest_plugin",
                          "--devemu-transport", transport, "--devemu-devemud", os.path.abspath(devemud_path),
                          "--devemu-unavailable", pytestconfig.getoption("--devemu-unavailable") or "fail", "-rs",
                          str(tmp_path)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHONPATH=package, PYTHONDONTWRITEBYTECODE="1"))
    if "1 skipped" in run.stdout:
        pytest.skip(run.stdout.strip().splitlines()[-2])
    assert "1 passed" in run.stdout, run.stdout + run.stderr
    assert "PythonDeviceWarning" in run.stdout
    assert "KeyError: 'first read goes wrong'" in run.stdout
    assert "raise KeyError('first read goes wrong')" in run.stdout


I2C_SLAVE = 0x0703


class Counter:
    """An I2C chip of this module: a write sets the count, each byte read is the next count."""

    def __init__(self, chip):
        self.chip = chip
        self.count = 0

    def write(self, byte):
        self.count = byte

    def read(self):
        self.count = (self.count + 1) & 0xFF
        return self.count


def _i2c_name():
    """A bus name with no /dev/i2c-N yet (i2c-tools find buses by that name)."""
    base = 100 + os.getpid() % 700
    return next(f"i2c-{n}" for n in range(base, base + 200) if not os.path.exists(f"/dev/i2c-{n}"))


def test_an_i2c_chip_of_the_test_module_answers_beside_the_built_in_chips(devemu):
    bus = devemu.device("i2c", name=_i2c_name(), slaves={0x21: Counter, 0x50: "eeprom"})
    fd = os.open(bus.path, os.O_RDWR)
    try:
        fcntl.ioctl(fd, I2C_SLAVE, 0x21)
        assert os.write(fd, bytes([41])) == 1
        assert os.read(fd, 3) == bytes([42, 43, 44])
        fcntl.ioctl(fd, I2C_SLAVE, 0x50)
        assert os.read(fd, 2) == b"\xff\xff"
        fcntl.ioctl(fd, I2C_SLAVE, 0x22)
        with pytest.raises(OSError) as e:
            os.read(fd, 1)
        assert e.value.errno == errno.ENXIO
    finally:
        os.close(fd)
    chips = bus.inject("slaves")
    assert f"0x21 python:{os.path.abspath(__file__)}:Counter" in chips and "0x50 eeprom" in chips


class Faulty(Counter):
    """A chip whose read() has a bug once the count passes 200."""

    def read(self):
        if self.count >= 200:
            raise ZeroDivisionError("the chip's code has a bug")
        return super().read()


def test_a_raising_i2c_chip_fails_the_transfer_with_eio_and_the_bus_goes_on(devemu):
    bus = devemu.device("i2c", name=_i2c_name(), slaves={0x21: Faulty})
    fd = os.open(bus.path, os.O_RDWR)
    try:
        fcntl.ioctl(fd, I2C_SLAVE, 0x21)
        os.write(fd, bytes([250]))
        with pytest.raises(OSError) as e:
            os.read(fd, 1)
        assert e.value.errno == errno.EIO
        os.write(fd, bytes([7]))
        assert os.read(fd, 1) == bytes([8])
    finally:
        os.close(fd)
    assert "ZeroDivisionError: the chip's code has a bug" in devemu.daemon.log()
    with pytest.warns(PythonDeviceWarning, match="ZeroDivisionError"):
        devemu._warn_python_errors()


def test_the_i2c_sensor_example_with_i2c_tools(devemu):
    import shutil
    import subprocess

    from i2c_sensor import Hts221  # examples/python

    if not shutil.which("i2cget"):
        pytest.skip("i2c-tools is not installed")
    if devemu.transport == "fuse":
        pytest.skip("i2c-tools use I2C_FUNCS and I2C_SMBUS (no size encoded): they need CUSE or the kernel "
                    "shim, the FUSE fallback answers ENOTTY")
    name = _i2c_name()
    number = name.split("-")[1]
    bus = devemu.device("i2c", name=name, slaves={0x5F: Hts221, 0x50: "eeprom"})

    def tool(*args):
        return subprocess.run(args, capture_output=True, text=True, check=True, timeout=30).stdout.strip()

    grid = tool("i2cdetect", "-y", number)
    assert " 5f" in grid and " 50 " in grid
    assert tool("i2cget", "-y", number, "0x5f", "0x0f") == "0xbc"  # WHO_AM_I
    assert tool("i2cget", "-y", number, "0x5f", "0x27") == "0x00"  # powered down: nothing converted
    tool("i2cset", "-y", number, "0x5f", "0x20", "0x80")
    time.sleep(0.2)
    assert tool("i2cget", "-y", number, "0x5f", "0x27") == "0x03"
    assert tool("i2cget", "-y", number, "0x5f", "0xaa", "w") == "0x0866"  # 21.50 degC, auto-increment
    assert tool("i2cget", "-y", number, "0x5f", "0x27") == "0x02"  # reading TEMP_OUT_H cleared T_DA
    assert "next conversion" in bus.inject("chip", "0x5f", "temp", "-5.25")
    time.sleep(0.2)
    assert tool("i2cget", "-y", number, "0x5f", "0xaa", "w") == "0xfdf3"  # -525, two's complement
    assert tool("i2cget", "-y", number, "0x5f", "0xa8", "w") == "0x1194"  # 45.00 %RH
    assert "power on" in bus.inject("chip", "0x5f")
