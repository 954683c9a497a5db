# SPDX-License-Identifier: MIT
"""The command-line options every suite takes, and their resolved values."""

import os
from pathlib import Path

from .nodes import Transport

REPO = Path(__file__).resolve().parents[3]
GROUP = "devemu"


def default_transport():
    """cuse where the kernel has CUSE, else the FUSE fallback."""
    return "cuse" if os.path.exists("/dev/cuse") else "fuse"


def group(parser):
    """The option group every devemu suite adds its own options to."""
    return parser.getgroup(GROUP, "devemu test suites")


def add_common(parser):
    g = group(parser)
    g.addoption("--transport", default=None, choices=["fuse", "cuse", "kshim"],
                help="how devemud serves the nodes (default: cuse where /dev/cuse exists, else fuse, the "
                     "fallback on kernels without CUSE; kshim needs devemu_kshim.ko loaded)")
    g.addoption("--build-dir", default=None,
                help="the meson build directory the binaries and abi_dump come from (default: REPO/build)")
    g.addoption("--devemud", default=None, help="the daemon binary (default: BUILD/cuse_dev/devemud)")
    g.addoption("--devemuctl", default=None, help="the control client (default: BUILD/cuse_dev/devemuctl)")
    g.addoption("--test-timeout", type=float, default=None,
                help="per-test timeout guard in seconds (each suite has its default); a test marked "
                     "guard(N) gets N seconds scaled by this over the suite's default")
    g.addoption("--check-dmesg", action="store_true",
                help="fail a test if the kernel log gained a warning, BUG or oops while it ran")


class Options:
    """The common options, resolved."""

    def __init__(self, config):
        o = config.getoption
        self.repo = REPO
        self.build_dir = str(Path(o("--build-dir") or REPO / "build").resolve())
        self.devemud = str(Path(o("--devemud") or Path(self.build_dir) / "cuse_dev" / "devemud").resolve())
        self.devemuctl = str(Path(o("--devemuctl") or Path(self.build_dir) / "cuse_dev" / "devemuctl").resolve())
        self.transport = Transport(o("--transport") or default_transport())
        self.test_timeout = o("--test-timeout")
        self.check_dmesg = o("--check-dmesg")
