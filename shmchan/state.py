"""State boards: one writer publishes the latest value, any number of readers read it, never torn.

The value is either a fixed numpy dtype (a scalar, a structured record, or a sub-array such as
``np.dtype((np.uint64, (512,)))``) or a FlatBuffers record of a schema, up to ``max_size`` bytes.
Every publish gets the next version (1, 2, 3, ...). The board keeps two slots: the writer fills
the one readers are not sent to, then publishes its version; a reader copies the newest value out
and checks, like a sequence lock, that the writer did not start rewriting that slot during the
copy (then it copies again). So a reader is held up only when the writer publishes twice during
one copy, and never sees a torn value. Readers take no lock and attach nothing: any number of
processes, in any language, read at once.
"""

from __future__ import annotations

import ast
import os
import time
from typing import Any

import numpy as np

from . import _core
from . import errors as E
from . import schema as _schema
from ._binding import lib
from ._handle import PARK_NS, park
from .channel import _KIND_CLASSES, Channel, DtypeLike, _target

__all__ = ["State", "StateWriter"]


def _descr_text(dt: np.dtype[Any]) -> str:
    """``repr((descr, shape))``: numpy's portable description of the element (as in .npy files)
    and the sub-array shape, ``()`` for a plain value."""
    base, shape = dt.subdtype if dt.subdtype is not None else (dt, ())
    return repr((np.lib.format.dtype_to_descr(base), tuple(shape)))


def _holds_objects(dt: np.dtype[Any]) -> bool:
    """Whether values of ``dt`` hold Python object references anywhere: itself, a record field or a
    sub-array element, at any depth. Such values can never be built from (or put into) shared bytes:
    a peer's bytes would become object pointers."""
    if dt.hasobject or dt.kind == "O":
        return True
    if dt.subdtype is not None and _holds_objects(dt.subdtype[0]):
        return True
    fields: Any = dt.fields or {}
    return any(_holds_objects(f[0]) for f in fields.values())


def _shareable(dt: np.dtype[Any], where: str) -> np.dtype[Any]:
    if _holds_objects(dt):
        raise E.ObjectDtypeError(f"{where}: dtype {dt} holds Python objects, which cannot live in shared memory")
    return dt


def _dtype_of_descr(text: str, where: str) -> np.dtype[Any]:
    """The dtype a peer wrote as ``repr((descr, shape))``: parsed as a literal, never evaluated."""
    try:
        descr, shape = ast.literal_eval(text)
        base = np.lib.format.descr_to_dtype(descr)
        dt = np.dtype((base, tuple(shape))) if shape else base
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError, OverflowError) as exc:
        raise E.IncompatibleChannelError(f"state board {where!r} with an unreadable numpy dtype {text[:200]!r}: "
                                         f"{exc}") from exc
    return _shareable(dt, f"state board {where!r}")


def _dtype_of_hint(dtype: np.dtype[Any], shape: tuple[int, ...] | None, where: str) -> np.dtype[Any]:
    """The dtype of a board described only by the tensor hints (element type and shape)."""
    if not shape:
        return dtype
    if any(d < 0 for d in shape):
        raise E.IncompatibleChannelError(f"state board {where!r} with a value of shape {shape}: a board's value "
                                         "has a fixed shape")
    try:
        return np.dtype((dtype, shape))
    except (ValueError, TypeError, OverflowError) as exc:
        raise E.IncompatibleChannelError(f"state board {where!r} with a value of {dtype} of shape {shape}: "
                                         f"{exc}") from exc


class State(Channel):
    """A state board. Make one with :meth:`create`, or :meth:`open` it; :meth:`read` the value,
    publish with ``state.writer().write(value)``."""

    __slots__ = ("_bbuf", "_dtype", "_payload")

    def __init__(self, ptr: Any, name: str | None, path: str | None, *, creator: bool, persist: bool) -> None:
        """Internal: use :meth:`create` or :meth:`open`."""
        super().__init__(ptr, name, path, creator=creator, persist=persist)
        self._bbuf: bytearray | None = None  # bytes boards: where read() copies to, made once
        self._dtype: np.dtype[Any] | None = None
        self._payload: _schema.PayloadSchema | None = None
        try:
            self._dtype = self._value_dtype()
        except BaseException:
            self.close()  # a refused board keeps nothing open
            raise

    def _value_dtype(self) -> np.dtype[Any] | None:
        """The value's dtype from the descriptor (None for FlatBuffers and raw boards), checked."""
        info = self.info
        if info is None:
            return None
        self._payload = info.payload
        where = self._where()
        if info.numpy_descr is not None:
            dt = _dtype_of_descr(info.numpy_descr, where)
        elif info.dtype is not None:
            dt = _dtype_of_hint(info.dtype, info.shape, where)
        else:
            return None
        if dt.itemsize != self.slot_size:
            raise E.CorruptChannelError(f"state board {where!r} of dtype {dt} ({dt.itemsize} bytes) "
                                        f"with values of {self.slot_size} bytes")
        return dt

    @classmethod
    def create(  # type: ignore[override]
        cls,
        name: str | None = None,
        *,
        dtype: DtypeLike | None = None,
        schema: _schema.SchemaSpec | None = None,
        max_size: int | None = None,
        path: str | os.PathLike[str] | None = None,
        mode: int = 0o600,
        persist: bool | None = None,
        metadata: dict[str, str] | None = None,
        reclaim_stale: bool = False,
    ) -> State:
        """Create a state board holding a value of numpy ``dtype``, or a FlatBuffers record of
        ``schema`` (``"frame"``, ``"tensor"``, a :class:`shmchan.schema.PayloadSchema`, ``.bfbs``
        bytes or path) of at most ``max_size`` bytes. Without either, values are raw bytes of at
        most ``max_size``. ``name``/``path``, ``mode``, ``persist``, ``metadata`` and
        ``reclaim_stale`` are those of :meth:`shmchan.Channel.create`.
        """
        where, is_file = _target(name, path)
        descr: str | None = None
        hint: DtypeLike | None = None
        shape: tuple[int, ...] | None = None
        if dtype is not None:
            if schema is not None:
                raise ValueError("give dtype or schema, not both")
            dt = np.dtype(dtype)
            if dt.itemsize == 0:
                raise ValueError(f"dtype {dt} has no size")
            _shareable(dt, "State.create")
            if max_size is not None and max_size != dt.itemsize:
                raise ValueError(f"max_size {max_size} differs from the dtype's size {dt.itemsize}")
            size = dt.itemsize
            descr = _descr_text(dt)
            base, sub = (dt.subdtype if dt.subdtype is not None else (dt, ()))
            try:  # a hint C and Rust peers read without numpy: element type and shape
                _schema.make_descriptor(None, slot_size=1, capacity=2, slot_align=64, dtype=base)
                hint, shape = base, tuple(sub)
            except TypeError:
                pass  # a structured value: numpy_descr only
        else:
            if max_size is None:
                raise ValueError("give dtype, or max_size (with or without schema)")
            if isinstance(max_size, bool) or not isinstance(max_size, int) or not 1 <= max_size <= 1 << 40:
                raise ValueError(f"max_size must be an int from 1 to 2**40, got {max_size!r}")
            size = max_size
        st: State = cls._create(where, is_file, size, 2, 64, msync="none", mode=mode, persist=persist,
                                descriptor=None, schema=schema, dtype=hint, shape=shape,
                                metadata=metadata if metadata is not None else {}, reclaim_stale=reclaim_stale,
                                kind=lib.SHMCHAN_KIND_STATE, numpy_descr=descr)
        return st

    @classmethod
    def open(cls, name: str | None = None, *, path: str | os.PathLike[str] | None = None,
             timeout: float | None = 2.0, schema: _schema.SchemaSpec | None = None,
             allow_foreign: bool = False) -> State:
        """Open an existing state board (see :meth:`shmchan.Channel.open`); a channel of another
        kind raises :class:`IncompatibleChannelError`."""
        st = super().open(name, path=path, timeout=timeout, schema=schema, allow_foreign=allow_foreign)
        assert isinstance(st, State)
        return st

    # ---- reading ----

    @property
    def dtype(self) -> np.dtype[Any] | None:
        """The value's numpy dtype (None for FlatBuffers or raw-bytes boards)."""
        return self._dtype

    @property
    def max_size(self) -> int:
        """The largest value in bytes (the dtype's size for numpy boards)."""
        return self.slot_size

    @property
    def version(self) -> int:
        """The version of the newest value (0: nothing published yet)."""
        with self._use() as ptr:
            return int(lib.shmchan_state_version(ptr))

    def read(self) -> tuple[Any, int]:
        """The newest value and its version, as a private copy: ``(value, version)``.

        The value is a numpy array of the board's dtype (0-d arrays become numpy scalars or
        records), or ``bytes`` for FlatBuffers and raw boards. ``(None, 0)`` before the first
        publish. One call into C; the copy is retried if the writer rewrote the slot under it.
        """
        dt = self._dtype
        if dt is not None:
            out: Any = np.empty((), dtype=dt)
            n, version = self._m.state_read(out)
            if version == 0:
                return None, 0
            if n != dt.itemsize:
                raise E.CorruptChannelError(f"state board {self._where()!r} holds a value of {n} bytes; "
                                            f"its dtype {dt} has {dt.itemsize}")
            return (out[()] if out.ndim == 0 else out), version
        if self._bbuf is None:
            self._bbuf = bytearray(self.slot_size)
        n, version = self._m.state_read(self._bbuf)
        if version == 0:
            return None, 0
        return bytes(memoryview(self._bbuf)[:n]), version

    def wait_for_change(self, version: int, timeout: float | None = None) -> int:
        """Sleep until the board's version differs from ``version``; return the new version.

        Sleeps in the kernel (no spinning), woken by the writer's publish. Raises
        :class:`ChannelTimeoutError` after ``timeout`` seconds (``None``: never),
        :class:`PeerDeadError` if the writer died while attached (a writer that closed cleanly,
        or none yet, is waited for: a new one may attach), :class:`ChannelClosedError` if the board
        is closed (also from another thread, during the wait)."""
        now: int = self._m.state_wait(version, timeout)
        return now

    async def wait_for_change_async(self, version: int, timeout: float | None = None) -> int:
        """:meth:`wait_for_change` for asyncio, without blocking the event loop: the sleep happens
        on a shared helper thread (in the kernel, not polling); cancelling the task cancels it."""
        tns = _core.seconds_to_ns(timeout)
        start = time.monotonic_ns()
        while True:
            try:
                return int(self._m.state_wait(version, 0))  # also the writer's liveness; no sleep
            except E.ChannelTimeoutError:
                pass
            left = PARK_NS
            if tns >= 0:
                left = tns - (time.monotonic_ns() - start)
                if left <= 0:
                    raise E.ChannelTimeoutError(f"state board {self._where()!r} did not change for the whole "
                                                "timeout")
            await park(self._m, version, min(left, PARK_NS))  # head is the version

    # ---- writing ----

    def writer(self, *, spin: float | None = None) -> StateWriter:
        """Attach this process as the board's one writer (:class:`ChannelBusyError` if another is).
        Publishing never waits, so ``spin`` has no effect; it is accepted for symmetry."""
        w: StateWriter = self._m.writer(cls=StateWriter, spin=spin, channel=self)
        self._writer = w
        return w

    def reader(self, *, spin: float | None = None) -> Any:
        """State boards have no reader to attach: call :meth:`read` on the board."""
        raise TypeError("a state board is read with State.read(); it has no reader to attach")

    def __repr__(self) -> str:
        dt = getattr(self, "_dtype", None)  # also called while __init__ runs
        what = str(dt) if dt is not None else f"<= {self.slot_size} B"
        where = f"path={self._path!r}" if self._path else repr(self._name)
        return f"<shmchan.State {where} {'closed' if self.closed else what}>"


class StateWriter(_core.Writer):
    """The board's one writer. Get it from :meth:`State.writer`."""

    __slots__ = ()

    def write(self, value: Any) -> int:
        """Publish ``value`` and return its version. For a dtype board, anything numpy converts
        to the dtype (a scalar, a tuple for a record, an array of the sub-array's shape); else a
        bytes-like FlatBuffer (or raw bytes) of at most ``max_size`` bytes. One copy, straight into
        the slot readers are not being sent to; never waits."""
        st = self.channel
        assert isinstance(st, State)
        dt = st._dtype
        if dt is not None:
            if dt.subdtype is not None:
                base, shape = dt.subdtype
                arr = np.ascontiguousarray(value, dtype=base)
                if arr.shape != shape:
                    raise ValueError(f"a value of shape {arr.shape}; the board holds {shape} of {base}")
            else:
                arr = np.asarray(value, dtype=dt)  # 0-d: always contiguous
                if arr.shape != ():
                    raise ValueError(f"a value of shape {arr.shape}; the board holds one {dt}")
            data: Any = arr
        else:
            data = value
            mv = memoryview(value).cast("B")
            if len(mv) > st.slot_size:
                raise ValueError(f"a value of {len(mv)} bytes; the board holds at most {st.slot_size}")
            p = st._payload
            if p is not None and p.file_identifier and bytes(mv[4:8]) != p.file_identifier.encode():
                raise ValueError(f"the value is not a {p.name} FlatBuffer (file identifier "
                                 f"{bytes(mv[4:8])!r}, expected {p.file_identifier!r})")
        self.send(data)
        return self.position


_KIND_CLASSES[lib.SHMCHAN_KIND_STATE] = State
