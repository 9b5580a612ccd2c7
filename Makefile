# imagestream-controller: `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

##@ Start here

.PHONY: run
run: install controlplane node ## Run the whole system here: control plane, registry, controller, webhook
	$(BIN)/imagestream dev --log-format console

.PHONY: test
test: install controlplane node helm tilt seaweedfs prometheus images ## Install everything, then run the whole test suite
	$(BIN)/pytest -ra tests/unit tests/integration
	$(BIN)/pytest -ra tests/node
	$(BIN)/pytest -ra tests/incluster

##@ Development

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*##"} /^##@/ {printf "\n%s\n", substr($$0, 5)} /^[a-zA-Z_-]+:.*##/ {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: install
install: system-deps $(STAMP) ## Install system packages and the Python environment

.PHONY: system-deps
system-deps:
	@scripts/install-system-deps.sh

$(STAMP): pyproject.toml localdev/pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt \
	  -e '.[test,lint,bench]' -e ./localdev
	touch $@

.PHONY: controlplane
controlplane: ## Build etcd, kube-apiserver and kube-controller-manager (cached outside the repo)
	localkube/build.sh >/dev/null

.PHONY: node
node: ## Build kubelet, kube-scheduler, kube-proxy, kubectl, crictl and CoreDNS (cached outside the repo)
	localkube/build.sh node >/dev/null

.PHONY: helm
helm: ## Build helm (cached outside the repo; the chart tests use it)
	localkube/build.sh helm >/dev/null

.PHONY: tilt
tilt: ## Build tilt (cached outside the repo; checks the Tiltfile)
	localkube/build.sh tilt >/dev/null

.PHONY: seaweedfs
seaweedfs: ## Build SeaweedFS's weed, the S3 server the registry's s3 storage is tested on (cached outside the repo)
	localkube/build.sh seaweedfs >/dev/null

.PHONY: images
images: install ## Make the images from Debian packages the tests run (cached outside the repo, keyed by their inputs)
	@for name in builder python-base git-server registry curl; do \
	  $(BIN)/python -m localdev.debian_images build $$name >/dev/null || exit 1; \
	done

.PHONY: prometheus
prometheus: ## Fetch Debian's prometheus and promtool (cached outside the repo; the observability tests use them)
	scripts/prometheus.sh

.PHONY: chart-check
chart-check: install helm ## Lint and render the Helm chart with each value set, check its README table
	$(BIN)/python scripts/values_table.py --check
	helm="$$(localkube/build.sh helm --print-dir)/helm"; \
	for values in "" charts/imagestream-controller/ci/*-values.yaml; do \
	  "$$helm" lint --strict charts/imagestream-controller $${values:+-f "$$values"} && \
	  "$$helm" template chart-check charts/imagestream-controller $${values:+-f "$$values"} >/dev/null || exit 1; \
	done

.PHONY: bench
bench: install controlplane node ## Benchmarks against the physical floor: table + bench/results.json (BENCH_SCALE=0.1: quick)
	$(BIN)/python -m bench

.PHONY: bench-peers
bench-peers: install controlplane ## Push to patch beside Keel (built from its Go module, cached): bench/results-peers.json
	localkube/build.sh keel >/dev/null
	BENCH_SECTIONS=peers BENCH_OUT=$${BENCH_OUT:-bench/results-peers.json} $(BIN)/python -m bench

.PHONY: test-faults
test-faults: install controlplane ## Fault-injection suite (tests/faults): real processes, faults on purpose
	IMAGESTREAM_FAULT_TESTS=1 $(BIN)/pytest -ra -s tests/faults

.PHONY: test-node
test-node: install controlplane node ## Run the node tier only (tests/node: a real one-node cluster; needs root)
	$(BIN)/pytest -ra tests/node

.PHONY: test-incluster
test-incluster: install controlplane node helm tilt ## Run the in-cluster tier only (tests/incluster: the chart's pods and tilt ci on the real node; needs root)
	$(BIN)/pytest -ra tests/incluster

.PHONY: test-unit
test-unit: install ## Run the unit tests only (no control plane needed)
	$(BIN)/pytest -ra tests/unit

.PHONY: lint
lint: install ## Run ruff, mypy, the layer contracts (import-linter) and hadolint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache
	$(BIN)/hadolint Dockerfile

.PHONY: format
format: install ## Format the code with ruff
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

.PHONY: clean
clean: ## Remove the Python environment and dev state (keeps the Go build cache)
	rm -rf $(VENV) .dev .pytest_cache .mypy_cache .ruff_cache
