"""Every Python example in the README runs as written: each as a script of its own, in a fresh
interpreter, with nothing deleted or cleared before its channels close (only the channel names are
made unique). The examples that talk to native peers run against the built C++/Rust peers."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
RUST_BIN = ROOT / "peers" / "rust" / "target" / "release"

#: the first line of each example -> the channel names it uses (replaced by unique ones)
STANDALONE = {
    "import numpy as np, shmchan": ["cam0"],
    "import os, tempfile": [],
    "import shmchan\n\n# media server": ["cam0"],
    "import numpy as np\nimport shmchan\n\npose": ["robot.pose"],
    "import asyncio": ["cam0.live", "robot.mode"],
    "import threading\nimport av, shmchan": ["cam0"],
    "import shmchan\nfrom shmchan import bridge": ["cam0-remote", "cam0"],
}
WITH_NATIVE_PEERS = {"# producer.py": ["cam0"], "import shmchan\n\nwith shmchan.Channel.open(\"cam1\"": ["cam1"]}


def examples() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def _kind(code: str) -> tuple[str, list[str]]:
    for table, kind in ((STANDALONE, "standalone"), (WITH_NATIVE_PEERS, "native")):
        for head, names in table.items():
            if code.startswith(head):
                return kind, names
    raise AssertionError(f"a README example this test does not know how to run:\n{code[:200]}")


def _unique(code: str, names: list[str], prefix: str) -> tuple[str, list[str]]:
    # longest first: "cam0.live" before "cam0"
    mine = []
    for i, name in enumerate(sorted(names, key=len, reverse=True)):
        new = f"{prefix}-{i}"
        assert f'"{name}"' in code, name
        code = code.replace(f'"{name}"', f'"{new}"').replace(f'"shmchan/{name}"', f'"shmchan/{new}"')
        mine.append(new)
    return code, mine


def _run(code: str, tmp_path: Path, *, stdin: int | None = None) -> subprocess.Popen[bytes]:
    script = tmp_path / "example.py"
    script.write_text(code)
    return subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, stdin=stdin, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _leftovers(names: list[str]) -> list[str]:
    return [e for e in os.listdir("/dev/shm") if any(e == f"shmchan.{n}" for n in names)]


def test_every_example_is_known() -> None:
    """A new example without a way to run it here fails this test (so none goes untested)."""
    found = examples()
    assert len(found) == len(STANDALONE) + len(WITH_NATIVE_PEERS)
    for code in found:
        _kind(code)


@pytest.mark.parametrize("index", range(len(STANDALONE)))
def test_standalone_example_runs_as_written(index: int, unique_name: str, tmp_path: Path) -> None:
    code = [c for c in examples() if _kind(c)[0] == "standalone"][index]
    code, names = _unique(code, _kind(code)[1], unique_name)
    if "import av" in code:  # the extras these examples need (the test extra installs both)
        pytest.importorskip("av")
    if "from shmchan import bridge" in code:
        pytest.importorskip("zenoh")
    if '"input.mp4"' in code:  # the media example reads a video: a short real H.264 file
        from shmchan.media.pipeline import make_test_video

        make_test_video(str(tmp_path / "input.mp4"), frames=24, width=320, height=240)
    if "tcp/127.0.0.1:7447" in code:  # the bridge example: a free loopback port, not Zenoh's default
        code = code.replace("tcp/127.0.0.1:7447", f"tcp/127.0.0.1:{_free_port()}")
    p = _run(code, tmp_path)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 0, err.decode()
    assert b"Traceback" not in err and b"Exception ignored" not in err, err.decode()
    assert not _leftovers(names)


def _native(exe: str) -> str:
    path = RUST_BIN / exe
    if not path.exists():
        why = f"the rust peer {path} is not built (cargo build --release in peers/rust)"
        if os.environ.get("CI"):
            pytest.fail(f"{why}; CI must build it")
        pytest.skip(why)
    return str(path)


def _line(p: subprocess.Popen[bytes], want: str, timeout: float = 30) -> str:
    assert p.stdout is not None
    end = time.monotonic() + timeout
    buf = b""
    os.set_blocking(p.stdout.fileno(), False)
    while time.monotonic() < end:
        chunk = p.stdout.read()
        if chunk:
            buf += chunk
            for line in buf.decode(errors="replace").splitlines():
                if want in line:
                    return line
        elif p.poll() is not None:
            break
        else:
            time.sleep(0.01)
    raise AssertionError(f"no line with {want!r} from {p.args!r}; got {buf!r}")


def test_python_producer_to_rust_consumer_runs_as_written(unique_name: str, tmp_path: Path) -> None:
    consumer_exe = _native("shmchan-consumer")
    code = next(c for c in examples() if c.startswith("# producer.py"))
    code, (name,) = _unique(code, ["cam0"], unique_name)
    prod = _run(code, tmp_path, stdin=subprocess.PIPE)
    assert prod.stdin is not None
    try:
        _line(prod, "then press Enter")
        cons = subprocess.Popen([consumer_exe, name, "--verify", "none"], cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        try:
            _line(cons, "ready")
            prod.stdin.write(b"\n")
            prod.stdin.flush()
            done = _line(cons, "done", timeout=60)
            assert "frames=100" in done and "errors=0" in done, done
        finally:
            cons.wait(30)
        _line(prod, "press Enter when the consumer is done")
        prod.stdin.write(b"\n")
        prod.stdin.close()
        assert prod.wait(30) == 0
    finally:
        if prod.poll() is None:
            prod.kill()
    assert not _leftovers([name])


def test_rust_producer_to_python_consumer_runs_as_written(unique_name: str, tmp_path: Path) -> None:
    producer_exe = _native("shmchan-producer")
    code = next(c for c in examples() if c.startswith('import shmchan\n\nwith shmchan.Channel.open("cam1"'))
    code, (name,) = _unique(code, ["cam1"], unique_name)
    prod = subprocess.Popen([producer_exe, name, "--create", "--frames", "100", "--hold"], cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert prod.stdin is not None
    try:
        _line(prod, "ready")
        cons = _run(code, tmp_path)
        out, err = cons.communicate(timeout=60)
        assert cons.returncode == 0, err.decode()
        lines = out.decode().splitlines()
        assert lines[0].startswith("shmchan.fb.Frame"), lines[:2]
        assert len(lines) == 101, lines[-3:]
        assert lines[-1].startswith("99 "), lines[-1]
    finally:
        prod.stdin.write(b"exit\n")
        prod.stdin.close()
        prod.wait(30)
    assert not _leftovers([name])
