"""The media sections of ``shmchan bench``.

``frames``: what a Frame message costs over a raw message, 1080p RGB, in one process, same run:
``reserve_frame`` + ``pixels`` + commit against ``reserve`` + ``ndarray`` + commit (writer), and
``recv`` + ``frame()`` + ``pixels`` + release against ``recv`` + ``ndarray`` + release (reader).
The pixels are not touched, so the ratio shows the header's cost in full. Each side is timed per
operation; rounds alternate the two variants; the figures are medians over the rounds.

``video``: the end-to-end pipeline of ``shmchan demo --video`` (PyAV decodes a real H.264 video in
one process, a consumer hashes and re-encodes every frame in another), through shmchan, through
``multiprocessing.Queue``, and the same work in one process: frames/s and CPU per frame, medians
over the rounds.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from typing import Any

import numpy as np

W, H = 1920, 1080


def _frames_round(ch: Any, w: Any, r: Any, n: int, offset: int) -> dict[str, float]:
    """Per-operation ns of the four variants, ``n`` messages each."""
    shape = (H, W, 3)
    pc = time.perf_counter_ns
    out: dict[str, float] = {}
    size = ch.slot_size
    for variant in ("raw", "frame"):
        tw = tr = 0
        for _ in range(n):
            t0 = pc()
            if variant == "raw":
                s = w.reserve(size)
                a = s.ndarray(shape, np.uint8, offset=offset)
                del a
                s.commit()
            else:
                fs = w.reserve_frame(W, H, "RGB24")
                a = fs.pixels
                del a
                fs.commit()
            t1 = pc()
            m = r.recv(0)
            if variant == "raw":
                b = m.ndarray(shape, np.uint8, offset=offset)
            else:
                f = m.frame()
                b = f.pixels
                del f
            del b
            m.release()
            t2 = pc()
            tw += t1 - t0
            tr += t2 - t1
        out[f"{variant}_write_ns"] = tw / n
        out[f"{variant}_read_ns"] = tr / n
    return out


def run_frames(seconds: float, rounds: int, run_id: str) -> dict[str, Any]:
    """The ``frames`` section: medians over ``rounds`` of the four per-operation costs."""
    from ..channel import Channel
    from ..schema import frame_message_size

    name = f"bench-{run_id}-frames"
    per_round = []
    with Channel.create(name, slot_size=frame_message_size(W, H, "RGB24"), capacity=4, schema="frame") as ch, \
            ch.writer() as w, ch.reader() as r:
        offset = 128  # where a frame without media fields puts its pixels: the same view in both variants
        _frames_round(ch, w, r, 200, offset)  # warm up
        t0 = time.monotonic()
        probe = _frames_round(ch, w, r, 200, offset)
        per_op = sum(probe.values()) / 1e9
        n = max(50, int(seconds / max(rounds, 1) / max(per_op, 1e-9)))
        for _ in range(rounds):
            per_round.append(_frames_round(ch, w, r, n, offset))
        elapsed = time.monotonic() - t0
    med = {k: statistics.median(x[k] for x in per_round) for k in per_round[0]}
    return {"width": W, "height": H, "format": "RGB24", "rounds": rounds, "messages_per_round": n,
            "seconds": round(elapsed, 2), **{k: round(v, 1) for k, v in med.items()},
            "write_ratio": med["frame_write_ns"] / med["raw_write_ns"],
            "read_ratio": med["frame_read_ns"] / med["raw_read_ns"],
            "per_round": per_round}


def run_video(frames: int, rounds: int, width: int, height: int) -> dict[str, Any]:
    """The ``video`` section: the demo's pipeline, ``rounds`` times, medians of frames/s and CPU."""
    from ..media import pipeline

    runs: dict[str, list[pipeline.VideoResult]] = {}
    with tempfile.TemporaryDirectory(prefix="shmchan-bench-video-") as d:
        t0 = time.monotonic()
        path = pipeline.make_test_video(os.path.join(d, "clip.mp4"), width, height, frames)
        made = time.monotonic() - t0
        for _ in range(rounds):
            for res in pipeline.run_video(str(path), one_process=True):
                runs.setdefault(res.transport, []).append(res)
    rows: list[dict[str, Any]] = []
    for transport, rs in runs.items():
        rows.append({"transport": transport, "fps": statistics.median(r.fps for r in rs),
                     "cpu_ms_per_frame": statistics.median(r.cpu_ms_per_frame for r in rs),
                     "frames": rs[0].frames, "errors": sum(r.errors for r in rs),
                     "verified": sum(r.verified for r in rs), "per_round_fps": [round(r.fps, 1) for r in rs]})
    fps: dict[str, float] = {str(r["transport"]): float(r["fps"]) for r in rows}
    return {"width": width, "height": height, "frames": frames, "rounds": rounds, "codec": "h264 (libx264)",
            "encoder": "mpeg4", "generate_seconds": round(made, 1), "rows": rows,
            "vs_queue": fps["shmchan"] / fps["multiprocessing.Queue"] if fps.get("multiprocessing.Queue") else None,
            "vs_one_process": fps["shmchan"] / fps["one process"] if fps.get("one process") else None}


def targets(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Target rows of the media sections that ran."""
    out: list[dict[str, Any]] = []
    fr = doc.get("frames")
    if fr and "error" not in fr:
        for side, what in (("write", "reserve_frame + commit"), ("read", "recv + frame() + release")):
            value, ref = fr[f"frame_{side}_ns"] / 1e3, fr[f"raw_{side}_ns"] / 1e3
            out.append({"target": f"1080p {what} <= 3x the raw calls", "value": value, "reference": ref,
                        "unit": "us", "ratio": value / ref, "met": value / ref <= 3.0})
    return out


def text(doc: dict[str, Any]) -> list[str]:
    """Terminal (and markdown) lines of the media sections that ran."""
    parts = []
    fr = doc.get("frames")
    if fr:
        if "error" in fr:
            parts.append(f"frames: FAILED: {fr['error']}")
        else:
            parts.append(
                f"frames (1080p RGB24, one process, pixels untouched; median of {fr['rounds']} rounds of "
                f"{fr['messages_per_round']}):\n"
                f"  write: reserve_frame+pixels+commit {fr['frame_write_ns'] / 1e3:.2f} us, reserve+ndarray+commit "
                f"{fr['raw_write_ns'] / 1e3:.2f} us: {fr['write_ratio']:.2f}x\n"
                f"  read:  recv+frame()+pixels+release {fr['frame_read_ns'] / 1e3:.2f} us, recv+ndarray+release "
                f"{fr['raw_read_ns'] / 1e3:.2f} us: {fr['read_ratio']:.2f}x")
    v = doc.get("video")
    if v:
        if "error" in v or "skipped" in v:
            parts.append(f"video: {'FAILED: ' + v['error'] if 'error' in v else 'skipped: ' + v['skipped']}")
        else:
            lines = [f"video (decode {v['width']}x{v['height']} H.264 -> channel -> hash + re-encode ({v['encoder']}), "
                     f"{v['frames']} frames, median of {v['rounds']} round(s)):"]
            for r in v["rows"]:
                lines.append(f"  {r['transport']:<22} {r['fps']:8.1f} frames/s  {r['cpu_ms_per_frame']:7.2f} ms "
                             f"CPU/frame  verified {r['verified']}, errors {r['errors']}")
            if v.get("vs_queue"):
                lines.append(f"  shmchan is {v['vs_queue']:.2f}x the frames/s of multiprocessing.Queue and "
                             f"{v['vs_one_process']:.2f}x the same work in one process")
            parts.append("\n".join(lines))
    return parts
