# SPDX-License-Identifier: MIT
# 32-bit callers: evdev and i2c-dev structures that hold pointers or longs, from a 64-bit and a 32-bit abi_client.
"""
The same C client (abi_client.c) built for 64 bits and, with gcc-multilib, for 32 bits (a compat task on
this kernel). A 32-bit program's struct input_event is 16 bytes, its struct ff_effect 44, its i2c_msg 12
and its unsigned long 4: the models decode the caller's layout (DEVEMU_SQE_F_COMPAT, set by the kernel
shim from in_compat_syscall() and by the CUSE and FUSE transports from FUSE_IOCTL_COMPAT), so both
builds must see what the kernel's own evdev and i2c-dev drivers would give them.
"""

import re
from pathlib import Path

import pytest

from devemu_testlib import run, unique

from test_i2c import serve as serve_i2c


def client_path(opts, bits):
    name = "abi_client" if bits == 64 else "abi_client32"
    path = Path(opts.build_dir) / "tests" / "devices" / name
    if not path.exists():
        pytest.skip(f"{path} not built" + (" (install gcc-multilib for -m32)" if bits == 32 else ""))
    if bits == 32 and not _kernel_runs(path):
        pytest.skip("this kernel does not run 32-bit programs (IA32 emulation off, e.g. ia32_emulation=0): "
                    "the VM suites run the 32-bit client on Debian's kernel")
    return str(path)


def _kernel_runs(path):
    """Whether this kernel executes the program at all (ENOEXEC: not a format it runs)."""
    import errno
    import subprocess
    try:
        subprocess.run([str(path)], capture_output=True, timeout=30)
    except OSError as e:
        if e.errno == errno.ENOEXEC:
            return False
        raise
    return True


def client(opts, bits, *args):
    """Runs abi_client; its "key=value" lines as a dict (an "eventN" line keeps the whole value)."""
    r = run([client_path(opts, bits), *args], timeout=60)
    assert r.returncode == 0, f"abi_client{'' if bits == 64 else '32'} {' '.join(args)}: {r.returncode}\n{r.stdout}{r.stderr}"
    out = {}
    for line in r.stdout.splitlines():
        key, _, value = line.partition("=")
        if key.startswith("event"):
            out[key] = value
        else:
            out.update(word.split("=", 1) for word in line.split())
    return out


@pytest.mark.parametrize("bits", [64, 32])
def test_evdev_events_and_ff_effect_in_the_callers_layout(devemud, opts, transport, bits):
    name = unique("evdev")
    d = devemud((name, "evdev"))
    r = client(opts, bits, "evdev", d.node(name))
    size = 24 if bits == 64 else 16
    assert r["sizeof_input_event"] == str(size)
    assert r["EVIOCGVERSION"] == "ok" and r["version"] == "0x10001"
    assert r["write"] == str(2 * size)
    if transport == "kshim":  # answered in the kernel from the file's shadow, in the caller's units
        assert r["FIONREAD"] == "ok" and r["readable"] == str(2 * size)
    elif transport == "cuse":  # evdev has no FIONREAD: the model answers EINVAL, as the kernel's evdev does
        assert r["FIONREAD"] == "EINVAL"
    assert r["read"] == str(2 * size)
    assert r["event0"] == "1 30 1 age_ok=1 usec_ok=1"
    assert r["event1"] == "0 0 0 age_ok=1 usec_ok=1"
    assert r["short_read"] == "EINVAL"  # less than one event of the caller's size
    assert r["sizeof_ff_effect"] == ("48" if bits == 64 else "44")
    # The right size reached a device without EV_FF: ENOSYS, which the kernel's fuse turns into ENOTTY for
    # every ioctl (fuse_send_ioctl() in fs/fuse/ioctl.c) on CUSE and FUSE nodes.
    assert r["EVIOCSFF"] == ("ENOSYS" if transport == "kshim" else "ENOTTY")
    assert r["EVIOCSFF_other_size"] == "EFAULT"  # as evdev answers a size it cannot copy
    assert r["release"] == str(2 * size)


@pytest.mark.parametrize("bits", [64, 32])
def test_i2c_funcs_smbus_and_rdwr_in_the_callers_layout(devemud, opts, need_cuse, bits):
    d, bus, name, node = serve_i2c(devemud)
    r = client(opts, bits, "i2c", node)
    assert r["sizeof_long"] == ("8" if bits == 64 else "4")
    assert r["sizeof_i2c_msg"] == ("16" if bits == 64 else "12")
    assert r["I2C_FUNCS"] == "ok" and r["funcs_i2c"] == "1"
    assert r["guard"] == "0xa5a5a5a5", "I2C_FUNCS wrote past the caller's unsigned long"
    assert r["I2C_SLAVE"] == "ok"
    assert r["SMBUS_WRITE_BYTE_DATA"] == "ok" and r["SMBUS_READ_BYTE_DATA"] == "ok"
    assert r["smbus_byte"] == "0x5a"
    assert r["I2C_RDWR"] == "2" and r["rdwr_bytes"] == "5ac3"
    # The model's own view agrees: the bytes landed in the EEPROM at 0x10.
    dump = d.inject(name, "eeprom", "0x50", "dump")
    assert re.search(r"^10: 5a c3 ", dump, re.M), dump


KEYBOARD_EVENTS = """# EVEMU 1.3
N: devemu compat kbd
I: 0003 1234 5678 0111
P: 00 00 00 00 00 00 00 00
B: 00 13 00 00 00 00 00 00 00
B: 01 00 00 00 40 00 00 00 00
A: 00 0 1023 0 0 12
E: 1700000000.250000 0001 001e 0001
E: 1700000000.250000 0000 0000 0000
E: 1700000000.300000 0001 001e 0000
E: 1700000000.300000 0000 0000 0000
"""


@pytest.mark.parametrize("bits", [64, 32])
def test_an_evemu_replay_is_read_in_the_callers_layout(devemud, opts, tmp_path, bits):
    """The replay model serves evemu's events as 24-byte input_events to a 64-bit program and as 16-byte ones to
    a 32-bit program, with the recorded time stamps, as the kernel's evdev does for the two."""
    recording = tmp_path / "kbd.events"
    recording.write_text(KEYBOARD_EVENTS)
    name = unique("kbd")
    d = devemud((name, f"replay,evemu={recording},speed=0"))
    r = run([client_path(opts, bits), "events", d.node(name), "4"], timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"sizeof_input_event={24 if bits == 64 else 16}\n" in r.stdout
    assert r.stdout.splitlines()[2:] == ["event0=1 30 1 time=1700000000.250000", "event1=0 0 0 time=1700000000.250000",
                                         "event2=1 30 0 time=1700000000.300000", "event3=0 0 0 time=1700000000.300000"]
