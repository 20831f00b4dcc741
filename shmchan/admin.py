"""The operations subcommands of ``shmchan``: ``ls``, ``stat``, ``hz``, ``tail``, ``rm`` and ``gc``.

They look at channels of every kind (SPSC, broadcast, state board; the kind is the header's) from
the outside. A channel is opened with a short timeout and never gets a writer or a reader
attached, so inspecting a running pipeline cannot disturb it: ``stat`` and ``hz`` read the counters
in the header (and a broadcast channel's reader places), ``tail`` copies messages with
:meth:`Channel.inspect` (a non-consuming, never-torn copy of a message still held in the ring) and
a state board's value with :meth:`State.read`, polling for new versions (it never sleeps on the
board, which would make the writer wake it).

Every command takes ``--json``. Human output is an aligned table; an error is one line on stderr
(``shmchan: ...``) with exit status 1 (2 for a usage error).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import pwd
import stat as stat_mod
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np

from . import errors as E
from . import schema as S
from ._names import check_name
from .bridge import _status as bridge_status
from .broadcast import Broadcast, ReaderPlace
from .channel import _KIND_NAMES, Channel, ChannelStats, cleanup_stale, unlink
from .channel import is_stale as _is_stale
from .channel import reclaim_stale as _reclaim_stale
from .state import State

__all__ = ["add_parsers", "list_channels"]

SHM_DIR = "/dev/shm"
PREFIX = "shmchan."
OPEN_TIMEOUT = 0.2  # seconds a single-channel command waits for a creator still initialising
TAIL_POLL = 0.002  # seconds between looks at the ring (or board) while tail waits for messages
NO_POSITION = (1 << 64) - 1  # a position no ring holds: inspect(NO_POSITION) tells the range it holds
JSON_ELEMENTS = 64  # a numpy value's arrays are cut to this many elements in JSON ("value_truncated")
VALUE_WIDTH = 400  # characters of a numpy value on one line of human output
JsonDict = dict[str, Any]


class UsageError(Exception):
    """A bad command line (exit status 2)."""


class Failure(Exception):
    """A command failed (exit status 1); the message is the whole error line."""


# ---------------------------------------------------------------------------------------------
# formatting
# ---------------------------------------------------------------------------------------------


def human_size(n: int | float) -> str:
    """``6220928`` -> ``"5.9 MiB"`` (binary units; bytes below 1 KiB)."""
    if n < 1024:
        return f"{int(n)} B"
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        n /= 1024
        if n < 1024 or unit == "PiB":
            return f"{n:.1f} {unit}"
    raise AssertionError("unreachable")


def human_rate(n: float) -> str:
    """Bytes per second, e.g. ``"1.2 GiB/s"``."""
    return human_size(n) + "/s"


def human_age(seconds: float) -> str:
    """``312.5`` -> ``"5m12s"``; compact, two units at most."""
    if seconds < 0:
        return "-"
    if seconds < 1:
        return f"{int(seconds * 1000)}ms"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> str:
    """Columns separated by two spaces, each as wide as its widest cell; the last one unpadded.
    Columns whose index is in ``right`` are right-aligned (numbers)."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    lines = []
    for cells in [list(headers), *[list(r) for r in rows]]:
        out = []
        for i, c in enumerate(cells):
            last = i == len(cells) - 1
            if i in right:
                out.append(c.rjust(widths[i]))
            else:
                out.append(c if last else c.ljust(widths[i]))
        lines.append("  ".join(out).rstrip())
    return "\n".join(lines)


def _pairs(title: str, items: Sequence[tuple[str, str]]) -> list[str]:
    """A section of ``key  value`` lines under a title."""
    width = max((len(k) for k, _ in items), default=0)
    return [title, *(f"  {k.ljust(width)}  {v}" for k, v in items)]


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _error_text(exc: BaseException) -> str:
    """One line for an exception: its message without errno prefixes or trailing file names."""
    text = str(exc.strerror) if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
    return " ".join(text.split())


# ---------------------------------------------------------------------------------------------
# reading channels
# ---------------------------------------------------------------------------------------------


def _channel_name(text: str) -> str:
    """argparse type: a valid channel name (also accepts ``/dev/shm/shmchan.NAME``)."""
    full = os.path.join(SHM_DIR, PREFIX)
    if text.startswith(full):
        text = text[len(full) :]
    try:
        return check_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _shm_path(name: str) -> str:
    return os.path.join(SHM_DIR, PREFIX + name)


def open_quietly(name: str, *, foreign: bool, timeout: float = OPEN_TIMEOUT) -> Channel:
    """Open ``name`` for inspection (no writer or reader is attached), or raise :class:`Failure`
    with one clear sentence."""
    try:
        return Channel.open(name, timeout=timeout, allow_foreign=foreign)
    except E.ChannelNotFoundError:
        raise Failure(f"no channel named {name!r} ({_shm_path(name)} does not exist)") from None
    except E.ChannelPermissionError as exc:
        hint = "" if foreign else " (pass --foreign to inspect it anyway)"
        raise Failure(_error_text(exc) + hint) from None
    except (E.ShmchanError, OSError) as exc:
        raise Failure(_error_text(exc)) from None


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
    assert info is not None
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


def _jsonable(v: Any, limit: int) -> tuple[Any, bool]:
    """A numpy value as JSON data: records become objects, arrays lists (only their first
    ``limit`` elements, flattened, when larger: then the flag is true)."""
    if isinstance(v, np.void) and v.dtype.names:
        out, cut = {}, False
        for name in v.dtype.names:
            out[name], c = _jsonable(v[name], limit)
            cut = cut or c
        return out, cut
    if isinstance(v, np.ndarray):
        if v.dtype.names:
            flat = v.reshape(-1)
            items = [_jsonable(x, limit) for x in flat[:limit]]
            return [x for x, _ in items], flat.size > limit or any(c for _, c in items)
        if v.size > limit:
            return [_leaf(x) for x in v.reshape(-1)[:limit].tolist()], True
        return _leaves(v.tolist()), False
    if isinstance(v, np.generic):
        return _leaf(v.item()), False
    return _leaf(v), False


def _leaves(x: Any) -> Any:
    return [_leaves(y) for y in x] if isinstance(x, list) else _leaf(x)


def _leaf(x: Any) -> Any:
    if isinstance(x, bool | int | str) or x is None:
        return x
    if isinstance(x, float):
        return x if math.isfinite(x) else str(x)
    if isinstance(x, bytes):
        return x.decode("ascii", "backslashreplace")
    if isinstance(x, complex):
        return [_leaf(x.real), _leaf(x.imag)]
    if isinstance(x, tuple | list):
        return [_leaf(y) for y in x]
    return str(x)


def format_value(v: Any, width: int = VALUE_WIDTH) -> str:
    """A numpy value on one line: ``seq=1 arr=[0, 1, 2, ..., 53]``; long arrays abbreviated, and
    the whole cut at ``width`` characters."""
    text = _format_value(v)
    return text if len(text) <= width else text[: width - 4] + " ..."


def _format_value(v: Any) -> str:
    if isinstance(v, np.void) and v.dtype.names:
        return " ".join(f"{n}={_format_value(v[n])}" for n in v.dtype.names)
    if isinstance(v, np.ndarray):
        if v.dtype.names:
            return "[" + ", ".join("{" + _format_value(x) + "}" for x in v.reshape(-1)[:3]) + \
                (", ...]" if v.size > 3 else "]")
        return np.array2string(v, separator=", ", threshold=8, edgeitems=3, max_line_width=1 << 30)
    if isinstance(v, np.generic):
        return str(v.item())
    return str(v)


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
            "stale": is_stale(name),
            "error": None,
        }
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


# ---------------------------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------------------------


def _emit_json(data: Any) -> None:
    print(json.dumps(data, sort_keys=False), flush=True)


def _readers_text(r: JsonDict) -> str:
    """The READER cell of a broadcast channel: live readers of the places, and the dead ones."""
    if not r["readers_attached"]:
        return f"0 of {r['max_readers']}"
    dead = f", {r['readers_dead']} dead" if r["readers_dead"] else ""
    return f"{r['readers_alive']} of {r['max_readers']}{dead}"


def _ls_cells(r: JsonDict) -> list[str]:
    """SLOTS, FILL and READER of an ls row, by kind."""
    if r["kind"] == "state":
        size = "-" if r["value_size"] is None else human_size(r["value_size"])
        slots = f"{size} value" if r["dtype"] else f"{size} (max {human_size(r['max_size'])})"
        return [slots, f"v{r['version']}", "any"]
    slots = f"{human_size(r['slot_size'])} x {r['capacity']}"
    fill = f"{r['fill']}/{r['capacity']}"
    if r["kind"] == "broadcast":
        return [slots, fill, _readers_text(r)]
    return [slots, fill, _peer_text(r["reader"])]


def cmd_ls(args: argparse.Namespace) -> int:
    """``shmchan ls``: a table of channels."""
    rows = list_channels(args.all)
    if args.json:
        _emit_json(rows)
        return 0
    if not rows:
        print("no channels" + ("" if args.all else " (of this user; --all for everybody's)"))
        return 0
    headers = ["NAME", "KIND", "SLOTS", "MEMORY", "FILL", "WRITER", "READER", "SCHEMA", "AGE"]
    if args.all:
        headers.append("OWNER")
    headers.append("STATE")
    cells = []
    for r in rows:
        if r["error"] is None:
            slots, fill, reader = _ls_cells(r)
            c = [r["name"], r["kind"], slots, human_size(r["nbytes"]), fill, _peer_text(r["writer"]), reader,
                 _schema_short(r["schema"], r), human_age(r["age_s"])]
            state = "stale" if r["stale"] else "ok"
            if r.get("schema_error"):
                state += f" (descriptor: {r['schema_error']})"
            if r.get("bridges"):
                state += f", {bridge_status.ls_note(r['bridges'])}"
        else:
            c = [r["name"], "?", "-", "-" if r["file_size"] is None else human_size(r["file_size"]),
                 "-", "-", "-", "-", "-"]
            state = ("stale; " if r["stale"] else "") + f"error: {r['error']}"
        if args.all:
            c.append(r["owner"] or "?")
        c.append(state)
        cells.append(c)
    print(table(headers, cells, right=(3, 4)))
    return 0


def cmd_stat(args: argparse.Namespace) -> int:
    """``shmchan stat NAME``: header, geometry, positions, statistics, schema and metadata."""
    with open_quietly(args.name, foreign=args.foreign) as ch:
        d = describe(ch, full=True)
    try:
        st = os.stat(_shm_path(args.name))
        d["owner"], d["mode"] = _user(st.st_uid), f"{stat_mod.S_IMODE(st.st_mode):04o}"
    except OSError:
        d["owner"], d["mode"] = None, None  # removed meanwhile: what we read is still right
    d["stale"] = is_stale(args.name)
    d["open_by"] = holders([args.name])[args.name]
    if args.json:
        _emit_json(d)
        return 0
    print("\n".join(format_stat(d)))
    return 0


def _peer_long(p: JsonDict) -> str:
    if p["state"] == "none":
        return "none attached"
    if p["state"] == "attached":
        return f"pid {p['pid']}, attached, {'alive' if p['alive'] else 'DEAD (a new one may attach)'}"
    return f"closed (last pid {p['pid']})" if p["pid"] else "closed"


def format_stat(d: JsonDict) -> list[str]:
    """The human ``stat`` report of :func:`describe` data (with owner, mode, stale, open_by)."""
    created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(d["created"]))
    kind = d["kind"] + (f", policy {d['policy']}" if d["kind"] == "broadcast" else "")
    lines = _pairs(f"channel {d['name']}", [
        ("path", str(d["path"])),
        ("kind", f"{kind} (layout {d['layout_version']})"),
        ("owner", f"{d['owner']}, mode {d['mode']}" if d["owner"] else "? (removed from /dev/shm)"),
        ("creator", f"pid {d['creator_pid']} ({'alive' if d['creator_alive'] else 'gone'})"),
        ("created", f"{created} ({human_age(d['age_s'])} ago)"),
        ("state", "stale (no process holds it; shmchan gc removes it)" if d["stale"] else "in use"),
        ("open by", ", ".join(f"pid {p}" for p in d["open_by"]) or "no other process"),
    ])
    if d["kind"] == "state":
        lines += _stat_state(d)
    elif d["kind"] == "broadcast":
        lines += _stat_broadcast(d)
    else:
        lines += _stat_spsc(d)
    lines += _stat_schema(d)
    lines += bridge_status.stat_lines(d.get("bridges"))
    return lines


def _geometry(d: JsonDict, extra: Sequence[tuple[str, str]] = ()) -> list[str]:
    return _pairs("geometry", [
        ("slot size", f"{d['slot_size']} B ({human_size(d['slot_size'])})"),
        ("capacity", f"{d['capacity']} slots"),
        *extra,
        ("slot stride", f"{d['slot_stride']} B"),
        ("slot align", f"{d['slot_align']} B"),
        ("memory", f"{d['nbytes']} B ({human_size(d['nbytes'])})"),
    ])


def _written(d: JsonDict) -> list[tuple[str, str]]:
    avg_w = d["bytes_written"] / d["messages_written"] if d["messages_written"] else 0
    return [
        ("messages written", f"{d['messages_written']}"),
        ("bytes written", f"{d['bytes_written']} ({human_size(d['bytes_written'])}, "
                          f"{human_size(avg_w)} per message)"),
    ]


def _stat_spsc(d: JsonDict) -> list[str]:
    cap = d["capacity"]
    lines = _geometry(d)
    lines += _pairs("positions", [
        ("head", f"{d['head']} (next message written)"),
        ("tail", f"{d['tail']} (oldest message not released)"),
        ("fill", f"{d['fill']}/{cap} ({100 * d['fill'] // max(cap, 1)}%)"),
    ])
    lines += _pairs("peers", [("writer", _peer_long(d["writer"])), ("reader", _peer_long(d["reader"]))])
    lines += _pairs("statistics", [
        *_written(d),
        ("messages read", f"{d['messages_read']}"),
        ("bytes read", f"{d['bytes_read']} ({human_size(d['bytes_read'])})"),
        ("full waits", f"{d['full_waits']} (writer found the ring full)"),
        ("empty waits", f"{d['empty_waits']} (reader found the ring empty)"),
        ("aborts", f"{d['aborts']} (reservations dropped)"),
    ])
    return lines


_POLICY_TEXT = {
    "block": "block (lossless: the writer waits for the slowest live reader)",
    "overwrite": "overwrite (the writer never waits; a reader it laps loses messages)",
}


def _stat_broadcast(d: JsonDict) -> list[str]:
    cap = d["capacity"]
    free = d["max_readers"] - d["readers_attached"]
    lines = _geometry(d, [
        ("policy", str(_POLICY_TEXT.get(d["policy"], d["policy"]))),
        ("max readers", f"{d['max_readers']} ({free} place{'' if free == 1 else 's'} free"
                        f"{', and those of dead readers' if d['readers_dead'] else ''})"),
    ])
    first, end = d["ring_first"], d["ring_end"]
    ring = f"positions {first}..{end - 1} ({end - first} messages; tail shows them)" if end > first else "empty"
    if d["slowest_reader"] is None:
        slowest = f"{d['tail']} (no live reader: messages go to nobody)"
    else:
        p = next(p for p in d["readers"] if p["index"] == d["slowest_reader"])
        slowest = f"{d['tail']} (reader {p['index']}, pid {p['pid']}, {p['behind']} behind)"
    lines += _pairs("positions", [
        ("head", f"{d['head']} (next message written)"),
        ("ring", ring),
        ("slowest", slowest),
        ("fill", f"{d['fill']}/{cap} ({100 * d['fill'] // max(cap, 1)}%) of the slowest live reader"),
    ])
    alive, dead = d["readers_alive"], d["readers_dead"]
    lines += _pairs("peers", [
        ("writer", _peer_long(d["writer"])),
        ("readers", f"{alive} alive" + (f", {dead} DEAD (their place is taken over by the next reader "
                                        f"to attach)" if dead else "")),
    ])
    if d["readers"]:
        rows = []
        for p in d["readers"]:
            attached = p["state"] == "attached"
            state = ("alive" if p["alive"] else "DEAD") if attached else p["state"]
            behind = "-" if p["behind"] is None else str(p["behind"]) + (" lapped" if p["lapped"] else "")
            rows.append([str(p["index"]), str(p["pid"] or "-"), state, str(p["position"]), behind,
                         str(p["messages"]), human_size(p["bytes"]), str(p["lost"]), str(p["empty_waits"])])
        text = table(["PLACE", "PID", "STATE", "POSITION", "BEHIND", "MESSAGES", "BYTES", "LOST", "EMPTY WAITS"],
                     rows, right=(1, 3, 4, 5, 6, 7, 8))
        lines.append("reader places (counters since each reader attached; closed places keep their last)")
        lines += ["  " + line for line in text.splitlines()]
    lines += _pairs("statistics", [
        *_written(d),
        ("messages read", f"{d['messages_read']} (all reader places)"),
        ("bytes read", f"{d['bytes_read']} ({human_size(d['bytes_read'])})"),
        ("lost", f"{d['lost']} (overwritten before a reader took them)"),
        ("full waits", f"{d['full_waits']} (writer found the ring full)"),
        ("empty waits", f"{d['empty_waits']} (readers found the ring empty)"),
        ("aborts", f"{d['aborts']} (reservations dropped)"),
    ])
    return lines


def _stat_state(d: JsonDict) -> list[str]:
    size = "none published yet" if d["value_size"] is None else f"{d['value_size']} B"
    lines = _pairs("board", [
        ("version", f"{d['version']}" + (" (nothing published yet)" if not d["version"] else "")),
        ("value size", size + ("" if d["dtype"] else f" (at most {d['max_size']} B)")),
        ("dtype", d["dtype"] or "none (FlatBuffers or raw bytes)"),
        ("memory", f"{d['nbytes']} B ({human_size(d['nbytes'])}; 2 slots of {d['slot_size']} B)"),
    ])
    lines += _pairs("peers", [
        ("writer", _peer_long(d["writer"])),
        ("readers", "any process that opens it (readers attach nothing; see 'open by')"),
    ])
    lines += _pairs("statistics", [
        ("versions published", f"{d['messages_written']}"),
        ("bytes published", f"{d['bytes_written']} ({human_size(d['bytes_written'])})"),
        ("aborts", f"{d['aborts']} (publishes dropped)"),
    ])
    if d.get("value_error"):
        lines += _pairs("value", [("error", d["value_error"])])
    elif d["value_version"]:
        lines.append(f"value (version {d['value_version']})")
        lines.append("  " + (str(d["value_text"]) if "value_text" in d else _value_line(d["value_summary"])))
    return lines


def _stat_schema(d: JsonDict) -> list[str]:
    sch = d["schema"]
    items: list[tuple[str, str]] = []
    if sch is None:
        items.append(("payload", "raw bytes (no descriptor)"))
    elif not sch["channel_info"]:
        items.append(("descriptor", f"{sch['descriptor_size']} B, not a ChannelInfo: {d.get('schema_error')}"))
    else:
        p = sch["payload"]
        items.append(("payload", "raw bytes (no payload schema)" if p is None else
                      f"{p['name']} (identifier {p['file_identifier'] or '-'}, fingerprint {p['fingerprint']}"
                      f"{', reflection data stored' if p['bfbs_stored'] else ''})"))
        if sch["dtype"]:
            items.append(("dtype", str(sch["dtype"])))
        if sch["shape"] is not None:
            items.append(("shape", "x".join("*" if x == -1 else str(x) for x in sch["shape"]) or "()"))
        if sch.get("numpy_descr"):
            items.append(("numpy descr", str(sch["numpy_descr"])))
        items.append(("descriptor", f"{sch['descriptor_size']} B ChannelInfo"))
        if d.get("schema_error"):
            items.append(("warning", f"descriptor: {d['schema_error']}"))
    lines = _pairs("schema", items)
    if sch and sch.get("metadata"):
        lines += _pairs("metadata", sorted(sch["metadata"].items()))
    return lines


# ---------------------------------------------------------------------------------------------
# hz
# ---------------------------------------------------------------------------------------------


@dataclass
class _Sample:
    t: float
    st: ChannelStats
    places: list[ReaderPlace]


def _sample(ch: Channel) -> _Sample:
    places = ch.readers() if isinstance(ch, Broadcast) else []
    return _Sample(time.monotonic(), ch.stats(), places)


def _writer_word(st: ChannelStats) -> str:
    return st.writer_state if st.writer_state != "attached" or st.writer_alive else "dead"


def hz_report(a: _Sample, b: _Sample) -> JsonDict:
    """Rates between two samples of a SPSC channel's counters."""
    dt = max(b.t - a.t, 1e-9)
    dmw = b.st.messages_written - a.st.messages_written
    dbw = b.st.bytes_written - a.st.bytes_written
    dmr = b.st.messages_read - a.st.messages_read
    dbr = b.st.bytes_read - a.st.bytes_read
    return {
        "kind": "spsc",
        "interval_s": round(dt, 6),
        "write_hz": dmw / dt,
        "write_bytes_per_s": dbw / dt,
        "read_hz": dmr / dt,
        "read_bytes_per_s": dbr / dt,
        "messages_written": dmw,
        "messages_read": dmr,
        "avg_message_bytes": dbw / dmw if dmw else 0.0,
        "full_waits": b.st.full_waits - a.st.full_waits,
        "empty_waits": b.st.empty_waits - a.st.empty_waits,
        "fill": b.st.fill,
        "capacity": b.st.capacity,
        "writer": _writer_word(b.st),
        "reader": b.st.reader_state if b.st.reader_state != "attached" or b.st.reader_alive else "dead",
    }


def _place_delta(a: ReaderPlace | None, b: ReaderPlace) -> tuple[int, int, int, int, bool]:
    """(messages, bytes, lost, empty waits) a place's reader did between two samples, and whether
    it attached meanwhile (its counters restarted: the deltas are what it did since)."""
    same = a is not None and a.state != "none" and a.pid == b.pid and a.messages <= b.messages and \
        a.bytes <= b.bytes and a.lost <= b.lost and a.empty_waits <= b.empty_waits
    if same:
        assert a is not None
        return b.messages - a.messages, b.bytes - a.bytes, b.lost - a.lost, b.empty_waits - a.empty_waits, False
    return b.messages, b.bytes, b.lost, b.empty_waits, True


def hz_report_broadcast(a: _Sample, b: _Sample, capacity: int, policy: str) -> JsonDict:
    """Rates between two samples of a broadcast channel: the writer's, the readers' together,
    and each attached reader's."""
    dt = max(b.t - a.t, 1e-9)
    dmw = b.st.messages_written - a.st.messages_written
    dbw = b.st.bytes_written - a.st.bytes_written
    before = {p.index: p for p in a.places}
    readers = []
    tm = tb = tl = te = 0
    live_positions = []
    for p in b.places:
        if p.state == "none":
            continue
        dm, db, dl, de, new = _place_delta(before.get(p.index), p)
        tm, tb, tl, te = tm + dm, tb + db, tl + dl, te + de
        if p.state != "attached":
            continue
        if p.alive:
            live_positions.append(p.position)
        readers.append({"index": p.index, "pid": p.pid or None, "alive": p.alive, "hz": dm / dt,
                        "bytes_per_s": db / dt, "messages": dm, "lost": dl, "attached_meanwhile": new,
                        "behind": max(b.st.head - p.position, 0)})
    tail = min(live_positions) if live_positions else b.st.head
    return {
        "kind": "broadcast",
        "interval_s": round(dt, 6),
        "write_hz": dmw / dt,
        "write_bytes_per_s": dbw / dt,
        "read_hz": tm / dt,  # all readers together
        "read_bytes_per_s": tb / dt,
        "messages_written": dmw,
        "messages_read": tm,
        "avg_message_bytes": dbw / dmw if dmw else 0.0,
        "lost": tl,
        "full_waits": b.st.full_waits - a.st.full_waits,
        "empty_waits": te,
        "fill": min(b.st.head - tail, capacity),
        "capacity": capacity,
        "policy": policy,
        "writer": _writer_word(b.st),
        "readers_alive": sum(1 for r in readers if r["alive"]),
        "readers_dead": sum(1 for r in readers if not r["alive"]),
        "readers": readers,
    }


def hz_report_state(a: _Sample, b: _Sample) -> JsonDict:
    """Versions (publishes) per second between two samples of a state board."""
    dt = max(b.t - a.t, 1e-9)
    dv = b.st.head - a.st.head
    dbw = b.st.bytes_written - a.st.bytes_written
    dmw = b.st.messages_written - a.st.messages_written
    return {
        "kind": "state",
        "interval_s": round(dt, 6),
        "versions_per_s": dv / dt,
        "bytes_per_s": dbw / dt,
        "versions": dv,
        "avg_value_bytes": dbw / dmw if dmw else 0.0,
        "version": b.st.head,
        "writer": _writer_word(b.st),
    }


def _hz_rows(rep: JsonDict) -> tuple[list[str], list[str], list[str]]:
    """(headers, the row, lines under it) of one hz report, by kind."""
    if rep["kind"] == "state":
        return (["VERSIONS/S", "BYTES/S", "AVG VALUE", "VERSION", "WRITER"],
                [f"{rep['versions_per_s']:.1f}", human_rate(rep["bytes_per_s"]), human_size(rep["avg_value_bytes"]),
                 str(rep["version"]), rep["writer"]], [])
    row = [f"{rep['write_hz']:.1f}", human_rate(rep["write_bytes_per_s"]), f"{rep['read_hz']:.1f}",
           human_rate(rep["read_bytes_per_s"]), human_size(rep["avg_message_bytes"]),
           f"{rep['fill']}/{rep['capacity']}", str(rep["full_waits"]), str(rep["empty_waits"])]
    if rep["kind"] == "spsc":
        return (["MSG/S W", "BYTES/S W", "MSG/S R", "BYTES/S R", "AVG MSG", "FILL", "FULL", "EMPTY", "WRITER",
                 "READER"], [*row, rep["writer"], rep["reader"]], [])
    dead = f" +{rep['readers_dead']} dead" if rep["readers_dead"] else ""
    under = []
    for r in rep["readers"]:
        state = "" if r["alive"] else ", DEAD"
        new = " (attached meanwhile)" if r["attached_meanwhile"] else ""
        under.append(f"  reader {r['index']} (pid {r['pid']}{state}): {r['hz']:.1f} msg/s, "
                     f"{human_rate(r['bytes_per_s'])}, behind {r['behind']}, lost {r['lost']}{new}")
    return (["MSG/S W", "BYTES/S W", "MSG/S R", "BYTES/S R", "AVG MSG", "FILL", "FULL", "EMPTY", "LOST", "WRITER",
             "READERS"], [*row, str(rep["lost"]), rep["writer"], f"{rep['readers_alive']}{dead}"], under)


_WORDS = ("WRITER", "READER", "READERS")  # hz columns that are not numbers


def cmd_hz(args: argparse.Namespace) -> int:
    """``shmchan hz NAME``: message and byte rates, one report per interval."""
    if args.interval <= 0:
        raise UsageError("--interval must be positive")
    count = 1 if args.once else args.count
    with open_quietly(args.name, foreign=args.foreign) as ch:
        kind = _kind(ch)
        prev = _sample(ch)
        n = 0
        if not args.json:
            what = "versions" if kind == "state" else "rates"
            print(f"{args.name}: {kind}, {what} every {args.interval:g} s" + ("" if count else " (Ctrl-C stops)"),
                  flush=True)
        try:
            while count is None or n < count:
                time.sleep(max(prev.t + args.interval - time.monotonic(), 0))
                cur = _sample(ch)
                if isinstance(ch, Broadcast):
                    rep = hz_report_broadcast(prev, cur, ch.capacity, ch.policy)
                elif isinstance(ch, State):
                    rep = hz_report_state(prev, cur)
                else:
                    rep = hz_report(prev, cur)
                prev = cur
                n += 1
                if args.json:
                    _emit_json({"name": args.name, **rep})
                    continue
                headers, row, under = _hz_rows(rep)
                text = table(headers, [row], right=[i for i, h in enumerate(headers) if h not in _WORDS])
                print(text if n == 1 else text.splitlines()[1], flush=True)
                for line in under:
                    print(line, flush=True)
        except KeyboardInterrupt:
            pass
    return 0


# ---------------------------------------------------------------------------------------------
# tail
# ---------------------------------------------------------------------------------------------


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


def _tail_line(pos: int, m: JsonDict) -> str:
    return f"#{pos:<6} {human_size(m['nbytes']):>10}  " + _value_line(m)


def _payload_kind(ch: Channel) -> tuple[str | None, str | None]:
    """("frame" | "tensor" | "other" | None, payload schema name) from the channel's ChannelInfo."""
    try:
        info = ch.info
    except (S.DecodeError, E.ShmchanError, ValueError):
        return None, None
    if info is None or info.payload is None:
        return None, None
    return {"SHFR": "frame", "SHTN": "tensor"}.get(info.payload.file_identifier, "other"), info.payload.name


def cmd_tail(args: argparse.Namespace) -> int:
    """``shmchan tail NAME``: print messages (or a state board's values) as they pass, without
    taking them."""
    if args.count is not None and args.count < 0:
        raise UsageError("--count must not be negative")
    if args.timeout is not None and args.timeout < 0:
        raise UsageError("--timeout must not be negative")
    if args.new and args.last is not None:
        raise UsageError("give --new or --last, not both")
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    with open_quietly(args.name, foreign=args.foreign) as ch:
        if isinstance(ch, State):
            _tail_state(args, ch, deadline)
        else:
            _tail_ring(args, ch, deadline)
    return 0


def _tail_ring(args: argparse.Namespace, ch: Channel, deadline: float | None) -> None:
    """tail of a SPSC or broadcast ring: copies of the messages it holds, oldest first."""
    kind, schema_name = _payload_kind(ch)
    first, end = _ring_range(ch)
    if args.new:
        pos = end
    elif args.last is not None:
        pos = max(first, end - args.last)
    else:
        pos = first
    why = ("overwritten by the writer" if isinstance(ch, Broadcast) else "released by the reader") + \
        " before tail could copy them"
    stop = None if args.follow else end  # without --follow: what the ring holds now, not what comes
    printed = unseen = 0
    try:
        while args.count is None or printed < args.count:
            if deadline is not None and time.monotonic() >= deadline:
                break
            if stop is not None and pos >= stop:
                break
            if pos >= ch.stats().head:
                if not args.follow:
                    break
                time.sleep(TAIL_POLL)
                continue
            data, first, _end = ch.inspect(pos)
            if data is None:
                if first > pos:  # gone (released, or overwritten) before we looked
                    unseen += (first if stop is None else min(first, stop)) - pos
                    pos = first
                continue  # else the writer was rewriting it: look again
            m = summarize(data, None if kind == "other" else kind, args.bytes)
            if kind == "other":
                m["schema"] = schema_name
            unseen = _tail_unseen(args, unseen, why)
            if args.json:
                _emit_json({"pos": pos, **m})
            else:
                print(_tail_line(pos, m), flush=True)
            pos += 1
            printed += 1
    except KeyboardInterrupt:
        pass
    _tail_unseen(args, unseen, why)


def _tail_state(args: argparse.Namespace, ch: State, deadline: float | None) -> None:
    """tail of a state board: its value and version, and with --follow each new version (the
    board is polled: tail never makes the writer wake it)."""
    from_now = args.new or args.last == 0
    shown = ch.version if from_now else 0  # the last version printed (or, with --new, skipped)
    printed = 0
    try:
        while args.count is None or printed < args.count:
            if deadline is not None and time.monotonic() >= deadline:
                break
            if ch.version <= shown:
                if not args.follow:
                    break
                time.sleep(TAIL_POLL)
                continue
            value, version = ch.read()
            if version <= shown:
                continue
            rec = _state_record(ch, value, args.bytes)
            # versions published since the last one shown that tail never saw (the board holds one)
            skipped = version - shown - 1 if printed or from_now else 0
            if args.json:
                _emit_json({"version": version, **rec, "skipped": skipped})
            else:
                more = f"  ({skipped} version{'' if skipped == 1 else 's'} skipped)" if skipped else ""
                print(f"v{version:<6} {human_size(rec['nbytes']):>10}  {_value_line(rec)}{more}", flush=True)
            shown = version
            printed += 1
            if not args.follow:
                break  # the board holds one value
    except KeyboardInterrupt:
        pass


def _state_record(ch: State, value: Any, nbytes_shown: int) -> JsonDict:
    """What tail shows of a state board's value: a numpy value (as JSON, and as text), or the
    summary of a FlatBuffers or raw value."""
    dt = ch.dtype
    if dt is None:
        j = _state_value_json(ch, value, nbytes_shown)
        return dict(j["value_summary"])
    j = _state_value_json(ch, value)
    return {"nbytes": dt.itemsize, "type": "numpy", "dtype": str(dt), "value": j["value"],
            "value_truncated": j["value_truncated"], "text": j["value_text"]}


def _tail_unseen(args: argparse.Namespace, n: int, why: str) -> int:
    """Say that ``n`` messages went by without tail seeing them (if any); returns 0."""
    if n:
        if args.json:
            _emit_json({"unseen": n})
        else:
            print(f"... {n} message(s) passed unseen ({why})", flush=True)
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    """``shmchan rm NAME...``: remove channel names; processes that have them open keep working."""
    users = holders(args.names)
    results = []
    failed = False
    for name in args.names:
        try:
            unlink(name)
        except E.ChannelNotFoundError:
            failed = True
            print(f"shmchan: no channel named {name!r} ({_shm_path(name)} does not exist)", file=sys.stderr)
            continue
        except (E.ShmchanError, OSError) as exc:
            failed = True
            print(f"shmchan: {_error_text(exc)}", file=sys.stderr)
            continue
        results.append({"name": name, "removed": True, "open_by": users[name]})
        if not args.json:
            pids = users[name]
            keep = (f"; still open in pid {', '.join(map(str, pids))}, which keep working until they close it"
                    if pids else "; processes that have it open keep working until they close it")
            print(f"removed {name}{keep}")
    if args.json:
        _emit_json(results)
    return 1 if failed else 0


def cmd_gc(args: argparse.Namespace) -> int:
    """``shmchan gc``: remove stale channels (no process holds them open), or list them."""
    if args.names:
        found = []
        for name in args.names:
            if args.dry_run:
                if is_stale(name):
                    found.append(name)
            elif _reclaim_stale_or_false(name):
                found.append(name)
    else:
        found = cleanup_stale(dry_run=args.dry_run)
    if args.json:
        _emit_json({"dry_run": args.dry_run, "stale" if args.dry_run else "removed": found})
        return 0
    if not found:
        print("no stale channels")
    for name in found:
        print(f"{'would remove' if args.dry_run else 'removed'} stale channel {name}")
    return 0


# ---------------------------------------------------------------------------------------------
# registration
# ---------------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """A subcommand parser whose usage errors are one line: ``shmchan: ls: ...`` (exit 2)."""

    def error(self, message: str) -> NoReturn:
        sub = self.prog.split()[-1]
        self.exit(2, f"shmchan: {sub}: {message} (see 'shmchan {sub} --help')\n")

    def parse_known_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                         namespace: argparse.Namespace | None = None) -> tuple[argparse.Namespace, list[str]]:
        ns, extra = super().parse_known_args(args, namespace)
        if extra:
            self.error(f"unrecognized arguments: {' '.join(extra)}")
        return ns, extra


def _run(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Wrap a command: errors become one ``shmchan: ...`` line and an exit status."""

    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except UsageError as exc:
            print(f"shmchan: {args.command}: {exc} (see 'shmchan {args.command} --help')", file=sys.stderr)
            return 2
        except Failure as exc:
            print(f"shmchan: {exc}", file=sys.stderr)
            return 1
        except (E.ShmchanError, OSError, ValueError) as exc:
            if isinstance(exc, BrokenPipeError):
                return _broken_pipe()
            print(f"shmchan: {args.command}: {_error_text(exc)}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130

    run.__doc__ = fn.__doc__
    return run


def _broken_pipe() -> int:
    """stdout's reader went away (``shmchan tail -f | head``): exit quietly."""
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    return 0


def _sub(sub: Any, name: str, help_: str, description: str) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(name, help=help_, description=description,
                                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.__class__ = _Parser
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return p


def _foreign(p: argparse.ArgumentParser) -> None:
    p.add_argument("--foreign", action="store_true",
                   help="inspect a channel owned by another user or writable by group/others")


def _positive(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return v


def _count(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {v}")
    return v


def _nonnegative(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {v}")
    return v


def add_parsers(sub: Any) -> None:
    """Register ``ls``, ``stat``, ``hz``, ``tail``, ``rm`` and ``gc`` on the ``shmchan`` subparsers."""
    p = _sub(sub, "ls", "list channels",
             "List the channels in /dev/shm: kind (spsc, broadcast or state, from the header), geometry,\n"
             "memory, fill, the writer and reader, schema, age, and whether the channel is stale.\n"
             "  spsc       FILL: messages not yet released; READER: its pid ('dead' if its process died)\n"
             "  broadcast  FILL: messages the slowest live reader has not released; READER: live readers\n"
             "             of the reader places (and dead ones: attached, their process gone)\n"
             "  state      SLOTS: the value's size; FILL: the version ('v12'); READER: 'any' (readers of a\n"
             "             board attach nothing)\n"
             "A channel that cannot be opened is listed with the error. --json carries every field.")
    p.add_argument("-a", "--all", action="store_true",
                   help="include other users' channels (and group/other-writable ones) where readable")
    p.set_defaults(func=_run(cmd_ls))

    p = _sub(sub, "stat", "show everything about one channel",
             "Header, geometry, positions, counters, peers, schema and metadata of a channel:\n"
             "  spsc       head, tail and fill; the writer and the reader\n"
             "  broadcast  policy, max readers, the ring's range; the writer and a table of the reader\n"
             "             places (pid, alive or dead, position, how far behind head, messages, lost)\n"
             "  state      version, value size, dtype or schema, the writer, and the current value\n"
             "             (numpy values abbreviated when large; FlatBuffers and raw values summarised)\n"
             "Opens it without attaching a writer or reader: the pipeline is not disturbed.")
    p.add_argument("name", metavar="NAME", type=_channel_name, help="channel name")
    _foreign(p)
    p.set_defaults(func=_run(cmd_stat))

    p = _sub(sub, "hz", "live message (or version) and byte rates",
             "Rates from the channel's counters, one line per interval until Ctrl-C (or --count/--once):\n"
             "  spsc       messages and bytes per second written and read\n"
             "  broadcast  the same (read: all readers together), lost messages, and a line per\n"
             "             attached reader with its own rate, how far behind it is and what it lost\n"
             "  state      versions (publishes) and bytes per second, and the version")
    p.add_argument("name", metavar="NAME", type=_channel_name, help="channel name")
    p.add_argument("-i", "--interval", type=_positive, default=1.0, metavar="S",
                   help="seconds between reports (default 1)")
    p.add_argument("-n", "--count", type=_count, default=None, metavar="N", help="stop after N reports")
    p.add_argument("--once", action="store_true", help="one report after one interval, then exit (for scripts)")
    _foreign(p)
    p.set_defaults(func=_run(cmd_hz))

    p = _sub(sub, "tail", "print messages (or a board's values) as they pass",
             "Print what a channel holds, and with --follow what comes after, without taking anything:\n"
             "the writer and the readers are not disturbed.\n"
             "  spsc       the messages in the ring (committed, not yet released by the reader)\n"
             "  broadcast  the messages the ring still holds (the newest ones, read or not)\n"
             "  state      the current value and its version; with --follow each new version (a\n"
             "             board keeps only its newest value: versions replaced in between are\n"
             "             counted as skipped)\n"
             "Frame and Tensor messages are decoded and summarised, numpy values shown, other bytes as\n"
             "hex. A message released (spsc) or overwritten (broadcast) before tail can copy it is\n"
             "missed; tail says how many it missed.")
    p.add_argument("name", metavar="NAME", type=_channel_name, help="channel name")
    p.add_argument("-n", "--count", type=_count, default=None, metavar="N", help="stop after N messages (or values)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new messages (until Ctrl-C)")
    p.add_argument("-t", "--timeout", type=_positive, default=None, metavar="S",
                   help="with --follow: stop after S seconds")
    p.add_argument("--new", action="store_true", help="skip what the channel holds now: only messages after this")
    p.add_argument("-l", "--last", type=_nonnegative, default=None, metavar="N",
                   help="start with the newest N messages the channel holds (default: all it holds)")
    p.add_argument("--bytes", type=_count, default=32, metavar="B",
                   help="raw messages and values: show the first B bytes as hex (default 32)")
    _foreign(p)
    p.set_defaults(func=_run(cmd_tail))

    p = _sub(sub, "rm", "remove channels",
             "Remove channel names from /dev/shm. Processes that have a channel open keep working\n"
             "until they close it; new opens fail.")
    p.add_argument("names", metavar="NAME", nargs="+", type=_channel_name, help="channel name(s)")
    p.set_defaults(func=_run(cmd_rm))

    p = _sub(sub, "gc", "remove stale channels",
             "Remove stale channels: those no process holds open any more (their creator died, and so\n"
             "did every writer, reader, and process that merely opened them), of any kind.\n"
             "A channel in use is never touched, nor one created in the last 100 ms.")
    p.add_argument("names", metavar="NAME", nargs="*", type=_channel_name,
                   help="only consider these channels (default: all)")
    p.add_argument("-n", "--dry-run", action="store_true", help="only list the stale channels")
    p.set_defaults(func=_run(cmd_gc))
