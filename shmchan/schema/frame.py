"""Frame messages: a video frame's FlatBuffer header at the start of the slot, its pixels after it
(64-byte aligned) in the same slot, written and read in place (schemas/frame.fbs).

Pixel formats take shmchan's names (``"I420"``) or FFmpeg's (``"yuv420p"``). Colour information
(matrix, range, primaries, transfer: ITU-T H.273 code points, as FFmpeg uses), sample aspect ratio,
rotation and field order travel with the frame, as do a signed ``pts`` with its ``time_base``, a
``duration`` and a key-frame flag. Rows may be padded (``row_align``).
"""

from __future__ import annotations

import enum
import time
import weakref
from collections.abc import Sequence
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import flatbuffers
import numpy as np
import numpy.typing as npt

from .. import _core
from .. import errors as E
from ._payload import NOPTS, as_fraction, check_schema, media_time, rational, stamp
from ._table import Field, TableSpec, Template, round_up
from .compat import frame_schema

if TYPE_CHECKING:
    from ..channel import Channel, Message, Writer

DATA_ALIGN = 64
FRAME_IDENT = b"SHFR"
MAX_PLANES = 4
MAX_SIDE = 1 << 16


class PixelFormat(enum.IntEnum):
    """``shmchan.fb.PixelFormat`` (schemas/frame.fbs). :meth:`parse` also takes FFmpeg's names."""

    Unknown = 0
    GRAY8 = 1
    RGB24 = 2
    BGR24 = 3
    RGBA32 = 4
    BGRA32 = 5
    NV12 = 6
    I420 = 7
    YUYV422 = 8
    UYVY422 = 9
    P010 = 10
    YUV422P = 11
    YUV444P = 12
    GRAY16 = 13
    RGB48 = 14
    YUV420P10 = 15

    @classmethod
    def parse(cls, value: PixelFormat | int | str) -> PixelFormat:
        """A format from its shmchan name, its FFmpeg name (``"yuv420p"``, ``"nv12"``, ``"gray"``,
        ``"bgr24"``, ...; case-insensitive) or its number."""
        if isinstance(value, str):
            key = value.strip()
            fmt = _BY_NAME.get(key.upper()) or _FROM_FFMPEG.get(key.lower())
            if fmt is None:
                raise ValueError(f"unknown pixel format {value!r}; known: {', '.join(m.name for m in cls if m)} "
                                 f"or FFmpeg's {', '.join(sorted(_FROM_FFMPEG))}")
            return fmt
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"unknown pixel format {value!r}") from None

    @property
    def ffmpeg_name(self) -> str:
        """FFmpeg's (and PyAV's) name of this format."""
        return _TO_FFMPEG[self]


_BY_NAME = {m.name: m for m in PixelFormat if m} | {"YUYV": PixelFormat.YUYV422, "UYVY": PixelFormat.UYVY422,
                                                  "I010": PixelFormat.YUV420P10}
_TO_FFMPEG = {
    PixelFormat.Unknown: "none", PixelFormat.GRAY8: "gray", PixelFormat.RGB24: "rgb24", PixelFormat.BGR24: "bgr24",
    PixelFormat.RGBA32: "rgba", PixelFormat.BGRA32: "bgra", PixelFormat.NV12: "nv12", PixelFormat.I420: "yuv420p",
    PixelFormat.YUYV422: "yuyv422", PixelFormat.UYVY422: "uyvy422", PixelFormat.P010: "p010le",
    PixelFormat.YUV422P: "yuv422p", PixelFormat.YUV444P: "yuv444p", PixelFormat.GRAY16: "gray16le",
    PixelFormat.RGB48: "rgb48le", PixelFormat.YUV420P10: "yuv420p10le",
}
#: FFmpeg's names (the "j" formats are the same layouts in full range: the range travels as color_range)
_FROM_FFMPEG = {v: k for k, v in _TO_FFMPEG.items() if k} | {
    "yuvj420p": PixelFormat.I420, "yuvj422p": PixelFormat.YUV422P, "yuvj444p": PixelFormat.YUV444P,
    "gray8": PixelFormat.GRAY8, "y8": PixelFormat.GRAY8, "gray16": PixelFormat.GRAY16, "yuy2": PixelFormat.YUYV422,
    "i420": PixelFormat.I420, "iyuv": PixelFormat.I420, "rgb48": PixelFormat.RGB48, "p010": PixelFormat.P010,
    "yuv420p10": PixelFormat.YUV420P10,
}
FULL_RANGE_FFMPEG = frozenset({"yuvj420p", "yuvj422p", "yuvj444p"})


class ColorMatrix(enum.IntEnum):
    """YCbCr -> RGB matrix: ITU-T H.273 MatrixCoefficients (FFmpeg's ``AVColorSpace``)."""

    RGB = 0
    BT709 = 1
    Unspecified = 2
    Reserved = 3
    FCC = 4
    BT470BG = 5
    SMPTE170M = 6
    SMPTE240M = 7
    YCgCo = 8
    BT2020_NCL = 9
    BT2020_CL = 10
    SMPTE2085 = 11
    ChromaDerivedNCL = 12
    ChromaDerivedCL = 13
    ICtCp = 14


class ColorPrimaries(enum.IntEnum):
    """Colour primaries: ITU-T H.273 ColourPrimaries (FFmpeg's ``AVColorPrimaries``)."""

    Reserved0 = 0
    BT709 = 1
    Unspecified = 2
    Reserved = 3
    BT470M = 4
    BT470BG = 5
    SMPTE170M = 6
    SMPTE240M = 7
    Film = 8
    BT2020 = 9
    SMPTE428 = 10
    SMPTE431 = 11
    SMPTE432 = 12
    EBU3213 = 22


class ColorTransfer(enum.IntEnum):
    """Transfer characteristics: ITU-T H.273 (FFmpeg's ``AVColorTransferCharacteristic``)."""

    Reserved0 = 0
    BT709 = 1
    Unspecified = 2
    Reserved = 3
    Gamma22 = 4
    Gamma28 = 5
    SMPTE170M = 6
    SMPTE240M = 7
    Linear = 8
    Log100 = 9
    Log316 = 10
    IEC61966_2_4 = 11
    BT1361 = 12
    SRGB = 13
    BT2020_10 = 14
    BT2020_12 = 15
    SMPTE2084 = 16
    SMPTE428 = 17
    ARIB_STD_B67 = 18


class ColorRange(enum.IntEnum):
    """Sample value range (FFmpeg's ``AVColorRange``): Limited is "tv"/"mpeg", Full is "pc"/"jpeg"."""

    Unspecified = 0
    Limited = 1
    Full = 2


class FieldOrder(enum.IntEnum):
    """Interlacing."""

    Unknown = 0
    Progressive = 1
    TopFirst = 2
    BottomFirst = 3


def _enum(cls: Any, value: Any, name: str) -> int:
    if isinstance(value, str):
        try:
            return int(cls[value])
        except KeyError:
            raise ValueError(f"unknown {name} {value!r}; known: {', '.join(m.name for m in cls)}") from None
    v = int(value)
    if not 0 <= v < 256:
        raise ValueError(f"{name} must be 0..255, got {v}")
    return v


def _known(cls: Any, v: int) -> Any:  # the enum's own type, or int
    """An enum member, or the plain number when a newer writer used a value this release lacks."""
    try:
        return cls(v)
    except ValueError:
        return v


# Per format: sample bytes, and per plane (horizontal subsampling, vertical subsampling, samples
# per pixel position); even: the width must be even.
_FORMATS: dict[PixelFormat, tuple[int, tuple[tuple[int, int, int], ...], bool]] = {
    PixelFormat.GRAY8: (1, ((1, 1, 1),), False),
    PixelFormat.RGB24: (1, ((1, 1, 3),), False),
    PixelFormat.BGR24: (1, ((1, 1, 3),), False),
    PixelFormat.RGBA32: (1, ((1, 1, 4),), False),
    PixelFormat.BGRA32: (1, ((1, 1, 4),), False),
    PixelFormat.NV12: (1, ((1, 1, 1), (2, 2, 2)), False),
    PixelFormat.I420: (1, ((1, 1, 1), (2, 2, 1), (2, 2, 1)), False),
    PixelFormat.YUYV422: (1, ((1, 1, 2),), True),
    PixelFormat.UYVY422: (1, ((1, 1, 2),), True),
    PixelFormat.P010: (2, ((1, 1, 1), (2, 2, 2)), False),
    PixelFormat.YUV422P: (1, ((1, 1, 1), (2, 1, 1), (2, 1, 1)), False),
    PixelFormat.YUV444P: (1, ((1, 1, 1), (1, 1, 1), (1, 1, 1)), False),
    PixelFormat.GRAY16: (2, ((1, 1, 1),), False),
    PixelFormat.RGB48: (2, ((1, 1, 3),), False),
    PixelFormat.YUV420P10: (2, ((1, 1, 1), (2, 2, 1), (2, 2, 1)), False),
}
_DTYPES: dict[int, np.dtype[Any]] = {1: np.dtype(np.uint8), 2: np.dtype("<u2")}


def _rows(fmt: PixelFormat, width: int, height: int) -> list[tuple[int, int]]:
    """(row bytes, rows) of each plane."""
    spec = _FORMATS.get(fmt)
    if spec is None:
        raise ValueError(f"cannot lay out pixel format {fmt!r}")
    if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
        raise ValueError(f"frame size {width}x{height} outside 1..{MAX_SIDE}")
    bps, planes, even = spec
    if even and width % 2:
        raise ValueError(f"{fmt.name} needs an even width, got {width}")
    return [(bps * n * -(-width // xs), -(-height // ys)) for xs, ys, n in planes]


def plane_layout(fmt: PixelFormat, width: int, height: int, row_align: int = 1) -> list[tuple[int, int, int]]:
    """(offset from data_offset, stride, rows) of each plane, back to back; each stride is the
    row's bytes rounded up to ``row_align`` (1: packed rows)."""
    if row_align < 1 or row_align & (row_align - 1) or row_align > 4096:
        raise ValueError(f"row_align must be a power of two from 1 to 4096, got {row_align}")
    out, off = [], 0
    for rowbytes, rows in _rows(fmt, width, height):
        stride = round_up(rowbytes, row_align)
        out.append((off, stride, rows))
        off = round_up(off + stride * rows, row_align)
    return out


FRAME = TableSpec("Frame message", FRAME_IDENT, [
    Field(0, "seq", "scalar", "Q"),
    Field(1, "timestamp_ns", "scalar", "Q"),
    Field(2, "width", "scalar", "I"),
    Field(3, "height", "scalar", "I"),
    Field(4, "pixel_format", "scalar", "B"),
    Field(5, "planes", "vector", "QII", (), MAX_PLANES),
    Field(6, "data_offset", "scalar", "Q"),
    Field(7, "data_size", "scalar", "Q"),
    Field(8, "pts", "scalar", "q", NOPTS),
    Field(9, ("time_base_num", "time_base_den"), "struct", "ii", (0, 0)),
    Field(10, "duration", "scalar", "q"),
    Field(11, "keyframe", "scalar", "?", False),
    Field(12, "color_matrix", "scalar", "B", int(ColorMatrix.Unspecified)),
    Field(13, "color_range", "scalar", "B", int(ColorRange.Unspecified)),
    Field(14, "color_primaries", "scalar", "B", int(ColorPrimaries.Unspecified)),
    Field(15, "color_transfer", "scalar", "B", int(ColorTransfer.Unspecified)),
    Field(16, ("sar_num", "sar_den"), "struct", "ii", (0, 0)),
    Field(17, "rotation", "scalar", "H"),
    Field(18, "field_order", "scalar", "B"),
], volatile=("seq", "timestamp_ns", "pts", "duration"))
_I = FRAME.index
_SEQ, _TS, _W, _H, _FMT, _PLANES, _DOFF, _DSIZE = (_I[n] for n in (
    "seq", "timestamp_ns", "width", "height", "pixel_format", "planes", "data_offset", "data_size"))
_PTS, _TBN, _TBD, _DUR, _KEY = (_I[n] for n in ("pts", "time_base_num", "time_base_den", "duration", "keyframe"))
_CM, _CR, _CP, _CT, _SARN, _SARD, _ROT, _FO = (_I[n] for n in (
    "color_matrix", "color_range", "color_primaries", "color_transfer", "sar_num", "sar_den", "rotation",
    "field_order"))


class _Geometry:
    """A checked frame geometry: how to lay the pixel and plane arrays over a message."""

    __slots__ = ("data_offset", "data_size", "end", "fmt", "height", "native", "pixels_spec", "planes_spec", "width")

    def __init__(self, fmt: PixelFormat, width: int, height: int, layout: Sequence[tuple[int, int, int]],
                 data_offset: int, data_size: int) -> None:
        """``layout``: (offset from the message start, stride, rows) of each plane, already checked."""
        self.fmt, self.width, self.height = fmt, width, height
        self.data_offset, self.data_size = data_offset, data_size
        self.end = data_offset + data_size
        bps, planes, _ = _FORMATS[fmt]
        dt = _DTYPES[bps]
        specs = []
        for (off, stride, rows), (xs, _, n) in zip(layout, planes, strict=True):
            cols = -(-width // xs) * n
            specs.append(((rows, cols), (stride, bps), off, dt))
        self.planes_spec = specs
        # packed: each plane exactly its rows of exactly its row bytes, back to back (a peer may give
        # a plane more rows than it needs: then one combined array would put them in the wrong place)
        packed = all(s == r and n == need for (_, s, n), (r, need) in
                     zip(layout, _rows(fmt, width, height), strict=True)) and \
            all(layout[i + 1][0] == layout[i][0] + layout[i][1] * layout[i][2] for i in range(len(layout) - 1))
        first = layout[0][0]
        if len(planes) == 1:
            n = planes[0][2]
            stride = layout[0][1]
            shape = (height, width, n) if n > 1 else (height, width)
            strides = (stride, n * bps, bps) if n > 1 else (stride, bps)
            self.pixels_spec: tuple[Any, ...] = (shape, strides, first, dt)
        elif packed and width % 2 == 0 and height % 2 == 0 and fmt in (
                PixelFormat.NV12, PixelFormat.I420, PixelFormat.P010, PixelFormat.YUV420P10):
            self.pixels_spec = ((height * 3 // 2, width), (width * bps, bps), first, dt)
        elif packed and width % 2 == 0 and fmt == PixelFormat.YUV422P:
            self.pixels_spec = ((height * 2, width), (width, 1), first, dt)
        elif packed and fmt == PixelFormat.YUV444P:
            self.pixels_spec = ((3, height, width), (width * height, width, 1), first, dt)
        else:
            self.pixels_spec = ((data_size,), (1,), data_offset, _DTYPES[1])
        self.native: _core.PixelSpec | None = None

    def spec(self) -> _core.PixelSpec:
        """``pixels_spec`` for FrameView.pixels (native). Made when first needed: only once the
        geometry was found to fit a message (a peer's sizes may be anything before)."""
        if self.native is None:
            self.native = _core.PixelSpec(*self.pixels_spec)
        return self.native

    def planes(self, view: Any) -> list[npt.NDArray[Any]]:
        return [np.ndarray(shape, dt, buffer=view, offset=off, strides=strides)
                for shape, strides, off, dt in self.planes_spec]


_GEOMETRIES: dict[tuple[Any, ...], _Geometry] = {}


def _checked_geometry(v: tuple[Any, ...], n: int) -> _Geometry:
    """The geometry of decoded header values ``v``, checked against the message length ``n``."""
    key = (v[_W], v[_H], v[_FMT], v[_PLANES], v[_DOFF], v[_DSIZE])
    g = _GEOMETRIES.get(key)
    if g is None:
        g = _check_geometry(*key)
        if len(_GEOMETRIES) >= 256:
            _GEOMETRIES.clear()
        _GEOMETRIES[key] = g
    if g.end > n:
        FRAME.fail(f"pixel data [{g.data_offset}, +{g.data_size}) outside the message of {n} bytes")
    return g


def _check_geometry(width: int, height: int, code: int, flat: tuple[int, ...], data_offset: int,
                    data_size: int) -> _Geometry:
    try:
        fmt = PixelFormat(code)
    except ValueError:
        FRAME.fail(f"unknown pixel format {code}")
    if fmt not in _FORMATS or not 0 < width <= MAX_SIDE or not 0 < height <= MAX_SIDE:
        FRAME.fail(f"frame of {width}x{height} {fmt.name}")
    try:
        need = _rows(fmt, width, height)
    except ValueError as exc:
        FRAME.fail(str(exc))
    layout = [tuple(flat[i : i + 3]) for i in range(0, len(flat), 3)]
    if len(layout) != len(need):
        FRAME.fail(f"{fmt.name} has {len(need)} planes, the message {len(layout)}")
    end = data_offset + data_size
    bps = _FORMATS[fmt][0]
    for i, ((off, stride, rows), (rowbytes, need_rows)) in enumerate(zip(layout, need, strict=True)):
        if rows < need_rows or stride < rowbytes or off < data_offset or \
                off + stride * (rows - 1) + rowbytes > end or off % bps or stride % bps:
            FRAME.fail(f"plane {i} (offset {off}, stride {stride}, rows {rows}) does not fit a {width}x{height} "
                       f"{fmt.name} frame in [{data_offset}, +{data_size})")
    return _Geometry(fmt, width, height, layout, data_offset, data_size)  # type: ignore[arg-type]


class FrameView(_core.FrameBase):
    """A decoded Frame message. ``pixels`` and ``planes`` are views of the slot (read-only on the
    reader side), made when first asked for: a packed format gives ``(height, width, channels)``
    (one-channel formats ``(height, width)``; 16-bit formats ``uint16`` samples); NV12, I420, P010 and
    YUV420P10 ``(height * 3 // 2, width)``, YUV422P ``(height * 2, width)``, YUV444P
    ``(3, height, width)`` when their rows are packed and the size even; otherwise the payload's
    bytes, 1-D. ``planes`` has one 2-D array per plane, in samples (rows, samples per row).

    ``seq``, ``timestamp_ns``, ``pts``, ``duration`` and ``pixels`` are native
    (:class:`shmchan._core.FrameBase`), so that Writer.reserve_frame and Message.frame can make a
    frame without Python code for a header like the last one."""

    __slots__ = ()

    @property
    def width(self) -> int:
        """Pixels per row."""
        return self._g.width

    @property
    def height(self) -> int:
        """Rows."""
        return self._g.height

    @property
    def pixel_format(self) -> PixelFormat:
        """The pixel format."""
        return self._g.fmt

    @property
    def data_offset(self) -> int:
        """Where the pixels start in the message (a multiple of 64)."""
        return self._g.data_offset

    @property
    def data_size(self) -> int:
        """Bytes from ``data_offset`` to the end of the last plane."""
        return self._g.data_size

    @property
    def strides(self) -> tuple[int, ...]:
        """Bytes from one row to the next, per plane."""
        return tuple(s[1][0] for s in self._g.planes_spec)

    @property
    def time_base(self) -> Fraction | None:
        """Seconds per ``pts``/``duration`` tick; None when unknown."""
        return as_fraction(self._v[_TBN], self._v[_TBD])

    @property
    def time(self) -> float | None:
        """``pts * time_base`` in seconds, when both are known."""
        tb, p = self.time_base, self.pts
        return None if tb is None or p is None else float(p * tb)

    @property
    def keyframe(self) -> bool:
        """A key frame of the stream it was decoded from."""
        return bool(self._v[_KEY])

    @property
    def color_matrix(self) -> ColorMatrix | int:
        """YCbCr matrix (H.273 code point)."""
        return _known(ColorMatrix, self._v[_CM])  # type: ignore[no-any-return]

    @property
    def color_range(self) -> ColorRange | int:
        """Limited ("tv") or full ("pc") range."""
        return _known(ColorRange, self._v[_CR])  # type: ignore[no-any-return]

    @property
    def color_primaries(self) -> ColorPrimaries | int:
        """Colour primaries (H.273 code point)."""
        return _known(ColorPrimaries, self._v[_CP])  # type: ignore[no-any-return]

    @property
    def color_transfer(self) -> ColorTransfer | int:
        """Transfer characteristics (H.273 code point)."""
        return _known(ColorTransfer, self._v[_CT])  # type: ignore[no-any-return]

    @property
    def sample_aspect_ratio(self) -> Fraction | None:
        """Pixel aspect ratio; None when unknown (square)."""
        return as_fraction(self._v[_SARN], self._v[_SARD])

    @property
    def rotation(self) -> int:
        """Display rotation, degrees clockwise."""
        return int(self._v[_ROT])

    @property
    def field_order(self) -> FieldOrder | int:
        """Progressive, or which field comes first."""
        return _known(FieldOrder, self._v[_FO])  # type: ignore[no-any-return]

    @property
    def planes(self) -> list[npt.NDArray[Any]]:
        """One view per plane."""
        planes = self._planes
        if planes is None:
            if self._view is None:
                raise E.MessageReleasedError("the views of this frame were released")
            planes = self._planes = self._g.planes(self._view)
        return planes

    def __repr__(self) -> str:
        extra = f" pts={self.pts}" if self.pts is not None else ""
        return (f"<FrameView seq={self.seq} {self.width}x{self.height} {self.pixel_format.name}"
                f" ts={self.timestamp_ns}{extra}>")


def _build_frame(vals: tuple[Any, ...], planes: Sequence[tuple[int, int, int]], extra: frozenset[str]) -> bytes:
    """A Frame header with every release-1 field present (so its size does not depend on their
    values) and the release-2 fields named in ``extra``; the others are left at their defaults, so
    a frame without media fields is exactly as small as release 1 made it."""
    from ..fb import Frame as F
    from ..fb.Plane import CreatePlane
    from ..fb.Rational import CreateRational

    b = flatbuffers.Builder(512)
    b.ForceDefaults(True)
    F.FrameStartPlanesVector(b, len(planes))
    for off, stride, rows in reversed(planes):
        CreatePlane(b, off, stride, rows)
    vec = b.EndVector()
    F.FrameStart(b)
    # the per-frame 8-byte fields first and together: one pack_into stamps them all
    if "duration" in extra:
        F.FrameAddDuration(b, vals[_DUR])
    if "pts" in extra:
        F.FrameAddPts(b, vals[_PTS])
    F.FrameAddTimestampNs(b, vals[_TS])
    F.FrameAddSeq(b, vals[_SEQ])
    F.FrameAddDataOffset(b, vals[_DOFF])
    F.FrameAddDataSize(b, vals[_DSIZE])
    if "time_base" in extra:
        F.FrameAddTimeBase(b, CreateRational(b, vals[_TBN], vals[_TBD]))
    if "sample_aspect_ratio" in extra:
        F.FrameAddSampleAspectRatio(b, CreateRational(b, vals[_SARN], vals[_SARD]))
    F.FrameAddPlanes(b, vec)
    F.FrameAddWidth(b, vals[_W])
    F.FrameAddHeight(b, vals[_H])
    if "rotation" in extra:
        F.FrameAddRotation(b, vals[_ROT])
    F.FrameAddPixelFormat(b, vals[_FMT])
    for name, add, i in (("keyframe", F.FrameAddKeyframe, _KEY), ("color_matrix", F.FrameAddColorMatrix, _CM),
                         ("color_range", F.FrameAddColorRange, _CR), ("color_primaries", F.FrameAddColorPrimaries, _CP),
                         ("color_transfer", F.FrameAddColorTransfer, _CT), ("field_order", F.FrameAddFieldOrder, _FO)):
        if name in extra:
            add(b, vals[i])
    b.Finish(F.FrameEnd(b), FRAME_IDENT)
    return bytes(b.Output())


_RELEASE2 = frozenset({"pts", "time_base", "duration", "keyframe", "color_matrix", "color_range", "color_primaries",
                       "color_transfer", "sample_aspect_ratio", "rotation", "field_order"})
_HEADER_SIZE: dict[int, int] = {}


def frame_data_offset(nplanes: int) -> int:
    """The most a Frame header with ``nplanes`` planes, written by Python, takes before the pixels
    (every field present). Without media fields it takes what release 1 did (128 for one plane)."""
    size = _HEADER_SIZE.get(nplanes)
    if size is None:
        size = _HEADER_SIZE[nplanes] = len(_build_frame(FRAME.defaults, [(0, 0, 0)] * nplanes, _RELEASE2))
    return round_up(size, DATA_ALIGN)


def frame_message_size(width: int, height: int, pixel_format: PixelFormat | int | str = PixelFormat.RGB24, *,
                       row_align: int = 1, media_fields: bool = True) -> int:
    """Bytes a Frame message of this geometry takes at most in a slot (header with every field,
    padding and pixels): the ``slot_size`` a channel of such frames needs. Also
    ``shmchan.frame_message_size``. ``media_fields=False``: the size of a frame without pts, colour
    and the other release-2 fields, as release 1 and the native peers' producers write it."""
    fmt = PixelFormat.parse(pixel_format)
    layout = plane_layout(fmt, width, height, row_align)
    off, stride, rows = layout[-1]
    head = frame_data_offset(len(layout)) if media_fields else \
        _template(width, height, fmt, row_align, _DEFAULT_STATIC, (False, False, False)).template_size
    return head + off + stride * rows


class _FrameTemplate:
    """The header of one frame geometry (and set of media fields), built once; per frame only seq,
    timestamp and (when present) pts and duration are stamped into the slot."""

    __slots__ = ("dyn", "geometry", "native", "size", "template", "template_size", "values")

    def __init__(self, fmt: PixelFormat, width: int, height: int, row_align: int, static: tuple[int, ...],
                 dyn: tuple[bool, bool, bool]) -> None:
        rel = plane_layout(fmt, width, height, row_align)
        vals = list(FRAME.defaults)
        (vals[_TBN], vals[_TBD], vals[_CM], vals[_CR], vals[_CP], vals[_CT], vals[_SARN], vals[_SARD],
         vals[_ROT], vals[_FO]) = static
        has_pts, has_duration, key = dyn
        vals[_KEY] = key
        extra = {n for n, i, d in (("time_base", _TBD, 0), ("color_matrix", _CM, 2), ("color_range", _CR, 0),
                                   ("color_primaries", _CP, 2), ("color_transfer", _CT, 2),
                                   ("sample_aspect_ratio", _SARD, 0), ("rotation", _ROT, 0), ("field_order", _FO, 0))
                 if vals[i] != d}
        extra |= {n for n, on in (("pts", has_pts), ("duration", has_duration), ("keyframe", key)) if on}
        vals[_W], vals[_H], vals[_FMT] = width, height, int(fmt)
        probe = _build_frame(tuple(vals), [(0, 0, 0)] * len(rel), frozenset(extra))
        data_offset = round_up(len(probe), DATA_ALIGN)
        last_off, last_stride, last_rows = rel[-1]
        data_size = last_off + last_stride * last_rows
        layout = [(data_offset + o, s, r) for o, s, r in rel]
        vals[_DOFF], vals[_DSIZE] = data_offset, data_size
        vals[_PLANES] = tuple(x for p in layout for x in p)
        self.values = tuple(vals)
        patch = ["seq", "timestamp_ns"] + (["pts"] if has_pts else []) + (["duration"] if has_duration else [])
        self.template = Template(FRAME, _build_frame(self.values, layout, frozenset(extra)), data_offset, patch,
                                 ("seq", "timestamp_ns", "pts", "duration"))
        self.geometry = _Geometry(fmt, width, height, layout, data_offset, data_size)
        self.size = data_offset + data_size
        self.template_size = data_offset
        self.dyn = dyn
        self.native: _core.FrameTemplate | None = None

    def native_for(self, width: Any, height: Any, pixel_format: Any) -> _core.FrameTemplate:
        """This template for Writer.reserve_frame's fast path, answering calls with these
        arguments (the template is only ever used for one key of ``_TEMPLATES``)."""
        if self.native is None:
            data = self.template.data
            pos = FRAME.positions(data)
            has_pts, has_duration, key = self.dyn
            offsets = (pos["seq"], pos["timestamp_ns"], pos["pts"] if has_pts else -1,
                       pos["duration"] if has_duration else -1)
            self.native = _core.FrameTemplate(width, height, pixel_format, data, self.size, offsets, key,
                                              self.values, self.geometry, self.geometry.spec())
        return self.native


_TEMPLATES: dict[tuple[Any, ...], _FrameTemplate] = {}


def _template(width: int, height: int, pixel_format: PixelFormat | int | str, row_align: int,
              static: tuple[int, ...], dyn: tuple[bool, bool, bool]) -> _FrameTemplate:
    key = (width, height, pixel_format, row_align, static, dyn)
    t = _TEMPLATES.get(key)
    if t is None:
        t = _FrameTemplate(PixelFormat.parse(pixel_format), int(width), int(height), int(row_align), static, dyn)
        if len(_TEMPLATES) >= 256:
            _TEMPLATES.clear()
        _TEMPLATES[key] = t
    return t


def _static(time_base: Any = None, color_matrix: Any = 2, color_range: Any = 0, color_primaries: Any = 2,
            color_transfer: Any = 2, sample_aspect_ratio: Any = None, rotation: int = 0,
            field_order: Any = 0) -> tuple[int, ...]:
    if rotation not in (0, 90, 180, 270):
        raise ValueError(f"rotation must be 0, 90, 180 or 270 degrees, got {rotation}")
    return (*rational(time_base, "time_base"), _enum(ColorMatrix, color_matrix, "color_matrix"),
            _enum(ColorRange, color_range, "color_range"), _enum(ColorPrimaries, color_primaries, "color_primaries"),
            _enum(ColorTransfer, color_transfer, "color_transfer"),
            *rational(sample_aspect_ratio, "sample_aspect_ratio"), int(rotation),
            _enum(FieldOrder, field_order, "field_order"))


_DEFAULT_STATIC = _static(None, 2, 0, 2, 2, None, 0, 0)


class FrameSlot(_core.FrameSlotBase):
    """A reserved slot holding a Frame header; fill ``pixels`` (or ``planes``) in place, then
    commit (``with`` commits on normal exit, aborts on an exception). ``frame``: the header fields
    and the writable arrays (until commit or abort: then MessageReleasedError); ``slot``: the
    underlying reserved slot. Commit and abort drop the arrays this object made (keep none of your
    own). Native (:class:`shmchan._core.FrameSlotBase`), so that Writer.reserve_frame can make one
    without Python code once it has a header template for the call."""

    __slots__ = ()


def reserve_frame(
    writer: Writer,
    width: int,
    height: int,
    pixel_format: PixelFormat | int | str = PixelFormat.RGB24,
    *,
    seq: int | None = None,
    timestamp_ns: int | None = None,
    pts: int | None = None,
    duration: int = 0,
    keyframe: bool = False,
    timeout: float | None = None,
    channel: Channel | None = None,
    **media: Any,
) -> FrameSlot:
    """Reserve a slot for one frame: the Frame header is written at its start, and the returned
    slot's ``pixels`` array is the pixel area of the same slot (64-byte aligned) to fill in place.

    ``seq`` defaults to the writer's stream position (``Writer.position``), ``timestamp_ns`` to
    CLOCK_REALTIME. ``pts`` (signed, in time-base units), ``duration`` and ``keyframe`` are carried
    as given, and so are the ``media`` fields: ``time_base`` (a Fraction or (num, den)),
    ``color_matrix``, ``color_range``, ``color_primaries``, ``color_transfer`` (enums, their names
    or H.273 numbers), ``sample_aspect_ratio``, ``rotation`` (0, 90, 180, 270) and ``field_order``;
    ``row_align`` pads each row to a multiple of that many bytes. ``channel``: check (once) that it
    carries Frames. The header is built once per geometry and set of media fields; per frame only
    seq, timestamp, pts and duration are written into the slot. Once a call without media fields
    was answered here for a writer, ``Writer.reserve_frame`` answers the calls with the same
    width, height, format, pts/duration presence and keyframe flag in C.
    """
    if channel is not None and channel is not _CHECKED[0]():
        check_schema(channel, frame_schema())
        _CHECKED[0] = weakref.ref(channel)
    key = bool(keyframe)
    dyn = (pts is not None, duration != 0, key)
    plain = not media  # (row_align pops out of media below)
    if media:
        row_align = int(media.pop("row_align", 1))
        static = _static(**media)
    else:
        row_align, static = 1, _DEFAULT_STATIC
    t = _TEMPLATES.get((width, height, pixel_format, row_align, static, dyn))
    if t is None:
        t = _template(width, height, pixel_format, row_align, static, dyn)
    s = writer.position if seq is None else seq
    ts = time.time_ns() if timestamp_ns is None else timestamp_ns
    if not (0 <= s < _U64 and 0 <= ts < _U64):
        stamp(writer, s, ts)  # raises, naming the field
    p = NOPTS if pts is None else media_time(pts)
    d = duration if duration == 0 else media_time(duration, "duration")
    try:
        slot = writer.reserve(t.size, timeout)
    except ValueError as exc:
        name = t.geometry.fmt.name
        raise ValueError(f"a {width}x{height} {name} Frame message takes {t.size} bytes: {exc}; size the channel's "
                         f"slots with shmchan.frame_message_size({width}, {height}, {name!r}) "
                         f"({frame_message_size(width, height, name, row_align=row_align)} bytes, room for "
                         "every media field)") from None
    try:
        view = slot.buffer
        t.template.write(view, (s, ts, p, d))
        v = t.values
        frame = _view((s, ts, *v[2:8], p, v[_TBN], v[_TBD], d, key, *v[13:]), t.geometry, view)
        fs = FrameSlot(slot, frame)
    except BaseException:
        slot.abort()
        raise
    if plain and channel is writer.channel and isinstance(writer, _core.Writer):
        # the next calls like this one (the channel checked, no media field) are answered in C
        _core._frame_writer_cache(writer, t.native_for(width, height, pixel_format))
    return fs


def _view(vals: tuple[Any, ...], g: _Geometry, view: Any) -> FrameView:
    return FrameView(vals, g, view, vals[_SEQ], vals[_TS], vals[_PTS], vals[_DUR], g.spec())


def _nothing() -> None:
    return None


#: the channel whose payload schema was checked last (a weak reference)
_CHECKED: list[Any] = [_nothing]
_U64 = 1 << 64


def send_frame(writer: Writer, pixels: npt.ArrayLike, pixel_format: PixelFormat | int | str = PixelFormat.RGB24,
               *, timeout: float | None = None, channel: Channel | None = None, **fields: Any) -> None:
    """Copy an existing image into a new Frame message: a ``(height, width[, channels])`` array of
    a packed format, or a planar frame in the layout :class:`FrameView` gives (I420/NV12 as
    ``(height * 3 // 2, width)``, ...). ``fields`` are those of :func:`reserve_frame`."""
    fmt = PixelFormat.parse(pixel_format)
    bps = _FORMATS[fmt][0] if fmt in _FORMATS else 1
    a = np.asarray(pixels, _DTYPES[bps])
    if a.ndim not in (2, 3):
        raise ValueError(f"pixels must be (height, width) or (height, width, channels), got shape {a.shape}")
    h, w = a.shape[0], a.shape[1]
    if fmt in (PixelFormat.NV12, PixelFormat.I420, PixelFormat.P010, PixelFormat.YUV420P10):
        h = h * 2 // 3
    elif fmt == PixelFormat.YUV422P:
        h = h // 2
    elif fmt == PixelFormat.YUV444P and a.ndim == 3:
        h, w = a.shape[1], a.shape[2]
    with reserve_frame(writer, w, h, fmt, timeout=timeout, channel=channel, **fields) as fs:
        dst = fs.pixels
        if dst.shape != a.shape:
            raise ValueError(f"pixels of shape {a.shape} are not a {w}x{h} {fmt.name} frame ({dst.shape})")
        np.copyto(dst, a)


def decode_frame(view: memoryview) -> FrameView:
    """Decode a Frame message in place. The header is copied out of the slot once and checked there
    (a peer changing it meanwhile cannot make two reads disagree); the pixels stay in the slot.
    Raises :class:`~shmchan.ShmchanDecodeError` if it is malformed."""
    n = len(view)
    vals, _ = FRAME.read(view, n)
    return _view(vals, _checked_geometry(vals, n), view)


_VOLATILE_KIND = {_SEQ: 0, _TS: 1, _PTS: 2, _DUR: 3}  # as shmchan/_core.c numbers them


def decode_message(msg: Message) -> FrameView:
    """Message.frame() when its C fast path did not answer: the full decode (:func:`decode_frame`),
    which then becomes that reader's cached header. Message.frame answers the next messages whose
    header bytes equal this one's but for seq, timestamp_ns, pts and duration in C, from its own
    copy of each header."""
    view = msg.buffer
    n = len(view)
    vals, hdr = FRAME.read(view, n)
    g = _checked_geometry(vals, n)
    run = FRAME.volatile_run(hdr)
    if run is not None:
        start, extent, idx = run
        _core._frame_reader_cache(msg, hdr[:extent], start, tuple(_VOLATILE_KIND[i] for i in idx),
                                  (vals[_SEQ], vals[_TS], vals[_PTS], vals[_DUR]), g.end, vals, g, g.spec())
    return _view(vals, g, view)


_core._frame_setup(FrameView, FrameSlot, PixelFormat.RGB24)
