"""The run record (cxr/tracking/record.py): one typed object for what a pipeline run records, read back
as it was written; and no other module spells its tag names."""

import ast

from cxr.params import load_params
from cxr.tracking import record
from cxr.tracking.record import GateRecord, Lineage, RunRecord, typed_params
from tests.conftest import PROJECT

NAMES = {
    value
    for name, value in vars(record).items()
    if name.isupper() and isinstance(value, str) and name not in ("NOT_REGISTERED",)
}
WHERE = ("cxr", "cxr_cli", "pipelines", "components")


def spelled_keys(path, root=PROJECT) -> list[str]:
    """Record tag names written as string literals where a run's or a version's tags are read or set."""
    found = []
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        method, receiver = node.func.attr, ast.unparse(node.func.value)
        keys = []
        if method == "get" and "tags" in receiver and node.args:
            keys = [node.args[0]]
        elif method == "set_tag" and len(node.args) >= 2:
            keys = [node.args[-2]]
        elif method == "set_model_version_tag" and len(node.args) >= 3:
            keys = [node.args[2]]
        for key in keys:
            if isinstance(key, ast.Constant) and isinstance(key.value, str):
                if key.value in NAMES or key.value.startswith(record.GATE_PREFIX):
                    found.append(f"{path.relative_to(root)}:{node.lineno} {key.value}")
    return found


def test_no_module_but_the_record_spells_its_tag_names():
    paths = [p for top in WHERE for p in sorted((PROJECT / top).rglob("*.py")) if p.name != "record.py"]
    assert [hit for p in paths for hit in spelled_keys(p)] == []


def test_the_check_finds_a_spelled_key(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        'def f(mv, client):\n    client.set_tag("r", "gate.outcome", "x")\n    return mv.tags.get("data_version")\n'
    )
    assert len(spelled_keys(sample, tmp_path)) == 2


def test_logged_params_read_back_as_the_typed_params_that_were_logged():
    params = load_params(profile="paper", overrides=["train.stat_blocks=[4, 5]", "ingest.seed=7"])
    logged = {k: str(v) for k, v in params.flat().items()}
    assert typed_params(logged) == params
    assert typed_params({**logged, "train.removed_long_ago": "1"}) == params  # an older run's key is left out


def test_the_gate_record_reads_back_what_it_wrote_and_old_versions_tags():
    gate = GateRecord("inconclusive", "too few images", "add images", False, {"candidate_f1": "0.800000"})
    assert GateRecord.from_tags(gate.tags()) == gate
    assert GateRecord.from_tags({record.GATE_PASSED: "true"}).outcome == "passed"  # before the three outcomes
    assert GateRecord.from_tags({}).outcome == "" and GateRecord.from_tags({}).passed is None


def test_a_run_record_from_tags_holds_the_lineage_the_gate_and_the_notes():
    lineage = Lineage(data_version="abc.dir", git_commit="c0ffee", params_hash="p1", profile="cpu", run_id="r1")
    tags = {**lineage.tags(), **GateRecord("passed", "ok").tags(), "threshold_method": "fixed", "other": "x"}
    run = RunRecord.from_tags({**tags, record.REGISTERED_VERSION: "3"}, load_params(), {"val_f1": 0.9})
    assert run.lineage == lineage and run.gate.outcome == "passed" and run.registered_version == "3"
    assert run.note("threshold_method") == "fixed" and run.metrics == {"val_f1": 0.9}
