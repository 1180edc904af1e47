#!/usr/bin/env bash
# Start an MLflow tracking server that serves artifacts to its clients.
#   Local (default): the SQLite store and artifact folder under mlflow/ that `cxr pipeline run` uses.
#   Team: MLFLOW_BACKEND_STORE_URI=postgresql://user@host/db MLFLOW_ARTIFACTS_DESTINATION=s3://bucket/mlflow
#         (S3 credentials only on the server: boto3 reads AWS_* / MLFLOW_S3_ENDPOINT_URL).
# Clients then set MLFLOW_TRACKING_URI=http://HOST:PORT.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
exec "${MLFLOW:-mlflow}" server \
  --backend-store-uri "${MLFLOW_BACKEND_STORE_URI:-sqlite:///$here/mlflow.db}" \
  --artifacts-destination "${MLFLOW_ARTIFACTS_DESTINATION:-$here/artifacts}" \
  --serve-artifacts \
  --host "${MLFLOW_HOST:-127.0.0.1}" --port "${MLFLOW_PORT:-5000}"
