#!/usr/bin/env python3
"""Turns the last `cargo bench` run into the SVG charts the guide's benchmarks chapter shows (docs/bench/*.svg).

Reads criterion's estimates (target/criterion/<group>/<bench>/new/*.json) and
writes docs/bench/{zero_copy,attach,locks,queue}.svg: plain SVG, no plotting library.
Run after `cargo bench` (or after the benches the charts use):

    cargo bench --bench zero_copy --bench attach --bench locks --bench queue
    python3 scripts/bench_plots.py [--machine "2-vCPU AMD EPYC VM"]

Each chart states the machine and the date of the run it shows. Criterion's own
HTML reports are in target/criterion/report/index.html.
"""

import argparse
import datetime
import html
import json
import os
import platform
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CRITERION = os.path.join(ROOT, "target", "criterion")
OUT = os.path.join(ROOT, "docs", "bench")


# Shared-memory variants of benches/zero_copy.rs: (bench id, label).
PAGE_VARIANTS = (
    ("shared_memory", "4 KiB"),
    ("shared_memory_hugetlb", "hugetlb"),
    ("shared_memory_thp", "THP"),
)


def estimate(path):
    """(median ns per iteration, throughput per iteration or None, mtime) of a bench."""
    new = os.path.join(CRITERION, path, "new")
    with open(os.path.join(new, "estimates.json")) as f:
        ns = json.load(f)["median"]["point_estimate"]
    with open(os.path.join(new, "benchmark.json")) as f:
        tp = json.load(f).get("throughput") or {}
    per_iter = tp.get("Elements") or tp.get("Bytes")
    return ns, per_iter, os.path.getmtime(os.path.join(new, "estimates.json"))


def bars(title, subtitle, rows, unit, note):
    """A horizontal bar chart: rows are (label, value, highlighted)."""
    width, left, bar_h, gap, top = 760, 300, 22, 8, 70
    height = top + len(rows) * (bar_h + gap) + 50
    peak = max(v for _, v, _ in rows) or 1.0
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="13">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="10" y="24" font-size="16" font-weight="bold">{html.escape(title)}</text>',
        f'<text x="10" y="44" fill="#555">{html.escape(subtitle)}</text>',
    ]
    for i, (label, value, mine) in enumerate(rows):
        y = top + i * (bar_h + gap)
        w = max(1.0, (width - left - 110) * value / peak)
        colour = "#2b6cb0" if mine else "#a0aec0"
        out.append(
            f'<text x="{left - 8}" y="{y + 16}" text-anchor="end">{html.escape(label)}</text>'
        )
        out.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{colour}"/>')
        out.append(f'<text x="{left + w + 6:.1f}" y="{y + 16}">{value:.3g} {html.escape(unit)}</text>')
    out.append(
        f'<text x="10" y="{height - 14}" fill="#555" font-size="11">{html.escape(note)}</text>'
    )
    out.append("</svg>")
    return "\n".join(out)


def rate(path, scale):
    """Items (or bytes) per second of a bench, divided by `scale`."""
    ns, per_iter, t = estimate(path)
    return (per_iter or 1) / (ns * 1e-9) / scale, t


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--machine", default=f"{os.cpu_count()} CPUs, {platform.machine()}, Linux {platform.release()}")
    args = ap.parse_args()
    if not os.path.isdir(CRITERION):
        sys.exit("no target/criterion: run `cargo bench` first")
    os.makedirs(OUT, exist_ok=True)
    when = []

    def stamp(t):
        when.append(t)
        return t

    # Zero copy: speed-up over the pipe, by size and page size (huge-page variants
    # only where the run had a huge-page directory).
    rows = []
    for mib in (1, 16, 256):
        pipe, _, t2 = estimate(f"double_in_worker/pipe/{mib}")
        for bench, pages in PAGE_VARIANTS:
            path = f"double_in_worker/{bench}/{mib}"
            if not os.path.isdir(os.path.join(CRITERION, path)):
                continue
            shm, _, t1 = estimate(path)
            stamp(max(t1, t2))
            rows.append((f"{mib} MiB, {pages}: pipe {pipe / 1e6:.1f} / shm {shm / 1e6:.2f} ms", pipe / shm, True))
    charts = {
        "zero_copy": (
            "Zero copy vs pipe: hand an f64 array to a worker that doubles it",
            "speed-up of the shared-memory round trip over the pipe round trip (higher is better)",
            rows,
            "x",
        )
    }

    # Attach: fresh attach + kernel in a worker / the kernel in a process that has
    # the array mapped already, by page size.
    attach_rows = []
    group = os.path.join(CRITERION, "attach_kernel_256MiB")
    for label, pages in (("4k", "4 KiB pages"), ("hugetlb", "2 MiB hugetlb"), ("thp", "2 MiB THP")):
        if not os.path.isdir(os.path.join(group, "fresh_attach_and_kernel", label)):
            continue
        fresh, _, t1 = estimate(f"attach_kernel_256MiB/fresh_attach_and_kernel/{label}")
        local, _, t2 = estimate(f"attach_kernel_256MiB/in_process_kernel/{label}")
        stamp(max(t1, t2))
        attach_rows.append((f"{pages}: {fresh / 1e6:.1f} / {local / 1e6:.1f} ms", fresh / local, label != "4k"))
    if attach_rows:
        charts["attach"] = (
            "Fresh attach + kernel vs in-process kernel, 256 MiB",
            "a worker attaches by name, doubles in place, detaches; ratio to the kernel alone (lower is better)",
            attach_rows,
            "x",
        )

    # Locks: uncontended rate, and two processes contending.
    lock_rows = []
    for path, label, mine in [
        ("uncontended/shmarray_array_lock", "uncontended: shmarray array lock", True),
        ("uncontended/shmarray_value_lock", "uncontended: shmarray SharedValue", True),
        ("uncontended/raw_sync_mutex", "uncontended: raw_sync Mutex", False),
        ("contended_2proc/shmarray_lock", "2 processes: shmarray lock", True),
        ("contended_2proc/raw_sync_mutex", "2 processes: raw_sync Mutex", False),
    ]:
        r, t = rate(path, 1e6)
        stamp(t)
        lock_rows.append((label, r, mine))
    charts["locks"] = (
        "Locks: lock + increment + unlock",
        "millions per second (higher is better); raw_sync is not robust (kill -9 deadlocks it)",
        lock_rows,
        "M/s",
    )

    queue_rows = []
    for path, label, mine in [
        ("spsc_u64/queue_batched", "1 -> 1 process, batched", True),
        ("spsc_u64/queue_one_at_a_time", "1 -> 1 process, one per call", True),
        ("mpmc_2x2_u64/queue_batched", "2 -> 2 processes, batched", True),
        ("spsc_u64/pipe_batched", "pipe, raw bytes (no MPMC, no items)", False),
        ("in_process_u64/std_mpsc_sync_channel", "std sync_channel, 2 threads", False),
        ("in_process_u64/crossbeam_bounded", "crossbeam bounded, 2 threads", False),
    ]:
        r, t = rate(path, 1e6)
        stamp(t)
        queue_rows.append((label, r, mine))
    charts["queue"] = (
        "Queue of u64 between processes",
        "millions of items per second (higher is better)",
        queue_rows,
        "M/s",
    )

    date = datetime.datetime.fromtimestamp(max(when)).strftime("%Y-%m-%d")
    note = f"{args.machine}; criterion medians, run of {date}; scripts/bench_plots.py"
    for name, (title, subtitle, rows, unit) in charts.items():
        path = os.path.join(OUT, f"{name}.svg")
        with open(path, "w") as f:
            f.write(bars(title, subtitle, rows, unit, note) + "\n")
        print(f"wrote {os.path.relpath(path, ROOT)}")


if __name__ == "__main__":
    main()
