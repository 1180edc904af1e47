"""The release manager's registry against real MLflow stores: a temporary SQLite store, and a real
`mlflow server` process on loopback. Versions come from the pipeline's own steps on tiny data."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
import requests

from cxr.errors import CxrError
from cxr.release.promotion import history, list_versions, model_card, promote, rollback, show_version
from cxr.steps.context import RunContext
from cxr.steps.evaluate import evaluate_step
from cxr.steps.gate import gate_step
from cxr.steps.ingest import ingest_step
from cxr.steps.register import register_step
from cxr.steps.train import train_step
from cxr.tracking import runs as tracking
from cxr.tracking.record import Lineage
from tests.conftest import make_dataset, tiny
from tests.integration.conftest import free_port

pytestmark = pytest.mark.slow  # fits networks and starts a tracking server

NAME = "covid-xray-vgg16"
CXR = str(Path(sys.executable).parent / "cxr")


def alias_of(alias: str) -> str:
    return str(mlflow.MlflowClient().get_model_version_by_alias(NAME, alias).version)


def pipeline(tmp: Path, uri: str, data: Path, *extra: str) -> str:
    """Run the steps the Kubeflow pipeline runs (validation aside); returns the registered version."""
    params = tiny(*extra)
    run_id = tracking.start_pipeline_run(params, uri, "", Lineage(data_version="d1", git_commit="c1").tags())
    ctx = RunContext(uri, run_id)
    work = tmp / run_id
    ingest_step(ctx, str(data), str(work / "ds"), params)
    model_uri = train_step(ctx, str(work / "ds"), str(work / "model"), params)
    evaluate_step(ctx, str(work / "ds"), str(work / "model"), str(work / "eval"), params)
    decision = gate_step(ctx, str(work / "ds"), str(work / "eval"), params)
    return register_step(ctx, model_uri, decision, params, Lineage(data_version="d1", git_commit="c1"))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    data = make_dataset(tmp / "data", per_class=8)
    v1 = pipeline(tmp, uri, data)
    v2 = pipeline(tmp, uri, data, "train.seed=7")
    v3 = pipeline(tmp, uri, data, "ingest.seed=3")  # another validation split
    # a version registered by hand, outside the pipeline: it has no gate record
    source = mlflow.MlflowClient().get_model_version(NAME, v1).source
    manual = mlflow.register_model(source, NAME).version
    yield {"uri": uri, "data": data, "v": [v1, v2, v3, str(manual)]}
    os.environ.pop("MLFLOW_TRACKING_URI", None)


def test_every_version_is_listed_with_lineage_and_a_card(store):
    rows = list_versions(NAME)
    assert [r["version"] for r in rows] == ["4", "3", "2", "1"]
    v1 = next(r for r in rows if r["version"] == "1")
    assert v1["data_version"] == "d1" and v1["git_commit"] == "c1" and v1["val_f1"] != ""
    assert v1["registered_by"] and v1["created"].startswith("20")
    card = model_card(NAME, "1")
    assert "Not a diagnostic device" in card and "Random initialisation" in card
    assert "95% CI" in card and "| true COVID |" in card and "No patient-level split" in card
    assert v1["test_f1"] != "" and "(" in v1["val_f1"] and v1["gate"] == "passed"  # test evidence beside val
    assert "| f1 |" in card and "Outcome: passed" in card and "(strategy `max_f1`): fixed at 0.5" in card
    for section in ("## Out of scope", "## Reference standard", "## Input gate", "Known confounders", "| ppv |"):
        assert section in card
    assert "Research use only" in card and "Kermany" in card and "not a per-image PCR" in card
    shown = show_version(NAME, "1")
    assert shown["gate"]["passed"] == "true" and shown["run_id"] in shown["run_link"]
    assert shown["gate"]["test_f1"] and shown["evidence"]["test_f1"].startswith(shown["gate"]["test_f1"][:4])


def test_the_json_card_validates_and_promote_refuses_an_incomplete_one(store, tmp_path):
    from cxr.release.card import card_problems
    from cxr.release.promotion import card_of

    client = mlflow.MlflowClient()
    v3 = client.get_model_version(NAME, store["v"][2])
    card = card_of(v3)
    assert card_problems(card) == []
    assert card["intended_use"]["research_use_only"] is True and card["input_gate"]["ood_n"] >= 50
    assert 0 < card["metrics"]["prevalence"] < 1 and card["metrics"]["validation"]["ppv"]["value"] is not None

    broken = {k: v for k, v in card.items() if k != "reference_standard"}
    broken["training_data"] = {**card["training_data"], "known_confounders": []}
    run_id = client.get_model_version(NAME, store["v"][2]).run_id
    client.log_text(run_id, json.dumps(broken), "model_cards/broken.json")
    original = v3.tags["model_card_json"]
    client.set_model_version_tag(NAME, v3.version, "model_card_json", f"runs:/{run_id}/model_cards/broken.json")
    try:
        with pytest.raises(CxrError, match="model card is incomplete") as refused:
            promote(NAME, v3.version, "ship it", "erin")
        assert "reference_standard" in str(refused.value) and "known_confounders" in str(refused.value)
        assert "champion" not in (client.get_model_version(NAME, v3.version).aliases or [])
    finally:
        client.set_model_version_tag(NAME, v3.version, "model_card_json", original)


def test_promote_refuse_force_rollback_and_history(store):
    v1, v2, _, manual = store["v"]
    promote(NAME, v1, "first release", "alice")
    with pytest.raises(CxrError, match="did not pass the F1 gate"):
        promote(NAME, manual, "hand-made", "bob")
    assert alias_of("champion") == v1
    promote(NAME, v2, "better recall on the new sample", "bob")
    assert alias_of("champion") == v2
    assert alias_of("previous-champion") == v1
    forced = promote(NAME, manual, "emergency hotfix approved by QA", "carol", force=True)
    assert forced["forced"] is True
    event = rollback(NAME, "hotfix misbehaved", "dave")
    assert event["version"] == v2 and event["from_version"] == manual
    assert alias_of("champion") == v2
    aliases = {r["version"]: r["aliases"] for r in list_versions(NAME)}
    assert "champion" in aliases[v2] and "previous-champion" in aliases[manual]
    log = history(NAME)
    assert [(e["action"], e["by"], e["from_version"], e["version"]) for e in log] == [
        ("promote", "alice", None, v1),
        ("promote", "bob", v1, v2),
        ("promote", "carol", v2, manual),
        ("rollback", "dave", manual, v2),
    ]
    assert log[2]["reason"] == "emergency hotfix approved by QA" and log[2]["forced"]


def test_a_concurrent_promotion_is_detected(store):
    v1, v2, v3, _ = store["v"]
    before = alias_of("champion")

    def someone_else():
        mlflow.MlflowClient().set_registered_model_alias(NAME, "champion", v3)

    with pytest.raises(CxrError, match="concurrent promotion"):
        promote(NAME, v1 if before != v1 else v2, "racing", "erin", _after_read=someone_else)
    mlflow.MlflowClient().set_registered_model_alias(NAME, "champion", before)
    last = history(NAME)[-1]  # the intent was written before the alias moved; the failure after
    assert (last["by"], last["status"]) == ("erin", "failed") and "concurrent promotion" in last["error"]


def test_register_refuses_a_stale_gate_and_keeps_the_better_challenger(store, tmp_path):
    from cxr.release.gate import Evidence, PairedDelta, decide_promotion
    from cxr.release.registry import register_candidate

    source = mlflow.MlflowClient().get_model_version(NAME, "1").source
    champion = alias_of("champion")
    stale = decide_promotion(Evidence(0.9, 0.8, 1.0, 20, 20), 0.0, champion=PairedDelta("999", 0.1, 0.8, 0.6, 0.9))
    assert stale.passed
    with pytest.raises(CxrError, match="changed from v999"):
        register_candidate(source, NAME, "challenger", {}, stale)
    holder = mlflow.MlflowClient().get_model_version_by_alias(NAME, "challenger")
    weaker = decide_promotion(
        Evidence(-0.5, -0.5, -0.5, 20, 20),
        -1.0,
        champion=None if champion is None else PairedDelta(champion, -1.0, 0.5, 0.4, 0.6),
        challenger_version="not-the-holder",
    )
    assert weaker.passed
    count = len(list_versions(NAME))
    version, note = register_candidate(source, NAME, "challenger", {}, weaker)
    assert len(list_versions(NAME)) == count + 1  # registered, nothing lost
    assert note and alias_of("challenger") == str(holder.version)


def test_compare_same_split_uses_recorded_predictions_and_reports_a_ci(store):
    from cxr.release.compare import compare

    result = compare(NAME, "1", "2", store["data"], samples=300)
    assert result["split"].startswith("recorded predictions")
    low, high = result["delta_f1"]["ci95"]
    assert low <= result["delta_f1"]["b_minus_a"] <= high
    assert set(result["versions"]) == {"1", "2"}
    assert sum(map(sum, result["versions"]["1"]["confusion_matrix"]["matrix"])) == result["n"]


def test_compare_different_splits_rescores_on_the_first_versions_split(store):
    from cxr.release.compare import compare

    result = compare(NAME, "1", "3", store["data"], samples=300)
    assert result["split"].startswith("re-scored on version 1's validation split")
    recorded = compare(NAME, "1", "2", store["data"], samples=10)
    assert result["versions"]["1"]["metrics"]["f1"] == pytest.approx(
        recorded["versions"]["1"]["metrics"]["f1"], abs=1e-6
    )


@pytest.fixture(scope="module")
def server(store, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("server")
    port = free_port()
    log = tmp / "server.log"
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--backend-store-uri",
            store["uri"],
            "--artifacts-destination",
            str(tmp / "artifacts"),
            "--serve-artifacts",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdin=subprocess.DEVNULL,
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: the server, its workers, job runner and consumers
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                if requests.get(url + "/health", timeout=5).ok:
                    break
            except requests.RequestException:  # refused, or accepted and not answered yet on a loaded machine
                time.sleep(1)
            assert time.time() < deadline, f"{url} did not come up in 180 s: {log.read_text()[-3000:]}"
        yield url
    finally:  # the whole group, also when the server never came up: nothing outlives the tests
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def cli(url, *args, check=True):
    env = {**os.environ, "MLFLOW_TRACKING_URI": url}
    out = subprocess.run([CXR, "registry", *args], env=env, capture_output=True, text=True, timeout=300)
    if check:
        assert out.returncode == 0, out.stdout + out.stderr
    return out


def test_the_cli_against_a_tracking_server_process(server, store):
    v1, v2, _, manual = store["v"]
    rows = json.loads(cli(server, "list", "--json").stdout)
    assert {r["version"] for r in rows} >= {v1, v2, manual}
    assert "registered_by" in cli(server, "list").stdout
    assert cli(server, "show", "champion").returncode == 0
    refused = cli(server, "promote", manual, "--reason", "try", check=False)
    assert refused.returncode != 0 and "did not pass the F1 gate" in refused.stderr
    assert "Traceback" not in refused.stderr
    out = cli(server, "promote", v1, "--reason", "server-side release", "--by", "frank").stdout
    assert f"@champion -> v{v1}" in out
    assert "frank: server-side release" in cli(server, "history").stdout
    assert "rolled back" in cli(server, "rollback", "--reason", "undo").stdout
    assert "Model card" in cli(server, "card", v1).stdout
    shown = json.loads(cli(server, "show", v1).stdout)
    assert shown["run_link"].startswith(server + "/#/experiments/")
    assert "paired bootstrap 95% CI" in cli(server, "compare", "1", "2", "--samples", "200").stdout


def test_a_gate_tag_changed_after_registration_is_detected(store):
    """The gate decision is read from the pipeline run that produced the version, not from its tags."""
    v1, _, v3, manual = store["v"]
    c = mlflow.MlflowClient()
    c.set_model_version_tag(NAME, manual, "gate.passed", "true")  # a hand-registered version "passes"
    with pytest.raises(CxrError, match="no pipeline run records a gate decision for it: the tag was set by hand"):
        promote(NAME, manual, "looks fine to me", "mallory")
    c.set_model_version_tag(NAME, v3, "gate.candidate_f1", "0.999999")  # a better-looking F1
    with pytest.raises(CxrError, match="gate.candidate_f1 disagree.* a tag was changed after registration"):
        promote(NAME, v3, "best F1 on the board", "mallory")
    assert all(e["by"] != "mallory" for e in history(NAME))  # refused before anything was recorded


def test_an_alias_move_interrupted_after_its_intent_shows_as_incomplete(store):
    from cxr.release.promotion import _audited

    event = {"action": "promote", "version": store["v"][0], "from_version": None, "by": "oscar", "reason": "r"}

    def killed():
        raise KeyboardInterrupt  # the process dies between the intent and the alias write

    with pytest.raises(KeyboardInterrupt):
        _audited(NAME, {**event, "forced": False}, killed)
    last = history(NAME)[-1]
    assert (last["by"], last["status"]) == ("oscar", "incomplete")
    out = subprocess.run([CXR, "registry", "history"], capture_output=True, text=True, env=os.environ, timeout=120)
    assert "[INCOMPLETE]  by oscar" in out.stdout
