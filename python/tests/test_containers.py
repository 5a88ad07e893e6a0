"""SharedMap (dict protocol) and SharedVec (list protocol): dtypes, capacity,
processes at once, and processes killed mid-operation (the repair, reported)."""

import multiprocessing as mp
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import pyshmarray as shm


# ---- SharedMap ----------------------------------------------------------------------


def test_dict_protocol(name):
    m = shm.SharedMap.create(name(), 100, "i8", "f8")
    assert len(m) == 0 and not m and m.capacity == 100
    m[1] = 1.5
    m[2] = 2.5
    m[1] = 3.5  # replaces
    assert m[1] == 3.5 and isinstance(m[1], float) and len(m) == 2
    assert 1 in m and 3 not in m and "x" not in m  # a key the dtype can't hold
    with pytest.raises(KeyError) as e:
        m[3]
    assert e.value.args == (3,)
    del m[2]
    with pytest.raises(KeyError):
        del m[2]
    assert m.get(2) is None and m.get(2, -1.0) == -1.0 and m.get(1) == 3.5
    assert m.setdefault(5, 9.0) == 9.0 and m.setdefault(5, 1.0) == 9.0 and m[5] == 9.0
    with pytest.raises(TypeError):
        m.setdefault(6)  # absent, and None is no f8
    assert m.setdefault(5) == 9.0
    assert m.pop(5) == 9.0 and m.pop(5, "gone") == "gone"
    with pytest.raises(KeyError):
        m.pop(5)
    m.update({10: 1.0}, **{})
    m.update({11: 2.0})
    m.update([(12, 3.0)])
    assert sorted(m) == [1, 10, 11, 12] and sorted(m.keys()) == [1, 10, 11, 12]
    assert sorted(m.values()) == [1.0, 2.0, 3.0, 3.5]
    assert sorted(m.items()) == [(1, 3.5), (10, 1.0), (11, 2.0), (12, 3.0)]
    assert m.to_dict() == {1: 3.5, 10: 1.0, 11: 2.0, 12: 3.0} == m.copy()
    k, v = m.popitem()
    assert k not in m and len(m) == 3 and v in (1.0, 2.0, 3.0, 3.5)
    m[10] = 1.0
    assert m.apply(10, lambda x: x * 10) == 10.0 and m[10] == 10.0
    with pytest.raises(KeyError):
        m.apply(99, lambda x: x)
    with pytest.raises(ZeroDivisionError):
        m.apply(10, lambda x: 1 / 0)
    assert m[10] == 10.0  # unchanged by the failed apply
    m.clear()
    assert len(m) == 0 and list(m) == []
    with pytest.raises(KeyError):
        m.popitem()
    with pytest.raises(TypeError):
        m["a"] = 1.0  # not an int key
    with pytest.raises(OverflowError):
        shm.SharedMap.create(name("u1"), 4, "u1", "u1")[300] = 1
    assert "len=0" in repr(m) and "key=int64 value=float64" in repr(m)


def test_key_and_value_dtypes(name):
    rec = np.dtype([("price", "<f8"), ("qty", "<i4"), ("tag", "S3")])
    m = shm.SharedMap.create(name(), 50, "S16", rec)
    m["apple"] = (1.25, 3, b"fr")  # a str key is UTF-8 bytes, as Rust's FixedStr
    m[b"pear"] = np.array((2.5, 7, b"x"), dtype=rec)
    m["pêche"] = (9.0, 1, b"")
    r = m[b"apple"]
    assert isinstance(r, np.void) and r["price"] == 1.25 and r["qty"] == 3 and r["tag"] == b"fr"
    assert m["pear"]["qty"] == 7 and "pêche".encode() in m
    assert sorted(m.keys()) == sorted([b"apple", b"pear", "pêche".encode()])
    with pytest.raises(ValueError):
        m["x" * 17] = (0, 0, b"")  # longer than S16
    # numpy unicode keys, float32 and uint8 values.
    u = shm.SharedMap.create(name("u"), 10, "U6", np.float32)
    u["naïve"] = 0.1
    assert list(u) == ["naïve"] and abs(u["naïve"] - 0.1) < 1e-7
    b = shm.SharedMap.create(name("b"), 10, np.uint8, "S5")
    b[255] = b"hello"
    b[0] = "hi"
    assert b[255] == b"hello" and b[0] == b"hi"


def test_open_checks_the_sizes(name):
    m = shm.SharedMap.create(name(), 10, "S16", "f8")
    m["a"] = 1.0
    assert shm.SharedMap.open(m.name, "S16", "<f8")["a"] == 1.0
    assert shm.SharedMap.open(m.name, "V16", "i8")  # same sizes: the caller's choice
    with pytest.raises(shm.TypeMismatchError):
        shm.SharedMap.open(m.name, "S8", "f8")
    with pytest.raises(shm.TypeMismatchError):
        shm.SharedMap.open(m.name, "S16", "f4")
    with pytest.raises(shm.TypeMismatchError):
        shm.SharedVec.open(m.name)  # a map is not a vec
    with pytest.raises(shm.NotFoundError):
        shm.SharedMap.open(name("none"), "i8", "i8")


def test_capacity_is_exact_for_small_maps(name):
    m = shm.SharedMap.create(name(), 5, "i4", "i4")
    for i in range(5):
        m[i] = i
    with pytest.raises(shm.CapacityError):
        m[5] = 5
    m[4] = 40  # replacing needs no room
    del m[0]
    m[5] = 5
    assert len(m) == 5 and m[4] == 40


def _count(mname, keys, rounds):
    m = shm.SharedMap.open(mname, "i8", "i8")
    for _ in range(rounds):
        for k in keys:
            m.setdefault(k, 0)
            m.apply(k, lambda n: n + 1)


def test_processes_count_without_lost_updates(name):
    m = shm.SharedMap.create(name(), 5000, "i8", "i8")  # several shards
    assert m.shards > 1
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_count, args=(m.name, range(20), 200)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert m.to_dict() == {k: 600 for k in range(20)}
    assert m.repairs == 0


DIE_IN_APPLY = """
import os, signal, sys, pyshmarray as shm
m = shm.SharedMap.open(sys.argv[1], "S8", "S40")
def die(v):
    # The shard lock is held here: die holding it.
    os.kill(os.getpid(), signal.SIGKILL)
m.apply(b"key", die)
"""


def test_a_process_killed_holding_a_shard_lock_is_repaired_and_counted(name, tmp_path):
    # 40-byte values: an in-place change goes through the undo record.
    m = shm.SharedMap.create(name(), 10, "S8", "S40")
    m[b"key"] = b"before"
    m[b"other"] = b"x"
    p = subprocess.run([sys.executable, "-c", DIE_IN_APPLY, m.name], timeout=60)
    assert p.returncode == -signal.SIGKILL
    assert m.repairs == 0
    # The next user takes the dead holder's lock, repairs the shard, goes on.
    assert m[b"key"] == b"before" and m[b"other"] == b"x" and len(m) == 2
    assert m.repairs == 1
    m[b"key"] = b"after"
    assert m[b"key"] == b"after"
    assert shm.SharedMap.open(m.name, "S8", "S40").repairs == 1


CHURN_MAP = """
import sys, pyshmarray as shm
m = shm.SharedMap.open(sys.argv[1], "i8", "S24")
v = shm.SharedVec.open(sys.argv[2])
print("ready", flush=True)
i = int(sys.argv[3])
while True:
    k = i % 64
    m[k] = (b"%d" % i) * 3
    if i % 3 == 0:
        m.pop(k, None)
    if len(v) < v.capacity:
        v.append(i)
    else:
        v.clear()
    if len(v):
        v[0] = i
    i += 1
"""


def test_processes_killed_at_random_instants_leave_map_and_vec_consistent(name):
    m = shm.SharedMap.create(name("m"), 64, "i8", "S24")
    v = shm.SharedVec.create(name("v"), 50, "i8")
    rng = random.Random(7)
    kills = 12
    for round_ in range(kills):
        p = subprocess.Popen(
            [sys.executable, "-c", CHURN_MAP, m.name, v.name, str(round_ * 1_000_000)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert p.stdout.readline().strip() == "ready"
            time.sleep(rng.uniform(0.0, 0.05))
        finally:
            p.kill()
            p.wait(10)
        # Every operation after a kill completes (a stuck lock would hang here:
        # pytest-timeout fails it) and sees whole entries only.
        for k, val in m.items():
            assert 0 <= k < 64
            s = val.decode()
            assert len(s) % 3 == 0 and s == s[: len(s) // 3] * 3, val
        assert len(m) <= 64 and len(v) <= v.capacity
        items = list(v)
        assert all(isinstance(x, int) for x in items)
        m[999 % 64] = b"ok" * 3
        v.clear()
    print(f"{kills} kills: {m.repairs} map repairs, {v.repairs} vec repairs")


# ---- SharedVec ----------------------------------------------------------------------


def test_list_protocol(name):
    v = shm.SharedVec.create(name(), 10, "i4")
    assert len(v) == 0 and list(v) == [] and v.capacity == 10 and v.dtype == np.int32
    v.append(1)
    v.extend([2, 3, 4])
    v.extend(np.array([5, 6], dtype=np.int64))
    assert list(v) == [1, 2, 3, 4, 5, 6] and len(v) == 6
    assert v[0] == 1 and v[-1] == 6 and isinstance(v[0], int)
    with pytest.raises(IndexError):
        v[6]
    with pytest.raises(IndexError):
        v[-7]
    v[1] = 20
    v[-1] = 60
    assert v.tolist() == [1, 20, 3, 4, 5, 60]
    np.testing.assert_array_equal(v[1:3], [20, 3])
    assert 20 in v and 2 not in v and v.index(3) == 2 and v.count(1) == 1
    with pytest.raises(ValueError):
        v.index(99)
    assert v.pop() == 60 and len(v) == 5
    with pytest.raises(ValueError):
        v.pop(0)  # only the last one
    with pytest.raises(shm.CapacityError):
        v.extend(range(6))  # all or nothing: 5 + 6 > 10
    assert len(v) == 5
    v.extend(range(5))
    with pytest.raises(shm.CapacityError):
        v.append(0)
    v.truncate(2)
    assert list(v) == [1, 20]
    a = np.asarray(v)
    assert a.dtype == np.int32 and a.tolist() == [1, 20]
    a[0] = 99  # a copy
    assert v[0] == 1
    v.clear()
    with pytest.raises(IndexError):
        v.pop()
    with pytest.raises(OverflowError):
        v.append(2**40)
    assert "len=0" in repr(v)


def test_view_is_zero_copy_and_read_only(name):
    v = shm.SharedVec.create(name(), 8, "f8")
    v.extend([1.0, 2.0, 3.0])
    w = v.view()
    assert w.shape == (3,) and not w.flags.writeable
    other = shm.SharedVec.open(v.name)
    other[1] = 7.5  # another handle (process) sets an item: the view shows it
    assert w[1] == 7.5
    with pytest.raises(ValueError):
        w[0] = 0.0
    # numpy sees the same bytes through the file.
    np.testing.assert_array_equal(np.load(other.path, mmap_mode="r")[:3], w)
    v.close()
    assert w.tolist() == [1.0, 7.5, 3.0]  # the view keeps its mapping


def test_vec_dtypes(name):
    for dt in ["u1", "i2", "u4", "i8", "u8", "f2", "f4", "f8", "c8", "c16", "?"]:
        v = shm.SharedVec.create(name(dt), 4, dt)
        v.extend([1, 0])
        assert v.to_numpy().dtype == np.dtype(dt) and list(v) == [1, 0]
        assert shm.SharedVec.open(v.name).dtype == np.dtype(dt)
    with pytest.raises(shm.TypeMismatchError):
        shm.SharedVec.create(name("s"), 4, "U4")


def _push(vname, n, start):
    v = shm.SharedVec.open(vname)
    for i in range(n):
        v.append(start + i)


def test_processes_append_at_once_and_nothing_is_lost(name):
    v = shm.SharedVec.create(name(), 3000, "i8")
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_push, args=(v.name, 1000, k * 1000)) for k in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert sorted(v) == list(range(3000))
