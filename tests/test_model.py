"""A single-process channel (writer and reader on one handle) behaves like a bounded FIFO model."""

from __future__ import annotations

import os
from collections import deque
from uuid import uuid4

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import shmchan

CAPACITY = 4
SLOT_SIZE = 16

payloads = st.binary(min_size=0, max_size=SLOT_SIZE)


class ChannelModel(RuleBasedStateMachine):
    """The channel against a reference: a deque of committed messages, the positions taken by the
    reader, and the rule that slots go back to the writer in stream order."""

    def __init__(self) -> None:
        super().__init__()
        self.name = f"t{os.getpid()}-model-{uuid4().hex[:8]}"
        self.ch = shmchan.Channel.create(self.name, slot_size=SLOT_SIZE, capacity=CAPACITY)
        self.w = self.ch.writer()
        self.r = self.ch.reader()
        # the model
        self.pending: deque[tuple[int, bytes]] = deque()  # committed, not yet taken by the reader
        self.held: list[tuple[shmchan.Message, int, bytes]] = []  # taken, not yet released
        self.released: set[int] = set()  # released but behind an earlier held position
        self.lengths: dict[int, int] = {}
        self.head = 0
        self.tail = 0
        self.read_pos = 0
        self.messages_written = 0
        self.bytes_written = 0
        self.bytes_read = 0
        self.aborts = 0
        self.full_waits = 0
        self.empty_waits = 0

    # ---- model helpers ----

    def full(self) -> bool:
        return self.head - self.tail == CAPACITY

    def commit(self, data: bytes) -> None:
        self.pending.append((self.head, data))
        self.lengths[self.head] = len(data)
        self.head += 1
        self.messages_written += 1
        self.bytes_written += len(data)

    def take(self) -> tuple[int, bytes]:
        pos, data = self.pending.popleft()
        assert pos == self.read_pos
        self.read_pos += 1
        return pos, data

    def release(self, pos: int) -> None:
        self.released.add(pos)
        while self.tail in self.released:
            self.released.remove(self.tail)
            self.bytes_read += self.lengths.pop(self.tail)
            self.tail += 1

    def expect_nothing_to_take(self, call) -> None:
        """The reader found no message: BufferError if it holds every slot, else ChannelEmptyError."""
        if self.read_pos - self.tail == CAPACITY:
            with pytest.raises(BufferError):
                call()
        else:
            with pytest.raises(shmchan.ChannelEmptyError):
                call()
            self.empty_waits += 1

    def expect_full(self, call) -> None:
        with pytest.raises(shmchan.ChannelFullError):
            call()
        self.full_waits += 1

    # ---- writer rules ----

    @rule(data=payloads)
    def send(self, data: bytes) -> None:
        if self.full():
            self.expect_full(lambda: self.w.send(data, timeout=0))
        else:
            self.w.send(data, timeout=0)
            self.commit(data)

    @rule(data=payloads, cut=st.integers(0, SLOT_SIZE))
    def reserve_and_commit(self, data: bytes, cut: int) -> None:
        n = min(cut, len(data))
        if self.full():
            self.expect_full(lambda: self.w.reserve(len(data), timeout=0))
            return
        slot = self.w.reserve(len(data), timeout=0)
        assert slot.nbytes == len(data)
        slot.buffer[:] = data
        slot.commit(n)
        self.commit(data[:n])

    @rule(n=st.integers(0, SLOT_SIZE))
    def reserve_and_abort(self, n: int) -> None:
        if self.full():
            self.expect_full(lambda: self.w.reserve(n, timeout=0))
            return
        with pytest.raises(KeyError), self.w.reserve(n, timeout=0) as slot:
            slot.buffer[:] = b"\xee" * n
            raise KeyError("abort this reservation")
        self.aborts += 1

    # ---- reader rules ----

    @rule()
    def recv_bytes(self) -> None:
        if not self.pending:
            self.expect_nothing_to_take(lambda: self.r.recv_bytes(timeout=0))
            return
        pos, data = self.take()
        assert self.r.recv_bytes(timeout=0) == data
        self.release(pos)

    @rule(size=st.integers(0, SLOT_SIZE))
    def recv_into(self, size: int) -> None:
        buf = bytearray(size)
        if not self.pending:
            self.expect_nothing_to_take(lambda: self.r.recv_into(buf, timeout=0))
            return
        pos, data = self.pending[0]
        if len(data) > size:
            with pytest.raises(ValueError):
                self.r.recv_into(buf, timeout=0)
            return  # the message stays first in line
        self.take()
        assert self.r.recv_into(buf, timeout=0) == len(data)
        assert bytes(buf[: len(data)]) == data
        self.release(pos)

    @rule(n=st.integers(1, CAPACITY))
    def recv_batch(self, n: int) -> None:
        if not self.pending:
            self.expect_nothing_to_take(lambda: self.r.recv_batch(n, timeout=0))
            return
        batch = self.r.recv_batch(n, timeout=0)
        assert len(batch) == min(n, len(self.pending))
        for msg in batch:
            pos, data = self.take()
            assert msg.seq == pos
            assert msg.tobytes() == data
            self.held.append((msg, pos, data))

    @rule()
    def recv_one(self) -> None:
        if not self.pending:
            self.expect_nothing_to_take(lambda: self.r.recv(timeout=0))
            return
        msg = self.r.recv(timeout=0)
        pos, data = self.take()
        assert (msg.seq, msg.tobytes()) == (pos, data)
        self.held.append((msg, pos, data))

    @precondition(lambda self: self.held)
    @rule(pick=st.integers(0, CAPACITY - 1))
    def release_held(self, pick: int) -> None:
        """Release any held message: out of stream order is allowed."""
        msg, pos, data = self.held.pop(pick % len(self.held))
        assert msg.tobytes() == data  # still intact while held, whatever was sent since
        msg.release()
        self.release(pos)

    # ---- invariants ----

    @invariant()
    def positions_and_counters_match(self) -> None:
        s = self.ch.stats()
        assert (s.head, s.tail) == (self.head, self.tail)
        assert s.fill == self.head - self.tail
        assert self.r.outstanding == self.read_pos - self.tail
        assert (s.messages_written, s.bytes_written) == (self.messages_written, self.bytes_written)
        assert s.messages_read == self.tail
        assert s.aborts == self.aborts
        assert (s.full_waits, s.empty_waits) == (self.full_waits, self.empty_waits)

    @invariant()
    def bytes_read_counts_released_messages(self) -> None:
        assert self.ch.stats().bytes_read == self.bytes_read

    def teardown(self) -> None:
        for msg, _, _ in self.held:
            msg.release()
        self.held.clear()
        self.ch.close()


ChannelModel.TestCase.settings = settings(max_examples=150, stateful_step_count=60, deadline=None)
test_channel_matches_fifo_model = pytest.mark.timeout(300)(ChannelModel.TestCase)
