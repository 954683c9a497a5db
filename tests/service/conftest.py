# SPDX-License-Identifier: MIT
# The service suite's fixtures: a devemud factory (a control socket per daemon) and the svc helpers.
"""
The common options, the timeout guard (--test-timeout, default 30 s here; a test marked guard(N)
gets N x --test-timeout/30), the opts and transport fixtures and the daemon logs in failure
reports come from the test library (tests/lib/devemu_testlib).
"""

import itertools
import os

import pytest

from devemu_testlib import guard, processes, unique as _unique
from devemu_testlib.daemon import DaemonError, Devemud, control_request
from devemu_testlib.nodes import mounted, remove_stale, wait_for
from devemu_testlib.options import REPO
from devemu_testlib.plugin import require_daemon


@pytest.fixture(scope="session")
def default_test_timeout():
    return 30.0


_counter = itertools.count(1)


def unique(tag):
    """A device name unique to this run."""
    return _unique(f"svc-{tag}-")


def sock_path(tag):
    """A control socket path unique to this run (AF_UNIX paths are limited to 107 bytes: not under
    pytest's long tmp_path)."""
    return f"/tmp/devemu-svc-{tag}-{os.getpid()}-{next(_counter)}.sock"


@pytest.fixture
def devemud(opts, transport, tmp_path):
    """Factory: devemud(args, devices=[names], tag=, sock=, wait=True) starts devemud -f ARGS with
    its own control socket sock (added unless args carry --config/--control) and waits for READY=1
    (every named device's node present, none opened). Everything it started is killed and cleaned
    up at teardown."""
    require_daemon(opts)
    made = []

    def start(args, devices=(), tag="d", sock=None, wait=True):
        d = Devemud(opts, args, devices, sock=sock or sock_path(tag),
                    log_path=tmp_path / f"devemud-{tag}-{len(made)}.log", tag=tag)
        made.append(d)
        if wait:
            try:
                d.start()
            except DaemonError as e:
                raise AssertionError(str(e)) from None
        return d

    yield start
    for d in made:
        d.cleanup()


class Helpers:
    """Reached by the test module through the `svc` fixture."""
    GuardTimeout = guard.GuardTimeout
    popen = staticmethod(processes.popen)
    reap = staticmethod(processes.reap)
    forget = staticmethod(processes.forget)
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
