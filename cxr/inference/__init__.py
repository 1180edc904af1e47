"""The served classifier: the MLflow pyfunc model and its loaders, scoring uploads, Grad-CAM heat maps, and
the frozen base's pass converted to OpenVINO (runtime), which training builds and logs with the model.

`__all__` names the modules other packages import.
"""

__all__ = ["classifier", "gradcam", "runtime", "scoring"]
