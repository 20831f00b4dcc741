"""The Python peer of the cross-language tests: the same command line as the Rust and C++ peers.

    python tests/interop_peer.py producer|consumer NAME [--create] [--frames N] [--width W]
        [--height H] [--format RGB24|...] [--capacity C] [--schema frame|frame_next|frame_incompatible|none]
        [--slot-size BYTES] [--shape A,B,C] [--dtype uint8] [--meta KEY=VALUE]... [--verify crc|stamp|none]
        [--hold] [--timeout SECONDS]

Prints "ready" once the channel is open, then "done frames=N crc=XXXXXXXX seconds=S fps=F
[errors=E]"; errors print "error <tag>: ..." and exit 3 (incompatible schema), 4 (peer dead),
5 (timeout). The pixel test pattern: byte i of frame seq is 7*i + (i >> 10) + 13*seq (mod 256).
"""

from __future__ import annotations

import argparse
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

import shmchan
from shmchan import schema as S

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = {
    "frame": "frame",
    "tensor": "tensor",
    "frame_next": str(ROOT / "schemas" / "bfbs" / "frame_next.bfbs"),
    "frame_incompatible": str(ROOT / "schemas" / "bfbs" / "frame_incompatible.bfbs"),
}


def pattern_base(n: int) -> npt.NDArray[np.uint8]:
    """7*i + (i >> 10) (mod 256) for i < n."""
    i = np.arange(n, dtype=np.uint64)
    return ((i * np.uint64(7) + (i >> np.uint64(10))) & np.uint64(0xFF)).astype(np.uint8)


def say(*words: object) -> None:
    print(*words, flush=True)


def die(tag: str, exc: BaseException, code: int) -> None:
    say(f"error {tag}: {exc}")
    print(f"{tag}: {exc}", file=sys.stderr, flush=True)
    sys.exit(code)


def wait_for_exit() -> None:
    for line in sys.stdin:
        if line.strip() == "exit":
            return


def channel(a: argparse.Namespace) -> shmchan.Channel:
    spec = None if a.schema == "none" else SCHEMAS[a.schema]
    if a.create:
        # sized like the C++ and Rust peers: for frames without the media fields, which it never writes
        size = a.slot_size or S.frame_message_size(a.width, a.height, a.format, media_fields=False)
        meta = dict(kv.split("=", 1) for kv in a.meta)
        shape = tuple(int(d) for d in a.shape.split(",")) if a.shape else None
        return shmchan.Channel.create(a.name, slot_size=size, capacity=a.capacity, schema=spec,
                                      dtype=a.dtype, shape=shape, metadata=meta or None)
    try:
        return shmchan.Channel.open(a.name, timeout=5.0, schema=spec)
    except shmchan.IncompatibleChannelError as exc:
        die("incompatible", exc, 3)
        raise


def producer(a: argparse.Namespace) -> None:
    fmt = S.PixelFormat.parse(a.format)
    ch = channel(a)
    say("ready")
    frames = 100 if a.frames is None else a.frames
    crc = 0
    base: Any = None
    w = ch.writer()
    start = time.perf_counter()
    try:
        for seq in range(frames):
            with w.reserve_frame(a.width, a.height, fmt, seq=seq, timeout=a.timeout) as fs:
                px = fs.pixels.reshape(-1)
                if base is None:
                    base = pattern_base(px.size)
                np.add(base, np.uint8((seq * 13) & 0xFF), out=px)
                if a.verify == "crc":
                    crc = zlib.crc32(px, crc)
                del px
    except shmchan.PeerDeadError as exc:
        die("peer-dead", exc, 4)
    except shmchan.ChannelTimeoutError as exc:
        die("timeout", exc, 5)
    secs = time.perf_counter() - start
    w.close()
    say(f"done frames={frames} crc={crc:08x} seconds={secs:.6f} fps={frames / max(secs, 1e-9):.1f}")
    if a.hold:
        wait_for_exit()
    ch.close()


def consumer(a: argparse.Namespace) -> None:
    ch = channel(a)
    r = ch.reader()
    say("ready")
    crc = n = errors = base_n = 0
    base: Any = None
    start = last = 0.0
    while a.frames is None or n < a.frames:
        try:
            msg = r.recv(timeout=a.timeout)
        except shmchan.ChannelEndedError:
            break
        except shmchan.PeerDeadError as exc:
            die("peer-dead", exc, 4)
            raise
        except shmchan.ChannelTimeoutError as exc:
            die("timeout", exc, 5)
            raise
        if n == 0:
            start = time.perf_counter()
        with msg:
            f = msg.frame()
            if f.seq != n:
                errors += 1
                print(f"frame {n}: seq {f.seq}", file=sys.stderr)
            px = f.pixels.reshape(-1)
            if a.verify == "crc":
                crc = zlib.crc32(px, crc)
            elif a.verify == "stamp":
                if base is None or base_n != px.size:
                    base, base_n = pattern_base(px.size)[::4096].copy(), px.size
                k = np.uint8((f.seq * 13) & 0xFF)
                if not np.array_equal(px[::4096], base + k):
                    errors += 1
            del f, px
        n += 1
        last = time.perf_counter()
    secs = last - start if n else 0.0
    fps = (n - 1) / max(secs, 1e-9) if n > 1 else 0.0
    say(f"done frames={n} crc={crc:08x} seconds={secs:.6f} fps={fps:.1f} errors={errors}")
    r.close()
    if a.hold:
        wait_for_exit()
    ch.close()
    sys.exit(1 if errors else 0)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("role", choices=["producer", "consumer"])
    p.add_argument("name")
    p.add_argument("--create", action="store_true")
    p.add_argument("--hold", action="store_true")
    p.add_argument("--frames", type=int)
    p.add_argument("--width", type=int, default=1920)
    p.add_argument("--height", type=int, default=1080)
    p.add_argument("--format", default="RGB24")
    p.add_argument("--capacity", type=int, default=8)
    p.add_argument("--schema", default="frame", choices=[*SCHEMAS, "none"])
    p.add_argument("--slot-size", type=int, default=0)
    p.add_argument("--shape")
    p.add_argument("--dtype")
    p.add_argument("--meta", action="append", default=[])
    p.add_argument("--verify", default="crc", choices=["crc", "stamp", "none"])
    p.add_argument("--timeout", type=float)
    a = p.parse_args(argv)
    (producer if a.role == "producer" else consumer)(a)


if __name__ == "__main__":
    main()
