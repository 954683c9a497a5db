# SPDX-License-Identifier: MIT
"""devemu from Python: drive devemud from tests and scripts.

    Error          every devemu error; .message is the daemon's own text where it gave one
    Control        a client for a devemud's control socket (list, stats, add, remove, inject, fault);
                   by default this user's daemon's (default_path(): root's /run/devemu/control, a
                   user's $XDG_RUNTIME_DIR/devemu/control)
    ControlError   the daemon refused a request; .message is its own text
    Daemon         a private devemud with given devices: start, wait for its nodes, stop
    DaemonError    devemud did not start; Unavailable: it cannot run here (says what is missing)
    pytest_plugin  the `devemu` fixture (pytest -p devemu.pytest_plugin)
"""

from .control import (DEFAULT_PATH, PROTOCOL_VERSION, Control, ControlError, ControlUnreachable, Error, default_path,
                      device_spec, runtime_dir)
from .daemon import Daemon, DaemonError, Unavailable, default_transport, find_devemud, missing

__all__ = ["Error", "Control", "ControlError", "ControlUnreachable", "Daemon", "DaemonError", "Unavailable",
           "DEFAULT_PATH", "PROTOCOL_VERSION", "default_path", "default_transport", "device_spec", "find_devemud",
           "missing", "runtime_dir"]
