"""The ``shmchan`` command."""

from __future__ import annotations

import argparse
import sys

from ._version import __version__


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``shmchan`` console script."""
    parser = argparse.ArgumentParser(prog="shmchan", description="Zero-copy shared-memory channels.")
    parser.add_argument("--version", action="version", version=f"shmchan {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    from . import demo

    demo.add_parser(sub)
    from . import bench

    bench.add_parser(sub)
    from . import admin

    admin.add_parsers(sub)
    from .bridge import _cli as bridge_cli

    bridge_cli.add_parser(sub)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    rc: int = args.func(args)
    return rc


if __name__ == "__main__":
    sys.exit(main())
