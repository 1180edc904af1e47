"""The signed-in MLflow server's cost per request, with and without its credential cache.

Usage: .venv/bin/python bench/mlflow_auth_cache.py [--requests 40]
Starts `mlflow/server.sh` with sign-in (the cxr-auth app; SQLite stores in a temporary folder) twice:
`CXR_AUTH_CACHE_TTL_S=0` (every request checks the password hash: the baseline) and the default (60 s).
Each time, one client signed in as the admin sends the same read request (`experiments/get-by-name`)
`--requests` times, then as many anonymous ones (refused before any password check). Prints seconds per
request for each. Last line: ratio = seconds per signed-in request without the cache / with it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from serve_load import free_port  # bench/ is the script's folder, first on sys.path

ROOT = Path(__file__).resolve().parent.parent
ADMIN = ("admin", "bench-admin-password-123")
ROUTE = "/api/2.0/mlflow/experiments/get-by-name?experiment_name=Default"


def seconds_per_request(session: requests.Session, url: str, auth, n: int, expect: int) -> float:
    session.get(url, auth=auth, timeout=30)  # the first check is never cached
    start = time.perf_counter()
    for _ in range(n):
        status = session.get(url, auth=auth, timeout=30).status_code
        if status != expect:
            raise SystemExit(f"{url} answered {status}, expected {expect}")
    return (time.perf_counter() - start) / n


def measure(ttl: str | None, n: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        env = os.environ | {
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
            "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN[1],
            "MLFLOW_PORT": str(port),
            "MLFLOW_BACKEND_STORE_URI": f"sqlite:///{tmp}/m.db",
            "MLFLOW_AUTH_DATABASE_URI": f"sqlite:///{tmp}/a.db",
            "MLFLOW_ARTIFACTS_DESTINATION": f"{tmp}/artifacts",
            "TMPDIR": tmp,
        }
        if ttl is not None:
            env["CXR_AUTH_CACHE_TTL_S"] = ttl
        log = open(Path(tmp) / "server.log", "w")
        server = subprocess.Popen(["bash", str(ROOT / "mlflow" / "server.sh")], env=env, stdout=log, stderr=log)
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(120):
                try:
                    if requests.get(base + "/health", timeout=2).ok:
                        break
                except requests.ConnectionError:
                    time.sleep(0.5)
            else:
                raise SystemExit(f"the server did not start: {(Path(tmp) / 'server.log').read_text()[-2000:]}")
            with requests.Session() as session:
                signed = seconds_per_request(session, base + ROUTE, ADMIN, n, 200)
                anonymous = seconds_per_request(session, base + ROUTE, None, n, 401)
            return signed, anonymous
        finally:
            server.terminate()
            server.wait(timeout=60)
            log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=40)
    args = parser.parse_args()
    results = {}
    for label, ttl in (("no cache (CXR_AUTH_CACHE_TTL_S=0)", "0"), ("default (60 s)", None)):
        signed, anonymous = measure(ttl, args.requests)
        results[label] = signed
        print(f"{label:36s} signed in {signed * 1000:7.1f} ms/request   anonymous {anonymous * 1000:6.1f} ms/request")
    baseline, cached = results.values()
    print(f"ratio: {baseline / cached:.2f}")


if __name__ == "__main__":
    main()
