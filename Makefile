# Quick start: `make serve` (the app on the demo district) and `make test` (the whole suite).
# Both set themselves up on a fresh Debian machine with Python 3.11, pip and root.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_DB := data/demo.duckdb
DEMO_USERS := data/demo.users
PORT ?= 5006

.PHONY: serve test setup test-setup demo bench bench-table clean catalogues

$(BIN)/twin: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	$(MAKE) catalogues
	touch $@

# The UI's compiled catalogues are built here from the committed .po files, never committed themselves.
CATALOGUES := $(patsubst %.po,%.mo,$(wildcard scenes/locale/*/LC_MESSAGES/twin.po))

scenes/locale/%/LC_MESSAGES/twin.mo: scenes/locale/%/LC_MESSAGES/twin.po
	$(BIN)/pybabel compile -l $* -i $< -o $@

catalogues: $(CATALOGUES)

setup: $(BIN)/twin

# Debian packages the tests use: Chromium for the browser tests, a CJK font for the
# district's names, Mesa's EGL for offscreen VTK pictures, and PostgreSQL with PostGIS (the second
# backend: the tests start a throwaway cluster of their own, see tests/pgcluster.py) and nginx.
APT_PACKAGES := chromium fonts-wqy-zenhei libegl1 libegl-mesa0 libgl1-mesa-dri postgresql postgresql-15-postgis-3 nginx

$(VENV)/.test-deps: $(BIN)/twin
	$(BIN)/pip install --quiet -e '.[test]'
	@if ! dpkg -s $(APT_PACKAGES) >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES) >/dev/null; \
	  else echo "the tests need Debian packages: sudo apt-get install $(APT_PACKAGES)" >&2; exit 1; fi; fi
	touch $@

# Node tools the tests run (Khronos' glTF-Validator; CesiumJS, served to Chromium from this folder), installed
# here from npm at build time, pinned by the committed lock file; Debian's nodejs and npm when there is no npm.
NODE_TOOLS := tests/node

$(NODE_TOOLS)/node_modules/.installed: $(NODE_TOOLS)/package.json $(NODE_TOOLS)/package-lock.json
	@if ! command -v npm >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; \
	  else echo "the tests need Node.js: sudo apt-get install nodejs npm" >&2; exit 1; fi; fi
	cd $(NODE_TOOLS) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

test-setup: $(VENV)/.test-deps $(NODE_TOOLS)/node_modules/.installed

$(DEMO_DB): | $(BIN)/twin
	$(BIN)/twin demo --db $(DEMO_DB) --scale full

# Stores built before sign-in existed get their demo users here.
$(DEMO_USERS): | $(DEMO_DB)
	$(BIN)/twin demo --db $(DEMO_DB) --users

demo: $(DEMO_DB)

serve: $(DEMO_DB) $(DEMO_USERS) catalogues
	@echo "Sign in at http://127.0.0.1:$(PORT)/app as one of the demo users ($(DEMO_USERS)):"
	@cat $(DEMO_USERS)
	$(BIN)/twin serve --db $(DEMO_DB) --port $(PORT)

test: test-setup catalogues
	$(BIN)/python -m pytest

# Every bench on a copy of the full demo store; each writes bench/results/NAME.json (committed), then the
# README's table is made from those files. Run it on a quiet machine: the figures are timings.
BENCHES := ingest ifc grids feed security view concurrency tiles backends scale field volunteers

bench: $(DEMO_DB) test-setup
	@set -e; for name in $(BENCHES); do \
	  echo "twin bench $$name" >&2; $(BIN)/twin bench $$name --db $(DEMO_DB) --json >/dev/null; done
	$(MAKE) bench-table

bench-table: $(BIN)/twin
	$(BIN)/python bench/readme_table.py

clean:
	rm -rf $(VENV) $(DEMO_DB) $(DEMO_DB).wal $(DEMO_USERS) $(CATALOGUES) $(NODE_TOOLS)/node_modules
