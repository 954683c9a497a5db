# SPDX-License-Identifier: MIT
# devemu_kshim.ko self-tests: the control ioctls, the client node against kshim_echo (a loopback stand-in
# daemon) and kshim_hostile (a daemon that breaks the protocol), daemon death and re-attach.
"""
The stand-in daemons are started through the `kshim` fixture, which kills what a test left running
and REMOVEs its devices at teardown, so every test starts from a clean module whatever ran before.
The ABI (ioctl numbers, struct devemu_kshim_add, the register offsets, the window layout) comes
from the uapi header through the `abi` fixture (tests/lib/devemu_testlib/abi.py).
"""

import ctypes
import errno
import fcntl
import mmap
import os
import pickle
import random
import select
import signal
import subprocess
import termios
import time

import pytest

from devemu_testlib import guard, processes
from devemu_testlib.abi import IO
from devemu_testlib.daemon import Devemud, device_args
from devemu_testlib.nodes import wait_for, wait_gone

VERBOSE = os.environ.get("KSHIM_SELFTEST_VERBOSE") == "1"

# x86-64 syscall numbers, as /proc/PID/syscall shows them.
READ, WRITE, POLL, OPENAT = "0", "1", "7", "257"


# --------------------------------------------------------------------------------------------
# The module, its devices and the stand-in daemons
# --------------------------------------------------------------------------------------------

class Server:
    """A stand-in daemon (kshim_echo or kshim_hostile), started and waited for ("ready" line)."""

    def __init__(self, argv):
        self.argv = argv
        self.p = processes.popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.buf = b""
        self.err = ""
        line = self.readline(10)
        if not line.startswith("ready"):
            err = self.p.stderr.read() if self.p.poll() is not None else ""
            raise AssertionError(f"{argv}: no 'ready' line (got {line!r}, stderr {err!r})")
        self.ready = line

    def readline(self, timeout):
        """The next stdout line, or "" after timeout s (own buffering: select() cannot see Python's)."""
        end = time.monotonic() + timeout
        fd = self.p.stdout.fileno()
        while b"\n" not in self.buf:
            left = end - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return ""
            chunk = os.read(fd, 4096)
            if not chunk:
                return ""
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode().strip()

    def kill(self, sig=signal.SIGKILL):
        if self.p.poll() is None:
            self.p.send_signal(sig)
        return self.wait()

    def wait(self, timeout=10):
        rc = self.p.wait(timeout)
        self.err = self.p.stderr.read()
        processes.forget(self.p)
        return rc

    def counts(self):
        """kshim_echo's exit line "opens N releases N cancels N" as a dict (after kill/wait)."""
        words = self.err.split()
        assert len(words) == 6 and words[0::2] == ["opens", "releases", "cancels"], self.err
        return dict(zip(words[0::2], map(int, words[1::2])))


class Child:
    """A forked helper that runs fn(*args) and sends back its result (or the errno it failed with)."""

    def __init__(self, fn, *args):
        r, w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            os.close(r)
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
            try:
                res = fn(*args)
            except OSError as e:
                res = ("error", errno.errorcode.get(e.errno, e.errno))
            except BaseException as e:  # noqa: BLE001 (reported to the parent)
                res = ("exception", repr(e))
            os.write(w, pickle.dumps(res))
            os._exit(0)
        os.close(w)
        processes.register(self.pid)
        self.r = r
        self.reaped = False

    def wait_blocked(self, syscall_nrs, timeout=10):
        """Waits until the child sits in one of the syscalls (x86-64 numbers)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                with open(f"/proc/{self.pid}/syscall") as f:
                    nr = f.read().split()[0]
                with open(f"/proc/{self.pid}/stat") as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
                if nr in syscall_nrs and state in "SD":
                    time.sleep(0.05)
                    return
            except (OSError, IndexError):
                pass
            time.sleep(0.01)
        raise AssertionError(f"child {self.pid} never blocked in syscall {syscall_nrs}")

    def result(self, timeout):
        """Its result, or None if it has none after timeout s."""
        r, _, _ = select.select([self.r], [], [], timeout)
        if not r:
            return None
        data = b""
        while True:
            chunk = os.read(self.r, 65536)
            if not chunk:
                break
            data += chunk
        self.reap()
        return pickle.loads(data)

    def wait(self):
        """Reaps it; its wait status."""
        _, status = os.waitpid(self.pid, 0)
        os.close(self.r)
        processes.forget(self.pid)
        self.reaped = True
        return status

    def reap(self):
        if not self.reaped:
            self.wait()

    def kill(self):
        if not self.reaped:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


class Kshim:
    """The module's control node, its devices in sysfs, and the daemons and helpers a test started."""

    def __init__(self, abi, bin_dir, opts):
        self.abi = abi
        self.bin = bin_dir
        self.opts = opts
        self.control = f"/dev/{abi.DEVEMU_KSHIM_CONTROL_NAME}"
        self.add_struct = abi.struct("devemu_kshim_add")
        self.regs = abi.struct("devemu_regs")
        self.ring = abi.struct("devemu_ring")
        self.names = []
        self.servers = []
        self.children = []
        self.daemons = []

    # -- control ioctls ---------------------------------------------------------------------

    def add_arg(self, name, mode=0o600, uid=0, gid=0, depth=0, slot=0, doorbell=-1, irq=-1, flags=0, features=None,
                rx=0, tx=0, capacity=0, file_fifo_count=0, file_fifo_size=0, reserved=None):
        """A struct devemu_kshim_add (all the module's features unless told otherwise)."""
        return self.add_struct.pack(name=name, mode=mode, uid=uid, gid=gid, queue_depth=depth, slot_size=slot,
                                    doorbell_fd=doorbell, irq_fd=irq, flags=flags,
                                    features=self.abi.DEVEMU_KSHIM_FEATURES if features is None else features,
                                    rx_fifo_size=rx, tx_fifo_size=tx, stream_capacity=capacity,
                                    file_fifo_count=file_fifo_count, file_fifo_size=file_fifo_size,
                                    reserved=reserved or (0,) * 3)

    def name_arg(self, name):
        """The REMOVE argument: the name in DEVEMU_DEVICE_NAME_MAX bytes."""
        raw = name.encode() if isinstance(name, str) else name
        return bytearray(raw.ljust(self.abi.DEVEMU_DEVICE_NAME_MAX, b"\0"))

    def remove(self, name):
        ctl = os.open(self.control, os.O_RDWR)
        try:
            fcntl.ioctl(ctl, self.abi.DEVEMU_KSHIM_IOC_REMOVE, self.name_arg(name))
        finally:
            os.close(ctl)

    # -- sysfs ------------------------------------------------------------------------------

    def device(self, name):
        """Registers NAME as one of this test's devices (REMOVEd at teardown if still there)."""
        if name not in self.names:
            self.names.append(name)
        return f"/dev/{name}"

    @staticmethod
    def sysfs(name, attr):
        with open(f"/sys/class/devemu/{name}/{attr}") as f:
            return f.read().strip()

    def counter(self, name, attr):
        return int(self.sysfs(name, attr))

    def requests(self, name):
        """/sys/class/devemu/NAME/requests: {op: count}."""
        return {op: int(n) for op, n in (line.split() for line in self.sysfs(name, "requests").splitlines())}

    # -- client-side ioctls -----------------------------------------------------------------

    def nread(self, fd):
        b = bytearray(4)
        fcntl.ioctl(fd, self.abi.DEVEMU_IOC_NREAD, b, True)
        return int.from_bytes(b, "little")

    def reverse_arg(self, ptr, length):
        """struct kshim_test_rev for KSHIM_TEST_IOC_REVERSE (tests/kshim/kshim_test.h)."""
        return self.abi.struct("kshim_test_rev").pack(ptr=ptr, len=length)

    # -- daemons ----------------------------------------------------------------------------

    def echo(self, name, *args):
        self.device(name)
        s = Server([str(self.bin / "kshim_echo"), "-m", "0666", *args, name])
        self.servers.append(s)
        return s

    def hostile(self, mode, name):
        self.device(name)
        s = Server([str(self.bin / "kshim_hostile"), mode, name])
        self.servers.append(s)
        return s

    def devemud(self, name):
        """devemud --transport kshim serving NAME as a loopback (ATTACHes by itself if NAME exists)."""
        self.device(name)
        d = Devemud(self.opts, device_args([(name, "loopback,capacity=8192,mode=0666")], "kshim"), [name],
                    transport="kshim", tag="kshim")
        self.daemons.append(d)
        d.start()
        assert self.sysfs(name, "state") == "serving"
        return d

    def child(self, fn, *args):
        c = Child(fn, *args)
        self.children.append(c)
        return c

    def teardown(self):
        for c in self.children:
            c.kill()
            c.reap()
        for s in self.servers:
            if s.p.poll() is None:
                s.kill()
        for d in self.daemons:
            d.cleanup()
        for name in self.names:
            if os.path.exists(f"/sys/class/devemu/{name}"):
                try:
                    self.remove(name)
                except OSError:
                    pass


@pytest.fixture
def kshim(abi, kshim_bin, opts):
    k = Kshim(abi, kshim_bin, opts)
    yield k
    k.teardown()


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------

def errno_of(fn):
    try:
        fn()
    except OSError as e:
        return e.errno
    return 0


def expect_errno(fn, want, what):
    got = errno_of(fn)
    assert got == want, (f"{what}: expected {errno.errorcode.get(want, want)}, got "
                         f"{errno.errorcode.get(got, got) if got else 'success'}")


def blocking_read(path, n=100):
    fd = os.open(path, os.O_RDONLY)
    return ("read", os.read(fd, n))


def blocking_write(path, data):
    fd = os.open(path, os.O_WRONLY)
    return ("wrote", os.write(fd, data))


def blocking_poll(path, events=select.POLLIN, ms=20000):
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    p = select.poll()
    p.register(fd, events)
    return ("poll", [ev for _, ev in p.poll(ms)])


def fionread(fd):
    b = bytearray(4)
    fcntl.ioctl(fd, termios.FIONREAD, b, True)
    return int.from_bytes(b, "little", signed=True)


def read_all_nonblock(fd):
    out = b""
    while True:
        try:
            b = os.read(fd, 65536)
        except BlockingIOError:
            return out
        if not b:
            return out
        out += b


def raw_call(name, fd, arg, n):
    """read/write through libc: no PEP 475 retry, so EINTR and partial counts are seen as they are."""
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(arg, n) if isinstance(arg, bytes) else ctypes.create_string_buffer(n)
    ret = getattr(libc, name)(fd, buf, n)
    return (name, ret, ctypes.get_errno() if ret < 0 else 0)


def interrupted(call, path, flags, arg, n, after=0.5):
    """In a child: SIGALRM (a handler, not SA_RESTART) after `after` s of a blocking call."""
    fd = os.open(path, flags)
    signal.signal(signal.SIGALRM, lambda *a: None)
    signal.siginterrupt(signal.SIGALRM, True)
    signal.setitimer(signal.ITIMER_REAL, after)
    return raw_call(call, fd, arg, n)


def raw_call_interrupted(call, fd, arg, n, after=0.5):
    """In this process: a blocking call cut by SIGALRM after `after` s; the guard's handler is put back."""
    signal.signal(signal.SIGALRM, lambda *a: None)
    signal.siginterrupt(signal.SIGALRM, True)
    signal.setitimer(signal.ITIMER_REAL, after)
    try:
        return raw_call(call, fd, arg, n)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        guard.install()


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------

def test_control_validation(kshim, abi):
    """ADD/ATTACH/REMOVE reject every malformed argument; the control node is root only."""
    k = kshim
    st = os.stat(k.control)
    assert (st.st_mode & 0o777, st.st_uid) == (0o600, 0), f"{k.control} mode {oct(st.st_mode)} uid {st.st_uid}"
    ctl = os.open(k.control, os.O_RDWR)
    db, irq = os.eventfd(0, os.EFD_CLOEXEC), os.eventfd(0, os.EFD_CLOEXEC)
    rp, wp = os.pipe()
    ok = dict(doorbell=db, irq=irq)
    k.device("kst-ctl")
    ADD, ATTACH, REMOVE = abi.DEVEMU_KSHIM_IOC_ADD, abi.DEVEMU_KSHIM_IOC_ATTACH, abi.DEVEMU_KSHIM_IOC_REMOVE
    try:
        bad = [
            ("empty name", k.add_arg("", **ok), errno.EINVAL),
            ("slash", k.add_arg("a/b", **ok), errno.EINVAL),
            ("space", k.add_arg("a b", **ok), errno.EINVAL),
            ("latin-1 letter", k.add_arg(b"caf\xe9", **ok), errno.EINVAL),
            ("no NUL", k.add_arg(b"x" * abi.DEVEMU_DEVICE_NAME_MAX, **ok), errno.EINVAL),
            ("dotdot", k.add_arg("..", **ok), errno.EINVAL),
            ("control name", k.add_arg(abi.DEVEMU_KSHIM_CONTROL_NAME, **ok), errno.EINVAL),
            ("depth 3", k.add_arg("kst-v", depth=3, **ok), errno.EINVAL),
            ("depth 512", k.add_arg("kst-v", depth=2 * abi.DEVEMU_MAX_QUEUE_DEPTH, **ok), errno.EINVAL),
            ("slot 1000", k.add_arg("kst-v", slot=1000, **ok), errno.EINVAL),
            ("slot 2M", k.add_arg("kst-v", slot=2 * abi.DEVEMU_MAX_SLOT_SIZE, **ok), errno.EINVAL),
            ("flags", k.add_arg("kst-v", flags=2, **ok), errno.EINVAL),
            ("reserved", k.add_arg("kst-v", reserved=(0, 0, 1), **ok), errno.EINVAL),
            ("loop without FIFOs", k.add_arg("kst-v", capacity=4096, **ok), errno.EINVAL),
            ("loop without rx", k.add_arg("kst-v", tx=4096, capacity=4096, **ok), errno.EINVAL),
            ("loop larger than tx", k.add_arg("kst-v", rx=4096, tx=4096, capacity=4097, **ok), errno.EINVAL),
            ("rx FIFO 5000", k.add_arg("kst-v", rx=5000, **ok), errno.EINVAL),
            ("rx FIFO 2K", k.add_arg("kst-v", rx=2048, **ok), errno.EINVAL),
            ("tx FIFO 8M", k.add_arg("kst-v", tx=2 * abi.DEVEMU_MAX_FIFO_SIZE, **ok), errno.EINVAL),
            ("FIFO without the stream feature",
             k.add_arg("kst-v", rx=4096, features=abi.DEVEMU_KSHIM_FEATURES & ~abi.DEVEMU_F_STREAM, **ok),
             errno.EINVAL),
            ("per-file FIFOs without the feature",
             k.add_arg("kst-v", file_fifo_count=2, file_fifo_size=4096,
                       features=abi.DEVEMU_KSHIM_FEATURES & ~abi.DEVEMU_F_FILE_STREAM, **ok), errno.EINVAL),
            ("per-file FIFO count 257",
             k.add_arg("kst-v", file_fifo_count=abi.DEVEMU_MAX_FILE_FIFOS + 1, file_fifo_size=4096, **ok),
             errno.EINVAL),
            ("per-file FIFO size without a count", k.add_arg("kst-v", file_fifo_size=4096, **ok), errno.EINVAL),
            ("per-file FIFO count without a size", k.add_arg("kst-v", file_fifo_count=1, **ok), errno.EINVAL),
            ("per-file FIFO 5000", k.add_arg("kst-v", file_fifo_count=1, file_fifo_size=5000, **ok), errno.EINVAL),
            ("per-file FIFO 2K", k.add_arg("kst-v", file_fifo_count=1, file_fifo_size=2048, **ok), errno.EINVAL),
            ("per-file FIFO 128K",
             k.add_arg("kst-v", file_fifo_count=1, file_fifo_size=2 * abi.DEVEMU_MAX_FILE_FIFO_SIZE, **ok),
             errno.EINVAL),
            ("features", k.add_arg("kst-v", features=1 << 10, **ok), errno.EINVAL),
            ("mode", k.add_arg("kst-v", mode=0o4666, **ok), errno.EINVAL),
            ("uid -1", k.add_arg("kst-v", uid=0xFFFFFFFF, **ok), errno.EINVAL),
            ("irq fd closed", k.add_arg("kst-v", doorbell=db, irq=9999), errno.EBADF),
            ("irq fd a pipe", k.add_arg("kst-v", doorbell=db, irq=rp), errno.EINVAL),
            ("doorbell a pipe", k.add_arg("kst-v", doorbell=wp, irq=irq), errno.EINVAL),
            ("doorbell == irq", k.add_arg("kst-v", doorbell=irq, irq=irq), errno.EINVAL),
        ]
        for what, arg, want in bad:
            expect_errno(lambda: fcntl.ioctl(ctl, ADD, arg), want, f"ADD with {what}")
        assert not os.path.exists("/dev/kst-v"), "a rejected ADD left /dev/kst-v"
        expect_errno(lambda: fcntl.ioctl(ctl, ATTACH, k.add_arg("kst-none", **ok)), errno.ENOENT, "ATTACH unknown")
        expect_errno(lambda: fcntl.ioctl(ctl, REMOVE, k.name_arg("kst-none")), errno.ENOENT, "REMOVE unknown")
        expect_errno(lambda: fcntl.ioctl(ctl, REMOVE, bytearray(b"x" * abi.DEVEMU_DEVICE_NAME_MAX)), errno.EINVAL,
                     "REMOVE without NUL")
        expect_errno(lambda: fcntl.ioctl(ctl, IO(0xDE, 0x4F)), errno.ENOTTY, "unknown control ioctl")

        # Not root: the fd is not enough for an administrator's device (a user device: test_user_devices).
        pid = os.fork()
        if pid == 0:
            os.setgid(65534)
            os.setuid(65534)
            e = errno_of(lambda: fcntl.ioctl(ctl, ADD, k.add_arg("kst-v", **ok)))
            os._exit(0 if e == errno.EPERM else 1)
        assert os.waitpid(pid, 0)[1] == 0, "ADD by a non-root holder of the control fd did not fail with EPERM"

        # A valid ADD, with python as the daemon: the registers of the default geometry.
        chan = fcntl.ioctl(ctl, ADD, k.add_arg("kst-ctl", mode=0o640, uid=1, gid=2, **ok))
        try:
            assert fcntl.fcntl(chan, fcntl.F_GETFD) & fcntl.FD_CLOEXEC, "channel fd without FD_CLOEXEC"
            st = os.stat("/dev/kst-ctl")
            assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o640, 1, 2), \
                f"/dev/kst-ctl mode {oct(st.st_mode)} uid {st.st_uid} gid {st.st_gid}"
            assert os.major(st.st_rdev) > 0 and (st.st_mode & 0o170000) == 0o020000, "not a character device"
            lay = abi.layout()
            page = abi.DEVEMU_WINDOW_PAGE
            with mmap.mmap(chan, page, mmap.MAP_SHARED, mmap.PROT_READ) as m:
                regs = k.regs.unpack_from(m)
            want = dict(magic=abi.DEVEMU_MAGIC, abi_version=abi.DEVEMU_ABI_VERSION,
                        queue_depth=abi.DEVEMU_DEFAULT_QUEUE_DEPTH, slot_size=abi.DEVEMU_DEFAULT_SLOT_SIZE,
                        max_files=abi.DEVEMU_MAX_FILES, window_size=lay.window_size, sq_offset=lay.sq_offset,
                        cq_offset=lay.cq_offset, data_offset=lay.data_offset,
                        features_offered=abi.DEVEMU_KSHIM_FEATURES, status=0, attach_epoch=1,
                        name=b"kst-ctl".ljust(abi.DEVEMU_DEVICE_NAME_MAX, b"\0"))
            got = {f: regs[f] for f in want}
            assert got == want, "registers of a new window"
            flags_at = lay.sq_offset + k.ring.offset("flags")
            with mmap.mmap(chan, lay.window_size, mmap.MAP_SHARED) as m:
                sq_flags = int.from_bytes(m[flags_at:flags_at + 4], "little")
            assert sq_flags == abi.DEVEMU_RING_NEED_KICK, "SQ flags should start with NEED_KICK alone"
            expect_errno(lambda: mmap.mmap(chan, page, mmap.MAP_PRIVATE), errno.EINVAL, "MAP_PRIVATE mmap")
            expect_errno(lambda: mmap.mmap(chan, lay.window_size + page, mmap.MAP_SHARED), errno.EINVAL,
                         "mmap past the window")
            assert k.sysfs("kst-ctl", "state") == "serving"
            expect_errno(lambda: fcntl.ioctl(ctl, ADD, k.add_arg("kst-ctl", **ok)), errno.EEXIST, "duplicate ADD")
            expect_errno(lambda: fcntl.ioctl(ctl, ATTACH, k.add_arg("kst-ctl", **ok)), errno.EBUSY,
                         "ATTACH to a served device")
        finally:
            os.close(chan)
        assert k.sysfs("kst-ctl", "state") == "nosrv", "closing the channel did not detach"
        expect_errno(lambda: os.open("/dev/kst-ctl", os.O_RDWR), errno.ENODEV, "open without a daemon")

        # ATTACH with another geometry: a new window in epoch 2.
        chan = fcntl.ioctl(ctl, ATTACH, k.add_arg("kst-ctl", depth=2, slot=8192, **ok))
        lay = abi.layout(2, 8192)
        with mmap.mmap(chan, lay.window_size, mmap.MAP_SHARED) as m:
            regs = k.regs.unpack_from(m)
        assert (regs["attach_epoch"], regs["window_size"], regs["queue_depth"], regs["slot_size"]) == \
            (2, lay.window_size, 2, 8192), "the window after ATTACH"
        assert (k.sysfs("kst-ctl", "attach_epoch"), k.sysfs("kst-ctl", "state")) == ("2", "serving")
        fcntl.ioctl(ctl, REMOVE, k.name_arg("kst-ctl"))
        assert wait_gone("/dev/kst-ctl"), "REMOVE left the node"
        assert not os.path.exists("/sys/class/devemu/kst-ctl"), "REMOVE left the sysfs device"
        p = select.poll()
        p.register(chan, select.POLLIN)
        assert p.poll(0) == [(chan, select.POLLERR | select.POLLHUP)], "channel fd of a removed device"
        os.close(chan)
        # The default geometry again (depth and slot 0).
        chan = fcntl.ioctl(ctl, ADD, k.add_arg("kst-ctl", **ok))
        os.close(chan)
        fcntl.ioctl(ctl, REMOVE, k.name_arg("kst-ctl"))
    finally:
        for fd in (ctl, db, irq, rp, wp):
            os.close(fd)


def as_user(uid, fn, *args):
    """fn(*args) in a child running as uid (gid uid, no other group); its result, or ("error", ERRNO)."""
    def run():
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        return fn(*args)
    c = Child(run)
    res = c.result(30)
    assert res is not None, f"the child as uid {uid} did not answer"
    return res


def test_user_devices(kshim, abi):
    """Without CAP_SYS_ADMIN, whoever may open the control node adds user devices of its own only: their
    nodes in /dev/devemu-user/UID/, owned by the user, no access for others, a bounded window and
    number; another user neither finds, attaches nor removes them; root removes them by sysfs name."""
    k = kshim
    ADD, ATTACH, REMOVE = abi.DEVEMU_KSHIM_IOC_ADD, abi.DEVEMU_KSHIM_IOC_ATTACH, abi.DEVEMU_KSHIM_IOC_REMOVE
    USER = abi.DEVEMU_KSHIM_ADD_USER
    alice, bob = 4242, 4343
    for uid in (alice, bob):
        for n in ("kst-u", "kst-u2", "kst-u3"):
            k.device(f"u{uid}:{n}")
    st = os.stat(k.control)
    param = "/sys/module/devemu_kshim/parameters/max_user_devices"
    with open(param) as f:
        max_user = f.read().strip()
    # The udev rule's setup: a group (here the users' own gids, one at a time) may open the node.
    os.chmod(k.control, 0o666)

    def user_session(uid, ops):
        """Runs ops (name, cmd, add_arg kwargs or a name) as uid on its own control fd; errno per op."""
        ctl = os.open(k.control, os.O_RDWR)
        db, irq = os.eventfd(0), os.eventfd(0)
        out, keep = [], []
        for cmd, arg in ops:
            if cmd == "remove":
                out.append(errno_of(lambda: fcntl.ioctl(ctl, REMOVE, k.name_arg(arg))))
                continue
            try:
                keep.append(fcntl.ioctl(ctl, ADD if cmd == "add" else ATTACH,
                                        k.add_arg(doorbell=db, irq=irq, **arg)))
                out.append(0)
            except OSError as e:
                out.append(e.errno)
        return out

    def mine(owner, name, **kw):
        """An ADD argument for a user device of owner's (node owner and group owner's), kw changed."""
        return dict(dict(name=name, uid=owner, gid=owner, mode=0o600, flags=USER), **kw)

    try:
        res = as_user(alice, user_session, alice, [
            ("add", mine(alice, "kst-u", flags=0)),            # an administrator's device: EPERM
            ("add", mine(alice, "kst-u", uid=0)),              # a node of another user
            ("add", mine(alice, "kst-u", gid=0)),              # a group it is not in
            ("add", mine(alice, "kst-u", mode=0o604)),         # access for others
            ("add", mine(alice, "kst-u", depth=256, slot=1 << 20)),   # a 256 MiB window
            ("add", mine(alice, "kst-u", depth=16, slot=1 << 20,  # 16 MiB of slots and a per-file FIFO
                         file_fifo_count=1, file_fifo_size=4096)),
            ("add", mine(alice, "kst-u", mode=0o660)),         # fine
            ("add", mine(alice, "kst-u")),                     # its own name twice
        ])
        assert res == [errno.EPERM] * 6 + [0, errno.EEXIST], f"alice's ADDs: {res}"
        st_node = os.stat(f"/dev/{abi.DEVEMU_KSHIM_USER_DIR}/{alice}/kst-u")
        assert (st_node.st_uid, st_node.st_gid, st_node.st_mode & 0o777) == (alice, alice, 0o660)
        assert not os.path.exists("/dev/kst-u"), "a user device's node landed in /dev"
        assert k.sysfs(f"u{alice}:kst-u", "owner") == str(alice)
        assert k.sysfs(f"u{alice}:kst-u", "state") == "nosrv"  # the child's channel went with it

        res = as_user(bob, user_session, bob, [
            ("attach", mine(bob, "kst-u")),        # alice's device is not bob's to serve
            ("remove", f"u{alice}:kst-u"),          # nor to remove by its sysfs name
            ("remove", "kst-u"),                     # nor by its name
            ("add", mine(bob, "kst-u")),           # bob's own kst-u, beside alice's
            ("remove", "kst-u"),                     # removes bob's
            ("attach", mine(bob, "kst-u")),        # gone: alice's is still not found
        ])
        assert res == [errno.ENOENT, errno.ENOENT, errno.ENOENT, 0, 0, errno.ENOENT], f"bob's calls: {res}"
        assert os.path.exists(f"/sys/class/devemu/u{alice}:kst-u"), "bob's calls reached alice's device"
        assert not os.path.exists(f"/sys/class/devemu/u{bob}:kst-u")

        res = as_user(alice, user_session, alice, [("attach", mine(alice, "kst-u"))])
        assert res == [0], f"alice re-attaching her own device: {res}"
        assert k.sysfs(f"u{alice}:kst-u", "attach_epoch") == "2"

        with open(param, "w") as f:
            f.write("2")
        res = as_user(alice, user_session, alice, [("add", mine(alice, "kst-u2")), ("add", mine(alice, "kst-u3"))])
        assert res == [0, errno.EDQUOT], f"alice past max_user_devices=2: {res}"

        # The administrator removes a user's device by its sysfs name.
        k.remove(f"u{alice}:kst-u")
        assert wait_gone(f"/dev/{abi.DEVEMU_KSHIM_USER_DIR}/{alice}/kst-u"), "root's REMOVE left alice's node"
        res = as_user(alice, user_session, alice, [("remove", "kst-u2")])
        assert res == [0]
    finally:
        with open(param, "w") as f:
            f.write(max_user)
        os.chmod(k.control, st.st_mode & 0o7777)


def test_echo_io(kshim):
    """read/write/poll/ioctl through the window against the loopback stand-in."""
    k = kshim
    name, path = "kst-echo", "/dev/kst-echo"
    s = k.echo(name, "-d", "8", "-s", "4096", "-c", "262144")
    try:
        assert s.ready == "ready epoch=1 depth=8 slot=4096"
        fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
        assert os.read(fd, 0) == b"" and os.write(fd, b"") == 0, "zero-length read/write"
        expect_errno(lambda: os.read(fd, 10), errno.EAGAIN, "read of an empty FIFO with O_NONBLOCK")
        expect_errno(lambda: os.lseek(fd, 0, os.SEEK_SET), errno.ESPIPE, "lseek")
        expect_errno(lambda: os.pread(fd, 1, 0), errno.ESPIPE, "pread")
        assert os.write(fd, b"hello") == 5
        assert (fionread(fd), k.nread(fd)) == (5, 5), "FIONREAD / DEVEMU_IOC_NREAD"
        assert (os.read(fd, 3), os.read(fd, 100)) == (b"hel", b"lo"), "read back"
        # Writes larger than a slot go in slot-size chunks; reads return at most a slot.
        data = os.urandom(100000)
        assert os.write(fd, data) == 100000, "a 100000-byte write (slot 4096)"
        assert fionread(fd) == 100000, "FIONREAD after the big write"
        sizes = []
        back = b""
        while len(back) < len(data):
            b = os.read(fd, 65536)
            sizes.append(len(b))
            back += b
        assert sizes == [4096] * 24 + [1696], f"reads of 65536 return a slot each: {sizes}"
        assert back == data, "big write read back differs"
        # Pointer-chasing ioctl: three rounds (struct, then the buffer it points to).
        cbuf = ctypes.create_string_buffer(b"abcdefgh", 8)
        arg = k.reverse_arg(ctypes.addressof(cbuf), 8)
        r = fcntl.ioctl(fd, k.abi.KSHIM_TEST_IOC_REVERSE, arg, True)
        assert (r, cbuf.raw) == (8, b"hgfedcba"), "KSHIM_TEST_IOC_REVERSE"
        arg = k.reverse_arg(8, 8)  # a pointer to nowhere
        expect_errno(lambda: fcntl.ioctl(fd, k.abi.KSHIM_TEST_IOC_REVERSE, arg, True), errno.EFAULT,
                     "REVERSE with a bad pointer")
        expect_errno(lambda: fcntl.ioctl(fd, k.abi.DEVEMU_IOC_NREAD, 16), errno.EFAULT, "NREAD to a bad pointer")
        expect_errno(lambda: fcntl.ioctl(fd, IO(0x54, 0x99), 0), errno.ENOTTY, "unknown ioctl")
        # poll readiness from the shadow registers, and wake-ups.
        p = select.poll()
        p.register(fd, select.POLLIN | select.POLLOUT)
        assert p.poll(0) == [(fd, select.POLLOUT)], "poll on empty"
        c = k.child(blocking_poll, path, select.POLLIN, 20000)
        c.wait_blocked([POLL])
        t0 = time.monotonic()
        os.write(fd, b"x")
        res = c.result(5)
        assert res == ("poll", [select.POLLIN]), f"poller not woken by a write: {res}"
        dt = time.monotonic() - t0
        assert os.read(fd, 10) == b"x", "read after poll"
        # Edge-triggered epoll sees each arrival.
        ep = select.epoll()
        ep.register(fd, select.EPOLLIN | select.EPOLLET)
        assert ep.poll(0) == [], "ET epoll on empty"
        for i in range(3):
            os.write(fd, b"y")
            assert ep.poll(2) == [(fd, select.EPOLLIN)], f"ET epoll arrival {i}"
        # Another file's shadow changing (an open, a close) is not an event of this one.
        os.close(os.open(path, os.O_RDWR))
        assert ep.poll(0.3) == [], "ET epoll reported an open/close of another file"
        ep.close()
        assert read_all_nonblock(fd) == b"yyy"
        os.close(fd)
        print(f"    poll wake-up after a write: {dt * 1000:.1f} ms")
    finally:
        rc = s.kill(signal.SIGTERM)
    assert rc == 0, f"kshim_echo exit {rc}: {s.err}"
    # Three opens: ours, the poller's, the open/close beside the epoll.
    assert s.counts() == {"opens": 3, "releases": 3, "cancels": 0}


def test_signals(kshim):
    """A signal ends a blocked read with EINTR (one CANCEL); a partial write returns its count."""
    k = kshim
    name, path = "kst-sig", "/dev/kst-sig"
    s = k.echo(name, "-r", "-c", "4096")
    try:
        res = k.child(interrupted, "read", path, os.O_RDONLY, None, 10).result(10)
        assert res == ("read", -1, errno.EINTR), "interrupted read"
        assert k.requests(name)["cancel"] == 1, "one CANCEL expected"
        fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
        assert os.write(fd, b"a" * 4086) == 4086, "fill to capacity - 10"
        res = k.child(interrupted, "write", path, os.O_WRONLY, b"b" * 100, 100).result(10)
        assert res == ("write", 10, 0), "interrupted partial write should return 10"
        back = read_all_nonblock(fd)
        assert back == b"a" * 4086 + b"b" * 10, f"FIFO after the partial write: {len(back)} bytes"
        os.close(fd)
    finally:
        rc = s.kill(signal.SIGTERM)
    assert rc == 0 and wait_gone(path), f"kshim_echo -r: exit {rc}, node left: {os.path.exists(path)}"
    # Three opens (two children, ours); the read and the write were each cancelled once.
    assert s.counts() == {"opens": 3, "releases": 3, "cancels": 2}


def test_concurrency(kshim):
    """Every tag busy (depth 2): a close does not block and its RELEASE waits for a tag; then callers
    contending for tags (depth 4), data integrity."""
    k = kshim
    name, path = "kst-conc", "/dev/kst-conc"
    s = k.echo(name, "-r", "-d", "2", "-s", "4096", "-c", "1048576")
    try:
        spare = os.open(path, os.O_RDWR)
        # Two blocked readers hold both tags (parked requests keep theirs): a close must not block, its
        # RELEASE waits in the backlog and gets the first tag freed, before any new request.
        r1 = k.child(interrupted, "read", path, os.O_RDONLY, None, 5, 1.5)
        r2 = k.child(blocking_read, path, 5)
        r1.wait_blocked([READ])
        r2.wait_blocked([READ])
        t0 = time.monotonic()
        os.close(spare)
        assert time.monotonic() - t0 < 0.5, "close blocked while every tag was busy"
        assert r1.result(10) == ("read", -1, errno.EINTR), "r1 interrupted"
        w = k.child(blocking_write, path, b"01234")
        assert w.result(10) == ("wrote", 5), "writer"
        assert r2.result(10) == ("read", b"01234"), "reader"
    finally:
        rc = s.kill(signal.SIGTERM)
    assert rc == 0, f"exit {rc}"
    c = s.counts()
    assert (c["opens"], c["releases"]) == (4, 4)

    # 3 readers and 3 writers, 200 messages each, through 4 tags: parked readers hold at most 3, so the
    # writers contend for the last one (more blocked callers than tags would deadlock: parked requests
    # keep their tags, see kshim/README.md).
    s = k.echo(name, "-r", "-d", "4", "-s", "4096", "-c", "1048576")
    try:
        n, msgs, size = 3, 200, 64

        def writer(i):
            wfd = os.open(path, os.O_WRONLY)
            for _ in range(msgs):
                os.write(wfd, bytes([i]) * size)
            return ("ok",)

        def reader():
            rfd = os.open(path, os.O_RDONLY)
            got = 0
            counts = [0] * n
            while got < msgs * size:
                b = os.read(rfd, min(size, msgs * size - got))
                got += len(b)
                for x in b:
                    counts[x] += 1
            return ("ok", counts)
        ws = [k.child(writer, i) for i in range(n)]
        rs = [k.child(reader) for _ in range(n)]
        for c in ws:
            assert c.result(120) == ("ok",), "a writer failed"
        total = [0] * n
        for c in rs:
            res = c.result(120)
            assert res and res[0] == "ok", f"a reader failed: {res}"
            total = [a + b for a, b in zip(total, res[1])]
        assert total == [msgs * size] * n, "bytes per writer"
    finally:
        rc = s.kill(signal.SIGTERM)
    assert rc == 0, f"exit {rc}"
    c = s.counts()
    assert (c["opens"], c["releases"]) == (2 * n, 2 * n)


def test_no_features(kshim):
    """A daemon accepting no feature: poll round trips, restricted ioctls, no CANCEL (abandon), always kick."""
    k = kshim
    name, path = "kst-nofeat", "/dev/kst-nofeat"
    s = k.echo(name, "-f", "0", "-d", "2")
    try:
        fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
        p = select.poll()
        p.register(fd, select.POLLIN | select.POLLOUT)
        assert p.poll(0) == [(fd, select.POLLOUT)], "poll round trip on empty"
        os.write(fd, b"abc")
        assert k.nread(fd) == 3, "DEVEMU_IOC_NREAD restricted"
        expect_errno(lambda: fionread(fd), errno.ENOTTY, "FIONREAD without the shadow and without retry")
        cbuf = ctypes.create_string_buffer(b"abcd", 4)
        arg = k.reverse_arg(ctypes.addressof(cbuf), 4)
        expect_errno(lambda: fcntl.ioctl(fd, k.abi.KSHIM_TEST_IOC_REVERSE, arg, True), errno.ENOTTY,
                     "pointer ioctl restricted")
        assert os.read(fd, 10) == b"abc", "read"
        c = k.child(blocking_poll, path, select.POLLIN, 20000)
        c.wait_blocked([POLL])
        os.write(fd, b"z")
        res = c.result(5)
        assert res == ("poll", [select.POLLIN]), f"poll round trip not woken: {res}"
        assert os.read(fd, 10) == b"z", "read z"

        # No CANCEL: a signalled caller abandons its request, which stays parked in the daemon, holding
        # its tag, until it completes: here it takes the next bytes written.
        rfd = os.open(path, os.O_RDONLY)
        res = raw_call_interrupted("read", rfd, None, 10)
        assert res == ("read", -1, errno.EINTR), "abandoned read"
        os.write(fd, b"lost")
        time.sleep(0.2)
        expect_errno(lambda: os.read(fd, 10), errno.EAGAIN, "the abandoned read did not take the data")
        os.close(rfd)
        os.write(fd, b"kept")
        assert os.read(fd, 10) == b"kept", "device unusable after an abandoned request"
        os.close(fd)
    finally:
        rc = s.kill(signal.SIGTERM)
    assert rc == 0, f"exit {rc}: {s.err}"
    # Three opens (ours, the poller's, the abandoning reader's); no CANCEL without the feature.
    assert s.counts() == {"opens": 3, "releases": 3, "cancels": 0}


def test_daemon_death(kshim):
    """SIGKILL of the daemon: blocked callers get errors within a second, new opens ENODEV, old files EIO;
    a new daemon ATTACHes (epoch 2) and serves; rmmod is refused while a client file is open."""
    k = kshim
    name, path = "kst-death", "/dev/kst-death"
    wname, wpath = "kst-deathw", "/dev/kst-deathw"
    s = k.echo(name)
    sw = k.echo(wname, "-c", "4096")
    idle = os.open(path, os.O_RDWR | os.O_NONBLOCK)
    readers = [k.child(blocking_read, path) for _ in range(3)]
    poller = k.child(blocking_poll, path, select.POLLIN, 30000)
    wfd = os.open(wpath, os.O_WRONLY | os.O_NONBLOCK)
    os.write(wfd, b"f" * 4096)
    writer = k.child(blocking_write, wpath, b"w" * 100)
    for c in readers:
        c.wait_blocked([READ])
    poller.wait_blocked([POLL])
    writer.wait_blocked([WRITE])
    t0 = time.monotonic()
    s.kill()
    sw.kill()
    results = []
    for c in readers + [poller, writer]:
        res = c.result(10)
        results.append((round(time.monotonic() - t0, 3), res))
    worst = max(dt for dt, _ in results)
    got = [res for _, res in results]
    assert got == [("error", "EIO")] * 3 + [("poll", [select.POLLERR | select.POLLHUP]), ("error", "EIO")], \
        f"blocked callers after SIGKILL (3 readers, a poller, a writer): {results}"
    assert worst < 1.0, f"callers returned only after {worst:.2f} s: {results}"
    print(f"    callers errored {worst * 1000:.0f} ms after SIGKILL (worst of 5)")
    assert k.sysfs(name, "state") == "nosrv", "state after SIGKILL"
    assert os.path.exists(path), "the node must stay after the daemon died"
    expect_errno(lambda: os.open(path, os.O_RDWR), errno.ENODEV, "open after the daemon died")
    expect_errno(lambda: os.read(idle, 10), errno.EIO, "read on a file of the dead daemon")
    expect_errno(lambda: os.write(idle, b"x"), errno.EIO, "write on a file of the dead daemon")
    expect_errno(lambda: fionread(idle), errno.EIO, "ioctl on a file of the dead daemon")
    p = select.poll()
    p.register(idle, select.POLLIN)
    assert p.poll(0) == [(idle, select.POLLERR | select.POLLHUP)], "poll on a file of the dead daemon"
    # rmmod must refuse while a client file is open.
    r = subprocess.run(["rmmod", "devemu_kshim"], capture_output=True, text=True)
    assert r.returncode != 0 and "in use" in r.stderr, f"rmmod with a client file open: {r.returncode} {r.stderr}"
    # A new daemon re-attaches.
    s2 = k.echo(name, "-a")
    assert s2.ready.startswith("ready epoch=2 "), s2.ready
    assert (k.sysfs(name, "state"), k.sysfs(name, "attach_epoch")) == ("serving", "2"), "sysfs after re-ATTACH"
    fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
    os.write(fd, b"again")
    assert os.read(fd, 10) == b"again", "round trip after re-ATTACH"
    os.close(fd)
    expect_errno(lambda: os.read(idle, 10), errno.EIO, "a file of epoch 1 in epoch 2")
    os.close(idle)
    os.close(wfd)
    # REMOVE while served: a blocked reader gets ENODEV, the node goes away.
    k.remove(wname)
    s3 = k.child(blocking_read, path)
    s3.wait_blocked([READ])
    k.remove(name)
    assert s3.result(5) == ("error", "ENODEV"), "blocked reader at REMOVE"
    assert wait_gone(path), "node left after REMOVE"
    rc = s2.kill(signal.SIGTERM)
    assert rc == 0, f"re-attached daemon exit {rc}"


def test_hostile_garbage(kshim):
    """Bad tags, wrong epochs, duplicates, bad results and retry lists: errors, never hangs or crashes."""
    k = kshim
    name, path = "kst-garbage", "/dev/kst-garbage"
    s = k.hostile("garbage", name)
    try:
        expect_errno(lambda: os.open(path, os.O_RDWR), errno.EIO, "OPEN with fh 5000")
        expect_errno(lambda: os.open(path, os.O_RDWR), errno.EIO, "OPEN with -ERESTARTSYS")
        expect_errno(lambda: os.open(path, os.O_RDWR), errno.EIO, "OPEN with -ERESTART_RESTARTBLOCK")
        expect_errno(lambda: os.open(path, os.O_RDWR), errno.ENOENT, "OPEN with -ENOENT")
        fd = os.open(path, os.O_RDWR)
        expect_errno(lambda: os.read(fd, 10), errno.EIO, "READ result > len")
        expect_errno(lambda: os.read(fd, 10), errno.EIO, "READ with -EIOCBQUEUED")
        expect_errno(lambda: os.read(fd, 10), errno.EIO, "READ result 0x7fffffff")
        assert os.read(fd, 10) == b"xyz", "a sane READ after the bad ones"
        expect_errno(lambda: os.write(fd, b"abc"), errno.EIO, "WRITE result > len")
        expect_errno(lambda: os.write(fd, b"abc"), errno.EIO, "WRITE result -4096")
        assert os.write(fd, b"abc") == 3, "a sane WRITE"
        buf = bytearray(b"\0" * 4)
        cmd = IO(0x54, 0x77)
        for what, want in [("retry in_count 0xffffffff", errno.EIO), ("retry length 1<<40", errno.EIO),
                           ("retry range at a kernel address", errno.EFAULT),
                           ("retry with 400 ranges", errno.EIO), ("output larger than its room", errno.EIO),
                           ("endless retries", errno.EIO)]:
            expect_errno(lambda: fcntl.ioctl(fd, cmd, buf, True), want, f"IOCTL {what}")
        r = fcntl.ioctl(fd, cmd, buf, True)
        assert (r, bytes(buf)) == (42, b"HOST"), "a sane IOCTL with output"
        # Shadow registers whose seqlock never settles, all ones: poll and FIONREAD still answer.
        p = select.poll()
        p.register(fd, select.POLLIN | select.POLLOUT)
        t0 = time.monotonic()
        ev = p.poll(0)
        assert ev and time.monotonic() - t0 < 1, f"poll on a broken shadow: {ev}"
        assert fionread(fd) == 0x7FFFFFFF, "FIONREAD of an all-ones shadow is clamped to INT_MAX"
        os.close(fd)
        # 37 requests reached the daemon: 5 OPEN, 4 READ, 3 WRITE, 24 IOCTL rounds (1+1+1+1, 2 for the
        # output too large, 16 for the endless retries, 2 for the sane one) and the RELEASE. Around
        # each answer it posts a completion with a tag out of range (a protocol error), one with the
        # wrong epoch, one for a tag not in flight and a duplicate (3 stale). 13 answers break the
        # protocol: 3 OPEN (fh 5000, -ERESTARTSYS, -ERESTART_RESTARTBLOCK), 3 READ, 2 WRITE and 5
        # IOCTL (in_count, length, 400 ranges, output too large, too many rounds); the kernel
        # address is an EFAULT, not a protocol error.
        wait_for(lambda: k.counter(name, "stale_completions") >= 3 * 37, 5, "the RELEASE's completions")
        time.sleep(0.2)
        stale, proto = k.counter(name, "stale_completions"), k.counter(name, "protocol_errors")
        assert (stale, proto) == (3 * 37, 37 + 13), f"counters: stale {stale}, protocol errors {proto}"
    finally:
        s.kill()
    assert k.sysfs(name, "state") == "nosrv", "state after the hostile daemon died"
    k.remove(name)


def test_hostile_tail(kshim):
    """A completion tail far ahead detaches the channel (EIO, POLLHUP); the daemon can ATTACH again."""
    k = kshim
    name, path = "kst-tail", "/dev/kst-tail"
    s = k.hostile("tail", name)
    try:
        expect_errno(lambda: os.open(path, os.O_RDWR), errno.EIO, "OPEN answered by a runaway tail")
        assert s.readline(10) == "hup-seen", "channel fd did not poll HUP after the protocol error"
        assert s.readline(10) == "reattached ok epoch=2", "re-ATTACH after the protocol error"
        expect_errno(lambda: os.open(path, os.O_RDWR), errno.EACCES, "OPEN in epoch 2")
        # The runaway tail is the one protocol error; EACCES is an honest answer.
        assert k.counter(name, "protocol_errors") == 1
    finally:
        s.kill()
    k.remove(name)


def blocking_open_with_handler(path):
    signal.signal(signal.SIGUSR1, lambda *a: None)
    fd = os.open(path, os.O_RDWR)
    return ("opened", fd)


def test_hostile_stall(kshim):
    """A daemon that never answers, CANCEL included: a caller with a handled signal keeps waiting
    (killably: SIGKILL ends it at once), a fatal signal abandons the request, and the daemon's death
    ends every wait."""
    k = kshim
    name, path = "kst-stall", "/dev/kst-stall"
    s = k.hostile("stall", name)
    try:
        a = k.child(blocking_open_with_handler, path)
        a.wait_blocked([OPENAT])
        os.kill(a.pid, signal.SIGUSR1)  # handled: CANCEL sent, the daemon ignores it
        time.sleep(0.5)
        assert a.result(0) is None, "a signalled caller gave up although the request was not cancelled"
        t0 = time.monotonic()
        os.kill(a.pid, signal.SIGKILL)
        status = a.wait()
        assert os.WIFSIGNALED(status) and time.monotonic() - t0 < 1, "SIGKILL did not end the wait at once"
        b = k.child(blocking_read, path)
        b.wait_blocked([OPENAT])
        os.kill(b.pid, signal.SIGTERM)  # fatal: abandons the OPEN
        status = b.wait()
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM, "SIGTERM did not end the caller"
        c = k.child(blocking_read, path)
        c.wait_blocked([OPENAT])
        t0 = time.monotonic()
        s.kill()
        res = c.result(5)
        dt = time.monotonic() - t0
        assert res == ("error", "EIO"), "open blocked on a stalled daemon, after its death"
        assert dt < 1.0, f"took {dt:.2f} s"
        reqs = k.requests(name)
        assert (reqs["open"], reqs["cancel"]) == (3, 2), f"requests: {reqs}"
    finally:
        s.kill()
    k.remove(name)


def test_hostile_hup(kshim):
    """Closing the irq eventfd detaches: callers get EIO, the channel polls HUP."""
    k = kshim
    name, path = "kst-hup", "/dev/kst-hup"
    s = k.hostile("hup", name)
    try:
        expect_errno(lambda: os.open(path, os.O_RDWR), errno.EIO, "OPEN when the irq eventfd is closed")
        assert s.readline(10) == "hup-seen", "channel fd did not poll HUP"
        assert k.sysfs(name, "state") == "nosrv", "state after the irq eventfd closed"
    finally:
        s.kill()
    k.remove(name)


def test_hostile_die(kshim):
    """A daemon dying in the middle of a request: EIO, not a hang."""
    k = kshim
    name, path = "kst-die", "/dev/kst-die"
    s = k.hostile("die", name)
    expect_errno(lambda: os.open(path, os.O_RDWR), errno.EIO, "OPEN when the daemon dies")
    assert s.wait(10) == 3, "kshim_hostile die exit status"
    assert k.sysfs(name, "state") == "nosrv", "state"
    k.remove(name)


def test_hostile_flood(kshim):
    """Thousands of bogus completions around each answer: all dropped and counted."""
    k = kshim
    name, path = "kst-flood", "/dev/kst-flood"
    s = k.hostile("flood", name)
    try:
        fd = os.open(path, os.O_RDWR)
        assert os.read(fd, 10) == b"", "read"
        os.close(fd)
        # Before each of its 3 answers (OPEN, READ, RELEASE) kshim_hostile posts 1000 rounds of one
        # ring's worth (depth 8) of completions with a random tag below 16 and a wrong epoch: a tag
        # out of range is a protocol error, the others are stale; none completes a request.
        flood = 3 * 1000 * 8

        def counted():
            return k.counter(name, "stale_completions") + k.counter(name, "protocol_errors")
        wait_for(lambda: counted() >= flood, 10, "the RELEASE's flood")
        time.sleep(0.2)
        stale, proto = k.counter(name, "stale_completions"), k.counter(name, "protocol_errors")
        print(f"    stale_completions {stale}, protocol_errors {proto}")
        assert stale + proto == flood and stale > 0 and proto > 0, f"stale {stale}, protocol errors {proto}"
    finally:
        s.kill()
    k.remove(name)


def chaos_client(path, seed, seconds, reverse_cmd, reverse_arg):
    """Random opens, closes, reads, writes, ioctls and polls, each blocking call cut by a timer signal."""
    rnd = random.Random(seed)
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(16384)
    rev = ctypes.create_string_buffer(64)
    arg = reverse_arg(ctypes.addressof(rev), 64)
    signal.signal(signal.SIGALRM, lambda *a: None)
    signal.siginterrupt(signal.SIGALRM, True)
    fds, ops, errors = [], 0, 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        ops += 1
        try:
            r = rnd.random()
            if r < 0.1 or not fds:
                fds.append(os.open(path, os.O_RDWR | (os.O_NONBLOCK if rnd.random() < 0.5 else 0)))
            elif r < 0.2:
                os.close(fds.pop(rnd.randrange(len(fds))))
            else:
                fd = rnd.choice(fds)
                signal.setitimer(signal.ITIMER_REAL, rnd.choice([0.005, 0.02, 0.1]))
                op = rnd.randrange(5)
                if op == 0:
                    libc.read(fd, buf, rnd.choice([1, 100, 5000, 16384]))
                elif op == 1:
                    libc.write(fd, buf, rnd.choice([1, 100, 5000, 16384]))
                elif op == 2:
                    fionread(fd)
                elif op == 3:
                    fcntl.ioctl(fd, reverse_cmd, arg, True)
                else:
                    select.select([fd], [fd], [], 0.01)
                signal.setitimer(signal.ITIMER_REAL, 0)
        except OSError:
            errors += 1
    return ("ok", ops, errors)


def chaos(k, with_devemud):
    """Random traffic with signals from 6 clients, clients SIGKILLed at random, the daemon SIGKILLed
    and replaced twice under load: nothing hangs, the kernel stays clean, the last daemon serves."""
    name, path = "kst-chaos", "/dev/kst-chaos"
    rnd = random.Random(7)
    if with_devemud:
        start = lambda attach: k.devemud(name)  # noqa: E731 (devemud ATTACHes by itself on EEXIST)
    else:
        start = lambda attach: k.echo(name, *(["-a"] if attach else []), "-d",  # noqa: E731
                                      str(rnd.choice([2, 4, 8]) if attach else 4), "-s", "4096", "-c", "8192")
    servers = [start(False)]
    seconds = 12
    client = (chaos_client, path)
    extra = (k.abi.KSHIM_TEST_IOC_REVERSE, k.reverse_arg)
    clients = [k.child(*client, i, seconds, *extra) for i in range(6)]
    t0 = time.monotonic()
    events = [(2, "client"), (3, "daemon"), (5, "client"), (6, "client"), (7, "daemon"), (9, "client")]
    killed = 0
    for at, what in events:
        time.sleep(max(0, t0 + at - time.monotonic()))
        if VERBOSE:
            print(f"    chaos t={time.monotonic() - t0:.1f}: SIGKILL a {what}", flush=True)
        if what == "client":
            c = clients.pop(rnd.randrange(len(clients)))
            c.kill()
            c.reap()
            killed += 1
            clients.append(k.child(*client, 100 + at, seconds - at, *extra))
        else:
            servers[-1].kill()
            servers.append(start(True))
    total = 0
    for c in clients:
        res = c.result(seconds + 30)
        assert res and res[0] == "ok", f"a chaos client hung or failed: {res}"
        total += res[1]
    assert (k.sysfs(name, "attach_epoch"), k.sysfs(name, "state")) == ("3", "serving"), "sysfs after the chaos"
    fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
    read_all_nonblock(fd)
    os.write(fd, b"still alive")
    assert os.read(fd, 100) == b"still alive", "the last daemon does not serve"
    os.close(fd)
    print(f"    {total} operations by surviving clients, {killed} clients SIGKILLed, 2 daemons SIGKILLed; "
          f"stale {k.counter(name, 'stale_completions')}, protocol errors {k.counter(name, 'protocol_errors')}")
    assert k.counter(name, "protocol_errors") == 0, "protocol errors with an honest daemon"
    if with_devemud:
        assert servers[-1].stop() == 0, "devemud's exit status after SIGTERM"
        assert wait_gone(path), "devemud's SIGTERM did not remove the node"
    else:
        assert servers[-1].kill(signal.SIGTERM) == 0
        k.remove(name)


@pytest.mark.guard(180)
def test_chaos(kshim):
    """The chaos run against kshim_echo."""
    chaos(kshim, with_devemud=False)


@pytest.mark.guard(180)
def test_chaos_devemud(kshim, opts):
    """The chaos run with devemud --transport kshim as the daemon."""
    if not os.access(opts.devemud, os.X_OK):
        pytest.skip(f"no devemud at {opts.devemud} (pass --build-dir or --devemud)")
    chaos(kshim, with_devemud=True)


# --------------------------------------------------------------------------------------------
# Seeded random attacks from both sides at once
# --------------------------------------------------------------------------------------------

# Addresses no caller may hand the kernel: NULL, an unmapped low page, kernel text, the top page.
BAD_POINTERS = (0, 0x1000, 0xffffffff81000000, 0xfffffffffffff000)


def fuzz_client(path, seed, seconds, ioctls):
    """A hostile client: random opens (any access mode, O_NONBLOCK or not), closes, dups, reads and
    writes of odd sizes into good, bad and half-mapped buffers, ioctls (known and random commands)
    with good and bad arguments, polls, O_NONBLOCK flipped by fcntl, children forked to close, read or
    exit holding the files, and a timer signal cutting each blocking call. Returns ("ok", operations,
    errors, errnos seen)."""
    rnd = random.Random(seed)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.read.argtypes = libc.write.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t)
    libc.ioctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p)
    size = 1 << 20
    good = mmap.mmap(-1, size + mmap.PAGESIZE)
    base = ctypes.addressof(ctypes.c_char.from_buffer(good))
    guard_page = base + size  # made inaccessible: a buffer running into it is half bad
    libc.mprotect(ctypes.c_void_p(guard_page), mmap.PAGESIZE, 0)
    signal.signal(signal.SIGALRM, lambda *a: None)
    signal.siginterrupt(signal.SIGALRM, True)
    fds, kids, ops, errors, seen = [], [], 0, 0, set()
    accmodes = (os.O_RDONLY, os.O_WRONLY, os.O_RDWR)
    end = time.monotonic() + seconds

    def pointer(n):
        r = rnd.random()
        if r < 0.7:
            return base + rnd.randrange(size - min(n, size) + 1), n
        if r < 0.85:
            return guard_page - rnd.randrange(1, 64), max(n, 64)  # runs into the guard page
        return rnd.choice(BAD_POINTERS), n

    while time.monotonic() < end:
        ops += 1
        ret = 0
        r = rnd.random()
        if r < 0.08 or not fds:
            flags = rnd.choice(accmodes) | (os.O_NONBLOCK if rnd.random() < 0.5 else 0)
            try:
                fds.append(os.open(path, flags))
            except OSError as e:
                errors += 1
                seen.add(e.errno)
            continue
        fd = rnd.choice(fds)
        if r < 0.14:
            fds.remove(fd)
            os.close(fd)
            continue
        if r < 0.17:
            try:
                fds.append(os.dup(fd))
            except OSError:
                pass
            continue
        if r < 0.2:
            fl = fcntl.fcntl(fd, fcntl.F_GETFL)
            fcntl.fcntl(fd, fcntl.F_SETFL, fl ^ os.O_NONBLOCK)
            continue
        if r < 0.23:
            what = rnd.randrange(3)
            pid = os.fork()
            if pid == 0:
                if what == 0:
                    os.close(fd)
                elif what == 1:
                    signal.setitimer(signal.ITIMER_REAL, 0.02)
                    libc.read(fd, ctypes.c_void_p(base), 100)
                os._exit(0)
            kids.append(pid)
            continue
        signal.setitimer(signal.ITIMER_REAL, rnd.choice([0.002, 0.01, 0.05]))
        op = rnd.randrange(4)
        if op == 0:
            ptr, n = pointer(rnd.choice([0, 1, 7, 100, 4095, 4096, 4097, 65536, size]))
            ret = libc.read(fd, ctypes.c_void_p(ptr), n)
        elif op == 1:
            ptr, n = pointer(rnd.choice([0, 1, 7, 100, 4095, 4096, 4097, 65536, size]))
            ret = libc.write(fd, ctypes.c_void_p(ptr), n)
        elif op == 2:
            cmd = rnd.choice(ioctls) if rnd.random() < 0.7 else rnd.getrandbits(32)
            ptr, _ = pointer(64)
            ret = libc.ioctl(fd, cmd, ctypes.c_void_p(ptr))
        else:
            try:
                select.select([fd], [fd], [], rnd.choice([0, 0.005]))
            except (OSError, ValueError):
                ret = -1
        signal.setitimer(signal.ITIMER_REAL, 0)
        if ret < 0:
            errors += 1
            seen.add(ctypes.get_errno())
        for pid in list(kids):
            if os.waitpid(pid, os.WNOHANG)[0]:
                kids.remove(pid)
    for pid in kids:
        os.waitpid(pid, 0)
    for fd in fds:
        os.close(fd)
    return ("ok", ops, errors, sorted(errno.errorcode.get(e, str(e)) for e in seen))


@pytest.mark.guard(240)
def test_fuzz_hostile_daemon_and_clients(kshim):
    """kshim_fuzz_daemon (a seeded random hostile daemon: wild results, tags, epochs, retry lists,
    shadows, FIFO indices, eventfd storms, detaches it recovers from) against four seeded random
    hostile clients (fuzz_client) for DEVEMU_KSHIM_FUZZ_SECONDS (20): every client finishes (no call
    hangs), the daemon survives to the end, the device can be removed, and the kernel log stays
    clean (--check-dmesg; the VM fails the run on any warning). The seed is printed; rerun one with
    DEVEMU_VM_ENV=DEVEMU_KSHIM_FUZZ_SEED DEVEMU_KSHIM_FUZZ_SEED=N."""
    seed = int(os.environ.get("DEVEMU_KSHIM_FUZZ_SEED") or random.SystemRandom().randrange(1 << 31))
    seconds = float(os.environ.get("DEVEMU_KSHIM_FUZZ_SECONDS") or 20)
    print(f"    kshim fuzz: seed {seed}, {seconds:g} s (DEVEMU_KSHIM_FUZZ_SEED={seed} replays it)", flush=True)
    abi = kshim.abi
    name = "kst-fuzz"
    path = kshim.device(name)
    daemon = Server([str(kshim.bin / "kshim_fuzz_daemon"), name, str(seed), str(seconds)])
    kshim.servers.append(daemon)
    ioctls = [termios.FIONREAD, abi.DEVEMU_IOC_NREAD, abi.DEVEMU_IOC_COUNTERS, abi.KSHIM_TEST_IOC_REVERSE,
              abi.KSHIM_TEST_IOC_CALLER, termios.TCGETS, 0xC0DE0001]
    clients = [kshim.child(fuzz_client, path, seed + i, seconds, ioctls) for i in range(4)]
    results = [c.result(seconds + 60) for c in clients]
    assert all(r and r[0] == "ok" for r in results), f"seed {seed}: a fuzz client hung or failed: {results}"
    counts = daemon.readline(30)
    assert counts.startswith("requests "), f"seed {seed}: kshim_fuzz_daemon did not finish: {counts!r}"
    assert daemon.wait() == 0, f"seed {seed}: kshim_fuzz_daemon: {daemon.err}"
    stale, proto = kshim.counter(name, "stale_completions"), kshim.counter(name, "protocol_errors")
    kshim.remove(name)
    assert wait_gone(path), f"seed {seed}: /dev/{name} still there after REMOVE"
    print(f"    {sum(r[1] for r in results)} client operations, {sum(r[2] for r in results)} failed "
          f"({', '.join(sorted({e for r in results for e in r[3]}))}); daemon: {counts}; module: "
          f"{stale} stale completions, {proto} protocol errors in the last epoch")


# --------------------------------------------------------------------------------------------
# Stream FIFOs from a hostile daemon
# --------------------------------------------------------------------------------------------

def test_hostile_fifo_rx(kshim):
    """A receive FIFO with all-ones record, watermark and kick, then a tail 1 GiB ahead: reads are
    bounded by the FIFO's own size, the runaway tail detaches (EIO), nothing is read past the window."""
    k = kshim
    name, path = "kst-fifo", "/dev/kst-fifo"
    s = k.hostile("fifo", name)
    try:
        fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
        try:
            wait_for(lambda: fionread(fd) == 10, 10, "the 10 bytes the daemon published")
            # record 0xffffffff is clamped to the FIFO's 4096 bytes: a shorter read is refused, and
            # 10 bytes are not one record.
            expect_errno(lambda: os.read(fd, 100), errno.EINVAL, "read below the record size")
            p = select.poll()
            p.register(fd, select.POLLIN)
            assert p.poll(0) == [], "POLLIN with less than one record queued"
            expect_errno(lambda: os.read(fd, 8192), errno.EAGAIN, "read of less than a record queued")
            # That read took the kick: the daemon answers with a tail 1 GiB ahead.
            assert s.readline(10) == "moved", "the hostile daemon did not see the kick"
            expect_errno(lambda: os.read(fd, 8192), errno.EIO, "read after a runaway receive tail")
        finally:
            os.close(fd)
        assert k.sysfs(name, "state") == "nosrv", "state after a runaway receive tail"
        assert k.counter(name, "protocol_errors") >= 1, "the runaway tail was not counted"
    finally:
        s.kill()
    k.remove(name)


def test_hostile_fifo_tx(kshim):
    """A transmit head moved past the module's tail: a write gets EIO, the channel is detached."""
    k = kshim
    name, path = "kst-fifotx", "/dev/kst-fifotx"
    s = k.hostile("fifo-tx", name)
    try:
        fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
        try:
            expect_errno(lambda: os.write(fd, b"x"), errno.EIO, "write after a runaway transmit head")
        finally:
            os.close(fd)
        assert k.sysfs(name, "state") == "nosrv", "state after a runaway transmit head"
        assert k.counter(name, "protocol_errors") >= 1, "the runaway head was not counted"
    finally:
        s.kill()
    k.remove(name)


def test_hostile_fifo_loop(kshim):
    """A loop of 100 bytes whose daemon lies about the bytes in flight (adjust) and the clear index
    (discard): FIONREAD stays within [0, capacity], a loop counted full takes no write, one counted
    empty never more than the transmit FIFO holds, a discard past the tail is ignored, and nothing
    detaches or warns."""
    k = kshim
    name, path = "kst-fifoloop", "/dev/kst-fifoloop"
    s = k.hostile("fifo-loop", name)
    try:
        fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
        try:
            # adjust 0x7fffffff: the module counts at most the capacity in flight, so the loop is full.
            wait_for(lambda: fionread(fd) == 100, 10, "FIONREAD clamped to the loop's capacity")
            p = select.poll()
            p.register(fd, select.POLLIN | select.POLLOUT)
            assert p.poll(0) == [(fd, select.POLLIN)], "a full loop must poll POLLIN, not POLLOUT"
            expect_errno(lambda: os.write(fd, b"x"), errno.EAGAIN, "write into a loop counted full")
            # adjust 0xc0000000: less than nothing in flight counts as nothing.
            os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
            wait_for(lambda: fionread(fd) == 0, 10, "FIONREAD clamped to 0")
            # discard 5000 lies past the tail: ignored, the 10 published bytes are still there.
            assert os.read(fd, 4096) == b"0123456789", "the bytes before a discard past the tail"
            written, sizes = 0, []
            while True:
                try:
                    n = os.write(fd, b"w" * 200)
                except BlockingIOError:
                    break
                sizes.append(n)
                written += n
                assert len(sizes) < 100, f"writes never stopped: {sizes[:5]}..."
            # Counted as empty, the loop takes writes until the transmit FIFO itself is full: no further.
            assert written == 4096, f"{written} bytes written into a 4 KiB transmit FIFO nobody drains: {sizes}"
            os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
            assert s.readline(10) == f"txtail {written}", "the transmit tail the module published"
        finally:
            os.close(fd)
        assert k.sysfs(name, "state") != "nosrv", "a lying adjust or discard detached the channel"
    finally:
        s.kill()
    k.remove(name)


def test_hostile_fifo_divert(kshim):
    """A loop whose daemon diverts the receive FIFO to requests (as devemud does while a read fault
    is armed): reads become READ requests, a discard the daemon names moves the head past the bytes
    it handed over, one past the tail is ignored (nothing skipped, nothing detached), and once the
    divert ends reads come from the FIFO again and are counted in its control block."""
    k = kshim
    name, path = "kst-fifodiv", "/dev/kst-fifodiv"
    s = k.hostile("fifo-divert", name)
    try:
        fd = os.open(path, os.O_RDWR)
        try:
            assert os.read(fd, 100) == b"0123", "a diverted read is the daemon's answer"
            assert os.read(fd, 100) == b"45", "a second diverted read"
            os.close(os.open(path, os.O_RDONLY))  # the second OPEN: the divert ends
            assert s.readline(10) == "calls 0 waiters 0", "diverted reads are not FIFO calls"
            # discard 4 moved the head; 5000 (past the tail) did not: the FIFO still holds "456789".
            assert os.read(fd, 100) == b"456789", "the receive FIFO after the daemon's discards"
            os.close(os.open(path, os.O_RDONLY))
            assert s.readline(10) == "calls 1 waiters 0", "the FIFO read counted in its control block"
        finally:
            os.close(fd)
        assert k.sysfs(name, "state") != "nosrv", "a diverted loop detached the channel"
    finally:
        s.kill()
    k.remove(name)


def test_hostile_fifo_die(kshim):
    """A daemon that dies with its receive FIFO full: the bytes are dropped, readers get EIO."""
    k = kshim
    name, path = "kst-fifodie", "/dev/kst-fifodie"
    s = k.hostile("fifo-die", name)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert s.readline(10) == "filled"
        assert s.wait(10) == 3, "kshim_hostile fifo-die exit status"
        wait_for(lambda: k.sysfs(name, "state") == "nosrv", 10, "detach after the daemon died")
        expect_errno(lambda: os.read(fd, 100), errno.EIO, "read of a dead daemon's FIFO")
    finally:
        os.close(fd)
    k.remove(name)


def file_record(abi, fh, seq):
    """kshim_hostile's seq-th record for fh in its per-file FIFO modes (tests/kshim/kshim_test.h)."""
    return (f"f{fh} r{seq:06d}".ljust(abi.KSHIM_TEST_RECORD - 1, ".") + "\n").encode()


def test_file_fifos(kshim, abi):
    """Per-file receive FIFOs (DEVEMU_F_FILE_STREAM, 3 FIFOs, records of 24 bytes): each file reads only
    its own records, whole ones, from the window; empty blocks (woken by the daemon's interrupt), gives
    EAGAIN or EINTR; poll and FIONREAD follow the fill; a diverted file reads by request, the core taking
    the first record back; an ioctl during which the core takes the queue back leaves nothing to read
    twice; a file with fh >= count reads by request; a detach wakes a blocked reader with EIO."""
    k = kshim
    name, path = "kst-ffifo", "/dev/kst-ffifo"
    rec = lambda fh, seq: file_record(abi, fh, seq)  # noqa: E731
    s = k.hostile("ffifo", name)

    def push(fd, fh, n):
        return fcntl.ioctl(fd, abi.KSHIM_TEST_IOC_PUSH, (fh << 16) | n)

    fds = []
    try:
        fd0 = os.open(path, os.O_RDWR)
        fds.append(fd0)
        fd1 = os.open(path, os.O_RDWR)
        fds.append(fd1)
        assert (push(fd0, 0, 2), push(fd0, 1, 1)) == (2, 1), "records pushed"
        assert (fionread(fd0), fionread(fd1)) == (48, 24), "FIONREAD: each file's own FIFO fill"
        p = select.poll()
        p.register(fd0, select.POLLIN)
        assert p.poll(0) == [(fd0, select.POLLIN)], "POLLIN with records queued"
        expect_errno(lambda: os.read(fd0, abi.KSHIM_TEST_RECORD - 1), errno.EINVAL, "read below the record")
        assert os.read(fd1, 50) == rec(1, 0), "fh 1 reads its own record only"
        assert os.read(fd0, 50) == rec(0, 0) + rec(0, 1), "read(50): two whole records"
        assert p.poll(0) == [], "POLLIN with the FIFO empty"
        os.set_blocking(fd1, False)
        expect_errno(lambda: os.read(fd1, 100), errno.EAGAIN, "O_NONBLOCK read of an empty FIFO")
        assert fionread(fd1) == 0

        # A blocked read, woken by the interrupt that publishes its record (pushed through another file).
        c = k.child(lambda: ("read", os.read(fd0, 100)))
        c.wait_blocked([READ])
        push(fd1, 0, 1)
        assert c.result(10) == ("read", rec(0, 2)), "the blocked reader after the push"
        assert raw_call_interrupted("read", fd0, None, 100) == ("read", -1, errno.EINTR), "a signal in the wait"

        # Diverted: a read goes as a READ request; the core takes the first record back (discard).
        push(fd1, 0, 2)
        before = k.requests(name)["read"]
        fcntl.ioctl(fd0, abi.KSHIM_TEST_IOC_DIVERT, 1)
        assert os.read(fd0, 100) == rec(0, 3), "a diverted read: the record the core took back"
        assert k.requests(name)["read"] == before + 1, "a diverted read is a request"
        fcntl.ioctl(fd0, abi.KSHIM_TEST_IOC_DIVERT, 0)
        assert os.read(fd0, 100) == rec(0, 4), "after the divert, from the FIFO, no duplicate"
        assert k.requests(name)["read"] == before + 1, "a FIFO read is no request"

        # An ioctl while the core takes the file's queue back: nothing left to read twice.
        assert push(fd0, 1, 3) == 3
        assert fionread(fd1) == 72
        assert fcntl.ioctl(fd1, abi.KSHIM_TEST_IOC_TAKE) == 72, "the bytes the core took back"
        assert fionread(fd1) == 0, "FIONREAD after the take-back"
        expect_errno(lambda: os.read(fd1, 100), errno.EAGAIN, "read after the take-back")
        push(fd0, 1, 1)
        assert os.read(fd1, 100) == rec(1, 4), "the next record, none of those taken back"

        # fh 2 has the last FIFO; fh 3 none: its reads are requests, whatever the FIFOs hold.
        fd2 = os.open(path, os.O_RDWR | os.O_NONBLOCK)
        fds.append(fd2)
        fd3 = os.open(path, os.O_RDWR | os.O_NONBLOCK)
        fds.append(fd3)
        push(fd0, 2, 1)
        before = k.requests(name)["read"]
        assert os.read(fd3, 100) == b"byreq", "a file without a FIFO reads by request"
        assert k.requests(name)["read"] == before + 1
        assert (fionread(fd2), fionread(fd3)) == (24, 0), "fh 2's FIFO untouched by fh 3's read"
        assert os.read(fd2, 100) == rec(2, 0)

        # The daemon goes away: a reader blocked on its FIFO gets EIO.
        os.set_blocking(fd1, True)
        c = k.child(lambda: ("read", os.read(fd1, 100)))
        c.wait_blocked([READ])
        s.kill()
        assert c.result(10) == ("error", "EIO"), "a reader blocked on a per-file FIFO at detach"
        assert k.sysfs(name, "state") == "nosrv"
        assert k.counter(name, "protocol_errors") == 0, "an honest daemon broke the protocol"
    finally:
        for fd in fds:
            os.close(fd)
        if s.p.poll() is None:
            s.kill()
    k.remove(name)


def test_hostile_file_fifo_tail(kshim):
    """A per-file FIFO's tail 1 GiB ahead: poll and FIONREAD see nothing, the read detaches (EIO)."""
    k = kshim
    name, path = "kst-ffifotail", "/dev/kst-ffifotail"
    s = k.hostile("ffifo-tail", name)
    try:
        fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
        try:
            assert fionread(fd) == 0, "FIONREAD of a FIFO whose tail is out of range"
            p = select.poll()
            p.register(fd, select.POLLIN)
            assert p.poll(0) == [], "POLLIN from a FIFO whose tail is out of range"
            expect_errno(lambda: os.read(fd, 100), errno.EIO, "read after a runaway per-file tail")
        finally:
            os.close(fd)
        assert k.sysfs(name, "state") == "nosrv", "state after a runaway per-file tail"
        assert k.counter(name, "protocol_errors") >= 1, "the runaway tail was not counted"
    finally:
        s.kill()
    k.remove(name)


def test_hostile_file_fifo_die(kshim):
    """A daemon that dies with records in two files' FIFOs: they are dropped, both readers get EIO."""
    k = kshim
    name, path = "kst-ffifodie", "/dev/kst-ffifodie"
    s = k.hostile("ffifo-die", name)
    fd0 = os.open(path, os.O_RDONLY)
    try:
        fd1 = os.open(path, os.O_RDONLY)
        try:
            assert s.readline(10) == "filled"
            assert s.wait(10) == 3, "kshim_hostile ffifo-die exit status"
            wait_for(lambda: k.sysfs(name, "state") == "nosrv", 10, "detach after the daemon died")
            for fd in (fd0, fd1):
                expect_errno(lambda: os.read(fd, 100), errno.EIO, "read of a dead daemon's per-file FIFO")
        finally:
            os.close(fd1)
    finally:
        os.close(fd0)
    k.remove(name)
