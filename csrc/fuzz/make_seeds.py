#!/usr/bin/env python3
"""Writes the committed seed corpus of the fuzz harnesses (csrc/fuzz/corpus/<harness>/).

Run from anywhere: python3 csrc/fuzz/make_seeds.py. The header images are computed here from the
byte map in docs/protocol.md (layout 1.0), so the script needs neither the package nor a build.
"""

from __future__ import annotations

import struct
from pathlib import Path

HERE = Path(__file__).resolve().parent
MAGIC = 0x314E4148434D4853
PAGE = 4096


def up(v: int, a: int) -> int:
    return (v + a - 1) // a * a


SPSC, BROADCAST, STATE = 1, 2, 3


def header(slot_size: int, capacity: int, align: int = PAGE, desc: int = 0, flags: int = 0, kind: int = SPSC,
           readers: int = 0, policy: int = 0) -> tuple[bytes, int]:
    """A valid layout-1.0 control block and the object size it describes."""
    stride = up(slot_size, align)
    end = 1024 + (8 if kind == SPSC else 16) * capacity  # lengths, or {seq, len} pairs
    roff = 0
    if kind == BROADCAST:
        roff = up(end, 128)  # reader places, 128 bytes each
        end = roff + 128 * readers
    doff = 0
    if desc:
        doff = up(end, 64)
        end = doff + desc
    data = up(end, max(align, PAGE))
    total = data + capacity * stride
    h = bytearray(1024)
    struct.pack_into("<QHHIIIQQII", h, 0, MAGIC, 1, 0, kind, flags, capacity, slot_size, stride, align, 1234)
    struct.pack_into("<QQQQQQ", h, 48, 1024, data, total, 1_700_000_000_000_000_000, doff, desc)
    struct.pack_into("<IIQ", h, 640, readers, policy, roff)
    return bytes(h), total


def validate_seeds() -> dict[str, bytes]:
    seeds = {}
    for name, args in {
        "spsc-64x8-page": (64, 8),
        "spsc-1x1-align8": (1, 1, 8),
        "spsc-1080p-x8": (1920 * 1080 * 3, 8),
        "spsc-100x1024-align64": (100, 1024, 64),
        "spsc-2mib-align": (3 << 20, 4, 1 << 21),
        "max-capacity": (8, 1 << 24, 8),
        "max-slot": (1 << 40, 1),
        "descriptor": (64, 8, PAGE, 300),
        "descriptor-max": (64, 8, 8, 1 << 16),
        "msync-sync": (64, 8, PAGE, 0, 2),
        "sealed-flag": (64, 8, PAGE, 0, 4),
        "bcast-block-64x8-4r": (64, 8, PAGE, 0, 0, BROADCAST, 4, 0),
        "bcast-overwrite-2x1r-align8": (100, 2, 8, 0, 0, BROADCAST, 1, 1),
        "bcast-1024r-descriptor": (256, 64, 64, 300, 0, BROADCAST, 1024, 1),
        "bcast-places-fill-page": (64, 4, 8, 0, 0, BROADCAST, 23, 0),
        "state-1000": (1000, 2, 64, 0, 0, STATE),
        "state-descriptor-sealed": (64, 2, PAGE, 100, 4, STATE),
    }.items():
        h, total = header(*args)  # type: ignore[arg-type]
        seeds[name] = struct.pack("<QB", total, 0) + h
    h, total = header(64, 8)
    seeds["file-one-byte-short"] = struct.pack("<QB", total - 1, 0) + h
    seeds["page-16k"] = struct.pack("<QB", total + 16384, 1) + header(64, 8, 16384)[0]
    seeds["zero-magic"] = struct.pack("<QB", 8192, 0) + bytes(1024)
    seeds["forced-magic-zeros"] = struct.pack("<QB", 8192, 0x80) + bytes(1024)
    seeds["bad-magic"] = struct.pack("<QB", 8192, 0) + b"NOTSHMCH" + h[8:]
    seeds["major-2"] = struct.pack("<QB", total, 0) + h[:8] + struct.pack("<H", 2) + h[10:]
    # new kinds with one field wrong: each must be refused
    h, total = header(64, 8, PAGE, 0, 0, BROADCAST, 4, 0)
    seeds["bcast-no-places"] = struct.pack("<QB", total, 0) + h[:648] + bytes(8) + h[656:]
    seeds["bcast-policy-2"] = struct.pack("<QB", total, 0) + h[:644] + struct.pack("<I", 2) + h[648:]
    seeds["bcast-readers-1025"] = struct.pack("<QB", total, 0) + h[:640] + struct.pack("<I", 1025) + h[644:]
    h, total = header(64, 2, PAGE, 0, 0, STATE)
    seeds["state-with-readers"] = struct.pack("<QB", total, 0) + h[:640] + struct.pack("<I", 1) + h[644:]
    seeds["state-as-bcast"] = struct.pack("<QB", total, 0) + h[:12] + struct.pack("<I", BROADCAST) + h[16:]
    return seeds


# fuzz_ring_ops: one byte per operation (op % 16), then its arguments; see fuzz_ring_ops.c
RESERVE, COMMIT, ABORT, SEND, PEEK, BATCH, RELEASE, RECV, POKE, POKE_REL = range(10)
RE_WRITER, RE_READER, CLOSE_WRITER, STATS, REOPEN, ATTACH_WRITER = range(10, 16)
NEAR_TAIL = 120  # release argument k < 240 means pos = tail + (k - 120) / 8


def ops(*items: int | tuple[int, ...]) -> bytes:
    out = bytearray()
    for it in items:
        out += bytes(it) if isinstance(it, tuple) else bytes([it])
    return bytes(out)


def ring_seeds() -> dict[str, bytes]:
    return {
        "send-recv": ops((SEND, 10), (RECV, 64), (SEND, 0), (RECV, 0), (SEND, 64), (RECV, 63), (RECV, 64)),
        "reserve-commit-abort": ops((RESERVE, 40), (COMMIT, 20), (RESERVE, 64), ABORT, (COMMIT, 1), (RECV, 64), PEEK),
        "fill-ring": ops(*[(SEND, i) for i in range(9)], *[(RECV, 64) for _ in range(9)]),
        "batch-release-out-of-order": ops(*[(SEND, i + 1) for i in range(6)], (BATCH, 5),
                                          (RELEASE, NEAR_TAIL + 16), (RELEASE, NEAR_TAIL), (RELEASE, NEAR_TAIL + 8),
                                          (RELEASE, NEAR_TAIL), (RELEASE, 250, 1, 2, 3, 4, 5, 6, 7, 8), PEEK),
        "pinned": ops(*[(SEND, 3) for _ in range(8)], *[PEEK for _ in range(9)], (SEND, 3)),
        "writer-close-ended": ops((SEND, 5), CLOSE_WRITER, (RECV, 64), PEEK, ATTACH_WRITER, (SEND, 6), (RECV, 64)),
        "reader-reattach-redelivers": ops((SEND, 5), (SEND, 6), PEEK, PEEK, RE_READER, (RECV, 64), (RECV, 64)),
        "head-beyond-capacity": ops((SEND, 5), (POKE_REL, 0, 3), (RECV, 64), PEEK, (RELEASE, NEAR_TAIL)),
        "head-backwards": ops((SEND, 5), (SEND, 5), PEEK, (POKE_REL, 1, 0xFE), PEEK, (BATCH, 4)),
        "tail-beyond-head": ops(*[(SEND, 1) for _ in range(8)], (POKE_REL, 2, 5), (SEND, 1), (RESERVE, 1)),
        "length-beyond-slot": ops((SEND, 5), (POKE_REL, 4, 0), (RECV, 64), (SEND, 5), (BATCH, 3)),
        "length-huge": ops((SEND, 5), (SEND, 7), PEEK, (POKE_REL, 5, 1), (BATCH, 3), (RELEASE, NEAR_TAIL)),
        "poke-state-reattach": ops((POKE, 0, 2, 4, 1, 0, 0, 0), RE_WRITER, (POKE, 16, 2, 4, 1, 0, 0, 0), RE_READER,
                                   PEEK, (SEND, 1)),
        "poke-identity-reopen": ops((SEND, 3), (POKE, 24, 0, 0, 60), REOPEN, (RECV, 64), STATS),
        "reopen-clean": ops((SEND, 3), REOPEN, (RECV, 64), (SEND, 4), (RECV, 64)),
    }


def main() -> None:
    for harness, seeds in (("fuzz_validate_header", validate_seeds()), ("fuzz_ring_ops", ring_seeds())):
        d = HERE / "corpus" / harness
        d.mkdir(parents=True, exist_ok=True)
        for name, data in seeds.items():
            (d / name).write_bytes(data)


if __name__ == "__main__":
    main()
