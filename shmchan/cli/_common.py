"""What the operations subcommands share: constants, errors, formatting, argument types and the
parser that turns errors into one line."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import pwd
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import numpy as np

from .. import errors as E
from .._names import check_name
from ..channel import Channel

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


def _emit_json(data: Any) -> None:
    print(json.dumps(data, sort_keys=False), flush=True)


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
