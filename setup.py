"""Build glue: the CFFI module (the C core) and the native data plane (shmchan._core)."""

import os
import shutil

from setuptools import Extension, setup
from setuptools.command.build_py import build_py


class BuildPy(build_py):
    """Also put the C core in the package (shmchan/bench/csrc: the files csrc/sources.list names, and
    the list), so that `shmchan bench` can compile its native C benchmark after a non-editable
    install. An editable install uses the checkout's csrc/ directly."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        dst = os.path.join(self.build_lib, "shmchan", "bench", "csrc")
        with open("csrc/sources.list") as f:
            files = [word for line in f for word in line.split("#", 1)[0].split()]
        for name in ["sources.list", *files]:
            target = os.path.join(dst, name)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copyfile(os.path.join("csrc", name), target)


def _core_extension() -> Extension:
    """shmchan._core: CPython and numpy C API; it reaches the core through the CFFI module's function
    table (shmchan/_capi.h), so it compiles none of csrc/ itself."""
    import numpy

    cflags = ["-std=c11", "-O2", "-g", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"]
    ldflags = []
    if os.environ.get("SHMCHAN_SANITIZE") == "1":
        san = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer"]
        cflags += [*san, "-O1"]
        ldflags += san
    return Extension(
        "shmchan._core",
        ["shmchan/_core.c"],
        include_dirs=[numpy.get_include(), "csrc/include", "shmchan"],
        extra_compile_args=cflags,
        extra_link_args=ldflags,
    )


setup(
    cmdclass={"build_py": BuildPy},
    cffi_modules=["shmchan/_build_ffi.py:ffi"],
    ext_modules=[_core_extension()],
)
