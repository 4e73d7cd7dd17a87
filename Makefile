# jeffrey-operator — `make help` lists every target.
PYTHON ?= python3
PYTEST_ARGS ?=
CRD := crds/jeffreyintegrations.jeffreyos.io.yaml

.DEFAULT_GOAL := help
.PHONY: help deps test pytest lint fmt crds demo playground run bench

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

deps: ## Install what the tests need (apt: prometheus, redis-server; pip: .[dev]; helm; checkov)
	@bash hack/bootstrap.sh

test: deps lint pytest ## Everything CI runs: install, lint, the whole test suite

pytest: ## The test suite only (PYTEST_ARGS=... to pass options)
	$(PYTHON) -m pytest $(PYTEST_ARGS)

SRC := operator tools tests bench

lint: ## ruff (lint + format check), mypy --strict, import-linter (the layers)
	$(PYTHON) -m ruff check $(SRC)
	$(PYTHON) -m ruff format --check $(SRC)
	$(PYTHON) -m mypy
	lint-imports

fmt: ## ruff format + autofix
	$(PYTHON) -m ruff check --fix $(SRC)
	$(PYTHON) -m ruff format $(SRC)

crds: ## Regenerate the CRD from the pydantic models (and the chart's copy)
	PYTHONPATH=operator $(PYTHON) -m jeffrey_operator.core.crdgen > $(CRD)
	cp $(CRD) charts/jeffrey-operator/crds/

demo: ## The playground's scripted run: climb, fault, rollback, summary; ends by itself
	@bash hack/bootstrap.sh --runtime
	$(PYTHON) -m jeffrey_operator.runtime.cli playground $(if $(CI),--non-interactive,)

playground: ## The whole system on this machine, kept until Ctrl-C: watch and poke it with kubectl
	@bash hack/bootstrap.sh --runtime
	$(PYTHON) -m jeffrey_operator.runtime.cli playground --keep

run: ## Run the operator against the current kube context
	jeffrey-operator run

bench: deps ## Benchmarks: per-level overhead, 200 integrations, gates, Redis (prints numbers)
	$(PYTHON) bench/bench_operator.py
	$(PYTHON) bench/bench_state.py

include hack/Makefile.ship
