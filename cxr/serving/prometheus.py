"""What the web app tells Prometheus at /metrics (prometheus-client, text format): predictions by model
version and outcome, the time each stage takes, the distribution of probabilities and input-gate scores,
admission-control refusals, model reloads, and the size of the batches the model is called with.

Numbers only: no label carries a file name, an image property or free text (refusal reasons are one of
a few fixed kinds), so the label sets stay small and nothing private leaves the app.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
UNIT_BUCKETS = tuple(round(0.05 * i, 2) for i in range(1, 21))
SCORE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000)


def refusal_kind(row: dict) -> str:
    """Which check refused a row: the DICOM header, the input gate or the population scope check."""
    if row.get("ood_score") is None and row.get("in_distribution") is False:
        return "dicom_header"
    if row.get("in_distribution") is False:
        return "input_gate"
    return "population_scope"


class _Reloads:
    """Model reloads as the follower counts them (read at scrape time)."""

    def __init__(self, follower):
        self.follower = follower

    def collect(self):
        family = CounterMetricFamily(
            "cxr_model_reloads", "New model versions the app tried to swap in, by result.", labels=["result"]
        )
        for result in ("swapped", "failed", "refused"):
            family.add_metric([result], self.follower.reloads.get(result, 0))
        yield family


class ServingMetrics:
    """The app's metrics in a registry of their own (a test or a second app in the process starts at zero)."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, follower=None):
        self.registry = CollectorRegistry()
        r = self.registry
        self.predictions = Counter(
            "cxr_predictions",
            "Predictions answered, by model version and outcome (the label given, refused, or bad_input).",
            ["model_version", "outcome", "reason"],
            registry=r,
        )
        self.latency = Histogram(
            "cxr_stage_seconds",
            "Seconds per stage of a prediction: decode (header check and decoding), model (queue and the "
            "batched model call), heatmap (Grad-CAM).",
            ["model_version", "stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.probability = Histogram(
            "cxr_probability", "Positive-class probability of answered predictions.", ["model_version"],
            buckets=UNIT_BUCKETS, registry=r,
        )  # fmt: skip
        self.gate_score = Histogram(
            "cxr_input_gate_score", "Input gate's out-of-distribution score of every scored image.", ["model_version"],
            buckets=SCORE_BUCKETS, registry=r,
        )  # fmt: skip
        self.scope_score = Histogram(
            "cxr_scope_score", "Population scope check's score (adult-likeness) of every scored image.",
            ["model_version"], buckets=UNIT_BUCKETS, registry=r,
        )  # fmt: skip
        self.busy = Counter(
            "cxr_busy_rejections", "Predictions refused with 503 by admission control (serve.max_inflight).", registry=r
        )
        self.batch_size = Histogram(
            "cxr_model_batch_size", "Images per model call (concurrent requests gathered).", ["model_version"],
            buckets=(1, 2, 4, 8, 16, 32, 64), registry=r,
        )  # fmt: skip
        self.serving = Gauge("cxr_model_serving", "1 for the model version serving now.", ["model_version"], registry=r)
        self._shown_version: str | None = None
        if follower is not None:
            r.register(_Reloads(follower))

    def observe_row(self, version: str, row: dict) -> None:
        """One assessed upload: its outcome, probability and check scores."""
        if row.get("ood_score") is not None:
            self.gate_score.labels(version).observe(float(row["ood_score"]))
        if row.get("scope_score") is not None:
            self.scope_score.labels(version).observe(float(row["scope_score"]))
        if row.get("probability") is None:
            self.predictions.labels(version, "refused", refusal_kind(row)).inc()
            return
        self.probability.labels(version).observe(float(row["probability"]))
        self.predictions.labels(version, str(row.get("label")), "").inc()

    def observe_bad_input(self, version: str) -> None:
        self.predictions.labels(version, "bad_input", "").inc()

    def render(self, version: str | None) -> bytes:
        if version != self._shown_version:
            if self._shown_version is not None:
                self.serving.remove(self._shown_version)
            if version is not None:
                self.serving.labels(version).set(1)
            self._shown_version = version
        return generate_latest(self.registry)
