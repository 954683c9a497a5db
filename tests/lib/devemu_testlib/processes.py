# SPDX-License-Identifier: MIT
"""The processes a test run started, by pid: the timeout guard and the session's end kill exactly these."""

import os
import signal
import subprocess
import sys
import threading

_started = {}  # pid -> Popen, or None for a forked helper registered by pid
_lock = threading.Lock()
killed_by_guard = set()  # pids the timeout guard SIGKILLed (a death the test did not cause)


def popen(args, **kw):
    """subprocess.Popen, registered."""
    p = subprocess.Popen(args, **kw)
    with _lock:
        _started[p.pid] = p
    return p


def register(pid):
    """Registers a process started another way (os.fork, multiprocessing)."""
    with _lock:
        _started[pid] = None


def forget(p):
    """A Popen or a pid that has been reaped: never signal that pid again."""
    with _lock:
        _started.pop(getattr(p, "pid", p), None)


def reap(p, timeout=5.0):
    """Waits for the Popen p, SIGKILLs it if it does not end in time; returns its status."""
    try:
        rc = p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        rc = p.wait(timeout=10)
    forget(p)
    return rc


def _kill(pid, p):
    if p is not None and p.poll() is not None:
        return False
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


def kill_started(reason):
    """SIGKILL to every registered process still running (the guard's way out of a request nobody answers)."""
    with _lock:
        procs = list(_started.items())
    sys.stderr.write(f"\n[devemu test guard] {reason}: SIGKILL to {sorted(pid for pid, _ in procs)}\n")
    for pid, p in procs:
        if _kill(pid, p):
            killed_by_guard.add(pid)


def kill_all():
    """At the end of the session: SIGKILL and reap whatever is left."""
    with _lock:
        procs = list(_started.items())
        _started.clear()
    for pid, p in procs:
        _kill(pid, p)
        if p is not None:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass


def interrupted_run(argv, ready, after_sigint=None, timeout=30):
    """Runs argv in a session of its own and, once the file `ready` exists, sends its process group SIGINT
    (as a terminal's Ctrl-C does); after_sigint(), if given, runs next (to let the program go on).
    Returns (status, stdout, stderr); the group is SIGKILLed if anything fails on the way."""
    import time
    p = popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while not ready.exists() and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert ready.exists(), p.communicate(timeout=10)
        os.killpg(p.pid, signal.SIGINT)
        if after_sigint:
            after_sigint()
        out, err = p.communicate(timeout=timeout)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        forget(p)
    return p.returncode, out, err
