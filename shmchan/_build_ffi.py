"""CFFI build script (API mode): compiles the C core from csrc/ into shmchan._shmchan_cffi."""

from __future__ import annotations

import os
import pathlib

from cffi import FFI

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
CSRC = ROOT / "csrc"


def core_files(csrc: pathlib.Path = CSRC) -> list[str]:
    """The C core's files (relative to csrc/) from csrc/sources.list, the one list every build reads."""
    text = (csrc / "sources.list").read_text()
    return [word for line in text.splitlines() for word in line.split("#", 1)[0].split()]


def _version() -> str:
    ns: dict[str, str] = {}
    exec((HERE / "_version.py").read_text(), ns)
    return ns["__version__"]


def _flags() -> tuple[list[str], list[str]]:
    cflags = ["-std=c11", "-O2", "-g", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    ldflags: list[str] = []
    if os.environ.get("SHMCHAN_SANITIZE") == "1":
        san = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer"]
        cflags += [*san, "-O1"]
        ldflags += san
    return cflags, ldflags


ffi = FFI()
ffi.cdef((HERE / "_cdefs.h").read_text())
_cflags, _ldflags = _flags()
ffi.set_source(
    "shmchan._shmchan_cffi",
    '#include "shmchan.h"\n#include "layout.h"\n',
    sources=[os.path.relpath(CSRC / s, ROOT) for s in core_files() if s.endswith(".c")],
    include_dirs=[str(CSRC / "include"), str(CSRC)],
    define_macros=[("_GNU_SOURCE", None), ("SHMCHAN_PKG_VERSION", f'"{_version()}"')],
    extra_compile_args=_cflags,
    extra_link_args=_ldflags,
)

if __name__ == "__main__":
    ffi.compile(verbose=True)
