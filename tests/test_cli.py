"""The operations commands (`shmchan ls`, `stat`, `hz`, `tail`, `rm`, `gc`) run as a user runs them:
in subprocesses, against channels made by Python and by the C++ and Rust peers.

The native peers are built by `make -C peers/c` and `cargo build --release` in peers/rust. When one
is missing, its tests FAIL if the environment variable CI is set and are skipped otherwise.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import shmchan
from shmchan import schema as S

ROOT = Path(__file__).resolve().parent.parent
SHM = "/dev/shm"
BINARIES = {"rust": ROOT / "peers" / "rust" / "target" / "release", "c": ROOT / "peers" / "c" / "build"}
PY_PEER = [sys.executable, str(ROOT / "tests" / "interop_peer.py")]
COMMANDS = ["ls", "stat", "hz", "tail", "rm", "gc"]


def shmchan_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``shmchan ARGS...`` the way a user does."""
    return subprocess.run([sys.executable, "-m", "shmchan.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def ok_json(*args: str) -> Any:
    """Run a command with --json; it must succeed and print nothing on stderr."""
    out = shmchan_cli(*args, "--json")
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    return json.loads(out.stdout)


def one_error_line(out: subprocess.CompletedProcess[str], rc: int) -> str:
    """The command failed with exit status ``rc`` and said why in exactly one line."""
    assert out.returncode == rc, (out.returncode, out.stdout, out.stderr)
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("shmchan: ")
    assert "Traceback" not in out.stderr
    return lines[0]


def shm_path(name: str) -> str:
    return f"{SHM}/shmchan.{name}"


def peer_command(lang: str) -> list[str]:
    """The producer of ``lang``; fails (CI) or skips when the native peer is not built."""
    if lang == "py":
        return [*PY_PEER, "producer"]
    exe = BINARIES[lang] / "shmchan-producer"
    if not exe.exists():
        why = f"the {lang} peer {exe} is not built (see docs/interop.md)"
        if os.environ.get("CI"):
            pytest.fail(f"{why}; CI must build it")
        pytest.skip(why)
    return [str(exe)]


class Proc:
    """A child process that talks in lines on stdout; killed and reaped by the ``procs`` fixture."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  cwd=ROOT)
        self.buf = b""

    def expect(self, prefix: str, timeout: float = 20.0) -> str:
        """Read lines until one starts with ``prefix``."""
        assert self.p.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" not in self.buf:
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"no {prefix!r} line from {self.argv} within {timeout} s")
                ready, _, _ = select.select([self.p.stdout], [], [], left)
                if ready:
                    chunk = os.read(self.p.stdout.fileno(), 65536)
                    if not chunk:
                        self.p.wait(10)
                        err = self.p.stderr.read().decode(errors="replace") if self.p.stderr else ""
                        pytest.fail(f"{self.argv} exited ({self.p.returncode}); stderr:\n{err}")
                    self.buf += chunk
            line, self.buf = self.buf.split(b"\n", 1)
            if line.decode().startswith(prefix):
                return line.decode()

    def send(self, text: str) -> None:
        assert self.p.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self.p.stdin.write(text.encode() + b"\n")
            self.p.stdin.flush()

    def finish(self, timeout: float = 30.0) -> tuple[int, str, str]:
        """Wait for the exit; return (exit code, remaining stdout, stderr)."""
        out, err = self.p.communicate(timeout=timeout)
        return self.p.returncode, (self.buf + out).decode(errors="replace"), err.decode(errors="replace")

    def close(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
        with contextlib.suppress(Exception):
            self.p.communicate(timeout=10)


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    """Child processes started by a test; any still running at the end is killed."""
    started: list[Proc] = []
    yield started
    for p in started:
        p.close()


def start(procs: list[Proc], argv: list[str]) -> Proc:
    p = Proc(argv)
    procs.append(p)
    return p


def maps_channel(pid: int, name: str, timeout: float = 20.0) -> None:
    """Wait until process ``pid`` has channel ``name`` mapped (it opened it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/maps") as f:
            if shm_path(name) in f.read():
                return
        time.sleep(0.01)
    pytest.fail(f"process {pid} did not open channel {name!r} within {timeout} s")


# ---------------------------------------------------------------------------------------------
# the command line itself
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_and_json(command: str) -> None:
    """`shmchan CMD --help` explains the command and its --json option; `shmchan --help` lists it."""
    out = shmchan_cli(command, "--help")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"usage: shmchan {command}")
    assert "--json" in out.stdout
    assert command in shmchan_cli("--help").stdout


@pytest.mark.parametrize(("args", "words"), [
    (["ls", "--bogus"], "unrecognized arguments: --bogus"),
    (["stat"], "the following arguments are required: NAME"),
    (["stat", "a/b"], "contains '/'"),
    (["hz", "x", "--interval", "0"], "must be a positive number"),
    (["tail", "x", "--count", "zero"], "not an integer"),
    (["rm"], "the following arguments are required: NAME"),
])
def test_usage_errors_are_one_line_and_exit_2(args: list[str], words: str) -> None:
    """A bad command line: one line on stderr naming the problem and the command's --help, status 2."""
    line = one_error_line(shmchan_cli(*args), 2)
    assert words in line
    assert f"shmchan {args[0]} --help" in line


@pytest.mark.parametrize("command", ["stat", "hz", "tail", "rm"])
def test_a_missing_channel_is_one_line_and_exit_1(command: str, unique_name: str) -> None:
    """Naming a channel that does not exist fails with status 1 and one line saying so."""
    line = one_error_line(shmchan_cli(command, unique_name), 1)
    assert line == f"shmchan: no channel named {unique_name!r} ({shm_path(unique_name)} does not exist)"


# ---------------------------------------------------------------------------------------------
# ls and stat
# ---------------------------------------------------------------------------------------------


def test_stat_and_ls_of_a_python_channel_report_what_was_sent(unique_name: str) -> None:
    """stat --json reports geometry, positions, counters, peers, schema and metadata exactly;
    ls lists the channel; neither disturbs the writer or the reader."""
    size = S.frame_message_size(32, 16, "GRAY8", media_fields=False)  # frames without pts, colour...
    with shmchan.Channel.create(unique_name, slot_size=size, capacity=8, schema="frame",
                                metadata={"camera": "front", "site": "lab"}) as ch, \
            ch.writer() as w, ch.reader() as r:
        for i in range(5):
            with w.reserve_frame(32, 16, "GRAY8") as f:
                f.pixels[:] = i
        with r.recv(timeout=1) as msg:
            assert msg.frame().seq == 0
        with r.recv(timeout=1) as msg:
            assert msg.frame().seq == 1

        d = ok_json("stat", unique_name)
        assert (d["name"], d["path"], d["kind"]) == (unique_name, shm_path(unique_name), "spsc")
        assert (d["slot_size"], d["capacity"], d["nbytes"]) == (size, 8, ch.nbytes)
        assert (d["slot_stride"], d["slot_align"]) == (ch.slot_stride, ch.slot_align)
        assert (d["head"], d["tail"], d["fill"]) == (5, 2, 3)
        assert (d["messages_written"], d["bytes_written"]) == (5, 5 * size)
        assert (d["messages_read"], d["bytes_read"]) == (2, 2 * size)
        assert d["aborts"] == 0 and d["full_waits"] == 0
        assert d["writer"] == {"state": "attached", "pid": os.getpid(), "alive": True}
        assert d["reader"] == {"state": "attached", "pid": os.getpid(), "alive": True}
        assert d["creator_pid"] == os.getpid() and d["creator_alive"] is True
        assert d["stale"] is False and os.getpid() in d["open_by"]
        assert d["schema"]["payload"]["name"] == "shmchan.fb.Frame"
        assert d["schema"]["payload"]["file_identifier"] == "SHFR"
        assert d["schema"]["metadata"] == {"camera": "front", "site": "lab"}
        assert d["owner"] and d["mode"] == "0600"

        rows = {row["name"]: row for row in ok_json("ls")}
        row = rows[unique_name]
        assert row["error"] is None and row["stale"] is False
        assert (row["slot_size"], row["capacity"], row["fill"], row["messages_written"]) == (size, 8, 3, 5)

        human = shmchan_cli("ls")
        assert human.returncode == 0, human.stderr
        header, *lines = human.stdout.splitlines()
        assert header.split()[:9] == ["NAME", "KIND", "SLOTS", "MEMORY", "FILL", "WRITER", "READER", "SCHEMA", "AGE"]
        mine = next(line for line in lines if line.startswith(unique_name + " "))
        assert "x 8" in mine and "3/8" in mine and "Frame" in mine and str(os.getpid()) in mine

        text = shmchan_cli("stat", unique_name)
        assert text.returncode == 0, text.stderr
        for words in ("geometry", "positions", "statistics", "schema", "metadata", "camera  front",
                      "shmchan.fb.Frame", "messages written  5"):
            assert words in text.stdout

        # nothing was taken or disturbed: the reader gets the rest, the writer carries on
        w.send(bytes(size))
        assert [r.recv_bytes(timeout=1)[:0] for _ in range(4)] == [b""] * 4
        assert ch.stats().messages_read == 6


def test_ls_lists_a_broken_channel_as_a_row_with_the_error(unique_name: str) -> None:
    """A file that is not a channel is one row with the error, not a traceback; stat of it fails cleanly."""
    path = shm_path(unique_name)
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    try:
        os.write(fd, b"not a channel" * 400)
        os.close(fd)
        rows = {row["name"]: row for row in ok_json("ls")}
        assert "not a shmchan channel" in rows[unique_name]["error"]
        human = shmchan_cli("ls")
        assert human.returncode == 0 and "Traceback" not in human.stderr
        assert "not a shmchan channel" in next(x for x in human.stdout.splitlines() if x.startswith(unique_name))
        assert "not a shmchan channel" in one_error_line(shmchan_cli("stat", unique_name), 1)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def test_group_writable_channels_need_all_or_foreign(unique_name: str) -> None:
    """A channel others could write is refused by default (a row with the reason) and inspected
    with `ls --all` and `stat --foreign`."""
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=4, mode=0o660):
        row = {r["name"]: r for r in ok_json("ls")}[unique_name]
        assert "writable by group or others" in row["error"] and "--all" in row["error"]
        row = {r["name"]: r for r in ok_json("ls", "--all")}[unique_name]
        assert row["error"] is None and row["mode"] == "0660" and row["capacity"] == 4
        line = one_error_line(shmchan_cli("stat", unique_name), 1)
        assert "writable by group or others" in line and "--foreign" in line
        assert ok_json("stat", unique_name, "--foreign")["slot_size"] == 64


@pytest.mark.parametrize("lang", ["c", "rust", "py"])
def test_stat_ls_tail_of_a_channel_made_by_a_peer(procs: list[Proc], unique_name: str, lang: str) -> None:
    """A C++, Rust or Python producer creates a Frame channel and holds it: stat, ls and tail
    report its geometry, counters, schema, metadata and decoded frames."""
    p = start(procs, [*peer_command(lang), unique_name, "--create", "--frames", "3", "--width", "64",
                      "--height", "48", "--capacity", "8", "--meta", "camera=front", "--hold"])
    p.expect("ready")
    p.expect("done frames=3")
    size = S.frame_message_size(64, 48, "RGB24", media_fields=False)  # every peer's frames, without media fields

    d = ok_json("stat", unique_name)
    assert (d["slot_size"], d["capacity"], d["head"], d["tail"], d["fill"]) == (size, 8, 3, 0, 3)
    assert (d["messages_written"], d["bytes_written"], d["messages_read"]) == (3, 3 * size, 0)
    assert (d["writer"]["state"], d["writer"]["pid"]) == ("closed", p.p.pid)  # it closed its writer when done
    assert d["reader"]["state"] == "none"
    assert d["creator_pid"] == p.p.pid and d["creator_alive"] is True
    assert d["schema"]["payload"]["name"] == "shmchan.fb.Frame"
    assert d["schema"]["metadata"] == {"camera": "front"}
    assert d["stale"] is False and p.p.pid in d["open_by"]

    row = {r["name"]: r for r in ok_json("ls")}[unique_name]
    assert (row["error"], row["slot_size"], row["fill"], row["creator_pid"]) == (None, size, 3, p.p.pid)

    frames = [json.loads(x) for x in shmchan_cli("tail", unique_name, "--json").stdout.splitlines()]
    assert [(m["pos"], m["type"], m["seq"], m["width"], m["height"], m["pixel_format"]) for m in frames] == \
        [(i, "frame", i, 64, 48, "RGB24") for i in range(3)]
    assert all(m["nbytes"] == size and m["data_size"] == 64 * 48 * 3 for m in frames)
    assert ok_json("stat", unique_name)["messages_read"] == 0  # tail took nothing

    p.send("exit")
    rc, _, err = p.finish()
    assert rc == 0, err
    assert not os.path.exists(shm_path(unique_name))


# ---------------------------------------------------------------------------------------------
# tail
# ---------------------------------------------------------------------------------------------


def test_tail_follow_prints_messages_sent_while_it_runs(procs: list[Proc], unique_name: str) -> None:
    """tail --follow prints raw bytes as hex, a Frame and a Tensor decoded, as they are sent, and
    takes nothing: the reader afterwards receives every message."""
    with shmchan.Channel.create(unique_name, slot_size=4096, capacity=8) as ch, ch.writer() as w:
        t = start(procs, [sys.executable, "-m", "shmchan.cli", "tail", unique_name, "--follow",
                          "--count", "3", "--timeout", "30", "--json"])
        maps_channel(t.p.pid, unique_name)  # tail runs and has the channel open: now send
        w.send(b"hello, tail\x00\x01")
        S.send_frame(w, np.full((4, 6, 3), 7, np.uint8), "RGB24")
        w.send_tensor(np.arange(6, dtype=np.float32).reshape(2, 3))
        rc, out, err = t.finish()
        assert rc == 0, err
        raw, frame, tensor = (json.loads(x) for x in out.splitlines())
        assert (raw["pos"], raw["type"], raw["nbytes"]) == (0, "bytes", 13)
        assert bytes.fromhex(raw["hex"]) == b"hello, tail\x00\x01" and raw["truncated"] is False
        assert (frame["pos"], frame["type"], frame["width"], frame["height"]) == (1, "frame", 6, 4)
        assert (frame["pixel_format"], frame["seq"], frame["pixel_min"], frame["pixel_max"]) == ("RGB24", 1, 7, 7)
        assert (tensor["pos"], tensor["type"], tensor["dtype"], tensor["shape"]) == (2, "tensor", "float32", [2, 3])
        assert tensor["head"] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
        with ch.reader() as r:
            assert r.recv_bytes(timeout=1) == b"hello, tail\x00\x01"
            with r.recv(timeout=1) as m:
                assert m.frame().width == 6
            with r.recv(timeout=1) as m:
                assert m.tensor().shape == (2, 3)


def test_tail_human_output_and_its_bounds(unique_name: str) -> None:
    """Without --follow tail prints what the ring holds and exits; --follow --timeout stops in time."""
    with shmchan.Channel.create(unique_name, slot_size=256, capacity=4) as ch, ch.writer() as w:
        out = shmchan_cli("tail", unique_name)
        assert (out.returncode, out.stdout, out.stderr) == (0, "", "")
        w.send(bytes(range(40)))
        S.send_frame(w, np.zeros((2, 2), np.uint8), "GRAY8")
        out = shmchan_cli("tail", unique_name, "--bytes", "8")
        assert out.returncode == 0, out.stderr
        first, second = out.stdout.splitlines()
        assert first.startswith("#0") and "00010203 04050607 ... (+32 B)" in first
        assert second.startswith("#1") and "Frame seq=1 2x2 GRAY8" in second
        t0 = time.monotonic()
        out = shmchan_cli("tail", unique_name, "--follow", "--new", "--timeout", "0.5")
        assert out.returncode == 0 and out.stdout == ""
        assert time.monotonic() - t0 < 20


# ---------------------------------------------------------------------------------------------
# hz
# ---------------------------------------------------------------------------------------------

PACED_PRODUCER = """
import signal, sys, time, shmchan
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # leave through the with: the channel is removed
with shmchan.Channel.create(sys.argv[1], slot_size=1000, capacity=16) as ch, ch.writer() as w, ch.reader() as r:
    print("ready", flush=True)
    end = time.monotonic() + 60
    while time.monotonic() < end:
        w.send(bytes(1000))
        r.recv_bytes()
        time.sleep(0.002)
"""


def test_hz_reports_a_plausible_rate_while_a_producer_runs(procs: list[Proc], unique_name: str) -> None:
    """A producer sending at most 500 messages/s of 1000 bytes: hz --once reports a non-zero rate
    below that, 1000 bytes per message, and a human report line per interval."""
    p = start(procs, [sys.executable, "-c", PACED_PRODUCER, unique_name])
    p.expect("ready")
    rep = ok_json("hz", unique_name, "--once", "--interval", "0.5")
    assert 20 < rep["write_hz"] <= 520, rep
    assert 20 < rep["read_hz"] <= 520, rep
    assert rep["avg_message_bytes"] == 1000.0
    assert rep["write_bytes_per_s"] == pytest.approx(1000 * rep["write_hz"])
    assert (rep["writer"], rep["reader"], rep["capacity"]) == ("attached", "attached", 16)
    assert 0.5 <= rep["interval_s"] < 5

    out = shmchan_cli("hz", unique_name, "--count", "2", "--interval", "0.3")
    assert out.returncode == 0, out.stderr
    title, header, *rows = out.stdout.splitlines()
    assert title.startswith(unique_name) and header.split()[0] == "MSG/S" and len(rows) == 2
    assert all(float(row.split()[0]) > 0 for row in rows)

    p.p.send_signal(signal.SIGTERM)
    rc, _, err = p.finish()
    assert rc == 0, err
    assert not os.path.exists(shm_path(unique_name))


# ---------------------------------------------------------------------------------------------
# rm and gc
# ---------------------------------------------------------------------------------------------


def test_rm_removes_the_name_and_open_handles_keep_working(unique_name: str) -> None:
    """rm removes the name and says the processes that have it open keep working; they do."""
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=4) as ch, ch.writer() as w, ch.reader() as r:
        out = shmchan_cli("rm", unique_name)
        assert out.returncode == 0, out.stderr
        assert f"removed {unique_name}" in out.stdout
        assert str(os.getpid()) in out.stdout and "keep working" in out.stdout
        assert not os.path.exists(shm_path(unique_name))
        w.send(b"still here")
        assert r.recv_bytes(timeout=1) == b"still here"
        line = one_error_line(shmchan_cli("rm", unique_name), 1)
        assert f"no channel named {unique_name!r}" in line
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=4):
        assert ok_json("rm", unique_name) == [{"name": unique_name, "removed": True, "open_by": [os.getpid()]}]


STALE_MAKER = """
import sys, shmchan
ch = shmchan.Channel.create(sys.argv[1], slot_size=64, capacity=4)
print("ready", flush=True)
sys.stdin.read()
"""


def test_gc_removes_a_stale_channel_and_never_a_live_one(procs: list[Proc], unique_name: str) -> None:
    """A channel whose creator was killed with SIGKILL is stale: ls says so, gc --dry-run lists it,
    gc removes it; a live channel is listed as in use and never touched."""
    stale, live = unique_name + "-stale", unique_name + "-live"
    p = start(procs, [sys.executable, "-c", STALE_MAKER, stale])
    p.expect("ready")
    p.p.send_signal(signal.SIGKILL)
    p.p.wait(10)
    time.sleep(0.2)  # a channel younger than 100 ms is never called stale
    with shmchan.Channel.create(live, slot_size=64, capacity=4):
        rows = {r["name"]: r for r in ok_json("ls")}
        assert rows[stale]["stale"] is True and rows[live]["stale"] is False
        assert rows[stale]["creator_alive"] is False
        assert "stale" in next(x for x in shmchan_cli("ls").stdout.splitlines() if x.startswith(stale + " "))

        everything = ok_json("gc", "--dry-run")
        assert everything["dry_run"] is True and stale in everything["stale"] and live not in everything["stale"]
        assert ok_json("gc", "--dry-run", stale, live) == {"dry_run": True, "stale": [stale]}
        assert os.path.exists(shm_path(stale))

        assert ok_json("gc", stale, live) == {"dry_run": False, "removed": [stale]}
        assert not os.path.exists(shm_path(stale)) and os.path.exists(shm_path(live))
        out = shmchan_cli("gc", live)
        assert (out.returncode, out.stdout) == (0, "no stale channels\n")
        assert os.path.exists(shm_path(live))


# ---------------------------------------------------------------------------------------------
# broadcast channels and state boards
# ---------------------------------------------------------------------------------------------

STATE_DTYPE = np.dtype([("n", "<u8"), ("h", "<u4"), ("v", "<u8", (16,))])  # tests/peers.py's board


def state_value(n: int) -> dict[str, Any]:
    """tests/peers.py's value ``n`` as `stat --json` shows it."""
    return {"n": n, "h": (n * 2654435761) & 0xFFFFFFFF, "v": [(n + i) * 3 for i in range(16)]}


def row_of(name: str, text: str) -> str:
    """The line of a human table that starts with ``name``."""
    return next(line for line in text.splitlines() if line.startswith(name + " "))


def is_stale_now(name: str) -> bool:
    """What ls says about channel ``name`` being stale."""
    return bool({r["name"]: r for r in ok_json("ls")}[name]["stale"])


def wait_until(cond: Any, what: str, timeout: float = 20.0) -> None:
    """Poll ``cond`` until it is true; fail the test with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {timeout} s")
        time.sleep(0.01)


def test_ls_and_stat_of_a_broadcast_channel_show_its_readers(spawn: Any, unique_name: str) -> None:
    """A broadcast channel (no descriptor: the kind comes from the header) with a writer and two
    reader processes: ls and stat report kind, policy, every reader place (pid, alive, position,
    behind, messages), fill relative to the slowest reader; a killed reader shows as dead and
    stops counting as the slowest; nothing is disturbed."""
    w = spawn("bcast_create", unique_name, "block", 4, 5)
    w.expect("ready")
    fast = spawn("bcast_hold_reader", unique_name, 4)
    slow = spawn("bcast_hold_reader", unique_name, 1)
    assert fast.expect("ready").split()[1] == "4" and slow.expect("ready").split()[1] == "1"

    d = ok_json("stat", unique_name)
    assert (d["kind"], d["policy"], d["max_readers"], d["schema"]) == ("broadcast", "block", 4, None)
    assert (d["head"], d["tail"], d["fill"], d["capacity"]) == (5, 1, 4, 8)
    assert (d["readers_attached"], d["readers_alive"], d["readers_dead"]) == (2, 2, 0)
    assert d["writer"] == {"state": "attached", "pid": w.pid, "alive": True}
    assert "reader" not in d  # one reader is an SPSC notion
    places = {p["pid"]: p for p in d["readers"]}
    assert (places[fast.pid]["position"], places[fast.pid]["behind"], places[fast.pid]["messages"]) == (4, 1, 4)
    assert (places[slow.pid]["position"], places[slow.pid]["behind"], places[slow.pid]["messages"]) == (1, 4, 1)
    assert all(p["state"] == "attached" and p["alive"] and p["lost"] == 0 for p in d["readers"])
    assert d["slowest_reader"] == places[slow.pid]["index"]
    assert (d["messages_written"], d["messages_read"], d["lost"]) == (5, 5, 0)
    assert (d["ring_first"], d["ring_end"]) == (0, 5)
    assert {w.pid, fast.pid, slow.pid} <= set(d["open_by"]) and d["stale"] is False

    text = shmchan_cli("stat", unique_name)
    assert text.returncode == 0, text.stderr
    for words in ("kind     broadcast, policy block", "max readers  4 (2 places free)", "reader places",
                  "slowest  1 (reader", "fill     4/8 (50%) of the slowest live reader", "readers  2 alive"):
        assert words in text.stdout, text.stdout
    header = next(x for x in text.stdout.splitlines() if "PLACE" in x)
    assert header.split() == ["PLACE", "PID", "STATE", "POSITION", "BEHIND", "MESSAGES", "BYTES", "LOST", "EMPTY",
                              "WAITS"]
    assert row_of(f"  {places[slow.pid]['index']}", text.stdout).split()[1:6] == [str(slow.pid), "alive", "1", "4",
                                                                                 "1"]

    row = {r["name"]: r for r in ok_json("ls")}[unique_name]
    assert (row["kind"], row["fill"], row["readers_alive"], row["policy"]) == ("broadcast", 4, 2, "block")
    line = row_of(unique_name, shmchan_cli("ls").stdout)
    assert line.split()[1] == "broadcast" and "256 B x 8" in line and " 4/8 " in line and " 2 of 4 " in line

    slow.kill()
    slow.finish()
    d = ok_json("stat", unique_name)
    dead = next(p for p in d["readers"] if p["pid"] == slow.pid)
    assert (dead["state"], dead["alive"], dead["position"]) == ("attached", False, 1)
    assert (d["readers_alive"], d["readers_dead"], d["tail"], d["fill"]) == (1, 1, 4, 1)  # fast is the slowest now
    assert " 1 of 4, 1 dead " in row_of(unique_name, shmchan_cli("ls").stdout)
    text = shmchan_cli("stat", unique_name).stdout
    assert "1 alive, 1 DEAD" in text and row_of(f"  {dead['index']}", text).split()[2] == "DEAD"

    fast.send_line("exit")
    assert fast.finish()[0] == 0
    d = ok_json("stat", unique_name)
    closed = next(p for p in d["readers"] if p["pid"] == fast.pid)
    assert (closed["state"], closed["behind"], closed["messages"]) == ("closed", None, 4)  # its last counters
    assert (d["readers_alive"], d["tail"], d["fill"], d["slowest_reader"]) == (0, 5, 0, None)
    assert "no live reader" in shmchan_cli("stat", unique_name).stdout
    w.send_line("exit")
    assert w.finish()[0] == 0
    assert not os.path.exists(shm_path(unique_name))


def test_ls_and_stat_of_a_state_board_show_version_and_value(spawn: Any, unique_name: str) -> None:
    """A state board made by another process, read by a third: ls shows kind, value size and
    version (no slots or fill); stat shows version, dtype, the writer and the current value."""
    w = spawn("state_create_hold", unique_name, 3)
    w.expect("ready")
    holder = spawn("open_and_exit", unique_name)  # a reader: it opens the board, attaches nothing
    holder.expect("ready")

    d = ok_json("stat", unique_name)
    assert (d["kind"], d["version"], d["value_version"], d["max_size"]) == ("state", 3, 3, STATE_DTYPE.itemsize)
    assert (d["value_size"], d["value"], d["value_truncated"]) == (STATE_DTYPE.itemsize, state_value(3), False)
    assert d["dtype"] == str(STATE_DTYPE) and d["dtype_short"] == "record(3 fields, 140 B)"
    assert d["writer"] == {"state": "attached", "pid": w.pid, "alive": True}
    assert (d["messages_written"], d["bytes_written"]) == (3, 3 * STATE_DTYPE.itemsize)
    for spsc_only in ("reader", "tail", "fill", "messages_read", "full_waits", "empty_waits"):
        assert spsc_only not in d
    assert d["schema"]["kind"] == "state" and "('n', '<u8')" in d["schema"]["numpy_descr"]
    assert {w.pid, holder.pid} <= set(d["open_by"]) and d["stale"] is False

    text = shmchan_cli("stat", unique_name)
    assert text.returncode == 0, text.stderr
    for words in ("kind     state", "version     3", "value size  140 B", f"writer   pid {w.pid}, attached, alive",
                  "value (version 3)", f"n=3 h={state_value(3)['h']} v=[ 9, 12, 15, ..., 48, 51, 54]"):
        assert words in text.stdout, text.stdout
    for spsc_only in ("positions", "tail  ", "fill  ", "full waits"):
        assert spsc_only not in text.stdout

    row = {r["name"]: r for r in ok_json("ls")}[unique_name]
    assert (row["kind"], row["version"], row["value"]) == ("state", 3, state_value(3))
    cells = row_of(unique_name, shmchan_cli("ls").stdout).split()
    assert cells[1:5] == ["state", "140", "B", "value"] and cells[7] == "v3"
    assert cells[8:11] == [str(w.pid), "any", "record(3"]

    for p in (holder, w):
        p.send_line("exit")
        assert p.finish()[0] == 0
    assert not os.path.exists(shm_path(unique_name))


def test_stat_of_a_state_board_abbreviates_a_large_value(unique_name: str) -> None:
    """A numpy value of 1000 elements: --json carries its first 64 (and says so), the human report
    one short line; before any publish there is no value."""
    with shmchan.State.create(unique_name, dtype=np.dtype((np.float64, (1000,)))) as st:
        d = ok_json("stat", unique_name)
        assert (d["version"], d["value"], d["value_size"]) == (0, None, 8000)
        assert "nothing published yet" in shmchan_cli("stat", unique_name).stdout
        with st.writer() as w:
            w.write(np.arange(1000.0))
            d = ok_json("stat", unique_name)
            assert d["value"] == [float(i) for i in range(64)] and d["value_truncated"] is True
            value = next(x for x in shmchan_cli("stat", unique_name).stdout.split("value (version 1)\n")[1:])
            assert value.splitlines()[0] == "  [  0.,   1.,   2., ..., 997., 998., 999.]"
            cells = row_of(unique_name, shmchan_cli("ls").stdout).split()
            assert cells[1:5] == ["state", "7.8", "KiB", "value"] and cells[7] == "v1" and cells[10] == "float64[1000]"


@pytest.mark.parametrize("lang", ["c", "rust"])
def test_stat_ls_tail_of_native_broadcast_and_state_peers(procs: list[Proc], unique_name: str, lang: str) -> None:
    """The C++ and Rust peers' broadcast channel and state board (ChannelInfo of their kind, a
    structured numpy value): stat, ls and tail read them like Python's."""
    bcast, board = unique_name + "-b", unique_name + "-s"
    exe = {p: BINARIES[lang] / f"shmchan-{p}" for p in ("bcast", "state")}
    for path in exe.values():
        if not path.exists():
            why = f"the {lang} peer {path} is not built (see docs/interop.md)"
            if os.environ.get("CI"):
                pytest.fail(f"{why}; CI must build it")
            pytest.skip(why)
    b = start(procs, [str(exe["bcast"]), "writer", bcast, "--create", "--messages", "5", "--capacity", "8",
                      "--max-readers", "3", "--policy", "overwrite", "--hold"])
    b.expect("done messages=5")
    s = start(procs, [str(exe["state"]), "writer", board, "--create", "--writes", "4", "--hold"])
    s.expect("done writes=4")

    d = ok_json("stat", bcast)
    assert (d["kind"], d["policy"], d["max_readers"], d["head"], d["readers"]) == ("broadcast", "overwrite", 3, 5, [])
    assert d["schema"]["kind"] == "broadcast" and d["schema"]["metadata"] == {"pattern": "interop-words"}
    assert (d["writer"]["state"], d["writer"]["pid"]) == ("closed", b.p.pid) and "schema_error" not in d
    msgs = [json.loads(x) for x in shmchan_cli("tail", bcast, "--json").stdout.splitlines()]
    assert [m["pos"] for m in msgs] == list(range(d["ring_first"], 5))
    for m in msgs:  # the interop pattern: word 0 is the position
        assert int.from_bytes(bytes.fromhex(m["hex"])[:8], "little") == m["pos"]

    d = ok_json("stat", board)
    assert (d["kind"], d["version"], d["value_size"]) == ("state", 4, 256)
    assert (d["value"]["seq"], d["value"]["neg"], d["value"]["half"], d["value"]["last"]) == (4, -4, 2.0, 1)
    assert d["value"]["arr"][:2] == [(4 * 2654435761) % 2**32, (5 * 2654435761) % 2**32]
    assert (d["writer"]["state"], d["writer"]["pid"]) == ("closed", s.p.pid)
    (rec,) = [json.loads(x) for x in shmchan_cli("tail", board, "--json").stdout.splitlines()]
    assert (rec["version"], rec["type"], rec["value"]["seq"]) == (4, "numpy", 4)

    rows = {r["name"]: r for r in ok_json("ls")}
    assert (rows[bcast]["kind"], rows[board]["kind"]) == ("broadcast", "state")
    for p in (b, s):
        p.send("exit")
        assert p.finish()[0] == 0
    assert not os.path.exists(shm_path(bcast)) and not os.path.exists(shm_path(board))


def test_hz_of_a_broadcast_channel_reports_each_reader(spawn: Any, unique_name: str) -> None:
    """A paced writer (at most 500 messages/s) and two readers, one slowed to at most 50/s on an
    overwrite channel: hz reports the writer's rate, each reader's (the slow one loses messages),
    and one line per reader in the human report."""
    with shmchan.Broadcast.create(unique_name, slot_size=64, capacity=8, max_readers=4, policy="overwrite"):
        fast = spawn("bcast_reader", unique_name, "latest", 0)
        slow = spawn("bcast_reader", unique_name, "latest", 20000)
        fast.expect("ready")
        slow.expect("ready")
        w = spawn("bcast_paced_writer", unique_name, 2000)
        w.expect("ready")
        rep = ok_json("hz", unique_name, "--once", "--interval", "0.5")
        assert (rep["kind"], rep["policy"], rep["capacity"], rep["writer"]) == ("broadcast", "overwrite", 8, "attached")
        assert 20 < rep["write_hz"] <= 520, rep
        readers = {r["pid"]: r for r in rep["readers"]}
        assert set(readers) == {fast.pid, slow.pid} and rep["readers_alive"] == 2
        assert readers[fast.pid]["hz"] > 20 and readers[slow.pid]["hz"] <= 60, rep
        assert readers[fast.pid]["hz"] > readers[slow.pid]["hz"]
        assert readers[slow.pid]["lost"] > 0 and rep["lost"] >= readers[slow.pid]["lost"], rep
        assert rep["messages_read"] == sum(r["messages"] for r in rep["readers"])

        out = shmchan_cli("hz", unique_name, "--count", "2", "--interval", "0.3")
        assert out.returncode == 0, out.stderr
        title, header, *rest = out.stdout.splitlines()
        assert title.startswith(f"{unique_name}: broadcast, rates every 0.3 s")
        assert header.split()[:2] == ["MSG/S", "W"] and "LOST" in header and header.endswith("READERS")
        rows = [x for x in rest if not x.startswith("  reader ")]
        per_reader = [x for x in rest if x.startswith("  reader ")]
        assert len(rows) == 2 and len(per_reader) == 4, out.stdout
        assert all(float(row.split()[0]) > 0 for row in rows)
        assert any(f"(pid {slow.pid})" in x for x in per_reader) and all("msg/s" in x for x in per_reader)

        w.send_line("exit")
        assert w.finish()[0] == 0
        for r in (fast, slow):
            rc, lines, err = r.finish()
            assert rc == 0, err
            report = json.loads(lines[-1])
            assert report["bad"] == 0 and report["accepted"] > 0  # hz disturbed nobody


def test_hz_of_a_state_board_reports_versions_per_second(spawn: Any, unique_name: str) -> None:
    """A writer publishing at most 500 versions/s: hz reports versions/s and the version."""
    with shmchan.State.create(unique_name, dtype=STATE_DTYPE) as st:
        w = spawn("state_paced_writer", unique_name, 2000)
        w.expect("ready")
        rep = ok_json("hz", unique_name, "--once", "--interval", "0.5")
        assert (rep["kind"], rep["writer"]) == ("state", "attached")
        assert 20 < rep["versions_per_s"] <= 520, rep
        assert rep["version"] >= rep["versions"] > 0
        # counters read one after the other while the writer runs: they may differ by a publish
        assert rep["avg_value_bytes"] == pytest.approx(STATE_DTYPE.itemsize, rel=0.05)
        assert rep["bytes_per_s"] == pytest.approx(STATE_DTYPE.itemsize * rep["versions_per_s"], rel=0.05)

        out = shmchan_cli("hz", unique_name, "--count", "2", "--interval", "0.3")
        assert out.returncode == 0, out.stderr
        title, header, *rows = out.stdout.splitlines()
        assert title.startswith(f"{unique_name}: state, versions every 0.3 s")
        assert header.split() == ["VERSIONS/S", "BYTES/S", "AVG", "VALUE", "VERSION", "WRITER"] and len(rows) == 2
        assert all(float(row.split()[0]) > 0 for row in rows)
        w.send_line("exit")
        rc, lines, _ = w.finish()
        assert rc == 0 and st.version == int(lines[-1].split()[1])


def test_tail_of_a_broadcast_channel_shows_the_ring_without_taking(unique_name: str) -> None:
    """tail shows the messages the ring still holds (the newest, read or not), --last N the newest
    N; a reader's position is not touched."""
    with shmchan.Broadcast.create(unique_name, slot_size=64, capacity=8, policy="overwrite") as ch, \
            ch.writer() as w, shmchan.Broadcast.open(unique_name) as other, other.reader(start="oldest") as r:
        for i in range(20):
            w.send(b"msg-%d" % i)
        _, first, end = ch.inspect(0)
        msgs = [json.loads(x) for x in shmchan_cli("tail", unique_name, "--json").stdout.splitlines()]
        assert [m["pos"] for m in msgs] == list(range(first, end)) and end == 20 and first >= 12
        assert all(bytes.fromhex(m["hex"]) == b"msg-%d" % m["pos"] for m in msgs)
        out = shmchan_cli("tail", unique_name, "--last", "3")
        assert out.returncode == 0, out.stderr
        assert [x.split()[0] for x in out.stdout.splitlines()] == ["#17", "#18", "#19"]
        assert "|msg-19|" in out.stdout.splitlines()[-1]
        assert shmchan_cli("tail", unique_name, "--new").stdout == ""
        assert (r.position, ch.readers()[0].messages) == (0, 0)  # nothing taken
        data = r.recv_bytes(timeout=1)  # lapped: it skips to what the ring still holds
        assert data == b"msg-%d" % (r.position - 1) and r.lost > 0


def test_tail_follow_of_a_broadcast_channel_accounts_for_every_message(procs: list[Proc], unique_name: str) -> None:
    """tail --follow while a burst laps it: every position is printed (intact) or counted unseen."""
    with shmchan.Broadcast.create(unique_name, slot_size=64, capacity=4, policy="overwrite") as ch, ch.writer() as w:
        t = start(procs, [sys.executable, "-m", "shmchan.cli", "tail", unique_name, "--follow", "--timeout", "5",
                          "--json"])
        maps_channel(t.p.pid, unique_name)
        w.send(b"msg-0")
        assert json.loads(t.expect('{"pos": 0'))["hex"] == b"msg-0".hex()  # tail runs from position 0
        for i in range(1, 300):
            w.send(b"msg-%d" % i)
        rc, out, err = t.finish()
        assert rc == 0, err
        recs = [json.loads(x) for x in out.splitlines()]
        shown = [m for m in recs if "pos" in m]
        unseen = sum(m["unseen"] for m in recs if "unseen" in m)
        assert all(bytes.fromhex(m["hex"]) == b"msg-%d" % m["pos"] for m in shown)
        assert [m["pos"] for m in shown] == sorted({m["pos"] for m in shown}) and shown[0]["pos"] > 0
        assert 1 + len(shown) + unseen == 300 and shown[-1]["pos"] == 299
        human = shmchan_cli("tail", unique_name, "--follow", "--timeout", "0.3", "--new")
        assert (human.returncode, human.stdout) == (0, "")


def test_tail_of_a_state_board_shows_the_value_and_follows_versions(procs: list[Proc], unique_name: str) -> None:
    """tail prints the current value and version; --follow prints each new version, and says how
    many were replaced before it could read them."""
    with shmchan.State.create(unique_name, dtype=np.dtype((np.float32, (4,)))) as st, st.writer() as w:
        assert shmchan_cli("tail", unique_name).stdout == ""  # nothing published yet
        w.write([1, 2, 3, 4])
        w.write([5, 6, 7, 8])
        (rec,) = [json.loads(x) for x in shmchan_cli("tail", unique_name, "--json").stdout.splitlines()]
        assert (rec["version"], rec["type"], rec["dtype"], rec["value"], rec["skipped"]) == \
            (2, "numpy", "('<f4', (4,))", [5.0, 6.0, 7.0, 8.0], 0)
        out = shmchan_cli("tail", unique_name)
        assert out.stdout.split() == ["v2", "16", "B", "[5.,", "6.,", "7.,", "8.]"], out.stdout

        t = start(procs, [sys.executable, "-m", "shmchan.cli", "tail", unique_name, "--follow", "--timeout", "20",
                          "--count", "4", "--json"])
        assert json.loads(t.expect("{"))["version"] == 2  # the current value first
        for k in range(3):
            w.write([k] * 4)
            time.sleep(0.1)  # polled every 2 ms: it sees each one
        rc, out, err = t.finish()
        assert rc == 0, err
        assert [(r["version"], r["value"][0], r["skipped"]) for r in map(json.loads, out.splitlines())] == \
            [(3, 0.0, 0), (4, 1.0, 0), (5, 2.0, 0)]

        t = start(procs, [sys.executable, "-m", "shmchan.cli", "tail", unique_name, "--follow", "--timeout", "5",
                          "--json"])
        assert json.loads(t.expect("{"))["version"] == 5
        for k in range(1000):
            w.write([k] * 4)
        rc, out, err = t.finish()
        assert rc == 0, err
        recs = [json.loads(x) for x in out.splitlines()]
        assert recs[-1]["version"] == 1005 and recs[-1]["value"] == [999.0] * 4
        assert len(recs) + sum(r["skipped"] for r in recs) == 1000  # each version shown or counted skipped
        assert [r["version"] for r in recs] == sorted({r["version"] for r in recs})

        t0 = time.monotonic()
        out = shmchan_cli("tail", unique_name, "--follow", "--new", "--timeout", "0.5")
        assert (out.returncode, out.stdout) == (0, "") and time.monotonic() - t0 < 20


def test_tail_without_follow_is_a_snapshot_of_a_busy_channel(spawn: Any, unique_name: str) -> None:
    """Writers publishing as fast as they can: tail without --follow prints what the broadcast
    ring (or the board) held when it looked, and exits."""
    bname, sname = unique_name + "-b", unique_name + "-s"
    with shmchan.Broadcast.create(bname, slot_size=64, capacity=8, policy="overwrite"), \
            shmchan.State.create(sname, dtype=STATE_DTYPE) as st:
        writers = [spawn("bcast_paced_writer", bname, 0), spawn("state_paced_writer", sname, 0)]
        for w in writers:
            w.expect("ready")
        wait_until(lambda: st.version > 100, "no 100 versions published")
        recs = [json.loads(x) for x in shmchan_cli("tail", bname, "--json").stdout.splitlines()]
        positions = [m["pos"] for m in recs if "pos" in m]
        assert 0 < len(positions) <= 8 and positions == sorted(set(positions))
        assert len(positions) + sum(m["unseen"] for m in recs if "unseen" in m) <= 8
        (rec,) = [json.loads(x) for x in shmchan_cli("tail", sname, "--json").stdout.splitlines()]
        assert rec["value"] == state_value(rec["version"])  # never torn
        for w in writers:
            w.send_line("exit")
            assert w.finish()[0] == 0


def test_tail_of_a_frame_state_board_decodes_the_frame(unique_name: str) -> None:
    """A board of Frame values: tail and stat decode the current frame."""
    with shmchan.State.create(unique_name, schema="frame", max_size=S.frame_message_size(4, 2, "GRAY8")) as st, \
            st.writer() as w:
        S.send_frame(w, np.full((2, 4), 9, np.uint8), "GRAY8")
        out = shmchan_cli("tail", unique_name)
        assert out.returncode == 0, out.stderr
        assert out.stdout.startswith("v1 ") and "Frame seq=0 4x2 GRAY8" in out.stdout and "min 9 max 9" in out.stdout
        d = ok_json("stat", unique_name)
        assert d["value_summary"]["type"] == "frame" and d["value_summary"]["width"] == 4
        assert d["value"] is None and d["schema"]["payload"]["name"] == "shmchan.fb.Frame"
        assert "Frame" in row_of(unique_name, shmchan_cli("ls").stdout)


def test_rm_of_broadcast_and_state_channels(unique_name: str) -> None:
    """rm removes a broadcast channel's and a state board's names; open handles keep working."""
    bname, sname = unique_name + "-b", unique_name + "-s"
    with shmchan.Broadcast.create(bname, slot_size=64, capacity=4) as b, b.writer() as w, \
            shmchan.Broadcast.open(bname) as b2, b2.reader() as r, \
            shmchan.State.create(sname, dtype=np.uint64) as st, st.writer() as sw:
        assert ok_json("rm", bname, sname) == [{"name": bname, "removed": True, "open_by": [os.getpid()]},
                                               {"name": sname, "removed": True, "open_by": [os.getpid()]}]
        assert not os.path.exists(shm_path(bname)) and not os.path.exists(shm_path(sname))
        w.send(b"still here")
        assert r.recv_bytes(timeout=1) == b"still here"
        sw.write(7)
        assert st.read() == (7, 1)
        assert "no channel named" in one_error_line(shmchan_cli("stat", bname), 1)


@pytest.mark.parametrize("kind", ["broadcast", "state"])
def test_gc_keeps_a_channel_whose_readers_live_on(spawn: Any, unique_name: str, kind: str) -> None:
    """The creator (and writer) of a broadcast channel or state board is killed, a reader process
    still has it open: it is not stale and gc leaves it; once the reader exits it is stale and gc
    removes it."""
    if kind == "broadcast":
        creator = spawn("bcast_create", unique_name, "block", 4, 3)
        creator.expect("ready")
        reader = spawn("bcast_hold_reader", unique_name, 1)
    else:
        creator = spawn("state_create_hold", unique_name, 2)
        creator.expect("ready")
        reader = spawn("open_and_exit", unique_name)
    reader.expect("ready")
    creator.kill()
    creator.finish()
    time.sleep(0.2)  # a channel younger than 100 ms is never called stale

    d = ok_json("stat", unique_name)
    assert d["stale"] is False and d["creator_alive"] is False
    assert d["writer"] == {"state": "attached", "pid": creator.pid, "alive": False}
    assert " dead " in row_of(unique_name, shmchan_cli("ls").stdout)
    if kind == "broadcast":
        assert d["readers_alive"] == 1 and d["readers"][0]["pid"] == reader.pid
    else:
        assert d["value"] == state_value(2)  # a dead writer's value is still there
    assert unique_name not in ok_json("gc", "--dry-run")["stale"]
    assert ok_json("gc", unique_name) == {"dry_run": False, "removed": []}
    assert os.path.exists(shm_path(unique_name))

    reader.send_line("exit")
    assert reader.finish()[0] == 0
    wait_until(lambda: is_stale_now(unique_name), f"{unique_name} did not become stale")
    assert ok_json("gc", "--dry-run", unique_name) == {"dry_run": True, "stale": [unique_name]}
    out = shmchan_cli("gc", unique_name)
    assert (out.returncode, out.stdout) == (0, f"removed stale channel {unique_name}\n")
    assert not os.path.exists(shm_path(unique_name))


def test_tail_usage_errors_of_the_new_options() -> None:
    """--new and --last exclude each other; --last takes a count."""
    assert "give --new or --last, not both" in one_error_line(shmchan_cli("tail", "x", "--new", "--last", "2"), 2)
    assert "must not be negative" in one_error_line(shmchan_cli("tail", "x", "--last", "-1"), 2)


@pytest.mark.parametrize("command", ["ls", "stat", "hz", "tail"])
def test_help_describes_every_kind(command: str) -> None:
    """The commands whose report depends on the kind say what they show for each."""
    out = shmchan_cli(command, "--help").stdout
    assert all(k in out for k in ("spsc", "broadcast", "state")), out


def test_check_positions_never_calls_a_busy_channel_corrupt(unique_name: str) -> None:
    """The tools' corruption check looks at moving positions: on healthy SPSC and broadcast channels
    hammered by a writer and a reader in another process it never raises (it once compared a head
    read before a reader's place, or a tail read after head, and called busy channels corrupt)."""
    from shmchan.cli._describe import check_positions

    busy = """if True:
        import sys, threading, time, contextlib, shmchan
        kind, name = sys.argv[1], sys.argv[2]
        ch = (shmchan.Broadcast if kind == "broadcast" else shmchan.Channel).open(name)
        stop = time.monotonic() + 30
        def write():
            with ch.writer() as w:
                while time.monotonic() < stop:
                    with contextlib.suppress(shmchan.ChannelTimeoutError):
                        w.send(b"x", timeout=0.05)
        t = threading.Thread(target=write, daemon=True)
        t.start()
        with ch.reader() as r:
            r.recv_bytes(timeout=10)
            print("moving", flush=True)
            while time.monotonic() < stop:
                with contextlib.suppress(shmchan.ChannelTimeoutError):
                    r.recv_bytes(timeout=0.05)
    """
    for kind in ("spsc", "broadcast"):
        name = f"{unique_name}-{kind}"
        make = shmchan.Broadcast.create if kind == "broadcast" else shmchan.Channel.create
        extra = {"policy": "block"} if kind == "broadcast" else {}
        with make(name, slot_size=64, capacity=4, **extra) as ch:
            child = subprocess.Popen([sys.executable, "-c", busy, kind, name], stdout=subprocess.PIPE, text=True)
            try:
                assert child.stdout is not None and child.stdout.readline() == "moving\n"
                first = ch.stats().head
                checks, moved, deadline = 0, 0, time.monotonic() + 25
                while (checks < 5000 or moved < 5000) and time.monotonic() < deadline:
                    check_positions(ch)
                    checks += 1
                    moved = ch.stats().head - first
            finally:
                child.kill()
                child.wait(10)
            assert checks >= 5000 and moved >= 5000, (kind, checks, moved)  # they moved all along


def test_check_positions_refuses_impossible_positions(unique_name: str) -> None:
    """...while a head no healthy SPSC channel can have (a peer's bytes) is an error, every time."""
    import mmap

    from shmchan import _layout
    from shmchan.cli._describe import check_positions

    with shmchan.Channel.create(unique_name, slot_size=64, capacity=4) as ch:
        off, size = _layout.FIELDS["head"]
        with open(_layout.shm_path(unique_name), "r+b") as f, mmap.mmap(f.fileno(), _layout.CONTROL_SIZE) as m:
            m[off : off + size] = (ch.capacity + 1).to_bytes(size, "little")
            with pytest.raises(shmchan.CorruptChannelError, match="impossible positions: head 5, tail 0"):
                check_positions(ch)
            m[off : off + size] = (ch.capacity).to_bytes(size, "little")
            check_positions(ch)  # a full ring is possible
