# SPDX-License-Identifier: MIT
"""What the soak runs measure of a process and of the kernel: resident memory, open files and
mappings of a pid, slab memory, the kernel shim's module reference count and FUSE mounts left."""

import os


def process_usage(pid):
    """{"rss_kib", "fds", "maps", "threads"} of a live pid."""
    usage = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key == "VmRSS":
                usage["rss_kib"] = int(value.split()[0])
            elif key == "Threads":
                usage["threads"] = int(value)
    usage["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    with open(f"/proc/{pid}/maps") as f:
        usage["maps"] = sum(1 for _ in f)
    return usage


def slab_kib():
    """Slab memory in use (SUnreclaim + SReclaimable) in KiB, from /proc/meminfo."""
    total = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith(("SUnreclaim:", "SReclaimable:")):
                total += int(line.split()[1])
    return total


def module_refcount(module="devemu_kshim"):
    """The module's reference count, None when it is not loaded."""
    try:
        with open(f"/sys/module/{module}/refcnt") as f:
            return int(f.read())
    except FileNotFoundError:
        return None


def fuse_mounts():
    """Mount points of FUSE file systems (devemud's fallback mounts one per device)."""
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if " - fuse" in line]


def kshim_attribute(name, attribute):
    """/sys/class/devemu/NAME/ATTRIBUTE as text (None when the device is not there)."""
    try:
        with open(f"/sys/class/devemu/{name}/{attribute}") as f:
            return f.read().strip()
    except FileNotFoundError:
        return None
