# exitlab: `make demo` and `make test` are all a fresh machine needs (see README.md).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
SOURCES_C := $(wildcard fastpath/csrc/*.c fastpath/csrc/*.h) fastpath/_build.py setup.py pyproject.toml

.PHONY: demo test test-py test-asan test-asan-ext lint bench fuzz-atheris fuzz-build-check bench-plot clean venv

# Create/refresh the virtualenv and install exitlab with its extras (rebuilds the C extension
# whenever its sources or the packaging change).
$(STAMP): $(SOURCES_C)
	@command -v as >/dev/null || { echo "GNU as is missing: apt-get install binutils"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,bench]'
	@touch $@

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/exitlab bench --quick --plot demo.png --json demo.json

lint: $(STAMP)
	$(VENV)/bin/ruff check emu fastpath exitlab tests bench
	$(VENV)/bin/mypy

test-py: $(STAMP)
	$(PY) -m pytest tests

test: lint test-py test-asan test-asan-ext

bench: $(STAMP)
	$(PY) -m pytest bench --benchmark-enable --benchmark-only --benchmark-autosave \
	    --benchmark-json=bench-results.json --benchmark-group-by=group --benchmark-columns=min,median,max,rounds

# ASan/UBSan: the C sources (decoder, length, paths, replay; not the Unicorn hooks) in a standalone
# driver fed the committed corpus plus seeded random inputs; any sanitizer report fails.  Capstone
# comes from the venv's wheel; its SONAME (libcapstone.so.5) differs from the file name, so a
# symlink next to the driver plus an $$ORIGIN rpath lets the loader find it.
ASAN_DIR    := build/asan
ASAN_SRC    := fastpath/csrc/asan_driver.c fastpath/csrc/insn_subset.c fastpath/csrc/paths.c fastpath/csrc/replay.c \
               fastpath/csrc/lockguard.c \
               fastpath/csrc/sem.c fastpath/csrc/sem_alu.c fastpath/csrc/sem_xchg.c fastpath/csrc/sem_bit.c fastpath/csrc/sem_sse.c
ASAN_SRC    += fastpath/csrc/sem_route.c fastpath/csrc/sem_stack.c fastpath/csrc/sem_atomic.c \
               fastpath/csrc/sem_vector.c fastpath/csrc/sem_misc.c
ASAN_FLAGS  := -O1 -g -std=gnu11 -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer \
               -Wall -Wextra -Werror
ASAN_RANDOM ?= 300000
ASAN_SEED   ?= 1
# issue 14 (C side, part 1): the string-compare, mul/div, shift, bit-scan and conditional families
ASAN_SRC    += fastpath/csrc/sem_string.c fastpath/csrc/sem_muldiv.c fastpath/csrc/sem_shift.c \
               fastpath/csrc/sem_bitscan.c fastpath/csrc/sem_cond.c

test-asan: $(STAMP)
	@mkdir -p $(ASAN_DIR)
	@CS=$$($(PY) -c 'import capstone, os; print(os.path.dirname(capstone.__file__))') && \
	  ln -sf "$$CS/lib/libcapstone.so" $(ASAN_DIR)/libcapstone.so.5 && \
	  $(CC) $(ASAN_FLAGS) -Ifastpath/csrc -I"$$CS/include" $(ASAN_SRC) $(ASAN_DIR)/libcapstone.so.5 \
	    -Wl,-rpath,'$$ORIGIN' -o $(ASAN_DIR)/exitlab_asan
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  $(ASAN_DIR)/exitlab_asan tests/data/asan_corpus $(ASAN_RANDOM) $(ASAN_SEED)

# The same extension built with ASan/UBSan and loaded into CPython (sanitizer runtimes preloaded,
# leak checks off: CPython itself "leaks" by design), running the C-facing tests, Unicorn hooks
# included. A copy of the tree is used so that nothing can import the normal build instead.
ASAN_EXT := build/asan-ext
SAN_PRELOAD = $$($(CC) -print-file-name=libasan.so) $$($(CC) -print-file-name=libubsan.so)

test-asan-ext: $(STAMP)
	@rm -rf $(ASAN_EXT) && mkdir -p $(ASAN_EXT)
	cp -r emu fastpath exitlab tests pyproject.toml $(ASAN_EXT)/
	rm -f $(ASAN_EXT)/fastpath/_exitlab_c*.so
	@# capstone's binding dlopens with RTLD_DEEPBIND, which the ASan runtime refuses; hide the flag.
	echo 'import os; os.__dict__.pop("RTLD_DEEPBIND", None)' > $(ASAN_EXT)/sitecustomize.py
	cd $(ASAN_EXT) && $(abspath $(PY)) fastpath/_build.py --sanitize build >/dev/null && \
	  cp build/fastpath/_exitlab_c*.so fastpath/
	cd $(ASAN_EXT) && export PYTHONPATH=. LD_PRELOAD="$(SAN_PRELOAD)" ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 && \
	  $(abspath $(PY)) -c 'import fastpath.cengine, fastpath._exitlab_c as m; assert "asan-ext" in m.__file__, m.__file__' && \
	  $(abspath $(PY)) -m pytest -p no:cacheprovider -p no:randomly tests/test_c_decoder.py \
	    tests/test_c_length.py tests/test_c_length_real.py tests/test_c_paths.py tests/test_c_live.py \
	    tests/test_c_records.py tests/test_c_semantics.py tests/test_c_devtab.py \
	    tests/test_c_trap.py tests/test_c_families_live.py tests/emulate/test_c_families.py tests/test_flagsites.py

clean:
	rm -rf $(VENV) build *.egg-info fastpath/*.so fastpath/_exitlab_c.c

# Coverage-guided harness of the C extension (atheris, libFuzzer-compatible), bounded; not part of
# `make test` (it installs the `fuzz` extra from PyPI). FUZZ_RUNS=N to run longer.
FUZZ_RUNS ?= 3000
fuzz-atheris: $(STAMP)
	$(PY) -m pip install -q -e '.[fuzz]'
	mkdir -p build/fuzz-corpus && cp tests/data/fuzz_corpus/* build/fuzz-corpus/
	$(PY) -m exitlab.tools.fuzz.atheris_target build/fuzz-corpus -atheris_runs=$(FUZZ_RUNS) -max_total_time=120

# The ClusterFuzzLite build (.clusterfuzzlite/build.sh) run locally without Docker: $$SRC/$$OUT/$$WORK
# in temporary directories, shims for compile_python_fuzzer and pip3, then every produced fuzzer
# for FUZZ_CHECK_RUNS iterations or FUZZ_CHECK_SECONDS, whichever ends first, on its seed corpus
# (~50 s here: the stream harness runs ~10 programs/s). Not part of `make test`: it installs the
# `fuzz` extra (atheris) from PyPI and takes about a minute; tests/test_cflite.py checks the build
# itself in every `make test`, without atheris.
FUZZ_CHECK_RUNS ?= 2000
FUZZ_CHECK_SECONDS ?= 30
fuzz-build-check: $(STAMP)
	$(PY) -m pip install -q -e '.[fuzz]'
	bash .clusterfuzzlite/check_build.sh $(abspath $(PY)) $(FUZZ_CHECK_RUNS) $(FUZZ_CHECK_SECONDS)

# Redraw docs/bench.png from docs/bench.json (no new measurement).
bench-plot: $(STAMP)
	$(PY) -c 'from exitlab.tools.report import plot_json; plot_json("docs/bench.json", "docs/bench.png")'
