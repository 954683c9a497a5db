# SPDX-License-Identifier: MIT
"""devemu-run: serve devices with a private devemud for the duration of one program, each node at the
path the program expects, in a private mount namespace; exit with the program's status.

    devemu-run [--device NAME=MODEL[,key=value...]]... [--bind PATH=NAME]... [--transport T] -- PROG ARGS

Exit status: PROG's, 128+N if signal N killed it; 125 when devemu-run itself fails (the reason on
stderr), 126 when PROG cannot be executed, 127 when it is not found (as env(1) and timeout(1)).
"""

import argparse
import os
import shutil
import sys
import tempfile

from .daemon import TRANSPORTS, Daemon, DaemonError, Error, Unavailable
from .job import controlling_terminal, enter_child, wait_job
from .mountns import MountError, enter

EXIT_FAILURE = 125
EXIT_CANNOT_EXECUTE = 126
EXIT_NOT_FOUND = 127


class UsageError(Exception):
    pass


def fail(prog, message, status=EXIT_FAILURE):
    print(f"{prog}: {message}", file=sys.stderr)
    return status


def namespaces_unavailable():
    """Why this user cannot have the private mount namespace, or None. Root makes it itself;
    an ordinary user makes it inside a user namespace of its own (see mountns), which the kernel
    must allow."""
    if os.geteuid() == 0:
        return None
    try:
        with open("/proc/sys/user/max_user_namespaces") as f:
            if int(f.read()) == 0:
                return ("user namespaces are disabled (sysctl user.max_user_namespaces=0): "
                        "an ordinary user needs them for the private mount namespace; or run as root")
        with open("/proc/sys/kernel/unprivileged_userns_clone") as f:
            if int(f.read()) == 0:
                return ("unprivileged user namespaces are disabled (sysctl "
                        "kernel.unprivileged_userns_clone=0): an ordinary user needs them; or run as root")
    except (OSError, ValueError):
        pass  # a kernel without the knob allows them
    return None


def run_program(argv, binds):
    """Forks; the child enters a private mount namespace with binds [(node, path)] in place and
    execs argv, as a job of its own (devemu.job: signals reach it once, Ctrl-Z and fg work). Returns
    the exit status as a shell reports it (128+N for signal N)."""
    tty = controlling_terminal()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        try:
            enter_child(tty, parent)
            try:
                enter(binds)
            except (MountError, OSError) as e:
                os.write(2, f"devemu-run: cannot set up the mount namespace: {e}\n".encode())
                os._exit(EXIT_FAILURE)
            try:
                os.execvp(argv[0], argv)
            except FileNotFoundError:
                os.write(2, f"devemu-run: {argv[0]}: command not found\n".encode())
                os._exit(EXIT_NOT_FOUND)
            except OSError as e:
                os.write(2, f"devemu-run: cannot execute {argv[0]}: {e.strerror}\n".encode())
                os._exit(EXIT_CANNOT_EXECUTE)
        finally:
            os._exit(EXIT_FAILURE)
    try:
        status = wait_job(pid, tty)
    finally:
        if tty is not None:
            os.close(tty)
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def serve_and_run(prog, devices, binds, argv, transport=None, devemud=None, log_path=None, log_level=None,
                  after=None):
    """The machinery devemu-run and devemu-record share: starts a private devemud with devices
    [(name, spec)], waits for READY=1 and for every node, runs argv with binds [(path, name)] in
    a private mount namespace, stops the daemon. after(daemon, status) runs once the daemon is
    stopped. Returns the exit status to leave with."""
    if not argv:
        return fail(prog, "no program given (usage: ... -- PROG ARGS)")
    reason = namespaces_unavailable()
    if reason:
        return fail(prog, reason)
    logdir = None
    if log_path is None:
        logdir = tempfile.mkdtemp(prefix="devemu-run-")
        log_path = os.path.join(logdir, "devemud.log")
    daemon = Daemon(devices, transport=transport, devemud=devemud, log_path=log_path, log_level=log_level)
    try:
        try:
            daemon.start()
        except Unavailable as e:
            return fail(prog, f"cannot serve devices here: {e.message}")
        except DaemonError as e:
            return fail(prog, f"devemud did not start: {e.message}\n{daemon.log_tail(4000)}")
        status = EXIT_FAILURE
        try:
            nodes = {}
            for name, _ in devices:
                node = os.path.realpath(daemon.node(name))
                if not os.path.exists(node):
                    return fail(prog, f"devemud is ready but the node of {name} ({node}) does not exist")
                nodes[name] = node
            env_control = daemon.control.path
            os.environ["DEVEMU_CONTROL"] = env_control  # devemuctl --control $DEVEMU_CONTROL from PROG
            status = run_program(argv, [(nodes[name], path) for path, name in binds])
        finally:
            code = daemon.stop()
            if code not in (0, None):
                print(f"{prog}: devemud exited with {code}; its log ends:\n{daemon.log_tail(4000)}",
                      file=sys.stderr)
        if after:
            after(daemon, status)
        return status
    except Error as e:
        daemon.stop()
        return fail(prog, str(e))
    finally:
        if logdir:
            shutil.rmtree(logdir, ignore_errors=True)


def parse_pair(text, what, left, right):
    a, sep, b = text.partition("=")
    if not sep or not a or not b:
        raise UsageError(f"{what} {text!r}: expected {left}={right}")
    return a, b


def add_daemon_options(p):
    p.add_argument("--transport", choices=TRANSPORTS,
                   help="how devemud serves the nodes (default: cuse where /dev/cuse exists, "
                        "kshim where the kernel shim is loaded, else the FUSE fallback)")
    p.add_argument("--devemud", metavar="PATH", help="the devemud to run (default: $DEVEMUD, PATH, sbin)")
    p.add_argument("--daemon-log", metavar="FILE", help="keep devemud's log in FILE (appended)")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), help="devemud's log level")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="-- PROG ARGS", help="the program to run")


def command_of(args):
    cmd = list(args.command)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    return cmd


def main(argv=None):
    prog = "devemu-run"
    p = argparse.ArgumentParser(
        prog=prog, description="Run a program with devemu devices at the paths it expects, in a private mount "
        "namespace, served by a private devemud for the duration.",
        epilog="Exit status: the program's (128+N if signal N killed it); 125 if devemu-run failed, 126 if the "
        "program cannot be executed, 127 if it was not found.")
    p.add_argument("--device", action="append", default=[], metavar="NAME=MODEL[,key=value...]",
                   help="a device to serve (as devemud --device); repeatable")
    p.add_argument("--bind", action="append", default=[], metavar="PATH=NAME",
                   help="make device NAME's node appear at PATH for the program; repeatable")
    add_daemon_options(p)
    args = p.parse_args(argv)
    try:
        devices = [parse_pair(d, "--device", "NAME", "MODEL[,key=value...]") for d in args.device]
        binds = [parse_pair(b, "--bind", "PATH", "NAME") for b in args.bind]
        names = [n for n, _ in devices]
        if not devices:
            raise UsageError("no --device given: nothing to serve")
        for path, name in binds:
            if name not in names:
                raise UsageError(f"--bind {path}={name}: no --device named {name!r} (devices: {', '.join(names)})")
            if not os.path.isabs(path):
                raise UsageError(f"--bind {path}={name}: the path must be absolute")
    except UsageError as e:
        p.print_usage(sys.stderr)
        return fail(prog, str(e))
    return serve_and_run(prog, devices, binds, command_of(args), args.transport, args.devemud, args.daemon_log,
                         args.log_level)


if __name__ == "__main__":
    sys.exit(main())
