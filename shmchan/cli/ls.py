"""``shmchan ls``: the channels in /dev/shm, one line each."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import (
    JsonDict,
    _emit_json,
    _run,
    _sub,
    human_age,
    human_size,
    table,
)
from ._describe import (
    _peer_text,
    _schema_short,
    list_channels,
)


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


def add_parser(sub: Any) -> None:
    """Register the subcommand on the ``shmchan`` subparsers."""
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

