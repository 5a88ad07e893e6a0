"""Handles pickle as "open this segment by name": Pool.map/starmap,
Process(args=...) and ProcessPoolExecutor work with spawn, forkserver and fork;
the worker's handle is never the owner, the creator keeps ownership."""

import concurrent.futures
import multiprocessing as mp
import os
import pickle

import numpy as np
import pytest

import pyshmarray as shm
from conftest import shm_dir

METHODS = ["spawn", "forkserver", "fork"]


def make_all(name):
    """One handle of every kind, created (owned) here."""
    return {
        "array": shm.create(name("array"), (4, 3), "f8"),
        "value": shm.Value.create(name("value"), 0),
        "atomic": shm.AtomicU64.create(name("atomic"), 0),
        "event": shm.Event.create(name("event")),
        "queue": shm.Queue.create(name("queue"), 64, "i8"),
        "bytequeue": shm.ByteQueue.create(name("bytequeue"), 64, 32),
        "arrayqueue": shm.ArrayQueue.create(name("arrayqueue"), 64, 64),
        "map": shm.SharedMap.create(name("map"), 64, "S8", "f8"),
        "vec": shm.SharedVec.create(name("vec"), 64, "i4"),
    }


def touch(h, i):
    """What a worker does with handle `h` as task `i`; returns what it saw."""
    assert not h.is_owner, f"{h!r} unpickled as the owner"
    if isinstance(h, shm.SharedArray):
        with h.lock() as a:
            a[i % 4, :] += 1
        h.counter(2).fetch_add(1)
        return h.shape
    if isinstance(h, shm.Value):
        return h.add(1) is not None
    if isinstance(h, shm.AtomicU64):
        return h.fetch_add(1) >= 0
    if isinstance(h, shm.Event):
        h.set()
        return True
    if isinstance(h, shm.Queue):
        h.put(i)
        return True
    if isinstance(h, shm.ByteQueue):
        h.put(b"task%d" % i)
        return True
    if isinstance(h, shm.ArrayQueue):
        h.put(np.full((2, 2), i, dtype="i2"))
        return True
    if isinstance(h, shm.SharedMap):
        h[b"k%d" % i] = float(i)
        return h.key_dtype.str
    if isinstance(h, shm.SharedVec):
        h.append(i)
        return True
    raise AssertionError(type(h))


def task(handles, i):
    """Pool.starmap's function: one task touching every handle."""
    out = {k: touch(h, i) for k, h in handles.items()}
    return os.getpid(), out


def task_pair(pair):
    """Pool.map's function: one (handles, i) pair."""
    return task(*pair)


def check_all(hs, tasks):
    """What `tasks` runs of `task` must have left behind."""
    a = hs["array"]
    assert a.counter(2).load() == tasks
    assert a.ndarray.sum() == tasks * 3
    assert hs["value"].value == tasks
    assert hs["atomic"].load() == tasks
    assert hs["event"].is_set()
    assert sorted(hs["queue"].get_many(1000, timeout=5).tolist()) == list(range(tasks))
    assert sorted(hs["bytequeue"].get(timeout=5) for _ in range(tasks)) == sorted(
        b"task%d" % i for i in range(tasks)
    )
    got = [hs["arrayqueue"].get(timeout=5) for _ in range(tasks)]
    assert all(a.shape == (2, 2) and a.dtype == np.dtype("i2") for a in got)
    assert sorted(int(a[0, 0]) for a in got) == list(range(tasks))
    assert hs["map"].to_dict() == {b"k%d" % i: float(i) for i in range(tasks)}
    assert sorted(hs["vec"]) == list(range(tasks))


def close_all(hs):
    for h in hs.values():
        assert h.is_owner
        path = shm_dir() / h.name
        assert path.exists(), f"{h.name} was removed by a worker"
        h.close()
        assert not path.exists()


def test_every_handle_pickles_by_name_in_process(name):
    hs = make_all(name)
    hs["barrier"] = shm.Barrier.create(name("barrier"), 2)
    hs["counter"] = hs["array"].counter(3)
    hs["counter"].store(41)
    for k, h in hs.items():
        copy = pickle.loads(pickle.dumps(h))
        assert type(copy) is type(h) and copy is not h
        if k != "counter":
            assert copy.name == h.name and copy.is_owner is False
            copy.close()
            assert (shm_dir() / h.name).exists()
    c = pickle.loads(pickle.dumps(hs["counter"]))
    assert c.index == 3 and c.fetch_add(1) == 41 and hs["counter"].load() == 42
    m = pickle.loads(pickle.dumps(hs["map"]))
    assert m.key_dtype == np.dtype("S8") and m.value_dtype == np.dtype("f8")
    del hs["counter"]
    for h in hs.values():
        h.close()
        with pytest.raises(TypeError, match="closed"):
            pickle.dumps(h)


def test_a_structured_map_pickles_with_its_dtypes(name):
    rec = np.dtype([("x", "<f4"), ("n", "<i2")])
    m = shm.SharedMap.create(name(), 8, "U4", rec)
    m["ab"] = (1.5, 3)
    c = pickle.loads(pickle.dumps(m))
    assert c.value_dtype == rec and c["ab"]["n"] == 3
    c.close()
    m.close()


@pytest.mark.parametrize("method", METHODS)
def test_pool_map_and_starmap(name, method):
    ctx = mp.get_context(method)
    hs = make_all(name)
    with ctx.Pool(2) as pool:
        got = pool.starmap(task, [(hs, i) for i in range(6)])
        got += pool.map(task_pair, [(hs, i) for i in range(6, 10)])
    assert all(out["array"] == (4, 3) and out["map"] == "|S8" for _, out in got)
    assert os.getpid() not in {pid for pid, _ in got}
    check_all(hs, 10)
    close_all(hs)


@pytest.mark.parametrize("method", METHODS)
def test_process_args(name, method):
    ctx = mp.get_context(method)
    hs = make_all(name)
    b = shm.Barrier.create(name("barrier"), 2)
    counter = hs["array"].counter(5)
    p = ctx.Process(target=_process_main, args=(hs, b, counter))
    p.start()
    assert b.wait(timeout=60) in (True, False)  # met the child
    p.join(60)
    assert p.exitcode == 0
    check_all(hs, 1)
    assert counter.load() == 7
    b.close()
    close_all(hs)


def _process_main(hs, b, counter):
    task(hs, 0)
    counter.fetch_add(7)
    assert not b.is_owner
    b.wait(timeout=60)


@pytest.mark.parametrize("method", METHODS)
def test_process_pool_executor(name, method):
    hs = make_all(name)
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=mp.get_context(method)) as ex:
        got = list(ex.map(task, [hs] * 5, range(5)))
    assert len(got) == 5
    check_all(hs, 5)
    close_all(hs)


def test_the_worker_sees_the_creators_data_zero_copy(name):
    # A worker of a Pool writes into the creator's array in place.
    with shm.create(name(), (6, 4), "i8") as a:
        with mp.get_context("spawn").Pool(2) as pool:
            pool.starmap(_fill_row, [(a, r) for r in range(6)])
        np.testing.assert_array_equal(a.ndarray, np.arange(24).reshape(6, 4))


def _fill_row(a, r):
    a[r] = np.arange(4) + 4 * r


def test_unpickling_after_the_owner_closed_is_not_found(name):
    a = shm.create(name(), 4)
    data = pickle.dumps(a)
    a.close()
    with pytest.raises(shm.NotFoundError):
        pickle.loads(data)
