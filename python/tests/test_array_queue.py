"""ArrayQueue: numpy arrays between processes that keep shape, dtype and order."""

import multiprocessing as mp
import pickle
import time

import numpy as np
import pytest

import pyshmarray as shm


@pytest.mark.parametrize(
    "a",
    [
        np.arange(1024, dtype="u8"),
        np.linspace(0, 1, 1024),
        np.arange(24, dtype="i2").reshape(2, 3, 4),
        np.asfortranarray(np.arange(12, dtype="f4").reshape(3, 4)),
        np.array(3.5),  # 0-d
        np.zeros((0, 5), dtype="u1"),  # empty
        np.array([True, False, True]),
        np.array([1 + 2j, 3 - 4j], dtype="c16"),
        np.zeros(3, dtype=[("x", "<f4"), ("id", "<u2")]),
        np.arange(8, dtype=">i4"),  # big-endian stays big-endian
    ],
    ids=lambda a: f"{a.dtype.str}{a.shape}",
)
def test_shape_dtype_and_order_are_kept(name, a):
    with shm.ArrayQueue.create(name(), 4) as q:
        q.put(a)
        q.put(a)  # second put: the cached header
        for _ in range(2):
            b = q.get(timeout=5)
            assert type(b) is np.ndarray
            assert b.shape == a.shape and b.dtype == a.dtype
            if a.flags.f_contiguous and not a.flags.c_contiguous:
                assert b.flags.f_contiguous and not b.flags.c_contiguous
            assert b.flags.writeable
            np.testing.assert_array_equal(b, a)
            b[...] = b  # writable


def test_non_contiguous_and_list_inputs(name):
    with shm.ArrayQueue.create(name(), 4) as q:
        a = np.arange(20, dtype="i8").reshape(4, 5)[::2, 1::2]
        q.put(a)
        q.put([[1, 2], [3, 4]])
        b = q.get(timeout=5)
        assert b.shape == (2, 2) and b.flags.c_contiguous
        np.testing.assert_array_equal(b, a)
        c = q.get(timeout=5)
        assert c.shape == (2, 2) and c.dtype == np.asarray([[1]]).dtype


def test_got_array_owns_a_copy(name):
    with shm.ArrayQueue.create(name(), 4) as q:
        a = np.arange(4.0)
        q.put(a)
        a[0] = 99  # changing the source after put changes nothing
        b = q.get(timeout=5)
        assert b[0] == 0
        q.put(np.ones(4))
        c = q.get(timeout=5)
        c[:] = 7  # the slot is reused: b is not a view of it
        assert b.tolist() == [0, 1, 2, 3]


def test_refused_inputs_have_clear_errors(name):
    with shm.ArrayQueue.create(name(), 2, max_bytes=64) as q:
        with pytest.raises(TypeError, match="Python objects"):
            q.put(np.array([object(), 1], dtype=object))
        with pytest.raises(TypeError, match="plain numpy arrays"):
            q.put(np.ma.masked_array([1, 2], mask=[0, 1]))
        with pytest.raises(ValueError, match="max_bytes >= 320"):
            q.put(np.zeros(40, dtype="f8"))
        q.put(np.zeros(8, dtype="f8"))  # 64 bytes: fits
        assert q.max_bytes == 64 and len(q) == 1
        # Nothing refused went in.
        assert q.get(timeout=5).shape == (8,) and q.empty()
    with pytest.raises(ValueError, match="capacity"):
        shm.ArrayQueue.create(name("c"), 0)
    with pytest.raises(ValueError, match="max_bytes"):
        shm.ArrayQueue.create(name("m"), 2, -1)


def test_foreign_messages_are_typed_errors(name):
    n = name()
    with shm.ArrayQueue.create(n, 4, 64) as q:
        bq = shm.ByteQueue.open(n)
        bq.put(b"not an array")
        with pytest.raises(shm.TypeMismatchError, match="not an array"):
            q.get(timeout=5)
        bq.put(b"\x93NUMPY\x09\x00junk")
        with pytest.raises(shm.CorruptError, match="version"):
            q.get(timeout=5)
        # A header that says more data than the message holds.
        import io

        buf = io.BytesIO()
        np.lib.format.write_array(buf, np.arange(4, dtype="u8"))
        bq.put(buf.getvalue()[:-8])
        with pytest.raises(shm.CorruptError, match="bytes of data"):
            q.get(timeout=5)
        # An .npy message put by a ByteQueue is an array for numpy and for q.
        bq.put(buf.getvalue())
        np.testing.assert_array_equal(q.get(timeout=5), np.arange(4, dtype="u8"))
        q.put(np.arange(3, dtype="i4"))
        np.testing.assert_array_equal(
            np.load(io.BytesIO(bq.get(timeout=5))), np.arange(3, dtype="i4")
        )
        bq.close()


def test_timeouts_nowait_and_shutdown(name):
    with shm.ArrayQueue.create(name(), 1, 64) as q:
        t = time.monotonic()
        with pytest.raises(shm.Empty):
            q.get(timeout=0.1)
        assert time.monotonic() - t >= 0.09
        with pytest.raises(shm.Empty):
            q.get_nowait()
        for _ in range(q.capacity):
            assert not q.full()
            q.put_nowait(np.ones(2))
        assert q.full() and q.qsize() == q.capacity
        t = time.monotonic()
        with pytest.raises(shm.Full):
            q.put(np.ones(2), timeout=0.1)
        assert time.monotonic() - t >= 0.09
        with pytest.raises(shm.Full):
            q.put_nowait(np.ones(2))
        with pytest.raises(ValueError):
            q.get(timeout=-1)
        with pytest.raises(OverflowError):
            q.get(timeout=shm.TIMEOUT_MAX * 2)
        q.shutdown()
        assert q.is_shutdown
        for _ in range(q.capacity):  # drained first
            np.testing.assert_array_equal(q.get(timeout=5), np.ones(2))
        with pytest.raises(shm.QueueClosed):
            q.get(timeout=5)


def _consumer(qname, n, out):
    q = shm.ArrayQueue.open(qname)
    total = 0
    for _ in range(n):
        a = q.get(timeout=30)
        assert a.shape == (3, 1024) and a.dtype == np.dtype("f8")
        total += int(a[0, 0])
    out.put(total)


@pytest.mark.timeout(120)
def test_two_processes_and_a_pickled_handle(name):
    ctx = mp.get_context("spawn")
    n = 300
    with shm.ArrayQueue.create(name(), 8, 3 * 1024 * 8) as q:
        assert q.capacity >= 8
        out = ctx.Queue()
        # The handle pickles by name: the child opens it, not owning it.
        p = ctx.Process(target=_consumer, args=(q.name, n, out))
        p.start()
        for i in range(n):
            q.put(np.full((3, 1024), i, dtype="f8"), timeout=30)
        assert out.get(timeout=60) == sum(range(n))
        p.join(30)
        assert p.exitcode == 0
        c = pickle.loads(pickle.dumps(q))
        assert type(c) is shm.ArrayQueue and not c.is_owner and c.capacity == q.capacity
        c.close()
