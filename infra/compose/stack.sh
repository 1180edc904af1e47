#!/usr/bin/env bash
# The team stack (compose.yaml) with one command.
#   bash infra/compose/stack.sh up|down|ps|logs [SERVICE]|restart SERVICE|wait|identities
# up: writes infra/compose/.env (mode 600) with random credentials on first use (kept: the volumes were
# initialised with them; a missing key is added), maps the service names to 127.0.0.1 in /etc/hosts
# (needs root; otherwise prints the line), starts everything, waits until the MLflow server answers at
# http://mlflow:5000, and creates the service identities `ci` and `webapp` there as its admin.
# down: stops and removes the containers; the volumes (every run, model and object) stay.
# Uses compose.local.yaml too when the local PostgreSQL/S3 images exist (no registry; `make images`).
# CXR_STACK_PROJECT (default cxr) and CXR_STACK_ENV_FILE let tests run a stack of their own.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
py="${PYTHON:-$root/.venv/bin/python}"
read -r CXR_REGISTRY CXR_TAG < <(cd "$root" && "$py" -c 'from cxr.params import load_params; c = load_params().cluster; print(c.image_registry.rstrip("/"), c.image_tag)')
export CXR_REGISTRY CXR_TAG
env_file="${CXR_STACK_ENV_FILE:-$here/.env}"
project="${CXR_STACK_PROJECT:-cxr}"
secret() { head -c 24 /dev/urandom | base64 | tr -d '/+='; }
umask 077
touch "$env_file"
chmod 600 "$env_file"
add_key() { grep -q "^$1=" "$env_file" || echo "$1=$2" >> "$env_file"; }
add_key CXR_DB_PASSWORD "$(secret)"
add_key CXR_S3_ACCESS_KEY "cxr$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
add_key CXR_S3_SECRET_KEY "$(secret)"
add_key CXR_MLFLOW_ADMIN_PASSWORD "$(secret)"
add_key CXR_CI_PASSWORD "$(secret)"
add_key CXR_WEBAPP_PASSWORD "$(secret)"
add_key CXR_WEBHOOK_SECRET "$(secret)"
add_key CXR_WEBHOOK_ENCRYPTION_KEY "$(head -c 32 /dev/urandom | base64 | tr '+/' '-_')"  # a Fernet key
value() { grep "^$1=" "$env_file" | head -1 | cut -d= -f2-; }
files=(-f "$here/compose.yaml")
if docker image inspect "cxr-moto:$CXR_TAG" >/dev/null 2>&1 && ! docker image inspect minio/minio:RELEASE.2025-04-22T22-12-26Z >/dev/null 2>&1; then
  files+=(-f "$here/compose.local.yaml")
fi
compose() { docker-compose --project-name "$project" --project-directory "$here" --env-file "$env_file" "${files[@]}" "$@"; }

map_hosts() {
  local names="postgres s3 mlflow webapp" missing=""
  for n in $names; do getent hosts "$n" >/dev/null || missing="$missing $n"; done
  [ -z "$missing" ] && return 0
  if [ "$(id -u)" = 0 ]; then
    echo "127.0.0.1$missing  # cxr team stack (infra/compose)" >> /etc/hosts
  else
    echo "Add this line to /etc/hosts so this machine reaches the stack by its service names:" >&2
    echo "127.0.0.1$missing" >&2
  fi
}

add_identities() {
  # as the admin, from the .env file: the passwords reach cxr through stdin and the environment only
  for who in ci:ci:CXR_CI_PASSWORD webapp:reader:CXR_WEBAPP_PASSWORD; do
    IFS=: read -r user role key <<< "$who"
    value "$key" | MLFLOW_TRACKING_URI=http://mlflow:5000 MLFLOW_TRACKING_USERNAME=admin \
      MLFLOW_TRACKING_PASSWORD="$(value CXR_MLFLOW_ADMIN_PASSWORD)" \
      "$py" -m cxr_cli.main team add-user "$user" --role "$role" --password-stdin >/dev/null
  done
  # the registry tells the web app at once when an alias moves (signed; polling stays the fallback)
  value CXR_WEBHOOK_SECRET | MLFLOW_TRACKING_URI=http://mlflow:5000 MLFLOW_TRACKING_USERNAME=admin \
    MLFLOW_TRACKING_PASSWORD="$(value CXR_MLFLOW_ADMIN_PASSWORD)" \
    "$py" -m cxr_cli.main team subscribe-webapp http://webapp:8080/hooks/mlflow >/dev/null
  echo "MLflow identities ready: admin, ci (runs pipelines), webapp (reads the registry); passwords in $env_file"
}

wait_for_mlflow() {
  for _ in $(seq 1 180); do
    if "$py" -c "import urllib.request; urllib.request.urlopen('http://mlflow:5000/health', timeout=2)" 2>/dev/null; then
      echo "MLflow server ready at http://mlflow:5000"; return 0
    fi
    sleep 1
  done
  echo "The MLflow server did not become ready in 180 s; see: bash infra/compose/stack.sh logs mlflow" >&2
  return 1
}

case "${1:-}" in
  up)
    map_hosts
    compose up -d
    wait_for_mlflow
    add_identities
    echo "web app: http://webapp:8080 (serves @champion, else @challenger; it follows promotions by itself"
    echo "  within serve.reload_s, and says on /readyz when nothing is released yet)"
    ;;
  down) shift; compose down "$@" ;;
  wait) wait_for_mlflow ;;
  identities) add_identities ;;
  ps) compose ps ;;
  logs) shift; compose logs --no-color "$@" ;;
  restart) shift; compose restart "$@" ;;
  *) echo "usage: $0 up|down|ps|logs [SERVICE]|restart SERVICE|wait|identities" >&2; exit 2 ;;
esac
