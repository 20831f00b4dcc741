"""``shmchan stat``: everything about one channel."""

from __future__ import annotations

import argparse
import os
import stat as stat_mod
import time
from collections.abc import Sequence
from typing import Any

from ._common import (
    JsonDict,
    _channel_name,
    _emit_json,
    _foreign,
    _pairs,
    _run,
    _shm_path,
    _sub,
    _user,
    human_age,
    human_size,
    open_quietly,
    table,
)
from ._describe import (
    _value_line,
    describe,
    holders,
    is_stale,
)

_POLICY_TEXT = {
    "block": "block (lossless: the writer waits for the slowest live reader)",
    "overwrite": "overwrite (the writer never waits; a reader it laps loses messages)",
}


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


def add_parser(sub: Any) -> None:
    """Register the subcommand on the ``shmchan`` subparsers."""
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

