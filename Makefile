# The commands a contributor runs (CONTRIBUTING.md). Each works on a fresh clone: `make install`
# first makes .venv with the project, its test and dev extras.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install serve test test-fast lint types check bench ci

install: $(BIN)/termsync
$(BIN)/termsync: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -e '.[test,dev]'
	touch $@

serve: install  ## the server on its embedded defaults with OCL's demo (README's quickstart)
	TERMSYNC_ADMIN_TOKEN=$${TERMSYNC_ADMIN_TOKEN:-demo-admin-token-change-me-0123456789} \
	  $(BIN)/termsync serve --demo

test: install  ## the whole suite, as CI runs it (README)
	$(BIN)/python -m pytest

test-fast: install  ## without the tests that spawn processes or drive real clients (< 5 min)
	$(BIN)/python -m pytest -m "not slow"

lint: install
	$(BIN)/ruff check .

types: install
	$(BIN)/mypy app sync

check: lint types test-fast

bench: install  ## one quick bench per area; each prints its figures and its same-run baseline
	$(BIN)/python bench/import.py --lines 20000
	$(BIN)/python bench/diffs.py --items 20000
	$(BIN)/python bench/export_build.py --sizes 10000,20000

ci:  ## what CI runs: the suite in a copy of the repository alone, then again on FerretDB
	bash .ci/run
