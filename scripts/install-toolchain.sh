#!/usr/bin/env bash
# Installs the Pulumi engine pieces that `pulumi up` of hyperfleet's Python stacks needs, into a cache
# outside the repository; idempotent (a second run only checks).
#
#   scripts/install-toolchain.sh [--no-build] [cli] [python] [docker] [kubernetes]   (default: all four)
#   eval "$(scripts/install-toolchain.sh --env)"    sets PATH and PULUMI_HOME for this shell
#
# Each piece is taken from the first source that has it:
#   1. what is already there: `pulumi` on PATH at the pinned version (with its language host), the
#      cache, plugins already installed in PULUMI_HOME;
#   2. Pulumi's official installer and plugin downloads, when reachable (checked with a 5 s timeout);
#   3. a build from the Go module proxy into the cache:
#      - cli:        github.com/pulumi/pulumi/pkg/v3 + sdk/v3, from a wrapper module (pkg/v3 replaces
#                    sdk/v3 with ../sdk, so `go install …@version` refuses it);
#      - python:     Pulumi's language host module (untagged: pseudo-version of the CLI tag's commit)
#                    when the proxy serves it, else hyperfleet's own small host
#                    (scripts/toolchain/pulumi-language-python, built against sdk/v3 only); either way
#                    with pulumi-language-python-exec and pulumi-resource-pulumi-python (dynamic
#                    providers) taken from the sdk/v3 module, installed beside it;
#      - docker:     hyperfleet's bridge of the Terraform Docker provider
#                    (scripts/toolchain/pulumi-resource-docker): pulumi-terraform-bridge + an
#                    unmodified copy of kreuzwerker/terraform-provider-docker + one shim file;
#      - kubernetes: github.com/pulumi/pulumi-kubernetes/provider/v4 at the one commit the proxy serves,
#                    with its two generated embed files and the Go SDK from the proxy for its ../sdk.
# Provider plugins are installed with `pulumi plugin install resource NAME VERSION --file BIN`.
#
# Layout (HYPERFLEET_CACHE, default ~/.cache/hyperfleet):
#   toolchain/bin/               the one directory to put on PATH: pulumi, pulumi-language-python,
#                                pulumi-language-python-exec, pulumi-resource-pulumi-python (symlinks)
#   pulumi/vX.Y.Z/bin/           the CLI and language host built or installed here
#   pulumi/home/                 PULUMI_HOME: plugins/, credentials of the local backend; kept apart from
#                                ~/.pulumi so that a user's own Pulumi setup is neither used nor changed
#   pulumi/plugin-builds/NAME-vX/ provider binaries built here
#   build/                       Go wrapper modules (work directories)
# Go modules and build cache are Go's own (GOMODCACHE, GOCACHE).
#
# Pins: read from infra/requirements.txt, where each Python SDK (pulumi, pulumi-docker,
# pulumi-kubernetes) is pinned; each engine piece is installed at its SDK's version. Overriding one
# from the environment is possible but unsupported.
set -euo pipefail

REQUIREMENTS="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/infra/requirements.txt"
pin() {
  local version
  version="$(sed -n "s/^$1==\([0-9][0-9.]*\)[[:space:]]*\$/\1/p" "$REQUIREMENTS")"
  [[ -n $version ]] || { echo "[toolchain] error: no '$1==X.Y.Z' line in $REQUIREMENTS" >&2; exit 1; }
  echo "$version"
}
PULUMI_VERSION="${PULUMI_VERSION:-$(pin pulumi)}"                                # CLI, language host
PULUMI_DOCKER_VERSION="${PULUMI_DOCKER_VERSION:-$(pin pulumi-docker)}"           # plugin docker
PULUMI_KUBERNETES_VERSION="${PULUMI_KUBERNETES_VERSION:-$(pin pulumi-kubernetes)}" # plugin kubernetes
# The proxy refuses pulumi-kubernetes/provider/v4 at every tag; it serves this commit of 15 January 2026.
# 4.24.1 (24 November 2025), the SDK's pin, is the newest release not newer than it (4.25.0 followed on
# 16 January), so the plugin built from it is installed as 4.24.1.
PULUMI_KUBERNETES_PROVIDER_PSEUDO="v4.0.0-20260115033456-f47bc2d6f199"
# Pulumi's language host module is untagged: the pseudo-version of the commit tagged v$PULUMI_VERSION.
PULUMI_LANGUAGE_PYTHON_PSEUDO="v3.0.0-20260728122446-7a0dceacbe8f"
# Ingredients of the docker bridge (the versions pulumi-docker 5.x pairs, upstream v4.6.0 plus fixes).
TF_BRIDGE_VERSION="v3.133.0"                                        # github.com/pulumi/pulumi-terraform-bridge/v3
TF_PLUGIN_SDK_FORK="v2.0.0-20260318212141-5525259d096b"             # github.com/pulumi/terraform-plugin-sdk/v2
TF_DOCKER_VERSION="v0.0.0-20260916201441-96d331c98ff4"              # github.com/kreuzwerker/terraform-provider-docker
PULUMI_INSTALLER_URL="https://get.pulumi.com"
CLIPBOARD_FORK="github.com/tgummerer/clipboard v0.0.0-20241001131231-d02d263e614e"

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE_DIR="${HYPERFLEET_CACHE:-$HOME/.cache/hyperfleet}"
VERSION_DIR="$CACHE_DIR/pulumi/v$PULUMI_VERSION"
BIN_DIR="$VERSION_DIR/bin"
TOOLCHAIN_BIN="$CACHE_DIR/toolchain/bin"
PLUGIN_BUILDS="$CACHE_DIR/pulumi/plugin-builds"
BUILD_DIR="$CACHE_DIR/build"
# Always this one, whatever PULUMI_HOME the caller has: the Makefile and the tests look here.
export PULUMI_HOME="$CACHE_DIR/pulumi/home"
export PULUMI_SKIP_UPDATE_CHECK=true
export GOFLAGS="-mod=mod -buildvcs=false"

print_env() {
  echo "export PATH=\"$TOOLCHAIN_BIN:\$PATH\""
  echo "export PULUMI_HOME=\"$PULUMI_HOME\""
  echo "export PULUMI_SKIP_UPDATE_CHECK=true PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true"
}
if [[ ${1:-} == --env ]]; then print_env; exit 0; fi
# --no-build: only what is there or Pulumi's installer gives (the user's path: no Go)
NO_BUILD=0
if [[ ${1:-} == --no-build ]]; then NO_BUILD=1; shift; fi

components=("$@")
[[ ${#components[@]} -gt 0 ]] || components=(cli python docker kubernetes)
for c in "${components[@]}"; do
  case "$c" in cli | python | docker | kubernetes) ;; *) echo "unknown component: $c (cli python docker kubernetes)" >&2; exit 2 ;; esac
done

log() { echo "[toolchain] $*"; }
die() { echo "[toolchain] error: $*" >&2; exit 1; }
have_go() {
  [[ $NO_BUILD -eq 0 ]] || die "$1: not installed, and Pulumi's installer is unreachable. Install Pulumi (https://www.pulumi.com/docs/install/), or build it here from the Go module proxy: make toolchain (Go >= 1.26)"
  command -v go >/dev/null || die "$1 needs Go (>= 1.26) to build from the Go module proxy, and Go is not on PATH"
}

# Runs "$@" in a subshell with errexit on, prints how long it took, returns its status (never exits).
# Call it as a plain statement, not after `if`, `!`, `&&` or `||`: there bash would ignore errexit
# inside it.
timed() {
  local label="$1" start rc had_e=0
  shift
  [[ $- == *e* ]] && had_e=1
  start=$(date +%s)
  log "$label ..."
  set +e
  (set -e; "$@")
  rc=$?
  [[ $had_e -eq 1 ]] && set -e
  local result=FAILED
  [[ $rc -ne 0 ]] || result="done"
  log "$label: $result in $(($(date +%s) - start)) s"
  return "$rc"
}

# Runs timed and keeps going whatever it returns.
try_timed() {
  local had_e=0
  [[ $- == *e* ]] && had_e=1
  set +e
  timed "$@"
  [[ $had_e -eq 1 ]] && set -e
  return 0
}

RUN_STATE="$(mktemp -d)"
trap 'rm -rf "$RUN_STATE"' EXIT
installer_reachable() {
  if [[ ! -f "$RUN_STATE/installer" ]]; then
    if command -v curl >/dev/null && curl -fsSL -m 5 -o /dev/null "$PULUMI_INSTALLER_URL" 2>/dev/null; then
      echo yes >"$RUN_STATE/installer"
    else
      echo no >"$RUN_STATE/installer"
    fi
    log "Pulumi's installer ($PULUMI_INSTALLER_URL) reachable within 5 s: $(cat "$RUN_STATE/installer")"
  fi
  [[ "$(cat "$RUN_STATE/installer")" == yes ]]
}

# Does the Go module proxy serve MODULE@VERSION? (an answer, not a download)
proxy_serves() { go list -m -json "$1@$2" >/dev/null 2>&1; }
module_dir() { go mod download -json "$1@$2" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d.get("Dir") or sys.exit(d.get("Error", "no Dir")))'; }

# Stamps of the inputs of the builds of our own sources, so that a changed pin or source rebuilds.
LANG_HOST_SRC="$HERE/toolchain/pulumi-language-python"
DOCKER_SRC="$HERE/toolchain/pulumi-resource-docker"
LANG_HOST_OUT="$BIN_DIR/pulumi-language-python"
DOCKER_OUT="$PLUGIN_BUILDS/docker-v$PULUMI_DOCKER_VERSION/pulumi-resource-docker"
KUBERNETES_OUT="$PLUGIN_BUILDS/kubernetes-v$PULUMI_KUBERNETES_VERSION/pulumi-resource-kubernetes"
lang_host_stamp() {
  { echo "$PULUMI_VERSION $PULUMI_LANGUAGE_PYTHON_PSEUDO"; cat "$LANG_HOST_SRC/main.go"; } | sha256sum | cut -c1-16
}
docker_stamp() {
  { echo "$PULUMI_DOCKER_VERSION $TF_BRIDGE_VERSION $TF_PLUGIN_SDK_FORK $TF_DOCKER_VERSION"
    cat "$DOCKER_SRC/main.go" "$DOCKER_SRC/hyperfleetshim.go.in"; } | sha256sum | cut -c1-16
}
kubernetes_stamp() { echo "$PULUMI_KUBERNETES_VERSION $PULUMI_KUBERNETES_PROVIDER_PSEUDO" | sha256sum | cut -c1-16; }
# A build of ours whose stamp no longer matches its inputs.
stale() { [[ -f "$1.stamp" && "$(cat "$1.stamp")" != "$2" ]]; }
up_to_date() { [[ -x "$1" && -f "$1.stamp" && "$(cat "$1.stamp")" == "$2" ]]; }

version_of() { "$1" version 2>/dev/null | head -1 | sed 's/^v//'; }

# ----------------------------------------------------------------------------------------------- cli
cli_path() {
  local p
  p="$(command -v pulumi 2>/dev/null || true)"
  if [[ -n $p && "$(version_of "$p")" == "$PULUMI_VERSION" ]]; then readlink -f "$p"; return; fi
  if [[ -x "$BIN_DIR/pulumi" && "$(version_of "$BIN_DIR/pulumi")" == "$PULUMI_VERSION" ]]; then echo "$BIN_DIR/pulumi"; return; fi
  return 1
}

build_cli() {
  have_go "the pulumi CLI"
  local work="$BUILD_DIR/pulumi-cli-v$PULUMI_VERSION"
  rm -rf "$work" && mkdir -p "$work" "$BIN_DIR"
  cat >"$work/go.mod" <<MOD
module hyperfleet.local/pulumi-cli

go 1.25

require (
	github.com/pulumi/pulumi/pkg/v3 v$PULUMI_VERSION
	github.com/pulumi/pulumi/sdk/v3 v$PULUMI_VERSION
)

replace github.com/atotto/clipboard => $CLIPBOARD_FORK
MOD
  printf '//go:build tools\n\npackage tools\n\nimport _ "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"\n' >"$work/tools.go"
  (cd "$work" && go mod tidy &&
    go build -trimpath -o "$BIN_DIR/pulumi.tmp" \
      -ldflags "-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$PULUMI_VERSION" \
      github.com/pulumi/pulumi/pkg/v3/cmd/pulumi) ||
    die "building the pulumi CLI v$PULUMI_VERSION from the Go module proxy failed (log above)"
  mv "$BIN_DIR/pulumi.tmp" "$BIN_DIR/pulumi"
}

install_cli() {
  local p
  if p="$(cli_path)"; then log "pulumi v$PULUMI_VERSION: $p"; return; fi
  if installer_reachable; then
    # shellcheck disable=SC2016 # expanded by the inner bash
    try_timed "official installer: pulumi v$PULUMI_VERSION into $VERSION_DIR" bash -c \
      'curl -fsSL -m 60 "$1" | sh -s -- --version "$2" --install-root "$3" --no-edit-path' _ \
      "$PULUMI_INSTALLER_URL" "$PULUMI_VERSION" "$VERSION_DIR"
  fi
  if ! cli_path >/dev/null; then
    timed "build pulumi CLI v$PULUMI_VERSION from the Go module proxy (10-20 min cold on 2 cores)" build_cli
  fi
  p="$(cli_path)" || die "pulumi v$PULUMI_VERSION: not on PATH, not in $BIN_DIR, and neither installable nor buildable"
  log "pulumi v$PULUMI_VERSION: $p"
}

# -------------------------------------------------------------------------------------------- python
# The language host that the CLI will use: beside it (bundled) or on PATH.
language_host_path() {
  local cli dir
  cli="$(cli_path)" || return 1
  dir="$(dirname "$cli")"
  if [[ -x "$dir/pulumi-language-python" && -e "$dir/pulumi-language-python-exec" ]]; then echo "$dir/pulumi-language-python"; return; fi
  if [[ -x "$BIN_DIR/pulumi-language-python" && -e "$BIN_DIR/pulumi-language-python-exec" ]]; then echo "$BIN_DIR/pulumi-language-python"; return; fi
  return 1
}

build_language_host() {
  have_go "the Python language host"
  local work="$BUILD_DIR/pulumi-language-python-v$PULUMI_VERSION" sdk module=github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3
  local out="$LANG_HOST_OUT" stamp
  stamp="$(lang_host_stamp)"
  mkdir -p "$BIN_DIR"
  sdk="$(module_dir github.com/pulumi/pulumi/sdk/v3 "v$PULUMI_VERSION")" || die "the Go module proxy does not serve github.com/pulumi/pulumi/sdk/v3@v$PULUMI_VERSION"
  install -m 0755 "$sdk/python/cmd/pulumi-language-python-exec" "$BIN_DIR/pulumi-language-python-exec"
  install -m 0755 "$sdk/python/dist/pulumi-resource-pulumi-python" "$BIN_DIR/pulumi-resource-pulumi-python"
  if up_to_date "$out" "$stamp"; then log "language host already built: $out"; return; fi
  rm -rf "$work" && mkdir -p "$work"
  if proxy_serves "$module" "$PULUMI_LANGUAGE_PYTHON_PSEUDO"; then
    log "the proxy serves Pulumi's language host ($module@$PULUMI_LANGUAGE_PYTHON_PSEUDO): building it"
    cat >"$work/go.mod" <<MOD
module hyperfleet.local/pulumi-language-python

go 1.25

require (
	$module $PULUMI_LANGUAGE_PYTHON_PSEUDO
	github.com/pulumi/pulumi/pkg/v3 v$PULUMI_VERSION
	github.com/pulumi/pulumi/sdk/v3 v$PULUMI_VERSION
)

replace github.com/atotto/clipboard => $CLIPBOARD_FORK
MOD
    printf '//go:build tools\n\npackage tools\n\nimport _ "%s"\n' "$module" >"$work/tools.go"
    (cd "$work" && go mod tidy &&
      go build -trimpath -o "$out.tmp" -ldflags "-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$PULUMI_VERSION" "$module") ||
      die "building $module@$PULUMI_LANGUAGE_PYTHON_PSEUDO failed (log above)"
  else
    log "the proxy does not serve $module@$PULUMI_LANGUAGE_PYTHON_PSEUDO: building hyperfleet's own language host"
    cp "$LANG_HOST_SRC/main.go" "$work/main.go"
    cat >"$work/go.mod" <<MOD
module hyperfleet.local/pulumi-language-python

go 1.25

require github.com/pulumi/pulumi/sdk/v3 v$PULUMI_VERSION
MOD
    (cd "$work" && go mod tidy && go build -trimpath -o "$out.tmp" -ldflags "-X main.version=$PULUMI_VERSION" .) ||
      die "building hyperfleet's Python language host failed (log above)"
  fi
  mv "$out.tmp" "$out"
  echo "$stamp" >"$out.stamp"
}

install_python() {
  local p
  if p="$(language_host_path)"; then
    if [[ $p == "$LANG_HOST_OUT" ]] && stale "$p" "$(lang_host_stamp)"; then
      log "Python language host: its sources or pins changed since $p was built: rebuilding"
    else
      log "Python language host: $p"
      return
    fi
  fi
  cli_path >/dev/null || die "the Python language host goes beside the pulumi CLI, which is missing (component cli)"
  # Pulumi's installer ships the language host with the CLI; a CLI built here has none.
  timed "build the Python language host" build_language_host
  p="$(language_host_path)" || die "Python language host: missing beside the pulumi CLI and in $BIN_DIR"
  log "Python language host: $p"
}

# ------------------------------------------------------------------------------------------- plugins
plugin_installed() { [[ -x "$PULUMI_HOME/plugins/resource-$1-v$2/pulumi-resource-$1" ]]; }

install_plugin_file() {
  local name="$1" version="$2" bin="$3" cli
  cli="$(cli_path)" || die "installing plugin $name needs the pulumi CLI (component cli)"
  "$cli" plugin install resource "$name" "$version" --file "$bin" --reinstall
}

build_docker_provider() {
  have_go "the docker provider plugin"
  local src="$DOCKER_SRC" work="$BUILD_DIR/pulumi-resource-docker-v$PULUMI_DOCKER_VERSION"
  local out="$DOCKER_OUT" upstream stamp
  stamp="$(docker_stamp)"
  if up_to_date "$out" "$stamp"; then log "docker provider already built: $out"; return; fi
  upstream="$(module_dir github.com/kreuzwerker/terraform-provider-docker "$TF_DOCKER_VERSION")" ||
    die "the Go module proxy does not serve github.com/kreuzwerker/terraform-provider-docker@$TF_DOCKER_VERSION"
  rm -rf "$work" && mkdir -p "$work" "$(dirname "$out")"
  # The provider's constructor is in an internal package: a copy of the module gets one file of ours.
  cp -r "$upstream" "$work/upstream" && chmod -R u+w "$work/upstream"
  mkdir "$work/upstream/hyperfleetshim"
  cp "$src/hyperfleetshim.go.in" "$work/upstream/hyperfleetshim/shim.go"
  cp "$src/main.go" "$work/main.go"
  cat >"$work/go.mod" <<MOD
module hyperfleet.local/pulumi-resource-docker

go 1.25.9

require (
	github.com/pulumi/pulumi-terraform-bridge/v3 $TF_BRIDGE_VERSION
	github.com/terraform-providers/terraform-provider-docker v0.0.0
)

replace (
	github.com/hashicorp/terraform-plugin-sdk/v2 => github.com/pulumi/terraform-plugin-sdk/v2 $TF_PLUGIN_SDK_FORK
	github.com/terraform-providers/terraform-provider-docker => ./upstream
)
MOD
  (cd "$work" && go build -trimpath -o "$out.tmp" -ldflags "-X main.version=$PULUMI_DOCKER_VERSION" .) ||
    die "building the docker provider plugin failed (log above)"
  mv "$out.tmp" "$out"
  echo "$stamp" >"$out.stamp"
}

build_kubernetes_provider() {
  have_go "the kubernetes provider plugin"
  local module=github.com/pulumi/pulumi-kubernetes/provider/v4 v="$PULUMI_KUBERNETES_PROVIDER_PSEUDO"
  local work="$BUILD_DIR/pulumi-resource-kubernetes-v$PULUMI_KUBERNETES_VERSION"
  local out="$KUBERNETES_OUT" dir stamp sdk_version
  stamp="$(kubernetes_stamp)"
  if up_to_date "$out" "$stamp"; then log "kubernetes provider already built: $out"; return; fi
  dir="$(module_dir "$module" "$v")" ||
    die "the Go module proxy does not serve $module@$v. Where Pulumi is reachable, \`pulumi plugin install resource kubernetes $PULUMI_KUBERNETES_VERSION\` gets the official binary instead"
  rm -rf "$work" && mkdir -p "$work" "$(dirname "$out")"
  # generate.go makes the two embed files (git-ignored upstream) from files the module carries:
  # schema.json with the version set, and terraform-mapping.json, both compacted.
  cp -r "$dir" "$work/provider" && chmod -R u+w "$work/provider"
  (cd "$work/provider/cmd/pulumi-resource-kubernetes" && python3 - "$PULUMI_KUBERNETES_VERSION" <<'PY'
import json, sys
schema = json.load(open("schema.json"))
schema["version"] = sys.argv[1]
json.dump(schema, open("schema-embed.json", "w"), separators=(",", ":"))
json.dump(json.load(open("terraform-mapping.json")), open("terraform-mapping-embed.json", "w"), separators=(",", ":"))
PY
  ) || die "generating the kubernetes provider's embed files failed"
  # Its go.mod replaces the Go SDK module with ../sdk (a folder of the repository, not in the module):
  # that replace goes, and the SDK comes from the proxy at the version the go.mod requires.
  sdk_version="$(go mod edit -json "$work/provider/go.mod" | python3 -c '
import json, sys
print(next(r["Version"] for r in json.load(sys.stdin)["Require"] if r["Path"] == "github.com/pulumi/pulumi-kubernetes/sdk/v4"))')"
  (cd "$work/provider" &&
    go mod edit -dropreplace github.com/pulumi/pulumi-kubernetes/sdk/v4 &&
    go mod tidy -e &&
    go build -trimpath -o "$out.tmp" -ldflags "-X $module/pkg/version.Version=$PULUMI_KUBERNETES_VERSION" ./cmd/pulumi-resource-kubernetes) ||
    die "building the kubernetes provider plugin ($module@$v, Go SDK $sdk_version) failed (log above)"
  mv "$out.tmp" "$out"
  echo "$stamp" >"$out.stamp"
}

install_provider() {
  local name="$1" version="$2" builder="$3" stamp="${4:-}" cli
  local out="$PLUGIN_BUILDS/$name-v$version/pulumi-resource-$name"
  if plugin_installed "$name" "$version"; then
    if [[ -n $stamp ]] && stale "$out" "$stamp"; then
      log "plugin $name v$version: its sources or pins changed since $out was built: rebuilding"
      timed "build plugin $name v$version from the Go module proxy" "$builder"
      timed "install plugin $name v$version into $PULUMI_HOME" install_plugin_file "$name" "$version" "$out"
    fi
    log "plugin $name v$version: installed in $PULUMI_HOME"
    return
  fi
  cli="$(cli_path)" || die "installing plugin $name needs the pulumi CLI (component cli)"
  if installer_reachable; then
    try_timed "download plugin $name v$version" "$cli" plugin install resource "$name" "$version"
  fi
  if ! plugin_installed "$name" "$version"; then
    timed "build plugin $name v$version from the Go module proxy" "$builder"
    timed "install plugin $name v$version into $PULUMI_HOME" install_plugin_file "$name" "$version" "$out"
  fi
  plugin_installed "$name" "$version" || die "plugin $name v$version: not installed in $PULUMI_HOME"
  log "plugin $name v$version: installed in $PULUMI_HOME"
}

# ---------------------------------------------------------------------------------------------- main
link_toolchain_bin() {
  local cli dir f
  cli="$(cli_path)" || return 0
  dir="$(dirname "$cli")"
  mkdir -p "$TOOLCHAIN_BIN"
  for f in pulumi pulumi-language-python pulumi-language-python-exec pulumi-resource-pulumi-python; do
    if [[ -e "$dir/$f" ]]; then
      ln -sfn "$dir/$f" "$TOOLCHAIN_BIN/$f"
    elif [[ -e "$BIN_DIR/$f" ]]; then
      ln -sfn "$BIN_DIR/$f" "$TOOLCHAIN_BIN/$f"
    fi
  done
}

failed=()
overall=$(date +%s)
for c in "${components[@]}"; do
  set +e
  case "$c" in
    cli) timed "component cli" install_cli ;;
    python) timed "component python" install_python ;;
    docker) timed "component docker" install_provider docker "$PULUMI_DOCKER_VERSION" build_docker_provider "$(docker_stamp)" ;;
    kubernetes) timed "component kubernetes" install_provider kubernetes "$PULUMI_KUBERNETES_VERSION" build_kubernetes_provider "$(kubernetes_stamp)" ;;
  esac
  rc=$?
  set -e
  [[ $rc -eq 0 ]] || failed+=("$c")
done
link_toolchain_bin

log "pins: pulumi==$PULUMI_VERSION pulumi-docker==$PULUMI_DOCKER_VERSION pulumi-kubernetes==$PULUMI_KUBERNETES_VERSION (PyPI SDKs = engine pieces)"
log "environment (eval \"\$(scripts/install-toolchain.sh --env)\"):"
print_env | sed 's/^/  /'
log "total $(($(date +%s) - overall)) s"
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "[toolchain] missing: ${failed[*]} (reasons above)" >&2
  exit 1
fi
