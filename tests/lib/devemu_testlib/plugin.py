# SPDX-License-Identifier: MIT
"""The pytest plugin every devemu suite loads (tests/conftest.py): the common options, the per-test
timeout guard, the kernel-log check, the daemon health check, daemon logs in failure reports, and
the end-of-run cleanup. Fixtures: opts, transport, abi, default_test_timeout (a suite overrides it)."""

import pytest

from . import abi as abi_mod
from . import daemon, guard, processes
from .kernel_log import KernelLog
from .options import Options, add_common
from devemu.daemon import sanitizer_report


def pytest_addoption(parser):
    add_common(parser)


def pytest_configure(config):
    config.addinivalue_line("markers", "guard(seconds): this test's timeout guard (a number, or a function of the "
                                       "pytest config), scaled like --test-timeout over the suite's default")
    config.addinivalue_line("markers", "kills_daemon: the test stops daemons on purpose (no health check)")


@pytest.fixture(scope="session")
def opts(pytestconfig):
    return Options(pytestconfig)


@pytest.fixture(scope="session")
def transport(opts):
    """The transport under test, a str ("fuse", "cuse", "kshim") with node(), backing(), present(), gone()."""
    return opts.transport


@pytest.fixture(scope="session")
def abi(opts):
    """The devemu ABI from the uapi header (devemu_testlib.abi)."""
    return abi_mod.load(opts.build_dir)


@pytest.fixture(scope="session")
def default_test_timeout():
    """Seconds a test may take unless marked guard(N); each suite's conftest sets its own."""
    return 60.0


@pytest.fixture(autouse=True)
def _guard(request, opts, default_test_timeout):
    scale = opts.test_timeout / default_test_timeout if opts.test_timeout else 1.0
    seconds = opts.test_timeout or default_test_timeout
    marker = request.node.get_closest_marker("guard")
    if marker:
        arg = marker.args[0]
        seconds = float(arg(request.config) if callable(arg) else arg) * scale
    with guard.test_guard(seconds):
        yield


@pytest.fixture(scope="session")
def _kernel_log(opts):
    if not opts.check_dmesg:
        yield None
        return
    log = KernelLog()
    yield log
    log.close()


@pytest.fixture(autouse=True)
def _kernel_log_clean(_kernel_log):
    """With --check-dmesg: the kernel logged no warning, BUG or oops while the test ran."""
    if _kernel_log is None:
        yield
        return
    _kernel_log.new_lines()
    yield
    bad = _kernel_log.problems()
    if bad:
        pytest.fail("the kernel logged during this test:\n" + "\n".join(bad[:50]), pytrace=False)


@pytest.fixture(autouse=True)
def _daemon_health(request):
    """A daemon that was running when the test started and died during it fails the test (unless
    the test is marked kills_daemon, or the timeout guard killed it)."""
    before = [d for d in daemon.DAEMONS if d.alive()]
    yield
    if request.node.get_closest_marker("kills_daemon"):
        return
    for d in before:
        if d.proc.poll() is not None and d.proc.pid not in processes.killed_by_guard:
            pytest.fail(f"devemud ({d.tag}) exited with {d.proc.returncode} during this test; its log ends:\n"
                        f"{d.log_tail(4000)}", pytrace=False)


def _sanitizer_failure(marks):
    """The sanitizer reports daemons printed since marks ({id: log size}), as one message, or None."""
    found = list(daemon.SANITIZER_REPORTS)
    daemon.SANITIZER_REPORTS.clear()
    for d in daemon.DAEMONS:
        text = d.log()
        start = marks.get(id(d), 0)
        report = sanitizer_report(text[start:] if start <= len(text) else text)
        if report:
            found.append((d.tag, report))
    if not found:
        return None
    return "\n".join(f"devemud ({tag}) printed a sanitizer report:\n{report[:8000]}" for tag, report in found)


@pytest.fixture(autouse=True)
def _sanitizer_clean():
    """In a sanitized build (-Db_sanitize=address,undefined): a daemon that printed an
    AddressSanitizer, LeakSanitizer or UBSan report while the test ran (or when it was stopped at
    the test's end) fails the test."""
    daemon.SANITIZER_REPORTS.clear()
    marks = {id(d): d.log_size() for d in daemon.DAEMONS}
    yield
    failure = _sanitizer_failure(marks)
    if failure:
        pytest.fail(failure, pytrace=False)


@pytest.fixture(scope="session", autouse=True)
def _end_of_run():
    yield
    for d in list(daemon.DAEMONS):
        d.cleanup()
    processes.kill_all()
    failure = _sanitizer_failure({})
    if failure:
        pytest.fail("at the end of the run: " + failure, pytrace=False)


_log_marks = pytest.StashKey()


def pytest_runtest_setup(item):
    item.stash[_log_marks] = {id(d): d.log_size() for d in daemon.DAEMONS}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failing test shows what the daemons logged while it ran."""
    outcome = yield
    rep = outcome.get_result()
    if not rep.failed or call.when == "teardown":
        return
    marks = item.stash.get(_log_marks, {})
    for d in daemon.DAEMONS:
        text = d.log()
        start = marks.get(id(d), 0)
        part = text[start:] if start <= len(text) else text
        if len(part) > 20000:
            part = "[...]\n" + part[-20000:]
        state = "running" if d.alive() else f"exited with {d.proc.returncode}" if d.proc else "not started"
        rep.sections.append((f"devemud log ({d.tag}, {state}) during this test", part or "(nothing)"))


def require_daemon(opts, transport=None):
    """Skips the test, with the reason, where devemud cannot serve nodes (no root, no /dev/cuse...)."""
    reason = daemon.skip_reason(opts, transport)
    if reason:
        pytest.skip(reason)
