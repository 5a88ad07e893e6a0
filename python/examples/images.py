#!/usr/bin/env python3
"""Parallel image processing over one shared (N, H, W, 3) uint8 array, with pyshmarray.

The Python twin of ``examples/images.rs``: ``multiprocessing.Pool`` workers decode
PNG/JPEG files (Pillow) straight into their own rows of a shared array made with
``pyshmarray`` (no pixels travel back through the pool's pipes), then compute
per-image statistics over the shared array; the parent also gets each file's
SHA-256. Three modes are timed: 1 worker, K workers, and "copy through the pipe"
(workers return the decoded pixels as bytes and the parent copies them into its
array). All modes must agree, and the results agree with the Rust example's
bit for bit on PNG files (see ``python/tests/test_images.py``).

Usage::

    python3 python/examples/images.py [--dir DIR] [--count N] [--size HxW]
                                      [--workers K] [--json OUT]

Without ``--dir`` it uses the reproducible set the Rust example generates
(``target/images-N-HxW-v1``), and runs ``cargo run --release --example images --
--generate-only`` to make it when it is missing (PNG encoders differ between the
languages, so the files come from one of them).

Rules, identical to the Rust example's:

- every image becomes exactly H x W x 3 uint8 without resampling: the top-left
  ``min(h, H) x min(w, W)`` pixels are kept, the rest is zero;
- gray is replicated to R, G, B; alpha is dropped (not composited); palettes are
  expanded; 16-bit samples keep their high byte;
- ``mean[c] = sum_c / (H * W)`` where ``sum_c`` is the exact integer sum of channel
  ``c`` over the H x W pixels (padding included): one IEEE division, the same
  double in both languages; ``hist[c][v]`` is the number of pixels whose channel
  ``c`` equals ``v``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

import pyshmarray

FILES_PER_TASK = 8
GENERATOR_VERSION = 1
REPO = Path(__file__).resolve().parents[2]

# ---------------------------------------------------------------------------
# Progress bar on stderr


class Progress:
    """A ``\\r[#####     ] 123/300`` line, redrawn at most every 100 ms."""

    WIDTH = 30

    def __init__(self, label: str, total: int):
        self.label, self.total, self.done, self.drawn = label, total, 0, 0.0
        self._draw(force=True)

    def advance(self, n: int) -> None:
        self.done += n
        self._draw(force=self.done >= self.total)

    def _draw(self, force: bool) -> None:
        now = time.monotonic()
        if not force and now - self.drawn < 0.1:
            return
        self.drawn = now
        filled = self.done * self.WIDTH // self.total if self.total else self.WIDTH
        sys.stderr.write(
            f"\r{self.label:<10} [{'#' * filled}{' ' * (self.WIDTH - filled)}] "
            f"{self.done}/{self.total}"
        )
        sys.stderr.flush()

    def finish(self) -> None:
        sys.stderr.write("\n")
        sys.stderr.flush()


# ---------------------------------------------------------------------------
# Decoding into an (H, W, 3) slot


def _rgb(im: Image.Image) -> np.ndarray:
    """The image as an (h, w, 3) uint8 array by the rules in the module docs."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit gray (Pillow keeps the full value): its high byte, replicated.
        g = (np.asarray(im).astype(np.uint32) >> 8).astype(np.uint8)
        return np.repeat(g[:, :, None], 3, axis=2)
    # 16-bit RGB(A) PNGs load as 8-bit RGB(A) (high bytes). convert("RGB")
    # replicates gray, expands palettes and drops alpha without compositing.
    if im.mode != "RGB":
        im = im.convert("RGB")
    return np.asarray(im)


def decode_into(data: bytes, dst: np.ndarray) -> dict:
    """Decodes an image file's bytes into ``dst`` (H, W, 3): crop/pad, RGB."""
    sha = hashlib.sha256(data).hexdigest()
    with Image.open(io.BytesIO(data)) as im:
        fmt = {"PNG": "png", "JPEG": "jpeg"}.get(im.format)
        if fmt is None:
            raise ValueError(f"neither PNG nor JPEG ({im.format})")
        w, h = im.size
        px = _rgb(im)
    H, W = dst.shape[:2]
    hh, ww = min(h, H), min(w, W)
    if (hh, ww) != (H, W):
        dst[...] = 0
    dst[:hh, :ww] = px[:hh, :ww]
    return {"sha256": sha, "format": fmt, "width": w, "height": h}


_VALUES = np.arange(256, dtype=np.int64)


def image_stats(img: np.ndarray) -> tuple[list[float], list[list[int]]]:
    """Mean per channel (exact integer sum / pixel count) and 256-bin histograms."""
    px = img.reshape(-1, 3)
    count = px.shape[0]
    hist = np.stack([np.bincount(px[:, c], minlength=256) for c in range(3)])
    # The exact integer sum of each channel, from its histogram (int64: exact
    # below 2**63, i.e. for any image that fits in memory) -- faster than
    # px.sum(axis=0, dtype=np.uint64) and the same integer.
    sums = hist @ _VALUES
    mean = [int(s) / count for s in sums]  # int / int: one correctly rounded division
    return mean, hist.tolist()


# ---------------------------------------------------------------------------
# Tasks (module-level functions: they run in the pool's worker processes)

_attached: dict = {}


def _shared(name: str) -> np.ndarray:
    """The shared array ``name``, attached once per worker and reused."""
    a = _attached.get(name)
    if a is None:
        for old in list(_attached):  # a previous run's array: let its mapping go
            _attached.pop(old).close()
        a = _attached[name] = pyshmarray.open(name)
    return a.ndarray


def decode_shared(task):
    """Zero copy: decodes each file into its own row of the shared array."""
    name, folder, start, files = task
    arr = _shared(name)
    out = []
    for k, f in enumerate(files):
        data = (Path(folder) / f).read_bytes()
        try:
            out.append(decode_into(data, arr[start + k]))
        except Exception as e:  # noqa: BLE001 - name the file
            raise RuntimeError(f"{f}: {e}") from e
    return start, out


def decode_to_bytes(task):
    """Copy through the pipe: decodes into a private buffer and returns the pixels."""
    folder, start, files, H, W = task
    out = []
    for f in files:
        data = (Path(folder) / f).read_bytes()
        px = np.zeros((H, W, 3), np.uint8)
        try:
            info = decode_into(data, px)
        except Exception as e:  # noqa: BLE001
            raise RuntimeError(f"{f}: {e}") from e
        out.append((info, px.tobytes()))
    return start, out


def stats_rows(task):
    """Statistics of rows lo..hi of the shared array, in order."""
    name, lo, hi = task
    arr = _shared(name)
    return [image_stats(arr[i]) for i in range(lo, hi)]


# ---------------------------------------------------------------------------
# The three modes


def run_mode(pool, workers, mode, label, folder, files, H, W):
    n = len(files)
    name = f"pyshmarray-example-images-{os.getpid()}-{label.replace(' ', '-')}"
    with pyshmarray.create(name, shape=(n, H, W, 3), dtype="u1") as images:
        arr = images.ndarray
        decoded = [None] * n
        chunks = [(s, files[s : s + FILES_PER_TASK]) for s in range(0, n, FILES_PER_TASK)]
        bar = Progress(label, n)
        t0 = time.perf_counter()
        if mode == "shared":
            tasks = [(name, str(folder), s, c) for s, c in chunks]
            for start, infos in pool.imap_unordered(decode_shared, tasks):
                decoded[start : start + len(infos)] = infos
                bar.advance(len(infos))
        else:
            tasks = [(str(folder), s, c, H, W) for s, c in chunks]
            for start, got in pool.imap_unordered(decode_to_bytes, tasks):
                for j, (info, px) in enumerate(got):
                    arr[start + j] = np.frombuffer(px, np.uint8).reshape(H, W, 3)
                    decoded[start + j] = info
                bar.advance(len(got))
        t_decode = time.perf_counter() - t0
        bar.finish()
        t0 = time.perf_counter()
        parts = workers * 4
        step = -(-n // parts)
        stats = [
            s
            for part in pool.map(stats_rows, [(name, lo, min(lo + step, n)) for lo in range(0, n, step)])
            for s in part
        ]
        t_stats = time.perf_counter() - t0
        del arr
    return {
        "label": label,
        "mode": mode,
        "workers": workers,
        "decode": t_decode,
        "stats": t_stats,
        "decoded": decoded,
        "stats_out": stats,
    }


def _warm_up(_):
    """Loads Pillow's plugins (lazy otherwise: ~15 ms in a worker's first task)."""
    Image.init()
    return os.getpid()


def default_dir(count: int, H: int, W: int) -> Path:
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    folder = target / f"images-{count}-{H}x{W}-v{GENERATOR_VERSION}"
    if (folder / "COMPLETE").exists():
        return folder
    cmd = ["cargo", "run", "--release", "--example", "images", "--",
           "--count", str(count), "--size", f"{H}x{W}", "--generate-only"]
    if not (REPO / "Cargo.toml").exists() or shutil.which("cargo") is None:
        sys.exit(f"no generated set at {folder}: run `{' '.join(cmd)}` in the shmarray "
                 "repository, or pass --dir")
    print(f"generating the image set with: {' '.join(cmd)}", file=sys.stderr)
    subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    return folder


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dir", type=Path, help="folder of .png/.jpg/.jpeg files")
    p.add_argument("--count", type=int, default=300, help="size of the generated set")
    p.add_argument("--size", default="128x128", help="HxW of the shared array's images")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--json", type=Path, help="write per-image results here")
    p.add_argument("--repeat", type=int, default=1, help="run each mode R times, report the fastest")
    args = p.parse_args(argv)
    H, W = (int(v) for v in args.size.split("x"))
    if H <= 0 or W <= 0 or args.workers <= 0:
        p.error("--size and --workers must be positive")

    folder = args.dir if args.dir is not None else default_dir(args.count, H, W)
    files = sorted(
        f for f in os.listdir(folder)
        if not f.startswith(".") and f.lower().endswith((".png", ".jpg", ".jpeg"))
    )
    if not files:
        sys.exit(f"no .png/.jpg/.jpeg files in {folder}")
    size = sum((Path(folder) / f).stat().st_size for f in files)
    print(f"{len(files)} files ({size / 2**20:.1f} MiB) from {folder} -> shared array "
          f"({len(files)}, {H}, {W}, 3) u8 = {len(files) * H * W * 3 / 2**20:.1f} MiB")

    t0 = time.perf_counter()
    pool_1 = multiprocessing.Pool(1)
    pool_n = multiprocessing.Pool(args.workers)
    # Workers start lazily: make sure they are up and warm before timing.
    pool_1.map(_warm_up, [None] * 4)
    pool_n.map(_warm_up, [None] * 4 * args.workers)
    print(f"pools started in {(time.perf_counter() - t0) * 1e3:.1f} ms (not in the times below)")
    try:
        runs = [
            min((run_mode(pool, k, mode, label, folder, files, H, W)
                 for _ in range(max(args.repeat, 1))),
                key=lambda r: r["decode"] + r["stats"])
            for pool, k, mode, label in [
                (pool_1, 1, "shared", "shared 1"),
                (pool_n, args.workers, "shared", "shared N"),
                (pool_n, args.workers, "pipe", "pipe N"),
            ]
        ]
    finally:
        for pool in (pool_1, pool_n):
            pool.close()
            pool.join()

    base = runs[0]["decode"] + runs[0]["stats"]
    print()
    print("| mode | workers | decode | stats | total | images/s | speed-up |")
    print("|---|---|---|---|---|---|---|")
    for r in runs:
        total = r["decode"] + r["stats"]
        mode = ("zero-copy (decode into shared rows)" if r["mode"] == "shared"
                else "copy through the pipe")
        print(f"| {mode} | {r['workers']} | {r['decode'] * 1e3:.1f} ms | "
              f"{r['stats'] * 1e3:.1f} ms | {total * 1e3:.1f} ms | "
              f"{len(files) / total:.0f} | {base / total:.2f}x |")

    for r in runs[1:]:
        for i, f in enumerate(files):
            if (r["stats_out"][i] != runs[0]["stats_out"][i]
                    or r["decoded"][i]["sha256"] != runs[0]["decoded"][i]["sha256"]):
                sys.exit(f"{f}: mode {r['label']!r} disagrees with mode 1")
    n_png = sum(d["format"] == "png" for d in runs[0]["decoded"])
    print(f"\nall modes agree on {len(files)} images ({n_png} PNG, {len(files) - n_png} JPEG): "
          "sha256, mean and 256-bin histograms per channel")

    if args.json is not None:
        images = [
            {"file": f, **d, "mean": mean, "hist": hist}
            for f, d, (mean, hist) in zip(files, runs[1]["decoded"], runs[1]["stats_out"])
        ]
        with open(args.json, "w") as out:
            json.dump({"height": H, "width": W, "count": len(files), "images": images}, out)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
