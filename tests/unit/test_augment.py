import numpy as np

from cxr.augment import augmentation_spec, build_augmenter, make_dataset
from cxr.data import ingest, read_manifest
from cxr.params import AugmentParams, IngestParams


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
        frame, ds_dir, "COVID", 32, 4, augmenter=build_augmenter(AugmentParams(), seed=1), shuffle_buffer=64, seed=1
    )
    xa, ya = _batches(ds)
    xb, yb = _batches(ds)
    assert xa.shape == plain.shape
    assert not np.array_equal(xa, xb)  # new draws each epoch
    assert sorted(ya.tolist()) == sorted(yb.tolist())
    # every augmented image differs from every plain one (rotation/shift/zoom change pixels)
    assert min(np.abs(a - p).mean() for a in xa for p in plain) > 1e-4


def test_spec_names_the_papers_parameters():
    spec = augmentation_spec(AugmentParams())
    assert spec["rotation_range_deg"] == 40 and spec["zoom_range"] == 0.2 and spec["horizontal_flip"]
    assert spec["applied_to"] == "train split only"
