"""Which classifier input holds up at another hospital? Whole films against the lung view, measured.

For each input view (whole film; lungs cropped and masked; the same, equalised within the lungs) the
frozen VGG16 base's block statistics (the CPU profile's features) of a dataset and of the external
normals are computed once and cached; a logistic regression (the CPU profile's linear probe) is fitted on
a stratified 60/20/20 split. Printed per view: test F1 and ROC AUC, the shortcut probe's ROC AUC with
the lungs hidden (segmented lung fields filled with the film's mean grey, then the view's whole path,
segmentation included), and the external normals' specificity at the threshold chosen on validation
(max F1) and at the one that keeps test sensitivity >= 0.90. The external normals never train anything
but the segmenter (fitted on half of them; specificity is reported on the other half too).

    python bench/lung_view_study.py --data ../shared/data/covid-radiography-more
Last line: `ratio:` external specificity of the best view / of the whole film (same sensitivity rule).
"""

from __future__ import annotations

import argparse
import csv
import io
import time
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from cxr.data.images import resize_and_scale
from cxr.data.lung_view import equalise_within, hide_lungs, lung_view
from cxr.model.architecture import build_model
from cxr.model.block_stats import block_columns, build_scorer, feature_statistics
from cxr.model.segmenter import Segmenter, dice
from cxr.params import TrainParams

EXTERNAL = Path("cxr/data/external_normals")


def acquisition_variant(film: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random acquisition variant of a film (what differs between sites: window and gamma, blur or
    sharpening, resolution, noise, JPEG), for --augment."""
    gray = (film[..., 0] if film.ndim == 3 else film).astype(np.float32) / 255.0
    h, w = gray.shape
    lo, hi = rng.uniform(0.0, 0.08), rng.uniform(0.92, 1.0)  # window: clip and stretch
    gray = np.clip((gray - lo) / (hi - lo), 0, 1) ** rng.uniform(0.6, 1.7)  # gamma
    sigma = rng.uniform(0.3, 1.5)
    blurred = ndimage.gaussian_filter(gray, sigma)
    amount = rng.uniform(-0.8, 1.2)  # < 0: blur towards `blurred`; > 0: unsharp masking
    gray = np.clip(gray + amount * (gray - blurred), 0, 1)
    scale = rng.uniform(0.4, 1.0)  # resolution: down, then back up
    if scale < 0.95:
        small = Image.fromarray(np.uint8(gray * 255)).resize((max(8, int(w * scale)), max(8, int(h * scale))))
        gray = np.asarray(small.resize((w, h), Image.Resampling.BILINEAR), np.float32) / 255.0
    gray = np.clip(gray + rng.normal(0, rng.uniform(0, 0.03), gray.shape), 0, 1)
    out = np.uint8(np.round(gray * 255))
    if rng.random() < 0.5:
        buffer = io.BytesIO()
        Image.fromarray(out).save(buffer, format="JPEG", quality=int(rng.integers(30, 95)))
        out = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("L"))
    return out


def load_dataset(folder: Path):
    files = sorted(folder.glob("COVID/*.png")) + sorted(folder.glob("Normal/*.png"))
    y = np.array([1 if f.parent.name == "COVID" else 0 for f in files])
    return [np.asarray(Image.open(f).convert("L")) for f in files], y


def load_external():
    rows = list(csv.DictReader((EXTERNAL / "MANIFEST.csv").open()))
    films = [np.asarray(Image.open(EXTERNAL / r["file"]).convert("L")) for r in rows]
    masks = [np.asarray(Image.open(EXTERNAL / r["mask"])) > 127 for r in rows]
    return films, masks


class Features:
    def __init__(self, size: int):
        tp = TrainParams(image_size=size)
        self.size = size
        self.scorer = build_scorer(build_model(tp), statistics_only=True)
        self.columns = block_columns(tp.stat_blocks)

    def __call__(self, arrays) -> np.ndarray:
        statistics = batched(self.size, lambda batch: feature_statistics(self.scorer.predict_on_batch(batch)))
        return statistics(arrays)[:, self.columns]


def batched(size: int, predict):
    """A function of a list of uint8 films (any size, grey or RGB) -> `predict` of them, resized to `size`,
    32 at a time, concatenated."""

    def run(films) -> np.ndarray:
        out = []
        for i in range(0, len(films), 32):
            out.append(predict(np.stack([np.asarray(resize_and_scale(_rgb(a), size)) for a in films[i : i + 32]])))
        return np.concatenate(out)

    return run


def _rgb(a):
    return a if a.ndim == 3 else np.repeat(a[..., None], 3, axis=2)


def views(name: str, films, seg: Segmenter, masks=None):
    """The view `name` of each film; `masks`: their lung masks, when the caller has them already."""
    if name == "film":
        return films
    masks = seg.masks(films) if masks is None else masks
    if name.endswith("_lo"):  # the view at 64 px: fine texture (noise, sharpening, JPEG) gone
        return [_low(v) for v in views(name[:-3], films, seg, masks)]
    if name == "film_eq":
        return [equalise_within(f, m) for f, m in zip(films, masks, strict=True)]
    if name == "crop_win":  # cropped, the lungs' 1st-99th percentile stretched linearly to 0-255
        return [window_view(f, m) for f, m in zip(films, masks, strict=True)]
    equalise, mask_outside = name.endswith("_eq"), name.startswith("lungs")
    return [lung_view(f, m, equalise, mask_outside) for f, m in zip(films, masks, strict=True)]


def lungs_in_view(mask: np.ndarray) -> np.ndarray:
    """The (dilated) lung fields as they lie in the film's lung view (cropped to the lungs' box)."""
    return lung_view(np.full(mask.shape, 255, np.uint8), mask, equalise=False, mask_outside=True)[..., 0] > 0


def window_view(film: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The `crop` view with a linear window in place of equalisation: the grey levels of the pixels inside the
    (dilated) lungs between their 1st and 99th percentile stretched to 0-255, the histogram's shape kept."""
    crop = lung_view(film, mask, equalise=False, mask_outside=False)[..., 0]
    inside = lungs_in_view(mask)
    if not inside.any():
        return _rgb(crop)
    lo, hi = np.percentile(crop[inside], [1, 99])
    out = np.clip((crop.astype(np.float32) - lo) / max(hi - lo, 1.0), 0, 1)
    return _rgb(np.uint8(np.round(255 * out)))


def _low(view: np.ndarray, size: int = 64) -> np.ndarray:
    small = Image.fromarray(view[..., 0] if view.ndim == 3 else view).resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(small)


def cached(cache: Path, key: str, compute):
    path = cache / f"{key}.npy"
    if path.is_file():
        return np.load(path)
    t = time.time()
    value = compute()
    np.save(path, value)
    print(f"  computed {key} in {time.time() - t:.0f} s", flush=True)
    return value


def threshold_for_sensitivity(y, p, target=0.9) -> float:
    """The highest threshold at which sensitivity reaches `target`."""
    pos = np.sort(p[y == 1])[::-1]
    return float(pos[int(np.ceil(target * len(pos))) - 1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--size", type=int, default=176)
    parser.add_argument("--cache", type=Path, default=Path(".cache/lung-view-study"))
    parser.add_argument("--views", default="film,lungs,lungs_eq")
    parser.add_argument("--c", type=float, default=0.05, help="inverse L2 strength of the probe")
    parser.add_argument("--augment", type=int, default=0, help="acquisition variants of each training film")
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    films, y = load_dataset(args.data)
    ext_films, ext_masks = load_external()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(ext_films))
    seg_fit, seg_held = order[: len(order) // 2], order[len(order) // 2 :]
    t = time.time()
    seg = Segmenter.fit(
        [ext_films[i] for i in seg_fit], [ext_masks[i].astype(np.uint8) * 255 for i in seg_fit], 64, 80, 0
    )
    held_dice = [
        dice(m, ext_masks[i]) for m, i in zip(seg.masks([ext_films[i] for i in seg_held]), seg_held, strict=True)
    ]
    print(f"segmenter: {time.time() - t:.0f} s, held-out Dice {np.mean(held_dice):.3f} on {len(seg_held)}")
    idx = np.arange(len(y))
    train, rest = train_test_split(idx, test_size=0.4, stratify=y, random_state=42)
    val, test = train_test_split(rest, test_size=0.5, stratify=y[rest], random_state=42)
    test_masks = seg.masks([films[i] for i in test])
    hidden = [hide_lungs(films[i], m) for i, m in zip(test, test_masks, strict=True)]
    feats = Features(args.size)
    results = {}
    for name in args.views.split(","):
        x = cached(args.cache, f"{name}-{args.size}-{args.data.name}", lambda n=name: feats(views(n, films, seg)))
        xe = cached(args.cache, f"{name}-{args.size}-external", lambda n=name: feats(views(n, ext_films, seg)))
        xh = cached(
            args.cache, f"{name}-{args.size}-{args.data.name}-hidden", lambda n=name: feats(views(n, hidden, seg))
        )
        x_fit, y_fit = [x[train]], [y[train]]
        for k in range(args.augment):
            rng_k = np.random.default_rng(100 + k)
            key = f"{name}-{args.size}-{args.data.name}-acq{k}"
            x_fit.append(
                cached(
                    args.cache,
                    key,
                    lambda n=name, r=rng_k: feats(views(n, [acquisition_variant(films[i], r) for i in train], seg)),
                )
            )
            y_fit.append(y[train])
        x_fit, y_fit = np.concatenate(x_fit), np.concatenate(y_fit)
        scaler = StandardScaler().fit(x[train])
        probe = LogisticRegression(C=args.c, max_iter=5000).fit(scaler.transform(x_fit), y_fit)
        p = {k: probe.predict_proba(scaler.transform(v))[:, 1] for k, v in (("x", x), ("ext", xe), ("hid", xh))}
        grid = np.linspace(0.05, 0.95, 91)
        t_val = grid[np.argmax([f1_score(y[val], p["x"][val] >= t) for t in grid])]
        t_sens = threshold_for_sensitivity(y[test], p["x"][test])
        res = {
            "test_f1": f1_score(y[test], p["x"][test] >= t_val),
            "test_auc": roc_auc_score(y[test], p["x"][test]),
            "hidden_auc": roc_auc_score(y[test], p["hid"]),
            "ext_spec_val_t": float(np.mean(p["ext"] < t_val)),
            "ext_spec_sens90": float(np.mean(p["ext"] < t_sens)),
            "ext_spec_sens90_segheld": float(np.mean(p["ext"][seg_held] < t_sens)),
        }
        results[name] = res
        print(name, " ".join(f"{k} {v:.3f}" for k, v in res.items()), flush=True)
    best = max(results, key=lambda k: results[k]["ext_spec_sens90"])
    base = results.get("film", {}).get("ext_spec_sens90", float("nan"))
    print(f"best view: {best}")
    print(f"ratio: {results[best]['ext_spec_sens90'] / base:.2f}")


if __name__ == "__main__":
    main()
