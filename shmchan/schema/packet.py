"""Packet messages: one compressed packet (H.264, HEVC, MJPEG, AAC, ...) with its codec, timing,
key-frame flag and codec configuration; the compressed bytes follow the header (64-byte aligned) in
the same slot (schemas/packet.fbs)."""

from __future__ import annotations

from fractions import Fraction
from typing import TYPE_CHECKING, Any

import flatbuffers
import numpy as np
import numpy.typing as npt

from ._payload import DATA_ALIGN, NOPTS, ArraySlot, as_fraction, check_schema, media_time, rational, stamp
from ._table import Field, TableSpec, Template, round_up
from .compat import packet_schema

if TYPE_CHECKING:
    from ..channel import Channel, Writer

PACKET_IDENT = b"SHPK"
MAX_EXTRADATA = 1 << 12  # codec configuration bytes carried in the header (FlatBuffer limit: 4 KiB in all)

PACKET = TableSpec("Packet message", PACKET_IDENT, [
    Field(0, "seq", "scalar", "Q"),
    Field(1, "timestamp_ns", "scalar", "Q"),
    Field(2, "codec", "string", "", ""),
    Field(3, "pts", "scalar", "q", NOPTS),
    Field(4, "dts", "scalar", "q", NOPTS),
    Field(5, "duration", "scalar", "q"),
    Field(6, ("time_base_num", "time_base_den"), "struct", "ii", (0, 0)),
    Field(7, "keyframe", "scalar", "?", False),
    Field(8, "extradata", "bytes", "", b"", MAX_EXTRADATA),
    Field(9, "data_offset", "scalar", "Q"),
    Field(10, "data_size", "scalar", "Q"),
    Field(11, "width", "scalar", "I"),
    Field(12, "height", "scalar", "I"),
], volatile=("seq", "timestamp_ns", "pts", "dts", "duration"))


class PacketView:
    """A decoded Packet message; ``data`` is a view of the compressed bytes in the slot."""

    __slots__ = ("codec", "data", "dts", "duration", "extradata", "height", "keyframe", "pts", "seq", "time_base",
                 "timestamp_ns", "width")

    def __init__(self, v: tuple[Any, ...], data: npt.NDArray[np.uint8]) -> None:
        self.seq: int = v[0]
        self.timestamp_ns: int = v[1]
        self.codec: str = v[2]  #: FFmpeg's codec name
        self.pts: int | None = None if v[3] == NOPTS else v[3]
        self.dts: int | None = None if v[4] == NOPTS else v[4]
        self.duration: int = v[5]
        self.time_base: Fraction | None = as_fraction(v[6], v[7])
        self.keyframe: bool = bool(v[8])
        self.extradata: bytes = v[9]
        self.width: int = v[12]
        self.height: int = v[13]
        self.data = data

    def __repr__(self) -> str:
        return f"<PacketView seq={self.seq} {self.codec} {self.data.size} B pts={self.pts} key={self.keyframe}>"


class PacketSlot(ArraySlot):
    """A reserved slot holding a Packet header; write the compressed bytes into ``data``, then commit."""

    __slots__ = ()
    _what = "packet"

    @property
    def data(self) -> npt.NDArray[np.uint8]:
        """The writable bytes of the packet (until commit or abort)."""
        return self._payload()

    def __enter__(self) -> PacketSlot:
        return self


def _build(codec: str, tb: tuple[int, int], extradata: bytes, width: int, height: int, data_offset: int) -> bytes:
    from ..fb import Packet as P
    from ..fb.Rational import CreateRational

    b = flatbuffers.Builder(512)
    b.ForceDefaults(True)
    cs = b.CreateString(codec)
    ed = b.CreateByteVector(extradata)
    P.PacketStart(b)
    P.PacketAddDuration(b, 0)
    P.PacketAddDts(b, 0)
    P.PacketAddPts(b, 0)
    P.PacketAddTimestampNs(b, 0)
    P.PacketAddSeq(b, 0)
    P.PacketAddDataSize(b, 0)
    P.PacketAddDataOffset(b, data_offset)
    P.PacketAddTimeBase(b, CreateRational(b, *tb))
    P.PacketAddCodec(b, cs)
    P.PacketAddExtradata(b, ed)
    P.PacketAddWidth(b, width)
    P.PacketAddHeight(b, height)
    P.PacketAddKeyframe(b, False)
    b.Finish(P.PacketEnd(b), PACKET_IDENT)
    return bytes(b.Output())


_TEMPLATES: dict[tuple[Any, ...], Template] = {}
_PATCH = ("seq", "timestamp_ns", "pts", "dts", "duration", "keyframe", "data_size")


def _template(codec: str, tb: tuple[int, int], extradata: bytes, width: int, height: int) -> Template:
    key = (codec, tb, extradata, width, height)
    t = _TEMPLATES.get(key)
    if t is None:
        if len(extradata) > MAX_EXTRADATA:
            raise ValueError(f"extradata of {len(extradata)} bytes; at most {MAX_EXTRADATA}")
        data_offset = round_up(len(_build(codec, tb, extradata, width, height, 0)), DATA_ALIGN)
        t = Template(PACKET, _build(codec, tb, extradata, width, height, data_offset), data_offset, _PATCH)
        if len(_TEMPLATES) >= 64:
            _TEMPLATES.clear()
        _TEMPLATES[key] = t
    return t


def packet_message_size(nbytes: int, codec: str = "h264", extradata: bytes = b"") -> int:
    """Bytes a Packet message of ``nbytes`` compressed bytes takes in a slot."""
    return len(_template(codec, (0, 0), bytes(extradata), 0, 0).data) + nbytes


def reserve_packet(writer: Writer, nbytes: int, codec: str, *, pts: int | None = None, dts: int | None = None,
                   duration: int = 0, time_base: Fraction | tuple[int, int] | None = None, keyframe: bool = False,
                   extradata: bytes = b"", width: int = 0, height: int = 0, seq: int | None = None,
                   timestamp_ns: int | None = None, timeout: float | None = None,
                   channel: Channel | None = None) -> PacketSlot:
    """Reserve a slot for a compressed packet of ``nbytes`` bytes; fill ``data``, then commit."""
    if channel is not None:
        check_schema(channel, packet_schema())
    if not codec or not codec.isascii():
        raise ValueError(f"codec must be FFmpeg's codec name (ASCII), got {codec!r}")
    t = _template(codec, rational(time_base, "time_base"), bytes(extradata), int(width), int(height))
    s, ts = stamp(writer, seq, timestamp_ns)
    vals = (s, ts, media_time(pts), media_time(dts, "dts"), media_time(duration, "duration"), bool(keyframe), nbytes)
    slot = writer.reserve(len(t.data) + nbytes, timeout)
    try:
        view = slot.buffer
        t.write(view, vals)
        data: npt.NDArray[np.uint8] = np.ndarray((nbytes,), np.uint8, buffer=view, offset=len(t.data))
        del view
    except BaseException:
        slot.abort()
        raise
    return PacketSlot(slot, data)


def send_packet(writer: Writer, data: Any, codec: str, **fields: Any) -> None:
    """Copy compressed bytes (any buffer, e.g. ``bytes(av_packet)``) into a new Packet message;
    ``fields`` are those of :func:`reserve_packet`."""
    src = np.frombuffer(data, np.uint8)
    with reserve_packet(writer, src.size, codec, **fields) as ps:
        ps.data[:] = src


def decode_packet(view: memoryview) -> PacketView:
    """Decode a Packet message in place (:class:`~shmchan.ShmchanDecodeError` if malformed)."""
    n = len(view)
    v, _ = PACKET.read(view, n)
    off, size = v[10], v[11]
    if off > n or size > n - off:
        PACKET.fail(f"packet data [{off}, +{size}) outside the message of {n} bytes")
    return PacketView(v, np.ndarray((size,), np.uint8, buffer=view, offset=off))
