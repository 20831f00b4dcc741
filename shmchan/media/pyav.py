"""PyAV (FFmpeg) frames in and out of shmchan messages.

:func:`send_av_frame` writes a decoded ``av.VideoFrame`` into a Frame message in one copy per
plane, trimming FFmpeg's row padding, with its pixel format, colour information, pts, time base,
duration, key-frame flag, rotation and interlacing. :func:`to_av_frame` makes an ``av.VideoFrame``
of a received frame without copying where PyAV allows it (``VideoFrame.from_numpy_buffer``: packed
formats, and I420/NV12 with packed rows). :func:`send_av_audio` / :func:`to_av_audio` do the same
for ``av.AudioFrame`` and Audio messages, and :func:`send_av_packet` / :func:`to_av_packet` for
compressed ``av.Packet`` and Packet messages.
"""

from __future__ import annotations

import contextlib
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np

from ..schema import audio as _audio
from ..schema import frame as _frame
from ..schema import packet as _packet

if TYPE_CHECKING:
    from ..channel import Message, Writer

PixelFormat = _frame.PixelFormat


def _av() -> Any:
    try:
        import av
    except ImportError as exc:  # pragma: no cover - the media extra is not installed
        raise ImportError("shmchan.media needs PyAV: pip install 'shmchan[media]'") from exc
    return av


def pixel_format_from_av(name: str) -> PixelFormat:
    """shmchan's pixel format for FFmpeg's (PyAV's) pixel format name."""
    return PixelFormat.parse(name)


def pixel_format_to_av(fmt: PixelFormat | int | str) -> str:
    """FFmpeg's (PyAV's) name of a shmchan pixel format."""
    return PixelFormat.parse(fmt).ffmpeg_name


def frame_fields_from_av(vf: Any) -> dict[str, Any]:
    """The Frame fields an ``av.VideoFrame`` carries: pts, time_base, duration, key frame, the
    colour fields (FFmpeg uses the same H.273 code points), rotation and field order; plus full
    range for FFmpeg's "yuvj" formats."""
    fields: dict[str, Any] = {
        "keyframe": bool(vf.key_frame),
        "color_matrix": int(vf.colorspace),
        "color_range": int(vf.color_range),
        "color_primaries": int(vf.color_primaries),
        "color_transfer": int(vf.color_trc),
        "field_order": (_frame.FieldOrder.Progressive if not vf.interlaced_frame else _frame.FieldOrder.TopFirst),
    }
    if vf.format.name in _frame.FULL_RANGE_FFMPEG and fields["color_range"] == _frame.ColorRange.Unspecified:
        fields["color_range"] = _frame.ColorRange.Full
    if vf.pts is not None:
        fields["pts"] = int(vf.pts)
    if vf.time_base is not None:
        fields["time_base"] = Fraction(vf.time_base)
    if vf.duration:
        fields["duration"] = int(vf.duration)
    rot = int(getattr(vf, "rotation", 0) or 0) % 360
    if rot in (90, 180, 270):
        fields["rotation"] = rot
    return fields


def send_av_frame(writer: Writer, vf: Any, *, timeout: float | None = None, **fields: Any) -> None:
    """Write a PyAV ``VideoFrame`` as a Frame message: one copy per plane straight from FFmpeg's
    buffers into the slot, row padding trimmed. Its media fields come along
    (:func:`frame_fields_from_av`); ``fields`` override them (e.g. ``seq``, ``timestamp_ns``,
    ``sample_aspect_ratio`` from the stream)."""
    fmt = PixelFormat.parse(vf.format.name)
    meta = frame_fields_from_av(vf)
    meta.update(fields)
    with writer.reserve_frame(vf.width, vf.height, fmt, timeout=timeout, **meta) as fs:
        for src, dst in zip(vf.planes, fs.planes, strict=True):
            d = dst.view(np.uint8)
            rows, rowbytes = d.shape
            s = np.frombuffer(src, np.uint8)
            stride = src.line_size
            if stride < rowbytes or s.size < stride * (rows - 1) + rowbytes:
                raise ValueError(f"plane of {s.size} bytes (line size {stride}) is smaller than {rows} rows of "
                                 f"{rowbytes} bytes")
            np.copyto(d, np.lib.stride_tricks.as_strided(s, (rows, rowbytes), (stride, 1)))
            del d, s
        del src, dst


def to_av_frame(msg_or_frame: Message | _frame.FrameView) -> Any:
    """A PyAV ``VideoFrame`` of a received Frame, with its pts, time base and colour fields. It is a
    view of the slot (no copy) for packed formats and for I420/NV12 with packed rows; otherwise a
    copy. A view pins the slot while it lives: drop it before releasing the message's slot for good."""
    av = _av()
    f = msg_or_frame if isinstance(msg_or_frame, _frame.FrameView) else msg_or_frame.frame()
    name = f.pixel_format.ffmpeg_name
    px = f.pixels
    try:
        if px.ndim == 1:
            raise ValueError("not a standard layout")
        vf = av.VideoFrame.from_numpy_buffer(px, name)
        layout = _frame.plane_layout(f.pixel_format, f.width, f.height)
        if (vf.width, vf.height) != (f.width, f.height) or [p.line_size for p in vf.planes] != list(f.strides) or any(
                p.line_size * p.height < s * r for p, (_, s, r) in zip(vf.planes, layout, strict=True)):
            raise ValueError("PyAV would see another geometry")
    except (ValueError, TypeError):
        vf = av.VideoFrame(f.width, f.height, name)
        for src, dst in zip(f.planes, vf.planes, strict=True):
            s = src.view(np.uint8)
            d = np.frombuffer(dst, np.uint8).reshape(-1, dst.line_size)
            d[: s.shape[0], : s.shape[1]] = s
    if f.pts is not None:
        vf.pts = f.pts
    if f.time_base is not None:
        vf.time_base = f.time_base
    for attr, value in (("colorspace", f.color_matrix), ("color_range", f.color_range),
                        ("color_primaries", f.color_primaries), ("color_trc", f.color_transfer)):
        with contextlib.suppress(AttributeError, TypeError, ValueError):  # read-only in some PyAV releases
            setattr(vf, attr, int(value))
    return vf


def send_av_audio(writer: Writer, af: Any, *, timeout: float | None = None, **fields: Any) -> None:
    """Write a PyAV ``AudioFrame`` as an Audio message (one copy per plane), with its sample format
    (planar or interleaved), channel layout, sample rate, pts and time base."""
    meta: dict[str, Any] = {"channel_layout": af.layout.name}
    if af.pts is not None:
        meta["pts"] = int(af.pts)
    if af.time_base is not None:
        meta["time_base"] = Fraction(af.time_base)
    meta.update(fields)
    fmt, planar = _audio.SampleFormat.parse(af.format.name)
    channels = af.layout.nb_channels
    meta.setdefault("channel", writer.channel)  # refuse a channel declared for another payload
    with _audio.reserve_audio(writer, af.samples, fmt, channels, af.sample_rate, planar=bool(planar),
                              timeout=timeout, **meta) as slot:
        arr = slot.array
        if planar:
            for c, plane in enumerate(af.planes):
                arr[c] = np.frombuffer(plane, arr.dtype, count=af.samples)
        else:
            arr.reshape(-1)[:] = np.frombuffer(af.planes[0], arr.dtype, count=af.samples * channels)
        del arr


def to_av_audio(msg: Message) -> Any:
    """A PyAV ``AudioFrame`` (a copy) of a received Audio message."""
    av = _av()
    a = _audio.decode_audio(msg.buffer)
    arr = a.array if a.planar else a.array.reshape(1, -1)
    af = av.AudioFrame.from_ndarray(np.ascontiguousarray(arr), format=a.sample_format.ffmpeg_name(a.planar),
                                    layout=a.channel_layout or a.channels)
    af.sample_rate = a.sample_rate
    if a.pts is not None:
        af.pts = a.pts
    if a.time_base is not None:
        af.time_base = a.time_base
    return af


def send_av_packet(writer: Writer, pkt: Any, codec: str | None = None, *, timeout: float | None = None,
                   **fields: Any) -> None:
    """Write a compressed PyAV ``Packet`` (from a demuxer or an encoder) as a Packet message, with
    its codec, pts, dts, duration, time base, key-frame flag and the stream's extradata."""
    stream = pkt.stream
    ctx = stream.codec_context if stream is not None else None
    meta: dict[str, Any] = {"keyframe": bool(pkt.is_keyframe), "duration": int(pkt.duration or 0)}
    if pkt.pts is not None:
        meta["pts"] = int(pkt.pts)
    if pkt.dts is not None:
        meta["dts"] = int(pkt.dts)
    if pkt.time_base is not None:
        meta["time_base"] = Fraction(pkt.time_base)
    if ctx is not None:
        meta["extradata"] = bytes(ctx.extradata or b"")
        if getattr(ctx, "width", 0):
            meta.update(width=int(ctx.width), height=int(ctx.height))
    meta.update(fields)
    name = codec or (ctx.name if ctx is not None else "")
    meta.setdefault("channel", writer.channel)  # refuse a channel declared for another payload
    _packet.send_packet(writer, memoryview(pkt), name, timeout=timeout, **meta)


def to_av_packet(msg: Message) -> Any:
    """A PyAV ``Packet`` (a copy) of a received Packet message, ready for a decoder's ``decode``."""
    av = _av()
    p = _packet.decode_packet(msg.buffer)
    pkt = av.Packet(p.data.tobytes())
    pkt.pts, pkt.dts = p.pts, p.dts
    if p.time_base is not None:
        pkt.time_base = p.time_base
    if p.duration:
        pkt.duration = p.duration
    pkt.is_keyframe = p.keyframe
    return pkt
