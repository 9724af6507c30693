# Aether Hub. `make run` and `make test` set everything up themselves.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
LINT   := tools/lint/node_modules/.installed-$(shell cat tools/lint/package-lock.json | cksum | cut -d' ' -f1)
TS     := tests/clients/typescript
TS_STAMP := $(TS)/node_modules/.installed-$(shell cat $(TS)/package-lock.json | cksum | cut -d' ' -f1)
# The client generators of tests/clients/, each in its own venv under .tools/ (never the hub's),
# pinned by a complete pip freeze in tools/clients/<name>.txt and stamped by its checksum.
tool_stamp = .tools/$(1)/.installed-$(shell cat tools/clients/$(1).txt | cksum | cut -d' ' -f1)
OPENAPI_PYTHON_CLIENT := $(call tool_stamp,openapi-python-client)
OPENAPI_GENERATOR     := $(call tool_stamp,openapi-generator)
# Python may write its bytecode (and pytest its rewritten test modules) under __pycache__/:
# a machine that sets PYTHONDONTWRITEBYTECODE (this one does) would otherwise compile every
# module, and rewrite every test's asserts, in every process of every run (collection alone
# went from 3.5 s to 8.7 s in each pytest worker).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: run test test-fast test-clients client-generators check bench bench-smoke codegen format clean

# The stamp's name holds the checksum of pyproject.toml: a changed file makes a new name,
# while a fresh checkout or worktree (a newer mtime, the same content) reinstalls nothing.
$(STAMP):
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

# The contract's linters (Redocly, Spectral): pinned by tools/lint/package-lock.json and
# stamped by its checksum, no install scripts run, nothing global.
$(LINT):
	@command -v npm >/dev/null || { echo "make check needs Node 20+ and npm"; exit 1; }
	cd tools/lint && SCARF_ANALYTICS=false DO_NOT_TRACK=1 npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $(LINT)

# The TypeScript client's generators, as package-lock.json pins them, stamped the same way by
# the lock's checksum (npm ci empties node_modules, old stamps included). No install scripts,
# no telemetry.
$(TS_STAMP):
	@command -v npm >/dev/null || { echo "make test-clients needs Node 20+ and npm"; exit 1; }
	cd $(TS) && SCARF_ANALYTICS=false DO_NOT_TRACK=1 npm ci --ignore-scripts --no-audit --no-fund
	touch $(TS_STAMP)

# Exactly the pinned set (--no-deps), then pip check: a freeze missing a dependency fails here.
define install_tool
	test -x .tools/$(1)/bin/python || $(PYTHON) -m venv .tools/$(1)
	.tools/$(1)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps \
		-r tools/clients/$(1).txt
	.tools/$(1)/bin/python -m pip check --disable-pip-version-check
	rm -f .tools/$(1)/.installed-*
	touch $@
endef

$(OPENAPI_PYTHON_CLIENT):
	$(call install_tool,openapi-python-client)

$(OPENAPI_GENERATOR):
	$(call install_tool,openapi-generator)

client-generators: $(OPENAPI_PYTHON_CLIENT) $(OPENAPI_GENERATOR)  ## install the generators of tests/clients/

run: $(STAMP)  ## serve the hub on SQLite at 127.0.0.1:8080 with the built-in model
	$(VENV)/bin/aether serve

test: $(STAMP) $(OPENAPI_PYTHON_CLIENT)  ## every test, SQLite and a throwaway PostgreSQL, one pytest worker per core
	tools/ensure_postgres.sh
	$(PY) -m pytest -n auto --dist worksteal -m "not toolchain"

test-fast: $(STAMP)  ## the inner loop: SQLite only, no contract fuzzing, no subprocess hubs
	AETHER_TEST_BACKENDS=sqlite $(PY) -m pytest -n auto --dist worksteal -m "not slow and not toolchain" \
		--ignore=tests/test_contract.py

test-clients: $(STAMP) $(TS_STAMP) $(OPENAPI_PYTHON_CLIENT) $(OPENAPI_GENERATOR)  ## the generated clients that need Java or Node, against a live hub (CI runs it)
	$(PY) -m pytest -n auto --dist worksteal -m toolchain

check: $(STAMP) $(LINT)  ## lint, format, codegen drift, contract rules, Redocly and Spectral
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) tools/codegen.py --check
	$(PY) tools/check_spec.py
	$(PY) tools/lint_spec.py

bench: $(STAMP)  ## measure the hub beside its references (python -m bench --help)
	tools/ensure_postgres.sh
	$(PY) -m bench $(BENCH_ARGS)

bench-smoke: $(STAMP)  ## every bench scenario at tiny sizes: does the bench still work?
	tools/ensure_postgres.sh
	$(PY) -m bench --smoke

codegen: $(STAMP)  ## regenerate generated/ from openapi.yaml
	$(PY) tools/codegen.py

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) .tools data .pytest_cache .ruff_cache
