"""PyAV decode -> shmchan -> a native (Rust or C++) consumer, every frame checked by hash.

    python examples/pyav_to_native.py [VIDEO] [--consumer rust|c] [--frames N]

Decodes VIDEO (without one, a short H.264 clip encoded here with PyAV) and writes every decoded
frame into a Frame channel (one copy per plane, FFmpeg's row padding trimmed). The consumer is the
Rust or C++ peer (build it first: see docs/interop.md); it decodes each Frame in place and prints
the crc32 of its pixel rows, which this script compares with the hash of the frame PyAV decoded.
Needs shmchan[media].
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import av

import shmchan
from shmchan.media import send_av_frame
from shmchan.media.pipeline import av_planes, frame_hash, make_test_video

ROOT = Path(__file__).resolve().parent.parent
CONSUMERS = {"rust": ROOT / "peers/rust/target/release/shmchan-consumer", "c": ROOT / "peers/c/build/shmchan-consumer"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("video", nargs="?")
    ap.add_argument("--consumer", choices=sorted(CONSUMERS), default="rust")
    ap.add_argument("--frames", type=int, default=None, help="stop after N frames")
    a = ap.parse_args()
    exe = CONSUMERS[a.consumer]
    if not exe.exists():
        sys.exit(f"{exe} is not built (see docs/interop.md)")
    with tempfile.TemporaryDirectory() as tmp:
        path = a.video or str(make_test_video(Path(tmp) / "clip.mp4", 320, 240, a.frames or 48))
        with av.open(path) as container:
            stream = container.streams.video[0]
            w, h, fmt = stream.codec_context.width, stream.codec_context.height, stream.codec_context.format.name
            name = f"example-native-{os.getpid()}"
            with shmchan.Channel.create(name, slot_size=shmchan.frame_message_size(w, h, fmt), capacity=8,
                                        schema="frame") as ch:
                peer = subprocess.Popen([str(exe), name, "--width", str(w), "--height", str(h), "--format",
                                         shmchan.schema.PixelFormat.parse(fmt).name, "--verify", "frames",
                                         "--timeout", "30"], stdout=subprocess.PIPE, text=True)
                assert peer.stdout is not None
                assert peer.stdout.readline().strip() == "ready"
                sent = []
                with ch.writer() as wr:
                    for seq, vf in enumerate(container.decode(stream)):
                        if a.frames is not None and seq >= a.frames:
                            break
                        sent.append(frame_hash(av_planes(vf)))
                        send_av_frame(wr, vf, seq=seq, timeout=30)
                got = [int(line.rsplit("crc=", 1)[1], 16) for line in peer.stdout if line.startswith("frame ")]
                peer.wait(30)
    same = sum(x == y for x, y in zip(sent, got, strict=False))
    print(f"sent {len(sent)} frames of {w}x{h} {fmt}; the {a.consumer} consumer got {len(got)}, "
          f"{same} hash-identical")
    return 0 if same == len(sent) == len(got) and peer.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
