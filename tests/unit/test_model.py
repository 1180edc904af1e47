import h5py
import numpy as np
import pytest

from cxr.errors import CxrError
from cxr.model.architecture import build_base, build_model, hed_weights_path
from cxr.params import TrainParams


def test_paper_head_on_vgg16():
    model = build_model(TrainParams(image_size=32, weights="none", pooling="flatten", head="paper"))
    names = [layer.name for layer in model.layers]
    assert "vgg16" in names
    assert [model.get_layer(n).units for n in ("fc1024", "fc512", "probability")] == [1024, 512, 1]
    assert model.get_layer("probability").activation.__name__ == "sigmoid"
    assert model.output_shape == (None, 1)


def test_the_linear_probe_is_one_penalised_dense_unit_on_the_pooled_features():
    import keras

    model = build_model(TrainParams(image_size=32, weights="none", pooling="average", head="linear", l2=0.01))
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert [layer.name for layer in dense] == ["probability"]
    assert dense[0].kernel.shape == (512, 1) and len(model.losses) == 1  # its L2 term
    assert [w.name for w in model.trainable_weights] == ["kernel", "bias"]
    with pytest.raises(CxrError, match="train.head is 'mlp'"):
        build_model(TrainParams(image_size=32, weights="none", head="mlp"))


def test_block_statistics_feed_the_head_the_mean_and_std_of_each_chosen_block():
    import keras

    from cxr.model.architecture import truncated
    from cxr.model.block_stats import block_columns, build_scorer, feature_statistics

    tp = TrainParams(image_size=64, weights="hed", pooling="block_stats", stat_blocks=(3, 4, 5), stat_zones=(1, 1))
    model = build_model(tp)
    base = model.get_layer("vgg16_block_stats")
    assert base.output.shape[-1] == 2 * (256 + 512 + 512)
    images = np.random.default_rng(0).uniform(0, 1, (2, 64, 64, 3)).astype(np.float32)
    pooled = keras.Model(base.inputs, base.output).predict(images * 255 - 120, verbose=0)
    # the head's features are the input gate's columns for those blocks: one pass can serve both
    scorer = build_scorer(model, statistics_only=True)
    from_gate = feature_statistics(scorer.predict(images, verbose=0))[:, block_columns((3, 4, 5))]
    from_model = truncated(model, [layer.name for layer in model.layers].index("vgg16_block_stats"))
    np.testing.assert_allclose(from_gate, from_model.predict(images, verbose=0), rtol=1e-4, atol=1e-4)
    assert pooled.shape == (2, 2560)
    with pytest.raises(CxrError, match="block 5 among them"):
        build_model(TrainParams(image_size=32, weights="none", pooling="block_stats", stat_blocks=(3, 4)))


def test_zone_statistics_are_each_zones_mean_and_std_after_the_whole_maps():
    from cxr.model.layers import ChannelStatistics

    maps = np.random.default_rng(1).gamma(0.5, 2.0, (2, 11, 11, 4)).astype(np.float32)
    out = np.asarray(ChannelStatistics((3, 2))(maps))
    expected = [maps.mean((1, 2)), maps.std((1, 2))]
    for rows in ((0, 3), (3, 7), (7, 11)):  # 11 rows in three bands, 11 columns in two halves
        for cols in ((0, 5), (5, 11)):
            zone = maps[:, rows[0] : rows[1], cols[0] : cols[1]]
            expected += [zone.mean((1, 2)), zone.std((1, 2))]
    np.testing.assert_allclose(out, np.log1p(np.concatenate(expected, axis=1)), rtol=1e-5, atol=1e-6)
    # a grid finer than the map is coarsened to it; [1, 1] is the whole map alone
    assert np.asarray(ChannelStatistics((3, 2))(maps[:, :2, :1])).shape == (2, 4 * 2 * (1 + 2))
    assert np.asarray(ChannelStatistics((1, 1))(maps)).shape == (2, 8)
    model = build_model(TrainParams(image_size=64, weights="none", pooling="block_stats", stat_zones=(3, 2)))
    assert model.get_layer("vgg16_block_stats").output.shape[-1] == 2 * (256 + 512 + 512) * 7
    with pytest.raises(CxrError, match="stat_zones"):
        build_model(TrainParams(image_size=64, weights="none", pooling="block_stats", stat_zones=(0, 2)))


def test_freeze_base_controls_trainable_weights():
    frozen = build_model(TrainParams(image_size=32, weights="none", head="paper", freeze_base=True))
    tuned = build_model(TrainParams(image_size=32, weights="none", head="paper", freeze_base=False))
    assert len(frozen.trainable_weights) == 6  # three Dense layers: kernel + bias
    assert len(tuned.trainable_weights) == 6 + 26  # plus 13 conv layers


def test_hed_weights_are_copied_layer_by_layer():
    base = build_base(32, "hed")
    with h5py.File(hed_weights_path(), "r") as fh:
        assert np.array_equal(base.get_layer("block1_conv1").get_weights()[0], fh["block1/layers/conv2d/vars/0"][()])
        assert np.array_equal(base.get_layer("block5_conv3").get_weights()[1], fh["block5/layers/conv2d_2/vars/1"][()])


def test_missing_weight_files_give_one_sentence(tmp_path):
    with pytest.raises(CxrError, match="does not exist"):
        build_base(32, "imagenet", str(tmp_path / "vgg16.h5"))
    with pytest.raises(CxrError, match="HED weight file"):
        build_base(32, "hed", str(tmp_path / "hed.h5"))
    with pytest.raises(CxrError, match="choose one of"):
        build_base(32, "resnet")


@pytest.mark.slow  # fits a network
def test_the_regularised_head_pools_standardises_drops_out_penalises_and_serves_unchanged(tmp_path):
    """train.pooling=average, standardise, dropout and l2: 512 features, standardised over the images it was
    adapted on, into the same Dense 1024 -> 512 -> 1; dropout
    only while training; the penalty in the loss; saved and reloaded with the same outputs, and the
    input gate's one-pass scorer gives the model's own probability."""
    import keras
    import tensorflow as tf

    from cxr.model.architecture import adapt_standardisation
    from cxr.model.block_stats import build_scorer

    params = TrainParams(
        image_size=64, weights="none", pooling="average", head="paper", standardise=True, dropout=0.5, l2=1e-3
    )
    model = build_model(params)
    assert model.get_layer("average_pool").output.shape == (None, 512)
    x = np.random.default_rng(0).random((4, 64, 64, 3)).astype("float32")
    adapt_standardisation(model, tf.data.Dataset.from_tensor_slices(x).batch(2))
    pooled = keras.Model(model.inputs, model.get_layer("feature_standardisation").output).predict_on_batch(x)
    stds = pooled.std(axis=0)  # unit variance, but a feature (nearly) silent on every image is not blown up
    assert np.allclose(pooled.mean(axis=0), 0, atol=1e-3) and np.median(stds) == pytest.approx(1, abs=0.01)
    assert stds.max() < 1.01
    assert model.get_layer("fc1024").kernel.shape == (512, 1024)
    assert [n for n in (layer.name for layer in model.layers) if n.startswith("dropout")] == [
        "dropout_to_fc1024",
        "dropout_to_fc512",
        "dropout_to_output",
    ]
    assert len(model.losses) == 2  # the L2 terms of fc1024 and fc512
    served = model.predict_on_batch(x)
    assert np.allclose(served, model.predict_on_batch(x))  # no dropout at inference
    assert not np.allclose(model(x, training=True), model(x, training=True))  # dropout while training
    model.save(tmp_path / "m.keras")
    reloaded = keras.models.load_model(tmp_path / "m.keras", compile=False)
    assert np.allclose(reloaded.predict_on_batch(x), served, atol=1e-6)
    assert np.allclose(build_scorer(reloaded).predict_on_batch(x)[0], served, atol=1e-5)
    with pytest.raises(CxrError, match="train.pooling is 'max'"):
        build_model(TrainParams(image_size=32, weights="none", pooling="max"))


def test_standardised_features_with_a_fine_tuned_base_is_refused_in_one_sentence(tiny_data, tmp_path):
    from cxr.data.manifest import ingest
    from cxr.training import train_model
    from tests.conftest import tiny

    params = tiny("train.freeze_base=false", "train.standardise=true")
    ingest(tiny_data, tmp_path / "ds", params.ingest)
    with pytest.raises(CxrError, match="train.standardise needs train.freeze_base=true"):
        train_model(tmp_path / "ds", params, tmp_path / "model", log_to_mlflow=False)
