"""The main job, `shmchan demo`, run as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def _shmchan(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shmchan.cli", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.timeout(180)
def test_demo_streams_verified_frames_and_reports_both_transports() -> None:
    """The demo verifies every frame on both transports and reports frames/s and the ratio as JSON."""
    before = {e for e in os.listdir("/dev/shm") if e.startswith("shmchan.demo-")}
    out = _shmchan("demo", "--frames", "40", "--width", "640", "--height", "480", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["frame_bytes"] == 640 * 480 * 3
    by = {r["transport"]: r for r in doc["results"]}
    assert set(by) == {"shmchan", "multiprocessing.Queue"}
    for r in by.values():
        assert r["verified"] == 40 and r["errors"] == 0 and r["fps"] > 0
    assert doc["speedup"] == pytest.approx(by["shmchan"]["fps"] / by["multiprocessing.Queue"]["fps"])
    assert {e for e in os.listdir("/dev/shm") if e.startswith("shmchan.demo-")} == before


def test_demo_human_output_names_the_ratio() -> None:
    """Without --json the demo prints one line per transport and the ratio."""
    out = _shmchan("demo", "--frames", "10", "--width", "320", "--height", "240")
    assert out.returncode == 0, out.stderr
    assert "shmchan" in out.stdout and "multiprocessing.Queue" in out.stdout
    assert "x the frames/s of multiprocessing.Queue" in out.stdout


def test_demo_rejects_a_bad_option_with_one_clear_line() -> None:
    """A non-positive frame count is refused by argparse with exit status 2."""
    out = _shmchan("demo", "--frames", "0")
    assert out.returncode == 2
    assert "must be positive" in out.stderr


def test_help_lists_the_demo() -> None:
    """`shmchan --help` lists the demo subcommand."""
    out = _shmchan("--help")
    assert out.returncode == 0 and "demo" in out.stdout
