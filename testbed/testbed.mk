# The testbed's provisioning (testbed/README.md): the local stand-ins for real infrastructure that the
# tests, benchmarks and offline stacks use. Included by the Makefile; `make help-all` lists it.

TOOLCHAIN_PARTS ?= cli python docker kubernetes

##@ Testbed: provisioning (root where it installs Debian packages)

.PHONY: test-install
test-install: install mongo-server ## install, and a test MongoDB server (mongod from PATH, or FerretDB 2 on PostgreSQL)

.PHONY: mongo-server
mongo-server: ## mongod from PATH, or the test server: FerretDB 2 + DocumentDB on PostgreSQL, built into $(HYPERFLEET_CACHE)
	testbed/install/test-server.sh

.PHONY: lint-tools
lint-tools: install ## What make lint runs: shellcheck (Debian) and helm (built into $(HYPERFLEET_CACHE))
	command -v shellcheck >/dev/null || testbed/install/debian-packages.sh shellcheck
	$(if $(call without,helm),,testbed/install/helm.sh >/dev/null)

.PHONY: docker-engine
docker-engine: ## A Docker engine (Debian's docker.io, started if needed) and the offline base image $(OFFLINE_BASE_IMAGE)
	BASE_IMAGE=$(OFFLINE_BASE_IMAGE) testbed/install/docker-engine.sh

.PHONY: offline-images
offline-images: test-install docker-engine ## The ci stack's images, made offline: the runtime on the debootstrap base, FerretDB as mongo
	scripts/build-runtime-image.sh hyperfleet/runtime:test $(OFFLINE_BASE_IMAGE)
	testbed/install/test-mongo-image.sh hyperfleet/test-mongo:test $(OFFLINE_BASE_IMAGE)

.PHONY: browser
browser: ## A headless browser for the dashboard's browser test: Debian's chromium and chromium-driver
	testbed/install/browser.sh

.PHONY: docker-hosts
docker-hosts: ## What the several-Docker-hosts test needs: Debian's openssh-server
	testbed/install/ssh-server.sh

.PHONY: kube-server
kube-server: ## The tests' Kubernetes: etcd, containerd, CNI (Debian); Kubernetes, CoreDNS, KEDA, helm (Go module proxy)
	testbed/install/kube-apiserver.sh
	testbed/install/local-cluster.sh
	testbed/install/keda.sh
	testbed/install/helm.sh

.PHONY: cluster-up
cluster-up: test-install kube-server docker-engine ## Start the tests' single-node cluster whose pods run (context hyperfleet-local)
	BASE_IMAGE=$(TEST_BASE_IMAGE) PYTHONPATH=. $(PY) -m testbed.kube_cluster up

.PHONY: cluster-down
cluster-down: ## Stop the tests' cluster: its processes, pods, iptables chains and bridge
	PYTHONPATH=. $(PY) -m testbed.kube_cluster down

.PHONY: toolchain
toolchain: ## The pulumi CLI, Python host and provider plugins (from PATH, Pulumi's installer, or built from the Go module proxy)
	scripts/install-toolchain.sh $(TOOLCHAIN_PARTS)
