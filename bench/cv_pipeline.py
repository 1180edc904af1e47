"""The default CPU profile measured end to end: the real pipeline with K-fold cross-validation, per seed.

Runs `cxr pipeline run`'s pipeline (kfp local runner, a throw-away MLflow store) on the bundled sample
with `evaluate.cv_folds=K` and `train.seed=S` for each seed, and reads back what the runs recorded:
cv_f1_mean / cv_f1_std (over folds, at evaluate.threshold), the out-of-fold F1 at the chosen threshold,
test F1, the temperature with ECE before/after, the largest training-loss jump over the fold and final
fits, and the wall time. With --baseline the same is run for the profile before the CPU-profile study
(Flatten head, lr 3e-5, 128 px, the paper's augmentation), and the last line is the ratio of the two mean CV F1s.

    .venv/bin/python bench/cv_pipeline.py [--folds 5] [--seeds 1 2 3] [--baseline] [--set stage.key=value ...]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

BASELINE = [  # the CPU profile before the study: 128 px, Flatten, the paper's head, lr 3e-5, batch 8, the
    # paper's augmentation (mirroring at random)
    "train.head=paper",
    "train.l2=0",
    "train.batch_size=8",
    "augment.mirror_both=false",
    "train.pooling=flatten",
    "train.standardise=false",
    "train.learning_rate=0.00003",
    "train.image_size=128",
    "train.epochs=30",
    *(f"augment.{k}={v}" for k, v in (("rotation_deg", 40), ("width_shift", 0.2), ("height_shift", 0.2))),
    "augment.shear=0.2",
    "augment.zoom=0.2",
]


def measure(overrides: list[str], folds: int, seeds: list[int], store: str, label: str) -> list[float]:
    from cxr.params import load_params
    from pipelines.local import run_local

    means = []
    for seed in seeds:
        params = load_params(overrides=[*overrides, f"evaluate.cv_folds={folds}", f"train.seed={seed}"])
        started = time.perf_counter()
        outcome = run_local(params, params.ingest.data_dir, store, run_name=f"{label}-seed{seed}")
        seconds = time.perf_counter() - started
        m = outcome.metrics
        if outcome.status != "FINISHED" or "cv_f1_mean" not in m:
            raise SystemExit(f"{label} seed {seed}: the run ended {outcome.status}: {outcome.error}")
        means.append(m["cv_f1_mean"])
        print(
            f"{label} seed {seed}: {folds}-fold CV F1 {m['cv_f1_mean']:.3f} ± {m['cv_f1_std']:.3f} "
            f"(accuracy {m['cv_accuracy_mean']:.3f} ± {m['cv_accuracy_std']:.3f}, sensitivity "
            f"{m['cv_sensitivity_mean']:.3f}, specificity {m['cv_specificity_mean']:.3f}); out-of-fold F1 "
            f"{m['val_f1']:.3f} at threshold {m['val_threshold']:.3f}; test F1 {m['test_f1']:.3f}; temperature "
            f"{m['temperature']:.2f}, ECE {m['ece_before_calibration']:.3f} -> {m['ece_after_calibration']:.3f}; "
            f"loss jump x{max(m['loss_jump_max'], m['loss_jump_max_folds']):.2f}; gate {outcome.gate_outcome}; "
            f"{seconds:.0f} s",
            flush=True,
        )
    spread = max(means) - min(means)
    print(f"{label}: mean CV F1 over seeds {np.mean(means):.3f}, seed spread {spread:.3f}", flush=True)
    return means


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--baseline", action="store_true")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        store = f"sqlite:///{tmp}/mlflow.db"
        print(f"sample: 40 images (32 train + val in the folds, 8 test); {args.folds} folds; seeds {args.seeds}")
        profile = measure(args.overrides, args.folds, args.seeds, store, "cpu-profile")
        if args.baseline:
            before = measure(BASELINE + args.overrides, args.folds, args.seeds, store, "before-study")
            print(f"ratio: {np.mean(profile) / np.mean(before):.2f}")


if __name__ == "__main__":
    main()
