# SPDX-License-Identifier: MIT
# The kshim suite's options and guard: devemu_kshim.ko loaded, as root, and the stand-in daemons built.
"""
Run as root with devemu_kshim.ko loaded (tests/kshim/run_selftest.sh does it inside tests/vm/run):

  /usr/bin/python3 -m pytest tests/kshim --build-dir build [--devemud PATH] [--check-dmesg]

The stand-in daemons kshim_echo and kshim_hostile come from BUILD/tests/kshim (--kshim-bin DIR
overrides it); test_chaos_devemud uses devemud (BUILD/cuse_dev/devemud, or --devemud) and skips
without it.
"""

import os
from pathlib import Path

import pytest

from devemu_testlib import guards
from devemu_testlib.options import group


def pytest_addoption(parser):
    group(parser).addoption("--kshim-bin", default=None,
                            help="the directory of kshim_echo and kshim_hostile (default: BUILD/tests/kshim)")


@pytest.fixture(scope="session")
def default_test_timeout():
    return 120.0


@pytest.fixture(scope="session", autouse=True)
def _kshim_loaded():
    """Every test here needs root and the module (the skip says which is missing)."""
    reason = guards.no_root() or guards.no_kshim()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="session")
def kshim_bin(pytestconfig, opts):
    d = Path(pytestconfig.getoption("--kshim-bin") or Path(opts.build_dir) / "tests" / "kshim")
    for p in ("kshim_echo", "kshim_hostile"):
        if not os.access(d / p, os.X_OK):
            pytest.fail(f"no {d / p}: build the tree (meson compile) or pass --kshim-bin", pytrace=False)
    return d
