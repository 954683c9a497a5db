#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""plot_latency.py: the per-operation latency plot of README's "Kernel vs user" section, drawn from the
output of tests/bench/run.sh (one model's table, or docs/benchmarks-fifo.txt with its "===== MODEL" sections).

    tests/bench/plot_latency.py docs/benchmarks-fifo.txt docs/latency.svg [--model zero]

One group of bars per operation and size (single-threaded cells), one bar per driver: the kernel's own
device, CUSE, the kernel shim's request path (fifo=off) and its stream FIFOs; the y axis is logarithmic.
Needs python3-matplotlib (scripts/deps.sh plot).
"""
import argparse
import re
import sys

# The drivers in the order drawn, with their legend labels and colours.
DRIVERS = [
    ("kernel", "the kernel's own device", "#4c4c4c"),
    ("devemu-cuse", "CUSE (devemud)", "#d95f02"),
    ("devemu-kshim-req", "kernel shim, requests (fifo=off)", "#7570b3"),
    ("devemu-kshim", "kernel shim, stream FIFOs", "#1b9e77"),
]
UNITS = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}


def parse_latency(text):
    """The microseconds of a 'lat mean' cell such as '1.19 us' or '784 ns'."""
    value, unit = text.split()
    return float(value.replace(",", "")) * UNITS[unit]


def read_tables(path):
    """{model: {(target, op, size, threads): (lat_us, line_no)}} and the header lines of each model's run."""
    tables, headers = {}, {}
    model = "zero"
    columns, sectioned = None, False
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            line = line.rstrip("\n")
            m = re.match(r"^===== (.+)", line)
            if m:  # a section of docs/benchmarks-fifo.txt, named by its whole title
                model, columns, sectioned = m.group(1).strip(), None, True
                continue
            m = re.match(r"^model: (\S+)", line)
            if m and not sectioned:
                model = m.group(1)
            if line.startswith(("machine:", "kernel command line:", "clock:")):
                headers.setdefault(model, []).append(line)
            if not line.startswith("|"):
                continue
            cells = [c.strip() for c in line.strip("|").split("|")]
            if cells[0] == "target":
                columns = {name: i for i, name in enumerate(cells)}
                if not {"op", "size", "threads", "lat mean"} <= columns.keys():
                    columns = None  # another table (stream.sh's)
                continue
            if columns is None or cells[0].startswith(":") or cells[0].startswith("-"):
                continue
            try:
                key = (cells[columns["target"]], cells[columns["op"]], cells[columns["size"]],
                       int(cells[columns["threads"]]))
                tables.setdefault(model, {})[key] = (parse_latency(cells[columns["lat mean"]]), line_no)
            except (KeyError, ValueError, IndexError) as e:
                sys.exit(f"{path}:{line_no}: cannot read this table row ({e}): {line}")
    return tables, headers


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bench_output", help="tests/bench/run.sh output (or docs/benchmarks-fifo.txt)")
    ap.add_argument("image", help="the image to write (.svg or .png)")
    ap.add_argument("--model", default="zero",
                    help="the model's table to draw, or the section's title in docs/benchmarks-fifo.txt (default zero)")
    args = ap.parse_args()

    tables, headers = read_tables(args.bench_output)
    rows = tables.get(args.model)
    if not rows:
        sys.exit(f"{args.bench_output}: no table for model '{args.model}' (have: {', '.join(tables) or 'none'})")
    groups = []
    for target, op, size, threads in rows:
        if threads == 1 and (op, size) not in groups:
            groups.append((op, size))
    missing = [f"{t} {op} {size}" for op, size in groups for t, _, _ in DRIVERS if (t, op, size, 1) not in rows]
    if missing:
        sys.exit(f"{args.bench_output}: model '{args.model}' lacks rows: {'; '.join(missing)}")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matplotlib.rcParams["svg.hashsalt"] = "devemu"  # the same input draws the same file
    matplotlib.rcParams["svg.fonttype"] = "none"  # text as text: a smaller file that diffs
    fig, ax = plt.subplots(figsize=(10, 4.8))
    width = 0.8 / len(DRIVERS)
    for i, (target, label, colour) in enumerate(DRIVERS):
        xs = [g + (i - (len(DRIVERS) - 1) / 2) * width for g in range(len(groups))]
        ys = [rows[(target, op, size, 1)][0] for op, size in groups]
        bars = ax.bar(xs, ys, width, label=label, color=colour)
        for bar, y in zip(bars, ys):
            text = f"{y * 1000:.0f} ns" if y < 1 else f"{y:.1f} us" if y < 100 else f"{y:.0f} us"
            ax.annotate(text, (bar.get_x() + bar.get_width() / 2, y), ha="center", va="bottom",
                        fontsize=6.5, rotation=90, xytext=(0, 2), textcoords="offset points")
    ax.set_yscale("log")
    ax.set_ylim(top=ax.get_ylim()[1] * 4)
    ax.set_xticks(range(len(groups)), [f"{op} {size}" for op, size in groups])
    ax.set_ylabel("latency per operation (us, log scale)")
    clock = next((h for h in headers.get(args.model, []) if h.startswith("clock:")), "")
    icount = "icount" in clock
    ax.set_title(f"devemu '{args.model}': one model, the kernel's own device beside it"
                 + (" (QEMU instruction count: 1 us = 1,000 instructions)" if icount else ""), fontsize=10)
    ax.legend(fontsize=8, loc="upper left", ncol=2)
    ax.grid(axis="y", which="major", alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.image, metadata={"Date": None} if args.image.endswith(".svg") else None)
    print(f"{args.image}: {len(groups)} operations x {len(DRIVERS)} drivers from {args.bench_output} ({args.model})")


if __name__ == "__main__":
    main()
