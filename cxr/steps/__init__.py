"""The pipeline's steps as plain functions, one module per step: core work + MLflow logging in a child run
of the pipeline run. Kubeflow components, DVC stages and the CLI call these; they hold no orchestration logic.

`__all__` names the modules other packages import.
"""

__all__ = ["augment", "context", "drift_check", "evaluate", "gate", "ingest", "register", "train", "validate"]
