# SPDX-License-Identifier: MIT
# Loads the test library's pytest plugin (tests/lib/devemu_testlib/plugin.py) for every Python suite under tests/.
pytest_plugins = ["devemu_testlib.plugin"]
