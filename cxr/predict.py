"""Prediction on files with any MLflow model URI; the same classifier object the web app uses."""

from __future__ import annotations

from pathlib import Path

from cxr.errors import CxrError, first_line


def load_classifier(model_uri: str):
    """MLflow model URI -> XrayClassifier, with one sentence when the URI does not resolve."""
    from mlflow.exceptions import MlflowException

    from cxr.pyfunc import load_pyfunc

    try:
        return load_pyfunc(model_uri)
    except (MlflowException, OSError) as exc:
        raise CxrError(
            f"Model {model_uri} cannot be loaded ({first_line(exc)}); check the URI "
            "(runs:/ID/model, models:/NAME@ALIAS, models:/NAME/N) and MLFLOW_TRACKING_URI."
        ) from exc


def predict_files(classifier, files: list[Path]) -> list[dict]:
    """One result per file: file, probability (of the positive class), label; or file and error."""
    from cxr.images import decode_image

    results, arrays, index = [], [], []
    for path in files:
        path = Path(path)
        try:
            if not path.is_file():
                raise CxrError(f"{path} does not exist; check the path.")
            arrays.append(decode_image(path.read_bytes(), str(path))[0])
            index.append(len(results))
            results.append({"file": str(path)})
        except CxrError as exc:
            results.append({"file": str(path), "error": str(exc)})
    for i, probability in zip(index, classifier.predict_arrays(arrays), strict=True):
        results[i].update(
            {
                "probability": round(float(probability), 6),
                "label": classifier.label_for(float(probability)),
                "threshold": float(classifier.config["threshold"]),
            }
        )
    return results
