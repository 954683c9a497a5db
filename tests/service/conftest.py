# SPDX-License-Identifier: MIT
# Options, the per-test timeout guard and the devemud/devemuctl helpers of the service suite (tests/service).

import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

# The test module is imported after this file: keep its bytecode out of the source tree.
sys.dont_write_bytecode = True

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent


def _add(group, *args, **kw):
    """addoption that tolerates the same option from tests/conformance/conftest.py (same group
    name, so pytest notices) when both directories are collected in one run, conformance first:
    --transport and --devemud mean the same there."""
    try:
        group.addoption(*args, **kw)
    except ValueError:
        pass


def pytest_addoption(parser):
    g = parser.getgroup("devemu", "devemu suites")
    _add(g, "--devemud", default=str(REPO / "build" / "cuse_dev" / "devemud"),
         help="the daemon binary (default: build/cuse_dev/devemud of this repo)")
    _add(g, "--devemuctl", default=str(REPO / "build" / "cuse_dev" / "devemuctl"),
         help="the control client (default: build/cuse_dev/devemuctl of this repo)")
    _add(g, "--transport", default="fuse", choices=["fuse", "cuse", "kshim"],
         help="how devemud serves the nodes (default fuse: the fallback on kernels without CUSE; "
              "cuse or kshim in the VM)")
    _add(g, "--build-dir", default=str(REPO / "build"),
         help="the configured meson build directory the plugin test installs from (default REPO/build)")
    _add(g, "--service-timeout", type=float, default=30.0,
         help="per-test timeout guard in seconds (default 30; tests marked guard(N) use N x this/30)")


def pytest_configure(config):
    config.addinivalue_line("markers", "guard(seconds): this test's timeout guard on the host "
                                       "(scaled like --service-timeout)")


class Options:
    def __init__(self, config):
        o = config.getoption
        self.devemud = str(Path(o("--devemud")).resolve())
        self.devemuctl = str(Path(o("--devemuctl")).resolve())
        self.transport = o("--transport")
        self.build_dir = str(Path(o("--build-dir")).resolve())
        self.timeout = o("--service-timeout")
        self.repo = REPO


@pytest.fixture(scope="session")
def opts(pytestconfig):
    o = Options(pytestconfig)
    for b in (o.devemud, o.devemuctl):
        if not os.access(b, os.X_OK):
            pytest.fail(f"not an executable: {b} (build first: scripts/build.sh, or pass --devemud/--devemuctl)",
                        pytrace=False)
    return o


# --------------------------------------------------------------------------------------------
# Processes this suite started, by pid: the guard and the teardown end exactly these.
# --------------------------------------------------------------------------------------------

STARTED = {}  # pid -> Popen
_STARTED_LOCK = threading.Lock()


def popen(args, **kw):
    p = subprocess.Popen(args, **kw)
    with _STARTED_LOCK:
        STARTED[p.pid] = p
    return p


def forget(p):
    with _STARTED_LOCK:
        STARTED.pop(p.pid, None)


def kill_started(reason):
    with _STARTED_LOCK:
        procs = list(STARTED.values())
    sys.stderr.write(f"\n[service guard] {reason}: SIGKILL to {sorted(p.pid for p in procs)}\n")
    for p in procs:
        if p.poll() is None:
            try:
                p.kill()
            except ProcessLookupError:
                pass


def reap(p, timeout=5.0):
    """Wait for p, SIGKILL it if it does not end in time; returns its status."""
    try:
        rc = p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        rc = p.wait(timeout=10)
    forget(p)
    return rc


# --------------------------------------------------------------------------------------------
# Timeout guard: SIGALRM (setitimer) raises GuardTimeout in the test; if the test is still stuck
# in the kernel 5 s later (a FUSE/CUSE request nobody answers), every process it started is
# SIGKILLed, which ends the wait; 30 s later the run exits.
# --------------------------------------------------------------------------------------------

class GuardTimeout(Exception):
    pass


@pytest.fixture(autouse=True)
def _guard(request, pytestconfig):
    base = pytestconfig.getoption("--service-timeout")
    marker = request.node.get_closest_marker("guard")
    seconds = base * float(marker.args[0]) / 30.0 if marker else base

    def on_alarm(signum, frame):
        raise GuardTimeout(f"test exceeded its {seconds:g} s timeout guard")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    killer = threading.Timer(seconds + 5, kill_started, args=("test stuck 5 s after its timeout",))
    bail = threading.Timer(seconds + 35, lambda: (sys.stderr.write("\n[service guard] still stuck; exiting\n"),
                                                  sys.stderr.flush(), os._exit(124)))
    for t in (killer, bail):
        t.daemon = True
        t.start()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        killer.cancel()
        bail.cancel()


# --------------------------------------------------------------------------------------------
# Names and paths: the pid and a counter make every device name and socket unique per run.
# --------------------------------------------------------------------------------------------

_counter = itertools.count(1)


def unique(tag):
    return f"svc-{tag}-{os.getpid()}-{next(_counter)}"


def sock_path(tag):
    # AF_UNIX paths are limited to 107 bytes: not under pytest's long tmp_path.
    return f"/tmp/devemu-svc-{tag}-{os.getpid()}-{next(_counter)}.sock"


def mounted(path):
    try:
        with open("/proc/self/mountinfo") as f:
            return any(line.split()[4] == path for line in f)
    except OSError:
        return False


class Transport:
    """Where a device NAME shows up for the transport under test."""

    def __init__(self, name):
        self.name = name

    def node(self, dev):
        return f"/dev/{dev}"

    def backing(self, dev):
        """The file whose stat() shows the node's mode and owner: the FUSE mount's file behind
        the /dev symlink, else the character device itself."""
        return f"/run/devemu/{dev}" if self.name == "fuse" else f"/dev/{dev}"

    def present(self, dev):
        if self.name == "fuse":
            return os.path.islink(self.node(dev)) and mounted(self.backing(dev))
        return os.path.exists(self.node(dev))

    def gone(self, dev):
        if os.path.lexists(self.node(dev)):
            return False
        return not (self.name == "fuse" and mounted(self.backing(dev)))


@pytest.fixture(scope="session")
def transport(opts):
    return Transport(opts.transport)


def remove_stale(dev):
    """What a SIGKILLed FUSE-fallback daemon leaves behind: the mount and the symlink."""
    mnt = f"/run/devemu/{dev}"
    if mounted(mnt):
        subprocess.run(["umount", "-l", mnt], capture_output=True, timeout=10)
    node = f"/dev/{dev}"
    if os.path.islink(node) and os.readlink(node) == mnt:
        os.unlink(node)
    try:
        if os.path.isfile(mnt) and os.path.getsize(mnt) == 0:
            os.unlink(mnt)
    except OSError:
        pass


def wait_for(pred, timeout, what, interval=0.01):
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        time.sleep(interval)


def control_request(path, request, timeout=5.0):
    """One request over the control socket, one JSON answer (without devemuctl)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        s.sendall((json.dumps(request) + "\n").encode())
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    return json.loads(data) if data else None


# --------------------------------------------------------------------------------------------
# devemud
# --------------------------------------------------------------------------------------------

CURRENT = []  # daemons started by the running test, for the failure report


class Devemud:
    """One devemud -f process with its own control socket, log file and devices."""

    def __init__(self, opts, transport, args, devices, sock, log_path):
        self.opts = opts
        self.transport = transport
        self.args = list(args)
        self.devices = list(devices)  # names this daemon is expected to serve at start
        self.extra = []  # names added later (devemuctl add, SIGHUP), cleaned up too
        self.sock = sock
        self.log_path = Path(log_path)
        self.proc = None

    @property
    def pid(self):
        return self.proc.pid

    def argv(self):
        a = [self.opts.devemud, "-f"] + self.args
        if self.sock and "--control" not in self.args and "-c" not in self.args and "--config" not in self.args:
            a += ["--control", self.sock]
        return a

    def start(self, ready_timeout=15.0):
        log = open(self.log_path, "wb")
        self.proc = popen(self.argv(), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                          start_new_session=True)
        log.close()
        CURRENT.append(self)
        end = time.monotonic() + ready_timeout
        while True:
            rc = self.proc.poll()
            if rc is not None:
                forget(self.proc)
                raise AssertionError(f"devemud exited with {rc} while starting {self.argv()}:\n{self.log()}")
            if self.ready():
                return self
            if time.monotonic() > end:
                raise AssertionError(f"devemud not ready within {ready_timeout:g} s ({self.argv()}):\n{self.log()}")
            time.sleep(0.02)

    def ready(self):
        """Every expected device is 'serving' (control socket) and its node is there. Does not
        open the nodes, so the device statistics start at zero."""
        if not os.path.exists(self.sock):
            return False
        try:
            r = control_request(self.sock, {"command": "list"}, timeout=2)
        except (OSError, ValueError):
            return False
        if not r or not r.get("ok"):
            return False
        serving = {d["name"] for d in r["devices"] if d["state"] == "serving"}
        return all(n in serving and self.transport.present(n) for n in self.devices)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_log(self, pattern, timeout=5.0, count=1):
        """Wait until the log matches the regex pattern count times; returns the matches."""
        rx = re.compile(pattern, re.M)

        def seen():
            m = rx.findall(self.log())
            return m if len(m) >= count else None
        try:
            return wait_for(seen, timeout, f"devemud log line /{pattern}/ x{count}", interval=0.02)
        except AssertionError as e:
            raise AssertionError(f"{e}\n--- devemud log ---\n{self.log()}") from None

    def ctl(self, *args, timeout=10.0, socket_path=None):
        return subprocess.run([self.opts.devemuctl, "--socket", socket_path or self.sock, *args],
                              capture_output=True, text=True, timeout=timeout)

    def ctl_ok(self, *args):
        r = self.ctl(*args)
        assert r.returncode == 0, f"devemuctl {' '.join(args)}: exit {r.returncode}\n{r.stderr}"
        assert r.stderr == "", r.stderr
        return r.stdout

    def ctl_json(self, *args):
        r = self.ctl("--json", *args)
        assert r.returncode == 0, f"devemuctl --json {' '.join(args)}: exit {r.returncode}\n{r.stdout}{r.stderr}"
        return json.loads(r.stdout)

    def stats(self, dev):
        return self.ctl_json("stats", dev)

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=10.0):
        """SIGTERM and wait; SIGKILL if it does not end. Returns the exit status (negative:
        killed by that signal; None: it had to be SIGKILLed)."""
        if self.proc is None:
            return None
        if self.proc.poll() is not None:
            forget(self.proc)
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            rc = None
        forget(self.proc)
        return rc

    def stop_clean(self):
        """What a user relies on at shutdown: SIGTERM -> exit status 0, every node removed, the
        control socket gone."""
        names = self.devices + self.extra
        rc = self.stop()
        assert rc == 0, f"devemud exit status after SIGTERM: {rc} (expected 0)\n{self.log()}"
        for n in names:
            assert self.transport.gone(n), f"/dev/{n} still there after devemud exited"
        if self.sock:
            assert not os.path.exists(self.sock), f"control socket {self.sock} left behind"

    def cleanup(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        if self.proc is not None:
            forget(self.proc)
        for n in self.devices + self.extra:
            remove_stale(n)
        if self.sock and os.path.exists(self.sock):
            try:
                os.unlink(self.sock)
            except OSError:
                pass


@pytest.fixture
def devemud(opts, transport, tmp_path):
    """Factory: devemud(args, devices=[names], tag=) starts devemud -f with its own control
    socket (unless args carry --config/--control) and waits until every named device serves.
    Everything it started is killed and cleaned up at teardown."""
    made = []

    def start(args, devices=(), tag="d", sock=None, wait=True):
        s = sock or sock_path(tag)
        d = Devemud(opts, transport, args, devices, s, tmp_path / f"devemud-{tag}-{len(made)}.log")
        made.append(d)
        if wait:
            d.start()
        return d

    yield start
    for d in made:
        d.cleanup()


@pytest.fixture(autouse=True)
def _current_daemons():
    CURRENT.clear()
    yield
    CURRENT.clear()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and call.when in ("call", "setup"):
        for d in CURRENT:
            text = d.log()
            if len(text) > 12000:
                text = "[...]\n" + text[-12000:]
            state = "running" if d.alive() else f"exited with {d.proc.returncode if d.proc else '?'}"
            rep.sections.append((f"devemud stderr ({d.log_path.name}, {state})", text or "(nothing)"))


@pytest.fixture(scope="session", autouse=True)
def _kill_leftovers():
    yield
    with _STARTED_LOCK:
        procs = list(STARTED.values())
    for p in procs:
        if p.poll() is None:
            p.kill()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass


class Helpers:
    """Reached by the test module through the `svc` fixture."""
    GuardTimeout = GuardTimeout
    popen = staticmethod(popen)
    reap = staticmethod(reap)
    forget = staticmethod(forget)
    unique = staticmethod(unique)
    sock_path = staticmethod(sock_path)
    mounted = staticmethod(mounted)
    wait_for = staticmethod(wait_for)
    control_request = staticmethod(control_request)
    remove_stale = staticmethod(remove_stale)
    repo = REPO


@pytest.fixture(scope="session")
def svc():
    return Helpers
