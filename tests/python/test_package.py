# SPDX-License-Identifier: MIT
# The devemu package without the fixture: Daemon as a context manager, Control against it.

import os

import pytest

import devemu


def test_daemon_serves_its_devices_and_goes_away(devemud_path, pytestconfig):
    transport = pytestconfig.getoption("--devemu-transport")
    reason = devemu.missing(transport or devemu.default_transport())
    if reason:
        pytest.skip(reason)
    name = f"pyloop{os.getpid()}"
    with devemu.Daemon({name: "loopback,capacity=1k"}, transport=transport, devemud=devemud_path) as d:
        node = d.node(name)
        with open(node, "r+b", buffering=0) as f:
            f.write(b"ping")
            assert f.read(4) == b"ping"
        (desc,) = d.control.list()
        assert desc["name"] == name and desc["model"] == "loopback" and desc["nodes"] == [node]
        assert d.control.version()["protocol"] == devemu.PROTOCOL_VERSION
        added = d.add(name + "z", "zero")
        assert os.path.exists(added["nodes"][0])
        pid = d.pid
    assert d.proc.returncode == 0
    assert not os.path.lexists(node) and not os.path.lexists(added["nodes"][0])
    assert not os.path.exists(f"/proc/{pid}/status") or "zombie" in open(f"/proc/{pid}/status").read()
    assert "devemud" in d.log()  # the log outlives the daemon


def test_control_without_a_daemon_says_so(tmp_path):
    with pytest.raises(devemu.ControlUnreachable) as e:
        devemu.Control(str(tmp_path / "nothing")).list()
    assert "cannot reach devemud" in e.value.message and "is it running" in e.value.message


def test_device_spec():
    assert devemu.device_spec("a", "loopback", {"capacity": "1M", "x": True}) == "a=loopback,capacity=1M,x=on"
    with pytest.raises(ValueError):
        devemu.device_spec("a", "i2c", {"slaves": "eeprom@0x50,lm75@0x48"})
