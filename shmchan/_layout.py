"""Byte offsets of the shared header, read from the C headers through the compiled core.

For tests and tools that must look at (or deliberately damage) raw header bytes. The C header
``csrc/layout.h`` is the only place the layout is written down; these values come from it.
"""

from __future__ import annotations

from ._binding import LAYOUT_MAJOR, LAYOUT_MINOR, lib

MAGIC: int = lib.SHMCHAN_MAGIC
CONTROL_SIZE: int = lib.SHMCHAN_CONTROL_SIZE
LENS_OFFSET: int = lib.SHMCHAN_LENS_OFFSET

#: field name -> (offset, size in bytes); all fields are little-endian unsigned integers
FIELDS: dict[str, tuple[int, int]] = {
    "magic": (lib.SHMCHAN_OFF_MAGIC, 8),
    "version_major": (lib.SHMCHAN_OFF_VERSION_MAJOR, 2),
    "version_minor": (lib.SHMCHAN_OFF_VERSION_MINOR, 2),
    "kind": (lib.SHMCHAN_OFF_KIND, 4),
    "flags": (lib.SHMCHAN_OFF_FLAGS, 4),
    "capacity": (lib.SHMCHAN_OFF_CAPACITY, 4),
    "slot_size": (lib.SHMCHAN_OFF_SLOT_SIZE, 8),
    "slot_stride": (lib.SHMCHAN_OFF_SLOT_STRIDE, 8),
    "slot_align": (lib.SHMCHAN_OFF_SLOT_ALIGN, 4),
    "creator_pid": (lib.SHMCHAN_OFF_CREATOR_PID, 4),
    "lens_offset": (lib.SHMCHAN_OFF_LENS_OFFSET, 8),
    "data_offset": (lib.SHMCHAN_OFF_DATA_OFFSET, 8),
    "total_size": (lib.SHMCHAN_OFF_TOTAL_SIZE, 8),
    "created_ns": (lib.SHMCHAN_OFF_CREATED_NS, 8),
    "descriptor_offset": (lib.SHMCHAN_OFF_DESCRIPTOR_OFFSET, 8),
    "descriptor_size": (lib.SHMCHAN_OFF_DESCRIPTOR_SIZE, 8),
    "head": (lib.SHMCHAN_OFF_HEAD, 8),
    "head_wake": (lib.SHMCHAN_OFF_HEAD_WAKE, 4),
    "w_messages": (lib.SHMCHAN_OFF_W_MESSAGES, 8),
    "w_bytes": (lib.SHMCHAN_OFF_W_BYTES, 8),
    "w_full": (lib.SHMCHAN_OFF_W_FULL, 8),
    "w_aborts": (lib.SHMCHAN_OFF_W_ABORTS, 8),
    "tail": (lib.SHMCHAN_OFF_TAIL, 8),
    "tail_wake": (lib.SHMCHAN_OFF_TAIL_WAKE, 4),
    "r_messages": (lib.SHMCHAN_OFF_R_MESSAGES, 8),
    "r_bytes": (lib.SHMCHAN_OFF_R_BYTES, 8),
    "r_empty": (lib.SHMCHAN_OFF_R_EMPTY, 8),
    "reader_waiting": (lib.SHMCHAN_OFF_READER_WAITING, 4),
    "writer_waiting": (lib.SHMCHAN_OFF_WRITER_WAITING, 4),
    "writer_state": (lib.SHMCHAN_OFF_WRITER_STATE, 4),
    "writer_pid": (lib.SHMCHAN_OFF_WRITER_PID, 4),
    "writer_gen": (lib.SHMCHAN_OFF_WRITER_GEN, 8),
    "reader_state": (lib.SHMCHAN_OFF_READER_STATE, 4),
    "reader_pid": (lib.SHMCHAN_OFF_READER_PID, 4),
    "reader_gen": (lib.SHMCHAN_OFF_READER_GEN, 8),
}

__all__ = ["CONTROL_SIZE", "FIELDS", "LAYOUT_MAJOR", "LAYOUT_MINOR", "LENS_OFFSET", "MAGIC", "shm_path"]


def shm_path(name: str) -> str:
    """The file under /dev/shm that holds channel ``name``."""
    return f"/dev/shm/shmchan.{name}"
