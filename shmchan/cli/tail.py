"""``shmchan tail``: print messages (or a board's values) as they pass, taking nothing."""

from __future__ import annotations

import argparse
import time
from typing import Any

from .. import errors as E
from ..broadcast import Broadcast
from ..channel import Channel
from ..state import State
from ._common import (
    TAIL_POLL,
    JsonDict,
    UsageError,
    _channel_name,
    _count,
    _emit_json,
    _foreign,
    _nonnegative,
    _positive,
    _run,
    _sub,
    human_size,
    open_quietly,
)
from ._describe import (
    _payload_kind,
    _ring_range,
    _state_value_json,
    _value_line,
    check_positions,
    summarize,
)

_STUCK_LOOKS = 10_000  # looks at one position the writer keeps "rewriting" before tail calls it corrupt


def _tail_line(pos: int, m: JsonDict) -> str:
    return f"#{pos:<6} {human_size(m['nbytes']):>10}  " + _value_line(m)


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
    check_positions(ch)
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
    printed = unseen = stuck = 0
    head = end  # the last head seen: the core's stats (a few system calls) only when pos reaches it
    retries = 1000  # snapshots of a ring whose writer overwrote all before tail copied one
    try:
        while args.count is None or printed < args.count:
            if deadline is not None and time.monotonic() >= deadline:
                break
            if stop is not None and pos >= stop:
                if printed == 0 and unseen and retries > 0:
                    # a writer outran every copy: look again (still a snapshot, of a later moment)
                    retries -= 1
                    pos, stop = _ring_range(ch)
                    unseen = 0
                    continue
                break
            if pos >= head:
                head = ch.stats().head
                if pos >= head:
                    if not args.follow:
                        break
                    time.sleep(TAIL_POLL)
                    continue
            data, first, head = ch.inspect(pos)
            if data is None:
                if first > pos:  # gone (released, or overwritten) before we looked
                    unseen += (first if stop is None else min(first, stop)) - pos
                    pos = first
                    stuck = 0
                    continue
                # else the writer was rewriting it: look again, but not for ever (a head a peer set
                # far beyond anything written makes a position that never becomes readable)
                stuck += 1
                if stuck > _STUCK_LOOKS:
                    raise E.CorruptChannelError(f"channel {ch._where()!r}: position {pos} stays unreadable "
                                                f"(head {ch.stats().head}): impossible positions")
                if stuck > 8:
                    time.sleep(1e-4)  # a rewrite takes microseconds: past the first looks, do not spin
                continue
            stuck = 0
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


def add_parser(sub: Any) -> None:
    """Register the subcommand on the ``shmchan`` subparsers."""
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

