"""``shmchan hz``: live message (or version) and byte rates from a channel's counters."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from typing import Any

from ..broadcast import Broadcast, ReaderPlace
from ..channel import Channel, ChannelStats
from ..state import State
from ._common import (
    JsonDict,
    UsageError,
    _channel_name,
    _count,
    _emit_json,
    _foreign,
    _positive,
    _run,
    _sub,
    human_rate,
    human_size,
    open_quietly,
    table,
)
from ._describe import (
    _kind,
    check_positions,
)


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
                    check_positions(ch)
                    rep = hz_report_broadcast(prev, cur, ch.capacity, ch.policy)
                elif isinstance(ch, State):
                    rep = hz_report_state(prev, cur)
                else:
                    check_positions(ch)  # a corrupt header is an error, not a fill of 2**64-1
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


def add_parser(sub: Any) -> None:
    """Register the subcommand on the ``shmchan`` subparsers."""
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

