# SPDX-License-Identifier: MIT
# The i2c model against real clients: i2cdetect, i2cget, i2cset, i2cdump, i2ctransfer (i2c-tools) and the i2c-dev ABI from Python.

import ctypes
import errno
import fcntl
import os
import re
import struct

import pytest

from devemu_testlib import run

I2C_SLAVE, I2C_SLAVE_FORCE, I2C_TENBIT, I2C_FUNCS, I2C_RDWR, I2C_PEC, I2C_SMBUS = \
    0x0703, 0x0706, 0x0704, 0x0705, 0x0707, 0x0708, 0x0720
I2C_FUNC_I2C, I2C_FUNC_SMBUS_QUICK, I2C_FUNC_SMBUS_READ_BYTE_DATA = 0x1, 0x00010000, 0x00080000
I2C_M_RD = 0x0001

_libc = ctypes.CDLL(None, use_errno=True)


class I2cMsg(ctypes.Structure):
    _fields_ = [("addr", ctypes.c_uint16), ("flags", ctypes.c_uint16), ("len", ctypes.c_uint16),
                ("buf", ctypes.c_void_p)]


class RdwrData(ctypes.Structure):
    _fields_ = [("msgs", ctypes.c_void_p), ("nmsgs", ctypes.c_uint32)]


def ioctl_ptr(fd, request, pointer):
    """ioctl(fd, request, pointer) through libc, so bad pointers reach the driver; returns (ret, errno)."""
    _libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
    ret = _libc.ioctl(fd, request, pointer)
    return ret, ctypes.get_errno() if ret < 0 else 0


def rdwr(fd, msgs):
    """I2C_RDWR with [(addr, b"write bytes") or (addr, read_length)]; returns (ret, errno, [read bytes])."""
    bufs, arr = [], (I2cMsg * max(len(msgs), 1))()
    for i, (addr, what) in enumerate(msgs):
        if isinstance(what, int):
            b = ctypes.create_string_buffer(what)
            arr[i] = I2cMsg(addr, I2C_M_RD, what, ctypes.cast(b, ctypes.c_void_p))
        else:
            b = ctypes.create_string_buffer(bytes(what), len(what))
            arr[i] = I2cMsg(addr, 0, len(what), ctypes.cast(b, ctypes.c_void_p))
        bufs.append(b)
    data = RdwrData(ctypes.cast(arr, ctypes.c_void_p), len(msgs))
    ret, err = ioctl_ptr(fd, I2C_RDWR, ctypes.addressof(data))
    reads = [b.raw for (addr, what), b in zip(msgs, bufs) if isinstance(what, int)]
    return ret, err, reads


def free_bus_number():
    """A bus number with no /dev/i2c-N yet (i2c-tools find buses by that name)."""
    base = 100 + os.getpid() % 700
    for n in range(base, base + 200):
        if not os.path.exists(f"/dev/i2c-{n}"):
            return n
    raise RuntimeError("no free /dev/i2c-N")


def serve(devemud, options=""):
    bus = free_bus_number()
    name = f"i2c-{bus}"
    d = devemud((name, "i2c" + ("," + options if options else "")))
    return d, bus, name, d.node(name)


def tool(*args, ok=True):
    r = run(list(args), timeout=60)
    if ok:
        assert r.returncode == 0, f"{' '.join(args)} failed ({r.returncode}):\n{r.stdout}{r.stderr}"
    return r


def detected(bus):
    """i2cdetect -y BUS, its grid parsed: the addresses that answered."""
    out = tool("i2cdetect", "-y", str(bus)).stdout
    found = set()
    rows = 0
    for line in out.splitlines():
        m = re.match(r"^([0-7])0:(.*)$", line)
        if not m:
            continue
        rows += 1
        cells = m.group(2)
        for col in range(16):
            cell = cells[col * 3:col * 3 + 3].strip()
            if re.fullmatch(r"[0-9a-f]{2}", cell):
                addr = int(m.group(1)) * 16 + col
                assert int(cell, 16) == addr, f"cell {cell} in row {m.group(1)}0 column {col}:\n{out}"
                found.add(addr)
            else:
                assert cell in ("", "--"), f"unexpected cell {cell!r}:\n{out}"
    assert rows == 8, out
    return found


def eeprom_from_devemuctl(d, name, addr=0x50):
    """The model's own view of the EEPROM: {offset: byte}."""
    text = d.inject(name, "eeprom", hex(addr), "dump")
    mem = {}
    for line in text.splitlines():
        m = re.match(r"^([0-9a-f]{2}):((?: [0-9a-f]{2}){16})$", line)
        if m:
            for i, b in enumerate(m.group(2).split()):
                mem[int(m.group(1), 16) + i] = int(b, 16)
    assert len(mem) == 256, text
    return mem


def test_i2cdetect_shows_exactly_the_configured_chips(devemud, need_cuse):
    d, bus, name, node = serve(devemud)
    assert detected(bus) == {0x48, 0x50}
    d2, bus2, _, _ = serve(devemud, "slaves=lm75@0x49+eeprom@0x57+eeprom@0x1a")
    assert detected(bus2) == {0x1a, 0x49, 0x57}
    d3, bus3, _, _ = serve(devemud, "slaves=none")
    assert detected(bus3) == set()


def test_i2cget_reads_the_injected_lm75_temperature(devemud, need_cuse):
    d, bus, name, node = serve(devemud)
    for celsius in (23.5, -12.5, 0.0, 99.0):
        d.inject(name, "temp", "0x48", "--", str(celsius))  # "--": -12.5 is not an option of devemuctl
        out = tool("i2cget", "-y", str(bus), "0x48", "0", "w").stdout.strip()
        assert re.fullmatch(r"0x[0-9a-f]{4}", out), out
        word = int(out, 16)
        # SMBus words are little-endian, the LM75 sends its register MSB first (lm75.c swaps too).
        reg = ((word & 0xff) << 8) | (word >> 8)
        value = (reg - 0x10000 if reg & 0x8000 else reg) / 256
        assert value == celsius, f"{out} -> {value}"
        assert reg & 0x7f == 0  # 9-bit resolution
    # The limit registers keep their reset values: Thyst 75, Tos 80 degC.
    assert tool("i2cget", "-y", str(bus), "0x48", "2", "w").stdout.strip() == "0x004b"
    assert tool("i2cget", "-y", str(bus), "0x48", "3", "w").stdout.strip() == "0x0050"


def test_i2cset_then_i2cget_on_the_eeprom(devemud, need_cuse):
    d, bus, name, node = serve(devemud)
    before = tool("i2cget", "-y", str(bus), "0x50", "0x10").stdout.strip()
    assert before == "0xff"  # erased
    tool("i2cset", "-y", str(bus), "0x50", "0x10", "0xab")
    assert tool("i2cget", "-y", str(bus), "0x50", "0x10").stdout.strip() == "0xab"
    assert tool("i2cget", "-y", str(bus), "0x50", "0x11").stdout.strip() == "0xff"
    assert eeprom_from_devemuctl(d, name)[0x10] == 0xab
    # i2cset -y ... w: a word write is two bytes in one page write.
    tool("i2cset", "-y", str(bus), "0x50", "0x20", "0x3412", "w")
    assert tool("i2cget", "-y", str(bus), "0x50", "0x20").stdout.strip() == "0x12"
    assert tool("i2cget", "-y", str(bus), "0x50", "0x21").stdout.strip() == "0x34"


def test_i2cdump_shows_the_eeprom_contents(devemud, need_cuse):
    d, bus, name, node = serve(devemud)
    written = {0x00: 0x41, 0x01: 0x42, 0x7f: 0x00, 0x80: 0x5a, 0xff: 0x01}
    for off, val in written.items():
        tool("i2cset", "-y", str(bus), "0x50", hex(off), hex(val))
    out = tool("i2cdump", "-y", str(bus), "0x50", "b").stdout
    dump = {}
    for line in out.splitlines():
        m = re.match(r"^([0-9a-f]{2}):((?: [0-9a-fX]{2}){16})", line)
        if m:
            for i, b in enumerate(m.group(2).split()):
                dump[int(m.group(1), 16) + i] = int(b, 16)
    assert len(dump) == 256, out
    assert dump == eeprom_from_devemuctl(d, name)
    for off, val in written.items():
        assert dump[off] == val
    assert sum(1 for v in dump.values() if v != 0xff) == len(written)  # the rest is erased
    assert re.search(r"^00: 41 42 ff", out, re.M) and "AB" in out  # the ASCII column


def test_i2ctransfer_writes_and_reads_with_page_wrap(devemud, need_cuse):
    d, bus, name, node = serve(devemud)
    tool("i2ctransfer", "-y", str(bus), "w3@0x50", "0x10", "0x11", "0x22")
    out = tool("i2ctransfer", "-y", str(bus), "w1@0x50", "0x10", "r4").stdout.split()
    assert [int(x, 16) for x in out] == [0x11, 0x22, 0xff, 0xff]
    # A page write past the end of its 8-byte page wraps to the page start.
    tool("i2ctransfer", "-y", str(bus), "w5@0x50", "0x06", "1", "2", "3", "4")
    out = tool("i2ctransfer", "-y", str(bus), "w1@0x50", "0x00", "r8").stdout.split()
    assert [int(x, 16) for x in out] == [3, 4, 0xff, 0xff, 0xff, 0xff, 1, 2]
    # Reads roll over at the end of the chip.
    d.inject(name, "eeprom", "0x50", "write", "0xff", "0x99")
    out = tool("i2ctransfer", "-y", str(bus), "w1@0x50", "0xff", "r2").stdout.split()
    assert [int(x, 16) for x in out] == [0x99, 3]
    # Two chips in one transfer.
    d.inject(name, "temp", "0x48", "21")
    out = tool("i2ctransfer", "-y", str(bus), "w1@0x48", "0", "r2", "w1@0x50", "0x10", "r1").stdout.split()
    assert [int(x, 16) for x in out] == [21, 0, 0x11]


def test_an_empty_address_is_nakked_with_enxio(devemud, need_cuse):
    d, bus, name, node = serve(devemud)
    r = tool("i2cget", "-y", str(bus), "0x23", "0", ok=False)
    assert r.returncode != 0 and "Read failed" in r.stderr, r.stderr
    r = tool("i2ctransfer", "-y", str(bus), "w1@0x23", "0", ok=False)
    assert r.returncode != 0 and os.strerror(errno.ENXIO) in r.stderr, r.stderr
    fd = os.open(node, os.O_RDWR)
    try:
        ret, err, _ = rdwr(fd, [(0x23, 1)])
        assert (ret, err) == (-1, errno.ENXIO)
    finally:
        os.close(fd)


def test_i2c_dev_ioctls_and_errnos_from_python(devemud, need_cuse):
    d, bus, name, node = serve(devemud)
    fd = os.open(node, os.O_RDWR)
    try:
        funcs = struct.unpack("L", fcntl.ioctl(fd, I2C_FUNCS, bytes(8)))[0]
        assert funcs & I2C_FUNC_I2C and funcs & I2C_FUNC_SMBUS_QUICK and funcs & I2C_FUNC_SMBUS_READ_BYTE_DATA
        for cmd in (I2C_SLAVE, I2C_SLAVE_FORCE):
            assert fcntl.ioctl(fd, cmd, 0x50) == 0
            with pytest.raises(OSError) as e:
                fcntl.ioctl(fd, cmd, 0x80)
            assert e.value.errno == errno.EINVAL
        fcntl.ioctl(fd, I2C_TENBIT, 1)
        assert fcntl.ioctl(fd, I2C_SLAVE, 0x3ff) == 0
        fcntl.ioctl(fd, I2C_TENBIT, 0)

        # I2C_RDWR: a page write (programmed at its STOP), then a random read; and the kernel's limits.
        assert rdwr(fd, [(0x50, b"\x30\x01\x02\x03")]) == (1, 0, [])
        assert rdwr(fd, [(0x50, b"\x30"), (0x50, 3)]) == (2, 0, [b"\x01\x02\x03"])
        # A repeated START instead of STOP abandons the page write.
        assert rdwr(fd, [(0x50, b"\x30\x07"), (0x50, b"\x30"), (0x50, 1)]) == (3, 0, [b"\x01"])
        assert rdwr(fd, [(0x50, 1)] * 43)[:2] == (-1, errno.EINVAL)
        assert rdwr(fd, [(0x50, 1)] * 42)[:2] == (42, 0)
        assert rdwr(fd, [(0x50, 8193)])[:2] == (-1, errno.EINVAL)
        assert rdwr(fd, [])[:2] == (-1, errno.EINVAL)
        # Bad pointers: the struct, the message array, a buffer.
        assert ioctl_ptr(fd, I2C_RDWR, 16) == (-1, errno.EFAULT)
        bad = RdwrData(16, 1)
        assert ioctl_ptr(fd, I2C_RDWR, ctypes.addressof(bad)) == (-1, errno.EFAULT)
        arr = (I2cMsg * 1)(I2cMsg(0x50, I2C_M_RD, 4, 16))
        data = RdwrData(ctypes.cast(arr, ctypes.c_void_p), 1)
        assert ioctl_ptr(fd, I2C_RDWR, ctypes.addressof(data)) == (-1, errno.EFAULT)
        assert ioctl_ptr(fd, I2C_SMBUS, 16) == (-1, errno.EFAULT)
        assert ioctl_ptr(fd, I2C_FUNCS, 16) == (-1, errno.EFAULT)
        # An unknown i2c-dev ioctl.
        with pytest.raises(OSError) as e:
            fcntl.ioctl(fd, 0x0709, 0)
        assert e.value.errno == errno.ENOTTY
    finally:
        os.close(fd)


def test_read_and_write_on_the_node_are_plain_i2c_messages(devemud):
    """read()/write() need only I2C_SLAVE, a value argument: this works on every transport."""
    d, bus, name, node = serve(devemud)
    fd = os.open(node, os.O_RDWR)
    try:
        with pytest.raises(OSError) as e:
            os.write(fd, b"\x00")  # address 0 before I2C_SLAVE: nobody answers
        assert e.value.errno == errno.ENXIO
        fcntl.ioctl(fd, I2C_SLAVE, 0x50)
        assert os.write(fd, b"\x40hello") == 6
        assert os.write(fd, b"\x40") == 1
        assert os.read(fd, 6) == b"hello\xff"
        assert eeprom_from_devemuctl(d, name)[0x41] == ord("e")
        fcntl.ioctl(fd, I2C_SLAVE, 0x48)
        d.inject(name, "temp", "0x48", "30.5")
        assert os.write(fd, b"\x00") == 1
        assert os.read(fd, 2) == bytes([30, 0x80])
    finally:
        os.close(fd)
