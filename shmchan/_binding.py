"""Thin layer over the compiled C core: loads it, checks its stamps, maps error codes to exceptions."""

from __future__ import annotations

import atexit
import errno
import os
from typing import Any, NoReturn

from . import errors as E
from ._version import __version__

try:
    from ._shmchan_cffi import ffi, lib
except ImportError as exc:  # pragma: no cover - only on a broken install
    raise ImportError(
        "shmchan's compiled core is missing: install the package with `pip install .` "
        "(or `pip install -e .` for development) so that it is built"
    ) from exc

__all__ = ["LAYOUT_MAJOR", "LAYOUT_MINOR", "diag_text", "ffi", "lib", "raise_for"]

#: The layout version this Python package was written for.
LAYOUT_MAJOR = 1
LAYOUT_MINOR = 0

_built = ffi.string(lib.shmchan_version()).decode()
if _built != __version__:
    raise ImportError(f"shmchan's compiled core is version {_built} but the package is {__version__}: rebuild it")
if (lib.shmchan_layout_major(), lib.shmchan_layout_minor()) != (LAYOUT_MAJOR, LAYOUT_MINOR):
    raise ImportError(
        f"shmchan's compiled core speaks layout {lib.shmchan_layout_major()}.{lib.shmchan_layout_minor()} "
        f"but the package expects {LAYOUT_MAJOR}.{LAYOUT_MINOR}: rebuild it"
    )

_OWN: dict[int, type[E.ShmchanError]] = {
    lib.SHMCHAN_EBADMAGIC: E.IncompatibleChannelError,
    lib.SHMCHAN_EVERSION: E.IncompatibleChannelError,
    lib.SHMCHAN_ENOTINIT: E.IncompatibleChannelError,
    lib.SHMCHAN_ENOTREG: E.IncompatibleChannelError,
    lib.SHMCHAN_ECORRUPT: E.CorruptChannelError,
    lib.SHMCHAN_EPEERDEAD: E.PeerDeadError,
    lib.SHMCHAN_EENDED: E.ChannelEndedError,
}

_OS: dict[int, type[OSError]] = {
    errno.EEXIST: E.ChannelExistsError,
    errno.ENOENT: E.ChannelNotFoundError,
    errno.EACCES: E.ChannelPermissionError,
    errno.EPERM: E.ChannelPermissionError,
    errno.ENOSPC: E.ChannelAllocationError,
    errno.ENOMEM: E.ChannelAllocationError,
    errno.EFBIG: E.ChannelAllocationError,
    errno.EMFILE: E.ChannelAllocationError,
}


def strerror(rc: int) -> str:
    return str(ffi.string(lib.shmchan_strerror(rc)).decode())


def diag_text(diag: Any) -> str:
    """The sentence a C call left in a ``struct shmchan_diag``."""
    return str(ffi.string(diag.message).decode(errors="replace"))


def raise_for(rc: int, what: str, detail: str = "", filename: str | None = None) -> NoReturn:
    """Raise the exception for C return code ``rc`` (negative), saying ``what`` was being done."""
    code = -rc
    text = f"{what}: {detail or strerror(rc)}"
    if code in _OWN:
        raise _OWN[code](text)
    if code == errno.EBUSY:
        raise E.ChannelBusyError(text)
    if code == errno.ETIMEDOUT:
        raise E.ChannelTimeoutError(text)
    if code in _OS:
        raise _OS[code](code, text, filename)
    if code in (errno.EINVAL, errno.ENAMETOOLONG, errno.EOVERFLOW, errno.EMSGSIZE):
        raise ValueError(text)
    raise OSError(code, f"{text} ({os.strerror(code)})", filename)


def _raise_rc(rc: int, what: str, detail: str) -> NoReturn:
    """The errors shmchan._core does not map itself."""
    raise_for(rc, what, detail)


# The native data plane calls the core through this module's function table (one copy of the core).
from . import _core  # noqa: E402

_core._bind(int(ffi.cast("uintptr_t", lib.shmchan_capi_address())), _raise_rc)
# Registered first, so it runs after every atexit handler registered later (users' included).
atexit.register(_core._at_exit)
