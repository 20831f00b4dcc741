"""Figures out of raw samples, the targets, and the outputs: terminal tables, JSON, markdown, plots."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np

NATIVE_KEY = "shmchan-c"
NATIVE_LABEL = "shmchan C<->C (native)"

METHOD = (
    "Two processes (spawned), a producer and a consumer. The producer writes every byte of every "
    "message and the consumer reads every byte (and checks it): payloads up to 4 KiB by copying a "
    "prepared pattern in and comparing, larger ones by a memset and a sum of all 8-byte words. "
    "Latency: ping-pong round trip of equal-size messages, every round trip timed; p50/p99/p99.9/max "
    "in microseconds. Throughput: one-way stream timed by the consumer; the median rate over 20 "
    "slices of each round. CPU: user+system time of each process (all its threads) over the measured "
    "part, per message (per round trip for latency). busy = the receiver polls without sleeping; "
    "blocking = the system's own way of waiting (shmchan: spin, 100 us by default, then a futex)."
)

FANOUT_METHOD = (
    "Fan-out: one writer process and N reader processes (started once, reused for every cell) on a "
    "fresh Broadcast channel per cell, made by the harness (ring depth as for throughput, 8 reader "
    "places whatever N). The readers attach first (start='oldest': they see every message); the "
    "writer then streams as fast as the policy lets it, writing every byte of every message "
    "(reserve, fill, commit): a warm-up, then the measured part, then it closes the stream. Writer "
    "CPU = its thread's CPU time (user and system apart, getrusage(RUSAGE_THREAD)) over the measured "
    "part, per message; wall = elapsed time per message. Each reader takes messages with recv_batch "
    "(a quarter of the ring at most 16 at a time), reads every byte of each in place, checks it "
    "against the message's position and releases it. block: every reader must get every message; "
    "overwrite: the writer never waits, and what a lapped reader misses is counted (Reader.lost, "
    "which includes messages rewritten under a read). Readers and writer sleep at once when they "
    "have to wait (spin 0, unless said otherwise): up to 9 processes share the machine's CPUs, and a "
    "polling process would take CPU from the one it waits for. Each round measures every reader "
    "count once (in alternating order); figures are medians over the rounds, and a ratio to 1 "
    "reader is the median of the per-round ratios (same round, seconds apart). On a machine with "
    "fewer CPUs than processes, wall time mostly measures how the CPUs are shared (block: the writer "
    "waits for the slowest reader, and N readers need N times the reading); the writer's CPU time "
    "is its own cost."
)


def size_label(n: int) -> str:
    for unit, div in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= div and n % div == 0:
            return f"{n // div} {unit}"
    return f"{n} B"


def percentiles_us(samples_ns: list[int]) -> dict[str, float]:
    a = np.asarray(samples_ns, dtype=np.float64) / 1000.0
    if a.size == 0:
        return {}
    p50, p99, p999 = np.percentile(a, [50, 99, 99.9])
    return {"p50": float(p50), "p99": float(p99), "p999": float(p999), "max": float(a.max()),
            "mean": float(a.mean()), "n": int(a.size)}


def _round_rate(part: dict[str, Any]) -> float:
    """A stream's rate in one round: the median chunk rate, or the overall one for short runs."""
    overall = part["n"] / (part["ns"] / 1e9) if part["ns"] else 0.0
    return statistics.median(part["rates"]) if len(part["rates"]) >= 3 else overall


def combine(system: str, label: str, task: Any, parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One result record out of a cell's rounds; each part holds the two processes' reports ("a",
    "b"), an "error" (None if the round worked) and the "noise" seen meanwhile."""
    rec: dict[str, Any] = {"system": system, "label": label, "kind": task.kind, "mode": task.mode,
                           "bytes": task.size, "capacity": task.capacity if task.kind == "throughput" else 1,
                           "rounds": len(parts)}
    pressure = [p["noise"]["cpu_pressure_pct"] for p in parts
                if p.get("noise") and p["noise"].get("cpu_pressure_pct") is not None]
    if pressure:
        rec["noise"] = {"cpu_pressure_pct": round(statistics.mean(pressure), 1)}
    failed = [p for p in parts if p.get("error") is not None or p.get("a") is None]
    if failed:
        rec["error"] = failed[0].get("error") or "no result"
        return rec
    a_parts = [p["a"] for p in parts]
    b_parts = [p["b"] for p in parts if p.get("b") is not None]
    cpu = {"a": sum(x["cpu_s"] for x in a_parts) / max(sum(x["n"] for x in a_parts), 1) * 1e6}
    if b_parts:
        cpu["b"] = sum(x["cpu_s"] for x in b_parts) / max(sum(x["n"] for x in b_parts), 1) * 1e6
    rec["cpu_us_per_msg"] = cpu
    if task.kind == "latency":
        rtt = [v for x in a_parts for v in x["rtt_ns"]]
        rec["n"] = len(rtt)
        rec["rtt_us"] = percentiles_us(rtt)
        rec["p50_us_per_round"] = [round(float(np.median(x["rtt_ns"])) / 1000, 3) for x in a_parts]
        rec["errors"] = sum(x["errors"] for x in a_parts) + sum(x["errors"] for x in b_parts)
    else:
        src = b_parts if b_parts else a_parts  # the consumer times a stream; one process times itself
        rates = [r for x in src for r in x["rates"]]
        n = sum(x["n"] for x in src)
        ns = sum(x["ns"] for x in src)
        overall = n / (ns / 1e9) if ns else 0.0
        rate = statistics.median(rates) if len(rates) >= 3 else overall
        rec.update(n=n, msgs_per_s=rate, msgs_per_s_overall=overall, gbps=rate * task.size / 1e9,
                   errors=sum(x["errors"] for x in src),
                   gbps_per_round=[round(_round_rate(x) * task.size / 1e9, 4) for x in src])
    return rec


def combine_native(recs: list[dict[str, Any]]) -> dict[str, Any]:
    """The C benchmark's rounds: the median of each figure over the rounds."""
    first = dict(recs[0])
    ok = [r for r in recs if "error" not in r]
    if len(ok) < len(recs):
        return next(r for r in recs if "error" in r) | {"rounds": len(recs)}
    out = dict(first)
    out["rounds"] = len(recs)
    if "rtt_us" in first:
        out["rtt_us"] = {k: (int if k == "n" else float)(np.median([r["rtt_us"][k] for r in ok]))
                         for k in first["rtt_us"]}
        out["n"] = sum(r["n"] for r in ok)
        out["p50_us_per_round"] = [r["rtt_us"]["p50"] for r in ok]
        if all("rtt_batch_us" in r for r in ok):
            out["rtt_batch_us_per_round"] = [r["rtt_batch_us"] for r in ok]
            out["rtt_batch_us"] = float(np.median(out["rtt_batch_us_per_round"]))
    else:
        for k in ("msgs_per_s", "msgs_per_s_overall", "gbps"):
            out[k] = float(np.median([r[k] for r in ok]))
        out["n"] = sum(r["n"] for r in ok)
        out["gbps_per_round"] = [r["gbps"] for r in ok]
    out["cpu_us_per_msg"] = {k: float(np.median([r["cpu_us_per_msg"][k] for r in ok]))
                             for k in first["cpu_us_per_msg"]}
    out["errors"] = sum(r.get("errors", 0) for r in ok)
    pressure = [r["noise"]["cpu_pressure_pct"] for r in ok if r.get("noise", {}).get("cpu_pressure_pct") is not None]
    if pressure:
        out["noise"] = {"cpu_pressure_pct": round(statistics.mean(pressure), 1)}
    return out


def combine_floors(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Floors measured once per round: the median of each figure."""
    out: dict[str, Any] = {}
    for key in ("memcpy", "handoff"):
        mem = [r[key] for r in rounds if r.get(key)]
        if mem:
            sizes = [m["bytes"] for m in mem[0]]
            out[key] = [{"bytes": s, "gbps": float(np.median([m[i]["gbps"] for m in mem if len(m) > i])),
                         "gbps_per_round": [m[i]["gbps"] for m in mem if len(m) > i]}
                        for i, s in enumerate(sizes)]
    paired = [p for r in rounds for p in r.get("paired", [])]
    if paired:
        out["paired"] = paired
    for key in ("cacheline_pingpong", "futex_roundtrip"):
        got = [r[key] for r in rounds if r.get(key)]
        if got:
            out[key] = {
                "rtt_us": {k: (int if k == "n" else float)(np.median([g["rtt_us"][k] for g in got]))
                           for k in got[0]["rtt_us"]},
                "cpu_us_per_rt": {k: float(np.median([g["cpu_us_per_rt"][k] for g in got]))
                                  for k in got[0]["cpu_us_per_rt"]},
                "p50_us_per_round": [g["rtt_us"]["p50"] for g in got],
            }
            if all("rtt_batch_us" in g for g in got):
                out[key]["rtt_batch_us_per_round"] = [g["rtt_batch_us"] for g in got]
                out[key]["rtt_batch_us"] = float(np.median(out[key]["rtt_batch_us_per_round"]))
    return out


# ---- targets ----


def _find(results: list[dict[str, Any]], system: str, kind: str, mode: str | None, size: int) -> dict[str, Any] | None:
    for r in results:
        if (r["system"] == system and r["kind"] == kind and r["bytes"] == size and "error" not in r
                and (mode is None or r["mode"] == mode)):
            return r
    return None


def targets(results: list[dict[str, Any]], floors: dict[str, Any], fanout: list[dict[str, Any]] | None = None,
            pairs: bool = True) -> list[dict[str, Any]]:
    """The issue's targets, as ratios within this run: the two-process ones (``pairs``), and the
    fan-out ones if that section ran (``fanout`` not None)."""
    out: list[dict[str, Any]] = []
    if pairs:
        _pair_targets(out, results, floors)
    if fanout is not None:
        _fanout_targets(out, fanout)
    return out


def _fanout_targets(out: list[dict[str, Any]], fanout: list[dict[str, Any]]) -> None:
    sizes = sorted({r["bytes"] for r in fanout}) or [64]
    policies = [p for p in ("block", "overwrite") if any(r["policy"] == p for r in fanout)] or ["block", "overwrite"]
    for size in sizes:
        for policy in policies:
            cells = {r["readers"]: r for r in fanout
                     if r["policy"] == policy and r["bytes"] == size and "error" not in r}
            t: dict[str, Any] = {
                "target": f"fan-out {policy} {size_label(size)}: writer CPU/msg, 8 readers <= 3x 1 reader",
                "limit": 3.0, "better": "lower", "unit": "ns/msg",
                "what": "the writer's CPU time per message with 8 reader processes / with 1 (the median of the "
                        "per-round ratios; value and reference are the medians over the rounds)"}
            one, eight = cells.get(1), cells.get(8)
            ratio = eight["writer"].get("cpu_ns_ratio") if eight else None
            if one is None or eight is None or ratio is None:
                t.update(ratio=None, met=None, note="not measured in this run")
            else:
                t.update(value=eight["writer"]["cpu_ns_per_msg"], reference=one["writer"]["cpu_ns_per_msg"],
                         ratio=ratio, met=bool(ratio <= 3.0), ratios=eight["writer"]["cpu_ns_ratio_per_round"])
            out.append(t)


def _pair_targets(out: list[dict[str, Any]], results: list[dict[str, Any]], floors: dict[str, Any]) -> None:
    def add(name: str, value: float | None, ref: float | None, limit: float, higher_is_better: bool,
            unit: str, what: str) -> None:
        t: dict[str, Any] = {"target": name, "limit": limit, "better": "higher" if higher_is_better else "lower",
                             "unit": unit, "what": what}
        if value is None or ref is None or ref == 0:
            t.update(ratio=None, met=None, note="not measured in this run")
        else:
            ratio = value / ref
            t.update(value=value, reference=ref, ratio=ratio,
                     met=bool(ratio >= limit if higher_is_better else ratio <= limit))
        out.append(t)

    mib8 = 8 << 20

    def thr(system: str) -> float | None:
        r = _find(results, system, "throughput", None, mib8)
        return r["gbps"] if r else None

    def lat(system: str, mode: str, size: int = 64) -> float | None:
        r = _find(results, system, "latency", mode, size)
        return r["rtt_us"]["p50"] if r else None

    add("8 MiB throughput >= 1.3x the same work in one process", thr("shmchan"), thr("none"), 1.3, True, "GB/s",
        "shmchan one-way GB/s / no-IPC write-then-read GB/s")
    add("8 MiB throughput >= 10x multiprocessing.Queue", thr("shmchan"), thr("mp-queue"), 10.0, True, "GB/s",
        "shmchan GB/s / multiprocessing.Queue GB/s")
    add("64 B round trip, busy-poll, <= 0.5x iceoryx2", lat("shmchan", "busy"), lat("iceoryx2", "busy"), 0.5,
        False, "us p50", "shmchan p50 round trip / iceoryx2 p50 round trip (Python, both polling)")
    add("64 B round trip, blocking, <= 0.5x iceoryx2 events", lat("shmchan", "blocking"),
        lat("iceoryx2", "blocking"), 0.5, False, "us p50",
        "shmchan p50 round trip / iceoryx2 p50 round trip (Python, waiting on events)")
    ho = next((h["gbps"] for h in floors.get("handoff", []) if h["bytes"] == mib8), None)
    add("(diagnosis) 8 MiB throughput vs the cross-core floor", thr("shmchan"), ho, 0.8, True, "GB/s",
        "shmchan GB/s / two C processes handing 8 MiB buffers over with no transport (memset, then sum)")
    native = _find(results, NATIVE_KEY, "latency", "busy", 64)
    pp = floors.get("cacheline_pingpong", {})
    pairs = [p for p in floors.get("paired", []) if p["pingpong_rtt_us"] > 0]
    if pairs:
        # the two vCPUs of a VM can sit closer or further apart on the host from one second to the next
        # (here: a 90 ns or a 400 ns cache-line round trip), so the two are measured alternately, in
        # short runs, and compared run by run
        add("C<->C one-way latency <= 2x the cache-line ping-pong",
            float(np.median([p["native_rtt_us"] for p in pairs])) / 2,
            float(np.median([p["pingpong_rtt_us"] for p in pairs])) / 2, 2.0, False, "us",
            "native shmchan 64 B one-way / cache-line one-way, both busy-polling (round trips / 2; each the median "
            "mean of runs of 64 round trips), measured alternately; the ratio is the median of the pairs' ratios")
        ratios = [p["native_rtt_us"] / p["pingpong_rtt_us"] for p in pairs]
        out[-1]["ratio"] = float(np.median(ratios))
        out[-1]["met"] = bool(out[-1]["ratio"] <= 2.0)
        out[-1]["ratios"] = [round(r, 3) for r in ratios]
    else:
        add("C<->C one-way latency <= 2x the cache-line ping-pong", native["rtt_us"]["p50"] / 2 if native else None,
            pp["rtt_us"]["p50"] / 2 if pp.get("rtt_us") else None, 2.0, False, "us p50",
            "native shmchan 64 B one-way (round trip / 2) / cache-line one-way (round trip / 2)")


# ---- terminal and markdown ----


def _fmt(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "-"
    if x == 0:
        return "0"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}" if abs(x) < 1 else f"{x:.{max(digits - len(str(int(abs(x)))), 0)}f}"


def _systems_in(results: list[dict[str, Any]], kind: str, mode: str | None) -> list[tuple[str, str]]:
    seen: dict[str, str] = {}
    for r in results:
        if r["kind"] == kind and (mode is None or r["mode"] in (mode, "-")):
            seen.setdefault(r["system"], r["label"])
    return list(seen.items())


def pivot(results: list[dict[str, Any]], kind: str, mode: str | None, sizes: list[int]) -> list[list[str]]:
    """Rows of [system, value per size]: p50 round trip (us) or GB/s."""
    rows = []
    for key, label in _systems_in(results, kind, mode):
        row = [label]
        for s in sizes:
            r = next((x for x in results if x["system"] == key and x["kind"] == kind and x["bytes"] == s
                      and (mode is None or x["mode"] in (mode, "-"))), None)
            if r is None:
                row.append("")
            elif "error" in r:
                row.append("failed")
            elif kind == "latency":
                row.append(_fmt(r["rtt_us"]["p50"]))
            else:
                row.append(_fmt(r["gbps"]))
        rows.append(row)
    return rows


def text_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    lines = []
    for r in [header, *rows]:
        cells = zip(r, widths, strict=True)
        lines.append("  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(cells)))
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def md_table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def _target_rows(tg: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for t in tg:
        if t["ratio"] is None:
            rows.append([t["target"], "-", "-", "-", "not measured"])
            continue
        verdict = "met" if t["met"] else "MISSED"
        rows.append([t["target"], f"{_fmt(t['value'])} {t['unit']}", f"{_fmt(t['reference'])} {t['unit']}",
                     f"{t['ratio']:.2f}x", verdict])
    return rows


def terminal_report(doc: dict[str, Any]) -> str:
    sizes = doc["settings"]["payloads"]
    res = doc["results"]
    head = ["system"] + [size_label(s) for s in sizes]
    parts = []
    for mode in ("busy", "blocking"):
        rows = pivot(res, "latency", mode, sizes)
        if rows:
            parts.append(f"round trip p50 (us), {mode}:\n" + text_table(head, rows))
    rows = pivot(res, "throughput", None, sizes)
    if rows:
        parts.append("one-way throughput (GB/s, median of the slices of all rounds):\n" + text_table(head, rows))
    fl = doc.get("floors", {})
    if fl:
        parts.append("floors: " + floors_line(fl))
    if doc.get("fanout") is not None:
        parts.append(fanout_title(doc) + ":\n" + text_table(FANOUT_HEAD, fanout_rows(doc["fanout"])))
    if doc.get("dataplane") is not None:
        from . import _dataplane

        parts.append("data plane (64 B):\n" + "\n".join(_dataplane.report_lines(doc["dataplane"])))
    parts.append(noise_line(doc))
    tg = doc.get("targets", [])
    if tg:
        parts.append("targets (ratios within this run):\n"
                     + text_table(["target", "shmchan", "reference", "ratio", ""], _target_rows(tg)))
    return "\n\n".join(parts)


def floors_line(fl: dict[str, Any]) -> str:
    bits = []
    pp = fl.get("cacheline_pingpong")
    if pp:
        bits.append(f"cache-line ping-pong {pp['rtt_us']['p50'] * 1000:.0f} ns round trip p50")
    fx = fl.get("futex_roundtrip")
    if fx:
        bits.append(f"futex wake-up {fx['rtt_us']['p50']:.1f} us round trip p50")
    mc = fl.get("memcpy")
    if mc:
        bits.append("memcpy in one process " + ", ".join(f"{size_label(m['bytes'])} {m['gbps']:.0f} GB/s" for m in mc))
    ho = fl.get("handoff")
    if ho:
        bits.append("cross-core handoff (one process memsets, the other sums) "
                    + ", ".join(f"{size_label(m['bytes'])} {m['gbps']:.1f} GB/s" for m in ho))
    return "; ".join(bits)


def _spread(values: list[float] | None) -> str:
    return " / ".join(_fmt(v) for v in values) if values else "-"


def _pressure(r: dict[str, Any]) -> str:
    p = r.get("noise", {}).get("cpu_pressure_pct")
    return "-" if p is None else f"{p:.0f}"


def noise_line(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    n = m.get("noise", {})
    bits = [f"load average {m['loadavg_before'][0]:.2f} before, {m['loadavg_after'][0]:.2f} after"]
    if n.get("cpu_pressure_pct") is not None:
        bits.append(f"some task waited for a CPU {n['cpu_pressure_pct']:.0f}% of the time")
    if n.get("steal_pct") is not None:
        bits.append(f"hypervisor steal {n['steal_pct']:.1f}%")
    return "noise: " + "; ".join(bits)


def markdown_report(doc: dict[str, Any], plots: list[str]) -> str:
    sizes = doc["settings"]["payloads"]
    res = doc["results"]
    m = doc["machine"]
    out = ["# shmchan bench", ""]
    cpus = doc["settings"]["cpus"]
    pin = f"the two processes pinned to CPUs {cpus[0]} and {cpus[1]}" if cpus else "no CPU pinning"
    virt = ", virtualized" if m.get("virtualized") else ""
    out.append(f"Run {doc['started']} on {m.get('cpu_model', '?')} ({m.get('cpus', '?')} CPUs{virt}, "
               f"{m.get('memory_gib', '?')} GiB), {m.get('kernel', '')}, {m.get('python', '')}; {pin}; "
               f"{doc['settings']['seconds_per_cell']:g} s per cell in {doc['settings']['rounds']} round(s); "
               f"{doc['duration_s']:.0f} s in all.")
    out.append("")
    out.append(f"Command: `{doc['command']}`")
    out.append("")
    out.append(noise_line(doc) + " (CPU wait counts any runnable task, the benchmark's own included).")
    out.append("")
    if res:
        out.append(METHOD)
        out.append("")
    if doc.get("skipped"):
        for s in doc["skipped"]:
            out.append(f"- skipped {s['label']}: {s['reason']}")
        out.append("")
    tg = doc.get("targets", [])
    if tg:
        out += ["## Targets", "", md_table(["target", "shmchan", "reference", "ratio", ""], _target_rows(tg)), ""]
    head = ["system"] + [size_label(s) for s in sizes]
    for mode in ("busy", "blocking"):
        rows = pivot(res, "latency", mode, sizes)
        if rows:
            out += [f"## Round trip p50 (us), {mode}", "", md_table(head, rows), ""]
    rows = pivot(res, "throughput", None, sizes)
    if rows:
        out += ["## One-way throughput (GB/s)", "", md_table(head, rows), ""]
    if doc.get("fanout") is not None:
        out += [f"## {fanout_title(doc)[0].upper()}{fanout_title(doc)[1:]}", "",
                md_table(FANOUT_HEAD, fanout_rows(doc["fanout"])), ""]
    fl = doc.get("floors", {})
    if fl:
        out += ["## Floors (C, same run)", "", floors_line(fl), ""]
    for p in plots:
        if p != FANOUT_PLOT:
            out += [f"![{p}]({p})", ""]
    if doc.get("fanout") is not None:
        out += fanout_markdown(doc, FANOUT_PLOT in plots)
    if doc.get("dataplane") is not None:
        from . import _dataplane

        dp = doc["dataplane"]
        out += ["## Data plane: the per-message cost of the Python API", "", doc.get("dataplane_methodology", ""), "",
                f"{dp['rounds']} round(s) of {dp['seconds_per_round']:g} s per cell; medians over the rounds.", ""]
        out += [*_dataplane.report_lines(dp), ""]
    if res:
        out += ["## Every figure", ""]
    lat_head = ["system", "mode", "payload", "n", "p50 us", "p99 us", "p99.9 us", "max us", "CPU a us/rt",
                "CPU b us/rt", "errors", "CPU wait %", "p50 per round"]
    lat_rows = []
    thr_head = ["system", "mode", "payload", "depth", "n", "msg/s", "GB/s", "CPU a us/msg", "CPU b us/msg", "errors",
                "CPU wait %", "GB/s per round"]
    thr_rows = []
    for r in res:
        if "error" in r:
            continue
        cpu = r.get("cpu_us_per_msg", {})
        if r["kind"] == "latency":
            q = r["rtt_us"]
            lat_rows.append([r["label"], r["mode"], size_label(r["bytes"]), str(r["n"]), _fmt(q["p50"]),
                             _fmt(q["p99"]), _fmt(q["p999"]), _fmt(q["max"]), _fmt(cpu.get("a")), _fmt(cpu.get("b")),
                             str(r["errors"]), _pressure(r), _spread(r.get("p50_us_per_round"))])
        else:
            thr_rows.append([r["label"], r["mode"], size_label(r["bytes"]), str(r["capacity"]), str(r["n"]),
                             _fmt(r["msgs_per_s"]), _fmt(r["gbps"]), _fmt(cpu.get("a")), _fmt(cpu.get("b")),
                             str(r["errors"]), _pressure(r), _spread(r.get("gbps_per_round"))])
    if lat_rows:
        out += ["### Latency", "", md_table(lat_head, lat_rows), ""]
    if thr_rows:
        out += ["### Throughput", "", md_table(thr_head, thr_rows), ""]
    failed = [r for r in res if "error" in r]
    fan_failed = [r for r in doc.get("fanout") or [] if "error" in r]
    if failed or fan_failed:
        out += ["### Failures", ""]
        for r in failed:
            first = r["error"].strip().splitlines()[-1] if r["error"].strip() else "?"
            out.append(f"- {r['label']} {r['kind']} {r['mode']} {size_label(r['bytes'])}: {first}")
        for r in fan_failed:
            first = r["error"].strip().splitlines()[-1] if r["error"].strip() else "?"
            out.append(f"- fan-out {r['policy']} {size_label(r['bytes'])} {r['readers']} readers: {first}")
        out.append("")
    out += ["## Columns", ""]
    if res:
        out += [COLUMNS, ""]
    if doc.get("fanout") is not None:
        out += [FANOUT_COLUMNS, ""]
    if res:
        out += ["## How each system is used", ""]
        for s in doc.get("systems", []):
            out.append(f"- **{s['label']}** ({s['version']}): {s['how']}")
        out.append("")
    return "\n".join(out)


COLUMNS = """\
- **p50 / p99 / p99.9 / max us**: percentiles of the round-trip time (a message there and one of the
  same size back, every byte written and read on both sides), microseconds. One-way latency is about
  half. With few samples (n) the high percentiles are the largest samples.
- **busy / blocking**: busy = both sides poll without sleeping (a CPU each); blocking = each system's
  own wait (shmchan spins, 100 us by default, then sleeps on a futex; iceoryx2 waits on its event
  service; queues and pipes block in the kernel).
- **CPU a / CPU b**: user+system CPU time of the producer (a) and the consumer (b) processes, all
  threads, per round trip or per message, microseconds. Polling shows up here.
- **GB/s, msg/s**: one-way throughput measured by the consumer (1 GB = 10^9 bytes): the median over
  equal slices of the run (20 per round). **depth**: messages allowed in flight (ring slots, queue bound).
- **errors**: messages whose bytes were not what the producer wrote (always expected to be 0).
- **CPU wait %**: share of the cell's time in which some runnable task waited for a CPU (Linux
  pressure stall information): high values mean the figures were disturbed by contention.
- **per round**: the run is repeated in rounds (each cell gets an equal share of its time in each),
  payload size by payload size, so that a slow change in the machine's load hits every system alike;
  the figures above pool all rounds, these show the spread between them.
- **no IPC (one process)**: the same writes and reads in one process, with no transport at all.
- **shmchan C<->C (native)**: the C core alone, a C producer and a C consumer process.
- **floors**: memcpy bandwidth in one process; a cross-core handoff (two C processes, two shared
  buffers, one memsets a buffer while the other sums the previous one: the payload traffic any
  two-process transport must carry, with no transport); a cache line bounced between two processes
  (spinning); a futex wake-up round trip between two processes (sleeping) - C programs, same run."""


# ---- fan-out ----

FANOUT_PLOT = "fanout.png"
FANOUT_HEAD = ["policy", "payload", "readers", "writer CPU ns/msg", "user", "sys", "x 1 reader", "wall ns/msg",
               "x 1 reader", "delivered", "lost", "errors"]


def spin_text(spin: float | None) -> str:
    if spin is None:
        return "the library default"
    return "0 (sleep at once)" if spin == 0 else f"{spin * 1e6:g} us"


def fanout_title(doc: dict[str, Any]) -> str:
    f = doc["settings"].get("fanout", {})
    return (f"fan-out: one writer, N reader processes (Broadcast); the writer's cost per message, median of "
            f"{f.get('rounds', '?')} round(s); x 1 reader = median of the per-round ratios")


def _ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}x"


def _count(n: int) -> str:
    return f"{n:,}"


def fanout_rows(fan: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for r in fan:
        head = [r["policy"], size_label(r["bytes"]), str(r["readers"])]
        if "error" in r:
            rows.append(head + ["failed"] + [""] * (len(FANOUT_HEAD) - 4))
            continue
        w = r["writer"]
        if r["readers"]:
            pct = r["delivered_pct"]
            delivered = f"{_count(r['delivered'])} ({pct:.4g}%)"
            lost = _count(r["lost"]) + (f" (+{_count(r['unaccounted'])} uncounted)" if r["unaccounted"] else "")
        else:
            delivered = lost = "-"
        rows.append([*head, _fmt(w["cpu_ns_per_msg"]), _fmt(w["user_ns_per_msg"]), _fmt(w["sys_ns_per_msg"]),
                     _ratio(w.get("cpu_ns_ratio")), _fmt(w["wall_ns_per_msg"]), _ratio(w.get("wall_ns_ratio")),
                     delivered, lost, str(r["errors"])])
    return rows


def fanout_markdown(doc: dict[str, Any], plot: bool) -> list[str]:
    """The fan-out section's details: method, every figure, per-round ratios, the plot."""
    f = doc["settings"]["fanout"]
    out = ["## Fan-out details", ""]
    spin = {k: spin_text(f[k]) for k in ("reader_spin", "writer_spin")}
    out.append(f"Readers {', '.join(map(str, f['readers']))}; policies {', '.join(f['policies'])}; payloads "
               f"{', '.join(size_label(s) for s in f['payloads'])}; {f['seconds_per_cell']:g} s per cell in "
               f"{f['rounds']} round(s) ({f['warmup_s_per_round']:g} s warm-up each); ring depth "
               + ", ".join(f"{c} slots for {size_label(int(s))}" for s, c in f["capacity"].items())
               + f"; {f['reader_places']} reader places; reader spin {spin['reader_spin']}, writer spin "
               f"{spin['writer_spin']}.")
    out += ["", doc.get("fanout_methodology", FANOUT_METHOD), ""]
    if plot:
        out += [f"![{FANOUT_PLOT}]({FANOUT_PLOT})", ""]
    head = ["policy", "payload", "readers", "msgs", "writer msg/s", "CPU ns/msg", "user", "sys", "CPU x1 per round",
            "wall ns/msg", "wall x1 per round", "vol. switches /1k", "preempted /1k", "ring full /1k", "CPU wait %"]
    rows = []
    rhead = ["policy", "payload", "readers", "sent", "expected", "delivered", "lost", "of which torn", "uncounted",
             "errors", "reader CPU ns/msg", "all readers' CPU ns/msg sent", "reader empty /1k"]
    rrows = []
    for r in doc["fanout"]:
        if "error" in r:
            continue
        w = r["writer"]
        rows.append([r["policy"], size_label(r["bytes"]), str(r["readers"]), _count(w["msgs_measured"]),
                     _fmt(w["msgs_per_s"]), _fmt(w["cpu_ns_per_msg"]), _fmt(w["user_ns_per_msg"]),
                     _fmt(w["sys_ns_per_msg"]), _spread(w.get("cpu_ns_ratio_per_round")), _fmt(w["wall_ns_per_msg"]),
                     _spread(w.get("wall_ns_ratio_per_round")), _fmt(w["vcsw_per_1k_msgs"]),
                     _fmt(w["ivcsw_per_1k_msgs"]), _fmt(r["full_waits_per_1k_msgs"]) if r["policy"] == "block" else "-",
                     _pressure(r)])
        if r["readers"]:
            rrows.append([r["policy"], size_label(r["bytes"]), str(r["readers"]), _count(r["sent"]),
                          _count(r["expected"]), _count(r["delivered"]), _count(r["lost"]), _count(r["torn"]),
                          _count(r["unaccounted"]), str(r["errors"]), _fmt(r["reader_cpu_ns_per_msg"]),
                          _fmt(r.get("readers_cpu_ns_per_sent")), _fmt(r["reader_empty_waits_per_1k_msgs"])])
    out += ["### The writer", "", md_table(head, rows), ""]
    if rrows:
        out += ["### The readers (all rounds, all readers)", "", md_table(rhead, rrows), ""]
    return out


FANOUT_COLUMNS = """Fan-out columns:
- **readers 0**: the writer alone (nobody attached), for reference.
- **writer CPU ns/msg, user, sys**: the writer thread's CPU time per message over the measured part
  (precise: its thread's CPU clock); user and system time from getrusage (the kernel splits the
  total by sampling, so the split is approximate, and medians of each need not add up). System time
  is mostly futex calls: waking sleeping readers, and, block, sleeping while the ring is full.
  **wall ns/msg**: elapsed time per message.
- **x 1 reader**: that figure with N readers / with 1 reader in the same round; the median over
  the rounds (per round in the details).
- **delivered**: messages the readers got intact, all readers and rounds (percentage of sent x N);
  **lost**: the readers' `Reader.lost` (overwrite: lapped, or rewritten under a read); **uncounted**:
  neither delivered intact nor counted lost (should be 0); **errors**: wrong bytes in a message
  whose slot was not rewritten (always expected to be 0).
- **vol. switches, preempted /1k**: the writer thread's voluntary (it slept) and involuntary (another
  process took its CPU) context switches per 1000 messages; **ring full /1k**: reserves that found
  the ring full (block). **reader CPU ns/msg**: a reader's CPU time per message it got (median
  reader); **all readers' CPU ns/msg sent**: the N readers' CPU time together per message the
  writer sent. **reader empty /1k**: times a reader found nothing to take, per 1000 messages it got."""


# ---- plots ----

COLORS = {"shmchan": "#d62728", "shmchan-copy": "#ff7f0e", NATIVE_KEY: "#8c564b", "none": "#000000",
          "mp-queue": "#1f77b4", "mp-pipe": "#7f7f7f", "mp-shm": "#9467bd", "faster-fifo": "#2ca02c",
          "zmq": "#bcbd22", "iceoryx2": "#17becf"}


def _style(key: str) -> dict[str, Any]:
    mine = key.startswith("shmchan")
    return {"color": COLORS.get(key), "ls": "-" if mine or key == "none" else "--", "lw": 2.6 if key == "shmchan"
            else 1.4, "marker": "o", "ms": 3.5}


def _size_axis(ax: Any, sizes: list[int]) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes)
    ax.set_xticklabels([size_label(s) for s in sizes], fontsize=8)
    ax.minorticks_off()
    ax.set_xlabel("payload")


def plots(doc: dict[str, Any], outdir: Path) -> tuple[list[str], str | None]:
    """latency.png, throughput.png and fanout.png, for the sections that ran; returns (file names, why
    not if matplotlib is missing)."""
    try:
        import importlib

        mpl = importlib.import_module("matplotlib")
        mpl.use("Agg")
        plt = importlib.import_module("matplotlib.pyplot")
    except Exception as exc:
        return [], f"matplotlib is not installed ({exc.__class__.__name__}); pip install 'shmchan[bench]'"
    names = []
    res = doc["results"]
    if any(r["kind"] == "latency" for r in res):
        _latency_plot(plt, doc, outdir)
        names.append("latency.png")
    if any(r["kind"] == "throughput" for r in res):
        _throughput_plot(plt, doc, outdir)
        names.append("throughput.png")
    if doc.get("fanout"):
        _fanout_plot(plt, doc, outdir)
        names.append(FANOUT_PLOT)
    return names, None


def _latency_plot(plt: Any, doc: dict[str, Any], outdir: Path) -> None:
    res = doc["results"]
    fl = doc.get("floors", {})
    sizes = doc["settings"]["payloads"]
    fig, axes = plt.subplots(1, 2, figsize=(13, 6.2), sharey=True)
    for ax, mode in zip(axes, ("busy", "blocking"), strict=True):
        for key, label in _systems_in(res, "latency", mode):
            pts = sorted((r["bytes"], r["rtt_us"]["p50"]) for r in res
                         if r["system"] == key and r["kind"] == "latency" and r["mode"] in (mode, "-")
                         and "error" not in r)
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], label=label, **_style(key))
        floor = fl.get("cacheline_pingpong" if mode == "busy" else "futex_roundtrip")
        if floor:
            ax.axhline(floor["rtt_us"]["p50"], color="grey", lw=0.8, ls=":",
                       label="floor: cache-line ping-pong" if mode == "busy" else "floor: futex round trip")
        _size_axis(ax, sizes)
        ax.set_yscale("log")
        ax.set_title(f"round trip p50, {mode}")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("microseconds (log)")
    seen: dict[str, Any] = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(lab, h)
    fig.suptitle("shmchan bench: ping-pong latency, every byte written and read", fontsize=10)
    fig.legend(list(seen.values()), list(seen), loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.14, 1, 1))
    fig.savefig(outdir / "latency.png", dpi=110)
    plt.close(fig)


def _throughput_plot(plt: Any, doc: dict[str, Any], outdir: Path) -> None:
    res = doc["results"]
    fl = doc.get("floors", {})
    sizes = doc["settings"]["payloads"]
    fig, ax = plt.subplots(figsize=(8, 5.2))
    for key, label in _systems_in(res, "throughput", None):
        pts = sorted((r["bytes"], r["gbps"]) for r in res
                     if r["system"] == key and r["kind"] == "throughput" and "error" not in r and r["gbps"] > 0)
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], label=label, **_style(key))
    mc = fl.get("memcpy")
    if mc:
        ax.plot([m["bytes"] for m in mc], [m["gbps"] for m in mc], ":", color="grey", lw=1,
                label="floor: memcpy, one process (C)")
    ho = fl.get("handoff")
    if ho:
        ax.plot([m["bytes"] for m in ho], [m["gbps"] for m in ho], "-.", color="grey", lw=1,
                label="floor: cross-core handoff, no transport (C)")
    _size_axis(ax, sizes)
    ax.set_yscale("log")
    ax.set_ylabel("GB/s (log)")
    ax.set_title("shmchan bench: one-way throughput, every byte written and read", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(outdir / "throughput.png", dpi=110)
    plt.close(fig)


def _fanout_plot(plt: Any, doc: dict[str, Any], outdir: Path) -> None:
    """The writer's CPU and wall time per message against the reader count, as ratios to 1 reader
    (per-round medians), with the 3x goal."""
    fan = [r for r in doc["fanout"] if "error" not in r]
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.6))
    colors = {"block": "#d62728", "overwrite": "#1f77b4"}
    sizes = sorted({r["bytes"] for r in fan})
    styles = ["-", "--", ":", "-."]
    counts = sorted({r["readers"] for r in fan})
    titles = ("writer CPU time per message", "writer wall time per message")
    for ax, metric, title in zip(axes, ("cpu_ns", "wall_ns"), titles, strict=True):
        for policy in ("block", "overwrite"):
            for i, size in enumerate(sizes):
                cells = sorted((r for r in fan if r["policy"] == policy and r["bytes"] == size
                                and r["writer"].get(f"{metric}_ratio") is not None), key=lambda r: r["readers"])
                if not cells:
                    continue
                one = next((r for r in cells if r["readers"] == 1), None)
                ref = f" (1 reader: {_fmt(one['writer'][f'{metric}_per_msg'])} ns)" if one else ""
                ax.plot([r["readers"] for r in cells], [r["writer"][f"{metric}_ratio"] for r in cells],
                        color=colors[policy], ls=styles[i % len(styles)], marker="o", ms=4, lw=2,
                        label=f"{policy}, {size_label(size)}{ref}")
        if metric == "cpu_ns":
            ax.axhline(3.0, color="grey", lw=1, ls=":", label="goal: 8 readers <= 3x 1 reader")
        ax.axhline(1.0, color="black", lw=0.6)
        ax.set_xticks(counts)
        ax.set_xlabel("reader processes")
        ax.set_title(f"{title}, relative to 1 reader")
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
        ax.set_ylabel("x the 1-reader figure (median of per-round ratios)")
    m = doc["machine"]
    fig.suptitle(f"shmchan bench: Broadcast fan-out, one writer, N readers; {m.get('cpus_usable', '?')} CPUs for "
                 f"{max(counts, default=0) + 1} processes", fontsize=10)
    fig.tight_layout()
    fig.savefig(outdir / FANOUT_PLOT, dpi=110)
    plt.close(fig)


def write_json(doc: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(doc, indent=1) + "\n")
