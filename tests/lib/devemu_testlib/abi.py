# SPDX-License-Identifier: MIT
"""The devemu ABI as the uapi header defines it, read from abi_dump (tests/lib/abi_dump.c), and the
generic Linux ioctl encoding for the kernel ABIs the device suites speak (rtc, watchdog, evdev).

    abi = load(build_dir)
    abi.DEVEMU_KSHIM_IOC_ADD, abi.DEVEMU_MAGIC          ioctl numbers and constants
    abi.struct("devemu_kshim_add").pack(name=b"x")      a struct, packed from its fields' offsets
    abi.struct("devemu_regs").offset("attach_epoch")
    abi.layout(depth, slot_size)                         the devemu_window_* offsets of a geometry
"""

import functools
import json
import os
import shutil
import struct as _struct
import subprocess
import tempfile
from collections import namedtuple
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE.parent / "abi_dump.c"
REPO = HERE.parents[2]

# --------------------------------------------------------------------------------------------
# The generic Linux _IOC encoding (asm-generic/ioctl.h: x86, arm, riscv).
# --------------------------------------------------------------------------------------------

_IOC_NRBITS, _IOC_TYPEBITS, _IOC_SIZEBITS = 8, 8, 14
_IOC_TYPESHIFT = _IOC_NRBITS
_IOC_SIZESHIFT = _IOC_TYPESHIFT + _IOC_TYPEBITS
_IOC_DIRSHIFT = _IOC_SIZESHIFT + _IOC_SIZEBITS
IOC_NONE, IOC_WRITE, IOC_READ = 0, 1, 2


def IOC(direction, typ, nr, size):
    if isinstance(typ, str):
        typ = ord(typ)
    assert 0 <= size < (1 << _IOC_SIZEBITS), size
    return (direction << _IOC_DIRSHIFT) | (size << _IOC_SIZESHIFT) | (typ << _IOC_TYPESHIFT) | nr


def IO(typ, nr):
    return IOC(IOC_NONE, typ, nr, 0)


def IOR(typ, nr, size):
    return IOC(IOC_READ, typ, nr, size)


def IOW(typ, nr, size):
    return IOC(IOC_WRITE, typ, nr, size)


def IOWR(typ, nr, size):
    return IOC(IOC_READ | IOC_WRITE, typ, nr, size)


# --------------------------------------------------------------------------------------------
# Structs from their field offsets
# --------------------------------------------------------------------------------------------

_FORMATS = {"u8": "B", "u16": "H", "u32": "I", "u64": "Q", "s32": "i", "s64": "q"}

Layout = namedtuple("Layout", "queue_depth slot_size sq_offset cq_offset data_offset window_size")


class Struct:
    """One struct of the header: its size and, per field, offset, element type and count."""

    def __init__(self, name, desc):
        self.name = name
        self.size = desc["size"]
        self.fields = desc["fields"]

    def offset(self, field):
        return self.fields[field]["offset"]

    def _format(self, field):
        f = self.fields[field]
        if f["type"] == "char":
            return f"={f['count']}s"
        return f"={f['count']}{_FORMATS[f['type']]}"

    def pack_into(self, buf, offset=0, **values):
        for field, value in values.items():
            if field not in self.fields:
                raise KeyError(f"struct {self.name} has no field {field!r}")
            f = self.fields[field]
            if f["type"] == "char":
                value = value.encode() if isinstance(value, str) else bytes(value)
                if len(value) > f["count"]:
                    raise ValueError(f"{self.name}.{field}: {len(value)} bytes for {f['count']}")
                args = (value,)
            else:
                args = tuple(value) if f["count"] > 1 else (value,)
            _struct.pack_into(self._format(field), buf, offset + f["offset"], *args)
        return buf

    def pack(self, **values):
        """The struct as a bytearray: the given fields set, everything else zero."""
        return self.pack_into(bytearray(self.size), 0, **values)

    def unpack_from(self, buf, offset=0):
        """{field: value}; arrays as tuples, char arrays as bytes."""
        out = {}
        for field, f in self.fields.items():
            v = _struct.unpack_from(self._format(field), buf, offset + f["offset"])
            out[field] = v[0] if f["type"] == "char" or f["count"] == 1 else v
        return out

    def get(self, buf, field, offset=0):
        return self.unpack_from(buf, offset)[field]


class Abi:
    def __init__(self, program, data):
        self.program = program
        self.constants = data["constants"]
        self.strings = data["strings"]
        self.ioctls = data["ioctls"]
        self._structs = {name: Struct(name, d) for name, d in data["structs"].items()}
        self.default_layout = Layout(**data["layout"])

    def __getattr__(self, name):
        for table in ("constants", "ioctls", "strings"):
            t = self.__dict__.get(table, {})
            if name in t:
                return t[name]
        raise AttributeError(f"the ABI dump has no {name}")

    def struct(self, name):
        return self._structs[name]

    def sizeof(self, name):
        return self._structs[name].size

    @functools.lru_cache(maxsize=None)
    def layout(self, depth=None, slot_size=None):
        """The window layout for a queue depth and slot size (default: the header's defaults)."""
        depth = self.DEVEMU_DEFAULT_QUEUE_DEPTH if depth is None else depth
        slot_size = self.DEVEMU_DEFAULT_SLOT_SIZE if slot_size is None else slot_size
        r = subprocess.run([self.program, "layout", str(depth), str(slot_size)], capture_output=True, text=True,
                           timeout=30, check=True)
        return Layout(**json.loads(r.stdout))


def _compile(out_dir):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise RuntimeError(f"abi_dump is not built and there is no C compiler to build {SOURCE}")
    out = Path(out_dir) / "abi_dump"
    subprocess.run([cc, "-std=gnu11", "-O0", "-I", str(REPO / "core" / "include"), "-I", str(REPO / "tests" / "kshim"),
                    "-o", str(out), str(SOURCE)], check=True, capture_output=True, timeout=120)
    return out


@functools.lru_cache(maxsize=None)
def load(build_dir):
    """The ABI from BUILD/tests/lib/abi_dump (built by meson), else from abi_dump compiled here."""
    program = Path(build_dir) / "tests" / "lib" / "abi_dump"
    if not os.access(program, os.X_OK):
        program = _compile(tempfile.mkdtemp(prefix="devemu-abi-"))
    r = subprocess.run([str(program)], capture_output=True, text=True, timeout=30, check=True)
    return Abi(str(program), json.loads(r.stdout))
