"""The outcome of a pipeline run as one JSON object (`--json`), a terminal summary and a CI job summary.

The object's shape is fixed by `run_result.schema.json` beside this file; the exit codes are part of
the same contract: 0 registered, 3 the gate refused (failed or inconclusive), 2 the pipeline failed.
"""

from __future__ import annotations

import json
from pathlib import Path

from cxr.errors import CxrError
from cxr.evaluation.metrics import CONFUSION_KEYS, CV_METRICS, INTERVAL_METRICS, METRICS, figure, format_figure
from cxr.tracking.record import SafetyFigures
from cxr.tracking.runs import ui_url

SCHEMA_PATH = Path(__file__).with_name("run_result.schema.json")
SCHEMA_ID = "cxr.pipeline-result/1"
EXIT_REGISTERED, EXIT_FAILED, EXIT_REFUSED = 0, 2, 3
# figures of a split beside the registry's metrics: where PPV/NPV are read, the safety checks' acceptance
SPLIT_FIGURES = ("prevalence", "ood_accept_rate", "scope_accept_rate")


def split_metrics(metrics: dict, split: str) -> dict | None:
    """The `split`'s figures from the MLflow run's flat metrics (val_f1, val_f1_ci_low, ...): each
    metric of the registry (cxr/evaluation/metrics.py) as {value} or, with an interval, {value, ci_low,
    ci_high}."""
    if f"{split}_f1" not in metrics:
        return None
    out: dict = {"n": int(metrics.get(f"{split}_n", 0))}
    for name in (*METRICS, *SPLIT_FIGURES):
        fig = figure(metrics, f"{split}_{name}")
        if fig["value"] is not None:
            out[name] = fig if name in INTERVAL_METRICS else {"value": fig["value"]}
    out["confusion"] = {k: int(metrics.get(f"{split}_{k}", 0)) for k in CONFUSION_KEYS}
    return out


def input_gate(metrics: dict) -> dict | None:
    """The input gate's figures on the offline out-of-distribution set (None when the run has none)."""
    gate = SafetyFigures.from_metrics(metrics).input_gate
    if gate is None:
        return None
    return {"ood_reject_rate": gate.reject_rate, "ood_n": gate.n, "threshold": gate.threshold}


def input_gate_line(result: dict) -> str:
    """'input gate: accepts 100% of val, 100% of test; refuses 98% of 50 non-X-rays' (empty without one)."""
    gate = result.get("input_gate")
    if not gate:
        return ""
    rates = {s: m.get("ood_accept_rate", {}).get("value") for s, m in result["metrics"].items()}
    accepted = ", ".join(f"{rate:.0%} of {split}" for split, rate in rates.items() if rate is not None)
    return f"input gate: accepts {accepted}; refuses {gate['ood_reject_rate']:.0%} of {gate['ood_n']} non-X-rays"


def scope_check(metrics: dict) -> dict | None:
    """The population scope check's figures: reference children refused (cross-fitted); None without one."""
    scope = SafetyFigures.from_metrics(metrics).scope
    if scope is None:
        return None
    return {"population": "adults", "refuse_rate": scope.refuse_rate, "n": scope.n, "threshold": scope.threshold}


def shortcut_probe(metrics: dict, verdict: str = "") -> dict | None:
    """Test-split ROC AUC with the lung fields hidden and with only them shown (cxr/evaluation/shortcut.py)."""
    probe = SafetyFigures.from_metrics(metrics).shortcut
    if probe is None:
        return None
    return {
        "lungs_hidden_auc": probe.lungs_hidden_auc,
        "lungs_only_auc": probe.lungs_only_auc,
        "full_auc": probe.full_auc,
        "verdict": verdict,
    }


def external_check(metrics: dict) -> dict | None:
    """Specificity on normal films from a source the model never saw (cxr/evaluation/external.py)."""
    ext = SafetyFigures.from_metrics(metrics).external
    if ext is None:
        return None
    return {
        "specificity": ext.specificity,
        "n": ext.n,
        "shift_warn_rate": ext.shift_warn_rate,
        "refuse_rate": ext.refuse_rate,
    }


def safety_lines(result: dict) -> list[str]:
    """The scope check and the shortcut probe, one line each (none when not recorded)."""
    lines = []
    scope = result.get("scope")
    if scope:
        rates = {s: m.get("scope_accept_rate", {}).get("value") for s, m in result["metrics"].items()}
        accepted = ", ".join(f"{rate:.0%} of {split}" for split, rate in rates.items() if rate is not None)
        lines.append(
            f"scope check (adults only): accepts {accepted}; refuses {scope['refuse_rate']:.0%} of {scope['n']} "
            "children's X-rays (cross-fitted)"
        )
    probe = result.get("shortcut")
    if probe:
        lines.append(
            f"shortcut probe (test AUC): whole films {probe['full_auc']:.2f}, lungs hidden "
            f"{probe['lungs_hidden_auc']:.2f}, lungs only {probe['lungs_only_auc']:.2f} (chance 0.50)"
        )
    ext = result.get("external")
    if ext:
        spec, warned = ext["specificity"], ext.get("shift_warn_rate")
        lines.append(
            f"external normals (another source, {ext['n']}): specificity {spec['value']:.2f} "
            f"[{spec['ci_low']:.2f}, {spec['ci_high']:.2f}]"
            + (f"; shift warning on {warned:.0%}" if warned is not None else "")
        )
    return lines


def cross_validation(metrics: dict) -> dict | None:
    """Mean and std over the folds of each cv_* metric (None without cross-validation)."""
    if "cv_folds" not in metrics:
        return None
    out: dict = {"folds": int(metrics["cv_folds"])}
    for name in CV_METRICS:
        if f"cv_{name}_mean" in metrics:
            out[name] = {"mean": metrics[f"cv_{name}_mean"], "std": metrics.get(f"cv_{name}_std", 0.0)}
    return out


def calibration(metrics: dict) -> dict | None:
    if "temperature" not in metrics:
        return None
    return {
        "temperature": metrics["temperature"],
        "ece_before": metrics.get("ece_before_calibration"),
        "ece_after": metrics.get("ece_after_calibration"),
    }


def evidence_lines(result: dict) -> list[str]:
    """Cross-validation and calibration, one line each (none when not recorded)."""
    lines = []
    cv = result.get("cross_validation")
    if cv:
        figures = ", ".join(
            f"{name} {cv[name]['mean']:.2f} ± {cv[name]['std']:.2f}"
            for name in ("f1", "accuracy", "sensitivity", "specificity")
            if name in cv
        )
        lines.append(f"{cv['folds']}-fold CV over train + val (mean ± std over folds): {figures}")
    cal = result.get("calibration")
    if cal and cal.get("ece_before") is not None and cal["temperature"] == 1.0:
        lines.append(f"calibration: none (temperature 1; ECE {cal['ece_before']:.3f})")
    elif cal and cal.get("ece_before") is not None:
        lines.append(
            f"calibration: temperature {cal['temperature']:.2f}, ECE {cal['ece_before']:.3f} -> {cal['ece_after']:.3f} "
            "on the images it was fitted on"
        )
    return lines


def predictive_line(result: dict) -> str:
    """'PPV / NPV at prevalence 0.10: val 0.25 / 0.96, test 0.33 / 0.97' (empty when not recorded)."""
    parts, prevalence = [], None
    for split, m in result["metrics"].items():
        if "ppv" in m and "npv" in m:
            prevalence = m.get("prevalence", {}).get("value")
            parts.append(f"{split} {m['ppv']['value']:.2f} / {m['npv']['value']:.2f}")
    if not parts:
        return ""
    at = f" at prevalence {prevalence:.2f}" if prevalence is not None else ""
    return f"PPV / NPV{at}: " + ", ".join(parts)


def run_url(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    """Where the run opens in the MLflow UI: the server itself, or `make ui` for the local store."""
    if not run_id:
        return ""
    base = tracking_uri.rstrip("/") if tracking_uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000"
    return ui_url(base, experiment_id, run_id)


def build_result(outcome, params, tracking_uri: str, log_file: str = "", orchestrator: str = "local", **extra) -> dict:
    """The --json object for a finished (or failed) run, from what its MLflow run recorded."""
    gate = outcome.gate_outcome or None
    registered = outcome.registered_version not in ("", "none")
    if outcome.error or outcome.status == "FAILED" or outcome.gate_passed is None:
        code = EXIT_FAILED
    else:
        code = EXIT_REGISTERED if outcome.gate_passed else EXIT_REFUSED
    return {
        "schema": SCHEMA_ID,
        "orchestrator": orchestrator,
        "run_name": outcome.run_name,
        "mlflow_run_id": outcome.run_id,
        "status": outcome.status,
        "tracking_uri": tracking_uri,
        "run_url": run_url(tracking_uri, outcome.experiment_id, outcome.run_id),
        "data_version": outcome.data_version,
        "git_commit": outcome.git_commit,
        "metrics": {s: m for s in ("val", "test") if (m := split_metrics(outcome.metrics, s)) is not None},
        "gate": {"outcome": gate, "reason": outcome.gate_reason, "advice": outcome.gate_advice},
        "input_gate": input_gate(outcome.metrics),
        "scope": scope_check(outcome.metrics),
        "shortcut": shortcut_probe(outcome.metrics, outcome.shortcut_verdict),
        "external": external_check(outcome.metrics),
        "cross_validation": cross_validation(outcome.metrics),
        "calibration": calibration(outcome.metrics),
        "registered": {
            "model": params.register.model_name,
            "version": outcome.registered_version,
            "alias": params.register.alias,
        }
        if registered
        else None,
        "not_registered_reason": "" if registered else (outcome.gate_reason or outcome.error or "the pipeline failed"),
        "error": outcome.error,
        "failed_step": outcome.failed_step,
        "log_file": log_file,
        "exit_code": code,
        **extra,
    }


def failure_result(error: str, tracking_uri: str, run_name: str = "", log_file: str = "", **extra) -> dict:
    """The --json object when the run never got as far as an MLflow run (bad input, store unreachable)."""
    return _empty("FAILED", error, tracking_uri, run_name, log_file, EXIT_FAILED, **extra)


def skipped_result(tracking_uri: str, **extra) -> dict:
    """The --json object of a `cxr retrain` with nothing to do (the newest version used this data)."""
    return _empty("SKIPPED", "", tracking_uri, "", "", EXIT_REGISTERED, **extra)


def _empty(status: str, error: str, tracking_uri: str, run_name: str, log_file: str, code: int, **extra) -> dict:
    return {
        "schema": SCHEMA_ID,
        "orchestrator": extra.pop("orchestrator", "local"),
        "run_name": run_name,
        "mlflow_run_id": "",
        "status": status,
        "tracking_uri": tracking_uri,
        "run_url": "",
        "data_version": "",
        "git_commit": "",
        "metrics": {},
        "gate": {"outcome": None, "reason": "", "advice": ""},
        "input_gate": None,
        "scope": None,
        "shortcut": None,
        "external": None,
        "cross_validation": None,
        "calibration": None,
        "registered": None,
        "not_registered_reason": error or "nothing to do",
        "error": error,
        "failed_step": "",
        "log_file": log_file,
        "exit_code": code,
        **extra,
    }


def _interval(fig: dict | None) -> str:
    return format_figure(fig) if fig else "-"


def _headline(result: dict) -> str:
    gate = (result["gate"]["outcome"] or "").upper()
    if result["registered"]:
        r = result["registered"]
        return f"gate: {gate}; registered {r['model']} version {r['version']} as @{r['alias']}"
    if gate:
        return f"gate: {gate}; nothing registered"
    where = f" at step {result['failed_step']}" if result.get("failed_step") else ""
    return f"FAILED{where}: nothing registered"


def next_steps(result: dict) -> list[str]:
    """The commands a person runs next, given how the run ended."""
    steps = []
    if result["run_url"]:
        local = result["run_url"].startswith("http://127.0.0.1:5000")
        steps.append(f"{'make ui, then open ' if local else 'open '}{result['run_url']}")
    if result["registered"]:
        r = result["registered"]
        steps.append(f"cxr serve --model models:/{r['model']}/{r['version']}")
        steps.append(f"cxr registry compare champion {r['version']}   (if a champion exists)")
        steps.append(f'cxr registry promote {r["version"]} --reason "..."   (release manager)')
    elif result["gate"]["advice"]:
        steps.append(result["gate"]["advice"])
    if result.get("failed_step") == "validate":
        steps.append("the data docs (every expectation, the failing files): validation/ in the run's validate step")
    if result["log_file"]:
        steps.append(f"full log: {result['log_file']}")
    return steps


def render_text(result: dict) -> list[str]:
    """The terminal summary: metrics with 95% intervals, the gate's decision and reason, what to do next."""
    lines = [""]
    run = result["run_name"] or "the run"
    data = f" · data {result['data_version'][:8]}" if result["data_version"] else ""
    took = f" in {result['duration_s']:.0f} s" if result.get("duration_s") else ""
    lines.append(f"{run} {result['status']}{took}{data}")
    if result["metrics"]:
        lines.append(f"  {'split':<6}{'n':>4}  {'F1':<19}{'accuracy':<19}{'sensitivity':<19}specificity")
        for split, m in result["metrics"].items():
            cells = "".join(f"{_interval(m.get(k)):<19}" for k in ("f1", "accuracy", "sensitivity"))
            lines.append(f"  {split:<6}{m['n']:>4}  {cells}{_interval(m.get('specificity'))}")
        extra = (*evidence_lines(result), predictive_line(result), input_gate_line(result), *safety_lines(result))
        lines.extend(f"  {line}" for line in extra if line)
    lines.append(_headline(result))
    if result["gate"]["reason"]:
        lines.append(f"  why: {result['gate']['reason']}")
    lines.append("next:")
    lines.extend(f"  {step}" for step in next_steps(result))
    return lines


def _link(result: dict) -> str:
    name = result["run_name"] or result["mlflow_run_id"] or "-"
    return f"[{name}]({result['run_url']})" if result["run_url"] else name


def render_markdown(result: dict) -> str:
    """A CI job summary (GitHub's $GITHUB_STEP_SUMMARY): data version, metrics, gate, link, confusion matrix."""
    out = [f"## Retraining: {_headline(result)}", ""]
    facts = [
        ("Orchestrator", result["orchestrator"]),
        ("Run", _link(result)),
        ("Status", result["status"]),
        ("Data version", f"`{result['data_version']}`" if result["data_version"] else "-"),
        ("Code", f"`{result['git_commit'][:12]}`" if result["git_commit"] else "-"),
    ]
    if result.get("kfp_run_id"):
        facts.append(("Kubeflow run", f"`{result['kfp_run_id']}`"))
    out += ["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in facts), ""]
    if result["metrics"]:
        out += ["| split | n | F1 | accuracy | sensitivity | specificity | ROC AUC |", "|---|---|---|---|---|---|---|"]
        for split, m in result["metrics"].items():
            cells = " | ".join(_interval(m.get(k)) for k in (*INTERVAL_METRICS, "roc_auc"))
            out.append(f"| {split} | {m['n']} | {cells} |")
        out += ["", "95% bootstrap intervals in brackets; the gate decides on validation, test is recorded.", ""]
        extra = (*evidence_lines(result), predictive_line(result), input_gate_line(result), *safety_lines(result))
        out += [f"{line}.\n" for line in extra if line]
    gate = result["gate"]
    decided = (gate["outcome"] or "not reached").upper()
    out.append(f"**Gate:** {decided}" + (f": {gate['reason']}" if gate["reason"] else ""))
    if gate["advice"]:
        out.append(f"\n**Next:** {gate['advice']}")
    if result["error"]:
        out.append(f"\n**Error:** {result['error']}")
    val = result["metrics"].get("val")
    if val:
        c = val["confusion"]
        out += [
            "",
            "Validation confusion matrix (COVID positive):",
            "",
            "| | predicted Normal | predicted COVID |",
            "|---|---|---|",
            f"| **Normal** | {c['tn']} | {c['fp']} |",
            f"| **COVID** | {c['fn']} | {c['tp']} |",
        ]
    return "\n".join(out) + "\n"


def dumps(result: dict) -> str:
    return json.dumps(result, indent=2, sort_keys=False)


def load_result(path: Path) -> dict:
    """A result file checked against the schema; CxrError (one sentence) when it is missing or malformed."""
    import jsonschema

    try:
        result = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise CxrError(
            f"{path} is not a run result ({exc.__class__.__name__}); the run that should have written it "
            "failed before it could: see its log."
        ) from exc
    try:
        jsonschema.validate(result, json.loads(SCHEMA_PATH.read_text()))
    except jsonschema.ValidationError as exc:
        raise CxrError(f"{path} does not follow {SCHEMA_ID} ({exc.message[:200]}); write it with `--json`.") from exc
    return result
