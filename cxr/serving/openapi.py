"""The OpenAPI 3 description of the JSON API (served at /openapi.json)."""

from __future__ import annotations

ERROR = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}
REFUSAL = {
    "type": "object",
    "required": ["error", "reason", "in_distribution"],
    "properties": {
        "error": {"type": "string"},
        "reason": {"type": "string"},
        "in_distribution": {"type": "boolean"},
        "ood_score": {"type": "number", "nullable": True},
        "ood_threshold": {"type": "number", "nullable": True},
        "in_scope": {
            "type": "boolean",
            "description": "the population scope check accepted the image as an adult's chest X-ray (absent: no check)",
        },
        "scope_score": {"type": "number", "description": "the scope check's probability of a child's X-ray"},
    },
}
PREDICTION = {
    "type": "object",
    "required": ["label", "probability", "threshold", "model_version"],
    "properties": {
        "label": {"type": "string"},
        "probability": {"type": "number", "minimum": 0, "maximum": 1, "description": "of the positive class"},
        "threshold": {"type": "number"},
        "in_distribution": {
            "type": "boolean",
            "nullable": True,
            "description": "the input gate accepted the image as a frontal chest X-ray (null: model without a gate)",
        },
        "ood_score": {"type": "number", "nullable": True, "description": "the gate's distance; larger is stranger"},
        "ood_threshold": {"type": "number", "nullable": True},
        "in_scope": {
            "type": "boolean",
            "description": "the population scope check accepted the image as an adult's chest X-ray (absent: no check)",
        },
        "scope_score": {"type": "number", "description": "the scope check's probability of a child's X-ray"},
        "warning": {
            "type": "string",
            "description": "allow_ood=true on a refused image: why it was refused; with shift: why it is unfamiliar",
        },
        "shift": {
            "type": "boolean",
            "description": "the film is unlike the training films though not refused (5% of same-source films)",
        },
        "site": {
            "type": "string",
            "nullable": True,
            "description": "where the film was taken: its DICOM InstitutionName, else serve.site (null: unnamed)",
        },
        "site_validated": {
            "type": "boolean",
            "description": "the newest drift check of this site's films with this model version found no drift",
        },
        "site_warning": {"type": "string", "description": "present when site_validated is false: why"},
        "inference_url": {
            "type": "string",
            "description": "with serve.inference_url: the Open Inference Protocol service that gave the answer",
        },
        "heatmap_note": {
            "type": "string",
            "description": "instead of the heat map, when the service answered with another model version",
        },
        "read_lungs": {
            "type": "boolean",
            "description": "heatmap=true: the heat map is on the lung view the model read",
        },
        "positive_class": {"type": "string"},
        "model_uri": {"type": "string"},
        "model_version": {"type": "string"},
        "data_version": {"type": "string"},
        "runtime": {
            "type": "string",
            "description": "the frozen base's pass that answered: tensorflow, or openvino with its precision",
        },
        "heatmap_png": {"type": "string", "description": "base64 PNG: Grad-CAM over the image (heatmap=true)"},
        "image_png": {
            "type": "string",
            "description": "base64 PNG: the image, downscaled, lung fields outlined (heatmap=true)",
        },
    },
}


def _errors(limit: str) -> dict:
    def ref(text):
        return {"description": text, "content": {"application/json": {"schema": ERROR}}}

    return {
        "400": ref("no file, or an empty file"),
        "413": ref(f"over the {limit} upload limit or the pixel limit (decompression bomb)"),
        "415": ref("not a PNG, JPEG or DICOM image"),
        "422": {
            "description": "not a frontal chest X-ray (DICOM header or input gate; allow_ood=true scores it "
            "anyway, with a warning), or a corrupt/truncated image, or a DICOM without pixel data",
            "content": {"application/json": {"schema": {"oneOf": [REFUSAL, ERROR]}}},
        },
    }


def _flag(name: str) -> dict:
    return {"name": name, "in": "query", "required": False, "schema": {"type": "boolean", "default": False}}


def _multipart(field: str, many: bool) -> dict:
    item = {"type": "string", "format": "binary"}
    schema = {"type": "array", "items": item} if many else item
    return {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": {"type": "object", "required": [field], "properties": {field: schema}}}
        },
    }


def openapi_spec(limit: str = "20 MB") -> dict:
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "cxr: COVID-19 chest X-ray classifier",
            "version": "0.1.0",
            "description": "Research tool, not a diagnostic device. Uploads are processed in memory only.",
        },
        "paths": _prediction_paths(limit) | _service_paths(),
    }


def _prediction_paths(limit: str) -> dict:
    results = {"type": "object", "properties": {"results": {"type": "array", "items": {"type": "object"}}}}
    return {
        "/api/predict": {
            "post": {
                "summary": "Predict one X-ray (PNG, JPEG, DICOM)",
                "parameters": [_flag("heatmap"), _flag("allow_ood")],
                "requestBody": _multipart("file", many=False),
                "responses": {
                    "200": {"description": "the prediction", "content": {"application/json": {"schema": PREDICTION}}},
                    **_errors(limit),
                },
            }
        },
        "/api/predict/batch": {
            "post": {
                "summary": "Predict several X-rays; per-file errors and refusals are reported inline",
                "parameters": [_flag("allow_ood")],
                "requestBody": _multipart("files", many=True),
                "responses": {
                    "200": {"description": "one result per file", "content": {"application/json": {"schema": results}}},
                    **_errors(limit),
                },
            }
        },
    }


def _service_paths() -> dict:
    return {
        "/healthz": {"get": {"summary": "the process is up", "responses": {"200": {"description": "up"}}}},
        "/readyz": {
            "get": {
                "summary": "the model is loaded",
                "responses": {"200": {"description": "ready"}, "503": {"description": "not ready"}},
            }
        },
        "/api/feedback": {
            "post": {
                "summary": "record a radiologist's finding against a prediction_id (JSON or form)",
                "responses": {
                    "200": {"description": "recorded"},
                    "404": {"description": "unknown prediction id, or no records kept"},
                    "422": {"description": "finding not one of covid, not_covid, unsure"},
                },
            }
        },
        "/api/records": {
            "get": {
                "summary": "recent predictions' numbers (time, version, outcome, probability, check scores, drift "
                "projection; never images); query since (30m, 24h, 7d), version, limit (at most 10000)",
                "responses": {
                    "200": {"description": "rows, oldest first"},
                    "404": {"description": "no records kept"},
                    "401": {"description": "not signed in"},
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics; sign-in, or Authorization: Bearer <CXR_METRICS_TOKEN>",
                "responses": {"200": {"description": "metrics"}, "401": {"description": "not signed in"}},
            }
        },
    }
