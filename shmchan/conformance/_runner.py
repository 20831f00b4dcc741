"""Scenarios of the conformance kit and the verdict per rule (docs/conformance.md)."""

from __future__ import annotations

import contextlib
import fnmatch
import itertools
import os
import shutil
import statistics
import struct
import tempfile
import time
import traceback
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import shmchan
from shmchan.schema import PayloadSchema, frame_message_size, frame_schema

from ._patterns import COUNTER, counter_value, frame_base, frame_offset, message_bytes, message_check
from ._peer import Peer, PeerError

_names = itertools.count()

#: every rule of docs/protocol.md (R1 ... R49)
RULES = [f"R{i}" for i in range(1, 50)]


@dataclass
class Outcome:
    """One scenario's result."""

    name: str
    title: str
    rules: list[str]
    passed: bool
    seconds: float
    detail: str = ""


@dataclass
class Report:
    """Every scenario's outcome and the verdict per rule: ``pass``, ``FAIL`` or ``not covered``."""

    peer: list[str]
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.outcomes) and all(o.passed for o in self.outcomes)

    def verdicts(self) -> dict[str, str]:
        out = {}
        for rule in RULES:
            cited = [o for o in self.outcomes if rule in o.rules]
            out[rule] = "not covered" if not cited else "pass" if all(o.passed for o in cited) else "FAIL"
        return out


class Ctx:
    """What a scenario gets: the peer command, unique names, and cleanup of what it made."""

    def __init__(self, peer: list[str], quick: bool, prefix: str) -> None:
        self.peer = peer
        self.quick = quick
        self.prefix = prefix
        self.peers: list[Peer] = []
        self.names: list[str] = []
        self.dirs: list[str] = []

    def name(self) -> str:
        n = f"{self.prefix}{next(_names)}"
        self.names.append(n)
        return n

    def path(self) -> str:
        d = tempfile.mkdtemp(prefix="shmchan-conform-")
        self.dirs.append(d)
        return os.path.join(d, "channel")

    def start(self, *args: str) -> Peer:
        p = Peer(self.peer, list(args))
        self.peers.append(p)
        return p

    def n(self, full: float, quick: float) -> str:
        """``full`` or (quick run) ``quick``, as a command-line word."""
        return f"{quick if self.quick else full:g}"

    def count(self, full: int, quick: int) -> int:
        return quick if self.quick else full

    def cleanup(self) -> None:
        for p in self.peers:
            p.close()
        for n in self.names:
            with contextlib.suppress(shmchan.ShmchanError, OSError):
                shmchan.unlink(n)
        for d in self.dirs:
            shutil.rmtree(d, ignore_errors=True)


def check(cond: bool, what: str) -> None:
    """A scenario's assertion: PeerError (the scenario fails) with ``what`` unless ``cond``."""
    if not cond:
        raise PeerError(what)


Scenario = tuple[str, str, list[str], Callable[[Ctx], str]]
SCENARIOS: list[Scenario] = []


def scenario(name: str, title: str, rules: str) -> Callable[[Callable[[Ctx], str]], Callable[[Ctx], str]]:
    def wrap(fn: Callable[[Ctx], str]) -> Callable[[Ctx], str]:
        SCENARIOS.append((name, title, rules.split(), fn))
        return fn

    return wrap


# ---- SPSC frames ----

FRAME_ARGS = {"small": (8, 8, "GRAY8"), "large": (1024, 1024, "GRAY8")}


def frame_args(size: str) -> list[str]:
    w, h, fmt = FRAME_ARGS[size]
    return ["--width", str(w), "--height", str(h), "--format", fmt]


def py_produce(ch: shmchan.Channel, size: str, frames: int, *, spin: float | None = None,
               hold_before_commit: float = 0.0, timings: list[float] | None = None) -> int:
    """Write ``frames`` pattern frames; return the crc32 of their pixels."""
    w_, h_, fmt = FRAME_ARGS[size]
    base = frame_base(w_ * h_)
    crc = 0
    w = ch.writer(spin=spin)
    t_commit = 0.0
    for seq in range(frames):
        with w.reserve_frame(w_, h_, fmt, seq=seq, timeout=30.0) as f:
            if timings is not None and seq > 0:
                timings.append(time.monotonic() - t_commit)
            px = f.pixels.reshape(-1)
            np.add(base, frame_offset(seq), out=px)
            crc = zlib.crc32(px.data, crc)
            del px
            if hold_before_commit:
                time.sleep(hold_before_commit)
        del f  # its views pin the slot, and capacity may be 1
        t_commit = time.monotonic()
    w.close()
    return crc


def py_consume(ch: shmchan.Channel, size: str, *, expect: int | None = None, spin: float | None = None,
               hold: float = 0.0, timings: list[float] | None = None, stop_on_dead: bool = False,
               timeout: float = 30.0) -> tuple[int, int, str]:
    """Read pattern frames until the end (or a dead writer); check each; (frames, crc, how it ended)."""
    w_, h_, _ = FRAME_ARGS[size]
    base = frame_base(w_ * h_)
    r = ch.reader(spin=spin)
    n, crc, how = 0, 0, "ended"
    t_release = 0.0
    while expect is None or n < expect:
        try:
            msg = r.recv(timeout=timeout)
        except shmchan.ChannelEndedError:
            break
        except shmchan.PeerDeadError:
            if not stop_on_dead:
                raise
            how = "dead"
            break
        if timings is not None and n > 0:
            timings.append(time.monotonic() - t_release)
        with msg:
            f = msg.frame()
            check(f.seq == n, f"frame {n} has seq {f.seq}")
            px = f.pixels.reshape(-1)
            check(bool(np.array_equal(px, base + frame_offset(n))), f"frame {n}: wrong pixels")
            crc = zlib.crc32(px.data, crc)
            del f, px
            if hold:
                time.sleep(hold)
        t_release = time.monotonic()
        n += 1
    r.close()
    return n, crc, how


def frame_channel(ctx: Ctx, size: str, capacity: int, name: str | None = None, **kw: Any) -> shmchan.Channel:
    w, h, fmt = FRAME_ARGS[size]
    return shmchan.Channel.create(name if name is not None else ctx.name(), slot_size=frame_message_size(w, h, fmt),
                                  capacity=capacity, schema="frame", **kw)


def _py_to_peer(ctx: Ctx, size: str, frames: int) -> str:
    with frame_channel(ctx, size, 16) as ch:
        assert ch.name is not None
        p = ctx.start("consume", ch.name, *frame_args(size), "--timeout", "30")
        p.expect("ready")
        crc = py_produce(ch, size, frames)
        d = p.done()
    check(int(d["frames"]) == frames and d["errors"] == "0", f"the peer got {d}")
    check(int(d["crc"], 16) == crc, f"crc {d['crc']} != {crc:08x}")
    return f"{frames} frames, crc {crc:08x}"


def _peer_to_py(ctx: Ctx, size: str, frames: int) -> str:
    name = ctx.name()
    p = ctx.start("produce", name, "--create", "--frames", str(frames), "--capacity", "16", *frame_args(size),
                  "--hold")
    p.expect("ready")
    with shmchan.Channel.open(name, schema="frame", timeout=10) as ch:
        n, crc, _ = py_consume(ch, size)
    d = fields_of(p.expect("done"))
    p.send("exit")
    p.finish()
    check(n == frames == int(d["frames"]), f"received {n} of {frames} ({d})")
    check(int(d["crc"], 16) == crc, f"crc {d['crc']} != {crc:08x}")
    return f"{frames} frames, crc {crc:08x}"


def fields_of(line: str) -> dict[str, str]:
    return dict(w.split("=", 1) for w in line.split()[1:] if "=" in w)


@scenario("spsc-py-to-peer-small", "SPSC, Python writes 64-byte frames, the peer reads and checksums them",
          "R1 R2 R3 R7 R9 R11 R12 R15 R22 R23 R24 R25 R29 R31")
def _s1(ctx: Ctx) -> str:
    return _py_to_peer(ctx, "small", ctx.count(200_000, 20_000))


@scenario("spsc-py-to-peer-large", "SPSC, Python writes 1 MiB frames, the peer reads and checksums them",
          "R10 R24 R25")
def _s2(ctx: Ctx) -> str:
    return _py_to_peer(ctx, "large", ctx.count(500, 100))


@scenario("spsc-peer-to-py-small", "SPSC, the peer creates and writes 64-byte frames, Python checks every one",
          "R4 R5 R6 R10 R14 R16 R24 R32 R47 R48 R49")
def _s3(ctx: Ctx) -> str:
    return _peer_to_py(ctx, "small", ctx.count(200_000, 20_000))


@scenario("spsc-peer-to-py-large", "SPSC, the peer writes 1 MiB frames, Python checks every one", "R10 R24")
def _s4(ctx: Ctx) -> str:
    return _peer_to_py(ctx, "large", ctx.count(500, 100))


# ---- wake-ups ----

WAKE_LIMIT = 0.02  # a wake-up that took a 100 ms futex slice instead of a FUTEX_WAKE shows here


@scenario("wake-peer-wakes-python", "a sleeping Python reader and writer are woken by the peer's commits and "
          "waits (capacity 1, Python holds each frame 30 ms)", "R19 R20 R21 R22 R24")
def _s5(ctx: Ctx) -> str:
    name = ctx.name()
    frames = 21
    p = ctx.start("produce", name, "--create", "--frames", str(frames), "--capacity", "1", *frame_args("small"),
                  "--hold")
    p.expect("ready")
    times: list[float] = []
    with shmchan.Channel.open(name, schema="frame", timeout=10) as ch:
        n, _, _ = py_consume(ch, "small", spin=0.0, hold=0.03, timings=times)
    p.send("exit")
    p.finish()
    check(n == frames, f"received {n} of {frames}")
    med = statistics.median(times)
    check(med < WAKE_LIMIT, f"median {med * 1e3:.1f} ms from a release to the next frame: the peer's writer "
          "did not sleep on tail_wake or its commit did not wake the reader")
    return f"release -> next frame median {med * 1e3:.2f} ms"


@scenario("wake-python-wakes-peer", "a sleeping peer reader is woken by Python's commits and wakes the sleeping "
          "Python writer with its release (capacity 1)", "R19 R20 R21 R22 R25")
def _s6(ctx: Ctx) -> str:
    frames = 21
    times: list[float] = []
    with frame_channel(ctx, "small", 1) as ch:
        assert ch.name is not None
        p = ctx.start("consume", ch.name, *frame_args("small"), "--timeout", "30")
        p.expect("ready")
        py_produce(ch, "small", frames, spin=0.0, hold_before_commit=0.03, timings=times)
        d = p.done()
    check(int(d["frames"]) == frames, f"the peer got {d}")
    med = statistics.median(times)
    check(med < WAKE_LIMIT, f"median {med * 1e3:.1f} ms from a commit to the release that frees the slot")
    return f"commit -> release median {med * 1e3:.2f} ms"


# ---- dead peers, take-over, end of stream ----


@scenario("kill-peer-writer", "the peer's writer is killed: Python gets every committed frame, then PeerDeadError "
          "within a slice; a new peer writer takes over", "R11 R12 R14 R17 R18 R28")
def _s7(ctx: Ctx) -> str:
    with frame_channel(ctx, "small", 8) as ch:
        assert ch.name is not None
        p = ctx.start("produce", ch.name, *frame_args("small"), "--frames", "100000000", "--timeout", "60")
        p.expect("ready")
        r = ch.reader()
        base = frame_base(64)
        for n in range(50):
            with r.recv(timeout=10) as msg:
                check(msg.frame().seq == n, f"frame {n}")
        p.kill()
        n, t0 = 50, time.monotonic()
        try:
            while True:
                with r.recv(timeout=10) as msg:
                    f = msg.frame()
                    check(f.seq == n and bool(np.array_equal(f.pixels.reshape(-1), base + frame_offset(n))),
                          f"frame {n} after the kill")
                    del f
                n += 1
        except shmchan.PeerDeadError:
            took = time.monotonic() - t0
        check(took < 1.0, f"PeerDeadError after {took:.2f} s")
        check(n <= 50 + 8, f"{n} frames: more than the ring could hold at the kill")
        q = ctx.start("produce", ch.name, *frame_args("small"), "--frames", "20", "--timeout", "30")
        q.expect("ready")
        for k in range(20):
            with r.recv(timeout=10) as msg:
                check(msg.frame().seq == k, f"take-over frame {k}")
        try:
            r.recv(timeout=10)
            raise PeerError("no end of stream after the new writer closed")
        except shmchan.ChannelEndedError:
            pass
        q.done()
        r.close()
    return f"{n} frames before PeerDeadError ({took * 1e3:.0f} ms), then 20 from the new writer"


@scenario("kill-peer-reader", "the peer's reader is killed: the blocked Python writer gets PeerDeadError within a "
          "slice; a new reader gets every unreleased frame again", "R12 R15 R17 R18 R28 R30")
def _s8(ctx: Ctx) -> str:
    with frame_channel(ctx, "small", 8) as ch:
        assert ch.name is not None
        p = ctx.start("consume", ch.name, *frame_args("small"), "--timeout", "60")
        p.expect("ready")
        w = ch.writer()
        w_, h_, fmt = FRAME_ARGS["small"]
        base = frame_base(w_ * h_)

        def send(seq: int, timeout: float) -> None:
            with w.reserve_frame(w_, h_, fmt, seq=seq, timeout=timeout) as f:
                np.add(base, frame_offset(seq), out=f.pixels.reshape(-1))

        for seq in range(100):
            send(seq, 10)
        deadline = time.monotonic() + 10
        while ch.stats().tail < 100 and time.monotonic() < deadline:
            time.sleep(0.001)
        p.kill()
        tail = ch.stats().tail
        seq, t0 = 100, 0.0
        try:
            while True:
                t0 = time.monotonic()
                send(seq, 10)
                seq += 1
        except shmchan.PeerDeadError:
            took = time.monotonic() - t0
        check(took < 1.0, f"PeerDeadError after {took:.2f} s")
        check(seq - tail == 8, f"the ring held {seq - tail} frames, capacity 8")
        r = ch.reader()
        for k in range(tail, seq):
            with r.recv(timeout=5) as msg:
                check(msg.frame().seq == k, f"frame {k} delivered again")
        w.close()
        r.close()
    return f"PeerDeadError after {took * 1e3:.0f} ms; frames {tail}..{seq - 1} delivered again"


@scenario("end-of-stream", "a peer reader attaching after the writer closed drains the ring, then sees the end; "
          "with no writer ever attached it waits (times out), neither ended nor dead", "R16 R29")
def _s9(ctx: Ctx) -> str:
    with frame_channel(ctx, "small", 8) as ch:
        assert ch.name is not None
        py_produce(ch, "small", 5)
        d = ctx.start("consume", ch.name, *frame_args("small"), "--timeout", "5").done()
        check(d["frames"] == "5", f"the peer got {d}")
    with frame_channel(ctx, "small", 8) as ch:
        assert ch.name is not None
        p = ctx.start("consume", ch.name, *frame_args("small"), "--timeout", "0.3")
        rc, lines = p.finish(30)
        check(rc == 5, f"with no writer the peer exited {rc} ({lines[-1:]}), expected 5 (timeout)")
    return "drained 5 then ended; timed out with no writer"


@scenario("file-backed", "file-backed channels both ways, Python's with msync=sync", "R4 R8 R33")
def _s10(ctx: Ctx) -> str:
    path = ctx.path()
    w, h, fmt = FRAME_ARGS["small"]
    with shmchan.Channel.create(path=path, slot_size=frame_message_size(w, h, fmt), capacity=8, schema="frame",
                                msync="sync") as ch:
        p = ctx.start("consume", path, *frame_args("small"), "--timeout", "10")
        p.expect("ready")
        crc = py_produce(ch, "small", 200)
        d = p.done()
        ch.unlink()
    check(d["frames"] == "200" and int(d["crc"], 16) == crc, f"the peer got {d}")
    path2 = ctx.path()
    p = ctx.start("produce", path2, "--create", "--frames", "200", *frame_args("small"), "--hold")
    p.expect("ready")
    with shmchan.Channel.open(path=path2, schema="frame", timeout=10) as ch:
        n, crc2, _ = py_consume(ch, "small")
    d2 = fields_of(p.expect("done"))
    check(os.path.exists(path2), "the file went away before its creator let it go")
    p.send("exit")
    p.finish()
    check(n == 200 and int(d2["crc"], 16) == crc2, f"Python got {n} frames from {d2}")
    check(not os.path.exists(path2), "the creator did not remove its file when it was done with it")
    return "200 frames each way"


def evolved_frame(incompatible: bool) -> PayloadSchema:
    """Frame's schema evolved as schemas/evolution/ does, edited in its signature text: a new pixel
    format and a new trailing field (compatible), or field 3 changed (incompatible)."""
    lines = frame_schema().signature.splitlines()
    if incompatible:
        lines = [ln.replace("field 3 height uint", "field 3 rows ushort") for ln in lines]
    else:
        def extend(header: str, kind: str, item: str) -> None:
            at = lines.index(header) + 1
            while at < len(lines) and lines[at].startswith(kind + " "):
                at += 1
            last = int(lines[at - 1].split()[1])
            lines.insert(at, f"{kind} {last + 1} {item}")

        extend("enum shmchan.fb.PixelFormat ubyte", "value", "EXTRA")
        extend("table shmchan.fb.Frame", "field", "extra_ns ulong")
    sig = "\n".join(lines) + "\n"
    check(sig != frame_schema().signature, "the Frame signature changed shape; update evolved_frame")
    return PayloadSchema("shmchan.fb.Frame", "SHFR", sig)


@scenario("sealed-connect", "the peer attaches to a sealed channel Python serves on a Unix socket (one byte 'S' "
          "with the memfd), and reads every frame", "R6 R34")
def _s_sealed(ctx: Ctx) -> str:
    w, h, fmt = FRAME_ARGS["small"]
    sock = ctx.path() + ".sock"
    with shmchan.Channel.create_sealed(slot_size=frame_message_size(w, h, fmt), capacity=8) as ch, ch.serve(sock):
        rc, lines = ctx.start("open", "unix:" + sock, "--timeout", "5").finish(30)
        check(rc == 0 and bool(lines) and lines[-1].startswith("ok kind=spsc"), f"open gave {rc}: {lines[-1:]}")
        p = ctx.start("consume", "unix:" + sock, *frame_args("small"), "--schema", "none", "--timeout", "30")
        p.expect("ready")
        crc = py_produce(ch, "small", 500)
        d = p.done()
    check(d["frames"] == "500" and int(d["crc"], 16) == crc, f"the peer got {d}")
    return f"500 frames through a sealed channel, crc {crc:08x}"


@scenario("schema-evolution", "the peer accepts a compatible evolution of Frame and refuses an incompatible one",
          "R47 R48")
def _s11(ctx: Ctx) -> str:
    w, h, fmt = FRAME_ARGS["small"]
    size = frame_message_size(w, h, fmt)
    with shmchan.Channel.create(ctx.name(), slot_size=size, capacity=8, schema=evolved_frame(False)) as ch:
        assert ch.name is not None
        ch.writer().close()
        d = ctx.start("consume", ch.name, *frame_args("small"), "--schema", "frame", "--timeout", "5").done()
        check(d["frames"] == "0", f"{d}")
    with shmchan.Channel.create(ctx.name(), slot_size=size, capacity=8, schema=evolved_frame(True)) as ch:
        assert ch.name is not None
        rc, lines = ctx.start("consume", ch.name, *frame_args("small"), "--schema", "frame", "--timeout", "5").finish()
        check(rc == 3 and any(ln.startswith("error incompatible") for ln in lines),
              f"an incompatible schema gave exit {rc}: {lines[-1:]}")
    with shmchan.Channel.create(ctx.name(), slot_size=size, capacity=8, descriptor=b"not a ChannelInfo") as ch:
        assert ch.name is not None
        rc, lines = ctx.start("consume", ch.name, *frame_args("small"), "--schema", "frame", "--timeout", "5").finish()
        check(rc == 3, f"opaque descriptor bytes gave exit {rc}, expected 3 (no usable ChannelInfo)")
    return "a compatible evolution of Frame accepted; an incompatible one and opaque bytes refused"


# ---- broadcast ----


def py_bcast_writer(ch: shmchan.Broadcast, n: int, slot_size: int, *, readers: int = 0, every: int = 0,
                    between: Callable[[int], None] | None = None) -> None:
    deadline = time.monotonic() + 30
    while readers and sum(1 for p in ch.readers() if p.state == "attached") < readers:
        check(time.monotonic() < deadline, "the peer readers did not attach")
        time.sleep(0.001)
    w = ch.writer()
    for seq in range(n):
        w.send(message_bytes(seq, slot_size), timeout=30)
        if between is not None and every and seq % every == every - 1:
            between(seq)
    w.close()


def reader_done(d: dict[str, str], *, lossless: bool) -> None:
    check(d["errors"] == "0", f"reader errors: {d}")
    start, end, got, lost = int(d["start"]), int(d["end"]), int(d["messages"]), int(d["lost"])
    check(got + lost == end - start, f"delivered + lost != positions: {d}")
    if lossless:
        check(lost == 0, f"a block reader lost messages: {d}")


@scenario("bcast-block-py-writer", "broadcast, block policy: Python writes, two peer readers from the oldest and "
          "one joining mid-stream from the latest each get every message", "R35 R38 R39 R42 R44 R32")
def _s12(ctx: Ctx) -> str:
    n, slot = ctx.count(20_000, 4_000), 512
    ch = shmchan.Broadcast.create(ctx.name(), slot_size=slot, capacity=8, max_readers=4)
    with ch:
        assert ch.name is not None
        rs = [ctx.start("bcast", "reader", ch.name, "--start", "oldest", "--policy", "block", "--timeout", "30")
              for _ in range(2)]
        for r in rs:
            r.expect("ready")
        late: list[Peer] = []

        def join(seq: int) -> None:
            if not late:
                late.append(ctx.start("bcast", "reader", ch.name or "", "--start", "latest", "--timeout", "30"))
                late[0].expect("ready")

        py_bcast_writer(ch, n, slot, readers=2, every=n // 2, between=join)
        for r in rs:
            d = r.done()
            reader_done(d, lossless=True)
            check(d["messages"] == str(n), f"a reader got {d['messages']} of {n}")
        d = late[0].done()
        reader_done(d, lossless=True)
        check(int(d["end"]) == n, f"the late reader ended at {d['end']}")
    return f"{n} messages to 3 readers, the late one from {d['start']}"


@scenario("bcast-block-dead-reader", "broadcast, block policy: a peer reader killed mid-stream stops holding the "
          "Python writer back; a new reader can take its place", "R17 R36 R40 R41")
def _s13(ctx: Ctx) -> str:
    slot = 256
    ch = shmchan.Broadcast.create(ctx.name(), slot_size=slot, capacity=4, max_readers=1)
    with ch:
        assert ch.name is not None
        slow = ctx.start("bcast", "reader", ch.name, "--start", "oldest", "--delay-us", "20000", "--timeout", "30")
        slow.expect("ready")
        w = ch.writer()
        for seq in range(8):
            w.send(message_bytes(seq, slot), timeout=10)
        slow.kill()
        t0 = time.monotonic()
        for seq in range(8, 40):
            w.send(message_bytes(seq, slot), timeout=10)
        took = time.monotonic() - t0
        check(took < 2.0, f"the writer was held back {took:.2f} s by a dead reader")
        r = ctx.start("bcast", "reader", ch.name, "--start", "latest", "--timeout", "30")
        r.expect("ready")
        for seq in range(40, 60):
            w.send(message_bytes(seq, slot), timeout=10)
        w.close()
        d = r.done()
        reader_done(d, lossless=True)
    return f"the writer went on {took * 1e3:.0f} ms after the kill; the place was taken again"


@scenario("bcast-overwrite-py-writer", "broadcast, overwrite policy: Python laps a slow peer reader, which never "
          "accepts a torn message and accounts for every lost one", "R38 R42 R43 R44")
def _s14(ctx: Ctx) -> str:
    n, slot = ctx.count(20_000, 5_000), 512
    ch = shmchan.Broadcast.create(ctx.name(), slot_size=slot, capacity=4, max_readers=2, policy="overwrite")
    with ch:
        assert ch.name is not None
        r = ctx.start("bcast", "reader", ch.name, "--start", "oldest", "--policy", "overwrite", "--delay-us", "50",
                      "--timeout", "30")
        r.expect("ready")
        py_bcast_writer(ch, n, slot, readers=1)
        d = r.done()
        reader_done(d, lossless=False)
    return f"delivered {d['messages']}, lost {d['lost']}, stale {d['stale']}, torn-and-flagged {d['torn']}"


@scenario("bcast-peer-writer", "broadcast: the peer writes (block, then overwrite), Python readers check every "
          "message", "R35 R37 R38 R39 R40 R42 R43 R48")
def _s15(ctx: Ctx) -> str:
    out = []
    for policy in ("block", "overwrite"):
        n, slot, name = ctx.count(20_000, 4_000), 512, ctx.name()
        p = ctx.start("bcast", "writer", name, "--create", "--policy", policy, "--messages", str(n),
                      "--slot-size", str(slot), "--capacity", "8", "--wait-readers", "2", "--hold", "--timeout", "30")
        p.expect("ready")
        chans = [shmchan.Broadcast.open(name, timeout=10) for _ in range(2)]
        got, lost = [], []
        try:
            info = chans[0].info  # CorruptChannelError when it disagrees with the header (R48)
            check(info is None or info.kind == "broadcast", f"the peer's ChannelInfo says {info}")
            readers = [c.reader(start="oldest") for c in chans]
            counts = [0, 0]
            last = [-1, -1]
            live = [True, True]
            while any(live):
                for i, r in enumerate(readers):
                    if not live[i]:
                        continue
                    try:
                        buf = r.recv_bytes(timeout=30)
                    except shmchan.ChannelEndedError:
                        live[i] = False
                        continue
                    seq = message_check(buf, slot)
                    check(isinstance(seq, int), f"reader {i}: {seq}")
                    assert isinstance(seq, int)
                    check(seq > last[i], f"reader {i}: {seq} after {last[i]}")
                    last[i] = seq
                    counts[i] += 1
            got = counts
            lost = [r.lost for r in readers]
        finally:
            for c in chans:
                c.close()
        p.expect("done")
        p.send("exit")
        p.finish()
        for i in range(2):
            check(got[i] + lost[i] == n, f"{policy}: reader {i} got {got[i]} + lost {lost[i]} of {n}")
            if policy == "block":
                check(lost[i] == 0, f"block: reader {i} lost {lost[i]}")
        out.append(f"{policy}: {got} delivered")
    return "; ".join(out)


# ---- state boards ----


@scenario("state-peer-writer", "state board: the peer publishes counter records, Python reads them never torn and "
          "sleeps on changes", "R45 R46 R47")
def _s16(ctx: Ctx) -> str:
    name = ctx.name()
    writes = ctx.count(20_000, 5_000)
    p = ctx.start("state", "writer", name, "--create", "--writes", str(writes), "--seconds", ctx.n(1, 0.3),
                  "--go", "--hold")
    p.expect("ready")
    st = shmchan.State.open(name, timeout=10)
    with st:
        check(st.dtype == COUNTER, f"the board holds {st.dtype}")
        p.send("go")
        check(st.wait_for_change(0, timeout=10) >= 1, "no first version")
        reads, version = 0, 0
        deadline = time.monotonic() + 60
        while True:
            # a peer that dies or stalls before its last record fails the scenario, never hangs it
            check(time.monotonic() < deadline and p.p.poll() is None,
                  f"no last record within 60 s (peer exit {p.p.poll()}, version {version})")
            value, v = st.read()
            if v == 0:
                continue
            check(v >= version, f"version {v} after {version}")
            want = counter_value(v, bool(value["last"]))
            check(value.tobytes() == want.tobytes(), f"version {v} torn or wrong")
            reads, version = reads + 1, v
            if value["last"]:
                break
        d = fields_of(p.expect("done"))
        check(int(d["version"]) == version, f"final version {version}, the writer says {d}")
    p.send("exit")
    p.finish()
    return f"{reads} reads up to version {version}"


@scenario("state-py-writer", "state board: Python publishes, the peer reads with waits; a board whose writer "
          "closed keeps its reader waiting", "R45 R46")
def _s17(ctx: Ctx) -> str:
    st = shmchan.State.create(ctx.name(), dtype=COUNTER)
    with st:
        assert st.name is not None
        r = ctx.start("state", "reader", st.name, "--wait", "--timeout", "30")
        r.expect("ready")
        w = st.writer()
        n = ctx.count(2_000, 500)
        for v in range(1, n + 1):
            w.write(counter_value(v, v == n))
            if v % 50 == 0:
                time.sleep(0.001)
        d = r.done()
        check(d["errors"] == "0" and int(d["last"]) == n, f"the peer read {d}")
        w.close()
    st = shmchan.State.create(ctx.name(), dtype=COUNTER)
    with st:
        assert st.name is not None
        w = st.writer()
        w.write(counter_value(1))
        w.close()
        r = ctx.start("state", "reader", st.name, "--wait", "--timeout", "0.5")
        rc, lines = r.finish(30)
        check(rc == 5, f"the reader of a closed board exited {rc} ({lines[-1:]}), expected 5 (still waiting)")
    return f"{d['versions']} versions seen; a closed board kept its reader waiting"


# ---- headers, ownership, liveness locks ----


def _mutations(hdr: bytes) -> Iterator[tuple[str, bytes, int | None]]:
    """(what, header bytes, object size or None for the original size) for every mutation."""
    fields32 = {"kind": 12, "flags": 16, "capacity": 20, "slot_align": 40, "max_readers": 640, "policy": 644}
    fields64 = {"slot_size": 24, "slot_stride": 32, "lens_offset": 48, "data_offset": 56, "total_size": 64,
                "descriptor_offset": 80, "descriptor_size": 88, "readers_offset": 648}
    yield "unchanged", hdr, None
    yield "magic zero", b"\0" * 8 + hdr[8:], None
    yield "bad magic", b"SHMCHAN2" + hdr[8:], None
    for major in (0, 2):
        yield f"major {major}", hdr[:8] + struct.pack("<H", major) + hdr[10:], None
    yield "minor 7", hdr[:10] + struct.pack("<H", 7) + hdr[12:], None
    for name, off in fields32.items():
        old = struct.unpack_from("<I", hdr, off)[0]
        for v in sorted({0, 1, 2, 3, 4, 5, 8, 1024, 1025, 1 << 24, (1 << 24) + 1, 0xFFFFFFFF, old + 1, old * 2}):
            b = bytearray(hdr)
            struct.pack_into("<I", b, off, v & 0xFFFFFFFF)
            yield f"{name} {v}", bytes(b), None
    for name, off in fields64.items():
        old = struct.unpack_from("<Q", hdr, off)[0]
        for v in sorted({0, 1, old + 1, old + 64, old + 4096, max(old - 64, 0), 1 << 40, (1 << 40) + 1, 1 << 63}):
            b = bytearray(hdr)
            struct.pack_into("<Q", b, off, v & 0xFFFFFFFFFFFFFFFF)
            yield f"{name} {v}", bytes(b), None
    yield "reserved byte 900 set", hdr[:900] + b"\x01" + hdr[901:], None
    for cut in (0, 512, 1023):
        yield f"object of {cut} bytes", hdr, cut
    yield "object one byte short", hdr, -1


def _python_verdict(name: str) -> str:
    try:
        with shmchan.Channel.open(name, timeout=0.3):
            return "ok"
    except shmchan.IncompatibleChannelError:
        return "incompatible"
    except shmchan.CorruptChannelError as exc:
        # State.open reads the board's ChannelInfo at once: a header whose slot_align no longer matches
        # the descriptor is refused there (R48), a layer above the header, which the peers' open does not read
        return "ok" if "its ChannelInfo says" in str(exc) else "corrupt"
    except shmchan.ChannelPermissionError:
        return "permission"
    except shmchan.ChannelBusyError:
        return "busy"
    except shmchan.ShmchanDecodeError:
        # the header was accepted; a state board's descriptor (mutated into garbage) could not be read as a
        # ChannelInfo, which is the descriptor's layer, not the header's (R47)
        return "ok"


@scenario("mutated-headers", "the peer and Python give the same verdict (accept, incompatible, corrupt) on "
          "mutated headers of every kind", "R3 R7 R9 R10 R32")
def _s18(ctx: Ctx) -> str:
    makers: list[Callable[[str], shmchan.Channel]] = [
        lambda n: shmchan.Channel.create(n, slot_size=100, capacity=8, descriptor=b"d" * 40),
        lambda n: shmchan.Broadcast.create(n, slot_size=5000, capacity=4, max_readers=3, policy="overwrite",
                                           descriptor=b"b" * 10),
        lambda n: shmchan.State.create(n, max_size=256),
    ]
    total, differ = 0, []
    for make in makers:
        src = make(ctx.name())
        try:
            with open(f"/dev/shm/shmchan.{src.name}", "rb") as f:
                image = f.read()
        finally:
            src.close()
        for what, hdr, size in _mutations(image[:1024]):
            name = ctx.name()
            path = f"/dev/shm/shmchan.{name}"
            body = hdr + image[1024:]
            if size is not None:
                body = body[:size] if size >= 0 else body[:-1]
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(body)
            if what == "magic zero" or (size is not None and size < 1024):
                time.sleep(0.12)  # older than an initialising creator's grace period (R7)
            py = _python_verdict(name)
            p = ctx.start("open", name, "--timeout", "0.3")
            rc, lines = p.finish(30)
            p.close()
            ctx.peers.remove(p)
            out = lines[-1] if lines else ""
            peer = "ok" if rc == 0 and out.startswith("ok") else out.split(":")[0].removeprefix("error ").strip()
            os.unlink(path)
            total += 1
            if peer != py:
                differ.append(f"{type(src).__name__} {what}: Python {py}, peer {peer!r}")
    check(not differ, f"{len(differ)} of {total} verdicts differ: " + "; ".join(differ[:8]))
    return f"{total} headers, the same verdict on each"


@scenario("foreign-and-locks", "the peer refuses a group-writable channel; a peer that holds a channel keeps it "
          "from being reclaimed, and its death makes it stale", "R6 R11 R13")
def _s19(ctx: Ctx) -> str:
    with shmchan.Channel.create(ctx.name(), slot_size=64, capacity=2, mode=0o666) as ch:
        assert ch.name is not None
        rc, lines = ctx.start("open", ch.name).finish(30)
        check(rc == 7 and lines[-1:] != [] and lines[-1].startswith("error permission"),
              f"a group-writable channel gave exit {rc}: {lines[-1:]}")
    name = ctx.name()
    p = ctx.start("produce", name, "--create", "--frames", "0", *frame_args("small"), "--hold")
    p.expect("done")
    time.sleep(0.15)
    check(shmchan.is_stale(name) is False, "a channel the peer holds open looks stale (no shared lock on byte 0)")
    p.kill()
    time.sleep(0.15)
    check(shmchan.is_stale(name) is True, "the killed peer's channel is not stale")
    check(shmchan.reclaim_stale(name) is True, "cannot reclaim the stale channel")
    return "permission refused; held while alive, stale after the kill"


# ---- running ----


def run(peer: list[str], *, quick: bool = False, only: str | None = None, prefix: str | None = None,
        progress: Callable[[Outcome], None] | None = None) -> Report:
    """Run every scenario (or those matching ``only``, a glob) against ``peer``, a command line.

    Channels are named ``prefix`` + a number (default ``conform.<pid>.``); every one is removed
    before a scenario ends. ``progress`` is called with each scenario's outcome as it ends."""
    if prefix is None:
        prefix = f"conform.{os.getpid()}."
    report = Report(peer)
    for name, title, rules, fn in SCENARIOS:
        if only and not fnmatch.fnmatch(name, only):
            continue
        ctx = Ctx(peer, quick, prefix)
        t0 = time.monotonic()
        try:
            detail = fn(ctx)
            ok = True
        except (PeerError, shmchan.ShmchanError, OSError) as exc:
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # a bug in the scenario itself is a failure too, with its trace
            ok, detail = False, f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
        finally:
            ctx.cleanup()
        out = Outcome(name, title, rules, ok, time.monotonic() - t0, detail)
        report.outcomes.append(out)
        if progress is not None:
            progress(out)
    return report
