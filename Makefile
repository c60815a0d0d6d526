# stockhold: every command a person runs. `make test` is what CI runs.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
export PYTHONDONTWRITEBYTECODE := 1
export PYTHONPATH := layers/stockhold:functions/api:.

.PHONY: help setup run reconcile test test-unit test-integration lint format bench build deploy openapi store clean

help:
	@echo "make run     - the local stack on DynamoDB Local (http://127.0.0.1:3000)"
	@echo "make test    - the whole test suite (unit, template, integration on DynamoDB Local)"
	@echo "make lint    - ruff, mypy, cfn-lint"
	@echo "make bench   - benchmarks against DynamoDB Local (prints tables)"
	@echo "make openapi - regenerate docs/openapi.json from the code"
	@echo "make build / make deploy - sam build / sam deploy --guided"

run: setup
	@$(PY) -m tools.local

setup:
	@scripts/bootstrap-python.sh
	@$(PY) -m tools.ddblocal install

test: setup
	$(PY) -m pytest -n 2 --dist loadgroup -q

test-unit: setup
	$(PY) -m pytest -q tests/unit tests/template

test-integration: setup
	$(PY) -m pytest -q tests/integration

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy layers/stockhold/stockhold functions tools
	$(VENV)/bin/cfn-lint template.yaml

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: setup
	$(PY) -m bench.run

openapi: setup
	$(PY) -m tools.openapi > docs/openapi.json

store: setup
	$(PY) -m tools.admin $(ARGS)

reconcile: setup
	$(PY) -m tools.reconcile $(ARGS)

build:
	sam build

deploy: build
	sam deploy --guided

clean:
	rm -rf .aws-sam .pytest_cache .mypy_cache .ruff_cache
