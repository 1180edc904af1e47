"""STAND-IN for a Kubeflow Pipelines API server: the few KFP v2beta1 REST calls `cxr pipeline submit --wait`
makes (healthz, find/create experiment, create run, get run), over real HTTP on loopback.

No KFP API server (it needs Kubernetes, Argo and MySQL) can run on this machine. This server checks
what a real one would receive (the compiled pipeline spec, the run's parameters, the bearer token) and
plays back a scripted sequence of run states per run; `on_create` can do what the cluster's pipeline
would have done in the meantime (e.g. record its MLflow run).
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

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
                if path == f"{API}/experiments":
                    query = parse_qs(urlparse(self.path).query)
                    wanted = [p["stringValue"] for p in json.loads(query["filter"][0])["predicates"]]
                    found = [e for e in stand_in.experiments.values() if e["display_name"] in wanted]
                    return self._send(200, {"experiments": found, "total_size": len(found)})
                if path.startswith(f"{API}/runs/") and path.removeprefix(f"{API}/runs/") in stand_in.runs:
                    return self._send(200, stand_in._run_view(path.removeprefix(f"{API}/runs/")))
                self._send(404, {"code": 5, "message": f"not found: {path}"})

            def do_POST(self):
                stand_in.requests.append(("POST", self.path))
                if not self._authorised():
                    return
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                if self.path.startswith(f"{API}/experiments"):
                    experiment = {"experiment_id": str(uuid.uuid4()), "display_name": body["display_name"]}
                    stand_in.experiments[experiment["experiment_id"]] = experiment
                    return self._send(200, experiment)
                if self.path.startswith(f"{API}/runs"):
                    if body.get("experiment_id") not in stand_in.experiments:
                        return self._send(400, {"code": 3, "message": "unknown experiment"})
                    spec = body.get("pipeline_spec") or {}
                    spec = spec.get("pipeline_spec", spec)  # with a platform spec beside it, it is nested
                    if "pipelineInfo" not in spec:
                        return self._send(400, {"code": 3, "message": "no pipeline spec"})
                    run = {**body, "run_id": str(uuid.uuid4()), "state": "PENDING"}
                    stand_in.runs[run["run_id"]] = run
                    stand_in.polls[run["run_id"]] = 0
                    if stand_in.on_create is not None:
                        stand_in.on_create(run)
                    return self._send(200, {k: v for k, v in run.items() if k != "pipeline_spec"})
                self._send(404, {"code": 5, "message": f"not found: {self.path}"})

        return Handler
