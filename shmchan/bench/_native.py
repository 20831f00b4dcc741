"""The C side of the benchmark: floors (memcpy, cache-line ping-pong, futex round trip) and the
shmchan core alone (C writer, C reader), compiled with the system C compiler at run time."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CDIR = HERE / "c"
CFLAGS = ["-std=c11", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Wno-unused-parameter"]
CORE_OPT = "-O2"  # the core as the Python extension builds it
BENCH_OPT = "-O3"  # the benchmark's own loops (vectorised payload reads)


def core_sources() -> Path | None:
    """The C core's directory: shipped in the package (``shmchan/bench/csrc``, put there by the
    build) or, in a source checkout, the repository's ``csrc/``."""
    for cand in (HERE / "csrc", HERE.parent.parent / "csrc"):
        if (cand / "include" / "shmchan.h").is_file() and (cand / "sources.list").is_file():
            return cand
    return None


def core_files(src: Path) -> list[str]:
    """The core's files (relative to ``src``), from ``sources.list``: the one list every build reads."""
    text = (src / "sources.list").read_text()
    return [word for line in text.splitlines() for word in line.split("#", 1)[0].split()]


def compiler() -> list[str] | None:
    cc = shlex.split(os.environ.get("CC", "cc"))
    return cc if cc and shutil.which(cc[0]) else None


def cc_version(cc: list[str]) -> str:
    try:
        out = subprocess.run([*cc, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.splitlines()[0] if out else "unknown"


class BuildError(Exception):
    pass


def build(outdir: Path) -> tuple[Path, Path | None, str]:
    """Compile the floors and (if the core's sources are here) the native benchmark into ``outdir``.

    Returns (floors, native or None, a note). Raises BuildError when there is no compiler or the
    floors do not compile.
    """
    cc = compiler()
    if cc is None:
        raise BuildError("no C compiler (cc, or $CC) on PATH")
    outdir.mkdir(parents=True, exist_ok=True)
    floors = outdir / "floors"
    _cc(cc, [*CFLAGS, BENCH_OPT, "-I", str(CDIR), str(CDIR / "floors.c"), "-o", str(floors)])
    src = core_sources()
    if src is None:
        return floors, None, "the C core's sources are not in this installation"
    objs = []
    for c in (src / name for name in core_files(src) if name.endswith(".c")):
        obj = outdir / (c.stem + ".o")
        _cc(cc, [*CFLAGS, CORE_OPT, "-I", str(src / "include"), "-I", str(src), "-c", str(c), "-o", str(obj)])
        objs.append(str(obj))
    native = outdir / "native"
    _cc(cc, [*CFLAGS, BENCH_OPT, "-I", str(CDIR), "-I", str(src / "include"), str(CDIR / "native.c"), *objs,
             "-o", str(native), "-lpthread"])
    return floors, native, f"core from {src} ({CORE_OPT}), benchmark loops {BENCH_OPT}"


def _cc(cc: list[str], args: list[str]) -> None:
    try:
        p = subprocess.run([*cc, *args], capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.SubprocessError) as exc:
        raise BuildError(f"{cc[0]} failed to run: {exc}") from exc
    if p.returncode:
        raise BuildError(f"{' '.join(cc)} failed:\n{p.stderr.strip()[-2000:]}")


def run_json(cmd: list[str], timeout: float) -> list[dict[str, Any]]:
    """Run a C benchmark program; return the JSON objects it printed (one per line)."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"{Path(cmd[0]).name} did not finish within {timeout:.0f} s") from exc
    if p.returncode:
        raise RuntimeError(f"{Path(cmd[0]).name} exited with status {p.returncode}: {p.stderr.strip()[-1000:]}")
    return [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
