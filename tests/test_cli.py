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
    size = S.frame_message_size(32, 16, "GRAY8")
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
    size = S.frame_message_size(64, 48, "RGB24")

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
