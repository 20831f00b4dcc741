"""The fan-out section of ``shmchan bench``: one writer process, N reader processes, a Broadcast.

The question it answers: how does the writer's cost per message grow with the number of readers?
For each policy (block, overwrite), payload size and reader count, a fresh Broadcast channel is
made by the parent; N reader processes attach (``start="oldest"``, so they see every message from
the first), then a writer process streams messages as fast as the policy lets it: a warm-up, then
the measured part, then it closes (which is how the readers learn the stream ended: no in-band
marker that an overwrite reader could miss).

The writer writes every byte of every message (the value of its position, see ``_touch``) and
measures its own thread's CPU time (user and system apart, from ``getrusage(RUSAGE_THREAD)``) and
the wall time over the measured part. Each reader takes messages with ``recv_batch``, reads every
byte of each one in place, checks it against the message's position and releases it; it counts
what it got, what it lost (lapped: ``Reader.lost``, which includes messages torn under its read)
and wrong bytes. Block: every reader must get every message; overwrite: delivered + lost must be
every message.

The writer and the readers are long-lived processes, forked from a fork server that has imported
this module (spawning nine Pythons costs seconds on a small machine, more than a --quick cell),
told what to do through queues; they end with the harness however it ends (see ``_check``).
Readers and writer sleep at once when they must wait (spin 0; ``--reader-spin``/``--writer-spin``
change it): with up to nine processes on a few CPUs, a polling process takes CPU from the very
process it waits for, and a polling writer's CPU time would count waiting rather than work. Every round measures every
reader count once, in alternating order (1, 2, 4, 8, then 8, 4, 2, 1), so a slow drift of the
machine's load hits all counts alike; each figure is the median over the rounds, and the ratio to
one reader is the median of the per-round ratios (each the N-reader and the 1-reader cell of the
same round, measured seconds apart).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import queue
import resource
import shutil
import signal
import statistics
import tempfile
import time
import traceback
from dataclasses import dataclass
from typing import Any

from ._systems import throughput_capacity
from ._touch import Pattern, value

POLICIES = ("block", "overwrite")
DEFAULT_READERS = [0, 1, 2, 4, 8]  # 0: the writer alone, for reference
QUICK_READERS = [1, 2, 4, 8]
FULL_PAYLOADS = [64, 65536]
QUICK_PAYLOADS = [64]
MAX_READERS = 32
#: the channel's reader places (more if more readers are asked for): the same channel for every count
PLACES = 8
POLL = 0.25  # seconds: how often an idle worker checks that its parent is still there


def capacity(size: int) -> int:
    """Ring depth: the throughput section's (up to 16 MiB in flight, 2 to 64 slots)."""
    return throughput_capacity(size)


def batch_size(cap: int) -> int:
    """Messages a reader takes per ``recv_batch``: a quarter of the ring, at most 16, so that an
    overwrite reader does not sit on slots the writer is about to lap."""
    return max(1, min(16, cap // 4))


@dataclass(frozen=True)
class Cell:
    """One fan-out measurement: a policy, a payload size and a reader count, in one round."""

    index: int
    round: int
    policy: str
    size: int
    readers: int
    capacity: int
    budget: float  # seconds measured by the writer
    warmup: float  # seconds of writing before
    name: str  # the channel's name (made by the parent)
    places: int  # the channel's max_readers
    reader_spin: float | None  # Reader spin (seconds; None = the library's default)
    writer_spin: float | None
    batch: int


def plan(policies: list[str], sizes: list[int], readers: list[int], rounds: int, budget: float, warmup: float,
         run_id: str, reader_spin: float | None, writer_spin: float | None) -> list[list[Cell]]:
    """The cells of each round: payload size outermost, then policy, then the reader counts in
    alternating order from round to round."""
    out: list[list[Cell]] = []
    index = 0
    places = max([PLACES, *readers])
    for rnd in range(rounds):
        cells = []
        counts = sorted(readers) if rnd % 2 == 0 else sorted(readers, reverse=True)
        for size in sizes:
            for policy in policies:
                for n in counts:
                    cap = capacity(size)
                    cells.append(Cell(index=index, round=rnd, policy=policy, size=size, readers=n, capacity=cap,
                                      budget=budget, warmup=warmup, name=f"bench-{run_id}-fan-{index}", places=places,
                                      reader_spin=reader_spin, writer_spin=writer_spin, batch=batch_size(cap)))
                    index += 1
        out.append(cells)
    return out


# ---- the worker processes ----


def _start_worker(harness: int) -> None:
    """SIGINT is left to the harness, which stops us in order. If our parent (the fork server)
    dies the kernel kills us; the harness itself is not our parent (and the fork server lives as
    long as we do), so we also look for it whenever we are idle (``_check``)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if parent == 1 or os.getppid() != parent:
        os._exit(1)
    _check(harness)


def _check(harness: int) -> None:
    """Go at once if the harness is gone (killed: it could not tell us), or dead and not yet reaped."""
    try:
        with open(f"/proc/{harness}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        state = "X"
    if state in ("Z", "X"):
        _orphaned(harness)


def _orphaned(harness: int) -> None:
    """The harness was killed: remove what it could not (its channels and its temporary
    directories are named after its pid), and go."""
    for where, mine in (("/dev/shm", f"shmchan.bench-{harness}-"),
                        (tempfile.gettempdir(), f"shmchan-bench-{harness}-")):
        with contextlib.suppress(OSError):
            for e in os.listdir(where):
                if e.startswith(mine):
                    path = os.path.join(where, e)
                    with contextlib.suppress(OSError):
                        if os.path.isdir(path) and not os.path.islink(path):
                            shutil.rmtree(path, ignore_errors=True)
                        else:
                            os.unlink(path)
    os._exit(1)


def _get(cmd: Any, harness: int) -> Any:
    while True:
        try:
            return cmd.get(timeout=POLL)
        except queue.Empty:
            _check(harness)


def writer_main(cmd: Any, out: Any, harness: int) -> None:
    """The writer process: for each cell, open the channel, attach the writer, say so, wait for
    "go", stream, close, report."""
    _start_worker(harness)
    while True:
        job = _get(cmd, harness)
        if job is None:
            return
        cell: Cell = job
        try:
            result = _write_cell(cell, cmd, out, harness)
        except BaseException:
            out.put(("error", "w", cell.index, traceback.format_exc()))
            continue
        out.put(("done", "w", cell.index, result))


def _rusage() -> tuple[float, float, int, int]:
    r = resource.getrusage(resource.RUSAGE_THREAD)
    return r.ru_utime, r.ru_stime, r.ru_nvcsw, r.ru_nivcsw


def _write_cell(cell: Cell, cmd: Any, out: Any, harness: int) -> dict[str, Any]:
    from ..broadcast import Broadcast

    ch = Broadcast.open(cell.name, timeout=10.0)
    try:
        w = ch.writer(spin=cell.writer_spin)
        out.put(("attached", "w", cell.index, None))
        if _get(cmd, harness) != "go":
            raise RuntimeError("expected 'go'")
        pat = Pattern(cell.size)
        write, size = pat.write, cell.size
        reserve = w.reserve
        now = time.perf_counter_ns
        seq = 0
        end = now() + int(cell.warmup * 1e9)
        while True:
            slot = reserve(size)
            write(slot.buffer, value(seq))
            slot.commit()
            seq += 1
            if (seq & 7) == 0 and now() >= end:
                break
        warm = seq
        u0, s0, v0, i0 = _rusage()
        c0 = time.thread_time_ns()
        t0 = now()
        t_end = t0 + int(cell.budget * 1e9)
        n = 0
        while True:
            slot = reserve(size)
            write(slot.buffer, value(seq))
            slot.commit()
            seq += 1
            n += 1
            if (n & 7) == 0 and now() >= t_end:
                break
        t1 = now()
        c1 = time.thread_time_ns()
        u1, s1, v1, i1 = _rusage()
        w.close()
    finally:
        ch.close()
    return {"n": n, "sent": seq, "warmup_n": warm, "wall_ns": t1 - t0, "cpu_ns": c1 - c0,
            "user_ns": round((u1 - u0) * 1e9), "sys_ns": round((s1 - s0) * 1e9), "vcsw": v1 - v0, "ivcsw": i1 - i0}


def reader_main(cmd: Any, out: Any, harness: int, me: int) -> None:
    """A reader process: for each cell, open the channel, attach a reader, say so, take every
    message until the writer closes, report."""
    _start_worker(harness)
    while True:
        job = _get(cmd, harness)
        if job is None:
            return
        cell: Cell = job
        try:
            result = _read_cell(cell, out, harness, me)
        except BaseException:
            out.put(("error", f"r{me}", cell.index, traceback.format_exc()))
            continue
        out.put(("done", f"r{me}", cell.index, result))


def _read_cell(cell: Cell, out: Any, harness: int, me: int) -> dict[str, Any]:
    from .. import errors as E
    from ..broadcast import Broadcast

    ch = Broadcast.open(cell.name, timeout=10.0)
    try:
        r = ch.reader(start="oldest", spin=cell.reader_spin)
        out.put(("ready", f"r{me}", cell.index, None))
        pat = Pattern(cell.size)
        read = pat.read
        delivered = errors = torn = lost_field = 0
        c0 = time.thread_time_ns()
        t0 = time.perf_counter_ns()
        batch = r.recv_batch
        lapped = E.LappedError
        while True:
            try:
                msgs = batch(cell.batch, timeout=1.0)
            except E.ChannelEndedError:
                break
            except E.ChannelTimeoutError:
                _check(harness)  # (a dead writer raises PeerDeadError; the harness stops us if it hangs)
                continue
            for m in msgs:
                v = read(m.buffer)
                lost_field += m.lost
                try:
                    m.release()
                except lapped:
                    torn += 1  # rewritten under our read: counted in Reader.lost, not an error
                    continue
                if v != value(m.seq):
                    errors += 1
                delivered += 1
        cpu = time.thread_time_ns() - c0
        wall = time.perf_counter_ns() - t0
        lost = r.lost
        r.close()
    finally:
        ch.close()
    return {"delivered": delivered, "lost": lost, "torn": torn, "lost_in_messages": lost_field, "errors": errors,
            "cpu_ns": cpu, "wall_ns": wall}


# ---- the parent side ----


class CellFailed(Exception):
    pass


def context() -> Any:
    """Processes forked from a fork server that has imported this module once: starting nine
    fresh Pythons (spawn) would take seconds on a small machine, and --quick must stay short."""
    import multiprocessing as mp

    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload([__name__])
    return ctx


class Pool:
    """One writer process and ``n`` reader processes, reused for every cell."""

    def __init__(self, ctx: Any, n: int) -> None:
        self.ctx, self.n = ctx, n
        self.out = ctx.Queue()
        me = os.getpid()
        self.cmds = {"w": ctx.Queue(), **{f"r{i}": ctx.Queue() for i in range(n)}}
        self.procs = {"w": ctx.Process(target=writer_main, args=(self.cmds["w"], self.out, me),
                                       name="shmchan-bench-fanout-w", daemon=True)}
        for i in range(n):
            self.procs[f"r{i}"] = ctx.Process(target=reader_main, args=(self.cmds[f"r{i}"], self.out, me, i),
                                              name=f"shmchan-bench-fanout-r{i}", daemon=True)
        for p in self.procs.values():
            p.start()

    def _expect(self, kind: str, roles: set[str], index: int, deadline: float) -> dict[str, Any]:
        got: dict[str, Any] = {}
        while set(got) != roles:
            try:
                k, role, idx, payload = self.out.get(timeout=0.25)
            except queue.Empty:
                dead = [r for r, p in self.procs.items() if p.exitcode is not None]
                if dead:
                    raise CellFailed(f"the {_role(dead[0])} process died (exit code "
                                     f"{self.procs[dead[0]].exitcode})") from None
                if time.monotonic() > deadline:
                    missing = ", ".join(_role(r) for r in sorted(roles - set(got)))
                    raise CellFailed(f"timed out waiting for {missing}") from None
                continue
            if idx != index:
                continue  # a late word from a cell that failed
            if k == "error":
                raise CellFailed(f"{_role(role)}: {payload}")
            if k == kind:
                got[role] = payload
        return got

    def run(self, cell: Cell) -> dict[str, Any]:
        """Run one cell in an existing channel; the processes' reports, or CellFailed."""
        readers = {f"r{i}" for i in range(cell.readers)}
        deadline = time.monotonic() + 60 + 20 * (cell.budget + cell.warmup)
        self.cmds["w"].put(cell)
        self._expect("attached", {"w"}, cell.index, deadline)
        for r in sorted(readers):
            self.cmds[r].put(cell)
        self._expect("ready", readers, cell.index, deadline)
        self.cmds["w"].put("go")
        return self._expect("done", readers | {"w"}, cell.index, deadline)

    def stop(self, hurry: bool = False) -> None:
        """Ask every process to finish, then kill whatever did not within a few seconds; with
        ``hurry`` (a cell failed or was interrupted: what they are doing is of no use) kill them
        at once."""
        if not hurry:
            for q in self.cmds.values():
                with contextlib.suppress(Exception):
                    q.put(None)
            end = time.monotonic() + 5
            for p in self.procs.values():
                p.join(max(0.1, end - time.monotonic()))
        for p in self.procs.values():
            if p.is_alive():
                p.kill()
            p.join(5)
        for q in [*self.cmds.values(), self.out]:
            with contextlib.suppress(Exception):
                q.close()
                q.join_thread()


def _role(role: str) -> str:
    return "writer" if role == "w" else f"reader {role[1:]}"


def label(cell: Cell) -> str:
    from ._report import size_label

    return f"fan-out {cell.policy} {size_label(cell.size)} {cell.readers} reader{'s' if cell.readers > 1 else ''}"


def run_cell(pool: Pool, cell: Cell, noise: Any) -> dict[str, Any]:
    """Make the cell's channel, run it, take the channel's own counters, remove the channel."""
    from ..broadcast import Broadcast

    part: dict[str, Any] = {"index": cell.index, "round": cell.round, "policy": cell.policy, "bytes": cell.size,
                            "readers": cell.readers}
    ch = Broadcast.create(cell.name, slot_size=cell.size, capacity=cell.capacity, max_readers=cell.places,
                          policy=cell.policy)
    try:
        noise0 = noise()
        reports = pool.run(cell)
        part["noise"] = noise().since(noise0)
        places = [p for p in ch.readers() if p.state != "none"]
        part["full_waits"] = ch.stats().full_waits
        part["empty_waits"] = sum(p.empty_waits for p in places)
    finally:
        ch.close()
    part["writer"] = reports.pop("w")
    part["readers_reports"] = [reports[k] for k in sorted(reports, key=lambda r: int(r[1:]))]
    return part


def run_section(rounds_plan: list[list[Cell]], bar: Any, noise: Any) -> list[dict[str, Any]]:
    """Every cell of every round; a failed cell is recorded (``error``) and the processes are
    replaced before the next one. The processes are always stopped, whatever happens."""
    parts: list[dict[str, Any]] = []
    ctx = context()
    n = max((c.readers for cells in rounds_plan for c in cells), default=0)
    pool: Pool | None = None
    finished = False
    try:
        for cells in rounds_plan:
            for cell in cells:
                bar.show(label(cell))
                if pool is None:
                    pool = Pool(ctx, n)
                try:
                    parts.append(run_cell(pool, cell, noise))
                except CellFailed as exc:
                    why = str(exc)
                    parts.append({"index": cell.index, "round": cell.round, "policy": cell.policy,
                                  "bytes": cell.size, "readers": cell.readers, "error": why})
                    bar.say(f"  {label(cell)}: FAILED: {why.strip().splitlines()[-1] if why.strip() else why}")
                    pool.stop(hurry=True)
                    pool = None
                bar.step(label(cell))
        finished = True
    finally:
        if pool is not None:
            pool.stop(hurry=not finished)
    return parts


# ---- figures ----


def _per_msg(w: dict[str, Any], key: str) -> float:
    return w[key] / w["n"] if w["n"] else 0.0


def combine(parts: list[dict[str, Any]], readers: list[int]) -> list[dict[str, Any]]:
    """One record per (policy, payload, reader count): medians over the rounds, totals of what was
    delivered and lost, and the per-round ratios to the 1-reader cell of the same round."""
    by: dict[tuple[str, int, int], list[dict[str, Any]]] = {}
    for p in parts:
        by.setdefault((p["policy"], p["bytes"], p["readers"]), []).append(p)
    base = 1 if 1 in readers else min([r for r in readers if r > 0] or [1])
    out: list[dict[str, Any]] = []
    order = {p: i for i, p in enumerate(POLICIES)}
    for (policy, size, n), cell in sorted(by.items(), key=lambda kv: (kv[0][1], order.get(kv[0][0], 9), kv[0][2])):
        rec: dict[str, Any] = {"policy": policy, "bytes": size, "readers": n, "rounds": len(cell),
                               "capacity": capacity(size), "batch": batch_size(capacity(size))}
        failed = [p for p in cell if "error" in p]
        if failed:
            rec["error"] = failed[0]["error"]
            out.append(rec)
            continue
        ws = [p["writer"] for p in cell]
        per = {k: [_per_msg(w, k) for w in ws] for k in ("cpu_ns", "wall_ns", "user_ns", "sys_ns")}
        rec["writer"] = {f"{k}_per_msg": float(statistics.median(v)) for k, v in per.items()}
        rec["writer"].update({f"{k}_per_msg_per_round": [round(x, 1) for x in v] for k, v in per.items()
                              if k in ("cpu_ns", "wall_ns")})
        msgs = sum(w["n"] for w in ws)
        rec["writer"]["msgs_measured"] = msgs
        rec["writer"]["msgs_per_s"] = float(statistics.median([w["n"] / (w["wall_ns"] / 1e9) for w in ws]))
        rec["writer"]["vcsw_per_1k_msgs"] = round(1000 * sum(w["vcsw"] for w in ws) / max(msgs, 1), 2)
        rec["writer"]["ivcsw_per_1k_msgs"] = round(1000 * sum(w["ivcsw"] for w in ws) / max(msgs, 1), 2)
        sent = sum(w["sent"] for w in ws)
        rs = [r for p in cell for r in p["readers_reports"]]
        delivered = sum(r["delivered"] for r in rs)
        lost = sum(r["lost"] for r in rs)
        rec["sent"] = sent
        rec["expected"] = sent * n
        rec["delivered"] = delivered
        rec["lost"] = lost
        rec["torn"] = sum(r["torn"] for r in rs)
        rec["lost_in_messages"] = sum(r["lost_in_messages"] for r in rs)
        rec["errors"] = sum(r["errors"] for r in rs)
        # what no count accounts for: neither delivered intact nor in Reader.lost (expected 0)
        rec["unaccounted"] = sent * n - delivered - lost
        rec["delivered_pct"] = round(100.0 * delivered / (sent * n), 2) if sent and n else None
        rcpu = [r["cpu_ns"] / r["delivered"] for r in rs if r["delivered"]]
        rec["reader_cpu_ns_per_msg"] = float(statistics.median(rcpu)) if rcpu else None
        # what all N readers together spend per message sent (the writer's wall time, block, cannot
        # be below (writer + readers) / CPUs)
        rec["readers_cpu_ns_per_sent"] = float(statistics.median(
            [sum(r["cpu_ns"] for r in p["readers_reports"]) / p["writer"]["sent"] for p in cell])) if n else 0.0
        rec["full_waits_per_1k_msgs"] = round(1000 * sum(p["full_waits"] for p in cell) / max(sent, 1), 2)
        rec["reader_empty_waits_per_1k_msgs"] = round(1000 * sum(p["empty_waits"] for p in cell)
                                                      / max(delivered, 1), 2)
        pressure = [p["noise"]["cpu_pressure_pct"] for p in cell
                    if p.get("noise") and p["noise"].get("cpu_pressure_pct") is not None]
        if pressure:
            rec["noise"] = {"cpu_pressure_pct": round(statistics.mean(pressure), 1)}
        out.append(rec)
    # the ratios to the base count, round by round
    base_parts = {(p["policy"], p["bytes"], p["round"]): p for p in parts
                  if p["readers"] == base and "error" not in p}
    for rec in out:
        if "error" in rec:
            continue
        for metric in ("cpu_ns", "wall_ns"):
            ratios = []
            for p in by[(rec["policy"], rec["bytes"], rec["readers"])]:
                b = base_parts.get((p["policy"], p["bytes"], p["round"]))
                if b is None or "error" in p:
                    continue
                den = _per_msg(b["writer"], metric)
                if den > 0:
                    ratios.append(_per_msg(p["writer"], metric) / den)
            if ratios:
                rec["writer"][f"{metric}_ratio"] = float(statistics.median(ratios))
                rec["writer"][f"{metric}_ratio_per_round"] = [round(r, 3) for r in ratios]
    return out
