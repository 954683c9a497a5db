# SPDX-License-Identifier: MIT
# No root needed: devemud, devemuctl, the pytest fixture and devemu-run as an ordinary user (a throwaway one), and what that user must not reach.
"""
Each test runs commands as `devemu-test` (created with useradd when absent; a second user,
`devemu-test2`, plays somebody else) through setpriv, with an XDG_RUNTIME_DIR of its own. The
binaries and the Python package are copied to a directory every user can read first (the checkout
may sit in root's home). FUSE only: on the host that is what a user can mount (fusermount3); CUSE
as a member of the devemu group needs the udev rules and is a VM matter.
"""

import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

USER, OTHER = "devemu-test", "devemu-test2"


def _ensure_user(name):
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    r = subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                        "--shell", "/usr/sbin/nologin", name], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot create the throwaway user {name}: {r.stderr.strip()}")
    return pwd.getpwnam(name)


@pytest.fixture(scope="module")
def users(opts):
    if opts.transport != "fuse":
        pytest.skip("the ordinary-user tests run on the FUSE fallback (the host suite); CUSE needs the "
                    "devemu group's udev rules")
    if os.geteuid() != 0:
        pytest.skip("creating the throwaway user and switching to it needs root")
    for tool in ("setpriv", "useradd", "fusermount3"):
        if not shutil.which(tool) and not shutil.which(tool, path="/usr/sbin:/usr/bin:/sbin:/bin"):
            pytest.skip(f"{tool} is not installed")
    return _ensure_user(USER), _ensure_user(OTHER)


@pytest.fixture(scope="module")
def staged(opts, users):
    """devemud, devemuctl, libdevemu and the Python package where any user can read them, in the
    build tree's layout (devemud finds libdevemu through its $ORIGIN-relative run path)."""
    top = tempfile.mkdtemp(prefix="devemu-noroot-")
    try:
        _stage(opts, top)
        yield top
    finally:
        shutil.rmtree(top, ignore_errors=True)


def _stage(opts, top):
    os.chmod(top, 0o755)
    build = opts.build_dir
    for sub in ("cuse_dev", "core"):
        os.mkdir(os.path.join(top, sub), 0o755)
    for exe in ("devemud", "devemuctl"):
        shutil.copy2(os.path.join(build, "cuse_dev", exe), os.path.join(top, "cuse_dev", exe))
    for entry in os.listdir(os.path.join(build, "core")):
        if entry.startswith("libdevemu.so") and not entry.endswith(".p"):
            src = os.path.join(build, "core", entry)
            dst = os.path.join(top, "core", entry)
            if os.path.islink(src):
                os.symlink(os.readlink(src), dst)
            else:
                shutil.copy2(src, dst)
    shutil.copytree(os.path.join(opts.repo, "python"), os.path.join(top, "python"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    for d, dirs, files in os.walk(top):
        for n in dirs + files:
            p = os.path.join(d, n)
            if not os.path.islink(p):
                os.chmod(p, os.stat(p).st_mode | 0o055)


class Session:
    """One user's commands: its own XDG_RUNTIME_DIR (0700) and the staged tools."""

    def __init__(self, pw, staged, tmp):
        self.pw = pw
        self.staged = staged
        self.runtime = os.path.join(tmp, f"run-{pw.pw_name}")
        os.mkdir(self.runtime, 0o700)
        os.chown(self.runtime, pw.pw_uid, pw.pw_gid)
        self.devemud = os.path.join(staged, "cuse_dev", "devemud")
        self.devemuctl = os.path.join(staged, "cuse_dev", "devemuctl")
        self.procs = []

    @property
    def env(self):
        return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": self.runtime, "USER": self.pw.pw_name,
                "XDG_RUNTIME_DIR": self.runtime, "PYTHONPATH": os.path.join(self.staged, "python"),
                "PYTHONDONTWRITEBYTECODE": "1", "DEVEMUD": self.devemud, "LANG": "C.UTF-8"}

    def argv(self, args):
        return ["setpriv", "--reuid", str(self.pw.pw_uid), "--regid", str(self.pw.pw_gid), "--init-groups",
                "--inh-caps=-all", "--"] + [str(a) for a in args]

    def run(self, args, timeout=60, **kw):
        return subprocess.run(self.argv(args), env=self.env, capture_output=True, text=True, timeout=timeout,
                              cwd=self.runtime, **kw)

    def ctl(self, *args, socket=None):
        return self.run([self.devemuctl] + (["--socket", socket] if socket else []) + list(args), timeout=20)

    @property
    def control(self):
        return os.path.join(self.runtime, "devemu", "control")

    def node(self, name):
        return os.path.join(self.runtime, "devemu", name)

    def start(self, *devices):
        """devemud -f as this user with its default control socket; returns (Popen, log path) once
        every device is listed as serving."""
        log = os.path.join(self.runtime, f"devemud-{len(self.procs)}.log")
        args = [self.devemud, "-f", "--transport", "fuse"]
        for d in devices:
            args += ["--device", d]
        with open(log, "wb") as f:
            p = subprocess.Popen(self.argv(args), env=self.env, stdout=f, stderr=f, stdin=subprocess.DEVNULL,
                                 cwd=self.runtime)
        self.procs.append(p)
        names = [d.split("=")[0] for d in devices]
        end = time.monotonic() + 20
        while time.monotonic() < end:
            if p.poll() is not None:
                pytest.fail(f"devemud as {self.pw.pw_name} exited with {p.returncode}:\n{open(log).read()}")
            r = self.ctl("list", "--json")
            if r.returncode == 0 and all(f'"{n}"' in r.stdout for n in names) and '"serving"' in r.stdout:
                return p, log
            time.sleep(0.1)
        pytest.fail(f"devemud as {self.pw.pw_name} did not serve {names}:\n{open(log).read()}")

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        return [p.returncode for p in self.procs]


def mounted(path):
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


@pytest.fixture
def home():
    """A directory the users can enter (pytest's tmp_path is under root's 0700 base)."""
    top = tempfile.mkdtemp(prefix="devemu-noroot-t-")
    os.chmod(top, 0o755)
    yield top
    shutil.rmtree(top, ignore_errors=True)


@pytest.fixture
def user(users, staged, home):
    s = Session(users[0], staged, home)
    yield s
    s.stop()


@pytest.fixture
def other(users, staged, home):
    s = Session(users[1], staged, home)
    yield s
    s.stop()


def user_dir(user, name):
    """A directory of the user's own next to its runtime dir."""
    d = os.path.join(os.path.dirname(user.runtime), name)
    os.mkdir(d, 0o755)
    os.chown(d, user.pw.pw_uid, user.pw.pw_gid)
    return d


def test_a_users_devemud_serves_its_fuse_node_in_its_runtime_dir_and_says_where(user, svc):
    name = svc.unique("u")
    p, log = user.start(f"{name}=loopback")
    node = user.node(name)
    r = user.ctl("list", "--json")
    assert node in r.stdout, r.stdout
    assert f"serving {node}" in open(log).read(), open(log).read()
    assert mounted(node), f"{node} is not a FUSE mount"
    assert not os.path.lexists(f"/dev/{name}"), "a user's daemon created something in /dev"
    st = os.stat(user.control)
    assert st.st_uid == user.pw.pw_uid and stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
    assert stat.S_IMODE(os.stat(os.path.dirname(node)).st_mode) == 0o700
    r = user.run(["sh", "-c", f"echo hello > {node}; head -n1 {node}"])
    assert r.returncode == 0 and r.stdout == "hello\n", (r.stdout, r.stderr)
    assert user.stop() == [0], open(log).read()
    assert not mounted(node) and not os.path.exists(node), "the mount or its mount point was left behind"


def test_another_user_cannot_reach_a_users_socket_devices_or_nodes(user, other, svc):
    name, theirs = svc.unique("mine"), svc.unique("theirs")
    user.start(f"{name}=loopback")
    # The first user's control socket and node are closed to the second.
    r = other.ctl("list", socket=user.control)
    assert r.returncode != 0 and "Permission denied" in r.stderr, (r.stdout, r.stderr)
    r = other.run(["sh", "-c", f"cat {user.node(name)}"])
    assert r.returncode != 0 and "Permission denied" in r.stderr, (r.stdout, r.stderr)
    # Its own daemon neither lists nor removes the first user's device.
    other.start(f"{theirs}=loopback")
    r = other.ctl("list", "--json")
    assert r.returncode == 0 and theirs in r.stdout and name not in r.stdout, r.stdout
    r = other.ctl("remove", name)
    assert r.returncode != 0 and name in r.stderr, (r.stdout, r.stderr)
    r = user.run(["sh", "-c", f"echo still > {user.node(name)}; head -n1 {user.node(name)}"])
    assert r.stdout == "still\n", (r.stdout, r.stderr)


def test_a_user_cannot_reach_the_system_control_socket(user, devemud, svc):
    """A root daemon's socket (0600 root, in /run/devemu as the system daemon's) refuses the user,
    and the user's devemuctl does not even look there by default."""
    sock = f"/run/devemu/noroot-{os.getpid()}.sock"
    name = svc.unique("sys")
    # devices=[name]: the teardown kills the daemon and must know what mount it leaves behind
    d = devemud(["--device", f"{name}=loopback", "--control", sock], devices=[name], sock=sock)
    assert d is not None
    st = os.stat(sock)
    assert st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
    r = user.ctl("list", socket=sock)
    assert r.returncode != 0 and "Permission denied" in r.stderr, (r.stdout, r.stderr)
    r = user.run(["/usr/bin/python3", "-c", f"import devemu; devemu.Control({sock!r}).list()"])
    assert r.returncode != 0 and "ControlUnreachable" in r.stderr and "Permission denied" in r.stderr, r.stderr
    r = user.ctl("list")  # no daemon of its own: the error names the user's socket, not the system's
    assert r.returncode != 0 and user.control in r.stderr and "/run/devemu/control" not in r.stderr, r.stderr


@pytest.mark.guard(120)
def test_the_pytest_fixture_works_for_an_ordinary_user(user):
    project = Path(user_dir(user, "project"))
    (project / "pytest.ini").write_text("[pytest]\n")
    (project / "test_as_user.py").write_text(f'''
import errno, os, pytest

def test_loopback_as_a_user(devemu):
    assert os.geteuid() == {user.pw.pw_uid}
    port = devemu.device("loopback", capacity="4k")
    assert str(port.path).startswith({user.runtime!r} + "/devemu/"), port.path
    with open(port.path, "r+b", buffering=0) as f:
        f.write(b"hi\\n")
        assert f.read(3) == b"hi\\n"
    port.inject("data", "x")
    assert open(port.path, "rb", buffering=0).read(1) == b"x"
    port.fault("read", errno="EIO", count=1)
    with pytest.raises(OSError) as e:
        open(port.path, "rb").read(1)
    assert e.value.errno == errno.EIO
    second = devemu.device("zero")
    assert open(second.path, "rb").read(4) == bytes(4)
''')
    r = user.run(["/usr/bin/python3", "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "devemu.pytest_plugin",
                  str(project), "--devemu-devemud", user.devemud], timeout=100)
    assert r.returncode == 0 and "1 passed" in r.stdout, r.stdout + r.stderr
    left = os.path.join(user.runtime, "devemu")
    assert not os.path.exists(left) or os.listdir(left) == [], f"the fixture's nodes were left behind: {os.listdir(left)}"


@pytest.mark.guard(90)
@pytest.mark.parametrize("prog", ["sh", "busybox"])
def test_devemu_run_binds_a_node_at_dev_ttyusb0_for_a_users_program(user, svc, prog):
    """Inside devemu-run's user and mount namespaces the node is at /dev/ttyUSB0; the program runs
    as the user (a file it creates is the user's, seen from outside); nothing appears on the host.
    busybox: a static binary, nothing preloaded."""
    if prog == "busybox" and not os.path.exists("/bin/busybox"):
        pytest.skip("busybox-static is not installed")
    if os.path.lexists("/dev/ttyUSB0"):
        pytest.skip("this machine has a /dev/ttyUSB0")
    name = svc.unique("run")
    out = Path(user_dir(user, "out"))
    script = (f"echo hello > /dev/ttyUSB0 && head -n1 /dev/ttyUSB0 && id -u > {out}/uid && "
              f"touch {out}/made && ls /dev/null >/dev/null")
    shell = ["/bin/busybox", "sh"] if prog == "busybox" else ["/bin/sh"]
    r = user.run([os.path.join(user.staged, "python", "bin", "devemu-run"), "--devemud", user.devemud,
                  "--device", f"{name}=loopback", "--bind", f"/dev/ttyUSB0={name}", "--"] + shell + ["-c", script],
                 timeout=60)
    assert r.returncode == 0 and r.stdout == "hello\n", (r.returncode, r.stdout, r.stderr)
    assert (out / "uid").read_text().strip() == str(user.pw.pw_uid)
    assert os.stat(out / "made").st_uid == user.pw.pw_uid, "the program did not run with the user's uid"
    assert not os.path.lexists("/dev/ttyUSB0"), "devemu-run left /dev/ttyUSB0 on the host"
    assert not mounted(user.node(name)) and not os.path.exists(user.node(name)), "the node was left behind"


@pytest.mark.guard(90)
def test_devemu_record_as_a_user(user):
    """devemu-record with a real node the user may open (/dev/null): the program's write is in the trace."""
    out = Path(user_dir(user, "rec"))
    trace = out / "null.trace"
    r = user.run([os.path.join(user.staged, "python", "bin", "devemu-record"), "--devemud", user.devemud,
                  "--device", "/dev/null", "-o", str(trace), "--", "/bin/sh", "-c", "printf recorded > /dev/null"],
                 timeout=60)
    assert r.returncode == 0, (r.stdout, r.stderr)
    text = trace.read_text()
    assert "write" in text and "recorded" in text, text
