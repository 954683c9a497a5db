# SPDX-License-Identifier: MIT
# Loads the devemu pytest plugin the way a user's conftest.py does.
import sys

import pytest

sys.dont_write_bytecode = True  # no __pycache__ in the source tree

pytest_plugins = ["devemu.pytest_plugin"]


@pytest.fixture
def devemud_path(pytestconfig):
    """The devemud the plugin runs (--devemu-devemud), for tests that start a Daemon themselves."""
    path = pytestconfig.getoption("--devemu-devemud")
    if not path:
        import devemu
        try:
            path = devemu.find_devemud()
        except devemu.Unavailable as e:
            pytest.skip(str(e))
    return path
