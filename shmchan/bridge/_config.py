"""The Zenoh configuration of a bridge: safe unless told otherwise.

Zenoh's own defaults listen on every interface (``tcp/[::]:0``) and scout for peers by multicast.
A bridge never does either unless asked: with no endpoint given, an exporter listens on
``tcp/127.0.0.1:7447`` and an importer connects there, so nothing leaves the host; multicast
scouting and gossip are always switched off unless ``scouting=True``; and Zenoh's own
shared-memory transport is off (a bridge exists for the network path; on one host shmchan itself is
the shared-memory transport). A Zenoh JSON5 file (``config=``) is the way to routers, TLS and access
control: its endpoints and settings are used, except that scouting stays off unless
``scouting=True``, and a file that sets no listen endpoint still gets the loopback default.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

__all__ = ["DEFAULT_ENDPOINT", "zenoh_config"]

#: where an exporter listens and an importer connects when no endpoint is given (Zenoh's usual port)
DEFAULT_ENDPOINT = "tcp/127.0.0.1:7447"
MODES = ("peer", "client")


def _zenoh() -> Any:
    try:
        import zenoh
    except ImportError as exc:  # the optional extra
        raise ImportError("shmchan.bridge needs Zenoh: pip install 'shmchan[bridge]' (eclipse-zenoh)") from exc
    return zenoh


def _check_endpoints(what: str, endpoints: Sequence[str]) -> list[str]:
    out = []
    for e in endpoints:
        if not isinstance(e, str) or "/" not in e or not e.split("/", 1)[1]:
            raise ValueError(f"{what} endpoint {e!r} is not a Zenoh endpoint such as tcp/127.0.0.1:7447")
        out.append(e)
    return out


def zenoh_config(role: str, *, listen: Sequence[str] = (), connect: Sequence[str] = (), mode: str | None = None,
                 config: str | os.PathLike[str] | None = None, scouting: bool = False) -> Any:
    """The ``zenoh.Config`` of a bridge whose ``role`` is ``"export"`` or ``"import"``.

    ``listen``/``connect`` are Zenoh endpoints (``tcp/HOST:PORT``, ``unixsock-stream/PATH``, ...);
    ``mode`` is ``"peer"`` (default) or ``"client"`` (through a router); ``config`` a Zenoh JSON5
    file. See the module documentation for what is switched off and the loopback defaults.
    """
    if role not in ("export", "import"):
        raise ValueError(f"role must be 'export' or 'import', got {role!r}")
    if mode is not None and mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    listen = _check_endpoints("listen", listen)
    connect = _check_endpoints("connect", connect)
    zenoh = _zenoh()
    if config is not None:
        path = os.fspath(config)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"Zenoh configuration file {path!r} not found")
        cfg = zenoh.Config.from_file(path)
        from_file = True
    else:
        cfg = zenoh.Config()
        from_file = False
    default = zenoh.Config()
    if mode is not None:
        cfg.insert_json5("mode", json.dumps(mode))
    if not scouting:
        cfg.insert_json5("scouting/multicast/enabled", "false")
        cfg.insert_json5("scouting/gossip/enabled", "false")
    if not from_file:
        cfg.insert_json5("transport/shared_memory/enabled", "false")
    file_listen = from_file and cfg.get_json("listen/endpoints") != default.get_json("listen/endpoints")
    file_connect = from_file and cfg.get_json("connect/endpoints") != default.get_json("connect/endpoints")
    if not listen and not connect and not file_listen and not file_connect:
        if role == "export":
            listen = [DEFAULT_ENDPOINT]
        else:
            connect = [DEFAULT_ENDPOINT]
    if listen or not file_listen:
        # never Zenoh's default (every interface): the given endpoints, or none at all
        cfg.insert_json5("listen/endpoints", json.dumps(listen))
    if connect or not file_connect:
        cfg.insert_json5("connect/endpoints", json.dumps(connect))
    return cfg


def describe_config(cfg: Any) -> dict[str, Any]:
    """What a configuration listens on and connects to (for the CLI's first line and tests)."""
    def get(key: str) -> Any:
        try:
            return json.loads(cfg.get_json(key))
        except (ValueError, TypeError):
            return None

    return {
        "mode": get("mode") or "peer",
        "listen": get("listen/endpoints"),
        "connect": get("connect/endpoints"),
        "multicast_scouting": get("scouting/multicast/enabled"),
        "gossip": get("scouting/gossip/enabled"),
    }
