"""Arrays: create/open, dtypes, views, ownership, counters, listing, misuse."""

import os
import threading

import numpy as np
import pytest

import pyshmarray as shm
from conftest import shm_dir

DTYPES = ["u1", "u2", "u4", "u8", "i1", "i2", "i4", "i8", "f4", "f8"]


@pytest.mark.parametrize("dt", DTYPES)
def test_every_dtype_round_trips(name, dt):
    n = name(dt)
    with shm.create(n, (3, 5), dt) as a:
        assert a.dtype == np.dtype(dt) and a.shape == (3, 5) and a.name == n
        a.ndarray[...] = np.arange(15, dtype=dt).reshape(3, 5)
        b = shm.open(n)
        assert b.dtype == np.dtype(dt) and b.shape == (3, 5)
        np.testing.assert_array_equal(b.ndarray, np.arange(15, dtype=dt).reshape(3, 5))
        # numpy sees the same bytes through the file too.
        np.testing.assert_array_equal(np.load(a.path, mmap_mode="r"), b.ndarray)
        b.close()


def test_dtype_objects_and_names(name):
    for i, dt in enumerate([np.float32, np.dtype("int16"), "uint8", "<f8", float]):
        with shm.create(name(str(i)), 4, dt) as a:
            assert a.dtype == np.dtype(dt)
    with pytest.raises(shm.TypeMismatchError):
        shm.create(name("str"), 4, "U4")
    with pytest.raises(shm.TypeMismatchError):
        shm.create(name("be"), 4, ">f8")


def test_zero_copy_and_fortran(name):
    n = name()
    with shm.create(n, (4, 3), "f8", fortran=True) as a:
        arr = a.ndarray
        assert arr.flags.f_contiguous and arr.shape == (4, 3)
        arr[1, 2] = 7.0
        b = shm.open(n)
        assert b.ndarray[1, 2] == 7.0 and b.ndarray.flags.f_contiguous
        assert np.asarray(b)[1, 2] == 7.0
        b.close()


def test_readonly_open(name):
    n = name()
    with shm.create(n, 8, "i4") as a:
        a.ndarray[:] = 3
        r = shm.open(n, readonly=True)
        assert not r.ndarray.flags.writeable and r.ndarray.sum() == 24
        with pytest.raises(ValueError):
            r.ndarray[0] = 1
        with pytest.raises(shm.ShmarrayError):
            with r.lock():
                pass
        r.close()


def test_ndarray_outlives_close(name):
    n = name()
    a = shm.create(n, 1000, "f8")
    arr = a.ndarray
    arr[:] = 2.0
    a.close()
    assert not os.path.exists(shm_dir() / n)
    assert arr.sum() == 2000.0  # the mapping lives as long as the array
    with pytest.raises(shm.ShmarrayError):
        a.lock()
    a.close()  # idempotent


def test_owner_removes_name_on_gc_and_persistent_keeps_it(name):
    n = name()
    a = shm.create(n, 4)
    del a
    import gc

    gc.collect()
    assert not os.path.exists(shm_dir() / n)
    p = name("persist")
    a = shm.create(p, 4, persistent=True)
    a.close()
    assert os.path.exists(shm_dir() / p)
    shm.remove(p)
    assert not os.path.exists(shm_dir() / p)


def test_errors(name):
    n = name()
    with pytest.raises(shm.NotFoundError) as e:
        shm.open(n)
    assert isinstance(e.value, FileNotFoundError)
    with shm.create(n, 4) as a:
        with pytest.raises(shm.AlreadyExistsError):
            shm.create(n, 4)
        v = shm.Value.create(name("v"), 1)
        with pytest.raises(shm.TypeMismatchError):
            shm.open(v.name)
        with pytest.raises(shm.TypeMismatchError):
            shm.Queue.open(a.name)
        v.close()
    with pytest.raises(shm.InvalidNameError):
        shm.create("a/b", 4)


def test_counters(name):
    with shm.create(name(), 4) as a:
        c = a.counter(3)
        assert c.load() == 0
        assert c.fetch_add(5) == 0
        assert c.compare_exchange(5, 9) == (True, 5)
        assert c.compare_exchange(5, 1) == (False, 9)
        c.store(11)
        b = shm.open(a.name)
        assert b.counter(3).load() == 11
        b.close()
        with pytest.raises(IndexError):
            a.counter(8)
    at = shm.AtomicU64.create(name("at"), 3)
    assert shm.AtomicU64.open(at.name).fetch_add(2) == 3 and at.load() == 5


def test_ls_and_gc(name):
    n = name()
    with shm.create(n, (2, 3), "i2") as a:
        info = [s for s in shm.ls() if s.name == n]
        assert len(info) == 1
        s = info[0]
        assert (s.kind, s.dtype, s.shape, s.in_use) == ("array", "<i2", (2, 3), True)
        assert s.bytes >= 4096 and s.path == a.path
        # In use: gc leaves it.
        assert n not in [r[0] for r in shm.gc(dry_run=True)["removed"]]
    p = name("idle")
    shm.create(p, 4, persistent=True).close()
    assert p not in [r[0] for r in shm.gc(dry_run=True)["removed"]]  # persistent
    shm.remove(p)


def test_lock_guard_basics(name):
    with shm.create(name(), 6, "i8") as a:
        with a.lock() as arr:
            arr[:] = 5
            with pytest.raises(shm.DeadlockError):
                with a.lock(timeout=0):
                    pass
        with a.read() as r:
            assert r.sum() == 30 and not r.flags.writeable
            with a.read() as r2:  # a second read in the same thread never waits
                assert r2.sum() == 30
        with a.write(timeout=1.0) as w:
            w[0] = 0


def test_guard_misuse_raises_not_crashes(name):
    with shm.create(name(), 4) as a:
        g = a.lock()
        with pytest.raises(shm.ShmarrayError):
            g.__exit__(None, None, None)  # exit without enter
        with pytest.raises(shm.ShmarrayError):
            g.release()
        g.__enter__()
        with pytest.raises(shm.ShmarrayError):
            g.__enter__()  # double enter
        # Another thread may not release it.
        errors = []

        def other():
            try:
                g.release()
            except shm.ShmarrayError as e:
                errors.append(e)

        t = threading.Thread(target=other)
        t.start()
        t.join()
        assert len(errors) == 1 and g.held
        g.__exit__(None, None, None)
        with pytest.raises(shm.ShmarrayError):
            g.__exit__(None, None, None)  # double exit
        with pytest.raises(shm.ShmarrayError):
            g.__enter__()  # a guard is used once
        assert not g.held


def test_lock_timeout_from_another_thread(name):
    with shm.create(name(), 4) as a:
        entered = threading.Event()
        leave = threading.Event()

        def holder():
            with a.lock():
                entered.set()
                leave.wait(10)

        t = threading.Thread(target=holder)
        t.start()
        assert entered.wait(10)
        with pytest.raises(shm.TimeoutError) as e:
            with a.lock(timeout=0.1):
                pass
        assert isinstance(e.value, TimeoutError)
        leave.set()
        t.join()
        with a.lock(timeout=1):
            pass
