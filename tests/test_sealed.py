"""Sealed channels: an anonymous memfd nobody can resize, shared over a Unix socket (FAULTS #6a)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import shmchan

PEER = """
import os, sys, shmchan
with shmchan.Channel.connect(sys.argv[1]) as p:
    assert p.sealed and p.descriptor == b"meta", (p.sealed, p.descriptor)
    for size in (0, 1, p.nbytes * 2):
        try:
            os.ftruncate(p.fd, size)
        except PermissionError:
            print("refused", size)
    w = p.writer()
    for i in range(1000):
        w.send(i.to_bytes(8, "little"), timeout=5)
"""


def test_sealed_channel_cannot_be_resized_by_its_creator(tmp_path: Path) -> None:
    """ftruncate of a sealed channel's fd fails with EPERM, shrinking or growing."""
    with shmchan.Channel.create_sealed(slot_size=64, capacity=4) as ch:
        assert ch.sealed and ch.name is None and ch.path is None and "(sealed)" in repr(ch)
        for size in (0, ch.nbytes - 4096, ch.nbytes + 4096):
            with pytest.raises(PermissionError):
                os.ftruncate(ch.fd, size)
        assert os.fstat(ch.fd).st_size == ch.nbytes


def test_peer_in_another_process_attaches_cannot_truncate_and_streams(tmp_path: Path) -> None:
    """A peer connects over the socket, fails to truncate (EPERM), and its 1000 messages arrive in order."""
    sock = str(tmp_path / "chan.sock")
    with shmchan.Channel.create_sealed(slot_size=64, capacity=8, descriptor=b"meta") as ch, ch.serve(sock):
        r = ch.reader()
        peer = subprocess.Popen([sys.executable, "-c", PEER, sock], stdout=subprocess.PIPE, text=True)
        got = [int.from_bytes(r.recv_bytes(timeout=10), "little") for _ in range(1000)]
        out, _ = peer.communicate(timeout=30)
        assert peer.returncode == 0
        assert got == list(range(1000))
        assert out.split("\n")[:3] == ["refused 0", "refused 1", f"refused {ch.nbytes * 2}"]
    assert not os.path.exists(sock)  # the channel's close stopped the server


def test_from_fd_gives_a_handle_with_its_own_locks(tmp_path: Path) -> None:
    """A handle made from the received fd is a separate attacher: a second writer through it is busy."""
    with shmchan.Channel.create_sealed(slot_size=64, capacity=4) as ch:
        w = ch.writer()
        a, b = socket.socketpair()
        with a, b:
            socket.send_fds(a, [b"S"], [ch.fd])
            _, fds, _, _ = socket.recv_fds(b, 1, 1)
        try:
            with shmchan.Channel.from_fd(fds[0]) as other:
                with pytest.raises(shmchan.ChannelBusyError):
                    other.writer()
                r = other.reader()
                w.send(b"through the fd")
                assert r.recv_bytes(timeout=1) == b"through the fd"
        finally:
            os.close(fds[0])


def test_unsealed_descriptors_are_refused(unique_name: str) -> None:
    """from_fd of a named channel's (unsealed) descriptor raises ChannelPermissionError."""
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=4) as ch:
        with pytest.raises(shmchan.ChannelPermissionError, match="not a memfd sealed"):
            shmchan.Channel.from_fd(ch.fd)
        with pytest.raises(ValueError, match="only a sealed channel"):
            ch.serve("/tmp/never-created.sock")


def test_connect_to_nothing_raises_not_found(tmp_path: Path) -> None:
    """connect() to a socket path nobody serves raises ChannelNotFoundError."""
    with pytest.raises(shmchan.ChannelNotFoundError):
        shmchan.Channel.connect(str(tmp_path / "nobody.sock"), timeout=0.2)


def test_serve_refuses_an_existing_path(tmp_path: Path) -> None:
    """serve() over an existing socket path raises ChannelExistsError and leaves the file alone."""
    sock = tmp_path / "taken.sock"
    sock.write_bytes(b"")
    with shmchan.Channel.create_sealed(slot_size=64, capacity=4) as ch, pytest.raises(shmchan.ChannelExistsError):
        ch.serve(str(sock))
    assert sock.exists()


def test_server_close_is_idempotent_and_keeps_attached_peers_working(tmp_path: Path) -> None:
    """Closing the server removes its socket; a peer that attached before keeps exchanging messages."""
    sock = str(tmp_path / "s.sock")
    with shmchan.Channel.create_sealed(slot_size=64, capacity=4) as ch:
        server = ch.serve(sock)
        peer = shmchan.Channel.connect(sock)
        server.close()
        server.close()
        assert not os.path.exists(sock)
        with peer:
            w, r = peer.writer(), ch.reader()
            w.send(b"still attached")
            assert r.recv_bytes(timeout=1) == b"still attached"
