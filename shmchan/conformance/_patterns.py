"""The payloads of the contract, every byte derived from one number (docs/conformance.md)."""

from __future__ import annotations

from typing import Any

import numpy as np

K = np.uint64(0x9E3779B97F4A7C15)

#: the state-board value, a 256-byte record derived from its version
COUNTER = np.dtype([("seq", "<u8"), ("neg", "<i8"), ("half", "<f8"), ("lo", "<u4"), ("hi", "<u4"),
                    ("last", "<u4"), ("mix", "<u4"), ("arr", "<u4", (54,))])


def frame_base(n: int) -> np.ndarray[Any, np.dtype[np.uint8]]:
    """Frame pixels before the per-frame offset: byte i is ``7*i + (i >> 10)`` mod 256."""
    i = np.arange(n, dtype=np.uint64)
    return ((i * np.uint64(7) + (i >> np.uint64(10))) & np.uint64(0xFF)).astype(np.uint8)


def frame_offset(seq: int) -> np.uint8:
    """Frame ``seq`` adds ``13*seq`` mod 256 to every byte of the base."""
    return np.uint8((13 * seq) % 256)


def message_len(seq: int, slot_size: int) -> int:
    """Broadcast message ``seq`` has ``2 + seq % (slot_size/8 - 1)`` 64-bit words."""
    return 8 * (2 + seq % (max(slot_size // 8, 2) - 1))


def message_words(seq: int, n: int) -> np.ndarray[Any, np.dtype[np.uint64]]:
    """Word 0 is ``seq``, word j is ``(seq + j) * K`` mod 2**64."""
    with np.errstate(over="ignore"):
        w = (np.uint64(seq) + np.arange(n, dtype=np.uint64)) * K
    w[0] = seq
    return w


def message_bytes(seq: int, slot_size: int) -> bytes:
    return message_words(seq, message_len(seq, slot_size) // 8).astype("<u8").tobytes()


def message_check(buf: Any, slot_size: int) -> int | str:
    """The sequence number of a well-formed message, or what is wrong with it."""
    n = len(buf)
    if n < 16 or n % 8:
        return f"a message of {n} bytes"
    w = np.frombuffer(buf, dtype="<u8")
    seq = int(w[0])
    if n != message_len(seq, slot_size):
        return f"message {seq} has {n} bytes, expected {message_len(seq, slot_size)}"
    if not np.array_equal(w, message_words(seq, n // 8)):
        return f"message {seq} is torn or wrong"
    return seq


def counter_value(seq: int, last: bool = False) -> np.ndarray[Any, np.dtype[np.void]]:
    """The record of version ``seq``: neg = -seq, half = seq/2, lo/hi its halves, mix = lo^hi^0xA5A5A5A5,
    arr[i] = (seq + i) * 2654435761 mod 2**32, last 1 on the final value."""
    v = np.zeros((), dtype=COUNTER)
    lo, hi = seq & 0xFFFFFFFF, seq >> 32
    v["seq"], v["neg"], v["half"] = seq, -seq, seq * 0.5
    v["lo"], v["hi"], v["last"], v["mix"] = lo, hi, int(last), lo ^ hi ^ 0xA5A5A5A5
    with np.errstate(over="ignore"):
        v["arr"] = ((np.uint64(seq) + np.arange(54, dtype=np.uint64)) * np.uint64(2654435761)) & np.uint64(0xFFFFFFFF)
    return v
