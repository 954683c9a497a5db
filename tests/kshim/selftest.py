#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# devemu_kshim.ko self-tests: the control ioctls, the client node against kshim_echo (a loopback stand-in
# daemon) and kshim_hostile (a daemon that breaks the protocol), daemon death and re-attach.
"""
Run as root with devemu_kshim.ko loaded (tests/kshim/run_selftest.sh does it inside tests/vm/run):

  selftest.py --bin DIR [--devemud PATH] [TEST...]
      DIR holds kshim_echo and kshim_hostile; --devemud adds the chaos test with the real daemon;
      default: every test

Prints one line per test (PASS/FAIL with the reason) and exits 1 if any failed.
"""

import argparse
import errno
import fcntl
import mmap
import os
import select
import signal
import struct
import subprocess
import sys
import termios
import time
import traceback

# --------------------------------------------------------------------------------------------
# ABI (core/include/devemu/uapi/devemu.h)
# --------------------------------------------------------------------------------------------


def _IOC(d, t, nr, size):
    return (d << 30) | (size << 16) | (t << 8) | nr


ADD_FMT = "<64sIIIIIiiIQ8I"
ADD_SIZE = struct.calcsize(ADD_FMT)
assert ADD_SIZE == 136
IOC_ADD = _IOC(1, 0xDE, 0x40, ADD_SIZE)
IOC_ATTACH = _IOC(1, 0xDE, 0x41, ADD_SIZE)
IOC_REMOVE = _IOC(1, 0xDE, 0x42, 64)
IOC_NREAD = _IOC(2, 0xDE, 0x02, 4)
IOC_REVERSE = _IOC(3, 0xDE, 0x60, 16)  # tests/kshim/kshim_test.h
FEATURES = 0xF
MAGIC = 0x554D4544
CONTROL = "/dev/devemu-kshim"
PAGE = 4096


def layout(depth, slot):
    align = lambda v: (v + PAGE - 1) // PAGE * PAGE  # noqa: E731
    sq = 8192 + 1024 * 16
    cq = align(sq + 192 + 2 * depth * 64)
    data = align(cq + 192 + depth * 16)
    return sq, cq, data, data + depth * slot


def add_arg(name, mode=0o600, uid=0, gid=0, depth=0, slot=0, doorbell=-1, irq=-1, flags=0, features=FEATURES,
            reserved=(0,) * 8):
    if isinstance(name, str):
        name = name.encode()
    return bytearray(struct.pack(ADD_FMT, name, mode, uid, gid, depth, slot, doorbell, irq, flags, features,
                                 *reserved))


def errno_of(fn):
    try:
        fn()
    except OSError as e:
        return e.errno
    return 0


def sysfs(name, attr):
    with open(f"/sys/class/devemu/{name}/{attr}") as f:
        return f.read().strip()


def counter(name, attr):
    return int(sysfs(name, attr))


class Fail(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Fail(what)


def expect_errno(fn, want, what):
    got = errno_of(fn)
    check(got == want, f"{what}: expected {errno.errorcode.get(want, want)}, got "
                       f"{errno.errorcode.get(got, got) if got else 'success'}")


# --------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------

BIN = None
DEVEMUD = None
VERBOSE = os.environ.get("KSHIM_SELFTEST_VERBOSE") == "1"
CHILDREN = []


class Server:
    """A stand-in daemon (kshim_echo or kshim_hostile), started and waited for."""

    def __init__(self, argv):
        self.argv = argv
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        CHILDREN.append(self.p)
        self.buf = b""
        line = self.readline(10)
        check(line.startswith("ready"), f"{argv}: no 'ready' line (got {line!r}, stderr "
                                        f"{self.p.stderr.read() if self.p.poll() is not None else ''!r})")
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
        return rc


def echo(name, *args):
    return Server([f"{BIN}/kshim_echo", "-m", "0666", *args, name])


def hostile(mode, name):
    return Server([f"{BIN}/kshim_hostile", mode, name])


class Child:
    """A forked helper that runs fn(*args) and sends back (elapsed, result) through a pipe."""

    def __init__(self, fn, *args):
        r, w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            os.close(r)
            try:
                res = fn(*args)
            except OSError as e:
                res = ("error", errno.errorcode.get(e.errno, e.errno))
            except BaseException as e:  # noqa: BLE001
                res = ("exception", repr(e))
            os.write(w, repr(res).encode())
            os._exit(0)
        os.close(w)
        self.r = r
        self.t0 = None

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
        raise Fail(f"child {self.pid} never blocked in syscall {syscall_nrs}")

    def result(self, timeout):
        r, _, _ = select.select([self.r], [], [], timeout)
        if not r:
            return None
        data = os.read(self.r, 65536).decode()
        os.waitpid(self.pid, 0)
        os.close(self.r)
        return eval(data)  # noqa: S307 (our own repr)

    def kill(self):
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


READ, WRITE, POLL, OPENAT = "0", "1", "7", "257"


def blocking_read(path, n=100):
    fd = os.open(path, os.O_RDONLY)
    return ("read", os.read(fd, n))


def blocking_read_fd(fd, n=100):
    return ("read", os.read(fd, n))


def blocking_write(path, data):
    fd = os.open(path, os.O_WRONLY)
    return ("wrote", os.write(fd, data))


def blocking_poll(path, events=select.POLLIN, ms=20000):
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    p = select.poll()
    p.register(fd, events)
    return ("poll", p.poll(ms))


def wait_gone(path, timeout=5):
    end = time.monotonic() + timeout
    while os.path.exists(path) and time.monotonic() < end:
        time.sleep(0.01)
    return not os.path.exists(path)


def fionread(fd):
    b = bytearray(4)
    fcntl.ioctl(fd, termios.FIONREAD, b, True)
    return struct.unpack("i", b)[0]


def nread(fd):
    b = bytearray(4)
    fcntl.ioctl(fd, IOC_NREAD, b, True)
    return struct.unpack("I", b)[0]


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


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------

def test_control_validation():
    """ADD/ATTACH/REMOVE reject every malformed argument; the control node is root only."""
    st = os.stat(CONTROL)
    check(oct(st.st_mode & 0o777) == "0o600" and st.st_uid == 0, f"{CONTROL} mode {oct(st.st_mode)}")
    ctl = os.open(CONTROL, os.O_RDWR)
    db, irq = os.eventfd(0, os.EFD_CLOEXEC), os.eventfd(0, os.EFD_CLOEXEC)
    rp, wp = os.pipe()
    ok = dict(doorbell=db, irq=irq)
    bad = [
        ("empty name", add_arg("", **ok), errno.EINVAL),
        ("slash", add_arg("a/b", **ok), errno.EINVAL),
        ("space", add_arg("a b", **ok), errno.EINVAL),
        ("latin-1 letter", add_arg(b"caf\xe9", **ok), errno.EINVAL),
        ("no NUL", add_arg(b"x" * 64, **ok), errno.EINVAL),
        ("dotdot", add_arg("..", **ok), errno.EINVAL),
        ("control name", add_arg("devemu-kshim", **ok), errno.EINVAL),
        ("depth 3", add_arg("kst-v", depth=3, **ok), errno.EINVAL),
        ("depth 512", add_arg("kst-v", depth=512, **ok), errno.EINVAL),
        ("slot 1000", add_arg("kst-v", slot=1000, **ok), errno.EINVAL),
        ("slot 2M", add_arg("kst-v", slot=2 << 20, **ok), errno.EINVAL),
        ("flags", add_arg("kst-v", flags=1, **ok), errno.EINVAL),
        ("reserved", add_arg("kst-v", reserved=(0, 0, 0, 0, 0, 0, 0, 1), **ok), errno.EINVAL),
        ("features", add_arg("kst-v", features=1 << 10, **ok), errno.EINVAL),
        ("mode", add_arg("kst-v", mode=0o4666, **ok), errno.EINVAL),
        ("uid -1", add_arg("kst-v", uid=0xFFFFFFFF, **ok), errno.EINVAL),
        ("irq fd closed", add_arg("kst-v", doorbell=db, irq=9999), errno.EBADF),
        ("irq fd a pipe", add_arg("kst-v", doorbell=db, irq=rp), errno.EINVAL),
        ("doorbell a pipe", add_arg("kst-v", doorbell=wp, irq=irq), errno.EINVAL),
        ("doorbell == irq", add_arg("kst-v", doorbell=irq, irq=irq), errno.EINVAL),
    ]
    for what, arg, want in bad:
        expect_errno(lambda: fcntl.ioctl(ctl, IOC_ADD, arg), want, f"ADD with {what}")
    check(not os.path.exists("/dev/kst-v"), "a rejected ADD left /dev/kst-v")
    expect_errno(lambda: fcntl.ioctl(ctl, IOC_ATTACH, add_arg("kst-none", **ok)), errno.ENOENT, "ATTACH unknown")
    expect_errno(lambda: fcntl.ioctl(ctl, IOC_REMOVE, bytearray(b"kst-none".ljust(64, b"\0"))), errno.ENOENT,
                 "REMOVE unknown")
    expect_errno(lambda: fcntl.ioctl(ctl, IOC_REMOVE, bytearray(b"x" * 64)), errno.EINVAL, "REMOVE without NUL")
    expect_errno(lambda: fcntl.ioctl(ctl, _IOC(0, 0xDE, 0x4F, 0)), errno.ENOTTY, "unknown control ioctl")

    # Not root: the fd is not enough.
    pid = os.fork()
    if pid == 0:
        os.setgid(65534)
        os.setuid(65534)
        e = errno_of(lambda: fcntl.ioctl(ctl, IOC_ADD, add_arg("kst-v", **ok)))
        os._exit(0 if e == errno.EPERM else 1)
    check(os.waitpid(pid, 0)[1] == 0, "ADD by a non-root holder of the control fd did not fail with EPERM")

    # A valid ADD, with python as the daemon.
    chan = fcntl.ioctl(ctl, IOC_ADD, add_arg("kst-ctl", mode=0o640, uid=1, gid=2, **ok))
    try:
        check(fcntl.fcntl(chan, fcntl.F_GETFD) & fcntl.FD_CLOEXEC, "channel fd without FD_CLOEXEC")
        st = os.stat("/dev/kst-ctl")
        check((st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o640, 1, 2),
              f"/dev/kst-ctl mode {oct(st.st_mode)} uid {st.st_uid} gid {st.st_gid}")
        check(os.major(st.st_rdev) > 0 and (st.st_mode & 0o170000) == 0o020000, "not a character device")
        sq, cq, data, size = layout(64, 128 << 10)
        with mmap.mmap(chan, PAGE, mmap.MAP_SHARED, mmap.PROT_READ) as m:
            magic, abi, _, depth, slot, maxf, wsize, sqo, cqo, datao, offered = struct.unpack_from("<6IQ4Q", m, 0)
            status, epoch = struct.unpack_from("<II", m, 0x48)
            name = m[0x60:0x60 + 8]
        check((magic, abi, depth, slot, maxf) == (MAGIC, 1, 64, 128 << 10, 1024), "register values")
        check((wsize, sqo, cqo, datao) == (size, sq, cq, data), f"layout {wsize, sqo, cqo, datao} != "
                                                                  f"{size, sq, cq, data}")
        check(offered == FEATURES and status == 0 and epoch == 1 and name == b"kst-ctl\0", "regs")
        with mmap.mmap(chan, size, mmap.MAP_SHARED) as m:
            check(struct.unpack_from("<I", m, sq + 128)[0] == 1, "SQ flags should start with NEED_KICK")
        expect_errno(lambda: mmap.mmap(chan, PAGE, mmap.MAP_PRIVATE), errno.EINVAL, "MAP_PRIVATE mmap")
        expect_errno(lambda: mmap.mmap(chan, size + PAGE, mmap.MAP_SHARED), errno.EINVAL, "mmap past the window")
        check(sysfs("kst-ctl", "state") == "serving", "state not serving")
        expect_errno(lambda: fcntl.ioctl(ctl, IOC_ADD, add_arg("kst-ctl", **ok)), errno.EEXIST, "duplicate ADD")
        expect_errno(lambda: fcntl.ioctl(ctl, IOC_ATTACH, add_arg("kst-ctl", **ok)), errno.EBUSY,
                     "ATTACH to a served device")
    finally:
        os.close(chan)
    check(sysfs("kst-ctl", "state") == "nosrv", "closing the channel did not detach")
    expect_errno(lambda: os.open("/dev/kst-ctl", os.O_RDWR), errno.ENODEV, "open without a daemon")
    chan = fcntl.ioctl(ctl, IOC_ATTACH, add_arg("kst-ctl", depth=2, slot=8192, **ok))
    sq, cq, data, size = layout(2, 8192)
    with mmap.mmap(chan, size, mmap.MAP_SHARED) as m:
        check(struct.unpack_from("<I", m, 0x4C)[0] == 2, "ATTACH did not bump the epoch in the window")
        check(struct.unpack_from("<Q", m, 0x18)[0] == size, "ATTACH window size")
    check(sysfs("kst-ctl", "attach_epoch") == "2" and sysfs("kst-ctl", "state") == "serving", "sysfs after ATTACH")
    fcntl.ioctl(ctl, IOC_REMOVE, bytearray(b"kst-ctl".ljust(64, b"\0")))
    check(wait_gone("/dev/kst-ctl"), "REMOVE left the node")
    check(not os.path.exists("/sys/class/devemu/kst-ctl"), "REMOVE left the sysfs device")
    p = select.poll()
    p.register(chan, select.POLLIN)
    check(p.poll(0) and p.poll(0)[0][1] & select.POLLHUP, "channel fd of a removed device does not poll HUP")
    os.close(chan)
    # Default geometry.
    chan = fcntl.ioctl(ctl, IOC_ADD, add_arg("kst-ctl", **ok))
    os.close(chan)
    fcntl.ioctl(ctl, IOC_REMOVE, bytearray(b"kst-ctl".ljust(64, b"\0")))
    for fd in (ctl, db, irq, rp, wp):
        os.close(fd)


def test_echo_io():
    """read/write/poll/ioctl through the window against the loopback stand-in."""
    name, path = "kst-echo", "/dev/kst-echo"
    s = echo(name, "-d", "8", "-s", "4096", "-c", "262144")
    try:
        check(s.ready.startswith("ready epoch=1 depth=8 slot=4096"), s.ready)
        fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
        check(os.read(fd, 0) == b"" and os.write(fd, b"") == 0, "zero-length read/write")
        expect_errno(lambda: os.read(fd, 10), errno.EAGAIN, "read of an empty FIFO with O_NONBLOCK")
        expect_errno(lambda: os.lseek(fd, 0, os.SEEK_SET), errno.ESPIPE, "lseek")
        expect_errno(lambda: os.pread(fd, 1, 0), errno.ESPIPE, "pread")
        check(os.write(fd, b"hello") == 5, "write")
        check(fionread(fd) == 5 and nread(fd) == 5, "FIONREAD / DEVEMU_IOC_NREAD")
        check(os.read(fd, 3) == b"hel" and os.read(fd, 100) == b"lo", "read back")
        # Writes larger than a slot go in slot-size chunks; reads return at most a slot.
        data = os.urandom(100000)
        check(os.write(fd, data) == 100000, "a 100000-byte write (slot 4096)")
        check(fionread(fd) == 100000, "FIONREAD after the big write")
        back = b""
        while len(back) < len(data):
            b = os.read(fd, 65536)
            check(len(b) <= 4096, f"a read returned {len(b)} bytes, more than a slot")
            back += b
        check(back == data, "big write read back differs")
        # Pointer-chasing ioctl: three rounds (struct, then the buffer it points to).
        import ctypes
        cbuf = ctypes.create_string_buffer(b"abcdefgh", 8)
        addr = ctypes.addressof(cbuf)
        arg = bytearray(struct.pack("<QII", addr, 8, 0))
        r = fcntl.ioctl(fd, IOC_REVERSE, arg, True)
        check(r == 8 and cbuf.raw == b"hgfedcba", f"REVERSE returned {r}, buffer {cbuf.raw!r}")
        arg = bytearray(struct.pack("<QII", 8, 8, 0))  # a pointer to nowhere
        expect_errno(lambda: fcntl.ioctl(fd, IOC_REVERSE, arg, True), errno.EFAULT, "REVERSE with a bad pointer")
        expect_errno(lambda: fcntl.ioctl(fd, IOC_NREAD, 16), errno.EFAULT, "NREAD to a bad pointer")
        expect_errno(lambda: fcntl.ioctl(fd, _IOC(0, 0x54, 0x99, 0), 0), errno.ENOTTY, "unknown ioctl")
        # poll readiness from the shadow registers, and wake-ups.
        p = select.poll()
        p.register(fd, select.POLLIN | select.POLLOUT)
        check(p.poll(0) == [(fd, select.POLLOUT)], f"poll on empty: {p.poll(0)}")
        c = Child(blocking_poll, path, select.POLLIN, 20000)
        c.wait_blocked([POLL])
        t0 = time.monotonic()
        os.write(fd, b"x")
        res = c.result(5)
        check(res and res[0] == "poll" and res[1] and res[1][0][1] & select.POLLIN,
              f"poller not woken by a write: {res}")
        dt = time.monotonic() - t0
        check(os.read(fd, 10) == b"x", "read after poll")
        # Edge-triggered epoll sees each arrival.
        ep = select.epoll()
        ep.register(fd, select.EPOLLIN | select.EPOLLET)
        check(ep.poll(0) == [], "ET epoll on empty")
        for i in range(3):
            os.write(fd, b"y")
            check(ep.poll(2) == [(fd, select.EPOLLIN)], f"ET epoll arrival {i}")
        # Another file's shadow changing (an open, a close) is not an event of this one.
        os.close(os.open(path, os.O_RDWR))
        check(ep.poll(0.3) == [], "ET epoll reported an open/close of another file")
        ep.close()
        read_all_nonblock(fd)
        os.close(fd)
        print(f"    poll wake-up after a write: {dt * 1000:.1f} ms")
    finally:
        rc = s.kill(signal.SIGTERM)
    check(rc == 0, f"kshim_echo exit {rc}: {s.err}")
    opens, releases = [int(x) for x in s.err.split()[1:4:2]]
    check(opens == releases, f"server saw {opens} opens but {releases} releases")


def raw_call(name, fd, arg, n):
    """read/write through libc: no PEP 475 retry, so EINTR and partial counts are seen as they are."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(arg, n) if isinstance(arg, bytes) else ctypes.create_string_buffer(n)
    ret = getattr(libc, name)(fd, buf, n)
    return (name, ret, ctypes.get_errno() if ret < 0 else 0)


def interrupted(call, path, flags, arg, n, after=0.5):
    """In the child: SIGALRM (a handler, not SA_RESTART) after `after` s of a blocking call."""
    fd = os.open(path, flags)
    signal.signal(signal.SIGALRM, lambda *a: None)
    signal.siginterrupt(signal.SIGALRM, True)
    signal.setitimer(signal.ITIMER_REAL, after)
    return raw_call(call, fd, arg, n)


def test_signals():
    """A signal ends a blocked read with EINTR (one CANCEL); a partial write returns its count."""
    name, path = "kst-sig", "/dev/kst-sig"
    s = echo(name, "-r", "-c", "4096")
    try:
        res = Child(interrupted, "read", path, os.O_RDONLY, None, 10).result(10)
        check(res == ("read", -1, errno.EINTR), f"interrupted read: {res}")
        reqs = dict(line.split() for line in sysfs(name, "requests").splitlines())
        check(int(reqs["cancel"]) == 1, f"one CANCEL expected: {reqs}")
        fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
        check(os.write(fd, b"a" * 4086) == 4086, "fill to capacity - 10")
        res = Child(interrupted, "write", path, os.O_WRONLY, b"b" * 100, 100).result(10)
        check(res == ("write", 10, 0), f"interrupted partial write should return 10: {res}")
        back = read_all_nonblock(fd)
        check(back == b"a" * 4086 + b"b" * 10, f"FIFO after the partial write: {len(back)} bytes")
        os.close(fd)
    finally:
        rc = s.kill(signal.SIGTERM)
    check(rc == 0 and wait_gone(path), f"kshim_echo -r: exit {rc}, node left: {os.path.exists(path)}")
    check("cancels 2" in s.err, f"server cancels: {s.err}")


def test_concurrency():
    """Every tag busy (depth 2): a close does not block and its RELEASE waits for a tag; then callers
    contending for tags (depth 4), data integrity."""
    name, path = "kst-conc", "/dev/kst-conc"
    s = echo(name, "-r", "-d", "2", "-s", "4096", "-c", "1048576")
    try:
        spare = os.open(path, os.O_RDWR)
        # Two blocked readers hold both tags (parked requests keep theirs): a close must not block, its
        # RELEASE waits in the backlog and gets the first tag freed, before any new request.
        r1 = Child(interrupted, "read", path, os.O_RDONLY, None, 5, 1.5)
        r2 = Child(blocking_read, path, 5)
        r1.wait_blocked([READ])
        r2.wait_blocked([READ])
        t0 = time.monotonic()
        os.close(spare)
        check(time.monotonic() - t0 < 0.5, "close blocked while every tag was busy")
        check(r1.result(10) == ("read", -1, errno.EINTR), "r1 interrupted")
        w = Child(blocking_write, path, b"01234")
        check(w.result(10) == ("wrote", 5), "writer")
        check(r2.result(10) == ("read", b"01234"), "reader")
    finally:
        rc = s.kill(signal.SIGTERM)
    check(rc == 0, f"exit {rc}")
    opens, releases = [int(x) for x in s.err.split()[1:4:2]]
    check(opens == releases == 4, f"server saw {opens} opens, {releases} releases")

    # 3 readers and 3 writers, 200 messages each, through 4 tags: parked readers hold at most 3, so the
    # writers contend for the last one (more blocked callers than tags would deadlock: parked requests
    # keep their tags, see kshim/README.md).
    s = echo(name, "-r", "-d", "4", "-s", "4096", "-c", "1048576")
    try:
        n, msgs, size = 3, 200, 64

        def writer(i):
            wfd = os.open(path, os.O_WRONLY)
            for m in range(msgs):
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
        ws = [Child(writer, i) for i in range(n)]
        rs = [Child(reader) for _ in range(n)]
        for c in ws:
            check(c.result(120) == ("ok",), "a writer failed")
        total = [0] * n
        for c in rs:
            res = c.result(120)
            check(res and res[0] == "ok", f"a reader failed: {res}")
            total = [a + b for a, b in zip(total, res[1])]
        check(total == [msgs * size] * n, f"bytes per writer: {total}")
    finally:
        rc = s.kill(signal.SIGTERM)
    check(rc == 0, f"exit {rc}")
    opens, releases = [int(x) for x in s.err.split()[1:4:2]]
    check(opens == releases == 2 * n, f"server saw {opens} opens, {releases} releases")


def test_no_features():
    """A daemon accepting no feature: poll round trips, restricted ioctls, no CANCEL (abandon), always kick."""
    name, path = "kst-nofeat", "/dev/kst-nofeat"
    s = echo(name, "-f", "0", "-d", "2")
    try:
        fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
        p = select.poll()
        p.register(fd, select.POLLIN | select.POLLOUT)
        check(p.poll(0) == [(fd, select.POLLOUT)], f"poll round trip on empty: {p.poll(0)}")
        os.write(fd, b"abc")
        check(nread(fd) == 3, "DEVEMU_IOC_NREAD restricted")
        expect_errno(lambda: fionread(fd), errno.ENOTTY, "FIONREAD without the shadow and without retry")
        import ctypes
        cbuf = ctypes.create_string_buffer(b"abcd", 4)
        arg = bytearray(struct.pack("<QII", ctypes.addressof(cbuf), 4, 0))
        expect_errno(lambda: fcntl.ioctl(fd, IOC_REVERSE, arg, True), errno.ENOTTY, "pointer ioctl restricted")
        check(os.read(fd, 10) == b"abc", "read")
        c = Child(blocking_poll, path, select.POLLIN, 20000)
        c.wait_blocked([POLL])
        os.write(fd, b"z")
        res = c.result(5)
        check(res and res[1] and res[1][0][1] & select.POLLIN, f"poll round trip not woken: {res}")
        check(os.read(fd, 10) == b"z", "read z")

        # No CANCEL: a signalled caller abandons its request, which stays parked in the daemon, holding
        # its tag, until it completes: here it takes the next bytes written.
        rfd = os.open(path, os.O_RDONLY)
        signal.signal(signal.SIGALRM, lambda *a: None)
        signal.siginterrupt(signal.SIGALRM, True)
        signal.setitimer(signal.ITIMER_REAL, 0.5)
        res = raw_call("read", rfd, None, 10)
        check(res == ("read", -1, errno.EINTR), f"abandoned read: {res}")
        os.write(fd, b"lost")
        time.sleep(0.2)
        expect_errno(lambda: os.read(fd, 10), errno.EAGAIN, "the abandoned read did not take the data")
        os.close(rfd)
        os.write(fd, b"kept")
        check(os.read(fd, 10) == b"kept", "device unusable after an abandoned request")
        os.close(fd)
    finally:
        rc = s.kill(signal.SIGTERM)
    opens, releases = [int(x) for x in s.err.split()[1:4:2]]
    check(rc == 0 and opens == releases, f"exit {rc}, {opens} opens, {releases} releases")


def test_daemon_death():
    """SIGKILL of the daemon: blocked callers get errors within a second, new opens ENODEV, old files EIO;
    a new daemon ATTACHes (epoch 2) and serves; rmmod is refused while a client file is open."""
    name, path = "kst-death", "/dev/kst-death"
    wname, wpath = "kst-deathw", "/dev/kst-deathw"
    s = echo(name)
    sw = echo(wname, "-c", "4096")
    idle = os.open(path, os.O_RDWR | os.O_NONBLOCK)
    readers = [Child(blocking_read, path) for _ in range(3)]
    poller = Child(blocking_poll, path, select.POLLIN, 30000)
    wfd = os.open(wpath, os.O_WRONLY | os.O_NONBLOCK)
    os.write(wfd, b"f" * 4096)
    writer = Child(blocking_write, wpath, b"w" * 100)
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
    for dt, res in results[:3] + results[4:]:
        check(res == ("error", "EIO"), f"blocked caller after SIGKILL: {res}")
    pres = results[3][1]
    check(pres and pres[0] == "poll" and pres[1] and pres[1][0][1] & (select.POLLERR | select.POLLHUP),
          f"poller after SIGKILL: {pres}")
    check(worst < 1.0, f"callers returned only after {worst:.2f} s: {results}")
    print(f"    callers errored {worst * 1000:.0f} ms after SIGKILL (worst of 5)")
    check(sysfs(name, "state") == "nosrv", "state after SIGKILL")
    check(os.path.exists(path), "the node must stay after the daemon died")
    expect_errno(lambda: os.open(path, os.O_RDWR), errno.ENODEV, "open after the daemon died")
    expect_errno(lambda: os.read(idle, 10), errno.EIO, "read on a file of the dead daemon")
    expect_errno(lambda: os.write(idle, b"x"), errno.EIO, "write on a file of the dead daemon")
    expect_errno(lambda: fionread(idle), errno.EIO, "ioctl on a file of the dead daemon")
    p = select.poll()
    p.register(idle, select.POLLIN)
    check(p.poll(0)[0][1] & (select.POLLERR | select.POLLHUP), "poll on a file of the dead daemon")
    # rmmod must refuse while a client file is open.
    r = subprocess.run(["rmmod", "devemu_kshim"], capture_output=True, text=True)
    check(r.returncode != 0 and "in use" in r.stderr, f"rmmod with a client file open: {r.returncode} {r.stderr}")
    # A new daemon re-attaches.
    s2 = echo(name, "-a")
    check(s2.ready.startswith("ready epoch=2"), s2.ready)
    check(sysfs(name, "state") == "serving" and sysfs(name, "attach_epoch") == "2", "sysfs after re-ATTACH")
    fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
    os.write(fd, b"again")
    check(os.read(fd, 10) == b"again", "round trip after re-ATTACH")
    os.close(fd)
    expect_errno(lambda: os.read(idle, 10), errno.EIO, "a file of epoch 1 in epoch 2")
    os.close(idle)
    os.close(wfd)
    # REMOVE while served: a blocked reader gets ENODEV, the node goes away.
    remove(wname)
    s3 = Child(blocking_read, path)
    s3.wait_blocked([READ])
    remove(name)
    res = s3.result(5)
    check(res == ("error", "ENODEV"), f"blocked reader at REMOVE: {res}")
    check(wait_gone(path), "node left after REMOVE")
    rc = s2.kill(signal.SIGTERM)
    check(rc == 0, f"re-attached daemon exit {rc}")


def test_hostile_garbage():
    """Bad tags, wrong epochs, duplicates, bad results and retry lists: errors, never hangs or crashes."""
    name, path = "kst-garbage", "/dev/kst-garbage"
    s = hostile("garbage", name)
    try:
        expect_errno(lambda: os.open(path, os.O_RDWR), errno.EIO, "OPEN with fh 5000")
        expect_errno(lambda: os.open(path, os.O_RDWR), errno.EIO, "OPEN with -ERESTARTSYS")
        expect_errno(lambda: os.open(path, os.O_RDWR), errno.EIO, "OPEN with -ERESTART_RESTARTBLOCK")
        expect_errno(lambda: os.open(path, os.O_RDWR), errno.ENOENT, "OPEN with -ENOENT")
        fd = os.open(path, os.O_RDWR)
        expect_errno(lambda: os.read(fd, 10), errno.EIO, "READ result > len")
        expect_errno(lambda: os.read(fd, 10), errno.EIO, "READ with -EIOCBQUEUED")
        expect_errno(lambda: os.read(fd, 10), errno.EIO, "READ result 0x7fffffff")
        check(os.read(fd, 10) == b"xyz", "a sane READ after the bad ones")
        expect_errno(lambda: os.write(fd, b"abc"), errno.EIO, "WRITE result > len")
        expect_errno(lambda: os.write(fd, b"abc"), errno.EIO, "WRITE result -4096")
        check(os.write(fd, b"abc") == 3, "a sane WRITE")
        buf = bytearray(b"\0" * 4)
        cmd = _IOC(0, 0x54, 0x77, 0)
        for what, want in [("retry in_count 0xffffffff", errno.EIO), ("retry length 1<<40", errno.EIO),
                           ("retry range at a kernel address", errno.EFAULT),
                           ("retry with 400 ranges", errno.EIO), ("output larger than its room", errno.EIO),
                           ("endless retries", errno.EIO)]:
            expect_errno(lambda: fcntl.ioctl(fd, cmd, buf, True), want, f"IOCTL {what}")
        r = fcntl.ioctl(fd, cmd, buf, True)
        check(r == 42 and bytes(buf) == b"HOST", f"a sane IOCTL with output: {r} {bytes(buf)}")
        # Shadow registers whose seqlock never settles, all ones: poll and FIONREAD still answer.
        p = select.poll()
        p.register(fd, select.POLLIN | select.POLLOUT)
        t0 = time.monotonic()
        ev = p.poll(0)
        check(ev and time.monotonic() - t0 < 1, f"poll on a broken shadow: {ev}")
        check(fionread(fd) == 0x7FFFFFFF, "FIONREAD of an all-ones shadow is clamped to INT_MAX")
        os.close(fd)
        time.sleep(0.2)
        stale, proto = counter(name, "stale_completions"), counter(name, "protocol_errors")
        check(stale >= 30 and proto >= 30, f"counters: stale {stale}, protocol errors {proto}")
        print(f"    stale_completions {stale}, protocol_errors {proto}")
    finally:
        s.kill()
    check(sysfs(name, "state") == "nosrv", "state after the hostile daemon died")
    remove(name)


def remove(name):
    ctl = os.open(CONTROL, os.O_RDWR)
    try:
        fcntl.ioctl(ctl, IOC_REMOVE, bytearray(name.encode().ljust(64, b"\0")))
    finally:
        os.close(ctl)


def test_hostile_tail():
    """A completion tail far ahead detaches the channel (EIO, POLLHUP); the daemon can ATTACH again."""
    name, path = "kst-tail", "/dev/kst-tail"
    s = hostile("tail", name)
    try:
        expect_errno(lambda: os.open(path, os.O_RDWR), errno.EIO, "OPEN answered by a runaway tail")
        check(s.readline(10) == "hup-seen", "channel fd did not poll HUP after the protocol error")
        line = s.readline(10)
        check(line == "reattached ok epoch=2", f"re-ATTACH after the protocol error: {line!r}")
        expect_errno(lambda: os.open(path, os.O_RDWR), errno.EACCES, "OPEN in epoch 2")
        check(counter(name, "protocol_errors") >= 1, "protocol error not counted")
    finally:
        s.kill()
    remove(name)


def blocking_open_with_handler(path):
    signal.signal(signal.SIGUSR1, lambda *a: None)
    fd = os.open(path, os.O_RDWR)
    return ("opened", fd)


def test_hostile_stall():
    """A daemon that never answers, CANCEL included: a caller with a handled signal keeps waiting
    (killably: SIGKILL ends it at once), a fatal signal abandons the request, and the daemon's death
    ends every wait."""
    name, path = "kst-stall", "/dev/kst-stall"
    s = hostile("stall", name)
    try:
        a = Child(blocking_open_with_handler, path)
        a.wait_blocked([OPENAT])
        os.kill(a.pid, signal.SIGUSR1)  # handled: CANCEL sent, the daemon ignores it
        time.sleep(0.5)
        check(a.result(0) is None, "a signalled caller gave up although the request was not cancelled")
        t0 = time.monotonic()
        os.kill(a.pid, signal.SIGKILL)
        _, status = os.waitpid(a.pid, 0)
        check(os.WIFSIGNALED(status) and time.monotonic() - t0 < 1, "SIGKILL did not end the wait at once")
        b = Child(blocking_read, path)
        b.wait_blocked([OPENAT])
        os.kill(b.pid, signal.SIGTERM)  # fatal: abandons the OPEN
        _, status = os.waitpid(b.pid, 0)
        check(os.WIFSIGNALED(status), "SIGTERM did not end the caller")
        c = Child(blocking_read, path)
        c.wait_blocked([OPENAT])
        t0 = time.monotonic()
        s.kill()
        res = c.result(5)
        dt = time.monotonic() - t0
        check(res == ("error", "EIO"), f"open blocked on a stalled daemon, after its death: {res}")
        check(dt < 1.0, f"took {dt:.2f} s")
        reqs = dict(line.split() for line in sysfs(name, "requests").splitlines())
        check(reqs["open"] == "3" and reqs["cancel"] == "2", f"requests: {reqs}")
    finally:
        s.kill()
    remove(name)


def test_hostile_hup():
    """Closing the irq eventfd detaches: callers get EIO, the channel polls HUP."""
    name, path = "kst-hup", "/dev/kst-hup"
    s = hostile("hup", name)
    try:
        expect_errno(lambda: os.open(path, os.O_RDWR), errno.EIO, "OPEN when the irq eventfd is closed")
        check(s.readline(10) == "hup-seen", "channel fd did not poll HUP")
        check(sysfs(name, "state") == "nosrv", "state after the irq eventfd closed")
    finally:
        s.kill()
    remove(name)


def test_hostile_die():
    """A daemon dying in the middle of a request: EIO, not a hang."""
    name, path = "kst-die", "/dev/kst-die"
    s = hostile("die", name)
    expect_errno(lambda: os.open(path, os.O_RDWR), errno.EIO, "OPEN when the daemon dies")
    check(s.wait(10) == 3, "kshim_hostile die exit status")
    check(sysfs(name, "state") == "nosrv", "state")
    remove(name)


def test_hostile_flood():
    """Thousands of bogus completions around each answer: all dropped and counted."""
    name, path = "kst-flood", "/dev/kst-flood"
    s = hostile("flood", name)
    try:
        fd = os.open(path, os.O_RDWR)
        check(os.read(fd, 10) == b"", "read")
        os.close(fd)
        time.sleep(0.5)
        stale = counter(name, "stale_completions")
        print(f"    stale_completions {stale}, protocol_errors {counter(name, 'protocol_errors')}")
        check(stale > 10000, f"stale {stale}")
    finally:
        s.kill()
    remove(name)


def chaos_client(path, seed, seconds):
    """Random opens, closes, reads, writes, ioctls and polls, each blocking call cut by a timer signal."""
    import ctypes
    import random
    rnd = random.Random(seed)
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(16384)
    rev = ctypes.create_string_buffer(64)
    arg = bytearray(struct.pack("<QII", ctypes.addressof(rev), 64, 0))
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
                    fcntl.ioctl(fd, IOC_REVERSE, arg, True)
                else:
                    select.select([fd], [fd], [], 0.01)
                signal.setitimer(signal.ITIMER_REAL, 0)
        except OSError:
            errors += 1
    return ("ok", ops, errors)


class Devemud:
    """devemud --transport kshim serving NAME as a loopback, with the Server interface."""

    def __init__(self, name, *args):
        self.p = subprocess.Popen([DEVEMUD, "-f", "--transport", "kshim", "--control", "none",
                                   "--device", f"{name}=loopback,capacity=8192,mode=0666"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        CHILDREN.append(self.p)
        end = time.monotonic() + 20
        while time.monotonic() < end:
            try:
                if sysfs(name, "state") == "serving" and self.p.poll() is None:
                    return
            except OSError:
                pass
            check(self.p.poll() is None, f"devemud exited with {self.p.returncode}")
            time.sleep(0.05)
        raise Fail("devemud did not serve within 20 s")

    def kill(self, sig=signal.SIGKILL):
        if self.p.poll() is None:
            self.p.send_signal(sig)
        return self.p.wait(10)


def test_chaos(devemud=False):
    """Random traffic with signals from 6 clients, clients SIGKILLed at random, the daemon SIGKILLed
    and replaced twice under load: nothing hangs, the kernel stays clean, the last daemon serves."""
    import random
    name, path = "kst-chaos", "/dev/kst-chaos"
    rnd = random.Random(7)
    if devemud:
        start = lambda attach: Devemud(name)  # noqa: E731 (devemud ATTACHes by itself on EEXIST)
    else:
        start = lambda attach: echo(name, *(["-a"] if attach else []), "-d",  # noqa: E731
                                    str(rnd.choice([2, 4, 8]) if attach else 4), "-s", "4096", "-c", "8192")
    servers = [start(False)]
    seconds = 12
    clients = [Child(chaos_client, path, i, seconds) for i in range(6)]
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
            os.waitpid(c.pid, 0)
            os.close(c.r)
            killed += 1
            clients.append(Child(chaos_client, path, 100 + at, seconds - at))
        else:
            servers[-1].kill()
            servers.append(start(True))
    total = 0
    for c in clients:
        res = c.result(seconds + 30)
        check(res and res[0] == "ok", f"a chaos client hung or failed: {res}")
        total += res[1]
    check(sysfs(name, "attach_epoch") == "3" and sysfs(name, "state") == "serving", "sysfs after the chaos")
    fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
    read_all_nonblock(fd)
    os.write(fd, b"still alive")
    check(os.read(fd, 100) == b"still alive", "the last daemon does not serve")
    os.close(fd)
    print(f"    {total} operations by surviving clients, {killed} clients SIGKILLed, 2 daemons SIGKILLed; "
          f"stale {counter(name, 'stale_completions')}, protocol errors {counter(name, 'protocol_errors')}")
    check(counter(name, "protocol_errors") == 0, "protocol errors with an honest daemon")
    servers[-1].kill(signal.SIGTERM)
    if not devemud:
        remove(name)
    else:
        check(wait_gone(path), "devemud's SIGTERM did not remove the node")


def test_chaos_devemud():
    """test_chaos with devemud --transport kshim as the daemon (only with --devemud)."""
    if not DEVEMUD:
        print("    skipped: no --devemud")
        return
    test_chaos(devemud=True)


TESTS = [test_control_validation, test_echo_io, test_signals, test_concurrency, test_no_features,
         test_daemon_death, test_hostile_garbage, test_hostile_tail, test_hostile_stall, test_hostile_hup,
         test_hostile_die, test_hostile_flood, test_chaos, test_chaos_devemud]


def main():
    global BIN, DEVEMUD
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--devemud", help="devemud binary: also run test_chaos_devemud")
    ap.add_argument("tests", nargs="*")
    a = ap.parse_args()
    BIN = a.bin
    DEVEMUD = a.devemud
    failed = passed = 0
    for t in TESTS:
        if a.tests and t.__name__ not in a.tests and t.__name__[5:] not in a.tests:
            continue
        t0 = time.monotonic()
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        try:
            t()
            passed += 1
            print(f"PASS {t.__name__} ({time.monotonic() - t0:.1f} s)", flush=True)
        except Exception as e:  # noqa: BLE001
            failed += 1
            print(f"FAIL {t.__name__}: {e}", flush=True)
            if not isinstance(e, Fail):
                traceback.print_exc()
        finally:
            for p in CHILDREN:
                if p.poll() is None:
                    p.kill()
                    p.wait()
            CHILDREN.clear()
    print(f"selftest: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
