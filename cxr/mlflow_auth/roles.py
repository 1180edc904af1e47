"""Users and their roles on an MLflow server running `cxr-auth`, set up by an admin.

- release-manager: MANAGE on the registered model (moves @champion), READ on the experiment.
- data-scientist, ci: EDIT on the experiment (runs) and on the registered model (new versions,
  @challenger), never @champion.
- reader (the web app): READ on the experiment and the registered model: it finds and loads versions.
"""

from __future__ import annotations

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.server import get_app_client

from cxr.errors import CxrError, first_line
from cxr.tracking import runs as tracking

ROLES = {
    "release-manager": {"experiment": "READ", "registered_model": "MANAGE"},
    "data-scientist": {"experiment": "EDIT", "registered_model": "EDIT"},
    "ci": {"experiment": "EDIT", "registered_model": "EDIT"},
    "reader": {"experiment": "READ", "registered_model": "READ"},
}


def add_user(tracking_uri: str, username: str, password: str, role: str, experiment: str, model_name: str) -> dict:
    """Create the user (or keep an existing one) and grant the role's permissions on the team's experiment
    and registered model, creating them (as the admin) where they do not exist yet."""
    if role not in ROLES:
        raise CxrError(f"Unknown role '{role}'; use one of: {', '.join(ROLES)}.")
    if len(password) < 12:
        raise CxrError("The password is shorter than 12 characters; choose a longer one.")
    client = get_app_client("cxr-auth", tracking_uri=tracking_uri)
    try:
        client.create_user(username, password)
        created = True
    except MlflowException as exc:
        if "already exists" not in str(exc).lower():
            raise CxrError(
                f"Creating user {username} failed ({first_line(exc)}); are you signed in as an admin?"
            ) from exc
        created = False
    experiment_id = tracking.configure(tracking_uri, experiment)
    registry = mlflow.MlflowClient(tracking_uri, tracking_uri)
    try:
        registry.get_registered_model(model_name)
    except MlflowException:
        registry.create_registered_model(model_name)  # created by the admin: nobody else gets MANAGE by creating it
    grants = {"experiment": experiment_id, "registered_model": model_name}
    for resource, permission in ROLES[role].items():
        try:
            try:
                client.grant_user_permission(username, resource, grants[resource], permission)
            except MlflowException as exc:
                if "already exists" not in str(exc).lower():
                    raise
                # a re-run (e.g. `make stack-up` again): the role's permission replaces the one held
                client.revoke_user_permission(username, resource, grants[resource])
                client.grant_user_permission(username, resource, grants[resource], permission)
        except MlflowException as exc:
            raise CxrError(
                f"Granting {permission} on {resource} {grants[resource]} to {username} failed ({first_line(exc)})."
            ) from exc
    return {"user": username, "created": created, "role": role, **ROLES[role]}
