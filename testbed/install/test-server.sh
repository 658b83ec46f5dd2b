#!/usr/bin/env bash
# Installs the MongoDB wire-protocol server the tests, benchmarks and examples start, for machines
# where no `mongod` exists: FerretDB v2 on PostgreSQL with the DocumentDB extension (indexes, atomic
# findAndModify, SCRAM logins).
#  1. Debian's PostgreSQL and what DocumentDB builds against (apt, root);
#  2. the PostgreSQL extensions DocumentDB needs that no registry serves (pgvector, pg_cron, DocumentDB),
#     built from release source archives whose SHA-256 sums are pinned below, staged into
#     $HYPERFLEET_CACHE/pg-extensions/<versions> and copied into PostgreSQL's directories (the test-mongo
#     image copies the same staged tree);
#  3. FerretDB, built with Go from the module proxy into $HYPERFLEET_CACHE/bin.
# Idempotent: a build whose versions are cached is reused; a second run takes a second.
#
# The source archives are read from $HYPERFLEET_SOURCES (default: ../shared/sources beside the checkout).
# On another machine, put the three archives named below there (release tarballs of the upstream tags
# FerretDB/documentdb v0.106.0-ferretdb-2.5.0, citusdata/pg_cron v1.6.3, pgvector/pgvector v0.8.0,
# repacked as NAME-VERSION.tar.xz); their sums are checked before anything is built.
set -euo pipefail

# shellcheck source=testbed/lib.sh
source "$(dirname "$0")/../lib.sh"

if command -v mongod >/dev/null; then
  echo "test server: $(command -v mongod)"
  exit 0
fi

SOURCES="${HYPERFLEET_SOURCES:-$REPO/../shared/sources}"
PG_CONFIG="/usr/lib/postgresql/$PG_MAJOR/bin/pg_config"
STAGE="$CACHE_DIR/pg-extensions/$PG_EXTENSIONS_KEY"
FERRETDB_BIN="$CACHE_DIR/bin/ferretdb-$FERRETDB_VERSION"
start=$(date +%s)

# -- 1. packages ---------------------------------------------------------------------------------
missing=()
for pkg in "${PG_BUILD_PACKAGES[@]}" "${PG_RUNTIME_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
[[ ${#missing[@]} -eq 0 ]] || apt_install --no-install-recommends "${missing[@]}"
# Debian's pg_cron 1.4 refuses DocumentDB's 'N seconds' schedules: ours must be the one PostgreSQL loads
if dpkg-query -W -f='${Status}' "postgresql-$PG_MAJOR-cron" 2>/dev/null | grep -q 'install ok installed'; then
  die "Debian's postgresql-$PG_MAJOR-cron is installed; DocumentDB needs pg_cron $PG_CRON_VERSION: remove it"
fi

# -- 2. the extensions ----------------------------------------------------------------------------
source_archive() {  # NAME-VERSION: the checked archive's path
  local archive="$SOURCES/$1.tar.xz" want="${SOURCE_SHA256[$1]}"
  [[ -f "$archive" ]] || die "$archive is missing (see the head of $0)"
  [[ "$(sha256sum "$archive" | cut -d' ' -f1)" == "$want" ]] || {
    echo "error: $archive: SHA-256 is not $want" >&2; exit 1; }
  echo "$archive"
}

server_version=$(dpkg-query -W -f='${Version}' "postgresql-$PG_MAJOR")
if [[ "$(cat "$STAGE/.complete" 2>/dev/null)" != "$server_version" ]]; then
  echo "building PostgreSQL extensions $PG_EXTENSIONS_KEY (about a minute) ..."
  work="$CACHE_DIR/build/pg-extensions"
  rm -rf "$work" "$STAGE"
  mkdir -p "$work/pkgconfig" "$STAGE"
  # Debian ships the Intel decimal library (libbidgcc000.a) without the pkg-config module DocumentDB asks for
  printf 'Name: intelmathlib\nDescription: Intel decimal floating-point math library\nVersion: 2.0\nLibs: -lbidgcc000\nCflags: -I/usr/include\n' \
    > "$work/pkgconfig/intelmathlib.pc"
  export PKG_CONFIG_PATH="$work/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
  jobs=$(nproc)
  for name in "pgvector-$PGVECTOR_VERSION" "pg_cron-$PG_CRON_VERSION"; do
    tar -C "$work" -xJf "$(source_archive "$name")"
    make -s -C "$work/$name" -j"$jobs" PG_CONFIG="$PG_CONFIG" with_llvm=no >/dev/null
    make -s -C "$work/$name" PG_CONFIG="$PG_CONFIG" with_llvm=no DESTDIR="$STAGE" install >/dev/null
  done
  name="documentdb-$DOCUMENTDB_VERSION"
  tar -C "$work" -xJf "$(source_archive "$name")"
  # libbson 1.23 (Debian 12) lacks BSON_SUBTYPE_SENSITIVE, which DocumentDB names in a switch
  for part in pg_documentdb_core pg_documentdb; do
    make -s -C "$work/$name/$part" -j"$jobs" PG_CONFIG="$PG_CONFIG" with_llvm=no \
      COPT="-DBSON_SUBTYPE_SENSITIVE=0x08 -Wno-error=switch" >/dev/null 2>"$work/$part.log" || {
        tail -n 30 "$work/$part.log" >&2; exit 1; }
    make -s -C "$work/$name/$part" PG_CONFIG="$PG_CONFIG" with_llvm=no DESTDIR="$STAGE" install >/dev/null
  done
  rm -rf "$work"
  # what the build was made against: the server must be this version (testbed/install/test-mongo-image.sh)
  printf '%s' "$server_version" > "$STAGE/.complete"
fi
# into PostgreSQL's own directories (extension control files can live nowhere else before PostgreSQL 18)
if ! cmp -s "$STAGE/.complete" "$("$PG_CONFIG" --sharedir)/extension/.hyperfleet-$PG_EXTENSIONS_KEY" 2>/dev/null; then
  [[ $(id -u) -eq 0 ]] || die "installing the extensions into PostgreSQL needs root"
  cp -a "$STAGE/usr" /
  cp "$STAGE/.complete" "$("$PG_CONFIG" --sharedir)/extension/.hyperfleet-$PG_EXTENSIONS_KEY"
fi

# -- 3. FerretDB ------------------------------------------------------------------------------------
if [[ ! -x "$FERRETDB_BIN" ]]; then
  command -v go >/dev/null || die "Go (>= 1.24) is needed to build FerretDB"
  echo "building FerretDB $FERRETDB_VERSION (the first build downloads its Go modules) ..."
  mkdir -p "$CACHE_DIR/bin"
  gobin="$CACHE_DIR/build/ferretdb-$FERRETDB_VERSION"
  CGO_ENABLED=0 GOBIN="$gobin" go install -trimpath "$FERRETDB_MODULE@$FERRETDB_VERSION"
  mv "$gobin/ferretdb" "$FERRETDB_BIN"
  rm -rf "$gobin"
fi
ln -sf "$(basename "$FERRETDB_BIN")" "$CACHE_DIR/bin/ferretdb"
echo "test server ready in $(( $(date +%s) - start )) s: $FERRETDB_BIN on PostgreSQL $PG_MAJOR with DocumentDB $DOCUMENTDB_VERSION"
