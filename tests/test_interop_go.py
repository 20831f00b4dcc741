"""The Go peer (peers/go) with the C++ and Rust peers, through the contract's commands: frames,
broadcast messages and state-board values checked end to end. (Go with Python: the conformance
kit, tests/test_conformance.py.)"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shmchan.conformance import Peer

ROOT = Path(__file__).resolve().parent.parent
PEERS = {
    "go": ROOT / "peers" / "go" / "build" / "shmchan-peer",
    "c": ROOT / "peers" / "c" / "build" / "shmchan-peer",
    "rust": ROOT / "peers" / "rust" / "target" / "release" / "shmchan-peer",
}
PAIRS = [("go", "c"), ("c", "go"), ("go", "rust"), ("rust", "go")]
SMALL = ["--width", "32", "--height", "24", "--format", "NV12"]


def command(lang: str) -> list[str]:
    exe = PEERS[lang]
    if not exe.exists():
        why = f"the {lang} peer {exe} is not built (see docs/conformance.md)"
        if os.environ.get("CI"):
            pytest.fail(f"{why}; CI must build it")
        pytest.skip(why)
    return [str(exe)]


Start = Callable[..., Peer]


@pytest.fixture
def start() -> Iterator[Start]:
    started: list[Peer] = []

    def go(lang: str, *args: str) -> Peer:
        p = Peer(command(lang), list(args))
        started.append(p)
        return p

    yield go
    for p in started:
        p.close()


@pytest.mark.parametrize(("writer", "reader"), PAIRS)
def test_frames_cross_between_go_and_the_native_peers(start: Start, unique_name: str, writer: str, reader: str) -> None:
    w = start(writer, "produce", unique_name, "--create", "--frames", "3000", "--capacity", "4", *SMALL, "--hold")
    w.expect("ready")
    r = start(reader, "consume", unique_name, *SMALL, "--verify", "crc", "--timeout", "30")
    r.expect("ready")
    wd = w.expect("done")
    rd = r.done()
    w.send("exit")
    assert w.finish()[0] == 0
    assert rd["frames"] == "3000" and rd["errors"] == "0"
    assert rd["crc"] == dict(x.split("=", 1) for x in wd.split()[1:])["crc"]


@pytest.mark.parametrize(("writer", "reader"), PAIRS)
def test_broadcast_between_go_and_the_native_peers(start: Start, unique_name: str, writer: str, reader: str) -> None:
    w = start(writer, "bcast", "writer", unique_name, "--create", "--messages", "5000", "--capacity", "4",
              "--wait-readers", "2", "--hold")
    w.expect("ready")
    rs = [start(lang, "bcast", "reader", unique_name, "--start", "oldest", "--timeout", "30")
          for lang in (reader, writer)]
    for r in rs:
        r.expect("ready")
    crc = dict(x.split("=", 1) for x in w.expect("done").split()[1:])["crc"]
    for r in rs:
        d = r.done()
        assert d["messages"] == "5000" and d["lost"] == "0" and d["errors"] == "0" and d["crc"] == crc
    w.send("exit")
    assert w.finish()[0] == 0


@pytest.mark.parametrize(("writer", "reader"), PAIRS)
def test_state_board_between_go_and_the_native_peers(start: Start, unique_name: str, writer: str, reader: str) -> None:
    w = start(writer, "state", "writer", unique_name, "--create", "--writes", "3000", "--seconds", "0.3", "--go",
              "--hold")
    w.expect("ready")
    r = start(reader, "state", "reader", unique_name, "--timeout", "30")
    r.expect("ready")
    w.send("go")
    version = dict(x.split("=", 1) for x in w.expect("done").split()[1:])["version"]
    d = r.done()
    assert d["errors"] == "0" and d["last"] == version and int(d["reads"]) > 0
    w.send("exit")
    assert w.finish()[0] == 0
