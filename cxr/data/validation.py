"""Data validation with great-expectations over the ingestion manifest; HTML data docs as the report.

The suite: every file decodes, minimum size, allowed modes, the label set is exactly the expected
classes, each class within share bounds, and no content (sha256) in two splits. A failed suite
raises a CxrError naming the offending files.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import great_expectations as gx
import great_expectations.expectations as gxe
from great_expectations.data_context.types.base import ProgressBarsConfig

from cxr.data.manifest import near_duplicate_groups
from cxr.errors import CxrError
from cxr.params import ValidateParams

SUITE_NAME = "cxr-manifest"
MAX_NAMED = 10


@dataclass
class ValidationOutcome:
    success: bool
    statistics: dict
    failures: list[str] = field(default_factory=list)  # one sentence per failed expectation

    def message(self) -> str:
        return "Data validation failed: " + " ".join(self.failures)


def add_derived_columns(frame, near_duplicate_bits: int = 20):
    """Columns the suite needs that are properties of groups: class share, splits per content hash, splits
    per near-duplicate group (recomputed here from the hashes, so a manifest split elsewhere is checked too)."""
    frame = frame.copy()
    frame["class_share"] = frame.groupby("label")["label"].transform("size") / max(len(frame), 1)
    frame["splits_per_content"] = frame.groupby("sha256")["split"].transform("nunique")
    hashes = frame["dhash256"].tolist() if "dhash256" in frame else [""] * len(frame)
    frame["near_duplicate_group"] = near_duplicate_groups(hashes, near_duplicate_bits)
    frame["splits_per_near_duplicate"] = frame.groupby("near_duplicate_group")["split"].transform("nunique")
    return frame


def build_expectations(params: ValidateParams) -> list:
    decodable = {"row_condition": "decodes==True", "condition_parser": "pandas"}
    return [
        gxe.ExpectColumnValuesToBeInSet(column="decodes", value_set=[True]),
        gxe.ExpectColumnValuesToBeBetween(column="width", min_value=params.min_width, **decodable),
        gxe.ExpectColumnValuesToBeBetween(column="height", min_value=params.min_height, **decodable),
        gxe.ExpectColumnValuesToBeInSet(column="mode", value_set=list(params.allowed_modes), **decodable),
        gxe.ExpectColumnDistinctValuesToEqualSet(column="label", value_set=list(params.expected_classes)),
        gxe.ExpectColumnValuesToBeBetween(
            column="class_share", min_value=params.min_class_share, max_value=params.max_class_share
        ),
        gxe.ExpectColumnValuesToBeBetween(column="splits_per_content", min_value=1, max_value=1),
        gxe.ExpectColumnValuesToBeBetween(column="splits_per_near_duplicate", min_value=1, max_value=1),
        gxe.ExpectColumnValuesToNotBeNull(column="split"),
    ]


def _describe_failure(result, frame) -> str:
    """One sentence for one failed expectation, naming up to MAX_NAMED offending files."""
    config = result.expectation_config
    kind, kwargs = config.type, config.kwargs
    column = kwargs.get("column")
    details = result.result or {}
    rows = details.get("unexpected_index_list") or []
    sources = []
    for row in rows:
        source = row.get("source") if isinstance(row, dict) else frame.iloc[row]["source"]
        if source not in sources:
            sources.append(source)
    if column == "decodes":
        errors = frame.loc[~frame["decodes"], "error"].tolist()
        return f"{len(errors)} file(s) do not decode: " + " ".join(errors[:MAX_NAMED])
    if column == "label":
        observed = sorted(set(frame["label"]))
        return (
            f"the classes are {observed} but validate.expected_classes is {list(kwargs['value_set'])}; "
            "fix the data folders or the params."
        )
    if column == "class_share":
        shares = frame.groupby("label")["class_share"].first().round(3).to_dict()
        return (
            f"class shares {shares} fall outside [{kwargs['min_value']}, {kwargs['max_value']}] "
            "(validate.min_class_share/max_class_share); rebalance the data or the bounds."
        )
    if column == "splits_per_content":
        return (
            f"identical files appear in more than one split (leakage): {', '.join(sources[:MAX_NAMED])}; "
            "remove the duplicates."
        )
    if column == "splits_per_near_duplicate":
        leaking = frame[frame["splits_per_near_duplicate"] > 1].sort_values("source")
        groups = [
            " = ".join(f"{r.source} ({r.split})" for r in group.itertuples())
            for _, group in leaking.groupby("near_duplicate_group")
        ]
        return (
            f"near-identical images sit in different splits (leakage): {'; '.join(groups[:MAX_NAMED])}; "
            "re-ingest (the splitter keeps them together) or remove the copies."
        )
    what = {
        "width": f"are narrower than {kwargs.get('min_value')} px (validate.min_width)",
        "height": f"are shorter than {kwargs.get('min_value')} px (validate.min_height)",
        "mode": f"have an image mode outside validate.allowed_modes {kwargs.get('value_set')}",
    }.get(column, f"fail {kind} on '{column}'")
    named = ", ".join(str(s) for s in sources[:MAX_NAMED])
    more = f" and {len(sources) - MAX_NAMED} more" if len(sources) > MAX_NAMED else ""
    return f"{len(sources)} file(s) {what}: {named}{more}; fix or remove them."


def validate_manifest(
    frame, params: ValidateParams, report_dir: str | Path | None = None, near_duplicate_bits: int = 20
) -> ValidationOutcome:
    """Run the suite over the manifest frame; write the HTML data docs (and results JSON) to report_dir."""
    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    frame = add_derived_columns(frame, near_duplicate_bits)
    with tempfile.TemporaryDirectory() as project:
        context = gx.get_context(mode="file", project_root_dir=project)
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        source = context.data_sources.add_pandas("manifest")
        asset = source.add_dataframe_asset("manifest")
        batch_definition = asset.add_batch_definition_whole_dataframe("all")
        suite = context.suites.add(gx.ExpectationSuite(name=SUITE_NAME))
        for expectation in build_expectations(params):
            suite.add_expectation(expectation)
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(data=batch_definition, suite=suite, name="manifest-validation")
        )
        checkpoint = context.checkpoints.add(
            gx.Checkpoint(
                name="manifest-checkpoint",
                validation_definitions=[definition],
                actions=[gx.checkpoint.UpdateDataDocsAction(name="data-docs")],
                result_format={"result_format": "COMPLETE", "unexpected_index_column_names": ["source"]},
            )
        )
        result = checkpoint.run(batch_parameters={"dataframe": frame})
        validation = next(iter(result.run_results.values()))
        if report_dir is not None:
            _copy_data_docs(Path(project), Path(report_dir), validation)
    failures = [_describe_failure(r, frame) for r in validation.results if not r.success]
    stats = dict(validation.statistics)
    return ValidationOutcome(success=bool(validation.success), statistics=stats, failures=failures)


def _copy_data_docs(project: Path, report_dir: Path, validation) -> None:
    site = next(project.rglob("data_docs/local_site"), None)
    report_dir.mkdir(parents=True, exist_ok=True)
    if site is not None:
        shutil.copytree(site, report_dir / "data_docs", dirs_exist_ok=True)
    (report_dir / "validation_result.json").write_text(json.dumps(validation.to_json_dict(), indent=2, default=str))


def report_index(report_dir: str | Path) -> Path | None:
    """The data docs page of the validation result (the HTML file a person opens)."""
    pages = sorted((Path(report_dir) / "data_docs" / "validations").rglob("*.html"))
    return pages[0] if pages else None


def require_valid(outcome: ValidationOutcome) -> None:
    if not outcome.success:
        raise CxrError(outcome.message())
