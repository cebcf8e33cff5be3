# Two entry points on a fresh machine: `make demo` runs the product, `make test` runs every test.
# Both install what they need first (Python virtualenv, Node packages of the FHIR test server;
# `make test` also builds the HAPI FHIR server the `hapi` tests run against).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY_STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
NODE_STAMP := sandbox/fhir_servers/node/node_modules/.installed
HAPI_PORT ?= 8090
HAPI_JAR := sandbox/fhir_servers/hapi/target/countersign-hapi.jar
HAPI_JAVA_OPTS ?= -Xmx512m -XX:+UseSerialGC -XX:TieredStopAtLevel=1

.PHONY: demo test lint bench install

install: $(PY_STAMP) $(NODE_STAMP)

$(PY_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

# The test tools (pytest, ruff, Playwright, schemathesis, import-linter) only where tests run.
$(TEST_STAMP): $(PY_STAMP)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

$(NODE_STAMP): sandbox/fhir_servers/node/package.json sandbox/fhir_servers/node/package-lock.json
	npm ci --prefix sandbox/fhir_servers/node --no-audit --no-fund
	touch $@

demo: install
	$(BIN)/countersign demo

lint: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

test: install $(TEST_STAMP) lint $(HAPI_JAR)
	npm test --prefix sandbox/fhir_servers/node
	$(BIN)/python -m pytest

# 10 to 15 minutes on 2 cores; needs the PostgreSQL of COUNTERSIGN_BENCH_POSTGRES_URL (default: the tests' one).
bench: install
	$(BIN)/python -m bench.hooks --long --write docs/PERFORMANCE.md
	$(BIN)/python -m bench.phases --append docs/PERFORMANCE.md
	$(BIN)/python -m bench.outbox --append docs/PERFORMANCE.md
	$(BIN)/python -m bench.shadow --append docs/PERFORMANCE.md
	$(BIN)/python -m bench.startup --append docs/PERFORMANCE.md

# HAPI FHIR JPA server (sandbox/fhir_servers/hapi/, Java 17 + Maven) for tests, CI and the demo; see sandbox/fhir_servers/hapi/README.md.
# `make hapi` builds the jar once (again only when pom.xml or a source changes) and serves FHIR R4 on
# http://127.0.0.1:$(HAPI_PORT)/fhir until Ctrl-C; other targets depend on $(HAPI_JAR) or hapi-build.

.PHONY: hapi hapi-build

hapi-build: $(HAPI_JAR)

$(HAPI_JAR): sandbox/fhir_servers/hapi/pom.xml $(shell find sandbox/fhir_servers/hapi/src -type f)
	cd sandbox/fhir_servers/hapi && mvn -q -B package -DskipTests
	touch $@

hapi: $(HAPI_JAR)
	HAPI_PORT=$(HAPI_PORT) java $(HAPI_JAVA_OPTS) -jar $(HAPI_JAR)
