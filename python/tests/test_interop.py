"""Python <-> Rust on one array and one queue, in both directions."""

import subprocess

import numpy as np

import pyshmarray as shm
from conftest import run_peer


def test_rust_fills_python_reads(name, peer):
    n = name()
    run_peer(peer, "fill", n, 1000)
    try:
        a = shm.open(n)
        assert a.dtype == np.float64 and a.shape == (1000,)
        with a.read() as r:
            np.testing.assert_array_equal(r, 1.5 * np.arange(1000))
        a.close()
    finally:
        shm.remove(n)


def test_python_fills_rust_verifies(name, peer):
    with shm.create(name(), 1000, "f8") as a:
        with a.lock() as arr:
            arr[:] = 2.0 * np.arange(1000)
        run_peer(peer, "verify", a.name, 1000)
        with a.lock() as arr:
            arr[5] = 0.0
        assert run_peer(peer, "verify", a.name, 1000, check=False).returncode != 0


def test_python_puts_rust_gets(name, peer):
    q = shm.Queue.create(name(), 64, "u8")
    p = subprocess.Popen([peer, "get", q.name, "20000"], stderr=subprocess.PIPE, text=True)
    items = np.arange(20000, dtype=np.uint64)
    for chunk in np.array_split(items, 37):
        q.put_many(chunk, timeout=20)
    assert p.wait(30) == 0, p.stderr.read()


def test_rust_puts_python_gets(name, peer):
    q = shm.Queue.create(name(), 64)
    p = subprocess.Popen([peer, "put", q.name, "20000"])
    got = []
    while True:
        try:
            got.append(q.get_many(500, timeout=20))
        except shm.QueueClosed:
            break
    assert p.wait(30) == 0
    np.testing.assert_array_equal(np.concatenate(got), np.arange(20000, dtype=np.uint64))


def test_rust_adds_to_python_value(name, peer):
    v = shm.Value.create(name(), 0)
    p = subprocess.Popen([peer, "value-add", v.name, "20000"])
    for _ in range(20000):
        v.add(1)
    assert p.wait(30) == 0
    assert v.value == 40000
