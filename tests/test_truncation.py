"""A peer truncating a named channel under a reader (FAULTS #6b): CorruptChannelError, never a SIGBUS crash."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

SCRIPT = """
import os, sys, numpy as np, shmchan
name, mode = sys.argv[1], sys.argv[2]
with shmchan.Channel.create(name, slot_size=1 << 20, capacity=4) as ch:
    w, r = ch.writer(), ch.reader()
    w.send(b"\\x07" * (1 << 20))
    w.send(b"\\x07" * (1 << 20))
    view = None
    if mode == "view":
        msg = r.recv()
        view = msg.ndarray()
        assert view[12345] == 7
    os.truncate(f"/dev/shm/shmchan.{name}", 4096)  # what a hostile or broken peer can do
    try:
        if mode == "bytes":
            r.recv_bytes(timeout=0)
        elif mode == "into":
            r.recv_into(bytearray(1 << 20), timeout=0)
        elif mode == "send":
            w.send(b"x" * 1000, timeout=0)
        elif mode == "view":
            print("view reads", int(view[12345]))  # a zero page now: documented, but no crash
            msg.release()
        print("no error")
    except shmchan.CorruptChannelError as e:
        print("corrupt:", e)
    try:
        r.recv_bytes(timeout=0)
    except shmchan.CorruptChannelError:
        print("still corrupt")
    del view
"""


def _run(name: str, mode: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", SCRIPT, name, mode], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **env})


@pytest.mark.parametrize("mode", ["bytes", "into", "send"])
def test_copy_paths_raise_corrupt_instead_of_crashing(unique_name: str, mode: str) -> None:
    """recv_bytes, recv_into and send on a truncated channel raise CorruptChannelError naming the truncation."""
    out = _run(unique_name, mode)
    assert out.returncode == 0, out.stderr
    assert "corrupt:" in out.stdout and "truncated by another process" in out.stdout
    assert "still corrupt" in out.stdout


def test_a_live_view_over_a_truncated_channel_reads_zeros_not_sigbus(unique_name: str) -> None:
    """A numpy view kept across the truncation reads a zero page instead of killing the process, and the
    next operation on the channel raises CorruptChannelError (release only pins: the view is alive)."""
    out = _run(unique_name, "view")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["view reads 0", "no error", "still corrupt"]


def test_the_guard_can_be_turned_off(unique_name: str) -> None:
    """With SHMCHAN_NO_SIGBUS_GUARD=1 the same access kills the process with SIGBUS, as without shmchan."""
    out = _run(unique_name, "bytes", SHMCHAN_NO_SIGBUS_GUARD="1")
    assert out.returncode == -signal.SIGBUS
    os.unlink(f"/dev/shm/shmchan.{unique_name}")  # the killed creator could not remove it
