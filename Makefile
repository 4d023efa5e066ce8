# galclip: two commands do all set-up on a fresh machine.
#   make demo   simulate a survey, train, align, embed, index, evaluate (CPU presets)
#   make test   run the test suite (two pytest workers; ~5.5 min on 2 cores)
#   make test-fast   the fast tier while you work (no test marked slow; under a minute)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.galclip-installed

.PHONY: demo test test-fast install lint clean-venv

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[all]'
	@# bagpipes writes its grid file into its package folder on first import
	$(PY) -c "import bagpipes" >/dev/null
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/galclip demo --out runs/demo

# Two pytest-xdist workers on 2 cores (benchmarks/RESULTS.md), a test file to a worker
# (--dist loadfile), so module-scoped set-ups and the tiny demo's two tests are built once;
# files go out in collection order (--no-loadscope-reorder), which tests/conftest.py starts with
# the heaviest (HEAVY_FIRST), and each worker runs cores/N OpenMP threads (conftest).
PYTEST_WORKERS ?= 2
test: $(STAMP)
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" -n $(PYTEST_WORKERS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks

clean-venv:
	rm -rf $(VENV)
