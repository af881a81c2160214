# Two commands matter: `make run` (serve on http://127.0.0.1:8080) and `make test` (the whole suite).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
DUCKDB_VENV ?= .venv-duckdb
DUCKDB_STAMP := $(DUCKDB_VENV)/.installed

.PHONY: run test install lint typecheck bench clean

# What serving needs: Headwater and its runtime dependencies.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $(STAMP)

# What the suite and the linters need besides (pytest, Playwright, the public clients, ruff, mypy), and
# the optional Ray engine its tests start a local cluster of.
$(DEV_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,ray]'
	touch $(DEV_STAMP)

# DuckDB with its iceberg extension, apart: the outside engine of the Iceberg REST catalog's tests.
$(DUCKDB_STAMP): requirements/duckdb-engine.txt
	$(PYTHON) -m venv $(DUCKDB_VENV)
	$(DUCKDB_VENV)/bin/python -m pip install --quiet -r requirements/duckdb-engine.txt
	touch $(DUCKDB_STAMP)

install: $(DEV_STAMP) $(DUCKDB_STAMP)

run: $(STAMP)
	$(VENV)/bin/headwater serve

# Two test processes (one per core on the CI machine); each file stays whole in one of them, so a file's
# module-scoped fixtures (a browser, a server) start once.
test: $(DEV_STAMP) $(DUCKDB_STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

typecheck: $(DEV_STAMP)
	$(VENV)/bin/mypy

bench: $(DEV_STAMP)
	$(PY) bench/api.py

clean:
	rm -rf $(VENV) $(DUCKDB_VENV) .pytest_cache .mypy_cache .ruff_cache
