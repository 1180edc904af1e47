"""The web app's subscription to the registry's alias webhooks (admin only on a `cxr-auth` server).

The server must allow the web app's address: `MLFLOW_WEBHOOK_ALLOWED_SCHEMES` (https by default; http
inside a private network), `MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS` for a private address, and a fixed
`MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY` (a Fernet key) so the stored secret survives a restart.
"""

from __future__ import annotations

import mlflow
from mlflow.exceptions import MlflowException

from cxr.errors import CxrError, first_line
from cxr.serving.webhook import EVENT

NAME = "cxr-webapp"


def subscribe(tracking_uri: str, url: str, secret: str, name: str = NAME) -> dict:
    """Create the webhook `name` (alias moves -> `url`, signed with `secret`), or point the existing one
    there with that secret; returns what was done (never the secret)."""
    if len(secret) < 24:
        raise CxrError("The webhook secret is shorter than 24 characters; use a random one.")
    client = mlflow.MlflowClient(tracking_uri, tracking_uri)
    try:
        existing = next((w for w in client.list_webhooks() if w.name == name), None)
        if existing is None:
            hook = client.create_webhook(name=name, url=url, events=[EVENT], secret=secret, description="cxr serve")
            return {"webhook": hook.name, "id": hook.webhook_id, "url": url, "created": True}
        client.update_webhook(existing.webhook_id, url=url, events=[EVENT], secret=secret, status="ACTIVE")
        return {"webhook": name, "id": existing.webhook_id, "url": url, "created": False}
    except MlflowException as exc:
        raise CxrError(
            f"Subscribing {url} to {EVENT} failed ({first_line(exc)}); sign in as an admin, and let the server "
            "post there (MLFLOW_WEBHOOK_ALLOWED_SCHEMES, MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS)."
        ) from exc
