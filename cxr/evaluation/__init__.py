"""Measuring a model and its monitors: the metric registry, splits scored with intervals, thresholds,
cross-validation folds, the shortcut probe, the external check, live performance.

`__all__` names the modules other packages import.

Internal (imported only within the package): `plots`.
"""

__all__ = ["cross_validation", "external", "live", "metrics", "shortcut", "splits", "thresholds"]
