"""Build glue: the CFFI module (the C core) and the small buffer-exporter extension."""

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


setup(
    cmdclass={"build_py": BuildPy},
    cffi_modules=["shmchan/_build_ffi.py:ffi"],
    ext_modules=[Extension("shmchan._lease", ["shmchan/_lease.c"], extra_compile_args=["-O2", "-Wall"])],
)
