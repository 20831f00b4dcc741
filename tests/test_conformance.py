"""The conformance kit (python -m shmchan.conformance) against the Go peer, and against peers that
break the contract on purpose: the kit must tell them apart."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from shmchan.conformance import RULES, SCENARIOS, run

ROOT = Path(__file__).resolve().parent.parent
PEERS = {
    "go": ROOT / "peers" / "go" / "build" / "shmchan-peer",
    "c": ROOT / "peers" / "c" / "build" / "shmchan-peer",
    "rust": ROOT / "peers" / "rust" / "target" / "release" / "shmchan-peer",
}


def peer(lang: str) -> str:
    exe = PEERS[lang]
    if not exe.exists():
        why = f"the {lang} peer {exe} is not built (see docs/conformance.md)"
        if os.environ.get("CI"):
            pytest.fail(f"{why}; CI must build it")
        pytest.skip(why)
    return str(exe)


def test_every_rule_of_the_spec_is_checked_by_some_scenario() -> None:
    """Each numbered rule of docs/protocol.md is cited by a scenario, except the ones the kit cannot
    observe from outside a peer, which docs/conformance.md lists."""
    text = (ROOT / "docs" / "protocol.md").read_text()
    assert [f"**{r}**" in text for r in RULES] == [True] * len(RULES)
    assert f"**R{len(RULES) + 1}**" not in text
    cited = {r for _, _, rules, _ in SCENARIOS for r in rules}
    # the contract has no role that aborts a reservation (R26) or holds every slot (R27); each
    # peer's own tests cover them
    unobservable = {"R26", "R27"}
    assert set(RULES) - cited == unobservable


def test_go_peer_passes_the_quick_kit(unique_name: str) -> None:
    report = run([peer("go")], quick=True, prefix=unique_name + ".")
    failed = [f"{o.name}: {o.detail}" for o in report.outcomes if not o.passed]
    assert not failed
    assert len(report.outcomes) == len(SCENARIOS)
    verdicts = report.verdicts()
    assert verdicts["R29"] == "pass" and verdicts["R34"] == "pass" and verdicts["R26"] == "not covered"


def _wrapper(tmp_path: Path, body: str) -> str:
    """A peer command: a shell script around the Go peer."""
    path = tmp_path / "peer.sh"
    path.write_text(f"#!/bin/sh\nPEER={peer('go')}\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_kit_fails_a_peer_that_accepts_every_header(tmp_path: Path, unique_name: str) -> None:
    lying = _wrapper(tmp_path, 'if [ "$1" = open ]; then echo "ok kind=spsc"; exit 0; fi\nexec "$PEER" "$@"')
    report = run([lying], quick=True, only="mutated-headers", prefix=unique_name + ".")
    assert not report.passed
    assert "verdicts differ" in report.outcomes[0].detail
    assert report.verdicts()["R9"] == "FAIL"


def test_kit_fails_a_consumer_that_loses_the_last_message(tmp_path: Path, unique_name: str) -> None:
    """A consumer that stops one frame early (as a reader that believes the end of the stream
    before loading head again would, R29) fails the SPSC scenarios."""
    short = _wrapper(tmp_path, 'if [ "$1" = consume ]; then exec "$PEER" "$@" --frames 4; fi\nexec "$PEER" "$@"')
    report = run([short], quick=True, only="end-of-stream", prefix=unique_name + ".")
    assert not report.passed
    assert report.verdicts()["R29"] == "FAIL"


def test_kit_command_line_lists_scenarios_and_exits_nonzero_on_failure(unique_name: str) -> None:
    out = subprocess.run([sys.executable, "-m", "shmchan.conformance", "--list"], capture_output=True, text=True,
                         check=True).stdout
    assert all(name in out for name, *_ in SCENARIOS)
    r = subprocess.run([sys.executable, "-m", "shmchan.conformance", "--quick", "--only", "end-of-stream", "--",
                        "false"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert "FAIL  end-of-stream" in r.stdout and "0 passed, 1 failed" in r.stdout
