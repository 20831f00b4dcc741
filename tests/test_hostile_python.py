"""Hostile peers, round two, against the Python layer: an attacker (this test process) writes into
the descriptor and header fields a peer controls, or answers on a socket; the victim runs in a child
process with a deadline, so a crash or a hang is a failure, never a stuck suite."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import mmap
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import shmchan
from shmchan._layout import FIELDS, shm_path
from shmchan.schema.info import decode_channel_info, encode_channel_info
from shmchan.schema.tensor import _build_tensor

ROOT = Path(__file__).resolve().parent.parent
DEADLINE = 30.0  # seconds a victim may take before it counts as hung

# ---- the attacker's tools ----


def _desc_span(name: str) -> tuple[int, int]:
    with open(shm_path(name), "rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as m:
        off = int.from_bytes(m[FIELDS["descriptor_offset"][0] :][:8], "little")
        size = int.from_bytes(m[FIELDS["descriptor_size"][0] :][:8], "little")
    return off, size


def write_descriptor(name: str, data: bytes) -> None:
    """Overwrite the channel's descriptor bytes in place (zero-padded to its size: the header's
    descriptor_size and geometry stay valid, so only the descriptor is hostile)."""
    off, size = _desc_span(name)
    assert len(data) <= size, (len(data), size)
    with open(shm_path(name), "r+b") as f, mmap.mmap(f.fileno(), 0) as m:
        m[off : off + size] = data + bytes(size - len(data))


def rewrite_info(name: str, **changes: object) -> None:
    """Decode the channel's ChannelInfo, change fields, and write it back (metadata dropped, so it fits)."""
    off, size = _desc_span(name)
    with open(shm_path(name), "rb") as f:
        f.seek(off)
        info = decode_channel_info(f.read(size))
    fields: dict[str, object] = {"metadata": {}}
    fields.update(changes)
    write_descriptor(name, encode_channel_info(dataclasses.replace(info, **fields)))  # type: ignore[arg-type]


def poke(name: str, field: str, value: int) -> None:
    off, size = FIELDS[field]
    with open(shm_path(name), "r+b") as f, mmap.mmap(f.fileno(), 0) as m:
        m[off : off + size] = value.to_bytes(size, "little")


PAD = {"pad": "x" * 300}  # room in the descriptor for the attacker's rewrites


def victim(code: str, *args: str, timeout: float = DEADLINE) -> dict[str, object]:
    """Run ``code`` in a fresh Python process (``sys.argv[1:]`` = args) that prints one JSON line as
    its last line; fail on a hang, a crash (signal) or a traceback."""
    prog = "import json, os, sys\nimport shmchan\n" + textwrap.dedent(code)
    try:
        p = subprocess.run([sys.executable, "-c", prog, *args], capture_output=True, text=True, timeout=timeout,
                           cwd=ROOT / "tests")
    except subprocess.TimeoutExpired:
        pytest.fail(f"the victim hung (no exit within {timeout} s)")
    assert p.returncode == 0, f"victim exit status {p.returncode}; stderr:\n{p.stderr}"
    assert "Traceback" not in p.stderr, p.stderr
    out: dict[str, object] = json.loads(p.stdout.strip().splitlines()[-1])
    return out


# every victim reports the exception it got and whether its fds and mappings came back while the
# exception (and its traceback) was still alive: a refused open must keep nothing open
OPEN_AND_REPORT = """
def fds():
    return len(os.listdir("/proc/self/fd"))
def maps():
    with open("/proc/self/maps") as f:
        return sum(1 for line in f if "shmchan" in line or "memfd" in line)
import warnings
warnings.simplefilter("error", ResourceWarning)
before = (fds(), maps())
result = {"ok": None}
try:
    OPEN
    result["ok"] = True
except Exception as exc:
    result.update(ok=False, type=type(exc).__name__, mro=[c.__name__ for c in type(exc).__mro__], text=str(exc),
                  leaked=(fds(), maps()) != before)
print(json.dumps(result))
"""


def open_in_victim(opening: str, *args: str) -> dict[str, object]:
    return victim(OPEN_AND_REPORT.replace("OPEN", opening), *args)


# ---- crashes: object dtypes on state boards ----


@pytest.mark.parametrize("dtype", [
    object,
    [("a", "<u8"), ("b", "O")],
    [("outer", [("inner", "O")])],
    np.dtype((object, (3,))),
    [("a", "<f8", (2,)), ("sub", [("o", "O", (2,))])],
], ids=["object", "record", "nested-record", "subarray", "record-of-subarray"])
def test_state_create_refuses_dtypes_that_hold_python_objects(unique_name: str, dtype: object) -> None:
    with pytest.raises(shmchan.ObjectDtypeError, match="holds Python objects") as info:
        shmchan.State.create(unique_name, dtype=dtype)  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError)
    assert not os.path.exists(shm_path(unique_name))


@pytest.mark.parametrize("descr", ["('|O', ())", "([('a', '<u8'), ('b', '|O')], ())", "('|O', (1,))",
                                   "([('x', [('y', '|O')])], ())"])
def test_state_open_refuses_an_object_dtype_a_peer_wrote_and_keeps_nothing_open(unique_name: str, descr: str) -> None:
    with shmchan.State.create(unique_name, dtype="<u8", metadata=PAD) as st:
        st.writer().write(7)
        rewrite_info(unique_name, numpy_descr=descr)
        got = open_in_victim("shmchan.State.open(sys.argv[1]).read()", unique_name)
    assert got["ok"] is False and got["type"] == "ObjectDtypeError", got
    assert "IncompatibleChannelError" in got["mro"]  # type: ignore[operator]
    assert got["leaked"] is False, got


@pytest.mark.parametrize("changes", [
    {"numpy_descr": None, "dtype": np.dtype("<u8"), "shape": (-1,)},
    {"numpy_descr": None, "dtype": np.dtype("<u1"), "shape": (2**40,)},
    {"numpy_descr": "('<u1', (1099511627776,))"},
    {"numpy_descr": "('<u1', (-1,))"},
    {"numpy_descr": "(" * 120 + ")" * 120},
    {"numpy_descr": "__import__('os').getpid()"},
    {"numpy_descr": "('<u4', ())"},  # 4 bytes where the header says 8
], ids=["hint-minus-1", "hint-2**40", "descr-2**40", "descr-minus-1", "deep", "code", "size"])
def test_state_open_refuses_bad_dtype_descriptions_precisely_and_keeps_nothing_open(
        unique_name: str, changes: dict[str, object]) -> None:
    with shmchan.State.create(unique_name, dtype="<u8", metadata=PAD) as st:
        st.writer().write(7)
        rewrite_info(unique_name, **changes)
        got = open_in_victim("shmchan.State.open(sys.argv[1]).read()", unique_name)
    assert got["ok"] is False, got
    assert got["type"] in ("IncompatibleChannelError", "CorruptChannelError"), got
    assert got["leaked"] is False, got


# ---- silent loss: forked children, ChannelInfo that contradicts the header ----


def test_forked_child_exiting_normally_leaves_the_name_and_the_server_of_its_parent(
        unique_name: str, tmp_path: Path) -> None:
    """A child forked inside ``with`` blocks exits normally (``sys.exit`` closes the handles it
    inherited): the parent's channel name and its sealed channel's server must survive."""
    sock = str(tmp_path / "s")
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=4) as ch, \
            shmchan.Channel.create_sealed(slot_size=64, capacity=4) as sealed, sealed.serve(sock):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                with ch, sealed:
                    sys.exit(0)
            finally:
                os._exit(0)
        assert os.waitpid(pid, 0)[1] == 0
        assert os.path.exists(shm_path(unique_name))
        with shmchan.Channel.open(unique_name, timeout=0):
            pass
        assert os.path.exists(sock)
        with shmchan.Channel.connect(sock, timeout=2) as peer:
            assert peer.sealed


@pytest.mark.parametrize("changes", [
    {"slot_size": 65}, {"capacity": 8}, {"slot_align": 128}, {"kind": "broadcast"}, {"kind": "state"},
], ids=lambda c: next(iter(c)) + "=" + str(next(iter(c.values()))))
def test_channelinfo_contradicting_the_header_is_refused_at_open(unique_name: str, changes: dict[str, object]) -> None:
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=4, schema="tensor", metadata=PAD):
        rewrite_info(unique_name, **changes)
        plain = open_in_victim("shmchan.Channel.open(sys.argv[1]).reader()", unique_name)
        typed = open_in_victim("shmchan.Channel.open(sys.argv[1], schema='tensor')", unique_name)
    for got in (plain, typed):
        assert got["ok"] is False and got["type"] == "CorruptChannelError", got
        assert "ChannelInfo says" in str(got["text"]), got
        assert got["leaked"] is False, got


def test_malformed_channelinfo_gives_the_same_exception_everywhere(unique_name: str) -> None:
    with shmchan.Broadcast.create(unique_name, slot_size=64, capacity=4, schema="frame", metadata=PAD):
        off, size = _desc_span(unique_name)
        with open(shm_path(unique_name), "rb") as f:
            f.seek(off)
            data = bytearray(f.read(size))
        data[0:4] = (1 << 31).to_bytes(4, "little")  # root table far outside; the SHCI identifier kept
        write_descriptor(unique_name, bytes(data))
        got = [open_in_victim(code, unique_name) for code in (
            "shmchan.Channel.open(sys.argv[1])",
            "shmchan.Broadcast.open(sys.argv[1]).reader()",
            "shmchan.Channel.open(sys.argv[1], schema='frame')",
        )]
    assert {g["type"] for g in got} == {"CorruptChannelError"}, got
    assert all("malformed ChannelInfo" in str(g["text"]) and g["leaked"] is False for g in got), got


def test_opaque_descriptor_is_no_channelinfo(unique_name: str) -> None:
    """Bytes without the SHCI identifier are an opaque descriptor (R47): .info is None, and a schema
    check refuses the channel as incompatible, not as malformed."""
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=4, descriptor=b"dtype=u8;shape=3"):
        with shmchan.Channel.open(unique_name) as ch:
            assert ch.info is None and ch.descriptor == b"dtype=u8;shape=3"
        with pytest.raises(shmchan.IncompatibleChannelError, match="no ChannelInfo"):
            shmchan.Channel.open(unique_name, schema="frame")


# ---- imprecise errors and leaks ----


@pytest.mark.parametrize("shape", [(2**40,), (2**63,), (0, 2**64 - 1), (2**32, 2**32), (65,)])
def test_tensor_shapes_are_bounded_by_the_bytes_of_the_message(unique_name: str, shape: tuple[int, ...]) -> None:
    """A stride-0 shape over a 512-byte message: never a terabyte-sized array, never numpy's plain
    ValueError; always ShmchanDecodeError in the receiving process."""
    with shmchan.Channel.create(unique_name, slot_size=1024, capacity=2) as ch:
        head = _build_tensor(12, shape, (0,) * len(shape), 256, 512, 0, 0)  # float64, stride 0
        ch.writer().send(head + bytes(768 - len(head)))
        got = victim("""
            ch = shmchan.Channel.open(sys.argv[1])
            r = ch.reader()
            with r.recv(timeout=5) as msg:
                try:
                    a = msg.tensor()
                    print(json.dumps({"ok": True, "nbytes": int(a.nbytes)}))
                except Exception as exc:
                    print(json.dumps({"ok": False, "mro": [c.__name__ for c in type(exc).__mro__]}))
            ch.close()
        """, unique_name)
    assert got["ok"] is False and "ShmchanDecodeError" in got["mro"], got  # type: ignore[operator]


@pytest.mark.parametrize("what", ["symlink", "directory", "socket", "fifo"])
def test_a_non_file_at_the_name_gives_a_precise_error(unique_name: str, what: str) -> None:
    path = shm_path(unique_name)
    sock = None
    if what == "symlink":
        os.symlink("/etc/hostname", path)
    elif what == "directory":
        os.mkdir(path)
    elif what == "fifo":
        os.mkfifo(path, 0o600)
    else:
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(path)
    try:
        got = victim("""
            out = {}
            for call in ("open", "is_stale", "create"):
                try:
                    if call == "open":
                        shmchan.Channel.open(sys.argv[1], timeout=0)
                    elif call == "is_stale":
                        shmchan.is_stale(sys.argv[1])
                    else:
                        shmchan.Channel.create(sys.argv[1], slot_size=64, capacity=2)
                    out[call] = ["no error"]
                except Exception as exc:
                    out[call] = [type(exc).__name__, str(exc)]
            print(json.dumps(out))
        """, unique_name)
    finally:
        if sock is not None:
            sock.close()
        if what == "directory":
            os.rmdir(path)
        else:
            os.unlink(path)
    kind = {"symlink": "a symbolic link", "directory": "a directory", "socket": "a socket", "fifo": "a FIFO"}[what]
    for call in ("open", "is_stale"):
        assert got[call] == ["IncompatibleChannelError", got[call][1]] and kind in got[call][1], got  # type: ignore[index]
    assert got["create"][0] == "ChannelExistsError" and kind in got["create"][1], got  # type: ignore[index]


def test_connect_to_a_listener_that_never_accepts_honours_its_timeout(tmp_path: Path) -> None:
    """The listener's backlog is full: a blocking connect(2) would wait for ever."""
    path = str(tmp_path / "s")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(0)
    fillers = []
    try:
        while True:  # fill the backlog
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                s.connect(path)
            except BlockingIOError:
                s.close()
                break
            fillers.append(s)
            assert len(fillers) < 1000
        got = victim("""
            import time
            t0 = time.monotonic()
            try:
                shmchan.Channel.connect(sys.argv[1], timeout=1)
                print(json.dumps({"ok": True}))
            except Exception as exc:
                print(json.dumps({"ok": False, "type": type(exc).__name__, "took": time.monotonic() - t0}))
        """, path, timeout=15)
    finally:
        for s in fillers:
            s.close()
        listener.close()
    assert got["ok"] is False and got["type"] == "ChannelTimeoutError", got
    assert 0.9 < got["took"] < 5, got  # type: ignore[operator]


class _FakeServer:
    """A Unix socket server answering every connection with ``reply`` and the descriptors ``fds``."""

    def __init__(self, path: str, reply: bytes, nfds: int) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(64)
        self.reply, self.nfds = reply, nfds
        self.memfd = os.memfd_create("fake")
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                if self.reply or self.nfds:
                    socket.send_fds(conn, [self.reply or b"S"], [self.memfd] * self.nfds)

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join()
        os.close(self.memfd)


@pytest.mark.parametrize(("reply", "nfds"), [(b"X", 1), (b"S", 2), (b"S", 0), (b"", 0)],
                         ids=["X-one-fd", "S-two-fds", "S-no-fd", "nothing"])
def test_connect_refuses_a_bad_answer_precisely_and_closes_what_it_received(
        tmp_path: Path, reply: bytes, nfds: int) -> None:
    path = str(tmp_path / "s")
    server = _FakeServer(path, reply, nfds)
    try:
        before = len(os.listdir("/proc/self/fd"))
        for _ in range(200):
            with pytest.raises(shmchan.IncompatibleChannelError, match="a shmchan server sends b'S'"):
                shmchan.Channel.connect(path, timeout=2)
        assert len(os.listdir("/proc/self/fd")) == before
    finally:
        server.close()


def test_from_fd_refuses_a_memfd_sealed_against_writing(tmp_path: Path) -> None:
    """shmchan's memfds are sealed with F_SEAL_SEAL; a hostile server can build its own image with
    F_SEAL_WRITE or F_SEAL_FUTURE_WRITE, which no channel can live with."""
    with shmchan.Channel.create_sealed(slot_size=64, capacity=4) as src:
        image = os.pread(src.fd, src.nbytes, 0)
    for seal, text in ((fcntl.F_SEAL_WRITE, "F_SEAL_WRITE"), (0x10, "F_SEAL_FUTURE_WRITE")):
        fd = os.memfd_create("hostile", os.MFD_ALLOW_SEALING)
        try:
            os.write(fd, image)
            os.fchmod(fd, 0o600)
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | seal)
            with pytest.raises(shmchan.ChannelPermissionError, match=text):
                shmchan.Channel.from_fd(fd, timeout=1)
        finally:
            os.close(fd)


def _write_sealed_memfd(seal: int) -> int:
    """A memfd holding a good sealed channel's image, sealed against resizing and with ``seal``."""
    with shmchan.Channel.create_sealed(slot_size=64, capacity=4) as src:
        image = os.pread(src.fd, src.nbytes, 0)
    fd = os.memfd_create("hostile", os.MFD_ALLOW_SEALING)
    os.write(fd, image)
    os.fchmod(fd, 0o600)
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | seal)
    return fd


@pytest.mark.parametrize(("seal", "text"), [(fcntl.F_SEAL_WRITE, "F_SEAL_WRITE"), (0x10, "F_SEAL_FUTURE_WRITE")],
                         ids=["F_SEAL_WRITE", "F_SEAL_FUTURE_WRITE"])
def test_connect_refuses_a_memfd_sealed_against_writing(tmp_path: Path, seal: int, text: str) -> None:
    """A server that hands out a memfd sealed against writing: the core refuses it where it opens
    the memfd, and Channel.connect raises ChannelPermissionError naming the seal, keeping nothing."""
    path = str(tmp_path / "s")
    fd = _write_sealed_memfd(seal)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(8)

    def serve() -> None:
        for _ in range(3):
            conn, _ = listener.accept()
            with conn:
                socket.send_fds(conn, [b"S"], [fd])

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    try:
        before = len(os.listdir("/proc/self/fd"))
        for _ in range(3):
            with pytest.raises(shmchan.ChannelPermissionError,
                               match=rf"cannot connect to a sealed channel at .*sealed against writing \({text}\)"):
                shmchan.Channel.connect(path, timeout=2)
        server.join(timeout=5)
        assert not server.is_alive()
        assert len(os.listdir("/proc/self/fd")) == before
    finally:
        listener.close()
        os.close(fd)


def test_connect_ends_at_ctrl_c_and_refuses_a_long_path(tmp_path: Path) -> None:
    """Channel.connect waits in the C core: Ctrl-C (SIGINT from another process, as a terminal
    sends it) still raises KeyboardInterrupt within 0.2 s, whether the server never answers or its
    backlog stays full; another signal's handler runs and the wait goes on to its timeout. A
    socket path longer than 107 bytes is a ValueError."""
    with pytest.raises(ValueError, match="longer than 107 bytes"):
        shmchan.Channel.connect("/tmp/" + "x" * 103, timeout=1)
    path = str(tmp_path / "s")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(8)
    try:
        got = victim("""
            import signal, socket, subprocess, time
            usr1 = []
            signal.signal(signal.SIGUSR1, lambda *a: usr1.append(1))
            signal.signal(signal.SIGINT, signal.default_int_handler)
            KILL = ("import os, sys, time; time.sleep(float(sys.argv[3])); print(time.monotonic()); "
                    "os.kill(int(sys.argv[1]), int(sys.argv[2]))")
            def later(sig, after):
                return subprocess.Popen([sys.executable, "-c", KILL, str(os.getpid()), str(int(sig)), str(after)],
                                        stdout=subprocess.PIPE, text=True)
            def connect(timeout, sig, after):
                killer = later(sig, after)
                t0 = time.monotonic()
                try:
                    shmchan.Channel.connect(sys.argv[1], timeout=timeout)
                    return "connected"
                except (KeyboardInterrupt, shmchan.ChannelTimeoutError) as exc:
                    end = time.monotonic()
                    sent = float(killer.communicate()[0])
                    return [type(exc).__name__, end - t0, end - sent]
            out = {}
            # a listener that accepts and answers nothing: the wait for the answer
            out["usr1"] = connect(0.8, signal.SIGUSR1, 0.2) + [len(usr1)]
            out["answer"] = connect(None, signal.SIGINT, 0.3)
            fillers = []  # fill the backlog: connect(2) itself is retried
            while True:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.setblocking(False)
                try:
                    s.connect(sys.argv[1])
                except BlockingIOError:
                    s.close()
                    break
                fillers.append(s)
            out["backlog"] = connect(None, signal.SIGINT, 0.3)
            print(json.dumps(out))
        """, path, timeout=20)
    finally:
        listener.close()
    usr1, answer, backlog = got["usr1"], got["answer"], got["backlog"]
    assert usr1[0] == "ChannelTimeoutError" and 0.75 < usr1[1] < 3 and usr1[3] == 1, got  # type: ignore[index]
    for where in (answer, backlog):
        assert where[0] == "KeyboardInterrupt" and where[2] < 0.2, got  # type: ignore[index]


# ---- not covered before: the CLI, asyncio and the server under attack ----

CLI_ATTACKS = {
    "spsc-head-max": ("spsc", lambda n: poke(n, "head", 2**64 - 1)),
    "spsc-tail-beyond-head": ("spsc", lambda n: poke(n, "tail", 2**63)),
    "bcast-head-max": ("broadcast", lambda n: poke(n, "head", 2**64 - 1)),
    "info-slot-size": ("spsc", lambda n: rewrite_info(n, slot_size=100000)),
    "info-kind": ("broadcast", lambda n: rewrite_info(n, kind="spsc")),
    "state-object-dtype": ("state", lambda n: rewrite_info(n, numpy_descr="('|O', ())")),
    "bad-magic": ("spsc", lambda n: poke(n, "magic", 1)),
}


@pytest.mark.parametrize("attack", list(CLI_ATTACKS))
def test_cli_reports_a_corrupted_channel_and_never_hangs(unique_name: str, attack: str) -> None:
    kind, hit = CLI_ATTACKS[attack]
    if kind == "state":
        ch: shmchan.Channel = shmchan.State.create(unique_name, dtype="<u8", metadata=PAD)
        w = ch.writer()
        w.write(5)  # type: ignore[attr-defined]
    else:
        make = shmchan.Broadcast.create if kind == "broadcast" else shmchan.Channel.create
        ch = make(unique_name, slot_size=64, capacity=4, metadata=PAD)
        w = ch.writer()
        w.send(b"abc")
        r = ch.reader() if kind == "broadcast" else None
    try:
        hit(unique_name)
        shmchan_cli = [sys.executable, "-m", "shmchan.cli"]
        for args in (["ls"], ["stat", unique_name], ["hz", unique_name, "-i", "0.1", "-n", "2"],
                     ["tail", unique_name, "-n", "2"]):
            try:
                p = subprocess.run(shmchan_cli + args, capture_output=True, text=True, timeout=DEADLINE, cwd=ROOT)
            except subprocess.TimeoutExpired:
                pytest.fail(f"shmchan {args[0]} hung on {attack}")
            out = p.stdout + p.stderr
            assert "Traceback" not in out, out
            if args[0] == "ls":
                row = next((line for line in p.stdout.splitlines() if line.startswith(unique_name)), p.stdout)
                assert p.returncode == 0 and "error:" in row, row
            else:
                assert p.returncode == 1, (args, out)
                assert out.startswith("shmchan:") or "\nshmchan: " in out, (args, out)
    finally:
        if kind == "broadcast" and r is not None:
            r.close()
        w.close()
        ch.close()


ASYNC_VICTIM = """
import asyncio, json, sys
import shmchan

async def main():
    ch = shmchan.Channel.open(sys.argv[1])
    r = ch.reader()
    print("ready", flush=True)
    sys.stdin.readline()  # the storm has started
    outcomes = {}
    for _ in range(20):
        try:
            await r.recv_async(timeout=0.2)
            outcomes["message"] = outcomes.get("message", 0) + 1
        except shmchan.ShmchanError as exc:
            outcomes[type(exc).__name__] = outcomes.get(type(exc).__name__, 0) + 1
    for _ in range(50):  # cancelled in the middle of their waits
        t = asyncio.ensure_future(r.recv_async(timeout=None))
        await asyncio.sleep(0.002)
        t.cancel()
        try:
            await t
        except (asyncio.CancelledError, shmchan.ShmchanError):
            pass
    t = asyncio.ensure_future(r.recv_async(timeout=None))
    await asyncio.sleep(0.05)
    ch.close()  # ends the last wait
    try:
        await asyncio.wait_for(t, 5)
        outcomes["after close"] = "message"
    except shmchan.ShmchanError as exc:
        outcomes["after close"] = type(exc).__name__
    return outcomes

print(json.dumps(asyncio.run(main())))
"""


def test_asyncio_waits_survive_storms_cancellations_and_close(unique_name: str) -> None:
    """While recv_async waits, an attacker storms head_wake (futex wake-ups) and flips head between
    0 and 2**64-1; tasks are cancelled mid-wait; close() ends the last wait. Nothing hangs, nothing
    crashes, and every outcome is a message or a precise shmchan exception."""
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=4):
        stop = threading.Event()

        def storm() -> None:
            n = 0
            while not stop.is_set():
                n += 1
                poke(unique_name, "head_wake", n & 0xFFFFFFFF)
                if n % 50 == 0:
                    poke(unique_name, "head", (2**64 - 1) if n % 100 == 0 else 0)

        p = subprocess.Popen([sys.executable, "-c", ASYNC_VICTIM, unique_name], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        attacker = threading.Thread(target=storm)
        try:
            assert p.stdout is not None and p.stdin is not None
            assert p.stdout.readline().strip() == "ready"
            attacker.start()
            p.stdin.write("go\n")
            p.stdin.flush()
            try:
                out, err = p.communicate(timeout=DEADLINE)
            except subprocess.TimeoutExpired:
                pytest.fail("the asyncio victim hung")
        finally:
            stop.set()
            if attacker.is_alive():
                attacker.join()
            if p.poll() is None:
                p.kill()
                p.communicate()
    assert p.returncode == 0 and "Traceback" not in err, err
    got = json.loads(out.strip().splitlines()[-1])
    assert set(got) <= {"message", "ChannelTimeoutError", "CorruptChannelError", "after close"}, got
    assert got["after close"] in ("ChannelClosedError", "CorruptChannelError"), got


def test_channel_server_stays_responsive_under_a_connection_flood(tmp_path: Path) -> None:
    """Hundreds of connections that send nothing or garbage, held open: a good client still gets
    the channel at once, and the server's descriptors stay bounded."""
    path = str(tmp_path / "s")
    with shmchan.Channel.create_sealed(slot_size=64, capacity=4) as ch, ch.serve(path):
        base = len(os.listdir("/proc/self/fd"))
        flood = []
        try:
            for i in range(300):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                for _ in range(5000):  # the backlog is full until the server accepts: try again
                    try:
                        s.connect(path)
                        break
                    except BlockingIOError:
                        time.sleep(0.001)
                if i % 2:
                    # the server may already have answered and hung up: its answer is still queued
                    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                        s.sendall(os.urandom(512))
                flood.append(s)
            t0 = time.monotonic()
            with shmchan.Channel.connect(path, timeout=5) as peer:
                assert peer.sealed
            assert time.monotonic() - t0 < 2
            # the server holds no descriptor per connection (only the flood's own sockets are open)
            assert len(os.listdir("/proc/self/fd")) <= base + len(flood) + 2
            got = 0
            for s in flood:  # each got its one descriptor, and nothing else
                _, fds, _, _ = socket.recv_fds(s, 16, 4)
                got += len(fds)
                for fd in fds:
                    os.close(fd)
            assert got == len(flood)
        finally:
            for s in flood:
                s.close()
