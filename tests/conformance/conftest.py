# SPDX-License-Identifier: MIT
# Options, devemud fixtures, the C client build and the per-test timeout guard of the conformance suite.

import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent

# Every process the suite starts (daemons and helper clients) is registered here, by pid, so the
# timeout guard can end exactly those when a test is stuck in the kernel.
LIVE_PIDS = set()
LIVE_DAEMONS = []
GUARD_KILLED = set()  # pids the guard itself SIGKILLed


def pytest_addoption(parser):
    g = parser.getgroup("devemu", "devemu conformance suite")
    g.addoption("--node", default=None,
                help="an already served node to test; the suite then starts no daemon for it "
                     "(the daemon-control tests still start their own devemud)")
    g.addoption("--model", default="loopback", choices=["loopback", "zero", "rng"],
                help="device model behind the node (default loopback)")
    g.addoption("--transport", default="fuse", choices=["fuse", "cuse", "kshim"],
                help="how the node is served (default fuse, the fallback on kernels without CUSE)")
    g.addoption("--devemud", default=str(REPO / "build" / "cuse_dev" / "devemud"),
                help="the daemon binary (default: build/cuse_dev/devemud of this repo)")
    g.addoption("--name", default=f"devemu-conf-{os.getpid()}",
                help="device name for this run (default devemu-conf-PID)")
    g.addoption("--client", default=None,
                help="the devemu_client binary (default: build/tests/conformance/devemu_client, "
                     "else built here with gcc -static)")
    g.addoption("--capacity", type=int, default=65536,
                help="loopback capacity in bytes (the suite starts its daemon with it)")
    g.addoption("--soak-messages", type=int, default=10000,
                help="messages per writer in the soak test (default 10000)")
    g.addoption("--soak-procs", type=int, default=16,
                help="writer processes and reader processes in the soak test (default 16 each)")
    g.addoption("--kill-deadline", type=float, default=1.0,
                help="seconds within which clients must error after the daemon is SIGKILLed")
    g.addoption("--test-timeout", type=float, default=60.0,
                help="default per-test timeout guard in seconds")
    g.addoption("--devemud-log-level", default="info", choices=["debug", "info", "warning", "error"],
                help="devemud --log-level")
    g.addoption("--check-dmesg", action="store_true",
                help="fail if the kernel log gained WARNING:/BUG:/Oops lines during the run")


def pytest_configure(config):
    config.addinivalue_line("markers", "guard(seconds): per-test timeout guard override")
    config.addinivalue_line("markers", "kills_daemon: the test stops daemons on purpose")


class Config:
    """The suite's options, resolved."""

    def __init__(self, config):
        o = config.getoption
        self.external = o("--node") is not None
        self.name = o("--name")
        self.node = o("--node") or f"/dev/{self.name}"
        self.model = o("--model")
        self.transport = o("--transport")
        self.devemud = o("--devemud")
        self.client = o("--client")
        self.capacity = o("--capacity")
        self.soak_messages = o("--soak-messages")
        self.soak_procs = o("--soak-procs")
        self.kill_deadline = o("--kill-deadline")
        self.test_timeout = o("--test-timeout")
        self.log_level = o("--devemud-log-level")
        self.check_dmesg = o("--check-dmesg")


@pytest.fixture(scope="session")
def cfg(pytestconfig):
    return Config(pytestconfig)


# --------------------------------------------------------------------------------------------
# Timeout guard. One SIGALRM handler raises GuardTimeout for the earliest expired deadline; the
# per-test guard and the deadline() helper both arm it. If the test is stuck in the kernel (a
# request the daemon never answers), the watchdog SIGKILLs the suite's daemons and helpers a few
# seconds later, which ends every FUSE/CUSE wait; if even that does not help, it exits the run.
# --------------------------------------------------------------------------------------------

class GuardTimeout(Exception):
    pass


_deadlines = []  # [expiry (monotonic), message]
_deadlines_lock = threading.Lock()


def _on_alarm(signum, frame):
    now = time.monotonic()
    with _deadlines_lock:
        expired = [d for d in _deadlines if d[0] <= now + 0.005]
        if expired:
            d = min(expired, key=lambda d: d[0])
            _deadlines.remove(d)
    if expired:
        raise GuardTimeout(d[1])


def _arm(seconds, message):
    d = [time.monotonic() + seconds, message]
    with _deadlines_lock:
        _deadlines.append(d)
    main = threading.main_thread().ident
    timer = threading.Timer(seconds, lambda: signal.pthread_kill(main, signal.SIGALRM))
    timer.daemon = True
    timer.start()
    return d, timer


def _disarm(d, timer):
    timer.cancel()
    with _deadlines_lock:
        if d in _deadlines:
            _deadlines.remove(d)


class deadline:
    """with deadline(2.0, "what blocked"): raise GuardTimeout if the block takes longer. If the
    main thread is stuck in the kernel kill_after seconds later still, the suite's daemons and
    helpers are SIGKILLed so that the call returns."""

    def __init__(self, seconds, message, kill_after=3.0):
        self.seconds = seconds
        self.message = message
        self.kill_after = kill_after

    def __enter__(self):
        self._d, self._t = _arm(self.seconds, f"{self.message} (no result after {self.seconds:g} s)")
        self._k = threading.Timer(self.seconds + self.kill_after, kill_registered,
                                  args=(f"stuck in the kernel: {self.message}",))
        self._k.daemon = True
        self._k.start()
        return self

    def __exit__(self, *exc):
        self._k.cancel()
        _disarm(self._d, self._t)
        return False


def kill_registered(reason):
    sys.stderr.write(f"\n[conformance guard] {reason}: SIGKILL to the suite's daemons and helpers "
                     f"{sorted(LIVE_PIDS)}\n")
    for pid in sorted(LIVE_PIDS):
        GUARD_KILLED.add(pid)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture(autouse=True)
def _guard(request, cfg):
    signal.signal(signal.SIGALRM, _on_alarm)
    marker = request.node.get_closest_marker("guard")
    seconds = cfg.test_timeout
    if marker:
        arg = marker.args[0]
        seconds = float(arg(cfg) if callable(arg) else arg)
    d, t = _arm(seconds, f"test exceeded its {seconds:g} s timeout guard")
    t2 = threading.Timer(seconds + 5, kill_registered, args=("test still stuck 5 s after its timeout",))
    t3 = threading.Timer(seconds + 30, lambda: (sys.stderr.write(
        "\n[conformance guard] test stuck 30 s after killing devemud; exiting the run\n"),
        sys.stderr.flush(), os._exit(124)))
    for x in (t2, t3):
        x.daemon = True
        x.start()
    try:
        yield
    finally:
        _disarm(d, t)
        t2.cancel()
        t3.cancel()


# --------------------------------------------------------------------------------------------
# Child processes
# --------------------------------------------------------------------------------------------

def popen(args, **kw):
    """subprocess.Popen registered with the guard."""
    p = subprocess.Popen(args, **kw)
    LIVE_PIDS.add(p.pid)
    return p


def reap(p, timeout=5.0):
    """Wait for p; SIGKILL it if it does not end in time. Returns its return code."""
    try:
        rc = p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        rc = p.wait(timeout=10)
    LIVE_PIDS.discard(p.pid)
    return rc


# --------------------------------------------------------------------------------------------
# devemud
# --------------------------------------------------------------------------------------------

def probe_open(path, timeout=2.0):
    """Open and close path in a forked child; True if that worked within timeout."""
    pid = os.fork()
    if pid == 0:
        try:
            os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
            os._exit(0)
        except BaseException:
            os._exit(1)
    end = time.monotonic() + timeout
    while True:
        wpid, status = os.waitpid(pid, os.WNOHANG)
        if wpid:
            return os.waitstatus_to_exitcode(status) == 0
        if time.monotonic() > end:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return False
        time.sleep(0.01)


class DaemonError(Exception):
    pass


class Daemon:
    """One devemud process serving one or more devices."""

    def __init__(self, cfg, devices, log_dir, tag, transport=None, nodes=None):
        self.cfg = cfg
        self.devices = devices  # [(name, spec-after-=)]
        self.transport = transport or cfg.transport
        self.extra_nodes = nodes
        self.log_path = Path(log_dir) / f"devemud-{tag}.log"
        self.proc = None
        self.starts = 0

    @property
    def nodes(self):
        return self.extra_nodes or [f"/dev/{n}" for n, _ in self.devices]

    def argv(self):
        a = [self.cfg.devemud, "--foreground", "--transport", self.transport]
        for n, spec in self.devices:
            a += ["--device", f"{n}={spec}"]
        a += ["--log-level", self.cfg.log_level]
        return a

    def start(self, ready_timeout=10.0):
        if not os.access(self.cfg.devemud, os.X_OK):
            raise DaemonError(f"devemud binary not found or not executable: {self.cfg.devemud}")
        self.starts += 1
        log = open(self.log_path, "ab")
        log.write(f"\n===== start #{self.starts}: {' '.join(self.argv())}\n".encode())
        log.flush()
        self.log_start = log.tell()
        self.proc = popen(self.argv(), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                          start_new_session=True)
        log.close()
        if self not in LIVE_DAEMONS:
            LIVE_DAEMONS.append(self)
        end = time.monotonic() + ready_timeout
        pending = list(self.nodes)
        while pending:
            rc = self.proc.poll()
            if rc is not None:
                LIVE_PIDS.discard(self.proc.pid)
                raise DaemonError(f"devemud exited with {rc} before {pending} were ready:\n"
                                  + self.log_tail())
            node = pending[0]
            if os.path.exists(node) and probe_open(node, timeout=2.0):
                pending.pop(0)
                continue
            if time.monotonic() > end:
                self.kill()
                raise DaemonError(f"{pending} not ready (exists and opens) within {ready_timeout:g} s "
                                  f"of starting devemud:\n" + self.log_tail())
            time.sleep(0.02)
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout):
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        LIVE_PIDS.discard(self.proc.pid)
        return rc

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
        if self.proc:
            self.proc.wait(timeout=10)
            LIVE_PIDS.discard(self.proc.pid)

    def stop(self, timeout=10.0):
        """SIGTERM; SIGKILL after timeout. Returns the exit code of the SIGTERM stop, or None if
        it had to be killed."""
        if not self.proc or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        rc = self.wait(timeout)
        if rc is None:
            self.kill()
        return rc

    def log_text(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, chars=20000):
        t = self.log_text()
        return t[-chars:]


def _start_or_fail(d, prefix=""):
    try:
        d.start()
        return d
    except DaemonError as e:
        msg = prefix + str(e)
    pytest.fail(msg, pytrace=False)


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("devemud-logs")


def loopback_spec(cfg, model=None):
    model = model or cfg.model
    if model == "loopback":
        return f"loopback,capacity={cfg.capacity}"
    if model == "rng":
        return "rng,seed=1"
    return model


@pytest.fixture(scope="session")
def main_daemon(cfg, log_dir):
    """The daemon serving the main node, or None with --node."""
    if cfg.external:
        yield None
        return
    d = Daemon(cfg, [(cfg.name, loopback_spec(cfg))], log_dir, "main")
    _start_or_fail(d)
    yield d
    d.stop()
    for name, _ in d.devices:
        remove_stale_node(name)


@pytest.fixture
def node(cfg, main_daemon):
    """Path of the main node, served and (for loopback) drained."""
    if main_daemon is not None:
        ensure_running(main_daemon)  # it may have died in an earlier test, which reported it
    if cfg.model == "loopback":
        drain(cfg.node)
    return cfg.node


def drain(path, limit=1 << 24):
    """Read and discard whatever the FIFO holds, without blocking. Returns the byte count."""
    total = 0
    with deadline(10, f"draining {path} with O_NONBLOCK reads"):
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            while total < limit:
                try:
                    b = os.read(fd, 1 << 16)
                except BlockingIOError:
                    break
                if not b:
                    break
                total += len(b)
        finally:
            os.close(fd)
    return total


@pytest.fixture(scope="session")
def aux_daemon(cfg, log_dir):
    """A second daemon with several devices: a small when_full=drop loopback, zero and rng."""
    devices = [(f"{cfg.name}-drop", "loopback,capacity=4096,when_full=drop"),
               (f"{cfg.name}-z", "zero"),
               (f"{cfg.name}-r", "rng,seed=1")]
    d = Daemon(cfg, devices, log_dir, "aux")
    _start_or_fail(d)
    yield d
    d.stop()
    for name, _ in d.devices:
        remove_stale_node(name)


@pytest.fixture
def make_daemon(cfg, log_dir):
    """Factory for daemons a test controls itself (kill, restart); stopped at teardown."""
    made = []

    def make(devices, tag, transport=None, nodes=None):
        d = Daemon(cfg, devices, log_dir, tag, transport, nodes)
        made.append(d)
        return d

    yield make
    for d in made:
        if d.proc and d.proc.poll() is None:
            d.stop(5)
        if d in LIVE_DAEMONS:
            LIVE_DAEMONS.remove(d)
        for name, _ in d.devices:
            remove_stale_node(name)


def remove_stale_node(name):
    """After a test has checked the daemon's own cleanup: remove what a killed FUSE-fallback
    daemon left (lazy unmount of /run/devemu/NAME, the dangling /dev/NAME symlink) so runs do not
    pile up mounts on the host."""
    mnt = f"/run/devemu/{name}"
    try:
        with open("/proc/self/mountinfo") as f:
            mounted = any(line.split()[4] == mnt for line in f)
    except OSError:
        mounted = False
    if mounted:
        subprocess.run(["umount", "-l", mnt], capture_output=True, timeout=10)
    dev = f"/dev/{name}"
    if os.path.islink(dev) and os.readlink(dev) == mnt:
        os.unlink(dev)
    try:
        st = os.lstat(mnt)
        if stat.S_ISREG(st.st_mode) and st.st_size == 0:
            os.unlink(mnt)
    except OSError:
        pass


@pytest.fixture
def daemon_log(request, main_daemon):
    """The stderr text of a daemon started with --transport cfg.transport (main, else aux)."""
    d = main_daemon or request.getfixturevalue("aux_daemon")
    return d.log_text()


# --------------------------------------------------------------------------------------------
# The C client
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def client(cfg, tmp_path_factory):
    if cfg.client:
        if not os.access(cfg.client, os.X_OK):
            pytest.fail(f"--client {cfg.client} is not an executable", pytrace=False)
        return cfg.client
    src = HERE / "devemu_client.c"
    built = REPO / "build" / "tests" / "conformance" / "devemu_client"
    if built.exists() and built.stat().st_mtime >= src.stat().st_mtime:
        return str(built)
    out = tmp_path_factory.mktemp("client") / "devemu_client"
    cc = shutil.which("gcc") or shutil.which("cc")
    if not cc:
        pytest.fail("no --client given and no C compiler to build devemu_client", pytrace=False)
    r = subprocess.run([cc, "-static", "-O2", "-Wall", "-Wextra", "-I", str(REPO / "core" / "include"),
                        "-o", str(out), str(src)], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        pytest.fail(f"building devemu_client failed:\n{r.stderr}", pytrace=False)
    return str(out)


# --------------------------------------------------------------------------------------------
# Reporting and health
# --------------------------------------------------------------------------------------------

def pytest_runtest_setup(item):
    item.stash[_log_marks] = {id(d): (d.log_path.stat().st_size if d.log_path.exists() else 0)
                              for d in LIVE_DAEMONS}


_log_marks = pytest.StashKey()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if not rep.failed:
        return
    marks = item.stash.get(_log_marks, {})
    seen = set()
    for d in LIVE_DAEMONS:
        if d.log_path in seen:
            continue
        seen.add(d.log_path)
        text = d.log_text()
        start = marks.get(id(d), 0)
        part = text[start:] if start <= len(text) else text
        if len(part) > 20000:
            part = "[...]\n" + part[-20000:]
        state = "running" if d.alive() else f"exited with {d.proc.returncode}"
        rep.sections.append((f"devemud stderr ({d.log_path.name}, {state}) during this test",
                             part or "(nothing)"))


@pytest.fixture(autouse=True)
def _daemon_health(request):
    """A daemon that dies during a test fails that test (it is restarted for the next)."""
    before = [(d, d.alive()) for d in LIVE_DAEMONS]
    yield
    if request.node.get_closest_marker("kills_daemon"):
        return
    for d, was_alive in before:
        if was_alive and d.proc.poll() is not None and d.proc.pid not in GUARD_KILLED:
            pytest.fail(f"devemud ({d.log_path.name}) exited with {d.proc.returncode} during "
                        f"this test; its stderr ends:\n{d.log_tail(4000)}", pytrace=False)


# --------------------------------------------------------------------------------------------
# dmesg hook
# --------------------------------------------------------------------------------------------

def read_dmesg():
    r = subprocess.run(["dmesg"], capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise RuntimeError(f"dmesg failed: {r.stderr.strip()}")
    return r.stdout.splitlines()


@pytest.fixture(scope="session", autouse=True)
def dmesg_baseline(cfg):
    if not cfg.check_dmesg:
        return None
    return read_dmesg()


class Suite:
    """Helpers the test module reaches through the `suite` fixture."""
    deadline = deadline
    GuardTimeout = GuardTimeout
    popen = staticmethod(popen)
    reap = staticmethod(reap)
    read_dmesg = staticmethod(read_dmesg)
    Daemon = Daemon
    DaemonError = DaemonError
    live_pids = LIVE_PIDS
    here = HERE
    repo = REPO


@pytest.fixture(scope="session")
def suite():
    return Suite


def ensure_running(d):
    if not d.alive():
        _start_or_fail(d, "restarting devemud failed: ")


@pytest.fixture
def zero_node(cfg, request):
    """A zero-model node: the main node with --model zero, else the aux daemon's."""
    if cfg.model == "zero":
        return request.getfixturevalue("node")
    d = request.getfixturevalue("aux_daemon")
    ensure_running(d)
    return f"/dev/{cfg.name}-z"


@pytest.fixture
def rng_node(cfg, request):
    """An rng-model node: the main node with --model rng, else the aux daemon's."""
    if cfg.model == "rng":
        return request.getfixturevalue("node")
    d = request.getfixturevalue("aux_daemon")
    ensure_running(d)
    return f"/dev/{cfg.name}-r"


@pytest.fixture
def drop_node(cfg, aux_daemon):
    """A loopback node with capacity=4096,when_full=drop (aux daemon), drained."""
    ensure_running(aux_daemon)
    path = f"/dev/{cfg.name}-drop"
    drain(path)
    return path


@pytest.fixture(scope="session", autouse=True)
def _cleanup_children():
    yield
    for pid in sorted(LIVE_PIDS):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
