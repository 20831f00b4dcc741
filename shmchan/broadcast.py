"""Broadcast channels: one writer, many readers, each of which sees every message.

A :class:`Broadcast` works like a :class:`shmchan.Channel` (same :class:`~shmchan.Writer`,
:class:`~shmchan.Reader` and :class:`~shmchan.Message`), except that up to ``max_readers`` readers
attach at once, in any processes, each with its own position. What a full ring does is the policy:

``"block"``
    Lossless: the writer waits for the slowest live reader. A reader that dies stops holding the
    writer back within about 100 ms (its liveness lock is gone); one that closes, at once.
``"overwrite"``
    The writer never waits (live video: the freshest frame matters). A reader the writer laps
    skips to the oldest message still intact; the next message tells how many it lost
    (:attr:`Message.lost`, total in :attr:`Reader.lost`). A message held while the writer rewrites
    its slot is detected after the fact: :meth:`Message.release` (and leaving its ``with`` block)
    raises :class:`LappedError`, :attr:`Message.intact` turns false, and the copying calls
    (``recv_bytes``, ``recv_into``) never return a torn copy.

With no reader attached the writer never waits, and messages go to nobody.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from . import schema as _schema
from ._binding import ffi, lib
from ._handle import Reader
from ._names import check_geometry
from .channel import _KIND_CLASSES, _PEER_STATES, Channel, DtypeLike, _target

__all__ = ["Broadcast", "ReaderPlace"]

_POLICIES = {"block": lib.SHMCHAN_POLICY_BLOCK, "overwrite": lib.SHMCHAN_POLICY_OVERWRITE}
_POLICY_NAMES = {v: k for k, v in _POLICIES.items()}
_STARTS = {"latest": lib.SHMCHAN_START_LATEST, "oldest": lib.SHMCHAN_START_OLDEST}


@dataclass(frozen=True)
class ReaderPlace:
    """One reader place of a broadcast channel, as seen now (see :meth:`Broadcast.readers`)."""

    index: int
    state: str  #: "none" (never used), "attached" or "closed"
    pid: int
    alive: bool  #: attached and its process holds the place's liveness lock
    position: int  #: the oldest message the reader still holds (or the next it will take)
    messages: int
    bytes: int
    lost: int
    empty_waits: int


class Broadcast(Channel):
    """A one-writer, many-reader channel. Make one with :meth:`create`, or :meth:`open` it."""

    __slots__ = ()

    @classmethod
    def create(
        cls,
        name: str | None = None,
        *,
        slot_size: int,
        capacity: int,
        max_readers: int = 8,
        policy: str = "block",
        path: str | os.PathLike[str] | None = None,
        slot_align: int | None = None,
        msync: str = "none",
        mode: int = 0o600,
        persist: bool | None = None,
        descriptor: bytes | None = None,
        schema: _schema.SchemaSpec | None = None,
        dtype: DtypeLike | None = None,
        shape: tuple[int, ...] | None = None,
        metadata: dict[str, str] | None = None,
        reclaim_stale: bool = False,
    ) -> Broadcast:
        """Create a broadcast channel of ``capacity`` slots (a power of two, at least 2) of
        ``slot_size`` bytes, for up to ``max_readers`` readers at once (1 to 1024).

        ``policy`` is ``"block"`` or ``"overwrite"`` (see the module documentation). The other
        arguments are those of :meth:`shmchan.Channel.create`.
        """
        where, is_file = _target(name, path)
        size, cap, align, _total = check_geometry(slot_size, capacity, slot_align)
        if cap < 2:
            raise ValueError("a broadcast channel needs a capacity of at least 2 slots")
        if isinstance(max_readers, bool) or not isinstance(max_readers, int) or \
                not 1 <= max_readers <= lib.SHMCHAN_MAX_READERS:
            raise ValueError(f"max_readers must be an int from 1 to {lib.SHMCHAN_MAX_READERS}, got {max_readers!r}")
        if policy not in _POLICIES:
            raise ValueError(f"policy must be 'block' or 'overwrite', got {policy!r}")
        ch: Broadcast = cls._create(where, is_file, size, cap, align, msync=msync, mode=mode, persist=persist,
                                    descriptor=descriptor, schema=schema, dtype=dtype, shape=shape,
                                    metadata=metadata, reclaim_stale=reclaim_stale,
                                    kind=lib.SHMCHAN_KIND_BROADCAST, max_readers=max_readers,
                                    policy=_POLICIES[policy])
        return ch

    @classmethod
    def open(cls, name: str | None = None, *, path: str | os.PathLike[str] | None = None,
             timeout: float | None = 2.0, schema: _schema.SchemaSpec | None = None,
             allow_foreign: bool = False) -> Broadcast:
        """Open an existing broadcast channel (see :meth:`shmchan.Channel.open`); a channel of
        another kind raises :class:`IncompatibleChannelError`."""
        ch = super().open(name, path=path, timeout=timeout, schema=schema, allow_foreign=allow_foreign)
        assert isinstance(ch, Broadcast)
        return ch

    def reader(self, *, start: str = "latest", spin: float | None = None) -> Reader:
        """Attach a reader (one per handle: open the channel again for another in the same process).

        ``start="latest"`` begins with the newest message already sent (if any), ``"oldest"`` with
        the oldest one still in the ring. ``spin`` as for :meth:`shmchan.Channel.writer`. Raises
        :class:`ChannelBusyError` when this handle already has a reader or every reader place is
        taken.
        """
        if start not in _STARTS:
            raise ValueError(f"start must be 'latest' or 'oldest', got {start!r}")
        r: Reader = self._m.reader(start=_STARTS[start], spin=spin, cls=Reader, channel=self)
        self._reader = r
        return r

    @property
    def policy(self) -> str:
        """``"block"`` or ``"overwrite"``."""
        return _POLICY_NAMES[self._info["policy"]]

    @property
    def max_readers(self) -> int:
        """How many readers may be attached at once."""
        return int(self._info["max_readers"])

    def readers(self) -> list[ReaderPlace]:
        """The reader places and what they hold, as seen now (for monitoring)."""
        n = self.max_readers
        buf: Any = ffi.new("struct shmchan_place_info[]", n)
        with self._use() as ptr:
            lib.shmchan_reader_places(ptr, buf, n)
        return [ReaderPlace(p.index, _PEER_STATES.get(p.state, "invalid"), p.pid, bool(p.alive), p.cursor,
                            p.messages, p.bytes, p.lost, p.empty_waits) for p in buf]

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{self.capacity}x{self.slot_size}B {self.policy}"
        where = f"path={self._path!r}" if self._path else repr(self._name)
        return f"<shmchan.Broadcast {where} {state}>"


_KIND_CLASSES[lib.SHMCHAN_KIND_BROADCAST] = Broadcast
