"""Real producer and consumer processes: nothing lost, duplicated, reordered or torn; blocked peers wake."""

from __future__ import annotations

import json
import time

import pytest

import shmchan

from peers import FRAME_BYTES


def _run_pair(
    spawn, name: str, producer: str, consumer: str, count: int, deadline: float, *extra: object
) -> dict:
    """Run a consumer and a producer process over channel ``name``; return the consumer's report."""
    cons = spawn(consumer, name)
    cons.expect("ready", timeout=30)
    prod = spawn(producer, name, count, *extra)
    prod.expect("ready", timeout=30)
    rc, out, err = prod.finish(timeout=deadline)
    assert rc == 0, f"producer failed: {err}"
    assert out == ["done"]
    rc, out, err = cons.finish(timeout=deadline)
    assert rc == 0, f"consumer failed: {err}"
    assert len(out) == 1, out
    return json.loads(out[0])


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_million_small_messages_arrive_complete_in_order(unique_name: str, spawn) -> None:
    """1,000,000 small messages (seq + CRC) cross processes with no loss, duplication, reordering or damage."""
    count = 1_000_000
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=256) as ch:
        report = _run_pair(spawn, unique_name, "small_producer", "small_consumer", count, 240)
        assert report == {"count": count, "error": None}
        st = ch.stats()
        assert st.messages_written == st.messages_read == count
        assert st.head == st.tail == count
        assert st.bytes_written == st.bytes_read == sum(8 + i % 57 for i in range(count))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_thousand_1080p_frames_written_in_place_arrive_intact(unique_name: str, spawn) -> None:
    """2,000 1080p frames written in place by one process arrive whole and in order in another."""
    count = 2_000
    with shmchan.Channel.create(unique_name, slot_size=FRAME_BYTES, capacity=8) as ch:
        report = _run_pair(spawn, unique_name, "frame_producer", "frame_consumer", count, 240)
        assert report == {"count": count, "error": None}
        st = ch.stats()
        assert st.messages_written == st.messages_read == count
        assert st.bytes_written == st.bytes_read == count * FRAME_BYTES


def test_small_message_checker_catches_a_lost_message(unique_name: str, spawn) -> None:
    """The small-message consumer reports the first error when a message is missing (checks the check)."""
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=16):
        report = _run_pair(spawn, unique_name, "small_producer", "small_consumer", 1000, 60, 700)
        assert report == {"count": 999, "error": "message 700: sequence number 701"}


def test_frame_checker_catches_one_wrong_byte(unique_name: str, spawn) -> None:
    """The frame consumer reports a frame with a single wrong byte (checks the check)."""
    with shmchan.Channel.create(unique_name, slot_size=FRAME_BYTES, capacity=8):
        report = _run_pair(spawn, unique_name, "frame_producer", "frame_consumer", 20, 60, 13)
        assert report["count"] == 20
        assert report["error"] is not None and report["error"].startswith("frame 13: word 777599")


def _wait_until(pred, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_reader_blocked_without_timeout_in_child_wakes_when_parent_sends(unique_name: str, spawn) -> None:
    """A child blocked in recv(timeout=None) receives the message the parent sends later."""
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=4) as ch:
        w = ch.writer()
        child = spawn("blocked_recv", unique_name)
        child.expect("ready")
        _wait_until(lambda: ch.stats().empty_waits >= 1)  # the child is waiting
        time.sleep(0.3)  # ... and asleep past its spin phase
        w.send(b"wake up")
        assert child.readline(timeout=10) == "got wake up"
        rc, _, err = child.finish()
        assert rc == 0, err


def test_reader_blocked_in_child_sees_end_when_parent_writer_closes(unique_name: str, spawn) -> None:
    """A child blocked in recv(timeout=None) gets ChannelEndedError when the parent's writer closes."""
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=4) as ch:
        w = ch.writer()
        child = spawn("blocked_recv", unique_name)
        child.expect("ready")
        _wait_until(lambda: ch.stats().empty_waits >= 1)
        time.sleep(0.3)
        w.close()
        assert child.readline(timeout=10) == "ended"
        rc, _, err = child.finish()
        assert rc == 0, err


def test_writer_blocked_on_full_ring_in_child_wakes_when_parent_receives(unique_name: str, spawn) -> None:
    """A child blocked in send(timeout=None) on a full ring completes once the parent receives."""
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=4) as ch:
        r = ch.reader()
        child = spawn("blocked_send", unique_name, 4)
        child.expect("ready")
        _wait_until(lambda: ch.stats().full_waits >= 1)
        time.sleep(0.3)
        assert r.recv_bytes(timeout=1) == b"msg-0"
        assert child.readline(timeout=10) == "sent"
        rc, _, err = child.finish()
        assert rc == 0, err
        assert [r.recv_bytes(timeout=1) for _ in range(4)] == [b"msg-1", b"msg-2", b"msg-3", b"last"]
        with pytest.raises(shmchan.ChannelEndedError):
            r.recv(timeout=1)


def test_reader_in_parent_iterates_until_child_writer_closes(unique_name: str, spawn) -> None:
    """Iterating a reader yields everything a child writer sent and stops when the child closes."""
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=4) as ch:
        r = ch.reader()
        child = spawn("send", unique_name, 50, "close")
        got = [m.tobytes() for m in r]
        assert got == [b"msg-%d" % i for i in range(50)]
        rc, out, err = child.finish()
        assert rc == 0, err
        assert out == ["done"]


def test_stats_show_peer_in_other_process(unique_name: str, spawn) -> None:
    """stats() shows a writer attached in another process as alive with its pid, and closed after."""
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=4) as ch:
        child = spawn("hold", unique_name, "writer")
        child.expect("ready")
        st = ch.stats()
        assert (st.writer_state, st.writer_pid, st.writer_alive) == ("attached", child.pid, True)
        child.send_line("exit")
        assert child.finish()[0] == 0
        st = ch.stats()
        assert (st.writer_state, st.writer_alive) == ("closed", False)
