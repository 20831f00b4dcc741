"""A private network namespace with nothing but a loopback interface, for the bridge's tests and
benchmarks: Zenoh sessions started in it cannot reach (or be reached from) any other network.

A small holder process creates the namespace (``unshare --net``, plus ``--map-root-user`` when not
root, so that it works without privileges where user namespaces are allowed), brings ``lo`` up and
waits; commands run in it through ``nsenter``. Shared memory is not namespaced this way, so
processes inside and outside share channels as usual.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence

__all__ = ["PrivateNetwork"]

# brings lo up (SIOCGIFFLAGS / SIOCSIFFLAGS with IFF_UP), checks 127.0.0.1 works, then waits for stdin to close
_HOLDER = r"""
import fcntl, socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
req = struct.pack("16sH14x", b"lo", 0)
flags = struct.unpack("16sH14x", fcntl.ioctl(s, 0x8913, req))[1]
fcntl.ioctl(s, 0x8914, struct.pack("16sH14x", b"lo", flags | 1))
t = socket.socket(); t.bind(("127.0.0.1", 0)); t.listen(1)
c = socket.create_connection(t.getsockname(), timeout=2); c.close(); t.close(); s.close()
names = sorted(n for _, n in socket.if_nameindex())
print("ready", ",".join(names), flush=True)
sys.stdin.read()
"""


class PrivateNetwork:
    """A network namespace that has only ``lo`` (up). :meth:`command` wraps a command line so that
    it runs inside; :meth:`close` ends the namespace (once no process runs in it any more)."""

    def __init__(self) -> None:
        self.userns = os.geteuid() != 0
        for tool in ("unshare", "nsenter"):
            if shutil.which(tool) is None:
                raise OSError(f"{tool} (util-linux) is not installed")
        argv = ["unshare", "--net", *(["--map-root-user"] if self.userns else []), sys.executable, "-c", _HOLDER]
        self._proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline().decode().split()
        if not line or line[0] != "ready":
            self.close()
            err = self._proc.stderr.read().decode(errors="replace").strip() if self._proc.stderr else ""
            raise OSError(f"cannot make a private network namespace: {err or 'the holder process failed'}")
        #: the interfaces in the namespace (just ``lo``)
        self.interfaces = line[1].split(",") if len(line) > 1 else []
        self.pid = self._proc.pid

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside the namespace."""
        ns = f"/proc/{self.pid}/ns"
        enter = ["nsenter", f"--net={ns}/net"]
        if self.userns:
            enter.insert(1, f"--user={ns}/user")
        return [*enter, "--", *argv]

    def close(self) -> None:
        """End the holder process; idempotent."""
        p = self._proc
        for f in (p.stdin, p.stdout, p.stderr):
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()
        if p.poll() is None:
            p.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(5)
        if p.poll() is None:
            p.kill()
            p.wait()

    def __enter__(self) -> PrivateNetwork:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
