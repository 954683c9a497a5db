#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Soak, load and fault runs against a private devemud, each printing a Markdown table of what it
measured (docs/reliability.md shows the figures and the commands):

  load      N loopback devices added live to one daemon, M concurrent clients across them each
            writing and reading back checksummed frames, then every device removed live under
            blocked readers (each must get ENODEV within 1 s);
  soak      a long run of checksummed frames through loopback devices (one writer and one reader
            each): frames lost, duplicated or corrupted, and the daemon's memory, files and
            mappings before and after;
  kill      SIGKILL the daemon under load, again and again: every blocked client must return within
            1 s, the node must come back (the kernel shim re-attaches), and nothing may be left
            behind (FUSE mounts, the module's references, slab growth);
  modcycle  load and unload devemu_kshim.ko with daemons and clients coming and going (the VM).

Run as root (FUSE mounts in /run, /dev symlinks); any failed check makes the exit status 1."""

import argparse
import errno
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(HERE), str(REPO / "python")]

import frames  # noqa: E402
import probes  # noqa: E402
from devemu.daemon import Daemon  # noqa: E402

failures = []


def check(ok, what):
    if not ok:
        failures.append(what)
        print(f"FAILED: {what}", file=sys.stderr, flush=True)
    return ok


def table(title, rows):
    """A two-column Markdown table."""
    print(f"\n**{title}**\n\n| measure | value |\n|---|---:|")
    for key, value in rows:
        print(f"| {key} | {value} |")
    sys.stdout.flush()


def fmt_usage(u):
    return f"{u['rss_kib']:,} KiB RSS, {u['fds']} fds, {u['maps']} maps, {u['threads']} threads"


def start_thread(target, *args):
    t = threading.Thread(target=target, args=args, daemon=True)
    t.start()
    return t


class BlockedReader:
    """A client that opens node, then blocks in read() until the device goes away: `returned` is how
    long after `since` (set by the caller before it acts) the read returned, `error` its errno."""

    def __init__(self, node):
        self.node, self.opened, self.done = node, threading.Event(), threading.Event()
        self.since = self.returned = self.error = None
        self.thread = start_thread(self._run)

    def _run(self):
        try:
            fd = os.open(self.node, os.O_RDWR)
        except OSError as e:
            self.error = e.errno
            self.opened.set()
            self.done.set()
            return
        self.opened.set()
        try:
            while True:
                if not os.read(fd, 4096):
                    self.error = 0
                    break
        except OSError as e:
            self.error = e.errno
        finally:
            self.returned = time.monotonic()
            self.done.set()
            close_quietly(fd)

    def latency(self):
        return None if self.returned is None or self.since is None else self.returned - self.since


def close_quietly(fd):
    """close(), whose error on a node whose device is gone (FUSE: ENOTCONN) says nothing new."""
    try:
        os.close(fd)
    except OSError:
        pass


def errno_names(codes):
    return ", ".join(sorted({errno.errorcode.get(c, str(c)) if c else "EOF" for c in codes})) or "-"


# -- load ---------------------------------------------------------------------------------------


def load_client(node, stream, rounds, barrier, seen, errors, latencies):
    """Writes rounds fixed-size frames of its own stream to node, reading one frame back after each
    (four clients share a loopback device, so the frame read is often another client's)."""
    size = 64
    try:
        fd = os.open(node, os.O_RDWR)
    except OSError as e:
        errors.append(f"open {node}: {e}")
        barrier.abort()
        return
    try:
        barrier.wait()
        got = []
        for r in range(rounds):
            t0 = time.monotonic()
            os.write(fd, frames.frame(stream, r, size - frames.OVERHEAD))
            data = os.read(fd, size)
            latencies.append(time.monotonic() - t0)
            if len(data) != size:
                errors.append(f"{node}: read {len(data)} bytes, not one {size}-byte frame")
                return
            got += frames.parse(bytearray(data))[0]
        seen.extend(got)
    except (OSError, frames.FrameError, threading.BrokenBarrierError) as e:
        errors.append(f"{node}: {e}")
    finally:
        close_quietly(fd)


def load_cycle(d, args, cycle):
    """Adds args.devices devices live, runs args.clients clients across them, removes them live under
    a blocked reader each; the table rows of what it saw."""
    names = [f"soakl{cycle}x{i}" for i in range(args.devices)]
    t0 = time.monotonic()
    for name in names:
        d.add(name, "loopback", capacity="64K")
    add_s = time.monotonic() - t0
    added = probes.process_usage(d.pid)
    nodes = {name: d.node(name) for name in names}

    clients = args.clients
    barrier = threading.Barrier(clients)
    seen = [[] for _ in names]
    errors, latencies, threads = [], [], []
    threading.stack_size(256 * 1024)
    t0 = time.monotonic()
    for c in range(clients):
        i = c % len(names)
        threads.append(start_thread(load_client, nodes[names[i]], c, args.rounds, barrier, seen[i], errors, latencies))
    for t in threads:
        t.join(timeout=600)
    load_s = time.monotonic() - t0
    check(not any(t.is_alive() for t in threads), "load: clients still running after 600 s")
    check(not errors, f"load: client errors: {errors[:3]}")
    lost = duplicated = 0
    for i, got in enumerate(seen):
        streams = [(s, q) for s, q, _ in got]
        want = {(c, r) for c in range(i, clients, len(names)) for r in range(args.rounds)}
        duplicated += len(streams) - len(set(streams))
        lost += len(want - set(streams))
    check(lost == 0 and duplicated == 0, f"load: {lost} frames lost, {duplicated} duplicated")
    loaded = probes.process_usage(d.pid)

    # Remove every device live with a reader blocked on each: each must get ENODEV at once.
    readers = [BlockedReader(nodes[n]) for n in names]
    for r in readers:
        r.opened.wait(10)
    time.sleep(0.5)
    t0 = time.monotonic()
    for name, r in zip(names, readers):
        r.since = time.monotonic()
        d.remove(name)
    remove_s = time.monotonic() - t0
    for r in readers:
        r.done.wait(5)
    waits = [r.latency() for r in readers]
    slow = sum(1 for w in waits if w is None or w > 1.0)
    check(slow == 0, f"load: {slow} blocked readers did not return within 1 s of their device's removal")
    time.sleep(0.5)
    after = probes.process_usage(d.pid)

    latencies.sort()
    pct = lambda p: f"{latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1e3:.2f} ms" if latencies else "-"
    return [
        ("devices added live (one `add` each)", f"{args.devices} in {add_s * 1e3:,.0f} ms"),
        ("clients at once", clients),
        ("write+read pairs", f"{len(latencies):,} in {load_s:.1f} s ({len(latencies) / load_s:,.0f}/s)"),
        ("pair latency p50 / p99 / max", f"{pct(0.5)} / {pct(0.99)} / {pct(1.0)}"),
        ("frames lost / duplicated / client errors", f"{lost} / {duplicated} / {len(errors)}"),
        ("devices removed live under a blocked reader each", f"{len(names)} in {remove_s * 1e3:,.0f} ms"),
        ("blocked readers: errno, slowest return", f"{errno_names(r.error for r in readers)}, "
         f"{max((w for w in waits if w is not None), default=0) * 1e3:.0f} ms"),
        (f"daemon with {args.devices + 1} devices", fmt_usage(added)),
        ("after the clients", fmt_usage(loaded)),
        ("after removing them", fmt_usage(after)),
    ], after


def run_load(args):
    """args.cycles rounds of load_cycle() in one daemon: the daemon's usage after each removal shows
    whether anything a device held stays behind (the first round's peak may stay with malloc)."""
    with Daemon({"soakbase": "loopback"}, transport=args.transport, devemud=args.devemud) as d:
        before = probes.process_usage(d.pid)
        ends = []
        for cycle in range(args.cycles):
            rows, after = load_cycle(d, args, cycle)
            ends.append(after)
            table(f"load, round {cycle + 1} of {args.cycles}: {args.devices} devices, {args.clients} clients, "
                  f"{args.rounds} rounds each ({args.transport})", [("daemon with 1 device", fmt_usage(before))] + rows)
    check(all(e["fds"] == before["fds"] for e in ends), f"load: fds after each round {[e['fds'] for e in ends]}, "
          f"{before['fds']} before")
    growth = ends[-1]["rss_kib"] - ends[0]["rss_kib"]
    check(growth <= args.rss_bound, f"load: RSS after the last round {growth:+,} KiB against the first (bound {args.rss_bound:,})")
    table(f"load: the daemon after each round ({args.transport})",
          [("before the first", fmt_usage(before))] + [(f"after round {i + 1}", fmt_usage(e)) for i, e in enumerate(ends)])


# -- soak ---------------------------------------------------------------------------------------


END_OF_RUN = 0xFFFF  # the stream number of the frame a soak writer sends last


class Stream:
    """One writer and one reader of checksummed frames on a loopback node."""

    def __init__(self, node, stream, stop, seed):
        self.node, self.stream, self.stop = node, stream, stop
        self.rng = random.Random(seed)
        self.sent = self.writes = self.reads = self.bytes_written = 0
        self.check = frames.SequenceCheck()
        self.errors = []
        self.wfd = os.open(node, os.O_WRONLY)
        self.rfd = os.open(node, os.O_RDONLY)
        self.writer = start_thread(self._write)
        self.reader = start_thread(self._read)

    def _write(self):
        try:
            while not self.stop.is_set():
                f = frames.frame(self.stream, self.sent, self.rng.randint(1, 2000))
                n = os.write(self.wfd, f)
                if n != len(f):
                    self.errors.append(f"short write {n} of {len(f)}")
                    return
                self.sent += 1
                self.writes += 1
                self.bytes_written += n
            os.write(self.wfd, frames.frame(END_OF_RUN, 0, 1))  # tells the reader that nothing more comes
        except OSError as e:
            self.errors.append(f"write: {e}")

    def _read(self):
        buf = bytearray()
        try:
            while True:
                data = os.read(self.rfd, 65536)
                self.reads += 1
                buf += data
                got, used = frames.parse(buf)
                del buf[:used]
                for s, q, n in got:
                    if s == END_OF_RUN:
                        return
                    self.check.see(s, q, n)
        except (OSError, frames.FrameError) as e:
            self.errors.append(f"read: {e}")

    def ops(self):
        return self.writes + self.reads


def run_soak(args):
    names = [f"soaks{i}" for i in range(args.pairs)]
    with Daemon({n: "loopback,capacity=64K" for n in names}, transport=args.transport, devemud=args.devemud) as d:
        warm = None
        stop = threading.Event()
        streams = [Stream(d.node(n), i, stop, seed=i) for i, n in enumerate(names)]
        t0 = time.monotonic()
        last_report = t0
        while True:
            time.sleep(0.5)
            ops = sum(s.ops() for s in streams)
            if warm is None and ops >= min(args.ops // 100, 100_000):
                warm = probes.process_usage(d.pid)  # after the first allocations settle
                warm_ops = ops
            now = time.monotonic()
            if now - last_report >= 60:
                print(f"soak: {ops:,} operations in {now - t0:.0f} s, {fmt_usage(probes.process_usage(d.pid))}",
                      file=sys.stderr, flush=True)
                last_report = now
            if ops >= args.ops or any(s.errors for s in streams) or any(not s.writer.is_alive() for s in streams):
                break
        stop.set()
        for s in streams:
            s.writer.join(30)
            s.reader.join(30)
        elapsed = time.monotonic() - t0
        end = probes.process_usage(d.pid)
        for s in streams:
            close_quietly(s.wfd)
            close_quietly(s.rfd)
            s.check.finish({s.stream: s.sent})
        stats = [d.control.stats(n) for n in names]
    errors = [e for s in streams for e in s.errors]
    lost = sum(s.check.lost for s in streams)
    dup = sum(s.check.duplicated for s in streams)
    frames_ok = sum(s.check.frames for s in streams)
    sent = sum(s.sent for s in streams)
    written = sum(s.bytes_written for s in streams)
    ops = sum(s.ops() for s in streams)
    reads = sum(st["operations"]["read"]["requests"] for st in stats)
    writes = sum(st["operations"]["write"]["requests"] for st in stats)
    bytes_in, bytes_out = sum(st["bytes_in"] for st in stats), sum(st["bytes_out"] for st in stats)
    end_frames = len(streams) * frames.OVERHEAD + len(streams)  # each writer's END_OF_RUN frame
    check(bytes_in == bytes_out == written + end_frames,
          f"soak: the daemon took {bytes_in:,} bytes and gave {bytes_out:,}; the writers wrote {written + end_frames:,}")
    check(not errors, f"soak: {errors[:3]}")
    check(lost == 0 and dup == 0 and frames_ok == sent, f"soak: {sent} sent, {frames_ok} delivered, {lost} lost, {dup} duplicated")
    growth = end["rss_kib"] - warm["rss_kib"]
    check(growth <= args.rss_bound, f"soak: RSS grew by {growth} KiB (bound {args.rss_bound})")
    check(end["fds"] == warm["fds"] and end["maps"] <= warm["maps"] + 4,
          f"soak: fds {warm['fds']} -> {end['fds']}, maps {warm['maps']} -> {end['maps']}")
    table(f"soak: {args.pairs} loopback devices, one writer and one reader each ({args.transport})", [
        ("operations (write() and read() calls)", f"{ops:,} in {elapsed:.0f} s ({ops / elapsed:,.0f}/s)"),
        ("frames written / delivered intact", f"{sent:,} / {frames_ok:,} ({written / 1e6:,.0f} MB)"),
        ("frames lost / duplicated / corrupted", f"{lost} / {dup} / {sum('mismatch' in e or 'magic' in e for e in errors)}"),
        (f"daemon after {warm_ops:,} operations", fmt_usage(warm)),
        ("daemon at the end", fmt_usage(end)),
        ("RSS growth (bound)", f"{growth:+,} KiB ({args.rss_bound:,} KiB)"),
        ("the daemon's count: read / write requests", f"{reads:,} / {writes:,}"),
        ("the daemon's count: bytes in / out", f"{bytes_in:,} / {bytes_out:,}"),
    ])


# -- kill ---------------------------------------------------------------------------------------


def traffic(node, stop, errors):
    """A writer and a reader of frames on node until stop or an error (the daemon's death)."""
    try:
        fd = os.open(node, os.O_RDWR)
    except OSError as e:
        errors.append(e.errno)
        return
    seq = 0
    try:
        while not stop.is_set():
            os.write(fd, frames.frame(0, seq, 512))
            frames.parse(bytearray(os.read(fd, 4096)))
            seq += 1
    except OSError as e:
        errors.append(e.errno)
    finally:
        close_quietly(fd)


def run_kill(args):
    names = ("soakk0", "soakk1")  # traffic on the first, blocked readers on the second
    spec = {n: "loopback" for n in names}
    own_before = probes.process_usage(os.getpid())
    slab_before = probes.slab_kib()
    refs_before = probes.module_refcount()
    waits, codes, epochs, slow = [], [], [], 0
    restart_s = []
    for cycle in range(args.cycles):
        d = Daemon(spec, transport=args.transport, devemud=args.devemud)
        t0 = time.monotonic()
        d.start()
        restart_s.append(time.monotonic() - t0)
        if args.transport == "kshim":
            epochs.append(probes.kshim_attribute(names[1], "attach_epoch"))
        stop, terrors = threading.Event(), []
        movers = [start_thread(traffic, d.node(names[0]), stop, terrors) for _ in range(2)]
        readers = [BlockedReader(d.node(names[1])) for _ in range(args.blocked)]
        for r in readers:
            r.opened.wait(10)
        time.sleep(0.2)
        killed = time.monotonic()
        for r in readers:
            r.since = killed
        os.kill(d.pid, signal.SIGKILL)
        for r in readers:
            r.done.wait(5)
        stop.set()
        for m in movers:
            m.join(5)
        hung = [r for r in readers if not r.done.is_set()] + [m for m in movers if m.is_alive()]
        if not check(not hung, f"kill cycle {cycle}: {len(hung)} clients still blocked 5 s after the SIGKILL"):
            break
        cycle_waits = [r.latency() for r in readers]
        waits += cycle_waits
        slow += sum(1 for w in cycle_waits if w > 1.0)
        codes += [r.error for r in readers] + terrors
        d.stop()
        if args.transport == "kshim":
            state = probes.kshim_attribute(names[1], "state")
            check(state == "nosrv", f"kill cycle {cycle}: the kshim node is {state!r} after the SIGKILL, not 'nosrv'")
    check(slow == 0, f"kill: {slow} blocked clients returned later than 1 s after the SIGKILL")
    if args.transport == "kshim":
        distinct = len(set(epochs))
        check(distinct == len(epochs), f"kill: {len(epochs)} restarts attached with {distinct} distinct epochs")
    time.sleep(1)
    own_after = probes.process_usage(os.getpid())
    slab_after = probes.slab_kib()
    refs_after = probes.module_refcount()
    left = [m for m in probes.fuse_mounts() if os.path.basename(m) in names]
    check(not left, f"kill: FUSE mounts left: {left}")
    check(own_after["fds"] == own_before["fds"], f"kill: the test process holds {own_after['fds'] - own_before['fds']} more fds")
    check(refs_after == refs_before, f"kill: module references {refs_before} -> {refs_after}")
    waits.sort()
    rows = [
        ("SIGKILLs of the daemon under load", f"{args.cycles} (2 clients moving frames, {args.blocked} blocked in read)"),
        ("blocked clients: errno on return", errno_names(codes)),
        ("return after the SIGKILL: median / max", f"{waits[len(waits) // 2] * 1e3:.1f} ms / {waits[-1] * 1e3:.1f} ms"
         if waits else "-"),
        ("clients later than 1 s / hung", f"{slow} / 0"),
        ("restart until the nodes serve again: median / max",
         f"{sorted(restart_s)[len(restart_s) // 2] * 1e3:.0f} ms / {max(restart_s) * 1e3:.0f} ms"),
        ("FUSE mounts left", len(left)),
        ("test process fds before / after", f"{own_before['fds']} / {own_after['fds']}"),
        ("slab before / after", f"{slab_before:,} KiB / {slab_after:,} KiB ({slab_after - slab_before:+,})"),
    ]
    if args.transport == "kshim":
        rows += [("re-attaches (distinct epochs)", f"{len(set(epochs))} of {len(epochs)}"),
                 ("module references before / after", f"{refs_before} / {refs_after}")]
    table(f"kill: {args.cycles} SIGKILLs of devemud ({args.transport})", rows)


# -- modcycle -----------------------------------------------------------------------------------


def rmmod(module="devemu_kshim"):
    return subprocess.run(["rmmod", module], capture_output=True, text=True)


def run_modcycle(args):
    ko = args.module or str(REPO / "build/kshim/devemu_kshim.ko")
    check(probes.module_refcount() is None, "modcycle: devemu_kshim is already loaded")
    slab_before = probes.slab_kib()
    rng = random.Random(args.seed)
    refused = ends = 0
    t0 = time.monotonic()
    for cycle in range(args.cycles):
        r = subprocess.run(["insmod", ko], capture_output=True, text=True)
        if not check(r.returncode == 0, f"modcycle {cycle}: insmod: {r.stderr.strip()}"):
            break
        d = Daemon({"soakm0": "loopback", "soakm1": "zero"}, transport="kshim", devemud=args.devemud)
        d.start()
        fds = [os.open(d.node("soakm0"), os.O_RDWR) for _ in range(3)] + [os.open(d.node("soakm1"), os.O_RDONLY)]
        os.write(fds[0], b"x" * 100)
        check(len(os.read(fds[1], 100)) == 100, f"modcycle {cycle}: loopback read")
        check(os.read(fds[3], 4096) == bytes(4096), f"modcycle {cycle}: zero read")
        # The daemon ends one of three ways; rmmod must be refused while anything holds the module.
        how = rng.choice(("sigterm", "sigkill", "clients first"))
        if how == "clients first":
            for fd in fds:
                close_quietly(fd)
            fds = []
        ends += 1
        if how == "sigkill":
            os.kill(d.pid, signal.SIGKILL)
        d.stop()
        if fds:
            busy = rmmod()
            refused += busy.returncode != 0
            check(busy.returncode != 0, f"modcycle {cycle}: rmmod succeeded with client files open")
            for fd in fds:
                try:
                    os.read(fd, 1)
                    check(False, f"modcycle {cycle}: a read on a file of the dead daemon succeeded")
                except OSError:
                    pass
                close_quietly(fd)
        r = rmmod()
        check(r.returncode == 0, f"modcycle {cycle} ({how}): rmmod: {r.stderr.strip()}")
        if r.returncode != 0:
            break
    elapsed = time.monotonic() - t0
    slab_after = probes.slab_kib()
    table(f"modcycle: {args.cycles} load/unload cycles of devemu_kshim.ko", [
        ("cycles (insmod, daemon, clients, daemon ends, rmmod)", f"{args.cycles} in {elapsed:.0f} s"),
        ("daemon ends: SIGTERM, SIGKILL or after its clients (seeded)", f"seed {args.seed}"),
        ("rmmod refused while client files were open (expected)", refused),
        ("failed checks", len(failures)),
        ("slab before / after", f"{slab_before:,} KiB / {slab_after:,} KiB ({slab_after - slab_before:+,})"),
    ])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--devemud", default=str(REPO / "build/cuse_dev/devemud"))
    p.add_argument("--transport", default="fuse", choices=("fuse", "cuse", "kshim"))
    sub = p.add_subparsers(dest="run", required=True)
    s = sub.add_parser("load")
    s.add_argument("--devices", type=int, default=256)
    s.add_argument("--clients", type=int, default=1000)
    s.add_argument("--rounds", type=int, default=200)
    s.add_argument("--cycles", type=int, default=3, help="add/load/remove rounds in one daemon (default 3)")
    s.add_argument("--rss-bound", type=int, default=4096,
                   help="allowed RSS growth from the first round's end to the last's, KiB (default 4096)")
    s = sub.add_parser("soak")
    s.add_argument("--ops", type=int, default=10_000_000)
    s.add_argument("--pairs", type=int, default=4)
    s.add_argument("--rss-bound", type=int, default=1024, help="allowed RSS growth in KiB (default 1024)")
    s = sub.add_parser("kill")
    s.add_argument("--cycles", type=int, default=100)
    s.add_argument("--blocked", type=int, default=8)
    s = sub.add_parser("modcycle")
    s.add_argument("--cycles", type=int, default=50)
    s.add_argument("--module", default=None)
    s.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    print(f"{args.run}: {' '.join(sys.argv[1:])} on {os.uname().release}", flush=True)
    {"load": run_load, "soak": run_soak, "kill": run_kill, "modcycle": run_modcycle}[args.run](args)
    print(f"\n{args.run}: {'FAILED: ' + '; '.join(failures) if failures else 'all checks passed'}", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
