"""multiprocessing workers (spawn and fork) on the same segments; Ctrl-C."""

import multiprocessing as mp
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import pyshmarray as shm

WORKERS = 3
ROUNDS = 2000


def _increment(array_name, value_name, counter_rounds):
    a = shm.open(array_name)
    v = shm.Value.open(value_name)
    for _ in range(counter_rounds):
        with a.lock() as arr:
            arr[0] += 1
        with v.lock():
            v.value += 1
        v.add(1)
        a.counter(0).fetch_add(1)
    a.close()
    v.close()


def _write_row(array_name, row):
    a = shm.open(array_name)
    with a.lock() as arr:
        arr[row, :] = row * 10 + np.arange(arr.shape[1])
    a.close()


@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_workers_increment_under_the_lock(name, method):
    ctx = mp.get_context(method)
    with shm.create(name("a"), 4, "i8") as a, shm.Value.create(name("v"), 0) as v:
        procs = [ctx.Process(target=_increment, args=(a.name, v.name, ROUNDS)) for _ in range(WORKERS)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
            assert p.exitcode == 0
        assert a.ndarray[0] == WORKERS * ROUNDS
        assert v.value == 2 * WORKERS * ROUNDS
        assert a.counter(0).load() == WORKERS * ROUNDS


@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_pool_writes_rows(name, method):
    ctx = mp.get_context(method)
    with shm.create(name(), (8, 5), "f8") as a:
        with ctx.Pool(2) as pool:
            pool.starmap(_write_row, [(a.name, r) for r in range(8)])
        expected = np.arange(8)[:, None] * 10 + np.arange(5)[None, :]
        np.testing.assert_array_equal(a.ndarray, expected)


def test_fork_child_keeps_parent_handle_and_owner(name):
    # A forked copy of the owner's handle never removes the name.
    ctx = mp.get_context("fork")
    with shm.create(name(), 4) as a:
        p = ctx.Process(target=lambda: a.ndarray.__setitem__(0, 9.0))
        p.start()
        p.join(30)
        assert p.exitcode == 0 and a.ndarray[0] == 9.0
        assert shm.open(a.name).shape == (4,)


WAITER = """
import sys, pyshmarray as shm
e = shm.Event.open(sys.argv[1])
print("waiting", flush=True)
try:
    e.wait()
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(3)
"""


def test_ctrl_c_interrupts_event_wait(name):
    e = shm.Event.create(name())
    p = subprocess.Popen([sys.executable, "-c", WAITER, e.name], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "waiting"
        time.sleep(0.2)  # inside the wait
        t = time.monotonic()
        p.send_signal(signal.SIGINT)
        assert p.wait(5) == 3
        assert time.monotonic() - t < 1.0
        assert p.stdout.readline().strip() == "interrupted"
    finally:
        p.kill()
        p.wait()


LOCKER = """
import sys, pyshmarray as shm
a = shm.open(sys.argv[1])
print("waiting", flush=True)
try:
    with a.lock():
        pass
except KeyboardInterrupt:
    sys.exit(3)
"""


def test_ctrl_c_interrupts_a_blocked_lock(name):
    with shm.create(name(), 4) as a:
        with a.lock():
            p = subprocess.Popen([sys.executable, "-c", LOCKER, a.name], stdout=subprocess.PIPE, text=True)
            try:
                assert p.stdout.readline().strip() == "waiting"
                time.sleep(0.2)
                t = time.monotonic()
                p.send_signal(signal.SIGINT)
                assert p.wait(5) == 3
                assert time.monotonic() - t < 1.0
            finally:
                p.kill()
                p.wait()


def test_event_and_barrier_between_processes(name):
    ctx = mp.get_context("spawn")
    e = shm.Event.create(name("e"))
    b = shm.Barrier.create(name("b"), 2)
    p = ctx.Process(target=_barrier_then_set, args=(b.name, e.name))
    p.start()
    leaders = [b.wait(timeout=30)]
    assert e.wait(timeout=30)
    p.join(30)
    assert p.exitcode in (0, 10)
    assert sum(leaders) + (p.exitcode == 10) == 1  # exactly one leader
    assert not e.wait(0) or e.is_set()


def _barrier_then_set(bname, ename):
    b = shm.Barrier.open(bname)
    leader = b.wait(timeout=30)
    shm.Event.open(ename).set()
    sys.exit(10 if leader else 0)


def test_barrier_timeout_breaks(name):
    b = shm.Barrier.create(name(), 2)
    with pytest.raises(shm.BarrierTimeoutError):
        b.wait(timeout=0.05)
    assert b.broken
    with pytest.raises(shm.BrokenBarrierError):
        b.wait(timeout=0.05)
    b.reset()
    assert not b.broken


@pytest.mark.parametrize("kind", ["read", "lock"])
def test_a_guard_copied_into_a_forked_child_releases_nothing_of_the_parent(name, kind):
    # The parent holds the lock (a read, or the exclusive lock); a forked child
    # releases its copy of the guard. The lock is the parent's: the child's release
    # must neither count the parent's read out nor clear its writer word.
    import os

    seg = name()
    a = shm.create(seg, (4,), "i8")
    g = a.read() if kind == "read" else a.lock()
    g.__enter__()
    pid = os.fork()
    if pid == 0:  # the child
        code = 0
        try:
            g.release()
        except BaseException:
            code = 3
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    # Another handle (as another process would) still finds the lock held.
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, pyshmarray as shm\n"
            f"a = shm.open({seg!r})\n"
            "try:\n"
            "    with a.write(timeout=0.2):\n"
            "        sys.exit(1)\n"
            "except shm.TimeoutError:\n"
            "    sys.exit(0)\n",
        ],
        timeout=60,
    )
    assert probe.returncode == 0, "the child's copy released the parent's lock"
    g.release()
    with a.write(timeout=5):
        pass
    a.close()
