# One entry point for a fresh machine: every target creates .venv and installs what it needs first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo console test test-fast lint bench bench-quick services system-deps emulators clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## demo: the main job on embedded defaults (SQLite + the emulators, no services needed)
demo: $(STAMP)
	$(BIN)/python -m demo

## console: the demo's world, then the web console on http://127.0.0.1:8000 with a demo user (Ctrl-C stops it)
console: $(STAMP)
	$(BIN)/python -m demo --console

## test: the whole suite against real PostgreSQL, Redis and the emulators
test: $(STAMP) services system-deps
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

services:
	./scripts/services.sh

## system-deps: Chromium and promtool, installed with apt-get when missing
system-deps:
	./scripts/system-deps.sh

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP) services
	$(BIN)/python -m bench

bench-quick: $(STAMP) services
	$(BIN)/python -m bench --quick

emulators: $(STAMP)
	$(BIN)/python -m emulators --port 8765

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis stsync.db
