"""Per-operation costs of shmchan from Python, with pytest-benchmark.

    pytest bench --benchmark-json bench/results/micro.json          # save every figure as JSON
    pytest bench --benchmark-autosave --benchmark-compare           # compare with the last saved run

One process, writer and reader on the same channel, so these are the binding's and the core's costs
without any cross-process cache traffic or waiting (``shmchan bench`` measures those). The ring is
drained or refilled in each round's setup, outside the timed call.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import numpy as np
import pytest

import shmchan

pytest.importorskip("pytest_benchmark")

SMALL = 64
FRAME = (1080, 1920, 3)
ROUNDS = 2000
PAYLOAD = bytes(range(SMALL))


class Ends:
    """A channel with its writer and reader, busy-polling (no sleeps)."""

    def __init__(self, slot_size: int, capacity: int) -> None:
        self.ch = shmchan.Channel.create(f"micro-{os.getpid()}-{uuid4().hex[:8]}", slot_size=slot_size,
                                         capacity=capacity)
        self.w = self.ch.writer(spin=float("inf"))
        self.r = self.ch.reader(spin=float("inf"))

    def fill(self, n: int = 1, nbytes: int = SMALL) -> None:
        for _ in range(n):
            self.w.send(PAYLOAD[:nbytes] if nbytes <= SMALL else bytes(nbytes))

    def drain(self) -> None:
        while True:
            try:
                self.r.recv(timeout=0).release()
            except shmchan.ChannelEmptyError:
                return

    def close(self) -> None:
        self.ch.close()


@pytest.fixture
def small() -> Iterator[Ends]:
    e = Ends(SMALL, 256)
    yield e
    e.drain()
    e.close()


@pytest.fixture
def frame() -> Iterator[Ends]:
    e = Ends(int(np.prod(FRAME)), 4)
    yield e
    e.drain()
    e.close()


def _rounds(benchmark: Any, fn: Any, setup: Any) -> None:
    benchmark.pedantic(fn, setup=setup, rounds=ROUNDS, iterations=1, warmup_rounds=50)


@pytest.mark.benchmark(group="writer")
def test_reserve_commit(benchmark: Any, small: Ends) -> None:
    """reserve() + commit() of a 64-byte message (no payload written)."""
    w = small.w
    _rounds(benchmark, lambda: w.reserve(SMALL).commit(), small.drain)


@pytest.mark.benchmark(group="writer")
def test_reserve_write_commit(benchmark: Any, small: Ends) -> None:
    """reserve(), write 64 bytes through slot.buffer, commit(): the zero-copy path for a small message."""
    w = small.w

    def run() -> None:
        slot = w.reserve(SMALL)
        slot.buffer[:] = PAYLOAD
        slot.commit()

    _rounds(benchmark, run, small.drain)


@pytest.mark.benchmark(group="writer")
def test_send_small(benchmark: Any, small: Ends) -> None:
    """send() of 64 bytes (one C call: reserve, copy, commit)."""
    w = small.w
    _rounds(benchmark, lambda: w.send(PAYLOAD), small.drain)


@pytest.mark.benchmark(group="reader")
def test_recv_release(benchmark: Any, small: Ends) -> None:
    """recv() + release() of a 64-byte message (payload not read)."""
    r = small.r
    _rounds(benchmark, lambda: r.recv().release(), small.fill)


@pytest.mark.benchmark(group="reader")
def test_recv_read_release(benchmark: Any, small: Ends) -> None:
    """recv(), read 64 bytes through msg.buffer, release(): the zero-copy path for a small message."""
    r = small.r

    def run() -> None:
        msg = r.recv()
        bytes(msg.buffer)
        msg.release()

    _rounds(benchmark, run, small.fill)


@pytest.mark.benchmark(group="reader")
def test_recv_bytes_small(benchmark: Any, small: Ends) -> None:
    """recv_bytes() of a 64-byte message (one C call plus the bytes object)."""
    r = small.r
    _rounds(benchmark, r.recv_bytes, small.fill)


@pytest.mark.benchmark(group="reader")
def test_recv_into_small(benchmark: Any, small: Ends) -> None:
    """recv_into() a preallocated buffer (no allocation)."""
    r = small.r
    buf = bytearray(SMALL)
    _rounds(benchmark, lambda: r.recv_into(buf), small.fill)


@pytest.mark.benchmark(group="reader")
def test_recv_batch_64(benchmark: Any, small: Ends) -> None:
    """recv_batch(64) of 64 waiting messages, each released: one C call for the batch."""
    r = small.r

    def run() -> None:
        for m in r.recv_batch(64):
            m.release()

    _rounds(benchmark, run, lambda: small.fill(64))


@pytest.mark.benchmark(group="views")
def test_message_buffer(benchmark: Any, small: Ends) -> None:
    """msg.buffer: a memoryview of a received message (made and dropped)."""
    small.fill()
    msg = small.r.recv()
    benchmark(lambda: msg.buffer)
    msg.release()


@pytest.mark.benchmark(group="views")
def test_message_ndarray(benchmark: Any, small: Ends) -> None:
    """msg.ndarray(): a read-only numpy array over a received message."""
    small.fill()
    msg = small.r.recv()
    benchmark(msg.ndarray)
    msg.release()


@pytest.mark.benchmark(group="views")
def test_slot_ndarray_frame(benchmark: Any, frame: Ends) -> None:
    """slot.ndarray((1080, 1920, 3), uint8) on a reserved 1080p slot."""
    slot = frame.w.reserve()
    benchmark(lambda: slot.ndarray(FRAME, np.uint8))
    slot.abort()


@pytest.mark.benchmark(group="frames")
def test_frame_reserve_fill_commit_recv_release(benchmark: Any, frame: Ends) -> None:
    """A 1080p RGB frame: reserve, fill every byte in place, commit, recv, read every byte, release."""
    w, r = frame.w, frame.r

    def run() -> None:
        slot = w.reserve()
        slot.ndarray().fill(7)
        slot.commit()
        msg = r.recv()
        int(msg.ndarray().view(np.uint64).sum())
        msg.release()

    benchmark.pedantic(run, rounds=200, iterations=1, warmup_rounds=5)
