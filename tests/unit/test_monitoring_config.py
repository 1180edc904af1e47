"""infra/monitoring: the alert rules and the Grafana dashboard query only metrics the web app exports."""

import json
import re

import yaml

from cxr.serving.prometheus import ServingMetrics
from tests.conftest import PROJECT

MONITORING = PROJECT / "infra" / "monitoring"


def exported() -> set[str]:
    """Every series name the app's registry can expose (counters' _total, histograms' _bucket/_sum/_count)."""
    names = set()
    for family in ServingMetrics().registry.collect():
        names |= {family.name, f"{family.name}_total", f"{family.name}_created"}
        names |= {f"{family.name}_{suffix}" for suffix in ("bucket", "sum", "count")}
    return names


def referenced(expr: str) -> set[str]:
    return set(re.findall(r"\bcxr_[a-z_]+", expr))


def test_alert_rules_and_dashboard_use_only_exported_metrics():
    known = exported() | {"cxr_model_reloads_total"}  # collected from the follower at scrape time
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text())["groups"][0]["rules"]
    assert len(rules) >= 5
    for rule in rules:
        assert referenced(rule["expr"]) <= known, rule["alert"]
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            assert referenced(target["expr"]) <= known, panel["title"]


def test_prometheus_scrapes_the_webapp_pods_with_the_token_the_app_reads():
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics" and job["authorization"]["credentials_file"].endswith("cxr-metrics/token")
    webapp = (PROJECT / "infra" / "k8s" / "webapp.yaml").read_text()
    assert "CXR_METRICS_TOKEN_FILE" in webapp and "secretName: cxr-metrics" in webapp


def test_metrics_are_behind_sign_in_or_the_scrape_token_and_the_token_opens_nothing_else():
    import bcrypt

    from cxr.serving.app import create_app
    from cxr.serving.auth import Auth
    from cxr.serving.model_store import ModelFollower

    auth = Auth({"radiologist": bcrypt.hashpw(b"pw", bcrypt.gensalt(4))})
    client = create_app(ModelFollower("models:/m/1"), auth=auth, metrics_token="scrape-me").test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    scraped = client.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
    assert scraped.status_code == 200 and b"# TYPE cxr_predictions_total counter" in scraped.data
    assert client.post("/api/predict", headers={"Authorization": "Bearer scrape-me"}).status_code == 401
    assert client.get("/metrics", auth=("radiologist", "pw")).status_code == 200
