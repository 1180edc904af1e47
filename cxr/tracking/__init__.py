"""MLflow tracking: the pipeline run and its step runs, the run record (what a run records, typed), the
run's data splits as MLflow datasets, credentials, the training signature.

`__all__` names the modules other packages import.
"""

__all__ = ["credentials", "datasets", "record", "runs", "signature"]
