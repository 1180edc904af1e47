"""The web app's receiver of MLflow's registry webhooks: signed, fresh, about the followed alias."""

import json
import time

from cxr.serving import webhook
from cxr.serving.app import create_app
from cxr.serving.model_store import ModelFollower

SECRET = "a-webhook-secret-of-some-length"


def delivery(payload: dict, secret: str = SECRET, age_s: float = 0) -> tuple[dict, bytes]:
    body = json.dumps(payload)
    stamp = str(int(time.time() - age_s))
    headers = {
        "X-MLflow-Delivery-Id": "d-1",
        "X-MLflow-Timestamp": stamp,
        "X-MLflow-Signature": webhook.signature(secret, "d-1", stamp, body),
        "Content-Type": "application/json",
    }
    return headers, body.encode()


ALIAS_MOVED = {"entity": "model_version_alias", "action": "created", "data": {"name": "m", "alias": "champion"}}


def test_only_signed_fresh_deliveries_about_the_followed_alias_wake_the_follower():
    follower = ModelFollower("models:/m@champion")
    woken = []
    follower.wake = lambda: woken.append(True)
    client = create_app(follower, webhook_secret=SECRET).test_client()
    assert client.post(webhook.PATH, headers=delivery(ALIAS_MOVED)[0], data=delivery(ALIAS_MOVED)[1]).status_code == 202
    assert woken == [True]
    for headers, body in (
        delivery(ALIAS_MOVED, secret="another-secret-entirely"),  # wrong key
        delivery(ALIAS_MOVED, age_s=3600),  # a replay an hour later
        ({}, json.dumps(ALIAS_MOVED).encode()),  # unsigned
    ):
        assert client.post(webhook.PATH, headers=headers, data=body).status_code == 401
    other = {**ALIAS_MOVED, "data": {"name": "another-model", "alias": "champion"}}
    assert client.post(webhook.PATH, headers=delivery(other)[0], data=delivery(other)[1]).status_code == 200
    assert woken == [True]  # not this app's model: nothing to do


def test_without_a_secret_the_app_takes_no_webhooks():
    client = create_app(ModelFollower("models:/m@champion")).test_client()
    headers, body = delivery(ALIAS_MOVED)
    assert client.post(webhook.PATH, headers=headers, data=body).status_code == 404


def test_a_wake_checks_the_registry_before_the_interval_ends():
    follower = ModelFollower("models:/m@champion", reload_s=600)
    checks = []
    follower.refresh = lambda: checks.append(time.monotonic()) or False
    follower.start()
    started = time.monotonic()
    follower.wake()
    deadline = time.monotonic() + 5
    while len(checks) < 2 and time.monotonic() < deadline:  # the start's own check, then the woken one
        time.sleep(0.05)
    follower.stop()
    assert len(checks) == 2 and checks[1] - started < 5
