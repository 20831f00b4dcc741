"""The two benchmark processes: the measuring loops, run the same way for every system.

Latency: ``a`` starts a round trip (writes a message), ``b`` reads it and answers with a message of
the same size, ``a`` reads that; the time of every round trip is recorded. Throughput: ``a``
streams messages to ``b``, which times them. Both sides measure their own CPU time
(``time.process_time``: user + system, every thread of the process) over the measured part.

In-band control: a message filled with 251 (START) starts the measured part, one filled with 0
(STOP) ends the task. Data messages carry 1..250.
"""

from __future__ import annotations

import contextlib
import os
import time
import traceback
from typing import Any

from ._systems import SYSTEMS, Endpoint, Task
from ._touch import START, STOP, value

CHUNKS = 20  # a throughput run is cut in this many chunks of time; the median chunk rate is reported
BARRIER_TIMEOUT = 120.0


def pin(cpu: int | None) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


def main(key: str, role: str, tasks: list[Task], cpu: int | None, shared: dict[str, Any], barrier: Any,
         out: Any) -> None:
    """Entry point of a benchmark process: run every task in turn, report each result to ``out``."""
    pin(cpu)
    system = SYSTEMS[key]
    for task in tasks:
        try:
            ep = system.endpoint(role, task, shared, _Timed(barrier))
            try:
                barrier.wait(BARRIER_TIMEOUT)
                if system.single_process:
                    result = _single(ep, task)
                elif task.kind == "latency":
                    result = _latency_a(ep, task) if role == "a" else _latency_b(ep)
                else:
                    result = _stream_a(ep, task) if role == "a" else _stream_b(ep, task)
                barrier.wait(BARRIER_TIMEOUT)
            finally:
                ep.close()
        except BaseException:
            out.put(("error", role, task.index, traceback.format_exc()))
            with contextlib.suppress(Exception):
                barrier.abort()
            return
        out.put(("done", role, task.index, result))


class _Timed:
    """A barrier whose wait() cannot hang forever."""

    def __init__(self, barrier: Any) -> None:
        self._b = barrier

    def wait(self) -> None:
        self._b.wait(BARRIER_TIMEOUT)


def _latency_a(ep: Endpoint, task: Task) -> dict[str, Any]:
    send, recv, now = ep.send, ep.recv, time.perf_counter_ns
    errors = 0
    # warm-up: not recorded
    end = now() + int(task.warmup * 1e9)
    seq = 0
    while True:
        v = value(seq)
        seq += 1
        send(v)
        recv()
        if now() >= end:
            break
    send(START)
    if recv() != START:
        errors += 1
    rtt: list[int] = []
    append = rtt.append
    c0 = time.process_time()
    t_end = now() + int(task.budget * 1e9)
    n = 0
    while True:
        v = value(seq)
        seq += 1
        t0 = now()
        send(v)
        got = recv()
        t1 = now()
        append(t1 - t0)
        if got != v:
            errors += 1
        n += 1
        if n >= task.max_iters or (t1 >= t_end and n >= task.min_iters):
            break
    cpu = time.process_time() - c0
    send(STOP)
    return {"rtt_ns": rtt, "cpu_s": cpu, "n": n, "errors": errors}


def _latency_b(ep: Endpoint) -> dict[str, Any]:
    send, recv = ep.send, ep.recv
    n = 0
    errors = 0
    c0 = time.process_time()
    while True:
        v = recv()
        if v == STOP:
            break
        if v == START:
            c0 = time.process_time()
            n = 0
            errors = 0
        elif v < 0:
            errors += 1
        else:
            n += 1
        send(v if v > 0 else 1)
    return {"cpu_s": time.process_time() - c0, "n": n, "errors": errors}


def _stream_a(ep: Endpoint, task: Task) -> dict[str, Any]:
    send, now = ep.send, time.perf_counter_ns
    end = now() + int(task.warmup * 1e9)
    seq = 0
    while True:
        send(value(seq))
        seq += 1
        if (seq & 7) == 0 and now() >= end:
            break
    send(START)
    c0 = time.process_time()
    t_end = now() + int(task.budget * 1e9)
    n = 0
    while True:
        send(value(seq))
        seq += 1
        n += 1
        if n >= task.max_iters or ((n & 7) == 0 and n >= task.min_iters and now() >= t_end):
            break
    cpu = time.process_time() - c0
    send(STOP)
    return {"cpu_s": cpu, "n": n}


def _stream_b(ep: Endpoint, task: Task) -> dict[str, Any]:
    recv, now = ep.recv, time.perf_counter_ns
    errors = 0
    while (v := recv()) != START:
        if v < 0:
            errors += 1
    c0 = time.process_time()
    t0 = chunk_t = now()
    chunk_ns = max(int(task.budget * 1e9 / CHUNKS), 1)
    chunk_n = 0
    rates: list[float] = []
    n = 0
    while True:
        v = recv()
        if v == STOP:
            break
        n += 1
        if v < 0:
            errors += 1
        if (n & 7) == 0:
            t = now()
            if t - chunk_t >= chunk_ns:
                rates.append((n - chunk_n) * 1e9 / (t - chunk_t))
                chunk_t, chunk_n = t, n
    t1 = now()
    return {"cpu_s": time.process_time() - c0, "n": n, "ns": t1 - t0, "rates": rates, "errors": errors}


def _single(ep: Endpoint, task: Task) -> dict[str, Any]:
    """The no-IPC system: the same writes and reads, one process."""
    send, recv, now = ep.send, ep.recv, time.perf_counter_ns
    end = now() + int(task.warmup * 1e9)
    seq = 0
    while now() < end:
        send(value(seq))
        recv()
        seq += 1
    errors = 0
    n = 0
    c0 = time.process_time()
    t_end = now() + int(task.budget * 1e9)
    if task.kind == "latency":
        rtt: list[int] = []
        append = rtt.append
        while True:
            v = value(seq)
            seq += 1
            t0 = now()
            send(v)
            a = recv()
            send(v)
            b = recv()
            t1 = now()
            append(t1 - t0)
            errors += (a != v) + (b != v)
            n += 1
            if n >= task.max_iters or (t1 >= t_end and n >= task.min_iters):
                break
        return {"rtt_ns": rtt, "cpu_s": time.process_time() - c0, "n": n, "errors": errors}
    t0 = chunk_t = now()
    chunk_ns = max(int(task.budget * 1e9 / CHUNKS), 1)
    chunk_n = 0
    rates: list[float] = []
    while True:
        v = value(seq)
        seq += 1
        send(v)
        if recv() != v:
            errors += 1
        n += 1
        if (n & 7) == 0:
            t = now()
            if t - chunk_t >= chunk_ns:
                rates.append((n - chunk_n) * 1e9 / (t - chunk_t))
                chunk_t, chunk_n = t, n
            if t >= t_end and n >= task.min_iters:
                break
        if n >= task.max_iters:
            break
    return {"cpu_s": time.process_time() - c0, "n": n, "ns": now() - t0, "rates": rates, "errors": errors}
