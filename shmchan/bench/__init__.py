"""``shmchan bench``: shmchan against the IPC people use today, cross-process, every byte touched.

Latency (ping-pong round trips, percentiles) in busy-poll and blocking modes, one-way throughput,
CPU time per message on each side, for shmchan and each comparison peer that is installed, plus
floors measured by small C programs and the C core alone, in the same run; and the fan-out of a
Broadcast channel (one writer, N reader processes: how the writer's cost per message grows with N,
see ``_fanout``). Writes ``results.json`` (every figure, the machine and the versions),
``results.md`` and PNG plots.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import platform
import queue
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import _dataplane, _fanout, _native, _report, _worker
from ._systems import SYSTEMS, System, Task, iox_cleanup, throughput_capacity

FULL_PAYLOADS = [64, 4096, 65536, 1 << 20, 8 << 20, 32 << 20]
QUICK_PAYLOADS = [64, 65536, 8 << 20]
ALL_MODES = ("busy", "blocking")
PAIR_KINDS = ("latency", "throughput")
ALL_KINDS = (*PAIR_KINDS, "fanout", "dataplane")
DATAPLANE_ROUNDS = 5  # the data-plane section's rounds in a full run (--rounds overrides)
FANOUT_ROUNDS = 5  # the fan-out section's rounds in a full run (--rounds overrides)
MAX_PAYLOAD = 1 << 30


# ---- noise ----


class Noise:
    """How much other work competed for the CPUs: the kernel's CPU pressure (the share of time some
    runnable task waited for a CPU) and the hypervisor's steal time, between two readings."""

    def __init__(self) -> None:
        self.t = time.monotonic()
        self.psi = _psi_total_us()
        self.stat = _cpu_jiffies()

    def since(self, before: Noise) -> dict[str, float | None]:
        wall_us = (self.t - before.t) * 1e6
        psi = None
        if self.psi is not None and before.psi is not None and wall_us > 0:
            psi = round(100.0 * (self.psi - before.psi) / wall_us, 1)
        steal = None
        if self.stat and before.stat:
            d = [a - b for a, b in zip(self.stat, before.stat, strict=False)]
            total = sum(d[:8])
            steal = round(100.0 * d[7] / total, 1) if total > 0 and len(d) > 7 else None
        return {"cpu_pressure_pct": psi, "steal_pct": steal}


def _psi_total_us() -> int | None:
    try:
        for line in Path("/proc/pressure/cpu").read_text().splitlines():
            if line.startswith("some"):
                return int(line.rsplit("total=", 1)[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cpu_jiffies() -> list[int]:
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
        return [int(x) for x in first[1:]]
    except (OSError, ValueError, IndexError):
        return []


# ---- progress ----


class Progress:
    """A one-line progress bar on stderr, drawn only when stderr is a terminal."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.done, self.enabled = total, 0, enabled
        self.t0 = time.monotonic()

    def show(self, label: str) -> None:
        if not self.enabled:
            return
        width = 28
        fill = int(width * self.done / self.total) if self.total else width
        elapsed = time.monotonic() - self.t0
        text = f"\r  [{'#' * fill}{'.' * (width - fill)}] {self.done}/{self.total} {elapsed:5.0f}s  {label}"
        sys.stderr.write(text[:110].ljust(110))
        sys.stderr.flush()

    def step(self, label: str, n: int = 1) -> None:
        self.done += n
        self.show(label)

    def end(self) -> None:
        if self.enabled:
            sys.stderr.write("\r" + " " * 110 + "\r")
            sys.stderr.flush()

    def say(self, line: str) -> None:
        """Print a line without mangling the bar."""
        if self.enabled:
            sys.stderr.write("\r" + " " * 110 + "\r")
        print(line, flush=True)


# ---- planning ----


def plan(systems: list[System], sizes: list[int], kinds: list[str], modes: list[str], budget: float,
         warmup: float, run_id: str, rounds: int) -> list[list[tuple[System, int, list[Task]]]]:
    """The groups of tasks of each round. Within a round the payload size is the outer loop, so the
    systems are compared at each size within a short stretch of time; every round repeats all."""
    out = []
    index = 0
    for _ in range(rounds):
        groups = []
        for size in sizes:
            for s in systems:
                tasks = []
                for kind in kinds:
                    if kind not in s.kinds:
                        continue
                    if kind == "latency":
                        kmodes = [m for m in modes if m in s.modes] or (list(s.modes) if s.modes == ("-",) else [])
                    else:
                        # one-way throughput: each system's default (blocking) way of waiting
                        kmodes = ["blocking"] if "blocking" in s.modes else list(s.modes)
                    for m in kmodes:
                        tasks.append(Task(index=index, kind=kind, mode=m, size=size,
                                          capacity=throughput_capacity(size), budget=budget, warmup=warmup,
                                          min_iters=5, max_iters=2_000_000, run_id=run_id))
                        index += 1
                if tasks:
                    groups.append((s, size, tasks))
        out.append(groups)
    return out


# ---- running a system ----


def _task_label(s: System, t: Task) -> str:
    mode = "" if t.mode == "-" else f" {t.mode}"
    return f"{s.label}{mode} {t.kind} {_report.size_label(t.size)}"


def run_group(ctx: Any, system: System, size: int, tasks: list[Task], cpus: tuple[int, int] | None,
              bar: Progress) -> list[dict[str, Any]]:
    """Run a system's tasks for one payload size in a fresh pair of processes. Returns one part per
    task: the two processes' reports, or the error of a task that failed (an exception, a dead
    process, a timeout); after a failure the remaining tasks go on in a new pair."""
    parts: list[dict[str, Any]] = []
    remaining = list(tasks)
    while remaining:
        done, failed = _run_pair(ctx, system, size, remaining, cpus, bar)
        parts += done
        finished = {p["task"].index for p in done}
        if failed is not None:
            t, why = failed
            parts.append({"system": system.key, "task": t, "a": None, "b": None, "error": why})
            bar.say(f"  {_task_label(system, t)}: FAILED: {why.strip().splitlines()[-1] if why.strip() else why}")
            bar.step(_task_label(system, t))
            finished.add(t.index)
        remaining = [t for t in remaining if t.index not in finished]
    return parts


def _run_pair(ctx: Any, system: System, size: int, tasks: list[Task], cpus: tuple[int, int] | None,
              bar: Progress) -> tuple[list[dict[str, Any]], tuple[Task, str] | None]:
    roles = ["a"] if system.single_process else ["a", "b"]
    done: list[dict[str, Any]] = []
    try:
        shared = system.shared(ctx, size, max(t.capacity for t in tasks), tasks[0].run_id)
    except Exception as exc:
        return done, (tasks[0], f"{system.label} could not be set up: {exc.__class__.__name__}: {exc}")
    out = ctx.Queue()
    barrier = ctx.Barrier(len(roles))
    procs = {}
    for i, role in enumerate(roles):
        cpu = cpus[i] if cpus else None
        procs[role] = ctx.Process(target=_worker.main, name=f"shmchan-bench-{system.key}-{role}",
                                  args=(system.key, role, tasks, cpu, shared, barrier, out), daemon=True)
    failed: tuple[Task, str] | None = None
    try:
        for p in procs.values():
            p.start()
        reports: dict[int, dict[str, Any]] = {}
        for t in tasks:
            bar.show(_task_label(system, t))
            noise0 = Noise()
            # generous: slow systems move 32 MiB messages a few times a second
            limit = 90 + 40 * (t.budget + t.warmup)
            deadline = time.monotonic() + limit
            while t.index not in reports or len(reports[t.index]) < len(roles):
                try:
                    kind, role, idx, payload = out.get(timeout=0.25)
                except queue.Empty:
                    dead = [r for r, p in procs.items() if p.exitcode is not None]
                    if dead:
                        # give a report that is on its way a moment to arrive
                        with contextlib.suppress(queue.Empty):
                            kind, role, idx, payload = out.get(timeout=1.0)
                            if kind == "error":
                                failed = (t, payload)
                                break
                            reports.setdefault(idx, {})[role] = payload
                            continue
                        failed = (t, f"the {dead[0]} process died (exit code {procs[dead[0]].exitcode})")
                        break
                    if time.monotonic() > deadline:
                        failed = (t, f"timed out after {limit:.0f} s")
                        break
                    continue
                if kind == "error":
                    failed = (next((x for x in tasks if x.index == idx), t), payload)
                    break
                reports.setdefault(idx, {})[role] = payload
            if failed:
                break
            rep = reports[t.index]
            done.append({"system": system.key, "task": t, "a": rep.get("a"), "b": rep.get("b"), "error": None,
                         "noise": Noise().since(noise0)})
            bar.step(_task_label(system, t))
    finally:
        for p in procs.values():
            if failed is None:
                p.join(15)
            if p.is_alive():
                p.kill()
            p.join(5)
        with contextlib.suppress(Exception):
            out.close()
            out.join_thread()
        with contextlib.suppress(Exception):
            system.cleanup(shared)
    return done, failed


# ---- the C side ----


def c_cells(sizes: list[int], modes: list[str], kinds: list[str]) -> list[tuple[str, str, int]]:
    cells = [("latency", m) for m in modes if "latency" in kinds] + (
        [("throughput", "blocking")] if "throughput" in kinds else [])
    return [(k, m, s) for k, m in cells for s in sizes]


def run_c(bins: tuple[Path, Path | None], args: argparse.Namespace, size: int | None, modes: list[str],
          kinds: list[str], run_id: str, budget: float, bar: Progress, floors: dict[str, Any]
          ) -> list[dict[str, Any]]:
    """Part of a round of the C side: with ``size`` None the size-free floors (cache-line ping-pong,
    futex round trip), else the floors and the native core benchmark at that payload size. Floors go
    into ``floors``; returns the native records."""
    floors_bin, native_bin = bins
    records: list[dict[str, Any]] = []
    cpus = ["--cpus", f"{args.cpus[0]},{args.cpus[1]}"] if args.cpus else []
    secs = ["--seconds", f"{budget:g}"]
    timeout = 120 + 60 * budget
    for what in ("pingpong", "futex") if size is None else ("memcpy", "handoff"):
        bar.show(f"floor: {what}")
        extra = ["--bytes", str(size)] if size is not None else []
        try:
            docs = _native.run_json([str(floors_bin), what, *extra, *secs, *cpus], timeout)
        except RuntimeError as exc:
            bar.say(f"  floor {what} failed: {exc}")
            docs = []
        if what in ("memcpy", "handoff"):
            floors.setdefault(what, []).extend({"bytes": d["bytes"], "gbps": d["gbps"]} for d in docs)
        elif docs:
            d = docs[0]
            floors[d["floor"]] = {k: d[k] for k in ("rtt_us", "rtt_batch_us", "cpu_us_per_rt") if k in d}
        bar.step(f"floor: {what}")
    if native_bin is None or size is None:
        return records
    prefix = f"bench-{run_id}-native"
    if size == 64 and "latency" in kinds and "busy" in modes:
        floors.setdefault("paired", []).extend(
            _paired(floors_bin, native_bin, cpus, budget, timeout, prefix, bar))
    for kind, mode, _csize in c_cells([size], modes, kinds):
        label = f"{_report.NATIVE_LABEL} {mode} {kind} {_report.size_label(size)}"
        bar.show(label)
        noise0 = Noise()
        rec: dict[str, Any] = {"system": _report.NATIVE_KEY, "label": _report.NATIVE_LABEL, "kind": kind,
                               "mode": mode, "bytes": size}
        try:
            docs = _native.run_json([str(native_bin), "--bytes", str(size), "--kinds", kind, "--modes", mode,
                                     *secs, *cpus, "--prefix", prefix], timeout)
            d = docs[0]
            rec.update({k: v for k, v in d.items() if k not in ("kind", "mode", "bytes")})
            if kind == "latency":
                rec["capacity"] = 1
            rec["noise"] = Noise().since(noise0)
        except (RuntimeError, IndexError) as exc:
            rec["error"] = str(exc)
            bar.say(f"  {label}: FAILED: {exc}")
        records.append(rec)
        bar.step(label)
    return records


PAIRS = 5


def _paired(floors_bin: Path, native_bin: Path, cpus: list[str], budget: float, timeout: float, prefix: str,
            bar: Progress) -> list[dict[str, float]]:
    """The cache-line ping-pong and the C core's 64 B busy round trip, alternated in short runs: the two
    vCPUs of a VM can be moved closer or further apart on the host from one second to the next, and
    the ratio of the two is only meaningful when both were measured in the same placement."""
    pairs = []
    secs = ["--seconds", f"{max(budget / PAIRS, 0.01):g}"]
    bar.show("C core vs cache-line ping-pong, alternated")
    try:
        for _ in range(PAIRS):
            pp = _native.run_json([str(floors_bin), "pingpong", *secs, *cpus], timeout)[0]
            nat = _native.run_json([str(native_bin), "--bytes", "64", "--kinds", "latency", "--modes", "busy", *secs,
                                    *cpus, "--prefix", prefix + "-pair"], timeout)[0]
            pairs.append({"pingpong_rtt_us": pp["rtt_batch_us"], "native_rtt_us": nat["rtt_batch_us"]})
    except (RuntimeError, IndexError, KeyError) as exc:
        bar.say(f"  the alternated C core / ping-pong runs failed: {exc}")
    return pairs


# ---- the machine ----


def machine() -> dict[str, Any]:
    m: dict[str, Any] = {
        "platform": platform.platform(),
        "kernel": f"Linux {os.uname().release}",
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
    }
    with contextlib.suppress(OSError):
        cpuinfo = Path("/proc/cpuinfo").read_text()
        for line in cpuinfo.splitlines():
            if line.startswith("model name"):
                m["cpu_model"] = line.split(":", 1)[1].strip()
                break
        flags = next((ln for ln in cpuinfo.splitlines() if ln.startswith("flags")), "")
        m["virtualized"] = " hypervisor" in flags
    with contextlib.suppress(OSError, IndexError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                m["memory_gib"] = round(int(line.split()[1]) / (1 << 20), 1)
    return m


def _git_commit() -> str:
    root = Path(__file__).resolve().parent.parent.parent
    if not (root / ".git").exists():
        return ""
    try:
        p = subprocess.run(["git", "-C", str(root), "describe", "--always", "--dirty"], capture_output=True,
                           text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ""
    return p.stdout.strip()


def _extension_id() -> str:
    """The compiled core this run used (its file's time and hash): in a source tree with changes
    not committed yet, the commit alone does not say what was measured."""
    try:
        from .. import _binding

        path = Path(_binding.lib.__file__ if hasattr(_binding.lib, "__file__")
                    else sys.modules["shmchan._shmchan_cffi"].__file__ or "")
        data = path.read_bytes()
    except Exception:
        return ""
    import hashlib

    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(path.stat().st_mtime))
    return f"{path.name} built {stamp} UTC, sha256 {hashlib.sha256(data).hexdigest()[:12]}"


def _cleanup(run_id: str) -> None:
    """Remove whatever this run (or a process of it that was killed) left in /dev/shm."""
    mine = f"shmchan.bench-{run_id}-"
    with contextlib.suppress(OSError):
        for e in os.listdir("/dev/shm"):
            if e.startswith(mine):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join("/dev/shm", e))
    iox_cleanup(run_id)


def _combine(chosen: list[System], parts: list[dict[str, Any]], native_raw: list[dict[str, Any]]
             ) -> list[dict[str, Any]]:
    """One record per cell (system, kind, mode, payload) out of all its rounds, in a stable order."""
    results: list[dict[str, Any]] = []
    by_native: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for rec in native_raw:
        by_native.setdefault((rec["kind"], rec["mode"], rec["bytes"]), []).append(rec)
    results += [_report.combine_native(v) for v in by_native.values()]
    by_cell: dict[tuple[str, str, str, int], list[dict[str, Any]]] = {}
    for p in parts:
        t = p["task"]
        by_cell.setdefault((p["system"], t.kind, t.mode, t.size), []).append(p)
    order = {s.key: i for i, s in enumerate(chosen)}
    rank = {"busy": 0, "blocking": 1, "-": 2}

    def cell_order(kv: tuple[tuple[str, str, str, int], Any]) -> tuple[int, str, int, int]:
        key, kind, mode, size = kv[0]
        return order[key], kind, rank.get(mode, 3), size

    for (key, _kind, _mode, _size), cell in sorted(by_cell.items(), key=cell_order):
        system = SYSTEMS[key]
        results.append(_report.combine(system.key, system.label, cell[0]["task"], cell))
    return results


# ---- the command ----


def run(args: argparse.Namespace) -> int:
    started = time.time()
    t0 = time.monotonic()
    run_id = f"{os.getpid()}"
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    sizes = args.payloads or (QUICK_PAYLOADS if args.quick else FULL_PAYLOADS)
    modes = args.modes or list(ALL_MODES)
    kinds = args.kinds or list(ALL_KINDS)
    pair_kinds = [k for k in kinds if k in PAIR_KINDS]
    args.seconds_given = args.seconds is not None
    if args.seconds is None:
        args.seconds = 0.06 if args.quick else 1.0
    args.rounds_given = args.rounds is not None
    rounds = args.rounds if args.rounds is not None else (1 if args.quick else 3)
    budget = args.seconds / rounds
    warmup = min(0.2, max(0.02, budget / 4))
    fan = _fanout_settings(args) if "fanout" in kinds else None
    dp_rounds = args.rounds if args.rounds_given else (1 if args.quick else DATAPLANE_ROUNDS)
    dp_seconds = args.seconds if args.seconds_given else (0.6 if args.quick else 5.0)
    keys = args.systems or list(SYSTEMS)
    chosen: list[System] = []
    skipped: list[dict[str, str]] = []
    for k in keys:
        system = SYSTEMS[k]
        why = system.available()
        if why is None:
            chosen.append(system)
        else:
            skipped.append({"system": system.key, "label": system.label, "reason": why})

    loadavg_before = os.getloadavg()
    noise_start = Noise()
    quick = " (--quick)" if args.quick else ""
    if pair_kinds:
        what = " and ".join(f"latency ({', '.join(modes)})" if k == "latency" else k for k in pair_kinds)
        print(f"shmchan bench: {len(chosen)} systems, payloads {', '.join(_report.size_label(s) for s in sizes)}; "
              f"{what}; {args.seconds:g} s per cell in {rounds} round(s){quick}")
        print("  two processes; the producer writes every byte of every message and the consumer reads "
              "(and checks) every byte")
        pinning = f"processes on CPUs {args.cpus[0]} and {args.cpus[1]}" if args.cpus else "none (--cpus A,B to pin)"
        print(f"  CPU pinning: {pinning}; load average {loadavg_before[0]:.2f} (other work on the machine makes "
              "the tails noisy)")
        for s in skipped:
            print(f"  skipped {s['label']}: {s['reason']}")
    if fan is not None:
        print(f"shmchan bench fan-out: one writer and {', '.join(map(str, fan['readers']))} reader processes on a "
              f"Broadcast channel ({', '.join(fan['policies'])}), payloads "
              f"{', '.join(_report.size_label(s) for s in fan['payloads'])}; {fan['seconds_per_cell']:g} s per cell "
              f"in {fan['rounds']} round(s){quick}; readers spin {_report.spin_text(fan['reader_spin'])}, writer spin "
              f"{_report.spin_text(fan['writer_spin'])}; load average {loadavg_before[0]:.2f}")
    if "dataplane" in kinds:
        print(f"shmchan bench data plane: the per-message cost of the Python API at 64 B against iceoryx2 and "
              f"multiprocessing.Pipe; {dp_seconds:g} s per cell in {dp_rounds} round(s){quick}")
    sys.stdout.flush()

    rounds_plan = plan(chosen, sizes, pair_kinds, modes, budget, warmup, run_id, rounds) if pair_kinds else []
    n_c = 0 if args.no_native or not pair_kinds else 2 + 2 * len(sizes) + len(c_cells(sizes, modes, kinds))
    fan_plan = [] if fan is None else _fanout.plan(
        fan["policies"], fan["payloads"], fan["readers"], fan["rounds"], fan["budget"], fan["warmup_s_per_round"],
        run_id, fan["reader_spin"], fan["writer_spin"])
    n_dp = 0 if "dataplane" not in kinds else dp_rounds * (
        len([s for s in _dataplane.RTT_SYSTEMS if _dataplane.available(s)]) + len(_dataplane.TPUT_SYSTEMS)) + 1
    bar = Progress(sum(len(g[2]) for groups in rounds_plan for g in groups) + len(rounds_plan) * n_c
                   + sum(len(cells) for cells in fan_plan) + n_dp, sys.stderr.isatty())
    ctx = mp.get_context("spawn")
    parts: list[dict[str, Any]] = []
    floor_rounds: list[dict[str, Any]] = []
    native_raw: list[dict[str, Any]] = []
    fan_parts: list[dict[str, Any]] = []
    dataplane: dict[str, Any] | None = None
    c_info: dict[str, Any] = {}
    try:
        with tempfile.TemporaryDirectory(prefix=f"shmchan-bench-{run_id}-") as work:
            bins: tuple[Path, Path | None] | None = None
            if n_c:
                bar.show("compiling the C floors and the native benchmark")
                try:
                    floors_bin, native_bin, note = _native.build(Path(work))
                    bins = (floors_bin, native_bin)
                    cc = _native.compiler()
                    c_info.update(cc=_native.cc_version(cc) if cc else "", core=note)
                    if native_bin is None:
                        bar.say(f"  skipped the native benchmark: {note}")
                        c_info["native_skipped"] = note
                except _native.BuildError as exc:
                    bar.say(f"  skipped the C floors and the native benchmark: {exc}")
                    c_info["skipped"] = str(exc)
                if bins is None or bins[1] is None:
                    bar.step("C skipped", rounds * (n_c - (2 + 2 * len(sizes) if bins else 0)))
            for groups in rounds_plan:
                # everything measured at one payload size runs within a short stretch of time: the C
                # floors and the C core first, then every Python system
                fl: dict[str, Any] = {}
                floor_rounds.append(fl)
                if bins is not None:
                    native_raw += run_c(bins, args, None, modes, kinds, run_id, budget, bar, fl)
                for size in sizes:
                    if bins is not None:
                        native_raw += run_c(bins, args, size, modes, kinds, run_id, budget, bar, fl)
                    for system, gsize, tasks in groups:
                        if gsize == size:
                            parts += run_group(ctx, system, size, tasks, args.cpus, bar)
            if fan_plan:
                fan_parts = _fanout.run_section(fan_plan, bar, Noise)
            if "dataplane" in kinds:
                dataplane = _dataplane.run_section(dp_rounds, dp_seconds, args.cpus, run_id, bar.say, bar.step)
    except KeyboardInterrupt:
        bar.end()
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        bar.end()
        _cleanup(run_id)

    results = _combine(chosen, parts, native_raw)
    fanout = _fanout.combine(fan_parts, fan["readers"]) if fan is not None else []
    floors = _report.combine_floors(floor_rounds)
    mach = machine()
    mach["loadavg_before"] = [round(x, 2) for x in loadavg_before]
    mach["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    mach["noise"] = Noise().since(noise_start)
    versions = {s.key: s.version() for s in chosen if s.key != "none"}
    import numpy

    versions["numpy"] = numpy.__version__
    versions["shmchan_source"] = _git_commit()
    versions["shmchan_extension"] = _extension_id()
    if c_info.get("cc"):
        versions["cc"] = c_info["cc"]
    settings: dict[str, Any] = {
        "quick": args.quick, "payloads": sizes, "modes": modes, "kinds": kinds, "seconds_per_cell": args.seconds,
        "rounds": rounds, "warmup_s_per_round": warmup, "cpus": list(args.cpus) if args.cpus else None}
    if fan is not None:
        settings["fanout"] = {k: v for k, v in fan.items() if k != "budget"}
    doc: dict[str, Any] = {
        "shmchan_bench": 1,
        "started": time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(started)),
        "duration_s": 0.0,
        "command": _command(args),
        "methodology": _report.METHOD,
        "machine": mach,
        "versions": versions,
        "settings": settings,
        "systems": [{"key": s.key, "label": s.label, "version": s.version() or "-", "how": s.how} for s in chosen],
        "skipped": skipped,
        "c": c_info,
        "floors": floors,
        "results": results,
    }
    if fan is not None:
        doc["fanout_methodology"] = _report.FANOUT_METHOD
        doc["fanout"] = fanout
    if dataplane is not None:
        doc["dataplane_methodology"] = (_dataplane.__doc__ or "").strip()
        doc["dataplane"] = dataplane
        settings["dataplane"] = {"rounds": dp_rounds, "seconds_per_cell": dp_seconds}
    doc["targets"] = _report.targets(results, floors, fanout if fan is not None else None, pairs=bool(pair_kinds))
    if dataplane is not None:
        doc["targets"] += _dataplane.targets(dataplane)
    names: list[str] = []
    if not args.no_plots:
        names, why = _report.plots(doc, out_dir)
        if why:
            print(f"  skipped the plots: {why}")
    doc["duration_s"] = round(time.monotonic() - t0, 1)
    _report.write_json(doc, out_dir / "results.json")
    (out_dir / "results.md").write_text(_report.markdown_report(doc, names))
    print()
    print(_report.terminal_report(doc))
    print()
    failed = [r for r in results + fanout if "error" in r]
    if dataplane is not None:
        failed += [r for part in ("rtt", "tput") for r in dataplane[part].values() if "error" in r]
    files = ["results.json", "results.md", *names]
    print(f"wrote {', '.join(str(out_dir / f) for f in files)} in {doc['duration_s']:.0f} s"
          + (f"; {len(failed)} cell(s) FAILED" if failed else ""))
    return 1 if failed else 0


def _fanout_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The fan-out section's settings: its own payloads, reader counts, policies and rounds; the
    time per cell is --seconds (split over the rounds) like the other sections'."""
    rounds = args.rounds if args.rounds_given else (1 if args.quick else FANOUT_ROUNDS)
    budget = args.seconds / rounds
    payloads = args.fanout_payloads or (_fanout.QUICK_PAYLOADS if args.quick else _fanout.FULL_PAYLOADS)
    return {
        "payloads": payloads,
        "readers": args.readers or (_fanout.QUICK_READERS if args.quick else _fanout.DEFAULT_READERS),
        "policies": args.policies or list(_fanout.POLICIES),
        "rounds": rounds,
        "seconds_per_cell": args.seconds,
        "budget": budget,
        "warmup_s_per_round": min(0.1, max(0.02, budget / 4)),
        "reader_spin": args.reader_spin,
        "writer_spin": args.writer_spin,
        "reader_places": _fanout.PLACES,
        "capacity": {str(s): _fanout.capacity(s) for s in payloads},
        "batch": {str(s): _fanout.batch_size(_fanout.capacity(s)) for s in payloads},
    }


# ---- arguments ----


def _size(text: str) -> int:
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    mult = 1
    for suffix, m in (("K", 1 << 10), ("M", 1 << 20), ("G", 1 << 30)):
        if t.endswith(suffix):
            t, mult = t[:-1], m
            break
    try:
        v = int(t) * mult
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (use e.g. 64, 4K, 8M)") from None
    if v < 8 or v % 8 or v > MAX_PAYLOAD:
        raise argparse.ArgumentTypeError(f"payload {text!r}: must be a multiple of 8 bytes from 8 B to 1 GiB")
    return v


def _sizes(text: str) -> list[int]:
    out = sorted({_size(x) for x in text.split(",") if x.strip()})
    if not out:
        raise argparse.ArgumentTypeError("no payload sizes given")
    return out


def _choices(allowed: list[str] | tuple[str, ...], what: str) -> Any:
    def parse(text: str) -> list[str]:
        items = [x.strip() for x in text.split(",") if x.strip()]
        bad = [x for x in items if x not in allowed]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"unknown {what} {', '.join(bad) or '(none)'}; choose from "
                                             f"{', '.join(allowed)}")
        return list(dict.fromkeys(items))

    return parse


def _cpus(text: str) -> tuple[int, int]:
    try:
        a, b = (int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--cpus wants two CPU numbers A,B, got {text!r}") from None
    usable = os.sched_getaffinity(0)
    bad = [c for c in (a, b) if c not in usable]
    if bad:
        raise argparse.ArgumentTypeError(f"CPU {bad[0]} is not available to this process (usable: "
                                         f"{','.join(map(str, sorted(usable)))})")
    return a, b


def _rounds(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of rounds: {text!r}") from None
    if not 1 <= v <= 100:
        raise argparse.ArgumentTypeError(f"--rounds must be between 1 and 100, got {v}")
    return v


def _seconds(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0.001 <= v <= 600:
        raise argparse.ArgumentTypeError(f"--seconds must be between 0.001 and 600, got {v:g}")
    return v


def _readers(text: str) -> list[int]:
    try:
        out = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"--readers wants reader counts like 1,2,4,8, got {text!r}") from None
    if not out or out[0] < 0 or out[-1] > _fanout.MAX_READERS:
        raise argparse.ArgumentTypeError(f"--readers: counts from 0 to {_fanout.MAX_READERS}, got {text!r}")
    return out


def _spin(text: str) -> float | None:
    if text.strip().lower() == "default":
        return None
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a spin time: {text!r} (seconds, or 'default')") from None
    if not 0 <= v <= 1:
        raise argparse.ArgumentTypeError(f"a spin time must be between 0 and 1 s, got {v:g}")
    return v


def _command(args: argparse.Namespace) -> str:
    """The command line that repeats this run."""
    words = ["shmchan", "bench"]
    if args.quick:
        words.append("--quick")
    for opt in ("payloads", "systems", "modes", "kinds", "fanout_payloads", "readers", "policies"):
        v = getattr(args, opt)
        if v:
            words += [f"--{opt.replace('_', '-')}", ",".join(map(str, v))]
    for opt in ("reader_spin", "writer_spin"):
        v = getattr(args, opt)
        if v != 0:
            words += [f"--{opt.replace('_', '-')}", "default" if v is None else f"{v:g}"]
    if args.cpus:
        words += ["--cpus", f"{args.cpus[0]},{args.cpus[1]}"]
    if args.seconds_given:
        words += ["--seconds", f"{args.seconds:g}"]
    if args.rounds_given:
        words += ["--rounds", str(args.rounds)]
    words += ["--out", args.out]
    words += [f"--{f.replace('_', '-')}" for f in ("no_native", "no_plots") if getattr(args, f)]
    return " ".join(shlex.quote(w) for w in words)


def _main(args: argparse.Namespace) -> int:
    # a SIGTERM (a CI job's timeout, kill) cleans up like Ctrl-C: no processes, nothing in /dev/shm
    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        old = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread
        return run(args)
    try:
        return run(args)
    finally:
        signal.signal(signal.SIGTERM, old)


def add_parser(sub: Any) -> None:
    """Register the ``bench`` subcommand."""
    p = sub.add_parser(
        "bench",
        help="benchmark shmchan against multiprocessing, pyzmq, faster-fifo and iceoryx2 (latency, throughput, CPU), "
        "and a Broadcast's fan-out to N readers",
        description="Measure shmchan and the IPC people use today between two processes, touching every "
        "byte: ping-pong latency percentiles (busy-poll and blocking), one-way throughput and CPU time per "
        "message on each side; plus C floors (memcpy, cache-line ping-pong, futex round trip) and the C "
        "core alone. Then the fan-out of a Broadcast channel: one writer process, N reader processes, the "
        "writer's CPU and wall time per message for each N (--kinds fanout for that alone). Peers that are "
        "not installed are skipped. Writes results.json, results.md and PNG plots.",
    )
    p.add_argument("--quick", action="store_true",
                   help=f"a short run for CI: payloads {', '.join(_report.size_label(s) for s in QUICK_PAYLOADS)} "
                   "and 0.06 s per cell, one round; the fan-out at 64 B only (under a minute)")
    p.add_argument("--payloads", type=_sizes, metavar="LIST",
                   help="payload sizes, e.g. 64,4K,1M,32M (default: "
                   f"{','.join(_report.size_label(s).replace(' ', '') for s in FULL_PAYLOADS)})")
    p.add_argument("--systems", type=_choices(list(SYSTEMS), "system"), metavar="LIST",
                   help=f"systems to run (default all): {', '.join(SYSTEMS)}")
    p.add_argument("--modes", type=_choices(ALL_MODES, "mode"), metavar="LIST",
                   help="latency waiting modes: busy,blocking (default both)")
    p.add_argument("--kinds", type=_choices(ALL_KINDS, "kind"), metavar="LIST",
                   help="latency,throughput,fanout,dataplane (default all four; dataplane: the per-message cost "
                   "of the Python API at 64 B against iceoryx2 and multiprocessing.Pipe, "
                   f"{DATAPLANE_ROUNDS} rounds)")
    p.add_argument("--cpus", type=_cpus, metavar="A,B", help="pin the two processes to CPUs A and B")
    p.add_argument("--seconds", type=_seconds, metavar="S", help="measured time per cell (default 1, --quick 0.06)")
    p.add_argument("--rounds", type=_rounds, metavar="N",
                   help="split each cell's time over N rounds of the whole run, so slow changes in the machine's "
                   f"load hit every system alike (default 3, fan-out {FANOUT_ROUNDS}; --quick 1)")
    fan = p.add_argument_group("fan-out (--kinds fanout)")
    fan.add_argument("--readers", type=_readers, metavar="LIST",
                     help="reader process counts (default "
                     f"{','.join(map(str, _fanout.DEFAULT_READERS))}, --quick "
                     f"{','.join(map(str, _fanout.QUICK_READERS))}; 0 = the writer alone; ratios are to 1 reader)")
    fan.add_argument("--fanout-payloads", type=_sizes, metavar="LIST",
                     help="fan-out payload sizes (default "
                     f"{','.join(_report.size_label(s).replace(' ', '') for s in _fanout.FULL_PAYLOADS)}, --quick "
                     f"{','.join(_report.size_label(s).replace(' ', '') for s in _fanout.QUICK_PAYLOADS)})")
    fan.add_argument("--policies", type=_choices(_fanout.POLICIES, "policy"), metavar="LIST",
                     help="block,overwrite (default both)")
    fan.add_argument("--reader-spin", type=_spin, default=0.0, metavar="S",
                     help="how long readers poll an empty ring before sleeping, seconds or 'default' (default 0: "
                     "up to 8 readers share the CPUs with the writer, and a polling reader takes CPU from it)")
    fan.add_argument("--writer-spin", type=_spin, default=0.0, metavar="S",
                     help="how long a blocked writer polls before sleeping (block policy), seconds or 'default' "
                     "(default 0: its CPU time then counts work, not waiting)")
    p.add_argument("--out", default="shmchan-bench-results", metavar="DIR",
                   help="where results.json, results.md and the plots go (default ./shmchan-bench-results)")
    p.add_argument("--no-native", action="store_true", help="skip the C floors and the native C benchmark")
    p.add_argument("--no-plots", action="store_true", help="do not draw the PNG plots")
    p.set_defaults(func=_main)
