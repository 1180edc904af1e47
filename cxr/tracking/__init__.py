"""MLflow tracking: the pipeline run and its step runs, the run record (what a run records, typed),
credentials, the training signature.

`__all__` names the modules other packages import.
"""

__all__ = ["credentials", "record", "runs", "signature"]
