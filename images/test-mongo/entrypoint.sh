#!/bin/sh
# PostgreSQL in /data/db/pg (created on first start, with MONGO_INITDB_ROOT_USERNAME/PASSWORD when
# given), then FerretDB on 0.0.0.0:27017. SIGTERM stops both cleanly, so a restart keeps every write.
set -eu
for bin in /usr/lib/postgresql/*/bin; do :; done  # the newest (the only) version
pgdata=/data/db/pg
user=${MONGO_INITDB_ROOT_USERNAME:-}
if [ ! -d "$pgdata" ]; then
  if [ -n "$user" ]; then
    pwfile=/data/db/.initdb-password
    (umask 077 && printf '%s\n' "${MONGO_INITDB_ROOT_PASSWORD:?MONGO_INITDB_ROOT_PASSWORD is required with a user}" > "$pwfile")
    "$bin/initdb" -D "$pgdata" -U "$user" -A scram-sha-256 --pwfile="$pwfile" -E UTF8 >/dev/null
    rm -f "$pwfile"
  else
    "$bin/initdb" -D "$pgdata" -U postgres -A trust -E UTF8 >/dev/null
  fi
fi
# no unix socket (the root filesystem may be read-only), loopback only
"$bin/postgres" -D "$pgdata" -p 5432 -c listen_addresses=127.0.0.1 -c unix_socket_directories= &
pg=$!
until "$bin/pg_isready" -q -h 127.0.0.1 -p 5432; do
  kill -0 "$pg" 2>/dev/null || { echo "hyperfleet-test-mongo: postgres exited" >&2; exit 1; }
  sleep 0.1
done
if [ -n "$user" ]; then
  backend=postgres://127.0.0.1:5432/postgres  # no user: FerretDB uses each client's credentials
else
  backend=postgres://postgres@127.0.0.1:5432/postgres
fi
hyperfleet-ferretdb --listen-addr 0.0.0.0:27017 --postgresql-url "$backend" &
ferretdb=$!
trap 'kill -TERM "$ferretdb" 2>/dev/null; wait "$ferretdb"; kill -INT "$pg"; wait "$pg"; exit 0' TERM INT
wait "$ferretdb" || true
kill -INT "$pg"
wait "$pg" || true
exit 1
