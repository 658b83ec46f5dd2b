# shellcheck shell=bash
# shellcheck disable=SC2034  # read by the scripts that source this file
# Every version the testbed installs, in one place: read by install/*.sh (through lib.sh) and by the
# Python side (testbed.pins()). A pin written VAR="${VAR:-x}" may be overridden from the environment.

# -- Kubernetes (install/kube-apiserver.sh, install/local-cluster.sh, install/keda.sh, install/helm.sh)
# v1.30.14, not 1.31: the module proxy reachable here serves no v0.31.x of several staging modules
# that these commands import (k8s.io/kube-scheduler, endpointslice, csi-translation-lib,
# kube-controller-manager, cri-client), while every one at v0.30.14 is there. 1.30 also still runs on
# cgroup v1 hosts (1.35+ refuses them by default).
KUBE_VERSION="${KUBE_VERSION:-v1.30.14}"
COREDNS_VERSION="${COREDNS_VERSION:-v1.14.3}"
LOCAL_PATH_PROVISIONER_VERSION="${LOCAL_PATH_PROVISIONER_VERSION:-v0.0.30}"
CRICTL_VERSION="${CRICTL_VERSION:-v1.37.0}"
KEDA_VERSION="${KEDA_VERSION:-v2.21.0}"
HELM_VERSION="${HELM_VERSION:-v3.22.0}"

# -- the test database server (install/test-server.sh, install/test-mongo-image.sh, mongo.py)
# FerretDB 2.7.0 pins DocumentDB 0.107, which no archive here serves; with 0.106 it logs a version
# warning at start and answers every command hyperfleet and hyperopt's suite send.
FERRETDB_MODULE=github.com/FerretDB/FerretDB/v2/cmd/ferretdb
FERRETDB_VERSION=v2.7.0
PG_MAJOR=15
DOCUMENTDB_VERSION=0.106.0-ferretdb-2.5.0
PG_CRON_VERSION=1.6.3
PGVECTOR_VERSION=0.8.0
declare -A SOURCE_SHA256=(
  ["documentdb-$DOCUMENTDB_VERSION"]=e12737c3c36f3e758e8e7334ae454bf359112ecd906a74a7a025cfa7c2a1d0a6
  ["pg_cron-$PG_CRON_VERSION"]=5d44573d151af782c3df0f6716c065a86f3985c24b9973a0ba56345f02b5df75
  ["pgvector-$PGVECTOR_VERSION"]=472922288943a774f9ff2d7733038e4920c99bb1804cb3b5170fa54dc45e195d
)
# the cache key of a staged build of the three extensions
PG_EXTENSIONS_KEY="pg$PG_MAJOR-documentdb-$DOCUMENTDB_VERSION-pg_cron-$PG_CRON_VERSION-pgvector-$PGVECTOR_VERSION"
# what the server runs with (the test-mongo image installs the same) and what the build needs beside
PG_RUNTIME_PACKAGES=("postgresql-$PG_MAJOR" "postgresql-$PG_MAJOR-rum" "postgresql-$PG_MAJOR-postgis-3")
PG_BUILD_PACKAGES=("postgresql-server-dev-$PG_MAJOR" libbson-dev libpcre2-dev libintelrdfpmath-dev libkrb5-dev pkg-config make gcc)
