"""Releasing models: the promotion gate, registration, promotion and rollback, comparison, the model
card, retraining decisions.

`__all__` names the modules other packages import.
"""

__all__ = ["card", "compare", "gate", "kserve", "promotion", "registry", "retrain"]
