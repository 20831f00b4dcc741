"""Fixtures of the bridge tests: the one Zenoh test configuration, and processes that run in it.

Every Zenoh session of these tests runs in a private network namespace that has nothing but a
loopback interface (shmchan.bridge._netns), listens and connects only on tcp/127.0.0.1:PORT, and
has multicast scouting and gossip switched off (the bridge's own defaults). Where no namespace can
be made, the tests fall back to the host's loopback and say so with a warning.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
PEER = str(Path(__file__).resolve().parent / "peer.py")
CLI = [sys.executable, "-m", "shmchan.cli"]


class Proc:
    """A process of a test; its stdout lines arrive through a reader thread."""

    def __init__(self, argv: list[str], label: str) -> None:
        self.argv, self.label = argv, label
        self.p = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self._err: list[bytes] = []
        self._t = [threading.Thread(target=self._pump, daemon=True),
                   threading.Thread(target=self._drain, daemon=True)]
        for t in self._t:
            t.start()

    def _pump(self) -> None:
        assert self.p.stdout is not None
        for raw in self.p.stdout:
            self.lines.put(raw.decode(errors="replace").rstrip("\n"))
        self.lines.put(None)

    def _drain(self) -> None:
        assert self.p.stderr is not None
        for raw in self.p.stderr:
            self._err.append(raw)

    @property
    def stderr(self) -> str:
        return b"".join(self._err).decode(errors="replace")

    def expect(self, prefix: str, timeout: float = 30.0) -> str:
        """The next line that starts with ``prefix``; fails the test after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.001))
            except queue.Empty:
                pytest.fail(f"{self.label}: no line starting {prefix!r} within {timeout} s; seen {self.seen[-5:]}; "
                            f"stderr:\n{self.stderr}")
            if line is None:
                self.lines.put(None)
                self.p.wait(10)
                pytest.fail(f"{self.label} exited ({self.p.returncode}) before {prefix!r}; seen {self.seen[-5:]}; "
                            f"stderr:\n{self.stderr}")
            self.seen.append(line)
            if line.startswith(prefix):
                return line

    def report(self, timeout: float = 60.0) -> dict[str, Any]:
        """The next JSON line."""
        data: dict[str, Any] = json.loads(self.expect("{", timeout))
        return data

    def send(self, line: str) -> None:
        assert self.p.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self.p.stdin.write(line.encode() + b"\n")
            self.p.stdin.flush()

    def signal(self, sig: int) -> None:
        self.p.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        try:
            return self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.label} did not exit within {timeout} s; stderr:\n{self.stderr}")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM (a bridge stops cleanly), then wait for the exit status."""
        self.signal(signal.SIGTERM)
        return self.wait(timeout)

    def close(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait(10)
        for t in self._t:
            t.join(5)
        for f in (self.p.stdin, self.p.stdout, self.p.stderr):
            if f is not None:
                f.close()


class ZenohNet:
    """The test configuration: where Zenoh sessions live and how they meet (one place)."""

    def __init__(self, netns: Any) -> None:
        self.netns = netns  # a PrivateNetwork, or None: the host's loopback
        self._ports = itertools.count(17500 + (os.getpid() % 500) * 16)

    @property
    def private(self) -> bool:
        return self.netns is not None

    def port(self) -> int:
        """A TCP port on 127.0.0.1 for one test's sessions."""
        if self.private:
            return next(self._ports)
        with socket.socket() as s:  # the host's loopback: ask the kernel for a free one
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    @staticmethod
    def listen(port: int) -> list[str]:
        return ["--listen", f"tcp/127.0.0.1:{port}"]

    @staticmethod
    def connect(port: int) -> list[str]:
        return ["--connect", f"tcp/127.0.0.1:{port}"]

    def wrap(self, argv: list[str]) -> list[str]:
        return self.netns.command(argv) if self.netns is not None else argv


@pytest.fixture(scope="session")
def zenoh_net() -> Iterator[ZenohNet]:
    """The private network namespace (made once), or the host's loopback when none can be made."""
    # an optional package (the bridge extra); the test extra installs it, and so does the sanitizer run
    pytest.importorskip("zenoh", reason="eclipse-zenoh is not installed (pip install -e '.[test]')")
    from shmchan.bridge._netns import PrivateNetwork

    try:
        net: Any = PrivateNetwork()
    except OSError as exc:
        warnings.warn(f"bridge tests run on the host's loopback: {exc}", stacklevel=1)
        net = None
    try:
        yield ZenohNet(net)
    finally:
        if net is not None:
            net.close()


@pytest.fixture
def procs(zenoh_net: ZenohNet) -> Iterator[Any]:
    """Start processes: ``procs.bridge(*args)`` (``shmchan bridge ...`` in the test network),
    ``procs.peer(mode, *args)`` (tests/bridge/peer.py; ``net=True`` to run it in the network too)."""
    started: list[Proc] = []

    class Starter:
        def bridge(self, *args: object) -> Proc:
            p = Proc(zenoh_net.wrap([*CLI, "bridge", *map(str, args)]), f"shmchan bridge {args[0]}")
            started.append(p)
            return p

        def peer(self, mode: str, *args: object, net: bool = False) -> Proc:
            argv = [sys.executable, PEER, mode, *map(str, args)]
            p = Proc(zenoh_net.wrap(argv) if net else argv, f"peer {mode}")
            started.append(p)
            return p

        def native(self, argv: list[str]) -> Proc:
            p = Proc(argv, os.path.basename(argv[0]))
            started.append(p)
            return p

    yield Starter()
    for p in started:
        p.close()
