"""`mlflow server --app-name cxr-auth`: MLflow's basic-auth app, with @champion reserved to release managers.

Registered as the `mlflow.app` entry point `cxr-auth` (pyproject.toml). It runs inside the MLflow server
process, so it imports only MLflow and Flask.
"""

from __future__ import annotations

from flask import Flask, jsonify, request
from mlflow.server import app as mlflow_app
from mlflow.server import auth

from cxr.mlflow_auth import PROTECTED_ALIASES

ALIAS_ROUTE_SUFFIX = "/mlflow/registered-models/alias"


def create_app(app: Flask | None = None):
    """The basic-auth app (MLflow 3 wraps the Flask app in FastAPI) with the release-alias rule added to
    the Flask app underneath."""
    flask_app = app or mlflow_app
    served = auth.create_app(flask_app)

    # registered after basic-auth's own hook, so it runs after authentication and MLflow's own checks
    @flask_app.before_request
    def release_aliases_for_release_managers():
        if request.method not in ("POST", "DELETE") or not request.path.endswith(ALIAS_ROUTE_SUFFIX):
            return None
        alias, name = auth._get_request_param("alias"), auth._get_request_param("name")
        if alias not in PROTECTED_ALIASES:
            return None
        username = auth.authenticate_request().username
        if auth.store.get_user(username).is_admin or auth._get_registered_model_permission(name).can_manage:
            return None
        message = (
            f"{username} may not move @{alias} of '{name}': only release managers (MANAGE on the registered "
            "model) may; ask one to promote it."
        )
        return jsonify({"error_code": "PERMISSION_DENIED", "message": message}), 403

    return served
