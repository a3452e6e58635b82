# Two entry points for a fresh machine: `make demo` and `make test` (import layers, ruff, then pytest).
# Each creates .venv and installs what it needs; torch is pinned to the CPU wheel on disk first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test install dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.dev-installed: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

dev: $(VENV)/.dev-installed

demo: install
	$(BIN)/privmed demo

test: dev
	$(BIN)/lint-imports
	$(BIN)/ruff check
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) privmed-demo .pytest_cache
