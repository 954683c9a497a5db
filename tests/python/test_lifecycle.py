# SPDX-License-Identifier: MIT
# What the plugin leaves behind and what it says: a pytest run of a user's test file (in a
# subprocess, with -p devemu.pytest_plugin) whose tests pass, fail and ask for what is missing.

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "python"


def quoted(text):
    """Another run's output inside an assertion message, each line behind '| ' so that nothing
    reading this run's output takes the inner summary line for this run's."""
    return "\n".join("| " + line for line in text.splitlines())


def run_pytest(pytestconfig, tmp_path, test_source, *args, transport=True, env=None):
    """pytest on a test file holding test_source, with the plugin given by -p; (CompletedProcess,
    outcome counts)."""
    (tmp_path / "test_user.py").write_text(test_source)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # its own rootdir: no conftest of ours
    argv = [sys.executable, "-m", "pytest", "-p", "devemu.pytest_plugin", "-p", "no:cacheprovider", "-rs",
            str(tmp_path / "test_user.py")]
    devemud = pytestconfig.getoption("--devemu-devemud")
    if devemud and "--devemu-devemud" not in args:
        argv += ["--devemu-devemud", str(pytestconfig.invocation_params.dir / devemud)]
    if transport and pytestconfig.getoption("--devemu-transport"):
        argv += ["--devemu-transport", pytestconfig.getoption("--devemu-transport")]
    run_env = dict(os.environ if env is None else env, PYTHONPATH=str(PACKAGE), PYTHONDONTWRITEBYTECODE="1")
    r = subprocess.run(argv + list(args), cwd=tmp_path, capture_output=True, text=True, timeout=120,
                       stdin=subprocess.DEVNULL, env=run_env)
    counts = {w: int(n) for n, w in re.findall(r"(\d+) (passed|failed|skipped|errors?)\b",
                                                  r.stdout.strip().splitlines()[-1] if r.stdout.strip() else "")}
    return r, counts


USER_TESTS = '''
import json, os

def record(dev, devemu):
    with open("seen.jsonl", "a") as f:
        f.write(json.dumps({"path": dev.path, "name": dev.name, "pid": devemu.daemon.pid}) + "\\n")

def test_passes(devemu):
    dev = devemu.device("loopback")
    record(dev, devemu)
    assert os.path.exists(dev.path)

def test_fails(devemu):
    dev = devemu.device("loopback")
    record(dev, devemu)
    fd = os.open(dev.path, os.O_RDONLY | os.O_NONBLOCK)  # left open: the daemon must go anyway
    assert False, "this test fails on purpose"
'''


def gone(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie is gone for our purposes (its parent, the inner pytest, has exited by now); so is a
    # process reaped between the two looks.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):
        return True


def mounted(path):
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


def test_daemon_and_nodes_are_gone_after_a_passing_and_a_failing_test(pytestconfig, tmp_path):
    r, counts = run_pytest(pytestconfig, tmp_path, USER_TESTS)
    assert counts == {"passed": 1, "failed": 1}, quoted(r.stdout + r.stderr)
    seen = [json.loads(line) for line in (tmp_path / "seen.jsonl").read_text().splitlines()]
    assert len(seen) == 2 and seen[0]["pid"] != seen[1]["pid"], "each test gets its own daemon"
    for s in seen:
        assert gone(s["pid"]), f"devemud {s['pid']} still runs after the test that started it"
        assert not os.path.lexists(s["path"]), f"{s['path']} left behind"
        assert not mounted(f"/run/devemu/{s['name']}"), f"FUSE mount of {s['name']} left behind"
    # The failing test's report shows its daemon's log.
    assert "devemud log" in r.stdout, quoted(r.stdout)
    assert "this test fails on purpose" in r.stdout


def test_a_missing_kernel_feature_fails_with_what_to_configure(pytestconfig, tmp_path):
    if os.path.exists("/dev/cuse"):
        pytest.skip("this kernel has CUSE: nothing is missing to show")
    source = '''
import pytest

@pytest.mark.devemu(transport="cuse")
def test_wants_cuse(devemu):
    devemu.device("loopback")
'''
    r, counts = run_pytest(pytestconfig, tmp_path, source)
    assert counts == {"failed": 1}, quoted(r.stdout + r.stderr)
    assert "no /dev/cuse" in r.stdout and "CONFIG_CUSE" in r.stdout, quoted(r.stdout)
    # --devemu-unavailable skip turns it into a skip with the same reason.
    r, counts = run_pytest(pytestconfig, tmp_path, source, "--devemu-unavailable", "skip")
    assert counts == {"skipped": 1}, quoted(r.stdout + r.stderr)
    assert "no /dev/cuse" in r.stdout, quoted(r.stdout)


def test_the_option_picks_the_transport(pytestconfig, tmp_path):
    if os.path.exists("/dev/cuse"):
        pytest.skip("this kernel has CUSE: nothing is missing to show")
    source = '''
def test_device(devemu):
    devemu.device("zero")
'''
    r, counts = run_pytest(pytestconfig, tmp_path, source, "--devemu-transport", "cuse", transport=False)
    assert counts == {"failed": 1}, quoted(r.stdout + r.stderr)
    assert "no /dev/cuse" in r.stdout, quoted(r.stdout)


def test_devemud_not_found_says_what_to_install(pytestconfig, tmp_path):
    for d in ("/usr/local/sbin", "/usr/sbin", "/usr/local/bin", "/usr/bin"):
        if os.path.exists(os.path.join(d, "devemud")):
            pytest.skip(f"devemud is installed here ({d})")
    source = '''
def test_device(devemu):
    devemu.device("zero")
'''
    env = {k: v for k, v in os.environ.items() if k != "DEVEMUD"}
    env["PATH"] = "/usr/bin:/bin"
    r, counts = run_pytest(pytestconfig, tmp_path, source, "--devemu-devemud", "", env=env)
    assert counts == {"failed": 1}, quoted(r.stdout + r.stderr)
    assert "devemud not found" in r.stdout and "meson install" in r.stdout, quoted(r.stdout)


def test_a_killed_test_run_does_not_leave_its_daemon_behind(pytestconfig, tmp_path):
    (tmp_path / "test_user.py").write_text(USER_TESTS.replace("assert False", "import time; time.sleep(60)"))
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    argv = [sys.executable, "-m", "pytest", "-p", "devemu.pytest_plugin", "-p", "no:cacheprovider",
            str(tmp_path / "test_user.py")]
    devemud = pytestconfig.getoption("--devemu-devemud")
    if devemud:
        argv += ["--devemu-devemud", str(pytestconfig.invocation_params.dir / devemud)]
    if pytestconfig.getoption("--devemu-transport"):
        argv += ["--devemu-transport", pytestconfig.getoption("--devemu-transport")]
    env = dict(os.environ, PYTHONPATH=str(PACKAGE), PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.Popen(argv, cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)
    seen_file = tmp_path / "seen.jsonl"
    try:
        deadline = time.monotonic() + 60
        while len(seen_file.read_text().splitlines() if seen_file.exists() else []) < 2:
            assert proc.poll() is None and time.monotonic() < deadline, "the inner run did not reach its second test"
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()
    seen = json.loads(seen_file.read_text().splitlines()[1])
    deadline = time.monotonic() + 15
    while not (gone(seen["pid"]) and not os.path.lexists(seen["path"])) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gone(seen["pid"]), f"devemud {seen['pid']} still runs after its test run was killed"
    assert not os.path.lexists(seen["path"]), f"{seen['path']} left behind"
    assert not mounted(f"/run/devemu/{seen['name']}")
