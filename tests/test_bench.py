"""The benchmark harness, `shmchan bench`, run as a user runs it: its outputs, its skip lines, its
argument errors and its cleanup. Nothing here asserts a speed."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from shmchan.bench import _fanout
from shmchan.bench._systems import SYSTEMS, throughput_capacity
from shmchan.bench._touch import Pattern

ROOT = Path(__file__).resolve().parent.parent
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _bench(*args: str, env: dict[str, str] | None = None, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ)
    if env:
        full.update(env)
    return subprocess.run([sys.executable, "-m", "shmchan.cli", "bench", *args], capture_output=True, text=True,
                          timeout=timeout, env=full, cwd=ROOT)


def _leftovers() -> set[str]:
    """Entries a benchmark run could leave behind: channels, iceoryx2 files, shared_memory segments,
    and its temporary directories."""
    shm = {e for e in os.listdir("/dev/shm") if e.startswith(("shmchan.bench-", "iox2sb", "psm_"))}
    tmp = {e for e in os.listdir(tempfile.gettempdir()) if e.startswith("shmchan-bench-")}
    return shm | {f"tmp:{e}" for e in tmp}


# decided once, at collection: importing the peers opens nothing a test's fd-leak check should see
INSTALLED = [k for k in SYSTEMS if SYSTEMS[k].available() is None]


@pytest.mark.timeout(600)
def test_quick_run_writes_json_markdown_and_plots(tmp_path: Path) -> None:
    """A --quick run over two payload sizes measures every installed system in both modes, the floors
    and the C core, and writes results.json (figures, machine, versions), results.md and the plots,
    leaving nothing in /dev/shm."""
    before = _leftovers()
    out = _bench("--quick", "--payloads", "64,64K", "--out", str(tmp_path))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "the producer writes every byte of every message and the consumer reads" in out.stdout
    assert "round trip p50 (us), busy" in out.stdout and "one-way throughput" in out.stdout

    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["settings"]["payloads"] == [64, 65536] and doc["settings"]["quick"] is True
    for key in ("cpu_model", "cpus", "kernel", "python", "loadavg_before"):
        assert key in doc["machine"]
    assert doc["versions"]["shmchan"] and doc["versions"]["numpy"]
    installed = INSTALLED
    assert {s["key"] for s in doc["systems"]} == set(installed)
    assert {s["system"] for s in doc["skipped"]} == set(SYSTEMS) - set(installed)

    res = doc["results"]
    assert not [r for r in res if "error" in r]
    assert all(r["errors"] == 0 for r in res)
    for key in installed:
        modes = ["-"] if key == "none" else ["busy", "blocking"]
        for size in (64, 65536):
            for mode in modes:
                lat = [r for r in res if r["system"] == key and r["kind"] == "latency" and r["mode"] == mode
                       and r["bytes"] == size]
                assert len(lat) == 1, (key, mode, size)
                q = lat[0]["rtt_us"]
                assert 0 < q["p50"] <= q["p99"] <= q["p999"] <= q["max"]
                assert lat[0]["n"] >= 5 and set(lat[0]["cpu_us_per_msg"]) >= {"a"}
            thr = [r for r in res if r["system"] == key and r["kind"] == "throughput" and r["bytes"] == size]
            assert len(thr) == 1 and thr[0]["gbps"] > 0 and thr[0]["msgs_per_s"] > 0
    # the C side, measured in the same run
    assert {"memcpy", "handoff", "cacheline_pingpong", "futex_roundtrip"} <= set(doc["floors"])
    native = [r for r in res if r["system"] == "shmchan-c"]
    assert len(native) == 2 * 3 and all("error" not in r for r in native)
    assert doc["targets"][0]["target"].startswith("8 MiB")
    # the fan-out section, short in --quick: 64 B, 1/2/4/8 readers, both policies
    fan = doc["fanout"]
    assert [(r["policy"], r["readers"]) for r in fan] == [(p, n) for p in ("block", "overwrite") for n in (1, 2, 4, 8)]
    assert not [r for r in fan if "error" in r] and all(r["errors"] == 0 for r in fan)
    assert "fan-out: one writer, N reader processes" in out.stdout

    md = (tmp_path / "results.md").read_text()
    assert "| system |" in md and "## Columns" in md and "every byte" in md
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "skipped the plots" in out.stdout
    else:
        for name in ("latency.png", "throughput.png", "fanout.png"):
            data = (tmp_path / name).read_bytes()
            assert data.startswith(PNG_MAGIC) and len(data) > 10_000
            assert f"]({name})" in md
    assert _leftovers() <= before


def _fake_modules(tmp_path: Path, source: dict[str, str]) -> dict[str, str]:
    for name, text in source.items():
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(text))
    return {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}


def test_a_peer_that_is_not_installed_is_skipped_with_a_line(tmp_path: Path) -> None:
    """Peers whose import fails are skipped with a line saying so; the rest of the run goes on."""
    env = _fake_modules(tmp_path / "", {"zmq": "raise ImportError('no zmq here')",
                                        "iceoryx2": "raise ImportError('no iceoryx2 here')"})
    out = _bench("--systems", "shmchan,zmq,iceoryx2", "--payloads", "64", "--kinds", "latency", "--modes", "busy",
                 "--seconds", "0.02", "--no-native", "--no-plots", "--out", str(tmp_path / "out"), env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "skipped pyzmq ipc://: not installed" in out.stdout
    assert "skipped iceoryx2: not installed" in out.stdout
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    assert {s["system"] for s in doc["skipped"]} == {"zmq", "iceoryx2"}
    assert {r["system"] for r in doc["results"]} == {"shmchan"}
    assert all(t["met"] is None for t in doc["targets"])  # nothing to compare with: said, not guessed


def test_a_failing_peer_is_reported_and_the_run_goes_on(tmp_path: Path) -> None:
    """A peer that raises inside a benchmark process fails its cells (exit status 1, the error in the
    JSON and the markdown); the other systems are still measured."""
    env = _fake_modules(tmp_path, {"faster_fifo": """
        class Queue:
            def __init__(self, max_size_bytes):
                pass
            def put(self, obj, timeout=None):
                raise RuntimeError("boom: this fake queue refuses every message")
            def get(self, timeout=None):
                raise RuntimeError("boom: this fake queue refuses every message")
            get_nowait = get
            def close(self):
                pass
        """})
    before = _leftovers()
    out = _bench("--systems", "faster-fifo,shmchan", "--payloads", "64", "--kinds", "latency", "--modes", "busy",
                 "--seconds", "0.02", "--no-native", "--no-plots", "--out", str(tmp_path / "out"), env=env)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "faster-fifo busy latency 64 B: FAILED" in out.stdout and "boom" in out.stdout
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    by = {r["system"]: r for r in doc["results"]}
    assert "boom" in by["faster-fifo"]["error"]
    assert "error" not in by["shmchan"] and by["shmchan"]["rtt_us"]["p50"] > 0
    assert "### Failures" in (tmp_path / "out" / "results.md").read_text()
    assert _leftovers() <= before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--payloads", "0"], "multiple of 8"),
        (["--payloads", "100"], "multiple of 8"),
        (["--payloads", "2G"], "multiple of 8 bytes from 8 B to 1 GiB"),
        (["--payloads", "lots"], "not a size"),
        (["--systems", "shmchan,carrier-pigeon"], "unknown system carrier-pigeon"),
        (["--modes", "turbo"], "unknown mode turbo"),
        (["--kinds", ""], "unknown kind"),
        (["--cpus", "0"], "two CPU numbers"),
        (["--cpus", "0,4096"], "CPU 4096 is not available"),
        (["--seconds", "-1"], "--seconds must be between"),
        (["--readers", "1,x"], "--readers wants reader counts"),
        (["--readers", "1,33"], "--readers: counts from 0 to 32"),
        (["--policies", "lossy"], "unknown policy lossy"),
        (["--reader-spin", "fast"], "not a spin time"),
        (["--writer-spin", "2"], "a spin time must be between 0 and 1 s"),
        (["--fanout-payloads", "12"], "multiple of 8"),
    ],
)
def test_bad_arguments_are_refused_with_one_clear_line(args: list[str], message: str) -> None:
    """A bad option is refused by argparse (status 2) naming the problem, before anything runs."""
    out = _bench(*args, timeout=60)
    assert out.returncode == 2
    assert message in out.stderr
    assert out.stdout == ""


def test_help_lists_the_bench() -> None:
    out = subprocess.run([sys.executable, "-m", "shmchan.cli", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "bench" in out.stdout


def test_patterns_write_and_check_every_byte() -> None:
    """The payload helpers: what one side writes the other reads back, and one wrong byte anywhere is
    caught, for both the small (copy/compare) and the large (memset/sum) regime."""
    for size in (8, 64, 4096, 4104, 1 << 20):
        pat = Pattern(size)
        buf = bytearray(size)
        mv = memoryview(buf)
        pat.write(mv, 77)
        assert bytes(buf) == bytes([77]) * size
        assert pat.read(mv) == 77
        buf[size // 2 + 1] = 78
        assert pat.read(mv) == -1
        assert pat.read(memoryview(bytearray(size + 8))) == -1
    with pytest.raises(ValueError):
        Pattern(12)


def test_throughput_ring_depth_is_bounded() -> None:
    """Up to 16 MiB in flight, 2 to 64 messages."""
    assert throughput_capacity(64) == 64
    assert throughput_capacity(1 << 20) == 16
    assert throughput_capacity(8 << 20) == 2
    assert throughput_capacity(32 << 20) == 2


# ---- the fan-out section ----


def _live_in_group(pgid: int) -> list[str]:
    """Processes of a process group that are still running (zombies do not count)."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            out.append(f"{pid}: {stat[:80]}")
    return out


def _start_bench(*args: str) -> subprocess.Popen[str]:
    """The harness in a process group of its own, with SIGINT as a terminal would deliver it."""
    return subprocess.Popen([sys.executable, "-m", "shmchan.cli", "bench", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=ROOT, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


@pytest.mark.timeout(300)
def test_fanout_reports_the_writer_cost_per_reader_count(tmp_path: Path) -> None:
    """A tiny fan-out run (64 B, 0/1/2 readers, both policies, two rounds): every cell measured, the
    ratios to 1 reader, every message accounted for (block: every reader got every one; overwrite:
    delivered + lost), nothing wrong read, the targets said not measured without 8 readers, the
    markdown and the plot written, and no process or /dev/shm entry left behind."""
    before = _leftovers()
    p = _start_bench("--kinds", "fanout", "--readers", "0,1,2", "--fanout-payloads", "64", "--seconds", "0.1",
                     "--rounds", "2", "--out", str(tmp_path))
    out, _ = p.communicate(timeout=240)
    assert p.returncode == 0, out
    assert "fan-out: one writer, N reader processes" in out and "x 1 reader" in out
    assert "round trip p50" not in out  # the two-process sections did not run

    doc = json.loads((tmp_path / "results.json").read_text())
    f = doc["settings"]["fanout"]
    assert f["readers"] == [0, 1, 2] and f["policies"] == ["block", "overwrite"] and f["rounds"] == 2
    assert f["payloads"] == [64] and f["reader_spin"] == 0 and f["writer_spin"] == 0
    assert doc["results"] == [] and "fanout_methodology" in doc
    fan = doc["fanout"]
    assert [(r["policy"], r["readers"]) for r in fan] == [(p, n) for p in ("block", "overwrite") for n in (0, 1, 2)]
    for r in fan:
        assert "error" not in r, r
        w = r["writer"]
        assert r["rounds"] == 2 and w["msgs_measured"] > 0 and r["sent"] >= w["msgs_measured"]
        assert w["cpu_ns_per_msg"] > 0 and w["wall_ns_per_msg"] > 0 and w["msgs_per_s"] > 0
        assert len(w["cpu_ns_ratio_per_round"]) == 2 and w["cpu_ns_ratio"] > 0 and w["wall_ns_ratio"] > 0
        if r["readers"] == 1:
            assert w["cpu_ns_ratio"] == pytest.approx(1.0) and w["wall_ns_ratio"] == pytest.approx(1.0)
        assert r["expected"] == r["sent"] * r["readers"] and r["errors"] == 0
        if r["readers"] == 0:
            assert r["delivered"] == r["lost"] == 0
        elif r["policy"] == "block":
            assert r["delivered"] == r["expected"] and r["lost"] == r["torn"] == r["unaccounted"] == 0
        else:
            # every message either reached a reader intact or is in its Reader.lost
            assert 0 < r["delivered"] <= r["expected"] and r["unaccounted"] == 0 and r["torn"] <= r["lost"]
    # without 8 readers the goal is not measured; the two-process targets are not listed at all
    assert [t["target"] for t in doc["targets"]] == [
        "fan-out block 64 B: writer CPU/msg, 8 readers <= 3x 1 reader",
        "fan-out overwrite 64 B: writer CPU/msg, 8 readers <= 3x 1 reader"]
    assert all(t["met"] is None for t in doc["targets"])

    md = (tmp_path / "results.md").read_text()
    assert "## Fan-out details" in md and "### The writer" in md and "### The readers" in md
    assert "Two processes (spawned)" not in md
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "skipped the plots" in out
    else:
        assert (tmp_path / "fanout.png").read_bytes().startswith(PNG_MAGIC) and "](fanout.png)" in md
        assert not (tmp_path / "latency.png").exists()
    time.sleep(0.5)
    assert _live_in_group(p.pid) == []
    assert _leftovers() <= before


@pytest.mark.timeout(120)
def test_fanout_interrupted_leaves_nothing_behind(tmp_path: Path) -> None:
    """Ctrl-C in the middle of a fan-out cell: the harness says so and exits 130, its reader and
    writer processes end, and its channels are gone from /dev/shm."""
    before = _leftovers()
    p = _start_bench("--kinds", "fanout", "--readers", "2", "--policies", "block", "--fanout-payloads", "64",
                     "--seconds", "30", "--rounds", "1", "--no-plots", "--out", str(tmp_path))
    mine = f"shmchan.bench-{p.pid}-fan-"
    deadline = time.monotonic() + 60
    while not any(e.startswith(mine) for e in os.listdir("/dev/shm")):
        assert p.poll() is None and time.monotonic() < deadline, "the fan-out cell never started"
        time.sleep(0.05)
    time.sleep(0.3)
    os.killpg(p.pid, signal.SIGINT)
    out, _ = p.communicate(timeout=60)
    assert p.returncode == 130, out
    assert "interrupted" in out
    end = time.monotonic() + 10
    while _live_in_group(p.pid) and time.monotonic() < end:
        time.sleep(0.1)
    assert _live_in_group(p.pid) == []
    assert not [e for e in os.listdir("/dev/shm") if e.startswith(mine)]
    assert _leftovers() <= before


def _part(policy: str, readers: int, rnd: int, cpu: float, wall: float) -> dict[str, Any]:
    n = 1000
    return {"policy": policy, "bytes": 64, "readers": readers, "round": rnd, "full_waits": 0, "empty_waits": 0,
            "writer": {"n": n, "sent": n + 10, "cpu_ns": cpu * n, "wall_ns": wall * n, "user_ns": cpu * n,
                       "sys_ns": 0, "vcsw": 0, "ivcsw": 0},
            "readers_reports": [{"delivered": n + 10, "lost": 0, "torn": 0, "lost_in_messages": 0, "errors": 0,
                                 "cpu_ns": 5 * n, "wall_ns": 9 * n} for _ in range(readers)]}


def test_fanout_ratios_are_medians_of_same_round_ratios() -> None:
    """A cell's ratio to 1 reader pairs it with the 1-reader cell of the same round (a slow drift of
    the machine between rounds cancels out), then takes the median over the rounds."""
    parts = [_part("block", 1, 0, 1000, 2000), _part("block", 8, 0, 2000, 9000),
             _part("block", 1, 1, 2000, 2000), _part("block", 8, 1, 5000, 9000),
             _part("block", 1, 2, 1000, 2000), _part("block", 8, 2, 2500, 9000)]
    recs = {r["readers"]: r for r in _fanout.combine(parts, [1, 8])}
    w8 = recs[8]["writer"]
    assert w8["cpu_ns_ratio_per_round"] == [2.0, 2.5, 2.5] and w8["cpu_ns_ratio"] == 2.5
    assert w8["cpu_ns_per_msg"] == 2500 and recs[1]["writer"]["cpu_ns_per_msg"] == 1000
    assert w8["wall_ns_ratio"] == 4.5
    assert recs[8]["expected"] == recs[8]["delivered"] == 3 * 1010 * 8 and recs[8]["unaccounted"] == 0


def test_fanout_plan_alternates_the_reader_order() -> None:
    """Each round measures every count once, in the other order than the round before."""
    rounds = _fanout.plan(["block"], [64], [8, 1, 2], 3, 0.1, 0.02, "x", 0.0, 0.0)
    assert [[c.readers for c in r] for r in rounds] == [[1, 2, 8], [8, 2, 1], [1, 2, 8]]
    assert len({c.name for r in rounds for c in r}) == 9 and all(c.places == 8 for r in rounds for c in r)


def test_dataplane_section_reports_every_target_as_a_ratio_of_the_same_run(tmp_path: Path) -> None:
    """--kinds dataplane: round trips against iceoryx2 (when installed) and Pipe, one-way against Pipe (single
    and batched), views against np.frombuffer and the memory of small slots; every figure has its ratio."""
    before = _leftovers()
    out = _bench("--kinds", "dataplane", "--quick", "--seconds", "0.3", "--no-plots", "--out", str(tmp_path))
    assert out.returncode == 0, out.stdout + out.stderr
    doc = json.loads((tmp_path / "results.json").read_text())
    dp = doc["dataplane"]
    assert set(dp["tput"]) == {"shmchan", "shmchan-batch", "pipe"}
    assert {"shmchan", "pipe"} <= set(dp["rtt"])
    have_iceoryx2 = importlib.util.find_spec("iceoryx2") is not None
    if have_iceoryx2:  # the test extra installs it: then it must be measured, with its ratio
        assert "iceoryx2" in dp["rtt"]
    for part in ("rtt", "tput"):
        for key, r in dp[part].items():
            assert "error" not in r and r["errors"] == 0, (part, key, r)
    assert dp["rtt"]["shmchan"]["p50_us"] <= dp["rtt"]["shmchan"]["p99_us"]
    assert dp["memory"]["object_bytes"] == 77824
    names = [t["target"] for t in doc["targets"]]
    assert "data plane: 64 B one-way >= 2.5x multiprocessing.Pipe" in names
    assert "memory: 1024 slots of 64 B <= 1.25x their payload + two pages" in names
    for t in doc["targets"]:
        if t["target"].startswith(("data plane", "memory")) and (have_iceoryx2 or "iceoryx2" not in t["target"]):
            assert t["ratio"] is not None and t["ratio"] > 0, t
    assert "## Data plane" in (tmp_path / "results.md").read_text()
    assert _leftovers() <= before
