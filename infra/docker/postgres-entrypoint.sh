#!/usr/bin/env bash
# Debian's PostgreSQL with the official image's contract: POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB (or their _FILE),
# data in PGDATA (a volume), initialised on first start only.
set -euo pipefail
bin=/usr/lib/postgresql/15/bin
# as the official image: VAR_FILE names a file holding VAR (Kubernetes secret volumes); it wins over VAR
for var in POSTGRES_USER POSTGRES_PASSWORD POSTGRES_DB; do
  file_var="${var}_FILE"
  if [ -n "${!file_var:-}" ]; then
    export "$var"="$(cat "${!file_var}")"
  fi
done
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pwfile="$(mktemp)"
  printf '%s' "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}" > "$pwfile"
  "$bin/initdb" -D "$PGDATA" --encoding=UTF8 --locale=C -U "${POSTGRES_USER:-postgres}" --pwfile="$pwfile" --auth-host=scram-sha-256 --auth-local=trust >/dev/null
  rm -f "$pwfile"
  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
  "$bin/pg_ctl" -D "$PGDATA" -o "-c listen_addresses='' -k /tmp" -w start >/dev/null
  db="${POSTGRES_DB:-${POSTGRES_USER:-postgres}}"
  if [ "$db" != postgres ]; then
    "$bin/createdb" -h /tmp -U "${POSTGRES_USER:-postgres}" "$db"
  fi
  "$bin/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null
fi
exec "$bin/postgres" -D "$PGDATA" -k /tmp -c listen_addresses="${POSTGRES_LISTEN:-*}" -p "${PGPORT:-5432}"
