# SPDX-License-Identifier: MIT
# devemud as a service: config-file errors, SIGHUP reload, devemuctl against a running daemon, faults, privilege drop, the plugin example, the systemd unit.
"""
Run with Debian's pytest (each test starts and stops its own devemud):

  /usr/bin/python3 -m pytest -q tests/service                           # host: FUSE fallback
  tests/vm/run /usr/bin/python3 -m pytest -q /work/main/tests/service --transport cuse --service-timeout 120

Options (see conftest.py): --devemud, --devemuctl, --transport fuse|cuse|kshim, --build-dir,
--service-timeout.
"""

import errno
import fcntl
import grp
import json
import os
import pwd
import re
import select
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import time

import pytest

from devemu_testlib.abi import IOR, IOW
from devemu_testlib.daemon import control_exchange

# --------------------------------------------------------------------------------------------
# ABI: devemu's ioctls and struct devemu_counters from the uapi header (the `abi` fixture).
# --------------------------------------------------------------------------------------------

U64 = struct.Struct("=Q")
COUNTER_GET = IOR("c", 1, U64.size)  # examples/plugin/counter_model.cpp
COUNTER_ADD = IOW("c", 2, U64.size)

# The capabilities devemud keeps after --user (daemon.cpp dropPrivileges): CAP_CHOWN,
# CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_SYS_ADMIN.
KEPT_CAPS = (1 << 0) | (1 << 1) | (1 << 3) | (1 << 21)

# What an open file sees once its device is removed. A request the daemon had parked is answered
# ENODEV (devemuctl help: "open files get ENODEV"). Later requests never reach the daemon: on
# FUSE and CUSE the kernel answers them itself, ENOTCONN once the connection is gone; the kernel
# shim answers ENODEV once the device is removed (kshim/kshim_client.c).
AFTER_REMOVAL = {"fuse": errno.ENOTCONN, "cuse": errno.ENOTCONN, "kshim": errno.ENODEV}
# A request made while the daemon is still tearing the device down (a caller that goes on at once
# after its parked read got ENODEV) races with it: FUSE and CUSE end it with ECONNABORTED if the
# connection is aborted under it; the kernel shim answers EIO between closing the channel and
# REMOVE (KshimTransport::stop() in cuse_dev/transports/kshim_transport.cpp).
DURING_REMOVAL = {"fuse": {errno.ENOTCONN, errno.ECONNABORTED},
                  "cuse": {errno.ENOTCONN, errno.ECONNABORTED},
                  "kshim": {errno.ENODEV, errno.EIO}}

# Transport rounds per size-encoded ioctl() call, as devemuctl stats counts them: the FUSE fallback
# forwards the argument _IOC_SIZE says, in one round; CUSE (FUSE_IOCTL_RETRY) and the kernel shim
# (which offers DEVEMU_F_IOCTL_RETRY, so the first round carries no output room) ask the daemon
# first without the argument and retry with it.
IOCTL_ROUNDS = {"fuse": 1, "cuse": 2, "kshim": 2}


def counters(abi, fd):
    """DEVEMU_IOC_COUNTERS: (bytes_in, bytes_out, opens, dropped)."""
    st = abi.struct("devemu_counters")
    buf = bytearray(st.size)
    fcntl.ioctl(fd, abi.DEVEMU_IOC_COUNTERS, buf)
    c = st.unpack_from(buf)
    return c["bytes_in"], c["bytes_out"], c["opens"], c["dropped"]


def errno_of(fn, *args):
    try:
        fn(*args)
    except OSError as e:
        return e.errno
    return 0


def nobody():
    pw = pwd.getpwnam("nobody")
    return pw.pw_uid, pw.pw_gid, grp.getgrgid(pw.pw_gid).gr_name


def loopback(svc, devemud, opts, spec="loopback", tag="lb", extra=()):
    """A daemon serving one device NAME=spec through the transport under test."""
    name = svc.unique(tag)
    d = devemud(["--transport", opts.transport, "--device", f"{name}={spec}", *extra], [name], tag=tag)
    return d, name


def read_line(proc, timeout):
    """One line of a child's stdout, or None if none came within timeout."""
    r, _, _ = select.select([proc.stdout], [], [], timeout)
    return proc.stdout.readline() if r else None


# A child that opens a node, says so, then blocks in read(); it reports what the read gave, then
# what a write and close() on the same file give (after a removal: the errnos a user sees).
READER = r"""
import json, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
print("open", flush=True)
out = {}
try:
    out["data"] = os.read(fd, int(sys.argv[2])).hex()
except OSError as e:
    out["read_errno"] = e.errno
if len(sys.argv) > 3:
    try:
        os.write(fd, b"x")
        out["write_errno"] = 0
    except OSError as e:
        out["write_errno"] = e.errno
try:
    os.close(fd)
    out["close_errno"] = 0
except OSError as e:
    out["close_errno"] = e.errno
print(json.dumps(out), flush=True)
"""


def start_reader(svc, d, name, n=64, then_write=False):
    """A child blocked in read() on /dev/NAME, parked in the daemon (waiting_requests)."""
    args = [sys.executable, "-c", READER, f"/dev/{name}", str(n)] + (["w"] if then_write else [])
    p = svc.popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert read_line(p, 10) == "open\n", p.stderr.read() if p.poll() is not None else "reader did not open"

    def parked():
        devs = {x["name"]: x for x in d.ctl_json("list")["devices"]}
        return devs.get(name, {}).get("waiting_requests", 0) == 1
    svc.wait_for(parked, 5, "the reader's read() parked in devemud")
    return p


def reader_result(svc, p, timeout):
    line = read_line(p, timeout)
    if line is None:
        return None
    svc.reap(p)
    return json.loads(line)


# ============================================================================================
# 1. Config file errors and a valid config
# ============================================================================================

# (id, file text, the rest of the only stderr line after "devemud: PATH:" as a regex). {n} is
# the device name; in the regex, {n} is the escaped name.
CONFIG_ERRORS = [
    ("daemon-unknown-key",
     '[daemon]\nlog_level = "info"\nbogus = 1\n',
     r"3: key 'daemon\.bogus': unknown key in \[daemon\] \(known: [^)]*\blog_level\b[^)]*\)"),
    ("device-unknown-key",
     '[[device]]\nname = "{n}"\nmodel = "loopback"\nspeed = 9600\n',
     r"4: key 'device '{n}'\.speed': unknown key in \[\[device\]\] \(known: [^)]*\bmodel\b[^)]*\)"),
    ("top-level-unknown-table",
     '[[devices]]\nname = "{n}"\nmodel = "zero"\n',
     r"1: key 'devices': unknown key in the top level \(known: \[daemon\], \[\[device\]\]\)"),
    ("missing-name",
     '[[device]]\nname = "{n}"\nmodel = "zero"\n\n[[device]]\nmodel = "loopback"\n',
     r"5: key 'device\[1\]\.name': missing: every \[\[device\]\] needs a name"),
    ("missing-model",
     '[[device]]\nname = "{n}"\n',
     r"1: key 'device '{n}'\.model': missing: every \[\[device\]\] needs a model"),
    ("unknown-model",
     '[[device]]\nname = "{n}"\nmodel = "nosuch"\n',
     r"3: key 'device '{n}'\.model': unknown model 'nosuch' \(models: [^)]*\bloopback\b[^)]*\)"),
    ("bad-option-value",
     '[[device]]\nname = "{n}"\nmodel = "loopback"\n\n[device.options]\nwhen_full = "block"\ncapacity = "big"\n',
     r"7: key 'device '{n}'\.options\.capacity': .*option 'capacity=big': expected a number from 1 to 67108864"),
    ("option-out-of-range",
     '[[device]]\nname = "{n}"\nmodel = "loopback"\noptions = {{ capacity = 0 }}\n',
     r"4: key 'device '{n}'\.options\.capacity': .*option 'capacity=0': expected a number from 1 to 67108864"),
    ("bad-option-choice",
     '[[device]]\nname = "{n}"\nmodel = "loopback"\noptions = {{ when_full = "spill" }}\n',
     r"4: key 'device '{n}'\.options\.when_full': .*option 'when_full=spill': expected one of block\|drop"),
    ("unknown-option",
     '[[device]]\nname = "{n}"\nmodel = "loopback"\noptions = {{ colour = "red" }}\n',
     r"4: key 'device '{n}'\.options\.colour': .*model 'loopback' has no option 'colour' "
     r"\(its options: capacity, when_full\)"),
    ("bad-mode",
     '[[device]]\nname = "{n}"\nmodel = "zero"\nmode = "0999"\n',
     r"""4: key 'device '{n}'\.mode': expected an octal mode such as "0660\""""),
    ("daemon-bad-mode",
     '[daemon]\nmode = "rw"\n',
     r"""2: key 'daemon\.mode': expected an octal mode such as "0660\""""),
    ("duplicate-name",
     '[[device]]\nname = "{n}"\nmodel = "zero"\n[[device]]\nname = "{n}"\nmodel = "loopback"\n',
     r"4: key 'device '{n}'\.name': the name is used twice"),
    ("bad-device-name",
     '[[device]]\nname = "a/b"\nmodel = "zero"\n',
     r"2: key 'device\[0\]\.name': device name 'a/b': use 1 to 63 letters, digits, '_', '\.' or '-'"),
    ("name-not-a-string",
     '[[device]]\nname = 3\nmodel = "zero"\n',
     r"2: key 'device\[0\]\.name': expected a string"),
    ("model-not-a-string",
     '[[device]]\nname = "{n}"\nmodel = ["zero"]\n',
     r"3: key 'device '{n}'\.model': expected a string"),
    ("daemon-not-a-table",
     'daemon = 3\n',
     r"1: key 'daemon': expected a \[daemon\] table"),
    ("unknown-user",
     '[daemon]\nuser = "no-such-user-devemu"\n',
     r"2: key 'daemon\.user': unknown user 'no-such-user-devemu'"),
    ("unknown-owner",
     '[[device]]\nname = "{n}"\nmodel = "zero"\nowner = "no-such-user-devemu"\n',
     r"4: key 'device '{n}'\.owner': unknown user 'no-such-user-devemu'"),
    ("bad-transport",
     '[daemon]\ntransport = "usb"\n',
     r"2: key 'daemon\.transport': 'usb': expected auto, cuse, fuse, kshim, or a list such as cuse,kshim"),
    ("toml-syntax-table-header",
     '[daemon]\nlog_level = "info"\n\n[[device]\nname = "{n}"\n',
     r"4:\d+: Error while parsing table header: .*"),
    ("toml-syntax-unterminated-string",
     '[daemon]\nlog_level = "info"\nmode = "0660\n',
     r"3:13: Error while parsing string: .*"),
]


@pytest.mark.parametrize("text,expected", [c[1:] for c in CONFIG_ERRORS], ids=[c[0] for c in CONFIG_ERRORS])
def test_config_error(svc, opts, transport, tmp_path, text, expected):
    """devemud -c FILE with a mistake: exit status 2, one stderr line naming the file, the line
    (line:column for TOML syntax), the key and what was expected; nothing served."""
    name = svc.unique("cfg")
    path = tmp_path / "devemud.toml"
    path.write_text(text.format(n=name))
    sock = svc.sock_path("cfg")
    r = subprocess.run([opts.devemud, "-f", "-c", str(path), "--control", sock],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 2, f"exit status {r.returncode}, stderr:\n{r.stderr}"
    assert r.stdout == ""
    rx = "devemud: " + re.escape(str(path)) + ":" + expected.replace("{n}", re.escape(name))
    assert re.fullmatch(rx + r"\n", r.stderr), f"stderr:\n{r.stderr!r}\ndoes not match:\n{rx}"
    assert not os.path.lexists(f"/dev/{name}")
    assert not os.path.exists(sock)


def test_config_missing_file_and_conflict_with_command_line(svc, opts, tmp_path):
    missing = tmp_path / "nope.toml"
    r = subprocess.run([opts.devemud, "-f", "-c", str(missing), "--control", "none"],
                       capture_output=True, text=True, timeout=20)
    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr == f"devemud: {missing}: File could not be opened for reading\n"

    name = svc.unique("cfg")
    path = tmp_path / "devemud.toml"
    path.write_text(f'[[device]]\nname = "{name}"\nmodel = "zero"\n')
    r = subprocess.run([opts.devemud, "-f", "-c", str(path), "--control", "none", "--device", f"{name}=loopback"],
                       capture_output=True, text=True, timeout=20)
    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr == f"devemud: device '{name}' is given twice\n"
    assert not os.path.lexists(f"/dev/{name}")


def test_config_valid_serves_devices_with_mode_and_owner(svc, opts, abi, transport, devemud, tmp_path):
    """[daemon] settings apply to every device; per-device mode/owner/group and model options
    override them; the nodes carry those permissions and the options are in effect."""
    a, z = svc.unique("cfga"), svc.unique("cfgz")
    sock = svc.sock_path("cfg")
    uid, gid, group = nobody()
    path = tmp_path / "devemud.toml"
    path.write_text(f"""# devemud test config
[daemon]
control = "{sock}"
transport = "{opts.transport}"
mode = "0604"
log_level = "info"

[[device]]
name = "{a}"
model = "loopback"
mode = 0o640
owner = "nobody"
group = "{group}"
options = {{ capacity = "4k", when_full = "drop" }}

[[device]]
name = "{z}"
model = "zero"
owner = {uid}
""")
    d = devemud(["-c", str(path)], [a, z], tag="cfg", sock=sock)

    st = os.stat(transport.backing(a))
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o640, uid, gid)
    st = os.stat(transport.backing(z))
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o604, uid, 0)
    for n in (a, z):
        if opts.transport == "fuse":
            assert os.readlink(f"/dev/{n}") == f"/run/devemu/{n}"
            assert stat.S_ISREG(os.stat(f"/dev/{n}").st_mode)
        else:
            assert stat.S_ISCHR(os.lstat(f"/dev/{n}").st_mode)

    listed = {x["name"]: x for x in d.ctl_json("list")["devices"]}
    assert listed[a]["model"] == "loopback" and listed[z]["model"] == "zero"
    assert listed[a]["from_config"] is True and listed[z]["from_config"] is True
    assert listed[a]["transports"] == [opts.transport] and listed[a]["nodes"] == [f"/dev/{a}"]

    # capacity=4k, when_full=drop: a 5000-byte write is taken whole, 904 bytes are dropped.
    fd = os.open(f"/dev/{a}", os.O_RDWR | os.O_NONBLOCK)
    try:
        assert os.write(fd, bytes(range(250)) * 20) == 5000
        assert counters(abi, fd)[3] == 904
        assert os.read(fd, 8192) == (bytes(range(250)) * 20)[:4096]
    finally:
        os.close(fd)
    with open(f"/dev/{z}", "rb", buffering=0) as f:
        assert f.read(16) == bytes(16)
    d.stop_clean()


# ============================================================================================
# 2. SIGHUP
# ============================================================================================

def _hup_config(sock, transport, devices):
    text = f'[daemon]\ncontrol = "{sock}"\ntransport = "{transport}"\n'
    for name, model, options in devices:
        text += f'\n[[device]]\nname = "{name}"\nmodel = "{model}"\n'
        if options:
            text += "[device.options]\n" + "".join(f"{k} = {v}\n" for k, v in options.items())
    return text


def _nonblocking_write_count(path, n):
    fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    try:
        return os.write(fd, b"z" * n)
    finally:
        os.close(fd)


@pytest.mark.guard(45)
def test_sighup_add_change_remove_and_broken_config(svc, opts, transport, devemud, tmp_path):
    a, b = svc.unique("hupa"), svc.unique("hupb")
    sock = svc.sock_path("hup")
    path = tmp_path / "devemud.toml"
    dev_a = (a, "loopback", {})
    path.write_text(_hup_config(sock, opts.transport, [dev_a]))
    d = devemud(["-c", str(path)], [a], tag="hup", sock=sock)

    fa = os.open(f"/dev/{a}", os.O_RDWR)
    try:
        os.write(fa, b"before-hup;")

        # Add B.
        path.write_text(_hup_config(sock, opts.transport, [dev_a, (b, "loopback", {"capacity": 8})]))
        d.signal(signal.SIGHUP)
        d.wait_log(rf"SIGHUP: added {re.escape(b)}$")
        d.extra.append(b)
        svc.wait_for(lambda: transport.present(b), 5, f"/dev/{b} after SIGHUP")
        assert _nonblocking_write_count(f"/dev/{b}", 20) == 8  # capacity 8
        os.write(fa, b"after-add;")
        assert d.stats(a)["opens"] == 1, "A was re-created although its config did not change"

        # Change B's options: B is re-created with the new capacity; a file open on the old B
        # loses its device.
        fb_old = os.open(f"/dev/{b}", os.O_RDWR | os.O_NONBLOCK)
        path.write_text(_hup_config(sock, opts.transport, [dev_a, (b, "loopback", {"capacity": 16})]))
        d.signal(signal.SIGHUP)
        d.wait_log(rf"SIGHUP: removing {re.escape(b)}$")
        d.wait_log(rf"SIGHUP: added {re.escape(b)}$", count=2)
        svc.wait_for(lambda: transport.present(b), 5, f"/dev/{b} re-created after SIGHUP")
        assert errno_of(os.read, fb_old, 4) == AFTER_REMOVAL[opts.transport]
        errno_of(os.close, fb_old)
        assert _nonblocking_write_count(f"/dev/{b}", 20) == 16  # new capacity, and the old 8 bytes are gone
        os.write(fa, b"after-change;")

        # A broken file: the daemon keeps what it serves and says which file and line.
        syntax = _hup_config(sock, opts.transport, [dev_a]) + '\n[[device]\nname = "x"\n'
        path.write_text(syntax)
        d.signal(signal.SIGHUP)
        m = d.wait_log(r"error: daemon: SIGHUP: keeping the running devices: (.*)$")
        line = syntax.splitlines().index("[[device]") + 1
        assert re.match(re.escape(str(path)) + rf":{line}:\d+: Error while parsing table header", m[0]), m[0]
        broken = _hup_config(sock, opts.transport, [dev_a, (b, "loopback", {"capacity": '"huge"'})])
        path.write_text(broken)
        d.signal(signal.SIGHUP)
        m = d.wait_log(r"error: daemon: SIGHUP: keeping the running devices: (.*)$", count=2)
        line = broken.splitlines().index('capacity = "huge"') + 1
        assert m[1].startswith(f"{path}:{line}: key 'device '{b}'.options.capacity': "), m[1]
        assert "'capacity=huge': expected a number from 1 to 67108864" in m[1]
        assert d.alive()
        assert transport.present(a) and transport.present(b)
        # Still the same B: full from the 16 bytes written above.
        assert errno_of(_nonblocking_write_count, f"/dev/{b}", 1) == errno.EAGAIN
        os.write(fa, b"after-broken;")

        # Remove B from the file.
        path.write_text(_hup_config(sock, opts.transport, [dev_a]))
        d.signal(signal.SIGHUP)
        d.wait_log(rf"SIGHUP: removing {re.escape(b)}$", count=2)
        svc.wait_for(lambda: transport.gone(b), 5, f"/dev/{b} removed after SIGHUP")
        assert [x["name"] for x in d.ctl_json("list")["devices"]] == [a]

        # A's open file lived through all of it, with its bytes in order.
        want = b"before-hup;after-add;after-change;after-broken;"
        got = b""
        while len(got) < len(want):
            got += os.read(fa, 4096)
        assert got == want
        assert d.stats(a)["opens"] == 1
    finally:
        os.close(fa)
    d.stop_clean()


# ============================================================================================
# 3. devemuctl against the daemon
# ============================================================================================

def test_ctl_list_table_and_json(svc, opts, devemud):
    lb, z = svc.unique("lsl"), svc.unique("lsz")
    d = devemud(["--transport", opts.transport, "--device", f"{lb}=loopback", "--device", f"{z}=zero"], [lb, z],
                tag="ls")
    fd = os.open(f"/dev/{lb}", os.O_RDWR)
    try:
        out = d.ctl_ok("list").splitlines()
        assert out[0].split() == ["NAME", "MODEL", "TRANSPORT", "NODE", "STATE", "OPEN"]
        rows = sorted(line.split() for line in out[1:])
        assert rows == sorted([[lb, "loopback", opts.transport, f"/dev/{lb}", "serving", "1"],
                               [z, "zero", opts.transport, f"/dev/{z}", "serving", "0"]])
        j = d.ctl_json("list")
        assert j["ok"] is True
        devs = {x["name"]: x for x in j["devices"]}
        assert set(devs) == {lb, z}
        assert devs[lb] == {"name": lb, "model": "loopback", "transports": [opts.transport], "nodes": [f"/dev/{lb}"],
                            "state": "serving", "open_files": 1, "waiting_requests": 0, "from_config": False}
        assert devs[z]["open_files"] == 0 and devs[z]["model"] == "zero"
    finally:
        os.close(fd)
    svc.wait_for(lambda: d.ctl_json("list")["devices"][0]["open_files"] == 0, 5, "open_files back to 0 after close")
    d.stop_clean()


def test_ctl_stats_count_io(svc, opts, abi, devemud):
    d, n = loopback(svc, devemud, opts, tag="st")
    s0 = d.stats(n)
    assert (s0["opens"], s0["bytes_in"], s0["bytes_out"]) == (0, 0, 0)
    fd = os.open(f"/dev/{n}", os.O_RDWR)
    try:
        for chunk in (b"hello", b"world!", b"x" * 100):
            assert os.write(fd, chunk) == len(chunk)
            assert os.read(fd, 4096) == chunk
        c = counters(abi, fd)
        s = d.stats(n)
    finally:
        os.close(fd)
    assert s["name"] == n
    assert (s["opens"], s["open_files"], s["bytes_in"], s["bytes_out"]) == (1, 1, 111, 111)
    assert c == (111, 111, 1, 0), "DEVEMU_IOC_COUNTERS disagrees with devemuctl stats"
    ops = s["operations"]
    assert ops["write"]["requests"] == 3 and ops["read"]["requests"] == 3
    assert ops["open"]["requests"] == 1
    assert ops["ioctl"]["requests"] == IOCTL_ROUNDS[opts.transport]  # the one COUNTERS ioctl
    assert ops["read"]["errors"] == ops["write"]["errors"] == 0
    # The kernel shim serves a loopback's reads and writes from its stream FIFOs: counted, in the
    # kernel, with no latency entries; every other call is a request with its latency.
    in_kernel = 3 if opts.transport == "kshim" else 0
    assert ops["read"]["in_kernel"] == ops["write"]["in_kernel"] == in_kernel
    assert ops["open"]["in_kernel"] == 0
    for op in ("read", "write", "open"):
        hist = ops[op]["latency"]
        assert sum(b["count"] for b in hist) == ops[op]["requests"] - ops[op]["in_kernel"], op
        assert hist or op != "open", f"{op}: empty latency histogram"
    text = d.ctl_ok("stats", n)
    assert text.splitlines()[0] == (f"device {n}: 0 open files, 1 opens, 111 bytes in, 111 bytes out, "
                                    "0 dropped, 0 waited, 0 cancelled")
    row = {line.split()[0]: line.split() for line in text.splitlines()[2:]}
    assert row["read"][1:3] == ["3", "0"] and row["write"][1:3] == ["3", "0"]
    if in_kernel:
        assert row["read"][3] == "in-kernel:3" and len(row["read"]) == 4, text
    else:
        assert re.search(r"<\d+:\d+", " ".join(row["read"][3:])), text
    assert re.search(r"<\d+:\d+", " ".join(row["open"][3:])), text
    d.stop_clean()


def test_ctl_add(svc, opts, transport, devemud):
    d, n = loopback(svc, devemud, opts, tag="add")
    new = svc.unique("added")
    r = d.ctl("add", f"{new}=loopback,capacity=4k,mode=0600")
    d.extra.append(new)
    assert (r.returncode, r.stdout, r.stderr) == (0, f"serving /dev/{new}\n", "")
    assert transport.present(new)
    assert stat.S_IMODE(os.stat(transport.backing(new)).st_mode) == 0o600
    fd = os.open(f"/dev/{new}", os.O_RDWR | os.O_NONBLOCK)
    try:
        assert os.write(fd, b"q" * 5000) == 4096  # capacity 4k, O_NONBLOCK: the partial count
        assert os.read(fd, 10) == b"q" * 10
    finally:
        os.close(fd)
    devs = {x["name"]: x for x in d.ctl_json("list")["devices"]}
    assert devs[new]["state"] == "serving" and devs[new]["from_config"] is False

    errors = [
        (f"{new}=zero", f"device '{new}' exists already"),
        ("svc-bad-opt=loopback,capacity=big",
         "device 'svc-bad-opt': model 'loopback': option 'capacity=big': expected a number from 1 to 67108864"),
        ("svc-bad-opt=loopback,colour=red",
         "device 'svc-bad-opt': model 'loopback' has no option 'colour' (its options: capacity, when_full)"),
        ("svc-bad-opt=nosuch", "device 'svc-bad-opt': unknown model 'nosuch'"),
        ("svc-bad-opt=zero,mode=999", "device 'svc-bad-opt': option 'mode=999': expected an octal mode such as 0660"),
        ("bad/name=zero", "device name 'bad/name': use 1 to 63 letters, digits, '_', '.' or '-'"),
        ("noequals", "device 'noequals': expected NAME=MODEL[,key=value...]"),
    ]
    for spec, message in errors:
        r = d.ctl("add", spec)
        assert (r.returncode, r.stdout, r.stderr) == (1, "", f"devemuctl: {message}\n"), spec
    assert not os.path.lexists("/dev/svc-bad-opt")
    assert sorted(x["name"] for x in d.ctl_json("list")["devices"]) == sorted([n, new])
    d.stop_clean()


def test_ctl_remove_with_open_files(svc, opts, transport, devemud):
    """A reader blocked in read() gets ENODEV at once, the node goes, the daemon goes on."""
    d, n = loopback(svc, devemud, opts, tag="rm")
    other = svc.unique("rmkeep")
    d.ctl_ok("add", f"{other}=loopback")
    d.extra.append(other)
    reader = start_reader(svc, d, n, then_write=True)
    fd2 = os.open(f"/dev/{n}", os.O_RDWR)  # a second open file, idle
    t0 = time.monotonic()
    out = d.ctl_ok("remove", n)
    res = reader_result(svc, reader, 5)
    elapsed = time.monotonic() - t0
    assert out == f"removed {n} (2 open files were cut off)\n"
    assert res is not None, "the blocked reader did not return within 5 s of devemuctl remove"
    assert elapsed < 1.0, f"the blocked reader returned {elapsed:.2f} s after remove"
    assert res.get("read_errno") == errno.ENODEV, res
    assert res["write_errno"] in DURING_REMOVAL[opts.transport], res
    svc.wait_for(lambda: transport.gone(n), 2, f"/dev/{n} removed")
    e = errno_of(os.read, fd2, 10)
    assert e == AFTER_REMOVAL[opts.transport], f"read on a removed device's file: errno {e}"
    assert errno_of(os.open, f"/dev/{n}", os.O_RDWR) == errno.ENOENT
    # On the FUSE fallback close() sends a FLUSH, which the gone connection answers ENOTCONN (the fd
    # is closed anyway); CUSE and the kernel shim have no flush, close() succeeds.
    ce = errno_of(os.close, fd2)
    assert ce == (errno.ENOTCONN if opts.transport == "fuse" else 0), ce
    assert [x["name"] for x in d.ctl_json("list")["devices"]] == [other]
    with open(f"/dev/{other}", "r+b", buffering=0) as f:
        f.write(b"still")
        assert f.read(5) == b"still"
    r = d.ctl("remove", n)
    assert (r.returncode, r.stderr) == (1, f"devemuctl: no device '{n}'\n")
    d.stop_clean()


def test_ctl_inject(svc, opts, devemud):
    d, n = loopback(svc, devemud, opts, tag="inj")
    reader = start_reader(svc, d, n)
    assert d.ctl_ok("inject", n, "data", r"hi\n") == "injected 3 bytes\n"
    res = reader_result(svc, reader, 2)
    assert res is not None and bytes.fromhex(res["data"]) == b"hi\n"

    assert d.ctl_ok("inject", n, "hex", "41", "42") == "injected 2 bytes\n"
    assert d.ctl_ok("inject", n, "data", r"\x00\t.") == "injected 3 bytes\n"
    fd = os.open(f"/dev/{n}", os.O_RDWR | os.O_NONBLOCK)
    try:
        assert os.read(fd, 100) == b"AB\x00\t."
        assert d.ctl_ok("inject", n, "data", "dropme") == "injected 6 bytes\n"
        assert d.ctl_ok("inject", n, "clear") == "discarded 6 bytes\n"
        assert errno_of(os.read, fd, 10) == errno.EAGAIN
    finally:
        os.close(fd)
    for args, message in [
        (["inject", n, "bogus"], "unknown verb 'bogus' (verbs: data TEXT, hex BYTES, clear)"),
        (["inject", n, "hex", "4"], "an odd number of hex digits"),
        (["inject", n, "hex", "zz"], "'z' is not a hex digit"),
        (["inject", "svc-no-such-device", "clear"], "no device 'svc-no-such-device'"),
        (["inject", n], "inject needs a device name and a verb"),
    ]:
        r = d.ctl(*args)
        assert (r.returncode, r.stdout, r.stderr) == (1, "", f"devemuctl: {message}\n"), args
    s = d.stats(n)
    assert s["bytes_out"] == 8
    d.stop_clean()


def test_ctl_version_usage_and_errors(svc, opts, devemud):
    d, n = loopback(svc, devemud, opts, tag="ver")
    v = subprocess.run([opts.devemud, "--version"], capture_output=True, text=True, timeout=10)
    assert v.returncode == 0 and re.fullmatch(r"devemud \S+\n", v.stdout), v.stdout
    assert d.ctl_ok("version") == v.stdout.strip() + " (protocol 1)\n"
    assert d.ctl_json("version") == {"ok": True, "version": v.stdout.split()[1], "protocol": 1}

    r = d.ctl("frobnicate")
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.startswith("devemuctl: unknown command 'frobnicate'\nUsage: devemuctl ")
    r = subprocess.run([opts.devemuctl], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and r.stdout.startswith("Usage: devemuctl ") and r.stderr == ""
    r = subprocess.run([opts.devemuctl, "--help"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0 and "fault NAME --clear" in r.stdout
    for args, message in [
        (["stats"], "stats needs a device name"),
        (["stats", "svc-no-such-device"], "no device 'svc-no-such-device'"),
        (["remove"], "remove needs a device name"),
        (["add"], "add needs NAME=MODEL[,key=value...]"),
    ]:
        r = d.ctl(*args)
        assert (r.returncode, r.stdout, r.stderr) == (1, "", f"devemuctl: {message}\n"), args
    nowhere = svc.sock_path("none")
    r = d.ctl("list", socket_path=nowhere)
    assert r.returncode == 1
    assert r.stderr == (f"devemuctl: cannot reach devemud at {nowhere}: No such file or directory "
                        "(is it running? is --control set?)\n")

    # SIGHUP without a config file: logged, nothing else happens.
    d.signal(signal.SIGHUP)
    d.wait_log(r"SIGHUP: no config file to re-read$")
    assert d.ctl_json("list")["devices"][0]["name"] == n
    d.stop_clean()


def _raw(sock_path, payload, timeout=5.0):
    """Send raw bytes on a fresh connection; the first answer line ('' if the daemon closed the
    connection without one)."""
    return control_exchange(sock_path, payload, timeout).decode()


def test_control_protocol_bad_requests(svc, opts, devemud):
    """Malformed requests get an error answer; the connection and the daemon keep serving."""
    d, n = loopback(svc, devemud, opts, tag="raw")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(d.sock)
    f = s.makefile("rwb")

    def ask(raw):
        f.write(raw)
        f.flush()
        line = f.readline()
        assert line, f"no answer to {raw!r}"
        return json.loads(line)

    r = ask(b"this is not json\n")
    assert r["ok"] is False and r["error"].startswith("bad request: ") and "parse error" in r["error"]
    assert ask(b"[1, 2]\n") == {"ok": False, "error": "a request is a JSON object"}
    assert ask(b'{"version": 99, "command": "list"}\n') == {
        "ok": False, "error": "protocol version 99 is not supported (this daemon speaks 1)"}
    r = ask(b'{"command": "nosuch"}\n')
    assert r == {"ok": False, "error": "unknown command 'nosuch' (list, stats, add, remove, inject, fault, version)"}
    r = ask(b'{"version": 1, "command": "list"}\n')  # same connection, still answered
    assert r["ok"] is True and [x["name"] for x in r["devices"]] == [n]
    s.close()

    # More than 1 MiB without a newline: the daemon answers with an error and drops that connection
    # (our sending may fail once it is closed; its answer is in our receive queue all the same).
    big = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    big.settimeout(5)
    big.connect(d.sock)
    try:
        big.sendall(b"x" * (1 << 20) + b"y" * 4096)
    except (ConnectionResetError, BrokenPipeError):
        pass
    answer = b""
    while not answer.endswith(b"\n"):
        chunk = big.recv(4096)
        assert chunk, f"connection closed after {answer!r}"
        answer += chunk
    assert json.loads(answer) == {"ok": False, "error": "request too long (over 1 MiB)"}, answer
    try:
        rest = big.recv(4096)
    except ConnectionResetError:  # closed with our unread bytes in its queue: the reset says closed too
        rest = b""
    assert rest == b"", "the connection stays open after a request over 1 MiB"
    big.close()

    assert d.alive()
    assert d.ctl_ok("version").startswith("devemud ")
    with open(f"/dev/{n}", "r+b", buffering=0) as nf:
        nf.write(b"ok")
        assert nf.read(2) == b"ok"
    d.stop_clean()


# A request whose fields have the wrong JSON type gets an error answer naming the type mismatch
# (nlohmann::json's words), and the daemon goes on.
@pytest.mark.parametrize("request_text,error", [
    ('{"command": "stats", "device": 5}', "type must be string, but is number"),
    ('{"command": "add", "spec": 7}', "type must be string, but is number"),
    ('{"command": "fault", "device": "NAME", "op": "read", "delay_ms": "x"}', "type must be number, but is string"),
])
def test_control_protocol_wrong_types_get_an_answer(svc, opts, devemud, request_text, error):
    d, n = loopback(svc, devemud, opts, tag="typ")
    answer = _raw(d.sock, request_text.replace("NAME", n).encode() + b"\n")
    assert answer != "", f"devemud closed the connection without answering {request_text}"
    assert json.loads(answer) == {"ok": False, "error": f"bad request: [json.exception.type_error.302] {error}"}
    assert d.alive() and d.ctl_ok("version")
    d.stop_clean()


def test_control_protocol_answers_text_that_is_not_utf8(svc, opts, devemud):
    """A request with bytes that are not UTF-8 is answered although the error quotes them (found by
    fuzz_control_line): the answer replaces them, and the connection keeps serving."""
    d, n = loopback(svc, devemud, opts, tag="utf")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(d.sock)
    f = s.makefile("rwb")
    f.write(b'{"version": 1, "command": "stats", "device": "no\xb7such"}\n')
    f.flush()
    answer = f.readline()
    assert answer, "devemud answered nothing to a device name that is not UTF-8"
    r = json.loads(answer)  # the parser's error quotes what it read last: the byte, replaced
    assert r["ok"] is False and r["error"].startswith("bad request: ") and "\ufffd" in r["error"], r
    f.write(b'{"version": 1, "command": "list"}\n')
    f.flush()
    assert json.loads(f.readline())["ok"] is True
    s.close()
    assert d.alive() and d.ctl_ok("version")
    d.stop_clean()


# ============================================================================================
# 4. Faults
# ============================================================================================

def test_fault_read_errno_count_then_data_intact(svc, opts, devemud):
    d, n = loopback(svc, devemud, opts, tag="frd")
    fd = os.open(f"/dev/{n}", os.O_RDWR)
    try:
        os.write(fd, b"payload")
        assert d.ctl_ok("fault", n, "--op", "read", "--errno", "EIO", "--count", "2") == "fault set\n"
        f = d.stats(n)["faults"]
        assert f == [{"op": "read", "errno": errno.EIO, "delay_ms": 0, "short": None, "remaining": 2, "hits": 0}]
        assert errno_of(os.read, fd, 100) == errno.EIO
        f = d.stats(n)["faults"]
        assert (f[0]["remaining"], f[0]["hits"]) == (1, 1)
        assert "fault: read errno=5 delay=0ms short=null remaining=1 hits=1" in d.ctl_ok("stats", n)
        assert errno_of(os.read, fd, 100) == errno.EIO
        assert os.read(fd, 100) == b"payload"  # nothing lost to the failed reads
        s = d.stats(n)
        assert s["faults"] == []  # used up
        assert (s["operations"]["read"]["requests"], s["operations"]["read"]["errors"]) == (3, 2)
        assert s["bytes_out"] == 7
    finally:
        os.close(fd)
    d.stop_clean()


def test_fault_write_errno(svc, opts, devemud):
    d, n = loopback(svc, devemud, opts, tag="fwr")
    fd = os.open(f"/dev/{n}", os.O_RDWR)
    try:
        d.ctl_ok("fault", n, "--op", "write", "--errno", "ENOSPC", "--count", "1")
        assert errno_of(os.write, fd, b"lost") == errno.ENOSPC
        assert os.write(fd, b"kept") == 4
        assert os.read(fd, 100) == b"kept"
        s = d.stats(n)
        assert s["bytes_in"] == 4 and s["operations"]["write"]["errors"] == 1
        d.ctl_ok("fault", n, "--op", "write", "--errno", "28")  # a number works too; until cleared
        assert errno_of(os.write, fd, b"a") == errno.ENOSPC
        assert errno_of(os.write, fd, b"b") == errno.ENOSPC
        assert d.ctl_ok("fault", n, "--clear") == "faults cleared\n"
        assert os.write(fd, b"c") == 1
    finally:
        os.close(fd)
    d.stop_clean()


def test_fault_open_errno(svc, opts, devemud):
    d, n = loopback(svc, devemud, opts, tag="fop")
    d.ctl_ok("fault", n, "--op", "open", "--errno", "EACCES")
    for _ in range(2):
        assert errno_of(os.open, f"/dev/{n}", os.O_RDWR) == errno.EACCES  # as root: the fault, not permissions
    s = d.stats(n)
    assert s["opens"] == 0 and s["operations"]["open"]["errors"] == 2 and s["faults"][0]["hits"] == 2
    d.ctl_ok("fault", n, "--clear")
    assert d.stats(n)["faults"] == []
    os.close(os.open(f"/dev/{n}", os.O_RDWR))
    assert d.stats(n)["opens"] == 1
    d.stop_clean()


def test_fault_short_read_and_write(svc, opts, devemud):
    d, n = loopback(svc, devemud, opts, tag="fsh")
    fd = os.open(f"/dev/{n}", os.O_RDWR)
    try:
        os.write(fd, b"abcdef")
        d.ctl_ok("fault", n, "--op", "read", "--short", "1")
        assert os.read(fd, 100) == b"a"
        assert os.read(fd, 100) == b"b"
        d.ctl_ok("fault", n, "--clear")
        assert os.read(fd, 100) == b"cdef"
        d.ctl_ok("fault", n, "--op", "write", "--short", "2", "--count", "1")
        assert os.write(fd, b"xyz") == 2
        assert os.write(fd, b"XYZ") == 3
        assert os.read(fd, 100) == b"xyXYZ"
    finally:
        os.close(fd)
    d.stop_clean()


def test_fault_write_delay(svc, opts, devemud):
    d, n = loopback(svc, devemud, opts, tag="fdl")
    fd = os.open(f"/dev/{n}", os.O_RDWR)
    try:
        d.ctl_ok("fault", n, "--op", "write", "--delay", "300ms", "--count", "1")
        assert d.stats(n)["faults"][0]["delay_ms"] == 300
        t = time.monotonic()
        assert os.write(fd, b"slow") == 4
        slow = time.monotonic() - t
        t = time.monotonic()
        assert os.write(fd, b"fast") == 4
        fast = time.monotonic() - t
        assert 0.3 <= slow < 3.0, slow
        assert fast < 0.25, fast
        assert os.read(fd, 100) == b"slowfast"
        # Buckets below powers of two: the 300 ms write is at or above 2^18 us, the fast one below
        # (on the kernel shim the fast one went to its stream FIFO once the fault was used up:
        # counted as in_kernel, with no latency).
        write = d.stats(n)["operations"]["write"]
        hist = write["latency"]
        slow_buckets = [b for b in hist if b["below_us"] is None or b["below_us"] > 1 << 18]
        assert write["requests"] == 2, write
        assert (sum(b["count"] for b in hist), sum(b["count"] for b in slow_buckets)) == \
            (2 - write["in_kernel"], 1), write
    finally:
        os.close(fd)
    d.stop_clean()


def test_fault_poll_errno(svc, opts, devemud):
    """An errno on poll: the kernel turns a failed poll request into POLLERR (FUSE and CUSE
    share fuse_file_poll), so poll() reports POLLERR alone and select() marks the fd readable
    and writable (select maps POLLERR to both)."""
    if opts.transport == "kshim":
        pytest.skip("the kernel shim answers poll from its shadow registers without asking the core")
    d, n = loopback(svc, devemud, opts, tag="fpl")
    fd = os.open(f"/dev/{n}", os.O_RDWR)
    try:
        os.write(fd, b"data")
        p = select.poll()
        p.register(fd, select.POLLIN | select.POLLOUT)
        assert p.poll(1000) == [(fd, select.POLLIN | select.POLLOUT)]
        d.ctl_ok("fault", n, "--op", "poll", "--errno", "EIO")
        t = time.monotonic()
        assert p.poll(2000) == [(fd, select.POLLERR)]
        assert time.monotonic() - t < 1.0
        assert select.select([fd], [fd], [fd], 1) == ([fd], [fd], [])
        s = d.stats(n)
        # One POLL request each for poll() and select(): the failed answer (POLLERR) ends the wait.
        assert (s["operations"]["poll"]["errors"], s["faults"][0]["hits"]) == (2, 2)
        d.ctl_ok("fault", n, "--clear")
        assert p.poll(1000) == [(fd, select.POLLIN | select.POLLOUT)]
        assert os.read(fd, 10) == b"data"
    finally:
        os.close(fd)
    d.stop_clean()


def test_fault_ioctl_errno(svc, opts, abi, devemud):
    d, n = loopback(svc, devemud, opts, tag="fio")
    fd = os.open(f"/dev/{n}", os.O_RDWR)
    try:
        os.write(fd, b"12345")
        d.ctl_ok("fault", n, "--op", "ioctl", "--errno", "EPERM", "--count", "2")
        assert errno_of(counters, abi, fd) == errno.EPERM
        assert errno_of(fcntl.ioctl, fd, abi.DEVEMU_IOC_NREAD, bytearray(4)) == errno.EPERM
        assert counters(abi, fd) == (5, 0, 1, 0)
        buf = bytearray(4)
        fcntl.ioctl(fd, abi.DEVEMU_IOC_NREAD, buf)
        assert struct.unpack("=I", buf)[0] == 5
        s = d.stats(n)
        # The failing calls end in their first round; the two that worked took every round.
        assert s["operations"]["ioctl"]["errors"] == 2
        assert s["operations"]["ioctl"]["requests"] == 2 + 2 * IOCTL_ROUNDS[opts.transport]
        assert s["faults"] == []
    finally:
        os.close(fd)
    d.stop_clean()


def test_fault_stats_clear_and_rejected_faults(svc, opts, devemud):
    d, n = loopback(svc, devemud, opts, tag="fst")
    d.ctl_ok("fault", n, "--op", "read", "--errno", "EIO", "--count", "3")
    d.ctl_ok("fault", n, "--op", "write", "--delay", "2s")
    d.ctl_ok("fault", n, "--op", "poll", "--errno", "ETIMEDOUT", "--count", "1")
    faults = d.stats(n)["faults"]
    assert sorted((f["op"], f["errno"], f["delay_ms"], f["short"], f["remaining"], f["hits"]) for f in faults) == [
        ("poll", errno.ETIMEDOUT, 0, None, 1, 0), ("read", errno.EIO, 0, None, 3, 0),
        ("write", 0, 2000, None, -1, 0)], faults
    # One fault per operation: a new one for read replaces the EIO one.
    d.ctl_ok("fault", n, "--op", "read", "--short", "4")
    faults = {f["op"]: f for f in d.stats(n)["faults"]}
    assert len(faults) == 3 and (faults["read"]["errno"], faults["read"]["short"]) == (0, 4), faults
    text = d.ctl_ok("stats", n)
    assert "fault: write errno=0 delay=2000ms short=null remaining=-1 hits=0" in text
    assert "fault: read errno=0 delay=0ms short=4 remaining=-1 hits=0" in text
    assert d.ctl_ok("fault", n, "--clear") == "faults cleared\n"
    assert d.stats(n)["faults"] == [] and "fault:" not in d.ctl_ok("stats", n)
    with open(f"/dev/{n}", "r+b", buffering=0) as f:  # nothing left that fails or waits
        t = time.monotonic()
        f.write(b"abcdefgh")
        assert f.read(100) == b"abcdefgh"
        assert time.monotonic() - t < 1.0

    for args, message in [
        (["--op", "release", "--errno", "EIO"], "op 'release': expected read, write, ioctl, open or poll"),
        (["--op", "read", "--errno", "EBOGUS"], 'errno "EBOGUS": expected a name such as EIO or a number'),
        (["--op", "read", "--errno", "0"], "errno 0: expected a name such as EIO or a number"),
        (["--op", "open", "--short", "1"], "short: only for read and write"),
        (["--op", "read", "--errno", "EIO", "--delay", "5ms"], "give exactly one of errno, delay or short"),
        (["--op", "read"], "give exactly one of errno, delay or short"),
        (["--op", "read", "--errno", "EIO", "--count", "0"], "count: expected a positive number"),
        (["--op", "read", "--delay", "5x"], "--delay '5x': expected a duration such as 50ms or 2s"),
        ([], "fault needs --op read|write|ioctl|open|poll"),
    ]:
        r = d.ctl("fault", n, *args)
        assert (r.returncode, r.stdout, r.stderr) == (1, "", f"devemuctl: {message}\n"), args
    r = d.ctl("fault", "svc-no-such-device", "--op", "read", "--errno", "EIO")
    assert (r.returncode, r.stderr) == (1, "devemuctl: no device 'svc-no-such-device'\n")
    assert d.stats(n)["faults"] == []
    d.stop_clean()


# --short takes a byte count: a non-number, a number too large and a negative one are refused
# (they used to abort devemuctl or wrap to 4294967295).
@pytest.mark.parametrize("value", ["abc", "99999999999999999999", "-1"])
def test_fault_short_bad_value_is_an_error(svc, opts, devemud, value):
    d, n = loopback(svc, devemud, opts, tag="fsn")
    r = d.ctl("fault", n, "--op", "read", "--short", value)
    assert r.returncode == 1, f"devemuctl exit status {r.returncode}, stderr: {r.stderr!r}"
    assert r.stderr == f"devemuctl: --short '{value}': expected a byte count from 0 to 4294967295\n"
    assert d.stats(n)["faults"] == []
    d.stop_clean()


# ============================================================================================
# 5. Privilege drop
# ============================================================================================

def _status(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            fields[k] = v.split()
    return fields


def test_user_drop(svc, opts, transport, devemud):
    uid, gid, _ = nobody()
    d, n = loopback(svc, devemud, opts, tag="usr", extra=("--user", "nobody"))
    d.wait_log(rf"now running as uid {uid} gid {gid}$")
    root_eff = int(_status("self")["CapEff"][0], 16)
    for task in os.listdir(f"/proc/{d.pid}/task"):
        st = _status(f"{d.pid}/task/{task}")
        assert st["Uid"] == [str(uid)] * 4, st["Uid"]
        assert st["Gid"] == [str(gid)] * 4, st["Gid"]
        assert 0 not in [int(g) for g in st["Groups"]], st["Groups"]
        eff, prm = int(st["CapEff"][0], 16), int(st["CapPrm"][0], 16)
        assert eff != 0, "no capabilities left: the daemon could not unmount or create nodes"
        assert eff & ~root_eff == 0 and eff != root_eff, f"CapEff {eff:#x} vs root's {root_eff:#x}"
        assert eff == KEPT_CAPS and prm == KEPT_CAPS, f"CapEff {eff:#x} CapPrm {prm:#x}"
        assert int(st["CapInh"][0], 16) == 0 and int(st["CapAmb"][0], 16) == 0

    # The node still works for root; the control socket still answers and can add and remove.
    with open(f"/dev/{n}", "r+b", buffering=0) as f:
        f.write(b"as root")
        assert f.read(100) == b"as root"
    assert d.ctl_json("list")["devices"][0]["name"] == n
    late = svc.unique("usradd")
    d.extra.append(late)
    assert d.ctl_ok("add", f"{late}=zero") == f"serving /dev/{late}\n"
    with open(f"/dev/{late}", "rb", buffering=0) as f:
        assert f.read(4) == bytes(4)
    assert d.ctl_ok("remove", late) == f"removed {late} (0 open files were cut off)\n"
    svc.wait_for(lambda: transport.gone(late), 2, f"/dev/{late} removed by the unprivileged daemon")
    d.stop_clean()  # and it still removes its nodes and socket at exit


def test_user_unknown(svc, opts):
    r = subprocess.run([opts.devemud, "-f", "--user", "no-such-user-devemu", "--control", "none"],
                       capture_output=True, text=True, timeout=20)
    assert (r.returncode, r.stdout, r.stderr) == (2, "", "devemud: --user: unknown user 'no-such-user-devemu'\n")


# ============================================================================================
# 6. The plugin example and the Python package, against an installed devemu
# ============================================================================================

def _run_or_fail(args, env=None):
    r = subprocess.run(args, capture_output=True, text=True, timeout=900, env=env)
    if r.returncode != 0:
        pytest.fail(f"{' '.join(map(str, args))} failed ({r.returncode}):\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}",
                    pytrace=False)
    return r


@pytest.fixture(scope="session")
def installed(opts, tmp_path_factory):
    """`meson install --destdir` of the build directory, the destdir. --no-rebuild: the suite
    tests the build it is given and never rebuilds a build directory others may be using."""
    dest = tmp_path_factory.mktemp("install") / "destdir"
    _run_or_fail(["meson", "install", "-C", opts.build_dir, "--destdir", str(dest), "--no-rebuild", "--quiet"])
    return dest


@pytest.fixture(scope="session")
def counter_plugin(opts, tmp_path_factory, installed):
    """examples/plugin built the way its README says, against the installed devemu."""
    build = tmp_path_factory.mktemp("plugin") / "build"
    if not (shutil.which("meson") and shutil.which("pkg-config")):
        pytest.fail("meson and pkg-config are needed to build the example plugin", pytrace=False)
    dest = installed
    pcs = list(dest.glob("usr/local/lib/*/pkgconfig/devemu.pc")) + list(dest.glob("usr/local/lib/pkgconfig/devemu.pc"))
    assert pcs, f"no devemu.pc installed under {dest}"
    env = dict(os.environ, PKG_CONFIG_SYSROOT_DIR=str(dest), PKG_CONFIG_PATH=str(pcs[0].parent))
    _run_or_fail(["meson", "setup", str(build), str(opts.repo / "examples" / "plugin")], env=env)
    _run_or_fail(["meson", "compile", "-C", str(build)], env=env)
    so = build / "counter.so"
    assert so.is_file()
    return str(so)


def test_python_package_is_installed_where_the_system_python_finds_it(installed, tmp_path):
    """meson install puts the devemu package (and its pytest plugin) in a directory on the
    system Python's sys.path."""
    r = _run_or_fail(["/usr/bin/python3", "-c", "import sys; print(chr(10).join(sys.path))"])
    sys_path = [p for p in r.stdout.splitlines() if p.startswith("/")]
    found = [p for p in sys_path if (installed / p.lstrip("/") / "devemu" / "__init__.py").is_file()]
    assert found, f"devemu is installed under {sorted(installed.rglob('devemu/__init__.py'))}, none of them on {sys_path}"
    site = installed / found[0].lstrip("/")
    r = _run_or_fail(["/usr/bin/python3", "-c", "import devemu, devemu.pytest_plugin; print(devemu.__file__)"],
                     env=dict(os.environ, PYTHONPATH=str(site), PYTHONDONTWRITEBYTECODE="1"))
    assert r.stdout.strip() == str(site / "devemu" / "__init__.py")


def _readline(fd):
    return os.read(fd, 64)


@pytest.mark.guard(60)
def test_plugin_counter_from_command_line(svc, opts, devemud, counter_plugin):
    r = subprocess.run([opts.devemud, "--plugin", counter_plugin, "--list-models"], capture_output=True,
                       text=True, timeout=20)
    assert r.returncode == 0
    assert re.search(r"^counter\s+counts reads", r.stdout, re.M) and "start=N" in r.stdout
    assert "inject set N" in r.stdout

    name = f"cnt-{os.getpid()}"
    d = devemud(["--transport", opts.transport, "--plugin", counter_plugin,
                 "--device", f"{name}=counter,start=10,step=5"], [name], tag="plg")
    fd = os.open(f"/dev/{name}", os.O_RDWR)
    try:
        assert _readline(fd) == b"10\n"
        assert _readline(fd) == b"15\n"
        assert os.write(fd, b"100\n") == 4
        assert _readline(fd) == b"100\n"
        buf = bytearray(8)
        fcntl.ioctl(fd, COUNTER_GET, buf)
        assert U64.unpack(buf)[0] == 105
        fcntl.ioctl(fd, COUNTER_ADD, U64.pack(1000))
        assert _readline(fd) == b"1105\n"
        assert errno_of(os.write, fd, b"abc") == errno.EINVAL
        assert errno_of(os.read, fd, 2) == errno.EINVAL  # a line does not fit
        assert d.ctl_ok("inject", name, "set", "42") == "counter = 42\n"
        assert _readline(fd) == b"42\n"
        r = d.ctl("inject", name, "bump")
        assert (r.returncode, r.stderr) == (1, "devemuctl: verbs: set N\n")
        assert d.ctl_json("list")["devices"][0]["model"] == "counter"
    finally:
        os.close(fd)
    d.stop_clean()


@pytest.mark.guard(60)
def test_plugin_counter_from_config(svc, opts, devemud, counter_plugin, tmp_path):
    name = f"cnt-{os.getpid()}-cfg"
    sock = svc.sock_path("plgcfg")
    path = tmp_path / "devemud.toml"
    path.write_text(f'[daemon]\ncontrol = "{sock}"\ntransport = "{opts.transport}"\n'
                    f'plugins = ["{counter_plugin}"]\n\n'
                    f'[[device]]\nname = "{name}"\nmodel = "counter"\noptions = {{ start = 7, step = 3 }}\n')
    d = devemud(["-c", str(path)], [name], tag="plgcfg", sock=sock)
    with open(f"/dev/{name}", "rb", buffering=0) as f:
        assert [f.read(64) for _ in range(3)] == [b"7\n", b"10\n", b"13\n"]
    d.stop_clean()


def test_plugin_missing(svc, opts, tmp_path):
    missing = tmp_path / "no-such-plugin.so"
    r = subprocess.run([opts.devemud, "-f", "--plugin", str(missing), "--device", "x=zero", "--control", "none"],
                       capture_output=True, text=True, timeout=20)
    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr == (f"devemud: plugin {missing}: {missing}: cannot open shared object file: "
                        "No such file or directory\n")
    path = tmp_path / "devemud.toml"
    path.write_text(f'[daemon]\nlog_level = "info"\nplugins = ["{missing}"]\n')
    r = subprocess.run([opts.devemud, "-f", "-c", str(path), "--control", "none"],
                       capture_output=True, text=True, timeout=20)
    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr == (f"devemud: {path}:3: key 'daemon.plugins': plugin {missing}: {missing}: cannot open "
                        "shared object file: No such file or directory\n")


def test_plugin_not_a_plugin(svc, opts):
    """A shared object without the plugin entry point is refused with its path."""
    lib = next((p for p in ("/lib/x86_64-linux-gnu/libm.so.6", "/usr/lib/x86_64-linux-gnu/libm.so.6",
                            "/lib/aarch64-linux-gnu/libm.so.6") if os.path.exists(p)), None)
    if lib is None:
        pytest.skip("no libm.so.6 at a known path")
    r = subprocess.run([opts.devemud, "-f", "--plugin", lib, "--device", "x=zero", "--control", "none"],
                       capture_output=True, text=True, timeout=20)
    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr == f"devemud: plugin {lib}: no devemu_plugin_init (did it use DEVEMU_PLUGIN?)\n"


# ============================================================================================
# 7. The systemd unit
# ============================================================================================

def _unit_settings(text):
    settings = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;[":
            continue
        k, _, v = line.partition("=")
        settings.setdefault(k.strip(), []).append(v.strip())
    return settings


def test_systemd_unit(opts, tmp_path):
    src = os.path.join(opts.build_dir, "cuse_dev", "devemud@.service")
    if not shutil.which("systemd-analyze"):
        pytest.fail("systemd-analyze is not installed", pytrace=False)
    text = open(src).read()
    assert re.search(r"^ExecStart=/usr/local/sbin/devemud ", text, re.M), "unexpected ExecStart in the unit"
    unit = tmp_path / "devemud@test.service"
    unit.write_text(re.sub(r"^ExecStart=\S+", f"ExecStart={opts.devemud}", text, flags=re.M))
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout + r.stderr) == (0, ""), f"systemd-analyze verify:\n{r.stdout}{r.stderr}"

    # The check can fail: the same unit with a misspelt key is reported.
    bad = tmp_path / "devemud@bad.service"
    bad.write_text(unit.read_text().replace("PrivateTmp=yes", "PrivateTmp=yes\nProtectHomes=yes"))
    r = subprocess.run(["systemd-analyze", "verify", str(bad)], capture_output=True, text=True, timeout=60)
    assert "ProtectHomes" in r.stdout + r.stderr

    s = _unit_settings(text)
    assert s.get("Type") == ["notify"]
    assert "--foreground" in s["ExecStart"][0].split()
    assert s.get("NoNewPrivileges") == ["yes"]
    assert s.get("ProtectSystem", [""])[0] in ("strict", "full", "yes")
    assert s.get("ProtectHome") == ["yes"]
    assert s.get("PrivateTmp") == ["yes"]
    allowed = s.get("DeviceAllow", [])
    assert "/dev/cuse rw" in allowed and "/dev/fuse rw" in allowed, allowed
    assert "PrivateDevices" not in s, "PrivateDevices= would hide /dev/cuse"
