"""Views are leases: a view kept after its message is released pins the slot and never shows newer
data; closing with live views raises BufferError; leaked handles are cleaned up at exit."""

from __future__ import annotations

import gc
import os
import sys

import numpy as np
import pytest

import shmchan
from shmchan._layout import shm_path

VIEW_MAKERS = {
    "memoryview": lambda msg: msg.buffer,
    "slice": lambda msg: msg.buffer[2:10],
    "frombuffer": lambda msg: np.frombuffer(msg.buffer, np.uint8),
    "ndarray-buffer": lambda msg: np.ndarray((msg.nbytes,), np.uint8, buffer=msg.buffer),
    "asarray": lambda msg: np.asarray(msg.buffer),
    "msg.ndarray": lambda msg: msg.ndarray(),
    "ndarray-slice": lambda msg: msg.ndarray()[3:7],
    "ndarray-reshaped": lambda msg: msg.ndarray((4, 16)).T,
}


def _payload(i: int) -> bytes:
    return bytes([i & 0xFF]) * 64


@pytest.mark.parametrize("kind", list(VIEW_MAKERS))
def test_view_kept_after_release_keeps_old_bytes_and_pins_slot(unique_name: str, kind: str) -> None:
    """A view kept after release keeps its bytes and pins the slot (writer full) until it is deleted."""
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=4) as ch:
        w, r = ch.writer(), ch.reader()
        w.send(_payload(0xAA))
        msg = r.recv(timeout=0)
        view = VIEW_MAKERS[kind](msg)
        expected = bytes(view)
        assert set(expected) == {0xAA}
        msg.release()
        del msg

        sent = received = 0
        blocked = False
        for i in range(1, 100):
            try:
                w.send(_payload(i), timeout=0)
                sent += 1
            except shmchan.ChannelFullError:
                blocked = True
                break
            assert r.recv_bytes(timeout=0) == _payload(i)
            received += 1
            assert bytes(view) == expected
        assert blocked, "the writer reused the slot a live view pins"
        assert sent == received == 3  # the other three slots still cycle... once each
        assert bytes(view) == expected
        assert ch.stats().tail == 0
        # the reader holds every slot now (one pinned, three released behind it)
        with pytest.raises(BufferError):
            r.recv(timeout=0)
        assert bytes(view) == expected

        del view
        with pytest.raises(shmchan.ChannelEmptyError):
            r.recv_bytes(timeout=0)  # hands the pinned slot back first
        assert ch.stats().tail == 4
        for i in range(100, 112):
            w.send(_payload(i), timeout=0)
            assert r.recv_bytes(timeout=0) == _payload(i)


def test_view_pins_slot_until_last_view_dies(unique_name: str) -> None:
    """With two views of one message, the slot stays pinned until both are gone."""
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=1) as ch:
        w, r = ch.writer(), ch.reader()
        w.send(b"first")
        with r.recv(timeout=0) as msg:
            a = msg.buffer
            b = msg.ndarray()
        del a
        with pytest.raises(BufferError):
            r.recv(timeout=0)
        with pytest.raises(shmchan.ChannelFullError):
            w.send(b"second", timeout=0)
        assert b.tobytes() == b"first"
        del b
        with pytest.raises(shmchan.ChannelEmptyError):
            r.recv(timeout=0)
        w.send(b"second", timeout=0)
        assert r.recv_bytes(timeout=0) == b"second"


def test_recv_raises_buffererror_instead_of_hanging_when_reader_pins_every_slot(unique_name: str) -> None:
    """With capacity 1 and a view kept, recv(timeout=None) raises BufferError rather than waiting forever."""
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=1) as ch:
        w, r = ch.writer(), ch.reader()
        w.send(b"pinned")
        with r.recv(timeout=0) as msg:
            arr = msg.ndarray()
        with pytest.raises(BufferError, match="release messages"):
            r.recv(timeout=None)
        with pytest.raises(BufferError):
            r.recv_bytes(timeout=None)
        with pytest.raises(BufferError):
            r.recv_batch(1, timeout=None)
        assert arr.tobytes() == b"pinned"
        del arr


def test_unreleased_messages_filling_the_ring_raise_buffererror(unique_name: str) -> None:
    """A reader holding every slot with unreleased messages gets BufferError, not a hang."""
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=2) as ch:
        w, r = ch.writer(), ch.reader()
        w.send(b"a")
        w.send(b"b")
        held = [r.recv(timeout=0), r.recv(timeout=0)]
        with pytest.raises(BufferError):
            r.recv(timeout=None)
        held[0].release()
        with pytest.raises(shmchan.ChannelEmptyError):
            r.recv(timeout=0)
        held[1].release()


def test_close_with_live_reader_view_closes_at_once_and_the_view_keeps_its_bytes(unique_name: str) -> None:
    """close() with a live view of a received message never fails: the handle is closed at once, the
    name is gone, the view keeps its bytes, and the message stays held (another handle cannot take the
    reader, the writer cannot reuse the slot) until the view dies; then it is released."""
    ch = shmchan.Channel.create(unique_name, slot_size=64, capacity=1, persist=True)
    other = shmchan.Channel.open(unique_name)
    try:
        w = other.writer()
        w.send(b"keep me")
        r = ch.reader()
        with r.recv(timeout=0) as msg:
            view = msg.ndarray()
        ch.close()
        assert ch.closed and r.closed
        with pytest.raises(shmchan.ChannelClosedError):
            r.recv(timeout=0)
        with pytest.raises(shmchan.ChannelClosedError):
            ch.stats()
        assert view.tobytes() == b"keep me"
        with pytest.raises(shmchan.ChannelBusyError):
            other.reader()  # the closed handle's reader still holds the viewed message
        with pytest.raises(shmchan.ChannelFullError):
            w.send(b"newer", timeout=0)  # its slot is pinned: the view never shows newer data
        assert view.tobytes() == b"keep me"
        del view
        w.send(b"newer", timeout=0)  # released when the view died
        r2 = other.reader()
        assert r2.recv_bytes(timeout=0) == b"newer"
    finally:
        other.unlink()
        other.close()


def test_close_with_live_writer_view_ends_the_stream_and_keeps_the_writer_until_the_view_dies(
        unique_name: str) -> None:
    """A writable slot view kept after commit does not block close(): readers see the stream end at
    once, but no other writer can attach (and overwrite what the view shows) until it dies."""
    ch = shmchan.Channel.create(unique_name, slot_size=64, capacity=4)
    other = shmchan.Channel.open(unique_name)
    try:
        w = ch.writer()
        with w.reserve(8) as slot:
            arr = slot.ndarray()
            arr[:] = 1
        ch.close()
        assert w.closed
        r = other.reader()
        assert r.recv_bytes(timeout=0) == bytes([1]) * 8
        with pytest.raises(shmchan.ChannelEndedError):
            r.recv(timeout=1)
        with pytest.raises(shmchan.ChannelBusyError):
            other.writer()
        assert (arr == 1).all()
        arr[:] = 2  # still this process's memory: it never raises or crashes
        del arr
        w2 = other.writer()
        w2.send(b"again")
        assert r.recv_bytes(timeout=1) == b"again"
    finally:
        other.close()


def test_a_view_outlives_its_channel_handle_everywhere(unique_name: str) -> None:
    """Views from every path (memoryview, slices, numpy arrays of both ends) outlive close() and the
    handle's collection, and the mapping is unmapped once the last of them is gone."""
    ch = shmchan.Channel.create(unique_name, slot_size=64, capacity=4)
    w, r = ch.writer(), ch.reader()
    w.send(b"A" * 64)
    with w.reserve(64) as slot:
        wview = slot.buffer[8:16]
        slot.buffer[:] = b"B" * 64
    msg = r.recv(timeout=0)
    views = [VIEW_MAKERS[k](msg) for k in VIEW_MAKERS]
    msg.release()
    ch.close()
    del ch, w, r, msg, slot
    gc.collect()
    assert all(set(bytes(v)) == {ord("A")} for v in views)
    assert bytes(wview) == b"B" * 8
    assert _mapped(unique_name) > 0  # the views keep the mapping (the name is already unlinked)
    del views, wview
    gc.collect()
    assert _mapped(unique_name) == 0
    assert not os.path.exists(shm_path(unique_name))


def _mapped(name: str) -> int:
    """How many of this process's mappings are of channel ``name``."""
    with open("/proc/self/maps") as f:
        return sum(1 for line in f if line.rstrip().endswith(f"/shmchan.{name}")
                   or line.rstrip().endswith(f"/shmchan.{name} (deleted)"))


def test_writer_view_kept_past_commit_blocks_reuse_of_its_slot(unique_name: str) -> None:
    """Reserving the slot again while a view from its previous use lives raises BufferError."""
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=2) as ch:
        w, r = ch.writer(), ch.reader()
        with w.reserve(4) as slot:
            kept = slot.buffer
            kept[:] = b"zero"
        w.send(b"one")
        assert r.recv_bytes(timeout=0) == b"zero"
        assert r.recv_bytes(timeout=0) == b"one"
        with pytest.raises(BufferError, match="still alive"):
            w.reserve(4, timeout=0)
        del kept
        w.send(b"two")
        assert r.recv_bytes(timeout=0) == b"two"


def test_reservation_refused_for_live_view_is_not_counted_as_abort(unique_name: str) -> None:
    """A reserve() refused with BufferError (a view of the slot lives) is not counted in stats().aborts."""
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=1) as ch:
        w, r = ch.writer(), ch.reader()
        with w.reserve(4) as slot:
            kept = slot.buffer
        assert r.recv_bytes(timeout=0) == bytes(kept)
        with pytest.raises(BufferError):
            w.reserve(4, timeout=0)
        aborts = ch.stats().aborts
        del kept
        assert aborts == 0


def test_saved_payload_value_persists_after_sample_drop(unique_name: str) -> None:
    """Port of iceoryx2's test: a payload view saved from a dropped message keeps its value."""
    marker = 0xCAFEBABEDEADBEEF
    overwrite = 0xDEADC0FFEE
    with shmchan.Channel.create(unique_name, slot_size=32, capacity=1) as ch:
        w, r = ch.writer(), ch.reader()
        with w.reserve(32) as slot:
            slot.ndarray((4,), np.uint64)[:] = marker
        sample = r.recv(timeout=0)
        payload_ref = sample.ndarray((4,), np.uint64)
        del sample
        gc.collect()

        # capacity 1: the only slot is pinned by payload_ref, so the writer cannot overwrite it
        with pytest.raises(shmchan.ChannelFullError):
            w.reserve(32, timeout=0)
        assert payload_ref[0] == marker, f"saved payload was overwritten: {int(payload_ref[0]):#x}"

        del payload_ref
        gc.collect()
        with pytest.raises(shmchan.ChannelEmptyError):
            r.recv(timeout=0)
        with w.reserve(32, timeout=0) as slot:
            slot.ndarray((4,), np.uint64)[:] = overwrite
        with r.recv(timeout=0) as sample2:
            assert sample2.ndarray((4,), np.uint64)[0] == overwrite


def test_accumulated_payload_references_each_keep_own_data(unique_name: str) -> None:
    """Port of iceoryx2's test: views saved from several messages each keep their own data."""
    n = 5
    with shmchan.Channel.create(unique_name, slot_size=32, capacity=8) as ch:
        w, r = ch.writer(), ch.reader()
        saved = []
        for i in range(n):
            with w.reserve(32) as slot:
                slot.ndarray((4,), np.uint64)[:] = [(i + 1) * 1_000_000 + j for j in range(4)]
            with r.recv(timeout=0) as sample:
                saved.append(sample.ndarray((4,), np.uint64))
        gc.collect()
        for i in range(3):  # more traffic through the free slots
            w.send(b"filler%d" % i, timeout=0)
            assert r.recv_bytes(timeout=0) == b"filler%d" % i
        for i, payload in enumerate(saved):
            assert payload.tolist() == [(i + 1) * 1_000_000 + j for j in range(4)]
        del saved, payload


def test_dropping_payload_returns_slot_to_writer(unique_name: str) -> None:
    """Port of iceoryx2's test: once the last view of a message dies, its slot goes back to the writer."""
    with shmchan.Channel.create(unique_name, slot_size=8, capacity=2) as ch:
        w, r = ch.writer(), ch.reader()
        for i in range(2):
            w.send(bytes([i + 1]))
        with r.recv(timeout=0) as s1:
            p1 = s1.buffer
        with r.recv(timeout=0) as s2:
            p2 = s2.buffer
        with pytest.raises(shmchan.ChannelFullError):
            w.send(b"\x03", timeout=0)
        del p1
        gc.collect()
        with pytest.raises(shmchan.ChannelEmptyError):
            r.recv(timeout=0)  # sweeps: slot 0 goes back
        w.send(b"\x03", timeout=0)
        assert p2[0] == 2
        assert r.recv_bytes(timeout=0) == b"\x03"
        del p2


def test_garbage_collected_message_is_released(unique_name: str) -> None:
    """A message dropped without release() is released when it is collected."""
    with shmchan.Channel.create(unique_name, slot_size=8, capacity=1) as ch:
        w, r = ch.writer(), ch.reader()
        w.send(b"x")
        r.recv(timeout=0)  # dropped at once
        w.send(b"y", timeout=0)
        assert r.recv_bytes(timeout=0) == b"y"


def _run(mode: str, *args: object, flags: tuple[str, ...] = ()) -> tuple[int, list[str], str]:
    import subprocess

    proc = subprocess.run(
        [sys.executable, *flags, "tests/peers.py", mode, *map(str, args)],
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        capture_output=True,
        text=True,
        timeout=60,
    )
    return proc.returncode, proc.stdout.splitlines(), proc.stderr


def test_process_exiting_with_live_numpy_view_exits_cleanly(unique_name: str) -> None:
    """A creator exiting unclosed with a live numpy view of a message exits 0, quietly, leaving nothing."""
    rc, out, err = _run("leak_view", unique_name)
    assert rc == 0, err
    assert out == ["ready 0123456789abcdef"]
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert not os.path.exists(shm_path(unique_name))


def test_opener_exiting_with_live_numpy_view_exits_cleanly(unique_name: str) -> None:
    """An opener exiting unclosed with a live numpy view exits 0 and the creator's channel still works."""
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=4) as ch:
        w = ch.writer()
        w.send(b"0123456789abcdef")
        rc, out, err = _run("leak_opened_view", unique_name)
        assert rc == 0, err
        assert out == ["ready 0123456789abcdef"]
        assert "Traceback" not in err and "Exception ignored" not in err, err
        assert os.path.exists(shm_path(unique_name))
        # the dead reader never released the message: a new reader gets it again
        r = ch.reader()
        assert r.recv_bytes(timeout=0) == b"0123456789abcdef"
        w.send(b"after", timeout=0)
        assert r.recv_bytes(timeout=0) == b"after"


LEAK_MESSAGE_SCRIPT = """
import sys
import shmchan
ch = shmchan.Channel.create(sys.argv[1], slot_size=64, capacity=4)
w = ch.writer()
r = ch.reader()
w.send(b"0123456789abcdef")
msg = r.recv()
print("ready", msg.nbytes)
"""


def test_script_exiting_with_unreleased_message_exits_cleanly(unique_name: str, tmp_path) -> None:
    """A script exiting unclosed with an unreleased message exits 0 without a crash and leaves nothing."""
    import subprocess

    script = tmp_path / "leak_message.py"
    script.write_text(LEAK_MESSAGE_SCRIPT)
    failures = []
    for pad in range(8):
        name = unique_name + "-" + "x" * pad
        proc = subprocess.run([sys.executable, str(script), name], capture_output=True, text=True, timeout=60)
        if (
            proc.returncode != 0
            or proc.stdout.splitlines() != ["ready 16"]
            or "Traceback" in proc.stderr
            or "Exception ignored" in proc.stderr
            or os.path.exists(shm_path(name))
        ):
            failures.append((name, proc.returncode, proc.stderr[-300:]))
    assert not failures, f"{len(failures)} of 8 runs failed (name, exit code, stderr): {failures}"


def test_unclosed_channel_warns_in_dev_mode_and_creator_unlinks(unique_name: str) -> None:
    """Under -X dev an unclosed creator gets a ResourceWarning at exit and its finalizer removes the name."""
    rc, out, err = _run("leak_channel", unique_name, "create", flags=("-X", "dev"))
    assert rc == 0, err
    assert out == ["ready"]
    assert "ResourceWarning: unclosed shmchan channel" in err
    assert unique_name in err
    assert not os.path.exists(shm_path(unique_name))


def test_unclosed_channel_warning_is_an_error_under_w_error(unique_name: str) -> None:
    """Under -W error::ResourceWarning the unclosed creator's warning shows and the name is still removed."""
    _, out, err = _run(
        "leak_channel", unique_name, "create", flags=("-X", "dev", "-W", "error::ResourceWarning")
    )
    left_behind = os.path.exists(shm_path(unique_name))
    if left_behind:
        shmchan.unlink(unique_name)  # keep later tests clean; the assertion below reports it
    assert out == ["ready"]
    assert "ResourceWarning: unclosed shmchan channel" in err
    assert not left_behind, "the creator's finalizer left the channel behind"


def test_dropped_channel_warns_and_unlinks_immediately(unique_name: str) -> None:
    """Dropping the last reference to an unclosed creator warns (under -X dev) and removes the name at once."""
    rc, out, err = _run("drop_channel", unique_name, flags=("-X", "dev"))
    assert rc == 0, err
    assert out == ["dropped"]
    assert "ResourceWarning" in err
    assert not os.path.exists(shm_path(unique_name))


def test_unclosed_opener_warns_but_never_unlinks(unique_name: str) -> None:
    """A process that opened (not created) a channel and exits unclosed warns but leaves the channel."""
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=4) as ch:
        for flags in (("-X", "dev"), ("-X", "dev", "-W", "error::ResourceWarning")):
            _, out, err = _run("leak_channel", unique_name, "open", flags=flags)
            assert out == ["ready"]
            assert "ResourceWarning: unclosed shmchan channel" in err
            assert os.path.exists(shm_path(unique_name))
        w, r = ch.writer(), ch.reader()
        w.send(b"ok")
        assert r.recv_bytes(timeout=0) == b"ok"
