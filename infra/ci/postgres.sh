#!/usr/bin/env bash
# Install (if missing) and start Debian's PostgreSQL on loopback, with a role `cxr` that may create the
# test databases. Used by .ci/run; run it once by hand (as root) for the team-mode tests locally.
set -euo pipefail
if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
version=$(ls /usr/lib/postgresql | sort -V | tail -1)
if ! pg_lsclusters -h | grep -q "^$version main"; then
  pg_createcluster "$version" main >/dev/null
fi
pg_ctlcluster "$version" main start 2>/dev/null || true
for _ in $(seq 1 30); do
  su postgres -c "pg_isready -q -h 127.0.0.1" && break
  sleep 1
done
su postgres -c "psql -q -tc \"SELECT 1 FROM pg_roles WHERE rolname='cxr'\"" | grep -q 1 \
  || su postgres -c "psql -q -c \"CREATE ROLE cxr LOGIN CREATEDB PASSWORD 'cxr'\""
echo "postgresql $version on 127.0.0.1:5432, role cxr/cxr"
