"""Does the head read better from where in the lungs a block responds? Whole-map block statistics
against statistics over each zone of a 3 x 2 grid of the lungs' box, measured.

The default view (`lungs.view: crop`: the film cropped to its lung fields, equalised within them) of a
dataset, of its test split with the lungs hidden and of the external normals goes through the frozen
VGG16 once; the per-channel mean and standard deviation (log1p) of blocks 3-5 are kept over the whole map
and over each zone (upper, middle, lower third of each half: `train.stat_zones: [3, 2]`), as the
model's own layers compute them, cached. On a
stratified 60/20/20 split (as bench/lung_view_study.py), for each feature set and each probe strength C,
a logistic regression: validation log loss (what chooses), test F1 at the validation's max-F1 threshold,
test ROC AUC, the shortcut probe (test AUC with the lungs hidden: as the product hides them, in the film,
and in the view as served, `hidden_in_view`) and the external normals' specificity at
the validation threshold and at the threshold keeping test sensitivity >= 0.90. Then the pipeline's own
head (SGD, momentum 0.9, batch 64, the epoch of lowest validation log loss out of 100) on the zone
features at learning rates 0.01 and 0.001.

    python bench/zone_study.py --data ../shared/data/covid-radiography-more [--view crop] [--size 224]
`--view` is one of bench/lung_view_study.py's views (default `crop_eq`, the product's `crop`).
Last line: `ratio:` test F1 of the zone features / of the whole-map features, each at its C of lowest
validation log loss.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import keras
import numpy as np
from lung_view_study import (
    batched,
    cached,
    hide_lungs,
    load_dataset,
    load_external,
    lungs_in_view,
    threshold_for_sensitivity,
    views,
)
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score, log_loss, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from cxr.model.architecture import build_model, standardise_on
from cxr.model.block_stats import CHANNELS, build_scorer
from cxr.model.segmenter import Segmenter
from cxr.params import TrainParams

GRID = np.linspace(0.05, 0.95, 91)


def head_input(size: int):
    """The frozen base (HED VGG16, caffe input) with the CPU profile's head input over a 3 x 2 grid: the
    product's own layers (cxr.model.layers.ChannelStatistics), blocks 3-5, from `build_scorer(pooled=True)`.
    A function of a list of uint8 films (any size, grey or RGB), 32 at a time."""
    scorer = build_scorer(build_model(TrainParams(image_size=size, stat_zones=(3, 2))), pooled=True)
    return batched(size, lambda batch: np.asarray(scorer.predict_on_batch(batch)[1], np.float64))


def split(seed: int, y):
    """The studies' stratified 60/20/20 split: train, validation, test indices."""
    train, rest = train_test_split(np.arange(len(y)), test_size=0.4, stratify=y, random_state=seed)
    val, test = train_test_split(rest, test_size=0.5, stratify=y[rest], random_state=seed)
    return train, val, test


def hidden_in_view(view: str, films, seg) -> list:
    """Each film's `view` with the (dilated) lung fields in it then filled with the view's mean grey: what the
    model can read outside the lungs of the view as served, its standardisation taken from the real lungs
    (the product's probe hides the lungs first, so a view standardised within the lungs sees a flat grey
    there and maps the rest of the film through a step)."""
    masks = seg.masks(films)
    return [hide_lungs(v, lungs_in_view(m)) for v, m in zip(views(view, films, seg, masks), masks, strict=True)]


def columns() -> dict[str, list[int]]:
    """Feature sets by column: per block [mean C, std C] over the map, then (mean C, std C) for each zone."""
    sets, offset = {"whole map": [], "zones": []}, 0
    for c in CHANNELS[2:]:  # blocks 3-5
        sets["whole map"] += range(offset, offset + 2 * c)
        sets["zones"] += range(offset, offset + 14 * c)
        offset += 14 * c
    return sets


def report(name: str, y, p: dict, val, test) -> dict:
    t_val = GRID[np.argmax([f1_score(y[val], p["x"][val] >= t) for t in GRID])]
    t_sens = threshold_for_sensitivity(y[test], p["x"][test])
    res = {
        "val_log_loss": log_loss(y[val], np.clip(p["x"][val], 1e-7, 1 - 1e-7)),
        "test_f1": f1_score(y[test], p["x"][test] >= t_val),
        "test_auc": roc_auc_score(y[test], p["x"][test]),
        "hidden_auc": roc_auc_score(y[test], p["hid"]),
        "ext_spec_val_t": float(np.mean(p["ext"] < t_val)),
        "ext_spec_sens90": float(np.mean(p["ext"] < t_sens)),
    }
    if "hidv" in p:
        res["hidden_in_view_auc"] = roc_auc_score(y[test], p["hidv"])
    print(f"{name:32s} " + " ".join(f"{k} {v:.3f}" for k, v in res.items()), flush=True)
    return res


def sgd_head(x: dict, y, train, val, lr: float, l2: float = 0.1, epochs: int = 100):
    """The pipeline's linear head on standardised features (`standardise_on`: the training images', each
    variance floored at 1% of the median): the epoch of lowest validation log loss. Returns its
    probabilities for each of `x` and the head (Normalization, Dense)."""
    z = {k: v.astype(np.float32) for k, v in x.items()}
    standardise = keras.layers.Normalization()
    standardise_on(standardise, z["x"][train])
    keras.utils.set_random_seed(42)
    head = keras.Sequential(
        [
            keras.Input((z["x"].shape[1],)),
            standardise,
            keras.layers.Dense(1, "sigmoid", kernel_initializer="zeros", kernel_regularizer=keras.regularizers.L2(l2)),
        ]
    )
    head.compile(keras.optimizers.SGD(lr, momentum=0.9), "binary_crossentropy")
    best = (np.inf, None)
    for _ in range(epochs):
        head.fit(z["x"][train], y[train], batch_size=64, epochs=1, shuffle=True, verbose=0)
        loss = log_loss(y[val], np.clip(head.predict(z["x"][val], verbose=0).ravel(), 1e-7, 1 - 1e-7))
        best = min(best, (loss, [w.copy() for w in head.get_weights()]), key=lambda b: b[0])
    head.set_weights(best[1])
    return {k: head.predict(v, verbose=0).ravel() for k, v in z.items()}, head


def study_setup(description: str, **options):
    """The studies' arguments (--data, --size, --cache, and `options`: name -> default), the dataset's films
    and labels, the external normals and the lung segmenter fitted on half of them (seed 0, as the product's
    default)."""
    parser = argparse.ArgumentParser(description=description)
    for name, default in options.items():
        parser.add_argument(f"--{name}", type=type(default), default=default)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--size", type=int, default=176)
    parser.add_argument("--cache", type=Path, default=Path(".cache/zone-study"))
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    films, y = load_dataset(args.data)
    ext_films, ext_masks = load_external()
    fit = np.random.default_rng(0).permutation(len(ext_films))[: len(ext_films) // 2]
    seg = Segmenter.fit([ext_films[i] for i in fit], [ext_masks[i].astype(np.uint8) * 255 for i in fit], 64, 80, 0)
    return args, films, y, ext_films, seg


def main() -> None:
    args, films, y, ext_films, seg = study_setup(__doc__.splitlines()[0], view="crop_eq")
    train, val, test = split(42, y)
    hidden = [hide_lungs(films[i], m) for i, m in zip(test, seg.masks([films[i] for i in test]), strict=True)]
    features = head_input(args.size)
    view = "" if args.view == "crop_eq" else f"{args.view}-"  # the default view's caches keep their names
    key = f"{args.size}-{args.data.name}"
    x = cached(args.cache, f"{view}x-{key}", lambda: features(views(args.view, films, seg)))
    xe = cached(args.cache, f"{view}ext-{args.size}", lambda: features(views(args.view, ext_films, seg)))
    xh = cached(args.cache, f"{view}hidden-{key}", lambda: features(views(args.view, hidden, seg)))
    test_films = [films[i] for i in test]
    xv = cached(args.cache, f"{view}hidden-in-view-{key}", lambda: features(hidden_in_view(args.view, test_films, seg)))
    chosen = {}
    for name, cols in columns().items():
        runs = []
        for c in (0.001, 0.003, 0.01, 0.05):
            scaler = StandardScaler().fit(x[train][:, cols])
            model = LogisticRegression(C=c, max_iter=5000).fit(scaler.transform(x[train][:, cols]), y[train])
            sets = (("x", x), ("ext", xe), ("hid", xh), ("hidv", xv))
            p = {k: model.predict_proba(scaler.transform(v[:, cols]))[:, 1] for k, v in sets}
            runs.append(report(f"{name}, C {c}", y, p, val, test))
        chosen[name] = min(runs, key=lambda r: r["val_log_loss"])
    zones = columns()["zones"]
    for lr in (0.01, 0.001):
        inputs = {"x": x[:, zones], "ext": xe[:, zones], "hid": xh[:, zones], "hidv": xv[:, zones]}
        p, _ = sgd_head(inputs, y, train, val, lr)
        report(f"zones, pipeline head, lr {lr}", y, p, val, test)
    print(f"ratio: {chosen['zones']['test_f1'] / chosen['whole map']['test_f1']:.2f}")


if __name__ == "__main__":
    main()
