# stockhold: every command a person runs. `make test` is what CI runs.
SHELL := /bin/bash
ROOT := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
VENV := .venv
PY := $(VENV)/bin/python
# The AWS SAM CLI, pinned, in a venv of its own (scripts/bootstrap-sam.sh); its bin/ also has python3.13.
SAM_VENV := $(ROOT)/.venv-sam
SAM := PATH="$(SAM_VENV)/bin:$$PATH" SAM_CLI_TELEMETRY=0 $(SAM_VENV)/bin/sam
SAM_CLI := aws-sam-cli==1.170.0
export PYTHONDONTWRITEBYTECODE := 1
export PYTHONPATH := layers/stockhold:functions/api:.

.PHONY: help setup run reconcile test test-unit test-integration lint format bench build build-StockholdLayer \
	sam-setup lock invoke sam-env deploy openapi store clean

help:
	@echo "make run     - the local stack on DynamoDB Local (http://127.0.0.1:3000)"
	@echo "make test    - the whole test suite (unit, template, integration on DynamoDB Local)"
	@echo "make lint    - ruff, mypy, cfn-lint"
	@echo "make bench   - benchmarks against DynamoDB Local (prints tables)"
	@echo "make openapi - regenerate docs/openapi.json from the code"
	@echo "make fuzz    - Schemathesis against make run's stack (FUZZ_URL, FUZZ_KEY, FUZZ_EXAMPLES, ARGS)"
	@echo "make build   - sam build (installs the pinned SAM CLI into .venv-sam), then checks the layer"
	@echo "make invoke FN=ApiFunction EVENT=events/api-get-stock.json - one invocation against make run's stack"
	@echo "make sam-env ARGS=--docker-host=host.docker.internal - rewrite .local/sam-env.json (sam local invoke's, docs/deploy.md)"
	@echo "make deploy  - sam deploy (first time: make deploy ARGS=--guided)"
	@echo "make lock    - re-lock layers/stockhold/requirements.lock.txt and requirements-sam.txt"

run: setup
	@$(PY) -m tools.local

setup:
	@scripts/bootstrap-python.sh
	@$(PY) -m tools.ddblocal install

test: setup
	$(PY) -m pytest -n 2 --dist loadgroup -q

test-unit: setup
	$(PY) -m pytest -q -n 2 tests/unit tests/component tests/template

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

# Schemathesis with the checks of tests/e2e/schemathesis.toml, against the stack `make run` serves
# (start it first). FUZZ_KEY is an admin key, so every route is reached: the run writes stock and
# holds into that key's store. ARGS adds `schemathesis run` options, e.g. ARGS="--seed 7 --workers 2".
FUZZ_URL ?= http://127.0.0.1:3000
FUZZ_KEY ?= local-admin
FUZZ_EXAMPLES ?= 100
.PHONY: fuzz
fuzz: setup
	$(VENV)/bin/schemathesis --config-file tests/e2e/schemathesis.toml run "$(FUZZ_URL)/openapi.json" \
		--url "$(FUZZ_URL)" --header "Authorization: Bearer $(FUZZ_KEY)" --max-examples $(FUZZ_EXAMPLES) $(ARGS)

store: setup
	$(PY) -m tools.admin $(ARGS)

reconcile: setup
	$(PY) -m tools.reconcile $(ARGS)

# sam build: the functions with python3.13 (from .venv-sam/bin), the layer with the target below.
build: sam-setup
	$(SAM) build $(if $(filter build,$(MAKECMDGOALS)),$(ARGS))
	$(SAM_VENV)/bin/python tools/layer.py check .aws-sam/build/StockholdLayer

sam-setup:
	@scripts/bootstrap-sam.sh

# Called by sam build (template.yaml: StockholdLayer's BuildMethod makefile, ContextPath .), in a
# scratch copy of layers/stockhold/, with ARTIFACTS_DIR set. Any Python with pip will do: the
# wheels are always CPython 3.13 aarch64 ones (tools/layer.py).
LAYER_PYTHON ?= $(firstword $(wildcard $(SAM_VENV)/bin/python) python3)
build-StockholdLayer:
	"$(LAYER_PYTHON)" "$(ROOT)/tools/layer.py" build --src . --out "$(ARTIFACTS_DIR)"

deploy: build
	$(SAM) deploy $(ARGS)

# Every package of the layer, pinned with hashes, for aarch64 CPython 3.13; boto3 and botocore
# (and what only they need) are left to the Lambda runtime. Then the SAM CLI's own pins.
lock: setup
	$(VENV)/bin/uv pip compile layers/stockhold/requirements.txt -q -o layers/stockhold/requirements.lock.txt \
		--python-version 3.13 --python-platform aarch64-manylinux2014 --generate-hashes \
		--no-emit-package botocore --no-emit-package urllib3 --no-emit-package python-dateutil \
		--no-emit-package six --custom-compile-command "make lock"
	echo "$(SAM_CLI)" | $(VENV)/bin/uv pip compile - -q -o requirements-sam.txt --universal --python-version 3.13 \
		--custom-compile-command "make lock"

# One invocation of one function, as `sam local invoke FN -e EVENT` would run it, against the
# stack `make run` is running (no Docker). tools/invoke.py --help for more.
invoke:
	@scripts/bootstrap-python.sh >&2
	@$(PY) -m tools.invoke $(FN) $(EVENT) $(ARGS)

# make run writes .local/sam-env.json (samconfig.toml: sam local invoke's env-vars file) for a
# container on the host's network; this rewrites it, e.g. for Docker Desktop (docs/deploy.md).
sam-env:
	@scripts/bootstrap-python.sh
	@$(PY) -m tools.invoke --write-sam-env .local/sam-env.json $(ARGS)

clean:
	rm -rf .aws-sam .pytest_cache .mypy_cache .ruff_cache
