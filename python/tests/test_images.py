"""The Rust and Python image pipelines agree on every statistic and digest.

``examples/images.rs`` generates a small reproducible set (with every real-format
edge case) and writes its per-image results; ``python/examples/images.py`` runs on
the same folder with ``pyshmarray`` and ``multiprocessing.Pool``. PNG results must be
identical bit for bit (means compared as doubles, histograms as integers). JPEG
results are compared with a tolerance: Pillow decodes with libjpeg-turbo, the Rust
example with zune-jpeg, and their IDCT/colour-conversion rounding differs by up to
3 per sample (measured on the generated set: ~1% of samples differ).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

import pyshmarray  # noqa: F401  - the script needs it; fail here, clearly, if missing

from conftest import cargo_target_dir

REPO = Path(__file__).resolve().parents[2]
PY_EXAMPLE = REPO / "python" / "examples" / "images.py"
COUNT, H, W = 40, 64, 48
TIMEOUT = 300
# JPEG: decoders differ (see the module docs); measured max |mean diff| 0.01.
JPEG_MEAN_TOLERANCE = 0.05
JPEG_MOVED_FRACTION = 0.05


@pytest.fixture(scope="module")
def rust_example() -> Path:
    """The Rust example, built (or brought up to date) once for this module."""
    if os.environ.get("IMAGES_EXAMPLE"):  # built beforehand (CI's wheel run)
        return Path(os.environ["IMAGES_EXAMPLE"])
    if shutil.which("cargo") is not None:
        subprocess.run(
            ["cargo", "build", "--release", "--example", "images"],
            cwd=REPO, check=True, timeout=1200,
        )
    example = cargo_target_dir() / "release" / "examples" / "images"
    if not example.exists():
        pytest.fail(f"{example} is missing and cargo is not available to build it")
    return example


def _shm_leftovers() -> set[str]:
    return {
        n for n in os.listdir("/dev/shm")
        if n.startswith(("shmarray-example-images-", "pyshmarray-example-images-"))
    }


@pytest.fixture(scope="module")
def results(rust_example, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("images")
    images = tmp / "set"
    before = _shm_leftovers()
    common = ["--count", str(COUNT), "--size", f"{H}x{W}", "--workers", "2"]
    subprocess.run(
        [str(rust_example), *common, "--cache", str(images), "--json", str(tmp / "rust.json")],
        check=True, timeout=TIMEOUT, cwd=tmp,
    )
    subprocess.run(
        [sys.executable, str(PY_EXAMPLE), *common, "--dir", str(images),
         "--json", str(tmp / "py.json")],
        check=True, timeout=TIMEOUT, cwd=tmp,
    )
    assert _shm_leftovers() - before == set(), "segments left in /dev/shm"
    rust = json.loads((tmp / "rust.json").read_text())
    py = json.loads((tmp / "py.json").read_text())
    return images, rust, py


def test_the_set_has_the_real_format_edge_cases(results):
    images, rust, _ = results
    seen = set()
    for f in sorted(images.iterdir()):
        if f.suffix not in (".png", ".jpg"):
            continue
        with Image.open(f) as im:
            seen.add((im.format, im.mode))
            if im.size != (W, H):
                seen.add("other size")
            if im.mode.startswith("I"):  # Pillow keeps 16-bit gray PNGs as I;16
                seen.add("16-bit gray")
    for case in [("PNG", "RGB"), ("PNG", "L"), ("PNG", "LA"), ("PNG", "RGBA"), ("PNG", "P"),
                 ("JPEG", "RGB"), ("JPEG", "L"), "other size", "16-bit gray"]:
        assert case in seen, f"{case} missing from {sorted(map(str, seen))}"
    assert rust["count"] == COUNT and (rust["height"], rust["width"]) == (H, W)


def test_digests_formats_and_sizes_agree(results):
    _, rust, py = results
    assert [r["file"] for r in rust["images"]] == [p["file"] for p in py["images"]]
    for r, p in zip(rust["images"], py["images"]):
        for key in ("sha256", "format", "width", "height"):
            assert r[key] == p[key], (r["file"], key)


def test_png_statistics_are_bit_identical(results):
    _, rust, py = results
    pngs = [(r, p) for r, p in zip(rust["images"], py["images"]) if r["format"] == "png"]
    assert len(pngs) >= COUNT * 3 // 4
    for r, p in pngs:
        # JSON numbers are shortest round-trip decimals on both sides: equal
        # doubles parse to equal floats; compare the bits to be explicit.
        assert [m.hex() for m in map(float, r["mean"])] == [m.hex() for m in map(float, p["mean"])], r["file"]
        assert r["hist"] == p["hist"], r["file"]
        assert all(sum(h) == H * W for h in r["hist"])


def test_jpeg_statistics_agree_within_decoder_rounding(results):
    _, rust, py = results
    jpegs = [(r, p) for r, p in zip(rust["images"], py["images"]) if r["format"] == "jpeg"]
    assert jpegs, "the generated set has JPEG files"
    worst_mean, worst_moved = 0.0, 0.0
    for r, p in jpegs:
        for c in range(3):
            assert sum(r["hist"][c]) == sum(p["hist"][c]) == H * W
            d = abs(r["mean"][c] - p["mean"][c])
            moved = sum(abs(a - b) for a, b in zip(r["hist"][c], p["hist"][c])) / 2 / (H * W)
            worst_mean, worst_moved = max(worst_mean, d), max(worst_moved, moved)
            assert d <= JPEG_MEAN_TOLERANCE, (r["file"], c, d)
            assert moved <= JPEG_MOVED_FRACTION, (r["file"], c, moved)
    print(f"JPEG: worst |mean diff| {worst_mean:.4f}, worst share of pixels in another "
          f"histogram bin {worst_moved:.2%} ({len(jpegs)} files)")
