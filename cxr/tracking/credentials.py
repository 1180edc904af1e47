"""Credentials mounted as files (a Kubernetes secret volume), read into the variables MLflow reads.

VAR_FILE names the file that holds VAR, as the MLflow server's own start-up script (`mlflow/server.sh`)
reads its secrets: the password never appears on a command line, in a manifest's `env` value or in a log.
Precedence: VAR_FILE, when set, wins over VAR (an image's default, such as the web app image's SQLite
CXR_RECORDS_URL, must not shadow the secret a deployment mounts); then VAR; then params.yaml.
"""

from __future__ import annotations

import os
from pathlib import Path

from cxr.errors import CxrError

CREDENTIAL_VARIABLES = (
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "CXR_METRICS_TOKEN",
    "CXR_RECORDS_URL",
    "CXR_WEBHOOK_SECRET",
)


def credentials_from_files(environ=None) -> list[str]:
    """Sets each credential variable that has a VAR_FILE from that file, over any value it had; returns the
    names set (never the values)."""
    environ = os.environ if environ is None else environ
    found = []
    for var in CREDENTIAL_VARIABLES:
        path = environ.get(f"{var}_FILE", "")
        if path:
            try:
                environ[var] = Path(path).read_text().strip()
            except OSError as exc:
                raise CxrError(
                    f"{var}_FILE names {path}, which cannot be read ({exc.strerror}); mount the secret there."
                ) from exc
            found.append(var)
    return found
