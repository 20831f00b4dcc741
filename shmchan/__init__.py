"""shmchan: zero-copy shared-memory channels for Python and its native neighbours.

>>> import shmchan
>>> with shmchan.Channel.create("demo0", slot_size=64, capacity=8) as ch:
...     w, r = ch.writer(), ch.reader()
...     w.send(b"hello")
...     r.recv_bytes()
b'hello'
"""

from ._version import __version__
from .broadcast import Broadcast, ReaderPlace
from .channel import (
    Channel,
    ChannelServer,
    ChannelStats,
    Message,
    Reader,
    Slot,
    Writer,
    cleanup_stale,
    is_stale,
    reclaim_stale,
    unlink,
)
from .errors import (
    ChannelAllocationError,
    ChannelBusyError,
    ChannelClosedError,
    ChannelEmptyError,
    ChannelEndedError,
    ChannelExistsError,
    ChannelFullError,
    ChannelNotFoundError,
    ChannelPermissionError,
    ChannelTimeoutError,
    CorruptChannelError,
    IncompatibleChannelError,
    LappedError,
    MessageReleasedError,
    ObjectDtypeError,
    PeerDeadError,
    ShmchanDecodeError,
    ShmchanError,
)
from .schema import frame_message_size
from .state import State, StateWriter

__all__ = [
    "Broadcast",
    "Channel",
    "ChannelAllocationError",
    "ChannelBusyError",
    "ChannelClosedError",
    "ChannelEmptyError",
    "ChannelEndedError",
    "ChannelExistsError",
    "ChannelFullError",
    "ChannelNotFoundError",
    "ChannelPermissionError",
    "ChannelServer",
    "ChannelStats",
    "ChannelTimeoutError",
    "CorruptChannelError",
    "IncompatibleChannelError",
    "LappedError",
    "Message",
    "MessageReleasedError",
    "ObjectDtypeError",
    "PeerDeadError",
    "Reader",
    "ReaderPlace",
    "ShmchanDecodeError",
    "ShmchanError",
    "Slot",
    "State",
    "StateWriter",
    "Writer",
    "__version__",
    "cleanup_stale",
    "frame_message_size",
    "is_stale",
    "reclaim_stale",
    "unlink",
]
