"""Channels: a named ring of slots in shared memory, written and read in place.

A :class:`Channel` has at most one :class:`Writer` and one :class:`Reader` at a time, in any
processes. The writer reserves a slot, fills it through a memoryview or numpy array, and commits
it; the reader receives it as a :class:`Message` whose views point straight into the slot. No
payload byte is copied unless you ask for a copy (``send``, ``recv_bytes``, ``recv_into``).

Views are leases. A slot goes back to the writer only when its message is released *and* no view
made from it (memoryview, slice, numpy array) is alive any more; until then it stays pinned, so a
view you keep never shows newer data. Closing a channel while views of it live raises
``BufferError``.

Handles are not thread-safe: use each Channel, Writer and Reader from one thread at a time. Do not
share a handle across ``fork()``; open the channel again in the child.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import math
import os
import socket
import threading
import time
import warnings
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt

from . import errors as E
from . import schema as _schema
from ._binding import diag_text, ffi, lib, raise_for
from ._lease import SlotBuffer
from ._names import check_geometry, check_name

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

_SLICE_NS = 100_000_000  # a blocking call returns to Python this often, so signals are handled
_EAGAIN = -errno.EAGAIN
_ETIMEDOUT = -errno.ETIMEDOUT
_EINTR = -errno.EINTR
_EPINNED = -lib.SHMCHAN_EPINNED
_EPEERDEAD = -lib.SHMCHAN_EPEERDEAD
_EMSGSIZE = -errno.EMSGSIZE
_MSYNC = {
    "none": lib.SHMCHAN_MSYNC_NONE,
    "async": lib.SHMCHAN_MSYNC_ASYNC,
    "sync": lib.SHMCHAN_MSYNC_SYNC,
    "explicit": lib.SHMCHAN_MSYNC_EXPLICIT,
}
_MSYNC_NAMES = {v: k for k, v in _MSYNC.items()}
_PEER_STATES = {0: "none", 1: "attached", 2: "closed"}
_ESTALE = -errno.ESTALE
_KIND_NAMES = {lib.SHMCHAN_KIND_SPSC: "spsc", lib.SHMCHAN_KIND_BROADCAST: "broadcast", lib.SHMCHAN_KIND_STATE: "state"}
#: the class Channel.open returns for each kind (Broadcast and State register themselves)
_KIND_CLASSES: dict[int, type[Channel]] = {}
_PARK_NS = 100_000_000  # an asyncio wait parks a helper thread for at most this long at a time

DtypeLike = npt.DTypeLike
Shape = int | tuple[int, ...]


def _timeout_ns(timeout: float | None) -> int:
    """Seconds (None = forever) to the C convention: -1 forever, 0 no wait, else nanoseconds."""
    if timeout is None:
        return -1
    t = float(timeout)
    if not t >= 0:
        raise ValueError(f"timeout must be None or >= 0 seconds, got {timeout!r}")
    if math.isinf(t):
        return -1
    return int(t * 1e9)


def _first(tns: int) -> int:
    return tns if 0 <= tns <= _SLICE_NS else _SLICE_NS


def _spin_ns(spin: float | None) -> int | None:
    if spin is None:
        return None
    s = float(spin)
    if not s >= 0:
        raise ValueError(f"spin must be >= 0 seconds, got {spin!r}")
    return 1 << 62 if math.isinf(s) else int(s * 1e9)


def _keep_waiting(call: Callable[[int], int], cont: Callable[[], None], rc: int, tns: int) -> int:
    """Continue a wait whose first slice ended with ``rc`` until it succeeds, fails or times out.

    Blocking calls go to C in slices of at most 100 ms: between slices Python runs its signal
    handlers, so Ctrl-C raises ``KeyboardInterrupt`` promptly even when the wait has no timeout
    (and even when the signal was delivered to another thread). ``cont`` tells C that the next
    call continues the same wait, so statistics count it once. The clock is read only here, on
    the slow path: a first slice that timed out waited its whole length; one cut short by a
    signal is counted as no time (a signal may so lengthen a wait by up to one slice).
    """
    start = time.monotonic_ns() - (_first(tns) if rc == _ETIMEDOUT else 0)
    while rc in (_ETIMEDOUT, _EINTR):
        if tns < 0:
            left = _SLICE_NS
        else:
            left = tns - (time.monotonic_ns() - start)
            if left <= 0:
                return _ETIMEDOUT
        cont()
        rc = call(min(left, _SLICE_NS))
    return rc


class _Mapping:
    """Owns the C channel handle. It is closed when this object dies, which cannot happen while
    any slot view exists, because every SlotBuffer holds a reference to it. ``ptr`` is None once
    closed: the C writer and reader handles died with it, so nothing may call into them."""

    __slots__ = ("__weakref__", "_fin", "ptr")

    def __init__(self, ptr: Any) -> None:
        self.ptr: Any = ptr
        self._fin = weakref.finalize(self, lib.shmchan_close, ptr)
        # Never unmap in the interpreter's exit pass: a daemon thread may still be inside a C call
        # on this mapping (blocked in recv, say). The kernel unmaps at process exit anyway.
        self._fin.atexit = False

    def close(self) -> None:
        self.ptr = None
        self._fin()


def _on_collect(desc: str, mapping: _Mapping, bufs: list[dict[int, SlotBuffer]], unlink_fn: Any) -> None:
    """A Channel was garbage-collected without close() (or is still open at exit): remove the name if
    this handle created it, then say so (last: with -W error the warning raises). The mapping is
    released by its own finalizer once nothing refers to it -- never from here, because at exit
    another thread may still be inside a C call on it."""
    try:
        if unlink_fn is not None:
            unlink_fn()
    finally:
        warnings.warn(f"unclosed shmchan channel {desc}", ResourceWarning, stacklevel=2)


def _unlinker(ptr: Any) -> Callable[[], None]:
    def run() -> None:
        lib.shmchan_channel_unlink(ptr)

    return run


class _Parking:
    """Helper threads parked in C on a channel for asyncio waits. ``close()`` must not unmap the
    channel under them: it wakes them and waits until none is left inside C."""

    __slots__ = ("_cond", "_n")

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._n = 0

    def run(self, ch: Channel, call: Callable[[Any], int]) -> int:
        with self._cond:
            ptr = ch._ptr()  # raises once closed: nothing new parks after close() began
            self._n += 1
        try:
            return call(ptr)
        finally:
            with self._cond:
                self._n -= 1
                self._cond.notify_all()

    def drain(self, ptr: Any) -> None:
        with self._cond:
            while self._n:
                lib.shmchan_wake_head(ptr)  # they return at once and find the channel closing
                self._cond.wait(0.001)


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


def _wait_head(pos: int, tns: int) -> Callable[[Any], int]:
    """The parked call of an asyncio wait: sleep until head leaves ``pos``, a wake-up, or ``tns``."""

    def call(ptr: Any) -> int:
        return int(lib.shmchan_wait_head(ptr, pos, tns))

    return call


async def _park(ch: Channel, call: Callable[[Any], int]) -> int:
    """Run a blocking C wait of ``ch`` on a helper thread, without blocking the event loop."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_pool(), ch._park.run, ch, call)


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


class Channel:
    """A named shared-memory channel: ``capacity`` slots of ``slot_size`` bytes.

    Make one with :meth:`create` or :meth:`open`; use it as a context manager or call
    :meth:`close`. Only the creator removes the name: by default when it closes (``persist=False``),
    while processes that already opened the channel keep working until they close.
    """

    __slots__ = (
        "__weakref__",
        "_closed",
        "_creator",
        "_descriptor",
        "_finalizer",
        "_info",
        "_map",
        "_name",
        "_park",
        "_path",
        "_persist",
        "_rbufs",
        "_reader",
        "_servers",
        "_wbufs",
        "_writer",
    )

    def __init__(self, ptr: Any, name: str | None, path: str | None, *, creator: bool, persist: bool) -> None:
        """Internal: use :meth:`create` or :meth:`open`."""
        self._map = _Mapping(ptr)
        self._name = name
        self._path = path
        self._creator = creator
        self._persist = persist
        self._closed = False
        self._writer: Writer | None = None
        self._reader: Reader | None = None
        self._wbufs: dict[int, SlotBuffer] = {}
        self._rbufs: dict[int, SlotBuffer] = {}
        self._servers: list[ChannelServer] = []
        self._park = _Parking()
        info = ffi.new("struct shmchan_info *")
        lib.shmchan_info(ptr, info)
        self._info = {k: getattr(info, k) for k in dir(info)}
        self._descriptor = b""
        if info.descriptor_size:
            buf = ffi.new("char[]", info.descriptor_size)
            lenp = ffi.new("uint64_t *")
            rc = lib.shmchan_read_descriptor(ptr, buf, info.descriptor_size, lenp)
            if rc:
                self._map.close()
                raise_for(rc, "cannot read the channel descriptor")
            self._descriptor = ffi.buffer(buf, lenp[0])[:]
        self._finalizer = weakref.finalize(
            self,
            _on_collect,
            repr(self),
            self._map,
            [self._wbufs, self._rbufs],
            _unlinker(ptr) if creator and not persist else None,
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
        for one kept in a regular file. ``slot_align`` aligns every slot (default: 64 bytes for slots under
        4 KiB, so small messages pack densely, else the page size);
        ``mode`` sets the permission bits exactly, whatever the umask. ``msync`` is the flush
        policy of file-backed channels: ``"none"``, ``"async"`` or ``"sync"`` after each commit, or
        ``"explicit"`` (only :meth:`flush`); it means nothing for shared memory, which has no
        backing store. ``persist`` keeps the name after the creator closes (default: only for
        files). ``descriptor`` (up to 64 KiB) is stored with the channel, immutable, for every
        peer to read back as :attr:`descriptor`. All memory is allocated here, so a full ``/dev/shm`` raises
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
                if not is_file and lib.shmchan_is_stale(where.encode()) == 1:
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

        Waits up to ``timeout`` seconds for a creator that is still initialising it. A channel
        owned by another user, or writable by group or others, could be corrupted by someone else
        and is refused with :class:`ChannelPermissionError` unless ``allow_foreign=True``. Raises
        :class:`ChannelNotFoundError`, :class:`ChannelPermissionError`,
        :class:`IncompatibleChannelError` (not a channel, not initialised, other layout version)
        or :class:`CorruptChannelError` (the header describes an impossible channel). With
        ``schema``, also :class:`IncompatibleChannelError` unless the channel's payload schema is
        compatible with it (shmchan.schema.check_compatible).
        """
        where, is_file = _target(name, path)
        tns = _timeout_ns(timeout)
        out = ffi.new("shmchan_channel **")
        diag = ffi.new("struct shmchan_diag *")
        flags = lib.SHMCHAN_OPEN_ALLOW_FOREIGN if allow_foreign else 0
        if is_file:
            rc = lib.shmchan_open_file_ex(os.fsencode(where), tns, flags, out, diag)
        else:
            rc = lib.shmchan_open_ex(where.encode(), tns, flags, out, diag)
        if rc:
            raise_for(rc, f"cannot open channel {where!r}", diag_text(diag), where)
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

    # ---- ends ----

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
        """Attach to a sealed channel served at the Unix socket ``path`` (see :meth:`serve`)."""
        p = os.fsencode(path)
        out = ffi.new("shmchan_channel **")
        diag = ffi.new("struct shmchan_diag *")
        flags = lib.SHMCHAN_OPEN_ALLOW_FOREIGN if allow_foreign else 0
        rc = lib.shmchan_connect(p, _timeout_ns(timeout), flags, out, diag)
        if rc:
            raise_for(rc, f"cannot connect to a sealed channel at {os.fsdecode(p)!r}", diag_text(diag),
                      os.fsdecode(p))
        return cls(out[0], None, None, creator=False, persist=True)

    @classmethod
    def from_fd(cls, fd: int, *, timeout: float | None = 2.0, allow_foreign: bool = False) -> Channel:
        """Attach to a sealed channel from a file descriptor its creator sent (for example with
        ``socket.recv_fds``). The descriptor is re-opened: the caller still owns and closes ``fd``.
        An fd that is not sealed against shrinking and growing raises :class:`ChannelPermissionError`."""
        out = ffi.new("shmchan_channel **")
        diag = ffi.new("struct shmchan_diag *")
        flags = lib.SHMCHAN_OPEN_ALLOW_FOREIGN if allow_foreign else 0
        rc = lib.shmchan_open_fd(fd, _timeout_ns(timeout), flags, out, diag)
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
        return int(lib.shmchan_channel_fd(self._ptr()))

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

    def writer(self, *, spin: float | None = None) -> Writer:
        """Attach this process as the channel's one writer.

        ``spin`` is how long (seconds) a blocked reserve polls before it sleeps (default 100 µs;
        ``float('inf')`` polls for the whole timeout). Raises :class:`ChannelBusyError` if a writer
        is attached anywhere.
        """
        ptr = self._ptr()
        if self._writer is not None:
            raise E.ChannelBusyError(f"{self!r} already has a writer on this handle")
        out = ffi.new("shmchan_writer **")
        rc = lib.shmchan_writer_attach(ptr, out)
        if rc:
            raise_for(rc, f"cannot attach a writer to {self._where()!r}",
                      "another writer is attached" if rc == -errno.EBUSY else self._diag(rc))
        w = Writer(self, out[0], _spin_ns(spin))
        self._writer = w
        return w

    def reader(self, *, spin: float | None = None) -> Reader:
        """Attach this process as the channel's one reader; it starts at the oldest unreleased
        message. ``spin`` as for :meth:`writer`. Raises :class:`ChannelBusyError` if a reader is
        attached anywhere."""
        ptr = self._ptr()
        if self._reader is not None:
            raise E.ChannelBusyError(f"{self!r} already has a reader on this handle")
        out = ffi.new("shmchan_reader **")
        rc = lib.shmchan_reader_attach(ptr, out)
        if rc:
            raise_for(rc, f"cannot attach a reader to {self._where()!r}",
                      "another reader is attached" if rc == -errno.EBUSY else self._diag(rc))
        r = Reader(self, out[0], _spin_ns(spin))
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
        """The descriptor decoded as a ChannelInfo (None when the channel has no descriptor)."""
        return _schema.channel_info(self)

    @property
    def is_creator(self) -> bool:
        """Whether this handle created the channel."""
        return bool(self._info["is_creator"])

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def stats(self) -> ChannelStats:
        """Counters and positions, as seen now."""
        st = ffi.new("struct shmchan_stats *")
        lib.shmchan_stats(self._ptr(), st)
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
        ptr = self._ptr()
        buf = ffi.new("char[]", self.slot_size)
        lenp = ffi.new("uint64_t *")
        firstp = ffi.new("uint64_t *")
        endp = ffi.new("uint64_t *")
        for _ in range(10):
            rc = lib.shmchan_inspect(ptr, pos, buf, self.slot_size, lenp, firstp, endp)
            if rc == 0:
                return ffi.buffer(buf, lenp[0])[:], int(firstp[0]), int(endp[0])
            if rc == -errno.ENOENT:
                return None, int(firstp[0]), int(endp[0])
            if rc != -errno.ESTALE:
                raise_for(rc, f"cannot inspect {self._where()!r}", self._diag(rc))
        return None, int(firstp[0]), int(endp[0])

    def flush(self) -> None:
        """Write the whole segment back to its file now (``msync(MS_SYNC)``); for file-backed
        channels, a no-op in effect for shared memory."""
        rc = lib.shmchan_flush(self._ptr())
        if rc:
            raise_for(rc, f"cannot flush {self._where()!r}")

    # ---- lifetime ----

    def close(self) -> None:
        """Detach this handle's writer and reader, unmap and close; idempotent.

        The creator also removes the name unless the channel persists. Raises ``BufferError``
        (and changes nothing) while memoryviews or arrays of its slots are alive.
        """
        if self._closed:
            return
        live = sum(b.exports for d in (self._wbufs, self._rbufs) for b in d.values())
        if live:
            raise BufferError(
                f"cannot close {self!r}: {live} view(s) of its slots are still alive (memoryviews or "
                "numpy arrays made from .buffer/.ndarray); delete them, or copy what you need, first"
            )
        for server in self._servers:
            server.close()
        self._closed = True  # no new asyncio wait parks from here on
        self._park.drain(self._map.ptr)
        for d in (self._wbufs, self._rbufs):
            for b in d.values():
                b.invalidate()
        if self._writer is not None:
            self._writer._detach()
        if self._reader is not None:
            self._reader._detach()
        self._closed = True
        self._finalizer.detach()
        if self._creator and not self._persist:
            lib.shmchan_channel_unlink(self._map.ptr)
        self._map.close()

    def unlink(self) -> None:
        """Remove the channel's name (or file) now. Open handles keep working until closed;
        new :meth:`open` calls fail."""
        rc = lib.shmchan_channel_unlink(self._ptr())
        if rc:
            raise_for(rc, f"cannot unlink {self._where()!r}", filename=self._where())
        self._persist = True  # nothing left to remove at close

    def __enter__(self) -> Channel:
        return self

    def __exit__(self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self.capacity}x{self.slot_size}B"
        where = f"path={self._path!r}" if self._path else repr(self._name) if self._name else "(sealed)"
        return f"<shmchan.Channel {where} {state}>"

    # ---- internals shared with Writer and Reader ----

    def _where(self) -> str:
        return self._path or self._name or "(sealed)"

    def _ptr(self) -> Any:
        if self._closed:
            raise E.ChannelClosedError(f"channel {self._where()!r} is closed")
        return self._map.ptr

    def _diag(self, rc: int) -> str:
        if rc == -lib.SHMCHAN_ECORRUPT:
            return str(ffi.string(lib.shmchan_channel_diag(self._map.ptr)).decode(errors="replace"))
        return ""

    def _slot_buffer(self, slot: int, readonly: bool) -> SlotBuffer:
        bufs = self._rbufs if readonly else self._wbufs
        buf = bufs.get(slot)
        if buf is None:
            addr = int(ffi.cast("uintptr_t", lib.shmchan_slot_address(self._map.ptr, slot)))
            buf = bufs[slot] = SlotBuffer(self._map, addr, self.slot_size, readonly)
        return buf


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


def _ndarray(view: memoryview, shape: Shape | None, dtype: DtypeLike, offset: int) -> npt.NDArray[Any]:
    dt = np.dtype(dtype)
    n = len(view)
    if offset < 0 or offset > n:
        raise ValueError(f"offset {offset} outside a message of {n} bytes")
    if shape is None:
        shape = ((n - offset) // dt.itemsize,)
    elif isinstance(shape, int):
        shape = (shape,)
    need = dt.itemsize * math.prod(shape)
    if offset + need > n:
        raise ValueError(f"an array of shape {shape} and dtype {dt} needs {need} bytes at offset {offset}; "
                         f"the message has {n}")
    return np.ndarray(shape, dt, buffer=view, offset=offset)


class Slot:
    """A reserved slot: fill it in place, then :meth:`commit` (or :meth:`abort`).

    As a context manager it commits on normal exit and aborts when the block raises, so readers
    never see a half-written message.
    """

    __slots__ = ("_buf", "_index", "_nbytes", "_open", "_writer")

    def __init__(self, writer: Writer, index: int, nbytes: int, buf: SlotBuffer) -> None:
        self._writer = writer
        self._index = index
        self._nbytes = nbytes
        self._buf = buf
        self._open = True

    @property
    def nbytes(self) -> int:
        """Length of the message being written."""
        return self._nbytes

    @property
    def index(self) -> int:
        """Slot number in the ring."""
        return self._index

    @property
    def buffer(self) -> memoryview:
        """A writable memoryview of exactly ``nbytes`` bytes of the slot."""
        if not self._open:
            raise E.MessageReleasedError("this slot was already committed or aborted")
        view: memoryview = self._buf.view(self._nbytes)
        return view

    def ndarray(self, shape: Shape | None = None, dtype: DtypeLike = np.uint8, *, offset: int = 0) -> npt.NDArray[Any]:
        """A writable numpy array over the slot (``shape`` None: 1-D over the whole message)."""
        return _ndarray(self.buffer, shape, dtype, offset)

    def commit(self, nbytes: int | None = None) -> None:
        """Publish the message (optionally shortened to ``nbytes``). Do not write through this
        slot's views afterwards: the reader may be reading them."""
        if not self._open:
            raise E.MessageReleasedError("this slot was already committed or aborted")
        w = self._writer
        n = self._nbytes if nbytes is None else nbytes
        if not 0 <= n <= self._nbytes:
            raise ValueError(f"commit of {n} bytes in a reservation of {self._nbytes}")
        rc = lib.shmchan_commit(w._ptr(), n)
        self._open = False
        w._slot = None
        if rc:
            raise_for(rc, "commit failed")
        w._head += 1

    def abort(self) -> None:
        """Drop the reservation; readers never see it."""
        if not self._open:
            raise E.MessageReleasedError("this slot was already committed or aborted")
        w = self._writer
        self._open = False
        w._slot = None
        rc = lib.shmchan_abort(w._ptr())
        if rc:
            raise_for(rc, "abort failed")

    def __enter__(self) -> Slot:
        return self

    def __exit__(self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None) -> None:
        if self._open and not self._writer.closed:
            if t is None:
                self.commit()
            else:
                self.abort()


class Writer:
    """The channel's one writer. Get it from :meth:`Channel.writer`."""

    __slots__ = ("_ch", "_dp", "_head", "_mask", "_slot", "_slot_size", "_sp", "_w")

    def __init__(self, ch: Channel, ptr: Any, spin_ns: int | None) -> None:
        self._ch = ch
        self._w: Any = ptr
        self._dp = ffi.new("void **")
        self._sp = ffi.new("uint32_t *")
        self._slot: Slot | None = None
        self._slot_size = ch.slot_size
        self._mask = ch.capacity - 1
        self._head: int = ch.stats().head  # exact: we hold the writer lock; +1 per commit
        if spin_ns is not None:
            lib.shmchan_writer_set_spin(ptr, spin_ns)

    @property
    def closed(self) -> bool:
        """Whether this writer (or its channel) was closed."""
        return self._w is None or self._ch._map.ptr is None

    @property
    def position(self) -> int:
        """The stream position the next committed message gets (messages committed so far on
        this channel, by every writer it had). Known to the writer: no system call."""
        self._ptr()
        return self._head

    def reserve(self, nbytes: int | None = None, timeout: float | None = None) -> Slot:
        """Reserve the next slot for a message of exactly ``nbytes`` (default: the slot size).

        Waits while the ring is full: ``timeout=None`` forever, ``0`` not at all
        (:class:`ChannelFullError`), else up to that many seconds (:class:`ChannelTimeoutError`).
        Raises :class:`PeerDeadError` if the reader died while the ring is full.
        """
        w = self._ptr()
        if self._slot is not None:
            raise E.ShmchanError("a slot is already reserved: commit or abort it first")
        n = self._slot_size if nbytes is None else nbytes
        if not 0 <= n <= self._slot_size:
            raise ValueError(f"a message of {n} bytes does not fit a slot of {self._slot_size}")
        self._check_next_slot()
        tns = _timeout_ns(timeout)
        dp, sp = self._dp, self._sp
        rc = lib.shmchan_reserve(w, n, _first(tns), dp, sp)
        if rc:
            rc = _keep_waiting(lambda t: lib.shmchan_reserve(w, n, t, dp, sp),
                               lambda: lib.shmchan_writer_continue_wait(w), rc, tns)
            if rc:
                self._fail(rc)
        index = sp[0]
        slot = self._slot = Slot(self, index, n, self._ch._slot_buffer(index, False))
        return slot

    def send(self, data: Any, timeout: float | None = None) -> None:
        """Copy ``data`` (bytes or any contiguous buffer) into the next slot and commit it.
        Waits like :meth:`reserve`."""
        w = self._ptr()
        if self._slot is not None:
            raise E.ShmchanError("a slot is reserved: commit or abort it before send()")
        if type(data) is not bytes:
            data = ffi.from_buffer(data)
        n = len(data)
        tns = _timeout_ns(timeout)
        self._check_next_slot()
        rc = lib.shmchan_send(w, data, n, _first(tns))
        if rc:
            if rc == _EMSGSIZE:
                raise ValueError(f"a message of {n} bytes does not fit a slot of {self._slot_size}")
            rc = _keep_waiting(lambda t: lib.shmchan_send(w, data, n, t),
                               lambda: lib.shmchan_writer_continue_wait(w), rc, tns)
            if rc:
                self._fail(rc)
        self._head += 1

    def reserve_frame(self, width: int, height: int, pixel_format: _schema.PixelFormat | int | str = "RGB24",
                      **fields: Any) -> _schema.FrameSlot:
        """Reserve a slot for a Frame message: its ``pixels`` array is the slot's pixel area, to fill
        in place. ``pixel_format`` takes shmchan's or FFmpeg's names (``"yuv420p"``); ``fields``:
        ``seq``, ``timestamp_ns``, ``pts``, ``time_base``, ``duration``, ``keyframe``, the colour
        fields, ``sample_aspect_ratio``, ``rotation``, ``field_order``, ``row_align``, ``timeout``
        (see shmchan.schema.reserve_frame)."""
        return _schema.reserve_frame(self, width, height, pixel_format, channel=self._ch, **fields)

    def send_frame(self, pixels: Any, pixel_format: _schema.PixelFormat | int | str = "RGB24",
                   **fields: Any) -> None:
        """Copy an image (``(height, width[, channels])``, or a planar layout) into a Frame message
        (see shmchan.schema.send_frame)."""
        _schema.send_frame(self, pixels, pixel_format, channel=self._ch, **fields)

    def reserve_tensor(self, shape: Shape, dtype: DtypeLike, *, seq: int | None = None,
                       timestamp_ns: int | None = None, timeout: float | None = None) -> _schema.TensorSlot:
        """Reserve a slot for a Tensor message: fill its ``array`` in place, then commit."""
        return _schema.reserve_tensor(self, shape, dtype, seq=seq, timestamp_ns=timestamp_ns, timeout=timeout,
                                      channel=self._ch)

    def send_tensor(self, array: Any, *, seq: int | None = None, timestamp_ns: int | None = None,
                    timeout: float | None = None) -> None:
        """Write ``array`` as a Tensor message (one copy, straight into the slot)."""
        _schema.send_tensor(self, array, seq=seq, timestamp_ns=timestamp_ns, timeout=timeout, channel=self._ch)

    def close(self) -> None:
        """Detach: an open reservation is aborted, and a reader that drains the ring then gets
        :class:`ChannelEndedError` (iteration stops). Idempotent."""
        if self._w is not None:
            self._detach()

    def _detach(self) -> None:
        if self._slot is not None:
            self._slot._open = False
            self._slot = None
        if self._ch._map.ptr is not None:  # else the C writer already died with the mapping
            lib.shmchan_writer_close(self._w)
        self._w = None
        self._ch._writer = None

    def _ptr(self) -> Any:
        if self._w is None or self._ch._map.ptr is None:
            raise E.ChannelClosedError("the writer is closed")
        return self._w

    def _check_next_slot(self) -> None:
        """Refuse to reuse a slot while views of the message last written in it are alive (the
        writer would change bytes someone still looks at)."""
        old = self._ch._wbufs.get(self._head & self._mask)
        if old is not None and old.exports:
            raise BufferError(
                f"slot {self._head & self._mask} is next, but views of the message written in it "
                f"{self._ch.capacity} messages ago are still alive; delete them first"
            )

    def _fail(self, rc: int) -> None:
        where = self._ch._where()
        if rc == _EAGAIN:
            raise E.ChannelFullError(errno.EAGAIN, f"channel {where!r} is full")
        if rc == _ETIMEDOUT:
            raise E.ChannelTimeoutError(f"channel {where!r} stayed full for the whole timeout")
        if rc == _EPEERDEAD:
            pid = self._ch.stats().reader_pid
            raise E.PeerDeadError(f"the reader of channel {where!r} (pid {pid}) died while the ring is full")
        raise_for(rc, f"cannot write to {where!r}", self._ch._diag(rc))

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<shmchan.Writer of {self._ch!r}{' closed' if self.closed else ''}>"


class Message:
    """A received message. Its views point into the slot; release it (``with`` does) when done.

    A view kept after release stays valid and unchanged: the slot is only handed back to the
    writer when the last view of it is gone. A message that is garbage-collected unreleased is
    released then.
    """

    __slots__ = ("_len", "_lost", "_pos", "_reader", "_released", "_slot")

    def __init__(self, reader: Reader, pos: int, length: int, slot: int, lost: int = 0) -> None:
        self._reader = reader
        self._pos = pos
        self._len = length
        self._slot = slot
        self._lost = lost
        self._released = False

    @property
    def nbytes(self) -> int:
        """Length of the message in bytes."""
        return self._len

    @property
    def seq(self) -> int:
        """Position of the message in the stream (0, 1, 2, ... since the channel was created)."""
        return self._pos

    @property
    def released(self) -> bool:
        """Whether :meth:`release` was called."""
        return self._released

    @property
    def lost(self) -> int:
        """Broadcast channels with the overwrite policy: how many messages this reader lost just
        before this one because the writer lapped it (0 otherwise; saturates at 2**32 - 1)."""
        return self._lost

    @property
    def intact(self) -> bool:
        """Whether the slot still holds this message. Always true, except on a broadcast channel
        with the overwrite policy, where the writer may lap the reader and rewrite the slot while
        the message is held: then what was read from its views may be torn. Check it *after*
        reading (:meth:`release` and leaving a ``with`` block check it too)."""
        if self._released:
            raise E.MessageReleasedError("the message was released")
        return self._reader._check(self._pos) == 0

    def check(self) -> None:
        """Raise :class:`LappedError` if the writer has rewritten this message's slot (see
        :attr:`intact`)."""
        if not self.intact:
            raise E.LappedError(f"message {self._pos} was overwritten while it was held: what was read "
                                "from it may be torn")

    @property
    def buffer(self) -> memoryview:
        """A read-only memoryview of the message, in place."""
        if self._released:
            raise E.MessageReleasedError("the message was released")
        view: memoryview = self._reader._buffer(self._slot).view(self._len)
        return view

    def ndarray(self, shape: Shape | None = None, dtype: DtypeLike = np.uint8, *, offset: int = 0) -> npt.NDArray[Any]:
        """A read-only numpy array over the message (``shape`` None: 1-D over all of it)."""
        return _ndarray(self.buffer, shape, dtype, offset)

    def tobytes(self) -> bytes:
        """A copy of the message."""
        return bytes(self.buffer)

    def frame(self) -> _schema.FrameView:
        """Decode a Frame message in place: header fields and read-only pixel arrays of the slot."""
        return _schema.decode_frame(self.buffer)

    def tensor(self) -> npt.NDArray[Any]:
        """Decode a Tensor message in place: a read-only array of the slot with its shape and dtype."""
        return _schema.decode_tensor(self.buffer).array

    def release(self) -> None:
        """Give the slot back to the writer (once no view of it is alive). Idempotent.

        On a broadcast channel with the overwrite policy, raises :class:`LappedError` (after
        releasing) if the writer rewrote the slot while the message was held."""
        if not self._released:
            self._released = True
            self._reader._release(self._pos, self._slot)

    def __enter__(self) -> Message:
        return self

    def __exit__(self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None) -> None:
        if t is None:
            self.release()
        else:  # do not hide the exception that is already on its way
            with contextlib.suppress(E.LappedError):
                self.release()

    def __del__(self) -> None:
        if not self._released:
            with contextlib.suppress(Exception):
                self.release()

    def __len__(self) -> int:
        return self._len

    def __repr__(self) -> str:
        lost = f" lost={self._lost}" if self._lost else ""
        return f"<shmchan.Message seq={self._pos} nbytes={self._len}{lost}{' released' if self._released else ''}>"


class Reader:
    """The channel's one reader. Get it from :meth:`Channel.reader`.

    Iterating yields messages until the writer closes and the ring is drained; each message is
    released when the loop moves on.
    """

    __slots__ = ("_batch", "_ch", "_lenp", "_m", "_pinned", "_r")

    def __init__(self, ch: Channel, ptr: Any, spin_ns: int | None) -> None:
        self._ch = ch
        self._r: Any = ptr
        self._m = ffi.new("struct shmchan_msg *")
        self._lenp = ffi.new("uint64_t *")
        self._batch: Any = None
        self._pinned: list[tuple[int, SlotBuffer]] = []
        if spin_ns is not None:
            lib.shmchan_reader_set_spin(ptr, spin_ns)

    @property
    def closed(self) -> bool:
        """Whether this reader (or its channel) was closed."""
        return self._r is None or self._ch._map.ptr is None

    def recv(self, timeout: float | None = None) -> Message:
        """Take the next message, in place. Waits while the ring is empty: ``timeout=None``
        forever, ``0`` not at all (:class:`ChannelEmptyError`), else up to that many seconds
        (:class:`ChannelTimeoutError`). Raises :class:`ChannelEndedError` when the writer closed
        and everything was received, :class:`PeerDeadError` when the writer died."""
        r = self._ptr()
        if self._pinned:
            self._sweep()
        m = self._m
        tns = _timeout_ns(timeout)
        rc = lib.shmchan_peek(r, _first(tns), m)
        if rc:
            self._wait(lambda t: lib.shmchan_peek(r, t, m), rc, tns)
        return Message(self, m.pos, m.len, m.slot, m.lost)

    def recv_bytes(self, timeout: float | None = None) -> bytes:
        """Take the next message as a ``bytes`` copy (and release it). Waits like :meth:`recv`."""
        r = self._ptr()
        if self._pinned:
            self._sweep()
        m = self._m
        tns = _timeout_ns(timeout)
        while True:
            rc = lib.shmchan_peek(r, _first(tns), m)
            if rc:
                self._wait(lambda t: lib.shmchan_peek(r, t, m), rc, tns)
            data: bytes = ffi.buffer(m.data, m.len)[:]
            rc = lib.shmchan_release(r, m.pos)
            if rc != _ESTALE:  # overwritten during the copy (overwrite policy): counted lost, take the next
                break
        if rc:  # e.g. the object was truncated under the copy: data may hold zeros
            raise_for(rc, f"cannot read from {self._ch._where()!r}", self._ch._diag(rc))
        return data

    def recv_into(self, buffer: Any, timeout: float | None = None) -> int:
        """Copy the next message into a writable ``buffer`` (and release it); return its length.
        A message larger than the buffer raises ``ValueError`` and stays in the channel."""
        r = self._ptr()
        if self._pinned:
            self._sweep()
        dst = ffi.from_buffer(buffer, require_writable=True)
        cap = len(dst)
        lenp = self._lenp
        tns = _timeout_ns(timeout)
        rc = lib.shmchan_recv(r, dst, cap, lenp, _first(tns))
        if rc:
            if rc == _EMSGSIZE:
                raise ValueError(f"the next message has {lenp[0]} bytes; the buffer holds {cap}")
            self._wait(lambda t: lib.shmchan_recv(r, dst, cap, lenp, t), rc, tns)
        return int(lenp[0])

    def recv_batch(self, max_messages: int = 64, timeout: float | None = None) -> list[Message]:
        """Take every available message, up to ``max_messages``; waits (like :meth:`recv`) only
        for the first. One call into C however many messages come back."""
        r = self._ptr()
        if not 1 <= max_messages <= self._ch.capacity:
            raise ValueError(f"max_messages must be between 1 and the capacity ({self._ch.capacity})")
        if self._pinned:
            self._sweep()
        if self._batch is None or len(self._batch) < max_messages:
            self._batch = ffi.new("struct shmchan_msg[]", max(max_messages, 16))
        b = self._batch
        tns = _timeout_ns(timeout)
        n = lib.shmchan_peek_batch(r, b, max_messages, _first(tns))
        if n < 0:
            n = self._wait(lambda t: lib.shmchan_peek_batch(r, b, max_messages, t), n, tns)
        return [Message(self, b[i].pos, b[i].len, b[i].slot, b[i].lost) for i in range(n)]

    async def recv_async(self, timeout: float | None = None) -> Message:
        """:meth:`recv` for asyncio: waits without blocking the event loop (and without polling).

        While the ring is empty, the wait sleeps in the kernel on a shared helper thread, woken by
        the writer's commit; the message is then taken on the event loop's thread, so the reader
        handle is never used by two threads. Cancelling the task cancels the wait and takes
        nothing. Raises like :meth:`recv`."""
        self._ptr()
        try:
            return self.recv(timeout=0)
        except E.ChannelEmptyError:
            if timeout == 0:
                raise
        tns = _timeout_ns(timeout)
        start = time.monotonic_ns()
        while True:
            if tns >= 0:
                left = tns - (time.monotonic_ns() - start)
                if left <= 0:
                    raise E.ChannelTimeoutError(f"no message on channel {self._ch._where()!r} for the whole timeout")
            else:
                left = _PARK_NS
            pos = lib.shmchan_reader_position(self._ptr())
            slice_ns = min(left, _PARK_NS)
            await _park(self._ch, _wait_head(pos, slice_ns))
            try:
                return self.recv(timeout=0)
            except E.ChannelEmptyError:
                continue

    def __aiter__(self) -> AsyncIterator[Message]:
        """``async for msg in reader``: like iterating, with :meth:`recv_async`; each message is
        released when the loop moves on, and the loop ends when the writer closes."""
        return self._aiter()

    async def _aiter(self) -> AsyncIterator[Message]:
        while True:
            try:
                msg = await self.recv_async()
            except E.ChannelEndedError:
                return
            try:
                yield msg
            finally:
                msg.release()

    def __iter__(self) -> Iterator[Message]:
        while True:
            try:
                msg = self.recv()
            except E.ChannelEndedError:
                return
            try:
                yield msg
            finally:
                msg.release()

    def close(self) -> None:
        """Detach. Messages received but not released are delivered again to the next reader.
        Idempotent."""
        if self._r is not None:
            self._detach()

    @property
    def outstanding(self) -> int:
        """Messages received and not yet handed back to the writer (including pinned ones)."""
        return int(lib.shmchan_reader_outstanding(self._ptr()))

    @property
    def position(self) -> int:
        """The stream position of the next message :meth:`recv` will take (before any skip over
        messages the writer has already overwritten)."""
        return int(lib.shmchan_reader_position(self._ptr()))

    @property
    def lost(self) -> int:
        """Messages this reader lost since it attached because the writer lapped it (broadcast
        channels with the overwrite policy; always 0 otherwise)."""
        return int(lib.shmchan_reader_lost(self._ptr()))

    # ---- internals ----

    def _ptr(self) -> Any:
        if self._r is None or self._ch._map.ptr is None:
            raise E.ChannelClosedError("the reader is closed")
        return self._r

    def _detach(self) -> None:
        if self._ch._map.ptr is not None:  # else the C reader already died with the mapping
            lib.shmchan_reader_close(self._r)
        self._r = None
        self._pinned = []
        self._ch._reader = None

    def _buffer(self, slot: int) -> SlotBuffer:
        self._ptr()
        return self._ch._slot_buffer(slot, True)

    def _check(self, pos: int) -> int:
        return int(lib.shmchan_check(self._ptr(), pos))

    def _release(self, pos: int, slot: int) -> None:
        if self._r is None or self._ch._map.ptr is None:
            return
        buf = self._ch._rbufs.get(slot)
        if buf is not None and buf.exports:
            rc = lib.shmchan_check(self._r, pos)
            self._pinned.append((pos, buf))  # a view is alive: hand the slot back when it dies
        else:
            rc = lib.shmchan_release(self._r, pos)
        if rc == _ESTALE:
            raise E.LappedError(f"message {pos} of {self._ch._where()!r} was overwritten while it was held "
                                "(the writer lapped this reader): what was read from it may be torn")
        if rc:
            raise_for(rc, f"cannot release a message of {self._ch._where()!r}", self._ch._diag(rc))

    def _sweep(self) -> None:
        """Hand back pinned slots whose views have all died."""
        keep = []
        for pos, buf in self._pinned:
            if buf.exports:
                keep.append((pos, buf))
            else:
                lib.shmchan_release(self._r, pos)
        self._pinned = keep

    def _wait(self, call: Callable[[int], int], rc: int, tns: int) -> int:
        r = self._r

        def cont() -> None:
            lib.shmchan_reader_continue_wait(r)

        rc = _keep_waiting(call, cont, rc, tns)
        if rc == _EPINNED:
            self._sweep()
            rc = _keep_waiting(call, cont, call(_first(tns)), tns)
        if rc >= 0:
            return rc
        where = self._ch._where()
        if rc == _EAGAIN:
            raise E.ChannelEmptyError(errno.EAGAIN, f"channel {where!r} is empty")
        if rc == _ETIMEDOUT:
            raise E.ChannelTimeoutError(f"no message on channel {where!r} for the whole timeout")
        if rc == _EPINNED:
            raise BufferError(
                f"all {self._ch.capacity} slots of {where!r} hold messages this reader has not released, "
                "or whose views (memoryviews, numpy arrays) are still alive: release messages and delete "
                "views (or copy them) so the writer can go on"
            )
        if rc == _EPEERDEAD:
            pid = self._ch.stats().writer_pid
            raise E.PeerDeadError(f"the writer of channel {where!r} (pid {pid}) died; every message it "
                                  "committed was received")
        raise_for(rc, f"cannot read from {where!r}", self._ch._diag(rc))

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<shmchan.Reader of {self._ch!r}{' closed' if self.closed else ''}>"


class ChannelServer:
    """Hands a sealed channel's descriptor to every process that connects to a Unix socket.

    Made by :meth:`Channel.serve`. A context manager; :meth:`close` (also done by the channel's
    close) stops the thread and removes the socket file. Processes that already attached keep
    working.
    """

    def __init__(self, channel: Channel, path: str) -> None:
        self.path = path
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


def unlink(name: str) -> None:
    """Remove channel ``name`` from ``/dev/shm`` (processes that have it open keep working)."""
    check_name(name)
    rc = lib.shmchan_unlink(name.encode())
    if rc:
        raise_for(rc, f"cannot unlink channel {name!r}", filename=name)


def is_stale(name: str) -> bool:
    """Whether channel ``name`` is stale: no process holds it open any more (its creator and every
    peer are gone) and it has not changed for 100 ms. Raises :class:`ChannelNotFoundError` if
    there is no such channel."""
    check_name(name)
    rc = lib.shmchan_is_stale(name.encode())
    if rc < 0:
        raise_for(rc, f"cannot tell whether channel {name!r} is stale", filename=name)
    return bool(rc == 1)


def reclaim_stale(name: str) -> bool:
    """Remove channel ``name`` if it is stale and return True; return False (and touch nothing) if
    some process holds it. Raises :class:`ChannelNotFoundError` if there is no such channel."""
    check_name(name)
    rc = lib.shmchan_reclaim_stale(name.encode())
    if rc == -errno.EBUSY:
        return False
    if rc < 0:
        raise_for(rc, f"cannot reclaim channel {name!r}", filename=name)
    return True


def cleanup_stale(*, dry_run: bool = False) -> list[str]:
    """Remove every stale channel in ``/dev/shm`` (no process holds it open) and return their
    names; with ``dry_run`` only list them. A channel in use is never touched."""
    found = []
    for entry in sorted(os.listdir("/dev/shm")):
        if not entry.startswith("shmchan."):
            continue
        name = entry[len("shmchan.") :]
        try:
            check_name(name)
        except ValueError:
            continue
        if dry_run:
            if lib.shmchan_is_stale(name.encode()) == 1:
                found.append(name)
        elif lib.shmchan_reclaim_stale(name.encode()) == 0:
            found.append(name)
    return found
