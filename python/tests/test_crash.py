"""Holders killed with SIGKILL while holding a lock: Python and Rust recover
each other's locks (OwnerDied -> repair -> consistent)."""

import os
import signal

import numpy as np
import pytest

import pyshmarray as shm
from conftest import python_child, run_peer

HOLD = """
import sys, time, pyshmarray as shm
a = shm.open(sys.argv[1])
g = a.{kind}()
arr = g.__enter__()
a.ndarray[0] = -1.0          # a half update
print("locked", flush=True)
time.sleep(60)
"""


def hold_in_python(name, kind="lock"):
    p = python_child(HOLD.format(kind=kind), name)
    assert p.stdout.readline().strip() == "locked", p.stderr.read()
    return p


def kill(p):
    p.send_signal(signal.SIGKILL)
    p.wait(10)


def test_python_holder_killed_python_repairs_by_hand(name):
    with shm.create(name(), 4) as a:
        kill(hold_in_python(a.name))
        with pytest.raises(shm.OwnerDiedError) as e:
            with a.lock(timeout=10):
                pytest.fail("the block must not run")
        g = e.value.guard
        assert g.held and g.owner_died
        assert a.ndarray[0] == -1.0
        a.ndarray[:] = 0.0  # repair
        g.mark_consistent()
        g.release()
        with a.lock(timeout=1) as arr:
            assert arr.sum() == 0.0


def test_with_e_guard_releases(name):
    with shm.create(name(), 4) as a:
        kill(hold_in_python(a.name))
        try:
            with a.lock(timeout=10):
                pass
        except shm.OwnerDiedError as e:
            with e.guard:
                a.ndarray[0] = 5.0
                e.guard.mark_consistent()
        with a.lock(timeout=1) as arr:
            assert arr[0] == 5.0


def test_recover_callback(name):
    with shm.create(name(), 4) as a:
        kill(hold_in_python(a.name))
        seen = []

        def repair(arr):
            seen.append(float(arr[0]))
            arr[:] = 1.0

        with a.lock(timeout=10, recover=repair) as arr:
            assert seen == [-1.0] and arr.sum() == 4.0
        with a.lock(timeout=1):  # consistent again
            pass


def test_unrepaired_release_makes_lock_not_recoverable(name):
    with shm.create(name(), 4) as a:
        kill(hold_in_python(a.name))
        with pytest.raises(shm.OwnerDiedError) as e:
            with a.lock(timeout=10):
                pass
        e.value.guard.release()  # no mark_consistent
        with pytest.raises(shm.NotRecoverableError):
            with a.lock(timeout=1):
                pass


def test_read_finds_dead_writer(name):
    with shm.create(name(), 4) as a:
        kill(hold_in_python(a.name, kind="write"))
        with pytest.raises(shm.OwnerDiedError) as e:
            with a.read(timeout=10):
                pass
        with e.value.guard:  # the write guard: repair
            a.ndarray[:] = 3.0
            e.value.guard.mark_consistent()
        with a.read(timeout=1) as r:
            assert r.sum() == 12.0
        # And with recover=: the repaired write becomes the read.
        kill(hold_in_python(a.name, kind="write"))
        with a.read(timeout=10, recover=lambda arr: arr.fill(2.0)) as r:
            assert r.sum() == 8.0 and not r.flags.writeable


def test_value_holder_killed(name):
    v = shm.Value.create(name(), 10)
    code = """
import sys, time, pyshmarray as shm
v = shm.Value.open(sys.argv[1])
g = v.lock(); g.__enter__(); v.value = -1
print("locked", flush=True); time.sleep(60)
"""
    p = python_child(code, v.name)
    assert p.stdout.readline().strip() == "locked"
    kill(p)
    with pytest.raises(shm.OwnerDiedError) as e:
        v.add(1)
    g = e.value.guard
    assert v.value == -1  # this thread holds the lock through g
    v.value = 10
    g.mark_consistent()
    g.release()
    assert v.add(1) == 11


def test_rust_holder_killed_python_recovers(name, peer):
    import subprocess

    with shm.create(name(), 4) as a:
        p = subprocess.Popen([peer, "hold", a.name], stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline().strip() == "locked"
        kill(p)
        with a.lock(timeout=10, recover=lambda arr: arr.fill(7.0)) as arr:
            assert arr.sum() == 28.0


def test_python_holder_killed_rust_recovers(name, peer):
    with shm.create(name(), 4) as a:
        kill(hold_in_python(a.name))
        r = run_peer(peer, "recover", a.name)
        assert r.stdout.strip() == "recovered"
        with a.lock(timeout=1) as arr:
            assert arr[0] == 42.0
