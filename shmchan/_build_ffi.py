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
# The core's functions for the native data plane (shmchan._core), as one table: see _capi.h.
_CAPI = """
#include "_capi.h"
uintptr_t shmchan_capi_address(void)
{
    static const struct shmchan_capi table = {
        SHMCHAN_CAPI_MAGIC, SHMCHAN_CAPI_VERSION, sizeof(struct shmchan_capi),
        shmchan_close, shmchan_forget_inherited, shmchan_interrupt, shmchan_info, shmchan_stats,
        shmchan_channel_diag, shmchan_wait_head_spin, shmchan_wake_head,
        shmchan_writer_attach, shmchan_writer_close, shmchan_writer_end, shmchan_writer_set_spin,
        shmchan_writer_continue_wait, shmchan_writer_position, shmchan_reserve, shmchan_try_reserve,
        shmchan_commit, shmchan_abort, shmchan_writer_interrupt,
        shmchan_reader_attach_ex, shmchan_reader_close, shmchan_reader_set_spin,
        shmchan_reader_continue_wait, shmchan_peek_batch, shmchan_try_peek_batch, shmchan_release,
        shmchan_check, shmchan_reader_count_empty, shmchan_reader_outstanding, shmchan_reader_lost,
        shmchan_reader_position,
        shmchan_state_read, shmchan_state_version, shmchan_state_wait, shmchan_strerror,
    };
    return (uintptr_t)&table;
}
"""

ffi.set_source(
    "shmchan._shmchan_cffi",
    '#include "shmchan.h"\n#include "layout.h"\n' + _CAPI,
    sources=[os.path.relpath(CSRC / s, ROOT) for s in core_files() if s.endswith(".c")],
    include_dirs=[str(CSRC / "include"), str(CSRC), str(HERE)],
    define_macros=[("_GNU_SOURCE", None), ("SHMCHAN_PKG_VERSION", f'"{_version()}"')],
    extra_compile_args=_cflags,
    extra_link_args=_ldflags,
)

if __name__ == "__main__":
    ffi.compile(verbose=True)
