"""Tuning study for the CPU profile: K-fold CV x seeds over the head and input choices (issue 9).

The CPU profile freezes the VGG16 base, so what the base makes of an image does not change while the
head trains. This study computes the base's output once per image and view (the clean image, its mirror
and --views augmented views drawn with cxr.data.augment.PaperAugmenter at the paper's settings or milder ones;
"flip" uses the mirror image alone), for each image size and feature block, then trains the head (as
cxr.model.architecture builds it: pooling, optionally standardised, the paper's Dense 1024 -> 512 -> 1 or a linear
probe, optional dropout and L2) on those features with the profile's optimiser, one view per image per
epoch. That makes hundreds of fold fits affordable on two cores; the chosen profile is then measured end
to end by bench/cv_pipeline.py (the real pipeline with evaluate.cv_folds=5).

Data: the pipeline's cross-validation pool, i.e. the sample's train + val splits (32 images); the test
split is not read, so it stays untouched by the tuning. Folds: cxr.evaluation.cross_validation.assign_folds (stratified,
near-duplicates together), drawn once with ingest.seed as the pipeline draws them (--fold-seed to draw
others), so the seeds vary the training alone; --redraw-folds draws them again for every seed, as rounds
1-3 did, which mixes the fold draw's noise into the spread. A fold's F1 is at threshold 0.5 on the
flip-averaged held-out probabilities; per seed, cv_f1 is the mean over folds; the spread is max - min
over seeds. A loss spike is an epoch whose training loss is more than twice the epoch before's and above
ln 2 (what guessing costs): cxr.model.fitting.largest_loss_jump, the loss_jump_max the train step logs.

    .venv/bin/python bench/cpu_profile_cv.py [--folds 5] [--seeds 1 2 3] [--views 24] [--cache DIR]
        [--around-best | --feature-block | --head | --every-view] [--fold-seed N | --redraw-folds]

Five rounds (make bench-profile runs them): the first over pooling, standardisation, learning rate,
epochs, augmentation and image size; --around-best around its choice (L2, dropout, learning rate, epochs,
image size); --feature-block, block 4 against block 5 (these three with --redraw-folds); --head, the
paper's head against a linear probe, its learning rate, epochs, image size and block; --every-view, the
linear probe shown each image and its mirror every epoch (augment.mirror_both) instead of one of the two,
in batches of 8 or in one full batch (train.batch_size 64), at two learning rates and epoch counts. Each
ends with the table and the chosen row (seed spread <= 0.05, no loss spike, highest CV F1).
Last line: ratio = the chosen configuration's CV F1 / the previous default's CV F1 (same folds, seeds).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


@dataclass(frozen=True)
class Config:
    image_size: int = 128
    block: int = 5
    pooling: str = "flatten"
    dropout: float = 0.0
    l2: float = 0.0
    learning_rate: float = 3e-5
    epochs: int = 30
    standardise: bool = False
    augment: str = "paper"  # paper | mild | flip (the mirror image only)
    head: str = "paper"  # paper (Dense 1024 -> 512 -> 1) | linear (Dense 1)
    batch_size: int = 8
    views_per_epoch: str = "one"  # one: each image in one view per epoch | all: in every view (flip: both)

    def label(self) -> str:
        return (
            f"{self.image_size}px block{self.block} {self.pooling:7s} {'std' if self.standardise else '   '} dropout "
            f"{self.dropout:<4g} l2 {self.l2:<6g} lr {self.learning_rate:<7g} epochs {self.epochs:<3d} "
            f"{self.augment} aug {self.head} head"
            + (f" batch {self.batch_size}" if self.batch_size != 8 else "")
            + (" every view each epoch" if self.views_per_epoch == "all" else "")
        )


AUGMENTS = {  # the paper's, a milder one, and (flip, built from the paper's first two views) the mirror only
    "paper": {"rotation_deg": 40, "width_shift": 0.2, "height_shift": 0.2, "shear": 0.2, "zoom": 0.2},
    "mild": {"rotation_deg": 10, "width_shift": 0.05, "height_shift": 0.05, "shear": 0.2, "zoom": 0.05},
}


def base_features(frame, dataset_dir, size: int, blocks, views: int, seed: int, augment: str = "paper") -> dict:
    """{block: array (n_images, 2 + views, h, w, c)}: view 0 clean, 1 mirrored, 2.. augmented."""
    import keras
    import tensorflow as tf

    from cxr.data.augment import build_augmenter, load_gray, to_model_input
    from cxr.model.architecture import build_base
    from cxr.model.layers import CaffeInput
    from cxr.params import AugmentParams

    base = build_base(size, "hed")
    inputs = keras.Input((size, size, 3))
    x = CaffeInput()(inputs)
    extractor = keras.Model(base.input, [base.get_layer(f"block{b}_pool").output for b in blocks])
    model = keras.Model(inputs, extractor(x))
    gray = tf.stack([load_gray(str(Path(dataset_dir) / f), size) for f in frame["file"]])
    augmenter = build_augmenter(AugmentParams(**AUGMENTS[augment]), seed=seed)
    batches = [gray, gray[:, :, ::-1, :]] + [augmenter(tf.cast(gray, tf.float32)) for _ in range(views)]
    out = {b: [] for b in blocks}
    for batch in batches:
        maps = model.predict(to_model_input(batch), batch_size=16, verbose=0)
        for b, m in zip(blocks, maps if isinstance(maps, list) else [maps], strict=True):
            out[b].append(m.astype(np.float32))
    return {b: np.stack(v, axis=1) for b, v in out.items()}


def head(shape, config: Config, seed: int, reference=None):
    """The head exactly as cxr.model.architecture.add_head builds it on the base's feature maps; with
    `standardise` adapted on `reference` (the training fold's clean images, as cxr.model.fitting adapts it)."""
    import keras

    from cxr.model.architecture import adapt_standardisation, add_head
    from cxr.params import TrainParams

    keras.utils.set_random_seed(seed)
    pooling = "flatten" if config.pooling == "flatten" else "average"
    params = TrainParams(
        pooling=pooling,
        standardise=config.standardise,
        dropout=config.dropout,
        l2=config.l2,
        head=config.head,
        seed=seed,
    )
    inputs = keras.Input(shape)
    model = keras.Model(inputs, add_head(inputs, params))
    if config.standardise:
        adapt_standardisation(model, reference)
    model.compile(keras.optimizers.SGD(config.learning_rate, momentum=0.9), "binary_crossentropy")
    return model


def cross_validate(features, y, config: Config, folds: np.ndarray, seed: int):
    """(fold F1s at 0.5, out-of-fold probabilities, the largest loss jump over the folds).

    Each epoch is a fresh permutation with every image in its next augmented view (views_per_epoch "all":
    in every view), fitted batch by batch (train_on_batch: the batches epoch-by-epoch `fit` makes, without
    its per-call overhead)."""
    from cxr.evaluation.metrics import compute_metrics
    from cxr.model.fitting import largest_loss_jump

    rng = np.random.default_rng(seed)
    n_views = features.shape[1] - 2
    oof, f1s, worst = np.zeros(len(y)), [], 0.0
    for fold in range(folds.max() + 1):
        train, held = np.flatnonzero(folds != fold), folds == fold
        batches_x, batches_y, epoch_of = [], [], []
        for epoch in range(config.epochs):
            if config.views_per_epoch == "all":  # (image, view) pairs: every view of every image
                views = np.repeat(np.arange(2, 2 + n_views), len(train))
                images = np.tile(train, n_views)
            else:
                views, images = np.full(len(train), 2 + epoch % n_views), train
            order = rng.permutation(len(images))
            for start in range(0, len(order), config.batch_size):
                pick = order[start : start + config.batch_size]
                batches_x.append(features[images[pick], views[pick]])
                batches_y.append(y[images[pick]])
                epoch_of.append(epoch)
        model = head(features.shape[2:], config, seed + fold, features[train, 0])
        losses = [float(model.train_on_batch(bx, by)) for bx, by in zip(batches_x, batches_y, strict=True)]
        per_epoch = [
            float(np.mean([v for v, e in zip(losses, epoch_of, strict=True) if e == k])) for k in range(config.epochs)
        ]
        worst = max(worst, largest_loss_jump(per_epoch))
        both = np.concatenate([features[held, 0], features[held, 1]])
        p = np.asarray(model(both, training=False)).ravel()  # eager: no predict() tracing per fold
        p = (p[: held.sum()] + p[held.sum() :]) / 2
        oof[held] = p
        f1s.append(compute_metrics(y[held], p, 0.5)["f1"])
    return np.array(f1s), oof, worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--views", type=int, default=24)
    parser.add_argument("--cache", default="", help="folder to keep the base's features in between runs")
    parser.add_argument("--around-best", action="store_true", help="the second round, around the first's choice")
    parser.add_argument("--feature-block", action="store_true", help="the third round: block 4 or 5 for the choice")
    parser.add_argument("--head", action="store_true", help="the fourth round: the paper's head or a linear probe")
    parser.add_argument(
        "--every-view", action="store_true", help="the fifth round: the image and its mirror every epoch, full batches"
    )
    parser.add_argument("--fold-seed", type=int, default=None, help="the folds' seed (default: ingest.seed)")
    parser.add_argument(
        "--redraw-folds", action="store_true", help="draw the folds with each training seed (rounds 1-3 did)"
    )
    args = parser.parse_args()

    import pandas as pd

    from cxr.data.manifest import ingest, read_manifest
    from cxr.evaluation.cross_validation import assign_folds
    from cxr.params import load_params

    params = load_params()
    baseline = Config()  # the profile before this study
    std = replace(baseline, pooling="avg", standardise=True, learning_rate=1e-3)
    sweep = [baseline, std]
    sweep += [replace(std, augment="flip", learning_rate=lr) for lr in (3e-4, 1e-3)]
    sweep += [replace(std, augment="mild", learning_rate=lr) for lr in (3e-4, 1e-3)]
    mild = replace(std, augment="mild")
    sweep += [replace(mild, dropout=0.5), replace(mild, l2=1e-3), replace(mild, epochs=15)]
    sweep += [replace(std, augment="flip", epochs=15), replace(std, augment="flip", image_size=96)]
    sweep += [replace(mild, image_size=96), replace(baseline, augment="flip")]
    if args.around_best:  # the second round: around the first round's choice (96 px, mirror images only)
        best = replace(std, augment="flip", image_size=96)
        sweep = [baseline, best, replace(best, l2=1e-2), replace(best, learning_rate=3e-3)]
        sweep += [replace(best, epochs=20), replace(best, image_size=64), replace(best, dropout=0.2)]
    if args.feature_block:  # the third round: which VGG16 block feeds the chosen head
        chosen = replace(std, augment="flip", image_size=96, l2=1e-2)
        sweep = [baseline, chosen, replace(chosen, block=4)]
    if args.head:  # the fourth round: the paper's head against a linear probe on the third round's choice
        chosen = replace(std, augment="flip", image_size=96, l2=1e-2)
        linear = replace(chosen, head="linear")
        fast = replace(linear, learning_rate=1e-2)
        sweep = [chosen, linear, replace(linear, epochs=50), replace(linear, learning_rate=3e-3), fast]
        sweep += [replace(fast, epochs=50), replace(fast, l2=0.1)]
        sweep += [replace(fast, image_size=128), replace(fast, block=4)]
    if args.every_view:  # the fifth round: the linear probe on the image and its mirror every epoch, and full batches
        linear = replace(std, augment="flip", image_size=96, l2=1e-2, head="linear", epochs=50)
        both = replace(linear, views_per_epoch="all")
        sweep = [linear, both, replace(both, epochs=25), replace(both, learning_rate=3e-3, epochs=25)]
        sweep += [replace(both, batch_size=64, learning_rate=lr, epochs=e) for lr in (3e-3, 1e-2) for e in (50, 100)]

    with tempfile.TemporaryDirectory() as tmp:
        records = ingest(params.ingest.data_dir, tmp, params.ingest)
        print(f"{len(records)} images ingested; ", end="")
        frame = read_manifest(tmp)
        frame = frame[frame["split"].isin(["train", "val"]) & frame["decodes"]].reset_index(drop=True)
        y = (frame["label"] == params.ingest.positive_class).to_numpy().astype(np.float32)
        print(f"CV pool (train + val): {len(frame)} images, {int(y.sum())} {params.ingest.positive_class}")
        started = time.perf_counter()
        cache = {}
        for size, augment in sorted({(c.image_size, c.augment if c.augment != "flip" else "paper") for c in sweep}):
            blocks = sorted({c.block for c in sweep if c.image_size == size})
            tag = "" if augment == "paper" else f"-{augment}"
            files = {b: Path(args.cache) / f"features-{size}px-block{b}-{args.views}views{tag}.npy" for b in blocks}
            if args.cache and all(f.is_file() for f in files.values()):
                cache |= {(size, b, augment): np.load(f) for b, f in files.items()}
                continue
            computed = base_features(frame, tmp, size, blocks, args.views, 0, augment)
            cache |= {(size, b, augment): f for b, f in computed.items()}
            if args.cache:
                Path(args.cache).mkdir(parents=True, exist_ok=True)
                for b, f in computed.items():
                    np.save(files[b], f)
        for (size, b, augment), f in list(cache.items()):
            if augment == "paper":  # flip: every epoch the image or its mirror, nothing else
                cache[(size, b, "flip")] = np.concatenate([f[:, :2], f[:, :2]], axis=1)
        print(f"base features: {time.perf_counter() - started:.0f} s for {len(cache)} size/block pairs")
        fold_seed = params.ingest.seed if args.fold_seed is None else args.fold_seed
        bits = params.ingest.near_duplicate_bits
        if args.redraw_folds:
            folds = {s: assign_folds(frame, args.folds, s, bits) for s in args.seeds}
        else:  # one draw, shared by every training seed
            folds = dict.fromkeys(args.seeds, assign_folds(frame, args.folds, fold_seed, bits))
        rows = []
        for config in sweep:
            started = time.perf_counter()
            per_seed, worst = [], 0.0
            for seed in args.seeds:
                features = cache[(config.image_size, config.block, config.augment)]
                f1s, _, w = cross_validate(features, y, config, folds[seed], seed)
                per_seed.append(f1s.mean())
                worst = max(worst, w)
            per_seed = np.array(per_seed)
            rows.append(
                {
                    "config": config.label(),
                    "cv_f1": per_seed.mean(),
                    "seed_spread": per_seed.max() - per_seed.min(),
                    "per_seed": " ".join(f"{v:.3f}" for v in per_seed),
                    "worst_loss_jump": worst,
                    "seconds": time.perf_counter() - started,
                }
            )
            print(
                f"{config.label()}  cv F1 {rows[-1]['cv_f1']:.3f} (seeds {rows[-1]['per_seed']}, spread "
                f"{rows[-1]['seed_spread']:.3f})  worst loss x{worst:.2f}",
                flush=True,
            )
    table = pd.DataFrame(rows)
    eligible = table[(table["seed_spread"] <= 0.05) & (table["worst_loss_jump"] <= 2.0)]
    best = (eligible if len(eligible) else table).sort_values("cv_f1", ascending=False).iloc[0]
    drawn = "re-drawn per seed" if args.redraw_folds else f"drawn once with seed {fold_seed}"
    print(f"\n{args.folds}-fold CV (folds {drawn}) x training seeds {args.seeds} on {len(frame)} images")
    print(table.sort_values("cv_f1", ascending=False).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"chosen (spread <= 0.05, no loss spike, highest CV F1): {best['config']}")
    print(f"ratio: {best['cv_f1'] / rows[0]['cv_f1']:.2f}")


if __name__ == "__main__":
    main()
