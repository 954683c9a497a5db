# SPDX-License-Identifier: MIT
# The watchdog model against real clients: wdctl (util-linux), a keepalive loop, expiry with a short timeout, the ABI from Python.

import errno
import fcntl
import os
import re
import struct
import time

import pytest

from devemu_testlib import run, unique
from devemu_testlib.abi import IOR, IOWR

WDIOF_OVERHEAT, WDIOF_FANFAULT, WDIOF_EXTERN1, WDIOF_EXTERN2 = 0x0001, 0x0002, 0x0004, 0x0008
WDIOF_POWERUNDER, WDIOF_CARDRESET, WDIOF_POWEROVER, WDIOF_SETTIMEOUT = 0x0010, 0x0020, 0x0040, 0x0080
WDIOF_MAGICCLOSE, WDIOF_PRETIMEOUT, WDIOF_KEEPALIVEPING = 0x0100, 0x0200, 0x8000
WDIOS_DISABLECARD, WDIOS_ENABLECARD = 0x0001, 0x0002
WATCHDOG_INFO = struct.Struct("II32s")


WDIOC_GETSUPPORT = IOR("W", 0, WATCHDOG_INFO.size)
WDIOC_GETSTATUS = IOR("W", 1, 4)
WDIOC_GETBOOTSTATUS = IOR("W", 2, 4)
WDIOC_GETTEMP = IOR("W", 3, 4)
WDIOC_SETOPTIONS = IOR("W", 4, 4)
WDIOC_KEEPALIVE = IOR("W", 5, 4)
WDIOC_SETTIMEOUT = IOWR("W", 6, 4)
WDIOC_GETTIMEOUT = IOR("W", 7, 4)
WDIOC_SETPRETIMEOUT = IOWR("W", 8, 4)
WDIOC_GETPRETIMEOUT = IOR("W", 9, 4)
WDIOC_GETTIMELEFT = IOR("W", 10, 4)


def serve(devemud, spec="watchdog,timeout=2"):
    name = unique("wdt")
    d = devemud((name, spec))
    return d, d.node(name), name


def status(d, name):
    """devemuctl inject NAME status, as a dict."""
    text = d.inject(name, "status")
    return dict(kv.split("=", 1) for kv in text.split())


def get_int(fd, request):
    return struct.unpack("i", fcntl.ioctl(fd, request, bytes(4)))[0]


def set_int(fd, request, value):
    return struct.unpack("i", fcntl.ioctl(fd, request, struct.pack("i", value)))[0]


def ioctl_errno(fd, request, arg):
    with pytest.raises(OSError) as e:
        fcntl.ioctl(fd, request, arg)
    return e.value.errno


def wdctl(node, *args):
    r = run(["wdctl", *args, node], timeout=60)
    assert r.returncode == 0, f"wdctl failed ({r.returncode}):\n{r.stdout}{r.stderr}"
    return r.stdout


def flag_table(out):
    """wdctl's flags table: {FLAG: (status, boot status)}."""
    flags = {}
    for line in out.splitlines():
        m = re.match(r"^([A-Z0-9]+)\s+.*\s([01])\s+([01])\s*$", line)
        if m:
            flags[m.group(1)] = (int(m.group(2)), int(m.group(3)))
    return flags


def wait_for(predicate, seconds, step=0.1):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def test_wdctl_shows_identity_timeouts_and_flags_then_disarms(devemud):
    d, node, name = serve(devemud, "watchdog,timeout=2,pretimeout=1")
    out = wdctl(node)
    assert re.search(rf"^Device:\s+{re.escape(node)}$", out, re.M), out
    assert re.search(r"^Identity:\s+devemu watchdog \[version 0\]$", out, re.M), out
    assert re.search(r"^Timeout:\s+2 seconds$", out, re.M), out
    assert re.search(r"^Pre-timeout:\s+1 second$", out, re.M), out
    left = int(re.search(r"^Timeleft:\s+(\d+) second", out, re.M).group(1))
    assert 0 <= left <= 2
    flags = flag_table(out)
    assert set(flags) == {"CARDRESET", "KEEPALIVEPING", "MAGICCLOSE", "PRETIMEOUT", "SETTIMEOUT"}, out
    assert flags["CARDRESET"] == (0, 0)
    # wdctl closes with the magic 'V': the watchdog is stopped and does not expire.
    assert status(d, name)["state"] == "stopped"
    time.sleep(3)
    assert status(d, name)["expiries"] == "0"
    # --settimeout goes through WDIOC_SETTIMEOUT.
    assert "Timeout has been set to 7 seconds." in wdctl(node, "--settimeout", "7")
    assert re.search(r"^Timeout:\s+7 seconds$", wdctl(node), re.M)


def test_keepalive_loop_keeps_it_alive_and_the_magic_close_stops_it(devemud):
    d, node, name = serve(devemud)
    fd = os.open(node, os.O_WRONLY)
    try:
        assert status(d, name)["state"] == "running"
        end = time.monotonic() + 5  # 2.5 timeouts
        while time.monotonic() < end:
            os.write(fd, b"\0")
            time.sleep(0.3)
        fcntl.ioctl(fd, WDIOC_KEEPALIVE, bytes(4))
        assert status(d, name)["expiries"] == "0"
        assert get_int(fd, WDIOC_GETTIMELEFT) >= 1
        os.write(fd, b"V")
    finally:
        os.close(fd)
    assert status(d, name)["state"] == "stopped"
    time.sleep(3)
    s = status(d, name)
    assert (s["expiries"], s["bootstatus"]) == ("0", "0x0")


def test_expiry_when_the_pings_stop_sets_the_boot_status_and_runs_the_command(devemud, tmp_path):
    marker = tmp_path / "expired"
    spec = f"watchdog,timeout=2,on_expiry=echo $DEVEMU_DEVICE $DEVEMU_EXPIRIES > {marker}"
    d, node, name = serve(devemud, spec)
    fd = os.open(node, os.O_WRONLY)
    os.write(fd, b"ping")
    os.close(fd)  # no magic close: it keeps running
    closed = time.monotonic()
    assert status(d, name)["state"] == "running"
    assert wait_for(lambda: status(d, name)["expiries"] == "1", 10), status(d, name)
    took = time.monotonic() - closed
    assert 1.0 <= took <= 6.0, took
    s = status(d, name)
    assert s["state"] == "stopped" and s["bootstatus"] == hex(WDIOF_CARDRESET)
    assert wait_for(marker.exists, 10), "on_expiry did not run"
    assert wait_for(lambda: marker.read_text().strip() == f"{name} 1", 5), marker.read_text()
    assert "watchdog expired" in d.log()
    # After the "reset": GETBOOTSTATUS and wdctl say the card reset the machine.
    out = wdctl(node)
    assert flag_table(out)["CARDRESET"] == (1, 1), out
    fd = os.open(node, os.O_WRONLY)
    try:
        assert get_int(fd, WDIOC_GETBOOTSTATUS) == WDIOF_CARDRESET
        os.write(fd, b"V")
    finally:
        os.close(fd)


def test_nowayout_ignores_the_magic_close(devemud, transport):
    d, node, name = serve(devemud, "watchdog,timeout=2,nowayout=1")
    fd = os.open(node, os.O_WRONLY)
    try:
        if transport != "fuse":  # see test_setoptions_stops_and_starts_the_card
            assert ioctl_errno(fd, WDIOC_SETOPTIONS, struct.pack("i", WDIOS_DISABLECARD)) == errno.EBUSY
        os.write(fd, b"V")
    finally:
        os.close(fd)
    assert status(d, name)["state"] == "running"
    assert wait_for(lambda: status(d, name)["expiries"] == "1", 10)


def test_ioctls_and_errnos_like_watchdog_dev(devemud):
    d, node, name = serve(devemud, "watchdog,timeout=30,identity=test board")
    fd = os.open(node, os.O_WRONLY)
    try:
        with pytest.raises(OSError) as e:
            os.open(node, os.O_WRONLY)
        assert e.value.errno == errno.EBUSY
        options, version, identity = WATCHDOG_INFO.unpack(fcntl.ioctl(fd, WDIOC_GETSUPPORT, bytes(WATCHDOG_INFO.size)))
        assert (identity.rstrip(b"\0"), version) == (b"test board", 0)
        # What wdctl lists (test_wdctl_shows_identity_timeouts_and_flags_then_disarms).
        assert options == WDIOF_CARDRESET | WDIOF_KEEPALIVEPING | WDIOF_MAGICCLOSE | WDIOF_PRETIMEOUT | WDIOF_SETTIMEOUT
        # The open started it, which counts as a ping; no magic close yet, no reset before.
        assert get_int(fd, WDIOC_GETSTATUS) == WDIOF_KEEPALIVEPING
        assert get_int(fd, WDIOC_GETTIMEOUT) == 30
        for bad in (0, -1, 65536):
            assert ioctl_errno(fd, WDIOC_SETTIMEOUT, struct.pack("i", bad)) == errno.EINVAL
        assert set_int(fd, WDIOC_SETTIMEOUT, 10) == 10
        assert get_int(fd, WDIOC_GETTIMEOUT) == 10
        assert ioctl_errno(fd, WDIOC_SETPRETIMEOUT, struct.pack("i", 10)) == errno.EINVAL
        set_int(fd, WDIOC_SETPRETIMEOUT, 4)
        assert get_int(fd, WDIOC_GETPRETIMEOUT) == 4
        assert 8 <= get_int(fd, WDIOC_GETTIMELEFT) <= 10
        assert ioctl_errno(fd, WDIOC_GETTIMEOUT, 16) == errno.EFAULT
        assert ioctl_errno(fd, WDIOC_GETTEMP, bytes(4)) == errno.ENOTTY
        assert ioctl_errno(fd, IOR("W", 7, 8), bytes(8)) == errno.ENOTTY  # GETTIMEOUT, wrong size
        # There is no read().
        with pytest.raises(OSError) as e:
            os.read(fd, 1)
        assert e.value.errno == errno.EBADF  # the VFS refuses it on a write-only file
        os.write(fd, b"V")
    finally:
        os.close(fd)
    assert status(d, name)["state"] == "stopped"


def test_setoptions_stops_and_starts_the_card(devemud, need_cuse):
    # WDIOC_SETOPTIONS is _IOR yet the kernel reads its argument: the FUSE fallback cannot carry it.
    d, node, name = serve(devemud, "watchdog,timeout=30")
    fd = os.open(node, os.O_RDWR)
    try:
        with pytest.raises(OSError) as e:
            os.read(fd, 1)
        assert e.value.errno == errno.EINVAL  # watchdog_fops has no read
        assert ioctl_errno(fd, WDIOC_SETOPTIONS, struct.pack("i", 0)) == errno.ENOTTY
        fcntl.ioctl(fd, WDIOC_SETOPTIONS, struct.pack("i", WDIOS_DISABLECARD))
        assert status(d, name)["state"] == "stopped"
        fcntl.ioctl(fd, WDIOC_SETOPTIONS, struct.pack("i", WDIOS_ENABLECARD))
        assert status(d, name)["state"] == "running"
        fcntl.ioctl(fd, WDIOC_SETOPTIONS, struct.pack("i", WDIOS_DISABLECARD))
    finally:
        os.close(fd)  # stopped: it closes quietly without the magic character
    assert status(d, name)["state"] == "stopped"
