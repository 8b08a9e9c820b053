# Every target bootstraps .venv (and node_modules) from pinned files on a clean clone.
# Python 3.13, as the function's Lambda runtime, where the machine has it.
PYTHON ?= $(shell tools/find-python)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
WORKFLOWS ?= .github/workflows

.PHONY: venv demo sandbox test lint lint-python lint-workflows typecheck unit bench readme clean

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml function/pyproject.toml package.json package-lock.json
	$(PYTHON) -m venv --clear $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip==26.3"
	$(BIN)/python -m pip install --quiet --requirement requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps --editable .
	npm ci --no-audit --no-fund --loglevel=error
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m testbed.demo

# moto and a Consul double with one backup in the bucket, until Ctrl-C: try the CLI by hand.
sandbox: $(STAMP)
	$(BIN)/python -m testbed.sandbox

lint: lint-python lint-workflows

lint-python: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

lint-workflows: $(STAMP)
	tools/lint-workflows $(WORKFLOWS)

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest

test: lint typecheck unit

readme: $(STAMP)
	$(BIN)/python -m testbed.readme_sections

bench: $(STAMP)
	$(BIN)/python -m bench.backup_throughput
	$(BIN)/python -m bench.state_decode
	$(BIN)/python -m bench.program_evaluation

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache
