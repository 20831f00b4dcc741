"""The native data plane: closing under blocked threads, threads sharing a reader, arguments checked
before any side effect, fork and pickling, batches, and waiting for a channel to appear."""

from __future__ import annotations

import math
import os
import pickle
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import shmchan
from shmchan._layout import shm_path

ROOT = Path(__file__).resolve().parent.parent

# ---- close() from another thread ends blocked calls (in a child: a crash must not take pytest down) ----

CLOSE_UNDER_WAIT = r"""
import sys, threading, time
import shmchan

name, what, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
for i in range(rounds):
    n = f"{name}-{i}"
    if what == "wait_for_change":
        ch = shmchan.State.create(n, max_size=16)
        call = lambda: ch.wait_for_change(0, timeout=None)
    elif what == "recv_async":
        import asyncio
        ch = shmchan.Channel.create(n, slot_size=64, capacity=2)
        r = ch.reader()
        call = lambda: asyncio.run(r.recv_async(timeout=None))
    else:
        ch = shmchan.Channel.create(n, slot_size=64, capacity=2)
        w, r = ch.writer(), ch.reader()
        if what in ("send", "reserve", "send_batch"):
            w.send(b"a"); w.send(b"b")  # the ring is full
        call = {
            "recv": lambda: r.recv(timeout=None),
            "recv_bytes": lambda: r.recv_bytes(timeout=None),
            "recv_into": lambda: r.recv_into(bytearray(64), timeout=None),
            "recv_batch": lambda: r.recv_batch(2, timeout=None),
            "iterate": lambda: next(iter(r)),
            "send": lambda: w.send(b"c", timeout=None),
            "send_batch": lambda: w.send_batch([b"c", b"d"], timeout=None),
            "reserve": lambda: w.reserve(8, timeout=None),
        }[what]
    got = []
    def run():
        try:
            call()
            got.append("returned")
        except shmchan.ChannelClosedError:
            got.append("closed")
        except BaseException as exc:
            got.append(repr(exc))
    t = threading.Thread(target=run)
    t.start()
    time.sleep(0.002 * (i % 5))  # sometimes before the thread sleeps, sometimes while it sleeps
    ch.close()
    t.join(10)
    if t.is_alive() or got != ["closed"]:
        print("FAIL", i, got, t.is_alive(), flush=True)
        sys.exit(1)
print("ok", rounds, flush=True)
"""


@pytest.mark.parametrize("what", ["recv", "recv_bytes", "recv_into", "recv_batch", "iterate", "send", "send_batch",
                                  "reserve", "wait_for_change", "recv_async"])
def test_close_from_another_thread_ends_a_blocked_call_with_channelclosederror(unique_name: str, what: str) -> None:
    """A thread blocked (timeout None) in a receive, in a send on a full ring, in reserve or in
    wait_for_change gets ChannelClosedError when another thread closes the channel: never a crash or a
    hang (200 rounds, in a child process)."""
    proc = subprocess.run([sys.executable, "-c", CLOSE_UNDER_WAIT, unique_name, what, "200"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "ok 200"
    assert not [e for e in os.listdir("/dev/shm") if unique_name in e]


def test_writer_close_from_another_thread_ends_its_blocked_send(unique_name: str) -> None:
    """Writer.close() from another thread ends the writer's own blocked send (ChannelClosedError); the
    reader of the same handle is untouched."""
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=2) as ch:
        w, r = ch.writer(), ch.reader()
        w.send(b"a")
        w.send(b"b")
        got: list[str] = []

        def run() -> None:
            try:
                w.send(b"c")
            except shmchan.ChannelClosedError:
                got.append("closed")

        t = threading.Thread(target=run)
        t.start()
        time.sleep(0.05)
        w.close()
        t.join(5)
        assert got == ["closed"] and not t.is_alive()
        assert [r.recv_bytes(timeout=0), r.recv_bytes(timeout=0)] == [b"a", b"b"]
        with pytest.raises(shmchan.ChannelEndedError):
            r.recv(timeout=1)


# ---- threads sharing one reader ----


def test_two_threads_hammering_one_reader_lose_and_duplicate_nothing(unique_name: str) -> None:
    """Two threads take messages from one reader while a third writes 20000: every message is received
    exactly once, and none is torn."""
    n = 20000
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=16) as ch:
        w, r = ch.writer(), ch.reader()
        seen: list[list[int]] = [[], []]
        errors: list[BaseException] = []

        def reader(k: int) -> None:
            try:
                while True:
                    try:
                        if k:
                            for m in r.recv_batch(4, timeout=5):
                                v = int.from_bytes(m.buffer[:8], "little")
                                assert m.tobytes() == v.to_bytes(8, "little") * 8
                                seen[k].append(v)
                                m.release()
                        else:
                            with r.recv(timeout=5) as m:
                                v = int(m.ndarray(8, np.uint64)[0])
                                assert (m.ndarray(8, np.uint64) == v).all()
                                seen[k].append(v)
                        if len(seen[k]) % 64 == 0:
                            time.sleep(0.0005)  # let the other thread in (the GIL may favour one)
                    except shmchan.ChannelEndedError:
                        return
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=reader, args=(k,)) for k in (0, 1)]
        for t in threads:
            t.start()
        for i in range(n):
            w.send(i.to_bytes(8, "little") * 8)
        w.close()
        for t in threads:
            t.join(60)
        assert not errors, errors
        got = sorted(seen[0] + seen[1])
        assert got == list(range(n))
        assert seen[0] and seen[1], "both threads got messages"


def test_a_thread_releases_while_another_waits_on_the_same_reader(unique_name: str) -> None:
    """A thread blocked in recv() does not hold the reader: meanwhile another thread releases a message
    it holds (at once, not after the wait), and the waiting thread then gets the next message."""
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=2) as ch:
        w, r = ch.writer(), ch.reader()
        w.send(b"one")
        held = r.recv(timeout=0)
        got: list[bytes] = []
        t = threading.Thread(target=lambda: got.append(r.recv_bytes(timeout=10)))
        t.start()
        time.sleep(0.1)  # the thread waits in recv now
        t0 = time.monotonic()
        held.release()
        assert time.monotonic() - t0 < 0.05
        assert ch.stats().tail == 1 and t.is_alive()
        w.send(b"two")
        t.join(10)
        assert got == [b"two"]


# ---- arguments, checked before anything happens ----


@pytest.mark.parametrize("bad", [float("nan"), -1, -0.5, -math.inf, "1", object()])
def test_bad_timeouts_raise_before_any_effect(unique_name: str, bad: object) -> None:
    """NaN and negative timeouts raise ValueError (a non-number TypeError), and the call does nothing."""
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=2) as ch:
        w, r = ch.writer(), ch.reader()
        exc = ValueError if isinstance(bad, (int, float)) else TypeError
        for call in (lambda: r.recv(timeout=bad), lambda: r.recv_bytes(timeout=bad),
                     lambda: r.recv_batch(1, timeout=bad), lambda: w.send(b"x", timeout=bad),
                     lambda: w.reserve(8, timeout=bad), lambda: w.send_batch([b"x"], timeout=bad)):
            with pytest.raises(exc):
                call()
        assert ch.stats().head == 0 and ch.stats().full_waits == 0 and ch.stats().empty_waits == 0
        with pytest.raises(exc):
            shmchan.Channel.open(unique_name, timeout=bad)


@pytest.mark.parametrize("huge", [1e300, math.inf, 10**400, 2**63])
def test_huge_timeouts_mean_forever_never_overflowerror(unique_name: str, huge: object) -> None:
    """Timeouts too large to represent wait for ever: no OverflowError anywhere."""
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=2) as ch:
        w, r = ch.writer(), ch.reader()
        w.send(b"x", timeout=huge)
        assert r.recv_bytes(timeout=huge) == b"x"
        with shmchan.Channel.open(unique_name, timeout=huge) as again:
            assert again.capacity == 2
        got: list[bytes] = []
        t = threading.Thread(target=lambda: got.append(r.recv_bytes(timeout=huge)))
        t.start()
        time.sleep(0.05)
        w.send(b"late")
        t.join(5)
        assert got == [b"late"]


@pytest.mark.parametrize("spin", [float("nan"), -1])
def test_a_bad_spin_attaches_nothing(unique_name: str, spin: float) -> None:
    """reader(spin=-1) / writer(spin=nan) raise ValueError and attach nothing: no phantom reader or
    writer keeps others out afterwards."""
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=2) as ch:
        with pytest.raises(ValueError):
            ch.reader(spin=spin)
        with pytest.raises(ValueError):
            ch.writer(spin=spin)
        assert ch.stats().reader_state == "none" and ch.stats().writer_state == "none"
        with shmchan.Channel.open(unique_name) as other:
            other.reader().close()
            other.writer().close()


@pytest.mark.parametrize("spin", [1e300, math.inf, 0])
def test_extreme_spins_are_accepted(unique_name: str, spin: float) -> None:
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=2) as ch:
        w, r = ch.writer(spin=spin), ch.reader(spin=spin)
        w.send(b"x")
        assert r.recv_bytes(timeout=1) == b"x"


# ---- fork and pickling ----

FORK_CHILD = r"""
import os, sys
import shmchan

name = sys.argv[1]
ch = shmchan.Channel.create(name, slot_size=64, capacity=4)
w = ch.writer()
r = ch.reader()
w.send(b"before")
pid = os.fork()
if pid == 0:
    # the child: every copy is closed; nothing may act on the parent's behalf
    try:
        for call in (lambda: w.send(b"child"), lambda: r.recv(timeout=0), lambda: ch.stats(), lambda: ch.writer()):
            try:
                call()
                print("child: a call worked", flush=True)
                os._exit(3)
            except shmchan.ChannelClosedError as exc:
                assert "fork" in str(exc), exc
        assert ch.closed and w.closed and r.closed
    except BaseException as exc:
        print("child:", repr(exc), flush=True)
        os._exit(4)
    sys.exit(0)  # a normal exit: finalizers run (they must not unlink the parent's channel)
_, status = os.waitpid(pid, 0)
assert os.WEXITSTATUS(status) == 0, status
assert os.path.exists(f"/dev/shm/shmchan.{name}"), "the child unlinked the parent's channel"
st = ch.stats()
assert st.writer_alive and st.reader_alive, st  # the child did not drop the parent's locks
w.send(b"after")
assert r.recv_bytes(timeout=0) == b"before" and r.recv_bytes(timeout=0) == b"after"
with shmchan.Channel.open(name) as other:
    try:
        other.writer()
        raise SystemExit("a second writer attached")
    except shmchan.ChannelBusyError:
        pass
ch.close()
print("ok", flush=True)
"""


def test_handles_carried_across_fork_are_closed_in_the_child(unique_name: str) -> None:
    """After fork() the child's copies raise ChannelClosedError (naming fork), its exit neither unlinks
    the parent's channel nor drops the parent's writer and reader, and there is still one writer."""
    proc = subprocess.run([sys.executable, "-c", FORK_CHILD, unique_name], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "ok"
    assert not os.path.exists(shm_path(unique_name))


def test_handles_refuse_pickling_with_a_hint(unique_name: str) -> None:
    """Pickling a handle (what multiprocessing does with Process args under spawn) says to pass the name."""
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=2) as ch:
        w, r = ch.writer(), ch.reader()
        w.send(b"x")
        m = r.recv()
        for obj in (ch, w, r, m):
            with pytest.raises(TypeError, match="open it in the other process"):
                pickle.dumps(obj)
        m.release()


# ---- batches, iteration, positions ----


def test_send_batch_sends_in_order_in_one_call_and_says_how_many(unique_name: str) -> None:
    with shmchan.Channel.create(unique_name, slot_size=16, capacity=8) as ch:
        w, r = ch.writer(), ch.reader()
        assert w.send_batch([b"a", bytearray(b"bb"), memoryview(b"ccc")]) == 3
        assert w.position == 3
        got = r.recv_batch(8, timeout=0)
        assert [m.tobytes() for m in got] == [b"a", b"bb", b"ccc"]
        assert [m.seq for m in got] == [0, 1, 2]
        del got
        # a full ring: as many as fit, then the count (an error only when none fit)
        assert w.send_batch([b"%d" % i for i in range(10)], timeout=0) == 8
        with pytest.raises(shmchan.ChannelFullError):
            w.send_batch([b"x"], timeout=0)
        with pytest.raises(ValueError, match="does not fit"):
            w.send_batch([b"x" * 17])
        assert [r.recv_bytes(timeout=0) for _ in range(8)] == [b"%d" % i for i in range(8)]


def test_recv_batch_messages_are_released_when_dropped(unique_name: str) -> None:
    with shmchan.Channel.create(unique_name, slot_size=16, capacity=4) as ch:
        w, r = ch.writer(), ch.reader()
        w.send_batch([b"1", b"2", b"3", b"4"])
        batch = r.recv_batch(4)
        assert r.outstanding == 4
        del batch
        assert r.outstanding == 0 and ch.stats().tail == 4


def test_iterating_an_overwrite_broadcast_survives_being_lapped(unique_name: str) -> None:
    """`for msg in reader` on an overwrite broadcast goes on when the writer laps the reader: the lost
    messages show in msg.lost (and Reader.lost), and the loop ends only when the writer closes."""
    with shmchan.Broadcast.create(unique_name, slot_size=16, capacity=4, policy="overwrite") as b:
        w = b.writer()
        with shmchan.Broadcast.open(unique_name) as h:
            r = h.reader(start="oldest")
            w.send(b"0")
            got: list[tuple[int, int]] = []
            for msg in r:
                got.append((msg.seq, msg.lost))
                if msg.seq == 0:
                    for i in range(1, 20):  # laps the reader while it holds message 0
                        w.send(b"%d" % i)
                elif msg.seq == 19:
                    w.close()
            # the ring of 4 holds 16..19 when the reader comes back: 1..15 were skipped, and message 0,
            # rewritten while the loop held it, counts as lost too (its copy cannot be trusted)
            assert got == [(0, 0), (16, 15), (17, 0), (18, 0), (19, 0)]
            assert r.lost == 16


def test_writer_position_and_channel_of_the_ends(unique_name: str) -> None:
    with shmchan.Channel.create(unique_name, slot_size=16, capacity=4) as ch:
        w, r = ch.writer(), ch.reader()
        assert (w.position, r.position) == (0, 0)
        assert w.channel is ch and r.channel is ch
        with w.reserve(4) as slot:
            assert slot.seq == 0
            slot.buffer[:] = b"abcd"
        assert w.position == 1


def test_views_of_one_message_are_cached_and_never_leak_into_the_next(unique_name: str) -> None:
    """The memoryview of a slot is reused for the next message of that slot only when nothing else
    refers to it: a view kept by the user always keeps its own bytes."""
    with shmchan.Channel.create(unique_name, slot_size=8, capacity=1) as ch:
        w, r = ch.writer(), ch.reader()
        w.send(b"AAAAAAAA")
        with r.recv() as m:
            first = m.buffer
            assert bytes(first) == b"AAAAAAAA"
            assert m.buffer is first  # the same view while the message is held
        with pytest.raises(shmchan.ChannelFullError):
            w.send(b"BBBBBBBB", timeout=0)  # `first` pins the slot
        del first
        w.send(b"BBBBBBBB", timeout=0)
        with r.recv() as m:
            second = m.buffer
            assert bytes(second) == b"BBBBBBBB"
        del second
        w.send(b"CCCCCCCC", timeout=0)
        m = r.recv()
        sliced = m.buffer[2:4]
        arr = m.ndarray()
        m.release()
        with pytest.raises(shmchan.ChannelFullError):
            w.send(b"DDDDDDDD", timeout=0)
        del sliced
        with pytest.raises(shmchan.ChannelFullError):
            w.send(b"DDDDDDDD", timeout=0)
        assert arr.tobytes() == b"CCCCCCCC"
        del arr
        w.send(b"DDDDDDDD", timeout=0)
        assert r.recv_bytes(timeout=0) == b"DDDDDDDD"


def test_a_released_memoryview_does_not_break_the_cache(unique_name: str) -> None:
    with shmchan.Channel.create(unique_name, slot_size=8, capacity=1) as ch:
        w, r = ch.writer(), ch.reader()
        for i in range(5):
            w.send(bytes([65 + i]) * 8)
            with r.recv() as m:
                mv = m.buffer
                assert bytes(mv) == bytes([65 + i]) * 8
                mv.release()
                assert bytes(m.buffer) == bytes([65 + i]) * 8


# ---- waiting for a channel to appear ----


def test_open_waits_for_the_channel_to_appear(unique_name: str) -> None:
    """A reader started before its writer: open(timeout) waits for the name, then works."""
    made: list[shmchan.Channel] = []

    def create_later() -> None:
        time.sleep(0.3)
        made.append(shmchan.Channel.create(unique_name, slot_size=16, capacity=2))

    t = threading.Thread(target=create_later)
    t.start()
    t0 = time.monotonic()
    with shmchan.Channel.open(unique_name, timeout=10) as ch:
        assert time.monotonic() - t0 >= 0.25
        assert ch.capacity == 2
    t.join()
    made[0].close()
    t0 = time.monotonic()
    with pytest.raises(shmchan.ChannelNotFoundError, match=r"waited 0\.2 s"):
        shmchan.Channel.open(unique_name, timeout=0.2)
    assert 0.15 < time.monotonic() - t0 < 5
    with pytest.raises(shmchan.ChannelNotFoundError):
        shmchan.Channel.open(unique_name, timeout=0)


def test_a_full_ring_held_partly_by_another_thread_waits_instead_of_raising(unique_name: str) -> None:
    """Slots go back in stream order: while one thread holds the oldest message, the others' released
    messages behind it keep the ring full. A thread whose neighbour holds messages waits for it (a
    thread whose own messages fill the ring gets BufferError, as it would wait for ever)."""
    with shmchan.Channel.create(unique_name, slot_size=16, capacity=4) as ch:
        w, r = ch.writer(), ch.reader()
        for i in range(4):
            w.send(b"%d" % i, timeout=0)
        held: list[shmchan.Message] = []
        t = threading.Thread(target=lambda: held.append(r.recv(timeout=1)))
        t.start()
        t.join()
        for _ in range(3):
            r.recv(timeout=0).release()
        with pytest.raises(shmchan.ChannelFullError):
            w.send(b"4", timeout=0)  # message 0 is still held
        got: list[bytes] = []
        t2 = threading.Thread(target=lambda: got.append(r.recv_bytes(timeout=10)))
        t2.start()
        time.sleep(0.1)
        assert t2.is_alive() and not got  # waiting, not BufferError
        held[0].release()  # the other thread's message: the ring frees up
        w.send(b"4", timeout=1)
        t2.join(10)
        assert got == [b"4"]
        # one thread alone holding the whole ring: BufferError, never a wait
        for i in range(5, 9):
            w.send(b"%d" % i, timeout=0)
        msgs = [r.recv(timeout=0) for _ in range(4)]
        with pytest.raises(BufferError):
            r.recv(timeout=10)
        del msgs
