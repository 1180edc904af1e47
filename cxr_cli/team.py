"""`cxr team …`: users and roles on the team's MLflow server (run as its admin)."""

from __future__ import annotations

import json
import os
import sys

import typer

from cxr.errors import CxrError

team_app = typer.Typer(no_args_is_help=True, help="Users and roles on the team's MLflow server (admins only).")


@team_app.command("add-user")
def add_user(
    username: str = typer.Argument(..., help="The user's login."),
    role: str = typer.Option(..., "--role", help="release-manager, data-scientist, ci or reader (the web app)."),
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="Read the new user's password from stdin (else $CXR_NEW_USER_PASSWORD)."
    ),
    tracking_uri: str = typer.Option("", "--tracking-uri", help="The MLflow server (default: $MLFLOW_TRACKING_URI)."),
) -> None:
    """Create a user on the MLflow server (cxr-auth app) and grant the role's permissions on the team's
    experiment and registered model. You sign in as an admin with MLFLOW_TRACKING_USERNAME/PASSWORD."""
    from cxr.mlflow_auth.roles import add_user as grant
    from cxr.params import load_params
    from cxr.tracking import runs as tracking

    uri = tracking.resolve_tracking_uri(None, tracking_uri)
    if not uri.startswith(("http://", "https://")):
        raise CxrError(f"{uri} is not an MLflow server; users and roles exist only on a server with sign-in.")
    password = sys.stdin.readline().rstrip("\n") if password_stdin else os.environ.get("CXR_NEW_USER_PASSWORD", "")
    if not password:
        raise CxrError("No password for the new user: pipe it to --password-stdin or set $CXR_NEW_USER_PASSWORD.")
    params = load_params()
    print(json.dumps(grant(uri, username, password, role, params.mlflow.experiment, params.register.model_name)))


@team_app.command("subscribe-webapp")
def subscribe_webapp(
    url: str = typer.Argument(..., help="The web app's webhook address, e.g. http://webapp:8080/hooks/mlflow."),
    tracking_uri: str = typer.Option("", "--tracking-uri", help="The MLflow server (default: $MLFLOW_TRACKING_URI)."),
) -> None:
    """Have the MLflow server tell the web app at once when an alias moves (registry webhook, signed with
    the secret read from stdin, which the app reads as CXR_WEBHOOK_SECRET). Polling stays the fallback."""
    from cxr.mlflow_auth.subscription import subscribe
    from cxr.tracking import runs as tracking

    uri = tracking.resolve_tracking_uri(None, tracking_uri)
    secret = sys.stdin.readline().strip()
    if not secret:
        raise CxrError("No webhook secret on stdin; pipe the one the web app reads (CXR_WEBHOOK_SECRET).")
    print(json.dumps(subscribe(uri, url, secret)))
