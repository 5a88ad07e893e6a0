"""The exceptions of pyshmarray (raised by the native module)."""

import builtins
import queue as _queue
import threading as _threading

__all__ = [
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


class ShmarrayError(Exception):
    """Base class of every error pyshmarray raises."""


class NotFoundError(ShmarrayError, FileNotFoundError):
    """No segment of that name."""


class AlreadyExistsError(ShmarrayError, FileExistsError):
    """The name is taken (the existing segment is left untouched)."""


class TypeMismatchError(ShmarrayError, TypeError):
    """The segment holds another kind of object or element type, or the dtype is unsupported."""


class InvalidNameError(ShmarrayError, builtins.ValueError):
    """The name is not a valid segment name (empty, too long, a slash, ...)."""


class PermissionDeniedError(ShmarrayError, PermissionError):
    """The file belongs to another user or is writable by others."""


class ReadOnlyError(ShmarrayError):
    """The handle was opened read-only."""


class NoSpaceError(ShmarrayError, OSError):
    """The shared-memory file system is full."""


class InUseError(ShmarrayError):
    """The segment is claimed by another handle of this process."""


class CorruptError(ShmarrayError):
    """The file is not a valid segment (damaged, forged, or half built)."""


class OwnerDiedError(ShmarrayError):
    """The previous holder of the lock died holding it.

    ``e.guard`` HOLDS the lock now: repair the data, call
    ``e.guard.mark_consistent()``, then ``e.guard.release()`` (or use
    ``with e.guard: ...``). Released unrepaired, the lock becomes not
    recoverable for everyone (:class:`NotRecoverableError`).
    """

    guard: "object"

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        self.guard = None


class NotRecoverableError(ShmarrayError):
    """A holder died and its lock was released without ``mark_consistent()``: the lock is unusable."""


class DeadlockError(ShmarrayError, RuntimeError):
    """This thread already holds the lock (or a read lock of the same array)."""


class TimeoutError(ShmarrayError, builtins.TimeoutError):
    """A wait gave up after its timeout."""


# Python 3.13's queue.ShutDown, where it exists: a shut-down pyshmarray queue
# raises what a shut-down queue.Queue raises.
_ShutDown = getattr(_queue, "ShutDown", Exception)


class QueueClosed(ShmarrayError, _ShutDown):  # type: ignore[misc, valid-type]
    """The queue was shut down (``shutdown()``): puts fail; gets, once the queue is
    drained. A subclass of ``queue.ShutDown`` on Python 3.13 and newer."""


class CapacityError(ShmarrayError):
    """A map or vec has no room for the new entry (its capacity is fixed at
    creation); nothing changed."""


class Full(TimeoutError, _queue.Full):
    """A put gave up: the queue stayed full until the timeout."""


class Empty(TimeoutError, _queue.Empty):
    """A get gave up: the queue stayed empty until the timeout."""


class BrokenBarrierError(ShmarrayError, _threading.BrokenBarrierError):
    """The barrier is broken (a participant died or timed out)."""


class BarrierTimeoutError(BrokenBarrierError, builtins.TimeoutError):
    """This wait timed out; the barrier is now broken for all participants."""


class ValueError(ShmarrayError, builtins.ValueError):  # noqa: A001 - raised by name from Rust
    """An argument is out of range (queue capacity, message size, ...), or the
    handle is closed."""

for _name in __all__:
    globals()[_name].__module__ = "pyshmarray"
del _name
del _ShutDown
