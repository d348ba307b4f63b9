# exitlab: `make demo` and `make test` are all a fresh machine needs (see README.md).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
SOURCES_C := $(wildcard fastpath/csrc/*.c fastpath/csrc/*.h) fastpath/_build.py setup.py pyproject.toml

.PHONY: demo test test-py test-asan lint bench fuzz-atheris clean venv

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
	$(VENV)/bin/ruff check emu fastpath tests bench
	$(VENV)/bin/mypy

test-py: $(STAMP)
	$(PY) -m pytest tests

test: lint test-py test-asan

bench: $(STAMP)
	$(PY) -m pytest bench --benchmark-enable --benchmark-only --benchmark-autosave \
	    --benchmark-json=bench-results.json --benchmark-group-by=group --benchmark-columns=min,median,max,rounds

clean:
	rm -rf $(VENV) build *.egg-info fastpath/*.so fastpath/_exitlab_c.c
