"""The bridge's Python API, its configuration and its defences against what arrives from the network."""

from __future__ import annotations

import base64
import json
import signal
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import shmchan
from shmchan import schema as S
from shmchan.bridge import _wire as W
from shmchan.bridge import bridges_of, check_compatible, zenoh_config
from shmchan.bridge._config import describe_config

zenoh = pytest.importorskip("zenoh")


def info(**over: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"shmchan_bridge": 1, "name": "cam0", "kind": "spsc", "policy": None, "slot_size": 4096,
                         "capacity": 8, "slot_align": 4096, "max_readers": 0, "descriptor": "", "stream": 7,
                         "next_seq": 0, "reliable": True}
    d.update(over)
    return d


# ---- configuration: safe by default (no session is opened here) ----


def test_defaults_are_loopback_only_without_scouting() -> None:
    """With no endpoint, the exporter listens on 127.0.0.1:7447 and the importer connects there;
    neither listens anywhere else, and multicast scouting and gossip are off."""
    ex = describe_config(zenoh_config("export"))
    im = describe_config(zenoh_config("import"))
    assert ex["listen"] == ["tcp/127.0.0.1:7447"] and ex["connect"] == []
    assert im["listen"] == [] and im["connect"] == ["tcp/127.0.0.1:7447"]
    for c in (ex, im):
        assert c["multicast_scouting"] is False and c["gossip"] is False
    # Zenoh's own default would listen on every interface
    assert "[::]" in zenoh.Config().get_json("listen/endpoints")


def test_given_endpoints_replace_the_defaults() -> None:
    c = describe_config(zenoh_config("import", listen=["tcp/127.0.0.1:9000"], connect=["tcp/127.0.0.1:9001"],
                                     mode="client"))
    assert c == {"mode": "client", "listen": ["tcp/127.0.0.1:9000"], "connect": ["tcp/127.0.0.1:9001"],
                 "multicast_scouting": False, "gossip": False}


def test_a_config_file_keeps_its_endpoints_but_never_scouts(tmp_path: Path) -> None:
    """A JSON5 file's endpoints are used; scouting stays off even where the file turns it on, unless
    scouting=True; a file that sets no listen endpoint does not get Zenoh's every-interface one."""
    f = tmp_path / "z.json5"
    f.write_text('{ connect: { endpoints: ["tcp/127.0.0.1:9100"] }, scouting: { multicast: { enabled: true } } }')
    c = describe_config(zenoh_config("export", config=f))
    assert c["connect"] == ["tcp/127.0.0.1:9100"] and c["listen"] == []
    assert c["multicast_scouting"] is False and c["gossip"] is False
    assert describe_config(zenoh_config("export", config=f, scouting=True))["multicast_scouting"] is True
    g = tmp_path / "y.json5"
    g.write_text("{ mode: 'peer' }")
    assert describe_config(zenoh_config("export", config=g))["listen"] == ["tcp/127.0.0.1:7447"]


@pytest.mark.parametrize(("kwargs", "error"), [
    ({"listen": ["127.0.0.1:7447"]}, ValueError),
    ({"mode": "router"}, ValueError),
    ({"config": "/nonexistent/z.json5"}, FileNotFoundError),
])
def test_bad_options_are_refused_before_anything_starts(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        zenoh_config("export", **kwargs)


@pytest.mark.parametrize("key", ["shmchan/*", "a//b", "/a", "a/", "x/@shmchan/info", "a?b", ""])
def test_keys_must_be_plain(key: str) -> None:
    with pytest.raises(ValueError, match="key"):
        shmchan.bridge.Exporter("cam0", key)


# ---- the wire format: everything received is checked ----


def test_header_round_trip_and_rejections() -> None:
    assert W.unpack(W.pack(5, 9)) == (0, 5, 9)
    assert W.unpack(W.pack(5, 9, W.FLAG_END)) == (W.FLAG_END, 5, 9)
    for bad in (None, b"", b"SHB1", b"XXXX" + bytes(20), struct.pack("<4sIQQ", b"SHB1", 2, 0, 0), bytes(25)):
        with pytest.raises(W.BridgeProtocolError):
            W.unpack(bad)


@pytest.mark.parametrize(("change", "field"), [
    ({"shmchan_bridge": 2}, "protocol"),
    ({"kind": "queue"}, "kind"),
    ({"kind": "broadcast", "policy": "sometimes", "max_readers": 4}, "policy"),
    ({"policy": "block"}, "policy"),
    ({"slot_size": 0}, "slot_size"),
    ({"slot_size": True}, "slot_size"),
    ({"capacity": 3}, "powers of two"),
    ({"capacity": 1 << 30}, "capacity"),
    ({"slot_align": 4}, "slot_align"),
    ({"stream": -1}, "stream"),
    ({"reliable": "yes"}, "reliable"),
    ({"descriptor": "!!"}, "base64"),
    ({"descriptor": "AAAA"}, "ChannelInfo"),
    ({"name": 5}, "name"),
])
def test_malformed_channel_descriptions_are_refused_naming_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(W.BridgeProtocolError, match=field):
        W.decode(json.dumps(info(**change)).encode())


def test_a_descriptor_that_contradicts_the_geometry_is_refused() -> None:
    desc = S.make_descriptor("frame", slot_size=8192, capacity=8, slot_align=4096)
    with pytest.raises(W.BridgeProtocolError, match="ChannelInfo says"):
        W.decode(json.dumps(info(descriptor=base64.b64encode(desc).decode())).encode())
    for junk in (b"[]", b"{", b"x" * (W.MAX_INFO_BYTES + 1)):
        with pytest.raises(W.BridgeProtocolError):
            W.decode(junk)


def test_compatibility_names_the_field(unique_name: str) -> None:
    """An existing local channel is used only if it can take the remote one: the error names
    the kind, policy, slot size, value dtype or payload schema that differs."""
    remote = W.decode(json.dumps(info()).encode())
    desc = S.make_descriptor(None, slot_size=16, capacity=2, slot_align=64, kind="state", dtype=np.float64,
                             shape=(2,))
    board = W.decode(json.dumps(info(kind="state", capacity=2, slot_align=64, slot_size=16,
                                     descriptor=base64.b64encode(desc).decode())).encode())
    cases: list[tuple[Any, W.RemoteInfo, str]] = [
        (lambda: shmchan.Channel.create(unique_name, slot_size=1024, capacity=8), remote,
         "slot_size is 1024 here and 4096 there"),
        (lambda: shmchan.Broadcast.create(unique_name, slot_size=4096, capacity=8), remote,
         "the kind is broadcast here and spsc there"),
        (lambda: shmchan.Channel.create(unique_name, slot_size=4096, capacity=8, schema="frame"), remote,
         "payload schema"),
        (lambda: shmchan.State.create(unique_name, dtype=np.dtype((np.int64, (2,)))), board, "value dtype"),
    ]
    for make, what, error in cases:
        with make() as ch, pytest.raises(shmchan.IncompatibleChannelError, match=error):
            check_compatible(ch, what, "k")
    with shmchan.Channel.create(unique_name, slot_size=8192, capacity=2) as ch:
        check_compatible(ch, remote, "k")  # larger slots, another capacity: fine


# ---- processes ----


def test_python_api_bridges_in_one_process_and_closes_cleanly(procs: Any, zenoh_net: Any, unique_name: str) -> None:
    """export() and import_() inside an application: messages go through, close() stops both
    threads (and is idempotent), nothing is left running or in /dev/shm."""
    p = procs.peer("api", unique_name, "--count", 2000, "--port", zenoh_net.port(), net=True)
    rep = p.report(60)
    assert p.wait() == 0, p.stderr
    assert rep == {"received": True, "running": [True, True], "left": [], "exported": 2000, "imported": 2000,
                   "after_close": [False, False], "errors": ["None", "None"]}


def test_importer_refuses_an_incompatible_local_channel(procs: Any, zenoh_net: Any, unique_name: str) -> None:
    src, dst, key = f"{unique_name}-a", f"{unique_name}-b", f"test/{unique_name}"
    with shmchan.Channel.create(src, slot_size=4096, capacity=8), \
            shmchan.Channel.create(dst, slot_size=512, capacity=8):
        port = zenoh_net.port()
        ex = procs.bridge("export", src, "--key", key, *zenoh_net.listen(port))
        ex.expect("exporting")
        im = procs.bridge("import", key, dst, *zenoh_net.connect(port))
        assert im.wait() == 1
        assert "slot_size is 512 here and 4096 there" in im.stderr
        ex.signal(signal.SIGTERM)
        assert ex.wait() == 0


def test_importer_survives_malformed_samples_and_counts_them(procs: Any, zenoh_net: Any, unique_name: str) -> None:
    """A publisher that sends garbage on the key (no header, bad magic, unknown flags, a payload
    larger than a slot) changes nothing: the samples are counted as rejected, the real stream
    goes on intact."""
    src, dst, key = f"{unique_name}-a", f"{unique_name}-b", f"test/{unique_name}"
    prod = procs.peer("produce", src, "--count", 1000)
    prod.expect("ready")
    port, port2 = zenoh_net.port(), zenoh_net.port()
    ex = procs.bridge("export", src, "--key", key, *zenoh_net.listen(port))
    ex.expect("exporting")
    im = procs.bridge("import", key, dst, *zenoh_net.connect(port), *zenoh_net.listen(port2), "--remove-on-exit")
    im.expect("imported")
    [out] = bridges_of(src)
    bad = procs.peer("hostile", dst, "--key", key, "--port", port2, "--slot", 128, "--stream", out["stream"],
                     net=True)
    bad.expect("ready")
    bad.send("go")
    bad.expect("done")
    cons = procs.peer("consume", dst, "--timeout", 60)
    cons.expect("ready")
    prod.send("go")
    rep = cons.report(60)
    assert rep["received"] == 1000 and rep["corrupt"] == rep["gaps"] == rep["out_of_order"] == 0, rep
    bad.send("exit")
    assert bad.wait() == 0, bad.stderr
    im.signal(signal.SIGTERM)
    line = im.expect("stopped")
    assert im.wait() == 0, im.stderr
    assert "rejected=5" in line and "lost=0" in line and "messages=1000" in line, line
    ex.signal(signal.SIGTERM)
    assert ex.wait() == 0
    prod.send("exit")
    assert prod.wait() == 0


def test_second_exporter_of_a_channel_is_refused(procs: Any, zenoh_net: Any, unique_name: str) -> None:
    """The status board is also the lock: a second exporter of the same channel names the first."""
    with shmchan.Broadcast.create(unique_name, slot_size=64, capacity=8):
        port = zenoh_net.port()
        ex = procs.bridge("export", unique_name, *zenoh_net.listen(port))
        ex.expect("exporting")
        again = procs.bridge("export", unique_name, *zenoh_net.listen(zenoh_net.port()))
        assert again.wait() == 1
        assert f"already bridged (export) by process {ex.p.pid}" in again.stderr
        ex.signal(signal.SIGTERM)
        assert ex.wait() == 0
