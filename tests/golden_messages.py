"""The golden Frame, Packet and Audio messages (schemas/golden/*.bin): what Python writes for fixed
values. ``python tests/golden_messages.py`` rewrites them; tests check that Python still writes exactly
these bytes and that the C++ and Rust peers (and release 1's Frame reader) decode them."""

from __future__ import annotations

import sys
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

import shmchan
from shmchan import schema as S

GOLDEN = Path(__file__).resolve().parent.parent / "schemas" / "golden"
TS = 1_700_000_000_123_456_789


def _pattern(n: int, k: int) -> Any:
    return ((np.arange(n, dtype=np.uint32) * 7 + k) % 256).astype(np.uint8)


def _frame(w: shmchan.Writer) -> None:
    with w.reserve_frame(6, 4, "yuv420p", seq=41, timestamp_ns=TS, pts=-1001, time_base=Fraction(1, 30000),
                         duration=1001, keyframe=True, color_matrix="BT709", color_range="Limited",
                         color_primaries="BT709", color_transfer="BT709", sample_aspect_ratio=(4, 3), rotation=90,
                         field_order="TopFirst") as fs:
        px = fs.pixels
        px.reshape(-1)[:] = _pattern(px.size, 3)
        del px


def _packet(w: shmchan.Writer) -> None:
    S.send_packet(w, _pattern(100, 5).tobytes(), "h264", seq=42, timestamp_ns=TS + 1, pts=3003, dts=-1001,
                  duration=1001, time_base=(1, 30000), keyframe=True, extradata=bytes.fromhex("01640028ffe1"),
                  width=1280, height=720)


def _audio(w: shmchan.Writer) -> None:
    with S.reserve_audio(w, 5, "fltp", 2, 48000, channel_layout="stereo", pts=-1024, time_base=(1, 48000), seq=43,
                         timestamp_ns=TS + 2) as a:
        a.array[:] = np.arange(10, dtype=np.float32).reshape(2, 5) / 8
        del a


MESSAGES: dict[str, Callable[[shmchan.Writer], None]] = {"frame_v2": _frame, "packet": _packet, "audio": _audio}


def make(name: str, which: str) -> bytes:
    """The bytes Python writes for golden message ``which``, through a real channel named ``name``."""
    with shmchan.Channel.create(name, slot_size=4096, capacity=2) as ch:
        w, r = ch.writer(), ch.reader()
        MESSAGES[which](w)
        with r.recv(timeout=1) as msg:
            return msg.tobytes()


if __name__ == "__main__":
    for which in MESSAGES:
        (GOLDEN / f"{which}.bin").write_bytes(make(f"golden-{which}", which))
        print(f"wrote {GOLDEN / which}.bin", file=sys.stderr)
