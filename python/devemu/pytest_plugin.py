# SPDX-License-Identifier: MIT
"""The devemu pytest plugin: a `devemu` fixture that serves devices from a private devemud.

    pytest -p devemu.pytest_plugin            or, in a conftest.py:  pytest_plugins = ["devemu.pytest_plugin"]

    def test_echo(devemu):
        loop = devemu.device("loopback", capacity="4k")
        with open(loop.path, "r+b", buffering=0) as f:
            f.write(b"hi\\n")
            assert f.read(3) == b"hi\\n"

Each test that uses the fixture gets its own devemud (started with the test's first device, the
others added over its control socket); it is stopped when the test ends, passed or failed, and
its nodes go with it. Device behaviour can be a class of the test module itself:
devemu.device("serial", far=MyModem) puts it at the far end of the UART, devemu.device("i2c",
slaves={0x20: MyChip, 0x50: "eeprom"}) on an I2C bus beside the built-in chips, devemu.device(MyDevice)
(or devemu.device("python", cls=MyDevice)) serves the node with it; the daemon imports the class
from its module's file. The transport is, first to last: the test's `devemu(transport=...)` marker,
--devemu-transport, the devemu_transport ini value, else cuse where /dev/cuse exists, kshim where
the kernel shim is loaded, else the FUSE fallback. A failing test's report shows the daemon's log.
"""

import inspect
import itertools
import os
import re
import site
import sys
import sysconfig
import warnings

import pytest

from .daemon import TRANSPORTS, Daemon, DaemonError, Unavailable, default_transport, sanitizer_report

_names = itertools.count(1)
_daemons = pytest.StashKey()


def pytest_addoption(parser):
    g = parser.getgroup("devemu", "devemu devices (the devemu fixture)")
    g.addoption("--devemu-transport", choices=TRANSPORTS, default=None,
                help="how devemud serves the devices: cuse, kshim or fuse (default: cuse where /dev/cuse "
                     "exists, kshim where devemu_kshim.ko is loaded, else the FUSE fallback)")
    g.addoption("--devemu-devemud", default=None,
                help="the devemud binary (default: $DEVEMUD, else devemud on PATH or in the sbin directories)")
    g.addoption("--devemu-unavailable", choices=("fail", "skip"), default=None,
                help="what a test that asks for a device does where devemud cannot run (not installed, "
                     "no /dev/fuse, /dev/cuse not open to this user...): fail (default) or skip, with the reason "
                     "either way")
    parser.addini("devemu_transport", "default transport of the devemu fixture (cuse, kshim, fuse)")
    parser.addini("devemu_devemud", "the devemud binary the devemu fixture runs")
    parser.addini("devemu_unavailable", "fail or skip where devemud cannot run (default: fail)")


def pytest_configure(config):
    config.addinivalue_line("markers", "devemu(transport=None): the devemu fixture's transport for this test "
                                       "(cuse, kshim or fuse)")


def _setting(config, option, ini):
    return config.getoption(option) or config.getini(ini) or None


class Device:
    """One device served for a test: its node at .path, the model's control side, its faults and
    statistics."""

    def __init__(self, daemon, name, model, path):
        self.daemon = daemon
        self.name = name
        self.model = model
        self.path = path

    def __repr__(self):
        return f"<devemu.Device {self.name} ({self.model}) at {self.path}>"

    def __fspath__(self):
        return self.path

    def inject(self, *args):
        """The model's inject verb with its arguments (inject("tap", "KEY_A")); the model's reply."""
        return self.daemon.control.inject(self.name, *args)

    def fault(self, op, errno=None, delay=None, short=None, count=None):
        """The next requests of op (read, write, ioctl, open, poll) fail with errno (a number or a
        name), wait delay seconds, or move at most short bytes; count: only that many requests."""
        self.daemon.control.fault(self.name, op, errno=errno, delay=delay, short=short, count=count)

    def clear_faults(self):
        self.daemon.control.clear_faults(self.name)

    def stats(self):
        """The device's counters: operations (per op: requests, errors, latency), bytes_in,
        bytes_out, opens, open_files, waited, cancelled, dropped, faults."""
        return self.daemon.control.stats(self.name)

    def remove(self):
        """Stops serving the device now (callers waiting on it get ENODEV)."""
        self.daemon.control.remove(self.name)


class PythonDeviceWarning(UserWarning):
    """Python device code raised in the daemon during the test: the message is its traceback."""


def _python_behaviour(value):
    return isinstance(value, type) or (callable(value) and not isinstance(value, str))


def _class_location(cls):
    """(file, class name) from which the daemon imports cls, or TypeError saying why it cannot."""
    if not isinstance(cls, type):
        raise TypeError(f"{cls!r}: device behaviour in Python is a class (an instance of it serves the device), "
                        "not a function or an object")
    if "." in cls.__qualname__:
        raise TypeError(f"{cls.__qualname__}: a device class must be defined at the top level of its module, "
                        "the daemon imports it from the module's file")
    try:
        path = inspect.getsourcefile(cls)
    except TypeError:
        path = None
    if not path or not os.path.exists(path):
        raise TypeError(f"{cls.__qualname__}: no source file (defined interactively?); the daemon imports "
                        "device classes from files")
    path = os.path.abspath(path)
    if "," in path or ":" in path:
        raise TypeError(f"{path}: a device spec cannot hold ',' or ':' in the path of a Python device's file")
    return path, cls.__name__


def _python_options(model, options):
    """The model name and options with Python classes turned into what the daemon imports."""
    options = dict(options)
    if isinstance(model, type):
        options["cls"], model = model, "python"
    for key, value in list(options.items()):
        if key == "slaves" and model == "i2c" and isinstance(value, dict):
            options["slaves"] = _i2c_slaves(value)
            continue
        if not _python_behaviour(value):
            continue
        if key == "cls" and model == "python":
            path, name = _class_location(value)
            del options["cls"]
            options["script"], options["class"] = path, name
        elif key == "far" and model == "serial":
            path, name = _class_location(value)
            options["far"] = f"python:{path}:{name}"
        else:
            raise TypeError(f"{key}={value!r}: a Python class goes in far= of a serial device, cls= of a "
                            "python device or slaves={ADDRESS: class} of an i2c device")
    return model, options


def _i2c_slaves(chips):
    """slaves={0x20: MyChip, 0x50: "eeprom"} as the i2c model's slaves= (kind@address, joined by +)."""
    items = []
    for address, kind in sorted(chips.items()):
        if not isinstance(address, int):
            raise TypeError(f"slaves: {address!r} is not an I2C address (an int such as 0x20)")
        if _python_behaviour(kind):
            path, name = _class_location(kind)
            if "+" in path or "@" in path:
                raise TypeError(f"{path}: an i2c chip's file cannot hold '+' or '@' in its path")
            kind = f"python:{path}:{name}"
        items.append(f"{kind}@0x{address:02x}")
    return "+".join(items) or "none"


def _project_path():
    """The part of this test's sys.path the daemon's interpreter needs to import device classes as
    the test did: the project's directories and a virtualenv's packages, not this interpreter's own
    standard library and system packages (the daemon's libpython brings its own)."""
    base = {"base": sys.base_prefix, "platbase": sys.base_exec_prefix,
            "installed_base": sys.base_prefix, "installed_platbase": sys.base_exec_prefix}
    system = {sysconfig.get_path(n, vars=base) for n in ("stdlib", "platstdlib", "purelib", "platlib")}
    if sys.prefix == sys.base_prefix:
        system |= set(site.getsitepackages())
    system = {os.path.realpath(d) for d in system if d}
    keep = []
    for p in sys.path:
        real = os.path.realpath(p) if p else ""
        if not os.path.isdir(real) or any(real == d or real.startswith(d + os.sep) for d in system):
            continue
        keep.append(p)
    return keep


# "devemud[PID] error: DEVICE: python: ..." lines: a Python device's traceback.
_PYTHON_ERROR = re.compile(r"^\S+ error: ([^:]+): python: (.*)$", re.M)
# The line that opens one traceback: what raised (or was interrupted) and what became of it.
_TRACEBACK_HEAD = re.compile(r"^\S.*\b(raised|interrupted)\b.*:$")


class Devemu:
    """The `devemu` fixture's value: device(model, **options) serves a device for this test."""

    def __init__(self, request):
        self._request = request
        config = request.config
        marker = request.node.get_closest_marker("devemu")
        transport = marker.kwargs.get("transport") if marker else None
        if marker and marker.args:
            transport = marker.args[0]
        self.transport = (transport or _setting(config, "--devemu-transport", "devemu_transport")
                          or default_transport())
        if self.transport not in TRANSPORTS:
            raise pytest.UsageError(f"devemu transport {self.transport!r}: expected one of {', '.join(TRANSPORTS)}")
        self._devemud = _setting(config, "--devemu-devemud", "devemu_devemud")
        if self._devemud and os.sep in self._devemud:
            self._devemud = str(config.invocation_params.dir / self._devemud)
        self._unavailable = _setting(config, "--devemu-unavailable", "devemu_unavailable") or "fail"
        self.daemon = None
        self.devices = []

    @property
    def control(self):
        """The private daemon's Control (None before the first device)."""
        return self.daemon.control if self.daemon else None

    def device(self, model, name=None, **options):
        """Serves a device of model with options (model options, and node keys such as mode=0666)
        and returns it once its node exists. name defaults to one unique to this run.
        devemu.Error (ControlError or DaemonError) carries the daemon's message when it refuses."""
        model, options = _python_options(model, options)
        name = name or f"{model}-{os.getpid()}-{next(_names)}"
        if self.daemon is None:
            self._start(name, model, options)
            path = self.daemon.node(name)
        else:
            path = self.daemon.add(name, model, **options)["nodes"][0]
        dev = Device(self.daemon, name, model, path)
        self.devices.append(dev)
        return dev

    def _start(self, name, model, options):
        from .control import device_spec
        spec = device_spec(name, model, options).partition("=")[2]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(_project_path()))
        daemon = Daemon({name: spec}, transport=self.transport, devemud=self._devemud, env=env)
        self._request.node.stash.setdefault(_daemons, []).append(daemon)
        try:
            daemon.start()
        except Unavailable as e:
            message = f"devemu: cannot serve a {model} device here: {e}"
        else:
            self.daemon = daemon
            return
        if self._unavailable == "skip":
            pytest.skip(message)
        pytest.fail(message, pytrace=False)

    def _finish(self):
        """Stops the daemon; a daemon that died during the test is an error of the test."""
        if self.daemon is None:
            return
        died = not self.daemon.alive()
        rc = self.daemon.stop()
        self._warn_python_errors()
        report = sanitizer_report(self.daemon.log())
        if report:
            raise DaemonError(f"devemud printed a sanitizer report during the test:\n{report[:8000]}",
                              self.daemon.log())
        if died:
            raise DaemonError(f"devemud exited with {rc} during the test; its log ends:\n{self.daemon.log_tail()}",
                              self.daemon.log())
        if rc != 0:
            raise DaemonError(f"devemud exited with {rc} after SIGTERM (expected 0); its log ends:\n"
                              f"{self.daemon.log_tail()}", self.daemon.log())


    def _warn_python_errors(self):
        """Each Python traceback the daemon logged becomes a warning: it shows in pytest's output
        even when the test passed."""
        lines, device = [], None
        for dev, text in _PYTHON_ERROR.findall(self.daemon.log()):
            if lines and (dev != device or _TRACEBACK_HEAD.search(text)):
                warnings.warn(PythonDeviceWarning("\n".join(lines)), stacklevel=2)
                lines = []
            device = dev
            lines.append(f"{dev}: {text}")
        if lines:
            warnings.warn(PythonDeviceWarning("\n".join(lines)), stacklevel=2)


@pytest.fixture
def devemu(request):
    """Serves devices for this test from a private devemud: devemu.device(model, **options)
    returns a Device (.path, .name, .inject(), .fault(), .clear_faults(), .stats()); the daemon
    and its nodes are gone when the test ends, whether it passed or failed."""
    d = Devemu(request)
    yield d
    d._finish()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failing test's report shows what its private devemud logged."""
    outcome = yield
    rep = outcome.get_result()
    if not rep.failed:
        return
    for i, daemon in enumerate(item.stash.get(_daemons, [])):
        log = daemon.log_tail()
        if log:
            rep.sections.append(("devemud log" + (f" ({i + 1})" if i else ""), log))
