"""Kubeflow Pipelines components: thin shells over the step functions in cxr/steps/."""
