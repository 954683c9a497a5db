# SPDX-License-Identifier: MIT
"""Why a suite cannot run here: each function returns a skip reason, or None when the need is met."""

import os

KSHIM_CONTROL = "/dev/devemu-kshim"


def no_root():
    if os.geteuid() != 0:
        return "needs root (devemud creates nodes in /dev and mounts under /run/devemu)"
    return None


def no_fuse():
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse: this kernel has no FUSE (CONFIG_FUSE_FS, modprobe fuse)"
    return None


def no_cuse():
    if not os.path.exists("/dev/cuse"):
        return "no /dev/cuse: this kernel has no CUSE (CONFIG_CUSE, modprobe cuse); try tests/vm/run"
    return None


def no_kshim():
    if not os.path.exists(KSHIM_CONTROL):
        return f"no {KSHIM_CONTROL}: devemu_kshim.ko is not loaded (insmod build/kshim/devemu_kshim.ko)"
    return None


_NEEDS = {"fuse": no_fuse, "cuse": no_cuse, "kshim": no_kshim}


def missing_for(transport):
    """The first reason devemud cannot serve nodes with transport (e.g. "cuse,kshim") here, or None."""
    for check in [no_root] + [_NEEDS[t] for t in str(transport).split(",") if t in _NEEDS]:
        reason = check()
        if reason:
            return reason
    return None
