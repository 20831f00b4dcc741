"""``shmchan bridge export`` and ``shmchan bridge import``."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from typing import Any, NoReturn

from .. import errors as E

__all__ = ["add_parser"]

EPILOG = ("With no --listen, --connect or --config endpoint, an exporter listens on tcp/127.0.0.1:7447 and an importer "
          "connects there: nothing leaves the host. Multicast scouting and gossip are off unless --scouting. "
          "Stop with Ctrl-C or SIGTERM: the bridge detaches cleanly. A bridge killed (kill -9) and started again "
          "resumes: the exporter takes the messages it held again, the importer drops what it already wrote "
          "and counts what never arrived. 'shmchan stat NAME' shows a bridged channel's counters.")


def _zenoh_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("zenoh")
    g.add_argument("--listen", action="append", default=[], metavar="ENDPOINT",
                   help="listen on this Zenoh endpoint, e.g. tcp/0.0.0.0:7447 (repeatable)")
    g.add_argument("--connect", action="append", default=[], metavar="ENDPOINT",
                   help="connect to this Zenoh endpoint, e.g. tcp/10.0.0.5:7447 (repeatable)")
    g.add_argument("--mode", choices=("peer", "client"), help="Zenoh mode (default peer; client: through a router)")
    g.add_argument("--config", metavar="FILE", help="a Zenoh JSON5 configuration (routers, TLS, access control)")
    g.add_argument("--scouting", action="store_true",
                   help="leave Zenoh's multicast scouting and gossip as configured (default: off)")
    p.add_argument("--foreign", action="store_true",
                   help="accept a channel owned by another user or writable by others (see shmchan stat --foreign)")


def add_parser(sub: Any) -> None:
    """Register ``shmchan bridge`` on the ``shmchan`` command's subparsers."""
    p = sub.add_parser("bridge", help="bridge channels to other hosts over Zenoh (export, import)",
                       description="Bridge a channel, broadcast or state board to other hosts over Zenoh. Needs "
                       "the bridge extra: pip install 'shmchan[bridge]'.", epilog=EPILOG)
    bsub = p.add_subparsers(dest="bridge_command", metavar="COMMAND")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
    e = bsub.add_parser("export", help="publish every message of a local channel on a Zenoh key",
                        description="Read local channel NAME (as its reader, one reader place of a broadcast, or a "
                        "reader of a state board) and publish every message on Zenoh key KEY. SPSC channels and "
                        "block broadcasts go reliably: the exporter takes a message only while an importer "
                        "subscribes, and a slow importer holds the local writer back. Overwrite broadcasts and "
                        "state boards go best effort, newest value first.", epilog=EPILOG)
    e.add_argument("name", metavar="NAME", help="the local channel")
    e.add_argument("--key", metavar="KEY", help="the Zenoh key (default shmchan/NAME)")
    _zenoh_options(e)
    e.set_defaults(func=_run_export)
    i = bsub.add_parser("import", help="write every message published on a Zenoh key into a local channel",
                        description="Subscribe to Zenoh key KEY and write every message into local channel NAME, "
                        "created with the remote channel's kind, geometry and descriptor (or opened if it exists "
                        "and is compatible; an incompatible one is refused, naming the field). The channel stays "
                        "after the importer stops (--remove-on-exit removes it).", epilog=EPILOG)
    i.add_argument("key", metavar="KEY", help="the Zenoh key an exporter publishes on (e.g. shmchan/cam0)")
    i.add_argument("name", metavar="NAME", help="the local channel")
    i.add_argument("--remove-on-exit", action="store_true",
                   help="remove the channel when the importer stops (if it created it)")
    _zenoh_options(i)
    i.set_defaults(func=_run_import)


def _options(args: argparse.Namespace) -> dict[str, Any]:
    return {"listen": args.listen, "connect": args.connect, "mode": args.mode, "config": args.config,
            "scouting": args.scouting, "allow_foreign": args.foreign}


def _say(text: str) -> None:
    print(text, flush=True)


def _counters(bridge: Any) -> str:
    st = bridge.stats()
    return (f"messages={st.messages} bytes={st.bytes} lost={st.lost} duplicates={st.duplicates} "
            f"rejected={st.rejected} last_seq={st.last_seq}")


def _where(bridge: Any) -> str:
    from ._config import describe_config

    c = describe_config(bridge._config)
    return f"listen {','.join(c['listen'] or []) or '-'}, connect {','.join(c['connect'] or []) or '-'}"


def _serve(bridge: Any, started: Any, ready: Any = None) -> int:
    """Run ``bridge`` until Ctrl-C, SIGTERM or an error; print its counters at the end."""
    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, stop)
    try:
        try:
            bridge.start()
            _say(started() + f" ({_where(bridge)})")
            if ready is not None:
                while not ready():
                    pass
            while not bridge.wait(0.2):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            bridge.close()
            with contextlib.suppress(BrokenPipeError):
                _say(f"stopped {bridge.name}: {_counters(bridge)}")
        if bridge.error is not None:
            raise bridge.error
    finally:
        signal.signal(signal.SIGTERM, old)
    return 0


def _delivery(bridge: Any) -> str:
    return "reliable" if bridge.reliable else "best effort"


def _fail(exc: BaseException) -> int:
    print(f"shmchan: {exc}", file=sys.stderr, flush=True)
    return 1


def _exit(rc: int) -> NoReturn:
    """Leave without the interpreter's shutdown, once the bridge has stopped and cleaned up: with
    zenoh-python 1.10.2, a process that had a Zenoh session sometimes aborts during that shutdown
    ("FATAL: exception not rethrown"), long after the session was closed."""
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(rc)


def _run_export(args: argparse.Namespace) -> int:
    _exit(_export(args))


def _run_import(args: argparse.Namespace) -> int:
    _exit(_import(args))


def _export(args: argparse.Namespace) -> int:
    try:
        from ._export import Exporter

        ex = Exporter(args.name, args.key, **_options(args))
        return _serve(ex, lambda: f"exporting {ex.name} ({ex.kind}, {_delivery(ex)}) on {ex.key}")
    except (E.ShmchanError, OSError, ValueError, ImportError) as exc:
        return _fail(exc)


def _import(args: argparse.Namespace) -> int:
    try:
        from ._import import Importer

        im = Importer(args.key, args.name, persist=not args.remove_on_exit, **_options(args))

        def ready() -> bool:
            if im.wait_ready(0.2):
                kind = im.kind or "?"
                _say(f"imported {im.key} into {im.name} ({kind}, {_delivery(im)})")
                return True
            return False

        return _serve(im, lambda: f"importing {im.key} into {im.name}; waiting for an exporter", ready)
    except (E.ShmchanError, OSError, ValueError, ImportError) as exc:
        return _fail(exc)
