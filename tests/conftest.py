"""Fixtures shared by the shmchan test suite: unique channel names, leak checks, peer processes."""

from __future__ import annotations

import contextlib
import gc
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest

# the skip policy's hooks (SHMCHAN_FAIL_ON_SKIP=1 turns skips into failures), installed for the suite
from skip_policy import pytest_make_collect_report, pytest_runtest_makereport  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
PEERS = "tests/peers.py"
SHM = "/dev/shm"
PREFIX = "shmchan."


def _marker() -> str:
    """Every channel this test process (or its peers) makes has this in its name (see unique_name).

    Other programs (the C tests, other test runs) may create and remove shmchan.* entries at the
    same time; the leak check must neither blame a test for them nor delete them.
    """
    return f"t{os.getpid()}-"


def _shm_entries() -> set[str]:
    m = _marker()
    return {e for e in os.listdir(SHM) if e.startswith(PREFIX) and m in e}


def _fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture(autouse=True)
def no_fd_leak() -> Iterator[None]:
    """Fail a test that leaves more (or fewer) file descriptors open than it found."""
    gc.collect()
    before = _fd_count()
    yield
    gc.collect()
    after = _fd_count()
    assert after == before, f"open file descriptors: {before} before the test, {after} after"


@pytest.fixture(autouse=True)
def no_shm_leak(no_fd_leak: None) -> Iterator[None]:
    """Fail a test that leaves a new shmchan.* entry in /dev/shm (and remove it for later tests)."""
    before = _shm_entries()
    yield
    gc.collect()
    leaked = sorted(_shm_entries() - before)
    for entry in leaked:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(SHM, entry))
    assert not leaked, f"the test left {leaked} in {SHM}"


@pytest.fixture
def unique_name() -> str:
    """A channel name no other test (or test run) uses."""
    return f"{_marker()}{uuid4().hex[:8]}"


class Peer:
    """A helper process running ``tests/peers.py MODE ARGS...``; it talks in lines on stdout."""

    def __init__(self, mode: str, *args: object, env: dict[str, str] | None = None) -> None:
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        self.mode = mode
        self.proc = subprocess.Popen(
            [sys.executable, PEERS, mode, *map(str, args)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=full_env,
        )
        self._buf = b""
        self.lines: list[str] = []
        self.stderr = ""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def readline(self, timeout: float = 10.0) -> str:
        """The next line the peer prints; fails the test if none comes within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()  # type: ignore[union-attr]
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                self._fail(f"no line from peer {self.mode!r} within {timeout} s")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    self._fail(f"peer {self.mode!r} closed its stdout")
                self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        text = line.decode()
        self.lines.append(text)
        return text

    def expect(self, wanted: str, timeout: float = 10.0) -> str:
        """Read lines until one starts with ``wanted``; return it."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.readline(max(deadline - time.monotonic(), 0.001))
            if line.startswith(wanted):
                return line

    def send_line(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode() + b"\n")
        self.proc.stdin.flush()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        self.proc.send_signal(sig)

    def finish(self, timeout: float = 30.0) -> tuple[int, list[str], str]:
        """Wait for the peer to exit; return its exit code, the stdout lines not read yet, stderr."""
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            self.stderr = err.decode(errors="replace")
            pytest.fail(f"peer {self.mode!r} did not exit within {timeout} s; stderr:\n{self.stderr}")
        rest = (self._buf + out).decode(errors="replace").splitlines()
        self._buf = b""
        self.lines.extend(rest)
        self.stderr = err.decode(errors="replace")
        return self.proc.returncode, rest, self.stderr

    def close(self) -> None:
        """Kill the peer if it still runs and release its pipes."""
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(ValueError, OSError):
            self.proc.communicate(timeout=10)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()

    def _fail(self, why: str) -> None:
        if self.proc.poll() is not None or why.endswith("stdout"):
            self.proc.wait(timeout=10)
            err = self.proc.stderr.read().decode(errors="replace")  # type: ignore[union-attr]
            pytest.fail(f"{why}; exit code {self.proc.returncode}; stderr:\n{err}")
        pytest.fail(why)


@pytest.fixture
def spawn() -> Iterator[type[Peer]]:
    """Start peer processes (``spawn(mode, *args)``); any still running at the end is killed."""
    started: list[Peer] = []

    def make(mode: str, *args: object, env: dict[str, str] | None = None) -> Peer:
        p = Peer(mode, *args, env=env)
        started.append(p)
        return p

    yield make  # type: ignore[misc]
    for p in started:
        p.close()
