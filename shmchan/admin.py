"""The operations subcommands of ``shmchan``: ``ls``, ``stat``, ``hz``, ``tail``, ``rm`` and ``gc``.

They look at channels from the outside. A channel is opened with a short timeout and never gets a
writer or a reader attached, so inspecting a running pipeline cannot disturb it: ``stat`` and ``hz``
read the counters in the header, ``tail`` copies messages with :meth:`Channel.inspect` (a
non-consuming, never-torn copy of a message still held in the ring).

Every command takes ``--json``. Human output is an aligned table; an error is one line on stderr
(``shmchan: ...``) with exit status 1 (2 for a usage error).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pwd
import stat as stat_mod
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from . import errors as E
from . import schema as S
from ._names import check_name
from .channel import Channel, ChannelStats, cleanup_stale, unlink
from .channel import is_stale as _is_stale
from .channel import reclaim_stale as _reclaim_stale

__all__ = ["add_parsers", "list_channels"]

SHM_DIR = "/dev/shm"
PREFIX = "shmchan."
OPEN_TIMEOUT = 0.2  # seconds a single-channel command waits for a creator still initialising
TAIL_POLL = 0.002  # seconds between looks at the ring while tail waits for messages
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
        "metadata": dict(info.metadata),
    }, None


def _schema_short(sch: JsonDict | None) -> str:
    if sch is None:
        return "raw"
    if not sch["channel_info"]:
        return f"custom descriptor ({sch['descriptor_size']} B)"
    text = "raw" if sch["payload"] is None else str(sch["payload"]["name"]).removeprefix("shmchan.fb.")
    if sch["dtype"] or sch["shape"]:
        dims = ",".join("*" if d == -1 else str(d) for d in sch["shape"] or [])
        text += f" {sch['dtype'] or ''}[{dims}]" if sch["shape"] is not None else f" {sch['dtype']}"
    return text


def describe(ch: Channel) -> JsonDict:
    """Everything ``stat`` reports about an open channel, as JSON-ready data."""
    st = ch.stats()
    sch, sch_err = _schema_json(ch)
    now = time.time()
    d: JsonDict = {
        "name": ch.name,
        "path": _shm_path(ch.name) if ch.name else None,
        "kind": (sch or {}).get("kind") or "spsc",
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
        "reader": _peer(st.reader_state, st.reader_pid, st.reader_alive),
        **_stats_json(st),
        "schema": sch,
    }
    if sch_err:
        d["schema_error"] = sch_err
    return d


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
            c = [r["name"], r["kind"], f"{human_size(r['slot_size'])} x {r['capacity']}", human_size(r["nbytes"]),
                 f"{r['fill']}/{r['capacity']}", _peer_text(r["writer"]), _peer_text(r["reader"]),
                 _schema_short(r["schema"]), human_age(r["age_s"])]
            state = "stale" if r["stale"] else "ok"
            if r.get("schema_error"):
                state += f" (descriptor: {r['schema_error']})"
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
        d = describe(ch)
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


def format_stat(d: JsonDict) -> list[str]:
    """The human ``stat`` report of :func:`describe` data (with owner, mode, stale, open_by)."""
    created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(d["created"]))
    cap = d["capacity"]
    lines = _pairs(f"channel {d['name']}", [
        ("path", str(d["path"])),
        ("kind", f"{d['kind']} (layout {d['layout_version']})"),
        ("owner", f"{d['owner']}, mode {d['mode']}" if d["owner"] else "? (removed from /dev/shm)"),
        ("creator", f"pid {d['creator_pid']} ({'alive' if d['creator_alive'] else 'gone'})"),
        ("created", f"{created} ({human_age(d['age_s'])} ago)"),
        ("state", "stale (no process holds it; shmchan gc removes it)" if d["stale"] else "in use"),
        ("open by", ", ".join(f"pid {p}" for p in d["open_by"]) or "no other process"),
    ])
    lines += _pairs("geometry", [
        ("slot size", f"{d['slot_size']} B ({human_size(d['slot_size'])})"),
        ("capacity", f"{cap} slots"),
        ("slot stride", f"{d['slot_stride']} B"),
        ("slot align", f"{d['slot_align']} B"),
        ("memory", f"{d['nbytes']} B ({human_size(d['nbytes'])})"),
    ])
    lines += _pairs("positions", [
        ("head", f"{d['head']} (next message written)"),
        ("tail", f"{d['tail']} (oldest message not released)"),
        ("fill", f"{d['fill']}/{cap} ({100 * d['fill'] // max(cap, 1)}%)"),
    ])

    def peer(p: JsonDict) -> str:
        if p["state"] == "none":
            return "none attached"
        if p["state"] == "attached":
            return f"pid {p['pid']}, attached, {'alive' if p['alive'] else 'DEAD (a new one may attach)'}"
        return f"closed (last pid {p['pid']})" if p["pid"] else "closed"

    lines += _pairs("peers", [("writer", peer(d["writer"])), ("reader", peer(d["reader"]))])
    avg_w = d["bytes_written"] / d["messages_written"] if d["messages_written"] else 0
    lines += _pairs("statistics", [
        ("messages written", f"{d['messages_written']}"),
        ("bytes written", f"{d['bytes_written']} ({human_size(d['bytes_written'])}, "
                          f"{human_size(avg_w)} per message)"),
        ("messages read", f"{d['messages_read']}"),
        ("bytes read", f"{d['bytes_read']} ({human_size(d['bytes_read'])})"),
        ("full waits", f"{d['full_waits']} (writer found the ring full)"),
        ("empty waits", f"{d['empty_waits']} (reader found the ring empty)"),
        ("aborts", f"{d['aborts']} (reservations dropped)"),
    ])
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
        items.append(("descriptor", f"{sch['descriptor_size']} B ChannelInfo"))
    lines += _pairs("schema", items)
    if sch and sch.get("metadata"):
        lines += _pairs("metadata", sorted(sch["metadata"].items()))
    return lines


@dataclass
class _Sample:
    t: float
    st: ChannelStats


def hz_report(a: _Sample, b: _Sample) -> JsonDict:
    """Rates between two samples of a channel's counters."""
    dt = max(b.t - a.t, 1e-9)
    dmw = b.st.messages_written - a.st.messages_written
    dbw = b.st.bytes_written - a.st.bytes_written
    dmr = b.st.messages_read - a.st.messages_read
    dbr = b.st.bytes_read - a.st.bytes_read
    return {
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
        "writer": b.st.writer_state if b.st.writer_state != "attached" or b.st.writer_alive else "dead",
        "reader": b.st.reader_state if b.st.reader_state != "attached" or b.st.reader_alive else "dead",
    }


def cmd_hz(args: argparse.Namespace) -> int:
    """``shmchan hz NAME``: message and byte rates, one report per interval."""
    if args.interval <= 0:
        raise UsageError("--interval must be positive")
    count = 1 if args.once else args.count
    headers = ["MSG/S W", "BYTES/S W", "MSG/S R", "BYTES/S R", "AVG MSG", "FILL", "FULL", "EMPTY", "WRITER",
               "READER"]
    with open_quietly(args.name, foreign=args.foreign) as ch:
        prev = _Sample(time.monotonic(), ch.stats())
        n = 0
        if not args.json:
            print(f"{args.name}: rates every {args.interval:g} s" + ("" if count else " (Ctrl-C stops)"), flush=True)
        try:
            while count is None or n < count:
                time.sleep(max(prev.t + args.interval - time.monotonic(), 0))
                cur = _Sample(time.monotonic(), ch.stats())
                rep = hz_report(prev, cur)
                prev = cur
                n += 1
                if args.json:
                    _emit_json({"name": args.name, **rep})
                    continue
                row = [f"{rep['write_hz']:.1f}", human_rate(rep["write_bytes_per_s"]), f"{rep['read_hz']:.1f}",
                       human_rate(rep["read_bytes_per_s"]), human_size(rep["avg_message_bytes"]),
                       f"{rep['fill']}/{rep['capacity']}", str(rep["full_waits"]), str(rep["empty_waits"]),
                       rep["writer"], rep["reader"]]
                text = table(headers, [row], right=range(8))
                print(text if n == 1 else text.splitlines()[1], flush=True)
        except KeyboardInterrupt:
            pass
    return 0


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


def _tail_line(pos: int, m: JsonDict) -> str:
    head = f"#{pos:<6} {human_size(m['nbytes']):>10}  "
    if m["type"] == "frame":
        ts = time.strftime("%H:%M:%S", time.localtime(m["timestamp_ns"] / 1e9)) + \
            f".{m['timestamp_ns'] % 1_000_000_000 // 1000:06d}"
        stats = f" pixels min {m['pixel_min']} max {m['pixel_max']} mean {m['pixel_mean']}" if "pixel_min" in m else ""
        return (head + f"Frame seq={m['seq']} {m['width']}x{m['height']} {m['pixel_format']} ts={ts} "
                f"data={m['data_size']} B @{m['data_offset']}{stats}")
    if m["type"] == "tensor":
        shape = ",".join(map(str, m["shape"]))
        stats = f" min {m['min']} max {m['max']} mean {m['mean']}" if "min" in m else ""
        return head + f"Tensor seq={m['seq']} {m['dtype']}[{shape}]{stats} first {m['head']}"
    raw = bytes.fromhex(m["hex"])
    if not raw and not m["truncated"]:
        return head + "(empty message)"
    text = " ".join(raw[i : i + 4].hex() for i in range(0, len(raw), 4))
    ascii_ = "".join(chr(b) if 32 <= b < 127 else "." for b in raw)
    more = f" ... (+{m['nbytes'] - len(raw)} B)" if m["truncated"] else ""
    err = f"  [not a valid Frame/Tensor: {m['decode_error']}]" if "decode_error" in m else ""
    return head + f"{text}{more}  |{ascii_}|{err}"


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
    """``shmchan tail NAME``: print messages as they pass, without taking them."""
    if args.count is not None and args.count < 0:
        raise UsageError("--count must not be negative")
    if args.timeout is not None and args.timeout < 0:
        raise UsageError("--timeout must not be negative")
    printed = unseen = 0
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    with open_quietly(args.name, foreign=args.foreign) as ch:
        kind, schema_name = _payload_kind(ch)
        st = ch.stats()
        pos = st.head if args.new else st.tail
        try:
            while args.count is None or printed < args.count:
                if deadline is not None and time.monotonic() >= deadline:
                    break
                st = ch.stats()
                if pos < st.tail:  # released (and maybe overwritten) before we looked
                    unseen += st.tail - pos
                    pos = st.tail
                if pos >= st.head:
                    if not args.follow:
                        break
                    time.sleep(TAIL_POLL)
                    continue
                data, first, _end = ch.inspect(pos)
                if data is None:
                    if first > pos:
                        unseen += first - pos
                        pos = first
                    continue
                m = summarize(data, None if kind == "other" else kind, args.bytes)
                if kind == "other":
                    m["schema"] = schema_name
                unseen = _tail_unseen(args, unseen)
                if args.json:
                    _emit_json({"pos": pos, **m})
                else:
                    print(_tail_line(pos, m), flush=True)
                pos += 1
                printed += 1
        except KeyboardInterrupt:
            pass
        _tail_unseen(args, unseen)
    return 0


def _tail_unseen(args: argparse.Namespace, n: int) -> int:
    """Say that ``n`` messages went by without tail seeing them (if any); returns 0."""
    if n:
        if args.json:
            _emit_json({"unseen": n})
        else:
            print(f"... {n} message(s) passed unseen (released by the reader before tail could copy them)",
                  flush=True)
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


def add_parsers(sub: Any) -> None:
    """Register ``ls``, ``stat``, ``hz``, ``tail``, ``rm`` and ``gc`` on the ``shmchan`` subparsers."""
    p = _sub(sub, "ls", "list channels", "List the channels in /dev/shm: geometry, memory, fill, the writer and\n"
             "reader (pid; 'dead' if its process died), schema, age, and whether the channel is stale.\n"
             "A channel that cannot be opened is listed with the error.")
    p.add_argument("-a", "--all", action="store_true",
                   help="include other users' channels (and group/other-writable ones) where readable")
    p.set_defaults(func=_run(cmd_ls))

    p = _sub(sub, "stat", "show everything about one channel",
             "Header, geometry, positions, counters, writer and reader, schema and metadata of a channel.\n"
             "Opens it without attaching a writer or reader: the pipeline is not disturbed.")
    p.add_argument("name", metavar="NAME", type=_channel_name, help="channel name")
    _foreign(p)
    p.set_defaults(func=_run(cmd_stat))

    p = _sub(sub, "hz", "live message and byte rates",
             "Message and byte rates written and read, from the channel's counters, one line per\n"
             "interval until Ctrl-C (or --count/--once).")
    p.add_argument("name", metavar="NAME", type=_channel_name, help="channel name")
    p.add_argument("-i", "--interval", type=_positive, default=1.0, metavar="S",
                   help="seconds between reports (default 1)")
    p.add_argument("-n", "--count", type=_count, default=None, metavar="N", help="stop after N reports")
    p.add_argument("--once", action="store_true", help="one report after one interval, then exit (for scripts)")
    _foreign(p)
    p.set_defaults(func=_run(cmd_hz))

    p = _sub(sub, "tail", "print messages as they pass",
             "Print the messages held in the ring (committed, not yet released by the reader), and with\n"
             "--follow those that come after, without taking them: the writer and the reader are not\n"
             "disturbed. Frame and Tensor messages are decoded and summarised, other bytes shown as hex.\n"
             "A reader that releases messages at once can hide some; tail says how many it missed.")
    p.add_argument("name", metavar="NAME", type=_channel_name, help="channel name")
    p.add_argument("-n", "--count", type=_count, default=None, metavar="N", help="stop after N messages")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new messages (until Ctrl-C)")
    p.add_argument("-t", "--timeout", type=_positive, default=None, metavar="S",
                   help="with --follow: stop after S seconds")
    p.add_argument("--new", action="store_true", help="skip what the ring holds now: only messages after this")
    p.add_argument("--bytes", type=_count, default=32, metavar="B",
                   help="raw messages: show the first B bytes as hex (default 32)")
    _foreign(p)
    p.set_defaults(func=_run(cmd_tail))

    p = _sub(sub, "rm", "remove channels",
             "Remove channel names from /dev/shm. Processes that have a channel open keep working\n"
             "until they close it; new opens fail.")
    p.add_argument("names", metavar="NAME", nargs="+", type=_channel_name, help="channel name(s)")
    p.set_defaults(func=_run(cmd_rm))

    p = _sub(sub, "gc", "remove stale channels",
             "Remove stale channels: those no process holds open any more (their creator died).\n"
             "A channel in use is never touched, nor one created in the last 100 ms.")
    p.add_argument("names", metavar="NAME", nargs="*", type=_channel_name,
                   help="only consider these channels (default: all)")
    p.add_argument("-n", "--dry-run", action="store_true", help="only list the stale channels")
    p.set_defaults(func=_run(cmd_gc))
