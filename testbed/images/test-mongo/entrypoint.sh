#!/bin/sh
# PostgreSQL with DocumentDB in /data/db/pg (created on first start, with MONGO_INITDB_ROOT_USERNAME and
# _PASSWORD when given), then FerretDB on 0.0.0.0:27017 (plain, or TLS only: below). SIGTERM stops both
# cleanly, so a restart keeps every write. PostgreSQL listens on loopback, where it checks passwords (scram-sha-256: FerretDB hands
# it each client's SCRAM login), and on a socket in /tmp, which it trusts: FerretDB and DocumentDB's own
# connections back to the server (and pg_cron's jobs) use it.
#
# It takes mongod's TLS options, as a stack passes them to any Mongo image: `--tlsMode requireTLS
# --tlsCertificateKeyFile FILE` (FILE: the key and the certificate, PEM) make FerretDB serve TLS only on
# 27017, its plain listener off (--listen-addr=-). No arguments: plain, as before.
set -eu
usage="takes no arguments, or mongod's --tlsMode requireTLS --tlsCertificateKeyFile FILE"
tls_mode=
tls_file=
while [ $# -gt 0 ]; do
  case "$1" in
    --tlsMode | --tlsCertificateKeyFile)
      [ $# -ge 2 ] || { echo "hyperfleet-test-mongo: $1 needs a value ($usage)" >&2; exit 2; }
      if [ "$1" = --tlsMode ]; then tls_mode=$2; else tls_file=$2; fi
      shift 2 ;;
    *) echo "hyperfleet-test-mongo: unknown argument $1 ($usage)" >&2; exit 2 ;;
  esac
done
case "$tls_mode" in
  '') [ -z "$tls_file" ] || { echo "hyperfleet-test-mongo: --tlsCertificateKeyFile without --tlsMode requireTLS" >&2; exit 2; }
      set -- --listen-addr 0.0.0.0:27017 ;;
  requireTLS)
      [ -n "$tls_file" ] || { echo "hyperfleet-test-mongo: --tlsMode requireTLS needs --tlsCertificateKeyFile" >&2; exit 2; }
      [ -r "$tls_file" ] || { echo "hyperfleet-test-mongo: can't read $tls_file" >&2; exit 1; }
      # one file holds both: FerretDB takes the certificate blocks from the one, the key block from the other
      set -- --listen-addr=- --listen-tls=0.0.0.0:27017 "--listen-tls-cert-file=$tls_file" "--listen-tls-key-file=$tls_file" ;;
  *) echo "hyperfleet-test-mongo: --tlsMode $tls_mode: only requireTLS is served (or no TLS at all)" >&2; exit 2 ;;
esac
for bin in /usr/lib/postgresql/*/bin; do :; done  # the newest (the only) version
pgdata=/data/db/pg
socket=/tmp
user=${MONGO_INITDB_ROOT_USERNAME:-}
host_auth=scram-sha-256
if [ -z "$user" ]; then
  user=postgres
  host_auth=trust
fi
first_start=
if [ ! -d "$pgdata" ]; then
  first_start=1
  pwfile=/data/db/.initdb-password
  if [ "$host_auth" = scram-sha-256 ]; then
    (umask 077 && printf '%s\n' "${MONGO_INITDB_ROOT_PASSWORD:?MONGO_INITDB_ROOT_PASSWORD is required with a user}" > "$pwfile")
    "$bin/initdb" -D "$pgdata" -U "$user" --auth-local=trust --auth-host=scram-sha-256 --pwfile="$pwfile" -E UTF8 >/dev/null
    rm -f "$pwfile"
  else
    "$bin/initdb" -D "$pgdata" -U "$user" -A trust -E UTF8 >/dev/null
  fi
  cat >> "$pgdata/postgresql.conf" <<CONF
shared_preload_libraries = 'pg_cron,pg_documentdb_core,pg_documentdb'
cron.database_name = 'postgres'
cron.host = '$socket'
listen_addresses = '127.0.0.1'
port = 5432
unix_socket_directories = '$socket'
documentdb.localhost_connection_string = 'host=$socket port=5432 dbname=postgres'
CONF
fi
"$bin/postgres" -D "$pgdata" &
pg=$!
until "$bin/pg_isready" -q -h "$socket" -p 5432 -U "$user"; do
  kill -0 "$pg" 2>/dev/null || { echo "hyperfleet-test-mongo: postgres exited" >&2; exit 1; }
  sleep 0.1
done
# FerretDB builds indexes in the createIndexes request, so DocumentDB's queue of concurrent index builds
# stays empty: its two pg_cron jobs that poll it every 2 seconds (a connection each, 1.2 s of CPU a
# minute in an idle container) go (the same statement as testbed/mongo.py's TEMPLATE_SQL)
if [ -n "$first_start" ]; then
  PGOPTIONS='-c client_min_messages=warning' "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$socket" -p 5432 -U "$user" \
    -d postgres -c 'CREATE EXTENSION documentdb CASCADE' \
    -c "SELECT cron.unschedule(jobid) FROM cron.job WHERE command LIKE '%documentdb_api_internal.build_index_concurrently%'"
fi
auth=--auth
[ "$host_auth" = trust ] && auth=--no-auth
ferretdb "$@" --postgresql-url "postgres://$user@/postgres?host=$socket&port=5432" \
  "$auth" --telemetry=disable --state-dir=/tmp --debug-addr=- --log-level=warn &
ferretdb=$!
trap 'kill -TERM "$ferretdb" 2>/dev/null; wait "$ferretdb"; kill -INT "$pg"; wait "$pg"; exit 0' TERM INT
wait "$ferretdb" || true
kill -INT "$pg"
wait "$pg" || true
exit 1
