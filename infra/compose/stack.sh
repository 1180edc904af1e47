#!/usr/bin/env bash
# The team stack (compose.yaml) with one command.
#   bash infra/compose/stack.sh up|down|ps|logs [SERVICE]|restart SERVICE|wait
# up: writes infra/compose/.env with random credentials on first use (kept: the volumes were initialised
# with them), maps the service names to 127.0.0.1 in /etc/hosts (needs root; otherwise prints the line),
# starts everything and waits until the MLflow server answers at http://mlflow:5000.
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
if [ ! -f "$env_file" ]; then
  umask 077
  {
    echo "CXR_DB_PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
    echo "CXR_S3_ACCESS_KEY=cxr$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    echo "CXR_S3_SECRET_KEY=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')"
  } > "$env_file"
fi
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
    echo "web app: http://webapp:8080 (serves @champion, else @challenger; it follows promotions by itself"
    echo "  within serve.reload_s, and says on /readyz when nothing is released yet)"
    ;;
  down) shift; compose down "$@" ;;
  wait) wait_for_mlflow ;;
  ps) compose ps ;;
  logs) shift; compose logs --no-color "$@" ;;
  restart) shift; compose restart "$@" ;;
  *) echo "usage: $0 up|down|ps|logs [SERVICE]|restart SERVICE|wait" >&2; exit 2 ;;
esac
