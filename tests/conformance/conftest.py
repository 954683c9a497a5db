# SPDX-License-Identifier: MIT
# The conformance suite's options and fixtures: the daemons serving the nodes under test, and the static C client.

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from devemu_testlib import guard, processes
from devemu_testlib.daemon import DaemonError, Devemud, device_args
from devemu_testlib.nodes import remove_stale
from devemu_testlib.options import group
from devemu_testlib.plugin import require_daemon

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent


def pytest_addoption(parser):
    g = group(parser)
    g.addoption("--node", default=None,
                help="an already served node to test; the suite then starts no daemon for it "
                     "(the daemon-control tests still start their own devemud)")
    g.addoption("--model", default="loopback", choices=["loopback", "zero", "rng"],
                help="device model behind the node (default loopback)")
    g.addoption("--name", default=f"devemu-conf-{os.getpid()}",
                help="device name for this run (default devemu-conf-PID)")
    g.addoption("--client", default=None,
                help="the devemu_client binary (default: BUILD/tests/conformance/devemu_client, "
                     "else built here with gcc -static)")
    g.addoption("--capacity", type=int, default=65536,
                help="loopback capacity in bytes (the suite starts its daemon with it)")
    g.addoption("--fifo", default=None, choices=["on", "off"],
                help="fifo=on|off on every device the suite starts (kshim: off puts a loopback's reads and "
                     "writes on the request path; default: the daemon's default, the stream FIFOs)")
    g.addoption("--soak-messages", type=int, default=10000,
                help="messages per writer in the soak test (default 10000)")
    g.addoption("--soak-procs", type=int, default=16,
                help="writer processes and reader processes in the soak test (default 16 each)")
    g.addoption("--kill-deadline", type=float, default=1.0,
                help="seconds within which clients must error after the daemon is SIGKILLed")
    g.addoption("--devemud-log-level", default="info", choices=["debug", "info", "warning", "error"],
                help="devemud --log-level")


class Config:
    """The suite's options, resolved (the common ones as in devemu_testlib.options)."""

    def __init__(self, config, opts):
        o = config.getoption
        self.opts = opts
        self.external = o("--node") is not None
        self.name = o("--name")
        self.node = o("--node") or f"/dev/{self.name}"
        self.model = o("--model")
        self.transport = opts.transport
        self.devemud = opts.devemud
        self.build_dir = opts.build_dir
        self.client = o("--client")
        self.capacity = o("--capacity")
        self.fifo = o("--fifo")
        self.soak_messages = o("--soak-messages")
        self.soak_procs = o("--soak-procs")
        self.kill_deadline = o("--kill-deadline")
        self.log_level = o("--devemud-log-level")
        self.check_dmesg = opts.check_dmesg


@pytest.fixture(scope="session")
def cfg(pytestconfig, opts):
    return Config(pytestconfig, opts)


@pytest.fixture(scope="session")
def default_test_timeout():
    return 60.0


# --------------------------------------------------------------------------------------------
# devemud
# --------------------------------------------------------------------------------------------

def new_daemon(cfg, devices, tag, transport=None, nodes=None):
    """An unstarted devemud serving devices [(name, spec)] (default transport: the suite's)."""
    transport = transport or cfg.transport
    if cfg.fifo:
        devices = [(name, f"{spec},fifo={cfg.fifo}") for name, spec in devices]
    return Devemud(cfg.opts, device_args(devices, transport, cfg.log_level), [n for n, _ in devices],
                   transport=transport, nodes=nodes, tag=tag)


def start_or_fail(d, prefix=""):
    """Starts (or restarts) d; a daemon that does not get ready fails the test with its log."""
    try:
        return d.start()
    except DaemonError as e:
        msg = prefix + str(e)
    pytest.fail(msg, pytrace=False)


def model_spec(cfg):
    if cfg.model == "loopback":
        return f"loopback,capacity={cfg.capacity}"
    if cfg.model == "rng":
        return "rng,seed=1"
    return cfg.model


@pytest.fixture(scope="session")
def main_daemon(cfg):
    """The daemon serving the main node, or None with --node."""
    if cfg.external:
        yield None
        return
    require_daemon(cfg.opts)
    d = new_daemon(cfg, [(cfg.name, model_spec(cfg))], "main")
    start_or_fail(d)
    yield d
    d.stop()
    d.cleanup()


@pytest.fixture(scope="session")
def aux_daemon(cfg):
    """A second daemon with several devices: a small when_full=drop loopback, zero and rng."""
    require_daemon(cfg.opts)
    d = new_daemon(cfg, [(f"{cfg.name}-drop", "loopback,capacity=4096,when_full=drop"),
                         (f"{cfg.name}-z", "zero"), (f"{cfg.name}-r", "rng,seed=1")], "aux")
    start_or_fail(d)
    yield d
    d.stop()
    d.cleanup()


def ensure_running(d):
    """A session daemon that died in an earlier test (which reported it) is restarted."""
    if not d.alive():
        start_or_fail(d, "restarting devemud failed: ")


def drain(path, limit=1 << 24):
    """Reads and discards whatever the FIFO holds, without blocking. Returns the byte count."""
    total = 0
    with guard.deadline(10, f"draining {path} with O_NONBLOCK reads"):
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


@pytest.fixture
def node(cfg, main_daemon):
    """Path of the main node, served and (for loopback) drained."""
    if main_daemon is not None:
        ensure_running(main_daemon)
    if cfg.model == "loopback":
        drain(cfg.node)
    return cfg.node


def model_node(cfg, request, model, suffix):
    """The main node if it serves model, else the aux daemon's node NAME-suffix."""
    if cfg.model == model:
        return request.getfixturevalue("node")
    ensure_running(request.getfixturevalue("aux_daemon"))
    return f"/dev/{cfg.name}-{suffix}"


@pytest.fixture
def zero_node(cfg, request):
    """A zero-model node: the main node with --model zero, else the aux daemon's."""
    return model_node(cfg, request, "zero", "z")


@pytest.fixture
def rng_node(cfg, request):
    """An rng-model node: the main node with --model rng, else the aux daemon's."""
    return model_node(cfg, request, "rng", "r")


@pytest.fixture
def drop_node(cfg, aux_daemon):
    """A loopback node with capacity=4096,when_full=drop (aux daemon), drained."""
    ensure_running(aux_daemon)
    path = f"/dev/{cfg.name}-drop"
    drain(path)
    return path


@pytest.fixture
def make_daemon(cfg):
    """Factory for daemons a test controls itself (kill, restart); stopped and cleaned up at teardown."""
    made = []

    def make(devices, tag, transport=None, nodes=None):
        require_daemon(cfg.opts, transport)
        d = new_daemon(cfg, devices, tag, transport, nodes)
        made.append(d)
        return d

    yield make
    for d in made:
        d.stop(5)
        d.cleanup()


@pytest.fixture
def daemon_log(request, main_daemon):
    """The log of a daemon started with --transport cfg.transport (main, else aux)."""
    d = main_daemon or request.getfixturevalue("aux_daemon")
    return d.log()


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
    built = Path(cfg.build_dir) / "tests" / "conformance" / "devemu_client"
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


class Suite:
    """Helpers the test module reaches through the `suite` fixture."""
    deadline = guard.deadline
    GuardTimeout = guard.GuardTimeout
    popen = staticmethod(processes.popen)
    reap = staticmethod(processes.reap)
    register = staticmethod(processes.register)
    forget = staticmethod(processes.forget)
    DaemonError = DaemonError
    start = staticmethod(start_or_fail)
    remove_stale = staticmethod(remove_stale)
    here = HERE
    repo = REPO


@pytest.fixture(scope="session")
def suite():
    return Suite
