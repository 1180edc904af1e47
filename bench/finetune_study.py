"""Does fine-tuning the base's last block read the disease better than the frozen base, and at another
source? Block 5 of VGG16 trained with the head against the head alone, measured.

The default view (`lungs.view: crop`) of a dataset, of its test split with the lungs hidden and of the
external normals goes through the frozen base up to block 4 once (cached, float16). On the zone study's
split (seed 42, 60/20/20), a model on those maps: block 5's three convolutions (from the base's weights),
its per-channel statistics over the whole map and the 3 x 2 zones (the product's ChannelStatistics),
beside the frozen blocks 3-4 statistics of the zone study's cache; standardised on the training images;
one sigmoid unit with L2 0.1 (the pipeline's `block_stats` head). First the head alone (SGD, learning rate
0.001, momentum 0.9, batch 64, the epoch of lowest validation log loss of 100: the pipeline's head), then
block 5 and the head together at a smaller step (`--mirror 1`: each training film's maps mirrored at
random), the epoch of lowest validation log loss kept. Each is scored as bench/zone_study.py scores a probe: validation
log loss, test F1 at the validation's max-F1 threshold, test ROC AUC, test AUC with the lungs hidden, and
the external normals' specificity at the validation threshold and at the threshold keeping test
sensitivity >= 0.90.

    python bench/finetune_study.py --data ../shared/data/covid-radiography-more
Last line: `ratio:` test F1 with block 5 fine-tuned / with the head alone.
"""

from __future__ import annotations

import time

import keras
import numpy as np
from lung_view_study import batched, cached, hide_lungs, views
from sklearn.metrics import log_loss
from zone_study import columns, head_input, report, sgd_head, split, study_setup

from cxr.model.architecture import build_model
from cxr.model.block_stats import CHANNELS, base_of
from cxr.model.layers import ChannelStatistics
from cxr.params import TrainParams

FROZEN = 14 * (CHANNELS[2] + CHANNELS[3])  # blocks 3-4 statistics, whole map and 6 zones: the first columns


def block4_maps(size: int):
    """The frozen base (HED VGG16, caffe input) up to block4_pool, and its block 5 convolutions' weights.
    A function of a list of uint8 films -> float16 maps, 32 at a time."""
    model = build_model(TrainParams(image_size=size, stat_zones=(3, 2)))
    base = base_of(model)
    inputs = keras.Input((size, size, 3))
    x = model.get_layer("caffe_input")(inputs)
    trunk = keras.Model(base.input, base.get_layer("block4_pool").output)
    extractor = keras.Model(inputs, trunk(x))
    block5 = [base.get_layer(f"block5_conv{i}").get_weights() for i in (1, 2, 3)]
    return batched(size, lambda batch: np.asarray(extractor.predict_on_batch(batch), np.float16)), block5


def tunable(shape, block5, frozen_width: int) -> keras.Model:
    """block4 maps + frozen statistics -> probability, with block 5 and the head trainable."""
    maps, frozen = keras.Input(shape), keras.Input((frozen_width,))
    x = maps
    for i, weights in enumerate(block5, start=1):
        conv = keras.layers.Conv2D(512, 3, padding="same", activation="relu", name=f"block5_conv{i}")
        x = conv(x)
        conv.set_weights(weights)
    stats = ChannelStatistics((3, 2), name="block5_stats")(x)
    x = keras.layers.Concatenate()([frozen, stats])
    x = keras.layers.Normalization(name="standardise")(x)
    reg = keras.regularizers.L2(0.1)
    out = keras.layers.Dense(1, "sigmoid", kernel_initializer="zeros", kernel_regularizer=reg, name="probability")(x)
    return keras.Model([maps, frozen], out)


def predict(model, m, f) -> np.ndarray:
    return model.predict([m.astype(np.float32), f.astype(np.float32)], batch_size=32, verbose=0).ravel()


def fit(model, data: dict, y, train, val, epochs: int, lr: float, mirror: bool):
    """SGD (momentum 0.9, batch 64) on each training film's maps (`mirror`: mirrored at random). Leaves the last epoch's
    weights in `model`; returns the epoch of lowest validation log loss (the start, epoch 0, among them) and
    its weights."""
    model.compile(keras.optimizers.SGD(lr, momentum=0.9), "binary_crossentropy")
    rng = np.random.default_rng(0)

    def val_loss() -> float:
        return log_loss(y[val], np.clip(predict(model, data["m"][val], data["f"][val]), 1e-7, 1 - 1e-7))

    start = val_loss()
    print(f"  epoch 0: val log loss {start:.3f}", flush=True)
    best = (start, 0, [w.copy() for w in model.get_weights()])
    for epoch in range(epochs):
        t = time.time()
        order = rng.permutation(train)
        m = data["m"][order].astype(np.float32)
        flip = rng.random(len(order)) < (0.5 if mirror else 0.0)
        m[flip] = m[flip, :, ::-1]
        model.fit([m, data["f"][order].astype(np.float32)], y[order], batch_size=64, epochs=1, verbose=0)
        loss = val_loss()
        print(f"  epoch {epoch + 1}: val log loss {loss:.3f} ({time.time() - t:.0f} s)", flush=True)
        best = min(best, (loss, epoch + 1, [w.copy() for w in model.get_weights()]), key=lambda b: b[0])
    return best[1:]


def main() -> None:
    args, films, y, ext_films, seg = study_setup(__doc__.splitlines()[0], epochs=12, lr=0.00003, mirror=0)
    train, val, test = split(42, y)
    hidden = [hide_lungs(films[i], m) for i, m in zip(test, seg.masks([films[i] for i in test]), strict=True)]
    key = f"{args.size}-{args.data.name}"
    features = head_input(args.size)
    zones = columns()["zones"]
    x = cached(args.cache, f"x-{key}", lambda: features(views("crop_eq", films, seg)))[:, zones]
    xe = cached(args.cache, f"ext-{args.size}", lambda: features(views("crop_eq", ext_films, seg)))[:, zones]
    xh = cached(args.cache, f"hidden-{key}", lambda: features(views("crop_eq", hidden, seg)))[:, zones]
    maps, block5 = block4_maps(args.size)
    m = cached(args.cache, f"b4-{key}", lambda: maps(views("crop_eq", films, seg)))
    me = cached(args.cache, f"b4-ext-{args.size}", lambda: maps(views("crop_eq", ext_films, seg)))
    mh = cached(args.cache, f"b4-hidden-{key}", lambda: maps(views("crop_eq", hidden, seg)))
    p, head = sgd_head({"x": x, "ext": xe, "hid": xh}, y, train, val, 0.001)
    frozen = report("head alone (frozen base)", y, p, val, test)
    model = tunable(m.shape[1:], block5, FROZEN)
    statistics = keras.Model(model.inputs, model.get_layer("standardise").input)
    check = statistics.predict([m[:64].astype(np.float32), x[:64, :FROZEN]], verbose=0)
    print(f"statistics from the cached maps against the zone study's: max |diff| {np.abs(check - x[:64]).max():.4f}")
    model.get_layer("standardise").set_weights(head.layers[0].get_weights())
    model.get_layer("standardise").finalize_state()  # the mean and variance it applies follow the weights
    model.get_layer("probability").set_weights(head.layers[1].get_weights())
    best, weights = fit(model, {"m": m, "f": x[:, :FROZEN]}, y, train, val, args.epochs, args.lr, bool(args.mirror))
    sets = {"x": (m, x), "ext": (me, xe), "hid": (mh, xh)}

    def scored(name: str) -> dict:
        return report(name, y, {k: predict(model, mv, xv[:, :FROZEN]) for k, (mv, xv) in sets.items()}, val, test)

    scored(f"block 5 + head, lr {args.lr}, epoch {args.epochs}")
    model.set_weights(weights)
    tuned = scored(f"block 5 + head, lr {args.lr}, epoch {best} (kept)")
    print(f"ratio: {tuned['test_f1'] / frozen['test_f1']:.2f}")


if __name__ == "__main__":
    main()
