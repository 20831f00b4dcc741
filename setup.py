"""Build glue: the CFFI module (the C core) and the small buffer-exporter extension."""

from setuptools import Extension, setup

setup(
    cffi_modules=["shmchan/_build_ffi.py:ffi"],
    ext_modules=[Extension("shmchan._lease", ["shmchan/_lease.c"], extra_compile_args=["-O2", "-Wall"])],
)
