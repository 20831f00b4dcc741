"""The public API in one process: sending, receiving, reserving, timeouts, stats, lifetime, files."""

from __future__ import annotations

import os
import stat
import threading
import time

import numpy as np
import pytest

import shmchan
from shmchan._layout import shm_path


@pytest.fixture
def ch(unique_name: str):
    """A channel of 4 slots of 64 bytes, closed after the test."""
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=4) as c:
        yield c


@pytest.fixture
def ends(ch):
    """A (writer, reader) pair on the ``ch`` channel."""
    return ch.writer(), ch.reader()


# ---- sending and receiving ----


def test_send_and_recv_bytes_round_trip(ends) -> None:
    """Bytes sent come back unchanged, in order."""
    w, r = ends
    for data in (b"a small message", b"\x00" * 64, b"x"):
        w.send(data)
    assert r.recv_bytes(timeout=1.0) == b"a small message"
    assert r.recv_bytes(timeout=1.0) == b"\x00" * 64
    assert r.recv_bytes(timeout=1.0) == b"x"


def test_empty_message_round_trips(ends) -> None:
    """A zero-length message is delivered as a message of zero bytes."""
    w, r = ends
    w.send(b"")
    with r.recv(timeout=0) as msg:
        assert msg.nbytes == 0
        assert len(msg) == 0
        assert msg.tobytes() == b""


@pytest.mark.parametrize(
    "make",
    [bytearray, memoryview, lambda b: np.frombuffer(b, np.uint8), lambda b: np.frombuffer(b, np.uint32)],
    ids=["bytearray", "memoryview", "ndarray-u8", "ndarray-u32"],
)
def test_send_accepts_contiguous_buffers(ends, make) -> None:
    """send() takes any contiguous buffer and sends its bytes."""
    w, r = ends
    data = bytes(range(32))
    w.send(make(data))
    assert r.recv_bytes(timeout=0) == data


def test_send_larger_than_slot_raises_valueerror(ends) -> None:
    """A message longer than slot_size raises ValueError and sends nothing."""
    w, r = ends
    with pytest.raises(ValueError, match="does not fit"):
        w.send(b"x" * 65)
    with pytest.raises(shmchan.ChannelEmptyError):
        r.recv_bytes(timeout=0)


def test_message_seq_counts_from_zero(ends) -> None:
    """Messages carry their stream position 0, 1, 2, ... across wrap-arounds of the ring."""
    w, r = ends
    for i in range(10):
        w.send(b"%d" % i)
        with r.recv(timeout=0) as msg:
            assert msg.seq == i
            assert msg.tobytes() == b"%d" % i


# ---- reserving in place ----


def test_reserve_with_nbytes_gives_exactly_nbytes(ends) -> None:
    """reserve(nbytes) gives a buffer of exactly nbytes and delivers a message of that length."""
    w, r = ends
    with w.reserve(10, timeout=1.0) as slot:
        assert slot.nbytes == 10
        assert len(slot.buffer) == 10
        slot.buffer[:] = b"0123456789"
    assert r.recv_bytes(timeout=0) == b"0123456789"


def test_reserve_default_is_slot_size(ends) -> None:
    """reserve() without nbytes reserves the whole slot."""
    w, r = ends
    with w.reserve() as slot:
        assert slot.nbytes == 64
        slot.ndarray()[:] = 7
    with r.recv(timeout=0) as msg:
        assert msg.nbytes == 64
        assert msg.tobytes() == b"\x07" * 64


@pytest.mark.parametrize("nbytes", [65, -1, 2**64])
def test_reserve_out_of_range_raises_valueerror(ends, nbytes: int) -> None:
    """reserve() of more than slot_size bytes (or a negative size) raises ValueError."""
    w, _ = ends
    with pytest.raises(ValueError):
        w.reserve(nbytes)
    w.send(b"ok")  # no reservation was left open


def test_exception_in_reserve_block_aborts(ch, ends) -> None:
    """An exception inside ``with w.reserve()`` aborts: the reader sees nothing, aborts == 1."""
    w, r = ends

    class Boom(Exception):
        pass

    with pytest.raises(Boom), w.reserve(timeout=1.0) as slot:
        slot.buffer[:5] = b"half-"
        raise Boom
    with pytest.raises(shmchan.ChannelEmptyError):
        r.recv(timeout=0)
    st = ch.stats()
    assert st.aborts == 1
    assert st.messages_written == 0
    assert st.head == 0
    w.send(b"next")
    assert r.recv_bytes(timeout=0) == b"next"


def test_explicit_commit_shortens_message(ends) -> None:
    """commit(nbytes) publishes only the first nbytes of the reservation."""
    w, r = ends
    slot = w.reserve(64)
    slot.buffer[:] = bytes(range(64))
    slot.commit(5)
    assert r.recv_bytes(timeout=0) == bytes(range(5))


def test_commit_larger_than_reservation_raises(ends) -> None:
    """commit(n) with n above the reserved size raises ValueError and keeps the reservation open."""
    w, r = ends
    slot = w.reserve(8)
    with pytest.raises(ValueError):
        slot.commit(9)
    slot.buffer[:] = b"12345678"
    slot.commit()
    assert r.recv_bytes(timeout=0) == b"12345678"


def test_slot_cannot_be_used_after_commit(ends) -> None:
    """After commit, the slot's buffer, commit and abort raise MessageReleasedError."""
    w, _ = ends
    slot = w.reserve(4)
    slot.commit()
    with pytest.raises(shmchan.MessageReleasedError):
        slot.buffer  # noqa: B018
    with pytest.raises(shmchan.MessageReleasedError):
        slot.commit()
    with pytest.raises(shmchan.MessageReleasedError):
        slot.abort()


def test_explicit_abort_drops_reservation(ch, ends) -> None:
    """abort() drops the reservation; the next message takes its place."""
    w, r = ends
    slot = w.reserve(4)
    slot.buffer[:] = b"gone"
    slot.abort()
    with pytest.raises(shmchan.MessageReleasedError):
        slot.abort()
    w.send(b"kept")
    with r.recv(timeout=0) as msg:
        assert msg.tobytes() == b"kept"
        assert msg.seq == 0
    assert ch.stats().aborts == 1


def test_second_reserve_or_send_while_reserved_raises(ends) -> None:
    """reserve() or send() while a slot is reserved raises ShmchanError."""
    w, _ = ends
    slot = w.reserve(4)
    with pytest.raises(shmchan.ShmchanError, match="reserved"):
        w.reserve(4)
    with pytest.raises(shmchan.ShmchanError, match="reserved"):
        w.send(b"x")
    slot.abort()
    w.send(b"x")


def test_slot_ndarray_is_writable_and_message_ndarray_read_only(ends) -> None:
    """slot.ndarray() is a writable view; msg.ndarray() and msg.buffer are read-only."""
    w, r = ends
    with w.reserve(16) as slot:
        a = slot.ndarray((4,), np.uint32)
        assert a.flags.writeable
        a[:] = [1, 2, 3, 4]
        del a
    with r.recv(timeout=0) as msg:
        b = msg.ndarray((4,), np.uint32)
        assert b.tolist() == [1, 2, 3, 4]
        assert not b.flags.writeable
        with pytest.raises(ValueError, match="read-only"):
            b[0] = 9
        mv = msg.buffer
        assert mv.readonly
        with pytest.raises(TypeError):
            mv[0] = 9
        del b, mv


def test_ndarray_shape_dtype_and_offset(ends) -> None:
    """ndarray() honours shape, dtype and offset; None shape means 1-D over the rest."""
    w, r = ends
    with w.reserve(24) as slot:
        slot.ndarray()[:] = np.arange(24, dtype=np.uint8)
    with r.recv(timeout=0) as msg:
        assert msg.ndarray().tolist() == list(range(24))
        assert msg.ndarray(offset=20).tolist() == [20, 21, 22, 23]
        a = msg.ndarray((2, 3), np.uint16, offset=8)
        assert a.shape == (2, 3)
        assert a.dtype == np.uint16
        assert a.tobytes() == bytes(range(8, 20))
        assert msg.ndarray(dtype=np.uint64).shape == (3,)
        assert msg.ndarray(5).shape == (5,)
        del a


@pytest.mark.parametrize(
    ("shape", "dtype", "offset"),
    [
        ((25,), np.uint8, 0),
        ((4,), np.uint64, 0),
        ((2, 2), np.uint64, 1),
        ((1,), np.uint8, 24),
        (None, np.uint8, 25),
        (None, np.uint8, -1),
        ((3, 3), np.float64, 0),
    ],
)
def test_ndarray_too_big_raises_valueerror(ends, shape, dtype, offset: int) -> None:
    """An array that would reach past the message (or start outside it) raises ValueError."""
    w, r = ends
    w.send(bytes(24))
    with r.recv(timeout=0) as msg, pytest.raises(ValueError):
        msg.ndarray(shape, dtype, offset=offset)
    with w.reserve(24) as slot, pytest.raises(ValueError):
        slot.ndarray(shape, dtype, offset=offset)


def test_message_views_unusable_after_release(ends) -> None:
    """After release, msg.buffer and msg.ndarray raise MessageReleasedError; release is idempotent."""
    w, r = ends
    w.send(b"abc")
    msg = r.recv(timeout=0)
    assert not msg.released
    msg.release()
    msg.release()
    assert msg.released
    with pytest.raises(shmchan.MessageReleasedError):
        msg.buffer  # noqa: B018
    with pytest.raises(shmchan.MessageReleasedError):
        msg.ndarray()
    with pytest.raises(shmchan.MessageReleasedError):
        msg.tobytes()


# ---- full and empty ----


def test_full_ring_with_timeout_zero_raises_channel_full(ch, ends) -> None:
    """send/reserve with timeout=0 on a full ring raise ChannelFullError (a BlockingIOError)."""
    w, r = ends
    for i in range(4):
        w.send(b"%d" % i, timeout=0)
    with pytest.raises(shmchan.ChannelFullError) as info:
        w.send(b"x", timeout=0)
    assert isinstance(info.value, BlockingIOError)
    with pytest.raises(shmchan.ChannelFullError):
        w.reserve(timeout=0)
    assert r.recv_bytes(timeout=0) == b"0"
    w.send(b"4", timeout=0)
    assert [r.recv_bytes(timeout=0) for _ in range(4)] == [b"1", b"2", b"3", b"4"]


def test_empty_ring_with_timeout_zero_raises_channel_empty(ends) -> None:
    """recv, recv_bytes, recv_into and recv_batch with timeout=0 on an empty ring raise ChannelEmptyError."""
    _, r = ends
    for call in (
        lambda: r.recv(timeout=0),
        lambda: r.recv_bytes(timeout=0),
        lambda: r.recv_into(bytearray(64), timeout=0),
        lambda: r.recv_batch(4, timeout=0),
    ):
        with pytest.raises(shmchan.ChannelEmptyError) as info:
            call()
        assert isinstance(info.value, BlockingIOError)


def test_recv_timeout_raises_channel_timeout(ends) -> None:
    """recv(timeout=0.2) on an empty ring raises ChannelTimeoutError after at least 0.2 s (and < 2 s)."""
    _, r = ends
    t0 = time.monotonic()
    with pytest.raises(shmchan.ChannelTimeoutError) as info:
        r.recv(timeout=0.2)
    elapsed = time.monotonic() - t0
    assert isinstance(info.value, TimeoutError)
    assert 0.2 <= elapsed < 2.0


def test_send_timeout_raises_channel_timeout(ends) -> None:
    """send(timeout=0.2) on a full ring raises ChannelTimeoutError after at least 0.2 s (and < 2 s)."""
    w, _ = ends
    for _ in range(4):
        w.send(b"x", timeout=0)
    t0 = time.monotonic()
    with pytest.raises(shmchan.ChannelTimeoutError):
        w.send(b"y", timeout=0.2)
    elapsed = time.monotonic() - t0
    assert 0.2 <= elapsed < 2.0


def test_timeout_longer_than_a_wait_slice_is_honoured(ends) -> None:
    """A timeout spanning several internal 100 ms slices still ends after the whole timeout."""
    _, r = ends
    t0 = time.monotonic()
    with pytest.raises(shmchan.ChannelTimeoutError):
        r.recv_bytes(timeout=0.35)
    assert 0.35 <= time.monotonic() - t0 < 2.0


@pytest.mark.parametrize("timeout", [-1, -0.5, float("nan")])
def test_negative_timeout_raises_valueerror(ends, timeout: float) -> None:
    """A negative or NaN timeout raises ValueError."""
    w, r = ends
    with pytest.raises(ValueError, match="timeout"):
        r.recv(timeout=timeout)
    with pytest.raises(ValueError, match="timeout"):
        w.send(b"x", timeout=timeout)


def test_blocked_recv_wakes_when_another_thread_sends(unique_name: str) -> None:
    """recv(timeout=None) returns the message another handle sends while it waits."""
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=4) as ch:
        r = ch.reader()

        def later() -> None:
            with shmchan.Channel.open(unique_name) as other:
                time.sleep(0.2)
                other.writer().send(b"late")

        t = threading.Thread(target=later)
        t.start()
        try:
            assert r.recv_bytes(timeout=None) == b"late"
        finally:
            t.join()


# ---- recv_batch, recv_into, iteration ----


def test_recv_batch_returns_up_to_n_available(ends) -> None:
    """recv_batch(n) returns the available messages, at most n, in order."""
    w, r = ends
    for i in range(3):
        w.send(b"%d" % i)
    batch = r.recv_batch(2, timeout=0)
    assert [m.tobytes() for m in batch] == [b"0", b"1"]
    assert [m.seq for m in batch] == [0, 1]
    for m in batch:
        m.release()
    batch = r.recv_batch(4, timeout=0)
    assert [m.tobytes() for m in batch] == [b"2"]
    batch[0].release()


def test_recv_batch_waits_for_the_first_message(unique_name: str) -> None:
    """recv_batch waits for the first message, then returns what is there."""
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=4) as ch:
        r = ch.reader()

        def later() -> None:
            with shmchan.Channel.open(unique_name) as other:
                w = other.writer()
                time.sleep(0.2)
                w.send(b"first")

        t = threading.Thread(target=later)
        t.start()
        try:
            t0 = time.monotonic()
            batch = r.recv_batch(4, timeout=5)
            assert time.monotonic() - t0 >= 0.1
        finally:
            t.join()
        assert [m.tobytes() for m in batch] == [b"first"]
        batch[0].release()


def test_recv_batch_returns_messages_committed_since_the_last_receive(ends) -> None:
    """recv_batch returns every available message, even those committed since the reader last looked."""
    w, r = ends
    w.send(b"0")
    w.send(b"1")
    assert r.recv_bytes(timeout=0) == b"0"
    w.send(b"2")
    batch = r.recv_batch(4, timeout=0)
    assert [m.tobytes() for m in batch] == [b"1", b"2"]
    for m in batch:
        m.release()


@pytest.mark.parametrize("n", [0, -1, 5])
def test_recv_batch_size_out_of_range_raises(ends, n: int) -> None:
    """recv_batch(n) needs 1 <= n <= capacity."""
    _, r = ends
    with pytest.raises(ValueError, match="max_messages"):
        r.recv_batch(n, timeout=0)


def test_recv_batch_messages_released_out_of_order(ch, ends) -> None:
    """Batch messages released in any order give their slots back once all earlier ones are released."""
    w, r = ends
    for i in range(4):
        w.send(b"%d" % i)
    batch = r.recv_batch(4, timeout=0)
    batch[2].release()
    batch[1].release()
    assert ch.stats().tail == 0
    with pytest.raises(shmchan.ChannelFullError):
        w.send(b"x", timeout=0)
    batch[0].release()
    assert ch.stats().tail == 3
    assert r.outstanding == 1
    batch[3].release()
    assert ch.stats().tail == 4
    assert r.outstanding == 0


def test_recv_into_copies_and_returns_length(ends) -> None:
    """recv_into copies the message into the buffer and returns its length."""
    w, r = ends
    w.send(b"hello")
    buf = bytearray(64)
    assert r.recv_into(buf, timeout=0) == 5
    assert bytes(buf[:5]) == b"hello"
    w.send(b"numpy!!!")
    arr = np.zeros(8, np.uint8)
    assert r.recv_into(arr, timeout=0) == 8
    assert arr.tobytes() == b"numpy!!!"


def test_recv_into_too_small_buffer_keeps_message(ends) -> None:
    """recv_into a buffer smaller than the message raises ValueError and leaves the message queued."""
    w, r = ends
    w.send(b"0123456789")
    with pytest.raises(ValueError, match="10 bytes"):
        r.recv_into(bytearray(4), timeout=0)
    buf = bytearray(10)
    assert r.recv_into(buf, timeout=0) == 10
    assert bytes(buf) == b"0123456789"


def test_recv_into_read_only_buffer_raises_and_keeps_message(ends) -> None:
    """recv_into a read-only buffer raises (BufferError from CFFI) and leaves the message queued."""
    w, r = ends
    w.send(b"abc")
    with pytest.raises(BufferError):
        r.recv_into(b"xxxx", timeout=0)
    assert r.recv_bytes(timeout=0) == b"abc"


def test_iteration_ends_after_writer_close(ends) -> None:
    """``for msg in reader`` yields every message, then stops once the writer closed and the ring drained."""
    w, r = ends
    for i in range(3):
        w.send(b"%d" % i)
    w.close()
    assert [m.tobytes() for m in r] == [b"0", b"1", b"2"]
    with pytest.raises(shmchan.ChannelEndedError) as info:
        r.recv(timeout=0)
    assert isinstance(info.value, EOFError)


def test_iteration_releases_each_message(ch, ends) -> None:
    """Iterating releases each message when the loop moves on, so more than capacity messages flow."""
    w, r = ends
    got = []
    sent = 0
    for _ in range(3):
        w.send(b"%d" % sent, timeout=0)
        sent += 1
    for msg in r:
        got.append(msg.tobytes())
        if sent < 10:
            w.send(b"%d" % sent, timeout=0)  # room only because the previous message was released
            sent += 1
            if sent == 10:
                w.close()
    assert got == [b"%d" % i for i in range(10)]
    assert ch.stats().tail == 10


def test_recv_with_no_writer_ever_waits_not_ends(ends) -> None:
    """A reader of a channel whose writer never attached sees an empty ring, not the end."""
    _, r = ends
    with pytest.raises(shmchan.ChannelEmptyError):
        r.recv(timeout=0)


def test_unreleased_message_redelivered_to_next_reader(ch, ends) -> None:
    """Messages received but not released are delivered again to the next reader."""
    w, r = ends
    w.send(b"one")
    w.send(b"two")
    assert r.recv_bytes(timeout=0) == b"one"
    msg = r.recv(timeout=0)
    r.close()
    with pytest.raises(shmchan.ChannelClosedError):
        msg.buffer  # noqa: B018
    msg.release()  # harmless once its reader is closed
    r2 = ch.reader()
    with r2.recv(timeout=0) as again:
        assert again.tobytes() == b"two"
        assert again.seq == 1


# ---- stats ----


def test_stats_counts_messages_bytes_and_positions(ch, ends) -> None:
    """stats() reports positions, message and byte counts, aborts, waits and peer states."""
    w, r = ends
    st = ch.stats()
    assert (st.head, st.tail, st.fill, st.capacity) == (0, 0, 0, 4)
    assert (st.writer_state, st.reader_state) == ("attached", "attached")
    assert st.writer_pid == st.reader_pid == os.getpid()
    assert st.writer_alive and st.reader_alive
    w.send(b"12345")
    w.send(b"123")
    st = ch.stats()
    assert (st.head, st.tail, st.fill) == (2, 0, 2)
    assert (st.messages_written, st.bytes_written) == (2, 8)
    assert (st.messages_read, st.bytes_read) == (0, 0)
    assert r.recv_bytes(timeout=0) == b"12345"
    st = ch.stats()
    assert (st.head, st.tail, st.fill) == (2, 1, 1)
    assert (st.messages_read, st.bytes_read) == (1, 5)
    w.reserve(3).abort()
    assert r.recv_bytes(timeout=0) == b"123"
    with pytest.raises(shmchan.ChannelEmptyError):
        r.recv_bytes(timeout=0)
    for _ in range(4):
        w.send(b"x")
    with pytest.raises(shmchan.ChannelFullError):
        w.send(b"x", timeout=0)
    st = ch.stats()
    assert st.aborts == 1
    assert st.empty_waits == 1
    assert st.full_waits == 1
    assert (st.messages_written, st.bytes_written) == (6, 12)
    assert (st.messages_read, st.bytes_read) == (2, 8)
    w.close()
    r.close()
    st = ch.stats()
    assert (st.writer_state, st.reader_state) == ("closed", "closed")
    assert not st.writer_alive and not st.reader_alive


def test_stats_bytes_read_counts_only_released_messages(ch, ends) -> None:
    """bytes_read, like messages_read, counts only messages handed back to the writer."""
    w, r = ends
    w.send(b"a" * 10)
    w.send(b"b" * 20)
    batch = r.recv_batch(2, timeout=0)
    batch[0].release()
    st = ch.stats()
    assert (st.messages_read, st.bytes_read) == (1, 10)
    batch[1].release()
    st = ch.stats()
    assert (st.messages_read, st.bytes_read) == (2, 30)


def test_stats_one_blocking_wait_counts_once(ch, ends) -> None:
    """A single recv (send) that waits several internal slices counts as one empty (full) wait."""
    w, r = ends
    with pytest.raises(shmchan.ChannelTimeoutError):
        r.recv(timeout=0.35)
    for _ in range(4):
        w.send(b"x")
    with pytest.raises(shmchan.ChannelTimeoutError):
        w.send(b"x", timeout=0.35)
    st = ch.stats()
    assert st.empty_waits == 1
    assert st.full_waits == 1


def test_stats_seen_from_another_handle(unique_name: str) -> None:
    """Another handle on the same channel sees the same counters."""
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=4) as ch, shmchan.Channel.open(
        unique_name
    ) as other:
        ch.writer().send(b"abc")
        st = other.stats()
        assert (st.head, st.messages_written, st.bytes_written, st.writer_state) == (1, 1, 3, "attached")
        assert st.writer_alive
        assert st.reader_state == "none"


# ---- properties ----


def test_channel_properties(unique_name: str) -> None:
    """A channel reports its name, geometry, layout version and creator."""
    before = time.time()
    with shmchan.Channel.create(unique_name, slot_size=100, capacity=8, slot_align=64) as ch:
        assert ch.name == unique_name
        assert ch.path is None
        assert (ch.slot_size, ch.capacity, ch.slot_align, ch.slot_stride) == (100, 8, 64, 128)
        assert ch.nbytes == os.stat(shm_path(unique_name)).st_size
        assert ch.msync == "none"
        assert ch.creator_pid == os.getpid()
        assert ch.is_creator
        assert ch.layout_version == (shmchan._layout.LAYOUT_MAJOR, shmchan._layout.LAYOUT_MINOR)
        assert before - 1 <= ch.created <= time.time() + 1
        assert not ch.closed
        assert unique_name in repr(ch)
        with shmchan.Channel.open(unique_name) as other:
            assert not other.is_creator
            assert other.creator_pid == os.getpid()
            assert (other.slot_size, other.capacity, other.slot_stride) == (100, 8, 128)
            assert other.created == ch.created


@pytest.mark.parametrize(
    ("slot_size", "align", "stride"),
    [(1, 64, 64), (64, 64, 64), (100, 64, 128), (4095, 64, 4096), (4096, 4096, 4096), (5000, 4096, 8192)],
)
def test_default_slot_alignment_follows_the_slot_size(unique_name: str, slot_size: int, align: int,
                                                      stride: int) -> None:
    """Without slot_align, slots under 4 KiB start on a cache line (they pack densely) and larger
    ones on a page; every slot's first byte really is aligned so."""
    with shmchan.Channel.create(unique_name, slot_size=slot_size, capacity=4) as ch:
        assert (ch.slot_align, ch.slot_stride) == (align, stride)
        w = ch.writer()
        for _ in range(4):
            with w.reserve(1) as slot:
                assert np.frombuffer(slot.buffer, np.uint8).ctypes.data % align == 0


def test_small_slots_take_little_memory(unique_name: str) -> None:
    """1024 slots of 64 B take at most 1.25x their payload plus two pages (the header and the
    length table), not a page each."""
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=1024) as ch:
        payload = 64 * 1024
        assert ch.nbytes <= 1.25 * payload + 2 * 4096, ch.nbytes
        assert os.stat(f"/dev/shm/shmchan.{unique_name}").st_size == ch.nbytes


# ---- lifetime ----


def test_close_is_idempotent(unique_name: str) -> None:
    """close() may be called again; closed turns True."""
    ch = shmchan.Channel.create(unique_name, slot_size=64, capacity=4)
    ch.close()
    ch.close()
    assert ch.closed
    assert "closed" in repr(ch)


def test_every_method_after_close_raises_channel_closed(unique_name: str) -> None:
    """After close, the channel, its writer and its reader raise ChannelClosedError (a ValueError)."""
    ch = shmchan.Channel.create(unique_name, slot_size=64, capacity=4)
    w, r = ch.writer(), ch.reader()
    ch.close()
    assert w.closed and r.closed
    calls = {
        "writer": ch.writer,
        "reader": ch.reader,
        "stats": ch.stats,
        "flush": ch.flush,
        "unlink": ch.unlink,
        "send": lambda: w.send(b"x"),
        "reserve": lambda: w.reserve(),
        "recv": lambda: r.recv(timeout=0),
        "recv_bytes": lambda: r.recv_bytes(timeout=0),
        "recv_into": lambda: r.recv_into(bytearray(8), timeout=0),
        "recv_batch": lambda: r.recv_batch(1, timeout=0),
        "outstanding": lambda: r.outstanding,
    }
    for what, call in calls.items():
        with pytest.raises(shmchan.ChannelClosedError):
            call()
            pytest.fail(f"{what} after close did not raise")
    assert issubclass(shmchan.ChannelClosedError, ValueError)
    w.close()
    r.close()


def test_closed_writer_and_reader_raise_channel_closed(ends) -> None:
    """A closed writer or reader raises ChannelClosedError; close() of each is idempotent."""
    w, r = ends
    w.close()
    w.close()
    r.close()
    r.close()
    with pytest.raises(shmchan.ChannelClosedError):
        w.send(b"x")
    with pytest.raises(shmchan.ChannelClosedError):
        r.recv(timeout=0)
    assert "closed" in repr(w) and "closed" in repr(r)


def test_close_with_open_reservation_aborts_it(unique_name: str) -> None:
    """Closing a writer with a reservation open aborts it; the slot object then refuses use."""
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=4) as ch:
        w, r = ch.writer(), ch.reader()
        slot = w.reserve(4)
        w.close()
        with pytest.raises(shmchan.MessageReleasedError):
            slot.commit()
        assert ch.stats().aborts == 1
        with pytest.raises(shmchan.ChannelEndedError):
            r.recv(timeout=0)


def test_channel_writer_reader_are_context_managers(unique_name: str) -> None:
    """Channel, Writer and Reader close themselves at the end of a with block."""
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=4) as ch:
        with ch.writer() as w, ch.reader() as r:
            w.send(b"hi")
            assert r.recv_bytes(timeout=0) == b"hi"
        assert w.closed and r.closed
        assert ch.stats().writer_state == "closed"
        with ch.writer() as w2:  # the role is free again
            assert not w2.closed
    assert ch.closed
    assert not os.path.exists(shm_path(unique_name))


def test_writer_close_ends_the_stream_for_reader(ends) -> None:
    """After the writer closes, a reader gets the remaining messages, then ChannelEndedError."""
    w, r = ends
    w.send(b"last")
    w.close()
    assert r.recv_bytes(timeout=0) == b"last"
    with pytest.raises(shmchan.ChannelEndedError):
        r.recv_bytes(timeout=None)


def test_creator_close_removes_name_but_opened_handle_keeps_working(unique_name: str) -> None:
    """By default the creator's close removes /dev/shm entry; an opened handle keeps working."""
    ch = shmchan.Channel.create(unique_name, slot_size=64, capacity=4)
    other = shmchan.Channel.open(unique_name)
    assert os.path.exists(shm_path(unique_name))
    ch.close()
    assert not os.path.exists(shm_path(unique_name))
    with pytest.raises(shmchan.ChannelNotFoundError):
        shmchan.Channel.open(unique_name)
    w, r = other.writer(), other.reader()
    w.send(b"still works")
    assert r.recv_bytes(timeout=0) == b"still works"
    other.close()


def test_opener_close_does_not_remove_name(unique_name: str) -> None:
    """Closing a handle that only opened the channel leaves the /dev/shm entry in place."""
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=4) as ch:
        shmchan.Channel.open(unique_name).close()
        assert os.path.exists(shm_path(unique_name))
        ch.writer().send(b"x")


def test_persist_keeps_name_after_close(unique_name: str) -> None:
    """persist=True keeps the /dev/shm entry (and its messages) after the creator closes."""
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=4, persist=True) as ch:
        ch.writer().send(b"kept")
    try:
        assert os.path.exists(shm_path(unique_name))
        with shmchan.Channel.open(unique_name) as again:
            assert again.reader().recv_bytes(timeout=0) == b"kept"
    finally:
        shmchan.unlink(unique_name)
    assert not os.path.exists(shm_path(unique_name))


def test_module_unlink_removes_name(unique_name: str) -> None:
    """shmchan.unlink(name) removes the entry; open handles keep working; a second unlink raises."""
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=4, persist=True) as ch:
        shmchan.unlink(unique_name)
        assert not os.path.exists(shm_path(unique_name))
        with pytest.raises(shmchan.ChannelNotFoundError):
            shmchan.unlink(unique_name)
        w, r = ch.writer(), ch.reader()
        w.send(b"ok")
        assert r.recv_bytes(timeout=0) == b"ok"


def test_channel_unlink_then_close(unique_name: str) -> None:
    """ch.unlink() removes the name now; close() afterwards does not fail."""
    ch = shmchan.Channel.create(unique_name, slot_size=64, capacity=4)
    ch.unlink()
    assert not os.path.exists(shm_path(unique_name))
    with pytest.raises(shmchan.ChannelNotFoundError):
        ch.unlink()
    ch.close()


def test_create_after_unlink_makes_a_new_channel(unique_name: str) -> None:
    """Once unlinked, the name can be created again, independent of the old channel."""
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=4) as old:
        old.writer().send(b"old")
        old.unlink()
        with shmchan.Channel.create(unique_name, slot_size=32, capacity=2) as new:
            assert new.capacity == 2
            with pytest.raises(shmchan.ChannelEmptyError):
                new.reader().recv(timeout=0)
        assert old.reader().recv_bytes(timeout=0) == b"old"


# ---- permissions ----


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077])
def test_shm_mode_is_exactly_0600_whatever_the_umask(unique_name: str, umask: int) -> None:
    """The /dev/shm object gets mode 0600 exactly, under umask 000, 022 and 077."""
    old = os.umask(umask)
    try:
        ch = shmchan.Channel.create(unique_name, slot_size=64, capacity=4)
    finally:
        os.umask(old)
    with ch:
        assert stat.S_IMODE(os.stat(shm_path(unique_name)).st_mode) == 0o600


@pytest.mark.parametrize("umask", [0o000, 0o077])
def test_requested_mode_is_exact_whatever_the_umask(unique_name: str, umask: int) -> None:
    """mode=0o640 gives exactly 0640, even under umask 077 (which would narrow it)."""
    old = os.umask(umask)
    try:
        ch = shmchan.Channel.create(unique_name, slot_size=64, capacity=4, mode=0o640)
    finally:
        os.umask(old)
    with ch:
        assert stat.S_IMODE(os.stat(shm_path(unique_name)).st_mode) == 0o640


@pytest.mark.parametrize("umask", [0o000, 0o077])
def test_file_channel_mode_is_exactly_0600(tmp_path, umask: int) -> None:
    """A file-backed channel's file gets mode 0600 whatever the umask."""
    p = tmp_path / "chan"
    old = os.umask(umask)
    try:
        ch = shmchan.Channel.create(path=p, slot_size=64, capacity=4)
    finally:
        os.umask(old)
    with ch:
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o600


# ---- file-backed channels ----


@pytest.mark.parametrize("policy", ["none", "async", "sync", "explicit"])
def test_file_channel_with_each_msync_policy(tmp_path, policy: str) -> None:
    """A file-backed channel works with every msync policy; its data is in the file and persists."""
    p = tmp_path / "chan.shm"
    with shmchan.Channel.create(path=p, slot_size=64, capacity=4, msync=policy) as ch:
        assert ch.path == str(p)
        assert ch.name is None
        assert ch.msync == policy
        assert f"path={str(p)!r}" in repr(ch)
        w = ch.writer()
        w.send(b"persistent message " + policy.encode())
        ch.flush()
        with open(p, "rb") as f:
            assert b"persistent message " + policy.encode() in f.read()
        w.close()
    assert p.exists()  # file channels persist by default
    with shmchan.Channel.open(path=p) as again:
        assert again.msync == policy
        assert not again.is_creator
        r = again.reader()
        assert r.recv_bytes(timeout=0) == b"persistent message " + policy.encode()
        with pytest.raises(shmchan.ChannelEndedError):
            r.recv(timeout=0)


def test_file_channel_persist_false_removes_file(tmp_path) -> None:
    """persist=False makes the creator remove the file when it closes."""
    p = tmp_path / "chan"
    with shmchan.Channel.create(path=p, slot_size=64, capacity=4, persist=False):
        assert p.exists()
    assert not p.exists()


def test_flush_on_shared_memory_channel_is_harmless(ch) -> None:
    """flush() on a /dev/shm channel succeeds (msync has no backing store to write)."""
    ch.writer().send(b"x")
    ch.flush()


# ---- descriptor ----


@pytest.mark.parametrize("size", [1, 100, 4096, 65536])
def test_descriptor_is_read_back_by_creator_and_opener(unique_name: str, size: int) -> None:
    """The descriptor given at create (up to 64 KiB) reads back the same from the creator and any opener."""
    desc = bytes((i * 7) & 0xFF for i in range(size))
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=4, descriptor=desc) as ch:
        assert ch.descriptor == desc
        with shmchan.Channel.open(unique_name) as other:
            assert other.descriptor == desc
            w, r = ch.writer(), other.reader()
            w.send(b"payload after the descriptor")
            assert r.recv_bytes(timeout=0) == b"payload after the descriptor"


@pytest.mark.parametrize("desc", [None, b""])
def test_no_descriptor_reads_back_empty(unique_name: str, desc: bytes | None) -> None:
    """Without a descriptor (None or b""), ch.descriptor is b"" on both ends."""
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=4, descriptor=desc) as ch:
        assert ch.descriptor == b""
        with shmchan.Channel.open(unique_name) as other:
            assert other.descriptor == b""


@pytest.mark.parametrize("make", [bytearray, memoryview], ids=["bytearray", "memoryview"])
def test_descriptor_accepts_bytes_like_objects(unique_name: str, make) -> None:
    """A bytearray or memoryview works as a descriptor and reads back as bytes."""
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=4, descriptor=make(b"schema:v1")) as ch:
        assert ch.descriptor == b"schema:v1"
        assert type(ch.descriptor) is bytes


def test_descriptor_over_64_kib_raises_valueerror(unique_name: str) -> None:
    """A descriptor of more than 64 KiB raises ValueError and creates nothing."""
    with pytest.raises(ValueError, match="descriptor"):
        shmchan.Channel.create(unique_name, slot_size=64, capacity=4, descriptor=bytes(65537))
    assert not os.path.exists(shm_path(unique_name))


def test_descriptor_of_file_channel_persists(tmp_path) -> None:
    """A file-backed channel's descriptor is read back after the creator closed and the file is reopened."""
    p = tmp_path / "chan"
    with shmchan.Channel.create(path=p, slot_size=64, capacity=4, descriptor=b"dtype=uint8;shape=3"):
        pass
    with shmchan.Channel.open(path=p) as ch:
        assert ch.descriptor == b"dtype=uint8;shape=3"


def test_descriptor_is_a_copy_taken_at_create(unique_name: str) -> None:
    """Changing the buffer given as descriptor after create changes nothing in the channel."""
    desc = bytearray(b"original")
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=4, descriptor=desc) as ch:
        desc[:] = b"changed!"
        with shmchan.Channel.open(unique_name) as other:
            assert other.descriptor == b"original"
        assert ch.descriptor == b"original"
