"""The benchmark harness, `shmchan bench`, run as a user runs it: its outputs, its skip lines, its
argument errors and its cleanup. Nothing here asserts a speed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

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

    md = (tmp_path / "results.md").read_text()
    assert "| system |" in md and "## Columns" in md and "every byte" in md
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "skipped the plots" in out.stdout
    else:
        for name in ("latency.png", "throughput.png"):
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
