"""Status boards: how ``shmchan ls``/``stat`` (and a restarted bridge) know a channel is bridged.

A bridge publishes its counters on a state board of its own, ``NAME.bridge-out`` for the exporter of
channel ``NAME`` and ``NAME.bridge-in`` for the importer into it: an ordinary shmchan state board
(kind STATE, a fixed numpy record), so the channel's bytes and the layout are untouched and any tool
or language can read it. Its metadata names the channel, the direction and the Zenoh key; its
writer is the bridge process, so the board's writer liveness is the bridge's (a ``kill -9`` leaves
the writer dead, and ``stat`` says so). The board outlives a crash on purpose: a restarted bridge
reopens it and carries on with the same counters. The importer also keeps there the mapping between
its local stream positions and the remote sequence numbers (``sync_local``/``sync_remote``,
published before the first message that follows a gap), so that after a restart it knows exactly
which remote message comes next, whatever it had written.

An exporter removes its board when it stops cleanly; an importer keeps it as long as it keeps the
imported channel (so that a later importer continues the count), and removes both otherwise.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any

import numpy as np

from .. import State, unlink
from .. import errors as E

__all__ = ["STATUS_DTYPE", "StatusBoard", "board_name", "bridges_of"]

STATUS_DTYPE = np.dtype([
    ("pid", "<u8"),
    ("started_ns", "<u8"),     # when this bridge process started
    ("updated_ns", "<u8"),     # when this value was published
    ("last_ns", "<u8"),        # when the last message went out (export) or came in (import)
    ("restarts", "<u8"),       # bridge processes that took over this board after the first
    ("reliable", "<u8"),       # 1: reliable and blocking; 0: best effort, latest value
    ("connected", "<u8"),      # export: a subscriber matches the key; import: an exporter described the channel
    ("stream", "<u8"),         # the exported channel's stream id (see _wire.stream_id)
    ("messages", "<u8"),       # published (export) or written into the local channel (import)
    ("bytes", "<u8"),
    ("lost", "<u8"),           # export: lapped before it could take them; import: remote positions never received
    ("duplicates", "<u8"),     # import: samples of a position already written or skipped, dropped
    ("rejected", "<u8"),       # import: malformed samples (bad header, too large), dropped
    ("resets", "<u8"),         # import: the remote channel was created again (a new stream)
    ("last_seq", "<u8"),       # the last position (or version) sent or written
    ("sync_local", "<u8"),     # import: local position sync_local holds remote position sync_remote
    ("sync_remote", "<u8"),
    ("sync_messages", "<u8"),  # import: messages written before sync_local
])
ROLES = {"export": "out", "import": "in"}
FIELDS: tuple[str, ...] = STATUS_DTYPE.names or ()


class Record:
    """The board's fields as plain Python ints: a bridge counts on these (cheap) and copies them
    into the board when it publishes."""

    __slots__ = FIELDS

    def __init__(self, value: Any = None) -> None:
        for f in FIELDS:
            setattr(self, f, 0 if value is None else int(value[f]))

    def copy(self) -> Record:
        out = Record()
        for f in FIELDS:
            setattr(out, f, getattr(self, f))
        return out

    def array(self) -> Any:
        return np.array(tuple(getattr(self, f) for f in FIELDS), dtype=STATUS_DTYPE)


def board_name(channel: str, role: str) -> str:
    """The status board of the bridge of ``channel`` in direction ``role`` (export/import)."""
    return f"{channel}.bridge-{ROLES[role]}"


class StatusBoard:
    """The board a running bridge publishes its counters on (opened again after a crash)."""

    def __init__(self, channel: str, role: str, key: str) -> None:
        self.name = board_name(channel, role)
        self.value: Any = Record()
        self.previous: Any = None  # the Record a crashed predecessor left, if any
        meta = {"bridge.role": role, "bridge.channel": channel, "bridge.key": key}
        self.board = self._open(meta)
        try:
            self._w = self.board.writer()
        except E.ChannelBusyError:
            pid = self.board.stats().writer_pid
            self.board.close()
            raise E.ChannelBusyError(f"channel {channel!r} is already bridged ({role}) by process {pid} "
                                     f"(status board {self.name!r})") from None
        value: Any = self.previous.copy() if self.previous is not None else Record()
        if self.previous is not None:
            value.restarts += 1
        value.pid = os.getpid()
        value.started_ns = time.time_ns()
        value.connected = 0
        self.value = value
        self.last_publish = 0.0

    def _open(self, meta: dict[str, str]) -> State:
        for _ in range(3):
            try:
                return State.create(self.name, dtype=STATUS_DTYPE, metadata=meta, persist=True)
            except E.ChannelExistsError:
                pass
            try:
                board = State.open(self.name, timeout=0.5)
            except E.ChannelNotFoundError:
                continue  # removed meanwhile
            info = board.info
            ours = (board.dtype == STATUS_DTYPE and info is not None and dict(info.metadata) == meta)
            if ours:
                value, version = board.read()
                if version:
                    self.previous = Record(value)
                return board
            st = board.stats()
            if st.writer_state == "attached" and st.writer_alive:
                board.close()
                raise E.ChannelBusyError(f"{self.name!r} is the status board of another bridge (process "
                                         f"{st.writer_pid}, {dict(info.metadata) if info else {}})")
            board.close()  # left by an earlier bridge of another key (or format): start afresh
            with contextlib.suppress(E.ChannelNotFoundError):
                unlink(self.name)
        raise E.ChannelBusyError(f"cannot make the status board {self.name!r}: it keeps changing")

    def publish(self) -> None:
        """Publish the counters now."""
        self.value.updated_ns = time.time_ns()
        self._w.write(self.value.array())
        self.last_publish = time.monotonic()

    def maybe_publish(self, every: float = 0.1) -> None:
        """Publish if the last publish is older than ``every`` seconds."""
        if time.monotonic() - self.last_publish >= every:
            self.publish()

    def close(self, remove: bool) -> None:
        """Publish the last counters, detach, and remove the board if ``remove``."""
        with contextlib.suppress(E.ShmchanError):
            self.publish()
        self.board.close()
        if remove:
            with contextlib.suppress(E.ChannelNotFoundError):
                unlink(self.name)


def bridges_of(channel: str | None) -> list[dict[str, Any]]:
    """The bridges of ``channel`` (its status boards), for ``shmchan ls``/``stat``: direction, key,
    process and whether it runs, counters. An empty list when the channel is not bridged."""
    if not channel or channel.endswith((".bridge-in", ".bridge-out")):
        return []
    out: list[dict[str, Any]] = []
    for role in ROLES:
        name = board_name(channel, role)
        if len(name) > 247 or not os.path.exists(f"/dev/shm/shmchan.{name}"):
            continue
        try:
            board = State.open(name, timeout=0)
            try:
                info = board.info
                value, _version = board.read()
                st = board.stats()
            finally:
                board.close()
        except (E.ShmchanError, OSError, ValueError) as exc:
            out.append({"role": role, "board": name, "error": str(exc)})
            continue
        if value is None or board.dtype != STATUS_DTYPE or info is None:
            out.append({"role": role, "board": name, "error": "not a bridge status board"})
            continue
        rec = {f: int(value[f]) for f in FIELDS}
        alive = st.writer_state == "attached" and st.writer_alive
        state = "running" if alive else ("dead" if st.writer_state == "attached" else "stopped")
        now = time.time_ns()
        out.append({
            "role": role,
            "board": name,
            "key": info.metadata.get("bridge.key"),
            "state": state,
            "pid": rec["pid"],
            "delivery": "reliable" if rec["reliable"] else "best effort",
            "connected": bool(rec["connected"]) and alive,
            **{k: rec[k] for k in ("messages", "bytes", "lost", "duplicates", "rejected", "restarts", "resets",
                                   "last_seq", "stream")},
            "updated_age_s": round((now - rec["updated_ns"]) / 1e9, 3),
            "last_message_age_s": round((now - rec["last_ns"]) / 1e9, 3) if rec["last_ns"] else None,
        })
    return out


def ls_note(bridges: list[dict[str, Any]] | None) -> str:
    """What ``shmchan ls`` appends to a bridged channel's STATE cell: ``bridged out shmchan/cam0``
    (``, dead`` when the bridge process died, ``, stopped`` when it stopped)."""
    words = []
    for b in bridges or ():
        if "error" in b:
            words.append(f"bridge {b['role']}: {b['error']}")
            continue
        arrow = "out" if b["role"] == "export" else "in"
        state = "" if b["state"] == "running" else f", {b['state']}"
        words.append(f"bridged {arrow} {b['key']}{state}")
    return "; ".join(words)


def stat_lines(bridges: list[dict[str, Any]] | None) -> list[str]:
    """The ``bridge`` section of ``shmchan stat`` (nothing for a channel that is not bridged)."""
    lines: list[str] = []
    for b in bridges or ():
        title = "bridge out (exported)" if b["role"] == "export" else "bridge in (imported)"
        lines.append(title)
        if "error" in b:
            lines.append(f"  error    {b['error']} (status board {b['board']})")
            continue
        proc = {"running": "running", "dead": "DEAD (killed? a new bridge resumes)",
                "stopped": "stopped"}[b["state"]]
        link = ("a subscriber matches" if b["role"] == "export" else "an exporter answered") if b["connected"] \
            else ("no subscriber yet" if b["role"] == "export" else "no exporter yet")
        moved = "published" if b["role"] == "export" else "written"
        rows = [
            ("key", f"{b['key']} ({b['delivery']})"),
            ("process", f"pid {b['pid']}, {proc}" + (f", {b['restarts']} restart(s)" if b["restarts"] else "")),
            ("zenoh", link if b["state"] == "running" else "-"),
            ("messages", f"{b['messages']} {moved} ({b['bytes']} B), last position {b['last_seq']}"),
        ]
        if b["role"] == "export":
            rows.append(("lost", f"{b['lost']} (lapped here before they could be sent)"))
        else:
            rows += [
                ("lost", f"{b['lost']} (sent remotely, never received)"),
                ("dropped", f"{b['duplicates']} duplicate(s), {b['rejected']} malformed"),
                ("resets", f"{b['resets']} (the remote channel was created again)"),
            ]
        age = b["last_message_age_s"]
        rows.append(("updated", f"{b['updated_age_s']:.1f} s ago; last message "
                                + ("never" if age is None else f"{age:.1f} s ago")))
        width = max(len(k) for k, _ in rows)
        lines += [f"  {k.ljust(width)}  {v}" for k, v in rows]
    return lines
