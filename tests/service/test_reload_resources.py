# SPDX-License-Identifier: MIT
# SIGHUP with devices that hold resources: checking the re-read options must not touch the running serial far ends.
"""
A reload checks every device's options by building its model once more. The check must acquire
nothing: the running serial devices keep their listening sockets (the unix socket file stays,
a tcp port is not bound twice) and their connected far ends, and each far end is opened once.

Runs on every transport: what passes through the node here is plain read() and write() under
the default (cooked) termios, which the FUSE fallback carries too.
"""

import os
import re
import select
import signal
import socket
import stat
import time

import pytest


def _free_tcp_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def _config(sock, transport, devices):
    text = f'[daemon]\ncontrol = "{sock}"\ntransport = "{transport}"\n'
    for name, options in devices:
        text += f'\n[[device]]\nname = "{name}"\nmodel = "serial"\n[device.options]\n'
        text += "".join(f'{k} = "{v}"\n' for k, v in options.items())
    return text


def _recv_exactly(s, want, timeout=5.0):
    got = b""
    end = time.monotonic() + timeout
    while len(got) < len(want):
        left = end - time.monotonic()
        if left <= 0:
            break
        s.settimeout(left)
        try:
            chunk = s.recv(len(want) - len(got))
        except socket.timeout:
            break
        if not chunk:
            break
        got += chunk
    return got


def _read_exactly(fd, n, timeout=5.0):
    got = b""
    end = time.monotonic() + timeout
    while len(got) < n:
        left = end - time.monotonic()
        if left <= 0:
            break
        r, _, _ = select.select([fd], [], [], left)
        if not r:
            break
        try:
            got += os.read(fd, n - len(got))
        except BlockingIOError:
            continue
    return got


def _exchange(fd, far, tag):
    """Bytes both ways through the node under the default termios (ICANON, ECHO, ONLCR)."""
    out = f"to-far-{tag}\n".encode()
    assert os.write(fd, out) == len(out)
    assert _recv_exactly(far, out.replace(b"\n", b"\r\n")) == out.replace(b"\n", b"\r\n")
    back = f"from-far-{tag}\n".encode()
    far.sendall(back)
    # The line discipline echoes what arrives to the far end, then the node reads the line.
    assert _recv_exactly(far, back.replace(b"\n", b"\r\n")) == back.replace(b"\n", b"\r\n")
    assert _read_exactly(fd, len(back)) == back


def _peer(d, name):
    info = d.ctl_ok("inject", name, "info")
    return dict(kv.split("=", 1) for kv in info.split() if "=" in kv)["peer"]


def _listening_lines(d, far):
    return re.findall(rf"^.*serial far end: listening on {re.escape(far)}$", d.log(), re.M)


@pytest.mark.guard(60)
def test_sighup_keeps_serial_far_ends_listening_and_connected(svc, opts, transport, devemud, tmp_path):
    u, t = svc.unique("hupunix"), svc.unique("huptcp")
    sock = svc.sock_path("hupres")
    unix_path = svc.sock_path("hupfar")
    port = _free_tcp_port()
    devices = [(u, {"far": f"unix:{unix_path}", "pace": "none"}),
               (t, {"far": f"tcp:127.0.0.1:{port}", "pace": "none"})]
    path = tmp_path / "devemud.toml"
    path.write_text(_config(sock, opts.transport, devices))
    d = devemud(["-c", str(path)], [u, t], tag="hupres", sock=sock)

    fds, fars = {}, {}
    try:
        for name in (u, t):
            fds[name] = os.open(f"/dev/{name}", os.O_RDWR | os.O_NONBLOCK)
        fars[u] = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        fars[u].connect(unix_path)
        fars[t] = socket.create_connection(("127.0.0.1", port), timeout=5)
        for name in (u, t):
            svc.wait_for(lambda: _peer(d, name) == "connected", 5, f"{name}: far end connected")
            _exchange(fds[name], fars[name], "start")

        for n in range(1, 4):
            d.signal(signal.SIGHUP)
            d.wait_log(r"SIGHUP: re-reading ", count=n)
            # The reload runs in the signal's handler: a control request after it sees its outcome.
            listed = {x["name"]: x["state"] for x in d.ctl_json("list")["devices"]}
            assert listed == {u: "serving", t: "serving"}
            assert os.path.lexists(unix_path), f"{unix_path} is gone after SIGHUP #{n}"
            assert stat.S_ISSOCK(os.lstat(unix_path).st_mode)
            assert "SIGHUP: keeping the running devices" not in d.log(), d.log()
            assert "SIGHUP: removing" not in d.log(), "an unchanged device was re-created"
            for name in (u, t):
                assert _peer(d, name) == "connected"
                _exchange(fds[name], fars[name], f"hup{n}")

        # The socket file and the port are still the devices' own: a new peer is accepted.
        for name in (u, t):
            fars[name].close()
            svc.wait_for(lambda: _peer(d, name) == "none", 5, f"{name}: far end gone")
        fars[u] = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        fars[u].connect(unix_path)
        fars[t] = socket.create_connection(("127.0.0.1", port), timeout=5)
        for name in (u, t):
            svc.wait_for(lambda: _peer(d, name) == "connected", 5, f"{name}: far end connected again")
            _exchange(fds[name], fars[name], "reconnected")

        # Each far end was opened once: the checks did not listen.
        assert len(_listening_lines(d, f"unix:{unix_path}")) == 1, d.log()
        assert len(_listening_lines(d, f"tcp:127.0.0.1:{port}")) == 1, d.log()

        # An option error in the re-read file names file, line and key; the devices are kept.
        broken = _config(sock, opts.transport, [devices[0], (t, dict(devices[1][1], pace="sometimes"))])
        path.write_text(broken)
        d.signal(signal.SIGHUP)
        m = d.wait_log(r"error: daemon: SIGHUP: keeping the running devices: (.*)$")
        line = broken.splitlines().index('pace = "sometimes"') + 1
        assert m[0] == (f"{path}:{line}: key 'device '{t}'.options.pace': device '{t}': model 'serial': "
                        f"option 'pace=sometimes': expected one of baud|none"), m[0]
        assert d.alive()
        assert stat.S_ISSOCK(os.lstat(unix_path).st_mode)
        for name in (u, t):
            assert transport.present(name)
            _exchange(fds[name], fars[name], "after-error")
        assert len(_listening_lines(d, f"unix:{unix_path}")) == 1, d.log()
        assert len(_listening_lines(d, f"tcp:127.0.0.1:{port}")) == 1, d.log()
    finally:
        for s in fars.values():
            s.close()
        for fd in fds.values():
            os.close(fd)
    d.stop_clean()
    assert not os.path.lexists(unix_path), "the far end's socket file outlived devemud"
