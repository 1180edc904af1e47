"""cxr: the core library of the COVID-19 chest X-ray classifier. It knows nothing about Kubeflow."""

__version__ = "0.1.0"
