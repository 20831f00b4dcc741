"""What the operations subcommands know about a channel, read from the outside: its description
(kind, geometry, counters, peers, schema), the channels in /dev/shm, and summaries of messages."""

from __future__ import annotations

import os
import stat as stat_mod
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from .. import errors as E
from .. import schema as S
from .._names import check_name
from ..bridge import _status as bridge_status
from ..broadcast import Broadcast, ReaderPlace
from ..channel import _KIND_NAMES, Channel, ChannelStats
from ..channel import is_stale as _is_stale
from ..channel import reclaim_stale as _reclaim_stale
from ..state import State
from ._common import (
    JSON_ELEMENTS,
    NO_POSITION,
    PREFIX,
    SHM_DIR,
    JsonDict,
    _error_text,
    _jsonable,
    _pid_alive,
    _shm_path,
    _user,
    format_value,
)


def is_stale(name: str) -> bool | None:
    """Whether channel ``name`` is stale (no process holds it open; see shmchan.cleanup_stale);
    None when that cannot be told (no such channel, no permission)."""
    try:
        return _is_stale(name)
    except (E.ShmchanError, OSError, ValueError):
        return None


def _reclaim_stale_or_false(name: str) -> bool:
    try:
        return _reclaim_stale(name)
    except (E.ShmchanError, OSError, ValueError):
        return False


def holders(names: Sequence[str]) -> dict[str, list[int]]:
    """The processes (other than this one) that map each channel, from ``/proc/*/maps``; only
    processes whose maps this user may read are found."""
    paths = {_shm_path(n): n for n in names}
    found: dict[str, list[int]] = {n: [] for n in names}
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/maps", encoding="utf-8", errors="replace") as f:
                seen = set()
                for line in f:
                    i = line.find(SHM_DIR + "/" + PREFIX)
                    if i < 0:
                        continue
                    path = line[i:].rstrip("\n").removesuffix(" (deleted)")
                    if path in paths and path not in seen:
                        seen.add(path)
                        found[paths[path]].append(int(entry))
        except OSError:
            continue
    return found


def _peer(state: str, pid: int, alive: bool) -> JsonDict:
    return {"state": state, "pid": pid or None, "alive": alive}


def _peer_text(p: JsonDict) -> str:
    if p["state"] == "attached":
        return f"{p['pid']}" if p["alive"] else f"{p['pid']} dead"
    return "-" if p["state"] == "none" else str(p["state"])


def _stats_json(st: ChannelStats) -> JsonDict:
    return {
        "head": st.head,
        "tail": st.tail,
        "fill": st.fill,
        "messages_written": st.messages_written,
        "bytes_written": st.bytes_written,
        "full_waits": st.full_waits,
        "aborts": st.aborts,
        "messages_read": st.messages_read,
        "bytes_read": st.bytes_read,
        "empty_waits": st.empty_waits,
    }


def _kind(ch: Channel) -> str:
    """The channel's kind from its header: "spsc", "broadcast" or "state"."""
    code = int(ch._info["kind"])
    return _KIND_NAMES.get(code, f"kind {code}")


def _schema_json(ch: Channel) -> tuple[JsonDict | None, str | None]:
    """The decoded ChannelInfo as JSON (None without descriptor) and an error about it."""
    if not ch.descriptor:
        return None, None
    try:
        info = ch.info
    except (S.DecodeError, E.ShmchanError, ValueError) as exc:
        return {"descriptor_size": len(ch.descriptor), "channel_info": False}, _error_text(exc)
    if info is None:  # opaque bytes, not a ChannelInfo
        return {"descriptor_size": len(ch.descriptor), "channel_info": False}, None
    p = info.payload
    err = None
    if info.kind != _kind(ch):
        err = f"it says kind {info.kind}, the header {_kind(ch)} (the header is what counts)"
    return {
        "descriptor_size": len(ch.descriptor),
        "channel_info": True,
        "kind": info.kind,
        "payload": None if p is None else {
            "name": p.name,
            "file_identifier": p.file_identifier,
            "fingerprint": f"{p.fingerprint:016x}",
            "bfbs_stored": p.bfbs is not None,
        },
        "dtype": None if info.dtype is None else str(info.dtype),
        "shape": None if info.shape is None else list(info.shape),
        "numpy_descr": info.numpy_descr,
        "metadata": dict(info.metadata),
    }, err


def _dtype_short(dt: np.dtype[Any]) -> str:
    """``float32[4]``, ``record(8 fields, 256 B)``, ``uint64``: a dtype in a table cell."""
    if dt.subdtype is not None:
        base, shape = dt.subdtype
        return f"{_dtype_short(base)}[{','.join(map(str, shape))}]"
    if dt.names:
        return f"record({len(dt.names)} fields, {dt.itemsize} B)"
    return str(dt)


def _schema_short(sch: JsonDict | None, d: JsonDict | None = None) -> str:
    if d is not None and d.get("dtype_short"):  # a state board of a numpy dtype
        return str(d["dtype_short"])
    if sch is None:
        return "raw"
    if not sch["channel_info"]:
        return f"custom descriptor ({sch['descriptor_size']} B)"
    text = "raw" if sch["payload"] is None else str(sch["payload"]["name"]).removeprefix("shmchan.fb.")
    if sch["dtype"] or sch["shape"]:
        dims = ",".join("*" if d == -1 else str(d) for d in sch["shape"] or [])
        text += f" {sch['dtype'] or ''}[{dims}]" if sch["shape"] is not None else f" {sch['dtype']}"
    return text


def _place_json(p: ReaderPlace, head: int, capacity: int, policy: str) -> JsonDict:
    attached = p.state == "attached"
    behind = max(head - p.position, 0) if attached else None
    return {
        "index": p.index,
        "state": p.state,
        "pid": p.pid or None,
        "alive": p.alive,
        "position": p.position,
        "behind": behind,
        # overwrite policy: the writer has rewritten (some of) what this reader was still to take
        "lapped": bool(attached and policy == "overwrite" and behind is not None and behind > capacity),
        "messages": p.messages,
        "bytes": p.bytes,
        "lost": p.lost,
        "empty_waits": p.empty_waits,
    }


def check_positions(ch: Channel, tries: int = 3) -> None:
    """Refuse positions no channel can have (a peer's bytes, or a damaged header): the tools report
    them as an error instead of printing a fill of 2**64-1 or a negative one.

    Positions move while we look, so each look is ordered to be consistent on a healthy channel
    (SPSC: the core's stats take head and tail as one snapshot; broadcast: head before the reader
    places for the lag bound, after them for "no reader ahead of head"), and only what ``tries``
    looks in a row all find impossible is called corrupt."""
    why = ""
    for _ in range(tries):
        if isinstance(ch, Broadcast):
            head_before = ch.stats().head
            places = ch.readers()
            head_after = ch.stats().head
            lapped_ok = ch.policy == "overwrite"  # the writer may lap a reader; it never passes one otherwise
            bad = [p for p in places if p.state == "attached" and p.alive and (
                p.position > head_after or (not lapped_ok and head_before - p.position > ch.capacity))]
            if not bad:
                return
            why = (f"head {head_after}, reader {bad[0].index} at {bad[0].position} for {ch.capacity} slots")
        elif _kind(ch) == "spsc":
            st = ch.stats()
            if 0 <= st.head - st.tail <= ch.capacity:
                return
            why = f"head {st.head}, tail {st.tail} for {ch.capacity} slots"
        else:
            return
    raise E.CorruptChannelError(f"channel {ch._where()!r}: impossible positions: {why}")


def _ring_range(ch: Channel) -> tuple[int, int]:
    """The positions ``[first, end)`` whose messages the ring holds now (what tail can show):
    SPSC, ``[tail, head)``; broadcast, the newest messages whether read or not (as inspect says)."""
    if not isinstance(ch, Broadcast):
        st = ch.stats()
        return st.tail, st.head
    _data, first, end = ch.inspect(NO_POSITION)
    return first, end


def describe(ch: Channel, *, full: bool = False) -> JsonDict:
    """Everything ``stat`` reports about an open channel, as JSON-ready data. ``full`` adds the
    range of positions a broadcast ring holds (a look that allocates a slot's worth of memory)."""
    kind = _kind(ch)
    places = ch.readers() if isinstance(ch, Broadcast) else []  # before stats: positions <= head
    st = ch.stats()
    check_positions(ch)
    sch, sch_err = _schema_json(ch)
    now = time.time()
    d: JsonDict = {
        "name": ch.name,
        "path": _shm_path(ch.name) if ch.name else None,
        "kind": kind,
        "layout_version": ".".join(map(str, ch.layout_version)),
        "creator_pid": ch.creator_pid,
        "creator_alive": _pid_alive(ch.creator_pid),
        "created": ch.created,
        "age_s": round(now - ch.created, 3),
        "slot_size": ch.slot_size,
        "capacity": ch.capacity,
        "slot_stride": ch.slot_stride,
        "slot_align": ch.slot_align,
        "nbytes": ch.nbytes,
        "msync": ch.msync,
        "writer": _peer(st.writer_state, st.writer_pid, st.writer_alive),
    }
    if isinstance(ch, Broadcast):
        d.update(_describe_broadcast(ch, st, places))
    elif isinstance(ch, State):
        d.update(_describe_state(ch, st))
    else:
        d["reader"] = _peer(st.reader_state, st.reader_pid, st.reader_alive)
        d.update(_stats_json(st))
    if full and kind == "broadcast":
        d["ring_first"], d["ring_end"] = _ring_range(ch)
    d["schema"] = sch
    if sch_err:
        d["schema_error"] = sch_err
    d["bridges"] = bridge_status.bridges_of(ch.name)
    return d


def _describe_broadcast(ch: Broadcast, st: ChannelStats, places: list[ReaderPlace]) -> JsonDict:
    """Broadcast: policy, reader places, and the positions relative to the slowest live reader."""
    policy, cap = ch.policy, ch.capacity
    used = [_place_json(p, st.head, cap, policy) for p in places if p.state != "none"]
    attached = [p for p in used if p["state"] == "attached"]
    live = [p for p in attached if p["alive"]]
    slowest = min(live, key=lambda p: p["position"]) if live else None
    tail = slowest["position"] if slowest else st.head
    return {
        "policy": policy,
        "max_readers": ch.max_readers,
        "readers_attached": len(attached),
        "readers_alive": len(live),
        "readers_dead": len(attached) - len(live),
        "head": st.head,
        # the slowest live reader's position (head when no reader is attached and alive); a dead
        # reader holds nobody back (the writer skips it), so it does not count here
        "tail": tail,
        "slowest_reader": None if slowest is None else slowest["index"],
        "fill": min(st.head - tail, cap),
        "messages_written": st.messages_written,
        "bytes_written": st.bytes_written,
        "full_waits": st.full_waits,
        "aborts": st.aborts,
        # sums over the reader places (each place's counters start at 0 when a reader attaches)
        "messages_read": st.messages_read,
        "bytes_read": st.bytes_read,
        "lost": sum(p.lost for p in places),
        "empty_waits": st.empty_waits,
        "readers": used,
    }


def _describe_state(ch: State, st: ChannelStats) -> JsonDict:
    """State board: version, value size, dtype and the current value."""
    dt = ch.dtype
    d: JsonDict = {
        "head": st.head,
        "version": st.head,
        "max_size": ch.max_size,
        "value_size": None if dt is None else dt.itemsize,
        "dtype": None if dt is None else str(dt),
        "dtype_short": None if dt is None else _dtype_short(dt),
        "messages_written": st.messages_written,
        "bytes_written": st.bytes_written,
        "aborts": st.aborts,
        "value_version": 0,
        "value": None,
    }
    try:
        value, version = ch.read()
    except (E.ShmchanError, OSError) as exc:
        d["value_error"] = _error_text(exc)
        return d
    if version:
        d["version"] = max(version, st.head)
        d["value_version"] = version
        d.update(_state_value_json(ch, value))
    return d


def _state_value_json(ch: State, value: Any, nbytes_shown: int = 32) -> JsonDict:
    """A state board's value: ``value_size`` and ``value`` (JSON; numpy boards, abbreviated when
    large, then ``value_truncated``) or ``value_summary`` (FlatBuffers and raw boards, as tail
    summarises a message)."""
    dt = ch.dtype
    if dt is not None:
        data, truncated = _jsonable(value, JSON_ELEMENTS)
        return {"value_size": dt.itemsize, "value": data, "value_truncated": truncated,
                "value_text": format_value(value)}
    kind, schema_name = _payload_kind(ch)
    m = summarize(bytes(value), None if kind == "other" else kind, nbytes_shown)
    if kind == "other":
        m["schema"] = schema_name
    return {"value_size": len(value), "value_summary": m}


def _entries(all_users: bool) -> Iterator[tuple[str, os.stat_result | None]]:
    me = os.geteuid()
    for entry in sorted(os.listdir(SHM_DIR)):
        if not entry.startswith(PREFIX):
            continue
        name = entry[len(PREFIX) :]
        try:
            check_name(name)
        except ValueError:
            continue
        try:
            st: os.stat_result | None = os.stat(os.path.join(SHM_DIR, entry))
        except FileNotFoundError:
            continue  # removed meanwhile
        except OSError:
            st = None
        if st is not None and st.st_uid != me and not all_users:
            continue
        yield name, st


def list_channels(all_users: bool = False) -> list[JsonDict]:
    """One entry per channel in ``/dev/shm`` (this user's, or everybody's with ``all_users``):
    what :func:`describe` says, plus ``owner``, ``mode``, ``stale`` and ``error`` (a channel that
    cannot be opened gets an entry with only the error)."""
    out = []
    for name, st in _entries(all_users):
        row: JsonDict = {
            "name": name,
            "path": _shm_path(name),
            "owner": None if st is None else _user(st.st_uid),
            "mode": None if st is None else f"{stat_mod.S_IMODE(st.st_mode):04o}",
            "file_size": None if st is None else st.st_size,
            "stale": False,
            "error": None,
        }
        try:
            row["stale"] = is_stale(name)
        except (E.ShmchanError, OSError, ValueError) as exc:  # not a channel at all (a FIFO, a directory)
            row["error"] = _error_text(exc)
            out.append(row)
            continue
        try:
            ch = Channel.open(name, timeout=0, allow_foreign=all_users)
        except E.ChannelNotFoundError:
            continue  # removed meanwhile
        except E.ChannelPermissionError as exc:
            row["error"] = _error_text(exc) + ("" if all_users else " (shmchan ls --all to include it)")
        except (E.ShmchanError, OSError) as exc:
            row["error"] = _error_text(exc)
        else:
            with ch:
                try:
                    row.update(describe(ch))
                except (E.ShmchanError, OSError) as exc:
                    row["error"] = _error_text(exc)
        row["path"] = _shm_path(name)
        out.append(row)
    return out


def summarize(data: bytes, kind: str | None, nbytes_shown: int) -> JsonDict:
    """Decode a message copy: a Frame or Tensor (by the channel's payload schema, or by the
    FlatBuffers file identifier at bytes 4..8 when the channel declares none) is summarised,
    anything else is shown as hex (the first ``nbytes_shown`` bytes)."""
    ident = data[4:8] if len(data) >= 8 else b""
    if kind is None:
        kind = {S.FRAME_IDENT: "frame", S.TENSOR_IDENT: "tensor"}.get(ident)
    out: JsonDict = {"nbytes": len(data)}
    try:
        if kind == "frame":
            f = S.decode_frame(memoryview(data))
            out.update(type="frame", seq=f.seq, timestamp_ns=f.timestamp_ns, width=f.width, height=f.height,
                       pixel_format=f.pixel_format.name, data_offset=f.data_offset, data_size=f.data_size,
                       pixels_shape=list(f.pixels.shape))
            px = f.pixels.reshape(-1)
            if px.size:
                out.update(pixel_min=int(px.min()), pixel_max=int(px.max()), pixel_mean=round(float(px.mean()), 2))
            del f, px
            return out
        if kind == "tensor":
            t = S.decode_tensor(memoryview(data))
            arr = t.array
            out.update(type="tensor", seq=t.seq, timestamp_ns=t.timestamp_ns, dtype=str(arr.dtype),
                       shape=list(arr.shape))
            if arr.size and arr.dtype.kind in "biuf":
                out.update(min=arr.min().item(), max=arr.max().item(), mean=round(float(arr.mean()), 6))
            out["head"] = arr.reshape(-1)[:8].tolist()
            del t, arr
            return out
    except (S.DecodeError, ValueError) as exc:
        out["decode_error"] = _error_text(exc)
    shown = data[:nbytes_shown]
    out.update(type="bytes", hex=shown.hex(), truncated=len(data) > len(shown))
    return out


def _payload_kind(ch: Channel) -> tuple[str | None, str | None]:
    """("frame" | "tensor" | "other" | None, payload schema name) from the channel's ChannelInfo."""
    try:
        info = ch.info
    except (S.DecodeError, E.ShmchanError, ValueError):
        return None, None
    if info is None or info.payload is None:
        return None, None
    return {"SHFR": "frame", "SHTN": "tensor"}.get(info.payload.file_identifier, "other"), info.payload.name


def _value_line(m: JsonDict) -> str:
    """A summarised message or value, after its position and size."""
    if m["type"] == "frame":
        ts = time.strftime("%H:%M:%S", time.localtime(m["timestamp_ns"] / 1e9)) + \
            f".{m['timestamp_ns'] % 1_000_000_000 // 1000:06d}"
        stats = f" pixels min {m['pixel_min']} max {m['pixel_max']} mean {m['pixel_mean']}" if "pixel_min" in m else ""
        return (f"Frame seq={m['seq']} {m['width']}x{m['height']} {m['pixel_format']} ts={ts} "
                f"data={m['data_size']} B @{m['data_offset']}{stats}")
    if m["type"] == "tensor":
        shape = ",".join(map(str, m["shape"]))
        stats = f" min {m['min']} max {m['max']} mean {m['mean']}" if "min" in m else ""
        return f"Tensor seq={m['seq']} {m['dtype']}[{shape}]{stats} first {m['head']}"
    if m["type"] == "numpy":
        return str(m["text"])
    raw = bytes.fromhex(m["hex"])
    if not raw and not m["truncated"]:
        return "(empty message)"
    text = " ".join(raw[i : i + 4].hex() for i in range(0, len(raw), 4))
    ascii_ = "".join(chr(b) if 32 <= b < 127 else "." for b in raw)
    more = f" ... (+{m['nbytes'] - len(raw)} B)" if m["truncated"] else ""
    err = f"  [not a valid Frame/Tensor: {m['decode_error']}]" if "decode_error" in m else ""
    return f"{text}{more}  |{ascii_}|{err}"
