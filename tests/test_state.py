"""State boards: the latest value with a version, read by any number of processes, never torn."""

from __future__ import annotations

import json
import signal
import time

import numpy as np
import pytest

import shmchan

from peers import STATE_DTYPE, state_value

# ---- values of every sort ----


def test_scalar_board(unique_name: str) -> None:
    with shmchan.State.create(unique_name, dtype=np.float64) as st:
        assert st.read() == (None, 0)
        assert (st.dtype, st.max_size, st.version) == (np.dtype(np.float64), 8, 0)
        w = st.writer()
        assert w.write(1.5) == 1
        assert w.write(np.float64(2.5)) == 2
        value, version = st.read()
        assert (value, version) == (2.5, 2)
        assert isinstance(value, np.float64)


def test_structured_board_round_trips_through_open(unique_name: str) -> None:
    dt = np.dtype([("pos", "<f8", (3,)), ("id", "<u4"), ("name", "S8")])
    with shmchan.State.create(unique_name, dtype=dt, metadata={"robot": "r2"}) as st:
        st.writer().write(((1.0, 2.0, 3.0), 7, b"arm"))
        with shmchan.Channel.open(unique_name) as other:
            assert isinstance(other, shmchan.State)
            assert other.dtype == dt
            assert other.info is not None and other.info.metadata == {"robot": "r2"}
            value, version = other.read()
            assert version == 1
            assert list(value["pos"]) == [1.0, 2.0, 3.0]
            assert (int(value["id"]), bytes(value["name"])) == (7, b"arm")


def test_subarray_board_reads_an_array_copy(unique_name: str) -> None:
    dt = np.dtype((np.uint64, (512,)))
    with shmchan.State.create(unique_name, dtype=dt) as st:
        w = st.writer()
        w.write(np.arange(512, dtype=np.uint64))
        a, v1 = st.read()
        assert a.shape == (512,) and a.dtype == np.uint64 and v1 == 1
        w.write(np.arange(512, dtype=np.uint64) * 2)
        assert int(a[5]) == 5  # a private copy: a newer value does not change it
        b, v2 = st.read()
        assert (int(b[5]), v2) == (10, 2)
        a[0] = 99  # and writable, without touching the board
        assert int(st.read()[0][0]) == 0
        assert st.info is not None and (st.info.dtype, st.info.shape) == (np.dtype(np.uint64), (512,))


def test_bytes_and_schema_boards(unique_name: str) -> None:
    with shmchan.State.create(unique_name, max_size=32) as st:
        w = st.writer()
        w.write(b"hello")
        w.write(bytearray(b"hi"))
        assert st.read() == (b"hi", 2)
        with pytest.raises(ValueError, match="at most 32"):
            w.write(b"x" * 33)
    with shmchan.State.create(unique_name, schema="tensor", max_size=4096) as st:
        assert st.info is not None and st.info.payload is not None
        w = st.writer()
        with pytest.raises(ValueError, match="file identifier"):
            w.write(b"\0" * 16)


def test_wrong_values_are_refused(unique_name: str) -> None:
    with shmchan.State.create(unique_name, dtype=np.dtype((np.int32, (4,)))) as st:
        w = st.writer()
        with pytest.raises(ValueError, match="shape"):
            w.write([1, 2, 3])
        assert st.version == 0


@pytest.mark.parametrize(
    ("kwargs", "err"),
    [({}, ValueError), ({"dtype": "f8", "schema": "tensor"}, ValueError), ({"max_size": 0}, ValueError),
     ({"dtype": "f8", "max_size": 4}, ValueError), ({"dtype": np.dtype("V0")}, ValueError)],
)
def test_create_refuses_bad_arguments(unique_name: str, kwargs: dict, err: type) -> None:
    with pytest.raises(err):
        shmchan.State.create(unique_name, **kwargs)


def test_one_writer_and_no_reader(unique_name: str, spawn) -> None:
    with shmchan.State.create(unique_name, dtype=STATE_DTYPE) as st:
        p = spawn("state_writer", unique_name, 3, 0)
        p.expect("ready")
        with pytest.raises(shmchan.ChannelBusyError):
            st.writer()
        with pytest.raises(TypeError, match="read"):
            st.reader()
        p.expect("done")
        value, version = st.read()
        assert version == 3 and int(value["n"]) == 3
        p.send_line("exit")
        assert p.finish()[0] == 0
        assert st.writer().write(state_value(4)) == 4  # a new writer continues the versions


# ---- waiting ----


def test_wait_for_change(unique_name: str, spawn) -> None:
    with shmchan.State.create(unique_name, dtype=STATE_DTYPE) as st:
        with pytest.raises(shmchan.ChannelTimeoutError):
            st.wait_for_change(0, timeout=0)
        with pytest.raises(shmchan.ChannelTimeoutError):
            st.wait_for_change(0, timeout=0.05)
        waiter = spawn("state_waiter", unique_name, 0)
        waiter.expect("ready")
        time.sleep(0.2)
        w = st.writer()
        w.write(state_value(1))
        assert waiter.expect("changed", timeout=10) == "changed 1"
        assert st.wait_for_change(0, timeout=0) == 1  # already different: no wait


def test_wait_for_change_sees_the_writer_die(unique_name: str, spawn) -> None:
    with shmchan.State.create(unique_name, dtype=STATE_DTYPE) as st:
        p = spawn("state_writer", unique_name, 1, 0)
        p.expect("done")
        t0 = time.monotonic()
        p.kill(signal.SIGKILL)
        with pytest.raises(shmchan.PeerDeadError, match="died"):
            st.wait_for_change(1, timeout=10)
        assert time.monotonic() - t0 < 5


# ---- many processes ----


@pytest.mark.timeout(120)
def test_readers_hammering_never_see_a_torn_value(unique_name: str, spawn) -> None:
    """Three processes read as fast as they can while a fourth publishes 20000 values whose every
    field follows from the version: no read is torn, versions never go backwards."""
    with shmchan.State.create(unique_name, dtype=STATE_DTYPE) as st:
        readers = [spawn("state_hammer", unique_name, 20000, 60.0) for _ in range(3)]
        for r in readers:
            r.expect("ready")
        w = spawn("state_writer", unique_name, 20000, 0)
        w.expect("done", timeout=60)
        reports = []
        for r in readers:
            code, rest, err = r.finish(timeout=60)
            assert code == 0, err
            reports.append(json.loads(rest[-1]))
        w.send_line("exit")
        assert w.finish()[0] == 0
        for rep in reports:
            assert (rep["torn"], rep["backwards"]) == (0, 0)
            assert rep["last"] == 20000, rep  # each reader followed the writer to its last value
            assert rep["reads"] > 1000 and rep["distinct"] > 10, rep
        assert st.read()[1] == 20000
