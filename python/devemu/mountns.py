# SPDX-License-Identifier: MIT
"""A private mount namespace in which device nodes appear at the paths a program expects.

enter(binds) is called in a forked child before exec: it unshares the mount namespace, makes
every mount a slave of the host's (nothing mounted here propagates back), and bind-mounts each
node onto its path. A path that does not exist gets a mount point in a private tmpfs laid over
the nearest existing directory, which mirrors that directory's entries (bind mounts of each, the
symlinks recreated), so nothing is ever created on the host and two runs never collide on a name.

Run by an ordinary user, the mount namespace sits in a user namespace of its own that maps only
the user's uid and gid onto themselves (no root inside, no other ids): the program runs with the
user's own uid as seen from outside and gets no privilege, while the namespace may mount. Its
supplementary groups are dropped (setgroups is denied: the kernel's rule for such a mapping).
Standard library only (ctypes for unshare(2) and mount(2)): Python 3.11 has no os.unshare.
"""

import ctypes
import errno
import os
import stat

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
MS_NOSUID = 0x2
MS_BIND = 0x1000
MS_REC = 0x4000
MS_SLAVE = 0x80000

_libc = ctypes.CDLL(None, use_errno=True)


class MountError(Exception):
    """The namespace could not be set up; str() says which path and why."""


def _check(ret, what):
    if ret != 0:
        err = ctypes.get_errno()
        raise MountError(f"{what}: {os.strerror(err)}" + (
            " (devemu-run needs root, or user namespaces for an ordinary user)" if err == errno.EPERM else ""))


def _mount(source, target, fstype, flags, data=None):
    _check(_libc.mount(source.encode() if source else None, target.encode(), fstype.encode() if fstype else None,
                       ctypes.c_ulong(flags), data.encode() if data else None),
           f"mount {source or fstype} on {target}")


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


def unshare_user():
    """An ordinary user: a user namespace mapping only our uid and gid to themselves, so that the
    mount namespace created with it is ours to change and the program keeps its identity."""
    uid, gid = os.geteuid(), os.getegid()
    if _libc.unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0:
        err = ctypes.get_errno()
        hint = ""
        if err in (errno.EPERM, errno.ENOSPC, errno.EINVAL):
            hint = (" (an ordinary user needs unprivileged user namespaces: sysctl user.max_user_namespaces > 0"
                    " and, on kernels that have it, kernel.unprivileged_userns_clone=1; or run as root)")
        raise MountError(f"unshare(CLONE_NEWUSER|CLONE_NEWNS): {os.strerror(err)}{hint}")
    try:
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"{uid} {uid} 1\n")
        _write("/proc/self/gid_map", f"{gid} {gid} 1\n")
    except OSError as e:
        raise MountError(f"cannot map uid {uid} and gid {gid} in the user namespace: {e.strerror}") from None


def unshare_mounts():
    """A mount namespace of our own whose mounts receive the host's but never send ours back
    (inside a user namespace of our own when not root)."""
    if os.geteuid() == 0:
        _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    else:
        unshare_user()
    _mount(None, "/", None, MS_REC | MS_SLAVE)


class Namespace:
    """The binds made so far in this (already unshared) namespace: which directories are ours."""

    def __init__(self):
        self.shadowed = set()  # directories covered by a private tmpfs

    def shadow(self, directory, skip=None):
        """Lays a private tmpfs over directory holding what it held: each entry bind-mounted from the
        covered directory (reached through an O_PATH descriptor), symlinks recreated. skip: an entry
        left out (a symlink the caller replaces)."""
        st = os.stat(directory)
        fd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            entries = os.listdir(directory)
            options = f"mode={stat.S_IMODE(st.st_mode):o},size=1m"
            if os.geteuid() == 0:
                # In a user's namespace only the user's ids exist: the tmpfs is the user's then.
                options += f",uid={st.st_uid},gid={st.st_gid}"
            _mount("tmpfs", directory, "tmpfs", MS_NOSUID, options)
            for name in entries:
                if name == skip:
                    continue
                old, new = f"/proc/self/fd/{fd}/{name}", os.path.join(directory, name)
                try:
                    mode = os.lstat(old).st_mode
                    if stat.S_ISLNK(mode):
                        os.symlink(os.readlink(old), new)
                        continue
                    if stat.S_ISDIR(mode):
                        os.mkdir(new)
                    else:
                        os.close(os.open(new, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
                    _mount(old, new, None, MS_BIND | MS_REC)
                except (OSError, MountError):
                    pass  # gone meanwhile, or not mountable: the mirror lacks it, the program will say
        finally:
            os.close(fd)
        self.shadowed.add(os.path.realpath(directory))

    def bind(self, node, path):
        """Makes node (a character device, or the FUSE fallback's file) appear at path."""
        path = os.path.abspath(path)
        if os.path.lexists(path) and not os.path.islink(path):
            if os.path.isdir(path):
                raise MountError(f"{path} is a directory: a device node goes on a file path")
            _mount(node, path, None, MS_BIND)
            return
        # Missing (or a symlink, replaced): make a mount point in a private tmpfs over the nearest
        # existing directory, and the missing directories inside it.
        missing, parent = [os.path.basename(path)], os.path.dirname(path)
        while not os.path.lexists(parent):
            missing.insert(0, os.path.basename(parent))
            parent = os.path.dirname(parent)
        parent = os.path.realpath(parent)
        if not os.path.isdir(parent):
            raise MountError(f"cannot place {path}: {parent} is not a directory")
        if parent not in self.shadowed:
            self.shadow(parent, skip=missing[0] if len(missing) == 1 else None)
        elif len(missing) == 1 and os.path.lexists(os.path.join(parent, missing[0])):
            os.unlink(os.path.join(parent, missing[0]))  # a symlink in our own tmpfs
        here = parent
        for name in missing[:-1]:
            here = os.path.join(here, name)
            os.mkdir(here, 0o755)
            self.shadowed.add(here)  # inside our tmpfs: entries may be added freely
        target = os.path.join(here, missing[-1])
        os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
        _mount(node, target, None, MS_BIND)


def enter(binds):
    """In the child, before exec: a private mount namespace with each (node, path) of binds in place."""
    unshare_mounts()
    ns = Namespace()
    for node, path in binds:
        ns.bind(node, path)
