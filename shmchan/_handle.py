"""What every channel handle shares: the lifetime of its mapping, and waiting for asyncio.

The mapping (``shmchan._core.Mapping``) owns the C handle. Writers, readers, slots, messages and the
views made from them all hold it, so it is unmapped only when the last of them is gone: closing a
handle closes it for the user at once and frees what live views still need when they die.

A handle left unclosed is cleaned up when it is collected (or at exit), with a ``ResourceWarning``;
its creator then removes the name. Only the *process* that created the channel does: a copy of the
handle carried into a child by ``fork()`` is dead there (every call raises
:class:`ChannelClosedError`) and removes nothing.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import threading
import time
import warnings
from collections.abc import AsyncIterator, Callable

from . import _core
from . import errors as E
from ._binding import ffi, lib

__all__ = ["PARK_NS", "Reader", "on_collect", "park"]

PARK_NS = 100_000_000  # an asyncio wait parks a helper thread for at most this long at a time

_executor: concurrent.futures.ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _pool() -> concurrent.futures.ThreadPoolExecutor:
    """The shared helper threads of asyncio waits: each pending wait sleeps in the kernel (futex) in
    one of them for at most 100 ms at a time; none of them polls."""
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = concurrent.futures.ThreadPoolExecutor(max_workers=64, thread_name_prefix="shmchan-wait")
        return _executor


async def park(mapping: _core.Mapping, pos: int, timeout_ns: int) -> int:
    """Sleep on a helper thread until the channel's head leaves ``pos``, a wake-up, or ``timeout_ns``,
    without blocking the event loop. Closing the channel ends the sleep (-ECANCELED)."""
    loop = asyncio.get_running_loop()
    rc: int = await loop.run_in_executor(_pool(), mapping.wait_head, pos, timeout_ns)
    return rc


def on_collect(desc: str, unlink: Callable[[], None] | None, pid: int) -> None:
    """A handle was garbage-collected without close() (or is still open at exit): its creator
    removes the name -- in the creating process only, never in a child that inherited the handle
    across fork() -- and says so (last: with ``-W error`` the warning raises)."""
    try:
        if unlink is not None and os.getpid() == pid:
            unlink()
    finally:
        warnings.warn(f"unclosed shmchan channel {desc}", ResourceWarning, stacklevel=2)


def unlinker(mapping: _core.Mapping) -> Callable[[], None]:
    """Remove the name of the channel of ``mapping`` (if it still has its C handle)."""

    def run() -> None:
        if mapping.closed or mapping.freed:
            return
        ptr = ffi.cast("shmchan_channel *", mapping.hold())
        try:
            lib.shmchan_channel_unlink(ptr)
        finally:
            mapping.unhold()

    return run


class Reader(_core.Reader):
    """A reader of a channel. Get it from :meth:`shmchan.Channel.reader`.

    ``recv`` takes the next message in place; iterating yields messages until the writer closes and
    the ring is drained, each released when the loop moves on. The same object serves SPSC channels
    and broadcast channels (where each reader has its own position).

    Several threads may use one reader: each message goes to exactly one of them. A thread waiting
    for a message does not hold the reader, so the others can release messages meanwhile.
    """

    __slots__ = ()

    async def recv_async(self, timeout: float | None = None) -> _core.Message:
        """:meth:`recv` for asyncio: waits without blocking the event loop (and without polling).

        While the ring is empty, the wait sleeps in the kernel on a shared helper thread, woken by
        the writer's commit; the message is then taken on the event loop's thread. Cancelling the
        task cancels the wait and takes nothing. Raises like :meth:`recv`."""
        msg = self._poll()
        if msg is not None:
            return msg
        tns = _core.seconds_to_ns(timeout)
        start = time.monotonic_ns()
        mapping = self._mapping
        while True:
            try:
                return self.recv(timeout=0)  # also says why nothing will come (ended, writer dead)
            except E.ChannelEmptyError:
                if tns == 0:
                    raise
            left = PARK_NS
            if tns > 0:
                left = tns - (time.monotonic_ns() - start)
                if left <= 0:
                    where = mapping.where
                    raise E.ChannelTimeoutError(f"no message on channel {where!r} for the whole timeout") from None
            await park(mapping, self.position, min(left, PARK_NS))
            msg = self._poll()
            if msg is not None:
                return msg

    def __aiter__(self) -> AsyncIterator[_core.Message]:
        """``async for msg in reader``: like iterating, with :meth:`recv_async`; each message is
        released when the loop moves on, and the loop ends when the writer closes."""
        return self._aiter()

    async def _aiter(self) -> AsyncIterator[_core.Message]:
        while True:
            try:
                msg = await self.recv_async()
            except E.ChannelEndedError:
                return
            try:
                yield msg
            finally:
                if not msg.released:
                    with contextlib.suppress(E.LappedError):  # counted lost; msg.intact told the loop body
                        msg.release()
