"""More than 64 dimensions (numpy's limit) are refused at create, before anything
is made; 64 work end to end (issue 18, item 6)."""

import numpy as np
import pytest

import pyshmarray as shm
from conftest import shm_dir


@pytest.mark.parametrize("ndim", [65, 66])
def test_more_than_64_dimensions_are_a_value_error(name, ndim):
    n = name()
    with pytest.raises(ValueError, match="at most 64"):
        shm.create(n, (1,) * ndim, "u1")
    assert not (shm_dir() / n).exists()


def test_64_dimensions_open_in_numpy_and_again(name):
    n = name()
    with shm.create(n, (1,) * 64, "u1") as a:
        assert a.ndarray.ndim == 64
        with shm.open(n) as b:
            assert b.shape == (1,) * 64
        m = np.load(shm_dir() / n, mmap_mode="r")
        assert m.ndim == 64
        del m
