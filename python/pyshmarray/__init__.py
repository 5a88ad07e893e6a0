"""pyshmarray: numpy arrays, robust locks, events, barriers, queues, maps and
lists shared between processes through named shared-memory segments (Linux).

Python bindings of the Rust crate ``shmarray``; every segment is a valid ``.npy``
file in ``/dev/shm`` (or ``$SHMARRAY_DIR``) plus a control block, so Rust
programs, this package and ``numpy.load(path, mmap_mode="r+")`` share the same
bytes.

>>> import pyshmarray, numpy as np
>>> with pyshmarray.create("doc-frames", (4, 4), "f8") as a:
...     with a.lock():
...         a.ndarray[:] = 1.0
...     float(a.ndarray.sum())
16.0

Locks survive a holder killed with ``kill -9``: the next locker gets
:class:`OwnerDiedError`, whose ``.guard`` holds the lock for the repair (or pass
``recover=fn`` to ``lock()``). Blocking calls release the GIL and can be
interrupted with Ctrl-C.

Every handle has the same lifecycle: ``with h:``, ``h.close()`` (the creator's
handle removes the name then, unless ``persistent=True``), ``h.unlink()``,
``h.closed``; and every handle pickles as "open this segment by name", so it can
be passed to ``multiprocessing`` workers (the worker's handle is not the owner).
"""

from __future__ import annotations

from typing import NamedTuple as _NamedTuple

from . import _errors, _native
from ._errors import (
    AlreadyExistsError,
    BarrierTimeoutError,
    BrokenBarrierError,
    CapacityError,
    CorruptError,
    DeadlockError,
    Empty,
    Full,
    InUseError,
    InvalidNameError,
    NoSpaceError,
    NotFoundError,
    NotRecoverableError,
    OwnerDiedError,
    PermissionDeniedError,
    QueueClosed,
    ReadOnlyError,
    ShmarrayError,
    TimeoutError,
    TypeMismatchError,
    ValueError,
)
from ._native import (
    TIMEOUT_MAX,
    ArrayQueue,
    AtomicU64,
    Barrier,
    ByteQueue,
    Counter,
    Event,
    Guard,
    Queue,
    SharedArray,
    SharedMap,
    SharedVec,
    Value,
    create,
    open,
    remove,
)

__all__ = [
    "create",
    "open",
    "ls",
    "gc",
    "remove",
    "segment_dir",
    "SegmentInfo",
    "SharedArray",
    "Guard",
    "Counter",
    "Value",
    "AtomicU64",
    "Event",
    "Barrier",
    "Queue",
    "ByteQueue",
    "ArrayQueue",
    "SharedMap",
    "SharedVec",
    "TIMEOUT_MAX",
    "ShmarrayError",
    "NotFoundError",
    "AlreadyExistsError",
    "TypeMismatchError",
    "InvalidNameError",
    "PermissionDeniedError",
    "ReadOnlyError",
    "NoSpaceError",
    "InUseError",
    "CorruptError",
    "OwnerDiedError",
    "NotRecoverableError",
    "DeadlockError",
    "TimeoutError",
    "QueueClosed",
    "CapacityError",
    "Full",
    "Empty",
    "BrokenBarrierError",
    "BarrierTimeoutError",
    "ValueError",
]

__version__ = "0.1.0"


class SegmentInfo(_NamedTuple):
    """One segment as :func:`ls` lists it."""

    name: str
    kind: str | None
    dtype: str | None
    shape: tuple[int, ...] | None
    bytes: int | None
    pages: str | None
    in_use: bool | None
    usage: str | None
    persistent: bool | None
    creator: str | None
    creator_pid: int | None
    path: str
    error: str | None


SegmentInfo.__module__ = "pyshmarray"
del _NamedTuple, annotations  # the namespace holds only pyshmarray's own names


def ls() -> list[SegmentInfo]:
    """Lists the segments of the namespace (``/dev/shm`` or ``$SHMARRAY_DIR``),
    as ``shmarray ls`` does: name, kind, dtype, shape, bytes, pages, whether any
    process has it open, ... Files that are not valid segments have ``error`` set."""
    return [SegmentInfo(**d) for d in _native.ls()]


def gc(dry_run: bool = False) -> dict[str, list]:
    """Removes the segments nobody uses (not persistent, open by no process), as
    ``shmarray gc`` does; with ``dry_run=True`` only lists them. Returns
    ``{"removed": [(name, why)], "undecided": [name], "failed": [(name, error)]}``."""
    return _native.gc(dry_run)


def segment_dir() -> str:
    """The directory segments are created in (``/dev/shm`` or ``$SHMARRAY_DIR``)."""
    return _native.segment_dir()
