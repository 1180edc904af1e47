"""Do cheap remedies against the source shortcut raise the specificity at another source? Measured on the
default zone features (bench/zone_study.py), with the external normals used only to score.

The default view (`crop`: the film cropped to its lung fields, equalised within them) and the `lungs` view
(cropped, black outside the lung fields, not equalised) of a dataset go through the frozen VGG16 once
each, as do the whole films with their lung fields hidden (as they are and in each view); the CPU
profile's block statistics of blocks 3-5 over the lungs' box and its 3 x 2 zones are cached (the zone
study's cache: its crop-view features are reused). On the zone study's stratified 60/20/20 split, a
logistic regression on standardised features, its strength C chosen on validation log loss, for:

1. feature variants of the crop view: each zone relative to its whole map (zone minus whole, in the log
   domain; with and without the whole map), left and right zones summed and differenced, channel means
   only, standard deviations only, blocks 4-5 only;
2. propensity weighting against the source: P(COVID | the whole film with its lungs hidden), cross-fitted
   on the training images, each training image weighted by 1 / P(its own class), clipped at 5, 10, 20;
3. the `lungs` view, and the mean of the crop and lungs views' probabilities, on four splits (seeds
   42, 1, 2, 3).

Printed: validation log loss, test F1 at the validation's max-F1 threshold, test ROC AUC, the shortcut
probe (test ROC AUC with the lung fields hidden, the hidden film then taking the view's whole path,
segmentation included), the external normals' specificity at the validation threshold and at the
threshold keeping test sensitivity >= 0.90.

    python bench/source_remedies_study.py --data ../shared/data/covid-radiography-more
Last line `ratio:` the external specificity at test sensitivity 0.90 of the two views' mean / of the crop
view alone, mean over the four splits.
"""

from __future__ import annotations

import numpy as np
from lung_view_study import cached, hide_lungs, threshold_for_sensitivity, views
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score, log_loss, roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from zone_study import GRID, columns, head_input, split, study_setup

from cxr.model.block_stats import CHANNELS

STRENGTHS = (0.001, 0.003, 0.01)
VARIANTS = ("zones", "relative", "relative + whole", "left/right", "means", "stds", "blocks 4-5")


def variant(name: str, a: np.ndarray) -> np.ndarray:
    """The zone features `a` (per block: [whole, zone 1..6] x [means, stds] x channels) as variant `name`."""
    parts, offset = [], 0
    for block, c in enumerate(CHANNELS[2:]):  # blocks 3-5
        b = a[:, offset : offset + 14 * c].reshape(len(a), 7, 2, c)
        offset += 14 * c
        if name == "blocks 4-5" and block == 0:
            continue
        b = b[:, :, :1] if name == "means" else b[:, :, 1:] if name == "stds" else b
        whole, zones = b[:, 0], b[:, 1:]
        if name.startswith("relative"):
            parts += [zones - whole[:, None]] + ([whole] if name == "relative + whole" else [])
        elif name == "left/right":
            rows = zones.reshape(len(a), 3, 2, *zones.shape[2:])
            parts += [whole, rows.sum(2), np.abs(rows[:, :, 0] - rows[:, :, 1])]
        else:
            parts.append(b)
    return np.concatenate([p.reshape(len(a), -1) for p in parts], axis=1)


def probe(x: dict, y, train, c: float, weight=None) -> dict:
    scaler = StandardScaler().fit(x["x"][train])
    model = LogisticRegression(C=c, max_iter=5000).fit(scaler.transform(x["x"][train]), y[train], sample_weight=weight)
    return {k: model.predict_proba(scaler.transform(v))[:, 1] for k, v in x.items()}


def scores(y, p: dict, val, test) -> dict:
    t_val = GRID[np.argmax([f1_score(y[val], p["x"][val] >= t) for t in GRID])]
    return {
        "val_log_loss": log_loss(y[val], np.clip(p["x"][val], 1e-7, 1 - 1e-7)),
        "test_f1": f1_score(y[test], p["x"][test] >= t_val),
        "test_auc": roc_auc_score(y[test], p["x"][test]),
        "hidden_auc": roc_auc_score(y[test], p["hid"][test]),
        "ext_spec_val_t": float(np.mean(p["ext"] < t_val)),
        "ext_spec_sens90": float(np.mean(p["ext"] < threshold_for_sensitivity(y[test], p["x"][test]))),
    }


def best(name: str, x: dict, y, sets, weight=None) -> dict:
    """The probe at the C of lowest validation log loss; printed."""
    train, val, test = sets
    runs = [scores(y, probe(x, y, train, c, weight), val, test) | {"C": c} for c in STRENGTHS]
    chosen = min(runs, key=lambda r: r["val_log_loss"])
    print(f"{name:34s} " + " ".join(f"{k} {v:.3f}" for k, v in chosen.items()), flush=True)
    return chosen


def propensity(hidden: np.ndarray, y, sets) -> np.ndarray:
    """P(COVID | the whole film with its lungs hidden): cross-fitted on the training images."""
    train, _, _ = sets
    whole = hidden[:, columns()["whole map"]]
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=5000))
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    p = cross_val_predict(model, whole[train], y[train], cv=folds, method="predict_proba")[:, 1]
    print(f"source propensity: cross-fitted training ROC AUC {roc_auc_score(y[train], p):.3f}", flush=True)
    return p


def main() -> None:
    args, films, y, ext_films, seg = study_setup(__doc__.splitlines()[0])
    features = head_input(args.size)
    key = f"{args.size}-{args.data.name}"
    hidden_films = []

    def hidden():  # every film with its lung fields hidden (segmented once, when a cache misses)
        if not hidden_films:
            hidden_films.extend(hide_lungs(f, m) for f, m in zip(films, seg.masks(films), strict=True))
        return hidden_films

    crop = {
        "x": cached(args.cache, f"x-{key}", lambda: features(views("crop_eq", films, seg))),
        "ext": cached(args.cache, f"ext-{args.size}", lambda: features(views("crop_eq", ext_films, seg))),
        "hid": cached(args.cache, f"hidden-all-{key}", lambda: features(views("crop_eq", hidden(), seg))),
    }
    lungs = {
        "x": cached(args.cache, f"lungs-x-{key}", lambda: features(views("lungs", films, seg))),
        "ext": cached(args.cache, f"lungs-ext-{args.size}", lambda: features(views("lungs", ext_films, seg))),
        "hid": cached(args.cache, f"lungs-hidden-all-{key}", lambda: features(views("lungs", hidden(), seg))),
    }
    film_hidden = cached(args.cache, f"film-hidden-{key}", lambda: features(hidden()))
    sets = split(42, y)
    print("1. feature variants (crop view)")
    for name in VARIANTS:
        best(name, {k: variant(name, v) for k, v in crop.items()}, y, sets)
    print("2. propensity weighting against the look outside the lungs (crop view, zones)")
    p = propensity(film_hidden, y, sets)
    own = np.where(y[sets[0]] == 1, p, 1 - p)
    for clip in (5, 10, 20):
        w = 1 / np.clip(own, 1 / clip, 1)
        best(f"weighted, clipped at {clip} (n_eff {w.sum() ** 2 / (w**2).sum():.0f})", crop, y, sets, w / w.mean())
    print("3. the lungs view and the mean of both views")
    gains = []
    for seed in (42, 1, 2, 3):
        seed_sets = split(seed, y)
        chosen, result = {}, {}
        for name, x in (("crop", crop), ("lungs", lungs)):
            runs = [(scores(y, q, *seed_sets[1:]), q) for q in (probe(x, y, seed_sets[0], c) for c in STRENGTHS)]
            result[name], chosen[name] = min(runs, key=lambda run: run[0]["val_log_loss"])
        mean = {k: (chosen["crop"][k] + chosen["lungs"][k]) / 2 for k in chosen["crop"]}
        result["mean of both"] = scores(y, mean, *seed_sets[1:])
        for name, figures in result.items():
            print(f"split {seed:2d}, {name:14s} " + " ".join(f"{k} {v:.3f}" for k, v in figures.items()), flush=True)
        gains.append((result["mean of both"]["ext_spec_sens90"], result["crop"]["ext_spec_sens90"]))
    both, crop_only = np.mean(gains, axis=0)
    print(f"external specificity at test sensitivity 0.90, mean of 4 splits: both {both:.3f}, crop {crop_only:.3f}")
    print(f"ratio: {both / crop_only:.2f}")


if __name__ == "__main__":
    main()
