import numpy as np
import pytest

from cxr.data.augment import augmentation_spec, build_augmenter, make_dataset
from cxr.data.manifest import ingest, read_manifest
from cxr.params import PAPER_AUGMENT, IngestParams


def _frame(tiny_data, tmp_path):
    ingest(tiny_data, tmp_path / "ds", IngestParams(split={"train": 1.0, "val": 0.0, "test": 0.0}))
    return read_manifest(tmp_path / "ds"), tmp_path / "ds"


def _batches(ds):
    xs, ys = zip(*[(np.asarray(x), np.asarray(y)) for x, y in ds], strict=True)
    return np.concatenate(xs), np.concatenate(ys)


def test_eval_pipeline_is_deterministic_unaugmented_and_in_order(tiny_data, tmp_path):
    frame, ds_dir = _frame(tiny_data, tmp_path)
    ds = make_dataset(frame, ds_dir, "COVID", 32, 4)
    x1, y1 = _batches(ds)
    x2, _ = _batches(ds)
    assert x1.shape == (12, 32, 32, 3) and 0.0 <= x1.min() and x1.max() <= 1.0
    assert np.array_equal(x1, x2)
    assert y1.tolist() == (frame["label"] == "COVID").astype(float).tolist()


def test_training_pipeline_shuffles_each_epoch_and_augments(tiny_data, tmp_path):
    frame, ds_dir = _frame(tiny_data, tmp_path)
    plain = _batches(make_dataset(frame, ds_dir, "COVID", 32, 4))[0]
    ds = make_dataset(
        frame, ds_dir, "COVID", 32, 4, augmenter=build_augmenter(PAPER_AUGMENT, seed=1), shuffle_buffer=64, seed=1
    )
    xa, ya = _batches(ds)
    xb, yb = _batches(ds)
    assert xa.shape == plain.shape
    assert not np.array_equal(xa, xb)  # new draws each epoch
    assert sorted(ya.tolist()) == sorted(yb.tolist())
    # every augmented image differs from every plain one (rotation/shift/zoom change pixels)
    assert min(np.abs(a - p).mean() for a in xa for p in plain) > 1e-4


def test_spec_names_the_papers_parameters():
    spec = augmentation_spec(PAPER_AUGMENT)
    assert spec["rotation_range_deg"] == 40 and spec["zoom_range"] == 0.2 and spec["horizontal_flip"]
    assert spec["applied_to"] == "train split only"


def _smooth_image(size: int = 48) -> np.ndarray:
    """A smooth, asymmetric test picture (an off-centre blob on a gradient), 0-255, one channel."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    blob = np.exp(-((yy - 0.35 * size) ** 2 + (xx - 0.6 * size) ** 2) / (2 * (0.12 * size) ** 2))
    return (255 * (0.6 * blob + 0.4 * xx / size))[..., None]


@pytest.mark.parametrize(
    "theta, tx, ty, shear, zx, zy, flip",
    [
        (25.0, 0, 0, 0, 1, 1, False),  # each operation alone
        (0, 6.0, 0, 0, 1, 1, False),
        (0, 0, -4.0, 0, 1, 1, False),
        (0, 0, 0, 15.0, 1, 1, False),
        (0, 0, 0, 0, 1.2, 0.85, False),
        (0, 0, 0, 0, 1, 1, True),
        (-30.0, 3.0, 5.0, 10.0, 0.9, 1.15, True),  # all of them, composed
    ],
)
def test_one_composed_transform_matches_the_papers_image_data_generator(theta, tx, ty, shear, zx, zy, flip):
    import keras
    import tensorflow as tf
    from keras.src.legacy.preprocessing.image import apply_affine_transform

    from cxr.data.augment import paper_transforms

    image = _smooth_image()
    expected = apply_affine_transform(
        image, theta, tx, ty, shear, zx, zy, row_axis=0, col_axis=1, channel_axis=2, fill_mode="nearest", order=1
    )
    if flip:
        expected = expected[:, ::-1]
    params = [tf.constant([v], tf.float32) for v in (theta, tx, ty, shear, zx, zy)] + [tf.constant([flip])]
    transform = paper_transforms(*params, image.shape[0], image.shape[1])
    ours = np.asarray(
        keras.ops.image.affine_transform(image[None], transform, interpolation="bilinear", fill_mode="nearest")
    )[0]
    assert np.abs(ours - expected).max() < 0.5  # of 255: the same sampling, up to float rounding


def test_the_augmenter_draws_within_the_papers_ranges_and_differs_per_image():
    from cxr.data.augment import PaperAugmenter

    augmenter = PaperAugmenter(PAPER_AUGMENT, seed=3)
    batch = np.zeros((400, 32, 32, 1), np.float32)
    theta, tx, ty, shear, zx, zy, flip = (np.asarray(v) for v in augmenter.draw(batch))
    assert np.abs(theta).max() <= 40 and np.abs(tx).max() <= 0.2 * 32 and np.abs(ty).max() <= 0.2 * 32
    assert np.abs(shear).max() <= 0.2 and zx.min() >= 0.8 and zy.max() <= 1.2
    assert 0.4 < flip.mean() < 0.6 and len(np.unique(theta)) == 400
    again = PaperAugmenter(PAPER_AUGMENT, seed=3).draw(batch)[0]
    assert np.array_equal(np.asarray(again), theta)  # reproducible from the seed


def test_the_cache_holds_one_uint8_channel_and_gives_back_what_serving_feeds(tiny_data, tmp_path):
    from cxr.data.augment import load_gray, to_model_input
    from cxr.data.images import decode_image, resize_and_scale

    frame, ds_dir = _frame(tiny_data, tmp_path)
    path = str(ds_dir / frame["file"].iloc[0])
    cached = load_gray(path, 32)
    assert cached.dtype == np.uint8 and tuple(cached.shape) == (32, 32, 1)
    assert cached.numpy().nbytes * 12 == 32 * 32 * 3 * 4  # a twelfth of float32 RGB
    served = np.asarray(resize_and_scale(decode_image(open(path, "rb").read())[0], 32))
    assert np.array_equal(np.asarray(to_model_input(cached[None])[0]), served)  # bit for bit


@pytest.mark.slow  # fits a network
def test_augmentation_inside_the_model_trains_saves_and_is_an_identity_when_serving(tiny_data, tmp_path):
    """train.augment_on=model (what `auto` picks on a GPU): the layer augments in fit, serves unchanged."""
    from cxr.data.manifest import ingest
    from cxr.inference.classifier import XrayClassifier
    from cxr.model.config import ModelConfig
    from cxr.model.layers import PaperAugmentation
    from cxr.training import train_model
    from tests.conftest import tiny

    paper = [f"augment.{k}={v}" for k, v in (("rotation_deg", 40), ("width_shift", 0.2), ("height_shift", 0.2))]
    params = tiny("train.augment_on=model", "ood.enabled=false", *paper, "augment.zoom=0.2", "augment.shear=0.2")
    ingest(tiny_data, tmp_path / "ds", params.ingest)
    train_model(tmp_path / "ds", params, tmp_path / "model", log_to_mlflow=False)
    assert ModelConfig.read(tmp_path / "model").augmented_in == "model"
    served = XrayClassifier().load(tmp_path / "model" / "model.keras", ModelConfig.read(tmp_path / "model"))
    layer = served.keras_model.get_layer("paper_augmentation")
    assert isinstance(layer, PaperAugmentation)
    batch = np.random.default_rng(0).uniform(0, 1, (4, 32, 32, 3)).astype(np.float32)
    assert np.array_equal(np.asarray(layer(batch)), batch)  # inference: untouched
    assert not np.allclose(np.asarray(layer(batch, training=True)), batch)  # training: augmented
    first = served.predict_arrays([np.full((40, 40, 3), 90, np.uint8)])
    assert np.array_equal(first, served.predict_arrays([np.full((40, 40, 3), 90, np.uint8)]))


def test_mirror_both_gives_every_image_and_its_mirror_each_epoch(tiny_data, tmp_path):
    frame, ds_dir = _frame(tiny_data, tmp_path)
    plain, labels = _batches(make_dataset(frame, ds_dir, "COVID", 32, 4))
    ds = make_dataset(frame, ds_dir, "COVID", 32, 5, shuffle_buffer=64, seed=1, mirror_both=True)
    for _ in range(2):  # the same set every epoch, in a new order
        x, y = _batches(ds)
        assert x.shape == (2 * len(plain), *plain.shape[1:])
        key = sorted(row.tobytes() for row in x)
        expected = sorted(row.tobytes() for row in np.concatenate([plain, plain[:, :, ::-1, :]]))
        assert key == expected
        assert sorted(y.tolist()) == sorted(labels.tolist() * 2)


def test_mirror_both_turns_the_augmenters_coin_toss_off():
    from dataclasses import replace

    from cxr.data.augment import PaperAugmenter

    batch = np.random.default_rng(0).uniform(0, 255, (64, 16, 16, 1)).astype(np.float32)
    flips = np.asarray(PaperAugmenter(replace(PAPER_AUGMENT, mirror_both=False), seed=3).draw(batch)[-1])
    assert 0 < int(np.sum(flips)) < 64
    assert not np.any(np.asarray(PaperAugmenter(replace(PAPER_AUGMENT, mirror_both=True), seed=3).draw(batch)[-1]))
