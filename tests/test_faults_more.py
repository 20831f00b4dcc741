"""More faults from the catalogue (guide/FAULTS.md): dying initialisers, stale and live holders in
other processes, foreign objects, versions, other users, a full /dev/shm, huge sizes, backpressure
timing, peers dying under a blocked wait, and exit with a daemon thread still waiting."""

from __future__ import annotations

import errno
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import shmchan
from shmchan._layout import FIELDS, LAYOUT_MAJOR, LAYOUT_MINOR, MAGIC, shm_path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _poke(name: str, field: str, value: int) -> None:
    """Overwrite one header field of channel ``name`` in its /dev/shm file."""
    off, size = FIELDS[field]
    with open(shm_path(name), "r+b") as f:
        f.seek(off)
        f.write(value.to_bytes(size, "little"))


def _run_python(code: str, *, timeout: float = 60, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (this one's executable and environment)."""
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT, **kwargs,
    )


# ---- #5: a creator that dies during initialisation ----


def test_open_blocked_on_initialising_creator_fails_promptly_when_it_dies(unique_name: str, spawn) -> None:
    """An open() waiting (timeout 10 s) on a half-initialised object fails within 1 s of its creator's death."""
    child = spawn("fake_initialising", unique_name)
    child.expect("ready")
    try:
        result: dict[str, object] = {}

        def opener() -> None:
            t0 = time.monotonic()
            try:
                shmchan.Channel.open(unique_name, timeout=10).close()
            except BaseException as exc:
                result["exc"] = exc
            result["end"] = time.monotonic()
            result["start"] = t0

        th = threading.Thread(target=opener)
        th.start()
        time.sleep(0.4)
        assert th.is_alive(), "open() gave up while the initialiser still held the attach lock"
        killed_at = time.monotonic()
        child.kill()
        th.join(15)
        assert not th.is_alive()
        exc = result["exc"]
        assert isinstance(exc, shmchan.IncompatibleChannelError), exc
        assert "not initialised" in str(exc)
        assert float(result["end"]) - killed_at < 1.0  # type: ignore[arg-type]
        child.finish()
    finally:
        if os.path.exists(shm_path(unique_name)):
            os.unlink(shm_path(unique_name))


def test_half_initialised_object_of_dead_creator_is_removed_by_cleanup_stale(unique_name: str, spawn) -> None:
    """A dead initialiser's object is refused by open(), reported stale, removed by cleanup_stale()."""
    child = spawn("fake_initialising", unique_name)
    child.expect("ready")
    child.kill()
    child.finish()
    time.sleep(0.15)  # past the grace period in which a fresh object counts as being initialised
    try:
        with pytest.raises(shmchan.IncompatibleChannelError, match="not initialised"):
            shmchan.Channel.open(unique_name, timeout=1)
        with pytest.raises(shmchan.ChannelExistsError, match="stale"):
            shmchan.Channel.create(unique_name, slot_size=64, capacity=4)
        assert unique_name in shmchan.cleanup_stale(dry_run=True)
        assert unique_name in shmchan.cleanup_stale()
        assert not os.path.exists(shm_path(unique_name))
    finally:
        if os.path.exists(shm_path(unique_name)):
            os.unlink(shm_path(unique_name))


def test_create_reclaim_stale_replaces_a_half_initialised_object(unique_name: str, spawn) -> None:
    """create(reclaim_stale=True) over a dead initialiser's object makes a working channel."""
    child = spawn("fake_initialising", unique_name)
    child.expect("ready")
    child.kill()
    child.finish()
    time.sleep(0.15)
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=4, reclaim_stale=True) as ch:
        w, r = ch.writer(), ch.reader()
        w.send(b"fresh")
        assert r.recv_bytes(timeout=0) == b"fresh"


# ---- #3: stale versus live holders in other processes ----


def test_reclaim_refuses_a_channel_whose_creator_process_is_alive(unique_name: str, spawn) -> None:
    """A channel whose creator (another process) lives is never reclaimed: not by create, not by cleanup_stale."""
    child = spawn("create_and_hold", unique_name)
    child.expect("ready")
    time.sleep(0.15)
    with pytest.raises(shmchan.ChannelExistsError, match="in use"):
        shmchan.Channel.create(unique_name, slot_size=64, capacity=4, reclaim_stale=True)
    assert unique_name not in shmchan.cleanup_stale(dry_run=True)
    assert unique_name not in shmchan.cleanup_stale()
    assert os.path.exists(shm_path(unique_name))
    with shmchan.Channel.open(unique_name) as ch:
        assert ch.creator_pid == child.pid
    child.send_line("exit")
    assert child.finish()[0] == 0
    assert not os.path.exists(shm_path(unique_name))  # the creator removed it when it closed


def test_channel_held_by_a_live_writer_process_after_its_creator_died_is_not_stale(unique_name: str, spawn) -> None:
    """The creator is dead but a writer process still holds the channel: not stale; stale once it dies too."""
    creator = spawn("create_and_hold", unique_name)
    creator.expect("ready")
    holder = spawn("hold", unique_name, "writer")
    holder.expect("ready")
    creator.kill()
    creator.finish()
    time.sleep(0.15)
    try:
        assert unique_name not in shmchan.cleanup_stale()
        with pytest.raises(shmchan.ChannelExistsError, match="in use"):
            shmchan.Channel.create(unique_name, slot_size=64, capacity=4, reclaim_stale=True)
        holder.kill()
        holder.finish()
        time.sleep(0.15)
        assert unique_name in shmchan.cleanup_stale()
        assert not os.path.exists(shm_path(unique_name))
    finally:
        if os.path.exists(shm_path(unique_name)):
            os.unlink(shm_path(unique_name))


# ---- #8: objects that are not channels ----


@pytest.mark.parametrize("size", [1024, 4096, 65536])
def test_random_bytes_of_header_size_or_more_say_bad_magic(unique_name: str, size: int) -> None:
    """An object of random bytes at least a header long raises IncompatibleChannelError naming the bad magic."""
    data = bytearray(os.urandom(size))
    if int.from_bytes(data[:8], "little") in (0, MAGIC):
        data[0] ^= 0x5A
    with open(shm_path(unique_name), "xb") as f:
        f.write(data)
    try:
        with pytest.raises(shmchan.IncompatibleChannelError, match="bad magic"):
            shmchan.Channel.open(unique_name, timeout=5)
    finally:
        os.unlink(shm_path(unique_name))


@pytest.mark.parametrize("size", [0, 1, 8, 1023])
def test_object_smaller_than_a_header_gives_a_clean_error(unique_name: str, size: int) -> None:
    """A zero-length or shorter-than-a-header object: IncompatibleChannelError, never mmap's EINVAL leaking out."""
    with open(shm_path(unique_name), "xb") as f:
        f.write(MAGIC.to_bytes(8, "little")[:size] + b"\x01" * max(0, size - 8))
    try:
        t0 = time.monotonic()
        with pytest.raises(shmchan.IncompatibleChannelError) as info:
            shmchan.Channel.open(unique_name, timeout=5)
        assert time.monotonic() - t0 < 1.0
        assert re.search("not initialised|less than a header", str(info.value)), info.value
        assert "Invalid argument" not in str(info.value)
        assert not isinstance(info.value, ValueError)
    finally:
        os.unlink(shm_path(unique_name))


def test_zero_length_regular_file_gives_a_clean_error(tmp_path) -> None:
    """Opening an empty regular file as a channel (path=...) raises IncompatibleChannelError promptly."""
    p = tmp_path / "empty"
    p.touch()
    t0 = time.monotonic()
    with pytest.raises(shmchan.IncompatibleChannelError, match=r"not initialised|less than a header"):
        shmchan.Channel.open(path=p, timeout=5)
    assert time.monotonic() - t0 < 1.0


# ---- #9: layout versions ----


@pytest.mark.parametrize("minor", [LAYOUT_MINOR + 2, 0xFFFF])
def test_open_accepts_any_newer_minor_of_the_same_major(made_channel, unique_name: str, minor: int) -> None:
    """Newer minors only add fields in reserved space: minor+2 and 0xFFFF open and work, and are reported."""
    _poke(unique_name, "version_minor", minor)
    with shmchan.Channel.open(unique_name) as ch:
        assert ch.layout_version == (LAYOUT_MAJOR, minor)
        w, r = ch.writer(), ch.reader()
        w.send(b"ok")
        assert r.recv_bytes(timeout=0) == b"ok"


@pytest.mark.parametrize("major", [0, LAYOUT_MAJOR + 1, 0xFFFF])
def test_open_refuses_other_majors_naming_both_versions(made_channel, unique_name: str, major: int) -> None:
    """Major 0, major+1 and 0xFFFF raise IncompatibleChannelError naming the channel's and this build's versions."""
    _poke(unique_name, "version_major", major)
    with pytest.raises(shmchan.IncompatibleChannelError) as info:
        shmchan.Channel.open(unique_name)
    assert f"{major}.{LAYOUT_MINOR}" in str(info.value)
    assert f"{LAYOUT_MAJOR}.{LAYOUT_MINOR}" in str(info.value)


@pytest.fixture
def made_channel(unique_name: str):  # type: ignore[no-untyped-def]
    """A channel of 4 slots of 64 bytes (its header may be damaged by the test)."""
    ch = shmchan.Channel.create(unique_name, slot_size=64, capacity=4)
    yield ch
    ch.close()


# ---- #13, #14: names and squatters ----


@pytest.mark.parametrize("name", ["/a/b", "a/b/", "//", "/..", "..."])
def test_more_bad_names_raise_valueerror_before_any_syscall(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Path-like names ("/a/b", "/..", ...) raise ValueError without calling the C core ("/." never becomes EEXIST)."""
    import shmchan.channel

    class NoCore:
        def __getattr__(self, attr: str) -> object:
            raise AssertionError(f"the C core was called ({attr})")

    monkeypatch.setattr(shmchan.channel, "lib", NoCore())
    for call in (lambda: shmchan.Channel.create(name, slot_size=64, capacity=4), lambda: shmchan.Channel.open(name)):
        with pytest.raises(ValueError, match="channel name"):
            call()


@pytest.mark.parametrize("mode", [0o666, 0o606, 0o620])
def test_open_refuses_a_channel_others_could_write(unique_name: str, mode: int) -> None:
    """A valid channel made group- or other-writable (as a squatter would) is refused unless allow_foreign=True."""
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=4) as ch:
        os.chmod(shm_path(unique_name), mode)
        with pytest.raises(shmchan.ChannelPermissionError, match="writable by group or others"):
            shmchan.Channel.open(unique_name)
        with shmchan.Channel.open(unique_name, allow_foreign=True) as other:
            assert other.creator_pid == ch.creator_pid


# ---- #16: another user ----

_NOBODY = 65534
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="running a peer as another uid needs root")


def _as_nobody(name: str, allow_foreign: bool) -> dict[str, object]:
    """Open channel ``name`` in a forked child that first becomes uid/gid nobody; its report as a dict."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(rfd)
            os.setgroups([])
            os.setgid(_NOBODY)
            os.setuid(_NOBODY)
            try:
                with shmchan.Channel.open(name, allow_foreign=allow_foreign) as ch:
                    w, r = ch.writer(), ch.reader()
                    w.send(b"from nobody")
                    report: dict[str, object] = {"ok": r.recv_bytes(timeout=1).decode()}
            except Exception as exc:
                report = {"type": type(exc).__name__, "perm": isinstance(exc, PermissionError), "msg": str(exc)}
            os.write(wfd, json.dumps(report).encode())
        finally:
            os._exit(0)
    os.close(wfd)
    with os.fdopen(rfd, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return json.loads(data)  # type: ignore[no-any-return]


@needs_root
@pytest.mark.parametrize("mode", [0o600, 0o644])
def test_other_user_cannot_open_a_private_or_read_only_channel(unique_name: str, mode: int) -> None:
    """A peer running as nobody gets ChannelPermissionError naming the channel (0600, or 0644: no read-only attach)."""
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=4, mode=mode):
        out = _as_nobody(unique_name, allow_foreign=True)
        assert out["type"] == "ChannelPermissionError" and out["perm"], out
        assert unique_name in str(out["msg"])


@needs_root
def test_other_user_opens_a_shared_channel_only_when_foreign_is_allowed(unique_name: str) -> None:
    """nobody may open root's 0666 channel with allow_foreign=True (and round-trips), but not by default."""
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=4, mode=0o666):
        out = _as_nobody(unique_name, allow_foreign=False)
        assert out["type"] == "ChannelPermissionError", out
        assert "owned by uid 0" in str(out["msg"])
        assert _as_nobody(unique_name, allow_foreign=True) == {"ok": "from nobody"}


# ---- #17, #20: a full /dev/shm and huge sizes, in a user + mount namespace with a 64 KiB tmpfs ----

_IN_SMALL_SHM = """
import json, os, time, shmchan

def attempt(name, **kw):
    t0 = time.monotonic()
    try:
        shmchan.Channel.create(name, **kw).close()
        return {"created": True}
    except Exception as exc:
        return {"type": type(exc).__name__, "oserror": isinstance(exc, OSError),
                "errno": getattr(exc, "errno", None), "msg": str(exc), "seconds": time.monotonic() - t0}

vfs = os.statvfs("/dev/shm")
out = {"size": vfs.f_blocks * vfs.f_frsize}
out["too_big"] = attempt("big", slot_size=65536, capacity=2)
out["after_too_big"] = sorted(os.listdir("/dev/shm"))
small = shmchan.Channel.create("small", slot_size=4096, capacity=8)
out["second"] = attempt("second", slot_size=4096, capacity=8)
out["after_second"] = sorted(os.listdir("/dev/shm"))
w, r = small.writer(), small.reader()
w.send(b"still works")
out["roundtrip"] = r.recv_bytes(timeout=1).decode()
small.close()
out["huge"] = attempt("huge", slot_size=2**30, capacity=64)
out["final"] = sorted(os.listdir("/dev/shm"))
print(json.dumps(out))
"""


def _in_small_shm(code: str) -> dict[str, object]:
    """Run ``code`` in a new user + mount namespace whose /dev/shm is a 64 KiB tmpfs; skip where impossible."""
    if not shutil.which("unshare"):
        pytest.skip("unshare(1) is not installed")
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /dev/shm"],
                           capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip(f"no user+mount namespace with a private tmpfs here: {probe.stderr.strip()}")
    res = subprocess.run(
        ["unshare", "-rm", "sh", "-c", 'mount -t tmpfs -o size=64k tmpfs /dev/shm && exec "$0" -c "$1"',
         sys.executable, code],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_full_dev_shm_raises_allocation_error_and_leaves_nothing() -> None:
    """In a 64 KiB /dev/shm, create() raises ChannelAllocationError (ENOSPC), leaves nothing; others keep working."""
    out = _in_small_shm(_IN_SMALL_SHM)
    assert out["size"] == 65536
    for key in ("too_big", "second"):
        res = out[key]
        assert isinstance(res, dict)
        assert res["type"] == "ChannelAllocationError" and res["oserror"], res
        assert res["errno"] == errno.ENOSPC, res
    assert out["after_too_big"] == []
    assert out["after_second"] == ["shmchan.small"]
    assert out["roundtrip"] == "still works"
    assert out["final"] == []


def test_huge_valid_size_fails_cleanly_and_fast_in_a_small_dev_shm() -> None:
    """A 64 GiB channel in a 64 KiB /dev/shm: ChannelAllocationError (ENOSPC) within a second, no OOM, nothing left."""
    out = _in_small_shm(_IN_SMALL_SHM)
    res = out["huge"]
    assert isinstance(res, dict)
    assert res["type"] == "ChannelAllocationError" and res["errno"] == errno.ENOSPC, res
    assert res["seconds"] < 1.0
    assert out["final"] == []


def test_huge_valid_size_larger_than_dev_shm_fails_cleanly_here(unique_name: str) -> None:
    """On this machine's /dev/shm, a valid channel larger than the whole filesystem raises ChannelAllocationError."""
    vfs = os.statvfs("/dev/shm")
    total = vfs.f_blocks * vfs.f_frsize
    want = 64 << 30
    if not 0 < total < want:
        pytest.skip(f"/dev/shm is {total} bytes, not smaller than 64 GiB: the kernel would really allocate")
    t0 = time.monotonic()
    with pytest.raises(shmchan.ChannelAllocationError) as info:
        shmchan.Channel.create(unique_name, slot_size=2**30, capacity=64)
    assert info.value.errno == errno.ENOSPC
    assert time.monotonic() - t0 < 1.0
    assert not os.path.exists(shm_path(unique_name))


# ---- #21, #22: a writer far ahead of a sleeping reader; backpressure timing ----


def test_writer_ten_laps_ahead_of_a_sleeping_reader_is_held_back_and_loses_nothing(unique_name: str) -> None:
    """No overwrite mode: a writer trying 10 x capacity messages gets ChannelFullError; nothing is lost or torn."""
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=8) as ch:
        w, r = ch.writer(), ch.reader()
        sent = 0
        for i in range(10 * ch.capacity):
            try:
                w.send(bytes([i]) * 64, timeout=0)
                sent += 1
            except shmchan.ChannelFullError:
                pass
        assert sent == ch.capacity
        got = [r.recv_bytes(timeout=0) for _ in range(sent)]
        assert got == [bytes([i]) * 64 for i in range(sent)]
        with pytest.raises(shmchan.ChannelEmptyError):
            r.recv(timeout=0)


def test_send_on_full_ring_times_out_on_time_without_burning_cpu(unique_name: str) -> None:
    """send(timeout=0) fails at once; send(timeout=0.2) after 0.2 s + a little, using far less CPU than wall time."""
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=2) as ch:
        w = ch.writer()
        w.send(b"a")
        w.send(b"b")
        t0 = time.monotonic()
        with pytest.raises(shmchan.ChannelFullError):
            w.send(b"c", timeout=0)
        assert time.monotonic() - t0 < 0.05
        cpu0 = resource.getrusage(resource.RUSAGE_THREAD)
        t0 = time.monotonic()
        with pytest.raises(shmchan.ChannelTimeoutError):
            w.send(b"c", timeout=0.2)
        wall = time.monotonic() - t0
        cpu1 = resource.getrusage(resource.RUSAGE_THREAD)
        cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
        assert 0.2 <= wall < 0.5, wall
        assert cpu < 0.25 * wall, f"{cpu:.3f} s of CPU in {wall:.3f} s: busy waiting"


def test_recv_on_empty_ring_times_out_on_time_without_burning_cpu(unique_name: str) -> None:
    """recv(timeout=0.2) on an empty ring ends after 0.2 s + a little, using far less CPU than wall time."""
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=2) as ch:
        r = ch.reader()
        cpu0 = resource.getrusage(resource.RUSAGE_THREAD)
        t0 = time.monotonic()
        with pytest.raises(shmchan.ChannelTimeoutError):
            r.recv(timeout=0.2)
        wall = time.monotonic() - t0
        cpu1 = resource.getrusage(resource.RUSAGE_THREAD)
        cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
        assert 0.2 <= wall < 0.5, wall
        assert cpu < 0.25 * wall, f"{cpu:.3f} s of CPU in {wall:.3f} s: busy waiting"


# ---- #26: a peer dies while the other side waits with no timeout ----


def test_blocked_reader_learns_of_dead_writer_within_a_few_slices(unique_name: str, spawn) -> None:
    """A reader blocked with timeout=None raises PeerDeadError within 0.5 s of the writer's SIGKILL (slice: 100 ms)."""
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=4) as ch:
        r = ch.reader()
        child = spawn("send", unique_name, 0, "hold")
        child.expect("ready")
        killed: list[float] = []

        def kill() -> None:
            killed.append(time.monotonic())
            child.kill()

        timer = threading.Timer(0.5, kill)
        timer.start()
        try:
            with pytest.raises(shmchan.PeerDeadError):
                r.recv(timeout=None)
            latency = time.monotonic() - killed[0]
        finally:
            timer.join()
        child.finish()
        assert latency < 0.5, f"PeerDeadError came {latency:.3f} s after the kill"


def test_blocked_writer_learns_of_dead_reader_within_a_few_slices(unique_name: str, spawn) -> None:
    """A writer blocked on a full ring with timeout=None raises PeerDeadError within 0.5 s of the reader's SIGKILL."""
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=1) as ch:
        w = ch.writer()
        child = spawn("hold", unique_name, "reader")
        child.expect("ready")
        w.send(b"fills the ring")
        killed: list[float] = []

        def kill() -> None:
            killed.append(time.monotonic())
            child.kill()

        timer = threading.Timer(0.5, kill)
        timer.start()
        try:
            with pytest.raises(shmchan.PeerDeadError):
                w.send(b"blocked", timeout=None)
            latency = time.monotonic() - killed[0]
        finally:
            timer.join()
        child.finish()
        assert latency < 0.5, f"PeerDeadError came {latency:.3f} s after the kill"


# ---- #30: interpreter exit with a daemon thread blocked in a wait ----

_DAEMON_EXIT = """
import sys, threading, time, shmchan
ch = shmchan.Channel.{how}({args})
r = ch.reader()

def run():
    try:
        r.recv(timeout=None)
    except BaseException as exc:
        print("thread:", type(exc).__name__, flush=True)

threading.Thread(target=run, daemon=True).start()
time.sleep(0.3)
print("exiting", flush=True)
"""


@pytest.mark.parametrize("how", ["create", "open"])
def test_exit_with_a_daemon_thread_blocked_in_recv_is_clean(unique_name: str, how: str) -> None:
    """A process exiting while a daemon thread waits in recv() on a never-closed channel exits 0, without a crash."""
    creator = None
    if how == "open":
        creator = shmchan.Channel.create(unique_name, slot_size=64, capacity=4)
        args = repr(unique_name)
    else:
        args = f"{unique_name!r}, slot_size=64, capacity=4"
    try:
        for _ in range(3):  # the race between exit and the waiting thread: try it a few times
            res = _run_python(_DAEMON_EXIT.format(how=how, args=args), timeout=30)
            assert res.returncode == 0, f"exit code {res.returncode}; stderr:\n{res.stderr}"
            assert res.stdout.splitlines()[0] == "exiting"
            assert "Fatal Python error" not in res.stderr and "Traceback" not in res.stderr, res.stderr
            if how == "create":
                assert not os.path.exists(shm_path(unique_name))
            else:
                assert os.path.exists(shm_path(unique_name))
    finally:
        if creator is not None:
            creator.close()
