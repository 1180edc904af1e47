"""MLflow tracking: the pipeline run and its step runs, credentials, the training signature.

`__all__` names the modules other packages import.
"""

__all__ = ["credentials", "runs", "signature"]
