"""Names, geometries and arguments are checked in Python before any system call; name clashes and
second writers/readers are refused."""

from __future__ import annotations

import os

import pytest

import shmchan
import shmchan.channel
from shmchan._layout import shm_path
from shmchan._names import MAX_CAPACITY, MAX_SLOT_SIZE, NAME_MAX


class _NoSyscalls:
    """Stands in for the compiled core: any use of it fails the test."""

    def __getattr__(self, attr: str) -> object:
        raise AssertionError(f"the C core was called ({attr}) before the arguments were validated")


@pytest.fixture
def no_core(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every call into the C core from shmchan.channel fail the test."""
    monkeypatch.setattr(shmchan.channel, "lib", _NoSyscalls())


BAD_NAMES = [
    pytest.param("", id="empty"),
    pytest.param("/", id="slash"),
    pytest.param(".", id="dot"),
    pytest.param("..", id="dotdot"),
    pytest.param("/.", id="slash-dot"),
    pytest.param("a/b", id="inner-slash"),
    pytest.param("/a", id="leading-slash"),
    pytest.param("a\x00b", id="nul"),
    pytest.param("x" * 248, id="248-chars"),
    pytest.param("x" * 256, id="256-chars"),
    pytest.param("x" * 300, id="300-chars"),
    pytest.param("x" * 1000, id="1000-chars"),
    pytest.param("caf\u00e9", id="non-ascii-latin"),
    pytest.param("\u540d\u524d", id="non-ascii-cjk"),
    pytest.param("-a", id="leading-dash"),
    pytest.param(".a", id="leading-dot"),
    pytest.param("a b", id="space"),
    pytest.param("a:b", id="colon"),
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_create_rejects_bad_name_before_any_syscall(name: str, no_core: None) -> None:
    """Channel.create with an invalid name raises ValueError without calling the C core."""
    with pytest.raises(ValueError, match="channel name"):
        shmchan.Channel.create(name, slot_size=64, capacity=4)


@pytest.mark.parametrize("name", BAD_NAMES)
def test_open_rejects_bad_name_before_any_syscall(name: str, no_core: None) -> None:
    """Channel.open with an invalid name raises ValueError without calling the C core."""
    with pytest.raises(ValueError, match="channel name"):
        shmchan.Channel.open(name)


@pytest.mark.parametrize("name", BAD_NAMES)
def test_unlink_rejects_bad_name_before_any_syscall(name: str, no_core: None) -> None:
    """shmchan.unlink with an invalid name raises ValueError without calling the C core."""
    with pytest.raises(ValueError, match="channel name"):
        shmchan.unlink(name)


def test_bad_name_is_not_a_channel_error() -> None:
    """A bad name raises a plain ValueError, not ChannelExistsError (shm_open turns "/." into EEXIST)."""
    with pytest.raises(ValueError) as info:
        shmchan.Channel.create("/.", slot_size=64, capacity=4)
    assert not isinstance(info.value, OSError)


@pytest.mark.parametrize("name", [None, 5, b"bytes-name"], ids=["none-with-path-none", "int", "bytes"])
def test_non_string_name_raises_typeerror(name: object, no_core: None) -> None:
    """A name that is not a str raises TypeError (None because no path is given either)."""
    with pytest.raises(TypeError):
        shmchan.Channel.create(name, slot_size=64, capacity=4)  # type: ignore[arg-type]


def test_name_and_path_together_raise_typeerror(tmp_path: os.PathLike[str], no_core: None) -> None:
    """Giving both a name and a path raises TypeError."""
    with pytest.raises(TypeError, match="exactly one"):
        shmchan.Channel.create("a", path=os.path.join(tmp_path, "f"), slot_size=64, capacity=4)


def test_empty_path_raises_valueerror(no_core: None) -> None:
    """An empty path raises ValueError."""
    with pytest.raises(ValueError, match="path is empty"):
        shmchan.Channel.create(path="", slot_size=64, capacity=4)


def test_longest_valid_name_works(unique_name: str) -> None:
    """A name of exactly NAME_MAX (247) characters can be created, opened and unlinked."""
    name = (unique_name + "x" * NAME_MAX)[:NAME_MAX]
    assert NAME_MAX == 247
    with shmchan.Channel.create(name, slot_size=64, capacity=4) as ch:
        assert os.path.exists(shm_path(name))
        assert ch.name == name
        with shmchan.Channel.open(name) as other:
            assert other.name == name
    assert not os.path.exists(shm_path(name))


@pytest.mark.parametrize("name", ["a", "A_b-c.d", "0", "_x", "x.", "x..y", "cam0"])
def test_unusual_but_valid_names_round_trip(name: str, unique_name: str) -> None:
    """Names made of A-Z a-z 0-9 _ . - (not starting with . or -) are accepted."""
    full = f"{name}-{unique_name}"
    with shmchan.Channel.create(full, slot_size=64, capacity=1) as ch:
        w, r = ch.writer(), ch.reader()
        w.send(b"x")
        assert r.recv_bytes(timeout=0) == b"x"


BAD_GEOMETRY = [
    pytest.param(0, 4, "slot_size must be positive", id="slot-0"),
    pytest.param(-1, 4, "slot_size must be positive", id="slot-neg"),
    pytest.param(2**41, 4, "exceeds the limit", id="slot-2^41"),
    pytest.param(2**63, 4, "exceeds the limit", id="slot-2^63"),
    pytest.param(2**64 + 5, 4, "exceeds the limit", id="slot-2^64+5"),
    pytest.param(64, 0, "power of two", id="cap-0"),
    pytest.param(64, 3, "power of two", id="cap-3"),
    pytest.param(64, 6, "power of two", id="cap-6"),
    pytest.param(64, -4, "power of two", id="cap-neg"),
    pytest.param(64, 2**25, "exceeds the limit", id="cap-2^25"),
    pytest.param(64, 2**40, "exceeds the limit", id="cap-2^40"),
    pytest.param(2**40, 2**24, "over the limit", id="product-too-large"),
    pytest.param(2**30, 2**17, "over the limit", id="product-just-over-2^46"),
]


@pytest.mark.parametrize(("slot_size", "capacity", "message"), BAD_GEOMETRY)
def test_bad_geometry_raises_valueerror_before_any_syscall(
    slot_size: int, capacity: int, message: str, no_core: None
) -> None:
    """Impossible slot sizes, capacities and totals raise ValueError without calling the C core."""
    with pytest.raises(ValueError, match=message):
        shmchan.Channel.create("geom", slot_size=slot_size, capacity=capacity)


@pytest.mark.parametrize(
    ("slot_size", "capacity", "what"),
    [
        pytest.param(1.5, 4, "slot_size must be an int, not float", id="slot-float"),
        pytest.param(64.0, 4, "slot_size must be an int, not float", id="slot-integral-float"),
        pytest.param(True, 4, "slot_size must be an int, not bool", id="slot-bool"),
        pytest.param("64", 4, "slot_size must be an int, not str", id="slot-str"),
        pytest.param(64, 4.0, "capacity must be an int, not float", id="cap-float"),
        pytest.param(64, True, "capacity must be an int, not bool", id="cap-bool"),
        pytest.param(None, 4, "slot_size must be an int, not NoneType", id="slot-none"),
    ],
)
def test_non_integer_geometry_raises_typeerror_before_any_syscall(
    slot_size: object, capacity: object, what: str, no_core: None
) -> None:
    """Floats, bools and other non-integers as sizes raise TypeError (as _names._int does)."""
    with pytest.raises(TypeError, match=what):
        shmchan.Channel.create("geom", slot_size=slot_size, capacity=capacity)  # type: ignore[arg-type]


def test_numpy_integers_are_accepted_as_geometry(unique_name: str) -> None:
    """Integer-like objects (numpy integers) are accepted for slot_size and capacity."""
    import numpy as np

    with shmchan.Channel.create(unique_name, slot_size=np.int64(100), capacity=np.uint32(2)) as ch:
        assert (ch.slot_size, ch.capacity) == (100, 2)


def test_largest_capacity_and_slot_size_are_within_limits() -> None:
    """The documented limits are 2**24 slots and 2**40 bytes per slot."""
    assert MAX_CAPACITY == 2**24
    assert MAX_SLOT_SIZE == 2**40


@pytest.mark.parametrize("align", [0, 3, 4, 2**22, -8, 12])
def test_bad_slot_align_raises_valueerror_before_any_syscall(align: int, no_core: None) -> None:
    """slot_align must be a power of two from 8 to 2 MiB."""
    with pytest.raises(ValueError, match="slot_align"):
        shmchan.Channel.create("geom", slot_size=64, capacity=4, slot_align=align)


@pytest.mark.parametrize("msync", ["", "always", "SYNC", None])
def test_bad_msync_raises_valueerror_before_any_syscall(msync: object, no_core: None) -> None:
    """msync must be one of none, async, sync, explicit."""
    with pytest.raises(ValueError, match="msync"):
        shmchan.Channel.create("geom", slot_size=64, capacity=4, msync=msync)  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", [-1, 0o1000, 0o4755, True, 1.5, "0600"])
def test_bad_mode_raises_valueerror_before_any_syscall(mode: object, no_core: None) -> None:
    """mode must be permission bits between 0 and 0o777."""
    with pytest.raises(ValueError, match="mode"):
        shmchan.Channel.create("geom", slot_size=64, capacity=4, mode=mode)  # type: ignore[arg-type]


@pytest.mark.parametrize("timeout", [-1, -0.001, float("nan"), float("-inf")])
def test_bad_open_timeout_raises_valueerror_before_any_syscall(timeout: float, no_core: None) -> None:
    """A negative or NaN open timeout raises ValueError."""
    with pytest.raises(ValueError, match="timeout"):
        shmchan.Channel.open("geom", timeout=timeout)


def test_open_missing_channel_raises_not_found(unique_name: str) -> None:
    """Opening a name nobody created raises ChannelNotFoundError, a FileNotFoundError."""
    with pytest.raises(shmchan.ChannelNotFoundError) as info:
        shmchan.Channel.open(unique_name)
    assert isinstance(info.value, FileNotFoundError)
    assert isinstance(info.value, shmchan.ShmchanError)
    assert unique_name in str(info.value)


def test_open_missing_file_channel_raises_not_found(tmp_path: os.PathLike[str]) -> None:
    """Opening a path that does not exist raises ChannelNotFoundError."""
    with pytest.raises(shmchan.ChannelNotFoundError):
        shmchan.Channel.open(path=os.path.join(tmp_path, "missing"))


def test_create_existing_name_raises_exists(unique_name: str) -> None:
    """Creating a name that is taken raises ChannelExistsError (a FileExistsError) with a hint."""
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=4) as ch:
        with pytest.raises(shmchan.ChannelExistsError) as info:
            shmchan.Channel.create(unique_name, slot_size=64, capacity=4)
        assert isinstance(info.value, FileExistsError)
        assert "in use" in str(info.value)
        # the failed create did not remove or damage the existing channel
        w, r = ch.writer(), ch.reader()
        w.send(b"still here")
        assert r.recv_bytes(timeout=0) == b"still here"


def test_create_existing_file_raises_exists(tmp_path: os.PathLike[str]) -> None:
    """Creating a file-backed channel over an existing file raises ChannelExistsError and keeps the file."""
    p = os.path.join(tmp_path, "taken")
    with open(p, "wb") as f:
        f.write(b"precious")
    with pytest.raises(shmchan.ChannelExistsError):
        shmchan.Channel.create(path=p, slot_size=64, capacity=4)
    with open(p, "rb") as f:
        assert f.read() == b"precious"


@pytest.mark.parametrize("role", ["writer", "reader"])
def test_second_attach_on_same_handle_raises_busy(unique_name: str, role: str) -> None:
    """A second writer (reader) on the same handle raises ChannelBusyError."""
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=4) as ch:
        getattr(ch, role)()
        with pytest.raises(shmchan.ChannelBusyError):
            getattr(ch, role)()


@pytest.mark.parametrize("role", ["writer", "reader"])
def test_second_attach_on_other_handle_raises_busy(unique_name: str, role: str) -> None:
    """A second writer (reader) via another handle in this process raises ChannelBusyError until the first closes."""
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=4) as ch, shmchan.Channel.open(
        unique_name
    ) as other:
        first = getattr(ch, role)()
        with pytest.raises(shmchan.ChannelBusyError):
            getattr(other, role)()
        first.close()
        second = getattr(other, role)()
        assert not second.closed


@pytest.mark.parametrize("role", ["writer", "reader"])
def test_attach_while_other_process_holds_role_raises_busy(unique_name: str, role: str, spawn) -> None:
    """Attaching a writer (reader) held by another process raises ChannelBusyError until that process exits."""
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=4) as ch:
        peer = spawn("hold", unique_name, role)
        peer.expect("ready")
        with pytest.raises(shmchan.ChannelBusyError):
            getattr(ch, role)()
        peer.send_line("exit")
        rc, _, err = peer.finish()
        assert rc == 0, err
        getattr(ch, role)()


@pytest.mark.parametrize("role", ["writer", "reader"])
def test_other_process_cannot_attach_role_held_here(unique_name: str, role: str, spawn) -> None:
    """A process trying to attach a writer (reader) that this process holds gets ChannelBusyError."""
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=4) as ch:
        getattr(ch, role)()
        peer = spawn("try_attach", unique_name, role)
        assert peer.readline() == "busy"
        rc, _, err = peer.finish()
        assert rc == 0, err


def test_writer_and_reader_in_different_processes_are_not_busy(unique_name: str, spawn) -> None:
    """One writer and one reader may be attached at once, in different processes."""
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=4) as ch:
        ch.writer()
        peer = spawn("try_attach", unique_name, "reader")
        assert peer.readline() == "attached"
        assert peer.finish()[0] == 0
