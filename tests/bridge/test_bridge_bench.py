"""``shmchan bench --kinds bridge``, run as a user runs it. Nothing here asserts a speed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytest.importorskip("zenoh")
pytest.importorskip("zmq")


@pytest.mark.timeout(300)
def test_bridge_section_measures_three_systems_and_reports_the_targets(tmp_path: Path) -> None:
    """Every system carries every message intact in both modes; results.json has the figures and the
    two targets as ratios, results.md and the terminal the table; nothing is left in /dev/shm."""
    before = {e for e in os.listdir("/dev/shm") if e.startswith("shmchan.bench-")}
    out = subprocess.run([sys.executable, "-m", "shmchan.cli", "bench", "--kinds", "bridge", "--quick", "--payloads",
                          "64", "--seconds", "0.3", "--no-plots", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=280, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    doc = json.loads((tmp_path / "results.json").read_text())
    cells = {(r["system"], r["mode"]): r for r in doc["bridge"]}
    assert set(cells) == {(s, m) for s in ("bridge", "zenoh", "zmq") for m in ("rate", "latency")}
    for r in cells.values():
        assert "error" not in r and r["errors"] == 0, r
    assert cells[("bridge", "rate")]["msgs_per_s"] > 0
    assert set(cells[("bridge", "rate")]["cpu_us_per_msg_by_process"]) == {"producer", "exporter", "importer",
                                                                          "consumer"}
    lat = cells[("bridge", "latency")]["latency_us"]
    assert 0 < lat["p50"] <= lat["p99"] <= lat["max"]
    targets = {t["target"]: t for t in doc["targets"]}
    cost = targets["bridge 64 B: time per message <= 1.25x plain Zenoh's"]
    assert cost["ratio"] == pytest.approx(cost["value"] / cost["reference"])
    assert targets["bridge 1 MiB: message rate > pyzmq tcp://127.0.0.1"]["met"] is None  # 1 MiB not run
    assert doc["bridge_network"].startswith(("a private network namespace", "the host's loopback"))
    assert "shmchan bridge" in out.stdout and "Zenoh pub/sub (Python)" in out.stdout
    assert "Bridged over Zenoh" in (tmp_path / "results.md").read_text()
    after = {e for e in os.listdir("/dev/shm") if e.startswith("shmchan.bench-")}
    assert after <= before
