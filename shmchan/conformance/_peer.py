"""A peer process under test: started with a role, read line by line with deadlines."""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import time


class PeerError(AssertionError):
    """The peer did something the contract does not allow (or the reference side saw it fail)."""


class Peer:
    """One peer process: ``PEER_COMMAND ROLE ARGS...``, with stdin and stdout as pipes."""

    def __init__(self, command: list[str], args: list[str]) -> None:
        self.argv = [*command, *args]
        self.p = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
        self._buf = b""
        self.lines: list[str] = []

    def readline(self, timeout: float) -> str | None:
        """The next stdout line, or None at end of file; PeerError after ``timeout`` seconds."""
        assert self.p.stdout is not None
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise PeerError(f"no line from {' '.join(self.argv)} within {timeout:.1f} s")
            with selectors.DefaultSelector() as sel:  # not select(): descriptors may be above 1023
                sel.register(self.p.stdout, selectors.EVENT_READ)
                ready = sel.select(left)
            if ready:
                chunk = os.read(self.p.stdout.fileno(), 65536)
                if not chunk:
                    if self._buf:
                        line, self._buf = self._buf.decode(errors="replace"), b""
                        self.lines.append(line)
                        return line
                    return None
                self._buf += chunk
        raw, self._buf = self._buf.split(b"\n", 1)
        line = raw.decode(errors="replace")
        self.lines.append(line)
        return line

    def expect(self, prefix: str, timeout: float = 30.0) -> str:
        """Read lines until one starts with ``prefix``; an ``error`` line or the end is a PeerError."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.readline(max(deadline - time.monotonic(), 0.01))
            if line is None:
                self.p.wait(10)
                raise PeerError(f"{' '.join(self.argv)} exited ({self.p.returncode}) before {prefix!r}: "
                                f"{self.stderr_tail()}")
            if line.startswith(prefix):
                return line
            if line.startswith("error"):
                raise PeerError(f"{' '.join(self.argv)}: {line}")

    def send(self, line: str) -> None:
        assert self.p.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self.p.stdin.write(line.encode() + b"\n")
            self.p.stdin.flush()

    def finish(self, timeout: float = 120.0) -> tuple[int, list[str]]:
        """Wait for the exit: (exit code, every stdout line)."""
        deadline = time.monotonic() + timeout
        while self.readline(max(deadline - time.monotonic(), 0.01)) is not None:
            pass
        try:
            self.p.wait(max(deadline - time.monotonic(), 0.01))
        except subprocess.TimeoutExpired as exc:
            raise PeerError(f"{' '.join(self.argv)} did not exit within {timeout:.0f} s") from exc
        return self.p.returncode, self.lines

    def done(self, timeout: float = 120.0, code: int = 0) -> dict[str, str]:
        """The fields of the ``done`` line of a peer that exited with ``code``."""
        rc, lines = self.finish(timeout)
        last = [ln for ln in lines if ln.startswith(("done", "error"))]
        if rc != code or not last or not last[-1].startswith("done"):
            raise PeerError(f"{' '.join(self.argv)} exited {rc} (expected {code}): "
                            f"{last[-1] if last else 'no done line'}; {self.stderr_tail()}")
        return fields(last[-1])

    def kill(self) -> None:
        """SIGKILL, and reap."""
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGKILL)
        self.p.wait(10)

    def stderr_tail(self) -> str:
        if self.p.poll() is None or self.p.stderr is None:
            return ""
        return self.p.stderr.read().decode(errors="replace").strip()[-400:]

    def close(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
        with contextlib.suppress(Exception):
            self.p.communicate(timeout=10)
        for f in (self.p.stdin, self.p.stdout, self.p.stderr):
            if f is not None:
                f.close()


def fields(line: str) -> dict[str, str]:
    """``done frames=3 crc=0a`` -> ``{"frames": "3", "crc": "0a"}``."""
    return dict(w.split("=", 1) for w in line.split()[1:] if "=" in w)
