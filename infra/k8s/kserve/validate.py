"""Validate KServe objects against KServe's own API schema: the models its Python SDK generates from the
CRDs' OpenAPI (kserve.models, with Kubernetes' core types from kubernetes.client).

Strict where the API server is: every field must be one the schema names, of the type it gives, and the
required ones present. Run with the SDK's venv (make tools): tools/kserve/.venv/bin/python validate.py FILE...
Prints one line per problem; exit 1 when there is any.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import kserve.models
import kubernetes.client
import yaml

KINDS = {
    ("serving.kserve.io/v1beta1", "InferenceService"): "V1beta1InferenceService",
    ("serving.kserve.io/v1alpha1", "ServingRuntime"): "V1alpha1ServingRuntime",
    ("serving.kserve.io/v1alpha1", "ClusterServingRuntime"): "V1alpha1ClusterServingRuntime",
}
SCALARS = {"str": str, "int": int, "bool": bool, "float": (int, float), "object": object}


def model_class(name: str):
    return getattr(kserve.models, name, None) or getattr(kubernetes.client, name)


def check(value, kind: str, where: str) -> list[str]:
    """Problems of `value` against the SDK type `kind` ('str', 'list[V1EnvVar]', 'dict(str, str)', 'V1…')."""
    if value is None:
        return []
    if match := re.fullmatch(r"(?:list|List)\[(.+)\]", kind):
        if not isinstance(value, list):
            return [f"{where}: a list expected"]
        return [p for i, item in enumerate(value) for p in check(item, match[1], f"{where}[{i}]")]
    if match := re.fullmatch(r"dict\((.+), (.+)\)|Dict\[(.+), (.+)\]", kind):
        if not isinstance(value, dict):
            return [f"{where}: a mapping expected"]
        values = match[2] or match[4]
        return [p for key, item in value.items() for p in check(item, values, f"{where}.{key}")]
    if kind in SCALARS:
        return [] if isinstance(value, SCALARS[kind]) else [f"{where}: {kind} expected, got {value!r}"]
    if kind == "datetime":
        return []
    return check_model(value, model_class(kind), where)


def check_model(value, cls, where: str) -> list[str]:
    if not isinstance(value, dict):
        return [f"{where}: an object ({cls.__name__}) expected"]
    by_json = {json_name: attr for attr, json_name in cls.attribute_map.items()}
    problems = [f"{where}.{key}: not a field of {cls.__name__}" for key in value if key not in by_json]
    try:  # the SDK's constructor refuses a missing required field
        cls(**{by_json[k]: v for k, v in value.items() if k in by_json})
    except ValueError as exc:
        problems.append(f"{where}: {exc}")
    for key, item in value.items():
        if key in by_json:
            problems += check(item, cls.openapi_types[by_json[key]], f"{where}.{key}")
    return problems


def validate(document: dict) -> list[str]:
    name = KINDS.get((document.get("apiVersion"), document.get("kind")))
    if name is None:
        return []
    label = f"{document['kind']}/{document.get('metadata', {}).get('name', '?')}"
    return check_model(document, model_class(name), label)


def main(paths: list[str]) -> int:
    problems, seen = [], 0
    for path in paths:
        for document in yaml.safe_load_all(Path(path).read_text()):
            if document and (document.get("apiVersion"), document.get("kind")) in KINDS:
                seen += 1
                problems += validate(document)
    for problem in problems:
        print(problem)
    print(f"{seen} KServe objects checked, {len(problems)} problems")
    return 1 if problems or not seen else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
