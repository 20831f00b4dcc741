"""The systems ``shmchan bench`` compares, each used the way its own documentation recommends.

A system makes an :class:`Endpoint` in each of two processes: ``a`` (the producer, or the side that
starts a round trip) and ``b`` (the consumer, or the echo side). ``send(v)`` writes every byte of a
message with the value ``v`` and hands it over; ``recv()`` waits for the next message, reads every
byte and returns its value (-1 when the bytes are wrong). Latency tasks use a channel in each
direction; throughput tasks one from ``a`` to ``b``.

Objects a system can only share by inheritance (multiprocessing queues, pipes, events) are made in
the parent by :meth:`System.shared` and given to both processes when they are spawned; everything
else is made per task by the processes themselves.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import os
import queue
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import __version__ as shmchan_version
from ..channel import Channel
from ._touch import Pattern

SPIN_FOREVER = float("inf")
_LONG = 3600.0  # seconds: "forever" for APIs that insist on a timeout


@dataclass(frozen=True)
class Task:
    """One cell of the results: a kind of measurement for one payload size and waiting mode."""

    index: int
    kind: str  # "latency" or "throughput"
    mode: str  # "busy" or "blocking"
    size: int
    capacity: int  # messages in flight allowed (ring depth, queue bound) for throughput
    budget: float  # seconds measured
    warmup: float  # seconds of warm-up before
    min_iters: int
    max_iters: int
    run_id: str


def throughput_capacity(size: int) -> int:
    """Ring depth for throughput: up to 16 MiB in flight, 2 to 64 messages, a power of two."""
    cap = 2
    while cap < 64 and cap * 2 * size <= 16 << 20:
        cap *= 2
    return cap


class Endpoint:
    """One side of a system for one task."""

    def send(self, v: int) -> None:
        raise NotImplementedError

    def recv(self) -> int:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the endpoint holds."""


class System:
    """A transport under test. Subclasses set the class attributes and implement ``endpoint``."""

    key = ""  #: the name on the command line (--systems)
    label = ""  #: the name in tables and plots
    requires: tuple[str, ...] = ()  #: modules that must import
    dist = ""  #: distribution whose version is reported
    modes: tuple[str, ...] = ("busy", "blocking")
    kinds: tuple[str, ...] = ("latency", "throughput")
    single_process = False
    how = ""  #: one line: how the system is used

    def available(self) -> str | None:
        """None if usable here, else why not (said in the "skipped" line)."""
        for mod in self.requires:
            try:
                importlib.import_module(mod)
            except Exception as exc:  # ImportError, or a broken install
                return f"not installed ({mod}: {exc.__class__.__name__}: {exc}); pip install 'shmchan[bench]'"
        return None

    def version(self) -> str:
        if not self.dist:
            return ""
        try:
            return importlib.metadata.version(self.dist)
        except importlib.metadata.PackageNotFoundError:
            return "unknown"

    def shared(self, ctx: Any, size: int, capacity: int, run_id: str) -> dict[str, Any]:
        """Objects made in the parent for one payload size, inherited by both processes."""
        return {}

    def cleanup(self, shared: dict[str, Any]) -> None:
        """Undo ``shared`` in the parent once both processes are gone."""

    def endpoint(self, role: str, task: Task, shared: dict[str, Any], barrier: Any) -> Endpoint:
        """Make this process's endpoint. Must call ``barrier.wait()`` exactly once: after whatever
        the other side must find (``a`` creates, ``b`` opens after the barrier)."""
        raise NotImplementedError


# ---- no IPC at all: the same writes and reads in one process ----


class _LocalEP(Endpoint):
    def __init__(self, size: int) -> None:
        self.pat = Pattern(size)
        self.buf = bytearray(size)
        self.mv = memoryview(self.buf)

    def send(self, v: int) -> None:
        self.pat.write(self.mv, v)

    def recv(self) -> int:
        return self.pat.read(self.mv)

    def close(self) -> None:
        self.mv.release()


class NoIPC(System):
    key = "none"
    label = "no IPC (one process)"
    modes = ("-",)
    single_process = True
    how = "one process writes every byte of a buffer and reads it back: the work without any IPC"

    def endpoint(self, role: str, task: Task, shared: dict[str, Any], barrier: Any) -> Endpoint:
        barrier.wait()
        return _LocalEP(task.size)


# ---- shmchan ----


class _ShmchanEP(Endpoint):
    def __init__(self, chans: list[Channel], w: Any, r: Any, size: int) -> None:
        self.chans, self.w, self.r, self.size = chans, w, r, size
        self.pat = Pattern(size)

    def send(self, v: int) -> None:
        slot = self.w.reserve(self.size)
        self.pat.write(slot.buffer, v)
        slot.commit()

    def recv(self) -> int:
        msg = self.r.recv()
        v = self.pat.read(msg.buffer)
        msg.release()
        return v

    def close(self) -> None:
        for c in self.chans:
            c.close()


class _ShmchanCopyEP(_ShmchanEP):
    def __init__(self, chans: list[Channel], w: Any, r: Any, size: int) -> None:
        super().__init__(chans, w, r, size)
        self.out = bytearray(size)
        self.out_mv = memoryview(self.out)
        self.inp = bytearray(size)
        self.inp_mv = memoryview(self.inp)

    def send(self, v: int) -> None:
        self.pat.write(self.out_mv, v)
        self.w.send(self.out)

    def recv(self) -> int:
        self.r.recv_into(self.inp)
        return self.pat.read(self.inp_mv)

    def close(self) -> None:
        self.out_mv.release()
        self.inp_mv.release()
        super().close()


class Shmchan(System):
    key = "shmchan"
    label = "shmchan"
    dist = "shmchan"
    how = ("reserve() a slot, write it in place through slot.buffer, commit(); recv() a message, read it in "
           "place through msg.buffer, release(); busy: spin=inf, blocking: the default spin (100 us) then a futex")
    copying = False

    def version(self) -> str:
        return shmchan_version

    def endpoint(self, role: str, task: Task, shared: dict[str, Any], barrier: Any) -> Endpoint:
        base = f"bench-{task.run_id}-{task.index}"
        names = [f"{base}-ab"] + ([f"{base}-ba"] if task.kind == "latency" else [])
        cap = task.capacity if task.kind == "throughput" else 2
        spin = SPIN_FOREVER if task.mode == "busy" else None
        chans: list[Channel] = []
        try:
            if role == "a":
                for n in names:
                    chans.append(Channel.create(n, slot_size=task.size, capacity=cap))
                barrier.wait()
            else:
                barrier.wait()
                for n in names:
                    chans.append(Channel.open(n, timeout=10.0))
            # a writes a->b and reads b->a; b the other way round
            w = r = None
            if role == "a":
                w = chans[0].writer(spin=spin)
                if len(chans) > 1:
                    r = chans[1].reader(spin=spin)
            else:
                r = chans[0].reader(spin=spin)
                if len(chans) > 1:
                    w = chans[1].writer(spin=spin)
        except BaseException:
            for c in chans:
                c.close()
            raise
        cls = _ShmchanCopyEP if self.copying else _ShmchanEP
        return cls(chans, w, r, task.size)


class ShmchanCopy(Shmchan):
    key = "shmchan-copy"
    label = "shmchan send/recv_into"
    how = ("the copying conveniences: the producer writes a local buffer and send()s it; the consumer "
           "recv_into()s a local buffer and reads that")
    copying = True


# ---- multiprocessing.Queue ----


class _MPQueueEP(Endpoint):
    def __init__(self, tx: Any, rx: Any, size: int, busy: bool) -> None:
        self.tx, self.rx, self.busy = tx, rx, busy
        self.pat = Pattern(size)
        self.size = size

    def send(self, v: int) -> None:
        # a new object per message: put() pickles it later, in a feeder thread, so a reused buffer
        # could be overwritten before it is sent
        if self.pat.small:
            buf: Any = bytearray(self.size)
        else:
            buf = np.empty(self.size, np.uint8)
        self.pat.write(buf, v)
        self.tx.put(buf)

    def recv(self) -> int:
        if self.busy:
            while True:
                try:
                    obj = self.rx.get_nowait()
                    break
                except queue.Empty:
                    pass
        else:
            obj = self.rx.get()
        return self.pat.read(obj)


class MPQueue(System):
    key = "mp-queue"
    label = "multiprocessing.Queue"
    how = ("put() a new bytearray/ndarray per message (pickled by the feeder thread), get(); "
           "busy: get_nowait() in a loop; bounded to the same depth as the shmchan ring")

    def version(self) -> str:
        import platform

        return f"Python {platform.python_version()}"

    def shared(self, ctx: Any, size: int, capacity: int, run_id: str) -> dict[str, Any]:
        return {"ab": ctx.Queue(maxsize=capacity), "ba": ctx.Queue(maxsize=capacity)}

    def cleanup(self, shared: dict[str, Any]) -> None:
        for q in shared.values():
            q.close()
            q.join_thread()

    def endpoint(self, role: str, task: Task, shared: dict[str, Any], barrier: Any) -> Endpoint:
        barrier.wait()
        tx, rx = (shared["ab"], shared["ba"]) if role == "a" else (shared["ba"], shared["ab"])
        return _MPQueueEP(tx, rx, task.size, task.mode == "busy")


# ---- multiprocessing.Pipe ----


class _PipeEP(Endpoint):
    def __init__(self, conn: Any, size: int, busy: bool) -> None:
        self.conn, self.busy = conn, busy
        self.pat = Pattern(size)
        self.out = bytearray(size)
        self.out_mv = memoryview(self.out)
        self.inp = bytearray(size)
        self.inp_mv = memoryview(self.inp)

    def send(self, v: int) -> None:
        self.pat.write(self.out_mv, v)
        self.conn.send_bytes(self.out)

    def recv(self) -> int:
        if self.busy:
            poll = self.conn.poll
            while not poll():
                pass
        n = self.conn.recv_bytes_into(self.inp)
        return self.pat.read(self.inp_mv if n == len(self.inp) else self.inp_mv[:n])

    def close(self) -> None:
        self.out_mv.release()
        self.inp_mv.release()


class MPPipe(System):
    key = "mp-pipe"
    label = "multiprocessing.Pipe"
    how = "send_bytes() of a reused buffer, recv_bytes_into() a preallocated one (no pickling); busy: poll() loop"

    def version(self) -> str:
        import platform

        return f"Python {platform.python_version()}"

    def shared(self, ctx: Any, size: int, capacity: int, run_id: str) -> dict[str, Any]:
        a, b = ctx.Pipe(duplex=True)
        return {"a": a, "b": b}

    def cleanup(self, shared: dict[str, Any]) -> None:
        for c in shared.values():
            c.close()

    def endpoint(self, role: str, task: Task, shared: dict[str, Any], barrier: Any) -> Endpoint:
        barrier.wait()
        return _PipeEP(shared[role], task.size, task.mode == "busy")


# ---- multiprocessing.shared_memory with an Event handoff ----


class _ShmEventEP(Endpoint):
    def __init__(self, shms: dict[str, Any], events: dict[str, Any], role: str, size: int, busy: bool) -> None:
        out, inp = ("ab", "ba") if role == "a" else ("ba", "ab")
        self.shms = shms
        self.out_mv = shms[out].buf[:size] if out in shms else None
        self.inp_mv = shms[inp].buf[:size] if inp in shms else None
        self.out_ready: Any = events.get(out + "_ready")
        self.out_free: Any = events.get(out + "_free")
        self.inp_ready: Any = events.get(inp + "_ready")
        self.inp_free: Any = events.get(inp + "_free")
        self.busy = busy
        self.pat = Pattern(size)

    def _wait(self, ev: Any) -> None:
        if self.busy:
            is_set = ev.is_set
            while not is_set():
                pass
        else:
            ev.wait()

    def send(self, v: int) -> None:
        self._wait(self.out_free)
        self.out_free.clear()
        self.pat.write(self.out_mv, v)
        self.out_ready.set()

    def recv(self) -> int:
        self._wait(self.inp_ready)
        self.inp_ready.clear()
        v = self.pat.read(self.inp_mv)
        self.inp_free.set()
        return v

    def close(self) -> None:
        for mv in (self.out_mv, self.inp_mv):
            if mv is not None:
                mv.release()
        for s in self.shms.values():
            s.close()


class MPSharedMemory(System):
    key = "mp-shm"
    label = "shared_memory+Event"
    how = ("multiprocessing.shared_memory buffer written and read in place, handed over with two "
           "multiprocessing.Event (ready/free); busy: is_set() loop")

    def version(self) -> str:
        import platform

        return f"Python {platform.python_version()}"

    def shared(self, ctx: Any, size: int, capacity: int, run_id: str) -> dict[str, Any]:
        from multiprocessing import shared_memory

        shms = {}
        events = {}
        for d in ("ab", "ba"):
            shms[d] = shared_memory.SharedMemory(create=True, size=size)
            events[d + "_ready"] = ctx.Event()
            events[d + "_free"] = ctx.Event()
            events[d + "_free"].set()
        return {"names": {d: s.name for d, s in shms.items()}, "events": events, "_own": shms}

    def cleanup(self, shared: dict[str, Any]) -> None:
        for s in shared["_own"].values():
            s.close()
            s.unlink()

    def endpoint(self, role: str, task: Task, shared: dict[str, Any], barrier: Any) -> Endpoint:
        from multiprocessing import shared_memory

        barrier.wait()
        dirs = ("ab", "ba") if task.kind == "latency" else ("ab",)
        # attaching registers the name with the resource tracker the parent shares with us; the
        # parent created it, unlinks it and unregisters it, so nothing is left behind or warned about
        shms = {d: shared_memory.SharedMemory(name=shared["names"][d]) for d in dirs}
        return _ShmEventEP(shms, shared["events"], role, task.size, task.mode == "busy")


# ---- faster-fifo ----


class _FasterFifoEP(Endpoint):
    def __init__(self, tx: Any, rx: Any, size: int, busy: bool, empty: type[BaseException]) -> None:
        self.tx, self.rx, self.busy, self.empty = tx, rx, busy, empty
        self.pat = Pattern(size)
        self.out = bytearray(size)
        self.out_mv = memoryview(self.out)

    def send(self, v: int) -> None:
        # put() pickles synchronously, so the buffer can be reused
        self.pat.write(self.out_mv, v)
        self.tx.put(self.out, timeout=_LONG)

    def recv(self) -> int:
        if self.busy:
            get = self.rx.get_nowait
            while True:
                try:
                    obj = get()
                    break
                except self.empty:
                    pass
        else:
            obj = self.rx.get(timeout=_LONG)
        return self.pat.read(obj)

    def close(self) -> None:
        self.out_mv.release()


class FasterFifo(System):
    key = "faster-fifo"
    label = "faster-fifo"
    requires = ("faster_fifo",)
    dist = "faster-fifo"
    how = "put() a reused bytearray (pickled into its shared circular buffer), get(); busy: get_nowait() loop"

    def shared(self, ctx: Any, size: int, capacity: int, run_id: str) -> dict[str, Any]:
        ff = importlib.import_module("faster_fifo")
        nbytes = capacity * (size + 4096) + (1 << 16)
        return {"ab": ff.Queue(max_size_bytes=nbytes), "ba": ff.Queue(max_size_bytes=nbytes)}

    def cleanup(self, shared: dict[str, Any]) -> None:
        for q in shared.values():
            q.close()

    def endpoint(self, role: str, task: Task, shared: dict[str, Any], barrier: Any) -> Endpoint:
        barrier.wait()
        tx, rx = (shared["ab"], shared["ba"]) if role == "a" else (shared["ba"], shared["ab"])
        return _FasterFifoEP(tx, rx, task.size, task.mode == "busy", queue.Empty)


# ---- pyzmq ----


class _ZmqEP(Endpoint):
    def __init__(self, zmq: Any, ctx: Any, sock: Any, size: int, busy: bool) -> None:
        self.zmq, self.ctx, self.sock, self.busy, self.size = zmq, ctx, sock, busy, size
        self.pat = Pattern(size)
        self.small = size < zmq.COPY_THRESHOLD
        # below COPY_THRESHOLD pyzmq copies even with copy=False, so one buffer can be reused;
        # above it the buffer is sent in place and reused only once its MessageTracker is done
        self.bufs: list[Any] = [bytearray(size)] if self.small else [np.empty(size, np.uint8) for _ in range(4)]
        self.trackers: list[Any] = [None] * len(self.bufs)
        self.next = 0

    def send(self, v: int) -> None:
        i = self.next
        self.next = (i + 1) % len(self.bufs)
        buf = self.bufs[i]
        if self.small:
            self.pat.write(buf, v)
            self.sock.send(buf, copy=False)
            return
        t = self.trackers[i]
        if t is not None:
            t.wait()
        self.pat.write(buf, v)
        self.trackers[i] = self.sock.send(buf, copy=False, track=True)

    def recv(self) -> int:
        copy = self.small  # pyzmq: copying is faster for small messages, zero-copy frames for large
        if self.busy:
            again, noblock, recv = self.zmq.Again, self.zmq.NOBLOCK, self.sock.recv
            while True:
                try:
                    m = recv(noblock, copy=copy)
                    break
                except again:
                    pass
        else:
            m = self.sock.recv(copy=copy)
        return self.pat.read(m if copy else m.buffer)

    def close(self) -> None:
        for t in self.trackers:
            if t is not None:
                t.wait()
        self.sock.close(linger=0)
        self.ctx.term()


class Zmq(System):
    key = "zmq"
    label = "pyzmq ipc://"
    requires = ("zmq",)
    dist = "pyzmq"
    how = ("PAIR sockets over ipc://; send(copy=False) (tracked buffers above zmq.COPY_THRESHOLD), recv() "
           "(copy=False frames above it); busy: recv(NOBLOCK) loop; high-water marks = ring depth")

    def version(self) -> str:
        zmq = importlib.import_module("zmq")
        return f"{zmq.__version__} (libzmq {zmq.zmq_version()})"

    def shared(self, ctx: Any, size: int, capacity: int, run_id: str) -> dict[str, Any]:
        return {"dir": tempfile.mkdtemp(prefix=f"shmchan-bench-{run_id}-zmq-")}

    def cleanup(self, shared: dict[str, Any]) -> None:
        shutil.rmtree(shared["dir"], ignore_errors=True)

    def endpoint(self, role: str, task: Task, shared: dict[str, Any], barrier: Any) -> Endpoint:
        zmq = importlib.import_module("zmq")
        zctx = zmq.Context()
        sock = zctx.socket(zmq.PAIR)
        hwm = task.capacity if task.kind == "throughput" else 2
        sock.setsockopt(zmq.SNDHWM, hwm)
        sock.setsockopt(zmq.RCVHWM, hwm)
        addr = f"ipc://{shared['dir']}/{task.index}.ipc"
        if role == "a":
            sock.bind(addr)
            barrier.wait()
        else:
            barrier.wait()
            sock.connect(addr)
        return _ZmqEP(zmq, zctx, sock, task.size, task.mode == "busy")


# ---- iceoryx2 ----


class _IoxEP(Endpoint):
    def __init__(self, iox2: Any, ports: list[Any], pub: Any, sub: Any, notifier: Any, listener: Any,
                 size: int, busy: bool) -> None:
        self.iox2, self.ports, self.pub, self.sub = iox2, ports, pub, sub
        self.notifier, self.listener, self.busy = notifier, listener, busy
        self.pat = Pattern(size)

    def send(self, v: int) -> None:
        sample = self.pub.loan_uninit()
        self.pat.write_at(sample.payload_ptr, v)
        sample.assume_init().send()
        if self.notifier is not None:
            self.notifier.notify()

    def recv(self) -> int:
        receive = self.sub.receive
        sample = receive()
        if sample is None:
            if self.busy:
                while (sample := receive()) is None:
                    pass
            else:
                wait = self.listener.blocking_wait
                while (sample := receive()) is None:
                    wait()
        v = self.pat.read_at(sample.payload_ptr)
        sample.delete()
        return v

    def close(self) -> None:
        for p in self.ports:
            p.delete()


class Iceoryx2(System):
    key = "iceoryx2"
    label = "iceoryx2"
    requires = ("iceoryx2",)
    dist = "iceoryx2"
    how = ("publish-subscribe of a ctypes c_uint8 array: loan_uninit(), write in place, assume_init().send(); "
           "receive(), read in place, delete(); busy: receive() loop; blocking: an event service, notify() "
           "after each send, Listener.blocking_wait() when empty")

    def shared(self, ctx: Any, size: int, capacity: int, run_id: str) -> dict[str, Any]:
        return {"root": iox_root(run_id), "prefix": iox_prefix(run_id)}

    def endpoint(self, role: str, task: Task, shared: dict[str, Any], barrier: Any) -> Endpoint:
        import ctypes

        iox2 = importlib.import_module("iceoryx2")
        node = _iox_node(iox2, shared)
        payload = ctypes.c_uint8 * task.size
        dirs = ("ab", "ba") if task.kind == "latency" else ("ab",)
        depth = task.capacity if task.kind == "throughput" else 2
        blocking = task.mode == "blocking"
        base = f"shmchan-bench/{task.run_id}/{task.index}"

        def service(d: str) -> Any:
            return (
                node.service_builder(iox2.ServiceName.new(f"{base}/{d}"))
                .publish_subscribe(payload)
                .max_publishers(1)
                .max_subscribers(1)
                .history_size(0)
                .subscriber_max_buffer_size(depth)
                .enable_safe_overflow(False)  # a full subscriber makes the publisher wait, nothing is lost
                .open_or_create()
            )

        def event(d: str) -> Any:
            return node.service_builder(iox2.ServiceName.new(f"{base}/{d}/event")).event().open_or_create()

        if role == "b":
            barrier.wait()
        services = {d: service(d) for d in dirs}
        events = {d: event(d) for d in dirs} if blocking else {}
        if role == "a":
            barrier.wait()
        out, inp = ("ab", "ba") if role == "a" else ("ba", "ab")
        ports: list[Any] = []
        pub = sub = notifier = listener = None
        if out in services:
            pub = services[out].publisher_builder().create()
            ports.append(pub)
            if blocking:
                notifier = events[out].notifier_builder().create()
                ports.append(notifier)
        if inp in services:
            sub = services[inp].subscriber_builder().create()
            ports.append(sub)
            if blocking:
                listener = events[inp].listener_builder().create()
                ports.append(listener)
        return _IoxEP(iox2, ports, pub, sub, notifier, listener, task.size, not blocking)


_IOX_NODE: Any = None


def iox_root(run_id: str) -> str:
    return os.path.join(tempfile.gettempdir(), f"shmchan-bench-{run_id}-iceoryx2") + "/"


def iox_prefix(run_id: str) -> str:
    return f"iox2sb{run_id}_"


def _iox_node(iox2: Any, shared: dict[str, Any]) -> Any:
    """One node per process, with its files under a root and a prefix of this run only, so that
    the parent can remove every file the run made."""
    global _IOX_NODE
    if _IOX_NODE is None:
        iox2.set_log_level_from_env_or(iox2.LogLevel.Error)
        cfg = iox2.config.default()
        cfg.global_cfg.prefix = iox2.FileName.new(shared["prefix"])
        cfg.global_cfg.root_path = iox2.Path.new(shared["root"])
        _IOX_NODE = iox2.NodeBuilder.new().config(cfg).create(iox2.ServiceType.Ipc)
    return _IOX_NODE


def iox_cleanup(run_id: str) -> None:
    """Remove whatever iceoryx2 left of this run in /dev/shm and its root directory."""
    prefix = iox_prefix(run_id)
    for d in ("/dev/shm", tempfile.gettempdir()):
        try:
            entries = os.listdir(d)
        except OSError:
            continue
        for e in entries:
            if e.startswith(prefix):
                p = os.path.join(d, e)
                if os.path.isdir(p):
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    with contextlib.suppress(OSError):
                        os.unlink(p)
    shutil.rmtree(iox_root(run_id), ignore_errors=True)


SYSTEMS: dict[str, System] = {
    s.key: s
    for s in (
        NoIPC(),
        Shmchan(),
        ShmchanCopy(),
        MPQueue(),
        MPPipe(),
        MPSharedMemory(),
        FasterFifo(),
        Zmq(),
        Iceoryx2(),
    )
}
