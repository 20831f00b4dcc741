"""The end-to-end video pipeline of ``shmchan demo --video`` and ``shmchan bench --kinds video``.

A producer process decodes a real video with PyAV and sends every frame; a consumer process hashes
every frame (crc32 of its pixel rows), checks it against the producer's hash, and re-encodes it
with PyAV. The same work runs through shmchan (Frame messages written plane by plane into the slot,
encoded straight from a view of the slot) and through ``multiprocessing.Queue`` (a new array per
frame, pickled through a pipe), and optionally in one process (decode, hash, encode in one loop):
frames/s and CPU time per frame, same run.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import resource
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ..channel import Channel
from ..schema import PixelFormat, frame_message_size, plane_layout
from .pyav import _av, send_av_frame, to_av_frame


@dataclass
class VideoResult:
    """One transport's run."""

    transport: str
    frames: int = 0
    verified: int = 0
    errors: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0  #: user + system time of every process of the run (all threads)
    first_error: str = ""
    hashes: list[int] = field(default_factory=list, repr=False)

    @property
    def fps(self) -> float:
        """Frames per second, wall time."""
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_ms_per_frame(self) -> float:
        """CPU time per frame, all processes, milliseconds."""
        return 1e3 * self.cpu_seconds / self.frames if self.frames else 0.0


def make_test_video(path: str | os.PathLike[str], width: int = 1280, height: int = 720, frames: int = 300,
                    fps: int = 30, codec: str = "libx264") -> Path:
    """Encode a synthetic video (moving gradients, a different image every frame) with PyAV:
    H.264 (libx264) in MP4 by default. Nothing is downloaded."""
    av = _av()

    out = Path(path)
    y, x = np.mgrid[0:height, 0:width]
    with av.open(str(out), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if codec == "libx264":
            stream.options = {"preset": "ultrafast", "crf": "23"}
        for i in range(frames):
            img = np.empty((height, width, 3), np.uint8)
            img[..., 0] = (x + 4 * i) % 256
            img[..., 1] = (y + 2 * i) % 256
            img[..., 2] = ((x // 32 + y // 32 + i) % 2) * 200
            for pkt in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(pkt)
        for pkt in stream.encode():
            container.mux(pkt)
    return out


def frame_hash(planes: list[Any]) -> int:
    """crc32 of a frame's pixel rows, plane by plane, without row padding (the native peers'
    ``--verify frames`` computes the same)."""
    crc = 0
    for p in planes:
        crc = zlib.crc32(np.ascontiguousarray(p.view(np.uint8)).data, crc)
    return crc


def av_planes(vf: Any) -> list[Any]:
    """The planes of a PyAV frame as arrays of their pixel rows (FFmpeg's row padding cut off)."""
    layout = plane_layout(PixelFormat.parse(vf.format.name), vf.width, vf.height)
    out = []
    for p, (_, rowbytes, rows) in zip(vf.planes, layout, strict=True):
        out.append(np.frombuffer(p, np.uint8)[: p.line_size * rows].reshape(rows, p.line_size)[:, :rowbytes])
    return out


class _Encoder:
    """Re-encodes frames with PyAV (to a file, or to memory and thrown away)."""

    def __init__(self, codec: str, width: int, height: int, output: str | None) -> None:
        import io

        av = _av()

        self._sink: Any = output if output else io.BytesIO()
        self._out = av.open(self._sink, "w", format="mp4" if output is None else None)
        self._stream = self._out.add_stream(codec, rate=30)
        self._stream.width, self._stream.height, self._stream.pix_fmt = width, height, "yuv420p"
        if codec == "libx264":
            self._stream.options = {"preset": "ultrafast"}
        self._n = 0

    def encode(self, vf: Any) -> None:
        vf.pts = self._n  # the encoder's own clock: one tick per frame at 30 frames/s
        vf.time_base = Fraction(1, 30)
        self._n += 1
        for pkt in self._stream.encode(vf):
            self._out.mux(pkt)

    def close(self) -> None:
        for pkt in self._stream.encode():
            self._out.mux(pkt)
        self._out.close()


def _decode(path: str, limit: int | None) -> Any:
    av = _av()

    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for i, vf in enumerate(container.decode(stream)):
            if limit is not None and i >= limit:
                break
            yield vf


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _shm_producer(name: str, path: str, limit: int | None, go: Any, out: Any) -> None:
    hashes = []
    with Channel.open(name) as ch, ch.writer() as w:
        go.wait()
        for seq, vf in enumerate(_decode(path, limit)):
            hashes.append(frame_hash(av_planes(vf)))
            send_av_frame(w, vf, seq=seq, timeout=60)
    out.put(("producer", hashes, _cpu()))


def _shm_consumer(name: str, encoder: str, output: str | None, go: Any, out: Any) -> None:
    hashes: list[int] = []
    enc: _Encoder | None = None
    with Channel.open(name, schema="frame") as ch, ch.reader() as r:
        go.wait()
        t0 = time.monotonic()
        for msg in r:
            f = msg.frame()
            hashes.append(frame_hash(f.planes))
            if enc is None:
                enc = _Encoder(encoder, f.width, f.height, output)
            vf = to_av_frame(f)  # a view of the slot: the encoder reads the pixels in place
            enc.encode(vf)
            del vf, f
        if enc is not None:
            enc.close()
        seconds = time.monotonic() - t0
    out.put(("consumer", hashes, _cpu(), seconds))


def _queue_producer(q: Any, path: str, limit: int | None, go: Any, out: Any) -> None:
    hashes = []
    go.wait()
    for vf in _decode(path, limit):
        hashes.append(frame_hash(av_planes(vf)))
        q.put((vf.format.name, vf.to_ndarray()))  # the usual way: a new array per frame, pickled
    q.put(None)
    out.put(("producer", hashes, _cpu()))


def _queue_consumer(q: Any, encoder: str, output: str | None, go: Any, out: Any) -> None:
    av = _av()

    hashes: list[int] = []
    enc: _Encoder | None = None
    go.wait()
    t0 = time.monotonic()
    while (item := q.get()) is not None:
        fmt, arr = item
        vf = av.VideoFrame.from_ndarray(arr, format=fmt)
        hashes.append(frame_hash(av_planes(vf)))
        if enc is None:
            enc = _Encoder(encoder, vf.width, vf.height, output)
        enc.encode(vf)
    if enc is not None:
        enc.close()
    out.put(("consumer", hashes, _cpu(), time.monotonic() - t0))


def _one_process(path: str, limit: int | None, encoder: str, output: str | None, out: Any) -> None:
    hashes: list[int] = []
    enc: _Encoder | None = None
    t0 = time.monotonic()
    for vf in _decode(path, limit):
        hashes.append(frame_hash(av_planes(vf)))  # the producer's hash
        hashes.append(frame_hash(av_planes(vf)))  # the consumer's hash: the same work as the pipelines
        if enc is None:
            enc = _Encoder(encoder, vf.width, vf.height, output)
        enc.encode(vf)
    if enc is not None:
        enc.close()
    out.put(("one", hashes[::2], _cpu(), time.monotonic() - t0))


def _collect(label: str, procs: list[Any], go: Any, out: Any, timeout: float) -> VideoResult:
    for p in procs:
        p.start()
    time.sleep(0.3)  # both ends attached before the clock starts
    go.set()
    got: dict[str, tuple[Any, ...]] = {}
    deadline = time.monotonic() + timeout
    while len(got) < len(procs):
        try:
            item = out.get(timeout=0.2)
            got[item[0]] = item
        except queue.Empty:
            dead = [p for p in procs if p.exitcode not in (None, 0)]
            if dead or time.monotonic() > deadline:
                for p in procs:
                    p.kill()
                why = f"exit code {dead[0].exitcode}" if dead else f"no result in {timeout:.0f} s"
                raise RuntimeError(f"the {label} pipeline failed ({why})") from None
    for p in procs:
        p.join(30)
        p.close()
    out.close()
    out.join_thread()
    return _result(label, got)


def _result(label: str, got: dict[str, tuple[Any, ...]]) -> VideoResult:
    if "one" in got:
        _, hashes, cpu, seconds = got["one"]
        return VideoResult(label, len(hashes), len(hashes), 0, seconds, cpu, hashes=hashes)
    _, sent, cpu_p = got["producer"]
    _, received, cpu_c, seconds = got["consumer"]
    verified = sum(a == b for a, b in zip(sent, received, strict=False))  # same hash at the same index
    errors = sum(a != b for a, b in zip(sent, received, strict=False)) + abs(len(sent) - len(received))
    first = ""
    if errors:
        bad = next((i for i, (a, b) in enumerate(zip(sent, received, strict=False)) if a != b), min(len(sent),
                                                                                                      len(received)))
        first = f"frame {bad}: hash differs (or missing)"
    return VideoResult(label, len(received), verified, errors, seconds, cpu_p + cpu_c, first, received)


def run_video(path: str, *, frames: int | None = None, capacity: int = 8, encoder: str = "mpeg4",
              output: str | None = None, queue_baseline: bool = True, one_process: bool = False,
              timeout: float = 600) -> list[VideoResult]:
    """Run the pipeline through shmchan, then (optionally) through multiprocessing.Queue and in one
    process; return the results (every frame's hash checked against the producer's)."""
    av = _av()

    with av.open(path) as container:
        s = container.streams.video[0]
        width, height, fmt = s.codec_context.width, s.codec_context.height, s.codec_context.format.name
    ctx = mp.get_context("spawn")
    results = []
    name = f"demo-video-{os.getpid()}"
    slot = frame_message_size(width, height, fmt)
    with Channel.create(name, slot_size=slot, capacity=capacity, schema="frame"):
        go, out = ctx.Event(), ctx.Queue()
        procs = [ctx.Process(target=_shm_consumer, args=(name, encoder, output, go, out)),
                 ctx.Process(target=_shm_producer, args=(name, path, frames, go, out))]
        results.append(_collect("shmchan", procs, go, out, timeout))
    if queue_baseline:
        go, out, q = ctx.Event(), ctx.Queue(), ctx.Queue(maxsize=capacity)
        procs = [ctx.Process(target=_queue_consumer, args=(q, encoder, None, go, out)),
                 ctx.Process(target=_queue_producer, args=(q, path, frames, go, out))]
        results.append(_collect("multiprocessing.Queue", procs, go, out, timeout))
    if one_process:
        go, out = ctx.Event(), ctx.Queue()
        procs = [ctx.Process(target=_one_process, args=(path, frames, encoder, None, out))]
        results.append(_collect("one process", procs, go, out, timeout))
    return results


def ensure_video(path: str | None, workdir: str, width: int = 1280, height: int = 720, frames: int = 300) -> str:
    """``path``, or a freshly generated H.264 test video in ``workdir``."""
    if path:
        if not Path(path).is_file():
            raise FileNotFoundError(f"no video file {path!r}")
        return path
    return str(make_test_video(Path(workdir) / "shmchan-test.mp4", width, height, frames))


def temp_dir() -> tempfile.TemporaryDirectory[str]:
    """A temporary directory for a generated video."""
    return tempfile.TemporaryDirectory(prefix="shmchan-video-")
