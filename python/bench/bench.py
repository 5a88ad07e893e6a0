"""pyshmarray against multiprocessing: locked increments and a batched queue.

Run: python3 python/bench/bench.py [--seconds S]   (prints a table)

(a) locked increments from 2 processes, total per second:
    - multiprocessing.Value + get_lock():  with v.get_lock(): v.value += 1
    - pyshmarray.Value:                    with v.lock(): v.value += 1
    - pyshmarray.Value fast path:          v.add(1)
(b) numbers through a queue, producer and consumer processes, items per second:
    - multiprocessing.Queue, one item per put/get
    - pyshmarray.Queue, put_many/get_many of numpy arrays (batches of 1024)
(c) a shared dict and list from 2 processes, operations per second:
    - Manager().dict(): d[k] = v, then d[k]   vs  pyshmarray.SharedMap
    - Manager().list(): append                vs  pyshmarray.SharedVec
"""

import argparse
import multiprocessing as mp
import os
import time

import numpy as np

import pyshmarray as shm

CTX = mp.get_context("fork")


def _mp_inc(v, n, start):
    start.wait()
    lock = v.get_lock()
    for _ in range(n):
        with lock:
            v.value += 1


def _shm_with(name, n, start):
    v = shm.Value.open(name)
    start.wait()
    for _ in range(n):
        with v.lock():
            v.value += 1


def _shm_add(name, n, start):
    v = shm.Value.open(name)
    start.wait()
    add = v.add
    for _ in range(n):
        add(1)


def two_procs(target, args_of, n):
    start = CTX.Event()
    ps = [CTX.Process(target=target, args=(*args_of(), n, start)) for _ in range(2)]
    for p in ps:
        p.start()
    time.sleep(0.3)
    t = time.perf_counter()
    start.set()
    for p in ps:
        p.join()
        assert p.exitcode == 0
    return 2 * n / (time.perf_counter() - t)


def bench_increments(n):
    rows = []
    v = CTX.Value("q", 0)
    r = two_procs(_mp_inc, lambda: (v,), n)
    assert v.value == 2 * n
    rows.append(("increments, 2 procs", "multiprocessing.Value + get_lock()", r, None))
    name = f"shmarray-bench-py-{os.getpid()}-value"
    with shm.Value.create(name, 0) as sv:
        r2 = two_procs(_shm_with, lambda: (name,), n)
        assert sv.value == 2 * n
        rows.append(("increments, 2 procs", "pyshmarray.Value: with v.lock(): v.value += 1", r2, r2 / r))
        sv.value = 0
        r3 = two_procs(_shm_add, lambda: (name,), n)
        assert sv.value == 2 * n
        rows.append(("increments, 2 procs", "pyshmarray.Value: v.add(1)", r3, r3 / r))
    return rows


def _mp_producer(q, n):
    for i in range(n):
        q.put(i)
    q.put(None)


def _shm_producer(name, n, batch):
    q = shm.Queue.open(name)
    base = np.arange(batch, dtype=np.uint64)
    for s in range(0, n, batch):
        q.put_many(base[: min(batch, n - s)] + s)
    q.shutdown()


def bench_queue(n_mp, n_shm, batch):
    rows = []
    q = CTX.Queue()
    p = CTX.Process(target=_mp_producer, args=(q, n_mp))
    t = time.perf_counter()
    p.start()
    got = 0
    while q.get() is not None:
        got += 1
    r = got / (time.perf_counter() - t)
    p.join()
    assert got == n_mp
    rows.append(("queue of numbers", "multiprocessing.Queue, put/get per item", r, None))
    name = f"shmarray-bench-py-{os.getpid()}-queue"
    sq = shm.Queue.create(name, 16 * batch, "u8")
    p = CTX.Process(target=_shm_producer, args=(name, n_shm, batch))
    t = time.perf_counter()
    p.start()
    got = 0
    total = 0
    while True:
        try:
            a = sq.get_many(batch)
        except shm.QueueClosed:
            break
        got += len(a)
        total += int(a.sum())
    r2 = got / (time.perf_counter() - t)
    p.join()
    assert got == n_shm and total == n_shm * (n_shm - 1) // 2
    rows.append(("queue of numbers", f"pyshmarray.Queue, put_many/get_many (batch {batch})", r2, r2 / r))
    del sq
    return rows


def _mp_dict(d, n, base, start):
    start.wait()
    for i in range(n):
        k = base + i % 1000
        d[k] = i
        d[k]


def _shm_dict(name, n, base, start):
    m = shm.SharedMap.open(name, "i8", "i8")
    start.wait()
    for i in range(n):
        k = base + i % 1000
        m[k] = i
        m[k]


def _mp_list(lst, n, base, start):
    start.wait()
    for i in range(n):
        lst.append(i)


def _shm_list(name, n, base, start):
    v = shm.SharedVec.open(name)
    start.wait()
    for i in range(n):
        v.append(i)


def two_procs_based(target, arg, n):
    start = CTX.Event()
    ps = [CTX.Process(target=target, args=(arg, n, k * 10_000, start)) for k in range(2)]
    for p in ps:
        p.start()
    time.sleep(0.3)
    t = time.perf_counter()
    start.set()
    for p in ps:
        p.join()
        assert p.exitcode == 0
    return 2 * n / (time.perf_counter() - t)


def bench_containers(n_mp, n_shm):
    rows = []
    with CTX.Manager() as manager:
        d = manager.dict()
        r = 2 * two_procs_based(_mp_dict, d, n_mp)  # a set and a get per round
        rows.append(("dict, 2 procs", "Manager().dict(): d[k] = v; d[k]", r, None))
        lst = manager.list()
        rl = two_procs_based(_mp_list, lst, n_mp)
        assert len(lst) == 2 * n_mp
        rows.append(("list, 2 procs", "Manager().list(): append", rl, None))
    name = f"shmarray-bench-py-{os.getpid()}-map"
    with shm.SharedMap.create(name, 4096, "i8", "i8"):
        r2 = 2 * two_procs_based(_shm_dict, name, n_shm)
        rows.append(("dict, 2 procs", "pyshmarray.SharedMap: m[k] = v; m[k]", r2, r2 / r))
    name = f"shmarray-bench-py-{os.getpid()}-vec"
    with shm.SharedVec.create(name, 2 * n_shm, "i8") as v:
        r3 = two_procs_based(_shm_list, name, n_shm)
        assert len(v) == 2 * n_shm
        rows.append(("list, 2 procs", "pyshmarray.SharedVec: append", r3, r3 / rl))
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--increments", type=int, default=300_000, help="per process")
    ap.add_argument("--mp-items", type=int, default=200_000)
    ap.add_argument("--shm-items", type=int, default=20_000_000)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--mp-dict", type=int, default=20_000, help="per process")
    ap.add_argument("--shm-dict", type=int, default=300_000, help="per process")
    a = ap.parse_args()
    rows = (
        bench_increments(a.increments)
        + bench_queue(a.mp_items, a.shm_items, a.batch)
        + bench_containers(a.mp_dict, a.shm_dict)
    )
    print(f"{'what':<22} {'how':<55} {'per second':>14} {'vs multiprocessing':>20}")
    for what, how, r, x in rows:
        print(f"{what:<22} {how:<55} {r:>14,.0f} {('%.1fx' % x) if x else '':>20}")
    print(f"({os.cpu_count()} CPUs; {os.uname().sysname} {os.uname().release})")


if __name__ == "__main__":
    main()
