"""``shmchan bench --kinds dataplane``: the per-message cost of the Python API, against baselines.

Every figure here is a ratio to a baseline measured in the same run, cell by cell in alternation
(round 1: every system, round 2: every system, ...), and reported as the median over the rounds:

- **round trip** (64 B, busy-poll, two processes on two CPUs): each side copies a 64-byte source
  into a new message and stamps a sequence number in it, and reads the stamp of every message it
  receives. shmchan: ``with w.reserve(64) as slot:``, ``slot.buffer[:] = src``, ``pack_into``;
  ``recv()``, ``unpack_from(msg.buffer)``, ``release()``. iceoryx2: ``loan_uninit()``, a ``memmove``
  and a ``c_uint64`` store into the payload, ``send()``; ``receive()``, a ``c_uint64`` load,
  ``delete()``. ``multiprocessing.Pipe``: ``send_bytes``/``recv_bytes`` of a stamped buffer.
- **one-way throughput** (64 B): the same work, the producer streaming; shmchan also with batches
  (``send_batch`` of 64 stamped messages, ``recv_batch`` on the reader).
- **views** (one process): ``msg.ndarray()`` / ``slot.ndarray()`` against ``np.frombuffer`` on a
  memoryview.
- **memory**: what a channel of 1024 slots of 64 B takes in /dev/shm, against its payload.
"""

from __future__ import annotations

import ctypes
import functools
import importlib
import multiprocessing as mp
import os
import statistics
import struct
import time
import timeit
from collections.abc import Callable
from typing import Any

import numpy as np

SEQ = struct.Struct("<Q")
STOP = (1 << 64) - 1
SMALL = 64
BATCH = 64
RTT_SYSTEMS = ("shmchan", "iceoryx2", "pipe")
TPUT_SYSTEMS = ("shmchan", "shmchan-batch", "pipe")
LABELS = {
    "shmchan": "shmchan",
    "shmchan-batch": "shmchan send_batch/recv_batch",
    "iceoryx2": "iceoryx2",
    "pipe": "multiprocessing.Pipe",
    "none": "no IPC (one process)",
}


def available(system: str) -> bool:
    if system == "iceoryx2":
        try:
            importlib.import_module("iceoryx2")
        except Exception:
            return False
    return True


def _pin(cpu: int | None) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


# ---- shmchan ----


def _shm_ends(names: tuple[str, str], role: str) -> tuple[Any, Any, Any, Any]:
    import shmchan

    spin = float("inf")
    out_name, in_name = names if role == "a" else (names[1], names[0])
    out_ch = shmchan.Channel.open(out_name, timeout=10)
    in_ch = shmchan.Channel.open(in_name, timeout=10) if in_name else None
    w = out_ch.writer(spin=spin)
    r = in_ch.reader(spin=spin) if in_ch is not None else None
    return out_ch, in_ch, w, r


def _shm_rtt(role: str, names: tuple[str, str], seconds: float, warm: int, cpu: int | None, out: Any) -> None:
    _pin(cpu)
    out_ch, in_ch, w, r = _shm_ends(names, role)
    src = bytes(SMALL)
    pack, unpack = SEQ.pack_into, SEQ.unpack_from
    try:
        if role == "b":
            while True:
                m = r.recv()
                v = unpack(m.buffer)[0]
                m.release()
                with w.reserve(SMALL) as slot:
                    buf = slot.buffer
                    buf[:] = src
                    pack(buf, 0, v)
                if v == STOP:
                    return
        now = time.perf_counter_ns
        rtt: list[int] = []
        end = now() + int(seconds * 1e9)
        i = 0
        errors = 0
        while True:
            t0 = now()
            with w.reserve(SMALL) as slot:
                buf = slot.buffer
                buf[:] = src
                pack(buf, 0, i)
            m = r.recv()
            v = unpack(m.buffer)[0]
            m.release()
            t1 = now()
            errors += v != i
            if i >= warm:
                rtt.append(t1 - t0)
                if t1 >= end:
                    break
            i += 1
        with w.reserve(SMALL) as slot:
            pack(slot.buffer, 0, STOP)
        m = r.recv()
        m.release()
        out.put({"rtt_ns": rtt, "errors": errors})
    finally:
        del w, r
        out_ch.close()
        if in_ch is not None:
            in_ch.close()


def _shm_stream(role: str, names: tuple[str, str], seconds: float, warm: int, cpu: int | None, out: Any,
                batch: bool) -> None:
    _pin(cpu)
    import shmchan

    src = bytes(SMALL)
    pack, unpack = SEQ.pack_into, SEQ.unpack_from
    if role == "a":  # producer
        ch = shmchan.Channel.open(names[0], timeout=10)
        w = ch.writer()
        try:
            i = 0
            if batch:
                bufs = [bytearray(src) for _ in range(BATCH)]
                while True:
                    for b in bufs:
                        pack(b, 0, i)
                        i += 1
                    try:
                        w.send_batch(bufs, timeout=0.5)
                    except shmchan.ChannelTimeoutError:
                        break  # the consumer stopped reading: done
                    except shmchan.ShmchanError:
                        break
            else:
                while True:
                    try:
                        with w.reserve(SMALL, timeout=0.5) as slot:
                            buf = slot.buffer
                            buf[:] = src
                            pack(buf, 0, i)
                    except shmchan.ShmchanError:
                        break
                    i += 1
        finally:
            del w
            ch.close()
        return
    ch = shmchan.Channel.open(names[0], timeout=10)
    r = ch.reader()
    now = time.perf_counter_ns
    n = errors = 0
    expect = 0
    try:
        t0 = 0
        end = 0
        while True:
            if batch:
                msgs = r.recv_batch(BATCH)
                for m in msgs:
                    v = unpack(m.buffer)[0]
                    m.release()
                    errors += v != expect
                    expect = v + 1
                n += len(msgs)
            else:
                m = r.recv()
                v = unpack(m.buffer)[0]
                m.release()
                errors += v != expect
                expect = v + 1
                n += 1
            if n >= warm and t0 == 0:
                t0 = now()
                n0 = n
                end = t0 + int(seconds * 1e9)
            if t0 and (n & 255) < (BATCH if batch else 1) and now() >= end:
                break
        rate = (n - n0) * 1e9 / (now() - t0)
        out.put({"msgs_per_s": rate, "errors": errors})
    finally:
        r.close()  # the producer's next wait fails: it stops
        del r
        ch.close()


# ---- iceoryx2 ----


def _iox_service(node: Any, iox2: Any, name: str, depth: int) -> Any:
    payload = ctypes.c_uint8 * SMALL
    return (node.service_builder(iox2.ServiceName.new(name)).publish_subscribe(payload).max_publishers(1)
            .max_subscribers(1).history_size(0).subscriber_max_buffer_size(depth).enable_safe_overflow(False)
            .open_or_create())


def _iox_rtt(role: str, names: tuple[str, str], seconds: float, warm: int, cpu: int | None, out: Any,
             shared: dict[str, Any], ready: Any) -> None:
    _pin(cpu)
    from . import _systems

    iox2 = importlib.import_module("iceoryx2")
    node = _systems._iox_node(iox2, shared)
    if role == "b":
        ready.wait(30)
    svc = {n: _iox_service(node, iox2, n, 2) for n in names}
    if role == "a":
        ready.wait(30)
    out_name, in_name = names if role == "a" else (names[1], names[0])
    pub = svc[out_name].publisher_builder().create()
    sub = svc[in_name].subscriber_builder().create()
    ready.wait(30)
    src = bytes(SMALL)
    u64 = ctypes.c_uint64
    memmove = ctypes.memmove
    receive = sub.receive
    try:
        if role == "b":
            while True:
                while (s := receive()) is None:
                    pass
                v = u64.from_address(s.payload_ptr).value
                s.delete()
                o = pub.loan_uninit()
                p = o.payload_ptr
                memmove(p, src, SMALL)
                u64.from_address(p).value = v
                o.assume_init().send()
                if v == STOP:
                    return
        now = time.perf_counter_ns
        rtt: list[int] = []
        end = now() + int(seconds * 1e9)
        i = errors = 0
        while True:
            t0 = now()
            o = pub.loan_uninit()
            p = o.payload_ptr
            memmove(p, src, SMALL)
            u64.from_address(p).value = i
            o.assume_init().send()
            while (s := receive()) is None:
                pass
            v = u64.from_address(s.payload_ptr).value
            s.delete()
            t1 = now()
            errors += v != i
            if i >= warm:
                rtt.append(t1 - t0)
                if t1 >= end:
                    break
            i += 1
        o = pub.loan_uninit()
        u64.from_address(o.payload_ptr).value = STOP
        o.assume_init().send()
        while (s := receive()) is None:
            pass
        s.delete()
        out.put({"rtt_ns": rtt, "errors": errors})
    finally:
        sub.delete()
        pub.delete()


# ---- multiprocessing.Pipe ----


def _pipe_rtt(role: str, conn: Any, seconds: float, warm: int, cpu: int | None, out: Any) -> None:
    _pin(cpu)
    buf = bytearray(SMALL)
    pack, unpack = SEQ.pack_into, SEQ.unpack_from
    poll, send, recv = conn.poll, conn.send_bytes, conn.recv_bytes
    if role == "b":
        while True:
            while not poll():
                pass
            v = unpack(recv())[0]
            pack(buf, 0, v)
            send(buf)
            if v == STOP:
                return
    now = time.perf_counter_ns
    rtt: list[int] = []
    end = now() + int(seconds * 1e9)
    i = errors = 0
    while True:
        t0 = now()
        pack(buf, 0, i)
        send(buf)
        while not poll():
            pass
        v = unpack(recv())[0]
        t1 = now()
        errors += v != i
        if i >= warm:
            rtt.append(t1 - t0)
            if t1 >= end:
                break
        i += 1
    pack(buf, 0, STOP)
    send(buf)
    recv()
    out.put({"rtt_ns": rtt, "errors": errors})


def _pipe_stream(role: str, conn: Any, seconds: float, warm: int, cpu: int | None, out: Any) -> None:
    _pin(cpu)
    pack, unpack = SEQ.pack_into, SEQ.unpack_from
    if role == "a":
        buf = bytearray(SMALL)
        i = 0
        send = conn.send_bytes
        try:
            while True:
                pack(buf, 0, i)
                send(buf)
                i += 1
        except (BrokenPipeError, OSError):
            return
    recv = conn.recv_bytes
    now = time.perf_counter_ns
    n = errors = expect = 0
    t0 = end = 0
    n0 = 0
    while True:
        v = unpack(recv())[0]
        errors += v != expect
        expect = v + 1
        n += 1
        if n == warm:
            t0 = now()
            n0 = n
            end = t0 + int(seconds * 1e9)
        if t0 and (n & 255) == 0 and now() >= end:
            break
    rate = (n - n0) * 1e9 / (now() - t0)
    conn.close()
    out.put({"msgs_per_s": rate, "errors": errors})


# ---- running the cells ----


def _two(ctx: Any, target: Callable[..., None], args_a: tuple[Any, ...], args_b: tuple[Any, ...],
         cpus: tuple[int, int] | None, timeout: float, extra: tuple[Any, ...] = (),
         after_start: Callable[[], None] | None = None) -> dict[str, Any]:
    """Run ``target`` as roles "a" and "b" in two fresh processes; return what one of them reports."""
    out = ctx.Queue()
    pa = ctx.Process(target=target, args=("a", *args_a, cpus[0] if cpus else None, out, *extra), daemon=True)
    pb = ctx.Process(target=target, args=("b", *args_b, cpus[1] if cpus else None, out, *extra), daemon=True)
    pa.start()
    pb.start()
    if after_start is not None:
        after_start()
    try:
        res: dict[str, Any] = out.get(timeout=timeout)
    finally:
        for p in (pa, pb):
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join(5)
    return res


def run_cell(ctx: Any, what: str, system: str, seconds: float, cpus: tuple[int, int] | None, run_id: str,
             cell: int) -> dict[str, Any]:
    """One measurement: ``what`` is "rtt" (round trip) or "tput" (one-way throughput)."""
    import shmchan

    from . import _systems

    base = f"bench-{run_id}-dp{cell}"
    timeout = 60 + 10 * seconds
    warm = 2000
    if system in ("shmchan", "shmchan-batch"):
        if what == "rtt":
            names = (f"{base}-ab", f"{base}-ba")
            chans = [shmchan.Channel.create(n, slot_size=SMALL, capacity=64) for n in names]
            try:
                return _two(ctx, _shm_rtt, (names, seconds, warm), (names, seconds, warm), cpus, timeout)
            finally:
                for c in chans:
                    c.close()
        names = (f"{base}-ab", "")
        ch = shmchan.Channel.create(names[0], slot_size=SMALL, capacity=256)
        target = _shm_stream_batch if system == "shmchan-batch" else _shm_stream_single
        try:
            return _two(ctx, target, (names, seconds, warm), (names, seconds, warm), cpus, timeout)
        finally:
            ch.close()
    if system == "pipe":
        a, b = ctx.Pipe(duplex=what == "rtt")

        def close_ours() -> None:  # the children have their copies; ours would keep the pipe open
            a.close()
            b.close()

        if what == "rtt":
            return _two(ctx, _pipe_rtt, (a, seconds, warm), (b, seconds, warm), cpus, timeout,
                        after_start=close_ours)
        # one-way: a simplex pipe's b end sends, its a end receives
        return _two(ctx, _pipe_stream, (b, seconds, warm), (a, seconds, warm), cpus, timeout,
                    after_start=close_ours)
    if system == "iceoryx2":
        shared = {"root": _systems.iox_root(run_id), "prefix": _systems.iox_prefix(run_id)}
        ready = ctx.Barrier(2)
        names = (f"shmchan-bench/{run_id}/dp{cell}/ab", f"shmchan-bench/{run_id}/dp{cell}/ba")
        return _two(ctx, _iox_rtt, (names, seconds, warm), (names, seconds, warm), cpus, timeout,
                    extra=(shared, ready))
    raise ValueError(system)


def _shm_stream_batch(role: str, names: tuple[str, str], seconds: float, warm: int, cpu: int | None,
                      out: Any) -> None:
    _shm_stream(role, names, seconds, warm, cpu, out, True)


def _shm_stream_single(role: str, names: tuple[str, str], seconds: float, warm: int, cpu: int | None,
                       out: Any) -> None:
    _shm_stream(role, names, seconds, warm, cpu, out, False)


def micro_views(seconds: float) -> dict[str, float]:
    """ns per call, in one process: msg.ndarray() and slot.ndarray() against np.frombuffer."""
    import shmchan

    name = f"bench-{os.getpid()}-views"
    out: dict[str, float] = {}
    with shmchan.Channel.create(name, slot_size=SMALL, capacity=4) as ch:
        w, r = ch.writer(), ch.reader()
        w.send(bytes(SMALL))
        msg = r.recv()
        slot = w.reserve(SMALL)
        mv = memoryview(bytearray(SMALL))
        cases: dict[str, Callable[[], Any]] = {
            "np.frombuffer(memoryview)": lambda: np.frombuffer(mv, np.uint8),
            "msg.ndarray()": msg.ndarray,
            "slot.ndarray()": slot.ndarray,
            "np.frombuffer(memoryview, uint64)": lambda: np.frombuffer(mv, np.uint64),
            "msg.ndarray(8, uint64)": functools.partial(msg.ndarray, 8, np.uint64),
        }
        number = 20000
        reps = max(3, int(seconds / 0.01))
        samples: dict[str, list[float]] = {k: [] for k in cases}
        for _ in range(reps):  # alternate, so a slow moment hits every case alike
            for k, f in cases.items():
                samples[k].append(timeit.timeit(f, number=number) / number * 1e9)
        out = {k: statistics.median(v) for k, v in samples.items()}
        slot.abort()
        msg.release()
        del msg, slot
    return out


def memory() -> dict[str, float]:
    import shmchan

    name = f"bench-{os.getpid()}-mem"
    with shmchan.Channel.create(name, slot_size=SMALL, capacity=1024) as ch:
        size = os.stat(f"/dev/shm/shmchan.{name}").st_size
        return {"slot_size": SMALL, "capacity": 1024, "payload_bytes": SMALL * 1024, "object_bytes": size,
                "nbytes": ch.nbytes, "page": 4096}


def percentile(sorted_ns: list[int], q: float) -> float:
    if not sorted_ns:
        return float("nan")
    k = min(len(sorted_ns) - 1, max(0, round(q * (len(sorted_ns) - 1))))
    return sorted_ns[k] / 1000.0


def run_section(rounds: int, seconds: float, cpus: tuple[int, int] | None, run_id: str, say: Callable[[str], None],
                step: Callable[[str], None]) -> dict[str, Any]:
    """Every cell, ``rounds`` times in alternation; returns the raw and combined figures."""
    ctx = mp.get_context("spawn")
    raw: dict[str, dict[str, list[dict[str, Any]]]] = {"rtt": {}, "tput": {}}
    systems = {"rtt": [s for s in RTT_SYSTEMS if available(s)], "tput": list(TPUT_SYSTEMS)}
    cell = 0
    per = seconds / rounds
    for _ in range(rounds):
        for what in ("rtt", "tput"):
            for s in systems[what]:
                label = f"dataplane {what} {LABELS[s]}"
                try:
                    res = run_cell(ctx, what, s, per, cpus, run_id, cell)
                except Exception as exc:  # reported, never hidden
                    res = {"error": f"{exc.__class__.__name__}: {exc}"}
                    say(f"  {label}: FAILED: {res['error']}")
                raw[what].setdefault(s, []).append(res)
                cell += 1
                step(label)
    views = micro_views(seconds)
    step("dataplane views")
    return combine(raw, views, memory(), rounds, per, cpus)


def combine(raw: dict[str, dict[str, list[dict[str, Any]]]], views: dict[str, float], mem: dict[str, float],
            rounds: int, per: float, cpus: tuple[int, int] | None) -> dict[str, Any]:
    out: dict[str, Any] = {"rounds": rounds, "seconds_per_round": per, "cpus": list(cpus) if cpus else None,
                           "rtt": {}, "tput": {}, "views_ns": views, "memory": mem}
    for s, runs in raw["rtt"].items():
        ok = [r for r in runs if "rtt_ns" in r]
        if not ok:
            out["rtt"][s] = {"error": runs[-1].get("error", "no result")}
            continue
        p50s = [statistics.median(r["rtt_ns"]) / 1000.0 for r in ok]
        pooled = sorted(x for r in ok for x in r["rtt_ns"])
        out["rtt"][s] = {"p50_us": statistics.median(p50s), "p50_us_rounds": p50s,
                         "p99_us": percentile(pooled, 0.99), "p999_us": percentile(pooled, 0.999),
                         "n": len(pooled), "errors": sum(r["errors"] for r in ok)}
    for what, key in (("tput", "msgs_per_s"),):
        for s, runs in raw[what].items():
            ok = [r for r in runs if key in r]
            if not ok:
                out[what][s] = {"error": runs[-1].get("error", "no result")}
                continue
            vals = [r[key] for r in ok]
            out[what][s] = {key: statistics.median(vals), f"{key}_rounds": vals,
                            "errors": sum(r["errors"] for r in ok)}
    return out


def targets(dp: dict[str, Any]) -> list[dict[str, Any]]:
    """The data plane's targets, each a ratio measured in this run (the format of the report's targets)."""
    rows: list[dict[str, Any]] = []

    def add(name: str, value: float | None, ref: float | None, limit: float, higher: bool, unit: str,
            what: str) -> None:
        t: dict[str, Any] = {"target": name, "limit": limit, "better": "higher" if higher else "lower", "unit": unit,
                             "what": what}
        if not value or not ref:
            t.update(ratio=None, met=None, note="not measured in this run")
        else:
            r = value / ref
            t.update(value=value, reference=ref, ratio=r, met=bool(r >= limit if higher else r <= limit))
        rows.append(t)

    rtt = dp.get("rtt", {})
    shm, iox = rtt.get("shmchan", {}), rtt.get("iceoryx2", {})
    add("data plane: 64 B round trip, busy-poll, <= 0.35x iceoryx2", shm.get("p50_us"), iox.get("p50_us"), 0.35,
        False, "us p50", "with w.reserve(64) as slot / copy in through slot.buffer / stamp; recv / msg.buffer / "
        "read the stamp / release; against iceoryx2 doing the same through loan_uninit/send and receive/delete")
    add("data plane: 64 B round trip p99 <= 3x its p50", shm.get("p99_us"), shm.get("p50_us"), 3.0, False, "us",
        "shmchan's p99 round trip / its p50, same cell")
    tp = dp.get("tput", {})
    pipe = tp.get("pipe", {}).get("msgs_per_s")
    add("data plane: 64 B one-way >= 2.5x multiprocessing.Pipe", tp.get("shmchan", {}).get("msgs_per_s"), pipe, 2.5,
        True, "msg/s", "the same calls as the round trip, streaming; against send_bytes/recv_bytes of a stamped buffer")
    add("data plane: 64 B one-way, send_batch/recv_batch, >= 6x multiprocessing.Pipe",
        tp.get("shmchan-batch", {}).get("msgs_per_s"), pipe, 6.0, True, "msg/s",
        "send_batch of 64 stamped messages; recv_batch, then msg.buffer / read the stamp / release each")
    views = dp.get("views_ns", {})
    base = views.get("np.frombuffer(memoryview)")
    for k in ("msg.ndarray()", "slot.ndarray()"):
        add(f"data plane: {k} <= 2x np.frombuffer(memoryview)", views.get(k), base, 2.0, False, "ns",
            "ns per call in one process, the median of alternated repeats")
    mem = dp.get("memory")
    if mem:
        limit = 1.25 * mem["payload_bytes"] + 2 * mem["page"]
        add("memory: 1024 slots of 64 B <= 1.25x their payload + two pages", mem["object_bytes"], limit, 1.0, False,
            "bytes", "the object's size in /dev/shm / (1.25 x 64 KiB + 8 KiB)")
    return rows


def report_lines(dp: dict[str, Any]) -> list[str]:
    """Markdown tables of the section."""
    lines = ["### Round trip, 64 B, busy-poll (us)", "", "| system | p50 | p99 | p99.9 | messages | errors |",
             "|---|---:|---:|---:|---:|---:|"]
    for s, r in dp.get("rtt", {}).items():
        if "error" in r:
            lines.append(f"| {LABELS[s]} | FAILED: {r['error']} | | | | |")
        else:
            lines.append(f"| {LABELS[s]} | {r['p50_us']:.2f} | {r['p99_us']:.2f} | {r['p999_us']:.2f} | {r['n']:,} "
                         f"| {r['errors']} |")
    lines += ["", "### One-way throughput, 64 B (messages/s)", "", "| system | msg/s | errors |", "|---|---:|---:|"]
    for s, r in dp.get("tput", {}).items():
        lines.append(f"| {LABELS[s]} | " + (f"FAILED: {r['error']} | |" if "error" in r
                                            else f"{r['msgs_per_s']:,.0f} | {r['errors']} |"))
    lines += ["", "### Views (ns per call, one process)", "", "| call | ns |", "|---|---:|"]
    for k, v in dp.get("views_ns", {}).items():
        lines.append(f"| `{k}` | {v:.0f} |")
    mem = dp.get("memory")
    if mem:
        lines += ["", f"Memory: a channel of {mem['capacity']} slots of {mem['slot_size']} B takes "
                  f"{mem['object_bytes']:,} bytes in /dev/shm for {mem['payload_bytes']:,} bytes of payload."]
    return lines

