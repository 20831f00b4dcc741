"""Names in /dev/shm: removing a channel's name, and finding and removing stale channels."""

from __future__ import annotations

import errno
import os
import stat
from typing import NoReturn

from . import errors as E
from ._binding import lib, raise_for
from ._names import check_name

__all__ = ["cleanup_stale", "is_stale", "not_a_file", "reclaim_stale", "unlink"]

_NOT_FILES = ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a directory"), (stat.S_ISSOCK, "a socket"),
              (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def not_a_file(where: str, is_file: bool) -> str | None:
    """What is at a channel's name when it is not a regular file ("a symbolic link", "a FIFO", ...),
    else None. Only asked to name what the core refused: the core opens every name with
    O_NOFOLLOW|O_NONBLOCK and refuses anything but a regular file (SHMCHAN_ENOTREG), so looking
    first is never needed."""
    try:
        mode = os.lstat(where if is_file else f"/dev/shm/shmchan.{where}").st_mode
    except OSError:
        return None
    return next((text for test, text in _NOT_FILES if test(mode)), None)


def _raise(rc: int, what: str, name: str) -> NoReturn:
    if (other := not_a_file(name, False)) is not None:
        raise E.IncompatibleChannelError(f"{what}: the name holds {other}, not a channel")
    raise_for(rc, what, filename=name)


def unlink(name: str) -> None:
    """Remove channel ``name`` from ``/dev/shm`` (processes that have it open keep working)."""
    check_name(name)
    rc = lib.shmchan_unlink(name.encode())
    if rc:
        raise_for(rc, f"cannot unlink channel {name!r}", filename=name)


def is_stale(name: str) -> bool:
    """Whether channel ``name`` is stale: no process holds it open any more (its creator and every
    peer are gone) and it has not changed for 100 ms. Raises :class:`ChannelNotFoundError` if
    there is no such channel."""
    check_name(name)
    rc = lib.shmchan_is_stale(name.encode())
    if rc < 0:
        _raise(rc, f"cannot tell whether channel {name!r} is stale", name)
    return bool(rc == 1)


def reclaim_stale(name: str) -> bool:
    """Remove channel ``name`` if it is stale and return True; return False (and touch nothing) if
    some process holds it. Raises :class:`ChannelNotFoundError` if there is no such channel."""
    check_name(name)
    rc = lib.shmchan_reclaim_stale(name.encode())
    if rc == -errno.EBUSY:
        return False
    if rc < 0:
        _raise(rc, f"cannot reclaim channel {name!r}", name)
    return True


def cleanup_stale(*, dry_run: bool = False) -> list[str]:
    """Remove every stale channel in ``/dev/shm`` (no process holds it open) and return their
    names; with ``dry_run`` only list them. A channel in use is never touched."""
    found = []
    for entry in sorted(os.listdir("/dev/shm")):
        if not entry.startswith("shmchan."):
            continue
        name = entry[len("shmchan.") :]
        try:
            check_name(name)
        except ValueError:
            continue
        # a FIFO, directory, socket or symlink at the name: the core refuses it (SHMCHAN_ENOTREG)
        if dry_run:
            if lib.shmchan_is_stale(name.encode()) == 1:
                found.append(name)
        elif lib.shmchan_reclaim_stale(name.encode()) == 0:
            found.append(name)
    return found
