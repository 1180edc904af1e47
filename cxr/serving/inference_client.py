"""The web app's client of an inference service (`serve.inference_url`): the model's answer from an Open
Inference Protocol v2 endpoint (MLServer, KServe: docs/open-inference.md) instead of the in-process model.

One request per upload: the file's bytes as the BYTES tensor `image` (base64 in the JSON body); the answer's
`probability`, `label`, `reason`, `in_distribution` and `ood_score` become the row the in-process model
would have given (cxr/inference/scoring.py). The service's `model_version`, when it names one, comes back
with it, so the app can tell whether the version it explains is the one that answered.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass

import requests

from cxr.errors import CxrError, first_line

OUTPUTS = ("probability", "label", "reason", "in_distribution", "ood_score")


class InferenceServiceDown(CxrError):
    """The inference service did not answer (the app answers 503)."""


@dataclass(frozen=True)
class InferenceClient:
    url: str  # the service's base URL (http://host:port), without /v2
    model: str  # the model's name on it (register.model_name; the InferenceService's name on KServe)
    timeout_s: float = 60

    def infer(self, data: bytes, allow_ood: bool) -> tuple[dict, str]:
        """One file -> (its row: probability, label, reason or warning, in_distribution, ood_score; the
        model version the service names, '' when it names none)."""
        body = {
            "inputs": [
                {
                    "name": "image",
                    "datatype": "BYTES",
                    "shape": [1, 1],
                    "parameters": {"content_type": "base64"},
                    "data": [base64.b64encode(data).decode("ascii")],
                }
            ],
            "outputs": [{"name": name} for name in OUTPUTS],
        }
        if allow_ood:
            body["parameters"] = {"allow_ood": True}
        endpoint = f"{self.url.rstrip('/')}/v2/models/{self.model}/infer"
        try:
            response = requests.post(endpoint, json=body, timeout=self.timeout_s)
        except requests.RequestException as exc:
            raise InferenceServiceDown(
                f"The inference service at {self.url} did not answer ({first_line(exc)}); try again shortly."
            ) from exc
        if response.status_code != 200:
            raise InferenceServiceDown(
                f"The inference service at {self.url} answered {response.status_code}; try again shortly."
            )
        answer = response.json()
        values = {o["name"]: o["data"][0] for o in answer.get("outputs", []) if o.get("data")}
        return to_row(values), str(answer.get("model_version") or "")


def to_row(values: dict) -> dict:
    """The service's outputs for one file -> the row cxr/inference/scoring.py gives."""
    probability = values.get("probability")
    if probability is not None and math.isnan(probability):
        probability = None
    reason = values.get("reason") or ""
    score = values.get("ood_score")  # null: the file was refused unread, or the model has no input gate
    refused_by_gate = values.get("in_distribution") is False
    row = {
        "in_distribution": False if refused_by_gate else (True if score is not None else None),
        "ood_score": score,
        "probability": probability,
        "label": values.get("label") or None,
    }
    if probability is None:
        row["reason"] = reason or "the inference service gave no probability"
    elif reason:
        row["warning"] = reason
    return row
