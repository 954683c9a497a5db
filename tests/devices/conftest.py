# SPDX-License-Identifier: MIT
# Shared fixtures of the device-model client suites: options, a devemud per test that is ready without opening its nodes, helpers.
"""
Each suite here starts its own devemud with the devices it needs, waits for READY=1 on a private
NOTIFY_SOCKET (so no node is opened before the test: opening a watchdog arms it, an rtc is
exclusive), runs real client programs against the nodes and stops the daemon afterwards.

Options: --transport cuse|kshim|fuse (default cuse), --devemud PATH, --devemuctl PATH,
--test-timeout SECONDS. Tests that need CUSE or the kernel shim (value or pointer ioctls) skip on
fuse with the reason.
"""

import itertools
import os
import select
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent


def pytest_addoption(parser):
    g = parser.getgroup("devemu-devices", "devemu device-model client suites")
    g.addoption("--transport", default="cuse", choices=["cuse", "kshim", "fuse"],
                help="how devemud serves the nodes (default cuse)")
    g.addoption("--devemud", default=str(REPO / "build" / "cuse_dev" / "devemud"),
                help="the daemon binary (default: build/cuse_dev/devemud of this repo)")
    g.addoption("--devemuctl", default=str(REPO / "build" / "cuse_dev" / "devemuctl"),
                help="the control client (default: build/cuse_dev/devemuctl of this repo)")
    g.addoption("--test-timeout", type=float, default=180.0,
                help="per-test timeout in seconds (SIGALRM), default 180")


def pytest_configure(config):
    config.addinivalue_line("markers", "timeout(seconds): per-test timeout override")


@pytest.fixture(scope="session")
def transport(pytestconfig):
    return pytestconfig.getoption("--transport")


@pytest.fixture
def need_cuse(transport):
    """For tests whose ioctls the FUSE fallback cannot forward."""
    if transport == "fuse":
        pytest.skip("needs CUSE or the kernel shim: the FUSE fallback forwards only ioctls whose argument "
                    "points to _IOC_SIZE bytes moved in the encoded direction")


class TestTimeout(Exception):
    pass


@pytest.fixture(autouse=True)
def _timeout(request, pytestconfig):
    marker = request.node.get_closest_marker("timeout")
    seconds = float(marker.args[0]) if marker else pytestconfig.getoption("--test-timeout")

    def expired(signum, frame):
        raise TestTimeout(f"test exceeded its {seconds:g} s timeout")

    old = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


_names = itertools.count()


def unique(prefix):
    """A device name no other run or engineer uses at the same time."""
    return f"{prefix}{os.getpid()}n{next(_names)}"


unique_name = unique


def run(args, timeout=60, input=None, shell=False):
    """Runs a client program; returns the CompletedProcess (text, stdout and stderr captured)."""
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, input=input, shell=shell,
                          stdin=None if input is not None else subprocess.DEVNULL)


class DaemonError(Exception):
    pass


class Devemud:
    """One devemud in the foreground serving some devices, with its own control socket."""

    def __init__(self, binary, ctl, transport, devices, workdir, extra_args=()):
        self.binary = binary
        self.ctl_binary = ctl
        self.transport = transport
        self.devices = list(devices)  # [(name, "model,key=value,...")]
        self.workdir = Path(workdir)
        self.control = str(self.workdir / "control")
        self.log_path = self.workdir / "devemud.log"
        self.extra_args = list(extra_args)
        self.proc = None

    def node(self, name):
        return f"/dev/{name}"

    def start(self, timeout=30.0):
        notify_path = str(self.workdir / "notify")
        if os.path.exists(notify_path):
            os.unlink(notify_path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(notify_path)
        argv = [self.binary, "--foreground", "--transport", self.transport, "--control", self.control,
                "--log-level", "debug"] + self.extra_args
        for name, spec in self.devices:
            argv += ["--device", f"{name}={spec}"]
        env = dict(os.environ, NOTIFY_SOCKET=notify_path)
        env.pop("JOURNAL_STREAM", None)
        log = open(self.log_path, "ab")
        log.write(("\n===== " + " ".join(argv) + "\n").encode())
        log.flush()
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                                         start_new_session=True)
        finally:
            log.close()
        end = time.monotonic() + timeout
        try:
            while True:
                left = end - time.monotonic()
                if left <= 0:
                    self.kill()
                    raise DaemonError(f"devemud not ready within {timeout:g} s:\n{self.log()}")
                ready, _, _ = select.select([sock], [], [], min(left, 0.2))
                if ready and b"READY=1" in sock.recv(4096):
                    break
                if self.proc.poll() is not None:
                    raise DaemonError(f"devemud exited with {self.proc.returncode}:\n{self.log()}")
        finally:
            sock.close()
            os.unlink(notify_path)
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def ctl(self, *args, timeout=30):
        """devemuctl on this daemon's socket; returns the CompletedProcess."""
        return run([self.ctl_binary, "--socket", self.control, *args], timeout=timeout)

    def inject(self, name, *args):
        r = self.ctl("inject", name, *args)
        if r.returncode != 0:
            raise AssertionError(f"devemuctl inject {name} {' '.join(args)} failed: {r.stdout}{r.stderr}")
        return r.stdout.strip()

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def kill(self):
        if self.alive():
            self.proc.kill()
        if self.proc:
            self.proc.wait(timeout=10)

    def stop(self, timeout=15.0):
        """SIGTERM (SIGKILL if that does not end it); returns the exit status of the SIGTERM stop or None."""
        if not self.alive():
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None


@pytest.fixture
def devemud(pytestconfig, transport):
    """Factory: devemud(("name", "model,opts"), ...) -> a started Devemud; stopped at teardown."""
    started = []
    dirs = []

    def make(*devices, extra_args=(), start=True):
        # Short paths: unix socket names are limited to 108 bytes.
        d = tempfile.mkdtemp(prefix="devemu-dev-")
        dirs.append(d)
        daemon = Devemud(pytestconfig.getoption("--devemud"), pytestconfig.getoption("--devemuctl"), transport,
                         devices, d, extra_args)
        started.append(daemon)
        if start:
            try:
                daemon.start()
            except DaemonError as e:
                pytest.fail(str(e), pytrace=False)
        return daemon

    yield make
    for daemon in started:
        daemon.stop()
    for d in dirs:
        subprocess.run(["rm", "-rf", d], timeout=30)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failing test shows the logs of the daemons it started."""
    outcome = yield
    rep = outcome.get_result()
    if rep.when != "call" or not rep.failed:
        return
    factory = item.funcargs.get("devemud") if hasattr(item, "funcargs") else None
    closure = getattr(factory, "__closure__", None) or ()
    for cell in closure:
        value = cell.cell_contents
        if isinstance(value, list) and value and isinstance(value[0], Devemud):
            for daemon in value:
                rep.sections.append((f"devemud log ({daemon.workdir})", daemon.log()[-20000:]))
