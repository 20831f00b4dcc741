"""Broadcast channels: one writer, many readers, block and overwrite policies."""

from __future__ import annotations

import json
import signal
import time

import pytest

import shmchan

from peers import bcast_message, bcast_ok

# ---- creating and opening ----


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"capacity": 1}, "at least 2"),
        ({"max_readers": 0}, "max_readers"),
        ({"max_readers": 1025}, "max_readers"),
        ({"max_readers": True}, "max_readers"),
        ({"policy": "drop"}, "policy"),
        ({"capacity": 6}, "power of two"),
    ],
)
def test_create_refuses_bad_arguments(unique_name: str, kwargs: dict, match: str) -> None:
    args = {"slot_size": 64, "capacity": 4} | kwargs
    with pytest.raises(ValueError, match=match):
        shmchan.Broadcast.create(unique_name, **args)


def test_open_returns_the_class_of_the_kind(unique_name: str) -> None:
    with shmchan.Broadcast.create(unique_name, slot_size=64, capacity=4, max_readers=3, policy="overwrite") as b:
        assert (b.policy, b.max_readers, b.capacity) == ("overwrite", 3, 4)
        with shmchan.Channel.open(unique_name) as other:
            assert isinstance(other, shmchan.Broadcast)
            assert (other.policy, other.max_readers) == ("overwrite", 3)
            assert other.info is None
        with pytest.raises(shmchan.IncompatibleChannelError, match="broadcast"):
            shmchan.State.open(unique_name)


def test_broadcast_open_refuses_a_spsc_channel(unique_name: str) -> None:
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=4), \
            pytest.raises(shmchan.IncompatibleChannelError, match="spsc"):
        shmchan.Broadcast.open(unique_name)


def test_descriptor_of_another_kind_is_refused(unique_name: str) -> None:
    """A ChannelInfo that calls the channel another kind than its header does is corrupt."""
    from shmchan import schema

    info = schema.ChannelInfo("broadcast", 64, 4, 4096)
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=4,
                                descriptor=schema.encode_channel_info(info)) as ch, \
            pytest.raises(shmchan.CorruptChannelError, match="broadcast channel, its header spsc"):
        _ = ch.info


def test_channel_info_records_the_kind(unique_name: str) -> None:
    with shmchan.Broadcast.create(unique_name, slot_size=64, capacity=4, metadata={"cam": "front"}) as b:
        assert b.info is not None
        assert (b.info.kind, b.info.metadata) == ("broadcast", {"cam": "front"})


# ---- block policy ----


def _open_reader(name: str, start: str = "latest") -> tuple[shmchan.Broadcast, shmchan.Reader]:
    h = shmchan.Broadcast.open(name)
    return h, h.reader(start=start)


def test_every_reader_sees_every_message_in_order(unique_name: str) -> None:
    with shmchan.Broadcast.create(unique_name, slot_size=64, capacity=4, max_readers=4) as b:
        w = b.writer()
        ends = [_open_reader(unique_name) for _ in range(3)]
        for i in range(10):
            w.send(b"m%d" % i)
            for _, r in ends:
                assert r.recv_bytes(timeout=0) == b"m%d" % i
        for h, r in ends:
            r.close()
            h.close()


def test_block_writer_waits_for_the_slowest_reader(unique_name: str) -> None:
    with shmchan.Broadcast.create(unique_name, slot_size=64, capacity=4, max_readers=2) as b:
        w = b.writer()
        (h1, fast), (h2, slow) = _open_reader(unique_name), _open_reader(unique_name)
        for i in range(4):
            w.send(b"%d" % i)
            assert fast.recv_bytes(timeout=0) == b"%d" % i
        with pytest.raises(shmchan.ChannelFullError):
            w.send(b"4", timeout=0)
        with pytest.raises(shmchan.ChannelTimeoutError):
            w.send(b"4", timeout=0.05)
        assert slow.recv_bytes(timeout=0) == b"0"
        w.send(b"4", timeout=0)  # one slot free again
        assert b.stats().full_waits == 2
        assert b.stats().tail == 1
        slow.close()  # a reader that leaves holds nothing back
        h2.close()
        for i in range(5, 9):
            w.send(b"%d" % i, timeout=0)
            assert fast.recv_bytes(timeout=0) == b"%d" % (i - 1)
        fast.close()
        h1.close()


def test_writer_without_readers_never_waits(unique_name: str) -> None:
    with shmchan.Broadcast.create(unique_name, slot_size=64, capacity=2) as b:
        w = b.writer()
        for i in range(100):
            w.send(b"%d" % i, timeout=0)
        assert b.stats().head == 100


def test_start_latest_and_oldest(unique_name: str) -> None:
    with shmchan.Broadcast.create(unique_name, slot_size=64, capacity=4, max_readers=3) as b:
        w = b.writer()
        h0, r0 = _open_reader(unique_name)  # holds the ring: nothing it has not read is overwritten
        for i in range(3):
            w.send(b"%d" % i)
        h1, latest = _open_reader(unique_name, "latest")
        h2, oldest = _open_reader(unique_name, "oldest")
        assert (latest.position, oldest.position) == (2, 0)
        assert latest.recv_bytes(timeout=0) == b"2"
        assert [oldest.recv_bytes(timeout=0) for _ in range(3)] == [b"0", b"1", b"2"]
        with pytest.raises(shmchan.ChannelEmptyError):
            latest.recv(timeout=0)
        for h, r in ((h0, r0), (h1, latest), (h2, oldest)):
            r.close()
            h.close()


def test_reader_places_are_limited_and_reused(unique_name: str) -> None:
    with shmchan.Broadcast.create(unique_name, slot_size=64, capacity=4, max_readers=2) as b:
        a = _open_reader(unique_name)
        c = _open_reader(unique_name)
        with shmchan.Broadcast.open(unique_name) as h:
            with pytest.raises(shmchan.ChannelBusyError, match="all 2 reader places"):
                h.reader()
            a[1].close()
            r = h.reader()  # the place a left
            places = b.readers()
            assert [p.state for p in places] == ["attached", "attached"]
            assert all(p.alive for p in places)
            r.close()
        with pytest.raises(shmchan.ChannelBusyError, match="this handle"):
            c[0].reader()
        c[1].close()
        for h2, _ in (a, c):
            h2.close()
        assert [p.state for p in b.readers()] == ["closed", "closed"]


def test_reader_sees_the_end_of_the_stream(unique_name: str) -> None:
    with shmchan.Broadcast.create(unique_name, slot_size=64, capacity=4) as b:
        w = b.writer()
        h, r = _open_reader(unique_name)
        w.send(b"a")
        w.send(b"b")
        w.close()
        assert [m.tobytes() for m in r] == [b"a", b"b"]
        r.close()
        h.close()


# ---- overwrite policy ----


def test_overwrite_reader_learns_what_it_lost(unique_name: str) -> None:
    with shmchan.Broadcast.create(unique_name, slot_size=64, capacity=4, policy="overwrite") as b:
        w = b.writer()
        h, r = _open_reader(unique_name)
        for i in range(10):
            w.send(b"%d" % i, timeout=0)  # never waits
        msg = r.recv(timeout=0)
        # positions 0..9 were sent; the ring holds 6..9: the reader lost 0..5
        assert (msg.seq, msg.lost, msg.tobytes()) == (6, 6, b"6")
        msg.release()
        assert [r.recv_bytes(timeout=0) for _ in range(3)] == [b"7", b"8", b"9"]
        assert r.lost == 6
        assert b.readers()[0].lost == 6
        r.close()
        h.close()


def test_overwritten_held_message_is_detected(unique_name: str) -> None:
    with shmchan.Broadcast.create(unique_name, slot_size=64, capacity=4, policy="overwrite") as b:
        w = b.writer()
        h, r = _open_reader(unique_name)
        w.send(b"first")
        msg = r.recv(timeout=0)
        assert msg.intact
        view = msg.buffer
        for i in range(4):
            w.send(b"later%d" % i)  # the fourth rewrites msg's slot
        assert not msg.intact
        assert bytes(view) == b"later"  # what a view shows now: the next message's bytes
        del view
        with pytest.raises(shmchan.LappedError, match="overwritten"):
            msg.check()
        with pytest.raises(shmchan.LappedError):
            msg.release()
        assert msg.released
        assert r.lost == 1
        r.close()
        h.close()


def test_with_block_reports_an_overwrite_unless_already_failing(unique_name: str) -> None:
    with shmchan.Broadcast.create(unique_name, slot_size=64, capacity=2, policy="overwrite") as b:
        w = b.writer()
        h, r = _open_reader(unique_name)
        w.send(b"x")
        with pytest.raises(shmchan.LappedError), r.recv(timeout=0):
            w.send(b"y")
            w.send(b"z")
        w.send(b"p")
        with pytest.raises(KeyError), r.recv(timeout=0):
            w.send(b"q")
            w.send(b"s")
            raise KeyError("the block's own error wins")
        r.close()
        h.close()


def test_copying_receives_never_return_an_overwritten_copy(unique_name: str) -> None:
    with shmchan.Broadcast.create(unique_name, slot_size=64, capacity=4, policy="overwrite") as b:
        w = b.writer()
        h, r = _open_reader(unique_name)
        for i in range(9):
            w.send(bcast_message(i, 64))
        buf = bytearray(64)
        n = r.recv_into(buf, timeout=0)
        assert bcast_ok(buf[:n], 5)
        got = [r.recv_bytes(timeout=0) for _ in range(3)]
        assert [bcast_ok(g, p) for g, p in zip(got, (6, 7, 8), strict=True)] == [True, True, True]
        assert r.lost == 5
        r.close()
        h.close()


def test_recv_batch_carries_lost(unique_name: str) -> None:
    with shmchan.Broadcast.create(unique_name, slot_size=64, capacity=4, policy="overwrite") as b:
        w = b.writer()
        h, r = _open_reader(unique_name)
        for i in range(12):
            w.send(b"%d" % i)
        batch = r.recv_batch(4, timeout=0)
        assert [(m.seq, m.lost) for m in batch] == [(8, 8), (9, 0), (10, 0), (11, 0)]
        for m in batch:
            m.release()
        r.close()
        h.close()


# ---- many processes ----


def _readers(spawn, name: str, n: int, delay_us: list[int]) -> list:
    peers = [spawn("bcast_reader", name, "oldest", delay_us[i], -1) for i in range(n)]
    for p in peers:
        p.expect("ready")
    return peers


def _report(peer) -> dict:  # type: ignore[no-untyped-def]
    code, rest, err = peer.finish(timeout=120)
    assert code == 0, err
    return json.loads(rest[-1])


@pytest.mark.timeout(240)
@pytest.mark.parametrize("nreaders", [1, 4])
def test_block_stress_every_reader_gets_everything(spawn, unique_name: str, nreaders: int) -> None:
    """1 -> N processes, block policy, one reader slow: every reader accepts every message, intact."""
    count = 20000
    with shmchan.Broadcast.create(unique_name, slot_size=256, capacity=16, max_readers=4) as b:
        w = b.writer()
        peers = _readers(spawn, unique_name, nreaders, [0, 0, 0, 20][:nreaders] if nreaders > 1 else [0])
        for pos in range(count):
            w.send(bcast_message(pos, 256), timeout=60)
        w.close()
        for p in peers:
            rep = _report(p)
            assert rep == {"accepted": count, "bad": 0, "lapped": 0, "gaps": 0, "first": 0, "last": count - 1,
                           "lost": 0, "lost_seen": 0}


@pytest.mark.timeout(240)
@pytest.mark.parametrize(("nreaders", "kill"), [(1, False), (4, False), (4, True)])
def test_overwrite_stress_never_torn(spawn, unique_name: str, nreaders: int, kill: bool) -> None:
    """1 -> N processes, overwrite policy, the writer never waits and some readers are slow (and one
    is killed half-way): what a reader accepts is always intact, and accepted + lapped + lost
    accounts for every position."""
    count = 60000
    with shmchan.Broadcast.create(unique_name, slot_size=1024, capacity=8, max_readers=4,
                                  policy="overwrite") as b:
        w = b.writer()
        peers = _readers(spawn, unique_name, nreaders, [0, 50, 0, 200][:nreaders])
        for pos in range(count):
            w.send(bcast_message(pos, 1024), timeout=0)
            if kill and pos == count // 2:
                peers[2].kill(signal.SIGKILL)
        w.close()
        if kill:
            peers[2].proc.wait(timeout=10)
            del peers[2]
        reports = [_report(p) for p in peers]
        for rep in reports:
            assert rep["bad"] == 0 and rep["gaps"] == 0
            assert rep["last"] == count - 1
            delivered = rep["accepted"] + rep["lapped"]
            assert delivered + rep["lost_seen"] == rep["last"] - rep["first"] + 1
            assert rep["lost"] == rep["lost_seen"] + rep["lapped"]
        if nreaders > 1:
            assert reports[1]["lost"] > 0, "the slow reader was never lapped: the test proves nothing"


@pytest.mark.timeout(240)
def test_killed_reader_does_not_stall_the_writer(spawn, unique_name: str) -> None:
    """Block policy: a reader killed while the ring is full stops holding the writer back (its
    liveness lock is gone); the live readers still get every message."""
    count = 3000
    with shmchan.Broadcast.create(unique_name, slot_size=256, capacity=8, max_readers=3) as b:
        w = b.writer()
        live = _readers(spawn, unique_name, 2, [0, 0])
        doomed = spawn("bcast_reader", unique_name, "oldest", 60_000_000, -1)  # a minute per message: stuck
        doomed.expect("ready")
        pos = 0
        while True:  # fill the ring behind the stuck reader
            try:
                w.send(bcast_message(pos, 256), timeout=0.5)
            except shmchan.ChannelTimeoutError:
                break
            pos += 1
        assert pos <= 8 + 1, "the writer was not held back by the stuck reader"
        doomed.kill(signal.SIGKILL)
        doomed.proc.wait(timeout=10)
        t0 = time.monotonic()
        w.send(bcast_message(pos, 256), timeout=30)
        waited = time.monotonic() - t0
        for later in range(pos + 1, count):
            w.send(bcast_message(later, 256), timeout=30)
        assert waited < 5, f"the writer stayed blocked {waited:.2f} s behind a dead reader"
        w.close()
        for p in live:
            rep = _report(p)
            assert (rep["accepted"], rep["bad"], rep["gaps"], rep["lost"]) == (count, 0, 0, 0)
        dead = [p for p in b.readers() if p.pid == doomed.pid]
        assert dead and not dead[0].alive
        s = b.stats()
        assert s.tail == s.head == count  # the dead reader's stuck position holds nobody back
        assert not s.reader_alive  # the live ones closed; the dead one is not counted as alive
