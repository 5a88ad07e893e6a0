"""bool, float16, complex and structured dtypes: arrays made here and read by
numpy's plain ``numpy.load(path, mmap_mode="r+")`` (and written by it), opened
again by name; queues and values of the new scalar types; what is refused."""

import numpy as np
import pytest

import pyshmarray as shm

NEW = ["?", "f2", "c8", "c16", bool, np.float16, np.complex64, "complex128"]


def sample(dt, shape=(2, 3)):
    dt = np.dtype(dt)
    base = np.arange(int(np.prod(shape))).reshape(shape)
    if dt.kind == "c":
        return (base - 1j * base[::-1]).astype(dt)
    if dt.kind == "b":
        return (base % 3 == 1).astype(dt)
    return (base / 4 - 1).astype(dt)


@pytest.mark.parametrize("dt", NEW, ids=str)
def test_new_scalar_dtypes_round_trip_with_numpy_both_ways(name, dt):
    n = name()
    with shm.create(n, (2, 3), dt) as a:
        assert a.dtype == np.dtype(dt) and a.descr == np.dtype(dt).str
        a.ndarray[...] = sample(dt)
        b = shm.open(n)
        assert b.dtype == np.dtype(dt)
        np.testing.assert_array_equal(b.ndarray, sample(dt))
        # numpy's own loader maps the same bytes, and its writes are seen here.
        m = np.load(a.path, mmap_mode="r+")
        assert m.dtype == np.dtype(dt)
        np.testing.assert_array_equal(m, sample(dt))
        m[...] = sample(dt)[::-1]
        m.flush()
        np.testing.assert_array_equal(a.ndarray, sample(dt)[::-1])
        b.close()


def test_bool_bytes_other_than_0_and_1_read_as_true(name):
    with shm.create(name(), 4, bool) as a:
        a.ndarray.view(np.uint8)[:] = [0, 1, 2, 255]
        assert shm.open(a.name).ndarray.view(np.uint8).tolist() == [0, 1, 2, 255]
        assert [bool(x) for x in a.ndarray] == [False, True, True, True]


STRUCTURED = [
    [("x", "<f4"), ("y", "<f4"), ("mass", "<f8")],
    np.dtype([("id", "u1"), ("v", "<f8"), ("ok", "?")], align=True),
    np.dtype([("id", "u1"), ("v", "<f8"), ("ok", "?")]),
    [("pos", "<f4", (3,)), ("inner", [("u", "u1"), ("v", "<i2")]), ("h", "<f2"), ("z", "<c16"), ("m", "<i4", (2, 2))],
]


@pytest.mark.parametrize("dt", STRUCTURED, ids=["packed", "aligned", "unaligned", "nested"])
def test_structured_arrays_round_trip_with_numpy_both_ways(name, dt):
    dt = np.dtype(dt)
    n = name()
    a = shm.create(n, 5, dt)
    try:
        assert a.dtype.fields == dt.fields and a.dtype.itemsize == dt.itemsize
        assert a.descr == repr(np.lib.format.dtype_to_descr(dt))
        assert a.nbytes == 5 * dt.itemsize
        rec = np.zeros(5, dt)
        for f in dt.names:
            rec[f] = sample(dt[f].base, (5,) + dt[f].shape) if dt[f].names is None else 0
        a.ndarray[...] = rec
        # numpy maps the segment with the plain one-liner, as a structured array.
        m = np.load(a.path, mmap_mode="r+")
        assert m.dtype.fields == dt.fields and m.dtype.itemsize == dt.itemsize
        np.testing.assert_array_equal(m, rec)
        first = dt.names[0]
        m[first][2] = m[first][1]
        m.flush()
        np.testing.assert_array_equal(a.ndarray[first][2], rec[first][1])
        # Opened by name, the handle maps the same records.
        b = shm.open(n)
        assert b.dtype.fields == dt.fields and b.dtype.itemsize == dt.itemsize
        np.testing.assert_array_equal(b.ndarray, a.ndarray)
        with b.lock() as g:
            g[dt.names[-1]][4] = rec[dt.names[-1]][0]
        np.testing.assert_array_equal(m[dt.names[-1]][4], rec[dt.names[-1]][0])
        b.close()
    finally:
        a.close()


def test_structured_fortran_arrays(name):
    dt = np.dtype([("a", "<i2"), ("b", "<f8")])
    with shm.create(name(), (2, 3), dt, fortran=True) as a:
        a.ndarray["a"] = np.arange(6).reshape(2, 3)
        m = np.load(a.path, mmap_mode="r")
        assert m.flags["F_CONTIGUOUS"] and not m.flags["C_CONTIGUOUS"]
        np.testing.assert_array_equal(m["a"], np.arange(6).reshape(2, 3))


@pytest.mark.parametrize(
    "dt",
    ["U4", ">f8", "M8[ns]", object, [("s", "U3")], [("o", "O")], [("x", ">i4")]],
    ids=str,
)
def test_unsupported_dtypes_are_refused_and_nothing_is_left(name, dt):
    with pytest.raises(shm.TypeMismatchError):
        shm.create(name(), 3, dt)


@pytest.mark.parametrize("dt", ["?", "f2", "c8", "c16"])
def test_queues_of_the_new_scalar_types(name, dt):
    q = shm.Queue.create(name(), 8, dt)
    assert q.dtype == np.dtype(dt)
    items = sample(dt, (4,))
    q.put(items[1].item())
    assert q.get() == items[1].item()
    assert q.put_many(items) == 4
    got = q.get_many(10)
    assert got.dtype == np.dtype(dt)
    np.testing.assert_array_equal(got, items)
    other = shm.Queue.open(q.name)
    assert other.dtype == np.dtype(dt)
    other.put(items[2].item())
    assert q.get() == items[2].item()


def test_queues_of_records_are_refused_with_a_hint(name):
    with pytest.raises(shm.TypeMismatchError, match="ByteQueue"):
        shm.Queue.create(name(), 8, [("x", "<f4")])


def test_values_of_the_new_scalar_types(name):
    v = shm.Value.create(name(), 1 + 2j, "c16")
    try:
        assert v.value == 1 + 2j and v.dtype == np.dtype("c16")
        v.add(1j)
        assert shm.Value.open(v.name).value == 1 + 3j
    finally:
        v.close()
    b = shm.Value.create(name(), True, bool)
    try:
        assert b.value is True
        b.value = 0
        assert b.value is False
    finally:
        b.close()
    h = shm.Value.create(name(), 0.5, "f2")
    try:
        assert h.value == 0.5 and h.descr == "<f2"
    finally:
        h.close()
