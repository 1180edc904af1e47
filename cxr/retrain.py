"""Retraining on new data: run the pipeline only when data.dvc names data no registered version used."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RetrainDecision:
    run: bool
    data_version: str
    newest_version: str | None
    newest_data_version: str | None
    message: str


def newest_version(name: str):
    """The registered version with the highest number, or None (no model or no versions yet)."""
    from mlflow.exceptions import MlflowException

    from cxr.registry import client

    try:
        versions = client().search_model_versions(f"name='{name}'")
    except MlflowException:
        return None
    return max(versions, key=lambda v: int(v.version), default=None)


def decide_retrain(data_version: str, newest, force: bool = False) -> RetrainDecision:
    """Pure: retrain when forced, when nothing is registered, or when the newest version used other data."""
    newest_number = None if newest is None else str(newest.version)
    newest_data = None if newest is None else newest.tags.get("data_version")
    if force:
        return RetrainDecision(True, data_version, newest_number, newest_data, "retraining (--force)")
    if newest is None:
        return RetrainDecision(True, data_version, None, None, "no registered version yet: training")
    if newest_data == data_version:
        return RetrainDecision(
            False,
            data_version,
            newest_number,
            newest_data,
            f"version {newest_number} already used data {data_version}; nothing to do",
        )
    return RetrainDecision(
        True,
        data_version,
        newest_number,
        newest_data,
        f"data changed: {newest_data} (version {newest_number}) -> {data_version}: retraining",
    )
