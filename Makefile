# hyperfleet: what users run. `make help` lists it; `make help-all` adds the testbed's provisioning
# (testbed/testbed.mk) and the benchmarks (bench/bench.mk).
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory
# the runtime image's default base (PYTHON_BASE_IMAGE), one file for make, the scripts and infra
include images/versions.env

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HYPERFLEET_CACHE ?= $(HOME)/.cache/hyperfleet
export HYPERFLEET_CACHE
PYTEST_ARGS ?=
# the package's version (runtime/pyproject.toml): the runtime image's tag
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' runtime/pyproject.toml)
IMAGE ?= hyperfleet/runtime:dev
# The runtime image's base: Python's official image for users; the tests (and OFFLINE=1) use the
# offline base image that `make docker-engine` makes with debootstrap.
OFFLINE_BASE_IMAGE ?= hyperfleet/base:bookworm
TEST_BASE_IMAGE ?= $(OFFLINE_BASE_IMAGE)
STACK ?= dev
# The ci stack runs offline (the test images: FerretDB instead of mongo, the runtime on the offline base)
OFFLINE ?= $(if $(filter ci,$(STACK)),1,)
BASE_IMAGE ?= $(if $(OFFLINE),$(OFFLINE_BASE_IMAGE),$(PYTHON_BASE_IMAGE))
# Pulumi: the engine from PATH or `make toolchain`, state in a local directory, no update check, and a
# private TMPDIR removed when it ends: the kubernetes provider leaves a copy of the kubeconfig, client
# key included, in the temp directory on every run (docs/security.md)
PULUMI_STATE_DIR ?= $(CURDIR)/.pulumi-state
PULUMI_CONFIG_PASSPHRASE ?= hyperfleet-$(STACK)
PULUMI_ENV = $(CURDIR)/scripts/private-tmpdir.sh env PATH="$(HYPERFLEET_CACHE)/toolchain/bin:$$PATH" PULUMI_HOME="$(HYPERFLEET_CACHE)/pulumi/home" \
	PULUMI_BACKEND_URL="file://$(PULUMI_STATE_DIR)" PULUMI_CONFIG_PASSPHRASE="$(PULUMI_CONFIG_PASSPHRASE)" \
	PULUMI_SKIP_UPDATE_CHECK=true
PULUMI = $(PULUMI_ENV) PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true pulumi
# what `make up` and `make preview` need; make kind-test asks for kubernetes instead of docker
TOOLCHAIN_USER_PARTS ?= cli python docker

# The components a user may run the tests without (tests/components.py): HYPERFLEET_TESTS_WITHOUT=docker,browser
# make test skips the tests that need them, and installs and starts none of them.
comma := ,
TESTS_WITHOUT := $(subst $(comma), ,$(HYPERFLEET_TESTS_WITHOUT))
# $(call without,docker kubernetes): non-empty when any of them is opted out of
without = $(filter $(1),$(TESTS_WITHOUT))

include testbed/testbed.mk
include bench/bench.mk

# `make help`: the sections below for users; `make help-all`: every section of every included file.
# $(NAME) in a target's description is printed expanded.
HELP_SECTIONS := Use Develop
HELP_VARS := HYPERFLEET_CACHE STACK IMAGE BASE_IMAGE VENV OFFLINE_BASE_IMAGE
HELP = $(foreach v,$(HELP_VARS),$(v)='$($(v))') awk -v sections="$(1)" 'BEGIN {FS = ":.*\#\# "} \
	  /^\#\#@/ {section = substr($$0, 5); show = (sections == "" || index(" " sections " ", " " section " ")); \
	    if (show) printf "\n\033[1m%s\033[0m\n", section; next} \
	  show && /^[a-zA-Z_-]+:.*\#\# / {text = $$2; while (match(text, /\$$\([A-Z_]+\)/)) \
	    text = substr(text, 1, RSTART - 1) ENVIRON[substr(text, RSTART + 2, RLENGTH - 3)] substr(text, RSTART + RLENGTH); \
	    printf "  \033[36m%-24s\033[0m %s\n", $$1, text}'

##@ Use

.PHONY: help
help: ## Show the targets for users (make help-all: also the testbed's and the benchmarks')
	@$(call HELP,$(HELP_SECTIONS)) Makefile

.PHONY: help-all
help-all: ## Every target: the users', make test's stages, the testbed's provisioning, the benchmarks
	@$(call HELP,) $(MAKEFILE_LIST)

.PHONY: install
install: $(VENV)/.installed ## Install the runtime (editable) and the Pulumi program's SDKs into $(VENV)

# Every virtualenv's packages are installed by uv (pip installs uv itself into the virtualenv first):
# from its cache it fills .venv in about 6 s (37 s when it byte-compiles, below) where pip took 79 s, and a
# fresh clone's make test makes five.
# Files are not byte-compiled at install (8,000, mostly the Kubernetes client and provider SDK, where a
# program imports a few hundred): Python compiles what it imports, once, into __pycache__. Unless
# PYTHONDONTWRITEBYTECODE is set: then nothing would be cached and every start would compile.
UV_VERSION := 0.13.9
UV_COMPILE := $(if $(PYTHONDONTWRITEBYTECODE),--compile-bytecode,)
# $(call venv,DIR,PACKAGES): make the virtualenv DIR and install PACKAGES (pip's arguments) into it; a comma
# in PACKAGES (extras) would split the call's arguments: pass it in a variable
define venv
$(PYTHON) -m venv $(1)
$(1)/bin/python -m pip install --quiet 'uv==$(UV_VERSION)'
$(1)/bin/uv pip install --quiet --system-certs --python $(1)/bin/python $(UV_COMPILE) $(2)
endef

# pip too: its own newer version, for scripts/build-runtime-image.sh's `pip download`
VENV_PACKAGES := --upgrade-package pip pip -e 'runtime[test,monitor,containers,driver,report,dashboard]' -r infra/requirements.txt -r infra/requirements-gke.txt
$(VENV)/.installed: runtime/pyproject.toml infra/requirements.txt infra/requirements-gke.txt
	$(call venv,$(VENV),$(VENV_PACKAGES))
	touch $@

.PHONY: demo
demo: test-install ## Run an example search here: a MongoDB server, 3 workers and a 60-trial fmin
	PYTHONPATH=. $(PY) examples/local_search.py

.PHONY: image
image: ## Build the runtime image $(IMAGE) on $(BASE_IMAGE); OFFLINE=1: from a wheelhouse made here
	scripts/build-runtime-image.sh $(IMAGE) $(BASE_IMAGE)

.PHONY: up
up: install $(if $(OFFLINE),offline-images,) ## pulumi up of stack $(STACK) (dev: local Docker; ci: offline); builds the runtime image first
	scripts/check-prerequisites.sh docker pulumi
	$(MAKE) user-toolchain
	$(if $(OFFLINE),,scripts/build-runtime-image.sh hyperfleet/runtime:$(VERSION) $(BASE_IMAGE))
	$(PY) scripts/check-stack-images.py $(STACK)
	mkdir -p $(PULUMI_STATE_DIR)
	$(PULUMI) stack select --create $(STACK) --non-interactive
	$(PULUMI) up --yes --stack $(STACK) --non-interactive

.PHONY: down
down: ## pulumi destroy of stack $(STACK): removes every container, volume and network it made
	$(PULUMI) destroy --yes --stack $(STACK) --non-interactive

.PHONY: preview
preview: install ## pulumi preview of stack $(STACK) through the real engine and plugins
	scripts/check-prerequisites.sh docker pulumi
	$(MAKE) user-toolchain
	mkdir -p $(PULUMI_STATE_DIR)
	$(PULUMI) stack select --create $(STACK) --non-interactive
	$(PULUMI) preview --stack $(STACK) --non-interactive

.PHONY: kind-test
kind-test: STACK = kind
kind-test: install ## End to end on a new kind cluster (needs kind and internet): the Kubernetes scenario of make test
	scripts/check-prerequisites.sh docker pulumi kind kubectl
	$(MAKE) user-toolchain TOOLCHAIN_USER_PARTS="cli python kubernetes"
	mkdir -p $(PULUMI_STATE_DIR)
	$(PULUMI_ENV) PYTHON=$(PY) scripts/kind-test.sh

.PHONY: user-toolchain
user-toolchain: # pulumi, its Python host and the plugins of TOOLCHAIN_USER_PARTS: from PATH, the cache or Pulumi's installer
	scripts/check-prerequisites.sh pulumi
	scripts/install-toolchain.sh --no-build $(TOOLCHAIN_USER_PARTS)

##@ Develop

# make test's stages (scripts/test-stages.sh): TEST_FIRST in order, then TEST_MAIN in order with each of
# TEST_BESIDE beside them. By default (TEST_PARALLEL=1) the suite runs on PYTEST_WORKERS workers with the
# other stages beside it (docs/testing.md has the times); TEST_PARALLEL= runs everything one after another,
# the suite in one process (about 25 min warm on 2 cores): slower, but a failure's log is in order
# (hyperopt's own suite ran alone, first, for a while: its threaded test's rare interpreter crash came
# alone too, in CI; HYPEROPT_SUITE_RUN below)
TEST_PARALLEL ?= 1
TEST_FIRST := provision lint
TEST_MAIN := pytest $(if $(TEST_PARALLEL),,hyperopt-suite hyperopt-oldest bench-smoke)
TEST_BESIDE := $(if $(TEST_PARALLEL),hyperopt-suite hyperopt-oldest bench-smoke,)
STAGE_TIMES := $(CURDIR)/.test-stages

.PHONY: test
test: ## Provision the testbed, lint, then every test: real MongoDB server, Docker engine, Pulumi engine, Kubernetes
	@MAKE="$(MAKE)" scripts/test-stages.sh $(STAGE_TIMES) "$(TEST_FIRST)" "$(TEST_MAIN)" "$(TEST_BESIDE)"

.PHONY: test-fast
test-fast: install ## Unit tests and the Pulumi program's wiring (mocks): seconds, no server, no root
	PYTHONPATH=. $(PY) -m pytest tests/unit tests/infra -q $(PYTEST_ARGS)

# the job protocol's tests need only the test database: everything else is left out
CORE_WITHOUT := docker,pulumi,helm,kubernetes,root,browser
.PHONY: test-core
test-core: test-install test-bytecode ## Unit tests and the job protocol (store, worker, monitor, trials) on the test database: no Docker, Pulumi or Kubernetes
	HYPERFLEET_TESTS_WITHOUT=$(CORE_WITHOUT) PYTHONPATH=. $(PY) -m pytest tests/unit tests/integration -q -m "not slow" -n 2 $(PYTEST_ARGS)

# Mutation testing (tests/mutation/run.py, docs/testing.md): cosmic-ray in a virtualenv of its own, so
# its dependencies stay out of the project's; coverage (for the per-line test selection) in a folder
# of its own that only the measured runs put on PYTHONPATH
MUTATION_VENV ?= .venv-mutation
COSMIC_RAY_VERSION := 8.7.0
COVERAGE_VERSION := 7.17.3
MUTATION_ARGS ?=
.PHONY: mutation
mutation: test-install $(MUTATION_VENV)/.installed ## Mutation testing of the core with cosmic-ray, not part of make test (hours; MUTATION_ARGS="--modules spec,store --sample 40")
	HYPERFLEET_TESTS_WITHOUT=$(CORE_WITHOUT) nice $(MUTATION_VENV)/bin/python tests/mutation/run.py --python $(PY) --coverage-lib $(MUTATION_VENV)/coverage-lib $(MUTATION_ARGS)

$(MUTATION_VENV)/.installed:
	$(call venv,$(MUTATION_VENV),'cosmic-ray==$(COSMIC_RAY_VERSION)')
	$(PY) -m pip install --quiet --upgrade --target $(MUTATION_VENV)/coverage-lib 'coverage==$(COVERAGE_VERSION)'
	touch $@

.PHONY: lint
lint: ## ruff, shellcheck, helm lint --strict of the chart; installs nothing (make lint-tools does)
	@[[ -x $(VENV)/bin/ruff ]] || { echo "lint: no ruff in $(VENV): run make install" >&2; exit 1; }
	@command -v shellcheck >/dev/null || { echo "lint: no shellcheck: run make lint-tools (or apt-get install shellcheck)" >&2; exit 1; }
	$(VENV)/bin/ruff check .
	shellcheck -x scripts/*.sh testbed/*.sh testbed/install/*.sh testbed/images/test-mongo/entrypoint.sh tests/hyperopt_suite/bin/mongod tests/hyperopt_suite/once-more-on-crash.sh
	@$(if $(call without,helm),echo "helm lint: skipped (HYPERFLEET_TESTS_WITHOUT=$(HYPERFLEET_TESTS_WITHOUT))"; exit 0;) \
	  helm=$$(ls -d $(HYPERFLEET_CACHE)/helm/*/bin/helm 2>/dev/null | sort | tail -n 1); \
	  [[ -n $$helm ]] || { echo "lint: no helm in $(HYPERFLEET_CACHE)/helm: run make lint-tools" >&2; exit 1; }; \
	  echo "helm lint --strict charts/hyperfleet"; "$$helm" lint --strict charts/hyperfleet

.PHONY: docs
docs: install ## Regenerate docs/stack-config.md from the config models in infra/config.py
	$(PY) -m infra.stack_config_doc

.PHONY: clean
clean: ## Remove virtualenvs and caches in the repo (not the build cache in $(HYPERFLEET_CACHE))
	rm -rf $(VENV) $(STOCK_VENV) $(PEERS_VENV) $(OLDEST_VENV) $(MUTATION_VENV) .mutation .pytest_cache bench/results $(STAGE_TIMES) $(STAGE_TIMES).beside*.log
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

##@ Test stages (make test runs them in order)

# With PYTHONDONTWRITEBYTECODE set (this machine sets it), Python writes no __pycache__, so every process the
# suite starts (hundreds of workers, drivers, monitors and Pulumi programs) compiled the project's own
# modules again: 0.1 s of CPU for the runtime's, 0.07 s for the Pulumi program's. Compiled once here
# instead (a source changed since is compiled in memory as before: Python checks each file's stamp).
BYTECODE_DIRS := runtime infra tests testbed bench examples
.PHONY: test-bytecode
test-bytecode:
	$(if $(PYTHONDONTWRITEBYTECODE),$(PY) -m compileall -q -j 0 $(BYTECODE_DIRS) >/dev/null,@:)

.PHONY: test-stage-provision
test-stage-provision: test-install test-bytecode lint-tools $(if $(call without,docker),,docker-engine docker-hosts) \
  $(if $(call without,pulumi),,toolchain) $(if $(call without,kubernetes),,kube-server) \
  $(if $(call without,browser),,browser) ## Install and build what the tests use (none of what HYPERFLEET_TESTS_WITHOUT names)

.PHONY: test-stage-lint
test-stage-lint: lint ## = make lint

# The suite runs on PYTEST_WORKERS pytest-xdist workers (4 with TEST_PARALLEL=1, the default; 0, in this process, without),
# a file at a time on a worker (module fixtures deploy stacks once), the slow files first (tests/conftest.py
# SLOW_FIRST): most wait on deployments, KEDA and pods, so the others run beside them. tests/shared_run.py
# builds the images and starts the cluster and the Docker hosts once for all workers.
PYTEST_WORKERS ?= $(if $(TEST_PARALLEL),4,0)
.PHONY: test-stage-pytest
test-stage-pytest: ## The pytest suite (tests/) on PYTEST_WORKERS workers: PYTEST_ARGS passes options
	BASE_IMAGE=$(TEST_BASE_IMAGE) PYTHONPATH=. $(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder \
	  --tb=short $(PYTEST_ARGS)

# hyperopt's own tests of hyperopt.mongoexp, from the installed wheel, against hyperfleet.mongoexp
HYPEROPT_SUITE := -p tests.hyperopt_suite.plugin --pyargs hyperopt.tests.integration.test_mongoexp -rxX
# runs the suite once more when the interpreter crashed in it (the script says why; a failed test fails)
HYPEROPT_SUITE_RUN := tests/hyperopt_suite/once-more-on-crash.sh
# the oldest hyperopt runtime/pyproject.toml accepts, and a virtualenv with it
HYPEROPT_OLDEST := $(shell sed -n 's/.*"hyperopt>=\([0-9.]*\),.*/\1/p' runtime/pyproject.toml)
OLDEST_VENV ?= .venv-hyperopt-$(HYPEROPT_OLDEST)

.PHONY: test-stage-hyperopt-suite test-hyperopt-suite
test-stage-hyperopt-suite: test-hyperopt-suite
test-hyperopt-suite: test-install ## hyperopt's own test suite of hyperopt.mongoexp, run against hyperfleet.mongoexp
	PYTHONPATH=. $(HYPEROPT_SUITE_RUN) $(PY) -m pytest $(HYPEROPT_SUITE)

.PHONY: test-stage-hyperopt-oldest test-hyperopt-oldest
test-stage-hyperopt-oldest: test-hyperopt-oldest
test-hyperopt-oldest: test-install $(OLDEST_VENV)/.installed ## The suite, fmin's features and the worker on the oldest hyperopt we support
	PYTHONPATH=. $(HYPEROPT_SUITE_RUN) $(OLDEST_VENV)/bin/python -m pytest -q $(HYPEROPT_SUITE)
	PYTHONPATH=. $(OLDEST_VENV)/bin/python -m pytest -q -n 2 tests/integration/test_fmin_features.py tests/integration/test_worker.py

# nose and six: hyperopt 0.2.7's tests import them
OLDEST_PACKAGES = 'hyperopt==$(HYPEROPT_OLDEST)' -e 'runtime[test,driver]' nose six
$(OLDEST_VENV)/.installed: runtime/pyproject.toml
	$(call venv,$(OLDEST_VENV),$(OLDEST_PACKAGES))
	touch $@

.PHONY: test-stage-bench-smoke
# it runs beside the pytest stage, whose first end-to-end tests build the image: built here if not yet there
test-stage-bench-smoke: ## Every benchmark at tiny sizes (make bench-smoke, on the tests' runtime image)
	$(if $(call without,docker),,docker image inspect hyperfleet/runtime:test >/dev/null 2>&1 \
	  || PYTHON=$(PY) scripts/build-runtime-image.sh hyperfleet/runtime:test $(TEST_BASE_IMAGE))
	$(MAKE) bench-smoke BENCH_IMAGE=hyperfleet/runtime:test
