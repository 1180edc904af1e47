"""MLflow registry webhooks: the server tells the app at once when an alias moves, so a promotion is
served without waiting for the next poll (polling every `serve.reload_s` stays as the fallback).

MLflow (3.17) posts `model_version_alias.created` with an HMAC-SHA256 signature over
`delivery_id.timestamp.payload` (headers X-MLflow-Delivery-Id, X-MLflow-Timestamp, X-MLflow-Signature
`v1,<base64>`), keyed by the secret the subscription was created with. The app acts only on a valid
signature less than MAX_AGE_S old, for the model and alias it follows; it then checks the registry
itself (the payload only wakes it: nothing in it is trusted as the version to load).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

PATH = "/hooks/mlflow"
EVENT = "model_version_alias.created"
MAX_AGE_S = 300  # older deliveries are refused (replays)


def signature(secret: str, delivery_id: str, timestamp: str, body: str) -> str:
    digest = hmac.new(secret.encode(), f"{delivery_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verified(secret: str, headers, body: bytes, now: float | None = None) -> dict | None:
    """The delivery's JSON when its signature and age are valid, else None."""
    delivery, stamp = headers.get("X-MLflow-Delivery-Id", ""), headers.get("X-MLflow-Timestamp", "")
    given = headers.get("X-MLflow-Signature", "")
    if not (secret and delivery and stamp.isdigit() and given):
        return None
    if abs((time.time() if now is None else now) - int(stamp)) > MAX_AGE_S:
        return None
    text = body.decode("utf-8", errors="replace")
    if not hmac.compare_digest(given.encode(), signature(secret, delivery, stamp, text).encode()):
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def concerns(payload: dict, follows: tuple[str, str] | None) -> bool:
    """An alias of the followed model moved to a version (the follower then asks the registry itself)."""
    if follows is None or f"{payload.get('entity')}.{payload.get('action')}" != EVENT:
        return False
    data = payload.get("data") or {}
    model, alias = follows
    return data.get("name") == model and (data.get("alias") == alias if alias else True)
