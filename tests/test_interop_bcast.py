"""Cross-language broadcast channels and state boards: Python, C++ (through the C API) and Rust.

Every language has the same two peer programs, driven here by the same command lines: ``bcast``
(``writer``/``reader`` of a broadcast channel) and ``state`` (``writer``/``reader`` of a state
board). The native ones are ``shmchan-bcast`` and ``shmchan-state`` in peers/c/build and
peers/rust/target/release; the Python one is this file run as a script (see :func:`main` at the
bottom). Their payloads are derived from one number, identically in every language (here,
peers/c/bcast_common.hpp and peers/rust/src/interop.rs), so any torn, mixed or misplaced message or
value is caught:

* broadcast message ``seq`` has ``2 + seq % (slot_size/8 - 1)`` little-endian u64 words: word 0 is
  ``seq``, word ``j >= 1`` is ``(seq + j) * K`` (mod 2**64);
* a state value is a 256-byte structured numpy record (:data:`COUNTER`) whose every field is derived
  from the counter ``seq``, which equals the version it was published as.

As in tests/test_interop.py, a missing native peer FAILS the test when the environment variable CI
is set, and skips it (with the reason) otherwise; the peer commands are resolved before any channel
is created, so a skip leaks nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import shmchan
from shmchan import schema as S

ROOT = Path(__file__).resolve().parent.parent
THIS = Path(__file__).resolve()
BINARIES = {
    "rust": ROOT / "peers" / "rust" / "target" / "release",
    "c": ROOT / "peers" / "c" / "build",
}
NATIVE = ("c", "rust")

# ---- the payloads (the same in peers/c/bcast_common.hpp and peers/rust/src/interop.rs) ----

K = np.uint64(0x9E3779B97F4A7C15)

#: the state-board value: every field derived from the counter `seq` (see counter_value)
COUNTER = np.dtype([("seq", "<u8"), ("neg", "<i8"), ("half", "<f8"), ("lo", "<u4"), ("hi", "<u4"),
                    ("last", "<u4"), ("mix", "<u4"), ("arr", "<u4", (54,))])
#: what State.create(dtype=COUNTER) stores as ChannelInfo.numpy_descr (the native peers check it)
COUNTER_DESCR = ("([('seq', '<u8'), ('neg', '<i8'), ('half', '<f8'), ('lo', '<u4'), ('hi', '<u4'), "
                 "('last', '<u4'), ('mix', '<u4'), ('arr', '<u4', (54,))], ())")


def message_len(seq: int, slot_size: int) -> int:
    words = max(slot_size // 8, 2)
    return 8 * (2 + seq % (words - 1))


def message_words(seq: int, n: int) -> np.ndarray[Any, np.dtype[np.uint64]]:
    w = (np.uint64(seq) + np.arange(n, dtype=np.uint64)) * K  # wraps mod 2**64
    w[0] = seq
    return w


def message_bytes(seq: int, slot_size: int) -> bytes:
    return message_words(seq, message_len(seq, slot_size) // 8).astype("<u8").tobytes()


def message_verify(buf: Any, slot_size: int) -> int | str:
    """The sequence number of a well-formed message, or a sentence saying what is wrong with it."""
    n = len(buf)
    if n < 16 or n % 8:
        return f"a message of {n} bytes"
    w = np.frombuffer(buf, dtype="<u8")
    seq = int(w[0])
    if n != message_len(seq, slot_size):
        return f"message {seq} has {n} bytes, expected {message_len(seq, slot_size)}"
    bad = np.flatnonzero(w != message_words(seq, n // 8))
    if bad.size:
        return f"message {seq}: word {int(bad[0])} is wrong"
    return seq


def counter_value(seq: int, last: bool = False) -> np.ndarray[Any, np.dtype[np.void]]:
    v = np.zeros((), dtype=COUNTER)
    lo, hi = seq & 0xFFFFFFFF, seq >> 32
    v["seq"], v["neg"], v["half"] = seq, -seq, seq * 0.5
    v["lo"], v["hi"], v["last"], v["mix"] = lo, hi, int(last), lo ^ hi ^ 0xA5A5A5A5
    v["arr"] = ((np.uint64(seq) + np.arange(54, dtype=np.uint64)) * np.uint64(2654435761)) & np.uint64(0xFFFFFFFF)
    return v


# ---- running the peers ----


def command(lang: str, program: str) -> list[str]:
    """The command line of ``lang``'s ``program`` (bcast/state); fails (CI) or skips when it is not built."""
    if lang == "py":
        return [sys.executable, str(THIS), program]
    exe = BINARIES[lang] / f"shmchan-{program}"
    if not exe.exists():
        why = f"the {lang} peer {exe} is not built (make -C peers/c; cargo build --release in peers/rust)"
        if os.environ.get("CI"):
            pytest.fail(f"{why}; CI must build it")
        pytest.skip(why)
    return [str(exe)]


class Proc:
    """A peer process that talks in lines on stdout."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  cwd=ROOT)
        self.buf = b""

    def readline(self, timeout: float) -> str:
        assert self.p.stdout is not None
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"no line from {self.argv} within {timeout} s")
            ready, _, _ = select.select([self.p.stdout], [], [], left)
            if ready:
                chunk = os.read(self.p.stdout.fileno(), 65536)
                if not chunk:
                    self.p.wait(10)
                    err = self.p.stderr.read().decode(errors="replace") if self.p.stderr else ""
                    pytest.fail(f"{self.argv} exited ({self.p.returncode}) without a line; stdout so far "
                                f"{self.buf!r}; stderr:\n{err}")
                self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()

    def expect(self, prefix: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            line = self.readline(max(deadline - time.monotonic(), 0.01))
            if line.startswith(prefix):
                return line
            if line.startswith("error"):
                pytest.fail(f"{self.argv}: {line}")

    def send(self, line: str) -> None:
        assert self.p.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self.p.stdin.write(line.encode() + b"\n")
            self.p.stdin.flush()

    def finish(self, timeout: float = 60.0) -> tuple[int, str, str]:
        """Wait for the exit; return (exit code, remaining stdout, stderr)."""
        try:
            out, err = self.p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            out, err = self.p.communicate()
            pytest.fail(f"{self.argv} did not exit within {timeout} s; stderr:\n{err.decode(errors='replace')}")
        return self.p.returncode, (self.buf + out).decode(errors="replace"), err.decode(errors="replace")

    def close(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
        with contextlib.suppress(Exception):
            self.p.communicate(timeout=10)
        for f in (self.p.stdin, self.p.stdout, self.p.stderr):
            if f is not None:
                f.close()


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    """Peer processes started by a test; any still running at the end is killed."""
    started: list[Proc] = []
    yield started
    for p in started:
        p.close()


def start(procs: list[Proc], argv: list[str]) -> Proc:
    p = Proc(argv)
    procs.append(p)
    return p


def fields(line: str) -> dict[str, str]:
    """``done messages=3 crc=..`` -> {"messages": "3", "crc": ...}"""
    return dict(w.split("=", 1) for w in line.split()[1:] if "=" in w)


def done(p: Proc, timeout: float = 180.0) -> dict[str, str]:
    """The fields of the peer's "done" line, after it exited cleanly."""
    f = fields(p.expect("done", timeout))
    rc, _, err = p.finish()
    assert rc == 0, f"{p.argv} exited {rc} after {f}; stderr:\n{err}"
    return f


def report(what: str, f: dict[str, str]) -> None:
    """Shown with pytest -s (and in the captured output of a failure)."""
    print(f"{what}: " + " ".join(f"{k}={v}" for k, v in f.items() if k not in ("crc",)))


def ints(f: dict[str, str], *keys: str) -> tuple[int, ...]:
    return tuple(int(f[k]) for k in keys)


# ---- broadcast ----

MESSAGES = 20000
GEOMETRY = ["--slot-size", "512", "--capacity", "8"]


@pytest.mark.parametrize("writer", ["py", "c", "rust"])
def test_block_broadcast_reaches_readers_in_every_language(procs: list[Proc], unique_name: str, writer: str) -> None:
    """A block-policy writer feeds a Python, a C++ and a Rust reader at once: every reader gets every
    message, in order, each checked word by word, and the crc32 of the whole stream matches the writer's."""
    wcmd = command(writer, "bcast")
    rcmds = {lang: command(lang, "bcast") for lang in ("py", "c", "rust")}
    w = start(procs, [*wcmd, "writer", unique_name, "--create", "--policy", "block", *GEOMETRY, "--max-readers", "4",
                      "--messages", str(MESSAGES), "--wait-readers", "3", "--timeout", "60", "--hold"])
    w.expect("ready")
    readers = {lang: start(procs, [*cmd, "reader", unique_name, "--start", "oldest", "--policy", "block",
                                   "--timeout", "60"])
               for lang, cmd in rcmds.items()}
    for r in readers.values():
        assert r.expect("ready") == "ready position=0"
    wf = fields(w.expect("done", 180))
    assert wf["messages"] == str(MESSAGES)
    for lang, r in readers.items():
        f = done(r)
        report(f"{writer} -> {lang} reader", f)
        assert f["errors"] == "0", f
        assert ints(f, "messages", "lost", "stale", "first", "last", "end") == (MESSAGES, 0, 0, 0, MESSAGES - 1,
                                                                               MESSAGES), f
        assert f["crc"] == wf["crc"], f"{lang} reader crc {f['crc']}, writer {wf['crc']}"
    w.send("exit")
    assert w.finish()[0] == 0


@pytest.mark.parametrize("writer", NATIVE)
def test_overwrite_broadcast_laps_a_slow_python_reader_never_torn(procs: list[Proc], unique_name: str,
                                                                  writer: str) -> None:
    """A native overwrite-policy writer never waits for a slow Python reader (nor for a slow reader
    of the other native language): the readers lose messages and are told how many, every message
    they are given intact checks out word by word, and delivered + lost covers the whole stream."""
    other = "rust" if writer == "c" else "c"
    wcmd, pcmd, ocmd = command(writer, "bcast"), command("py", "bcast"), command(other, "bcast")
    w = start(procs, [*wcmd, "writer", unique_name, "--create", "--policy", "overwrite", *GEOMETRY,
                      "--messages", str(MESSAGES), "--interval-us", "20", "--wait-readers", "2", "--timeout", "60",
                      "--hold"])
    w.expect("ready")
    py = start(procs, [*pcmd, "reader", unique_name, "--start", "oldest", "--policy", "overwrite", "--delay-us", "500",
                       "--timeout", "60"])
    nat = start(procs, [*ocmd, "reader", unique_name, "--start", "oldest", "--policy", "overwrite", "--delay-us",
                        "200", "--timeout", "60"])
    for r in (py, nat):
        r.expect("ready")
    wf = fields(w.expect("done", 180))
    assert wf["messages"] == str(MESSAGES)
    for what, r in (("py", py), (other, nat)):
        f = done(r)
        report(f"{writer} -> {what} reader (overwrite)", f)
        assert f["errors"] == "0", f
        messages, lost, stale, torn, last, end = ints(f, "messages", "lost", "stale", "torn", "last", "end")
        assert messages > 0 and lost > 0, f
        assert messages + lost == MESSAGES == end, f
        assert last == MESSAGES - 1, f
        assert torn <= stale, f
    w.send("exit")
    assert w.finish()[0] == 0


@pytest.mark.parametrize("lang", NATIVE)
def test_native_reader_starts_at_the_latest_message(unique_name: str, procs: list[Proc], lang: str) -> None:
    """start=latest: a native reader joining a Python broadcast begins with the newest message sent."""
    cmd = command(lang, "bcast")
    with shmchan.Broadcast.create(unique_name, slot_size=512, capacity=8, max_readers=2) as b:
        w = b.writer()
        for seq in range(5):
            w.send(message_bytes(seq, 512))
        r = start(procs, [*cmd, "reader", unique_name, "--start", "latest", "--timeout", "30"])
        assert r.expect("ready") == "ready position=4"
        for seq in range(5, 100):
            w.send(message_bytes(seq, 512), timeout=30)
        w.close()
        f = done(r)
        assert ints(f, "messages", "lost", "errors", "first", "last") == (96, 0, 0, 4, 99), f


@pytest.mark.parametrize("lang", NATIVE)
def test_native_reader_is_refused_when_every_place_is_taken(unique_name: str, procs: list[Proc], lang: str) -> None:
    cmd = command(lang, "bcast")
    with shmchan.Broadcast.create(unique_name, slot_size=64, capacity=2, max_readers=1) as b:
        b.reader()
        r = start(procs, [*cmd, "reader", unique_name, "--timeout", "5"])
        rc, out, _ = r.finish()
        assert rc == 1 and out.startswith("error"), out
        assert "reader" in out, out


# ---- state boards ----


@pytest.mark.parametrize("writer", ["py"])
def test_python_state_board_hammered_by_native_readers(procs: list[Proc], unique_name: str, writer: str) -> None:
    """Python publishes a structured numpy value as fast as it can for a while; C++ and Rust readers
    read it in a tight loop (and one sleeping in shmchan_state_wait): every value they read is
    consistent and equals its version, versions never go back, and all see the final one."""
    wcmd = command(writer, "state")
    rcmds = [("c", command("c", "state"), []), ("rust", command("rust", "state"), []),
             ("rust --wait", command("rust", "state"), ["--wait"])]
    w = start(procs, [*wcmd, "writer", unique_name, "--create", "--writes", "20000", "--seconds", "1.5", "--go",
                      "--hold"])
    w.expect("ready")
    readers = [(what, start(procs, [*cmd, "reader", unique_name, *extra, "--timeout", "120"]))
               for what, cmd, extra in rcmds]
    for _, r in readers:
        r.expect("ready")
    w.send("go")
    wf = fields(w.expect("done", 180))
    final = int(wf["version"])
    assert final == int(wf["writes"]) >= 20000
    report(f"{writer} state writer", wf)
    for what, r in readers:
        f = done(r)
        report(f"{what} state reader", f)
        assert f["errors"] == "0", f
        reads, versions, last = ints(f, "reads", "versions", "last")
        assert last == final and reads >= versions >= 1, f
    w.send("exit")
    assert w.finish()[0] == 0


@pytest.mark.parametrize("writer", NATIVE)
def test_native_state_board_read_by_python_and_the_other_peer(procs: list[Proc], unique_name: str,
                                                              writer: str) -> None:
    """A C++ or Rust writer creates a state board whose ChannelInfo describes the value as a numpy
    dtype: Python opens it as that structured dtype. Python (polling, and sleeping in
    wait_for_change) and the other native peer read it while it changes: never torn, every value
    equal to its version, versions never decrease."""
    other = "rust" if writer == "c" else "c"
    wcmd, pcmd, ocmd = command(writer, "state"), command("py", "state"), command(other, "state")
    w = start(procs, [*wcmd, "writer", unique_name, "--create", "--writes", "20000", "--seconds", "1.5", "--go",
                      "--hold"])
    w.expect("ready")
    with shmchan.State.open(unique_name) as st:  # the dtype comes from the native peer's ChannelInfo
        assert st.dtype == COUNTER
        assert st.info is not None and st.info.kind == "state" and st.info.numpy_descr == COUNTER_DESCR
        assert st.read() == (None, 0)
    readers = [("py", start(procs, [*pcmd, "reader", unique_name, "--timeout", "120"])),
               ("py --wait", start(procs, [*pcmd, "reader", unique_name, "--wait", "--timeout", "120"])),
               (other, start(procs, [*ocmd, "reader", unique_name, "--timeout", "120"]))]
    for _, r in readers:
        r.expect("ready")
    w.send("go")
    wf = fields(w.expect("done", 180))
    final = int(wf["version"])
    report(f"{writer} state writer", wf)
    for what, r in readers:
        f = done(r)
        report(f"{writer} -> {what} state reader", f)
        assert f["errors"] == "0", f
        reads, versions, last = ints(f, "reads", "versions", "last")
        assert last == final and reads >= versions >= 1, f
    w.send("exit")
    assert w.finish()[0] == 0


@pytest.mark.parametrize("lang", NATIVE)
def test_native_reader_refuses_a_board_of_another_dtype(unique_name: str, procs: list[Proc], lang: str) -> None:
    cmd = command(lang, "state")
    with shmchan.State.create(unique_name, dtype=np.dtype([("seq", "<u8"), ("x", "<f8")])):
        r = start(procs, [*cmd, "reader", unique_name, "--timeout", "5"])
        rc, out, _ = r.finish()
        assert rc == 3 and out.startswith("error incompatible"), out


@pytest.mark.parametrize("lang", NATIVE)
def test_state_board_descriptor_bytes_match_python(procs: list[Proc], unique_name: str, lang: str) -> None:
    """A board described the same way has the same ChannelInfo bytes in every language (as the
    golden header test checks for SPSC channels)."""
    cmd = command(lang, "state")
    w = start(procs, [*cmd, "writer", unique_name, "--create", "--writes", "1", "--hold"])
    w.expect("done")
    try:
        with shmchan.State.open(unique_name) as st:
            native = st.descriptor
        python = S.make_descriptor(None, slot_size=COUNTER.itemsize, capacity=2, slot_align=64, metadata={},
                                   kind="state", numpy_descr=COUNTER_DESCR)
        assert S.decode_channel_info(native) == S.decode_channel_info(python)
        assert native == python
    finally:
        w.send("exit")
        assert w.finish()[0] == 0


# ---- the Python peer: python tests/test_interop_bcast.py bcast|state writer|reader NAME [options] ----


def _error(state: dict[str, int], what: str) -> None:
    state["errors"] += 1
    if state["errors"] <= 10:
        print(what, file=sys.stderr)


def _verify_in_place(m: shmchan.Message, slot_size: int, crc: int) -> tuple[int | str, int]:
    view = m.buffer
    try:
        return message_verify(view, slot_size), zlib.crc32(view, crc)
    finally:
        view.release()  # no view may outlive the message: it is released (and checked) next


def py_bcast_writer(a: argparse.Namespace) -> int:
    if a.create:
        b = shmchan.Broadcast.create(a.name, slot_size=a.slot_size, capacity=a.capacity, max_readers=a.max_readers,
                                     policy=a.policy or "block", metadata={"pattern": "interop-words"})
    else:
        b = shmchan.Broadcast.open(a.name, timeout=5)
    with b:
        slot = b.slot_size
        w = b.writer()
        print("ready", flush=True)
        deadline = time.monotonic() + a.timeout
        while sum(p.state == "attached" for p in b.readers()) < a.wait_readers:
            if time.monotonic() > deadline:
                print("error timeout: the readers did not attach", flush=True)
                return 5
            time.sleep(0.001)
        crc = 0
        t0 = time.monotonic()
        for seq in range(a.messages):
            data = message_bytes(seq, slot)
            if seq % 2:
                w.send(data, timeout=a.timeout)
            else:  # in place: the slot is committed when the block ends
                with w.reserve(len(data), timeout=a.timeout) as slot_:
                    slot_.buffer[:] = data
            crc = zlib.crc32(data, crc)
            if a.interval_us:
                time.sleep(a.interval_us / 1e6)
        print(f"done messages={a.messages} crc={crc:08x} seconds={time.monotonic() - t0:.6f}", flush=True)
        w.close()  # readers see the end of the stream
        if a.hold:
            for line in sys.stdin:
                if line.strip() == "exit":
                    break
    return 0


def py_bcast_reader(a: argparse.Namespace) -> int:
    with shmchan.Broadcast.open(a.name, timeout=5) as b:
        if a.policy and b.policy != a.policy:
            print(f"error incompatible: the channel's policy is {b.policy}, expected {a.policy}", flush=True)
            return 3
        slot = b.slot_size
        r = b.reader(start=a.start)
        start_pos = r.position
        print(f"ready position={start_pos}", flush=True)
        delay = a.delay_us / 1e6
        st = {"errors": 0}
        delivered = stale = torn = accounted = crc = 0
        first: int | None = None
        last: int | None = None
        prev_taken: int | None = None
        t0 = time.monotonic()

        def deliver(seq: int, new_crc: int) -> None:
            nonlocal delivered, first, last, crc
            if last is not None and seq <= last:
                _error(st, f"message {seq} after {last}")
            first = seq if first is None else first
            last = seq
            delivered += 1
            crc = new_crc

        i = 0
        while True:
            i += 1
            if delay and i % 4 == 0:  # a copy: recv_bytes never returns a torn one
                before = r.lost
                try:
                    data = r.recv_bytes(timeout=a.timeout)
                except shmchan.ChannelEndedError:
                    break
                accounted += r.lost - before
                prev_taken = None
                got = message_verify(data, slot)
                if isinstance(got, str):
                    _error(st, f"copied message: {got}")
                else:
                    deliver(got, zlib.crc32(data, crc))
                time.sleep(delay)
                continue
            try:
                m = r.recv(timeout=a.timeout)
            except shmchan.ChannelEndedError:
                break
            pos = m.seq
            accounted += m.lost
            if prev_taken is not None and pos != prev_taken + 1 + m.lost:
                _error(st, f"message {pos} (lost {m.lost}) after message {prev_taken}")
            prev_taken = pos
            if delay:
                time.sleep(delay)  # hold it: a lapping writer may rewrite it now
            got, new_crc = _verify_in_place(m, slot, crc)
            intact = m.intact
            if isinstance(got, str):
                if intact:
                    _error(st, f"message {pos} claimed intact: {got}")
                else:
                    torn += 1  # torn, and the API said so
            elif intact and got != pos:
                _error(st, f"message at position {pos} holds {got}")
            try:
                m.release()
            except shmchan.LappedError:
                stale += 1
                accounted += 1
                continue
            if not intact:
                _error(st, f"message {pos}: intact said lapped, release said intact")
            else:
                deliver(pos, new_crc)
        end, lost = r.position, r.lost
        if accounted != lost:
            _error(st, f"the messages' lost counts add up to {accounted}, the reader's to {lost}")
        if delivered + lost != end - start_pos:
            _error(st, f"{delivered} delivered + {lost} lost != positions {start_pos}..{end}")
        print(f"done messages={delivered} lost={lost} stale={stale} torn={torn} errors={st['errors']} "
              f"first={'none' if first is None else first} last={'none' if last is None else last} "
              f"start={start_pos} end={end} crc={crc:08x} seconds={time.monotonic() - t0:.6f}", flush=True)
        r.close()
    return 1 if st["errors"] else 0


def py_state_writer(a: argparse.Namespace) -> int:
    st = shmchan.State.create(a.name, dtype=COUNTER) if a.create else shmchan.State.open(a.name, timeout=5)
    with st:
        w = st.writer()
        print("ready", flush=True)
        if a.go:
            for line in sys.stdin:
                if line.strip() == "go":
                    break
            else:
                print('error: stdin ended before "go"', flush=True)
                return 1
        t0 = time.monotonic()
        n = 0
        while True:
            n += 1
            last = n >= a.writes and time.monotonic() - t0 >= a.seconds
            k = st.version + 1
            v = w.write(counter_value(k, last))
            if v != k:
                print(f"error: published version {v}, expected {k}", flush=True)
                return 1
            if last:
                print(f"done writes={n} version={v} seconds={time.monotonic() - t0:.6f}", flush=True)
                break
            if a.interval_us:
                time.sleep(a.interval_us / 1e6)
        w.close()
        if a.hold:
            for line in sys.stdin:
                if line.strip() == "exit":
                    break
    return 0


def py_state_reader(a: argparse.Namespace) -> int:
    with shmchan.State.open(a.name, timeout=5) as st:
        if st.dtype != COUNTER:
            print(f"error incompatible: the board holds {st.dtype}; expected {COUNTER}", flush=True)
            return 3
        print("ready", flush=True)
        stats = {"errors": 0}
        reads = versions = nodata = first = seen = 0
        t0 = time.monotonic()
        while True:
            if time.monotonic() - t0 > a.timeout:
                print(f"error timeout: no final value within {a.timeout} s (last version {seen})", flush=True)
                return 5
            if a.wait:
                try:
                    st.wait_for_change(seen, timeout=0.2)
                except shmchan.ChannelTimeoutError:
                    continue
            value, v = st.read()
            if v == 0:
                nodata += 1
                continue
            reads += 1
            if v < seen:
                _error(stats, f"version {v} after {seen}")
            k, fin = int(value["seq"]), int(value["last"])
            if fin > 1 or value.tobytes() != counter_value(k, bool(fin)).tobytes():
                _error(stats, f"version {v}: value {k} is torn or inconsistent")
                fin = 0
            elif k != v:
                _error(stats, f"version {v} holds the value of {k}")
            if v != seen:
                versions += 1
                first = first or v
                seen = v
            if fin:
                break
        print(f"done reads={reads} versions={versions} nodata={nodata} errors={stats['errors']} first={first} "
              f"last={seen} seconds={time.monotonic() - t0:.6f}", flush=True)
    return 1 if stats["errors"] else 0


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="test_interop_bcast.py", description="the Python broadcast/state peer")
    p.add_argument("program", choices=["bcast", "state"])
    p.add_argument("mode", choices=["writer", "reader"])
    p.add_argument("name")
    p.add_argument("--create", action="store_true")
    p.add_argument("--hold", action="store_true")
    p.add_argument("--go", action="store_true")
    p.add_argument("--wait", action="store_true")
    p.add_argument("--slot-size", type=int, default=512)
    p.add_argument("--capacity", type=int, default=8)
    p.add_argument("--max-readers", type=int, default=8)
    p.add_argument("--policy", choices=["block", "overwrite"])
    p.add_argument("--messages", type=int, default=1000)
    p.add_argument("--wait-readers", type=int, default=0)
    p.add_argument("--interval-us", type=int, default=0)
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--start", choices=["oldest", "latest"], default="oldest")
    p.add_argument("--delay-us", type=int, default=0)
    p.add_argument("--writes", type=int, default=1000)
    p.add_argument("--seconds", type=float, default=0.0)
    a = p.parse_args(argv)
    run = {("bcast", "writer"): py_bcast_writer, ("bcast", "reader"): py_bcast_reader,
           ("state", "writer"): py_state_writer, ("state", "reader"): py_state_reader}[(a.program, a.mode)]
    try:
        return run(a)
    except shmchan.ShmchanError as exc:
        print(f"error {type(exc).__name__}: {exc}", flush=True)
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
