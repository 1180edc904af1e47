"""Kubeflow Pipelines components: thin shells over cxr.steps."""
