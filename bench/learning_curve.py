"""Learning curve of the CPU profile: 5-fold cross-validated F1 at 50 ... 1,600 training images.

Usage: python bench/learning_curve.py [--data ../shared/data/covid-radiography-more] [--sizes 50,100,...]
       [--folds 5] [--candidate NAME=stage.key=value,...] [--out docs/figures]

The data folder (class sub-folders) is ingested once (manifest, near-duplicate hashes); every image's
frozen-base features are computed once and shared by every size, fold and candidate (the training's
own cache, cxr.model.fitting.HeadFeatures), so each point costs only the head's fits. At each size N, a
stratified random pool of N / (1 - 1/folds) images is cut into folds (near-duplicates together,
cxr.evaluation.cross_validation), so each fold's model trains on about N images; F1 is at
evaluate.threshold (0.5), mean and sd over the folds.
Candidates: `cpu` (params.yaml's CPU profile) and `paper-head` (the paper's Dense 1024 -> 512 ReLU
head on the same frozen features, its L2 off), plus any --candidate. At N >= 800, the expected
calibration error of the out-of-fold probabilities before and after temperature scaling.
Writes learning_curve.png and learning_curve.md to --out. Last line: ratio = CV F1 at the largest
size / CV F1 at the smallest (cpu candidate).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from cxr.data.manifest import (  # noqa: E402
    ingest,
    labels_of,  # noqa: E402
    read_manifest,
)
from cxr.evaluation.cross_validation import summarise  # noqa: E402
from cxr.evaluation.metrics import calibration  # noqa: E402
from cxr.model.calibration import apply_temperature, fit_temperature  # noqa: E402
from cxr.model.fitting import FitSetup  # noqa: E402
from cxr.params import load_params  # noqa: E402
from cxr.training.folds import cross_validate  # noqa: E402

CANDIDATES = {
    "cpu": [],
    "paper-head": ["train.head=paper", "train.l2=0"],
}


def pool_of(frame: pd.DataFrame, n_train: int, folds: int, seed: int) -> pd.DataFrame:
    """A stratified random pool whose folds train on about `n_train` images."""
    size = int(round(n_train * folds / (folds - 1)))
    rng = np.random.default_rng(seed)
    parts = []
    for _, group in frame.groupby("label"):
        take = min(len(group), size // 2)
        parts.append(group.iloc[rng.permutation(len(group))[:take]])
    return pd.concat(parts, ignore_index=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "covid-radiography-more")
    parser.add_argument("--sizes", default="50,100,200,400,800,1600")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--candidate", action="append", default=[], help="NAME=stage.key=value,stage.key=value")
    parser.add_argument("--only", default="", help="comma-separated candidate names to run")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "figures")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"{args.data} is not a folder of class sub-folders; pass --data DIR.")
    candidates = dict(CANDIDATES)
    for text in args.candidate:
        name, _, sets = text.partition("=")
        candidates[name] = [s for s in sets.split(",") if s]
    if args.only:
        candidates = {k: v for k, v in candidates.items() if k in args.only.split(",")}
    sizes = [int(s) for s in args.sizes.split(",")]
    base = load_params(ROOT / "params.yaml")
    work = Path(tempfile.mkdtemp(prefix="learning-curve-"))
    started = time.time()
    ingest(args.data, work / "ds", base.ingest)
    frame = read_manifest(work / "ds")
    frame = frame[frame["error"].fillna("") == ""] if "error" in frame else frame
    print(f"{len(frame)} images from {args.data} ({time.time() - started:.0f} s to ingest)", flush=True)
    caches: dict = {}  # one feature cache per frozen-base configuration (candidates may differ in it)
    rows = []
    for name, overrides in candidates.items():
        params = load_params(ROOT / "params.yaml", overrides=[f"evaluate.cv_folds={args.folds}", *overrides])
        positive = params.ingest.positive_class
        t = params.train
        cache = caches.setdefault((t.image_size, t.pooling, t.stat_blocks, t.weights, t.base_input), {})
        for n in sizes:
            pool = pool_of(frame, n, args.folds, args.seed)
            t = time.time()
            setup = FitSetup(work / "ds", positive, params, work, cache=cache)
            oof, _, fold_metrics = cross_validate(setup, pool)
            summary = summarise(fold_metrics)
            row = {
                "candidate": name,
                "n_train": n,
                "pool": len(pool),
                "f1_mean": summary["cv_f1_mean"],
                "f1_sd": summary["cv_f1_std"],
                "sensitivity": summary["cv_sensitivity_mean"],
                "specificity": summary["cv_specificity_mean"],
                "auc": summary["cv_roc_auc_mean"],
                "seconds": time.time() - t,
            }
            if n >= 800:
                y = labels_of(pool, positive)
                temperature = fit_temperature(y, oof, params.evaluate.threshold_min_per_class).temperature
                row["ece_before"] = calibration(y, oof)["ece"]
                row["ece_after"] = calibration(y, apply_temperature(oof, temperature))["ece"]
                row["temperature"] = temperature
            rows.append(row)
            ece = f" ECE {row['ece_before']:.3f} -> {row['ece_after']:.3f}" if "ece_before" in row else ""
            print(
                f"{name:11s} n={n:5d} F1 {row['f1_mean']:.3f} ± {row['f1_sd']:.3f} sens {row['sensitivity']:.2f} "
                f"spec {row['specificity']:.2f} AUC {row['auc']:.3f}{ece} ({row['seconds']:.0f} s)",
                flush=True,
            )
    table = pd.DataFrame(rows)
    write_outputs(table, args.out, args.data, args.folds)
    print(f"total {time.time() - started:.0f} s")
    cpu = table[table["candidate"] == next(iter(candidates))].sort_values("n_train")
    print(f"ratio: {cpu['f1_mean'].iloc[-1] / cpu['f1_mean'].iloc[0]:.2f}")


def write_outputs(table: pd.DataFrame, out: Path, data: Path, folds: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, part in table.groupby("candidate", sort=False):
        part = part.sort_values("n_train")
        ax.errorbar(part["n_train"], part["f1_mean"], yerr=part["f1_sd"], marker="o", capsize=3, label=name)
    ax.set_xscale("log")
    ax.set_xlabel("training images per fold")
    ax.set_ylabel(f"{folds}-fold CV F1 (mean ± sd)")
    ax.set_title(f"Learning curve ({data.name})")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "learning_curve.png", dpi=120)
    lines = [
        "| candidate | training images | F1 (mean ± sd) | sensitivity | specificity | ROC AUC | ECE before → after |",
        "| --- | ---: | --- | ---: | ---: | ---: | --- |",
    ]
    for r in table.to_dict("records"):
        ece = f"{r['ece_before']:.3f} → {r['ece_after']:.3f}" if pd.notna(r.get("ece_before", np.nan)) else "-"
        lines.append(
            f"| {r['candidate']} | {r['n_train']} | {r['f1_mean']:.3f} ± {r['f1_sd']:.3f} | {r['sensitivity']:.2f} | "
            f"{r['specificity']:.2f} | {r['auc']:.3f} | {ece} |"
        )
    (out / "learning_curve.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
