# SPDX-License-Identifier: MIT
# The rtc model against real clients: hwclock (util-linux) in both of its waiting modes, and the <linux/rtc.h> ABI from Python.

import datetime
import errno
import fcntl
import os
import re
import select
import struct
import subprocess
import time

import pytest

from devemu_testlib import run, unique
from devemu_testlib.abi import IO, IOR, IOW

# <linux/rtc.h>, x86-64 layout.
RTC_TIME = struct.Struct("9i")  # sec min hour mday mon year wday yday isdst
RTC_WKALRM = struct.Struct("BB2x9i")  # enabled pending, time
RTC_IRQF, RTC_PF, RTC_AF, RTC_UF = 0x80, 0x40, 0x20, 0x10


RTC_AIE_ON, RTC_AIE_OFF, RTC_UIE_ON, RTC_UIE_OFF, RTC_PIE_ON, RTC_PIE_OFF = (IO("p", n) for n in range(1, 7))
RTC_ALM_SET = IOW("p", 0x07, RTC_TIME.size)
RTC_ALM_READ = IOR("p", 0x08, RTC_TIME.size)
RTC_RD_TIME = IOR("p", 0x09, RTC_TIME.size)
RTC_SET_TIME = IOW("p", 0x0a, RTC_TIME.size)
RTC_IRQP_READ = IOR("p", 0x0b, 8)
RTC_IRQP_SET = IOW("p", 0x0c, 8)
RTC_WKALM_SET = IOW("p", 0x0f, RTC_WKALRM.size)
RTC_WKALM_RD = IOR("p", 0x10, RTC_WKALRM.size)

HWCLOCK_TIME = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+[+-]\d\d:\d\d)")


def serve(devemud, spec="rtc"):
    name = unique("rtc")
    d = devemud((name, spec))
    return d, d.node(name), name


def hwclock(node, *args, timeout=90):
    """hwclock on node, UTC, without touching /etc/adjtime."""
    return run(["hwclock", "--rtc", node, "--utc", "--noadjfile", *args], timeout=timeout)


def hwclock_show(node, *args):
    """(time hwclock printed as a datetime, its stdout) for hwclock --show."""
    r = hwclock(node, "--show", *args)
    assert r.returncode == 0, f"hwclock --show failed ({r.returncode}):\n{r.stdout}{r.stderr}"
    m = HWCLOCK_TIME.findall(r.stdout)
    assert m, f"no time in hwclock's output:\n{r.stdout}"
    return datetime.datetime.fromisoformat(m[-1]), r.stdout


def rd_time(fd):
    f = RTC_TIME.unpack(fcntl.ioctl(fd, RTC_RD_TIME, bytes(RTC_TIME.size)))
    return datetime.datetime(f[5] + 1900, f[4] + 1, f[3], f[2], f[1], f[0], tzinfo=datetime.timezone.utc)


def tm(dt, wday=0, yday=0):
    return RTC_TIME.pack(dt.second, dt.minute, dt.hour, dt.day, dt.month - 1, dt.year - 1900, wday, yday, 0)


def ioctl_errno(fd, request, arg):
    with pytest.raises(OSError) as e:
        fcntl.ioctl(fd, request, arg)
    return e.value.errno


def wait_readable(fd, seconds):
    p = select.poll()
    p.register(fd, select.POLLIN)
    return p.poll(seconds * 1000)


def irq(data):
    """(count, kinds) of an rtc read."""
    value = struct.unpack("<Q" if len(data) == 8 else "<I", data)[0]
    return value >> 8, value & 0xff


# ---------------------------------------------------------------------------------------------
# hwclock
# ---------------------------------------------------------------------------------------------

def test_hwclock_show_follows_the_host_clock_waiting_for_the_update_interrupt(devemud):
    d, node, name = serve(devemud)
    before = time.time()
    shown, out = hwclock_show(node, "--verbose")
    after = time.time()
    # It waited for the tick with RTC_UIE_ON and select(), not with the busy loop.
    assert "...got clock tick" in out
    assert "Waiting in loop" not in out
    # hwclock prints the RTC's time as of its own start.
    assert before - 1.0 <= shown.timestamp() <= after + 1.0, (before, shown, after)


def test_hwclock_busy_waits_on_rtc_rd_time_when_update_interrupts_are_missing(devemud):
    d, node, name = serve(devemud, "rtc,uie=off")
    before = time.time()
    shown, out = hwclock_show(node, "--verbose")
    after = time.time()
    assert "RTC_UIE_ON, 0): Invalid argument" in out
    assert f"Waiting in loop for time from {node} to change" in out
    assert "Timed out" not in out
    assert before - 1.0 <= shown.timestamp() <= after + 1.0, (before, shown, after)


def test_hwclock_set_then_show_and_the_state_file_keeps_it(devemud):
    state = f"/tmp/devemu-rtc-state-{os.getpid()}-{time.monotonic_ns()}"
    try:
        d, node, name = serve(devemud, f"rtc,state={state}")
        target = datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
        # hwclock --set counts the given date from its own start, so the clock may run ahead of
        # the target by as long as hwclock took: measure from before it runs.
        set_at = time.monotonic()
        r = hwclock(node, "--set", "--date", "2030-01-02 03:04:05")
        assert r.returncode == 0, r.stdout + r.stderr
        shown, _ = hwclock_show(node)
        elapsed = time.monotonic() - set_at
        assert -1.0 <= (shown - target).total_seconds() <= elapsed + 1.5, (shown, elapsed)
        assert d.inject(name, "status").startswith("time=2030-01-02 03:04:")
        d.stop()

        # A new daemon on the same state file still runs in 2030.
        d2, node2, name2 = serve(devemud, f"rtc,state={state}")
        shown2, _ = hwclock_show(node2)
        elapsed = time.monotonic() - set_at
        assert -1.0 <= (shown2 - target).total_seconds() <= elapsed + 1.5, (shown2, elapsed)
    finally:
        for p in (state, state + ".tmp"):
            if os.path.exists(p):
                os.unlink(p)


def test_hwclock_systohc_brings_it_back_to_the_system_time(devemud):
    d, node, name = serve(devemud)
    assert hwclock(node, "--set", "--date", "2030-01-02 03:04:05").returncode == 0
    assert hwclock_show(node)[0].year == 2030
    r = hwclock(node, "--systohc")
    assert r.returncode == 0, r.stdout + r.stderr
    before = time.time()
    shown, _ = hwclock_show(node)
    after = time.time()
    assert before - 1.0 <= shown.timestamp() <= after + 1.0, (before, shown, after)


# ---------------------------------------------------------------------------------------------
# The ABI from Python
# ---------------------------------------------------------------------------------------------

def test_update_interrupts_through_read_and_poll(devemud):
    d, node, name = serve(devemud)
    fd = os.open(node, os.O_RDONLY | os.O_NONBLOCK)
    try:
        with pytest.raises(BlockingIOError):
            os.read(fd, 8)
        assert wait_readable(fd, 0.2) == []
        fcntl.ioctl(fd, RTC_UIE_ON, 0)
        assert wait_readable(fd, 5), "no update interrupt within 5 s"
        # One tick since UIE_ON: the count of interrupts since the last read is 1.
        assert irq(os.read(fd, 8)) == (1, RTC_IRQF | RTC_UF)
        # The read consumed it; a blocking read waits for the next second.
        fcntl.fcntl(fd, fcntl.F_SETFL, 0)
        start = time.monotonic()
        assert irq(os.read(fd, 4)) == (1, RTC_IRQF | RTC_UF)
        assert time.monotonic() - start <= 2.5
        # Sizes other than an int or a long are refused.
        for n in (1, 2, 5):
            with pytest.raises(OSError) as e:
                os.read(fd, n)
            assert e.value.errno == errno.EINVAL
        fcntl.ioctl(fd, RTC_UIE_OFF, 0)
    finally:
        os.close(fd)


def test_periodic_interrupts_at_the_rate_set(devemud, need_cuse):
    d, node, name = serve(devemud)
    fd = os.open(node, os.O_RDONLY)
    try:
        assert struct.unpack("L", fcntl.ioctl(fd, RTC_IRQP_READ, bytes(8)))[0] == 1024
        for bad in (0, 3, 100, 16384):
            assert ioctl_errno(fd, RTC_IRQP_SET, bad) == errno.EINVAL
        fcntl.ioctl(fd, RTC_IRQP_SET, 64)
        assert struct.unpack("L", fcntl.ioctl(fd, RTC_IRQP_READ, bytes(8)))[0] == 64
        fcntl.ioctl(fd, RTC_PIE_ON, 0)
        start = time.monotonic()
        time.sleep(0.5)
        count, kinds = irq(os.read(fd, 8))
        elapsed = time.monotonic() - start
        assert kinds == RTC_IRQF | RTC_PF
        assert 0.5 * 64 * 0.8 <= count <= elapsed * 64 + 2, (count, elapsed)
        fcntl.ioctl(fd, RTC_PIE_OFF, 0)
    finally:
        os.close(fd)


def test_alarm_interrupt_and_wake_alarm_readback(devemud):
    d, node, name = serve(devemud)
    fd = os.open(node, os.O_RDONLY)
    try:
        now = rd_time(fd)
        at = now + datetime.timedelta(seconds=2)
        fcntl.ioctl(fd, RTC_WKALM_SET, RTC_WKALRM.pack(1, 0, *RTC_TIME.unpack(tm(at))))
        wk = RTC_WKALRM.unpack(fcntl.ioctl(fd, RTC_WKALM_RD, bytes(RTC_WKALRM.size)))
        assert wk[0] == 1 and wk[2:5] == (at.second, at.minute, at.hour)
        assert wait_readable(fd, 8), "the alarm did not ring"
        count, kinds = irq(os.read(fd, 8))
        assert (count, kinds) == (1, RTC_IRQF | RTC_AF)
        assert rd_time(fd) >= at
        # One-shot: it is disabled once it rang.
        assert RTC_WKALRM.unpack(fcntl.ioctl(fd, RTC_WKALM_RD, bytes(RTC_WKALRM.size)))[0] == 0
        # RTC_ALM_SET takes a time of day within the next 24 hours; RTC_ALM_READ gives it back.
        past = now - datetime.timedelta(hours=1)
        fcntl.ioctl(fd, RTC_ALM_SET, tm(past))
        alm = RTC_TIME.unpack(fcntl.ioctl(fd, RTC_ALM_READ, bytes(RTC_TIME.size)))
        tomorrow = (past + datetime.timedelta(days=1)).date()
        assert (alm[5] + 1900, alm[4] + 1, alm[3]) == (tomorrow.year, tomorrow.month, tomorrow.day)
        assert alm[2] == past.hour
    finally:
        os.close(fd)


def test_bad_values_get_the_kernels_errnos(devemud):
    d, node, name = serve(devemud)
    fd = os.open(node, os.O_RDONLY)
    try:
        good = datetime.datetime(2031, 5, 6, 7, 8, 9)
        bad_month = RTC_TIME.pack(9, 8, 7, 6, 12, 131, 0, 0, 0)  # tm_mon 12
        assert ioctl_errno(fd, RTC_SET_TIME, bad_month) == errno.EINVAL
        assert ioctl_errno(fd, RTC_SET_TIME, RTC_TIME.pack(0, 0, 0, 30, 1, 131, 0, 0, 0)) == errno.EINVAL
        assert ioctl_errno(fd, RTC_SET_TIME, RTC_TIME.pack(0, 0, 24, 1, 0, 131, 0, 0, 0)) == errno.EINVAL
        assert ioctl_errno(fd, RTC_WKALM_SET, RTC_WKALRM.pack(1, 0, 0, 60, 0, 1, 0, 131, 0, 0, 0)) == errno.EINVAL
        # A bad pointer is EFAULT; an ioctl rtc-cmos does not know is ENOTTY; there is no write().
        assert ioctl_errno(fd, RTC_RD_TIME, 16) == errno.EFAULT
        assert ioctl_errno(fd, IOR("p", 0x0d, 8), bytes(8)) == errno.ENOTTY  # RTC_EPOCH_READ
        assert ioctl_errno(fd, IOR("p", 0x09, 4), bytes(4)) == errno.ENOTTY  # RTC_RD_TIME, wrong size
        # Nothing was changed by the refused calls; a valid one works.
        assert abs((rd_time(fd) - datetime.datetime.now(datetime.timezone.utc)).total_seconds()) < 3
        fcntl.ioctl(fd, RTC_SET_TIME, tm(good))
        assert rd_time(fd).year == 2031
    finally:
        os.close(fd)
    fdw = os.open(node, os.O_WRONLY)
    try:
        with pytest.raises(OSError) as e:
            os.write(fdw, b"x")
        assert e.value.errno == errno.EINVAL
    finally:
        os.close(fdw)


# Run with an inherited rtc descriptor: RTC_SET_TIME on it, then the caller's CapEff (to show what it held).
_SET_TIME_CHILD = """
import errno, fcntl, sys
fd, request, arg = int(sys.argv[1]), int(sys.argv[2]), bytes.fromhex(sys.argv[3])
try:
    fcntl.ioctl(fd, request, arg)
    result = "ok"
except OSError as e:
    result = errno.errorcode[e.errno]
cap_eff = [line.split()[1] for line in open("/proc/self/status") if line.startswith("CapEff:")][0]
print(result, cap_eff)
"""
CAP_SYS_TIME = 25


def _set_time_as_child(fd, when, *setpriv):
    """(result, CapEff) of RTC_SET_TIME by a child (under setpriv with these options) on descriptor fd."""
    argv = ["setpriv", *setpriv, "/usr/bin/python3", "-c", _SET_TIME_CHILD, str(fd), str(RTC_SET_TIME), when.hex()]
    r = subprocess.run(argv, pass_fds=(fd,), capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    result, cap_eff = r.stdout.split()
    return result, int(cap_eff, 16)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the file is opened with CAP_SYS_TIME, then passed on")
def test_setting_the_time_takes_the_callers_cap_sys_time_not_the_openers(devemud):
    """rtc_dev_ioctl asks capable(CAP_SYS_TIME) of the task calling RTC_SET_TIME: root's descriptor in
    a child that dropped the capability cannot set the clock (EACCES), the same descriptor in a
    child that kept it can (the kernel shim reports the caller's capabilities with each request;
    CUSE and FUSE read them from /proc)."""
    d, node, name = serve(devemud)
    fd = os.open(node, os.O_RDONLY)
    try:
        before = rd_time(fd)
        result, caps = _set_time_as_child(fd, tm(datetime.datetime(2033, 3, 4, 5, 6, 7)), "--bounding-set=-sys_time")
        assert not caps >> CAP_SYS_TIME & 1, f"setpriv left CAP_SYS_TIME in the child ({caps:#x})"
        assert result == "EACCES"
        after = rd_time(fd)  # the child takes seconds to start under emulation: only a set would jump years
        assert after.year == before.year and 0 <= (after - before).total_seconds() < 60, \
            f"a refused RTC_SET_TIME changed the time: {before} -> {after}"
        result, caps = _set_time_as_child(fd, tm(datetime.datetime(2033, 3, 4, 5, 6, 7)), "--bounding-set=+all")
        assert caps >> CAP_SYS_TIME & 1 and result == "ok"
        assert rd_time(fd).year == 2033
    finally:
        os.close(fd)


def test_one_opener_at_a_time(devemud):
    d, node, name = serve(devemud)
    fd = os.open(node, os.O_RDONLY)
    try:
        with pytest.raises(OSError) as e:
            os.open(node, os.O_RDONLY)
        assert e.value.errno == errno.EBUSY
        # hwclock cannot use it either (as with a busy /dev/rtc0).
        r = hwclock(node, "--show")
        assert r.returncode != 0 and "Cannot access the Hardware Clock" in r.stderr
    finally:
        os.close(fd)
    os.close(os.open(node, os.O_RDONLY))
