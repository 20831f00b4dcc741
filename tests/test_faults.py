"""Faults: peers killed at awkward moments, Ctrl-C, stale and squatted names, damaged headers."""

from __future__ import annotations

import mmap
import multiprocessing
import os
import random
import re
import signal
import stat
import threading
import time

import pytest

import shmchan
from shmchan._layout import FIELDS, LAYOUT_MAJOR, LAYOUT_MINOR, LENS_OFFSET, MAGIC, shm_path

# ---- helpers ----


def poke(name: str, field: str, value: int) -> None:
    """Overwrite one header field of channel ``name`` through a raw mapping of its /dev/shm file."""
    off, size = FIELDS[field]
    poke_at(name, off, size, value)


def poke_at(name: str, off: int, size: int, value: int) -> None:
    with open(shm_path(name), "r+b") as f, mmap.mmap(f.fileno(), 0) as m:
        m[off : off + size] = value.to_bytes(size, "little")


def peek(name: str, field: str) -> int:
    off, size = FIELDS[field]
    with open(shm_path(name), "rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as m:
        return int.from_bytes(m[off : off + size], "little")


class Killer:
    """Kills a peer from another thread after ``delay`` seconds, while this thread is blocked."""

    def __init__(self, peer, delay: float = 0.3, sig: int = signal.SIGKILL) -> None:
        self.when = 0.0
        self._thread = threading.Thread(target=self._run, args=(peer, delay, sig))
        self._thread.start()

    def _run(self, peer, delay: float, sig: int) -> None:
        time.sleep(delay)
        self.when = time.monotonic()
        peer.kill(sig)

    def join(self) -> None:
        self._thread.join()


# ---- peers dying ----


def test_reader_gets_peer_dead_when_writer_killed_during_blocking_recv(unique_name: str, spawn) -> None:
    """A blocked reader gets every committed message, then PeerDeadError within 2 s of the writer's SIGKILL."""
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=8) as ch:
        r = ch.reader()
        child = spawn("send", unique_name, 5, "hold")
        child.expect("ready")
        assert [r.recv_bytes(timeout=5) for _ in range(5)] == [b"msg-%d" % i for i in range(5)]
        killer = Killer(child)
        try:
            with pytest.raises(shmchan.PeerDeadError) as info:
                r.recv(timeout=None)
            latency = time.monotonic() - killer.when
        finally:
            killer.join()
        assert latency < 2.0, f"PeerDeadError came {latency:.2f} s after the kill"
        assert isinstance(info.value, ConnectionError)
        assert str(child.pid) in str(info.value)
        assert child.finish()[0] == -signal.SIGKILL
        st = ch.stats()
        assert (st.writer_state, st.writer_alive) == ("attached", False)
        # it keeps saying so, promptly, rather than hanging
        with pytest.raises(shmchan.PeerDeadError):
            r.recv_bytes(timeout=None)


def test_writer_killed_between_reserve_and_commit_never_delivers_partial_message(
    unique_name: str, spawn
) -> None:
    """A writer killed between reserve and commit never delivers its partial message; a new writer takes over."""
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=8) as ch:
        r = ch.reader()
        child = spawn("reserve_partial", unique_name, 3)
        child.expect("reserved")
        child.kill()
        assert child.finish()[0] == -signal.SIGKILL
        got = [r.recv_bytes(timeout=2) for _ in range(3)]
        assert got == [b"msg-0", b"msg-1", b"msg-2"]
        t0 = time.monotonic()
        with pytest.raises(shmchan.PeerDeadError):
            r.recv(timeout=2)
        assert time.monotonic() - t0 < 2.0
        assert ch.stats().head == 3

        new = spawn("send", unique_name, 4, "close")
        assert new.finish()[0] == 0
        got = [m.tobytes() for m in r]  # ends when the new writer has closed
        assert got == [b"msg-0", b"msg-1", b"msg-2", b"msg-3"]
        assert all(b"PARTIAL" not in g for g in got)
        assert ch.stats().head == 7


def test_new_writer_in_this_process_after_writer_killed(unique_name: str, spawn) -> None:
    """After the writer process dies, this process can attach a writer and the reader resumes."""
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=4) as ch:
        r = ch.reader()
        child = spawn("send", unique_name, 2, "hold")
        child.expect("ready")
        child.kill()
        child.finish()
        w = ch.writer()
        w.send(b"new writer")
        assert [r.recv_bytes(timeout=1) for _ in range(3)] == [b"msg-0", b"msg-1", b"new writer"]
        assert ch.stats().writer_alive


def test_writer_gets_peer_dead_when_reader_killed_while_ring_full(unique_name: str, spawn) -> None:
    """A writer blocked on a full ring gets PeerDeadError within 2 s of the reader's SIGKILL; a new reader resumes."""
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=4) as ch:
        w = ch.writer()
        for i in range(4):
            w.send(b"msg-%d" % i, timeout=0)
        child = spawn("reader_hold", unique_name, 2)  # releases msg-0, msg-1, holds msg-2
        assert child.readline() == "ready msg-0 msg-1 msg-2"
        w.send(b"msg-4", timeout=0)
        w.send(b"msg-5", timeout=0)
        killer = Killer(child)
        try:
            with pytest.raises(shmchan.PeerDeadError) as info:
                w.send(b"msg-6", timeout=None)
            latency = time.monotonic() - killer.when
        finally:
            killer.join()
        assert latency < 2.0, f"PeerDeadError came {latency:.2f} s after the kill"
        assert str(child.pid) in str(info.value)
        child.finish()
        r = ch.reader()
        assert [r.recv_bytes(timeout=0) for _ in range(4)] == [b"msg-2", b"msg-3", b"msg-4", b"msg-5"]
        w.send(b"msg-6", timeout=0)
        assert r.recv_bytes(timeout=0) == b"msg-6"


def test_reserve_with_timeout_also_reports_dead_reader(unique_name: str, spawn) -> None:
    """A writer waiting with a long timeout on a full ring learns of the dead reader well before it ends."""
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=1) as ch:
        w = ch.writer()
        child = spawn("hold", unique_name, "reader")
        child.expect("ready")
        w.send(b"fills the ring")
        killer = Killer(child)
        try:
            with pytest.raises(shmchan.PeerDeadError):
                w.reserve(timeout=30)
            latency = time.monotonic() - killer.when
        finally:
            killer.join()
        assert latency < 2.0


@pytest.mark.parametrize("how", ["clean", "sigkill"])
def test_process_that_only_opened_leaves_channel_in_place(unique_name: str, spawn, how: str) -> None:
    """A process that only opened the channel exits (cleanly or killed) and the channel stays usable (gh-82300)."""
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=4) as ch:
        child = spawn("open_and_exit", unique_name)
        child.expect("ready")
        if how == "clean":
            child.send_line("exit")
            assert child.finish()[0] == 0
        else:
            child.kill()
            assert child.finish()[0] == -signal.SIGKILL
        assert os.path.exists(shm_path(unique_name))
        w, r = ch.writer(), ch.reader()
        w.send(b"still here")
        assert r.recv_bytes(timeout=1) == b"still here"


@pytest.fixture(scope="session")
def mp_resource_tracker() -> None:
    """Start multiprocessing's resource tracker up front: it keeps a pipe open for the rest of the
    session, which the per-test fd check must not count against the test that first spawns."""
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()


def test_multiprocessing_spawn_child_leaves_channel_in_place(unique_name: str, mp_resource_tracker) -> None:
    """A multiprocessing (spawn) child that opens, uses and closes the channel does not remove it."""
    import peers

    ctx = multiprocessing.get_context("spawn")
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=4) as ch:
        proc = ctx.Process(target=peers.attach_and_exit, args=(unique_name,))
        proc.start()
        proc.join(60)
        assert proc.exitcode == 0
        proc.close()
        assert os.path.exists(shm_path(unique_name))
        w, r = ch.writer(), ch.reader()
        w.send(b"parent")
        assert r.recv_bytes(timeout=1) == b"parent"


def test_stale_channel_of_killed_creator_blocks_create_until_unlinked(unique_name: str, spawn) -> None:
    """A killed creator's channel stays: create() raises ChannelExistsError with a hint until shmchan.unlink."""
    child = spawn("create_and_hold", unique_name)
    child.expect("ready")
    child.kill()
    assert child.finish()[0] == -signal.SIGKILL
    assert os.path.exists(shm_path(unique_name))
    time.sleep(0.15)  # past the 100 ms in which a fresh object counts as "being initialised"
    try:
        with pytest.raises(shmchan.ChannelExistsError, match=r"stale channel.*cleanup_stale"):
            shmchan.Channel.create(unique_name, slot_size=64, capacity=4)
        with shmchan.Channel.open(unique_name) as stale:  # still a valid channel
            assert stale.creator_pid == child.pid
    finally:
        shmchan.unlink(unique_name)
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=4) as ch:
        assert ch.creator_pid == os.getpid()


def test_squatted_name_is_never_adopted(unique_name: str) -> None:
    """create() over a name someone else pre-created (mode 0666) raises ChannelExistsError and adopts nothing."""
    path = shm_path(unique_name)
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o666)
    try:
        os.fchmod(fd, 0o666)
        with pytest.raises(shmchan.ChannelExistsError):
            shmchan.Channel.create(unique_name, slot_size=64, capacity=4)
        st = os.stat(path)
        assert st.st_size == 0
        assert stat.S_IMODE(st.st_mode) == 0o666
    finally:
        os.close(fd)
        os.unlink(path)


# ---- Ctrl-C ----


@pytest.mark.parametrize("what", ["recv", "send"])
def test_sigint_interrupts_blocking_wait_promptly_and_channel_stays_intact(
    unique_name: str, spawn, what: str
) -> None:
    """SIGINT ends a blocking recv()/send() with KeyboardInterrupt within 1 s and leaves the channel intact."""
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=4) as ch:
        child = spawn("sigint_wait", unique_name, what)
        child.expect("waiting")
        deadline = time.monotonic() + 10
        while (ch.stats().empty_waits if what == "recv" else ch.stats().full_waits) < 1:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(0.3)  # well into the sleeping wait
        sent_at = time.monotonic()
        child.kill(signal.SIGINT)
        line = child.expect("interrupted", timeout=5)
        latency = float(line.split()[1]) - sent_at
        assert latency < 1.0, f"KeyboardInterrupt came {latency:.3f} s after SIGINT"
        assert child.readline() == "roundtrip after the interrupt"
        rc, _, err = child.finish()
        assert rc == 0, err
        assert "Traceback" not in err
        st = ch.stats()
        expected = 1 if what == "recv" else 5
        assert st.messages_written == st.messages_read == expected


def test_signal_handler_that_returns_does_not_end_a_blocking_recv(unique_name: str, spawn) -> None:
    """A signal whose Python handler returns does not end recv(timeout=None); the wait goes on."""
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=4) as ch:
        w = ch.writer()
        child = spawn("signalled_recv", unique_name)
        child.expect("ready")
        deadline = time.monotonic() + 10
        while ch.stats().empty_waits < 1:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(0.2)
        child.kill(signal.SIGUSR1)
        assert child.readline() == f"handled {int(signal.SIGUSR1)}"
        time.sleep(0.2)
        w.send(b"after the signal")
        assert child.readline() == "got after the signal"
        rc, _, err = child.finish()
        assert rc == 0, err


# ---- damaged or foreign objects ----


@pytest.fixture
def made(unique_name: str):
    """A created channel (4 slots of 64 bytes), closed after the test; its header may be damaged."""
    ch = shmchan.Channel.create(unique_name, slot_size=64, capacity=4)
    yield ch
    ch.close()


def test_open_with_bad_magic_raises_incompatible(made, unique_name: str) -> None:
    """A header with the wrong magic makes open() raise IncompatibleChannelError ("bad magic")."""
    assert peek(unique_name, "magic") == MAGIC
    poke(unique_name, "magic", MAGIC ^ 0xFF)
    with pytest.raises(shmchan.IncompatibleChannelError, match="bad magic"):
        shmchan.Channel.open(unique_name)


def test_open_with_next_major_version_names_both_versions(made, unique_name: str) -> None:
    """A header of layout major+1 raises IncompatibleChannelError naming both versions."""
    poke(unique_name, "version_major", LAYOUT_MAJOR + 1)
    with pytest.raises(shmchan.IncompatibleChannelError) as info:
        shmchan.Channel.open(unique_name)
    text = str(info.value)
    assert f"{LAYOUT_MAJOR + 1}.{LAYOUT_MINOR}" in text
    assert f"{LAYOUT_MAJOR}.{LAYOUT_MINOR}" in text


def test_open_with_previous_major_version_raises_incompatible(made, unique_name: str) -> None:
    """A header of layout major-1 raises IncompatibleChannelError too."""
    poke(unique_name, "version_major", LAYOUT_MAJOR - 1)
    with pytest.raises(shmchan.IncompatibleChannelError, match=re.escape(f"{LAYOUT_MAJOR - 1}.{LAYOUT_MINOR}")):
        shmchan.Channel.open(unique_name)


def test_open_with_newer_minor_version_is_accepted(made, unique_name: str) -> None:
    """A header of a newer minor version of the same major layout opens and works."""
    poke(unique_name, "version_minor", LAYOUT_MINOR + 1)
    with shmchan.Channel.open(unique_name) as ch:
        assert ch.layout_version == (LAYOUT_MAJOR, LAYOUT_MINOR + 1)
        w, r = ch.writer(), ch.reader()
        w.send(b"ok")
        assert r.recv_bytes(timeout=0) == b"ok"


@pytest.mark.parametrize(("field", "value"), [("kind", 4), ("kind", 0), ("flags", 0x100)])
def test_open_with_unknown_kind_or_flags_raises_incompatible(made, unique_name: str, field: str, value: int) -> None:
    """An unknown channel kind or header flag raises IncompatibleChannelError."""
    poke(unique_name, field, value)
    with pytest.raises(shmchan.IncompatibleChannelError):
        shmchan.Channel.open(unique_name)


@pytest.mark.parametrize("kind", [2, 3])
def test_spsc_header_relabelled_as_another_kind_is_corrupt(made, unique_name: str, kind: int) -> None:
    """A known kind whose geometry does not fit the header (an SPSC segment relabelled broadcast or
    state: no reader places, an 8-byte length table, a capacity other than 2) is refused as corrupt,
    naming the kind."""
    poke(unique_name, "kind", kind)
    with pytest.raises(shmchan.CorruptChannelError, match=f"kind {kind}"):
        shmchan.Channel.open(unique_name)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("capacity", 3),
        ("capacity", 0),
        ("capacity", 2**31),
        ("slot_size", 0),
        ("slot_size", 2**63),
        ("slot_stride", 128),
        ("slot_align", 0),
        ("slot_align", 3),
        ("data_offset", 0),
        ("lens_offset", 8),
    ],
)
def test_open_with_impossible_geometry_raises_corrupt(made, unique_name: str, field: str, value: int) -> None:
    """A header describing an impossible or inconsistent geometry raises CorruptChannelError."""
    poke(unique_name, field, value)
    with pytest.raises(shmchan.CorruptChannelError):
        shmchan.Channel.open(unique_name)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("descriptor_size", 2**16 + 1),
        ("descriptor_size", 2**63),
        ("descriptor_offset", 8),
        ("descriptor_offset", 2**40),
    ],
)
def test_open_with_bad_descriptor_fields_raises_corrupt(unique_name: str, field: str, value: int) -> None:
    """A descriptor size over 64 KiB or an offset other than the geometry's raises CorruptChannelError."""
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=4, descriptor=b"d" * 100):
        poke(unique_name, field, value)
        with pytest.raises(shmchan.CorruptChannelError):
            shmchan.Channel.open(unique_name)


def test_open_with_descriptor_fields_on_channel_without_one_raises_corrupt(made, unique_name: str) -> None:
    """A descriptor offset poked into a channel created without a descriptor raises CorruptChannelError."""
    poke(unique_name, "descriptor_offset", LENS_OFFSET + 8 * made.capacity)
    with pytest.raises(shmchan.CorruptChannelError):
        shmchan.Channel.open(unique_name)


def test_open_with_total_size_beyond_file_raises_corrupt(made, unique_name: str) -> None:
    """A header whose total_size exceeds the file raises CorruptChannelError."""
    total = peek(unique_name, "total_size")
    assert total == os.stat(shm_path(unique_name)).st_size
    poke(unique_name, "total_size", total + 4096)
    with pytest.raises(shmchan.CorruptChannelError):
        shmchan.Channel.open(unique_name)


def test_open_of_truncated_object_raises_corrupt(unique_name: str) -> None:
    """An object truncated below the size its header describes raises CorruptChannelError (no SIGBUS)."""
    ch = shmchan.Channel.create(unique_name, slot_size=8192, capacity=4)
    try:
        os.truncate(shm_path(unique_name), 4096)
        with pytest.raises(shmchan.CorruptChannelError, match="4096"):
            shmchan.Channel.open(unique_name)
    finally:
        ch.close()  # touches nothing beyond the header page


def _foreign(name: str, data: bytes) -> None:
    fd = os.open(shm_path(name), os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _random_bytes(n: int) -> bytes:
    rng = random.Random(n)
    data = bytearray(rng.randbytes(n))
    if n >= 8 and int.from_bytes(data[:8], "little") in (0, MAGIC):
        data[0] ^= 0x5A
    return bytes(data)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\x00" * 100, id="100-zero-bytes"),
        pytest.param(_random_bytes(100), id="100-random-bytes"),
        pytest.param(_random_bytes(1024), id="1024-random-bytes"),
        pytest.param(_random_bytes(4096), id="4096-random-bytes"),
        pytest.param(_random_bytes(1 << 20), id="1MiB-random-bytes"),
        pytest.param(b"\x00" * 8192, id="8192-zero-bytes"),
        pytest.param(MAGIC.to_bytes(8, "little") + b"\x00" * 100, id="magic-then-short"),
    ],
)
def test_open_of_foreign_object_raises_incompatible_promptly(unique_name: str, data: bytes) -> None:
    """Opening an object that is not a channel raises IncompatibleChannelError within 1 s."""
    _foreign(unique_name, data)
    try:
        t0 = time.monotonic()
        with pytest.raises(shmchan.IncompatibleChannelError):
            shmchan.Channel.open(unique_name, timeout=5)
        assert time.monotonic() - t0 < 1.0
    finally:
        os.unlink(shm_path(unique_name))


def test_open_waits_for_initialising_creator_then_reports_not_initialised(unique_name: str, spawn) -> None:
    """open() waits its timeout while an initialiser holds the lock, then fails; with no holder it fails at once."""
    child = spawn("fake_initialising", unique_name)
    child.expect("ready")
    try:
        t0 = time.monotonic()
        with pytest.raises(shmchan.IncompatibleChannelError, match="not initialised"):
            shmchan.Channel.open(unique_name, timeout=0.3)
        assert 0.3 <= time.monotonic() - t0 < 2.0
        child.kill()
        child.finish()
        t0 = time.monotonic()
        with pytest.raises(shmchan.IncompatibleChannelError, match="no process holds it"):
            shmchan.Channel.open(unique_name, timeout=5)
        assert time.monotonic() - t0 < 1.0
    finally:
        if os.path.exists(shm_path(unique_name)):
            os.unlink(shm_path(unique_name))


def test_open_of_foreign_file_by_path_raises_incompatible(tmp_path) -> None:
    """Opening a regular file that is not a channel (path=...) raises IncompatibleChannelError."""
    p = tmp_path / "not-a-channel"
    p.write_bytes(_random_bytes(8192))
    with pytest.raises(shmchan.IncompatibleChannelError):
        shmchan.Channel.open(path=p, timeout=5)
    assert p.read_bytes() == _random_bytes(8192)


def test_channel_larger_than_dev_shm_raises_allocation_error_and_leaves_nothing(unique_name: str) -> None:
    """A channel larger than /dev/shm raises ChannelAllocationError (ENOSPC) at create and leaves nothing."""
    import errno

    want = 2**40 * 32  # 32 TiB: far above any tmpfs limit, so the kernel refuses before allocating
    vfs = os.statvfs("/dev/shm")
    if not 0 < vfs.f_blocks * vfs.f_frsize < want // 2:
        pytest.skip("/dev/shm has no size limit here; the kernel would try to allocate")
    with pytest.raises(shmchan.ChannelAllocationError) as info:
        shmchan.Channel.create(unique_name, slot_size=2**40, capacity=32)
    assert info.value.errno == errno.ENOSPC
    assert not os.path.exists(shm_path(unique_name))


# ---- corruption while attached ----


def test_head_beyond_capacity_makes_recv_raise_corrupt_and_keep_raising(made, unique_name: str) -> None:
    """A head poked beyond tail+capacity makes recv raise CorruptChannelError, and the handle stays poisoned."""
    r = made.reader()
    poke(unique_name, "head", made.capacity + 5)
    with pytest.raises(shmchan.CorruptChannelError, match="corrupt head"):
        r.recv(timeout=0)
    poke(unique_name, "head", 0)  # even once the field looks sane again: the handle is poisoned
    for call in (
        lambda: r.recv(timeout=0),
        lambda: r.recv_bytes(timeout=None),
        lambda: r.recv_into(bytearray(64), timeout=0),
        lambda: r.recv_batch(2, timeout=0),
        made.writer,
    ):
        with pytest.raises(shmchan.CorruptChannelError):
            call()


def test_head_behind_tail_raises_corrupt(made, unique_name: str) -> None:
    """A head moved back behind the reader's position raises CorruptChannelError."""
    w, r = made.writer(), made.reader()
    for _ in range(3):
        w.send(b"x")
        assert r.recv_bytes(timeout=0) == b"x"
    w.close()
    poke(unique_name, "head", 1)
    with pytest.raises(shmchan.CorruptChannelError):
        r.recv(timeout=0)


@pytest.mark.parametrize("length", [65, 4096, 2**63])
def test_length_beyond_slot_size_raises_corrupt(made, unique_name: str, length: int) -> None:
    """A length field poked beyond slot_size raises CorruptChannelError; the message is never delivered."""
    w, r = made.writer(), made.reader()
    w.send(b"fine")
    assert r.recv_bytes(timeout=0) == b"fine"
    w.send(b"to be damaged")
    poke_at(unique_name, LENS_OFFSET + 8 * 1, 8, length)
    with pytest.raises(shmchan.CorruptChannelError, match="corrupt length"):
        r.recv_bytes(timeout=0)
    with pytest.raises(shmchan.CorruptChannelError):
        r.recv(timeout=0)


def test_tail_beyond_head_makes_writer_raise_corrupt(made, unique_name: str) -> None:
    """A tail poked ahead of head makes the writer raise CorruptChannelError instead of overwriting."""
    w = made.writer()
    for _ in range(4):
        w.send(b"x", timeout=0)
    poke(unique_name, "tail", 100)
    with pytest.raises(shmchan.CorruptChannelError, match="corrupt tail"):
        w.send(b"y", timeout=0)
    with pytest.raises(shmchan.CorruptChannelError):
        w.reserve(timeout=0)


def test_corrupt_positions_refuse_attach(made, unique_name: str) -> None:
    """Attaching to a channel whose head is more than capacity past tail raises CorruptChannelError."""
    poke(unique_name, "head", 1000)
    with shmchan.Channel.open(unique_name) as other, pytest.raises(shmchan.CorruptChannelError):
        other.reader()
    with shmchan.Channel.open(unique_name) as other, pytest.raises(shmchan.CorruptChannelError):
        other.writer()


# ---- stale channels and foreign objects ----


def _kill_creator(spawn, name: str) -> int:  # type: ignore[no-untyped-def]
    child = spawn("create_and_hold", name)
    child.expect("ready")
    child.kill()
    assert child.finish()[0] == -signal.SIGKILL
    time.sleep(0.15)  # past the 100 ms in which a fresh object counts as "being initialised"
    return int(child.pid)


def test_create_reclaim_stale_replaces_a_dead_creators_channel(unique_name: str, spawn) -> None:
    """create(reclaim_stale=True) removes a channel whose creator died and creates a fresh one."""
    dead = _kill_creator(spawn, unique_name)
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=4, reclaim_stale=True) as ch:
        assert ch.creator_pid == os.getpid() != dead
        w, r = ch.writer(), ch.reader()
        w.send(b"fresh")
        assert r.recv_bytes(timeout=0) == b"fresh"


def test_reclaim_stale_never_touches_a_live_channel(unique_name: str) -> None:
    """reclaim_stale=True on a name in use still raises ChannelExistsError and leaves the channel working."""
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=4) as ch:
        time.sleep(0.15)
        with pytest.raises(shmchan.ChannelExistsError, match="in use"):
            shmchan.Channel.create(unique_name, slot_size=64, capacity=4, reclaim_stale=True)
        assert unique_name not in shmchan.cleanup_stale()
        w, r = ch.writer(), ch.reader()
        w.send(b"alive")
        assert r.recv_bytes(timeout=0) == b"alive"


def test_cleanup_stale_removes_exactly_the_stale_channels(unique_name: str, spawn) -> None:
    """cleanup_stale() lists (dry run) and then removes dead creators' channels, never one held by a live opener."""
    stale, held = unique_name + "-stale", unique_name + "-held"
    _kill_creator(spawn, stale)
    _kill_creator(spawn, held)
    opener = shmchan.Channel.open(held)  # the creator is dead, but we hold it: not stale
    try:
        assert stale in shmchan.cleanup_stale(dry_run=True)
        assert os.path.exists(shm_path(stale))
        removed = shmchan.cleanup_stale()
        assert stale in removed and held not in removed
        assert not os.path.exists(shm_path(stale))
        assert os.path.exists(shm_path(held))
    finally:
        opener.close()
        shmchan.unlink(held)


def test_open_refuses_a_group_writable_channel_unless_foreign_is_allowed(unique_name: str) -> None:
    """A channel others could write is refused with ChannelPermissionError; allow_foreign=True opens it."""
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=4, mode=0o660):
        with pytest.raises(shmchan.ChannelPermissionError, match="writable by group or others"):
            shmchan.Channel.open(unique_name)
        with shmchan.Channel.open(unique_name, allow_foreign=True) as other:
            assert other.slot_size == 64


@pytest.mark.skipif(os.geteuid() != 0, reason="handing an object to another uid needs root")
def test_open_refuses_a_channel_owned_by_another_user(unique_name: str) -> None:
    """A channel owned by another uid is refused unless allow_foreign=True."""
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=4):
        os.chown(shm_path(unique_name), 65534, 65534)
        with pytest.raises(shmchan.ChannelPermissionError, match="owned by uid 65534"):
            shmchan.Channel.open(unique_name)
        shmchan.Channel.open(unique_name, allow_foreign=True).close()


def test_is_stale_and_reclaim_stale_by_name(unique_name: str, spawn) -> None:
    """is_stale/reclaim_stale: False and untouched while in use, True and removed once the creator died."""
    with pytest.raises(shmchan.ChannelNotFoundError):
        shmchan.is_stale(unique_name)
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=4):
        time.sleep(0.15)
        assert shmchan.is_stale(unique_name) is False
        assert shmchan.reclaim_stale(unique_name) is False
    _kill_creator(spawn, unique_name)
    assert shmchan.is_stale(unique_name) is True
    assert shmchan.reclaim_stale(unique_name) is True
    assert not os.path.exists(shm_path(unique_name))
    with pytest.raises(shmchan.ChannelNotFoundError):
        shmchan.reclaim_stale(unique_name)
