"""Camera-style capture with OpenCV -> one Broadcast channel -> several viewers.

    python examples/camera_broadcast.py [SOURCE] [--viewers 3] [--frames N]

OpenCV's VideoCapture (a camera index such as 0, or a file; without one, a clip encoded here with
PyAV plays the camera) decodes every frame straight into a slot of an overwrite Broadcast
(shmchan.media.capture_into: ``VideoCapture.read(image=...)`` writes into the slot). Each viewer is
its own process: it takes the freshest frames, converts them for display-like work with OpenCV,
counts what it saw and what it missed (``msg.lost``) and checks every frame it read was intact.
Needs shmchan[media].
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2

import shmchan
from shmchan.media import capture_into
from shmchan.media.pipeline import make_test_video


def viewer(name: str, idx: int, ready: mp.synchronize.Event, out: mp.Queue) -> None:  # type: ignore[type-arg]
    seen = lost = torn = 0
    with shmchan.Broadcast.open(name, timeout=10, schema="frame") as ch, ch.reader(start="oldest") as r:
        ready.set()
        while True:
            try:
                msg = r.recv(timeout=5)
            except shmchan.ChannelEndedError:
                break
            lost += msg.lost
            try:
                with msg:
                    f = msg.frame()
                    small = cv2.resize(f.pixels, (f.width // 4, f.height // 4))  # what a viewer would draw
                    gray = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
                    del f, small
                seen += 1
                del gray
            except shmchan.LappedError:
                torn += 1  # the writer rewrote the slot while we read it: dropped, never shown torn
    out.put((idx, seen, lost, torn))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", nargs="?")
    ap.add_argument("--viewers", type=int, default=3)
    ap.add_argument("--frames", type=int, default=120)
    a = ap.parse_args()
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        src = a.source or str(make_test_video(Path(tmp) / "camera.mp4", 640, 480, a.frames))
        cap = cv2.VideoCapture(int(src) if src.isdigit() else src)
        if not cap.isOpened():
            sys.exit(f"cannot open {src}")
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        name = f"example-camera-{os.getpid()}"
        size = shmchan.frame_message_size(w, h, "BGR24")
        with shmchan.Broadcast.create(name, slot_size=size, capacity=8, max_readers=a.viewers, policy="overwrite",
                                      schema="frame") as cam:
            out = ctx.Queue()
            readies = [ctx.Event() for _ in range(a.viewers)]
            procs = [ctx.Process(target=viewer, args=(name, i, readies[i], out)) for i in range(a.viewers)]
            for p in procs:
                p.start()
            for e in readies:
                e.wait(30)
            sent = 0
            t0 = time.monotonic()
            with cam.writer() as wr:
                while sent < a.frames and capture_into(wr, cap):
                    sent += 1
            secs = time.monotonic() - t0
            results = sorted(out.get(timeout=60) for _ in procs)
            for p in procs:
                p.join(10)
        cap.release()
    print(f"captured {sent} frames of {w}x{h} in {secs:.2f} s ({sent / max(secs, 1e-9):.0f} frames/s)")
    ok = sent > 0
    for idx, seen, lost, torn in results:
        print(f"viewer {idx}: saw {seen}, missed {lost} (overwritten before it looked), dropped {torn} torn")
        ok = ok and seen > 0 and seen + lost + torn <= sent and seen + lost + torn >= sent - 8
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
