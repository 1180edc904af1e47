"""The train stage: the classifier fitted, calibrated and configured (`classifier`, cross-validated by
`folds`), then the safety monitors beside it (`monitors`); `run.train_model` runs the two.

`__all__` names the modules other packages import, and `train_model`, the stage's entry point.
"""

from cxr.training.run import train_model

__all__ = ["classifier", "folds", "monitors", "run", "train_model"]
