"""The native fast paths of Frame messages (shmchan/_core.c): Writer.reserve_frame answers a call
Python answered before from a header template, and Message.frame answers a header equal to the last
validated one but for seq, timestamp_ns, pts and duration from its own copy of the header. These
tests hold them to the Python paths field by field, feed the reader rewritten, malformed and
shortened headers after its cache is primed, and check that their views pin slots as before."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np
import pytest

import shmchan
from shmchan import _core
from shmchan import schema as S
from shmchan.schema import frame as F

FIELDS = ("seq", "timestamp_ns", "width", "height", "pixel_format", "data_offset", "data_size", "strides", "pts",
          "time_base", "time", "duration", "keyframe", "color_matrix", "color_range", "color_primaries",
          "color_transfer", "sample_aspect_ratio", "rotation", "field_order")


def fields(f: S.FrameView) -> dict[str, Any]:
    return {n: getattr(f, n) for n in FIELDS}


def same_arrays(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and a.strides == b.strides and np.array_equal(a, b)


def assert_same_frame(fast: S.FrameView, slow: S.FrameView) -> None:
    assert fields(fast) == fields(slow)
    assert same_arrays(fast.pixels, slow.pixels)
    assert len(fast.planes) == len(slow.planes)
    assert all(same_arrays(a, b) for a, b in zip(fast.planes, slow.planes, strict=True))


def native_view(f: S.FrameView) -> bool:
    """Whether a fast path made ``f`` (its view is the slot's token, not a memoryview)."""
    return isinstance(f._view, _core.SlotView)


def full_parse(msg: shmchan.Message) -> S.FrameView:
    """The Python decode of a private copy of the message."""
    return S.decode_frame(memoryview(msg.tobytes()))


CASES: list[tuple[int, int, str, dict[str, Any]]] = [
    (64, 48, "RGB24", {}),
    (50, 20, "yuv420p", {"color_matrix": S.ColorMatrix.BT2020_NCL, "color_range": "Full", "row_align": 64,
                         "sample_aspect_ratio": (4, 3), "rotation": 270, "field_order": "TopFirst"}),
    (32, 18, "NV12", {"time_base": Fraction(1, 90000)}),
    (17, 9, "GRAY16", {}),
    (16, 8, "YUV444P", {"color_primaries": "BT709", "color_transfer": "SRGB"}),
    (24, 6, "YUYV422", {}),
]


@pytest.mark.parametrize("width,height,fmt,media", CASES, ids=[c[2] for c in CASES])
def test_fast_paths_give_what_the_python_paths_give(unique_name: str, width: int, height: int, fmt: str,
                                                    media: dict[str, Any]) -> None:
    """For several formats, geometries and media fields, with and without pts, duration and
    keyframe: the frames the writer's and the reader's fast paths make equal the full parse of the
    same bytes, field by field and array by array, and the fast paths are taken."""
    size = S.frame_message_size(width, height, fmt, row_align=int(media.get("row_align", 1)))
    with shmchan.Channel.create(unique_name, slot_size=size, capacity=4, schema="frame") as ch, \
            ch.writer() as w, ch.reader() as r:
        fast_w = fast_r = 0
        for i in range(16):
            per: dict[str, Any] = {}
            if i >= 8:
                per = {"pts": -1000 * i, "duration": 1000 + i, "keyframe": i >= 12}
            if i >= 12:
                per |= {"seq": 10**12 + i, "timestamp_ns": 1_700_000_000_000_000_000 + i}
            if media and (i < 4 or 8 <= i < 10):
                # the media fields take the Python path every time; the plain calls after them
                # must not be answered with a template of these fields
                fs = w.reserve_frame(width, height, fmt, **per, **media)
            else:
                fs = w.reserve_frame(width, height, fmt, **per)
            fast_w += native_view(fs.frame)
            for k, p in enumerate(fs.planes):
                p[...] = (np.arange(p.size) * (k + 3) + i).reshape(p.shape).astype(p.dtype)
            written = fields(fs.frame)
            assert S.decode_frame(memoryview(bytes(fs.slot.buffer))).seq == written["seq"]
            assert_same_frame(fs.frame, S.decode_frame(memoryview(bytes(fs.slot.buffer))))
            fs.commit()
            with r.recv(timeout=1) as msg:
                f = msg.frame()
                fast_r += native_view(f)
                assert fields(f) == written
                assert not f.pixels.flags.writeable and not any(p.flags.writeable for p in f.planes)
                assert_same_frame(f, full_parse(msg))
                if "pts" in per:
                    assert (f.pts, f.duration, f.keyframe) == (per["pts"], per["duration"], per["keyframe"])
                else:
                    assert f.seq == msg.seq and (f.pts, f.duration, f.keyframe) == (None, 0, False)
                del f
        assert fast_w >= 4 and fast_r >= 4, (fast_w, fast_r)


def _headers(name: str, width: int, height: int, fmt: str, **media: Any) -> bytes:
    """The bytes of a frame message as reserve_frame writes them (pixels zero), seq 7, ts 9."""
    size = S.frame_message_size(width, height, fmt)
    with shmchan.Channel.create(name, slot_size=size, capacity=2, schema="frame") as ch, ch.writer() as w:
        fs = w.reserve_frame(width, height, fmt, seq=7, timestamp_ns=9, **media)
        fs.slot.buffer[fs.frame.data_offset:] = bytes(len(fs.slot.buffer) - fs.frame.data_offset)
        data = bytes(fs.slot.buffer)
        fs.abort()
    return data


def _send(w: shmchan.Writer, data: bytes, n: int | None = None) -> None:
    """A message of the first ``n`` bytes of ``data`` (all), written as a peer would."""
    n = len(data) if n is None else n
    with w.reserve(n) as s:
        s.buffer[:] = data[:n]


def test_a_rewritten_header_byte_takes_the_full_parse(unique_name: str) -> None:
    """Once the reader has cached a header, a message that differs from it in a byte outside the
    per-message fields is parsed in full (its new value shows: never the cached one); a malformed one
    raises ShmchanDecodeError; a well-formed one after either is read right (and fast) again."""
    a = _headers(unique_name + "a", 64, 48, "RGB24", color_matrix="BT709")
    b = _headers(unique_name + "b", 64, 48, "RGB24", color_matrix="BT2020_NCL")
    diff = [i for i in range(len(a)) if a[i] != b[i]]
    assert len(diff) == 1 and diff[0] < 128, diff  # one header byte: same shape, other value
    with shmchan.Channel.create(unique_name, slot_size=len(a), capacity=4, schema="frame") as ch, \
            ch.writer() as w, ch.reader() as r:
        for data, want in ((a, S.ColorMatrix.BT709), (a, S.ColorMatrix.BT709), (b, S.ColorMatrix.BT2020_NCL),
                           (a, S.ColorMatrix.BT709)):
            _send(w, data)
            with r.recv(timeout=1) as msg:
                assert msg.frame().color_matrix == want
        _send(w, a)
        with r.recv(timeout=1) as msg:
            f = msg.frame()
            assert native_view(f) and f.seq == 7 and f.timestamp_ns == 9
            del f
        # the width's bytes rewritten: 0 is no frame at all
        root = int.from_bytes(a[0:4], "little")
        wpos = F.FRAME.positions(a)["width"]
        assert wpos > root
        bad = bytearray(a)
        bad[wpos : wpos + 4] = (0).to_bytes(4, "little")
        _send(w, bytes(bad))
        with r.recv(timeout=1) as msg, pytest.raises(shmchan.ShmchanDecodeError):
            msg.frame()
        _send(w, a)
        with r.recv(timeout=1) as msg:
            f = msg.frame()
            assert f.width == 64 and f.seq == 7
            del f


def test_every_one_or_two_byte_rewrite_reads_like_the_full_parse(unique_name: str) -> None:
    """With the cache primed, 1500 messages whose header has one or two bytes rewritten (seeded): the
    reader's answer equals the full parse of the same bytes (fields and arrays), or both raise
    ShmchanDecodeError; both happen, and rewrites of only per-message bytes take the fast path."""
    good = _headers(unique_name + "g", 32, 16, "I420", pts=5, duration=3)
    pos = F.FRAME.positions(good)
    volatile = {p + k for n in ("seq", "timestamp_ns", "pts", "duration") for p in (pos[n],) for k in range(8)}
    rng = np.random.default_rng(11)
    ok = bad = fast = 0
    with shmchan.Channel.create(unique_name, slot_size=len(good), capacity=4, schema="frame") as ch, \
            ch.writer() as w, ch.reader() as r:
        for i in range(1500):
            data = bytearray(good)
            if i % 3:
                for _ in range(int(rng.integers(1, 3))):
                    data[int(rng.integers(0, 160))] = int(rng.integers(0, 256))
            else:  # only per-message bytes
                for _ in range(int(rng.integers(1, 3))):
                    data[int(rng.choice(sorted(volatile)))] = int(rng.integers(0, 256))
            _send(w, bytes(data))
            # the good header between rewrites: the cache is primed with it again and again
            _send(w, good)
            msg = r.recv(timeout=1)
            try:
                slow: S.FrameView | None = full_parse(msg)
            except shmchan.ShmchanDecodeError:
                slow = None
            if slow is None:
                with pytest.raises(shmchan.ShmchanDecodeError):
                    msg.frame()
                bad += 1
            else:
                f = msg.frame()
                assert_same_frame(f, slow)
                end = msg.ndarray().ctypes.data + len(msg)
                assert all(p.ctypes.data + p.nbytes <= end for p in f.planes)
                fast += native_view(f)
                ok += 1
                del f
            del slow
            msg.release()
            with r.recv(timeout=1) as msg:
                assert msg.frame().seq == 7
        assert ok > 0 and bad > 0 and fast > 100, (ok, bad, fast)


def test_a_cached_geometry_longer_than_the_message_is_refused(unique_name: str) -> None:
    """A message with the cached header but shorter than its pixel data: ShmchanDecodeError, for
    every length from just short of the end down to the header; the full message still reads."""
    good = _headers(unique_name + "g", 64, 48, "RGB24")
    with shmchan.Channel.create(unique_name, slot_size=len(good), capacity=4, schema="frame") as ch, \
            ch.writer() as w, ch.reader() as r:
        _send(w, good)
        with r.recv(timeout=1) as msg:
            msg.frame()
        assert _core._frame_reader_cached(r)
        for n in (len(good) - 1, len(good) - 64, 200, 129, 128, 100):
            _send(w, good, n)
            with r.recv(timeout=1) as msg, pytest.raises(shmchan.ShmchanDecodeError):
                msg.frame()
            _send(w, good)
            with r.recv(timeout=1) as msg:
                f = msg.frame()
                assert native_view(f) and f.pixels.shape == (48, 64, 3)
                del f


def test_fast_views_pin_their_slots_until_they_die(unique_name: str) -> None:
    """A fast-path frame and its pixels keep the message's slot from the writer after release, as
    views of the Python path did; a writer-side pixel array kept after commit stops the writer from
    reusing the slot (BufferError); once they die, the slots go back."""
    size = S.frame_message_size(16, 16, "GRAY8")
    with shmchan.Channel.create(unique_name, slot_size=size, capacity=2, schema="frame") as ch, \
            ch.writer() as w, ch.reader() as r:
        for _ in range(3):  # prime both caches
            with w.reserve_frame(16, 16, "GRAY8"):
                pass
            with r.recv(timeout=1) as msg:
                msg.frame()
        for keep in ("frame", "pixels"):
            for _ in range(2):
                with w.reserve_frame(16, 16, "GRAY8") as fs:
                    assert native_view(fs.frame)
                    fs.pixels[...] = 1
            msg = r.recv(timeout=1)
            f = msg.frame()
            assert native_view(f)
            held: Any = f if keep == "frame" else f.pixels
            del f
            msg.release()
            r.recv(timeout=1).release()
            with pytest.raises(shmchan.ChannelFullError):
                w.reserve_frame(16, 16, "GRAY8", timeout=0)  # the next slot is the pinned one
            assert int(np.asarray(held.pixels if keep == "frame" else held).max()) == 1
            del held
            w.reserve_frame(16, 16, "GRAY8", timeout=0).commit()
            r.recv(timeout=1).release()
        fs = w.reserve_frame(16, 16, "GRAY8")
        frame = fs.frame
        px = fs.pixels
        fs.commit()
        with pytest.raises(shmchan.MessageReleasedError):
            fs.frame  # noqa: B018
        with pytest.raises(shmchan.MessageReleasedError):
            fs.pixels  # noqa: B018
        with pytest.raises(shmchan.MessageReleasedError):
            frame.pixels  # noqa: B018  (commit released the frame's views)
        r.recv(timeout=1).release()
        w.reserve_frame(16, 16, "GRAY8").commit()
        r.recv(timeout=1).release()
        with pytest.raises(BufferError):
            w.reserve_frame(16, 16, "GRAY8")  # px still shows the slot that is next
        del px, frame
        w.reserve_frame(16, 16, "GRAY8").commit()
        with r.recv(timeout=1) as msg:
            assert msg.frame().width == 16


def test_a_new_geometry_after_many_frames_of_another(unique_name: str) -> None:
    """300 frames of one geometry (cached on both sides), then another format and size, then back,
    then with keyframes on and off: every frame has its own geometry, values and pixels."""
    size = S.frame_message_size(64, 48, "RGB24")
    plan = [(64, 48, "RGB24")] * 300 + [(32, 16, "I420")] * 5 + [(64, 48, "RGB24")] * 3 + [(8, 8, "GRAY8")] * 3
    with shmchan.Channel.create(unique_name, slot_size=size, capacity=4, schema="frame") as ch, \
            ch.writer() as w, ch.reader() as r:
        for i, (width, height, fmt) in enumerate(plan):
            with w.reserve_frame(width, height, fmt, keyframe=i % 7 == 0) as fs:
                fs.pixels[...] = i % 251
            with r.recv(timeout=1) as msg:
                f = msg.frame()
                assert (f.width, f.height, f.pixel_format.name, f.keyframe) == (width, height, fmt, i % 7 == 0)
                assert f.seq == msg.seq == i and int(f.pixels.min()) == int(f.pixels.max()) == i % 251
                assert f.pixels.shape == ((height * 3 // 2, width) if fmt == "I420" else
                                          (height, width, 3) if fmt == "RGB24" else (height, width))
                del f


def test_the_fast_path_never_takes_calls_with_media_fields(unique_name: str) -> None:
    """Media fields (row_align alone too) always go to Python, and a plain call after them gets the
    plain header, not theirs; out-of-range values still raise the Python path's errors."""
    size = S.frame_message_size(50, 20, "GRAY8", row_align=64)
    with shmchan.Channel.create(unique_name, slot_size=size, capacity=4, schema="frame") as ch, \
            ch.writer() as w, ch.reader() as r:
        for _ in range(3):
            for kw, strides, rot in (({"row_align": 64}, (64,), 0), ({}, (50,), 0), ({"rotation": 90}, (50,), 90)):
                with w.reserve_frame(50, 20, "GRAY8", **kw):
                    pass
                with r.recv(timeout=1) as msg:
                    f = msg.frame()
                    assert f.strides == strides and f.rotation == rot
                    del f
        for bad, name in (({"seq": -1}, "seq"), ({"timestamp_ns": 1 << 64}, "timestamp_ns"),
                          ({"pts": 1 << 63}, "pts"), ({"duration": -(1 << 64)}, "duration")):
            with pytest.raises(ValueError, match=name):
                w.reserve_frame(50, 20, "GRAY8", **bad)
        with pytest.raises(TypeError):
            w.reserve_frame(50, 20, "GRAY8", 1)  # type: ignore[misc]
        with pytest.raises(TypeError):
            w.reserve_frame(50, 20, "GRAY8", bogus=1)  # type: ignore[call-arg]
        with w.reserve_frame(50, 20, "GRAY8", seq=(1 << 64) - 1, timestamp_ns=0):
            pass
        with r.recv(timeout=1) as msg:
            assert msg.frame().seq == (1 << 64) - 1


def test_a_frame_slot_dropped_or_raising_aborts(unique_name: str) -> None:
    """A fast-path FrameSlot dropped uncommitted, or whose with block raises, is aborted: the reader
    never sees it, and the writer goes on."""
    size = S.frame_message_size(8, 8, "GRAY8")
    with shmchan.Channel.create(unique_name, slot_size=size, capacity=4, schema="frame") as ch, \
            ch.writer() as w, ch.reader() as r:
        w.reserve_frame(8, 8, "GRAY8").commit()
        fs = w.reserve_frame(8, 8, "GRAY8")
        assert native_view(fs.frame)
        del fs
        with pytest.raises(RuntimeError), w.reserve_frame(8, 8, "GRAY8"):
            raise RuntimeError
        w.reserve_frame(8, 8, "GRAY8", seq=42).commit()
        assert [m.frame().seq for m in (r.recv(timeout=1), r.recv(timeout=1))] == [0, 42]
        with pytest.raises(shmchan.ChannelEmptyError):
            r.recv(timeout=0)


def test_planes_with_extra_rows_never_get_the_combined_pixel_view() -> None:
    """A peer may give a plane more rows than the frame needs (I420, Y with 2 spare rows, the chroma
    planes right after them): ``pixels`` must not be the (height * 3 // 2, width) view, which would put
    chroma rows where the spare luma rows are; it falls back to the payload's bytes, and ``planes``
    are where the header says."""
    w, h = 64, 48
    vals = list(F.FRAME.defaults)
    vals[F._W], vals[F._H], vals[F._FMT] = w, h, int(S.PixelFormat.I420)
    rel = [(0, w, h + 2), (w * (h + 2), w // 2, h // 2), (w * (h + 2) + (w // 2) * (h // 2), w // 2, h // 2)]
    size = rel[-1][0] + (w // 2) * (h // 2)
    head = F.round_up(len(F._build_frame(tuple(vals), rel, frozenset())), F.DATA_ALIGN)
    vals[F._DOFF], vals[F._DSIZE] = head, size
    planes = [(head + o, s, r) for o, s, r in rel]
    vals[F._PLANES] = tuple(x for p in planes for x in p)
    hdr = F._build_frame(tuple(vals), planes, frozenset())
    body = bytearray(hdr + bytes(head - len(hdr) + size))
    for i, (off, stride, rows) in enumerate(planes):
        body[off : off + stride * rows] = bytes([i + 1]) * (stride * rows)
    f = S.decode_frame(memoryview(bytes(body)))
    assert f.pixels.shape == (size,)
    assert [p.shape for p in f.planes] == [(h + 2, w), (h // 2, w // 2), (h // 2, w // 2)]
    assert all((p == i + 1).all() for i, p in enumerate(f.planes))
