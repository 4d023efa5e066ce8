# galclip: two commands do all set-up on a fresh machine.
#   make demo   simulate a survey, train, align, embed, index, evaluate (CPU presets)
#   make test   run the test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.galclip-installed

.PHONY: demo test install lint clean-venv

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

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks

clean-venv:
	rm -rf $(VENV)
