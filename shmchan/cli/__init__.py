"""The ``shmchan`` command: ``demo``, ``bench`` and the operations subcommands.

The operations subcommands (``ls``, ``stat``, ``hz``, ``tail``, ``rm``, ``gc``) look at channels
of every kind (SPSC, broadcast, state board; the kind is the header's) from the outside. A channel
is opened with a short timeout and never gets a writer or a reader attached, so inspecting a
running pipeline cannot disturb it: ``stat`` and ``hz`` read the counters in the header (and a
broadcast channel's reader places), ``tail`` copies messages with :meth:`Channel.inspect` (a
non-consuming, never-torn copy of a message still held in the ring) and a state board's value with
:meth:`State.read`, polling for new versions (it never sleeps on the board, which would make the
writer wake it).

Every operations command takes ``--json``. Human output is an aligned table; an error is one line
on stderr (``shmchan: ...``) with exit status 1 (2 for a usage error). One module per command;
``_common`` (formatting, errors, argument types) and ``_describe`` (what a channel looks like from
the outside) are shared.
"""

from __future__ import annotations

import argparse
from typing import Any

from .._version import __version__
from ._describe import list_channels

__all__ = ["add_parsers", "list_channels", "main"]


def add_parsers(sub: Any) -> None:
    """Register ``ls``, ``stat``, ``hz``, ``tail``, ``rm`` and ``gc`` on the ``shmchan`` subparsers."""
    from . import hz, ls, rm, stat, tail

    for mod in (ls, stat, hz, tail, rm):
        mod.add_parser(sub)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``shmchan`` console script."""
    parser = argparse.ArgumentParser(prog="shmchan", description="Zero-copy shared-memory channels.")
    parser.add_argument("--version", action="version", version=f"shmchan {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    from .. import demo

    demo.add_parser(sub)
    from .. import bench

    bench.add_parser(sub)
    add_parsers(sub)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    rc: int = args.func(args)
    return rc
