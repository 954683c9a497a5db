# SPDX-License-Identifier: MIT
# The serial model against real clients: stty, python3-serial, termios from Python, sockets and a pty at the far end.

import errno
import fcntl
import os
import re
import select
import socket
import struct
import subprocess
import termios
import threading
import time

import pytest

from devemu_testlib import unique

serial = pytest.importorskip("serial", reason="python3-serial (pyserial) is not installed")


@pytest.fixture(autouse=True)
def _needs_termios(transport):
    if transport == "fuse":
        pytest.skip("termios ioctls (TCGETS...) have no size encoded: they need CUSE or the kernel shim, "
                    "the FUSE fallback answers ENOTTY")


def info(d, name):
    """devemuctl inject NAME info, as a dict."""
    text = d.inject(name, "info")
    return dict(kv.split("=", 1) for kv in text.split() if "=" in kv)


def serve(devemud, spec="serial", stem="ser"):
    name = unique(stem)
    d = devemud((name, spec))
    return d, name, d.node(name)


def stty(*args, check=True):
    r = subprocess.run(["stty", *args], capture_output=True, text=True, timeout=30)
    if check:
        assert r.returncode == 0, f"stty {' '.join(args)}: {r.returncode} {r.stderr}"
    return r


def read_exactly(port, n, deadline=10.0):
    got = b""
    end = time.monotonic() + deadline
    while len(got) < n and time.monotonic() < end:
        got += port.read(n - len(got))
    return got


# ---------------------------------------------------------------------------------------------
# stty
# ---------------------------------------------------------------------------------------------

def test_stty_reads_the_defaults(devemud):
    d, name, node = serve(devemud)
    out = stty("-F", node).stdout
    assert re.search(r"^speed 9600 baud;", out, re.M), out
    full = stty("-F", node, "-a").stdout
    for word in ("cs8", "cread", "clocal", "hupcl", "icanon", "echo", "icrnl", "ixon", "opost", "onlcr"):
        assert re.search(rf"(?<![-\w]){word}\b", full), f"{word} missing in:\n{full}"
    for word in ("parenb", "cstopb", "crtscts"):
        assert f"-{word}" in full, full
    assert "rows 0; columns 0;" in full
    assert re.search(r"intr = \^C;", full) and re.search(r"eof = \^D;", full)


def test_stty_sets_speed_raw_and_echo_and_reads_them_back(devemud):
    d, name, node = serve(devemud)
    r = stty("-F", node, "115200", "raw", "-echo")
    assert r.stderr == ""
    full = stty("-F", node, "-a").stdout
    assert re.search(r"^speed 115200 baud;", full, re.M), full
    for word in ("-icanon", "-echo", "-opost", "-icrnl", "-ixon", "-isig", "min = 1;", "time = 0;"):
        assert word in full, f"{word} missing in:\n{full}"
    i = info(d, name)
    assert i["divisor"] == "1" and i["baud"] == "115200"


def test_stty_frame_settings_program_the_line_control_register(devemud):
    d, name, node = serve(devemud)
    stty("-F", node, "300", "cs7", "parenb", "-parodd", "cstopb")
    full = stty("-F", node, "-a").stdout
    assert re.search(r"^speed 300 baud;", full, re.M)
    assert re.search(r"(?<![-\w])cs7\b", full) and re.search(r"(?<![-\w])parenb\b", full)
    assert "-parodd" in full and re.search(r"(?<![-\w])cstopb\b", full)
    i = info(d, name)
    assert (i["divisor"], i["data"], i["parity"], i["stop"]) == ("384", "7", "even", "2")
    stty("-F", node, "19200", "cs8", "-parenb", "-cstopb", "crtscts")
    i = info(d, name)
    assert (i["divisor"], i["data"], i["parity"], i["stop"]) == ("6", "8", "none", "1")
    assert "crtscts" in stty("-F", node, "-a").stdout.replace("-crtscts", "")


def test_stty_above_the_uart_limit_is_refused_like_a_real_16550A(devemud):
    # 1.8432 MHz / 16 = 115200: the 8250 driver keeps the old speed and stty notices the difference.
    d, name, node = serve(devemud)
    stty("-F", node, "57600")
    r = stty("-F", node, "230400", check=False)
    assert r.returncode != 0 and "unable to perform all requested operations" in r.stderr, r
    assert re.search(r"^speed 57600 baud;", stty("-F", node).stdout, re.M)
    # With a faster crystal the same speed is fine.
    d2, name2, node2 = serve(devemud, "serial,clock=14745600", "serfast")
    stty("-F", node2, "230400")
    assert re.search(r"^speed 230400 baud;", stty("-F", node2).stdout, re.M)
    assert info(d2, name2)["divisor"] == "4"


# ---------------------------------------------------------------------------------------------
# python3-serial
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("baud", [9600, 115200])
def test_pyserial_loopback_round_trip(devemud, baud, request):
    d, name, node = serve(devemud)
    with serial.Serial(node, baud, bytesize=8, parity="N", stopbits=1, timeout=3) as port:
        assert port.in_waiting == 0
        payload = b"hello over the wire\n" if baud == 9600 else bytes(range(256)) * 4
        assert port.write(payload) == len(payload)
        port.flush()  # tcdrain: returns when the UART has shifted it all out
        assert port.out_waiting == 0
        assert read_exactly(port, len(payload)) == payload
        assert port.in_waiting == 0
    i = info(d, name)
    assert i["baud"] == str(baud)
    assert (i["data"], i["parity"], i["stop"]) == ("8", "none", "1")


def test_raw_bytes_stream_through_the_kernel_shims_fifos(devemud, transport):
    """In raw mode (pyserial's VMIN 1, VTIME 0) the kernel shim serves reads and writes from its
    stream FIFOs, in the kernel; TIOCOUTQ and tcdrain still see the bytes waiting there, and a
    canonical read goes to the line discipline by request, one line at a time."""
    d, name, node = serve(devemud)
    with serial.Serial(node, 115200, timeout=3) as port:
        payload = bytes(range(256)) * 16
        assert port.write(payload) == len(payload)
        assert port.out_waiting > 0  # 4 KiB at 115200 baud take 0.36 s to leave
        port.flush()
        assert port.out_waiting == 0
        assert read_exactly(port, len(payload)) == payload
        ops = d.stats(name)["operations"]
        if transport == "kshim":
            assert ops["read"]["in_kernel"] == ops["read"]["requests"] > 0, ops["read"]
            assert ops["write"]["in_kernel"] == ops["write"]["requests"] > 0, ops["write"]
        else:
            assert ops["read"]["in_kernel"] == ops["write"]["in_kernel"] == 0
        attrs = termios.tcgetattr(port.fd)
        attrs[3] |= termios.ICANON
        termios.tcsetattr(port.fd, termios.TCSANOW, attrs)
        d.inject(name, "data", "a line\\nnext\\n")
        r, _, _ = select.select([port.fd], [], [], 5)
        assert r
        assert os.read(port.fd, 100) == b"a line\n"
        assert os.read(port.fd, 100) == b"next\n"
        after = d.stats(name)["operations"]["read"]
        assert after["in_kernel"] == ops["read"]["in_kernel"]  # by request, from the line discipline
        assert after["requests"] == ops["read"]["requests"] + 2


def test_pyserial_custom_speed_is_rounded_to_the_divisor(devemud):
    d, name, node = serve(devemud)
    with serial.Serial(node, 1234, timeout=2) as port:  # pyserial uses TCSETS2 with BOTHER
        buf = bytearray(64)
        fcntl.ioctl(port.fd, 0x802C542A, buf)  # TCGETS2
        cflag, ospeed = struct.unpack_from("I", buf, 8)[0], struct.unpack_from("I", buf, 40)[0]
        assert cflag & 0o10017 == 0o10000  # BOTHER
        assert ospeed == 1843200 // (16 * 93)
        port.write(b"odd")
        assert read_exactly(port, 3) == b"odd"
    assert info(d, name)["divisor"] == "93"


def test_pyserial_reads_modem_lines_set_by_inject(devemud):
    d, name, node = serve(devemud)
    with serial.Serial(node, 9600, timeout=1) as port:
        assert (port.cts, port.dsr, port.cd, port.ri) == (True, True, True, False)
        d.inject(name, "modem", "cts=0", "dsr=1", "dcd=0", "ri=1")
        assert (port.cts, port.dsr, port.cd, port.ri) == (False, True, False, True)
        d.inject(name, "modem", "cts=1", "ri=0")
        assert (port.cts, port.dsr, port.cd, port.ri) == (True, True, False, False)


def test_pyserial_dtr_rts_are_seen_by_the_far_end(devemud):
    d, name, node = serve(devemud)
    with serial.Serial(node, 9600, timeout=1) as port:
        i = info(d, name)
        assert (i["dtr"], i["rts"]) == ("1", "1")
        port.dtr = False
        assert (info(d, name)["dtr"], info(d, name)["rts"]) == ("0", "1")
        port.rts = False
        assert info(d, name)["rts"] == "0"
        port.dtr = True
        assert info(d, name)["dtr"] == "1"
        assert info(d, name)["mcr"] == "0x09"  # DTR | OUT2
    # HUPCL: the last close drops both
    assert (info(d, name)["dtr"], info(d, name)["rts"]) == ("0", "0")


def test_pyserial_break_both_ways(devemud, request):
    d, name, node = serve(devemud)
    with serial.Serial(node, 9600, timeout=2) as port:
        d.inject(name, "break")
        assert port.read(1) == b"\x00"
        port.send_break(0.1)  # TIOCSBRK, sleep, TIOCCBRK: the loopback plug brings it back
        assert port.read(1) == b"\x00"
    buf = bytearray(80)
    with serial.Serial(node, 9600) as port:
        fcntl.ioctl(port.fd, 0x545D, buf)  # TIOCGICOUNT
    # counters live with the port: a fresh open still shows the two breaks (brk is the 10th int)
    assert struct.unpack_from("11i", buf)[9] == 2


def test_tcp_far_end_exchanges_bytes_both_ways(devemud):
    d, name, node = serve(devemud, "serial,far=tcp:0", "sertcp")
    far = info(d, name)["far"]
    m = re.fullmatch(r"tcp:127\.0\.0\.1:(\d+)", far)
    assert m, far
    assert f"listening on {far}" in d.log()
    with serial.Serial(node, 115200, timeout=3) as port, \
            socket.create_connection(("127.0.0.1", int(m.group(1))), timeout=5) as peer:
        for _ in range(100):
            if info(d, name)["peer"] == "connected":
                break
            time.sleep(0.05)
        peer.sendall(b"from the far end")
        assert read_exactly(port, 16) == b"from the far end"
        port.write(b"to the far end")
        got = b""
        while len(got) < 14:
            got += peer.recv(64)
        assert got == b"to the far end"
        i = info(d, name)
        assert (i["dtr"], i["rts"]) == ("1", "1")


def test_unix_far_end(devemud, tmp_path):
    path = str(tmp_path / "far.sock")
    d, name, node = serve(devemud, f"serial,far=unix:{path}", "serunix")
    with serial.Serial(node, 38400, timeout=3) as port, socket.socket(socket.AF_UNIX) as peer:
        peer.settimeout(5)
        peer.connect(path)
        time.sleep(0.2)
        peer.sendall(b"ping")
        assert read_exactly(port, 4) == b"ping"
        port.write(b"pong")
        got = b""
        while len(got) < 4:
            got += peer.recv(16)
        assert got == b"pong"


def test_pty_far_end(devemud):
    d, name, node = serve(devemud, "serial,far=pty", "serpty")
    far = info(d, name)["far"]
    assert far.startswith("pty:/dev/pts/"), far
    slave = far[4:]
    assert f"pty {slave}" in d.log()
    fd = os.open(slave, os.O_RDWR | os.O_NOCTTY)
    try:
        with serial.Serial(node, 57600, timeout=3) as port:
            os.write(fd, b"typed on the pty")
            assert read_exactly(port, 16) == b"typed on the pty"
            port.write(b"shown on the pty")
            got = b""
            end = time.monotonic() + 5
            while len(got) < 16 and time.monotonic() < end:
                r, _, _ = select.select([fd], [], [], 1)
                if r:
                    got += os.read(fd, 64)
            assert got == b"shown on the pty"
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------
# termios from Python: line discipline, VMIN/VTIME, errnos
# ---------------------------------------------------------------------------------------------

def test_canonical_read_returns_one_line(devemud):
    d, name, node = serve(devemud)
    stty("-F", node, "-echo")  # cooked, no echo (a loopback plug would bounce echoes forever)
    fd = os.open(node, os.O_RDWR | os.O_NOCTTY)
    try:
        d.inject(name, "data", "first line\\r\\nsecond\\x7fD line\\n")  # CR->NL, erase, NL
        r, _, _ = select.select([fd], [], [], 5)
        assert r
        assert os.read(fd, 100) == b"first line\n"
        assert os.read(fd, 100) == b"\n"  # the \r became \n: an empty line
        assert os.read(fd, 100) == b"seconD line\n"
        d.inject(name, "data", "\\x04")
        assert os.read(fd, 100) == b""  # EOF at the start of a line
    finally:
        os.close(fd)


def test_a_waiting_raw_read_follows_a_switch_to_canonical_mode(devemud):
    """A read blocked on a raw port (on the kernel shim: in the kernel, on the empty receive FIFO)
    answers as the line discipline says once another program turns ICANON on: it waits for the
    whole line."""
    d, name, node = serve(devemud)
    stty("-F", node, "raw", "-echo")
    fd = os.open(node, os.O_RDWR | os.O_NOCTTY)
    try:
        got = []
        reader = threading.Thread(target=lambda: got.append(os.read(fd, 100)), daemon=True)
        reader.start()
        time.sleep(0.5)
        stty("-F", node, "icanon")
        d.inject(name, "data", "par")
        time.sleep(0.5)
        assert reader.is_alive() and not got, got  # no line yet
        d.inject(name, "data", "tial\\n")
        reader.join(10)
        assert got == [b"partial\n"]
    finally:
        os.close(fd)


def test_vmin_vtime(devemud):
    d, name, node = serve(devemud)
    stty("-F", node, "raw", "-echo", "min", "0", "time", "5")
    fd = os.open(node, os.O_RDWR | os.O_NOCTTY)
    try:
        t0 = time.monotonic()
        assert os.read(fd, 10) == b""
        waited = time.monotonic() - t0
        assert 0.35 < waited < 5, waited
        attrs = termios.tcgetattr(fd)
        attrs[6][termios.VMIN], attrs[6][termios.VTIME] = 0, 0
        termios.tcsetattr(fd, termios.TCSANOW, attrs)
        t0 = time.monotonic()
        assert os.read(fd, 10) == b""
        assert time.monotonic() - t0 < 0.3
    finally:
        os.close(fd)
    fd = os.open(node, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        attrs = termios.tcgetattr(fd)
        attrs[6][termios.VMIN] = 1
        termios.tcsetattr(fd, termios.TCSANOW, attrs)
        with pytest.raises(BlockingIOError):
            os.read(fd, 10)
        os.write(fd, b"nb")
        r, _, _ = select.select([fd], [], [], 5)
        assert r and os.read(fd, 10) == b"nb"
    finally:
        os.close(fd)


def test_errnos_match_the_kernel(devemud):
    d, name, node = serve(devemud)
    fd = os.open(node, os.O_RDWR | os.O_NOCTTY)
    try:
        assert os.isatty(fd)
        with pytest.raises(OSError) as e:
            fcntl.ioctl(fd, termios.TCGETS, 8)  # a bad pointer
        assert e.value.errno == errno.EFAULT
        with pytest.raises(OSError) as e:
            fcntl.ioctl(fd, termios.TCFLSH, 9)
        assert e.value.errno == errno.EINVAL
        with pytest.raises(OSError) as e:
            fcntl.ioctl(fd, termios.TCXONC, 7)
        assert e.value.errno == errno.EINVAL
        with pytest.raises(OSError) as e:
            fcntl.ioctl(fd, 0x54FF, 0)
        assert e.value.errno == errno.ENOTTY
        with pytest.raises(OSError) as e:
            fcntl.ioctl(fd, termios.TIOCGPGRP, b"\0\0\0\0")  # nobody's controlling terminal
        assert e.value.errno == errno.ENOTTY
        # TIOCMSET with bits the UART lacks: accepted, ignored
        fcntl.ioctl(fd, termios.TIOCMSET, struct.pack("I", termios.TIOCM_DTR | termios.TIOCM_CTS | termios.TIOCM_LE))
        got = struct.unpack("I", fcntl.ioctl(fd, termios.TIOCMGET, b"\0\0\0\0"))[0]
        assert got & (termios.TIOCM_DTR | termios.TIOCM_RTS | termios.TIOCM_LE) == termios.TIOCM_DTR
        ss = fcntl.ioctl(fd, termios.TIOCGSERIAL, bytes(72))
        typ, line, port_, irq, flags, fifo, custom_divisor, baud_base = struct.unpack_from("8i", ss)
        assert (typ, fifo, baud_base) == (4, 16, 115200)  # PORT_16550A
        assert os.isatty(fd)  # still serving
    finally:
        os.close(fd)


def test_tiocexcl_keeps_other_users_out(devemud):
    name = unique("serexcl")
    d = devemud((name, "serial,mode=0666"))
    node = d.node(name)
    fd = os.open(node, os.O_RDWR | os.O_NOCTTY)
    try:
        fcntl.ioctl(fd, termios.TIOCEXCL)
        pid = os.fork()
        if pid == 0:
            code = 3
            try:
                os.setgid(65534)
                os.setuid(65534)
                os.close(os.open(node, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK))
                code = 0
            except OSError as e:
                code = 1 if e.errno == errno.EBUSY else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 1  # EBUSY
        os.close(os.open(node, os.O_RDWR | os.O_NOCTTY))  # root may
        fcntl.ioctl(fd, termios.TIOCNXCL)
    finally:
        os.close(fd)
