"""``shmchan rm`` and ``shmchan gc``: remove channels, or the stale ones."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .. import errors as E
from ..channel import cleanup_stale, unlink
from ._common import (
    _channel_name,
    _emit_json,
    _error_text,
    _run,
    _shm_path,
    _sub,
)
from ._describe import (
    _reclaim_stale_or_false,
    holders,
    is_stale,
)


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


def add_parser(sub: Any) -> None:
    """Register the subcommand on the ``shmchan`` subparsers."""
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

