"""Cross-process bridge tests: producer -> channel -> exporter -> Zenoh -> importer -> channel -> consumer.

Every process is real; the two bridges are ``shmchan bridge`` processes in the private test network
(see conftest.py); producers and consumers are tests/bridge/peer.py (or the native C++ peers).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import shmchan
from shmchan.bridge import bridges_of

ROOT = Path(__file__).resolve().parents[2]
CPP = ROOT / "peers" / "c" / "build"


def counters(line: str) -> dict[str, int]:
    """``stopped NAME: messages=3 lost=0 ...`` -> {"messages": 3, "lost": 0, ...}"""
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}


def shmchan_json(*args: str) -> Any:
    out = subprocess.run([sys.executable, "-m", "shmchan.cli", *args, "--json"], capture_output=True, text=True,
                         timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def start_pair(procs: Any, zenoh_net: Any, src: str, dst: str, key: str, *import_args: str) -> tuple[Any, Any]:
    """An exporter of ``src`` and an importer into ``dst``, connected; returns both once the
    importer has made (or opened) its channel."""
    port = zenoh_net.port()
    ex = procs.bridge("export", src, "--key", key, *zenoh_net.listen(port))
    ex.expect("exporting")
    im = procs.bridge("import", key, dst, *zenoh_net.connect(port), *import_args)
    im.expect("imported")
    return ex, im


def finish(procs_started: list[Any]) -> dict[str, dict[str, int]]:
    """SIGTERM each bridge (a clean stop, exit status 0); their final counters by role."""
    out = {}
    for p in procs_started:
        p.signal(signal.SIGTERM)
    for p in procs_started:
        line = p.expect("stopped", 30)
        assert p.wait() == 0, p.stderr
        out[p.label.split()[-1]] = counters(line)
    return out


@pytest.mark.parametrize(("what", "count", "slot", "capacity"), [
    ("small", 100_000, 128, 1024),
    ("large", 500, 1 << 20, 8),
])
def test_reliable_stream_arrives_whole_in_order_and_ends(procs: Any, zenoh_net: Any, unique_name: str,
                                                         what: str, count: int, slot: int, capacity: int) -> None:
    """Every message of a lossless SPSC stream arrives once, in order, intact; the producer's close
    ends the remote consumer's stream; ls and stat show both bridges with their counters."""
    src, dst, key = f"{unique_name}-a", f"{unique_name}-b", f"test/{unique_name}"
    prod = procs.peer("produce", src, "--slot", slot, "--capacity", capacity, "--count", count)
    prod.expect("ready")
    ex, im = start_pair(procs, zenoh_net, src, dst, key, "--remove-on-exit")
    cons = procs.peer("consume", dst, "--slot", slot, "--timeout", 240)
    cons.expect("ready")
    prod.send("go")
    sent = prod.report(240)
    rep = cons.report(240)
    assert sent["sent"] == count
    assert rep["received"] == count and rep["first"] == 0 and rep["last"] == count - 1, rep
    assert rep["corrupt"] == rep["out_of_order"] == rep["gaps"] == 0, rep
    assert "timeout" not in rep, rep

    # shmchan stat / ls see a bridged channel as such, from its status boards
    a = shmchan_json("stat", src)["bridges"]
    b = shmchan_json("stat", dst)["bridges"]
    assert [x["role"] for x in a] == ["export"] and [x["role"] for x in b] == ["import"]
    assert a[0]["key"] == b[0]["key"] == key
    assert a[0]["state"] == b[0]["state"] == "running" and a[0]["delivery"] == "reliable"
    assert a[0]["pid"] == ex.p.pid
    assert a[0]["connected"] and b[0]["connected"]
    ls = subprocess.run([sys.executable, "-m", "shmchan.cli", "ls"], capture_output=True, text=True, cwd=ROOT)
    assert f"bridged out {key}" in ls.stdout and f"bridged in {key}" in ls.stdout
    stat = subprocess.run([sys.executable, "-m", "shmchan.cli", "stat", dst], capture_output=True, text=True,
                          cwd=ROOT)
    assert "bridge in (imported)" in stat.stdout and key in stat.stdout

    final = finish([im, ex])
    assert final["import"]["messages"] == count and final["import"]["lost"] == 0
    assert final["import"]["duplicates"] == 0 and final["import"]["rejected"] == 0
    assert final["export"]["messages"] == count
    prod.send("exit")
    assert prod.wait() == 0
    # clean stops remove the status boards, and --remove-on-exit the imported channel
    for gone in (f"{src}.bridge-out", f"{dst}.bridge-in", dst):
        assert not os.path.exists(f"/dev/shm/shmchan.{gone}"), gone


def test_1080p_frames_arrive_hash_identical_with_their_schema(procs: Any, zenoh_net: Any, unique_name: str) -> None:
    """A Frame channel of 1080p RGB frames: the imported channel carries the same ChannelInfo
    (schema, metadata) and every frame arrives byte-identical (same digest over all pixels)."""
    src, dst, key = f"{unique_name}-a", f"{unique_name}-b", f"test/{unique_name}"
    prod = procs.peer("produce", src, "--kind", "frames", "--capacity", 4, "--count", 60)
    prod.expect("ready")
    ex, im = start_pair(procs, zenoh_net, src, dst, key, "--remove-on-exit")
    with shmchan.Channel.open(src) as a, shmchan.Channel.open(dst) as b:
        assert b.descriptor == a.descriptor
        assert b.info is not None and b.info.payload is not None and b.info.payload.name == "shmchan.fb.Frame"
        assert dict(b.info.metadata) == {"camera": "bridge-test"}
        assert (b.slot_size, b.capacity) == (a.slot_size, a.capacity)
    cons = procs.peer("consume", dst, "--kind", "frames", "--timeout", 120)
    cons.expect("ready")
    prod.send("go")
    sent = prod.report(120)
    rep = cons.report(120)
    assert rep["received"] == 60 and rep["gaps"] == rep["out_of_order"] == rep["corrupt"] == 0, rep
    assert rep["frames_digest"] == sent["digest"]
    finish([im, ex])
    prod.send("exit")
    assert prod.wait() == 0


def test_cpp_consumer_reads_frames_imported_from_a_cpp_producer(procs: Any, zenoh_net: Any,
                                                               unique_name: str) -> None:
    """Native peers on both ends: a C++ producer's Frame stream, bridged, is read by a C++ consumer
    on the importing side, which checks every FlatBuffer and frame order; the pixel CRCs agree."""
    exe = {role: CPP / f"shmchan-{role}" for role in ("producer", "consumer")}
    if not all(p.exists() for p in exe.values()):
        why = "the C++ peers are not built (make -C peers/c)"
        if os.environ.get("CI"):
            pytest.fail(f"{why}; CI must build them")
        pytest.skip(why)
    src, dst, key = f"{unique_name}-a", f"{unique_name}-b", f"test/{unique_name}"
    geometry = ["--width", "640", "--height", "480", "--format", "RGB24", "--capacity", "4"]
    prod = procs.native([str(exe["producer"]), src, "--create", "--hold", "--frames", "200", "--verify", "crc",
                         "--timeout", "60", *geometry])
    prod.expect("ready")
    ex, im = start_pair(procs, zenoh_net, src, dst, key, "--remove-on-exit")
    cons = procs.native([str(exe["consumer"]), dst, "--frames", "200", "--verify", "crc", "--timeout", "60",
                         *geometry])
    pdone = prod.expect("done", 120)
    cdone = cons.expect("done", 120)
    crc = {k: dict(w.split("=", 1) for w in line.split()[1:])["crc"] for k, line in (("p", pdone), ("c", cdone))}
    assert "errors=0" in cdone and "frames=200" in cdone, cdone
    assert crc["p"] == crc["c"]
    assert cons.wait() == 0, cons.stderr
    finish([im, ex])
    prod.send("exit")
    assert prod.wait() == 0, prod.stderr


@pytest.mark.parametrize("kill", ["export", "import"])
def test_killed_bridge_restarts_and_the_accounting_holds(procs: Any, zenoh_net: Any, unique_name: str,
                                                         kill: str) -> None:
    """kill -9 of the exporter (or the importer) mid-stream, then a new one: the stream resumes, the
    consumer never sees a duplicate or a reordering, and what it missed is exactly what the
    importer counts as lost; stat shows the dead bridge in between."""
    count = 40_000
    src, dst, key = f"{unique_name}-a", f"{unique_name}-b", f"test/{unique_name}"
    prod = procs.peer("produce", src, "--capacity", 256, "--count", count, "--pace", 0.00002)
    prod.expect("ready")
    port = zenoh_net.port()
    ex_args = ["export", src, "--key", key, *zenoh_net.listen(port)]
    im_args = ["import", key, dst, *zenoh_net.connect(port)]
    ex = procs.bridge(*ex_args)
    ex.expect("exporting")
    im = procs.bridge(*im_args)
    im.expect("imported")
    cons = procs.peer("consume", dst, "--progress", 2000, "--timeout", 240)
    cons.expect("ready")
    prod.send("go")
    cons.expect("progress 6000", 120)
    victim = ex if kill == "export" else im
    victim.signal(signal.SIGKILL)
    victim.wait()
    [seen] = bridges_of(src if kill == "export" else dst)
    assert seen["state"] == "dead" and seen["pid"] == victim.p.pid
    again = procs.bridge(*(ex_args if kill == "export" else im_args))
    again.expect("exporting" if kill == "export" else "imported")
    rep = cons.report(240)
    sent = prod.report(60)
    final = finish([again, ex if kill == "import" else im])
    imp = final["import"]
    missing = rep["last"] - rep["first"] + 1 - rep["received"]
    assert rep["first"] == 0 and rep["last"] == count - 1 and sent["sent"] == count, rep
    assert rep["corrupt"] == rep["out_of_order"] == 0, rep
    assert rep["received"] + imp["lost"] == count, (rep, imp)
    assert missing == imp["lost"]
    assert imp["messages"] == rep["received"]
    [after] = bridges_of(dst)  # the importer's board outlives it (the channel persists)
    assert after["restarts"] == (1 if kill == "import" else 0) and after["state"] == "stopped"
    prod.send("exit")
    assert prod.wait() == 0
    shmchan.unlink(dst)
    shmchan.unlink(f"{dst}.bridge-in")


def test_overwrite_broadcast_counts_every_message_delivered_or_lost(procs: Any, zenoh_net: Any,
                                                                    unique_name: str) -> None:
    """An overwrite broadcast goes best effort: whatever the exporter was lapped on, Zenoh dropped
    or the consumer was lapped on is counted, so received + lost == sent, with no duplicate, no
    reordering and no torn message."""
    count = 50_000
    src, dst, key = f"{unique_name}-a", f"{unique_name}-b", f"test/{unique_name}"
    prod = procs.peer("produce", src, "--kind", "overwrite", "--capacity", 64, "--count", count)
    prod.expect("ready")
    ex, im = start_pair(procs, zenoh_net, src, dst, key, "--remove-on-exit")
    with shmchan.Broadcast.open(dst) as b:
        assert b.policy == "overwrite" and b.max_readers == 4
    cons = procs.peer("consume", dst, "--kind", "overwrite", "--timeout", 120)
    cons.expect("ready")
    prod.send("go")
    prod.report(120)
    rep = cons.report(120)
    final = finish([im, ex])
    imp = final["import"]
    assert rep["corrupt"] == rep["out_of_order"] == 0, rep
    assert rep["received"] > 0
    assert rep["received"] + rep["local_lost"] + imp["lost"] == count, (rep, imp)
    assert imp["messages"] + imp["lost"] == count, imp
    prod.send("exit")
    assert prod.wait() == 0


def test_state_board_arrives_at_the_latest_value_never_torn(procs: Any, zenoh_net: Any, unique_name: str) -> None:
    """A state board goes best effort, latest value: the imported board (same dtype) ends at the
    last version, no read is torn, and versions delivered + lost == versions published."""
    count = 3000
    src, dst, key = f"{unique_name}-a", f"{unique_name}-b", f"test/{unique_name}"
    prod = procs.peer("produce", src, "--kind", "state", "--slot", 4096, "--count", count)
    prod.expect("ready")
    ex, im = start_pair(procs, zenoh_net, src, dst, key, "--remove-on-exit")
    with shmchan.State.open(src) as a, shmchan.State.open(dst) as b:
        assert b.dtype == a.dtype and b.info is not None and dict(b.info.metadata) == {"what": "bridge-test"}
    watch = procs.peer("watch-state", dst, "--count", count, "--timeout", 60)
    watch.expect("ready")
    prod.send("go")
    prod.report(60)
    rep = watch.report(90)
    assert rep["final"] == count and rep["torn"] == 0, rep
    deadline = time.monotonic() + 10
    while bridges_of(dst)[0]["last_seq"] != count and time.monotonic() < deadline:
        time.sleep(0.05)
    final = finish([im, ex])
    imp = final["import"]
    assert imp["last_seq"] == count
    assert imp["messages"] + imp["lost"] == count, imp
    prod.send("exit")
    assert prod.wait() == 0
