"""The fuzz harnesses' committed seeds and regression inputs replay cleanly under ASan+UBSan
(built here with the C compiler and csrc/fuzz/replay.c, so no clang or libFuzzer is needed)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

CSRC = Path(__file__).resolve().parent.parent / "csrc"
HARNESSES = ["fuzz_validate_header", "fuzz_ring_ops"]


@pytest.fixture(scope="module")
def replayers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each harness linked with the core sources and the replay main, under ASan+UBSan."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    out = tmp_path_factory.mktemp("fuzz-replay")
    listed = (CSRC / "sources.list").read_text().splitlines()
    core = [str(CSRC / w) for line in listed for w in line.split("#", 1)[0].split() if w.endswith(".c")]
    built = {}
    for h in HARNESSES:
        exe = out / h
        subprocess.run(
            [cc, "-std=c11", "-D_GNU_SOURCE", "-O1", "-g", "-fsanitize=address,undefined",
             "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", f"-I{CSRC / 'include'}", f"-I{CSRC}",
             str(CSRC / "fuzz" / "replay.c"), str(CSRC / "fuzz" / f"{h}.c"), *core, "-o", str(exe)],
            check=True, capture_output=True, timeout=300,
        )
        built[h] = exe
    return built


def _inputs(h: str) -> list[Path]:
    files = []
    for kind in ("corpus", "regressions"):
        d = CSRC / "fuzz" / kind / h
        if d.is_dir():
            files += sorted(p for p in d.iterdir() if p.is_file() and not p.name.startswith("."))
    return files


@pytest.mark.parametrize("harness", HARNESSES)
def test_fuzz_seeds_and_regressions_replay_cleanly(replayers: dict[str, Path], harness: str) -> None:
    """Every committed seed and regression input of the harness runs without a failed check or sanitizer report."""
    files = _inputs(harness)
    assert files, f"no seed corpus for {harness}"
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0", UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1")
    res = subprocess.run([str(replayers[harness]), *map(str, files)], capture_output=True, text=True,
                         timeout=120, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"replayed {len(files)} input(s)" in res.stdout
    leftovers = [e for e in os.listdir("/dev/shm") if e.startswith("shmchan.fuzz-ring-")
                 and e.rsplit("-", 1)[-1].isdigit() and not os.path.exists(f"/proc/{e.rsplit('-', 1)[-1]}")]
    assert not leftovers, f"the harness left {leftovers}"


def test_ring_harness_catches_a_wrong_model(replayers: dict[str, Path], tmp_path: Path) -> None:
    """The ring harness is not vacuous: a reader that asks for more than a slot is told EMSGSIZE, as modelled."""
    # op 3 = send 10 bytes, op 7 = recv into a 9-byte buffer (-EMSGSIZE), then recv into 64 bytes
    inp = tmp_path / "emsgsize"
    inp.write_bytes(bytes([3, 10, 7, 9, 7, 64, 4]))
    res = subprocess.run([str(replayers["fuzz_ring_ops"]), str(inp)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
