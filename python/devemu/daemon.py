# SPDX-License-Identifier: MIT
"""A private devemud: started in the foreground with its own control socket, log file and systemd
notify socket, ready when it sends READY=1 (once every node exists, without any node having been
opened), stopped with SIGTERM (nodes removed, FUSE mounts unmounted)."""

import os
import re
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from .control import Control, Error, runtime_dir

TRANSPORTS = ("cuse", "kshim", "fuse")
KSHIM_CONTROL = "/dev/devemu-kshim"
# "devemud[PID] error: CATEGORY: message", one line each (the log format on a terminal)
_ERROR_LINE = re.compile(r"^devemud\[\d+\] error: (?:[\w.-]+: )?(.*)$", re.M)
FUSE_MOUNTS = "/run/devemu"  # root's; an ordinary user's FUSE nodes are under runtime_dir()
FUSERMOUNT = "fusermount3"
# The first line of an AddressSanitizer, LeakSanitizer or UndefinedBehaviorSanitizer report
# (a devemud built with -Db_sanitize=address,undefined prints them to stderr).
_SANITIZER_REPORT = re.compile(r"^(?:==\d+==ERROR: \w+Sanitizer\b.*|.*: runtime error: .*|SUMMARY: \w+Sanitizer: .*)$",
                               re.M)


class DaemonError(Error):
    """devemud could not be started, did not get ready, or died. str() ends with its log;
    `message` is devemud's own reason where it gave one (the last error it logged), `log` its log."""

    def __init__(self, message, log="", reason=None):
        super().__init__(message)
        self.message = reason or message
        self.log = log


class Unavailable(DaemonError):
    """devemud cannot serve nodes here at all; the message says what to install or configure."""


def sanitizer_report(log):
    """The sanitizer report in a devemud log, from its first line on (None if there is none)."""
    m = _SANITIZER_REPORT.search(log)
    return log[m.start():] if m else None


def _usable(dev):
    """True if this user may open dev for reading and writing (root: if it exists)."""
    return os.path.exists(dev) and os.access(dev, os.R_OK | os.W_OK)


def _fusermount():
    return shutil.which(FUSERMOUNT) or shutil.which(FUSERMOUNT, path="/usr/bin:/bin")


def default_transport():
    """cuse where the kernel has CUSE and this user may open /dev/cuse (root, or the devemu group),
    kshim where devemu_kshim.ko is loaded and open to this user, else the FUSE fallback."""
    if _usable("/dev/cuse"):
        return "cuse"
    if _usable(KSHIM_CONTROL):
        return "kshim"
    return "fuse"


def missing(transport):
    """Why devemud cannot serve nodes with transport here (what to install or configure), or None."""
    if transport not in TRANSPORTS:
        return f"unknown transport {transport!r}: expected one of {', '.join(TRANSPORTS)}"
    if transport == "cuse" and not os.path.exists("/dev/cuse"):
        return "no /dev/cuse: this kernel has no CUSE (CONFIG_CUSE; try 'modprobe cuse'), or use transport fuse"
    if transport == "kshim" and not os.path.exists(KSHIM_CONTROL):
        return (f"no {KSHIM_CONTROL}: the kernel shim is not loaded (build kshim/ and insmod devemu_kshim.ko, "
                "or install it with dkms), or use transport cuse or fuse")
    if transport == "fuse" and not os.path.exists("/dev/fuse"):
        return "no /dev/fuse: this kernel has no FUSE (CONFIG_FUSE_FS; try 'modprobe fuse'; in a container, pass /dev/fuse in)"
    if os.geteuid() == 0:
        return None
    # An ordinary user: CUSE and the kernel shim through the devemu group, FUSE through fusermount3.
    if transport in ("cuse", "kshim"):
        dev = "/dev/cuse" if transport == "cuse" else KSHIM_CONTROL
        if not _usable(dev):
            return (f"{dev} is not open to this user: add the user to the devemu group (the udev rules "
                    "70-devemu.rules give it to that group; log in again), run as root, or use transport fuse")
    if transport == "fuse":
        if not _usable("/dev/fuse"):
            return "/dev/fuse is not open to this user (it is normally mode 0666; in a container, pass it in)"
        if not _fusermount():
            return "fusermount3 not found: as an ordinary user the FUSE fallback mounts through it (apt install fuse3)"
    return None


def find_devemud(path=None):
    """The devemud to run: path if given, else $DEVEMUD, else devemud on PATH or in /usr/sbin,
    /usr/local/sbin, /usr/bin, /usr/local/bin. Unavailable if there is none."""
    candidates = [path] if path else [os.environ.get("DEVEMUD")] if os.environ.get("DEVEMUD") else []
    if not candidates:
        found = shutil.which("devemud") or shutil.which(
            "devemud", path="/usr/local/sbin:/usr/sbin:/usr/local/bin:/usr/bin")
        candidates = [found] if found else []
    for c in candidates:
        if os.path.isfile(c) and os.access(c, os.X_OK):
            return os.path.abspath(c)
        raise Unavailable(f"devemud {c!r} is not an executable file")
    raise Unavailable("devemud not found: build and install devemu (meson setup build && meson install -C build), "
                      "or point DEVEMUD (or the pytest option --devemu-devemud) at a built one, "
                      "e.g. build/cuse_dev/devemud")


def mounted(path):
    """True if path is a mount point (the FUSE fallback mounts /run/devemu/NAME)."""
    try:
        with open("/proc/self/mountinfo") as f:
            return any(line.split()[4] == path for line in f)
    except OSError:
        return False


def _die_with_parent():
    """In the child before exec: SIGTERM when the process that started it ends (a test run that
    is killed does not leave private daemons behind)."""
    import ctypes
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def remove_leftovers(name):
    """What a FUSE-fallback devemud killed with SIGKILL leaves of device name: the mount
    RUNTIME/NAME (/run/devemu/NAME for root), root's dangling /dev/NAME symlink to it, the empty
    mount point file."""
    mnt = os.path.join(runtime_dir(), name)
    if mounted(mnt):
        unmount = ["umount", "-l", mnt] if os.geteuid() == 0 else [_fusermount() or FUSERMOUNT, "-u", "-q", "-z", mnt]
        subprocess.run(unmount, capture_output=True, timeout=10)
    node = f"/dev/{name}"
    if os.path.islink(node) and os.readlink(node) == mnt:
        os.unlink(node)
    try:
        if os.path.isfile(mnt) and not os.path.islink(mnt) and os.path.getsize(mnt) == 0:
            os.unlink(mnt)
    except OSError:
        pass


def start_notified(argv, log, timeout=30.0, env=None, popen=subprocess.Popen, die_with_parent=False):
    """Starts argv (a devemud -f command line) with a private NOTIFY_SOCKET and waits for its
    READY=1; the Popen. log is an open binary file for its stdout and stderr (or a path).
    die_with_parent: it gets SIGTERM if the calling thread ends first. DaemonError if it exits
    first or does not get ready within timeout seconds (it is killed)."""
    workdir = tempfile.mkdtemp(prefix="devemu-n-")  # short: unix socket paths hold 107 bytes
    notify_path = os.path.join(workdir, "notify")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        notify.bind(notify_path)
        env = dict(os.environ if env is None else env, NOTIFY_SOCKET=notify_path)
        env.pop("JOURNAL_STREAM", None)  # log lines as on a terminal, not journald's
        kw = dict(stdin=subprocess.DEVNULL, env=env, start_new_session=True,
                  preexec_fn=_die_with_parent if die_with_parent else None)
        if isinstance(log, (str, Path)):
            with open(log, "ab") as f:
                proc = popen(argv, stdout=f, stderr=f, **kw)
        else:
            proc = popen(argv, stdout=log, stderr=log, **kw)
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                proc.kill()
                proc.wait()
                raise DaemonError(f"devemud did not send READY=1 within {timeout:g} s ({' '.join(argv)})")
            ready, _, _ = select.select([notify], [], [], min(left, 0.2))
            if ready and b"READY=1" in notify.recv(4096).split(b"\n"):
                return proc
            if proc.poll() is not None:
                raise DaemonError(f"devemud exited with {proc.returncode} before READY=1 ({' '.join(argv)})")
    finally:
        notify.close()
        shutil.rmtree(workdir, ignore_errors=True)


def _devices(devices):
    """[(name, "model,key=value...")] from a dict {name: spec}, a list of "NAME=SPEC" strings or of
    (name, spec) pairs."""
    if isinstance(devices, dict):
        devices = list(devices.items())
    out = []
    for d in devices:
        if isinstance(d, str):
            name, sep, spec = d.partition("=")
            if not sep:
                raise ValueError(f"device {d!r}: expected NAME=MODEL[,key=value...]")
            d = (name, spec)
        out.append((str(d[0]), str(d[1])))
    return out


class Daemon:
    """A private devemud serving devices with transport (default: default_transport()).

        with Daemon({"demo0": "loopback,capacity=1M"}, transport="fuse") as d:
            open(d.node("demo0"), "wb").write(b"hi\\n")
            d.control.stats("demo0")

    devices: {name: "model,key=value..."}, ["name=model,..."] or [(name, spec)]. devemud: the
    binary (default: find_devemud()). args: more devemud arguments. env: its environment (default:
    this process's; the interpreter of Python devices reads PYTHONPATH). start() returns once every
    node exists; stop() ends it with SIGTERM, and so does the end of the thread that started it
    (die_with_parent=False keeps it). Its log (stdout and stderr) is in log_path and log()."""

    def __init__(self, devices=(), *, transport=None, devemud=None, args=(), log_level=None, log_path=None,
                 ready_timeout=30.0, die_with_parent=True, env=None):
        self.env = env
        self.devices = _devices(devices)
        if not self.devices:
            raise ValueError("a Daemon serves at least one device (devemud alone would serve devemu0=loopback)")
        self.transport = transport or default_transport()
        self.devemud = devemud
        self.args = list(args)
        self.log_level = log_level
        self.ready_timeout = ready_timeout
        self.die_with_parent = die_with_parent
        self.workdir = None
        self.log_path = Path(log_path) if log_path else None
        self.control = None
        self.proc = None
        self._kept_log = None  # the log once the work directory is gone
        self.names = [n for n, _ in self.devices]  # every device served, those added later too

    def __repr__(self):
        state = f"pid {self.proc.pid}" if self.alive() else "not running"
        return f"<devemu.Daemon {self.transport} {', '.join(self.names) or '-'} ({state})>"

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def argv(self):
        a = [self.devemud, "-f", "--transport", self.transport, "--control", self.control.path]
        for name, spec in self.devices:
            a += ["--device", f"{name}={spec}"]
        if self.log_level:
            a += ["--log-level", self.log_level]
        return a + self.args

    def start(self):
        """Starts devemud and returns once it sent READY=1 (every node exists). Unavailable when
        it cannot run here, DaemonError (with its log) when it fails."""
        if self.alive():
            return self
        reason = missing(self.transport)
        if reason:
            raise Unavailable(reason)
        self.devemud = find_devemud(self.devemud)
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="devemu-"))
        if self.log_path is None:
            self.log_path = self.workdir / "devemud.log"
        self.control = Control(str(self.workdir / "control"))
        try:
            self.proc = start_notified(self.argv(), self.log_path, self.ready_timeout, env=self.env,
                                       die_with_parent=self.die_with_parent)
        except DaemonError as e:
            self.proc = None
            self._cleanup()
            log = self.log()
            errors = _ERROR_LINE.findall(log)
            reason = errors[-1] if errors else None
            raise DaemonError(f"{reason or e}\n{e}; its log ends:\n{self.log_tail()}", log, reason) from None
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=15.0):
        """SIGTERM, then waits for the exit (SIGKILL after timeout seconds, and what a killed daemon
        leaves behind is removed). Returns the exit status (0 on a clean shutdown), None if it never ran."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._cleanup()
        return self.proc.returncode

    def _cleanup(self):
        """Removes what a daemon that did not shut down cleanly leaves (FUSE mounts, /dev symlinks)
        and the work directory (the log is kept in memory)."""
        for name in self.names:
            remove_leftovers(name)
        if self.workdir is not None:
            self._kept_log = self.log()
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
            if self.log_path and not self.log_path.exists():
                self.log_path = None

    # -- devices ---------------------------------------------------------------------------

    def node(self, name):
        """Where the device's node is: /dev/NAME (for root on the FUSE fallback a symlink into its
        mount; for an ordinary user on the FUSE fallback the mount itself, RUNTIME_DIR/devemu/NAME)."""
        for d in self.control.list():
            if d["name"] == name and d["nodes"]:
                return d["nodes"][0]
        return f"/dev/{name}"

    def add(self, name, model, **options):
        """Serves another device; its description (name, model, nodes...) once its node exists."""
        if "transport" not in options and self.transport:
            options["transport"] = self.transport
        self.names.append(name)
        return self.control.add(name, model, **options)

    def remove(self, name):
        return self.control.remove(name)

    # -- log -------------------------------------------------------------------------------

    def log(self):
        """Everything devemud wrote to stdout and stderr so far."""
        if self.log_path is None:
            return self._kept_log or ""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return self._kept_log or ""

    def log_tail(self, chars=8000):
        text = self.log()
        return text if len(text) <= chars else "[...]\n" + text[-chars:]
