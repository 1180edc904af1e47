"""The web app for radiologists (Flask): upload page, JSON API, health endpoints.

`__all__` names the modules other packages import. Internal (imported only within the package):
`batching`, `cpu_threads`, `openapi`, `prometheus`.
"""

__all__ = ["app", "auth", "model_store", "open_inference", "records", "webhook"]
