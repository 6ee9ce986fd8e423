# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast test-slow lint bench infrahub-start infrahub-stop clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/factory demo

lint: $(STAMP)
	$(BIN)/ruff check --no-cache .
	$(BIN)/ruff format --no-cache --check .
	$(BIN)/mypy

test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not integration and not browser"

# Lint, then every layer, integration included: scripts/run-tests starts (and afterwards stops)
# the native Infrahub stack unless one is already running.
test: $(STAMP) lint
	scripts/run-tests

# The long runs left out of `make test` (throughput at K=16 on Infrahub, ...): tests marked `slow`.
test-slow: $(STAMP)
	scripts/run-tests -m slow

infrahub-start:
	python3 scripts/infrahub-stack/stack start
	. .infrahub-stack/env && python3 scripts/infrahub-bootstrap

infrahub-stop:
	python3 scripts/infrahub-stack/stack stop

bench: $(STAMP)
	$(BIN)/python -m bench.core --services 1000 --services 10000

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
