#!/usr/bin/env python3
"""Frames/s of a Rust (and C++) consumer versus a Python consumer, fed by the same Python producer.

    python peers/bench_frames.py [--rounds 5] [--frames 300] [--width 1920] [--height 1080] [--json]

Each round runs the Python producer (tests/interop_peer.py, creating a 1080p RGB24 channel of 8
slots and writing every pixel of every frame in place) once per consumer, in an order that rotates
between rounds; every consumer decodes each Frame in place and checks one pattern byte per 4 KiB
page of the pixels ("stamp"). A consumer's frames/s is (frames - 1) / (last receive - first
receive). Prints the median of each consumer and the Rust/Python ratio (the issue's target: >= 0.8).
Build the peers first: `make -C peers/c` and `cargo build --release --manifest-path peers/rust/Cargo.toml`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parent.parent
PY_PEER = [sys.executable, str(ROOT / "tests" / "interop_peer.py")]
CONSUMERS = {
    "rust": [str(ROOT / "peers/rust/target/release/shmchan-consumer")],
    "python": [*PY_PEER, "consumer"],
    "c++": [str(ROOT / "peers/c/build/shmchan-consumer")],
}


def run(name: str, consumer: list[str], frames: int, geometry: list[str]) -> float:
    prod = subprocess.Popen([*PY_PEER, "producer", name, "--create", "--hold", "--frames", str(frames),
                             "--verify", "none", "--timeout", "30", *geometry],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert prod.stdout is not None and prod.stdin is not None
        if prod.stdout.readline().strip() != "ready":
            raise RuntimeError("the producer did not start")
        out = subprocess.run([*consumer, name, "--verify", "stamp", "--timeout", "30", *geometry],
                             capture_output=True, text=True, timeout=120)
        done = [ln for ln in out.stdout.splitlines() if ln.startswith("done")]
        if out.returncode != 0 or not done:
            raise RuntimeError(f"{consumer[0]} failed ({out.returncode}): {out.stdout}{out.stderr}")
        fields = dict(w.split("=", 1) for w in done[0].split()[1:])
        if int(fields["frames"]) != frames or fields.get("errors", "0") != "0":
            raise RuntimeError(f"bad stream: {done[0]}")
        prod.stdin.write("exit\n")
        prod.stdin.flush()
        prod.wait(30)
        return float(fields["fps"])
    finally:
        if prod.poll() is None:
            prod.kill()
            prod.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--width", type=int, default=1920)
    ap.add_argument("--height", type=int, default=1080)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    names = [c for c in CONSUMERS if c == "python" or Path(CONSUMERS[c][0]).exists()]
    if "rust" not in names:
        sys.exit("build the Rust peer first: cargo build --release --manifest-path peers/rust/Cargo.toml")
    geometry = ["--width", str(a.width), "--height", str(a.height), "--format", "RGB24", "--capacity", "8"]
    fps: dict[str, list[float]] = {c: [] for c in names}
    for i in range(a.rounds):
        order = names[i % len(names):] + names[: i % len(names)]
        for c in order:
            fps[c].append(run(f"bench-{os.getpid()}-{i}-{c.strip('+')}", CONSUMERS[c], a.frames, geometry))
    med = {c: median(v) for c, v in fps.items()}
    ratio = med["rust"] / med["python"]
    if a.json:
        print(json.dumps({"runs": fps, "median": med, "rust_over_python": ratio}))
    else:
        for c in names:
            runs = " ".join(f"{x:.0f}" for x in fps[c])
            print(f"  {c:<7} consumer  median {med[c]:8.1f} frames/s   runs: {runs}")
        print(f"  Rust/Python = {ratio:.2f} (target >= 0.80)")
    sys.exit(0 if ratio >= 0.8 else 1)


if __name__ == "__main__":
    main()
