# SPDX-License-Identifier: MIT
# The device-class suites' fixtures: a devemud per test, ready without any node opened, and the FUSE-fallback guard.
"""
Each suite here starts its own devemud with the devices it needs; the library's Devemud waits for
READY=1 on a private NOTIFY_SOCKET, so no node is opened before the test (opening a watchdog arms
it, an rtc is exclusive). The tests run real client programs against the nodes; the daemon is
stopped afterwards.

Options (tests/lib/devemu_testlib): --transport cuse|kshim|fuse, --build-dir, --devemud,
--devemuctl, --test-timeout (default 180 s here). Tests that need CUSE or the kernel shim (value
or pointer ioctls) skip on fuse with the reason.
"""

import os
import sys

import pytest

from devemu_testlib import run
from devemu_testlib.daemon import DaemonError, Devemud, device_args
from devemu_testlib.plugin import require_daemon

FUSE_CANNOT = ("needs CUSE or the kernel shim: the FUSE fallback forwards only ioctls whose argument points to "
               "_IOC_SIZE bytes moved in the encoded direction")


@pytest.fixture(scope="session")
def default_test_timeout():
    return 180.0


@pytest.fixture
def need_cuse(transport):
    """For tests whose ioctls the FUSE fallback cannot forward (CUSE or the kernel shim carry them)."""
    if transport == "fuse":
        pytest.skip(FUSE_CANNOT)


@pytest.fixture
def devemud(opts, transport):
    """Factory: devemud(("name", "model,opts"), ..., extra_args=(), start=True) -> a started Devemud
    (log level debug); stopped and cleaned up at teardown."""
    require_daemon(opts)
    made = []

    def make(*devices, extra_args=(), start=True):
        d = Devemud(opts, device_args(devices, transport, "debug") + list(extra_args), [n for n, _ in devices],
                    tag="dev")
        made.append(d)
        if start:
            try:
                d.start()
            except DaemonError as e:
                pytest.fail(str(e), pytrace=False)
        return d

    yield make
    for d in made:
        d.stop()
        d.cleanup()


BIN = os.path.join(os.path.dirname(__file__), "..", "..", "python", "bin")


@pytest.fixture
def devemu_run(opts, transport):
    """devemu_run(*args, tool="run") -> CompletedProcess of devemu-TOOL --transport T --devemud D ARGS."""
    if os.geteuid() != 0:
        pytest.skip("devemu-run needs root (a mount namespace, devemud's nodes)")

    def go(*args, tool="run", timeout=60):
        return run([sys.executable, os.path.join(BIN, f"devemu-{tool}"), "--transport", transport,
                    "--devemud", opts.devemud, *args], timeout=timeout)
    return go
