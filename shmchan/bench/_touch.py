"""How every system writes and reads a payload: every byte, the same way for all of them.

The producer writes every byte of each message with a value derived from its sequence number (1 to
250; 251 marks the start of the measured run, 0 asks the peer to stop). The consumer reads every
byte and checks them. Small payloads (up to 4 KiB) are written by copying a prepared pattern in and
read by comparing a copy of the message with it; larger ones are written with ``ndarray.fill``
(a memset) and read with a sum of their 8-byte words, both through numpy, without a copy.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

SMALL = 4096
START = 251
STOP = 0
_ONES = 0x0101010101010101
_MASK = (1 << 64) - 1


def value(seq: int) -> int:
    """The fill byte of data message ``seq``: 1 to 250, never a control value."""
    return seq % 250 + 1


class Pattern:
    """Writes and checks payloads of ``size`` bytes (a multiple of 8)."""

    __slots__ = ("_pats", "_sums", "_words", "size", "small")

    def __init__(self, size: int) -> None:
        if size <= 0 or size % 8:
            raise ValueError(f"payload size must be a positive multiple of 8, got {size}")
        self.size = size
        self.small = size <= SMALL
        self._words = size // 8
        self._pats = [bytes([v]) * size for v in range(256)] if self.small else []
        self._sums = [(self._words * v * _ONES) & _MASK for v in range(256)]

    def write(self, buf: Any, v: int) -> None:
        """Write every byte of the writable buffer ``buf`` (exactly ``size`` bytes) with ``v``."""
        if self.small:
            buf[:] = self._pats[v]
        else:
            np.frombuffer(buf, np.uint8).fill(v)

    def read(self, buf: Any) -> int:
        """Read every byte of ``buf``; return the fill value, or -1 if the bytes are not all equal
        to the first one (or the length is wrong)."""
        if self.small:
            data = bytes(buf)
            v = data[0] if data else -1
            return v if v >= 0 and data == self._pats[v] else -1
        a = np.frombuffer(buf, np.uint64)
        if len(a) != self._words:
            return -1
        v = int(a[0]) & 0xFF
        return v if int(a.sum()) == self._sums[v] else -1

    def write_at(self, address: int, v: int) -> None:
        """``write`` for memory known only by its address (ctypes-based APIs)."""
        if self.small:
            ctypes.memmove(address, self._pats[v], self.size)
        else:
            arr: Any = (ctypes.c_uint8 * self.size).from_address(address)
            np.frombuffer(arr, np.uint8).fill(v)

    def read_at(self, address: int) -> int:
        """``read`` for memory known only by its address."""
        if self.small:
            return self.read(ctypes.string_at(address, self.size))
        return self.read((ctypes.c_uint8 * self.size).from_address(address))
