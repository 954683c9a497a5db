# SPDX-License-Identifier: MIT
"""devemu_testlib: what the devemu test suites (conformance, service, devices, kshim) share.

    abi         the devemu ABI read from the uapi header through abi_dump, and the Linux ioctl encoding
    daemon      a private devemud: start, READY=1, stop, log, devemuctl (its READY=1 wait and
                control-socket client come from the devemu package, python/devemu)
    guard       the per-test timeout guard and deadline()
    guards      skip reasons: no root, no /dev/fuse, no /dev/cuse, no devemu_kshim.ko
    kernel_log  what the kernel logged while a test ran
    nodes       where a node shows up per transport, waiting for nodes, stale node cleanup
    options     the options every suite takes (--transport, --build-dir, --devemud, --devemuctl...)
    processes   the processes a run started, by pid
    plugin      the pytest plugin tests/conftest.py loads
"""

import itertools
import os
import subprocess

_names = itertools.count(1)


def unique(prefix):
    """A device name no other run uses at the same time (the pid and a counter)."""
    return f"{prefix}{os.getpid()}n{next(_names)}"


def run(args, timeout=60, input=None, shell=False):
    """Runs a client program; the CompletedProcess (text, stdout and stderr captured)."""
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, input=input, shell=shell,
                          stdin=None if input is not None else subprocess.DEVNULL)
