# `make demo` and `make test` set everything up in .venv first (once), then run.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-fast bench

$(STAMP): requirements.txt setup.py
	python3 -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/xmipp_deep_consensus demo -o demo_run

test: $(STAMP)
	$(PY) -m pytest -q tests

# the fast tier (under 3 minutes on 2 cores; docs/development.md): every module, no slow test
test-fast: $(STAMP)
	$(PY) -m pytest -q tests -m "not slow" --untested-modules

bench: $(STAMP)
	$(PY) benchmarks/empiar10017.py
