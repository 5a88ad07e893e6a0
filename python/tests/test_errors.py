"""Bad arguments get the exception a Python user expects (ValueError, TypeError,
IndexError, OverflowError), never a bare ShmarrayError; timeouts mean what they
mean in threading."""

import math
import threading

import pytest

import pyshmarray as shm


def test_queue_capacity_zero_or_negative_is_a_value_error(name):
    # multiprocessing.Queue(0) is unbounded; a shared queue has no such thing.
    for cap in (0, -1):
        with pytest.raises(ValueError, match="capacity must be at least 1"):
            shm.Queue.create(name(), cap)
        with pytest.raises(ValueError, match="capacity must be at least 1"):
            shm.ByteQueue.create(name("b"), cap)
    assert shm.Queue.create(name("one"), 1).capacity >= 1


def test_negative_dimensions_are_a_value_error_as_in_numpy(name):
    with pytest.raises(ValueError, match="negative dimensions are not allowed"):
        shm.create(name(), -5)
    with pytest.raises(ValueError, match="negative dimensions are not allowed"):
        shm.create(name(), (3, -1))


def test_a_shape_too_big_is_a_value_or_overflow_error(name):
    for shape in [(2**62, 2**62), (2**63,), 2**70, (2**40, 2**40, 8)]:
        with pytest.raises((ValueError, OverflowError)) as e:
            shm.create(name(), shape)
        assert not type(e.value) is shm.ShmarrayError


def test_a_shape_of_the_wrong_type_is_a_type_error(name):
    for shape in ["abc", 2.5, (2, 2.5), {"a": 1}, None]:
        with pytest.raises(TypeError):
            shm.create(name(), shape)
    # What numpy takes: an int, a tuple, a list, numpy ints.
    import numpy as np

    for shape in [np.int64(3), [2, 3], (np.uint8(2),), ()]:
        with shm.create(name("ok"), shape) as a:
            assert a.shape == np.empty(shape).shape


def test_counter_index_out_of_range_is_an_index_error(name):
    with shm.create(name(), 4) as a:
        for i in (8, -1, 2**40):
            with pytest.raises(IndexError):
                a.counter(i)
        assert a.counter(7).load() == 0


def test_barrier_parties_out_of_range_is_a_value_error(name):
    for parties in (0, -2, 65):
        with pytest.raises(ValueError, match="parties"):
            shm.Barrier.create(name(), parties)


def test_map_and_vec_arguments(name):
    with pytest.raises(ValueError):
        shm.SharedMap.create(name(), 0, "i8", "i8")
    with pytest.raises(ValueError):
        shm.SharedVec.create(name(), -1)
    with pytest.raises(shm.TypeMismatchError):
        shm.SharedMap.create(name(), 4, object, "i8")
    with pytest.raises(shm.TypeMismatchError):
        shm.SharedMap.create(name(), 4, "i8", "S")  # no size


def test_timeouts_mean_what_they_mean_in_threading(name):
    assert shm.TIMEOUT_MAX == threading.TIMEOUT_MAX
    e = shm.Event.create(name("e"))
    q = shm.Queue.create(name("q"), 2)
    b = shm.Barrier.create(name("b"), 2)
    v = shm.Value.create(name("v"), 0)
    a = shm.create(name("a"), 4)
    waits = {
        "event": lambda t: e.wait(t),
        "queue get": lambda t: q.get(timeout=t),
        "barrier": lambda t: b.wait(t),
        "value lock": lambda t: v.lock(timeout=t),
        "array lock": lambda t: a.lock(timeout=t),
        "array read": lambda t: a.read(timeout=t),
    }
    for what, wait in waits.items():
        # threading.Event().wait(inf) and Lock.acquire(timeout=1e300) raise
        # OverflowError; so do these.
        for t in (math.inf, 1e300, shm.TIMEOUT_MAX * 2):
            with pytest.raises(OverflowError):
                wait(t)
        for t in (-1, -0.5, math.nan):
            with pytest.raises(ValueError):
                wait(t)
    with pytest.raises(OverflowError):
        threading.Event().wait(math.inf)
    # A large finite timeout within TIMEOUT_MAX is accepted (and returns at once
    # here: the event is set).
    e.set()
    assert e.wait(shm.TIMEOUT_MAX) and e.wait(1e9)
    assert not b.broken  # refused before waiting: nothing broke
