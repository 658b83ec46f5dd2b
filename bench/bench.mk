# The benchmarks (bench/README.md): speed and memory figures, never asserted by make test (which runs
# them at tiny sizes, bench-smoke, so that none breaks unseen). Included by the Makefile.

# the stock hyperopt worker for side-by-side benchmarks needs the last pymongo 3
STOCK_VENV ?= .venv-stock
STOCK_HYPEROPT ?= hyperopt==0.3.0
STOCK_PYMONGO ?= pymongo<4
# Optuna (RDB storage on PostgreSQL, JournalStorage) and Ray Tune, for make bench-peers, pinned
PEERS_VENV ?= .venv-peers
PEERS ?= optuna==5.1.0 psycopg2-binary==2.9.13 'ray[tune]==2.60.0'
# BENCH_IMAGE: a runtime image bench-monitor may use as it is (make test passes the tests' own)
BENCH_IMAGE ?=
BENCH_RESULTS := $(CURDIR)/bench/results

$(STOCK_VENV)/.installed:
	$(call venv,$(STOCK_VENV),'$(STOCK_HYPEROPT)' '$(STOCK_PYMONGO)')
	touch $@

$(PEERS_VENV)/.installed: bench/bench.mk
	$(call venv,$(PEERS_VENV),$(PEERS))
	touch $@

##@ Benchmarks (ARGS passes options; figures in bench/README.md)

.PHONY: bench-ceiling
bench-ceiling: test-install ## The server's own limit: 4 clients issuing only one trial's commands (insert, reserve, result), trials/s
	PYTHONPATH=. $(PY) bench/bench_ceiling.py $(ARGS)

.PHONY: bench-startup
bench-startup: test-install ## What a worker or a driver pays to start: their imports, wall and CPU, scipy.stats deferred or not
	PYTHONPATH=. $(PY) bench/bench_startup.py $(ARGS)

.PHONY: bench-runtime
bench-runtime: test-install $(STOCK_VENV)/.installed ## Pickup latency and throughput: hyperfleet vs stock hyperopt-mongo-worker
	PYTHONPATH=. $(PY) bench/bench_runtime.py --stock-python $(STOCK_VENV)/bin/python $(ARGS)

.PHONY: bench-peers
bench-peers: test-install $(PEERS_VENV)/.installed ## hyperfleet beside Optuna (RDB on PostgreSQL, journal) and Ray Tune: trials/s, same objective and workers
	PYTHONPATH=. $(PY) bench/bench_peers.py --peers-python $(PEERS_VENV)/bin/python $(ARGS)

.PHONY: bench-pruning
bench-pruning: test-install $(PEERS_VENV)/.installed ## Pruning (none, median, ASHA) beside Optuna's pruners on a learning curve: compute, wall time, best final loss over seeds
	PYTHONPATH=. $(PY) bench/bench_pruning.py --peers-python $(PEERS_VENV)/bin/python $(ARGS)

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
	BASE_IMAGE=$(TEST_BASE_IMAGE) PYTHONPATH=. $(PY) bench/bench_monitor.py $(ARGS)

.PHONY: bench-smoke
# bench-smoke runs each storage of bench_peers once (each sampler once across them), and one variant of
# bench_runtime per worker: the other variants differ only in their arguments
BENCH_SMOKE_PEERS := --only "hyperfleet tpe" --only "optuna rdb tpe" --only "optuna rdb+heartbeat random" \
  --only "optuna journal file tpe" --only ray
# bench_monitor needs Docker and a Kubernetes API server, bench_dashboard a browser: left out with them
BENCH_SMOKE_MONITOR := $(if $(call without,docker kubernetes),,1)
BENCH_SMOKE_DASHBOARD := $(if $(call without,browser),,1)
bench-smoke: test-install $(if $(BENCH_SMOKE_MONITOR),docker-engine kube-server,) $(if $(BENCH_SMOKE_DASHBOARD),browser,) \
  $(STOCK_VENV)/.installed $(PEERS_VENV)/.installed ## Every benchmark at tiny sizes: fails if one breaks, asserts no timing (make test runs it)
	PYTHONPATH=. $(PY) bench/bench_ceiling.py --trials 40 --documents 100 --repeats 1 --out $(BENCH_RESULTS)/smoke-ceiling.json
	PYTHONPATH=. $(PY) bench/bench_startup.py --repeats 1 --out $(BENCH_RESULTS)/smoke-startup.json
	PYTHONPATH=. $(PY) bench/bench_runtime.py --stock-python $(STOCK_VENV)/bin/python --repeats 1 --samples 1 \
	  --trials 8 --workers 2 --only "hyperfleet in-process" --only "stock --no-subprocesses --poll-interval 0" \
	  --out $(BENCH_RESULTS)/smoke-runtime.json
	$(if $(BENCH_SMOKE_MONITOR),,: skipped, HYPERFLEET_TESTS_WITHOUT:) BASE_IMAGE=$(TEST_BASE_IMAGE) PYTHONPATH=. \
	  $(PY) bench/bench_monitor.py --samples 1 --documents 2000 --metrics-documents 2000 --liveness-trials 10 \
	  $(if $(BENCH_IMAGE),--image $(BENCH_IMAGE),)
	PYTHONPATH=. $(PY) bench/bench_driver.py --stock-python $(STOCK_VENV)/bin/python --sizes 100 --iterations 3 \
	  --out $(BENCH_RESULTS)/smoke-driver.json
	PYTHONPATH=. $(PY) bench/bench_driver_commands.py --trials 12 --workers 2 --out $(BENCH_RESULTS)/smoke-driver-commands.json
	PYTHONPATH=. $(PY) bench/bench_trial_commands.py --sizes 0 100 --trials 5 --out $(BENCH_RESULTS)/smoke-trial-commands.json
	$(if $(BENCH_SMOKE_DASHBOARD),,: skipped, HYPERFLEET_TESTS_WITHOUT:) PYTHONPATH=. $(PY) bench/bench_dashboard.py --trials 300 --repeats 1
	PYTHONPATH=. $(PY) bench/bench_peers.py --peers-python $(PEERS_VENV)/bin/python --trials 8 --ray-trials 4 \
	  --workers 2 --repeats 1 $(BENCH_SMOKE_PEERS) --out $(BENCH_RESULTS)/smoke-peers.json
	PYTHONPATH=. $(PY) bench/bench_pruning.py --peers-python $(PEERS_VENV)/bin/python --trials 6 --workers 2 \
	  --max-steps 4 --step-seconds 0 --seeds 0 --min-trials 1 --warmup-steps 1 --only median --only asha \
	  --out $(BENCH_RESULTS)/smoke-pruning.json
