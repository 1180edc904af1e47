"""`prometheus.yml` for a machine without Kubernetes, as the rehearsal and the scrape test run Prometheus.

The project's scrape configuration as it is, but the pod discovery becomes static targets carrying the
labels the discovery would give (pods `webapp-0`, `webapp-1`, …), so the project's relabelling runs
unchanged; the token and rules files by absolute path; the intervals shortened.
"""

from __future__ import annotations

from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent


def static_scrape_config(targets: list[str], token: str, where: Path, interval: str = "1s") -> Path:
    """Writes `where/prometheus.yml` (and the token beside it) scraping `targets` (host:port); its path."""
    config = yaml.safe_load((HERE / "prometheus.yml").read_text())
    config["global"]["scrape_interval"] = config["global"]["evaluation_interval"] = interval
    config["rule_files"] = [str(HERE / "alerts.yml")]
    (job,) = config["scrape_configs"]
    (where / "token").write_text(token)
    job["authorization"]["credentials_file"] = str(where / "token")
    del job["kubernetes_sd_configs"]
    discovered = {"__meta_kubernetes_pod_label_app": "webapp", "__meta_kubernetes_pod_container_port_number": "8080"}
    job["static_configs"] = [
        {"targets": [target], "labels": {**discovered, "__meta_kubernetes_pod_name": f"webapp-{i}"}}
        for i, target in enumerate(targets)
    ]
    (where / "prometheus.yml").write_text(yaml.safe_dump(config))
    return where / "prometheus.yml"
