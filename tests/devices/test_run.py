# SPDX-License-Identifier: MIT
# devemu-run and devemu-record: nodes at the paths programs expect, in a private mount namespace, for static
# binaries and scripts; exit status passed through; nothing left behind; recording at a real node's path.

import os
import signal
import sys

import pytest

from devemu_testlib import run, unique

from test_replay import Modem

BIN = os.path.join(os.path.dirname(__file__), "..", "..", "python", "bin")
# A path no host has: the node exists only inside the run's namespace.
TTY = "/dev/ttyDEVEMU-TEST0"


@pytest.fixture
def devemu_run(opts, transport):
    """devemu_run(*args, tool="run") -> CompletedProcess of devemu-TOOL --transport T --devemud D ARGS."""
    if os.geteuid() != 0:
        pytest.skip("devemu-run needs root (a mount namespace, devemud's nodes)")

    def go(*args, tool="run", timeout=60):
        return run([sys.executable, os.path.join(BIN, f"devemu-{tool}"), "--transport", transport,
                    "--devemud", opts.devemud, *args], timeout=timeout)
    return go


def mounts():
    with open("/proc/self/mountinfo") as f:
        return sorted(line.split()[4] for line in f)


def test_a_static_busybox_finds_the_node_at_a_path_the_host_does_not_have(devemu_run):
    assert not os.path.lexists(TTY)
    before = mounts()
    name = unique("lo")
    r = devemu_run("--device", f"{name}=loopback", "--bind", f"{TTY}={name}", "--",
                   "busybox", "sh", "-c", f"echo hello > {TTY} && busybox dd if={TTY} bs=6 count=1 2>/dev/null "
                   f"&& busybox cat /proc/self/mountinfo | busybox grep -c ' {TTY} '")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "hello\n1\n", r
    # Nothing of it outside: no node at the path, no mount, devemud's own node gone.
    assert not os.path.lexists(TTY)
    assert not os.path.lexists(f"/dev/{name}")
    assert mounts() == before


def test_the_programs_exit_status_and_a_killing_signal_are_passed_through(devemu_run):
    name = unique("lo")
    r = devemu_run("--device", f"{name}=zero", "--bind", f"{TTY}={name}", "--", "busybox", "sh", "-c", "exit 7")
    assert r.returncode == 7, r.stderr
    r = devemu_run("--device", f"{name}=zero", "--bind", f"{TTY}={name}", "--",
                   "busybox", "sh", "-c", "kill -TERM $$")
    assert r.returncode == 128 + signal.SIGTERM, r.stderr
    r = devemu_run("--device", f"{name}=zero", "--", "/nonexistent/prog")
    assert r.returncode == 127 and "/nonexistent/prog: command not found" in r.stderr, r
    r = devemu_run("--device", f"{name}=zero", "--bind", f"{TTY}=other", "--", "true")
    assert r.returncode == 125 and "no --device named 'other'" in r.stderr, r
    r = devemu_run("--device", f"{name}=nosuchmodel", "--", "true")
    assert r.returncode == 125 and "devemud did not start" in r.stderr and "nosuchmodel" in r.stderr, r


def test_a_shell_script_reads_an_umockdev_script_replay_in_a_directory_the_host_lacks(devemu_run, tmp_path):
    script = tmp_path / "modem.script"
    script.write_text("w 0 AT^M\nr 10 OK^M^J\n")
    prog = tmp_path / "talk.sh"
    prog.write_text("#!/bin/sh\nset -e\nnode=/dev/devemu-test-dir/modem0\nprintf 'AT\\r' > $node\n"
                    "head -c 4 $node | od -An -c\nls /dev/devemu-test-dir\n")
    prog.chmod(0o755)
    name = unique("um")
    r = devemu_run("--device", f"{name}=replay,script={script}", "--bind", f"/dev/devemu-test-dir/modem0={name}",
                   "--", str(prog))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["O", "K", "\\r", "\\n", "modem0"], r
    assert not os.path.lexists("/dev/devemu-test-dir")


RECORDED_CLIENT = r"""
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_NOCTTY)
for cmd in (b"AT\r", b"ATI\r"):
    os.write(fd, cmd)
    reply = b""
    while not reply.endswith(b"\r\n"):
        reply += os.read(fd, 64)
    print(repr(reply))
"""


def test_devemu_record_records_a_program_at_the_real_nodes_path_and_the_trace_replays(devemu_run, tmp_path):
    client = tmp_path / "client.py"
    client.write_text(RECORDED_CLIENT)
    trace = tmp_path / "modem.trace"
    modem = Modem()
    try:
        # The program opens the real pty's path; inside its namespace a recording passthrough sits there.
        r = devemu_run("--device", modem.path, "-o", str(trace), "--", sys.executable, str(client), modem.path,
                       tool="record")
        assert r.returncode == 0, r.stderr
        assert f"trace written to {trace}" in r.stderr
    finally:
        modem.close()
    live = r.stdout
    assert live == "b'OK\\r\\n'\nb'devemu modem 1\\r\\n'\n", live
    text = trace.read_text()
    assert 'write 0 ' in text and 'data="ATI\\r" result=4' in text, text

    name = unique("rp")
    r = devemu_run("--device", f"{name}=replay,trace={trace},speed=0", "--bind", f"{TTY}={name}", "--",
                   sys.executable, str(client), TTY)
    assert r.returncode == 0, r.stderr
    assert r.stdout == live
