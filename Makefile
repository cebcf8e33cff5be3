# Two entry points on a fresh machine: `make demo` runs the product, `make test` runs every test.
# Both install what they need first (Python virtualenv, Node packages of the FHIR test server).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY_STAMP := $(VENV)/.installed
NODE_STAMP := fhir_test_server/node_modules/.installed

.PHONY: demo test lint bench install

install: $(PY_STAMP) $(NODE_STAMP)

$(PY_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

$(NODE_STAMP): fhir_test_server/package.json fhir_test_server/package-lock.json
	npm ci --prefix fhir_test_server --no-audit --no-fund
	touch $@

demo: install
	$(BIN)/countersign demo

lint: $(PY_STAMP)
	$(BIN)/ruff check .

test: install lint
	npm test --prefix fhir_test_server
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python -m bench.hooks --write docs/PERFORMANCE.md
	$(BIN)/python -m bench.phases --append docs/PERFORMANCE.md
	$(BIN)/python -m bench.outbox --append docs/PERFORMANCE.md
