"""Exceptions. Each also subclasses the matching builtin, so generic handlers keep working."""

from __future__ import annotations

__all__ = [
    "ChannelAllocationError",
    "ChannelBusyError",
    "ChannelClosedError",
    "ChannelEmptyError",
    "ChannelEndedError",
    "ChannelExistsError",
    "ChannelFullError",
    "ChannelNotFoundError",
    "ChannelPermissionError",
    "ChannelTimeoutError",
    "CorruptChannelError",
    "IncompatibleChannelError",
    "LappedError",
    "MessageReleasedError",
    "ObjectDtypeError",
    "PeerDeadError",
    "ShmchanError",
]


class ShmchanError(Exception):
    """Base class of every shmchan error."""


class ChannelExistsError(FileExistsError, ShmchanError):
    """``create`` found the name taken (possibly by a stale channel whose processes died)."""


class ChannelNotFoundError(FileNotFoundError, ShmchanError):
    """``open`` found no channel of that name."""


class ChannelPermissionError(PermissionError, ShmchanError):
    """The channel exists but this process may not open it."""


class ChannelAllocationError(OSError, ShmchanError):
    """The memory for a channel could not be allocated (``/dev/shm`` full, size too large)."""


class ChannelFullError(BlockingIOError, ShmchanError):
    """``reserve``/``send`` with ``timeout=0`` found every slot in use."""


class ChannelEmptyError(BlockingIOError, ShmchanError):
    """``recv`` with ``timeout=0`` found no message."""


class ChannelTimeoutError(TimeoutError, ShmchanError):
    """A blocking call waited its whole timeout."""


class ChannelBusyError(ShmchanError):
    """The channel already has a writer (or reader) attached; it has one of each at most."""


class IncompatibleChannelError(ShmchanError):
    """The object is not a shmchan channel, is not initialised, or has an incompatible layout."""


class ObjectDtypeError(ValueError, IncompatibleChannelError):
    """A numpy dtype that holds Python object references (itself, a record field or a sub-array
    element) for a state board: refused by ``State.create``, and by ``State.open`` when a peer's
    descriptor names one. Bytes from shared memory never become object pointers."""


class CorruptChannelError(ShmchanError):
    """A shared field holds an impossible value; the handle refuses further use."""


class PeerDeadError(ConnectionError, ShmchanError):
    """The process at the other end died while attached."""


class ChannelEndedError(EOFError, ShmchanError):
    """The writer closed the channel and every message it sent has been received."""


class ChannelClosedError(ValueError, ShmchanError):
    """The handle was closed."""


class MessageReleasedError(ValueError, ShmchanError):
    """The message (or slot) was already released (or committed/aborted)."""


class LappedError(ShmchanError):
    """Broadcast, overwrite policy: the writer rewrote a message's slot while the reader held it,
    so what was read from its views may be torn. Raised by ``Message.release``/``check`` and when a
    ``with`` block over the message ends."""


class ShmchanDecodeError(ValueError, ShmchanError):
    """A FlatBuffer (a channel's descriptor or a Frame, Tensor, Packet or Audio message) is
    malformed: truncated, offsets out of range, fields inconsistent with the message. Raised
    instead of errors from deep inside generated code (``shmchan.schema.DecodeError`` is this class)."""
