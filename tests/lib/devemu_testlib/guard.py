# SPDX-License-Identifier: MIT
"""Timeouts: a per-test guard and deadline() blocks.

One SIGALRM handler raises GuardTimeout in the main thread for the earliest expired deadline. If
the test is stuck in the kernel (a request the daemon never answers), the processes the run
started are SIGKILLed a few seconds later, which ends every FUSE/CUSE/kshim wait; if even that
does not help, the run exits with status 124.
"""

import os
import signal
import sys
import threading
import time

from . import processes


class GuardTimeout(Exception):
    pass


_deadlines = []  # [expiry (monotonic), message]
_lock = threading.Lock()


def _on_alarm(signum, frame):
    now = time.monotonic()
    with _lock:
        expired = [d for d in _deadlines if d[0] <= now + 0.005]
        if expired:
            first = min(expired, key=lambda d: d[0])
            _deadlines.remove(first)
    if expired:
        raise GuardTimeout(first[1])


def install():
    """Makes the guard's SIGALRM handler current (tests may have replaced it)."""
    signal.signal(signal.SIGALRM, _on_alarm)


def _arm(seconds, message):
    d = [time.monotonic() + seconds, message]
    with _lock:
        _deadlines.append(d)
    main = threading.main_thread().ident
    timer = threading.Timer(seconds, lambda: signal.pthread_kill(main, signal.SIGALRM))
    timer.daemon = True
    timer.start()
    return d, timer


def _disarm(d, timer):
    timer.cancel()
    with _lock:
        if d in _deadlines:
            _deadlines.remove(d)


def _timer(seconds, fn, *args):
    t = threading.Timer(seconds, fn, args=args)
    t.daemon = True
    t.start()
    return t


def _exit_run():
    sys.stderr.write("\n[devemu test guard] still stuck 30 s after killing the run's processes; exiting\n")
    sys.stderr.flush()
    os._exit(124)


class deadline:
    """with deadline(2.0, "what blocked"): GuardTimeout if the block takes longer. If the main
    thread is still stuck in the kernel kill_after seconds later, the run's processes are SIGKILLed
    so that the call returns."""

    def __init__(self, seconds, message, kill_after=3.0):
        self.seconds = seconds
        self.message = message
        self.kill_after = kill_after

    def __enter__(self):
        self._d, self._t = _arm(self.seconds, f"{self.message} (no result after {self.seconds:g} s)")
        self._k = _timer(self.seconds + self.kill_after, processes.kill_started, f"stuck in the kernel: {self.message}")
        return self

    def __exit__(self, *exc):
        self._k.cancel()
        _disarm(self._d, self._t)
        return False


class test_guard:
    """The per-test guard: GuardTimeout after seconds, SIGKILL to the run's processes 5 s later,
    exit of the run 30 s after that."""

    def __init__(self, seconds):
        self.seconds = seconds

    def __enter__(self):
        install()
        self._d, self._t = _arm(self.seconds, f"test exceeded its {self.seconds:g} s timeout guard")
        self._kill = _timer(self.seconds + 5, processes.kill_started, "test still stuck 5 s after its timeout")
        self._exit = _timer(self.seconds + 35, _exit_run)
        return self

    def __exit__(self, *exc):
        _disarm(self._d, self._t)
        self._kill.cancel()
        self._exit.cancel()
        return False
