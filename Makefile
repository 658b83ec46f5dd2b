# hyperfleet — entry points. `make help` lists them.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

PYTHON ?= python3
VENV ?= .venv
STOCK_VENV ?= .venv-stock
# Optuna (RDB storage on PostgreSQL, JournalStorage) and Ray Tune, for make bench-peers, pinned
PEERS_VENV ?= .venv-peers
PEERS ?= optuna==5.1.0 psycopg2-binary==2.9.13 'ray[tune]==2.60.0'

HYPERFLEET_CACHE ?= $(HOME)/.cache/hyperfleet
export HYPERFLEET_CACHE
PYTEST_ARGS ?=
# the stock hyperopt worker for side-by-side benchmarks needs the last pymongo 3
# BENCH_IMAGE: a runtime image bench-monitor may use as it is (make test passes the tests' own)
BENCH_IMAGE ?=
STOCK_HYPEROPT ?= hyperopt==0.3.0
STOCK_PYMONGO ?= pymongo<4

PY := $(VENV)/bin/python
# the package's version (runtime/pyproject.toml): the runtime image's tag
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' runtime/pyproject.toml)
IMAGE ?= hyperfleet/runtime:dev
# The runtime image's base: Python's official image for users; the tests (and OFFLINE=1) use the
# offline base image that `make docker-engine` makes with debootstrap.
OFFLINE_BASE_IMAGE ?= hyperfleet/base:bookworm
TEST_BASE_IMAGE ?= $(OFFLINE_BASE_IMAGE)
# Pulumi: the engine from `make toolchain`, state in a local directory, nothing fetched at run time
STACK ?= dev
# The ci stack runs offline (the test images: FerretDB instead of mongo, the runtime on the offline base)
OFFLINE ?= $(if $(filter ci,$(STACK)),1,)
BASE_IMAGE ?= $(if $(OFFLINE),$(OFFLINE_BASE_IMAGE),python:3.12-slim)
PULUMI_STATE_DIR ?= $(CURDIR)/.pulumi-state
PULUMI_CONFIG_PASSPHRASE ?= hyperfleet-$(STACK)
PULUMI := env PATH="$(HYPERFLEET_CACHE)/toolchain/bin:$$PATH" PULUMI_HOME="$(HYPERFLEET_CACHE)/pulumi/home" \
	PULUMI_BACKEND_URL="file://$(PULUMI_STATE_DIR)" PULUMI_CONFIG_PASSPHRASE="$(PULUMI_CONFIG_PASSPHRASE)" \
	PULUMI_SKIP_UPDATE_CHECK=true PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true pulumi
TOOLCHAIN_PARTS ?= cli python docker kubernetes
# what `make up` and `make preview` need; make kind-test asks for kubernetes instead of docker
TOOLCHAIN_USER_PARTS ?= cli python docker

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*##"} /^##@/ {printf "\n\033[1m%s\033[0m\n", substr($$0, 5)} \
	  /^[a-zA-Z_-]+:.*##/ {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

##@ Set-up

.PHONY: install
install: $(VENV)/.installed ## Install the runtime (editable) and the Pulumi program's SDKs into .venv

.PHONY: test-install
test-install: install mongo-server ## install, and a test MongoDB server (mongod from PATH, or FerretDB built with Go)

$(VENV)/.installed: runtime/pyproject.toml infra/requirements.txt infra/requirements-gke.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e 'runtime[test,monitor,containers,driver,report,dashboard]' -r infra/requirements.txt -r infra/requirements-gke.txt
	touch $@

.PHONY: mongo-server
mongo-server: ## Use mongod from PATH, or install the test server: FerretDB (built into $(HYPERFLEET_CACHE)) on PostgreSQL
	scripts/install-test-server.sh

.PHONY: docker-engine
docker-engine: ## Install and start a Docker engine if needed, and make the offline base image (root)
	BASE_IMAGE=$(OFFLINE_BASE_IMAGE) scripts/install-docker-engine.sh

.PHONY: image
image: ## Build the runtime image (IMAGE, BASE_IMAGE): pip online in the image; OFFLINE=1: from a wheelhouse made here
	scripts/build-runtime-image.sh $(IMAGE) $(BASE_IMAGE)

.PHONY: offline-images
offline-images: test-install docker-engine ## The ci stack's images, made offline: the runtime on the debootstrap base, FerretDB as mongo
	scripts/build-runtime-image.sh hyperfleet/runtime:test $(OFFLINE_BASE_IMAGE)
	scripts/build-test-mongo-image.sh hyperfleet/test-mongo:test $(OFFLINE_BASE_IMAGE)

.PHONY: user-toolchain
user-toolchain: ## pulumi, its Python host and the docker plugin: from PATH, the cache or Pulumi's installer (no Go build)
	scripts/check-prerequisites.sh pulumi
	scripts/install-toolchain.sh --no-build $(TOOLCHAIN_USER_PARTS)

.PHONY: browser
browser: ## Install a headless browser for the dashboard's browser test: Debian's chromium and chromium-driver (root)
	scripts/install-browser.sh

.PHONY: docker-hosts
docker-hosts: ## Install what the several-Docker-hosts test needs: Debian's openssh-server (root)
	scripts/install-ssh-server.sh

.PHONY: kube-server
kube-server: ## Install the tests' Kubernetes: etcd, containerd, CNI (apt); Kubernetes 1.30, CoreDNS, KEDA, helm (Go proxy)
	scripts/install-kube-apiserver.sh
	scripts/install-local-cluster.sh
	scripts/install-keda.sh
	scripts/install-helm.sh

.PHONY: cluster-up
cluster-up: test-install kube-server docker-engine ## Start the tests' single-node cluster whose pods run (root; context hyperfleet-local)
	BASE_IMAGE=$(TEST_BASE_IMAGE) PYTHONPATH=. $(PY) -m tests.kube_cluster up

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
demo: test-install ## Run an example search here: a MongoDB server, 3 workers and a 60-trial fmin
	PYTHONPATH=. $(PY) examples/local_search.py

.PHONY: up
up: install $(if $(OFFLINE),offline-images,) ## pulumi up of STACK (dev: local Docker, images pulled; ci: offline); builds the runtime image first
	scripts/check-prerequisites.sh docker pulumi
	$(MAKE) user-toolchain
	$(if $(OFFLINE),,scripts/build-runtime-image.sh hyperfleet/runtime:$(VERSION) $(BASE_IMAGE))
	$(PY) scripts/check-stack-images.py $(STACK)
	mkdir -p $(PULUMI_STATE_DIR)
	$(PULUMI) stack select --create $(STACK) --non-interactive
	$(PULUMI) up --yes --stack $(STACK) --non-interactive

.PHONY: kind-test
kind-test: install ## End to end on a new kind cluster (needs kind and internet): the Kubernetes scenario of make test
	scripts/check-prerequisites.sh docker pulumi kind kubectl
	$(MAKE) user-toolchain TOOLCHAIN_USER_PARTS="cli python kubernetes"
	mkdir -p $(PULUMI_STATE_DIR)
	env PATH="$(HYPERFLEET_CACHE)/toolchain/bin:$$PATH" PULUMI_HOME="$(HYPERFLEET_CACHE)/pulumi/home" \
	  PULUMI_BACKEND_URL="file://$(PULUMI_STATE_DIR)" PULUMI_CONFIG_PASSPHRASE=hyperfleet-kind \
	  PULUMI_SKIP_UPDATE_CHECK=true PYTHON=$(PY) scripts/kind-test.sh

.PHONY: down
down: ## pulumi destroy of STACK: removes every container, volume and network it made
	$(PULUMI) destroy --yes --stack $(STACK) --non-interactive

.PHONY: preview
preview: install ## pulumi preview of STACK through the real engine and plugins
	scripts/check-prerequisites.sh docker pulumi
	$(MAKE) user-toolchain
	mkdir -p $(PULUMI_STATE_DIR)
	$(PULUMI) stack select --create $(STACK) --non-interactive
	$(PULUMI) preview --stack $(STACK) --non-interactive

##@ Checks

.PHONY: test
test: lint test-install docker-engine docker-hosts toolchain kube-server browser ## Lint, then the tests: real MongoDB server, Docker engine, Pulumi engine, Kubernetes
	BASE_IMAGE=$(TEST_BASE_IMAGE) PYTHONPATH=. $(PY) -m pytest $(PYTEST_ARGS)
	$(MAKE) --no-print-directory test-hyperopt-suite test-hyperopt-oldest
	$(MAKE) --no-print-directory bench-smoke BENCH_IMAGE=hyperfleet/runtime:test

# hyperopt's own tests of hyperopt.mongoexp, from the installed wheel, against hyperfleet.mongoexp
HYPEROPT_SUITE := -p tests.hyperopt_suite.plugin --pyargs hyperopt.tests.integration.test_mongoexp -rxX
# the oldest hyperopt runtime/pyproject.toml accepts, and a virtualenv with it
HYPEROPT_OLDEST := $(shell sed -n 's/.*"hyperopt>=\([0-9.]*\),.*/\1/p' runtime/pyproject.toml)
OLDEST_VENV ?= .venv-hyperopt-$(HYPEROPT_OLDEST)

.PHONY: test-hyperopt-suite
test-hyperopt-suite: test-install ## hyperopt's own test suite of hyperopt.mongoexp, run against hyperfleet.mongoexp
	PYTHONPATH=. $(PY) -m pytest $(HYPEROPT_SUITE)

.PHONY: test-hyperopt-oldest
test-hyperopt-oldest: test-install $(OLDEST_VENV)/.installed ## The suite, fmin's features and the worker on the oldest hyperopt we support
	PYTHONPATH=. $(OLDEST_VENV)/bin/python -m pytest -q $(HYPEROPT_SUITE)
	PYTHONPATH=. $(OLDEST_VENV)/bin/python -m pytest -q tests/integration/test_fmin_features.py tests/integration/test_worker.py

# nose and six: hyperopt 0.2.7's tests import them
$(OLDEST_VENV)/.installed: runtime/pyproject.toml
	$(PYTHON) -m venv $(OLDEST_VENV)
	$(OLDEST_VENV)/bin/python -m pip install --quiet 'hyperopt==$(HYPEROPT_OLDEST)' -e 'runtime[test,driver]' nose six
	touch $@

.PHONY: lint
lint: install ## ruff (ruff.toml), shellcheck of scripts/, helm lint --strict of the chart
	command -v shellcheck >/dev/null || { [[ $$(id -u) -eq 0 ]] && apt-get install -y -qq shellcheck >/dev/null; } || \
	  { echo "shellcheck is missing (apt-get install shellcheck)" >&2; exit 1; }
	$(VENV)/bin/ruff check .
	shellcheck scripts/*.sh images/test-mongo/entrypoint.sh tests/hyperopt_suite/bin/mongod
	scripts/install-helm.sh >/dev/null
	"$$(ls -d $(HYPERFLEET_CACHE)/helm/*/bin/helm | sort | tail -n 1)" lint --strict charts/hyperfleet

.PHONY: test-fast
test-fast: install ## Unit tests and the Pulumi program's wiring (mocks): seconds, no server, no root
	PYTHONPATH=. $(PY) -m pytest tests/unit tests/infra -q $(PYTEST_ARGS)

.PHONY: bench-ceiling
bench-ceiling: test-install ## The server's own limit: 4 clients issuing only one trial's commands (insert, reserve, result), trials/s
	PYTHONPATH=. $(PY) bench/bench_ceiling.py $(ARGS)

.PHONY: bench-runtime
bench-runtime: test-install $(STOCK_VENV)/.installed ## Pickup latency and throughput: hyperfleet vs stock hyperopt-mongo-worker
	PYTHONPATH=. $(PY) bench/bench_runtime.py --stock-python $(STOCK_VENV)/bin/python

$(PEERS_VENV)/.installed: Makefile
	$(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install --quiet $(PEERS)
	touch $@

.PHONY: bench-peers
bench-peers: test-install $(PEERS_VENV)/.installed ## hyperfleet beside Optuna (RDB on PostgreSQL) and Ray Tune: trials/s, same objective and workers
	PYTHONPATH=. $(PY) bench/bench_peers.py --peers-python $(PEERS_VENV)/bin/python $(ARGS)

.PHONY: bench-smoke
bench-smoke: test-install docker-engine kube-server browser $(STOCK_VENV)/.installed $(PEERS_VENV)/.installed ## Every benchmark at tiny sizes: fails if one breaks, asserts no timing (make test runs it)
	PYTHONPATH=. $(PY) bench/bench_ceiling.py --trials 40 --documents 100 --repeats 1 --out $(CURDIR)/bench/results/smoke-ceiling.json
	PYTHONPATH=. $(PY) bench/bench_runtime.py --stock-python $(STOCK_VENV)/bin/python --repeats 1 --samples 1 \
	  --trials 8 --workers 2 --only hyperfleet --only "poll-interval 0" --out $(CURDIR)/bench/results/smoke-runtime.json
	BASE_IMAGE=$(TEST_BASE_IMAGE) PYTHONPATH=. $(PY) bench/bench_monitor.py --samples 1 --documents 2000 --metrics-documents 2000 \
	  --liveness-trials 10 $(if $(BENCH_IMAGE),--image $(BENCH_IMAGE),)
	PYTHONPATH=. $(PY) bench/bench_driver.py --stock-python $(STOCK_VENV)/bin/python --sizes 100 --iterations 3 \
	  --out $(CURDIR)/bench/results/smoke-driver.json
	PYTHONPATH=. $(PY) bench/bench_driver_commands.py --trials 12 --workers 2 --out $(CURDIR)/bench/results/smoke-driver-commands.json
	PYTHONPATH=. $(PY) bench/bench_trial_commands.py --sizes 0 100 --trials 5 \
	  --out $(CURDIR)/bench/results/smoke-trial-commands.json
	PYTHONPATH=. $(PY) bench/bench_dashboard.py --trials 300 --repeats 1
	PYTHONPATH=. $(PY) bench/bench_peers.py --peers-python $(PEERS_VENV)/bin/python --trials 8 --ray-trials 4 \
	  --repeats 1 --out $(CURDIR)/bench/results/smoke-peers.json

.PHONY: bench-driver
bench-driver: test-install $(STOCK_VENV)/.installed ## fmin's refresh at 10^3 and 10^4 trials vs stock MongoTrials, TPE beside it; the driver's commands per trial
	PYTHONPATH=. $(PY) bench/bench_driver.py --stock-python $(STOCK_VENV)/bin/python $(ARGS)
	PYTHONPATH=. $(PY) bench/bench_driver_commands.py

.PHONY: bench-trial
bench-trial: test-install ## One trial broken down: a worker's commands, their round trips and the server's plans, as the experiment grows
	PYTHONPATH=. $(PY) bench/bench_trial_commands.py $(ARGS)

.PHONY: bench-dashboard
bench-dashboard: test-install browser ## Dashboard API latency and first render in a browser, with 10^4 trials
	PYTHONPATH=. $(PY) bench/bench_dashboard.py $(ARGS)

.PHONY: bench-monitor
bench-monitor: test-install docker-engine kube-server ## Detection latency, liveness check per mode, sweep and failed-trial query over 10^6 trials
	BASE_IMAGE=$(TEST_BASE_IMAGE) PYTHONPATH=. $(PY) bench/bench_monitor.py

.PHONY: clean
clean: ## Remove virtualenvs and caches in the repo (not the build cache in $(HYPERFLEET_CACHE))
	rm -rf $(VENV) $(STOCK_VENV) $(PEERS_VENV) $(OLDEST_VENV) .pytest_cache bench/results
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
