"""Release management on the MLflow registry: list, show, promote, roll back, history, model cards.

Every promotion and rollback is recorded as `release.event.<time>` tags (JSON: id, status, action,
version, from_version, by, at, reason, forced) on the version that became champion, so the history is
read back from the registry itself: an `intent` event before the alias moves, then `done` (or
`failed`) after, so a failure in between still leaves a trace of what was about to change. Aliases
are read again just before and after each write, so a concurrent promotion is detected and reported
instead of silently overwritten.

Whether a version passed the gate is read from the pipeline run that produced it (its gate step's
`gate.json` artifact and the run's validation F1), not from the version's `gate.*` tags, which anyone
with write access to the registry can change: a tag that disagrees with the record refuses promotion.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import secrets

import mlflow
from mlflow.exceptions import MlflowException

from cxr.aliases import CHAMPION, PREVIOUS_CHAMPION
from cxr.errors import CxrError
from cxr.release.card import card_problems
from cxr.release.gate import disagreement, evidence_from_tags
from cxr.release.registry import alias_version, client
from cxr.tracking.record import (
    GATE_CANDIDATE_F1,
    GATE_OUTCOME,
    GATE_PASSED,
    GATE_PREFIX,
    REGISTERED_BY,
    GateRecord,
    Lineage,
    registered_version,
)
from cxr.tracking.runs import refusal, ui_url

EVENT_PREFIX = "release.event."
LIST_FIELDS = ("version", "aliases", "val_f1", "test_f1", "data_version", "git_commit", "created", "registered_by")


def resolve_version(name: str, ref: str):
    """A version number or an alias ('champion', 'challenger', ...) -> ModelVersion."""
    ref = str(ref).lstrip("v") if str(ref).lstrip("v").isdigit() else str(ref)
    try:
        if ref.isdigit():
            return client().get_model_version(name, ref)
        return client().get_model_version_by_alias(name, ref.lstrip("@"))
    except MlflowException as exc:
        raise CxrError(
            f"'{ref}' is not a version or alias of registered model '{name}'; see `cxr registry list`."
        ) from exc


def _created(mv) -> str:
    return datetime.datetime.fromtimestamp(mv.creation_timestamp / 1000, datetime.UTC).isoformat(timespec="seconds")


def aliases_by_version(name: str) -> dict[str, list[str]]:
    """Version -> its aliases, from the registered model (search results do not always carry aliases)."""
    out: dict[str, list[str]] = {}
    for alias, version in (client().get_registered_model(name).aliases or {}).items():
        out.setdefault(str(version), []).append(alias)
    return {v: sorted(a) for v, a in out.items()}


def list_versions(name: str) -> list[dict]:
    try:
        versions = client().search_model_versions(f"name='{name}'")
    except MlflowException as exc:
        raise CxrError(
            refusal(exc)
            or f"Registered model '{name}' cannot be read ({exc.__class__.__name__}); check MLFLOW_TRACKING_URI."
        ) from exc
    holders = aliases_by_version(name)
    rows = []
    for mv in sorted(versions, key=lambda v: int(v.version), reverse=True):
        lineage = Lineage.from_tags(mv.tags)
        rows.append(
            {
                "version": str(mv.version),
                "aliases": holders.get(str(mv.version), []),
                "val_f1": with_interval(evidence_from_tags(mv.tags, "val")),
                "test_f1": with_interval(evidence_from_tags(mv.tags, "test")),
                "val_accuracy": mv.tags.get("val_accuracy", ""),
                "gate": GateRecord.from_tags(mv.tags).outcome,
                "warning": disagreement(evidence_from_tags(mv.tags, "val"), evidence_from_tags(mv.tags, "test")),
                "data_version": lineage.data_version,
                "git_commit": lineage.git_commit,
                "created": _created(mv),
                "registered_by": mv.tags.get(REGISTERED_BY) or mv.user_id or "",
            }
        )
    return rows


def with_interval(evidence: dict | None) -> str:
    """'0.889 (0.57-1.00)' from a version's F1 evidence; '' without one."""
    if evidence is None:
        return ""
    try:
        return f"{float(evidence['f1']):.3f} ({float(evidence['f1_low']):.2f}-{float(evidence['f1_high']):.2f})"
    except ValueError:
        return str(evidence["f1"])


def format_table(rows: list[dict]) -> str:
    if not rows:
        return "(no versions)"
    cells = [[", ".join(v) if isinstance(v, list) else str(v)[:40] for v in (r[f] for f in LIST_FIELDS)] for r in rows]
    widths = [max(len(f), *(len(c[i]) for c in cells)) for i, f in enumerate(LIST_FIELDS)]
    lines = ["  ".join(f.ljust(w) for f, w in zip(LIST_FIELDS, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(cell, widths, strict=True)) for cell in cells]
    lines += [f"warning v{r['version']}: {r['warning']}" for r in rows if r.get("warning")]
    return "\n".join(lines)


def run_link(run_id: str) -> str:
    uri = mlflow.get_tracking_uri()
    if not run_id:
        return ""
    run = client().get_run(run_id)
    if uri.startswith("http"):
        return ui_url(uri, run.info.experiment_id, run_id)
    return f"run {run_id} in experiment {run.info.experiment_id} (open with `make ui`)"


def show_version(name: str, ref: str) -> dict:
    mv = resolve_version(name, ref)
    tags = dict(mv.tags)
    return {
        "name": name,
        "version": str(mv.version),
        "aliases": aliases_by_version(name).get(str(mv.version), []),
        "created": _created(mv),
        "source": mv.source,
        "run_id": Lineage.from_tags(tags).run_id or mv.run_id or "",
        "run_link": run_link(Lineage.from_tags(tags).run_id),
        "gate": GateRecord.from_tags(tags).as_dict(),
        "evidence": {
            "val_f1": with_interval(evidence_from_tags(tags, "val")),
            "test_f1": with_interval(evidence_from_tags(tags, "test")),
            "warning": disagreement(evidence_from_tags(tags, "val"), evidence_from_tags(tags, "test")),
        },
        "tags": {k: v for k, v in sorted(tags.items()) if not k.startswith((GATE_PREFIX, EVENT_PREFIX))},
        "events": [json.loads(v) for k, v in sorted(tags.items()) if k.startswith(EVENT_PREFIX)],
    }


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="microseconds")


def _record(name: str, version: str, event: dict) -> None:
    key = EVENT_PREFIX + datetime.datetime.fromisoformat(event["at"]).strftime("%Y%m%dT%H%M%S%fZ")
    client().set_model_version_tag(name, version, key, json.dumps(event, sort_keys=True))


def _claim(name: str, action: str) -> str:
    """Write a fresh token to the registered model and read it back: a concurrent writer shows up as
    a different token (best effort: MLflow has no compare-and-set)."""
    token = f"{action}-{secrets.token_hex(8)}"
    client().set_registered_model_tag(name, "release.lock", token)
    if client().get_registered_model(name).tags.get("release.lock") != token:
        raise CxrError(f"Another promotion or rollback of '{name}' is in progress; nothing was changed. Retry.")
    return token


def _check_unchanged(name: str, alias: str, expected: str | None, token: str) -> None:
    now = alias_version(name, alias)
    now_v = None if now is None else str(now.version)
    if now_v != expected or client().get_registered_model(name).tags.get("release.lock") != token:
        raise CxrError(
            f"@{alias} of '{name}' changed to v{now_v or '-'} while this command ran (it read "
            f"v{expected or '-'}): a concurrent promotion. Nothing more was changed; check "
            "`cxr registry history` and retry."
        )


def _move_champion(name: str, target: str, before: str | None, token: str) -> None:
    """@champion -> target, the champion it replaces -> @previous-champion, checked before and after."""
    _check_unchanged(name, CHAMPION, before, token)
    if before is not None:
        client().set_registered_model_alias(name, PREVIOUS_CHAMPION, before)
    client().set_registered_model_alias(name, CHAMPION, target)
    _check_unchanged(name, CHAMPION, target, token)


def recorded_gate(mv) -> dict | None:
    """The gate decision recorded by the pipeline run that produced version `mv`: the gate step's
    `gate.json` under the run MLflow itself names as the model's source (`mv.run_id`, not a tag), or
    None when there is no such record (a version registered by hand)."""
    if not mv.run_id:
        return None
    c = client()
    source = c.get_run(mv.run_id)
    parent_id = source.data.tags.get("mlflow.parentRunId") or mv.run_id
    parent = c.get_run(parent_id)
    if registered_version(parent.data.tags) != str(mv.version):
        return None  # the run's model, registered again by hand: the gate did not register this version
    gates = c.search_runs(
        [source.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_id}' and tags.step = 'gate'"
    )
    if not gates:
        return None
    try:
        record = json.loads(mlflow.artifacts.load_text(f"runs:/{gates[0].info.run_id}/gate.json"))
    except Exception:  # no artifact, or unreadable: no record
        return None
    record["val_f1_logged"] = parent.data.metrics.get("val_f1")
    return record


def verify_gate(name: str, mv) -> tuple[bool, str]:
    """(passed, why) from the recorded gate; CxrError when the version's tags claim another decision."""
    version = str(mv.version)
    record = recorded_gate(mv)
    gate = GateRecord.from_tags(mv.tags)
    if record is None:
        if gate.passed:
            raise CxrError(
                f"Version {version} of '{name}' is tagged as having passed the gate, but no pipeline run records "
                "a gate decision for it: the tag was set by hand. Promotion refused; investigate, or use "
                "--force with --reason (recorded)."
            )
        return False, gate.reason or "it has no gate record (registered outside the pipeline)"
    passed = record.get("outcome") == "passed"
    changed = []
    if gate.passed is not None and gate.passed != passed:
        changed.append(GATE_PASSED)
    if mv.tags.get(GATE_OUTCOME) is not None and gate.outcome != record.get("outcome", ""):
        changed.append(GATE_OUTCOME)
    tagged_f1, logged_f1 = gate.figures.get("candidate_f1"), record.get("val_f1_logged")
    if tagged_f1 and abs(float(tagged_f1) - float(record.get("candidate_f1", "nan"))) > 1e-6:
        changed.append(GATE_CANDIDATE_F1)
    if logged_f1 is not None and abs(float(logged_f1) - float(record.get("candidate_f1", "nan"))) > 1e-6:
        changed.append("the run's val_f1")
    if changed:
        raise CxrError(
            f"Version {version} of '{name}': {', '.join(changed)} disagree(s) with the gate record of the run that "
            f"produced it (recorded outcome: {record.get('outcome')}); a tag was changed after registration. "
            "Promotion refused; investigate, or use --force with --reason (recorded)."
        )
    return passed, record.get("reason", "")


def card_of(mv) -> dict | None:
    """The version's model card as JSON (tag `model_card_json`), or None when it has none or it is unreadable."""
    uri = mv.tags.get("model_card_json")
    if not uri:
        return None
    try:
        return json.loads(mlflow.artifacts.load_text(uri))
    except Exception:  # a missing artifact or broken JSON: no usable card
        return None


def promote(name: str, ref: str, reason: str, by: str, force: bool = False, _after_read=None) -> dict:
    """Move @champion to a version (previous champion -> @previous-champion). Refused when the version
    did not pass the F1 gate by its recorded decision, or its model card is incomplete (the clinician's
    fields of card.schema.json), unless `force` (the override is recorded)."""
    if not reason.strip():
        raise CxrError('A promotion needs --reason "..." saying why; it is kept in the history.')
    mv = resolve_version(name, ref)
    version = str(mv.version)
    try:
        passed, why = verify_gate(name, mv)
    except CxrError:
        if not force:
            raise
        passed, why = False, "its gate tags disagree with the recorded gate"
    if not passed and not force:
        raise CxrError(
            f"Version {version} did not pass the F1 gate ({why}); promotion refused. "
            "Use --force with --reason to override (the override is recorded)."
        )
    problems = card_problems(card_of(mv))  # what the card lacks against card.schema.json
    if problems and not force:
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        raise CxrError(
            f"Version {version}'s model card is incomplete ({shown}); promotion refused. Register the model "
            "through the pipeline, which writes a complete card, or use --force with --reason (recorded)."
        )
    current = alias_version(name, CHAMPION)
    before = None if current is None else str(current.version)
    if before == version:
        raise CxrError(f"Version {version} already holds @{CHAMPION}.")
    token = _claim(name, "promote")
    if _after_read is not None:
        _after_read()
    event = {
        "action": "promote",
        "version": version,
        "from_version": before,
        "by": by,
        "reason": reason,
        "forced": bool(force and (not passed or problems)),
        "gate_passed": passed,
        "card_complete": not problems,
    }
    return _audited(name, event, lambda: _move_champion(name, version, before, token))


def rollback(name: str, reason: str, by: str) -> dict:
    """Put @champion back on @previous-champion (the version it replaced moves to @previous-champion)."""
    if not reason.strip():
        raise CxrError('A rollback needs --reason "..." saying why; it is kept in the history.')
    previous = alias_version(name, PREVIOUS_CHAMPION)
    if previous is None:
        raise CxrError(f"'{name}' has no @{PREVIOUS_CHAMPION} to roll back to; use `cxr registry promote` instead.")
    current = alias_version(name, CHAMPION)
    before = None if current is None else str(current.version)
    token = _claim(name, "rollback")
    target = str(previous.version)
    event = {"action": "rollback", "version": target, "from_version": before, "by": by, "reason": reason}
    return _audited(name, {**event, "forced": False}, lambda: _move_champion(name, target, before, token))


def _audited(name: str, event: dict, move) -> dict:
    """Record the intent, move the alias, record the outcome (done, or failed with the error)."""
    event = {**event, "id": secrets.token_hex(6)}
    _record(name, event["version"], {**event, "status": "intent", "at": _now()})
    try:
        move()
    except Exception as exc:
        with contextlib.suppress(Exception):  # the store may be the thing that failed
            _record(name, event["version"], {**event, "status": "failed", "at": _now(), "error": str(exc)[:500]})
        if getattr(exc, "error_code", "") == "PERMISSION_DENIED":  # the server's sentence, without the trace
            raise CxrError(f"{getattr(exc, 'message', exc)} Nothing was changed.") from exc
        raise
    done = {**event, "status": "done", "at": _now()}
    _record(name, event["version"], done)
    return done


def history(name: str) -> list[dict]:
    """Every promotion and rollback, oldest first: one entry each, with its outcome (`done`, `failed`,
    or `incomplete` when only the intent was recorded: the alias may or may not have moved)."""
    events = []
    for mv in client().search_model_versions(f"name='{name}'"):
        events += [json.loads(v) for k, v in mv.tags.items() if k.startswith(EVENT_PREFIX)]
    events.sort(key=lambda e: e["at"])
    merged: dict[str, dict] = {}
    for e in events:
        key = e.get("id") or e["at"]  # events recorded before intents existed have no id
        if e.get("status") == "intent":
            merged.setdefault(key, {**e, "status": "incomplete"})
        else:
            merged[key] = {**e, "at": merged.get(key, e)["at"], "status": e.get("status", "done")}
    return sorted(merged.values(), key=lambda e: e["at"])


def release_problem(name: str, version: str) -> str:
    """Why the version holding @champion is not a release ("" when it is): the last move of @champion
    in the history that did not fail (`cxr registry promote` or `rollback`, which check the gate and the card and
    record who and why) must have put it there. A move made anywhere else (the MLflow UI, the API) is not."""
    return _release_problem(version, _releases(history(name)))


def released_version(name: str):
    """(the ModelVersion to deploy, why @champion's version is not it): @champion's when a release command put
    it there ('' as the reason); the last release's when @champion was moved outside the release process (as
    the web app keeps serving it); None when nothing holds @champion, or when no release ever did."""
    champion = alias_version(name, CHAMPION)
    if champion is None:
        return None, ""
    releases = _releases(history(name))
    problem = _release_problem(str(champion.version), releases)
    if not problem:
        return champion, ""
    return (client().get_model_version(name, str(releases[-1]["version"])) if releases else None), problem


def _releases(events: list[dict]) -> list[dict]:
    """The moves of @champion the release commands made: done, or under way (`incomplete`: promote records
    its intent, after its checks, before it moves the alias, and the alias webhook can arrive before the
    `done` record does); not the failed ones."""
    return [e for e in events if e.get("status") in ("done", "incomplete")]


def _release_problem(version: str, releases: list[dict]) -> str:
    if not releases:
        return (
            f"version {version} holds @{CHAMPION}, but no `cxr registry promote` put it there: the alias was "
            "moved outside the release process"
        )
    last = releases[-1]
    if str(last["version"]) != str(version):
        return (
            f"version {version} holds @{CHAMPION}, but the last release (`cxr registry {last['action']}` by "
            f"{last['by']}) put version {last['version']} there: the alias was moved outside the release process"
        )
    return ""


def out_of_band(name: str, events: list[dict]) -> dict | None:
    """The current @champion as a history entry when it was not put there by a release (see
    `release_problem`); None when it was, or when nothing holds @champion. `events`: `history(name)`."""
    current = alias_version(name, CHAMPION)
    releases = _releases(events)
    if current is None or not _release_problem(str(current.version), releases):
        return None
    return {
        "action": "moved",
        "version": str(current.version),
        "from_version": releases[-1]["version"] if releases else None,
        "by": "unknown",
        "reason": "outside the release process: not served",
        "status": "out-of-band",
        "at": _now(),
    }


def model_card(name: str, ref: str) -> str:
    mv = resolve_version(name, ref)
    uri = mv.tags.get("model_card")
    if not uri:
        raise CxrError(f"Version {mv.version} has no model card (registered outside the pipeline).")
    return mlflow.artifacts.load_text(uri)
