"""Audio messages: a block of uncompressed samples (planar or interleaved) with sample rate, sample
format, channel count and layout and timing; the samples follow the header (64-byte aligned) in
the same slot (schemas/audio.fbs)."""

from __future__ import annotations

import enum
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import flatbuffers
import numpy as np
import numpy.typing as npt

from ._payload import DATA_ALIGN, NOPTS, ArraySlot, as_fraction, check_schema, media_time, rational, stamp
from ._table import Field, TableSpec, Template, round_up
from .compat import audio_schema

if TYPE_CHECKING:
    from ..channel import Channel, Writer

AUDIO_IDENT = b"SHAU"
MAX_CHANNELS = 64


class SampleFormat(enum.IntEnum):
    """``shmchan.fb.SampleFormat``: the type of one sample (little-endian)."""

    Unknown = 0
    U8 = 1
    S16 = 2
    S32 = 3
    F32 = 4
    F64 = 5
    S64 = 6

    @classmethod
    def parse(cls, value: SampleFormat | int | str) -> tuple[SampleFormat, bool | None]:
        """(format, planar) from a shmchan name (``"F32"``: planar unknown) or FFmpeg's
        (``"fltp"``: planar, ``"s16"``: interleaved)."""
        if isinstance(value, str):
            key = value.strip()
            if key.upper() in cls.__members__ and key.upper() != "UNKNOWN":
                return cls[key.upper()], None
            low = key.lower()
            planar = low.endswith("p")
            fmt = _FFMPEG.get(low[:-1] if planar else low)
            if fmt is None:
                raise ValueError(f"unknown sample format {value!r}; known: {', '.join(m.name for m in cls if m)} "
                                 f"or FFmpeg's {', '.join(n + s for n in _FFMPEG for s in ('', 'p'))}")
            return fmt, planar
        return cls(value), None

    def ffmpeg_name(self, planar: bool) -> str:
        """FFmpeg's (and PyAV's) name: ``fltp``, ``s16``, ..."""
        return _TO_FFMPEG[self] + ("p" if planar else "")

    @property
    def dtype(self) -> np.dtype[Any]:
        """The numpy dtype of one sample."""
        return np.dtype(_NP[self])


_FFMPEG = {"u8": SampleFormat.U8, "s16": SampleFormat.S16, "s32": SampleFormat.S32, "flt": SampleFormat.F32,
           "dbl": SampleFormat.F64, "s64": SampleFormat.S64}
_TO_FFMPEG = {v: k for k, v in _FFMPEG.items()}
_NP = {SampleFormat.U8: "u1", SampleFormat.S16: "<i2", SampleFormat.S32: "<i4", SampleFormat.F32: "<f4",
       SampleFormat.F64: "<f8", SampleFormat.S64: "<i8"}

AUDIO = TableSpec("Audio message", AUDIO_IDENT, [
    Field(0, "seq", "scalar", "Q"),
    Field(1, "timestamp_ns", "scalar", "Q"),
    Field(2, "sample_rate", "scalar", "I"),
    Field(3, "sample_format", "scalar", "B"),
    Field(4, "planar", "scalar", "?", False),
    Field(5, "channels", "scalar", "H"),
    Field(6, "channel_layout", "string", "", ""),
    Field(7, "samples", "scalar", "I"),
    Field(8, "plane_stride", "scalar", "Q"),
    Field(9, "pts", "scalar", "q", NOPTS),
    Field(10, ("time_base_num", "time_base_den"), "struct", "ii", (0, 0)),
    Field(11, "data_offset", "scalar", "Q"),
    Field(12, "data_size", "scalar", "Q"),
], volatile=("seq", "timestamp_ns", "pts"))


class AudioView:
    """A decoded Audio message. ``array`` is a view of the samples in the slot: ``(channels,
    samples)`` when planar, ``(samples, channels)`` when interleaved."""

    __slots__ = ("array", "channel_layout", "channels", "planar", "pts", "sample_format", "sample_rate", "samples",
                 "seq", "time_base", "timestamp_ns")

    def __init__(self, v: tuple[Any, ...], fmt: SampleFormat, array: npt.NDArray[Any]) -> None:
        self.seq: int = v[0]
        self.timestamp_ns: int = v[1]
        self.sample_rate: int = v[2]
        self.sample_format = fmt
        self.planar: bool = bool(v[4])
        self.channels: int = v[5]
        self.channel_layout: str = v[6]
        self.samples: int = v[7]
        self.pts: int | None = None if v[9] == NOPTS else v[9]
        self.time_base: Fraction | None = as_fraction(v[10], v[11])
        self.array = array

    def __repr__(self) -> str:
        return (f"<AudioView seq={self.seq} {self.samples} x {self.channels} {self.sample_format.name}"
                f"{' planar' if self.planar else ''} @ {self.sample_rate} Hz>")


class AudioSlot(ArraySlot):
    """A reserved slot holding an Audio header; fill ``array`` in place, then commit."""

    __slots__ = ()
    _what = "audio block"

    @property
    def array(self) -> npt.NDArray[Any]:
        """The writable samples: ``(channels, samples)`` planar, ``(samples, channels)`` interleaved."""
        return self._payload()

    def __enter__(self) -> AudioSlot:
        return self


class _AudioTemplate:
    __slots__ = ("dtype", "planar", "shape", "size", "strides", "template")

    def __init__(self, samples: int, fmt: SampleFormat, channels: int, rate: int, planar: bool, layout: str,
                 tb: tuple[int, int]) -> None:
        from ..fb import Audio as A
        from ..fb.Rational import CreateRational

        if fmt not in _NP:
            raise ValueError(f"cannot write sample format {fmt!r}")
        if not 0 < channels <= MAX_CHANNELS or not 0 <= samples < 1 << 32 or not 0 < rate < 1 << 32:
            raise ValueError(f"{samples} samples x {channels} channels at {rate} Hz: out of range "
                             f"(1..{MAX_CHANNELS} channels)")
        dt = np.dtype(_NP[fmt])
        stride = round_up(samples * dt.itemsize, DATA_ALIGN) if planar else 0
        data_size = stride * channels if planar else samples * channels * dt.itemsize

        def build(data_offset: int) -> bytes:
            b = flatbuffers.Builder(256)
            b.ForceDefaults(True)
            ls = b.CreateString(layout)
            A.AudioStart(b)
            A.AudioAddPts(b, 0)
            A.AudioAddTimestampNs(b, 0)
            A.AudioAddSeq(b, 0)
            A.AudioAddPlaneStride(b, stride)
            A.AudioAddDataOffset(b, data_offset)
            A.AudioAddDataSize(b, data_size)
            A.AudioAddTimeBase(b, CreateRational(b, *tb))
            A.AudioAddChannelLayout(b, ls)
            A.AudioAddSampleRate(b, rate)
            A.AudioAddSamples(b, samples)
            A.AudioAddChannels(b, channels)
            A.AudioAddSampleFormat(b, int(fmt))
            A.AudioAddPlanar(b, planar)
            b.Finish(A.AudioEnd(b), AUDIO_IDENT)
            return bytes(b.Output())

        data_offset = round_up(len(build(0)), DATA_ALIGN)
        self.template = Template(AUDIO, build(data_offset), data_offset, ("seq", "timestamp_ns", "pts"))
        self.dtype, self.planar = dt, planar
        self.shape = (channels, samples) if planar else (samples, channels)
        self.strides = (stride, dt.itemsize) if planar else (channels * dt.itemsize, dt.itemsize)
        self.size = data_offset + data_size


_TEMPLATES: dict[tuple[Any, ...], _AudioTemplate] = {}


def _template(samples: int, sample_format: SampleFormat | int | str, channels: int, sample_rate: int,
              planar: bool | None, channel_layout: str, time_base: Any) -> _AudioTemplate:
    key = (samples, sample_format, channels, sample_rate, planar, channel_layout, time_base)
    t = _TEMPLATES.get(key)
    if t is None:
        fmt, implied = SampleFormat.parse(sample_format)
        if planar is None:
            planar = bool(implied)
        elif implied is not None and implied != planar:
            raise ValueError(f"sample format {sample_format!r} is {'planar' if implied else 'interleaved'}, "
                             f"but planar={planar}")
        t = _AudioTemplate(int(samples), fmt, int(channels), int(sample_rate), planar, str(channel_layout),
                           rational(time_base, "time_base"))
        if len(_TEMPLATES) >= 64:
            _TEMPLATES.clear()
        _TEMPLATES[key] = t
    return t


def audio_message_size(samples: int, sample_format: SampleFormat | int | str, channels: int, *,
                       planar: bool | None = None, channel_layout: str = "") -> int:
    """Bytes an Audio message of this shape takes in a slot (with ``channel_layout`` empty: room for
    a layout name of up to 32 characters, and a time base)."""
    return _template(samples, sample_format, channels, 48000, planar, channel_layout or "x" * 32, (1, 1)).size


def reserve_audio(writer: Writer, samples: int, sample_format: SampleFormat | int | str, channels: int,
                  sample_rate: int, *, planar: bool | None = None, channel_layout: str = "", pts: int | None = None,
                  time_base: Fraction | tuple[int, int] | None = None, seq: int | None = None,
                  timestamp_ns: int | None = None, timeout: float | None = None,
                  channel: Channel | None = None) -> AudioSlot:
    """Reserve a slot for ``samples`` samples per channel; fill ``array`` in place, then commit.
    ``sample_format`` is a :class:`SampleFormat` or FFmpeg's name (``"fltp"`` is planar float)."""
    if channel is not None:
        check_schema(channel, audio_schema())
    t = _template(samples, sample_format, channels, sample_rate, planar, channel_layout, time_base)
    s, ts = stamp(writer, seq, timestamp_ns)
    slot = writer.reserve(t.size, timeout)
    try:
        view = slot.buffer
        t.template.write(view, (s, ts, media_time(pts)))
        arr: npt.NDArray[Any] = np.ndarray(t.shape, t.dtype, buffer=view, offset=len(t.template.data),
                                           strides=t.strides)
        del view
    except BaseException:
        slot.abort()
        raise
    return AudioSlot(slot, arr)


def send_audio(writer: Writer, samples: npt.ArrayLike, sample_rate: int, *, planar: bool = False,
               **fields: Any) -> None:
    """Copy a block of samples into a new Audio message: ``(channels, samples)`` when ``planar``,
    else ``(samples, channels)``; the dtype gives the sample format."""
    a = np.asarray(samples)
    if a.ndim != 2:
        raise ValueError(f"samples must be 2-D, got shape {a.shape}")
    fmt = next((f for f, d in _NP.items() if np.dtype(d) == a.dtype.newbyteorder("<")), None)
    if fmt is None:
        raise TypeError(f"no sample format for dtype {a.dtype} (u1, <i2, <i4, <i8, <f4, <f8)")
    ch, n = (a.shape[0], a.shape[1]) if planar else (a.shape[1], a.shape[0])
    with reserve_audio(writer, n, fmt, ch, sample_rate, planar=planar, **fields) as slot:
        np.copyto(slot.array, a, casting="equiv")


def decode_audio(view: memoryview) -> AudioView:
    """Decode an Audio message in place (:class:`~shmchan.ShmchanDecodeError` if malformed)."""
    n = len(view)
    v, _ = AUDIO.read(view, n)
    try:
        fmt = SampleFormat(v[3])
    except ValueError:
        AUDIO.fail(f"unknown sample format {v[3]}")
    if fmt not in _NP:
        AUDIO.fail("sample format Unknown")
    planar, channels, samples, stride, off, size = bool(v[4]), v[5], v[7], v[8], v[12], v[13]
    dt = np.dtype(_NP[fmt])
    if off > n or size > n - off:
        AUDIO.fail(f"audio data [{off}, +{size}) outside the message of {n} bytes")
    if not 0 < channels <= MAX_CHANNELS:
        AUDIO.fail(f"{channels} channels")
    row = samples * dt.itemsize
    need = (stride * (channels - 1) + row) if planar else row * channels
    if (planar and (stride < row or stride % dt.itemsize)) or need > size or off % dt.itemsize:
        AUDIO.fail(f"{samples} samples x {channels} channels (plane stride {stride}) do not fit {size} bytes")
    shape = (channels, samples) if planar else (samples, channels)
    strides = (stride, dt.itemsize) if planar else (channels * dt.itemsize, dt.itemsize)
    return AudioView(v, fmt, np.ndarray(shape, dt, buffer=view, offset=off, strides=strides))
