"""pyshmarray: numpy arrays, robust locks, events, barriers and queues shared
between processes through named shared-memory segments (Linux).

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
"""

from typing import Any, Dict, List, NamedTuple, Optional, Tuple

from . import _errors
from ._errors import (
    AlreadyExistsError,
    BarrierTimeoutError,
    BrokenBarrierError,
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
)
from ._native import (
    AtomicU64,
    Barrier,
    ByteQueue,
    Counter,
    Event,
    Guard,
    Queue,
    SharedArray,
    Value,
    create,
    open,
    remove,
)
from . import _native

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
    "Full",
    "Empty",
    "BrokenBarrierError",
    "BarrierTimeoutError",
]

__version__ = "0.1.0"


class SegmentInfo(NamedTuple):
    """One segment as :func:`ls` lists it."""

    name: str
    kind: Optional[str]
    dtype: Optional[str]
    shape: Optional[Tuple[int, ...]]
    bytes: Optional[int]
    pages: Optional[str]
    in_use: Optional[bool]
    usage: Optional[str]
    persistent: Optional[bool]
    creator: Optional[str]
    creator_pid: Optional[int]
    path: str
    error: Optional[str]


def ls() -> List[SegmentInfo]:
    """Lists the segments of the namespace (``/dev/shm`` or ``$SHMARRAY_DIR``),
    as ``shmarray ls`` does: name, kind, dtype, shape, bytes, pages, whether any
    process has it open, ... Files that are not valid segments have ``error`` set."""
    return [SegmentInfo(**d) for d in _native.ls()]


def gc(dry_run: bool = False) -> Dict[str, Any]:
    """Removes the segments nobody uses (not persistent, open by no process), as
    ``shmarray gc`` does; with ``dry_run=True`` only lists them. Returns
    ``{"removed": [(name, why)], "undecided": [name], "failed": [(name, error)]}``."""
    return _native.gc(dry_run)


def segment_dir() -> str:
    """The directory segments are created in (``/dev/shm`` or ``$SHMARRAY_DIR``)."""
    return _native.segment_dir()
