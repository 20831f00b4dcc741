"""Soak test: writers and readers in separate processes on several channels, killed and restarted.

``python -m shmchan.soak --seconds 60`` creates ``--channels`` channels and runs one writer process
and one reader process on each. Every message carries its sequence number, its length and a CRC32
of its payload, and sequence number ``s`` is sent at stream position ``s``, so a reader can tell a
lost, repeated or torn message from a good one. Meanwhile the supervisor SIGKILLs a random writer or
reader every ``--kill-interval`` seconds (on average; a channel on which nothing arrived since its
last kill is spared until messages flow again) and starts a new one: a new writer resumes at
the channel's head (a reservation the dead one never committed is never delivered), a new reader at
its tail (messages the dead one received but never released are delivered again: "redelivered",
which is the documented at-least-once behaviour and not an error).

Readers report what they received *before* releasing it. At the end the writers close, the readers
drain the channels, and one summary line is printed: messages/s and the counts of lost, duplicated,
torn and redelivered messages and of kills. The exit status is 1 if any message was lost, duplicated
or torn. ``--inject lose|duplicate|torn`` makes the readers misreport on purpose, to check the checker.
"""

from __future__ import annotations

import argparse
import array
import os
import random
import selectors
import signal
import struct
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass, field

from . import errors as E
from .channel import Channel

__all__ = ["main"]

HEADER = struct.Struct("<QII")  # sequence number, payload length, crc32(payload, seq)
_BASE = bytes(range(256)) * 8
BATCH = 16  # messages a reader holds unreleased at most (its redelivery window)
SLOT_SIZE = 1024 + HEADER.size
CAPACITY = 32


def payload(seq: int) -> bytes:
    """The payload of message ``seq``: 16 to 1024 bytes, its length and bytes set by seq."""
    n = 16 + seq % 1009
    o = seq % 256
    return _BASE[o : o + n]


def message(seq: int) -> bytes:
    body = payload(seq)
    return HEADER.pack(seq, len(body), zlib.crc32(body, seq & 0xFFFFFFFF)) + body


# ---- the peers (run as ``python -m shmchan.soak --role writer|reader NAME ...``) ----


def _open(name: str) -> Channel:
    while True:
        try:
            return Channel.open(name, timeout=5)
        except E.ChannelNotFoundError:
            time.sleep(0.01)


def run_writer(name: str, end: float) -> None:
    """Send messages until the wall-clock time ``end``, resuming at the channel's head, then close."""
    with _open(name) as ch:
        while True:
            try:
                w = ch.writer()
                break
            except E.ChannelBusyError:  # the dead predecessor's lock is being dropped
                time.sleep(0.005)
        seq = ch.stats().head
        while time.time() < end:
            data = message(seq)
            try:
                if seq % 2:
                    w.send(data, timeout=0.5)
                else:  # in place: a kill can land between reserve and commit
                    with w.reserve(len(data), timeout=0.5) as slot:
                        slot.buffer[: len(data)] = data
            except (E.ChannelTimeoutError, E.PeerDeadError):
                continue  # reader slow or dead: the supervisor starts another one
            seq += 1
        w.close()


def run_reader(name: str, inject: str) -> None:
    """Receive until the stream ends; report each contiguous run of good messages before releasing it."""
    out = sys.stdout.buffer
    with _open(name) as ch:
        while True:
            try:
                r = ch.reader()
                break
            except E.ChannelBusyError:
                time.sleep(0.005)
        n = 0
        while True:
            try:
                msgs = r.recv_batch(BATCH, timeout=0.5)
            except (E.ChannelTimeoutError, E.PeerDeadError):
                continue  # writer slow or dead: the supervisor starts another one
            except E.ChannelEndedError:
                break
            lines = []
            run_start = run_end = -1
            for m in msgs:
                buf = m.buffer
                seq, length, crc = HEADER.unpack_from(buf)
                body = bytes(buf[HEADER.size : HEADER.size + length]) if length <= SLOT_SIZE else b""
                n += 1
                if inject == "torn" and n == 1000:
                    body = b"x" + body[1:]
                good = (m.nbytes == HEADER.size + length and seq == m.seq
                        and zlib.crc32(body, seq & 0xFFFFFFFF) == crc and body == payload(seq))
                if not good:
                    lines.append(f"T {m.seq}")
                    continue
                if inject == "lose" and n == 1000:
                    continue
                if run_start >= 0 and run_end == seq - 1:
                    run_end = seq
                else:
                    if run_start >= 0:
                        lines.append(f"R {run_start} {run_end}")
                    run_start = run_end = seq
                if inject == "duplicate" and n == 1000:
                    lines.append(f"R {seq} {seq}")
            if run_start >= 0:
                lines.append(f"R {run_start} {run_end}")
            if lines:
                out.write(("\n".join(lines) + "\n").encode())
                out.flush()
            for m in msgs:
                m.release()
            del buf, m, msgs  # a view left alive would pin its slot
    out.write(b"E\n")
    out.flush()


# ---- the supervisor ----


@dataclass
class _Peer:
    channel: int
    role: str
    proc: subprocess.Popen[bytes]
    ident: int
    killed: bool = False
    max_seq: int = -1
    buf: bytes = b""


@dataclass
class _Stream:
    """What readers of one channel reported: which instance reported each sequence number first."""

    owner: array.array[int] = field(default_factory=lambda: array.array("i"))
    received: int = 0
    duplicated: int = 0
    redelivered: int = 0
    torn: int = 0
    ended: bool = False


class _Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.sel = selectors.DefaultSelector()
        self.peers: dict[int, _Peer] = {}
        self.by_ident: dict[int, _Peer] = {}
        self.next_ident = 1
        self.kills = {"writer": 0, "reader": 0}
        self.names = [f"soak-{os.getpid()}-{i}" for i in range(args.channels)]
        self.streams = [_Stream() for _ in self.names]
        self.writers: dict[int, _Peer] = {}
        self.readers: dict[int, _Peer] = {}

    def spawn(self, channel: int, role: str, end: float) -> _Peer:
        cmd = [sys.executable, "-m", "shmchan.soak", "--role", role, self.names[channel],
               "--end", repr(end), "--inject", self.args.inject]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE if role == "reader" else subprocess.DEVNULL)
        peer = _Peer(channel, role, proc, self.next_ident)
        self.next_ident += 1
        self.by_ident[peer.ident] = peer
        if role == "reader":
            assert proc.stdout is not None
            os.set_blocking(proc.stdout.fileno(), False)
            self.sel.register(proc.stdout, selectors.EVENT_READ, peer)
            self.readers[channel] = peer
        else:
            self.writers[channel] = peer
        return peer

    def record(self, peer: _Peer, first: int, last: int) -> None:
        st = self.streams[peer.channel]
        owner = st.owner
        if len(owner) <= last:
            owner.extend([0] * (last + 1 - len(owner) + 4096))
        for seq in range(first, last + 1):
            prev = owner[seq]
            if prev == 0:
                owner[seq] = peer.ident
                st.received += 1
                continue
            before = self.by_ident[prev]
            # redelivery: a killed reader reported it but could not release it (within its window)
            if prev != peer.ident and before.killed and seq > before.max_seq - BATCH:
                st.redelivered += 1
            else:
                st.duplicated += 1
        peer.max_seq = max(peer.max_seq, last)

    def consume(self, peer: _Peer, chunk: bytes) -> None:
        peer.buf += chunk
        *lines, peer.buf = peer.buf.split(b"\n")
        for line in lines:
            parts = line.split()
            if parts[0] == b"R":
                self.record(peer, int(parts[1]), int(parts[2]))
            elif parts[0] == b"T":
                self.streams[peer.channel].torn += 1
            elif parts[0] == b"E":
                self.streams[peer.channel].ended = True

    def pump(self, timeout: float) -> None:
        for key, _ in self.sel.select(timeout):
            peer: _Peer = key.data
            assert peer.proc.stdout is not None
            try:
                chunk = os.read(peer.proc.stdout.fileno(), 1 << 16)
            except BlockingIOError:
                continue
            if chunk:
                self.consume(peer, chunk)
            else:
                self.sel.unregister(peer.proc.stdout)

    def reap(self, peer: _Peer) -> None:
        """Wait for a peer that exited (or was killed) and take in whatever it wrote before."""
        peer.proc.wait()
        out = peer.proc.stdout
        if out is None or out.closed:
            return
        if out.fileno() in self.sel.get_map():
            self.sel.unregister(out)
        os.set_blocking(out.fileno(), True)
        rest = out.read()  # the writing end is gone with the process: this reaches end of file
        if rest:
            self.consume(peer, rest)
        out.close()

    def run(self) -> int:
        args = self.args
        t0 = time.monotonic()
        end = time.time() + args.seconds
        chans = [Channel.create(n, slot_size=SLOT_SIZE, capacity=CAPACITY) for n in self.names]
        try:
            for i in range(len(self.names)):
                self.spawn(i, "reader", end)
                self.spawn(i, "writer", end)
            next_kill = time.monotonic() + self.rng.expovariate(1 / args.kill_interval)
            flowed = [0] * len(self.names)  # messages each channel had received at its last kill
            while time.time() < end - 0.5:
                self.pump(0.05)
                for role, table in (("writer", self.writers), ("reader", self.readers)):
                    for i, p in list(table.items()):
                        if p.proc.poll() is not None and not p.killed and not (role == "reader" and
                                                                                self.streams[i].ended):
                            self.reap(p)
                            raise RuntimeError(f"{role} of channel {i} exited with {p.proc.returncode}")
                if time.monotonic() >= next_kill:
                    i = self.rng.randrange(len(self.names))
                    if self.streams[i].received <= flowed[i]:
                        # nothing arrived on this channel since its last kill (its new peer may still be
                        # starting on a loaded machine): kill only while messages flow, or none would
                        next_kill = time.monotonic() + 0.05
                        continue
                    flowed[i] = self.streams[i].received
                    role = self.rng.choice(("writer", "reader"))
                    table = self.writers if role == "writer" else self.readers
                    victim = table[i]
                    victim.killed = True
                    victim.proc.send_signal(signal.SIGKILL)
                    self.reap(victim)
                    self.kills[role] += 1
                    time.sleep(self.rng.uniform(0, 0.05))
                    self.spawn(i, role, end)
                    next_kill = time.monotonic() + self.rng.expovariate(1 / args.kill_interval)
            # no more kills: the writers stop at `end`, the readers drain and end
            deadline = time.monotonic() + args.seconds + 60
            while not all(s.ended for s in self.streams):
                self.pump(0.05)
                for i, p in self.readers.items():
                    if p.proc.poll() is not None and not self.streams[i].ended:
                        self.reap(p)
                        if not self.streams[i].ended:
                            raise RuntimeError(f"reader of channel {i} exited with {p.proc.returncode}")
                if time.monotonic() > deadline:
                    raise RuntimeError("the readers did not finish draining")
            for p in [*self.writers.values(), *self.readers.values()]:
                self.reap(p)
                if p.proc.returncode != 0:
                    raise RuntimeError(f"{p.role} of channel {p.channel} exited with {p.proc.returncode}")
            heads = [c.stats().head for c in chans]
        finally:
            for p in self.by_ident.values():
                if p.proc.poll() is None:
                    p.proc.kill()
                    p.proc.wait()
            for c in chans:
                c.close()
        elapsed = time.monotonic() - t0
        received = sum(s.received for s in self.streams)
        lost = sum(h - s.received for h, s in zip(heads, self.streams, strict=True))
        dup = sum(s.duplicated for s in self.streams)
        torn = sum(s.torn for s in self.streams)
        redelivered = sum(s.redelivered for s in self.streams)
        for name, h, st in zip(self.names, heads, self.streams, strict=True):
            missing = [q for q in range(h) if q >= len(st.owner) or st.owner[q] == 0]
            if missing:
                print(f"soak: {name}: {len(missing)} of {h} messages never reported, first {missing[:10]}",
                      file=sys.stderr)
        print(f"soak: {elapsed:.1f} s, {len(chans)} channels, {received} messages ({received / elapsed:.0f} msg/s), "
              f"lost {lost}, duplicated {dup}, torn {torn}, redelivered {redelivered}, "
              f"kills: {self.kills['writer']} writers, {self.kills['reader']} readers", flush=True)
        return 1 if lost or dup or torn else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m shmchan.soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=60.0, help="how long the writers run (default 60)")
    p.add_argument("--channels", type=int, default=3, help="channels, each with a writer and a reader (default 3)")
    p.add_argument("--kill-interval", type=float, default=0.5, help="mean seconds between kills (default 0.5)")
    p.add_argument("--seed", type=int, default=None, help="seed of the kill schedule")
    p.add_argument("--inject", choices=("none", "lose", "duplicate", "torn"), default="none",
                   help="make the readers misreport one message, to check the checker")
    p.add_argument("--role", choices=("writer", "reader"), help=argparse.SUPPRESS)
    p.add_argument("--end", type=float, help=argparse.SUPPRESS)
    p.add_argument("name", nargs="?", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.role == "writer":
        run_writer(args.name, args.end)
        return 0
    if args.role == "reader":
        run_reader(args.name, args.inject)
        return 0
    return _Soak(args).run()


if __name__ == "__main__":
    sys.exit(main())
