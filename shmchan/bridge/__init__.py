"""Bridges: a local channel, broadcast or state board reachable from other hosts over Zenoh.

An :class:`Exporter` reads a local channel and publishes every message on a Zenoh key (default
``shmchan/NAME``); an :class:`Importer` on another host subscribes to the key, creates the local
channel like the remote one (kind, geometry, descriptor) or opens a compatible one, and writes
every message into it. Local programs on both sides use ordinary shmchan channels::

    # host A: channel cam0 exists (a camera writes it)
    with shmchan.bridge.export("cam0", listen=["tcp/0.0.0.0:7447"]) as ex:
        ex.wait()                                  # until close() or an error

    # host B
    with shmchan.bridge.import_("shmchan/cam0", "cam0", connect=["tcp/hostA:7447"]) as im:
        im.wait_ready(timeout=10)                  # the local channel cam0 exists now
        ...                                        # read it with shmchan.Channel.open("cam0")

SPSC channels and block broadcasts are bridged reliably, with back-pressure from the remote
consumer to the local writer; overwrite broadcasts and state boards best effort, newest value
first, with what never arrived counted. Every message carries its position, so loss, duplicates
and reordering across the bridge are detected, and a bridge that is killed and restarted resumes.
A bridged channel shows as such in ``shmchan ls``/``stat``: each bridge publishes its counters on
a state board ``NAME.bridge-out`` / ``NAME.bridge-in`` (see :func:`bridges_of`).

With no endpoint given an exporter listens on ``tcp/127.0.0.1:7447`` and an importer connects
there; multicast scouting and gossip are off unless ``scouting=True`` (see :func:`zenoh_config`).
Needs the ``bridge`` extra (``pip install 'shmchan[bridge]'``: eclipse-zenoh).
"""

from __future__ import annotations

from typing import Any

from ._base import Bridge, BridgeStats
from ._config import DEFAULT_ENDPOINT, zenoh_config
from ._export import Exporter
from ._import import Importer, check_compatible
from ._status import STATUS_DTYPE, bridges_of
from ._wire import BridgeProtocolError, RemoteInfo

__all__ = [
    "DEFAULT_ENDPOINT",
    "STATUS_DTYPE",
    "Bridge",
    "BridgeProtocolError",
    "BridgeStats",
    "Exporter",
    "Importer",
    "RemoteInfo",
    "bridges_of",
    "check_compatible",
    "export",
    "import_",
    "zenoh_config",
]


def export(name: str, key: str | None = None, *, timeout: float | None = 10.0, **options: Any) -> Exporter:
    """Start exporting local channel ``name`` on Zenoh key ``key`` (default ``shmchan/NAME``) and
    return the running :class:`Exporter` (a context manager; :meth:`Exporter.close` stops it).

    Options: ``listen``, ``connect`` (lists of Zenoh endpoints), ``mode`` (``"peer"`` or
    ``"client"``), ``config`` (a Zenoh JSON5 file), ``scouting`` (default False),
    ``allow_foreign`` (as for :meth:`shmchan.Channel.open`)."""
    ex = Exporter(name, key, **options)
    ex.start(timeout)
    return ex


def import_(key: str, name: str, *, timeout: float | None = 10.0, **options: Any) -> Importer:
    """Start importing Zenoh key ``key`` into local channel ``name`` and return the running
    :class:`Importer` (a context manager). Its Zenoh session is open when this returns; once an
    exporter has described the channel, the local channel exists and the importer has subscribed
    (:meth:`Importer.wait_ready`). Options as for :func:`export`,
    plus ``persist`` (default True: the channel stays after the importer stops)."""
    im = Importer(key, name, **options)
    im.start(timeout)
    return im
