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

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*##/ {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

##@ Set-up

.PHONY: install
install: $(VENV)/.installed mongo-server ## Install the runtime (editable) with test tools, and a test MongoDB server

$(VENV)/.installed: runtime/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e 'runtime[test,monitor]'
	touch $@

.PHONY: mongo-server
mongo-server: ## Use mongod from PATH, or install the test server: FerretDB (built into $(HYPERFLEET_CACHE)) on PostgreSQL
	scripts/install-test-server.sh

$(STOCK_VENV)/.installed:
	$(PYTHON) -m venv $(STOCK_VENV)
	$(STOCK_VENV)/bin/python -m pip install --quiet '$(STOCK_HYPEROPT)' '$(STOCK_PYMONGO)'
	touch $@

##@ Use

.PHONY: demo
demo: install ## Run an example search here: a MongoDB server, 3 workers and a 60-trial fmin
	PYTHONPATH=. $(PY) examples/local_search.py

##@ Checks

.PHONY: test
test: install ## Run the tests against a real MongoDB wire-protocol server
	PYTHONPATH=. $(PY) -m pytest $(PYTEST_ARGS)

.PHONY: bench-runtime
bench-runtime: install $(STOCK_VENV)/.installed ## Pickup latency and throughput: hyperfleet vs stock hyperopt-mongo-worker
	PYTHONPATH=. $(PY) bench/bench_runtime.py --stock-python $(STOCK_VENV)/bin/python

.PHONY: clean
clean: ## Remove virtualenvs and caches in the repo (not the build cache in $(HYPERFLEET_CACHE))
	rm -rf $(VENV) $(STOCK_VENV) .pytest_cache bench/results
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
