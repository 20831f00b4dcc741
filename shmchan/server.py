"""Sealed channels over a Unix socket: a creator serves the channel's descriptor to whoever connects.

Peers connect with :meth:`shmchan.Channel.connect`, which is the C core's client (``shmchan_connect``)."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import threading
from types import TracebackType
from typing import TYPE_CHECKING

from . import errors as E

if TYPE_CHECKING:
    from .channel import Channel

__all__ = ["ChannelServer"]


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

