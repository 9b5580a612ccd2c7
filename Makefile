# imagestream-controller: `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

##@ Start here

.PHONY: run
run: install controlplane ## Run the whole system here: control plane, registry, controller, webhook
	$(BIN)/imagestream dev --log-format console

.PHONY: test
test: install controlplane ## Install everything, then run the whole test suite
	$(BIN)/pytest -ra

##@ Development

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*##"} /^##@/ {printf "\n%s\n", substr($$0, 5)} /^[a-zA-Z_-]+:.*##/ {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: install
install: system-deps $(STAMP) ## Install system packages and the Python environment

.PHONY: system-deps
system-deps:
	@scripts/install-system-deps.sh

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test,lint]'
	touch $@

.PHONY: controlplane
controlplane: ## Build etcd, kube-apiserver and kube-controller-manager (cached outside the repo)
	localkube/build.sh >/dev/null

.PHONY: test-unit
test-unit: install ## Run the unit tests only (no control plane needed)
	$(BIN)/pytest -ra tests/unit

.PHONY: lint
lint: install ## Run ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

.PHONY: format
format: install ## Format the code with ruff
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

.PHONY: clean
clean: ## Remove the Python environment and dev state (keeps the Go build cache)
	rm -rf $(VENV) .dev .pytest_cache .mypy_cache .ruff_cache
