"""The radiologists' web app: an upload page and a JSON API over the registered model.

Uploads are read into memory, decoded with the pipeline's own functions and dropped; nothing about
them (pixels, file names, DICOM fields) is written to disk or to the logs, but the numbers and the
site (the DICOM InstitutionName) the records store keeps (cxr/serving/records.py).
"""

from __future__ import annotations

import base64
import io
import logging
import os
import secrets
import threading
from pathlib import Path

from flask import Flask, Request, Response, g, jsonify, render_template, request
from gunicorn.app.base import BaseApplication
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from cxr.data.lung_view import LUNG_VIEWS
from cxr.errors import CxrError, EmptyInput, InputTooLarge, OutOfScope, UnsupportedFormat
from cxr.inference.gradcam import overlay_png, thumbnail_png
from cxr.inference.runtime import RUNTIME_ENV
from cxr.safety.dicom_scope import dicom_site, site_name
from cxr.serving import webhook
from cxr.serving.auth import OPEN_PATHS, Auth
from cxr.serving.cpu_threads import limit_blas_threads
from cxr.serving.inference_client import InferenceClient, InferenceServiceDown
from cxr.serving.model_store import ModelFollower, ServedModel
from cxr.serving.openapi import openapi_spec
from cxr.serving.prometheus import ServingMetrics
from cxr.serving.records import NUMBERS, PredictionRecords, UnknownPrediction, since_time

log = logging.getLogger("cxr.serve")
MAX_FILES_PER_REQUEST = 16  # files in one /api/predict/batch request (serve.max_batch is the model call's batch)


class InMemoryRequest(Request):
    """Uploads stay in memory: werkzeug would otherwise spool files over 500 kB to a temporary file."""

    def _get_file_stream(self, total_content_length, content_type, filename=None, content_length=None):
        return io.BytesIO()


class NotReady(CxrError):
    """No model is served yet (nothing released, or the first load failed): 503, retry later."""


class FeedbackOff(CxrError):
    """The server keeps no prediction records: 404."""


def status_for(exc: CxrError) -> int:
    if isinstance(exc, NotReady | InferenceServiceDown):
        return 503
    if isinstance(exc, FeedbackOff | UnknownPrediction):
        return 404
    if isinstance(exc, InputTooLarge):
        return 413
    if isinstance(exc, UnsupportedFormat):
        return 415
    if isinstance(exc, EmptyInput):
        return 400
    return 422


def create_app(
    model,
    max_upload_mb: float = 20,
    auth=None,
    max_inflight: int = 24,
    metrics_token: str = "",
    records=None,
    webhook_secret: str = "",
    site: str = "",
) -> Flask:
    """The Flask app around a ModelFollower (the model it serves follows the registry), or around one
    loaded ServedModel that is never replaced; `auth` (an auth.Auth) guards everything but the health
    endpoints (/metrics also takes `Authorization: Bearer <metrics_token>`, for a Prometheus scraper);
    at most `max_inflight` predictions are admitted at once, more get 503 with Retry-After (a bounded
    queue, not an unbounded one). With `records` (a PredictionRecords) every prediction's numbers are kept
    under a prediction id, against which a signed-in radiologist records the finding. With `webhook_secret`,
    MLflow's signed alias webhooks (cxr/serving/webhook.py) make the follower check the registry at once.
    `site` names where films come from when their DICOM header names no institution (serve.site)."""
    follower = ModelFollower.fixed(model) if isinstance(model, ServedModel) else model
    app = Flask(__name__, template_folder=str(Path(__file__).parent / "templates"))
    app.request_class = InMemoryRequest
    app.config["MAX_CONTENT_LENGTH"] = int(max_upload_mb * 1024 * 1024)
    limit = f"{max_upload_mb:g} MB"
    predictor = Predictor(follower, ServingMetrics(follower), records, site)
    _install_guards(app, auth or Auth(), max_inflight, predictor.metrics, metrics_token)
    _install_error_handlers(app, limit)
    _install_routes(app, predictor, limit)
    _install_webhook(app, follower, webhook_secret)
    return app


def _install_webhook(app: Flask, follower: ModelFollower, secret: str) -> None:
    @app.post(webhook.PATH)
    def mlflow_webhook():
        if not secret:
            return jsonify({"error": "This server takes no webhooks (no CXR_WEBHOOK_SECRET)."}), 404
        payload = webhook.verified(secret, request.headers, request.get_data())
        if payload is None:
            return jsonify({"error": "Unsigned, wrongly signed or stale webhook delivery."}), 401
        if webhook.concerns(payload, follower.follows):
            follower.wake()
            return jsonify({"checking": True}), 202
        return jsonify({"checking": False}), 200


class Predictor:
    """One upload -> the JSON answer, with the identity of the model that answered in every answer."""

    def __init__(self, follower: ModelFollower, metrics: ServingMetrics | None = None, records=None, site=""):
        self.follower = follower
        self.metrics = metrics or ServingMetrics(follower)
        self.records = records
        self.site = site_name(site)

    def served(self) -> ServedModel:
        """The model serving now; a request uses this one object from start to end (a swap does not
        reach a request in flight)."""
        served = self.follower.current
        if served is None:
            raise NotReady(f"{self.follower.reason or 'No model is loaded yet.'} Retry later.")
        return served

    @staticmethod
    def model_fields(served: ServedModel | None) -> dict:
        if served is None:
            return {"model_uri": None, "model_version": None, "data_version": None, "threshold": None}
        return {
            "model_uri": served.uri,
            "model_version": served.version,
            "data_version": served.data_version,
            "threshold": served.threshold,
            "positive_class": served.positive_class,
            "runtime": served.classifier.runtime,
        }

    def site_fields(self, site: str, version: str) -> dict:
        """The site a film came from and whether the model version is validated there: `cxr monitor drift
        --records --site` found no drift in the newest check of that site's films (docs/operations.md)."""
        validated = self.records is not None and self.records.site_validated(site, version)
        fields = {"site": site or None, "site_validated": validated}
        if not validated:
            where = f"at {site}" if site else "at this site (unnamed: no DICOM InstitutionName, no serve.site)"
            why = (
                "this server keeps no records, so no site check can pass"
                if self.records is None
                else f"no drift check of this site's films has passed for model version {version}"
            )
            fields["site_warning"] = f"Not yet validated {where}: {why}"
        return fields

    @staticmethod
    def answered_by(served: ServedModel, row: dict) -> dict:
        """With serve.inference_url: the service that answered, and a note instead of the heat map when the
        version it names is not the one this app explains (during a rollout, or a KServe canary)."""
        if served.remote is None:
            return {}
        fields = {"inference_url": served.remote.url}
        version = row.get("answered_by") or ""
        if version and served.version and version != served.version:
            fields["heatmap_note"] = (
                f"No heat map: the inference service answered with version {version}, and this app explains "
                f"version {served.version}."
            )
        return fields

    def predict_one(self, data: bytes, heatmap: bool, allow_ood: bool = False) -> dict:
        """The prediction, or OutOfScope (422) when the DICOM header, the input gate or the population scope
        check (adults only) refuses the image and `allow_ood` is off; with it on, the prediction carries
        the refusal as `warning`."""
        served = self.served()
        version, timings = served.version or "-", {}
        try:
            row, array = served.assess(data, allow_ood, timings)
        except CxrError:
            self.metrics.observe_bad_input(version)
            raise
        for stage in ("decode", "model"):
            if stage in timings:
                self.metrics.latency.labels(version, stage).observe(timings[stage])
        if "batch_size" in timings:
            self.metrics.batch_size.labels(version).observe(timings["batch_size"])
        self.metrics.observe_row(version, row)
        site = dicom_site(data) or self.site
        recorded = {}
        if self.records is not None:
            recorded["prediction_id"] = self.records.add(version, row, served.positive_class, site)
        gate = {k: row.get(k) for k in ("in_distribution", "ood_score", "ood_threshold", "in_scope", "scope_score")}
        if row.get("probability") is None:
            reason = f"Refused: {row['reason']}."
            details = {**gate, "reason": reason, "allow_ood": "resend with allow_ood=true", **self.model_fields(served)}
            details |= recorded
            raise OutOfScope(reason, details)
        probability = float(row["probability"])
        result = {"probability": probability, "label": row["label"], **gate, **self.model_fields(served), **recorded}
        if row.get("warning"):
            result["warning"] = row["warning"]
        result["shift"] = bool(row.get("shift"))
        result |= self.site_fields(site, version)
        result |= self.answered_by(served, row)
        if heatmap and "heatmap_note" not in result:  # on the image already decoded for the prediction
            with self.metrics.latency.labels(version, "heatmap").time():
                heat, mask = served.explain(array)
            result["heatmap_png"] = base64.b64encode(overlay_png(array, heat)).decode()
            result["image_png"] = base64.b64encode(thumbnail_png(array, mask=mask)).decode()
            result["read_lungs"] = mask is not None and served.classifier.config.input_view in LUNG_VIEWS
        return result


def read_upload(field: str = "file") -> bytes:
    upload = request.files.get(field)
    if upload is None:
        raise EmptyInput(f"No file was uploaded in the '{field}' field; choose a PNG, JPEG or DICOM chest X-ray.")
    return upload.read()


def flag(name: str) -> bool:
    value = request.args.get(name) or request.form.get(name) or "false"
    return value.lower() in ("1", "true", "yes", "on")


def _install_guards(app: Flask, auth: Auth, max_inflight: int, metrics: ServingMetrics, metrics_token: str) -> None:
    """Sign-in, a CSP nonce per response, security headers, and admission control on predictions."""
    admission = threading.BoundedSemaphore(max_inflight)

    def scraper() -> bool:
        """A Prometheus scraper with the metrics token, on /metrics only."""
        given = request.headers.get("Authorization", "")
        return (
            bool(metrics_token)
            and request.path == "/metrics"
            and secrets.compare_digest(given.encode(), f"Bearer {metrics_token}".encode())
        )

    @app.before_request
    def new_nonce():
        g.csp_nonce = secrets.token_urlsafe(16)

    @app.before_request
    def authenticate():
        if not auth.enabled or request.path in OPEN_PATHS or scraper():
            return None
        g.user = auth.user(request)
        if g.user is None:
            how = "sign in through the proxy" if auth.user_header else "sign in with your user name and password"
            return jsonify({"error": f"Authentication required: {how}."}), 401, auth.challenge()
        return None

    @app.context_processor
    def nonce():
        return {"csp_nonce": g.get("csp_nonce", "")}

    app.after_request(security_headers)

    @app.before_request
    def admit():
        if request.method != "POST":
            return None
        if not admission.acquire(blocking=False):
            metrics.busy.inc()
            busy = {"error": f"The server is busy ({max_inflight} predictions in progress); retry in a few seconds."}
            return jsonify(busy), 503, {"Retry-After": "5"}
        g.admitted = True
        return None

    @app.teardown_request
    def release(_exc):
        if g.pop("admitted", False):
            admission.release()


def security_headers(response):
    """Responses carry X-rays and predictions: no caching, no framing, no sniffing, no third parties."""
    nonce = g.get("csp_nonce", "")
    response.headers["Content-Security-Policy"] = (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
    response.headers["Cross-Origin-Resource-Policy"] = "same-origin"
    return response


def _install_error_handlers(app: Flask, limit: str) -> None:
    """Every error as one JSON sentence with its status (bad input 4xx, never a traceback)."""

    @app.errorhandler(CxrError)
    def bad_input(exc: CxrError):
        return jsonify({"error": str(exc), **getattr(exc, "details", {})}), status_for(exc)

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_exc):
        return jsonify(
            {"error": f"The upload is larger than the {limit} limit (serve.max_upload_mb); send a smaller file."}
        ), 413

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return jsonify({"error": f"{exc.name}: {exc.description}"}), exc.code


def _install_routes(app: Flask, predictor: Predictor, limit: str) -> None:
    """The upload page, the JSON API, health and readiness, the OpenAPI document."""
    follower = predictor.follower

    def page(allow: bool) -> dict:
        served = follower.current
        warning = served.warning if served else (follower.reason or "No model is loaded yet.")
        return {"warning": warning, "allow_ood": allow, "ready": served is not None, **predictor.model_fields(served)}

    @app.get("/")
    def index():
        return render_template("index.html", result=None, error=None, refusal=None, **page(False))

    @app.post("/")
    def index_upload():
        allow = flag("allow_ood")
        try:
            result = predictor.predict_one(read_upload(), heatmap=True, allow_ood=allow)
            # the page names the model that answered, which a swap since may have replaced
            fields = {k: result[k] for k in ("model_uri", "model_version", "data_version", "threshold")}
            return render_template("index.html", result=result, error=None, refusal=None, **(page(allow) | fields))
        except OutOfScope as exc:
            return render_template("index.html", result=None, error=None, refusal=str(exc), **page(allow)), 422
        except CxrError as exc:
            status = status_for(exc)
            return render_template("index.html", result=None, error=str(exc), refusal=None, **page(allow)), status

    _install_api_routes(app, predictor)
    _install_records_routes(app, predictor, page)
    _install_service_routes(app, predictor, limit)


def _install_api_routes(app: Flask, predictor: Predictor) -> None:
    """The JSON API: one X-ray, or several with per-file errors inline."""

    @app.post("/api/predict")
    def api_predict():
        return jsonify(predictor.predict_one(read_upload(), flag("heatmap"), flag("allow_ood")))

    @app.post("/api/predict/batch")
    def api_predict_batch():
        uploads = request.files.getlist("files")
        if not uploads:
            raise EmptyInput("No files were uploaded in the 'files' field; send one or more chest X-rays.")
        if len(uploads) > MAX_FILES_PER_REQUEST:
            raise InputTooLarge(f"{len(uploads)} files were sent; send at most {MAX_FILES_PER_REQUEST} per batch.")
        results, allow = [], flag("allow_ood")
        for i, upload in enumerate(uploads):
            try:
                results.append({"index": i, **predictor.predict_one(upload.read(), heatmap=False, allow_ood=allow)})
            except CxrError as exc:
                details = getattr(exc, "details", {})
                results.append({"index": i, "error": str(exc), "status": status_for(exc), **details})
        return jsonify({"results": results})


def _install_service_routes(app: Flask, predictor: Predictor, limit: str) -> None:
    """Health, readiness (which version, following what), Prometheus metrics and the OpenAPI document."""
    follower = predictor.follower

    @app.get("/healthz")
    def healthz():
        return jsonify({"status": "ok"})

    @app.get("/readyz")
    def readyz():
        served = follower.current
        body = {"ready": served is not None, **predictor.model_fields(served)}
        if served is None:
            body["reason"] = follower.reason or "No model is loaded yet."
        if follower.follows is not None:
            body["follows"] = f"@{follower.follows[1]}" if follower.follows[1] else "@champion, else @challenger"
            body["reload_s"] = follower.reload_s
        if follower.reload_error:
            body["reload_error"] = follower.reload_error
        return jsonify(body), 200 if served is not None else 503

    @app.get("/metrics")
    def metrics():
        served = follower.current
        body = predictor.metrics.render((served.version or "-") if served else None)
        return Response(body, mimetype=None, content_type=predictor.metrics.content_type)

    @app.get("/openapi.json")
    def openapi():
        return jsonify(openapi_spec(limit))


def _install_records_routes(app: Flask, predictor: Predictor, page) -> None:
    """Radiologists' findings against predictions (page and API) and the numbers the app kept (API)."""

    def record_finding(prediction_id: str, finding: str) -> str:
        if predictor.records is None:
            raise FeedbackOff(
                "This server keeps no prediction records (serve.records_url is off); nothing was recorded."
            )
        predictor.records.record_finding(prediction_id, finding, g.get("user") or "anonymous")
        return f"Finding '{finding}' recorded for prediction {prediction_id}."

    @app.post("/api/feedback")
    def api_feedback():
        body = request.get_json(silent=True) or request.form
        prediction_id, finding = str(body.get("prediction_id", "")), str(body.get("finding", ""))
        if not prediction_id:
            raise EmptyInput("No prediction_id was sent; send the id the prediction returned and the finding.")
        return jsonify({"recorded": record_finding(prediction_id, finding), "prediction_id": prediction_id})

    @app.post("/feedback")
    def page_feedback():
        try:
            recorded = record_finding(request.form.get("prediction_id", ""), request.form.get("finding", ""))
            return render_template(
                "index.html", result=None, error=None, refusal=None, recorded=recorded, **page(False)
            )
        except CxrError as exc:
            status = status_for(exc)
            return render_template("index.html", result=None, error=str(exc), refusal=None, **page(False)), status

    @app.get("/api/records")
    def api_records():
        """What the app kept about recent predictions, numbers only (for `cxr monitor drift --server`)."""
        if predictor.records is None:
            raise FeedbackOff("This server keeps no prediction records (serve.records_url is off).")
        since = since_time(request.args.get("since", ""))
        limit = request.args.get("limit", "10000")
        if not limit.isdigit():
            raise EmptyInput(f"limit '{limit}' is not a whole number; send e.g. limit=2000.")
        rows = predictor.records.rows(since, request.args.get("version", ""), min(int(limit), 10000))
        numbers = [{k: r[k] for k in NUMBERS} | {"created_at": r["created_at"].isoformat()} for r in rows]
        return jsonify({"rows": numbers})


def serve(
    model_uri: str, host: str, port: int, params, model_name: str, auth=None, records_url: str = "", site: str = ""
) -> None:
    """Serve with gunicorn: one worker process that loads the model once, `params.threads` threads,
    `params.max_inflight` predictions admitted at once (the model calls are serialised), timeouts."""

    class Server(BaseApplication):
        def load_config(self):
            settings = {
                "bind": f"{host}:{port}",
                "workers": 1,  # one copy of the model in memory; the threads share it
                "worker_class": "gthread",
                "threads": params.threads,
                "timeout": params.timeout_s,
                "graceful_timeout": 10,
                "keepalive": 5,
                "backlog": 64,
                "accesslog": None,  # nothing about requests is logged (uploads are private)
                "loglevel": "warning",
            }
            for key, value in settings.items():
                self.cfg.set(key, value)

        def load(self):  # in the worker: TensorFlow does not survive a fork
            limit_blas_threads(params.blas_threads)
            os.environ.setdefault(RUNTIME_ENV, params.runtime)  # the pass every model loaded here runs
            batching = (params.max_batch, params.max_wait_ms)
            remote = InferenceClient(params.inference_url, model_name) if params.inference_url else None
            follower = ModelFollower(model_uri, model_name, params.reload_s, batching, remote).start()
            if follower.current is None:
                log.warning("%s /readyz answers 503 until then.", follower.reason)
            log.info("listening on http://%s:%d", host, port)
            token, hook = os.environ.get("CXR_METRICS_TOKEN", ""), os.environ.get("CXR_WEBHOOK_SECRET", "")
            kept = (params.records_max_rows, params.records_max_days)
            records = PredictionRecords(records_url, *kept) if records_url else None
            guards = (params.max_upload_mb, auth, params.max_inflight, token)
            return create_app(follower, *guards, records, hook, site or params.site)

    Server().run()
