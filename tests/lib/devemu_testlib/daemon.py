# SPDX-License-Identifier: MIT
"""A private devemud: started in the foreground with its own control socket, log file and systemd
notify socket, ready when it sends READY=1 (which it does once every node exists, without any node
being opened: opening a watchdog arms it, an rtc is exclusive, statistics start at zero), stopped
and cleaned up (nodes, FUSE mounts, socket) at the end."""

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from devemu import Control, DaemonError
from devemu.daemon import sanitizer_report, start_notified

from . import guards, processes
from .nodes import Transport, remove_stale, wait_for

DAEMONS = []  # every Devemud not cleaned up yet: the failure report and the health check read it
# Sanitizer reports of daemons already cleaned up, not yet charged to a test: [(tag, report)]
SANITIZER_REPORTS = []


def control_exchange(path, payload, timeout=5.0):
    """Raw bytes to a control socket on a fresh connection; the first answer line (b"" if the
    daemon closed the connection without one)."""
    return Control(path, timeout).exchange(payload)


def control_request(path, request, timeout=5.0):
    """One request over a control socket, one JSON answer (without devemuctl)."""
    return Control(path, timeout).request(request)


def device_args(devices, transport, log_level=None):
    """devemud arguments serving devices [(name, "model,key=value...")] with transport."""
    a = ["--transport", str(transport)]
    for name, spec in devices:
        a += ["--device", f"{name}={spec}"]
    if log_level:
        a += ["--log-level", log_level]
    return a


class Devemud:
    """One devemud -f process.

    args are its arguments after -f; names the devices it serves once started (their nodes must
    be present at READY=1); nodes overrides the node paths checked (e.g. both nodes of
    --transport cuse,kshim). Unless args carry --control, -c or --config, the daemon gets the
    control socket sock (default: in its own short-named work directory)."""

    def __init__(self, opts, args, names=(), *, transport=None, nodes=None, sock=None, log_path=None, tag="d"):
        self.opts = opts
        self.args = list(args)
        self.transport = Transport(transport or opts.transport)
        self.devices = list(names)  # served at start
        self.extra = []  # added later (devemuctl add, SIGHUP): cleaned up too
        self.nodes = list(nodes) if nodes else [self.transport.node(n) for n in self.devices]
        # Short paths: unix socket names are limited to 108 bytes.
        self.workdir = Path(tempfile.mkdtemp(prefix=f"devemu-{tag}-"))
        self.sock = sock or str(self.workdir / "control")
        self.log_path = Path(log_path) if log_path else self.workdir / "devemud.log"
        self.tag = tag
        self.proc = None
        self.starts = 0
        DAEMONS.append(self)

    # -- process ---------------------------------------------------------------------------

    @property
    def pid(self):
        return self.proc.pid

    def argv(self):
        a = [self.opts.devemud, "-f"] + self.args
        if not {"--control", "-c", "--config"} & set(self.args):
            a += ["--control", self.sock]
        return a

    def start(self, timeout=30.0):
        """Starts devemud and waits for READY=1; DaemonError (with its log) if it exits first or
        does not get ready in time. A stopped or killed daemon can be started again."""
        if not os.access(self.opts.devemud, os.X_OK):
            raise DaemonError(f"not an executable: {self.opts.devemud} (build first: scripts/build.sh, "
                              "or pass --build-dir/--devemud)")
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"===== start #{self.starts}: {' '.join(self.argv())}\n".encode())
        started = []

        def popen(*args, **kw):
            started.append(processes.popen(*args, **kw))
            return started[-1]
        try:
            self.proc = start_notified(self.argv(), self.log_path, timeout, popen=popen)
        except DaemonError as e:
            if started:
                self.proc = started[0]
                processes.forget(self.proc)
            raise DaemonError(f"{e}:\n" + self.log_tail()) from None
        missing = [n for n in self.devices if not self.transport.present(n)]
        missing += [p for p in self.nodes if not os.path.exists(p)]
        if missing:
            raise DaemonError(f"devemud sent READY=1 before {sorted(set(missing))} existed:\n" + self.log_tail())
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout):
        """Its exit status, or None if it is still running after timeout seconds."""
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        processes.forget(self.proc)
        return rc

    def kill(self):
        """SIGKILL, and reap it."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        processes.forget(self.proc)

    def stop(self, timeout=15.0):
        """SIGTERM and wait; SIGKILL if it does not end. Returns the exit status (negative: killed
        by that signal earlier), None if it had to be SIGKILLed or never ran."""
        if self.proc is None:
            return None
        if self.proc.poll() is not None:
            processes.forget(self.proc)
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        rc = self.wait(timeout)
        if rc is None:
            self.kill()
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
        """Kills it if it still runs and removes what it may have left (nodes, mounts, socket)."""
        self.kill()
        for n in self.devices + self.extra:
            remove_stale(n)
        if self.sock and os.path.exists(self.sock):
            try:
                os.unlink(self.sock)
            except OSError:
                pass
        if self in DAEMONS:
            DAEMONS.remove(self)
        report = sanitizer_report(self.log())
        if report:
            SANITIZER_REPORTS.append((self.tag, report))
        shutil.rmtree(self.workdir, ignore_errors=True)

    # -- log -------------------------------------------------------------------------------

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_size(self):
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def log_tail(self, chars=20000):
        return self.log()[-chars:]

    def wait_log(self, pattern, timeout=5.0, count=1):
        """Waits until the log matches the regex pattern count times; returns the matches."""
        rx = re.compile(pattern, re.M)

        def seen():
            m = rx.findall(self.log())
            return m if len(m) >= count else None
        try:
            return wait_for(seen, timeout, f"devemud log line /{pattern}/ x{count}", interval=0.02)
        except AssertionError as e:
            raise AssertionError(f"{e}\n--- devemud log ---\n{self.log()}") from None

    # -- devemuctl -------------------------------------------------------------------------

    def node(self, name):
        return self.transport.node(name)

    def ctl(self, *args, timeout=30.0, socket_path=None):
        """devemuctl on this daemon's socket; the CompletedProcess."""
        return subprocess.run([self.opts.devemuctl, "--socket", socket_path or self.sock, *args],
                              capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def ctl_ok(self, *args):
        """devemuctl ARGS must succeed without a word on stderr; its stdout."""
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

    def inject(self, name, *args):
        """devemuctl inject NAME ARGS, which must succeed; its output, stripped."""
        r = self.ctl("inject", name, *args)
        assert r.returncode == 0, f"devemuctl inject {name} {' '.join(args)} failed: {r.stdout}{r.stderr}"
        return r.stdout.strip()


def skip_reason(opts, transport=None):
    """Why no devemud can serve nodes here with transport (default: the suite's), or None."""
    return guards.missing_for(transport or opts.transport)
