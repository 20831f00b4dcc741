"""Broadcast channels (both policies) and state boards against reference models (hypothesis)."""

from __future__ import annotations

import os
from uuid import uuid4

import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import shmchan

CAPACITY = 4
SLOT_SIZE = 16
READERS = 3

payloads = st.binary(min_size=0, max_size=SLOT_SIZE)
who = st.integers(0, READERS - 1)


class _ReaderModel:
    """One reader of the model: its next position, its oldest unreleased one, what it holds."""

    def __init__(self, handle: shmchan.Broadcast, reader: shmchan.Reader) -> None:
        self.handle = handle
        self.r = reader
        self.next = reader.position
        self.tail = self.next
        self.held: dict[int, tuple[shmchan.Message, bytes]] = {}
        self.released: set[int] = set()
        self.orphans: set[int] = set()  # held when the writer lapped us: overwritten
        self.lost = 0

    def release(self, pos: int) -> None:
        self.released.add(pos)
        while self.tail in self.released:
            self.released.remove(self.tail)
            self.tail += 1

    def close(self) -> None:
        self.held.clear()  # unreleased: the closed reader hands nothing back (they count as taken)
        self.r.close()
        self.handle.close()


class BroadcastModel(RuleBasedStateMachine):
    """One writer and up to three readers (each on its own handle, as separate processes would be)
    against a model: the messages by position, every reader's positions, and the policy's rule for
    a full ring (block: the writer waits for the slowest reader; overwrite: readers get lapped)."""

    policy = "block"

    def __init__(self) -> None:
        super().__init__()
        self.name = f"t{os.getpid()}-bmodel-{uuid4().hex[:8]}"
        self.ch = shmchan.Broadcast.create(self.name, slot_size=SLOT_SIZE, capacity=CAPACITY,
                                           max_readers=READERS, policy=self.policy)
        self.w = self.ch.writer()
        self.sent: list[bytes] = []
        self.readers: list[_ReaderModel | None] = [None] * READERS
        self.full_waits = 0

    @property
    def head(self) -> int:
        return len(self.sent)

    def live(self) -> list[_ReaderModel]:
        return [r for r in self.readers if r is not None]

    def full(self) -> bool:
        if self.policy == "overwrite" or not self.live():
            return False
        return self.head - min(r.tail for r in self.live()) >= CAPACITY

    def expect_full(self, call) -> None:  # type: ignore[no-untyped-def]
        with pytest.raises(shmchan.ChannelFullError):
            call()
        self.full_waits += 1

    def lap_check(self, m: _ReaderModel) -> int:
        """Overwrite: skip the model reader past positions the writer has rewritten, to the oldest
        one still in the ring; return how many were skipped."""
        if self.policy == "overwrite" and self.head - m.next > CAPACITY:
            to = self.head - CAPACITY
            n = to - m.next
            fresh = set(m.held) - m.orphans
            m.orphans |= fresh
            m.lost += len(fresh)  # held messages are overwritten too: lost now, not at release
            m.released.clear()
            m.next = m.tail = to
            m.lost += n
            return n
        return 0

    # ---- writer ----

    @rule(data=payloads)
    def send(self, data: bytes) -> None:
        if self.full():
            self.expect_full(lambda: self.w.send(data, timeout=0))
            return
        self.w.send(data, timeout=0)
        self.sent.append(data)

    @rule(data=payloads)
    def reserve_commit(self, data: bytes) -> None:
        if self.full():
            self.expect_full(lambda: self.w.reserve(len(data), timeout=0))
            return
        with self.w.reserve(len(data), timeout=0) as slot:
            slot.buffer[:] = data
        self.sent.append(data)

    # ---- readers ----

    @precondition(lambda self: None in self.readers)
    @rule(i=who, oldest=st.booleans())
    def attach(self, i: int, oldest: bool) -> None:
        if self.readers[i] is not None:
            return
        h = shmchan.Broadcast.open(self.name)
        r = h.reader(start="oldest" if oldest else "latest")
        m = _ReaderModel(h, r)
        # where a reader starts: never before what the writer may already have rewritten
        assert max(0, self.head - CAPACITY) <= m.next <= self.head
        if not oldest and self.head:
            assert m.next >= self.head - 1
        # (that every position from m.next on is intact is checked by the reads: they compare
        # each message with self.sent)
        self.readers[i] = m

    @precondition(lambda self: any(self.readers))
    @rule(i=who)
    def detach(self, i: int) -> None:
        m = self.readers[i]
        if m is not None:
            m.close()
            self.readers[i] = None

    @precondition(lambda self: any(self.readers))
    @rule(i=who)
    def recv_bytes(self, i: int) -> None:
        m = self.readers[i]
        if m is None:
            return
        self.lap_check(m)
        if m.next == self.head:
            err = BufferError if m.next - m.tail == CAPACITY else shmchan.ChannelEmptyError
            with pytest.raises(err):
                m.r.recv_bytes(timeout=0)
            return
        if m.next - m.tail == CAPACITY:
            with pytest.raises(BufferError):
                m.r.recv_bytes(timeout=0)
            return
        assert m.r.recv_bytes(timeout=0) == self.sent[m.next]
        m.next += 1
        m.release(m.next - 1)

    @precondition(lambda self: any(self.readers))
    @rule(i=who)
    def recv_hold(self, i: int) -> None:
        m = self.readers[i]
        if m is None:
            return
        skipped = self.lap_check(m)
        if m.next == self.head or m.next - m.tail == CAPACITY:
            with pytest.raises((BufferError, shmchan.ChannelEmptyError)):
                m.r.recv(timeout=0)
            return
        msg = m.r.recv(timeout=0)
        assert msg.seq == m.next
        assert msg.lost == skipped
        assert msg.tobytes() == self.sent[m.next]
        m.held[m.next] = (msg, self.sent[m.next])
        m.next += 1

    @precondition(lambda self: any(r and r.held for r in self.readers))
    @rule(i=who, pick=st.integers(0, CAPACITY - 1))
    def release_held(self, i: int, pick: int) -> None:
        m = self.readers[i]
        if m is None or not m.held:
            return
        pos = sorted(m.held)[pick % len(m.held)]
        msg, data = m.held.pop(pos)
        overwritten = pos in m.orphans or pos + CAPACITY < self.head
        assert msg.intact is not overwritten
        if overwritten:
            with pytest.raises(shmchan.LappedError):
                msg.release()
            if pos in m.orphans:
                m.orphans.discard(pos)
            else:
                m.lost += 1
        else:
            assert msg.tobytes() == data  # intact while held
            msg.release()
        if pos >= m.tail:
            m.release(pos)

    # ---- invariants ----

    @invariant()
    def readers_match(self) -> None:
        for m in self.live():
            assert m.r.position == m.next
            assert m.r.lost == m.lost
            assert m.r.outstanding == m.next - m.tail
        places = [p for p in self.ch.readers() if p.state == "attached"]
        assert len(places) == len(self.live())
        assert all(p.alive for p in places)

    @invariant()
    def writer_matches(self) -> None:
        s = self.ch.stats()
        assert s.head == self.head
        assert s.messages_written == self.head
        assert s.full_waits == self.full_waits
        if self.live():
            assert s.tail == min(m.tail for m in self.live())

    def teardown(self) -> None:
        for m in self.live():
            m.close()
        self.w.close()
        self.ch.close()


class OverwriteModel(BroadcastModel):
    policy = "overwrite"


BroadcastModel.TestCase.settings = settings(max_examples=120, stateful_step_count=60, deadline=None)
OverwriteModel.TestCase.settings = settings(max_examples=120, stateful_step_count=60, deadline=None)
test_block_broadcast_matches_model = pytest.mark.timeout(300)(BroadcastModel.TestCase)
test_overwrite_broadcast_matches_model = pytest.mark.timeout(300)(OverwriteModel.TestCase)


class StateModel(RuleBasedStateMachine):
    """A state board against a model: the last value written and how many were."""

    def __init__(self) -> None:
        super().__init__()
        self.name = f"t{os.getpid()}-smodel-{uuid4().hex[:8]}"
        self.dt = np.dtype([("a", "<i8"), ("b", "<f4", (3,))])
        self.st = shmchan.State.create(self.name, dtype=self.dt)
        self.other = shmchan.State.open(self.name)
        self.w: shmchan.StateWriter | None = None
        self.value: tuple[int, tuple[float, float, float]] | None = None
        self.version = 0

    @rule(a=st.integers(-(2**63), 2**63 - 1), b=st.tuples(*[st.integers(-1000, 1000)] * 3))
    def write(self, a: int, b: tuple[int, int, int]) -> None:
        if self.w is None:
            self.w = self.st.writer()
        fb = (float(b[0]), float(b[1]), float(b[2]))
        assert self.w.write((a, fb)) == self.version + 1
        self.version += 1
        self.value = (a, fb)

    @precondition(lambda self: self.w is not None)
    @rule()
    def writer_leaves(self) -> None:
        assert self.w is not None
        self.w.close()
        self.w = None

    @rule(version=st.integers(0, 5))
    def wait_for_change_now(self, version: int) -> None:
        if version == self.version:
            with pytest.raises(shmchan.ChannelTimeoutError):
                self.other.wait_for_change(version, timeout=0)
        else:
            assert self.other.wait_for_change(version, timeout=0) == self.version

    @invariant()
    def both_handles_read_the_last_value(self) -> None:
        for h in (self.st, self.other):
            value, version = h.read()
            assert version == self.version == h.version
            if self.value is None:
                assert value is None
            else:
                assert int(value["a"]) == self.value[0]
                assert tuple(float(x) for x in value["b"]) == self.value[1]

    def teardown(self) -> None:
        self.other.close()
        self.st.close()


StateModel.TestCase.settings = settings(max_examples=80, stateful_step_count=40, deadline=None)
test_state_matches_model = pytest.mark.timeout(300)(StateModel.TestCase)
