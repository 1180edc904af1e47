#!/usr/bin/env bash
# Start an MLflow tracking server that serves artifacts to its clients.
#   Local (default): the SQLite store and artifact folder under mlflow/ that `cxr pipeline run` uses.
#   Team: MLFLOW_BACKEND_STORE_URI=postgresql+psycopg2://user:pw@host/db MLFLOW_ARTIFACTS_DESTINATION=s3://bucket/mlflow
#         (S3 credentials only on the server: boto3 reads AWS_* / MLFLOW_S3_ENDPOINT_URL).
# Clients then set MLFLOW_TRACKING_URI=http://HOST:PORT.
# The store URI travels in the environment (mlflow reads MLFLOW_BACKEND_STORE_URI), never on the command
# line, where any process on the machine could read its password.
# MLflow 3 answers 403 to a Host header it does not know: MLFLOW_SERVER_ALLOWED_HOSTS lists the names
# clients use (default: loopback, the compose service `mlflow` and the in-cluster Service names).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# Secrets mounted as files (Kubernetes secret volumes, Docker secrets): VAR_FILE names the file holding VAR.
for var in MLFLOW_BACKEND_STORE_URI MLFLOW_AUTH_DATABASE_URI MLFLOW_AUTH_ADMIN_PASSWORD \
  MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY; do
  file_var="${var}_FILE"
  if [ -n "${!file_var:-}" ]; then
    value="$(cat "${!file_var}")"
    export "${var}=${value}"
  fi
done
export MLFLOW_BACKEND_STORE_URI="${MLFLOW_BACKEND_STORE_URI:-sqlite:///$here/mlflow.db}"
hosts=""
for name in localhost 127.0.0.1 mlflow mlflow.cxr mlflow.cxr.svc mlflow.cxr.svc.cluster.local; do
  hosts="$hosts,$name,$name:*"
done
export MLFLOW_SERVER_ALLOWED_HOSTS="${MLFLOW_SERVER_ALLOWED_HOSTS:-${hosts#,}}"
# MLflow 3's job runner (GenAI scoring and trace archival, unused here) starts seven more Python processes of
# about 230 MB each: with it the server's pod overran its 2Gi limit and was OOM-killed (make cluster-rehearsal)
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION="${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}"
# Sign-in (team mode): with MLFLOW_AUTH_ADMIN_PASSWORD set (from a secret), run the cxr-auth app: MLflow's
# basic-auth, @champion reserved to release managers. The admin is created on first start; the user
# store lives in MLFLOW_AUTH_DATABASE_URI (default: SQLite beside the local store).
# A checked password is cached (per worker, keyed by an HMAC of it) for CXR_AUTH_CACHE_TTL_S seconds (60; 0:
# off): without it every signed-in request pays a password-hash check, 145–208 ms against 4–11 ms a request
# (bench/mlflow_auth_cache.py, 2 cores), and a pipeline's train step makes ~150 requests. The price: a
# password changed or a user deleted on another worker, or out of band, is still accepted until the entry
# expires.
app=()
if [ -n "${MLFLOW_AUTH_ADMIN_PASSWORD:-}" ] || [ -n "${MLFLOW_AUTH_CONFIG_PATH:-}" ]; then
  if [ -z "${MLFLOW_AUTH_CONFIG_PATH:-}" ]; then
    MLFLOW_AUTH_CONFIG_PATH="$(mktemp "${TMPDIR:-/tmp}/cxr-auth.XXXXXX.ini")"
    chmod 600 "$MLFLOW_AUTH_CONFIG_PATH"
    cat > "$MLFLOW_AUTH_CONFIG_PATH" <<INI
[mlflow]
default_permission = READ
database_uri = ${MLFLOW_AUTH_DATABASE_URI:-sqlite:///$here/basic_auth.db}
admin_username = ${MLFLOW_AUTH_ADMIN_USERNAME:-admin}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
auth_cache_ttl_seconds = ${CXR_AUTH_CACHE_TTL_S:-60}
INI
    export MLFLOW_AUTH_CONFIG_PATH
  fi
  # CSRF key for the sign-up page; static for the life of this server (all workers share it)
  MLFLOW_FLASK_SERVER_SECRET_KEY="${MLFLOW_FLASK_SERVER_SECRET_KEY:-$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')}"
  export MLFLOW_FLASK_SERVER_SECRET_KEY
  app=(--app-name cxr-auth)
fi
exec "${MLFLOW:-mlflow}" server "${app[@]}" \
  --artifacts-destination "${MLFLOW_ARTIFACTS_DESTINATION:-$here/artifacts}" \
  --serve-artifacts \
  --host "${MLFLOW_HOST:-127.0.0.1}" --port "${MLFLOW_PORT:-5000}"
