import pytest

from cxr.errors import CxrError
from cxr.params import load_params


def test_default_profile_is_the_cpu_profile():
    params = load_params()
    assert params.profile == "cpu"
    assert params.train.freeze_base is True
    assert (params.train.pooling, params.train.head, params.train.standardise) == ("block_stats", "linear", True)
    assert params.train.stat_blocks == (3, 4, 5) and params.scope.enabled
    assert params.ingest.positive_class == "COVID"


def test_paper_profile_has_the_papers_settings():
    params = load_params(profile="paper")
    assert (params.train.image_size, params.train.epochs, params.train.learning_rate) == (256, 20, 0.01)
    assert params.train.freeze_base is False
    # the paper's head and augmentation, whatever the CPU profile chose (ImageDataGenerator's settings)
    assert (
        params.train.pooling,
        params.train.head,
        params.train.standardise,
        params.train.dropout,
        params.train.l2,
    ) == (
        "flatten",
        "paper",
        False,
        0.0,
        0.0,
    )
    a = params.augment
    assert (a.rotation_deg, a.width_shift, a.height_shift, a.shear, a.zoom, a.horizontal_flip, a.mirror_both) == (
        40,
        0.2,
        0.2,
        0.2,
        0.2,
        True,
        False,  # ImageDataGenerator mirrors each image with probability 1/2
    )


def test_overrides_are_typed_and_win_over_the_profile():
    params = load_params(profile="paper", overrides=["train.epochs=3", "train.freeze_base=true"])
    assert params.train.epochs == 3 and params.train.freeze_base is True


def test_flat_params_carry_stage_prefixes():
    flat = load_params().flat()
    assert flat["train.image_size"] == 176 and flat["gate.min_f1"] == 0.6


@pytest.mark.parametrize("override", ["train.epochs", "epochs=3", "nosuch.key=1", "train.nosuch=1"])
def test_bad_overrides_say_what_is_wrong(override):
    with pytest.raises(CxrError):
        load_params(overrides=[override])


def test_unknown_profile_and_missing_file(tmp_path):
    with pytest.raises(CxrError, match="Profile 'gpu'"):
        load_params(profile="gpu")
    with pytest.raises(CxrError, match="does not exist"):
        load_params(tmp_path / "nope.yaml")


def test_params_yaml_is_the_one_source_of_defaults():
    """The dataclasses' defaults equal params.yaml, key by key: deleting a key from the YAML cannot
    silently switch to a competing value, and every key the code reads is in the YAML."""
    from dataclasses import asdict

    import yaml

    from cxr.params import PROJECT_ROOT, Params

    assert asdict(load_params()) == asdict(Params())
    raw = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    for stage, values in asdict(Params()).items():
        if isinstance(values, dict):
            assert set(values) == set(raw[stage]), f"{stage}: params.yaml and the dataclass differ in keys"


def test_the_experiment_opens_as_a_model_training_experiment(tracking_uri):
    import mlflow

    from cxr.tracking import runs as tracking

    experiment_id = tracking.configure(tracking_uri, "kind-test")
    assert mlflow.get_experiment(experiment_id).tags["mlflow.experimentKind"] == "custom_model_development"
    mlflow.MlflowClient().delete_experiment_tag(experiment_id, "mlflow.experimentKind")
    tracking.configure(tracking_uri, "kind-test")  # an older experiment is tagged when next used
    assert mlflow.get_experiment(experiment_id).tags["mlflow.experimentKind"] == "custom_model_development"


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("evaluate.threshold_strategy=max-f1", "evaluate.threshold_strategy"),
        ("train.pooling=max", "train.pooling"),
        ("train.head=mlp", "train.head"),
        ("train.weights=random", "train.weights"),
        ("train.augment_on=gpu", "train.augment_on"),
    ],
)
def test_an_enumerated_parameter_outside_its_values_is_refused_when_params_load(override, named):
    """Before any training: a typo in a choice costs no run."""
    with pytest.raises(CxrError, match=named) as error:
        load_params(overrides=[override])
    assert "choose one of" in str(error.value)


def test_every_profile_in_params_yaml_uses_allowed_values():
    from cxr.params import CHOICES

    for profile in ("cpu", "paper"):
        params = load_params(profile=profile)
        for (section, key), allowed in CHOICES.items():
            assert str(getattr(getattr(params, section), key)).lower() in allowed
