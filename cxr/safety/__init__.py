"""The safety monitors fitted beside a model: the input gate, the population scope check, DICOM header
rules, the drift reference and report, the offline out-of-distribution set.

`__all__` names the modules other packages import.
"""

__all__ = ["dicom_scope", "drift", "drift_report", "input_gate", "ood_set", "population"]
