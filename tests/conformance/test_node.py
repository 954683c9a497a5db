# SPDX-License-Identifier: MIT
# The devemu conformance suite: what a user of a devemu node (loopback, zero, rng) can rely on, on every transport.
"""
Run (Debian's pytest; the suite starts and stops devemud itself):

  /usr/bin/python3 -m pytest tests/conformance                      # host: FUSE fallback
  /usr/bin/python3 -m pytest tests/conformance --client build/tests/conformance/devemu_client
  tests/vm/run -- /usr/bin/python3 -m pytest tests/conformance --transport cuse --check-dmesg
  /usr/bin/python3 -m pytest tests/conformance --node /dev/X --transport kshim   # a node served elsewhere

Options are listed under "devemu test suites" in `pytest tests/conformance --help` (the common
ones come from tests/lib/devemu_testlib, the rest from tests/conformance/conftest.py). With
--check-dmesg a test fails if the kernel logged a warning, BUG or oops while it ran.
"""

import contextlib
import errno
import fcntl
import multiprocessing
import os
import select
import signal
import stat
import struct
import subprocess
import termios
import time

import pytest

from devemu_testlib.abi import IO, IOR, IOW, IOWR

# --------------------------------------------------------------------------------------------
# ABI: struct devemu_counters and the devemu ioctls come from the uapi header through the `abi`
# fixture (devemu_testlib.abi); IO/IOR/IOW/IOWR encode other numbers the generic Linux way.
# --------------------------------------------------------------------------------------------

FIONREAD = termios.FIONREAD

# What a client sees once the daemon is SIGKILLed. FUSE and CUSE: the kernel aborts the connection
# when the daemon's /dev/fuse or /dev/cuse fd closes, ends the requests in flight with ECONNABORTED,
# wakes pollers (whose next POLL fails: POLLERR) and answers later requests ENOTCONN. The kernel
# shim detaches the channel: waiting callers get EIO, a file of the dead daemon polls
# POLLERR|POLLHUP and reads EIO (kshim/kshim_client.c).
AFTER_KILL = {
    "fuse": dict(blocked=errno.ECONNABORTED, poll=select.POLLERR, later=errno.ENOTCONN),
    "cuse": dict(blocked=errno.ECONNABORTED, poll=select.POLLERR, later=errno.ENOTCONN),
    "kshim": dict(blocked=errno.EIO, poll=select.POLLERR | select.POLLHUP, later=errno.EIO),
}

SYSCALLS = {
    "x86_64": {"read": {0}, "write": {1}, "poll": {7, 271}},
    "aarch64": {"read": {63}, "write": {64}, "poll": {73}},
}

MP = multiprocessing.get_context("fork")


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------

class Counters:
    FIELDS = ("bytes_in", "bytes_out", "opens", "dropped")

    def __init__(self, values):
        for k in self.FIELDS:
            setattr(self, k, values[k])

    def __sub__(self, other):
        return Counters({k: getattr(self, k) - getattr(other, k) for k in self.FIELDS})

    def __repr__(self):
        return (f"Counters(bytes_in={self.bytes_in}, bytes_out={self.bytes_out}, "
                f"opens={self.opens}, dropped={self.dropped})")


def get_counters(abi, fd):
    counters = abi.struct("devemu_counters")
    buf = bytearray(counters.size)
    fcntl.ioctl(fd, abi.DEVEMU_IOC_COUNTERS, buf, True)
    return Counters(counters.unpack_from(buf))


def get_nread(abi, fd):
    buf = bytearray(4)
    fcntl.ioctl(fd, abi.DEVEMU_IOC_NREAD, buf, True)
    return struct.unpack("=I", buf)[0]


def get_fionread(fd):
    buf = bytearray(4)
    fcntl.ioctl(fd, FIONREAD, buf, True)
    return struct.unpack("=i", buf)[0]


@contextlib.contextmanager
def opened(path, flags=os.O_RDWR):
    fd = os.open(path, flags)
    try:
        yield fd
    finally:
        os.close(fd)


def close_quietly(fd):
    """close(2) of an fd whose daemon is gone may report ENOTCONN/EIO (FUSE's flush); the fd is
    closed all the same."""
    try:
        os.close(fd)
    except OSError:
        pass


def first_diff(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return f"first difference at offset {i}: expected 0x{x:02x}, got 0x{y:02x}"
    if len(a) != len(b):
        return f"lengths differ: expected {len(a)}, got {len(b)}"
    return "equal"


def read_nonblock_all(path_or_fd, limit=1 << 24):
    """Everything readable now, via O_NONBLOCK reads (a path is opened O_NONBLOCK)."""
    own = isinstance(path_or_fd, str)
    fd = os.open(path_or_fd, os.O_RDONLY | os.O_NONBLOCK) if own else path_or_fd
    if not fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NONBLOCK:
        raise ValueError("read_nonblock_all needs an O_NONBLOCK fd")
    out = bytearray()
    try:
        while len(out) < limit:
            try:
                b = os.read(fd, 1 << 16)
            except BlockingIOError:
                break
            if not b:
                break
            out += b
    finally:
        if own:
            os.close(fd)
    return bytes(out)


def read_exact(fd, n, suite, timeout=10.0, what="read"):
    out = bytearray()
    with suite.deadline(timeout, f"{what}: got {len(out)} of {n} bytes"):
        while len(out) < n:
            b = os.read(fd, n - len(out))
            assert b, f"{what}: unexpected end of file after {len(out)} of {n} bytes"
            out += b
    return bytes(out)


def syscall_of(pid):
    try:
        with open(f"/proc/{pid}/syscall") as f:
            return f.read().split()
    except OSError:
        return []


def wait_blocked(pid, call, timeout=5.0):
    """Wait until pid's main thread sits in syscall `call` (read/write/poll) for 100 ms."""
    nrs = SYSCALLS.get(os.uname().machine, {}).get(call)
    end = time.monotonic() + timeout
    if nrs is None:  # unknown architecture: give it time
        time.sleep(0.5)
        return
    while time.monotonic() < end:
        s = syscall_of(pid)
        if s and s[0].isdigit() and int(s[0]) in nrs:
            time.sleep(0.1)
            s2 = syscall_of(pid)
            if s2 and s2[0].isdigit() and int(s2[0]) in nrs:
                return
        if not os.path.exists(f"/proc/{pid}"):
            raise AssertionError(f"process {pid} exited before blocking in {call}(2)")
        time.sleep(0.01)
    raise AssertionError(f"process {pid} did not block in {call}(2) within {timeout:g} s "
                         f"(/proc/{pid}/syscall: {' '.join(syscall_of(pid)[:1]) or '?'})")


class Child:
    """A forked helper process running fn(conn, *args); it reports through a pipe."""

    def __init__(self, suite, fn, *args):
        self.suite = suite
        self.conn, child_conn = MP.Pipe()
        self.p = MP.Process(target=Child._main, args=(child_conn, fn, args), daemon=True)
        self.p.start()
        suite.register(self.p.pid)

    @staticmethod
    def _main(conn, fn, args):
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        try:
            fn(conn, *args)
        except BaseException as e:  # report, do not run pytest machinery in the child
            conn.send(("exception", repr(e)))

    @property
    def pid(self):
        return self.p.pid

    def recv(self, timeout, what):
        if not self.conn.poll(timeout):
            raise AssertionError(f"{what}: no answer from helper process within {timeout:g} s")
        msg = self.conn.recv()
        if msg and msg[0] == "exception":
            raise AssertionError(f"{what}: helper process raised {msg[1]}")
        return msg

    def has_message(self):
        return self.conn.poll(0)

    def finish(self, timeout=5.0):
        self.p.join(timeout)
        if self.p.is_alive():
            self.p.kill()
            self.p.join(10)
        self.suite.forget(self.p.pid)


@pytest.fixture
def children(suite):
    made = []

    def spawn(fn, *args):
        c = Child(suite, fn, *args)
        made.append(c)
        return c

    yield spawn
    for c in made:
        c.finish(timeout=0.5)


# Child process bodies -------------------------------------------------------------------------

def _ch_blocking_read(conn, path, n):
    fd = os.open(path, os.O_RDONLY)
    conn.send(("ready",))
    t = time.monotonic()
    try:
        b = os.read(fd, n)
        conn.send(("read", b, time.monotonic() - t))
    except OSError as e:
        conn.send(("error", e.errno, time.monotonic() - t))


def _ch_blocking_write(conn, path, data):
    fd = os.open(path, os.O_WRONLY)
    conn.send(("ready",))
    t = time.monotonic()
    try:
        n = os.write(fd, data)
        conn.send(("wrote", n, time.monotonic() - t))
    except OSError as e:
        conn.send(("error", e.errno, time.monotonic() - t))


def _ch_blocking_poll(conn, path, events, timeout_ms):
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    p = select.poll()
    p.register(fd, events)
    conn.send(("ready",))
    t = time.monotonic()
    ev = p.poll(timeout_ms)
    dt = time.monotonic() - t
    revents = ev[0][1] if ev else 0
    after = None
    try:
        b = os.read(fd, 16)
        after = ("read", len(b))
    except OSError as e:
        after = ("error", e.errno)
    conn.send(("polled", revents, dt, after))


def _ch_delayed_write(conn, path, delay, data):
    time.sleep(delay)
    with opened(path, os.O_WRONLY) as fd:
        n = os.write(fd, data)
    conn.send(("wrote", n))


def _ch_delayed_read(conn, path, delay, n):
    time.sleep(delay)
    with opened(path, os.O_RDONLY | os.O_NONBLOCK) as fd:
        b = os.read(fd, n)
    conn.send(("read", b))


def _ch_bulk_write(conn, path, data):
    fd = os.open(path, os.O_WRONLY)
    conn.send(("ready",))
    n = os.write(fd, data)  # one write(2): returns only when every byte was accepted
    conn.send(("wrote", n))
    os.close(fd)


class _Interrupted(Exception):
    pass


def _raise_interrupted(signum, frame):
    raise _Interrupted()


def _ch_read_eintr_python(conn, path, count):
    # Python retries EINTR itself (PEP 475) unless the handler raises, so it raises.
    signal.signal(signal.SIGUSR1, _raise_interrupted)
    signal.siginterrupt(signal.SIGUSR1, True)
    fd = os.open(path, os.O_RDONLY)
    conn.send(("ready",))
    got = b""
    try:
        got = os.read(fd, count)
        conn.send(("restarted", len(got)))
    except _Interrupted:
        conn.send(("interrupted",))
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    while len(got) < count:
        b = os.read(fd, count - len(got))
        if not b:
            break
        got += b
    conn.send(("data", got))


def _ch_hold_open(conn, path, idx, barrier):
    fd = os.open(path, os.O_RDWR)
    barrier.wait(20)  # every helper holds the node open at the same time
    msg = b"P%02d:%04d" % (idx, os.getpid() % 10000)  # 8 bytes
    n = os.write(fd, msg)
    barrier.wait(20)
    os.close(fd)
    conn.send(("ok", msg, n))


# --------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------

@pytest.fixture
def loop(cfg, node):
    """The main node, which must serve the loopback model."""
    if cfg.model != "loopback":
        pytest.skip(f"needs the loopback model; the node serves {cfg.model}")
    return node


# --------------------------------------------------------------------------------------------
# ABI and the node itself
# --------------------------------------------------------------------------------------------

def test_ioctl_numbers_match_uapi_header(client, abi):
    """The static C client is built from the header the library reads (abi_dump), and the generic
    _IOC encoding the suites use for other ioctls gives the header's numbers."""
    r = subprocess.run([client, "abi"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stdout + r.stderr
    got = dict(line.split() for line in r.stdout.splitlines())
    size = abi.sizeof("devemu_counters")
    assert (int(got["DEVEMU_IOC_COUNTERS"], 16), int(got["DEVEMU_IOC_NREAD"], 16), int(got["sizeof_devemu_counters"])) \
        == (abi.DEVEMU_IOC_COUNTERS, abi.DEVEMU_IOC_NREAD, size)
    assert (IOR(0xDE, 0x01, size), IOR(0xDE, 0x02, 4)) == (abi.DEVEMU_IOC_COUNTERS, abi.DEVEMU_IOC_NREAD)
    add = abi.sizeof("devemu_kshim_add")
    assert (IOW(0xDE, 0x40, add), IOW(0xDE, 0x41, add), IOW(0xDE, 0x42, abi.DEVEMU_DEVICE_NAME_MAX)) == \
        (abi.DEVEMU_KSHIM_IOC_ADD, abi.DEVEMU_KSHIM_IOC_ATTACH, abi.DEVEMU_KSHIM_IOC_REMOVE)


def _fstype_of(path):
    best, fstype = "", None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, right = line.split(" - ", 1)
            mnt = left.split()[4].replace("\\040", " ")
            if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                best, fstype = mnt, right.split()[0]
    return fstype


def test_node_is_served(cfg, node):
    """The node exists where a user looks for it, with the transport's file type."""
    st = os.stat(node)
    if cfg.transport in ("cuse", "kshim"):
        assert stat.S_ISCHR(st.st_mode), f"{node} is not a character device (mode {oct(st.st_mode)})"
    else:
        assert os.path.islink(node), f"{node} should be a symlink into the FUSE fallback mount"
        target = os.path.realpath(node)
        if not cfg.external:
            assert target == f"/run/devemu/{cfg.name}", f"{node} points to {target}"
        assert stat.S_ISREG(st.st_mode), f"{target} should be a file (mode {oct(st.st_mode)})"
        fstype = _fstype_of(target)
        assert fstype and fstype.startswith("fuse"), f"{target} is on {fstype}, not a FUSE mount"
    assert os.access(node, os.R_OK | os.W_OK), f"{node} is not readable and writable by root"


def test_node_is_not_seekable(cfg, node, suite):
    """A stream device: lseek and pread fail with ESPIPE (FUSE fallback: FOPEN_NONSEEKABLE;
    kshim). CUSE nodes cannot refuse (the kernel's cuse.c uses noop_llseek and never calls
    nonseekable_open), so there lseek must at least leave the stream untouched."""
    with opened(node, os.O_RDWR | os.O_NONBLOCK) as fd:
        if cfg.transport == "cuse":
            if cfg.model != "loopback":
                pytest.skip("CUSE nodes accept lseek (noop_llseek); the stream check needs loopback")
            with suite.deadline(5, "lseek on a CUSE node"):
                os.write(fd, b"abcdef")
                os.lseek(fd, 3, os.SEEK_SET)
                assert os.read(fd, 2) == b"ab", "lseek moved the read position in the FIFO"
                os.lseek(fd, 0, os.SEEK_SET)
                assert os.read(fd, 10) == b"cdef"
            return
        with pytest.raises(OSError) as e:
            os.lseek(fd, 0, os.SEEK_SET)
        assert e.value.errno == errno.ESPIPE, f"lseek: {e.value}"
        with pytest.raises(OSError) as e:
            os.pread(fd, 1, 0)
        assert e.value.errno == errno.ESPIPE, f"pread: {e.value}"


def test_open_close_many(node, main_daemon, suite):
    """500 open/close cycles with every access mode all succeed and leave the node usable."""
    modes = [os.O_RDONLY, os.O_WRONLY, os.O_RDWR, os.O_RDWR | os.O_NONBLOCK, os.O_RDONLY | os.O_NONBLOCK]

    def daemon_fds():
        try:
            return len(os.listdir(f"/proc/{main_daemon.proc.pid}/fd"))
        except (OSError, AttributeError):
            return None

    fds_before = daemon_fds()
    with suite.deadline(60, "500 open/close cycles"):
        for i in range(500):
            fd = os.open(node, modes[i % len(modes)])
            os.close(fd)
    fds_after = daemon_fds()
    if fds_before is not None and fds_after is not None:
        assert fds_after == fds_before, \
            f"devemud holds {fds_after - fds_before} more fds after 500 open/close cycles (leak)"
    with opened(node, os.O_RDWR | os.O_NONBLOCK) as fd:
        assert os.fstat(fd) is not None


def test_open_from_several_processes_at_once(loop, children, suite):
    """8 processes hold the node open at the same time and each one's write arrives intact."""
    n = 8
    barrier = MP.Barrier(n)
    with opened(loop, os.O_RDONLY | os.O_NONBLOCK) as fd:
        kids = [children(_ch_hold_open, loop, i, barrier) for i in range(n)]
        msgs = [k.recv(30, f"helper {i} open/write/close") for i, k in enumerate(kids)]
        for m in msgs:
            assert m[0] == "ok" and m[2] == len(m[1]), m
        back = read_exact(fd, 8 * n, suite, what="reading the 8 helpers' messages")
        got = sorted(back[i:i + 8] for i in range(0, len(back), 8))
        assert got == sorted(m[1] for m in msgs), f"messages torn or lost: {back!r}"


# --------------------------------------------------------------------------------------------
# Loopback data path
# --------------------------------------------------------------------------------------------

SMALL_SIZES = [1, 2, 3, 100, 511, 4095, 4096, 4097, 32768, 65535, 65536]
LARGE_SIZES = [65537, 131072, 131073, 200001, 262144, 1048576]


@pytest.mark.parametrize("size", SMALL_SIZES)
def test_loopback_roundtrip_fits(cfg, loop, suite, size):
    """A write of n <= capacity is accepted whole; one read(n + 100) returns exactly those bytes."""
    if size > cfg.capacity:
        pytest.skip(f"size {size} > capacity {cfg.capacity}")
    data = os.urandom(size)
    with opened(loop, os.O_RDWR) as fd:
        with suite.deadline(5, f"write of {size} bytes into an empty FIFO"):
            n = os.write(fd, data)
        assert n == size, f"write({size}) returned {n}"
        with suite.deadline(5, f"read after writing {size} bytes"):
            back = os.read(fd, size + 100)
        assert len(back) == size, f"read({size + 100}) with {size} bytes queued returned {len(back)}"
        assert back == data, first_diff(data, back)
        left = read_nonblock_all(loop)
        assert left == b"", f"{len(left)} extra bytes readable after the round trip"


@pytest.mark.parametrize("size", LARGE_SIZES)
def test_loopback_roundtrip_larger_than_capacity(loop, suite, children, size):
    """A write larger than the FIFO (and than CUSE's 128 KiB request) arrives in order while a
    concurrent reader drains, and the writer's single write(2) reports every byte."""
    data = os.urandom(size)
    with opened(loop, os.O_RDONLY) as fd:
        w = children(_ch_bulk_write, loop, data)
        w.recv(5, "writer open")
        chunks = [262144, 4096, 1, 65536, 131079, 777]
        back = bytearray()
        i = 0
        with suite.deadline(60, f"reading {size} bytes back (have {len(back)})"):
            while len(back) < size:
                b = os.read(fd, min(chunks[i % len(chunks)], size - len(back)))
                assert b, f"end of file after {len(back)} of {size} bytes"
                back += b
                i += 1
        msg = w.recv(10, "writer's write(2) result")
        assert msg == ("wrote", size), f"blocking write({size}) returned {msg}"
        assert bytes(back) == data, first_diff(data, bytes(back))
    left = read_nonblock_all(loop)
    assert left == b"", f"{len(left)} extra bytes readable after the round trip"


@pytest.mark.parametrize("size", [1, 4096, 65536, 131073, 1048576])
def test_static_client_echo(loop, client, size):
    """The static C client writes SIZE random bytes from one process and reads them from another."""
    r = subprocess.run([client, "echo", loop, str(size), "7"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == f"ok {size}", \
        f"devemu_client echo {size}: exit {r.returncode}: {r.stdout}{r.stderr}"


def test_read_returns_what_is_available(loop, suite):
    """read(n) returns min(n, available) bytes at once and leaves the rest queued, in order."""
    data = b"0123456789"
    with opened(loop, os.O_RDWR) as fd:
        assert os.write(fd, data) == 10
        with suite.deadline(5, "read(4) with 10 bytes queued"):
            assert os.read(fd, 4) == b"0123"
        with suite.deadline(5, "read(100) with 6 bytes queued"):
            assert os.read(fd, 100) == b"456789"


def test_shell_redirection_writes(loop, suite):
    """`printf x > NODE` and `>> NODE` work: the shell opens with O_CREAT|O_TRUNC / O_APPEND."""
    r = subprocess.run(["/bin/sh", "-c", f"printf abc > '{loop}' && printf def >> '{loop}'"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, f"shell redirection to the node failed: {r.stderr.strip()}"
    with opened(loop, os.O_RDONLY | os.O_NONBLOCK) as fd:
        assert read_exact(fd, 6, suite, timeout=5) == b"abcdef"


def test_blocked_reader_woken_by_writer_process(loop, children):
    """A reader blocked on the empty FIFO sleeps until another process writes, then gets the data."""
    r = children(_ch_blocking_read, loop, 100)
    r.recv(5, "reader open")
    wait_blocked(r.pid, "read")
    time.sleep(0.3)
    assert not r.has_message(), f"read on an empty FIFO returned without data: {r.recv(1, 'early')}"
    with opened(loop, os.O_WRONLY) as fd:
        assert os.write(fd, b"wake-up!") == 8
    msg = r.recv(3, "blocked reader after a write")
    assert msg[:2] == ("read", b"wake-up!"), msg


def test_write_on_a_descriptor_another_thread_is_blocked_reading(loop, suite):
    """One descriptor, a reader thread blocked in read() and a writer thread (pyserial's threaded
    reader, a modem dialer): the write goes through at once and wakes the reader, as on a
    character device. (On the FUSE fallback's regular file the kernel's f_pos lock held the write
    until the read returned, which it never did: the node is opened FOPEN_STREAM.)"""
    import threading
    got = []
    with opened(loop, os.O_RDWR) as fd:
        reader = threading.Thread(target=lambda: got.append(os.read(fd, 100)), daemon=True)
        reader.start()
        time.sleep(0.3)
        assert reader.is_alive() and not got, f"read on an empty FIFO returned {got}"
        done = []
        writer = threading.Thread(target=lambda: done.append(os.write(fd, b"through")), daemon=True)
        writer.start()
        writer.join(5)
        assert done == [7], "write() on the descriptor a thread is blocked reading did not return within 5 s"
        reader.join(5)
        assert got == [b"through"]


# --------------------------------------------------------------------------------------------
# O_NONBLOCK and blocking writes
# --------------------------------------------------------------------------------------------

def test_nonblock_read_on_empty_gives_eagain(loop, suite):
    with opened(loop, os.O_RDONLY | os.O_NONBLOCK) as fd:
        with suite.deadline(2, "O_NONBLOCK read on an empty FIFO"):
            with pytest.raises(BlockingIOError):
                os.read(fd, 10)


def test_nonblock_set_by_fcntl_gives_eagain(loop, suite):
    """O_NONBLOCK set after open with fcntl(F_SETFL), as event loops do, is honoured."""
    with opened(loop, os.O_RDONLY) as fd:
        fl = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, fl | os.O_NONBLOCK)
        with suite.deadline(2, "read on an empty FIFO after fcntl(F_SETFL, O_NONBLOCK)"):
            with pytest.raises(BlockingIOError):
                os.read(fd, 10)


def test_nonblock_write_on_full_gives_eagain(cfg, loop, suite):
    cap = cfg.capacity
    fill = os.urandom(cap)
    with opened(loop, os.O_RDWR | os.O_NONBLOCK) as fd:
        with suite.deadline(2, "O_NONBLOCK write of capacity bytes into an empty FIFO"):
            n = os.write(fd, fill)
        assert n == cap, f"write of {cap} bytes into an empty FIFO of {cap} returned {n}"
        with suite.deadline(2, "O_NONBLOCK write into a full FIFO"):
            with pytest.raises(BlockingIOError):
                os.write(fd, b"x")
        assert os.read(fd, 10) == fill[:10]
        with suite.deadline(2, "O_NONBLOCK write into 10 free bytes"):
            assert os.write(fd, b"0123456789") == 10
            with pytest.raises(BlockingIOError):
                os.write(fd, b"x")
        rest = read_nonblock_all(fd)
        assert rest == fill[10:] + b"0123456789", first_diff(fill[10:] + b"0123456789", rest)


def test_nonblock_write_atomic_and_partial(cfg, loop, suite):
    """O_NONBLOCK: a write that fits in capacity is all or nothing (EAGAIN, nothing queued); a
    write larger than capacity returns the partial count."""
    cap = cfg.capacity
    fill = os.urandom(cap - 10)
    with opened(loop, os.O_RDWR | os.O_NONBLOCK) as fd:
        assert os.write(fd, fill) == cap - 10
        with suite.deadline(2, "O_NONBLOCK write of 20 bytes into 10 free bytes"):
            with pytest.raises(BlockingIOError):
                n = os.write(fd, b"A" * 20)
                pytest.fail(f"write of 20 bytes into 10 free bytes returned {n}, not EAGAIN")
        assert os.write(fd, b"B" * 10) == 10
        rest = read_nonblock_all(fd)
        assert rest == fill + b"B" * 10, "a refused write left bytes behind: " + first_diff(fill + b"B" * 10, rest)

        assert os.write(fd, b"C" * 1000) == 1000
        big = os.urandom(cap + 5000)
        with suite.deadline(2, f"O_NONBLOCK write of {cap + 5000} bytes"):
            n = os.write(fd, big)
        assert n == cap - 1000, (f"O_NONBLOCK write of {cap + 5000} bytes with {cap - 1000} free "
                                 f"returned {n}; expected the partial count {cap - 1000}")
        rest = read_nonblock_all(fd)
        assert rest == b"C" * 1000 + big[:n], first_diff(b"C" * 1000 + big[:n], rest)


def test_blocking_write_waits_until_all_fit(cfg, loop, children, suite):
    """A blocking write of n <= capacity into a full FIFO waits until all n bytes fit (not less)."""
    cap = cfg.capacity
    fill = os.urandom(cap)
    with opened(loop, os.O_RDWR | os.O_NONBLOCK) as fd:
        assert os.write(fd, fill) == cap
        w = children(_ch_blocking_write, loop, b"W" * 100)
        w.recv(5, "writer open")
        wait_blocked(w.pid, "write")
        assert os.read(fd, 50) == fill[:50]
        time.sleep(0.4)
        assert not w.has_message(), \
            f"a 100-byte write into 50 free bytes returned early: {w.recv(1, 'early')}"
        assert os.read(fd, 50) == fill[50:100]
        msg = w.recv(3, "writer after 100 bytes were freed")
        assert msg[:2] == ("wrote", 100), msg
        rest = read_nonblock_all(fd)
        assert rest == fill[100:] + b"W" * 100, first_diff(fill[100:] + b"W" * 100, rest)


# --------------------------------------------------------------------------------------------
# Readiness: poll, select, epoll
# --------------------------------------------------------------------------------------------

def _poll_now(fd):
    p = select.poll()
    p.register(fd, select.POLLIN | select.POLLOUT)
    ev = p.poll(0)
    return ev[0][1] if ev else 0


def _bits(m):
    names = [n for n in ("POLLIN", "POLLOUT", "POLLERR", "POLLHUP", "POLLNVAL", "POLLPRI")
             if m & getattr(select, n)]
    return "|".join(names) or "0"


def test_poll_readiness_follows_data(cfg, loop, suite):
    """POLLIN iff data is queued; POLLOUT iff at least one byte of space is free."""
    cap = cfg.capacity
    IN, OUT = select.POLLIN, select.POLLOUT
    with opened(loop, os.O_RDWR | os.O_NONBLOCK) as fd, opened(loop, os.O_WRONLY | os.O_NONBLOCK) as wfd:
        with suite.deadline(5, "poll(timeout 0)"):
            steps = []
            steps.append(("empty", _poll_now(fd), OUT))
            os.write(wfd, b"x")
            steps.append(("1 byte queued", _poll_now(fd), IN | OUT))
            os.write(wfd, os.urandom(cap - 1))
            steps.append(("full", _poll_now(fd), IN))
            os.read(fd, 1)
            steps.append(("1 byte free", _poll_now(fd), IN | OUT))
            read_nonblock_all(fd)
            steps.append(("drained", _poll_now(fd), OUT))
    bad = [f"{what}: got {_bits(got)}, expected {_bits(want)}" for what, got, want in steps if got != want]
    assert not bad, "; ".join(bad)


def test_poll_wakes_on_data_and_on_space(cfg, loop, children, suite):
    """A poll() sleeping for POLLIN wakes when another process writes; one sleeping for POLLOUT
    on a full FIFO wakes when another process reads."""
    with opened(loop, os.O_RDWR | os.O_NONBLOCK) as fd:
        p = select.poll()
        p.register(fd, select.POLLIN)
        children(_ch_delayed_write, loop, 0.3, b"hello")
        t = time.monotonic()
        with suite.deadline(10, "poll(POLLIN) waiting for a writer"):
            ev = p.poll(5000)
        dt = time.monotonic() - t
        assert ev == [(fd, select.POLLIN)], f"poll(POLLIN, 5 s) returned {ev} after {dt:.2f} s"
        assert dt < 3, f"poll woke {dt:.2f} s after the write (expected promptly)"
        assert os.read(fd, 10) == b"hello"

        assert os.write(fd, os.urandom(cfg.capacity)) == cfg.capacity
        p = select.poll()
        p.register(fd, select.POLLOUT)
        assert p.poll(0) == [], "POLLOUT reported on a full FIFO"
        children(_ch_delayed_read, loop, 0.3, 1)
        t = time.monotonic()
        with suite.deadline(10, "poll(POLLOUT) waiting for a reader"):
            ev = p.poll(5000)
        dt = time.monotonic() - t
        assert ev == [(fd, select.POLLOUT)], f"poll(POLLOUT, 5 s) returned {ev} after {dt:.2f} s"
        assert dt < 3, f"poll woke {dt:.2f} s after the read (expected promptly)"


def test_select_readiness(cfg, loop, children, suite):
    with opened(loop, os.O_RDWR | os.O_NONBLOCK) as fd:
        with suite.deadline(10, "select"):
            r, w, x = select.select([fd], [fd], [fd], 0)
            assert (r, w) == ([], [fd]), f"empty FIFO: readable={r} writable={w}"
            children(_ch_delayed_write, loop, 0.3, b"sel")
            t = time.monotonic()
            r, w, x = select.select([fd], [], [], 5)
            dt = time.monotonic() - t
            assert r == [fd], f"select for reading did not report the write (after {dt:.2f} s)"
            assert dt < 3
            assert os.read(fd, 10) == b"sel"
            r, w, x = select.select([fd], [], [], 0)
            assert r == [], "drained FIFO still selects readable"


def test_epoll_level_triggered(loop, children, suite):
    with opened(loop, os.O_RDWR | os.O_NONBLOCK) as fd, contextlib.closing(select.epoll()) as ep:
        ep.register(fd, select.EPOLLIN)
        with suite.deadline(10, "epoll_wait"):
            assert ep.poll(0) == [], "EPOLLIN on an empty FIFO"
            children(_ch_delayed_write, loop, 0.3, b"ep")
            t = time.monotonic()
            ev = ep.poll(5)
            dt = time.monotonic() - t
            assert ev == [(fd, select.EPOLLIN)], f"epoll_wait returned {ev} after {dt:.2f} s"
            assert dt < 3
            assert ep.poll(0.1) == [(fd, select.EPOLLIN)], "level-triggered EPOLLIN not repeated while data is queued"
            assert os.read(fd, 10) == b"ep"
            assert ep.poll(0.2) == [], "EPOLLIN after the FIFO was drained"


def test_epoll_edge_triggered_once_per_arrival(loop, children, suite):
    """EPOLLET reports one event per new arrival and none while nothing new arrives."""
    with opened(loop, os.O_RDWR | os.O_NONBLOCK) as fd, contextlib.closing(select.epoll()) as ep:
        ep.register(fd, select.EPOLLIN | select.EPOLLET)
        with suite.deadline(20, "epoll_wait (EPOLLET)"):
            assert ep.poll(0.2) == [], "EPOLLET event on an empty FIFO"
            for i in range(3):
                if i == 1:
                    children(_ch_delayed_write, loop, 0.2, b"%d" % i)  # from another process
                else:
                    with opened(loop, os.O_WRONLY) as wfd:
                        os.write(wfd, b"%d" % i)
                ev = ep.poll(5)
                assert ev == [(fd, select.EPOLLIN)], f"arrival {i}: epoll_wait gave {ev}"
                again = ep.poll(0.3)
                assert again == [], f"arrival {i}: EPOLLET reported again without a new arrival: {again}"
        assert read_nonblock_all(fd) == b"012"


# --------------------------------------------------------------------------------------------
# ioctls
# --------------------------------------------------------------------------------------------

def test_fionread(cfg, loop, request, suite):
    """FIONREAD gives the bytes readable (cuse/kshim). On the FUSE fallback the node is a regular
    file, so the kernel answers FIONREAD itself (file size minus position, which says nothing about
    the device) and devemud says so when it starts, pointing to DEVEMU_IOC_NREAD."""
    if cfg.transport == "fuse":
        log = request.getfixturevalue("daemon_log")
        name = os.path.basename(loop)
        notice = [ln for ln in log.splitlines()
                  if f"device '{name}': serving through the FUSE fallback (/run/devemu/{name})" in ln]
        assert len(notice) == 1, f"devemud's log does not say once that {name} runs as the FUSE fallback:\n{log}"
        assert ("FIONREAD (answered by the kernel from the file size, not by the device; use DEVEMU_IOC_NREAD)"
                in notice[0]), notice[0]
        with opened(loop, os.O_RDWR | os.O_NONBLOCK) as fd:
            with suite.deadline(5, "FIONREAD on the FUSE fallback"):
                os.write(fd, b"z" * 123)
                get_fionread(fd)  # answered (by the kernel), whatever it says
                assert read_nonblock_all(fd) == b"z" * 123
        return
    with opened(loop, os.O_RDWR | os.O_NONBLOCK) as fd:
        with suite.deadline(5, "FIONREAD"):
            assert get_fionread(fd) == 0
            os.write(fd, b"z" * 123)
            assert get_fionread(fd) == 123
            os.read(fd, 23)
            assert get_fionread(fd) == 100
            read_nonblock_all(fd)
            assert get_fionread(fd) == 0


def test_nread_ioctl(loop, abi, suite):
    """DEVEMU_IOC_NREAD gives the bytes readable, on every transport, from any open file."""
    with opened(loop, os.O_RDWR | os.O_NONBLOCK) as fd, opened(loop, os.O_RDONLY) as other:
        with suite.deadline(5, "DEVEMU_IOC_NREAD"):
            seen = [get_nread(abi, fd)]
            os.write(fd, b"n" * 123)
            seen += [get_nread(abi, fd), get_nread(abi, other)]
            os.read(fd, 23)
            seen.append(get_nread(abi, fd))
            read_nonblock_all(fd)
            seen.append(get_nread(abi, fd))
    assert seen == [0, 123, 123, 100, 0], f"NREAD at empty/123/123(other fd)/100/drained: {seen}"


def test_counters_ioctl(loop, abi, children, suite):
    """bytes_in, bytes_out and opens count what clients did; dropped stays 0 when blocking."""
    with opened(loop, os.O_RDWR | os.O_NONBLOCK) as fd:
        with suite.deadline(10, "DEVEMU_IOC_COUNTERS"):
            c0 = get_counters(abi, fd)
            with opened(loop, os.O_WRONLY) as wfd:
                assert os.write(wfd, b"c" * 100) == 100
            assert os.read(fd, 60) == b"c" * 60
            for _ in range(3):
                os.close(os.open(loop, os.O_RDONLY | os.O_NONBLOCK))
            k = children(_ch_delayed_write, loop, 0, b"d" * 7)  # an open from another process
            assert k.recv(5, "writer") == ("wrote", 7)
            d1 = get_counters(abi, fd) - c0
            assert read_nonblock_all(fd) == b"c" * 40 + b"d" * 7
            d2 = get_counters(abi, fd) - c0
    got1 = (d1.bytes_in, d1.bytes_out, d1.opens, d1.dropped)
    assert got1 == (107, 60, 5, 0), f"after 5 opens, 107 bytes written, 60 read: counter deltas {d1}"
    got2 = (d2.bytes_in, d2.bytes_out, d2.opens, d2.dropped)
    assert got2 == (107, 107, 5, 0), f"after draining the other 47 bytes: {d2}"


def test_unknown_ioctl_gives_enotty(loop, suite):
    """Unknown ioctls (devemu's type with unused numbers, another type, a tty ioctl) -> ENOTTY,
    so isatty() is False; the node keeps working."""
    cmds = [("_IO(0xDE, 0x7f)", IO(0xDE, 0x7F), 0),
            ("_IOR(0xDE, 0x7e, 4)", IOR(0xDE, 0x7E, 4), bytearray(4)),
            ("_IOW(0xDE, 0x7d, 4)", IOW(0xDE, 0x7D, 4), bytearray(4)),
            ("_IOWR(0xDE, 0x7c, 16)", IOWR(0xDE, 0x7C, 16), bytearray(16)),
            ("_IO('X', 1)", IO("X", 1), 0)]
    bad = []
    with opened(loop, os.O_RDWR | os.O_NONBLOCK) as fd:
        with suite.deadline(10, "unknown ioctls"):
            for name, cmd, arg in cmds:
                try:
                    fcntl.ioctl(fd, cmd, arg)
                    bad.append(f"{name}: succeeded")
                except OSError as e:
                    if e.errno != errno.ENOTTY:
                        bad.append(f"{name}: {errno.errorcode.get(e.errno, e.errno)}")
            tty = os.isatty(fd)
            try:
                termios.tcgetattr(fd)
                bad.append("TCGETS: succeeded")
            except termios.error as e:
                if e.args[0] != errno.ENOTTY:
                    bad.append(f"TCGETS: {errno.errorcode.get(e.args[0], e.args[0])}")
            os.write(fd, b"still")
            assert os.read(fd, 10) == b"still"
    assert not bad, "expected ENOTTY: " + "; ".join(bad)
    assert not tty, "isatty() is true for a loopback node"


def test_ioctl_invalid_pointer_gives_efault(cfg, loop, abi, main_daemon, client, suite):
    """DEVEMU_IOC_COUNTERS / NREAD with arg=1 -> EFAULT, and the daemon keeps serving."""
    with opened(loop, os.O_RDWR | os.O_NONBLOCK) as fd:
        with suite.deadline(10, "ioctl with an invalid pointer"):
            for name in ("DEVEMU_IOC_COUNTERS", "DEVEMU_IOC_NREAD"):
                cmd = getattr(abi, name)
                with pytest.raises(OSError) as e:
                    fcntl.ioctl(fd, cmd, 1)
                assert e.value.errno == errno.EFAULT, f"{name} with arg=1: {e.value}"
    r = subprocess.run([client, "ioctl-efault", loop], capture_output=True, text=True, timeout=10)
    assert r.stdout.split() == ["invalid-pointer", "EFAULT", "valid-pointer", "OK"], \
        f"devemu_client ioctl-efault: {r.stdout}{r.stderr}"
    if main_daemon is not None:
        assert main_daemon.alive(), f"devemud exited with {main_daemon.proc.returncode}"
    with opened(loop, os.O_RDWR | os.O_NONBLOCK) as fd:
        with suite.deadline(5, "round trip after EFAULT"):
            assert os.write(fd, b"alive") == 5
            assert os.read(fd, 10) == b"alive"
            get_counters(abi, fd)


# --------------------------------------------------------------------------------------------
# Signals
# --------------------------------------------------------------------------------------------

def test_signal_interrupts_blocked_read_c_client(loop, client, suite):
    """SIGUSR1 (no SA_RESTART) to a reader blocked in read(2): EINTR at once (the driver cancels the
    parked request: FUSE_INTERRUPT, kshim CANCEL); bytes written afterwards all reach it, in order."""
    p = suite.popen([client, "read-eintr", loop, "64"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                    text=True)
    try:
        with suite.deadline(10, "devemu_client read-eintr start"):
            assert p.stdout.readline().strip() == "ready"
        wait_blocked(p.pid, "read")
        os.kill(p.pid, signal.SIGUSR1)
        with suite.deadline(5, "read-eintr: waiting for EINTR"):
            ready = select.select([p.stdout], [], [], 1.0)[0]
            first = p.stdout.readline().strip() if ready else "(still blocked 1 s after the signal)"
        # signal=1: the client's handler ran.
        assert first == "interrupted EINTR signal=1", f"after SIGUSR1 the client said: {first}"
        data = os.urandom(64)
        with opened(loop, os.O_WRONLY) as fd:
            os.write(fd, data[:32])
            os.write(fd, data[32:])
        out, _ = p.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
        left = read_nonblock_all(loop)
        pytest.fail(f"the reader did not get the 64 bytes written after the signal; it printed "
                    f"{out!r}; {len(left)} bytes were still queued (lost to the interrupted read?)")
    finally:
        suite.reap(p)
    assert out.strip().splitlines() == ["data " + data.hex()], f"bytes after the signal lost or reordered: {out}"


def test_signal_interrupts_blocked_read_python(loop, children):
    """Same from Python (a handler that raises): the interrupted read ends, later data arrives."""
    r = children(_ch_read_eintr_python, loop, 64)
    r.recv(5, "reader open")
    wait_blocked(r.pid, "read")
    os.kill(r.pid, signal.SIGUSR1)
    msg = r.recv(3, "interrupted read")
    assert msg == ("interrupted",), msg
    data = os.urandom(64)
    with opened(loop, os.O_WRONLY) as fd:
        os.write(fd, data)
    msg = r.recv(5, "read after the signal")
    assert msg == ("data", data), f"expected the 64 bytes in order, got {msg}"


def test_signal_interrupts_blocked_write_atomically(cfg, loop, client, suite):
    """SIGUSR1 to a writer blocked on a full FIFO: EINTR at once with nothing queued (a write that
    fits in the FIFO is all or nothing)."""
    cap = cfg.capacity
    fill = os.urandom(cap)
    with opened(loop, os.O_RDWR | os.O_NONBLOCK) as fd:
        assert os.write(fd, fill) == cap
        p = suite.popen([client, "write-eintr", loop, "100"], stdout=subprocess.PIPE, text=True)
        try:
            with suite.deadline(10, "write-eintr start"):
                assert p.stdout.readline().strip() == "ready"
            wait_blocked(p.pid, "write")
            os.kill(p.pid, signal.SIGUSR1)
            ready = select.select([p.stdout], [], [], 1.0)[0]
            got = read_exact(fd, cap, suite, what="draining the full FIFO")
            out, _ = p.communicate(timeout=5)
        finally:
            suite.reap(p)
        assert got == fill, first_diff(fill, got)
        time.sleep(0.1)
        rest = read_nonblock_all(fd)
    assert out.strip() == "interrupted EINTR signal=1", \
        f"write result after SIGUSR1: {out.strip()!r} (queued {len(rest)} bytes)"
    assert ready, "the client reported EINTR only after the FIFO was drained"
    assert rest == b"", f"write got EINTR but {len(rest)} of its bytes were queued"


# --------------------------------------------------------------------------------------------
# Soak
# --------------------------------------------------------------------------------------------

def _soak_budget(procs, messages):
    return 120 + procs * messages * 0.004


@pytest.mark.guard(lambda config: _soak_budget(config.getoption("--soak-procs"),
                                               config.getoption("--soak-messages")) + 60)
def test_soak_many_writers_and_readers(cfg, loop, client, suite, tmp_path):
    """16 writers x 10,000 framed, checksummed 64-byte messages, 16 readers: nothing lost,
    duplicated, corrupted or reordered within a writer."""
    W = R = cfg.soak_procs
    N = cfg.soak_messages
    F = 64
    budget = _soak_budget(cfg.soak_procs, cfg.soak_messages)
    end_at = time.monotonic() + budget
    procs = []

    def remaining():
        return max(1.0, end_at - time.monotonic())

    def progress():
        return sum(sum(1 for _ in open(tmp_path / f"reader{i}.out")) for i in range(R))

    try:
        readers = []
        for i in range(R):
            out = open(tmp_path / f"reader{i}.out", "w")
            p = suite.popen([client, "soak-read", loop, str(F)], stdout=out, stderr=subprocess.STDOUT)
            readers.append(p)
            procs.append(p)
        writers = []
        for w in range(W):
            out = open(tmp_path / f"writer{w}.out", "w")
            p = suite.popen([client, "soak-write", loop, str(w), str(N), str(F)], stdout=out,
                            stderr=subprocess.STDOUT)
            writers.append(p)
            procs.append(p)
        for w, p in enumerate(writers):
            try:
                rc = p.wait(timeout=remaining())
            except subprocess.TimeoutExpired:
                pytest.fail(f"writer {w} not done after {budget:.0f} s; readers have {progress()} of "
                            f"{W * N} messages")
            txt = (tmp_path / f"writer{w}.out").read_text()
            assert rc == 0 and txt.strip() == f"done {N}", f"writer {w}: exit {rc}: {txt}"
        r = subprocess.run([client, "soak-end", loop, str(R), str(F)], capture_output=True, text=True,
                           timeout=remaining())
        assert r.returncode == 0, f"soak-end: {r.stdout}{r.stderr}"
        for i, p in enumerate(readers):
            try:
                rc = p.wait(timeout=remaining())
            except subprocess.TimeoutExpired:
                pytest.fail(f"reader {i} not done after {budget:.0f} s; readers have {progress()} of "
                            f"{W * N} messages")
            tail = (tmp_path / f"reader{i}.out").read_text().rstrip().rsplit("\n", 1)[-1]
            assert rc == 0 and tail.startswith("end"), f"reader {i}: exit {rc}, last line {tail!r}"
    finally:
        for p in procs:
            suite.reap(p, timeout=0.1)

    seen = [bytearray(N) for _ in range(W)]
    problems = []
    for i in range(R):
        last = [-1] * W
        with open(tmp_path / f"reader{i}.out") as f:
            for line in f:
                a = line.split()
                if a[0] == "end":
                    break
                w, s = int(a[0]), int(a[1])
                if not (0 <= w < W and 0 <= s < N):
                    problems.append(f"reader {i}: frame from writer {w} seq {s} out of range")
                    continue
                if s <= last[w]:
                    problems.append(f"reader {i}: writer {w} seq {s} after seq {last[w]} (reordered)")
                last[w] = s
                if seen[w][s] < 255:
                    seen[w][s] += 1
        if len(problems) > 20:
            break
    for w in range(W):
        lost = [s for s in range(N) if seen[w][s] == 0]
        dup = [s for s in range(N) if seen[w][s] > 1]
        if lost:
            problems.append(f"writer {w}: {len(lost)} messages lost (first seqs {lost[:5]})")
        if dup:
            problems.append(f"writer {w}: {len(dup)} messages delivered twice (first seqs {dup[:5]})")
    assert not problems, "\n".join(problems[:40])
    left = read_nonblock_all(loop)
    assert left == b"", f"{len(left)} bytes left in the FIFO after the soak"


# --------------------------------------------------------------------------------------------
# Daemon lifecycle
# --------------------------------------------------------------------------------------------

@pytest.mark.kills_daemon
@pytest.mark.guard(120)
def test_daemon_sigkill_fails_clients_and_restart_serves(cfg, make_daemon, client, children, suite):
    """SIGKILL devemud with clients blocked in read, write and poll: each gets an error within
    1 s; on CUSE the node disappears, on the kernel shim it stays and refuses opens with ENODEV;
    a restarted daemon serves the node again (on kshim by re-attaching in a new epoch)."""
    name, wname = f"{cfg.name}-kill", f"{cfg.name}-killw"
    path, wpath = f"/dev/{name}", f"/dev/{wname}"
    d = suite.start(make_daemon([(name, "loopback,capacity=4096"), (wname, "loopback,capacity=4096")], "kill"))
    c_readers = []
    idle = os.open(path, os.O_RDWR | os.O_NONBLOCK)
    try:
        for _ in range(3):
            p = suite.popen([client, "block-read", path, "100"], stdout=subprocess.PIPE, text=True)
            c_readers.append(p)
        py_reader = children(_ch_blocking_read, path, 100)
        poller = children(_ch_blocking_poll, path, select.POLLIN, 30000)
        for p in c_readers:
            with suite.deadline(10, "block-read start"):
                assert p.stdout.readline().strip() == "ready"
            wait_blocked(p.pid, "read")
        py_reader.recv(5, "python reader open")
        wait_blocked(py_reader.pid, "read")
        poller.recv(5, "poller open")
        wait_blocked(poller.pid, "poll")
        with opened(wpath, os.O_WRONLY | os.O_NONBLOCK) as wfd:  # full: the next writer blocks
            assert os.write(wfd, os.urandom(4096)) == 4096
        writer = children(_ch_blocking_write, wpath, b"w" * 100)
        writer.recv(5, "writer open")
        wait_blocked(writer.pid, "write")

        t0 = time.monotonic()
        d.proc.kill()
        results = {}
        end = t0 + 10
        while time.monotonic() < end and len(results) < 6:
            for i, p in enumerate(c_readers):
                if f"c{i}" not in results and p.poll() is not None:
                    results[f"c{i}"] = (time.monotonic() - t0, p.stdout.read().strip())
            for key, ch in (("py_reader", py_reader), ("poller", poller), ("writer", writer)):
                if key not in results and ch.has_message():
                    results[key] = (time.monotonic() - t0, ch.recv(1, key))
            time.sleep(0.005)
        d.wait(5)
        with suite.deadline(3, "read on an fd held open across the daemon's death"):
            try:
                b = os.read(idle, 10)
                idle_res = f"read returned {len(b)} bytes"
            except OSError as e:
                idle_res = errno.errorcode.get(e.errno, str(e.errno))
    finally:
        for p in c_readers:
            suite.reap(p, timeout=0.5)
        close_quietly(idle)

    want = AFTER_KILL[cfg.transport]
    blocked, later = errno.errorcode[want["blocked"]], errno.errorcode[want["later"]]
    problems = []
    for key in ["c0", "c1", "c2", "py_reader", "poller", "writer"]:
        if key not in results:
            problems.append(f"{key}: still blocked 10 s after SIGKILL")
            continue
        dt, res = results[key]
        if dt > cfg.kill_deadline:
            problems.append(f"{key}: returned only after {dt:.2f} s ({res})")
        if key.startswith("c"):
            if res.split()[:2] != ["error", blocked]:
                problems.append(f"{key}: expected error {blocked}, got {res!r}")
        elif key == "poller":
            _, revents, _, after = res
            if (revents, after) != (want["poll"], ("error", want["later"])):
                problems.append(f"poller: poll gave {_bits(revents)}, then {after}; expected {_bits(want['poll'])}, "
                                f"then {later}")
        elif res[:2] != ("error", want["blocked"]):
            problems.append(f"{key}: expected error {blocked}, got {res}")
    if idle_res != later:
        problems.append(f"fd held open across the kill: {idle_res}, expected {later}")

    if cfg.transport == "kshim":
        # The kernel shim keeps the node in its no-server state: it stays, and opens fail with ENODEV
        # until a daemon re-attaches.
        if not os.path.exists(path):
            problems.append(f"{path} disappeared: the kernel shim should keep it (NOSRV)")
        else:
            try:
                os.close(os.open(path, os.O_RDWR | os.O_NONBLOCK))
                problems.append("the node still opens after the daemon was killed")
            except OSError as e:
                if e.errno != errno.ENODEV:
                    problems.append(f"open after the kill: {errno.errorcode.get(e.errno)}, expected ENODEV")
    elif cfg.transport == "cuse":
        gone_by = time.monotonic() + 2
        while os.path.lexists(path) and time.monotonic() < gone_by:
            time.sleep(0.02)
        if os.path.lexists(path):
            problems.append(f"{path} still exists 2 s after the daemon was killed")
    else:
        def _open(conn):
            try:
                os.close(os.open(path, os.O_RDWR | os.O_NONBLOCK))
                conn.send(("opened",))
            except OSError as e:
                conn.send(("error", e.errno))
        o = children(_open)
        try:
            msg = o.recv(2, "open of the node after the daemon was killed")
            if msg != ("error", errno.ENOTCONN):  # the dead FUSE mount behind the /dev symlink
                problems.append(f"open of the node after the daemon was killed: {msg}, expected ENOTCONN")
        except AssertionError as e:
            problems.append(str(e))
    assert not problems, "after SIGKILL of devemud:\n" + "\n".join(problems) + \
        f"\n(all results: {results})"

    suite.start(d)  # restart: same device
    with opened(path, os.O_RDWR | os.O_NONBLOCK) as fd:
        with suite.deadline(5, "round trip on the restarted daemon"):
            data = os.urandom(1000)
            assert os.write(fd, data) == 1000
            assert read_exact(fd, 1000, suite) == data
    rc = d.stop(10)
    assert rc == 0, f"restarted devemud: SIGTERM exit code {rc}"


@pytest.mark.kills_daemon
def test_daemon_sigterm_is_graceful(cfg, make_daemon, children, suite):
    """SIGTERM: devemud exits 0 promptly, even with a blocked reader and an open fd, removes the
    node (and its FUSE mount), and the blocked reader gets EIO (README: requests still waiting are
    answered with EIO)."""
    name = f"{cfg.name}-term"
    path = f"/dev/{name}"
    d = suite.start(make_daemon([(name, "loopback")], "term"))
    idle = os.open(path, os.O_RDWR | os.O_NONBLOCK)
    try:
        r = children(_ch_blocking_read, path, 10)
        r.recv(5, "reader open")
        wait_blocked(r.pid, "read")
        d.signal(signal.SIGTERM)
        rc = d.wait(10)
        assert rc is not None, "devemud still running 10 s after SIGTERM"
        assert rc == 0, f"devemud exit code after SIGTERM: {rc}"
        msg = r.recv(5, "blocked reader after SIGTERM of the daemon")
        assert msg[:2] == ("error", errno.EIO), msg
    finally:
        with suite.deadline(5, "close of an fd after the daemon stopped"):
            close_quietly(idle)
    assert not os.path.lexists(path), f"{path} left behind after a graceful stop"
    if cfg.transport == "fuse":
        mp = f"/run/devemu/{name}"
        with open("/proc/self/mountinfo") as f:
            mounted = [ln for ln in f if f" {mp} " in ln]
        assert not mounted, f"graceful stop left a mount at {mp}"


# --------------------------------------------------------------------------------------------
# Other models and options
# --------------------------------------------------------------------------------------------

def test_when_full_drop_never_blocks(drop_node, abi, suite):
    """capacity=4096,when_full=drop: writes never block; the excess is discarded and counted."""
    data = os.urandom(10000)
    with opened(drop_node, os.O_RDWR) as fd:  # blocking mode on purpose
        with suite.deadline(3, "write into a when_full=drop loopback"):
            c0 = get_counters(abi, fd)
            n = os.write(fd, data)
            assert n == 10000, f"write of 10000 bytes (capacity 4096, drop) returned {n}"
            assert get_nread(abi, fd) == 4096
            n = os.write(fd, b"more")
            assert n == 4, f"write into a full drop FIFO returned {n}"
            d = get_counters(abi, fd) - c0
        assert d.dropped == 10000 - 4096 + 4, f"expected {10000 - 4096 + 4} dropped: {d}"
        back = read_nonblock_all(drop_node)
        assert back == data[:4096], "kept bytes are not the first 4096 written: " + first_diff(data[:4096], back)


def test_zero_model(zero_node, suite):
    """zero: reads return zeros (as many as asked), writes are accepted and discarded."""
    with opened(zero_node, os.O_RDWR | os.O_NONBLOCK) as fd:
        with suite.deadline(10, "zero model"):
            assert os.read(fd, 4096) == bytes(4096)
            b = os.read(fd, 65536)
            assert b == bytes(65536), f"read(65536) gave {len(b)} bytes, nonzero: {any(b)}"
            total = 0
            while total < 1 << 20:
                b = os.read(fd, (1 << 20) - total)
                assert b and not any(b)
                total += len(b)
            assert os.write(fd, os.urandom(1000)) == 1000
            assert _poll_now(fd) == select.POLLIN | select.POLLOUT
            assert os.read(fd, 10) == bytes(10), "written bytes came back from the zero model"


def test_rng_model(rng_node, suite):
    """rng: reads return the bytes asked for, looking random (all byte values, no repeats)."""
    with opened(rng_node, os.O_RDONLY | os.O_NONBLOCK) as fd:
        with suite.deadline(10, "rng model"):
            a = os.read(fd, 65536)
            b = os.read(fd, 65536)
    assert len(a) == 65536 and len(b) == 65536, f"short rng reads: {len(a)}, {len(b)}"
    assert a != b, "two reads returned the same bytes"
    counts = [0] * 256
    for x in a:
        counts[x] += 1
    exp = len(a) / 256
    chi2 = sum((c - exp) ** 2 / exp for c in counts)
    assert chi2 < 400, f"byte histogram far from uniform (chi-square {chi2:.0f}, 255 dof)"


@pytest.mark.kills_daemon
def test_rng_seed_is_reproducible(cfg, make_daemon, suite):
    """rng,seed=S gives the same stream from a fresh daemon; another seed gives another stream."""
    streams = []
    for i, seed in enumerate((7, 7, 8)):
        name = f"{cfg.name}-seed{i}"
        d = suite.start(make_daemon([(name, f"rng,seed={seed}")], f"seed{i}"))
        with opened(f"/dev/{name}", os.O_RDONLY) as fd:
            with suite.deadline(5, "rng read"):
                streams.append(os.read(fd, 4096))
        d.stop(10)
    assert streams[0] == streams[1], "seed=7 twice gave different streams"
    assert streams[0] != streams[2], "seed=7 and seed=8 gave the same stream"


def test_one_core_through_both_drivers(cfg, abi, make_daemon, suite):
    """--transport cuse,kshim: one loopback core behind /dev/NAME (CUSE) and /dev/NAMEk (kernel
    shim); bytes written to either node are read from the other, and the counters are shared."""
    if cfg.transport != "kshim":
        pytest.skip("needs CUSE and the kernel shim together (run with --transport kshim)")
    name = f"{cfg.name}-both"
    d = make_daemon([(name, "loopback")], "both", transport="cuse,kshim", nodes=[f"/dev/{name}", f"/dev/{name}k"])
    suite.start(d)
    with opened(f"/dev/{name}", os.O_RDWR) as cuse, opened(f"/dev/{name}k", os.O_RDWR) as kshim:
        with suite.deadline(10, "round trips between the two nodes"):
            for src, dst, label in ((cuse, kshim, "cuse->kshim"), (kshim, cuse, "kshim->cuse")):
                data = os.urandom(5000)
                assert os.write(src, data) == 5000, label
                assert read_exact(dst, 5000, suite) == data, label
            c = get_counters(abi, kshim)
            # Two opens: ours, one per node (the daemon is ready at READY=1, nothing else opens them).
            assert (c.bytes_in, c.bytes_out, c.opens, c.dropped) == (10000, 10000, 2, 0), c
    assert d.stop(10) == 0


def test_streams_through_both_drivers(cfg, make_daemon, suite):
    """--transport cuse,kshim with zero and rng: the kernel shim's node serves its reads from the
    stream FIFOs (a thousand 1-byte reads wake the daemon a few times, not a thousand) while the
    CUSE node of the same core keeps serving; both read the device's data."""
    if cfg.transport != "kshim" or cfg.fifo == "off":
        pytest.skip("needs CUSE and the kernel shim's FIFOs together (run with --transport kshim)")
    z, r = f"{cfg.name}-bz", f"{cfg.name}-br"
    d = make_daemon([(z, "zero"), (r, "rng")], "bothstream", transport="cuse,kshim",
                    nodes=[f"/dev/{z}", f"/dev/{z}k", f"/dev/{r}", f"/dev/{r}k"])
    suite.start(d)

    def doorbells(name):
        with open(f"/sys/class/devemu/{name}/doorbells") as f:
            return int(f.read())

    with suite.deadline(20, "reads through both drivers"):
        for name in (z, r):
            with opened(f"/dev/{name}k", os.O_RDONLY) as k, opened(f"/dev/{name}", os.O_RDONLY) as c:
                first = os.read(k, 4096)  # the FIFO is filled on attach or by the first kick
                before = doorbells(f"{name}k")
                small = b"".join(os.read(k, 1) for _ in range(1000))
                woken = doorbells(f"{name}k") - before
                assert woken < 50, f"{name}k: 1000 one-byte reads woke the daemon {woken} times"
                via_cuse = os.read(c, 4096)
                assert (len(first), len(small), len(via_cuse)) == (4096, 1000, 4096), name
                if name == z:
                    assert first + small + via_cuse == bytes(4096 + 1000 + 4096)
                else:
                    assert len(set(first)) > 200 and len(set(via_cuse)) > 200, "rng bytes look constant"
                    assert first != via_cuse
    assert d.stop(10) == 0


def test_any_program(loop, client, suite):
    """busybox cat/dd/hexdump, python3 and the static C client use the node (any_program.sh)."""
    r = subprocess.run(["/bin/sh", str(suite.here / "any_program.sh"), loop, client],
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, f"any_program.sh failed (exit {r.returncode}):\n{r.stdout}{r.stderr}"
