"""cxr: the core library of the COVID-19 chest X-ray classifier. It knows nothing about Kubeflow.

Its subpackages are layered: a module imports only from its own subpackage and from those before it in
`LAYERS`, never from one after it (imports inside functions included; tests/unit/test_layers.py checks
it). Above the library: `components` (the Kubeflow components), then `pipelines`, then `cxr_cli`.
"""

__version__ = "0.1.0"

LAYERS = (
    "errors",  # CxrError: the one sentence a user sees
    "events",  # progress events
    "aliases",  # the registry's alias names
    "params",  # typed parameters (params.yaml)
    "data",  # images, manifests, validation, augmentation, lung views
    "model",  # the network, the lung segmenter, fitting one network
    "safety",  # input gate, scope check, drift reference: fitted on the model's features
    "evaluation",  # metrics, splits, thresholds, the shortcut probe, the external check
    "inference",  # the served classifier: preprocessing, scoring, Grad-CAM
    "training",  # the train stage: classifier, calibration, then the safety monitors
    "tracking",  # MLflow runs, the training signature
    "release",  # gate, card, registry, promotion, retraining
    "steps",  # the pipeline's steps as plain functions
    "serving",  # the web app
    "mlflow_auth",  # the MLflow server plug-in
)
PROJECT_LAYERS = ("cxr", "components", "pipelines", "cxr_cli")
