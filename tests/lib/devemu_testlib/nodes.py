# SPDX-License-Identifier: MIT
"""Where a device shows up for a transport, waiting for nodes, and cleaning up after a killed daemon."""

import os
import time

from devemu.daemon import mounted, remove_leftovers  # noqa: F401 (the suites import mounted from here)


class Transport(str):
    """The transport under test ("fuse", "cuse", "kshim", or a list such as "cuse,kshim"), with
    where a device NAME shows up on it. Compares equal to its name."""

    @property
    def name(self):
        return str(self)

    def node(self, dev):
        return f"/dev/{dev}"

    def backing(self, dev):
        """The file whose stat() shows the node's mode and owner: the FUSE mount's file behind the
        /dev symlink, else the character device itself."""
        return f"/run/devemu/{dev}" if self == "fuse" else f"/dev/{dev}"

    def present(self, dev):
        if self == "fuse":
            return os.path.islink(self.node(dev)) and mounted(self.backing(dev))
        return os.path.exists(self.node(dev))

    def gone(self, dev):
        if os.path.lexists(self.node(dev)):
            return False
        return not (self == "fuse" and mounted(self.backing(dev)))


def remove_stale(dev):
    """What a SIGKILLed FUSE-fallback daemon leaves behind (the mount /run/devemu/NAME, the dangling
    /dev/NAME symlink), removed once a test has checked the daemon's own cleanup, so runs do not
    pile up mounts."""
    remove_leftovers(dev)


def wait_for(pred, timeout, what, interval=0.01):
    """pred()'s first true value within timeout seconds, else AssertionError naming what."""
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        time.sleep(interval)


def wait_node(path, timeout=10.0):
    """Waits until path exists; AssertionError if it does not within timeout."""
    return wait_for(lambda: os.path.exists(path), timeout, f"{path} to appear")


def wait_gone(path, timeout=5.0):
    """True once path no longer exists (lexists: a dangling symlink counts as there)."""
    end = time.monotonic() + timeout
    while os.path.lexists(path) and time.monotonic() < end:
        time.sleep(0.01)
    return not os.path.lexists(path)
