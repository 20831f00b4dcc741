"""Peer processes for the shmchan tests: ``python tests/peers.py MODE ARGS...``.

Each mode talks to the parent in lines on stdout ("ready", "reserved", a JSON report, ...). Modes
that wait for the parent read stdin: the line "exit" (or end of file) makes them close everything
and exit 0; otherwise the parent kills them.
"""

from __future__ import annotations

import json
import signal
import struct
import sys
import threading
import time
import zlib

import numpy as np

import shmchan

# ---- the payloads of the cross-process tests (both ends import these) ----

SMALL_HEADER = struct.Struct("<II")  # sequence number, crc32 of the body
_SMALL_BASE = bytes(range(256)) * 2
FRAME_SHAPE = (1080, 1920, 3)
FRAME_BYTES = 1080 * 1920 * 3
FRAME_WORDS = FRAME_BYTES // 8
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def small_message(seq: int) -> bytes:
    """Message ``seq`` of the small-message stream: 8 to 64 bytes, its length and bytes set by seq."""
    n = seq % 57
    o = (seq * 7) % 256
    body = _SMALL_BASE[o : o + n]
    return SMALL_HEADER.pack(seq & 0xFFFFFFFF, zlib.crc32(body, seq & 0xFFFFFFFF)) + body


def frame_base() -> np.ndarray:
    """The pattern of frame 0 as uint64 words; frame ``seq`` is this plus ``seq`` (mod 2**64)."""
    return np.arange(FRAME_WORDS, dtype=np.uint64) * _GOLDEN


def say(*words: object) -> None:
    print(*words, flush=True)


def wait_for_parent() -> None:
    """Block until the parent writes "exit" or closes our stdin."""
    for line in sys.stdin:
        if line.strip() == "exit":
            return


# ---- modes ----


def hold(name: str, role: str) -> None:
    """Open the channel, attach ``role`` (writer, reader, both or none), say "ready", wait for the parent."""
    with shmchan.Channel.open(name) as ch:
        if role in ("writer", "both"):
            ch.writer()
        if role in ("reader", "both"):
            ch.reader()
        say("ready")
        wait_for_parent()


def try_attach(name: str, role: str) -> None:
    """Try to attach ``role``; say "attached" or "busy"."""
    with shmchan.Channel.open(name) as ch:
        try:
            getattr(ch, role)()
        except shmchan.ChannelBusyError:
            say("busy")
        else:
            say("attached")


def open_and_exit(name: str) -> None:
    """Only open the channel, say "ready", then close it and exit when the parent says so."""
    ch = shmchan.Channel.open(name)
    say("ready")
    wait_for_parent()
    ch.close()


def create_and_hold(name: str) -> None:
    """Create the channel, say "ready", wait (the parent kills us: a stale channel)."""
    with shmchan.Channel.create(name, slot_size=64, capacity=4):
        say("ready")
        wait_for_parent()


def fake_initialising(name: str) -> None:
    """Make /dev/shm/shmchan.<name> a zeroed object (no magic yet) and hold the attach lock on it,
    like a creator that is slow to initialise (or hung), say "ready" and wait."""
    import fcntl
    import os

    fd = os.open(f"/dev/shm/shmchan.{name}", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    os.ftruncate(fd, 8192)
    fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB, 1, 0)  # byte 0: "a process uses this channel"
    say("ready")
    wait_for_parent()
    os.unlink(f"/dev/shm/shmchan.{name}")
    os.close(fd)


def attach_and_exit(name: str) -> None:
    """(multiprocessing target) Open the channel, attach both ends, send and receive, close."""
    with shmchan.Channel.open(name) as ch:
        w, r = ch.writer(), ch.reader()
        w.send(b"from the child")
        assert r.recv_bytes(timeout=1) == b"from the child"


def send(name: str, count: str, then: str) -> None:
    """Send ``count`` messages b"msg-<i>"; then "hold" (say "ready" and wait), or "close" the writer."""
    with shmchan.Channel.open(name) as ch:
        w = ch.writer()
        for i in range(int(count)):
            w.send(b"msg-%d" % i, timeout=10)
        if then == "hold":
            say("ready")
            wait_for_parent()
        w.close()
        say("done")


def reserve_partial(name: str, count: str) -> None:
    """Send ``count`` messages, then reserve a slot, write half a payload and say "reserved"."""
    ch = shmchan.Channel.open(name)
    w = ch.writer()
    for i in range(int(count)):
        w.send(b"msg-%d" % i, timeout=10)
    slot = w.reserve(32, timeout=10)
    slot.buffer[:16] = b"PARTIAL-PAYLOAD!"
    say("reserved")
    wait_for_parent()
    # never commit: the parent SIGKILLs us before this line
    slot.abort()
    ch.close()


def reader_hold(name: str, released: str) -> None:
    """Receive and release ``released`` messages, take one more without releasing it, say "ready"."""
    ch = shmchan.Channel.open(name)
    r = ch.reader()
    got = [r.recv_bytes(timeout=10).decode() for _ in range(int(released))]
    held = r.recv(timeout=10)
    say("ready", *got, held.tobytes().decode())
    wait_for_parent()
    held.release()
    ch.close()


def blocked_recv(name: str) -> None:
    """Attach a reader, say "ready", block in recv(timeout=None) and print what arrives ("ended"
    if the writer closes instead)."""
    with shmchan.Channel.open(name) as ch:
        r = ch.reader()
        say("ready")
        try:
            with r.recv(timeout=None) as msg:
                say("got", msg.tobytes().decode())
        except shmchan.ChannelEndedError:
            say("ended")


def signalled_recv(name: str) -> None:
    """Block in recv(timeout=None) while SIGUSR1 runs a handler that returns normally; the wait
    must go on and deliver the message the parent sends afterwards."""
    signal.signal(signal.SIGUSR1, lambda signum, frame: say("handled", signum))
    with shmchan.Channel.open(name) as ch:
        r = ch.reader()
        say("ready")
        with r.recv(timeout=None) as msg:
            say("got", msg.tobytes().decode())


def blocked_send(name: str, count: str) -> None:
    """Attach a writer, fill ``count`` slots, say "ready", then block in send(timeout=None)."""
    with shmchan.Channel.open(name) as ch:
        w = ch.writer()
        for i in range(int(count)):
            w.send(b"msg-%d" % i, timeout=0)
        say("ready")
        w.send(b"last", timeout=None)
        say("sent")


def sigint_wait(name: str, what: str) -> None:
    """Block in recv() (``what`` = recv) or send() on a full ring (send) with no timeout; on Ctrl-C
    print the time, "interrupted", then do a send/recv round trip on the same handles."""
    # a job started in the background inherits SIGINT ignored; a terminal user has the default
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with shmchan.Channel.open(name) as ch:
        w = ch.writer()
        r = ch.reader()
        if what == "send":
            for i in range(ch.capacity):
                w.send(b"fill-%d" % i, timeout=0)
        say("waiting")
        try:
            if what == "send":
                w.send(b"blocked", timeout=None)
            else:
                r.recv(timeout=None)
        except KeyboardInterrupt:
            say("interrupted", time.monotonic())
        else:
            say("no interrupt")
            return
        if what == "send":
            got = [r.recv_bytes(timeout=1) for _ in range(ch.capacity)]
            assert got == [b"fill-%d" % i for i in range(ch.capacity)], got
        w.send(b"after the interrupt", timeout=1)
        say("roundtrip", r.recv_bytes(timeout=1).decode())


def small_producer(name: str, count: str, skip: str = "-1") -> None:
    """Send the small-message stream of ``count`` messages (leaving out message ``skip``, to check
    the checker), then close the writer."""
    with shmchan.Channel.open(name) as ch:
        w = ch.writer()
        say("ready")
        snd = w.send
        for seq in range(int(count)):
            if seq != int(skip):
                snd(small_message(seq), 30)
        w.close()
        say("done")


def small_consumer(name: str) -> None:
    """Receive the small-message stream until the writer ends it; report the count and the first error."""
    error = None
    count = 0
    with shmchan.Channel.open(name) as ch:
        r = ch.reader()
        say("ready")
        rcv = r.recv_bytes
        hdr = SMALL_HEADER
        while True:
            try:
                data = rcv(30)
            except shmchan.ChannelEndedError:
                break
            if error is None:
                seq, crc = hdr.unpack_from(data)
                body = data[8:]
                if seq != count & 0xFFFFFFFF:
                    error = f"message {count}: sequence number {seq}"
                elif len(body) != count % 57:
                    error = f"message {count}: {len(data)} bytes"
                elif zlib.crc32(body, seq) != crc or data != small_message(count):
                    error = f"message {count}: bad checksum or payload"
            count += 1
    say(json.dumps({"count": count, "error": error}))


def frame_producer(name: str, count: str, damage: str = "-1") -> None:
    """Write ``count`` 1080p frames in place: frame ``seq`` is frame_base() + seq, as uint64 words
    (with one byte of frame ``damage`` wrong, to check the checker)."""
    base = frame_base()
    with shmchan.Channel.open(name) as ch:
        w = ch.writer()
        say("ready")
        for seq in range(int(count)):
            with w.reserve(timeout=30) as slot:
                words = slot.ndarray((FRAME_WORDS,), np.uint64)
                np.add(base, np.uint64(seq), out=words)
                if seq == int(damage):
                    slot.buffer[FRAME_BYTES - 1] ^= 1
                del words
        w.close()
        say("done")


def frame_consumer(name: str) -> None:
    """Check every frame against frame_base() + seq until the writer ends; report count and first error."""
    base = frame_base()
    error = None
    count = 0
    diff = np.empty_like(base)
    with shmchan.Channel.open(name) as ch:
        r = ch.reader()
        say("ready")
        while True:
            try:
                msg = r.recv(timeout=30)
            except shmchan.ChannelEndedError:
                break
            with msg:
                if error is None:
                    img = msg.ndarray(FRAME_SHAPE, np.uint8)
                    words = img.reshape(-1).view(np.uint64)
                    np.subtract(words, base, out=diff)
                    if msg.nbytes != FRAME_BYTES or msg.seq != count:
                        error = f"frame {count}: {msg.nbytes} bytes, seq {msg.seq}"
                    elif not (diff == np.uint64(count)).all():
                        bad = int(np.argmax(diff != np.uint64(count)))
                        error = f"frame {count}: word {bad} is {int(words[bad]):#x}"
                    del img, words
            count += 1
    say(json.dumps({"count": count, "error": error}))


def leak_view(name: str) -> None:
    """Create a channel, receive a message into a numpy array, and exit without closing anything."""
    ch = shmchan.Channel.create(name, slot_size=64, capacity=4)
    w = ch.writer()
    r = ch.reader()
    w.send(b"0123456789abcdef")
    msg = r.recv()
    arr = msg.ndarray()
    say("ready", bytes(arr).decode())
    globals()["_keep"] = (ch, w, r, msg, arr)


def leak_opened_view(name: str) -> None:
    """Open a channel, receive a message into a numpy array, and exit without closing anything."""
    ch = shmchan.Channel.open(name)
    r = ch.reader()
    msg = r.recv(timeout=5)
    arr = msg.ndarray()
    say("ready", bytes(arr).decode())
    globals()["_keep"] = (ch, r, msg, arr)


def leak_channel(name: str, how: str) -> None:
    """Create (or open) a channel and exit without closing it."""
    create = how == "create"
    ch = shmchan.Channel.create(name, slot_size=64, capacity=4) if create else shmchan.Channel.open(name)
    say("ready")
    globals()["_keep"] = ch


def drop_channel(name: str) -> None:
    """Create a channel and drop the last reference to it without closing it (the finalizer runs now)."""
    ch = shmchan.Channel.create(name, slot_size=64, capacity=4)
    del ch
    say("dropped")


# ---- broadcast and state boards ----

BCAST_HEADER = struct.Struct("<QI")  # position, crc32 of the body
_BCAST_BASE = bytes(range(256)) * 5


def bcast_message(pos: int, slot_size: int) -> bytes:
    """Message ``pos`` of a broadcast stream: every byte follows from pos (so a torn or mixed
    payload shows), 12 to ``slot_size`` bytes long."""
    n = (pos * 37) % (min(slot_size, 1024) - BCAST_HEADER.size + 1)
    body = _BCAST_BASE[pos % 256 : pos % 256 + n]
    return BCAST_HEADER.pack(pos, zlib.crc32(body, pos & 0xFFFFFFFF)) + body


def bcast_ok(data: bytes | memoryview, pos: int) -> bool:
    """Whether ``data`` is exactly message ``pos``."""
    if len(data) < BCAST_HEADER.size:
        return False
    got, crc = BCAST_HEADER.unpack_from(data)
    body = bytes(data[BCAST_HEADER.size :])
    return got == pos and crc == zlib.crc32(body, pos & 0xFFFFFFFF) and \
        body == _BCAST_BASE[pos % 256 : pos % 256 + len(body)]


def bcast_reader(name: str, start: str, delay_us: str, spin: str = "-1") -> None:
    """Read a broadcast stream until the writer closes; check every message; report JSON.

    Zero-copy reads: the bytes are checked in place, then the message must still be intact
    (overwrite policy) before it counts as accepted. ``delay_us`` makes a slow reader."""
    delay = int(delay_us) / 1e6
    ch = shmchan.Broadcast.open(name)
    r = ch.reader(start=start, spin=None if float(spin) < 0 else float(spin))
    first = r.position
    say("ready", first)
    accepted = bad = lapped = gaps = 0
    last = first - 1
    lost_seen = 0
    try:
        while True:
            try:
                msg = r.recv(timeout=30)
            except shmchan.ChannelEndedError:
                break
            ok = bcast_ok(msg.buffer, msg.seq)
            lost_seen += msg.lost
            if msg.seq != last + 1 + msg.lost:
                gaps += 1
            try:
                msg.release()
            except shmchan.LappedError:
                lapped += 1  # overwritten while we looked: never counted as accepted
            else:
                if ok:
                    accepted += 1
                else:
                    bad += 1  # intact by the sequence check yet wrong bytes: a real tear
            last = msg.seq
            if delay:
                time.sleep(delay)
        say(json.dumps({"accepted": accepted, "bad": bad, "lapped": lapped, "gaps": gaps, "first": first,
                        "last": last, "lost": r.lost, "lost_seen": lost_seen}))
    finally:
        r.close()
        ch.close()


def state_value(n: int) -> tuple[int, int, list[int]]:
    """Version-derived state value: every field follows from n, so a torn read shows."""
    return n, (n * 2654435761) & 0xFFFFFFFF, [(n + i) * 3 for i in range(16)]


STATE_DTYPE = np.dtype([("n", "<u8"), ("h", "<u4"), ("v", "<u8", (16,))])


def state_writer(name: str, count: str, pace_us: str) -> None:
    """Publish ``count`` values (value n at version n) on a state board, say "done", wait."""
    st = shmchan.State.open(name)
    w = st.writer()
    say("ready")
    pace = int(pace_us) / 1e6
    for n in range(1, int(count) + 1):
        assert w.write(state_value(n)) == n
        if pace:
            time.sleep(pace)
    say("done")
    wait_for_parent()
    w.close()
    st.close()


def state_hammer(name: str, last: str, seconds: str) -> None:
    """Read a state board as fast as possible until version ``last`` was seen (or ``seconds`` have
    passed, however slow the writer is to start); check every value; report JSON."""
    st = shmchan.State.open(name)
    say("ready")
    reads = torn = backwards = 0
    versions = set()
    prev = 0
    final = int(last)
    end = time.monotonic() + float(seconds)
    while prev < final and time.monotonic() < end:
        value, version = st.read()
        reads += 1
        if version < prev:
            backwards += 1
        prev = version
        if value is None:
            continue
        n, h, v = int(value["n"]), int(value["h"]), [int(x) for x in value["v"]]
        if (n, h, v) != state_value(n) or n != version:
            torn += 1
        versions.add(version)
    say(json.dumps({"reads": reads, "torn": torn, "backwards": backwards, "distinct": len(versions),
                    "last": prev}))
    st.close()


def state_waiter(name: str, version: str) -> None:
    """Wait for the board to change from ``version``; print the new version or the error's name."""
    st = shmchan.State.open(name)
    say("ready")
    try:
        say("changed", st.wait_for_change(int(version), timeout=30))
    except shmchan.ShmchanError as exc:
        say("error", type(exc).__name__)
    st.close()


# ---- for the operations commands (tests/test_cli.py) ----


def _until_parent() -> threading.Event:
    """An event set when the parent writes "exit" or closes our stdin (watched on a thread)."""
    done = threading.Event()

    def watch() -> None:
        wait_for_parent()
        done.set()

    threading.Thread(target=watch, daemon=True).start()
    return done


def bcast_create(name: str, policy: str, max_readers: str, count: str) -> None:
    """Create a broadcast channel (256-byte slots, capacity 8, no descriptor), attach its writer,
    send ``count`` messages b"msg-<i>", say "ready", wait for the parent (the writer stays attached)."""
    with shmchan.Broadcast.create(name, slot_size=256, capacity=8, max_readers=int(max_readers),
                                  policy=policy) as ch, ch.writer() as w:
        for i in range(int(count)):
            w.send(b"msg-%d" % i, timeout=10)
        say("ready")
        wait_for_parent()


def bcast_hold_reader(name: str, take: str) -> None:
    """Attach a reader (from the oldest message) to a broadcast channel, receive ``take`` messages,
    say "ready <position>", wait for the parent."""
    with shmchan.Broadcast.open(name) as ch, ch.reader(start="oldest") as r:
        for _ in range(int(take)):
            r.recv_bytes(timeout=10)
        say("ready", r.position)
        wait_for_parent()


def bcast_paced_writer(name: str, interval_us: str) -> None:
    """Attach the writer of an existing broadcast channel, say "ready", send bcast_message(i) (what
    bcast_reader checks) every ``interval_us`` until the parent says "exit"; then close the writer
    (readers see the end) and say "done <messages sent>"."""
    stop = _until_parent()
    with shmchan.Broadcast.open(name) as ch:
        w = ch.writer()
        say("ready")
        i = 0
        while not stop.is_set():
            w.send(bcast_message(i, ch.slot_size), timeout=10)
            i += 1
            time.sleep(int(interval_us) / 1e6)
        w.close()
        say("done", i)


def state_create_hold(name: str, count: str) -> None:
    """Create a state board of STATE_DTYPE, publish state_value(1..count), say "ready", wait for
    the parent (the writer stays attached)."""
    with shmchan.State.create(name, dtype=STATE_DTYPE) as st, st.writer() as w:
        for n in range(1, int(count) + 1):
            w.write(state_value(n))
        say("ready")
        wait_for_parent()


def state_paced_writer(name: str, interval_us: str) -> None:
    """Attach the writer of an existing STATE_DTYPE board, say "ready", publish state_value(n) at
    version n every ``interval_us`` until the parent says "exit"."""
    stop = _until_parent()
    with shmchan.State.open(name) as st:
        w = st.writer()
        say("ready")
        n = st.version
        while not stop.is_set():
            n += 1
            w.write(state_value(n))
            time.sleep(int(interval_us) / 1e6)
        w.close()
        say("done", n)


MODES = {f.__name__: f for f in (
    bcast_reader, state_writer, state_hammer, state_waiter,
    hold, try_attach, open_and_exit, fake_initialising, create_and_hold, send, reserve_partial, reader_hold,
    blocked_recv, signalled_recv, blocked_send, sigint_wait, small_producer, small_consumer, frame_producer,
    frame_consumer, leak_view, leak_opened_view, leak_channel, drop_channel,
    bcast_create, bcast_hold_reader, bcast_paced_writer, state_create_hold, state_paced_writer,
)}

if __name__ == "__main__":
    MODES[sys.argv[1]](*sys.argv[2:])
