# Aether Hub. `make run` and `make test` set everything up themselves.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: run test check bench codegen format clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

run: $(STAMP)  ## serve the hub on SQLite at 127.0.0.1:8080 with the built-in model
	$(VENV)/bin/aether serve

test: $(STAMP)  ## every test, SQLite and a throwaway PostgreSQL, one pytest worker per core
	tools/ensure_postgres.sh
	$(PY) -m pytest -n auto --dist worksteal

check: $(STAMP)  ## lint, format, codegen drift, contract rules
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) tools/codegen.py --check
	$(PY) tools/check_spec.py

bench: $(STAMP)  ## measure the hub against a bare Starlette + Peewee app
	$(PY) tools/bench.py $(BENCH_ARGS)

codegen: $(STAMP)  ## regenerate generated/ from openapi.yaml
	$(PY) tools/codegen.py

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) data .pytest_cache .ruff_cache
