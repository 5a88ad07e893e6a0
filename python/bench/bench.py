"""pyshmarray against multiprocessing, like with like, measured in the same run.

Run: python3 python/bench/bench.py [--rounds 3] [--scale 1.0] [--only ndarrays,ints,...]

Every row is a pair measured back to back in each round (the order alternates
between rounds), so a loaded machine slows both sides alike; the table gives the
range over the rounds of each rate and of the per-round ratio. All work happens in
child processes started with fork; the parent only creates, starts and times.

  ndarrays    a stream of 1024-element uint64 and float64 arrays, producer process ->
              consumer process, arrays keep their shape and dtype:
              multiprocessing.Queue().put(a) / .get()   (pickled)
              pyshmarray.ArrayQueue.create(name)        (default capacity and size)
              and, for batches of numbers (flat: the consumer gets a 1-d array of
              up to 1024 items), pyshmarray.Queue put_many(a) / get_many(1024)
              with a 4096-item queue
  ints        one Python int per call, producer -> consumer:
              multiprocessing.Queue().put(i) / .get()  vs  pyshmarray.Queue put(i) / get()
  increments  locked increments from 2 processes:
              with v.get_lock(): v.value += 1   (multiprocessing.Value)
              with v.lock(): v.value += 1       (pyshmarray.Value)
              v.add(1)                          (pyshmarray.Value, one call)
  containers  a dict and a list from 2 processes: Manager().dict() / .list()
              against pyshmarray.SharedMap / SharedVec
"""

import argparse
import multiprocessing as mp
import os
import time

import numpy as np

import pyshmarray as shm

CTX = mp.get_context("fork")
PREFIX = f"shmarray-bench-py-{os.getpid()}"
N_ELEMS = 1024


def name(tag):
    return f"{PREFIX}-{tag}"


# ---- running children and timing them ---------------------------------------------

def run(jobs):
    """Starts `jobs` [(target, args)], each called as target(*args, start, ends, k);
    releases them together; returns seconds from the release to the last end
    recorded in `ends` (children record time.perf_counter(), a system-wide clock)."""
    start = CTX.Event()
    ends = CTX.Array("d", len(jobs), lock=False)
    ps = [CTX.Process(target=f, args=(*a, start, ends, k)) for k, (f, a) in enumerate(jobs)]
    for p in ps:
        p.start()
    time.sleep(0.2)
    t = time.perf_counter()
    start.set()
    for p in ps:
        p.join()
        if p.exitcode != 0:
            raise RuntimeError(f"{p.name} exited with {p.exitcode}")
    return max(ends) - t


# ---- ndarrays ---------------------------------------------------------------------

def _arrays(dtype):
    """Sixteen distinct arrays, sent in turn (made before the clock starts)."""
    return [np.full(N_ELEMS, i, dtype=dtype) for i in range(16)]


def _check(a, dtype, sums):
    if a.shape != (N_ELEMS,) or a.dtype != dtype:
        raise SystemExit(f"got {a.dtype} {a.shape}")
    sums[0] += int(a[0])


def _mp_arr_put(q, n, dtype, start, ends, k):
    arrs = _arrays(dtype)
    start.wait()
    put = q.put
    for i in range(n):
        put(arrs[i & 15])
    ends[k] = time.perf_counter()


def _mp_arr_get(q, n, dtype, start, ends, k):
    sums = [0]
    start.wait()
    get = q.get
    for _ in range(n):
        _check(get(), dtype, sums)
    ends[k] = time.perf_counter()
    if sums[0] != sum(i & 15 for i in range(n)):
        raise SystemExit("wrong data")


def _shm_arr_put(qname, n, dtype, start, ends, k):
    q = shm.ArrayQueue.open(qname)
    arrs = _arrays(dtype)
    start.wait()
    put = q.put
    for i in range(n):
        put(arrs[i & 15])
    ends[k] = time.perf_counter()


def _shm_arr_get(qname, n, dtype, start, ends, k):
    q = shm.ArrayQueue.open(qname)
    sums = [0]
    start.wait()
    get = q.get
    for _ in range(n):
        _check(get(), dtype, sums)
    ends[k] = time.perf_counter()
    if sums[0] != sum(i & 15 for i in range(n)):
        raise SystemExit("wrong data")


def _shm_many_put(qname, n, dtype, start, ends, k):
    q = shm.Queue.open(qname)
    arrs = _arrays(dtype)
    start.wait()
    put_many = q.put_many
    for i in range(n):
        put_many(arrs[i & 15])
    ends[k] = time.perf_counter()


def _shm_many_get(qname, n, dtype, start, ends, k):
    q = shm.Queue.open(qname)
    start.wait()
    get_many = q.get_many
    total = 0
    got = 0
    while got < n * N_ELEMS:
        a = get_many(N_ELEMS)
        got += len(a)
        total += int(a.sum())
    ends[k] = time.perf_counter()
    if total != N_ELEMS * sum(i & 15 for i in range(n)):
        raise SystemExit("wrong data")


def ndarrays(scale, dtype):
    n_mp = int(20_000 * scale)
    n_shm = int(200_000 * scale)
    label = np.dtype(dtype).name

    def mp_side():
        q = CTX.Queue()
        s = run([(_mp_arr_put, (q, n_mp, dtype)), (_mp_arr_get, (q, n_mp, dtype))])
        return n_mp * N_ELEMS / s

    def shm_side():
        with shm.ArrayQueue.create(name("aq")) as q:
            s = run([(_shm_arr_put, (q.name, n_shm, dtype)), (_shm_arr_get, (q.name, n_shm, dtype))])
        return n_shm * N_ELEMS / s

    def many_side():
        with shm.Queue.create(name("q"), 4 * N_ELEMS, dtype) as q:
            s = run([(_shm_many_put, (q.name, n_shm, dtype)), (_shm_many_get, (q.name, n_shm, dtype))])
        return n_shm * N_ELEMS / s

    what = f"1024-element {label} arrays, items/s"
    return [
        (what, "multiprocessing.Queue: put(a) / get()", mp_side, None),
        (what, "pyshmarray.ArrayQueue (defaults): put(a) / get()", shm_side, 0),
        (what, "pyshmarray.Queue(4096): put_many(a) / get_many(1024), flat", many_side, 0),
    ]


# ---- one int at a time ------------------------------------------------------------

def _mp_int_put(q, n, start, ends, k):
    start.wait()
    put = q.put
    for i in range(n):
        put(i)
    ends[k] = time.perf_counter()


def _mp_int_get(q, n, start, ends, k):
    start.wait()
    get = q.get
    total = 0
    for _ in range(n):
        total += get()
    ends[k] = time.perf_counter()
    if total != n * (n - 1) // 2:
        raise SystemExit("wrong sum")


def _shm_int_put(qname, n, start, ends, k):
    q = shm.Queue.open(qname)
    start.wait()
    put = q.put
    for i in range(n):
        put(i)
    ends[k] = time.perf_counter()


def _shm_int_get(qname, n, start, ends, k):
    q = shm.Queue.open(qname)
    start.wait()
    get = q.get
    total = 0
    for _ in range(n):
        total += get()
    ends[k] = time.perf_counter()
    if total != n * (n - 1) // 2:
        raise SystemExit("wrong sum")


def ints(scale):
    n_mp = int(100_000 * scale)
    n_shm = int(2_000_000 * scale)

    def mp_side():
        q = CTX.Queue()
        return n_mp / run([(_mp_int_put, (q, n_mp)), (_mp_int_get, (q, n_mp))])

    def shm_side():
        with shm.Queue.create(name("ints"), 1024, "i8") as q:
            return n_shm / run([(_shm_int_put, (q.name, n_shm)), (_shm_int_get, (q.name, n_shm))])

    what = "one int per call, items/s"
    return [
        (what, "multiprocessing.Queue: put(i) / get()", mp_side, None),
        (what, "pyshmarray.Queue(1024, 'i8'): put(i) / get()", shm_side, 0),
    ]


# ---- locked increments ------------------------------------------------------------

def _mp_inc(v, n, start, ends, k):
    lock = v.get_lock()
    start.wait()
    for _ in range(n):
        with lock:
            v.value += 1
    ends[k] = time.perf_counter()


def _shm_with(vname, n, start, ends, k):
    v = shm.Value.open(vname)
    start.wait()
    for _ in range(n):
        with v.lock():
            v.value += 1
    ends[k] = time.perf_counter()


def _shm_add(vname, n, start, ends, k):
    v = shm.Value.open(vname)
    start.wait()
    add = v.add
    for _ in range(n):
        add(1)
    ends[k] = time.perf_counter()


def increments(scale):
    n_mp = int(200_000 * scale)
    n_shm = int(1_000_000 * scale)

    def mp_side():
        v = CTX.Value("q", 0)
        r = 2 * n_mp / run([(_mp_inc, (v, n_mp))] * 2)
        assert v.value == 2 * n_mp
        return r

    def shm_side(target):
        def side():
            with shm.Value.create(name("value"), 0) as v:
                r = 2 * n_shm / run([(target, (v.name, n_shm))] * 2)
                assert v.value == 2 * n_shm
            return r

        return side

    what = "locked increments, 2 procs, /s"
    return [
        (what, "multiprocessing.Value: with v.get_lock(): v.value += 1", mp_side, None),
        (what, "pyshmarray.Value: with v.lock(): v.value += 1", shm_side(_shm_with), 0),
        (what, "pyshmarray.Value: v.add(1)", shm_side(_shm_add), 0),
    ]


# ---- a dict and a list ------------------------------------------------------------

def _mp_dict(d, n, base, start, ends, k):
    start.wait()
    for i in range(n):
        key = base + i % 1000
        d[key] = i
        d[key]
    ends[k] = time.perf_counter()


def _shm_dict(mname, n, base, start, ends, k):
    m = shm.SharedMap.open(mname, "i8", "i8")
    start.wait()
    for i in range(n):
        key = base + i % 1000
        m[key] = i
        m[key]
    ends[k] = time.perf_counter()


def _mp_list(lst, n, base, start, ends, k):
    start.wait()
    for i in range(n):
        lst.append(i)
    ends[k] = time.perf_counter()


def _shm_list(vname, n, base, start, ends, k):
    v = shm.SharedVec.open(vname)
    start.wait()
    for i in range(n):
        v.append(i)
    ends[k] = time.perf_counter()


def containers(scale):
    n_mp = int(10_000 * scale)
    n_shm = int(300_000 * scale)

    def mp_dict():
        with CTX.Manager() as manager:
            d = manager.dict()
            # a set and a get per round
            return 4 * n_mp / run([(_mp_dict, (d, n_mp, k * 10_000)) for k in range(2)])

    def shm_dict():
        with shm.SharedMap.create(name("map"), 4096, "i8", "i8") as m:
            return 4 * n_shm / run([(_shm_dict, (m.name, n_shm, k * 10_000)) for k in range(2)])

    def mp_list():
        with CTX.Manager() as manager:
            lst = manager.list()
            r = 2 * n_mp / run([(_mp_list, (lst, n_mp, 0))] * 2)
            assert len(lst) == 2 * n_mp
            return r

    def shm_list():
        with shm.SharedVec.create(name("vec"), 2 * n_shm, "i8") as v:
            r = 2 * n_shm / run([(_shm_list, (v.name, n_shm, 0))] * 2)
            assert len(v) == 2 * n_shm
            return r

    return [
        ("dict, 2 procs, ops/s", "Manager().dict(): d[k] = v; d[k]", mp_dict, None),
        ("dict, 2 procs, ops/s", "pyshmarray.SharedMap: m[k] = v; m[k]", shm_dict, 0),
        ("list, 2 procs, ops/s", "Manager().list(): append", mp_list, None),
        ("list, 2 procs, ops/s", "pyshmarray.SharedVec: append", shm_list, 2),
    ]


# ---- the table --------------------------------------------------------------------

def load():
    return "load average %.2f %.2f %.2f" % os.getloadavg()


def span(xs, fmt):
    lo, hi = min(xs), max(xs)
    return fmt(lo) if fmt(lo) == fmt(hi) else f"{fmt(lo)}–{fmt(hi)}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--scale", type=float, default=1.0, help="multiplies every item count")
    ap.add_argument("--only", default="ndarrays,ints,increments,containers")
    a = ap.parse_args()
    groups = []
    for what in a.only.split(","):
        if what == "ndarrays":
            groups.append(ndarrays(a.scale, np.uint64))
            groups.append(ndarrays(a.scale, np.float64))
        elif what == "ints":
            groups.append(ints(a.scale))
        elif what == "increments":
            groups.append(increments(a.scale))
        elif what == "containers":
            groups.append(containers(a.scale))
        else:
            raise SystemExit(f"unknown benchmark {what!r}")
    print(f"start: {load()}; {os.cpu_count()} CPUs; {os.uname().sysname} {os.uname().release}")
    rates = {}
    for r in range(a.rounds):
        for g, rows in enumerate(groups):
            order = list(enumerate(rows))
            if r % 2:
                order.reverse()  # alternate which side runs first
            for i, (_, _, f, _) in order:
                rates.setdefault((g, i), []).append(f())
        print(f"round {r + 1}/{a.rounds} done; {load()}", flush=True)
    print(f"{'what':<34} {'how':<62} {'per second':>25} {'vs multiprocessing':>20}")
    for g, rows in enumerate(groups):
        for i, (what, how, _, base) in enumerate(rows):
            rs = rates[(g, i)]
            ratio = ""
            if base is not None:
                ratio = span([x / y for x, y in zip(rs, rates[(g, base)])], lambda v: f"{v:.1f}") + "x"
            print(f"{what:<34} {how:<62} {span(rs, lambda v: f'{v / 1e6:.2f}M'):>25} {ratio:>20}")
    print(f"end: {load()}")


if __name__ == "__main__":
    main()
