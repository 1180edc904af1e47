"""The train step's lung half: fit the segmenter beside the classifier and write the lung views it trains on.

The segmenter (cxr/model/segmenter.py) is fitted on `lungs.masks_dir` and saved in the model folder
(lungs.keras, with its Dice in segmenter.json), so every path that loads the model segments and crops
exactly as training did. Its fit depends only on the masked films, the `lungs` parameters and the
segmenter's code, not on the COVID data: a fit is kept in a local cache under a digest of those three
(`$CXR_CACHE_DIR`, default `~/.cache/cxr`) and reused by the next train step with the same inputs, which
then gets the very same weights and report.

With a lung view (`lungs.view` crop or lungs, cxr/data/lung_view.py) the classifier is fitted on the lung
views of the dataset's images, written once to a folder that mirrors the dataset's files.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from cxr.data.images import decode_image, encode_png
from cxr.data.lung_masks import read_masked_films
from cxr.data.lung_view import lung_view
from cxr.model import segmenter as segmenter_code
from cxr.model.segmenter import SEGMENTER_FILE, Segmenter, fit_and_measure, plausible
from cxr.params import Params

SEGMENTER_REPORT = "segmenter.json"


def cache_root() -> Path:
    """Where fits are kept between runs: `$CXR_CACHE_DIR`, else `$XDG_CACHE_HOME/cxr`, else `~/.cache/cxr`."""
    if os.environ.get("CXR_CACHE_DIR"):
        return Path(os.environ["CXR_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cxr"


def fit_digest(names, films, masks, lp) -> str:
    """A digest of everything the segmenter's fit depends on: the masked films, the parameters, the code."""
    digest = hashlib.sha256()
    digest.update(json.dumps([lp.fit_share, lp.size, lp.epochs, lp.seed, keras.__version__, tf.__version__]).encode())
    digest.update(Path(segmenter_code.__file__).read_bytes())
    for name, film, mask in zip(names, films, masks, strict=True):
        for part in (name.encode(), str(film.shape).encode(), film.tobytes(), np.packbits(mask).tobytes()):
            digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()[:32]


def keep_fit(model_dir: Path, cached: Path) -> None:
    """Copy a fit into the cache, whole or not at all (concurrent train steps may write the same digest)."""
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=cached.parent, prefix=".partial-"))
        for name in (SEGMENTER_FILE, SEGMENTER_REPORT):
            shutil.copy2(model_dir / name, staging / name)
        try:
            staging.rename(cached)
        except OSError:  # another step kept the same fit first
            shutil.rmtree(staging, ignore_errors=True)
    except OSError:  # a read-only or full disk: the fit stands, it is only not kept
        pass


def fit_segmenter(params: Params, model_dir: str | Path) -> tuple[Segmenter, dict]:
    """Fit the lung segmenter on `lungs.masks_dir` (or take the cached fit of the same inputs), save it and its
    report in `model_dir`."""
    lp, model_dir = params.lungs, Path(model_dir)
    names, films, masks = read_masked_films(lp.masks_dir)
    cached = cache_root() / "segmenter" / fit_digest(names, films, masks, lp)
    if (cached / SEGMENTER_REPORT).is_file():
        for name in (SEGMENTER_FILE, SEGMENTER_REPORT):
            shutil.copy2(cached / name, model_dir / name)
        return Segmenter.load(model_dir / SEGMENTER_FILE), json.loads((model_dir / SEGMENTER_REPORT).read_text())
    segmenter, report = fit_and_measure(names, films, masks, lp.fit_share, lp.size, lp.epochs, lp.seed)
    segmenter.save(model_dir)
    (model_dir / SEGMENTER_REPORT).write_text(json.dumps(report, indent=2))
    keep_fit(model_dir, cached)
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
