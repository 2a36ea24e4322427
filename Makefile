# suanli — the two commands a new user types: `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV  := .venv
BIN   := $(VENV)/bin
STAMP := $(VENV)/.synced-$(shell cat uv.lock pyproject.toml | sha1sum | cut -c1-12)
UV    := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
export UV_PYTHON_DOWNLOADS := never
export UV_LINK_MODE := copy

help:
	@echo "make run     start the platform (demo city, SQLite, local executor) on 127.0.0.1:8000"
	@echo "make test    lint + the whole test suite"
	@echo "make lint    ruff, mypy on src/, import-linter layer contracts"
	@echo "make bench   benchmarks (results in bench/results/)"

# The environment, from the lock. Idempotent: a second call only checks the stamp.
$(STAMP): pyproject.toml uv.lock
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 \
		|| python3 -m pip install --quiet --disable-pip-version-check uv
	$(UV) sync --frozen --python python3.11 --quiet
	@rm -f $(VENV)/.synced-*
	@touch $(STAMP)

venv: $(STAMP)

run: venv
	$(BIN)/suanli serve --demo

lint: venv
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy src
	$(BIN)/lint-imports

# Real servers the tests use (idempotent; a no-op where they are installed already).
services:
	@tests/services/postgres.sh install >/dev/null
	@tests/services/slurm.sh install >/dev/null
	@tests/services/ray.sh install >/dev/null 2>&1

test: lint services
	$(BIN)/pytest

bench: venv services
	$(BIN)/python bench/sim.py
	$(BIN)/python bench/city.py
	$(BIN)/python bench/scheduler.py
	$(BIN)/python bench/api.py
	$(BIN)/python bench/connectors.py
	$(BIN)/python bench/ledger.py

.PHONY: help venv run lint services test bench
