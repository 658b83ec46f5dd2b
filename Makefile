# hyperfleet — entry points. `make help` lists them.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

PYTHON ?= python3
VENV ?= .venv
STOCK_VENV ?= .venv-stock
HYPERFLEET_CACHE ?= $(HOME)/.cache/hyperfleet
export HYPERFLEET_CACHE
PYTEST_ARGS ?=
# the stock hyperopt worker for side-by-side benchmarks needs the last pymongo 3
STOCK_HYPEROPT ?= hyperopt==0.3.0
STOCK_PYMONGO ?= pymongo<4

PY := $(VENV)/bin/python
IMAGE ?= hyperfleet/runtime:dev
# tests and the image build use the offline base image made by `make docker-engine`
BASE_IMAGE ?= hyperfleet/base:bookworm
export BASE_IMAGE
# Pulumi: the engine from `make toolchain`, state in a local directory, nothing fetched at run time
STACK ?= dev
PULUMI_STATE_DIR ?= $(CURDIR)/.pulumi-state
PULUMI_CONFIG_PASSPHRASE ?= hyperfleet-$(STACK)
PULUMI := env PATH="$(HYPERFLEET_CACHE)/toolchain/bin:$$PATH" PULUMI_HOME="$(HYPERFLEET_CACHE)/pulumi/home" \
	PULUMI_BACKEND_URL="file://$(PULUMI_STATE_DIR)" PULUMI_CONFIG_PASSPHRASE="$(PULUMI_CONFIG_PASSPHRASE)" \
	PULUMI_SKIP_UPDATE_CHECK=true PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true pulumi
TOOLCHAIN_PARTS ?= cli python docker kubernetes

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*##/ {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

##@ Set-up

.PHONY: install
install: $(VENV)/.installed mongo-server ## Install the runtime (editable) with test tools, and a test MongoDB server

$(VENV)/.installed: runtime/pyproject.toml infra/requirements.txt infra/requirements-gke.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e 'runtime[test,monitor,containers,driver,report]' -r infra/requirements.txt -r infra/requirements-gke.txt
	touch $@

.PHONY: mongo-server
mongo-server: ## Use mongod from PATH, or install the test server: FerretDB (built into $(HYPERFLEET_CACHE)) on PostgreSQL
	scripts/install-test-server.sh

.PHONY: docker-engine
docker-engine: ## Install and start a Docker engine if needed, and make the offline base image (root)
	scripts/install-docker-engine.sh

.PHONY: image
image: ## Build the runtime image (IMAGE, BASE_IMAGE) from a wheelhouse made here
	scripts/build-runtime-image.sh $(IMAGE) $(BASE_IMAGE)

.PHONY: kube-server
kube-server: ## Install the tests' Kubernetes: etcd, containerd, CNI (apt); Kubernetes 1.30, CoreDNS, helm (Go proxy)
	scripts/install-kube-apiserver.sh
	scripts/install-local-cluster.sh
	scripts/install-helm.sh

.PHONY: cluster-up
cluster-up: install kube-server docker-engine ## Start the tests' single-node cluster whose pods run (root; context hyperfleet-local)
	PYTHONPATH=. $(PY) -m tests.kube_cluster up

.PHONY: cluster-down
cluster-down: ## Stop the tests' cluster: its processes, pods, iptables chains and bridge
	PYTHONPATH=. $(PY) -m tests.kube_cluster down

.PHONY: toolchain
toolchain: ## Install the pulumi CLI, Python host and provider plugins (on PATH, installer, or built from the Go proxy)
	scripts/install-toolchain.sh $(TOOLCHAIN_PARTS)

$(STOCK_VENV)/.installed:
	$(PYTHON) -m venv $(STOCK_VENV)
	$(STOCK_VENV)/bin/python -m pip install --quiet '$(STOCK_HYPEROPT)' '$(STOCK_PYMONGO)'
	touch $@

##@ Use

.PHONY: demo
demo: install ## Run an example search here: a MongoDB server, 3 workers and a 60-trial fmin
	PYTHONPATH=. $(PY) examples/local_search.py

.PHONY: up
up: install toolchain docker-engine ## pulumi up of STACK (default dev: local Docker); builds the runtime image first
	scripts/build-runtime-image.sh hyperfleet/runtime:0.1.0 $(BASE_IMAGE)
	mkdir -p $(PULUMI_STATE_DIR)
	$(PULUMI) stack select --create $(STACK) --non-interactive
	$(PULUMI) up --yes --stack $(STACK) --non-interactive

.PHONY: kind-test
kind-test: install toolchain ## End to end on a new kind cluster (needs kind and internet): up, delete a worker pod, destroy
	mkdir -p $(PULUMI_STATE_DIR)
	env PATH="$(HYPERFLEET_CACHE)/toolchain/bin:$$PATH" PULUMI_HOME="$(HYPERFLEET_CACHE)/pulumi/home" \
	  PULUMI_BACKEND_URL="file://$(PULUMI_STATE_DIR)" PULUMI_CONFIG_PASSPHRASE=hyperfleet-kind \
	  PULUMI_SKIP_UPDATE_CHECK=true PYTHON=$(PY) scripts/kind-test.sh

.PHONY: down
down: ## pulumi destroy of STACK: removes every container, volume and network it made
	$(PULUMI) destroy --yes --stack $(STACK) --non-interactive

.PHONY: preview
preview: install toolchain ## pulumi preview of STACK through the real engine and plugins
	mkdir -p $(PULUMI_STATE_DIR)
	$(PULUMI) stack select --create $(STACK) --non-interactive
	$(PULUMI) preview --stack $(STACK) --non-interactive

##@ Checks

.PHONY: test
test: install docker-engine toolchain kube-server ## Run the tests: real MongoDB server, Docker engine and Pulumi engine
	PYTHONPATH=. $(PY) -m pytest $(PYTEST_ARGS)

.PHONY: bench-runtime
bench-runtime: install $(STOCK_VENV)/.installed ## Pickup latency and throughput: hyperfleet vs stock hyperopt-mongo-worker
	PYTHONPATH=. $(PY) bench/bench_runtime.py --stock-python $(STOCK_VENV)/bin/python

.PHONY: bench-monitor
bench-monitor: install docker-engine ## Detection latency (heartbeat, container) and sweep time over 10^6 trials
	PYTHONPATH=. $(PY) bench/bench_monitor.py

.PHONY: clean
clean: ## Remove virtualenvs and caches in the repo (not the build cache in $(HYPERFLEET_CACHE))
	rm -rf $(VENV) $(STOCK_VENV) .pytest_cache bench/results
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
