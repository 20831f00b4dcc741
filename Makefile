# The project's test entry point: `make test` runs everything CI runs.
PY ?= .venv/bin/python

test: ctest lint pytest

# C core tests, plain and under AddressSanitizer + UndefinedBehaviorSanitizer (warnings are errors)
ctest:
	$(MAKE) -C csrc check
	$(MAKE) -C csrc check-sanitize

lint:
	$(PY) -m ruff check shmchan tests
	$(PY) -m mypy

pytest:
	$(PY) -m pytest

clean:
	$(MAKE) -C csrc clean
	rm -rf build *.egg-info shmchan/*.so shmchan/_shmchan_cffi.c

.PHONY: test ctest lint pytest clean
