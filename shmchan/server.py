"""Sealed channels over a Unix socket: a creator serves the channel's descriptor to whoever connects."""

from __future__ import annotations

import array
import contextlib
import errno
import os
import socket
import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING

from . import errors as E
from ._binding import raise_for

if TYPE_CHECKING:
    from .channel import Channel

__all__ = ["ChannelServer", "receive_fd"]

_MAX_FDS = 16  # room for this many received descriptors: all of them are closed when refused
_CONNECT_PAUSE_S = (0.001, 0.05)  # backlog full: first and longest pause before connecting again


def _left(deadline: float | None, what: str) -> float | None:
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise E.ChannelTimeoutError(f"{what}: no channel within the timeout")
    return left


def _connect(path: str, deadline: float | None, what: str) -> socket.socket:
    """A socket connected to ``path`` within the deadline. A listener whose backlog is full makes a
    blocking connect(2) wait for ever; here connect never blocks, and is tried again until the
    deadline."""
    pause = _CONNECT_PAUSE_S[0]
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.connect(path)
            return sock
        except (BlockingIOError, InterruptedError):
            sock.close()  # EAGAIN: the listener's backlog is full
        except OSError as exc:
            sock.close()
            raise_for(-(exc.errno or errno.EIO), what, f"cannot connect: {os.strerror(exc.errno or errno.EIO)}", path)
        except BaseException:
            sock.close()
            raise
        left = _left(deadline, what)
        time.sleep(pause if left is None else min(pause, left))
        pause = min(pause * 2, _CONNECT_PAUSE_S[1])


def receive_fd(path: str, timeout: float | None) -> int:
    """Connect to the channel server at the Unix socket ``path`` and receive its channel's
    descriptor (docs/protocol.md R34): one byte ``b"S"`` with exactly one descriptor, within
    ``timeout`` seconds (None: no limit) for the whole exchange. The caller owns the returned fd.

    Raises :class:`ChannelTimeoutError`, :class:`IncompatibleChannelError` when the server answers
    anything else (every descriptor it sent is closed), and the errors of ``connect(2)`` as
    :func:`shmchan._binding.raise_for` maps them."""
    what = f"cannot connect to a sealed channel at {path!r}"
    if len(os.fsencode(path)) >= 108:
        raise ValueError(f"{what}: socket path longer than 107 bytes")
    deadline = None if timeout is None else time.monotonic() + timeout
    sock = _connect(path, deadline, what)
    with sock:
        if deadline is not None:
            sock.settimeout(_left(deadline, what))
        else:
            sock.setblocking(True)
        try:
            data, anc, flags, _ = sock.recvmsg(2, socket.CMSG_SPACE(_MAX_FDS * array.array("i").itemsize),
                                               socket.MSG_CMSG_CLOEXEC)
        except TimeoutError:
            raise E.ChannelTimeoutError(f"{what}: the server sent nothing within the timeout") from None
        except OSError as exc:
            raise_for(-(exc.errno or errno.EIO), what, f"receiving: {os.strerror(exc.errno or errno.EIO)}", path)
        fds = array.array("i")
        for level, kind, body in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(body[: len(body) - len(body) % fds.itemsize])
        if data == b"S" and len(fds) == 1 and not flags & (socket.MSG_CTRUNC | socket.MSG_TRUNC):
            return fds[0]
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        got = f"{data!r} with {len(fds)} descriptor(s)" if data else "nothing (it closed the connection)"
        raise E.IncompatibleChannelError(f"{what}: the server sent {got}; a shmchan server sends b'S' with "
                                         "exactly one descriptor")


class ChannelServer:
    """Hands a sealed channel's descriptor to every process that connects to a Unix socket.

    Made by :meth:`Channel.serve`. A context manager; :meth:`close` (also done by the channel's
    close) stops the thread and removes the socket file. Processes that already attached keep
    working. A copy carried into a child by ``fork()`` serves nothing there; closing it in the
    child closes only the child's descriptor: the socket file and the parent's server stay.
    """

    def __init__(self, channel: Channel, path: str) -> None:
        self.path = path
        self._pid = os.getpid()  # only this process stops the server and removes the socket file
        self._fd = channel.fd
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._sock.bind(path)
        except OSError as exc:
            self._sock.close()
            if exc.errno == errno.EADDRINUSE:
                raise E.ChannelExistsError(errno.EEXIST, f"cannot serve at {path!r}: it exists", path) from None
            raise
        self._sock.listen(16)
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"shmchan-serve:{path}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # closed
            with conn, contextlib.suppress(OSError):
                socket.send_fds(conn, [b"S"], [self._fd])

    def close(self) -> None:
        """Stop serving and remove the socket file; idempotent."""
        if self._closed:
            return
        self._closed = True
        if os.getpid() != self._pid:
            # a copy inherited across fork(): shutdown() would stop the parent's listening socket
            # (it is the same socket) and unlink() remove its name; drop only this process's fd
            self._sock.close()
            return
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the accept()
        self._sock.close()
        self._thread.join()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def __enter__(self) -> ChannelServer:
        return self

    def __exit__(self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

