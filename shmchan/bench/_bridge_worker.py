"""The processes of ``shmchan bench --kinds bridge``: ``python -m shmchan.bench._bridge_worker ROLE ...``.

Every message is ``[seq u64][t_ns u64][body]``: the producer writes all of it (the body is one copy of
a fixed pattern, the stamp is written last, just before the message leaves); the consumer reads all
of it (the body is summed as 64-bit words and compared) and takes the one-way latency from the stamp
(CLOCK_MONOTONIC, the same clock in every process of the host). In ``rate`` mode the producer sends
as fast as the transport takes messages; in ``latency`` mode one message every ``--interval``
seconds. A message whose seq is 2**64-1 ends the stream (the shmchan producer closes its writer
instead). The consumer prints one JSON object: arrival checkpoints, latencies, errors, its CPU time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import struct
import sys
import time
from typing import Any

import numpy as np

STAMP = struct.Struct("<QQ")
END = (1 << 64) - 1
CHECKPOINT = 64  # the consumer notes (time, count) every this many messages
# shmchan producer and consumer sleep at once instead of polling (README: spin=0 saves CPU): four
# processes share two CPUs here, and a polling one takes CPU from the bridges it waits for
SPIN = 0.0


def body(size: int) -> bytes:
    words = np.arange((size - STAMP.size) // 8, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    return words.tobytes()


def expected_sum(size: int) -> int:
    return int(np.frombuffer(body(size), dtype=np.uint64).sum(dtype=np.uint64))


def cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def say(obj: Any) -> None:
    print(obj if isinstance(obj, str) else json.dumps(obj), flush=True)


class Sink:
    """What a consumer measures."""

    def __init__(self, size: int, mode: str) -> None:
        self.keep_latency = mode == "latency"
        self.want = expected_sum(size)
        self.size = size
        self.n = 0
        self.errors = 0
        self.last = -1
        self.marks: list[tuple[int, int]] = []
        self.lat: list[int] = []
        self.cpu0 = cpu_s()

    def take(self, buf: Any) -> bool:
        """Check one message; False at the end of the stream."""
        v = np.frombuffer(buf, dtype=np.uint64)
        seq = int(v[0])
        if seq == END:
            return False
        now = time.perf_counter_ns()
        if len(buf) != self.size or seq != self.last + 1 or int(v[2:].sum(dtype=np.uint64)) != self.want:
            self.errors += 1
        self.last = seq
        self.n += 1
        if self.keep_latency:
            self.lat.append(now - int(v[1]))
        if self.n % CHECKPOINT == 0:
            self.marks.append((now, self.n))
        return True

    def report(self) -> None:
        self.marks.append((time.perf_counter_ns(), self.n))
        say({"n": self.n, "errors": self.errors, "marks": self.marks, "lat_ns": self.lat,
             "cpu_s": cpu_s() - self.cpu0})


class Source:
    """What a producer sends: a payload template and the pacing."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.size = args.size
        self.body = body(args.size)
        self.mode = args.mode
        self.seconds = args.seconds
        self.count = args.count
        self.interval = args.interval
        self.cpu0 = cpu_s()

    def run(self, send: Any) -> None:
        """Call ``send(seq)`` for every message, paced or not, until the time or count is up."""
        t_end = time.monotonic() + self.seconds
        seq = 0
        nxt = time.monotonic()
        while True:
            if self.mode == "rate":
                if seq % 32 == 0 and time.monotonic() >= t_end:
                    break
            else:
                if seq >= self.count:
                    break
                nxt += self.interval
                delay = nxt - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            send(seq)
            seq += 1
        say({"sent": seq, "cpu_s": cpu_s() - self.cpu0})


# ---- shmchan bridge: producer into a local channel, consumer of the imported one ----


def shm_produce(args: argparse.Namespace) -> None:
    import shmchan

    src = Source(args)
    with shmchan.Channel.create(args.name, slot_size=args.size, capacity=args.capacity) as ch:
        w = ch.writer(spin=SPIN)
        say("ready")
        sys.stdin.readline()

        def send(seq: int) -> None:
            with w.reserve(args.size) as slot:
                buf = slot.buffer
                buf[STAMP.size :] = src.body
                STAMP.pack_into(buf, 0, seq, time.perf_counter_ns())
                del buf

        src.run(send)
        w.close()
        sys.stdin.readline()  # "exit": the channel is removed now


def shm_consume(args: argparse.Namespace) -> None:
    import shmchan

    deadline = time.monotonic() + 30
    while True:
        try:
            ch = shmchan.Channel.open(args.name)
            break
        except shmchan.ChannelNotFoundError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)
    sink = Sink(args.size, args.mode)
    with ch:
        r = ch.reader(spin=SPIN)
        say("ready")
        for msg in r:
            with msg:
                buf = msg.buffer
                sink.take(buf)
                del buf
        r.close()
    sink.report()


# ---- plain Zenoh pub/sub in Python ----


def _zenoh_session(args: argparse.Namespace, role: str) -> Any:
    import zenoh

    from shmchan.bridge import zenoh_config

    endpoint = [f"tcp/127.0.0.1:{args.port}"]
    cfg = zenoh_config(role, listen=endpoint if role == "export" else [], connect=endpoint if role == "import" else [])
    return zenoh.open(cfg)


def zenoh_pub(args: argparse.Namespace) -> None:
    import zenoh

    src = Source(args)
    with _zenoh_session(args, "export") as s:
        pub = s.declare_publisher("bench/zenoh", congestion_control=zenoh.CongestionControl.BLOCK,
                                  reliability=zenoh.Reliability.RELIABLE)
        while not pub.matching_status.matching:
            time.sleep(0.01)
        buf = bytearray(args.size)

        def send(seq: int) -> None:
            buf[STAMP.size :] = src.body  # every byte written for every message, as the others do
            STAMP.pack_into(buf, 0, seq, time.perf_counter_ns())
            pub.put(buf)

        src.run(send)
        STAMP.pack_into(buf, 0, END, 0)
        pub.put(buf)
        sys.stdin.readline()


def zenoh_sub(args: argparse.Namespace) -> None:
    import zenoh

    with _zenoh_session(args, "import") as s:
        sub = s.declare_subscriber("bench/zenoh", zenoh.handlers.FifoChannel(256))
        sink = Sink(args.size, args.mode)
        say("ready")
        while sink.take(sub.handler.recv().payload.to_bytes()):
            pass
        sink.report()


# ---- pyzmq PUSH/PULL over tcp://127.0.0.1 ----


def zmq_push(args: argparse.Namespace) -> None:
    import zmq

    src = Source(args)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUSH)
    sock.connect(f"tcp://127.0.0.1:{args.port}")
    zero_copy = args.size >= 65536  # pyzmq's advice: copy small messages, hand large ones over

    def send(seq: int) -> None:
        # a new message each time (every byte written); zero-copy sends must not reuse a buffer
        sock.send(STAMP.pack(seq, time.perf_counter_ns()) + src.body, 0, copy=not zero_copy)

    src.run(send)
    sock.send(STAMP.pack(END, 0) + src.body)
    sys.stdin.readline()
    sock.close(linger=1000)
    ctx.term()


def zmq_pull(args: argparse.Namespace) -> None:
    import zmq

    ctx = zmq.Context()
    sock = ctx.socket(zmq.PULL)
    sock.bind(f"tcp://127.0.0.1:{args.port}")
    copy = args.size < 65536
    sink = Sink(args.size, args.mode)
    say("ready")
    while True:
        m = sock.recv(copy=copy)
        if not sink.take(m if copy else m.buffer):
            break
    sink.report()
    sock.close(linger=0)
    ctx.term()


ROLES = {"shm-produce": shm_produce, "shm-consume": shm_consume, "zenoh-pub": zenoh_pub, "zenoh-sub": zenoh_sub,
         "zmq-push": zmq_push, "zmq-pull": zmq_pull}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("role", choices=sorted(ROLES))
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--mode", choices=("rate", "latency"), default="rate")
    p.add_argument("--seconds", type=float, default=1.0)
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--interval", type=float, default=0.002)
    p.add_argument("--name", default="")
    p.add_argument("--capacity", type=int, default=64)
    p.add_argument("--port", type=int, default=0)
    args = p.parse_args()
    ROLES[args.role](args)
    # skip the interpreter's shutdown, during which a process that had a Zenoh session sometimes
    # aborts (zenoh-python 1.10.2; docs/bridge.md, Limits)
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
