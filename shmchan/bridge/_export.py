"""The exporter: reads a local channel and publishes every message on a Zenoh key."""

from __future__ import annotations

import contextlib
import time
from typing import Any

from .. import Broadcast, Channel, Reader, State
from .. import errors as E
from . import _wire as W
from ._base import Bridge
from ._config import _zenoh
from ._status import StatusBoard

__all__ = ["Exporter"]

WAIT = 0.02  # seconds a wait lasts before the exporter answers queries and looks at the stop flag again
BATCH = 64  # messages taken from the ring per call
HEARTBEAT = 1.0  # best-effort streams: the newest value is published again this often when nothing changes
# a bridge waits on its ring without polling: Zenoh's own latency is a hundred microseconds or more,
# and a polling bridge takes CPU from the producer, the consumer and Zenoh's threads on the same host
SPIN = 0.0
WRITER_POLL = 0.05  # seconds between looks for a new local writer after the stream ended


def kind_of(ch: Channel) -> str:
    """``spsc``, ``broadcast`` or ``state``."""
    if isinstance(ch, State):
        return "state"
    if isinstance(ch, Broadcast):
        return "broadcast"
    return "spsc"


class Exporter(Bridge):
    """Publishes every message of local channel ``name`` on Zenoh key ``key`` (default
    ``shmchan/NAME``), as the channel's reader (SPSC), one reader place (broadcast) or a reader of
    the board (state).

    SPSC channels and block broadcasts go reliably, with Zenoh's blocking congestion control: the
    exporter takes a message only while a subscriber matches the key and blocks while Zenoh cannot
    send, so a slow or absent importer holds the local writer back. Overwrite broadcasts and state
    boards go best effort (Zenoh drops under congestion); the importer counts what never arrived.
    Each message carries the channel's stream id and its position (a board's version), and the
    channel's description answers queries on ``KEY/@shmchan/info``. The zenoh options are those of
    :func:`shmchan.bridge.zenoh_config` (with no endpoint: listen on ``tcp/127.0.0.1:7447``).
    """

    _role = "export"

    def __init__(self, name: str, key: str | None = None, **options: Any) -> None:
        super().__init__(key if key is not None else f"shmchan/{name}", name, **options)
        self._info: bytes = b""
        self._next_seq = 0
        self._matches = 0  # how often the matching status became true
        self._matching = False
        self._queries: Any = None

    def _run(self, stack: contextlib.ExitStack) -> None:
        zenoh = _zenoh()
        ch = Channel.open(self.name, timeout=2.0, allow_foreign=self._allow_foreign)
        stack.callback(ch.close)
        self.kind = kind = kind_of(ch)
        self.reliable = reliable = kind == "spsc" or (isinstance(ch, Broadcast) and ch.policy == "block")
        board = StatusBoard(self.name, "export", self.key)
        stack.callback(board.close, True)
        board.value.reliable = int(reliable)
        board.value.stream = stream = W.stream_id(self.name, round(ch.created * 1e9), ch.creator_pid)
        self._value = board.value
        session = zenoh.open(self._config)
        stack.callback(session.close)
        pub = session.declare_publisher(
            self.key,
            congestion_control=zenoh.CongestionControl.BLOCK if reliable else zenoh.CongestionControl.DROP,
            reliability=zenoh.Reliability.RELIABLE if reliable else zenoh.Reliability.BEST_EFFORT,
        )
        reader: Reader | None = None
        if kind != "state":
            reader = ch.reader(start="oldest", spin=SPIN) if isinstance(ch, Broadcast) else ch.reader(spin=SPIN)
            self._next_seq = reader.position
        else:
            assert isinstance(ch, State)
            self._next_seq = max(ch.version, 1)
        policy = ch.policy if isinstance(ch, Broadcast) else None
        self._info = W.RemoteInfo(self.name, kind, policy, ch.slot_size, ch.capacity, ch.slot_align,
                                  ch.max_readers if isinstance(ch, Broadcast) else 0, ch.descriptor, stream,
                                  self._next_seq, reliable).encode()
        # No Python callbacks anywhere: Zenoh would call them on threads of its own, which may still
        # run while the interpreter shuts down. Queries and the matching status are polled instead.
        self._queries = session.declare_queryable(W.info_key(self.key))
        stack.callback(self._queries.undeclare)
        board.publish()
        self._ready.set()
        if reader is not None:
            self._stream(pub, reader, min(BATCH, ch.capacity), board, stream, reliable)
        else:
            assert isinstance(ch, State)
            self._board(pub, ch, board, stream)

    def _poll(self, pub: Any) -> bool:
        """Answer the queries for the channel's description; return whether a subscriber matches."""
        while True:
            query = self._queries.handler.try_recv()
            if query is None:
                break
            with contextlib.suppress(Exception):  # the querier went away: nothing to do
                query.reply(W.info_key(self.key), self._describe())
        matching = bool(pub.matching_status.matching)
        if matching and not self._matching:
            self._matches += 1
        self._matching = matching
        return matching

    def _describe(self) -> bytes:
        """The channel's description, with the position the next message will have."""
        info = W.decode(self._info)
        return W.RemoteInfo(info.name, info.kind, info.policy, info.slot_size, info.capacity, info.slot_align,
                            info.max_readers, info.descriptor, info.stream, self._next_seq, info.reliable).encode()

    def _stream(self, pub: Any, r: Reader, batch: int, board: StatusBoard, stream: int, reliable: bool) -> None:
        """SPSC and broadcast channels: every message, in order."""
        value = board.value
        ended = False
        while True:
            self._check_stop()
            matched = self._poll(pub)
            value.connected = int(matched)
            if reliable and not matched:
                time.sleep(WAIT)
                board.maybe_publish()
                continue
            try:
                msgs = r.recv_batch(batch, timeout=WAIT)
            except E.ChannelTimeoutError:
                board.maybe_publish()
                continue
            except (E.ChannelEndedError, E.PeerDeadError) as exc:
                # the local writer closed (and everything was sent) or died: say so once, then wait
                # for a new writer
                if isinstance(exc, E.ChannelEndedError) and not ended:
                    pub.put(b"", attachment=W.pack(stream, r.position, W.FLAG_END))
                    ended = True
                board.maybe_publish()
                time.sleep(WRITER_POLL)
                continue
            ended = False
            for m in msgs:
                data = m.tobytes()
                if m.lost:
                    value.lost += m.lost
                if not reliable:
                    try:
                        m.release()  # checks that the copy is whole; else it is not sent (lost)
                    except E.LappedError:
                        value.lost += 1
                        continue
                pub.put(data, attachment=W.pack(stream, m.seq))
                if reliable:
                    m.release()  # only now: a crash before this sends it again (the importer drops the copy)
                value.messages += 1
                value.bytes += len(data)
                value.last_seq = m.seq
                self._next_seq = m.seq + 1
            value.last_ns = time.time_ns()
            board.maybe_publish()

    def _board(self, pub: Any, st: State, board: StatusBoard, stream: int) -> None:
        """State boards: the newest value whenever it changes, again when a new subscriber matches,
        and every HEARTBEAT seconds (so a dropped last value still arrives)."""
        value = board.value
        sent = 0
        matches = -1
        last = 0.0
        while True:
            self._check_stop()
            value.connected = int(self._poll(pub))
            data, version = st.read()
            now = time.monotonic()
            if version and (version != sent or matches != self._matches or now - last >= HEARTBEAT):
                raw = data if isinstance(data, bytes) else data.tobytes()
                if sent and version > sent + 1:
                    value.lost += version - sent - 1  # versions published between two looks
                pub.put(raw, attachment=W.pack(stream, version))
                if version != sent:
                    value.messages += 1
                    value.bytes += len(raw)
                sent, matches, last = version, self._matches, now
                value.last_seq = version
                value.last_ns = time.time_ns()
                self._next_seq = version
            board.maybe_publish()
            try:
                st.wait_for_change(version, timeout=WAIT)
            except E.ChannelTimeoutError:
                pass
            except E.PeerDeadError:
                time.sleep(WRITER_POLL)
