"""What the writers of Frame, Tensor, Packet and Audio messages share: the reserved slot wrapper,
the per-message sequence number and timestamps, and the payload schema check."""

from __future__ import annotations

import time
from fractions import Fraction
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy.typing as npt

from .. import errors as E
from .info import _check_payload

if TYPE_CHECKING:
    from ..channel import Channel, Slot, Writer
    from .compat import PayloadSchema

DATA_ALIGN = 64  #: data_offset of Frame, Tensor, Packet and Audio messages is a multiple of this
NOPTS = -(1 << 63)  #: "no timestamp" in pts/dts fields (FFmpeg's AV_NOPTS_VALUE)
_U64 = 1 << 64
_I64 = 1 << 63


def stamp(writer: Writer, seq: int | None, timestamp_ns: int | None) -> tuple[int, int]:
    """The (seq, timestamp_ns) of the next message: by default the writer's own stream position
    (no system call) and CLOCK_REALTIME."""
    s = writer.position if seq is None else seq
    ts = time.time_ns() if timestamp_ns is None else timestamp_ns
    if not 0 <= s < _U64:
        raise ValueError(f"seq must be an unsigned 64-bit number, got {s}")
    if not 0 <= ts < _U64:
        raise ValueError(f"timestamp_ns is the capture or send time in ns since the Unix epoch (unsigned), got {ts}; "
                         "media timestamps, which may be negative, go in pts= (with time_base=)")
    return s, ts


def media_time(pts: int | None, name: str = "pts") -> int:
    """A signed 64-bit media timestamp (None: none)."""
    if pts is None:
        return NOPTS
    if not -_I64 <= pts < _I64:
        raise ValueError(f"{name} must be a signed 64-bit number, got {pts}")
    return int(pts)


def rational(value: Fraction | tuple[int, int] | None, name: str) -> tuple[int, int]:
    """(num, den) of a time base or aspect ratio (None: 0/0, unknown)."""
    if value is None:
        return 0, 0
    if isinstance(value, tuple):
        num, den = value
    else:
        f = Fraction(value)
        num, den = f.numerator, f.denominator
    if not (-(1 << 31) <= num < 1 << 31 and 0 <= den < 1 << 31):
        raise ValueError(f"{name} {num}/{den} does not fit two 32-bit integers")
    return int(num), int(den)


def as_fraction(num: int, den: int) -> Fraction | None:
    """A decoded rational: None when unknown (a zero denominator)."""
    return Fraction(num, den) if den > 0 else None


def check_schema(channel: Channel | None, expected: PayloadSchema) -> None:
    """Refuse a channel declared with another payload schema (once per channel handle)."""
    if channel is not None:
        _check_payload(channel, expected)


class PayloadSlot:
    """Common part of FrameSlot, TensorSlot, PacketSlot and AudioSlot: commit/abort and the
    context manager (commit on normal exit, abort when the block raises)."""

    __slots__ = ("_slot",)

    def __init__(self, slot: Slot) -> None:
        self._slot = slot

    @property
    def slot(self) -> Slot:
        """The underlying reserved slot."""
        return self._slot

    def commit(self) -> None:
        """Publish the message. The arrays of this object are dropped (keep none of your own)."""
        self._drop()
        self._slot.commit()

    def abort(self) -> None:
        """Drop the message; readers never see it."""
        self._drop()
        self._slot.abort()

    def _drop(self) -> None:
        """Forget the views of the slot, so that they do not pin it once it is published."""

    def __enter__(self) -> Any:
        return self

    def __exit__(self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None) -> None:
        self._drop()
        self._slot.__exit__(t, v, tb)


class ArraySlot(PayloadSlot):
    """A PayloadSlot whose payload is one writable array (Tensor, Packet and Audio messages)."""

    __slots__ = ("_array",)
    _what = "message"

    def __init__(self, slot: Slot, array: npt.NDArray[Any]) -> None:
        super().__init__(slot)
        self._array: npt.NDArray[Any] | None = array

    def _payload(self) -> npt.NDArray[Any]:
        if self._array is None:
            raise E.MessageReleasedError(f"this {self._what} was already committed or aborted")
        return self._array

    def _drop(self) -> None:
        self._array = None
