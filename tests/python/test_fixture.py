# SPDX-License-Identifier: MIT
# The devemu fixture as a test writer uses it: devices with options, inject, faults, statistics, errors.

import datetime
import errno
import os
import select
import struct
import time

import pytest

import devemu as devemu_pkg

EVENT = struct.Struct("qqHHi")  # struct input_event on 64-bit: struct timeval, type, code, value
EV_SYN, EV_KEY = 0, 1
KEY_A = 30


def test_loopback_echoes_what_is_written(devemu):
    loop = devemu.device("loopback")
    assert loop.path == f"/dev/{loop.name}"
    with open(loop.path, "r+b", buffering=0) as f:
        f.write(b"hello devemu\n")
        assert f.read(100) == b"hello devemu\n"


def test_options_reach_the_model(devemu):
    small = devemu.device("loopback", capacity=4, when_full="drop")
    fd = os.open(small, os.O_RDWR | os.O_NONBLOCK)  # a Device is a path-like object
    try:
        assert os.write(fd, b"0123456789") == 10  # when_full=drop: accepted, the excess dropped
        assert os.read(fd, 100) == b"0123"
    finally:
        os.close(fd)
    assert small.stats()["dropped"] == 6


def test_a_name_of_our_own_and_several_devices_in_one_test(devemu):
    name = f"pyzero{os.getpid()}"
    zero = devemu.device("zero", name=name)
    loop = devemu.device("loopback")
    assert zero.name == name and zero.path == f"/dev/{name}"
    with open(zero.path, "rb") as f:
        assert f.read(8) == bytes(8)
    with open(loop.path, "r+b", buffering=0) as f:
        f.write(b"x")
        assert f.read(1) == b"x"
    assert {d["name"] for d in devemu.control.list()} == {zero.name, loop.name}


def test_inject_into_a_loopback(devemu):
    loop = devemu.device("loopback")
    assert "3 bytes" in loop.inject("data", "hi\\n")
    with open(loop.path, "rb", buffering=0) as f:
        assert f.read(10) == b"hi\n"


def test_inject_a_key_tap_into_evdev(devemu):
    kbd = devemu.device("evdev", type="keyboard")
    fd = os.open(kbd.path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        kbd.inject("tap", "KEY_A")
        assert select.select([fd], [], [], 5)[0], "no event readable after inject tap"
        data = os.read(fd, EVENT.size * 16)
        events = [EVENT.unpack_from(data, i)[2:] for i in range(0, len(data), EVENT.size)]
        assert [e for e in events if e[0] == EV_KEY] == [(EV_KEY, KEY_A, 1), (EV_KEY, KEY_A, 0)]
        assert events[-1] == (EV_SYN, 0, 0)
    finally:
        os.close(fd)


def test_inject_modem_lines_into_serial(devemu):
    port = devemu.device("serial")

    def info():
        return dict(kv.split("=", 1) for kv in port.inject("info").split() if "=" in kv)

    assert info()["cts"] == "1" and info()["dcd"] == "1"
    port.inject("modem", "cts=0", "dcd=0")
    assert info()["cts"] == "0" and info()["dcd"] == "0"


def test_inject_status_of_rtc_follows_the_host_clock(devemu):
    rtc = devemu.device("rtc")
    status = rtc.inject("status")
    assert status.startswith("time=")
    shown = datetime.datetime.strptime(status[5:24], "%Y-%m-%d %H:%M:%S").replace(tzinfo=datetime.timezone.utc)
    assert abs((shown - datetime.datetime.now(datetime.timezone.utc)).total_seconds()) < 3


def test_a_read_fault_fails_reads_until_cleared(devemu):
    loop = devemu.device("loopback")
    loop.inject("data", "abc")
    fd = os.open(loop.path, os.O_RDWR | os.O_NONBLOCK)
    try:
        loop.fault("read", errno="EIO")
        for _ in range(2):
            with pytest.raises(OSError) as e:
                os.read(fd, 1)
            assert e.value.errno == errno.EIO
        loop.clear_faults()
        assert os.read(fd, 10) == b"abc"
        assert loop.stats()["faults"] == []
    finally:
        os.close(fd)


def test_a_fault_with_a_count_and_a_numeric_errno(devemu):
    loop = devemu.device("loopback")
    loop.inject("data", "abc")
    loop.fault("read", errno=errno.ENODEV, count=1)
    fd = os.open(loop.path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        with pytest.raises(OSError) as e:
            os.read(fd, 1)
        assert e.value.errno == errno.ENODEV
        assert os.read(fd, 10) == b"abc"  # the one faulty read is spent
    finally:
        os.close(fd)


def test_short_and_delay_faults(devemu):
    loop = devemu.device("loopback")
    loop.inject("data", "abcdef")
    loop.fault("read", short=2)
    fd = os.open(loop.path, os.O_RDONLY)
    try:
        assert os.read(fd, 10) == b"ab"
        loop.fault("read", delay=0.3)  # replaces the short fault
        start = time.monotonic()
        assert os.read(fd, 10) == b"cdef"
        assert time.monotonic() - start >= 0.29
    finally:
        os.close(fd)


def test_stats_count_the_reads(devemu):
    loop = devemu.device("loopback")
    with open(loop.path, "r+b", buffering=0) as f:
        f.write(b"abcdef")
        for _ in range(3):
            assert len(f.read(2)) == 2
    s = loop.stats()
    assert s["operations"]["read"]["requests"] == 3
    assert s["operations"]["read"]["errors"] == 0
    assert s["operations"]["write"]["requests"] == 1
    assert s["bytes_in"] == 6 and s["bytes_out"] == 6
    assert s["opens"] == 1 and s["open_files"] == 0


def test_a_bad_option_raises_the_daemons_message_naming_the_key(devemu):
    # The first device starts the private daemon: devemud refuses it at start.
    with pytest.raises(devemu_pkg.Error) as first:
        devemu.device("loopback", colour="red")
    assert "no option 'colour'" in first.value.message
    assert "capacity" in first.value.message  # it lists the options it has
    # Later devices are added over the control socket: the daemon refuses the request.
    devemu.device("zero")
    with pytest.raises(devemu_pkg.ControlError) as later:
        devemu.device("loopback", capacity="lots")
    assert "capacity" in later.value.message
    assert later.value.command == "add"


def test_a_fault_the_daemon_refuses(devemu):
    loop = devemu.device("loopback")
    with pytest.raises(devemu_pkg.ControlError) as e:
        loop.fault("read")
    assert e.value.message == "give exactly one of errno, delay or short"
    with pytest.raises(devemu_pkg.ControlError, match="expected a name such as EIO"):
        loop.fault("read", errno="EWHAT")


def test_an_unknown_inject_verb_raises_the_models_answer(devemu):
    loop = devemu.device("loopback")
    with pytest.raises(devemu_pkg.ControlError) as e:
        loop.inject("dance")
    assert "dance" in e.value.message


def test_python_behaviour_the_daemon_cannot_import_is_refused_clearly(devemu):
    class Modem:  # a local class: the daemon imports classes from their module's file
        pass

    with pytest.raises(TypeError, match="top level of its module"):
        devemu.device("serial", far=Modem)
    with pytest.raises(TypeError, match="top level of its module"):
        devemu.device(Modem)
    with pytest.raises(TypeError, match="not a function"):
        devemu.device("serial", far=lambda data: data)
    with pytest.raises(TypeError, match=r"slaves=\{ADDRESS: class\} of an i2c device"):
        devemu.device("i2c", slaves=Modem)
    with pytest.raises(TypeError, match="top level of its module"):
        devemu.device("i2c", slaves={0x20: Modem})
    with pytest.raises(TypeError, match="not an I2C address"):
        devemu.device("i2c", slaves={"0x20": "eeprom"})
    assert devemu.daemon is None  # nothing was started


def test_removing_a_device_during_the_test(devemu):
    loop = devemu.device("loopback")
    keep = devemu.device("zero")
    loop.remove()
    assert not os.path.lexists(loop.path)
    assert os.path.exists(keep.path)
