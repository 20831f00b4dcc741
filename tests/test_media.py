"""Media pipelines: the Frame release-2 fields and formats, Packet and Audio messages, PyAV and OpenCV
helpers (shmchan.media), a real H.264 video through shmchan to native and Python consumers, the
examples, and the decoder against a peer that rewrites the header while it is read. One test (at
least) per numbered item of the media issue that shmchan's schema and media layers own (1-4, 8-10)."""

from __future__ import annotations

import os
import subprocess
import sys
import zlib
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import shmchan
from shmchan import schema as S

av = pytest.importorskip("av")
cv2 = pytest.importorskip("cv2")

from shmchan import media  # noqa: E402
from shmchan.media import pipeline  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BINARIES = {"c": ROOT / "peers" / "c" / "build", "rust": ROOT / "peers" / "rust" / "target" / "release",
            "go": ROOT / "peers" / "go" / "build"}
GOLDEN = ROOT / "schemas" / "golden"


def native(lang: str, prog: str) -> list[str]:
    """The command of a native peer's program (``consumer``, ``inspect``): the Go peer's consumer is
    ``shmchan-peer consume``."""
    argv = ["peer", "consume"] if lang == "go" and prog == "consumer" else [prog]
    exe = BINARIES[lang] / f"shmchan-{argv[0]}"
    if not exe.exists():
        why = f"the {lang} peer {exe} is not built (see docs/interop.md)"
        if os.environ.get("CI"):
            pytest.fail(f"{why}; CI must build it")
        pytest.skip(why)
    return [str(exe), *argv[1:]]


@pytest.fixture(scope="module")
def h264(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real H.264 file (libx264, 320x240, 40 frames), encoded here with PyAV's encoder."""
    return pipeline.make_test_video(tmp_path_factory.mktemp("video") / "clip.mp4", 320, 240, 40)


@pytest.fixture(scope="module")
def mp_resource_tracker() -> None:
    """multiprocessing's resource tracker keeps a pipe open once started: start it before the
    per-test fd check counts."""
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()


def av_frames(path: Path) -> list[Any]:
    with av.open(str(path)) as c:
        return list(c.decode(c.streams.video[0]))


# ---- 1: slot sizing ------------------------------------------------------------------------


def test_slot_too_small_for_a_frame_names_frame_message_size(unique_name: str) -> None:
    """A slot sized W*H*3 is too small for a Frame: the error names shmchan.frame_message_size and
    the size it gives, which fits."""
    assert shmchan.frame_message_size is S.frame_message_size
    with shmchan.Channel.create(unique_name, slot_size=64 * 48 * 3, capacity=2) as ch, ch.writer() as w:
        with pytest.raises(ValueError, match=r"shmchan\.frame_message_size\(64, 48, 'RGB24'\)") as ei:
            w.reserve_frame(64, 48, "RGB24")
        assert f"({shmchan.frame_message_size(64, 48, 'RGB24')} bytes, room for every media field)" in str(ei.value)
        assert "does not fit a slot of 9216" in str(ei.value)
    size = shmchan.frame_message_size(64, 48, "RGB24")
    with shmchan.Channel.create(unique_name + "b", slot_size=size, capacity=2) as ch, ch.writer() as w:
        fs = w.reserve_frame(64, 48, "RGB24", pts=1, time_base=(1, 90000), color_matrix="BT709", rotation=90,
                             sample_aspect_ratio=(1, 1), field_order="Progressive", keyframe=True)
        assert fs.slot.nbytes == size  # every media field: the largest header fits exactly
        fs.commit()


# ---- 2: FFmpeg's pixel format names ---------------------------------------------------------


@pytest.mark.parametrize(("ffmpeg", "ours"), [
    ("yuv420p", "I420"), ("yuvj420p", "I420"), ("nv12", "NV12"), ("gray", "GRAY8"), ("rgba", "RGBA32"),
    ("bgra", "BGRA32"), ("bgr24", "BGR24"), ("rgb24", "RGB24"), ("yuyv422", "YUYV422"), ("uyvy422", "UYVY422"),
    ("p010le", "P010"), ("yuv422p", "YUV422P"), ("yuv444p", "YUV444P"), ("gray16le", "GRAY16"),
    ("rgb48le", "RGB48"), ("yuv420p10le", "YUV420P10")])
def test_ffmpeg_pixel_format_names_map_both_ways(unique_name: str, ffmpeg: str, ours: str) -> None:
    """reserve_frame takes FFmpeg's (PyAV's) names; each maps to its shmchan format and back, and
    the plane sizes are FFmpeg's for that format."""
    fmt = S.PixelFormat.parse(ffmpeg)
    assert fmt.name == ours and media.pixel_format_from_av(ffmpeg) == fmt
    assert S.PixelFormat.parse(fmt.ffmpeg_name) == fmt and media.pixel_format_to_av(fmt) == fmt.ffmpeg_name
    vf = av.VideoFrame(64, 48, ffmpeg)
    layout = S.plane_layout(fmt, 64, 48)
    assert [rows for _, _, rows in layout] == [p.height for p in vf.planes]
    assert all(stride <= p.line_size for (_, stride, _), p in zip(layout, vf.planes, strict=True))
    with shmchan.Channel.create(unique_name, slot_size=S.frame_message_size(64, 48, ffmpeg), capacity=2) as ch:
        w, r = ch.writer(), ch.reader()
        with w.reserve_frame(64, 48, ffmpeg) as fs:
            for i, p in enumerate(fs.planes):
                p[...] = i + 1
            del p
        with r.recv(timeout=1) as msg:
            f = msg.frame()
            assert f.pixel_format == fmt and [int(p.reshape(-1)[0]) for p in f.planes] == \
                list(range(1, len(layout) + 1))
            del f
    with pytest.raises(ValueError, match="unknown pixel format 'yuv410p'"):
        S.PixelFormat.parse("yuv410p")


# ---- 3: PyAV frames in, plane by plane ---------------------------------------------------------


@pytest.mark.parametrize("fmt", ["yuv420p", "nv12", "rgb24", "gray", "yuyv422", "yuv444p", "gray16le"])
def test_send_av_frame_trims_ffmpeg_row_padding(unique_name: str, fmt: str) -> None:
    """A PyAV frame whose rows are padded (line_size > row bytes) arrives packed and pixel-exact;
    to_av_frame gives PyAV the same image back."""
    src = av.VideoFrame.from_ndarray(np.zeros((1, 1, 3), np.uint8), format="rgb24").reformat(100, 30, fmt)
    rng = np.random.default_rng(1)
    for p in src.planes:
        buf = np.frombuffer(p, np.uint8)
        buf[...] = rng.integers(0, 256, buf.size, dtype=np.uint8)
    assert any(p.line_size > S.plane_layout(S.PixelFormat.parse(fmt), 100, 30)[i][1]
               for i, p in enumerate(src.planes)), "the test wants padded rows"
    expect = pipeline.av_planes(src)
    with shmchan.Channel.create(unique_name, slot_size=S.frame_message_size(100, 30, fmt), capacity=2,
                                schema="frame") as ch:
        w, r = ch.writer(), ch.reader()
        media.send_av_frame(w, src, seq=5)
        with r.recv(timeout=1) as msg:
            f = msg.frame()
            assert (f.seq, f.width, f.height) == (5, 100, 30)
            assert all(np.array_equal(got.view(np.uint8), want) for got, want in zip(f.planes, expect, strict=True))
            back = media.to_av_frame(f)
            assert back.format.name == S.PixelFormat.parse(fmt).ffmpeg_name
            assert pipeline.frame_hash(pipeline.av_planes(back)) == pipeline.frame_hash(expect)
            del f, back


def test_writer_send_frame_copies_an_image(unique_name: str) -> None:
    """Writer.send_frame exists next to send_tensor and copies an image in."""
    img = np.arange(48 * 64 * 3, dtype=np.uint32).astype(np.uint8).reshape(48, 64, 3)
    with shmchan.Channel.create(unique_name, slot_size=S.frame_message_size(64, 48), capacity=2) as ch:
        w, r = ch.writer(), ch.reader()
        w.send_frame(img, "bgr24", pts=-3, time_base=(1, 25))
        i420 = np.full((72, 64), 7, np.uint8)
        w.send_frame(i420, "yuv420p")
        with r.recv(timeout=1) as msg:
            f = msg.frame()
            assert f.pixel_format == S.PixelFormat.BGR24 and np.array_equal(f.pixels, img) and f.pts == -3
            del f
        with r.recv(timeout=1) as msg:
            f = msg.frame()
            assert f.pixel_format == S.PixelFormat.I420 and (f.pixels == 7).all() and f.pixels.shape == (72, 64)
            del f


# ---- 4: timestamps -------------------------------------------------------------------------------


def test_negative_pts_time_base_duration_and_keyframe_round_trip(unique_name: str) -> None:
    """pts is signed (B-frames, edit lists), with a time base, a duration and a key-frame flag; a
    negative timestamp_ns is a clear ValueError that points to pts."""
    with shmchan.Channel.create(unique_name, slot_size=S.frame_message_size(8, 8, "GRAY8"), capacity=4) as ch:
        w, r = ch.writer(), ch.reader()
        with w.reserve_frame(8, 8, "GRAY8", pts=-33_366_667, time_base=Fraction(1, 1_000_000_000),
                             duration=33_366_667, keyframe=True):
            pass
        with w.reserve_frame(8, 8, "GRAY8"):
            pass
        with pytest.raises(ValueError, match="pts="):
            w.reserve_frame(8, 8, "GRAY8", timestamp_ns=-33_366_667)
        with pytest.raises(ValueError, match="signed 64-bit"):
            w.reserve_frame(8, 8, "GRAY8", pts=1 << 63)
        with r.recv(timeout=1) as msg:
            f = msg.frame()
            assert (f.pts, f.time_base, f.duration, f.keyframe) == (-33_366_667, Fraction(1, 10**9), 33_366_667, True)
            assert f.time == pytest.approx(-0.033366667)
            del f
        with r.recv(timeout=1) as msg:
            f = msg.frame()
            assert (f.pts, f.time_base, f.duration, f.keyframe, f.time) == (None, None, 0, False, None)
            del f
        assert ch.stats().head == 2  # the refused frames reserved nothing


def test_seq_defaults_to_the_writers_position_on_a_broadcast(unique_name: str) -> None:
    """Without seq, a frame carries the writer's own stream position (Writer.position), also on a
    broadcast channel with readers attached."""
    size = S.frame_message_size(4, 4, "GRAY8")
    with shmchan.Broadcast.create(unique_name, slot_size=size, capacity=4, max_readers=2) as b:
        w = b.writer()
        views = [shmchan.Broadcast.open(unique_name) for _ in range(2)]
        readers = [v.reader(start="oldest") for v in views]
        for i in range(6):
            assert w.position == i
            with w.reserve_frame(4, 4, "GRAY8"):
                pass
            for r in readers:
                with r.recv(timeout=1) as msg:
                    assert msg.frame().seq == msg.seq == i
        for v in views:
            v.close()


# ---- 8: colour, aspect ratio, rotation, interlacing, strides ----------------------------------------


def test_colour_aspect_rotation_field_order_and_padded_rows_round_trip(unique_name: str) -> None:
    """Matrix, range, primaries, transfer (H.273), sample aspect ratio, rotation and field order
    travel with the frame; row_align pads every row and the views follow the strides."""
    size = S.frame_message_size(50, 20, "I420", row_align=64)
    with shmchan.Channel.create(unique_name, slot_size=size, capacity=2) as ch:
        w, r = ch.writer(), ch.reader()
        with w.reserve_frame(50, 20, "yuv420p", color_matrix=S.ColorMatrix.BT2020_NCL, color_range="Full",
                             color_primaries="BT2020", color_transfer=S.ColorTransfer.SMPTE2084,
                             sample_aspect_ratio=Fraction(16, 11), rotation=270, field_order="BottomFirst",
                             row_align=64) as fs:
            assert fs.frame.strides == (64, 64, 64)
            for i, p in enumerate(fs.planes):
                p[...] = 10 + i
            del p
        with r.recv(timeout=1) as msg:
            f = msg.frame()
            assert (f.color_matrix, f.color_range, f.color_primaries, f.color_transfer) == (
                S.ColorMatrix.BT2020_NCL, S.ColorRange.Full, S.ColorPrimaries.BT2020, S.ColorTransfer.SMPTE2084)
            assert (f.sample_aspect_ratio, f.rotation, f.field_order) == (Fraction(16, 11), 270,
                                                                          S.FieldOrder.BottomFirst)
            assert f.strides == (64, 64, 64) and [p.shape for p in f.planes] == [(20, 50), (10, 25), (10, 25)]
            assert [int(p.min()) for p in f.planes] == [10, 11, 12] and [int(p.max()) for p in f.planes] == [10, 11, 12]
            assert f.data_offset % 64 == 0 and f.planes[1].ctypes.data % 64 == 0
            vf = media.to_av_frame(f)
            assert (vf.colorspace, vf.color_range) == (9, 2)
            del f, vf
    with pytest.raises(ValueError, match="rotation"):
        S.reserve_frame(None, 8, 8, "GRAY8", rotation=45)  # type: ignore[arg-type]


def test_colour_fields_come_from_pyav(unique_name: str) -> None:
    """frame_fields_from_av maps PyAV's colour, timing and interlacing fields (same code points)."""
    vf = av.VideoFrame(16, 16, "yuvj420p")
    vf.colorspace, vf.color_primaries, vf.color_trc = 1, 1, 1
    vf.pts, vf.time_base = -2, Fraction(1, 30)
    fields = media.frame_fields_from_av(vf)
    assert fields["color_matrix"] == 1 and fields["color_range"] == S.ColorRange.Full
    assert (fields["pts"], fields["time_base"]) == (-2, Fraction(1, 30))
    assert fields["field_order"] == S.FieldOrder.Progressive


# ---- 9: formats, packets, audio ----------------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "dtype", "shapes"), [
    ("YUYV422", np.uint8, [(6, 16)]), ("UYVY422", np.uint8, [(6, 16)]), ("P010", np.uint16, [(6, 8), (3, 8)]),
    ("YUV422P", np.uint8, [(6, 8), (6, 4), (6, 4)]), ("YUV444P", np.uint8, [(6, 8)] * 3),
    ("GRAY16", np.uint16, [(6, 8)]), ("RGB48", np.uint16, [(6, 24)]),
    ("YUV420P10", np.uint16, [(6, 8), (3, 4), (3, 4)]), ("BGRA32", np.uint8, [(6, 32)])])
def test_new_formats_have_their_planes_and_sample_types(unique_name: str, fmt: str, dtype: Any,
                                                        shapes: list[tuple[int, int]]) -> None:
    """The 4:2:2 packed, 10/16-bit and planar formats lay out like FFmpeg's, with 16-bit samples as uint16."""
    with shmchan.Channel.create(unique_name, slot_size=S.frame_message_size(8, 6, fmt), capacity=2) as ch:
        w, r = ch.writer(), ch.reader()
        with w.reserve_frame(8, 6, fmt) as fs:
            for p in fs.planes:
                p[...] = np.arange(p.size).reshape(p.shape)
            del p
        with r.recv(timeout=1) as msg:
            f = msg.frame()
            assert [p.shape for p in f.planes] == shapes and all(p.dtype == dtype for p in f.planes)
            assert all(np.array_equal(p, np.arange(p.size).reshape(p.shape).astype(dtype)) for p in f.planes)
            del f
    with pytest.raises(ValueError, match="even width"):
        S.frame_message_size(7, 6, "YUYV422") if fmt.startswith(("YUYV", "UYVY")) else S.plane_layout(
            S.PixelFormat.YUYV422, 7, 6)


def test_opencv_converts_a_yuyv_webcam_frame(unique_name: str) -> None:
    """A YUYV (webcam) frame converts with OpenCV straight from the slot into another slot."""
    bgr = np.zeros((16, 32, 3), np.uint8)
    bgr[:, :, 2] = 200
    yuyv = cv2.cvtColor(cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV), cv2.COLOR_BGR2GRAY)  # any bytes will do
    with shmchan.Channel.create(unique_name, slot_size=S.frame_message_size(32, 16, "BGR24"), capacity=4) as ch:
        w, r = ch.writer(), ch.reader()
        with w.reserve_frame(32, 16, "YUYV422") as fs:
            fs.pixels.reshape(16, 64)[...] = np.repeat(yuyv, 2, axis=1)
        with r.recv(timeout=1) as msg, w.reserve_frame(32, 16, "BGR24") as out:
            f = msg.frame()
            res = media.to_bgr(f, dst=out.pixels)
            assert res.ctypes.data == out.pixels.ctypes.data and np.array_equal(
                res, cv2.cvtColor(f.pixels, cv2.COLOR_YUV2BGR_YUYV))
            del f, res


def test_h264_packets_through_a_channel_decode_like_the_file(unique_name: str, h264: Path) -> None:
    """Compressed packets (codec, pts/dts, key frame, extradata) go through Packet messages and a
    PyAV decoder on the far side gets exactly the frames of decoding the file directly."""
    direct = [pipeline.frame_hash(pipeline.av_planes(f)) for f in av_frames(h264)]
    got: list[int] = []
    with av.open(str(h264)) as c, shmchan.Channel.create(unique_name, slot_size=1 << 18, capacity=64,
                                                         schema="packet") as ch:
        s = c.streams.video[0]
        w, r = ch.writer(), ch.reader()
        keys = 0
        for pkt in c.demux(s):
            if pkt.size:
                media.send_av_packet(w, pkt)
                keys += bool(pkt.is_keyframe)
        w.close()
        dec = av.CodecContext.create("h264", "r")
        first = True
        for msg in r:
            p = S.decode_packet(msg.buffer)
            assert p.codec == "h264" and p.time_base is not None and (p.width, p.height) == (320, 240)
            if first:
                assert p.keyframe and p.extradata  # avcC in MP4
                dec.extradata = p.extradata
                first = False
            del p
            for f in dec.decode(media.to_av_packet(msg)):
                got.append(pipeline.frame_hash(pipeline.av_planes(f)))
        for f in dec.decode(None):
            got.append(pipeline.frame_hash(pipeline.av_planes(f)))
    assert keys >= 1 and got == direct


@pytest.mark.parametrize("fmt", ["fltp", "s16", "s32p", "dbl"])
def test_audio_frames_round_trip_through_pyav(unique_name: str, fmt: str) -> None:
    """A PyAV AudioFrame (planar or interleaved) becomes an Audio message with its sample format,
    layout, rate and pts, and comes back as the same samples."""
    planar = fmt.endswith("p")
    dt = {"flt": np.float32, "s16": np.int16, "s32": np.int32, "dbl": np.float64}[fmt.rstrip("p")]
    data = (np.arange(2 * 300) % 97).astype(dt).reshape((2, 300) if planar else (1, 600))
    af = av.AudioFrame.from_ndarray(data, format=fmt, layout="stereo")
    af.sample_rate, af.pts, af.time_base = 44100, -1024, Fraction(1, 44100)
    with shmchan.Channel.create(unique_name, slot_size=S.audio_message_size(300, fmt, 2), capacity=2,
                                schema="audio") as ch:
        w, r = ch.writer(), ch.reader()
        media.send_av_audio(w, af)
        with r.recv(timeout=1) as msg:
            a = S.decode_audio(msg.buffer)
            assert (a.sample_rate, a.channels, a.channel_layout, a.samples, a.planar, a.pts) == (
                44100, 2, "stereo", 300, planar, -1024)
            assert a.array.shape == ((2, 300) if planar else (300, 2))
            back = media.to_av_audio(msg)
            assert back.format.name == fmt and np.array_equal(back.to_ndarray(), data)
            del a, back


def test_pyav_helpers_refuse_a_channel_of_another_payload(unique_name: str) -> None:
    """send_av_audio and send_av_packet check the channel's declared payload, as send_av_frame does:
    audio or packets into a channel of Frames is an IncompatibleChannelError, and nothing is sent."""
    af = av.AudioFrame.from_ndarray(np.zeros((2, 64), np.float32), format="fltp", layout="stereo")
    af.sample_rate = 48000
    pkt = av.Packet(b"\x00\x00\x00\x01" * 8)
    with shmchan.Channel.create(unique_name, slot_size=S.frame_message_size(64, 48), capacity=2, schema="frame") as ch:
        w = ch.writer()
        with pytest.raises(shmchan.IncompatibleChannelError):
            media.send_av_audio(w, af)
        with pytest.raises(shmchan.IncompatibleChannelError):
            media.send_av_packet(w, pkt, "h264")
        assert ch.stats().head == 0


def test_golden_messages_are_what_python_writes(unique_name: str) -> None:
    """schemas/golden/{frame_v2,packet,audio}.bin (the native peers' test inputs) are exactly what
    Python writes for their values today."""
    sys.path.insert(0, str(ROOT / "tests"))
    import golden_messages

    for which in golden_messages.MESSAGES:
        assert golden_messages.make(f"{unique_name}-{which}", which) == (GOLDEN / f"{which}.bin").read_bytes(), which


@pytest.mark.parametrize("lang", ["c", "rust", "go"])
def test_native_peers_read_every_new_field_and_message_type(lang: str) -> None:
    """The C++, Rust and Go peers decode the golden Frame (every release-2 field), Packet and Audio
    messages, and read the Frame with release 1's generated code too (old readers still work)."""
    out = subprocess.run([*native(lang, "inspect"), *(str(GOLDEN / f"{w}.bin") for w in ("frame_v2", "packet",
                                                                                         "audio"))],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    f = S.decode_frame(memoryview((GOLDEN / "frame_v2.bin").read_bytes()))
    crc = pipeline.frame_hash(f.planes)
    lines = out.stdout.splitlines()
    assert lines[0] == (
        f"frame seq=41 ts=1700000000123456789 size=6x4 format=7 pts=-1001 time_base=1/30000 duration=1001 key=1 "
        f"matrix=1 range=1 primaries=1 transfer=1 sar=4/3 rotation=90 field_order=2 crc={crc:08x}")
    planes = ",".join(f"{f.data_offset + o}:{s}:{n}" for o, s, n in S.plane_layout(f.pixel_format, 6, 4))
    assert lines[1] == f"v1 seq=41 ts=1700000000123456789 size=6x4 format=7 planes={planes} " \
        f"data={f.data_offset}+{f.data_size}"
    pk = S.decode_packet(memoryview((GOLDEN / "packet.bin").read_bytes()))
    assert lines[2] == ("packet seq=42 ts=1700000000123456790 codec=h264 pts=3003 dts=-1001 duration=1001 "
                        "time_base=1/30000 key=1 extradata=01640028ffe1 size=1280x720 bytes=100 "
                        f"crc={zlib.crc32(pk.data.tobytes()):08x}")
    au = S.decode_audio(memoryview((GOLDEN / "audio.bin").read_bytes()))
    assert lines[3] == ("audio seq=43 ts=1700000000123456791 rate=48000 format=4 planar=1 channels=2 layout=stereo "
                        f"samples=5 pts=-1024 time_base=1/48000 bytes_per_sample=4 "
                        f"crc={zlib.crc32(np.ascontiguousarray(au.array).data):08x}")
    del f, pk, au


@pytest.mark.parametrize("lang", ["c", "rust", "go"])
def test_native_consumers_read_every_format_with_padded_rows_and_media_fields(unique_name: str, lang: str) -> None:
    """Python sends one frame of each of the 15 formats, rows padded to 64 bytes, every release-2
    field set (negative pts, a colour value no release names yet); the native consumer prints for
    each exactly the line Python expects, with the crc32 of the image rows without their padding."""
    fmts = [f for f in S.PixelFormat if f != S.PixelFormat.Unknown]
    assert len(fmts) == 15
    w, h = 18, 9
    size = max(S.frame_message_size(w, h, f, row_align=64) for f in fmts)
    expect = []
    with shmchan.Channel.create(unique_name, slot_size=size, capacity=4, schema="frame") as ch:
        peer = subprocess.Popen([*native(lang, "consumer"), unique_name, "--width", str(w), "--height", str(h),
                                 "--format", "GRAY8", "--frames", str(len(fmts)), "--verify", "frames",
                                 "--timeout", "20"], stdout=subprocess.PIPE, text=True)
        try:
            assert peer.stdout is not None and peer.stdout.readline().strip() == "ready"
            with ch.writer() as wr:
                for seq, f in enumerate(fmts):
                    k = int(f)
                    with wr.reserve_frame(w, h, f, seq=seq, timestamp_ns=10**18 + seq, pts=-3000 * k,
                                          time_base=Fraction(1, 90000), duration=3000, keyframe=k % 2 == 1,
                                          color_matrix=k % 15, color_range=k % 3, color_primaries=(1, 9, 22)[k % 3],
                                          color_transfer=(13, 16, 18)[k % 3], sample_aspect_ratio=(k, 11),
                                          rotation=90 * (k % 4), field_order=k % 4, row_align=64, timeout=20) as fs:
                        for i, p in enumerate(fs.planes):
                            p.view(np.uint8)[...] = (np.arange(p.view(np.uint8).size).reshape(p.view(np.uint8).shape)
                                                     * 7 + i + k) % 251
                        assert all(st % 64 == 0 for st in fs.frame.strides)
                        crc = pipeline.frame_hash(fs.planes)
                        del p
                    expect.append(f"frame seq={seq} ts={10**18 + seq} size={w}x{h} format={k} pts={-3000 * k} "
                                  f"time_base=1/90000 duration=3000 key={k % 2} matrix={k % 15} range={k % 3} "
                                  f"primaries={(1, 9, 22)[k % 3]} transfer={(13, 16, 18)[k % 3]} sar={k}/11 "
                                  f"rotation={90 * (k % 4)} field_order={k % 4} crc={crc:08x}")
            lines = [ln.rstrip("\n") for ln in peer.stdout if ln.startswith("frame ")]
            assert peer.wait(30) == 0
        finally:
            if peer.poll() is None:
                peer.kill()
                peer.wait()
    assert lines == expect


def test_release_1_python_reader_reads_new_frames(unique_name: str) -> None:
    """Release 1's generated Python (schemas/evolution/frame_v1.fbs) reads a frame with every
    release-2 field: the fields it knows, unchanged."""
    sys.path.insert(0, str(ROOT / "tests" / "evolution"))
    from frame_v1.Frame import Frame as OldFrame

    data = (GOLDEN / "frame_v2.bin").read_bytes()
    old = OldFrame.GetRootAs(data, 0)
    new = S.decode_frame(memoryview(data))
    assert (old.Seq(), old.TimestampNs(), old.Width(), old.Height(), old.PixelFormat(), old.DataOffset(),
            old.DataSize()) == (new.seq, new.timestamp_ns, 6, 4, 7, new.data_offset, new.data_size)
    assert [(old.Planes(i).Offset(), old.Planes(i).Stride(), old.Planes(i).Rows()) for i in range(3)] == \
        [(new.data_offset + o, s, n) for o, s, n in S.plane_layout(S.PixelFormat.I420, 6, 4)]
    old_sig = (ROOT / "schemas" / "bfbs" / "frame_v1.sig").read_text().replace("frame_v1.", "shmchan.fb.")
    S.check_compatible(S.PayloadSchema("shmchan.fb.Frame", "SHFR", old_sig), S.frame_schema())
    S.check_compatible(S.frame_schema(), S.PayloadSchema("shmchan.fb.Frame", "SHFR", old_sig))


# ---- a real H.264 video end to end: native and Python consumers, every frame hash-identical -----


@pytest.mark.parametrize("lang", ["rust", "c", "go"])
def test_h264_video_to_a_native_consumer_is_hash_identical(unique_name: str, h264: Path, lang: str) -> None:
    """PyAV decodes a real H.264 file; every frame goes through shmchan to the Rust, C++ or Go
    consumer, which prints the crc32 of each frame's pixel rows: all equal to the hashes of PyAV's
    frames."""
    frames = av_frames(h264)
    expect = [pipeline.frame_hash(pipeline.av_planes(f)) for f in frames]
    with shmchan.Channel.create(unique_name, slot_size=S.frame_message_size(320, 240, "yuv420p"), capacity=4,
                                schema="frame") as ch:
        peer = subprocess.Popen([*native(lang, "consumer"), unique_name, "--width", "320", "--height", "240",
                                 "--format", "I420", "--verify", "frames", "--timeout", "20"],
                                stdout=subprocess.PIPE, text=True)
        assert peer.stdout is not None and peer.stdout.readline().strip() == "ready"
        with ch.writer() as w:
            for seq, vf in enumerate(frames):
                media.send_av_frame(w, vf, seq=seq, timeout=20)
        lines = [ln for ln in peer.stdout if ln.startswith("frame ")]
        assert peer.wait(30) == 0
    got = [int(ln.rsplit("crc=", 1)[1], 16) for ln in lines]
    assert len(got) == len(expect) == 40 and got == expect
    assert all(" format=7 " in ln and " time_base=1/" in ln and " matrix=" in ln for ln in lines)


def test_h264_video_to_a_python_consumer_process_is_hash_identical(h264: Path, mp_resource_tracker: None) -> None:
    """The demo's pipeline: a producer process decodes, a consumer process hashes every frame and
    re-encodes it; every hash equals the producer's, through shmchan and through the Queue."""
    results = pipeline.run_video(str(h264), capacity=4)
    assert [r.transport for r in results] == ["shmchan", "multiprocessing.Queue"]
    for r in results:
        assert (r.frames, r.verified, r.errors) == (40, 40, 0), r
        assert r.fps > 0 and r.cpu_ms_per_frame > 0
    assert results[0].hashes == results[1].hashes


def test_demo_video_runs_from_the_command_line(tmp_path: Path) -> None:
    """``shmchan demo --video`` with a generated file prints frames/s, CPU per frame and the ratio."""
    out = subprocess.run([sys.executable, "-m", "shmchan.cli", "demo", "--video", "--frames", "20", "--width", "160",
                          "--height", "96", "--output", str(tmp_path / "out.mp4")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "verified 20/20, errors 0" in out.stdout and "x the frames/s of multiprocessing.Queue" in out.stdout
    assert "ms CPU per frame" in out.stdout
    with av.open(str(tmp_path / "out.mp4")) as c:
        assert sum(1 for _ in c.decode(c.streams.video[0])) == 20


# ---- examples -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("script", "args", "expect"), [
    ("pyav_to_native.py", ["--consumer", "rust", "--frames", "24"], "24 hash-identical"),
    ("pyav_to_native.py", ["--consumer", "c", "--frames", "24"], "24 hash-identical"),
    ("camera_broadcast.py", ["--frames", "60", "--viewers", "3"], "viewer 2: saw"),
    ("audio_channel.py", [], "wrote"),
])
def test_examples_run(script: str, args: list[str], expect: str) -> None:
    """Every example pipeline runs as written and checks what it received."""
    if script == "pyav_to_native.py":
        native(args[1], "consumer")
    out = subprocess.run([sys.executable, str(ROOT / "examples" / script), *args], capture_output=True, text=True,
                         timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert expect in out.stdout


# ---- a peer rewriting the header while we read it ----------------------------------------------------


def test_rewritten_header_bytes_give_a_frame_or_a_decode_error(unique_name: str) -> None:
    """A peer rewrites the root offset and other header bytes of a slot (3000 seeded rewrites of one
    or two bytes): every decode returns a consistent frame or raises ShmchanDecodeError (never
    struct.error, IndexError or a frame whose planes leave the message), and both happen. The
    decoder copies the header once, so a rewrite during a decode is one of these cases too."""
    size = S.frame_message_size(32, 32, "I420")
    with shmchan.Channel.create(unique_name, slot_size=size, capacity=2) as ch:
        w = ch.writer()
        fs = w.reserve_frame(32, 32, "I420")
        view = fs.slot.buffer
        good = bytes(view[:64])
        rng = np.random.default_rng(3)
        end = np.frombuffer(view, np.uint8).ctypes.data + len(view)
        ok = bad = 0
        for _ in range(3000):
            view[:64] = good
            view[0] = int(rng.integers(0, 256))  # the root offset's low byte
            if rng.integers(0, 2):
                view[int(rng.integers(8, 64))] = int(rng.integers(0, 256))
            try:
                f = S.decode_frame(view)
            except shmchan.ShmchanDecodeError as exc:
                assert type(exc).__name__ == "ShmchanDecodeError"
                bad += 1
                continue
            assert f.data_offset + f.data_size <= len(view) and f.width > 0
            assert all(p.ctypes.data + p.nbytes <= end for p in f.planes)
            ok += 1
            del f
        assert ok > 0 and bad > 0, (ok, bad)
        del view
        fs.abort()


# ---- 10: docs -------------------------------------------------------------------------------------


def test_readme_names_the_decode_error_offset_keyword_and_dlpack_note() -> None:
    """The README lists ndarray's offset as keyword-only, calls the decode error by the name
    tracebacks show, and warns about older DLPack importers."""
    readme = (ROOT / "README.md").read_text()
    assert "ndarray(shape=None, dtype=np.uint8, *, offset=0)" in readme
    assert "slot.ndarray(shape, dtype, *, offset=0)" in readme
    assert S.DecodeError is shmchan.ShmchanDecodeError and shmchan.ShmchanDecodeError.__name__ == "ShmchanDecodeError"
    assert "ShmchanDecodeError" in readme and "max_version" in readme and "BufferError" in readme
    with pytest.raises(shmchan.ShmchanDecodeError) as ei:
        S.decode_frame(memoryview(b"\0" * 16))
    assert "ShmchanDecodeError" in repr(ei.value)


def test_dlpack_shares_a_message_array_and_old_importers_get_buffer_error(unique_name: str) -> None:
    """np.from_dlpack shares a received array without a copy (still read-only); a DLPack importer
    that asks without max_version gets BufferError, as the README says."""
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=2) as ch:
        w, r = ch.writer(), ch.reader()
        w.send(bytes(range(64)))
        with r.recv(timeout=1) as msg:
            a = msg.ndarray()
            b = np.from_dlpack(a)
            assert b.ctypes.data == a.ctypes.data and not b.flags.writeable and b[5] == 5
            with pytest.raises(BufferError):
                a.__dlpack__()
            del a, b


@pytest.mark.parametrize(("sent", "received", "verified", "errors"), [
    ([1, 2, 3], [1, 2, 3], 3, 0),
    ([1, 2, 3], [1, 9, 3, 4], 2, 2),   # one hash differs, one frame too many
    ([1, 2, 3, 4], [1, 9], 1, 3),      # one differs, two missing: still one verified frame
    ([1, 2], [], 0, 2),
])
def test_pipeline_counts_verified_frames_exactly(sent: list[int], received: list[int], verified: int,
                                                 errors: int) -> None:
    """A run's verified count is the frames whose hash matches the producer's at the same index."""
    got = {"producer": ("producer", sent, 0.0), "consumer": ("consumer", received, 0.0, 1.0)}
    res = pipeline._result("shmchan", got)
    assert (res.frames, res.verified, res.errors) == (len(received), verified, errors)
    assert bool(res.first_error) == bool(errors)
