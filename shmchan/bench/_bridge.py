"""``shmchan bench --kinds bridge``: a channel bridged over Zenoh, next to plain Zenoh and pyzmq.

Three systems carry the same messages (64 B, 64 KiB, 1 MiB) from one host process to another over
TCP on 127.0.0.1, each used the way its documentation recommends:

- **shmchan bridge**: a Python producer writes into a local channel, ``shmchan bridge export`` reads
  it and publishes on Zenoh, ``shmchan bridge import`` writes into a second channel, a Python
  consumer reads that (four processes; reliable, Zenoh's blocking congestion control);
- **Zenoh pub/sub**: a Python publisher (``put`` of a reused bytearray, reliable, blocking
  congestion control) and a Python subscriber (FIFO handler, ``payload.to_bytes()``);
- **pyzmq**: PUSH/PULL over ``tcp://127.0.0.1`` (zero-copy sends and receives from 64 KiB up).

In every system the producer writes every byte of every message and the consumer reads every
byte (sums the body, checks order and length) and takes the one-way latency from the stamp.
``rate``: the producer sends as fast as the transport takes; the figure is the consumer's message
rate (median of 5 slices after a warm-up). ``latency``: one message every few milliseconds; the
figures are percentiles of the one-way latency. CPU time is the sum over every process of the
system (four for the bridge), per message. Every Zenoh session listens and connects on
127.0.0.1 only, with multicast scouting and gossip off, inside a private network namespace that
has nothing but loopback when one can be made.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import statistics
import subprocess
import sys
import time
from typing import Any

from ._report import size_label

SYSTEMS = ("bridge", "zenoh", "zmq")
LABELS = {"bridge": "shmchan bridge", "zenoh": "Zenoh pub/sub (Python)", "zmq": "pyzmq tcp://127.0.0.1"}
FULL_PAYLOADS = [64, 65536, 1 << 20]
QUICK_PAYLOADS = [64, 1 << 20]
MODES = ("rate", "latency")
WARMUP = 0.25  # seconds of each rate cell not measured
SLICES = 5
TARGET_COST = 1.25  # the bridge's per-message cost over plain Zenoh's, at most
METHOD = __doc__.split("\n\n", 1)[1].strip() if __doc__ else ""


def capacity(size: int) -> int:
    """Ring slots of the bridge's two channels: about 1 MiB of ring, 16 to 1024 slots."""
    return max(16, min(1024, (1 << 20) // size))


def latency_plan(size: int, quick: bool) -> tuple[int, float]:
    """(messages, seconds between two) of a latency cell."""
    interval = 0.002 if size <= 65536 else 0.005
    return (100 if quick else 400), interval


def available() -> dict[str, str | None]:
    """Why each system cannot run here (None: it can)."""
    out: dict[str, str | None] = {}
    try:
        import zenoh  # noqa: F401

        out["bridge"] = out["zenoh"] = None
    except ImportError:
        out["bridge"] = out["zenoh"] = "eclipse-zenoh is not installed (pip install 'shmchan[bridge]')"
    try:
        import zmq  # noqa: F401

        out["zmq"] = None
    except ImportError:
        out["zmq"] = "pyzmq is not installed"
    return out


def settings(quick: bool, seconds: float, rounds: int, payloads: list[int] | None) -> dict[str, Any]:
    sizes = payloads or (QUICK_PAYLOADS if quick else FULL_PAYLOADS)
    return {"payloads": sizes, "rounds": rounds, "seconds_per_rate_cell": seconds, "quick": quick,
            "latency": {str(s): dict(zip(("messages", "interval_s"), latency_plan(s, quick), strict=True))
                        for s in sizes},
            "capacity": {str(s): capacity(s) for s in sizes}}


class _Proc:
    """A process of a cell; lines on stdout, read with a deadline."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.buf = b""

    def line(self, timeout: float) -> str:
        assert self.p.stdout is not None
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no output from {' '.join(self.argv[-12:])} within {timeout:g} s")
            r, _, _ = select.select([self.p.stdout], [], [], left)
            if r:
                chunk = os.read(self.p.stdout.fileno(), 1 << 20)
                if not chunk:
                    self.p.wait(5)
                    err = self.p.stderr.read().decode(errors="replace") if self.p.stderr else ""
                    raise RuntimeError(f"{' '.join(self.argv[-12:])} exited {self.p.returncode}: {err.strip()[-800:]}")
                self.buf += chunk
        out, self.buf = self.buf.split(b"\n", 1)
        return out.decode()

    def expect(self, prefix: str, timeout: float = 30.0) -> str:
        while True:
            text = self.line(timeout)
            if text.startswith(prefix):
                return text

    def send(self, text: str) -> None:
        assert self.p.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self.p.stdin.write(text.encode() + b"\n")
            self.p.stdin.flush()

    def cpu_s(self) -> float:
        """User + system CPU time so far (from /proc)."""
        try:
            with open(f"/proc/{self.p.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return 0.0

    def close(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
        with contextlib.suppress(Exception):
            self.p.communicate(timeout=10)


class Runner:
    """Runs cells in the private network (or on the host's loopback)."""

    def __init__(self, run_id: str) -> None:
        from ..bridge._netns import PrivateNetwork

        try:
            self.net: Any = PrivateNetwork()
            self.network = "a private network namespace with only lo"
        except OSError as exc:
            self.net = None
            self.network = f"the host's loopback ({exc})"
        self.run_id = run_id
        self.port = 21000 + os.getpid() % 1000 * 16
        self.cells = 0

    def close(self) -> None:
        if self.net is not None:
            self.net.close()

    def _start(self, argv: list[str], procs: list[_Proc]) -> _Proc:
        p = _Proc(self.net.command(argv) if self.net is not None else argv)
        procs.append(p)
        return p

    def _worker(self, role: str, size: int, mode: str, st: dict[str, Any], procs: list[_Proc],
                **extra: Any) -> _Proc:
        count, interval = latency_plan(size, st["quick"])
        argv = [sys.executable, "-m", "shmchan.bench._bridge_worker", role, "--size", str(size), "--mode", mode,
                "--seconds", str(st["seconds_per_rate_cell"] + WARMUP), "--count", str(count),
                "--interval", str(interval)]
        for k, v in extra.items():
            argv += [f"--{k}", str(v)]
        return self._start(argv, procs)

    def cell(self, system: str, mode: str, size: int, st: dict[str, Any]) -> dict[str, Any]:
        """One measurement: start the system's processes, stream, collect; never leaves a process."""
        self.cells += 1
        self.port += 1
        port = self.port
        procs: list[_Proc] = []
        t0 = time.monotonic()
        try:
            if system == "bridge":
                rep = self._bridge(mode, size, st, port, procs)
            else:
                sub_role, pub_role = ("zenoh-sub", "zenoh-pub") if system == "zenoh" else ("zmq-pull", "zmq-push")
                cons = self._worker(sub_role, size, mode, st, procs, port=port)
                cons.expect("ready")
                prod = self._worker(pub_role, size, mode, st, procs, port=port)
                sent = json.loads(prod.expect("{", 120))
                got = json.loads(cons.expect("{", 120))
                prod.send("exit")
                prod.p.wait(30)
                rep = {"sent": sent["sent"], "got": got, "cpu_s": sent["cpu_s"] + got["cpu_s"],
                       "cpu_parts": {"producer": sent["cpu_s"], "consumer": got["cpu_s"]}}
        except Exception as exc:  # a failed cell is reported, the run goes on
            return {"system": system, "mode": mode, "bytes": size, "error": f"{type(exc).__name__}: {exc}"}
        finally:
            for p in procs:
                p.close()
        return _measure(system, mode, size, rep, time.monotonic() - t0)

    def _bridge(self, mode: str, size: int, st: dict[str, Any], port: int, procs: list[_Proc]) -> dict[str, Any]:
        # the bench's own prefix: what a killed run leaves is removed by its cleanup
        a = f"bench-{self.run_id}-bridge{self.cells}-a"
        b = f"bench-{self.run_id}-bridge{self.cells}-b"
        key = f"bench/{a}"
        cli = [sys.executable, "-m", "shmchan.cli", "bridge"]
        prod = self._worker("shm-produce", size, mode, st, procs, name=a, capacity=capacity(size))
        prod.expect("ready")
        ex = self._start([*cli, "export", a, "--key", key, "--listen", f"tcp/127.0.0.1:{port}"], procs)
        ex.expect("exporting")
        im = self._start([*cli, "import", key, b, "--connect", f"tcp/127.0.0.1:{port}", "--remove-on-exit"], procs)
        im.expect("imported")
        cons = self._worker("shm-consume", size, mode, st, procs, name=b)
        cons.expect("ready")
        e0, i0 = ex.cpu_s(), im.cpu_s()
        prod.send("go")
        sent = json.loads(prod.expect("{", 120))
        got = json.loads(cons.expect("{", 120))
        parts = {"producer": sent["cpu_s"], "exporter": ex.cpu_s() - e0, "importer": im.cpu_s() - i0,
                 "consumer": got["cpu_s"]}
        for p in (im, ex):
            p.p.send_signal(signal.SIGTERM)
        for p in (im, ex):
            p.expect("stopped", 30)
            if p.p.wait(30) != 0:
                raise RuntimeError(f"a bridge exited {p.p.returncode}")
        prod.send("exit")
        prod.p.wait(30)
        return {"sent": sent["sent"], "got": got, "cpu_s": sum(parts.values()), "cpu_parts": parts}


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def _measure(system: str, mode: str, size: int, rep: dict[str, Any], wall: float) -> dict[str, Any]:
    got = rep["got"]
    out: dict[str, Any] = {"system": system, "mode": mode, "bytes": size, "sent": rep["sent"], "received": got["n"],
                           "errors": got["errors"] + (rep["sent"] - got["n"]), "wall_s": round(wall, 2),
                           "cpu_us_per_msg": 1e6 * rep["cpu_s"] / max(got["n"], 1),
                           "cpu_us_per_msg_by_process": {k: round(1e6 * v / max(got["n"], 1), 2)
                                                         for k, v in rep["cpu_parts"].items()}}
    if mode == "rate":
        marks = got["marks"]
        if len(marks) < 2:
            raise RuntimeError("too few messages")
        t_first = marks[0][0]
        measured = [m for m in marks if m[0] >= t_first + WARMUP * 1e9]
        if len(measured) < SLICES + 1:
            measured = marks
        step = (len(measured) - 1) / SLICES
        rates = []
        for i in range(SLICES):
            (ta, na), (tb, nb) = measured[round(i * step)], measured[round((i + 1) * step)]
            if tb > ta:
                rates.append((nb - na) / ((tb - ta) / 1e9))
        out["msgs_per_s"] = statistics.median(rates)
        out["rates"] = rates
    else:
        lat = got["lat_ns"][len(got["lat_ns"]) // 20 :]  # the first 5% warm the path up
        out["latency_us"] = [x / 1e3 for x in lat]
    return out


def plan(systems: list[str], payloads: list[int], rounds: int) -> list[tuple[str, str, int]]:
    """Cells in run order: rounds outermost, then payload size, then mode and system, so the
    systems are compared at each size within a short stretch of time."""
    return [(system, mode, size) for _ in range(rounds) for size in payloads for mode in MODES for system in systems]


def run_section(st: dict[str, Any], systems: list[str], run_id: str, bar: Any) -> tuple[list[dict[str, Any]], str]:
    runner = Runner(run_id)
    parts = []
    try:
        for system, mode, size in plan(systems, st["payloads"], st["rounds"]):
            bar.show(f"bridge: {LABELS[system]} {mode} {size_label(size)}")
            parts.append(runner.cell(system, mode, size, st))
            bar.step(f"bridge: {LABELS[system]} {mode} {size_label(size)}")
    finally:
        runner.close()
    return parts, runner.network


def combine(parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per (system, mode, payload): rates are the median over rounds, latency
    percentiles pool every round's samples."""
    cells: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for p in parts:
        cells.setdefault((p["system"], p["mode"], p["bytes"]), []).append(p)
    out = []
    for (system, mode, size), ps in sorted(cells.items(), key=lambda kv: (SYSTEMS.index(kv[0][0]), kv[0][1],
                                                                        kv[0][2])):
        ok = [p for p in ps if "error" not in p]
        rec: dict[str, Any] = {"system": system, "label": LABELS[system], "mode": mode, "bytes": size,
                               "rounds": len(ps)}
        if not ok:
            rec["error"] = ps[0]["error"]
            out.append(rec)
            continue
        rec["errors"] = sum(p["errors"] for p in ok)
        rec["cpu_us_per_msg"] = statistics.median(p["cpu_us_per_msg"] for p in ok)
        rec["cpu_us_per_msg_by_process"] = {k: statistics.median(p["cpu_us_per_msg_by_process"][k] for p in ok)
                                            for k in ok[0]["cpu_us_per_msg_by_process"]}
        if mode == "rate":
            rec["msgs_per_s"] = statistics.median(p["msgs_per_s"] for p in ok)
            rec["msgs_per_s_per_round"] = [round(p["msgs_per_s"], 1) for p in ok]
            rec["us_per_msg"] = 1e6 / rec["msgs_per_s"]
            rec["mb_per_s"] = rec["msgs_per_s"] * size / 1e6
        else:
            lat = [x for p in ok for x in p["latency_us"]]
            rec["n"] = len(lat)
            rec["latency_us"] = {"p50": _pct(lat, 0.5), "p99": _pct(lat, 0.99), "max": max(lat)}
        if len(ok) < len(ps):
            rec["failed_rounds"] = [p["error"] for p in ps if "error" in p]
        out.append(rec)
    return out


def _find(res: list[dict[str, Any]], system: str, mode: str, size: int) -> dict[str, Any] | None:
    for r in res:
        if (r["system"], r["mode"], r["bytes"]) == (system, mode, size) and "error" not in r:
            return r
    return None


def targets(res: list[dict[str, Any]], payloads: list[int]) -> list[dict[str, Any]]:
    """The issue's bridge targets, as ratios within this run (the format of _report.targets)."""
    out = []
    for size in payloads:
        b, z = _find(res, "bridge", "rate", size), _find(res, "zenoh", "rate", size)
        t: dict[str, Any] = {
            "target": f"bridge {size_label(size)}: time per message <= {TARGET_COST}x plain Zenoh's",
            "limit": TARGET_COST, "better": "lower", "unit": "us/msg",
            "what": "1 / message rate through producer, exporter, Zenoh, importer and consumer, over 1 / the rate "
                    "of a Python Zenoh publisher to a Python subscriber"}
        if b and z:
            ratio = b["us_per_msg"] / z["us_per_msg"]
            t.update(value=b["us_per_msg"], reference=z["us_per_msg"], ratio=ratio, met=bool(ratio <= TARGET_COST))
        else:
            t.update(ratio=None, met=None, note="not measured in this run")
        out.append(t)
    mib = 1 << 20
    b, q = _find(res, "bridge", "rate", mib), _find(res, "zmq", "rate", mib)
    t = {"target": "bridge 1 MiB: message rate > pyzmq tcp://127.0.0.1", "limit": 1.0, "better": "higher",
         "unit": "msg/s", "what": "message rate of the bridge over that of pyzmq PUSH/PULL on loopback TCP"}
    if b and q:
        ratio = b["msgs_per_s"] / q["msgs_per_s"]
        t.update(value=b["msgs_per_s"], reference=q["msgs_per_s"], ratio=ratio, met=bool(ratio > 1.0))
    else:
        t.update(ratio=None, met=None, note="not measured in this run" if mib in payloads else "1 MiB not in this run")
    out.append(t)
    return out


HEAD = ["system", "payload", "msg/s", "us/msg", "MB/s", "CPU us/msg (all processes)", "latency p50 us",
        "p99 us", "errors"]


def rows(res: list[dict[str, Any]]) -> list[list[str]]:
    out = []
    sizes = sorted({r["bytes"] for r in res})
    for size in sizes:
        for system in SYSTEMS:
            rate, lat = _find(res, system, "rate", size), _find(res, system, "latency", size)
            failed = [r for r in res if (r["system"], r["bytes"]) == (system, size) and "error" in r]
            if not rate and not lat:
                if failed:
                    out.append([LABELS[system], size_label(size), "FAILED", "", "", "", "", "", ""])
                continue
            cells = [LABELS[system], size_label(size)]
            cells += [f"{rate['msgs_per_s']:,.0f}", f"{rate['us_per_msg']:.1f}", f"{rate['mb_per_s']:,.0f}",
                      f"{rate['cpu_us_per_msg']:.1f}"] if rate else ["-"] * 4
            cells += [f"{lat['latency_us']['p50']:.0f}", f"{lat['latency_us']['p99']:.0f}"] if lat else ["-"] * 2
            cells.append(str(sum(r.get("errors", 0) for r in (rate, lat) if r)))
            out.append(cells)
    return out


def title(doc: dict[str, Any]) -> str:
    st = doc["settings"]["bridge"]
    return (f"bridged over Zenoh, one host, TCP on 127.0.0.1 ({doc.get('bridge_network', '?')}); "
            f"{st['seconds_per_rate_cell']:g} s per rate cell, {st['rounds']} round(s); medians")


def markdown(doc: dict[str, Any], table: Any) -> list[str]:
    out = [f"## {title(doc)[0].upper()}{title(doc)[1:]}", "", table(HEAD, rows(doc["bridge"])), "", METHOD, ""]
    failed = [r for r in doc["bridge"] if "error" in r]
    for r in failed:
        out.append(f"- FAILED {r['label']} {r['mode']} {size_label(r['bytes'])}: {r['error']}")
    return out
