# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo demo-stop test test-fast test-slow mutate lint bench infrahub-start infrahub-stop prefect-start prefect-stop clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The demo lifecycle on the embedded inventory, every transition a Prefect flow on one local Prefect
# server (SQLite; started on first use, reused afterwards, left running for a look at its UI).
demo: $(STAMP)
	python3 scripts/prefect-stack/stack start --db sqlite --workers 0
	. .prefect-stack/env && $(BIN)/factory demo
	@echo "The UI asks for the server's credential: paste the line of .prefect-stack/api-auth-string"

demo-stop:
	python3 scripts/prefect-stack/stack stop

lint: $(STAMP)
	$(BIN)/ruff check --no-cache .
	$(BIN)/ruff format --no-cache --check .
	$(BIN)/mypy

test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not integration and not browser and not deployed"

# Mutation run of the allocation core against the fast unit and contract tests ([tool.mutmut] in
# pyproject.toml), from scratch each time, then the score per file (scripts/mutation-score).
mutate: $(STAMP)
	rm -rf mutants
	HYPOTHESIS_PROFILE=mutation $(BIN)/mutmut run > mutants.log 2>&1 || (tail -c 3000 mutants.log; exit 1)
	$(BIN)/python scripts/mutation-score

# Lint and every layer, integration and deployed included: scripts/run-tests starts (and afterwards
# stops) the native Infrahub stack and the PostgreSQL Prefect stack unless running, and runs
# `make lint` (which installs .venv) while the Infrahub stack starts.
test:
	scripts/run-tests

# The long runs left out of `make test`, tests marked `slow`: the exhaustive property runs, the
# full crash sets, throughput at K=16 and the architect's whole review on Infrahub. Starts the
# stacks like `make test` (one pytest run after them).
test-slow: $(STAMP)
	scripts/run-tests -m slow --run-slow

infrahub-start:
	python3 scripts/infrahub-stack/stack start
	. .infrahub-stack/env && python3 scripts/infrahub-bootstrap

infrahub-stop:
	python3 scripts/infrahub-stack/stack stop

# Production-shaped Prefect: PostgreSQL, the server, the work pool and one worker (README "Production").
prefect-start: $(STAMP)
	python3 scripts/prefect-stack/stack start

prefect-stop:
	python3 scripts/prefect-stack/stack stop

bench: $(STAMP)
	$(BIN)/python -m bench.core --services 1000 --services 10000

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis mutants mutants.log
