"""Type stubs of shmchan._core, the native data plane (shmchan/_core.c)."""

from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt
from typing_extensions import Buffer, Self

from .schema import FrameSlot, FrameView, PixelFormat, TensorSlot
from .schema.frame import _Geometry

def _bind(address: int, raise_for: Callable[[int, str, str], Any], /) -> None: ...
def _set_hook(name: str, fn: Callable[..., Any], /) -> None: ...
def _at_exit() -> None: ...
def seconds_to_ns(timeout: float | None, /) -> int:
    """A timeout in seconds as nanoseconds: -1 for None (and for values too large); ValueError for
    NaN and negative values."""

def spin_to_ns(spin: float | None, /) -> int | None: ...

class Mapping:
    """The C channel handle and the lifetime of its mapping."""

    def __init__(self, address: int, where: str) -> None: ...
    @property
    def closed(self) -> bool: ...
    @property
    def forked(self) -> bool: ...
    @property
    def freed(self) -> bool: ...
    @property
    def where(self) -> str: ...
    def close(self) -> None: ...
    def hold(self) -> int: ...
    def unhold(self) -> None: ...
    def writer(self, cls: type[Any] = ..., spin: float | None = None, channel: Any = None) -> Any: ...
    def reader(self, start: int = 0, spin: float | None = None, cls: type[Any] = ..., channel: Any = None) -> Any: ...
    def wait_head(self, pos: int, timeout_ns: int, /) -> int: ...
    def state_read(self, buffer: Buffer, /) -> tuple[int, int]: ...
    def state_wait(self, version: int, timeout: float | None = None) -> int: ...

class SlotView:
    """The memory of one message or slot; while any view of it lives, the slot stays pinned."""

class Slot:
    """A reserved slot: fill it in place, then commit() (or abort()). As a context manager it
    commits on normal exit and aborts when the block raises, so readers never see a half-written
    message."""

    @property
    def buffer(self) -> memoryview:
        """A writable memoryview of exactly ``nbytes`` bytes of the slot."""
    @property
    def nbytes(self) -> int:
        """Length of the message being written."""
    @property
    def index(self) -> int:
        """Slot number in the ring."""
    @property
    def seq(self) -> int:
        """The stream position this message gets when committed."""
    @property
    def open(self) -> bool:
        """Whether the slot is still reserved (not committed or aborted)."""
    def ndarray(self, shape: int | Sequence[int] | None = None, dtype: npt.DTypeLike = np.uint8, *,
                offset: int = 0) -> npt.NDArray[Any]:
        """A writable numpy array over the slot, starting ``offset`` bytes in (``shape`` None: 1-D
        over the rest of the message)."""
    def commit(self, nbytes: int | None = None) -> None:
        """Publish the message (optionally shortened to ``nbytes``)."""
    def abort(self) -> None:
        """Drop the reservation; readers never see it."""
    def __enter__(self) -> Slot: ...
    def __exit__(self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None) -> None: ...

class Message:
    """A received message. Its views point into the slot; release it (``with`` does) when done."""

    @property
    def buffer(self) -> memoryview:
        """A read-only memoryview of the message, in place."""
    @property
    def nbytes(self) -> int:
        """Length of the message in bytes."""
    @property
    def seq(self) -> int:
        """Position of the message in the stream (0, 1, 2, ... since the channel was created)."""
    @property
    def lost(self) -> int:
        """Overwrite broadcasts: messages lost just before this one because the writer lapped the
        reader (0 otherwise)."""
    @property
    def released(self) -> bool:
        """Whether :meth:`release` was called."""
    @property
    def slot(self) -> int:
        """Slot number in the ring."""
    @property
    def intact(self) -> bool:
        """Whether the slot still holds this message (see :meth:`check`)."""
    def ndarray(self, shape: int | Sequence[int] | None = None, dtype: npt.DTypeLike = np.uint8, *,
                offset: int = 0) -> npt.NDArray[Any]:
        """A read-only numpy array over the message."""
    def tobytes(self) -> bytes:
        """A copy of the message."""
    def release(self) -> None:
        """Give the slot back to the writer (once no view of it is alive). Idempotent."""
    def check(self) -> None:
        """Raise :class:`LappedError` if the writer has rewritten this message's slot."""
    def frame(self) -> FrameView:
        """Decode a Frame message in place."""
    def tensor(self) -> npt.NDArray[Any]:
        """Decode a Tensor message in place."""
    def __len__(self) -> int: ...
    def __enter__(self) -> Message: ...
    def __exit__(self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None) -> None: ...

class Writer:
    """The channel's one writer. Get it from :meth:`shmchan.Channel.writer`."""

    @property
    def closed(self) -> bool:
        """Whether this writer (or its channel) was closed."""
    @property
    def position(self) -> int:
        """The stream position the next committed message gets."""
    @property
    def channel(self) -> Any:
        """The channel this writer was attached through."""
    @property
    def _mapping(self) -> Mapping: ...
    def reserve(self, nbytes: int | None = None, timeout: float | None = None) -> Slot:
        """Reserve the next slot for a message of exactly ``nbytes`` (default: the slot size)."""
    def send(self, data: Buffer, timeout: float | None = None) -> None:
        """Copy ``data`` into the next slot and commit it."""
    def send_batch(self, messages: Sequence[Buffer], timeout: float | None = None) -> int:
        """Send every message of a sequence in order, in one call; returns how many were sent."""
    def reserve_frame(self, width: int, height: int, pixel_format: PixelFormat | int | str = ..., *,
                      seq: int | None = None, timestamp_ns: int | None = None, pts: int | None = None,
                      duration: int = 0, keyframe: bool = False, timeout: float | None = None,
                      **media: Any) -> FrameSlot:
        """Reserve a slot for a Frame message (``media``: see shmchan.schema.reserve_frame)."""
    def send_frame(self, pixels: npt.ArrayLike, pixel_format: PixelFormat | int | str = ..., *,
                   seq: int | None = None, timestamp_ns: int | None = None, pts: int | None = None,
                   duration: int = 0, keyframe: bool = False, timeout: float | None = None,
                   **media: Any) -> None:
        """Write an image as a Frame message (``media``: see shmchan.schema.reserve_frame)."""
    def reserve_tensor(self, shape: int | Sequence[int], dtype: npt.DTypeLike, *, seq: int | None = None,
                       timestamp_ns: int | None = None, timeout: float | None = None) -> TensorSlot:
        """Reserve a slot for a Tensor message."""
    def send_tensor(self, array: npt.ArrayLike, *, seq: int | None = None, timestamp_ns: int | None = None,
                    timeout: float | None = None) -> None:
        """Write an array as a Tensor message (one copy)."""
    def close(self) -> None:
        """Detach (idempotent)."""
    def __enter__(self) -> Writer: ...
    def __exit__(self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None) -> None: ...

class Reader:
    """A reader of the channel. Get it from :meth:`shmchan.Channel.reader`."""

    @property
    def closed(self) -> bool:
        """Whether this reader (or its channel) was closed."""
    @property
    def outstanding(self) -> int:
        """Messages received and not yet handed back to the writer."""
    @property
    def position(self) -> int:
        """The stream position of the next message :meth:`recv` takes."""
    @property
    def lost(self) -> int:
        """Messages this reader lost because the writer lapped it (overwrite broadcasts)."""
    @property
    def channel(self) -> Any:
        """The channel this reader was attached through."""
    @property
    def _mapping(self) -> Mapping: ...
    def recv(self, timeout: float | None = None) -> Message:
        """Take the next message, in place."""
    def recv_bytes(self, timeout: float | None = None) -> bytes:
        """Take the next message as a bytes copy (and release it)."""
    def recv_into(self, buffer: Buffer, timeout: float | None = None) -> int:
        """Copy the next message into a writable buffer (and release it); return its length."""
    def recv_batch(self, max_messages: int = 64, timeout: float | None = None) -> list[Message]:
        """Take every available message, up to ``max_messages``; waits only for the first."""
    def _poll(self) -> Message | None: ...
    def close(self) -> None:
        """Detach (idempotent)."""
    def __iter__(self) -> Iterator[Message]: ...
    def __next__(self) -> Message: ...
    def __enter__(self) -> Reader: ...
    def __exit__(self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None) -> None: ...

# ---- Frame messages (shmchan.schema.frame builds and checks; these repeat it per message) ----

class PixelSpec:
    """How a frame's pixel array lies over its message."""

    def __init__(self, shape: Sequence[int], strides: Sequence[int], offset: int, dtype: npt.DTypeLike, /) -> None: ...

class FrameBase:
    """The native part of :class:`shmchan.schema.FrameView`."""

    def __init__(self, values: tuple[Any, ...], geometry: _Geometry, view: Any, seq: int, timestamp_ns: int,
                 pts: int, duration: int, spec: PixelSpec, /) -> None: ...
    @property
    def _v(self) -> tuple[Any, ...]: ...
    @property
    def _g(self) -> _Geometry: ...
    _view: Any
    _planes: list[npt.NDArray[Any]] | None
    @property
    def seq(self) -> int:
        """The writer's sequence number (by default the message's stream position)."""
    @property
    def timestamp_ns(self) -> int:
        """Capture or send time, ns since the Unix epoch."""
    @property
    def pts(self) -> int | None:
        """Presentation time in ``time_base`` units (may be negative); None when the writer gave none."""
    @property
    def duration(self) -> int:
        """In ``time_base`` units; 0 when unknown."""
    @property
    def pixels(self) -> npt.NDArray[Any]:
        """The pixels, a view of the slot (see :class:`shmchan.schema.FrameView`)."""
    def release_views(self) -> None:
        """Drop the arrays this object made (they pin the slot while alive)."""

class FrameSlotBase:
    """The native part of :class:`shmchan.schema.FrameSlot`."""

    def __init__(self, slot: Slot, frame: FrameBase, /) -> None: ...
    @property
    def frame(self) -> FrameView:
        """The header fields and the writable arrays (until commit or abort)."""
    @property
    def pixels(self) -> npt.NDArray[Any]:
        """The writable pixel array."""
    @property
    def planes(self) -> list[npt.NDArray[Any]]:
        """One writable array per plane."""
    @property
    def slot(self) -> Slot:
        """The underlying reserved slot."""
    def commit(self) -> None:
        """Publish the message; the arrays of this object are dropped."""
    def abort(self) -> None:
        """Drop the message; readers never see it."""
    def __enter__(self) -> Self: ...
    def __exit__(self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None) -> None: ...

class FrameTemplate:
    """A writer's Frame header template and the reserve_frame arguments it answers."""

    def __init__(self, width: Any, height: Any, pixel_format: Any, header: bytes, size: int,
                 offsets: tuple[int, int, int, int], keyframe: bool, values: tuple[Any, ...], geometry: _Geometry,
                 spec: PixelSpec, /) -> None: ...

def _frame_setup(view_cls: type[FrameBase], slot_cls: type[FrameSlotBase], default_format: Any, /) -> None: ...
def _frame_writer_cache(writer: Writer, template: FrameTemplate, /) -> None: ...
def _frame_reader_cache(message: Message, header: bytes, start: int, kinds: tuple[int, ...],
                        base: tuple[int, int, int, int], end: int, values: tuple[Any, ...], geometry: _Geometry,
                        spec: PixelSpec, /) -> None: ...
def _frame_reader_forget(reader_or_message: Reader | Message, /) -> None: ...
def _frame_reader_cached(reader: Reader, /) -> bool: ...
