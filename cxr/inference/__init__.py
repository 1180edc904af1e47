"""The served classifier: the MLflow pyfunc model and its loaders, scoring uploads, Grad-CAM heat maps.

`__all__` names the modules other packages import.
"""

__all__ = ["classifier", "gradcam", "scoring"]
