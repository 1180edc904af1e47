"""The external check: adult normal films from a source the model never saw (evaluate.external_dir).

None of them trains the classifier, so the share it calls normal is its specificity at another source,
the figure that says whether it learnt the lungs or the training sources' look (DeGrave et al., Nature
Machine Intelligence 2021). Reported with a Wilson interval, beside the share the shift warning flags
and the share the checks refuse; written to external_report.json.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cxr.data.images import decode_image
from cxr.data.lung_masks import external_files
from cxr.evaluation.live import proportion


def evaluate_external(classifier, folder: str | Path, out_dir: Path, batch: int = 32) -> dict:
    """Score every image of the external normals; returns (and writes) the report, {} when `folder` is "off"."""
    if str(folder) == "off":
        return {}
    files = external_files(folder)
    probabilities, warned, refused = [], [], []
    for start in range(0, len(files), batch):
        arrays = [decode_image(f.read_bytes(), f.name)[0] for f in files[start : start + batch]]
        p, features = classifier.assess_arrays(arrays)
        probabilities.append(p)
        warned.append(classifier.shift_flags(features))
        refused.append(classifier.refusals(features))
    p = np.concatenate(probabilities) if probabilities else np.zeros(0)
    normal = int(np.sum(p < classifier.config.threshold))
    report = {
        "folder": str(folder),
        "n": len(files),
        "threshold": float(classifier.config.threshold),
        "specificity": proportion(normal, len(files)),
        "shift_warned": proportion(int(np.sum(np.concatenate(warned))), len(files)) if warned else None,
        "refused": proportion(int(np.sum(np.concatenate(refused))), len(files)) if refused else None,
        "predictions": [{"file": f.name, "probability": float(q)} for f, q in zip(files, p, strict=True)],
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "external_report.json").write_text(json.dumps(report, indent=2))
    return report
