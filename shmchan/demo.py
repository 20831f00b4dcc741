"""``shmchan demo``: stream synthetic video frames between two processes, verify them, and compare
with the same stream sent through ``multiprocessing.Queue`` in the same run; ``--video [FILE]``: the
same with a real video decoded by PyAV, hashed and re-encoded (shmchan.media.pipeline)."""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .channel import Channel

PAGE = 4096


@dataclass
class Result:
    """What one transport achieved."""

    transport: str
    frames: int
    verified: int
    errors: int
    seconds: float
    first_error: str

    @property
    def fps(self) -> float:
        return self.verified / self.seconds if self.seconds > 0 else 0.0

    def gbps(self, frame_bytes: int) -> float:
        return self.fps * frame_bytes / 1e9


def _fill(frame: Any, seq: int) -> None:
    """Write every byte of a frame: a flat colour from seq, a stamp on every page, seq at byte 8."""
    flat = frame.reshape(-1)
    flat[:] = seq & 0xFF
    stamps = flat[::PAGE]
    stamps[:] = (np.arange(len(stamps), dtype=np.uint32) + seq) & 0xFF
    flat[8:16] = np.frombuffer(seq.to_bytes(8, "little"), np.uint8)


def _check(flat: Any, seq: int, stamps_ref: Any) -> str:
    """'' if the frame is frame `seq` (its sequence number and the byte stamped on every page)."""
    got = int.from_bytes(flat[8:16].tobytes(), "little")
    if got != seq:
        return f"frame {seq}: sequence number {got}"
    if not np.array_equal(flat[::PAGE], (stamps_ref + seq) & 0xFF):
        return f"frame {seq}: a page stamp is wrong (torn or stale frame)"
    return ""


def _shm_producer(name: str, shape: tuple[int, ...], frames: int, go: Any) -> None:
    with Channel.open(name) as ch, ch.writer() as w:
        go.wait()
        for seq in range(frames):
            with w.reserve(timeout=30) as slot:
                _fill(slot.ndarray(shape, np.uint8), seq)


def _shm_consumer(name: str, frames: int, go: Any, out: Any) -> None:
    errors, verified, first = 0, 0, ""
    with Channel.open(name) as ch, ch.reader() as r:
        stamps_ref = None
        go.wait()
        t0 = time.monotonic()
        for msg in r:
            flat = msg.ndarray()
            if stamps_ref is None:
                stamps_ref = np.arange(len(flat[::PAGE]), dtype=np.uint32)
            err = _check(flat, verified + errors, stamps_ref)
            del flat
            if err:
                errors += 1
                first = first or err
            else:
                verified += 1
        seconds = time.monotonic() - t0
    out.put(Result("shmchan", frames, verified, errors, seconds, first))


def _queue_producer(q: Any, shape: tuple[int, ...], frames: int, go: Any) -> None:
    go.wait()
    for seq in range(frames):
        frame = np.empty(shape, np.uint8)  # a new array each time: put() pickles it later, in a thread
        _fill(frame, seq)
        q.put(frame)
    q.put(None)


def _queue_consumer(q: Any, frames: int, go: Any, out: Any, progress: Any) -> None:
    errors, verified, first = 0, 0, ""
    stamps_ref = None
    go.wait()
    t0 = time.monotonic()
    while (frame := q.get()) is not None:
        flat = frame.reshape(-1)
        if stamps_ref is None:
            stamps_ref = np.arange(len(flat[::PAGE]), dtype=np.uint32)
        err = _check(flat, verified + errors, stamps_ref)
        if err:
            errors += 1
            first = first or err
        else:
            verified += 1
        progress.value = verified + errors
    out.put(Result("multiprocessing.Queue", frames, verified, errors, time.monotonic() - t0, first))


class _Bar:
    """A one-line progress bar on stderr (only when it is a terminal)."""

    def __init__(self, label: str, total: int, enabled: bool) -> None:
        self.label, self.total, self.enabled = label, total, enabled

    def show(self, done: int) -> None:
        if not self.enabled:
            return
        width = 30
        fill = int(width * done / self.total) if self.total else width
        sys.stderr.write(f"\r  {self.label:<22} [{'#' * fill}{'.' * (width - fill)}] {done}/{self.total}")
        sys.stderr.flush()

    def end(self) -> None:
        if self.enabled:
            sys.stderr.write("\r" + " " * 79 + "\r")
            sys.stderr.flush()


def _run(ctx: Any, procs: list[Any], go: Any, out: Any, poll: Any, bar: _Bar) -> Result:
    for p in procs:
        p.start()
    time.sleep(0.2)  # let both ends attach before the clock starts
    go.set()
    result: Result | None = None
    while result is None:
        bar.show(poll())
        try:
            result = out.get(timeout=0.1)
        except Exception:
            dead = [p for p in procs if p.exitcode not in (None, 0)]
            if dead:
                for p in procs:
                    p.kill()
                raise RuntimeError(f"a demo process failed (exit code {dead[0].exitcode})") from None
    bar.show(result.frames)
    bar.end()
    for p in procs:
        p.join(30)
    return result


def run_demo(frames: int, width: int, height: int, capacity: int, baseline: bool, progress: bool) -> list[Result]:
    """Run the shmchan stream and (optionally) the multiprocessing.Queue stream; return results."""
    ctx = mp.get_context("spawn")
    shape = (height, width, 3)
    frame_bytes = height * width * 3
    results = []
    name = f"demo-{os.getpid()}"
    with Channel.create(name, slot_size=frame_bytes, capacity=capacity) as ch:
        go, out = ctx.Event(), ctx.Queue()
        procs = [
            ctx.Process(target=_shm_consumer, args=(name, frames, go, out)),
            ctx.Process(target=_shm_producer, args=(name, shape, frames, go)),
        ]
        results.append(_run(ctx, procs, go, out, lambda: ch.stats().messages_read,
                            _Bar("shmchan", frames, progress)))
    if baseline:
        go, out, q = ctx.Event(), ctx.Queue(), ctx.Queue(maxsize=capacity)
        counter = ctx.RawValue("q", 0)
        procs = [
            ctx.Process(target=_queue_consumer, args=(q, frames, go, out, counter)),
            ctx.Process(target=_queue_producer, args=(q, shape, frames, go)),
        ]
        results.append(_run(ctx, procs, go, out, lambda: counter.value,
                            _Bar("multiprocessing.Queue", frames, progress)))
    return results


def _video_main(args: argparse.Namespace) -> int:
    """``shmchan demo --video [FILE]``: a real video, decoded by PyAV, through shmchan and through
    multiprocessing.Queue (shmchan.media.pipeline)."""
    try:
        from .media import pipeline
    except ImportError as exc:  # pragma: no cover - without the media extra
        print(f"shmchan demo --video needs PyAV: pip install 'shmchan[media]' ({exc})", file=sys.stderr)
        return 2
    frames = args.frames if args.frames_given else None
    with pipeline.temp_dir() as work:
        if not args.video:
            n = frames or 300
            if not args.json:
                print(f"shmchan demo --video: no file given; encoding a {args.width}x{args.height} H.264 test video of "
                      f"{n} frames with PyAV (libx264)")
            path = pipeline.ensure_video(None, work, args.width, args.height, n)
        else:
            path = pipeline.ensure_video(args.video, work)
        if not args.json:
            print(f"  {path}: a producer process decodes it with PyAV and sends every frame; a consumer process "
                  "hashes every frame (checked against the producer's hash) and re-encodes it "
                  f"({args.encoder}); then the same through multiprocessing.Queue")
        results = pipeline.run_video(path, frames=frames, capacity=args.capacity, encoder=args.encoder,
                                     output=args.output, queue_baseline=not args.no_baseline)
    ok = all(r.errors == 0 and r.frames > 0 for r in results)
    if args.json:
        doc: dict[str, Any] = {"video": args.video or "generated", "results": [
            {"transport": r.transport, "frames": r.frames, "verified": r.verified, "errors": r.errors,
             "seconds": r.seconds, "fps": r.fps, "cpu_ms_per_frame": r.cpu_ms_per_frame,
             "first_error": r.first_error} for r in results]}
        if len(results) == 2 and results[1].fps > 0:
            doc["speedup"] = results[0].fps / results[1].fps
        print(json.dumps(doc, indent=2))
        return 0 if ok else 1
    for r in results:
        line = (f"  {r.transport:<22} {r.fps:8.1f} frames/s  {r.cpu_ms_per_frame:7.2f} ms CPU per frame  "
                f"verified {r.verified}/{r.frames}, errors {r.errors}")
        print(line + (f"  first error: {r.first_error}" if r.first_error else ""))
    if len(results) == 2 and results[1].fps > 0:
        print(f"  shmchan is {results[0].fps / results[1].fps:.2f}x the frames/s of multiprocessing.Queue, "
              f"{results[1].cpu_ms_per_frame / max(results[0].cpu_ms_per_frame, 1e-9):.2f}x less CPU per frame")
    return 0 if ok else 1


def _main(args: argparse.Namespace) -> int:
    if args.video is not None:
        return _video_main(args)
    frame_bytes = args.height * args.width * 3
    if not args.json:
        print(f"shmchan demo: {args.frames} frames of {args.width}x{args.height} RGB ({frame_bytes / 1e6:.1f} MB), "
              f"capacity {args.capacity}, producer and consumer in separate processes")
        print("  the producer writes every byte of each frame; the consumer checks its sequence number "
              "and a byte on every page")
    results = run_demo(args.frames, args.width, args.height, args.capacity, not args.no_baseline,
                       progress=sys.stderr.isatty() and not args.json)
    ok = all(r.errors == 0 and r.verified == r.frames for r in results)
    if args.json:
        doc = {"frame_bytes": frame_bytes, "results": [dict(asdict(r), fps=r.fps, gbps=r.gbps(frame_bytes))
                                                       for r in results]}
        if len(results) == 2 and results[1].fps > 0:
            doc["speedup"] = results[0].fps / results[1].fps
        print(json.dumps(doc, indent=2))
        return 0 if ok else 1
    for r in results:
        line = (f"  {r.transport:<22} {r.fps:9.1f} frames/s  {r.gbps(frame_bytes):6.2f} GB/s  "
                f"verified {r.verified}/{r.frames}, errors {r.errors}")
        print(line + (f"  first error: {r.first_error}" if r.first_error else ""))
    if len(results) == 2 and results[1].fps > 0:
        print(f"  shmchan is {results[0].fps / results[1].fps:.1f}x the frames/s of multiprocessing.Queue")
    return 0 if ok else 1


def _positive(text: str) -> int:
    v = int(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {v}")
    return v


def _pow2(text: str) -> int:
    v = _positive(text)
    if v & (v - 1):
        raise argparse.ArgumentTypeError(f"must be a power of two, got {v}")
    return v


def add_parser(sub: Any) -> None:
    """Register the ``demo`` subcommand."""
    p = sub.add_parser(
        "demo",
        help="stream verified 1080p frames between two processes; compare with multiprocessing.Queue",
        description="Stream synthetic RGB frames from a producer process to a consumer process through a "
        "shmchan channel (written and read in place), verify every frame, then send the same stream "
        "through multiprocessing.Queue and print frames/s, GB/s and the ratio.",
    )
    p.add_argument("--frames", type=_positive, help="frames to send (default 600; --video: the whole file, or 300 "
                   "for a generated one)")
    p.add_argument("--width", type=_positive, help="frame width (default 1920; a generated --video: 1280)")
    p.add_argument("--height", type=_positive, help="frame height (default 1080; a generated --video: 720)")
    p.add_argument("--capacity", type=_pow2, default=8, help="slots in the ring, a power of two (default 8)")
    p.add_argument("--no-baseline", action="store_true", help="skip the multiprocessing.Queue comparison")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    v = p.add_argument_group("a real video (needs shmchan[media]: PyAV)")
    v.add_argument("--video", nargs="?", const="", metavar="FILE",
                   help="decode FILE with PyAV in a producer process, send every frame, hash (checked) and re-encode "
                   "it in a consumer; compare with multiprocessing.Queue. Without FILE, encode a test video first "
                   "(--width x --height; 1280x720 unless given)")
    v.add_argument("--encoder", default="mpeg4", help="the consumer's encoder, a PyAV codec name (default mpeg4)")
    v.add_argument("--output", metavar="FILE", help="keep the shmchan consumer's re-encoded video in FILE")
    p.set_defaults(func=_prepare)


def _prepare(args: argparse.Namespace) -> int:
    args.frames_given = args.frames is not None
    if args.frames is None:
        args.frames = 600
    video = args.video is not None
    args.width = args.width or (1280 if video else 1920)
    args.height = args.height or (720 if video else 1080)
    return _main(args)
