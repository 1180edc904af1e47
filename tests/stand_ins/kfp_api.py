"""STAND-IN for a Kubeflow Pipelines API server: the KFP v2beta1 REST calls the `cxr pipeline` commands make
through kfp.Client (healthz; find/create experiment; create, get and list runs; upload a pipeline and its
versions, list versions; create, list and delete recurring runs), over real HTTP on loopback.

No KFP API server (it needs Kubernetes, Argo and MySQL) can run on this machine. This server checks
what a real one would receive (the compiled pipeline spec, the run's parameters, the bearer token) and
plays back a scripted sequence of run states per run; `on_create` can do what the cluster's pipeline
would have done in the meantime (e.g. record its MLflow run).
"""

from __future__ import annotations

import datetime
import email.parser
import email.policy
import json
import threading
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import yaml

API = "/apis/v2beta1"
TASKS = ("ingest", "validate", "augment", "train", "evaluate", "gate", "register")


class KfpStandIn:
    def __init__(
        self,
        states: list[str],
        on_create: Callable[[dict], None] | None = None,
        token: str | None = None,
        error: str = "",
    ):
        self.states = states
        self.on_create = on_create
        self.token = token
        self.error = error
        self.experiments: dict[str, dict] = {}
        self.runs: dict[str, dict] = {}
        self.pipelines: dict[str, dict] = {}
        self.versions: dict[str, list[dict]] = {}  # pipeline id -> its versions, oldest first
        self.recurring: dict[str, dict] = {}
        self.polls: dict[str, int] = {}
        self.requests: list[tuple[str, str]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def _run_view(self, run_id: str) -> dict:
        run = self.runs[run_id]
        step = min(self.polls[run_id], len(self.states) - 1)
        self.polls[run_id] += 1
        state = self.states[step]
        done = round(len(TASKS) * (step + 1) / len(self.states))
        tasks = [{"display_name": t, "state": "SUCCEEDED" if i < done else "RUNNING"} for i, t in enumerate(TASKS)]
        view = {**run, "state": state, "run_details": {"task_details": tasks[: max(done, 1)]}}
        if state == "FAILED" and self.error:
            view["error"] = {"code": 2, "message": self.error}
        return view

    @staticmethod
    def _wanted(query: dict) -> list[str] | None:
        """The display names a list call's `filter` asks for (None: no filter)."""
        if "filter" not in query:
            return None
        return [p["stringValue"] for p in json.loads(query["filter"][0])["predicates"]]

    def _upload(self, query: dict, headers, body: bytes) -> tuple[int, dict]:
        """POST pipelines/upload or upload_version: a multipart form whose `uploadfile` is the package."""
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + headers["Content-Type"].encode() + b"\r\n\r\n" + body
        )
        files = [
            part
            for part in message.iter_parts()
            if part.get_param("name", header="content-disposition") == "uploadfile"
        ]
        if not files:
            return 400, {"code": 3, "message": "no uploadfile"}
        spec = next(yaml.safe_load_all(files[0].get_payload(decode=True)))
        if "pipelineInfo" not in spec:
            return 400, {"code": 3, "message": "not a pipeline spec"}
        name = query["name"][0]
        now = datetime.datetime.now(datetime.UTC).isoformat()
        if "pipelineid" in query:  # a new version of an existing pipeline
            pipeline_id = query["pipelineid"][0]
            if pipeline_id not in self.pipelines:
                return 404, {"code": 5, "message": "no such pipeline"}
        else:
            if any(p["display_name"] == name for p in self.pipelines.values()):
                return 409, {"code": 6, "message": f"pipeline {name} already exists"}
            pipeline_id = str(uuid.uuid4())
            self.pipelines[pipeline_id] = {"pipeline_id": pipeline_id, "display_name": name, "created_at": now}
            self.versions[pipeline_id] = []
        if any(v["display_name"] == name for v in self.versions[pipeline_id]):
            return 409, {"code": 6, "message": f"version {name} already exists"}
        version = {
            "pipeline_id": pipeline_id,
            "pipeline_version_id": str(uuid.uuid4()),
            "display_name": name,
            "created_at": now,
            "pipeline_spec": spec,
        }
        self.versions[pipeline_id].append(version)
        if "pipelineid" in query:
            return 200, {k: v for k, v in version.items() if k != "pipeline_spec"}
        return 200, self.pipelines[pipeline_id]

    def _list(self, path: str, query: dict) -> tuple[int, dict] | None:
        """The list calls: pipelines, a pipeline's versions, runs, recurring runs."""
        wanted = self._wanted(query)
        if path == f"{API}/pipelines":
            found = [p for p in self.pipelines.values() if wanted is None or p["display_name"] in wanted]
            return 200, {"pipelines": found, "total_size": len(found)}
        if path.startswith(f"{API}/pipelines/") and path.endswith("/versions"):
            versions = self.versions.get(path.split("/")[-2], [])
            if "created_at desc" in query.get("sort_by", [""])[0]:
                versions = versions[::-1]
            found = [
                {k: v for k, v in version.items() if k != "pipeline_spec"}
                for version in versions
                if wanted is None or version["display_name"] in wanted
            ][: int(query.get("page_size", ["100"])[0])]
            return 200, {"pipeline_versions": found, "total_size": len(found)}
        if path == f"{API}/runs":
            experiment = query.get("experiment_id", [None])[0]
            runs = [self._run_view(i) for i, r in self.runs.items() if experiment in (None, r.get("experiment_id"))]
            runs = sorted(runs, key=lambda r: r["created_at"], reverse=True)[: int(query.get("page_size", ["10"])[0])]
            return 200, {"runs": [{k: v for k, v in r.items() if k != "pipeline_spec"} for r in runs]}
        if path == f"{API}/recurringruns":
            found = [
                r
                for r in self.recurring.values()
                if (wanted is None or r["display_name"] in wanted)
                and query.get("experiment_id", [r["experiment_id"]])[0] == r["experiment_id"]
            ]
            return 200, {"recurringRuns": found, "total_size": len(found)}
        return None

    def _create(self, path: str, body: dict) -> tuple[int, dict]:
        """POST of a recurring run, an experiment or a run: (status, body) as the API answers."""
        if path == f"{API}/recurringruns":
            if body.get("experiment_id") not in self.experiments:
                return 400, {"code": 3, "message": "unknown experiment"}
            reference = body.get("pipeline_version_reference") or {}
            versions = self.versions.get(reference.get("pipeline_id"), [])
            if not any(v["pipeline_version_id"] == reference.get("pipeline_version_id") for v in versions):
                return 400, {"code": 3, "message": "unknown pipeline version"}
            made = {**body, "recurring_run_id": str(uuid.uuid4()), "status": "ENABLED"}
            self.recurring[made["recurring_run_id"]] = made
            return 200, made
        if path.startswith(f"{API}/experiments"):
            experiment = {"experiment_id": str(uuid.uuid4()), "display_name": body["display_name"]}
            self.experiments[experiment["experiment_id"]] = experiment
            return 200, experiment
        if path.startswith(f"{API}/runs"):
            return self._create_run(body)
        return 404, {"code": 5, "message": f"not found: {path}"}

    def _create_run(self, body: dict) -> tuple[int, dict]:
        if body.get("experiment_id") not in self.experiments:
            return 400, {"code": 3, "message": "unknown experiment"}
        spec = body.get("pipeline_spec") or {}
        spec = spec.get("pipeline_spec", spec)  # with a platform spec beside it, it is nested
        if "pipelineInfo" not in spec:
            return 400, {"code": 3, "message": "no pipeline spec"}
        created = datetime.datetime.now(datetime.UTC).isoformat()
        run = {**body, "run_id": str(uuid.uuid4()), "state": "PENDING", "created_at": created}
        self.runs[run["run_id"]] = run
        self.polls[run["run_id"]] = 0
        if self.on_create is not None:
            self.on_create(run)
        return 200, {k: v for k, v in run.items() if k != "pipeline_spec"}

    def _handler(self):
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorised(self) -> bool:
                if stand_in.token and self.headers.get("Authorization") != f"Bearer {stand_in.token}":
                    self._send(401, {"error": "Unauthorized", "code": 16, "message": "bad or missing token"})
                    return False
                return True

            def do_GET(self):
                stand_in.requests.append(("GET", self.path))
                if not self._authorised():
                    return
                path = self.path.split("?")[0]
                if path == f"{API}/healthz":
                    return self._send(200, {"multi_user": False})
                query = parse_qs(urlparse(self.path).query)
                if path == f"{API}/experiments":
                    wanted = stand_in._wanted(query)
                    found = [e for e in stand_in.experiments.values() if wanted is None or e["display_name"] in wanted]
                    return self._send(200, {"experiments": found, "total_size": len(found)})
                if (listed := stand_in._list(path, query)) is not None:
                    return self._send(*listed)
                if path.startswith(f"{API}/runs/") and path.removeprefix(f"{API}/runs/") in stand_in.runs:
                    return self._send(200, stand_in._run_view(path.removeprefix(f"{API}/runs/")))
                self._send(404, {"code": 5, "message": f"not found: {path}"})

            def do_POST(self):
                stand_in.requests.append(("POST", self.path))
                if not self._authorised():
                    return
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                path, query = self.path.split("?")[0], parse_qs(urlparse(self.path).query)
                if path in (f"{API}/pipelines/upload", f"{API}/pipelines/upload_version"):
                    return self._send(*stand_in._upload(query, self.headers, raw))
                self._send(*stand_in._create(path, json.loads(raw or b"{}")))

            def do_DELETE(self):
                stand_in.requests.append(("DELETE", self.path))
                if not self._authorised():
                    return
                recurring_run_id = self.path.split("?")[0].removeprefix(f"{API}/recurringruns/")
                if stand_in.recurring.pop(recurring_run_id, None) is None:
                    return self._send(404, {"code": 5, "message": f"not found: {self.path}"})
                self._send(200, {})

        return Handler
