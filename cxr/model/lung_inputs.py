"""The train step's lung half: fit the segmenter beside the classifier and write the lung views it trains on.

The segmenter (cxr/model/segmenter.py) is fitted on `lungs.masks_dir` and saved in the model folder
(lungs.keras, with its Dice in segmenter.json), so every path that loads the model segments and crops
exactly as training did. With a lung view (`lungs.view` crop or lungs, cxr/data/lung_view.py) the
classifier is fitted on the lung views of the dataset's images, written once to a folder that mirrors
the dataset's files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cxr.data.images import decode_image, encode_png
from cxr.data.lung_masks import read_masked_films
from cxr.data.lung_view import lung_view
from cxr.model.segmenter import Segmenter, fit_and_measure, plausible
from cxr.params import Params

SEGMENTER_REPORT = "segmenter.json"


def fit_segmenter(params: Params, model_dir: str | Path) -> tuple[Segmenter, dict]:
    """Fit the lung segmenter on `lungs.masks_dir`, save it and its report in `model_dir`."""
    lp = params.lungs
    names, films, masks = read_masked_films(lp.masks_dir)
    segmenter, report = fit_and_measure(names, films, masks, lp.fit_share, lp.size, lp.epochs, lp.seed)
    segmenter.save(model_dir)
    (Path(model_dir) / SEGMENTER_REPORT).write_text(json.dumps(report, indent=2))
    return segmenter, report


def write_views(segmenter: Segmenter, dataset_dir, files, dest, view: str, equalise: bool, batch: int = 32) -> float:
    """Each of `files` (relative to `dataset_dir`) as its lung view, PNG, at the same relative path under
    `dest`; returns the share of films where the segmenter found plausible lung fields."""
    found = []
    files = list(files)
    for start in range(0, len(files), batch):
        names = files[start : start + batch]
        films = [decode_image((Path(dataset_dir) / f).read_bytes(), f)[0] for f in names]
        for name, film, mask in zip(names, films, segmenter.masks(films), strict=True):
            target = Path(dest) / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(encode_png(lung_view(film, mask, equalise, mask_outside=view == "lungs")))
            found.append(plausible(mask))
    return float(np.mean(found)) if found else float("nan")
