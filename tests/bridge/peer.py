"""Producer and consumer processes of the bridge tests: ``python tests/bridge/peer.py MODE ARGS...``.

They talk to the test in lines on stdout ("ready", "progress N", a final JSON object) and read
"go" / "exit" on stdin. Messages are checksummed: a small message is its position and a CRC of a
body derived from the position; a large one is a numpy pattern of the position, checked whole.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import struct
import sys
import threading
import time
import zlib
from typing import Any

import numpy as np

import shmchan
from shmchan.schema import frame_message_size

HEAD = struct.Struct("<QI")  # position, crc32 of the body
_BASE = bytes(range(256)) * 4


def small(seq: int) -> bytes:
    """Message ``seq`` of a small stream: 12 to 76 bytes."""
    n = seq % 65
    o = (seq * 7) % 256
    body = _BASE[o : o + n]
    return HEAD.pack(seq, zlib.crc32(body, seq & 0xFFFFFFFF)) + body


def check_small(data: bytes) -> int:
    """The position of a small message; raises ValueError if it is not one."""
    seq, crc = HEAD.unpack_from(data)
    if data != small(seq) or zlib.crc32(data[HEAD.size :], seq & 0xFFFFFFFF) != crc:
        raise ValueError(f"message {seq} is corrupt")
    return int(seq)


def large(seq: int, size: int) -> np.ndarray:
    """Message ``seq`` of a large stream: ``size`` bytes (a multiple of 8), every word set by seq."""
    words = np.arange(size // 8, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    words += np.uint64(seq)
    words[0] = np.uint64(seq)
    return words


def say(*words: object) -> None:
    print(*words, flush=True)


def wait_line(word: str) -> None:
    for line in sys.stdin:
        if line.strip() == word:
            return


def make(args: argparse.Namespace) -> shmchan.Channel:
    if args.kind == "spsc":
        return shmchan.Channel.create(args.name, slot_size=args.slot, capacity=args.capacity)
    if args.kind == "frames":
        return shmchan.Channel.create(args.name, slot_size=frame_message_size(args.width, args.height, "RGB24"),
                                      capacity=args.capacity, schema="frame", metadata={"camera": "bridge-test"})
    if args.kind in ("block", "overwrite"):
        return shmchan.Broadcast.create(args.name, slot_size=args.slot, capacity=args.capacity, policy=args.kind,
                                        max_readers=4)
    return shmchan.State.create(args.name, dtype=np.dtype((np.uint64, (args.slot // 8,))),
                                metadata={"what": "bridge-test"})


def send(w: shmchan.Writer, data: Any) -> None:
    """Send, waiting for a new reader when the one there died with the ring full (a killed exporter)."""
    while True:
        try:
            w.send(data)
            return
        except shmchan.PeerDeadError:
            time.sleep(0.01)


def produce(args: argparse.Namespace) -> None:
    """Create the channel, say ready, wait for "go", write ``count`` messages, close the writer,
    say the report, wait for "exit" (then the channel is removed)."""
    with make(args) as ch:
        w = ch.writer()
        say("ready")
        wait_line("go")
        digest = hashlib.blake2b(digest_size=16)
        t0 = time.perf_counter()
        for i in range(args.count):
            if args.kind == "state":
                w.write(np.full(args.slot // 8, i + 1, dtype=np.uint64))  # version i + 1
            elif args.kind == "frames":
                with w.reserve_frame(args.width, args.height, "RGB24", seq=i) as f:
                    f.pixels[:] = (i * 3) % 251
                    f.pixels[:, :, 0] = ((np.arange(args.width) + i) % 256).astype(np.uint8)[None, :]
                    digest.update(f.pixels.tobytes())
            else:
                send(w, small(i) if args.slot <= 128 else large(i, args.slot))
            if args.pace:
                time.sleep(args.pace)
        secs = time.perf_counter() - t0
        w.close()
        say(json.dumps({"sent": args.count, "seconds": secs, "digest": digest.hexdigest()}))
        wait_line("exit")


def _open(name: str, timeout: float) -> shmchan.Channel:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return shmchan.Channel.open(name)
        except shmchan.ChannelNotFoundError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _check(args: argparse.Namespace, msg: shmchan.Message, digest: Any) -> int:
    """The position a received message says it has, after checking all of it (ValueError)."""
    with msg:
        try:
            if args.kind == "frames":
                f = msg.frame()
                seq = int(f.seq)
                digest.update(f.pixels.tobytes())
                del f
            elif args.slot <= 128:
                seq = check_small(bytes(msg.buffer))
            else:
                arr = msg.ndarray(dtype=np.uint64)
                seq = int(arr[0])
                ok = np.array_equal(arr, large(seq, args.slot))
                del arr
                if not ok:
                    raise ValueError(f"message {seq} is corrupt")
        except ValueError:
            if not msg.intact:  # torn because the writer lapped us, not corrupt
                raise shmchan.LappedError("overwritten while it was read") from None
            raise
    return seq


def consume(args: argparse.Namespace) -> None:
    """Read the channel until the end of the stream (or ``count`` messages), check every message and
    the order, and print a JSON report. A writer that died (a killed importer) is waited for."""
    ch = _open(args.name, 20)
    rep: dict[str, Any] = {"received": 0, "corrupt": 0, "out_of_order": 0, "gaps": 0, "first": None, "last": None,
                           "local_lost": 0, "frames_digest": None}
    digest = hashlib.blake2b(digest_size=16)
    with ch:
        r = ch.reader(start="oldest") if isinstance(ch, shmchan.Broadcast) else ch.reader()
        say("ready")
        last = -1
        deadline = time.monotonic() + args.timeout
        while args.count < 0 or rep["received"] < args.count:
            if time.monotonic() > deadline:
                rep["timeout"] = True
                break
            try:
                msg = r.recv(timeout=0.5)
            except shmchan.ChannelEndedError:
                break
            except shmchan.ChannelTimeoutError:
                continue
            except shmchan.PeerDeadError:
                time.sleep(0.05)  # the importer was killed: a new one attaches and goes on
                continue
            try:
                seq = _check(args, msg, digest)
            except ValueError:
                rep["corrupt"] += 1
                continue
            except shmchan.LappedError:
                continue  # overwritten while held (overwrite policy): counted in r.lost, not received
            if seq <= last:
                rep["out_of_order"] += 1
            elif seq != last + 1 and last >= 0:
                rep["gaps"] += 1
            if rep["first"] is None:
                rep["first"] = seq
            last = max(last, seq)
            rep["last"] = last
            rep["received"] += 1
            if args.progress and rep["received"] % args.progress == 0:
                say("progress", rep["received"])
        rep["local_lost"] = r.lost
    rep["frames_digest"] = digest.hexdigest()
    say(json.dumps(rep))


def watch_state(args: argparse.Namespace) -> None:
    """Read a state board until it holds version ``count``; every value read must be whole (every
    element equal to its version). Prints a JSON report."""
    ch = _open(args.name, 20)
    assert isinstance(ch, shmchan.State)
    rep: dict[str, Any] = {"reads": 0, "torn": 0, "final": None}
    with ch:
        say("ready")
        version = 0
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            value, version = ch.read()
            if value is not None:
                rep["reads"] += 1
                if not np.all(value == value[0]):
                    rep["torn"] += 1
                rep["final"] = int(value[0])
                if rep["final"] == args.count:
                    break
            try:
                ch.wait_for_change(version, timeout=0.2)
            except (shmchan.ChannelTimeoutError, shmchan.PeerDeadError):
                time.sleep(0.01)
    say(json.dumps(rep))


def api(args: argparse.Namespace) -> None:
    """Both bridges in this process through the Python API: a channel goes through the exporter
    and the importer, then both close; report what came through and what is left running."""
    from shmchan import bridge

    endpoint = f"tcp/127.0.0.1:{args.port}"
    src = shmchan.Channel.create(args.name, slot_size=128, capacity=64)
    dst_name = f"{args.name}-in"
    threads_before = set(threading.enumerate())
    with bridge.export(args.name, key=f"test/{args.name}", listen=[endpoint]) as ex, \
            bridge.import_(f"test/{args.name}", dst_name, connect=[endpoint], persist=False) as im:
        assert im.wait_ready(10)
        with shmchan.Channel.open(dst_name) as dst:
            r = dst.reader()
            w = src.writer()
            got = []
            for i in range(args.count):
                w.send(small(i))
            w.close()
            for msg in r:
                with msg:
                    got.append(check_small(bytes(msg.buffer)))
            r.close()
        running = (ex.running, im.running)
        stats = (ex.stats(), im.stats())
    ex.close()  # idempotent
    im.close()
    src.close()
    left = [t.name for t in set(threading.enumerate()) - threads_before if t.name.startswith("shmchan-bridge")]
    say(json.dumps({"received": got == list(range(args.count)), "running": running, "left": left,
                    "exported": stats[0].messages, "imported": stats[1].messages,
                    "after_close": (ex.running, im.running), "errors": [repr(ex.error), repr(im.error)]}))


def hostile(args: argparse.Namespace) -> None:
    """Publish malformed samples on a key (no header, a bad magic, unknown flags, a payload larger
    than any slot, an unknown stream), then say done."""
    import zenoh

    from shmchan.bridge import zenoh_config

    cfg = zenoh_config("import", connect=[f"tcp/127.0.0.1:{args.port}"])
    with zenoh.open(cfg) as s:
        pub = s.declare_publisher(args.key, congestion_control=zenoh.CongestionControl.BLOCK)
        deadline = time.monotonic() + 10
        while not pub.matching_status.matching and time.monotonic() < deadline:
            time.sleep(0.01)
        say("ready")
        wait_line("go")
        pub.put(b"no header")
        pub.put(b"bad magic", attachment=struct.pack("<4sIQQ", b"XXXX", 0, 1, 2))
        pub.put(b"flags", attachment=struct.pack("<4sIQQ", b"SHB1", 0x80, 1, 2))
        pub.put(b"short", attachment=b"SHB1")
        stream = int(args.stream)
        pub.put(b"x" * (args.slot + 1), attachment=struct.pack("<4sIQQ", b"SHB1", 0, stream, 1 << 40))
        time.sleep(0.5)
        say("done")
        wait_line("exit")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["produce", "consume", "watch-state", "api", "hostile"])
    p.add_argument("name")
    p.add_argument("--kind", default="spsc", choices=["spsc", "frames", "block", "overwrite", "state"])
    p.add_argument("--count", type=int, default=-1)
    p.add_argument("--slot", type=int, default=128)
    p.add_argument("--capacity", type=int, default=64)
    p.add_argument("--width", type=int, default=1920)
    p.add_argument("--height", type=int, default=1080)
    p.add_argument("--pace", type=float, default=0.0)
    p.add_argument("--progress", type=int, default=0)
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--key", default="")
    p.add_argument("--stream", default="0")
    args = p.parse_args()
    modes = {"produce": produce, "consume": consume, "watch-state": watch_state, "api": api, "hostile": hostile}
    modes[args.mode](args)
    if args.mode in ("api", "hostile"):
        # everything is closed; skip the interpreter's shutdown, during which a process that had a
        # Zenoh session sometimes aborts (zenoh-python 1.10.2; docs/bridge.md, Limits)
        sys.stdout.flush()
        os._exit(0)


if __name__ == "__main__":
    main()
