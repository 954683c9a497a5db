# SPDX-License-Identifier: MIT
"""A client for devemud's control socket: one JSON object per line each way (the protocol of
cuse_dev/control/protocol.h, the one devemuctl speaks)."""

import datetime
import json
import os
import socket

PROTOCOL_VERSION = 1
DEFAULT_PATH = "/run/devemu/control"  # the system daemon's (root's); a user's: default_path()
FAULT_OPS = ("read", "write", "ioctl", "open", "poll")


def runtime_dir():
    """Where devemud keeps its control socket and FUSE-fallback mounts, as devemud itself resolves
    it: /run/devemu for root; for an ordinary user $XDG_RUNTIME_DIR/devemu, or /tmp/devemu-UID
    when XDG_RUNTIME_DIR is not set."""
    if os.geteuid() == 0:
        return "/run/devemu"
    xdg = os.environ.get("XDG_RUNTIME_DIR", "")
    if xdg.startswith("/"):
        return os.path.join(xdg, "devemu")
    return f"/tmp/devemu-{os.geteuid()}"


def default_path():
    """The control socket devemud listens on by default when run by this user."""
    return os.path.join(runtime_dir(), "control")


class Error(Exception):
    """Every error devemu raises: `message` is the daemon's own text where it gave one."""

    def __init__(self, message):
        super().__init__(message)
        self.message = message


class ControlError(Error):
    """The daemon refused a request. `message` is the daemon's own text, `command` the command
    refused, `response` the whole answer (None when there was none)."""

    def __init__(self, message, command=None, response=None):
        super().__init__(message)
        self.command = command
        self.response = response


class ControlUnreachable(ControlError):
    """No daemon answered on the socket (not running, another path, no permission)."""


def device_spec(name, model, options=None):
    """NAME=MODEL[,key=value...] from a name, a model and a dict of options (True/False become
    on/off). A value holding ',' cannot be expressed in a spec and is a ValueError."""
    parts = [f"{name}={model}"]
    for key, value in (options or {}).items():
        if isinstance(value, bool):
            value = "on" if value else "off"
        value = str(value)
        if "," in value or "," in key or "=" in key:
            raise ValueError(f"option {key}={value!r}: a device spec cannot hold ',' in a value or a key")
        parts.append(f"{key}={value}")
    return ",".join(parts)


def _delay_ms(delay):
    """A fault delay in seconds (a number or a timedelta) as the protocol's whole milliseconds."""
    seconds = delay.total_seconds() if isinstance(delay, datetime.timedelta) else float(delay)
    return max(1, round(seconds * 1000))


class Control:
    """The control socket of one devemud (default: the system daemon's /run/devemu/control).

    Each call opens a fresh connection, sends one request and reads one answer. Methods return
    the daemon's answer as Python objects and raise ControlError with the daemon's message when
    it refuses (ControlUnreachable when nobody answers)."""

    def __init__(self, path=None, timeout=30.0):
        self.path = str(path or default_path())
        self.timeout = timeout

    def __repr__(self):
        return f"Control({self.path!r})"

    # -- the wire ----------------------------------------------------------------------------

    def exchange(self, payload, timeout=None):
        """Raw bytes to the socket on a fresh connection; the first answer line, newline included
        (b"" if the daemon closed the connection without one). OSError if it cannot connect."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout if timeout is None else timeout)
        try:
            s.connect(self.path)
            s.sendall(payload)
            data = b""
            while b"\n" not in data:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        finally:
            s.close()
        end = data.find(b"\n")
        return data if end < 0 else data[:end + 1]

    def request(self, request, timeout=None):
        """One request (a dict), the daemon's answer as a dict, whatever it says (None if it
        answered nothing). No version is added: this is the raw protocol."""
        data = self.exchange((json.dumps(request) + "\n").encode(), timeout)
        return json.loads(data) if data else None

    def call(self, command, timeout=None, **fields):
        """COMMAND with fields, in this protocol version; the answer when ok, else ControlError."""
        try:
            response = self.request(dict(version=PROTOCOL_VERSION, command=command, **fields), timeout)
        except (FileNotFoundError, ConnectionRefusedError) as e:
            raise ControlUnreachable(f"cannot reach devemud at {self.path}: {e.strerror} (is it running? "
                                     "is its --control socket this one?)", command) from None
        except PermissionError as e:
            raise ControlUnreachable(f"cannot reach devemud at {self.path}: {e.strerror} (the socket is for "
                                     "its owner, or root and the daemon's --control-group)", command) from None
        except socket.timeout:
            raise ControlUnreachable(f"devemud at {self.path} did not answer '{command}' in time", command) from None
        if response is None:
            raise ControlError(f"devemud at {self.path} closed the connection without an answer", command)
        if not response.get("ok"):
            raise ControlError(response.get("error", "the daemon refused the request"), command, response)
        return response

    # -- the commands ------------------------------------------------------------------------

    def version(self):
        """{"version": "0.1.0", "protocol": 1}"""
        r = self.call("version")
        return {"version": r["version"], "protocol": r["protocol"]}

    def list(self):
        """Every device the daemon serves: a list of dicts with name, model, transports, nodes,
        state, open_files, waiting_requests, from_config."""
        return self.call("list")["devices"]

    def device(self, name):
        """The description of one device (as in list()); ControlError if there is none."""
        for d in self.list():
            if d["name"] == name:
                return d
        raise ControlError(f"no device '{name}'", "list")

    def stats(self, name):
        """Per-operation counters of a device: {"operations": {"read": {"requests", "in_kernel",
        "errors", "latency"}, ...} (in_kernel: of the requests, calls the kernel shim served from
        its stream FIFOs, which have no latency entries), "bytes_in", "bytes_out", "opens", "open_files", "waited", "cancelled",
        "protocol_errors", "dropped", "faults": [...]}."""
        r = self.call("stats", device=name)
        del r["ok"]
        return r

    def add(self, name, model=None, **options):
        """Serves a new device and returns its description once its node exists.
        add("NAME=MODEL,key=value") or add("NAME", "MODEL", key=value...)."""
        if model is None:
            if options:
                raise TypeError("options need a model: add(name, model, **options)")
            spec = name
        else:
            spec = device_spec(name, model, options)
        return self.call("add", spec=spec)["device"]

    def remove(self, name):
        """Stops serving a device: callers waiting on it get ENODEV. Returns how many files were open."""
        return self.call("remove", device=name)["open_files"]

    def inject(self, name, *args):
        """The model's control side (its inject verbs, e.g. inject("kbd0", "tap", "KEY_A")); the
        model's reply text."""
        if not args:
            raise TypeError("inject needs a verb")
        return self.call("inject", device=name, args=[str(a) for a in args])["reply"]

    def fault(self, name, op, errno=None, delay=None, short=None, count=None):
        """Makes the next requests of op (read, write, ioctl, open, poll) fail with errno (a number
        or a name such as "EIO"), wait delay seconds (a number or a timedelta), or move at most
        short bytes; count limits it to that many requests (default: until cleared). A new fault
        for an operation replaces the old one."""
        fields = {"device": name, "op": op}
        if errno is not None:
            fields["errno"] = errno
        if delay is not None:
            fields["delay_ms"] = _delay_ms(delay)
        if short is not None:
            fields["short"] = int(short)
        if count is not None:
            fields["count"] = int(count)
        self.call("fault", **fields)

    def clear_faults(self, name):
        """Removes every fault of a device."""
        self.call("fault", device=name, clear=True)
