# SPDX-License-Identifier: MIT
# Loads the test library's pytest plugin (tests/lib/devemu_testlib/plugin.py) for every Python suite under tests/.
import sys

# No bytecode in the source tree (the VM mounts it read-only; the host keeps it clean).
sys.dont_write_bytecode = True

pytest_plugins = ["devemu_testlib.plugin"]
