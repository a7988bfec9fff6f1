# The two commands a newcomer needs: `make run` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= config.example.toml
# Test processes: the suite mostly waits (fake servers' latency, daemons' timers), so more
# processes than cores still shortens it (18.6 min alone, 8.2 min with 3 on 2 cores).
PYTEST_WORKERS ?= 3

.PHONY: run test lint docs clean

$(BIN)/syncd: pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(BIN)/syncd

run: $(BIN)/syncd
	$(BIN)/python -m syncd.cli.demo var/demo
	$(BIN)/syncd -c $(CONFIG) run

test: $(BIN)/syncd
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

lint: $(BIN)/syncd
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# The documentation site (docs/), built strictly: a broken link or a missing page is an error.
docs: $(BIN)/syncd
	$(BIN)/pip install --quiet -e '.[docs]'
	$(BIN)/mkdocs build --strict --config-file docs/mkdocs.yml --site-dir ../var/site

clean:
	rm -rf var .pytest_cache .hypothesis .mypy_cache .ruff_cache .import_linter_cache
