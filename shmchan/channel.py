"""Channels: a named ring of slots in shared memory, written and read in place.

A :class:`Channel` has at most one :class:`Writer` and one :class:`Reader` at a time, in any
processes. The writer reserves a slot, fills it through a memoryview or numpy array, and commits
it; the reader receives it as a :class:`Message` whose views point straight into the slot. No
payload byte is copied unless you ask for a copy (``send``, ``recv_bytes``, ``recv_into``).

The data plane is native (``shmchan._core``): ``reserve``, ``commit``, ``recv``, ``release`` and
``send`` are one call each into the core, whatever the channel's kind.

Views are leases. A slot goes back to the writer only when its message is released *and* no view
made from it (memoryview, slice, numpy array) is alive any more; until then it stays pinned, so a
view you keep never shows newer data. Closing a channel never fails because of live views: the
handle is closed at once, and what the views still need is released when the last of them dies.

Handles may be used from several threads (see :class:`Reader` and :class:`Writer`), but not across
``fork()``: a child's copies are closed; open the channel again in the child.
"""

from __future__ import annotations

import errno
import os
import time
import weakref
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

import numpy.typing as npt

from . import _core, _handle
from . import errors as E
from . import schema as _schema
from ._binding import diag_text, ffi, lib, raise_for
from ._handle import Reader
from ._names import check_geometry, check_name
from ._stale import cleanup_stale, is_stale, not_a_file, reclaim_stale, unlink
from .server import ChannelServer

__all__ = [
    "Channel",
    "ChannelServer",
    "ChannelStats",
    "Message",
    "Reader",
    "Slot",
    "Writer",
    "cleanup_stale",
    "is_stale",
    "reclaim_stale",
    "unlink",
]

#: The channel's one writer (native); see :meth:`Channel.writer`.
Writer = _core.Writer
#: A reserved slot (native); see :meth:`Writer.reserve`.
Slot = _core.Slot
#: A received message (native); see :meth:`Reader.recv`.
Message = _core.Message

_MSYNC = {
    "none": lib.SHMCHAN_MSYNC_NONE,
    "async": lib.SHMCHAN_MSYNC_ASYNC,
    "sync": lib.SHMCHAN_MSYNC_SYNC,
    "explicit": lib.SHMCHAN_MSYNC_EXPLICIT,
}
_MSYNC_NAMES = {v: k for k, v in _MSYNC.items()}
_PEER_STATES = {0: "none", 1: "attached", 2: "closed"}
_KIND_NAMES = {lib.SHMCHAN_KIND_SPSC: "spsc", lib.SHMCHAN_KIND_BROADCAST: "broadcast", lib.SHMCHAN_KIND_STATE: "state"}
#: the class Channel.open returns for each kind (Broadcast and State register themselves)
_KIND_CLASSES: dict[int, type[Channel]] = {}
_OPEN_POLL_S = (0.001, 0.05)  # waiting for a name to appear: first and longest pause between looks

DtypeLike = npt.DTypeLike
Shape = int | tuple[int, ...]


_C = TypeVar("_C", bound="Channel")  # a handle's own class (Broadcast, State): __enter__ keeps it


@dataclass(frozen=True)
class ChannelStats:
    """A snapshot of a channel's counters (taken without stopping anybody; fields may be
    mutually a little stale)."""

    capacity: int
    head: int
    tail: int
    messages_written: int
    bytes_written: int
    full_waits: int
    aborts: int
    messages_read: int
    bytes_read: int
    empty_waits: int
    writer_state: str
    reader_state: str
    writer_pid: int
    reader_pid: int
    writer_alive: bool
    reader_alive: bool

    @property
    def fill(self) -> int:
        """Messages committed and not yet released."""
        return self.head - self.tail


class _Use:
    """``with ch._use() as ptr``: the C handle for a control-plane call through CFFI. While held,
    close() waits (it never frees a handle a call is using)."""

    __slots__ = ("_m",)

    def __init__(self, m: _core.Mapping) -> None:
        self._m = m

    def __enter__(self) -> Any:
        return ffi.cast("shmchan_channel *", self._m.hold())

    def __exit__(self, t: object, v: object, tb: object) -> None:
        self._m.unhold()


class Channel:
    """A named shared-memory channel: ``capacity`` slots of ``slot_size`` bytes.

    Make one with :meth:`create` or :meth:`open`; use it as a context manager or call
    :meth:`close`. Only the creator removes the name: by default when it closes (``persist=False``),
    while processes that already opened the channel keep working until they close.
    """

    __slots__ = (
        "__weakref__",
        "_chinfo",
        "_closed",
        "_creator",
        "_descriptor",
        "_finalizer",
        "_info",
        "_m",
        "_name",
        "_path",
        "_persist",
        "_pid",
        "_reader",
        "_servers",
        "_writer",
    )

    def __init__(self, ptr: Any, name: str | None, path: str | None, *, creator: bool, persist: bool) -> None:
        """Internal: use :meth:`create` or :meth:`open`."""
        where = path or name or "(sealed)"
        self._m = _core.Mapping(int(ffi.cast("uintptr_t", ptr)), where)
        self._name = name
        self._path = path
        self._creator = creator
        self._persist = persist
        self._pid = os.getpid()
        self._closed = False
        self._writer: Any = None
        self._reader: Reader | None = None
        self._servers: list[ChannelServer] = []
        info = ffi.new("struct shmchan_info *")
        lib.shmchan_info(ptr, info)
        self._info = {k: getattr(info, k) for k in dir(info)}
        self._descriptor = b""
        if info.descriptor_size:
            buf = ffi.new("char[]", info.descriptor_size)
            lenp = ffi.new("uint64_t *")
            rc = lib.shmchan_read_descriptor(ptr, buf, info.descriptor_size, lenp)
            if rc:
                self._m.close()
                raise_for(rc, "cannot read the channel descriptor")
            self._descriptor = ffi.buffer(buf, lenp[0])[:]
        self._chinfo: _schema.ChannelInfo | bool | None = False  # False: not decoded yet
        if not creator:
            # A ChannelInfo that does not verify or contradicts the header is refused here, before
            # anything uses the channel (R47, R48); an opaque descriptor is no ChannelInfo at all.
            try:
                self._chinfo = _schema.channel_info(self)
            except BaseException:
                self._m.close()
                raise
        self._finalizer = weakref.finalize(
            self,
            _handle.on_collect,
            repr(self),
            _handle.unlinker(self._m) if creator and not persist else None,
            self._pid,
        )

    # ---- making and finding channels ----

    @classmethod
    def create(
        cls,
        name: str | None = None,
        *,
        slot_size: int,
        capacity: int,
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
    ) -> Channel:
        """Create a channel of ``capacity`` slots (a power of two) of ``slot_size`` bytes each.

        Give a ``name`` for a channel in shared memory (``/dev/shm/shmchan.<name>``) or a ``path``
        for one kept in a regular file. ``slot_align`` aligns every slot (default: 64 bytes for slots
        under 4 KiB, so small messages pack densely, else the page size); ``mode`` sets the
        permission bits exactly, whatever the umask. ``msync`` is the flush policy of file-backed
        channels: ``"none"``, ``"async"`` or ``"sync"`` after each commit, or ``"explicit"`` (only
        :meth:`flush`); it means nothing for shared memory, which has no backing store. ``persist``
        keeps the name after the creator closes (default: only for files). ``descriptor`` (up to 64
        KiB) is stored with the channel, immutable, for every peer to read back as
        :attr:`descriptor`. All memory is allocated here, so a full ``/dev/shm`` raises
        :class:`ChannelAllocationError` now instead of crashing a process later.

        ``schema`` (``"frame"``, ``"tensor"``, a :class:`shmchan.schema.PayloadSchema`, ``.bfbs``
        bytes or path), ``dtype``/``shape`` hints and ``metadata`` make the descriptor a ChannelInfo
        FlatBuffer (see :attr:`info` and shmchan.schema) instead of ``descriptor``.

        Raises ``ValueError`` for a bad name or geometry (before any system call),
        :class:`ChannelExistsError` if the name is taken. A name held by a *stale* channel (no
        process has it open: its creator died) is never adopted; ``reclaim_stale=True`` removes
        such a channel first and creates a fresh one (a live channel is never touched).
        """
        where, is_file = _target(name, path)
        size, cap, align, _total = check_geometry(slot_size, capacity, slot_align)
        ch: Channel = cls._create(where, is_file, size, cap, align, msync=msync, mode=mode, persist=persist,
                                  descriptor=descriptor, schema=schema, dtype=dtype, shape=shape, metadata=metadata,
                                  reclaim_stale=reclaim_stale)
        return ch

    @classmethod
    def _create(cls, where: str, is_file: bool, size: int, cap: int, align: int, *, msync: str, mode: int,
                persist: bool | None, descriptor: bytes | None, schema: _schema.SchemaSpec | None,
                dtype: DtypeLike | None, shape: tuple[int, ...] | None, metadata: dict[str, str] | None,
                reclaim_stale: bool, kind: int = 0, max_readers: int = 0, policy: int = 0,
                numpy_descr: str | None = None) -> Any:
        """The part of create shared by every kind, once the geometry is checked."""
        if schema is not None or dtype is not None or shape is not None or metadata is not None or numpy_descr:
            if descriptor is not None:
                raise ValueError("give either descriptor or schema/dtype/shape/metadata, not both")
            descriptor = _schema.make_descriptor(schema, slot_size=size, capacity=cap, slot_align=align,
                                                 dtype=dtype, shape=shape, metadata=metadata,
                                                 kind=_KIND_NAMES.get(kind or lib.SHMCHAN_KIND_SPSC, "spsc"),
                                                 numpy_descr=numpy_descr)
        cfg, _keep = _config(size, cap, align, msync, mode, descriptor)
        cfg.kind = kind
        cfg.max_readers = max_readers
        cfg.policy = policy
        out = ffi.new("shmchan_channel **")
        diag = ffi.new("struct shmchan_diag *")
        if is_file:
            rc = lib.shmchan_create_file(os.fsencode(where), cfg, out, diag)
        else:
            rc = lib.shmchan_create(where.encode(), cfg, out, diag)
            if rc == -errno.EEXIST and reclaim_stale and lib.shmchan_reclaim_stale(where.encode()) == 0:
                rc = lib.shmchan_create(where.encode(), cfg, out, diag)
        if rc:
            detail = diag_text(diag)
            if rc == -errno.EEXIST:
                detail = "the name is taken by a channel in use (or being created)"
                if (other := not_a_file(where, is_file)) is not None:
                    detail = f"the name is taken by {other}, not a channel"
                elif not is_file and lib.shmchan_is_stale(where.encode()) == 1:
                    detail = ("the name is held by a stale channel: no process has it open (its creator "
                              "died?); pass reclaim_stale=True or call shmchan.cleanup_stale()")
            raise_for(rc, f"cannot create channel {where!r}", detail, where)
        return cls(out[0], None if is_file else where, where if is_file else None, creator=True,
                   persist=is_file if persist is None else bool(persist))

    @classmethod
    def open(
        cls,
        name: str | None = None,
        *,
        path: str | os.PathLike[str] | None = None,
        timeout: float | None = 2.0,
        schema: _schema.SchemaSpec | None = None,
        allow_foreign: bool = False,
    ) -> Channel:
        """Open an existing channel by ``name`` (or ``path``).

        ``Channel.open`` returns an instance of the class of the channel's kind (:class:`Channel`,
        :class:`shmchan.Broadcast` or :class:`shmchan.State`); ``Broadcast.open`` and ``State.open``
        refuse a channel of another kind with :class:`IncompatibleChannelError`.

        Waits up to ``timeout`` seconds (``None``: for ever, ``0``: not at all) for the channel to
        appear and for its creator to finish initialising it, so a reader may start before its
        writer. A channel owned by another user, or writable by group or others, could be corrupted
        by someone else and is refused with :class:`ChannelPermissionError` unless
        ``allow_foreign=True``. Raises :class:`ChannelNotFoundError` (nothing appeared in time),
        :class:`ChannelPermissionError`, :class:`IncompatibleChannelError` (not a channel, not
        initialised, other layout version) or :class:`CorruptChannelError` (the header describes an
        impossible channel). With ``schema``, also :class:`IncompatibleChannelError` unless the
        channel's payload schema is compatible with it (shmchan.schema.check_compatible).
        """
        where, is_file = _target(name, path)
        tns = _core.seconds_to_ns(timeout)
        flags = lib.SHMCHAN_OPEN_ALLOW_FOREIGN if allow_foreign else 0
        out = ffi.new("shmchan_channel **")
        diag = ffi.new("struct shmchan_diag *")
        start = time.monotonic_ns()
        pause = _OPEN_POLL_S[0]
        while True:
            left = -1 if tns < 0 else max(tns - (time.monotonic_ns() - start), 0)
            if is_file:
                rc = lib.shmchan_open_file_ex(os.fsencode(where), left, flags, out, diag)
            else:
                rc = lib.shmchan_open_ex(where.encode(), left, flags, out, diag)
            if rc != -errno.ENOENT or left == 0:
                break
            # not there yet: its creator may not have started; look again (bounded by timeout)
            nap = pause if tns < 0 else min(pause, (tns - (time.monotonic_ns() - start)) / 1e9)
            if nap > 0:
                time.sleep(nap)
            pause = min(pause * 2, _OPEN_POLL_S[1])
        if rc:
            detail = diag_text(diag)
            if rc == -errno.ENOENT:
                detail = "no such channel" + (f" (waited {timeout} s for it to appear)" if tns else "")
            raise_for(rc, f"cannot open channel {where!r}", detail, where)
        kind = lib.shmchan_kind(out[0])
        klass = _KIND_CLASSES.get(kind, Channel)
        if cls is not Channel and cls is not klass:
            lib.shmchan_close(out[0])
            raise E.IncompatibleChannelError(
                f"channel {where!r} is a {_KIND_NAMES.get(kind, kind)} channel: open it with "
                f"shmchan.{klass.__name__}.open (or shmchan.Channel.open, which picks the class)")
        ch = klass(out[0], None if is_file else where, where if is_file else None, creator=False, persist=True)
        if schema is not None:
            try:
                _schema.check_channel_schema(ch, schema)
            except BaseException:
                ch.close()
                raise
        return ch

    # ---- sealed channels ----

    @classmethod
    def create_sealed(
        cls,
        *,
        slot_size: int,
        capacity: int,
        slot_align: int | None = None,
        mode: int = 0o600,
        descriptor: bytes | None = None,
    ) -> Channel:
        """Create a *sealed* channel: an anonymous memfd that no process can shrink or grow.

        A peer that truncates a named channel crashes its readers with SIGBUS; a sealed channel
        cannot be truncated at all (``ftruncate`` fails with EPERM). It has no name: share it with
        :meth:`serve` (peers call :meth:`connect`) or pass :attr:`fd` over a Unix socket yourself
        (peers call :meth:`from_fd`). Use it when peers are not fully trusted.
        """
        size, cap, align, _total = check_geometry(slot_size, capacity, slot_align)
        cfg, _keep = _config(size, cap, align, "none", mode, descriptor)
        out = ffi.new("shmchan_channel **")
        diag = ffi.new("struct shmchan_diag *")
        rc = lib.shmchan_create_sealed(cfg, out, diag)
        if rc:
            raise_for(rc, "cannot create a sealed channel", diag_text(diag))
        return cls(out[0], None, None, creator=True, persist=True)

    @classmethod
    def connect(cls, path: str | os.PathLike[str], *, timeout: float | None = 2.0,
                allow_foreign: bool = False) -> Channel:
        """Attach to a sealed channel served at the Unix socket ``path`` (see :meth:`serve`).

        The whole exchange (connecting, receiving the descriptor, attaching) takes at most
        ``timeout`` seconds (None: no limit), even when the listener never accepts. Raises
        :class:`ChannelTimeoutError`, :class:`ChannelNotFoundError` (no socket at ``path``),
        :class:`IncompatibleChannelError` (the server sent something else than one channel
        descriptor; the message says what it sent, and whatever it sent is closed),
        :class:`ValueError` (a socket path longer than 107 bytes), the errors of ``connect(2)``,
        and the errors of :meth:`from_fd` (a memfd sealed against writing included). A signal
        interrupts the exchange: its handler runs (Ctrl-C raises KeyboardInterrupt at once), else
        the exchange starts again within the time left."""
        p = os.fsdecode(path)
        what = f"cannot connect to a sealed channel at {p!r}"
        raw = os.fsencode(p)
        if b"\0" in raw:
            raise ValueError(f"{what}: the socket path holds a NUL byte")
        tns = _core.seconds_to_ns(timeout)
        # the core's client (shmchan_connect), as the native peers use it. With CONNECT_EINTR a signal
        # ends its wait, and so does every 100 ms of retrying a full backlog (a signal caught by
        # another thread, or between two tries, interrupts no system call): the pending handler
        # runs (Ctrl-C raises KeyboardInterrupt), then the exchange starts again with the time left
        flags = lib.SHMCHAN_CONNECT_EINTR | (lib.SHMCHAN_OPEN_ALLOW_FOREIGN if allow_foreign else 0)
        out = ffi.new("shmchan_channel **")
        diag = ffi.new("struct shmchan_diag *")
        start = time.monotonic_ns()
        while True:
            left = -1 if tns < 0 else max(tns - (time.monotonic_ns() - start), 0)
            rc = lib.shmchan_connect(raw, left, flags, out, diag)
            if rc != -errno.EINTR:
                break
        if rc == -errno.EPROTO:
            raise E.IncompatibleChannelError(f"{what}: {diag_text(diag)}")
        if rc:
            raise_for(rc, what, diag_text(diag), p)
        return cls(out[0], None, None, creator=False, persist=True)

    @classmethod
    def from_fd(cls, fd: int, *, timeout: float | None = 2.0, allow_foreign: bool = False) -> Channel:
        """Attach to a sealed channel from a file descriptor its creator sent (for example with
        ``socket.recv_fds``). The descriptor is re-opened: the caller still owns and closes ``fd``.
        An fd that is not sealed against shrinking and growing, or that is sealed against writing
        (``F_SEAL_WRITE``, ``F_SEAL_FUTURE_WRITE``: no peer could write its positions), raises
        :class:`ChannelPermissionError`."""
        tns = _core.seconds_to_ns(timeout)
        out = ffi.new("shmchan_channel **")
        diag = ffi.new("struct shmchan_diag *")
        flags = lib.SHMCHAN_OPEN_ALLOW_FOREIGN if allow_foreign else 0
        rc = lib.shmchan_open_fd(fd, tns, flags, out, diag)
        if rc:
            raise_for(rc, f"cannot attach to the sealed channel of fd {fd}", diag_text(diag))
        return cls(out[0], None, None, creator=False, persist=True)

    @property
    def sealed(self) -> bool:
        """Whether this is a sealed memfd channel."""
        return bool(self._info["sealed"])

    @property
    def fd(self) -> int:
        """The channel's file descriptor (owned by the channel; for passing a sealed channel)."""
        with self._use() as ptr:
            return int(lib.shmchan_channel_fd(ptr))

    def serve(self, path: str | os.PathLike[str]) -> ChannelServer:
        """Listen on a new Unix socket at ``path`` and hand this channel's descriptor to every
        process that connects (with :meth:`connect`), from a background thread, until the server
        or the channel is closed. The socket file is created with this process's umask; its
        permissions decide who may attach."""
        if not self.sealed:
            raise ValueError("only a sealed channel is served; others are opened by name")
        server = ChannelServer(self, os.fspath(path))
        self._servers.append(server)
        return server

    # ---- ends ----

    def writer(self, *, spin: float | None = None) -> Writer:
        """Attach this process as the channel's one writer.

        ``spin`` is how long (seconds) a blocked reserve polls before it sleeps (default 100 µs;
        ``float('inf')`` polls for the whole timeout). Raises :class:`ChannelBusyError` if a writer
        is attached anywhere.
        """
        w: Writer = self._m.writer(spin=spin, channel=self)
        self._writer = w
        return w

    def reader(self, *, spin: float | None = None) -> Reader:
        """Attach this process as the channel's one reader; it starts at the oldest unreleased
        message. ``spin`` as for :meth:`writer`. Raises :class:`ChannelBusyError` if a reader is
        attached anywhere."""
        r: Reader = self._m.reader(spin=spin, cls=Reader, channel=self)
        self._reader = r
        return r

    # ---- information ----

    @property
    def name(self) -> str | None:
        """The channel's name (None for a file-backed channel)."""
        return self._name

    @property
    def path(self) -> str | None:
        """The file of a file-backed channel (None for shared memory)."""
        return self._path

    @property
    def slot_size(self) -> int:
        """Largest message, in bytes."""
        return int(self._info["slot_size"])

    @property
    def capacity(self) -> int:
        """Number of slots."""
        return int(self._info["capacity"])

    @property
    def slot_stride(self) -> int:
        """Distance between slot starts (slot_size rounded up to the alignment)."""
        return int(self._info["slot_stride"])

    @property
    def slot_align(self) -> int:
        """Alignment of every slot's first byte."""
        return int(self._info["slot_align"])

    @property
    def nbytes(self) -> int:
        """Size of the whole segment in bytes."""
        return int(self._info["total_size"])

    @property
    def msync(self) -> str:
        """The flush policy chosen at creation."""
        return _MSYNC_NAMES[int(self._info["msync_policy"])]

    @property
    def creator_pid(self) -> int:
        """Process id of the creator."""
        return int(self._info["creator_pid"])

    @property
    def created(self) -> float:
        """Creation time, seconds since the epoch."""
        return int(self._info["created_ns"]) / 1e9

    @property
    def layout_version(self) -> tuple[int, int]:
        """The (major, minor) layout version in the header."""
        return int(self._info["version_major"]), int(self._info["version_minor"])

    @property
    def descriptor(self) -> bytes:
        """The descriptor given at creation (b"" if none), as read once when this handle opened."""
        return self._descriptor

    @property
    def info(self) -> _schema.ChannelInfo | None:
        """The descriptor decoded as a ChannelInfo, checked against the header when this handle
        opened (None when the channel has no descriptor, or one that is not a ChannelInfo)."""
        if self._chinfo is False:
            self._chinfo = _schema.channel_info(self)
        assert self._chinfo is not True
        return self._chinfo

    @property
    def is_creator(self) -> bool:
        """Whether this handle created the channel."""
        return bool(self._info["is_creator"])

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (or this is a copy inherited across ``fork()``)."""
        return self._closed or self._m.forked

    def stats(self) -> ChannelStats:
        """Counters and positions, as seen now."""
        st = ffi.new("struct shmchan_stats *")
        with self._use() as ptr:
            lib.shmchan_stats(ptr, st)
        return ChannelStats(
            capacity=self.capacity,
            head=st.head,
            tail=st.tail,
            messages_written=st.messages_written,
            bytes_written=st.bytes_written,
            full_waits=st.full_waits,
            aborts=st.aborts,
            messages_read=st.messages_read,
            bytes_read=st.bytes_read,
            empty_waits=st.empty_waits,
            writer_state=_PEER_STATES.get(st.writer_state, "invalid"),
            reader_state=_PEER_STATES.get(st.reader_state, "invalid"),
            writer_pid=st.writer_pid,
            reader_pid=st.reader_pid,
            writer_alive=bool(st.writer_alive),
            reader_alive=bool(st.reader_alive),
        )

    def inspect(self, pos: int) -> tuple[bytes | None, int, int]:
        """Look at the message at stream position ``pos`` without taking it (for monitoring tools;
        no reader needs to be attached, and the writer is never disturbed).

        Returns ``(data, first, end)``: a copy of the message (None if ``pos`` is not in the ring
        any more, or not yet) and the range ``[first, end)`` of positions the ring holds now. A
        copy is never torn: one the writer may have overwritten meanwhile is retried or dropped.
        """
        buf = ffi.new("char[]", self.slot_size)
        lenp = ffi.new("uint64_t *")
        firstp = ffi.new("uint64_t *")
        endp = ffi.new("uint64_t *")
        with self._use() as ptr:
            for _ in range(10):
                rc = lib.shmchan_inspect(ptr, pos, buf, self.slot_size, lenp, firstp, endp)
                if rc == 0:
                    return ffi.buffer(buf, lenp[0])[:], int(firstp[0]), int(endp[0])
                if rc == -errno.ENOENT:
                    return None, int(firstp[0]), int(endp[0])
                if rc != -errno.ESTALE:
                    raise_for(rc, f"cannot inspect {self._where()!r}", self._diag(ptr, rc))
        return None, int(firstp[0]), int(endp[0])

    def flush(self) -> None:
        """Write the whole segment back to its file now (``msync(MS_SYNC)``); for file-backed
        channels, a no-op in effect for shared memory."""
        with self._use() as ptr:
            rc = lib.shmchan_flush(ptr)
        if rc:
            raise_for(rc, f"cannot flush {self._where()!r}")

    # ---- lifetime ----

    def close(self) -> None:
        """Close this handle; idempotent, and it never fails because of live views.

        Blocked calls of other threads on this handle (``recv``, ``send`` on a full ring,
        ``reserve``, ``wait_for_change``, ...) end with :class:`ChannelClosedError`, and every later
        call raises it. The creator also removes the name unless the channel persists. Views of
        messages or slots that are still alive keep their bytes: the reader keeps holding the
        messages they show, and the writer stays attached (readers see its stream end), until the
        last of those views dies; then they are released, and the mapping is unmapped.
        """
        if self._closed:
            return
        self._closed = True
        for server in self._servers:
            server.close()
        if self._creator and not self._persist and os.getpid() == self._pid and not self._m.closed:
            with _Use(self._m) as ptr:
                lib.shmchan_channel_unlink(ptr)
        self._finalizer.detach()
        self._m.close()

    def unlink(self) -> None:
        """Remove the channel's name (or file) now. Open handles keep working until closed;
        new :meth:`open` calls fail."""
        with self._use() as ptr:
            rc = lib.shmchan_channel_unlink(ptr)
        if rc:
            raise_for(rc, f"cannot unlink {self._where()!r}", filename=self._where())
        self._persist = True  # nothing left to remove at close

    def __enter__(self: _C) -> _C:
        return self  # the handle's own class: `with Broadcast.open(..) as b` is a Broadcast to a type checker

    def __exit__(self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def __reduce__(self) -> Any:
        raise TypeError(
            f"cannot pickle a shmchan {type(self).__name__}: a handle belongs to the process that opened it; "
            f"pass the channel's name ({self._where()!r}) and open it in the other process "
            f"(shmchan.{type(self).__name__}.open)")

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{self.capacity}x{self.slot_size}B"
        where = f"path={self._path!r}" if self._path else repr(self._name) if self._name else "(sealed)"
        return f"<shmchan.Channel {where} {state}>"

    # ---- internals shared with the other kinds ----

    def _where(self) -> str:
        return self._path or self._name or "(sealed)"

    def _use(self) -> _Use:
        """The C handle, held for a control-plane call (raises ChannelClosedError once closed)."""
        if self._closed:
            raise E.ChannelClosedError(f"channel {self._where()!r} is closed")
        return _Use(self._m)

    def _diag(self, ptr: Any, rc: int) -> str:
        if rc == -lib.SHMCHAN_ECORRUPT:
            return str(ffi.string(lib.shmchan_channel_diag(ptr)).decode(errors="replace"))
        return ""


def _config(size: int, cap: int, align: int, msync: str, mode: int, descriptor: Any) -> tuple[Any, Any]:
    """A ``struct shmchan_config`` for a validated geometry, and the buffer it points into (keep it
    alive until the C call returns)."""
    if msync not in _MSYNC:
        raise ValueError(f"msync must be one of {sorted(_MSYNC)}, got {msync!r}")
    if isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode <= 0o777:
        raise ValueError(f"mode must be permission bits between 0 and 0o777, got {mode!r}")
    cfg = ffi.new("struct shmchan_config *")
    cfg.slot_size = size
    cfg.capacity = cap
    cfg.slot_align = align
    cfg.mode = mode
    cfg.msync_policy = _MSYNC[msync]
    keep = None
    if descriptor is not None and len(memoryview(descriptor).cast("B")):
        keep = ffi.from_buffer(descriptor)
        if len(keep) > lib.SHMCHAN_MAX_DESCRIPTOR_SIZE:
            raise ValueError(f"descriptor of {len(keep)} bytes; the limit is {lib.SHMCHAN_MAX_DESCRIPTOR_SIZE}")
        cfg.descriptor = keep
        cfg.descriptor_size = len(keep)
    return cfg, keep


def _target(name: str | None, path: str | os.PathLike[str] | None) -> tuple[str, bool]:
    if (name is None) == (path is None):
        raise TypeError("give exactly one of name (shared memory) or path (a file)")
    if path is not None:
        p = os.fspath(path)
        if not p:
            raise ValueError("path is empty")
        return p, True
    return check_name(name), False


# ---- the methods of the native types that live in Python (frames, tensors) ----


def _frame(msg: Message) -> _schema.FrameView:
    return _schema.frame.decode_message(msg)


def _tensor(msg: Message) -> Any:
    return _schema.decode_tensor(msg.buffer).array


# the channel goes along so its payload schema is checked (once per channel handle)


def _reserve_frame(w: Writer, *args: Any, **kwargs: Any) -> Any:
    return _schema.reserve_frame(w, *args, channel=w.channel, **kwargs)


def _send_frame(w: Writer, *args: Any, **kwargs: Any) -> Any:
    return _schema.send_frame(w, *args, channel=w.channel, **kwargs)


def _reserve_tensor(w: Writer, *args: Any, **kwargs: Any) -> Any:
    return _schema.reserve_tensor(w, *args, channel=w.channel, **kwargs)


def _send_tensor(w: Writer, *args: Any, **kwargs: Any) -> Any:
    return _schema.send_tensor(w, *args, channel=w.channel, **kwargs)


for _name, _fn in (("frame", _frame), ("tensor", _tensor), ("reserve_frame", _reserve_frame),
                   ("send_frame", _send_frame), ("reserve_tensor", _reserve_tensor),
                   ("send_tensor", _send_tensor)):
    _core._set_hook(_name, _fn)
