"""The soak run (python -m shmchan.soak): a short run with kills finds nothing; its checker catches injected faults."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SUMMARY = re.compile(
    r"soak: [\d.]+ s, (\d+) channels, (\d+) messages \((\d+) msg/s\), lost (\d+), duplicated (\d+), "
    r"torn (\d+), redelivered (\d+), kills: (\d+) writers, (\d+) readers"
)


def _soak(*args: str) -> tuple[int, re.Match[str], str]:
    before = {e for e in os.listdir("/dev/shm") if e.startswith("shmchan.soak-")}
    res = subprocess.run([sys.executable, "-m", "shmchan.soak", *args], capture_output=True, text=True,
                         timeout=120, cwd=ROOT)
    after = {e for e in os.listdir("/dev/shm") if e.startswith("shmchan.soak-")}
    assert after <= before, f"the soak left {sorted(after - before)} in /dev/shm"
    m = SUMMARY.search(res.stdout)
    assert m, f"no summary line; exit {res.returncode}\n{res.stdout}\n{res.stderr}"
    return res.returncode, m, res.stderr


def test_short_soak_with_kills_loses_nothing() -> None:
    """Four seconds, two channels, a kill every 0.3 s: messages flow; none lost, duplicated or torn; exit 0."""
    rc, m, err = _soak("--seconds", "4", "--channels", "2", "--kill-interval", "0.3", "--seed", "7")
    assert rc == 0, err
    assert int(m[2]) > 1000
    assert (int(m[4]), int(m[5]), int(m[6])) == (0, 0, 0)
    assert int(m[8]) + int(m[9]) > 0


@pytest.mark.parametrize(("inject", "group"), [("lose", 4), ("duplicate", 5), ("torn", 6)])
def test_soak_checker_catches_injected_faults(inject: str, group: int) -> None:
    """A reader that drops, repeats or corrupts a message on purpose makes the soak count it and exit 1."""
    rc, m, _ = _soak("--seconds", "2", "--channels", "1", "--kill-interval", "1000", "--inject", inject)
    assert rc == 1
    assert int(m[group]) >= 1
