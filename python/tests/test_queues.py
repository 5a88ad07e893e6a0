"""Queues from Python: items, numpy batches, timeouts, closing, byte messages."""

import multiprocessing as mp
import time

import numpy as np
import pytest

import pyshmarray as shm


@pytest.mark.parametrize("dt", ["u1", "i2", "u4", "i8", "u8", "f4", "f8"])
def test_items_and_batches(name, dt):
    q = shm.Queue.create(name(), 32, dt)
    assert q.dtype == np.dtype(dt) and q.capacity >= 32
    q.put(5)
    q.put_many(np.arange(10, dtype=dt))
    assert len(q) == 11 and q.get() == 5
    got = q.get_many(100)
    assert got.dtype == np.dtype(dt) and got.flags.writeable
    np.testing.assert_array_equal(got, np.arange(10, dtype=dt))
    q2 = shm.Queue.open(q.name)
    assert q2.dtype == np.dtype(dt)


def test_timeouts_full_empty(name):
    q = shm.Queue.create(name(), 2, "f8")
    t = time.monotonic()
    with pytest.raises(shm.Empty) as e:
        q.get(timeout=0.1)
    assert time.monotonic() - t >= 0.09
    import queue

    assert isinstance(e.value, queue.Empty) and isinstance(e.value, TimeoutError)
    q.put(1.0)
    q.put(2.0)
    with pytest.raises(shm.Full):
        q.put(3.0, timeout=0)
    with pytest.raises(shm.Full):
        q.put_many(np.ones(4), timeout=0.05)
    with pytest.raises(shm.Empty):
        shm.Queue.create(name("e"), 2).get_many(4, timeout=0)
    with pytest.raises(OverflowError):
        shm.Queue.create(name("u1"), 2, "u1").put(300)


def test_shutdown_drains_then_raises(name):
    q = shm.Queue.create(name(), 8)
    other = shm.Queue.open(q.name)
    q.put_many([1, 2, 3])
    q.shutdown()
    assert q.is_shutdown and other.is_shutdown and not q.closed
    with pytest.raises(shm.QueueClosed):
        other.put(4)
    np.testing.assert_array_equal(other.get_many(10), [1, 2, 3])
    with pytest.raises(shm.QueueClosed):
        q.get(timeout=1)
    import queue

    if hasattr(queue, "ShutDown"):  # Python 3.13+: what queue.Queue raises
        with pytest.raises(queue.ShutDown):
            q.get(timeout=0)


def test_byte_queue(name):
    q = shm.ByteQueue.create(name(), 4, 64)
    q.put(b"apple")
    q.put(bytearray(b"pear"))
    assert q.get() == b"apple" and q.get(timeout=1) == b"pear"
    with pytest.raises(shm.ShmarrayError):
        q.put(b"x" * 65)
    with pytest.raises(shm.Empty):
        q.get(timeout=0.01)
    r = shm.ByteQueue.open(q.name)
    r.put(b"kiwi")
    assert q.get() == b"kiwi"


def _produce(qname, n, batch):
    q = shm.Queue.open(qname)
    for s in range(0, n, batch):
        q.put_many(np.arange(s, min(n, s + batch), dtype=np.uint64), timeout=30)


@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_two_producers_one_consumer_exactly_once(name, method):
    ctx = mp.get_context(method)
    q = shm.Queue.create(name(), 256)
    n = 50_000
    procs = [ctx.Process(target=_produce, args=(q.name, n, 300)) for _ in range(2)]
    for p in procs:
        p.start()
    got = []
    total = 0
    while total < 2 * n:
        b = q.get_many(1000, timeout=30)
        got.append(b)
        total += len(b)
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    counts = np.bincount(np.concatenate(got).astype(np.int64), minlength=n)
    assert (counts == 2).all()
