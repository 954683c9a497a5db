# SPDX-License-Identifier: MIT
"""devemu-record: run a program with real device nodes replaced, in its private mount namespace, by
recording passthrough nodes at the same paths; each writes a trace the replay model serves.

    devemu-record --device /dev/REAL[=TRACE]... [-o TRACE] [--transport T] -- PROG ARGS

The passthrough writes every operation to the trace as it completes, and devemu-run's machinery
stops the daemon only once PROG has exited: a program that catches SIGINT (or is killed) leaves a
complete trace. Exit status as devemu-run's.
"""

import argparse
import os
import sys

from .run import UsageError, add_daemon_options, command_of, fail, serve_and_run


def main(argv=None):
    prog = "devemu-record"
    p = argparse.ArgumentParser(
        prog=prog, description="Run a program with real device nodes replaced, at the same paths and in a private "
        "mount namespace, by devemu passthrough nodes that record every operation to a trace.",
        epilog="Replay a trace with: devemu-run --device NAME=replay,trace=TRACE --bind /dev/REAL=NAME -- PROG")
    p.add_argument("--device", action="append", default=[], metavar="/dev/REAL[=TRACE]",
                   help="a real node to record (trace: TRACE, else -o, else NAME.trace in the current "
                        "directory); repeatable")
    p.add_argument("-o", "--output", metavar="TRACE", help="the trace file (one --device only)")
    add_daemon_options(p)
    args = p.parse_args(argv)
    try:
        if not args.device:
            raise UsageError("no --device given: which real node to record?")
        if args.output and len(args.device) > 1:
            raise UsageError("-o names one trace: with several --device give each its own (--device /dev/X=X.trace)")
        devices, binds, traces = [], [], []
        for i, d in enumerate(args.device):
            real, _, trace = d.partition("=")
            if not os.path.isabs(real):
                raise UsageError(f"--device {real}: the path of a real node, e.g. /dev/ttyUSB0")
            if not os.path.exists(real):
                raise UsageError(f"--device {real}: no such node")
            trace = os.path.abspath(trace or args.output or f"{os.path.basename(real)}.trace")
            if trace in traces:
                raise UsageError(f"two devices would record into {trace}")
            traces.append(trace)
            # Served under a name of its own (the host sees /dev/NAME while the run lasts); the
            # program sees the recording node at the real node's path.
            name = f"rec{os.getpid()}-{i}"
            devices.append((name, f"passthrough,path={real},record={trace}"))
            binds.append((real, name))
    except UsageError as e:
        p.print_usage(sys.stderr)
        return fail(prog, str(e))

    def report(daemon, status):
        for trace in traces:
            print(f"{prog}: trace written to {trace}", file=sys.stderr)

    return serve_and_run(prog, devices, binds, command_of(args), args.transport, args.devemud, args.daemon_log,
                         args.log_level, after=report)


if __name__ == "__main__":
    sys.exit(main())
