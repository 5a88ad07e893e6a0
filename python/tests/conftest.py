"""Fixtures of the pyshmarray tests: unique segment names, the Rust peer, a
check that nothing is left in /dev/shm."""

import functools
import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PREFIX = f"shmarray-test-py-{os.getpid()}-"
_counter = itertools.count()

if os.environ.get("PYSHMARRAY_EXPECT_INSTALLED"):
    # CI's wheel run: the package under test is the installed wheel, not the
    # source tree next to these tests.
    import pyshmarray

    _where = Path(pyshmarray.__file__).resolve()
    assert "site-packages" in _where.parts, f"pyshmarray imported from {_where}, not a wheel"
    assert not _where.is_relative_to(ROOT), f"pyshmarray imported from the source tree: {_where}"


@functools.lru_cache(maxsize=None)
def cargo_target_dir() -> Path:
    """Where cargo puts what it builds: `cargo metadata` knows ($CARGO_TARGET_DIR,
    .cargo/config.toml); without cargo, $CARGO_TARGET_DIR or ./target."""
    if shutil.which("cargo"):
        r = subprocess.run(
            ["cargo", "metadata", "--format-version", "1", "--no-deps"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if r.returncode == 0:
            return Path(json.loads(r.stdout)["target_directory"])
    env = os.environ.get("CARGO_TARGET_DIR")
    return ROOT / env if env else ROOT / "target"


def shm_dir() -> Path:
    return Path(os.environ.get("SHMARRAY_DIR", "/dev/shm"))


def leftovers(prefix: str = PREFIX):
    return sorted(p.name for p in shm_dir().iterdir() if p.name.startswith(prefix))


@pytest.fixture
def name(request):
    """A factory of unique segment names: shmarray-test-py-<pid>-<test>-<n>."""
    base = request.node.name.replace("[", "-").replace("]", "").replace("/", "-")[:40]

    def make(tag: str = "") -> str:
        return f"{PREFIX}{base}{'-' + tag if tag else ''}-{next(_counter)}"

    yield make
    # Clean up whatever this test left (also when it failed), then insist.
    import gc

    gc.collect()
    left = [n for n in leftovers() if n.startswith(f"{PREFIX}{base}")]
    for n in left:
        try:
            (shm_dir() / n).unlink()
        except FileNotFoundError:
            pass
    assert not left, f"segments left in {shm_dir()}: {left}"


@pytest.fixture(scope="session")
def peer():
    """Path of the Rust peer (examples/py_peer.rs), built once per session (or
    $PY_PEER)."""
    exe = os.environ.get("PY_PEER")
    if not exe:
        subprocess.run(
            ["cargo", "build", "--quiet", "--release", "--example", "py_peer"],
            cwd=ROOT,
            check=True,
            timeout=900,
        )
        exe = str(cargo_target_dir() / "release" / "examples" / "py_peer")
    return exe


def run_peer(peer, *args, timeout=30, check=True):
    """Runs one role of the Rust peer and returns the completed process."""
    r = subprocess.run(
        [peer, *map(str, args)], capture_output=True, text=True, timeout=timeout
    )
    if check:
        assert r.returncode == 0, f"py_peer {args}: rc={r.returncode} stderr={r.stderr}"
    return r


def python_child(code: str, *args, **kw):
    """Starts `python -c code args...` with stdout piped (text)."""
    return subprocess.Popen(
        [sys.executable, "-c", code, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def pytest_sessionfinish(session, exitstatus):
    left = leftovers()
    for n in left:
        try:
            (shm_dir() / n).unlink()
        except FileNotFoundError:
            pass
    if left:
        print(f"\nsegments left in {shm_dir()}: {left}", file=sys.stderr)
        session.exitstatus = 1
