"""One lifecycle for every handle (with, close, unlink, closed, is_owner), the
names Python users type (queue, barrier, event, array protocols), clear errors."""

import gc
import os
import threading
import time

import numpy as np
import pytest

import pyshmarray as shm
from conftest import shm_dir

# Every handle kind: how to create one, and how to open another handle of it.
KINDS = {
    "array": (lambda n: shm.create(n, (2, 3), "i4"), lambda n: shm.open(n)),
    "value": (lambda n: shm.Value.create(n, 5), shm.Value.open),
    "atomic": (lambda n: shm.AtomicU64.create(n, 5), shm.AtomicU64.open),
    "event": (shm.Event.create, shm.Event.open),
    "barrier": (lambda n: shm.Barrier.create(n, 2), shm.Barrier.open),
    "queue": (lambda n: shm.Queue.create(n, 4, "i8"), shm.Queue.open),
    "bytequeue": (lambda n: shm.ByteQueue.create(n, 4, 16), shm.ByteQueue.open),
    "arrayqueue": (lambda n: shm.ArrayQueue.create(n, 4, 64), shm.ArrayQueue.open),
    "map": (
        lambda n: shm.SharedMap.create(n, 10, "i8", "f8"),
        lambda n: shm.SharedMap.open(n, "i8", "f8"),
    ),
    "vec": (lambda n: shm.SharedVec.create(n, 10, "f8"), shm.SharedVec.open),
}


def exists(n):
    return os.path.exists(shm_dir() / n)


def use(h):
    """One ordinary operation of the handle (raises once it is closed)."""
    if isinstance(h, shm.SharedArray):
        return h.counter(0).load()
    if isinstance(h, shm.Value):
        return h.value
    if isinstance(h, shm.AtomicU64):
        return h.load()
    if isinstance(h, shm.Event):
        return h.is_set()
    if isinstance(h, shm.Barrier):
        return h.broken
    if isinstance(h, (shm.Queue, shm.ByteQueue, shm.ArrayQueue)):
        return h.qsize()
    if isinstance(h, (shm.SharedMap, shm.SharedVec)):
        return len(h)
    raise AssertionError(type(h))


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_handle_has_the_same_lifecycle(name, kind):
    create, open_ = KINDS[kind]
    n = name(kind)
    with create(n) as h:
        assert h.name == n and h.is_owner and not h.closed
        assert h.path == str(shm_dir() / n)
        use(h)
        other = open_(n)
        assert not other.is_owner
        other.close()
        assert other.closed and exists(n)  # an opener never removes the name
        with pytest.raises(shm.ValueError, match="closed") as e:
            use(other)
        assert isinstance(e.value, ValueError) and isinstance(e.value, shm.ShmarrayError)
        other.close()  # idempotent
    assert h.closed and not exists(n)
    with pytest.raises(ValueError):
        use(h)
    assert "closed" in repr(h)
    h.close()


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_unlink_removes_the_name_and_the_handle_keeps_working(name, kind):
    create, open_ = KINDS[kind]
    n = name(kind)
    h = create(n)
    h.unlink()
    assert not exists(n) and not h.closed
    use(h)
    with pytest.raises(shm.NotFoundError):
        open_(n)
    h.close()


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_persistent_handles_keep_the_name(name, kind):
    create, _ = KINDS[kind]
    n = name(kind)
    h = {
        "array": lambda: shm.create(n, 4, persistent=True),
        "value": lambda: shm.Value.create(n, 1, persistent=True),
        "atomic": lambda: shm.AtomicU64.create(n, persistent=True),
        "event": lambda: shm.Event.create(n, persistent=True),
        "barrier": lambda: shm.Barrier.create(n, 2, persistent=True),
        "queue": lambda: shm.Queue.create(n, 4, persistent=True),
        "bytequeue": lambda: shm.ByteQueue.create(n, 4, persistent=True),
        "arrayqueue": lambda: shm.ArrayQueue.create(n, 4, persistent=True),
        "map": lambda: shm.SharedMap.create(n, 4, "i4", "i4", persistent=True),
        "vec": lambda: shm.SharedVec.create(n, 4, persistent=True),
    }[kind]()
    assert not h.is_owner
    h.close()
    assert exists(n)
    shm.remove(n)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_collecting_the_owner_removes_the_name(name, kind):
    create, _ = KINDS[kind]
    n = name(kind)
    h = create(n)
    assert exists(n)
    del h
    gc.collect()
    assert not exists(n)


def test_value_close_removes_the_name_while_a_released_guard_is_referenced(name):
    # Issue 18: the guard object kept the owner's handle (and so the name) alive.
    n = name()
    v = shm.Value.create(n, 1)
    with v.lock() as g:
        v.value = 2
    v.close()
    assert not exists(n), "close() left the name while a guard object was referenced"
    assert g is not None and not g.held
    # The same for an array's guard and counter.
    a = shm.create(name("a"), 4)
    with a.lock() as arr:
        arr[0] = 1
    c = a.counter(1)
    c.fetch_add(3)
    a.close()
    assert not exists(a.name)
    assert c.load() == 3  # the counter keeps the mapping, not the name


def test_close_while_a_guard_is_held_removes_the_name_and_the_guard_still_releases(name):
    v = shm.Value.create(name(), 1)
    g = v.lock()
    g.__enter__()
    v.close()
    assert not exists(v.name)
    g.release()


def test_a_handle_inherited_through_fork_never_removes_the_name(name):
    for h in [shm.create(name("a"), 4), shm.Value.create(name("v"), 1), shm.SharedMap.create(name("m"), 4, "i4", "i4")]:
        pid = os.fork()
        if pid == 0:  # the child: close (and collect) its copy of the owner's handle
            code = 0
            try:
                code = 3 if h.is_owner else 0
                h.close()
                del h
                gc.collect()
            except BaseException:
                code = 4
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.WEXITSTATUS(status) == 0
        assert exists(h.name), f"a forked child removed {h!r}"
        h.close()
        assert not exists(h.name)


# ---- names from the standard library ------------------------------------------------


def test_queue_names(name):
    q = shm.Queue.create(name(), 2, "i8")
    assert q.empty() and not q.full() and q.qsize() == 0
    q.put_nowait(1)
    q.put(2)
    assert q.full() and q.qsize() == 2 and len(q) == 2
    with pytest.raises(shm.Full):
        q.put_nowait(3)
    assert q.get_nowait() == 1 and q.get() == 2
    with pytest.raises(shm.Empty):
        q.get_nowait()
    b = shm.ByteQueue.create(name("b"), 1, 8)
    assert b.capacity >= 1 and b.empty()
    for i in range(b.capacity):
        b.put_nowait(b"x%d" % i)
    assert b.full() and b.qsize() == b.capacity and not b.empty()
    with pytest.raises(shm.Full):
        b.put_nowait(b"y")
    assert [b.get_nowait() for _ in range(b.capacity)] == [b"x%d" % i for i in range(b.capacity)]
    with pytest.raises(shm.Empty):
        b.get_nowait()
    b.shutdown()
    assert b.is_shutdown
    with pytest.raises(shm.QueueClosed):
        b.put(b"z")


def test_barrier_names(name):
    b = shm.Barrier.create(name(), 2)
    assert b.parties == 2 and b.n_waiting == 0 and not b.broken
    errors = []

    def waiter():
        try:
            b.wait(timeout=30)
        except shm.BrokenBarrierError as e:
            errors.append(e)

    # A second thread on the same handle waits; abort() from this one wakes it.
    t = threading.Thread(target=waiter)
    t.start()
    deadline = time.monotonic() + 10
    while b.n_waiting != 1:
        assert time.monotonic() < deadline, "the waiter never arrived"
        time.sleep(0.001)
    b.abort()
    t.join(10)
    assert not t.is_alive() and len(errors) == 1
    assert isinstance(errors[0], threading.BrokenBarrierError)
    assert b.broken and b.n_waiting == 0
    with pytest.raises(shm.BrokenBarrierError):
        b.wait(timeout=1)
    b.reset()
    assert not b.broken


def test_event_names(name):
    e = shm.Event.create(name())
    assert not e.is_set() and not e.wait(0)
    e.set()
    assert e.is_set() and e.wait() and e.wait(timeout=1)
    e.clear()
    assert not e.is_set()


# ---- arrays as Python objects -----------------------------------------------------


def test_array_protocols(name):
    a = shm.create(name(), (3, 4), "f8")
    a[1, 2] = 5.0
    a[0] = np.arange(4)
    assert a[1, 2] == 5.0 and a.ndarray[1, 2] == 5.0
    np.testing.assert_array_equal(a[0], np.arange(4.0))
    np.testing.assert_array_equal(a[:, 2], [2.0, 5.0, 0.0])
    assert np.asarray(a).base is not None and np.shares_memory(np.asarray(a), a.ndarray)
    assert [r.tolist() for r in a][0] == [0.0, 1.0, 2.0, 3.0]
    assert len(a) == 3 and a.size == 12
    assert "shape=(3, 4)" in repr(a) and "dtype=<f8" in repr(a)
    assert "shape=(7,)" in repr(shm.create(name("1d"), 7))
    a.close()


@pytest.mark.skipif(
    not shm._native.BUFFER_PROTOCOL,
    reason="memoryview(array) needs the abi3-py311 build (Python >= 3.11)",
)
def test_memoryview_of_an_array(name):
    a = shm.create(name(), (3, 4), "i4")
    a[2, 3] = 7
    m = memoryview(a)
    assert m.shape == (3, 4) and m.format == "i" and m.itemsize == 4 and not m.readonly
    assert m[2, 3] == 7
    m[0, 0] = 9
    assert a[0, 0] == 9
    a.close()
    assert m[2, 3] == 7  # the buffer keeps the mapping
    m.release()
    r = shm.create(name("f"), (2, 3), "f8", fortran=True)
    r[1, 2] = 4.0
    ro = shm.open(r.name, readonly=True)
    mv = memoryview(ro)
    assert mv.readonly and mv.f_contiguous and mv[1, 2] == 4.0
    with pytest.raises(TypeError):
        mv[0, 0] = 1.0
    mv.release()
    ro.close()
    r.close()


def test_the_namespace_holds_only_its_own_names():
    public = {n for n in dir(shm) if not n.startswith("_")}
    assert public <= set(shm.__all__), public - set(shm.__all__)
    for leaked in ["Any", "Dict", "List", "Optional", "Tuple", "NamedTuple", "annotations"]:
        assert not hasattr(shm, leaked), leaked
    for n in shm.__all__:
        obj = getattr(shm, n)
        if isinstance(obj, type) or callable(obj):
            assert obj.__module__.startswith("pyshmarray"), n
