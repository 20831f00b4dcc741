"""Channel-name and geometry checks, done in Python before any system call."""

from __future__ import annotations

import operator
import re

from ._binding import ffi, lib

__all__ = ["check_geometry", "check_name"]

NAME_MAX = 247  # 255 (NAME_MAX of /dev/shm) less the "shmchan." prefix of the object
_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")

MAX_CAPACITY = 1 << 24
MAX_SLOT_SIZE = 1 << 40
MIN_SLOT_ALIGN = 8
MAX_SLOT_ALIGN = 1 << 21
MAX_TOTAL_SIZE = 1 << 46


def check_name(name: object) -> str:
    """Return ``name`` if it is a valid channel name, else raise ``ValueError`` saying why."""
    if not isinstance(name, str):
        raise TypeError(f"channel name must be a str, not {type(name).__name__}")
    if not name:
        raise ValueError("channel name is empty")
    if "\x00" in name:
        raise ValueError("channel name contains a NUL character")
    if "/" in name:
        raise ValueError(f"channel name {name!r} contains '/': use a plain name such as 'cam0' "
                         "(pass path=... for a channel kept in a file)")
    if name in (".", ".."):
        raise ValueError(f"channel name {name!r} is reserved")
    if len(name) > NAME_MAX:
        raise ValueError(f"channel name is {len(name)} characters long; the limit is {NAME_MAX}")
    if not name.isascii() or not _NAME_RE.fullmatch(name):
        raise ValueError(
            f"channel name {name!r} may use only A-Z a-z 0-9 _ . - and must not start with '.' or '-'"
        )
    return name


def _int(value: object, what: str) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{what} must be an int, not bool")
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{what} must be an int, not {type(value).__name__}") from None


def _pow2(v: int) -> bool:
    return v > 0 and v & (v - 1) == 0


def check_geometry(slot_size: object, capacity: object, slot_align: object | None) -> tuple[int, int, int, int]:
    """Validate a geometry; return ``(slot_size, capacity, slot_align, total_bytes)``."""
    size = _int(slot_size, "slot_size")
    cap = _int(capacity, "capacity")
    if size <= 0:
        raise ValueError(f"slot_size must be positive, got {size}")
    if size > MAX_SLOT_SIZE:
        raise ValueError(f"slot_size {size} exceeds the limit of {MAX_SLOT_SIZE} bytes (1 TiB)")
    # default: a cache line for slots under 4 KiB (they pack densely), a page for larger ones
    align = int(lib.shmchan_default_slot_align(size)) if slot_align is None else _int(slot_align, "slot_align")
    if cap <= 0 or not _pow2(cap):
        raise ValueError(f"capacity must be a positive power of two, got {cap}")
    if cap > MAX_CAPACITY:
        raise ValueError(f"capacity {cap} exceeds the limit of {MAX_CAPACITY} slots")
    if not _pow2(align) or not MIN_SLOT_ALIGN <= align <= MAX_SLOT_ALIGN:
        raise ValueError(f"slot_align must be a power of two from {MIN_SLOT_ALIGN} to {MAX_SLOT_ALIGN}, got {align}")
    # The size itself comes from the C core (one formula for every language; no system call).
    cfg = ffi.new("struct shmchan_config *", {"slot_size": size, "capacity": cap, "slot_align": align})
    total = ffi.new("uint64_t *")
    if lib.shmchan_layout_size(cfg, total) != 0:
        raise ValueError(
            f"a channel of {cap} slots of {size} bytes (aligned to {align}) is over the limit of "
            f"{MAX_TOTAL_SIZE} bytes"
        )
    return size, cap, align, int(total[0])
