"""Smoke test of an installed shmchan wheel (run by .ci/run from a venv with no C compiler on PATH).

Checks that the package comes from site-packages with both native modules, then moves real messages
between processes through each channel kind and the sealed memfd path, and exits non-zero on any
mismatch. Run it outside the source tree (python -P), so the checkout cannot be imported instead.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import uuid
import zlib

import numpy as np

import shmchan
from shmchan import _core, _shmchan_cffi

N = 2000


def _producer(name: str) -> None:
    with shmchan.Channel.open(name, timeout=10) as ch:
        w = ch.writer()
        for i in range(N):
            with w.reserve(64, timeout=10) as slot:
                a = slot.ndarray((16,), np.uint32)
                a[:] = i
        w.close()


def _bcast_reader(name: str, q: mp.Queue[int]) -> None:
    # mypy --strict checks this file (make lint): `with` must keep the Broadcast type for reader(start=)
    with shmchan.Broadcast.open(name, timeout=10) as b:
        r = b.reader(start="oldest")
        q.put(-1)  # attached
        q.put(sum(zlib.crc32(m.tobytes()) for m in r))


def main() -> int:
    for mod in (shmchan, _core, _shmchan_cffi):
        path = getattr(mod, "__file__", "")
        assert "site-packages" in path, f"{mod} is not the installed wheel's: {path}"
    print("installed:", shmchan.__version__, os.path.dirname(shmchan.__file__))

    tag = f"wheel-smoke-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    ctx = mp.get_context("spawn")

    # SPSC: a producer process writes N messages in place; every one arrives, in order
    with shmchan.Channel.create(f"{tag}-spsc", slot_size=64, capacity=16) as ch:
        r = ch.reader()
        p = ctx.Process(target=_producer, args=(ch.name,))
        p.start()
        got = [int(m.ndarray((16,), np.uint32)[0]) for m in r]
        p.join(30)
        assert p.exitcode == 0, p.exitcode
        assert got == list(range(N)), (len(got), got[:5])
    print(f"spsc: {N} messages from another process, in order")

    # Broadcast: two reader processes see every message (block policy: lossless)
    msgs = [os.urandom(100) for _ in range(500)]
    with shmchan.Broadcast.create(f"{tag}-bc", slot_size=128, capacity=8, max_readers=4) as b:
        q: mp.Queue[int] = ctx.Queue()
        readers = [ctx.Process(target=_bcast_reader, args=(b.name, q)) for _ in range(2)]
        for rp in readers:
            rp.start()
        assert [q.get(timeout=30) for _ in readers] == [-1, -1]
        w = b.writer()
        w.send_batch(msgs, timeout=30)
        w.close()
        want = sum(zlib.crc32(m) for m in msgs)
        assert [q.get(timeout=30) for _ in readers] == [want, want]
        for rp in readers:
            rp.join(30)
            assert rp.exitcode == 0
    print("broadcast: 2 reader processes saw all 500 messages")

    # State board: the latest value, never torn
    pose = np.dtype([("xyz", "<f8", (3,)), ("frame", "<u8")])
    board = shmchan.State.create(f"{tag}-state", dtype=pose)
    other = shmchan.State.open(board.name)
    with board, other:
        v = board.writer().write(((1.0, 2.0, 3.0), 7))
        value, version = other.read()
        assert version == v == 1 and value["frame"] == 7 and tuple(value["xyz"]) == (1.0, 2.0, 3.0)
    print("state: read back version 1")

    # A sealed channel (memfd, no name)
    with shmchan.Channel.create_sealed(slot_size=64, capacity=4) as sealed, shmchan.Channel.from_fd(sealed.fd) as peer:
        peer.writer().send(b"sealed")
        assert sealed.reader().recv_bytes(timeout=5) == b"sealed"
    print("sealed: ok")

    leftovers = [e for e in os.listdir("/dev/shm") if tag in e]
    assert not leftovers, leftovers
    print("wheel smoke test: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
