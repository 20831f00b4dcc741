"""Hostile peers, round two, the core's part: what a peer writes into a channel, or what a local user
puts at a channel's name, never crashes, hangs or silently corrupts a victim. The attacker is this
process (it maps the object and writes the fields a peer controls, docs/protocol.md); victims run in
child processes (Python, and the C++, Rust and Go peers) with deadlines."""

from __future__ import annotations

import mmap
import os
import random
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

import shmchan

ROOT = Path(__file__).resolve().parent.parent
PEERS = {
    "c": ROOT / "peers" / "c" / "build" / "shmchan-peer",
    "rust": ROOT / "peers" / "rust" / "target" / "release" / "shmchan-peer",
    "go": ROOT / "peers" / "go" / "build" / "shmchan-peer",
}

# header offsets (docs/protocol.md, csrc/layout.h)
HEAD, READER_WAITING, READERS_OFFSET, SCAN_SEQ = 128, 384, 648, 768
PLACE_SIZE, PLACE_GEN = 128, 8


def shm_path(name: str) -> str:
    return f"/dev/shm/shmchan.{name}"


@contextmanager
def raw(name: str) -> Iterator[mmap.mmap]:
    """The attacker's own mapping of the channel's object: no lock taken, nothing attached."""
    fd = os.open(shm_path(name), os.O_RDWR)
    try:
        m = mmap.mmap(fd, 4096)
        try:
            yield m
        finally:
            m.close()
    finally:
        os.close(fd)


def put(m: mmap.mmap, off: int, value: int, size: int = 8) -> None:
    m[off : off + size] = value.to_bytes(size, "little")


def get(m: mmap.mmap, off: int, size: int = 8) -> int:
    return int.from_bytes(m[off : off + size], "little")


def victim(code: str, *args: str, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh Python process; a hang is killed at ``timeout`` and fails the test."""
    try:
        return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True,
                              text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the victim hung for {timeout} s: {exc.stdout!r} {exc.stderr!r}")


def peer(lang: str) -> str:
    exe = PEERS[lang]
    if not exe.exists():
        why = f"the {lang} peer {exe} is not built (see docs/conformance.md)"
        if os.environ.get("CI"):
            pytest.fail(f"{why}; CI must build it")
        pytest.skip(why)
    return str(exe)


# ---- crashes ----


def test_a_truncation_under_1100_handles_is_reported_not_sigbus(unique_name: str) -> None:
    """The SIGBUS guard's table had 1024 entries and the 1025th mapping went unguarded: a peer's
    truncation killed a reader on it with SIGBUS. The table grows; recv_bytes raises."""
    r = victim("""
        import os, resource, sys, shmchan
        name = sys.argv[1]
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
        ch = shmchan.Channel.create(name, slot_size=8192, capacity=2)
        handles = [shmchan.Channel.open(name) for _ in range(1100)]
        w, rd = ch.writer(), handles[-1].reader()
        w.send(b"x" * 8192)
        fd = os.open("/dev/shm/shmchan." + name, os.O_RDWR)
        os.ftruncate(fd, 4096)
        os.close(fd)
        try:
            rd.recv_bytes(timeout=0)
        except shmchan.CorruptChannelError as e:
            print("corrupt", "truncated" in str(e))
        ch.unlink()
        os._exit(0)
        """, unique_name, timeout=60)
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])
    assert r.stdout.split() == ["corrupt", "True"]


# ---- hangs ----


def test_a_join_with_an_odd_scan_seq_ends_with_a_timeout(unique_name: str) -> None:
    """A live writer whose scan_seq stays odd (a peer wrote it): Broadcast.open().reader() used to
    spin at 100% CPU for ever; it raises ChannelTimeoutError after about a second."""
    with shmchan.Broadcast.create(unique_name, slot_size=64, capacity=4, max_readers=2) as b:
        b.writer()
        with raw(unique_name) as m:
            put(m, SCAN_SEQ, 777)
        t0 = time.monotonic()
        r = victim("""
            import sys, shmchan
            b = shmchan.Broadcast.open(sys.argv[1])
            try:
                b.reader()
            except shmchan.ChannelTimeoutError as e:
                print("timeout", "scan_seq" in str(e))
            b.close()
            """, unique_name, timeout=20)
        assert r.returncode == 0, r.stderr[-2000:]
        assert r.stdout.split() == ["timeout", "True"]
        assert time.monotonic() - t0 < 10
        assert all(p.state != "attached" for p in b.readers())  # the place it took is free again


def test_ctrl_c_ends_a_join_stuck_on_an_odd_scan_seq(unique_name: str) -> None:
    with shmchan.Broadcast.create(unique_name, slot_size=64, capacity=4, max_readers=2) as b:
        b.writer()
        with raw(unique_name) as m:
            put(m, SCAN_SEQ, 777)
        p = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
            import sys, time, shmchan
            b = shmchan.Broadcast.open(sys.argv[1])
            print("joining", flush=True)
            t0 = time.monotonic()
            try:
                b.reader()
            except KeyboardInterrupt:
                print("interrupted", round(time.monotonic() - t0, 3), flush=True)
            b.close()
            """), unique_name], stdout=subprocess.PIPE, text=True, cwd=ROOT)
        try:
            assert p.stdout is not None
            assert p.stdout.readline().strip() == "joining"
            time.sleep(0.3)
            p.send_signal(signal.SIGINT)
            out, _ = p.communicate(timeout=10)
        finally:
            p.kill()
            p.wait()
        word, took = out.split()
        assert word == "interrupted" and float(took) < 0.9, out  # not the 1 s give-up


def _make(kind: str, path: str) -> socket.socket | None:
    if kind == "fifo":
        os.mkfifo(path, 0o600)
    elif kind == "dir":
        os.mkdir(path, 0o700)
    elif kind == "socket":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(path)
        return s
    return None


@pytest.mark.parametrize("kind", ["fifo", "dir", "socket", "symlink"])
def test_something_else_at_the_name_is_refused_without_hanging(unique_name: str, kind: str) -> None:
    """A FIFO in /dev/shm (world-writable) hung create, open, is_stale, cleanup_stale and gc for
    everybody; a directory, a socket or a symlink gave unrelated errors. Each is refused at once."""
    path = shm_path(unique_name)
    other = f"{unique_name}-real"
    real = shmchan.Channel.create(other, slot_size=64, capacity=2) if kind == "symlink" else None
    sock = None
    try:
        if kind == "symlink":
            os.symlink(shm_path(other), path)
        else:
            sock = _make(kind, path)
        r = victim("""
            import sys, shmchan
            name = sys.argv[1]
            for what, call in [("open", lambda: shmchan.Channel.open(name, timeout=0.5)),
                               ("is_stale", lambda: shmchan.is_stale(name)),
                               ("create", lambda: shmchan.Channel.create(name, slot_size=64, capacity=2))]:
                try:
                    call()
                    print(what, "accepted")
                except shmchan.ShmchanError as e:
                    print(what, type(e).__name__, "|", e)
            print("cleanup", name in shmchan.cleanup_stale())
            """, unique_name, timeout=20)
        assert r.returncode == 0, r.stderr[-2000:]
        lines = r.stdout.splitlines()
        assert lines[0].startswith("open IncompatibleChannelError |"), lines
        said = {"fifo": "a FIFO", "dir": "a directory", "socket": "a socket", "symlink": "a symbolic link"}
        assert said[kind] in lines[0], lines
        assert lines[1].startswith("is_stale IncompatibleChannelError |"), lines
        assert lines[2].startswith("create ChannelExistsError |"), lines
        assert lines[3] == "cleanup False"
        assert os.path.lexists(path)  # nobody removed what is not a channel
    finally:
        if sock is not None:
            sock.close()
        if kind == "dir":
            os.rmdir(path)
        elif os.path.lexists(path):
            os.unlink(path)
        if real is not None:
            real.close()


def test_file_backed_channels_refuse_symlinks_and_survive_truncation(tmp_path: Path) -> None:
    """User paths: a symlink is never followed (a FIFO never blocks), and a file truncated under a
    reader gives CorruptChannelError, not SIGBUS."""
    real, link, fifo = tmp_path / "real.chan", tmp_path / "link.chan", tmp_path / "fifo.chan"
    with shmchan.Channel.create(path=real, slot_size=8192, capacity=2, persist=False) as ch:
        link.symlink_to(real)
        os.mkfifo(fifo)
        for p, what in ((link, "a symbolic link"), (fifo, "a FIFO")):
            with pytest.raises(shmchan.IncompatibleChannelError, match=what):
                shmchan.Channel.open(path=p, timeout=0.5)
        ch.writer().send(b"y" * 8192)
        r = victim("""
            import os, sys, shmchan
            ch = shmchan.Channel.open(path=sys.argv[1])
            rd = ch.reader()
            os.truncate(sys.argv[1], 4096)
            try:
                rd.recv_bytes(timeout=0)
            except shmchan.CorruptChannelError:
                print("corrupt")
            os._exit(0)
            """, str(real))
        assert (r.returncode, r.stdout.strip()) == (0, "corrupt"), r.stderr[-2000:]


# ---- silent loss ----


def test_a_reader_place_generation_of_2_64_minus_1_is_not_taken_for_buried(unique_name: str) -> None:
    """The writer marked dead places with gen + 1 (0 = none): a live reader whose place said
    2^64 - 1 looked buried, and in block policy its held message was overwritten."""
    with shmchan.Broadcast.create(unique_name, slot_size=64, capacity=2, max_readers=2) as b, \
            shmchan.Broadcast.open(unique_name) as view:
        rd = view.reader()
        with raw(unique_name) as m:
            put(m, get(m, READERS_OFFSET) + PLACE_GEN, 2**64 - 1)
        w = b.writer()
        w.send(b"first")
        w.send(b"second")
        msg = rd.recv(timeout=0)
        assert bytes(msg.buffer) == b"first"
        with pytest.raises(shmchan.ChannelFullError):
            w.send(b"third", timeout=0)
        assert bytes(msg.buffer) == b"first"
        msg.release()
        w.send(b"third", timeout=0)


def test_a_board_version_at_2_64_minus_1_is_refused_at_writer_attach(unique_name: str) -> None:
    """write() used to return version 2^64 and readers saw (None, 0): the value was lost."""
    with shmchan.State.create(unique_name, dtype=np.uint64) as st:
        with raw(unique_name) as m:
            put(m, HEAD, 2**64 - 1)
        with pytest.raises(shmchan.CorruptChannelError, match="version"):
            st.writer()


@pytest.mark.parametrize("kind", ["state", "broadcast"])
def test_a_killed_sleeping_reader_leaves_no_sleeper_count_behind(unique_name: str, kind: str) -> None:
    """A reader killed asleep never subtracted itself from the sleeper count, and every commit then
    made a futex call with nobody asleep. The writer repairs the count."""
    make = (lambda: shmchan.State.create(unique_name, dtype=np.uint64)) if kind == "state" else \
        (lambda: shmchan.Broadcast.create(unique_name, slot_size=8, capacity=4, max_readers=2, policy="overwrite"))
    with make() as ch:
        w = ch.writer()
        p = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
            import sys, shmchan
            if sys.argv[2] == "state":
                s = shmchan.State.open(sys.argv[1]); print("ready", flush=True); s.wait_for_change(0, timeout=60)
            else:
                b = shmchan.Broadcast.open(sys.argv[1]); r = b.reader(); print("ready", flush=True); r.recv(timeout=60)
            """), unique_name, kind], stdout=subprocess.PIPE, text=True, cwd=ROOT)
        try:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
            with raw(unique_name) as m:
                deadline = time.monotonic() + 10
                while get(m, READER_WAITING, 4) == 0 and time.monotonic() < deadline:
                    time.sleep(0.005)
                time.sleep(0.05)
                p.kill()
                p.wait(timeout=10)
                assert get(m, READER_WAITING, 4) == 1  # left behind by the dead sleeper
                for i in range(10):
                    if kind == "state":
                        w.write(np.uint64(i))
                    else:
                        w.send(b"12345678")
                assert get(m, READER_WAITING, 4) == 0
        finally:
            p.kill()
            p.wait()


# ---- sparse objects ----


def test_a_sparse_object_under_a_valid_header_is_refused_before_it_is_mapped(unique_name: str) -> None:
    """An opener used to MAP_POPULATE every byte the header claims (up to 2^46) of an object whose
    blocks were never allocated."""
    sparse = f"{unique_name}-sparse"
    with shmchan.Channel.create(unique_name, slot_size=1 << 20, capacity=64) as ch:
        with open(shm_path(unique_name), "rb") as f:
            header = f.read(4096)
        fd = os.open(shm_path(sparse), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(fd, ch.nbytes)
            os.pwrite(fd, header, 0)
            assert os.fstat(fd).st_blocks * 512 < ch.nbytes
            with pytest.raises(shmchan.CorruptChannelError, match="sparse"):
                shmchan.Channel.open(sparse)
        finally:
            os.close(fd)
            os.unlink(shm_path(sparse))


# ---- read-only slots ----


def test_a_readers_slots_are_read_only_even_to_native_code(unique_name: str) -> None:
    """A reader's view was read-only only as a Python flag: native code (PyAV's plane update, say)
    wrote into the slot every other reader sees. The slot region is mapped PROT_READ until a writer
    attaches to the handle."""
    with shmchan.Broadcast.create(unique_name, slot_size=4096, capacity=4, max_readers=2) as b:
        w = b.writer()
        w.send(b"hello")
        r = victim("""
            import ctypes, os, signal, sys, numpy as np, shmchan
            b = shmchan.Broadcast.open(sys.argv[1])
            rd = b.reader(start="oldest")
            msg = rd.recv(timeout=5)
            a = msg.ndarray()
            try:
                a[0] = 1
            except ValueError:
                print("numpy-refuses")
            try:
                a.flags.writeable = True
            except ValueError:
                print("flag-refuses")
            addr = np.frombuffer(msg.buffer, np.uint8).__array_interface__["data"][0]
            pid = os.fork()
            if pid == 0:
                import signal                   # the default action: a sanitizer's handler would exit 99
                signal.signal(signal.SIGSEGV, signal.SIG_DFL)
                ctypes.memmove(addr, b"J", 1)   # a native write through the reader's view
                os._exit(0)
            _, st = os.waitpid(pid, 0)
            print("child", os.waitstatus_to_exitcode(st))
            print("intact", bytes(msg.buffer[:5]) == b"hello")
            msg.release()
            rd.close()
            b.close()
            """, unique_name)
        assert r.returncode == 0, r.stderr[-2000:]
        assert r.stdout.split() == ["numpy-refuses", "flag-refuses", "child", str(-signal.SIGSEGV), "intact", "True"]


def test_every_python_path_that_writes_slots_still_writes(unique_name: str) -> None:
    """Writer reserve (numpy in place), send, state writes and Frame messages, each on a handle that
    was created read-only and became writable when its writer attached."""
    with shmchan.Channel.create(unique_name, slot_size=4096, capacity=4) as ch, \
            shmchan.Channel.open(unique_name) as other:
        rd = other.reader()
        w = ch.writer()
        with w.reserve(8) as slot:
            slot.ndarray((8,), np.uint8)[:] = 7
        w.send(b"sent")
        assert rd.recv_bytes(timeout=1) == bytes([7] * 8)
        assert rd.recv_bytes(timeout=1) == b"sent"
    with shmchan.State.create(f"{unique_name}-st", dtype=np.uint64) as st, \
            shmchan.State.open(f"{unique_name}-st") as view:
        st.writer().write(np.uint64(42))
        assert view.read() == (42, 1)
    from shmchan.schema import frame_message_size
    with shmchan.Channel.create(f"{unique_name}-fr", slot_size=frame_message_size(8, 4, "RGB24"), capacity=2,
                                schema="frame") as fr, shmchan.Channel.open(f"{unique_name}-fr") as view:
        frd = view.reader()
        with fr.writer().reserve_frame(8, 4, "RGB24") as f:
            f.pixels[:] = 9
        with frd.recv(timeout=1) as msg:
            assert int(msg.frame().pixels.sum()) == 9 * 8 * 4 * 3


# ---- the C++, Rust and Go peers as victims ----


@pytest.mark.parametrize("lang", ["c", "rust", "go"])
def test_native_readers_refuse_a_stuck_scan_and_a_fifo(unique_name: str, lang: str) -> None:
    exe = peer(lang)
    with shmchan.Broadcast.create(unique_name, slot_size=64, capacity=4, max_readers=2) as b:
        b.writer()
        with raw(unique_name) as m:
            put(m, SCAN_SEQ, 99)
        t0 = time.monotonic()
        r = subprocess.run([exe, "bcast", "reader", unique_name, "--timeout", "30"], capture_output=True, text=True,
                           timeout=20)
        assert r.returncode != 0 and r.stdout.startswith("error"), (r.returncode, r.stdout, r.stderr)
        assert "scan" in r.stdout + r.stderr or "timed out" in (r.stdout + r.stderr).lower(), r.stdout
        assert time.monotonic() - t0 < 10
    fifo = shm_path(unique_name)
    os.mkfifo(fifo, 0o600)
    try:
        r = subprocess.run([exe, "bcast", "reader", unique_name, "--timeout", "5"], capture_output=True, text=True,
                           timeout=20)
        assert r.returncode == 3 and r.stdout.startswith("error incompatible"), (r.returncode, r.stdout, r.stderr)
        assert "regular file" in r.stdout or "FIFO" in r.stdout, r.stdout
    finally:
        os.unlink(fifo)


# ---- a storm ----


@pytest.mark.parametrize("kind", ["spsc", "block", "overwrite", "state"])
def test_random_storm_on_every_peer_field_never_crashes_or_hangs_python(unique_name: str, kind: str) -> None:
    """The attacker writes random and boundary values into every field a peer controls (positions,
    wake counts, sleeper counts, states, generations, scan_seq, floor, need, the slot table, the
    reader places) while a Python victim receives, reads, inspects and attaches in a loop: every
    failure is a shmchan exception, and the victim finishes."""
    if kind == "state":
        ch: shmchan.Channel = shmchan.State.create(unique_name, dtype=np.uint64)
    elif kind == "spsc":
        ch = shmchan.Channel.create(unique_name, slot_size=64, capacity=4)
    else:
        ch = shmchan.Broadcast.create(unique_name, slot_size=64, capacity=4, max_readers=4, policy=kind)
    with ch:
        p = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
            import sys, time, shmchan
            name, kind = sys.argv[1], sys.argv[2]
            end = time.monotonic() + 2.0
            seen = set()
            while time.monotonic() < end:
                try:
                    with shmchan.Channel.open(name, timeout=0.05) as ch:
                        ch.stats()
                        ch.inspect(0)
                        if kind == "state":
                            ch.read(); ch.wait_for_change(ch.version, timeout=0.002)
                            ch.writer().write(1)
                        else:
                            r = ch.reader()
                            for _ in range(4):
                                try:
                                    with r.recv(timeout=0.001) as m:
                                        bytes(m.buffer)
                                except shmchan.LappedError:
                                    pass
                            r.close()
                            w = ch.writer()
                            for _ in range(4):
                                w.send(b"0123456789", timeout=0.001)
                except shmchan.ShmchanError as e:
                    seen.add(type(e).__name__)
            print("survived", sorted(seen), flush=True)
            """), unique_name, kind], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        rng = random.Random(kind)
        nasty = [0, 1, 2, 3, 5, 2**31, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 2, 2**64 - 1]
        fields64 = [128, 256, 520, 536, 768, 776, 784] + [1024 + 8 * i for i in range(8)]
        fields32 = [136, 264, 384, 388, 512, 516, 528, 532]
        try:
            with raw(unique_name) as m:
                readers = get(m, READERS_OFFSET)
                if readers:
                    fields64 += [readers + PLACE_SIZE * i + f for i in range(4) for f in (8, 16, 40)]
                    fields32 += [readers + PLACE_SIZE * i for i in range(4)]
                end = time.monotonic() + 2.0
                while time.monotonic() < end:
                    for _ in range(32):
                        v = rng.choice(nasty) if rng.random() < 0.5 else rng.getrandbits(64)
                        if rng.random() < 0.6:
                            put(m, rng.choice(fields64), v)
                        else:
                            put(m, rng.choice(fields32), v & 0xFFFFFFFF, 4)
                    time.sleep(0.001)
            out, err = p.communicate(timeout=30)
        finally:
            p.kill()
            p.wait()
        assert p.returncode == 0, (p.returncode, err[-3000:])
        assert out.startswith("survived"), out


def test_the_offsets_attacked_here_are_the_layouts() -> None:
    """The offsets this file pokes are the layout's (a drift would make the attacks miss)."""
    from shmchan._binding import lib

    assert (HEAD, READER_WAITING, READERS_OFFSET, SCAN_SEQ) == (
        lib.SHMCHAN_OFF_HEAD, lib.SHMCHAN_OFF_READER_WAITING, lib.SHMCHAN_OFF_READERS_OFFSET, lib.SHMCHAN_OFF_SCAN_SEQ)
    assert (PLACE_SIZE, PLACE_GEN) == (lib.SHMCHAN_READER_PLACE_SIZE, lib.SHMCHAN_PLACE_GEN)
