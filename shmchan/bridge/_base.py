"""What exporters and importers share: a background thread, clean shutdown, counters."""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from .. import errors as E
from .._names import check_name
from ._config import zenoh_config

__all__ = ["Bridge", "BridgeStats"]


@dataclass(frozen=True)
class BridgeStats:
    """A bridge's counters, as seen now (the same as its status board; see ``shmchan stat``)."""

    #: messages published (exporter) or written into the local channel (importer)
    messages: int
    bytes: int
    #: exporter: lapped locally before it could take them (overwrite policy); importer: remote
    #: positions (or versions) that never arrived, counted when a later one (or the end) did
    lost: int
    #: importer: samples of a position already written or already counted lost, dropped
    duplicates: int
    #: importer: malformed samples (bad header, larger than a slot), dropped
    rejected: int
    #: the last position (or version) sent or written
    last_seq: int
    #: exporter: a subscriber matches the key; importer: an exporter described the channel
    connected: bool
    #: bridges that took over this one's status board after a crash, counted over time
    restarts: int
    #: importer: how often the remote channel was created again (a new stream)
    resets: int
    #: whether the stream is bridged reliably (back-pressure) or best effort (latest value)
    reliable: bool


class _Stopped(Exception):
    """The bridge was asked to stop while it waited."""


class Bridge:
    """Base of :class:`Exporter` and :class:`Importer`: runs on a thread of its own once started;
    :meth:`close` stops it (idempotent). A context manager."""

    _role = ""

    def __init__(self, key: str, name: str, *, listen: tuple[str, ...] | list[str] = (),
                 connect: tuple[str, ...] | list[str] = (), mode: str | None = None,
                 config: str | os.PathLike[str] | None = None, scouting: bool = False,
                 allow_foreign: bool = False) -> None:
        check_name(name)
        if not isinstance(key, str) or not key or any(c in key for c in "*$?#") or key.startswith("/") \
                or key.endswith("/") or "//" in key or "@" in key:
            raise ValueError(f"key {key!r} must be a plain Zenoh key such as shmchan/cam0 (no wildcards, no '@', "
                             "no empty chunk)")
        if len(f"{name}.bridge-out") > 247:
            raise ValueError(f"channel name {name!r} is too long to bridge (its status board's name must fit "
                             "247 characters)")
        self.key = key
        self.name = name
        # built (and checked) now, so that a bad option fails in the caller, not on the thread
        self._config = zenoh_config(self._role, listen=listen, connect=connect, mode=mode, config=config,
                                    scouting=scouting)
        self._allow_foreign = allow_foreign
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._stats: BridgeStats | None = None
        self._value: Any = None  # the status board's record while running
        self.kind: str | None = None
        self.reliable: bool | None = None

    # ---- lifetime ----

    def start(self, timeout: float | None = 10.0) -> Bridge:
        """Start the bridge on a background thread and wait until it runs (an exporter has attached
        to its channel and declared its publisher; an importer has opened its Zenoh session and
        asks for the channel's description). Raises what made it fail, or
        :class:`ChannelTimeoutError` after ``timeout`` seconds."""
        if self._thread is not None:
            raise RuntimeError("the bridge was started already")
        self._thread = threading.Thread(target=self._main, name=f"shmchan-bridge-{self._role}:{self.name}",
                                        daemon=True)
        self._thread.start()
        if not self._wait_event(self._ready, timeout):
            self.close()
            raise E.ChannelTimeoutError(f"the {self._role}er of {self.name!r} did not start within {timeout} s")
        return self

    def _wait_event(self, event: threading.Event, timeout: float | None) -> bool:
        """Wait for ``event`` or the end of the thread; raise the thread's error if it failed."""
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        while not event.is_set():
            if self._done.is_set():
                break
            left = 0.1 if deadline is None else min(0.1, deadline - time.monotonic())
            if left <= 0:
                return False
            self._done.wait(left)
        if self._error is not None:
            raise self._error
        return event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the bridge stops (after :meth:`close`, or on an error, which is raised here).
        Returns False if it still runs after ``timeout`` seconds."""
        done = self._done.wait(timeout)
        if self._error is not None:
            raise self._error
        return done

    @property
    def running(self) -> bool:
        """Whether the bridge's thread is running."""
        return self._thread is not None and not self._done.is_set()

    @property
    def error(self) -> BaseException | None:
        """What stopped the bridge, if it failed."""
        return self._error

    def close(self, timeout: float | None = 10.0) -> None:
        """Stop the bridge and wait for its thread (which detaches from the channel and closes the
        Zenoh session). Idempotent; does not raise what made the bridge fail (see :attr:`error`)."""
        self._stop.set()
        self._interrupt()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def __enter__(self) -> Bridge:
        if self._thread is None:
            self.start()
        return self

    def __exit__(self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def stats(self) -> BridgeStats:
        """The counters now (the last ones once stopped)."""
        value = self._value
        if value is None:
            return self._stats or BridgeStats(0, 0, 0, 0, 0, 0, False, 0, 0, bool(self.reliable))
        counts = {f: int(getattr(value, f)) for f in ("messages", "bytes", "lost", "duplicates", "rejected",
                                                      "last_seq", "restarts", "resets")}
        return BridgeStats(**counts, connected=bool(value.connected), reliable=bool(value.reliable))

    # ---- the thread ----

    def _main(self) -> None:
        try:
            with contextlib.ExitStack() as stack:
                self._run(stack)
        except _Stopped:
            pass
        except BaseException as exc:  # handed to wait()/start()
            self._error = exc
        finally:
            self._stats = self.stats()
            self._value = None
            self._done.set()

    def _run(self, stack: contextlib.ExitStack) -> None:
        raise NotImplementedError

    def _interrupt(self) -> None:
        """Wake the thread if it is blocked somewhere the stop flag is not polled."""

    def _check_stop(self) -> None:
        if self._stop.is_set():
            raise _Stopped
