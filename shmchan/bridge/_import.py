"""The importer: subscribes to a Zenoh key and writes every message into a local channel."""

from __future__ import annotations

import ast
import contextlib
import threading
import time
from typing import Any

import numpy as np

from .. import Broadcast, Channel, State, Writer
from .. import errors as E
from .. import schema as S
from . import _wire as W
from ._base import Bridge, _Stopped
from ._config import _zenoh
from ._export import SPIN, kind_of
from ._status import StatusBoard

__all__ = ["Importer", "check_compatible"]

POLL = 0.1  # seconds between looks at the stop flag while a local write waits
FIFO_BYTES = 64 << 20  # what Zenoh may hold for us; when its FIFO is full, it stops reading the link


def fifo_capacity(slot_size: int) -> int:
    """Samples Zenoh may hold for the importer: 64 MiB of messages, 4 to 256 of them."""
    return max(4, min(256, FIFO_BYTES // max(slot_size, 1)))

QUERY_EVERY = 1.0  # seconds between two queries for a channel description that did not come
PENDING_MAX = 4096  # samples of a not yet described stream kept while its description is asked for
PENDING_WAIT = 3 * QUERY_EVERY  # seconds they are kept


def _dtype_of(ci: S.ChannelInfo) -> np.dtype[Any] | None:
    """A state board's value dtype from its ChannelInfo (as State.open reads it)."""
    if ci.numpy_descr is not None:
        try:
            descr, shape = ast.literal_eval(ci.numpy_descr)
            base = np.lib.format.descr_to_dtype(descr)
            return np.dtype((base, tuple(shape))) if shape else base
        except (ValueError, SyntaxError, TypeError) as exc:
            raise W.BridgeProtocolError(f"channel description: unreadable numpy dtype {ci.numpy_descr!r}: "
                                        f"{exc}") from None
    if ci.dtype is not None:
        shape = tuple(ci.shape or ())
        return np.dtype((ci.dtype, shape)) if shape else ci.dtype
    return None


def _fail(name: str, key: str, field: str, local: object, remote: object) -> E.IncompatibleChannelError:
    return E.IncompatibleChannelError(f"local channel {name!r} cannot take the channel exported on {key!r}: "
                                      f"{field} is {local} here and {remote} there")


def check_compatible(ch: Channel, info: W.RemoteInfo, key: str) -> None:
    """Raise :class:`IncompatibleChannelError` naming the first field that keeps local channel ``ch``
    from receiving the remote channel ``info``: kind, policy, slot size (the local slots must hold
    every remote message), the value dtype of a board, the payload schema (compatible in the sense
    of shmchan.schema.check_compatible) and the dtype/shape hints."""
    name = ch.name or "?"
    kind = kind_of(ch)
    if kind != info.kind:
        raise _fail(name, key, "the kind", kind, info.kind)
    if isinstance(ch, Broadcast) and ch.policy != info.policy:
        raise _fail(name, key, "the policy", ch.policy, info.policy)
    remote = info.info
    local = ch.info
    if isinstance(ch, State):
        rd = _dtype_of(remote) if remote is not None else None
        if rd is not None or ch.dtype is not None:
            if rd != ch.dtype:
                raise _fail(name, key, "the value dtype", ch.dtype, rd)
        elif ch.max_size < info.slot_size:
            raise _fail(name, key, "max_size", ch.max_size, info.slot_size)
    elif ch.slot_size < info.slot_size:
        raise _fail(name, key, "slot_size", ch.slot_size, info.slot_size)
    rp = remote.payload if remote is not None else None
    lp = local.payload if local is not None else None
    if rp is not None or lp is not None:
        if rp is None or lp is None:
            raise _fail(name, key, "the payload schema", lp.name if lp else "none (raw bytes)",
                        rp.name if rp else "none (raw bytes)")
        S.check_compatible(rp, lp, f"the channel exported on {key!r}")
    if not isinstance(ch, State):
        lh = (local.dtype, local.shape) if local is not None else (None, None)
        rh = (remote.dtype, remote.shape) if remote is not None else (None, None)
        if lh != rh:
            raise _fail(name, key, "the dtype/shape hint", lh, rh)


class Importer(Bridge):
    """Subscribes to Zenoh key ``key`` and writes every message into local channel ``name``.

    The channel is created with the remote channel's kind, geometry and descriptor, or opened if
    it exists and is compatible (see :func:`check_compatible`); ``persist`` (default True) keeps it
    after the importer stops, so that consumers keep it and a restarted importer continues into
    it. Each message is written with one copy into the next slot; when the local ring is full
    (SPSC, block broadcast) the importer waits, Zenoh stops reading the link, and the exporter's
    publisher blocks: back-pressure reaches the remote writer. Positions that never arrive are
    counted as lost, samples of a position already written are dropped as duplicates, malformed
    ones are rejected (see :class:`BridgeStats`); the counters and the position mapping live on
    the status board ``NAME.bridge-in``, so a restarted importer resumes exactly.
    """

    _role = "import"

    def __init__(self, key: str, name: str, *, persist: bool = True, **options: Any) -> None:
        super().__init__(key, name, **options)
        self.persist = persist
        self._channel_ready = False
        self._sub: Any = None
        self._replies: list[bytes] = []
        self._queries: list[Any] = []
        self._connected = threading.Event()
        self.remote: W.RemoteInfo | None = None

    # ---- lifetime ----

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until an exporter has described the channel and the local channel is open (or the
        importer failed: its error is raised). False after ``timeout`` seconds."""
        return self._wait_event(self._connected, timeout)

    def _interrupt(self) -> None:
        sub = self._sub
        if sub is not None:
            with contextlib.suppress(Exception):
                sub.undeclare()  # wakes a recv() in the thread

    # ---- the thread ----

    def _run(self, stack: contextlib.ExitStack) -> None:
        zenoh = _zenoh()
        self._local: Channel | None = None
        self._w: Writer | None = None
        self._stream: int | None = None
        self._expect = 0
        self._pending: list[tuple[int, int, int, Any]] = []
        self._pending_since = 0.0
        self._asked = 0.0
        board = StatusBoard(self.name, "import", self.key)
        self._board = board
        self._value = board.value
        self._remove = False
        stack.callback(lambda: board.close(self._remove))
        stack.callback(self._close_local)
        board.publish()
        session = zenoh.open(self._config)
        stack.callback(session.close)
        self._session = session
        self._ready.set()
        # the channel's description first: it sizes the FIFO (and creates the local channel)
        while self._stream is None:
            self._check_stop()
            self._take_replies()
            if self._stream is None:
                self._ask()
                time.sleep(0.005)
        assert self._local is not None
        self._sub = session.declare_subscriber(self.key, zenoh.handlers.FifoChannel(fifo_capacity(
            self._local.slot_size)))
        stack.callback(self._drop_subscriber)
        if self._stop.is_set():
            raise _Stopped
        self._connected.set()
        handler = self._sub.handler
        while True:
            self._check_stop()
            if self._stream is None or self._pending:
                self._take_replies()
                if self._stream is None or self._pending:
                    sample = handler.try_recv()
                else:
                    continue
                if sample is None:
                    self._expire()
                    self._ask()
                    time.sleep(0.002)
                    continue
            else:
                try:
                    sample = handler.recv()
                except Exception:
                    self._check_stop()
                    raise
            self._sample(sample)

    def _drop_subscriber(self) -> None:
        """Undeclare the subscriber and empty its FIFO. Zenoh's reading task may be blocked on a full
        FIFO (the local ring was full); until it is emptied, closing the session would wait for it."""
        sub, self._sub = self._sub, None
        if sub is None:
            return
        with contextlib.suppress(Exception):
            sub.undeclare()
        with contextlib.suppress(Exception):  # zenoh.ZError once it is empty and closed
            while sub.handler.try_recv() is not None:
                pass

    def _expire(self) -> None:
        """Drop samples of streams no exporter described within PENDING_WAIT seconds (a stray or
        hostile publisher on the key): they count as rejected."""
        if self._pending and time.monotonic() - self._pending_since > PENDING_WAIT:
            self._value.rejected += len(self._pending)
            self._pending = []

    def _close_local(self) -> None:
        # detaches the writer (local readers see the end of the stream); a channel created with
        # persist=False is removed by its creator's close
        if self._local is not None:
            self._local.close()
        # the board keeps the position mapping for a later importer into the same channel; one
        # that never described a stream has nothing to keep
        self._remove = not self.persist or (self._stream is None and self._board.previous is None)

    def _ask(self, force: bool = False) -> None:
        """Ask the exporter for the channel's description (at most every QUERY_EVERY seconds). The
        replies are polled (_take_replies), never delivered through a callback: Zenoh would call it
        on a thread of its own, which may still run while the interpreter shuts down."""
        now = time.monotonic()
        if not force and now - self._asked < QUERY_EVERY:
            return
        self._asked = now
        self._queries.append(self._session.get(W.info_key(self.key), timeout=QUERY_EVERY))

    def _take_replies(self) -> None:
        """Use the descriptions that arrived: the one of a stream we hold samples of (or any, before
        the first stream)."""
        live = []
        for q in self._queries:
            try:
                while (reply := q.try_recv()) is not None:
                    if reply.ok is not None:
                        self._replies.append(reply.ok.payload.to_bytes())
            except Exception:  # zenoh.ZError: the query is over (every reply taken, or it timed out)
                continue
            live.append(q)
        self._queries = live
        while self._replies:
            data = self._replies.pop(0)
            try:
                info = W.decode(data)
            except W.BridgeProtocolError:
                self._value.rejected += 1
                continue
            wanted = {p[1] for p in self._pending}
            if info.stream == self._stream or (wanted and info.stream not in wanted) or \
                    (not wanted and self._stream is not None):
                continue
            self._switch(info)
            return

    def _switch(self, info: W.RemoteInfo) -> None:
        """Start (or restart) receiving stream ``info.stream``: open or create the local channel, and
        find where the stream continues."""
        value = self._value
        board = self._board
        if self._local is None:
            self._local = self._open_local(info)
        else:
            check_compatible(self._local, info, self.key)
        self.remote = info
        self.kind, self.reliable = info.kind, info.reliable
        value.reliable = int(info.reliable)
        head = self._head()
        prev = board.previous
        first = min((p[2] for p in self._pending if p[1] == info.stream), default=info.next_seq)
        if self._stream is None and prev is not None and int(prev.stream) == info.stream \
                and head >= int(prev.sync_local):
            # a restart: local position head holds what follows remote position sync_remote + ...
            self._expect = int(prev.sync_remote) + head - int(prev.sync_local)
            value.messages = int(prev.sync_messages) + head - int(prev.sync_local)
        else:
            if self._stream is not None or (prev is not None and int(prev.stream) != 0):
                value.resets += 1
            self._expect = min(first, info.next_seq)
        self._stream = info.stream
        value.stream = info.stream
        value.connected = 1
        self._sync()
        pending, self._pending = self._pending, []
        for flags, stream, seq, payload in pending:
            if stream == info.stream:
                self._apply(flags, seq, payload)

    def _open_local(self, info: W.RemoteInfo) -> Channel:
        """Open the local channel (checking it is compatible), or create it like the remote one."""
        for _ in range(3):
            try:
                ch = Channel.open(self.name, timeout=1.0, allow_foreign=self._allow_foreign)
            except E.ChannelNotFoundError:
                pass
            else:
                try:
                    check_compatible(ch, info, self.key)
                except BaseException:
                    ch.close()
                    raise
                return ch
            try:
                return self._create(info)
            except E.ChannelExistsError:
                continue  # created meanwhile: open it
        raise E.ChannelBusyError(f"channel {self.name!r} keeps appearing and disappearing")

    def _create(self, info: W.RemoteInfo) -> Channel:
        desc = info.descriptor or None
        if info.kind == "spsc":
            return Channel.create(self.name, slot_size=info.slot_size, capacity=info.capacity,
                                  slot_align=info.slot_align, descriptor=desc, persist=self.persist)
        if info.kind == "broadcast":
            assert info.policy is not None
            return Broadcast.create(self.name, slot_size=info.slot_size, capacity=info.capacity,
                                    max_readers=info.max_readers, policy=info.policy, slot_align=info.slot_align,
                                    descriptor=desc, persist=self.persist)
        ci = info.info
        dt = _dtype_of(ci) if ci is not None else None
        meta = dict(ci.metadata) if ci is not None else None
        if dt is not None:
            if dt.itemsize != info.slot_size:
                raise W.BridgeProtocolError(f"channel description: a board of dtype {dt} ({dt.itemsize} bytes) "
                                            f"with values of {info.slot_size} bytes")
            return State.create(self.name, dtype=dt, metadata=meta, persist=self.persist)
        schema = ci.payload if ci is not None else None
        return State.create(self.name, schema=schema, max_size=info.slot_size, metadata=meta, persist=self.persist)

    def _head(self) -> int:
        if self._w is not None:
            return self._w.position
        assert self._local is not None
        return self._local.stats().head

    def _sync(self) -> None:
        """Publish the mapping: the next local position holds remote position ``expect``. Done
        before that position is written, so a restart after a crash knows where it continues."""
        v = self._value
        v.sync_local = self._head()
        v.sync_remote = self._expect
        v.sync_messages = v.messages
        self._board.publish()

    def _sample(self, sample: Any) -> None:
        value = self._value
        att = sample.attachment
        try:
            flags, stream, seq = W.unpack(att.to_bytes() if att is not None else None)
        except W.BridgeProtocolError:
            value.rejected += 1
            return
        if stream != self._stream:
            if not self._pending:
                self._pending_since = time.monotonic()
            if len(self._pending) < PENDING_MAX:
                self._pending.append((flags, stream, seq, sample.payload))
            else:
                value.rejected += 1
            self._ask(force=len(self._pending) == 1)
            return
        self._apply(flags, seq, sample.payload)

    def _apply(self, flags: int, seq: int, payload: Any) -> None:
        value = self._value
        local = self._local
        assert local is not None
        if flags & W.FLAG_END:
            if seq > self._expect:
                value.lost += seq - self._expect
                self._expect = seq
                self._sync()
            if self._w is not None:
                self._w.close()  # the remote writer closed: local readers see the end of the stream
                self._w = None
            return
        if seq < self._expect:
            value.duplicates += 1
            return
        n = len(payload)
        if n > local.slot_size or (isinstance(local, State) and local.dtype is not None and n != local.slot_size):
            value.rejected += 1
            return
        if self._w is None:
            self._w = local.writer(spin=SPIN)
        if seq > self._expect:
            value.lost += seq - self._expect
            self._expect = seq
            self._sync()
        data = payload.to_bytes()  # zenoh-python gives no view of its buffer: one copy out, one into the slot
        self._send(data)
        self._expect = seq + 1
        value.messages += 1
        value.bytes += n
        value.last_seq = seq
        value.last_ns = time.time_ns()
        self._board.maybe_publish()

    def _send(self, data: bytes) -> None:
        w = self._w
        assert w is not None
        while True:
            try:
                w.send(data, timeout=POLL)
                return
            except E.ChannelTimeoutError:
                pass  # the local ring is full: Zenoh holds the rest back meanwhile
            except E.PeerDeadError:
                time.sleep(POLL)  # the local reader died with the ring full: wait for a new one
            self._check_stop()
            self._board.maybe_publish()  # what was written so far, while this waits
